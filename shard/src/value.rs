//! Values and entries.
//!
//! A string is stored as an integer when Redis would (`tryObjectEncoding`: at most 20 bytes
//! that `string2ll` accepts), else as bytes. `raw` records whether Redis would report the
//! bytes as `raw` rather than `embstr` (APPEND and SETRANGE make raw strings; strings over 44
//! bytes are always raw), so OBJECT ENCODING answers as Redis does.

use crate::types::hash::{Hash, HashRef};
use crate::types::list::List;
use crate::types::set::{Set, SetRef};
use crate::types::zset::{ZSet, ZSetRef};
use percore_proto::{parse_i64, ReplyWriter};

/// Longest string Redis keeps in the `embstr` encoding.
pub const EMBSTR_MAX: usize = 44;

#[derive(Debug)]
pub enum Value {
    Int(i64),
    Str { data: Vec<u8>, raw: bool },
    Hash(Box<Hash>),
    Set(Box<Set>),
    List(Box<List>),
    ZSet(Box<ZSet>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for Value {}

impl Clone for Value {
    fn clone(&self) -> Value {
        self.as_ref().to_value()
    }
}

/// A value as stored in the table, borrowed: what readers see of an entry.
///
/// The string accessors ([`ValueRef::as_bytes`], [`ValueRef::write_bulk`], …) are for
/// strings: commands check [`ValueRef::is_string`] first and answer WRONGTYPE otherwise. On
/// a collection they see an empty string.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    Int(i64),
    Str { data: &'a [u8], raw: bool },
    Hash(HashRef<'a>),
    Set(SetRef<'a>),
    List(&'a List),
    ZSet(ZSetRef<'a>),
}

impl PartialEq for ValueRef<'_> {
    fn eq(&self, other: &ValueRef) -> bool {
        match (*self, *other) {
            (ValueRef::Int(a), ValueRef::Int(b)) => a == b,
            (ValueRef::Str { data: a, raw: ra }, ValueRef::Str { data: b, raw: rb }) => {
                a == b && ra == rb
            }
            (ValueRef::Hash(a), ValueRef::Hash(b)) => a.same_pairs(b),
            (ValueRef::Set(a), ValueRef::Set(b)) => a.same_members(b),
            (ValueRef::List(a), ValueRef::List(b)) => a == b,
            (ValueRef::ZSet(a), ValueRef::ZSet(b)) => a.same_elems(b),
            _ => false,
        }
    }
}

impl Eq for ValueRef<'_> {}

impl Value {
    /// A string value as SET stores it: integer-encoded when possible.
    pub fn from_bytes(b: &[u8]) -> Value {
        ValueRef::parse(b).to_value()
    }

    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Int(i) => ValueRef::Int(*i),
            Value::Str { data, raw } => ValueRef::Str { data, raw: *raw },
            Value::Hash(h) => ValueRef::Hash(h.view()),
            Value::Set(s) => ValueRef::Set(s.view()),
            Value::List(l) => ValueRef::List(l),
            Value::ZSet(z) => ValueRef::ZSet(z.view()),
        }
    }

    /// The string bytes, consuming the value (an integer is formatted; a collection, which
    /// callers never pass, gives nothing).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Value::Int(i) => itoa::Buffer::new().format(i).as_bytes().to_vec(),
            Value::Str { data, .. } => data,
            Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_) => Vec::new(),
        }
    }

    /// Approximate heap bytes, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Int(_) => 0,
            Value::Str { data, .. } => data.capacity(),
            Value::Hash(h) => std::mem::size_of::<Hash>() + h.heap_bytes(),
            Value::Set(s) => std::mem::size_of::<Set>() + s.heap_bytes(),
            Value::List(l) => std::mem::size_of::<List>() + l.heap_bytes(),
            Value::ZSet(z) => std::mem::size_of::<ZSet>() + z.heap_bytes(),
        }
    }
}

