//! What the pub/sub load checks: which channels each subscriber holds, what a message says
//! about itself, and whether every subscriber got every message of its channels in order.
//!
//! Layout: subscriber `s` holds the `per_subscriber` (K) channels `(s·K + j) mod C` for
//! `j < K`, so 1,000 subscribers with K = 1 on C = 1 channel are 1 channel × 1,000
//! subscribers, and 10 subscribers with K = 1,000 on C = 1,000 channels are 1,000 channels ×
//! 10 subscribers. A channel's position `j` in its subscriber's list is its *slot*; finding it
//! is arithmetic, not a map lookup.
//!
//! A message's payload starts with `publisher:seq:sent_ns:` and is padded with `.` to the
//! asked size. `seq` counts the messages one publisher sent to one channel, from 0: Redis
//! delivers a channel's messages from one publisher in the order they were published, so a
//! subscriber must see 0, 1, 2, ... from each (publisher, channel). A higher number than
//! expected means the ones in between were skipped, counted lost (a skipped one that comes
//! later is counted reordered too); a lower one means a duplicate or a reorder.

/// Which subscriber holds which channels (see the module header).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub subscribers: usize,
    pub channels: usize,
    /// K: channels per subscriber, at most `channels`.
    pub per_subscriber: usize,
}

impl Layout {
    /// The channel in slot `j` of subscriber `s`.
    pub fn channel_of(&self, s: usize, j: usize) -> usize {
        (s * self.per_subscriber + j) % self.channels
    }

    /// The slot of channel `c` in subscriber `s`'s list, or None when `s` does not hold `c`.
    pub fn slot_of(&self, s: usize, c: usize) -> Option<usize> {
        if c >= self.channels {
            return None;
        }
        let first = (s * self.per_subscriber) % self.channels;
        let j = (c + self.channels - first) % self.channels;
        (j < self.per_subscriber).then_some(j)
    }

    /// How many subscribers hold each channel. O(subscribers × K).
    pub fn fanout(&self) -> Vec<u64> {
        let mut f = vec![0u64; self.channels];
        for s in 0..self.subscribers {
            for j in 0..self.per_subscriber {
                f[self.channel_of(s, j)] += 1;
            }
        }
        f
    }
}

/// A message payload's header fields.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stamp {
    pub publisher: usize,
    pub seq: u64,
    /// When it was sent (or, at a fixed rate, due), in ns from the run's start.
    pub sent_ns: u64,
}

/// Appends a payload of at least `size` bytes (longer only when the header does not fit).
pub fn encode_payload(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let start = out.len();
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(stamp.publisher).as_bytes());
    out.push(b':');
    out.extend_from_slice(n.format(stamp.seq).as_bytes());
    out.push(b':');
    out.extend_from_slice(n.format(stamp.sent_ns).as_bytes());
    out.push(b':');
    let written = out.len() - start;
    out.resize(out.len() + size.saturating_sub(written), b'.');
}

/// The length `encode_payload` gives for `stamp` at `size`, without writing it.
pub fn payload_len(stamp: Stamp, size: usize) -> usize {
    let mut n = itoa::Buffer::new();
    let header = n.format(stamp.publisher).len()
        + n.format(stamp.seq).len()
        + n.format(stamp.sent_ns).len()
        + 3;
    header.max(size)
}

