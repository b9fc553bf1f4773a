//! A list value: Redis 7.0's `quicklist`, a deque of packed nodes (OBJECT ENCODING reports
//! `quicklist` for every list, as Redis 7.0 does).
//!
//! # Layout
//! `List { nodes, len }`: one [`Node`] held in place (most lists are short, and a deque of
//! one would cost an allocation of its own), or a `VecDeque` of them. A node is one byte
//! vector of entries and their count. An entry is
//!
//! ```text
//!   [len: LEB128][bytes][len again, LEB128 reversed]
//! ```
//!
//! The trailing copy of the length (Redis's listpack `backlen`) reads from its last byte
//! backwards, so a node walks in both directions without an index: a pop at either end, a
//! push at either end and a walk from the nearer end touch one node. A 16-byte element takes
//! 18 bytes, as in Redis's listpack (an encoding byte, the data, one backlen byte). Elements
//! are kept as the bytes the client sent (Redis converts canonical integers to a packed form
//! and back; the replies are the same bytes either way).
//!
//! # Node size: `list-max-listpack-size` (`fill`)
//! As Redis's `_quicklistNodeAllowInsert`: a negative fill −1…−5 lets a node grow to 4, 8,
//! 16, 32 or 64 KiB (default −2: 8 KiB); a positive fill N lets it hold N entries and at most
//! 8 KiB. A node accepts a new entry when it is empty or the entry keeps it within its
//! limit; otherwise the entry starts a new node at that end. An insert in the middle
//! (LINSERT, LSET) that takes a node past its limit splits it in two halves, so no single
//! edit moves more than one node's bytes (at most 64 KiB, or one huge element).
//! Popped-empty nodes are removed; partly emptied ones are not merged (Redis does not
//! either, outside of insert splits).
//!
//! # Compression: `list-compress-depth`
//! As Redis's quicklist (`__quicklistCompress`), with LZ4 (`lz4_flex`, safe code) where Redis
//! uses LZF: under depth D > 0 the D nodes at each end are stored as they are and every
//! interior node as one LZ4 block of its entries, when the node holds at least 48 bytes and
//! the block saves at least 8 (Redis's `MIN_COMPRESS_BYTES`, `MIN_COMPRESS_IMPROVE`; a node
//! that does not compress stays as it is). `Node::raw_len` (in the padding of the node's
//! 32 bytes, so free) tells the two apart and keeps the entries' length for the fill limits.
//! - An edit of a node (push, pop, LSET, LINSERT, LREM, LTRIM, a split) stores it as it is
//!   first, and afterwards [`List::compress_around`] compresses it again if it is interior,
//!   stores the D nodes at each end as they are, and compresses the first node past them at
//!   each end (Redis's rule, and its cost: O(D) flag checks, a few nodes (de)compressed).
//!   Pushes and pops at the ends touch no compressed node: one compression when an end gains
//!   a node (once per ~455 pushes of 16-byte elements), one decompression when it loses one.
//! - A read (LINDEX, LRANGE, LPOS, LINSERT's pivot, LREM's search, a snapshot, DEBUG DIGEST)
//!   decompresses a node into a buffer of its own and leaves the node compressed; LRANGE and
//!   the walks decompress each node once ([`List::for_range`], [`List::walk`]).
//! - The depth is not kept per list (Redis keeps the one the list was created with): a
//!   CONFIG SET applies to the nodes each list's edits touch next, and a snapshot loads
//!   under the depth of the moment.
//! - MEMORY USAGE and `used_memory` count compressed nodes at their compressed size.
//!
//! **percore's default is 1, Redis's is 0.** Measured on 2026-12-03 (release build;
//! `loadtest/results/2026-12-03/list-compress.md`): one list of 10M elements ("e" + 15
//! digits) takes 4.7 RSS bytes per element at depth 1 against 18.2 at depth 0 (Redis 7.0:
//! 18.5 at its default, 5.8 at depth 1), i.e. 0.26× Redis. The price is paid only by the
//! commands that reach interior nodes, in server CPU per command on a 1M-element list:
//! LINDEX in the middle 7.7 µs against 4.7 at depth 0 (Redis 6.2; 24.5 at depth 1), LSET
//! 14.6 against 5.0 (Redis 6.8; 25.8), and walks over half the list (LINSERT, LREM, LPOS)
//! 24–64 % more, still 2.3–3× below Redis at depth 0. Pushes and pops at the ends cost
//! the same. `list-compress-depth 0` is Redis's behaviour.
//!
//! # Bounded work
//! LPUSH/RPUSH/LPOP/RPOP touch one node: O(1) plus a memmove within 8 KiB at the head.
//! LINDEX/LSET/LINSERT find the node by walking node counts from the nearer end (O(N / node
//! size) node hops, as Redis's quicklist); LRANGE, LREM, LPOS walk entries (O(N) as
//! documented). Freeing a long list is sliced by [`List::free_nodes`] ([`crate::lazyfree`]).
//! Compression adds to an edit at most one node's (de)compression per node it touches plus
//! Redis's boundary nodes, and to a read one decompression per node it reaches.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

/// The largest node a positive fill may build (Redis's `SIZE_SAFETY_LIMIT`).
const SIZE_SAFETY_LIMIT: usize = 8192;

/// `list-max-listpack-size`, the size from which an element always gets a node of its
/// own (Redis's "plain" nodes; `DEBUG QUICKLIST-PACKED-THRESHOLD`, 1 GiB by default), and
/// `list-compress-depth` (how many nodes at each end stay uncompressed; 0: none is
/// compressed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListLimits {
    pub fill: i64,
    pub packed_threshold: usize,
    pub compress_depth: usize,
}

/// percore's default `list-compress-depth` (see the module header for why it is not
/// Redis's 0).
pub const COMPRESS_DEPTH: usize = 1;

/// Redis's default packed threshold.
pub const PACKED_THRESHOLD: usize = 1 << 30;

impl Default for ListLimits {
    fn default() -> Self {
        ListLimits {
            fill: -2,
            packed_threshold: PACKED_THRESHOLD,
            compress_depth: COMPRESS_DEPTH,
        }
    }
}

impl ListLimits {
    /// Whether an element of `len` bytes is stored alone in its node.
    fn is_plain(self, len: usize) -> bool {
        len >= self.packed_threshold
    }

    /// Whether a node of `bytes` bytes and `count` entries stays within the limit with
    /// `add` more bytes and one more entry.
    fn fits(self, bytes: usize, count: usize, add: usize) -> bool {
        if count == 1 && self.is_plain(bytes) || self.is_plain(add) {
            return false;
        }
        let new = bytes + add;
        if self.fill < 0 {
            new <= 4096usize << ((-self.fill).min(5) - 1)
        } else {
            (count as u64) < self.fill as u64 && new <= SIZE_SAFETY_LIMIT
        }
    }

    /// The most bytes a node of several entries may hold.
    fn max_node_bytes(self) -> usize {
        if self.fill < 0 {
            4096usize << ((-self.fill).min(5) - 1)
        } else {
            SIZE_SAFETY_LIMIT
        }
    }

    /// Whether a node is over its limit (after an insert in the middle).
    fn over(self, bytes: usize, count: usize) -> bool {
        if self.fill < 0 {
            bytes > 4096usize << ((-self.fill).min(5) - 1)
        } else {
            count as u64 > self.fill.max(1) as u64 || bytes > SIZE_SAFETY_LIMIT
        }
    }
}

/// Which end of a list (Redis's LEFT/head and RIGHT/tail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl End {
    /// `LEFT`/`RIGHT`, case-insensitively.
    pub fn parse(b: &[u8]) -> Option<End> {
        if b.eq_ignore_ascii_case(b"left") {
            Some(End::Left)
        } else if b.eq_ignore_ascii_case(b"right") {
            Some(End::Right)
        } else {
            None
        }
    }
}

fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Bytes an entry of `len` data bytes takes in a node.
fn entry_size(len: usize) -> usize {
    2 * varint_len(len) + len
}

fn put_entry(out: &mut Vec<u8>, e: &[u8]) {
    let mut n = e.len();
    let start = out.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    let header = out.len() - start;
    out.extend_from_slice(e);
    for i in (0..header).rev() {
        out.push(out[start + i]);
    }
}

/// The smallest node worth compressing, and the least a compression must save for the node
/// to be kept compressed (Redis's `MIN_COMPRESS_BYTES` and `MIN_COMPRESS_IMPROVE`).
const MIN_COMPRESS_BYTES: usize = 48;
const MIN_COMPRESS_IMPROVE: usize = 8;

/// A packed run of entries (see the module header), stored as they are or, for an interior
/// node of a list under `list-compress-depth`, as one LZ4 block of them.
#[derive(Clone, Debug, Default)]
struct Node {
    /// The entries; or, when `raw_len` is not 0, their LZ4 block.
    data: Vec<u8>,
    count: u32,
    /// 0 for a node stored as it is; else the byte length of its entries (a compressed node
    /// is never empty: it held at least [`MIN_COMPRESS_BYTES`]).
    raw_len: u32,
}

/// The entry starting at byte `pos` of `data` (a run of entries) and the position after it.
fn entry_at(data: &[u8], pos: usize) -> (&[u8], usize) {
    let (mut n, mut shift, mut i) = (0usize, 0, pos);
    loop {
        let b = data[i];
        n |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let end = i + n;
    (&data[i..end], end + (i - pos))
}

/// The entry ending at byte `end` of `data` and the position where it starts.
fn entry_before(data: &[u8], end: usize) -> (&[u8], usize) {
    let (mut n, mut shift, mut i) = (0usize, 0, end);
    loop {
        i -= 1;
        let b = data[i];
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let h = end - i;
    let start = i - n - h;
    (&data[i - n..i], start)
}

/// Byte position of entry `i` (0 ≤ i ≤ count) in `data`, a run of `count` entries, walking
/// from the nearer end.
fn pos_of(data: &[u8], count: usize, i: usize) -> usize {
    if i <= count / 2 {
        let mut pos = 0;
        for _ in 0..i {
            pos = entry_at(data, pos).1;
        }
        pos
    } else {
        let mut pos = data.len();
        for _ in i..count {
            pos = entry_before(data, pos).1;
        }
        pos
    }
}

impl Node {
    fn is_compressed(&self) -> bool {
        self.raw_len != 0
    }

    /// Bytes of the node's entries, compressed or not (what the fill limits count).
    fn bytes(&self) -> usize {
        if self.is_compressed() {
            self.raw_len as usize
        } else {
            self.data.len()
        }
    }

    /// The node's entries: borrowed, or decompressed into a buffer of their size (a read of
    /// a compressed node leaves it compressed). O(node bytes) when compressed.
    fn entries(&self) -> Cow<'_, [u8]> {
        if !self.is_compressed() {
            return Cow::Borrowed(&self.data);
        }
        let mut out = vec![0; self.raw_len as usize];
        let n = lz4_flex::block::decompress_into(&self.data, &mut out)
            .expect("a node compressed by `compress` decompresses to its length");
        assert_eq!(n, out.len(), "a compressed node decompresses to its length");
        Cow::Owned(out)
    }

    /// Stores the entries as they are again (before an edit).
    fn decompress(&mut self) {
        if self.is_compressed() {
            self.data = self.entries().into_owned();
            self.raw_len = 0;
        }
    }

    /// Stores the entries as one LZ4 block when they are at least [`MIN_COMPRESS_BYTES`] and
    /// the block saves at least [`MIN_COMPRESS_IMPROVE`] (Redis's `__quicklistCompressNode`);
    /// else leaves the node as it is. O(node bytes); allocates the block (and a scratch
    /// buffer of the bound LZ4 needs).
    fn compress(&mut self) {
        let len = self.data.len();
        if self.is_compressed() || len < MIN_COMPRESS_BYTES || len > u32::MAX as usize {
            return;
        }
        let mut out = vec![0; lz4_flex::block::get_maximum_output_size(len)];
        match lz4_flex::block::compress_into(&self.data, &mut out) {
            Ok(n) if n + MIN_COMPRESS_IMPROVE < len => {
                self.data = out[..n].to_vec();
                self.raw_len = len as u32;
            }
            _ => {}
        }
    }

    /// The entry starting at byte `pos` and the position after it (a node stored as it is).
    fn entry_at(&self, pos: usize) -> (&[u8], usize) {
        entry_at(&self.data, pos)
    }

    /// The entry ending at byte `end` and the position where it starts.
    fn entry_before(&self, end: usize) -> (&[u8], usize) {
        entry_before(&self.data, end)
    }

    /// Byte position of entry `i` (0 ≤ i ≤ count).
    fn pos_of(&self, i: usize) -> usize {
        pos_of(&self.data, self.count as usize, i)
    }

    /// Inserts `e` at byte `pos`: the tail moves once, and nothing is allocated but the
    /// node's own growth.
    fn insert(&mut self, pos: usize, e: &[u8]) {
        let mut h = [0u8; 10];
        let (mut n, mut hl) = (e.len(), 0);
        loop {
            h[hl] = (n & 0x7f) as u8;
            n >>= 7;
            hl += 1;
            if n == 0 {
                break;
            }
            h[hl - 1] |= 0x80;
        }
        let size = 2 * hl + e.len();
        let old = self.data.len();
        self.data.resize(old + size, 0);
        self.data.copy_within(pos..old, pos + size);
        let at = &mut self.data[pos..pos + size];
        at[..hl].copy_from_slice(&h[..hl]);
        at[hl..hl + e.len()].copy_from_slice(e);
        for (i, b) in h[..hl].iter().rev().enumerate() {
            at[hl + e.len() + i] = *b;
        }
        self.count += 1;
    }

    /// Removes the entry at byte `pos`; returns its data.
    fn remove(&mut self, pos: usize) -> Vec<u8> {
        let (d, next) = self.entry_at(pos);
        let d = d.to_vec();
        self.data.drain(pos..next);
        self.count -= 1;
        d
    }

    /// Removes entries `from..to` (indices).
    fn remove_range(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        let a = self.pos_of(from);
        let mut b = a;
        for _ in from..to {
            b = self.entry_at(b).1;
        }
        self.data.drain(a..b);
        self.count -= (to - from) as u32;
    }

    /// Moves entries `i..` into a new node.
    fn split_off(&mut self, i: usize) -> Node {
        let pos = self.pos_of(i);
        let tail = self.data.split_off(pos);
        let moved = self.count - i as u32;
        self.count = i as u32;
        self.data.shrink_to_fit();
        Node {
            data: tail,
            count: moved,
            raw_len: 0,
        }
    }
}

/// Entries of a run of them (a node's, [`Node::entries`]), from either end.
struct NodeIter<'a> {
    data: &'a [u8],
    front: usize,
    back: usize,
}

impl<'a> NodeIter<'a> {
    fn new(data: &'a [u8]) -> NodeIter<'a> {
        NodeIter {
            data,
            front: 0,
            back: data.len(),
        }
    }
}

impl<'a> Iterator for NodeIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.front >= self.back {
            return None;
        }
        let (e, next) = entry_at(self.data, self.front);
        self.front = next;
        Some(e)
    }
}

impl DoubleEndedIterator for NodeIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        let (e, start) = entry_before(self.data, self.back);
        self.back = start;
        Some(e)
    }
}

/// The elements of one node as [`List::iter`] gives them: borrowed from a node stored as it
/// is, copied out of a compressed one (decompressed once, into the iterator).
enum NodeElems<'a> {
    Borrowed(NodeIter<'a>),
    Owned(std::vec::IntoIter<Vec<u8>>),
}

