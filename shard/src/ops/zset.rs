//! Sorted set commands (Redis's `t_zset.c`).
//!
//! Argument checks follow Redis 7.0's order, because clients and tests observe which error
//! wins. Scores are parsed with libc's `strtod` and printed with `%.17g` (`double.c`), as
//! Redis 7.0 does, so every accepted spelling and every digit match. A sorted set emptied
//! by a removal is deleted with it; a STORE with an empty result deletes its destination.
//! Commands over keys of several shards run here too, on a scratch shard the coordinator
//! fills (`server/src/coordinated.rs`).
//!
//! Ranges by score or by member are resolved to ranks first ([`ZSet::count_below`]: the
//! elements before the range's start and those up to its end), so every range command is
//! O(log n + the elements it returns) on a large set. A range by member over members of
//! different scores is searched as Redis searches it ([`LexRange`]).

use super::{eq_ic, parse_int};
use crate::notify::ZSET;
use crate::types::zset::{cmp_elem, ZSet, ZSetRef};
use crate::{err, Entry, ExecCtx, Shard, Value, ValueRef};
use percore_proto::{parse_i64, Args, ReplyWriter};

extern "C" {
    fn percore_string2d(s: *const u8, len: usize, out: *mut f64) -> std::ffi::c_int;
    fn percore_range_strtod(s: *const u8, len: usize, out: *mut f64) -> std::ffi::c_int;
    fn percore_fmt_g17(d: f64, out: *mut u8, out_len: usize) -> std::ffi::c_int;
}

pub const NAN_ERR: &str = "ERR resulting score is not a number (NaN)";
const SCORE_RANGE_ERR: &str = "ERR min or max is not a float";
const LEX_RANGE_ERR: &str = "ERR min or max not valid string range item";

/// Redis's `getDoubleFromObject`: the whole argument a float `strtod` reads, not NaN, no
/// overflow.
pub fn parse_float(a: &[u8]) -> Option<f64> {
    let mut v = 0.0;
    // SAFETY: the pointer and length describe a live slice the C function only reads (it
    // copies it into a NUL-terminated buffer); `v` is a valid place for one double.
    (unsafe { percore_string2d(a.as_ptr(), a.len(), &mut v) } == 1).then_some(v)
}

/// One bound of a score range as `zslParseRange` reads it (after any `(`).
fn parse_bound(a: &[u8]) -> Option<f64> {
    let mut v = 0.0;
    // SAFETY: as in `parse_float`.
    (unsafe { percore_range_strtod(a.as_ptr(), a.len(), &mut v) } == 1).then_some(v)
}

/// `%.17g` of a finite double (Redis 7.0's `addReplyDouble`), or `inf`/`-inf`.
pub fn fmt_score(d: f64) -> Vec<u8> {
    if d.is_infinite() {
        return if d > 0.0 {
            b"inf".to_vec()
        } else {
            b"-inf".to_vec()
        };
    }
    let mut buf = [0u8; 40];
    // SAFETY: `buf` is writable for its length, which snprintf never exceeds; "%.17g" of a
    // finite double takes at most 24 bytes.
    let n = unsafe { percore_fmt_g17(d, buf.as_mut_ptr(), buf.len()) };
    buf[..n.clamp(0, 39) as usize].to_vec()
}

/// A score as Redis's `d2string` writes it into a listpack: integers in
/// ±(2⁶³-1)/2 as integers, other values `%.17g` (what ZSCAN shows of a small set).
pub fn fmt_score_packed(d: f64) -> Vec<u8> {
    const HALF: f64 = (i64::MAX / 2) as f64;
    if d.is_finite() && (-HALF..=HALF).contains(&d) && (d as i64) as f64 == d {
        return itoa::Buffer::new().format(d as i64).as_bytes().to_vec();
    }
    fmt_score(d)
}

/// A double reply: a bulk string in RESP2, `,` in RESP3.
pub fn write_score(out: &mut ReplyWriter, d: f64) {
    out.double_text(&fmt_score(d));
}

/// Elements as a range reply: member, then the score when `withscores` (flat in RESP2,
/// a pair per element in RESP3). `n` is the number `walk` produces.
fn write_elems(
    out: &mut ReplyWriter,
    n: usize,
    withscores: bool,
    walk: impl FnOnce(&mut dyn FnMut(f64, &[u8])),
) {
    let resp3 = out.resp3();
    out.array(if withscores && !resp3 { n * 2 } else { n });
    walk(&mut |s, m| {
        if withscores && resp3 {
            out.array(2);
        }
        out.bulk(m);
        if withscores {
            write_score(out, s);
        }
    });
}

/// A score range (`zrangespec`).
#[derive(Clone, Copy, Debug)]
pub struct ScoreRange {
    min: f64,
    minex: bool,
    max: f64,
    maxex: bool,
}

fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, &'static str> {
    let one = |a: &[u8]| match a.first() {
        Some(b'(') => parse_bound(&a[1..]).map(|v| (v, true)),
        _ => parse_bound(a).map(|v| (v, false)),
    };
    match (one(min), one(max)) {
        (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange {
            min,
            minex,
            max,
            maxex,
        }),
        _ => Err(SCORE_RANGE_ERR),
    }
}

/// One end of a lex range (`zslParseLexRangeItem`).
#[derive(Clone, Debug)]
enum Lex {
    NegInf,
    PosInf,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

fn parse_lex(a: &[u8]) -> Result<Lex, &'static str> {
    match a.first() {
        Some(b'+') if a.len() == 1 => Ok(Lex::PosInf),
        Some(b'-') if a.len() == 1 => Ok(Lex::NegInf),
        Some(b'(') => Ok(Lex::Excl(a[1..].to_vec())),
        Some(b'[') => Ok(Lex::Incl(a[1..].to_vec())),
        _ => Err(LEX_RANGE_ERR),
    }
}

