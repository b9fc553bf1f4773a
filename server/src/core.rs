//! Per-core state and the messages cores exchange.
//!
//! Each core owns one [`Shard`] outright (in a `RefCell` that is never borrowed across an
//! `.await`), its connections' registry and its own counters. Nothing here is shared between
//! threads except [`Global`], which holds only what must be global: the connection count
//! for `maxclients`, client ids, the authoritative configuration, and the shutdown flag — none
//! of it touched per command.
//!
//! Cores talk by [`Job`]s: a closure sent through the mesh runs on the target core with
//! access to its state. The hot path sends one job per destination shard per read (a
//! [`Batch`] of commands); administrative fan-out (INFO, CLIENT LIST, CONFIG SET) uses the
//! same mechanism.

use crate::config::Config;
use crate::latency::{LatencyHist, LatencyMonitor, SlowEntry, SlowLog};
use crate::runtime::Mailbox;
use futures_channel::oneshot;
use percore_proto::{Args, CommandSpec, Flags, OwnedArgs, Protocol, ReplyWriter, Span, CMD_COUNT};
use percore_shard::evict::Evicted;
use percore_shard::{ExecCtx, Shard};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Work sent to another core.
pub type Job = Box<dyn FnOnce(&Core) + Send>;

/// Queue depth between each ordered pair of cores.
pub const MAILBOX_CAPACITY: usize = 1024;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The little that all cores share.
pub struct Global {
    pub nshards: usize,
    /// Per shard: its last eviction found no key the policy may evict (`Core::make_room`;
    /// the background tick's eviction updates it too).
    pub evict_dry: Box<[AtomicBool]>,
    /// The authoritative configuration and its version; cores hold copies and apply a
    /// broadcast copy only if it is newer, so concurrent CONFIG SETs converge.
    pub config: Mutex<(u64, Arc<Config>)>,
    pub connected: AtomicUsize,
    pub next_client_id: AtomicU64,
    /// Slow-log entry ids, unique across cores (touched only by slow commands).
    pub next_slowlog_id: AtomicU64,
    /// Process allocation when every shard was ready (used_memory_startup).
    pub startup_allocated: AtomicU64,
    pub rejected_connections: AtomicU64,
    /// Connections parked in a blocking command (INFO `blocked_clients`).
    pub blocked_clients: AtomicUsize,
    /// Every core closes its clients and listeners and the process exits; set once a
    /// shutdown has gone ahead (its final save, if any, done).
    pub shutdown: AtomicBool,
    /// SIGTERM or SIGINT asked for a shutdown (the signal's number; 0: none). Core 0's
    /// background tick takes it up, saves when `save` points are set, then sets `shutdown`.
    pub shutdown_signal: std::sync::atomic::AtomicI32,
    /// Every shard has loaded its part of the snapshot: cores accept clients only then, so
    /// no client sees a keyspace with some shards still empty.
    pub serving: AtomicBool,
    /// A SAVE is running (one at a time).
    pub saving: AtomicBool,
    pub last_save_ok: AtomicBool,
    /// When the last snapshot was taken (LASTSAVE, INFO `rdb_last_save_time`), Unix ms.
    pub last_save_ms: AtomicU64,
    /// The sum of the shards' write counters at that snapshot (`rdb_changes_since_last_save`).
    pub dirty_at_save: AtomicU64,
    /// When the running BGSAVE began, Unix ms; 0 when none runs.
    pub bgsave_started_ms: AtomicU64,
    /// How long the last BGSAVE took, in seconds; -1 before the first.
    pub last_bgsave_s: std::sync::atomic::AtomicI64,
    /// BGSAVE SCHEDULE asked for another save once the running one ends.
    pub bgsave_scheduled: AtomicBool,
    pub started: Instant,
    pub started_unix_ms: u64,
    pub run_id: String,
    /// INFO's `master_replid`; DEBUG CHANGE-REPL-ID draws a new one.
    pub repl_id: Mutex<String>,
    /// The active expiry cycle runs (DEBUG SET-ACTIVE-EXPIRE 0 stops it on every core;
    /// lazy expiry on access goes on).
    pub active_expire: AtomicBool,
    /// Pub/Sub subscriptions on each core (channels, patterns and shard channels): a
    /// PUBLISH skips the cores with none.
    pub pubsub_subs: Vec<AtomicUsize>,
    /// MONITOR clients on each core, and in all: commands are fed to them only when
    /// there are some.
    pub monitors: Vec<AtomicUsize>,
    pub monitors_total: AtomicUsize,
    /// Clients with CLIENT TRACKING on (INFO `tracking_clients`).
    pub tracking_clients: AtomicUsize,
    /// ACL users and the ACL log.
    pub acl: crate::acl::Acl,
    pub port: u16,
    pub executable: String,
    /// Replication's shared state ([`crate::repl`]).
    pub repl: crate::repl::Shared,
}

