//! The shard's hash table: chained buckets of packed entries, power-of-two sizes,
//! incremental rehash and a reverse-binary scan cursor (Redis's `dict.c` scheme), with each
//! entry — link, metadata, key and small value — in **one allocation**.
//!
//! # An entry (a "node")
//!
//! ```text
//!  0        8       12    13    14    15
//!  +--------+-------+-----+-----+-----+---------------+-----------+-------+----------+
//!  | next   | clock |flags|klen8|vlen8| [klen u32]    | [expire   | key   | value    |
//!  | *node  | u32   | u8  | u8  | u8  | if LONG_KEY   |  u64] if  | bytes | payload  |
//!  |        |       |     |     |     |               |  EXPIRE   |       |          |
//!  +--------+-------+-----+-----+-----+---------------+-----------+-------+----------+
//! ```
//!
//! - `clock` is the LRU second or the LFU counter and decay minute ([`crate::evict`]); one
//!   word serves both, as Redis's 24-bit `lru` field does, because a key is judged by one
//!   policy at a time.
//! - `flags`: has-expiry, long key (> 255 bytes: the length moves to a `u32`), `raw`
//!   (OBJECT ENCODING), and the value's encoding:
//!   - `INT`: 8 bytes, an `i64` (Redis's `int` encoding);
//!   - `INLINE`: up to [`INLINE_MAX`] bytes copied after the key (`vlen8` is the length);
//!   - `HEAP`: a `Vec<u8>`'s three words, for long values and for strings edited in place
//!     (APPEND, SETRANGE), which need spare capacity to grow in amortized O(1).
//!   - `OBJ`: a collection, of the kind in the top two bits; `vlen8` says where it is: a box
//!     of its own (the payload is its pointer), or packed in the node (below).
//! - Fields after `next` are read and written unaligned; the node is 8-aligned for `next`.
//!
//! # Bytes per key
//! A 16-byte key with a 32-byte value: 15 + 16 + 32 = **63 bytes, one 64-byte block** of
//! mimalloc (whose classes are exact multiples of 8 up to 64), plus the bucket slot: 8 bytes at
//! load factor 1 (8–16 as the table doubles). The previous layout (a boxed node holding a
//! boxed key and a `Vec` value) took three allocations and 184 bytes of RSS per such key.
//! No per-entry hash is stored: a rehash recomputes xxh3 of each key (a few ns for short
//! keys), and a lookup compares lengths before bytes.
//!
//! # Packed collections
//! A small set, hash or sorted set keeps its small encoding in its node, as a short string
//! does, after the key: a `u32` length, then the pack ([`Packed`]: the intset's width byte
//! and members; a hash's or sorted set's element count and elements).
//!
//! ```text
//!  +-----------------------------+-----+----------+----------------------------------+
//!  | header (15, vlen8 = PACK)   | key | plen u32 | pack: head (1 or 4 bytes), body  |
//!  +-----------------------------+-----+----------+----------------------------------+
//! ```
//!
//! One allocation per key, where a box would add a 32-byte block and the pack a buffer of
//! its own: 1M hashes of 10 fields (16-byte keys) take one 299-byte node each (a 320-byte
//! block), 1M sets of 20 small integers one 76-byte node (80), against 40 + 32 + 320 and
//! 40 + 32 + 48 before. Readers see the pack in place ([`ValueRef`]'s views); a writer
//! ([`CollMut`]) unpacks into the table's scratch buffer and, when done, reallocates the
//! node to the pack's new length and writes it back, or gives the collection a box when the
//! edit converted it to its large encoding (one way, as in Redis). Packs over
//! [`PACK_INLINE_MAX`] stay boxed. Alternative rejected: editing the node's bytes in place
//! through a buffer trait the encodings are generic over; the copy out and back costs a
//! memcpy of at most a few hundred bytes with the default limits, and keeps each encoding's
//! code one `Vec`-based implementation.
//!
//! # Bounded work
//! 1. Growing or shrinking allocates the new bucket array zeroed (fresh pages, so untouched
//!    buckets cost nothing) and then moves at most [`REHASH_STEP_BUCKETS`] buckets (visiting
//!    at most 10× that many empty ones) per insert/lookup/delete, plus what
//!    [`Dict::rehash_step`] does from the background. The old array and any large value
//!    freed by an operation go to the table's [`Graveyard`] and are returned to the kernel in
//!    slices ([`Dict::lazyfree_step`]), never in one `munmap` on the request path.
//! 2. SCAN: the cursor walks bucket indices in reverse-binary order, so an entry present for
//!    the whole iteration is returned at least once even if the table grows or shrinks
//!    between calls (entries may be returned twice).
//!
//! # Alternatives rejected
//! - Open addressing with 7-slot cache-line buckets (Valkey 8.1's `hashtable.c`): no `next`
//!   word in the node, but at the table sizes that matter the power-of-two bucket array costs
//!   as much (16.8 B/key at 1M keys) and its incremental rehash and SCAN need bucket chaining
//!   anyway. Worth revisiting with measurements on lookup misses.
//! - `hashbrown`: a resize rehashes every entry at once and its order cannot back a cursor.
//! - Keeping `Entry` as a Rust struct in a boxed node: three allocations per key.
//!
//! Readers and writers see entries through [`EntryRef`] and [`EntryMut`]; an `EntryMut`
//! holds the link that points at its node, so changing a value's size reallocates the node
//! and relinks it in place.

use std::alloc::{self, Layout};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::rc::Rc;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::lazyfree::{self, Doomed, Graveyard};
use crate::types::hash::{Hash, HashRef, Pack, PackRef};
use crate::types::list::List;
use crate::types::set::{IntSet, IntsRef, Set, SetRef};
use crate::types::zset::{ZPack, ZPackRef, ZSet, ZSetRef};
use crate::value::{Clock, Entry, Value, ValueRef};

/// The table grows when it holds this many entries per bucket (see "Bytes per key").
pub const MAX_LOAD: usize = 2;

/// Buckets moved per rehash step driven by a normal operation.
pub const REHASH_STEP_BUCKETS: usize = 1;
const MIN_SIZE: usize = 4;

/// Longest value stored inside its node; longer ones get an allocation of their own.
pub const INLINE_MAX: usize = 255;

type Link = Option<NonNull<u8>>;

/// Asks the CPU to bring the cache line at `p` in (a hint: it never faults, whatever `p`).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache; it reads nothing architecturally and never
    // faults, even for an invalid address.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

const OFF_CLOCK: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_KLEN: usize = 13;
const OFF_VLEN: usize = 14;
const HEAD: usize = 15;
const NODE_ALIGN: usize = 8;

const F_EXPIRE: u8 = 1;
const F_LONG_KEY: u8 = 2;
const F_RAW: u8 = 4;
const ENC_MASK: u8 = 0b11 << 3;
/// The snapshot epoch bit ([`Snap`]).
const F_SNAP: u8 = 1 << 5;
const ENC_INT: u8 = 0;
const ENC_INLINE: u8 = 1 << 3;
const ENC_HEAP: u8 = 2 << 3;
/// A collection ([`Hash`], [`Set`], [`List`], [`ZSet`]): one word, the pointer of its box, which the
/// node owns.
const ENC_OBJ: u8 = 3 << 3;
/// On an `OBJ` node: which collection the box holds (two bits).
const OBJ_KIND: u8 = 0b11 << 6;
const KIND_HASH: u8 = 0;
const KIND_SET: u8 = 1 << 6;
const KIND_LIST: u8 = 2 << 6;
const KIND_ZSET: u8 = 3 << 6;
const HEAP_WORDS: usize = 3 * std::mem::size_of::<usize>();
const OBJ_WORDS: usize = std::mem::size_of::<usize>();
/// On an `OBJ` node, the `vlen8` byte says where the collection is: in a box of its own
/// (the payload is the box's pointer), or packed in the node (see [`Packed`]).
const FORM_BOXED: u8 = 0;
const FORM_PACK: u8 = 1;
/// A packed collection's payload starts with the pack's length.
const PACK_LEN_BYTES: usize = 4;
/// Longest pack kept in its node. A longer one (only with conversion limits set far above
/// Redis's defaults) keeps its own box: each edit copies the pack out and back.
pub const PACK_INLINE_MAX: usize = 8 << 10;
/// Largest buffer a table keeps for [`CollMut`]'s edits between commands.
const SCRATCH_KEEP: usize = 16 << 10;

/// The fixed part of a node (link, clock, flags, lengths): what the table costs per entry
/// beyond its key and value bytes, besides the bucket slot.
pub const NODE_HEADER_BYTES: usize = HEAD;

/// A bucket slot's size: an entry's share of the bucket array is between half and all of it
/// (load factor 2 down to 1), for MEMORY USAGE.
pub const BUCKET_BYTES: usize = std::mem::size_of::<Link>();

/// A value on its way into a node.
enum Payload<'a> {
    Int(i64),
    Inline(&'a [u8]),
    Heap(Vec<u8>),
    /// A `HEAP` value's words copied verbatim from another node, which gives up ownership.
    Moved([u8; HEAP_WORDS]),
    /// A collection's box (from `Box::into_raw`) and its kind bits ([`OBJ_KIND`]),
    /// owned by the node from now on (a fresh box, or one another node gives up).
    Obj(usize, u8),
    /// A collection's small encoding, copied into the node: its kind bits and its pack,
    /// `head` then `body` ([`Packed::pack`]).
    Pack {
        kind: u8,
        head: &'a [u8],
        body: &'a [u8],
    },
}

impl Payload<'_> {
    fn enc(&self) -> u8 {
        match self {
            Payload::Int(_) => ENC_INT,
            Payload::Inline(_) => ENC_INLINE,
            Payload::Heap(_) | Payload::Moved(_) => ENC_HEAP,
            Payload::Obj(..) | Payload::Pack { .. } => ENC_OBJ,
        }
    }

    fn len(&self) -> usize {
        match self {
            Payload::Int(_) => 8,
            Payload::Inline(b) => b.len(),
            Payload::Heap(_) | Payload::Moved(_) => HEAP_WORDS,
            Payload::Obj(..) => OBJ_WORDS,
            Payload::Pack { head, body, .. } => PACK_LEN_BYTES + head.len() + body.len(),
        }
    }
}

#[inline]
fn node_layout(size: usize) -> Layout {
    // HEAD > 0 and NODE_ALIGN is a power of two; sizes are bounded by the key and value
    // limits (512 MB), far below isize::MAX.
    Layout::from_size_align(size, NODE_ALIGN).expect("node sizes are small")
}

// Node accessors. Every `p` passed to them points at a live node built by `build`.