/// A range of elements by score or by member.
#[derive(Clone, Debug)]
enum Range {
    Score(ScoreRange),
    Lex(Lex, Lex),
}

impl ScoreRange {
    /// Ranks `lo..hi` of the elements in the range (empty when `lo >= hi`).
    fn ranks(&self, z: ZSetRef) -> (usize, usize) {
        let lo = z.count_below(|s, _| {
            if self.minex {
                s <= self.min
            } else {
                s < self.min
            }
        });
        let hi = z.count_below(|s, _| {
            if self.maxex {
                s < self.max
            } else {
                s <= self.max
            }
        });
        (lo, hi)
    }
}

impl Lex {
    /// As the range's start: the member is at or past it (Redis's `zslLexValueGteMin`).
    fn admits_as_min(&self, m: &[u8]) -> bool {
        match self {
            Lex::NegInf => true,
            Lex::PosInf => false,
            Lex::Incl(x) => m >= &x[..],
            Lex::Excl(x) => m > &x[..],
        }
    }

    /// As the range's end: the member is at or before it (Redis's `zslLexValueLteMax`).
    fn admits_as_max(&self, m: &[u8]) -> bool {
        match self {
            Lex::NegInf => false,
            Lex::PosInf => true,
            Lex::Incl(x) => m <= &x[..],
            Lex::Excl(x) => m < &x[..],
        }
    }

    /// Redis's `sdscmplex` order of range ends: `-` first, `+` last.
    fn cmp_end(&self, other: &Lex) -> std::cmp::Ordering {
        fn key(l: &Lex) -> (u8, &[u8]) {
            match l {
                Lex::NegInf => (0, &[]),
                Lex::Incl(x) | Lex::Excl(x) => (1, x),
                Lex::PosInf => (2, &[]),
            }
        }
        key(self).cmp(&key(other))
    }

    fn exclusive(&self) -> bool {
        !matches!(self, Lex::Incl(_))
    }
}

/// A lex range searched as Redis 7.0 searches it. Members are compared as bytes but the
/// set is ordered by score first, so when members have different scores the members in
/// range need not be adjacent. Redis calls the answer undefined, but what it does is
/// fixed: it finds a start (the first member at or past `min`, or for a backward walk the
/// last one at or before `max`) and walks from there while members stay on the near side
/// of the other end. A listpack finds the start by a linear scan (from its head for the
/// first, from its tail for the last); a skip list by its descent, which lands on *a*
/// member past `min` whose predecessor is not (which one, when there are several, depends
/// on the list's random levels). The tree here descends likewise and settles on such a
/// boundary too, so when a set has one boundary both answer the same. With equal scores
/// there is one boundary, found in O(log n); with mixed scores, settling may walk (O(n)
/// at worst, as a listpack's scan).
struct LexRange<'a> {
    min: &'a Lex,
    max: &'a Lex,
}

impl LexRange<'_> {
    fn gte_min(&self, m: &[u8]) -> bool {
        self.min.admits_as_min(m)
    }

    fn lte_max(&self, m: &[u8]) -> bool {
        self.max.admits_as_max(m)
    }

    /// Redis's `zslIsInLexRange`: a range that can hold members, and a set whose last
    /// member is at or past `min` and whose first is at or before `max`.
    fn may_hold(&self, z: ZSetRef) -> bool {
        let c = self.min.cmp_end(self.max);
        let empty = c.is_gt() || (c.is_eq() && (self.min.exclusive() || self.max.exclusive()));
        !empty
            && !z.is_empty()
            && member_holds(z, z.len() - 1, |m| self.gte_min(m))
            && member_holds(z, 0, |m| self.lte_max(m))
    }

    /// Where a search for the first member at or past `min` lands, without Redis's
    /// checks (`zslDeleteRangeByLex`'s descent): a rank whose member is past `min` and
    /// whose predecessor is not, or the set's length.
    fn start_boundary(&self, z: ZSetRef) -> usize {
        let mut r = z.count_below(|_, m| !self.gte_min(m));
        while r < z.len() && !member_holds(z, r, |m| self.gte_min(m)) {
            r += 1;
        }
        while r > 0 && r < z.len() && member_holds(z, r - 1, |m| self.gte_min(m)) {
            r -= 1;
        }
        r
    }

    /// Redis's `zzlFirstInLexRange` / `zslFirstInLexRange`: the start of a forward walk.
    fn first(&self, z: ZSetRef) -> Option<usize> {
        if !self.may_hold(z) {
            return None;
        }
        let r = self.start_boundary(z);
        (r < z.len() && member_holds(z, r, |m| self.lte_max(m))).then_some(r)
    }

    /// Redis's `zzlLastInLexRange` / `zslLastInLexRange`: the start of a backward walk.
    fn last(&self, z: ZSetRef) -> Option<usize> {
        if !self.may_hold(z) {
            return None;
        }
        let r = if z.encoding() == "listpack" {
            // The scan from the end: the last member at or before `max`.
            let (mut i, mut last) = (0, 0);
            z.for_each(|_, m| {
                if self.lte_max(m) {
                    last = i;
                }
                i += 1;
            });
            last
        } else {
            let mut r = z.count_below(|_, m| self.lte_max(m)).max(1) - 1;
            while r > 0 && !member_holds(z, r, |m| self.lte_max(m)) {
                r -= 1;
            }
            while r + 1 < z.len() && member_holds(z, r + 1, |m| self.lte_max(m)) {
                r += 1;
            }
            r
        };
        member_holds(z, r, |m| self.gte_min(m)).then_some(r)
    }

    /// How many members a walk from rank `start` (towards rank 0 when `rev`) passes
    /// before one leaves the range (past `max` forward, before `min` backward), up to
    /// `most`.
    fn run(&self, z: ZSetRef, start: usize, rev: bool, most: usize) -> usize {
        if most == 0 {
            return 0;
        }
        let mut n = 0;
        z.walk(start, rev, |_, m| {
            let inside = if rev {
                self.gte_min(m)
            } else {
                self.lte_max(m)
            };
            n += inside as usize;
            inside && n < most
        });
        n
    }

    /// ZLEXCOUNT: a listpack counts its walk from the first member; a skip list subtracts
    /// the ranks of the first and the last, which may not be the same (Redis replies
    /// what its unsigned arithmetic gives, negative included).
    fn count(&self, z: ZSetRef) -> i64 {
        let Some(f) = self.first(z) else {
            return 0;
        };
        if z.encoding() == "listpack" {
            return self.run(z, f, false, usize::MAX) as i64;
        }
        match self.last(z) {
            Some(l) => l as i64 - f as i64 + 1,
            None => (z.len() - f) as i64,
        }
    }

    /// ZREMRANGEBYLEX's ranks `lo..hi`: a listpack from its first member, a skip list from
    /// its descent's landing (no checks), then while members are at or before `max`.
    fn removal(&self, z: ZSetRef) -> (usize, usize) {
        let start = match z.encoding() {
            "listpack" => self.first(z),
            _ => Some(self.start_boundary(z)),
        };
        match start {
            Some(s) => (s, s + self.run(z, s, false, usize::MAX)),
            None => (0, 0),
        }
    }
}

