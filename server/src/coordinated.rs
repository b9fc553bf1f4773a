//! Commands whose keys live on different shards and that need more than split-and-merge:
//! MSETNX, RENAME/RENAMENX, COPY, LCS, SCAN, RANDOMKEY, SWAPDB, the set commands over
//! several keys (SMOVE, SINTER, SINTERCARD, SUNION, SDIFF and the STORE forms), and the
//! sorted-set ones (ZUNION, ZINTER, ZDIFF, their STORE forms, ZINTERCARD, ZRANGESTORE,
//! ZMPOP), GEOSEARCHSTORE / GEORADIUS… STORE, BITOP, PFCOUNT/PFMERGE and SORT. (When all
//! keys of such a command hash to one shard it runs there in one hop and never comes
//! here; the commands whose keys follow a count always come here.)
//!
//! Isolation: the connection runs these as a sequence of single-shard steps, under the key
//! locks of the cross-shard scheduler (`txlock.rs`): before the first step it locks every
//! key the command names on every shard (whole shards for SWAPDB and for SORT, whose
//! patterns name keys by content), and releases them after the last. Other work on those
//! keys waits meanwhile, so no client sees a state between two steps: RENAME's key is in
//! one place, SMOVE's member in one set, MSETNX's keys all set or none. SCAN and RANDOMKEY
//! take no locks (they sample, and promise nothing more across calls).
//!
//! The results are exactly Redis's.

use crate::client::Client;
use crate::core::{call_all, now_ms, Core};
use crate::router::shard_of;
use percore_proto::{Args, Cmd, CommandSpec, OwnedArgs, ReplyWriter};
use percore_shard::notify::{self, KeyEvent};
use percore_shard::ops::hll;
use percore_shard::ops::keyspace::{
    entry_with_deadline, parse_copy, parse_scan_args, parse_swapdb, write_scan_reply,
};
use percore_shard::ops::set::parse_sintercard;
use percore_shard::ops::string::{self, lcs_reply, LCS_WRONGTYPE};
use percore_shard::ops::zset;
use percore_shard::ops::{bitmap, list, Popped};
use percore_shard::types::list::End;
use percore_shard::{err, Entry, ExecCtx, Shard, Value};

pub async fn run(conn: &mut Client, spec: &'static CommandSpec, a: Args<'_>, buf: &mut Vec<u8>) {
    let mut w = ReplyWriter::new(buf, conn.proto);
    let t0 = crate::latency::Stopwatch::start();
    match spec.cmd {
        Cmd::MSetNx => msetnx(conn, a, &mut w).await,
        Cmd::Rename => rename(conn, a, &mut w, false).await,
        Cmd::RenameNx => rename(conn, a, &mut w, true).await,
        Cmd::Copy => copy(conn, a, &mut w).await,
        Cmd::Lcs => lcs(conn, a, &mut w).await,
        Cmd::Scan => scan(conn, a, &mut w).await,
        Cmd::RandomKey => randomkey(conn, &mut w).await,
        Cmd::SwapDb => swapdb(conn, a, &mut w).await,
        Cmd::SMove
        | Cmd::SInter
        | Cmd::SInterCard
        | Cmd::SInterStore
        | Cmd::SUnion
        | Cmd::SUnionStore
        | Cmd::SDiff
        | Cmd::SDiffStore
        | Cmd::ZUnion
        | Cmd::ZInter
        | Cmd::ZDiff
        | Cmd::ZInterCard
        | Cmd::ZUnionStore
        | Cmd::ZInterStore
        | Cmd::ZDiffStore
        | Cmd::ZRangeStore => on_scratch(conn, spec, a, &mut w).await,
        // GEOSEARCHSTORE and GEORADIUS… STORE with the destination on another shard.
        Cmd::GeoSearchStore | Cmd::GeoRadius | Cmd::GeoRadiusByMember => {
            on_scratch(conn, spec, a, &mut w).await
        }
        Cmd::ZMPop => zmpop(conn, a, &mut w).await,
        Cmd::LMove | Cmd::RPopLPush => lmove(conn, spec, a, &mut w).await,
        Cmd::LMPop => lmpop(conn, a, &mut w).await,
        Cmd::Sort | Cmd::SortRo => sort(conn, spec, a, &mut w).await,
        Cmd::BitOp => bitop(conn, spec, a, &mut w).await,
        Cmd::PfCount | Cmd::PfMerge => hll_across(conn, spec, a, &mut w).await,
        _ => w.error(&format!("ERR '{}' is not a coordinated command", spec.name)),
    }
    // The caller hands in an empty buffer: all of it is this command's reply. Recorded as
    // every command is: stats in nanoseconds, the slow log, the latency monitor.
    let caller = crate::core::Caller::Client(&conn.handle);
    conn.core.observe(spec, t0.ns(), w.buf, &a, caller);
}

