//! Glob-style matching as Redis's `stringmatchlen` (KEYS, SCAN MATCH, CONFIG GET):
//! `*` any run, `?` any byte, `[abc]`, `[^a]`, `[a-z]` (reversed ranges allowed), `\x` a
//! literal x. Matching is binary-safe.
//!
//! Redis's matcher is recursive and exponential on patterns like `a*a*a*…b`; this one keeps
//! only the last `*` as a backtrack point, which is enough because `*` matches any run: the
//! worst case is O(pattern × subject) and nothing recurses.

/// Matches one non-star token of `pat` at `pi` against byte `c`.
/// Returns (matched, index after the token).
fn token(pat: &[u8], pi: usize, c: u8, nocase: bool) -> (bool, usize) {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match pat[pi] {
        b'?' => (true, pi + 1),
        b'\\' if pi + 1 < pat.len() => (eq(pat[pi + 1], c), pi + 2),
        b'[' => {
            let mut i = pi + 1;
            let negate = i < pat.len() && pat[i] == b'^';
            if negate {
                i += 1;
            }
            let mut matched = false;
            loop {
                if i >= pat.len() {
                    // Unterminated class: Redis treats the end of the pattern as its end.
                    break;
                }
                if pat[i] == b']' {
                    i += 1;
                    break;
                }
                if pat[i] == b'\\' && i + 1 < pat.len() {
                    if eq(pat[i + 1], c) {
                        matched = true;
                    }
                    i += 2;
                } else if i + 2 < pat.len() && pat[i + 1] == b'-' {
                    let (mut lo, mut hi) = (pat[i], pat[i + 2]);
                    if lo > hi {
                        std::mem::swap(&mut lo, &mut hi);
                    }
                    let cc = if nocase { c.to_ascii_lowercase() } else { c };
                    let (l2, h2) = if nocase {
                        (lo.to_ascii_lowercase(), hi.to_ascii_lowercase())
                    } else {
                        (lo, hi)
                    };
                    if (lo..=hi).contains(&c) || (nocase && (l2..=h2).contains(&cc)) {
                        matched = true;
                    }
                    i += 3;
                } else {
                    if eq(pat[i], c) {
                        matched = true;
                    }
                    i += 1;
                }
            }
            (matched != negate, i)
        }
        p => (eq(p, c), pi + 1),
    }
}

/// True when `subject` matches the glob `pattern`.
pub fn glob_match(pattern: &[u8], subject: &[u8], nocase: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // Backtrack point: pattern index after the last `*`, and subject index it resumes at.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < pattern.len() && pattern[pi] == b'*' {
            while pi < pattern.len() && pattern[pi] == b'*' {
                pi += 1;
            }
            if pi == pattern.len() {
                return true;
            }
            star = Some((pi, si));
            continue;
        }
        if si == subject.len() {
            return pi == pattern.len();
        }
        if pi < pattern.len() {
            let (ok, next) = token(pattern, pi, subject[si], nocase);
            if ok {
                pi = next;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
}

/// True when the pattern matches everything (`*`), so callers can skip matching.
pub fn matches_all(pattern: &[u8]) -> bool {
    !pattern.is_empty() && pattern.iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn redis_glob_semantics() {
        assert!(m(b"*", b"", false));
        assert!(m(b"h?llo", b"hello", false));
        assert!(!m(b"h?llo", b"hllo", false));
        assert!(m(b"h*llo", b"heeeello", false));
        assert!(m(b"h[ae]llo", b"hallo", false));
        assert!(!m(b"h[ae]llo", b"hillo", false));
        assert!(m(b"h[^e]llo", b"hallo", false));
        assert!(!m(b"h[^e]llo", b"hello", false));
        assert!(m(b"h[a-b]llo", b"hbllo", false));
        assert!(m(b"h[b-a]llo", b"hallo", false));
        assert!(m(b"h\\*llo", b"h*llo", false));
        assert!(!m(b"h\\*llo", b"hello", false));
        assert!(m(b"a*b*c", b"aXXbYYc", false));
        assert!(!m(b"a*b*c", b"aXXbYY", false));
        assert!(m(
            b"*a*a*a*a*a*a*a*a*b",
            &[b'a'; 40].iter().copied().chain([b'b']).collect::<Vec<_>>(),
            false
        ));
        assert!(!m(b"*a*a*a*a*a*a*a*a*b", &[b'a'; 4000], false));
        assert!(m(b"HELLO", b"hello", true));
        assert!(m(b"[abc", b"a", false));
        assert!(m(b"user:*", b"user:\x00\xff", false));
        assert!(!m(b"", b"a", false));
        assert!(m(b"", b"", false));
    }
}
