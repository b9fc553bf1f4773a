//! HyperLogLog values in Redis's own representation, byte for byte.
//!
//! An HLL is an ordinary string (so GET/SET copy it between servers, and Redis's values
//! count here and ours there). Layout, as Redis's `src/hyperloglog.c`:
//!
//! ```text
//! +------+---+-----+----------+--------------------------------+
//! | HYLL | E | N/U | Cardin.  |  registers (dense or sparse)   |
//! +------+---+-----+----------+--------------------------------+
//!  4 bytes 1   3     8 bytes LE
//! ```
//!
//! - `E` is the encoding: 0 dense, 1 sparse. The three unused bytes are kept as found.
//! - The cached cardinality is little endian; the high bit of its last byte set means
//!   "invalid cache" (PFADD and PFMERGE set it, single-key PFCOUNT clears it by writing the
//!   count).
//! - Dense: 16384 registers of 6 bits, LSB first across bytes (12288 bytes; the value is
//!   exactly [`DENSE_SIZE`] bytes long).
//! - Sparse: run-length opcodes covering the 16384 registers in order:
//!   `00xxxxxx` ZERO (1..=64 zero registers), `01xxxxxx yyyyyyyy` XZERO (1..=16384 zero
//!   registers), `1vvvvvxx` VAL (1..=4 registers of value 1..=32). A sparse HLL turns dense
//!   when a register needs a value over 32 or when it would grow past
//!   `hll-sparse-max-bytes`.
//!
//! Hash: MurmurHash64A with seed 0xadc83b19; the low 14 bits pick the register, the run of
//! zeros after them (plus one) is the value. Estimator: Otmar Ertl's "new" estimator over
//! the register histogram (`hllTau`/`hllSigma`), as Redis 7.0.
//!
//! Invariants: sparse bytes are untrusted (a client may SET anything that starts with
//! `HYLL`): every decoder here is bounds-checked and reports corruption instead of reading
//! past the value; a byte read just past the end (an XZERO cut in half) reads as 0, as
//! Redis's string terminator does. Corruption never panics.
//!
//! Where Redis's answer on corrupt bytes depends on memory past the value, this follows
//! the shipped Redis 7.0.15 as far as bytes allow: a sparse run past the last register is
//! corruption at once (the CVE-2025-32023 fix); a split of an XZERO cut in half keeps the
//! bytes that fit the new length and drops the one Redis writes over its terminator (a
//! later read of that terminator in the same PFADD may then differ from Redis's).
//!
//! The algorithms are ported from Redis's `src/hyperloglog.c`:
//! Copyright (c) 2014, Salvatore Sanfilippo <antirez at gmail dot com>. All rights reserved.
//! Redistribution and use in source and binary forms, with or without modification, are
//! permitted under the terms of the BSD 3-clause license that Redis 7.0 is distributed under.

/// Header bytes.
pub const HDR: usize = 16;
/// Index bits.
pub const P: u32 = 14;
/// Hash bits left for the run of zeros.
pub const Q: u32 = 64 - P;
pub const REGISTERS: usize = 1 << P;
const P_MASK: u64 = REGISTERS as u64 - 1;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
/// Length of a dense HLL.
pub const DENSE_SIZE: usize = HDR + (REGISTERS * BITS).div_ceil(8);
pub const DENSE: u8 = 0;
pub const SPARSE: u8 = 1;
const MAX_ENCODING: u8 = 1;
const MAGIC: &[u8; 4] = b"HYLL";
/// Byte of the header holding the cache-invalid flag (its high bit).
const CARD_HIGH: usize = 15;

const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// `hll-sparse-max-bytes`'s default.
pub const SPARSE_MAX_BYTES_DEFAULT: usize = 3000;

/// Redis's seed for element hashes.
pub const SEED: u32 = 0xadc8_3b19;

/// Registers of a merge, one byte each (Redis's `HLL_RAW`).
pub type Raw = [u8; REGISTERS];

