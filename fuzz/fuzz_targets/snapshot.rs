//! Fuzzes the snapshot loader: arbitrary bytes as a whole file; arbitrary bytes as the
//! payload of a block whose framing and checksum are made valid (so the fuzzer reaches the
//! rkyv validation and the loading behind the checksums), in a file of version 4 (the older
//! reader, re-encoding into columns) or of version 5, stored or as LZ4 input; and arbitrary
//! columns in a valid version 5 archive, so that the column parser and the loader see any
//! lengths, counts, flags and varints. Any panic is a bug; every input must end in a clean
//! error or a loaded shard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_shard::snapshot::{frame_columns, BlockBuilder, Header, Reader};
use percore_shard::{Shard, ShardConfig};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

fn load(bytes: &[u8]) {
    let Ok(mut r) = Reader::new(bytes) else { return };
    let mut shard = Shard::new(1, ShardConfig::default());
    if let Some(keys) = r.key_counts() {
        shard.snapshot_reserve(&keys, 1.0, bytes.len().min(1 << 16));
    }
    loop {
        match r.next_block() {
            Ok(Some(block)) => {
                shard.load_block(&block, 1_000, &mut |k| k.len() % 7 != 3);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

fn header(version: u32) -> Vec<u8> {
    Header { version, shard: 0, shards: 1, created_ms: 0 }.encode().to_vec()
}

/// The end marker after one block of `records` records.
fn end(version: u32, records: u32) -> Vec<u8> {
    if version >= 5 {
        let mut end = BlockBuilder::default();
        end.blocks = 1;
        end.records = records as u64;
        end.keys[0] = records as u64;
        return end.end();
    }
    let mut e = b"END\0".to_vec();
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(records as u64).to_le_bytes());
    let sum = xxh3_64(&e);
    e.extend_from_slice(&sum.to_le_bytes());
    e
}

/// A file whose only block carries `payload` with a correct header and checksum.
fn framed(version: u32, payload: &[u8], records: u32, raw_len: u32) -> Vec<u8> {
    let mut out = header(version);
    let mut head = Vec::new();
    head.extend_from_slice(b"BLK\0");
    head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    head.extend_from_slice(&records.to_le_bytes());
    head.extend_from_slice(&raw_len.to_le_bytes());
    let mut h = Xxh3::new();
    h.update(&head);
    h.update(payload);
    out.extend_from_slice(&head);
    out.extend_from_slice(&h.digest().to_le_bytes());
    out.extend_from_slice(payload);
    out.extend(end(version, records));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let records = (mode >> 2) as u32 % 16;
    match mode & 3 {
        0 if mode == 0 => load(rest),
        0 => load(&framed(4, rest, records, 0)),
        1 => load(&framed(5, rest, records, 0)),
        2 => {
            // rest: split point, then meta and data.
            let Some((&cut, cols)) = rest.split_first() else { return };
            let cut = (cut as usize).min(cols.len());
            let (meta, data) = cols.split_at(cut);
            let mut f = header(5);
            f.extend(frame_columns(meta.to_vec(), data.to_vec(), records, mode & 0x40 != 0));
            f.extend(end(5, records));
            load(&f);
        }
        _ => {
            // LZ4 input with a declared size.
            let Some((len, stored)) = rest.split_at_checked(2) else { return };
            let raw_len = u16::from_le_bytes([len[0], len[1]]) as u32 + 1;
            load(&framed(5, stored, records, raw_len));
        }
    }
});
