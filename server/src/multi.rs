//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis 7.0's semantics.
//!
//! - Between MULTI and EXEC every command but EXEC, DISCARD, MULTI, WATCH, QUIT and RESET is
//!   checked (name, arity, authentication, `no-multi`) and queued (`+QUEUED`); a command
//!   refused there marks the transaction, whose EXEC then answers EXECABORT. Errors while
//!   EXEC runs are replies in its array; nothing is rolled back.
//! - WATCH registers the keys with their shards ([`percore_shard::watch`]): a change to one,
//!   from any core, raises the connection's flag, and EXEC answers a null array. A watched
//!   key that expired meanwhile fails EXEC too (its lookup at EXEC deletes it, which raises
//!   the flag). EXEC, DISCARD, UNWATCH, RESET and disconnecting forget the watched keys.
//! - Blocking commands inside a transaction do not block: with nothing to pop they answer
//!   as a timeout would (Redis: `$-1` for BLMOVE/BRPOPLPUSH, `*-1` for the others).
//!
//! Isolation. A transaction whose commands all run on one shard (every key there, no
//! connection command) runs as one job on that shard's core, which runs nothing else
//! meanwhile: the WATCH check and every command, with nothing between (it waits first if a
//! cross-shard transaction holds one of its keys). A transaction over several shards (or
//! with connection commands: SELECT, CLIENT, …) first locks every key its commands name on
//! every shard (whole shards for commands whose keys are not known in advance: KEYS,
//! FLUSHALL, SORT with patterns, …; see `txlock.rs`), checks WATCH, runs command by command
//! through the normal paths, then releases the locks: other clients' work on those keys
//! waits, so no one sees half of it, as in Redis.
//!
//! Bounds: the queued commands' bytes count against `client-query-buffer-limit`; a
//! transaction past it closes the connection, as an oversized query buffer does.

use crate::client::{Client, Peer};
use crate::core::{call, now_ms, Batch, BatchReply, Core};
use crate::router::shard_of;
use crate::txlock::{call_checked, Plan};
use percore_proto::{Args, Cmd, CommandSpec, OwnedArgs, ReplyWriter, Route};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
/// A refused EXEC's reply, before the reason (Redis's `execCommandAbort`).
pub const EXECABORT_BECAUSE: &str = "EXECABORT Transaction discarded because of:";

/// A transaction being queued (MULTI … EXEC).
#[derive(Default)]
pub struct Multi {
    cmds: Vec<(&'static CommandSpec, OwnedArgs)>,
    /// Bytes of the queued arguments (CLIENT LIST `multi-mem`).
    bytes: usize,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    pub aborted: bool,
}

impl Multi {
    /// The queued commands' table entries.
    pub fn specs(&self) -> impl Iterator<Item = &'static CommandSpec> + Clone + '_ {
        self.cmds.iter().map(|(spec, _)| *spec)
    }

    /// Whether a queued command is one CLIENT PAUSE WRITE holds.
    pub fn holds_writes(&self) -> bool {
        self.cmds.iter().any(|(spec, _)| crate::pause::writes(spec))
    }
}

/// The keys a connection WATCHes and the flag their shards raise on a change.
pub struct Watching {
    pub flag: Arc<AtomicBool>,
    keys: Vec<DbKey>,
}

/// Whether `cmd` runs at once inside MULTI rather than being queued.
pub fn runs_inside_multi(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Exec | Cmd::Discard | Cmd::Multi | Cmd::Watch | Cmd::Quit | Cmd::Reset
    )
}

