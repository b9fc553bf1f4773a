//! A set value, in one of the two encodings Redis 7.0 reports.
//!
//! # `intset` ([`IntSet`]): small sets of integers
//! The members, all integers in `i64`'s range written as Redis writes them (`string2ll`
//! accepts them), sorted ascending in one byte vector at the narrowest width that holds
//! every member (2, 4 or 8 bytes each, little-endian), as Redis's `intset.c`: 20 small
//! integers take 40 bytes. Membership is a binary search; an insert or removal moves the tail.
//! SMEMBERS answers in ascending order, as Redis does. In the keyspace the width byte and the
//! members live in the key's node ([`crate::dict`], "Packed collections"); readers see them
//! through [`IntsRef`], whether in a node or in an owned [`IntSet`].
//!
//! # `hashtable` ([`Dict`]): everything else
//! The shard's own table, one node per member with an empty value: incremental rehash and
//! the reverse-binary cursor (SSCAN keeps SCAN's guarantee).
//!
//! Conversion is one way: a member that is not such an integer, or a count past
//! `set-max-intset-entries` (512), makes the set a table for good.

use super::{refill, view_basics};
use crate::dict::Dict;
use crate::value::ValueRef;
use percore_proto::parse_i64;

/// `set-max-intset-entries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetLimits {
    pub max_intset_entries: usize,
}

impl Default for SetLimits {
    fn default() -> Self {
        SetLimits {
            max_intset_entries: 512,
        }
    }
}

/// Sorted integers at one width (see the module header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntSet {
    width: u8,
    data: Vec<u8>,
}

impl Default for IntSet {
    fn default() -> Self {
        IntSet {
            width: 2,
            data: Vec::new(),
        }
    }
}

fn width_of(v: i64) -> u8 {
    if i16::try_from(v).is_ok() {
        2
    } else if i32::try_from(v).is_ok() {
        4
    } else {
        8
    }
}

/// An intset borrowed: from an owned [`IntSet`] or from a keyspace node, where a small
/// set's members live ([`crate::dict`]: the width byte, then the members).
#[derive(Clone, Copy, Debug)]
pub struct IntsRef<'a> {
    width: u8,
    data: &'a [u8],
}

impl<'a> IntsRef<'a> {
    /// The view of a pack as [`IntSet::pack_parts`] wrote it: the width byte, then the
    /// members. Packs are only written by this module, so the width is 2, 4 or 8.
    pub fn from_pack(pack: &'a [u8]) -> IntsRef<'a> {
        IntsRef {
            width: pack[0],
            data: &pack[1..],
        }
    }

    pub fn len(self) -> usize {
        self.data.len() / self.width as usize
    }

    pub fn is_empty(self) -> bool {
        self.data.is_empty()
    }

    /// The width of a member in bytes and the members' bytes: Redis's intset blob without
    /// its header (DUMP writes it).
    pub fn raw_parts(self) -> (u8, &'a [u8]) {
        (self.width, self.data)
    }

    /// The `i`th smallest member.
    pub fn get(self, i: usize) -> i64 {
        let w = self.width as usize;
        let b = &self.data[i * w..i * w + w];
        match w {
            2 => i16::from_le_bytes([b[0], b[1]]) as i64,
            4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
            _ => i64::from_le_bytes(b.try_into().expect("8-byte member")),
        }
    }

    /// Ok(index) when present, Err(insertion point) otherwise.
    fn search(self, v: i64) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).cmp(&v) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    pub fn contains(self, v: i64) -> bool {
        self.search(v).is_ok()
    }
}

impl IntSet {
    pub fn view(&self) -> IntsRef<'_> {
        IntsRef {
            width: self.width,
            data: &self.data,
        }
    }

    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The pack a keyspace node holds for this intset: its width byte (a 1-byte header),
    /// then its members.
    pub fn pack_parts(&self) -> ([u8; 4], usize, &[u8]) {
        ([self.width, 0, 0, 0], 1, &self.data)
    }

    /// The intset a pack holds ([`IntsRef::from_pack`]), in `buf` (a buffer lent by the
    /// table, so an edit in place allocates nothing).
    pub fn from_pack(pack: &[u8], buf: Vec<u8>) -> IntSet {
        let v = IntsRef::from_pack(pack);
        let data = refill(buf, v.data);
        IntSet {
            width: v.width,
            data,
        }
    }

    /// The member bytes' buffer, given back for reuse.
    pub fn into_buf(self) -> Vec<u8> {
        self.data
    }

    fn encode(v: i64, width: u8, out: &mut Vec<u8>) {
        match width {
            2 => out.extend_from_slice(&(v as i16).to_le_bytes()),
            4 => out.extend_from_slice(&(v as i32).to_le_bytes()),
            _ => out.extend_from_slice(&v.to_le_bytes()),
        }
    }

    /// Adds `v`; false when present. Widens every member first when `v` needs it.
    pub fn insert(&mut self, v: i64) -> bool {
        let Err(at) = self.view().search(v) else {
            return false;
        };
        let w = width_of(v);
        if w > self.width {
            let mut wide = Vec::with_capacity((self.len() + 1) * w as usize);
            for i in 0..self.len() {
                Self::encode(self.view().get(i), w, &mut wide);
            }
            self.data = wide;
            self.width = w;
        }
        let mut bytes = Vec::with_capacity(8);
        Self::encode(v, self.width, &mut bytes);
        let pos = at * self.width as usize;
        // Exactly one member more, as Redis's intset reallocates per insert (doubling left
        // a 20-member set of 40 bytes with 64 of capacity).
        self.data.reserve_exact(bytes.len());
        self.data.splice(pos..pos, bytes);
        true
    }

    pub fn remove(&mut self, v: i64) -> bool {
        let Ok(at) = self.view().search(v) else {
            return false;
        };
        let w = self.width as usize;
        self.data.drain(at * w..at * w + w);
        true
    }
}

