//! Redis's RDB encoding: the pieces DUMP/RESTORE, FUNCTION DUMP/RESTORE and (later) RDB
//! file import and export share. This file holds the framing and the scalar encodings:
//! RDB lengths, RDB strings (integer-encoded, LZF-compressed or plain), Redis's CRC64
//! (Jones polynomial, reflected, no final xor) and the DUMP payload footer (a 2-byte RDB
//! version, little endian, then the CRC64 of everything before it, little endian).
//! [`value`] encodes and decodes whole values, over [`listpack`], [`ziplist`] and intset
//! blobs; [`file`] reads whole RDB files.
//!
//! Byte compatibility is the point: a payload written here is the one Redis 7.0 writes for
//! the same content (its LZF compressor is liblzf's with `HLOG 16`, `VERY_FAST`, ported
//! below step for step), and every payload Redis writes reads back here. Everything read is
//! bounds-checked and no allocation is sized by a length read from the input beyond what
//! the remaining input could hold: a payload is untrusted input.

pub mod file;
pub mod listpack;
pub mod value;
pub mod ziplist;

/// The RDB version Redis 7.0 writes (`RDB_VERSION`), and the newest FUNCTION RESTORE reads.
pub const RDB_VERSION: u16 = 10;
/// The newest RDB version a key's RESTORE reads: Redis 7.2's (and Valkey 8's) 11 differs
/// from 10 only in type codes this reader knows (the set listpack).
pub const RDB_VERSION_READ_MAX: u16 = 11;
/// `RDB_OPCODE_FUNCTION2`: a library's whole code follows as one RDB string.
pub const OPCODE_FUNCTION2: u8 = 245;
/// `RDB_OPCODE_FUNCTION`: 7.0-rc1/rc2's library record (name, engine, description, code).
pub const OPCODE_FUNCTION: u8 = 246;

/// The LRU/LFU word of a key arriving with Redis's IDLE or FREQ information (RESTORE's
/// IDLETIME/FREQ, an RDB file's records): kept when it fits the eviction policy, a fresh
/// word otherwise. An idle time longer than the clock's age reads as that age.
pub fn arriving_clock(
    policy: crate::evict::Policy,
    idle_s: Option<u64>,
    freq: Option<u8>,
    now_ms: u64,
) -> crate::Clock {
    use crate::{evict, Clock};
    match (policy.is_lfu(), freq, idle_s) {
        (true, Some(f), _) => Clock::Kept(evict::lfu_word(f, (now_ms / 60_000) as u16)),
        (false, _, Some(idle)) => Clock::Kept((now_ms / 1000).saturating_sub(idle) as u32),
        _ => Clock::Fresh { now_ms },
    }
}

