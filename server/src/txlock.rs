//! The cross-shard scheduler: key locks per shard, so that work spanning shards (a
//! transaction, a multi-key command whose keys live on several shards) runs as if alone.
//!
//! Design. Each core keeps a lock table for its shard's keys ([`Locks`]). Work that spans
//! shards is a transaction with a unique id: it locks its keys on every shard it touches,
//! in ascending shard order (so two transactions can never wait for each other in a
//! cycle), runs its steps, then releases everywhere. A key lock is exclusive. Locking whole
//! shards (`KeySet::All`) covers work whose keys are not known in advance (FLUSHALL, KEYS,
//! SWAPDB, SORT's patterns inside a transaction, …).
//!
//! Everything else that touches a shard checks its table before it runs: a pipeline's
//! batch from another core (command by command), a command on the connection's own core, a
//! blocking command's pop, a one-shard EXEC. With no lock held and no one waiting the check
//! is two length tests — single-shard work pays nothing else. Work that finds one of its
//! keys locked by another transaction, or wanted by an earlier waiter (first come, first
//! served: a stream of single-key commands cannot starve a transaction), waits in the
//! table's queue: a batch as the continuation of its remaining commands, a connection's
//! own command as a wake-up. A transaction's own commands pass its locks.
//!
//! Compared with VLL (Ren, Thomson, Abadi; DragonflyDB's scheduler), which takes a global
//! order and enqueues on every shard in one parallel hop, locking in shard order costs one
//! hop per shard when uncontended (percore first tries every shard in parallel and keeps
//! the locks only if all were free) but needs no global sequencer and no out-of-order
//! checks, and the fast path for single-shard work is the same: nothing to do while no
//! transaction holds a key of the shard.
//!
//! Bounds: a lock table holds the keys of the transactions in flight (each bounded by its
//! command; a connection has at most one transaction in flight), and its queue at most a
//! few entries per connection: a connection waits for one thing at a time (its batch to
//! this shard, its own command, or its lock request), so `maxclients` bounds the queue.

use crate::core::{Batch, BatchReply, Core, Job};
use crate::router::shard_of;
use futures_channel::oneshot;
use percore_proto::{Args, Cmd, CommandSpec, Flags, Route};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A transaction's id, unique in the process.
pub type TxId = u64;

/// Keys on one shard: each as its database byte followed by the key.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySet {
    Keys(Vec<Box<[u8]>>),
    /// The whole shard.
    All,
}

/// A key in `db`, as a lock table names it.
pub fn lock_key(db: usize, key: &[u8]) -> Box<[u8]> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(db as u8);
    k.extend_from_slice(key);
    k.into_boxed_slice()
}

enum Wake {
    /// Work to run once admitted (a batch's remaining commands, a job).
    Run(Job),
    /// A transaction's lock request: granted (locks taken) when admitted.
    Grant(oneshot::Sender<()>),
    /// A connection waiting to run a command on its own core: told to look again.
    Notify(oneshot::Sender<()>),
}

struct Waiter {
    tx: Option<TxId>,
    keys: KeySet,
    wake: Wake,
}

/// One shard's locks and the work waiting on them.
#[derive(Default)]
pub struct Locks {
    held: HashMap<Box<[u8]>, TxId>,
    all: Option<TxId>,
    waiting: VecDeque<Waiter>,
}

