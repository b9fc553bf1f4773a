//! Replication, primary side: one ordered stream of every shard's changes, the backlog that
//! holds its tail, and the replicas it feeds (PSYNC, REPLCONF, ROLE, WAIT, INFO replication).
//!
//! # One order for all shards
//!
//! A Redis replica applies one command stream. percore's shards change in parallel, so the
//! stream must be *one* sequence that every shard's own order fits, and in which a
//! transaction spanning shards (MULTI/EXEC, a script, a command over several shards) appears
//! whole, at a place consistent with its key locks.
//!
//! Design: a global counter `seq` (one `AtomicU64`, touched only while a stream exists).
//! - Each shard records the propagated form of its changes ([`percore_shard::repl`]) and
//!   closes a *unit* (one command and what it caused, or one expiry/eviction DEL) by taking
//!   the next number, in the same synchronous step as the change. The unit waits in the
//!   shard's `feed.units`.
//! - A transaction across shards runs its commands with the shards' feed *held*: their ops
//!   travel back to the coordinating connection (in the batch replies, or read from its own
//!   shard), which collects them in order. When the transaction ends, still holding every
//!   key lock, the connection takes ONE number for the whole and pushes the unit to its own
//!   core's feed ([`Capture::commit`]), then releases the locks.
//! - Core 0 owns the stream. When a shard rings it (a shard's first unit since the last
//!   collection rings core 0's doorbell, so a busy stream costs one wake-up per round and an
//!   idle one none), it reads the counter `G`, collects every core's units (one message per
//!   core), and appends those numbered below `G` to the backlog in number order; the rest
//!   wait for the next round, which follows at once. Each replica's sender sleeps on a bell
//!   of its own, rung when the stream grew. (A first version polled every millisecond: an
//!   idle primary with one replica used about 34 % of a CPU; now 15 CPU ticks in 10 s with
//!   one Redis replica attached, 8 with none, debug build, 2 shards.)
//!
//! Why it is one consistent order: a unit's number is taken while its changes are already
//! made and before anything conflicting can run (same step on one shard; under the locks for
//! a transaction), so two units that touch the same key are numbered in the order they ran.
//! Units that touch different keys commute. Why no unit below `G` can be missed: a number is
//! taken and its unit pushed in one step on one core, and the collecting message runs on that
//! core only after the step. Nothing else is needed from the shards: single-shard work still
//! never waits for anyone, and a shard pays nothing while no stream exists (`feed.on` false:
//! one branch per command).
//!
//! Alternatives rejected: a stream per shard (a replica would need percore's sharding, and
//! a Redis replica cannot take it); numbering at the coordinating connection after the reply
//! (two clients' writes to one key could be numbered against the order they ran); VLL-style
//! global ordering of every command (single-shard work would pay for it).
//!
//! A unit of more than one op goes out as MULTI … EXEC (Redis's `propagatePendingCommands`),
//! with SELECT inserted whenever the stream's database changes.
//!
//! # The point of a full sync
//!
//! A full sync needs a snapshot and the stream offset it corresponds to. Under a lock of the
//! whole keyspace (the scheduler's, briefly: no transaction is half-way), core 0 reads the
//! counter (`G`) and remembers it as the replica's mark, and every shard begins its forkless
//! point-in-time snapshot (copy-before-write). Every unit below `G` is in the snapshot;
//! every unit from `G` on is not (an expiry or eviction DEL racing the barrier may be in
//! both: deleting a missing key changes nothing). The merger gives the replica the offset it
//! reached just before the first unit numbered `G` or more.
//!
//! # The backlog
//!
//! Core 0 keeps the stream's tail: `repl-backlog-size` bytes, and more while a replica still
//! needs them (a sync in progress, a slow link), up to the replica class's
//! `client-output-buffer-limit` hard limit (256 MB); a replica that falls further behind is
//! dropped, with a log line, as Redis drops it. Replicas read their bytes from core 0 with a
//! message per read (at most 64 KiB, or as much as is there).
//!
//! The replica side (REPLICAOF) is [`replica`]. Not here yet: `client-output-buffer-limit`'s
//! soft limit for replicas.

pub mod primary;
pub mod replica;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::oneshot;
use percore_shard::repl::{Doorbell, Op, Unit};

use crate::core::{call, call_all, now_ms, Core};

