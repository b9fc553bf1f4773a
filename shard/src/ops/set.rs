//! Set commands (Redis's `t_set.c`).
//!
//! Argument checks follow Redis's order, because clients and tests observe which error
//! wins. A set emptied by SREM, SPOP or SMOVE is deleted with it; a *STORE with an empty
//! result deletes its destination. Multi-key commands whose keys live on several shards
//! run here too, on a scratch shard the coordinator fills (`server/src/coordinated.rs`).

use super::eq_ic;
use crate::notify::SET;
use crate::types::set::{Set, SetRef};
use crate::{err, Entry, ExecCtx, Shard, Value, ValueRef};
use percore_proto::{parse_i64, Args, ReplyWriter};

/// [`super::write`] for a set; when absent and `create` names a first member, an empty set
/// in the encoding that member calls for is created (Redis's `setTypeCreate`).
fn write<R>(
    sh: &mut Shard,
    ctx: &ExecCtx,
    key: &[u8],
    create: Option<&[u8]>,
    out: &mut ReplyWriter,
    event: impl FnOnce(&R) -> Option<(u16, &'static str)>,
    f: impl FnOnce(&mut Set, u64) -> R,
) -> Result<Option<R>, ()> {
    let make = |seed: u64| Value::Set(Box::new(Set::for_member(create.unwrap_or_default(), seed)));
    super::write(sh, ctx, key, create.map(|_| &make as _), out, event, f)
}

pub fn sadd(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let limits = sh.config.set_limits;
    let event = |&n: &usize| (n > 0).then_some((SET, "sadd"));
    if let Ok(Some(n)) = write(sh, ctx, &a[1], Some(&a[2]), out, event, |s, seed| {
        a.iter().skip(2).filter(|m| s.add(m, limits, seed)).count()
    }) {
        out.int(n as i64);
    }
}

pub fn srem(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let event = |&n: &usize| (n > 0).then_some((SET, "srem"));
    match write(sh, ctx, &a[1], None, out, event, |s, _| {
        a.iter().skip(2).filter(|m| s.remove(m)).count()
    }) {
        Ok(Some(n)) => out.int(n as i64),
        Ok(None) => out.int(0),
        Err(()) => {}
    }
}

pub fn sismember(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(s) = super::read::<Set>(sh, ctx, &a[1], out) {
        out.int(s.is_some_and(|s| s.contains(&a[2])) as i64);
    }
}

pub fn smismember(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(s) = super::read::<Set>(sh, ctx, &a[1], out) {
        out.array(a.len() - 2);
        for m in a.iter().skip(2) {
            out.int(s.is_some_and(|s| s.contains(m)) as i64);
        }
    }
}

pub fn scard(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(s) = super::read::<Set>(sh, ctx, &a[1], out) {
        out.int(s.map_or(0, |s| s.len()) as i64);
    }
}

/// A whole set as a RESP3 set (an array in RESP2).
fn write_members(out: &mut ReplyWriter, s: SetRef) {
    out.set(s.len());
    s.for_each(|m| out.bulk(m));
}

pub fn smembers(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    match super::read::<Set>(sh, ctx, &a[1], out) {
        Ok(Some(s)) => write_members(out, s),
        Ok(None) => out.set(0),
        Err(()) => {}
    }
}

pub fn sscan(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    super::scan_collection::<Set>(sh, ctx, a, out, |s: SetRef, cursor, count, sink| {
        s.scan(cursor, count, |m| sink(m, None))
    });
}

fn rng(sh: &mut Shard) -> impl FnMut() -> u64 {
    let mut x = sh.next_rand();
    move || crate::xorshift(&mut x)
}

pub fn spop(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if a.len() > 3 {
        return out.error(err::SYNTAX);
    }
    let mut rand = rng(sh);
    if a.len() == 2 {
        let event = |m: &Option<Vec<u8>>| m.as_ref().map(|_| (SET, "spop"));
        match write(sh, ctx, &a[1], None, out, event, |s, _| {
            let m = s.random(&mut rand)?;
            s.remove(&m);
            Some(m)
        }) {
            Ok(Some(Some(m))) => out.bulk(&m),
            Ok(_) => out.null(),
            Err(()) => {}
        }
        return;
    }
    // Redis's getPositiveLongFromObjectOrReply: one text for a non-number and a negative.
    let count = match parse_i64(&a[2]) {
        Some(n) if n >= 0 => n as u64,
        _ => return out.error("ERR value is out of range, must be positive"),
    };
    let event = |v: &Vec<Vec<u8>>| (!v.is_empty()).then_some((SET, "spop"));
    let r = write(sh, ctx, &a[1], None, out, event, |s, _| {
        let mut popped = Vec::new();
        if count >= s.len() as u64 {
            popped = s.members();
            for m in &popped {
                s.remove(m);
            }
        } else {
            while (popped.len() as u64) < count {
                if let Some(m) = s.random(&mut rand) {
                    s.remove(&m);
                    popped.push(m);
                }
            }
        }
        popped
    });
    match r {
        Ok(Some(popped)) => {
            out.set(popped.len());
            for m in &popped {
                out.bulk(m);
            }
        }
        Ok(None) => out.set(0),
        Err(()) => {}
    }
}

pub fn srandmember(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if a.len() > 3 {
        return out.error(err::SYNTAX);
    }
    let mut rand = rng(sh);
    if a.len() == 2 {
        match super::read::<Set>(sh, ctx, &a[1], out) {
            Ok(Some(s)) => match s.random(&mut rand) {
                Some(m) => out.bulk(&m),
                None => out.null(),
            },
            Ok(None) => out.null(),
            Err(()) => {}
        }
        return;
    }
    let l = match super::parse_signed_count(&a[2]).and_then(|l| {
        super::repeat_count_ok(sh, l)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => return out.error(e),
    };
    let s = match super::read::<Set>(sh, ctx, &a[1], out) {
        Ok(Some(s)) => s,
        Ok(None) => return out.array(0),
        Err(()) => return,
    };
    let (count, uniq) = (l.unsigned_abs() as usize, l >= 0);
    if count == 0 {
        return out.array(0);
    }
    if !uniq || count == 1 {
        // With repetitions (or one): O(count), as Redis documents.
        out.array(count);
        for _ in 0..count {
            match s.random(&mut rand) {
                Some(m) => out.bulk(&m),
                None => out.null(),
            }
        }
        return;
    }
    if count >= s.len() {
        // The whole set, as an array (SPOP and SMEMBERS answer RESP3 sets; this does not).
        out.array(s.len());
        return s.for_each(|m| out.bulk(m));
    }
    let mut members = s.members();
    for i in 0..count {
        let j = i + (rand() % (members.len() - i) as u64) as usize;
        members.swap(i, j);
    }
    out.array(count);
    for m in &members[..count] {
        out.bulk(m);
    }
}

pub fn smove(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (src, dst, member) = (&a[1], &a[2], &a[3]);
    let kind = |sh: &mut Shard, k: &[u8]| {
        sh.lookup(ctx.db, k, ctx.now_ms)
            .map(|e| matches!(e.value(), ValueRef::Set(_)))
    };
    let (src_kind, dst_kind) = (kind(sh, src), kind(sh, dst));
    match src_kind {
        None => return out.int(0),
        Some(false) => return out.error(err::WRONGTYPE),
        Some(true) if dst_kind == Some(false) => return out.error(err::WRONGTYPE),
        Some(true) => {}
    }
    if src == dst {
        let there = super::read::<Set>(sh, ctx, src, out)
            .ok()
            .flatten()
            .is_some_and(|s| s.contains(member));
        return out.int(there as i64);
    }
    let removed = |&r: &bool| r.then_some((SET, "srem"));
    let Ok(Some(true)) = write(sh, ctx, src, None, out, removed, |s, _| s.remove(member)) else {
        return out.int(0);
    };
    let limits = sh.config.set_limits;
    let added = |&r: &bool| r.then_some((SET, "sadd"));
    let _ = write(sh, ctx, dst, Some(member), out, added, |s, seed| {
        s.add(member, limits, seed)
    });
    out.int(1);
}

/// Which set algebra a command does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Inter,
    Union,
    Diff,
}

/// The members of `op` over `keys` once every key's type is checked (a missing key is an
/// empty set, another type a WRONGTYPE reply and None, whatever came before it). The sets
/// are read where they are, not copied; an intersection stops at `limit` members (0: none).
fn combine_members(
    sh: &mut Shard,
    ctx: &ExecCtx,
    op: Op,
    keys: &[&[u8]],
    limit: usize,
    out: &mut ReplyWriter,
) -> Option<Vec<Vec<u8>>> {
    // Expiry, keyspace statistics and the type check need the shard mutably; the sets are
    // then borrowed together.
    for k in keys {
        let is_set = sh
            .lookup_read(ctx.db, k, ctx.now_ms)
            .map(|e| matches!(e.value(), ValueRef::Set(_)));
        if is_set == Some(false) {
            out.error(err::WRONGTYPE);
            return None;
        }
    }
    let dict = &sh.dbs[ctx.db].dict;
    let sets: Vec<Option<SetRef>> = keys
        .iter()
        .map(|k| match dict.peek(k).map(|e| e.value()) {
            Some(ValueRef::Set(s)) => Some(s),
            _ => None,
        })
        .collect();
    let mut v = Vec::new();
    match op {
        Op::Inter if sets.iter().any(Option::is_none) => {}
        Op::Inter => {
            let mut sets: Vec<SetRef> = sets.into_iter().flatten().collect();
            sets.sort_by_key(|s| s.len());
            let (first, rest) = sets.split_first().expect("at least one key");
            let limit = if limit == 0 { usize::MAX } else { limit };
            first.for_each(|m| {
                if v.len() < limit && rest.iter().all(|s| s.contains(m)) {
                    v.push(m.to_vec())
                }
            });
        }
        Op::Union => {
            let mut seen = std::collections::HashSet::new();
            for s in sets.iter().flatten() {
                s.for_each(|m| {
                    if seen.insert(m.to_vec()) {
                        v.push(m.to_vec())
                    }
                });
            }
        }
        Op::Diff => {
            if let Some(Some(first)) = sets.first() {
                first.for_each(|m| {
                    if !sets[1..].iter().flatten().any(|s| s.contains(m)) {
                        v.push(m.to_vec())
                    }
                });
            }
        }
    }
    Some(v)
}

/// SINTER/SUNION/SDIFF and their STORE forms over `keys`: the result is replied (a RESP3
/// set) or stored at `dst` (replying its size; an empty result deletes `dst`).
fn algebra(
    sh: &mut Shard,
    ctx: &ExecCtx,
    op: Op,
    keys: &[&[u8]],
    dst: Option<&[u8]>,
    out: &mut ReplyWriter,
) {
    let Some(members) = combine_members(sh, ctx, op, keys, 0, out) else {
        return;
    };
    if dst.is_none() && op == Op::Inter {
        // Replied in the order the smallest set was walked, as Redis does.
        out.set(members.len());
        return members.iter().for_each(|m| out.bulk(m));
    }
    // A result set is built as Redis builds it (an intset first), which decides the order a
    // union or difference is replied in and the encoding a STORE leaves.
    let seed = sh.next_rand();
    let result = Set::from_members(members.iter().map(|m| &m[..]), sh.config.set_limits, seed);
    let Some(dst) = dst else {
        return write_members(out, result.view());
    };
    let n = result.len();
    let entry = (n > 0).then(|| Entry::new(Value::Set(Box::new(result)), ctx.now_ms));
    let event = match op {
        Op::Inter => "sinterstore",
        Op::Union => "sunionstore",
        Op::Diff => "sdiffstore",
    };
    sh.store_result(ctx.db, dst, entry, SET, event);
    out.int(n as i64);
}

pub fn combine(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, op: Op, store: bool) {
    let args: Vec<&[u8]> = a.iter().collect();
    if store {
        algebra(sh, ctx, op, &args[2..], Some(args[1]), out);
    } else {
        algebra(sh, ctx, op, &args[1..], None, out);
    }
}

/// SINTERCARD's key count and LIMIT (0: none), in Redis's order of checks.
pub fn parse_sintercard<'a>(a: &'a Args) -> Result<(Vec<&'a [u8]>, usize), &'static str> {
    const NUMKEYS: &str = "ERR numkeys should be greater than 0";
    let numkeys = match parse_i64(&a[1]) {
        Some(n) if n >= 1 => n as usize,
        _ => return Err(NUMKEYS),
    };
    if numkeys > a.len() - 2 {
        return Err("ERR Number of keys can't be greater than number of args");
    }
    let mut limit = 0;
    let mut i = 2 + numkeys;
    while i < a.len() {
        if eq_ic(&a[i], b"limit") && i + 1 < a.len() {
            limit = match parse_i64(&a[i + 1]) {
                Some(l) if l >= 0 => l as usize,
                _ => return Err("ERR LIMIT can't be negative"),
            };
            i += 2;
        } else {
            return Err(err::SYNTAX);
        }
    }
    Ok(((2..2 + numkeys).map(|i| &a[i]).collect(), limit))
}

pub fn sintercard(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (keys, limit) = match parse_sintercard(&a) {
        Ok(x) => x,
        Err(e) => return out.error(e),
    };
    if let Some(m) = combine_members(sh, ctx, Op::Inter, &keys, limit, out) {
        out.int(m.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{run, s, shard};

    /// MEMORY USAGE of a small set is its one node (15-byte header, key, 4-byte pack
    /// length, width byte, 2 bytes a member) and a bucket slot; a converted set adds its box
    /// and table.
    #[test]
    fn memory_usage_counts_a_packed_set_in_its_node() {
        let mut sh = shard();
        run(&mut sh, 1, &["SADD", "s", "1", "2", "3"]);
        let usage = |sh: &mut crate::Shard| s(&run(sh, 1, &["MEMORY", "USAGE", "s"]));
        assert_eq!(
            usage(&mut sh),
            format!(":{}\r\n", 15 + 1 + 4 + 1 + 3 * 2 + 8)
        );
        run(&mut sh, 1, &["SADD", "s", "70000"]);
        assert_eq!(
            usage(&mut sh),
            format!(":{}\r\n", 15 + 1 + 4 + 1 + 4 * 4 + 8)
        );
        run(&mut sh, 1, &["SREM", "s", "70000", "1"]);
        assert_eq!(
            usage(&mut sh),
            format!(":{}\r\n", 15 + 1 + 4 + 1 + 2 * 4 + 8)
        );
        run(&mut sh, 1, &["SADD", "s", "a"]);
        let n: usize = usage(&mut sh)[1..].trim_end().parse().unwrap();
        assert!(n > 15 + 1 + 8 + 8 + 32, "{n}");
        assert_eq!(
            s(&run(&mut sh, 1, &["OBJECT", "ENCODING", "s"])),
            "$9\r\nhashtable\r\n"
        );
    }
}
