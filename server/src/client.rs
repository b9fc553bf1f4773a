//! The client: the state a command runs in (Redis's `client` struct, whose name it takes),
//! apart from the socket it came from.
//!
//! A [`Client`] holds what commands read and change: the database, the protocol, the user
//! and its ACL, the MULTI queue and watched keys, the transaction's locks, subscriptions,
//! CLIENT REPLY and tracking state, what a transaction or script propagates, and the
//! replies of the current read (`out`, and `p`, the replies and batches in flight, put
//! back in order by the dispatcher). Handlers get `&mut Client` and write their replies
//! through it ([`Client::emit`] and friends); they never see the socket.
//!
//! Layering (one way): `conn` (the socket: read, decode, write) → `dispatch` (checks,
//! routing, batches, transactions' locks) → command handlers → `client` (this module).
//! This module depends on neither `conn` nor `dispatch`. Not every client has a socket:
//! a replica's master client ([`Client::master`]) is fed by the replication link.
//! The name is Redis's rather than "connection" because the two were one struct before,
//! and a command's state is what Redis's handlers call the client.

use crate::core::{Batch, BatchReply, Caller, ClientHandle, ClientInfo, Core};
use futures_channel::oneshot;
use percore_proto::{Args, CommandSpec, Merge, OwnedArgs, Protocol, ReplyWriter};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

/// What a command may need of the connection its client came from, besides the replies it
/// leaves in the [`Client`]: implemented by the connection (`conn.rs`) on its socket. The
/// dispatcher passes `&mut dyn Peer` down to the handlers that call it: a blocking command
/// writes the replies before it and watches for the peer leaving while it is parked, and
/// PSYNC/SYNC hands the socket over to the replication link. Nothing on the per-command
/// path calls it (the reference is only passed along), so it is a trait object, and its
/// futures are boxed: one allocation per park or per replica link.
///
/// `'static`: the implementations own their socket, and a script keeps a raw pointer to
/// the running command's peer (`scripting::Run`).
pub trait Peer: 'static {
    /// Writes the replies gathered so far in `client` (a blocking command does before it
    /// parks).
    fn write_pending<'a>(&'a mut self, client: &'a mut Client) -> Local<'a, std::io::Result<()>>;
    /// Resolves once the peer has closed its end (a parked client notices it left).
    fn closed(&mut self) -> Local<'_, ()>;
    /// PSYNC or SYNC (`args`): the connection becomes a replica's link, served until it
    /// closes (then `client.close` is set).
    fn hand_over<'a>(&'a mut self, client: &'a mut Client, args: Args<'a>) -> Local<'a, ()>;
}

/// A boxed future of a [`Peer`] (it runs on this core: no `Send`).
pub type Local<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Where one reply of the current read comes from.
pub(crate) enum Slot {
    /// Bytes `start..end` of `Pending::local`.
    Local(usize, usize),
    /// Reply `idx` of the batch sent to `shard`.
    Remote(u32, u32),
    /// A command split across shards: parts `parts.0..parts.1`, key order `order.0..order.1`.
    Merge {
        how: Merge,
        parts: (u32, u32),
        order: (u32, u32),
    },
}

#[derive(Clone, Copy)]
pub(crate) enum Part {
    Local(usize, usize),
    Remote(u32, u32),
}

/// Replies and batches of the read being processed; all vectors are reused across reads.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) active: bool,
    /// Commands queued for other shards since the last flush.
    pub(crate) queued: usize,
    pub(crate) batches: Vec<Batch>,
    pub(crate) replies: Vec<BatchReply>,
    pub(crate) local: Vec<u8>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) parts: Vec<Part>,
    pub(crate) order: Vec<(u32, u32)>,
    /// Which shard each key of a split command goes to (scratch).
    pub(crate) key_shards: Vec<u32>,
    /// Shards of a split command in first-appearance order, and keys counted per shard.
    pub(crate) seen: Vec<u32>,
    pub(crate) counts: Vec<u32>,
    /// Per-shard reply receivers of a flush (scratch).
    pub(crate) waits: Vec<Option<oneshot::Receiver<(Batch, BatchReply)>>>,
    pub(crate) scratch: OwnedArgs,
}