#[inline]
unsafe fn next(p: NonNull<u8>) -> Link {
    ptr::read(p.as_ptr() as *const Link)
}
#[inline]
unsafe fn next_slot(p: NonNull<u8>) -> *mut Link {
    p.as_ptr() as *mut Link
}
#[inline]
unsafe fn flags(p: NonNull<u8>) -> u8 {
    *p.as_ptr().add(OFF_FLAGS)
}
#[inline]
unsafe fn klen(p: NonNull<u8>) -> usize {
    if flags(p) & F_LONG_KEY != 0 {
        ptr::read_unaligned(p.as_ptr().add(HEAD) as *const u32) as usize
    } else {
        *p.as_ptr().add(OFF_KLEN) as usize
    }
}
#[inline]
unsafe fn expire_off(p: NonNull<u8>) -> usize {
    HEAD + if flags(p) & F_LONG_KEY != 0 { 4 } else { 0 }
}
#[inline]
unsafe fn key_off(p: NonNull<u8>) -> usize {
    expire_off(p) + if flags(p) & F_EXPIRE != 0 { 8 } else { 0 }
}
#[inline]
unsafe fn key<'a>(p: NonNull<u8>) -> &'a [u8] {
    std::slice::from_raw_parts(p.as_ptr().add(key_off(p)), klen(p))
}
#[inline]
unsafe fn val_ptr(p: NonNull<u8>) -> *mut u8 {
    p.as_ptr().add(key_off(p) + klen(p))
}
#[inline]
unsafe fn payload_len(p: NonNull<u8>) -> usize {
    match flags(p) & ENC_MASK {
        ENC_INT => 8,
        ENC_INLINE => *p.as_ptr().add(OFF_VLEN) as usize,
        ENC_OBJ if is_packed(p) => PACK_LEN_BYTES + pack_len(p),
        ENC_OBJ => OBJ_WORDS,
        _ => HEAP_WORDS,
    }
}
/// Whether an `OBJ` node holds its collection packed in itself.
#[inline]
unsafe fn is_packed(p: NonNull<u8>) -> bool {
    *p.as_ptr().add(OFF_VLEN) == FORM_PACK
}
/// A packed `OBJ` node's pack length.
#[inline]
unsafe fn pack_len(p: NonNull<u8>) -> usize {
    ptr::read_unaligned(val_ptr(p) as *const u32) as usize
}
/// A packed `OBJ` node's pack.
#[inline]
unsafe fn pack_bytes<'a>(p: NonNull<u8>) -> &'a [u8] {
    std::slice::from_raw_parts(val_ptr(p).add(PACK_LEN_BYTES), pack_len(p))
}
#[inline]
unsafe fn node_size(p: NonNull<u8>) -> usize {
    key_off(p) + klen(p) + payload_len(p)
}
#[inline]
unsafe fn expire_at(p: NonNull<u8>) -> u64 {
    if flags(p) & F_EXPIRE == 0 {
        0
    } else {
        ptr::read_unaligned(p.as_ptr().add(expire_off(p)) as *const u64)
    }
}
#[inline]
unsafe fn clock(p: NonNull<u8>) -> u32 {
    ptr::read_unaligned(p.as_ptr().add(OFF_CLOCK) as *const u32)
}
#[inline]
unsafe fn key_eq(p: NonNull<u8>, k: &[u8]) -> bool {
    klen(p) == k.len() && key(p) == k
}
/// The three words of a `HEAP` value: pointer, length, capacity.
#[inline]
unsafe fn heap_parts(p: NonNull<u8>) -> (*mut u8, usize, usize) {
    let v = val_ptr(p) as *const usize;
    (
        ptr::read_unaligned(v) as *mut u8,
        ptr::read_unaligned(v.add(1)),
        ptr::read_unaligned(v.add(2)),
    )
}
#[inline]
unsafe fn set_heap_parts(p: NonNull<u8>, (ptr_, len, cap): (*mut u8, usize, usize)) {
    let v = val_ptr(p) as *mut usize;
    ptr::write_unaligned(v, ptr_ as usize);
    ptr::write_unaligned(v.add(1), len);
    ptr::write_unaligned(v.add(2), cap);
}
/// An `OBJ` node's box pointer.
#[inline]
unsafe fn obj_ptr(p: NonNull<u8>) -> usize {
    ptr::read_unaligned(val_ptr(p) as *const usize)
}
/// Which collection an `OBJ` node holds ([`OBJ_KIND`]).
#[inline]
unsafe fn kind(p: NonNull<u8>) -> u8 {
    flags(p) & OBJ_KIND
}
/// A collection whose small encoding lives in its keyspace node (as a short string does):
/// one allocation per key, header, key and pack, where a box of its own would add a
/// 32-byte block and a pointer. The pack is the encoding's own bytes after a header of
/// at most four bytes (the intset's width; a pack's element count); a write that changes
/// its length reallocates the node, as a longer string value does ([`CollMut`]).
pub trait Packed: Sized {
    /// The node's kind bits ([`OBJ_KIND`]).
    const KIND: u8;
    /// The pack of the small encoding: a header (its first `len` bytes) and a body; None
    /// in the large encoding, which stays boxed.
    fn pack(&self) -> Option<([u8; 4], usize, &[u8])>;
    /// The small encoding a pack holds, in `buf` (a buffer lent by the table).
    fn unpack(pack: &[u8], buf: Vec<u8>) -> Self;
    /// The small encoding's buffer, given back for the next edit.
    fn into_buf(self) -> Option<Vec<u8>>;
    /// The value holding a boxed collection of this type.
    fn into_value(b: Box<Self>) -> Value;
    /// Heap bytes beyond the box (MEMORY USAGE).
    fn heap_bytes(&self) -> usize;
}

/// [`Packed`] for the collection `$t`, whose small encoding is the variant `$t::$small`
/// holding an `$s` (which gives its pack's parts, is rebuilt from a pack and gives its
/// buffer back).
macro_rules! packed {
    ($t:ident, $kind:expr, $small:ident, $s:ident) => {
        impl Packed for $t {
            const KIND: u8 = $kind;
            fn pack(&self) -> Option<([u8; 4], usize, &[u8])> {
                match self {
                    $t::$small(p) => Some(p.pack_parts()),
                    _ => None,
                }
            }
            fn unpack(pack: &[u8], buf: Vec<u8>) -> Self {
                $t::$small($s::from_pack(pack, buf))
            }
            fn into_buf(self) -> Option<Vec<u8>> {
                match self {
                    $t::$small(p) => Some(p.into_buf()),
                    _ => None,
                }
            }
            fn into_value(b: Box<Self>) -> Value {
                Value::$t(b)
            }
            fn heap_bytes(&self) -> usize {
                $t::heap_bytes(self)
            }
        }
    };
}

packed!(Set, KIND_SET, Ints, IntSet);
packed!(Hash, KIND_HASH, Pack, Pack);
packed!(ZSet, KIND_ZSET, Pack, ZPack);

/// A pack's length when `c` is in its small encoding and short enough to live in a node.
fn pack_fits<T: Packed>(c: &T) -> Option<usize> {
    c.pack()
        .map(|(_, head, body)| head + body.len())
        .filter(|&n| n <= PACK_INLINE_MAX)
}

/// Builds a node for a collection: packed in the node when it can be, else boxed.
fn build_coll<T: Packed>(
    key: &[u8],
    clock: u32,
    expire_at_ms: u64,
    c: Box<T>,
    snap: bool,
) -> NonNull<u8> {
    if pack_fits(&*c).is_some() {
        let (h, n, body) = c.pack().expect("packable just above");
        let payload = Payload::Pack {
            kind: T::KIND,
            head: &h[..n],
            body,
        };
        return build(key, clock, expire_at_ms, false, payload, snap);
    }
    let payload = Payload::Obj(Box::into_raw(c) as usize, T::KIND);
    build(key, clock, expire_at_ms, false, payload, snap)
}

/// The collection a packed node holds, borrowed.
#[inline]
unsafe fn pack_ref<'a>(p: NonNull<u8>) -> ValueRef<'a> {
    let pack = pack_bytes(p);
    match kind(p) {
        KIND_SET => ValueRef::Set(SetRef::Ints(IntsRef::from_pack(pack))),
        KIND_ZSET => ValueRef::ZSet(ZSetRef::Pack(ZPackRef::from_pack(pack))),
        _ => ValueRef::Hash(HashRef::Pack(PackRef::from_pack(pack))),
    }
}

/// The collection a packed node holds, as an owned value.
unsafe fn unpack_value(p: NonNull<u8>) -> Value {
    fn owned<T: Packed>(pack: &[u8]) -> Value {
        T::into_value(Box::new(T::unpack(pack, Vec::with_capacity(pack.len()))))
    }
    let pack = pack_bytes(p);
    match kind(p) {
        KIND_SET => owned::<Set>(pack),
        KIND_ZSET => owned::<ZSet>(pack),
        _ => owned::<Hash>(pack),
    }
}

/// The collection an `OBJ` node's box holds, borrowed.
#[inline]
unsafe fn obj_ref<'a>(p: NonNull<u8>) -> ValueRef<'a> {
    if is_packed(p) {
        return pack_ref(p);
    }
    match kind(p) {
        KIND_SET => ValueRef::Set((*(obj_ptr(p) as *const Set)).view()),
        KIND_LIST => ValueRef::List(&*(obj_ptr(p) as *const List)),
        KIND_ZSET => ValueRef::ZSet((*(obj_ptr(p) as *const ZSet)).view()),
        _ => ValueRef::Hash((*(obj_ptr(p) as *const Hash)).view()),
    }
}
/// Takes an `OBJ` node's collection back as an owned value (the node must not use it
/// again): its box, or a copy of its pack.
#[inline]
unsafe fn take_obj(p: NonNull<u8>) -> Value {
    if is_packed(p) {
        return unpack_value(p);
    }
    match kind(p) {
        KIND_SET => Value::Set(Box::from_raw(obj_ptr(p) as *mut Set)),
        KIND_LIST => Value::List(Box::from_raw(obj_ptr(p) as *mut List)),
        KIND_ZSET => Value::ZSet(Box::from_raw(obj_ptr(p) as *mut ZSet)),
        _ => Value::Hash(Box::from_raw(obj_ptr(p) as *mut Hash)),
    }
}
#[inline]
unsafe fn value<'a>(p: NonNull<u8>) -> ValueRef<'a> {
    let v = val_ptr(p);
    let raw = flags(p) & F_RAW != 0;
    match flags(p) & ENC_MASK {
        ENC_INT => ValueRef::Int(ptr::read_unaligned(v as *const i64)),
        ENC_OBJ => obj_ref(p),
        ENC_INLINE => ValueRef::Str {
            data: std::slice::from_raw_parts(v, payload_len(p)),
            raw,
        },
        _ => {
            let (ptr_, len, _) = heap_parts(p);
            ValueRef::Str {
                data: if len == 0 {
                    &[]
                } else {
                    std::slice::from_raw_parts(ptr_, len)
                },
                raw,
            }
        }
    }
}

/// Allocates and fills a node; `next` is null.
fn build(
    key: &[u8],
    clock: u32,
    expire_at_ms: u64,
    raw: bool,
    payload: Payload,
    snap_bit: bool,
) -> NonNull<u8> {
    let long = key.len() > u8::MAX as usize;
    let expire = expire_at_ms != 0;
    let kpos = HEAD + if long { 4 } else { 0 } + if expire { 8 } else { 0 };
    let size = kpos + key.len() + payload.len();
    let layout = node_layout(size);
    let mut flags = payload.enc();
    if long {
        flags |= F_LONG_KEY;
    }
    if expire {
        flags |= F_EXPIRE;
    }
    if raw {
        flags |= F_RAW;
    }
    if snap_bit {
        flags |= F_SNAP;
    }
    // SAFETY: `layout` has a non-zero size. Every write below lands inside the `size` bytes
    // just allocated: the header (HEAD bytes), the optional u32 and u64 (counted in `kpos`),
    // the key and the payload (counted in `size`).
    unsafe {
        let raw_ptr = alloc::alloc(layout);
        let Some(p) = NonNull::new(raw_ptr) else {
            alloc::handle_alloc_error(layout)
        };
        let b = p.as_ptr();
        ptr::write(b as *mut Link, None);
        ptr::write_unaligned(b.add(OFF_CLOCK) as *mut u32, clock);
        *b.add(OFF_FLAGS) = flags;
        *b.add(OFF_KLEN) = if long { 0 } else { key.len() as u8 };
        *b.add(OFF_VLEN) = match &payload {
            Payload::Inline(d) => d.len() as u8,
            Payload::Pack { .. } => FORM_PACK,
            _ => 0,
        };
        if long {
            ptr::write_unaligned(b.add(HEAD) as *mut u32, key.len() as u32);
        }
        if expire {
            ptr::write_unaligned(b.add(kpos - 8) as *mut u64, expire_at_ms);
        }
        ptr::copy_nonoverlapping(key.as_ptr(), b.add(kpos), key.len());
        let v = b.add(kpos + key.len());
        match payload {
            Payload::Int(i) => ptr::write_unaligned(v as *mut i64, i),
            Payload::Inline(d) => ptr::copy_nonoverlapping(d.as_ptr(), v, d.len()),
            Payload::Heap(data) => {
                let mut data = std::mem::ManuallyDrop::new(data);
                set_heap_parts(p, (data.as_mut_ptr(), data.len(), data.capacity()));
            }
            Payload::Moved(words) => ptr::copy_nonoverlapping(words.as_ptr(), v, HEAP_WORDS),
            Payload::Obj(o, kind) => {
                *b.add(OFF_FLAGS) |= kind;
                ptr::write_unaligned(v as *mut usize, o)
            }
            Payload::Pack { kind, head, body } => {
                *b.add(OFF_FLAGS) |= kind;
                write_pack(v, head, body);
            }
        }
        p
    }
}

/// Builds a node for an owned value: short plain strings inline, other strings keep their
/// allocation (moved, not copied).
fn build_value(key: &[u8], clock: u32, expire_at_ms: u64, value: Value, snap: bool) -> NonNull<u8> {
    match value {
        Value::Int(i) => build(key, clock, expire_at_ms, false, Payload::Int(i), snap),
        Value::Str { data, raw: false } if data.len() <= INLINE_MAX => build(
            key,
            clock,
            expire_at_ms,
            false,
            Payload::Inline(&data),
            snap,
        ),
        Value::Str { data, raw } => build(key, clock, expire_at_ms, raw, Payload::Heap(data), snap),
        Value::Set(s) => build_coll(key, clock, expire_at_ms, s, snap),
        Value::Hash(h) => build_coll(key, clock, expire_at_ms, h, snap),
        Value::ZSet(z) => build_coll(key, clock, expire_at_ms, z, snap),
        Value::List(l) => build(
            key,
            clock,
            expire_at_ms,
            false,
            Payload::Obj(Box::into_raw(l) as usize, KIND_LIST),
            snap,
        ),
    }
}

