//! Redis 7.0's command documentation and key specs, as COMMAND DOCS and COMMAND INFO send
//! them: the types of the generated table ([`command_docs`], made by
//! `proto/tools/gen_command_docs.py` from Redis 7.0.15's `src/commands/*.json`), the
//! writers of its replies, and the key-spec search (Redis's `getKeysUsingKeySpecs`).
//!
//! The table is static data (every Redis 7.0 command, about 340 KB of source: strings and
//! slices in the binary's read-only data): nothing is parsed or built at start, a lookup is
//! a binary search by name. Commands percore has that Redis 7.0 lacks are not in it; their
//! callers keep their own short form.

#[path = "command_docs.rs"]
mod command_docs;

use crate::ReplyWriter;

/// One command's (or subcommand's, `parent|sub`) documentation and key specs.
#[derive(Debug)]
pub struct CommandDoc {
    pub name: &'static str,
    pub summary: Option<&'static str>,
    pub since: Option<&'static str>,
    pub group: &'static str,
    pub complexity: Option<&'static str>,
    /// `deprecated`, `syscmd`, in Redis's order.
    pub doc_flags: &'static [&'static str],
    pub deprecated_since: Option<&'static str>,
    pub replaced_by: Option<&'static str>,
    /// (version, change) pairs.
    pub history: Option<&'static [(&'static str, &'static str)]>,
    pub arguments: Option<&'static [DocArg]>,
    pub key_specs: &'static [KeySpec],
}

/// One argument of a command's syntax (nested for `oneof` and `block`).
#[derive(Debug)]
pub struct DocArg {
    pub name: &'static str,
    /// `string`, `integer`, `double`, `key`, `pattern`, `unix-time`, `pure-token`, `oneof`,
    /// `block`.
    pub kind: &'static str,
    /// The key spec this key argument belongs to; -1 for none.
    pub key_spec_index: i32,
    pub token: Option<&'static str>,
    pub summary: Option<&'static str>,
    pub since: Option<&'static str>,
    pub deprecated_since: Option<&'static str>,
    /// [`ARG_OPTIONAL`], [`ARG_MULTIPLE`], [`ARG_MULTIPLE_TOKEN`].
    pub flags: u8,
    pub arguments: Option<&'static [DocArg]>,
}

pub const ARG_OPTIONAL: u8 = 1;
pub const ARG_MULTIPLE: u8 = 2;
pub const ARG_MULTIPLE_TOKEN: u8 = 4;

/// One Redis 7 key spec.
#[derive(Debug)]
pub struct KeySpec {
    pub notes: Option<&'static str>,
    /// `RO`, `RW`, `OW`, `RM`, `access`, `update`, `insert`, `delete`, `not_key`,
    /// `incomplete`, `variable_flags`: in Redis's reply order.
    pub flags: &'static [&'static str],
    pub begin: BeginSearch,
    pub find: FindKeys,
}

#[derive(Debug)]
pub enum BeginSearch {
    Unknown,
    Index(i64),
    /// The word after `keyword`, searched from `startfrom` (backwards when negative).
    Keyword(&'static str, i64),
}

#[derive(Debug)]
pub enum FindKeys {
    Unknown,
    /// `lastkey`, `keystep`, `limit`.
    Range([i64; 3]),
    /// `keynumidx`, `firstkey`, `keystep`.
    Keynum([i64; 3]),
}

/// The documentation of command `name` (lower case; `parent|sub` for a subcommand), if
/// Redis 7.0 has it. O(log n).
pub fn find(name: &str) -> Option<&'static CommandDoc> {
    let t = command_docs::DOCS;
    t.binary_search_by(|d| d.name.cmp(name)).ok().map(|i| &t[i])
}