/// Queues a checked command of a transaction.
pub fn queue(conn: &mut Client, spec: &'static CommandSpec, a: Args<'_>) -> &'static [u8] {
    let limit = conn.core.config.borrow().client_query_buffer_limit;
    let Some(m) = conn.multi.as_mut() else {
        return b"";
    };
    let mut owned = OwnedArgs::default();
    a.iter().for_each(|x| owned.push(x));
    m.bytes += owned.buf.len() + owned.spans.len() * std::mem::size_of::<(u32, u32)>();
    m.cmds.push((spec, owned));
    let (n, bytes) = (m.cmds.len(), m.bytes);
    if bytes > limit {
        crate::log::warn(&format!(
            "closing client id={} addr={}: a transaction of {n} commands exceeds client-query-buffer-limit",
            conn.handle.id, conn.handle.addr
        ));
        conn.close = true;
        return b"";
    }
    let mut info = conn.handle.info.borrow_mut();
    info.multi = n as i64;
    info.multi_mem = bytes;
    b"+QUEUED\r\n"
}

/// MULTI, EXEC, DISCARD, WATCH and UNWATCH; the reply goes to `out`.
pub async fn run(
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    peer: &mut dyn Peer,
    out: &mut Vec<u8>,
) {
    if spec.cmd == Cmd::Exec {
        return exec(conn, peer, out).await;
    }
    let mut w = ReplyWriter::new(out, conn.proto);
    match spec.cmd {
        Cmd::Multi => {
            if conn.multi.is_some() {
                return w.error("ERR MULTI calls can not be nested");
            }
            conn.multi = Some(Box::default());
            conn.handle.info.borrow_mut().multi = 0;
            w.ok();
        }
        Cmd::Discard => {
            if conn.multi.take().is_none() {
                return w.error("ERR DISCARD without MULTI");
            }
            end_multi(conn);
            unwatch(conn).await;
            w.ok();
        }
        Cmd::Watch => {
            if conn.multi.is_some() {
                return w.error("ERR WATCH inside MULTI is not allowed");
            }
            watch(conn, &a).await;
            w.ok();
        }
        Cmd::Unwatch => {
            unwatch(conn).await;
            w.ok();
        }
        _ => w.error(&format!("ERR '{}' is not a transaction command", spec.name)),
    }
}

fn end_multi(conn: &Client) {
    let mut info = conn.handle.info.borrow_mut();
    info.multi = -1;
    info.multi_mem = 0;
}

async fn watch(conn: &mut Client, a: &Args<'_>) {
    let (db, n) = (conn.db, conn.core.nshards());
    let w = conn.watching.get_or_insert_with(|| {
        Box::new(Watching {
            flag: Arc::new(AtomicBool::new(false)),
            keys: Vec::new(),
        })
    });
    let flag = w.flag.clone();
    conn.handle.info.borrow_mut().dirty_cas = Some(flag.clone());
    let mut new: Vec<Vec<u8>> = Vec::new();
    for k in a.iter().skip(1) {
        if !w.keys.iter().any(|(d, x)| *d == db && x == k) && !new.iter().any(|x| x == k) {
            new.push(k.to_vec());
        }
    }
    w.keys.extend(new.iter().map(|k| (db, k.clone())));
    for (s, keys) in per_shard(new.into_iter().map(|k| (db, k)), n) {
        let flag = flag.clone();
        call(&conn.core, s, move |c: &Core| {
            let mut sh = c.shard.borrow_mut();
            let now = now_ms();
            for (db, k) in &keys {
                sh.watch(*db, k, &flag, now);
            }
        })
        .await;
    }
}

/// Forgets every watched key (EXEC, DISCARD, UNWATCH, RESET, disconnect).
pub async fn unwatch(conn: &mut Client) {
    let Some(w) = conn.watching.take() else {
        return;
    };
    conn.handle.info.borrow_mut().dirty_cas = None;
    for (s, keys) in per_shard(w.keys.into_iter(), conn.core.nshards()) {
        let flag = w.flag.clone();
        call(&conn.core, s, move |c: &Core| {
            let mut sh = c.shard.borrow_mut();
            for (db, k) in &keys {
                sh.unwatch(*db, k, &flag);
            }
        })
        .await;
    }
}

/// A key in its database.
type DbKey = (usize, Vec<u8>);

