//! One value in Redis's RDB encoding: a type byte, then the value (Redis's
//! `rdbSaveObjectType` + `rdbSaveObject`, `rdbLoadObjectType` + `rdbLoadObject`).
//!
//! Reading accepts every encoding Redis 7.0 and older write, and 7.2's set listpack:
//!
//! | type | code | body |
//! |------|------|------|
//! | string | 0 | an RDB string (raw, int8/16/32 or LZF) |
//! | list | 1, 10, 14, 18 | strings; one ziplist; ziplist nodes; QUICKLIST_2 nodes (plain or listpack) |
//! | set | 2, 11, 20 | strings; an intset blob; a listpack |
//! | zset | 3, 5, 12, 17 | member + ASCII score; member + binary score; ziplist; listpack |
//! | hash | 4, 9, 13, 16 | field/value strings; zipmap; ziplist; listpack |
//!
//! Streams (15, 19, 21) and module values (6, 7) are refused: percore has neither. Every
//! length is checked against the input; no allocation is sized by a length beyond what the
//! remaining input could hold. Empty collections, duplicate members or fields and NaN
//! scores are refused, as Redis refuses them (it reports a corrupt payload). The value is
//! built in the encoding the shard's limits call for, as Redis converts after loading.
//!
//! Writing produces what Redis 7.0 writes: strings through `rdbSaveRawString` (integers
//! and LZF), a QUICKLIST_2 of listpack nodes filled as Redis's `quicklistPushTail` fills
//! them, an intset blob for an `intset`, listpacks for small hashes and sorted sets, and
//! the plain forms otherwise (a large sorted set from its greatest element down, as Redis
//! saves its skip list).

use super::listpack::{self, Item};
use super::{put_len, put_string, ziplist, Reader};
use crate::types::hash::{Hash, HashRef};
use crate::types::list::{End, List, ListLimits};
use crate::types::set::{Set, SetRef};
use crate::types::zset::{ZSet, ZSetRef};
use crate::{ShardConfig, Value, ValueRef};

/// RDB type codes (`RDB_TYPE_*`).
pub mod kind {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const SET_LISTPACK: u8 = 20;
    pub const STREAM_LISTPACKS_3: u8 = 21;
}

/// Why a value could not be read, and where (offset in the input the reader was given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub what: &'static str,
}

/// What [`DecodeError::what`] says of an empty collection: RESTORE refuses it, an RDB
/// file's loader skips it (as Redis 7.0 does).
pub const EMPTY: &str = "empty collection";

impl DecodeError {
    /// Whether the value was well formed but empty.
    pub fn is_empty_value(&self) -> bool {
        self.what == EMPTY
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}", self.what, self.offset)
    }
}

/// QUICKLIST_2 node containers.
const NODE_PLAIN: u64 = 1;
const NODE_PACKED: u64 = 2;

struct Ctx<'r, 'a> {
    r: &'r mut Reader<'a>,
    config: &'r ShardConfig,
    seed: u64,
}

