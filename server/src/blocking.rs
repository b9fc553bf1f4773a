//! Blocking list and sorted-set commands: BLPOP, BRPOP, BLMPOP, BLMOVE, BRPOPLPUSH,
//! BZPOPMIN, BZPOPMAX, BZMPOP.
//!
//! A key's queue may hold waiters of both kinds; a key serves those whose type it holds,
//! first come first served, and the others keep waiting (as Redis 7.0 serves a ready key's
//! clients by the type they block for).
//!
//! # Who does what
//! - The **connection** (on its own core) parses the command, asks the shards that own its
//!   keys to serve it or queue it, then parks until one of them delivers, the timeout
//!   passes, CLIENT UNBLOCK reaches it, or its client goes away.
//! - Each **shard's core** keeps a FIFO of waiters per (database, key) ([`Registry`]); the
//!   shard reports keys that a list was stored at while someone waits on them
//!   (`Shard::ready`), and after every command the core serves those keys' waiters in order
//!   ([`serve_ready`]) before the next command runs: the pushed element goes to the first
//!   waiter before anyone else can see it, as in Redis.
//!
//! # Exactly once
//! A waiter may be queued on several keys and shards at once. Its [`WaitCell`] is claimed by
//! one compare-and-swap: a shard pops only after it has claimed the cell, so at most one
//! shard serves it; a timeout, CLIENT UNBLOCK or a disconnect claims it too, and whoever
//! loses the race knows an answer is on its way. A connection whose client left while a
//! popped element was in flight puts the element back at the end it came from; an element
//! BLMOVE already pushed to its destination stays there. The queues drop a served or
//! abandoned waiter when the connection unregisters it (or when serving meets it).
//!
//! # Across shards
//! Keys on one shard: one hop (try the keys in order, else queue on all of them). Keys on
//! several shards: first the keys are tried in order, one shard after another (the first
//! key holding a list serves, a key of another type answers WRONGTYPE), then the waiter is
//! queued on every shard (each still serves it at once if a list appeared meanwhile).
//! BLMOVE whose destination is on another shard pops on the source's shard and pushes from
//! the connection; a destination found holding another type then gets the element back to
//! the source and the client WRONGTYPE. Isolation window, as `coordinated.rs` writes them
//! down: between that pop and push the element is in neither list.

use crate::conn::Conn;
use crate::core::{call, now_ms, Core};
use crate::router::shard_of;
use crate::runtime::Stream;
use crate::txlock::call_checked;
use futures_channel::oneshot;
use percore_proto::{Args, Cmd, CommandSpec, ReplyWriter};
use percore_shard::ops::list::{
    kind, move_one, parse_ends, parse_mpop, pop_n, push_elements, write_mpop_reply, Kind, Popped,
};
use percore_shard::ops::zset;
use percore_shard::types::list::End;
use percore_shard::{err, Shard};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a parked connection is woken with.
#[derive(Debug)]
pub enum Served {
    /// Elements popped from `end` of `key`, first popped first.
    Popped {
        key: Vec<u8>,
        end: End,
        elements: Vec<Vec<u8>>,
    },
    /// Sorted-set elements popped from `key` (its lowest or highest, as the waiter asked),
    /// with their scores, first popped first.
    ZPopped {
        key: Vec<u8>,
        elements: Vec<(f64, Vec<u8>)>,
    },
    /// BLMOVE's element, already pushed to the destination when `pushed`.
    Moved {
        element: Vec<u8>,
        pushed: bool,
    },
    Error(&'static str),
    /// CLIENT UNBLOCK: answer as a timeout, or with the UNBLOCKED error.
    Unblocked {
        error: bool,
    },
}

const WAITING: u8 = 0;
const CLAIMED: u8 = 1;

/// One parked command's fate, shared by every queue it waits in (see the module header).
pub struct WaitCell {
    state: AtomicU8,
    tx: Mutex<Option<oneshot::Sender<Served>>>,
}

impl WaitCell {
    fn new() -> (Arc<WaitCell>, oneshot::Receiver<Served>) {
        let (tx, rx) = oneshot::channel();
        let cell = WaitCell {
            state: AtomicU8::new(WAITING),
            tx: Mutex::new(Some(tx)),
        };
        (Arc::new(cell), rx)
    }

