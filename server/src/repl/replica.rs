//! Replication, replica side: REPLICAOF host port, the link to the primary (one task on
//! core 0), the full sync's payload and its load, and the master client that applies the
//! stream.
//!
//! The link, as Redis 7.0's `syncWithMaster`: connect (bounded by `repl-timeout`; a name
//! is resolved off the core and each of its addresses tried in turn), PING,
//! AUTH [masteruser] masterauth, REPLCONF listening-port, REPLCONF capa eof capa psync2,
//! then PSYNC <replid> <offset+1> with the replication id and offset this server has (its
//! own as a primary, or its last primary's: Redis's cached master), or PSYNC ? -1 with none.
//! A link that fails is retried every second while REPLICAOF stands.
//!
//! Full sync: the payload (`$<len>` or `$EOF:<mark>`) is written to a file in `dir` as it
//! arrives (never held in memory), then every core flushes its shard and loads the keys of
//! the file that route to it (the RDB import of the start, [`crate::rdb_io::Import`]), so
//! a primary with any shard count feeds a replica with any other. While the payload
//! arrives the old data serves reads (`replica-serve-stale-data yes`) or commands get
//! MASTERDOWN (`no`); while it loads, commands get LOADING: each core loads in slices of
//! [`LOAD_SLICE_RECORDS`] on its background queue and answers its clients between them,
//! INFO shows `loading:1` and the progress, and nothing saves the part loaded (save points
//! wait, a shutdown exits without saving, as Redis's does while loading).
//!
//! The stream: the socket becomes a connection of this core's network ring, and its
//! commands run through a [`Client`] of their own (the master client) exactly as a client's
//! would, routed to the shards, MULTI … EXEC as a transaction under its keys' locks; the
//! replies are dropped. The offset counts each command's bytes once it ran; REPLCONF
//! GETACK * is answered with REPLCONF ACK <offset>, and an ACK goes every second.
//!
//! Gates for normal clients (one relaxed load of [`super::Shared::gate`] per command, zero
//! on a primary): READONLY for writes under `replica-read-only yes`, MASTERDOWN while the
//! link is down under `replica-serve-stale-data no`, LOADING while a payload loads. A
//! replica neither expires nor evicts keys itself (its primary's DELs do):
//! [`percore_shard::KEEP_EXPIRED`].

use futures_channel::oneshot;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use percore_proto::{Args, CommandSpec, Flags, ReplyWriter, RequestDecoder};

use crate::client::{Client, Local, Peer};
use crate::core::{call, call_all, now_ms, Core};
use crate::runtime::Stream;
use percore_shard::repl::Doorbell;

/// [`super::Shared::gate`] bits.
pub const GATE_READONLY: u8 = 1;
pub const GATE_MASTERDOWN: u8 = 2;
pub const GATE_LOADING: u8 = 4;

pub const READONLY: &str = "READONLY You can't write against a read only replica.";
pub const MASTERDOWN: &str =
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.";
pub const LOADING: &str = "LOADING Redis is loading the dataset in memory";

/// The link's state, as ROLE names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    #[default]
    Connect,
    Connecting,
    Handshake,
    Sync,
    Connected,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Connect => "connect",
            State::Connecting => "connecting",
            State::Handshake => "handshake",
            State::Sync => "sync",
            State::Connected => "connected",
        }
    }
}

/// What every core may read about the link (INFO, ROLE).
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub host: String,
    pub port: u16,
    pub state: State,
    /// Unix ms of the last byte from the primary, and since when the link is down.
    pub last_io_ms: u64,
    pub down_since_ms: u64,
    /// A payload being received: its size (-1 with an end mark) and the bytes read.
    pub sync_total: i64,
    pub sync_read: u64,
    /// The stream offset applied (`slave_repl_offset`) and read (`slave_read_repl_offset`);
    /// -1 before the first sync.
    pub offset: i64,
    pub read_offset: i64,
    /// The database the master client had selected when the stream was cut: a partial
    /// resync goes on in it (Redis keeps it in its cached master client; the primary sends
    /// no SELECT for a stream that continues).
    pub master_db: usize,
}

/// `m`'s value, also after a panic elsewhere left it poisoned.
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_link<R>(core: &Core, f: impl FnOnce(&mut Option<Link>) -> R) -> R {
    f(&mut locked(&core.global.repl.link))
}

/// The link's published state (None: this server is a primary).
pub fn link(global: &crate::core::Global) -> Option<Link> {
    locked(&global.repl.link).clone()
}

/// The refusal, if any, of `spec` for a normal client while [`super::Shared::gate`] is set
/// (Redis's processCommand order: READONLY, MASTERDOWN, LOADING).
#[cold]
pub fn refusal(core: &Core, spec: &CommandSpec) -> Option<&'static str> {
    gate_refusal(
        core,
        spec.flags.has(Flags::WRITE),
        spec.flags.has(Flags::STALE),
        spec.flags.has(Flags::LOADING),
    )
}

