//! A sorted set value: members ordered by (score, member bytes), in one of the two encodings
//! Redis 7.0 reports.
//!
//! # `listpack` ([`ZPack`]): small sorted sets
//! One byte vector of elements in order, each the score then the member as an LEB128 length
//! and its bytes. An integral score below 2⁵³ is an LEB128 zigzag integer shifted left once
//! (1–2 bytes for common scores); any other score is the byte 1 then the `f64`'s 8
//! little-endian bytes:
//!
//! ```text
//!  +-------------------+------+--------+-------------------+------+--------+-----
//!  | zigzag<<1 | 1 f64 | mlen | member | zigzag<<1 | 1 f64 | mlen | member | ...
//!  +-------------------+------+--------+-------------------+------+--------+-----
//! ```
//!
//! Every operation is a linear walk, bounded by the conversion limits: at most
//! `zset-max-listpack-entries` elements (128) of at most `zset-max-listpack-value` bytes
//! (64), so under 10 KB scanned at worst, as Redis's listpack scans the same. A 10-member
//! set of 8-byte members with scores from 0 to 31 takes 100 bytes in one allocation
//! (Redis's listpack: 127). Measured: 200k such sets (scores up to 96) take 178 bytes of
//! `used_memory` each here, key and table slot included, 202 in Redis 7.0.15.
//!
//! In the keyspace the element count and the elements live in the key's node
//! ([`crate::dict`], "Packed collections"); readers see them through [`ZPackRef`], whether in
//! a node or in an owned [`ZPack`].
//!
//! # `skiplist` ([`Sorted`]): large sorted sets
//! Reported as `skiplist` because that is Redis's name for the large encoding, but the order
//! is kept by a counted B+tree ([`Tree`]), beside the shard's own table ([`Dict`]) mapping
//! member → score (the score's bits in the node's 8-byte integer slot), as Redis pairs its
//! skip list with a dict. The table owns the members: a leaf holds each element's score and
//! a handle to its table node (`NodeHandle`), where the member's bytes are:
//!
//! ```text
//!  Inner: [ Child { sep: (score, member copy), count, node } ; ≤ 63 ]   (40 bytes per child)
//!                         |
//!  Leaf:  [ Elem { score: f64, node: handle } ; ≤ 63 ]    (16 bytes per element)
//!                                   |
//!  Table node:  header | member bytes | score bits
//! ```
//!
//! - A handle stays valid because nodes never move in the table (rehashing relinks them)
//!   and the set never replaces one: a score changes in place in its node
//!   (`Dict::node_set_int`), a member leaves the tree before its node leaves the table,
//!   and a copy of the set ([`ZSet::clone_with`]) is rebuilt over its own table.
//! - Comparing elements reads the member through the handle only when scores tie.
//!
//! - `count` is the number of elements under a child, so rank → element and element → rank
//!   are one descent: O(log₆₃ n) nodes (4 levels at 10M members), each a binary search over
//!   at most 63 separators plus a sum of at most 63 counts.
//! - Separators are lower bounds: `max(child i-1) ≤ sep i ≤ min(child i)`. Removing an
//!   element never updates them (a stale separator still bounds), so only splits copy one
//!   member per new node: about 1/40 of the members are copied into inner nodes.
//! - Leaves are allocated once at 64 slots (a mimalloc size class) and never regrow; a leaf
//!   that splits keeps the lower half, or all but the new element when it was appended at
//!   the end (ascending loads fill leaves); a leaf that falls under 16 elements merges
//!   with a neighbour that has room, so a set emptied by ZREM keeps no trail of near-empty
//!   leaves.
//! - Range replies walk the tree from the start rank in order (O(log n + k)); ZSCAN walks
//!   the table with the reverse-binary cursor, so it keeps SCAN's guarantee.
//!
//! Per element, by layout (16-byte members): the leaf slot 16 bytes at 50–100 % fill, the
//! table node 15 + 16 + 8 = 39 (a 40-byte block) and an 8–16 byte bucket slot; Redis's skip
//! list node (score, ele, backward, 1.33 levels × 16 bytes) with its sds and its dict entry
//! costs more. Measured at 10M members (16-byte members, scores in random order, 10 per
//! ZADD through `redis-cli --pipe`, release build, one shard, this shared 2-CPU machine,
//! `ZMEMBERS=10000000` of `loadtest/scenarios/memory.sh`): `used_memory` 78 bytes per
//! member here, 138 in Redis 7.0.15, RSS 88.5 against 138 (leaves holding a copy of each
//! member: used_memory 107, RSS 124). ZADD took 41 µs per call here, 121 µs in Redis,
//! whose skip list walks ~2 log₂ n cache-missing nodes per insert.
//!
//! Alternatives rejected:
//! - A skip list as Redis's: one allocation per element plus 1.33 forward pointers and a
//!   span per level, a cache miss per level visited (≈ 2 log₂ n = 46 at 10M), and unsafe
//!   pointer code throughout. The B+tree visits 4 nodes, each holding up to 63 elements
//!   side by side.
//! - A treap or red-black tree with subtree sizes: 3–4 words per element and a cache miss
//!   per level as well.
//! - `std::collections::BTreeMap`: no ranks (ZRANK, ZRANGE by index would be O(n)).
//!
//! Conversion is one way, as in Redis: a pack becomes a tree when a new element would make
//! it exceed either limit, never back (except the results Redis itself builds small:
//! [`ZSet::from_elems`]).