    /// True for exactly one caller: the one that decides this waiter's answer.
    pub fn claim(&self) -> bool {
        self.state
            .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn is_claimed(&self) -> bool {
        self.state.load(Ordering::Acquire) != WAITING
    }

    /// Hands the answer to the parked connection (after a successful [`claim`]); gives it
    /// back when the connection no longer exists.
    ///
    /// [`claim`]: WaitCell::claim
    pub fn deliver(&self, s: Served) -> Result<(), Served> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        match tx {
            Some(tx) => tx.send(s),
            None => Err(s),
        }
    }
}

/// What a waiter wants from the key that serves it.
#[derive(Clone, Debug)]
pub enum Op {
    Pop {
        end: End,
        count: usize,
    },
    /// BZPOPMIN/BZPOPMAX/BZMPOP.
    ZPop {
        max: bool,
        count: usize,
    },
    /// BLMOVE/BRPOPLPUSH: `dst_here` when the destination lives on the source's shard
    /// (then the serving shard pushes it too).
    Move {
        from: End,
        to: End,
        dst: Vec<u8>,
        dst_here: bool,
    },
}

struct Waiter {
    cell: Arc<WaitCell>,
    op: Op,
}

/// The waiters queued on one core's shard, FIFO per (database, key).
#[derive(Default)]
pub struct Registry {
    queues: HashMap<(usize, Vec<u8>), VecDeque<Waiter>>,
}

/// How a shard treats a waiter's keys when asked ([`offer`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// The command's first look: a key of another type answers WRONGTYPE; nothing queued.
    Try,
    /// `Try`, then queue on every key when none could serve (all keys on this shard).
    TryThenQueue,
    /// Queue on every key, serving at once from one that holds a list now.
    Queue,
}

/// The outcome of [`offer`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Offered {
    /// Answered (served, or an error delivered); nothing queued.
    Answered,
    Queued,
    /// Nothing to do here and nothing queued (`Try` on missing keys, or the waiter was
    /// already answered elsewhere).
    Nothing,
}

/// What `key` is to a waiter doing `op`: [`Kind::List`] when it holds the type `op` pops
/// from (a list, or a sorted set for [`Op::ZPop`]).
fn kind_for(sh: &mut Shard, db: usize, now: u64, key: &[u8], op: &Op) -> Kind {
    match op {
        Op::ZPop { .. } => match zset::holds(sh, db, now, key) {
            None => Kind::Missing,
            Some(true) => Kind::List,
            Some(false) => Kind::Other,
        },
        _ => kind(sh, db, now, key),
    }
}

/// Runs on the core owning `keys`: answers the waiter from them or queues it (see [`Mode`]).
/// `dst_bad`: a move's destination (on another shard) held another type when the command
/// began, which decides only the first look (a list found then answers WRONGTYPE, as
/// LMOVE); later, the push itself finds out.
pub fn offer(
    core: &Core,
    db: usize,
    keys: &[Vec<u8>],
    op: &Op,
    cell: &Arc<WaitCell>,
    mode: Mode,
    dst_bad: bool,
) -> Offered {
    let now = now_ms();
    let mut sh = core.shard.borrow_mut();
    if mode != Mode::Queue {
        for k in keys {
            match kind_for(&mut sh, db, now, k, op) {
                Kind::Missing => continue,
                Kind::List if dst_bad => {
                    if cell.claim() {
                        let _ = cell.deliver(Served::Error(err::WRONGTYPE));
                    }
                    return Offered::Answered;
                }
                Kind::Other => {
                    if cell.claim() {
                        let _ = cell.deliver(Served::Error(err::WRONGTYPE));
                    }
                    return Offered::Answered;
                }
                Kind::List => {
                    serve_one(&mut sh, db, k, now, cell, op);
                    drop(sh);
                    serve_ready(core);
                    return Offered::Answered;
                }
            }
        }
        if mode == Mode::Try {
            return Offered::Nothing;
        }
    } else {
        for k in keys {
            if kind_for(&mut sh, db, now, k, op) == Kind::List {
                serve_one(&mut sh, db, k, now, cell, op);
                drop(sh);
                serve_ready(core);
                return Offered::Answered;
            }
        }
    }
    if cell.is_claimed() {
        return Offered::Nothing;
    }
    let mut reg = core.blocking.borrow_mut();
    for k in keys {
        reg.queues
            .entry((db, k.clone()))
            .or_default()
            .push_back(Waiter {
                cell: cell.clone(),
                op: op.clone(),
            });
        sh.block_key(db, k);
    }
    Offered::Queued
}