/// What every core may read about replication.
pub struct Shared {
    /// The global sequence of units.
    pub seq: Arc<AtomicU64>,
    /// Core 0's merger waits on it: shards ring it when units wait for collection.
    pub bell: Arc<Doorbell>,
    /// The stream exists (since the first replica attached).
    pub active: AtomicBool,
    /// Shards may be recording (set before the first shard's feed starts, `active` once
    /// every shard's has): a transaction that ends while this is set numbers what it
    /// captured, even if the stream is not `active` yet.
    pub feeding: AtomicBool,
    /// Replicas online whose last acknowledgement is within `min-replicas-max-lag`.
    pub good_replicas: AtomicUsize,
    /// `min-replicas-to-write` when `min-replicas-max-lag` is set too (0: no check), kept
    /// here so that a write checks one atomic, not the configuration.
    pub min_replicas: AtomicUsize,
    /// For INFO and ROLE; published by core 0 after each round.
    pub status: Mutex<Status>,
    /// As a replica: the link to the primary (None on a primary), the REPLICAOF generation
    /// (a link task whose generation is past stops), and the gates normal clients pass
    /// ([`replica::refusal`]; 0 on a primary: one load per command).
    pub link: Mutex<Option<replica::Link>>,
    pub epoch: AtomicU64,
    pub gate: AtomicU8,
    /// INFO stats' `sync_full`, `sync_partial_ok`, `sync_partial_err`.
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// A full sync's load, for INFO's `loading_*` fields (while `gate` has LOADING).
    pub load: LoadProgress,
}

/// How far a full sync's load has come: when it started, the payload's size, and the bytes
/// core 0 has read (every core reads the whole payload, at about the same pace).
#[derive(Default)]
pub struct LoadProgress {
    pub started_ms: AtomicU64,
    pub total_bytes: AtomicU64,
    pub loaded_bytes: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            seq: Arc::new(AtomicU64::new(0)),
            bell: Arc::default(),
            active: AtomicBool::new(false),
            feeding: AtomicBool::new(false),
            good_replicas: AtomicUsize::new(0),
            min_replicas: AtomicUsize::new(0),
            status: Mutex::new(Status {
                replid2: NO_REPLID.into(),
                second_offset: -1,
                ..Status::default()
            }),
            link: Mutex::new(None),
            epoch: AtomicU64::new(0),
            gate: AtomicU8::new(0),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            load: LoadProgress::default(),
        }
    }
}

impl Shared {
    /// A copy of the published state.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes up the settings a write checks.
    pub fn configure(&self, cfg: &crate::config::Config) {
        let n = match cfg.min_replicas_max_lag {
            0 => 0,
            _ => cfg.min_replicas_to_write,
        };
        self.min_replicas.store(n, Ordering::Relaxed);
        self.update_gate(cfg, None);
    }

    /// `min-replicas-to-write`: the NOREPLICAS error when too few good replicas are there
    /// for a write. One load while the setting is 0.
    #[inline]
    pub fn refuses_writes(&self) -> bool {
        let need = self.min_replicas.load(Ordering::Relaxed);
        need > 0 && self.good_replicas.load(Ordering::Relaxed) < need
    }
}

/// The current replication id (`master_replid`).
pub fn replid(global: &crate::core::Global) -> String {
    global
        .repl_id
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Redis's error for a write refused by `min-replicas-to-write`.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// The all-zero replication id of "none" (INFO's `master_replid2` with no history).
pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// Replication state as INFO reports it.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// `master_repl_offset`: bytes of stream produced.
    pub offset: u64,
    pub backlog_active: bool,
    pub backlog_first: u64,
    pub backlog_histlen: u64,
    pub replid2: String,
    pub second_offset: i64,
    pub replicas: Vec<ReplicaLine>,
}

/// One `slaveN:` line.
#[derive(Clone, Debug)]
pub struct ReplicaLine {
    pub ip: String,
    pub port: u16,
    pub state: &'static str,
    pub offset: u64,
    pub lag_s: u64,
}

/// Bytes a replica reads from core 0 per message.
const READ_MAX: usize = 64 << 10;

/// The stream's tail, as offsets: `end` is `master_repl_offset` (the offset of the last
/// byte produced); `buf` holds the bytes up to it.
struct Backlog {
    buf: VecDeque<u8>,
    end: u64,
}

impl Backlog {
    /// The offset of the first byte held (`end + 1` when empty).
    fn first(&self) -> u64 {
        self.end + 1 - self.buf.len() as u64
    }

    fn append(&mut self, b: &[u8]) {
        self.buf.extend(b);
        self.end += b.len() as u64;
    }

    /// Up to `max` bytes from offset `from` on; None when they are no longer held.
    fn read(&self, from: u64, max: usize) -> Option<Vec<u8>> {
        if from < self.first() || from > self.end + 1 {
            return None;
        }
        let at = (from - self.first()) as usize;
        let n = (self.buf.len() - at).min(max);
        Some(self.buf.range(at..at + n).copied().collect())
    }

    /// Keeps at least `size` bytes, and everything from `keep_from` on, up to `hard` bytes.
    fn trim(&mut self, size: usize, keep_from: Option<u64>, hard: usize) {
        let need = keep_from.map_or(0, |k| (self.end + 1).saturating_sub(k) as usize);
        let keep = size.max(need.min(hard));
        if self.buf.len() > keep {
            let drop = self.buf.len() - keep;
            self.buf.drain(..drop);
        }
    }
}

/// A replica as core 0 tracks it.
struct Replica {
    ip: String,
    port: u16,
    /// The offset of the next byte it is to be sent.
    next: u64,
    /// A full sync's snapshot point not yet reached by the merger: the unit number; the
    /// offset once reached.
    mark: Option<u64>,
    synced_at: Option<u64>,
    online: bool,
    /// The offset it acknowledged, and when (Unix ms).
    ack: u64,
    ack_ms: u64,
    /// It fell past the output limit: its reads fail and its connection closes.
    dropped: bool,
    /// Rung when there is something new for its sender (bytes, or being dropped).
    bell: Arc<Doorbell>,
}