/// Writes a pack's length, `head` and `body` at `v`, a packed payload's start.
///
/// # Safety
/// `v` is valid for `PACK_LEN_BYTES + head.len() + body.len()` bytes of writes.
unsafe fn write_pack(v: *mut u8, head: &[u8], body: &[u8]) {
    ptr::write_unaligned(v as *mut u32, (head.len() + body.len()) as u32);
    ptr::copy_nonoverlapping(head.as_ptr(), v.add(PACK_LEN_BYTES), head.len());
    ptr::copy_nonoverlapping(
        body.as_ptr(),
        v.add(PACK_LEN_BYTES + head.len()),
        body.len(),
    );
}

/// A snapshot's state in one table: copy-before-write ([`crate::snapshot`]).
///
/// Every node carries an epoch bit. Outside a snapshot all of a table's nodes carry `bit`.
/// Beginning a snapshot flips `bit`, which makes every existing node pending; new nodes are
/// built with the new `bit` (they are not part of the snapshot). The walk saves pending
/// nodes and flips them; a write or delete reaching a pending node first saves it as it
/// was (into `saved`) and flips it. So each node present at the start is saved exactly once,
/// with its value at the start, and the walk ends with the invariant restored.
///
/// A large collection's own table (a hash's or set's, a sorted set's member table) is
/// walked the same way, by its own `Snap`, when a snapshot saves the collection
/// ([`Walk`]): then a pending member is saved into the walk's [`Members`] rather than as
/// a record of its own.
#[derive(Default)]
pub struct Snap {
    bit: bool,
    active: bool,
    /// The database this table was when the snapshot began (SWAPDB may move the table).
    db: u8,
    cursor: u64,
    /// Entries saved ahead of the walk, waiting for the shard's block builder.
    /// A list among them is held by reference ([`crate::snapshot::Pending`]).
    pub saved: Vec<crate::snapshot::Pending>,
    /// Set while a snapshot saves this collection table member by member.
    walk: Option<Rc<Walk>>,
}

/// Collections of more members than this are saved member by member by a walk of their
/// own table ([`Walk`]); smaller ones are copied whole when saved (at most this many
/// members: a bounded copy).
pub const WALK_MIN_MEMBERS: usize = 1024;

/// Saves `p` into `snap.saved` (or, in a walked collection table, its member into the
/// walk's [`Members`]) if the snapshot still needs it, and marks it done. A large
/// collection is not copied here: its own table's walk begins ([`Dict::walk_begin`]),
/// O(1), and the snapshot saves its members in steps.
///
/// # Safety
/// `p` is a live node of the table that owns `snap`, and the caller has exclusive access.
unsafe fn save_before_write(snap: &mut Snap, p: NonNull<u8>) {
    if !snap.active || ((flags(p) & F_SNAP != 0) == snap.bit) {
        return;
    }
    if let Some(w) = &snap.walk {
        w.members.borrow_mut().push(key(p), value(p));
    } else {
        let saved = match coll_table(p) {
            Some(d) if d.len() > WALK_MIN_MEMBERS => {
                let walk = d.walk_begin(kind(p) == KIND_HASH);
                crate::snapshot::Pending::members(snap.db, key(p), expire_at(p), value(p), walk)
            }
            _ => crate::snapshot::Pending::save(snap.db, key(p), expire_at(p), value(p)),
        };
        snap.saved.push(saved);
    }
    let f = p.as_ptr().add(OFF_FLAGS);
    *f = (*f & !F_SNAP) | if snap.bit { F_SNAP } else { 0 };
}

/// The table of the large collection at `p`, if it is one in a table encoding (a hash's or
/// set's table, a sorted set's member table).
///
/// # Safety
/// `p` is a live node, exclusively accessible for the returned borrow's life.
unsafe fn coll_table<'a>(p: NonNull<u8>) -> Option<&'a mut Dict> {
    if flags(p) & ENC_MASK != ENC_OBJ || is_packed(p) {
        return None;
    }
    let o = obj_ptr(p);
    match kind(p) {
        KIND_HASH => (*(o as *mut Hash)).table_mut(),
        KIND_SET => (*(o as *mut Set)).table_mut(),
        KIND_ZSET => (*(o as *mut ZSet)).table_mut(),
        _ => None,
    }
}

/// A large collection's table saved by a snapshot member by member, shared between the
/// table (its [`Snap`]) and the snapshot's pending record ([`crate::snapshot::Pending`]).
///
/// Beginning it is O(1): the table's epoch bit flips, as the keyspace's does at
/// [`Dict::snap_begin`], so every member present then is pending. The snapshot walks the
/// table with its own reverse-binary cursor, a bounded number of buckets per step
/// ([`Walk::step`]), saving each pending member into [`Members`]; a write to a pending
/// member (HSET over it, HDEL, HINCRBY, SREM, SPOP, ZINCRBY, ZREM, ...) saves that one
/// member first; members added after the start carry the new bit and are skipped. Growth
/// and shrinking move nodes between bucket arrays but never copy them, and the cursor
/// visits every member present throughout at least once, as SCAN's does. So a write does
/// O(1) snapshot work and a step O(buckets), whatever the collection's size, where copying
/// the collection whole took 0.3–0.7 s per million members.
///
/// Where the table is: the walk keeps its address. The table is boxed (a hash's or set's
/// `Box<Dict>`, a sorted set's `Box<Sorted>`) and is not moved while its walk runs, except
/// by these, which all tell the walk:
/// - the collection is freed (DEL, overwrite, expiry, FLUSHDB): [`free_node`] gives the
///   table to the walk ([`Dict::give_to_walk`], O(1)) instead of to the graveyard, which
///   would move it; the snapshot frees it (in slices) once walked;
/// - the table is dropped some other way: its `Drop` gives it to the walk likewise;
/// - the collection leaves the table whole ([`Dict::remove`]: MOVE, RENAME to another
///   shard): the rest of its walk is done then (O(n), the old copy's cost, on these rare
///   commands only) and the table detached.
pub struct Walk {
    /// The table, while the walk still needs it.
    table: Cell<Option<NonNull<Dict>>>,
    /// Whether the walk owns the table (a leaked box; [`Walk::finish`] gives it back to
    /// be freed).
    owned: Cell<bool>,
    members: RefCell<Members>,
}

impl Walk {
    /// Walks up to `buckets` more buckets of the table, saving pending members. False once
    /// the walk is over (every member present at its start saved).
    pub(crate) fn step(&self, buckets: usize) -> bool {
        let Some(t) = self.table.get() else {
            return false;
        };
        // SAFETY: `table` is the walked table's current address (see [`Walk`]: it is not
        // moved while walked, and whatever moves or frees it clears or re-points `table`
        // first). The snapshot steps a walk from the shard's own step, which holds the
        // shard mutably: no other reference to the table is live.
        unsafe { (*t.as_ptr()).snap_step(buckets) }
    }

    /// The members saved so far and not yet written.
    pub(crate) fn members(&self) -> std::cell::RefMut<'_, Members> {
        self.members.borrow_mut()
    }

    /// Ends the walk: the table forgets it (its members are all saved unless the snapshot
    /// is being abandoned, at teardown). Returns the table when the walk owned it, to be
    /// freed.
    pub(crate) fn finish(&self) -> Option<Box<Dict>> {
        let t = self.table.take()?;
        // SAFETY: as in `step`; an owned table is a leaked box (`Dict::give_to_walk`),
        // taken back once (`table` is now empty).
        unsafe {
            let d = &mut *t.as_ptr();
            d.snap.active = false;
            d.snap.walk = None;
            self.owned.get().then(|| Box::from_raw(t.as_ptr()))
        }
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        // Only when a snapshot is abandoned (the shard dropped mid-walk): an owned table
        // still holds its members.
        drop(self.finish());
    }
}

/// Members a collection walk saved, waiting to be written: per member its length, its
/// value's length (both u32), its bytes and its value's (a hash's value as text, a sorted
/// set's score as its 8 bits, nothing for a set), in one buffer.
#[derive(Default)]
pub struct Members {
    buf: Vec<u8>,
    /// Bytes of `buf` already written out.
    read: usize,
    /// Integers are a hash's values (written as text), else a sorted set's scores (bits).
    ints_as_text: bool,
    /// Members saved since the walk began (tests: work done per write).
    pub saved_count: usize,
}

impl Members {
    fn push(&mut self, member: &[u8], v: ValueRef) {
        let mut text = itoa::Buffer::new();
        let bits;
        let value: &[u8] = match v {
            ValueRef::Int(i) if self.ints_as_text => text.format(i).as_bytes(),
            ValueRef::Int(i) => {
                bits = (i as u64).to_le_bytes();
                &bits
            }
            ValueRef::Str { data, .. } => data,
            // Collection tables hold integers and strings only.
            _ => &[],
        };
        self.buf
            .extend_from_slice(&(member.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(member);
        self.buf.extend_from_slice(value);
        self.saved_count += 1;
    }

    /// Bytes saved and not yet written.
    pub fn unread_bytes(&self) -> usize {
        self.buf.len() - self.read
    }

    /// The next member and value from byte `at`, and where the one after starts.
    fn at(&self, at: usize) -> (&[u8], &[u8], usize) {
        let n =
            |i: usize| u32::from_le_bytes(self.buf[i..i + 4].try_into().expect("4 bytes")) as usize;
        let (m, v) = (n(at), n(at + 4));
        let m_at = at + 8;
        let v_at = m_at + m;
        (&self.buf[m_at..v_at], &self.buf[v_at..v_at + v], v_at + v)
    }

    /// The unread members, up to about `max_bytes` of them (at least one when any):
    /// how many, and their bytes.
    pub fn part(&self, max_bytes: usize) -> (usize, usize) {
        let (mut n, mut at) = (0, self.read);
        while at < self.buf.len() && (n == 0 || at - self.read < max_bytes) {
            at = self.at(at).2;
            n += 1;
        }
        (n, at - self.read)
    }

    /// The next `n` unread members and their values (as [`Members::part`] counted them).
    pub fn iter(&self, n: usize) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut at = self.read;
        (0..n).map(move |_| {
            let (m, v, next) = self.at(at);
            at = next;
            (m, v)
        })
    }

    /// Marks `bytes` (a [`Members::part`]) written. The written bytes leave the buffer
    /// once they are half of it (moving the unread rest, at most as many bytes as were
    /// written: amortized O(1) a byte), so it holds about what waits to be written, never
    /// the whole collection.
    pub fn consume(&mut self, bytes: usize) {
        self.read += bytes;
        if self.read * 2 >= self.buf.len() {
            self.buf.drain(..self.read);
            self.read = 0;
        }
    }
}

/// Takes a `HEAP` node's vector out (the node keeps an empty one).
unsafe fn take_heap(p: NonNull<u8>) -> Vec<u8> {
    let (ptr_, len, cap) = heap_parts(p);
    let mut empty = std::mem::ManuallyDrop::new(Vec::<u8>::new());
    set_heap_parts(p, (empty.as_mut_ptr(), 0, 0));
    Vec::from_raw_parts(ptr_, len, cap)
}

/// Frees a node that is no longer linked, sending a large value to `graveyard`.
unsafe fn free_node(p: NonNull<u8>, graveyard: &mut Graveyard) {
    // A collection a snapshot is still walking gives its table to the walk (O(1)): the
    // graveyard would move it out of its box (see [`Walk`]).
    if let Some(d) = coll_table(p) {
        d.give_to_walk();
    }
    match flags(p) & ENC_MASK {
        ENC_HEAP => graveyard.bury_vec(take_heap(p)),
        ENC_OBJ if is_packed(p) => {}
        ENC_OBJ => match take_obj(p) {
            Value::Set(s) => graveyard.bury_set(*s),
            Value::List(l) => graveyard.bury_list(*l),
            Value::Hash(h) => graveyard.bury_hash(*h),
            Value::ZSet(z) => graveyard.bury_zset(*z),
            _ => unreachable!("an OBJ node holds a collection"),
        },
        _ => {}
    }
    free_shell(p);
}

/// Frees a node's own block only (its `HEAP` value, if any, has been moved elsewhere).
unsafe fn free_shell(p: NonNull<u8>) {
    alloc::dealloc(p.as_ptr(), node_layout(node_size(p)));
}

/// Unpacks a node that is no longer linked into an owned entry, and frees it.
unsafe fn into_entry(p: NonNull<u8>) -> Entry {
    let raw = flags(p) & F_RAW != 0;
    let value = match flags(p) & ENC_MASK {
        ENC_HEAP => Value::Str {
            data: take_heap(p),
            raw,
        },
        ENC_OBJ => take_obj(p),
        _ => value(p).to_value(),
    };
    let e = Entry {
        value,
        expire_at_ms: expire_at(p),
        clock: Clock::Kept(clock(p)),
    };
    free_shell(p);
    e
}

/// An entry in the table, for reading. Valid while the table is not modified.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    node: NonNull<u8>,
    _life: PhantomData<&'a u8>,
}

