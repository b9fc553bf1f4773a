//! Geohash math for the geo commands: Redis's 52-bit interleaved geohash (the score a geo
//! set stores for a member), the 3×3 boxes a radius or box search scans, the haversine
//! distance, and the sorts whose order of equal distances Redis's replies show.
//!
//! Ported from Redis 7.0's `src/geohash.c`, `src/geohash_helper.c` (which started in the
//! ardb project) and `src/pqsort.c`, keeping every floating-point operation in Redis's order
//! so coordinates, distances and the boxes scanned match bit for bit:
//!
//! - Copyright (c) 2013-2014, yinqiwen <yinqiwen@gmail.com>
//! - Copyright (c) 2014, Matt Stancliff <matt@genges.com>
//! - Copyright (c) 2015-2016, Salvatore Sanfilippo <antirez@gmail.com>
//! - `pqsort.c`: Copyright (C) 2009-2012 Salvatore Sanfilippo, from NetBSD's `qsort.c`,
//!   Copyright (c) 1992, 1993 The Regents of the University of California (Bentley &
//!   McIlroy's "Engineering a Sort Function").
//!
//! All rights reserved; redistributed under the BSD 3-clause licence of those files. The
//! stable sort ([`merge_sort`]) is written here to give the order glibc's `qsort` gives
//! (a top-down merge sort), which Redis's replies show for equal distances.
//!
//! Invariants and conventions:
//! - A hash is `(bits, step)`: `step` (1..=26) bits of longitude and of latitude interleaved,
//!   longitude in the odd positions (from the top). A geo set's scores are step-26 hashes:
//!   52 bits, exact in an `f64`.
//! - Latitudes are limited to ±85.05112878 (Web Mercator, EPSG:900913) and longitudes to
//!   ±180; encoding refuses anything outside.
//! - Nothing here panics on any input: a score that is not a geohash (any `f64` of a sorted
//!   set) is turned into bits as x86-64's `(uint64_t)` cast does, and decodes to clamped
//!   coordinates, as in Redis; the sorts are bounded by the slice and never index outside
//!   it whatever the comparator answers (NaN distances included).
//! - Distances use the platform's libm (`sin`, `cos`, `asin`, `sqrt` of glibc), as Redis.

use std::cmp::Ordering;

/// Bits of precision per coordinate of a stored score: 26 × 2 = 52 bits.
pub const STEP_MAX: u8 = 26;
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;

/// Earth's quadratic mean radius for WGS-84, in meters (Redis's `EARTH_RADIUS_IN_METERS`).
pub const EARTH_RADIUS_M: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

#[inline]
fn deg_rad(ang: f64) -> f64 {
    ang * D_R
}

#[inline]
fn rad_deg(ang: f64) -> f64 {
    ang / D_R
}

/// A geohash of `step` bits per coordinate; `(0, 0)` is the "no box" marker (`GZERO`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashBits {
    pub bits: u64,
    pub step: u8,
}

impl HashBits {
    pub fn is_zero(self) -> bool {
        self.bits == 0 && self.step == 0
    }

    /// The hash left-aligned to 52 bits (`geohashAlign52Bits`): the score of its box's
    /// first point.
    pub fn align52(self) -> u64 {
        self.bits << (52 - self.step as u32 * 2)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    fn is_zero(&self) -> bool {
        self.max == 0.0 && self.min == 0.0
    }
}

/// The cell a hash names.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Area {
    pub hash: HashBits,
    pub longitude: Range,
    pub latitude: Range,
}

/// The eight cells around one, at the same step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Neighbors {
    pub north: HashBits,
    pub east: HashBits,
    pub west: HashBits,
    pub south: HashBits,
    pub north_east: HashBits,
    pub south_east: HashBits,
    pub north_west: HashBits,
    pub south_west: HashBits,
}

/// The Web Mercator ranges of the stored scores.
pub const LONG_RANGE: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
pub const LAT_RANGE: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// Interleaves the low 32 bits of `x` (even positions) and `y` (odd positions).
fn interleave64(xlo: u32, ylo: u32) -> u64 {
    const B: [u64; 5] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
    ];
    const S: [u32; 5] = [1, 2, 4, 8, 16];
    let (mut x, mut y) = (xlo as u64, ylo as u64);
    for i in (0..5).rev() {
        x = (x | (x << S[i])) & B[i];
        y = (y | (y << S[i])) & B[i];
    }
    x | (y << 1)
}

