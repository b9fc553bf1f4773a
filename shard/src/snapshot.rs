//! The snapshot file format: one file per shard, every byte checked on load.
//!
//! ```text
//!  header   "PCSNAP\0\0" | version u32 | shard u32 | shards u32 | 0 u32 | created_ms u64 | xxh3 u64
//!  block*   "BLK\0" | payload_len u32 | records u32 | 0 u32 | xxh3 u64 | payload (rkyv `Block`)
//!  end      "END\0" | blocks u32 | records u64 | xxh3 u64
//! ```
//!
//! - All integers little-endian. Each checksum is xxh3-64 over every byte of its section
//!   before the checksum (a block's covers its header fields and its payload), so any flipped
//!   byte anywhere is caught and reported with the block and the file offset.
//! - A block's payload is an rkyv archive of up to [`BLOCK_TARGET_BYTES`] of records (one
//!   record may exceed it: a 512 MB string is one block). It is validated (bytecheck) before
//!   any field is read: the file is untrusted input.
//! - A record holds the database, the key, the deadline (0: none) and the value; a value is
//!   an enum so new types are new variants (readers reject variants they do not know).
//! - The end marker's counts must match what was read, and nothing may follow it, so a
//!   truncated file never loads as if whole.
//!
//! This module is pure (bytes in, bytes out); the server writes and reads the files.

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::value::Value;

pub const MAGIC: &[u8; 8] = b"PCSNAP\0\0";
pub const VERSION: u32 = 4;
/// The oldest format version this build still reads (version 1 had strings only, version 2
/// added hashes and sets, 3 lists, 4 sorted sets; each one's records are a subset of the
/// next one's).
pub const MIN_VERSION: u32 = 1;
const BLOCK_TAG: &[u8; 4] = b"BLK\0";
const END_TAG: &[u8; 4] = b"END\0";
pub const HEADER_BYTES: usize = 40;
const BLOCK_HEADER_BYTES: usize = 24;
pub const END_BYTES: usize = 24;
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
    /// (`crate::types::list`, checked on read) (since version 3). Saving copies bytes per
    /// node rather than allocating per element.
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

impl ArchivedRecordValue {
    /// The value for the table, with the default encoding limits (tests, tools).
    pub fn to_value(&self) -> Value {
        self.to_value_with(&crate::ShardConfig::default(), 0x5EED)
    }

