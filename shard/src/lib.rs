//! One shard's keyspace: databases 0–15, values, expiry, and execution of the commands whose
//! keys this shard owns.
//!
//! This crate is pure: no sockets, threads, runtime or clock. Time (`ExecCtx::now_ms`),
//! randomness and hash seeds are passed in, so every behaviour is reproducible in tests and
//! the same code runs in the server, the model test and the fuzzer.
//!
//! Invariants:
//! - An expired key is never visible: every access checks the deadline (lazy expiry) and the
//!   active cycle ([`Shard::expire_step`]) reclaims the rest in bounded steps.
//! - No call does work proportional to the table size except those Redis documents as O(N)
//!   (KEYS, FLUSHDB); growth and shrinking are incremental ([`dict`]).

pub mod debug;
pub mod dict;
pub mod evict;
pub mod glob;
pub mod lazyfree;
pub mod notify;
pub mod ops;
pub mod rdb;
pub mod repl;
pub mod snapshot;
pub mod tracking;
pub mod types;
mod value;
pub mod watch;

use dict::{Dict, EntryMut, EntryRef, Live};
use lazyfree::Graveyard;
use percore_proto::{Args, Cmd, CommandSpec, ReplyWriter};
pub use value::{Clock, Entry, Value, ValueRef};

/// Databases per server, as Redis's default `databases 16`.
pub const DB_COUNT: usize = 16;

/// Error replies shared by many commands, byte for byte as Redis 7.
pub mod err {
    pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    pub const NOT_INT: &str = "ERR value is not an integer or out of range";
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub const SYNTAX: &str = "ERR syntax error";
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    pub const SAME_OBJECT: &str = "ERR source and destination objects are the same";
    pub const DB_RANGE: &str = "ERR DB index is out of range";
    pub const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    pub const INVALID_CURSOR: &str = "ERR invalid cursor";
}

/// Settings the shard needs; the server owns the full configuration.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub proto_max_bulk_len: i64,
    pub evict: evict::EvictConfig,
    /// When a hash leaves the `listpack` encoding.
    pub hash_limits: types::hash::HashLimits,
    /// When a set leaves the `intset` encoding.
    pub set_limits: types::set::SetLimits,
    /// How large a list's nodes grow.
    pub list_limits: types::list::ListLimits,
    /// When a sorted set leaves the `listpack` encoding.
    pub zset_limits: types::zset::ZSetLimits,
    /// `hll-sparse-max-bytes`: the longest sparse HyperLogLog before it turns dense.
    pub hll_sparse_max_bytes: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            proto_max_bulk_len: percore_proto::decode::DEFAULT_MAX_BULK_LEN,
            evict: evict::EvictConfig::default(),
            hash_limits: types::hash::HashLimits::default(),
            set_limits: types::set::SetLimits::default(),
            list_limits: types::list::ListLimits::default(),
            zset_limits: types::zset::ZSetLimits::default(),
            hll_sparse_max_bytes: types::hll::SPARSE_MAX_BYTES_DEFAULT,
        }
    }
}

/// One step of xorshift64* on `x`.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// [`Shard::notify`] on the shard's fields, for code that holds a borrow of a table.
#[inline]
fn push_event(
    classes: u16,
    events: &mut Vec<notify::KeyEvent>,
    class: u16,
    event: &'static str,
    db: usize,
    key: &[u8],
) {
    if classes & class != 0 {
        events.push(notify::KeyEvent {
            db,
            class,
            event,
            key: key.into(),
        });
    }
}

/// Counters INFO reports; summed over shards by the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub expired_keys: u64,
    /// Keys removed to stay under maxmemory.
    pub evicted_keys: u64,
    /// Changes since start (Redis's `dirty` counter): per write command, the keys it
    /// changed, at least one.
    pub dirty: u64,
}

/// What a command executes against: the client's selected database and the time.
#[derive(Clone, Copy, Debug)]
pub struct ExecCtx {
    pub db: usize,
    pub now_ms: u64,
}

/// One database: a table of entries and the count of those with a deadline.
pub struct Db {
    pub dict: Dict,
    pub expires_count: usize,
    /// Where the active expiry cycle resumes in this database.
    expire_cursor: u64,
    /// Running average of the remaining TTL of sampled keys, kept by the active expiry
    /// cycle; read it through [`Db::avg_ttl_ms`].
    avg_ttl_ms: u64,
}

impl Db {
    fn new(seed: u64) -> Self {
        Db {
            dict: Dict::new(seed),
            expires_count: 0,
            expire_cursor: 0,
            avg_ttl_ms: 0,
        }
    }

    /// INFO keyspace's `avg_ttl`: 0 when no key has a deadline. Redis resets the average
    /// when its expiry cycle finds no volatile key; answering 0 as soon as the last one is
    /// gone (expired, deleted, persisted) also covers the time until the next cycle.
    pub fn avg_ttl_ms(&self) -> u64 {
        if self.expires_count == 0 {
            0
        } else {
            self.avg_ttl_ms
        }
    }
}

/// One shard of the keyspace.
pub struct Shard {
    pub dbs: Vec<Db>,
    pub stats: Stats,
    pub config: ShardConfig,
    rng: u64,
    expire_db: usize,
    /// Tables detached by FLUSHDB/FLUSHALL/overwrites, freed in slices by [`Shard::lazyfree_step`].
    garbage: Vec<Dict>,
    /// Large values and arrays let go of, returned to the kernel in slices.
    graveyard: Graveyard,
    /// Eviction candidates kept between calls ([`evict`]).
    evict_pool: evict::EvictionPool,
    /// The snapshot in progress ([`snapshot`]), if any.
    snapshot: Option<snapshot::BlockBuilder>,
    /// Entries a freed detached table saved for the snapshot after the table was gone.
    snap_orphans: Vec<snapshot::Pending>,
    /// Keys some client is blocked on (BLPOP, …), with the databases (a bit each) it waits
    /// in; the server keeps the waiters themselves.
    blocked: std::collections::HashMap<Box<[u8]>, u16>,
    /// Keys of `blocked` that a list or sorted set was stored at since the server last looked, oldest
    /// first: after each command the server serves their waiters (Redis's ready keys).
    pub ready: Vec<(usize, Vec<u8>)>,
    /// WATCHed keys and the flags a change raises.
    pub watches: watch::Watches,
    /// CLIENT TRACKING: who read which key, and the invalidations owed
    /// ([`tracking`]); `tracking_on` caches whether anyone tracks here.
    pub tracking: std::cell::RefCell<tracking::Tracking>,
    tracking_on: std::cell::Cell<bool>,
    /// Invalidations wait in the tracking table's `pending`, or a flush happened (every
    /// tracking client is owed a null invalidation).
    tracking_pending: std::cell::Cell<bool>,
    tracking_flushed: std::cell::Cell<bool>,
    /// A command runs in [`Shard::apply`]: keys count as changed only where it records a
    /// keyspace event (see [`Shard::touch`]).
    in_command: std::cell::Cell<bool>,
    /// The client the running command is for (set by the server around a command while
    /// some client tracks; None otherwise).
    pub caller: std::cell::Cell<Option<tracking::Caller>>,
    /// The event classes recorded in [`Shard::events`] (0 when none is published); set by
    /// [`Shard::set_notify`].
    notify_classes: u16,
    /// Keyspace events of the commands run since the server last drained them, in order.
    pub events: Vec<notify::KeyEvent>,
    /// The replication feed ([`repl`]): off until a replica attaches.
    pub feed: repl::Feed,
    /// Set by the server while it runs a command of a replica's master client: a key past
    /// its deadline is still there for it (Redis's `expireIfNeeded` on a replica answers
    /// "not expired" to the master client), so the primary's writes apply to what the
    /// primary saw, while the clock stays the real one (relative TTLs, LRU/LFU clocks).
    pub master_view: bool,
}

