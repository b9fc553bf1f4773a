//! The blobs Redis wrote before listpacks, read only (Redis 7.0 reads them from older RDB
//! files and DUMP payloads, and never writes them):
//!
//! - ziplist (`ziplist.c`, lists before 7.0's listpack nodes, small hashes and sorted sets
//!   before 7.0):
//!   ```text
//!    zlbytes u32 LE | zltail u32 LE | zllen u16 LE (65535: unknown) | entry* | 0xFF
//!    entry: prevlen (1 byte < 254, or 0xFE + u32 LE) | encoding [+ length] | data
//!   ```
//! - zipmap (`zipmap.c`, small hashes before 2.6):
//!   ```text
//!    zmlen u8 | (len key len free value pad[free])* | 0xFF
//!    len: 1 byte < 254, or 0xFE + u32 LE
//!   ```
//!
//! Every bound, every `prevlen`, `zltail` and the count are checked: the blob is untrusted.

use super::listpack::Item;

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

const HEADER: usize = 10;

/// Every element of ziplist `zl`, checked. Allocates one vector of at most one slot per
/// byte of `zl`.
pub fn decode(zl: &[u8]) -> Result<Vec<Item<'_>>, &'static str> {
    const OOB: &str = "ziplist entry out of bounds";
    if zl.len() < HEADER + 1 {
        return Err("ziplist shorter than its header");
    }
    if le(&zl[..4]) != zl.len() as u64 {
        return Err("ziplist size header does not match");
    }
    if zl[zl.len() - 1] != 0xff {
        return Err("ziplist without its terminator");
    }
    let tail = le(&zl[4..8]) as usize;
    let count = le(&zl[8..10]) as usize;
    let end = zl.len() - 1;
    let mut out = Vec::with_capacity(count.min(end - HEADER));
    let (mut p, mut prev_len, mut last) = (HEADER, 0usize, HEADER);
    while p < end {
        let get = |from: usize, n: usize| -> Result<&[u8], &'static str> {
            let s = p.checked_add(from).ok_or(OOB)?;
            let e = s.checked_add(n).ok_or(OOB)?;
            zl.get(s..e).filter(|_| e <= end).ok_or(OOB)
        };
        let (prevlen, h) = match get(0, 1)?[0] {
            0xfe => (le(get(1, 4)?) as usize, 5),
            0xff => return Err("ziplist entry with a bad prevlen"),
            b => (b as usize, 1),
        };
        if prevlen != prev_len {
            return Err("ziplist entry with a wrong prevlen");
        }
        let b = get(h, 1)?[0];
        let (item, len) = match b >> 6 {
            0 => {
                let n = (b & 0x3f) as usize;
                (Item::Str(get(h + 1, n)?), h + 1 + n)
            }
            1 => {
                let n = (((b & 0x3f) as usize) << 8) | get(h + 1, 1)?[0] as usize;
                (Item::Str(get(h + 2, n)?), h + 2 + n)
            }
            2 if b == 0x80 => {
                let s = get(h + 1, 4)?;
                let n = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
                (Item::Str(get(h + 5, n)?), h + 5 + n)
            }
            2 => return Err("ziplist entry with a bad encoding"),
            _ => {
                let int = |n: usize| -> Result<i64, &'static str> {
                    let v = le(get(h + 1, n)?);
                    let shift = 64 - 8 * n as u32;
                    Ok(((v << shift) as i64) >> shift)
                };
                match b {
                    0xc0 => (Item::Int(int(2)?), h + 3),
                    0xd0 => (Item::Int(int(4)?), h + 5),
                    0xe0 => (Item::Int(int(8)?), h + 9),
                    0xf0 => (Item::Int(int(3)?), h + 4),
                    0xfe => (Item::Int(int(1)?), h + 2),
                    0xf1..=0xfd => (Item::Int((b & 0x0f) as i64 - 1), h + 1),
                    _ => return Err("ziplist entry with a bad encoding"),
                }
            }
        };
        out.push(item);
        last = p;
        prev_len = len;
        p += len;
    }
    if tail != last {
        return Err("ziplist tail offset does not match");
    }
    if count != 65535 && count != out.len() {
        return Err("ziplist count header does not match");
    }
    Ok(out)
}

