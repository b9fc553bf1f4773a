//! String commands (Redis's `t_string.c`): GET/SET and their variants, counters, ranges, LCS.
//!
//! Argument validation follows Redis's order exactly (options first, then the key's type, then
//! its value), because clients and tests observe which error wins.

use super::{eq_ic, parse_int};
use crate::notify::{GENERIC, STRING};
use crate::{err, Entry, ExecCtx, Shard, Value, ValueRef};
use percore_proto::{parse_i64, Args, ReplyWriter};

pub fn get(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    get_reply(sh, ctx, &a[1], out);
}

/// Redis's `getGenericCommand`: the string at `key` as a bulk reply (nil when absent);
/// false after a WRONGTYPE error.
fn get_reply(sh: &mut Shard, ctx: &ExecCtx, key: &[u8], out: &mut ReplyWriter) -> bool {
    match sh.lookup_read(ctx.db, key, ctx.now_ms) {
        Some(e) if !e.value().is_string() => {
            out.error(err::WRONGTYPE);
            false
        }
        Some(e) => {
            e.value().write_bulk(out);
            true
        }
        None => {
            out.null();
            true
        }
    }
}

/// Options shared by SET and GETEX.
#[derive(Default)]
struct SetOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// (value, milliseconds per unit, absolute)
    expire: Option<(&'a [u8], i64, bool)>,
}