/// The sparse representation is malformed (Redis's `INVALIDOBJ`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// MurmurHash2, 64-bit version, as Redis modified it to be endian neutral.
pub fn murmur64a(key: &[u8], seed: u32) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    // `len * m` in C: an int promoted to uint64 (lengths here are below 2^32).
    let mut h = seed as u64 ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("chunks of 8"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register `ele` hashes to and the length of its `000..1` pattern (1..=Q+1).
pub fn pat_len(ele: &[u8]) -> (usize, u8) {
    let hash = murmur64a(ele, SEED);
    let index = (hash & P_MASK) as usize;
    // The bit at Q makes sure the count stops at Q+1.
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Whether `v` is an HLL as Redis checks it (`isHLLObjectOrReply`): magic, a known
/// encoding, and for dense the exact length. A sparse body is only checked when decoded.
pub fn is_hll(v: &[u8]) -> bool {
    v.len() >= HDR
        && &v[..4] == MAGIC
        && v[4] <= MAX_ENCODING
        && (v[4] != DENSE || v.len() == DENSE_SIZE)
}

/// A new empty HLL: sparse, one XZERO opcode covering every register, cache valid at 0.
pub fn new_sparse() -> Vec<u8> {
    let mut v = Vec::with_capacity(HDR + 2);
    v.extend_from_slice(MAGIC);
    v.push(SPARSE);
    v.extend_from_slice(&[0; 11]);
    let l = REGISTERS - 1;
    v.push((l >> 8) as u8 | 0x40);
    v.push((l & 0xff) as u8);
    v
}

/// The cached cardinality, if valid.
pub fn cached(v: &[u8]) -> Option<u64> {
    let card = u64::from_le_bytes(v[8..16].try_into().expect("a checked header"));
    (v[CARD_HIGH] & 0x80 == 0).then_some(card)
}

pub fn set_cached(v: &mut [u8], card: u64) {
    v[8..16].copy_from_slice(&card.to_le_bytes());
}

pub fn invalidate_cache(v: &mut [u8]) {
    v[CARD_HIGH] |= 0x80;
}

// ---- dense registers

/// Register `i` of dense `regs` (a byte past the end reads as 0).
#[inline]
pub fn dense_get(regs: &[u8], i: usize) -> u8 {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let b0 = regs.get(byte).copied().unwrap_or(0) as u32;
    let b1 = regs.get(byte + 1).copied().unwrap_or(0) as u32;
    (((b0 >> fb) | (b1 << (8 - fb))) & REGISTER_MAX as u32) as u8
}

/// Sets register `i` of dense `regs` to `val` (< 64).
#[inline]
pub fn dense_set(regs: &mut [u8], i: usize, val: u8) {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let v = val as u32;
    if let Some(b) = regs.get_mut(byte) {
        *b &= !((REGISTER_MAX as u32) << fb) as u8;
        *b |= (v << fb) as u8;
    }
    if let Some(b) = regs.get_mut(byte + 1) {
        *b &= !((REGISTER_MAX as u32) >> (8 - fb)) as u8;
        *b |= (v >> (8 - fb)) as u8;
    }
}

/// Raises register `i` to `count`; true if it changed.
#[inline]
pub fn dense_raise(regs: &mut [u8], i: usize, count: u8) -> bool {
    if count > dense_get(regs, i) {
        dense_set(regs, i, count);
        true
    } else {
        false
    }
}

// ---- sparse opcodes

#[inline]
fn is_zero(op: u8) -> bool {
    op & 0xc0 == 0
}
#[inline]
fn is_xzero(op: u8) -> bool {
    op & 0xc0 == 0x40
}
#[inline]
fn is_val(op: u8) -> bool {
    op & 0x80 != 0
}
#[inline]
fn zero_len(op: u8) -> usize {
    (op & 0x3f) as usize + 1
}
/// XZERO's length; its second byte is `next` (0 when the value ends in between).
#[inline]
fn xzero_len(op: u8, next: u8) -> usize {
    ((((op & 0x3f) as usize) << 8) | next as usize) + 1
}
#[inline]
fn val_value(op: u8) -> u8 {
    ((op >> 2) & 0x1f) + 1
}
#[inline]
fn val_len(op: u8) -> usize {
    (op & 0x3) as usize + 1
}
#[inline]
fn val_op(val: u8, len: usize) -> u8 {
    ((val - 1) << 2 | (len as u8 - 1)) | 0x80
}
fn push_zeros(seq: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        let l = len - 1;
        seq.push((l >> 8) as u8 | 0x40);
        seq.push((l & 0xff) as u8);
    } else {
        seq.push(len as u8 - 1);
    }
}

/// One decoded sparse opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A run of zero registers; `long` for XZERO.
    Zeros { len: usize, long: bool },
    /// A run of `len` registers of value `val`.
    Val { val: u8, len: usize },
}

