//! Geo commands (Redis's `geo.c`): GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH,
//! GEOSEARCHSTORE, GEORADIUS, GEORADIUSBYMEMBER and their `_RO` forms.
//!
//! A geo set is an ordinary sorted set whose scores are 52-bit geohashes
//! ([`crate::types::geohash`]); GEOADD is ZADD with encoded scores. A search scans at most
//! nine score ranges (the cell of the centre and its neighbours at a step sized to the
//! area), keeps the points inside the circle or box, then sorts by distance when asked.
//!
//! Ported from Redis 7.0's `src/geo.c`, Copyright (c) 2014, Matt Stancliff and
//! Copyright (c) 2015-2016, Salvatore Sanfilippo (BSD 3-clause). Argument checks keep Redis's
//! order (clients see which error wins: WRONGTYPE first, then the centre, then the options
//! left to right, then the cross-option checks), and the reply order of equal distances is
//! Redis's: points in scan order (cell by cell, by score then member in each), then glibc's
//! stable merge sort, or Redis's `pqsort` when COUNT cuts the result.
//!
//! Costs: O(log n + m) per cell for m points in the scanned cells (a cell is a score range
//! of the sorted set); the candidates are copied out (member bytes), as Redis copies them.
//! COUNT ANY stops scanning at COUNT matches.

use super::eq_ic;
use super::zset::{parse_float, store_result, zadd};
use crate::types::geohash::{self as gh, Shape, ShapeKind};
use crate::types::zset::{ZSet, ZSetRef};
use crate::{err, ExecCtx, Shard};
use percore_proto::{parse_i64, Args, OwnedArgs, ReplyWriter};

const UNIT_ERR: &str = "ERR unsupported unit provided. please use M, KM, FT, MI";
const MEMBER_ERR: &str = "ERR could not decode requested zset member";

/// Meters per unit (`extractUnitOrReply`).
fn parse_unit(u: &[u8]) -> Result<f64, &'static str> {
    if eq_ic(u, b"m") {
        Ok(1.0)
    } else if eq_ic(u, b"km") {
        Ok(1000.0)
    } else if eq_ic(u, b"ft") {
        Ok(0.3048)
    } else if eq_ic(u, b"mi") {
        Ok(1609.34)
    } else {
        Err(UNIT_ERR)
    }
}

/// `extractLongLatOrReply`: a longitude and a latitude within Redis's limits.
fn parse_lonlat(lon: &[u8], lat: &[u8]) -> Result<[f64; 2], String> {
    let x = parse_float(lon).ok_or(err::NOT_FLOAT)?;
    let y = parse_float(lat).ok_or(err::NOT_FLOAT)?;
    if !(gh::LONG_MIN..=gh::LONG_MAX).contains(&x) || !(gh::LAT_MIN..=gh::LAT_MAX).contains(&y) {
        // C's `%f`: Rust's `{:.6}` prints the same digits (both exact, ties to even).
        return Err(format!(
            "ERR invalid longitude,latitude pair {},{}",
            fmt_f6(x),
            fmt_f6(y)
        ));
    }
    Ok([x, y])
}

fn fmt_f6(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    format!("{d:.6}")
}

/// `extractDistanceOrReply`: a radius and its unit's factor.
fn parse_distance(r: &[u8], unit: &[u8]) -> Result<(f64, f64), &'static str> {
    let d = parse_float(r).ok_or("ERR need numeric radius")?;
    if d < 0.0 {
        return Err("ERR radius cannot be negative");
    }
    Ok((d, parse_unit(unit)?))
}

/// `extractBoxOrReply`: width, height and the unit's factor.
fn parse_box(w: &[u8], h: &[u8], unit: &[u8]) -> Result<(f64, f64, f64), &'static str> {
    let w = parse_float(w).ok_or("ERR need numeric width")?;
    let h = parse_float(h).ok_or("ERR need numeric height")?;
    if h < 0.0 || w < 0.0 {
        return Err("ERR height or width cannot be negative");
    }
    Ok((w, h, parse_unit(unit)?))
}

