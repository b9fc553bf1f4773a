//! The shard's hash table: chained buckets, power-of-two sizes, incremental rehash, and a
//! reverse-binary scan cursor — Redis's `dict.c` design, chosen for its two guarantees:
//!
//! 1. **Bounded work per operation.** Growing or shrinking allocates the new bucket array
//!    (calloc'd, so untouched pages cost nothing) and then moves at most
//!    [`REHASH_STEP_BUCKETS`] buckets (visiting at most 10× that many empty ones) per
//!    insert/lookup/delete, plus whatever [`Dict::rehash_step`] does from the background.
//!    No single call touches more than a fixed number of entries, so a table of 10M keys
//!    never stalls its core for a full rehash.
//! 2. **SCAN's promise.** The cursor walks bucket indices in reverse-binary order, so an
//!    entry present for the whole iteration is returned at least once even if the table
//!    grows or shrinks between calls (entries may be returned twice).
//!
//! Layout (64-bit): a bucket is one pointer (8 B); a node is `key: Box<[u8]>` (16 B) +
//! `hash: u64` (8 B) + `next` (8 B) + the value, plus the key bytes in their own allocation.
//! The compact inline layout of issue "Cache memory" replaces this; the interface stays.
//!
//! Alternatives rejected for now: `hashbrown` (a resize rehashes every entry at once and its
//! iteration order cannot back a stable cursor); a BTreeMap (O(log n) per access and no cheap
//! random sampling for RANDOMKEY and eviction).

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// What the table costs per entry besides the key and value bytes: the node, the key's
/// allocation header, and one bucket slot at load factor 1 (MEMORY USAGE, MEMORY STATS).
pub const ENTRY_OVERHEAD_BYTES: usize =
    std::mem::size_of::<Node<crate::value::Entry>>() + 16 + std::mem::size_of::<usize>();

/// Buckets moved per rehash step driven by a normal operation.
pub const REHASH_STEP_BUCKETS: usize = 1;
const MIN_SIZE: usize = 4;

struct Node<V> {
    key: Box<[u8]>,
    hash: u64,
    value: V,
    next: Option<Box<Node<V>>>,
}

struct Table<V> {
    buckets: Vec<Option<Box<Node<V>>>>,
    used: usize,
}

impl<V> Table<V> {
    fn empty() -> Self {
        Table {
            buckets: Vec::new(),
            used: 0,
        }
    }
    fn with_size(n: usize) -> Self {
        let mut buckets = Vec::new();
        buckets.resize_with(n, || None);
        Table { buckets, used: 0 }
    }
    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }
}

/// The outcome of [`Dict::get_live`].
pub enum Live<'a, V> {
    Found(&'a mut V),
    /// The entry was dead and has been removed.
    Removed(V),
    Missing,
}

/// A hash map from binary keys to `V` with incremental rehashing.
pub struct Dict<V> {
    tables: [Table<V>; 2],
    /// Next bucket of `tables[0]` to move into `tables[1]`, while rehashing.
    rehash_idx: Option<usize>,
    seed: u64,
}