/// Whether the member of rank `r` satisfies `f`.
fn member_holds(z: ZSetRef, r: usize, f: impl Fn(&[u8]) -> bool) -> bool {
    let mut yes = false;
    z.walk(r, false, |_, m| {
        yes = f(m);
        false
    });
    yes
}

/// [`super::write`] for a sorted set; `create` is the length of the first member when an
/// absent key is to be created (Redis's ZADD picks the encoding by it).
fn write<R>(
    sh: &mut Shard,
    ctx: &ExecCtx,
    key: &[u8],
    create: Option<usize>,
    out: &mut ReplyWriter,
    event: impl FnOnce(&R) -> Option<(u16, &'static str)>,
    f: impl FnOnce(&mut ZSet, u64) -> R,
) -> Result<Option<R>, ()> {
    let limits = sh.config.zset_limits;
    let make = |seed: u64| {
        Value::ZSet(Box::new(ZSet::for_member(
            create.unwrap_or_default(),
            limits,
            seed,
        )))
    };
    super::write(sh, ctx, key, create.map(|_| &make as _), out, event, f)
}

// ---------------------------------------------------------------------------------------
// ZADD, ZINCRBY

const ADDED: u8 = 1;
const UPDATED: u8 = 2;
const NOP: u8 = 4;

#[derive(Clone, Copy, Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    incr: bool,
}

/// Redis's `zsetAdd`: what happened and the score the member ends with; Err on NaN.
fn zadd_one(
    z: &mut ZSet,
    score: f64,
    member: &[u8],
    f: AddFlags,
    limits: crate::types::zset::ZSetLimits,
    seed: u64,
) -> Result<(u8, f64), ()> {
    match z.score(member) {
        Some(cur) => {
            if f.nx {
                return Ok((NOP, cur));
            }
            let mut s = score;
            if f.incr {
                s += cur;
                if s.is_nan() {
                    return Err(());
                }
            }
            if (f.lt && s >= cur) || (f.gt && s <= cur) {
                return Ok((NOP, cur));
            }
            if s != cur {
                z.update(member, cur, s);
                return Ok((UPDATED, s));
            }
            Ok((0, s))
        }
        None if !f.xx => {
            z.insert(score, member, limits, seed);
            Ok((ADDED, score))
        }
        None => Ok((NOP, score)),
    }
}

