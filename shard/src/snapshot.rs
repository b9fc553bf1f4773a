//! The snapshot file format: one file per shard, every byte checked on load.
//!
//! ```text
//!  header   "PCSNAP\0\0" | version u32 | shard u32 | shards u32 | 0 u32 | created_ms u64 | xxh3 u64
//!  block*   "BLK\0" | stored_len u32 | records u32 | raw_len u32 | xxh3 u64 | payload
//!  end      "END\0" | blocks u32 | records u64 | keys u64 × 16 (by database) | xxh3 u64
//! ```
//!
//! - All integers little-endian. Each checksum is xxh3-64 over every byte of its section
//!   before the checksum (a block's covers its header fields and its stored payload), so any
//!   flipped byte anywhere is caught and reported with the block and the file offset, before
//!   anything is decompressed or parsed.
//! - A block's payload holds up to [`BLOCK_TARGET_BYTES`] of records (one record may exceed
//!   it: a 512 MB string is one block). `raw_len` 0: the payload is stored as is; otherwise
//!   it is LZ4-compressed (a block, no frame) and `raw_len` (at most [`BLOCK_MAX_BYTES`]) is
//!   its size once decompressed, which must come out exact. A block is compressed only when
//!   that saves at least 1/32 of it.
//! - The (decompressed) payload is an rkyv archive of [`Block5`], validated (bytecheck)
//!   before any field is read: the file is untrusted input. Its two byte columns hold the
//!   records, one after the other:
//!
//! ```text
//!  meta   per record: flags u8 | [db u8] | key_len | [deadline] | value
//!           flags: bits 0–3 the kind (RecordValue's variant index), 0x10 raw string,
//!                  0x20 a deadline follows, 0x40 a database byte follows; 0x80 is zero
//!           value: Int: zigzag varint | Str: len | a collection: count, then per element
//!                  its len (a hash: field len, value len)
//!  data   the bytes those lengths measure, in the same order (a sorted set's element: its
//!         member, then its score's bits as u64)
//! ```
//!
//!   Lengths, counts and deadlines (Unix ms) are LEB128 varints of at most 10 bytes. The
//!   database is written only where it changes (each block starts at 0), the deadline only
//!   when there is one. Every length is checked against what is left of its column before
//!   anything is sliced, and a count is consumed element by element (each costs at least
//!   one meta byte), so no length in a file makes the reader allocate or loop past its
//!   bytes. Both columns must be used up exactly by the block's record count.
//! - A record holds the database, the key, the deadline and the value; a value's kind is
//!   one of [`RecordValue`]'s variants (readers refuse kinds they do not know).
//! - The end marker's counts must match what was read (the keys per database count the
//!   records that begin a key, not the later parts of a large collection), and nothing may
//!   follow it, so a truncated file never loads as if whole. A loader reads the per-database
//!   key counts first ([`Reader::key_counts`]) and sizes its tables once: loading rehashes
//!   nothing.
//!
//! Why version 5 looks like this (format 4 was an rkyv `Vec<Record>`, ~40 bytes of framing
//! per record: vector headers, a u64 deadline, the enum tag, alignment; 10M keys of 16-byte
//! keys and 32-byte values made 840 MB where Redis's RDB takes 487 MB):
//! - Columns: the per-record framing of the bench's data is 3 meta bytes (flags, key len,
//!   value len), 51 bytes a record before compression, as Redis's RDB. Kept apart from the
//!   data, the meta column repeats itself and LZ4 removes most of it even when the data is
//!   random, so the file beats the RDB without relying on the values compressing.
//! - LZ4 (`lz4_flex`, pure Rust, safe code only) rather than zstd or LZF: it decompresses
//!   at memory speed, so loading gets faster with it rather than slower; blocks that do
//!   not shrink stay as they are. Measured at 1M keys of 16-byte keys and 32-byte values
//!   (loadtest/results/2026-12-02/snapshot-v5.md): the load generator's values (all the
//!   same) 7.2 MB, random values 40.0 MB, against 83.9 MB in format 4 and 48.6 MB in
//!   Redis's RDB; loading took 0.45–0.69 CPU s against 0.77–1.16 (format 4) and Redis's
//!   0.85–1.30; saving about as long as before (LZ4 is ~5 % of it).
//! - Rejected: front-coded keys (the walk's order is the hash table's, so neighbours rarely
//!   share a prefix, and LZ4 finds the shared ones anywhere in its 64 KB window), deadlines
//!   as deltas (not measured: the absolute varint is already 6 bytes where Redis writes 9),
//!   zstd (smaller files, but several times slower to decompress than LZ4).
//! - rkyv stays the container (bytecheck validation of the archive), but it archives two
//!   byte vectors rather than a vector of records: its framing per record is what made
//!   format 4 large.
//! - Files of versions 1 to 4 (an rkyv archive of [`Record`]s in each block, `raw_len` 0,
//!   the 24-byte end marker with no per-database counts) still load: each block is
//!   validated as before, then re-encoded into the columns, so everything after the reader
//!   handles one form.
//!
//! # Large hashes, sets and sorted sets: a walk of their own table
//!
//! A snapshot saves a key when its walk reaches it or before a write changes it
//! (copy-before-write, [`crate::dict::Snap`]). A collection is one key, so saving a hash,
//! set or sorted set of 1M members by copying it made one allocation per member on the
//! request path: the first HSET after BGSAVE took 0.67 s, an SADD 0.27 s (Redis, which
//! forks, 14–148 ms). Now a collection of more than [`WALK_MIN_MEMBERS`] members in a table
//! encoding (`hashtable`, `skiplist`: all three keep their members in a [`Dict`]) is saved
//! by a walk of its own table ([`Walk`]), the keyspace's scheme one level down: beginning it
//! flips the table's epoch bit (O(1)); each snapshot step walks [`WALK_STEP_BUCKETS`]
//! buckets at a time with the table's reverse-binary cursor, which survives growth and
//! shrinking as SCAN's does, and writes what it saved as the head record and `*More` parts
//! of about [`PART_BYTES`], up to [`STEP_BYTES`] a step; a write to a member not yet saved
//! saves that one member first (one entry in the walk's buffer), and members added after
//! the start carry the new bit and are skipped. The file format is unchanged: the
//! `HashMore`/`SetMore`/`ZSetMore` records large collections were already split into
//! (since versions 3 and 4) now carry members in table order; a sorted set's loader sorts
//! them into its tree as it always did.
//!
//! Chosen over the other design, a table of `Arc`-shared segments (a snapshot holds the
//! segments, a write copies the one it changes, as lists hold their nodes since the
//! previous change): that one puts an indirection on every HGET/SISMEMBER, copies up to a
//! segment (hundreds of members) on a write, adds a reference count and segment header per
//! few hundred members, and breaks the sorted set's tree, which holds its members' table
//! nodes by address (a copied segment would move them). The walk changes nothing outside a
//! snapshot: same nodes, same lookups, 8 more bytes per collection table (the walk's
//! pointer), and the per-write cost during one is the check the keyspace already made
//! (the node's epoch bit) plus, for a pending member, one copy of that member. Its costs:
//! - The table must not move while walked (the walk keeps its address). Freeing a walked
//!   collection (DEL, an overwrite, expiry, FLUSHDB) gives its table to the walk in O(1),
//!   and the snapshot frees it in slices once written. A collection leaving its table
//!   whole (MOVE, RENAME: the table may go to another shard) has its walk finished first:
//!   O(members) on those commands only, as the old copy was.
//! - A sorted set is loaded from members in table order rather than in score order (its
//!   tree's leaves fill 50–100 % instead of fully), as it is after random ZADDs.
//!
//! Measured at 1M members (loadtest/results/2026-12-03/bgsave-hash-set.md, base and branch
//! beside Redis in the same minutes, on a loaded VM): the slowest write round trip after
//! BGSAVE fell from 362–442 ms (hash), 220–235 (set) and 105–108 (sorted set) to 17–37 ms,
//! the slowest PING during the walk from 157–613 ms to 18–26, with no command of 1 ms or
//! more in the slow log but one SADD of 2.3 ms.
//!
//! [`WALK_MIN_MEMBERS`]: crate::dict::WALK_MIN_MEMBERS
//!
//! This module is pure (bytes in, bytes out); the server writes and reads the files.

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use std::rc::Rc;

use crate::dict::{Dict, Members, Walk};
use crate::types::list::HeldNodes;
use crate::value::{Value, ValueRef};
use crate::DB_COUNT;

pub const MAGIC: &[u8; 8] = b"PCSNAP\0\0";
pub const VERSION: u32 = 5;
/// The oldest format version this build still reads (version 1 had strings only, version 2
/// added hashes and sets, 3 lists, 4 sorted sets; each one's records are a subset of the
/// next one's; 5 stores them in columns, see above).
pub const MIN_VERSION: u32 = 1;
const BLOCK_TAG: &[u8; 4] = b"BLK\0";
const END_TAG: &[u8; 4] = b"END\0";
pub const HEADER_BYTES: usize = 40;
const BLOCK_HEADER_BYTES: usize = 24;
/// The end marker of versions 1 to 4.
pub const END_BYTES_V4: usize = 24;
/// The end marker of version 5: the version 4 one with the keys of each database.
pub const END_BYTES: usize = 16 + 8 * DB_COUNT + 8;
/// A block is closed once its records reach this size.
pub const BLOCK_TARGET_BYTES: usize = 256 << 10;
/// The largest payload a reader accepts: a 512 MB value and its framing.
pub const BLOCK_MAX_BYTES: usize = (512 << 20) + (1 << 20);

/// A value as stored in a snapshot. Variants are only ever appended (the archived tag is
/// the variant's index), so older files keep loading.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum RecordValue {
    Int(i64),
    Str {
        data: Vec<u8>,
        raw: bool,
    },
    /// A hash's fields and values (since version 2).
    Hash(Vec<Pair>),
    /// A set's members (since version 2).
    Set(Vec<Vec<u8>>),
    /// A list's nodes, left to right, each a run of entries in the list node encoding
    /// (`crate::types::list`, checked on read) (since version 3). A snapshot writes these
    /// from the nodes it holds ([`Pending`]), without building this value.
    List(Vec<Vec<u8>>),
    /// More nodes of the list the previous record of the same key began: a long list is
    /// written in parts of about [`PART_BYTES`], a part or two per snapshot step, so no step
    /// serializes a whole 100 MB list (since version 3).
    ListMore(Vec<Vec<u8>>),
    /// More fields of the hash the previous record of the same key began (a large hash is
    /// written in parts, as a list is) (since version 3).
    HashMore(Vec<Pair>),
    /// More members of the set the previous record of the same key began (since version 3).
    SetMore(Vec<Vec<u8>>),
    /// A sorted set's elements in order (since version 4).
    ZSet(Vec<ZElem>),
    /// More elements of the sorted set the previous record of the same key began (since
    /// version 4).
    ZSetMore(Vec<ZElem>),
}

/// A sorted set's element: the member and its score's bits (`f64::to_bits`; a NaN from a
/// crafted file is skipped on load).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ZElem {
    pub member: Vec<u8>,
    pub score_bits: u64,
}

/// The size of the parts a large collection is written in ([`RecordValue::ListMore`],
/// [`RecordValue::HashMore`], [`RecordValue::SetMore`], [`RecordValue::ZSetMore`]).
pub const PART_BYTES: usize = 1 << 20;

/// Record bytes one snapshot step frames at most, beyond the walk's own: the rest of a long
/// collection's parts wait for the next step.
const STEP_BYTES: usize = 2 << 20;

/// A field and its value.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub field: Vec<u8>,
    pub value: Vec<u8>,
}

/// One key.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub db: u8,
    pub key: Vec<u8>,
    /// Unix milliseconds; 0 means no deadline.
    pub expire_at_ms: u64,
    pub value: RecordValue,
}

#[derive(Archive, Serialize, Deserialize, Debug, Default)]
struct Block {
    records: Vec<Record>,
}

/// A key saved for the snapshot, waiting for the block builder: a record built whole, or a
/// list held by reference.
///
/// Saving a list (before a write to it, or when the walk reaches it) holds its nodes
/// ([`List::hold_nodes`]): pointer work, no bytes copied, and a later write to the list
/// copies only the node it changes. The builder reads the held nodes when it frames the
/// list, a part of about [`PART_BYTES`] at a time, a few parts per step, and lets each part's
/// nodes go once written. Neither the save nor a step touches more than a bounded number of
/// bytes, where building a [`RecordValue::List`] copied all of a list's bytes at once (a
/// 10M-element list: 180 MB, a ~175 ms stall). The file is the same either way: a head
/// [`RecordValue::List`] record, then [`RecordValue::ListMore`] ones.
///
/// [`List::hold_nodes`]: crate::types::list::List::hold_nodes
#[derive(Debug)]
pub enum Pending {
    Built(Record),
    List {
        db: u8,
        key: Vec<u8>,
        expire_at_ms: u64,
        nodes: HeldNodes,
        /// Whether its head record is written (the rest go as `ListMore`).
        begun: bool,
    },
    /// A large hash, set or sorted set saved member by member by a walk of its own table.
    Members(HeldMembers),
}

/// A large hash, set or sorted set (more than [`WALK_MIN_MEMBERS`] members, in a table
/// encoding) being saved by a walk of its table ([`Walk`]): the walk saves its members a
/// bounded number of buckets per step, and a write saves the one member it changes first,
/// so neither copies the collection whole. The builder writes the saved members as the
/// collection's head record (`Hash`, `Set`, `ZSet`) and `*More` parts of about
/// [`PART_BYTES`], as it writes a long list; the file is the same as before.
///
/// [`WALK_MIN_MEMBERS`]: crate::dict::WALK_MIN_MEMBERS
#[derive(Debug)]
pub struct HeldMembers {
    db: u8,
    key: Vec<u8>,
    expire_at_ms: u64,
    /// The head record's kind ([`KIND_HASH`], [`KIND_SET`] or [`KIND_ZSET`]).
    kind: u8,
    walk: Rc<Walk>,
    /// Whether the head record is written.
    begun: bool,
}

impl Drop for HeldMembers {
    fn drop(&mut self) {
        // Once written, the walk is finished already; this ends one abandoned with the
        // shard (the table forgets it, an owned table is freed).
        drop(self.walk.finish());
    }
}

impl std::fmt::Debug for Walk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Walk({} bytes saved)", self.members().unread_bytes())
    }
}

impl Pending {
    /// A key's value as the snapshot saves it: a list is held, anything else built.
    pub fn save(db: u8, key: &[u8], expire_at_ms: u64, v: ValueRef) -> Pending {
        match v {
            ValueRef::List(l) => Pending::List {
                db,
                key: key.to_vec(),
                expire_at_ms,
                nodes: l.hold_nodes(),
                begun: false,
            },
            v => Pending::Built(Record {
                db,
                key: key.to_vec(),
                expire_at_ms,
                value: RecordValue::from_ref(v),
            }),
        }
    }

    /// A large collection saved by a walk of its table (see [`HeldMembers`]), which
    /// [`Dict::walk_begin`](crate::dict) has just begun; `v` is the collection.
    pub fn members(db: u8, key: &[u8], expire_at_ms: u64, v: ValueRef, walk: Rc<Walk>) -> Pending {
        let kind = match v {
            ValueRef::Hash(_) => KIND_HASH,
            ValueRef::Set(_) => KIND_SET,
            _ => KIND_ZSET,
        };
        Pending::Members(HeldMembers {
            db,
            key: key.to_vec(),
            expire_at_ms,
            kind,
            walk,
            begun: false,
        })
    }