/// [`refusal`] for EXEC, judged by the commands it would run (Redis's `cmd_flags` and
/// `cmd_inv_flags`): a write among them meets READONLY, and one that may not run on stale
/// data or during a load meets MASTERDOWN or LOADING. Each was checked when it was queued;
/// this is for the gates that closed since (a full sync's load began).
pub fn exec_refusal<'a>(
    core: &Core,
    queued: impl Iterator<Item = &'a CommandSpec> + Clone,
) -> Option<&'static str> {
    gate_refusal(
        core,
        queued.clone().any(|s| s.flags.has(Flags::WRITE)),
        queued.clone().all(|s| s.flags.has(Flags::STALE)),
        queued.into_iter().all(|s| s.flags.has(Flags::LOADING)),
    )
}

fn gate_refusal(
    core: &Core,
    write: bool,
    stale_ok: bool,
    loading_ok: bool,
) -> Option<&'static str> {
    let gate = core.global.repl.gate.load(Ordering::Acquire);
    if gate & GATE_READONLY != 0 && write {
        return Some(READONLY);
    }
    if gate & GATE_MASTERDOWN != 0 && !stale_ok {
        return Some(MASTERDOWN);
    }
    if gate & GATE_LOADING != 0 && !loading_ok {
        return Some(LOADING);
    }
    None
}

impl super::Shared {
    /// Whether a full sync's payload is loading: the data set is incomplete, so nothing
    /// saves it (save points wait; a shutdown does not save, as Redis's does not while
    /// loading), and INFO says `loading:1`.
    pub fn loading(&self) -> bool {
        self.gate.load(Ordering::Acquire) & GATE_LOADING != 0
    }

    /// Sets the gate bits from the link's state and `cfg`; `loading`: a payload loads
    /// (None: as it was).
    pub fn update_gate(&self, cfg: &crate::config::Config, loading: Option<bool>) {
        let link = locked(&self.link).clone();
        let loading = loading.unwrap_or(self.gate.load(Ordering::Acquire) & GATE_LOADING != 0);
        let mut g = 0;
        if let Some(l) = &link {
            if cfg.replica_read_only {
                g |= GATE_READONLY;
            }
            if !cfg.replica_serve_stale_data && l.state != State::Connected {
                g |= GATE_MASTERDOWN;
            }
        }
        if loading {
            g |= GATE_LOADING;
        }
        self.gate.store(g, Ordering::Release);
        percore_shard::KEEP_EXPIRED.store(link.is_some(), Ordering::Release);
        crate::log::REPLICA.store(link.is_some(), Ordering::Relaxed);
    }
}

fn set_gate(core: &Core, loading: bool) {
    core.global
        .repl
        .update_gate(&core.config.borrow(), Some(loading));
}

/// Takes up a change of the link's state.
fn configure(core: &Core) {
    core.global.repl.update_gate(&core.config.borrow(), None);
}

fn set_state(core: &Core, state: State) {
    with_link(core, |l| {
        if let Some(l) = l {
            if state != State::Connected && l.state == State::Connected {
                l.down_since_ms = now_ms();
            }
            l.state = state;
        }
    });
    configure(core);
}

/// REPLICAOF host port | NO ONE (and SLAVEOF).
pub async fn replicaof(conn: &mut Client, a: Args<'_>, w: &mut ReplyWriter<'_>) {
    let core = conn.core.clone();
    if a[1].eq_ignore_ascii_case(b"no") && a[2].eq_ignore_ascii_case(b"one") {
        if link(&core.global).is_some() {
            promote(&core).await;
            crate::log::notice(&format!(
                "MASTER MODE enabled (user request from 'id={} addr={}')",
                conn.handle.id, conn.handle.addr
            ));
        }
        return w.ok();
    }
    if crate::cluster::enabled() {
        return w.error("ERR REPLICAOF not allowed in cluster mode.");
    }
    if conn.is_master {
        return w.error("ERR Command is not valid when client is a replica.");
    }
    let Some(port) = percore_proto::parse_i64(&a[2]).filter(|p| (0..=65535).contains(p)) else {
        return w.error("ERR Invalid master port");
    };
    let host = String::from_utf8_lossy(&a[1]).into_owned();
    if link(&core.global)
        .is_some_and(|l| l.host.eq_ignore_ascii_case(&host) && l.port == port as u16)
    {
        crate::log::notice("REPLICAOF would result into synchronization with the master we are already connected with. No operation performed.");
        return w.simple(b"OK Already connected to specified master");
    }
    follow(&core, host.clone(), port as u16).await;
    crate::log::notice(&format!(
        "REPLICAOF {host}:{port} enabled (user request from 'id={} addr={}')",
        conn.handle.id, conn.handle.addr
    ));
    w.ok();
}

