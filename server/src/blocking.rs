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
//!   waiter before anyone else can see it, as in Redis. A transaction's or a script's
//!   pushes are served when it ends, as Redis serves them after EXEC or the script (a
//!   transaction's keys are locked until then; a script without locks defers serving:
//!   `scripting::serving_deferred`).
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
//! Keys on one shard: one hop (try the keys in order, else queue on all of them).
//!
//! Keys on several shards, or a BLMOVE whose destination lives on another shard: the first
//! look runs under the scheduler's locks (`txlock`) on every key and the destination, so
//! the keys are tried in order at one instant (the first key holding a list serves, a key
//! of another type answers WRONGTYPE), the waiter is queued on every shard before anyone
//! can push, and a move found possible at once pops and pushes while both keys are locked.
//!
//! A BLMOVE between shards served later: the source's shard does not pop. It locks the
//! source key for a new transaction and hands that to the connection
//! ([`Served::Reserved`]); nobody else can take the element meanwhile, and the key's next
//! waiters are served once the lock goes. The connection then locks the destination: at
//! once if it is free, else (taking it while holding the source could wait in a cycle with
//! a transaction that holds the destination and waits for the source) it gives the source
//! back and takes both in shard order, and finds the source emptied only if another client
//! won it in that gap; then it queues again, first in line. With both keys locked it
//! checks the destination's type (WRONGTYPE without popping), pops and pushes. No client
//! sees the element in neither list or in both.

use crate::client::{Client, Peer};
use crate::core::{call, now_ms, viewed_by, Core};
use crate::router::shard_of;
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
    /// A BLMOVE between shards: its source key holds a list and is locked for `tx` on the
    /// source's shard; the connection completes the move (see the module header).
    Reserved {
        tx: crate::txlock::TxId,
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
    /// Keys promised to a reserved move that gave its lock back for a moment (see
    /// [`complete_move`]), with how many such moves: their waiters are not served and a
    /// blocking command's first look passes them over meanwhile, so no later waiter takes
    /// the element first.
    held: HashMap<(usize, Vec<u8>), usize>,
}

impl Registry {
    fn is_held(&self, db: usize, key: &[u8]) -> bool {
        !self.held.is_empty() && self.held.contains_key(&(db, key.to_vec()))
    }

    fn hold(&mut self, db: usize, key: &[u8]) {
        *self.held.entry((db, key.to_vec())).or_default() += 1;
    }

