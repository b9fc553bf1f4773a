//! Command implementations, grouped by family as Redis groups them (`t_string.c` →
//! `string.rs`, `t_hash.c` → `hash.rs`, `db.c`/`expire.c` → `keyspace.rs`).

pub mod hash;
pub mod keyspace;
pub mod string;

use crate::err;

/// ASCII case-insensitive comparison for option names.
#[inline]
pub fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// An integer argument, with Redis's error when it is not one.
#[inline]
pub fn parse_int(a: &[u8]) -> Result<i64, &'static str> {
    percore_proto::parse_i64(a).ok_or(err::NOT_INT)
}