async fn msetnx(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    if a.len().is_multiple_of(2) {
        return w.error("ERR wrong number of arguments for 'msetnx' command");
    }
    let n = conn.core.nshards();
    let db = conn.db;
    // Group key/value pairs per shard.
    let mut groups: Vec<OwnedArgs> = (0..n).map(|_| OwnedArgs::default()).collect();
    for i in (1..a.len()).step_by(2) {
        let g = &mut groups[shard_of(&a[i], n)];
        g.push(&a[i]);
        g.push(&a[i + 1]);
    }
    for (s, g) in groups.iter().enumerate() {
        if g.spans.is_empty() {
            continue;
        }
        let g = g.clone();
        let any = conn
            .hop(s, move |c: &Core| {
                let now = now_ms();
                let mut sh = c.shard.borrow_mut();
                g.args().iter().step_by(2).any(|k| sh.exists(db, k, now))
            })
            .await;
        if any {
            return w.int(0);
        }
    }
    for (s, g) in groups.into_iter().enumerate() {
        if g.spans.is_empty() {
            continue;
        }
        conn.hop(s, move |c: &Core| {
            let now = now_ms();
            let mut sh = c.shard.borrow_mut();
            let args = g.args();
            for i in (0..args.len()).step_by(2) {
                string::store_string(&mut sh, db, &args[i], &args[i + 1], now);
            }
        })
        .await;
    }
    w.int(1);
}

/// How [`fetch_entry`] takes an entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Removes it as RENAME's source ("rename_from").
    RenameFrom,
    /// Copies it as a command's read does (statistics, LRU, a "keymiss" event).
    Read,
    /// Copies it unobserved (the scratch shard's sources, whose reads it observes itself).
    Peek,
}

/// Takes the entry at `key` off its shard, as `how` says, if it exists.
async fn fetch_entry(conn: &Client, db: usize, key: &[u8], how: Fetch) -> Option<Entry> {
    let s = shard_of(key, conn.core.nshards());
    let key = key.to_vec();
    conn.hop(s, move |c: &Core| {
        let now = now_ms();
        let mut sh = c.shard.borrow_mut();
        match how {
            Fetch::RenameFrom => {
                sh.lookup(db, &key, now)?;
                sh.take_renamed(db, &key)
            }
            Fetch::Read => sh.lookup_read(db, &key, now).map(|e| e.to_entry()),
            Fetch::Peek => sh.lookup(db, &key, now).map(|e| e.to_entry()),
        }
    })
    .await
}

/// How [`put_entry`] stores an entry, which decides its keyspace events.
enum Put {
    /// RENAME's destination: "new", "rename_to".
    RenamedTo,
    /// COPY's destination: "new", "copy_to".
    Copied,
    /// A scratch shard's result, whose events were recorded where it ran.
    Quiet,
}

async fn key_exists(conn: &Client, db: usize, key: &[u8]) -> bool {
    let s = shard_of(key, conn.core.nshards());
    let key = key.to_vec();
    conn.hop(s, move |c: &Core| {
        c.shard.borrow_mut().exists(db, &key, now_ms())
    })
    .await
}