/// Redis's `parseExtendedStringArgumentsOrReply` for SET (`getex == false`) and GETEX.
fn parse_set_opts<'a>(a: &Args<'a>, from: usize, getex: bool) -> Result<SetOpts<'a>, &'static str> {
    let mut o = SetOpts::default();
    let mut j = from;
    while j < a.len() {
        let opt = &a[j];
        let next = a.get(j + 1);
        let has_expire = o.expire.is_some();
        if !getex && eq_ic(opt, b"nx") && !o.xx {
            o.nx = true;
        } else if !getex && eq_ic(opt, b"xx") && !o.nx {
            o.xx = true;
        } else if !getex && eq_ic(opt, b"get") {
            o.get = true;
        } else if !getex && eq_ic(opt, b"keepttl") && !has_expire {
            o.keepttl = true;
        } else if getex && eq_ic(opt, b"persist") && !has_expire {
            o.persist = true;
        } else if let (Some(unit), Some(v)) = (expire_unit(opt), next) {
            // The same expire option may repeat (the last wins); different ones conflict.
            let other_kind = o.expire.is_some_and(|(_, u, abs)| (u, abs) != unit);
            if other_kind || o.keepttl || o.persist {
                return Err(err::SYNTAX);
            }
            o.expire = Some((v, unit.0, unit.1));
            j += 1;
        } else {
            return Err(err::SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

fn expire_unit(opt: &[u8]) -> Option<(i64, bool)> {
    if eq_ic(opt, b"ex") {
        Some((1000, false))
    } else if eq_ic(opt, b"px") {
        Some((1, false))
    } else if eq_ic(opt, b"exat") {
        Some((1000, true))
    } else if eq_ic(opt, b"pxat") {
        Some((1, true))
    } else {
        None
    }
}

/// Turns an expire argument into an absolute deadline (which may already be past).
fn deadline(v: &[u8], unit_ms: i64, absolute: bool, now_ms: u64, cmd: &str) -> Result<u64, String> {
    let n = parse_i64(v).ok_or_else(|| err::NOT_INT.to_string())?;
    let invalid = || format!("ERR invalid expire time in '{cmd}' command");
    if n <= 0 || (unit_ms == 1000 && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut ms = n * unit_ms;
    if !absolute {
        ms = ms.checked_add(now_ms as i64).ok_or_else(invalid)?;
    }
    if ms <= 0 {
        return Err(invalid());
    }
    Ok(ms as u64)
}

pub fn set(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let o = match parse_set_opts(&a, 3, false) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    let when = match o
        .expire
        .map(|(v, u, abs)| deadline(v, u, abs, ctx.now_ms, "set"))
        .transpose()
    {
        Ok(w) => w,
        Err(e) => return out.error(&e),
    };
    let (key, val) = (&a[1], &a[2]);
    let existing = sh.lookup(ctx.db, key, ctx.now_ms);
    let found = existing.is_some();
    let old_deadline = existing.as_ref().map_or(0, |e| e.expire_at_ms());
    if o.get {
        match existing {
            Some(e) if !e.value().is_string() => return out.error(err::WRONGTYPE),
            Some(e) => e.value().write_bulk(out),
            None => {
                // GET reads as Redis's lookupKeyRead: a miss is an event.
                sh.notify(crate::notify::KEY_MISS, "keymiss", ctx.db, key);
                out.null()
            }
        }
    }
    if (o.nx && found) || (o.xx && !found) {
        if !o.get {
            out.null();
        }
        return;
    }
    let at = when.unwrap_or(if o.keepttl { old_deadline } else { 0 });
    // A deadline already past is stored as is, as Redis 7.0 does: the key is invisible at
    // once and reclaimed by lazy or active expiry (and counted by DBSIZE until then).
    sh.store_bytes(ctx.db, key, val, at, ctx.now_ms);
    set_events(sh, ctx.db, key, when.is_some());
    if !o.get {
        out.ok();
    }
}

pub fn setnx(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if sh.exists(ctx.db, &a[1], ctx.now_ms) {
        return out.int(0);
    }
    sh.store_bytes(ctx.db, &a[1], &a[2], 0, ctx.now_ms);
    set_events(sh, ctx.db, &a[1], false);
    out.int(1);
}

/// MSET's and MSETNX's store of one pair when the coordinator writes it: the string `value`
/// at `key`, with SET's events.
pub fn store_string(sh: &mut Shard, db: usize, key: &[u8], value: &[u8], now_ms: u64) {
    sh.store(db, key, Entry::new(Value::from_bytes(value), now_ms));
    set_events(sh, db, key, false);
}

/// The events of a SET-like store: "set", then "expire" when it set a deadline.
fn set_events(sh: &mut Shard, db: usize, key: &[u8], expire: bool) {
    sh.notify(STRING, "set", db, key);
    if expire {
        sh.notify(GENERIC, "expire", db, key);
    }
}

pub fn setex(
    sh: &mut Shard,
    ctx: &ExecCtx,
    a: Args,
    out: &mut ReplyWriter,
    unit_ms: i64,
    name: &str,
) {
    let when = match deadline(&a[2], unit_ms, false, ctx.now_ms, name) {
        Ok(w) => w,
        Err(e) => return out.error(&e),
    };
    sh.store_bytes(ctx.db, &a[1], &a[3], when, ctx.now_ms);
    set_events(sh, ctx.db, &a[1], true);
    out.ok();
}

pub fn getset(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if get_reply(sh, ctx, &a[1], out) {
        sh.store_bytes(ctx.db, &a[1], &a[2], 0, ctx.now_ms);
        set_events(sh, ctx.db, &a[1], false);
    }
}

pub fn getdel(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    match sh.lookup_read(ctx.db, &a[1], ctx.now_ms) {
        Some(e) if !e.value().is_string() => return out.error(err::WRONGTYPE),
        Some(e) => e.value().write_bulk(out),
        None => return out.null(),
    }
    sh.delete(ctx.db, &a[1]);
    sh.notify(GENERIC, "del", ctx.db, &a[1]);
}

pub fn getex(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let o = match parse_set_opts(&a, 2, true) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    // Redis looks the key up and checks its type before it validates the expire value.
    match sh.lookup_read(ctx.db, &a[1], ctx.now_ms) {
        None => return out.null(),
        Some(e) if !e.value().is_string() => return out.error(err::WRONGTYPE),
        Some(_) => {}
    }
    let when = match o
        .expire
        .map(|(v, u, abs)| deadline(v, u, abs, ctx.now_ms, "getex"))
        .transpose()
    {
        Ok(w) => w,
        Err(e) => return out.error(&e),
    };
    let volatile = match sh.lookup(ctx.db, &a[1], ctx.now_ms) {
        Some(e) => {
            e.value().write_bulk(out);
            e.expire_at_ms() != 0
        }
        None => return out.null(),
    };
    if let Some(w) = when {
        if sh.already_expired(w as i64, ctx.now_ms) {
            sh.delete(ctx.db, &a[1]);
            sh.stats.expired_keys += 1;
            sh.notify(GENERIC, "del", ctx.db, &a[1]);
        } else {
            sh.set_expire(ctx.db, &a[1], w);
            sh.notify(GENERIC, "expire", ctx.db, &a[1]);
        }
    } else if o.persist && volatile {
        sh.set_expire(ctx.db, &a[1], 0);
        sh.notify(GENERIC, "persist", ctx.db, &a[1]);
    }
}

pub fn mget(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    out.array(a.len() - 1);
    for key in a.iter().skip(1) {
        match sh.lookup_read(ctx.db, key, ctx.now_ms) {
            Some(e) if e.value().is_string() => e.value().write_bulk(out),
            _ => out.null(),
        }
    }
}

pub fn mset(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if a.len().is_multiple_of(2) {
        return out.error("ERR wrong number of arguments for 'mset' command");
    }
    for i in (1..a.len()).step_by(2) {
        sh.store_bytes(ctx.db, &a[i], &a[i + 1], 0, ctx.now_ms);
        set_events(sh, ctx.db, &a[i], false);
    }
    out.ok();
}

pub fn msetnx(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if a.len().is_multiple_of(2) {
        return out.error("ERR wrong number of arguments for 'msetnx' command");
    }
    for i in (1..a.len()).step_by(2) {
        if sh.exists(ctx.db, &a[i], ctx.now_ms) {
            return out.int(0);
        }
    }
    for i in (1..a.len()).step_by(2) {
        sh.store_bytes(ctx.db, &a[i], &a[i + 1], 0, ctx.now_ms);
        set_events(sh, ctx.db, &a[i], false);
    }
    out.int(1);
}

fn check_len(sh: &Shard, total: u64) -> Result<(), &'static str> {
    if total > sh.config.proto_max_bulk_len as u64 {
        Err(err::TOO_BIG)
    } else {
        Ok(())
    }
}

/// Most spare room a growing string gets (Redis's `SDS_MAX_PREALLOC`, 1 MB).
const MAX_PREALLOC: usize = 1024 * 1024;

/// Makes room in `data` for `len` bytes as Redis's greedy `sdsMakeRoomFor` does: nothing
/// when they fit, else a capacity of twice `len` below 1 MB and of `len` + 1 MB above.
/// APPEND and SETRANGE grow through it, so repeated appends stay amortized O(1) while a
/// large string gains at most 1 MB of slack (`Vec`'s own doubling would give a 64 MB string
/// another 64 MB for a 1-byte append).
pub(crate) fn make_room_for(data: &mut Vec<u8>, len: usize) {
    if len <= data.capacity() {
        return;
    }
    data.reserve_exact(room_for(len) - data.len());
}

/// The capacity `sdsMakeRoomFor` gives a string that must hold `len` bytes.
pub(crate) fn room_for(len: usize) -> usize {
    if len < MAX_PREALLOC {
        len * 2
    } else {
        len.saturating_add(MAX_PREALLOC)
    }
}

pub fn append(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let max = sh.config.proto_max_bulk_len as u64;
    let (key, add) = (&a[1], &a[2]);
    match sh.lookup(ctx.db, key, ctx.now_ms) {
        None => {
            let v = Value::from_bytes(add);
            let len = v.as_ref().str_len();
            sh.store(ctx.db, key, Entry::new(v, ctx.now_ms));
            sh.notify(STRING, "append", ctx.db, key);
            out.int(len as i64);
        }
        Some(e) if !e.value().is_string() => out.error(err::WRONGTYPE),
        Some(mut e) => {
            if e.value().str_len() as u64 + add.len() as u64 > max {
                return out.error(err::TOO_BIG);
            }
            let len = e.edit_raw(|data| {
                make_room_for(data, data.len() + add.len());
                data.extend_from_slice(add);
            });
            sh.notify(STRING, "append", ctx.db, key);
            out.int(len as i64);
        }
    }
}

pub fn strlen(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    match sh.lookup_read(ctx.db, &a[1], ctx.now_ms) {
        Some(e) if !e.value().is_string() => out.error(err::WRONGTYPE),
        e => out.int(e.map_or(0, |e| e.value().str_len()) as i64),
    }
}

/// INCRBY/DECRBY's increment argument (parsed before the key is looked at, as Redis does).
pub fn parse_incr(arg: &[u8], negate: bool) -> Result<i64, &'static str> {
    let v = parse_int(arg)?;
    if negate {
        if v == i64::MIN {
            return Err("ERR decrement would overflow");
        }
        return Ok(-v);
    }
    Ok(v)
}

pub fn incr_by(
    sh: &mut Shard,
    ctx: &ExecCtx,
    key: &[u8],
    incr: Result<i64, &'static str>,
    out: &mut ReplyWriter,
) {
    let incr = match incr {
        Ok(i) => i,
        Err(e) => return out.error(e),
    };
    let now = ctx.now_ms;
    let entry = sh.lookup(ctx.db, key, now);
    let old = match entry.as_ref().map(|e| e.value()) {
        None => 0,
        Some(ValueRef::Int(i)) => i,
        Some(ValueRef::Str { data, .. }) => {
            match (data.len() <= 20).then(|| parse_i64(data)).flatten() {
                Some(i) => i,
                None => return out.error(err::NOT_INT),
            }
        }
        Some(ValueRef::Hash(_) | ValueRef::Set(_) | ValueRef::List(_) | ValueRef::ZSet(_)) => {
            return out.error(err::WRONGTYPE)
        }
    };
    let Some(new) = old.checked_add(incr) else {
        return out.error(err::OVERFLOW);
    };
    match entry {
        Some(mut e) => e.set_value(Value::Int(new)),
        None => sh.store(ctx.db, key, Entry::new(Value::Int(new), now)),
    }
    sh.notify(STRING, "incrby", ctx.db, key);
    out.int(new);
}

extern "C" {
    fn percore_incrbyfloat(
        a: *const u8,
        a_len: usize,
        b: *const u8,
        b_len: usize,
        out: *mut u8,
        out_len: usize,
    ) -> std::ffi::c_long;
}

/// Longest INCRBYFLOAT result: `%.17Lf` of the largest long double is under 5 KiB.
const FLOAT_TEXT_MAX: usize = 5 * 1024 + 64;

/// The INCRBYFLOAT result text: `old + incr` computed in C `long double` and printed with
/// `%.17Lf` minus trailing zeros, as Redis does (see `ldouble.c`), so every digit matches.
pub(crate) fn float_sum(old: &[u8], incr: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = vec![0u8; FLOAT_TEXT_MAX];
    // SAFETY: the pointers and lengths describe live slices; the C function reads at most
    // `a_len`/`b_len` bytes of the inputs (copying them into its own NUL-terminated buffer)
    // and writes at most `out_len` bytes into `out`, returning how many it used.
    let n = unsafe {
        percore_incrbyfloat(
            old.as_ptr(),
            old.len(),
            incr.as_ptr(),
            incr.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    match n {
        n if n > 0 => {
            out.truncate(n as usize);
            Ok(out)
        }
        -3 => Err("ERR increment would produce NaN or Infinity"),
        _ => Err(err::NOT_FLOAT),
    }
}

pub fn incrbyfloat(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (key, incr) = (&a[1], &a[2]);
    let entry = sh.lookup(ctx.db, key, ctx.now_ms);
    if entry.as_ref().is_some_and(|e| !e.value().is_string()) {
        return out.error(err::WRONGTYPE);
    }
    let mut scratch = itoa::Buffer::new();
    let old: &[u8] = entry
        .as_ref()
        .map_or(b"0", |e| e.value().as_bytes(&mut scratch));
    let text = match float_sum(old, incr) {
        Ok(t) => t,
        Err(e) => return out.error(e),
    };
    out.bulk(&text);
    let value = Value::Str {
        data: text,
        raw: false,
    };
    match entry {
        Some(mut e) => e.set_value(value),
        None => sh.store(ctx.db, key, Entry::new(value, ctx.now_ms)),
    }
    sh.notify(STRING, "incrbyfloat", ctx.db, key);
}

pub fn getrange(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (start, end) = match (parse_int(&a[2]), parse_int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        _ => return out.error(err::NOT_INT),
    };
    let Some(e) = sh.lookup_read(ctx.db, &a[1], ctx.now_ms) else {
        return out.bulk(b"");
    };
    if !e.value().is_string() {
        return out.error(err::WRONGTYPE);
    }
    let mut scratch = itoa::Buffer::new();
    let s = e.value().as_bytes(&mut scratch);
    let len = s.len() as i64;
    if start < 0 && end < 0 && start > end {
        return out.bulk(b"");
    }
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return out.bulk(b"");
    }
    out.bulk(&s[start as usize..=end as usize]);
}

pub fn setrange(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let offset = match parse_int(&a[2]) {
        Ok(o) => o,
        Err(e) => return out.error(e),
    };
    if offset < 0 {
        return out.error("ERR offset is out of range");
    }
    let (key, value) = (&a[1], &a[3]);
    let total = offset as u64 + value.len() as u64;
    let limit = check_len(sh, total);
    match sh.lookup(ctx.db, key, ctx.now_ms) {
        None => {
            if value.is_empty() {
                return out.int(0);
            }
            if let Err(e) = limit {
                return out.error(e);
            }
            let mut data = vec![0u8; total as usize];
            data[offset as usize..].copy_from_slice(value);
            sh.store(
                ctx.db,
                key,
                Entry::new(Value::Str { data, raw: true }, ctx.now_ms),
            );
            sh.notify(STRING, "setrange", ctx.db, key);
            out.int(total as i64);
        }
        Some(e) if !e.value().is_string() => out.error(err::WRONGTYPE),
        Some(mut e) => {
            if value.is_empty() {
                return out.int(e.value().str_len() as i64);
            }
            if let Err(err) = limit {
                return out.error(err);
            }
            let len = e.edit_raw(|data| {
                if data.len() < total as usize {
                    make_room_for(data, total as usize);
                    data.resize(total as usize, 0);
                }
                data[offset as usize..total as usize].copy_from_slice(value);
            });
            sh.notify(STRING, "setrange", ctx.db, key);
            out.int(len as i64);
        }
    }
}

/// LCS's error when a key holds another type (Redis 7.0's text, not WRONGTYPE).
pub const LCS_WRONGTYPE: &str = "ERR The specified keys must contain string values";

pub fn lcs(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let mut fetch = |key: &[u8]| match sh.lookup_read(ctx.db, key, ctx.now_ms) {
        Some(e) if !e.value().is_string() => Err(()),
        e => Ok(e.map(|e| e.value().to_vec()).unwrap_or_default()),
    };
    let (Ok(va), Ok(vb)) = (fetch(&a[1]), fetch(&a[2])) else {
        return out.error(LCS_WRONGTYPE);
    };
    lcs_reply(&va, &vb, a, sh.config.proto_max_bulk_len, out);
}

/// LCS over two values already fetched (from one shard or two), with LCS's options at
/// `a[3..]`. A port of Redis's `lcsCommand`, including its quirks in range emission.
pub fn lcs_reply(sa: &[u8], sb: &[u8], a: Args, max_bulk: i64, out: &mut ReplyWriter) {
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let opt = &a[j];
        let more = j + 1 < a.len();
        if eq_ic(opt, b"idx") {
            getidx = true;
        } else if eq_ic(opt, b"len") {
            getlen = true;
        } else if eq_ic(opt, b"withmatchlen") {
            withmatchlen = true;
        } else if eq_ic(opt, b"minmatchlen") && more {
            match parse_int(&a[j + 1]) {
                Ok(v) => minmatchlen = v.max(0),
                Err(e) => return out.error(e),
            }
            j += 1;
        } else {
            return out.error(err::SYNTAX);
        }
        j += 1;
    }
    if getidx && getlen {
        return out.error("ERR If you want both the length and indexes, please just use IDX.");
    }
    if sa.len() >= u32::MAX as usize - 1 || sb.len() >= u32::MAX as usize - 1 {
        return out.error("ERR String too long for LCS");
    }
    let (alen, blen) = (sa.len(), sb.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells * 4 > max_bulk as u64 {
        return out
            .error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
    }
    let w = blen + 1;
    let mut t = vec![0u32; cells as usize];
    for i in 1..=alen {
        for jj in 1..=blen {
            t[jj + i * w] = if sa[i - 1] == sb[jj - 1] {
                t[(jj - 1) + (i - 1) * w] + 1
            } else {
                t[jj + (i - 1) * w].max(t[(jj - 1) + i * w])
            };
        }
    }
    let total = t[blen + alen * w];
    let computelcs = getidx || !getlen;
    let mut result = vec![0u8; if computelcs { total as usize } else { 0 }];
    let mut idx = total as usize;
    let (mut ar_start, mut ar_end, mut br_start, mut br_end) = (alen, 0usize, 0usize, 0usize);
    let mut ranges: Vec<[i64; 5]> = Vec::new();
    let (mut i, mut jj) = (alen, blen);
    while computelcs && i > 0 && jj > 0 {
        let mut emit = false;
        if sa[i - 1] == sb[jj - 1] {
            result[idx - 1] = sa[i - 1];
            if ar_start == alen {
                ar_start = i - 1;
                ar_end = i - 1;
                br_start = jj - 1;
                br_end = jj - 1;
            } else if ar_start == i && br_start == jj {
                ar_start -= 1;
                br_start -= 1;
            } else {
                emit = true;
            }
            if ar_start == 0 || br_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            jj -= 1;
        } else {
            let l1 = t[jj + (i - 1) * w];
            let l2 = t[(jj - 1) + i * w];
            if l1 > l2 {
                i -= 1;
            } else {
                jj -= 1;
            }
            if ar_start != alen {
                emit = true;
            }
        }
        let match_len = ar_end as i64 - ar_start as i64 + 1;
        if emit {
            if (minmatchlen == 0 || match_len >= minmatchlen) && getidx {
                ranges.push([
                    ar_start as i64,
                    ar_end as i64,
                    br_start as i64,
                    br_end as i64,
                    match_len,
                ]);
            }
            ar_start = alen;
        }
    }
    if getidx {
        out.map(2);
        out.bulk(b"matches");
        out.array(ranges.len());
        for r in &ranges {
            out.array(2 + withmatchlen as usize);
            out.array(2);
            out.int(r[0]);
            out.int(r[1]);
            out.array(2);
            out.int(r[2]);
            out.int(r[3]);
            if withmatchlen {
                out.int(r[4]);
            }
        }
        out.bulk(b"len");
        out.int(total as i64);
    } else if getlen {
        out.int(total as i64);
    } else {
        out.bulk(&result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, shard};

    fn memory_usage(sh: &mut Shard, key: &str) -> usize {
        let r = run(sh, 1, &["MEMORY", "USAGE", key]);
        let text = std::str::from_utf8(&r).unwrap();
        text.trim_start_matches(':').trim_end().parse().unwrap()
    }

    #[test]
    fn growth_follows_sds_make_room_for() {
        let mut v = b"abc".to_vec();
        make_room_for(&mut v, 3);
        assert_eq!(v.capacity(), 3, "no growth when the bytes fit");
        make_room_for(&mut v, 5);
        assert_eq!(v.capacity(), 10, "doubled below 1 MB");
        let mut v = vec![0u8; MAX_PREALLOC];
        make_room_for(&mut v, MAX_PREALLOC + 1);
        assert_eq!(v.capacity(), 2 * MAX_PREALLOC + 1, "+1 MB from 1 MB on");
    }

    /// APPEND of one byte to a 64 MB string costs at most 1 MB more, not another 64 MB.
    #[test]
    fn append_to_a_large_string_grows_by_at_most_1mb() {
        const MB: usize = 1024 * 1024;
        let mut sh = shard();
        let big = vec![b'x'; 64 * MB];
        assert_eq!(run(&mut sh, 1, &[&b"SET"[..], b"k", &big]), b"+OK\r\n");
        drop(big);
        let before = memory_usage(&mut sh, "k");
        assert_eq!(
            run(&mut sh, 1, &["APPEND", "k", "y"]),
            format!(":{}\r\n", 64 * MB + 1).into_bytes()
        );
        let after = memory_usage(&mut sh, "k");
        assert!(
            after <= before + MB + 1,
            "APPEND grew a 64 MB string from {before} to {after} bytes"
        );
        // Appends that fit in the slack do not reallocate.
        assert_eq!(
            run(&mut sh, 1, &["APPEND", "k", "zz"]),
            format!(":{}\r\n", 64 * MB + 3).into_bytes()
        );
        assert_eq!(memory_usage(&mut sh, "k"), after);
        // SETRANGE one byte past the end grows the same way.
        let big = vec![b'x'; 64 * MB];
        assert_eq!(run(&mut sh, 1, &[&b"SET"[..], b"r", &big]), b"+OK\r\n");
        drop(big);
        let before = memory_usage(&mut sh, "r");
        let end = (64 * MB).to_string();
        assert_eq!(
            run(&mut sh, 1, &["SETRANGE", "r", &end, "y"]),
            format!(":{}\r\n", 64 * MB + 1).into_bytes()
        );
        let after = memory_usage(&mut sh, "r");
        assert!(
            after <= before + MB + 1,
            "SETRANGE grew a 64 MB string from {before} to {after} bytes"
        );
    }

    #[test]
    fn float_text_matches_redis_for_decimals() {
        assert_eq!(float_sum(b"10.50", b"0.1").unwrap(), b"10.6");
        assert_eq!(float_sum(b"0.1", b"0.2").unwrap(), b"0.3");
        assert_eq!(
            float_sum(b"0.1", b"2.0e2").unwrap(),
            b"200.10000000000000001"
        );
        assert_eq!(float_sum(b"", b"1").unwrap_err(), err::NOT_FLOAT);
        assert_eq!(float_sum(b"5.0e3", b"2.0e5").unwrap(), b"205000");
        assert_eq!(float_sum(b"3", b"-3").unwrap(), b"0");
        assert_eq!(float_sum(b"-1.5", b"0.25").unwrap(), b"-1.25");
        assert_eq!(float_sum(b"abc", b"1").unwrap_err(), err::NOT_FLOAT);
        assert_eq!(float_sum(b"1", b" 1").unwrap_err(), err::NOT_FLOAT);
        assert_eq!(float_sum(b"1", b"nan").unwrap_err(), err::NOT_FLOAT);
        assert_eq!(
            float_sum(b"1", b"inf").unwrap_err(),
            "ERR increment would produce NaN or Infinity"
        );
        assert!(
            float_sum(b"1e4000", b"1").unwrap().len() >= 4000,
            "long double range, as Redis"
        );
    }
}
