//! Hash commands (Redis's `t_hash.c`).
//!
//! Argument checks follow Redis's order (arity and numbers first, then the key's type, then
//! the stored value), because clients and tests observe which error wins. A hash emptied by
//! HDEL is deleted with it, as Redis deletes empty collections.

use super::string::float_sum;
use super::{eq_ic, parse_int};
use crate::notify::HASH;
use crate::types::hash::{Hash, HashRef};
use crate::{err, ExecCtx, Shard, Value, ValueRef};
use percore_proto::{parse_i64, Args, ReplyWriter};

const NOT_INT: &str = "ERR hash value is not an integer";
const NOT_FLOAT: &str = "ERR hash value is not a float";

/// [`super::write`] for a hash, created empty when `create` is set.
fn write<R>(
    sh: &mut Shard,
    ctx: &ExecCtx,
    key: &[u8],
    create: bool,
    out: &mut ReplyWriter,
    event: impl FnOnce(&R) -> Option<(u16, &'static str)>,
    f: impl FnOnce(&mut Hash, u64) -> R,
) -> Result<Option<R>, ()> {
    let make = |_: u64| Value::Hash(Box::default());
    super::write(sh, ctx, key, create.then_some(&make as _), out, event, f)
}

pub fn hset(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, hmset: bool) {
    if !a.len().is_multiple_of(2) {
        let name = if hmset { "hmset" } else { "hset" };
        return out.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    let limits = sh.config.hash_limits;
    let Ok(Some(added)) = write(
        sh,
        ctx,
        &a[1],
        true,
        out,
        |_| Some((HASH, "hset")),
        |h, seed| {
            // A pack holding any argument longer than the value limit converts first (Redis's
            // `hashTypeTryConversion`).
            let longest = a.iter().skip(2).map(|x| x.len()).max().unwrap_or(0);
            h.convert_for_len(longest, limits, seed);
            (2..a.len())
                .step_by(2)
                .filter(|&i| h.set(&a[i], &a[i + 1], limits, seed))
                .count()
        },
    ) else {
        return;
    };
    if hmset {
        out.ok();
    } else {
        out.int(added as i64);
    }
}

pub fn hsetnx(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let limits = sh.config.hash_limits;
    let (field, value) = (&a[2], &a[3]);
    let event: super::EventOf<bool> = |&set| set.then_some((HASH, "hset"));
    if let Ok(Some(set)) = write(sh, ctx, &a[1], true, out, event, |h, seed| {
        // An existing field is left alone, and so is the encoding (Redis converts only
        // when it sets).
        h.get(field).is_none() && h.set(field, value, limits, seed)
    }) {
        out.int(set as i64);
    }
}

pub fn hget(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    match super::read::<Hash>(sh, ctx, &a[1], out) {
        Ok(Some(h)) => match h.get(&a[2]) {
            Some(v) => v.write_bulk(out),
            None => out.null(),
        },
        Ok(None) => out.null(),
        Err(()) => {}
    }
}

pub fn hmget(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let Ok(h) = super::read::<Hash>(sh, ctx, &a[1], out) else {
        return;
    };
    out.array(a.len() - 2);
    for field in a.iter().skip(2) {
        match h.and_then(|h| h.get(field)) {
            Some(v) => v.write_bulk(out),
            None => out.null(),
        }
    }
}

/// What HGETALL, HKEYS and HVALS return of each pair.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Both,
    Fields,
    Values,
}

pub fn hgetall(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, part: Part) {
    let h = match super::read::<Hash>(sh, ctx, &a[1], out) {
        Ok(h) => h,
        Err(()) => return,
    };
    let n = h.map_or(0, |h| h.len());
    match part {
        Part::Both => out.map(n),
        _ => out.array(n),
    }
    let Some(h) = h else { return };
    h.for_each(|f, v| {
        if part != Part::Values {
            out.bulk(f);
        }
        if part != Part::Fields {
            v.write_bulk(out);
        }
    });
}

pub fn hdel(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let event: super::EventOf<usize> = |&n| (n > 0).then_some((HASH, "hdel"));
    match write(sh, ctx, &a[1], false, out, event, |h, _| {
        a.iter().skip(2).filter(|f| h.remove(f)).count()
    }) {
        Ok(Some(n)) => out.int(n as i64),
        Ok(None) => out.int(0),
        Err(()) => {}
    }
}

pub fn hlen(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(h) = super::read::<Hash>(sh, ctx, &a[1], out) {
        out.int(h.map_or(0, |h| h.len()) as i64);
    }
}

pub fn hstrlen(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(h) = super::read::<Hash>(sh, ctx, &a[1], out) {
        let n = h.and_then(|h| h.get(&a[2])).map_or(0, |v| v.str_len());
        out.int(n as i64);
    }
}

pub fn hexists(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(h) = super::read::<Hash>(sh, ctx, &a[1], out) {
        out.int(h.is_some_and(|h| h.get(&a[2]).is_some()) as i64);
    }
}

pub fn hincrby(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let incr = match parse_int(&a[3]) {
        Ok(i) => i,
        Err(e) => return out.error(e),
    };
    let limits = sh.config.hash_limits;
    let field = &a[2];
    let event: super::EventOf<Result<i64, &str>> = |r| r.is_ok().then_some((HASH, "hincrby"));
    let r = write(sh, ctx, &a[1], true, out, event, |h, seed| {
        let old = match h.get(field) {
            None => 0,
            Some(ValueRef::Int(i)) => i,
            Some(v) => parse_i64(&v.to_vec()).ok_or(NOT_INT)?,
        };
        let new = old.checked_add(incr).ok_or(err::OVERFLOW)?;
        h.set(
            field,
            itoa::Buffer::new().format(new).as_bytes(),
            limits,
            seed,
        );
        Ok(new)
    });
    match r {
        Ok(Some(Ok(n))) => out.int(n),
        Ok(Some(Err(e))) => out.error(e),
        _ => {}
    }
}

pub fn hincrbyfloat(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    // The increment alone first: not a number, or not finite.
    match float_sum(b"0", &a[3]) {
        Ok(_) => {}
        Err(e) if e == err::NOT_FLOAT => return out.error(e),
        Err(_) => return out.error("ERR value is NaN or Infinity"),
    }
    let limits = sh.config.hash_limits;
    let (field, incr) = (&a[2], &a[3]);
    let event: super::EventOf<Result<Vec<u8>, &str>> =
        |r| r.is_ok().then_some((HASH, "hincrbyfloat"));
    let r = write(sh, ctx, &a[1], true, out, event, |h, seed| {
        let old = h.get(field).map_or_else(|| b"0".to_vec(), |v| v.to_vec());
        let text =
            float_sum(&old, incr).map_err(|e| if e == err::NOT_FLOAT { NOT_FLOAT } else { e })?;
        h.set(field, &text, limits, seed);
        Ok(text)
    });
    match r {
        Ok(Some(Ok(text))) => out.bulk(&text),
        Ok(Some(Err(e))) => out.error(e),
        _ => {}
    }
}

pub fn hscan(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    super::scan_collection::<Hash>(sh, ctx, a, out, |h: HashRef, cursor, count, sink| {
        h.scan(cursor, count, |f, v| sink(f, Some(v)))
    });
}

/// HRANDFIELD's reply for a count with values: pairs in RESP3, a flat list in RESP2.
fn write_picks_header(out: &mut ReplyWriter, n: usize, withvalues: bool) {
    out.array(if withvalues && !out.resp3() { n * 2 } else { n });
}

/// One pick of an HRANDFIELD reply begun by [`write_picks_header`].
fn write_pick(out: &mut ReplyWriter, f: &[u8], v: ValueRef, withvalues: bool) {
    if withvalues && out.resp3() {
        out.array(2);
    }
    out.bulk(f);
    if withvalues {
        v.write_bulk(out);
    }
}

pub fn hrandfield(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let mut x = sh.next_rand();
    let mut rand = move || crate::xorshift(&mut x);
    if a.len() == 2 {
        match super::read::<Hash>(sh, ctx, &a[1], out) {
            Ok(Some(h)) => match h.random_pair(&mut rand) {
                Some((f, _)) => out.bulk(f),
                None => out.null(),
            },
            Ok(None) => out.null(),
            Err(()) => {}
        }
        return;
    }
    let count = match super::parse_signed_count(&a[2]).and_then(|c| {
        super::repeat_count_ok(sh, c)?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => return out.error(e),
    };
    if a.len() > 4 || (a.len() == 4 && !eq_ic(&a[3], b"withvalues")) {
        return out.error(err::SYNTAX);
    }
    let withvalues = a.len() == 4;
    if withvalues && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return out.error("ERR value is out of range");
    }
    let h = match super::read::<Hash>(sh, ctx, &a[1], out) {
        Ok(Some(h)) => h,
        Ok(None) => return out.array(0),
        Err(()) => return,
    };
    let size = h.len();
    let mut picks: Vec<(&[u8], ValueRef)> = Vec::new();
    if count < 0 {
        // With repetitions: O(count), as Redis documents, written as picked (the hash is
        // not empty, so every pick finds a pair).
        let n = count.unsigned_abs() as usize;
        write_picks_header(out, n, withvalues);
        for _ in 0..n {
            let (f, v) = h
                .random_pair(&mut rand)
                .expect("a hash that exists has fields");
            write_pick(out, f, v, withvalues);
        }
        return;
    } else if count as usize >= size {
        h.for_each(|f, v| picks.push((f, v)));
    } else if matches!(h, HashRef::Pack(_)) || (count as usize) * 3 > size {
        // Most of the hash: take all and keep a random `count` of them.
        h.for_each(|f, v| picks.push((f, v)));
        for i in 0..count as usize {
            let j = i + (rand() % (picks.len() - i) as u64) as usize;
            picks.swap(i, j);
        }
        picks.truncate(count as usize);
    } else {
        // A few of many: random picks until `count` distinct ones.
        let mut seen = std::collections::HashSet::new();
        while picks.len() < count as usize {
            if let Some((f, v)) = h.random_pair(&mut rand) {
                if seen.insert(f) {
                    picks.push((f, v));
                }
            }
        }
    }
    write_picks_header(out, picks.len(), withvalues);
    for (f, v) in picks {
        write_pick(out, f, v, withvalues);
    }
}
