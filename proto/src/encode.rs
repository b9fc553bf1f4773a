//! Reply encoding for RESP2 and RESP3.
//!
//! A [`ReplyWriter`] appends to a byte vector the connection owns and reuses, so encoding a
//! reply allocates only when that vector has to grow. The protocol a connection speaks
//! (switched by HELLO) decides how nulls, maps, sets, doubles and booleans are written:
//!
//! | kind   | RESP2                 | RESP3        |
//! |--------|-----------------------|--------------|
//! | null   | `$-1` (or `*-1`)      | `_`          |
//! | map    | array of 2N           | `%N`         |
//! | set    | array                 | `~N`         |
//! | double | bulk string           | `,`          |
//! | bool   | integer 0/1           | `#t` / `#f`  |
//!
//! Replies that never change are static bytes (Redis's `shared.ok`).

pub const OK: &[u8] = b"+OK\r\n";
pub const PONG: &[u8] = b"+PONG\r\n";
pub const QUEUED: &[u8] = b"+QUEUED\r\n";
pub const NULL_BULK2: &[u8] = b"$-1\r\n";
pub const NULL_ARRAY2: &[u8] = b"*-1\r\n";
pub const NULL3: &[u8] = b"_\r\n";
pub const ZERO: &[u8] = b":0\r\n";
pub const ONE: &[u8] = b":1\r\n";
pub const EMPTY_ARRAY: &[u8] = b"*0\r\n";
pub const EMPTY_BULK: &[u8] = b"$0\r\n\r\n";

/// The RESP version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// Appends RESP replies to a buffer.
pub struct ReplyWriter<'a> {
    pub buf: &'a mut Vec<u8>,
    pub proto: Protocol,
}

impl<'a> ReplyWriter<'a> {
    #[inline]
    pub fn new(buf: &'a mut Vec<u8>, proto: Protocol) -> Self {
        ReplyWriter { buf, proto }
    }

    #[inline]
    pub fn resp3(&self) -> bool {
        self.proto == Protocol::Resp3
    }

    #[inline]
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    #[inline]
    pub fn ok(&mut self) {
        self.raw(OK);
    }

