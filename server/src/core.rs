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
use crate::runtime::Mailbox;
use futures_channel::oneshot;
use percore_proto::{Args, CommandSpec, OwnedArgs, Protocol, ReplyWriter, Span, CMD_COUNT};
use percore_shard::{ExecCtx, Shard};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
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
    /// The authoritative configuration and its version; cores hold copies and apply a
    /// broadcast copy only if it is newer, so concurrent CONFIG SETs converge.
    pub config: Mutex<(u64, Arc<Config>)>,
    pub connected: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub shutdown: AtomicBool,
    pub started: Instant,
    pub started_unix_ms: u64,
    pub run_id: String,
    pub port: u16,
    pub executable: String,
}

/// Per-command counters (Redis's commandstats).
#[derive(Clone, Copy, Default, Debug)]
pub struct CmdStat {
    pub calls: u64,
    pub usec: u64,
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
    pub batches_sent: u64,
    pub batched_commands_sent: u64,
    pub cmd: Vec<CmdStat>,
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
            batches_sent: 0,
            batched_commands_sent: 0,
            cmd: vec![CmdStat::default(); CMD_COUNT],
            errors: HashMap::new(),
            ops_samples: [(0, 0); 16],
            ops_sample_idx: 0,
        }
    }
}

impl CoreStats {
    /// Records one executed command and, if `reply` is an error, its error code.
    #[inline]
    pub fn record(&mut self, spec: &CommandSpec, usec: u64, reply: &[u8]) {
        let s = &mut self.cmd[spec.cmd as usize];
        s.calls += 1;
        s.usec += usec;
        self.commands_processed += 1;
        if reply.first() == Some(&b'-') {
            s.failed += 1;
            self.count_error(reply);
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
    pub qbuf: usize,
    pub no_evict: bool,
    pub no_touch: bool,
}

/// A connection as other code sees it: enough to list and to kill it.
pub struct ClientHandle {
    pub id: u64,
    pub fd: RawFd,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub info: RefCell<ClientInfo>,
    pub killed: Cell<bool>,
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

    /// One CLIENT LIST line, fields as Redis 7.
    pub fn describe(&self, now: Instant) -> String {
        let i = self.info.borrow();
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            String::from_utf8_lossy(&i.name),
            now.duration_since(self.created).as_secs(),
            now.duration_since(i.last_interaction).as_secs(),
            i.db,
            i.qbuf,
            i.last_cmd,
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
}

/// Commands from one connection's read for one remote shard: one message, one reply.
/// The buffers travel back with the reply so the connection reuses them.
#[derive(Default)]
pub struct Batch {
    pub buf: Vec<u8>,
    pub spans: Vec<Span>,
    pub cmds: Vec<BatchCmd>,
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
        });
        self.cmds.len() - 1
    }
}

/// The replies to a [`Batch`], concatenated; `ends[i]` is where reply i ends.
#[derive(Default)]
pub struct BatchReply {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
}

impl BatchReply {
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

/// One core: a shard, its clients, its counters, and its mailbox to the others.
pub struct Core {
    pub id: usize,
    pub global: Arc<Global>,
    pub shard: RefCell<Shard>,
    pub config: RefCell<Arc<Config>>,
    pub config_version: Cell<u64>,
    pub mailbox: Mailbox<Job>,
    pub clients: RefCell<HashMap<u64, Rc<ClientHandle>>>,
    pub stats: RefCell<CoreStats>,
}

impl Core {
    pub fn nshards(&self) -> usize {
        self.global.nshards
    }

    /// Executes a batch from another core. Runs to completion without yielding.
    pub fn execute_batch(&self, batch: &Batch, reply: &mut BatchReply) {
        let now = now_ms();
        let mut shard = self.shard.borrow_mut();
        let mut stats = self.stats.borrow_mut();
        for c in &batch.cmds {
            let spans = &batch.spans[c.spans.0 as usize..c.spans.1 as usize];
            let args = Args::new(&batch.buf, spans);
            let start = reply.buf.len();
            let t0 = Instant::now();
            shard.apply(
                &ExecCtx {
                    db: c.db as usize,
                    now_ms: now,
                },
                c.spec,
                args,
                &mut ReplyWriter::new(&mut reply.buf, c.proto),
            );
            if c.record {
                stats.record(c.spec, t0.elapsed().as_micros() as u64, &reply.buf[start..]);
            }
            reply.ends.push(reply.buf.len());
        }
    }

    /// Runs one owned command on this core's shard and returns its reply bytes.
    pub fn execute_owned(
        &self,
        spec: &'static CommandSpec,
        db: usize,
        proto: Protocol,
        args: &OwnedArgs,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let t0 = Instant::now();
        self.shard.borrow_mut().apply(
            &ExecCtx {
                db,
                now_ms: now_ms(),
            },
            spec,
            args.args(),
            &mut ReplyWriter::new(&mut out, proto),
        );
        self.stats
            .borrow_mut()
            .record(spec, t0.elapsed().as_micros() as u64, &out);
        out
    }

    /// Applies a configuration if it is newer than this core's copy.
    pub fn apply_config(&self, version: u64, cfg: Arc<Config>) {
        if version > self.config_version.get() {
            self.shard.borrow_mut().config.proto_max_bulk_len = cfg.proto_max_bulk_len;
            *self.config.borrow_mut() = cfg;
            self.config_version.set(version);
        }
    }
}

/// Runs `f` on core `target` (inline when it is this core) and returns its result.
pub async fn call<R, F>(core: &Rc<Core>, target: usize, f: F) -> R
where
    R: Send + 'static,
    F: FnOnce(&Core) -> R + Send + 'static,
{
    if target == core.id {
        return f(core);
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
            None => f(core),
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| panic!("core {target} dropped a job without running it")),
        });
    }
    out
}