impl<V> Dict<V> {
    /// `seed` keys the hash function; it is passed in so tests are deterministic and
    /// production gets a random one (hash flooding).
    pub fn new(seed: u64) -> Self {
        Dict {
            tables: [Table::empty(), Table::empty()],
            rehash_idx: None,
            seed,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.tables[0].used + self.tables[1].used
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_rehashing(&self) -> bool {
        self.rehash_idx.is_some()
    }

    /// Total buckets in both tables (for memory accounting and tests).
    pub fn buckets(&self) -> usize {
        self.tables[0].buckets.len() + self.tables[1].buckets.len()
    }

    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        xxh3_64_with_seed(key, self.seed)
    }

    /// Moves up to `n` buckets to the new table; visits at most `10 * n` empty buckets.
    /// Returns true while rehashing remains to be done.
    pub fn rehash_step(&mut self, n: usize) -> bool {
        let Some(mut idx) = self.rehash_idx else {
            return false;
        };
        let mut empty_visits = n * 10;
        let mut moved = 0;
        while moved < n && self.tables[0].used > 0 {
            while self.tables[0].buckets[idx].is_none() {
                idx += 1;
                empty_visits -= 1;
                if empty_visits == 0 {
                    self.rehash_idx = Some(idx);
                    return true;
                }
            }
            let mut chain = self.tables[0].buckets[idx].take();
            while let Some(mut node) = chain {
                chain = node.next.take();
                let b = (node.hash as usize) & self.tables[1].mask();
                node.next = self.tables[1].buckets[b].take();
                self.tables[1].buckets[b] = Some(node);
                self.tables[0].used -= 1;
                self.tables[1].used += 1;
            }
            idx += 1;
            moved += 1;
        }
        if self.tables[0].used == 0 {
            let new = std::mem::replace(&mut self.tables[1], Table::empty());
            self.tables[0] = new;
            self.rehash_idx = None;
            return false;
        }
        self.rehash_idx = Some(idx);
        true
    }

    #[inline]
    fn step(&mut self) {
        if self.rehash_idx.is_some() {
            self.rehash_step(REHASH_STEP_BUCKETS);
        }
    }

    fn start_resize(&mut self, size: usize) {
        debug_assert!(self.rehash_idx.is_none());
        let size = size.max(MIN_SIZE).next_power_of_two();
        if self.tables[0].buckets.is_empty() {
            self.tables[0] = Table::with_size(size);
            return;
        }
        if size == self.tables[0].buckets.len() {
            return;
        }
        self.tables[1] = Table::with_size(size);
        self.rehash_idx = Some(0);
    }

    fn grow_if_needed(&mut self) {
        if self.rehash_idx.is_some() {
            return;
        }
        let t = &self.tables[0];
        if t.buckets.is_empty() || t.used >= t.buckets.len() {
            self.start_resize((t.used + 1) * 2);
        }
    }

    /// Starts shrinking when the table is under 1/8 full; bounded like growth.
    fn shrink_if_needed(&mut self) {
        if self.rehash_idx.is_some() {
            return;
        }
        let t = &self.tables[0];
        if t.buckets.len() > MIN_SIZE && t.used * 8 < t.buckets.len() {
            self.start_resize(t.used.max(1) * 2);
        }
    }

    fn find_in(&self, table: usize, key: &[u8], hash: u64) -> Option<&Node<V>> {
        let t = &self.tables[table];
        if t.buckets.is_empty() {
            return None;
        }
        let mut cur = t.buckets[(hash as usize) & t.mask()].as_deref();
        while let Some(n) = cur {
            if n.hash == hash && *n.key == *key {
                return Some(n);
            }
            cur = n.next.as_deref();
        }
        None
    }

    /// Finds `key`. Takes `&mut self` because lookups advance a rehash in progress.
    pub fn get(&mut self, key: &[u8]) -> Option<&V> {
        self.step();
        self.peek(key)
    }

    /// Finds `key` without advancing a rehash.
    pub fn peek(&self, key: &[u8]) -> Option<&V> {
        let h = self.hash(key);
        self.find_in(0, key, h)
            .or_else(|| self.find_in(1, key, h))
            .map(|n| &n.value)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        self.step();
        let h = self.hash(key);
        let ti = if self.find_in(0, key, h).is_some() {
            0
        } else {
            1
        };
        self.find_in_mut(ti, key, h)
    }

    fn find_in_mut(&mut self, table: usize, key: &[u8], hash: u64) -> Option<&mut V> {
        let t = &mut self.tables[table];
        if t.buckets.is_empty() {
            return None;
        }
        let mask = t.mask();
        let mut cur = t.buckets[(hash as usize) & mask].as_deref_mut();
        while let Some(n) = cur {
            if n.hash == hash && *n.key == *key {
                return Some(&mut n.value);
            }
            cur = n.next.as_deref_mut();
        }
        None
    }

    /// Finds `key`; if `dead` says its value is no longer valid (an expired entry), removes
    /// it and returns it instead. One hash computation, at most two short chain walks.
    pub fn get_live(&mut self, key: &[u8], dead: impl FnOnce(&V) -> bool) -> Live<'_, V> {
        self.step();
        let h = self.hash(key);
        let (ti, is_dead) = match self.find_in(0, key, h) {
            Some(n) => (0, dead(&n.value)),
            None => match self.find_in(1, key, h) {
                Some(n) => (1, dead(&n.value)),
                None => return Live::Missing,
            },
        };
        if is_dead {
            match self.remove_hashed(key, h) {
                Some(v) => Live::Removed(v),
                None => Live::Missing,
            }
        } else {
            match self.find_in_mut(ti, key, h) {
                Some(v) => Live::Found(v),
                None => Live::Missing,
            }
        }
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        if let Some(slot) = self.get_mut(key) {
            return Some(std::mem::replace(slot, value));
        }
        self.grow_if_needed();
        let h = self.hash(key);
        let ti = if self.rehash_idx.is_some() { 1 } else { 0 };
        let t = &mut self.tables[ti];
        let b = (h as usize) & t.mask();
        let next = t.buckets[b].take();
        t.buckets[b] = Some(Box::new(Node {
            key: key.into(),
            hash: h,
            value,
            next,
        }));
        t.used += 1;
        None
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        self.step();
        let h = self.hash(key);
        self.remove_hashed(key, h)
    }