/// Stores `entry` at `key` unless `only_if_absent` and the key exists; true if stored.
async fn put_entry(
    conn: &Client,
    db: usize,
    key: &[u8],
    entry: Entry,
    only_if_absent: bool,
    how: Put,
) -> bool {
    let s = shard_of(key, conn.core.nshards());
    let key = key.to_vec();
    conn.hop(s, move |c: &Core| {
        let now = now_ms();
        let mut sh = c.shard.borrow_mut();
        if only_if_absent && sh.exists(db, &key, now) {
            return false;
        }
        // A deadline that passed while the value travelled means the key is gone (but not
        // for a replica's primary, which deletes it itself).
        if !sh.master_view && entry.is_expired(now) {
            sh.delete(db, &key);
            return true;
        }
        match how {
            Put::RenamedTo => sh.store_renamed_to(db, &key, entry),
            Put::Copied => sh.store_copy(db, &key, entry),
            Put::Quiet => sh.store_quietly(db, &key, entry),
        }
        true
    })
    .await
}

/// Runs the command on shard `s` as one command there (all its keys live there); returns
/// the reply.
async fn apply_on(conn: &Client, s: usize, spec: &'static CommandSpec, a: &Args<'_>) -> Vec<u8> {
    let all: Vec<&[u8]> = a.iter().collect();
    let (owned, proto, db) = (OwnedArgs::from_slices(&all), conn.proto, conn.db);
    // The shard propagates the command itself.
    conn.repl_applied.set(true);
    conn.hop(s, move |c: &Core| {
        let mut out = Vec::new();
        let ctx = ExecCtx {
            db,
            now_ms: now_ms(),
        };
        let mut rw = ReplyWriter::new(&mut out, proto);
        c.shard
            .borrow_mut()
            .apply(&ctx, spec, owned.args(), &mut rw);
        out
    })
    .await
}

/// SORT and SORT_RO. In one hop on the sorted key's shard when the STORE key and every
/// key the BY and GET patterns can name live there: with one shard, or when a pattern
/// fixes a hash tag before its `*` (`weight_{user}_*`) that lands on that shard. Else in
/// steps: the elements are read on the key's shard, the BY values fetched from their
/// shards (one hop per shard and per 4096 keys), the elements sorted here, the GET values
/// fetched likewise, and the result replied or stored on the destination's shard.
async fn sort(conn: &mut Client, spec: &'static CommandSpec, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    use percore_shard::ops::sort;
    let opts = match sort::parse(&a, spec.cmd == Cmd::SortRo) {
        Ok(o) => o,
        Err(e) => return w.error(e),
    };
    let (db, n) = (conn.db, conn.core.nshards());
    let home = shard_of(&a[1], n);
    let here = |k: &[u8]| shard_of(k, n) == home;
    // A pattern's keys all share its prefix's hash tag when the prefix holds a whole one.
    let fixed = |p: &sort::Pattern| {
        let prefix = p.prefix();
        crate::router::hash_tag(prefix).len() < prefix.len() && here(prefix)
    };
    if n == 1 || (opts.store.as_deref().is_none_or(here) && opts.key_patterns().all(fixed)) {
        return w.raw(&apply_on(conn, home, spec, &a).await);
    }
    let key = a[1].to_vec();
    let loaded = conn
        .hop(home, move |c: &Core| {
            let ctx = ExecCtx {
                db,
                now_ms: now_ms(),
            };
            sort::Sorter::load(&mut c.shard.borrow_mut(), &ctx, &key, opts)
        })
        .await;
    let mut s = match loaded {
        Ok(s) => s,
        Err(e) => return w.error(e),
    };
    let byvals = match s.by_keys() {
        Some(keys) => Some(lookup_across(conn, keys).await),
        None => None,
    };
    if let Err(e) = s.sort(byvals) {
        return w.error(e);
    }
    let getvals = lookup_across(conn, s.get_keys()).await;
    let dest = s.opts.store.take();
    let items = s.finish(getvals);
    match dest {
        None => sort::write_reply(w, &items),
        Some(d) => {
            let stored = conn
                .hop(shard_of(&d, n), move |c: &Core| {
                    let ctx = ExecCtx {
                        db,
                        now_ms: now_ms(),
                    };
                    sort::store(&mut c.shard.borrow_mut(), &ctx, &d, &items)
                })
                .await;
            w.int(stored)
        }
    }
}