use super::{counted_pack, get_len, put_len, view_basics};
use crate::dict::{Dict, NodeHandle};
use crate::value::ValueRef;
use std::cmp::Ordering;

/// The conversion limits (`zset-max-listpack-entries`, `zset-max-listpack-value`), with
/// Redis 7.0's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZSetLimits {
    pub max_listpack_entries: usize,
    pub max_listpack_value: usize,
}

impl Default for ZSetLimits {
    fn default() -> Self {
        ZSetLimits {
            max_listpack_entries: 128,
            max_listpack_value: 64,
        }
    }
}

/// The order of elements: by score, then by member bytes (Redis's `zslInsert` order).
/// Scores are never NaN (every command that could make one refuses it).
#[inline]
pub fn cmp_elem(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    s1.partial_cmp(&s2)
        .unwrap_or(Ordering::Equal)
        .then_with(|| m1.cmp(m2))
}

// ---------------------------------------------------------------------------------------
// listpack

/// The small encoding: see the module header.
#[derive(Clone, Default, PartialEq, Debug)]
pub struct ZPack {
    buf: Vec<u8>,
    len: usize,
}

/// Integers up to this magnitude are exact in an `f64` and packed as integers.
const EXACT_INT: f64 = (1u64 << 53) as f64;

/// A score as a pack stores it: an integral score below 2⁵³ as an LEB128 zigzag integer
/// shifted left once (the low bit 0 tells it from a float), any other as the byte 1 and its
/// 8 little-endian bytes. Scores from -32 to 31 take one byte, as Redis's listpack keeps
/// small integer scores small.
fn put_score(buf: &mut Vec<u8>, score: f64) {
    if score.fract() == 0.0 && score.abs() < EXACT_INT {
        let i = score as i64;
        let z = ((i << 1) ^ (i >> 63)) as u64;
        put_len(buf, (z << 1) as usize);
    } else {
        buf.push(1);
        buf.extend_from_slice(&score.to_le_bytes());
    }
}

/// A pack borrowed: from an owned [`ZPack`], or from a keyspace node, where a small
/// sorted set lives ([`crate::dict`]: the element count as 4 little-endian bytes, then the
/// elements).
#[derive(Clone, Copy, Debug)]
pub struct ZPackRef<'a> {
    buf: &'a [u8],
    len: usize,
}

counted_pack!(ZPack, ZPackRef, len);

impl<'a> ZPackRef<'a> {
    /// Each element in order with the byte range it occupies. The buffer is only written by
    /// this module, so it is well formed.
    fn iter(self) -> impl Iterator<Item = (f64, &'a [u8], std::ops::Range<usize>)> + 'a {
        let buf = self.buf;
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= buf.len() {
                return None;
            }
            let start = at;
            let (head, mut i) = get_len(buf, at);
            let score = if head & 1 == 1 {
                i += 8;
                f64::from_le_bytes(buf[i - 8..i].try_into().expect("8 bytes"))
            } else {
                let z = (head >> 1) as u64;
                ((z >> 1) as i64 ^ -((z & 1) as i64)) as f64
            };
            let (n, i) = get_len(buf, i);
            at = i + n;
            Some((score, &buf[i..i + n], start..at))
        })
    }

    fn find(self, member: &[u8]) -> Option<(f64, usize, std::ops::Range<usize>)> {
        self.iter()
            .enumerate()
            .find(|(_, (_, m, _))| *m == member)
            .map(|(i, (s, _, r))| (s, i, r))
    }

    /// Byte offset where the element of rank `r` starts (the end for `r == len`).
    fn offset(self, r: usize) -> usize {
        self.iter()
            .nth(r)
            .map_or(self.buf.len(), |(_, _, x)| x.start)
    }
}

impl ZPack {
    fn iter(&self) -> impl Iterator<Item = (f64, &[u8], std::ops::Range<usize>)> + '_ {
        self.view().iter()
    }

    fn insert(&mut self, score: f64, member: &[u8]) {
        // A listpack stores an integral score as an integer (Redis's `zzlInsertAt`), so
        // -0 reads back as 0.
        let score = if score == 0.0 { 0.0 } else { score };
        let at = self
            .iter()
            .find(|(s, m, _)| cmp_elem(*s, m, score, member) == Ordering::Greater)
            .map_or(self.buf.len(), |(_, _, r)| r.start);
        let mut e = Vec::with_capacity(member.len() + 11);
        put_score(&mut e, score);
        put_len(&mut e, member.len());
        e.extend_from_slice(member);
        // Exactly the room this element needs, as a listpack reallocs per insert.
        self.buf.reserve_exact(e.len());
        self.buf.splice(at..at, e);
        self.len += 1;
    }
}

// ---------------------------------------------------------------------------------------
// the counted B+tree

/// Elements per leaf: a leaf's array of 64 slots is 1,536 bytes, one of mimalloc's size
/// classes exactly (65 slots would round 1,560 up to 1,792).
const LEAF_MAX: usize = 63;
/// Children per inner node: 64 slots of 40 bytes, 2,560 bytes, a size class too.
const INNER_MAX: usize = 63;
/// A node narrower than this after a removal merges with a neighbour that has room.
const MERGE_BELOW: usize = 16;