    fn remove_hashed(&mut self, key: &[u8], h: u64) -> Option<V> {
        for ti in 0..2 {
            let t = &mut self.tables[ti];
            if t.buckets.is_empty() {
                continue;
            }
            let b = (h as usize) & t.mask();
            let mut link = &mut t.buckets[b];
            loop {
                match link {
                    None => break,
                    Some(n) if n.hash == h && *n.key == *key => {
                        let mut node = link.take().expect("matched Some above");
                        *link = node.next.take();
                        t.used -= 1;
                        let v = node.value;
                        self.shrink_if_needed();
                        return Some(v);
                    }
                    Some(n) => link = &mut n.next,
                }
            }
        }
        None
    }

    /// Drops every entry. O(n): callers that must stay bounded free in slices instead.
    pub fn clear(&mut self) {
        self.tables = [Table::empty(), Table::empty()];
        self.rehash_idx = None;
    }

    /// Frees up to `n` buckets from the end of the tables (for a detached table being
    /// dropped in slices). Returns true while entries remain.
    pub fn free_step(&mut self, n: usize) -> bool {
        self.rehash_idx = None;
        for _ in 0..n {
            let t = if !self.tables[1].buckets.is_empty() {
                &mut self.tables[1]
            } else {
                &mut self.tables[0]
            };
            match t.buckets.pop() {
                Some(mut chain) => {
                    while let Some(mut node) = chain {
                        chain = node.next.take();
                        t.used -= 1;
                    }
                }
                None => return false,
            }
        }
        !self.tables[0].buckets.is_empty() || !self.tables[1].buckets.is_empty()
    }