/// Per-command counters (Redis's commandstats).
#[derive(Clone, Copy, Default, Debug)]
pub struct CmdStat {
    pub calls: u64,
    /// Execution time, summed in nanoseconds (INFO shows microseconds, as Redis).
    pub nsec: u64,
    pub failed: u64,
    pub rejected: u64,
}

/// A core's counters; summed over cores by INFO.
#[derive(Clone, Debug)]
pub struct CoreStats {
    pub connections_received: u64,
    pub commands_processed: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub reads_processed: u64,
    pub writes_processed: u64,
    pub error_replies: u64,
    /// Clients disconnected for their output buffer limit.
    pub output_limit_disconnections: u64,
    pub batches_sent: u64,
    pub batched_commands_sent: u64,
    pub cmd: Vec<CmdStat>,
    /// Latency histogram per command, created when the command first runs here.
    pub latency: Vec<Option<LatencyHist>>,
    /// Cross-shard batches sent, by size: ≤ 1, 2, 4, … 64 commands (`BATCH_SIZE_BUCKETS`).
    pub batch_sizes: [u64; BATCH_SIZE_BUCKETS.len()],
    /// Error replies by their first word (errorstats).
    pub errors: HashMap<String, u64>,
    /// (when, commands_processed) samples for instantaneous_ops_per_sec.
    pub ops_samples: [(u64, u64); 16],
    pub ops_sample_idx: usize,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            connections_received: 0,
            commands_processed: 0,
            net_input_bytes: 0,
            net_output_bytes: 0,
            reads_processed: 0,
            writes_processed: 0,
            error_replies: 0,
            output_limit_disconnections: 0,
            batches_sent: 0,
            batched_commands_sent: 0,
            cmd: vec![CmdStat::default(); CMD_COUNT],
            latency: vec![None; CMD_COUNT],
            batch_sizes: [0; BATCH_SIZE_BUCKETS.len()],
            errors: HashMap::new(),
            ops_samples: [(0, 0); 16],
            ops_sample_idx: 0,
        }
    }
}

/// True when the process uses more than `limit` bytes.
pub fn over_limit(limit: u64) -> bool {
    crate::alloc::total_allocated().max(0) as u64 > limit
}

/// Redis's error for a write refused under `maxmemory`.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Keys one command may evict before it runs; the background tick continues the work.
pub const EVICT_PER_COMMAND: usize = 64;

/// Upper bounds of the cross-shard batch-size buckets (a connection flushes at 64 queued
/// commands, so larger batches are rare: they count only in the total).
pub const BATCH_SIZE_BUCKETS: [u64; 7] = [1, 2, 4, 8, 16, 32, 64];

impl CoreStats {
    /// Records one executed command and, if `reply` is an error, its error code.
    #[inline]
    pub fn record(&mut self, spec: &CommandSpec, ns: u64, reply: &[u8]) {
        let s = &mut self.cmd[spec.cmd as usize];
        s.calls += 1;
        s.nsec += ns;
        self.latency[spec.cmd as usize]
            .get_or_insert_with(LatencyHist::default)
            .record(ns);
        self.commands_processed += 1;
        if reply.first() == Some(&b'-') {
            s.failed += 1;
            self.count_error(reply);
        }
    }

    /// Records one cross-shard batch of `n` commands.
    pub fn record_batch(&mut self, n: usize) {
        self.batches_sent += 1;
        self.batched_commands_sent += n as u64;
        if let Some(b) = BATCH_SIZE_BUCKETS.iter().position(|&le| n as u64 <= le) {
            self.batch_sizes[b] += 1;
        }
    }

    /// Records a command refused before execution (unknown, arity, auth).
    pub fn record_rejected(&mut self, spec: Option<&CommandSpec>, reply: &[u8]) {
        if let Some(spec) = spec {
            self.cmd[spec.cmd as usize].rejected += 1;
        }
        self.count_error(reply);
    }