/// A leaf's element: the score, and the member's node in the set's table, which holds the
/// member's bytes (and the score again). The tree never owns members; the table does.
#[derive(Clone, Copy, Debug)]
struct Elem {
    score: f64,
    node: NodeHandle,
}

impl Elem {
    /// The member's bytes.
    #[inline]
    fn member(&self) -> &[u8] {
        // SAFETY: every `Elem` is made by `Sorted` from the node it has just inserted in its
        // own table, and lives in that `Sorted`'s tree while the node is in the table: a
        // member leaves the tree before its node leaves the table (`Sorted::remove`,
        // `ZSet::remove_range`), and scores change in place (`Dict::node_set_int`), so the
        // node is never replaced. The borrow of `self` (the tree, inside the `Sorted`) keeps
        // the table alive and unchanged. An `Elem` taken out of the tree is read before its
        // node is deleted.
        unsafe { self.node.key() }
    }

    fn cmp(&self, score: f64, member: &[u8]) -> Ordering {
        cmp_elem(self.score, self.member(), score, member)
    }
}

/// A separator in an inner node: a copy of a member (a separator outlives the element it
/// was copied from; see the module header).
#[derive(Clone, Debug)]
struct Sep {
    score: f64,
    member: Box<[u8]>,
}

impl Sep {
    fn of(e: &Elem) -> Sep {
        Sep {
            score: e.score,
            member: e.member().into(),
        }
    }

    fn cmp(&self, score: f64, member: &[u8]) -> Ordering {
        cmp_elem(self.score, &self.member, score, member)
    }
}

#[derive(Debug)]
struct Child {
    /// A lower bound of the elements under `node` (see the module header).
    sep: Sep,
    count: usize,
    node: Box<Node>,
}

#[derive(Debug)]
enum Node {
    Leaf(Vec<Elem>),
    Inner(Vec<Child>),
}

fn leaf_vec() -> Vec<Elem> {
    Vec::with_capacity(LEAF_MAX + 1)
}

impl Node {
    fn width(&self) -> usize {
        match self {
            Node::Leaf(v) => v.len(),
            Node::Inner(k) => k.len(),
        }
    }

    fn count(&self) -> usize {
        match self {
            Node::Leaf(v) => v.len(),
            Node::Inner(k) => k.iter().map(|c| c.count).sum(),
        }
    }

    /// How many elements satisfy `below`, a predicate true for a prefix of the order.
    fn count_below(&self, below: &dyn Fn(f64, &[u8]) -> bool) -> usize {
        match self {
            Node::Leaf(v) => v.partition_point(|e| below(e.score, e.member())),
            Node::Inner(kids) => {
                // Children 1.. whose separator is below: every element before the last of
                // them is below too.
                let j = kids[1..].partition_point(|c| below(c.sep.score, &c.sep.member));
                kids[..j].iter().map(|c| c.count).sum::<usize>() + kids[j].node.count_below(below)
            }
        }
    }

    fn at(&self, mut r: usize) -> &Elem {
        match self {
            Node::Leaf(v) => &v[r],
            Node::Inner(kids) => {
                for c in kids {
                    if r < c.count {
                        return c.node.at(r);
                    }
                    r -= c.count;
                }
                unreachable!("rank within the node's count")
            }
        }
    }

    /// Inserts `e` (not present); returns a new right sibling when the node split.
    fn insert(&mut self, e: Elem) -> Option<(Sep, Box<Node>)> {
        match self {
            Node::Leaf(v) => {
                let at = v.partition_point(|x| x.cmp(e.score, e.member()) == Ordering::Less);
                v.insert(at, e);
                if v.len() <= LEAF_MAX {
                    return None;
                }
                let mut right = leaf_vec();
                // An element appended at a leaf's end (ascending inserts) leaves the leaf
                // full and starts the next one: sequential loads fill leaves, not half.
                let cut = if at == v.len() - 1 { at } else { v.len() / 2 };
                right.extend(v.drain(cut..));
                Some((Sep::of(&right[0]), Box::new(Node::Leaf(right))))
            }
            Node::Inner(kids) => {
                let i = kids[1..]
                    .partition_point(|c| c.sep.cmp(e.score, e.member()) != Ordering::Greater);
                kids[i].count += 1;
                let (sep, node) = kids[i].node.insert(e)?;
                let count = node.count();
                kids[i].count -= count;
                kids.insert(i + 1, Child { sep, count, node });
                if kids.len() <= INNER_MAX {
                    return None;
                }
                let mut right: Vec<Child> = Vec::with_capacity(INNER_MAX + 1);
                right.extend(kids.drain(kids.len() / 2..));
                let sep = right[0].sep.clone();
                Some((sep, Box::new(Node::Inner(right))))
            }
        }
    }

    /// Removes and returns the element of rank `r`.
    fn remove_at(&mut self, mut r: usize) -> Elem {
        match self {
            Node::Leaf(v) => v.remove(r),
            Node::Inner(kids) => {
                let mut i = 0;
                while r >= kids[i].count {
                    r -= kids[i].count;
                    i += 1;
                }
                kids[i].count -= 1;
                let e = kids[i].node.remove_at(r);
                if kids[i].count == 0 {
                    kids.remove(i);
                } else if kids[i].node.width() < MERGE_BELOW && kids.len() > 1 {
                    let l = if i + 1 < kids.len() { i } else { i - 1 };
                    Self::merge(kids, l);
                }
                e
            }
        }
    }

