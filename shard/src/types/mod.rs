//! Encodings of the collection types, one file per type (the commands that use them live in
//! `crate::ops`, by family).

pub mod geohash;
pub mod hash;
pub mod hll;
pub mod list;
pub mod set;
pub mod zset;

/// Appends `n` as an LEB128 length (7 bits a byte, low first): the packed encodings'
/// element prefix.
fn put_len(buf: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.push(b);
            return;
        }
        buf.push(b | 0x80);
    }
}

/// The LEB128 length at `at`: its value and where what follows it starts. Packed buffers
/// are only written through [`put_len`], so lengths are well formed.
fn get_len(buf: &[u8], at: usize) -> (usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0u32, at);
    loop {
        let b = buf[i];
        n |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b & 0x80 == 0 {
            return (n, i);
        }
        shift += 7;
    }
}