/// The inverse of [`interleave64`]: even bits in the low word, odd bits in the high one.
fn deinterleave64(interleaved: u64) -> u64 {
    const B: [u64; 6] = [
        0x5555555555555555,
        0x3333333333333333,
        0x0F0F0F0F0F0F0F0F,
        0x00FF00FF00FF00FF,
        0x0000FFFF0000FFFF,
        0x00000000FFFFFFFF,
    ];
    const S: [u32; 6] = [0, 1, 2, 4, 8, 16];
    let (mut x, mut y) = (interleaved, interleaved >> 1);
    for i in 0..6 {
        x = (x | (x >> S[i])) & B[i];
        y = (y | (y >> S[i])) & B[i];
    }
    x | (y << 32)
}

/// `geohashEncode`: the step-`step` hash of a point within the given ranges; None outside
/// them or Redis's coordinate limits, or for a step outside 1..=32.
pub fn encode(
    long_range: Range,
    lat_range: Range,
    longitude: f64,
    latitude: f64,
    step: u8,
) -> Option<HashBits> {
    if step > 32 || step == 0 || lat_range.is_zero() || long_range.is_zero() {
        return None;
    }
    if !(LONG_MIN..=LONG_MAX).contains(&longitude) || !(LAT_MIN..=LAT_MAX).contains(&latitude) {
        return None;
    }
    if latitude < lat_range.min
        || latitude > lat_range.max
        || longitude < long_range.min
        || longitude > long_range.max
    {
        return None;
    }
    let mut lat_offset = (latitude - lat_range.min) / (lat_range.max - lat_range.min);
    let mut long_offset = (longitude - long_range.min) / (long_range.max - long_range.min);
    let scale = (1u64 << step) as f64;
    lat_offset *= scale;
    long_offset *= scale;
    // In 0..=2^step here (the checks above), so the truncating conversions are C's.
    Some(HashBits {
        bits: interleave64(lat_offset as u32, long_offset as u32),
        step,
    })
}

/// The step-26 hash of a point in the stored ranges (`geohashEncodeWGS84`).
pub fn encode_wgs84(longitude: f64, latitude: f64) -> Option<HashBits> {
    encode(LONG_RANGE, LAT_RANGE, longitude, latitude, STEP_MAX)
}

/// `geohashDecode`: the cell of `hash` within the ranges.
pub fn decode(long_range: Range, lat_range: Range, hash: HashBits) -> Option<Area> {
    if hash.is_zero() || lat_range.is_zero() || long_range.is_zero() || hash.step > 32 {
        return None;
    }
    let sep = deinterleave64(hash.bits);
    let lat_scale = lat_range.max - lat_range.min;
    let long_scale = long_range.max - long_range.min;
    let ilato = sep as u32;
    let ilono = (sep >> 32) as u32;
    let div = (1u64 << hash.step) as f64;
    // `ilato + 1` is C's 32-bit unsigned addition.
    Some(Area {
        hash,
        latitude: Range {
            min: lat_range.min + (ilato as f64 / div) * lat_scale,
            max: lat_range.min + (ilato.wrapping_add(1) as f64 / div) * lat_scale,
        },
        longitude: Range {
            min: long_range.min + (ilono as f64 / div) * long_scale,
            max: long_range.min + (ilono.wrapping_add(1) as f64 / div) * long_scale,
        },
    })
}