impl<'a> NodeElems<'a> {
    fn of(n: &'a Node) -> NodeElems<'a> {
        match n.entries() {
            Cow::Borrowed(d) => NodeElems::Borrowed(NodeIter::new(d)),
            Cow::Owned(d) => NodeElems::Owned(
                NodeIter::new(&d)
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
        }
    }
}

impl<'a> Iterator for NodeElems<'a> {
    type Item = Cow<'a, [u8]>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            NodeElems::Borrowed(it) => it.next().map(Cow::Borrowed),
            NodeElems::Owned(it) => it.next().map(Cow::Owned),
        }
    }
}

impl DoubleEndedIterator for NodeElems<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            NodeElems::Borrowed(it) => it.next_back().map(Cow::Borrowed),
            NodeElems::Owned(it) => it.next_back().map(Cow::Owned),
        }
    }
}

/// A list's nodes: most lists are short, and one node is held in place (a deque would cost
/// an allocation of its own, 32 bytes per list); a second node makes it a deque.
///
/// The deque's nodes are shared by reference (`Arc`): a clone of a long list — a snapshot's
/// copy before write, or its walk's copy — copies one pointer per node (a 10M-element
/// list: ~22k pointers, where copying its 180 MB of nodes stalled the core for ~170 ms), and
/// a later write copies only the node it changes ([`Arc::make_mut`] in `IndexMut`). A
/// node's `Arc` costs 16 bytes beside its ~8 KiB of entries; a one-node list keeps its node
/// in place and pays nothing. `Arc` rather than `Rc` because values move between cores
/// (COPY, RENAME, MOVE across shards).
#[derive(Clone, Debug)]
enum Nodes {
    One(Node),
    /// No node (an empty list), or two and more.
    Many(VecDeque<Arc<Node>>),
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes::Many(VecDeque::new())
    }
}

impl std::ops::Index<usize> for Nodes {
    type Output = Node;
    fn index(&self, i: usize) -> &Node {
        match self {
            Nodes::One(n) if i == 0 => n,
            Nodes::One(_) => panic!("node {i} of one"),
            Nodes::Many(v) => &v[i],
        }
    }
}

impl std::ops::IndexMut<usize> for Nodes {
    fn index_mut(&mut self, i: usize) -> &mut Node {
        match self {
            Nodes::One(n) if i == 0 => n,
            Nodes::One(_) => panic!("node {i} of one"),
            // Copies the node first if a clone of the list still shares it.
            Nodes::Many(v) => Arc::make_mut(&mut v[i]),
        }
    }
}

impl Nodes {
    fn len(&self) -> usize {
        match self {
            Nodes::One(_) => 1,
            Nodes::Many(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> Option<&Node> {
        (i < self.len()).then(|| &self[i])
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = &Node> + '_ {
        let (one, (a, b)) = match self {
            Nodes::One(n) => (Some(n), (&[][..], &[][..])),
            Nodes::Many(v) => (None, v.as_slices()),
        };
        one.into_iter()
            .chain(a.iter().chain(b.iter()).map(|n| &**n))
    }

    /// Bytes of the deque's slots and the nodes' shared boxes (none for one node).
    fn slot_bytes(&self) -> usize {
        match self {
            Nodes::One(_) => 0,
            Nodes::Many(v) => {
                v.capacity() * std::mem::size_of::<Arc<Node>>()
                    + v.len() * (std::mem::size_of::<Node>() + 2 * std::mem::size_of::<usize>())
            }
        }
    }

    /// Back to `One` when a deque is down to one node (its slots are freed); a deque that
    /// lost most of its nodes gives slots back.
    fn normalize(&mut self) {
        if let Nodes::Many(v) = self {
            if v.len() == 1 {
                let n = v.pop_front().expect("one node");
                *self = Nodes::One(Arc::unwrap_or_clone(n));
            } else if v.capacity() > 8 && v.len() < v.capacity() / 4 {
                v.shrink_to_fit();
            }
        }
    }

    fn insert(&mut self, at: usize, n: Node) {
        match self {
            Nodes::Many(v) if v.is_empty() => *self = Nodes::One(n),
            Nodes::One(_) => {
                let Nodes::One(first) = std::mem::take(self) else {
                    unreachable!("matched above")
                };
                let mut v = VecDeque::with_capacity(2);
                v.push_back(Arc::new(first));
                v.insert(at, Arc::new(n));
                *self = Nodes::Many(v);
            }
            Nodes::Many(v) => {
                // Small deques grow a slot at a time; large ones double.
                if v.len() == v.capacity() && v.len() < 8 {
                    v.reserve_exact(1);
                }
                v.insert(at, Arc::new(n));
            }
        }
    }

    /// Drops node `i`; returns how many entries it held.
    fn remove(&mut self, i: usize) -> Option<u32> {
        let count = match self {
            Nodes::One(_) if i == 0 => match std::mem::take(self) {
                Nodes::One(n) => Some(n.count),
                Nodes::Many(_) => unreachable!("matched above"),
            },
            Nodes::One(_) => None,
            Nodes::Many(v) => v.remove(i).map(|n| n.count),
        };
        self.normalize();
        count
    }

    fn pop_front(&mut self) -> Option<u32> {
        self.remove(0)
    }

    fn pop_back(&mut self) -> Option<u32> {
        self.remove(self.len().checked_sub(1)?)
    }

    fn retain(&mut self, mut f: impl FnMut(&Node) -> bool) {
        match self {
            Nodes::One(n) => {
                if !f(n) {
                    *self = Nodes::default();
                }
            }
            Nodes::Many(v) => {
                v.retain(|n| f(n));
                self.normalize();
            }
        }
    }
}

/// A list's nodes as a snapshot holds them between saving the list and writing it, in
/// parts, into its file ([`List::hold_nodes`]). Its memory is the nodes the list has since
/// replaced (a write copies a shared node); it goes back as parts are written.
#[derive(Clone, Debug, Default)]
pub struct HeldNodes(VecDeque<Arc<Node>>);

impl HeldNodes {
    /// Nodes still held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each held node's bytes (entries in the list node encoding, [`decode_node`]), from
    /// the left: a compressed node is decompressed into a buffer of its own as the walk
    /// reaches it (O(node bytes)), and stays compressed in the list.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, [u8]>> + '_ {
        self.0.iter().map(|n| n.entries())
    }

    /// Each held node's byte length as [`HeldNodes::iter`] gives it, without decompressing.
    pub fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().map(|n| n.bytes())
    }

    /// Lets go of the first `n` nodes (those written): a node the list no longer shares is
    /// freed here.
    pub fn drop_front(&mut self, n: usize) {
        self.0.drain(..n.min(self.0.len()));
    }
}

/// A list (see the module header).
#[derive(Clone, Debug, Default)]
pub struct List {
    nodes: Nodes,
    len: usize,
}

impl PartialEq for List {
    fn eq(&self, other: &List) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for List {}

impl List {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes (DEBUG OBJECT's `ql_nodes`).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A list of `elements` in order.
    pub fn from_elements<'a>(
        elements: impl IntoIterator<Item = &'a [u8]>,
        limits: ListLimits,
    ) -> List {
        let mut l = List::default();
        for e in elements {
            l.push(e, End::Right, limits);
        }
        l
    }

    /// Adds a node at `at`, growing the deque by exactly one slot while it is small (a
    /// one-node list keeps one slot, not four).
    fn insert_node(&mut self, at: usize, n: Node) {
        self.nodes.insert(at, n);
    }

    /// Node `ni`, stored as it is (decompressed if it was compressed; copied first if a
    /// clone of the list shares it), for an edit. The caller then calls
    /// [`List::compress_around`] with it, which compresses it again if it is interior.
    fn node_mut(&mut self, ni: usize) -> &mut Node {
        let n = &mut self.nodes[ni];
        n.decompress();
        n
    }

