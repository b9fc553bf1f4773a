//! Reply scanning for clients of a RESP server (the load generator, test harnesses): finds
//! where the first complete reply in a buffer ends and what kind it is, without copying or
//! allocating.
//!
//! Invariants:
//! - `scan_reply` either returns the exact length of one complete reply, says more bytes are
//!   needed, or reports malformed input; it never panics and never reads past the buffer.
//! - Nesting is tracked with a counter, not recursion, so a deep reply cannot overflow the
//!   stack; aggregates deeper than `MAX_REPLY_ELEMENTS` pending elements are refused.
//! - Both RESP2 and RESP3 reply types are understood (`_`, `#`, `,`, `(`, `=`, `!`, `%`, `~`,
//!   `>`, `|`), since a client may have said `HELLO 3`.

/// The outermost type of a scanned reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// `+...`
    Status,
    /// `-...` or a RESP3 blob error `!n`.
    Error,
    /// `:n`
    Integer,
    /// `$n` with n ≥ 0, or a RESP3 verbatim string `=n`.
    Bulk,
    /// `$-1`, `*-1` or RESP3 `_`: a nil (a GET miss).
    Nil,
    /// `*n`, `%n`, `~n`, `>n` with n ≥ 0 (the count of top-level elements).
    Aggregate(u64),
    /// RESP3 scalars: `#`, `,`, `(`.
    Other,
}

/// Why bytes are not a RESP reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A type byte that no RESP version defines.
    UnknownType(u8),
    /// A length or count that is not a decimal integer, or is out of range.
    BadLength,
    /// A bulk payload not followed by CRLF.
    MissingCrlf,
    /// More pending elements than the scanner tracks.
    TooDeep,
}

/// Bound on the number of elements an aggregate reply may announce (Redis's own bound on a
/// multibulk count is 2^31; a reply beyond it is corrupt).
pub const MAX_REPLY_ELEMENTS: u64 = 1 << 32;

/// Bound on a bulk length (Redis's `proto-max-bulk-len` ceiling).
const MAX_BULK: u64 = 1 << 40;

