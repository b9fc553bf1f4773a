//! Keyspace commands (Redis's `db.c` and `expire.c`): DEL, EXISTS, TYPE, the EXPIRE family,
//! TTLs, RENAME, COPY, MOVE, KEYS, SCAN, RANDOMKEY, FLUSHDB/FLUSHALL, SWAPDB, OBJECT.
//!
//! For commands that may span shards (RENAME, COPY, SCAN, RANDOMKEY, …) this file holds the
//! single-shard behaviour; the server composes several shards' answers with the same
//! helpers ([`parse_scan`], [`Shard::scan_keys`], [`Shard::random_key`]).

use super::{eq_ic, parse_int};
use crate::glob::{glob_match, matches_all};
use crate::notify::GENERIC;
use crate::{err, Entry, ExecCtx, Shard, Value, ValueRef, DB_COUNT};
use percore_proto::{Args, Cmd, ReplyWriter};

pub fn del(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let mut n = 0;
    for key in a.iter().skip(1) {
        if sh.lookup(ctx.db, key, ctx.now_ms).is_some() {
            sh.delete(ctx.db, key);
            sh.notify(GENERIC, "del", ctx.db, key);
            n += 1;
        }
    }
    out.int(n);
}

/// Counts keys that exist, counting repeats, with keyspace hit/miss statistics.
fn count_existing(sh: &mut Shard, ctx: &ExecCtx, a: &Args, touch: bool) -> i64 {
    let mut n = 0;
    for key in a.iter().skip(1) {
        let found = if touch {
            sh.lookup_read(ctx.db, key, ctx.now_ms).is_some()
        } else {
            let f = sh.lookup(ctx.db, key, ctx.now_ms).is_some();
            sh.count_hit(ctx.db, key, f);
            f
        };
        n += found as i64;
    }
    n
}

pub fn exists(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    out.int(count_existing(sh, ctx, &a, false));
}

pub fn touch(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    out.int(count_existing(sh, ctx, &a, true));
}

pub fn type_(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let t = sh
        .lookup(ctx.db, &a[1], ctx.now_ms)
        .map(|e| e.value().type_name());
    sh.count_hit(ctx.db, &a[1], t.is_some());
    out.simple(t.unwrap_or("none").as_bytes());
}

const EXPIRE_NX: u8 = 1;
const EXPIRE_XX: u8 = 2;
const EXPIRE_GT: u8 = 4;
const EXPIRE_LT: u8 = 8;