    /// The value for the table: collections in the encodings `config`'s limits call for,
    /// their tables keyed by `seed`.
    pub fn to_value_with(&self, config: &crate::ShardConfig, seed: u64) -> Value {
        match self {
            ArchivedRecordValue::Int(i) => Value::Int(i.to_native()),
            ArchivedRecordValue::Str { data, raw } => Value::Str {
                data: data.as_slice().to_vec(),
                raw: *raw,
            },
            ArchivedRecordValue::Hash(pairs) | ArchivedRecordValue::HashMore(pairs) => {
                Value::Hash(Box::new(crate::types::hash::Hash::from_pairs(
                    pairs
                        .iter()
                        .map(|p| (p.field.as_slice(), p.value.as_slice())),
                    config.hash_limits,
                    seed,
                )))
            }
            ArchivedRecordValue::Set(members) | ArchivedRecordValue::SetMore(members) => {
                Value::Set(Box::new(crate::types::set::Set::from_members(
                    members.iter().map(|m| m.as_slice()),
                    config.set_limits,
                    seed,
                )))
            }
            ArchivedRecordValue::ZSet(elems) | ArchivedRecordValue::ZSetMore(elems) => {
                // Only a crafted file repeats a member or holds a NaN: the last score of a
                // member wins, NaNs are skipped.
                let mut seen: std::collections::HashMap<&[u8], f64> =
                    std::collections::HashMap::with_capacity(elems.len());
                let mut order: Vec<&[u8]> = Vec::with_capacity(elems.len());
                for e in elems.iter() {
                    let s = f64::from_bits(e.score_bits.to_native());
                    if s.is_nan() {
                        continue;
                    }
                    if seen.insert(e.member.as_slice(), s).is_none() {
                        order.push(e.member.as_slice());
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
            ArchivedRecordValue::List(nodes) | ArchivedRecordValue::ListMore(nodes) => {
                Value::List(Box::new(
                    crate::types::list::List::from_raw_nodes(
                        nodes.iter().map(|n| n.as_slice()),
                        config.list_limits,
                    )
                    .unwrap_or_default(),
                ))
            }
        }
    }
}

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
    block: Block,
    bytes: usize,
    /// Records waiting for a later step (the rest of a long list, in parts).
    pending: std::collections::VecDeque<Record>,
    /// Blocks and records framed so far (for the end marker).
    pub blocks: u32,
    pub records: u64,
}

impl BlockBuilder {
    /// Adds a record; true when the block has reached its target size and should be taken
    /// with [`BlockBuilder::take_block`].
    pub fn push(&mut self, r: Record) -> bool {
        self.bytes += r.key.len() + 32 + r.value.payload_bytes();
        self.block.records.push(r);
        self.bytes >= BLOCK_TARGET_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.block.records.is_empty()
    }

    /// Frames waiting records (handed to `emit` as blocks fill). Whole records always go;
    /// a long list goes in parts, and once about `budget` bytes went out in this call the
    /// rest of a list waits for the next one. True while some still wait.
    fn drain(&mut self, budget: usize, emit: &mut dyn FnMut(Vec<u8>)) -> bool {
        let mut spent = 0;
        loop {
            let rest_of_a_collection = matches!(
                self.pending.front().map(|r| &r.value),
                Some(
                    RecordValue::ListMore(_)
                        | RecordValue::HashMore(_)
                        | RecordValue::SetMore(_)
                        | RecordValue::ZSetMore(_)
                )
            );
            if spent >= budget && rest_of_a_collection {
                break;
            }
            let Some(mut r) = self.pending.pop_front() else {
                return false;
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
                self.pending.push_front(Record {
                    db: r.db,
                    key: r.key.clone(),
                    expire_at_ms: r.expire_at_ms,
                    value,
                });
            }
            spent += r.key.len() + 32 + r.value.payload_bytes();
            if self.push(r) {
                emit(self.take_block());
            }
        }
        !self.pending.is_empty()
    }

    /// The framed bytes of the records added since the last call (empty when none).
    pub fn take_block(&mut self) -> Vec<u8> {
        if self.block.records.is_empty() {
            return Vec::new();
        }
        let block = std::mem::take(&mut self.block);
        self.bytes = 0;
        let payload =
            rkyv::to_bytes::<RkyvError>(&block).expect("serializing owned records cannot fail");
        let n = block.records.len() as u32;
        let mut out = Vec::with_capacity(BLOCK_HEADER_BYTES + payload.len());
        out.extend_from_slice(BLOCK_TAG);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut h = Xxh3::new();
        h.update(&out[..16]);
        h.update(&payload);
        out.extend_from_slice(&h.digest().to_le_bytes());
        out.extend_from_slice(&payload);
        self.blocks += 1;
        self.records += n as u64;
        out
    }

    /// The end marker, after the last block.
    pub fn end(&self) -> [u8; END_BYTES] {
        let mut b = [0u8; END_BYTES];
        b[..4].copy_from_slice(END_TAG);
        b[4..8].copy_from_slice(&self.blocks.to_le_bytes());
        b[8..16].copy_from_slice(&self.records.to_le_bytes());
        let sum = xxh3_64(&b[..16]);
        b[16..24].copy_from_slice(&sum.to_le_bytes());
        b
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

/// A validated block: its archive, ready to be read record by record.
pub struct BlockView {
    payload: AlignedVec<16>,
    pub index: u32,
    pub offset: u64,
}

impl BlockView {
    /// The records, validated when the block was read.
    pub fn records(&self) -> &rkyv::vec::ArchivedVec<ArchivedRecord> {
        // SAFETY: `payload` passed `rkyv::access::<ArchivedBlock>` (bytecheck validation) in
        // `Reader::next_block` and has not been modified since: a BlockView never hands out
        // mutable access to it.
        unsafe { &rkyv::access_unchecked::<ArchivedBlock>(&self.payload).records }
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
            ended: false,
        })
    }

    fn fail(&self, at: usize, block: Option<u32>, what: impl Into<String>) -> SnapshotError {
        SnapshotError {
            offset: at as u64,
            block,
            what: what.into(),
        }
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
            if rest.len() < END_BYTES {
                return Err(self.fail(at, None, "truncated end marker"));
            }
            if xxh3_64(&rest[..16]) != u64_at(rest, 16) {
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
            if rest.len() > END_BYTES {
                return Err(self.fail(at + END_BYTES, None, "bytes after the end marker"));
            }
            self.ended = true;
            self.summary.bytes = self.bytes.len() as u64;
            return Ok(None);
        }
        if &rest[..4] != BLOCK_TAG {
            return Err(self.fail(at, Some(index), "bad block tag"));
        }
        if rest.len() < BLOCK_HEADER_BYTES {
            return Err(self.fail(at, Some(index), "truncated block header"));
        }
        let len = u32_at(rest, 4) as usize;
        let n = u32_at(rest, 8);
        if len > BLOCK_MAX_BYTES || u32_at(rest, 12) != 0 {
            return Err(self.fail(at, Some(index), format!("bad block length {len}")));
        }
        if rest.len() < BLOCK_HEADER_BYTES + len {
            return Err(self.fail(
                at,
                Some(index),
                format!(
                    "truncated block: {len} payload bytes declared, {} present",
                    rest.len() - BLOCK_HEADER_BYTES
                ),
            ));
        }
        let payload = &rest[BLOCK_HEADER_BYTES..BLOCK_HEADER_BYTES + len];
        let mut h = Xxh3::new();
        h.update(&rest[..16]);
        h.update(payload);
        if h.digest() != u64_at(rest, 16) {
            return Err(self.fail(at, Some(index), "block checksum mismatch"));
        }
        let mut aligned = AlignedVec::<16>::with_capacity(len);
        aligned.extend_from_slice(payload);
        let archived = rkyv::access::<ArchivedBlock, RkyvError>(&aligned)
            .map_err(|e| self.fail(at, Some(index), format!("invalid records: {e}")))?;
        if archived.records.len() as u64 != n as u64 {
            return Err(self.fail(at, Some(index), "record count mismatch"));
        }
        if let Some(r) = archived
            .records
            .iter()
            .find(|r| r.db as usize >= crate::DB_COUNT)
        {
            return Err(self.fail(at, Some(index), format!("database {} out of range", r.db)));
        }
        let bad_list = archived.records.iter().find(|r| match &r.value {
            ArchivedRecordValue::List(nodes) | ArchivedRecordValue::ListMore(nodes) => nodes
                .iter()
                .any(|n| crate::types::list::decode_node(n.as_slice()).is_none()),
            _ => false,
        });
        if let Some(r) = bad_list {
            let key = String::from_utf8_lossy(r.key.as_slice()).into_owned();
            return Err(self.fail(
                at,
                Some(index),
                format!("malformed list nodes in key '{key}'"),
            ));
        }
        self.pos = at + BLOCK_HEADER_BYTES + len;
        self.summary.blocks += 1;
        self.summary.records += n as u64;
        Ok(Some(BlockView {
            payload: aligned,
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
        let saved: Vec<Record> = self
            .dbs
            .iter_mut()
            .map(|d| &mut d.dict)
            .chain(self.garbage.iter_mut())
            .flat_map(|d| std::mem::take(&mut d.snap.saved))
            .chain(std::mem::take(&mut self.snap_orphans))
            .collect();
        b.pending.extend(saved);
        let waiting = b.drain(STEP_BYTES, emit);
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
        emit(b.end().to_vec());
        false
    }

    /// Stores a block's records whose deadline has not passed; returns how many it stored.
    /// `accept` picks the records this shard owns (all of them unless the file was written
    /// with another shard count).
    pub fn load_block(
        &mut self,
        block: &BlockView,
        now_ms: u64,
        accept: &mut dyn FnMut(&[u8]) -> bool,
    ) -> usize {
        let mut stored = 0;
        for r in block.records().iter() {
            let at = r.expire_at_ms.to_native();
            // An empty collection never exists (Redis skips one in an RDB file too); only a
            // crafted file holds one, and it must not become a key of no fields.
            // The rest of a collection a previous record began (and stored, unless it had
            // expired or belongs to another shard: then there is nothing to extend).
            let more = matches!(
                &r.value,
                ArchivedRecordValue::ListMore(_)
                    | ArchivedRecordValue::HashMore(_)
                    | ArchivedRecordValue::SetMore(_)
                    | ArchivedRecordValue::ZSetMore(_)
            );
            if more {
                let (config, seed) = (self.config.clone(), self.next_rand());
                if let Some(mut e) = self.lookup(r.db as usize, r.key.as_slice(), now_ms) {
                    match &r.value {
                        ArchivedRecordValue::ListMore(nodes) => {
                            if let Some(l) = e.list_mut() {
                                let nodes = nodes.iter().map(|n| n.as_slice());
                                l.append_raw_nodes(nodes, config.list_limits);
                            }
                        }
                        ArchivedRecordValue::HashMore(pairs) => {
                            if let Some(h) = e.hash_mut() {
                                for p in pairs.iter() {
                                    let (f, v) = (p.field.as_slice(), p.value.as_slice());
                                    h.set(f, v, config.hash_limits, seed);
                                }
                            }
                        }
                        ArchivedRecordValue::SetMore(members) => {
                            if let Some(s) = e.set_mut() {
                                for m in members.iter() {
                                    s.add(m.as_slice(), config.set_limits, seed);
                                }
                            }
                        }
                        ArchivedRecordValue::ZSetMore(elems) => {
                            if let Some(z) = e.zset_mut() {
                                for el in elems.iter() {
                                    let (m, s) = (el.member.as_slice(), el.score_bits.to_native());
                                    let s = f64::from_bits(s);
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
                }
                continue;
            }
            let empty = match &r.value {
                ArchivedRecordValue::Hash(p) => p.is_empty(),
                ArchivedRecordValue::Set(m) => m.is_empty(),
                ArchivedRecordValue::ZSet(e) => e.is_empty(),
                ArchivedRecordValue::List(nodes) => nodes.iter().all(|n| n.is_empty()),
                _ => false,
            };
            if (at != 0 && now_ms > at) || empty || !accept(r.key.as_slice()) {
                continue;
            }
            let seed = self.next_rand();
            let value = r.value.to_value_with(&self.config, seed);
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
            // Loading is no change to the keyspace: no "new" events (Redis's dbAddRDBLoad).
            self.store_quietly(r.db as usize, r.key.as_slice(), e);
            stored += 1;
        }
        stored
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

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, SnapshotError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(block) = r.next_block()? {
            for rec in block.records().iter() {
                out.push(rkyv::deserialize::<Record, RkyvError>(rec).expect("validated"));
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
        let recs: Vec<Record> = (0..3000u32)
            .map(|i| Record {
                db: 0,
                key: i.to_le_bytes().to_vec(),
                expire_at_ms: 0,
                value: RecordValue::Str {
                    data: vec![1; 200],
                    raw: false,
                },
            })
            .collect();
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

    /// A list of several MB is written in parts of about [`PART_BYTES`], a bounded amount
    /// per step, and loads back whole; a part whose head was not loaded (expired, or another
    /// shard's key) is skipped.
    #[test]
    fn a_long_list_is_written_in_parts_and_loads_whole() {
        use crate::testing::run;
        use crate::{Shard, ShardConfig};
        let now = 1_700_000_000_000u64;
        let mut a = Shard::new(5, ShardConfig::default());
        let elems: Vec<String> = (0..200_000).map(|i| format!("element-{i:09}")).collect();
        for chunk in elems.chunks(1000) {
            let mut args = vec!["RPUSH", "big"];
            args.extend(chunk.iter().map(|e| e.as_str()));
            run(&mut a, now, &args);
        }
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
        let mut f = file(&recs);
        f[8] = 1;
        let sum = xxh3_64(&f[..32]);
        f[32..40].copy_from_slice(&sum.to_le_bytes());
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
        let mut f = file(&recs);
        f[8] = 3;
        let sum = xxh3_64(&f[..32]);
        f[32..40].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(Reader::new(&f).unwrap().header.version, 3);
        assert_eq!(read_all(&f).unwrap(), recs);
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
                            if let Some(h) = e.hash_mut() {
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
            for rec in block.records().iter() {
                let prev = got.insert((rec.db, rec.key.as_slice().to_vec()), rec.value.to_value());
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