    /// `+s\r\n`; `s` must not contain CR or LF.
    #[inline]
    pub fn simple(&mut self, s: &[u8]) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(s);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// `-msg\r\n`; `msg` starts with the error code (`ERR`, `WRONGTYPE`, …). CR/LF in the
    /// message are replaced by spaces, as Redis does, so an error can never break framing.
    pub fn error(&mut self, msg: &str) {
        self.buf.push(b'-');
        for &c in msg.as_bytes() {
            self.buf
                .push(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn int(&mut self, v: i64) {
        match v {
            0 => self.raw(ZERO),
            1 => self.raw(ONE),
            _ => {
                self.buf.push(b':');
                self.buf
                    .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    #[inline]
    fn header(&mut self, tag: u8, n: usize) {
        self.buf.push(tag);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    #[inline]
    pub fn bulk(&mut self, data: &[u8]) {
        self.header(b'$', data.len());
        append_payload(self.buf, data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding the decimal form of `v` (how Redis returns an integer-encoded
    /// string value).
    #[inline]
    pub fn bulk_int(&mut self, v: i64) {
        let mut b = itoa::Buffer::new();
        self.bulk(b.format(v).as_bytes());
    }

    /// The null reply for a missing bulk string.
    #[inline]
    pub fn null(&mut self) {
        self.raw(if self.resp3() { NULL3 } else { NULL_BULK2 });
    }

    /// The null reply for a missing array (`*-1` in RESP2).
    #[inline]
    pub fn null_array(&mut self) {
        self.raw(if self.resp3() { NULL3 } else { NULL_ARRAY2 });
    }

    #[inline]
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// A map of `n` pairs: `%n` in RESP3, an array of `2n` in RESP2.
    #[inline]
    pub fn map(&mut self, n: usize) {
        if self.resp3() {
            self.header(b'%', n);
        } else {
            self.header(b'*', 2 * n);
        }
    }

    #[inline]
    pub fn set(&mut self, n: usize) {
        if self.resp3() {
            self.header(b'~', n);
        } else {
            self.header(b'*', n);
        }
    }

    /// A double: `,` in RESP3, a bulk string in RESP2. `text` is the already formatted value.
    pub fn double_text(&mut self, text: &[u8]) {
        if self.resp3() {
            self.buf.push(b',');
            self.buf.extend_from_slice(text);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }

    pub fn boolean(&mut self, v: bool) {
        if self.resp3() {
            self.raw(if v { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(v as i64);
        }
    }

    /// A verbatim string (`=`) in RESP3 with the given 3-letter format, a bulk string in RESP2.
    pub fn verbatim(&mut self, format: &[u8; 3], data: &[u8]) {
        if self.resp3() {
            self.header(b'=', data.len() + 4);
            self.buf.extend_from_slice(format);
            self.buf.push(b':');
            self.buf.extend_from_slice(data);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(data);
        }
    }

    /// A big number: `(` in RESP3, a bulk string in RESP2. `digits` is the decimal text.
    pub fn big_number(&mut self, digits: &[u8]) {
        if self.resp3() {
            self.buf.push(b'(');
            self.buf.extend_from_slice(digits);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(digits);
        }
    }

    /// The header of an attribute map of `n` pairs (RESP3 `|`), which precedes the reply it
    /// describes. RESP2 has no attributes: callers write the pairs only in RESP3.
    pub fn attribute(&mut self, n: usize) {
        self.header(b'|', n);
    }

    /// The header of an out-of-band push of `n` elements (RESP3 `>`); RESP2 has no pushes,
    /// so callers check [`ReplyWriter::resp3`] first.
    pub fn push(&mut self, n: usize) {
        self.header(b'>', n);
    }
}

/// Parses the integer of a `:n\r\n` reply, used when merging per-shard replies.
pub fn parse_int_reply(reply: &[u8]) -> Option<i64> {
    let body = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    crate::parse_i64(body)
}

/// Splits an array reply `*n\r\n<elements>` into its count and element bytes.
pub fn split_array_reply(reply: &[u8]) -> Option<(usize, &[u8])> {
    let rest = reply.strip_prefix(b"*")?;
    let eol = rest.iter().position(|&c| c == b'\r')?;
    let n = crate::parse_i64(&rest[..eol])?;
    let body = rest.get(eol + 2..)?;
    usize::try_from(n).ok().map(|n| (n, body))
}

/// Splits `count` consecutive bulk-string-or-null replies into their byte ranges (used to
/// reorder per-shard MGET replies). None if the bytes are not such replies.
pub fn split_bulks<'a>(mut body: &'a [u8], count: usize, out: &mut Vec<&'a [u8]>) -> Option<()> {
    for _ in 0..count {
        let len = if body.starts_with(b"_\r\n") {
            3
        } else {
            let rest = body.strip_prefix(b"$")?;
            let eol = rest.iter().position(|&c| c == b'\r')?;
            let n = crate::parse_i64(&rest[..eol])?;
            if n < 0 {
                1 + eol + 2
            } else {
                1 + eol + 2 + n as usize + 2
            }
        };
        if len > body.len() {
            return None;
        }
        out.push(&body[..len]);
        body = &body[len..];
    }
    Some(())
}

/// Pieces in which [`append_payload`] copies a payload that would meet `rep movsb`'s slow
/// case: under glibc's threshold for it (2,112 bytes on x86-64), so each piece goes through
/// its vector loop.
const PAYLOAD_PIECE: usize = 2048;

/// Appends a bulk reply's payload to `buf`.
///
/// glibc's memcpy copies more than 2,112 bytes with `rep movsb`. On AMD Zen (an EPYC under
/// KVM, glibc 2.36) that runs 5-9x slower when the destination lies 1-31 bytes after the
/// source modulo 4 KiB: a 256 KiB copy took 140-190 us instead of 17-30 (the loads wait on
/// the stores just made to addresses they alias). A large value is page-aligned, and so is
/// a large reply buffer, and the payload starts after its `$262144\r\n` header: every
/// large GET landed in that window, and the copy was 60 % of percore's CPU for 256 KiB
/// GETs against Redis's 19 %. Such a copy goes in [`PAYLOAD_PIECE`] pieces instead (31-38 us
/// for 256 KiB); every other one stays a single copy.
#[inline]
pub fn append_payload(buf: &mut Vec<u8>, data: &[u8]) {
    if data.len() > PAYLOAD_PIECE {
        buf.reserve(data.len());
        let dst = buf.as_ptr() as usize + buf.len();
        let ahead = dst.wrapping_sub(data.as_ptr() as usize) & 4095;
        if (1..64).contains(&ahead) {
            for piece in data.chunks(PAYLOAD_PIECE) {
                buf.extend_from_slice(piece);
            }
            return;
        }
    }
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(proto: Protocol, f: impl FnOnce(&mut ReplyWriter)) -> Vec<u8> {
        let mut buf = Vec::new();
        f(&mut ReplyWriter::new(&mut buf, proto));
        buf
    }

    /// A large payload is appended whole and in order wherever it lands, in one copy or in
    /// pieces: every distance from the source modulo 4 KiB, the sliced window included.
    #[test]
    fn large_payloads_are_copied_whole_at_every_distance() {
        let data: Vec<u8> = (0..3 * PAYLOAD_PIECE + 17)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut sliced = 0;
        for prefix in 0..4096 + 64 {
            let mut buf = Vec::with_capacity(prefix + data.len());
            buf.resize(prefix, b'-');
            let dst = buf.as_ptr() as usize + prefix;
            if (1..64).contains(&(dst.wrapping_sub(data.as_ptr() as usize) & 4095)) {
                sliced += 1;
            }
            append_payload(&mut buf, &data);
            assert_eq!(buf.len(), prefix + data.len());
            assert!(buf[..prefix].iter().all(|&b| b == b'-'));
            assert!(buf[prefix..] == data[..], "prefix {prefix}");
        }
        assert!(sliced >= 63, "the window was met {sliced} times");
        let mut small = b"x".to_vec();
        append_payload(&mut small, b"yz");
        assert_eq!(small, b"xyz");
    }

    #[test]
    fn resp2_and_resp3_differ_where_redis_does() {
        assert_eq!(enc(Protocol::Resp2, |w| w.null()), b"$-1\r\n");
        assert_eq!(enc(Protocol::Resp3, |w| w.null()), b"_\r\n");
        assert_eq!(enc(Protocol::Resp2, |w| w.null_array()), b"*-1\r\n");
        assert_eq!(enc(Protocol::Resp2, |w| w.map(2)), b"*4\r\n");
        assert_eq!(enc(Protocol::Resp3, |w| w.map(2)), b"%2\r\n");
        assert_eq!(enc(Protocol::Resp3, |w| w.set(1)), b"~1\r\n");
        assert_eq!(
            enc(Protocol::Resp2, |w| w.double_text(b"1.5")),
            b"$3\r\n1.5\r\n"
        );
        assert_eq!(enc(Protocol::Resp3, |w| w.double_text(b"1.5")), b",1.5\r\n");
        assert_eq!(enc(Protocol::Resp3, |w| w.boolean(true)), b"#t\r\n");
        assert_eq!(
            enc(Protocol::Resp3, |w| w.verbatim(b"txt", b"hi")),
            b"=6\r\ntxt:hi\r\n"
        );
        assert_eq!(enc(Protocol::Resp3, |w| w.big_number(b"12")), b"(12\r\n");
        assert_eq!(
            enc(Protocol::Resp2, |w| w.big_number(b"12")),
            b"$2\r\n12\r\n"
        );
        assert_eq!(enc(Protocol::Resp3, |w| w.attribute(1)), b"|1\r\n");
        assert_eq!(enc(Protocol::Resp3, |w| w.push(2)), b">2\r\n");
    }

    #[test]
    fn scalars() {
        assert_eq!(enc(Protocol::Resp2, |w| w.int(-42)), b":-42\r\n");
        assert_eq!(
            enc(Protocol::Resp2, |w| w.bulk(b"a\r\nb")),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(
            enc(Protocol::Resp2, |w| w.bulk_int(i64::MIN)),
            b"$20\r\n-9223372036854775808\r\n"
        );
        assert_eq!(
            enc(Protocol::Resp2, |w| w.error("ERR a\r\nb")),
            b"-ERR a  b\r\n"
        );
        assert_eq!(parse_int_reply(b":12\r\n"), Some(12));
        assert_eq!(
            split_array_reply(b"*2\r\n:1\r\n:2\r\n"),
            Some((2, &b":1\r\n:2\r\n"[..]))
        );
        let mut v = Vec::new();
        split_bulks(b"$1\r\na\r\n$-1\r\n_\r\n$0\r\n\r\n", 4, &mut v).unwrap();
        assert_eq!(
            v,
            vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"_\r\n", b"$0\r\n\r\n"]
        );
        assert!(split_bulks(b"$5\r\na\r\n", 1, &mut Vec::new()).is_none());
    }
}