/// C's `llrint` on x86-64: round half to even, 2⁶³ ("integer indefinite") when out of range.
fn llrint(d: f64) -> i64 {
    let r = d.round_ties_even();
    if r.is_nan() || !(-9223372036854775808.0..9223372036854775808.0).contains(&r) {
        i64::MIN
    } else {
        r as i64
    }
}

/// `addReplyDoubleDistance`: 4 decimals (`fixedpoint_d2string`).
pub fn fmt_distance(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    let v = llrint(d * 10000.0);
    let sign = if v < 0 { "-" } else { "" };
    let u = v.unsigned_abs();
    format!("{sign}{}.{:04}", u / 10000, u % 10000)
}

/// `ld2string(LD_STR_HUMAN)`: `%.17Lf` without trailing zeros (nor a bare `.`), `-0` as `0`.
pub fn fmt_human(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    let mut s = format!("{d:.17}");
    if s.contains('.') {
        let t = s.trim_end_matches('0').len();
        s.truncate(t);
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// A coordinate as `addReplyHumanLongDouble` sends it: a bulk string in RESP2, a double in
/// RESP3.
fn write_coord(out: &mut ReplyWriter, d: f64) {
    out.double_text(fmt_human(d).as_bytes());
}

/// C's `(long long)` of a score on x86-64 (WITHHASH): truncation, or `LLONG_MIN` out of
/// range.
fn score_as_i64(s: f64) -> i64 {
    if s.is_nan() || !(-9223372036854775808.0..9223372036854775808.0).contains(&s) {
        i64::MIN
    } else {
        s as i64
    }
}

// ---------------------------------------------------------------------------------------
// GEOADD, GEODIST, GEOHASH, GEOPOS

/// GEOADD key [NX|XX] [CH] lon lat member …: ZADD with each point's geohash as its score.
pub fn geoadd(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let (mut nx, mut xx) = (false, false);
    let mut longidx = 2;
    while longidx < a.len() {
        let o = &a[longidx];
        if eq_ic(o, b"nx") {
            nx = true;
        } else if eq_ic(o, b"xx") {
            xx = true;
        } else if !eq_ic(o, b"ch") {
            break;
        }
        longidx += 1;
    }
    if !(a.len() - longidx).is_multiple_of(3) || (xx && nx) {
        return out.error(err::SYNTAX);
    }
    let elements = (a.len() - longidx) / 3;
    let mut scores = Vec::with_capacity(elements);
    for i in 0..elements {
        let at = longidx + i * 3;
        match parse_lonlat(&a[at], &a[at + 1]) {
            Ok([x, y]) => {
                let bits = gh::encode_wgs84(x, y).map_or(0, |h| h.align52());
                scores.push(itoa::Buffer::new().format(bits).as_bytes().to_vec());
            }
            Err(e) => return out.error(&e),
        }
    }
    // ZADD key [options] score member …, as Redis rewrites the command.
    let mut z = OwnedArgs::default();
    z.push(b"zadd");
    for o in a.iter().take(longidx).skip(1) {
        z.push(o);
    }
    for (i, s) in scores.iter().enumerate() {
        z.push(s);
        z.push(&a[longidx + i * 3 + 2]);
    }
    zadd(sh, ctx, z.args(), out, false);
}

/// GEODIST key m1 m2 [unit]
pub fn geodist(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let to_meter = match a.len() {
        5 => match parse_unit(&a[4]) {
            Ok(u) => u,
            Err(e) => return out.error(e),
        },
        n if n > 5 => return out.error(err::SYNTAX),
        _ => 1.0,
    };
    let z = match super::read::<ZSet>(sh, ctx, &a[1], out) {
        Ok(Some(z)) => z,
        Ok(None) => return out.null(),
        Err(()) => return,
    };
    let (Some(s1), Some(s2)) = (z.score(&a[2]), z.score(&a[3])) else {
        return out.null();
    };
    match (gh::decode_score(s1), gh::decode_score(s2)) {
        (Some([x1, y1]), Some([x2, y2])) => {
            let d = gh::distance(x1, y1, x2, y2) / to_meter;
            out.bulk(fmt_distance(d).as_bytes());
        }
        _ => out.null(),
    }
}

/// GEOHASH key member …: 11-character standard geohashes, nil for missing members.
pub fn geohash(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let Ok(z) = super::read::<ZSet>(sh, ctx, &a[1], out) else {
        return;
    };
    out.array(a.len() - 2);
    for m in a.iter().skip(2) {
        match z.and_then(|z| z.score(m)).and_then(gh::standard_geohash) {
            Some(h) => out.bulk(&h),
            None => out.null(),
        }
    }
}

/// GEOPOS key member …: `[longitude, latitude]` pairs, a nil array for missing members.
pub fn geopos(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter) {
    let Ok(z) = super::read::<ZSet>(sh, ctx, &a[1], out) else {
        return;
    };
    out.array(a.len() - 2);
    for m in a.iter().skip(2) {
        match z.and_then(|z| z.score(m)).and_then(gh::decode_score) {
            Some([x, y]) => {
                out.array(2);
                write_coord(out, x);
                write_coord(out, y);
            }
            None => out.null_array(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// searches

/// Which search command runs (Redis's `georadiusGeneric` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    Radius,
    RadiusRo,
    ByMember,
    ByMemberRo,
    Search,
    SearchStore,
}

impl Search {
    /// The keyspace event of a search that stores its result.
    fn store_event(self) -> &'static str {
        if self == Search::SearchStore {
            "geosearchstore"
        } else {
            "georadiusstore"
        }
    }

    fn coords(self) -> bool {
        matches!(self, Search::Radius | Search::RadiusRo)
    }
    fn member(self) -> bool {
        matches!(self, Search::ByMember | Search::ByMemberRo)
    }
    fn nostore(self) -> bool {
        matches!(self, Search::RadiusRo | Search::ByMemberRo)
    }
    fn geosearch(self) -> bool {
        matches!(self, Search::Search | Search::SearchStore)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// One match of a search (`geoPoint`).
#[derive(Clone, Debug)]
struct Point {
    xy: [f64; 2],
    dist: f64,
    score: f64,
    member: Vec<u8>,
}

/// The parsed options of a search.
struct Options {
    withdist: bool,
    withhash: bool,
    withcoord: bool,
    sort: Sort,
    any: bool,
    count: i64,
    /// The argument index of the destination key.
    store: Option<usize>,
    storedist: bool,
}

/// The destination key of a GEORADIUS/GEORADIUSBYMEMBER as Redis's `georadiusGetKeys`
/// finds it; the search itself checks its own parse agrees before writing.
fn store_by_getkeys(a: &Args) -> Option<usize> {
    percore_proto::command::georadius_store_key(a)
}

/// GEORADIUS, GEORADIUSBYMEMBER (and `_RO`), GEOSEARCH and GEOSEARCHSTORE
/// (`georadiusGeneric`).
pub fn search(sh: &mut Shard, ctx: &ExecCtx, a: Args, out: &mut ReplyWriter, kind: Search) {
    let src = if kind == Search::SearchStore { 2 } else { 1 };
    let z = match super::read::<ZSet>(sh, ctx, &a[src], out) {
        Ok(z) => z,
        Err(()) => return,
    };
    let mut shape = Shape {
        xy: [0.0, 0.0],
        conversion: 0.0,
        kind: ShapeKind::Radius(0.0),
    };
    let base_args;
    if kind.coords() {
        base_args = 6;
        match parse_lonlat(&a[2], &a[3]) {
            Ok(xy) => shape.xy = xy,
            Err(e) => return out.error(&e),
        }
        match parse_distance(&a[4], &a[5]) {
            Ok((r, c)) => (shape.kind, shape.conversion) = (ShapeKind::Radius(r), c),
            Err(e) => return out.error(e),
        }
    } else if kind.member() {
        base_args = 5;
        // Without the key, nothing about the centre is read: the reply only depends on
        // whether there is a STORE option.
        if let Some(z) = z {
            match z.score(&a[2]).and_then(gh::decode_score) {
                Some(xy) => shape.xy = xy,
                None => return out.error(MEMBER_ERR),
            }
            match parse_distance(&a[3], &a[4]) {
                Ok((r, c)) => (shape.kind, shape.conversion) = (ShapeKind::Radius(r), c),
                Err(e) => return out.error(e),
            }
        }
    } else {
        base_args = src + 1;
    }

    let mut o = Options {
        withdist: false,
        withhash: false,
        withcoord: false,
        sort: Sort::None,
        any: false,
        count: 0,
        store: (kind == Search::SearchStore).then_some(1),
        storedist: false,
    };
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let remaining = a.len().saturating_sub(base_args);
    let mut i = 0;
    while i < remaining {
        let at = base_args + i;
        let arg = &a[at];
        let left = remaining - i - 1;
        if eq_ic(arg, b"withdist") {
            o.withdist = true;
        } else if eq_ic(arg, b"withhash") {
            o.withhash = true;
        } else if eq_ic(arg, b"withcoord") {
            o.withcoord = true;
        } else if eq_ic(arg, b"any") {
            o.any = true;
        } else if eq_ic(arg, b"asc") {
            o.sort = Sort::Asc;
        } else if eq_ic(arg, b"desc") {
            o.sort = Sort::Desc;
        } else if eq_ic(arg, b"count") && left >= 1 {
            match parse_i64(&a[at + 1]) {
                Some(c) if c <= 0 => return out.error("ERR COUNT must be > 0"),
                Some(c) => o.count = c,
                None => return out.error(err::NOT_INT),
            }
            i += 1;
        } else if (eq_ic(arg, b"store") || eq_ic(arg, b"storedist"))
            && left >= 1
            && !kind.nostore()
            && !kind.geosearch()
        {
            o.store = Some(at + 1);
            o.storedist = eq_ic(arg, b"storedist");
            i += 1;
        } else if eq_ic(arg, b"storedist") && kind == Search::SearchStore {
            o.storedist = true;
        } else if eq_ic(arg, b"frommember") && left >= 1 && kind.geosearch() && !fromloc {
            if let Some(z) = z {
                match z.score(&a[at + 1]).and_then(gh::decode_score) {
                    Some(xy) => shape.xy = xy,
                    None => return out.error(MEMBER_ERR),
                }
            }
            frommember = true;
            i += 1;
        } else if eq_ic(arg, b"fromlonlat") && left >= 2 && kind.geosearch() && !frommember {
            match parse_lonlat(&a[at + 1], &a[at + 2]) {
                Ok(xy) => shape.xy = xy,
                Err(e) => return out.error(&e),
            }
            fromloc = true;
            i += 2;
        } else if eq_ic(arg, b"byradius") && left >= 2 && kind.geosearch() && !bybox {
            match parse_distance(&a[at + 1], &a[at + 2]) {
                Ok((r, c)) => (shape.kind, shape.conversion) = (ShapeKind::Radius(r), c),
                Err(e) => return out.error(e),
            }
            byradius = true;
            i += 2;
        } else if eq_ic(arg, b"bybox") && left >= 3 && kind.geosearch() && !byradius {
            match parse_box(&a[at + 1], &a[at + 2], &a[at + 3]) {
                Ok((w, h, c)) => {
                    shape.kind = ShapeKind::Box {
                        width: w,
                        height: h,
                    };
                    shape.conversion = c;
                }
                Err(e) => return out.error(e),
            }
            bybox = true;
            i += 3;
        } else {
            return out.error(err::SYNTAX);
        }
        i += 1;
    }

    if o.store.is_some() && (o.withdist || o.withhash || o.withcoord) {
        let what = if kind == Search::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return out.error(&format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        ));
    }
    let name = String::from_utf8_lossy(&a[0]);
    if kind.geosearch() && !(frommember || fromloc) {
        return out.error(&format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        ));
    }
    if kind.geosearch() && !(byradius || bybox) {
        return out.error(&format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        ));
    }
    if o.any && o.count == 0 {
        return out.error("ERR the ANY argument requires COUNT argument");
    }
    // The server routes a GEORADIUS by the destination `georadiusGetKeys` finds; the two
    // agree on every command that gets this far (a disagreement would write a key this
    // shard may not own, so it is refused instead).
    if matches!(kind, Search::Radius | Search::ByMember) && o.store != store_by_getkeys(&a) {
        return out.error("ERR internal error: STORE key position disagrees with the key spec");
    }

    let Some(z) = z else {
        return match o.store {
            Some(d) => store_result(sh, ctx, &a[d], &[], kind.store_event(), out),
            None => out.array(0),
        };
    };
    if o.count != 0 && o.sort == Sort::None && !o.any {
        o.sort = Sort::Asc;
    }
    let limit = if o.any { o.count as u64 } else { 0 };
    let mut points = members_of_all_neighbors(z, &shape, limit);

    if points.is_empty() && o.store.is_none() {
        return out.array(0);
    }
    let result_len = points.len();
    let returned = if o.count == 0 || (result_len as u64) < o.count as u64 {
        result_len
    } else {
        o.count as usize
    };
    if o.sort != Sort::None {
        let asc = |p: &Point, q: &Point| gh::cmp_dist(p.dist, q.dist);
        let desc = |p: &Point, q: &Point| -gh::cmp_dist(p.dist, q.dist);
        match (o.sort == Sort::Asc, returned == result_len) {
            (true, true) => gh::merge_sort(&mut points, &asc),
            (false, true) => gh::merge_sort(&mut points, &desc),
            (true, false) => gh::partial_sort(&mut points, &asc, 0, returned - 1),
            (false, false) => gh::partial_sort(&mut points, &desc, 0, returned - 1),
        }
    }
    points.truncate(returned);

    let Some(dst) = o.store else {
        let options = o.withdist as usize + o.withcoord as usize + o.withhash as usize;
        out.array(returned);
        for p in &points {
            if options > 0 {
                out.array(options + 1);
            }
            out.bulk(&p.member);
            if o.withdist {
                out.bulk(fmt_distance(p.dist / shape.conversion).as_bytes());
            }
            if o.withhash {
                out.int(score_as_i64(p.score));
            }
            if o.withcoord {
                out.array(2);
                write_coord(out, p.xy[0]);
                write_coord(out, p.xy[1]);
            }
        }
        return;
    };
    let elems: Vec<(f64, Vec<u8>)> = points
        .into_iter()
        .map(|p| {
            let s = if o.storedist {
                p.dist / shape.conversion
            } else {
                p.score
            };
            (s, p.member)
        })
        .collect();
    store_result(sh, ctx, &a[dst], &elems, kind.store_event(), out);
}

/// `membersOfAllNeighbors`: the points inside `shape` from the nine cells in Redis's order,
/// skipping a cell equal to the one scanned before it; with `limit` (COUNT ANY) it stops
/// once that many were found.
fn members_of_all_neighbors(z: ZSetRef, shape: &Shape, limit: u64) -> Vec<Point> {
    let areas = gh::areas_by_shape(shape);
    let cells = areas.in_scan_order();
    let mut points = Vec::new();
    let mut last: Option<usize> = None;
    for (i, cell) in cells.iter().enumerate() {
        if cell.is_zero() {
            continue;
        }
        if last.is_some_and(|l| cells[l] == *cell) {
            continue;
        }
        if !points.is_empty() && limit != 0 && points.len() as u64 >= limit {
            break;
        }
        let (min, max) = gh::scores_of_box(*cell);
        points_in_range(z, min as f64, max as f64, shape, &mut points, limit);
        last = Some(i);
    }
    points
}

/// `geoGetPointsInRange`: the points with `min <= score < max` inside `shape`, in the set's
/// order, appended to `points` (until `limit` points when non-zero).
fn points_in_range(
    z: ZSetRef,
    min: f64,
    max: f64,
    shape: &Shape,
    points: &mut Vec<Point>,
    limit: u64,
) {
    let start = z.count_below(|s, _| s < min);
    z.walk(start, false, |score, member| {
        if score >= max {
            return false;
        }
        if let Some(xy) = gh::decode_score(score) {
            if let Some(dist) = gh::within_shape(shape, xy) {
                points.push(Point {
                    xy,
                    dist,
                    score,
                    member: member.to_vec(),
                });
            }
        }
        !(!points.is_empty() && limit != 0 && points.len() as u64 >= limit)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run, s, shard};

    #[test]
    fn formats_match_redis() {
        assert_eq!(fmt_distance(0.0), "0.0000");
        assert_eq!(fmt_distance(-0.0), "0.0000");
        assert_eq!(fmt_distance(0.00004), "0.0000");
        assert_eq!(fmt_distance(0.00016), "0.0002");
        assert_eq!(fmt_distance(12.5), "12.5000");
        assert_eq!(fmt_distance(166274.15156960033), "166274.1516");
        assert_eq!(fmt_distance(f64::NAN), "-922337203685477.5808");
        assert_eq!(fmt_human(13.361389338970184), "13.36138933897018433");
        assert_eq!(fmt_human(15.0), "15");
        assert_eq!(fmt_human(-0.0), "0");
        assert_eq!(fmt_human(-1e-20), "0");
        assert_eq!(fmt_human(-0.5), "-0.5");
        assert_eq!(fmt_f6(200.0), "200.000000");
        assert_eq!(fmt_f6(-1e-7), "-0.000000");
        assert_eq!(fmt_f6(f64::NEG_INFINITY), "-inf");
        assert_eq!(llrint(2.5), 2);
        assert_eq!(llrint(1e300), i64::MIN);
        assert_eq!(score_as_i64(3479099956230698.0), 3479099956230698);
    }

    #[test]
    fn geoadd_stores_geohash_scores_and_searches_find_them() {
        let mut sh = shard();
        let r = run(
            &mut sh,
            0,
            &[
                "GEOADD",
                "Sicily",
                "13.361389",
                "38.115556",
                "Palermo",
                "15.087269",
                "37.502669",
                "Catania",
            ],
        );
        assert_eq!(s(&r), ":2\r\n");
        assert_eq!(
            s(&run(&mut sh, 0, &["ZSCORE", "Sicily", "Palermo"])),
            "$16\r\n3479099956230698\r\n"
        );
        assert_eq!(
            s(&run(
                &mut sh,
                0,
                &["GEODIST", "Sicily", "Palermo", "Catania", "km"]
            )),
            "$8\r\n166.2742\r\n"
        );
        assert_eq!(
            s(&run(&mut sh, 0, &["GEORADIUS", "Sicily", "15", "37", "200", "km", "WITHDIST", "ASC"])),
            "*2\r\n*2\r\n$7\r\nCatania\r\n$7\r\n56.4413\r\n*2\r\n$7\r\nPalermo\r\n$8\r\n190.4424\r\n"
        );
        assert_eq!(
            s(&run(
                &mut sh,
                0,
                &[
                    "GEOSEARCH",
                    "Sicily",
                    "FROMLONLAT",
                    "15",
                    "37",
                    "BYBOX",
                    "400",
                    "400",
                    "km",
                    "DESC",
                    "COUNT",
                    "1"
                ]
            )),
            "*1\r\n$7\r\nPalermo\r\n"
        );
        assert_eq!(
            s(&run(
                &mut sh,
                0,
                &[
                    "GEOSEARCHSTORE",
                    "dst",
                    "Sicily",
                    "FROMMEMBER",
                    "Palermo",
                    "BYRADIUS",
                    "10",
                    "km",
                    "STOREDIST"
                ]
            )),
            ":1\r\n"
        );
        assert_eq!(
            s(&run(
                &mut sh,
                0,
                &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]
            )),
            "*2\r\n$7\r\nPalermo\r\n$1\r\n0\r\n"
        );
        assert_eq!(
            s(&run(&mut sh, 0, &["GEOADD", "Sicily", "181", "0", "x"])),
            "-ERR invalid longitude,latitude pair 181.000000,0.000000\r\n"
        );
        assert_eq!(
            s(&run(
                &mut sh,
                0,
                &[
                    "GEORADIUS_RO",
                    "Sicily",
                    "15",
                    "37",
                    "1",
                    "km",
                    "STORE",
                    "x"
                ]
            )),
            "-ERR syntax error\r\n"
        );
    }
}