/// Starts following `host`:`port` (REPLICAOF, or `replicaof` at start): any link before
/// is dropped; the data is kept until a full sync replaces it.
pub async fn follow(core: &Rc<Core>, host: String, port: u16) {
    let repl = &core.global.repl;
    let epoch = repl.epoch.fetch_add(1, Ordering::AcqRel) + 1;
    // The link before ends first: a payload it loads is loaded, its stream applied up to
    // where it was cut, so that the offset read here is the one its data has.
    kill_master_client(core).await;
    stop_link(core).await;
    let (offset, master_db) = match link(&core.global) {
        Some(l) => (l.offset, l.master_db),
        // This server's own history is what it asks to continue from (Redis's
        // replicationCacheMasterUsingMyself).
        None => (
            call(core, 0, |_c: &Core| super::stream_end()).await as i64,
            0,
        ),
    };
    with_link(core, |l| {
        *l = Some(Link {
            host,
            port,
            state: State::Connect,
            offset,
            read_offset: offset,
            master_db,
            down_since_ms: now_ms(),
            ..Link::default()
        })
    });
    configure(core);
    call(core, 0, move |c: &Core| {
        let me =
            c.me.upgrade()
                .expect("a core outlives the messages it runs");
        let task = Rc::new(Task::default());
        TASKS.with(|t| t.borrow_mut().push(task.clone()));
        crate::runtime::spawn(link_loop(me, epoch, task));
    })
    .await;
}

/// Cluster mode's promotion of a replica (a failover, or a replica made a master): the
/// REPLICAOF NO ONE path. Nothing happens on a server that follows no primary.
pub async fn unset_master(core: &Rc<Core>) {
    if link(&core.global).is_some() {
        promote(core).await;
        crate::log::notice("MASTER MODE enabled (cluster failover)");
    }
}

/// REPLICAOF NO ONE: the link ends, the data stays, and the replication id shifts (the
/// old one becomes `master_replid2`, valid up to the offset reached) so that this
/// server's replicas, and its old primary, can continue partially.
async fn promote(core: &Rc<Core>) {
    let repl = &core.global.repl;
    repl.epoch.fetch_add(1, Ordering::AcqRel);
    kill_master_client(core).await;
    // The link task ends before the OK: the master client's last commands have run (the
    // offset read below is theirs), and a payload being loaded is loaded, its flush
    // behind it, so that no write accepted after the OK can be flushed away.
    stop_link(core).await;
    let offset = link(&core.global).map_or(0, |l| l.offset.max(0) as u64);
    with_link(core, |l| *l = None);
    configure(core);
    shift_replid(core, offset);
    call(core, 0, move |_c: &Core| super::restart_at(offset)).await;
    // The stream is kept from here on (Redis keeps its backlog): a replica that attaches
    // later, the old primary first, continues with what was written meanwhile.
    super::activate(core).await;
}

/// Redis's shiftReplicationId: a new id, the old one kept as id 2 up to `offset`.
fn shift_replid(core: &Core, offset: u64) {
    let new = crate::random_hex(40);
    let old = shift_to(core, &new, offset);
    crate::log::notice(&format!(
        "Setting secondary replication ID to {old}, valid up to offset: {}. New replication ID is {new}",
        offset + 1
    ));
}

thread_local! {
    /// Core 0: the master client's handle while the stream runs.
    static MASTER: std::cell::RefCell<Option<Rc<crate::core::ClientHandle>>> =
        const { std::cell::RefCell::new(None) };
}

/// A link task of core 0 ([`link_loop`]), as [`stop_link`] ends it.
#[derive(Default)]
struct Task {
    /// Rung when REPLICAOF changed: the task ends at its next safe point.
    cancel: Doorbell,
    /// The task loads a payload or applies the stream: it is not dropped there but ends
    /// by itself (the load runs to its end and then sees the new REPLICAOF; the stream
    /// ends with its master client).
    guarded: std::cell::Cell<bool>,
    /// Told when the task has ended.
    done: std::cell::RefCell<Vec<futures_channel::oneshot::Sender<()>>>,
}