/// The opcodes of a sparse body, in order (a cut XZERO reads its missing byte as 0).
pub fn sparse_ops(body: &[u8]) -> impl Iterator<Item = Op> + '_ {
    let mut p = 0;
    std::iter::from_fn(move || {
        let &op = body.get(p)?;
        Some(if is_zero(op) {
            p += 1;
            Op::Zeros {
                len: zero_len(op),
                long: false,
            }
        } else if is_xzero(op) {
            let len = xzero_len(op, body.get(p + 1).copied().unwrap_or(0));
            p += 2;
            Op::Zeros { len, long: true }
        } else {
            p += 1;
            Op::Val {
                val: val_value(op),
                len: val_len(op),
            }
        })
    })
}

/// Visits the non-zero runs of a sparse body as `(first register, len, value)`; the runs
/// are within the registers. Err when the opcodes do not cover exactly 16384 registers: a
/// run past the last register is corruption at once (Redis 7.0.15 as shipped with the
/// CVE-2025-32023 fix refuses it in PFCOUNT of several keys, PFMERGE and conversions,
/// where the 7.0.15 tag stopped there and accepted the value; the walk is also bounded).
fn sparse_walk(body: &[u8], mut f: impl FnMut(usize, usize, u8)) -> Result<(), Corrupt> {
    let mut idx = 0usize;
    for op in sparse_ops(body) {
        let len = match op {
            Op::Zeros { len, .. } | Op::Val { len, .. } => len,
        };
        if idx + len > REGISTERS {
            return Err(Corrupt);
        }
        if let Op::Val { val, len } = op {
            f(idx, len, val);
        }
        idx += len;
    }
    if idx == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// The dense form of sparse `v` (header copied, encoding set to dense).
pub fn sparse_to_dense(v: &[u8]) -> Result<Vec<u8>, Corrupt> {
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HDR].copy_from_slice(&v[..HDR]);
    dense[4] = DENSE;
    let regs = &mut dense[HDR..];
    sparse_walk(&v[HDR..], |first, len, val| {
        for i in first..first + len {
            dense_set(regs, i, val);
        }
    })?;
    Ok(dense)
}

/// Converts `v` to dense in place if it is sparse; true if it converted.
pub fn to_dense(v: &mut Vec<u8>) -> Result<bool, Corrupt> {
    if v[4] == DENSE {
        return Ok(false);
    }
    *v = sparse_to_dense(v)?;
    Ok(true)
}

