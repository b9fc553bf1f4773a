//! List commands (Redis's `t_list.c`), and the pops the server's blocking commands run on
//! the shard that owns a key.
//!
//! Argument checks follow Redis's order, because clients and tests observe which error wins
//! (LRANGE parses its indices before it looks the key up, LINDEX after). A list emptied by
//! a pop, LREM, LTRIM or a move is deleted with it.

use super::{eq_ic, parse_int};
use crate::notify::LIST;
use crate::types::list::{normalize_index, normalize_range, End, List, ListLimits};
use crate::{err, ExecCtx, Shard, Value, ValueRef};
use percore_proto::{parse_i64, Args, ReplyWriter};

/// Redis's text for a count that must be positive (LPOP, RPOP).
pub const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
const OUT_OF_RANGE: &str = "ERR index out of range";

/// [`super::write`] for a list; `create` makes an empty list when the key is absent.
fn write<R>(
    sh: &mut Shard,
    ctx: &ExecCtx,
    key: &[u8],
    create: bool,
    out: &mut ReplyWriter,
    event: impl FnOnce(&R) -> Option<(u16, &'static str)>,
    f: impl FnOnce(&mut List, ListLimits) -> R,
) -> Result<Option<R>, ()> {
    let limits = sh.config.list_limits;
    let make = |_seed: u64| Value::List(Box::default());
    super::write(
        sh,
        ctx,
        key,
        create.then_some(&make as _),
        out,
        event,
        |l, _| f(l, limits),
    )
}

/// The event of a push at `end`.
fn push_event(end: End) -> (u16, &'static str) {
    match end {
        End::Left => (LIST, "lpush"),
        End::Right => (LIST, "rpush"),
    }
}

/// The event of a pop from `end`.
fn pop_event(end: End) -> (u16, &'static str) {
    match end {
        End::Left => (LIST, "lpop"),
        End::Right => (LIST, "rpop"),
    }
}

/// LPUSH, RPUSH, LPUSHX, RPUSHX (`only_existing`).
pub fn push(
    sh: &mut Shard,
    ctx: &ExecCtx,
    a: Args,
    out: &mut ReplyWriter,
    end: End,
    only_existing: bool,
) {
    let event = |_: &usize| Some(push_event(end));
    match write(sh, ctx, &a[1], !only_existing, out, event, |l, lim| {
        a.iter().skip(2).for_each(|e| l.push(e, end, lim));
        l.len()
    }) {
        Ok(Some(n)) => out.int(n as i64),
        Ok(None) => out.int(0),
        Err(()) => {}
    }
}

/// What a pop found at a key.
pub type Popped = super::Popped<Vec<u8>>;

/// Pops up to `count` elements from `end` of the list at `key` (the first popped first);
/// deletes the list when it empties.
pub fn pop_n(sh: &mut Shard, db: usize, now_ms: u64, key: &[u8], end: End, count: usize) -> Popped {
    let ctx = ExecCtx { db, now_ms };
    let mut sink = Vec::new();
    let mut out = ReplyWriter::new(&mut sink, percore_proto::Protocol::Resp2);
    let event = |v: &Vec<Vec<u8>>| (!v.is_empty()).then(|| pop_event(end));
    match write(sh, &ctx, key, false, &mut out, event, |l, lim| {
        let n = count.min(l.len());
        (0..n).filter_map(|_| l.pop(end, lim)).collect()
    }) {
        Ok(Some(v)) => Popped::Elements(v),
        Ok(None) => Popped::Missing,
        Err(()) => Popped::WrongType,
    }
}

/// Pushes `elements` in order at `end` of the list at `key`, creating it; None (nothing
/// pushed) when the key holds another type. Returns the new length.
pub fn push_elements(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    key: &[u8],
    end: End,
    elements: &[Vec<u8>],
) -> Option<usize> {
    let ctx = ExecCtx { db, now_ms };
    let mut sink = Vec::new();
    let mut out = ReplyWriter::new(&mut sink, percore_proto::Protocol::Resp2);
    write(
        sh,
        &ctx,
        key,
        true,
        &mut out,
        |_| Some(push_event(end)),
        |l, lim| {
            elements.iter().for_each(|e| l.push(e, end, lim));
            l.len()
        },
    )
    .unwrap_or_default()
}

/// What a key holds, for commands that check a type before they change anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Missing,
    List,
    Other,
}