    /// Whether node `ni` lies in the compressed interior under `depth`: more than `depth`
    /// nodes from either end, with more than `2 × depth` nodes in the list.
    fn is_interior(&self, ni: usize, depth: usize) -> bool {
        let len = self.nodes.len();
        depth > 0 && ni >= depth && ni < len.saturating_sub(depth)
    }

    /// Redis's `__quicklistCompress` after an edit of the nodes `touched`: the `depth`
    /// nodes at each end are stored as they are, the first node past them at each end and
    /// every touched interior node are compressed. Nothing happens with depth 0 or fewer
    /// than `2 × depth` nodes. O(depth) node checks and at most `2 × depth` decompressions
    /// and `2 + touched` compressions of one node each (the steady state: one compression
    /// when an end gains a node).
    fn compress_around(&mut self, touched: &[usize], limits: ListLimits) {
        let (depth, len) = (limits.compress_depth, self.nodes.len());
        if depth == 0 || len < depth.saturating_mul(2) {
            return;
        }
        for i in 0..depth {
            for ni in [i, len - 1 - i] {
                if self.nodes[ni].is_compressed() {
                    self.nodes[ni].decompress();
                }
            }
        }
        if len == depth * 2 {
            return;
        }
        for &ni in touched.iter().chain(&[depth, len - 1 - depth]) {
            if self.is_interior(ni, depth) && !self.nodes[ni].is_compressed() {
                self.nodes[ni].compress();
            }
        }
    }

    pub fn push(&mut self, e: &[u8], end: End, limits: ListLimits) {
        let add = entry_size(e.len());
        let idx = match end {
            End::Left => 0,
            End::Right => self.nodes.len().wrapping_sub(1),
        };
        let fits = self
            .nodes
            .get(idx)
            .is_some_and(|n| limits.fits(n.bytes(), n.count as usize, add));
        if !fits {
            let at = if end == End::Left {
                0
            } else {
                self.nodes.len()
            };
            let data = Vec::with_capacity(add);
            self.insert_node(
                at,
                Node {
                    data,
                    count: 0,
                    raw_len: 0,
                },
            );
        }
        let idx = if end == End::Left {
            0
        } else {
            self.nodes.len() - 1
        };
        let n = self.node_mut(idx);
        // Grow by exactly the entry while the node is small (a short list costs its bytes,
        // as a listpack does), by doubling once it is large enough for that to matter, but
        // never past the node's limit: an 8 KiB node must take an 8 KiB block, not the next
        // size class up.
        let (len, cap) = (n.data.len(), n.data.capacity());
        if cap - len < add {
            let want = if len < 256 {
                len + add
            } else {
                (cap * 2).min(limits.max_node_bytes()).max(len + add)
            };
            n.data.reserve_exact(want - len);
        }
        match end {
            End::Left => n.insert(0, e),
            End::Right => {
                put_entry(&mut n.data, e);
                n.count += 1;
            }
        }
        self.len += 1;
        // A new node at an end moves the one before it towards the interior.
        if !fits {
            self.compress_around(&[], limits);
        }
    }

    /// Pops from `end`. A node popped empty is removed, and the node that becomes the end
    /// is stored as it is again if it was compressed (at most one decompression per node
    /// popped away, and only under a `limits.compress_depth` that compresses).
    pub fn pop(&mut self, end: End, limits: ListLimits) -> Option<Vec<u8>> {
        let idx = self.nodes.len().checked_sub(1)?;
        let idx = if end == End::Left { 0 } else { idx };
        let n = self.node_mut(idx);
        let d = match end {
            End::Left => n.remove(0),
            End::Right => {
                let (d, start) = n.entry_before(n.data.len());
                let d = d.to_vec();
                n.data.truncate(start);
                n.count -= 1;
                d
            }
        };
        if n.count == 0 {
            self.nodes.remove(idx);
            self.compress_around(&[], limits);
        }
        self.len -= 1;
        Some(d)
    }

    /// The node holding element `i` (< len) and its index in that node.
    fn locate(&self, i: usize) -> (usize, usize) {
        if i < self.len / 2 {
            let mut i = i;
            for ni in 0..self.nodes.len() {
                let c = self.nodes[ni].count as usize;
                if i < c {
                    return (ni, i);
                }
                i -= c;
            }
        } else {
            let mut from_end = self.len - i;
            for ni in (0..self.nodes.len()).rev() {
                let c = self.nodes[ni].count as usize;
                if from_end <= c {
                    return (ni, c - from_end);
                }
                from_end -= c;
            }
        }
        unreachable!("an index below the length is in some node")
    }

    /// Element `i` (0-based from the left), if any: borrowed, or copied out of its node
    /// when that node is compressed (decompressed for the read, O(node bytes); the node
    /// stays compressed).
    pub fn get(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        if i >= self.len {
            return None;
        }
        let (ni, k) = self.locate(i);
        let n = &self.nodes[ni];
        Some(match n.entries() {
            Cow::Borrowed(d) => Cow::Borrowed(entry_at(d, pos_of(d, n.count as usize, k)).0),
            Cow::Owned(d) => Cow::Owned(entry_at(&d, pos_of(&d, n.count as usize, k)).0.to_vec()),
        })
    }

    /// Splits node `ni` (stored as it is) in halves while it is over the limit; returns
    /// whether it did (the second half is node `ni + 1`).
    fn split_if_over(&mut self, ni: usize, limits: ListLimits) -> bool {
        let n = &self.nodes[ni];
        if n.count > 1 && limits.over(n.data.len(), n.count as usize) {
            let half = n.count as usize / 2;
            let tail = self.node_mut(ni).split_off(half);
            self.insert_node(ni + 1, tail);
            return true;
        }
        false
    }

    /// Inserts `e` so that it becomes element `i` (0 ≤ i ≤ len).
    pub fn insert(&mut self, i: usize, e: &[u8], limits: ListLimits) {
        if i == 0 {
            return self.push(e, End::Left, limits);
        }
        if i >= self.len {
            return self.push(e, End::Right, limits);
        }
        let (ni, k) = self.locate(i);
        if limits.is_plain(e.len()) {
            return self.insert_alone(ni, k, e, limits);
        }
        let n = &self.nodes[ni];
        if n.count == 1 && limits.is_plain(n.bytes()) {
            // Before a plain node (k is 0): at the end of the previous node if it has room,
            // else in a node of its own.
            let add = entry_size(e.len());
            match ni.checked_sub(1) {
                Some(p)
                    if limits.fits(self.nodes[p].bytes(), self.nodes[p].count as usize, add) =>
                {
                    let n = self.node_mut(p);
                    put_entry(&mut n.data, e);
                    n.count += 1;
                    self.len += 1;
                    self.compress_around(&[p], limits);
                }
                _ => self.insert_alone(ni, 0, e, limits),
            }
            return;
        }
        let n = self.node_mut(ni);
        let pos = n.pos_of(k);
        n.insert(pos, e);
        self.len += 1;
        let split = self.split_if_over(ni, limits);
        self.compress_around(&[ni, ni + 1][..1 + split as usize], limits);
    }

    /// Puts `e` in a node of its own before entry `k` of node `ni`, splitting that node.
    fn insert_alone(&mut self, ni: usize, k: usize, e: &[u8], limits: ListLimits) {
        let mut alone = Node::default();
        alone.insert(0, e);
        let at = if k == 0 {
            ni
        } else {
            let tail = self.node_mut(ni).split_off(k);
            if tail.count > 0 {
                self.insert_node(ni + 1, tail);
            }
            ni + 1
        };
        self.insert_node(at, alone);
        self.len += 1;
        self.compress_around(&[ni, ni + 1, ni + 2], limits);
    }