/// Raises register `index` of sparse `v` to `count` (Redis's `hllSparseSet`): Ok(true) if
/// it changed. Converts `v` to dense when `count` is over 32 or the value would grow past
/// `max_bytes`.
pub fn sparse_set(
    v: &mut Vec<u8>,
    index: usize,
    count: u8,
    max_bytes: usize,
) -> Result<bool, Corrupt> {
    if count > SPARSE_VAL_MAX_VALUE {
        return promote(v, index, count);
    }
    // Step 1: the opcode covering `index`.
    let end = v.len();
    let mut p = HDR;
    let mut first = 0usize;
    let mut prev = None;
    let mut span = 0usize;
    while p < end {
        let op = v[p];
        let mut oplen = 1;
        span = if is_zero(op) {
            zero_len(op)
        } else if is_val(op) {
            val_len(op)
        } else {
            oplen = 2;
            xzero_len(op, v.get(p + 1).copied().unwrap_or(0))
        };
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(Corrupt);
    }
    let op = v[p];
    let (zero, xzero) = (is_zero(op), is_xzero(op));
    let runlen = if zero {
        zero_len(op)
    } else if xzero {
        xzero_len(op, v.get(p + 1).copied().unwrap_or(0))
    } else {
        val_len(op)
    };
    let mut updated = false;
    if !zero && !xzero {
        // A: a VAL already at least `count`; B: a VAL of one register.
        if val_value(op) >= count {
            return Ok(false);
        }
        if runlen == 1 {
            v[p] = val_op(count, 1);
            updated = true;
        }
    }
    // C: a ZERO of one register.
    if !updated && zero && runlen == 1 {
        v[p] = val_op(count, 1);
        updated = true;
    }
    if !updated {
        // D: split the opcode into up to three (at most 5 bytes: XZERO-VAL-XZERO).
        let mut seq = Vec::with_capacity(5);
        let last = first + span - 1;
        if zero || xzero {
            if index != first {
                push_zeros(&mut seq, index - first);
            }
            seq.push(val_op(count, 1));
            if index != last {
                push_zeros(&mut seq, last - index);
            }
        } else {
            let cur = val_value(op);
            if index != first {
                seq.push(val_op(cur, index - first));
            }
            seq.push(val_op(count, 1));
            if index != last {
                seq.push(val_op(cur, last - index));
            }
        }
        let oldlen = if xzero { 2 } else { 1 };
        if seq.len() > oldlen && end + seq.len() - oldlen > max_bytes {
            return promote(v, index, count);
        }
        // An XZERO cut at the end of the value covers only the byte that is there; the
        // new sequence replaces it and the length grows by `seq - 2`, as Redis's memmove
        // arithmetic does (the bytes beyond that length are dropped).
        let old_end = (p + oldlen).min(end);
        let new_len = (end + seq.len()).saturating_sub(oldlen);
        // Grow 16 bytes at a time rather than by Vec's doubling: a sparse HLL grows a few
        // bytes per register and then stays as long, so doubling would leave up to half of
        // its allocation unused. The allocator (mimalloc) grows a block in place while the
        // new length fits its size class, so most of these reallocations copy nothing; the
        // others copy at most `hll-sparse-max-bytes`.
        let grow = seq.len().saturating_sub(old_end - p);
        if v.capacity() - v.len() < grow {
            v.reserve_exact(16);
        }
        v.splice(p..old_end, seq);
        v.truncate(new_len);
    }
    // Step 4: merge adjacent VALs of the same value around the change (up to 5 opcodes).
    let mut q = prev.unwrap_or(HDR);
    let mut scan = 5;
    while q < v.len() && scan > 0 {
        scan -= 1;
        let op = v[q];
        if is_xzero(op) {
            q += 2;
            continue;
        } else if is_zero(op) {
            q += 1;
            continue;
        }
        if let Some(&next) = v.get(q + 1) {
            if is_val(next) && val_value(op) == val_value(next) {
                let len = val_len(op) + val_len(next);
                if len <= SPARSE_VAL_MAX_LEN {
                    v[q + 1] = val_op(val_value(op), len);
                    v.remove(q);
                    continue;
                }
            }
        }
        q += 1;
    }
    invalidate_cache(v);
    Ok(true)
}

/// Converts `v` to dense and raises register `index` there.
fn promote(v: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    to_dense(v)?;
    Ok(dense_raise(&mut v[HDR..], index, count))
}

/// Adds `ele` to HLL `v` (already checked with [`is_hll`]); Ok(true) if a register changed.
pub fn add(v: &mut Vec<u8>, ele: &[u8], max_bytes: usize) -> Result<bool, Corrupt> {
    let (index, count) = pat_len(ele);
    match v[4] {
        DENSE => Ok(dense_raise(&mut v[HDR..], index, count)),
        SPARSE => sparse_set(v, index, count, max_bytes),
        _ => Err(Corrupt),
    }
}