/// Redis's CRC64 lookup table (reflected Jones polynomial 0x95ac9329ac4bc9b5).
const CRC64_TABLE: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x95ac_9329_ac4b_c9b5
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Slicing-by-8 tables: `CRC64_SLICES[k][i]` is the CRC of byte `i` followed by `k` zero
/// bytes, so eight bytes are folded in per step (as Redis's `crcspeed` does).
const CRC64_SLICES: [[u64; 256]; 8] = {
    let mut t = [[0u64; 256]; 8];
    t[0] = CRC64_TABLE;
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ CRC64_TABLE[(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// Redis's `crc64(crc, data)`.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        crc ^= u64::from_le_bytes(c.try_into().expect("8 bytes"));
        let t = &CRC64_SLICES;
        crc = t[7][(crc & 0xff) as usize]
            ^ t[6][((crc >> 8) & 0xff) as usize]
            ^ t[5][((crc >> 16) & 0xff) as usize]
            ^ t[4][((crc >> 24) & 0xff) as usize]
            ^ t[3][((crc >> 32) & 0xff) as usize]
            ^ t[2][((crc >> 40) & 0xff) as usize]
            ^ t[1][((crc >> 48) & 0xff) as usize]
            ^ t[0][(crc >> 56) as usize];
    }
    crc64_bytewise(crc, chunks.remainder())
}

/// The byte-at-a-time form: the tail of [`crc64`], and its reference in tests.
fn crc64_bytewise(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = CRC64_TABLE[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Appends the footer (RDB version and CRC64) that makes `body` a DUMP payload.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    body.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// The body of a DUMP payload whose footer checks out (Redis's `verifyDumpPayload`): a
/// version no newer than [`RDB_VERSION`] and the right CRC64. None otherwise.
pub fn open(payload: &[u8]) -> Option<&[u8]> {
    open_up_to(payload, RDB_VERSION)
}

/// [`open`] accepting RDB versions up to `max_version`.
pub fn open_up_to(payload: &[u8], max_version: u16) -> Option<&[u8]> {
    let body_len = payload.len().checked_sub(10)?;
    let ver = u16::from_le_bytes([payload[body_len], payload[body_len + 1]]);
    if ver > max_version {
        return None;
    }
    let (data, crc) = payload.split_at(body_len + 2);
    (crc64(0, data).to_le_bytes() == crc).then_some(&payload[..body_len])
}

/// Appends an RDB length (`rdbSaveLen`).
pub fn put_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if len <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends an RDB string as Redis writes it with `rdbcompression yes` (`rdbSaveRawString`):
/// a small integer in its integer encoding, more than 20 bytes LZF-compressed when that
/// saves at least 4 bytes, else the bytes after their length.
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11 {
        if let Some(v) = canonical_int(s) {
            if let Ok(v) = i8::try_from(v) {
                out.extend_from_slice(&[0xc0, v as u8]);
            } else if let Ok(v) = i16::try_from(v) {
                out.push(0xc1);
                out.extend_from_slice(&v.to_le_bytes());
            } else if let Ok(v) = i32::try_from(v) {
                out.push(0xc2);
                out.extend_from_slice(&v.to_le_bytes());
            }
            if i32::try_from(v).is_ok() {
                return;
            }
        }
    }
    if s.len() > 20 {
        if let Some(c) = lzf_compress(s, s.len() - 4) {
            out.push(0xc3);
            put_len(out, c.len() as u64);
            put_len(out, s.len() as u64);
            out.extend_from_slice(&c);
            return;
        }
    }
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// `s` as an integer when it is one written canonically (what `rdbTryIntegerEncoding`
/// accepts: it must print back to the same bytes).
fn canonical_int(s: &[u8]) -> Option<i64> {
    let v: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (v.to_string().as_bytes() == s).then_some(v)
}

/// A reader of RDB-encoded data.
pub struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// An RDB length, or the special encoding (`Err(kind)`) of a string.
    fn len_or_enc(&mut self) -> Option<Result<u64, u8>> {
        let b = self.byte()?;
        Some(match b >> 6 {
            0 => Ok((b & 0x3f) as u64),
            1 => Ok((((b & 0x3f) as u64) << 8) | self.byte()? as u64),
            2 if b == 0x80 => Ok(u32::from_be_bytes(self.take(4)?.try_into().ok()?) as u64),
            2 if b == 0x81 => Ok(u64::from_be_bytes(self.take(8)?.try_into().ok()?)),
            2 => return None,
            _ => Err(b & 0x3f),
        })
    }

    /// An RDB length (`rdbLoadLen`).
    pub fn length(&mut self) -> Option<u64> {
        self.len_or_enc()?.ok()
    }

    /// An RDB string in any of its encodings (`rdbGenericLoadStringObject`).
    pub fn string(&mut self) -> Option<Vec<u8>> {
        match self.len_or_enc()? {
            Ok(n) => Some(self.take(usize::try_from(n).ok()?)?.to_vec()),
            Err(0) => Some((self.byte()? as i8).to_string().into_bytes()),
            Err(1) => Some(
                i16::from_le_bytes(self.take(2)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            Err(2) => Some(
                i32::from_le_bytes(self.take(4)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            Err(3) => {
                let clen = usize::try_from(self.length()?).ok()?;
                let len = usize::try_from(self.length()?).ok()?;
                lzf_decompress(self.take(clen)?, len)
            }
            Err(_) => None,
        }
    }
}

impl Reader<'_> {
    /// Steps over an RDB string without building it (an LZF string is not decompressed).
    pub fn skip_string(&mut self) -> Option<()> {
        let n = match self.len_or_enc()? {
            Ok(n) => usize::try_from(n).ok()?,
            Err(0) => 1,
            Err(1) => 2,
            Err(2) => 4,
            Err(3) => {
                let clen = usize::try_from(self.length()?).ok()?;
                self.length()?;
                clen
            }
            Err(_) => return None,
        };
        self.take(n).map(drop)
    }
}

/// liblzf's decompressor: exactly `len` bytes out, or None on any malformed input.
pub fn lzf_decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    // The output never exceeds `len`; a hostile `len` is bounded by what the input can
    // expand to (at most 264 bytes per 2 input bytes).
    let mut out = Vec::with_capacity(len.min(input.len().saturating_mul(132) + 64));
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            let lit = input.get(i..i + n)?;
            if out.len() + n > len {
                return None;
            }
            out.extend_from_slice(lit);
            i += n;
        } else {
            let mut n = ctrl >> 5;
            if n == 7 {
                n += *input.get(i)? as usize;
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + *input.get(i)? as usize + 1;
            i += 1;
            n += 2;
            if back > out.len() || out.len() + n > len {
                return None;
            }
            let from = out.len() - back;
            for k in 0..n {
                out.push(out[from + k]);
            }
        }
    }
    (out.len() == len).then_some(out)
}

/// One more literal byte of LZF output: appended to the open run, which is closed (its
/// length byte written) when it reaches 32 bytes.
fn literal(out: &mut [u8], op: &mut usize, lit: &mut usize, b: u8) {
    const MAX_LIT: usize = 1 << 5;
    *lit += 1;
    out[*op] = b;
    *op += 1;
    if *lit == MAX_LIT {
        out[*op - *lit - 1] = (*lit - 1) as u8;
        *lit = 0;
        *op += 1;
    }
}

/// liblzf 3.6's `lzf_compress` as Redis builds it (HLOG 16, VERY_FAST, a zeroed table),
/// into at most `out_len` bytes; None when the result would not fit (Redis then stores the
/// string uncompressed).
pub fn lzf_compress(input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    LZF_TABLE.with(|t| lzf_compress_with(&mut t.borrow_mut(), input, out_len))
}

const LZF_HLOG: u32 = 16;

/// liblzf's hash table, kept per thread: zeroing a fresh 512 KiB table for every string made
/// writing millions of short strings (an RDB export) page-fault bound. The slots a call
/// wrote are cleared at the start of the next, so every call starts from an all-zero table
/// as liblzf's does, and compresses to the same bytes.
struct LzfTable {
    slots: Vec<usize>,
    touched: Vec<usize>,
}

impl LzfTable {
    fn clear(&mut self) {
        for s in self.touched.drain(..) {
            self.slots[s] = 0;
        }
    }

    /// Stores `v` in `slot`, returning what was there.
    fn swap(&mut self, slot: usize, v: usize) -> usize {
        self.touched.push(slot);
        std::mem::replace(&mut self.slots[slot], v)
    }
}

thread_local! {
    static LZF_TABLE: std::cell::RefCell<LzfTable> = std::cell::RefCell::new(LzfTable {
        slots: vec![0; 1 << LZF_HLOG],
        touched: Vec::new(),
    });
}

fn lzf_compress_with(htab: &mut LzfTable, input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    const HLOG: u32 = LZF_HLOG;
    const HSIZE: usize = 1 << HLOG;
    const MAX_OFF: usize = 1 << 13;
    const MAX_REF: usize = (1 << 8) + (1 << 3);
    let in_len = input.len();
    if in_len == 0 || out_len == 0 {
        return None;
    }
    let idx = |h: u32| -> usize {
        ((h >> (3 * 8 - HLOG)).wrapping_sub(h.wrapping_mul(5)) as usize) & (HSIZE - 1)
    };
    let frst = |p: usize| ((input[p] as u32) << 8) | input[p + 1] as u32;
    let next = |v: u32, p: usize| (v << 8) | input[p + 2] as u32;
    // Positions plus one (0: empty slot).
    htab.clear();
    // Room for the unchecked tail writes the C code allows itself.
    let mut out = vec![0u8; out_len + 4];
    let (mut ip, mut op) = (0usize, 1usize);
    let mut lit: usize = 0;
    let mut hval = frst(0);
    while in_len >= 3 && ip < in_len - 2 {
        hval = next(hval, ip);
        let slot = idx(hval);
        let r = htab.swap(slot, ip + 1);
        let matched = r > 1 && {
            let rf = r - 1;
            ip.checked_sub(rf + 1).is_some_and(|off| off < MAX_OFF)
                && input[rf + 2] == input[ip + 2]
                && input[rf] == input[ip]
                && input[rf + 1] == input[ip + 1]
        };
        if matched {
            let rf = r - 1;
            let off = ip - rf - 1;
            let mut len = 2usize;
            let maxlen = (in_len - ip - len).min(MAX_REF);
            if op + 3 + 1 >= out_len && op - (lit == 0) as usize + 3 + 1 >= out_len {
                return None;
            }
            out[op - lit - 1] = (lit as u8).wrapping_sub(1);
            op -= (lit == 0) as usize;
            // As the C code: 16 unrolled steps (unbounded by `maxlen`, within the input)
            // when `maxlen > 16`, then steps up to `maxlen`.
            'scan: {
                if maxlen > 16 {
                    for _ in 0..16 {
                        len += 1;
                        if input[rf + len] != input[ip + len] {
                            break 'scan;
                        }
                    }
                }
                loop {
                    len += 1;
                    if len >= maxlen || input[rf + len] != input[ip + len] {
                        break;
                    }
                }
            }
            len -= 2;
            ip += 1;
            if len < 7 {
                out[op] = ((off >> 8) + (len << 5)) as u8;
                op += 1;
            } else {
                out[op] = ((off >> 8) + (7 << 5)) as u8;
                out[op + 1] = (len - 7) as u8;
                op += 2;
            }
            out[op] = off as u8;
            op += 1;
            lit = 0;
            op += 1;
            ip += len + 1;
            if ip >= in_len - 2 {
                break;
            }
            ip -= 2;
            hval = frst(ip);
            hval = next(hval, ip);
            htab.swap(idx(hval), ip + 1);
            ip += 1;
            hval = next(hval, ip);
            htab.swap(idx(hval), ip + 1);
            ip += 1;
        } else {
            if op >= out_len {
                return None;
            }
            literal(&mut out, &mut op, &mut lit, input[ip]);
            ip += 1;
        }
    }
    if op + 3 > out_len {
        return None;
    }
    while ip < in_len {
        literal(&mut out, &mut op, &mut lit, input[ip]);
        ip += 1;
    }
    out[op - lit - 1] = (lit as u8).wrapping_sub(1);
    op -= (lit == 0) as usize;
    out.truncate(op);
    Some(out)
}

/// Test helper: `reads` (whether a blob decodes) refuses every strict prefix of `blob` and
/// survives every single flipped bit of it.
#[cfg(test)]
pub(crate) fn assert_hostile_refused(blob: &[u8], reads: impl Fn(&[u8]) -> bool) {
    for cut in 0..blob.len() {
        assert!(!reads(&blob[..cut]), "cut at {cut}");
    }
    for i in 0..blob.len() {
        for bit in 0..8 {
            let mut q = blob.to_vec();
            q[i] ^= 1 << bit;
            reads(&q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_by_eight_bytes_is_crc64_by_one() {
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 9) as u8)
            .collect();
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 2991 - start] {
                let d = &data[start..start + len];
                assert_eq!(crc64(77, d), crc64_bytewise(77, d), "{start} {len}");
                // Continuing a CRC across a split point.
                let (a, b) = d.split_at(len / 3);
                assert_eq!(crc64(crc64(0, a), b), crc64_bytewise(0, d));
            }
        }
    }

    #[test]
    fn crc64_is_redis_s() {
        // Redis's crc64.c self-test values.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
        // Its Lorem ipsum text, with the C string's terminating NUL (`sizeof`).
        let li = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed \
do eiusmod tempor incididunt ut labore et dolore magna \
aliqua. Ut enim ad minim veniam, quis nostrud exercitation \
ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis \
aute irure dolor in reprehenderit in voluptate velit esse \
cillum dolore eu fugiat nulla pariatur. Excepteur sint \
occaecat cupidatat non proident, sunt in culpa qui officia \
deserunt mollit anim id est laborum.\0";
        assert_eq!(crc64(0, li), 0xc7794709e69683b3);
    }

    #[test]
    fn strings_round_trip_in_every_encoding() {
        let long: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8 + b'a').collect();
        let random: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let small = "|0|-128|300|-70000|12345678901|007|abcdefghijklmnopqrstuvwxyz|aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let all = small
            .split('|')
            .map(str::as_bytes)
            .chain([&long[..], &random]);
        for s in all {
            let mut out = Vec::new();
            put_string(&mut out, s);
            let mut r = Reader::new(&out);
            assert_eq!(r.string().as_deref(), Some(s), "{}", s.escape_ascii());
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn payloads_are_checked() {
        let p = seal(b"\xf5\x03abc".to_vec());
        assert_eq!(open(&p), Some(&b"\xf5\x03abc"[..]));
        for i in 0..p.len() {
            let mut q = p.clone();
            q[i] ^= 1;
            assert_eq!(open(&q), None, "flip at {i}");
        }
        assert_eq!(open(&p[..9]), None);
        // Truncated or malformed strings are refused, never panic.
        for cut in 0..p.len() {
            let _ = Reader::new(&p[..cut]).string();
        }
        assert_eq!(lzf_decompress(&[0xe0, 0xff, 0x00], 10), None);
        assert_eq!(lzf_decompress(&[0x05, b'a'], 6), None);
    }
}