/// The values SORT's patterns name (strings, or hash fields), read on their shards, in
/// the order of `keys`. A shard is asked for at most 4096 keys at a time, so one SORT over
/// a large collection does not hold another core for long.
async fn lookup_across(
    conn: &Client,
    keys: Vec<percore_shard::ops::sort::Lookup>,
) -> Vec<Option<Vec<u8>>> {
    const BATCH: usize = 4096;
    let (db, n) = (conn.db, conn.core.nshards());
    let mut per_shard: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, (k, _)) in keys.iter().enumerate() {
        per_shard[shard_of(k, n)].push(i);
    }
    let mut vals = vec![None; keys.len()];
    for (s, idx) in per_shard.iter().enumerate() {
        for chunk in idx.chunks(BATCH) {
            let batch: Vec<_> = chunk.iter().map(|&i| keys[i].clone()).collect();
            let got = conn
                .hop(s, move |c: &Core| {
                    let ctx = ExecCtx {
                        db,
                        now_ms: now_ms(),
                    };
                    percore_shard::ops::sort::lookup_all(&mut c.shard.borrow_mut(), &ctx, &batch)
                })
                .await;
            for (&i, v) in chunk.iter().zip(got) {
                vals[i] = v;
            }
        }
    }
    vals
}

/// Set and sorted-set commands over keys of several shards: the keys are copied onto a
/// scratch shard, the shard's own code runs there (so replies, errors and encodings are
/// exactly those of one shard), and the keys it writes go back to their shards (deleted
/// where it deleted them). Costs a copy of every source set; bounded by what the command
/// reads anyway. When every key lives on one shard (the commands whose keys follow a
/// count always come here), the command runs there in one hop instead, copying nothing.
async fn on_scratch(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    w: &mut ReplyWriter<'_>,
) {
    let db = conn.db;
    let all: Vec<&[u8]> = a.iter().collect();
    let (reads, writes): (Vec<&[u8]>, Vec<&[u8]>) = match spec.cmd {
        Cmd::SInterCard => match parse_sintercard(&a) {
            Ok((keys, _)) => (keys, vec![]),
            Err(e) => return w.error(e),
        },
        Cmd::SMove => (all[1..3].to_vec(), all[1..3].to_vec()),
        Cmd::SInterStore | Cmd::SUnionStore | Cmd::SDiffStore => (all[2..].to_vec(), vec![all[1]]),
        // An invalid count copies nothing: the shard's own parse replies the error.
        Cmd::ZUnion | Cmd::ZInter | Cmd::ZDiff | Cmd::ZInterCard => {
            (zset::algebra_keys(&a, 1).unwrap_or_default(), vec![])
        }
        Cmd::ZUnionStore | Cmd::ZInterStore | Cmd::ZDiffStore => {
            (zset::algebra_keys(&a, 2).unwrap_or_default(), vec![all[1]])
        }
        Cmd::ZRangeStore => (vec![all[2]], vec![all[1]]),
        Cmd::GeoSearchStore => (vec![all[2]], vec![all[1]]),
        Cmd::GeoRadius | Cmd::GeoRadiusByMember => {
            let dst = spec.store_key_index(&a).map(|i| all[i]);
            (vec![all[1]], dst.into_iter().collect())
        }
        _ => (all[1..].to_vec(), vec![]),
    };
    let n = conn.core.nshards();
    let home = reads.first().or(writes.first()).map(|k| shard_of(k, n));
    if let Some(s) = home {
        if reads.iter().chain(&writes).all(|k| shard_of(k, n) == s) {
            return w.raw(&apply_on(conn, s, spec, &a).await);
        }
    }
    let config = conn.core.shard.borrow().config.clone();
    let mut scratch = Shard::new(scratch_seed(), config);
    for (i, k) in reads.iter().enumerate() {
        if reads[..i].contains(k) {
            continue;
        }
        if let Some(e) = fetch_entry(conn, db, k, Fetch::Peek).await {
            scratch.store(0, k, e);
        }
    }
    // A destination that exists gets a stand-in, so that the scratch shard records the
    // events Redis makes for it ("del" of an emptied one, no "new" for a replaced one).
    for k in &writes {
        if !reads.contains(k) && key_exists(conn, db, k).await {
            scratch.store(0, k, Entry::new(Value::from_bytes(b""), now_ms()));
        }
    }
    // The scratch shard records every event of the command; each key's shard keeps those
    // it publishes.
    scratch.set_notify(u16::MAX);
    scratch.master_view = conn.is_master;
    let now = now_ms();
    scratch.apply(&ExecCtx { db: 0, now_ms: now }, spec, a, w);
    // A key the command changed has an event ("keymiss" and "new" say nothing changed); one
    // it left alone is not written back, so WATCH and tracking see no change, as in Redis.
    let changed: Vec<Box<[u8]>> = (scratch.events.iter())
        .filter(|e| e.class & (notify::KEY_MISS | notify::NEW) == 0)
        .map(|e| e.key.clone())
        .collect();
    forward_events(conn, db, std::mem::take(&mut scratch.events)).await;
    if w.buf.first() == Some(&b'-') {
        return;
    }
    for k in writes {
        if !changed.iter().any(|c| **c == *k) {
            continue;
        }
        match scratch.remove(0, k) {
            Some(e) => {
                put_entry(conn, db, k, e, false, Put::Quiet).await;
            }
            None => {
                let s = shard_of(k, conn.core.nshards());
                let key = k.to_vec();
                conn.hop(s, move |c: &Core| {
                    c.shard.borrow_mut().delete(db, &key);
                })
                .await;
            }
        }
    }
}

