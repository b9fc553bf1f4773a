//! A hash value: field → value, in one of the two encodings Redis 7.0 reports.
//!
//! # `listpack` ([`Pack`]): small hashes
//! One byte vector of alternating fields and values, each an LEB128 length then its bytes,
//! in insertion order (HGETALL answers in that order, as Redis's listpack does):
//!
//! ```text
//!  +------+--------+------+--------+------+--------+-----
//!  | flen | field  | vlen | value  | flen | field  | ...
//!  +------+--------+------+--------+------+--------+-----
//! ```
//!
//! Lookups and edits are linear, bounded by the conversion limits: at most
//! `hash-max-listpack-entries` pairs (512) of at most `hash-max-listpack-value` bytes (64), so
//! about 66 KB scanned at worst (Redis's listpack scans the same). A 10-field hash of 8-byte fields and 16-byte values takes
//! 260 bytes in one allocation (Redis's listpack: 6 header bytes plus 2 of framing per
//! element, about the same).
//!
//! In the keyspace the pair count and the pairs live in the key's node ([`crate::dict`],
//! "Packed collections"); readers see them through [`PackRef`], whether in a node or in an
//! owned [`Pack`].
//!
//! # `hashtable` ([`Dict`]): large hashes
//! The shard's own table ([`crate::dict`]), one node per field with the value packed in it
//! (integers as 8 bytes, short strings inline): incremental rehash and the reverse-binary
//! cursor, so HSCAN keeps SCAN's guarantee. Node clocks and deadlines are unused.
//!
//! Conversion is one way, as in Redis: a pack becomes a table when it would exceed either
//! limit, never back (HDEL down to one field keeps `hashtable`).

use super::{counted_pack, get_len, put_len, view_basics};
use crate::dict::Dict;
use crate::value::{Value, ValueRef};

/// The conversion limits (`hash-max-listpack-entries`, `hash-max-listpack-value`), with
/// Redis 7.0's built-in defaults (512 and 64; the 128 in some write-ups is the zset limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashLimits {
    pub max_listpack_entries: usize,
    pub max_listpack_value: usize,
}

impl Default for HashLimits {
    fn default() -> Self {
        HashLimits {
            max_listpack_entries: 512,
            max_listpack_value: 64,
        }
    }
}

/// A hash's fields and values.
pub enum Hash {
    Pack(Pack),
    Table(Box<Dict>),
}

/// A hash borrowed, in either encoding: what readers see ([`crate::ValueRef::Hash`]),
/// whether its pack lives in a keyspace node or in an owned [`Hash`].
#[derive(Clone, Copy)]
pub enum HashRef<'a> {
    Pack(PackRef<'a>),
    Table(&'a Dict),
}

/// The small encoding: see the module header.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Pack {
    buf: Vec<u8>,
    pairs: usize,
}

/// A pack borrowed: from an owned [`Pack`], or from a keyspace node, where a small hash
/// lives ([`crate::dict`]: the pair count as 4 little-endian bytes, then the pairs).
#[derive(Clone, Copy, Debug)]
pub struct PackRef<'a> {
    buf: &'a [u8],
    pairs: usize,
}

/// One element at `at`: its bytes and where the next element starts. The buffer is only
/// ever written by this module, so lengths are well formed.
fn element(buf: &[u8], at: usize) -> (&[u8], usize) {
    let (n, i) = get_len(buf, at);
    (&buf[i..i + n], i + n)
}

counted_pack!(Pack, PackRef, pairs);

impl<'a> PackRef<'a> {
    /// Each pair in insertion order with the byte range the pair occupies.
    fn pairs(self) -> impl Iterator<Item = (&'a [u8], &'a [u8], std::ops::Range<usize>)> + 'a {
        let buf = self.buf;
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= buf.len() {
                return None;
            }
            let start = at;
            let (f, next) = element(buf, at);
            let (v, end) = element(buf, next);
            at = end;
            Some((f, v, start..end))
        })
    }

    fn find(self, field: &[u8]) -> Option<(&'a [u8], std::ops::Range<usize>)> {
        self.pairs()
            .find(|(f, _, _)| *f == field)
            .map(|(_, v, r)| (v, r))
    }
}