impl Ctx<'_, '_> {
    fn fail<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.r.pos,
            what,
        })
    }

    fn len(&mut self) -> Result<u64, DecodeError> {
        match self.r.length() {
            Some(n) => Ok(n),
            None => self.fail("bad or truncated length"),
        }
    }

    /// A collection's element count: more than the remaining bytes could hold (each
    /// element takes at least one byte) is refused before anything is allocated for it.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.len()?;
        if n == 0 {
            return self.fail(EMPTY);
        }
        match usize::try_from(n) {
            Ok(n) if n <= self.r.remaining() => Ok(n),
            _ => self.fail("collection length past the end of the input"),
        }
    }

    fn string(&mut self) -> Result<Vec<u8>, DecodeError> {
        match self.r.string() {
            Some(s) => Ok(s),
            None => self.fail("bad or truncated string"),
        }
    }

    /// A blob's items through `decode` (a listpack or ziplist).
    fn items<'b>(
        &self,
        blob: &'b [u8],
        decode: fn(&'b [u8]) -> Result<Vec<Item<'b>>, &'static str>,
    ) -> Result<Vec<Item<'b>>, DecodeError> {
        decode(blob).or_else(|what| self.fail(what))
    }

    /// The items of a ziplist or listpack of pairs (a hash's fields and values, a sorted
    /// set's members and scores): an odd count is refused.
    fn pairs<'b>(&self, blob: &'b [u8], is_ziplist: bool) -> Result<Vec<Item<'b>>, DecodeError> {
        let items = match is_ziplist {
            true => self.items(blob, ziplist::decode)?,
            false => self.items(blob, listpack::decode)?,
        };
        match items.len() % 2 {
            0 => Ok(items),
            _ => self.fail("odd number of entries in a blob of pairs"),
        }
    }

    /// A score as `rdbLoadDoubleValue` reads it: a length byte (253 NaN, 254 +inf,
    /// 255 -inf) then that many ASCII bytes.
    fn ascii_score(&mut self) -> Result<f64, DecodeError> {
        let Some(n) = self.r.byte() else {
            return self.fail("truncated score");
        };
        match n {
            253 => self.fail("NaN score"),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => match self.r.take(n as usize).and_then(parse_score) {
                Some(s) => Ok(s),
                None => self.fail("bad score"),
            },
        }
    }

    fn binary_score(&mut self) -> Result<f64, DecodeError> {
        match self.r.take(8) {
            Some(b) => Ok(f64::from_le_bytes(b.try_into().expect("took 8 bytes"))),
            None => self.fail("truncated score"),
        }
    }
}

/// A score written as text: what `strtod` reads, not NaN.
fn parse_score(b: &[u8]) -> Option<f64> {
    crate::ops::zset::parse_float(b).filter(|s| !s.is_nan())
}

/// Reads one value (type byte, then body) at `r`, building collections in the encodings
/// `config`'s limits call for with tables keyed by `seed`. Bytes after the value are left
/// unread.
pub fn decode(r: &mut Reader, config: &ShardConfig, seed: u64) -> Result<Value, DecodeError> {
    let Some(t) = r.byte() else {
        return Err(DecodeError {
            offset: r.pos,
            what: "missing type",
        });
    };
    decode_body(t, r, config, seed)
}

/// Reads the body of a value of RDB type `t` (the type byte already read).
pub fn decode_body(
    t: u8,
    r: &mut Reader,
    config: &ShardConfig,
    seed: u64,
) -> Result<Value, DecodeError> {
    let mut c = Ctx { r, config, seed };
    match t {
        kind::STRING => Ok(Value::from_bytes(&c.string()?)),
        kind::LIST | kind::LIST_ZIPLIST | kind::LIST_QUICKLIST | kind::LIST_QUICKLIST_2 => {
            decode_list(t, &mut c)
        }
        kind::SET | kind::SET_INTSET | kind::SET_LISTPACK => decode_set(t, &mut c),
        kind::ZSET | kind::ZSET_2 | kind::ZSET_ZIPLIST | kind::ZSET_LISTPACK => {
            decode_zset(t, &mut c)
        }
        kind::HASH | kind::HASH_ZIPMAP | kind::HASH_ZIPLIST | kind::HASH_LISTPACK => {
            decode_hash(t, &mut c)
        }
        kind::STREAM_LISTPACKS | kind::STREAM_LISTPACKS_2 | kind::STREAM_LISTPACKS_3 => {
            c.fail("streams are not supported")
        }
        kind::MODULE_PRE_GA | kind::MODULE_2 => c.fail("module values are not supported"),
        _ => c.fail("unknown value type"),
    }
}