impl<'a> EntryRef<'a> {
    // SAFETY (all accessors): `node` is a live node of a table borrowed for 'a.
    pub fn key(self) -> &'a [u8] {
        unsafe { key(self.node) }
    }
    pub fn value(self) -> ValueRef<'a> {
        unsafe { value(self.node) }
    }
    /// Absolute deadline in Unix milliseconds; 0 means none.
    pub fn expire_at_ms(self) -> u64 {
        unsafe { expire_at(self.node) }
    }
    /// The LRU/LFU word ([`crate::evict`]).
    pub fn clock(self) -> u32 {
        unsafe { clock(self.node) }
    }
    /// Redis's `keyIsExpired`: expired once the clock is past the deadline.
    pub fn is_expired(self, now_ms: u64) -> bool {
        let at = self.expire_at_ms();
        at != 0 && now_ms > at
    }
    /// Bytes this entry holds on the heap: its node and a separately allocated value.
    pub fn alloc_bytes(self) -> usize {
        unsafe {
            node_size(self.node)
                + match flags(self.node) & ENC_MASK {
                    ENC_HEAP => heap_parts(self.node).2,
                    ENC_OBJ if is_packed(self.node) => 0,
                    ENC_OBJ => {
                        fn boxed<T: Packed>(o: usize) -> usize {
                            // SAFETY: the caller's node is live and boxes a `T`.
                            std::mem::size_of::<T>() + unsafe { &*(o as *const T) }.heap_bytes()
                        }
                        let o = obj_ptr(self.node);
                        match kind(self.node) {
                            KIND_SET => boxed::<Set>(o),
                            KIND_HASH => boxed::<Hash>(o),
                            KIND_ZSET => boxed::<ZSet>(o),
                            _ => {
                                let l = &*(o as *const List);
                                std::mem::size_of::<List>() + l.heap_bytes()
                            }
                        }
                    }
                    _ => 0,
                }
        }
    }
    /// An owned copy (COPY, cross-shard moves); the clock word is kept.
    pub fn to_entry(self) -> Entry {
        Entry {
            value: self.value().to_value(),
            expire_at_ms: self.expire_at_ms(),
            clock: Clock::Kept(self.clock()),
        }
    }
}

/// An entry in the table, for writing. Holds the link that points at the node, so changes
/// of size reallocate the node and relink it.
pub struct EntryMut<'a> {
    link: NonNull<Link>,
    graveyard: &'a mut Graveyard,
    snap: &'a mut Snap,
    /// The table's buffer for editing a packed collection ([`CollMut`]).
    scratch: &'a mut Vec<u8>,
}

impl<'a> EntryMut<'a> {
    #[inline]
    fn node(&self) -> NonNull<u8> {
        // SAFETY: `link` points at a live link slot of the mutably borrowed table, and an
        // EntryMut is only made for a slot holding a node; every method keeps it so.
        unsafe { (*self.link.as_ptr()).expect("an EntryMut's link holds its node") }
    }

    /// A read view for as long as the table is borrowed.
    pub fn into_ref(self) -> EntryRef<'a> {
        EntryRef {
            node: self.node(),
            _life: PhantomData,
        }
    }

    /// A read view.
    pub fn get(&self) -> EntryRef<'_> {
        EntryRef {
            node: self.node(),
            _life: PhantomData,
        }
    }
    pub fn value(&self) -> ValueRef<'_> {
        self.get().value()
    }
    pub fn expire_at_ms(&self) -> u64 {
        self.get().expire_at_ms()
    }
    pub fn clock(&self) -> u32 {
        self.get().clock()
    }
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.get().is_expired(now_ms)
    }
    pub fn to_entry(&self) -> Entry {
        self.get().to_entry()
    }

    pub fn set_clock(&mut self, c: u32) {
        // SAFETY: the clock lies inside the live node's header.
        unsafe { ptr::write_unaligned(self.node().as_ptr().add(OFF_CLOCK) as *mut u32, c) }
    }

    /// Replaces the node with `new` (same position in the chain) and frees the old one's
    /// block; `keep_heap`: the old node's `HEAP` value now belongs to `new`.
    fn relink(&mut self, new: NonNull<u8>, keep_heap: bool) {
        let old = self.node();
        // SAFETY: `old` is live and linked at `self.link`; `new` is a fresh unlinked node.
        // After the swap nothing points at `old`, which is then freed exactly once.
        unsafe {
            ptr::write(next_slot(new), next(old));
            ptr::write(self.link.as_ptr(), Some(new));
            if keep_heap {
                free_shell(old);
            } else {
                free_node(old, self.graveyard);
            }
        }
    }

    /// Sets or clears (0) the deadline. In place when the node already has a deadline
    /// field; otherwise the node is rebuilt one word larger or smaller.
    pub fn set_expire_at_ms(&mut self, at_ms: u64) {
        let p = self.node();
        // SAFETY: `p` is this table's live node and the table is mutably borrowed.
        unsafe { save_before_write(self.snap, p) };
        // SAFETY: reads and writes within the live node; `Moved` transfers the HEAP words
        // to the new node and `relink(.., true)` then frees only the old shell.
        unsafe {
            let has = flags(p) & F_EXPIRE != 0;
            if has && at_ms != 0 {
                ptr::write_unaligned(p.as_ptr().add(expire_off(p)) as *mut u64, at_ms);
                return;
            }
            if !has && at_ms == 0 {
                return;
            }
            let raw = flags(p) & F_RAW != 0;
            let payload = match flags(p) & ENC_MASK {
                ENC_INT => Payload::Int(ptr::read_unaligned(val_ptr(p) as *const i64)),
                ENC_INLINE => {
                    Payload::Inline(std::slice::from_raw_parts(val_ptr(p), payload_len(p)))
                }
                ENC_OBJ if is_packed(p) => Payload::Pack {
                    kind: kind(p),
                    head: &[],
                    body: pack_bytes(p),
                },
                ENC_OBJ => Payload::Obj(obj_ptr(p), kind(p)),
                _ => {
                    let mut w = [0u8; HEAP_WORDS];
                    ptr::copy_nonoverlapping(val_ptr(p), w.as_mut_ptr(), HEAP_WORDS);
                    Payload::Moved(w)
                }
            };
            let new = build(key(p), clock(p), at_ms, raw, payload, self.snap.bit);
            self.relink(new, true);
        }
    }

    /// Replaces the value, keeping the key, deadline and clock.
    pub fn set_value(&mut self, v: Value) {
        let p = self.node();
        // SAFETY: the key and header are read from the live node before it is replaced;
        // the snapshot, if any, gets the old value first.
        let new = unsafe {
            save_before_write(self.snap, p);
            build_value(key(p), clock(p), expire_at(p), v, self.snap.bit)
        };
        self.relink(new, false);
    }

    /// The collection of type `T` this entry holds, for editing; None for another type. A
    /// snapshot in progress gets the value as it was first (copy before write). A packed
    /// collection is unpacked into the table's scratch buffer and written back into its
    /// node (reallocated to the pack's new length, or given a box when the edit converted
    /// it) when the returned guard drops.
    fn coll_mut<T: Packed>(&mut self) -> Option<CollMut<'_, T>> {
        let p = self.node();
        // SAFETY: `p` is this table's live node and the table is mutably borrowed; an `OBJ`
        // node owns its box (borrowed for as long as the guard, which borrows `self`) or
        // its pack (copied out here).
        unsafe {
            if flags(p) & ENC_MASK != ENC_OBJ || kind(p) != T::KIND {
                return None;
            }
            save_before_write(self.snap, p);
            let (owned, boxed) = if is_packed(p) {
                let buf = std::mem::take(self.scratch);
                (Some(T::unpack(pack_bytes(p), buf)), None)
            } else {
                (None, Some(&mut *(obj_ptr(p) as *mut T)))
            };
            Some(CollMut {
                link: self.link,
                owned,
                boxed,
                scratch: self.scratch,
            })
        }
    }

    /// The hash this entry holds, for editing ([`EntryMut::coll_mut`]).
    pub fn hash_mut(&mut self) -> Option<CollMut<'_, Hash>> {
        self.coll_mut()
    }

    /// The set this entry holds, for editing ([`EntryMut::coll_mut`]).
    pub fn set_mut(&mut self) -> Option<CollMut<'_, Set>> {
        self.coll_mut()
    }

    /// The sorted set this entry holds, for editing ([`EntryMut::coll_mut`]).
    pub fn zset_mut(&mut self) -> Option<CollMut<'_, ZSet>> {
        self.coll_mut()
    }

    /// The list this entry holds, for editing in place (lists are always boxed); a
    /// snapshot in progress gets the value as it was first.
    pub fn list_mut(&mut self) -> Option<&mut List> {
        let p = self.node();
        // SAFETY: `p` is this table's live node and the table is mutably borrowed; an `OBJ`
        // list node owns its box, borrowed here for as long as `self` is.
        unsafe {
            if flags(p) & ENC_MASK != ENC_OBJ || kind(p) != KIND_LIST {
                return None;
            }
            save_before_write(self.snap, p);
            Some(&mut *(obj_ptr(p) as *mut List))
        }
    }

    /// Edits the string bytes in place (APPEND, SETRANGE); the result is a `raw` string kept
    /// in its own growable allocation, as Redis unshares and converts it. Returns the new
    /// length.
    pub fn edit_raw(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> usize {
        let p = self.node();
        // SAFETY: as in `set_expire_at_ms`.
        unsafe { save_before_write(self.snap, p) };
        // SAFETY: a HEAP node's vector is taken out (leaving an empty one, so a panic in `f`
        // leaks nothing and frees nothing twice) and its words written back afterwards.
        unsafe {
            if flags(p) & ENC_MASK == ENC_HEAP {
                let mut data = take_heap(p);
                f(&mut data);
                let len = data.len();
                let mut data = std::mem::ManuallyDrop::new(data);
                set_heap_parts(p, (data.as_mut_ptr(), len, data.capacity()));
                *p.as_ptr().add(OFF_FLAGS) |= F_RAW;
                return len;
            }
        }
        let mut data = self.value().to_vec();
        f(&mut data);
        let len = data.len();
        // SAFETY: as in `set_value`.
        let bit = self.snap.bit;
        let new = unsafe {
            build(
                key(p),
                clock(p),
                expire_at(p),
                true,
                Payload::Heap(data),
                bit,
            )
        };
        self.relink(new, false);
        len
    }
}

/// A collection of an entry, borrowed for editing ([`EntryMut::set_mut`] and its kin):
/// the boxed one itself, or a packed one unpacked, written back into its node on drop.
pub struct CollMut<'e, T: Packed> {
    /// The link that points at the entry's node (the node moves when it is reallocated).
    link: NonNull<Link>,
    owned: Option<T>,
    boxed: Option<&'e mut T>,
    scratch: &'e mut Vec<u8>,
}

impl<T: Packed> std::ops::Deref for CollMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match (&self.owned, &self.boxed) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => unreachable!("a guard holds its collection until dropped"),
        }
    }
}

impl<T: Packed> std::ops::DerefMut for CollMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match (&mut self.owned, &mut self.boxed) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => unreachable!("a guard holds its collection until dropped"),
        }
    }
}

impl<T: Packed> Drop for CollMut<'_, T> {
    fn drop(&mut self) {
        if let Some(c) = self.owned.take() {
            // SAFETY: the guard mutably borrows the entry, so `link` still points at the
            // packed node `c` was unpacked from, and nothing else refers to the node.
            unsafe { store_packed(self.link, c, self.scratch) }
        }
    }
}

/// Writes an edited collection back into the packed node at `link`: packed again when it
/// still can be (the node reallocated to the pack's length, in place when mimalloc's size
/// class allows), else into a box of its own (a conversion to the large encoding, or a
/// pack grown past [`PACK_INLINE_MAX`]). The scratch buffer comes back to `scratch`.
///
/// # Safety
/// `link` holds a live packed `OBJ` node of kind `T::KIND`, exclusively accessible.
unsafe fn store_packed<T: Packed>(link: NonNull<Link>, c: T, scratch: &mut Vec<u8>) {
    let p = (*link.as_ptr()).expect("a guard's link holds its node");
    let at = key_off(p) + klen(p);
    let old = node_layout(node_size(p));
    let plen = pack_fits(&c);
    let size = match plen {
        Some(n) => at + PACK_LEN_BYTES + n,
        None => at + OBJ_WORDS,
    };
    let q = if size == old.size() {
        p
    } else {
        // The header, key and deadline before `at` are kept; the payload is rewritten.
        let raw = alloc::realloc(p.as_ptr(), old, size);
        NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(node_layout(size)))
    };
    let v = q.as_ptr().add(at);
    match c.pack() {
        Some((h, n, body)) if plen.is_some() => {
            write_pack(v, &h[..n], body);
            if let Some(buf) = c.into_buf() {
                if buf.capacity() <= SCRATCH_KEEP {
                    *scratch = buf;
                }
            }
        }
        _ => {
            *q.as_ptr().add(OFF_VLEN) = FORM_BOXED;
            ptr::write_unaligned(v as *mut usize, Box::into_raw(Box::new(c)) as usize);
        }
    }
    ptr::write(link.as_ptr(), Some(q));
}

