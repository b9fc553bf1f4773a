//! DEBUG's keyspace side: the dataset and value digests (DEBUG DIGEST, DIGEST-VALUE), the
//! one-line report of DEBUG OBJECT, and the glob fuzz of DEBUG STRINGMATCH-TEST. The
//! server's `debug.rs` gates, routes and gathers; everything that reads a shard's values is
//! here.
//!
//! # Digests
//! Byte for byte Redis 7.0's (`debug.c`), so a digest taken from percore equals one taken
//! from Redis holding the same data, and test suites may compare the two. With SHA-1 and
//! 20-byte digests:
//!
//! - `xor(d, x)`: `d ^= SHA1(x)` — order-free, for unordered elements;
//! - `mix(d, x)`: `d = SHA1(d ^ SHA1(x))` — order-keeping.
//!
//! A value's digest starts from zero: `mix(type)` (the type code as a big-endian u32:
//! string 0, list 1, set 2, hash 4), then a string `mix(bytes)`, a list `mix(element)` for
//! each element in order, a set `xor(member)` for each member, a hash `xor(mix(mix(0, field),
//! value))` for each pair; then `xor("!!expire!!")` when the key has a deadline (whether it
//! has one, not when). Integers take part as their decimal text, so the digest does not see
//! encodings. A key's digest is the same steps continued from `mix(0, key)`.
//!
//! The dataset digest walks databases 0–15; a database holding keys mixes its number into
//! the result, `mix(final, db)`, then every key of it is xored in, `xor(final, key_digest)`.
//! Because keys combine by xor, each shard reports, per database, its key count and the xor
//! of its keys' SHA-1s ([`DatasetDigest`]); the server xors those across shards and only
//! then applies the database mixes in order ([`DatasetDigest::finish`]). The result is the
//! same whatever the shard count, the order keys were written in, or their encodings. As in
//! Redis, keys past their deadline but not yet reclaimed count (DEBUG looks at the table,
//! not through lazy expiry).
//!
//! Cost: DIGEST is O(keys + elements), about seven SHA-1s of short inputs per string key,
//! run by each shard over its own keys in one go (Redis blocks the whole server likewise);
//! DIGEST-VALUE and OBJECT are O(elements of the value).

use crate::dict::EntryRef;
use crate::glob::glob_match;
use crate::types::hash::HashRef;
use crate::types::list::{End, List};
use crate::types::set::SetRef;
use crate::value::ValueRef;
use crate::{Shard, DB_COUNT};
use percore_proto::parse_i64;

/// A 20-byte SHA-1 based digest, as Redis's `unsigned char digest[20]`.
pub type Digest = [u8; 20];

/// The digest of nothing: an empty dataset, a missing key.
pub const ZERO: Digest = [0; 20];

fn sha1(data: &[u8]) -> Digest {
    sha1_smol::Sha1::from(data).digest().bytes()
}

fn xor_in(d: &mut Digest, other: &Digest) {
    for (a, b) in d.iter_mut().zip(other) {
        *a ^= b;
    }
}

/// `d ^= SHA1(data)` (Redis's `xorDigest`).
fn xor_digest(d: &mut Digest, data: &[u8]) {
    xor_in(d, &sha1(data));
}

/// `d = SHA1(d ^ SHA1(data))` (Redis's `mixDigest`).
fn mix_digest(d: &mut Digest, data: &[u8]) {
    xor_digest(d, data);
    *d = sha1(d);
}

/// Redis's type codes (`OBJ_STRING`, `OBJ_LIST`, `OBJ_SET`, `OBJ_ZSET`, `OBJ_HASH`).
fn type_code(v: ValueRef) -> u32 {
    match v {
        ValueRef::Int(_) | ValueRef::Str { .. } => 0,
        ValueRef::List(_) => 1,
        ValueRef::Set(_) => 2,
        ValueRef::ZSet(_) => 3,
        ValueRef::Hash(_) => 4,
    }
}