/// Steps over the body of a value of RDB type `t` without building it: what a loader does
/// with a value another shard keeps. Only the framing is checked (lengths and counts within
/// the input); the blobs inside are not opened.
pub fn skip_body(t: u8, r: &mut Reader) -> Result<(), DecodeError> {
    let fail = |r: &Reader, what| DecodeError {
        offset: r.pos,
        what,
    };
    let count = |r: &mut Reader| r.length().ok_or_else(|| fail(r, "bad length"));
    let string = |r: &mut Reader| {
        r.skip_string()
            .ok_or_else(|| fail(r, "bad or truncated string"))
    };
    match t {
        kind::STRING
        | kind::LIST_ZIPLIST
        | kind::SET_INTSET
        | kind::SET_LISTPACK
        | kind::ZSET_ZIPLIST
        | kind::ZSET_LISTPACK
        | kind::HASH_ZIPMAP
        | kind::HASH_ZIPLIST
        | kind::HASH_LISTPACK => string(r),
        kind::LIST | kind::SET | kind::LIST_QUICKLIST | kind::HASH => {
            let per = if t == kind::HASH { 2 } else { 1 };
            for _ in 0..count(r)? {
                for _ in 0..per {
                    string(r)?;
                }
            }
            Ok(())
        }
        kind::LIST_QUICKLIST_2 => {
            for _ in 0..count(r)? {
                count(r)?;
                string(r)?;
            }
            Ok(())
        }
        kind::ZSET | kind::ZSET_2 => {
            for _ in 0..count(r)? {
                string(r)?;
                let n = match (t, r.byte()) {
                    (kind::ZSET_2, Some(_)) => 7,
                    (_, Some(253..=255)) => 0,
                    (_, Some(n)) => n as usize,
                    (_, None) => return Err(fail(r, "truncated score")),
                };
                r.take(n).ok_or_else(|| fail(r, "truncated score"))?;
            }
            Ok(())
        }
        // Refused as reading them is: what the reader says about them is the error.
        _ => decode_body(t, r, &ShardConfig::default(), 1).map(drop),
    }
}

fn decode_list(t: u8, c: &mut Ctx) -> Result<Value, DecodeError> {
    let limits = c.config.list_limits;
    let mut l = List::default();
    let mut buf = itoa::Buffer::new();
    let mut push_items = |l: &mut List, items: Vec<Item>| {
        for it in items {
            l.push(it.bytes(&mut buf), End::Right, limits);
        }
    };
    match t {
        kind::LIST => {
            for _ in 0..c.count()? {
                let e = c.string()?;
                l.push(&e, End::Right, limits);
            }
        }
        kind::LIST_ZIPLIST => {
            let blob = c.string()?;
            let items = c.items(&blob, ziplist::decode)?;
            push_items(&mut l, items);
        }
        _ => {
            for _ in 0..c.count()? {
                let container = match t {
                    kind::LIST_QUICKLIST => NODE_PACKED,
                    _ => c.len()?,
                };
                let blob = c.string()?;
                match (t, container) {
                    (kind::LIST_QUICKLIST, _) => {
                        let items = c.items(&blob, ziplist::decode)?;
                        push_items(&mut l, items);
                    }
                    (_, NODE_PLAIN) => l.push(&blob, End::Right, limits),
                    (_, NODE_PACKED) => {
                        let items = c.items(&blob, listpack::decode)?;
                        push_items(&mut l, items);
                    }
                    _ => return c.fail("bad quicklist node container"),
                }
            }
        }
    }
    // Empty nodes are skipped, as Redis skips them; a list left empty is refused.
    if l.is_empty() {
        return c.fail(EMPTY);
    }
    Ok(Value::List(Box::new(l)))
}