/// ZADD and ZINCRBY (which is ZADD with INCR: the options are read the same way, as Redis
/// does).
pub fn zadd(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, zincrby: bool) {
    let mut f = AddFlags {
        incr: zincrby,
        ..AddFlags::default()
    };
    let mut ch = false;
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if eq_ic(o, b"nx") {
            f.nx = true;
        } else if eq_ic(o, b"xx") {
            f.xx = true;
        } else if eq_ic(o, b"ch") {
            ch = true;
        } else if eq_ic(o, b"incr") {
            f.incr = true;
        } else if eq_ic(o, b"gt") {
            f.gt = true;
        } else if eq_ic(o, b"lt") {
            f.lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let elements = a.len() - i;
    if elements % 2 == 1 || elements == 0 {
        return out.error(err::SYNTAX);
    }
    let elements = elements / 2;
    if f.nx && f.xx {
        return out.error("ERR XX and NX options at the same time are not compatible");
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return out.error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if f.incr && elements > 1 {
        return out.error("ERR INCR option supports a single increment-element pair");
    }
    let mut scores = Vec::with_capacity(elements);
    for j in 0..elements {
        match parse_float(&a[i + 2 * j]) {
            Some(s) => scores.push(s),
            None => return out.error(err::NOT_FLOAT),
        }
    }
    let limits = sh.config.zset_limits;
    let create = (!f.xx).then(|| a[i + 1].len());
    let name = if f.incr { "zincr" } else { "zadd" };
    let event = |r: &Result<(i64, i64, i64, f64), ()>| match r {
        Ok((added, updated, _, _)) if added + updated > 0 => Some((ZSET, name)),
        _ => None,
    };
    let r = write(sh, ctx, &a[1], create, out, event, |z, seed| {
        let (mut added, mut updated, mut processed, mut last) = (0, 0, 0, 0.0);
        for (j, &score) in scores.iter().enumerate() {
            let (flags, s) = zadd_one(z, score, &a[i + 1 + 2 * j], f, limits, seed)?;
            added += (flags & ADDED != 0) as i64;
            updated += (flags & UPDATED != 0) as i64;
            processed += (flags & NOP == 0) as i64;
            last = s;
        }
        Ok::<_, ()>((added, updated, processed, last))
    });
    let (added, updated, processed, last) = match r {
        Err(()) => return,
        Ok(None) => (0, 0, 0, 0.0),
        Ok(Some(Err(()))) => return out.error(NAN_ERR),
        Ok(Some(Ok(x))) => x,
    };
    if f.incr {
        if processed > 0 {
            write_score(out, last);
        } else {
            out.null();
        }
    } else {
        out.int(if ch { added + updated } else { added });
    }
}

// ---------------------------------------------------------------------------------------
// single-key reads

pub fn zcard(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(z) = super::read::<ZSet>(sh, ctx, &a[1], out) {
        out.int(z.map_or(0, |z| z.len()) as i64);
    }
}

pub fn zscore(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(z) = super::read::<ZSet>(sh, ctx, &a[1], out) {
        match z.and_then(|z| z.score(&a[2])) {
            Some(s) => write_score(out, s),
            None => out.null(),
        }
    }
}

pub fn zmscore(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    if let Ok(z) = super::read::<ZSet>(sh, ctx, &a[1], out) {
        out.array(a.len() - 2);
        for m in a.iter().skip(2) {
            match z.and_then(|z| z.score(m)) {
                Some(s) => write_score(out, s),
                None => out.null(),
            }
        }
    }
}

pub fn zrank(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, rev: bool) {
    if let Ok(z) = super::read::<ZSet>(sh, ctx, &a[1], out) {
        match z.and_then(|z| z.rank(&a[2]).map(|(r, _)| (r, z.len()))) {
            Some((r, n)) => out.int(if rev { n - 1 - r } else { r } as i64),
            None => out.null(),
        }
    }
}

pub fn zcount(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, lex: bool) {
    let range = match parse_range(&a[2], &a[3], lex) {
        Ok(r) => r,
        Err(e) => return out.error(e),
    };
    if let Ok(z) = super::read::<ZSet>(sh, ctx, &a[1], out) {
        let n = z.map_or(0, |z| match &range {
            Range::Score(r) => {
                let (lo, hi) = r.ranks(z);
                hi.saturating_sub(lo) as i64
            }
            Range::Lex(min, max) => LexRange { min, max }.count(z),
        });
        out.int(n);
    }
}

fn parse_range(min: &[u8], max: &[u8], lex: bool) -> Result<Range, &'static str> {
    if lex {
        match (parse_lex(min), parse_lex(max)) {
            (Ok(a), Ok(b)) => Ok(Range::Lex(a, b)),
            _ => Err(LEX_RANGE_ERR),
        }
    } else {
        parse_score_range(min, max).map(Range::Score)
    }
}

// ---------------------------------------------------------------------------------------
// ZRANGE and its family

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RangeBy {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Which elements a range command selects: `n` elements from rank `start`, walking
/// towards rank 0 when `rev`.
struct Selection {
    start: usize,
    n: usize,
    rev: bool,
}

fn select_rank(len: usize, start: i64, end: i64, rev: bool) -> Selection {
    let llen = len as i64;
    let (mut start, mut end) = (start, end);
    if start < 0 {
        start += llen;
    }
    if end < 0 {
        end += llen;
    }
    if start < 0 {
        start = 0;
    }
    if start > end || start >= llen {
        return Selection {
            start: 0,
            n: 0,
            rev,
        };
    }
    if end >= llen {
        end = llen - 1;
    }
    let n = (end - start + 1) as usize;
    let first = if rev { llen - 1 - start } else { start } as usize;
    Selection {
        start: first,
        n,
        rev,
    }
}

/// The elements of `range` after skipping `offset` and taking up to `limit` (negative:
/// all), as Redis's `genericZrangebyscoreCommand` walks them (a negative offset skips
/// everything).
fn select_range(z: ZSetRef, range: &Range, offset: i64, limit: i64, rev: bool) -> Selection {
    let empty = Selection {
        start: 0,
        n: 0,
        rev,
    };
    if offset < 0 || (offset > 0 && offset as u64 >= z.len() as u64) {
        return empty;
    }
    let most = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let (lo, hi) = match range {
        Range::Score(r) => r.ranks(z),
        Range::Lex(min, max) => {
            // Redis skips `offset` members from the start without checking them.
            let lex = LexRange { min, max };
            let start = if rev { lex.last(z) } else { lex.first(z) };
            let start = match (start, rev) {
                (Some(s), false) => s.checked_add(offset as usize).filter(|&s| s < z.len()),
                (Some(s), true) => s.checked_sub(offset as usize),
                (None, _) => None,
            };
            let Some(start) = start else {
                return empty;
            };
            let n = lex.run(z, start, rev, most);
            return Selection { start, n, rev };
        }
    };
    if lo >= hi || offset as u64 >= (hi - lo) as u64 {
        return empty;
    }
    let avail = hi - lo - offset as usize;
    let n = if limit < 0 {
        avail
    } else {
        avail.min(limit as usize)
    };
    let start = if rev {
        hi - 1 - offset as usize
    } else {
        lo + offset as usize
    };
    Selection { start, n, rev }
}

fn walk_selection(z: ZSetRef, sel: &Selection, f: &mut dyn FnMut(f64, &[u8])) {
    let mut left = sel.n;
    if left == 0 {
        return;
    }
    z.walk(sel.start, sel.rev, |s, m| {
        f(s, m);
        left -= 1;
        left > 0
    });
}

/// ZRANGE, ZRANGESTORE (`store`: the destination is `a[1]`, the source `a[2]`) and the
/// older range commands (Redis's `zrangeGenericCommand`); `by` and `rev` are what the
/// command fixes (Auto and None: what its options say).
pub fn zrange(
    sh: &mut Shard,
    ctx: &ExecCtx,
    a: Args,
    out: &mut ReplyWriter,
    store: bool,
    by: RangeBy,
    rev: Option<bool>,
) {
    let dst_key = store.then(|| a[1].to_vec());
    let (src, dst) = if store {
        (2, dst_key.as_deref())
    } else {
        (1, None)
    };
    let (mut by, mut rev_opt) = (by, rev);
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = src + 3;
    while j < a.len() {
        let left = a.len() - j - 1;
        let o = &a[j];
        if dst.is_none() && eq_ic(o, b"withscores") {
            withscores = true;
        } else if eq_ic(o, b"limit") && left >= 2 {
            match (parse_int(&a[j + 1]), parse_int(&a[j + 2])) {
                (Ok(o), Ok(l)) => (offset, limit) = (o, l),
                (Err(e), _) | (_, Err(e)) => return out.error(e),
            }
            j += 2;
        } else if rev.is_none() && eq_ic(o, b"rev") {
            rev_opt = Some(true);
        } else if by == RangeBy::Auto && eq_ic(o, b"bylex") {
            by = RangeBy::Lex;
        } else if by == RangeBy::Auto && eq_ic(o, b"byscore") {
            by = RangeBy::Score;
        } else {
            return out.error(err::SYNTAX);
        }
        j += 1;
    }
    let rev = rev_opt.unwrap_or(false);
    if by == RangeBy::Auto {
        by = RangeBy::Rank;
    }
    if limit != -1 && by == RangeBy::Rank {
        return out.error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if withscores && by == RangeBy::Lex {
        return out.error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    let (mut min, mut max) = (&a[src + 1], &a[src + 2]);
    if rev && by != RangeBy::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    let range = match by {
        RangeBy::Rank => match (parse_int(min), parse_int(max)) {
            (Ok(s), Ok(e)) => Err((s, e)),
            (Err(e), _) | (_, Err(e)) => return out.error(e),
        },
        _ => match parse_range(min, max, by == RangeBy::Lex) {
            Ok(r) => Ok(r),
            Err(e) => return out.error(e),
        },
    };
    let z = match super::read::<ZSet>(sh, ctx, &a[src], out) {
        Ok(z) => z,
        Err(()) => return,
    };
    let sel = match (z, &range) {
        (None, _) => None,
        (Some(z), Err((s, e))) => Some(select_rank(z.len(), *s, *e, rev)),
        (Some(z), Ok(r)) => Some(select_range(z, r, offset, limit, rev)),
    };
    let Some(dst) = dst else {
        return match (z, sel) {
            (Some(z), Some(sel)) => {
                write_elems(out, sel.n, withscores, |f| walk_selection(z, &sel, f))
            }
            _ => out.array(0),
        };
    };
    // ZRANGESTORE: the result is built as Redis's ZADD into a new set builds it.
    let mut elems = Vec::new();
    if let (Some(z), Some(sel)) = (z, sel) {
        elems.reserve(sel.n);
        walk_selection(z, &sel, &mut |s, m| elems.push((s, m.to_vec())));
    }
    store_result(sh, ctx, dst, &elems, "zrangestore", out);
}

/// Stores `elems` (distinct members) at `dst` as a sorted set built the way Redis builds
/// results, replying its size, with keyspace event `event`; an empty result deletes `dst`.
pub(crate) fn store_result(
    sh: &mut Shard,
    ctx: &ExecCtx,
    dst: &[u8],
    elems: &[(f64, Vec<u8>)],
    event: &'static str,
    out: &mut ReplyWriter,
) {
    let entry = (!elems.is_empty()).then(|| {
        let seed = sh.next_rand();
        let z = ZSet::from_elems(
            elems.iter().map(|(s, m)| (*s, &m[..])),
            sh.config.zset_limits,
            seed,
        );
        Entry::new(Value::ZSet(Box::new(z)), ctx.now_ms)
    });
    sh.store_result(ctx.db, dst, entry, ZSET, event);
    out.int(elems.len() as i64);
}

// ---------------------------------------------------------------------------------------
// removals

pub fn zrem(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let event = |&n: &usize| (n > 0).then_some((ZSET, "zrem"));
    match write(sh, ctx, &a[1], None, out, event, |z, _| {
        a.iter().skip(2).filter(|m| z.remove(m).is_some()).count()
    }) {
        Ok(Some(n)) => out.int(n as i64),
        Ok(None) => out.int(0),
        Err(()) => {}
    }
}

pub fn zremrange(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, by: RangeBy) {
    let range = if by == RangeBy::Rank {
        match (parse_int(&a[2]), parse_int(&a[3])) {
            (Ok(s), Ok(e)) => Err((s, e)),
            (Err(e), _) | (_, Err(e)) => return out.error(e),
        }
    } else {
        match parse_range(&a[2], &a[3], by == RangeBy::Lex) {
            Ok(r) => Ok(r),
            Err(e) => return out.error(e),
        }
    };
    let name = match by {
        RangeBy::Rank => "zremrangebyrank",
        RangeBy::Lex => "zremrangebylex",
        _ => "zremrangebyscore",
    };
    let event = |&n: &usize| (n > 0).then_some((ZSET, name));
    match write(sh, ctx, &a[1], None, out, event, |z, _| {
        let (lo, hi) = match &range {
            Err((s, e)) => {
                let sel = select_rank(z.len(), *s, *e, false);
                (sel.start, sel.start + sel.n)
            }
            Ok(Range::Score(r)) => r.ranks(z.view()),
            Ok(Range::Lex(min, max)) => LexRange { min, max }.removal(z.view()),
        };
        z.remove_range(lo, hi.max(lo)).len()
    }) {
        Ok(Some(n)) => out.int(n as i64),
        Ok(None) => out.int(0),
        Err(()) => {}
    }
}

// ---------------------------------------------------------------------------------------
// pops

/// What popping a key gave.
pub type Popped = super::Popped<(f64, Vec<u8>)>;

/// Pops up to `count` elements from the low end (or the high end when `max`) of the sorted
/// set at `key`; deletes it when it empties.
pub fn pop_n(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    key: &[u8],
    max: bool,
    count: usize,
) -> Popped {
    let ctx = ExecCtx { db, now_ms };
    let mut sink = Vec::new();
    let mut out = ReplyWriter::new(&mut sink, percore_proto::Protocol::Resp2);
    let name = if max { "zpopmax" } else { "zpopmin" };
    let event = |v: &Vec<(f64, Vec<u8>)>| (!v.is_empty()).then_some((ZSET, name));
    match write(sh, &ctx, key, None, &mut out, event, |z, _| {
        let n = count.min(z.len());
        if max {
            let len = z.len();
            let mut v = z.remove_range(len - n, len);
            v.reverse();
            v
        } else {
            z.remove_range(0, n)
        }
    }) {
        Ok(Some(v)) => Popped::Elements(v),
        Ok(None) => Popped::Missing,
        Err(()) => Popped::WrongType,
    }
}

pub fn zpop(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, max: bool) {
    if a.len() > 3 {
        return out.error(err::SYNTAX);
    }
    let count = if a.len() == 3 {
        match parse_i64(&a[2]) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return out.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    if count == Some(0) {
        // Redis answers an empty array for an existing key, after the type check (a write
        // lookup: no statistics, no "keymiss").
        return match holds(sh, ctx.db, ctx.now_ms, &a[1]) {
            Some(false) => out.error(err::WRONGTYPE),
            _ => out.array(0),
        };
    }
    match pop_n(sh, ctx.db, ctx.now_ms, &a[1], max, count.unwrap_or(1)) {
        Popped::Missing => out.array(0),
        Popped::WrongType => out.error(err::WRONGTYPE),
        Popped::Elements(v) => {
            let nested = out.resp3() && count.is_some();
            out.array(if nested { v.len() } else { v.len() * 2 });
            for (s, m) in &v {
                if nested {
                    out.array(2);
                }
                out.bulk(m);
                write_score(out, *s);
            }
        }
    }
}

/// Whether `key` holds a sorted set, for the blocking pops: None when it is missing.
pub fn holds(sh: &mut Shard, db: usize, now_ms: u64, key: &[u8]) -> Option<bool> {
    sh.lookup(db, key, now_ms)
        .map(|e| matches!(e.value(), ValueRef::ZSet(_)))
}

/// Puts popped elements back (a blocked client that left before its reply): each member
/// absent now is added with its score, creating the set if needed. False when the key
/// holds another type now.
pub fn put_back(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    key: &[u8],
    elems: &[(f64, Vec<u8>)],
) -> bool {
    let Some((_, first)) = elems.first() else {
        return true;
    };
    let ctx = ExecCtx { db, now_ms };
    let limits = sh.config.zset_limits;
    let mut sink = Vec::new();
    let mut out = ReplyWriter::new(&mut sink, percore_proto::Protocol::Resp2);
    write(
        sh,
        &ctx,
        key,
        Some(first.len()),
        &mut out,
        |_| None,
        |z, seed| {
            for (s, m) in elems {
                if z.score(m).is_none() {
                    z.insert(*s, m, limits, seed);
                }
            }
        },
    )
    .is_ok()
}

/// ZMPOP's (and BZMPOP's) keys, end and count, with `numkeys` at `at`, in Redis's order of
/// checks.
pub fn parse_zmpop<'a>(
    a: &'a Args,
    at: usize,
) -> Result<(Vec<&'a [u8]>, bool, usize), &'static str> {
    let numkeys = match parse_i64(&a[at]) {
        Some(n) if n >= 1 => n as u64,
        _ => return Err("ERR numkeys should be greater than 0"),
    };
    let where_idx = at as u64 + numkeys + 1;
    if where_idx >= a.len() as u64 {
        return Err(err::SYNTAX);
    }
    let where_idx = where_idx as usize;
    let max = if eq_ic(&a[where_idx], b"min") {
        false
    } else if eq_ic(&a[where_idx], b"max") {
        true
    } else {
        return Err(err::SYNTAX);
    };
    let mut count = None;
    let mut j = where_idx + 1;
    while j < a.len() {
        if count.is_none() && eq_ic(&a[j], b"count") && j + 1 < a.len() {
            count = match parse_i64(&a[j + 1]) {
                Some(n) if n >= 1 => Some(n as usize),
                _ => return Err("ERR count should be greater than 0"),
            };
            j += 2;
        } else {
            return Err(err::SYNTAX);
        }
    }
    let keys = (at + 1..where_idx).map(|i| &a[i]).collect();
    Ok((keys, max, count.unwrap_or(1)))
}

/// ZMPOP's reply: the key, then its elements as member/score pairs.
pub fn write_zmpop_reply(out: &mut ReplyWriter, key: &[u8], elems: &[(f64, Vec<u8>)]) {
    out.array(2);
    out.bulk(key);
    out.array(elems.len());
    for (s, m) in elems {
        out.array(2);
        out.bulk(m);
        write_score(out, *s);
    }
}

pub fn zmpop(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (keys, max, count) = match parse_zmpop(&a, 1) {
        Ok(x) => x,
        Err(e) => return out.error(e),
    };
    let pop = |k: &[u8]| pop_n(sh, ctx.db, ctx.now_ms, k, max, count);
    super::mpop_first(&keys, pop, out, write_zmpop_reply);
}

// ---------------------------------------------------------------------------------------
// ZRANDMEMBER, ZSCAN

fn rng(sh: &mut Shard) -> impl FnMut() -> u64 {
    let mut x = sh.next_rand();
    move || crate::xorshift(&mut x)
}

pub fn zrandmember(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let mut rand = rng(sh);
    if a.len() == 2 {
        match super::read::<ZSet>(sh, ctx, &a[1], out) {
            Ok(Some(z)) => match z.random(&mut rand) {
                Some((_, m)) => out.bulk(&m),
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
    if a.len() > 4 || (a.len() == 4 && !eq_ic(&a[3], b"withscores")) {
        return out.error(err::SYNTAX);
    }
    let withscores = a.len() == 4;
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return out.error("ERR value is out of range");
    }
    let z = match super::read::<ZSet>(sh, ctx, &a[1], out) {
        Ok(Some(z)) => z,
        Ok(None) => return out.array(0),
        Err(()) => return,
    };
    let (count, uniq) = (l.unsigned_abs() as usize, l >= 0);
    if count == 0 {
        return out.array(0);
    }
    if !uniq || count == 1 {
        write_elems(out, count, withscores, |f| {
            for _ in 0..count {
                if let Some((s, m)) = z.random(&mut rand) {
                    f(s, &m);
                }
            }
        });
        return;
    }
    if count >= z.len() {
        // The whole set, highest first: Redis's `zuiNext` walks from the tail.
        let n = z.len();
        return write_elems(out, n, withscores, |f| {
            z.walk(n - 1, true, |s, m| {
                f(s, m);
                true
            })
        });
    }
    // A uniform sample without repetition: a partial shuffle of the ranks.
    let mut ranks: Vec<usize> = (0..z.len()).collect();
    for i in 0..count {
        let j = i + (rand() % (ranks.len() - i) as u64) as usize;
        ranks.swap(i, j);
    }
    write_elems(out, count, withscores, |f| {
        for &r in &ranks[..count] {
            if let Some((s, m)) = z.at(r) {
                f(s, &m);
            }
        }
    });
}

pub fn zscan(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    super::scan_collection::<ZSet>(sh, ctx, a, out, |z: ZSetRef, cursor, count, sink| {
        // A listpack shows scores as it stores them (Redis's d2string), a table as
        // `%.17g`.
        let packed = z.encoding() == "listpack";
        z.scan(cursor, count, |m, s| {
            let text = if packed {
                fmt_score_packed(s)
            } else {
                fmt_score(s)
            };
            sink(
                m,
                Some(ValueRef::Str {
                    data: &text,
                    raw: false,
                }),
            )
        })
    });
}

// ---------------------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF and their STORE and CARD forms

/// Which algebra a command does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, v: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += v;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *target {
                *target = v
            }
        }
        Aggregate::Max => {
            if v > *target {
                *target = v
            }
        }
    }
}

/// An input of the algebra: a sorted set, a set (every member scores 1), or nothing.
#[derive(Clone, Copy)]
enum Src<'a> {
    Missing,
    Z(ZSetRef<'a>),
    S(crate::types::set::SetRef<'a>),
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::Missing => 0,
            Src::Z(z) => z.len(),
            Src::S(s) => s.len(),
        }
    }
    fn score(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::Missing => None,
            Src::Z(z) => z.score(m),
            Src::S(s) => s.contains(m).then_some(1.0),
        }
    }
    fn for_each(&self, f: &mut dyn FnMut(f64, &[u8])) {
        match self {
            Src::Missing => {}
            Src::Z(z) => z.for_each(f),
            Src::S(s) => s.for_each(|m| f(1.0, m)),
        }
    }
}

/// The keys of a ZUNION-style command with its count at `at`, for the coordinator; None
/// when the count is not valid (the shard's own parse then replies the error).
pub fn algebra_keys<'a>(a: &'a Args, at: usize) -> Option<Vec<&'a [u8]>> {
    let n = parse_i64(&a[at])?;
    (n >= 1 && (n as u64) <= (a.len() - at - 1) as u64)
        .then(|| (at + 1..at + 1 + n as usize).map(|i| &a[i]).collect())
}