impl Pack {
    fn encode_pair(field: &[u8], value: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(field.len() + value.len() + 4);
        put_len(&mut b, field.len());
        b.extend_from_slice(field);
        put_len(&mut b, value.len());
        b.extend_from_slice(value);
        b
    }
}

/// A field's value as read: listpack values are bytes; table values may be integers.
pub type FieldValue<'a> = ValueRef<'a>;

impl Default for Hash {
    fn default() -> Self {
        Hash::Pack(Pack::default())
    }
}

impl<'a> HashRef<'a> {
    pub fn len(self) -> usize {
        match self {
            HashRef::Pack(p) => p.pairs,
            HashRef::Table(d) => d.len(),
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// OBJECT ENCODING's name.
    pub fn encoding(self) -> &'static str {
        match self {
            HashRef::Pack(_) => "listpack",
            HashRef::Table(_) => "hashtable",
        }
    }

    /// The value at `field`.
    pub fn get(self, field: &[u8]) -> Option<FieldValue<'a>> {
        match self {
            HashRef::Pack(p) => p.find(field).map(|(v, _)| ValueRef::Str {
                data: v,
                raw: false,
            }),
            HashRef::Table(d) => d.peek(field).map(|e| e.value()),
        }
    }

    /// Calls `f` with every field and value: insertion order for a pack, table order for a
    /// table. O(n).
    pub fn for_each(self, mut f: impl FnMut(&'a [u8], FieldValue<'a>)) {
        match self {
            HashRef::Pack(p) => {
                for (k, v, _) in p.pairs() {
                    f(
                        k,
                        ValueRef::Str {
                            data: v,
                            raw: false,
                        },
                    );
                }
            }
            HashRef::Table(d) => {
                let mut cursor = 0;
                loop {
                    cursor = d.scan(cursor, |k, e| f(k, e.value()));
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
    }

    /// A field and its value picked uniformly enough at random (Redis's `dictGetFairRandomKey`
    /// is as approximate: a random bucket, then a random node of its chain). None when empty.
    pub fn random_pair(self, rand: &mut impl FnMut() -> u64) -> Option<(&'a [u8], FieldValue<'a>)> {
        match self {
            HashRef::Pack(p) => {
                if p.pairs == 0 {
                    return None;
                }
                let i = (rand() % p.pairs as u64) as usize;
                p.pairs().nth(i).map(|(f, v, _)| {
                    (
                        f,
                        ValueRef::Str {
                            data: v,
                            raw: false,
                        },
                    )
                })
            }
            HashRef::Table(d) => d.random_ref(rand).map(|e| (e.key(), e.value())),
        }
    }

    /// One HSCAN call from `cursor`: a pack is returned whole with cursor 0, as Redis does;
    /// a table is walked bucket by bucket (at most `10 * count` of them) until `count`
    /// elements (fields and values both count, as in Redis) have been seen. Returns the next
    /// cursor.
    pub fn scan(
        self,
        cursor: u64,
        count: usize,
        mut f: impl FnMut(&'a [u8], FieldValue<'a>),
    ) -> u64 {
        match self {
            HashRef::Pack(_) => {
                self.for_each(f);
                0
            }
            HashRef::Table(d) => d.scan_some(cursor, count, 2, |k, e| f(k, e.value())),
        }
    }

    /// An owned copy (COPY, snapshots of a write in progress).
    pub fn clone_with(self, seed: u64) -> Hash {
        match self {
            HashRef::Pack(p) => Hash::Pack(p.to_pack()),
            HashRef::Table(_) => {
                let mut d = Box::new(Dict::new(seed));
                self.for_each(|k, v| {
                    d.insert(k, v.to_value(), 0, 0);
                });
                Hash::Table(d)
            }
        }
    }

    /// Equality of contents, whatever the encodings (tests, DEBUG DIGEST).
    pub fn same_pairs(self, other: HashRef) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let mut same = true;
        self.for_each(|k, v| {
            same &= other.get(k).is_some_and(|o| o.to_vec() == v.to_vec());
        });
        same
    }
}

impl Hash {
    pub fn view(&self) -> HashRef<'_> {
        match self {
            Hash::Pack(p) => HashRef::Pack(p.view()),
            Hash::Table(d) => HashRef::Table(d),
        }
    }

    view_basics!();

    /// The table of a hash in its `hashtable` encoding (a snapshot walks it member by
    /// member: [`crate::dict::Walk`]).
    pub(crate) fn table_mut(&mut self) -> Option<&mut Dict> {
        match self {
            Hash::Table(d) => Some(d),
            Hash::Pack(_) => None,
        }
    }

    /// The value at `field`.
    pub fn get(&self, field: &[u8]) -> Option<FieldValue<'_>> {
        self.view().get(field)
    }