pub fn kind(sh: &mut Shard, db: usize, now_ms: u64, key: &[u8]) -> Kind {
    match sh.lookup(db, key, now_ms) {
        None => Kind::Missing,
        Some(e) if matches!(e.value(), ValueRef::List(_)) => Kind::List,
        Some(_) => Kind::Other,
    }
}

/// LPOP and RPOP, with or without a count.
pub fn pop(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, end: End) {
    if a.len() > 3 {
        let name = if end == End::Left { "lpop" } else { "rpop" };
        return out.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    let count = if a.len() == 3 {
        match parse_i64(&a[2]) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return out.error(NOT_POSITIVE),
        }
    } else {
        None
    };
    match pop_n(sh, ctx.db, ctx.now_ms, &a[1], end, count.unwrap_or(1)) {
        Popped::WrongType => out.error(err::WRONGTYPE),
        Popped::Missing if count.is_some() => out.null_array(),
        Popped::Missing => out.null(),
        Popped::Elements(v) => match count {
            None => out.bulk(&v[0]),
            Some(_) => {
                out.array(v.len());
                v.iter().for_each(|e| out.bulk(e));
            }
        },
    }
}

pub fn llen(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(l) = super::read::<List>(sh, ctx, &a[1], out) {
        out.int(l.map_or(0, |l| l.len()) as i64);
    }
}

pub fn lindex(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let l = match super::read::<List>(sh, ctx, &a[1], out) {
        Ok(Some(l)) => l,
        Ok(None) => return out.null(),
        Err(()) => return,
    };
    let i = match parse_int(&a[2]) {
        Ok(i) => i,
        Err(e) => return out.error(e),
    };
    match normalize_index(i, l.len()).and_then(|i| l.get(i)) {
        Some(e) => out.bulk(&e),
        None => out.null(),
    }
}

pub fn lrange(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (start, stop) = match (parse_int(&a[2]), parse_int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return out.error(e),
    };
    let l = match super::read::<List>(sh, ctx, &a[1], out) {
        Ok(Some(l)) => l,
        Ok(None) => return out.array(0),
        Err(()) => return,
    };
    match normalize_range(start, stop, l.len()) {
        None => out.array(0),
        Some((s, e)) => {
            out.array(e - s + 1);
            l.for_range(s, e, |x| out.bulk(x));
        }
    }
}

pub fn lset(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let event = |r: &Result<(), &str>| r.is_ok().then_some((LIST, "lset"));
    let r = write(sh, ctx, &a[1], false, out, event, |l, lim| {
        let i = parse_int(&a[2])?;
        let i = normalize_index(i, l.len()).ok_or(OUT_OF_RANGE)?;
        l.set(i, &a[3], lim);
        Ok(())
    });
    match r {
        Ok(Some(Ok(()))) => out.ok(),
        Ok(Some(Err(e))) => out.error(e),
        Ok(None) => out.error(err::NO_SUCH_KEY),
        Err(()) => {}
    }
}

pub fn linsert(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let after = if eq_ic(&a[2], b"after") {
        true
    } else if eq_ic(&a[2], b"before") {
        false
    } else {
        return out.error(err::SYNTAX);
    };
    let (pivot, e) = (&a[3], &a[4]);
    let event = |r: &Option<usize>| r.map(|_| (LIST, "linsert"));
    match write(sh, ctx, &a[1], false, out, event, |l, lim| {
        let at = l.position(pivot)?;
        l.insert(at + after as usize, e, lim);
        Some(l.len())
    }) {
        Ok(Some(Some(n))) => out.int(n as i64),
        Ok(Some(None)) => out.int(-1),
        Ok(None) => out.int(0),
        Err(()) => {}
    }
}

