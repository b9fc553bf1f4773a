//! Request decoding: RESP multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands
//! (`GET k\r\n`), with Redis's limits and exact error texts.
//!
//! The decoder is resumable: when a frame is incomplete it remembers how far it got, so a
//! 1M-argument request that arrives in thousands of reads is scanned once, not once per read.
//! Contract with the caller (the connection):
//! - `decode` is given the buffer starting at the first byte of the current frame;
//! - bytes of an unfinished frame are never changed or dropped between calls, only appended to
//!   (the caller may move the whole frame to the front of its buffer: positions are relative);
//! - after `Decoded::Command`/`Decoded::Empty` the caller advances by `consumed` bytes.
//!
//! Arguments come back as [`Span`]s (offset and length relative to the frame start) in a
//! vector the decoder reuses, so decoding allocates nothing per argument or per command.
//! Inline commands are unescaped in place, which is why the decoder takes `&mut [u8]`
//! (an unescaped argument is never longer than its quoted form).

/// The longest inline request or multibulk/bulk header line Redis accepts (PROTO_INLINE_MAX_SIZE).
pub const INLINE_MAX_SIZE: usize = 64 * 1024;
/// Most arguments in one multibulk request: Redis 7.0 refuses a count above `INT_MAX`
/// (`processMultibulkBuffer`). The count is never trusted for an allocation: the argument
/// vector grows as arguments arrive, so a client declaring 2^31 - 1 arguments and sending
/// nothing costs nothing, and the query buffer limit bounds what one that sends them costs.
pub const MAX_MULTIBULK_LEN: i64 = i32::MAX as i64;
/// Redis's `proto-max-bulk-len` default: 512 MB.
pub const DEFAULT_MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// Before AUTH succeeds (when a password is required) Redis allows only tiny requests.
pub const UNAUTH_MAX_MULTIBULK_LEN: i64 = 10;
pub const UNAUTH_MAX_BULK_LEN: i64 = 16384;
/// Arguments the decoder's span vector reserves up front at most, and keeps between
/// requests (Redis's `argv_len = min(multibulklen, 1024)`); beyond it, it grows as arguments
/// arrive and is released after a larger request.
const ARGS_KEEP: usize = 1024;

/// Limits applied while decoding; they can change per connection (AUTH) and at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_bulk_len: i64,
    /// False while the connection still has to authenticate: tighter limits apply.
    pub authenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            authenticated: true,
        }
    }
}

/// One argument: `len` bytes at `start`, relative to the start of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

impl Span {
    #[inline]
    pub fn of<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        &frame[self.start..self.start + self.len]
    }
}

/// What one call to [`RequestDecoder::decode`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole command of `consumed` bytes; its arguments are in [`RequestDecoder::args`].
    Command { consumed: usize },
    /// A frame that carries no command (`*0`, `*-1`, a blank inline line): skip `consumed`.
    Empty { consumed: usize },
    /// More bytes are needed; the frame is at least `need` bytes long in total.
    Incomplete { need: usize },
}

/// A request Redis would reject; the connection replies with [`ProtocolError::message`] and
/// closes, as Redis does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    InvalidMultibulkLength,
    /// A count above [`UNAUTH_MAX_MULTIBULK_LEN`] before the client authenticated.
    UnauthenticatedMultibulkLength,
    InvalidBulkLength,
    /// A bulk longer than [`UNAUTH_MAX_BULK_LEN`] before the client authenticated.
    UnauthenticatedBulkLength,
    ExpectedDollar(u8),
    UnbalancedQuotes,
    TooBigMbulkCount,
    TooBigBulkCount,
    TooBigInline,
}