/// Hands the keyspace events a scratch shard recorded (in its database 0, standing for
/// `db`) to the shards of their keys, each key's in order.
async fn forward_events(conn: &Client, db: usize, events: Vec<KeyEvent>) {
    let n = conn.core.nshards();
    let mut per_shard: Vec<Vec<KeyEvent>> = vec![Vec::new(); n];
    for mut e in events {
        if e.db == 0 {
            e.db = db;
        }
        per_shard[shard_of(&e.key, n)].push(e);
    }
    for (s, events) in per_shard.into_iter().enumerate() {
        if !events.is_empty() {
            conn.hop(s, move |c: &Core| {
                c.shard.borrow_mut().record_events(events)
            })
            .await;
        }
    }
}

/// LMOVE/RPOPLPUSH between shards: the destination's type, then the pop (Redis's checks
/// in Redis's order), then the push. Three hops; no list is copied.
async fn lmove(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    w: &mut ReplyWriter<'_>,
) {
    let (from, to) = if spec.cmd == Cmd::LMove {
        match list::parse_ends(&a[3], &a[4]) {
            Ok(x) => x,
            Err(e) => return w.error(e),
        }
    } else {
        (End::Right, End::Left)
    };
    let (db, n) = (conn.db, conn.core.nshards());
    let (src, dst) = (a[1].to_vec(), a[2].to_vec());
    let d = dst.clone();
    let dst_kind = conn
        .hop(shard_of(&dst, n), move |c: &Core| {
            list::kind(&mut c.shard.borrow_mut(), db, now_ms(), &d)
        })
        .await;
    let s = src.clone();
    let popped = conn
        .hop(shard_of(&src, n), move |c: &Core| {
            let mut sh = c.shard.borrow_mut();
            let now = now_ms();
            match list::kind(&mut sh, db, now, &s) {
                list::Kind::List if dst_kind == list::Kind::Other => list::Popped::WrongType,
                list::Kind::List => list::pop_n(&mut sh, db, now, &s, from, 1),
                list::Kind::Other => list::Popped::WrongType,
                list::Kind::Missing => list::Popped::Missing,
            }
        })
        .await;
    let element = match popped {
        list::Popped::Missing => return w.null(),
        list::Popped::WrongType => return w.error(err::WRONGTYPE),
        list::Popped::Elements(v) => v,
    };
    let e = element.clone();
    let pushed = conn
        .hop(shard_of(&dst, n), move |c: &Core| {
            list::push_elements(&mut c.shard.borrow_mut(), db, now_ms(), &dst, to, &e).is_some()
        })
        .await;
    if !pushed {
        conn.hop(shard_of(&src, n), move |c: &Core| {
            list::push_elements(
                &mut c.shard.borrow_mut(),
                db,
                now_ms(),
                &src,
                from,
                &element,
            )
        })
        .await;
        return w.error(err::WRONGTYPE);
    }
    w.bulk(&element[0]);
}