/// Keys grouped by the shard that owns them.
fn per_shard(keys: impl Iterator<Item = DbKey>, n: usize) -> Vec<(usize, Vec<DbKey>)> {
    let mut groups: Vec<(usize, Vec<DbKey>)> = Vec::new();
    for (db, k) in keys {
        let s = shard_of(&k, n);
        match groups.iter_mut().find(|g| g.0 == s) {
            Some(g) => g.1.push((db, k)),
            None => groups.push((s, vec![(db, k)])),
        }
    }
    groups
}

/// Looks the watched keys up on their shards: one that expired is deleted there, which
/// raises the flag (Redis fails EXEC when a watched key expired).
async fn expire_watched(conn: &Client) {
    let Some(w) = conn.watching.as_ref() else {
        return;
    };
    for (s, keys) in per_shard(w.keys.iter().cloned(), conn.core.nshards()) {
        call(&conn.core, s, move |c: &Core| {
            let mut sh = c.shard.borrow_mut();
            let now = now_ms();
            for (db, k) in &keys {
                sh.lookup(*db, k, now);
            }
        })
        .await;
    }
}

/// The one shard every queued command runs on, if there is one and none needs the
/// connection (connection commands, blocking commands, commands routed by their content).
fn single_shard(conn: &Client, m: &Multi) -> Option<usize> {
    let n = conn.core.nshards();
    let mut shard = None;
    for (spec, args) in &m.cmds {
        let a = args.args();
        let keys: Vec<usize> = match spec.route {
            Route::Single | Route::PerKey(_) => spec.key_indices(a.len()).collect(),
            Route::Coordinated if !spec.flags.has(percore_proto::Flags::MOVABLEKEYS) => {
                spec.key_indices(a.len()).collect()
            }
            // Every shard's work: one shard only when there is one.
            Route::AllShards(_) if n == 1 => vec![],
            _ => return None,
        };
        let here = match keys.first() {
            Some(&i) => shard_of(&a[i], n),
            None if n == 1 => 0,
            None if spec.route == Route::Single => conn.core.id,
            None => return None,
        };
        if keys.iter().any(|&i| shard_of(&a[i], n) != here) || shard.is_some_and(|s| s != here) {
            return None;
        }
        shard = Some(here);
    }
    shard.or(Some(conn.core.id))
}