    fn unhold(&mut self, db: usize, key: &[u8]) {
        let id = (db, key.to_vec());
        if let Some(n) = self.held.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&id);
            }
        }
    }
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
    /// `Queue`, first in line on every key (a reserved move that found its source emptied).
    Requeue,
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
/// LMOVE); later, the push itself finds out. `held`: the caller holds the scheduler's
/// locks on the keys and a move's destination, so a move between shards may pop here.
#[allow(clippy::too_many_arguments)]
pub fn offer(
    core: &Core,
    db: usize,
    keys: &[Vec<u8>],
    op: &Op,
    cell: &Arc<WaitCell>,
    mode: Mode,
    dst_bad: bool,
    held: bool,
) -> Offered {
    let now = now_ms();
    let mut sh = core.shard.borrow_mut();
    if !matches!(mode, Mode::Queue | Mode::Requeue) {
        for k in keys {
            if core.blocking.borrow().is_held(db, k) {
                continue;
            }
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
                    // (Never a reservation: the first look holds its keys' locks.)
                    serve_one(core, &mut sh, db, k, now, cell, op, held);
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
            if kind_for(&mut sh, db, now, k, op) == Kind::List
                && !core.blocking.borrow().is_held(db, k)
            {
                serve_one(core, &mut sh, db, k, now, cell, op, held);
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
        let q = reg.queues.entry((db, k.clone())).or_default();
        let w = Waiter {
            cell: cell.clone(),
            op: op.clone(),
        };
        if mode == Mode::Requeue {
            q.push_front(w);
        } else {
            q.push_back(w);
        }
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
    // A script running here without locks: its keys are served when it ends.
    if sh.ready.is_empty() || crate::scripting::serving_deferred() {
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
        if reg.is_held(db, &key) {
            later.push((db, key));
            continue;
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
                    if serve_one(core, sh, db, &id.1, now, &w.cell, &w.op, false) {
                        // Reserved for a move between shards: the key's next waiters are
                        // served once that move has released it.
                        later.push(id.clone());
                        break;
                    }
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

/// Serves `cell` from the list at `key` if it can claim it. `held`: see [`offer`]. True
/// when it reserved `key` for a move between shards ([`Served::Reserved`]) rather than pop.
#[allow(clippy::too_many_arguments)]
fn serve_one(
    core: &Core,
    sh: &mut Shard,
    db: usize,
    key: &[u8],
    now: u64,
    cell: &Arc<WaitCell>,
    op: &Op,
    held: bool,
) -> bool {
    if let Op::Move { dst, dst_here, .. } = op {
        if *dst_here && key != &dst[..] && kind(sh, db, now, dst) == Kind::Other {
            if cell.claim() {
                let _ = cell.deliver(Served::Error(err::WRONGTYPE));
            }
            return false;
        }
    }
    if !cell.claim() {
        return false;
    }
    if let (
        Op::Move {
            dst_here: false, ..
        },
        false,
    ) = (op, held)
    {
        // A move between shards, served from the queue: reserve the source for the
        // connection rather than pop (see the module header). The key is free: the queue
        // is served only while no transaction holds it or waits for it.
        let tx = crate::txlock::new_tx();
        let keys = crate::txlock::KeySet::Keys(vec![crate::txlock::lock_key(db, key)]);
        if core.locks.borrow_mut().try_acquire(tx, &keys) {
            if cell.deliver(Served::Reserved { tx }).is_err() {
                // The client left: release the key from a job of this core's own, since
                // releasing serves waiters and this shard is borrowed now.
                core.mailbox.send_now(
                    core.id,
                    Box::new(move |c: &Core| crate::txlock::release(c, tx)),
                );
            }
            // The key stays locked until that release either way.
            return true;
        }
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
            let n = elements.len();
            let s = Served::ZPopped {
                key: key.to_vec(),
                elements,
            };
            match cell.deliver(s) {
                Err(Served::ZPopped { elements, .. }) => {
                    zset::put_back(sh, db, now, key, &elements);
                    sh.events.truncate(mark);
                }
                _ => feed_pop(
                    sh,
                    db,
                    if *max { b"ZPOPMAX" } else { b"ZPOPMIN" },
                    key,
                    n,
                    *count,
                ),
            }
        }
        Op::Pop { end, count } => {
            let Popped::Elements(elements) = pop_n(sh, db, now, key, *end, *count) else {
                unreachable!("the caller saw a list at the key")
            };
            let n = elements.len();
            let s = Served::Popped {
                key: key.to_vec(),
                end: *end,
                elements,
            };
            match cell.deliver(s) {
                Err(Served::Popped { elements, end, .. }) => {
                    put_back(sh, db, now, key, end, elements);
                    sh.events.truncate(mark);
                }
                _ => {
                    let name: &[u8] = if *end == End::Left { b"LPOP" } else { b"RPOP" };
                    feed_pop(sh, db, name, key, n, *count);
                }
            }
        }
        Op::Move {
            from,
            to,
            dst,
            dst_here,
            ..
        } => {
            let dst_key = dst;
            let dst = dst_here.then_some((&dst[..], *to));
            let element = move_one(sh, db, now, key, *from, dst);
            if *dst_here && sh.feed.on {
                let parts: [&[u8]; 5] = [b"LMOVE", key, dst_key, end_word(*from), end_word(*to)];
                sh.feed.push(db, &parts);
                sh.feed.close();
            }
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
    false
}

/// A served pop in the replication stream: `LPOP key` (`… count` when the command gave one,
/// as BLMPOP), as Redis propagates a served blocking pop.
fn feed_pop(sh: &mut Shard, db: usize, name: &[u8], key: &[u8], n: usize, count: usize) {
    if !sh.feed.on || n == 0 {
        return;
    }
    let n = n.to_string();
    match count {
        1 => sh.feed.push(db, &[name, key]),
        _ => sh.feed.push(db, &[name, key, n.as_bytes()]),
    }
    sh.feed.close();
}

/// LMOVE's word for an end.
fn end_word(e: End) -> &'static [u8] {
    match e {
        End::Left => b"LEFT",
        End::Right => b"RIGHT",
    }
}

/// A move between two lists in the replication stream (`LMOVE`), numbered on this core
/// while the move's locks still hold.
fn feed_move(conn: &Client, db: usize, src: &[u8], dst: &[u8], from: End, to: End) {
    // Inside a transaction (EXEC, a script), the move is part of its unit.
    let mut ops = conn.repl_capture().map(|o| o.borrow_mut());
    crate::repl::propagate_here(
        &conn.core,
        ops.as_deref_mut(),
        db,
        &[b"LMOVE", src, dst, end_word(from), end_word(to)],
    );
}

/// Returns popped elements to the end they came from, in their order.
fn put_back(sh: &mut Shard, db: usize, now: u64, key: &[u8], end: End, mut elements: Vec<Vec<u8>>) {
    elements.reverse();
    push_elements(sh, db, now, key, end, &elements);
}

/// Returns the elements of a served pop whose client left before its reply: the pop is in
/// the replication stream already (`feed_pop`), so the return goes there too, as the push
/// that undoes it (`LPUSH`/`RPUSH` of the elements in reverse), or replicas would lose them.
fn return_popped(
    sh: &mut Shard,
    db: usize,
    now: u64,
    key: &[u8],
    end: End,
    mut elements: Vec<Vec<u8>>,
) {
    elements.reverse();
    if push_elements(sh, db, now, key, end, &elements).is_none() || !sh.feed.on {
        return;
    }
    let name: &[u8] = if end == End::Left { b"LPUSH" } else { b"RPUSH" };
    let mut parts: Vec<&[u8]> = vec![name, key];
    parts.extend(elements.iter().map(Vec::as_slice));
    sh.feed.push(db, &parts);
    sh.feed.close();
}

/// [`return_popped`] for a sorted set's pop: each member absent now goes back with its
/// score, and the stream gets `ZADD key NX score member …`, which does the same there.
fn return_zpopped(sh: &mut Shard, db: usize, now: u64, key: &[u8], elements: &[(f64, Vec<u8>)]) {
    if elements.is_empty() || !zset::put_back(sh, db, now, key, elements) || !sh.feed.on {
        return;
    }
    let scores: Vec<Vec<u8>> = elements.iter().map(|(s, _)| zset::fmt_score(*s)).collect();
    let mut parts: Vec<&[u8]> = vec![b"ZADD", key, b"NX"];
    for ((_, m), s) in elements.iter().zip(&scores) {
        parts.push(s);
        parts.push(m);
    }
    sh.feed.push(db, &parts);
    sh.feed.close();
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
    conn: &mut Client,
    spec: &'static CommandSpec,
    a: Args<'_>,
    peer: &mut dyn Peer,
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
    // Inside EXEC a blocking command only tries (Redis's CLIENT_DENY_BLOCKING), and so
    // does one the primary sent: a parked master client would stop replication (Redis
    // asserts it never happens).
    let once = conn.in_exec || conn.is_master;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let (mut cell, mut rx) = WaitCell::new();
    // The shards holding the keys, in the order their first key appears.
    let mut groups: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
    for k in &keys {
        let s = shard_of(k, n);
        match groups.iter_mut().find(|g| g.0 == s) {
            Some(g) => g.1.push(k.clone()),
            None => groups.push((s, vec![k.clone()])),
        }
    }
    let cross_move = matches!(
        op,
        Op::Move {
            dst_here: false,
            ..
        }
    );
    // Several shards, or a move between two: the first look runs under locks on every key
    // and the destination (see the module header). A transaction (EXEC, a script) already
    // holds its keys.
    let own = if conn.tx.is_none() && (groups.len() > 1 || cross_move) {
        let tx = crate::txlock::new_tx();
        let mut plan = crate::txlock::Plan::default();
        for k in keys.iter().chain(match &op {
            Op::Move { dst, .. } => Some(dst),
            _ => None,
        }) {
            plan.add_key(shard_of(k, n), crate::txlock::lock_key(db, k));
        }
        let shards = plan.shards();
        crate::txlock::lock(&conn.core, tx, plan).await;
        Some((tx, shards))
    } else {
        None
    };
    let tx = own.as_ref().map(|o| o.0).or(conn.tx);
    let held = tx.is_some();
    let mut queued_on = Vec::new();
    let mut dst_bad = false;
    if let Op::Move {
        dst,
        dst_here: false,
        ..
    } = &op
    {
        let dst = dst.clone();
        let k = conn
            .hop(shard_of(&dst, n), move |c: &Core| {
                kind(&mut c.shard.borrow_mut(), db, now_ms(), &dst)
            })
            .await;
        dst_bad = k == Kind::Other;
    }
    if groups.len() == 1 {
        let (s, ks) = groups[0].clone();
        let (op2, cell2) = (op.clone(), cell.clone());
        let mode = if once { Mode::Try } else { Mode::TryThenQueue };
        let r = call_checked(
            &conn.core,
            s,
            tx,
            locked(db, &ks),
            viewed_by(conn.is_master, move |c: &Core| {
                offer(c, db, &ks, &op2, &cell2, mode, dst_bad, held)
            }),
        )
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
                tx,
                locked(db, &ks),
                move |c: &Core| offer(c, db, &ks, &op2, &cell2, Mode::Try, dst_bad, held),
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
                let r = call_checked(
                    &conn.core,
                    *s,
                    tx,
                    locked(db, &ks),
                    viewed_by(conn.is_master, move |c: &Core| {
                        offer(c, db, &ks, &op2, &cell2, Mode::Queue, false, held)
                    }),
                )
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
    let mut first = rx.try_recv().ok().flatten();
    if let Some(served) = first.take() {
        if !matches!(served, Served::Reserved { .. }) {
            // Answered at once: a move between shards completes under the locks still held.
            withdraw_from(conn, db, &groups, &queued_on, &cell).await;
            finish(conn, db, &a, &op, served, reply, w).await;
            if let Some((tx, shards)) = own {
                crate::txlock::unlock(&conn.core, tx, shards).await;
            }
            return parked;
        }
        // (A reservation is completed below, once this look's locks are given back.)
        first = Some(served);
    }
    if let Some((tx, shards)) = own {
        crate::txlock::unlock(&conn.core, tx, shards).await;
    }
    if once && first.is_none() {
        // What a timeout answers, except that Redis gives BLMOVE/BRPOPLPUSH a null bulk.
        if matches!(op, Op::Move { .. }) {
            w.null();
        } else {
            w.null_array();
        }
        return parked;
    }
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let t0 = std::time::Instant::now();
        let served = if first.is_some() {
            first.take()
        } else if left == Some(Duration::ZERO) {
            // The time ran out before the connection could park: its first look waited
            // that long for locks or a busy core, or a reserved move found its source
            // emptied. The waiter is still queued, so a shard may have claimed it since:
            // then its answer (popped elements, a reserved source key) is on the way and
            // must be taken, never dropped with `rx`.
            if cell.claim() {
                None
            } else {
                (&mut rx).await.ok()
            }
        } else {
            park(conn, &cell, &mut rx, left, peer).await
        };
        parked += t0.elapsed();
        withdraw_from(conn, db, &groups, &queued_on, &cell).await;
        queued_on.clear();
        let Some(served) = served else {
            // Timed out (the reply), or the client left (no reply).
            if !conn.close {
                w.null_array();
            }
            return parked;
        };
        let Served::Reserved { tx } = served else {
            finish(conn, db, &a, &op, served, reply, w).await;
            return parked;
        };
        let Op::Move { from, to, dst, .. } = &op else {
            unreachable!("only moves between shards are reserved")
        };
        match complete_move(conn, db, &a[1], dst, *from, *to, tx).await {
            Moved::Done(Ok(element)) => {
                w.bulk(&element);
                return parked;
            }
            Moved::Done(Err(e)) => {
                w.error(e);
                return parked;
            }
            Moved::Gone => return parked,
            Moved::Emptied => {
                // Another client won the source in the gap: wait again, first in line,
                // queued while both keys are still locked so no push is missed.
                (cell, rx) = WaitCell::new();
                let (s, ks) = groups[0].clone();
                let (op2, cell2) = (op.clone(), cell.clone());
                let r = call_checked(
                    &conn.core,
                    s,
                    Some(tx),
                    locked(db, &ks),
                    viewed_by(conn.is_master, move |c: &Core| {
                        offer(c, db, &ks, &op2, &cell2, Mode::Requeue, false, true)
                    }),
                )
                .await;
                let shards = vec![shard_of(&a[1], n), shard_of(dst, n)];
                crate::txlock::unlock(&conn.core, tx, shards).await;
                if r == Offered::Queued {
                    queued_on.push(0);
                }
            }
        }
    }
}

/// Removes the waiter `cell` from the queues of `groups` it was queued in.
async fn withdraw_from(
    conn: &Client,
    db: usize,
    groups: &[(usize, Vec<Vec<u8>>)],
    queued_on: &[usize],
    cell: &Arc<WaitCell>,
) {
    for &i in queued_on {
        let (s, ks) = groups[i].clone();
        let cell2 = cell.clone();
        call(&conn.core, s, move |c: &Core| withdraw(c, db, &ks, &cell2)).await;
    }
}

/// How a reserved move between shards ended.
enum Moved {
    /// The element moved, or the client's error (WRONGTYPE).
    Done(Result<Vec<u8>, &'static str>),
    /// The source was emptied by another client while its lock was given back.
    Emptied,
    /// The client left: nothing moved.
    Gone,
}

/// Completes a move between shards whose source `src` is locked for `tx` on its shard
/// ([`Served::Reserved`]): locks the destination, then checks its type, pops and pushes;
/// releases both keys unless it returns [`Moved::Emptied`] (the caller queues the waiter
/// again under them and releases).
async fn complete_move(
    conn: &Client,
    db: usize,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
    tx: crate::txlock::TxId,
) -> Moved {
    let core = &conn.core;
    let n = core.nshards();
    let (ss, ds) = (shard_of(src, n), shard_of(dst, n));
    let dst_lock = crate::txlock::KeySet::Keys(vec![crate::txlock::lock_key(db, dst)]);
    let got = call(core, ds, move |c: &Core| {
        c.locks.borrow_mut().try_acquire(tx, &dst_lock)
    })
    .await;
    if !got && ds > ss {
        // Waiting in ascending shard order, as every transaction does: no cycle.
        let mut plan = crate::txlock::Plan::default();
        plan.add_key(ds, crate::txlock::lock_key(db, dst));
        crate::txlock::lock(core, tx, plan).await;
    } else if !got {
        // Waiting for the destination while holding the source could close a cycle with a
        // transaction that holds the destination and waits for the source: give the
        // source back, still promised to this waiter (no other waiter is served from it
        // meanwhile), and take both in shard order.
        let s = src.to_vec();
        call(core, ss, move |c: &Core| {
            c.blocking.borrow_mut().hold(db, &s);
            crate::txlock::release(c, tx);
        })
        .await;
        let mut plan = crate::txlock::Plan::default();
        plan.add_key(ss, crate::txlock::lock_key(db, src));
        plan.add_key(ds, crate::txlock::lock_key(db, dst));
        crate::txlock::lock(core, tx, plan).await;
        let s = src.to_vec();
        call(core, ss, move |c: &Core| {
            c.blocking.borrow_mut().unhold(db, &s)
        })
        .await;
    }
    let shards = vec![ss, ds];
    let release = |core| crate::txlock::unlock(core, tx, shards.clone());
    if conn.close {
        release(core).await;
        return Moved::Gone;
    }
    let d = dst.to_vec();
    let dst_kind = conn
        .hop(ds, move |c: &Core| {
            kind(&mut c.shard.borrow_mut(), db, now_ms(), &d)
        })
        .await;
    let s = src.to_vec();
    let popped = conn
        .hop(ss, move |c: &Core| {
            let mut sh = c.shard.borrow_mut();
            let now = now_ms();
            let r = match kind(&mut sh, db, now, &s) {
                Kind::List if dst_kind == Kind::Other => Some(Err(err::WRONGTYPE)),
                Kind::List => match pop_n(&mut sh, db, now, &s, from, 1) {
                    Popped::Elements(mut e) if !e.is_empty() => Some(Ok(e.swap_remove(0))),
                    _ => None,
                },
                Kind::Other => Some(Err(err::WRONGTYPE)),
                Kind::Missing => None,
            };
            // The pop's events and invalidations go out when the job ends (`call`).
            r
        })
        .await;
    let element = match popped {
        None => return Moved::Emptied,
        Some(Err(e)) => {
            release(core).await;
            return Moved::Done(Err(e));
        }
        Some(Ok(e)) => e,
    };
    let (d, e) = (dst.to_vec(), vec![element.clone()]);
    conn.hop(ds, move |c: &Core| {
        push_elements(&mut c.shard.borrow_mut(), db, now_ms(), &d, to, &e);
    })
    .await;
    feed_move(conn, db, src, dst, from, to);
    release(core).await;
    Moved::Done(Ok(element))
}

/// Waits for the answer, the timeout, CLIENT UNBLOCK or the client's departure. None: timed
/// out, or the client left (`conn.close` set) before anything was served.
async fn park(
    conn: &mut Client,
    cell: &Arc<WaitCell>,
    rx: &mut oneshot::Receiver<Served>,
    timeout: Option<Duration>,
    peer: &mut dyn Peer,
) -> Option<Served> {
    // The client sees the replies of what it sent before this command now, not after.
    if peer.write_pending(conn).await.is_err() {
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
            peer.closed().await;
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
    conn: &mut Client,
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
                conn.hop(shard_of(&key, n), move |c: &Core| {
                    let mut sh = c.shard.borrow_mut();
                    return_zpopped(&mut sh, db, now_ms(), &key, &elements);
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
                conn.hop(s, move |c: &Core| {
                    let mut sh = c.shard.borrow_mut();
                    return_popped(&mut sh, db, now_ms(), &key, end, elements);
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
                let ok = conn
                    .hop(shard_of(&dst, n), move |c: &Core| {
                        push_elements(&mut c.shard.borrow_mut(), db, now_ms(), &dst, to, &e)
                            .is_some()
                    })
                    .await;
                if !ok {
                    conn.hop(shard_of(&src, n), move |c: &Core| {
                        let mut sh = c.shard.borrow_mut();
                        put_back(&mut sh, db, now_ms(), &src, from, e2);
                    })
                    .await;
                    return w.error(err::WRONGTYPE);
                }
                feed_move(conn, db, &a[1], &a[2], from, to);
            }
            if !matches!(reply, Reply::Element) {
                unreachable!("a move answers with its element");
            }
            w.bulk(&element);
        }
        Served::Error(e) => w.error(e),
        Served::Reserved { .. } => unreachable!("`run` completes reserved moves itself"),
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
    use percore_shard::repl::encode;
    use percore_shard::ShardConfig;

    /// The ops the shard's feed holds, each as its RESP encoding.
    fn fed_ops(sh: &mut Shard) -> Vec<Vec<u8>> {
        sh.feed
            .units
            .drain(..)
            .flat_map(|u| u.ops)
            .map(|o| o.cmd)
            .collect()
    }

    /// A served pop whose client left is undone in the replication stream too: the pop
    /// went there (`feed_pop`), so the return goes as the push that restores the list, and
    /// as `ZADD … NX` for a sorted set. (The return used to reach only this shard, so a
    /// replica lost the elements.)
    #[test]
    fn a_returned_pop_reaches_the_replication_stream() {
        let mut sh = Shard::new(7, ShardConfig::default());
        sh.feed.start(
            Arc::new(std::sync::atomic::AtomicU64::new(0)),
            Arc::default(),
        );
        let now = 1_700_000_000_000;
        let abc = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        push_elements(&mut sh, 0, now, b"l", End::Right, &abc);
        fed_ops(&mut sh);
        for (end, popped, push) in [
            (End::Left, [b"a", b"b"], &b"LPUSH"[..]),
            (End::Right, [b"c", b"b"], &b"RPUSH"[..]),
        ] {
            let Popped::Elements(got) = pop_n(&mut sh, 0, now, b"l", end, 2) else {
                panic!("a list")
            };
            assert_eq!(got, popped.map(|e| e.to_vec()));
            fed_ops(&mut sh);
            return_popped(&mut sh, 0, now, b"l", end, got);
            // LPUSH l b a (or RPUSH l b c) on the popped list gives it back as it was.
            let (x, y) = (popped[1], popped[0]);
            assert_eq!(fed_ops(&mut sh), vec![encode(&[push, b"l", x, y])]);
            let Popped::Elements(all) = pop_n(&mut sh, 0, now, b"l", End::Left, 3) else {
                panic!("a list")
            };
            assert_eq!(all, abc.to_vec());
            push_elements(&mut sh, 0, now, b"l", End::Right, &abc);
            fed_ops(&mut sh);
        }

        let elems = vec![(1.5, b"m1".to_vec()), (2.0, b"m2".to_vec())];
        return_zpopped(&mut sh, 0, now, b"z", &elems);
        assert_eq!(
            fed_ops(&mut sh),
            vec![encode(&[b"ZADD", b"z", b"NX", b"1.5", b"m1", b"2", b"m2"])]
        );
        // Without a replica nothing is built.
        sh.feed.on = false;
        return_popped(&mut sh, 0, now, b"l", End::Left, vec![b"x".to_vec()]);
        assert!(fed_ops(&mut sh).is_empty());
    }

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