/// Removes `cell`'s waiters from `keys`' queues on this core.
pub fn withdraw(core: &Core, db: usize, keys: &[Vec<u8>], cell: &Arc<WaitCell>) {
    let mut reg = core.blocking.borrow_mut();
    let mut sh = core.shard.borrow_mut();
    for k in keys {
        let id = (db, k.clone());
        if let Some(q) = reg.queues.get_mut(&id) {
            q.retain(|w| !Arc::ptr_eq(&w.cell, cell));
            if q.is_empty() {
                reg.queues.remove(&id);
                sh.unblock_key(db, k);
            }
        }
    }
}

/// Serves the waiters of every key the shard reported ready, in order, each key's waiters
/// first come first served while the key holds the type they pop from (waiters for the
/// other type are passed over and keep waiting). Costs one emptiness check when nothing is
/// ready.
pub fn serve_ready(core: &Core) {
    {
        let sh = core.shard.borrow();
        if sh.has_invalidations() {
            crate::tracking::send_pending(core, &sh);
        }
        if sh.ready.is_empty() {
            if !sh.events.is_empty() {
                drop(sh);
                crate::pubsub::publish_events(core, &mut core.shard.borrow_mut());
            }
            return;
        }
    }
    let mut sh = core.shard.borrow_mut();
    serve_ready_in(core, &mut sh);
}

/// [`serve_ready`] with the shard already borrowed (batches).
pub fn serve_ready_in(core: &Core, sh: &mut Shard) {
    if sh.has_invalidations() {
        crate::tracking::send_pending(core, sh);
    }
    if !sh.events.is_empty() {
        crate::pubsub::publish_events(core, sh);
    }
    if sh.ready.is_empty() {
        return;
    }
    let now = now_ms();
    let mut reg = core.blocking.borrow_mut();
    // A key a transaction holds is served when it ends (Redis serves after EXEC): the
    // transaction's later commands see what its push left.
    let mut later = Vec::new();
    // Serving may make more keys ready (BLMOVE pushes to a destination others wait on).
    let mut i = 0;
    while i < sh.ready.len() {
        let (db, key) = sh.ready[i].clone();
        i += 1;
        {
            let locks = core.locks.borrow();
            if !locks.is_idle()
                && !locks.admits(
                    &crate::txlock::KeySet::Keys(vec![crate::txlock::lock_key(db, &key)]),
                    None,
                )
            {
                later.push((db, key));
                continue;
            }
        }
        let id = (db, key);
        let Some(q) = reg.queues.get_mut(&id) else {
            continue;
        };
        let mut j = 0;
        while j < q.len() {
            if q[j].cell.is_claimed() {
                q.remove(j);
                continue;
            }
            match kind_for(sh, db, now, &id.1, &q[j].op) {
                Kind::Missing => break,
                Kind::Other => j += 1,
                Kind::List => {
                    let w = q.remove(j).expect("within the queue");
                    serve_one(sh, db, &id.1, now, &w.cell, &w.op);
                }
            }
        }
        if q.is_empty() {
            reg.queues.remove(&id);
            sh.unblock_key(db, &id.1);
        }
    }
    sh.ready.clear();
    sh.ready.extend(later);
}