    /// The whole record (tests; a held list's bytes are copied here, a walked collection
    /// is walked to its end).
    pub fn into_record(self) -> Record {
        match self {
            Pending::Built(r) => r,
            Pending::Members(m) => {
                while m.walk.step(1 << 16) {}
                let mut w = m.walk.members();
                let (n, bytes) = w.part(usize::MAX);
                let items: Vec<(Vec<u8>, Vec<u8>)> =
                    w.iter(n).map(|(a, b)| (a.to_vec(), b.to_vec())).collect();
                w.consume(bytes);
                drop(w);
                let more = m.begun;
                let value = match m.kind {
                    KIND_HASH => {
                        let p = items
                            .into_iter()
                            .map(|(field, value)| Pair { field, value })
                            .collect();
                        if more {
                            RecordValue::HashMore(p)
                        } else {
                            RecordValue::Hash(p)
                        }
                    }
                    KIND_SET => {
                        let m = items.into_iter().map(|(m, _)| m).collect();
                        if more {
                            RecordValue::SetMore(m)
                        } else {
                            RecordValue::Set(m)
                        }
                    }
                    _ => {
                        let e = items
                            .into_iter()
                            .map(|(member, s)| ZElem {
                                member,
                                score_bits: score_bits_of(&s),
                            })
                            .collect();
                        if more {
                            RecordValue::ZSetMore(e)
                        } else {
                            RecordValue::ZSet(e)
                        }
                    }
                };
                Record {
                    db: m.db,
                    key: m.key.clone(),
                    expire_at_ms: m.expire_at_ms,
                    value,
                }
            }
            Pending::List {
                db,
                key,
                expire_at_ms,
                nodes,
                begun,
            } => {
                let nodes = nodes.iter().map(|n| n.to_vec()).collect();
                Record {
                    db,
                    key,
                    expire_at_ms,
                    value: if begun {
                        RecordValue::ListMore(nodes)
                    } else {
                        RecordValue::List(nodes)
                    },
                }
            }
        }
    }

    /// Whether this is the rest of a collection whose head record is written.
    fn is_rest(&self) -> bool {
        match self {
            Pending::Built(r) => is_more(r.value.kind()),
            Pending::List { begun, .. } => *begun,
            // Begun or not, a walk waits for the next step once the budget is spent (its
            // head record may have to wait for a member to be found).
            Pending::Members(_) => true,
        }
    }
}

/// A sorted set member's score as [`Members`] holds it: its 8 bits.
fn score_bits_of(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or_default())
}

impl RecordValue {
    pub fn from_value(v: &Value) -> Self {
        Self::from_ref(v.as_ref())
    }

    pub fn from_ref(v: crate::value::ValueRef) -> Self {
        match v {
            crate::value::ValueRef::Int(i) => RecordValue::Int(i),
            crate::value::ValueRef::Str { data, raw } => RecordValue::Str {
                data: data.to_vec(),
                raw,
            },
            crate::value::ValueRef::Hash(h) => {
                let mut pairs = Vec::with_capacity(h.len());
                h.for_each(|f, v| {
                    pairs.push(Pair {
                        field: f.to_vec(),
                        value: v.to_vec(),
                    })
                });
                RecordValue::Hash(pairs)
            }
            crate::value::ValueRef::Set(s) => RecordValue::Set(s.members()),
            crate::value::ValueRef::List(l) => RecordValue::List(l.raw_nodes()),
            crate::value::ValueRef::ZSet(z) => {
                let mut elems = Vec::with_capacity(z.len());
                z.for_each(|s, m| {
                    elems.push(ZElem {
                        member: m.to_vec(),
                        score_bits: s.to_bits(),
                    })
                });
                RecordValue::ZSet(elems)
            }
        }
    }

    /// The record's kind (its variant index, the flags' low bits in a version 5 block).
    fn kind(&self) -> u8 {
        match self {
            RecordValue::Int(_) => KIND_INT,
            RecordValue::Str { .. } => KIND_STR,
            RecordValue::Hash(_) => KIND_HASH,
            RecordValue::Set(_) => KIND_SET,
            RecordValue::List(_) => KIND_LIST,
            RecordValue::ListMore(_) => KIND_LIST_MORE,
            RecordValue::HashMore(_) => KIND_HASH_MORE,
            RecordValue::SetMore(_) => KIND_SET_MORE,
            RecordValue::ZSet(_) => KIND_ZSET,
            RecordValue::ZSetMore(_) => KIND_ZSET_MORE,
        }
    }

    /// Bytes the record's value adds to a block (for closing blocks near their target).
    fn payload_bytes(&self) -> usize {
        match self {
            RecordValue::Int(_) => 8,
            RecordValue::Str { data, .. } => data.len(),
            RecordValue::Hash(pairs) | RecordValue::HashMore(pairs) => pairs
                .iter()
                .map(|p| p.field.len() + p.value.len() + 16)
                .sum(),
            RecordValue::Set(m)
            | RecordValue::SetMore(m)
            | RecordValue::List(m)
            | RecordValue::ListMore(m) => m.iter().map(|m| m.len() + 8).sum(),
            RecordValue::ZSet(e) | RecordValue::ZSetMore(e) => {
                e.iter().map(|e| e.member.len() + 16).sum()
            }
        }
    }
}

/// A version 5 block's payload: the two columns of its records (see the module header).
#[derive(Archive, Serialize, Deserialize, Debug, Default)]
pub struct Block5 {
    meta: Vec<u8>,
    data: Vec<u8>,
}

// A record's kind: the low 4 bits of its flags, and [`RecordValue`]'s variant index.
const KIND_INT: u8 = 0;
const KIND_STR: u8 = 1;
const KIND_HASH: u8 = 2;
const KIND_SET: u8 = 3;
const KIND_LIST: u8 = 4;
const KIND_LIST_MORE: u8 = 5;
const KIND_HASH_MORE: u8 = 6;
const KIND_SET_MORE: u8 = 7;
const KIND_ZSET: u8 = 8;
const KIND_ZSET_MORE: u8 = 9;
const FLAG_RAW: u8 = 0x10;
const FLAG_DEADLINE: u8 = 0x20;
const FLAG_DB: u8 = 0x40;

/// One element of a collection, as the encoder takes it.
enum Item<'a> {
    One(&'a [u8]),
    Pair(&'a [u8], &'a [u8]),
    Scored(&'a [u8], u64),
}

/// The columns of the block being built.
#[derive(Default)]
struct Columns {
    meta: Vec<u8>,
    data: Vec<u8>,
    /// The database the last record named (0 at a block's start).
    db: u8,
    records: u32,
    /// Records that begin a key, by database (the end marker's counts).
    keys: [u64; DB_COUNT],
}

impl Columns {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.meta.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.meta.push(v as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.data.extend_from_slice(b);
    }

    fn head(&mut self, kind: u8, raw: bool, db: u8, key: &[u8], expire_at_ms: u64) {
        let mut flags = kind;
        if raw {
            flags |= FLAG_RAW;
        }
        if expire_at_ms != 0 {
            flags |= FLAG_DEADLINE;
        }
        if db != self.db {
            flags |= FLAG_DB;
        }
        self.meta.push(flags);
        if db != self.db {
            self.meta.push(db);
            self.db = db;
        }
        self.bytes(key);
        if expire_at_ms != 0 {
            self.varint(expire_at_ms);
        }
        self.records += 1;
        if !is_more(kind) {
            // A database out of range only comes from a crafted old file, which the
            // validation of these columns then refuses.
            if let Some(n) = self.keys.get_mut(db as usize) {
                *n += 1;
            }
        }
    }

    fn int(&mut self, i: i64) {
        self.varint(((i << 1) ^ (i >> 63)) as u64);
    }

    fn items<'a>(&mut self, n: usize, items: impl Iterator<Item = Item<'a>>) {
        self.varint(n as u64);
        for it in items {
            match it {
                Item::One(b) => self.bytes(b),
                Item::Pair(f, v) => {
                    self.bytes(f);
                    self.bytes(v);
                }
                Item::Scored(m, bits) => {
                    self.bytes(m);
                    self.data.extend_from_slice(&bits.to_le_bytes());
                }
            }
        }
    }

    fn record(&mut self, r: &Record) {
        let raw = matches!(r.value, RecordValue::Str { raw: true, .. });
        self.head(r.value.kind(), raw, r.db, &r.key, r.expire_at_ms);
        match &r.value {
            RecordValue::Int(i) => self.int(*i),
            RecordValue::Str { data, .. } => self.bytes(data),
            RecordValue::Hash(p) | RecordValue::HashMore(p) => {
                self.items(p.len(), p.iter().map(|p| Item::Pair(&p.field, &p.value)))
            }
            RecordValue::Set(m)
            | RecordValue::SetMore(m)
            | RecordValue::List(m)
            | RecordValue::ListMore(m) => self.items(m.len(), m.iter().map(|m| Item::One(m))),
            RecordValue::ZSet(e) | RecordValue::ZSetMore(e) => self.items(
                e.len(),
                e.iter().map(|e| Item::Scored(&e.member, e.score_bits)),
            ),
        }
    }

    /// A record of a version 1–4 block (validated by rkyv), into the columns.
    fn archived(&mut self, r: &ArchivedRecord) {
        use ArchivedRecordValue as A;
        let (kind, raw) = match &r.value {
            A::Int(_) => (KIND_INT, false),
            A::Str { raw, .. } => (KIND_STR, *raw),
            A::Hash(_) => (KIND_HASH, false),
            A::Set(_) => (KIND_SET, false),
            A::List(_) => (KIND_LIST, false),
            A::ListMore(_) => (KIND_LIST_MORE, false),
            A::HashMore(_) => (KIND_HASH_MORE, false),
            A::SetMore(_) => (KIND_SET_MORE, false),
            A::ZSet(_) => (KIND_ZSET, false),
            A::ZSetMore(_) => (KIND_ZSET_MORE, false),
        };
        let at = r.expire_at_ms.to_native();
        self.head(kind, raw, r.db, r.key.as_slice(), at);
        match &r.value {
            A::Int(i) => self.int(i.to_native()),
            A::Str { data, .. } => self.bytes(data.as_slice()),
            A::Hash(p) | A::HashMore(p) => self.items(
                p.len(),
                p.iter()
                    .map(|p| Item::Pair(p.field.as_slice(), p.value.as_slice())),
            ),
            A::Set(m) | A::SetMore(m) | A::List(m) | A::ListMore(m) => {
                self.items(m.len(), m.iter().map(|m| Item::One(m.as_slice())))
            }
            A::ZSet(e) | A::ZSetMore(e) => self.items(
                e.len(),
                e.iter()
                    .map(|e| Item::Scored(e.member.as_slice(), e.score_bits.to_native())),
            ),
        }
    }

    fn len(&self) -> usize {
        self.meta.len() + self.data.len()
    }
}

fn is_more(kind: u8) -> bool {
    matches!(
        kind,
        KIND_LIST_MORE | KIND_HASH_MORE | KIND_SET_MORE | KIND_ZSET_MORE
    )
}

/// Reads the columns. Every read is checked; a fault is a short reason (the reader adds
/// the block and offset).
#[derive(Clone, Copy)]
struct Cursor<'a> {
    meta: &'a [u8],
    data: &'a [u8],
    db: u8,
}

type Parse<T> = Result<T, &'static str>;

impl<'a> Cursor<'a> {
    fn new(meta: &'a [u8], data: &'a [u8]) -> Self {
        Cursor { meta, data, db: 0 }
    }

    fn byte(&mut self) -> Parse<u8> {
        let (&b, rest) = self.meta.split_first().ok_or("record lengths end early")?;
        self.meta = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Parse<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("a varint overflows 64 bits")
    }

    fn take(&mut self, n: u64) -> Parse<&'a [u8]> {
        if n > self.data.len() as u64 {
            return Err("a length runs past the end of the data");
        }
        let (a, rest) = self.data.split_at(n as usize);
        self.data = rest;
        Ok(a)
    }

    fn bytes(&mut self) -> Parse<&'a [u8]> {
        let n = self.varint()?;
        self.take(n)
    }

    fn record(&mut self) -> Parse<RecordRef<'a>> {
        let flags = self.byte()?;
        let kind = flags & 0x0f;
        if flags & 0x80 != 0 || kind > KIND_ZSET_MORE || (flags & FLAG_RAW != 0 && kind != KIND_STR)
        {
            return Err("unknown record flags");
        }
        if flags & FLAG_DB != 0 {
            self.db = self.byte()?;
            if self.db as usize >= DB_COUNT {
                return Err("database out of range");
            }
        }
        let key = self.bytes()?;
        let expire_at_ms = if flags & FLAG_DEADLINE != 0 {
            match self.varint()? {
                0 => return Err("a deadline of 0"),
                at => at,
            }
        } else {
            0
        };
        let value = match kind {
            KIND_INT => {
                let z = self.varint()?;
                ValueView::Int((z >> 1) as i64 ^ -((z & 1) as i64))
            }
            KIND_STR => ValueView::Str {
                data: self.bytes()?,
                raw: flags & FLAG_RAW != 0,
            },
            KIND_HASH => ValueView::Hash(self.items(Shape::Pair)?),
            KIND_HASH_MORE => ValueView::HashMore(self.items(Shape::Pair)?),
            KIND_SET => ValueView::Set(self.items(Shape::One)?),
            KIND_SET_MORE => ValueView::SetMore(self.items(Shape::One)?),
            KIND_LIST => ValueView::List(self.items(Shape::One)?),
            KIND_LIST_MORE => ValueView::ListMore(self.items(Shape::One)?),
            KIND_ZSET => ValueView::ZSet(self.items(Shape::Scored)?),
            _ => ValueView::ZSetMore(self.items(Shape::Scored)?),
        };
        Ok(RecordRef {
            db: self.db,
            key,
            expire_at_ms,
            value,
        })
    }

    /// A collection's elements: checked and stepped over here (each one costs at least a
    /// meta byte, so a count from a file cannot loop past the column), read again by
    /// [`Items`].
    fn items(&mut self, shape: Shape) -> Parse<Items<'a>> {
        let n = self.varint()?;
        let start = *self;
        for _ in 0..n {
            self.element(shape)?;
        }
        let meta = &start.meta[..start.meta.len() - self.meta.len()];
        let data = &start.data[..start.data.len() - self.data.len()];
        Ok(Items {
            n,
            at: Cursor::new(meta, data),
        })
    }

    fn element(&mut self, shape: Shape) -> Parse<(&'a [u8], &'a [u8])> {
        let a = self.bytes()?;
        let b = match shape {
            Shape::One => &[][..],
            Shape::Pair => self.bytes()?,
            Shape::Scored => self.take(8)?,
        };
        Ok((a, b))
    }
}

#[derive(Clone, Copy)]
enum Shape {
    One,
    Pair,
    Scored,
}

/// A collection's elements in a block (validated when the block was read).
#[derive(Clone, Copy)]
pub struct Items<'a> {
    n: u64,
    at: Cursor<'a>,
}