impl Locks {
    /// Nothing held, nobody waiting: every check passes.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.held.is_empty() && self.all.is_none() && self.waiting.is_empty()
    }

    /// Whether work of `tx` (None: not a transaction) on `keys` may run now.
    pub fn admits(&self, keys: &KeySet, tx: Option<TxId>) -> bool {
        if self.all.is_some_and(|h| Some(h) != tx) {
            return false;
        }
        if tx.is_some() && self.all == tx {
            return true;
        }
        match keys {
            KeySet::All => self.held.values().all(|&h| Some(h) == tx) && self.waiting.is_empty(),
            KeySet::Keys(ks) => ks.iter().all(|k| match self.held.get(k) {
                Some(&h) => Some(h) == tx,
                None => !self.waiting.iter().any(|w| wants(&w.keys, k)),
            }),
        }
    }

    /// Whether another transaction holds one of `keys` (work already admitted past the
    /// waiters checks only this).
    pub fn held_by_others(&self, keys: &KeySet, tx: Option<TxId>) -> bool {
        if self.all.is_some_and(|h| Some(h) != tx) {
            return true;
        }
        match keys {
            KeySet::All => self.held.values().any(|&h| Some(h) != tx),
            KeySet::Keys(ks) => ks
                .iter()
                .any(|k| self.held.get(k).is_some_and(|&h| Some(h) != tx)),
        }
    }

    fn take(&mut self, tx: TxId, keys: KeySet) {
        match keys {
            KeySet::All => self.all = Some(tx),
            KeySet::Keys(ks) => {
                for k in ks {
                    self.held.insert(k, tx);
                }
            }
        }
    }

    /// Takes the locks if they are free now; never waits.
    pub fn try_acquire(&mut self, tx: TxId, keys: &KeySet) -> bool {
        if !self.admits(keys, Some(tx)) {
            return false;
        }
        self.take(tx, keys.clone());
        true
    }

    /// Takes the locks, now (None) or, queued, when the receiver fires.
    pub fn acquire(&mut self, tx: TxId, keys: KeySet) -> Option<oneshot::Receiver<()>> {
        if self.admits(&keys, Some(tx)) {
            self.take(tx, keys);
            return None;
        }
        let (s, r) = oneshot::channel();
        self.waiting.push_back(Waiter {
            tx: Some(tx),
            keys,
            wake: Wake::Grant(s),
        });
        Some(r)
    }

    /// Queues `job` to run once `keys` are free for `tx`.
    pub fn defer(&mut self, tx: Option<TxId>, keys: KeySet, job: Job) {
        self.waiting.push_back(Waiter {
            tx,
            keys,
            wake: Wake::Run(job),
        });
    }

    /// A receiver that fires when a look at `keys` may find them free.
    pub fn notify(&mut self, tx: Option<TxId>, keys: KeySet) -> oneshot::Receiver<()> {
        let (s, r) = oneshot::channel();
        self.waiting.push_back(Waiter {
            tx,
            keys,
            wake: Wake::Notify(s),
        });
        r
    }

    /// Drops `tx`'s locks; returns the work that may run now (run it with [`run_jobs`]).
    #[must_use]
    pub fn release(&mut self, tx: TxId) -> Vec<Job> {
        self.held.retain(|_, h| *h != tx);
        if self.all == Some(tx) {
            self.all = None;
        }
        self.scan()
    }

    /// Admits waiters in arrival order: each runs (or gets its locks) when its keys are free
    /// and no earlier waiter that is still waiting wants one of them. Work admitted to run
    /// keeps its keys from later lock requests until it has run (the next scan).
    fn scan(&mut self) -> Vec<Job> {
        let mut run = Vec::new();
        let mut blocked: HashSet<Box<[u8]>> = HashSet::new();
        let mut blocked_all = false;
        let mut running: HashSet<Box<[u8]>> = HashSet::new();
        let mut running_all = false;
        let mut i = 0;
        while i < self.waiting.len() {
            let w = &self.waiting[i];
            let clear = |set: &HashSet<Box<[u8]>>, all: bool| match &w.keys {
                _ if all => false,
                KeySet::All => set.is_empty(),
                KeySet::Keys(ks) => ks.iter().all(|k| !set.contains(k)),
            };
            let held_ok = self.all.is_none_or(|h| Some(h) == w.tx)
                && match &w.keys {
                    KeySet::All => self.held.values().all(|&h| Some(h) == w.tx),
                    KeySet::Keys(ks) => ks
                        .iter()
                        .all(|k| self.held.get(k).is_none_or(|&h| Some(h) == w.tx)),
                };
            let is_grant = matches!(w.wake, Wake::Grant(_));
            let free = held_ok
                && clear(&blocked, blocked_all)
                && (!is_grant || clear(&running, running_all));
            if !free {
                match &w.keys {
                    KeySet::All => blocked_all = true,
                    KeySet::Keys(ks) => blocked.extend(ks.iter().cloned()),
                }
                i += 1;
                continue;
            }
            let w = self.waiting.remove(i).expect("index within the queue");
            match w.wake {
                Wake::Run(job) => {
                    match &w.keys {
                        KeySet::All => running_all = true,
                        KeySet::Keys(ks) => running.extend(ks.iter().cloned()),
                    }
                    run.push(job);
                }
                Wake::Notify(s) => {
                    let _ = s.send(());
                }
                Wake::Grant(s) => {
                    let tx = w.tx.expect("a lock request belongs to a transaction");
                    if s.send(()).is_ok() {
                        self.take(tx, w.keys);
                    }
                }
            }
        }
        run
    }
}