/// What one active-expiry step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireStep {
    pub sampled: usize,
    pub expired: usize,
}

/// What follows a key that a lookup found expired and deleted (Redis's
/// `deleteExpiredKeyAndPropagate`): the counts, the "expired" event, WATCH flags and
/// tracking invalidations (`signalModifiedKey`, with no client: a NOLOOP reader is told
/// too), and the DEL for replicas. A macro rather than a method: the caller still holds
/// its database `$d` borrowed (for the entry it may return), so only the shard's other
/// fields may be touched.
macro_rules! expired_on_lookup {
    ($sh:ident, $d:ident, $db:expr, $key:expr) => {{
        $d.expires_count -= 1;
        $sh.stats.expired_keys += 1;
        push_event(
            $sh.notify_classes,
            &mut $sh.events,
            notify::EXPIRED,
            "expired",
            $db,
            $key,
        );
        if !$sh.watches.is_empty() {
            $sh.watches.touch($db, $key);
        }
        invalidate_tracked(
            &$sh.tracking,
            &$sh.tracking_on,
            &$sh.tracking_pending,
            $key,
            None,
        );
        if $sh.feed.on {
            $sh.feed.deleted($db, $key, $sh.in_command.get());
        }
    }};
}

/// Invalidates `key` for the clients that track it (changed by client `by`, if any); one
/// load when nobody tracks.
#[inline]
fn invalidate_tracked(
    tracking: &std::cell::RefCell<tracking::Tracking>,
    on: &std::cell::Cell<bool>,
    pending: &std::cell::Cell<bool>,
    key: &[u8],
    by: Option<u64>,
) {
    if on.get() {
        let mut t = tracking.borrow_mut();
        t.invalidate(key, by);
        on.set(t.active());
        pending.set(!t.pending.is_empty());
    }
}

impl Shard {
    /// `seed` keys the hash tables and the shard's random source.
    pub fn new(seed: u64, config: ShardConfig) -> Self {
        let seed = seed | 1;
        Shard {
            dbs: (0..DB_COUNT as u64)
                .map(|i| Db::new(seed.wrapping_mul(i + 1)))
                .collect(),
            stats: Stats::default(),
            config,
            rng: seed,
            expire_db: 0,
            garbage: Vec::new(),
            graveyard: Graveyard::default(),
            evict_pool: evict::EvictionPool::default(),
            snapshot: None,
            snap_orphans: Vec::new(),
            blocked: std::collections::HashMap::new(),
            ready: Vec::new(),
            watches: watch::Watches::default(),
            tracking: Default::default(),
            tracking_on: std::cell::Cell::new(false),
            tracking_pending: std::cell::Cell::new(false),
            tracking_flushed: std::cell::Cell::new(false),
            in_command: std::cell::Cell::new(false),
            caller: std::cell::Cell::new(None),
            notify_classes: 0,
            events: Vec::new(),
            feed: repl::Feed::default(),
            master_view: false,
        }
    }

    /// Redis's `checkAlreadyExpired`: a deadline `when_ms` not after `now_ms` means the key
    /// is gone at once, except for a replica's master client ([`Shard::master_view`]),
    /// which keeps the key (expired for readers) until its primary deletes it.
    #[inline]
    pub fn already_expired(&self, when_ms: i64, now_ms: u64) -> bool {
        !self.master_view && when_ms <= now_ms as i64
    }

    /// `notify-keyspace-events` as flags ([`notify::parse_flags`]): which events to record.
    pub fn set_notify(&mut self, flags: u16) {
        self.notify_classes = notify::active_classes(flags);
    }

    /// Records events made elsewhere for keys of this shard (a coordinator's scratch shard
    /// runs a command over keys of several shards), as if made here: the classes this shard
    /// publishes are kept, in order.
    pub fn record_events(&mut self, events: impl IntoIterator<Item = notify::KeyEvent>) {
        let classes = self.notify_classes;
        self.events
            .extend(events.into_iter().filter(|e| classes & e.class != 0));
    }

    /// Stores `entry` at `key` recording no event of its own: the value of a command whose
    /// events were recorded where it ran (see [`Shard::record_events`]).
    pub fn store_quietly(&mut self, db: usize, key: &[u8], entry: Entry) {
        self.store_loaded(db, key, entry);
    }

    /// [`Shard::store_quietly`] for a key read from a file: true when the key was added, false
    /// when it replaced one.
    pub fn store_loaded(&mut self, db: usize, key: &[u8], entry: Entry) -> bool {
        let mark = self.events.len();
        let added = self.store_entry(db, key, entry);
        self.events.truncate(mark);
        added
    }

    /// Records keyspace event `event` of class `class` on `key` in `db` (Redis's
    /// `notifyKeyspaceEvent`). One branch when the class is off.
    #[inline]
    ///
    /// Every event but "keymiss" and "new" is a change to the key (Redis calls
    /// `signalModifiedKey` beside each such `notifyKeyspaceEvent`), so it also raises the
    /// key's WATCH flags and invalidates it for tracking clients.
    pub(crate) fn notify(&mut self, class: u16, event: &'static str, db: usize, key: &[u8]) {
        push_event(self.notify_classes, &mut self.events, class, event, db, key);
        if class & (notify::KEY_MISS | notify::NEW) == 0 {
            self.feed.changes = self.feed.changes.wrapping_add(1);
            self.signal_modified(db, key);
        }
    }

    /// WATCH: `flag` is raised when `key` in `db` changes. An expired key is deleted first
    /// (its expiry is no change to watch for).
    pub fn watch(
        &mut self,
        db: usize,
        key: &[u8],
        flag: &std::sync::Arc<std::sync::atomic::AtomicBool>,
        now_ms: u64,
    ) {
        self.lookup(db, key, now_ms);
        self.watches.add(db, key, flag);
    }

    pub fn unwatch(
        &mut self,
        db: usize,
        key: &[u8],
        flag: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        self.watches.remove(db, key, flag);
    }

    /// `key` in `db` may have changed: raises its WATCH flags and invalidates it for the
    /// clients that track it, if any. Inside a command run by [`Shard::apply`] this does
    /// nothing: there a key counts as changed only when the command records its event
    /// ([`Shard::notify`]), as Redis signals a key only when a write really changed it
    /// (`SADD` of a member already there, `DEL` of a missing key, `PERSIST` of a key without
    /// a deadline signal nothing). Outside a command (pops served to blocked clients, the
    /// steps of a command over several shards) every store and delete counts.
    #[inline]
    pub fn touch(&self, db: usize, key: &[u8]) {
        if self.in_command.get() {
            return;
        }
        self.signal_modified(db, key);
    }

    /// Redis's `signalModifiedKey`: raises `key`'s WATCH flags and invalidates it for the
    /// clients that track it. Two loads when nobody watches or tracks.
    #[inline]
    pub(crate) fn signal_modified(&self, db: usize, key: &[u8]) {
        if !self.watches.is_empty() {
            self.watches.touch(db, key);
        }
        let by = self.caller.get().map(|c| c.id);
        invalidate_tracked(
            &self.tracking,
            &self.tracking_on,
            &self.tracking_pending,
            key,
            by,
        );
    }