    pub fn count_error(&mut self, reply: &[u8]) {
        self.error_replies += 1;
        let body = reply.strip_prefix(b"-").unwrap_or(reply);
        let end = body
            .iter()
            .position(|&c| c == b' ' || c == b'\r')
            .unwrap_or(body.len())
            .min(64);
        let code = String::from_utf8_lossy(&body[..end]);
        // Known codes are counted without allocating; new ones are bounded, so clients
        // cannot grow this map without limit with made-up codes.
        if let Some(n) = self.errors.get_mut(code.as_ref()) {
            *n += 1;
        } else if self.errors.len() < 128 {
            self.errors.insert(code.into_owned(), 1);
        }
    }
}

/// What CLIENT LIST/INFO shows about a connection; updated by the connection itself.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub name: Vec<u8>,
    pub lib_name: Vec<u8>,
    pub lib_ver: Vec<u8>,
    pub db: usize,
    pub proto: Protocol,
    pub last_cmd: &'static str,
    pub last_interaction: Instant,
    /// Unparsed input: in the read buffer, and received by the ring but not yet read.
    pub qbuf: usize,
    /// Free room in the read buffer, and the buffer's size.
    pub qbuf_free: usize,
    pub rbs: usize,
    /// Bytes of the arguments of the command running (set by CLIENT LIST/INFO for itself).
    pub argv_mem: usize,
    /// Replies waiting to be sent: the first 16 KiB, as Redis's fixed reply buffer (`obl`),
    /// and the rest in 16 KiB blocks (`oll`, `omem`), as its reply list.
    pub reply_bytes: usize,
    /// Memory held by the connection: buffers' capacities and its own state.
    pub tot_mem: usize,
    pub no_evict: bool,
    pub no_touch: bool,
    /// Channels, patterns and shard channels subscribed to.
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// In MONITOR mode (CLIENT LIST flag O).
    pub monitor: bool,
    /// Commands queued in MULTI (-1 outside one) and their bytes.
    pub multi: i64,
    pub multi_mem: usize,
    /// The WATCH flag while the client watches keys (CLIENT LIST's `d` when raised).
    pub dirty_cas: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The ACL user the connection is authenticated as (`default` until AUTH).
    pub user: Vec<u8>,
    /// The connection is a replica's link (CLIENT LIST flag S, CLIENT KILL TYPE replica).
    pub replica: bool,
    /// The connection is a replica's master client (CLIENT LIST flag M).
    pub master: bool,
}

/// Redis's fixed reply buffer and reply-list block size (CLIENT LIST `obl`, `oll`, `omem`).
const REPLY_BLOCK: usize = 16 << 10;

/// A connection as other code sees it: enough to list and to kill it.
pub struct ClientHandle {
    pub id: u64,
    pub fd: RawFd,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub info: RefCell<ClientInfo>,
    pub killed: Cell<bool>,
    /// The blocking command this client is parked in, if any (CLIENT UNBLOCK, CLIENT LIST).
    pub blocked: RefCell<Option<Arc<crate::blocking::WaitCell>>>,
    /// What reaches the connection outside its replies (Pub/Sub messages, MONITOR lines,
    /// tracking invalidations), written between reads.
    pub outbox: Rc<crate::pubsub::Outbox>,
    /// CLIENT TRACKING state, while on.
    pub tracking: RefCell<Option<crate::tracking::TrackState>>,
}

impl ClientHandle {
    /// Marks the connection for closing and wakes its pending read.
    pub fn kill(&self) {
        self.killed.set(true);
        // SAFETY: `fd` belongs to the connection's live stream on this same thread: the
        // connection removes its handle from the registry before its stream is dropped, and
        // the registry is only used on this core. shutdown(2) does not close or reuse the
        // descriptor; it only makes the pending read return, so the connection task exits.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }

    /// CLIENT LIST's flags in Redis's order: P (subscribed), x (in MULTI), b (blocked), d (a watched key
    /// changed); N for none.
    fn flags(&self, i: &ClientInfo) -> String {
        let mut f = String::new();
        if i.replica {
            f.push('S');
        }
        if i.master {
            f.push('M');
        }
        if i.monitor {
            f.push('O');
        }
        if i.sub + i.psub + i.ssub > 0 {
            f.push('P');
        }
        if i.multi >= 0 {
            f.push('x');
        }
        if self.blocked.borrow().is_some() {
            f.push('b');
        }
        if let Some(t) = self.tracking.borrow().as_ref() {
            f.push('t');
            if t.broken {
                f.push('R');
            }
            if t.bcast {
                f.push('B');
            }
        }
        if i.dirty_cas
            .as_ref()
            .is_some_and(|d| d.load(std::sync::atomic::Ordering::Relaxed))
        {
            f.push('d');
        }
        if f.is_empty() {
            f.push('N');
        }
        f
    }

    /// The client's type as CLIENT LIST TYPE and CLIENT KILL TYPE name it (Redis's
    /// `getClientType`): a replica's master client, a replica link (a MONITOR client is
    /// normal), a subscribed client, or normal.
    pub fn kind(&self) -> &'static str {
        let i = self.info.borrow();
        if i.master {
            "master"
        } else if i.replica && !i.monitor {
            "replica"
        } else if i.sub + i.psub + i.ssub > 0 {
            "pubsub"
        } else {
            "normal"
        }
    }