    /// Replaces element `i` (< len).
    pub fn set(&mut self, i: usize, e: &[u8], limits: ListLimits) {
        let (ni, k) = self.locate(i);
        let n = self.node_mut(ni);
        let pos = n.pos_of(k);
        n.remove(pos);
        if !limits.is_plain(e.len()) {
            n.insert(pos, e);
            let split = self.split_if_over(ni, limits);
            self.compress_around(&[ni, ni + 1][..1 + split as usize], limits);
            return;
        }
        let emptied = n.count == 0;
        self.len -= 1;
        if emptied {
            self.nodes.remove(ni);
        } else {
            self.compress_around(&[ni], limits);
        }
        self.insert(i, e, limits)
    }

    /// Keeps elements `start..=stop` (valid indices, start ≤ stop): LTRIM.
    pub fn trim(&mut self, start: usize, stop: usize, limits: ListLimits) {
        let (mut left, mut right) = (start, self.len - 1 - stop);
        self.len -= left + right;
        while left > 0 {
            let c = self.nodes[0].count as usize;
            if c <= left {
                left -= c;
                self.nodes.pop_front();
            } else {
                self.node_mut(0).remove_range(0, left);
                left = 0;
            }
        }
        while right > 0 {
            let last = self.nodes.len() - 1;
            let c = self.nodes[last].count as usize;
            if c <= right {
                right -= c;
                self.nodes.pop_back();
            } else {
                self.node_mut(last).remove_range(c - right, c);
                right = 0;
            }
        }
        self.shrink_deque();
        self.compress_around(&[], limits);
    }

    /// Removes every element (LTRIM to an empty range).
    pub fn trim_all(&mut self) {
        self.nodes = Nodes::default();
        self.len = 0;
    }

    /// Removes up to `count` elements equal to `e` (0: all), from the left or, when
    /// `from_right`, from the right: LREM. Returns how many went. A compressed node is
    /// decompressed to be searched, and only one that holds `e` is written (stored as it
    /// is for the edit, then compressed again).
    pub fn remove_eq(
        &mut self,
        e: &[u8],
        count: usize,
        from_right: bool,
        limits: ListLimits,
    ) -> usize {
        let limit = if count == 0 { usize::MAX } else { count };
        let mut removed = 0;
        let order: Vec<usize> = if from_right {
            (0..self.nodes.len()).rev().collect()
        } else {
            (0..self.nodes.len()).collect()
        };
        for ni in order {
            if removed == limit {
                break;
            }
            // Only a node that holds `e` is written (and so copied, if shared).
            let entries = self.nodes[ni].entries();
            if !NodeIter::new(&entries).any(|d| d == e) {
                continue;
            }
            let entries = match entries {
                Cow::Owned(d) => Some(d),
                Cow::Borrowed(_) => None,
            };
            let n = &mut self.nodes[ni];
            if let Some(d) = entries {
                // Decompressed already for the search.
                n.data = d;
                n.raw_len = 0;
            }
            if from_right {
                let mut end = n.data.len();
                while end > 0 && removed < limit {
                    let (d, start) = n.entry_before(end);
                    if d == e {
                        n.data.drain(start..end);
                        n.count -= 1;
                        removed += 1;
                    }
                    end = start;
                }
            } else {
                let mut pos = 0;
                while pos < n.data.len() && removed < limit {
                    let (d, next) = n.entry_at(pos);
                    if d == e {
                        n.data.drain(pos..next);
                        n.count -= 1;
                        removed += 1;
                    } else {
                        pos = next;
                    }
                }
            }
            if n.count > 0 && self.is_interior(ni, limits.compress_depth) {
                self.nodes[ni].compress();
            }
        }
        self.nodes.retain(|n| n.count > 0);
        self.len -= removed;
        self.shrink_deque();
        self.compress_around(&[], limits);
        removed
    }

    /// A deque emptied of most of its nodes gives the slots back.
    fn shrink_deque(&mut self) {
        self.nodes.normalize();
    }

    /// The elements from the left: borrowed from nodes stored as they are; a compressed
    /// node is decompressed once as the walk reaches it and its elements are copies. For
    /// a walk without copies, [`List::walk`] and [`List::for_range`].
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Cow<'_, [u8]>> + '_ {
        self.nodes.iter().flat_map(NodeElems::of)
    }

    /// Elements `start..=stop` (valid indices) from the left as [`List::iter`] gives them,
    /// starting the walk at the node that holds `start`.
    pub fn range(&self, start: usize, stop: usize) -> impl Iterator<Item = Cow<'_, [u8]>> + '_ {
        let (ni, k) = if start < self.len {
            self.locate(start)
        } else {
            (self.nodes.len(), 0)
        };
        self.nodes
            .iter()
            .skip(ni)
            .enumerate()
            .flat_map(move |(j, n)| NodeElems::of(n).skip(if j == 0 { k } else { 0 }))
            .take((stop + 1).saturating_sub(start))
    }

    /// Calls `f` with elements `start..=stop` (valid indices) from the left, starting at
    /// the node that holds `start`: each compressed node on the way is decompressed once,
    /// into one buffer, and nothing is copied per element (LRANGE).
    pub fn for_range(&self, start: usize, stop: usize, mut f: impl FnMut(&[u8])) {
        if start > stop || start >= self.len {
            return;
        }
        let (mut ni, mut k) = self.locate(start);
        let mut left = stop.min(self.len - 1) - start + 1;
        while left > 0 {
            let entries = self.nodes[ni].entries();
            for e in NodeIter::new(&entries).skip(k).take(left) {
                f(e);
                left -= 1;
            }
            (ni, k) = (ni + 1, 0);
        }
    }

    /// Calls `f` with each element from `from`'s end while it returns true; each
    /// compressed node on the way is decompressed once and nothing is copied per element
    /// (LPOS, LINSERT's pivot, DEBUG DIGEST).
    pub fn walk(&self, from: End, mut f: impl FnMut(&[u8]) -> bool) {
        let mut visit = |n: &Node| {
            let entries = n.entries();
            let mut it = NodeIter::new(&entries);
            match from {
                End::Left => it.all(&mut f),
                End::Right => it.rev().all(&mut f),
            }
        };
        let _ = match from {
            End::Left => self.nodes.iter().all(&mut visit),
            End::Right => self.nodes.iter().rev().all(&mut visit),
        };
    }

    /// The index of the first element equal to `e` from the left (LINSERT's pivot).
    pub fn position(&self, e: &[u8]) -> Option<usize> {
        let (mut i, mut found) = (0, false);
        self.walk(End::Left, |x| {
            found = x == e;
            i += !found as usize;
            !found
        });
        found.then_some(i)
    }

    /// Approximate heap bytes (MEMORY USAGE, `used_memory` accounting): a compressed node
    /// counts its compressed bytes.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.slot_bytes() + self.nodes.iter().map(|n| n.data.capacity()).sum::<usize>()
    }

    /// Frees up to `nodes` nodes from the right; true while some remain (lazy free).
    pub fn free_nodes(&mut self, nodes: usize) -> bool {
        for _ in 0..nodes {
            match self.nodes.pop_back() {
                Some(count) => self.len -= count as usize,
                None => break,
            }
        }
        !self.nodes.is_empty()
    }

    /// Whether freeing this list at once could take long (more nodes than a slice).
    pub fn is_large(&self) -> bool {
        self.nodes.len() > 64
    }

    /// Each node's bytes (its entries, decompressed), in order: a record of the list
    /// (tests, and a snapshot's record when its caller wants one built whole). Costs a
    /// copy of the bytes and one allocation per node, not per element.
    pub fn raw_nodes(&self) -> Vec<Vec<u8>> {
        self.nodes
            .iter()
            .map(|n| n.entries().into_owned())
            .collect()
    }