fn wants(keys: &KeySet, k: &[u8]) -> bool {
    match keys {
        KeySet::All => true,
        KeySet::Keys(ks) => ks.iter().any(|x| &**x == k),
    }
}

/// A new transaction id.
pub fn new_tx() -> TxId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The argument indices of the keys `spec` touches in `args`; None when they cannot be
/// known from its positions (keys read through patterns, a whole keyspace, an invalid
/// count): such work locks, or waits for, whole shards.
pub fn key_args(spec: &CommandSpec, args: &Args) -> Option<Vec<usize>> {
    if matches!(
        spec.cmd,
        Cmd::Eval | Cmd::EvalSha | Cmd::EvalRo | Cmd::EvalShaRo | Cmd::FCall | Cmd::FCallRo
    ) {
        // A script's declared keys; the keys it does not declare are locked as it calls.
        return Some(
            spec.keynum_key_indices(args)
                .map_or(Vec::new(), |r| r.collect()),
        );
    }
    if let Some(keys) = spec.migrate_key_indices(args) {
        // MIGRATE runs on the connection's core, but its keys are keys.
        return Some(keys.collect());
    }
    match spec.route {
        // SPUBLISH's channel is a key only for cluster routing.
        Route::Connection | Route::Publish => return Some(Vec::new()),
        Route::AllShards(_) => return None,
        _ => {}
    }
    if matches!(spec.cmd, Cmd::SwapDb | Cmd::Scan | Cmd::RandomKey) {
        return None;
    }
    if spec.keynum_index().is_some() {
        let r = spec.keynum_key_indices(args)?;
        // ZUNIONSTORE and its kin name their destination before the count.
        let dest = (spec.keynum_index() == Some(2)
            && spec.flags.has(Flags::WRITE)
            && !spec.flags.has(Flags::BLOCKING))
        .then_some(1);
        return Some(dest.into_iter().chain(r).collect());
    }
    if matches!(spec.cmd, Cmd::Sort | Cmd::SortRo) {
        return None;
    }
    let keys = spec.key_indices(args.len());
    Some(keys.chain(spec.store_key_index(args)).collect())
}

/// The lock-table keys of a command on one shard (all its keys: a batch holds only the
/// commands, or the parts of commands, of its shard).
pub fn keys_of(spec: &CommandSpec, args: &Args, db: usize) -> KeySet {
    match key_args(spec, args) {
        Some(idx) => KeySet::Keys(idx.into_iter().map(|i| lock_key(db, &args[i])).collect()),
        None => KeySet::All,
    }
}

/// What a transaction locks: per shard, its keys or the whole shard.
#[derive(Default, Debug)]
pub struct Plan {
    per_shard: Vec<(usize, KeySet)>,
}

impl Plan {
    /// Adds the keys of one command run in `db` (on `n` shards).
    pub fn add(&mut self, spec: &CommandSpec, args: &Args, db: usize, n: usize) {
        match key_args(spec, args) {
            Some(idx) => {
                for i in idx {
                    self.add_key(shard_of(&args[i], n), lock_key(db, &args[i]));
                }
            }
            None => {
                for s in 0..n {
                    self.add_all(s);
                }
            }
        }
    }