    /// Whether invalidations (or a flush) wait to be sent.
    #[inline]
    pub fn has_invalidations(&self) -> bool {
        self.tracking_pending.get() || self.tracking_flushed.get()
    }

    /// The invalidations owed, and whether a flush happened since the last call.
    pub fn take_invalidations(&self) -> (Vec<tracking::Invalidation>, bool) {
        self.tracking_pending.set(false);
        let pending = std::mem::take(&mut self.tracking.borrow_mut().pending);
        (pending, self.tracking_flushed.replace(false))
    }

    /// Runs `f` on the tracking table and keeps the shard's quick "anyone tracks" flag.
    pub fn with_tracking<R>(&self, f: impl FnOnce(&mut tracking::Tracking) -> R) -> R {
        let mut t = self.tracking.borrow_mut();
        let r = f(&mut t);
        self.tracking_on.set(t.active());
        self.tracking_pending.set(!t.pending.is_empty());
        r
    }

    /// After a read-only command run for a tracking client: remembers its keys.
    fn remember_reads(&self, spec: &percore_proto::CommandSpec, args: &Args) {
        let Some(caller) = self.caller.get().filter(|c| c.remember) else {
            return;
        };
        if !spec.flags.has(percore_proto::Flags::READONLY)
            || spec.flags.has(percore_proto::Flags::PUBSUB)
        {
            return;
        }
        let mut t = self.tracking.borrow_mut();
        command_keys(spec, args, |i| t.remember(&args[i], &caller));
        self.tracking_on.set(t.active());
        self.tracking_pending.set(!t.pending.is_empty());
    }

    /// Marks `key` in `db` as waited on: a list stored there from now on is reported in
    /// [`Shard::ready`].
    pub fn block_key(&mut self, db: usize, key: &[u8]) {
        *self.blocked.entry(key.into()).or_default() |= 1 << db;
    }

    /// No client waits on `key` in `db` any more.
    pub fn unblock_key(&mut self, db: usize, key: &[u8]) {
        if let Some(m) = self.blocked.get_mut(key) {
            *m &= !(1 << db);
            if *m == 0 {
                self.blocked.remove(key);
            }
        }
    }

    fn signal_ready(&mut self, db: usize, key: &[u8]) {
        if self.blocked.get(key).is_some_and(|m| m & (1 << db) != 0) {
            self.ready.push((db, key.to_vec()));
        }
    }

    /// Reports every waited-on key of `dbs` that holds a list (SWAPDB).
    pub fn signal_all_ready(&mut self, dbs: &[usize]) {
        let mut found = Vec::new();
        for (k, &m) in &self.blocked {
            for &db in dbs {
                if m & (1 << db) != 0 {
                    found.push((db, k.to_vec()));
                }
            }
        }
        self.ready.extend(found);
    }

    /// xorshift64*: fast, seedable; randomness here only picks keys.
    pub fn next_rand(&mut self) -> u64 {
        xorshift(&mut self.rng)
    }

    /// Picks a random entry of `db` (O(1) expected) and maps it with `f`; None when the
    /// database is empty. Advances the shard's random source.
    pub(crate) fn with_random<R>(
        &mut self,
        db: usize,
        f: impl FnOnce(&[u8], EntryRef) -> R,
    ) -> Option<R> {
        let mut rng = self.rng;
        let r = self.dbs[db]
            .dict
            .random(|| xorshift(&mut rng))
            .map(|e| f(e.key(), e));
        self.rng = rng;
        r
    }

    /// Empties database `db` in O(1): its table is queued for [`Shard::lazyfree_step`].
    pub fn flush_db(&mut self, db: usize) {
        if !self.watches.is_empty() {
            let d = &mut self.dbs[db].dict;
            self.watches.touch_db(db, |k| d.get_mut(k).is_some());
        }
        // Tracking clients get one null invalidation instead of one per key.
        self.with_tracking(|t| t.clear());
        self.tracking_flushed.set(true);
        let seed = self.next_rand();
        let d = &mut self.dbs[db];
        let old = std::mem::replace(&mut d.dict, Dict::new(seed));
        d.expires_count = 0;
        d.expire_cursor = 0;
        d.avg_ttl_ms = 0;
        // Even an empty table may hold a large bucket array or graveyard.
        self.garbage.push(old);
    }

    /// Bounded background freeing: up to `buckets` buckets of detached tables, then up to
    /// `slices` slices of large blocks ([`lazyfree`]). True while more remains.
    pub fn lazyfree_step(&mut self, buckets: usize, slices: usize) -> bool {
        let mut budget = buckets;
        while budget > 0 && !self.garbage.is_empty() {
            self.free_garbage_step(self.garbage.len() - 1, budget.min(1024));
            budget = budget.saturating_sub(1024);
        }
        for d in &mut self.dbs {
            self.graveyard.append(d.dict.graveyard());
        }
        let more_blocks = self.graveyard.step(slices);
        more_blocks || !self.garbage.is_empty()
    }

    /// Frees up to `buckets` buckets of detached table `i`, taking over what it lets go of
    /// (large blocks, entries a snapshot still needs), and drops the table once it is empty.
    /// True while it still holds entries.
    fn free_garbage_step(&mut self, i: usize, buckets: usize) -> bool {
        let d = &mut self.garbage[i];
        let more = d.free_step(buckets);
        self.graveyard.append(d.graveyard());
        if !more {
            self.snap_orphans.append(&mut d.snap.saved);
            self.garbage.remove(i);
        }
        more
    }

    /// Entries and large blocks waiting to be freed (INFO `lazyfree_pending_objects`).
    pub fn lazyfree_pending(&self) -> usize {
        self.garbage.iter().map(|d| d.len()).sum::<usize>()
            + self.graveyard.len()
            + self
                .dbs
                .iter()
                .map(|d| d.dict.graveyard_len())
                .sum::<usize>()
    }