impl ProtocolError {
    /// The error line as Redis sends it, without the leading `-` and trailing CRLF.
    pub fn message(&self) -> String {
        match self {
            ProtocolError::InvalidMultibulkLength => {
                "ERR Protocol error: invalid multibulk length".into()
            }
            ProtocolError::UnauthenticatedMultibulkLength => {
                "ERR Protocol error: unauthenticated multibulk length".into()
            }
            ProtocolError::InvalidBulkLength => "ERR Protocol error: invalid bulk length".into(),
            ProtocolError::UnauthenticatedBulkLength => {
                "ERR Protocol error: unauthenticated bulk length".into()
            }
            ProtocolError::ExpectedDollar(c) => {
                format!("ERR Protocol error: expected '$', got '{}'", *c as char)
            }
            ProtocolError::UnbalancedQuotes => {
                "ERR Protocol error: unbalanced quotes in request".into()
            }
            ProtocolError::TooBigMbulkCount => {
                "ERR Protocol error: too big mbulk count string".into()
            }
            ProtocolError::TooBigBulkCount => {
                "ERR Protocol error: too big bulk count string".into()
            }
            ProtocolError::TooBigInline => "ERR Protocol error: too big inline request".into(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// At the first byte of a frame.
    Start,
    /// Inside a multibulk frame: `remaining` bulks still to read, the next one at `pos`.
    Multibulk { remaining: usize, pos: usize },
}

/// A resumable request decoder; one per connection.
#[derive(Debug)]
pub struct RequestDecoder {
    pub limits: Limits,
    args: Vec<Span>,
    state: State,
    /// How far the search for the inline line end has got (so a slow inline is scanned once).
    inline_scanned: usize,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            args: Vec::with_capacity(8),
            state: State::Start,
            inline_scanned: 0,
        }
    }

    /// The arguments of the command last returned as `Decoded::Command` (empty after
    /// `Decoded::Empty`).
    #[inline]
    pub fn args(&self) -> &[Span] {
        &self.args
    }

    /// True when the decoder is between frames (nothing of a partial frame is remembered).
    pub fn at_frame_start(&self) -> bool {
        matches!(self.state, State::Start) && self.inline_scanned == 0
    }

    /// Decodes the frame at the start of `buf`. See the module comment for the contract.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Decoded, ProtocolError> {
        if let State::Start = self.state {
            if buf.is_empty() {
                return Ok(Decoded::Incomplete { need: 1 });
            }
            if buf[0] != b'*' {
                return self.decode_inline(buf);
            }
            let Some(eol) = find_crlf(buf, 1) else {
                if buf.len() > INLINE_MAX_SIZE {
                    return Err(ProtocolError::TooBigMbulkCount);
                }
                return Ok(Decoded::Incomplete {
                    need: buf.len() + 1,
                });
            };
            if eol > INLINE_MAX_SIZE {
                return Err(ProtocolError::TooBigMbulkCount);
            }
            // Redis's order: a malformed or over-INT_MAX count first, then the
            // unauthenticated limit (which applies only while authentication is required).
            let count = match crate::parse_i64(&buf[1..eol]) {
                Some(n) if n <= MAX_MULTIBULK_LEN => n,
                _ => return Err(ProtocolError::InvalidMultibulkLength),
            };
            if count > UNAUTH_MAX_MULTIBULK_LEN && !self.limits.authenticated {
                return Err(ProtocolError::UnauthenticatedMultibulkLength);
            }
            // No stale arguments may be visible after an empty frame, and a vector grown
            // by one huge request is not kept for the small ones after it.
            self.args.clear();
            self.args.shrink_to(ARGS_KEEP);
            if count <= 0 {
                return Ok(Decoded::Empty { consumed: eol + 2 });
            }
            // Never trust a declared count for an allocation: grow as arguments arrive.
            self.args.reserve((count as usize).min(ARGS_KEEP));
            self.state = State::Multibulk {
                remaining: count as usize,
                pos: eol + 2,
            };
        }
        let State::Multibulk {
            mut remaining,
            mut pos,
        } = self.state
        else {
            unreachable!("state is Multibulk after the Start branch")
        };
        let max_bulk = self.limits.max_bulk_len;
        let unauth_max_bulk = if self.limits.authenticated {
            i64::MAX
        } else {
            UNAUTH_MAX_BULK_LEN
        };
        while remaining > 0 {
            if pos >= buf.len() {
                self.state = State::Multibulk { remaining, pos };
                return Ok(Decoded::Incomplete { need: pos + 1 });
            }
            let Some(eol) = find_crlf(buf, pos) else {
                self.state = State::Multibulk { remaining, pos };
                if buf.len() - pos > INLINE_MAX_SIZE {
                    self.reset();
                    return Err(ProtocolError::TooBigBulkCount);
                }
                return Ok(Decoded::Incomplete {
                    need: buf.len() + 1,
                });
            };
            if buf[pos] != b'$' {
                let got = buf[pos];
                self.reset();
                return Err(ProtocolError::ExpectedDollar(got));
            }
            let len = match crate::parse_i64(&buf[pos + 1..eol]) {
                Some(n) if (0..=max_bulk).contains(&n) => n,
                _ => {
                    self.reset();
                    return Err(ProtocolError::InvalidBulkLength);
                }
            };
            if len > unauth_max_bulk {
                self.reset();
                return Err(ProtocolError::UnauthenticatedBulkLength);
            }
            let len = len as usize;
            let start = eol + 2;
            // The bulk is followed by a CRLF that Redis skips without checking; so do we.
            let end = start + len + 2;
            if end > buf.len() {
                self.state = State::Multibulk { remaining, pos };
                return Ok(Decoded::Incomplete { need: end });
            }
            self.args.push(Span { start, len });
            remaining -= 1;
            pos = end;
        }
        self.state = State::Start;
        Ok(Decoded::Command { consumed: pos })
    }