thread_local! {
    /// Core 0: the link tasks running (one, but for a moment after two REPLICAOFs raced).
    static TASKS: std::cell::RefCell<Vec<Rc<Task>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Ends core 0's link tasks and returns once they have ended (the caller changed the
/// REPLICAOF epoch first). No polling: each task tells its end.
async fn stop_link(core: &Rc<Core>) {
    let ends = call(core, 0, |_c: &Core| {
        TASKS.with(|t| {
            t.borrow()
                .iter()
                .map(|task| {
                    let (tx, rx) = futures_channel::oneshot::channel();
                    task.done.borrow_mut().push(tx);
                    task.cancel.ring();
                    rx
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    for end in ends {
        // A task that ended meanwhile dropped its sender: ended all the same.
        let _ = end.await;
    }
}

/// Completes when `task` is told to stop and is not in a guarded part.
async fn cancelled(task: &Task) {
    loop {
        task.cancel.wait().await;
        if !task.guarded.get() {
            return;
        }
    }
}

/// Runs `f` with `task` guarded: a stop waits for its end instead of dropping it.
async fn guarded<R>(task: &Task, f: impl std::future::Future<Output = R>) -> R {
    task.guarded.set(true);
    let r = f.await;
    task.guarded.set(false);
    r
}

async fn kill_master_client(core: &Rc<Core>) {
    call(core, 0, |_c: &Core| {
        MASTER.with(|m| {
            if let Some(h) = m.borrow().as_ref() {
                h.kill();
            }
        })
    })
    .await;
}

/// Core 0's link: connects, syncs and applies the stream while REPLICAOF stands (epoch
/// unchanged), retrying every second.
async fn link_loop(core: Rc<Core>, epoch: u64, task: Rc<Task>) {
    let current = |core: &Core| {
        core.global.repl.epoch.load(Ordering::Acquire) == epoch
            && !core.global.shutdown.load(Ordering::Relaxed)
    };
    while current(&core) {
        let Some(l) = link(&core.global) else { break };
        // A stop drops the session where it waits (connecting, the handshake, the
        // payload's bytes), never in its guarded parts.
        let run = async { session(&core, epoch, &task, &l.host, l.port).await };
        let stop = async {
            cancelled(&task).await;
            Ok(())
        };
        if let Err(e) = futures_lite::future::or(run, stop).await {
            if current(&core) {
                crate::log::warn(&e);
            }
        }
        if !current(&core) {
            break;
        }
        set_state(&core, State::Connect);
        futures_lite::future::or(
            crate::runtime::sleep(Duration::from_secs(1)),
            cancelled(&task),
        )
        .await;
    }
    TASKS.with(|t| t.borrow_mut().retain(|x| !Rc::ptr_eq(x, &task)));
    for tx in task.done.borrow_mut().drain(..) {
        let _ = tx.send(());
    }
}

/// `op`, or a timed-out error once `timeout` passed.
async fn bounded<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    futures_lite::future::or(op, async {
        crate::runtime::sleep(timeout).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Connection timed out",
        ))
    })
    .await
}

/// The link to the primary (a connection of this core's network ring, in TLS under
/// `tls-replication yes`), its replies read line by line.
struct Wire {
    s: Stream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Wire {
    async fn send(&mut self, parts: &[&[u8]]) -> Result<(), String> {
        let cmd = percore_shard::repl::encode(parts);
        bounded(self.timeout, self.s.write_all(&cmd))
            .await
            .map_err(|e| format!("Error writing to MASTER: {e}"))
    }

    /// More bytes from the primary, appended to `buf` (no copy when it is empty).
    async fn fill(&mut self) -> Result<(), String> {
        match bounded(self.timeout, self.s.read_into(&mut self.buf)).await {
            Ok(0) => Err("MASTER closed the connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("Error reading from MASTER: {e}")),
        }
    }

    /// The next line that is not empty (a primary sends newlines to keep the link alive
    /// while it prepares a payload).
    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if text.is_empty() {
                    continue;
                }
                return Ok(text);
            }
            if self.buf.len() > 64 << 10 {
                return Err("MASTER sent a line too long".into());
            }
            self.fill().await?;
        }
    }

    /// Sends a handshake command and reads its reply, failing as Redis's
    /// `receiveSynchronousResponse` logs it.
    async fn ask(&mut self, parts: &[&[u8]]) -> Result<String, String> {
        self.send(parts).await?;
        self.line().await.map_err(|e| {
            crate::log::warn(&format!("Failed to read response from the server: {e}"));
            "Master did not respond to command during SYNC handshake".to_string()
        })
    }
}

/// The primary's `host`:`port` connected, in TLS under `tls-replication yes`, as a
/// connection of this core's network ring.
async fn connect(cfg: &crate::config::Config, host: &str, port: u16) -> Result<Stream, String> {
    let timeout = Duration::from_secs(cfg.repl_timeout.max(1));
    let fail = |e: std::io::Error| format!("Unable to connect to MASTER: {e}");
    let s = crate::migrate::connect_host(host, port, timeout)
        .await
        .map_err(fail)?;
    let mut st = s.into_fd().and_then(Stream::adopt).map_err(fail)?;
    if cfg.tls.replication {
        let tls = crate::tls::client_config(&cfg.tls)
            .map_err(|e| format!("Unable to connect to MASTER: TLS: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("Unable to connect to MASTER: {host}: {e}"))?;
        st.start_tls_client(std::sync::Arc::new(tls), name)
            .map_err(fail)?;
    }
    Ok(st)
}

/// One connection to the primary, from connect to its end.
async fn session(
    core: &Rc<Core>,
    epoch: u64,
    task: &Task,
    host: &str,
    port: u16,
) -> Result<(), String> {
    let cfg = core.config.borrow().clone();
    let timeout = Duration::from_secs(cfg.repl_timeout.max(1));
    crate::log::notice(&format!("Connecting to MASTER {host}:{port}"));
    set_state(core, State::Connecting);
    let s = connect(&cfg, host, port).await?;
    crate::log::notice("MASTER <-> REPLICA sync started");
    set_state(core, State::Handshake);
    let mut w = Wire {
        s,
        buf: Vec::new(),
        timeout,
    };
    let r = w.ask(&[b"PING"]).await?;
    if r.starts_with('-')
        && !r.starts_with("-NOAUTH")
        && !r.starts_with("-NOPERM")
        && !r.starts_with("-ERR operation not permitted")
    {
        return Err(format!("Error reply to PING from master: '{r}'"));
    }
    crate::log::notice("Master replied to PING, replication can continue...");
    if let Some(pass) = cfg.masterauth.as_deref() {
        let r = match cfg.masteruser.as_deref() {
            Some(user) => w.ask(&[b"AUTH", user.as_bytes(), pass.as_bytes()]).await?,
            None => w.ask(&[b"AUTH", pass.as_bytes()]).await?,
        };
        if r.starts_with('-') {
            return Err(format!("Unable to AUTH to MASTER: {r}"));
        }
    }
    let my_port = cfg.port.to_string();
    let r = w
        .ask(&[b"REPLCONF", b"listening-port", my_port.as_bytes()])
        .await?;
    if r.starts_with('-') {
        crate::log::notice(&format!(
            "(Non critical) Master does not understand REPLCONF listening-port: {r}"
        ));
    }
    let r = w
        .ask(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await?;
    if r.starts_with('-') {
        crate::log::notice(&format!(
            "(Non critical) Master does not understand REPLCONF capa: {r}"
        ));
    }
    let offset = link(&core.global).map_or(-1, |l| l.offset);
    let replid = super::replid(&core.global);
    let r = if offset >= 0 {
        let from = (offset + 1).to_string();
        crate::log::notice(&format!(
            "Trying a partial resynchronization (request {replid}:{from})."
        ));
        w.ask(&[b"PSYNC", replid.as_bytes(), from.as_bytes()])
            .await?
    } else {
        crate::log::notice("Partial resynchronization not possible (no cached master)");
        w.ask(&[b"PSYNC", b"?", b"-1"]).await?
    };
    if !current_epoch(core, epoch) {
        return Ok(());
    }
    let mut words = r.split_whitespace();
    // The database the stream goes on in: 0 after a full sync (a primary's stream selects
    // its database again after the snapshot point), the one it was in for a partial one.
    let mut db = 0;
    let offset = match words.next() {
        Some("+FULLRESYNC") => {
            let id = words.next().unwrap_or_default().to_string();
            let off: i64 = words.next().and_then(|o| o.parse().ok()).unwrap_or(-1);
            if id.len() != 40 || off < 0 {
                return Err(format!("Bad FULLRESYNC reply from master: '{r}'"));
            }
            crate::log::notice(&format!("Full resync from master: {id}:{off}"));
            full_sync(core, &mut w, epoch, task, &id, off).await?;
            off
        }
        Some("+CONTINUE") => {
            crate::log::notice("Successful partial resynchronization with master.");
            if let Some(id) = words.next().filter(|id| id.len() == 40) {
                if id != replid {
                    // The primary was promoted meanwhile: its new id, ours kept as id 2.
                    shift_to(core, id, offset as u64);
                    crate::log::notice(&format!("Master replication ID changed to {id}"));
                }
            }
            crate::log::notice(
                "MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.",
            );
            db = with_link(core, |l| l.as_ref().map_or(0, |l| l.master_db));
            offset
        }
        _ if r.starts_with("-NOMASTERLINK") || r.starts_with("-LOADING") => {
            return Err(format!(
                "Master is currently unable to PSYNC but should be in the future: {r}"
            ))
        }
        _ => return Err(format!("Unexpected reply to PSYNC from master: {r}")),
    };
    if !current_epoch(core, epoch) {
        return Ok(());
    }
    guarded(task, stream(core, w, epoch, offset, db)).await
}

fn current_epoch(core: &Core, epoch: u64) -> bool {
    core.global.repl.epoch.load(Ordering::Acquire) == epoch
}

/// The replication id becomes `id`; the old one is kept as id 2, valid up to `offset`
/// (a promotion, or `+CONTINUE <id>` from a primary promoted meanwhile). Returns the old.
fn shift_to(core: &Core, id: &str, offset: u64) -> String {
    let old = std::mem::replace(&mut *locked(&core.global.repl_id), id.to_string());
    let mut s = locked(&core.global.repl.status);
    s.replid2 = old.clone();
    s.second_offset = offset as i64 + 1;
    s.offset = offset;
    old
}

/// Receives the payload into a file of `dir`, then flushes every shard and loads it.
async fn full_sync(
    core: &Rc<Core>,
    w: &mut Wire,
    epoch: u64,
    task: &Task,
    id: &str,
    offset: i64,
) -> Result<(), String> {
    set_state(core, State::Sync);
    let head = w.line().await?;
    let (total, mark) = if let Some(m) = head.strip_prefix("$EOF:") {
        if m.len() != 40 {
            return Err(format!("Bad payload mark from master: '{head}'"));
        }
        (-1i64, Some(m.as_bytes().to_vec()))
    } else if let Some(n) = head.strip_prefix('$').and_then(|n| n.parse::<i64>().ok()) {
        (n.max(0), None)
    } else {
        return Err(format!(
            "Bad protocol from MASTER, the first byte is not '$' (we received '{head}'), are you sure the host and port are right?"
        ));
    };
    let dir = core.config.borrow().dir.clone();
    // Removed however this ends (the session may be dropped while the bytes arrive).
    let tmp = TempFile(std::path::Path::new(&dir).join(format!(
        "temp-{}.{}.rdb",
        now_ms() / 1000,
        std::process::id()
    )));
    let path = &tmp.0;
    crate::log::notice(&match mark {
        Some(_) => "MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF to disk"
            .to_string(),
        None => format!("MASTER <-> REPLICA sync: receiving {total} bytes from master to disk"),
    });
    receive(core, w, path, total, mark.as_deref()).await?;
    if !current_epoch(core, epoch) {
        return Ok(());
    }
    // From the flush on, the load runs to its end: a REPLICAOF meanwhile waits for it.
    guarded(task, load(core, epoch, path, id, offset)).await
}

/// A file removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Records a core loads between two turns of its other tasks: about a millisecond of
/// building keys, so a core answers its clients during a long load (Redis processes events
/// every 2 MB of its load).
const LOAD_SLICE_RECORDS: usize = 1024;

/// This core's part of a full sync's load: flushes its shard and stores the keys of the
/// payload at `path` that route to it, yielding between slices. The shard is borrowed for
/// one slice at a time; meanwhile normal clients are refused with LOADING (the gate), and
/// the link, which would apply the stream, is the task waiting for this load.
async fn load_here(
    core: &Rc<Core>,
    cfg: &crate::config::Config,
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<usize, String> {
    {
        let mut sh = core.shard.borrow_mut();
        for db in 0..percore_shard::DB_COUNT {
            sh.flush_db(db);
        }
    }
    let n = core.nshards();
    let mut imp = crate::rdb_io::Import::new(bytes, &mut core.shard.borrow_mut(), core.id, n);
    // A replica keeps what its primary sent, deadlines past or not: the primary deletes
    // those keys itself (Redis's rdbLoad drops expired keys only on a master).
    imp.keep_expired();
    let progress = &core.global.repl.load;
    let r = loop {
        let step = imp.step(&mut core.shard.borrow_mut(), LOAD_SLICE_RECORDS);
        if core.id == 0 {
            (progress.loaded_bytes).store(imp.offset() as u64, Ordering::Relaxed);
        }
        match step {
            Ok(true) => break Ok(()),
            Ok(false) => crate::runtime::yield_if_needed().await,
            Err(e) => break Err(e),
        }
    };
    imp.finish(cfg, path, r).map(|i| i.keys)
}

/// The file at `path`, read 4 MiB at a time with a chance for this core's other tasks
/// between two reads.
async fn read_in_slices(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len() as usize;
    let mut bytes = Vec::with_capacity(len);
    loop {
        let n = (&mut f).take(4 << 20).read_to_end(&mut bytes)?;
        if n == 0 {
            return Ok(bytes);
        }
        crate::runtime::yield_if_needed().await;
    }
}

/// Flushes every shard and loads the payload at `path` into them.
async fn load(
    core: &Rc<Core>,
    epoch: u64,
    path: &std::path::Path,
    id: &str,
    offset: i64,
) -> Result<(), String> {
    crate::log::notice("MASTER <-> REPLICA sync: Flushing old data");
    set_gate(core, true);
    crate::log::notice("MASTER <-> REPLICA sync: Loading DB in memory");
    let cfg = core.config.borrow().clone();
    let p = path.to_path_buf();
    let progress = &core.global.repl.load;
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    progress.started_ms.store(now_ms(), Ordering::Relaxed);
    progress.total_bytes.store(size, Ordering::Relaxed);
    progress.loaded_bytes.store(0, Ordering::Relaxed);
    // The payload is read once, here, in slices (the file was just written: its pages are
    // in the page cache), and shared by every core's load.
    let bytes = match read_in_slices(path).await {
        Ok(b) => Arc::new(b),
        Err(e) => {
            set_gate(core, false);
            return Err(format!(
                "Failed trying to load the MASTER synchronization DB from disk: {}: {e}",
                path.display()
            ));
        }
    };
    // Every core loads its part in a task of its own, in slices, and answers its clients
    // between them (LOADING, or what a LOADING-flagged command such as INFO replies).
    let started = call_all(core, move |c: &Core| {
        let (tx, rx) = oneshot::channel();
        let (cfg, p, bytes) = (cfg.clone(), p.clone(), bytes.clone());
        match c.me.upgrade() {
            Some(me) => crate::runtime::spawn_background(async move {
                let _ = tx.send(load_here(&me, &cfg, &p, &bytes).await);
            }),
            None => {
                let _ = tx.send(Err("the core is stopping".to_string()));
            }
        }
        rx
    })
    .await;
    let mut loaded = Vec::with_capacity(started.len());
    for rx in started {
        loaded.push(
            rx.await
                .unwrap_or_else(|_| Err("a core stopped its part of the load".to_string())),
        );
    }
    // Clients blocked on keys, WATCHes, tracking: the flush told them.
    set_gate(core, false);
    // REPLICAOF changed while the payload loaded: this link is over, and the ids and offset
    // it would record belong to the new setting.
    if !current_epoch(core, epoch) {
        return Err("REPLICAOF changed during the synchronization".into());
    }
    let keys: usize = match loaded.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(k) => k.into_iter().sum(),
        Err(e) => {
            return Err(format!(
                "Failed trying to load the MASTER synchronization DB from disk: {e}"
            ))
        }
    };
    *locked(&core.global.repl_id) = id.to_string();
    {
        let mut s = locked(&core.global.repl.status);
        s.replid2 = super::NO_REPLID.into();
        s.second_offset = -1;
    }
    with_link(core, |l| {
        if let Some(l) = l {
            l.offset = offset;
            l.read_offset = offset;
            l.sync_total = 0;
            l.sync_read = 0;
        }
    });
    crate::log::notice(&format!(
        "MASTER <-> REPLICA sync: Finished with success ({keys} keys)"
    ));
    Ok(())
}

/// The payload's bytes to `path`: `total` of them, or up to the 40-byte `mark`. Each
/// chunk goes from the network ring's receive buffer to the file as it is (no copy in
/// between: [`Stream::read_into`] hands an empty `w.buf` the ring's buffer); with a mark,
/// only the last 40 bytes, which may be part of it, are held back (copied).
async fn receive(
    core: &Rc<Core>,
    w: &mut Wire,
    path: &std::path::Path,
    total: i64,
    mark: Option<&[u8]>,
) -> Result<(), String> {
    use std::io::Write as _;
    let fail = |e: std::io::Error| {
        format!("Opening the temp file needed for MASTER <-> REPLICA synchronization: {e}")
    };
    let mut f = std::fs::File::create(path).map_err(fail)?;
    let mut read = 0u64;
    let mut held: Vec<u8> = Vec::with_capacity(40);
    loop {
        if mark.is_none() && read == total as u64 {
            break;
        }
        if w.buf.is_empty() {
            w.fill().await?;
        }
        let done = match mark {
            None => {
                let take = w.buf.len().min((total as u64 - read) as usize);
                f.write_all(&w.buf[..take]).map_err(fail)?;
                read += take as u64;
                // What follows the payload is the stream's first bytes.
                match take == w.buf.len() {
                    true => w.buf.clear(),
                    false => drop(w.buf.drain(..take)),
                }
                false
            }
            Some(m) => {
                let got = std::mem::take(&mut w.buf);
                read += got.len() as u64;
                let done = match got.len() >= m.len() {
                    true => got.ends_with(m),
                    false => [held.as_slice(), &got].concat().ends_with(m),
                };
                // `held` then `got`: the payload's next bytes, then the mark (done) or
                // the bytes that may begin it.
                let all = held.len() + got.len();
                let write = all - m.len().min(all);
                let from_held = write.min(held.len());
                f.write_all(&held[..from_held]).map_err(fail)?;
                f.write_all(&got[..write - from_held]).map_err(fail)?;
                let rest: Vec<u8> = held[from_held..]
                    .iter()
                    .chain(&got[write - from_held..])
                    .copied()
                    .collect();
                held = rest;
                // The buffer goes back for the next read to swap with the ring's.
                w.buf = got;
                w.buf.clear();
                done
            }
        };
        with_link(core, |l| {
            if let Some(l) = l {
                l.sync_total = total;
                l.sync_read = read;
                l.last_io_ms = now_ms();
            }
        });
        if done {
            break;
        }
        crate::runtime::yield_if_needed().await;
    }
    Ok(())
}

fn ack_cmd(offset: i64) -> Vec<u8> {
    let o = offset.to_string();
    percore_shard::repl::encode(&[b"REPLCONF", b"ACK", o.as_bytes()])
}

/// The stream: the socket joins this core's ring and a master client runs its commands.
async fn stream(
    core: &Rc<Core>,
    w: Wire,
    epoch: u64,
    mut offset: i64,
    db: usize,
) -> Result<(), String> {
    let Wire {
        s: mut st,
        buf,
        timeout,
    } = w;
    let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    let addr = st.peer_addr().unwrap_or(unspecified);
    let laddr = st.local_addr().unwrap_or(unspecified);
    let mut conn = Client::master(core.clone(), st.raw_fd(), addr, laddr);
    conn.db = db;
    MASTER.with(|m| *m.borrow_mut() = Some(conn.handle.clone()));
    set_state(core, State::Connected);
    with_link(core, |l| {
        if let Some(l) = l {
            l.last_io_ms = now_ms();
        }
    });
    let r = apply(core, &mut conn, &mut st, buf, epoch, &mut offset, timeout).await;
    with_link(core, |l| {
        if let Some(l) = l {
            l.master_db = conn.db;
        }
    });
    MASTER.with(|m| *m.borrow_mut() = None);
    end_master(&mut conn).await;
    crate::log::notice("Connection with master lost.");
    crate::log::notice("* Caching the disconnected master state.");
    r
}

/// Ends a master client: what a closed connection leaves is cleaned up.
async fn end_master(conn: &mut Client) {
    conn.multi = None;
    if conn.tx.is_some() {
        conn.end_tx().await;
    }
    crate::multi::unwatch(conn).await;
    conn.core.clients.borrow_mut().remove(&conn.handle.id);
}

/// The primary's link as the dispatcher sees it. The master client's replies go nowhere
/// (a replica answers its primary only with REPLCONF ACK), and the link is never handed
/// over: a PSYNC or SYNC in the stream is ignored. Blocking commands never park here (see
/// `blocking::run`, which only tries for the master client), so nothing waits on
/// [`Peer::closed`].
struct Upstream;

impl Peer for Upstream {
    fn write_pending<'a>(&'a mut self, client: &'a mut Client) -> Local<'a, std::io::Result<()>> {
        client.discard_replies();
        Box::pin(std::future::ready(Ok(())))
    }

    fn closed(&mut self) -> Local<'_, ()> {
        Box::pin(std::future::pending())
    }

    fn hand_over<'a>(&'a mut self, _: &'a mut Client, args: Args<'a>) -> Local<'a, ()> {
        crate::log::warn(&format!(
            "the primary sent {} on the replication link; ignored",
            String::from_utf8_lossy(&args[0]).to_ascii_uppercase()
        ));
        Box::pin(std::future::ready(()))
    }
}

async fn apply(
    core: &Rc<Core>,
    conn: &mut Client,
    st: &mut Stream,
    mut rbuf: Vec<u8>,
    epoch: u64,
    offset: &mut i64,
    timeout: Duration,
) -> Result<(), String> {
    let limits = percore_proto::Limits {
        max_bulk_len: i64::MAX,
        authenticated: true,
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut last_ack = std::time::Instant::now();
    // The first ACK at once: a primary that sent a payload with a mark waits for it.
    let _ = st.write_all(&ack_cmd(*offset)).await;
    let mut last_io = std::time::Instant::now();
    loop {
        if !current_epoch(core, epoch) || conn.handle.killed.get() {
            return Ok(());
        }
        // Every complete command of the buffer.
        conn.note_read();
        let mut at = 0;
        loop {
            match decoder.decode(&mut rbuf[at..]) {
                Ok(percore_proto::Decoded::Command { consumed }) => {
                    let frame = &rbuf[at..at + consumed];
                    let args = Args::new(frame, decoder.args());
                    let getack = args.len() >= 2
                        && args[0].eq_ignore_ascii_case(b"replconf")
                        && args[1].eq_ignore_ascii_case(b"getack");
                    if getack {
                        conn.flush().await;
                        let _ = st.write_all(&ack_cmd(*offset)).await;
                        last_ack = std::time::Instant::now();
                    } else {
                        conn.dispatch(args, &mut Upstream).await;
                        conn.discard_replies();
                    }
                    at += consumed;
                    *offset += consumed as i64;
                }
                Ok(percore_proto::Decoded::Empty { consumed }) => {
                    at += consumed;
                    *offset += consumed as i64;
                }
                Ok(percore_proto::Decoded::Incomplete { .. }) => break,
                Err(e) => return Err(format!("Protocol error from MASTER: {}", e.message())),
            }
        }
        rbuf.drain(..at);
        conn.flush().await;
        conn.discard_replies();
        let off = *offset;
        let read_off = off + rbuf.len() as i64;
        with_link(core, |l| {
            if let Some(l) = l {
                l.offset = off;
                l.read_offset = read_off;
            }
        });
        if last_ack.elapsed() >= Duration::from_secs(1) {
            if st.write_all(&ack_cmd(*offset)).await.is_err() {
                return Ok(());
            }
            last_ack = std::time::Instant::now();
        }
        let got = futures_lite::future::or(async { Some(st.read_into(&mut rbuf).await) }, async {
            crate::runtime::sleep(Duration::from_secs(1)).await;
            None
        })
        .await;
        match got {
            Some(Ok(0)) | Some(Err(_)) => return Ok(()),
            Some(Ok(_)) => {
                last_io = std::time::Instant::now();
                with_link(core, |l| {
                    if let Some(l) = l {
                        l.last_io_ms = now_ms();
                    }
                });
            }
            None => {
                if last_io.elapsed() > timeout {
                    return Err("MASTER timeout: no data nor PING received...".into());
                }
            }
        }
    }
}

/// ROLE on a replica: `slave`, the primary's host and port, the link's state, the offset.
pub fn role(l: &Link, w: &mut ReplyWriter<'_>) {
    w.array(5);
    w.bulk(b"slave");
    w.bulk(l.host.as_bytes());
    w.int(l.port as i64);
    w.bulk(l.state.name().as_bytes());
    w.int(if l.state == State::Connected {
        l.offset
    } else {
        -1
    });
}

/// INFO replication's lines before `connected_slaves` on a replica.
pub fn info_lines(l: &Link, cfg: &crate::config::Config) -> String {
    let now = now_ms();
    let up = l.state == State::Connected;
    let mut out = format!(
        "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\n",
        l.host,
        l.port,
        if up { "up" } else { "down" },
        if l.last_io_ms == 0 { -1 } else { (now.saturating_sub(l.last_io_ms) / 1000) as i64 },
        (l.state == State::Sync) as u8,
        l.read_offset.max(0),
        l.offset.max(0),
    );
    if l.state == State::Sync {
        let left = match l.sync_total {
            t if t > 0 => t - l.sync_read as i64,
            _ => 0,
        };
        let perc = match l.sync_total {
            t if t > 0 => l.sync_read as f64 * 100.0 / t as f64,
            _ => 0.0,
        };
        out.push_str(&format!(
            "master_sync_total_bytes:{}\r\nmaster_sync_read_bytes:{}\r\nmaster_sync_left_bytes:{left}\r\nmaster_sync_perc:{perc:.2}\r\nmaster_sync_last_io_seconds_ago:{}\r\n",
            l.sync_total,
            l.sync_read,
            now.saturating_sub(l.last_io_ms) / 1000
        ));
    }
    if !up {
        out.push_str(&format!(
            "master_link_down_since_seconds:{}\r\n",
            now.saturating_sub(l.down_since_ms) / 1000
        ));
    }
    out.push_str(&format!(
        "slave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:{}\r\n",
        cfg.replica_priority, cfg.replica_read_only as u8, cfg.replica_announced as u8
    ));
    out
}
