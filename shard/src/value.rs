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

impl Value {
    /// A string value as SET stores it: integer-encoded when possible.
    pub fn from_bytes(b: &[u8]) -> Value {
        if b.len() <= 20 {
            if let Some(i) = parse_i64(b) {
                return Value::Int(i);
            }
        }
        Value::Str {
            data: b.to_vec(),
            raw: false,
        }
    }

    /// The encoding name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Str { data, raw } => {
                if *raw || data.len() > EMBSTR_MAX {
                    "raw"
                } else {
                    "embstr"
                }
            }
        }
    }

    pub fn type_name(&self) -> &'static str {
        "string"
    }

    /// The string bytes, formatting an integer into `scratch`.
    pub fn as_bytes<'a>(&'a self, scratch: &'a mut itoa::Buffer) -> &'a [u8] {
        match self {
            Value::Int(i) => scratch.format(*i).as_bytes(),
            Value::Str { data, .. } => data,
        }
    }

    /// The string bytes, consuming the value (an integer is formatted).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Value::Int(i) => itoa::Buffer::new().format(i).as_bytes().to_vec(),
            Value::Str { data, .. } => data,
        }
    }

    /// Edits the string bytes in place (APPEND, SETRANGE); the result is a `raw` string, as
    /// Redis unshares and converts it. Returns the new length.
    pub fn edit_raw(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> usize {
        let mut data = std::mem::replace(self, Value::Int(0)).into_bytes();
        f(&mut data);
        let len = data.len();
        *self = Value::Str { data, raw: true };
        len
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.as_bytes(&mut itoa::Buffer::new()).to_vec()
    }

    pub fn str_len(&self) -> usize {
        match self {
            Value::Int(i) => itoa::Buffer::new().format(*i).len(),
            Value::Str { data, .. } => data.len(),
        }
    }

    /// Writes the value as a bulk string reply.
    #[inline]
    pub fn write_bulk(&self, out: &mut ReplyWriter) {
        match self {
            Value::Int(i) => out.bulk_int(*i),
            Value::Str { data, .. } => out.bulk(data),
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

/// A key's value with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    /// Absolute deadline in Unix milliseconds; 0 means no expiry.
    pub expire_at_ms: u64,
    /// Last access, in seconds of the server clock (LRU, OBJECT IDLETIME).
    pub access_s: u32,
    /// Logarithmic access counter and the minute it was last decayed (LFU, OBJECT FREQ).
    pub lfu: u8,
    pub lfu_ldt: u16,
}

impl Entry {
    pub fn new(value: Value, now_ms: u64) -> Self {
        Entry {
            value,
            expire_at_ms: 0,
            access_s: (now_ms / 1000) as u32,
            lfu: crate::evict::LFU_INIT_VAL,
            lfu_ldt: (now_ms / 60_000) as u16,
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
        assert_eq!(Value::from_bytes(b"123").encoding(), "int");
        assert_eq!(Value::from_bytes(b"-9223372036854775808").encoding(), "int");
        assert_eq!(
            Value::from_bytes(b"9223372036854775808").encoding(),
            "embstr"
        );
        assert_eq!(Value::from_bytes(b"007").encoding(), "embstr");
        assert_eq!(Value::from_bytes(&[b'a'; 44]).encoding(), "embstr");
        assert_eq!(Value::from_bytes(&[b'a'; 45]).encoding(), "raw");
        assert_eq!(Value::Int(-12).str_len(), 3);
    }
}