/// A set's members.
pub enum Set {
    Ints(IntSet),
    Table(Box<Dict>),
}

/// A set borrowed, in either encoding: what readers see ([`crate::ValueRef::Set`]), whether
/// its intset lives in a keyspace node or in an owned [`Set`].
#[derive(Clone, Copy)]
pub enum SetRef<'a> {
    Ints(IntsRef<'a>),
    Table(&'a Dict),
}

impl Default for Set {
    fn default() -> Self {
        Set::Ints(IntSet::default())
    }
}

/// A member as an intset holds it: an integer Redis's `string2ll` reads back the same.
fn as_int(member: &[u8]) -> Option<i64> {
    if member.len() > 20 {
        return None;
    }
    parse_i64(member)
}

const EMPTY: ValueRef<'static> = ValueRef::Str {
    data: &[],
    raw: false,
};

impl<'a> SetRef<'a> {
    pub fn len(self) -> usize {
        match self {
            SetRef::Ints(s) => s.len(),
            SetRef::Table(d) => d.len(),
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    pub fn encoding(self) -> &'static str {
        match self {
            SetRef::Ints(_) => "intset",
            SetRef::Table(_) => "hashtable",
        }
    }

    pub fn contains(self, member: &[u8]) -> bool {
        match self {
            SetRef::Ints(s) => as_int(member).is_some_and(|v| s.contains(v)),
            SetRef::Table(d) => d.peek(member).is_some(),
        }
    }

    /// Calls `f` with every member: ascending for an intset, table order for a table.
    pub fn for_each(self, mut f: impl FnMut(&[u8])) {
        match self {
            SetRef::Ints(s) => {
                let mut buf = itoa::Buffer::new();
                for i in 0..s.len() {
                    f(buf.format(s.get(i)).as_bytes());
                }
            }
            SetRef::Table(d) => {
                let mut cursor = 0;
                loop {
                    cursor = d.scan(cursor, |k, _| f(k));
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
    }

    /// Every member, owned (for set algebra and copies).
    pub fn members(self) -> Vec<Vec<u8>> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each(|m| v.push(m.to_vec()));
        v
    }

    /// A member picked at random; None when empty.
    pub fn random(self, rand: &mut impl FnMut() -> u64) -> Option<Vec<u8>> {
        match self {
            SetRef::Ints(s) if !s.is_empty() => {
                let i = (rand() % s.len() as u64) as usize;
                Some(itoa::Buffer::new().format(s.get(i)).as_bytes().to_vec())
            }
            SetRef::Ints(_) => None,
            SetRef::Table(d) => d.random_ref(rand).map(|e| e.key().to_vec()),
        }
    }

    /// One SSCAN call (see [`crate::types::hash::HashRef::scan`]): an intset whole with
    /// cursor 0, a table `count` members at a time.
    pub fn scan(self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        match self {
            SetRef::Ints(_) => {
                self.for_each(f);
                0
            }
            SetRef::Table(d) => d.scan_some(cursor, count, 1, |k, _| f(k)),
        }
    }

    /// An owned copy in the same encoding.
    pub fn clone_with(self, seed: u64) -> Set {
        match self {
            SetRef::Ints(s) => Set::Ints(IntSet {
                width: s.width,
                data: s.data.to_vec(),
            }),
            SetRef::Table(d) => {
                let mut t = Box::new(Dict::new(seed));
                let mut cursor = 0;
                loop {
                    cursor = d.scan(cursor, |k, _| {
                        t.insert_ref(k, EMPTY, 0, 0);
                    });
                    if cursor == 0 {
                        break;
                    }
                }
                Set::Table(t)
            }
        }
    }

    pub fn same_members(self, other: SetRef) -> bool {
        let mut same = self.len() == other.len();
        self.for_each(|m| same &= other.contains(m));
        same
    }
}

impl Set {
    /// An empty set in the encoding Redis's `setTypeCreate` picks for a first member.
    pub fn for_member(member: &[u8], seed: u64) -> Set {
        match as_int(member) {
            Some(_) => Set::default(),
            None => Set::Table(Box::new(Dict::new(seed))),
        }
    }

    pub fn view(&self) -> SetRef<'_> {
        match self {
            Set::Ints(s) => SetRef::Ints(s.view()),
            Set::Table(d) => SetRef::Table(d),
        }
    }

    view_basics!();

    /// The table of a set in its `hashtable` encoding (a snapshot walks it member by
    /// member: [`crate::dict::Walk`]).
    pub(crate) fn table_mut(&mut self) -> Option<&mut Dict> {
        match self {
            Set::Table(d) => Some(d),
            Set::Ints(_) => None,
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.view().contains(member)
    }

    /// [`SetRef::members`].
    pub fn members(&self) -> Vec<Vec<u8>> {
        self.view().members()
    }

    /// [`SetRef::random`].
    pub fn random(&self, rand: &mut impl FnMut() -> u64) -> Option<Vec<u8>> {
        self.view().random(rand)
    }

    /// Adds `member`; true when it is new. An intset becomes a table for a member that is
    /// not an integer, and after growing past the entries limit (Redis's `setTypeAdd`).
    pub fn add(&mut self, member: &[u8], limits: SetLimits, seed: u64) -> bool {
        if let Set::Ints(s) = self {
            match as_int(member) {
                Some(v) => {
                    if !s.insert(v) {
                        return false;
                    }
                    if s.len() > limits.max_intset_entries {
                        self.convert(seed);
                    }
                    return true;
                }
                None => self.convert(seed),
            }
        }
        match self {
            Set::Table(d) => d.insert_ref(member, EMPTY, 0, 0).is_none(),
            Set::Ints(_) => unreachable!("converted just above"),
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self {
            Set::Ints(s) => as_int(member).is_some_and(|v| s.remove(v)),
            Set::Table(d) => d.delete(member).is_some(),
        }
    }

    fn convert(&mut self, seed: u64) {
        let Set::Ints(s) = self else { return };
        let mut d = Box::new(Dict::new(seed));
        let mut buf = itoa::Buffer::new();
        for i in 0..s.len() {
            d.insert_ref(buf.format(s.view().get(i)).as_bytes(), EMPTY, 0, 0);
        }
        *self = Set::Table(d);
    }

    /// Heap bytes beyond the set's own box.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Set::Ints(s) => s.data.capacity(),
            Set::Table(d) => d.alloc_bytes(),
        }
    }

    /// A set of `members` built as Redis builds a result set: starting as an intset, each
    /// member added in turn (the *STORE commands, snapshot load).
    pub fn from_members<'a>(
        members: impl Iterator<Item = &'a [u8]>,
        limits: SetLimits,
        seed: u64,
    ) -> Set {
        let mut s = Set::default();
        for m in members {
            s.add(m, limits, seed);
        }
        s
    }

    /// A copy in the same encoding.
    pub fn clone_with(&self, seed: u64) -> Set {
        self.view().clone_with(seed)
    }

    pub fn same_members(&self, other: &Set) -> bool {
        self.view().same_members(other.view())
    }
}

impl std::fmt::Debug for SetRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_set();
        self.for_each(|m| {
            l.entry(&String::from_utf8_lossy(m));
        });
        l.finish()
    }
}