    /// Merges child `l + 1` into child `l` when both are of a kind and fit in one node.
    fn merge(kids: &mut Vec<Child>, l: usize) {
        let fits = match (&*kids[l].node, &*kids[l + 1].node) {
            (Node::Leaf(a), Node::Leaf(b)) => a.len() + b.len() <= LEAF_MAX,
            (Node::Inner(a), Node::Inner(b)) => a.len() + b.len() <= INNER_MAX,
            _ => false,
        };
        if !fits {
            return;
        }
        let right = kids.remove(l + 1);
        kids[l].count += right.count;
        match (&mut *kids[l].node, *right.node) {
            (Node::Leaf(a), Node::Leaf(b)) => a.extend(b),
            (Node::Inner(a), Node::Inner(mut b)) => {
                // The right node's first separator was implicit; its parent's bounds it.
                b[0].sep = right.sep;
                a.extend(b);
            }
            _ => unreachable!("checked to be of a kind"),
        }
    }

    /// Visits elements from rank `skip` on, in order, while `f` says so.
    fn walk_fwd(&self, mut skip: usize, f: &mut dyn FnMut(f64, &[u8]) -> bool) -> bool {
        match self {
            Node::Leaf(v) => v.iter().skip(skip).all(|e| f(e.score, e.member())),
            Node::Inner(kids) => {
                for c in kids {
                    if skip >= c.count {
                        skip -= c.count;
                        continue;
                    }
                    if !c.node.walk_fwd(skip, f) {
                        return false;
                    }
                    skip = 0;
                }
                true
            }
        }
    }

    /// Visits elements from rank `from` down to rank 0, while `f` says so.
    fn walk_rev(&self, from: usize, f: &mut dyn FnMut(f64, &[u8]) -> bool) -> bool {
        match self {
            Node::Leaf(v) => v[..=from].iter().rev().all(|e| f(e.score, e.member())),
            Node::Inner(kids) => {
                let (mut i, mut r) = (0, from);
                while r >= kids[i].count {
                    r -= kids[i].count;
                    i += 1;
                }
                if !kids[i].node.walk_rev(r, f) {
                    return false;
                }
                kids[..i]
                    .iter()
                    .rev()
                    .all(|c| c.node.walk_rev(c.count - 1, f))
            }
        }
    }

    /// Drops the last leaf (for freeing in slices; counts are not kept). True when the
    /// node is then empty.
    fn drop_last_leaf(&mut self) -> bool {
        match self {
            Node::Leaf(v) => {
                *v = Vec::new();
                true
            }
            Node::Inner(kids) => {
                if let Some(last) = kids.last_mut() {
                    if last.node.drop_last_leaf() {
                        kids.pop();
                    }
                }
                kids.is_empty()
            }
        }
    }

    /// Adds the elements and heap bytes of the first `*leaves` leaves to `acc` (MEMORY
    /// USAGE samples a large set, as Redis samples its elements). A leaf's share of its
    /// parent (a child slot, the node box, the separator's member) counts with it.
    fn sample(&self, leaves: &mut usize, acc: &mut (usize, usize)) {
        match self {
            Node::Leaf(v) => {
                if *leaves == 0 {
                    return;
                }
                *leaves -= 1;
                // The members are in the table's nodes, counted with the table.
                acc.0 += v.len();
                acc.1 += v.capacity() * std::mem::size_of::<Elem>()
                    + std::mem::size_of::<Child>()
                    + std::mem::size_of::<Node>()
                    + v.first()
                        .map_or(0, |e| e.member().len().next_multiple_of(8));
            }
            Node::Inner(k) => {
                for c in k {
                    if *leaves == 0 {
                        return;
                    }
                    c.node.sample(leaves, acc);
                }
            }
        }
    }
}

/// The ordered half of a large sorted set: see the module header.
pub struct Tree {
    root: Node,
    len: usize,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root: Node::Leaf(leaf_vec()),
            len: 0,
        }
    }
}

impl Tree {
    fn insert(&mut self, score: f64, node: NodeHandle) {
        let e = Elem { score, node };
        self.len += 1;
        if let Some((sep, right)) = self.root.insert(e) {
            let left = std::mem::replace(&mut self.root, Node::Inner(Vec::new()));
            let (lc, rc) = (left.count(), right.count());
            self.root = Node::Inner(vec![
                Child {
                    sep: sep.clone(),
                    count: lc,
                    node: Box::new(left),
                },
                Child {
                    sep,
                    count: rc,
                    node: right,
                },
            ]);
        }
    }

    fn rank_of(&self, score: f64, member: &[u8]) -> usize {
        self.root
            .count_below(&|s, m| cmp_elem(s, m, score, member) == Ordering::Less)
    }

    fn remove_at(&mut self, r: usize) -> Elem {
        let e = self.root.remove_at(r);
        self.len -= 1;
        while let Node::Inner(kids) = &mut self.root {
            if kids.len() != 1 {
                break;
            }
            let only = kids.pop().expect("one child");
            self.root = *only.node;
        }
        if matches!(&self.root, Node::Inner(k) if k.is_empty()) {
            self.root = Node::Leaf(leaf_vec());
        }
        e
    }

    fn remove(&mut self, score: f64, member: &[u8]) -> Elem {
        let r = self.rank_of(score, member);
        debug_assert!(self.root.at(r).cmp(score, member) == Ordering::Equal);
        self.remove_at(r)
    }
}