/// The outcome of [`Dict::get_live`].
pub enum Live<'a> {
    Found(EntryMut<'a>),
    /// The entry was dead and has been removed.
    Removed,
    Missing,
}

struct Table {
    buckets: NonNull<Link>,
    size: usize,
    used: usize,
}

impl Table {
    fn empty() -> Self {
        Table {
            buckets: NonNull::dangling(),
            size: 0,
            used: 0,
        }
    }

    /// A zeroed bucket array; a large one is mapped from the kernel ([`lazyfree::alloc_zeroed`]),
    /// so allocating 16M buckets costs no more than touching them one rehash step at a time.
    fn with_size(n: usize) -> Self {
        let layout = Layout::array::<Link>(n).expect("bucket counts are bounded by memory");
        // n ≥ MIN_SIZE so the layout is non-empty; an all-zero `Option<NonNull<_>>` is `None`
        // (the niche guarantee), so the zeroed array is `n` valid empty buckets.
        let p = lazyfree::alloc_zeroed(layout);
        let Some(p) = NonNull::new(p as *mut Link) else {
            alloc::handle_alloc_error(layout)
        };
        Table {
            buckets: p,
            size: n,
            used: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.size.wrapping_sub(1)
    }

    #[inline]
    fn slot(&self, i: usize) -> *mut Link {
        debug_assert!(i < self.size);
        // SAFETY: callers index below `size` (masked hashes, bounded cursors).
        unsafe { self.buckets.as_ptr().add(i) }
    }

    #[inline]
    fn head(&self, i: usize) -> Link {
        // SAFETY: `slot` is in bounds and holds an initialized link.
        unsafe { *self.slot(i) }
    }

    /// Hands the bucket array to `graveyard` (freed in slices when large) and empties the
    /// table. The chains must already be gone.
    fn retire(&mut self, graveyard: &mut Graveyard) {
        if self.size > 0 {
            let layout = Layout::array::<Link>(self.size).expect("as allocated");
            // SAFETY: the array was allocated by `with_size` with this layout and is not
            // referenced after `self` is reset below.
            graveyard.bury(unsafe { Doomed::from_zeroed(self.buckets.cast(), layout) });
        }
        *self = Table::empty();
    }
}

/// A hash map from binary keys to packed entries with incremental rehashing.
pub struct Dict {
    tables: [Table; 2],
    /// Next bucket of `tables[0]` to move into `tables[1]`, while rehashing.
    rehash_idx: Option<usize>,
    seed: u64,
    /// Large blocks this table has let go of, freed in slices.
    graveyard: Graveyard,
    /// Next bucket [`Dict::free_step`] empties.
    free_cursor: usize,
    pub snap: Snap,
    /// Lent to each edit of a packed collection ([`CollMut`]), so the edit allocates
    /// nothing but the node's own growth.
    scratch: Vec<u8>,
}

/// A table's node handed to a structure that indexes the table's entries by address (a large
/// sorted set's tree keeps its members' nodes instead of copies of the members).
///
/// A handle stays valid while its entry is in the table and its value is not replaced:
/// rehashing, growth and shrinking never move nodes; `insert`/`set_value` over the key and
/// removal free it. Only integer values can be changed in place ([`node_set_int`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeHandle(NonNull<u8>);

impl NodeHandle {
    /// The entry's key.
    ///
    /// # Safety
    /// The handle is valid (see [`NodeHandle`]) for all of `'a`.
    #[inline]
    pub(crate) unsafe fn key<'a>(self) -> &'a [u8] {
        key(self.0)
    }
}

// SAFETY: a Dict owns all its nodes and arrays exclusively (no sharing, no interior
// pointers handed out beyond borrows of the Dict), like a Vec of boxes. The one shared
// part, a collection walk's `Rc<Walk>`, exists only while its shard's snapshot runs, and
// a collection leaving the shard ([`Dict::remove`]) detaches it first.
unsafe impl Send for Dict {}

impl Dict {
    /// `seed` keys the hash function; it is passed in so tests are deterministic and
    /// production gets a random one (hash flooding).
    pub fn new(seed: u64) -> Self {
        Dict {
            tables: [Table::empty(), Table::empty()],
            rehash_idx: None,
            seed,
            graveyard: Graveyard::default(),
            free_cursor: 0,
            snap: Snap::default(),
            scratch: Vec::new(),
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

    /// One HSCAN/SSCAN call over a collection's table: walks from `cursor` until `count`
    /// elements have been seen (each entry counting `weight`: a hash's field and value count
    /// two, as Redis counts them) or `10 * count` buckets were visited. Returns the next
    /// cursor.
    pub fn scan_some<'a>(
        &'a self,
        cursor: u64,
        count: usize,
        weight: usize,
        mut f: impl FnMut(&'a [u8], EntryRef<'a>),
    ) -> u64 {
        let (mut cursor, mut seen) = (cursor, 0usize);
        let mut budget = count.saturating_mul(10);
        loop {
            cursor = self.scan(cursor, |k, e| {
                seen += weight;
                f(k, e)
            });
            budget = budget.saturating_sub(1);
            if cursor == 0 || budget == 0 || seen >= count {
                return cursor;
            }
        }
    }

    /// Bytes the table holds: its bucket arrays and its entries, measured over up to 64
    /// buckets and scaled when there are more (MEMORY USAGE samples likewise).
    pub fn alloc_bytes(&self) -> usize {
        let mut sampled = (0usize, 0usize);
        let mut cursor = 0;
        for _ in 0..64 {
            cursor = self.scan(cursor, |_, e| {
                sampled.0 += 1;
                sampled.1 += e.alloc_bytes();
            });
            if cursor == 0 {
                break;
            }
        }
        let entries = (sampled.1 * self.len()).checked_div(sampled.0).unwrap_or(0);
        self.buckets() * BUCKET_BYTES + entries
    }

    /// Total buckets in both tables (for memory accounting and tests).
    pub fn buckets(&self) -> usize {
        self.tables[0].size + self.tables[1].size
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
            while self.tables[0].head(idx).is_none() {
                idx += 1;
                empty_visits -= 1;
                if empty_visits == 0 {
                    self.rehash_idx = Some(idx);
                    return true;
                }
            }
            // SAFETY: `idx` < size while used > 0 (a non-empty bucket exists at or after
            // it); each node is unlinked from the old chain and pushed onto a new one, so
            // every node stays in exactly one chain.
            unsafe {
                let mut chain = ptr::replace(self.tables[0].slot(idx), None);
                while let Some(node) = chain {
                    chain = next(node);
                    let h = self.hash(key(node));
                    let t1 = &mut self.tables[1];
                    let slot = t1.slot((h as usize) & t1.mask());
                    ptr::write(next_slot(node), *slot);
                    *slot = Some(node);
                    self.tables[0].used -= 1;
                    self.tables[1].used += 1;
                }
            }
            idx += 1;
            moved += 1;
        }
        if self.tables[0].used == 0 {
            self.tables[0].retire(&mut self.graveyard);
            self.tables[0] = std::mem::replace(&mut self.tables[1], Table::empty());
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
        if self.tables[0].size == 0 {
            self.tables[0] = Table::with_size(size);
            return;
        }
        if size == self.tables[0].size {
            return;
        }
        self.tables[1] = Table::with_size(size);
        self.rehash_idx = Some(0);
    }

    /// Sizes a table that has never held anything for `n` entries up front (Redis's
    /// `dictExpand` on an RDB file's RESIZEDB), so that loading them rehashes nothing. The
    /// caller bounds `n` (it is read from a file). Does nothing to a table already in use.
    pub fn reserve(&mut self, n: usize) {
        if self.tables[0].size == 0 && self.rehash_idx.is_none() {
            self.start_resize(n / MAX_LOAD + 1);
        }
    }

    fn grow_if_needed(&mut self) {
        if self.rehash_idx.is_some() {
            return;
        }
        let t = &self.tables[0];
        if t.size == 0 || t.used >= t.size * MAX_LOAD {
            // Double: the next power of two above `used / MAX_LOAD`.
            self.start_resize(t.used / MAX_LOAD + 1);
        }
    }

    /// Starts shrinking when the table is under 1/8 full; bounded like growth.
    fn shrink_if_needed(&mut self) {
        if self.rehash_idx.is_some() {
            return;
        }
        let t = &self.tables[0];
        if t.size > MIN_SIZE && t.used * 8 < t.size {
            self.start_resize(t.used.max(1) * 2);
        }
    }

    /// The link slot that points at `key`'s node in table `ti`.
    fn find_link(&self, ti: usize, key: &[u8], h: u64) -> Option<NonNull<Link>> {
        let t = &self.tables[ti];
        if t.size == 0 {
            return None;
        }
        let mut link = t.slot((h as usize) & t.mask());
        // SAFETY: `link` is always a bucket slot or the `next` field of a live node.
        unsafe {
            while let Some(p) = *link {
                if key_eq(p, key) {
                    return NonNull::new(link);
                }
                link = next_slot(p);
            }
        }
        None
    }

    /// The table holding `key` and the link slot that points at its node.
    fn find(&self, key: &[u8]) -> Option<(usize, NonNull<Link>)> {
        let h = self.hash(key);
        match self.find_link(0, key, h) {
            Some(l) => Some((0, l)),
            None => self.find_link(1, key, h).map(|l| (1, l)),
        }
    }

    fn entry_mut(&mut self, link: NonNull<Link>) -> EntryMut<'_> {
        EntryMut {
            link,
            graveyard: &mut self.graveyard,
            snap: &mut self.snap,
            scratch: &mut self.scratch,
        }
    }

    /// Finds `key`. Takes `&mut self` because lookups advance a rehash in progress.
    pub fn get(&mut self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.step();
        self.peek(key)
    }

    /// Inserts `key` (absent) with an integer value and returns its node (see [`NodeHandle`]).
    pub(crate) fn insert_int_node(&mut self, key: &[u8], v: i64) -> NodeHandle {
        let node = build(key, 0, 0, false, Payload::Int(v), self.snap.bit);
        let replaced = self.insert_node(key, node);
        debug_assert!(replaced.is_none(), "insert_int_node of a present key");
        NodeHandle(node)
    }

    /// Sets the integer value of the entry `h` in place (the node stays where it is).
    ///
    /// # Safety
    /// `h` is a valid handle of this table's entry whose value is an integer.
    pub(crate) unsafe fn node_set_int(&mut self, h: NodeHandle, v: i64) {
        debug_assert_eq!(flags(h.0) & ENC_MASK, ENC_INT);
        save_before_write(&mut self.snap, h.0);
        ptr::write_unaligned(val_ptr(h.0) as *mut i64, v);
    }

    /// Finds `key` without advancing a rehash.
    pub fn peek(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        // SAFETY: a found link holds a live node.
        self.find(key).map(|(_, l)| EntryRef {
            node: unsafe { (*l.as_ptr()).expect("found links hold nodes") },
            _life: PhantomData,
        })
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<EntryMut<'_>> {
        self.step();
        let (_, link) = self.find(key)?;
        Some(self.entry_mut(link))
    }

    /// Finds `key`; if `dead` says the entry is no longer valid (expired), removes it
    /// instead. One hash computation, at most two short chain walks.
    pub fn get_live(&mut self, key: &[u8], dead: impl FnOnce(EntryRef) -> bool) -> Live<'_> {
        self.step();
        let Some((ti, link)) = self.find(key) else {
            return Live::Missing;
        };
        // SAFETY: a found link holds a live node.
        let node = unsafe { (*link.as_ptr()).expect("found links hold nodes") };
        if dead(EntryRef {
            node,
            _life: PhantomData,
        }) {
            self.unlink_at(ti, link);
            // SAFETY: just unlinked; saved if a snapshot needs it, then freed once.
            unsafe {
                save_before_write(&mut self.snap, node);
                free_node(node, &mut self.graveyard)
            };
            self.shrink_if_needed();
            Live::Removed
        } else {
            Live::Found(self.entry_mut(link))
        }
    }

    /// Unlinks the node at `link`, found in table `ti`.
    fn unlink_at(&mut self, ti: usize, link: NonNull<Link>) {
        // SAFETY: `link` holds a live node; its successor takes its place.
        unsafe {
            let node = (*link.as_ptr()).expect("found links hold nodes");
            *link.as_ptr() = next(node);
        }
        self.tables[ti].used -= 1;
    }

    /// Inserts or replaces the entry at `key`, writing `clock` as its LRU/LFU word. Returns
    /// `Some(old had a deadline)` when it replaced an entry.
    pub fn insert(
        &mut self,
        key: &[u8],
        value: Value,
        expire_at_ms: u64,
        clock: u32,
    ) -> Option<bool> {
        let node = build_value(key, clock, expire_at_ms, value, self.snap.bit);
        self.insert_node(key, node)
    }