    /// Looks a key up for reading or writing; an expired key is deleted and reported absent
    /// (kept, and absent all the same, while clients are paused: [`PAUSED_UNTIL_MS`]).
    pub fn lookup(&mut self, db: usize, key: &[u8], now_ms: u64) -> Option<EntryMut<'_>> {
        let (paused, master) = (expiry_paused(now_ms), self.master_view);
        let d = &mut self.dbs[db];
        match d
            .dict
            .get_live(key, |e| !paused && !master && e.is_expired(now_ms))
        {
            Live::Found(e) if paused && !master && e.is_expired(now_ms) => None,
            Live::Found(e) => Some(e),
            Live::Removed => {
                expired_on_lookup!(self, d, db, key);
                None
            }
            Live::Missing => None,
        }
    }

    /// `lookup` that also counts a keyspace hit or miss and updates the key's LRU/LFU data
    /// (Redis's lookupKeyRead).
    pub fn lookup_read(&mut self, db: usize, key: &[u8], now_ms: u64) -> Option<EntryMut<'_>> {
        let cfg = self.config.evict;
        let r = if cfg.policy.is_lfu() {
            (self.next_rand() >> 11) as f64 / (1u64 << 53) as f64
        } else {
            0.0
        };
        let (paused, master) = (expiry_paused(now_ms), self.master_view);
        let d = &mut self.dbs[db];
        match d
            .dict
            .get_live(key, |e| !paused && !master && e.is_expired(now_ms))
        {
            // While clients are paused an expired key stays, missing all the same (but
            // for a replica's master client: [`Shard::master_view`]).
            Live::Found(mut e) if master || !(paused && e.is_expired(now_ms)) => {
                self.stats.keyspace_hits += 1;
                evict::touch_entry(&mut e, now_ms, &cfg, r);
                return Some(e);
            }
            Live::Removed => expired_on_lookup!(self, d, db, key),
            Live::Found(_) | Live::Missing => {}
        }
        self.stats.keyspace_misses += 1;
        push_event(
            self.notify_classes,
            &mut self.events,
            notify::KEY_MISS,
            "keymiss",
            db,
            key,
        );
        None
    }

    /// True when `key` exists and has not expired (removing it if it has).
    pub fn exists(&mut self, db: usize, key: &[u8], now_ms: u64) -> bool {
        self.lookup(db, key, now_ms).is_some()
    }

    /// Stores `entry` at `key`, replacing any value and deadline. A fresh entry gets the
    /// LRU/LFU word of the current policy; a moved one keeps its own.
    pub fn store(&mut self, db: usize, key: &[u8], entry: Entry) {
        self.store_entry(db, key, entry);
    }

    /// [`Shard::store`], true when the key was added (not replaced).
    pub(crate) fn store_entry(&mut self, db: usize, key: &[u8], entry: Entry) -> bool {
        let clock = match entry.clock {
            Clock::Fresh { now_ms } => evict::new_clock(&self.config.evict, now_ms),
            Clock::Kept(c) => c,
        };
        let at = entry.expire_at_ms;
        self.touch(db, key);
        // A list or sorted set may serve a blocked BLPOP/BZPOPMIN/… waiting on the key.
        let list = matches!(entry.value, Value::List(_) | Value::ZSet(_));
        let added = self.store_with(db, key, at, |d| d.insert(key, entry.value, at, clock));
        if list && !self.blocked.is_empty() {
            self.signal_ready(db, key);
        }
        added
    }

    /// A *STORE command's destination (SINTERSTORE, ZUNIONSTORE, SORT … STORE, BITOP, …):
    /// `entry` is stored at `key` with event `event` of `class` ("new" first when the key
    /// was absent); None (an empty result) deletes the key, a "del" event if it was there.
    pub(crate) fn store_result(
        &mut self,
        db: usize,
        key: &[u8],
        entry: Option<Entry>,
        class: u16,
        event: &'static str,
    ) {
        match entry {
            Some(e) => {
                self.store(db, key, e);
                self.notify(class, event, db, key);
            }
            None => {
                if self.delete(db, key) {
                    self.notify(notify::GENERIC, "del", db, key);
                }
            }
        }
    }

    /// SET's path: stores the string `bytes` as a new key (integer-encoded when Redis would)
    /// with deadline `expire_at_ms` (0: none), copying the bytes once, into the entry.
    pub fn store_bytes(
        &mut self,
        db: usize,
        key: &[u8],
        bytes: &[u8],
        expire_at_ms: u64,
        now_ms: u64,
    ) {
        let clock = evict::new_clock(&self.config.evict, now_ms);
        self.touch(db, key);
        self.store_with(db, key, expire_at_ms, |d| {
            d.insert_ref(key, ValueRef::parse(bytes), expire_at_ms, clock)
        });
    }

    /// Runs an insert of `key` into `db`'s table and keeps the count of keys with a
    /// deadline; a key that was not there is a "new" event (Redis's `dbAdd`). True when
    /// the key was added.
    fn store_with(
        &mut self,
        db: usize,
        key: &[u8],
        expire_at_ms: u64,
        insert: impl FnOnce(&mut Dict) -> Option<bool>,
    ) -> bool {
        let d = &mut self.dbs[db];
        let replaced = insert(&mut d.dict);
        if replaced == Some(true) {
            d.expires_count -= 1;
        }
        if expire_at_ms != 0 {
            d.expires_count += 1;
        }
        if replaced.is_none() {
            self.notify(notify::NEW, "new", db, key);
        }
        replaced.is_none()
    }

    /// Removes `key` whatever its deadline; returns the entry (its value moved, not copied).
    pub fn remove(&mut self, db: usize, key: &[u8]) -> Option<Entry> {
        let d = &mut self.dbs[db];
        let e = d.dict.remove(key)?;
        self.touch(db, key);
        let d = &mut self.dbs[db];
        if e.expire_at_ms != 0 {
            d.expires_count -= 1;
        }
        Some(e)
    }

    /// Deletes `key` whatever its deadline; true if it was there. A large value is freed in
    /// slices by [`Shard::lazyfree_step`], not here.
    pub fn delete(&mut self, db: usize, key: &[u8]) -> bool {
        let d = &mut self.dbs[db];
        match d.dict.delete(key) {
            Some(had_deadline) => {
                self.touch(db, key);
                let d = &mut self.dbs[db];
                if had_deadline {
                    d.expires_count -= 1;
                }
                true
            }
            None => false,
        }
    }

    /// Sets or clears the deadline of an existing key; returns false if the key is absent.
    pub fn set_expire(&mut self, db: usize, key: &[u8], deadline_ms: u64) -> bool {
        self.touch(db, key);
        let d = &mut self.dbs[db];
        let Some(mut e) = d.dict.get_mut(key) else {
            return false;
        };
        let was = e.expire_at_ms() != 0;
        e.set_expire_at_ms(deadline_ms);
        match (was, deadline_ms != 0) {
            (false, true) => d.expires_count += 1,
            (true, false) => d.expires_count -= 1,
            _ => {}
        }
        true
    }

    /// Keys in database `db` (including logically expired ones not yet reclaimed, as Redis).
    pub fn db_len(&self, db: usize) -> usize {
        self.dbs[db].dict.len()
    }

    /// Active expiry: examines up to `budget` buckets across the databases that hold keys
    /// with deadlines, deleting the expired ones. Bounded: never more than `budget` bucket
    /// visits (each bucket holds ~1 entry at the table's load factor). The caller repeats
    /// while a large share of sampled keys was expired and its time slice allows.
    pub fn expire_step(&mut self, now_ms: u64, budget: usize) -> ExpireStep {
        let mut step = ExpireStep::default();
        if expiry_paused(now_ms) {
            return step;
        }
        let mut doomed: Vec<Box<[u8]>> = Vec::new();
        let mut visited_dbs = 0;
        let mut buckets = 0;
        while buckets < budget && visited_dbs < DB_COUNT {
            let dbi = self.expire_db;
            let d = &mut self.dbs[dbi];
            if d.expires_count == 0 {
                // As Redis's activeExpireCycle: no volatile key, no average (the next
                // volatile key starts a fresh one).
                d.avg_ttl_ms = 0;
                d.expire_cursor = 0;
                self.expire_db = (self.expire_db + 1) % DB_COUNT;
                visited_dbs += 1;
                continue;
            }
            let mut cursor = d.expire_cursor;
            let mut ttl_sum = 0u64;
            let mut ttl_n = 0u64;
            loop {
                cursor = d.dict.scan(cursor, |k, e| {
                    let at = e.expire_at_ms();
                    if at != 0 {
                        step.sampled += 1;
                        if now_ms > at {
                            doomed.push(k.into());
                        } else {
                            ttl_sum += at - now_ms;
                            ttl_n += 1;
                        }
                    }
                });
                buckets += 1;
                if cursor == 0 || buckets >= budget {
                    break;
                }
            }
            if let Some(avg) = ttl_sum.checked_div(ttl_n) {
                // Redis's smoothing, integer divisions included: the previous estimate
                // weighs 98%, the sample 2% (a first sample is smoothed with itself).
                if d.avg_ttl_ms == 0 {
                    d.avg_ttl_ms = avg;
                }
                d.avg_ttl_ms = (d.avg_ttl_ms / 50) * 49 + avg / 50;
            }
            d.expire_cursor = cursor;
            for k in doomed.drain(..) {
                if d.dict.delete(&k).is_some() {
                    // Watchers and tracking clients, as Redis signals an expired key.
                    if !self.watches.is_empty() {
                        self.watches.touch(dbi, &k);
                    }
                    invalidate_tracked(
                        &self.tracking,
                        &self.tracking_on,
                        &self.tracking_pending,
                        &k,
                        None,
                    );
                    d.expires_count -= 1;
                    step.expired += 1;
                    push_event(
                        self.notify_classes,
                        &mut self.events,
                        notify::EXPIRED,
                        "expired",
                        dbi,
                        &k,
                    );
                    if self.feed.on {
                        self.feed.deleted(dbi, &k, false);
                    }
                }
            }
            if d.expires_count == 0 {
                // Redis's cycle repeats on a database whose sample was mostly expired and
                // then finds it without volatile keys: the average goes in the same cycle.
                d.avg_ttl_ms = 0;
            }
            if cursor == 0 {
                self.expire_db = (self.expire_db + 1) % DB_COUNT;
                visited_dbs += 1;
            }
        }
        self.stats.expired_keys += step.expired as u64;
        step
    }

    /// Advances incremental rehashing in every database by up to `buckets` buckets each.
    pub fn rehash_step(&mut self, buckets: usize) -> bool {
        let mut more = false;
        for d in &mut self.dbs {
            more |= d.dict.rehash_step(buckets);
        }
        more
    }

    /// Executes one command whose keys all belong to this shard and writes its reply.
    ///
    /// `spec` has already been resolved and arity-checked by the caller. Must not block;
    /// allocates only for values it stores or replies it builds.
    pub fn apply(&mut self, ctx: &ExecCtx, spec: &CommandSpec, args: Args, out: &mut ReplyWriter) {
        use ops::{hash as h, keyspace as k, list as l, set as st, string as s, zset as z};
        use types::list::End;
        // Keys change where the command records events, not where it stores or deletes.
        let outer = self.in_command.replace(true);
        let feed_mark = (self.feed.changes, out.buf.len());
        match spec.cmd {
            Cmd::Get => s::get(self, ctx, args, out),
            Cmd::Set => s::set(self, ctx, args, out),
            Cmd::SetNx => s::setnx(self, ctx, args, out),
            Cmd::SetEx => s::setex(self, ctx, args, out, 1000, "setex"),
            Cmd::PSetEx => s::setex(self, ctx, args, out, 1, "psetex"),
            Cmd::GetSet => s::getset(self, ctx, args, out),
            Cmd::GetDel => s::getdel(self, ctx, args, out),
            Cmd::GetEx => s::getex(self, ctx, args, out),
            Cmd::MGet => s::mget(self, ctx, args, out),
            Cmd::MSet => s::mset(self, ctx, args, out),
            Cmd::MSetNx => s::msetnx(self, ctx, args, out),
            Cmd::Append => s::append(self, ctx, args, out),
            Cmd::StrLen => s::strlen(self, ctx, args, out),
            Cmd::Incr => s::incr_by(self, ctx, &args[1], Ok(1), out),
            Cmd::Decr => s::incr_by(self, ctx, &args[1], Ok(-1), out),
            Cmd::IncrBy => s::incr_by(self, ctx, &args[1], s::parse_incr(&args[2], false), out),
            Cmd::DecrBy => s::incr_by(self, ctx, &args[1], s::parse_incr(&args[2], true), out),
            Cmd::IncrByFloat => s::incrbyfloat(self, ctx, args, out),
            Cmd::GetRange | Cmd::Substr => s::getrange(self, ctx, args, out),
            Cmd::SetRange => s::setrange(self, ctx, args, out),
            Cmd::Lcs => s::lcs(self, ctx, args, out),
            Cmd::SetBit => ops::bitmap::setbit(self, ctx, args, out),
            Cmd::GetBit => ops::bitmap::getbit(self, ctx, args, out),
            Cmd::BitCount => ops::bitmap::bitcount(self, ctx, args, out),
            Cmd::BitPos => ops::bitmap::bitpos(self, ctx, args, out),
            Cmd::BitOp => ops::bitmap::bitop(self, ctx, args, out),
            Cmd::BitField => ops::bitmap::bitfield(self, ctx, args, out, false),
            Cmd::BitFieldRo => ops::bitmap::bitfield(self, ctx, args, out, true),
            Cmd::HSet => h::hset(self, ctx, args, out, false),
            Cmd::HMSet => h::hset(self, ctx, args, out, true),
            Cmd::HSetNx => h::hsetnx(self, ctx, args, out),
            Cmd::HGet => h::hget(self, ctx, args, out),
            Cmd::HMGet => h::hmget(self, ctx, args, out),
            Cmd::HGetAll => h::hgetall(self, ctx, args, out, h::Part::Both),
            Cmd::HKeys => h::hgetall(self, ctx, args, out, h::Part::Fields),
            Cmd::HVals => h::hgetall(self, ctx, args, out, h::Part::Values),
            Cmd::HDel => h::hdel(self, ctx, args, out),
            Cmd::HLen => h::hlen(self, ctx, args, out),
            Cmd::HStrLen => h::hstrlen(self, ctx, args, out),
            Cmd::HExists => h::hexists(self, ctx, args, out),
            Cmd::HIncrBy => h::hincrby(self, ctx, args, out),
            Cmd::HIncrByFloat => h::hincrbyfloat(self, ctx, args, out),
            Cmd::HRandField => h::hrandfield(self, ctx, args, out),
            Cmd::HScan => h::hscan(self, ctx, args, out),
            Cmd::SAdd => st::sadd(self, ctx, args, out),
            Cmd::SRem => st::srem(self, ctx, args, out),
            Cmd::SMembers => st::smembers(self, ctx, args, out),
            Cmd::SIsMember => st::sismember(self, ctx, args, out),
            Cmd::SMIsMember => st::smismember(self, ctx, args, out),
            Cmd::SCard => st::scard(self, ctx, args, out),
            Cmd::SPop => st::spop(self, ctx, args, out),
            Cmd::SRandMember => st::srandmember(self, ctx, args, out),
            Cmd::SMove => st::smove(self, ctx, args, out),
            Cmd::SInter => st::combine(self, ctx, args, out, st::Op::Inter, false),
            Cmd::SInterStore => st::combine(self, ctx, args, out, st::Op::Inter, true),
            Cmd::SUnion => st::combine(self, ctx, args, out, st::Op::Union, false),
            Cmd::SUnionStore => st::combine(self, ctx, args, out, st::Op::Union, true),
            Cmd::SDiff => st::combine(self, ctx, args, out, st::Op::Diff, false),
            Cmd::SDiffStore => st::combine(self, ctx, args, out, st::Op::Diff, true),
            Cmd::SInterCard => st::sintercard(self, ctx, args, out),
            Cmd::SScan => st::sscan(self, ctx, args, out),
            Cmd::PfAdd => ops::hll::pfadd(self, ctx, args, out),
            Cmd::PfCount => ops::hll::pfcount(self, ctx, args, out),
            Cmd::PfMerge => ops::hll::pfmerge(self, ctx, args, out),
            Cmd::PfDebug => ops::hll::pfdebug(self, ctx, args, out),
            Cmd::PfSelfTest => ops::hll::pfselftest(self, out),
            Cmd::ZAdd => z::zadd(self, ctx, args, out, false),
            Cmd::ZIncrBy => z::zadd(self, ctx, args, out, true),
            Cmd::ZScore => z::zscore(self, ctx, args, out),
            Cmd::ZMScore => z::zmscore(self, ctx, args, out),
            Cmd::ZRank => z::zrank(self, ctx, args, out, false),
            Cmd::ZRevRank => z::zrank(self, ctx, args, out, true),
            Cmd::ZCard => z::zcard(self, ctx, args, out),
            Cmd::ZCount => z::zcount(self, ctx, args, out, false),
            Cmd::ZLexCount => z::zcount(self, ctx, args, out, true),
            Cmd::ZRange => z::zrange(self, ctx, args, out, false, z::RangeBy::Auto, None),
            Cmd::ZRangeStore => z::zrange(self, ctx, args, out, true, z::RangeBy::Auto, None),
            Cmd::ZRevRange => z::zrange(self, ctx, args, out, false, z::RangeBy::Rank, Some(true)),
            Cmd::ZRangeByScore => {
                z::zrange(self, ctx, args, out, false, z::RangeBy::Score, Some(false))
            }
            Cmd::ZRevRangeByScore => {
                z::zrange(self, ctx, args, out, false, z::RangeBy::Score, Some(true))
            }
            Cmd::ZRangeByLex => {
                z::zrange(self, ctx, args, out, false, z::RangeBy::Lex, Some(false))
            }
            Cmd::ZRevRangeByLex => {
                z::zrange(self, ctx, args, out, false, z::RangeBy::Lex, Some(true))
            }
            Cmd::ZRem => z::zrem(self, ctx, args, out),
            Cmd::ZRemRangeByRank => z::zremrange(self, ctx, args, out, z::RangeBy::Rank),
            Cmd::ZRemRangeByScore => z::zremrange(self, ctx, args, out, z::RangeBy::Score),
            Cmd::ZRemRangeByLex => z::zremrange(self, ctx, args, out, z::RangeBy::Lex),
            Cmd::ZPopMin => z::zpop(self, ctx, args, out, false),
            Cmd::ZPopMax => z::zpop(self, ctx, args, out, true),
            Cmd::ZMPop => z::zmpop(self, ctx, args, out),
            Cmd::ZRandMember => z::zrandmember(self, ctx, args, out),
            Cmd::ZScan => z::zscan(self, ctx, args, out),
            Cmd::ZUnion => z::combine(self, ctx, args, out, z::Op::Union, false, false),
            Cmd::ZInter => z::combine(self, ctx, args, out, z::Op::Inter, false, false),
            Cmd::ZDiff => z::combine(self, ctx, args, out, z::Op::Diff, false, false),
            Cmd::ZUnionStore => z::combine(self, ctx, args, out, z::Op::Union, true, false),
            Cmd::ZInterStore => z::combine(self, ctx, args, out, z::Op::Inter, true, false),
            Cmd::ZDiffStore => z::combine(self, ctx, args, out, z::Op::Diff, true, false),
            Cmd::ZInterCard => z::combine(self, ctx, args, out, z::Op::Inter, false, true),
            Cmd::GeoAdd => ops::geo::geoadd(self, ctx, args, out),
            Cmd::GeoDist => ops::geo::geodist(self, ctx, args, out),
            Cmd::GeoHash => ops::geo::geohash(self, ctx, args, out),
            Cmd::GeoPos => ops::geo::geopos(self, ctx, args, out),
            Cmd::GeoSearch => ops::geo::search(self, ctx, args, out, ops::geo::Search::Search),
            Cmd::GeoSearchStore => {
                ops::geo::search(self, ctx, args, out, ops::geo::Search::SearchStore)
            }
            Cmd::GeoRadius => ops::geo::search(self, ctx, args, out, ops::geo::Search::Radius),
            Cmd::GeoRadiusRo => ops::geo::search(self, ctx, args, out, ops::geo::Search::RadiusRo),
            Cmd::GeoRadiusByMember => {
                ops::geo::search(self, ctx, args, out, ops::geo::Search::ByMember)
            }
            Cmd::GeoRadiusByMemberRo => {
                ops::geo::search(self, ctx, args, out, ops::geo::Search::ByMemberRo)
            }
            Cmd::LPush => l::push(self, ctx, args, out, End::Left, false),
            Cmd::RPush => l::push(self, ctx, args, out, End::Right, false),
            Cmd::LPushX => l::push(self, ctx, args, out, End::Left, true),
            Cmd::RPushX => l::push(self, ctx, args, out, End::Right, true),
            Cmd::LPop => l::pop(self, ctx, args, out, End::Left),
            Cmd::RPop => l::pop(self, ctx, args, out, End::Right),
            Cmd::LLen => l::llen(self, ctx, args, out),
            Cmd::LRange => l::lrange(self, ctx, args, out),
            Cmd::LIndex => l::lindex(self, ctx, args, out),
            Cmd::LSet => l::lset(self, ctx, args, out),
            Cmd::LInsert => l::linsert(self, ctx, args, out),
            Cmd::LRem => l::lrem(self, ctx, args, out),
            Cmd::LTrim => l::ltrim(self, ctx, args, out),
            Cmd::LPos => l::lpos(self, ctx, args, out),
            Cmd::LMove => l::lmove(self, ctx, args, out),
            Cmd::RPopLPush => l::rpoplpush(self, ctx, args, out),
            Cmd::LMPop => l::lmpop(self, ctx, args, out),
            // Blocking commands are the server's (they park the client); their pops run
            // through `ops::list`'s functions.
            Cmd::BLPop
            | Cmd::BRPop
            | Cmd::BLMove
            | Cmd::BRPopLPush
            | Cmd::BLMPop
            | Cmd::BZPopMin
            | Cmd::BZPopMax
            | Cmd::BZMPop
            | Cmd::Migrate => out.error(&format!("ERR '{}' is not a shard command", spec.name)),
            Cmd::Del | Cmd::Unlink => k::del(self, ctx, args, out),
            Cmd::Exists => k::exists(self, ctx, args, out),
            Cmd::Touch => k::touch(self, ctx, args, out),
            Cmd::Type => k::type_(self, ctx, args, out),
            Cmd::Expire => k::expire(self, ctx, args, out, 1000, false, spec.name),
            Cmd::PExpire => k::expire(self, ctx, args, out, 1, false, spec.name),
            Cmd::ExpireAt => k::expire(self, ctx, args, out, 1000, true, spec.name),
            Cmd::PExpireAt => k::expire(self, ctx, args, out, 1, true, spec.name),
            Cmd::Ttl => k::ttl(self, ctx, args, out, k::TtlKind::Ttl),
            Cmd::PTtl => k::ttl(self, ctx, args, out, k::TtlKind::PTtl),
            Cmd::ExpireTime => k::ttl(self, ctx, args, out, k::TtlKind::ExpireTime),
            Cmd::PExpireTime => k::ttl(self, ctx, args, out, k::TtlKind::PExpireTime),
            Cmd::Persist => k::persist(self, ctx, args, out),
            Cmd::Rename => k::rename(self, ctx, args, out, false),
            Cmd::RenameNx => k::rename(self, ctx, args, out, true),
            Cmd::Copy => k::copy(self, ctx, args, out),
            Cmd::Dump => ops::dump::dump(self, ctx, args, out),
            Cmd::Restore | Cmd::RestoreAsking => ops::dump::restore(self, ctx, args, out),
            Cmd::Move => k::move_(self, ctx, args, out),
            Cmd::Keys => k::keys(self, ctx, args, out),
            Cmd::Scan => k::scan(self, ctx, args, out),
            Cmd::Sort => crate::ops::sort::sort(self, ctx, args, out, false),
            Cmd::SortRo => crate::ops::sort::sort(self, ctx, args, out, true),
            Cmd::RandomKey => k::randomkey(self, ctx, out),
            Cmd::DbSize => out.int(self.db_len(ctx.db) as i64),
            Cmd::FlushDb => k::flush(self, ctx, args, out, false),
            Cmd::FlushAll => k::flush(self, ctx, args, out, true),
            Cmd::SwapDb => k::swapdb(self, args, out),
            Cmd::ObjectEncoding | Cmd::ObjectFreq | Cmd::ObjectIdleTime | Cmd::ObjectRefCount => {
                k::object(self, ctx, spec.cmd, args, out)
            }
            Cmd::MemoryUsage => k::memory_usage(self, ctx, args, out),
            // Commands that touch no keyspace are the server's; reaching here is a routing bug
            // and is reported rather than hidden.
            Cmd::Object
            | Cmd::ObjectHelp
            | Cmd::Ping
            | Cmd::Multi
            | Cmd::Eval
            | Cmd::EvalSha
            | Cmd::EvalRo
            | Cmd::EvalShaRo
            | Cmd::Script
            | Cmd::ScriptLoad
            | Cmd::ScriptExists
            | Cmd::ScriptFlush
            | Cmd::ScriptKill
            | Cmd::ScriptDebug
            | Cmd::ScriptHelp
            | Cmd::FCall
            | Cmd::FCallRo
            | Cmd::Function
            | Cmd::FunctionDelete
            | Cmd::FunctionDump
            | Cmd::FunctionFlush
            | Cmd::FunctionHelp
            | Cmd::FunctionKill
            | Cmd::FunctionList
            | Cmd::FunctionLoad
            | Cmd::FunctionRestore
            | Cmd::FunctionStats
            | Cmd::Exec
            | Cmd::Discard
            | Cmd::Watch
            | Cmd::Unwatch
            | Cmd::Echo
            | Cmd::Quit
            | Cmd::Reset
            | Cmd::Hello
            | Cmd::Auth
            | Cmd::Select
            | Cmd::Client
            | Cmd::ClientId
            | Cmd::ClientSetName
            | Cmd::ClientGetName
            | Cmd::ClientList
            | Cmd::ClientInfo
            | Cmd::ClientKill
            | Cmd::ClientSetInfo
            | Cmd::ClientNoEvict
            | Cmd::ClientNoTouch
            | Cmd::ClientUnblock
            | Cmd::ClientPause
            | Cmd::ClientUnpause
            | Cmd::ClientHelp
            | Cmd::ClientReply
            | Cmd::ClientTracking
            | Cmd::ClientCaching
            | Cmd::ClientGetRedir
            | Cmd::ClientTrackingInfo
            | Cmd::Subscribe
            | Cmd::Unsubscribe
            | Cmd::PSubscribe
            | Cmd::PUnsubscribe
            | Cmd::SSubscribe
            | Cmd::SUnsubscribe
            | Cmd::Publish
            | Cmd::SPublish
            | Cmd::Pubsub
            | Cmd::PubsubChannels
            | Cmd::PubsubNumSub
            | Cmd::PubsubNumPat
            | Cmd::PubsubShardChannels
            | Cmd::PubsubShardNumSub
            | Cmd::PubsubHelp
            | Cmd::Info
            | Cmd::Cluster
            | Cmd::ClusterInfo
            | Cmd::ClusterMyId
            | Cmd::ClusterSlots
            | Cmd::ClusterShards
            | Cmd::ClusterNodes
            | Cmd::ClusterKeySlot
            | Cmd::ClusterCountKeysInSlot
            | Cmd::ClusterGetKeysInSlot
            | Cmd::ClusterHelp
            | Cmd::ClusterAddslots
            | Cmd::ClusterAddslotsrange
            | Cmd::ClusterBumpepoch
            | Cmd::ClusterCountFailureReports
            | Cmd::ClusterDelslots
            | Cmd::ClusterDelslotsrange
            | Cmd::ClusterFailover
            | Cmd::ClusterFlushslots
            | Cmd::ClusterForget
            | Cmd::ClusterLinks
            | Cmd::ClusterMeet
            | Cmd::ClusterReplicas
            | Cmd::ClusterReplicate
            | Cmd::ClusterReset
            | Cmd::ClusterSaveconfig
            | Cmd::ClusterSetConfigEpoch
            | Cmd::ClusterSetslot
            | Cmd::ClusterSlaves
            | Cmd::ReadOnly
            | Cmd::ReadWrite
            | Cmd::Asking
            | Cmd::Config
            | Cmd::ConfigGet
            | Cmd::ConfigSet
            | Cmd::ConfigResetStat
            | Cmd::ConfigRewrite
            | Cmd::ConfigHelp
            | Cmd::Time
            | Cmd::Shutdown
            | Cmd::Save
            | Cmd::BgSave
            | Cmd::LastSave
            | Cmd::Debug
            | Cmd::Monitor
            | Cmd::Psync
            | Cmd::Sync
            | Cmd::ReplConf
            | Cmd::Role
            | Cmd::Wait
            | Cmd::ReplicaOf
            | Cmd::SlaveOf
            | Cmd::Command
            | Cmd::CommandCount
            | Cmd::CommandInfo
            | Cmd::CommandDocs
            | Cmd::CommandGetKeys
            | Cmd::CommandGetKeysAndFlags
            | Cmd::CommandList
            | Cmd::CommandHelp
            | Cmd::Slowlog
            | Cmd::SlowlogGet
            | Cmd::SlowlogLen
            | Cmd::SlowlogReset
            | Cmd::SlowlogHelp
            | Cmd::Latency
            | Cmd::LatencyLatest
            | Cmd::LatencyHistory
            | Cmd::LatencyReset
            | Cmd::LatencyDoctor
            | Cmd::LatencyHistogram
            | Cmd::LatencyHelp
            | Cmd::Memory
            | Cmd::Acl
            | Cmd::AclCat
            | Cmd::AclDelUser
            | Cmd::AclDryRun
            | Cmd::AclGenPass
            | Cmd::AclGetUser
            | Cmd::AclHelp
            | Cmd::AclList
            | Cmd::AclLoad
            | Cmd::AclLog
            | Cmd::AclSave
            | Cmd::AclSetUser
            | Cmd::AclUsers
            | Cmd::AclWhoami
            | Cmd::MemoryStats
            | Cmd::MemoryDoctor
            | Cmd::MemoryPurge
            | Cmd::MemoryMallocStats
            | Cmd::MemoryHelp => {
                out.error(&format!("ERR '{}' is not a keyspace command", spec.name))
            }
        }
        self.in_command.set(outer);
        if self.feed.on {
            self.propagate(ctx, spec, &args, feed_mark, out, outer);
        }
        if spec.flags.has(percore_proto::Flags::WRITE) {
            // One per key the command changed (MSET of 100 keys: 100, as Redis's `dirty`, so
            // save points fire as they would there), and at least one per write command.
            let changed = self.feed.changes.wrapping_sub(feed_mark.0);
            self.stats.dirty += changed.max(1);
        } else if self.caller.get().is_some() {
            self.remember_reads(spec, &args);
        }
    }
}