/// LMPOP over keys of several shards.
async fn lmpop(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    match list::parse_mpop(&a, 1) {
        Ok((keys, end, count)) => {
            let pop = move |sh: &mut Shard, db, now, key: &[u8]| {
                list::pop_n(sh, db, now, key, end, count)
            };
            mpop_across(conn, &keys, pop, w, list::write_mpop_reply).await
        }
        Err(e) => w.error(e),
    }
}

/// ZMPOP over keys of several shards.
async fn zmpop(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    match zset::parse_zmpop(&a, 1) {
        Ok((keys, max, count)) => {
            let pop = move |sh: &mut Shard, db, now, key: &[u8]| {
                zset::pop_n(sh, db, now, key, max, count)
            };
            mpop_across(conn, &keys, pop, w, zset::write_zmpop_reply).await
        }
        Err(e) => w.error(e),
    }
}

/// The MPOP commands across shards (`ops::mpop_first` on one): `pop` on each key in order,
/// on the key's shard, until one pops.
async fn mpop_across<T, P>(
    conn: &mut Client,
    keys: &[&[u8]],
    pop: P,
    w: &mut ReplyWriter<'_>,
    write: impl FnOnce(&mut ReplyWriter<'_>, &[u8], &[T]),
) where
    T: Send + 'static,
    P: Fn(&mut Shard, usize, u64, &[u8]) -> Popped<T> + Clone + Send + 'static,
{
    let (db, n) = (conn.db, conn.core.nshards());
    for k in keys {
        let (key, pop) = (k.to_vec(), pop.clone());
        let popped = conn
            .hop(shard_of(k, n), move |c: &Core| {
                pop(&mut c.shard.borrow_mut(), db, now_ms(), &key)
            })
            .await;
        match popped {
            Popped::Missing => continue,
            Popped::WrongType => return w.error(err::WRONGTYPE),
            Popped::Elements(v) => return write(w, k, &v),
        }
    }
    w.null_array();
}

/// PFCOUNT and PFMERGE over keys of several shards, in the client's order of keys: each
/// run of consecutive keys on one shard is merged there (`hll::gather`: one hop per run,
/// 16 KiB of registers back), the union is taken here, and PFMERGE raises its destination
/// to it on the destination's shard. Redis reads the keys in order and stops at the first
/// bad one, so keys after it are never read (no statistics, no "keymiss"); the runs keep
/// that exactly (keys grouped by shard would read them).
async fn hll_across(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    w: &mut ReplyWriter<'_>,
) {
    let (db, n) = (conn.db, conn.core.nshards());
    let keys: Vec<&[u8]> = a.iter().skip(1).collect();
    let mut union = hll::Gathered::new();
    for run in keys.chunk_by(|x, y| shard_of(x, n) == shard_of(y, n)) {
        let owned = OwnedArgs::from_slices(run);
        let gathered = conn
            .hop(shard_of(run[0], n), move |c: &Core| {
                let args = owned.args();
                let ks: Vec<&[u8]> = args.iter().collect();
                hll::gather(&mut c.shard.borrow_mut(), db, now_ms(), &ks)
            })
            .await;
        match gathered {
            Ok(g) => union.absorb(&g),
            Err((_, msg)) => return w.error(msg),
        }
    }
    if spec.cmd == Cmd::PfCount {
        return w.int(percore_shard::types::hll::count_raw(&union.max) as i64);
    }
    let dest = a[1].to_vec();
    let stored = conn
        .hop(shard_of(&dest, n), move |c: &Core| {
            let mut sh = c.shard.borrow_mut();
            sh.stats.dirty += 1;
            hll::store_merged(&mut sh, db, now_ms(), &dest, &union)
        })
        .await;
    match stored {
        Ok(()) => w.ok(),
        Err(msg) => w.error(msg),
    }
}

/// A seed for a scratch shard's tables (its contents live for one command).
fn scratch_seed() -> u64 {
    crate::core::now_us().wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

async fn rename(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>, nx: bool) {
    let db = conn.db;
    let (src, dst) = (&a[1], &a[2]);
    if !key_exists(conn, db, src).await {
        return w.error(err::NO_SUCH_KEY);
    }
    if nx && key_exists(conn, db, dst).await {
        return w.int(0);
    }
    let Some(entry) = fetch_entry(conn, db, src, Fetch::RenameFrom).await else {
        return w.error(err::NO_SUCH_KEY);
    };
    put_entry(conn, db, dst, entry, false, Put::RenamedTo).await;
    if nx {
        w.int(1)
    } else {
        w.ok()
    }
}

async fn copy(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let (dst_db, replace) = match parse_copy(&a, conn.db) {
        Ok(x) => x,
        Err(e) => return w.error(e),
    };
    let Some(entry) = fetch_entry(conn, conn.db, &a[1], Fetch::Read).await else {
        return w.int(0);
    };
    let e = entry_with_deadline(entry.value, entry.expire_at_ms, now_ms());
    let stored = put_entry(conn, dst_db, &a[2], e, !replace, Put::Copied).await;
    w.int(stored as i64);
}

async fn lcs(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let db = conn.db;
    let (ea, eb) = (
        fetch_entry(conn, db, &a[1], Fetch::Read).await,
        fetch_entry(conn, db, &a[2], Fetch::Read).await,
    );
    let string = |e: &Option<Entry>| e.as_ref().is_none_or(|e| e.value.as_ref().is_string());
    if !string(&ea) || !string(&eb) {
        return w.error(LCS_WRONGTYPE);
    }
    let va = ea.map(|e| e.value.into_bytes()).unwrap_or_default();
    let vb = eb.map(|e| e.value.into_bytes()).unwrap_or_default();
    let max = conn.core.config.borrow().proto_max_bulk_len;
    lcs_reply(&va, &vb, a, max, w);
}

/// SCAN across shards. The cursor is `local_cursor × shards + shard`, so with one shard it
/// is exactly Redis's cursor, and each shard's walk keeps the dict's guarantee. A shard's
/// walk that finishes with fewer than COUNT keys goes on with the next shard in the same
/// call, so a small or empty keyspace is walked in one SCAN and answers cursor 0, as
/// Redis's does.
async fn scan(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let (cursor, opts) = match parse_scan_args(&a) {
        Ok(x) => x,
        Err(e) => return w.error(e),
    };
    let n = conn.core.nshards() as u64;
    let (mut shard, mut local) = (cursor % n, cursor / n);
    let db = conn.db;
    let count = opts.count;
    let opts = std::sync::Arc::new(opts);
    let mut keys = Vec::new();
    let next = loop {
        let o = opts.clone();
        let (next_local, found) = conn
            .hop(shard as usize, move |c: &Core| {
                c.shard.borrow_mut().scan_keys(db, local, &o, now_ms())
            })
            .await;
        keys.extend(found);
        if next_local != 0 {
            break next_local * n + shard;
        }
        if shard + 1 == n {
            break 0;
        }
        shard += 1;
        local = 0;
        if keys.len() >= count {
            break shard;
        }
    };
    write_scan_reply(w, next, &keys);
}

async fn randomkey(conn: &mut Client, w: &mut ReplyWriter<'_>) {
    let n = conn.core.nshards();
    let db = conn.db;
    let start = conn
        .hop(conn.core.id, |c: &Core| c.shard.borrow_mut().next_rand())
        .await as usize
        % n;
    for i in 0..n {
        let s = (start + i) % n;
        let k = conn
            .hop(s, move |c: &Core| {
                c.shard.borrow_mut().random_key(db, now_ms())
            })
            .await;
        if let Some(k) = k {
            return w.bulk(&k);
        }
    }
    w.null();
}

async fn swapdb(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let (x, y) = match parse_swapdb(&a) {
        Ok(p) => p,
        Err(e) => return w.error(e),
    };
    call_all(&conn.core, move |c: &Core| {
        c.shard.borrow_mut().swap_dbs(x, y)
    })
    .await;
    w.ok();
}

/// BITOP over keys of several shards: each shard holding sources folds its own (in argument
/// order) into one partial result, all such shards at once (one round trip, not one per
/// shard); the partials are folded here and the result is stored on the destination's shard
/// (or the destination deleted when it is empty). Moves at most one string per shard, each
/// no longer than its longest source.
async fn bitop(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    w: &mut ReplyWriter<'_>,
) {
    let op = match bitmap::parse_bitop(&a) {
        Ok(op) => op,
        Err(e) => return w.error(e),
    };
    let (db, n) = (conn.db, conn.core.nshards());
    let dest = a[2].to_vec();
    let dest_shard = shard_of(&dest, n);
    // `denyoom`: over maxmemory with nothing to evict, refused before anything is read.
    if conn.core.memory_limit() != 0 {
        let admitted = conn
            .hop(dest_shard, move |c: &Core| {
                c.admit(spec, &mut c.shard.borrow_mut(), now_ms())
            })
            .await;
        if let Err(e) = admitted {
            return w.error(e);
        }
    }
    let mut groups: Vec<(usize, OwnedArgs)> = Vec::new();
    for k in a.iter().skip(3) {
        let s = shard_of(k, n);
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, keys)) => keys.push(k),
            None => {
                let mut keys = OwnedArgs::default();
                keys.push(k);
                groups.push((s, keys));
            }
        }
    }
    let folds = groups.into_iter().map(|(s, keys)| {
        conn.hop(s, move |c: &Core| {
            let keys: Vec<&[u8]> = keys.args().iter().collect();
            let mut acc = bitmap::BitOpAcc::new(op);
            let mut sh = c.shard.borrow_mut();
            bitmap::bitop_fold(&mut sh, db, now_ms(), &keys, &mut acc).map(|()| acc.partial())
        })
    });
    let partials = join_all(folds.collect()).await;
    let mut acc = bitmap::BitOpAcc::new(op);
    for partial in partials {
        match partial {
            Ok(p) => acc.merge(bitmap::BitOpAcc::from_partial(op, p)),
            Err(bitmap::WrongType) => return w.error(err::WRONGTYPE),
        }
    }
    let result = acc.finish();
    let len = conn
        .hop(dest_shard, move |c: &Core| {
            let mut sh = c.shard.borrow_mut();
            let len = bitmap::bitop_store(&mut sh, db, now_ms(), &dest, result);
            sh.stats.dirty += 1;
            len
        })
        .await;
    w.int(len as i64);
}

/// Awaits every future of `futs` concurrently (each shard call sends its message on first
/// poll, so all are in flight at once); the outputs in the order of `futs`. Polls each
/// pending future once per wake-up: `futs` is a handful of shard calls.
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}