fn decode_set(t: u8, c: &mut Ctx) -> Result<Value, DecodeError> {
    let (limits, seed) = (c.config.set_limits, c.seed);
    let mut s = Set::default();
    let add = |s: &mut Set, c: &Ctx, m: &[u8]| {
        if s.add(m, limits, seed) {
            Ok(())
        } else {
            c.fail("duplicate set member")
        }
    };
    let mut buf = itoa::Buffer::new();
    match t {
        kind::SET => {
            for _ in 0..c.count()? {
                let m = c.string()?;
                add(&mut s, c, &m)?;
            }
        }
        kind::SET_INTSET => {
            let blob = c.string()?;
            let bad = || c.fail("bad intset");
            if blob.len() < 8 {
                return bad();
            }
            let width = u32::from_le_bytes(blob[..4].try_into().expect("4 bytes")) as usize;
            let n = u32::from_le_bytes(blob[4..8].try_into().expect("4 bytes")) as usize;
            if !matches!(width, 2 | 4 | 8) || (blob.len() - 8) as u64 != n as u64 * width as u64 {
                return bad();
            }
            let mut prev = None;
            for chunk in blob[8..].chunks_exact(width) {
                let v = match width {
                    2 => i16::from_le_bytes([chunk[0], chunk[1]]) as i64,
                    4 => i32::from_le_bytes(chunk.try_into().expect("4 bytes")) as i64,
                    _ => i64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                };
                // Redis's intsets are sorted and unique (its deep check); one that is not
                // would break every lookup.
                if prev.is_some_and(|p| p >= v) {
                    return bad();
                }
                prev = Some(v);
                add(&mut s, c, buf.format(v).as_bytes())?;
            }
        }
        _ => {
            let blob = c.string()?;
            for it in c.items(&blob, listpack::decode)? {
                add(&mut s, c, it.bytes(&mut buf))?;
            }
        }
    }
    if s.is_empty() {
        return c.fail(EMPTY);
    }
    Ok(Value::Set(Box::new(s)))
}

fn decode_zset(t: u8, c: &mut Ctx) -> Result<Value, DecodeError> {
    let mut elems: Vec<(f64, Vec<u8>)> = Vec::new();
    match t {
        kind::ZSET | kind::ZSET_2 => {
            let n = c.count()?;
            elems.reserve(n);
            for _ in 0..n {
                let m = c.string()?;
                let s = if t == kind::ZSET {
                    c.ascii_score()?
                } else {
                    c.binary_score()?
                };
                if s.is_nan() {
                    return c.fail("NaN score");
                }
                elems.push((s, m));
            }
        }
        _ => {
            let blob = c.string()?;
            let items = c.pairs(&blob, t == kind::ZSET_ZIPLIST)?;
            elems.reserve(items.len() / 2);
            let mut buf = itoa::Buffer::new();
            for pair in items.chunks_exact(2) {
                let score = match pair[1] {
                    Item::Int(i) => i as f64,
                    Item::Str(s) => match parse_score(s) {
                        Some(s) => s,
                        None => return c.fail("bad score"),
                    },
                };
                elems.push((score, pair[0].bytes(&mut buf).to_vec()));
            }
        }
    }
    if elems.is_empty() {
        return c.fail(EMPTY);
    }
    let mut seen = std::collections::HashSet::with_capacity(elems.len());
    if !elems.iter().all(|(_, m)| seen.insert(&m[..])) {
        return c.fail("duplicate sorted set member");
    }
    // `from_elems` inserts in order; sorted input keeps a pack's inserts appends.
    elems.sort_by(|a, b| crate::types::zset::cmp_elem(a.0, &a.1, b.0, &b.1));
    Ok(Value::ZSet(Box::new(ZSet::from_elems(
        elems.iter().map(|(s, m)| (*s, &m[..])),
        c.config.zset_limits,
        c.seed,
    ))))
}

fn decode_hash(t: u8, c: &mut Ctx) -> Result<Value, DecodeError> {
    let (limits, seed) = (c.config.hash_limits, c.seed);
    let mut h = Hash::default();
    let set = |h: &mut Hash, c: &Ctx, f: &[u8], v: &[u8]| match h.set(f, v, limits, seed) {
        true => Ok(()),
        false => c.fail("duplicate hash field"),
    };
    match t {
        kind::HASH => {
            for _ in 0..c.count()? {
                let f = c.string()?;
                let v = c.string()?;
                set(&mut h, c, &f, &v)?;
            }
        }
        kind::HASH_ZIPMAP => {
            let blob = c.string()?;
            let parts = ziplist::decode_zipmap(&blob).or_else(|w| c.fail(w))?;
            for pair in parts.chunks_exact(2) {
                set(&mut h, c, pair[0], pair[1])?;
            }
        }
        _ => {
            let blob = c.string()?;
            let items = c.pairs(&blob, t == kind::HASH_ZIPLIST)?;
            let (mut fb, mut vb) = (itoa::Buffer::new(), itoa::Buffer::new());
            for pair in items.chunks_exact(2) {
                set(&mut h, c, pair[0].bytes(&mut fb), pair[1].bytes(&mut vb))?;
            }
        }
    }
    if h.is_empty() {
        return c.fail(EMPTY);
    }
    Ok(Value::Hash(Box::new(h)))
}

