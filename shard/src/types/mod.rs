//! Encodings of the collection types, one file per type (the commands that use them live in
//! `crate::ops`, by family).

pub mod geohash;
pub mod hash;
pub mod hll;
pub mod list;
pub mod set;
pub mod zset;