    /// One CLIENT LIST line, fields as Redis 7.
    pub fn describe(&self, now: Instant) -> String {
        let i = self.info.borrow();
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} qbuf={} qbuf-free={} argv-mem={} multi-mem={} rbs={} rbp={} obl={} oll={} omem={} tot-mem={} events=r cmd={} user={} redir={} resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            String::from_utf8_lossy(&i.name),
            now.duration_since(self.created).as_secs(),
            now.duration_since(i.last_interaction).as_secs(),
            self.flags(&i),
            i.db,
            i.sub,
            i.psub,
            i.ssub,
            i.multi,
            i.qbuf,
            i.qbuf_free,
            i.argv_mem,
            i.multi_mem,
            i.rbs,
            i.rbs,
            i.reply_bytes.min(REPLY_BLOCK),
            i.reply_bytes.saturating_sub(REPLY_BLOCK).div_ceil(REPLY_BLOCK),
            i.reply_bytes.saturating_sub(REPLY_BLOCK),
            i.tot_mem,
            i.last_cmd,
            String::from_utf8_lossy(&i.user),
            self.tracking
                .borrow()
                .as_ref()
                .map_or(-1, |t| t.redirect as i64),
            if i.proto == Protocol::Resp3 { 3 } else { 2 },
            String::from_utf8_lossy(&i.lib_name),
            String::from_utf8_lossy(&i.lib_ver),
        )
    }
}

/// One command inside a [`Batch`].
pub struct BatchCmd {
    pub spec: &'static CommandSpec,
    pub db: u8,
    pub proto: Protocol,
    /// False for the parts of a command split across shards: the coordinator counts it once.
    pub record: bool,
    /// Range of this command's spans in `Batch::spans`.
    pub spans: (u32, u32),
    /// The keys it reads are remembered for the batch's tracking client.
    pub track: bool,
}

/// Commands from one connection's read for one remote shard: one message, one reply.
/// The buffers travel back with the reply so the connection reuses them.
#[derive(Default)]
pub struct Batch {
    pub buf: Vec<u8>,
    pub spans: Vec<Span>,
    pub cmds: Vec<BatchCmd>,
    /// The sending client, for slow-log entries written by the executing core.
    pub client_addr: Option<SocketAddr>,
    pub client_name: Vec<u8>,
    /// The transaction the commands belong to: they pass its key locks.
    pub tx: Option<crate::txlock::TxId>,
    /// The tracking client the commands run for (CLIENT TRACKING), if it tracks.
    pub caller: Option<percore_shard::tracking::Caller>,
    /// The transaction's last batch to this shard: its locks here are released right after
    /// it runs (one hop fewer than a release of its own).
    pub release: bool,
    /// Sent by a script whose calls may grow memory over `maxmemory`
    /// (`scripting::oom_exempt`): its commands are not refused for memory.
    pub oom_exempt: bool,
    /// Part of a transaction across shards: what the commands propagate comes back in
    /// [`BatchReply::repl`] for its coordinator ([`crate::repl`]).
    pub hold_repl: bool,
    /// Sent by a replica's master client: no key is expired for its commands
    /// ([`percore_shard::Shard::master_view`]).
    pub master_view: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.cmds.clear();
    }

    /// Appends a command made of `parts`; returns its index in the batch.
    pub fn push<'a>(
        &mut self,
        spec: &'static CommandSpec,
        db: usize,
        proto: Protocol,
        record: bool,
        parts: impl Iterator<Item = &'a [u8]>,
    ) -> usize {
        let first = self.spans.len() as u32;
        for p in parts {
            self.spans.push(Span {
                start: self.buf.len(),
                len: p.len(),
            });
            self.buf.extend_from_slice(p);
        }
        self.cmds.push(BatchCmd {
            spec,
            db: db as u8,
            proto,
            record,
            spans: (first, self.spans.len() as u32),
            track: false,
        });
        self.cmds.len() - 1
    }
}

