//! Keys → shards, and the merging of per-shard replies.
//!
//! A key's shard is `(xxh3_64(tag) × shards) >> 64` where `tag` is the key's non-empty
//! `{hash tag}` (Redis Cluster's rule) or else the whole key. The hash is unseeded so the
//! mapping is stable across restarts (snapshots rely on it), and multiply-shift avoids a
//! division on the hot path.
//!
//! In cluster mode a key's shard follows its hash slot instead (`slot mod shards`, the slot
//! being CRC16 of the same tag): a slot's keys then live on one core, so COUNTKEYSINSLOT,
//! GETKEYSINSLOT and a slot's migration touch one core. Slots are dealt to cores in turn
//! because nodes own contiguous slot ranges: `slot × shards / 16384` (ranges of slots per
//! core) would put a node owning a third of the slots on one or two of its cores. The mode
//! is fixed at start, before any core runs,
//! so the choice is one predictable branch. A snapshot records which mapping placed its keys
//! (the manifest's `placement` line); loading it under the other one re-routes every key.

use percore_proto::encode::{parse_int_reply, split_array_reply, split_bulks};
use percore_proto::{Merge, ReplyWriter};
use std::sync::atomic::{AtomicBool, Ordering};
use xxhash_rust::xxh3::xxh3_64;

/// The part of a key that decides its shard.
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&c| c == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&c| c == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

static BY_SLOT: AtomicBool = AtomicBool::new(false);

/// Places keys by hash slot from now on (cluster mode). Called once at start, before any
/// core routes a key.
pub fn place_by_slot() {
    BY_SLOT.store(true, Ordering::Relaxed);
}

/// Whether keys are placed by hash slot (cluster mode) rather than by xxh3.
#[inline]
pub fn by_slot() -> bool {
    BY_SLOT.load(Ordering::Relaxed)
}

#[inline]
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    if shards == 1 {
        return 0;
    }
    if by_slot() {
        return slot_shard(crate::cluster::key_slot(key), shards);
    }
    ((xxh3_64(hash_tag(key)) as u128 * shards as u128) >> 64) as usize
}

/// The shard that holds hash slot `slot`'s keys in cluster mode: slots dealt in turn.
#[inline]
pub fn slot_shard(slot: u16, shards: usize) -> usize {
    slot as usize % shards
}

fn first_error<'a>(parts: &[&'a [u8]]) -> Option<&'a [u8]> {
    parts.iter().copied().find(|p| p.first() == Some(&b'-'))
}

/// Merges per-shard replies of one command. `order` (for `KeyOrderArray`) lists, for each
/// key in the client's order, which part holds its value and at which position.
pub fn merge(out: &mut ReplyWriter, how: Merge, parts: &[&[u8]], order: &[(u32, u32)]) {
    if let Some(e) = first_error(parts) {
        return out.raw(e);
    }
    match how {
        Merge::Sum => {
            let mut total = 0i64;
            for p in parts {
                match parse_int_reply(p) {
                    Some(n) => total += n,
                    None => {
                        return out
                            .error("ERR internal error: a shard returned a non-integer reply")
                    }
                }
            }
            out.int(total);
        }
        Merge::AllOk => out.ok(),
        Merge::Concat => {
            let mut n = 0;
            let mut bodies = Vec::with_capacity(parts.len());
            for p in parts {
                match split_array_reply(p) {
                    Some((c, body)) => {
                        n += c;
                        bodies.push(body);
                    }
                    None => {
                        return out.error("ERR internal error: a shard returned a non-array reply")
                    }
                }
            }
            out.array(n);
            for b in bodies {
                out.raw(b);
            }
        }
        Merge::KeyOrderArray => {
            let mut elems: Vec<Vec<&[u8]>> = Vec::with_capacity(parts.len());
            for p in parts {
                let mut v = Vec::new();
                let ok = split_array_reply(p).and_then(|(n, body)| split_bulks(body, n, &mut v));
                if ok.is_none() {
                    return out
                        .error("ERR internal error: a shard returned a malformed array reply");
                }
                elems.push(v);
            }
            out.array(order.len());
            for &(part, pos) in order {
                match elems.get(part as usize).and_then(|e| e.get(pos as usize)) {
                    Some(e) => out.raw(e),
                    None => out.null(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percore_proto::Protocol;

    #[test]
    fn hash_tags_follow_redis_cluster() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"nobraces"), b"nobraces");
        assert_eq!(shard_of(b"{a}x", 4), shard_of(b"{a}y", 4));
    }

    #[test]
    fn shards_are_balanced_and_stable() {
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[shard_of(format!("key:{i}").as_bytes(), 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        // Stable across runs and builds: snapshots depend on it.
        assert_eq!(shard_of(b"key:1", 4), shard_of(b"key:1", 4));
        assert_eq!(shard_of(b"anything", 1), 0);
    }

    #[test]
    fn a_nodes_slot_range_spreads_over_every_core() {
        // A node of 4 cores owning the first third of the slots, as redis-cli makes it.
        let mut per_core = [0; 4];
        for slot in 0..5461 {
            per_core[slot_shard(slot, 4)] += 1;
        }
        assert_eq!(per_core, [1366, 1365, 1365, 1365]);
        assert_eq!(slot_shard(16383, 3), 16383 % 3);
    }

    #[test]
    fn merges() {
        let run = |how, parts: &[&[u8]], order: &[(u32, u32)]| {
            let mut buf = Vec::new();
            merge(
                &mut ReplyWriter::new(&mut buf, Protocol::Resp2),
                how,
                parts,
                order,
            );
            buf
        };
        assert_eq!(run(Merge::Sum, &[b":2\r\n", b":3\r\n"], &[]), b":5\r\n");
        assert_eq!(
            run(Merge::AllOk, &[b"+OK\r\n", b"+OK\r\n"], &[]),
            b"+OK\r\n"
        );
        assert_eq!(
            run(Merge::AllOk, &[b"+OK\r\n", b"-ERR x\r\n"], &[]),
            b"-ERR x\r\n"
        );
        assert_eq!(
            run(Merge::Concat, &[b"*1\r\n$1\r\na\r\n", b"*0\r\n"], &[]),
            b"*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            run(
                Merge::KeyOrderArray,
                &[b"*2\r\n$1\r\na\r\n$-1\r\n", b"*1\r\n$1\r\nb\r\n"],
                &[(1, 0), (0, 1), (0, 0)]
            ),
            b"*3\r\n$1\r\nb\r\n$-1\r\n$1\r\na\r\n"
        );
    }
}