    /// [`Dict::insert`] of a borrowed value (SET's path): a short string is copied straight
    /// into the node, with no intermediate allocation.
    pub fn insert_ref(
        &mut self,
        key: &[u8],
        value: ValueRef,
        expire_at_ms: u64,
        clock: u32,
    ) -> Option<bool> {
        let bit = self.snap.bit;
        let node = match value {
            ValueRef::Int(i) => build(key, clock, expire_at_ms, false, Payload::Int(i), bit),
            ValueRef::Str { data, raw: false } if data.len() <= INLINE_MAX => {
                build(key, clock, expire_at_ms, false, Payload::Inline(data), bit)
            }
            ValueRef::Str { data, raw } => build(
                key,
                clock,
                expire_at_ms,
                raw,
                Payload::Heap(data.to_vec()),
                bit,
            ),
            v @ (ValueRef::Hash(_) | ValueRef::Set(_) | ValueRef::List(_) | ValueRef::ZSet(_)) => {
                build_value(key, clock, expire_at_ms, v.to_value_seeded(self.seed), bit)
            }
        };
        self.insert_node(key, node)
    }

    /// Links a fresh node for `key`, replacing the entry there; `Some(old had a deadline)`
    /// when it replaced one.
    fn insert_node(&mut self, key: &[u8], node: NonNull<u8>) -> Option<bool> {
        if let Some(mut e) = self.get_mut(key) {
            let had = e.expire_at_ms() != 0;
            let old = e.node();
            // SAFETY: `old` is live in this mutably borrowed table.
            unsafe { save_before_write(e.snap, old) };
            e.relink(node, false);
            return Some(had);
        }
        self.grow_if_needed();
        let h = self.hash(key);
        let ti = if self.rehash_idx.is_some() { 1 } else { 0 };
        let t = &mut self.tables[ti];
        let slot = t.slot((h as usize) & t.mask());
        // SAFETY: `node` is fresh and unlinked; it becomes the head of the chain.
        unsafe {
            ptr::write(next_slot(node), *slot);
            *slot = Some(node);
        }
        t.used += 1;
        None
    }

    /// Removes `key`, returning its entry (the value moved out, not copied, when it has an
    /// allocation of its own).
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.step();
        let (ti, link) = self.find(key)?;
        // SAFETY: a found link holds a live node, unlinked here and consumed once.
        let node = unsafe { (*link.as_ptr()).expect("found links hold nodes") };
        self.unlink_at(ti, link);
        self.shrink_if_needed();
        // SAFETY: unlinked just above; saved if a snapshot needs it, then consumed once.
        // A collection leaving whole (it may go to another shard) takes its table with it:
        // a walk of it is finished now.
        unsafe {
            save_before_write(&mut self.snap, node);
            if let Some(d) = coll_table(node) {
                d.walk_detach();
            }
        }
        Some(unsafe { into_entry(node) })
    }

    /// Deletes `key`; a large value goes to the graveyard. Returns `Some(had a deadline)`.
    pub fn delete(&mut self, key: &[u8]) -> Option<bool> {
        self.step();
        let (ti, link) = self.find(key)?;
        // SAFETY: a found link holds a live node, unlinked here and freed once.
        let node = unsafe { (*link.as_ptr()).expect("found links hold nodes") };
        let had = unsafe { expire_at(node) } != 0;
        self.unlink_at(ti, link);
        unsafe {
            save_before_write(&mut self.snap, node);
            free_node(node, &mut self.graveyard)
        };
        self.shrink_if_needed();
        Some(had)
    }

    /// Visits up to `n` buckets, freeing their chains, then the arrays (for a detached
    /// table dropped in slices; large values and arrays move to the graveyard). Returns true
    /// while entries remain.
    pub fn free_step(&mut self, n: usize) -> bool {
        self.rehash_idx = None;
        let mut budget = n.max(1);
        for ti in 0..2 {
            let t = &mut self.tables[ti];
            while budget > 0 && t.used > 0 {
                let i = self.free_cursor;
                // `used > 0` means a non-empty bucket at or after the cursor: buckets before
                // it have been emptied.
                debug_assert!(i < t.size);
                // SAFETY: the chain is detached from its bucket, then each node freed once.
                unsafe {
                    let mut chain = ptr::replace(t.slot(i), None);
                    while let Some(p) = chain {
                        chain = next(p);
                        t.used -= 1;
                        save_before_write(&mut self.snap, p);
                        free_node(p, &mut self.graveyard);
                    }
                }
                self.free_cursor += 1;
                budget -= 1;
            }
            if t.used == 0 && t.size > 0 {
                t.retire(&mut self.graveyard);
                self.free_cursor = 0;
            }
        }
        !self.is_empty()
    }

    /// Begins a snapshot of this table, which holds database `db` (see [`Snap`]). O(1).
    pub fn snap_begin(&mut self, db: u8) {
        debug_assert!(!self.snap.active, "one snapshot at a time");
        self.snap.bit = !self.snap.bit;
        self.snap.active = true;
        self.snap.db = db;
        self.snap.cursor = 0;
    }

    /// Begins a walk of this collection table for a snapshot (see [`Walk`]). O(1). A hash's
    /// integer values are saved as text (`ints_as_text`), a sorted set's scores as bits.
    fn walk_begin(&mut self, ints_as_text: bool) -> Rc<Walk> {
        let w = Rc::new(Walk {
            table: Cell::new(Some(NonNull::from(&mut *self))),
            owned: Cell::new(false),
            members: RefCell::new(Members {
                ints_as_text,
                ..Members::default()
            }),
        });
        self.snap_begin(0);
        self.snap.walk = Some(w.clone());
        w
    }

    /// Hands this walked table to its walk, which owns it from now on, and leaves an empty
    /// table in its place. O(1). Nothing when no snapshot walks it (or nobody waits for the
    /// walk any more).
    fn give_to_walk(&mut self) {
        let Some(w) = self.snap.walk.clone() else {
            return;
        };
        if Rc::strong_count(&w) <= 2 {
            // Only this table and `w` hold the walk: the snapshot let it go.
            self.snap.walk = None;
            self.snap.active = false;
            return;
        }
        let seed = self.seed;
        // The walk keeps the box (leaked here) until `Walk::finish` takes it back.
        let t = Box::leak(Box::new(std::mem::replace(self, Dict::new(seed))));
        w.table.set(Some(NonNull::from(t)));
        w.owned.set(true);
    }

    /// Finishes a walk of this table now (every pending member saved) and detaches it.
    /// O(n): only for a collection leaving its table whole ([`Dict::remove`]).
    fn walk_detach(&mut self) {
        let Some(w) = self.snap.walk.clone() else {
            return;
        };
        while self.snap_step(1 << 16) {}
        self.snap.walk = None;
        w.table.set(None);
    }

    /// Whether this table's part of a snapshot is still being walked.
    pub fn snap_active(&self) -> bool {
        self.snap.active
    }

    /// Walks up to `buckets` more buckets of the snapshot, saving pending entries into
    /// `snap.saved`. Returns true while the walk goes on.
    pub fn snap_step(&mut self, buckets: usize) -> bool {
        if !self.snap.active {
            return false;
        }
        if self.is_empty() {
            // (As a scan of an empty table: the walk is over.)
            self.snap.active = false;
            return false;
        }
        self.snap_step_ahead(buckets)
    }

    /// [`Dict::snap_step`], with the step's buckets known in advance (the cursor's
    /// reverse-binary sequence, over both tables while a rehash is in flight, in the order
    /// [`Dict::scan`] visits them), so their slots and first nodes are fetched ahead of use.
    /// The walk jumps across the bucket array, and each slot and node it reads is a cache
    /// (and, on a VM, TLB) miss: at 10M keys, waiting for them one after another was over
    /// half of a SAVE. Fetching ahead overlaps the misses.
    fn snap_step_ahead(&mut self, buckets: usize) -> bool {
        /// How far ahead slots are fetched.
        const AHEAD: usize = 8;
        let next_v = |v: usize, m: usize| (v | !m).reverse_bits().wrapping_add(1).reverse_bits();
        let mut slots: Vec<*mut Link> = Vec::with_capacity(buckets.clamp(1, 1 << 16));
        let mut v = self.snap.cursor as usize;
        for _ in 0..buckets.max(1) {
            if self.rehash_idx.is_none() {
                let t = &self.tables[0];
                slots.push(t.slot(v & t.mask()));
                v = next_v(v, t.mask());
            } else {
                let (small, large) = if self.tables[0].size <= self.tables[1].size {
                    (&self.tables[0], &self.tables[1])
                } else {
                    (&self.tables[1], &self.tables[0])
                };
                let (m0, m1) = (small.mask(), large.mask());
                slots.push(small.slot(v & m0));
                loop {
                    slots.push(large.slot(v & m1));
                    v = next_v(v, m1);
                    if v & (m0 ^ m1) == 0 {
                        break;
                    }
                }
            }
            if v == 0 {
                break;
            }
        }
        for &slot in slots.iter().take(AHEAD) {
            prefetch(slot as *const u8);
        }
        let mut heads = Vec::with_capacity(slots.len());
        for (k, &slot) in slots.iter().enumerate() {
            if let Some(&ahead) = slots.get(k + AHEAD) {
                prefetch(ahead as *const u8);
            }
            // SAFETY: `slot` is a slot of one of this table's arrays, in bounds (masked
            // above), holding an initialized link; nothing changed the arrays since.
            let h = unsafe { *slot };
            if let Some(p) = h {
                prefetch(p.as_ptr());
            }
            heads.push(h);
        }
        let mut nodes = Vec::with_capacity(heads.len() + heads.len() / 2);
        for h in heads {
            let mut cur = h;
            while let Some(p) = cur {
                nodes.push(p);
                // SAFETY: `p` is a live node of this table.
                cur = unsafe { next(p) };
            }
        }
        for p in nodes {
            // SAFETY: `p` came from this table's chains just now, nothing was removed since,
            // and `&mut self` makes the access exclusive.
            unsafe { save_before_write(&mut self.snap, p) };
        }
        if v == 0 {
            self.snap.active = false;
            return false;
        }
        self.snap.cursor = v as u64;
        true
    }

    /// Large blocks waiting to be freed, and their bytes.
    /// Blocks and collections this table let go of, waiting for [`Dict::graveyard`]'s taker.
    pub fn graveyard_len(&self) -> usize {
        self.graveyard.len()
    }

    pub fn graveyard(&mut self) -> &mut Graveyard {
        &mut self.graveyard
    }

    /// Visits the entries of the bucket(s) at `cursor` and returns the next cursor (0 when
    /// the walk is complete). Reverse-binary increments make the walk robust to resizing.
    /// `f` may not modify the table; callers collect keys and act afterwards.
    pub fn scan<'a>(&'a self, cursor: u64, mut f: impl FnMut(&'a [u8], EntryRef<'a>)) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let mut v = cursor as usize;
        let visit = |t: &Table, idx: usize, f: &mut dyn FnMut(&'a [u8], EntryRef<'a>)| {
            let mut cur = t.head(idx & t.mask());
            while let Some(p) = cur {
                let e = EntryRef {
                    node: p,
                    _life: PhantomData,
                };
                f(e.key(), e);
                // SAFETY: `p` is a live node of this table.
                cur = unsafe { next(p) };
            }
        };
        if self.rehash_idx.is_none() {
            let t = &self.tables[0];
            let m0 = t.mask();
            visit(t, v, &mut f);
            v |= !m0;
            v = v.reverse_bits().wrapping_add(1).reverse_bits();
        } else {
            let (small, large) = if self.tables[0].size <= self.tables[1].size {
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
    pub fn random(&mut self, rand: impl FnMut() -> u64) -> Option<EntryRef<'_>> {
        if self.is_empty() {
            return None;
        }
        self.step();
        self.random_ref(rand)
    }

    /// [`Dict::random`] without the rehash step, for readers of a shared borrow.
    pub fn random_ref(&self, mut rand: impl FnMut() -> u64) -> Option<EntryRef<'_>> {
        if self.is_empty() {
            return None;
        }
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
            if t.size == 0 || t.used == 0 {
                continue;
            }
            let b = (rand() as usize) & t.mask();
            if t.head(b).is_some() {
                found = Some((ti, b));
                break;
            }
        }
        let (ti, b) = match found {
            Some(x) => x,
            None => {
                let ti = if self.tables[0].used > 0 { 0 } else { 1 };
                let t = &self.tables[ti];
                let b = (0..t.size).find(|&i| t.head(i).is_some())?;
                (ti, b)
            }
        };
        let head = self.tables[ti].head(b);
        let mut len = 0;
        let mut cur = head;
        while let Some(p) = cur {
            len += 1;
            // SAFETY: live nodes of this chain.
            cur = unsafe { next(p) };
        }
        let mut pick = (rand() % len as u64) as usize;
        let mut cur = head;
        while let Some(p) = cur {
            if pick == 0 {
                return Some(EntryRef {
                    node: p,
                    _life: PhantomData,
                });
            }
            pick -= 1;
            // SAFETY: as above.
            cur = unsafe { next(p) };
        }
        None
    }
}