    /// The list's nodes, held for a snapshot until it has written them
    /// ([`crate::snapshot::Pending`]). A deque list's nodes are shared, not copied: O(nodes)
    /// pointer copies and reference counts (a 10M-element list: ~22k, where copying its
    /// 180 MB of bytes stalled the core for ~175 ms), and a later write to the list copies
    /// only the node it changes. A one-node list's node is copied (at most the node limit, or
    /// its one plain element, as [`List::raw_nodes`] would).
    pub fn hold_nodes(&self) -> HeldNodes {
        match &self.nodes {
            Nodes::One(n) => HeldNodes(VecDeque::from([Arc::new(n.clone())])),
            Nodes::Many(v) => HeldNodes(v.clone()),
        }
    }

    /// A list from nodes as [`List::raw_nodes`] gives them (read from a snapshot): None
    /// when any node is not a valid run of entries. A node that breaks `limits` (the
    /// setting changed since, or a plain element shares it) is split entry by entry;
    /// interior nodes are compressed under `limits.compress_depth`.
    pub fn from_raw_nodes<'a>(
        nodes: impl IntoIterator<Item = &'a [u8]>,
        limits: ListLimits,
    ) -> Option<List> {
        let mut l = List::default();
        l.append_raw_nodes(nodes, limits)?;
        Some(l)
    }

    /// Appends nodes as [`List::raw_nodes`] gives them (a snapshot's later parts of a long
    /// list); None, with nothing appended past the first bad node, when one is malformed.
    /// Each node appended pushes the one `compress_depth` from the right into the interior,
    /// where it is compressed: a loaded list is compressed as one built by pushes.
    pub fn append_raw_nodes<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = &'a [u8]>,
        limits: ListLimits,
    ) -> Option<()> {
        let l = self;
        for bytes in nodes {
            let entries = decode_node(bytes)?;
            let keep = entries.len() == 1
                || (!limits.over(bytes.len(), entries.len())
                    && entries.iter().all(|e| !limits.is_plain(e.len())));
            if entries.is_empty() {
                continue;
            }
            if keep {
                let n = Node {
                    data: bytes.to_vec(),
                    count: entries.len() as u32,
                    raw_len: 0,
                };
                let at = l.nodes.len();
                l.len += entries.len();
                l.insert_node(at, n);
                l.compress_around(&[], limits);
            } else {
                for e in entries {
                    l.push(e, End::Right, limits);
                }
            }
        }
        Some(())
    }

    /// How many of the list's nodes something else (a clone, a snapshot) still shares.
    #[cfg(test)]
    pub(crate) fn shared_nodes(&self) -> usize {
        match &self.nodes {
            Nodes::One(_) => 0,
            Nodes::Many(v) => v.iter().filter(|n| Arc::strong_count(n) > 1).count(),
        }
    }

    /// Entries and bytes (uncompressed) per node (tests, DEBUG).
    pub fn node_sizes(&self) -> Vec<(usize, usize)> {
        self.nodes
            .iter()
            .map(|n| (n.count as usize, n.bytes()))
            .collect()
    }

    /// Each node's stored bytes when it is compressed, else None (tests, DEBUG).
    pub fn compressed_sizes(&self) -> Vec<Option<usize>> {
        self.nodes
            .iter()
            .map(|n| n.is_compressed().then_some(n.data.len()))
            .collect()
    }
}

/// The entries of one node's bytes (see the module header), checked: None unless the bytes
/// are exactly a run of well-formed entries whose trailing lengths match their headers.
pub fn decode_node(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (mut n, mut shift, mut i) = (0usize, 0u32, pos);
        loop {
            let b = *bytes.get(i)?;
            if shift > 28 {
                return None;
            }
            n |= ((b & 0x7f) as usize) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let h = i - pos;
        let end = i.checked_add(n)?;
        let back = bytes.get(end..end.checked_add(h)?)?;
        if back.iter().rev().ne(bytes[pos..i].iter()) {
            return None;
        }
        out.push(&bytes[i..end]);
        pos = end + h;
    }
    Some(out)
}

/// Redis's index rule: a negative index counts from the right; None when out of range.
pub fn normalize_index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if i < 0 { len + i } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

