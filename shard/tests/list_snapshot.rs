//! Memory of a snapshot beside a long list, counted by the allocator: a snapshot holds the
//! list's nodes by reference while it runs, and once it ended everything it held has gone
//! back, so what the process allocated changed by exactly what MEMORY USAGE of the list says
//! the writes made it grow or shrink. A node the snapshot kept (a leak) would show as a
//! difference of its ~8 KiB.
//!
//! A binary of its own, for its counting allocator (each thread counts its own bytes, so
//! tests running beside it on other threads do not disturb its figures).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use percore_proto::{command::resolve, OwnedArgs, Protocol, ReplyWriter};
use percore_shard::snapshot::Reader;
use percore_shard::{ExecCtx, Shard, ShardConfig};

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with`: the thread's slot may be gone while the thread exits.
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: every call is passed to the system allocator unchanged; the count is a
// thread-local integer, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as i64);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as i64));
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size() as i64);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new as i64 - l.size() as i64);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> i64 {
    LIVE.with(|c| c.get())
}

const NOW_MS: u64 = 1_700_000_000_000;

fn run(sh: &mut Shard, args: &[&str]) -> Vec<u8> {
    let owned = OwnedArgs::from_slices(args);
    let spec = resolve(&owned.args()).expect("a known command with a valid arity");
    let mut out = Vec::new();
    let ctx = ExecCtx {
        db: 0,
        now_ms: NOW_MS,
    };
    sh.apply(
        &ctx,
        spec,
        owned.args(),
        &mut ReplyWriter::new(&mut out, Protocol::Resp2),
    );
    out
}

/// MEMORY USAGE of `key`.
fn usage(sh: &mut Shard, key: &str) -> i64 {
    let r = run(sh, &["MEMORY", "USAGE", key]);
    let text = std::str::from_utf8(&r).expect("an integer reply");
    text.trim_start_matches(':')
        .trim_end()
        .parse()
        .expect("an integer reply")
}

/// Writes to every part of the list: both ends, LSET, LINSERT and LREM in the middle, LTRIM.
fn write_everywhere(sh: &mut Shard, key: &str, tag: &str) {
    let head = format!("{tag}-head");
    let tail = format!("{tag}-tail");
    let mid = format!("{tag}-middle");
    run(sh, &["LPUSH", key, &head]);
    run(sh, &["RPUSH", key, &tail]);
    run(sh, &["LSET", key, "70000", &mid]);
    run(sh, &["LINSERT", key, "BEFORE", &mid, &format!("{tag}-ins")]);
    run(sh, &["LREM", key, "0", "element-000030000"]);
    run(sh, &["LTRIM", key, "2", "-3"]);
}

fn fill(sh: &mut Shard, key: &str) {
    let elems: Vec<String> = (0..150_000).map(|i| format!("element-{i:09}")).collect();
    for chunk in elems.chunks(1000) {
        let mut args = vec!["RPUSH", key];
        args.extend(chunk.iter().map(|e| e.as_str()));
        run(sh, &args);
    }
}

#[test]
fn a_snapshot_beside_a_long_list_gives_back_all_it_held() {
    let mut sh = Shard::new(3, ShardConfig::default());
    fill(&mut sh, "big");
    // The same writes once on another list first, so the shard's own buffers (replies,
    // events) have their sizes before the count starts.
    fill(&mut sh, "warm");
    write_everywhere(&mut sh, "warm", "w");
    run(&mut sh, &["DEL", "warm"]);
    while sh.lazyfree_step(1 << 20, 1 << 20) {}
    // And one snapshot (the first allocates 2 KiB it keeps).
    sh.snapshot_begin(0, 1, NOW_MS);
    while sh.snapshot_step(1 << 20, &mut drop) {}

    let old = run(&mut sh, &["LRANGE", "big", "0", "-1"]);
    let mut file = sh.snapshot_begin(0, 1, NOW_MS);
    file.reserve(8 << 20);
    let (live0, usage0) = (live(), usage(&mut sh, "big"));
    write_everywhere(&mut sh, "big", "a");
    let held = live() - live0 - (usage(&mut sh, "big") - usage0);
    let mut steps = 0;
    while sh.snapshot_step(16, &mut |b| file.extend(b)) {
        steps += 1;
    }
    assert!(steps > 1, "the list was written in parts");
    // While it ran, the snapshot held only the nodes the writes replaced (and their
    // pointers), not a copy of the list's 2.7 MB.
    assert!(
        held < 200_000,
        "the snapshot held {held} bytes beside the list"
    );

    {
        let mut loaded = Shard::new(4, ShardConfig::default());
        let mut r = Reader::new(&file).expect("a valid file");
        while let Some(block) = r.next_block().expect("a valid block") {
            loaded.load_block(&block, NOW_MS, &mut |_| true);
        }
        assert!(
            run(&mut loaded, &["LRANGE", "big", "0", "-1"]) == old,
            "the file holds the list as it was when the snapshot began"
        );
    }
    // (What was allocated before the count started goes after it ends.)
    let (file_bytes, old_bytes) = (file.capacity() as i64, old.capacity() as i64);
    drop((file, old));

    let grew = usage(&mut sh, "big") - usage0;
    assert_eq!(
        live() - live0 + file_bytes + old_bytes,
        grew,
        "allocated bytes moved by what the list's writes account for"
    );
    assert_eq!(
        run(&mut sh, &["LINDEX", "big", "0"]),
        b"$17\r\nelement-000000001\r\n"
    );
}