pub fn lrem(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let count = match parse_int(&a[2]) {
        Ok(c) => c,
        Err(e) => return out.error(e),
    };
    let event = |&n: &usize| (n > 0).then_some((LIST, "lrem"));
    match write(sh, ctx, &a[1], false, out, event, |l, lim| {
        l.remove_eq(&a[3], count.unsigned_abs() as usize, count < 0, lim)
    }) {
        Ok(Some(n)) => out.int(n as i64),
        Ok(None) => out.int(0),
        Err(()) => {}
    }
}

pub fn ltrim(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (start, stop) = match (parse_int(&a[2]), parse_int(&a[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return out.error(e),
    };
    let r = write(
        sh,
        ctx,
        &a[1],
        false,
        out,
        |_| Some((LIST, "ltrim")),
        |l, lim| {
            match normalize_range(start, stop, l.len()) {
                Some((s, e)) => l.trim(s, e, lim),
                // Everything goes: the emptied list is deleted by `write`.
                None => l.trim_all(),
            }
        },
    );
    if r.is_ok() {
        out.ok();
    }
}

/// LPOS's options, in Redis's order of checks.
struct LposOpts {
    rank: i64,
    count: Option<usize>,
    maxlen: usize,
}

fn parse_lpos(a: &Args) -> Result<LposOpts, String> {
    let mut o = LposOpts {
        rank: 1,
        count: None,
        maxlen: 0,
    };
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        if eq_ic(&a[j], b"rank") && more {
            o.rank = super::parse_signed_count(&a[j + 1])?;
            if o.rank == 0 {
                return Err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list".into());
            }
        } else if eq_ic(&a[j], b"count") && more {
            o.count = match parse_i64(&a[j + 1]) {
                Some(c) if c >= 0 => Some(c as usize),
                _ => return Err("ERR COUNT can't be negative".into()),
            };
        } else if eq_ic(&a[j], b"maxlen") && more {
            o.maxlen = match parse_i64(&a[j + 1]) {
                Some(m) if m >= 0 => m as usize,
                _ => return Err("ERR MAXLEN can't be negative".into()),
            };
        } else {
            return Err(err::SYNTAX.into());
        }
        j += 2;
    }
    Ok(o)
}

pub fn lpos(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let o = match parse_lpos(&a) {
        Ok(o) => o,
        Err(e) => return out.error(&e),
    };
    let l = match super::read::<List>(sh, ctx, &a[1], out) {
        Ok(Some(l)) => l,
        Ok(None) if o.count.is_some() => return out.array(0),
        Ok(None) => return out.null(),
        Err(()) => return,
    };
    let e = &a[2];
    let len = l.len();
    let skip = o.rank.unsigned_abs() as usize - 1;
    let want = match o.count {
        Some(0) => usize::MAX,
        Some(c) => c,
        None => 1,
    };
    let scan = if o.maxlen == 0 {
        len
    } else {
        o.maxlen.min(len)
    };
    // Matches from RANK's end: the first `skip` are passed over, then up to `want` kept,
    // within the first `scan` elements.
    let (from, mut seen, mut skipped) = (if o.rank > 0 { End::Left } else { End::Right }, 0, 0);
    let mut found: Vec<usize> = Vec::new();
    l.walk(from, |x| {
        if seen == scan || found.len() == want {
            return false;
        }
        if x == e {
            if skipped < skip {
                skipped += 1;
            } else {
                found.push(if from == End::Left {
                    seen
                } else {
                    len - 1 - seen
                });
            }
        }
        seen += 1;
        true
    });
    match o.count {
        Some(_) => {
            out.array(found.len());
            found.iter().for_each(|&i| out.int(i as i64));
        }
        None => match found.first() {
            Some(&i) => out.int(i as i64),
            None => out.null(),
        },
    }
}

/// The ends of LMOVE/BLMOVE (`wherefrom`, `whereto`); a syntax error otherwise.
pub fn parse_ends(from: &[u8], to: &[u8]) -> Result<(End, End), &'static str> {
    match (End::parse(from), End::parse(to)) {
        (Some(f), Some(t)) => Ok((f, t)),
        _ => Err(err::SYNTAX),
    }
}