/// Redis's range rule (LRANGE, LTRIM): negative indices count from the right, the range is
/// clamped to the list; None when it is empty.
pub fn normalize_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut stop = if stop < 0 { len + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if start > stop || start >= len {
        return None;
    }
    if stop >= len {
        stop = len - 1;
    }
    Some((start as usize, stop as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque as Model;

    fn elems(l: &List) -> Vec<Vec<u8>> {
        l.iter().map(|e| e.to_vec()).collect()
    }

    #[test]
    fn entries_walk_both_ways() {
        let mut l = List::default();
        let lim = ListLimits::default();
        let big = vec![b'x'; 300];
        for e in [&b"a"[..], b"", &big, b"12345"] {
            l.push(e, End::Right, lim);
        }
        assert_eq!(
            elems(&l),
            vec![b"a".to_vec(), vec![], big.clone(), b"12345".to_vec()]
        );
        let rev: Vec<_> = l.iter().rev().map(|e| e.to_vec()).collect();
        assert_eq!(rev[0], b"12345");
        assert_eq!(rev[1], big);
        assert_eq!(l.get(2).as_deref(), Some(&big[..]));
        assert_eq!(l.pop(End::Right, lim).unwrap(), b"12345");
        assert_eq!(l.pop(End::Left, lim).unwrap(), b"a");
        assert_eq!(l.len(), 2);
        // A 16-byte element costs 18 bytes, as in a listpack.
        let mut one = List::default();
        one.push(&[b'v'; 16], End::Left, lim);
        assert_eq!(one.node_sizes(), vec![(1, 18)]);
    }

    #[test]
    fn nodes_follow_the_fill() {
        let mut l = List::default();
        let lim = ListLimits {
            fill: 4,
            ..Default::default()
        };
        for i in 0..10 {
            l.push(format!("{i}").as_bytes(), End::Right, lim);
        }
        assert_eq!(
            l.node_sizes().iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let mut l = List::default();
        for _ in 0..1000 {
            l.push(&[b'e'; 16], End::Left, ListLimits::default());
        }
        // 8 KiB nodes of 18-byte entries: 455 per node (the first one filled is the last),
        // each in a buffer of at most 8 KiB.
        assert_eq!(l.node_sizes().last().unwrap().0, 8192 / 18);
        assert!(l.nodes.iter().all(|n| n.data.capacity() <= 8192));
        assert!(l.node_sizes().iter().all(|s| s.1 <= 8192));
        // An element larger than a node gets one of its own.
        l.push(&[b'h'; 10_000], End::Right, ListLimits::default());
        assert_eq!(l.node_sizes().last().unwrap().0, 1);
    }

    /// Random edits against a VecDeque, at several fills and compression depths, with the
    /// structure checked: the `depth` nodes at each end stored as they are, the interior
    /// compressed (every node of these compressible elements that is large enough).
    #[test]
    fn matches_a_model() {
        let big = PACKED_THRESHOLD;
        for (fill, packed_threshold) in [
            (-2i64, big),
            (-1, big),
            (1, big),
            (3, big),
            (0, big),
            (-2, 50),
            (4, 50),
            (8, big),
        ] {
            for compress_depth in [0, 1, 2] {
                let lim = ListLimits {
                    fill,
                    packed_threshold,
                    compress_depth,
                };
                model_run(lim);
            }
        }
    }

    fn model_run(lim: ListLimits) {
        let (fill, depth) = (lim.fill, lim.compress_depth);
        let mut l = List::default();
        let mut m: Model<Vec<u8>> = Model::new();
        let mut x = 0x1234_5678_9abc_def1u64 ^ fill as u64 ^ (depth as u64) << 40;
        let mut compressed_seen = 0;
        for step in 0..6000 {
            let r = crate::xorshift(&mut x);
            let e = format!("e{}", r % 50)
                .into_bytes()
                .repeat((r % 3) as usize * 40 + 1);
            match r % 12 {
                0 | 1 => {
                    l.push(&e, End::Left, lim);
                    m.push_front(e);
                }
                2 | 3 => {
                    l.push(&e, End::Right, lim);
                    m.push_back(e);
                }
                4 => assert_eq!(l.pop(End::Left, lim), m.pop_front()),
                5 => assert_eq!(l.pop(End::Right, lim), m.pop_back()),
                6 if !m.is_empty() => {
                    let i = (r >> 8) as usize % (m.len() + 1);
                    l.insert(i, &e, lim);
                    m.insert(i, e);
                }
                7 if !m.is_empty() => {
                    let i = (r >> 8) as usize % m.len();
                    l.set(i, &e, lim);
                    m[i] = e;
                }
                8 if m.len() > 2 => {
                    let from_right = r & 1 << 20 != 0;
                    let count = (r >> 21) as usize % 3;
                    let target = m[(r >> 8) as usize % m.len()].clone();
                    let mut left = if count == 0 { usize::MAX } else { count };
                    let mut removed = 0;
                    let mut keep: Vec<Vec<u8>> = Vec::new();
                    let items: Vec<Vec<u8>> = if from_right {
                        m.iter().rev().cloned().collect()
                    } else {
                        m.iter().cloned().collect()
                    };
                    for it in items {
                        if left > 0 && it == target {
                            left -= 1;
                            removed += 1;
                        } else {
                            keep.push(it);
                        }
                    }
                    if from_right {
                        keep.reverse();
                    }
                    assert_eq!(l.remove_eq(&target, count, from_right, lim), removed);
                    m = keep.into();
                }
                9 if !m.is_empty() => {
                    // Reads anywhere: by index, a range, a walk from either end.
                    let i = (r >> 8) as usize % m.len();
                    assert_eq!(l.get(i).as_deref(), Some(&m[i][..]));
                    let j = (i + (r >> 30) as usize % 600).min(m.len() - 1);
                    let mut got = Vec::new();
                    l.for_range(i, j, |e| got.push(e.to_vec()));
                    assert_eq!(got, m.range(i..=j).cloned().collect::<Vec<_>>());
                    let got: Vec<_> = l.range(i, j).map(|e| e.to_vec()).collect();
                    assert_eq!(got, m.range(i..=j).cloned().collect::<Vec<_>>());
                    assert_eq!(l.position(&m[i]), m.iter().position(|x| *x == m[i]));
                    let mut back = Vec::new();
                    l.walk(End::Right, |e| {
                        back.push(e.to_vec());
                        back.len() < 700
                    });
                    let want: Vec<_> = m.iter().rev().take(700).cloned().collect();
                    assert_eq!(back, want);
                }
                10 if m.len() > 4 && step % 37 == 0 => {
                    let (a, b) = (1 + (r >> 8) as usize % 3, m.len() - 2);
                    if a <= b {
                        l.trim(a, b, lim);
                        m = m.iter().skip(a).take(b - a + 1).cloned().collect();
                    }
                }
                _ => {}
            }
            assert_eq!(l.len(), m.len());
            if step % 50 == 0 {
                assert_eq!(elems(&l), m.iter().cloned().collect::<Vec<_>>());
                let rev: Vec<_> = l.iter().rev().map(|e| e.to_vec()).collect();
                assert_eq!(rev, m.iter().rev().cloned().collect::<Vec<_>>());
                for (c, b) in l.node_sizes() {
                    assert!(c > 0, "no empty nodes");
                    assert!(c == 1 || !lim.over(b, c), "fill {fill}: node {c}/{b}");
                }
                for n in l.nodes.iter() {
                    let plain =
                        NodeIter::new(&n.entries()).any(|e| e.len() >= packed_threshold(lim));
                    assert!(n.count == 1 || !plain, "a plain element shares a node");
                }
                let comp = l.compressed_sizes();
                let len = comp.len();
                for (ni, c) in comp.iter().enumerate() {
                    let edge = ni < depth || ni + depth >= len;
                    if depth == 0 || edge {
                        assert!(
                            c.is_none(),
                            "depth {depth}: node {ni} of {len} is compressed"
                        );
                    } else if l.node_sizes()[ni].1 >= 200 {
                        // Interior nodes of these repetitive elements: compressed.
                        assert!(
                            c.is_some(),
                            "depth {depth}: node {ni} of {len} is stored plain"
                        );
                    }
                }
                compressed_seen += comp.iter().flatten().count();
            }
        }
        if depth > 0 && fill != 1 {
            assert!(
                compressed_seen > 0,
                "fill {fill} depth {depth}: nothing compressed"
            );
        }
        // Undone by pops alone, and nothing is left compressed at the ends on the way.
        while !m.is_empty() {
            assert_eq!(l.pop(End::Left, lim), m.pop_front());
            if let (Some(first), Some(c)) = (m.front(), l.compressed_sizes().first()) {
                assert!(depth == 0 || c.is_none());
                assert_eq!(l.get(0).as_deref(), Some(&first[..]));
            }
        }
        assert!(l.is_empty() && l.nodes.is_empty());
    }

    fn packed_threshold(lim: ListLimits) -> usize {
        lim.packed_threshold
    }

    /// The measured row's elements ("e" + 15 digits, in order): interior nodes compressed,
    /// the ends not, and the heap counts the compressed bytes.
    #[test]
    fn interior_nodes_are_compressed_and_counted() {
        let fill = |compress_depth| {
            let lim = ListLimits {
                compress_depth,
                ..Default::default()
            };
            List::from_elements(
                (0..100_000u64)
                    .map(|i| format!("e{i:015}").into_bytes())
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|e| &e[..]),
                lim,
            )
        };
        let (plain, one, two) = (fill(0), fill(1), fill(2));
        assert_eq!(plain, one);
        assert_eq!(one, two);
        assert!(plain.compressed_sizes().iter().all(Option::is_none));
        let c = one.compressed_sizes();
        let nodes = c.len();
        assert!(nodes > 200);
        assert!(c[0].is_none() && c[nodes - 1].is_none());
        assert!(c[1..nodes - 1].iter().all(Option::is_some));
        let c2 = two.compressed_sizes();
        assert!(c2[..2].iter().chain(&c2[nodes - 2..]).all(Option::is_none));
        assert!(c2[2..nodes - 2].iter().all(Option::is_some));
        // 8 KiB of entries per node compress to well under half with LZ4.
        for (&(_, raw), stored) in one.node_sizes().iter().zip(&c).skip(1).take(nodes - 2) {
            let stored = stored.expect("interior");
            assert!(stored * 2 < raw, "{stored} of {raw}");
        }
        assert!(
            one.heap_bytes() * 2 < plain.heap_bytes(),
            "{} vs {}",
            one.heap_bytes(),
            plain.heap_bytes()
        );
        // Reads in the middle leave the nodes compressed.
        assert_eq!(one.get(50_000).as_deref(), Some(&b"e000000000050000"[..]));
        assert_eq!(one.position(b"e000000000070000"), Some(70_000));
        assert_eq!(one.compressed_sizes(), c);
        // A write in the middle recompresses its node; a change of depth applies as the
        // list is touched (Redis's rule for the nodes an edit reaches).
        let mut l = one.clone();
        let lim = ListLimits::default();
        l.set(50_000, b"changed", lim);
        l.insert(60_000, b"inserted", lim);
        assert_eq!(l.remove_eq(b"e000000000070000", 0, false, lim), 1);
        assert!(l.compressed_sizes()[1..nodes - 1]
            .iter()
            .all(Option::is_some));
        assert_eq!(l.get(50_000).as_deref(), Some(&b"changed"[..]));
        let none = ListLimits {
            compress_depth: 0,
            ..Default::default()
        };
        let (ni, _) = l.locate(30_000);
        l.set(30_000, b"again", none);
        assert!(
            l.compressed_sizes()[ni].is_none(),
            "edited under depth 0: stored plain"
        );
        // Emptied down to the interior by pops and trims: the new ends are stored plain.
        let mut t = one.clone();
        t.trim(40_000, 60_000, lim);
        let c = t.compressed_sizes();
        assert!(c[0].is_none() && c[c.len() - 1].is_none());
        assert!(c[1..c.len() - 1].iter().all(Option::is_some));
        assert_eq!(t.get(0).as_deref(), Some(&b"e000000000040000"[..]));
    }

    /// Elements LZ4 cannot shrink by Redis's margin leave their nodes stored as they are.
    #[test]
    fn incompressible_nodes_stay_plain() {
        let lim = ListLimits {
            fill: 16,
            compress_depth: 1,
            ..Default::default()
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut l = List::default();
        for _ in 0..400 {
            let e: Vec<u8> = (0..4)
                .flat_map(|_| crate::xorshift(&mut x).to_le_bytes())
                .collect();
            l.push(&e, End::Right, lim);
        }
        assert!(l.node_count() > 20);
        assert!(l.compressed_sizes().iter().all(Option::is_none));
        // Small nodes are not tried (under 48 bytes).
        let mut s = List::default();
        for i in 0..40 {
            s.push(
                format!("{}", i % 2).as_bytes(),
                End::Right,
                ListLimits { fill: 4, ..lim },
            );
        }
        assert!(s.compressed_sizes().iter().all(Option::is_none));
    }

    #[test]
    fn elements_past_the_packed_threshold_get_nodes_of_their_own() {
        let lim = ListLimits {
            fill: -2,
            packed_threshold: 10,
            compress_depth: 0,
        };
        let mut l = List::default();
        for e in [&b"a"[..], b"b", &[b'x'; 10], b"c", &[b'y'; 12]] {
            l.push(e, End::Right, lim);
        }
        assert_eq!(
            l.node_sizes().iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![2, 1, 1, 1]
        );
        l.insert(1, &[b'z'; 11], lim);
        l.set(0, &[b'w'; 20], lim);
        assert_eq!(
            l.node_sizes().iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![1, 1, 1, 1, 1, 1]
        );
        assert_eq!(l.len(), 6);
        assert_eq!(l.get(1).as_deref(), Some(&[b'z'; 11][..]));
        assert_eq!(l.get(2).as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn a_one_node_list_has_no_deque() {
        let lim = ListLimits {
            fill: 2,
            ..Default::default()
        };
        let mut l = List::default();
        l.push(b"0123456789abcdef", End::Right, lim);
        assert!(matches!(l.nodes, Nodes::One(_)));
        assert_eq!(l.heap_bytes(), l.nodes[0].data.capacity());
        for e in [b"b", b"c", b"d"] {
            l.push(e, End::Left, lim);
        }
        assert!(matches!(l.nodes, Nodes::Many(_)));
        assert_eq!(l.node_count(), 2);
        l.pop(End::Left, lim);
        l.pop(End::Left, lim);
        assert!(
            matches!(l.nodes, Nodes::One(_)),
            "back to one node, no deque"
        );
        assert_eq!(elems(&l), vec![b"b".to_vec(), b"0123456789abcdef".to_vec()]);
        l.pop(End::Right, lim);
        l.pop(End::Right, lim);
        assert!(l.is_empty() && l.nodes.is_empty());
    }

    #[test]
    fn raw_nodes_round_trip_and_bad_bytes_are_refused() {
        let lim = ListLimits {
            fill: 3,
            ..Default::default()
        };
        let mut l = List::default();
        for i in 0..10 {
            l.push(
                format!("e{i}").repeat(i * 20 + 1).as_bytes(),
                End::Right,
                lim,
            );
        }
        let raw = l.raw_nodes();
        assert_eq!(raw.len(), l.node_count());
        let back = List::from_raw_nodes(raw.iter().map(|n| &n[..]), lim).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.node_sizes(), l.node_sizes());
        // Loaded under a smaller fill, the nodes are split to fit it.
        let one = ListLimits {
            fill: 1,
            ..Default::default()
        };
        let split = List::from_raw_nodes(raw.iter().map(|n| &n[..]), one).unwrap();
        assert_eq!(split, l);
        assert_eq!(split.node_count(), 10);
        // Truncated, extended, or with a back-length that disagrees: refused.
        let mut bad = raw[0].clone();
        bad.pop();
        assert!(List::from_raw_nodes([&bad[..]], lim).is_none());
        let mut bad = raw[0].clone();
        bad.push(0x80);
        assert!(List::from_raw_nodes([&bad[..]], lim).is_none());
        let mut bad = raw[0].clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(List::from_raw_nodes([&bad[..]], lim).is_none());
        assert!(decode_node(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_none());
        assert_eq!(decode_node(&[]), Some(vec![]));
    }

    /// The node pointers of a deque list, in order.
    fn node_ptrs(l: &List) -> Vec<*const Node> {
        match &l.nodes {
            Nodes::One(_) => vec![],
            Nodes::Many(v) => v.iter().map(Arc::as_ptr).collect(),
        }
    }

    #[test]
    fn a_clone_shares_nodes_and_a_write_copies_only_its_node() {
        let lim = ListLimits::default();
        let mut l = List::default();
        for i in 0..20_000 {
            l.push(format!("element-{i:08}").as_bytes(), End::Right, lim);
        }
        let before = elems(&l);
        let copy = l.clone();
        let (ours, theirs) = (node_ptrs(&l), node_ptrs(&copy));
        assert!(ours.len() > 10);
        assert_eq!(ours, theirs, "the clone shares every node");
        // Writes at both ends, in the middle, and by value: each copies the node it changes
        // and the clone still reads as before.
        l.push(b"left", End::Left, lim);
        l.pop(End::Right, lim);
        l.set(10_000, b"changed", lim);
        assert_eq!(l.remove_eq(b"element-00005000", 0, false, lim), 1);
        let after = node_ptrs(&l);
        let shared = after.iter().filter(|p| theirs.contains(p)).count();
        assert!(
            shared >= theirs.len() - 4,
            "{shared} of {} nodes still shared",
            theirs.len()
        );
        assert_eq!(elems(&copy), before, "the clone did not see the writes");
        assert_eq!(l.len(), 19_999);
        assert_eq!(l.get(0).as_deref(), Some(&b"left"[..]));
        assert_eq!(l.get(9_999).as_deref(), Some(&b"changed"[..]));
        // Dropping the clone leaves the list whole; trimming and freeing work on shared
        // nodes too.
        let copy2 = l.clone();
        drop(copy);
        l.trim(100, 15_000, lim);
        assert_eq!(l.len(), 14_901);
        assert_eq!(copy2.len(), 19_999);
        while l.free_nodes(4) {}
        assert!(l.is_empty());
        assert_eq!(copy2.get(0).as_deref(), Some(&b"left"[..]));
    }

    #[test]
    fn index_rules() {
        assert_eq!(normalize_index(-1, 3), Some(2));
        assert_eq!(normalize_index(3, 3), None);
        assert_eq!(normalize_index(-4, 3), None);
        assert_eq!(normalize_range(0, -1, 3), Some((0, 2)));
        assert_eq!(normalize_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(normalize_range(2, 1, 3), None);
        assert_eq!(normalize_range(5, 10, 3), None);
        assert_eq!(normalize_range(0, 0, 0), None);
    }

    #[test]
    fn free_in_slices() {
        let mut l = List::default();
        for _ in 0..100_000 {
            l.push(b"0123456789abcdef", End::Right, ListLimits::default());
        }
        assert!(l.is_large());
        let mut steps = 0;
        while l.free_nodes(16) {
            steps += 1;
        }
        assert!(steps > 10);
        assert!(l.is_empty());
    }
}
