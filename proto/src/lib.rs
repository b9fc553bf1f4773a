//! percore's protocol layer: decoding client requests (RESP multibulk and inline commands),
//! encoding RESP2/RESP3 replies, scanning replies (for clients such as the load generator),
//! and the command table that every other layer reads.
//!
//! Invariants kept by this crate:
//! - No I/O, no clock, no global state.
//! - Decoding never copies an argument: arguments are spans of the caller's read buffer.
//! - Every input, however malformed, yields a value or a `ProtocolError`; nothing panics.

pub mod args;
pub mod command;
pub mod decode;
pub mod docs;
pub mod encode;
pub mod reply;

pub use args::{Args, OwnedArgs};
pub use command::{
    lookup, lookup_sub, resolve, subcommands, Cmd, CommandSpec, Flags, Merge, Route, CMD_COUNT,
    COMMANDS, SUBCOMMANDS,
};
pub use decode::{Decoded, Limits, ProtocolError, RequestDecoder, Span};
pub use encode::{Protocol, ReplyWriter};
pub use reply::{scan_reply, ReplyError, ReplyKind};

/// Parses a decimal integer exactly as Redis's `string2ll` does: optional `-`, no `+`, no
/// leading zeros, no spaces, no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > (i64::MAX as u64) + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    #[test]
    fn parse_i64_follows_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"1a"), None);
    }
}
