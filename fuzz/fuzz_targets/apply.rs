//! Fuzzes the whole request path below the network: bytes are decoded into commands, each
//! is resolved against the command table and applied to one shard, with a clock that moves
//! and background steps in between (expiry, rehash, lazy free, eviction under a policy
//! chosen by the input's length, and a copy-before-write snapshot walked a step at a time
//! while the commands run). No input may panic or corrupt the shard, and every snapshot
//! must read back whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore_proto::{command::resolve, Args, Decoded, Limits, Protocol, ReplyWriter, RequestDecoder};
use percore_shard::evict::POLICIES;
use percore_shard::snapshot::Reader;
use percore_shard::{ExecCtx, Shard, ShardConfig};

fuzz_target!(|data: &[u8]| {
    let mut config = ShardConfig { proto_max_bulk_len: 1 << 20, ..Default::default() };
    config.evict.policy = POLICIES[data.len() % POLICIES.len()].0;
    // A third of the inputs build lists of 2-element nodes under list-compress-depth 1 or 2,
    // so edits and reads reach compressed interior nodes.
    if data.len() % 3 == 0 {
        config.list_limits.fill = 2;
        config.list_limits.compress_depth = 1 + data.len() % 2;
    }
    let mut shard = Shard::new(7, config);
    // Keyspace events of every class, and a tracking client whose reads are remembered
    // (half the inputs): the event and invalidation paths run with every command.
    if data.len() % 2 == 0 {
        shard.set_notify(percore_shard::notify::parse_flags(b"KEA").expect("valid flags"));
        shard.caller.set(Some(percore_shard::tracking::Caller { id: 1, core: 0, remember: true }));
        shard.with_tracking(|t| t.add_prefix(b"k", &percore_shard::tracking::Caller { id: 2, core: 0, remember: false }));
    }
    let mut d = RequestDecoder::new(Limits::default());
    let mut buf = data.to_vec();
    let mut at = 0;
    let mut now = 1_700_000_000_000u64;
    let mut out = Vec::new();
    let mut file: Option<Vec<u8>> = None;
    while let Ok(decoded @ (Decoded::Command { consumed } | Decoded::Empty { consumed })) = d.decode(&mut buf[at..]) {
        let frame = &buf[at..at + consumed];
        if matches!(decoded, Decoded::Empty { .. }) {
            assert!(d.args().is_empty(), "no stale arguments after an empty frame");
        } else {
            let args = Args::new(frame, d.args());
            if let Ok(spec) = resolve(&args) {
                now += (args.len() as u64) * 7;
                out.clear();
                let proto = if consumed % 2 == 0 { Protocol::Resp2 } else { Protocol::Resp3 };
                shard.apply(&ExecCtx { db: consumed % 16, now_ms: now }, spec, args, &mut ReplyWriter::new(&mut out, proto));
                assert!(!out.is_empty(), "every command replies");
                shard.events.clear();
                let _ = shard.take_invalidations();
                shard.expire_step(now, 8);
                shard.rehash_step(2);
                shard.lazyfree_step(16, 1);
                if consumed % 3 == 0 {
                    shard.evict(now, 2, &mut || true);
                }
                // Every fifth command begins a snapshot if none runs; each command walks it on.
                if file.is_none() && consumed % 5 == 0 {
                    file = Some(shard.snapshot_begin(0, 1, now));
                }
                if let Some(f) = file.as_mut() {
                    if !shard.snapshot_step(2, &mut |b| f.extend(b)) {
                        let f = file.take().expect("checked above");
                        Reader::new(&f).and_then(|r| r.verify()).expect("a snapshot reads back whole");
                    }
                }
            }
        }
        at += consumed;
        if at >= buf.len() {
            break;
        }
    }
    if file.is_some() {
        let mut f = file.take().unwrap_or_default();
        while shard.snapshot_step(64, &mut |b| f.extend(b)) {}
        Reader::new(&f).and_then(|r| r.verify()).expect("a snapshot reads back whole");
    }
});