/// LMOVE with both keys on this shard: Redis's checks (source missing: nil; either key of
/// another type: WRONGTYPE, nothing moved), then one element moved. A list moved onto
/// itself rotates.
pub fn lmove_here(
    sh: &mut Shard,
    ctx: &ExecCtx,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
    out: &mut ReplyWriter,
) -> Option<Vec<u8>> {
    match kind(sh, ctx.db, ctx.now_ms, src) {
        Kind::Missing => {
            out.null();
            return None;
        }
        Kind::Other => {
            out.error(err::WRONGTYPE);
            return None;
        }
        Kind::List => {}
    }
    if src != dst && kind(sh, ctx.db, ctx.now_ms, dst) == Kind::Other {
        out.error(err::WRONGTYPE);
        return None;
    }
    let e = if src == dst {
        let e = write(
            sh,
            ctx,
            src,
            false,
            out,
            |_| None,
            |l, lim| {
                let e = l.pop(from, lim).expect("a stored list is never empty");
                l.push(&e, to, lim);
                e
            },
        )
        .ok()
        .flatten();
        let ((c1, e1), (c2, e2)) = (push_event(to), pop_event(from));
        sh.notify(c1, e1, ctx.db, src);
        sh.notify(c2, e2, ctx.db, src);
        e
    } else {
        Some(move_one(sh, ctx.db, ctx.now_ms, src, from, Some((dst, to))))
    };
    match &e {
        Some(e) => out.bulk(e),
        None => out.null(),
    }
    e
}

/// LMOVE's and a served BLMOVE's move from the list at `src`, which must hold one (the
/// caller checked), to `dst` on this shard when given (else the caller pushes it on the
/// destination's shard). Events in Redis's order: the push, then the pop and the source's
/// "del". Returns the element.
pub fn move_one(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    src: &[u8],
    from: End,
    dst: Option<(&[u8], End)>,
) -> Vec<u8> {
    let mark = sh.events.len();
    let Popped::Elements(mut v) = pop_n(sh, db, now_ms, src, from, 1) else {
        unreachable!("the caller saw a list at the source")
    };
    if let Some((dst, to)) = dst {
        let popped = sh.events.len();
        push_elements(sh, db, now_ms, dst, to, &v);
        sh.events[mark..].rotate_left(popped - mark);
    }
    v.pop().expect("a list holds an element")
}

pub fn lmove(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (from, to) = match parse_ends(&a[3], &a[4]) {
        Ok(x) => x,
        Err(e) => return out.error(e),
    };
    lmove_here(sh, ctx, &a[1], &a[2], from, to, out);
}

pub fn rpoplpush(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    lmove_here(sh, ctx, &a[1], &a[2], End::Right, End::Left, out);
}