impl CommandDoc {
    /// COMMAND DOCS's map for this command without its subcommands (Redis's
    /// `addReplyCommandDocs`), with `subs` more entries to follow (the caller writes the
    /// `subcommands` key and map when `subs` is 1).
    pub fn write(&self, w: &mut ReplyWriter, subs: usize) {
        let n = 1
            + self.summary.is_some() as usize
            + self.since.is_some() as usize
            + self.complexity.is_some() as usize
            + !self.doc_flags.is_empty() as usize
            + self.deprecated_since.is_some() as usize
            + self.replaced_by.is_some() as usize
            + self.history.is_some() as usize
            + self.arguments.is_some() as usize;
        w.map(n + subs);
        let field = |w: &mut ReplyWriter, k: &[u8], v: Option<&str>| {
            if let Some(v) = v {
                w.bulk(k);
                w.bulk(v.as_bytes());
            }
        };
        field(w, b"summary", self.summary);
        field(w, b"since", self.since);
        field(w, b"group", Some(self.group));
        field(w, b"complexity", self.complexity);
        if !self.doc_flags.is_empty() {
            w.bulk(b"doc_flags");
            write_flags(w, self.doc_flags);
        }
        field(w, b"deprecated_since", self.deprecated_since);
        field(w, b"replaced_by", self.replaced_by);
        if let Some(h) = self.history {
            w.bulk(b"history");
            w.set(h.len());
            for (version, change) in h {
                w.array(2);
                w.bulk(version.as_bytes());
                w.bulk(change.as_bytes());
            }
        }
        if let Some(a) = self.arguments {
            w.bulk(b"arguments");
            write_args(w, a);
        }
    }

    /// COMMAND INFO's key specs element (Redis's `addReplyCommandKeySpecs`).
    pub fn write_key_specs(&self, w: &mut ReplyWriter) {
        w.set(self.key_specs.len());
        for k in self.key_specs {
            k.write(w);
        }
    }

    /// The flags of the key at position `i` of `args` (the command line, name first)
    /// as Redis's `getKeysUsingKeySpecs` assigns them: those of the first key spec that
    /// finds it. None when no spec finds it (a spec Redis cannot search, or a bad count).
    /// Like Redis, a command with `variable_flags` (SET, BITFIELD) or an `incomplete` spec
    /// is left to its own key finder: None.
    pub fn key_flags(&self, args: &crate::Args, i: usize) -> Option<&'static [&'static str]> {
        let has = |k: &KeySpec, f: &str| k.flags.contains(&f);
        if self.key_specs.iter().any(|k| has(k, "variable_flags")) {
            return None;
        }
        for k in self.key_specs {
            if has(k, "not_key") {
                continue;
            }
            if has(k, "incomplete") {
                return None;
            }
            match k.keys(args) {
                Some(mut r) => {
                    if r.any(|j| j == i) {
                        return Some(k.flags);
                    }
                }
                None => return None,
            }
        }
        None
    }
}

impl KeySpec {
    fn write(&self, w: &mut ReplyWriter) {
        w.map(3 + self.notes.is_some() as usize);
        if let Some(n) = self.notes {
            w.bulk(b"notes");
            w.bulk(n.as_bytes());
        }
        w.bulk(b"flags");
        w.set(self.flags.len());
        for f in self.flags {
            w.simple(f.as_bytes());
        }
        let typed = |w: &mut ReplyWriter, kind: &[u8], fields: &[(&[u8], Field)]| {
            w.map(2);
            w.bulk(b"type");
            w.bulk(kind);
            w.bulk(b"spec");
            w.map(fields.len());
            for (k, v) in fields {
                w.bulk(k);
                match v {
                    Field::Int(n) => w.int(*n),
                    Field::Str(s) => w.bulk(s.as_bytes()),
                }
            }
        };
        w.bulk(b"begin_search");
        match self.begin {
            BeginSearch::Unknown => typed(w, b"unknown", &[]),
            BeginSearch::Index(i) => typed(w, b"index", &[(b"index", Field::Int(i))]),
            BeginSearch::Keyword(kw, from) => typed(
                w,
                b"keyword",
                &[
                    (b"keyword", Field::Str(kw)),
                    (b"startfrom", Field::Int(from)),
                ],
            ),
        }
        w.bulk(b"find_keys");
        let (kind, names, values) = match self.find {
            FindKeys::Unknown => return typed(w, b"unknown", &[]),
            FindKeys::Range(v) => (&b"range"[..], ["lastkey", "keystep", "limit"], v),
            FindKeys::Keynum(v) => (&b"keynum"[..], ["keynumidx", "firstkey", "keystep"], v),
        };
        let fields = [0, 1, 2].map(|i| (names[i].as_bytes(), Field::Int(values[i])));
        typed(w, kind, &fields);
    }