/// The replies to a [`Batch`], concatenated; `ends[i]` is where reply i ends.
#[derive(Default)]
pub struct BatchReply {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
    /// What the commands of a held batch propagated ([`Batch::hold_repl`]).
    pub repl: Vec<percore_shard::repl::Op>,
}

impl BatchReply {
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.repl.clear();
    }
}

/// One core: a shard, its clients, its counters, and its mailbox to the others.
pub struct Core {
    pub id: usize,
    pub global: Arc<Global>,
    pub shard: RefCell<Shard>,
    /// Clients parked on this shard's keys (BLPOP, …), FIFO per key.
    pub blocking: RefCell<crate::blocking::Registry>,
    /// Keys locked by transactions spanning shards, and the work waiting on them.
    pub locks: RefCell<crate::txlock::Locks>,
    pub config: RefCell<Arc<Config>>,
    pub config_version: Cell<u64>,
    pub mailbox: Mailbox<Job>,
    pub clients: RefCell<HashMap<u64, Rc<ClientHandle>>>,
    pub stats: RefCell<CoreStats>,
    pub slowlog: RefCell<SlowLog>,
    pub latency: RefCell<LatencyMonitor>,
    /// Pub/Sub subscriptions of this core's clients.
    pub pubsub: RefCell<crate::pubsub::Registry>,
    /// This core itself, for work a message starts on it that outlives the message
    /// (a background save).
    pub me: std::rc::Weak<Core>,
    /// Closed while a shutdown saves its final snapshot: no reply leaves this core, so no
    /// write is acknowledged that the snapshot may not hold.
    pub replies: ReplyGate,
    /// This core's listening sockets (RESP and metrics), shut down before the process exits
    /// so that the port is free at once for the next start.
    pub listeners: RefCell<Vec<crate::runtime::ListenerCloser>>,
}

/// A gate connections pass before writing replies: open except during a shutdown's final
/// save. Passing an open gate costs one `Cell` read; a closed one parks the connection
/// (one waker per connection at most) until it opens, or for good when the process exits.
#[derive(Default)]
pub struct ReplyGate {
    closed: Cell<bool>,
    waiting: RefCell<Vec<std::task::Waker>>,
}

impl ReplyGate {
    pub fn close(&self) {
        self.closed.set(true);
    }