pub struct Client {
    pub core: Rc<Core>,
    pub handle: Rc<ClientHandle>,
    pub db: usize,
    pub proto: Protocol,
    pub authed: bool,
    /// The ACL user, the ACL epoch it was read at, and whether it may run everything (then
    /// no check runs: see `crate::acl`).
    pub user: std::sync::Arc<crate::acl::rules::User>,
    pub acl_epoch: u64,
    pub acl_open: bool,
    pub close: bool,
    /// The clock as of the current read (Unix ms).
    pub(crate) now_ms: u64,
    pub(crate) out: Vec<u8>,
    /// The length of the last replies written: the next read's reply buffer is taken with
    /// that much room, so a client that fetches large values gets a kept large buffer
    /// instead of growing a new one by doubling (see the ring's `take_large`).
    pub(crate) last_out: usize,
    /// Reused buffer for replies built off the hot path (connection and coordinated commands).
    pub(crate) scratch_out: Vec<u8>,
    pub(crate) p: Pending,
    /// The transaction being queued (MULTI), the watched keys (WATCH), and whether EXEC is
    /// running the queued commands (blocking commands then do not block).
    pub multi: Option<Box<crate::multi::Multi>>,
    pub watching: Option<Box<crate::multi::Watching>>,
    pub in_exec: bool,
    /// The transaction whose locks this connection holds, while it runs one, the shards
    /// they are on, and a transaction planned but not yet locked.
    pub tx: Option<crate::txlock::TxId>,
    pub(crate) tx_shards: Vec<usize>,
    pub(crate) tx_plan: Option<(crate::txlock::TxId, crate::txlock::Plan)>,
    /// While a transaction ends: its last batches release its locks, on these shards.
    pub(crate) tx_ending: bool,
    pub(crate) tx_released: Vec<usize>,
    /// Pub/Sub subscriptions and the messages waiting for this connection (None when it
    /// has none: the read path then never looks at Pub/Sub).
    pub subs: Option<Box<crate::pubsub::Subs>>,
    /// Since when the replies waiting have been over the normal class's soft limit.
    pub(crate) out_soft_since: Cell<Option<Instant>>,
    /// The command being dispatched, once it is past every check (for MONITOR).
    pub(crate) monitored: Option<&'static CommandSpec>,
    /// Running a script's `redis.call` (MONITOR shows it as from `lua`).
    pub(crate) in_script: bool,
    /// CLIENT REPLY OFF, and SKIP: the next command's reply is dropped (`skip_this` while
    /// it runs).
    pub reply_off: bool,
    pub skip_next: bool,
    /// Cluster mode: ASKING came before this command (kept through a transaction, as
    /// Redis's CLIENT_ASKING).
    pub asking: bool,
    /// Cluster mode: READONLY (a replica serves this client's reads of its master's slots).
    pub readonly: bool,
    /// Cluster mode: this command holds its keys' locks (a slot being migrated), released
    /// once it ran.
    pub(crate) cluster_locked: bool,
    pub skip_this: bool,
    /// What a replica said with REPLCONF before its PSYNC.
    pub repl_link: Option<Box<crate::repl::primary::Link>>,
    /// While a transaction across shards (or a script) runs with a replication stream:
    /// what its commands propagated, in order, pushed as one unit when it ends
    /// ([`crate::repl`]).
    pub repl_ops: RefCell<Vec<percore_shard::repl::Op>>,
    /// A coordinated command ran whole on one shard, which propagated it itself.
    pub repl_applied: Cell<bool>,
    /// Scripts running (their effects are one unit even without locks).
    pub repl_depth: u32,
    /// The master client of a replica: past the replica's gates (READONLY, MASTERDOWN,
    /// LOADING).
    pub is_master: bool,
}

impl Client {
    /// A client's handle (registered on this core) and its state, for the socket `fd`.
    pub(crate) fn new(
        core: &Rc<Core>,
        fd: std::os::fd::RawFd,
        addr: std::net::SocketAddr,
        laddr: std::net::SocketAddr,
        user: std::sync::Arc<crate::acl::rules::User>,
        acl_epoch: u64,
    ) -> Client {
        let global = &core.global;
        let id = global
            .next_client_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handle = Rc::new_cyclic(|me| ClientHandle {
            id,
            fd,
            addr,
            laddr,
            created: Instant::now(),
            info: RefCell::new(ClientInfo {
                name: Vec::new(),
                lib_name: Vec::new(),
                lib_ver: Vec::new(),
                db: 0,
                proto: Protocol::Resp2,
                last_cmd: "NULL",
                last_interaction: Instant::now(),
                qbuf: 0,
                qbuf_free: 0,
                rbs: 0,
                argv_mem: 0,
                reply_bytes: 0,
                tot_mem: 0,
                no_evict: false,
                no_touch: false,
                sub: 0,
                psub: 0,
                ssub: 0,
                monitor: false,
                multi: -1,
                multi_mem: 0,
                dirty_cas: None,
                user: user.name.clone(),
                replica: false,
                master: false,
            }),
            killed: Cell::new(false),
            blocked: RefCell::new(None),
            outbox: Rc::new(crate::pubsub::Outbox::new(me.clone())),
            tracking: RefCell::new(None),
        });
        core.clients.borrow_mut().insert(id, handle.clone());
        let n = core.nshards();
        Client {
            core: core.clone(),
            handle,
            db: 0,
            proto: Protocol::Resp2,
            authed: crate::acl::default_is_open(&user),
            acl_open: user.is_unrestricted(),
            user,
            acl_epoch,
            close: false,
            now_ms: crate::core::now_ms(),
            out: Vec::new(),
            last_out: 0,
            scratch_out: Vec::new(),
            multi: None,
            watching: None,
            in_exec: false,
            tx: None,
            tx_shards: Vec::new(),
            tx_plan: None,
            tx_ending: false,
            tx_released: Vec::new(),
            subs: None,
            out_soft_since: Cell::new(None),
            monitored: None,
            in_script: false,
            reply_off: false,
            skip_next: false,
            asking: false,
            readonly: false,
            cluster_locked: false,
            skip_this: false,
            repl_link: None,
            repl_ops: RefCell::new(Vec::new()),
            repl_applied: Cell::new(false),
            repl_depth: 0,
            is_master: false,
            p: Pending {
                batches: (0..n).map(|_| Batch::default()).collect(),
                replies: (0..n).map(|_| BatchReply::default()).collect(),
                ..Default::default()
            },
        }
    }

