//! Redis's listpack blob (`listpack.c`), as RDB carries small hashes, sorted sets, list
//! nodes and (7.2) small sets:
//!
//! ```text
//!  total bytes u32 LE | count u16 LE (65535: unknown) | entry* | 0xFF
//!  entry: encoding [+ length] | data | backlen (encoding+data length, 1–5 bytes, reversed)
//! ```
//!
//! Encodings: `0xxxxxxx` a 7-bit unsigned integer; `10xxxxxx` a string under 64 bytes;
//! `110xxxxx yyyyyyyy` a 13-bit signed integer; `1110xxxx yyyyyyyy` a string under 4096
//! bytes; `0xF0` + u32 a longer string; `0xF1`–`0xF4` 16, 24, 32 and 64-bit integers.
//!
//! [`decode`] checks everything Redis's deep validation checks (header size, terminator,
//! every entry's bounds and backlen, the count) whatever `sanitize-dump-payload` says: the
//! blob is untrusted and every entry is read anyway. [`Writer`] encodes as Redis's
//! `lpAppend` does (a string that is a canonical integer is stored as one), so a blob
//! written here is byte for byte Redis's for the same elements.

use percore_proto::parse_i64;

/// One element: listpacks store integers apart from strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl<'a> Item<'a> {
    /// The element's bytes (an integer formatted into `buf`).
    pub fn bytes<'b>(self, buf: &'b mut itoa::Buffer) -> &'b [u8]
    where
        'a: 'b,
    {
        match self {
            Item::Str(s) => s,
            Item::Int(i) => buf.format(i).as_bytes(),
        }
    }
}

const HEADER: usize = 6;
const EOF: u8 = 0xff;

/// The bytes of `l` as a backlen (`lpEncodeBacklen`), into `out`; returns how many.
fn backlen(l: usize, out: &mut [u8; 5]) -> usize {
    let l = l as u64;
    if l <= 127 {
        out[0] = l as u8;
        1
    } else if l < 16383 {
        out[0] = (l >> 7) as u8;
        out[1] = (l & 127) as u8 | 128;
        2
    } else if l < 2097151 {
        out[0] = (l >> 14) as u8;
        out[1] = ((l >> 7) & 127) as u8 | 128;
        out[2] = (l & 127) as u8 | 128;
        3
    } else if l < 268435455 {
        out[0] = (l >> 21) as u8;
        out[1] = ((l >> 14) & 127) as u8 | 128;
        out[2] = ((l >> 7) & 127) as u8 | 128;
        out[3] = (l & 127) as u8 | 128;
        4
    } else {
        out[0] = (l >> 28) as u8;
        out[1] = ((l >> 21) & 127) as u8 | 128;
        out[2] = ((l >> 14) & 127) as u8 | 128;
        out[3] = ((l >> 7) & 127) as u8 | 128;
        out[4] = (l & 127) as u8 | 128;
        5
    }
}

/// Sign-extends the low `bits` bits of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

/// Every element of listpack `lp`, checked; Err names what is wrong.
/// Allocates one vector of at most one slot per byte of `lp`.
pub fn decode(lp: &[u8]) -> Result<Vec<Item<'_>>, &'static str> {
    if lp.len() < HEADER + 1 {
        return Err("listpack shorter than its header");
    }
    if le(&lp[..4]) != lp.len() as u64 {
        return Err("listpack size header does not match");
    }
    if lp[lp.len() - 1] != EOF {
        return Err("listpack without its terminator");
    }
    let count = le(&lp[4..6]) as usize;
    let end = lp.len() - 1;
    let mut out = Vec::with_capacity(count.min(end - HEADER));
    let mut p = HEADER;
    while p < end {
        let b = lp[p];
        let at = |i: usize| lp.get(p + i).copied().ok_or("listpack entry out of bounds");
        let slice = |from: usize, n: usize| {
            let s = p.checked_add(from).ok_or("listpack entry out of bounds")?;
            let e = s.checked_add(n).ok_or("listpack entry out of bounds")?;
            if e > end {
                return Err("listpack entry out of bounds");
            }
            Ok(&lp[s..e])
        };
        let (item, len) = if b & 0x80 == 0 {
            (Item::Int((b & 0x7f) as i64), 1)
        } else if b & 0xc0 == 0x80 {
            let n = (b & 0x3f) as usize;
            (Item::Str(slice(1, n)?), 1 + n)
        } else if b & 0xe0 == 0xc0 {
            let v = (((b & 0x1f) as u64) << 8) | at(1)? as u64;
            (Item::Int(signed(v, 13)), 2)
        } else if b & 0xf0 == 0xe0 {
            let n = (((b & 0x0f) as usize) << 8) | at(1)? as usize;
            (Item::Str(slice(2, n)?), 2 + n)
        } else {
            match b {
                0xf0 => {
                    let n = le(slice(1, 4)?) as usize;
                    (Item::Str(slice(5, n)?), 5 + n)
                }
                0xf1 => (Item::Int(signed(le(slice(1, 2)?), 16)), 3),
                0xf2 => (Item::Int(signed(le(slice(1, 3)?), 24)), 4),
                0xf3 => (Item::Int(signed(le(slice(1, 4)?), 32)), 5),
                0xf4 => (Item::Int(le(slice(1, 8)?) as i64), 9),
                _ => return Err("listpack entry with a bad encoding"),
            }
        };
        let mut bl = [0u8; 5];
        let n = backlen(len, &mut bl);
        if slice(len, n)? != &bl[..n] {
            return Err("listpack entry with a bad backlen");
        }
        out.push(item);
        p += len + n;
    }
    if count != 65535 && count != out.len() {
        return Err("listpack count header does not match");
    }
    Ok(out)
}