/// Continues `d` with a value and its deadline flag (Redis's `xorObjectDigest`).
fn object_digest(d: &mut Digest, v: ValueRef, has_deadline: bool) {
    mix_digest(d, &type_code(v).to_be_bytes());
    match v {
        ValueRef::Int(_) | ValueRef::Str { .. } => {
            mix_digest(d, v.as_bytes(&mut itoa::Buffer::new()));
        }
        ValueRef::List(l) => l.walk(End::Left, |e| {
            mix_digest(d, e);
            true
        }),
        ValueRef::Set(s) => s.for_each(|m| xor_digest(d, m)),
        // Each element's member then its score as "%.17g", xored in (Redis's
        // `xorObjectDigest`): the order of elements does not matter.
        ValueRef::ZSet(z) => z.for_each(|score, m| {
            let mut e = ZERO;
            mix_digest(&mut e, m);
            mix_digest(&mut e, &crate::ops::zset::fmt_score(score));
            xor_digest(d, &e);
        }),
        ValueRef::Hash(h) => h.for_each(|field, value| {
            let mut pair = ZERO;
            mix_digest(&mut pair, field);
            mix_digest(&mut pair, value.as_bytes(&mut itoa::Buffer::new()));
            xor_digest(d, &pair);
        }),
    }
    if has_deadline {
        xor_digest(d, b"!!expire!!");
    }
}

/// The digest of one value as DEBUG DIGEST-VALUE reports it: the value and whether its key
/// has a deadline, not the key's name.
pub fn value_digest(v: ValueRef, has_deadline: bool) -> Digest {
    let mut d = ZERO;
    object_digest(&mut d, v, has_deadline);
    d
}

/// The digest of a key and its entry, as DEBUG DIGEST combines them.
pub fn key_digest(key: &[u8], e: EntryRef) -> Digest {
    let mut d = ZERO;
    mix_digest(&mut d, key);
    object_digest(&mut d, e.value(), e.expire_at_ms() != 0);
    d
}

/// DEBUG DIGEST-VALUE for `key` in `db`: 40 zeros (as [`ZERO`]) for a missing key. A key
/// past its deadline is still read (Redis's DEBUG looks at the table): no lazy expiry, no
/// LRU/LFU update.
pub fn digest_value(sh: &Shard, db: usize, key: &[u8]) -> Digest {
    match sh.dbs[db].dict.peek(key) {
        Some(e) => value_digest(e.value(), e.expire_at_ms() != 0),
        None => ZERO,
    }
}

/// One shard's part of DEBUG DIGEST, or several shards' merged: per database, the number of
/// keys and the xor of SHA-1s of their key digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetDigest {
    dbs: [(u64, Digest); DB_COUNT],
}

impl Default for DatasetDigest {
    fn default() -> Self {
        DatasetDigest {
            dbs: [(0, ZERO); DB_COUNT],
        }
    }
}

impl DatasetDigest {
    /// Walks every database of `sh` once. O(keys + elements); does not yield (a walk cut in
    /// pieces could meet a resized table and see a key twice, which an xor would cancel).
    pub fn of_shard(sh: &Shard) -> DatasetDigest {
        let mut out = DatasetDigest::default();
        for (db, part) in sh.dbs.iter().zip(out.dbs.iter_mut()) {
            if db.dict.is_empty() {
                continue;
            }
            part.0 = db.dict.len() as u64;
            let mut cursor = 0;
            loop {
                // An unmodified table's full cursor walk visits every entry exactly once.
                cursor = db
                    .dict
                    .scan(cursor, |k, e| xor_digest(&mut part.1, &key_digest(k, e)));
                if cursor == 0 {
                    break;
                }
            }
        }
        out
    }

    /// Adds another shard's part.
    pub fn merge(&mut self, other: &DatasetDigest) {
        for (a, b) in self.dbs.iter_mut().zip(other.dbs.iter()) {
            a.0 += b.0;
            xor_in(&mut a.1, &b.1);
        }
    }