/// Appends `v`'s type byte and body as Redis 7.0 writes them (see the module header).
/// `limits` shape list nodes as Redis's `list-max-listpack-size` shapes them.
pub fn encode(v: ValueRef, limits: ListLimits, out: &mut Vec<u8>) {
    match v {
        ValueRef::Int(_) | ValueRef::Str { .. } => {
            out.push(kind::STRING);
            with_bytes(v, |b| put_string(out, b));
        }
        ValueRef::List(l) => encode_list(l, limits, out),
        ValueRef::Set(SetRef::Ints(s)) => {
            out.push(kind::SET_INTSET);
            let (width, data) = s.raw_parts();
            let mut blob = Vec::with_capacity(8 + data.len());
            blob.extend_from_slice(&(width as u32).to_le_bytes());
            blob.extend_from_slice(&(s.len() as u32).to_le_bytes());
            blob.extend_from_slice(data);
            put_string(out, &blob);
        }
        ValueRef::Set(s) => {
            out.push(kind::SET);
            put_len(out, s.len() as u64);
            s.for_each(|m| put_string(out, m));
        }
        ValueRef::Hash(h @ HashRef::Pack(_)) => {
            out.push(kind::HASH_LISTPACK);
            let mut w = listpack::Writer::default();
            h.for_each(|f, v| {
                w.push(f);
                with_bytes(v, |b| w.push(b));
            });
            put_string(out, &w.finish());
        }
        ValueRef::Hash(h) => {
            out.push(kind::HASH);
            put_len(out, h.len() as u64);
            h.for_each(|f, v| {
                put_string(out, f);
                with_bytes(v, |b| put_string(out, b));
            });
        }
        ValueRef::ZSet(z @ ZSetRef::Pack(_)) => {
            out.push(kind::ZSET_LISTPACK);
            let mut w = listpack::Writer::default();
            z.for_each(|s, m| {
                w.push(m);
                w.push(&crate::ops::zset::fmt_score_packed(s));
            });
            put_string(out, &w.finish());
        }
        ValueRef::ZSet(z) => {
            out.push(kind::ZSET_2);
            put_len(out, z.len() as u64);
            z.walk(z.len().saturating_sub(1), true, |s, m| {
                put_string(out, m);
                out.extend_from_slice(&s.to_le_bytes());
                true
            });
        }
    }
}

/// Calls `f` with a string value's bytes (an integer formatted on the stack).
fn with_bytes(v: ValueRef, f: impl FnOnce(&[u8])) {
    match v {
        ValueRef::Int(i) => f(itoa::Buffer::new().format(i).as_bytes()),
        ValueRef::Str { data, .. } => f(data),
        _ => f(&[]),
    }
}