/// Raises `max[i]` to register `i` of `v` for every register (Redis's `hllMerge`).
pub fn merge_into(max: &mut Raw, v: &[u8]) -> Result<(), Corrupt> {
    if v[4] == DENSE {
        let regs = &v[HDR..];
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(regs, i));
        }
        return Ok(());
    }
    sparse_walk(&v[HDR..], |first, len, val| {
        for m in &mut max[first..first + len] {
            *m = (*m).max(val);
        }
    })
}

/// Writes registers `max` into HLL `v` (PFMERGE's destination), each only where higher.
pub fn raise_all(v: &mut Vec<u8>, max: &Raw, max_bytes: usize) {
    for (i, &m) in max.iter().enumerate() {
        if m == 0 {
            continue;
        }
        if v[4] == DENSE {
            dense_raise(&mut v[HDR..], i, m);
        } else {
            // A corrupt destination stays as it is, as in Redis (it was checked as a source).
            let _ = sparse_set(v, i, m, max_bytes);
        }
    }
}

/// Register histogram: `h[v]` is the number of registers of value `v`.
type Histogram = [u64; 64];

fn histogram(v: &[u8]) -> Result<Histogram, Corrupt> {
    let mut h = [0u64; 64];
    let body = &v[HDR..];
    if v[4] == DENSE {
        for i in 0..REGISTERS {
            h[dense_get(body, i) as usize] += 1;
        }
        return Ok(h);
    }
    // Redis counts the whole body and then checks the total.
    let mut idx = 0u64;
    for op in sparse_ops(body) {
        match op {
            Op::Zeros { len, .. } => {
                idx += len as u64;
                h[0] += len as u64;
            }
            Op::Val { val, len } => {
                idx += len as u64;
                h[val as usize] += len as u64;
            }
        }
    }
    if idx == REGISTERS as u64 {
        Ok(h)
    } else {
        Err(Corrupt)
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let z_prev = z;
        z += x * y;
        y += y;
        if z_prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let z_prev = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z_prev == z {
            return z / 3.0;
        }
    }
}

/// 2^63, exactly representable.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