fn number(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Reads a payload's header; None when it is not one `encode_payload` wrote.
pub fn decode_payload(p: &[u8]) -> Option<Stamp> {
    let mut parts = p.splitn(4, |&b| b == b':');
    let publisher = number(parts.next()?)? as usize;
    let seq = number(parts.next()?)?;
    let sent_ns = number(parts.next()?)?;
    parts.next()?;
    Some(Stamp {
        publisher,
        seq,
        sent_ns,
    })
}

/// Reads one bulk string `$n\r\n...\r\n` at the start of `b`; returns it and the rest.
fn bulk(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = b.strip_prefix(b"$")?;
    let eol = rest.windows(2).position(|w| w == b"\r\n")?;
    let len = number(&rest[..eol])? as usize;
    let body = rest.get(eol + 2..)?;
    if body.len() < len + 2 || &body[len..len + 2] != b"\r\n" {
        return None;
    }
    Some((&body[..len], &body[len + 2..]))
}

/// Splits one complete push frame (`*3` in RESP2, `>3` in RESP3) of three bulk strings into
/// (kind, channel, payload): `message` frames, and the `subscribe` confirmations' first two.
/// None for any other shape.
pub fn push_parts(frame: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let rest = frame
        .strip_prefix(b"*3\r\n")
        .or_else(|| frame.strip_prefix(b">3\r\n"))?;
    let (kind, rest) = bulk(rest)?;
    let (channel, rest) = bulk(rest)?;
    let (payload, _) = bulk(rest)?;
    Some((kind, channel, payload))
}

/// What one arriving message means for its (publisher, channel) sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// The next one expected.
    InOrder,
    /// This many messages before it never came.
    Gap(u64),
    /// Older than one already seen: a duplicate or a reorder.
    Late,
}

/// One subscriber's expectations: the next sequence number of each (slot, publisher), and
/// what went wrong so far.
#[derive(Clone, Debug, Default)]
pub struct Order {
    publishers: usize,
    next: Vec<u64>,
    pub received: u64,
    pub lost: u64,
    pub late: u64,
}

impl Order {
    pub fn new(slots: usize, publishers: usize) -> Order {
        Order {
            publishers,
            next: vec![0; slots * publishers],
            ..Order::default()
        }
    }

    /// Records message `seq` of `publisher` on the channel in `slot`; None when the slot or
    /// publisher is out of range. O(1), allocates nothing.
    pub fn record(&mut self, slot: usize, publisher: usize, seq: u64) -> Option<Verdict> {
        if publisher >= self.publishers {
            return None;
        }
        let next = self.next.get_mut(slot * self.publishers + publisher)?;
        self.received += 1;
        let v = if seq == *next {
            Verdict::InOrder
        } else if seq > *next {
            Verdict::Gap(seq - *next)
        } else {
            Verdict::Late
        };
        match v {
            Verdict::InOrder => *next += 1,
            Verdict::Gap(n) => {
                self.lost += n;
                *next = seq + 1;
            }
            Verdict::Late => self.late += 1,
        }
        Some(v)
    }