/// Redis's `zunionInterDiffGenericCommand`. `store`: the destination is `a[1]` and the
/// count `a[2]`; `card`: ZINTERCARD.
pub fn combine(
    sh: &mut Shard,
    ctx: &ExecCtx,
    a: Args,
    out: &mut ReplyWriter,
    op: Op,
    store: bool,
    card: bool,
) {
    let at = if store { 2 } else { 1 };
    let setnum = match parse_int(&a[at]) {
        Ok(n) => n,
        Err(e) => return out.error(e),
    };
    if setnum < 1 {
        let name = String::from_utf8_lossy(&a[0]).to_lowercase();
        return out.error(&format!(
            "ERR at least 1 input key is needed for '{name}' command"
        ));
    }
    if setnum as u64 > (a.len() - at - 1) as u64 {
        return out.error(err::SYNTAX);
    }
    let setnum = setnum as usize;
    let keys: Vec<&[u8]> = (at + 1..at + 1 + setnum).map(|i| &a[i]).collect();
    for k in &keys {
        let ok = sh
            .lookup_read(ctx.db, k, ctx.now_ms)
            .map(|e| matches!(e.value(), ValueRef::ZSet(_) | ValueRef::Set(_)));
        if ok == Some(false) {
            return out.error(err::WRONGTYPE);
        }
    }
    let mut weights = vec![1.0f64; setnum];
    let (mut how, mut withscores, mut limit) = (Aggregate::Sum, false, 0usize);
    let mut j = at + 1 + setnum;
    while j < a.len() {
        let remaining = a.len() - j;
        if op != Op::Diff && !card && remaining > setnum && eq_ic(&a[j], b"weights") {
            for (i, w) in weights.iter_mut().enumerate() {
                match parse_float(&a[j + 1 + i]) {
                    Some(v) => *w = v,
                    None => return out.error("ERR weight value is not a float"),
                }
            }
            j += 1 + setnum;
        } else if op != Op::Diff && !card && remaining >= 2 && eq_ic(&a[j], b"aggregate") {
            let v = &a[j + 1];
            how = if eq_ic(v, b"sum") {
                Aggregate::Sum
            } else if eq_ic(v, b"min") {
                Aggregate::Min
            } else if eq_ic(v, b"max") {
                Aggregate::Max
            } else {
                return out.error(err::SYNTAX);
            };
            j += 2;
        } else if !store && !card && eq_ic(&a[j], b"withscores") {
            withscores = true;
            j += 1;
        } else if card && remaining >= 2 && eq_ic(&a[j], b"limit") {
            limit = match parse_i64(&a[j + 1]) {
                Some(l) if l >= 0 => l as usize,
                _ => return out.error("ERR LIMIT can't be negative"),
            };
            j += 2;
        } else {
            return out.error(err::SYNTAX);
        }
    }
    let dict = &sh.dbs[ctx.db].dict;
    let mut srcs: Vec<(Src, f64)> = keys
        .iter()
        .zip(&weights)
        .map(|(k, &w)| {
            let s = match dict.peek(k).map(|e| e.value()) {
                Some(ValueRef::ZSet(z)) => Src::Z(z),
                Some(ValueRef::Set(s)) => Src::S(s),
                _ => Src::Missing,
            };
            (s, w)
        })
        .collect();
    if op != Op::Diff {
        // Smallest first, as Redis sorts its inputs (stably): it decides the order
        // aggregates are summed in.
        srcs.sort_by_key(|(s, _)| s.len());
    }
    let mut result: Vec<(f64, Vec<u8>)> = Vec::new();
    let mut cardinality = 0usize;
    match op {
        Op::Inter => {
            let (first, w0) = srcs[0];
            if first.len() > 0 {
                let mut done = false;
                first.for_each(&mut |s0, m| {
                    if done {
                        return;
                    }
                    let mut score = w0 * s0;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    for (src, w) in &srcs[1..] {
                        match src.score(m) {
                            Some(v) => aggregate(&mut score, v * w, how),
                            None => return,
                        }
                    }
                    if card {
                        cardinality += 1;
                        if limit != 0 && cardinality >= limit {
                            done = true;
                        }
                    } else {
                        result.push((score, m.to_vec()));
                    }
                });
            }
        }
        Op::Union => {
            let mut acc: std::collections::HashMap<Vec<u8>, f64> = std::collections::HashMap::new();
            for (src, w) in &srcs {
                src.for_each(&mut |s, m| {
                    let mut score = w * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(m) {
                        Some(t) => aggregate(t, score, how),
                        None => {
                            acc.insert(m.to_vec(), score);
                        }
                    }
                });
            }
            result = acc.into_iter().map(|(m, s)| (s, m)).collect();
        }
        Op::Diff => {
            let (first, _) = srcs[0];
            first.for_each(&mut |s, m| {
                if srcs[1..].iter().all(|(src, _)| src.score(m).is_none()) {
                    result.push((s, m.to_vec()));
                }
            });
        }
    }
    if card {
        return out.int(cardinality as i64);
    }
    result.sort_by(|x, y| cmp_elem(x.0, &x.1, y.0, &y.1));
    if store {
        let dst = a[1].to_vec();
        let event = match op {
            Op::Union => "zunionstore",
            Op::Inter => "zinterstore",
            Op::Diff => "zdiffstore",
        };
        return store_result(sh, ctx, &dst, &result, event, out);
    }
    write_elems(out, result.len(), withscores, |f| {
        result.iter().for_each(|(s, m)| f(*s, m))
    });
}