impl std::fmt::Debug for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intsets_widen_stay_sorted_and_convert_one_way() {
        let limits = SetLimits {
            max_intset_entries: 5,
        };
        let mut s = Set::default();
        for m in ["3", "-1", "100000", "-9223372036854775808", "3"] {
            s.add(m.as_bytes(), limits, 1);
        }
        assert_eq!(s.encoding(), "intset");
        assert_eq!(
            s.members(),
            ["-9223372036854775808", "-1", "3", "100000"].map(|m| m.as_bytes().to_vec())
        );
        assert!(s.contains(b"100000") && !s.contains(b"0100000") && !s.contains(b"x"));
        assert!(s.remove(b"-1") && !s.remove(b"-1"));
        s.add(b"7", limits, 1);
        s.add(b"8", limits, 1);
        assert_eq!(s.encoding(), "intset");
        s.add(b"9", limits, 1);
        assert_eq!(s.encoding(), "hashtable", "6 members > 5");
        assert_eq!(s.len(), 6);
        let mut t = Set::default();
        t.add(b"1", limits, 1);
        t.add(b"a", limits, 1);
        assert_eq!(t.encoding(), "hashtable");
        t.remove(b"a");
        assert_eq!(t.encoding(), "hashtable");
        assert!(t.same_members(&Set::from_members([&b"1"[..]].into_iter(), limits, 2)));
    }
}