    /// [`HashRef::for_each`].
    pub fn for_each<'a>(&'a self, f: impl FnMut(&'a [u8], FieldValue<'a>)) {
        self.view().for_each(f)
    }

    /// [`HashRef::random_pair`].
    pub fn random_pair(&self, rand: &mut impl FnMut() -> u64) -> Option<(&[u8], FieldValue<'_>)> {
        self.view().random_pair(rand)
    }

    /// Converts a pack to a table if storing a field or value of `longest` bytes would
    /// exceed the value limit (Redis's `hashTypeTryConversion`, before the write).
    pub fn convert_for_len(&mut self, longest: usize, limits: HashLimits, seed: u64) {
        if matches!(self, Hash::Pack(_)) && longest > limits.max_listpack_value {
            self.convert(seed);
        }
    }

    /// Sets `field` to `value`; true when the field is new. A pack becomes a table first
    /// when the field or value is longer than the value limit, and after when it has grown
    /// past the entries limit (Redis's `hashTypeSet`).
    pub fn set(&mut self, field: &[u8], value: &[u8], limits: HashLimits, seed: u64) -> bool {
        self.convert_for_len(field.len().max(value.len()), limits, seed);
        let new = match self {
            Hash::Pack(p) => {
                let pair = Pack::encode_pair(field, value);
                match p.view().find(field).map(|(_, r)| r) {
                    Some(r) => {
                        p.buf.splice(r, pair);
                        false
                    }
                    None => {
                        // Exactly the room this pair needs, as Redis's listpack reallocs per
                        // insert: doubling left a 10-field hash with 416 bytes of capacity
                        // for 260 of pairs (1M such hashes: 1.31x Redis's RSS).
                        p.buf.reserve_exact(pair.len());
                        p.buf.extend_from_slice(&pair);
                        p.pairs += 1;
                        true
                    }
                }
            }
            Hash::Table(d) => d.insert(field, Value::from_bytes(value), 0, 0).is_none(),
        };
        if matches!(self, Hash::Pack(p) if p.pairs > limits.max_listpack_entries) {
            self.convert(seed);
        }
        new
    }

    /// Removes `field`; true when it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Pack(p) => match p.view().find(field).map(|(_, r)| r) {
                Some(r) => {
                    p.buf.drain(r);
                    p.pairs -= 1;
                    true
                }
                None => false,
            },
            Hash::Table(d) => d.delete(field).is_some(),
        }
    }

    /// Heap bytes beyond the hash's own box, for MEMORY USAGE and lazy free decisions.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Hash::Pack(p) => p.buf.capacity(),
            Hash::Table(d) => d.alloc_bytes(),
        }
    }

    /// Turns a pack into a table holding the same pairs. O(n) in a pack's size, which the
    /// limits bound.
    fn convert(&mut self, seed: u64) {
        let Hash::Pack(p) = self else { return };
        let mut d = Box::new(Dict::new(seed));
        for (k, v, _) in p.view().pairs() {
            d.insert(k, Value::from_bytes(v), 0, 0);
        }
        *self = Hash::Table(d);
    }

    /// A copy (COPY, snapshots of a write in progress).
    pub fn clone_with(&self, seed: u64) -> Hash {
        self.view().clone_with(seed)
    }

    /// Rebuilds a hash from pairs (snapshot load), in the encoding their count and lengths
    /// call for.
    pub fn from_pairs<'a>(
        pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        limits: HashLimits,
        seed: u64,
    ) -> Hash {
        let mut h = Hash::default();
        for (f, v) in pairs {
            h.convert_for_len(f.len().max(v.len()), limits, seed);
            h.set(f, v, limits, seed);
        }
        h
    }

    /// Equality of contents, whatever the encodings (tests, DEBUG DIGEST).
    pub fn same_pairs(&self, other: &Hash) -> bool {
        self.view().same_pairs(other.view())
    }
}