async fn exec(conn: &mut Client, peer: &mut dyn Peer, out: &mut Vec<u8>) {
    let Some(m) = conn.multi.take() else {
        return ReplyWriter::new(out, conn.proto).error("ERR EXEC without MULTI");
    };
    if m.aborted {
        end_multi(conn);
        unwatch(conn).await;
        return ReplyWriter::new(out, conn.proto).error(EXECABORT);
    }
    // Cluster mode: a transaction over several slots, or whose slot is served elsewhere,
    // is discarded with the redirection, as Redis does.
    if crate::cluster::enabled() && !conn.is_master {
        let asking = std::mem::take(&mut conn.asking);
        let cmds = m.cmds.iter().map(|(s, a)| (*s, a.args()));
        if let Some(e) = crate::cluster::check_exec(&conn.core, cmds, asking, conn.readonly).await {
            end_multi(conn);
            unwatch(conn).await;
            return ReplyWriter::new(out, conn.proto).error(&e);
        }
    }
    expire_watched(conn).await;
    let flag = conn.watching.as_ref().map(|w| w.flag.clone());
    // A queued command the ACL now refuses is answered with its error in place, by the
    // per-command path below.
    if let Some(s) = single_shard(conn, &m).filter(|_| crate::acl::allows_all(conn, &m.cmds)) {
        // One job on the shard: the WATCH check and every command, with nothing between.
        let mut batch = Batch::default();
        for (spec, args) in &m.cmds {
            batch.push(spec, conn.db, conn.proto, true, args.args().iter());
        }
        batch.client_addr = Some(conn.handle.addr);
        batch.client_name = conn.handle.info.borrow().name.clone();
        batch.hold_repl = true;
        // A replica's master client sends MULTI/EXEC for every unit of more than one op:
        // its keys are not expired by the replica's clock there either.
        batch.master_view = conn.is_master;
        let mut plan = Plan::default();
        for (spec, args) in &m.cmds {
            plan.add(spec, &args.args(), conn.db, conn.core.nshards());
        }
        let keys = plan.keys_on(s);
        let replies = call_checked(&conn.core, s, conn.tx, keys, move |c: &Core| {
            if flag.is_some_and(|f| f.load(Ordering::SeqCst)) {
                return Ok(None);
            }
            // Cluster mode: the slot may have changed hands since the check above.
            if crate::cluster::enabled() {
                let mut sh = c.shard.borrow_mut();
                let cmds = batch.cmds.iter().map(|cmd| {
                    let spans = &batch.spans[cmd.spans.0 as usize..cmd.spans.1 as usize];
                    (cmd.spec, percore_proto::Args::new(&batch.buf, spans))
                });
                let now = crate::core::now_ms();
                if let Some(e) =
                    crate::cluster::recheck(cmds, true, &mut sh, now, batch.master_view)
                {
                    return Err(e);
                }
            }
            let mut reply = BatchReply::default();
            c.execute_batch(&batch, &mut reply, false);
            // The transaction's effects: one unit of the replication stream.
            crate::repl::Capture {
                ops: std::mem::take(&mut reply.repl),
            }
            .commit(c);
            Ok(Some(reply))
        })
        .await;
        end_multi(conn);
        unwatch(conn).await;
        // MONITOR clients see the commands as EXEC ran them, before the EXEC itself.
        if matches!(replies, Ok(Some(_)))
            && conn.core.global.monitors_total.load(Ordering::Acquire) > 0
        {
            for (spec, args) in &m.cmds {
                if !spec
                    .flags
                    .has(percore_proto::Flags::SKIP_MONITOR | percore_proto::Flags::ADMIN)
                {
                    crate::pubsub::feed_monitors(
                        &conn.core,
                        conn.db,
                        Some(conn.handle.addr),
                        &args.args(),
                    )
                    .await;
                }
            }
        }
        let mut w = ReplyWriter::new(out, conn.proto);
        match replies {
            Err(e) => w.error(&e),
            Ok(None) => w.null_array(),
            Ok(Some(r)) => {
                w.array(m.cmds.len());
                w.raw(&r.buf);
            }
        }
        return;
    }
    // Across shards: every key the commands name locked first (whole shards for commands
    // whose keys are not known in advance), then command by command, each reply in its
    // place after the array header, then the locks released.
    let n = conn.core.nshards();
    let mut plan = Plan::default();
    let mut db = conn.db;
    for (spec, args) in &m.cmds {
        let a = args.args();
        plan.add(spec, &a, db, n);
        if spec.cmd == Cmd::Select {
            // The commands after a SELECT run in its database.
            if let Some(d) = percore_proto::parse_i64(&a[1]).filter(|d| (0..16).contains(d)) {
                db = d as usize;
            }
        }
    }
    let tx = conn.begin_tx_with(plan);
    conn.lock_tx(tx).await;
    if flag.is_some_and(|f| f.load(Ordering::SeqCst)) {
        conn.end_tx().await;
        end_multi(conn);
        unwatch(conn).await;
        return ReplyWriter::new(out, conn.proto).null_array();
    }
    unwatch(conn).await;
    ReplyWriter::new(out, conn.proto).array(m.cmds.len());
    conn.emit_bytes(out);
    out.clear();
    conn.in_exec = true;
    for (_, args) in &m.cmds {
        Box::pin(conn.dispatch(args.args(), peer)).await;
        if conn.close {
            break;
        }
    }
    conn.in_exec = false;
    conn.end_tx().await;
    end_multi(conn);
}