/// The fields and values of zipmap `zm`, alternating, checked.
pub fn decode_zipmap(zm: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    const OOB: &str = "zipmap entry out of bounds";
    if zm.len() < 2 || zm[zm.len() - 1] != 0xff {
        return Err("zipmap without its terminator");
    }
    let end = zm.len() - 1;
    let mut out = Vec::with_capacity((zm[0] as usize * 2).min(end));
    let mut p = 1;
    let len_at = |p: usize| -> Result<(usize, usize), &'static str> {
        match *zm.get(p).ok_or(OOB)? {
            0xfe => Ok((le(zm.get(p + 1..p + 5).ok_or(OOB)?) as usize, 5)),
            0xff => Err("zipmap entry with a bad length"),
            b => Ok((b as usize, 1)),
        }
    };
    let take = |from: usize, n: usize| -> Result<&[u8], &'static str> {
        let e = from.checked_add(n).ok_or(OOB)?;
        zm.get(from..e).filter(|_| e <= end).ok_or(OOB)
    };
    while p < end {
        let (klen, h) = len_at(p)?;
        out.push(take(p + h, klen)?);
        p += h + klen;
        let (vlen, h) = len_at(p)?;
        let free = *zm.get(p + h).ok_or(OOB)? as usize;
        out.push(take(p + h + 1, vlen)?);
        p = p + h + 1 + vlen + free;
        if p > end {
            return Err(OOB);
        }
    }
    if zm[0] < 254 && zm[0] as usize * 2 != out.len() {
        return Err("zipmap count does not match");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ziplist of "a", 12, -2 and a 300-byte string, laid out by hand as Redis 6 does.
    fn sample() -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut tail = 0;
        let mut push = |body: &mut Vec<u8>, entry: Vec<u8>| {
            tail = HEADER + body.len();
            let mut e = if prev < 254 {
                vec![prev as u8]
            } else {
                let mut v = vec![0xfe];
                v.extend_from_slice(&(prev as u32).to_le_bytes());
                v
            };
            e.extend_from_slice(&entry);
            prev = e.len();
            body.extend_from_slice(&e);
        };
        push(&mut body, vec![0x01, b'a']);
        push(&mut body, vec![0xfd]);
        push(&mut body, vec![0xc0, 0xfe, 0xff]);
        let mut long = vec![0x41, 0x2c];
        long.extend_from_slice(&[b'q'; 300]);
        push(&mut body, long);
        let total = HEADER + body.len() + 1;
        let mut zl = Vec::new();
        zl.extend_from_slice(&(total as u32).to_le_bytes());
        zl.extend_from_slice(&(tail as u32).to_le_bytes());
        zl.extend_from_slice(&4u16.to_le_bytes());
        zl.extend_from_slice(&body);
        zl.push(0xff);
        zl
    }

    #[test]
    fn reads_every_encoding() {
        let zl = sample();
        let items = decode(&zl).unwrap();
        assert_eq!(items[0], Item::Str(b"a"));
        assert_eq!(items[1], Item::Int(12));
        assert_eq!(items[2], Item::Int(-2));
        assert_eq!(items[3], Item::Str(&[b'q'; 300]));
    }

    #[test]
    fn hostile_blobs_are_refused() {
        super::super::assert_hostile_refused(&sample(), |b| decode(b).is_ok());
        let zm = b"\x02\x01a\x01\x00b\x02cd\x03\x02efgxx\xff";
        assert_eq!(
            decode_zipmap(zm).unwrap(),
            vec![&b"a"[..], b"b", b"cd", b"efg"]
        );
        super::super::assert_hostile_refused(zm, |b| decode_zipmap(b).is_ok());
    }
}