impl std::fmt::Debug for HashRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        self.for_each(|k, v| {
            m.entry(
                &String::from_utf8_lossy(k),
                &String::from_utf8_lossy(&v.to_vec()),
            );
        });
        m.finish()
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: HashLimits = HashLimits {
        max_listpack_entries: 4,
        max_listpack_value: 8,
    };

    fn val(h: &Hash, f: &[u8]) -> Option<Vec<u8>> {
        h.get(f).map(|v| v.to_vec())
    }

    #[test]
    fn pack_keeps_insertion_order_and_edits_in_place() {
        let mut h = Hash::default();
        assert!(h.set(b"a", b"1", SMALL, 1));
        assert!(h.set(b"b", b"", SMALL, 1));
        assert!(h.set(b"", b"empty", SMALL, 1));
        assert!(!h.set(b"a", b"longer", SMALL, 1));
        assert_eq!(h.encoding(), "listpack");
        let mut seen = Vec::new();
        h.for_each(|k, v| seen.push((k.to_vec(), v.to_vec())));
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), b"longer".to_vec()),
                (b"b".to_vec(), vec![]),
                (vec![], b"empty".to_vec())
            ]
        );
        assert!(h.remove(b"b"));
        assert!(!h.remove(b"b"));
        assert_eq!(h.len(), 2);
        assert_eq!(val(&h, b"a").as_deref(), Some(&b"longer"[..]));
        assert_eq!(val(&h, b"b"), None);
    }

    #[test]
    fn long_elements_use_multi_byte_lengths() {
        let big = vec![b'x'; 300];
        let mut h = Hash::default();
        let limits = HashLimits {
            max_listpack_entries: 128,
            max_listpack_value: 1000,
        };
        h.set(&big, &big, limits, 1);
        h.set(b"k", b"v", limits, 1);
        assert_eq!(val(&h, &big), Some(big.clone()));
        assert_eq!(val(&h, b"k").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn conversion_is_one_way_and_keeps_every_pair() {
        let mut h = Hash::default();
        for i in 0..4 {
            h.set(format!("f{i}").as_bytes(), b"v", SMALL, 7);
        }
        assert_eq!(h.encoding(), "listpack");
        h.set(b"f4", b"007", SMALL, 7);
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), 5);
        assert_eq!(val(&h, b"f4").as_deref(), Some(&b"007"[..]));
        for i in 0..5 {
            h.remove(format!("f{i}").as_bytes());
        }
        assert!(h.is_empty());
        assert_eq!(h.encoding(), "hashtable");

        let mut h = Hash::default();
        h.convert_for_len(9, SMALL, 7);
        assert_eq!(h.encoding(), "hashtable");
        let mut p = Hash::default();
        p.set(b"n", b"12", SMALL, 7);
        let copy = p.clone_with(3);
        assert!(copy.same_pairs(&p));
    }
}