impl Shard {
    /// Records the propagated form of the command just applied, if it changed something
    /// ([`repl`]), and ends its unit unless it runs inside another command.
    #[cold]
    fn propagate(
        &mut self,
        ctx: &ExecCtx,
        spec: &CommandSpec,
        args: &Args,
        (changes, reply_start): (u64, usize),
        out: &ReplyWriter,
        nested: bool,
    ) {
        if self.feed.changes != changes && spec.flags.has(percore_proto::Flags::WRITE) {
            let Shard {
                feed,
                dbs,
                master_view: master,
                ..
            } = self;
            let master = *master;
            let reply = out.buf.get(reply_start..).unwrap_or_default();
            let d = &mut dbs[ctx.db].dict;
            repl::command(feed, ctx.db, spec, args, reply, &mut |k| match d.get(k) {
                Some(e) => repl::After {
                    exists: master || !e.is_expired(ctx.now_ms),
                    expire_at_ms: e.expire_at_ms(),
                },
                None => repl::After {
                    exists: false,
                    expire_at_ms: 0,
                },
            });
        }
        if !nested {
            self.feed.close();
        }
    }
}

/// While clients are paused (CLIENT PAUSE, set by the server for every shard): when the
/// pause ends, unix ms; 0 when none was set. Keys do not expire and nothing is evicted
/// meanwhile.
pub static PAUSED_UNTIL_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether expiry (and eviction) stand still at `now_ms`.
#[inline]
pub fn expiry_paused(now_ms: u64) -> bool {
    let end = PAUSED_UNTIL_MS.load(std::sync::atomic::Ordering::Relaxed);
    (end != 0 && end > now_ms) || KEEP_EXPIRED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set on a replica: its keys neither expire nor are evicted here (reads see an expired
/// key as missing, but only the primary's DEL removes it), as Redis's replicas keep them.
pub static KEEP_EXPIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Calls `f` with the index of every key argument of a command: its key specs' keys, the
/// destination of ZUNIONSTORE and its kin, GEORADIUS's STORE key and SORT's STORE key.
fn command_keys(spec: &percore_proto::CommandSpec, args: &Args, mut f: impl FnMut(usize)) {
    match spec.keynum_key_indices(args) {
        Some(r) => {
            // ZUNIONSTORE and its kin name their destination before the count.
            if spec.keynum_index() == Some(2) && spec.flags.has(percore_proto::Flags::WRITE) {
                f(1);
            }
            r.for_each(&mut f);
        }
        None => spec.key_indices(args.len()).for_each(&mut f),
    }
    if let Some(i) = spec.store_key_index(args) {
        // GEORADIUS's STORE/STOREDIST destination.
        f(i);
    }
    if spec.cmd == percore_proto::Cmd::Sort {
        // STORE's destination (the last one counts).
        let store = (2..args.len().saturating_sub(1))
            .rev()
            .find(|&i| args[i].eq_ignore_ascii_case(b"store"));
        if let Some(i) = store {
            f(i + 1);
        }
    }
}

/// Runs commands against a shard with literal arguments and returns RESP2 replies (the
/// unit tests of every command family use it).
#[cfg(test)]
pub(crate) mod testing {
    use super::{ExecCtx, Shard, ShardConfig};
    use percore_proto::{command::resolve, OwnedArgs, Protocol, ReplyWriter};

    pub fn shard() -> Shard {
        Shard::new(7, ShardConfig::default())
    }

    /// Executes `args` in database 0 at time `now_ms`; returns the raw reply.
    pub fn run<T: AsRef<[u8]>>(sh: &mut Shard, now_ms: u64, args: &[T]) -> Vec<u8> {
        let owned = OwnedArgs::from_slices(args);
        let spec = resolve(&owned.args()).expect("a known command with a valid arity");
        let mut out = Vec::new();
        let ctx = ExecCtx { db: 0, now_ms };
        sh.apply(
            &ctx,
            spec,
            owned.args(),
            &mut ReplyWriter::new(&mut out, Protocol::Resp2),
        );
        out
    }

    /// A reply as text, for readable assertion messages.
    pub fn s(reply: &[u8]) -> String {
        String::from_utf8_lossy(reply).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{run, shard};

    const T0: u64 = 1_000_000;

    /// Volatile keys `v0..v{n}` expiring at T0 + 10 s, and one key without a deadline.
    fn with_volatile_keys(n: usize) -> crate::Shard {
        let mut sh = shard();
        run(&mut sh, T0, &["SET", "plain", "1"]);
        for i in 0..n {
            let k = format!("v{i}");
            assert_eq!(
                run(&mut sh, T0, &["SET", &k, "1", "PX", "10000"]),
                b"+OK\r\n"
            );
        }
        sh.expire_step(T0, 1024);
        assert_eq!(sh.dbs[0].avg_ttl_ms(), 10_000 / 50 * 49 + 10_000 / 50);
        sh
    }

    #[test]
    fn avg_ttl_is_reset_once_every_volatile_key_has_expired() {
        let mut sh = with_volatile_keys(20);
        let later = T0 + 10_001;
        let step = sh.expire_step(later, 1024);
        assert_eq!(step.expired, 20);
        assert_eq!(sh.dbs[0].expires_count, 0);
        assert_eq!(sh.dbs[0].avg_ttl_ms(), 0);
        // The stored average too: a new volatile key starts a fresh average.
        run(&mut sh, later, &["SET", "w", "1", "PX", "5000"]);
        sh.expire_step(later, 1024);
        assert_eq!(sh.dbs[0].avg_ttl_ms(), 5_000);
    }

    #[test]
    fn avg_ttl_is_reset_when_volatile_keys_are_deleted_or_persisted() {
        let mut sh = with_volatile_keys(3);
        run(&mut sh, T0, &["DEL", "v0", "v1"]);
        assert_ne!(sh.dbs[0].avg_ttl_ms(), 0, "one volatile key is left");
        run(&mut sh, T0, &["PERSIST", "v2"]);
        assert_eq!(sh.dbs[0].avg_ttl_ms(), 0);
        sh.expire_step(T0, 1024);
        assert_eq!(sh.dbs[0].avg_ttl_ms(), 0);

        // Expired but not yet reclaimed keys are found by lookups: the last one goes too.
        let mut sh = with_volatile_keys(2);
        let later = T0 + 10_001;
        assert_eq!(run(&mut sh, later, &["GET", "v0"]), b"$-1\r\n");
        assert_eq!(run(&mut sh, later, &["EXISTS", "v1"]), b":0\r\n");
        assert_eq!(sh.dbs[0].avg_ttl_ms(), 0);
    }
}