/// Core 0's side: the backlog, the units waiting for their turn, the replicas.
struct Hub {
    backlog: Backlog,
    pending: BTreeMap<u64, Vec<Op>>,
    /// The database the stream's commands apply to (SELECT is sent when it changes).
    stream_db: Option<u8>,
    replicas: HashMap<u64, Replica>,
    last_ping_ms: u64,
    /// The counter's value at the last collection.
    collected_to: u64,
    /// The stream's offset after the last unit appended: what a WAIT for the writes before
    /// it waits for (PINGs and GETACKs appended since are not writes to wait for).
    units_end: u64,
    /// WAITs for the merger to pass a unit number: told the stream's end then.
    settles: Vec<(u64, oneshot::Sender<u64>)>,
    /// WAITs for acknowledgements, told when enough replicas acked their target.
    waiters: Vec<AckWaiter>,
    /// A WAIT asked for a GETACK while clients were paused: sent when the pause ends.
    getack_wanted: bool,
}

/// A WAIT parked on core 0 until `want` replicas acknowledged `target`.
struct AckWaiter {
    target: u64,
    want: usize,
    tx: oneshot::Sender<()>,
}

thread_local! {
    /// Lives on core 0 only.
    static HUB: RefCell<Option<Hub>> = const { RefCell::new(None) };
    /// Core 0: the offset a stream created from now on starts after (a promoted replica
    /// goes on from its primary's offset).
    static BASE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The offset of the stream's last byte (core 0): the backlog's end, or where the next
/// one starts.
pub fn stream_end() -> u64 {
    with_hub(|h| h.backlog.end).unwrap_or_else(|| BASE.with(|b| b.get()))
}

/// The stream goes on from `offset` (core 0; a replica promoted): a backlog that exists is
/// emptied and continues from there, else the next one starts there.
pub fn restart_at(offset: u64) {
    BASE.with(|b| b.set(offset));
    with_hub(|h| {
        h.backlog.buf.clear();
        h.backlog.end = offset;
        h.units_end = offset;
        h.stream_db = None;
    });
}

fn with_hub<R>(f: impl FnOnce(&mut Hub) -> R) -> Option<R> {
    HUB.with(|h| h.borrow_mut().as_mut().map(f))
}

/// Creates the stream (backlog, merger, every shard's feed) if it does not exist yet.
/// Returns once every shard records its changes.
pub async fn activate(core: &Rc<Core>) {
    let shared = &core.global.repl;
    if shared.active.load(Ordering::Acquire) {
        return;
    }
    let started = call(core, 0, |c: &Core| {
        let fresh = HUB.with(|h| {
            let mut h = h.borrow_mut();
            if h.is_some() {
                return false;
            }
            *h = Some(Hub::new(now_ms()));
            true
        });
        if fresh {
            let me =
                c.me.upgrade()
                    .expect("a core outlives the messages it runs");
            crate::runtime::spawn(merge_loop(me));
        }
        fresh
    })
    .await;
    if started {
        shared.feeding.store(true, Ordering::Release);
        let (seq, bell) = (shared.seq.clone(), shared.bell.clone());
        call_all(core, move |c: &Core| {
            c.shard.borrow_mut().feed.start(seq.clone(), bell.clone());
        })
        .await;
        shared.active.store(true, Ordering::Release);
        crate::log::notice("Replication backlog created, my new replication IDs are kept");
    } else {
        // Another connection is creating it: wait until every shard records.
        while !shared.active.load(Ordering::Acquire) {
            crate::runtime::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// How often the merger looks at its replicas with nothing to collect (PINGs, lag, the
/// published status): Redis's `hz` 10.
const MERGE_TICK: Duration = Duration::from_millis(100);

/// Core 0's merger: collects the shards' units when one rings (the first unit a shard holds
/// since the last collection rings its bell: one wake-up per round, none while idle) and
/// appends them to the backlog in number order; every [`MERGE_TICK`] it also tends the
/// replicas (PING, lag, limits).
async fn merge_loop(core: Rc<Core>) {
    let bell = core.global.repl.bell.clone();
    loop {
        futures_lite::future::or(bell.wait(), crate::runtime::sleep(MERGE_TICK)).await;
        if core.global.shutdown.load(Ordering::Relaxed) {
            return;
        }
        let g = core.global.repl.seq.load(Ordering::Acquire);
        let collected_to = with_hub(|h| h.collected_to).unwrap_or(0);
        if g != collected_to {
            let units: Vec<Vec<Unit>> = call_all(&core, |c: &Core| {
                std::mem::take(&mut c.shard.borrow_mut().feed.units)
            })
            .await;
            with_hub(|h| {
                for u in units.into_iter().flatten() {
                    h.pending.insert(u.seq, u.ops);
                }
                h.collected_to = g;
            });
        }
        let cfg = core.config.borrow().clone();
        let status = with_hub(|h| {
            let end = h.backlog.end;
            h.emit_below(g);
            let now = now_ms();
            // Not while clients are paused (Redis's replicationCron): a cluster master
            // paused for a manual failover has announced the offset its replica must
            // reach, which a PING would move.
            let paused = crate::pause::in_force_now();
            if !h.replicas.is_empty()
                && now.saturating_sub(h.last_ping_ms) >= cfg.repl_ping_replica_period * 1000
                && !paused
            {
                h.last_ping_ms = now;
                h.backlog.append(b"*1\r\n$4\r\nPING\r\n");
            }
            if h.getack_wanted && !paused {
                h.getack();
            }
            let hard =
                cfg.client_output_buffer_limit[crate::config::ObClass::Replica as usize].hard;
            let hard = if hard == 0 { usize::MAX } else { hard as usize };
            let keep_from = h
                .replicas
                .values()
                .filter(|r| !r.dropped)
                .map(|r| r.next)
                .min();
            h.backlog.trim(cfg.repl_backlog_size, keep_from, hard);
            let first = h.backlog.first();
            for r in h.replicas.values_mut() {
                if !r.dropped && r.mark.is_none() && r.next < first {
                    r.dropped = true;
                    r.bell.ring();
                    crate::log::warn(&format!(
                        "Client replica {}:{} scheduled to be closed ASAP for overcoming of output buffer limits.",
                        r.ip, r.port
                    ));
                }
            }
            if h.backlog.end != end {
                h.replicas.values().for_each(|r| r.bell.ring());
            }
            h.wake_waits();
            // Units numbered past `g` wait: another round at once, not at the next ring.
            if !h.pending.is_empty() {
                bell.ring();
            }
            h.status(&cfg, now)
        });
        if let Some((status, good)) = status {
            let shared = &core.global.repl;
            shared.good_replicas.store(good, Ordering::Relaxed);
            let mut s = shared.status.lock().unwrap_or_else(|p| p.into_inner());
            let (replid2, second) = (std::mem::take(&mut s.replid2), s.second_offset);
            *s = status;
            s.replid2 = replid2;
            s.second_offset = second;
        }
    }
}

impl Hub {
    /// REPLCONF GETACK * into the stream, and the replicas' links woken to send it.
    fn getack(&mut self) {
        self.getack_wanted = false;
        self.backlog
            .append(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n");
        self.replicas.values().for_each(|r| r.bell.ring());
    }

    fn new(now_ms: u64) -> Hub {
        Hub {
            backlog: Backlog {
                buf: VecDeque::new(),
                end: BASE.with(|b| b.get()),
            },
            pending: BTreeMap::new(),
            stream_db: None,
            replicas: HashMap::new(),
            last_ping_ms: now_ms,
            collected_to: 0,
            units_end: BASE.with(|b| b.get()),
            settles: Vec::new(),
            waiters: Vec::new(),
            getack_wanted: false,
        }
    }

    /// Replicas online that acknowledged `target` or more.
    fn acked(&self, target: u64) -> usize {
        self.replicas
            .values()
            .filter(|r| !r.dropped && r.online && r.ack >= target)
            .count()
    }

    /// Tells the WAITs whose unit the merger has passed, and those with enough
    /// acknowledgements; forgets those that gave up.
    fn wake_waits(&mut self) {
        let (to, end) = (self.collected_to, self.units_end);
        self.settles.retain_mut(|(g, tx)| match *g <= to {
            true => {
                let tx = std::mem::replace(tx, oneshot::channel().0);
                let _ = tx.send(end);
                false
            }
            false => !tx.is_canceled(),
        });
        let mut waiters = std::mem::take(&mut self.waiters);
        waiters.retain_mut(|w| {
            if self.acked(w.target) >= w.want {
                let tx = std::mem::replace(&mut w.tx, oneshot::channel().0);
                let _ = tx.send(());
                false
            } else {
                !w.tx.is_canceled()
            }
        });
        self.waiters = waiters;
    }

    /// Appends the waiting units numbered below `g`, in order, and settles the snapshot
    /// marks they pass.
    fn emit_below(&mut self, g: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= g {
                break;
            }
            let seq = *entry.key();
            let ops = entry.remove();
            self.settle_marks(seq);
            self.append_unit(&ops);
        }
        self.settle_marks(g);
    }

    /// Replicas whose snapshot point is at or before unit `seq` start from here. A replica
    /// starts its stream in database 0 (the snapshot says nothing of the stream's database,
    /// as Redis's `repl-stream-db` can): the next unit selects its database again, though
    /// the stream's was already that one. Without this, a write to database 3 just after the
    /// snapshot point, following one just before it, reached the replica's database 0.
    fn settle_marks(&mut self, seq: u64) {
        let end = self.backlog.end;
        for r in self.replicas.values_mut() {
            if r.mark.is_some_and(|m| m <= seq) {
                r.mark = None;
                r.synced_at = Some(end);
                r.next = end + 1;
                self.stream_db = None;
            }
        }
    }

    fn append_unit(&mut self, ops: &[Op]) {
        let Some(first) = ops.first() else {
            return;
        };
        let wrap = ops.len() > 1;
        if wrap {
            self.select(first.db);
            self.backlog.append(b"*1\r\n$5\r\nMULTI\r\n");
        }
        for op in ops {
            self.select(op.db);
            self.backlog.append(&op.cmd);
        }
        if wrap {
            self.backlog.append(b"*1\r\n$4\r\nEXEC\r\n");
        }
        self.units_end = self.backlog.end;
    }

    fn select(&mut self, db: u8) {
        if self.stream_db != Some(db) {
            let n = db.to_string();
            let cmd = percore_shard::repl::encode(&[b"SELECT", n.as_bytes()]);
            self.backlog.append(&cmd);
            self.stream_db = Some(db);
        }
    }

    /// INFO's view, and how many replicas are good for `min-replicas-to-write`.
    fn status(&self, cfg: &crate::config::Config, now: u64) -> (Status, usize) {
        let mut replicas: Vec<(&u64, &Replica)> =
            self.replicas.iter().filter(|(_, r)| !r.dropped).collect();
        replicas.sort_by_key(|(id, _)| **id);
        let lag = |r: &Replica| now.saturating_sub(r.ack_ms) / 1000;
        let good = replicas
            .iter()
            .filter(|(_, r)| r.online && lag(r) <= cfg.min_replicas_max_lag)
            .count();
        let lines = replicas
            .iter()
            .map(|(_, r)| ReplicaLine {
                ip: r.ip.clone(),
                port: r.port,
                state: if r.online { "online" } else { "wait_bgsave" },
                offset: r.ack,
                lag_s: lag(r),
            })
            .collect();
        let s = Status {
            offset: self.backlog.end,
            backlog_active: true,
            backlog_first: self.backlog.first(),
            backlog_histlen: self.backlog.buf.len() as u64,
            replid2: String::new(),
            second_offset: -1,
            replicas: lines,
        };
        (s, good)
    }
}

/// What a replica's read from core 0 found.
pub enum Read {
    Bytes(Vec<u8>),
    /// Its snapshot point is not reached yet.
    Waiting,
    /// It fell out of the backlog (or was never known): the link must close.
    Gone,
}

/// Registers replica `id` for a full sync, to be run on core 0 under a lock of the whole
/// keyspace: its snapshot point is the counter's value now. Returns the point.
pub fn register_full(c: &Core, id: u64, ip: String, port: u16) -> u64 {
    let g = c.global.repl.seq.load(Ordering::Acquire);
    // The merger settles the replica's mark at its next round.
    c.global.repl.bell.ring();
    with_hub(|h| {
        let next = h.backlog.end + 1;
        h.replicas.insert(
            id,
            Replica {
                ip,
                port,
                next,
                mark: Some(g),
                synced_at: None,
                online: false,
                ack: 0,
                ack_ms: now_ms(),
                dropped: false,
                bell: Arc::default(),
            },
        );
    });
    g
}

/// Registers replica `id` to continue from offset `from` (a partial resync): false when the
/// backlog no longer holds it.
pub fn register_partial(id: u64, ip: String, port: u16, from: u64) -> bool {
    with_hub(|h| {
        if h.backlog.read(from, 0).is_none() {
            return false;
        }
        h.replicas.insert(
            id,
            Replica {
                ip,
                port,
                next: from,
                mark: None,
                synced_at: Some(from.saturating_sub(1)),
                online: true,
                ack: from.saturating_sub(1),
                ack_ms: now_ms(),
                dropped: false,
                bell: Arc::default(),
            },
        );
        true
    })
    .unwrap_or(false)
}

/// The bell replica `id`'s sender waits on (core 0).
pub fn bell_for(id: u64) -> Option<Arc<Doorbell>> {
    with_hub(|h| h.replicas.get(&id).map(|r| r.bell.clone())).flatten()
}

/// The offset replica `id`'s full sync starts after, once the merger has reached it.
pub fn synced_at(id: u64) -> Option<u64> {
    with_hub(|h| h.replicas.get(&id).and_then(|r| r.synced_at)).flatten()
}

/// The next bytes of the stream for replica `id` (core 0).
pub fn read_for(id: u64) -> Read {
    with_hub(|h| {
        let Some(r) = h.replicas.get_mut(&id) else {
            return Read::Gone;
        };
        if r.dropped {
            return Read::Gone;
        }
        if r.mark.is_some() {
            return Read::Waiting;
        }
        match h.backlog.read(r.next, READ_MAX) {
            Some(b) => {
                r.next += b.len() as u64;
                Read::Bytes(b)
            }
            None => Read::Gone,
        }
    })
    .unwrap_or(Read::Gone)
}

/// Replica `id` has loaded its snapshot and takes the stream now.
pub fn set_online(id: u64) {
    with_hub(|h| {
        if let Some(r) = h.replicas.get_mut(&id) {
            r.online = true;
            r.ack_ms = now_ms();
        }
        h.wake_waits();
    });
}

/// REPLCONF ACK from replica `id`.
pub fn ack(id: u64, offset: u64) {
    with_hub(|h| {
        if let Some(r) = h.replicas.get_mut(&id) {
            r.ack = r.ack.max(offset);
            r.ack_ms = now_ms();
            r.online = true;
        }
        h.wake_waits();
    });
}

pub fn unregister(id: u64) {
    with_hub(|h| h.replicas.remove(&id));
}

/// Whether a replica asking for `replid` at `offset` can continue: its id is ours (or our
/// previous one, up to where it was ours) and the backlog holds the offset.
pub fn can_continue(core: &Core, replid: &[u8], offset: u64) -> bool {
    if replid == self::replid(&core.global).as_bytes() {
        return true;
    }
    let s = core.global.repl.status();
    replid == s.replid2.as_bytes() && s.replid2 != NO_REPLID && (offset as i64) <= s.second_offset
}

/// WAIT numreplicas timeout: the number of replicas that acknowledged every write made
/// before the call (the stream up to the counter's value now), waiting up to `timeout_ms`
/// (0: forever) for `want` of them. Asks the replicas for acknowledgements (REPLCONF
/// GETACK in the stream). It sleeps on core 0's word: woken when the merger passes the
/// writes, when an acknowledgement makes the count, at its timeout, and once a second to
/// see a shutdown (no polling: an idle WAIT costs one wake-up a second).
pub async fn wait(core: &Rc<Core>, want: usize, timeout_ms: u64) -> usize {
    if !core.global.repl.active.load(Ordering::Acquire) {
        return 0;
    }
    let deadline =
        (timeout_ms > 0).then(|| std::time::Instant::now() + Duration::from_millis(timeout_ms));
    // The timeout holds while the merger settles too: a busy merger does not stretch
    // `WAIT n 100`. What the writes reached is not known then, so no replica is counted.
    let Some(target) = settle(core, deadline).await else {
        return 0;
    };
    let count = move |_c: &Core| with_hub(|h| h.acked(target)).unwrap_or(0);
    let n = call(core, 0, count).await;
    if n >= want {
        return n;
    }
    let parked = call(core, 0, move |_c: &Core| {
        with_hub(|h| {
            // Not while clients are paused (Redis 7.0's beforeSleep): a cluster master paused
            // for a manual failover announced the offset its replica must reach exactly,
            // which a GETACK would move. Sent when the pause ends; meanwhile the replicas'
            // own ACK every second moves the count.
            match crate::pause::in_force_now() {
                true => h.getack_wanted = true,
                false => h.getack(),
            }
            let (tx, rx) = oneshot::channel();
            h.waiters.push(AckWaiter { target, want, tx });
            rx
        })
    })
    .await;
    if let Some(rx) = parked {
        until(core, rx, deadline).await;
    }
    call(core, 0, count).await
}

/// `rx`'s value, or None at `deadline` (None: no deadline), at a shutdown, or when its
/// sender is gone.
async fn until<T>(
    core: &Core,
    mut rx: oneshot::Receiver<T>,
    deadline: Option<std::time::Instant>,
) -> Option<T> {
    loop {
        let left = deadline.map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(std::time::Instant::now())
        });
        if left.is_zero() || core.global.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        let got = futures_lite::future::or(async { Some((&mut rx).await.ok()) }, async {
            crate::runtime::sleep(left.min(Duration::from_secs(1))).await;
            None
        })
        .await;
        if let Some(v) = got {
            return v;
        }
    }
}

/// WAIT numreplicas timeout.
pub async fn wait_command(
    conn: &mut crate::client::Client,
    a: percore_proto::Args<'_>,
    w: &mut percore_proto::ReplyWriter<'_>,
) {
    let Some(want) = percore_proto::parse_i64(&a[1]) else {
        return w.error(percore_shard::err::NOT_INT);
    };
    let timeout = match percore_proto::parse_i64(&a[2]) {
        None => return w.error("ERR timeout is not an integer or out of range"),
        Some(t) if t < 0 => return w.error("ERR timeout is negative"),
        Some(t) => t as u64,
    };
    if replica::link(&conn.core.global).is_some() {
        return w.error("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.");
    }
    conn.flush().await;
    let want = want.max(0) as usize;
    let core = conn.core.clone();
    if !core.global.repl.active.load(Ordering::Acquire) && want > 0 {
        // No replica: nothing can acknowledge; wait out the timeout (or until closed).
        // Looked at once a second for a kill or a shutdown, not polled.
        let start = std::time::Instant::now();
        while !conn.handle.killed.get() && !core.global.shutdown.load(Ordering::Relaxed) {
            let left = match timeout {
                0 => Duration::from_secs(1),
                t => Duration::from_millis(t).saturating_sub(start.elapsed()),
            };
            if left.is_zero() {
                break;
            }
            crate::runtime::sleep(left.min(Duration::from_secs(1))).await;
        }
    }
    w.int(wait(&core, want, timeout).await as i64);
}

/// ROLE, on a primary: `master`, the offset, and each online replica's address, port and
/// acknowledged offset.
pub fn role(conn: &crate::client::Client, w: &mut percore_proto::ReplyWriter<'_>) {
    if let Some(l) = replica::link(&conn.core.global) {
        return replica::role(&l, w);
    }
    let s = conn.core.global.repl.status();
    w.array(3);
    w.bulk(b"master");
    w.int(s.offset as i64);
    let online: Vec<&ReplicaLine> = s.replicas.iter().filter(|r| r.state == "online").collect();
    w.array(online.len());
    for r in online {
        w.array(3);
        w.bulk(r.ip.as_bytes());
        w.bulk(r.port.to_string().as_bytes());
        w.bulk(r.offset.to_string().as_bytes());
    }
}

/// INFO's replication section, as Redis 7.0 writes it for a primary.
pub fn info(global: &crate::core::Global) -> String {
    let mut s = global.repl.status();
    let replid = replid(global);
    let cfg = global
        .config
        .lock()
        .map(|c| c.1.clone())
        .unwrap_or_default();
    let link = replica::link(global);
    let mut out = match &link {
        Some(l) => {
            s.offset = l.offset.max(0) as u64;
            replica::info_lines(l, &cfg)
        }
        None => "role:master\r\n".to_string(),
    };
    out.push_str(&format!("connected_slaves:{}\r\n", s.replicas.len()));
    for (i, r) in s.replicas.iter().enumerate() {
        out.push_str(&format!(
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            r.ip, r.port, r.state, r.offset, r.lag_s
        ));
    }
    let cfg_size = cfg.repl_backlog_size;
    out.push_str(&format!(
        "master_failover_state:no-failover\r\nmaster_replid:{replid}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n",
        if s.replid2.is_empty() { NO_REPLID } else { &s.replid2 },
        s.offset,
        s.second_offset,
        s.backlog_active as u8,
        cfg_size,
        if s.backlog_active { s.backlog_first } else { 0 },
        s.backlog_histlen,
    ));
    out
}

/// Ops a connection collects for its transaction across shards, pushed as one unit when it
/// ends (see the module's header).
#[derive(Default)]
pub struct Capture {
    pub ops: Vec<Op>,
}

impl Capture {
    /// Takes one number for the collected ops and pushes them to `core`'s feed. Must run
    /// while the transaction still holds its locks.
    pub fn commit(&mut self, core: &Core) {
        if self.ops.is_empty() {
            return;
        }
        let mut shard = core.shard.borrow_mut();
        let feed = &mut shard.feed;
        let held = std::mem::replace(&mut feed.hold, false);
        let before = std::mem::replace(&mut feed.ops, std::mem::take(&mut self.ops));
        feed.close();
        feed.ops = before;
        feed.hold = held;
    }
}

/// Runs `f` on this core's shard with its feed held, moving what it propagated to `into`
/// (a transaction's command on the connection's own core). Costs one load when no stream
/// exists.
#[inline]
pub fn held<R>(
    shard: &mut percore_shard::Shard,
    into: Option<&mut Vec<Op>>,
    f: impl FnOnce(&mut percore_shard::Shard) -> R,
) -> R {
    match into {
        Some(ops) if shard.feed.on => {
            let was = std::mem::replace(&mut shard.feed.hold, true);
            let r = f(shard);
            shard.feed.hold = was;
            ops.append(&mut shard.feed.ops);
            r
        }
        _ => f(shard),
    }
}

/// Serves the clients blocked on keys just filled ([`crate::blocking::serve_ready`]); with
/// `into` (a transaction's capture) and a stream, their pops join the transaction's unit.
#[inline]
pub fn serve_ready_held(core: &Core, into: Option<&RefCell<Vec<Op>>>) {
    let Some(into) = into.filter(|_| core.shard.borrow().feed.on) else {
        return crate::blocking::serve_ready(core);
    };
    let was = std::mem::replace(&mut core.shard.borrow_mut().feed.hold, true);
    crate::blocking::serve_ready(core);
    let mut sh = core.shard.borrow_mut();
    sh.feed.hold = was;
    into.borrow_mut().append(&mut sh.feed.ops);
}

/// The unit of a command the connection propagates itself (FLUSHALL, FLUSHDB, SWAPDB, and
/// the commands over several shards that are not a series of shard commands): into the
/// transaction's capture when there is one, else numbered now.
#[inline]
pub fn propagate_here(core: &Core, capture: Option<&mut Vec<Op>>, db: usize, args: &[&[u8]]) {
    if !core.global.repl.active.load(Ordering::Acquire) {
        return;
    }
    let op = Op {
        db: db as u8,
        cmd: percore_shard::repl::encode(args),
    };
    match capture {
        Some(ops) => ops.push(op),
        None => {
            let mut c = Capture { ops: vec![op] };
            c.commit(core);
        }
    }
}

/// A write command over several shards that ran as steps of the coordinator (RENAME,
/// SMOVE, SINTERSTORE, …; not one shard's command): propagated as it was given, since it
/// gives the same result on a replica holding the same keys. Left out when it failed or
/// changed nothing by its reply (`:0` or nil: RENAMENX, MSETNX, SMOVE, COPY, LMOVE, …).
pub fn propagate_coordinated(
    conn: &crate::client::Client,
    args: &percore_proto::Args,
    reply: &[u8],
) {
    if !conn.core.global.repl.active.load(Ordering::Acquire)
        || reply.is_empty()
        || reply[0] == b'-'
        || reply.starts_with(b":0\r\n")
        || reply.starts_with(b"$-1\r\n")
        || reply.starts_with(b"*-1\r\n")
        || reply.starts_with(b"_\r\n")
    {
        return;
    }
    let parts: Vec<&[u8]> = args.iter().collect();
    let capture = conn.tx.is_some() || conn.repl_depth > 0;
    let mut ops = conn.repl_ops.borrow_mut();
    propagate_here(&conn.core, capture.then_some(&mut *ops), conn.db, &parts);
}

/// Waits until the merger passed every write numbered so far (as WAIT settles its target)
/// and returns the stream's end then: the offset a replica has applied once it has them (a
/// cluster master paused for a manual failover announces it). None at a shutdown.
pub async fn settled_stream_end(core: &Rc<Core>) -> Option<u64> {
    if core.global.repl.active.load(Ordering::Acquire) {
        settle(core, None).await?;
    }
    Some(call(core, 0, |_c: &Core| stream_end()).await)
}

/// Waits until the merger has passed every unit numbered so far, and returns the offset the
/// last of them reached (the end of the last unit then, which may be later than theirs:
/// never too early). None at `deadline`, at a shutdown, or without a stream.
async fn settle(core: &Rc<Core>, deadline: Option<std::time::Instant>) -> Option<u64> {
    let g = core.global.repl.seq.load(Ordering::Acquire);
    let settled = call(core, 0, move |_c: &Core| {
        with_hub(|h| match h.collected_to >= g {
            true => Ok(h.units_end),
            false => {
                let (tx, rx) = oneshot::channel();
                h.settles.push((g, tx));
                Err(rx)
            }
        })
    })
    .await;
    match settled? {
        Ok(end) => Some(end),
        Err(rx) => until(core, rx, deadline).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_keeps_its_size_and_what_replicas_still_need() {
        let mut b = Backlog {
            buf: VecDeque::new(),
            end: 0,
        };
        assert_eq!(b.first(), 1);
        assert_eq!(b.read(1, 10), Some(vec![]));
        b.append(b"abcdef");
        assert_eq!(b.end, 6);
        assert_eq!(b.read(3, 2), Some(b"cd".to_vec()));
        b.trim(2, None, 100);
        assert_eq!(b.first(), 5);
        assert_eq!(b.read(4, 10), None);
        assert_eq!(b.read(5, 10), Some(b"ef".to_vec()));
        b.append(b"ghij");
        b.trim(2, Some(5), 100);
        assert_eq!(b.first(), 5, "a replica still needs offset 5");
        b.trim(2, Some(5), 3);
        assert_eq!(b.first(), 8, "but no more than the hard limit");
        assert_eq!(b.read(11, 10), Some(vec![]));
        assert_eq!(b.read(12, 10), None);
    }

    #[test]
    fn units_go_out_in_number_order_wrapped_and_with_select() {
        let mut h = Hub::new(0);
        let op = |db: u8, parts: &[&[u8]]| Op {
            db,
            cmd: percore_shard::repl::encode(parts),
        };
        h.pending.insert(2, vec![op(1, &[b"SET", b"b", b"2"])]);
        h.pending.insert(
            0,
            vec![op(0, &[b"SET", b"a", b"1"]), op(1, &[b"DEL", b"c"])],
        );
        h.pending.insert(5, vec![op(1, &[b"SET", b"z", b"9"])]);
        h.replicas.insert(
            7,
            Replica {
                ip: String::new(),
                port: 0,
                next: 1,
                mark: Some(1),
                synced_at: None,
                online: false,
                ack: 0,
                ack_ms: 0,
                dropped: false,
                bell: Arc::default(),
            },
        );
        h.emit_below(3);
        let text = String::from_utf8(h.backlog.buf.iter().copied().collect()).unwrap();
        assert_eq!(
            text,
            "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*1\r\n$5\r\nMULTI\r\n\
             *3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n\
             *2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n*2\r\n$3\r\nDEL\r\n$1\r\nc\r\n\
             *1\r\n$4\r\nEXEC\r\n\
             *2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        assert!(h.pending.contains_key(&5), "unit 5 waits for its turn");
        // The replica's snapshot point (unit 1) falls after unit 0 and before unit 2; its
        // stream begins with the SELECT of unit 2's database (the replica is in database 0
        // after the sync), though the stream's database was already 1.
        let r = &h.replicas[&7];
        let after_unit_0 = text.rfind("*2\r\n$6\r\nSELECT").unwrap() as u64;
        assert_eq!(r.synced_at, Some(after_unit_0));
        assert_eq!(r.next, after_unit_0 + 1);
    }
}