/// Serves `cell` from the list at `key` if it can claim it.
fn serve_one(sh: &mut Shard, db: usize, key: &[u8], now: u64, cell: &Arc<WaitCell>, op: &Op) {
    if let Op::Move { dst, dst_here, .. } = op {
        if *dst_here && key != &dst[..] && kind(sh, db, now, dst) == Kind::Other {
            if cell.claim() {
                let _ = cell.deliver(Served::Error(err::WRONGTYPE));
            }
            return;
        }
    }
    if !cell.claim() {
        return;
    }
    // A waiter gone before its elements reach it gets them put back: a pop that never
    // happened, with no keyspace events.
    let mark = sh.events.len();
    match op {
        Op::ZPop { max, count } => {
            let zset::Popped::Elements(elements) = zset::pop_n(sh, db, now, key, *max, *count)
            else {
                unreachable!("the caller saw a sorted set at the key")
            };
            let s = Served::ZPopped {
                key: key.to_vec(),
                elements,
            };
            if let Err(Served::ZPopped { elements, .. }) = cell.deliver(s) {
                zset::put_back(sh, db, now, key, &elements);
                sh.events.truncate(mark);
            }
        }
        Op::Pop { end, count } => {
            let Popped::Elements(elements) = pop_n(sh, db, now, key, *end, *count) else {
                unreachable!("the caller saw a list at the key")
            };
            let s = Served::Popped {
                key: key.to_vec(),
                end: *end,
                elements,
            };
            if let Err(Served::Popped { elements, end, .. }) = cell.deliver(s) {
                put_back(sh, db, now, key, end, elements);
                sh.events.truncate(mark);
            }
        }
        Op::Move {
            from,
            to,
            dst,
            dst_here,
            ..
        } => {
            let dst = dst_here.then_some((&dst[..], *to));
            let element = move_one(sh, db, now, key, *from, dst);
            let s = Served::Moved {
                element,
                pushed: *dst_here,
            };
            if let Err(Served::Moved {
                element,
                pushed: false,
            }) = cell.deliver(s)
            {
                put_back(sh, db, now, key, *from, vec![element]);
                sh.events.truncate(mark);
            }
        }
    }
}

/// Returns popped elements to the end they came from, in their order.
fn put_back(sh: &mut Shard, db: usize, now: u64, key: &[u8], end: End, mut elements: Vec<Vec<u8>>) {
    elements.reverse();
    push_elements(sh, db, now, key, end, &elements);
}

/// The lock-table keys of a blocking command's keys on one shard: its offers wait while a
/// transaction holds one of them.
fn locked(db: usize, keys: &[Vec<u8>]) -> crate::txlock::KeySet {
    crate::txlock::KeySet::Keys(
        keys.iter()
            .map(|k| crate::txlock::lock_key(db, k))
            .collect(),
    )
}

/// A timeout argument as Redis 7.0 reads it: seconds as a float, rounded up to whole
/// milliseconds; 0 waits forever. Values whose milliseconds do not fit a 64-bit integer
/// (`inf`, `1e400`) come out negative in Redis's conversion, and get its error.
pub fn parse_timeout(b: &[u8]) -> Result<Option<Duration>, &'static str> {
    const NOT_FLOAT: &str = "ERR timeout is not a float or out of range";
    const NEGATIVE: &str = "ERR timeout is negative";
    let s = std::str::from_utf8(b).map_err(|_| NOT_FLOAT)?;
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(NOT_FLOAT);
    }
    let v: f64 = s.parse().map_err(|_| NOT_FLOAT)?;
    if v.is_nan() {
        return Err(NOT_FLOAT);
    }
    let ms = (v * 1000.0).ceil();
    if !ms.is_finite() || !(0.0..9.223_372_036_854_775e18).contains(&ms) {
        return Err(NEGATIVE);
    }
    Ok((ms > 0.0).then(|| Duration::from_millis(ms as u64)))
}

/// How a served command answers.
enum Reply {
    /// BLPOP/BRPOP: `[key, element]`.
    KeyElement,
    /// BLMPOP: `[key, [elements]]`.
    Mpop,
    /// BLMOVE/BRPOPLPUSH: the element.
    Element,
    /// BZPOPMIN/BZPOPMAX: `[key, member, score]`.
    KeyMemberScore,
    /// BZMPOP: `[key, [[member, score], …]]`.
    ZMpop,
}