    /// The master client of a replica: the client that applies its primary's stream
    /// ([`crate::repl::replica`]), registered as a client (CLIENT LIST flag M), allowed
    /// everything, past the replica's gates. `fd` and the addresses are the link's.
    pub(crate) fn master(
        core: Rc<Core>,
        fd: std::os::fd::RawFd,
        addr: std::net::SocketAddr,
        laddr: std::net::SocketAddr,
    ) -> Client {
        let user = core.global.acl.default_user();
        let epoch = core.global.acl.epoch();
        let mut client = Client::new(&core, fd, addr, laddr, user, epoch);
        client.authed = true;
        client.acl_open = true;
        client.is_master = true;
        client.handle.info.borrow_mut().master = true;
        client
    }

    /// Drops the replies made so far (the master client's: its primary reads none).
    pub(crate) fn discard_replies(&mut self) {
        self.out.clear();
    }

    /// A read arrived on the master client. Its commands see the real time (a relative
    /// TTL becomes the right deadline, a key stored gets a real LRU/LFU clock), and no key
    /// is expired for them ([`percore_shard::Shard::master_view`]: Redis's master client
    /// sees every key its primary has not deleted, so that the primary's DEL of an expired
    /// key, or a write just before the deadline, applies).
    pub(crate) fn note_read(&mut self) {
        self.now_ms = crate::core::now_ms();
        self.handle.info.borrow_mut().last_interaction = Instant::now();
    }

    /// Where a reply produced now goes: straight to the output, or (while batches are
    /// pending) to the local buffer with a slot that keeps its place.
    pub fn emit_bytes(&mut self, bytes: &[u8]) {
        self.emit(bytes)
    }

    /// Records a command run here since `t0` (stats, slow log) and emits its reply `buf`,
    /// which goes back to the reusable scratch buffer.
    pub(crate) fn emit_observed(
        &mut self,
        spec: &CommandSpec,
        t0: crate::latency::Stopwatch,
        buf: Vec<u8>,
        args: &Args,
    ) {
        let ns = t0.ns();
        self.core
            .observe(spec, ns, &buf, args, Caller::Client(&self.handle));
        self.emit(&buf);
        self.scratch_out = buf;
    }

    /// Puts what waits in the outbox in the reply stream, in order with the replies.
    pub(crate) fn emit_pushes(&mut self) {
        if self.handle.outbox.has_pending() {
            let mut buf = std::mem::take(&mut self.scratch_out);
            buf.clear();
            self.handle.outbox.take_into(&mut buf);
            self.emit(&buf);
            self.scratch_out = buf;
        }
    }

    pub(crate) fn emit(&mut self, bytes: &[u8]) {
        if self.p.active {
            let s = self.p.local.len();
            self.p.local.extend_from_slice(bytes);
            self.p.slots.push(Slot::Local(s, self.p.local.len()));
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    /// Runs `f` on core `s` as one step of this client's command ([`crate::core::call`]).
    /// For a replica's master client the step sees keys the replica's clock has expired,
    /// as its one-shard commands do ([`crate::core::viewed_by`]).
    pub async fn hop<R, F>(&self, s: usize, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&Core) -> R + Send + 'static,
    {
        crate::core::call(&self.core, s, crate::core::viewed_by(self.is_master, f)).await
    }

    pub(crate) fn reject(&mut self, spec: Option<&CommandSpec>, msg: &str) {
        // A command refused while a transaction is queued dooms it (EXECABORT).
        if let Some(m) = self.multi.as_mut() {
            m.aborted = true;
        }
        let mut buf = std::mem::take(&mut self.scratch_out);
        buf.clear();
        ReplyWriter::new(&mut buf, self.proto).error(msg);
        self.core.stats.borrow_mut().record_rejected(spec, &buf);
        self.emit(&buf);
        self.scratch_out = buf;
    }
    /// Where what this connection's commands propagate goes while they are part of one
    /// replication unit (a transaction, a script): `None` when each command is a unit of
    /// its own.
    pub(crate) fn repl_capture(&self) -> Option<&RefCell<Vec<percore_shard::repl::Op>>> {
        self.repl_capturing().then_some(&self.repl_ops)
    }

    /// [`Client::repl_capture`] is `Some` (for callers that hold other fields borrowed).
    pub(crate) fn repl_capturing(&self) -> bool {
        self.tx.is_some() || self.repl_depth > 0
    }
    /// Whether the running transaction holds locks on some shard.
    pub fn holds_locks(&self) -> bool {
        self.tx.is_some() && !self.tx_shards.is_empty()
    }
}
