//! Fuzzes the snapshot loader: arbitrary bytes as a whole file, and arbitrary bytes as the
//! payload of a block whose framing and checksum are made valid (so the fuzzer reaches the
//! rkyv validation and the loading behind the checksums). Any panic is a bug; every input
//! must end in a clean error or a loaded shard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_shard::snapshot::{BlockBuilder, Header, Reader, VERSION};
use percore_shard::{Shard, ShardConfig};
use xxhash_rust::xxh3::Xxh3;

fn load(bytes: &[u8]) {
    let Ok(mut r) = Reader::new(bytes) else { return };
    let mut shard = Shard::new(1, ShardConfig::default());
    loop {
        match r.next_block() {
            Ok(Some(block)) => {
                shard.load_block(&block, 1_000, &mut |k| k.len() % 7 != 3);
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// A file whose only block carries `payload` with a correct header and checksum.
fn framed(payload: &[u8], records: u32) -> Vec<u8> {
    let mut out = Header { version: VERSION, shard: 0, shards: 1, created_ms: 0 }
        .encode()
        .to_vec();
    let mut head = Vec::new();
    head.extend_from_slice(b"BLK\0");
    head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    head.extend_from_slice(&records.to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    let mut h = Xxh3::new();
    h.update(&head);
    h.update(payload);
    out.extend_from_slice(&head);
    out.extend_from_slice(&h.digest().to_le_bytes());
    out.extend_from_slice(payload);
    let mut end = BlockBuilder::default();
    end.blocks = 1;
    end.records = records as u64;
    out.extend_from_slice(&end.end());
    out
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => load(rest),
        Some((n, rest)) => load(&framed(rest, *n as u32 % 8)),
        None => {}
    }
});
