//! Encodings of the collection types, one file per type (the commands that use them live in
//! `crate::ops`, by family).

pub mod geohash;
pub mod hash;
pub mod hll;
pub mod list;
pub mod set;
pub mod zset;

/// The read methods an owned collection answers through its borrowed view (`view()`).
macro_rules! view_basics {
    () => {
        pub fn len(&self) -> usize {
            self.view().len()
        }

        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// OBJECT ENCODING's name.
        pub fn encoding(&self) -> &'static str {
            self.view().encoding()
        }
    };
}
use view_basics;

/// What a counted pack's owned form `$pack { buf, $count }` and its view
/// `$view { buf, $count }` share (the small hash and sorted set): the view of a pack in a
/// keyspace node, the owned form's view, its pack's parts, and its rebuilding from a pack
/// into a lent buffer.
macro_rules! counted_pack {
    ($pack:ident, $view:ident, $count:ident) => {
        impl<'a> $view<'a> {
            /// The view of a pack as `pack_parts` wrote it ([`super::split_counted`]).
            pub fn from_pack(pack: &'a [u8]) -> $view<'a> {
                let ($count, buf) = super::split_counted(pack);
                $view { buf, $count }
            }

            /// An owned copy.
            pub fn to_pack(self) -> $pack {
                $pack {
                    buf: self.buf.to_vec(),
                    $count: self.$count,
                }
            }
        }

        impl $pack {
            pub fn view(&self) -> $view<'_> {
                $view {
                    buf: &self.buf,
                    $count: self.$count,
                }
            }

            /// The pack a keyspace node holds for this one: the count (a 4-byte header),
            /// then the elements.
            pub fn pack_parts(&self) -> ([u8; 4], usize, &[u8]) {
                (super::count_head(self.$count), 4, &self.buf)
            }

            /// The pack `pack` holds, in `buf` (a buffer lent by the table, so an edit
            /// in place allocates nothing).
            pub fn from_pack(pack: &[u8], buf: Vec<u8>) -> $pack {
                let ($count, body) = super::split_counted(pack);
                let buf = super::refill(buf, body);
                $pack { buf, $count }
            }

            /// The elements' buffer, given back for reuse.
            pub fn into_buf(self) -> Vec<u8> {
                self.buf
            }
        }
    };
}
use counted_pack;

/// The header a counted pack (a small hash's or sorted set's in a keyspace node) starts
/// with: its element count as 4 little-endian bytes.
fn count_head(count: usize) -> [u8; 4] {
    (count as u32).to_le_bytes()
}

/// A counted pack's element count and elements ([`count_head`]).
fn split_counted(pack: &[u8]) -> (usize, &[u8]) {
    let (n, body) = pack.split_at(4);
    (
        u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize,
        body,
    )
}

/// `buf` (a buffer lent for an edit) holding a copy of `bytes` and nothing else.
fn refill(mut buf: Vec<u8>, bytes: &[u8]) -> Vec<u8> {
    buf.clear();
    buf.extend_from_slice(bytes);
    buf
}

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