    /// The dataset digest (Redis's `computeDatasetDigest`): zeros for an empty dataset.
    pub fn finish(&self) -> Digest {
        let mut d = ZERO;
        for (db, (keys, part)) in self.dbs.iter().enumerate() {
            if *keys == 0 {
                continue;
            }
            mix_digest(&mut d, &(db as u32).to_be_bytes());
            xor_in(&mut d, part);
        }
        d
    }
}

/// A digest as 40 lowercase hex digits, as Redis prints it.
pub fn hex(d: &Digest) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(40);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// DEBUG OBJECT's status line for `key` in `db`, or None when the key is not in the table
/// (a key past its deadline but not yet reclaimed is reported, as Redis does):
///
/// `Value at:<addr> refcount:<n> encoding:<enc> serializedlength:<n> lru:<n>
/// lru_seconds_idle:<n>`, and for a list ` ql_nodes:<n> ql_avg_node:<f> ql_listpack_max:<fill>
/// ql_compressed:0 ql_uncompressed_size:<bytes>`.
///
/// - `Value at`: where the entry's key lives in memory (an identity, as Redis's pointer).
/// - `encoding`: OBJECT ENCODING's answer; `refcount`: OBJECT REFCOUNT's.
/// - `serializedlength`: the bytes Redis 7.0 would write for the value in an RDB file with
///   `rdbcompression no` ([`serialized_len`]); percore's own snapshot format differs.
/// - `lru`: the entry's LRU/LFU word in Redis's 24 bits (seconds under an LRU or no policy;
///   the decay minute and counter under LFU). `lru_seconds_idle`: OBJECT IDLETIME's answer
///   under an LRU policy; under LFU, the minutes since the last access, in seconds (Redis
///   reads its LFU word as a clock there and prints a meaningless number).
/// - For a list: its nodes, entries per node, `list-max-listpack-size`, whether
///   `list-compress-depth` compresses (Redis prints the list's depth != 0; percore's lists
///   follow the setting of the moment), and the bytes its nodes hold uncompressed.
///
/// Reads only: no lazy expiry, no LRU/LFU update. O(elements of the value).
pub fn object_info(sh: &Shard, db: usize, key: &[u8], now_ms: u64) -> Option<String> {
    let e = sh.dbs[db].dict.peek(key)?;
    let v = e.value();
    let word = e.clock();
    let idle_s = if sh.config.evict.policy.is_lfu() {
        let minute = (now_ms / 60_000) as u16;
        minute.wrapping_sub((word >> 8) as u16) as u64 * 60
    } else {
        crate::evict::idle_s(word, now_ms)
    };
    let mut line = format!(
        "Value at:{:p} refcount:{} encoding:{} serializedlength:{} lru:{} lru_seconds_idle:{}",
        e.key().as_ptr(),
        crate::ops::keyspace::refcount(v),
        v.encoding(),
        serialized_len(v),
        word & 0xFF_FFFF,
        idle_s
    );
    if let ValueRef::List(l) = v {
        let nodes = l.node_count();
        let bytes: usize = l.node_sizes().iter().map(|&(_, b)| b).sum();
        line.push_str(&format!(
            " ql_nodes:{nodes} ql_avg_node:{:.2} ql_listpack_max:{} ql_compressed:{} ql_uncompressed_size:{bytes}",
            l.len() as f64 / nodes.max(1) as f64,
            sh.config.list_limits.fill,
            (sh.config.list_limits.compress_depth != 0) as u8,
        ));
    }
    Some(line)
}

/// Bytes of an RDB length prefix (`rdbSaveLen`).
fn rdb_len_bytes(n: usize) -> usize {
    match n {
        0..=63 => 1,
        64..=16_383 => 2,
        _ if n as u64 <= u32::MAX as u64 => 5,
        _ => 9,
    }
}

/// Bytes of an integer in RDB's packed forms (`rdbEncodeInteger`), if it fits one.
fn rdb_int_bytes(v: i64) -> Option<usize> {
    if i8::try_from(v).is_ok() {
        Some(2)
    } else if i16::try_from(v).is_ok() {
        Some(3)
    } else if i32::try_from(v).is_ok() {
        Some(5)
    } else {
        None
    }
}