    /// The positions this spec finds in `args`, as Redis's `getKeysUsingKeySpecs`: empty
    /// when a keyword is absent, None when the spec cannot be searched (unknown) or the
    /// line does not hold what it says (a bad count, a range past the end).
    fn keys(&self, args: &crate::Args) -> Option<impl Iterator<Item = usize>> {
        let argc = args.len() as i64;
        let first = match self.begin {
            BeginSearch::Unknown => return None,
            BeginSearch::Index(i) => i,
            BeginSearch::Keyword(kw, from) => {
                let start = if from > 0 { from } else { argc + from };
                let backwards = from <= 0;
                let is_kw = |j: &i64| args[*j as usize].eq_ignore_ascii_case(kw.as_bytes());
                // Redis stops at the line's end (or before the command name).
                let found = match (backwards, start >= argc || start < 1) {
                    (_, true) => None,
                    (true, false) => (2..=start).rev().find(is_kw),
                    (false, false) => (start..argc - 1).find(is_kw),
                };
                match found {
                    Some(j) => j + 1,
                    None => return Some((0..0).step_by(1)),
                }
            }
        };
        let (first, last, step) = match self.find {
            FindKeys::Unknown => return None,
            FindKeys::Range([lastkey, keystep, limit]) => {
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, keystep)
            }
            FindKeys::Keynum([keynumidx, firstkey, keystep]) => {
                let at = usize::try_from(first + keynumidx).ok()?;
                let n = crate::parse_i64(args.get(at)?).filter(|&n| n >= 0)?;
                let first = first + firstkey;
                (first, first.checked_add(n)? - 1, keystep)
            }
        };
        if last >= argc || last < first || first >= argc || first < 0 || step < 1 {
            return None;
        }
        Some((first as usize..last as usize + 1).step_by(step as usize))
    }
}

enum Field {
    Int(i64),
    Str(&'static str),
}

/// A flag list: a set of simple strings.
fn write_flags(w: &mut ReplyWriter, flags: &[&str]) {
    w.set(flags.len());
    for f in flags {
        w.simple(f.as_bytes());
    }
}

/// Redis's `addReplyCommandArgList`.
fn write_args(w: &mut ReplyWriter, args: &[DocArg]) {
    w.array(args.len());
    for a in args {
        let n = 2
            + (a.key_spec_index != -1) as usize
            + a.token.is_some() as usize
            + a.summary.is_some() as usize
            + a.since.is_some() as usize
            + a.deprecated_since.is_some() as usize
            + (a.flags != 0) as usize
            + a.arguments.is_some() as usize;
        w.map(n);
        w.bulk(b"name");
        w.bulk(a.name.as_bytes());
        w.bulk(b"type");
        w.bulk(a.kind.as_bytes());
        if a.key_spec_index != -1 {
            w.bulk(b"key_spec_index");
            w.int(a.key_spec_index as i64);
        }
        for (k, v) in [
            (&b"token"[..], a.token),
            (b"summary", a.summary),
            (b"since", a.since),
            (b"deprecated_since", a.deprecated_since),
        ] {
            if let Some(v) = v {
                w.bulk(k);
                w.bulk(v.as_bytes());
            }
        }
        if a.flags != 0 {
            w.bulk(b"flags");
            let names = [
                (ARG_OPTIONAL, "optional"),
                (ARG_MULTIPLE, "multiple"),
                (ARG_MULTIPLE_TOKEN, "multiple_token"),
            ];
            let set: Vec<&str> = names
                .iter()
                .filter(|(f, _)| a.flags & f != 0)
                .map(|(_, n)| *n)
                .collect();
            write_flags(w, &set);
        }
        if let Some(sub) = a.arguments {
            w.bulk(b"arguments");
            write_args(w, sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_found() {
        let t = command_docs::DOCS;
        assert!(t.windows(2).all(|p| p[0].name < p[1].name));
        assert_eq!(find("set").map(|d| d.group), Some("string"));
        assert_eq!(find("config|get").map(|d| d.group), Some("server"));
        assert!(find("nosuch").is_none());
    }

    #[test]
    fn key_specs_find_keys_as_redis() {
        let line = |s: &str| {
            crate::OwnedArgs::from_slices(&s.split(' ').map(str::as_bytes).collect::<Vec<_>>())
        };
        let z = find("zunionstore").unwrap();
        let a = line("zunionstore d 2 a b weights 1 2");
        assert_eq!(z.key_flags(&a.args(), 1), Some(&["OW", "update"][..]));
        assert_eq!(z.key_flags(&a.args(), 3), Some(&["RO", "access"][..]));
        assert_eq!(z.key_flags(&a.args(), 5), None);
        let g = find("georadius").unwrap();
        let a = line("georadius s 0 0 1 km store d");
        assert_eq!(g.key_flags(&a.args(), 7), Some(&["OW", "update"][..]));
        let bad = line("zunionstore d x a");
        assert_eq!(z.key_flags(&bad.args(), 3), None);
    }
}