fn parse_expire_flags(a: &Args) -> Result<u8, String> {
    let mut f = 0u8;
    for opt in a.iter().skip(3) {
        f |= if eq_ic(opt, b"nx") {
            EXPIRE_NX
        } else if eq_ic(opt, b"xx") {
            EXPIRE_XX
        } else if eq_ic(opt, b"gt") {
            EXPIRE_GT
        } else if eq_ic(opt, b"lt") {
            EXPIRE_LT
        } else {
            return Err(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            ));
        };
    }
    if f & EXPIRE_NX != 0 && f & (EXPIRE_XX | EXPIRE_GT | EXPIRE_LT) != 0 {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if f & EXPIRE_GT != 0 && f & EXPIRE_LT != 0 {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    Ok(f)
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (Redis's `expireGenericCommand`).
pub fn expire(
    sh: &mut Shard,
    ctx: &ExecCtx,
    a: Args,
    out: &mut ReplyWriter,
    unit_ms: i64,
    absolute: bool,
    name: &str,
) {
    let flags = match parse_expire_flags(&a) {
        Ok(f) => f,
        Err(e) => return out.error(&e),
    };
    let mut when = match parse_int(&a[2]) {
        Ok(w) => w,
        Err(e) => return out.error(e),
    };
    let invalid = || format!("ERR invalid expire time in '{name}' command");
    if unit_ms == 1000 {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return out.error(&invalid());
        }
        when *= 1000;
    }
    let base = if absolute { 0 } else { ctx.now_ms as i64 };
    if when > i64::MAX - base {
        return out.error(&invalid());
    }
    when += base;
    let key = &a[1];
    let Some(e) = sh.lookup(ctx.db, key, ctx.now_ms) else {
        return out.int(0);
    };
    let current: i64 = match e.expire_at_ms() {
        0 => -1,
        at => at as i64,
    };
    if (flags & EXPIRE_NX != 0 && current != -1)
        || (flags & EXPIRE_XX != 0 && current == -1)
        || (flags & EXPIRE_GT != 0 && (when <= current || current == -1))
        || (flags & EXPIRE_LT != 0 && current != -1 && when >= current)
    {
        return out.int(0);
    }
    if sh.already_expired(when, ctx.now_ms) {
        sh.delete(ctx.db, key);
        sh.stats.expired_keys += 1;
        sh.notify(GENERIC, "del", ctx.db, key);
    } else {
        sh.set_expire(ctx.db, key, when as u64);
        sh.notify(GENERIC, "expire", ctx.db, key);
    }
    out.int(1);
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TtlKind {
    Ttl,
    PTtl,
    ExpireTime,
    PExpireTime,
}

pub fn ttl(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, kind: TtlKind) {
    let e = sh
        .lookup(ctx.db, &a[1], ctx.now_ms)
        .map(|e| e.expire_at_ms());
    sh.count_hit(ctx.db, &a[1], e.is_some());
    let Some(deadline) = e else {
        return out.int(-2);
    };
    if deadline == 0 {
        return out.int(-1);
    }
    let left = deadline.saturating_sub(ctx.now_ms) as i64;
    out.int(match kind {
        TtlKind::Ttl => (left + 500) / 1000,
        TtlKind::PTtl => left,
        TtlKind::ExpireTime => (deadline as i64 + 500) / 1000,
        TtlKind::PExpireTime => deadline as i64,
    });
}

pub fn persist(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    match sh
        .lookup(ctx.db, &a[1], ctx.now_ms)
        .map(|e| e.expire_at_ms())
    {
        Some(d) if d != 0 => {
            sh.set_expire(ctx.db, &a[1], 0);
            sh.notify(GENERIC, "persist", ctx.db, &a[1]);
            out.int(1)
        }
        _ => out.int(0),
    }
}

/// RENAME/RENAMENX with both keys on this shard.
pub fn rename(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, nx: bool) {
    let (src, dst) = (&a[1], &a[2]);
    if sh.lookup(ctx.db, src, ctx.now_ms).is_none() {
        return out.error(err::NO_SUCH_KEY);
    }
    if src == dst {
        return if nx { out.int(0) } else { out.ok() };
    }
    if nx && sh.exists(ctx.db, dst, ctx.now_ms) {
        return out.int(0);
    }
    let entry = sh
        .remove(ctx.db, src)
        .expect("source found by lookup above");
    sh.store_renamed(ctx.db, src, dst, entry);
    if nx {
        out.int(1)
    } else {
        out.ok()
    }
}

/// COPY's options: (destination db, replace).
pub fn parse_copy(a: &Args, current_db: usize) -> Result<(usize, bool), &'static str> {
    let mut db = current_db;
    let mut replace = false;
    let mut j = 3;
    while j < a.len() {
        if eq_ic(&a[j], b"replace") {
            replace = true;
        } else if eq_ic(&a[j], b"db") && j + 1 < a.len() {
            let n = parse_int(&a[j + 1])?;
            if n < i32::MIN as i64 || n > i32::MAX as i64 {
                return Err(err::NOT_INT);
            }
            if n < 0 || n >= DB_COUNT as i64 {
                return Err(err::DB_RANGE);
            }
            db = n as usize;
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok((db, replace))
}

/// COPY with both keys on this shard.
pub fn copy(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (dst_db, replace) = match parse_copy(&a, ctx.db) {
        Ok(x) => x,
        Err(e) => return out.error(e),
    };
    let (src, dst) = (&a[1], &a[2]);
    if dst_db == ctx.db && src == dst {
        return out.error(err::SAME_OBJECT);
    }
    // A copy is a new object to LRU/LFU, as Redis's dupStringObject makes one.
    let fresh = crate::Clock::Fresh { now_ms: ctx.now_ms };
    // The source is read as Redis's lookupKeyRead reads it (statistics, "keymiss").
    let Some(entry) = sh.lookup_read(ctx.db, src, ctx.now_ms).map(|e| Entry {
        clock: fresh,
        ..e.to_entry()
    }) else {
        return out.int(0);
    };
    if sh.exists(dst_db, dst, ctx.now_ms) && !replace {
        return out.int(0);
    }
    sh.store_copy(dst_db, dst, entry);
    out.int(1);
}

/// Parses a database index argument as Redis's `getIntFromObjectOrReply` + `selectDb`.
pub fn parse_db(arg: &[u8]) -> Result<usize, &'static str> {
    let n = parse_int(arg)?;
    if n < i32::MIN as i64 || n > i32::MAX as i64 {
        return Err(err::NOT_INT);
    }
    if n < 0 || n >= DB_COUNT as i64 {
        return Err(err::DB_RANGE);
    }
    Ok(n as usize)
}

pub fn move_(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let dst = match parse_db(&a[2]) {
        Ok(d) => d,
        Err(e) => return out.error(e),
    };
    if dst == ctx.db {
        return out.error(err::SAME_OBJECT);
    }
    let key = &a[1];
    if sh.lookup(ctx.db, key, ctx.now_ms).is_none() {
        return out.int(0);
    }
    if sh.exists(dst, key, ctx.now_ms) {
        return out.int(0);
    }
    let entry = sh.remove(ctx.db, key).expect("found by lookup above");
    sh.store(dst, key, entry);
    sh.notify(GENERIC, "move_from", ctx.db, key);
    sh.notify(GENERIC, "move_to", dst, key);
    out.int(1);
}

pub fn keys(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let found = sh.keys_matching(ctx.db, &a[1], ctx.now_ms);
    out.array(found.len());
    for k in &found {
        out.bulk(k);
    }
}

/// SCAN's options after the cursor.
#[derive(Clone, Debug, Default)]
pub struct ScanOpts {
    pub count: usize,
    pub pattern: Option<Vec<u8>>,
    pub type_name: Option<Vec<u8>>,
}

/// Parses a SCAN cursor as Redis 7.0's `parseScanCursorOrReply`, which calls
/// `strtoul(s, &end, 10)` on the C string and accepts the result when the first byte is not
/// a space, nothing follows the number and it did not overflow. So, byte for byte as Redis:
/// - a sign is allowed, and a negative number wraps (`-1` is 18446744073709551615, `-0` is 0);
/// - the argument ends at its first NUL byte (`"7\0x"` is 7), and an empty one is 0
///   (no digits leave `end` at the start, which is then the terminating NUL);
/// - leading zeros are fine; spaces, a lone sign, `0x…` and values above `u64::MAX` are not.
pub fn parse_cursor(arg: &[u8]) -> Result<u64, &'static str> {
    let s = arg.split(|&c| c == 0).next().unwrap_or_default();
    if s.is_empty() {
        return Ok(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Also refuses a leading space (Redis's `isspace` check) and a sign with no digits.
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(err::INVALID_CURSOR);
    }
    let mut v: u64 = 0;
    for &c in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as u64))
            .ok_or(err::INVALID_CURSOR)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Parses SCAN's `[MATCH p] [COUNT n] [TYPE t]` starting at `a[from]`.
pub fn parse_scan(a: &Args, from: usize) -> Result<ScanOpts, &'static str> {
    let mut o = ScanOpts {
        count: 10,
        ..Default::default()
    };
    let mut i = from;
    while i < a.len() {
        let more = i + 1 < a.len();
        if eq_ic(&a[i], b"count") && more {
            let n = parse_int(&a[i + 1])?;
            if n < 1 {
                return Err(err::SYNTAX);
            }
            o.count = n as usize;
        } else if eq_ic(&a[i], b"match") && more {
            let p = &a[i + 1];
            o.pattern = if matches_all(p) && p.len() == 1 {
                None
            } else {
                Some(p.to_vec())
            };
        } else if eq_ic(&a[i], b"type") && more {
            o.type_name = Some(a[i + 1].to_vec());
        } else {
            return Err(err::SYNTAX);
        }
        i += 2;
    }
    Ok(o)
}

impl Shard {
    /// RENAME's store of `entry` (taken from `src`) at `dst`, replacing any value there,
    /// with Redis's events: "new" (the destination is added afresh), "rename_from",
    /// "rename_to".
    pub fn store_renamed(&mut self, db: usize, src: &[u8], dst: &[u8], entry: Entry) {
        self.store_new(db, dst, entry);
        self.notify(GENERIC, "rename_from", db, src);
        self.notify(GENERIC, "rename_to", db, dst);
    }

    /// RENAME's source when the destination lives on another shard: the entry at `src`,
    /// removed, with its "rename_from" event (each key's events are made on its shard).
    pub fn take_renamed(&mut self, db: usize, src: &[u8]) -> Option<Entry> {
        let e = self.remove(db, src)?;
        self.notify(GENERIC, "rename_from", db, src);
        Some(e)
    }

    /// RENAME's destination when the source lives on another shard: "new", "rename_to".
    pub fn store_renamed_to(&mut self, db: usize, dst: &[u8], entry: Entry) {
        self.store_new(db, dst, entry);
        self.notify(GENERIC, "rename_to", db, dst);
    }

    /// Stores `entry` at `key` with a "new" event whether or not it replaced a value, as
    /// Redis deletes a replaced destination and adds it afresh (RENAME, COPY REPLACE).
    fn store_new(&mut self, db: usize, key: &[u8], entry: Entry) {
        if !self.store_entry(db, key, entry) {
            self.notify(crate::notify::NEW, "new", db, key);
        }
    }

    /// COPY's store of `entry` at `dst` in `db`, replacing any value there: "new", then
    /// "copy_to", as Redis (which deletes a replaced destination and adds it afresh).
    pub fn store_copy(&mut self, db: usize, dst: &[u8], entry: Entry) {
        self.store_new(db, dst, entry);
        self.notify(GENERIC, "copy_to", db, dst);
    }

    /// Counts a keyspace hit or miss (with its "keymiss" event) for lookups of `key` in
    /// `db` that do not go through `lookup_read`.
    pub fn count_hit(&mut self, db: usize, key: &[u8], found: bool) {
        if found {
            self.stats.keyspace_hits += 1;
        } else {
            self.stats.keyspace_misses += 1;
            self.notify(crate::notify::KEY_MISS, "keymiss", db, key);
        }
    }

    /// Every live key of `db` matching `pattern` (KEYS: O(N), as Redis documents).
    pub fn keys_matching(&self, db: usize, pattern: &[u8], now_ms: u64) -> Vec<Vec<u8>> {
        let all = matches_all(pattern);
        self.keys_where(
            db,
            |k| all || glob_match(pattern, k, false),
            usize::MAX,
            now_ms,
        )
        .1
    }

    /// The live keys of `db` for which `keep` holds: how many, and the first `limit` of
    /// them (a walk of the whole table: O(N)).
    pub fn keys_where(
        &self,
        db: usize,
        keep: impl Fn(&[u8]) -> bool,
        limit: usize,
        now_ms: u64,
    ) -> (usize, Vec<Vec<u8>>) {
        let dict = &self.dbs[db].dict;
        let (mut n, mut found) = (0, Vec::new());
        let mut cursor = 0;
        loop {
            cursor = dict.scan(cursor, |k, e| {
                if !e.is_expired(now_ms) && keep(k) {
                    n += 1;
                    if found.len() < limit {
                        found.push(k.to_vec());
                    }
                }
            });
            if cursor == 0 {
                return (n, found);
            }
        }
    }

    /// One SCAN step over this shard's `db` from `cursor`: visits buckets until about
    /// `count` keys are gathered or `10 × count` buckets were visited. Returns the next
    /// cursor (0 when done) and the keys that pass the filters. Expired keys are reclaimed.
    pub fn scan_keys(
        &mut self,
        db: usize,
        cursor: u64,
        opts: &ScanOpts,
        now_ms: u64,
    ) -> (u64, Vec<Vec<u8>>) {
        let mut raw: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut cursor = cursor;
        let mut budget = opts.count.saturating_mul(10);
        {
            let dict = &self.dbs[db].dict;
            loop {
                cursor = dict.scan(cursor, |k, e| raw.push((k.to_vec(), e.is_expired(now_ms))));
                budget = budget.saturating_sub(1);
                if cursor == 0 || budget == 0 || raw.len() >= opts.count {
                    break;
                }
            }
        }
        let mut keys = Vec::with_capacity(raw.len());
        for (k, expired) in raw {
            if expired && self.lookup(db, &k, now_ms).is_none() {
                continue;
            }
            if let Some(p) = &opts.pattern {
                if !glob_match(p, &k, false) {
                    continue;
                }
            }
            if let Some(t) = &opts.type_name {
                let tn = self.dbs[db]
                    .dict
                    .peek(&k)
                    .map_or("none", |e| e.value().type_name());
                if !t.eq_ignore_ascii_case(tn.as_bytes()) {
                    continue;
                }
            }
            keys.push(k);
        }
        (cursor, keys)
    }

    /// A random live key of `db`, or None when it has none. Expired keys met on the way are
    /// reclaimed; gives up after 100 expired picks in a row, as Redis does.
    pub fn random_key(&mut self, db: usize, now_ms: u64) -> Option<Vec<u8>> {
        for _ in 0..100 {
            let (key, expired) = self.with_random(db, |k, e| (k.to_vec(), e.is_expired(now_ms)))?;
            if !expired {
                return Some(key);
            }
            self.lookup(db, &key, now_ms);
        }
        None
    }

    /// Swaps two databases' contents.
    pub fn swap_dbs(&mut self, a: usize, b: usize) {
        // A key watched in either database changes when it exists in either (Redis's
        // touchAllWatchedKeysInDb).
        if !self.watches.is_empty() {
            let (w, dbs) = (&self.watches, &mut self.dbs);
            for (x, y) in [(a, b), (b, a)] {
                w.touch_db(x, |k| {
                    dbs[x].dict.get_mut(k).is_some() || dbs[y].dict.get_mut(k).is_some()
                });
            }
        }
        self.dbs.swap(a, b);
        // A client blocked on a key of either database may now find a list there (Redis's
        // scanDatabaseForReadyKeys).
        self.signal_all_ready(&[a, b]);
    }
}

/// SCAN's cursor and options, validated in Redis's order (cursor first).
pub fn parse_scan_args(a: &Args) -> Result<(u64, ScanOpts), &'static str> {
    Ok((parse_cursor(&a[1])?, parse_scan(a, 2)?))
}

pub fn scan(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (cursor, opts) = match parse_scan_args(&a) {
        Ok(x) => x,
        Err(e) => return out.error(e),
    };
    let (next, keys) = sh.scan_keys(ctx.db, cursor, &opts, ctx.now_ms);
    write_scan_reply(out, next, &keys);
}

/// `[cursor, [keys…]]` as Redis writes it (the cursor is a bulk string).
pub fn write_scan_reply(out: &mut ReplyWriter, cursor: u64, keys: &[Vec<u8>]) {
    out.array(2);
    out.bulk(itoa::Buffer::new().format(cursor).as_bytes());
    out.array(keys.len());
    for k in keys {
        out.bulk(k);
    }
}

pub fn randomkey(sh: &mut Shard, ctx: &ExecCtx, out: &mut ReplyWriter) {
    match sh.random_key(ctx.db, ctx.now_ms) {
        Some(k) => out.bulk(&k),
        None => out.null(),
    }
}

/// FLUSHDB/FLUSHALL `[ASYNC|SYNC]`. The old tables are handed to the lazy-free queue so the
/// request path never frees millions of entries at once.
pub fn flush(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, all: bool) {
    if a.len() > 2 || (a.len() == 2 && !eq_ic(&a[1], b"sync") && !eq_ic(&a[1], b"async")) {
        return out.error(err::SYNTAX);
    }
    if all {
        for db in 0..DB_COUNT {
            sh.flush_db(db);
        }
    } else {
        sh.flush_db(ctx.db);
    }
    out.ok();
}

/// Parses SWAPDB's two indices with Redis's messages.
pub fn parse_swapdb(a: &Args) -> Result<(usize, usize), &'static str> {
    let first = percore_proto::parse_i64(&a[1]).filter(|n| i32::try_from(*n).is_ok());
    let first = first.ok_or("ERR invalid first DB index")?;
    let second = percore_proto::parse_i64(&a[2]).filter(|n| i32::try_from(*n).is_ok());
    let second = second.ok_or("ERR invalid second DB index")?;
    let ok = |n: i64| (0..DB_COUNT as i64).contains(&n);
    if !ok(first) || !ok(second) {
        return Err(err::DB_RANGE);
    }
    Ok((first as usize, second as usize))
}