/// Bytes of a string in an RDB file without compression (`rdbSaveRawString`): short
/// canonical integers are packed.
fn rdb_string_bytes(b: &[u8]) -> usize {
    if b.len() <= 11 {
        if let Some(n) = parse_i64(b).and_then(rdb_int_bytes) {
            return n;
        }
    }
    rdb_len_bytes(b.len()) + b.len()
}

/// Bytes of a string value in an RDB file (`rdbSaveStringObject`): an integer is packed when
/// it fits 32 bits, else written as its text.
fn rdb_value_bytes(v: ValueRef) -> usize {
    match v {
        ValueRef::Int(i) => rdb_int_bytes(i).unwrap_or_else(|| {
            let n = itoa::Buffer::new().format(i).len();
            rdb_len_bytes(n) + n
        }),
        _ => rdb_string_bytes(v.as_bytes(&mut itoa::Buffer::new())),
    }
}

/// Bytes of one element in a Redis listpack: its encoding and data, then its back length.
fn listpack_entry_bytes(e: &[u8]) -> usize {
    let body = match parse_i64(e) {
        Some(0..=127) => 1,
        Some(-4096..=4095) => 2,
        Some(v) if i16::try_from(v).is_ok() => 3,
        Some(-8_388_608..=8_388_607) => 4,
        Some(v) if i32::try_from(v).is_ok() => 5,
        Some(_) => 9,
        None if e.len() < 64 => 1 + e.len(),
        None if e.len() < 4096 => 2 + e.len(),
        None => 5 + e.len(),
    };
    let back = match body {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    body + back
}

/// Bytes of a Redis listpack holding `elements` (6 bytes of header, 1 of end mark).
fn listpack_bytes<'a>(elements: impl Iterator<Item = &'a [u8]>) -> usize {
    7 + elements.map(listpack_entry_bytes).sum::<usize>()
}

/// A listpack or intset blob in an RDB file: a length-prefixed string.
fn rdb_blob_bytes(n: usize) -> usize {
    rdb_len_bytes(n) + n
}

/// DEBUG OBJECT's `serializedlength`: the bytes Redis 7.0 writes for this value in an RDB
/// file with `rdbcompression no` (`rdbSavedObjectLen`, the key and type byte excluded), in the
/// encoding Redis would have: a small hash as a listpack, a set of integers as an intset, a
/// list as quicklist nodes of listpacks (one per percore node). O(elements).
pub fn serialized_len(v: ValueRef) -> usize {
    match v {
        ValueRef::Int(_) | ValueRef::Str { .. } => rdb_value_bytes(v),
        ValueRef::Hash(h) => match h {
            HashRef::Pack(_) => {
                let mut elements = Vec::with_capacity(2 * h.len());
                h.for_each(|f, v| {
                    elements.push(f.to_vec());
                    elements.push(v.to_vec());
                });
                rdb_blob_bytes(listpack_bytes(elements.iter().map(Vec::as_slice)))
            }
            HashRef::Table(_) => {
                let mut n = rdb_len_bytes(h.len());
                h.for_each(|f, v| n += rdb_string_bytes(f) + rdb_value_bytes(v));
                n
            }
        },
        ValueRef::Set(s) => match s {
            SetRef::Ints(ints) => {
                let width = |v: i64| {
                    if i16::try_from(v).is_ok() {
                        2
                    } else if i32::try_from(v).is_ok() {
                        4
                    } else {
                        8
                    }
                };
                let w = match ints.len() {
                    0 => 2,
                    n => width(ints.get(0)).max(width(ints.get(n - 1))),
                };
                rdb_blob_bytes(8 + w * ints.len())
            }
            SetRef::Table(_) => {
                let mut n = rdb_len_bytes(s.len());
                s.for_each(|m| n += rdb_string_bytes(m));
                n
            }
        },
        ValueRef::List(l) => list_serialized_len(l),
        // A small sorted set is a listpack of member, score (as `d2string` writes it) pairs;
        // a large one its length, then each member and its score as 8 binary bytes.
        ValueRef::ZSet(z) if z.encoding() == "listpack" => {
            let mut elements = Vec::with_capacity(2 * z.len());
            z.for_each(|s, m| {
                elements.push(m.to_vec());
                elements.push(crate::ops::zset::fmt_score_packed(s));
            });
            rdb_blob_bytes(listpack_bytes(elements.iter().map(Vec::as_slice)))
        }
        ValueRef::ZSet(z) => {
            let mut n = rdb_len_bytes(z.len());
            z.for_each(|_, m| n += rdb_string_bytes(m) + 8);
            n
        }
    }
}