/// A large sorted set: the tree and the member → score table.
pub struct Sorted {
    tree: Tree,
    dict: Dict,
}

// SAFETY: the tree's handles point only at nodes of the same `Sorted`'s table, which it owns
// (and `Dict` is `Send`); the two move between threads together, and nothing else holds a
// pointer into either.
unsafe impl Send for Sorted {}

/// A score as the table stores it: its bits in an integer slot.
fn score_bits(score: f64) -> i64 {
    score.to_bits() as i64
}

fn score_of(v: ValueRef) -> f64 {
    match v {
        ValueRef::Int(b) => f64::from_bits(b as u64),
        _ => unreachable!("zset tables hold scores"),
    }
}

impl Sorted {
    fn new(seed: u64) -> Sorted {
        Sorted {
            tree: Tree::default(),
            dict: Dict::new(seed),
        }
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        self.dict.peek(member).map(|e| score_of(e.value()))
    }

    /// Adds `member`, which must be absent.
    fn insert(&mut self, score: f64, member: &[u8]) {
        let node = self.dict.insert_int_node(member, score_bits(score));
        self.tree.insert(score, node);
    }

    /// Moves `member` (present with score `old`) to `new`: out of the tree, the score
    /// rewritten in its node, back in.
    fn update(&mut self, member: &[u8], old: f64, new: f64) {
        let e = self.tree.remove(old, member);
        // SAFETY: `e.node` is the member's node in this table, holding its score.
        unsafe { self.dict.node_set_int(e.node, score_bits(new)) };
        self.tree.insert(new, e.node);
    }

    /// Removes `member` (present with `score`): from the tree first, then its node.
    fn remove(&mut self, score: f64, member: &[u8]) {
        self.tree.remove(score, member);
        self.dict.delete(member);
    }

    pub fn len(&self) -> usize {
        self.tree.len
    }

    pub fn is_empty(&self) -> bool {
        self.tree.len == 0
    }

    /// Frees a slice of a buried set; true while anything remains.
    pub fn free_step(&mut self) -> bool {
        for _ in 0..16 {
            if self.tree.root.drop_last_leaf() {
                break;
            }
        }
        if self.tree.root.width() > 0 {
            return true;
        }
        self.dict.free_step(1024)
    }

    /// The table's graveyard (its old bucket arrays).
    pub fn graveyard(&mut self) -> &mut crate::lazyfree::Graveyard {
        self.dict.graveyard()
    }
}

// ---------------------------------------------------------------------------------------
// the value

/// A sorted set's elements.
pub enum ZSet {
    Pack(ZPack),
    Tree(Box<Sorted>),
}

/// A sorted set borrowed, in either encoding: what readers see ([`crate::ValueRef::ZSet`]),
/// whether its pack lives in a keyspace node or in an owned [`ZSet`].
#[derive(Clone, Copy)]
pub enum ZSetRef<'a> {
    Pack(ZPackRef<'a>),
    Tree(&'a Sorted),
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::Pack(ZPack::default())
    }
}

