//! Values and entries.
//!
//! A string is stored as an integer when Redis would (`tryObjectEncoding`: at most 20 bytes
//! that `string2ll` accepts), else as bytes. `raw` records whether Redis would report the
//! bytes as `raw` rather than `embstr` (APPEND and SETRANGE make raw strings; strings over 44
//! bytes are always raw), so OBJECT ENCODING answers as Redis does.

use percore_proto::{parse_i64, ReplyWriter};

/// Longest string Redis keeps in the `embstr` encoding.
pub const EMBSTR_MAX: usize = 44;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str { data: Vec<u8>, raw: bool },
}

/// A value as stored in the table, borrowed: what readers see of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Int(i64),
    Str { data: &'a [u8], raw: bool },
}

impl Value {
    /// A string value as SET stores it: integer-encoded when possible.
    pub fn from_bytes(b: &[u8]) -> Value {
        ValueRef::parse(b).to_value()
    }

    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Int(i) => ValueRef::Int(*i),
            Value::Str { data, raw } => ValueRef::Str { data, raw: *raw },
        }
    }

    /// The string bytes, consuming the value (an integer is formatted).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Value::Int(i) => itoa::Buffer::new().format(i).as_bytes().to_vec(),
            Value::Str { data, .. } => data,
        }
    }

    /// Approximate heap bytes, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Int(_) => 0,
            Value::Str { data, .. } => data.capacity(),
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

    /// The encoding name OBJECT ENCODING reports.
    pub fn encoding(self) -> &'static str {
        match self {
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
        "string"
    }

    /// The string bytes, formatting an integer into `scratch`.
    pub fn as_bytes(self, scratch: &'a mut itoa::Buffer) -> &'a [u8] {
        match self {
            ValueRef::Int(i) => scratch.format(i).as_bytes(),
            ValueRef::Str { data, .. } => data,
        }
    }

    pub fn to_vec(self) -> Vec<u8> {
        self.as_bytes(&mut itoa::Buffer::new()).to_vec()
    }

    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Str { data, raw } => Value::Str {
                data: data.to_vec(),
                raw,
            },
        }
    }

    pub fn str_len(self) -> usize {
        match self {
            ValueRef::Int(i) => itoa::Buffer::new().format(i).len(),
            ValueRef::Str { data, .. } => data.len(),
        }
    }

    /// Writes the value as a bulk string reply.
    #[inline]
    pub fn write_bulk(self, out: &mut ReplyWriter) {
        match self {
            ValueRef::Int(i) => out.bulk_int(i),
            ValueRef::Str { data, .. } => out.bulk(data),
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