/// A list as Redis 7.0 saves a quicklist: the node count, then per node its container kind
/// (one byte) and its listpack as a blob.
fn list_serialized_len(l: &List) -> usize {
    let mut elements = l.iter();
    let mut n = rdb_len_bytes(l.node_count());
    for (count, _) in l.node_sizes() {
        let node: Vec<_> = elements.by_ref().take(count).collect();
        n += 1 + rdb_blob_bytes(listpack_bytes(node.iter().map(|e| &e[..])));
    }
    n
}

/// DEBUG STRINGMATCH-TEST's work, as Redis's `stringmatchlen_fuzz_test`: `cycles` random
/// patterns and subjects of 0–31 bytes below 128 (every glob metacharacter among them)
/// matched with [`glob_match`], half of them case-insensitively. Returns how many matched;
/// the test is that nothing panicked or hung. `rng` is the caller's xorshift state.
/// O(cycles × 32²) at worst.
pub fn stringmatch_fuzz(cycles: usize, rng: &mut u64) -> usize {
    let (mut subject, mut pattern) = ([0u8; 32], [0u8; 32]);
    let mut matches = 0;
    for _ in 0..cycles {
        let r = crate::xorshift(rng);
        let (slen, plen, nocase) = (
            (r % 32) as usize,
            ((r >> 8) % 32) as usize,
            r >> 16 & 1 == 1,
        );
        // Eight 7-bit bytes per draw.
        for chunk in subject[..slen]
            .chunks_mut(8)
            .chain(pattern[..plen].chunks_mut(8))
        {
            let r = crate::xorshift(rng).to_le_bytes();
            for (b, r) in chunk.iter_mut().zip(r) {
                *b = r & 0x7f;
            }
        }
        matches += glob_match(&pattern[..plen], &subject[..slen], nocase) as usize;
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, shard};
    use crate::types::hash::Hash;
    use crate::types::hash::HashLimits;
    use crate::types::list::ListLimits;
    use crate::types::set::Set;
    use crate::types::set::SetLimits;
    use crate::{Entry, Value};

    const T0: u64 = 1_700_000_000_000;

    fn list(elements: &[&str]) -> Value {
        Value::List(Box::new(List::from_elements(
            elements.iter().map(|e| e.as_bytes()),
            ListLimits::default(),
        )))
    }

    fn set(members: &[&str], limits: SetLimits) -> Value {
        Value::Set(Box::new(Set::from_members(
            members.iter().map(|m| m.as_bytes()),
            limits,
            7,
        )))
    }

    fn hash(pairs: &[(&str, &str)], limits: HashLimits) -> Value {
        Value::Hash(Box::new(Hash::from_pairs(
            pairs.iter().map(|(f, v)| (f.as_bytes(), v.as_bytes())),
            limits,
            7,
        )))
    }

    fn str_value(s: &str) -> Value {
        Value::from_bytes(s.as_bytes())
    }

    fn put(sh: &mut Shard, db: usize, key: &str, v: Value, deadline_ms: u64) {
        let mut e = Entry::new(v, T0);
        e.expire_at_ms = deadline_ms;
        sh.store(db, key.as_bytes(), e);
    }

    fn vd(v: &Value, deadline: bool) -> String {
        hex(&value_digest(v.as_ref(), deadline))
    }

    fn dataset(sh: &Shard) -> String {
        hex(&DatasetDigest::of_shard(sh).finish())
    }

    /// Digests taken from redis-server 7.0.15 (DEBUG DIGEST-VALUE / DEBUG DIGEST) for the
    /// same data.
    #[test]
    fn digests_are_redis_7_0s() {
        let d = ZERO;
        assert_eq!(hex(&d), "0000000000000000000000000000000000000000");
        assert_eq!(
            vd(&str_value("hello"), false),
            "36b23a1456b2dce2c3ed252c456761301dba8060"
        );
        assert_eq!(
            vd(&str_value("hello"), true),
            "d037c4eb8a8b36b602fbced4000daeab0714c1e3"
        );
        assert_eq!(
            vd(&str_value("12345"), false),
            "e1cf90774e995ae03de66e8109dc5cb9d9c2dc83"
        );
        assert_eq!(
            vd(&list(&["a", "b"]), false),
            "62f55a532623cf6c3d81081db480b6fd8461eb3f"
        );
        assert_eq!(
            vd(&set(&["x", "1"], SetLimits::default()), false),
            "96257d5cc29f1c46ff96a88360b5c99de66ae13f"
        );
        assert_eq!(
            vd(
                &hash(&[("f", "v"), ("g", "w")], HashLimits::default()),
                false
            ),
            "d127864ed50239662bf61bafc9bda63c17da5b37"
        );

        let mut sh = shard();
        assert_eq!(dataset(&sh), hex(&ZERO), "an empty dataset");
        put(&mut sh, 0, "s", str_value("hello"), T0 + 100_000_000);
        put(&mut sh, 0, "n", str_value("12345"), 0);
        put(&mut sh, 0, "st", set(&["x", "1"], SetLimits::default()), 0);
        let h = hash(&[("f", "v"), ("g", "w")], HashLimits::default());
        put(&mut sh, 0, "h", h, 0);
        assert_eq!(dataset(&sh), "5544dff24dbbc15c2b8f7012bfd43a24c038a459");
        put(&mut sh, 3, "a", str_value("1"), 0);
        put(
            &mut sh,
            3,
            "ints",
            set(&["1", "2", "3"], SetLimits::default()),
            0,
        );
        assert_eq!(dataset(&sh), "ebc8ea2b4cc79a9c9430ecd827b27842c918179e");
        assert_eq!(
            hex(&digest_value(&sh, 3, b"ints")),
            "2a462a3f51a1db89738ebbeef0c47ce1bbc85246"
        );
        assert_eq!(
            hex(&digest_value(&sh, 3, b"a")),
            "b4fc66738120fba0b5aa500ab5c2bf89cea1c5da"
        );
        assert_eq!(digest_value(&sh, 3, b"nokey"), ZERO);
        assert_eq!(digest_value(&sh, 0, b"a"), ZERO, "another database");
    }

    /// The same keys written in another order, split over one or three shards, give one
    /// digest: per-database parts combine by xor before the database mixes.
    #[test]
    fn dataset_digest_ignores_order_and_shard_count() {
        let keys: Vec<(usize, String, Value, u64)> = (0..300)
            .map(|i| {
                let v = match i % 4 {
                    0 => str_value(&format!("v{i}")),
                    1 => str_value(&i.to_string()),
                    2 => set(&["a", "b", &i.to_string()], SetLimits::default()),
                    _ => hash(
                        &[("f", "1"), ("g", &format!("x{i}"))],
                        HashLimits::default(),
                    ),
                };
                let deadline = if i % 7 == 0 { T0 + 60_000 } else { 0 };
                (i % 3 * 5, format!("key:{i}"), v, deadline)
            })
            .collect();
        let mut one = shard();
        for (db, k, v, at) in &keys {
            put(&mut one, *db, k, v.clone(), *at);
        }
        let mut reversed = shard();
        for (db, k, v, at) in keys.iter().rev() {
            put(&mut reversed, *db, k, v.clone(), *at);
        }
        let mut three = [shard(), shard(), shard()];
        for (i, (db, k, v, at)) in keys.iter().enumerate().rev() {
            put(&mut three[(i * 7) % 3], *db, k, v.clone(), *at);
        }
        let whole = dataset(&one);
        assert_eq!(dataset(&reversed), whole);
        let mut merged = DatasetDigest::default();
        for sh in &three {
            merged.merge(&DatasetDigest::of_shard(sh));
        }
        assert_eq!(hex(&merged.finish()), whole);
        // One database's part alone is not the whole.
        assert_ne!(dataset(&three[0]), whole);
        // A key moved to another database changes it.
        let (db, k, v, at) = &keys[0];
        one.delete(*db, k.as_bytes());
        put(&mut one, db + 1, k, v.clone(), *at);
        assert_ne!(dataset(&one), whole);
    }

    /// Encodings do not show: an intset and a table of the same members, a listpack and a
    /// table of the same pairs, an integer and the same digits as a raw string.
    #[test]
    fn digests_ignore_encodings() {
        let members = ["1", "2", "300000", "-7"];
        let small = set(&members, SetLimits::default());
        let table = set(
            &members,
            SetLimits {
                max_intset_entries: 0,
            },
        );
        assert_eq!(small.as_ref().encoding(), "intset");
        assert_eq!(table.as_ref().encoding(), "hashtable");
        assert_eq!(vd(&small, false), vd(&table, false));

        let pairs = [("f", "1"), ("g", "text"), ("h", "-9")];
        let pack = hash(&pairs, HashLimits::default());
        let table = hash(
            &pairs,
            HashLimits {
                max_listpack_entries: 0,
                max_listpack_value: 0,
            },
        );
        assert_eq!(pack.as_ref().encoding(), "listpack");
        assert_eq!(table.as_ref().encoding(), "hashtable");
        assert_eq!(vd(&pack, false), vd(&table, false));

        let raw = Value::Str {
            data: b"12345".to_vec(),
            raw: true,
        };
        assert_eq!(vd(&raw, false), vd(&Value::Int(12345), false));
    }

    /// What the digest must see: a write, a list's order, a deadline, a key's type.
    #[test]
    fn digests_change_with_the_data() {
        let mut sh = shard();
        run(&mut sh, T0, &["SET", "a", "1"]);
        run(&mut sh, T0, &["HSET", "h", "f", "v"]);
        let before = dataset(&sh);
        run(&mut sh, T0, &["HSET", "h", "f", "w"]);
        let after = dataset(&sh);
        assert_ne!(after, before);
        run(&mut sh, T0, &["HSET", "h", "f", "v"]);
        assert_eq!(dataset(&sh), before, "the same data again");
        run(&mut sh, T0, &["PEXPIRE", "a", "100000"]);
        assert_ne!(dataset(&sh), before, "a deadline counts");
        run(&mut sh, T0, &["PERSIST", "a"]);
        assert_eq!(dataset(&sh), before);

        assert_ne!(vd(&list(&["a", "b"]), false), vd(&list(&["b", "a"]), false));
        assert_ne!(
            vd(&str_value("a"), false),
            vd(&set(&["a"], SetLimits::default()), false),
            "the type is in the digest"
        );
        // A set's members are xored: no order, and two sets of other members differ.
        assert_eq!(
            vd(&set(&["a", "b"], SetLimits::default()), false),
            vd(&set(&["b", "a"], SetLimits::default()), false)
        );
        assert_ne!(
            vd(&set(&["a", "b"], SetLimits::default()), false),
            vd(&set(&["a", "c"], SetLimits::default()), false)
        );
    }

    /// DEBUG OBJECT's serializedlength, from redis-server 7.0.15 run with
    /// `rdbcompression no`.
    #[test]
    fn serialized_lengths_are_redis_rdb_sizes() {
        let len = |v: &Value| serialized_len(v.as_ref());
        assert_eq!(len(&str_value("hello")), 6);
        assert_eq!(len(&str_value("12345")), 3);
        assert_eq!(len(&str_value("1234567")), 5);
        assert_eq!(len(&str_value("12345678901")), 12);
        assert_eq!(len(&str_value("-5")), 2);
        assert_eq!(len(&str_value(&"x".repeat(50))), 51);
        assert_eq!(len(&str_value("007")), 4);
        let y70 = "y".repeat(70);
        let l = list(&["a", "b", "c", "12345", "-1", "100000", &y70]);
        assert_eq!(len(&l), 105);
        assert_eq!(len(&set(&["1", "2", "3"], SetLimits::default())), 15);
        assert_eq!(len(&set(&["1", "70000"], SetLimits::default())), 17);
        assert_eq!(len(&set(&["a", "b"], SetLimits::default())), 5);
        let z70 = "z".repeat(70);
        let pairs = [
            ("f", "v"),
            ("n", "123"),
            ("big", "1234567890123"),
            ("s", z70.as_str()),
        ];
        assert_eq!(len(&hash(&pairs, HashLimits::default())), 101);
        let table = HashLimits {
            max_listpack_entries: 1,
            max_listpack_value: 64,
        };
        assert_eq!(len(&hash(&[("f", "v"), ("g", "17")], table)), 9);
        assert_eq!(len(&hash(&[("f", "v")], HashLimits::default())), 14);
    }

    #[test]
    fn object_info_reports_the_entry() {
        let mut sh = shard();
        let now = T0 + 5_000;
        run(&mut sh, T0, &["SET", "s", "hello"]);
        run(&mut sh, T0, &["SET", "n", "5"]);
        run(&mut sh, T0, &["SET", "gone", "x", "PX", "10"]);
        put(&mut sh, 0, "l", list(&["a", "b", "c"]), 0);
        let s = object_info(&sh, 0, b"s", now).expect("present");
        assert!(s.starts_with("Value at:0x"), "{s}");
        let lru = (T0 / 1000) & 0xFF_FFFF;
        assert!(
            s.ends_with(&format!(
                " refcount:1 encoding:embstr serializedlength:6 lru:{lru} lru_seconds_idle:5"
            )),
            "{s}"
        );
        let n = object_info(&sh, 0, b"n", now).expect("present");
        assert!(
            n.contains(" refcount:2147483647 encoding:int serializedlength:2 "),
            "{n}"
        );
        let l = object_info(&sh, 0, b"l", now).expect("present");
        assert!(
            l.contains(" encoding:quicklist serializedlength:")
                && l.ends_with(" ql_nodes:1 ql_avg_node:3.00 ql_listpack_max:-2 ql_compressed:1 ql_uncompressed_size:9"),
            "{l}"
        );
        // `ql_compressed` follows list-compress-depth (percore's default 1; Redis's 0).
        sh.config.list_limits.compress_depth = 0;
        let l = object_info(&sh, 0, b"l", now).expect("present");
        assert!(l.contains(" ql_compressed:0 "), "{l}");
        // Past its deadline but still in the table: reported, as Redis does, and left there.
        assert!(object_info(&sh, 0, b"gone", now).is_some());
        assert_eq!(sh.db_len(0), 4);
        assert_eq!(object_info(&sh, 0, b"missing", now), None);
        assert_eq!(object_info(&sh, 1, b"s", now), None);
    }

    /// DEBUG STRINGMATCH-TEST's fuzz: every byte below 128 in patterns and subjects, nothing
    /// panics, the same seed gives the same count, and some patterns match.
    #[test]
    fn stringmatch_fuzz_survives_random_patterns() {
        let (mut a, mut b) = (0x9E37_79B9_7F4A_7C15u64, 0x9E37_79B9_7F4A_7C15u64);
        let n = stringmatch_fuzz(100_000, &mut a);
        assert_eq!(stringmatch_fuzz(100_000, &mut b), n);
        assert!(n > 0 && n < 100_000, "{n}");
        // Long star-laden patterns stay fast (no recursion, no exponential backtracking).
        let pattern = "a*".repeat(5_000) + "b";
        assert!(!glob_match(pattern.as_bytes(), &[b'a'; 20_000], false));
    }
}