    pub fn open(&self) {
        self.closed.set(false);
        for w in self.waiting.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the gate is open.
    pub fn pass(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if !self.closed.get() {
                return std::task::Poll::Ready(());
            }
            let mut waiting = self.waiting.borrow_mut();
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
    }
}

/// Who ran a command, as the slow log names it; resolved only for slow commands.
pub enum Caller<'a> {
    Client(&'a ClientHandle),
    Remote(Option<SocketAddr>, &'a [u8]),
    Internal,
}

impl Core {
    pub fn nshards(&self) -> usize {
        self.global.nshards
    }

    /// `maxmemory` in bytes (0: no limit).
    ///
    /// The limit bounds the process's allocated bytes (Redis's `used_memory`), measured as the
    /// exact total over threads (`alloc::total_allocated`), because one core's own count
    /// drifts when memory crosses cores. The shard that runs a write evicts from its own keys,
    /// so with keys hashed evenly the limit splits evenly across shards; a shard with none
    /// left admits the write while another may still evict (see `make_room`).
    pub fn memory_limit(&self) -> u64 {
        self.config.borrow().maxmemory
    }

    /// Before a command runs on this shard: when the process is over `maxmemory`, evicts (at
    /// most `EVICT_PER_COMMAND` keys of this shard); refuses a command that may grow memory
    /// (`denyoom`) only when nothing can be evicted, as Redis does. Costs a comparison when
    /// no limit is set, and a sum over a few per-thread counters when one is.
    #[inline]
    pub fn admit(
        &self,
        spec: &CommandSpec,
        shard: &mut Shard,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        let limit = self.memory_limit();
        if limit == 0 || !over_limit(limit) {
            return Ok(());
        }
        self.make_room(spec, shard, now_ms, limit)
    }

    #[cold]
    fn make_room(
        &self,
        spec: &CommandSpec,
        shard: &mut Shard,
        now_ms: u64,
        limit: u64,
    ) -> Result<(), &'static str> {
        // The core's spare network buffers go first: they hold no data.
        if crate::runtime::release_spare_buffers() > 0 && !over_limit(limit) {
            return Ok(());
        }
        let over = &mut || over_limit(limit);
        let dry = matches!(
            shard.evict(now_ms, EVICT_PER_COMMAND, over),
            Evicted::Impossible(_)
        );
        let evicting = shard.config.evict.policy != percore_shard::evict::Policy::NoEviction;
        if evicting {
            self.note_evict_dry(dry);
        }
        if !dry || !spec.flags.has(Flags::DENYOOM) {
            return Ok(());
        }
        // Nothing of this shard's to evict. Redis evicts from the whole keyspace: while
        // another shard may still hold keys the policy can evict, the write goes ahead and
        // their background ticks (every core's, at `hz`) evict until memory is under the
        // limit again; refused once every shard found nothing, and always under noeviction.
        let others_may = self
            .global
            .evict_dry
            .iter()
            .any(|d| !d.load(Ordering::Relaxed));
        if evicting && others_may {
            Ok(())
        } else {
            Err(OOM)
        }
    }

    /// Records whether this shard's last eviction under an evicting policy found nothing to
    /// evict (under noeviction nothing is recorded: every shard is "dry" by policy, not for
    /// want of keys).
    pub fn note_evict_dry(&self, dry: bool) {
        let flag = &self.global.evict_dry[self.id];
        if flag.load(Ordering::Relaxed) != dry {
            flag.store(dry, Ordering::Relaxed);
        }
    }

    /// Counts one executed command, and feeds the slow log and the latency monitor when it
    /// was slow enough. Costs a few adds and one histogram increment unless it was slow.
    #[inline]
    pub fn observe(
        &self,
        spec: &CommandSpec,
        ns: u64,
        reply: &[u8],
        args: &Args<'_>,
        caller: Caller<'_>,
    ) {
        self.stats.borrow_mut().record(spec, ns, reply);
        let cfg = self.config.borrow();
        let us = ns / 1000;
        let slow = cfg.slowlog_log_slower_than >= 0
            && us >= cfg.slowlog_log_slower_than as u64
            && !spec.flags.has(Flags::SKIP_SLOWLOG);
        let spike = cfg.latency_monitor_threshold > 0 && us / 1000 >= cfg.latency_monitor_threshold;
        if slow || spike {
            let max_len = cfg.slowlog_max_len;
            drop(cfg);
            self.note_slow(spec, us, args, caller, slow.then_some(max_len), spike);
        }
    }

    #[cold]
    fn note_slow(
        &self,
        spec: &CommandSpec,
        us: u64,
        args: &Args<'_>,
        caller: Caller<'_>,
        slowlog_max_len: Option<usize>,
        spike: bool,
    ) {
        let now_s = now_ms() / 1000;
        if spike {
            let event = if spec.flags.has(Flags::FAST) {
                "fast-command"
            } else {
                "command"
            };
            self.latency.borrow_mut().add(event, now_s, us / 1000);
        }
        let Some(max_len) = slowlog_max_len else {
            return;
        };
        let (addr, name) = match caller {
            Caller::Client(h) => (Some(h.addr), h.info.borrow().name.clone()),
            Caller::Remote(addr, name) => (addr, name.to_vec()),
            Caller::Internal => (None, Vec::new()),
        };
        let id = self.global.next_slowlog_id.fetch_add(1, Ordering::Relaxed);
        let entry = SlowEntry::new(
            id,
            now_s,
            us,
            args.iter(),
            addr.map(|a| a.to_string()).unwrap_or_default(),
            name,
        );
        self.slowlog.borrow_mut().push(entry, max_len);
    }

    /// Executes a batch from another core. Runs to completion without yielding. Clients
    /// blocked on keys a command filled are served after each command (a pipeline), or
    /// after the last (`serve_each` false: a transaction, as Redis serves them after EXEC).
    pub fn execute_batch(&self, batch: &Batch, reply: &mut BatchReply, serve_each: bool) {
        let blocked = self.execute_batch_from(batch, reply, 0, serve_each, true);
        debug_assert!(blocked.is_none(), "callers check the batch's keys first");
    }

    /// Executes the commands of `batch` from index `from` on, until one of them touches a
    /// key another transaction holds (or, unless `admitted` by the lock table already, one
    /// that waiting work wants): returns its index then, with the commands before it done.
    pub fn execute_batch_from(
        &self,
        batch: &Batch,
        reply: &mut BatchReply,
        from: usize,
        serve_each: bool,
        admitted: bool,
    ) -> Option<usize> {
        let now = now_ms();
        let mut shard = self.shard.borrow_mut();
        // A transaction's batch: everything it propagates, blocked clients' pops included,
        // goes back to its coordinator ([`crate::repl`]).
        let hold = batch.hold_repl && shard.feed.on;
        let was_held = shard.feed.hold;
        shard.feed.hold |= hold;
        for (i, c) in batch.cmds.iter().enumerate().skip(from) {
            let spans = &batch.spans[c.spans.0 as usize..c.spans.1 as usize];
            let args = Args::new(&batch.buf, spans);
            // A busy script here: commands from other cores get BUSY (scripting.rs).
            if let Some(e) = crate::scripting::busy_reply(c.spec, &args) {
                ReplyWriter::new(&mut reply.buf, c.proto).error(e);
                reply.ends.push(reply.buf.len());
                continue;
            }
            if !self.locks.borrow().is_idle() {
                let keys = crate::txlock::keys_of(c.spec, &args, c.db as usize);
                let locks = self.locks.borrow();
                let blocked = if admitted {
                    locks.held_by_others(&keys, batch.tx)
                } else {
                    !locks.admits(&keys, batch.tx)
                };
                drop(locks);
                if blocked {
                    if !serve_each {
                        crate::blocking::serve_ready_in(self, &mut shard);
                    }
                    shard.feed.hold = was_held;
                    reply.repl.append(&mut shard.feed.ops);
                    return Some(i);
                }
            }
            let start = reply.buf.len();
            let t0 = crate::latency::Stopwatch::start();
            let mut w = ReplyWriter::new(&mut reply.buf, c.proto);
            if c.spec.route == percore_proto::Route::Publish {
                let shard_channel = c.spec.cmd == percore_proto::Cmd::SPublish;
                w.int(crate::pubsub::deliver(self, shard_channel, &args[1], &args[2]) as i64);
                reply.ends.push(reply.buf.len());
                continue;
            }
            // In cluster mode the slot may have changed hands since the sender checked it
            // (a transaction's commands are looked at together, before its job).
            if crate::cluster::enabled() && batch.tx.is_none() && !batch.hold_repl {
                let redirect = crate::cluster::recheck(
                    std::iter::once((c.spec, args)),
                    false,
                    &mut shard,
                    now,
                    batch.master_view,
                );
                if let Some(e) = redirect {
                    w.error(&e);
                    let mut stats = self.stats.borrow_mut();
                    stats.record_rejected(Some(c.spec), &reply.buf[start..]);
                    reply.ends.push(reply.buf.len());
                    continue;
                }
            }
            if let Some(base) = batch.caller {
                shard.caller.set(Some(percore_shard::tracking::Caller {
                    remember: c.track,
                    ..base
                }));
            }
            match self.admit(c.spec, &mut shard, now) {
                Err(e) if !batch.oom_exempt => w.error(e),
                _ => crate::repl::held(
                    &mut shard,
                    batch.hold_repl.then_some(&mut reply.repl),
                    |shard| {
                        shard.master_view = batch.master_view;
                        shard.apply(
                            &ExecCtx {
                                db: c.db as usize,
                                now_ms: now,
                            },
                            c.spec,
                            args,
                            &mut w,
                        );
                        shard.master_view = false;
                    },
                ),
            }
            shard.caller.set(None);
            // Clients parked on a key this command filled are served before the next one.
            if serve_each {
                crate::blocking::serve_ready_in(self, &mut shard);
            }
            if c.record {
                let ns = t0.ns();
                self.observe(
                    c.spec,
                    ns,
                    &reply.buf[start..],
                    &args,
                    Caller::Remote(batch.client_addr, &batch.client_name),
                );
            }
            reply.ends.push(reply.buf.len());
        }
        if !serve_each {
            crate::blocking::serve_ready_in(self, &mut shard);
        }
        if hold {
            shard.feed.hold = was_held;
            reply.repl.append(&mut shard.feed.ops);
        }
        None
    }

    /// Runs one owned command on this core's shard and returns its reply bytes; `from`: the
    /// core that sent it.
    pub fn execute_owned(
        &self,
        spec: &'static CommandSpec,
        db: usize,
        proto: Protocol,
        args: &OwnedArgs,
        from: usize,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let t0 = crate::latency::Stopwatch::start();
        let now = now_ms();
        let mut shard = self.shard.borrow_mut();
        let mut w = ReplyWriter::new(&mut out, proto);
        // A busy script here answers BUSY to other cores (its own calls run: a command
        // from this core's clients was answered BUSY before it got here).
        if from != self.id {
            if let Some(e) = crate::scripting::busy_reply(spec, &args.args()) {
                w.error(e);
                return out;
            }
        }
        match self.admit(spec, &mut shard, now) {
            Ok(()) => shard.apply(&ExecCtx { db, now_ms: now }, spec, args.args(), &mut w),
            Err(e) => w.error(e),
        }
        crate::blocking::serve_ready_in(self, &mut shard);
        drop(shard);
        let ns = t0.ns();
        self.observe(spec, ns, &out, &args.args(), Caller::Internal);
        out
    }

    /// Applies a configuration if it is newer than this core's copy.
    pub fn apply_config(&self, version: u64, cfg: Arc<Config>) {
        if version > self.config_version.get() {
            self.global.repl.configure(&cfg);
            {
                let mut shard = self.shard.borrow_mut();
                shard.config.proto_max_bulk_len = cfg.proto_max_bulk_len;
                shard.config.evict = cfg.evict;
                shard.config.hash_limits = cfg.hash_limits;
                shard.config.set_limits = cfg.set_limits;
                shard.config.list_limits = cfg.list_limits;
                shard.config.zset_limits = cfg.zset_limits;
                shard.config.hll_sparse_max_bytes = cfg.hll_sparse_max_bytes;
                shard.set_notify(cfg.notify_keyspace_events);
            }
            let max_keys = cfg.tracking_table_max_keys;
            crate::runtime::set_zerocopy_min(cfg.zerocopy_send_min_bytes);
            *self.config.borrow_mut() = cfg;
            self.config_version.set(version);
            crate::tracking::apply_max_keys(self, max_keys);
        }
    }
}

/// `f`, run as a command of a replica's master client when `master` is true: the target
/// shard's [`percore_shard::Shard::master_view`] is on while it runs, so a key the replica's
/// clock has expired is still there for it, as on its primary (Redis's `expireIfNeeded`
/// returns "not expired" for `server.master`). A command that spans cores runs its hops
/// through this, or a replica's copy of RENAME, SMOVE, LMOVE … would miss such a key and
/// part from its primary. With `master` false, `f` as it is. (Clients parked on keys the
/// job filled are served after it, by [`call`] or the core's inbox, outside the view.)
pub fn viewed_by<R, F>(master: bool, f: F) -> impl FnOnce(&Core) -> R + Send + 'static
where
    R: Send + 'static,
    F: FnOnce(&Core) -> R + Send + 'static,
{
    move |c: &Core| {
        if !master {
            return f(c);
        }
        let before = std::mem::replace(&mut c.shard.borrow_mut().master_view, true);
        let r = f(c);
        c.shard.borrow_mut().master_view = before;
        r
    }
}

/// Runs `f` on core `target` (inline when it is this core) and returns its result.
pub async fn call<R, F>(core: &Rc<Core>, target: usize, f: F) -> R
where
    R: Send + 'static,
    F: FnOnce(&Core) -> R + Send + 'static,
{
    if target == core.id {
        let r = f(core);
        crate::blocking::serve_ready(core);
        return r;
    }
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |c| {
        let _ = tx.send(f(c));
    });
    if core.mailbox.send(target, job).await.is_err() {
        panic!("core {target} is gone: a core exits only when the whole server does");
    }
    rx.await
        .unwrap_or_else(|_| panic!("core {target} dropped a job without running it"))
}

/// Runs `f` on every core concurrently; results in core order.
pub async fn call_all<R, F>(core: &Rc<Core>, f: F) -> Vec<R>
where
    R: Send + 'static,
    F: Fn(&Core) -> R + Send + Sync + Clone + 'static,
{
    let n = core.nshards();
    let mut pending = Vec::with_capacity(n);
    for target in 0..n {
        if target == core.id {
            pending.push(None);
            continue;
        }
        let (tx, rx) = oneshot::channel();
        let f = f.clone();
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        if core.mailbox.send(target, job).await.is_err() {
            panic!("core {target} is gone: a core exits only when the whole server does");
        }
        pending.push(Some(rx));
    }
    let mut out = Vec::with_capacity(n);
    for (target, rx) in pending.into_iter().enumerate() {
        out.push(match rx {
            None => {
                let r = f(core);
                crate::blocking::serve_ready(core);
                r
            }
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| panic!("core {target} dropped a job without running it")),
        });
    }
    out
}