    pub fn add_key(&mut self, shard: usize, k: Box<[u8]>) {
        match self.per_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, KeySet::All)) => {}
            Some((_, KeySet::Keys(ks))) => {
                if !ks.contains(&k) {
                    ks.push(k);
                }
            }
            None => self.per_shard.push((shard, KeySet::Keys(vec![k]))),
        }
    }

    pub fn add_all(&mut self, shard: usize) {
        match self.per_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, ks)) => *ks = KeySet::All,
            None => self.per_shard.push((shard, KeySet::All)),
        }
    }

    /// The shards it touches.
    pub fn shards(&self) -> Vec<usize> {
        self.per_shard.iter().map(|(s, _)| *s).collect()
    }

    /// What it locks on `shard`.
    pub fn keys_on(&self, shard: usize) -> KeySet {
        self.per_shard
            .iter()
            .find(|(s, _)| *s == shard)
            .map_or(KeySet::Keys(Vec::new()), |(_, k)| k.clone())
    }
}

/// Runs `f` on each of `targets` concurrently (this core's own inline); results in order.
async fn call_each<R, F>(core: &Rc<Core>, targets: Vec<(usize, F)>) -> Vec<R>
where
    R: Send + 'static,
    F: FnOnce(&Core) -> R + Send + 'static,
{
    let mut pending = Vec::with_capacity(targets.len());
    for (target, f) in targets {
        if target == core.id {
            pending.push(Err(f(core)));
            continue;
        }
        let (s, r) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = s.send(f(c));
        });
        if core.mailbox.send(target, job).await.is_err() {
            panic!("core {target} is gone: a core exits only when the whole server does");
        }
        pending.push(Ok(r));
    }
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(match p {
            Err(r) => r,
            Ok(rx) => rx
                .await
                .unwrap_or_else(|_| panic!("a core dropped a job without running it")),
        });
    }
    out
}

/// Takes `plan`'s locks for `tx`. First on every shard at once, keeping them only if all
/// were free (one round trip when uncontended); else they are given back and taken in
/// ascending shard order, waiting where held, so that no two transactions wait for each
/// other.
pub async fn lock(core: &Rc<Core>, tx: TxId, mut plan: Plan) {
    plan.per_shard.sort_by_key(|(s, _)| *s);
    let tries = plan
        .per_shard
        .iter()
        .map(|(s, keys)| {
            let keys = keys.clone();
            (*s, move |c: &Core| {
                c.locks.borrow_mut().try_acquire(tx, &keys)
            })
        })
        .collect();
    let got: Vec<bool> = call_each(core, tries).await;
    if got.iter().all(|&g| g) {
        return;
    }
    let back = plan
        .per_shard
        .iter()
        .zip(&got)
        .filter(|(_, &g)| g)
        .map(|((s, _), _)| (*s, move |c: &Core| release(c, tx)))
        .collect();
    call_each(core, back).await;
    for (s, keys) in plan.per_shard {
        let wait = crate::core::call(core, s, move |c: &Core| {
            c.locks.borrow_mut().acquire(tx, keys)
        })
        .await;
        if let Some(granted) = wait {
            let _ = granted.await;
        }
    }
}

/// Releases `tx`'s locks on `shards`.
pub async fn unlock(core: &Rc<Core>, tx: TxId, shards: Vec<usize>) {
    let jobs = shards
        .into_iter()
        .map(|s| (s, move |c: &Core| release(c, tx)))
        .collect();
    call_each(core, jobs).await;
}

/// Runs `f` on `target` once `keys` are free there for `tx` (a blocking command's pop, a
/// one-shard EXEC, a whole-keyspace command's part).
pub async fn call_checked<R, F>(
    core: &Rc<Core>,
    target: usize,
    tx: Option<TxId>,
    keys: KeySet,
    f: F,
) -> R
where
    R: Send + 'static,
    F: FnOnce(&Core) -> R + Send + 'static,
{
    let (s, r) = oneshot::channel();
    let job: Job = Box::new(move |c| {
        let _ = s.send(f(c));
    });
    let checked: Job = Box::new(move |c| run_or_defer(c, tx, keys, job));
    if target == core.id {
        checked(core);
        crate::blocking::serve_ready(core);
    } else if core.mailbox.send(target, checked).await.is_err() {
        panic!("core {target} is gone: a core exits only when the whole server does");
    }
    r.await
        .unwrap_or_else(|_| panic!("core {target} dropped a job without running it"))
}