/// Runs a blocking command for `conn`, parking it as long as needed; the reply goes to `w`.
/// Earlier replies of the pipeline are written before the connection parks. Returns how
/// long it was parked (not the command's cost, as Redis does not count it either).
pub async fn run(
    conn: &mut Conn,
    spec: &'static CommandSpec,
    a: Args<'_>,
    stream: &mut Stream,
    w: &mut ReplyWriter<'_>,
) -> Duration {
    let mut parked = Duration::ZERO;
    let last = a.len() - 1;
    let parsed = match spec.cmd {
        Cmd::BLPop | Cmd::BRPop => parse_timeout(&a[last]).map(|t| {
            let end = if spec.cmd == Cmd::BLPop {
                End::Left
            } else {
                End::Right
            };
            let keys = (1..last).map(|i| a[i].to_vec()).collect();
            (keys, Op::Pop { end, count: 1 }, t, Reply::KeyElement)
        }),
        Cmd::BLMPop => parse_mpop(&a, 2).and_then(|(keys, end, count)| {
            let t = parse_timeout(&a[1])?;
            let keys = keys.into_iter().map(|k| k.to_vec()).collect();
            Ok((keys, Op::Pop { end, count }, t, Reply::Mpop))
        }),
        Cmd::BZPopMin | Cmd::BZPopMax => parse_timeout(&a[last]).map(|t| {
            let max = spec.cmd == Cmd::BZPopMax;
            let keys = (1..last).map(|i| a[i].to_vec()).collect();
            (keys, Op::ZPop { max, count: 1 }, t, Reply::KeyMemberScore)
        }),
        Cmd::BZMPop => zset::parse_zmpop(&a, 2).and_then(|(keys, max, count)| {
            let t = parse_timeout(&a[1])?;
            let keys = keys.into_iter().map(|k| k.to_vec()).collect();
            Ok((keys, Op::ZPop { max, count }, t, Reply::ZMpop))
        }),
        Cmd::BLMove | Cmd::BRPopLPush => {
            let ends = if spec.cmd == Cmd::BLMove {
                parse_ends(&a[3], &a[4])
            } else {
                Ok((End::Right, End::Left))
            };
            ends.and_then(|(from, to)| {
                let t = parse_timeout(&a[last])?;
                let n = conn.core.nshards();
                let op = Op::Move {
                    from,
                    to,
                    dst: a[2].to_vec(),
                    dst_here: shard_of(&a[1], n) == shard_of(&a[2], n),
                };
                Ok((vec![a[1].to_vec()], op, t, Reply::Element))
            })
        }
        _ => Err("ERR not a blocking command"),
    };
    let (keys, op, timeout, reply) = match parsed {
        Ok(x) => x,
        Err(e) => {
            w.error(e);
            return parked;
        }
    };
    let db = conn.db;
    let n = conn.core.nshards();
    // Inside EXEC a blocking command only tries (Redis's CLIENT_DENY_BLOCKING).
    let once = conn.in_exec;
    let (cell, mut rx) = WaitCell::new();
    // The shards holding the keys, in the order their first key appears.
    let mut groups: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
    for k in &keys {
        let s = shard_of(k, n);
        match groups.iter_mut().find(|g| g.0 == s) {
            Some(g) => g.1.push(k.clone()),
            None => groups.push((s, vec![k.clone()])),
        }
    }
    let mut queued_on = Vec::new();
    let mut dst_bad = false;
    if let Op::Move {
        dst,
        dst_here: false,
        ..
    } = &op
    {
        let dst = dst.clone();
        let k = call(&conn.core, shard_of(&dst, n), move |c: &Core| {
            kind(&mut c.shard.borrow_mut(), db, now_ms(), &dst)
        })
        .await;
        dst_bad = k == Kind::Other;
    }
    if groups.len() == 1 {
        let (s, ks) = groups[0].clone();
        let (op2, cell2) = (op.clone(), cell.clone());
        let mode = if once { Mode::Try } else { Mode::TryThenQueue };
        let r = call_checked(&conn.core, s, conn.tx, locked(db, &ks), move |c: &Core| {
            offer(c, db, &ks, &op2, &cell2, mode, dst_bad)
        })
        .await;
        if r == Offered::Queued {
            queued_on.push(0);
        }
    } else {
        let mut answered = false;
        for k in &keys {
            let (op2, cell2, ks) = (op.clone(), cell.clone(), vec![k.clone()]);
            let r = call_checked(
                &conn.core,
                shard_of(k, n),
                conn.tx,
                locked(db, &ks),
                move |c: &Core| offer(c, db, &ks, &op2, &cell2, Mode::Try, dst_bad),
            )
            .await;
            if r == Offered::Answered {
                answered = true;
                break;
            }
        }
        if !answered && !once {
            for (i, (s, ks)) in groups.iter().enumerate() {
                let (op2, cell2, ks) = (op.clone(), cell.clone(), ks.clone());
                let r = call_checked(&conn.core, *s, conn.tx, locked(db, &ks), move |c: &Core| {
                    offer(c, db, &ks, &op2, &cell2, Mode::Queue, false)
                })
                .await;
                if r == Offered::Queued {
                    queued_on.push(i);
                }
                if cell.is_claimed() {
                    break;
                }
            }
        }
    }
    let served = match rx.try_recv() {
        Ok(Some(s)) => Some(s),
        _ if once => {
            // What a timeout answers, except that Redis gives BLMOVE/BRPOPLPUSH a null bulk.
            if matches!(op, Op::Move { .. }) {
                w.null();
            } else {
                w.null_array();
            }
            return parked;
        }
        _ => {
            let t0 = std::time::Instant::now();
            let s = park(conn, &cell, &mut rx, timeout, stream).await;
            parked = t0.elapsed();
            s
        }
    };
    for &i in &queued_on {
        let (s, ks) = groups[i].clone();
        let cell2 = cell.clone();
        call(&conn.core, s, move |c: &Core| withdraw(c, db, &ks, &cell2)).await;
    }
    let Some(served) = served else {
        // Timed out (the reply), or the client left (no reply).
        if !conn.close {
            w.null_array();
        }
        return parked;
    };
    finish(conn, db, &a, &op, served, reply, w).await;
    parked
}