/// The centre of a cell, clamped to the coordinate limits: `[longitude, latitude]`.
pub fn area_center(area: &Area) -> [f64; 2] {
    let lon = ((area.longitude.min + area.longitude.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((area.latitude.min + area.latitude.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    [lon, lat]
}

/// C's `(uint64_t)` conversion of a double as x86-64 code does it (a signed conversion
/// below 2⁶³, a biased one above; out-of-range and NaN give the "integer indefinite"
/// value), so any sorted-set score is read as Redis reads it.
pub fn score_bits(score: f64) -> u64 {
    const TWO63: f64 = 9223372036854775808.0;
    // `cvttsd2si`: truncation, or 2^63 ("integer indefinite") outside [-2^63, 2^63).
    let cvtt = |d: f64| -> u64 {
        if d.is_nan() || !(-TWO63..TWO63).contains(&d) {
            0x8000_0000_0000_0000
        } else {
            d as i64 as u64
        }
    };
    if score >= TWO63 {
        cvtt(score - TWO63) ^ 0x8000_0000_0000_0000
    } else {
        cvtt(score)
    }
}

/// `decodeGeohash`: a stored score's point, `[longitude, latitude]`.
pub fn decode_score(score: f64) -> Option<[f64; 2]> {
    let hash = HashBits {
        bits: score_bits(score),
        step: STEP_MAX,
    };
    decode(LONG_RANGE, LAT_RANGE, hash).map(|a| area_center(&a))
}

/// The 11-character standard geohash (latitude over -90..90) of a stored score, as GEOHASH
/// replies it; None when the score does not decode.
pub fn standard_geohash(score: f64) -> Option<[u8; 11]> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let [lon, lat] = decode_score(score)?;
    let r_lon = Range {
        min: -180.0,
        max: 180.0,
    };
    let r_lat = Range {
        min: -90.0,
        max: 90.0,
    };
    // Redis ignores a failed re-encoding (it cannot fail for a decoded point) and reads
    // zero bits then.
    let bits = encode(r_lon, r_lat, lon, lat, STEP_MAX).map_or(0, |h| h.bits);
    let mut buf = [b'0'; 11];
    for (i, b) in buf.iter_mut().enumerate().take(10) {
        *b = ALPHABET[((bits >> (52 - (i + 1) * 5)) & 0x1f) as usize];
    }
    // 52 bits make 10.4 characters: the 11th is 0, as Redis writes it.
    Some(buf)
}

/// `geohash_move_x` (`axis` 0xaaaa…, the longitude's bits) and `geohash_move_y` (0x5555…,
/// the latitude's): the cell `d` (-1, 0 or 1) steps along that axis, the other axis's bits
/// left as they are.
fn move_axis(hash: &mut HashBits, d: i8, axis: u64) {
    if d == 0 {
        return;
    }
    let mut moved = hash.bits & axis;
    let kept = hash.bits & !axis;
    let shift = 64 - hash.step as u32 * 2;
    let zz = !axis >> shift;
    if d > 0 {
        moved = moved.wrapping_add(zz + 1);
    } else {
        moved |= zz;
        moved = moved.wrapping_sub(zz + 1);
    }
    moved &= axis >> shift;
    hash.bits = moved | kept;
}

/// `geohashNeighbors`: the eight cells around `hash` (wrapping around the antimeridian and
/// the poles, as bit arithmetic does). `hash.step` must be 1..=32.
pub fn neighbors(hash: HashBits) -> Neighbors {
    let at = |dx: i8, dy: i8| {
        let mut h = hash;
        move_axis(&mut h, dx, 0xaaaaaaaaaaaaaaaa);
        move_axis(&mut h, dy, 0x5555555555555555);
        h
    };
    Neighbors {
        east: at(1, 0),
        west: at(-1, 0),
        south: at(0, -1),
        north: at(0, 1),
        north_west: at(-1, 1),
        north_east: at(1, 1),
        south_east: at(1, -1),
        south_west: at(-1, -1),
    }
}

/// The search area of a query: a circle or an axis-aligned box around a centre, with the
/// factor from the query's unit to meters (Redis's `GeoShape`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ShapeKind {
    Radius(f64),
    Box { width: f64, height: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// `[longitude, latitude]`.
    pub xy: [f64; 2],
    /// Meters per unit of the query (`m` 1, `km` 1000, `ft` 0.3048, `mi` 1609.34).
    pub conversion: f64,
    pub kind: ShapeKind,
}

/// `geohashEstimateStepsByRadius`: the step whose cells are about the search's size.
pub fn estimate_steps_by_radius(range_meters: f64, lat: f64) -> u8 {
    if range_meters == 0.0 {
        return 26;
    }
    let mut range = range_meters;
    let mut step: i32 = 1;
    // Doubling reaches MERCATOR_MAX within ~1100 rounds from the smallest positive double.
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

/// `geohashBoundingBox`: `[min_lon, min_lat, max_lon, max_lat]` of the search area.
pub fn bounding_box(shape: &Shape) -> [f64; 4] {
    let [longitude, latitude] = shape.xy;
    let (h, w) = match shape.kind {
        ShapeKind::Radius(r) => (r, r),
        ShapeKind::Box { width, height } => (height / 2.0, width / 2.0),
    };
    let height = shape.conversion * h;
    let width = shape.conversion * w;
    let lat_delta = rad_deg(height / EARTH_RADIUS_M);
    let long_delta_top = rad_deg(width / EARTH_RADIUS_M / deg_rad(latitude + lat_delta).cos());
    let long_delta_bottom = rad_deg(width / EARTH_RADIUS_M / deg_rad(latitude - lat_delta).cos());
    // The box's wider edge is the one nearer the equator.
    let southern = latitude < 0.0;
    let delta = if southern {
        long_delta_bottom
    } else {
        long_delta_top
    };
    [
        longitude - delta,
        latitude - lat_delta,
        longitude + delta,
        latitude + lat_delta,
    ]
}

/// The cells a search scans: the centre's cell and its neighbours, those that cannot hold
/// a match zeroed (Redis's `GeoHashRadius`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchAreas {
    pub hash: HashBits,
    pub neighbors: Neighbors,
    pub area: Area,
}

impl SearchAreas {
    /// The nine cells in Redis's scan order: centre, N, S, E, W, NE, NW, SE, SW.
    pub fn in_scan_order(&self) -> [HashBits; 9] {
        let n = &self.neighbors;
        [
            self.hash,
            n.north,
            n.south,
            n.east,
            n.west,
            n.north_east,
            n.north_west,
            n.south_east,
            n.south_west,
        ]
    }
}

/// `geohashCalculateAreasByShapeWGS84`: the cells covering `shape`. The shape's centre must
/// be within the coordinate limits.
pub fn areas_by_shape(shape: &Shape) -> SearchAreas {
    let [min_lon, min_lat, max_lon, max_lat] = bounding_box(shape);
    let [longitude, latitude] = shape.xy;
    let radius_meters = match shape.kind {
        ShapeKind::Radius(r) => r,
        ShapeKind::Box { width, height } => {
            ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
        }
    } * shape.conversion;
    let mut steps = estimate_steps_by_radius(radius_meters, latitude);
    let cells = |steps: u8| {
        let hash = encode(LONG_RANGE, LAT_RANGE, longitude, latitude, steps).unwrap_or_default();
        let hash = HashBits {
            bits: hash.bits,
            step: steps,
        };
        let area = decode(LONG_RANGE, LAT_RANGE, hash).unwrap_or(Area {
            hash,
            ..Area::default()
        });
        (hash, neighbors(hash), area)
    };
    let (mut hash, mut nb, mut area) = cells(steps);

    // Near a cell's edge the estimated step may be too fine for the neighbours to cover the
    // whole bounding box: one step coarser then.
    let dec = |h: HashBits| decode(LONG_RANGE, LAT_RANGE, h).unwrap_or_default();
    let decrease_step = dec(nb.north).latitude.max < max_lat
        || dec(nb.south).latitude.min > min_lat
        || dec(nb.east).longitude.max < max_lon
        || dec(nb.west).longitude.min > min_lon;
    if steps > 1 && decrease_step {
        steps -= 1;
        (hash, nb, area) = cells(steps);
    }

    // Exclude the cells that cannot hold a match.
    if steps >= 2 {
        let zero = HashBits::default();
        if area.latitude.min < min_lat {
            (nb.south, nb.south_west, nb.south_east) = (zero, zero, zero);
        }
        if area.latitude.max > max_lat {
            (nb.north, nb.north_east, nb.north_west) = (zero, zero, zero);
        }
        if area.longitude.min < min_lon {
            (nb.west, nb.south_west, nb.north_west) = (zero, zero, zero);
        }
        if area.longitude.max > max_lon {
            (nb.east, nb.south_east, nb.north_east) = (zero, zero, zero);
        }
    }
    SearchAreas {
        hash,
        neighbors: nb,
        area,
    }
}

/// The score range `[min, max)` of the points inside a cell (`scoresOfGeoHashBox`).
pub fn scores_of_box(hash: HashBits) -> (u64, u64) {
    let min = hash.align52();
    let max = HashBits {
        bits: hash.bits.wrapping_add(1),
        step: hash.step,
    }
    .align52();
    (min, max)
}

/// Distance between two latitudes on one meridian, in meters.
pub fn lat_distance(lat1d: f64, lat2d: f64) -> f64 {
    EARTH_RADIUS_M * (deg_rad(lat2d) - deg_rad(lat1d)).abs()
}

/// The haversine great-circle distance in meters (`geohashGetDistance`).
pub fn distance(lon1d: f64, lat1d: f64, lon2d: f64, lat2d: f64) -> f64 {
    let lon1r = deg_rad(lon1d);
    let lon2r = deg_rad(lon2d);
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1d, lat2d);
    }
    let lat1r = deg_rad(lat1d);
    let lat2r = deg_rad(lat2d);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// The distance from the shape's centre to `[lon, lat]` when the point is inside the shape
/// (`geoWithinShape` after decoding).
pub fn within_shape(shape: &Shape, xy: [f64; 2]) -> Option<f64> {
    let [x1, y1] = shape.xy;
    let [x2, y2] = xy;
    match shape.kind {
        ShapeKind::Radius(r) => {
            let d = distance(x1, y1, x2, y2);
            // `d > radius` rejects; a NaN distance is accepted, as in Redis.
            (d.partial_cmp(&(r * shape.conversion)) != Some(Ordering::Greater)).then_some(d)
        }
        ShapeKind::Box { width, height } => {
            let (width_m, height_m) = (width * shape.conversion, height * shape.conversion);
            if lat_distance(y2, y1) > height_m / 2.0 {
                return None;
            }
            if distance(x2, y2, x1, y2) > width_m / 2.0 {
                return None;
            }
            Some(distance(x1, y1, x2, y2))
        }
    }
}

/// Redis's `sort_gp_asc` on two distances: 1, 0 or -1 (any NaN makes it -1).
pub fn cmp_dist(a: f64, b: f64) -> i32 {
    if a > b {
        1
    } else if a == b {
        0
    } else {
        -1
    }
}

/// glibc's `qsort` as Redis's build uses it for arrays that fit in memory: a top-down
/// stable merge sort (`msort_with_tmp`), comparisons in the same order, so ties and
/// inconsistent comparisons (NaN) come out as Redis's do. O(n log n), one scratch copy.
pub fn merge_sort<T: Clone>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    if v.len() <= 1 {
        return;
    }
    let mut tmp = v.to_vec();
    msort(v, &mut tmp, cmp);
}

fn msort<T: Clone>(b: &mut [T], tmp: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = b.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    {
        let (b1, b2) = b.split_at_mut(n1);
        let (t1, t2) = tmp.split_at_mut(n1);
        msort(b1, t1, cmp);
        msort(b2, t2, cmp);
    }
    let (mut i, mut j, mut k) = (0, n1, 0);
    while i < n1 && j < n {
        if cmp(&b[i], &b[j]) <= 0 {
            tmp[k] = b[i].clone();
            i += 1;
        } else {
            tmp[k] = b[j].clone();
            j += 1;
        }
        k += 1;
    }
    while i < n1 {
        tmp[k] = b[i].clone();
        i += 1;
        k += 1;
    }
    // What remains of the second half is already in place.
    b[..k].clone_from_slice(&tmp[..k]);
}

/// Redis's `pqsort`: Bentley–McIlroy quicksort that only sorts the partitions overlapping
/// ranks `lrange..=rrange`, leaving ranks there exactly where Redis's leaves them (ties
/// included). Indices stay within `v` whatever `cmp` answers.
///
/// Element indices stand for Redis's byte pointers (the range tests are the same in either
/// unit). Redis recurses into the left partition and loops on the right one; partitions are
/// disjoint and each is sorted from its own contents alone, so taking them from a
/// heap-allocated stack instead leaves every element where Redis's does, without a call
/// depth that crafted points could make linear in their number.
pub fn partial_sort<T>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32, lrange: usize, rrange: usize) {
    let mut work = vec![(0, v.len())];
    while let Some((a, n)) = work.pop() {
        let parts = pqsort_step(v, a, n, cmp, lrange, rrange);
        work.extend(parts.into_iter().flatten());
    }
}