impl Drop for Dict {
    fn drop(&mut self) {
        // A collection table a snapshot walks: the walk takes it (see [`Walk`]), and what
        // is left here is empty.
        self.give_to_walk();
        let mut graveyard = Graveyard::default();
        for t in &mut self.tables {
            for i in 0..t.size {
                // SAFETY: every chain is detached and each node freed once; the arrays are
                // freed by `retire` right after.
                unsafe {
                    let mut chain = ptr::replace(t.slot(i), None);
                    while let Some(p) = chain {
                        chain = next(p);
                        free_node(p, &mut graveyard);
                    }
                }
            }
            t.used = 0;
            t.retire(&mut graveyard);
        }
        // Dropping the graveyard frees its blocks at once: a Dict is dropped whole only when
        // nobody is waiting on its core (shutdown, tests) or when it is already small.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn int(d: &mut Dict, k: &[u8], i: i64) -> Option<bool> {
        d.insert(k, Value::Int(i), 0, 0)
    }

    fn get_int(d: &Dict, k: &[u8]) -> Option<i64> {
        d.peek(k).map(|e| match e.value() {
            ValueRef::Int(i) => i,
            other => panic!("not an int: {other:?}"),
        })
    }

    #[test]
    fn insert_get_remove_through_growth_and_shrink() {
        let mut d = Dict::new(7);
        for i in 0..10_000u32 {
            assert_eq!(int(&mut d, &i.to_le_bytes(), i as i64), None);
        }
        assert_eq!(d.len(), 10_000);
        for i in 0..10_000u32 {
            assert_eq!(get_int(&d, &i.to_le_bytes()), Some(i as i64));
        }
        assert_eq!(int(&mut d, &5u32.to_le_bytes(), 55), Some(false));
        assert_eq!(get_int(&d, &5u32.to_le_bytes()), Some(55));
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
            assert_eq!(get_int(&d, &i.to_le_bytes()), Some(i as i64));
        }
    }

    /// The snapshot walk fetches its buckets ahead ([`Dict::snap_step_ahead`]), over one
    /// table or two while a rehash is in flight: every key present when the snapshot began
    /// is saved exactly once, with its value then, while inserts grow the table and deletes
    /// shrink it between steps.
    #[test]
    fn a_snapshot_walk_through_growth_and_shrink_saves_each_key_once() {
        for (start, grow) in [(5_000u32, true), (40_000, false)] {
            let mut d = Dict::new(3);
            for i in 0..start {
                int(&mut d, &i.to_le_bytes(), i as i64);
            }
            d.snap_begin(0);
            let mut saved = HashMap::new();
            let mut take = |d: &mut Dict| {
                for r in std::mem::take(&mut d.snap.saved) {
                    let r = r.into_record();
                    assert!(saved.insert(r.key, r.value).is_none(), "a key saved twice");
                }
            };
            let mut next = start;
            let mut rehashing_steps = 0;
            while d.snap_step(7) {
                take(&mut d);
                if d.rehash_idx.is_some() {
                    rehashing_steps += 1;
                }
                for _ in 0..5 {
                    if grow {
                        int(&mut d, &next.to_le_bytes(), -1);
                        next += 1;
                    } else if next > 0 {
                        next -= 1;
                        d.remove(&next.to_le_bytes());
                    }
                }
                // Values changed during the walk: the snapshot keeps the old ones.
                int(&mut d, &(next % start).to_le_bytes(), -2);
            }
            take(&mut d);
            assert!(rehashing_steps > 0, "the walk met a rehash (grow: {grow})");
            assert_eq!(saved.len(), start as usize, "grow: {grow}");
            for i in 0..start {
                assert_eq!(
                    saved.get(&i.to_le_bytes()[..]),
                    Some(&crate::snapshot::RecordValue::Int(i as i64)),
                    "key {i}, grow: {grow}"
                );
            }
        }
    }

    #[test]
    fn operations_do_bounded_rehash_work() {
        let mut d = Dict::new(1);
        for i in 0..8192u32 {
            int(&mut d, &i.to_le_bytes(), 0);
        }
        // The insert that crosses the maximum load starts a rehash but must not finish it.
        int(&mut d, b"one more", 0);
        assert!(d.is_rehashing());
        assert_eq!(d.len(), 8193);
    }

    /// Growth in bounded steps: while a table grows from empty to 2M entries, no insert or
    /// lookup moves more than one bucket's chain (visiting at most 10 empty buckets), and
    /// no single call moves more than a handful of entries, whatever the table size.
    #[test]
    fn a_reserved_table_takes_its_entries_without_rehashing() {
        let mut d = Dict::new(5);
        d.reserve(10_000);
        for i in 0..10_000u32 {
            int(&mut d, &i.to_le_bytes(), 0);
            assert!(!d.is_rehashing(), "rehashing at {i}");
        }
        // A table in use is left alone.
        let size = d.buckets();
        d.reserve(1 << 20);
        assert_eq!(d.buckets(), size);
    }

    #[test]
    fn growth_moves_a_bounded_number_of_entries_per_call() {
        let mut d = Dict::new(11);
        let mut max_moved = 0;
        let mut resizes = 0;
        let mut was_rehashing = false;
        for i in 0..2_000_000u32 {
            let before = d.tables[1].used + d.tables[0].used;
            let t1_before = d.tables[1].used;
            let rehashing = d.is_rehashing();
            int(&mut d, &i.to_le_bytes(), 0);
            if rehashing && d.is_rehashing() {
                // Entries that moved into the new table besides the one inserted there.
                let moved = d.tables[1].used - t1_before - 1;
                max_moved = max_moved.max(moved);
            }
            assert_eq!(d.len(), before + 1);
            if d.is_rehashing() && !was_rehashing {
                resizes += 1;
            }
            was_rehashing = d.is_rehashing();
        }
        assert!(resizes >= 15, "the table doubled {resizes} times");
        assert!(
            max_moved <= 12,
            "one insert moved {max_moved} entries: more than one bucket's chain at load 2"
        );
        // Lookups advance the rehash by the same bounded step.
        while d.is_rehashing() {
            let t1 = d.tables[1].used;
            d.get(b"absent");
            assert!(d.tables[1].used - t1 <= 12);
        }
    }

    /// The layout the module header promises: a 16-byte key and a 32-byte value in one
    /// 63-byte node.
    #[test]
    fn a_small_entry_is_one_63_byte_node() {
        let mut d = Dict::new(2);
        let key = [b'k'; 16];
        d.insert(&key, Value::from_bytes(&[b'v'; 32]), 0, 7);
        let e = d.peek(&key).unwrap();
        assert_eq!(e.alloc_bytes(), 63);
        assert_eq!(e.clock(), 7);
        assert_eq!(e.value().encoding(), "embstr");
        d.insert(&key, Value::Int(12), 0, 7);
        assert_eq!(d.peek(&key).unwrap().alloc_bytes(), 15 + 16 + 8);
        d.insert(&key, Value::from_bytes(&[b'v'; 300]), 5, 7);
        let e = d.peek(&key).unwrap();
        assert_eq!(e.alloc_bytes(), 15 + 8 + 16 + 24 + 300);
        assert_eq!(e.value().encoding(), "raw");
    }

    fn small_set(members: impl Iterator<Item = i64>) -> Value {
        let mut s = Set::default();
        for m in members {
            s.add(m.to_string().as_bytes(), Default::default(), 1);
        }
        Value::Set(Box::new(s))
    }

    fn members_of(d: &Dict, k: &[u8]) -> Vec<Vec<u8>> {
        match d.peek(k).map(|e| e.value()) {
            Some(ValueRef::Set(s)) => s.members(),
            other => panic!("not a set: {other:?}"),
        }
    }

    /// A small set's intset lives in its node: one allocation of header, key, the pack's
    /// length, width byte and members. Edits grow and shrink the node; a member past the
    /// intset's reach moves the set to a box of its own, for good.
    #[test]
    fn a_small_set_is_packed_in_its_node_until_it_converts() {
        let mut d = Dict::new(2);
        let key = [b's'; 16];
        d.insert(&key, small_set(0..20), 0, 3);
        let e = d.peek(&key).unwrap();
        assert_eq!(e.alloc_bytes(), 15 + 16 + 4 + 1 + 20 * 2);
        assert_eq!(e.value().encoding(), "intset");
        let limits = crate::types::set::SetLimits {
            max_intset_entries: 24,
        };
        // Growth in place, then a wider member (every member widened to 4 bytes).
        {
            let mut e = d.get_mut(&key).unwrap();
            assert!(e.set_mut().unwrap().add(b"20", limits, 1));
            assert!(!e.set_mut().unwrap().add(b"20", limits, 1));
            assert_eq!(e.get().alloc_bytes(), 15 + 16 + 4 + 1 + 21 * 2);
            assert!(e.set_mut().unwrap().add(b"100000", limits, 1));
            assert_eq!(e.get().alloc_bytes(), 15 + 16 + 4 + 1 + 22 * 4);
            // Shrink: the node follows the pack down.
            assert!(e.set_mut().unwrap().remove(b"100000"));
            assert!(e.set_mut().unwrap().remove(b"0"));
            assert_eq!(e.get().alloc_bytes(), 15 + 16 + 4 + 1 + 20 * 4);
            assert_eq!(e.clock(), 3, "the header moved with the node");
        }
        let want: Vec<Vec<u8>> = (1..21).map(|i: i64| i.to_string().into_bytes()).collect();
        assert_eq!(members_of(&d, &key), want);
        // A deadline rebuilds the node with the pack in it.
        d.get_mut(&key).unwrap().set_expire_at_ms(77);
        assert_eq!(d.peek(&key).unwrap().expire_at_ms(), 77);
        assert_eq!(members_of(&d, &key), want);
        // Past the entries limit: a table in a box.
        {
            let mut e = d.get_mut(&key).unwrap();
            let mut s = e.set_mut().unwrap();
            for m in 21..30 {
                s.add(m.to_string().as_bytes(), limits, 1);
            }
        }
        let e = d.peek(&key).unwrap();
        assert_eq!(e.value().encoding(), "hashtable");
        assert_eq!(e.expire_at_ms(), 77);
        let boxed = 15 + 8 + 16 + 8 + std::mem::size_of::<Set>();
        assert!(e.alloc_bytes() > boxed, "{}", e.alloc_bytes());
        let mut got = members_of(&d, &key);
        got.sort();
        let mut want: Vec<Vec<u8>> = (1..30).map(|i: i64| i.to_string().into_bytes()).collect();
        want.sort();
        assert_eq!(got, want);
        // A non-integer member converts at once; a removal never converts back.
        d.insert(b"t", small_set(0..3), 0, 0);
        d.get_mut(b"t")
            .unwrap()
            .set_mut()
            .unwrap()
            .add(b"x", limits, 1);
        assert_eq!(d.peek(b"t").unwrap().value().encoding(), "hashtable");
        d.get_mut(b"t").unwrap().set_mut().unwrap().remove(b"x");
        assert_eq!(d.peek(b"t").unwrap().value().encoding(), "hashtable");
        // Removing a packed set hands back an owned one; deleting frees it.
        d.insert(b"u", small_set([5, -5].into_iter()), 0, 0);
        let got = d.remove(b"u").unwrap();
        assert_eq!(got.value, small_set([-5, 5].into_iter()));
        assert_eq!(d.delete(b"t"), Some(false));
    }

    /// A small sorted set's pack lives in its node (the element count, then the elements:
    /// a byte of score, a byte of length and the member); a ZADD past the entries limit
    /// moves it to a tree in a box.
    #[test]
    fn a_small_sorted_set_is_packed_in_its_node_until_it_converts() {
        let limits = crate::types::zset::ZSetLimits {
            max_listpack_entries: 12,
            max_listpack_value: 64,
        };
        let members: Vec<String> = (0..10).map(|i| format!("member:{i:02}")).collect();
        let elems = members
            .iter()
            .enumerate()
            .map(|(i, m)| (i as f64, m.as_bytes()));
        let z = ZSet::from_elems(elems, limits, 1);
        let mut d = Dict::new(5);
        let key = [b'z'; 16];
        d.insert(&key, Value::ZSet(Box::new(z)), 0, 0);
        let e = d.peek(&key).unwrap();
        assert_eq!(e.alloc_bytes(), 15 + 16 + 4 + 4 + 10 * 11);
        assert_eq!(e.value().encoding(), "listpack");
        let rank = |d: &Dict, m: &[u8]| match d.peek(&key).unwrap().value() {
            ValueRef::ZSet(z) => z.rank(m),
            _ => panic!("a sorted set"),
        };
        assert_eq!(rank(&d, b"member:03"), Some((3, 3.0)));
        {
            let mut e = d.get_mut(&key).unwrap();
            let mut z = e.zset_mut().unwrap();
            z.update(b"member:03", 3.0, 2.5);
            z.insert(-1.0, b"m", limits, 1);
            drop(z);
            // 2.5 takes a flag byte and 8 bytes; -1 one byte.
            assert_eq!(e.get().alloc_bytes(), 15 + 16 + 4 + 4 + 9 * 11 + 19 + 3);
            assert_eq!(e.zset_mut().unwrap().remove(b"m"), Some(-1.0));
        }
        assert_eq!(rank(&d, b"member:03"), Some((3, 2.5)));
        assert_eq!(rank(&d, b"m"), None);
        {
            let mut e = d.get_mut(&key).unwrap();
            let mut z = e.zset_mut().unwrap();
            for m in [b"a", b"b", b"c"] {
                z.insert(100.0, m, limits, 1);
            }
        }
        let e = d.peek(&key).unwrap();
        assert_eq!(e.value().encoding(), "skiplist");
        assert_eq!(e.value().to_value(), d.peek(&key).unwrap().to_entry().value);
        assert_eq!(rank(&d, b"c"), Some((12, 100.0)));
        let got = d.remove(&key).unwrap();
        let Value::ZSet(z) = got.value else {
            panic!("a sorted set")
        };
        assert_eq!(z.len(), 13);
    }

    /// A small hash's pack lives in its node (the pair count, then length-prefixed fields
    /// and values); HSET grows it in place, HDEL shrinks it, a value past the value limit
    /// moves it to a table in a box.
    #[test]
    fn a_small_hash_is_packed_in_its_node_until_it_converts() {
        use crate::types::hash::HashLimits;
        let limits = HashLimits {
            max_listpack_entries: 16,
            max_listpack_value: 20,
        };
        let mut h = Hash::default();
        for i in 0..10 {
            h.set(
                format!("field:{i:02}").as_bytes(),
                format!("v000000000000-{i:02}").as_bytes(),
                limits,
                1,
            );
        }
        let mut d = Dict::new(6);
        let key = [b'h'; 16];
        d.insert(&key, Value::Hash(Box::new(h)), 0, 0);
        let get = |d: &Dict, f: &[u8]| match d.peek(&key).unwrap().value() {
            ValueRef::Hash(h) => h.get(f).map(|v| v.to_vec()),
            _ => panic!("a hash"),
        };
        assert_eq!(d.peek(&key).unwrap().alloc_bytes(), 15 + 16 + 4 + 4 + 260);
        assert_eq!(
            get(&d, b"field:07").as_deref(),
            Some(&b"v000000000000-07"[..])
        );
        {
            let mut e = d.get_mut(&key).unwrap();
            assert!(!e.hash_mut().unwrap().set(b"field:07", b"x", limits, 1));
            assert!(e.hash_mut().unwrap().remove(b"field:00"));
            assert_eq!(e.get().alloc_bytes(), 15 + 16 + 4 + 4 + 260 - 15 - 26);
            assert_eq!(e.value().encoding(), "listpack");
        }
        assert_eq!(get(&d, b"field:07").as_deref(), Some(&b"x"[..]));
        assert_eq!(get(&d, b"field:00"), None);
        d.get_mut(&key)
            .unwrap()
            .hash_mut()
            .unwrap()
            .set(b"long", &[b'l'; 21], limits, 1);
        let e = d.peek(&key).unwrap();
        assert_eq!(e.value().encoding(), "hashtable");
        assert_eq!(e.value().to_value(), e.to_entry().value);
        assert_eq!(get(&d, b"long"), Some(vec![b'l'; 21]));
        assert_eq!(
            get(&d, b"field:09").as_deref(),
            Some(&b"v000000000000-09"[..])
        );
    }

    /// Copy before write holds for packed sets edited in place: the snapshot saves each
    /// set once, with its members when the snapshot began.
    #[test]
    fn a_snapshot_keeps_a_packed_set_as_it_was_before_an_edit() {
        use crate::snapshot::RecordValue;
        let mut d = Dict::new(4);
        for i in 0..200u32 {
            d.insert(&i.to_le_bytes(), small_set(0..i as i64 % 7 + 1), 0, 0);
        }
        d.snap_begin(0);
        let mut saved = HashMap::new();
        let limits = Default::default();
        let mut i = 0u32;
        loop {
            let more = d.snap_step(3);
            for r in std::mem::take(&mut d.snap.saved) {
                let r = r.into_record();
                assert!(saved.insert(r.key, r.value).is_none(), "a key saved twice");
            }
            if !more {
                break;
            }
            // Edits between steps: grow one set, shrink another, convert a third.
            for (k, m) in [(i % 200, "1000"), ((i + 71) % 200, "x")] {
                let mut e = d.get_mut(&k.to_le_bytes()).unwrap();
                e.set_mut().unwrap().add(m.as_bytes(), limits, 1);
            }
            let mut e = d.get_mut(&((i + 13) % 200).to_le_bytes()).unwrap();
            e.set_mut().unwrap().remove(b"0");
            i += 1;
        }
        assert_eq!(saved.len(), 200);
        for i in 0..200u32 {
            let want: Vec<Vec<u8>> = (0..i as i64 % 7 + 1)
                .map(|m| m.to_string().into_bytes())
                .collect();
            assert_eq!(
                saved.get(&i.to_le_bytes()[..]),
                Some(&RecordValue::Set(want)),
                "key {i}"
            );
        }
    }

    #[test]
    fn long_keys_deadlines_and_value_changes() {
        let mut d = Dict::new(3);
        let long = vec![b'x'; 70_000];
        d.insert(&long, Value::from_bytes(b"hello"), 0, 1);
        d.insert(b"", Value::from_bytes(b""), 0, 2);
        assert_eq!(d.peek(&long).unwrap().key(), &long[..]);
        assert_eq!(d.peek(b"").unwrap().value().to_vec(), b"");
        {
            let mut e = d.get_mut(&long).unwrap();
            e.set_expire_at_ms(1234);
            assert_eq!(e.expire_at_ms(), 1234);
            e.set_expire_at_ms(99);
            assert_eq!(e.expire_at_ms(), 99);
            assert_eq!(e.value().to_vec(), b"hello");
            assert_eq!(e.clock(), 1);
            e.set_clock(9);
            e.set_value(Value::from_bytes(&[b'y'; 1000]));
            assert_eq!(e.value().str_len(), 1000);
            assert_eq!(e.expire_at_ms(), 99);
            assert_eq!(e.edit_raw(|v| v.extend_from_slice(b"!!")), 1002);
            assert_eq!(e.value().encoding(), "raw");
            e.set_expire_at_ms(0);
            assert_eq!(e.expire_at_ms(), 0);
            assert_eq!(
                e.value().str_len(),
                1002,
                "the heap value moved with the node"
            );
            assert_eq!(e.clock(), 9);
        }
        let mut e = d.get_mut(b"").unwrap();
        assert_eq!(e.edit_raw(|v| v.extend_from_slice(b"ab")), 2);
        assert_eq!(e.value().to_vec(), b"ab");
        assert_eq!(e.value().encoding(), "raw");
        e.set_value(Value::Int(-5));
        assert_eq!(e.value(), ValueRef::Int(-5));
        let got = d.remove(&long).unwrap();
        assert_eq!(got.value.as_ref().str_len(), 1002);
        assert_eq!(got.clock, Clock::Kept(9));
        assert_eq!(d.delete(b""), Some(false));
        assert!(d.is_empty());
    }

    #[test]
    fn get_live_removes_dead_entries() {
        let mut d = Dict::new(4);
        d.insert(b"a", Value::Int(1), 100, 0);
        d.insert(b"b", Value::Int(2), 0, 0);
        assert!(matches!(
            d.get_live(b"a", |e| e.is_expired(101)),
            Live::Removed
        ));
        assert!(matches!(d.get_live(b"a", |_| false), Live::Missing));
        match d.get_live(b"b", |e| e.is_expired(101)) {
            Live::Found(e) => assert_eq!(e.value(), ValueRef::Int(2)),
            _ => panic!("b is live"),
        }
        assert_eq!(d.len(), 1);
    }

    /// Random operations against a HashMap, through growth, shrinking and every encoding:
    /// the unsafe node code must agree with the model at every step.
    #[test]
    fn random_operations_match_a_model() {
        let mut d = Dict::new(5);
        let mut model: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rng = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..200_000u32 {
            let r = rng();
            let key = format!("k{}", r % 3000).into_bytes();
            let key = if r % 97 == 0 {
                [key, vec![b'L'; 300]].concat()
            } else {
                key
            };
            match (r >> 20) % 8 {
                0..=2 => {
                    let len = [0, 3, 20, 200, 255, 256, 700][(r >> 30) as usize % 7];
                    let v: Vec<u8> = (0..len).map(|i| (i as u8) ^ (step as u8)).collect();
                    let ttl = if r & (1 << 40) != 0 {
                        0
                    } else {
                        1 + (r >> 41) % 1000
                    };
                    let old = d.insert(&key, Value::from_bytes(&v), ttl, 0);
                    let prev = model.insert(key, (v, ttl));
                    assert_eq!(old, prev.map(|p| p.1 != 0));
                }
                3 => {
                    let got = d.remove(&key);
                    let want = model.remove(&key);
                    assert_eq!(got.map(|e| (e.value.into_bytes(), e.expire_at_ms)), want);
                }
                4 => assert_eq!(d.delete(&key), model.remove(&key).map(|p| p.1 != 0)),
                5 => {
                    if let Some(mut e) = d.get_mut(&key) {
                        let m = model.get_mut(&key).unwrap();
                        let add = vec![b'+'; (r >> 33) as usize % 100];
                        assert_eq!(
                            e.edit_raw(|v| v.extend_from_slice(&add)),
                            m.0.len() + add.len()
                        );
                        m.0.extend_from_slice(&add);
                    } else {
                        assert!(!model.contains_key(&key));
                    }
                }
                6 => {
                    if let Some(mut e) = d.get_mut(&key) {
                        let ttl = (r >> 33) % 3;
                        e.set_expire_at_ms(ttl);
                        model.get_mut(&key).unwrap().1 = ttl;
                    }
                }
                _ => {
                    d.rehash_step(1);
                }
            }
            if step % 10_000 == 0 {
                assert_eq!(d.len(), model.len());
                for (k, (v, ttl)) in &model {
                    let e = d.peek(k).expect("model key present");
                    assert_eq!(e.key(), &k[..]);
                    assert_eq!(e.value().to_vec(), *v);
                    assert_eq!(e.expire_at_ms(), *ttl);
                }
            }
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            cursor = d.scan(cursor, |k, _| {
                seen.insert(k.to_vec());
            });
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), model.len());
        while d.free_step(7) {}
        assert!(d.is_empty());
        assert_eq!(d.buckets(), 0);
    }

    #[test]
    fn large_values_and_arrays_go_to_the_graveyard() {
        let mut d = Dict::new(6);
        d.insert(b"big", Value::from_bytes(&vec![b'z'; 3 << 20]), 0, 0);
        d.insert(b"big", Value::Int(1), 0, 0);
        assert_eq!(d.graveyard().len(), 1, "the overwritten 3 MB value");
        d.insert(b"big2", Value::from_bytes(&vec![b'z'; 2 << 20]), 0, 0);
        d.delete(b"big2");
        assert_eq!(d.graveyard().len(), 2);
        while d.graveyard().step(1) {}
        assert!(d.graveyard().is_empty());
        // A table of 2^17 buckets (1 MB) leaves its array behind when it grows at 2^18 keys.
        for i in 0..(1u32 << 18) + 1 {
            int(&mut d, &i.to_le_bytes(), 0);
        }
        while d.rehash_step(1000) {}
        assert_eq!(d.graveyard().len(), 1, "the 2^17-bucket array");
    }

    /// SCAN's guarantee: every key present for the whole walk is returned, even when the
    /// table grows and shrinks between calls.
    #[test]
    fn scan_survives_resizing() {
        let mut d = Dict::new(3);
        for i in 0..1000u32 {
            int(&mut d, &i.to_le_bytes(), 0);
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
                    int(&mut d, &(100_000 + j + round * 10_000).to_le_bytes(), 0);
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
            int(&mut d, &i.to_le_bytes(), i as i64);
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
            let e = d.random(&mut rng).unwrap();
            let ValueRef::Int(v) = e.value() else {
                panic!("ints only")
            };
            assert_eq!(u32::from_le_bytes(e.key().try_into().unwrap()) as i64, v);
            seen.insert(v);
        }
        assert!(seen.len() > 40, "random covers most keys: {}", seen.len());
    }
}