fn estimate(h: &Histogram) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - h[q + 1] as f64) / m);
    for j in (1..=q).rev() {
        z += h[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(h[0] as f64 / m);
    // Redis rounds with `llroundl`, whose result out of the long long range (an infinite
    // estimate when every register is 51 or more, a huge one from crafted dense registers)
    // is LLONG_MIN, then casts it to uint64: 2^63.
    let e = (ALPHA_INF * m * m / z).round();
    if (0.0..TWO_POW_63).contains(&e) {
        e as u64
    } else {
        1 << 63
    }
}

/// The estimated cardinality of HLL `v` (ignoring its cache).
pub fn count(v: &[u8]) -> Result<u64, Corrupt> {
    Ok(estimate(&histogram(v)?))
}

/// The estimated cardinality of merged registers.
pub fn count_raw(max: &Raw) -> u64 {
    let mut h = [0u64; 64];
    for &r in max.iter() {
        h[r as usize & 63] += 1;
    }
    estimate(&h)
}

/// PFDEBUG DECODE's text for a sparse body: `z:N`, `Z:N`, `v:VAL,LEN`, space separated.
pub fn decode_text(body: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for op in sparse_ops(body) {
        let _ = match op {
            Op::Zeros { len, long: false } => write!(s, "z:{len} "),
            Op::Zeros { len, long: true } => write!(s, "Z:{len} "),
            Op::Val { val, len } => write!(s, "v:{val},{len} "),
        };
    }
    s.trim_matches(' ').to_string()
}

/// PFSELFTEST (Redis's two tests): register access on random values, then the error of
/// dense and sparse counts of 1..10^7 distinct elements, which must agree. `rand` supplies
/// randomness; Err holds the failure text.
pub fn selftest(mut rand: impl FnMut() -> u64, max_bytes: usize) -> Result<(), String> {
    let mut regs = vec![0u8; DENSE_SIZE - HDR];
    let mut bytes = vec![0u8; REGISTERS];
    for _ in 0..1000 {
        for (i, b) in bytes.iter_mut().enumerate() {
            let r = (rand() & REGISTER_MAX as u64) as u8;
            *b = r;
            dense_set(&mut regs, i, r);
        }
        for (i, &b) in bytes.iter().enumerate() {
            let val = dense_get(&regs, i);
            if val != b {
                return Err(format!(
                    "TESTFAILED Register {i} should be {b} but is {val}"
                ));
            }
        }
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..4].copy_from_slice(MAGIC);
    let mut sparse = new_sparse();
    let relerr = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint: u64 = 1;
    let seed = rand();
    for j in 1..=10_000_000u64 {
        let ele = (j ^ seed).to_le_bytes();
        let (index, c) = pat_len(&ele);
        dense_raise(&mut dense[HDR..], index, c);
        add(&mut sparse, &ele, max_bytes).map_err(|_| "TESTFAILED corrupted HLL".to_string())?;
        if j != checkpoint {
            continue;
        }
        if (j as usize) < max_bytes / 2 && sparse[4] != SPARSE {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let dc = count(&dense).unwrap_or(0);
        if Ok(dc) != count(&sparse) {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        let abserr = (checkpoint as i64 - dc as i64).unsigned_abs();
        let mut maxerr = (relerr * 6.0 * checkpoint as f64).ceil() as u64;
        if j == 10 {
            maxerr = 1;
        }
        if abserr > maxerr {
            return Err(format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{abserr}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_matches_redis() {
        // Computed with Redis 7.0's own MurmurHash64A (src/hyperloglog.c) and seed
        // 0xadc83b19: every tail length 0..=7 and more than one 8-byte block appear.
        for (ele, want) in [
            (&b""[..], 0xd8df_ea65_85bc_9732_u64),
            (b"a", 0x53d2_470a_9b43_b1a7),
            (b"foo", 0xe646_09b8_b014_1cb4),
            (b"hello", 0x0f65_6f01_eecf_e400),
            (b"12345678", 0x95eb_b863_8913_2953),
            (b"123456789abcdef0x", 0x8c32_084b_49d4_6f06),
        ] {
            assert_eq!(murmur64a(ele, SEED), want, "{}", ele.escape_ascii());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(murmur64a(&all, SEED), 0x5952_02c0_4f15_7049);
        assert_eq!(murmur64a(b"hello", 0), 0x1e68_d17c_457b_f117);
        // An element with a run longer than a sparse VAL holds (found with Redis's hash).
        assert_eq!(pat_len(b"e2119568080"), (12049, 35));
        // "hello": register = low 14 bits, value = trailing zeros of the rest + 1.
        let h = 0x0f65_6f01_eecf_e400_u64;
        assert_eq!(
            pat_len(b"hello"),
            (
                (h & 0x3fff) as usize,
                ((h >> 14).trailing_zeros() + 1) as u8
            )
        );
    }

    #[test]
    fn dense_registers_round_trip() {
        let mut regs = vec![0u8; DENSE_SIZE - HDR];
        for i in 0..REGISTERS {
            dense_set(&mut regs, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&regs, i), (i % 64) as u8, "register {i}");
        }
        dense_set(&mut regs, 1, 0);
        assert_eq!(dense_get(&regs, 0), 0);
        assert_eq!(dense_get(&regs, 1), 0);
        assert_eq!(dense_get(&regs, 2), 2);
        // Bits are used LSB first: register 1 is the top two bits of byte 0 and the low
        // four of byte 1.
        let mut r = vec![0u8; 3];
        dense_set(&mut r, 1, 0b111111);
        assert_eq!(r, vec![0b1100_0000, 0b0000_1111, 0]);
    }

    #[test]
    fn new_hll_is_one_xzero() {
        let v = new_sparse();
        assert_eq!(&v, b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x7f\xff");
        assert!(is_hll(&v));
        assert_eq!(count(&v), Ok(0));
        assert_eq!(cached(&v), Some(0));
        assert_eq!(decode_text(&v[HDR..]), "Z:16384");
    }

    #[test]
    fn sparse_set_splits_and_merges_runs() {
        let mut v = new_sparse();
        assert_eq!(sparse_set(&mut v, 100, 3, 3000), Ok(true));
        assert_eq!(decode_text(&v[HDR..]), "Z:100 v:3,1 Z:16283");
        assert_eq!(cached(&v), None, "a change invalidates the cache");
        assert_eq!(sparse_set(&mut v, 100, 2, 3000), Ok(false));
        assert_eq!(sparse_set(&mut v, 101, 3, 3000), Ok(true));
        assert_eq!(decode_text(&v[HDR..]), "Z:100 v:3,2 Z:16282");
        assert_eq!(sparse_set(&mut v, 0, 1, 3000), Ok(true));
        assert_eq!(decode_text(&v[HDR..]), "v:1,1 Z:99 v:3,2 Z:16282");
        assert_eq!(sparse_set(&mut v, 98, 5, 3000), Ok(true));
        assert_eq!(decode_text(&v[HDR..]), "v:1,1 Z:97 v:5,1 z:1 v:3,2 Z:16282");
        // Register 102 of the VAL run gets a higher value: the run splits.
        assert_eq!(sparse_set(&mut v, 102, 4, 3000), Ok(true));
        assert_eq!(
            decode_text(&v[HDR..]),
            "v:1,1 Z:97 v:5,1 z:1 v:3,2 v:4,1 Z:16281"
        );
        assert_eq!(sparse_set(&mut v, 101, 4, 3000), Ok(true));
        assert_eq!(
            decode_text(&v[HDR..]),
            "v:1,1 Z:97 v:5,1 z:1 v:3,1 v:4,2 Z:16281"
        );
        let dense = sparse_to_dense(&v).unwrap();
        assert_eq!(dense.len(), DENSE_SIZE);
        let regs = &dense[HDR..];
        for (i, want) in [
            (0, 1),
            (1, 0),
            (98, 5),
            (99, 0),
            (100, 3),
            (101, 4),
            (102, 4),
        ] {
            assert_eq!(dense_get(regs, i), want, "register {i}");
        }
        assert_eq!(count(&dense), count(&v));
    }

    /// Random raises against a plain array of registers: the sparse form always covers
    /// exactly the 16384 registers, holds the model's values, counts as its dense form
    /// does, and turns dense only when it must.
    #[test]
    fn sparse_set_matches_a_register_model() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for max_bytes in [3000, 200, 1 << 20] {
            let mut v = new_sparse();
            let mut model = [0u8; REGISTERS];
            for step in 0..3000 {
                // Clustered indexes so runs touch, split and merge.
                let index = if step % 2 == 0 {
                    rand(REGISTERS as u64) as usize
                } else {
                    (rand(64) + 8000) as usize
                };
                let val = 1 + rand(if step % 500 == 499 { 40 } else { 6 }) as u8;
                let was_sparse = v[4] == SPARSE;
                let len_before = v.len();
                let changed = if was_sparse {
                    sparse_set(&mut v, index, val, max_bytes).unwrap()
                } else {
                    dense_raise(&mut v[HDR..], index, val)
                };
                assert_eq!(changed, val > model[index], "step {step}");
                model[index] = model[index].max(val);
                if was_sparse && v[4] == DENSE {
                    assert!(
                        val > 32 || len_before + 3 > max_bytes,
                        "step {step}: promoted early"
                    );
                }
                if v[4] == SPARSE {
                    let total: usize = sparse_ops(&v[HDR..])
                        .map(|op| match op {
                            Op::Zeros { len, .. } | Op::Val { len, .. } => len,
                        })
                        .sum();
                    assert_eq!(total, REGISTERS, "step {step}");
                    assert!(
                        v.len() <= max_bytes.max(HDR + 2),
                        "step {step}: {} bytes",
                        v.len()
                    );
                }
                if step % 100 == 0 || step > 2990 {
                    let dense = if v[4] == SPARSE {
                        sparse_to_dense(&v).unwrap()
                    } else {
                        v.clone()
                    };
                    for (i, &m) in model.iter().enumerate() {
                        assert_eq!(dense_get(&dense[HDR..], i), m, "step {step} register {i}");
                    }
                    assert_eq!(count(&dense), count(&v));
                    let mut max = [0u8; REGISTERS];
                    merge_into(&mut max, &v).unwrap();
                    assert_eq!(max, model);
                    assert_eq!(count_raw(&max), count(&v).unwrap());
                }
            }
        }
    }

    #[test]
    fn sparse_promotes_past_value_32_or_max_bytes() {
        let mut v = new_sparse();
        assert_eq!(sparse_set(&mut v, 5, 33, 3000), Ok(true));
        assert_eq!(v[4], DENSE);
        assert_eq!(v.len(), DENSE_SIZE);
        assert_eq!(dense_get(&v[HDR..], 5), 33);
        let mut v = new_sparse();
        assert_eq!(
            sparse_set(&mut v, 5, 2, 18),
            Ok(true),
            "18 bytes fit no split"
        );
        assert_eq!(v[4], DENSE);
    }

    #[test]
    fn corrupt_sparse_bodies_are_reported_not_read_past() {
        let mut v = new_sparse();
        v.pop(); // an XZERO cut in half reads its missing byte as 0: 0x3f00 + 1 registers
        assert_eq!(decode_text(&v[HDR..]), "Z:16129");
        assert_eq!(count(&v), Err(Corrupt));
        assert_eq!(sparse_to_dense(&v), Err(Corrupt));
        let mut max = [0u8; REGISTERS];
        assert_eq!(merge_into(&mut max, &v), Err(Corrupt));
        // Registers past the end: a VAL run beyond 16384.
        let mut w = new_sparse();
        w.push(0x80 | 3);
        assert_eq!(count(&w), Err(Corrupt));
        assert_eq!(merge_into(&mut max, &w), Err(Corrupt));
        assert_eq!(sparse_to_dense(&w), Err(Corrupt));
        assert_eq!(
            sparse_set(&mut w, 3, 1, 3000),
            Ok(true),
            "within the covered part"
        );
        // Nothing but a header: no opcode covers any register.
        let mut h = new_sparse();
        h.truncate(HDR);
        assert_eq!(sparse_set(&mut h, 0, 1, 3000), Err(Corrupt));
        assert_eq!(count(&h), Err(Corrupt));
        // Every byte value as a body decodes without panicking.
        for b in 0..=255u8 {
            let mut x = new_sparse();
            x.truncate(HDR);
            x.extend([b, b, b]);
            let _ = count(&x);
            let _ = sparse_set(&mut x.clone(), 1, 2, 3000);
            let _ = sparse_set(&mut x.clone(), 16383, 40, 3000);
            let _ = merge_into(&mut max, &x);
            let _ = decode_text(&x[HDR..]);
        }
    }

    #[test]
    fn estimates_are_close() {
        let mut v = new_sparse();
        for i in 0..1000u32 {
            add(&mut v, &i.to_le_bytes(), 3000).unwrap();
        }
        let c = count(&v).unwrap();
        assert!((980..=1020).contains(&c), "{c}");
        let mut max = [0u8; REGISTERS];
        merge_into(&mut max, &v).unwrap();
        assert_eq!(count_raw(&max), c);
    }

    #[test]
    fn out_of_range_estimates_are_redis_llround_overflow() {
        // Every register at 51 or more: the estimate is infinite; Redis answers 2^63
        // (LLONG_MIN through a uint64 cast), which also reads as an invalid cache.
        let mut v = vec![0u8; DENSE_SIZE];
        v[..5].copy_from_slice(b"HYLL\x00");
        for i in 0..REGISTERS {
            dense_set(&mut v[HDR..], i, 51);
        }
        assert_eq!(count(&v), Ok(1 << 63));
        set_cached(&mut v, 1 << 63);
        assert_eq!(cached(&v), None);
        assert_eq!(count_raw(&[63; REGISTERS]), 1 << 63);
    }

    #[test]
    fn selftest_passes() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let rand = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33
        };
        assert_eq!(selftest(rand, 3000), Ok(()));
    }
}