/// Finds the first complete reply in `buf`. Returns `Ok(Some((len, kind)))` when the reply is
/// complete and occupies `buf[..len]`, `Ok(None)` when more bytes are needed.
/// O(length of the reply header lines + number of elements); allocates nothing.
pub fn scan_reply(buf: &[u8]) -> Result<Option<(usize, ReplyKind)>, ReplyError> {
    let mut pos = 0usize;
    // Elements still to read before the outermost reply is complete.
    let mut pending: u64 = 1;
    let mut outer: Option<ReplyKind> = None;
    while pending > 0 {
        let Some(&ty) = buf.get(pos) else {
            return Ok(None);
        };
        let Some(eol) = find_crlf(&buf[pos + 1..]) else {
            return Ok(None);
        };
        let line = &buf[pos + 1..pos + 1 + eol];
        let after = pos + 1 + eol + 2;
        pending -= 1;
        let kind = match ty {
            b'+' => ReplyKind::Status,
            b'-' => ReplyKind::Error,
            b':' => ReplyKind::Integer,
            b'_' => ReplyKind::Nil,
            b'#' | b',' | b'(' => ReplyKind::Other,
            b'$' | b'=' | b'!' => {
                let Some(n) = parse_count(ty, line, b'$')? else {
                    pos = after;
                    outer.get_or_insert(ReplyKind::Nil);
                    continue;
                };
                if n > MAX_BULK {
                    return Err(ReplyError::BadLength);
                }
                let end = after as u64 + n + 2;
                if end > buf.len() as u64 {
                    return Ok(None);
                }
                let end = end as usize;
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ReplyError::MissingCrlf);
                }
                pos = end;
                outer.get_or_insert(if ty == b'!' {
                    ReplyKind::Error
                } else {
                    ReplyKind::Bulk
                });
                continue;
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let Some(n) = parse_count(ty, line, b'*')? else {
                    pos = after;
                    outer.get_or_insert(ReplyKind::Nil);
                    continue;
                };
                let elements = if matches!(ty, b'%' | b'|') { n * 2 } else { n };
                if elements > MAX_REPLY_ELEMENTS {
                    return Err(ReplyError::TooDeep);
                }
                pending = pending.checked_add(elements).ok_or(ReplyError::TooDeep)?;
                pos = after;
                if ty == b'|' {
                    // An attribute map precedes the reply it describes and is not the reply.
                    pending += 1;
                } else {
                    outer.get_or_insert(ReplyKind::Aggregate(n));
                }
                continue;
            }
            other => return Err(ReplyError::UnknownType(other)),
        };
        pos = after;
        outer.get_or_insert(kind);
    }
    Ok(Some((pos, outer.unwrap_or(ReplyKind::Other))))
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&c| c == b'\r') {
        let at = from + i;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

/// A length or count line: Some(n), or None for the RESP2 nil (`-1`), which only type
/// `nil_ty` may carry.
fn parse_count(ty: u8, line: &[u8], nil_ty: u8) -> Result<Option<u64>, ReplyError> {
    match crate::parse_i64(line).ok_or(ReplyError::BadLength)? {
        -1 if ty == nil_ty => Ok(None),
        n if n < 0 => Err(ReplyError::BadLength),
        n => Ok(Some(n as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> ReplyKind {
        let (len, kind) = scan_reply(bytes).unwrap().unwrap();
        assert_eq!(
            len,
            bytes.len(),
            "length of {:?}",
            String::from_utf8_lossy(bytes)
        );
        // Every strict prefix is incomplete, never an error.
        for cut in 0..bytes.len() {
            assert_eq!(scan_reply(&bytes[..cut]), Ok(None), "prefix {cut}");
        }
        kind
    }

    #[test]
    fn scalar_replies() {
        assert_eq!(whole(b"+OK\r\n"), ReplyKind::Status);
        assert_eq!(whole(b"-ERR no\r\n"), ReplyKind::Error);
        assert_eq!(whole(b":-42\r\n"), ReplyKind::Integer);
        assert_eq!(whole(b"$5\r\nhe\r\no\r\n"), ReplyKind::Bulk);
        assert_eq!(whole(b"$0\r\n\r\n"), ReplyKind::Bulk);
        assert_eq!(whole(b"$-1\r\n"), ReplyKind::Nil);
        assert_eq!(whole(b"*-1\r\n"), ReplyKind::Nil);
        assert_eq!(whole(b"_\r\n"), ReplyKind::Nil);
        assert_eq!(whole(b"#t\r\n"), ReplyKind::Other);
        assert_eq!(whole(b",1.5\r\n"), ReplyKind::Other);
        assert_eq!(whole(b"=7\r\ntxt:abc\r\n"), ReplyKind::Bulk);
        assert_eq!(whole(b"!3\r\nERR\r\n"), ReplyKind::Error);
    }

    #[test]
    fn aggregates_and_attributes() {
        assert_eq!(
            whole(b"*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:1\r\n+x\r\n"),
            ReplyKind::Aggregate(3)
        );
        assert_eq!(whole(b"*0\r\n"), ReplyKind::Aggregate(0));
        assert_eq!(whole(b"%1\r\n+k\r\n:1\r\n"), ReplyKind::Aggregate(1));
        assert_eq!(whole(b"|1\r\n+a\r\n:1\r\n+OK\r\n"), ReplyKind::Status);
    }

    #[test]
    fn stops_after_the_first_reply() {
        let buf = b"+OK\r\n$-1\r\n:1\r\n";
        assert_eq!(scan_reply(buf), Ok(Some((5, ReplyKind::Status))));
        assert_eq!(scan_reply(&buf[5..]), Ok(Some((5, ReplyKind::Nil))));
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert_eq!(scan_reply(b"?x\r\n"), Err(ReplyError::UnknownType(b'?')));
        assert_eq!(scan_reply(b"$x\r\n"), Err(ReplyError::BadLength));
        assert_eq!(scan_reply(b"$-2\r\n"), Err(ReplyError::BadLength));
        assert_eq!(scan_reply(b"$1\r\nab\r\n"), Err(ReplyError::MissingCrlf));
        assert_eq!(scan_reply(b"*99999999999\r\n"), Err(ReplyError::TooDeep));
        assert_eq!(
            scan_reply(b"$99999999999999999\r\n"),
            Err(ReplyError::BadLength)
        );
    }
}
