//! DUMP and RESTORE (Redis's `cluster.c`): a key's value in Redis's serialized form (an
//! RDB value, the RDB version, a CRC64: [`crate::rdb`]), so values move between Redis and
//! percore in both directions.
//!
//! RESTORE checks in Redis's order, with its errors: options, an existing key (BUSYKEY),
//! the TTL, the payload's footer, then the value. A TTL already past stores nothing (and
//! deletes a key REPLACE named, with a "del" event). IDLETIME and FREQ set the key's
//! LRU/LFU word as Redis's `objectSetLRUOrLFU` does: the one the policy in force reads.

use crate::notify::GENERIC;
use crate::ops::{eq_ic, parse_int};
use crate::rdb::{self, Reader};
use crate::{err, Entry, ExecCtx, Shard};
use percore_proto::{Args, ReplyWriter};

pub fn dump(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let limits = sh.config.list_limits;
    let Some(e) = sh.lookup_read(ctx.db, &a[1], ctx.now_ms) else {
        return out.null();
    };
    let mut body = Vec::new();
    rdb::value::encode(e.value(), limits, &mut body);
    out.bulk(&rdb::seal(body));
}

/// RESTORE's options after the payload.
#[derive(Default)]
struct Options {
    replace: bool,
    absttl: bool,
    idle_s: Option<i64>,
    freq: Option<i64>,
}

fn parse_options(a: &Args) -> Result<Options, &'static str> {
    let mut o = Options::default();
    let mut j = 4;
    while j < a.len() {
        let more = j + 1 < a.len();
        if eq_ic(&a[j], b"replace") {
            o.replace = true;
        } else if eq_ic(&a[j], b"absttl") {
            o.absttl = true;
        } else if eq_ic(&a[j], b"idletime") && more && o.freq.is_none() {
            let v = parse_int(&a[j + 1])?;
            if v < 0 {
                return Err("ERR Invalid IDLETIME value, must be >= 0");
            }
            o.idle_s = Some(v);
            j += 1;
        } else if eq_ic(&a[j], b"freq") && more && o.idle_s.is_none() {
            let v = parse_int(&a[j + 1])?;
            if !(0..=255).contains(&v) {
                return Err("ERR Invalid FREQ value, must be >= 0 and <= 255");
            }
            o.freq = Some(v);
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

pub fn restore(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let o = match parse_options(&a) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    let key = &a[1];
    if !o.replace && sh.exists(ctx.db, key, ctx.now_ms) {
        return out.error("BUSYKEY Target key name already exists.");
    }
    let ttl = match parse_int(&a[2]) {
        Ok(t) if t < 0 => return out.error("ERR Invalid TTL value, must be >= 0"),
        Ok(t) => t,
        Err(e) => return out.error(e),
    };
    if rdb::open_up_to(&a[3], rdb::RDB_VERSION_READ_MAX).is_none() {
        return out.error("ERR DUMP payload version or checksum are wrong");
    }
    // Redis reads the value from the whole payload, footer included: a value cut short
    // whose last string runs into the footer loads with the footer's bytes. So does this.
    let seed = sh.next_rand();
    let Ok(value) = rdb::value::decode(&mut Reader::new(&a[3]), &sh.config, seed) else {
        return out.error("ERR Bad data format");
    };
    let deleted = o.replace && sh.delete(ctx.db, key);
    // A relative TTL so large that the deadline overflows is in the past, as in Redis
    // (whose `ttl += mstime()` wraps).
    let deadline_ms = match (ttl, o.absttl) {
        (0, _) => 0,
        (t, true) => t,
        (t, false) => t.wrapping_add(ctx.now_ms as i64),
    };
    // Redis's `checkAlreadyExpired`: a deadline not after now is no key at all.
    if deadline_ms != 0 && sh.already_expired(deadline_ms, ctx.now_ms) {
        if deleted {
            sh.notify(GENERIC, "del", ctx.db, key);
        }
        return out.ok();
    }
    let clock = rdb::arriving_clock(
        sh.config.evict.policy,
        o.idle_s.map(|i| i as u64),
        o.freq.map(|f| f as u8),
        ctx.now_ms,
    );
    let entry = Entry {
        value,
        expire_at_ms: deadline_ms as u64,
        clock,
    };
    // The key is absent (checked, or deleted just above): storing it is a "new" event, as
    // Redis's dbAdd.
    sh.store(ctx.db, key, entry);
    sh.notify(GENERIC, "restore", ctx.db, key);
    out.ok();
}