/// LMPOP's and BLMPOP's arguments from `numkeys_idx`: the keys, the end and the count (1
/// when not given), in Redis's order of checks.
pub fn parse_mpop<'a>(
    a: &'a Args,
    numkeys_idx: usize,
) -> Result<(Vec<&'a [u8]>, End, usize), &'static str> {
    let numkeys = match parse_i64(&a[numkeys_idx]) {
        Some(n) if n >= 1 => n as usize,
        _ => return Err("ERR numkeys should be greater than 0"),
    };
    let where_idx = numkeys_idx.saturating_add(numkeys).saturating_add(1);
    if where_idx >= a.len() {
        return Err(err::SYNTAX);
    }
    let end = End::parse(&a[where_idx]).ok_or(err::SYNTAX)?;
    let mut count = None;
    let mut j = where_idx + 1;
    while j < a.len() {
        if count.is_none() && eq_ic(&a[j], b"count") && j + 1 < a.len() {
            count = match parse_i64(&a[j + 1]) {
                Some(c) if c >= 1 => Some(c as usize),
                _ => return Err("ERR count should be greater than 0"),
            };
            j += 2;
        } else {
            return Err(err::SYNTAX);
        }
    }
    let keys = (numkeys_idx + 1..where_idx).map(|i| &a[i]).collect();
    Ok((keys, end, count.unwrap_or(1)))
}

/// An MPOP reply: the key and its popped elements.
pub fn write_mpop_reply(out: &mut ReplyWriter, key: &[u8], elements: &[Vec<u8>]) {
    out.array(2);
    out.bulk(key);
    out.array(elements.len());
    elements.iter().for_each(|e| out.bulk(e));
}

pub fn lmpop(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (keys, end, count) = match parse_mpop(&a, 1) {
        Ok(x) => x,
        Err(e) => return out.error(e),
    };
    let pop = |k: &[u8]| pop_n(sh, ctx.db, ctx.now_ms, k, end, count);
    super::mpop_first(&keys, pop, out, write_mpop_reply);
}

#[cfg(test)]
mod tests {
    use crate::testing::{run, s, shard};

    #[test]
    fn push_pop_range() {
        let mut sh = shard();
        let r = |sh: &mut crate::Shard, args: &[&str]| s(&run(sh, 0, args));
        assert_eq!(r(&mut sh, &["RPUSH", "l", "a", "b", "c"]), ":3\r\n");
        assert_eq!(r(&mut sh, &["LPUSH", "l", "z"]), ":4\r\n");
        assert_eq!(
            r(&mut sh, &["LRANGE", "l", "0", "-1"]),
            "*4\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(
            r(&mut sh, &["RPOP", "l", "2"]),
            "*2\r\n$1\r\nc\r\n$1\r\nb\r\n"
        );
        assert_eq!(r(&mut sh, &["LPOS", "l", "a"]), ":1\r\n");
        assert_eq!(r(&mut sh, &["LINSERT", "l", "BEFORE", "a", "y"]), ":3\r\n");
        assert_eq!(r(&mut sh, &["LINDEX", "l", "-2"]), "$1\r\ny\r\n");
        assert_eq!(
            r(&mut sh, &["LSET", "l", "5", "q"]),
            "-ERR index out of range\r\n"
        );
        assert_eq!(r(&mut sh, &["LTRIM", "l", "5", "10"]), "+OK\r\n");
        assert_eq!(r(&mut sh, &["EXISTS", "l"]), ":0\r\n");
        assert_eq!(r(&mut sh, &["LPUSHX", "l", "a"]), ":0\r\n");
        assert_eq!(r(&mut sh, &["RPOP", "l"]), "$-1\r\n");
        assert_eq!(r(&mut sh, &["RPOP", "l", "1"]), "*-1\r\n");
        assert_eq!(r(&mut sh, &["SET", "s", "x"]), "+OK\r\n");
        assert!(r(&mut sh, &["LPUSH", "s", "x"]).starts_with("-WRONGTYPE"));
        assert_eq!(r(&mut sh, &["RPUSH", "m", "1", "2", "3"]), ":3\r\n");
        assert_eq!(
            r(&mut sh, &["LMOVE", "m", "m", "LEFT", "RIGHT"]),
            "$1\r\n1\r\n"
        );
        assert_eq!(
            r(
                &mut sh,
                &["LMPOP", "2", "nokey", "m", "RIGHT", "COUNT", "5"]
            ),
            "*2\r\n$1\r\nm\r\n*3\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n2\r\n"
        );
        assert_eq!(r(&mut sh, &["OBJECT", "ENCODING", "m"]), "$-1\r\n");
    }
}