/// A list as QUICKLIST_2: its elements repacked into listpack nodes as Redis's
/// `quicklistPushTail` fills them (`_quicklistNodeAllowInsert`), an element at or over
/// the packed threshold in a plain node of its own.
fn encode_list(l: &List, limits: ListLimits, out: &mut Vec<u8>) {
    const SIZE_SAFETY_LIMIT: usize = 8192;
    const SIZE_ESTIMATE_OVERHEAD: usize = 8;
    const OPTIMIZATION_LEVEL: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
    let fill = limits.fill;
    let allow = |w: &listpack::Writer, sz: usize| {
        let new_sz = w.bytes() + sz + SIZE_ESTIMATE_OVERHEAD;
        let meets = fill < 0
            && OPTIMIZATION_LEVEL
                .get((-fill - 1) as usize)
                .is_some_and(|&lim| new_sz <= lim);
        meets || (new_sz <= SIZE_SAFETY_LIMIT && (w.count() as i64) < fill)
    };
    enum Node {
        Plain(Vec<u8>),
        Packed(listpack::Writer),
    }
    let mut nodes: Vec<Node> = Vec::new();
    for e in l.iter() {
        let e = &e[..];
        let plain = e.len() >= limits.packed_threshold;
        match nodes.last_mut() {
            Some(Node::Packed(w)) if !plain && allow(w, e.len()) => w.push(e),
            _ if plain => nodes.push(Node::Plain(e.to_vec())),
            _ => {
                let mut w = listpack::Writer::default();
                w.push(e);
                nodes.push(Node::Packed(w));
            }
        }
    }
    out.push(kind::LIST_QUICKLIST_2);
    put_len(out, nodes.len() as u64);
    for n in nodes {
        match n {
            Node::Plain(e) => {
                put_len(out, NODE_PLAIN);
                put_string(out, &e);
            }
            Node::Packed(w) => {
                put_len(out, NODE_PACKED);
                put_string(out, &w.finish());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ShardConfig {
        ShardConfig::default()
    }

    fn round_trip(v: &Value) -> Value {
        let mut out = Vec::new();
        encode(v.as_ref(), cfg().list_limits, &mut out);
        let mut r = Reader::new(&out);
        let back = decode(&mut r, &cfg(), 7).unwrap();
        assert_eq!(r.remaining(), 0);
        assert_skips_whole(&out);
        back
    }

    /// Stepping over the value `p` holds consumes all of it.
    fn assert_skips_whole(p: &[u8]) {
        let mut r = Reader::new(p);
        let t = r.byte().unwrap();
        skip_body(t, &mut r).unwrap();
        assert_eq!(r.remaining(), 0, "type {t}");
    }

    fn big_list(n: usize) -> Value {
        let items: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("element-{i}").into_bytes())
            .collect();
        Value::List(Box::new(List::from_elements(
            items.iter().map(|v| &v[..]),
            cfg().list_limits,
        )))
    }

    #[test]
    fn every_type_round_trips() {
        let c = cfg();
        let mut values = vec![
            Value::from_bytes(b"hello"),
            Value::from_bytes(b"12345"),
            Value::from_bytes(b"-9223372036854775808"),
            Value::from_bytes(b""),
            Value::from_bytes(&[b'a'; 1000]),
            big_list(3),
            big_list(5000),
        ];
        let ints: Vec<Vec<u8>> = ["1", "-5", "70000", "9223372036854775807"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        values.push(Value::Set(Box::new(Set::from_members(
            ints.iter().map(|v| &v[..]),
            c.set_limits,
            1,
        ))));
        let many: Vec<Vec<u8>> = (0..1000).map(|i| format!("m{i}").into_bytes()).collect();
        values.push(Value::Set(Box::new(Set::from_members(
            many.iter().map(|v| &v[..]),
            c.set_limits,
            1,
        ))));
        values.push(Value::Hash(Box::new(Hash::from_pairs(
            many.iter().take(10).map(|m| (&m[..], &b"v"[..])),
            c.hash_limits,
            1,
        ))));
        values.push(Value::Hash(Box::new(Hash::from_pairs(
            many.iter().map(|m| (&m[..], &m[..])),
            c.hash_limits,
            1,
        ))));
        let scores = [f64::NEG_INFINITY, -1.5, 0.0, 3.0, 1e300, f64::INFINITY];
        values.push(Value::ZSet(Box::new(ZSet::from_elems(
            scores.iter().zip(&many).map(|(s, m)| (*s, &m[..])),
            c.zset_limits,
            1,
        ))));
        values.push(Value::ZSet(Box::new(ZSet::from_elems(
            many.iter()
                .enumerate()
                .map(|(i, m)| (i as f64 / 3.0, &m[..])),
            c.zset_limits,
            1,
        ))));
        for v in &values {
            let back = round_trip(v);
            assert_eq!(&back, v);
            assert_eq!(back.as_ref().encoding(), v.as_ref().encoding());
        }
    }

    #[test]
    fn hostile_inputs_are_refused_never_panic() {
        let c = cfg();
        let mut payloads = Vec::new();
        for v in [
            big_list(40),
            Value::from_bytes(b"abcdefghijklmnopqrstuvwxyzabcdefgh"),
        ] {
            let mut out = Vec::new();
            encode(v.as_ref(), c.list_limits, &mut out);
            payloads.push(out);
        }
        for p in &payloads {
            super::super::assert_hostile_refused(p, |b| decode(&mut Reader::new(b), &c, 1).is_ok());
        }
        // Huge counts with nothing behind them: refused before allocating.
        for t in [1u8, 2, 3, 4, 5, 14, 18] {
            let p = [t, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
            assert!(decode(&mut Reader::new(&p), &c, 1).is_err(), "type {t}");
        }
        // Empty collections, duplicates, NaN, streams and modules.
        let refused: &[&[u8]] = &[
            b"\x01\x00",
            b"\x02\x02\x01a\x01a",
            b"\x04\x02\x01a\x01b\x01a\x01c",
            b"\x03\x01\x01a\xfd",
            b"\x05\x01\x01a\x00\x00\x00\x00\x00\x00\xf8\x7f",
            b"\x0f\x00",
            b"\x07\x00",
            b"\x08\x00",
            b"\x0b\x0a\x02\x00\x00\x00\x02\x00\x00\x00\x07\x00",
            b"\x0b\x0c\x02\x00\x00\x00\x02\x00\x00\x00\x07\x00\x07\x00",
        ];
        for p in refused {
            assert!(
                decode(&mut Reader::new(p), &c, 1).is_err(),
                "{}",
                p.escape_ascii()
            );
        }
        let one = b"\x0b\x0a\x02\x00\x00\x00\x01\x00\x00\x00\x07\x00";
        assert!(decode(&mut Reader::new(one), &c, 1).is_ok());
        assert!(decode(&mut Reader::new(&one[..11]), &c, 1).is_err());
    }

    #[test]
    fn old_encodings_are_read() {
        let c = cfg();
        // ZSET with ASCII scores, HASH_ZIPMAP, LIST of strings, SET_INTSET.
        let v = decode(&mut Reader::new(b"\x03\x02\x01a\x031.5\x01b\xff"), &c, 1).unwrap();
        let Value::ZSet(z) = v else { panic!() };
        assert_eq!(z.score(b"a"), Some(1.5));
        assert_eq!(z.score(b"b"), Some(f64::NEG_INFINITY));
        assert_skips_whole(b"\x03\x02\x01a\x031.5\x01b\xff");
        assert_skips_whole(b"\x01\x02\x01x\xc0\x07");
        assert_skips_whole(b"\x12\x01\x01\x03abc");
        let v = decode(
            &mut Reader::new(b"\x09\x0a\x01\x01a\x01\x00b\x02cd\xff"),
            &c,
            1,
        );
        assert!(v.is_err(), "zipmap count 1 with two pairs");
        let v = decode(&mut Reader::new(b"\x09\x07\x01\x01a\x01\x00b\xff"), &c, 1).unwrap();
        let Value::Hash(h) = v else { panic!() };
        assert_eq!(h.get(b"a").map(|v| v.to_vec()), Some(b"b".to_vec()));
        let v = decode(&mut Reader::new(b"\x01\x02\x01x\xc0\x07"), &c, 1).unwrap();
        let Value::List(l) = v else { panic!() };
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![&b"x"[..], b"7"]);
        let v = decode(
            &mut Reader::new(b"\x0b\x0c\x02\x00\x00\x00\x02\x00\x00\x00\x07\x00\x09\x00"),
            &c,
            1,
        )
        .unwrap();
        assert_eq!(v.as_ref().encoding(), "intset");
    }
}