impl<'a> ZSetRef<'a> {
    pub fn len(self) -> usize {
        match self {
            ZSetRef::Pack(p) => p.len,
            ZSetRef::Tree(t) => t.tree.len,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    pub fn encoding(self) -> &'static str {
        match self {
            ZSetRef::Pack(_) => "listpack",
            ZSetRef::Tree(_) => "skiplist",
        }
    }

    pub fn score(self, member: &[u8]) -> Option<f64> {
        match self {
            ZSetRef::Pack(p) => p.find(member).map(|(s, _, _)| s),
            ZSetRef::Tree(t) => t.score(member),
        }
    }

    /// The rank (from the lowest) and score of `member`.
    pub fn rank(self, member: &[u8]) -> Option<(usize, f64)> {
        match self {
            ZSetRef::Pack(p) => p.find(member).map(|(s, i, _)| (i, s)),
            ZSetRef::Tree(t) => {
                let s = t.score(member)?;
                Some((t.tree.rank_of(s, member), s))
            }
        }
    }

    /// How many elements satisfy `below`, a predicate true for a prefix of the order (a
    /// score or lex range's start): O(log n) for a tree.
    pub fn count_below(self, below: impl Fn(f64, &[u8]) -> bool) -> usize {
        match self {
            ZSetRef::Pack(p) => p.iter().take_while(|(s, m, _)| below(*s, m)).count(),
            ZSetRef::Tree(t) => t.tree.root.count_below(&below),
        }
    }

    /// Visits elements from rank `start` on (towards rank 0 when `rev`), while `f` returns
    /// true. O(log n + visited) for a tree.
    pub fn walk(self, start: usize, rev: bool, mut f: impl FnMut(f64, &[u8]) -> bool) {
        if start >= self.len() {
            return;
        }
        match self {
            ZSetRef::Pack(p) => {
                if rev {
                    let all: Vec<(f64, &[u8])> =
                        p.iter().take(start + 1).map(|(s, m, _)| (s, m)).collect();
                    for (s, m) in all.into_iter().rev() {
                        if !f(s, m) {
                            return;
                        }
                    }
                } else {
                    for (s, m, _) in p.iter().skip(start) {
                        if !f(s, m) {
                            return;
                        }
                    }
                }
            }
            ZSetRef::Tree(t) => {
                if rev {
                    t.tree.root.walk_rev(start, &mut f);
                } else {
                    t.tree.root.walk_fwd(start, &mut f);
                }
            }
        }
    }

    /// Every element in order.
    pub fn for_each(self, mut f: impl FnMut(f64, &[u8])) {
        self.walk(0, false, |s, m| {
            f(s, m);
            true
        });
    }

    /// The element of rank `r`, owned.
    pub fn at(self, r: usize) -> Option<(f64, Vec<u8>)> {
        let mut got = None;
        self.walk(r, false, |s, m| {
            got = Some((s, m.to_vec()));
            false
        });
        got
    }

    /// An element picked at random; None when empty.
    pub fn random(self, rand: &mut impl FnMut() -> u64) -> Option<(f64, Vec<u8>)> {
        match self {
            ZSetRef::Pack(p) if p.len > 0 => {
                let i = (rand() % p.len as u64) as usize;
                p.iter().nth(i).map(|(s, m, _)| (s, m.to_vec()))
            }
            ZSetRef::Pack(_) => None,
            ZSetRef::Tree(t) => t
                .dict
                .random_ref(rand)
                .map(|e| (score_of(e.value()), e.key().to_vec())),
        }
    }

    /// One ZSCAN call: a pack whole with cursor 0 (in order, as Redis), a table walked
    /// from `cursor` until `count` elements (members and scores both count) were seen.
    pub fn scan(self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        match self {
            ZSetRef::Pack(_) => {
                self.for_each(|s, m| f(m, s));
                0
            }
            ZSetRef::Tree(t) => t
                .dict
                .scan_some(cursor, count, 2, |k, e| f(k, score_of(e.value()))),
        }
    }

    /// An owned copy in the same encoding.
    pub fn clone_with(self, seed: u64) -> ZSet {
        match self {
            ZSetRef::Pack(p) => ZSet::Pack(p.to_pack()),
            ZSetRef::Tree(t) => {
                // The tree indexes its own table's nodes, so the copy is rebuilt in order
                // (appends fill its leaves).
                let mut c = Box::new(Sorted::new(seed));
                c.dict.reserve(t.tree.len);
                t.tree.root.walk_fwd(0, &mut |s, m| {
                    c.insert(s, m);
                    true
                });
                ZSet::Tree(c)
            }
        }
    }

    /// Equality of elements and scores, whatever the encodings.
    pub fn same_elems(self, other: ZSetRef) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let mut same = true;
        self.for_each(|s, m| same &= other.score(m).is_some_and(|o| o.to_bits() == s.to_bits()));
        same
    }
}

impl ZSet {
    /// An empty set in the encoding Redis's ZADD creates for a first member of `len`
    /// bytes.
    pub fn for_member(len: usize, limits: ZSetLimits, seed: u64) -> ZSet {
        if limits.max_listpack_entries == 0 || len > limits.max_listpack_value {
            ZSet::Tree(Box::new(Sorted::new(seed)))
        } else {
            ZSet::default()
        }
    }