pub fn swapdb(sh: &mut Shard, a: Args, out: &mut ReplyWriter) {
    match parse_swapdb(&a) {
        Ok((x, y)) => {
            sh.swap_dbs(x, y);
            out.ok()
        }
        Err(e) => out.error(e),
    }
}

/// OBJECT ENCODING/FREQ/IDLETIME/REFCOUNT key.
pub fn object(sh: &mut Shard, ctx: &ExecCtx, which: Cmd, a: Args, out: &mut ReplyWriter) {
    if sh.lookup(ctx.db, &a[2], ctx.now_ms).is_none() {
        return out.null();
    }
    let lfu = sh.config.evict.policy.is_lfu();
    let e = sh.dbs[ctx.db]
        .dict
        .peek(&a[2])
        .expect("found by lookup just above");
    match which {
        Cmd::ObjectEncoding => out.bulk(e.value().encoding().as_bytes()),
        Cmd::ObjectIdleTime if lfu => out.error(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        Cmd::ObjectIdleTime => out.int(crate::evict::idle_s(e.clock(), ctx.now_ms) as i64),
        Cmd::ObjectFreq if lfu => out.int(
            crate::evict::lfu_decayed(e.clock(), ctx.now_ms, sh.config.evict.lfu_decay_time)
                as i64,
        ),
        Cmd::ObjectRefCount => out.int(refcount(e.value())),
        _ => out.error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
    }
}

/// OBJECT REFCOUNT's answer (and DEBUG OBJECT's `refcount`): Redis shares the integers
/// 0..9999 (refcount INT_MAX) when no LRU/LFU policy is set; every other value is its key's.
pub(crate) fn refcount(v: ValueRef) -> i64 {
    match v {
        ValueRef::Int(i) if (0..10_000).contains(&i) => i32::MAX as i64,
        _ => 1,
    }
}

/// MEMORY USAGE key [SAMPLES count]: the entry's node (header, key, inline value), a value
/// allocation of its own if it has one, and a bucket slot. SAMPLES is accepted for
/// compatibility: a string has nothing to sample.
pub fn memory_usage(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    match a.len() {
        3 => {}
        5 if a[3].eq_ignore_ascii_case(b"samples") => {
            if percore_proto::parse_i64(&a[4]).is_none_or(|n| n < 0) {
                return out.error(err::NOT_INT);
            }
        }
        _ => return out.error(err::SYNTAX),
    }
    match sh.lookup(ctx.db, &a[2], ctx.now_ms) {
        None => out.null(),
        Some(e) => {
            let bytes = e.get().alloc_bytes() + crate::dict::BUCKET_BYTES;
            out.int(bytes as i64)
        }
    }
}

/// Builds an entry for a value moved between shards (cross-shard RENAME/COPY).
pub fn entry_with_deadline(value: Value, deadline_ms: u64, now_ms: u64) -> Entry {
    let mut e = Entry::new(value, now_ms);
    e.expire_at_ms = deadline_ms;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, s, shard};

    /// MEMORY USAGE of a small hash or sorted set is its one node (15-byte header, key,
    /// 4-byte pack length, 4-byte count, the pack) and a bucket slot.
    #[test]
    fn memory_usage_counts_packed_collections_in_their_node() {
        let mut sh = shard();
        let usage = |sh: &mut Shard, k: &str| s(&run(sh, 1, &["MEMORY", "USAGE", k]));
        run(&mut sh, 1, &["HSET", "h", "f", "vv", "g", "w"]);
        assert_eq!(
            usage(&mut sh, "h"),
            format!(":{}\r\n", 15 + 1 + 8 + 5 + 4 + 8)
        );
        run(&mut sh, 1, &["HDEL", "h", "g"]);
        assert_eq!(usage(&mut sh, "h"), format!(":{}\r\n", 15 + 1 + 8 + 5 + 8));
        run(&mut sh, 1, &["ZADD", "z", "1", "a", "1.5", "b"]);
        // 1: one byte of score; 1.5: a flag byte and 8 bytes.
        assert_eq!(
            usage(&mut sh, "z"),
            format!(":{}\r\n", 15 + 1 + 8 + 3 + 11 + 8)
        );
        assert_eq!(
            s(&run(&mut sh, 1, &["OBJECT", "ENCODING", "z"])),
            "$8\r\nlistpack\r\n"
        );
    }

    /// Redis 7.0 parses the cursor with `strtoul`: signs are accepted and a negative
    /// cursor wraps; the reply for such a cursor is an ordinary one.
    #[test]
    fn scan_cursor_follows_strtoul() {
        assert_eq!(parse_cursor(b"0"), Ok(0));
        assert_eq!(parse_cursor(b"007"), Ok(7));
        assert_eq!(parse_cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"-0"), Ok(0));
        assert_eq!(parse_cursor(b"+5"), Ok(5));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"-18446744073709551615"), Ok(1));
        assert_eq!(parse_cursor(b"-9223372036854775808"), Ok(1 << 63));
        assert_eq!(parse_cursor(b""), Ok(0));
        assert_eq!(parse_cursor(b"5\0x"), Ok(5));
        assert_eq!(parse_cursor(b"\0xx"), Ok(0));
        for bad in [
            &b"18446744073709551616"[..],
            b"-18446744073709551616",
            b"99999999999999999999999",
            b" 1",
            b"\t1",
            b"1 ",
            b"-",
            b"+",
            b"- 1",
            b"--1",
            b"0x10",
            b"abc",
            b"1.5",
        ] {
            assert_eq!(
                parse_cursor(bad),
                Err(err::INVALID_CURSOR),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scan_with_negative_and_huge_cursors() {
        let mut sh = shard();
        let run = |sh: &mut Shard, now: u64, args: &[&str]| s(&run(sh, now, args));
        // An empty database ends every walk at once, as Redis's dictScan does.
        for c in ["-1", "-2", "18446744073709551615", "+0", ""] {
            assert_eq!(
                run(&mut sh, 1, &["SCAN", c]),
                "*2\r\n$1\r\n0\r\n*0\r\n",
                "SCAN {c:?}"
            );
        }
        assert_eq!(
            run(&mut sh, 1, &["SCAN", "18446744073709551616"]),
            "-ERR invalid cursor\r\n"
        );
        assert_eq!(
            run(&mut sh, 1, &["SCAN", "x", "COUNT", "0"]),
            "-ERR invalid cursor\r\n",
            "the cursor is checked before the options"
        );
        // With keys, an all-ones cursor visits the last bucket and the walk is complete
        // (the increment in reverse-binary order carries out of every bit).
        run(&mut sh, 1, &["SET", "a", "1"]);
        run(&mut sh, 1, &["SET", "b", "2"]);
        let r = run(&mut sh, 1, &["SCAN", "-1", "COUNT", "1"]);
        assert!(r.starts_with("*2\r\n$1\r\n0\r\n*"), "{r:?}");
    }
}