impl<'a> Items<'a> {
    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn walk(&self, shape: Shape) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut at = self.at;
        (0..self.n).map_while(move |_| at.element(shape).ok())
    }

    /// A set's members, or a list's nodes.
    pub fn members(&self) -> impl Iterator<Item = &'a [u8]> {
        self.walk(Shape::One).map(|(m, _)| m)
    }

    /// A hash's fields and values.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.walk(Shape::Pair)
    }

    /// A sorted set's members and their scores' bits.
    pub fn scored(&self) -> impl Iterator<Item = (&'a [u8], u64)> {
        self.walk(Shape::Scored).map(|(m, s)| {
            let bits: [u8; 8] = s.try_into().unwrap_or_default();
            (m, u64::from_le_bytes(bits))
        })
    }
}

impl std::fmt::Debug for Items<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Items({})", self.n)
    }
}

/// A record as a block holds it: borrowed from the block.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub db: u8,
    pub key: &'a [u8],
    /// Unix milliseconds; 0 means no deadline.
    pub expire_at_ms: u64,
    pub value: ValueView<'a>,
}

/// A record's value, borrowed from its block; the variants are [`RecordValue`]'s.
#[derive(Clone, Copy, Debug)]
pub enum ValueView<'a> {
    Int(i64),
    Str { data: &'a [u8], raw: bool },
    Hash(Items<'a>),
    Set(Items<'a>),
    List(Items<'a>),
    ListMore(Items<'a>),
    HashMore(Items<'a>),
    SetMore(Items<'a>),
    ZSet(Items<'a>),
    ZSetMore(Items<'a>),
}

impl<'a> RecordRef<'a> {
    /// An owned copy (tests, tools).
    pub fn to_record(&self) -> Record {
        let one = |i: &Items| i.members().map(<[u8]>::to_vec).collect::<Vec<_>>();
        let pairs = |i: &Items| {
            i.pairs()
                .map(|(f, v)| Pair {
                    field: f.to_vec(),
                    value: v.to_vec(),
                })
                .collect::<Vec<_>>()
        };
        let scored = |i: &Items| {
            i.scored()
                .map(|(m, score_bits)| ZElem {
                    member: m.to_vec(),
                    score_bits,
                })
                .collect::<Vec<_>>()
        };
        let value = match &self.value {
            ValueView::Int(i) => RecordValue::Int(*i),
            ValueView::Str { data, raw } => RecordValue::Str {
                data: data.to_vec(),
                raw: *raw,
            },
            ValueView::Hash(i) => RecordValue::Hash(pairs(i)),
            ValueView::HashMore(i) => RecordValue::HashMore(pairs(i)),
            ValueView::Set(i) => RecordValue::Set(one(i)),
            ValueView::SetMore(i) => RecordValue::SetMore(one(i)),
            ValueView::List(i) => RecordValue::List(one(i)),
            ValueView::ListMore(i) => RecordValue::ListMore(one(i)),
            ValueView::ZSet(i) => RecordValue::ZSet(scored(i)),
            ValueView::ZSetMore(i) => RecordValue::ZSetMore(scored(i)),
        };
        Record {
            db: self.db,
            key: self.key.to_vec(),
            expire_at_ms: self.expire_at_ms,
            value,
        }
    }
}

impl ValueView<'_> {
    /// True for the later parts of a large collection.
    pub fn is_more(&self) -> bool {
        matches!(
            self,
            ValueView::ListMore(_)
                | ValueView::HashMore(_)
                | ValueView::SetMore(_)
                | ValueView::ZSetMore(_)
        )
    }

    /// The value for the table, with the default encoding limits (tests, tools).
    pub fn to_value(&self) -> Value {
        self.to_value_with(&crate::ShardConfig::default(), 0x5EED)
    }

    /// The value for the table: collections in the encodings `config`'s limits call for,
    /// their tables keyed by `seed`.
    pub fn to_value_with(&self, config: &crate::ShardConfig, seed: u64) -> Value {
        match self {
            ValueView::Int(i) => Value::Int(*i),
            ValueView::Str { data, raw } => Value::Str {
                data: data.to_vec(),
                raw: *raw,
            },
            ValueView::Hash(items) | ValueView::HashMore(items) => Value::Hash(Box::new(
                crate::types::hash::Hash::from_pairs(items.pairs(), config.hash_limits, seed),
            )),
            ValueView::Set(items) | ValueView::SetMore(items) => Value::Set(Box::new(
                crate::types::set::Set::from_members(items.members(), config.set_limits, seed),
            )),
            ValueView::ZSet(items) | ValueView::ZSetMore(items) => {
                // Only a crafted file repeats a member or holds a NaN: the last score of a
                // member wins, NaNs are skipped.
                let mut seen: std::collections::HashMap<&[u8], f64> =
                    std::collections::HashMap::with_capacity(items.len());
                let mut order: Vec<&[u8]> = Vec::with_capacity(items.len());
                for (m, bits) in items.scored() {
                    let s = f64::from_bits(bits);
                    if s.is_nan() {
                        continue;
                    }
                    if seen.insert(m, s).is_none() {
                        order.push(m);
                    }
                }
                Value::ZSet(Box::new(crate::types::zset::ZSet::from_elems(
                    order.iter().map(|m| (seen[m], *m)),
                    config.zset_limits,
                    seed,
                )))
            }
            // The reader checked every node (`Reader::next_block`); a node that still fails
            // gives an empty list, which the loader skips.
            ValueView::List(nodes) | ValueView::ListMore(nodes) => Value::List(Box::new(
                crate::types::list::List::from_raw_nodes(nodes.members(), config.list_limits)
                    .unwrap_or_default(),
            )),
        }
    }
}

/// A block's records, in order.
pub struct Records<'a> {
    at: Cursor<'a>,
    left: u32,
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The block was validated whole: a fault here cannot happen, and would end the
        // block early rather than panic.
        self.at.record().ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Records<'_> {}

/// The file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub shard: u32,
    pub shards: u32,
    pub created_ms: u64,
}

/// Where and why a file is not a valid snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotError {
    /// Byte offset in the file of the section at fault.
    pub offset: u64,
    /// The block's index (0-based), when the fault is in a block.
    pub block: Option<u32>,
    pub what: String,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.block {
            Some(b) => write!(f, "block {b} at offset {}: {}", self.offset, self.what),
            None => write!(f, "offset {}: {}", self.offset, self.what),
        }
    }
}

impl std::error::Error for SnapshotError {}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..20].copy_from_slice(&self.shards.to_le_bytes());
        b[24..32].copy_from_slice(&self.created_ms.to_le_bytes());
        let sum = xxh3_64(&b[..32]);
        b[32..40].copy_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Header, SnapshotError> {
        let err = |what: &str| SnapshotError {
            offset: 0,
            block: None,
            what: what.to_string(),
        };
        if b.len() < HEADER_BYTES {
            return Err(err("truncated header"));
        }
        if &b[..8] != MAGIC {
            return Err(err("not a percore snapshot (bad magic)"));
        }
        if xxh3_64(&b[..32]) != u64_at(b, 32) {
            return Err(err("header checksum mismatch"));
        }
        let h = Header {
            version: u32_at(b, 8),
            shard: u32_at(b, 12),
            shards: u32_at(b, 16),
            created_ms: u64_at(b, 24),
        };
        if !(MIN_VERSION..=VERSION).contains(&h.version) {
            return Err(err(&format!(
                "format version {} (this build reads {MIN_VERSION} to {VERSION})",
                h.version
            )));
        }
        if h.shards == 0 || h.shard >= h.shards || u32_at(b, 20) != 0 {
            return Err(err(&format!("shard {} of {}", h.shard, h.shards)));
        }
        Ok(h)
    }
}

/// Collects records and frames them into blocks.
#[derive(Default)]
pub struct BlockBuilder {
    cols: Columns,
    /// Records waiting for a later step (the rest of a long collection, in parts).
    pending: std::collections::VecDeque<Pending>,
    /// Blocks and records framed so far (for the end marker).
    pub blocks: u32,
    pub records: u64,
    /// Keys framed so far, by database (for the end marker).
    pub keys: [u64; DB_COUNT],
    /// Collection tables walks took over (their collections were freed meanwhile), walked
    /// and written: the shard frees them in slices. (Boxed: they go to the graveyard as a
    /// hash's table, which is a box.)
    #[allow(clippy::vec_box)]
    freed: Vec<Box<Dict>>,
}

impl BlockBuilder {
    /// Adds a record (encoded into the block's columns now: the record is freed here); true
    /// when the block has reached its target size and should be taken with
    /// [`BlockBuilder::take_block`].
    pub fn push(&mut self, r: Record) -> bool {
        self.cols.record(&r);
        self.cols.len() >= BLOCK_TARGET_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.cols.records == 0
    }
    /// Frames waiting records (handed to `emit` as blocks fill). Whole records always go;
    /// a long list goes in parts, and once about `budget` bytes went out in this call the
    /// rest of a list waits for the next one. True while some still wait.
    fn drain(&mut self, budget: usize, emit: &mut dyn FnMut(Vec<u8>)) -> bool {
        let mut spent = 0;
        loop {
            if spent >= budget && self.pending.front().is_some_and(Pending::is_rest) {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                return false;
            };
            let mut r = match p {
                Pending::Built(r) => r,
                Pending::Members(mut m) => {
                    let (s, done) = self.members_part(&mut m, budget.saturating_sub(spent), emit);
                    spent += s;
                    if done {
                        self.freed.extend(m.walk.finish());
                    } else {
                        self.pending.push_front(Pending::Members(m));
                    }
                    continue;
                }
                Pending::List {
                    db,
                    key,
                    expire_at_ms,
                    mut nodes,
                    begun,
                } => {
                    spent += self.list_part(db, &key, expire_at_ms, &mut nodes, begun);
                    if !nodes.is_empty() {
                        self.pending.push_front(Pending::List {
                            db,
                            key,
                            expire_at_ms,
                            nodes,
                            begun: true,
                        });
                    }
                    if self.cols.len() >= BLOCK_TARGET_BYTES {
                        emit(self.take_block());
                    }
                    continue;
                }
            };
            let rest = match &mut r.value {
                RecordValue::List(v) | RecordValue::ListMore(v) => {
                    split_part(v, |n| n.len() + 8).map(RecordValue::ListMore)
                }
                RecordValue::Set(v) | RecordValue::SetMore(v) => {
                    split_part(v, |m| m.len() + 8).map(RecordValue::SetMore)
                }
                RecordValue::Hash(v) | RecordValue::HashMore(v) => {
                    split_part(v, |p| p.field.len() + p.value.len() + 16).map(RecordValue::HashMore)
                }
                RecordValue::ZSet(v) | RecordValue::ZSetMore(v) => {
                    split_part(v, |e| e.member.len() + 16).map(RecordValue::ZSetMore)
                }
                _ => None,
            };
            if let Some(value) = rest {
                self.pending.push_front(Pending::Built(Record {
                    db: r.db,
                    key: r.key.clone(),
                    expire_at_ms: r.expire_at_ms,
                    value,
                }));
            }
            spent += r.key.len() + 32 + r.value.payload_bytes();
            if self.push(r) {
                emit(self.take_block());
            }
        }
        !self.pending.is_empty()
    }

    /// Encodes the next part of a held list (its head record unless `begun`, else a
    /// `ListMore` one) of about [`PART_BYTES`], as [`split_part`] cuts a built one, and lets
    /// its nodes go. Returns the bytes it counts against a step's budget.
    fn list_part(
        &mut self,
        db: u8,
        key: &[u8],
        expire_at_ms: u64,
        nodes: &mut HeldNodes,
        begun: bool,
    ) -> usize {
        let mut bytes = 0;
        let n = nodes
            .lens()
            .position(|len| {
                bytes += len + 8;
                bytes > PART_BYTES
            })
            .map_or(nodes.len(), |cut| cut.max(1));
        let kind = if begun { KIND_LIST_MORE } else { KIND_LIST };
        self.cols.head(kind, false, db, key, expire_at_ms);
        // A compressed node is written as its entries (decompressed for the part).
        let part: Vec<_> = nodes.iter().take(n).collect();
        self.cols.items(n, part.iter().map(|d| Item::One(d)));
        let spent = key.len() + 32 + part.iter().map(|d| d.len() + 8).sum::<usize>();
        nodes.drop_front(n);
        spent
    }

    /// Steps a collection's walk and writes the members it saved (and those writes saved
    /// meanwhile) in parts of about [`PART_BYTES`], until about `budget` bytes went out
    /// (at least one walk step). Returns the bytes counted and whether the collection is
    /// all written.
    fn members_part(
        &mut self,
        m: &mut HeldMembers,
        budget: usize,
        emit: &mut dyn FnMut(Vec<u8>),
    ) -> (usize, bool) {
        let mut spent = 0;
        loop {
            let walking = m.walk.step(WALK_STEP_BUCKETS);
            if walking {
                // Empty buckets cost the walk too.
                spent += WALK_STEP_BUCKETS * 8;
            }
            loop {
                let w = m.walk.members();
                let unread = w.unread_bytes();
                if unread == 0 || (walking && unread < PART_BYTES) {
                    break;
                }
                let (n, bytes) = w.part(PART_BYTES);
                let kind = match (m.begun, m.kind) {
                    (false, k) => k,
                    (true, KIND_HASH) => KIND_HASH_MORE,
                    (true, KIND_SET) => KIND_SET_MORE,
                    (true, _) => KIND_ZSET_MORE,
                };
                self.cols.head(kind, false, m.db, &m.key, m.expire_at_ms);
                write_members(&mut self.cols, m.kind, &w, n);
                drop(w);
                m.walk.members().consume(bytes);
                m.begun = true;
                spent += m.key.len() + 32 + bytes;
                if self.cols.len() >= BLOCK_TARGET_BYTES {
                    emit(self.take_block());
                }
                if spent >= budget {
                    break;
                }
            }
            if !walking && m.walk.members().unread_bytes() == 0 {
                return (spent, true);
            }
            if spent >= budget {
                return (spent, false);
            }
        }
    }

    /// The framed bytes of the records added since the last call (empty when none).
    pub fn take_block(&mut self) -> Vec<u8> {
        if self.cols.records == 0 {
            return Vec::new();
        }
        let cols = std::mem::take(&mut self.cols);
        let n = cols.records;
        for (all, k) in self.keys.iter_mut().zip(cols.keys) {
            *all += k;
        }
        let out = frame_columns(cols.meta, cols.data, n, true);
        self.blocks += 1;
        self.records += n as u64;
        out
    }

    /// The end marker, after the last block.
    pub fn end(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(END_BYTES);
        b.extend_from_slice(END_TAG);
        b.extend_from_slice(&self.blocks.to_le_bytes());
        b.extend_from_slice(&self.records.to_le_bytes());
        for k in self.keys {
            b.extend_from_slice(&k.to_le_bytes());
        }
        let sum = xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }
}

/// Frames two columns holding `records` records as a block: header, checksum, and the
/// payload LZ4-compressed when `compress` and it saves 1/32 or more. The writer's last step;
/// tests and the fuzz target build blocks around any columns with it.
pub fn frame_columns(meta: Vec<u8>, data: Vec<u8>, records: u32, compress: bool) -> Vec<u8> {
    let payload = rkyv::to_bytes::<RkyvError>(&Block5 { meta, data })
        .expect("serializing two byte vectors cannot fail");
    let mut out = vec![0u8; BLOCK_HEADER_BYTES];
    let mut raw_len = 0;
    if compress {
        // Compressed straight behind the header.
        let most = lz4_flex::block::get_maximum_output_size(payload.len());
        out.resize(BLOCK_HEADER_BYTES + most, 0);
        match lz4_flex::block::compress_into(&payload, &mut out[BLOCK_HEADER_BYTES..]) {
            Ok(c) if c + payload.len() / 32 < payload.len() => {
                out.truncate(BLOCK_HEADER_BYTES + c);
                raw_len = payload.len() as u32;
            }
            _ => out.truncate(BLOCK_HEADER_BYTES),
        }
    }
    if raw_len == 0 {
        out.extend_from_slice(&payload);
    }
    let stored = (out.len() - BLOCK_HEADER_BYTES) as u32;
    out[..4].copy_from_slice(BLOCK_TAG);
    out[4..8].copy_from_slice(&stored.to_le_bytes());
    out[8..12].copy_from_slice(&records.to_le_bytes());
    out[12..16].copy_from_slice(&raw_len.to_le_bytes());
    let mut h = Xxh3::new();
    h.update(&out[..16]);
    h.update(&out[BLOCK_HEADER_BYTES..]);
    out[16..24].copy_from_slice(&h.digest().to_le_bytes());
    out
}

/// Buckets of a collection's table one walk step visits ([`BlockBuilder::members_part`]):
/// about 2,000 members at the table's load factor, ~100 KB of 16-byte ones.
const WALK_STEP_BUCKETS: usize = 1024;

/// The next `n` saved members of a collection of head kind `kind` into `cols`, as the
/// elements of a record.
fn write_members(cols: &mut Columns, kind: u8, w: &Members, n: usize) {
    let items = w.iter(n);
    match kind {
        KIND_HASH => cols.items(n, items.map(|(f, v)| Item::Pair(f, v))),
        KIND_SET => cols.items(n, items.map(|(m, _)| Item::One(m))),
        _ => cols.items(n, items.map(|(m, s)| Item::Scored(m, score_bits_of(s)))),
    }
}

/// Cuts `v` after about [`PART_BYTES`] (at least one item) and returns the rest, if any.
fn split_part<T>(v: &mut Vec<T>, size: impl Fn(&T) -> usize) -> Option<Vec<T>> {
    let mut bytes = 0;
    let cut = v.iter().position(|x| {
        bytes += size(x);
        bytes > PART_BYTES
    })?;
    let cut = cut.max(1);
    (cut < v.len()).then(|| v.split_off(cut))
}

/// A validated block: its columns, ready to be read record by record.
pub struct BlockView {
    payload: AlignedVec<16>,
    records: u32,
    pub index: u32,
    pub offset: u64,
}

impl BlockView {
    /// The records, validated when the block was read. Nothing is allocated.
    pub fn records(&self) -> Records<'_> {
        // SAFETY: `payload` passed `rkyv::access::<ArchivedBlock5>` (bytecheck validation)
        // in `Reader::next_block` and has not been modified since: a BlockView never hands
        // out mutable access to it.
        let b = unsafe { rkyv::access_unchecked::<ArchivedBlock5>(&self.payload) };
        Records {
            at: Cursor::new(b.meta.as_slice(), b.data.as_slice()),
            left: self.records,
        }
    }

    /// How many records the block holds.
    pub fn len(&self) -> usize {
        self.records as usize
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// What a reader found, for `check-snapshot` and the load log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub blocks: u32,
    pub records: u64,
    pub bytes: u64,
}

/// Reads a snapshot file held in memory, block by block, checking everything.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    pub header: Header,
    summary: Summary,
    /// Records read that begin a key, by database.
    keys: [u64; DB_COUNT],
    ended: bool,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, SnapshotError> {
        let header = Header::decode(bytes)?;
        Ok(Reader {
            bytes,
            pos: HEADER_BYTES,
            header,
            summary: Summary::default(),
            keys: [0; DB_COUNT],
            ended: false,
        })
    }

    /// The keys of each database as the end marker states them, read ahead of the blocks
    /// so that a loader can size its tables once (None for a file before version 5, or
    /// when the file does not end in a valid marker: reading the blocks then says why).
    /// Only a hint until the blocks are read: the marker's counts are checked against them
    /// at the end.
    pub fn key_counts(&self) -> Option<[u64; DB_COUNT]> {
        if self.header.version < 5 || self.bytes.len() < HEADER_BYTES + END_BYTES {
            return None;
        }
        let end = &self.bytes[self.bytes.len() - END_BYTES..];
        if &end[..4] != END_TAG || xxh3_64(&end[..END_BYTES - 8]) != u64_at(end, END_BYTES - 8) {
            return None;
        }
        let mut keys = [0u64; DB_COUNT];
        for (i, k) in keys.iter_mut().enumerate() {
            *k = u64_at(end, 16 + 8 * i);
        }
        Some(keys)
    }

    fn fail(&self, at: usize, block: Option<u32>, what: impl Into<String>) -> SnapshotError {
        SnapshotError {
            offset: at as u64,
            block,
            what: what.into(),
        }
    }

    /// Checks the end marker at `at` (the rest of the file).
    fn end(&mut self, at: usize) -> Result<(), SnapshotError> {
        let rest = &self.bytes[at..];
        let v5 = self.header.version >= 5;
        let len = if v5 { END_BYTES } else { END_BYTES_V4 };
        if rest.len() < len {
            return Err(self.fail(at, None, "truncated end marker"));
        }
        if xxh3_64(&rest[..len - 8]) != u64_at(rest, len - 8) {
            return Err(self.fail(at, None, "end marker checksum mismatch"));
        }
        let (blocks, records) = (u32_at(rest, 4), u64_at(rest, 8));
        if blocks != self.summary.blocks || records != self.summary.records {
            return Err(self.fail(
                at,
                None,
                format!(
                    "end marker counts {blocks} blocks / {records} records, file holds {} / {}",
                    self.summary.blocks, self.summary.records
                ),
            ));
        }
        if v5 {
            for (db, &read) in self.keys.iter().enumerate() {
                let said = u64_at(rest, 16 + 8 * db);
                if said != read {
                    return Err(self.fail(
                        at,
                        None,
                        format!(
                            "end marker counts {said} keys in database {db}, file holds {read}"
                        ),
                    ));
                }
            }
        }
        if rest.len() > len {
            return Err(self.fail(at + len, None, "bytes after the end marker"));
        }
        self.ended = true;
        self.summary.bytes = self.bytes.len() as u64;
        Ok(())
    }

    /// The next block, or None after a valid end marker (which must close the file).
    pub fn next_block(&mut self) -> Result<Option<BlockView>, SnapshotError> {
        if self.ended {
            return Ok(None);
        }
        let at = self.pos;
        let rest = &self.bytes[at..];
        let index = self.summary.blocks;
        if rest.len() < 4 {
            return Err(self.fail(at, None, "truncated: no end marker"));
        }
        if &rest[..4] == END_TAG {
            self.end(at)?;
            return Ok(None);
        }
        let fail = |what: String| SnapshotError {
            offset: at as u64,
            block: Some(index),
            what,
        };
        if &rest[..4] != BLOCK_TAG {
            return Err(fail("bad block tag".into()));
        }
        if rest.len() < BLOCK_HEADER_BYTES {
            return Err(fail("truncated block header".into()));
        }
        let len = u32_at(rest, 4) as usize;
        let n = u32_at(rest, 8);
        let raw_len = u32_at(rest, 12) as usize;
        if len > BLOCK_MAX_BYTES || (raw_len != 0 && self.header.version < 5) {
            return Err(fail(format!("bad block length {len}")));
        }
        // LZ4 expands a byte to at most 255: a larger claim is refused before anything is
        // allocated for it.
        if raw_len > BLOCK_MAX_BYTES || raw_len / 255 > len {
            return Err(fail(format!(
                "bad uncompressed block length {raw_len} for {len} bytes"
            )));
        }
        if rest.len() < BLOCK_HEADER_BYTES + len {
            return Err(fail(format!(
                "truncated block: {len} payload bytes declared, {} present",
                rest.len() - BLOCK_HEADER_BYTES
            )));
        }
        let stored = &rest[BLOCK_HEADER_BYTES..BLOCK_HEADER_BYTES + len];
        let mut h = Xxh3::new();
        h.update(&rest[..16]);
        h.update(stored);
        if h.digest() != u64_at(rest, 16) {
            return Err(fail("block checksum mismatch".into()));
        }
        let payload = if raw_len == 0 {
            let mut aligned = AlignedVec::<16>::with_capacity(len);
            aligned.extend_from_slice(stored);
            aligned
        } else {
            let mut aligned = AlignedVec::<16>::with_capacity(raw_len);
            aligned.resize(raw_len, 0);
            match lz4_flex::block::decompress_into(stored, &mut aligned) {
                Ok(got) if got == raw_len => aligned,
                Ok(got) => {
                    return Err(fail(format!(
                        "decompressed to {got} bytes, {raw_len} declared"
                    )))
                }
                Err(e) => return Err(fail(format!("bad compressed block: {e}"))),
            }
        };
        let payload = if self.header.version < 5 {
            // An older block: validated as such, then re-encoded into the columns.
            let archived = rkyv::access::<ArchivedBlock, RkyvError>(&payload)
                .map_err(|e| fail(format!("invalid records: {e}")))?;
            if archived.records.len() as u64 != n as u64 {
                return Err(fail("record count mismatch".into()));
            }
            let mut cols = Columns::default();
            for r in archived.records.iter() {
                cols.archived(r);
            }
            rkyv::to_bytes::<RkyvError>(&Block5 {
                meta: cols.meta,
                data: cols.data,
            })
            .expect("serializing two byte vectors cannot fail")
        } else {
            payload
        };
        let block = rkyv::access::<ArchivedBlock5, RkyvError>(&payload)
            .map_err(|e| fail(format!("invalid records: {e}")))?;
        let mut c = Cursor::new(block.meta.as_slice(), block.data.as_slice());
        let mut keys = [0u64; DB_COUNT];
        for i in 0..n {
            let r = c
                .record()
                .map_err(|e| fail(format!("record {i} of {n}: {e}")))?;
            if !r.value.is_more() {
                keys[r.db as usize] += 1;
            }
            if let ValueView::List(nodes) | ValueView::ListMore(nodes) = r.value {
                if nodes
                    .members()
                    .any(|n| crate::types::list::decode_node(n).is_none())
                {
                    let key = String::from_utf8_lossy(r.key);
                    return Err(fail(format!("malformed list nodes in key '{key}'")));
                }
            }
        }
        if !c.meta.is_empty() || !c.data.is_empty() {
            return Err(fail(format!("bytes after the last of {n} records")));
        }
        for (all, k) in self.keys.iter_mut().zip(keys) {
            *all += k;
        }
        self.pos = at + BLOCK_HEADER_BYTES + len;
        self.summary.blocks += 1;
        self.summary.records += n as u64;
        Ok(Some(BlockView {
            payload,
            records: n,
            index,
            offset: at as u64,
        }))
    }

    /// Reads to the end, checking every block; what the file holds.
    pub fn verify(mut self) -> Result<Summary, SnapshotError> {
        while self.next_block()?.is_some() {}
        Ok(self.summary)
    }
}

impl crate::Shard {
    /// Begins a point-in-time snapshot of this shard and returns the file header. O(number
    /// of databases): nothing is copied now. From here on, a write to an entry the walk has
    /// not reached saves the entry first (see [`crate::dict::Snap`]).
    pub fn snapshot_begin(&mut self, shard: u32, shards: u32, now_ms: u64) -> Vec<u8> {
        debug_assert!(self.snapshot.is_none(), "one snapshot at a time");
        for (i, d) in self.dbs.iter_mut().enumerate() {
            d.dict.snap_begin(i as u8);
        }
        self.snapshot = Some(BlockBuilder::default());
        Header {
            version: VERSION,
            shard,
            shards,
            created_ms: now_ms,
        }
        .encode()
        .to_vec()
    }

    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Walks up to `buckets` more buckets of the snapshot, handing every finished block to
    /// `emit`; at the end emits the last block and the end marker and returns false. Bounded
    /// like SCAN, plus the entries writes saved ahead of the walk since the last step.
    pub fn snapshot_step(&mut self, buckets: usize, emit: &mut dyn FnMut(Vec<u8>)) -> bool {
        let Some(mut b) = self.snapshot.take() else {
            return false;
        };
        // Databases first. A table a FLUSHDB detached while the snapshot ran is not walked
        // (it is being freed in slices, and its shape changes under a cursor): freeing it
        // saves each pending entry first, so the snapshot frees it here until it is gone.
        let mut working = match self.dbs.iter_mut().find(|d| d.dict.snap_active()) {
            Some(d) => {
                d.dict.snap_step(buckets);
                true
            }
            None => false,
        };
        if !working {
            if let Some(i) = self.garbage.iter().position(|d| d.snap_active()) {
                working = true;
                self.free_garbage_step(i, buckets);
            }
        }
        let saved: Vec<Pending> = self
            .dbs
            .iter_mut()
            .map(|d| &mut d.dict)
            .chain(self.garbage.iter_mut())
            .flat_map(|d| std::mem::take(&mut d.snap.saved))
            .chain(std::mem::take(&mut self.snap_orphans))
            .collect();
        b.pending.extend(saved);
        let waiting = b.drain(STEP_BYTES, emit);
        // Tables of collections freed while walked: written now, freed in slices.
        for t in b.freed.drain(..) {
            self.graveyard.bury_hash(crate::types::hash::Hash::Table(t));
        }
        let walking = working
            && (self.dbs.iter().any(|d| d.dict.snap_active())
                || self.garbage.iter().any(|d| d.snap_active()));
        if walking || waiting {
            self.snapshot = Some(b);
            return true;
        }
        let last = b.take_block();
        if !last.is_empty() {
            emit(last);
        }
        emit(b.end());
        false
    }

    /// Sizes the tables of the databases for the keys a file about to be loaded holds
    /// (`keys` from [`Reader::key_counts`], scaled by `share`: the part of them this shard
    /// keeps, 1.0 for its own file), so that loading rehashes nothing, as Redis sizes its
    /// own from an RDB file's RESIZEDB. A count comes from the file: it is bounded by
    /// `file_bytes / 2`. Does nothing to a table in use.
    pub fn snapshot_reserve(&mut self, keys: &[u64; DB_COUNT], share: f64, file_bytes: usize) {
        for (d, &n) in self.dbs.iter_mut().zip(keys) {
            let n = (n.min(file_bytes as u64 / 2) as f64 * share) as usize;
            if n > 0 {
                d.dict.reserve(n);
            }
        }
    }

    /// Stores a block's records whose deadline has not passed; returns how many it stored.
    /// `accept` picks the records this shard owns (all of them unless the file was written
    /// with another shard count). A string is copied once, into its entry.
    pub fn load_block(
        &mut self,
        block: &BlockView,
        now_ms: u64,
        accept: &mut dyn FnMut(&[u8]) -> bool,
    ) -> usize {
        let mut stored = 0;
        for r in block.records() {
            let (db, key, at) = (r.db as usize, r.key, r.expire_at_ms);
            // The rest of a collection a previous record began (and stored, unless it had
            // expired or belongs to another shard: then there is nothing to extend).
            if r.value.is_more() {
                let (config, seed) = (self.config.clone(), self.next_rand());
                let Some(mut e) = self.lookup(db, key, now_ms) else {
                    continue;
                };
                match r.value {
                    ValueView::ListMore(nodes) => {
                        if let Some(l) = e.list_mut() {
                            l.append_raw_nodes(nodes.members(), config.list_limits);
                        }
                    }
                    ValueView::HashMore(pairs) => {
                        if let Some(mut h) = e.hash_mut() {
                            for (f, v) in pairs.pairs() {
                                h.set(f, v, config.hash_limits, seed);
                            }
                        }
                    }
                    ValueView::SetMore(members) => {
                        if let Some(mut s) = e.set_mut() {
                            for m in members.members() {
                                s.add(m, config.set_limits, seed);
                            }
                        }
                    }
                    ValueView::ZSetMore(elems) => {
                        if let Some(mut z) = e.zset_mut() {
                            for (m, bits) in elems.scored() {
                                let s = f64::from_bits(bits);
                                if s.is_nan() {
                                    continue;
                                }
                                match z.score(m) {
                                    Some(old) => z.update(m, old, s),
                                    None => z.insert(s, m, config.zset_limits, seed),
                                }
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            // An empty collection never exists (Redis skips one in an RDB file too); only a
            // crafted file holds one, and it must not become a key of no fields.
            let empty = match &r.value {
                ValueView::Hash(i) | ValueView::Set(i) | ValueView::ZSet(i) => i.is_empty(),
                ValueView::List(nodes) => nodes.members().all(|n| n.is_empty()),
                _ => false,
            };
            if (at != 0 && now_ms > at) || empty || !accept(key) {
                continue;
            }
            // Loading is no change to the keyspace: no "new" events (Redis's dbAddRDBLoad).
            let mark = self.events.len();
            match r.value {
                ValueView::Int(i) => self.load_ref(db, key, ValueRef::Int(i), at, now_ms),
                ValueView::Str { data, raw } => {
                    self.load_ref(db, key, ValueRef::Str { data, raw }, at, now_ms)
                }
                v => {
                    let seed = self.next_rand();
                    let value = v.to_value_with(&self.config, seed);
                    let emptied = match &value {
                        Value::List(l) => l.is_empty(),
                        Value::ZSet(z) => z.is_empty(),
                        _ => false,
                    };
                    if emptied {
                        continue;
                    }
                    let mut e = crate::Entry::new(value, now_ms);
                    e.expire_at_ms = at;
                    self.store_entry(db, key, e);
                }
            }
            self.events.truncate(mark);
            stored += 1;
        }
        stored
    }

    /// A string or integer from a file into `db` with no intermediate value: the bytes go
    /// straight into the entry (SET's path).
    fn load_ref(&mut self, db: usize, key: &[u8], v: ValueRef, at: u64, now_ms: u64) {
        let clock = crate::evict::new_clock(&self.config.evict, now_ms);
        self.touch(db, key);
        self.store_with(db, key, at, |d| d.insert_ref(key, v, at, clock));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(records: &[Record]) -> Vec<u8> {
        let mut out = Header {
            version: VERSION,
            shard: 1,
            shards: 4,
            created_ms: 1_700_000_000_000,
        }
        .encode()
        .to_vec();
        let mut b = BlockBuilder::default();
        for r in records {
            if b.push(r.clone()) {
                out.extend(b.take_block());
            }
        }
        out.extend(b.take_block());
        out.extend_from_slice(&b.end());
        out
    }

    /// The writer of versions 1 to 4 (an rkyv archive of `Record`s per block, the 24-byte
    /// end marker), kept to show that their files still load.
    fn file_v4(records: &[Record], version: u32) -> Vec<u8> {
        let mut out = Header {
            version,
            shard: 1,
            shards: 4,
            created_ms: 1_700_000_000_000,
        }
        .encode()
        .to_vec();
        let (mut blocks, mut block, mut bytes) = (0u32, Block::default(), 0);
        let mut frame = |block: &mut Block, out: &mut Vec<u8>| {
            let payload = rkyv::to_bytes::<RkyvError>(&*block).unwrap();
            let mut head = BLOCK_TAG.to_vec();
            head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            head.extend_from_slice(&(block.records.len() as u32).to_le_bytes());
            head.extend_from_slice(&0u32.to_le_bytes());
            let mut h = Xxh3::new();
            h.update(&head);
            h.update(&payload);
            out.extend_from_slice(&head);
            out.extend_from_slice(&h.digest().to_le_bytes());
            out.extend_from_slice(&payload);
            block.records.clear();
            blocks += 1;
        };
        for r in records {
            bytes += r.key.len() + 32 + r.value.payload_bytes();
            block.records.push(r.clone());
            if bytes >= BLOCK_TARGET_BYTES {
                frame(&mut block, &mut out);
                bytes = 0;
            }
        }
        if !block.records.is_empty() {
            frame(&mut block, &mut out);
        }
        let mut end = END_TAG.to_vec();
        end.extend_from_slice(&blocks.to_le_bytes());
        end.extend_from_slice(&(records.len() as u64).to_le_bytes());
        let sum = xxh3_64(&end);
        end.extend_from_slice(&sum.to_le_bytes());
        out.extend(end);
        out
    }

    /// `n` string records, keys 0 to n - 1 (4 bytes each), values by `value`.
    fn strings(n: u32, mut value: impl FnMut(u32) -> Vec<u8>) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                db: 0,
                key: i.to_le_bytes().to_vec(),
                expire_at_ms: 0,
                value: RecordValue::Str {
                    data: value(i),
                    raw: false,
                },
            })
            .collect()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, SnapshotError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(block) = r.next_block()? {
            for rec in block.records() {
                out.push(rec.to_record());
            }
        }
        Ok(out)
    }

    fn edge_records() -> Vec<Record> {
        let mut v = vec![
            Record {
                db: 0,
                key: b"".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::Str {
                    data: vec![],
                    raw: false,
                },
            },
            Record {
                db: 15,
                key: vec![0, 255, b'\r', b'\n', 0],
                expire_at_ms: u64::MAX,
                value: RecordValue::Int(i64::MIN),
            },
            Record {
                db: 3,
                key: vec![b'k'; 70_000],
                expire_at_ms: 1,
                value: RecordValue::Str {
                    data: vec![7; 300_000],
                    raw: true,
                },
            },
            Record {
                db: 2,
                key: b"a hash".to_vec(),
                expire_at_ms: 5,
                value: RecordValue::Hash(vec![
                    Pair {
                        field: b"".to_vec(),
                        value: b"".to_vec(),
                    },
                    Pair {
                        field: vec![0, 255],
                        value: b"12".to_vec(),
                    },
                ]),
            },
            Record {
                db: 4,
                key: b"a set".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::Set(vec![b"-7".to_vec(), b"".to_vec(), vec![0, 1]]),
            },
            Record {
                db: 5,
                key: b"a list".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::List(
                    crate::types::list::List::from_elements(
                        [&b"x"[..], b"", b"x", &[9; 300]],
                        crate::types::list::ListLimits {
                            fill: 2,
                            ..Default::default()
                        },
                    )
                    .raw_nodes(),
                ),
            },
            Record {
                db: 6,
                key: b"a zset".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::ZSet(vec![
                    ZElem {
                        member: b"".to_vec(),
                        score_bits: f64::NEG_INFINITY.to_bits(),
                    },
                    ZElem {
                        member: vec![0, 1],
                        score_bits: (-0.0f64).to_bits(),
                    },
                    ZElem {
                        member: b"x".to_vec(),
                        score_bits: 1.5f64.to_bits(),
                    },
                ]),
            },
        ];
        for db in 0..16u8 {
            v.push(Record {
                db,
                key: format!("key:{db}").into_bytes(),
                expire_at_ms: db as u64 * 1000,
                value: RecordValue::Int(db as i64 - 8),
            });
        }
        v
    }

    #[test]
    fn edges_round_trip() {
        let recs = edge_records();
        let f = file(&recs);
        assert_eq!(read_all(&f).unwrap(), recs);
        let s = Reader::new(&f).unwrap().verify().unwrap();
        assert_eq!(s.records, recs.len() as u64);
        assert!(s.blocks >= 2, "the 300 KB value closes a block");
        assert_eq!(Reader::new(&f).unwrap().header.shards, 4);
        // An empty shard is a valid file too.
        assert_eq!(read_all(&file(&[])).unwrap(), vec![]);
    }

    /// Every flipped byte and every truncation is detected, and located in the right block.
    #[test]
    fn any_flipped_byte_or_truncation_is_reported_with_its_location() {
        let mut recs = edge_records();
        recs.truncate(2);
        recs.extend(edge_records().into_iter().skip(3));
        let f = file(&recs);
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x20;
            let e = read_all(&bad).expect_err("a flipped byte must be caught");
            assert!(
                e.offset as usize <= i,
                "error at {} for a flip at {i}: {e}",
                e.offset
            );
        }
        for len in 0..f.len() {
            let e = read_all(&f[..len]).expect_err("a truncation must be caught");
            assert!(e.offset as usize <= len, "{e}");
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(read_all(&longer)
            .unwrap_err()
            .what
            .contains("after the end marker"));
    }

    #[test]
    fn errors_name_block_and_offset() {
        let recs = strings(3000, |_| vec![1; 200]);
        let f = file(&recs);
        let summary = Reader::new(&f).unwrap().verify().unwrap();
        assert!(summary.blocks >= 2);
        // Corrupt the second block's payload.
        let mut r = Reader::new(&f).unwrap();
        r.next_block().unwrap();
        let second = r.next_block().unwrap().unwrap().offset as usize;
        let mut bad = f.clone();
        bad[second + BLOCK_HEADER_BYTES + 10] ^= 1;
        let e = read_all(&bad).unwrap_err();
        assert_eq!(e.block, Some(1));
        assert_eq!(e.offset as usize, second);
        assert_eq!(
            e.to_string(),
            format!("block 1 at offset {second}: block checksum mismatch")
        );
    }

    /// Fills `key` with `n` 17-byte elements (`element-000000000`, …); returns them.
    fn long_list(sh: &mut crate::Shard, now: u64, key: &str, n: usize) -> Vec<String> {
        let elems: Vec<String> = (0..n).map(|i| format!("element-{i:09}")).collect();
        for chunk in elems.chunks(1000) {
            let mut args = vec!["RPUSH", key];
            args.extend(chunk.iter().map(|e| e.as_str()));
            crate::testing::run(sh, now, &args);
        }
        elems
    }

    /// A list of several MB is written in parts of about [`PART_BYTES`], a bounded amount
    /// per step, and loads back whole; a part whose head was not loaded (expired, or another
    /// shard's key) is skipped.
    #[test]
    fn a_long_list_is_written_in_parts_and_loads_whole() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let mut a = Shard::new(5, ShardConfig::default());
        long_list(&mut a, now, "big", 200_000);
        run(&mut a, now, &["PEXPIRE", "big", "30000"]);
        let mut out = a.snapshot_begin(0, 1, now);
        let mut steps = Vec::new();
        while a.snapshot_step(1 << 20, &mut |blk| out.extend(blk)) {
            steps.push(out.len());
        }
        steps.push(out.len());
        let most = steps.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(
            most <= STEP_BYTES + PART_BYTES + (64 << 10),
            "a step framed {most} bytes"
        );
        let recs = read_all(&out).unwrap();
        let parts = recs
            .iter()
            .filter(|r| matches!(r.value, RecordValue::ListMore(_)))
            .count();
        assert!(parts >= 3, "{parts} parts after the head");
        let mut b = Shard::new(6, ShardConfig::default());
        let mut r = Reader::new(&out).unwrap();
        while let Some(block) = r.next_block().unwrap() {
            b.load_block(&block, now, &mut |_| true);
        }
        assert_eq!(run(&mut b, now, &["LLEN", "big"]), b":200000\r\n");
        assert_eq!(
            run(&mut b, now, &["LINDEX", "big", "123456"]),
            b"$17\r\nelement-000123456\r\n"
        );
        assert_eq!(
            run(&mut a, now, &["LRANGE", "big", "-2", "-1"]),
            run(&mut b, now, &["LRANGE", "big", "-2", "-1"])
        );
        // Loaded by a shard that does not own it, or too late: no key, and no part lands.
        for (owned, at) in [(false, now), (true, now + 60_000)] {
            let mut c = Shard::new(7, ShardConfig::default());
            let mut r = Reader::new(&out).unwrap();
            while let Some(block) = r.next_block().unwrap() {
                c.load_block(&block, at, &mut |k| owned || k != b"big");
            }
            assert_eq!(run(&mut c, at, &["EXISTS", "big"]), b":0\r\n");
        }
    }

    /// A snapshot holds a long list's nodes by reference: writes to every part of the list
    /// after the snapshot began (both ends, LSET, LINSERT, LREM in the middle, LTRIM) copy
    /// only the nodes they change, the file holds the list as it was, the list holds the
    /// writes, and once the snapshot ended no node is shared any more.
    #[test]
    fn a_snapshot_holds_a_long_lists_nodes_and_writes_copy_only_theirs() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let mut a = Shard::new(5, ShardConfig::default());
        let elems = long_list(&mut a, now, "big", 200_000);
        for i in 0..100 {
            run(&mut a, now, &["SET", &format!("k{i}"), "v"]);
        }
        let list = |sh: &Shard| match sh.dbs[0].dict.peek(b"big").map(|e| e.value()) {
            Some(ValueRef::List(l)) => (l.node_count(), l.shared_nodes()),
            _ => panic!("big is a list"),
        };
        // Under the default list-compress-depth (1) the interior nodes the snapshot holds are
        // compressed; the file holds their entries, and the loaded list is compressed again.
        let compressed = |sh: &Shard| match sh.dbs[0].dict.peek(b"big").map(|e| e.value()) {
            Some(ValueRef::List(l)) => l.compressed_sizes().iter().flatten().count(),
            _ => panic!("big is a list"),
        };
        assert_eq!(
            compressed(&a),
            list(&a).0 - 2,
            "every interior node compressed"
        );
        let mut out = a.snapshot_begin(0, 1, now);
        let mut model: std::collections::VecDeque<String> = elems.iter().cloned().collect();
        let writes: Vec<Vec<String>> = vec![
            vec!["LPUSH".into(), "big".into(), "new-head".into()],
            vec!["RPUSH".into(), "big".into(), "new-tail".into()],
            vec![
                "LSET".into(),
                "big".into(),
                "100000".into(),
                "set-middle".into(),
            ],
            vec![
                "LINSERT".into(),
                "big".into(),
                "BEFORE".into(),
                "element-000150000".into(),
                "inserted".into(),
            ],
            vec![
                "LREM".into(),
                "big".into(),
                "0".into(),
                "element-000050000".into(),
            ],
            vec!["LTRIM".into(), "big".into(), "3".into(), "-4".into()],
        ];
        for (i, w) in writes.iter().enumerate() {
            run(&mut a, now, w);
            match i {
                0 => model.push_front("new-head".into()),
                1 => model.push_back("new-tail".into()),
                2 => model[100_000] = "set-middle".into(),
                3 => {
                    let at = model.iter().position(|e| e == "element-000150000").unwrap();
                    model.insert(at, "inserted".into());
                }
                4 => model.retain(|e| e != "element-000050000"),
                _ => {
                    model.drain(..3);
                    model.truncate(model.len() - 3);
                }
            }
            // The save held the nodes: each write copied the few it changed.
            let (nodes, shared) = list(&a);
            assert!(
                shared + 4 * (i + 1) >= nodes,
                "after write {i}: {shared} of {nodes} nodes still shared"
            );
        }
        while a.snapshot_step(64, &mut |blk| out.extend(blk)) {}
        assert_eq!(
            list(&a).1,
            0,
            "a node still shared after the snapshot ended"
        );
        let mut b = Shard::new(6, ShardConfig::default());
        let mut r = Reader::new(&out).unwrap();
        while let Some(block) = r.next_block().unwrap() {
            b.load_block(&block, now, &mut |_| true);
        }
        let all = |sh: &mut Shard| run(sh, now, &["LRANGE", "big", "0", "-1"]);
        fn want<'a>(l: impl Iterator<Item = &'a String>) -> Vec<u8> {
            let mut w = Vec::new();
            let mut n = 0;
            for e in l {
                w.extend_from_slice(format!("${}\r\n{e}\r\n", e.len()).as_bytes());
                n += 1;
            }
            [format!("*{n}\r\n").into_bytes(), w].concat()
        }
        assert!(
            all(&mut b) == want(elems.iter()),
            "the file holds the old list"
        );
        assert!(
            all(&mut a) == want(model.iter()),
            "the list holds the writes"
        );
        assert_eq!(run(&mut b, now, &["GET", "k99"]), b"$1\r\nv\r\n");
        assert_eq!(
            compressed(&b),
            list(&b).0 - 2,
            "loaded: every interior node compressed"
        );
    }

    /// This test binary's allocator: the system's, with a count of live bytes per thread
    /// (tests on other threads do not disturb a test's figures).
    struct Counting;

    thread_local! {
        static LIVE: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
        /// Allocations (and reallocations) made by this thread.
        static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn count(delta: i64) {
        // `try_with`: the thread's slot may be gone while the thread exits.
        let _ = LIVE.try_with(|c| c.set(c.get() + delta));
        if delta > 0 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        }
    }

    // SAFETY: every call goes to the system allocator unchanged; the count is a thread-local
    // integer, which allocates nothing.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
            count(l.size() as i64);
            std::alloc::System.alloc(l)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
            count(-(l.size() as i64));
            std::alloc::System.dealloc(p, l)
        }
        unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
            count(l.size() as i64);
            std::alloc::System.alloc_zeroed(l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
            count(new as i64 - l.size() as i64);
            std::alloc::System.realloc(p, l, new)
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Memory of a snapshot beside a long list, counted by the allocator: while it runs,
    /// the snapshot holds the list's nodes by reference, so beside the list it keeps only
    /// the nodes the writes replaced, not a copy of the list; once it ended everything it
    /// held has gone back, so the thread's allocated bytes moved by exactly what MEMORY
    /// USAGE says the writes made the list grow or shrink. A node the snapshot kept (a
    /// leak) would show as ~8 KiB more.
    #[test]
    fn a_snapshot_beside_a_long_list_gives_back_all_it_held() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let live = || LIVE.with(|c| c.get());
        let usage = |sh: &mut Shard| {
            let r = run(sh, now, &["MEMORY", "USAGE", "big"]);
            let text = std::str::from_utf8(&r).expect("an integer reply");
            text[1..]
                .trim_end()
                .parse::<i64>()
                .expect("an integer reply")
        };
        let write_everywhere = |sh: &mut Shard, key: &str, tag: &str| {
            let mid = format!("{tag}-middle");
            run(sh, now, &["LPUSH", key, &format!("{tag}-head")]);
            run(sh, now, &["RPUSH", key, &format!("{tag}-tail")]);
            run(sh, now, &["LSET", key, "70000", &mid]);
            run(
                sh,
                now,
                &["LINSERT", key, "BEFORE", &mid, &format!("{tag}-ins")],
            );
            run(sh, now, &["LREM", key, "0", "element-000030000"]);
            run(sh, now, &["LTRIM", key, "2", "-3"]);
        };
        let mut sh = Shard::new(3, ShardConfig::default());
        long_list(&mut sh, now, "big", 150_000);
        // The same writes once on another list, and one snapshot (the first allocates 2 KiB
        // it keeps), so the shard's own buffers have their sizes before the count starts.
        long_list(&mut sh, now, "warm", 150_000);
        write_everywhere(&mut sh, "warm", "w");
        run(&mut sh, now, &["DEL", "warm"]);
        while sh.lazyfree_step(1 << 20, 1 << 20) {}
        sh.snapshot_begin(0, 1, now);
        while sh.snapshot_step(1 << 20, &mut drop) {}

        let old = run(&mut sh, now, &["LRANGE", "big", "0", "-1"]);
        let mut file = sh.snapshot_begin(0, 1, now);
        file.reserve(8 << 20);
        let (live0, usage0) = (live(), usage(&mut sh));
        write_everywhere(&mut sh, "big", "a");
        let held = live() - live0 - (usage(&mut sh) - usage0);
        // Beside the list, the snapshot holds the nodes the writes replaced (and their
        // pointers), not a copy of the list's 2.8 MB.
        assert!(
            held < 200_000,
            "the snapshot held {held} bytes beside the list"
        );
        let mut steps = 0;
        while sh.snapshot_step(16, &mut |b| file.extend(b)) {
            steps += 1;
        }
        assert!(steps > 1, "the list was written in parts");
        {
            let mut loaded = Shard::new(4, ShardConfig::default());
            let mut r = Reader::new(&file).expect("a valid file");
            while let Some(block) = r.next_block().expect("a valid block") {
                loaded.load_block(&block, now, &mut |_| true);
            }
            assert!(
                run(&mut loaded, now, &["LRANGE", "big", "0", "-1"]) == old,
                "the file holds the list as it was when the snapshot began"
            );
        }
        // (What was allocated before the count started goes after it ends.)
        let (file_bytes, old_bytes) = (file.capacity() as i64, old.capacity() as i64);
        drop((file, old));
        assert_eq!(
            live() - live0 + file_bytes + old_bytes,
            usage(&mut sh) - usage0,
            "allocated bytes moved by what the list's writes account for"
        );
        assert_eq!(
            run(&mut sh, now, &["LINDEX", "big", "0"]),
            b"$17\r\nelement-000000001\r\n"
        );
    }

    /// What a database's big hash "h", set "s" and sorted set "z" hold (sorted), read from
    /// the table.
    type Colls = (
        std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        std::collections::BTreeSet<Vec<u8>>,
        std::collections::BTreeMap<Vec<u8>, u64>,
    );

    fn colls(sh: &crate::Shard) -> Colls {
        let d = &sh.dbs[0].dict;
        let mut c = Colls::default();
        if let Some(ValueRef::Hash(h)) = d.peek(b"h").map(|e| e.value()) {
            h.for_each(|f, v| {
                c.0.insert(f.to_vec(), v.to_vec());
            });
        }
        if let Some(ValueRef::Set(s)) = d.peek(b"s").map(|e| e.value()) {
            s.for_each(|m| {
                c.1.insert(m.to_vec());
            });
        }
        if let Some(ValueRef::ZSet(z)) = d.peek(b"z").map(|e| e.value()) {
            z.for_each(|s, m| {
                c.2.insert(m.to_vec(), s.to_bits());
            });
        }
        c
    }

    /// Three commands named `names`, on "h", "s" and "z", for the caller to add arguments to.
    fn on_colls(names: [&str; 3]) -> [Vec<String>; 3] {
        let mut keys = ["h", "s", "z"].into_iter();
        names.map(|n| vec![n.to_string(), keys.next().unwrap_or_default().to_string()])
    }

    /// Fills "h" (fields f0.. with values v0.., and i0.. holding integers), "s" and "z" with
    /// `n` members each, 1,000 per command.
    fn big_colls(sh: &mut crate::Shard, now: u64, n: usize) {
        use crate::testing::run;
        for lo in (0..n).step_by(1000) {
            let [mut h, mut s, mut z] = on_colls(["HSET", "SADD", "ZADD"]);
            for i in lo..(lo + 1000).min(n) {
                if i % 2 == 0 {
                    h.extend([format!("f{i}"), format!("value-{i:08}")]);
                } else {
                    h.extend([format!("i{i}"), format!("{i}")]);
                }
                s.push(format!("m{i}"));
                z.extend([format!("{}", i % 5000), format!("m{i}")]);
            }
            for c in [h, s, z] {
                run(sh, now, &c);
            }
        }
    }

    fn load(file: &[u8], seed: u64, now: u64) -> crate::Shard {
        let mut b = crate::Shard::new(seed, crate::ShardConfig::default());
        let mut r = Reader::new(file).expect("a valid file");
        while let Some(block) = r.next_block().expect("a valid block") {
            b.load_block(&block, now, &mut |_| true);
        }
        b
    }

    /// A snapshot walks a big hash's, set's and sorted set's own tables member by member:
    /// with writes of every kind during it (add, overwrite, delete, HINCRBY, SPOP, ZINCRBY,
    /// ZPOPMIN, growth to three times the size and shrinking to a tenth, so the tables rehash under
    /// the walk's cursor) the file holds exactly the collections at the snapshot's start,
    /// the live ones hold the writes, and each single write did bounded work: a handful of
    /// allocations, where copying a collection whole made one per member.
    #[test]
    fn a_snapshot_walks_big_hashes_sets_and_zsets_and_writes_save_only_their_members() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let n = 40_000;
        let mut a = Shard::new(5, ShardConfig::default());
        big_colls(&mut a, now, n);
        for i in 0..100 {
            run(&mut a, now, &["SET", &format!("k{i}"), "v"]);
        }
        let before = colls(&a);
        let mut out = a.snapshot_begin(0, 1, now);
        let allocs = || ALLOCS.with(|c| c.get());
        let one_writes: Vec<Vec<String>> = [
            "HSET h f2 overwritten",
            "HSET h new-field x",
            "HDEL h f4",
            "HINCRBY h i31 1000",
            "HINCRBY h i7 -7",
            "SADD s new-member",
            "SREM s m10",
            "SPOP s",
            "SPOP s 3",
            "ZADD z 99999 m12",
            "ZINCRBY z 2.5 m14",
            "ZREM z m16",
            "ZADD z 7 new-member",
            "ZPOPMIN z",
        ]
        .iter()
        .map(|w| w.split(' ').map(String::from).collect())
        .collect();
        let mut most = 0;
        for (i, w) in one_writes.iter().enumerate() {
            let a0 = allocs();
            run(&mut a, now, w);
            most = most.max(allocs() - a0);
            if i % 3 == 0 {
                a.snapshot_step(16, &mut |blk| out.extend(blk));
            }
        }
        // Copying a collection whole made ~40,000 allocations.
        assert!(
            most < 200,
            "a write during the snapshot made {most} allocations"
        );
        // Growth to three times the size, then shrinking to a tenth: rehashing under the walk.
        for round in 0..2 {
            for lo in (0..n).step_by(1000) {
                let [mut h, mut s, mut z] = on_colls(["HSET", "SADD", "ZADD"]);
                for i in lo..lo + 1000 {
                    h.extend([format!("g{round}-{i}"), "x".into()]);
                    s.push(format!("g{round}-{i}"));
                    z.extend(["1".into(), format!("g{round}-{i}")]);
                }
                for c in [h, s, z] {
                    run(&mut a, now, &c);
                }
                a.snapshot_step(4, &mut |blk| out.extend(blk));
            }
        }
        for lo in (0..n).step_by(1000) {
            let [mut h, mut s, mut z] = on_colls(["HDEL", "SREM", "ZREM"]);
            for i in lo..lo + 1000 {
                for round in 0..2 {
                    h.push(format!("g{round}-{i}"));
                    s.push(format!("g{round}-{i}"));
                    z.push(format!("g{round}-{i}"));
                }
                if i % 10 != 1 {
                    h.extend([format!("f{i}"), format!("i{i}")]);
                    s.push(format!("m{i}"));
                    z.push(format!("m{i}"));
                }
            }
            for c in [h, s, z] {
                run(&mut a, now, &c);
            }
            a.snapshot_step(4, &mut |blk| out.extend(blk));
        }
        // A collection leaving its table whole (RENAME's remove and store) finishes its walk.
        run(&mut a, now, &["RENAME", "z", "z2"]);
        run(&mut a, now, &["ZADD", "z2", "3", "after-rename"]);
        run(&mut a, now, &["RENAME", "z2", "z"]);
        let after = colls(&a);
        assert!(after.0.len() < n / 5 && after.1.len() < n / 5 && after.2.len() < n / 5);
        while a.snapshot_step(64, &mut |blk| out.extend(blk)) {}
        let b = load(&out, 6, now);
        let saved = colls(&b);
        assert!(saved.0 == before.0, "the file holds the hash as it was");
        assert!(saved.1 == before.1, "the file holds the set as it was");
        assert!(
            saved.2 == before.2,
            "the file holds the sorted set as it was"
        );
        assert!(colls(&a) == after, "the snapshot changed nothing live");
        assert_eq!(
            run(&mut a, now, &["HGET", "h", "i31"]),
            b"$4\r\n1031\r\n",
            "the live hash holds the writes"
        );
        // A second snapshot, with no writes, saves the collections as they are now.
        let mut again = a.snapshot_begin(0, 1, now);
        while a.snapshot_step(1 << 20, &mut |blk| again.extend(blk)) {}
        assert!(colls(&load(&again, 7, now)) == after);
    }

    /// A big collection deleted or overwritten while a snapshot walks it: the walk takes
    /// the table over, the file still holds it as it was, and once the snapshot ended and the freeing ran, every byte the snapshot held is
    /// back: the shard's allocated bytes moved exactly as those of a twin shard that ran the
    /// same commands with no snapshot. While the snapshot ran it held little beside the
    /// collections (copying them whole held megabytes).
    #[test]
    fn a_snapshot_beside_big_hashes_sets_and_zsets_gives_back_all_it_held() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let live = || LIVE.with(|c| c.get());
        let n = 30_000;
        let writes = |sh: &mut Shard| {
            for w in [
                "HSET h f2 value-00000002",
                "HDEL h f4",
                "HSET h f4 value-00000004",
                "SREM s m6",
                "SADD s m6",
                "ZADD z 8 m8",
                "ZINCRBY z 0 m10",
                "DEL gone-h",
                "SET gone-s now-a-string",
                "ZREM gone-z m0",
                "DEL gone-z",
            ] {
                let w: Vec<&str> = w.split(' ').collect();
                run(sh, now, &w);
            }
        };
        let twin = |seed: u64| {
            let mut sh = Shard::new(seed, ShardConfig::default());
            big_colls(&mut sh, now, n);
            for (from, to) in [("h", "gone-h"), ("s", "gone-s"), ("z", "gone-z")] {
                run(&mut sh, now, &["COPY", from, to]);
            }
            // One snapshot first: the shard's own buffers take their sizes.
            sh.snapshot_begin(0, 1, now);
            while sh.snapshot_step(1 << 20, &mut drop) {}
            while sh.lazyfree_step(1 << 20, 1 << 20) {}
            sh
        };
        let mut plain = twin(3);
        let mut sh = twin(3);
        let before = colls(&sh);

        let p0 = live();
        writes(&mut plain);
        let plain_written = live() - p0;
        while plain.lazyfree_step(1 << 20, 1 << 20) {}
        let plain_moved = live() - p0;
        let s0 = live();
        let mut file = sh.snapshot_begin(0, 1, now);
        file.reserve(16 << 20);
        let f0 = live() - s0;
        writes(&mut sh);
        let held = live() - s0 - f0 - plain_written;
        assert!(
            held < 300_000,
            "the snapshot held {held} bytes beside the collections"
        );
        while sh.snapshot_step(16, &mut |b| file.extend(b)) {}
        let loaded = load(&file, 4, now);
        assert!(
            colls(&loaded) == before,
            "the file holds the collections as they were"
        );
        let mut l = loaded;
        let card = format!(":{n}\r\n").into_bytes();
        assert_eq!(run(&mut l, now, &["HLEN", "gone-h"]), card);
        assert_eq!(run(&mut l, now, &["SCARD", "gone-s"]), card);
        assert_eq!(run(&mut l, now, &["ZCARD", "gone-z"]), card);
        drop(l);
        drop(file);
        while sh.lazyfree_step(1 << 20, 1 << 20) {}
        // Up to a few vectors' capacities: a table the walk took over is freed from the
        // shard's queue, the twin's from its database's, so the queues' sizes differ. A
        // table or a walk's members kept would be hundreds of KB.
        let kept = live() - s0 - plain_moved;
        assert!(
            kept.abs() < 4096,
            "allocated bytes moved by {kept} more than the twin's, which ran no snapshot"
        );
        assert!(colls(&sh) == colls(&plain));
    }

    /// While a snapshot walks a set of ~6 MB of members, what it holds beside the set stays
    /// about a part or two of members, whatever the set's size: each step's parts leave the
    /// walk's buffer once written.
    #[test]
    fn a_walk_holds_a_few_parts_of_members_not_the_collection() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let live = || LIVE.with(|c| c.get());
        let mut sh = Shard::new(3, ShardConfig::default());
        for lo in (0..250_000).step_by(1000) {
            let mut sadd = vec!["SADD".to_string(), "s".into()];
            sadd.extend((lo..lo + 1000).map(|i| format!("member-{i:09}")));
            run(&mut sh, now, &sadd);
        }
        let base = live();
        sh.snapshot_begin(0, 1, now);
        let mut most = 0;
        let mut written = 0;
        while sh.snapshot_step(16, &mut |b| written += b.len()) {
            most = most.max(live() - base);
        }
        assert!(written > 0);
        assert!(
            most < (3 * PART_BYTES + STEP_BYTES) as i64,
            "the snapshot held {most} bytes beside a set of 250,000 members"
        );
    }

    /// A hash and a set of several MB are written in parts too, and load back whole.
    #[test]
    fn large_hashes_and_sets_are_written_in_parts_and_load_whole() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let mut a = Shard::new(5, ShardConfig::default());
        let names: Vec<String> = (0..150_000).map(|i| format!("member-{i:09}")).collect();
        for chunk in names.chunks(1000) {
            let mut sadd = vec!["SADD", "s"];
            sadd.extend(chunk.iter().map(|e| e.as_str()));
            run(&mut a, now, &sadd);
            let mut hset = vec!["HSET", "h"];
            for f in chunk {
                hset.push(f);
                hset.push("a-value-of-some-length");
            }
            run(&mut a, now, &hset);
        }
        let mut out = a.snapshot_begin(0, 1, now);
        while a.snapshot_step(1 << 20, &mut |blk| out.extend(blk)) {}
        let recs = read_all(&out).unwrap();
        let count = |f: fn(&RecordValue) -> bool| recs.iter().filter(|r| f(&r.value)).count();
        assert!(count(|v| matches!(v, RecordValue::HashMore(_))) >= 2);
        assert!(count(|v| matches!(v, RecordValue::SetMore(_))) >= 1);
        let mut b = Shard::new(6, ShardConfig::default());
        let mut r = Reader::new(&out).unwrap();
        while let Some(block) = r.next_block().unwrap() {
            b.load_block(&block, now, &mut |_| true);
        }
        assert_eq!(run(&mut b, now, &["SCARD", "s"]), b":150000\r\n");
        assert_eq!(run(&mut b, now, &["HLEN", "h"]), b":150000\r\n");
        assert_eq!(
            run(&mut b, now, &["HGET", "h", "member-000149999"]),
            b"$22\r\na-value-of-some-length\r\n"
        );
        assert_eq!(
            run(&mut b, now, &["SISMEMBER", "s", "member-000000007"]),
            b":1\r\n"
        );
        assert_eq!(
            run(&mut b, now, &["OBJECT", "ENCODING", "h"]),
            b"$9\r\nhashtable\r\n"
        );
    }

    /// A list record whose node bytes are not well-formed entries (only a crafted file,
    /// since blocks are checksummed) is refused with its block and key, never loaded.
    #[test]
    fn malformed_list_nodes_are_refused() {
        let recs = vec![Record {
            db: 0,
            key: b"l".to_vec(),
            expire_at_ms: 0,
            value: RecordValue::List(vec![vec![5, b'a', 5]]),
        }];
        let f = file(&recs);
        let mut r = Reader::new(&f).unwrap();
        let e = r.next_block().err().expect("refused");
        assert!(
            e.what.contains("malformed list nodes in key 'l'"),
            "{}",
            e.what
        );
        assert_eq!(e.block, Some(0));
    }

    #[test]
    fn foreign_or_future_files_are_refused() {
        let mut f = file(&edge_records());
        assert!(Header::decode(b"REDIS0011")
            .unwrap_err()
            .what
            .contains("truncated"));
        f[8] = VERSION as u8 + 1; // the next version, checksum fixed up
        let sum = xxh3_64(&f[..32]);
        f[32..40].copy_from_slice(&sum.to_le_bytes());
        let e = Reader::new(&f).err().unwrap().what;
        assert!(e.contains(&format!("version {}", VERSION + 1)), "{e}");
    }

    /// A hash or set record with no elements (only a crafted file holds one) is skipped on
    /// load rather than becoming a key that exists with nothing in it.
    #[test]
    fn empty_collections_in_a_file_are_not_loaded() {
        use crate::{Shard, ShardConfig};
        let recs = vec![
            Record {
                db: 0,
                key: b"h".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::Hash(vec![]),
            },
            Record {
                db: 0,
                key: b"s".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::Set(vec![]),
            },
            Record {
                db: 0,
                key: b"l".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::List(vec![]),
            },
            Record {
                db: 0,
                key: b"k".to_vec(),
                expire_at_ms: 0,
                value: RecordValue::Int(1),
            },
        ];
        let f = file(&recs);
        let mut r = Reader::new(&f).unwrap();
        let mut sh = Shard::new(3, ShardConfig::default());
        let mut stored = 0;
        while let Some(block) = r.next_block().unwrap() {
            stored += sh.load_block(&block, 0, &mut |_| true);
        }
        assert_eq!(stored, 1);
        assert_eq!(sh.db_len(0), 1);
        assert!(!sh.exists(0, b"h", 0) && !sh.exists(0, b"s", 0) && !sh.exists(0, b"l", 0));
    }

    /// Files of version 1 (strings only) load with this build: their records are a subset
    /// of version 2's, tags and layout unchanged.
    #[test]
    fn version_1_files_still_load() {
        let recs: Vec<Record> = edge_records()
            .into_iter()
            .filter(|r| matches!(r.value, RecordValue::Int(_) | RecordValue::Str { .. }))
            .collect();
        let f = file_v4(&recs, 1);
        assert_eq!(Reader::new(&f).unwrap().header.version, 1);
        assert_eq!(read_all(&f).unwrap(), recs);
    }

    /// Files of version 3 (strings, hashes, sets, lists) load with this build: version 4
    /// only appended the sorted-set variants.
    #[test]
    fn version_3_files_still_load() {
        let recs: Vec<Record> = edge_records()
            .into_iter()
            .filter(|r| !matches!(r.value, RecordValue::ZSet(_) | RecordValue::ZSetMore(_)))
            .collect();
        assert!(recs.iter().any(|r| matches!(r.value, RecordValue::List(_))));
        let f = file_v4(&recs, 3);
        assert_eq!(Reader::new(&f).unwrap().header.version, 3);
        assert_eq!(read_all(&f).unwrap(), recs);
    }

    /// Files of version 4 (each block an rkyv archive of records) load with this build,
    /// every type, to the same records and the same shard as the version 5 file of them;
    /// their damage is caught as before.
    #[test]
    fn version_4_files_still_load() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let recs = edge_records();
        let old = file_v4(&recs, 4);
        assert_eq!(Reader::new(&old).unwrap().header.version, 4);
        assert_eq!(Reader::new(&old).unwrap().key_counts(), None);
        assert_eq!(read_all(&old).unwrap(), recs);
        let new = file(&recs);
        let shard_of = |f: &[u8]| {
            let mut sh = Shard::new(3, ShardConfig::default());
            let mut r = Reader::new(f).unwrap();
            while let Some(block) = r.next_block().unwrap() {
                sh.load_block(&block, 0, &mut |_| true);
            }
            sh
        };
        let (mut a, mut b) = (shard_of(&old), shard_of(&new));
        for cmd in [
            &["DEBUG", "DIGEST"][..],
            &["SELECT", "5"],
            &["LRANGE", "a list", "0", "-1"],
            &["SELECT", "6"],
            &["ZRANGE", "a zset", "0", "-1", "WITHSCORES"],
        ] {
            assert_eq!(run(&mut a, 0, cmd), run(&mut b, 0, cmd), "{cmd:?}");
        }
        for i in (0..old.len()).step_by(97) {
            let mut bad = old.clone();
            bad[i] ^= 0x04;
            assert!(read_all(&bad).is_err(), "a flip at {i} of a version 4 file");
        }
        // A version 4 block may not claim to be compressed.
        let mut bad = old.clone();
        bad[HEADER_BYTES + 12] = 1;
        assert!(read_all(&bad).is_err());
    }

    /// A file of one block around the columns `meta` and `data` (their framing valid).
    fn columns_file(meta: &[u8], data: &[u8], records: u32, compress: bool) -> Vec<u8> {
        let mut f = Header {
            version: VERSION,
            shard: 0,
            shards: 1,
            created_ms: 0,
        }
        .encode()
        .to_vec();
        f.extend(frame_columns(
            meta.to_vec(),
            data.to_vec(),
            records,
            compress,
        ));
        let mut b = BlockBuilder {
            blocks: 1,
            records: records as u64,
            ..Default::default()
        };
        b.keys[0] = records as u64;
        f.extend(b.end());
        f
    }

    /// Hostile columns behind valid checksums are refused with the block, its offset and
    /// the record at fault: lengths past the end, counts larger than the column, varints
    /// of more than 64 bits, unknown flags, databases out of range, bytes left over.
    #[test]
    fn hostile_columns_are_refused_with_their_location() {
        // One good record: flags Str, key "k", value "v".
        let good = columns_file(&[KIND_STR, 1, 1], b"kv", 1, false);
        assert_eq!(read_all(&good).unwrap()[0].key, b"k");
        let cases: Vec<(&str, Vec<u8>, &[u8], u32)> = vec![
            ("past the end of the data", vec![KIND_STR, 1, 2], b"kv", 1),
            (
                "past the end of the data",
                vec![KIND_STR, 0xff, 0xff, 0xff, 0x0f, 1],
                b"kv",
                1,
            ),
            ("lengths end early", vec![KIND_STR, 1], b"kv", 1),
            ("lengths end early", vec![KIND_STR, 1, 1], b"kv", 2),
            (
                "overflows 64 bits",
                [&[KIND_STR][..], &[0xff; 10], &[1]].concat(),
                b"kv",
                1,
            ),
            (
                "overflows 64 bits",
                [&[KIND_STR, 1, 1][..]].concat(),
                b"kv",
                0,
            ),
            ("unknown record flags", vec![10, 1, 1], b"kv", 1),
            (
                "unknown record flags",
                vec![0x80 | KIND_STR, 1, 1],
                b"kv",
                1,
            ),
            (
                "unknown record flags",
                vec![FLAG_RAW | KIND_INT, 1, 2],
                b"k",
                1,
            ),
            (
                "database out of range",
                vec![FLAG_DB | KIND_STR, 16, 1, 1],
                b"kv",
                1,
            ),
            (
                "a deadline of 0",
                vec![FLAG_DEADLINE | KIND_STR, 1, 0, 1],
                b"kv",
                1,
            ),
            // A set claiming 2^62 members, with one present.
            (
                "lengths end early",
                vec![
                    KIND_SET, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1,
                ],
                b"km",
                1,
            ),
            (
                "past the end of the data",
                vec![KIND_ZSET, 1, 1, 1],
                b"km1234567",
                1,
            ),
            ("bytes after the last", vec![KIND_STR, 1, 1, 0], b"kv", 1),
            ("bytes after the last", vec![KIND_STR, 1, 1], b"kvx", 1),
            (
                "malformed list nodes",
                vec![KIND_LIST, 1, 1, 3],
                &[b'l', 5, b'a', 5],
                1,
            ),
        ];
        for (want, meta, data, n) in cases {
            for compress in [false, true] {
                let f = columns_file(&meta, data, n, compress);
                let e = read_all(&f).expect_err(want);
                let what = if want.contains("64 bits") && n == 0 {
                    // No record to read: the three bytes are left over.
                    "bytes after the last"
                } else {
                    want
                };
                assert!(e.what.contains(what), "{meta:?}: {e}");
                assert_eq!((e.block, e.offset), (Some(0), HEADER_BYTES as u64), "{e}");
            }
        }
    }

    /// A compressed block must decompress to exactly its declared size, within the limit.
    #[test]
    fn bad_compressed_blocks_are_refused() {
        let recs: Vec<Record> = (0..200u32)
            .map(|i| Record {
                db: 0,
                key: format!("key:{i:012}").into_bytes(),
                expire_at_ms: 0,
                value: RecordValue::Str {
                    data: b"abcdefghijklmnopqrstuvwxyzabcdef".to_vec(),
                    raw: false,
                },
            })
            .collect();
        let f = file(&recs);
        let raw_len = u32_at(&f, HEADER_BYTES + 12);
        assert!(raw_len > 0, "repetitive records are stored compressed");
        let refix = |f: &mut Vec<u8>| {
            let len = u32_at(f, HEADER_BYTES + 4) as usize;
            let mut h = Xxh3::new();
            h.update(&f[HEADER_BYTES..HEADER_BYTES + 16]);
            h.update(&f[HEADER_BYTES + 24..HEADER_BYTES + 24 + len]);
            let sum = h.digest().to_le_bytes();
            f[HEADER_BYTES + 16..HEADER_BYTES + 24].copy_from_slice(&sum);
        };
        for (declared, want) in [
            (raw_len + 1, "decompressed to"),
            (raw_len - 1, "compressed block"),
            (BLOCK_MAX_BYTES as u32 + 1, "uncompressed block length"),
            (raw_len * 255 + 255, "uncompressed block length"),
        ] {
            let mut bad = f.clone();
            bad[HEADER_BYTES + 12..HEADER_BYTES + 16].copy_from_slice(&declared.to_le_bytes());
            refix(&mut bad);
            let e = read_all(&bad).unwrap_err();
            assert!(e.what.contains(want), "{declared}: {e}");
            assert_eq!(e.block, Some(0));
        }
        // The most compressible block there is stays within LZ4's 255 to 1.
        let zeros = strings(1, |_| vec![0; 4 << 20]);
        let f0 = file(&zeros);
        assert!(f0.len() < (4 << 20) / 200, "{} bytes", f0.len());
        assert_eq!(read_all(&f0).unwrap(), zeros);
        // LZ4 input that is not LZ4, behind a valid checksum.
        let mut bad = f.clone();
        for b in &mut bad[HEADER_BYTES + 24..HEADER_BYTES + 40] {
            *b = 0xff;
        }
        refix(&mut bad);
        assert!(read_all(&bad).is_err());
    }

    /// Version 5 against version 4 on the bench's kind of data (16-byte keys, the load
    /// generator's 32-byte value) and on random data: compression is used where it pays,
    /// and the file is at most 51 bytes a key either way (what Redis's RDB takes).
    #[test]
    fn version_5_files_are_lean() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let bench = |i: u64, _: &mut dyn FnMut() -> u64| {
            (
                format!("key:{:012}", 100_000_000_000 + i * 7919 % 50_000).into_bytes(),
                b"abcdefghijklmnopqrstuvwxyzabcdef".to_vec(),
            )
        };
        let random = |_: u64, r: &mut dyn FnMut() -> u64| {
            let mut k: Vec<u8> = (0..2).flat_map(|_| r().to_le_bytes()).collect();
            k.truncate(16);
            let v: Vec<u8> = (0..4).flat_map(|_| r().to_le_bytes()).collect();
            (k, v)
        };
        for (name, gen, most) in [
            (
                "bench",
                &bench as &dyn Fn(u64, &mut dyn FnMut() -> u64) -> (Vec<u8>, Vec<u8>),
                30,
            ),
            ("random", &random, 51),
        ] {
            let recs: Vec<Record> = (0..50_000)
                .map(|i| {
                    let (key, data) = gen(i, &mut rand);
                    Record {
                        db: 0,
                        key,
                        expire_at_ms: 0,
                        value: RecordValue::Str { data, raw: false },
                    }
                })
                .collect();
            let (v5, v4) = (file(&recs).len(), file_v4(&recs, 4).len());
            assert!(
                v5 <= most * recs.len(),
                "{name}: {v5} bytes for {} keys",
                recs.len()
            );
            assert!(v5 * 3 / 2 < v4, "{name}: {v5} bytes, {v4} in version 4");
            assert_eq!(read_all(&file(&recs)).unwrap(), recs);
        }
        // Values that do not compress stay stored as they are.
        let recs = strings(100, |_| (0..1000).map(|_| rand() as u8).collect());
        let f = file(&recs);
        assert_eq!(u32_at(&f, HEADER_BYTES + 12), 0, "stored, not compressed");
        assert_eq!(read_all(&f).unwrap(), recs);
    }

    /// The end marker states the keys of each database (not the later parts of a large
    /// collection); a reader gets them before the blocks, and a count that does not match
    /// the blocks is refused. Tables sized from them take the keys without growing.
    #[test]
    fn key_counts_are_stated_checked_and_size_the_tables() {
        use crate::{Shard, ShardConfig};
        let mut recs = edge_records();
        recs.push(Record {
            db: 5,
            key: b"a list".to_vec(),
            expire_at_ms: 0,
            value: RecordValue::ListMore(
                crate::types::list::List::from_elements([&b"y"[..]], Default::default())
                    .raw_nodes(),
            ),
        });
        let f = file(&recs);
        let mut want = [0u64; DB_COUNT];
        for r in &recs {
            if !matches!(r.value, RecordValue::ListMore(_)) {
                want[r.db as usize] += 1;
            }
        }
        assert_eq!(Reader::new(&f).unwrap().key_counts(), Some(want));
        let mut bad = f.clone();
        let end = bad.len() - END_BYTES;
        bad[end + 16 + 8 * 3] += 1;
        let sum = xxh3_64(&bad[end..bad.len() - 8]);
        let at = bad.len() - 8;
        bad[at..].copy_from_slice(&sum.to_le_bytes());
        let e = read_all(&bad).unwrap_err();
        assert!(e.what.contains("keys in database 3"), "{e}");
        assert_eq!(e.offset as usize, end);

        let recs: Vec<Record> = (0..20_000u32)
            .map(|i| Record {
                db: 2,
                key: format!("k{i}").into_bytes(),
                expire_at_ms: 0,
                value: RecordValue::Int(i as i64),
            })
            .collect();
        let f = file(&recs);
        let r = Reader::new(&f).unwrap();
        let mut sh = Shard::new(1, ShardConfig::default());
        sh.snapshot_reserve(&r.key_counts().unwrap(), 1.0, f.len());
        let buckets = sh.dbs[2].dict.buckets();
        assert!(buckets >= 20_000 / 8, "{buckets} buckets");
        let mut r = Reader::new(&f).unwrap();
        while let Some(block) = r.next_block().unwrap() {
            sh.load_block(&block, 0, &mut |_| true);
        }
        assert_eq!(sh.db_len(2), 20_000);
        assert_eq!(
            sh.dbs[2].dict.buckets(),
            buckets,
            "no table grew while loading"
        );
        // A count from a crafted file is bounded by the file's size.
        let mut small = Shard::new(1, ShardConfig::default());
        small.snapshot_reserve(&[u64::MAX; DB_COUNT], 1.0, 1000);
        assert!(small.dbs[0].dict.buckets() <= 1024);
    }

    /// A large sorted set is written in parts (ZSetMore) and loads whole, in order, as a
    /// `skiplist`; a crafted record's NaN scores and repeated members do not load.
    #[test]
    fn large_zsets_are_written_in_parts_and_load_whole() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let mut a = Shard::new(5, ShardConfig::default());
        let names: Vec<String> = (0..100_000).map(|i| format!("member-{i:09}")).collect();
        for (c, chunk) in names.chunks(1000).enumerate() {
            let mut zadd = vec!["ZADD".to_string(), "z".to_string()];
            for (i, m) in chunk.iter().enumerate() {
                zadd.push(format!("{}", (c * 1000 + i) % 777));
                zadd.push(m.clone());
            }
            run(&mut a, now, &zadd);
        }
        let mut out = a.snapshot_begin(0, 1, now);
        while a.snapshot_step(1 << 20, &mut |blk| out.extend(blk)) {}
        let recs = read_all(&out).unwrap();
        assert!(recs
            .iter()
            .any(|r| matches!(r.value, RecordValue::ZSetMore(_))));
        let mut b = Shard::new(6, ShardConfig::default());
        let mut r = Reader::new(&out).unwrap();
        while let Some(block) = r.next_block().unwrap() {
            b.load_block(&block, now, &mut |_| true);
        }
        for cmd in [
            &["ZCARD", "z"][..],
            &["ZRANGE", "z", "5000", "5010", "WITHSCORES"],
            &["ZRANK", "z", "member-000077777"],
            &["OBJECT", "ENCODING", "z"],
        ] {
            assert_eq!(run(&mut b, now, cmd), run(&mut a, now, cmd), "{cmd:?}");
        }
        let crafted = vec![Record {
            db: 0,
            key: b"c".to_vec(),
            expire_at_ms: 0,
            value: RecordValue::ZSet(vec![
                ZElem {
                    member: b"a".to_vec(),
                    score_bits: f64::NAN.to_bits(),
                },
                ZElem {
                    member: b"b".to_vec(),
                    score_bits: 2f64.to_bits(),
                },
                ZElem {
                    member: b"b".to_vec(),
                    score_bits: 1f64.to_bits(),
                },
            ]),
        }];
        let f = file(&crafted);
        let mut c = Shard::new(7, ShardConfig::default());
        let mut r = Reader::new(&f).unwrap();
        while let Some(block) = r.next_block().unwrap() {
            c.load_block(&block, now, &mut |_| true);
        }
        assert_eq!(
            run(&mut c, now, &["ZRANGE", "c", "0", "-1", "WITHSCORES"]),
            b"*2\r\n$1\r\nb\r\n$1\r\n1\r\n"
        );
    }

    /// A shard dumped in bounded steps and loaded into an empty one holds the same keys,
    /// values and deadlines, minus those that expired meanwhile.
    #[test]
    fn a_shard_round_trips_through_a_file() {
        use crate::{Entry, Shard, ShardConfig};
        let mut a = Shard::new(1, ShardConfig::default());
        let now = 1_000_000;
        for db in [0usize, 7, 15] {
            for i in 0..2000u32 {
                let v = if i % 3 == 0 {
                    Value::Int(i as i64)
                } else {
                    Value::Str {
                        data: vec![i as u8; (i % 400) as usize],
                        raw: i % 5 == 0,
                    }
                };
                let mut e = Entry::new(v, now);
                e.expire_at_ms = match i % 4 {
                    0 => 0,
                    1 => now + 50, // expires before the load below
                    _ => now + 1_000_000,
                };
                a.store(db, format!("k{i}").as_bytes(), e);
            }
        }
        let mut out = a.snapshot_begin(0, 1, now);
        while a.snapshot_step(64, &mut |blk| out.extend(blk)) {}
        assert!(!a.snapshot_in_progress());
        assert_eq!(Reader::new(&out).unwrap().verify().unwrap().records, 6000);

        let later = now + 100;
        let mut c = Shard::new(2, ShardConfig::default());
        let mut r = Reader::new(&out).unwrap();
        let mut stored = 0;
        while let Some(block) = r.next_block().unwrap() {
            stored += c.load_block(&block, later, &mut |_| true);
        }
        assert_eq!(
            stored, 4500,
            "the 1500 keys past their deadline are dropped"
        );
        // A second snapshot of the same shard sees every key again (the epoch bits flipped
        // back to "pending" for all of them).
        let mut again = a.snapshot_begin(0, 1, now);
        while a.snapshot_step(1000, &mut |blk| again.extend(blk)) {}
        assert_eq!(Reader::new(&again).unwrap().verify().unwrap().records, 6000);
        for db in [0usize, 7, 15] {
            for i in 0..2000u32 {
                let key = format!("k{i}");
                let want = a
                    .lookup(db, key.as_bytes(), later)
                    .map(|e| (e.value().to_value(), e.expire_at_ms()));
                let got = c
                    .lookup(db, key.as_bytes(), later)
                    .map(|e| (e.value().to_value(), e.expire_at_ms()));
                assert_eq!(got, want, "db {db} key {key}");
            }
        }
    }

    /// Point in time: whatever the writes do while the walk runs — overwrite, delete,
    /// append, expire, add keys, flush a database, swap two — the file holds the shard as it
    /// was when the snapshot began, each key once.
    #[test]
    fn a_snapshot_is_the_state_at_its_start_whatever_writes_do_meanwhile() {
        use crate::{Entry, Shard, ShardConfig};
        use std::collections::BTreeMap;
        let mut sh = Shard::new(9, ShardConfig::default());
        let now = 5_000;
        let mut want = BTreeMap::new();
        for db in [0usize, 1, 2] {
            for i in 0..3000u32 {
                let key = format!("k{i}").into_bytes();
                let v = if i % 10 == 0 {
                    // Every tenth key a hash, some past the listpack limit, edited in place
                    // below.
                    let mut h = crate::types::hash::Hash::default();
                    for f in 0..(i % 700) {
                        h.set(
                            format!("f{f}").as_bytes(),
                            format!("{db}-{i}").as_bytes(),
                            Default::default(),
                            3,
                        );
                    }
                    h.set(b"f", b"v", Default::default(), 3);
                    Value::Hash(Box::new(h))
                } else {
                    Value::Str {
                        data: format!("v{db}-{i}").into_bytes(),
                        raw: false,
                    }
                };
                sh.store(db, &key, Entry::new(v.clone(), now));
                want.insert((db as u8, key), v);
            }
        }
        let mut out = sh.snapshot_begin(0, 1, now);
        let mut steps = 0;
        let mut x = 7u64;
        while sh.snapshot_step(16, &mut |blk| out.extend(blk)) {
            steps += 1;
            // Writes between steps, all over the keyspace.
            for _ in 0..40 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let db = (x % 3) as usize;
                let key = format!("k{}", (x >> 8) % 3000).into_bytes();
                match (x >> 40) % 5 {
                    0 => sh.store(db, &key, Entry::new(Value::Int(-1), now)),
                    1 => {
                        sh.delete(db, &key);
                    }
                    2 => {
                        if let Some(mut e) = sh.lookup(db, &key, now) {
                            if !e.value().is_string() {
                                let mut h = e.hash_mut().expect("only hashes and strings");
                                h.set(b"f", b"changed", Default::default(), 3);
                                h.remove(b"f0");
                                h.set(format!("new{x}").as_bytes(), b"1", Default::default(), 3);
                            } else {
                                e.edit_raw(|d| d.extend_from_slice(b"+"));
                            }
                        }
                    }
                    3 => {
                        sh.set_expire(db, &key, now + 1);
                    }
                    _ => sh.store(
                        db,
                        format!("new{x}").as_bytes(),
                        Entry::new(Value::Int(1), now),
                    ),
                }
            }
            if steps == 20 {
                sh.flush_db(1);
            }
            if steps == 30 {
                sh.dbs.swap(0, 2);
            }
            if steps % 7 == 0 {
                sh.lazyfree_step(64, 1);
            }
            assert!(steps < 100_000);
        }
        assert!(
            steps > 30,
            "the walk ran long enough to meet the writes: {steps} steps"
        );
        let mut got = BTreeMap::new();
        let mut r = Reader::new(&out).unwrap();
        while let Some(block) = r.next_block().unwrap() {
            for rec in block.records() {
                let prev = got.insert((rec.db, rec.key.to_vec()), rec.value.to_value());
                assert!(prev.is_none(), "a key saved twice");
            }
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the file differs from the state at the start");
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            0u8..16,
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<u64>(),
            prop_oneof![
                any::<i64>().prop_map(RecordValue::Int),
                (
                    proptest::collection::vec(any::<u8>(), 0..600),
                    any::<bool>()
                )
                    .prop_map(|(data, raw)| RecordValue::Str { data, raw }),
                proptest::collection::vec(
                    (
                        proptest::collection::vec(any::<u8>(), 0..20),
                        proptest::collection::vec(any::<u8>(), 0..40)
                    ),
                    1..10
                )
                .prop_map(|pairs| RecordValue::Hash(
                    pairs
                        .into_iter()
                        .map(|(field, value)| Pair { field, value })
                        .collect()
                )),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..10)
                    .prop_map(RecordValue::Set),
                proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..12), any::<u64>()),
                    1..10
                )
                .prop_map(|els| RecordValue::ZSet(
                    els.into_iter()
                        .map(|(member, score_bits)| ZElem { member, score_bits })
                        .collect()
                )),
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..10)
                    .prop_map(|els| RecordValue::List(
                        crate::types::list::List::from_elements(
                            els.iter().map(|e| &e[..]),
                            crate::types::list::ListLimits {
                                fill: 3,
                                ..Default::default()
                            },
                        )
                        .raw_nodes()
                    )),
            ],
        )
            .prop_map(|(db, key, expire_at_ms, value)| Record {
                db,
                key,
                expire_at_ms,
                value,
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(recs in proptest::collection::vec(record(), 0..300)) {
            prop_assert_eq!(read_all(&file(&recs)).unwrap(), recs);
        }
    }
}