    pub fn view(&self) -> ZSetRef<'_> {
        match self {
            ZSet::Pack(p) => ZSetRef::Pack(p.view()),
            ZSet::Tree(t) => ZSetRef::Tree(t),
        }
    }

    view_basics!();

    /// The member → score table of a large sorted set (a snapshot walks it member by
    /// member: [`crate::dict::Walk`]). Its tree keeps handles to the table's nodes; when a
    /// walk takes the table of a set being freed, the tree is freed without reading them.
    pub(crate) fn table_mut(&mut self) -> Option<&mut Dict> {
        match self {
            ZSet::Tree(t) => Some(&mut t.dict),
            ZSet::Pack(_) => None,
        }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.view().score(member)
    }

    /// [`ZSetRef::rank`].
    pub fn rank(&self, member: &[u8]) -> Option<(usize, f64)> {
        self.view().rank(member)
    }

    /// [`ZSetRef::count_below`].
    pub fn count_below(&self, below: impl Fn(f64, &[u8]) -> bool) -> usize {
        self.view().count_below(below)
    }

    /// [`ZSetRef::walk`].
    pub fn walk(&self, start: usize, rev: bool, f: impl FnMut(f64, &[u8]) -> bool) {
        self.view().walk(start, rev, f)
    }

    /// [`ZSetRef::for_each`].
    pub fn for_each(&self, f: impl FnMut(f64, &[u8])) {
        self.view().for_each(f)
    }

    /// [`ZSetRef::at`].
    pub fn at(&self, r: usize) -> Option<(f64, Vec<u8>)> {
        self.view().at(r)
    }

    /// [`ZSetRef::random`].
    pub fn random(&self, rand: &mut impl FnMut() -> u64) -> Option<(f64, Vec<u8>)> {
        self.view().random(rand)
    }

    /// A copy in the same encoding.
    pub fn clone_with(&self, seed: u64) -> ZSet {
        self.view().clone_with(seed)
    }

    /// [`ZSetRef::same_elems`].
    pub fn same_elems(&self, other: &ZSet) -> bool {
        self.view().same_elems(other.view())
    }

    /// Adds `member` (which must be absent) with `score`; a pack becomes a tree first when
    /// one more element or this member's length would pass the limits (Redis's `zsetAdd`).
    pub fn insert(&mut self, score: f64, member: &[u8], limits: ZSetLimits, seed: u64) {
        if let ZSet::Pack(p) = self {
            if p.len + 1 > limits.max_listpack_entries || member.len() > limits.max_listpack_value {
                self.convert(seed);
            }
        }
        match self {
            ZSet::Pack(p) => p.insert(score, member),
            ZSet::Tree(t) => t.insert(score, member),
        }
    }

    /// Moves `member` (present with score `old`) to `new`.
    pub fn update(&mut self, member: &[u8], old: f64, new: f64) {
        match self {
            ZSet::Pack(p) => {
                let (_, _, r) = p.view().find(member).expect("the member is present");
                p.buf.drain(r);
                p.len -= 1;
                p.insert(new, member);
            }
            ZSet::Tree(t) => t.update(member, old, new),
        }
    }

    /// Removes `member`; its score when it was there.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        match self {
            ZSet::Pack(p) => {
                let (s, _, r) = p.view().find(member)?;
                p.buf.drain(r);
                p.len -= 1;
                Some(s)
            }
            ZSet::Tree(t) => {
                let s = t.score(member)?;
                t.remove(s, member);
                Some(s)
            }
        }
    }

    /// Removes the elements of ranks `lo..hi`, returning them in order.
    pub fn remove_range(&mut self, lo: usize, hi: usize) -> Vec<(f64, Vec<u8>)> {
        let hi = hi.min(self.len());
        if lo >= hi {
            return Vec::new();
        }
        match self {
            ZSet::Pack(p) => {
                let (a, b) = (p.view().offset(lo), p.view().offset(hi));
                let mut out = Vec::with_capacity(hi - lo);
                for (s, m, _) in p.iter().skip(lo).take(hi - lo) {
                    out.push((s, m.to_vec()));
                }
                p.buf.drain(a..b);
                p.len -= hi - lo;
                out
            }
            ZSet::Tree(t) => (lo..hi)
                .map(|_| {
                    let e = t.tree.remove_at(lo);
                    let member = e.member().to_vec();
                    t.dict.delete(&member);
                    (e.score, member)
                })
                .collect(),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            ZSet::Pack(p) => p.buf.capacity(),
            ZSet::Tree(t) => {
                // The first 16 leaves (up to 1,024 elements), scaled to the whole: O(1).
                let (mut leaves, mut acc) = (16, (0, 0));
                t.tree.root.sample(&mut leaves, &mut acc);
                let tree = match acc {
                    (0, bytes) => bytes,
                    (n, bytes) => (bytes as u128 * t.tree.len as u128 / n as u128) as usize,
                };
                std::mem::size_of::<Sorted>() + tree + t.dict.alloc_bytes()
            }
        }
    }

    /// Turns a pack into a tree with the same elements; O(n) in a pack's size, which the
    /// limits bound. (SORT converts as Redis 7.0's does, before it reads the set.)
    pub(crate) fn convert(&mut self, seed: u64) {
        let ZSet::Pack(p) = self else { return };
        let mut t = Box::new(Sorted::new(seed));
        for (s, m, _) in p.iter() {
            t.insert(s, m);
        }
        *self = ZSet::Tree(t);
    }

    /// A result set as Redis builds ZUNIONSTORE's and a loaded set's: a pack when it has at
    /// most the entries limit of elements and no member past the value limit, else a tree.
    /// Members must be distinct.
    pub fn from_elems<'a>(
        elems: impl Iterator<Item = (f64, &'a [u8])> + Clone,
        limits: ZSetLimits,
        seed: u64,
    ) -> ZSet {
        let (mut n, mut longest) = (0, 0);
        for (_, m) in elems.clone() {
            n += 1;
            longest = longest.max(m.len());
        }
        if n <= limits.max_listpack_entries && longest <= limits.max_listpack_value {
            let mut p = ZPack::default();
            for (s, m) in elems {
                p.insert(s, m);
            }
            ZSet::Pack(p)
        } else {
            let mut t = Box::new(Sorted::new(seed));
            for (s, m) in elems {
                t.insert(s, m);
            }
            ZSet::Tree(t)
        }
    }

    /// Checks the tree's invariants (tests).
    #[cfg(test)]
    fn check(&self) {
        if let ZSet::Tree(t) = self {
            assert_eq!(t.tree.root.count(), t.tree.len);
            assert_eq!(t.dict.len(), t.tree.len);
            let mut prev: Option<(f64, Vec<u8>)> = None;
            self.for_each(|s, m| {
                if let Some((ps, pm)) = &prev {
                    assert_eq!(cmp_elem(*ps, pm, s, m), Ordering::Less);
                }
                assert_eq!(t.score(m), Some(s));
                prev = Some((s, m.to_vec()));
            });
            fn sub(n: &Node) {
                if let Node::Inner(k) = n {
                    for c in k {
                        assert_eq!(c.count, c.node.count());
                        assert!(c.count > 0);
                        sub(&c.node);
                    }
                }
            }
            sub(&t.tree.root);
        }
    }
}

impl std::fmt::Debug for ZSetRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        self.for_each(|s, m| {
            l.entry(&(s, String::from_utf8_lossy(m)));
        });
        l.finish()
    }
}