/// Builds a listpack as Redis's `lpAppend` does, element by element.
pub struct Writer {
    buf: Vec<u8>,
    count: usize,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            buf: vec![0; HEADER],
            count: 0,
        }
    }
}

impl Writer {
    /// Appends `s`: as an integer when it is one written canonically (`lpStringToInt64`).
    pub fn push(&mut self, s: &[u8]) {
        match (s.len() <= 20).then(|| parse_i64(s)).flatten() {
            Some(v) => self.push_int(v),
            None => self.push_str(s),
        }
    }

    pub fn push_int(&mut self, v: i64) {
        let start = self.buf.len();
        let b = &mut self.buf;
        if (0..=127).contains(&v) {
            b.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = (v as u64) & 0x1fff;
            b.extend_from_slice(&[0xc0 | (u >> 8) as u8, u as u8]);
        } else if let Ok(x) = i16::try_from(v) {
            b.push(0xf1);
            b.extend_from_slice(&x.to_le_bytes());
        } else if (-8_388_608..=8_388_607).contains(&v) {
            b.push(0xf2);
            b.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if let Ok(x) = i32::try_from(v) {
            b.push(0xf3);
            b.extend_from_slice(&x.to_le_bytes());
        } else {
            b.push(0xf4);
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.close(start);
    }

    pub fn push_str(&mut self, s: &[u8]) {
        let start = self.buf.len();
        let b = &mut self.buf;
        if s.len() < 64 {
            b.push(0x80 | s.len() as u8);
        } else if s.len() < 4096 {
            b.extend_from_slice(&[0xe0 | (s.len() >> 8) as u8, s.len() as u8]);
        } else {
            b.push(0xf0);
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(s);
        self.close(start);
    }

    /// Appends the backlen of the entry that began at `start`.
    fn close(&mut self, start: usize) {
        let mut bl = [0u8; 5];
        let n = backlen(self.buf.len() - start, &mut bl);
        self.buf.extend_from_slice(&bl[..n]);
        self.count += 1;
    }

    /// Elements so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The finished blob's size so far (Redis's `lpBytes`, terminator included).
    pub fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    /// The blob: header filled in, terminator appended.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(EOF);
        let total = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let count = self.count.min(65535) as u16;
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_encoding() {
        let long = vec![b'x'; 5000];
        let mid = vec![b'y'; 300];
        let elems: Vec<Vec<u8>> = [
            "0",
            "127",
            "128",
            "-1",
            "-4096",
            "4095",
            "4096",
            "-32768",
            "32767",
            "40000",
            "-8388608",
            "8388607",
            "8388608",
            "2147483647",
            "-2147483648",
            "2147483648",
            "9223372036854775807",
            "-9223372036854775808",
            "007",
            "-0",
            "",
            "abc",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([long, mid])
        .collect();
        let mut w = Writer::default();
        for e in &elems {
            w.push(e);
        }
        let lp = w.finish();
        let got = decode(&lp).unwrap();
        assert_eq!(got.len(), elems.len());
        for (g, e) in got.iter().zip(&elems) {
            assert_eq!(g.bytes(&mut itoa::Buffer::new()), &e[..]);
        }
        // Integers are stored as integers, others as strings.
        assert_eq!(got[0], Item::Int(0));
        assert_eq!(got[18], Item::Str(b"007"));
    }

    #[test]
    fn matches_redis_bytes() {
        // `RPUSH l a 1 -5000`: Redis 7.0's listpack for these three.
        let mut w = Writer::default();
        for e in ["a", "1", "-5000"] {
            w.push(e.as_bytes());
        }
        assert_eq!(
            w.finish(),
            b"\x10\x00\x00\x00\x03\x00\x81a\x02\x01\x01\xf1x\xec\x03\xff".to_vec()
        );
    }

    #[test]
    fn hostile_blobs_are_refused() {
        let mut w = Writer::default();
        w.push(b"hello");
        w.push(b"12345");
        w.push(&[b'z'; 200]);
        let lp = w.finish();
        assert!(decode(&lp).is_ok());
        super::super::assert_hostile_refused(&lp, |b| decode(b).is_ok());
        // A huge string length or count never allocates by it.
        let bad = b"\x0c\x00\x00\x00\xff\xff\xf0\xff\xff\xff\x7f\xff";
        assert!(decode(bad).is_err());
        // A wrong count is refused.
        let mut q = lp.clone();
        q[4] = 2;
        assert!(decode(&q).is_err());
    }
}