impl<'a> ValueRef<'a> {
    /// The bytes a client sent as SET stores them, without copying: integer-encoded when
    /// Redis would (`tryObjectEncoding`), else an `embstr`-style string.
    pub fn parse(b: &'a [u8]) -> ValueRef<'a> {
        if b.len() <= 20 {
            if let Some(i) = parse_i64(b) {
                return ValueRef::Int(i);
            }
        }
        ValueRef::Str {
            data: b,
            raw: false,
        }
    }

    /// Whether this is a string (stored as an integer or as bytes).
    #[inline]
    pub fn is_string(self) -> bool {
        !matches!(
            self,
            ValueRef::Hash(_) | ValueRef::Set(_) | ValueRef::List(_) | ValueRef::ZSet(_)
        )
    }

    /// The encoding name OBJECT ENCODING reports.
    pub fn encoding(self) -> &'static str {
        match self {
            ValueRef::Hash(h) => h.encoding(),
            ValueRef::Set(s) => s.encoding(),
            ValueRef::ZSet(z) => z.encoding(),
            ValueRef::List(_) => "quicklist",
            ValueRef::Int(_) => "int",
            ValueRef::Str { data, raw } => {
                if raw || data.len() > EMBSTR_MAX {
                    "raw"
                } else {
                    "embstr"
                }
            }
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            ValueRef::Hash(_) => "hash",
            ValueRef::Set(_) => "set",
            ValueRef::List(_) => "list",
            ValueRef::ZSet(_) => "zset",
            _ => "string",
        }
    }

    /// The string bytes, formatting an integer into `scratch`.
    pub fn as_bytes(self, scratch: &'a mut itoa::Buffer) -> &'a [u8] {
        match self {
            ValueRef::Int(i) => scratch.format(i).as_bytes(),
            ValueRef::Str { data, .. } => data,
            ValueRef::Hash(_) | ValueRef::Set(_) | ValueRef::List(_) | ValueRef::ZSet(_) => &[],
        }
    }

    pub fn to_vec(self) -> Vec<u8> {
        self.as_bytes(&mut itoa::Buffer::new()).to_vec()
    }

    /// An owned copy; a collection is copied whole (COPY), its tables keyed by `seed`'s
    /// default (see [`ValueRef::to_value_seeded`]).
    pub fn to_value(self) -> Value {
        self.to_value_seeded(0x9E37_79B9_7F4A_7C15)
    }

    /// An owned copy whose hash tables, if any, are keyed by `seed`.
    pub fn to_value_seeded(self, seed: u64) -> Value {
        match self {
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Str { data, raw } => Value::Str {
                data: data.to_vec(),
                raw,
            },
            ValueRef::Hash(h) => Value::Hash(Box::new(h.clone_with(seed))),
            ValueRef::Set(s) => Value::Set(Box::new(s.clone_with(seed))),
            ValueRef::List(l) => Value::List(Box::new(l.clone())),
            ValueRef::ZSet(z) => Value::ZSet(Box::new(z.clone_with(seed))),
        }
    }

    pub fn str_len(self) -> usize {
        match self {
            ValueRef::Int(i) => itoa::Buffer::new().format(i).len(),
            ValueRef::Str { data, .. } => data.len(),
            ValueRef::Hash(_) | ValueRef::Set(_) | ValueRef::List(_) | ValueRef::ZSet(_) => 0,
        }
    }

    /// Writes the value as a bulk string reply.
    #[inline]
    pub fn write_bulk(self, out: &mut ReplyWriter) {
        match self {
            ValueRef::Int(i) => out.bulk_int(i),
            ValueRef::Str { data, .. } => out.bulk(data),
            ValueRef::Hash(_) | ValueRef::Set(_) | ValueRef::List(_) | ValueRef::ZSet(_) => {
                out.bulk(b"")
            }
        }
    }
}

/// An entry's LRU/LFU word, as the table stores it (see [`crate::evict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// A new key created at this time: the shard fills in the word its policy wants.
    Fresh { now_ms: u64 },
    /// A key moved from elsewhere keeps its word (RENAME, MOVE).
    Kept(u32),
}

/// A key's value with its metadata, owned: how entries travel into and out of the table
/// (the table itself stores them packed, see [`crate::dict`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    /// Absolute deadline in Unix milliseconds; 0 means no expiry.
    pub expire_at_ms: u64,
    pub clock: Clock,
}

impl Entry {
    pub fn new(value: Value, now_ms: u64) -> Self {
        Entry {
            value,
            expire_at_ms: 0,
            clock: Clock::Fresh { now_ms },
        }
    }

    /// Redis's `keyIsExpired`: expired once the clock is past the deadline.
    #[inline]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms != 0 && now_ms > self.expire_at_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_redis() {
        let enc = |b: &[u8]| Value::from_bytes(b).as_ref().encoding();
        assert_eq!(enc(b"123"), "int");
        assert_eq!(enc(b"-9223372036854775808"), "int");
        assert_eq!(enc(b"9223372036854775808"), "embstr");
        assert_eq!(enc(b"007"), "embstr");
        assert_eq!(enc(&[b'a'; 44]), "embstr");
        assert_eq!(enc(&[b'a'; 45]), "raw");
        assert_eq!(Value::Int(-12).as_ref().str_len(), 3);
    }
}