fn med3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &impl Fn(&T, &T) -> i32) -> usize {
    if cmp(&v[a], &v[b]) < 0 {
        if cmp(&v[b], &v[c]) < 0 {
            b
        } else if cmp(&v[a], &v[c]) < 0 {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]) > 0 {
        b
    } else if cmp(&v[a], &v[c]) < 0 {
        a
    } else {
        c
    }
}

fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

/// One partition step of `_pqsort` on `v[a..a + n]`: sorts it outright when small, else
/// partitions it and returns the left and the right part (start, length) when they still
/// need sorting: more than one element, overlapping the wanted ranks.
fn pqsort_step<T>(
    v: &mut [T],
    a: usize,
    n: usize,
    cmp: &impl Fn(&T, &T) -> i32,
    lrange: usize,
    rrange: usize,
) -> [Option<(usize, usize)>; 2] {
    if n < 7 {
        for pm in a + 1..a + n {
            let mut pl = pm;
            while pl > a && cmp(&v[pl - 1], &v[pl]) > 0 {
                v.swap(pl, pl - 1);
                pl -= 1;
            }
        }
        return [None, None];
    }
    let mut pm = a + n / 2;
    if n > 7 {
        let mut pl = a;
        let mut pn = a + n - 1;
        if n > 40 {
            let d = n / 8;
            pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
            pm = med3(v, pm - d, pm, pm + d, cmp);
            pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
        }
        pm = med3(v, pl, pm, pn, cmp);
    }
    v.swap(a, pm);
    // Signed positions: `pc` may step to one before `pb`'s start.
    let (mut pa, mut pb) = (a as isize + 1, a as isize + 1);
    let (mut pc, mut pd) = ((a + n - 1) as isize, (a + n - 1) as isize);
    loop {
        while pb <= pc {
            let r = cmp(&v[pb as usize], &v[a]);
            if r > 0 {
                break;
            }
            if r == 0 {
                v.swap(pa as usize, pb as usize);
                pa += 1;
            }
            pb += 1;
        }
        while pb <= pc {
            let r = cmp(&v[pc as usize], &v[a]);
            if r < 0 {
                break;
            }
            if r == 0 {
                v.swap(pc as usize, pd as usize);
                pd -= 1;
            }
            pc -= 1;
        }
        if pb > pc {
            break;
        }
        v.swap(pb as usize, pc as usize);
        pb += 1;
        pc -= 1;
    }
    let pn = (a + n) as isize;
    let r = (pa - a as isize).min(pb - pa);
    vecswap(v, a, (pb - r) as usize, r as usize);
    let r = (pd - pc).min(pn - pd - 1);
    vecswap(v, pb as usize, (pn - r) as usize, r as usize);
    let overlaps = |l: usize, cnt: usize| {
        let r_end = l + cnt - 1;
        !((lrange < l && rrange < l) || (lrange > r_end && rrange > r_end))
    };
    let left = (pb - pa) as usize;
    let right = (pd - pc) as usize;
    [(a, left), (pn as usize - right, right)]
        .map(|(l, cnt)| (cnt > 1 && overlaps(l, cnt)).then_some((l, cnt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trips() {
        for (x, y) in [
            (0u32, 0u32),
            (1, 0),
            (0, 1),
            (0x3ffffff, 0x1234567),
            (u32::MAX, 7),
        ] {
            let i = interleave64(x, y);
            let d = deinterleave64(i);
            assert_eq!((d as u32, (d >> 32) as u32), (x, y));
        }
        assert_eq!(interleave64(1, 0), 1);
        assert_eq!(interleave64(0, 1), 2);
    }

    /// Palermo, as Redis's documentation adds it: score 3479099956230698, GEOHASH
    /// sqc8b49rny0, GEOPOS 13.36138933897018433 38.11555639549629859.
    #[test]
    fn encode_and_decode_match_redis() {
        let h = encode_wgs84(13.361389, 38.115556).unwrap();
        assert_eq!(h.align52(), 3479099956230698);
        let [lon, lat] = decode_score(3479099956230698.0).unwrap();
        assert_eq!(format!("{lon:.17}"), "13.36138933897018433");
        assert_eq!(format!("{lat:.17}"), "38.11555639549629859");
        assert_eq!(
            &standard_geohash(3479099956230698.0).unwrap(),
            b"sqc8b49rny0"
        );
        // Catania.
        let c = encode_wgs84(15.087269, 37.502669).unwrap().align52();
        assert_eq!(c, 3479447370796909);
        let [l2, t2] = decode_score(c as f64).unwrap();
        let d = distance(lon, lat, l2, t2);
        assert_eq!(format!("{d:.4}"), "166274.1516");
        // Outside the limits.
        assert!(encode_wgs84(180.000001, 0.0).is_none());
        assert!(encode_wgs84(0.0, 85.06).is_none());
        assert!(encode_wgs84(-180.0, -85.05112878).is_some());
    }

    #[test]
    fn any_score_decodes_without_panicking() {
        for s in [
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            9.3e18,
            -9223372036854775808.0,
            (1u64 << 52) as f64,
            0.5,
        ] {
            let [lon, lat] = decode_score(s).unwrap();
            assert!((LONG_MIN..=LONG_MAX).contains(&lon), "{s}");
            assert!((LAT_MIN..=LAT_MAX).contains(&lat), "{s}");
            standard_geohash(s).unwrap();
        }
        assert_eq!(score_bits(-1.0), u64::MAX);
        assert_eq!(score_bits(f64::INFINITY), 0);
        assert_eq!(score_bits(f64::NEG_INFINITY), 1 << 63);
        assert_eq!(score_bits(1e19), 10_000_000_000_000_000_000);
    }

    #[test]
    fn neighbors_are_adjacent_and_wrap_around_the_antimeridian() {
        let h = encode(LONG_RANGE, LAT_RANGE, 179.99, 10.0, 10).unwrap();
        let n = neighbors(h);
        let a = decode(LONG_RANGE, LAT_RANGE, h).unwrap();
        let east = decode(LONG_RANGE, LAT_RANGE, n.east).unwrap();
        let west = decode(LONG_RANGE, LAT_RANGE, n.west).unwrap();
        let north = decode(LONG_RANGE, LAT_RANGE, n.north).unwrap();
        let south = decode(LONG_RANGE, LAT_RANGE, n.south).unwrap();
        // East of the last column is the first one.
        assert_eq!(east.longitude.min, -180.0);
        assert_eq!(west.longitude.max, a.longitude.min);
        assert_eq!(north.latitude.min, a.latitude.max);
        assert_eq!(south.latitude.max, a.latitude.min);
        assert_eq!(north.longitude, a.longitude);
        let ne = decode(LONG_RANGE, LAT_RANGE, n.north_east).unwrap();
        assert_eq!(
            (ne.longitude, ne.latitude),
            (east.longitude, north.latitude)
        );
        let sw = decode(LONG_RANGE, LAT_RANGE, n.south_west).unwrap();
        assert_eq!(
            (sw.longitude, sw.latitude),
            (west.longitude, south.latitude)
        );
        // Steps 1 and 26 work too.
        for step in [1, 26] {
            let h = encode(LONG_RANGE, LAT_RANGE, 0.0, 0.0, step).unwrap();
            let n = neighbors(h);
            assert_eq!(n.east.step, step);
            assert_ne!(n.east, h);
        }
    }

    #[test]
    fn steps_follow_the_radius_and_latitude() {
        assert_eq!(estimate_steps_by_radius(0.0, 0.0), 26);
        assert_eq!(estimate_steps_by_radius(1000.0, 0.0), 14);
        assert_eq!(estimate_steps_by_radius(1000.0, 70.0), 13);
        assert_eq!(estimate_steps_by_radius(1000.0, -85.0), 12);
        assert_eq!(estimate_steps_by_radius(5e7, 0.0), 1);
        assert_eq!(estimate_steps_by_radius(f64::INFINITY, 0.0), 1);
        assert_eq!(estimate_steps_by_radius(f64::MIN_POSITIVE, 0.0), 26);
    }

    #[test]
    fn areas_cover_the_search_and_drop_useless_cells() {
        let shape = Shape {
            xy: [13.361389, 38.115556],
            conversion: 1000.0,
            kind: ShapeKind::Radius(200.0),
        };
        let a = areas_by_shape(&shape);
        let cells = a.in_scan_order();
        assert_eq!(cells[0], a.hash);
        let bb = bounding_box(&shape);
        // The union of the non-zero cells covers the bounding box.
        let (mut lo_lon, mut lo_lat, mut hi_lon, mut hi_lat) =
            (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for c in cells.iter().filter(|c| !c.is_zero()) {
            let ar = decode(LONG_RANGE, LAT_RANGE, *c).unwrap();
            lo_lon = lo_lon.min(ar.longitude.min);
            lo_lat = lo_lat.min(ar.latitude.min);
            hi_lon = hi_lon.max(ar.longitude.max);
            hi_lat = hi_lat.max(ar.latitude.max);
        }
        assert!(lo_lon <= bb[0] && lo_lat <= bb[1] && hi_lon >= bb[2] && hi_lat >= bb[3]);
        // A tiny radius at a cell's centre needs none of the neighbours.
        // A tiny box at a step-26 cell's centre needs none of the neighbours.
        let h = encode_wgs84(10.0, 10.0).unwrap();
        let c = decode_score(h.align52() as f64).unwrap();
        let tiny = areas_by_shape(&Shape {
            xy: c,
            conversion: 1.0,
            kind: ShapeKind::Box {
                width: 0.001,
                height: 0.001,
            },
        });
        assert!(tiny.in_scan_order()[1..].iter().all(|c| c.is_zero()));
        let (min, max) = scores_of_box(tiny.hash);
        assert!(min < max);
    }

    /// The recursive shape of Redis's `_pqsort` (left part by recursion, right by loop) over
    /// the same partition step, to check the stack-based one leaves every element in the
    /// same place.
    fn pqsort_recursive<T>(
        v: &mut [T],
        mut a: usize,
        mut n: usize,
        cmp: &impl Fn(&T, &T) -> i32,
        lrange: usize,
        rrange: usize,
    ) {
        loop {
            let [left, right] = pqsort_step(v, a, n, cmp, lrange, rrange);
            if let Some((l, cnt)) = left {
                pqsort_recursive(v, l, cnt, cmp, lrange, rrange);
            }
            match right {
                Some((r, cnt)) => (a, n) = (r, cnt),
                None => return,
            }
        }
    }

    #[test]
    fn partial_sort_places_every_element_as_the_recursive_pqsort_does() {
        let mut seed = 99u64;
        for n in [7usize, 8, 41, 100, 500, 2000] {
            for distinct in [2u64, 5, 1000] {
                let v: Vec<(f64, usize)> = (0..n)
                    .map(|i| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (((seed >> 33) % distinct) as f64, i)
                    })
                    .collect();
                let cmp = |a: &(f64, usize), b: &(f64, usize)| cmp_dist(a.0, b.0);
                for (lo, hi) in [(0, 0), (0, 2), (0, n / 3), (0, n - 2)] {
                    let (mut x, mut y) = (v.clone(), v.clone());
                    partial_sort(&mut x, &cmp, lo, hi);
                    pqsort_recursive(&mut y, 0, n, &cmp, lo, hi);
                    assert_eq!(x, y, "n={n} distinct={distinct} ranks {lo}..={hi}");
                }
            }
        }
    }

    #[test]
    fn merge_sort_is_stable_and_partial_sort_orders_the_requested_ranks() {
        let key = |x: &(f64, usize)| x.0;
        let cmp = |a: &(f64, usize), b: &(f64, usize)| cmp_dist(key(a), key(b));
        let mut seed = 12345u64;
        for n in [0usize, 1, 2, 6, 7, 8, 40, 41, 100, 333] {
            let mut v: Vec<(f64, usize)> = (0..n)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (((seed >> 33) % 17) as f64, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            let mut m = v.clone();
            merge_sort(&mut m, &cmp);
            assert_eq!(m, want, "stable, n={n}");
            for k in [1usize, 3, 10] {
                if k > n {
                    continue;
                }
                partial_sort(&mut v, &cmp, 0, k - 1);
                let got: Vec<f64> = v[..k].iter().map(|x| x.0).collect();
                let exp: Vec<f64> = want[..k].iter().map(|x| x.0).collect();
                assert_eq!(got, exp, "n={n} k={k}");
            }
        }
        // NaN makes the comparator inconsistent: still no panic, every element kept.
        let mut v: Vec<(f64, usize)> = (0..50)
            .map(|i| (if i % 3 == 0 { f64::NAN } else { i as f64 }, i))
            .collect();
        merge_sort(&mut v, &cmp);
        partial_sort(&mut v, &cmp, 0, 4);
        let mut ids: Vec<usize> = v.iter().map(|x| x.1).collect();
        ids.sort();
        assert_eq!(ids, (0..50).collect::<Vec<_>>());
    }
}