/// Waits for the answer, the timeout, CLIENT UNBLOCK or the client's departure. None: timed
/// out, or the client left (`conn.close` set) before anything was served.
async fn park(
    conn: &mut Conn,
    cell: &Arc<WaitCell>,
    rx: &mut oneshot::Receiver<Served>,
    timeout: Option<Duration>,
    stream: &mut Stream,
) -> Option<Served> {
    // The client sees the replies of what it sent before this command now, not after.
    if conn.write_pending(stream).await.is_err() {
        conn.close = true;
    }
    *conn.handle.blocked.borrow_mut() = Some(cell.clone());
    let blocked = &conn.core.global.blocked_clients;
    blocked.fetch_add(1, Ordering::Relaxed);
    enum Wake {
        Served(Option<Served>),
        Timeout,
        Closed,
    }
    let wake = if conn.close {
        Wake::Closed
    } else {
        let served = async { Wake::Served((&mut *rx).await.ok()) };
        let closed = async {
            stream.closed().await;
            Wake::Closed
        };
        let timer = async {
            match timeout {
                Some(d) => crate::runtime::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            Wake::Timeout
        };
        futures_lite::future::or(served, futures_lite::future::or(closed, timer)).await
    };
    blocked.fetch_sub(1, Ordering::Relaxed);
    *conn.handle.blocked.borrow_mut() = None;
    match wake {
        Wake::Served(s) => s,
        Wake::Timeout | Wake::Closed => {
            if matches!(wake, Wake::Closed) {
                conn.close = true;
            }
            if cell.claim() {
                return None;
            }
            // Someone answered first; its answer is on the way.
            (&mut *rx).await.ok()
        }
    }
}

/// Replies with what was served (and completes a move across shards). A client that left
/// gets nothing, and popped elements go back where they came from.
async fn finish(
    conn: &mut Conn,
    db: usize,
    a: &Args<'_>,
    op: &Op,
    served: Served,
    reply: Reply,
    w: &mut ReplyWriter<'_>,
) {
    let n = conn.core.nshards();
    match served {
        Served::ZPopped { key, elements } => {
            if conn.close {
                call(&conn.core, shard_of(&key, n), move |c: &Core| {
                    let mut sh = c.shard.borrow_mut();
                    zset::put_back(&mut sh, db, now_ms(), &key, &elements);
                    drop(sh);
                    serve_ready(c);
                })
                .await;
                return;
            }
            match reply {
                Reply::ZMpop => zset::write_zmpop_reply(w, &key, &elements),
                _ => {
                    let (score, member) = &elements[0];
                    w.array(3);
                    w.bulk(&key);
                    w.bulk(member);
                    zset::write_score(w, *score);
                }
            }
        }
        Served::Popped { key, end, elements } => {
            if conn.close {
                let s = shard_of(&key, n);
                call(&conn.core, s, move |c: &Core| {
                    let mut sh = c.shard.borrow_mut();
                    put_back(&mut sh, db, now_ms(), &key, end, elements);
                    drop(sh);
                    serve_ready(c);
                })
                .await;
                return;
            }
            match reply {
                Reply::Mpop => write_mpop_reply(w, &key, &elements),
                _ => {
                    w.array(2);
                    w.bulk(&key);
                    w.bulk(&elements[0]);
                }
            }
        }
        Served::Moved { element, pushed } => {
            if !pushed {
                let &Op::Move { from, to, .. } = op else {
                    unreachable!("only moves are served as moves")
                };
                let (src, dst) = (a[1].to_vec(), a[2].to_vec());
                let e = vec![element.clone()];
                let e2 = e.clone();
                let ok = call(&conn.core, shard_of(&dst, n), move |c: &Core| {
                    let r = push_elements(&mut c.shard.borrow_mut(), db, now_ms(), &dst, to, &e);
                    serve_ready(c);
                    r.is_some()
                })
                .await;
                if !ok {
                    call(&conn.core, shard_of(&src, n), move |c: &Core| {
                        let mut sh = c.shard.borrow_mut();
                        put_back(&mut sh, db, now_ms(), &src, from, e2);
                        drop(sh);
                        serve_ready(c);
                    })
                    .await;
                    return w.error(err::WRONGTYPE);
                }
            }
            if !matches!(reply, Reply::Element) {
                unreachable!("a move answers with its element");
            }
            w.bulk(&element);
        }
        Served::Error(e) => w.error(e),
        Served::Unblocked { error: true } => {
            w.error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
        }
        Served::Unblocked { error: false } => w.null_array(),
    }
}

/// CLIENT UNBLOCK on this core: answers the client `id`'s parked command (as a timeout or
/// with the UNBLOCKED error) if it is parked here; true if it was.
pub fn unblock_here(core: &Core, id: u64, error: bool) -> bool {
    let Some(h) = core.clients.borrow().get(&id).cloned() else {
        return false;
    };
    let cell = h.blocked.borrow().clone();
    match cell {
        Some(cell) if cell.claim() => cell.deliver(Served::Unblocked { error }).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_redis_reads_them() {
        assert_eq!(parse_timeout(b"0"), Ok(None));
        assert_eq!(parse_timeout(b"-0.0001"), Ok(None));
        assert_eq!(parse_timeout(b"0.0001"), Ok(Some(Duration::from_millis(1))));
        assert_eq!(parse_timeout(b"1.5"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(parse_timeout(b"-1"), Err("ERR timeout is negative"));
        assert_eq!(parse_timeout(b"inf"), Err("ERR timeout is negative"));
        assert_eq!(parse_timeout(b"1e400"), Err("ERR timeout is negative"));
        for bad in [&b"nan"[..], b" 1", b"", b"x", b"1s"] {
            assert_eq!(
                parse_timeout(bad),
                Err("ERR timeout is not a float or out of range")
            );
        }
    }

    #[test]
    fn a_cell_is_claimed_once_and_delivers_once() {
        let (cell, mut rx) = WaitCell::new();
        assert!(cell.claim());
        assert!(!cell.claim());
        assert!(cell.deliver(Served::Error("x")).is_ok());
        assert!(matches!(rx.try_recv(), Ok(Some(Served::Error("x")))));
        assert!(cell.deliver(Served::Error("y")).is_err());
        let (cell, rx) = WaitCell::new();
        drop(rx);
        assert!(cell.claim());
        assert!(matches!(
            cell.deliver(Served::Moved {
                element: vec![1],
                pushed: false
            }),
            Err(Served::Moved { .. })
        ));
    }
}