/// Runs a pipeline's batch on this core from command `from` on; a command whose keys are
/// locked waits, with the rest of the batch, until they are free. The batch and its
/// replies go back through `done`.
pub fn run_batch(
    c: &Core,
    batch: Batch,
    mut reply: BatchReply,
    from: usize,
    done: oneshot::Sender<(Batch, BatchReply)>,
) {
    // A batch arriving checks its commands against the waiters too; a continuation was
    // admitted past them.
    match c.execute_batch_from(&batch, &mut reply, from, true, from > 0) {
        None => {
            if let (true, Some(tx)) = (batch.release, batch.tx) {
                release(c, tx);
            }
            let _ = done.send((batch, reply));
        }
        Some(at) => {
            let cmd = &batch.cmds[at];
            let spans = &batch.spans[cmd.spans.0 as usize..cmd.spans.1 as usize];
            let keys = keys_of(cmd.spec, &Args::new(&batch.buf, spans), cmd.db as usize);
            let tx = batch.tx;
            c.locks.borrow_mut().defer(
                tx,
                keys,
                Box::new(move |c: &Core| run_batch(c, batch, reply, at, done)),
            );
        }
    }
}

/// Runs admitted work, then whatever its running admitted in turn.
pub fn run_jobs(core: &Core, mut jobs: Vec<Job>) {
    while !jobs.is_empty() {
        for job in jobs {
            job(core);
        }
        jobs = core.locks.borrow_mut().scan();
    }
}

/// Runs `job` now if `keys` are free for `tx`, else when they are.
pub fn run_or_defer(core: &Core, tx: Option<TxId>, keys: KeySet, job: Job) {
    let mut l = core.locks.borrow_mut();
    if l.is_idle() || l.admits(&keys, tx) {
        drop(l);
        job(core)
    } else {
        l.defer(tx, keys, job)
    }
}

/// Releases `tx`'s locks on this core and runs what was waiting on them.
pub fn release(core: &Core, tx: TxId) {
    let jobs = core.locks.borrow_mut().release(tx);
    run_jobs(core, jobs);
    crate::blocking::serve_ready(core);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> KeySet {
        KeySet::Keys(ks.iter().map(|k| lock_key(0, k.as_bytes())).collect())
    }

    #[test]
    fn locks_admit_their_holder_and_queue_the_rest_in_order() {
        let mut l = Locks::default();
        assert!(l.is_idle());
        assert!(l.try_acquire(1, &keys(&["a", "b"])));
        assert!(!l.is_idle());
        assert!(l.admits(&keys(&["a"]), Some(1)));
        assert!(!l.admits(&keys(&["a"]), None));
        assert!(!l.admits(&keys(&["b"]), Some(2)));
        assert!(l.admits(&keys(&["c"]), None));
        assert!(!l.try_acquire(2, &keys(&["b", "c"])));
        // Transaction 2 waits for "b"; a later command on "c" waits behind it (first come,
        // first served), one on "d" does not.
        let mut granted = l.acquire(2, keys(&["b", "c"])).expect("queued");
        assert!(!l.admits(&keys(&["c"]), None));
        assert!(l.admits(&keys(&["d"]), None));
        assert!(!l.admits(&KeySet::All, None));
        let ran = l.release(1);
        assert!(ran.is_empty());
        assert_eq!(granted.try_recv(), Ok(Some(())));
        assert!(l.admits(&keys(&["b", "c"]), Some(2)));
        assert!(!l.admits(&keys(&["a", "b"]), None));
        assert!(l.admits(&keys(&["a"]), None));
        let _ = l.release(2);
        assert!(l.is_idle());
    }

    #[test]
    fn whole_shard_locks_exclude_everything_else() {
        let mut l = Locks::default();
        assert!(l.try_acquire(7, &KeySet::All));
        assert!(l.admits(&keys(&["x"]), Some(7)));
        assert!(!l.admits(&keys(&["x"]), None));
        assert!(!l.try_acquire(8, &keys(&["y"])));
        let mut r = l.notify(None, keys(&["y"]));
        let _ = l.release(7);
        assert_eq!(r.try_recv(), Ok(Some(())));
        assert!(l.is_idle());
    }
}