    /// Visits the entries of the bucket(s) at `cursor` and returns the next cursor (0 when
    /// the walk is complete). Reverse-binary increments make the walk robust to resizing.
    /// `f` may not modify the table; callers collect keys and act afterwards.
    pub fn scan(&self, cursor: u64, mut f: impl FnMut(&[u8], &V)) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut v = cursor as usize;
        let visit = |t: &Table<V>, idx: usize, f: &mut dyn FnMut(&[u8], &V)| {
            let mut cur = t.buckets[idx & t.mask()].as_deref();
            while let Some(n) = cur {
                f(&n.key, &n.value);
                cur = n.next.as_deref();
            }
        };
        if self.rehash_idx.is_none() {
            let t = &self.tables[0];
            let m0 = t.mask();
            visit(t, v, &mut f);
            v |= !m0;
            v = v.reverse_bits().wrapping_add(1).reverse_bits();
        } else {
            let (small, large) = if self.tables[0].buckets.len() <= self.tables[1].buckets.len() {
                (&self.tables[0], &self.tables[1])
            } else {
                (&self.tables[1], &self.tables[0])
            };
            let m0 = small.mask();
            let m1 = large.mask();
            visit(small, v, &mut f);
            loop {
                visit(large, v, &mut f);
                v |= !m1;
                v = v.reverse_bits().wrapping_add(1).reverse_bits();
                if v & (m0 ^ m1) == 0 {
                    break;
                }
            }
        }
        v as u64
    }

    /// A random entry (Redis's dictGetRandomKey: a random non-empty bucket, then a random
    /// element of its chain). `rand` supplies randomness. Expected O(1) at load ≥ 1/8.
    pub fn random(&mut self, mut rand: impl FnMut() -> u64) -> Option<(&[u8], &V)> {
        if self.is_empty() {
            return None;
        }
        self.step();
        // Bounded attempts: the load factor is kept ≥ 1/8, so an empty-handed run of 1000
        // random probes is astronomically unlikely; fall back to a linear search then.
        let mut found: Option<(usize, usize)> = None;
        for _ in 0..1000 {
            let ti = if self.rehash_idx.is_some() && self.tables[1].used > 0 && rand() & 1 == 1 {
                1
            } else {
                0
            };
            let t = &self.tables[ti];
            if t.buckets.is_empty() || t.used == 0 {
                continue;
            }
            let b = (rand() as usize) & t.mask();
            if t.buckets[b].is_some() {
                found = Some((ti, b));
                break;
            }
        }
        let (ti, b) = match found {
            Some(x) => x,
            None => {
                let ti = if self.tables[0].used > 0 { 0 } else { 1 };
                let b = self.tables[ti].buckets.iter().position(|x| x.is_some())?;
                (ti, b)
            }
        };
        let mut len = 0;
        let mut cur = self.tables[ti].buckets[b].as_deref();
        while let Some(n) = cur {
            len += 1;
            cur = n.next.as_deref();
        }
        let mut pick = (rand() % len as u64) as usize;
        let mut cur = self.tables[ti].buckets[b].as_deref();
        while let Some(n) = cur {
            if pick == 0 {
                return Some((&n.key, &n.value));
            }
            pick -= 1;
            cur = n.next.as_deref();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn insert_get_remove_through_growth_and_shrink() {
        let mut d = Dict::new(7);
        let mut model = HashMap::new();
        for i in 0..10_000u32 {
            let k = i.to_le_bytes();
            assert_eq!(d.insert(&k, i), None);
            model.insert(i, i);
        }
        assert_eq!(d.len(), 10_000);
        for i in 0..10_000u32 {
            assert_eq!(d.get(&i.to_le_bytes()), Some(&i));
        }
        assert_eq!(d.insert(&5u32.to_le_bytes(), 55), Some(5));
        for i in 0..9_990u32 {
            assert!(d.remove(&i.to_le_bytes()).is_some());
        }
        assert_eq!(d.len(), 10);
        for _ in 0..100_000 {
            if !d.rehash_step(100) {
                break;
            }
        }
        assert!(d.buckets() < 1000, "shrank: {} buckets", d.buckets());
        for i in 9_990..10_000u32 {
            assert_eq!(d.peek(&i.to_le_bytes()), Some(&i));
        }
    }

    #[test]
    fn operations_do_bounded_rehash_work() {
        let mut d = Dict::new(1);
        for i in 0..4096u32 {
            d.insert(&i.to_le_bytes(), ());
        }
        // The insert that crosses load factor 1 starts a rehash but must not finish it.
        d.insert(b"one more", ());
        assert!(d.is_rehashing());
        assert_eq!(d.len(), 4097);
    }

    /// SCAN's guarantee: every key present for the whole walk is returned, even when the
    /// table grows and shrinks between calls.
    #[test]
    fn scan_survives_resizing() {
        let mut d = Dict::new(3);
        for i in 0..1000u32 {
            d.insert(&i.to_le_bytes(), ());
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut round = 0u32;
        loop {
            cursor = d.scan(cursor, |k, _| {
                seen.insert(u32::from_le_bytes(k.try_into().unwrap()));
            });
            // Churn: grow with fresh keys, then drop them, forcing resizes mid-walk.
            round += 1;
            if round.is_multiple_of(3) {
                for j in 0..3000u32 {
                    d.insert(&(100_000 + j + round * 10_000).to_le_bytes(), ());
                }
            } else if round % 3 == 1 {
                let extra: Vec<u32> = (0..3000u32)
                    .map(|j| 100_000 + j + (round - 1) * 10_000)
                    .collect();
                for e in extra {
                    d.remove(&e.to_le_bytes());
                }
            }
            if cursor == 0 {
                break;
            }
            assert!(round < 1_000_000);
        }
        for i in 0..1000u32 {
            assert!(seen.contains(&i), "key {i} missed by scan");
        }
    }

    #[test]
    fn random_returns_members() {
        let mut d = Dict::new(9);
        assert!(d.random(|| 4).is_none());
        for i in 0..50u32 {
            d.insert(&i.to_le_bytes(), i);
        }
        let mut x = 1u64;
        let mut rng = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let (k, v) = d.random(&mut rng).unwrap();
            assert_eq!(u32::from_le_bytes(k.try_into().unwrap()), *v);
            seen.insert(*v);
        }
        assert!(seen.len() > 40, "random covers most keys: {}", seen.len());
    }
}