    fn reset(&mut self) {
        self.state = State::Start;
        self.inline_scanned = 0;
        self.args.clear();
    }

    fn decode_inline(&mut self, buf: &mut [u8]) -> Result<Decoded, ProtocolError> {
        let from = self.inline_scanned.min(buf.len());
        let Some(nl) = buf[from..]
            .iter()
            .position(|&c| c == b'\n')
            .map(|i| i + from)
        else {
            if buf.len() > INLINE_MAX_SIZE {
                self.reset();
                return Err(ProtocolError::TooBigInline);
            }
            self.inline_scanned = buf.len();
            return Ok(Decoded::Incomplete {
                need: buf.len() + 1,
            });
        };
        self.inline_scanned = 0;
        if nl > INLINE_MAX_SIZE {
            return Err(ProtocolError::TooBigInline);
        }
        let mut line_end = nl;
        if line_end > 0 && buf[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        self.args.clear();
        split_args_in_place(&mut buf[..line_end], &mut self.args)?;
        if self.args.is_empty() {
            return Ok(Decoded::Empty { consumed: nl + 1 });
        }
        Ok(Decoded::Command { consumed: nl + 1 })
    }
}

/// Finds `\r\n` at or after `from`; returns the index of the `\r`.
#[inline]
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let j = buf[i..].iter().position(|&c| c == b'\r')? + i;
        if j + 1 < buf.len() {
            if buf[j + 1] == b'\n' {
                return Some(j);
            }
            i = j + 1;
        } else {
            return None;
        }
    }
    None
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline line into arguments like Redis's `sdssplitargs`, unescaping quoted
/// arguments in place. The write cursor never passes the read cursor.
pub fn split_args_in_place(line: &mut [u8], out: &mut Vec<Span>) -> Result<(), ProtocolError> {
    let n = line.len();
    let mut r = 0;
    loop {
        while r < n && is_space(line[r]) {
            r += 1;
        }
        if r >= n {
            return Ok(());
        }
        let start = r;
        let mut w = r;
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if r >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[r];
                if c == b'\\' && r + 3 < n && line[r + 1] == b'x' {
                    if let (Some(h), Some(l)) = (hex_val(line[r + 2]), hex_val(line[r + 3])) {
                        line[w] = h * 16 + l;
                        w += 1;
                        r += 4;
                        continue;
                    }
                }
                if c == b'\\' && r + 1 < n {
                    line[w] = match line[r + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    };
                    w += 1;
                    r += 2;
                } else if c == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if r + 1 < n && !is_space(line[r + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    r += 1;
                    break;
                } else {
                    line[w] = c;
                    w += 1;
                    r += 1;
                }
            } else if in_sq {
                if r >= n {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                let c = line[r];
                if c == b'\\' && r + 1 < n && line[r + 1] == b'\'' {
                    line[w] = b'\'';
                    w += 1;
                    r += 2;
                } else if c == b'\'' {
                    if r + 1 < n && !is_space(line[r + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    r += 1;
                    break;
                } else {
                    line[w] = c;
                    w += 1;
                    r += 1;
                }
            } else {
                if r >= n {
                    break;
                }
                match line[r] {
                    c if is_space(c) => break,
                    b'"' => {
                        in_dq = true;
                        r += 1;
                    }
                    b'\'' => {
                        in_sq = true;
                        r += 1;
                    }
                    c => {
                        line[w] = c;
                        w += 1;
                        r += 1;
                    }
                }
            }
        }
        out.push(Span {
            start,
            len: w - start,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut buf = input.to_vec();
        let mut d = RequestDecoder::new(Limits::default());
        let mut at = 0;
        let mut cmds = Vec::new();
        loop {
            match d.decode(&mut buf[at..])? {
                Decoded::Command { consumed } => {
                    let frame = &buf[at..at + consumed];
                    cmds.push(d.args().iter().map(|s| s.of(frame).to_vec()).collect());
                    at += consumed;
                }
                Decoded::Empty { consumed } => at += consumed,
                Decoded::Incomplete { .. } => return Ok(cmds),
            }
        }
    }

    fn one(input: &[u8]) -> Vec<Vec<u8>> {
        let mut v = decode_all(input).unwrap();
        assert_eq!(
            v.len(),
            1,
            "expected one command from {:?}",
            String::from_utf8_lossy(input)
        );
        v.remove(0)
    }

    #[test]
    fn multibulk() {
        assert_eq!(
            one(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            vec![b"GET".to_vec(), b"k".to_vec()]
        );
        assert_eq!(one(b"*1\r\n$0\r\n\r\n"), vec![b"".to_vec()]);
        assert_eq!(one(b"*1\r\n$4\r\na\r\nb\r\n"), vec![b"a\r\nb".to_vec()]);
    }

    #[test]
    fn pipeline_and_empty_frames() {
        let cmds = decode_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n\r\n*1\r\n$4\r\nPING\r\nPING\r\n")
            .unwrap();
        assert_eq!(cmds.len(), 3);
    }

    #[test]
    fn empty_frames_leave_no_stale_arguments() {
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = b"*1\r\n$4\r\nPING\r\n*0\r\n".to_vec();
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Decoded::Command { consumed: 14 }
        );
        assert_eq!(d.args().len(), 1);
        assert_eq!(
            d.decode(&mut buf[14..]).unwrap(),
            Decoded::Empty { consumed: 4 }
        );
        assert!(d.args().is_empty());
    }

    #[test]
    fn incomplete_reports_need() {
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = b"*1\r\n$10\r\nabc".to_vec();
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Decoded::Incomplete { need: 4 + 5 + 12 }
        );
        buf.extend_from_slice(b"defghij\r\n");
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Decoded::Command {
                consumed: buf.len()
            }
        );
    }

    #[test]
    fn errors_match_redis() {
        assert_eq!(
            decode_all(b"*x\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            decode_all(b"*2147483648\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n$-1\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n$536870913\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n:1\r\n"),
            Err(ProtocolError::ExpectedDollar(b':'))
        );
        assert_eq!(
            decode_all(b"GET \"k\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'x').message(),
            "ERR Protocol error: expected '$', got 'x'"
        );
        let big = vec![b'a'; INLINE_MAX_SIZE + 1];
        assert_eq!(decode_all(&big), Err(ProtocolError::TooBigInline));
        let mut big = b"*".to_vec();
        big.extend(std::iter::repeat_n(b'1', INLINE_MAX_SIZE + 1));
        assert_eq!(decode_all(&big), Err(ProtocolError::TooBigMbulkCount));
    }

    /// Redis 7.0's `processMultibulkBuffer`: before AUTH (when a password is required) a
    /// count above 10 or a bulk above 16384 bytes has its own error, checked after the
    /// checks that apply to everyone.
    #[test]
    fn unauthenticated_limits() {
        let unauth = || {
            RequestDecoder::new(Limits {
                authenticated: false,
                ..Limits::default()
            })
        };
        let cases: &[(&[u8], ProtocolError, &str)] = &[
            (
                b"*11\r\n",
                ProtocolError::UnauthenticatedMultibulkLength,
                "ERR Protocol error: unauthenticated multibulk length",
            ),
            (
                b"*2147483648\r\n",
                ProtocolError::InvalidMultibulkLength,
                "ERR Protocol error: invalid multibulk length",
            ),
            (
                b"*1\r\n$16385\r\n",
                ProtocolError::UnauthenticatedBulkLength,
                "ERR Protocol error: unauthenticated bulk length",
            ),
            (
                b"*1\r\n$536870913\r\n",
                ProtocolError::InvalidBulkLength,
                "ERR Protocol error: invalid bulk length",
            ),
        ];
        for (input, want, text) in cases {
            let got = unauth().decode(&mut input.to_vec());
            assert_eq!(got, Err(*want), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(want.message(), *text);
        }
        assert_eq!(
            unauth().decode(&mut b"*10\r\n$16384\r\n".to_vec()),
            Ok(Decoded::Incomplete {
                need: 5 + 8 + 16386
            })
        );
    }

    /// Authenticated clients may declare up to INT_MAX arguments, as Redis 7.0 allows.
    #[test]
    fn counts_above_a_million_are_accepted() {
        let n = 1024 * 1024 + 1;
        let mut buf = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            buf.extend_from_slice(b"$1\r\na\r\n");
        }
        let mut d = RequestDecoder::new(Limits::default());
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Command {
                consumed: buf.len()
            })
        );
        assert_eq!(d.args().len(), n);
        // The next (small) request does not keep the vector the big one needed.
        assert_eq!(
            d.decode(&mut b"*1\r\n$4\r\nPING\r\n".to_vec()),
            Ok(Decoded::Command { consumed: 14 })
        );
        assert!(d.args.capacity() <= ARGS_KEEP, "{}", d.args.capacity());
    }

    /// A declared count costs nothing until its arguments arrive.
    #[test]
    fn declared_count_allocates_nothing() {
        let mut d = RequestDecoder::new(Limits::default());
        let mut buf = b"*2147483647\r\n".to_vec();
        assert_eq!(d.decode(&mut buf), Ok(Decoded::Incomplete { need: 14 }));
        assert!(d.args.capacity() <= ARGS_KEEP, "{}", d.args.capacity());
        // Arguments that do arrive are decoded as usual; the frame stays incomplete.
        buf.extend_from_slice(b"$3\r\nSET\r\n$1\r\nk\r\n");
        assert_eq!(d.decode(&mut buf), Ok(Decoded::Incomplete { need: 30 }));
        assert_eq!(d.args().len(), 2);
        assert!(d.args.capacity() <= ARGS_KEEP, "{}", d.args.capacity());
    }

    #[test]
    fn inline_commands() {
        assert_eq!(
            one(b"SET k v\r\n"),
            vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]
        );
        assert_eq!(one(b"  GET   k  \n"), vec![b"GET".to_vec(), b"k".to_vec()]);
        assert_eq!(
            one(b"SET \"a b\\x41\\n\" 'it\\'s'\r\n"),
            vec![b"SET".to_vec(), b"a bA\n".to_vec(), b"it's".to_vec()]
        );
        assert_eq!(one(b"ECHO \"\"\r\n"), vec![b"ECHO".to_vec(), b"".to_vec()]);
        assert_eq!(decode_all(b"\r\n\n").unwrap().len(), 0);
        assert_eq!(
            decode_all(b"SET \"a\"b\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }
}