impl std::fmt::Debug for ZSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Random inserts, updates and removals against a sorted Vec model, in both encodings.
    #[test]
    fn tree_and_pack_agree_with_a_sorted_model() {
        for limits in [
            ZSetLimits::default(),
            ZSetLimits {
                max_listpack_entries: 0,
                max_listpack_value: 64,
            },
        ] {
            let mut z = ZSet::for_member(1, limits, 3);
            let mut model: Vec<(f64, Vec<u8>)> = Vec::new();
            let mut x = 0x1234_5678u64;
            for step in 0..30_000 {
                let m = format!("m{}", xorshift(&mut x) % 3000).into_bytes();
                let score = (xorshift(&mut x) % 50) as f64 - 25.0;
                match xorshift(&mut x) % 4 {
                    0 | 1 => match z.score(&m) {
                        Some(old) => {
                            z.update(&m, old, score);
                            let i = model.iter().position(|(_, mm)| *mm == m).unwrap();
                            model[i].0 = score;
                        }
                        None => {
                            z.insert(score, &m, limits, 3);
                            model.push((score, m.clone()));
                        }
                    },
                    2 => {
                        let got = z.remove(&m);
                        let i = model.iter().position(|(_, mm)| *mm == m);
                        assert_eq!(got.is_some(), i.is_some());
                        if let Some(i) = i {
                            model.remove(i);
                        }
                    }
                    _ => {
                        let n = z.len();
                        if n > 0 {
                            let lo = (xorshift(&mut x) as usize) % n;
                            let hi = lo + (xorshift(&mut x) as usize) % 5;
                            model.sort_by(|a, b| cmp_elem(a.0, &a.1, b.0, &b.1));
                            let want: Vec<_> = model.drain(lo..hi.min(n)).collect();
                            assert_eq!(z.remove_range(lo, hi), want);
                        }
                    }
                }
                model.sort_by(|a, b| cmp_elem(a.0, &a.1, b.0, &b.1));
                assert_eq!(z.len(), model.len());
                if step == 15_000 {
                    // Go on with a copy (the original dropped): a tree's copy indexes its
                    // own table's nodes.
                    z = z.clone_with(5);
                    z.check();
                }
                if step % 997 == 0 {
                    z.check();
                    let mut all = Vec::new();
                    z.for_each(|s, m| all.push((s, m.to_vec())));
                    assert_eq!(all, model);
                    for (i, (s, m)) in model.iter().enumerate().step_by(37) {
                        assert_eq!(z.rank(m), Some((i, *s)));
                        assert_eq!(z.at(i).as_ref(), Some(&model[i]));
                        assert_eq!(z.count_below(|ss, mm| cmp_elem(ss, mm, *s, m).is_lt()), i);
                    }
                    if !model.is_empty() {
                        let from = model.len() / 2;
                        let mut rev = Vec::new();
                        z.walk(from, true, |s, m| {
                            rev.push((s, m.to_vec()));
                            true
                        });
                        let want: Vec<_> = model[..=from].iter().rev().cloned().collect();
                        assert_eq!(rev, want);
                    }
                }
            }
            assert_eq!(z.encoding(), "skiplist");
            // Empty the set: merges keep the tree valid down to nothing.
            while !z.is_empty() {
                z.remove_range(0, 7);
                z.check();
            }
        }
    }

    /// Every score reads back from a pack as it went in (bits and all; -0 as 0, as Redis's
    /// listpack stores it), small integers in one byte.
    #[test]
    fn pack_scores_round_trip() {
        let scores = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            31.0,
            -32.0,
            32.0,
            -33.0,
            9007199254740991.0,
            -9007199254740991.0,
            9007199254740992.0,
            1.5,
            0.1,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -5e-324,
            f64::MAX,
        ];
        let mut p = ZPack::default();
        for (i, s) in scores.iter().enumerate() {
            p.insert(*s, format!("m{i:02}").as_bytes());
        }
        assert_eq!(p.len, scores.len());
        for (s, m, _) in p.iter() {
            let i: usize = std::str::from_utf8(&m[1..]).unwrap().parse().unwrap();
            let want = if scores[i] == 0.0 { 0.0 } else { scores[i] };
            assert_eq!(s.to_bits(), want.to_bits(), "{m:?}");
        }
        let mut one = ZPack::default();
        one.insert(31.0, b"");
        one.insert(-32.0, b"x");
        assert_eq!(
            one.buf.len(),
            2 + 3,
            "a byte per small score, a byte per length"
        );
    }

    #[test]
    fn packs_convert_one_way_at_the_limits() {
        let limits = ZSetLimits {
            max_listpack_entries: 3,
            max_listpack_value: 4,
        };
        let mut z = ZSet::for_member(1, limits, 1);
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            z.insert(i as f64, m.as_bytes(), limits, 1);
        }
        assert_eq!(z.encoding(), "listpack");
        z.insert(0.5, b"d", limits, 1);
        assert_eq!(z.encoding(), "skiplist");
        z.remove(b"d");
        assert_eq!(z.encoding(), "skiplist");
        let mut y = ZSet::for_member(1, limits, 1);
        y.insert(1.0, b"abcde", limits, 1);
        assert_eq!(y.encoding(), "skiplist");
        assert_eq!(ZSet::for_member(5, limits, 1).encoding(), "skiplist");
        let e = [(1.0, &b"x"[..]), (0.0, &b"y"[..])];
        let small = ZSet::from_elems(e.iter().copied(), limits, 1);
        assert_eq!(small.encoding(), "listpack");
        assert_eq!(small.at(0), Some((0.0, b"y".to_vec())));
        let copy = z.clone_with(2);
        assert!(copy.same_elems(&z) && !copy.same_elems(&small));
        assert_eq!(copy.encoding(), "skiplist");
    }
}