    /// At the end of the run: counts as lost every message published after the last one seen
    /// on each (slot, publisher); `published(slot, publisher)` says how many were sent there.
    /// Returns the total lost.
    pub fn finish(&mut self, published: impl Fn(usize, usize) -> u64) -> u64 {
        for (i, next) in self.next.iter().enumerate() {
            let (slot, publisher) = (i / self.publishers, i % self.publishers);
            self.lost += published(slot, publisher).saturating_sub(*next);
        }
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_give_the_two_scenarios() {
        let one = Layout {
            subscribers: 1000,
            channels: 1,
            per_subscriber: 1,
        };
        assert_eq!(one.fanout(), vec![1000]);
        assert_eq!(one.slot_of(999, 0), Some(0));
        let many = Layout {
            subscribers: 10,
            channels: 1000,
            per_subscriber: 1000,
        };
        assert!(many.fanout().iter().all(|&f| f == 10));
        assert_eq!(many.slot_of(3, 7), Some(7));
        // Ten per channel from 10,000 subscribers of one channel each.
        let spread = Layout {
            subscribers: 10_000,
            channels: 1000,
            per_subscriber: 1,
        };
        assert!(spread.fanout().iter().all(|&f| f == 10));
        assert_eq!(spread.slot_of(1234, 234), Some(0));
        assert_eq!(spread.slot_of(1234, 235), None);
        assert_eq!(spread.slot_of(1234, 5000), None, "no such channel");
    }

    #[test]
    fn slot_of_inverts_channel_of() {
        let l = Layout {
            subscribers: 7,
            channels: 5,
            per_subscriber: 3,
        };
        for s in 0..l.subscribers {
            let held: Vec<usize> = (0..3).map(|j| l.channel_of(s, j)).collect();
            for c in 0..l.channels {
                match l.slot_of(s, c) {
                    Some(j) => assert_eq!(held[j], c),
                    None => assert!(!held.contains(&c)),
                }
            }
        }
        assert_eq!(l.fanout().iter().sum::<u64>(), 21);
    }

    #[test]
    fn payloads_round_trip_at_their_size() {
        let stamp = Stamp {
            publisher: 2,
            seq: 12345,
            sent_ns: 987_654_321,
        };
        let mut out = b"x".to_vec();
        encode_payload(&mut out, stamp, 64);
        assert_eq!(out.len(), 65);
        assert_eq!(payload_len(stamp, 64), 64);
        assert!(out.starts_with(b"x2:12345:987654321:."));
        assert_eq!(decode_payload(&out[1..]), Some(stamp));
        // Too small a size: the header is kept whole.
        let mut short = Vec::new();
        encode_payload(&mut short, stamp, 4);
        assert_eq!(short, b"2:12345:987654321:");
        assert_eq!(payload_len(stamp, 4), short.len());
        assert_eq!(decode_payload(&short), Some(stamp));
        for bad in [&b""[..], b"1:2:3", b"a:2:3:", b"1::3:", b"-1:2:3:"] {
            assert_eq!(
                decode_payload(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn push_frames_split_into_their_parts() {
        let f = b"*3\r\n$7\r\nmessage\r\n$4\r\nch:0\r\n$5\r\nhello\r\n";
        assert_eq!(
            push_parts(f),
            Some((&b"message"[..], &b"ch:0"[..], &b"hello"[..]))
        );
        let f3 = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n";
        assert_eq!(push_parts(f3), Some((&b"message"[..], &b"c"[..], &b""[..])));
        // A subscribe confirmation's count is an integer, not a bulk string.
        assert_eq!(
            push_parts(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"),
            None
        );
        assert_eq!(
            push_parts(b"*3\r\n$7\r\nmessage\r\n$4\r\nch:0\r\n$9\r\nhi\r\n"),
            None
        );
        assert_eq!(push_parts(b"-ERR unknown command\r\n"), None);
    }

    #[test]
    fn in_order_streams_pass_and_every_fault_is_counted() {
        let mut o = Order::new(2, 2);
        // Two publishers interleaved on two channels: each (slot, publisher) counts alone.
        for seq in 0..5 {
            for slot in 0..2 {
                for p in 0..2 {
                    assert_eq!(o.record(slot, p, seq), Some(Verdict::InOrder));
                }
            }
        }
        assert_eq!(o.finish(|_, _| 5), 0);
        assert_eq!((o.received, o.lost, o.late), (20, 0, 0));

        let mut o = Order::new(1, 1);
        assert_eq!(o.record(0, 0, 0), Some(Verdict::InOrder));
        assert_eq!(o.record(0, 0, 3), Some(Verdict::Gap(2)), "1 and 2 lost");
        assert_eq!(
            o.record(0, 0, 2),
            Some(Verdict::Late),
            "2 after 3: reordered"
        );
        assert_eq!(
            o.record(0, 0, 3),
            Some(Verdict::Late),
            "3 twice: duplicated"
        );
        assert_eq!(o.record(0, 0, 4), Some(Verdict::InOrder));
        assert_eq!((o.lost, o.late), (2, 2));
        // Published 7: 5 and 6 never came.
        assert_eq!(o.finish(|_, _| 7), 4);
        assert_eq!(o.record(1, 0, 0), None, "no slot 1");
        assert_eq!(o.record(0, 1, 0), None, "no publisher 1");
    }

    #[test]
    fn a_subscriber_that_got_nothing_lost_everything() {
        let mut o = Order::new(3, 2);
        assert_eq!(
            o.finish(|slot, p| (slot * 10 + p) as u64),
            10 + 11 + 20 + 21 + 1
        );
    }
}
