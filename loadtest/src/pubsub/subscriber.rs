//! One subscriber thread: many subscribed connections on one io_uring, each with a multishot
//! receive into a shared ring of provided buffers (as the request load's worker), so a
//! thread holds thousands of subscribers with one kernel entry per loop turn.
//!
//! Every message is checked as it arrives (its channel is one the connection holds, its
//! payload is one a publisher wrote, its sequence number is the next of its (publisher,
//! channel)) and its delivery latency recorded from its send stamp. The thread ends when the
//! publishers are done and every promised delivery has arrived (over all threads), after
//! `DRAIN` past the publishers' end, or on `stop`.
//!
//! Memory: two provided buffers per connection (so a message reaching every subscriber at
//! once does not run the ring dry, which ends multishot receives with ENOBUFS), 16 KB each
//! for up to 256 connections and 4 KB beyond, at most 8,192 of them: 32 MB at the most. A
//! message split across receives waits in its connection's `partial` buffer.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{cqueue, opcode, types};
use percore_proto::scan_reply;

use super::order::{decode_payload, push_parts, Layout, Order, Verdict};
use super::publisher::Shared;
use crate::stats::histogram;
use crate::uring::{BufRing, Ring};

/// Provided buffers for `conns` connections: (count, size).
fn buffers_for(conns: usize) -> (u16, usize) {
    let count = (conns * 2).next_power_of_two().clamp(256, 8192) as u16;
    let size = if conns <= 256 { 16 * 1024 } else { 4 * 1024 };
    (count, size)
}
/// How long the thread waits past the publishers' end for deliveries still on their way.
const DRAIN: Duration = Duration::from_secs(3);
const TICK: Duration = Duration::from_millis(20);

/// One subscribed connection.
pub struct Subscriber {
    pub stream: TcpStream,
    /// The subscriber's number in the layout.
    pub index: usize,
}

struct Conn {
    stream: TcpStream,
    index: usize,
    partial: Vec<u8>,
    order: Order,
    armed: bool,
    dead: bool,
}

/// What one thread saw.
pub struct Delivered {
    /// Delivery latency in ns.
    pub latency: Histogram<u64>,
    /// Each subscriber's number and sequence checker.
    pub orders: Vec<(usize, Order)>,
    /// Messages on a channel their connection does not hold.
    pub misrouted: u64,
    /// Frames that are not a message a publisher of this run wrote.
    pub malformed: u64,
    pub connection_errors: u64,
    pub first_error: Option<String>,
    /// When the last message arrived, in ns from the run's start.
    pub last_ns: u64,
    pub bytes_received: u64,
}

struct Thread<'a> {
    layout: Layout,
    prefix: &'a [u8],
    publishers: usize,
    conns: Vec<Conn>,
    /// Declared before `bufs`: the ring (and its registration) goes first when dropped.
    ring: Ring,
    bufs: BufRing,
    ops_in_kernel: usize,
    out: Delivered,
    clock: Instant,
}

/// Runs one subscriber thread over `subs` until the run is over (see the module header).
pub fn run(
    layout: Layout,
    prefix: &str,
    publishers: usize,
    subs: Vec<Subscriber>,
    shared: &Shared,
    clock: Instant,
) -> io::Result<Delivered> {
    let entries = (subs.len() + 16).next_power_of_two().clamp(64, 32768) as u32;
    let ring = Ring::new(entries)?;
    let (count, size) = buffers_for(subs.len());
    let bufs = BufRing::register(&ring.ring, 1, count, size)?;
    let conns = subs
        .into_iter()
        .map(|s| Conn {
            stream: s.stream,
            index: s.index,
            partial: Vec::new(),
            order: Order::new(layout.per_subscriber, publishers),
            armed: false,
            dead: false,
        })
        .collect();
    let mut t = Thread {
        layout,
        prefix: prefix.as_bytes(),
        publishers,
        conns,
        ring,
        bufs,
        ops_in_kernel: 0,
        out: Delivered {
            latency: histogram(),
            orders: Vec::new(),
            misrouted: 0,
            malformed: 0,
            connection_errors: 0,
            first_error: None,
            last_ns: 0,
            bytes_received: 0,
        },
        clock,
    };
    let r = t.run(shared);
    if let Err(e) = t.finish() {
        // The kernel may still write into the provided buffers: never free them under it.
        std::mem::forget(t);
        return Err(e);
    }
    r?;
    t.out.orders = t.conns.into_iter().map(|c| (c.index, c.order)).collect();
    Ok(t.out)
}

impl Thread<'_> {
    fn arm(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        if c.dead || c.armed {
            return Ok(());
        }
        let entry = opcode::RecvMulti::new(types::Fd(c.stream.as_raw_fd()), self.bufs.bgid)
            .build()
            .user_data(i as u64);
        c.armed = true;
        self.ops_in_kernel += 1;
        // SAFETY: the socket and the provided buffers belong to this thread and are dropped
        // only after `finish` has reaped every completion.
        unsafe { self.ring.push(&entry) }
    }

    fn fail(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        c.dead = true;
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        self.out.connection_errors += 1;
        if self.out.first_error.is_none() {
            self.out.first_error = Some(format!("subscriber {}: {why}", c.index));
        }
    }

    fn run(&mut self, shared: &Shared) -> io::Result<()> {
        for i in 0..self.conns.len() {
            self.arm(i)?;
        }
        let mut drain_from: Option<Instant> = None;
        loop {
            self.ring.wait(TICK)?;
            let received = self.reap(false)?;
            shared.delivered.fetch_add(received, Ordering::AcqRel);
            if shared.stop.load(Ordering::Relaxed) || self.conns.iter().all(|c| c.dead) {
                return Ok(());
            }
            if shared.publishing.load(Ordering::Acquire) == 0 {
                if shared.outstanding() == 0 {
                    return Ok(());
                }
                if drain_from.get_or_insert_with(Instant::now).elapsed() > DRAIN {
                    return Ok(());
                }
            }
        }
    }

    /// Handles every completion there is; returns the messages received.
    fn reap(&mut self, finishing: bool) -> io::Result<u64> {
        let mut received = 0;
        loop {
            let Some(cqe) = self.ring.ring.completion().next() else {
                return Ok(received);
            };
            let i = cqe.user_data() as usize;
            let res = cqe.result();
            let last = !cqueue::more(cqe.flags());
            if last {
                self.ops_in_kernel -= 1;
                self.conns[i].armed = false;
            }
            if res > 0 {
                let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
                    return Err(io::Error::other("a multishot receive without a buffer"));
                };
                let now = self.clock.elapsed().as_nanos() as u64;
                let mut partial = std::mem::take(&mut self.conns[i].partial);
                let Some(data) = self.bufs.data(bid, res as usize) else {
                    return Err(io::Error::other(
                        "the kernel named a receive buffer outside the ring",
                    ));
                };
                partial.extend_from_slice(data);
                self.bufs.recycle(bid);
                self.out.bytes_received += res as u64;
                match self.on_frames(i, &partial, now) {
                    Ok((used, n)) => {
                        partial.drain(..used);
                        received += n;
                    }
                    Err(e) => self.fail(i, e),
                }
                self.conns[i].partial = partial;
            } else if res == -libc::ENOBUFS || finishing {
                // Every provided buffer was in use (they are back now), or the run is over.
            } else {
                let why = if res == 0 {
                    "the server closed the connection".to_string()
                } else {
                    io::Error::from_raw_os_error(-res).to_string()
                };
                self.fail(i, why);
            }
            if last && !finishing {
                self.arm(i)?;
            }
        }
    }

    /// Checks every complete frame in `data` for connection `i`; returns the bytes used and
    /// the messages delivered (first arrivals on a channel it holds, from a publisher of this
    /// run).
    /// Bytes that are not RESP are an error for the connection.
    fn on_frames(&mut self, i: usize, data: &[u8], now: u64) -> Result<(usize, u64), String> {
        let mut at = 0;
        let mut n = 0;
        loop {
            let len = match scan_reply(&data[at..]) {
                Ok(Some((len, _))) => len,
                Ok(None) => return Ok((at, n)),
                Err(e) => return Err(format!("malformed reply: {e:?}")),
            };
            let frame = &data[at..at + len];
            at += len;
            let Some((b"message", channel, payload)) = push_parts(frame) else {
                self.note_malformed(i, frame);
                continue;
            };
            let c = channel
                .strip_prefix(self.prefix)
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok());
            let conn = &mut self.conns[i];
            let Some(slot) = c.and_then(|c| self.layout.slot_of(conn.index, c)) else {
                self.out.misrouted += 1;
                continue;
            };
            let Some(stamp) = decode_payload(payload).filter(|s| s.publisher < self.publishers)
            else {
                self.note_malformed(i, frame);
                continue;
            };
            // Only first arrivals of this run's messages on a held channel count as
            // deliveries: a stray or a duplicate must not end the wait for the real ones.
            if conn.order.record(slot, stamp.publisher, stamp.seq) != Some(Verdict::Late) {
                n += 1;
                self.out.last_ns = now;
            }
            self.out
                .latency
                .saturating_record(now.saturating_sub(stamp.sent_ns).max(1));
        }
    }

    fn note_malformed(&mut self, i: usize, frame: &[u8]) {
        self.out.malformed += 1;
        if self.out.first_error.is_none() {
            let shown = &frame[..frame.len().min(120)];
            self.out.first_error = Some(format!(
                "subscriber {}: unexpected frame {:?}",
                self.conns[i].index,
                String::from_utf8_lossy(shown)
            ));
        }
    }

    /// Closes the connections and reaps every receive still in the kernel, so no buffer is
    /// freed while the kernel may write into it.
    fn finish(&mut self) -> io::Result<()> {
        for c in &self.conns {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        let give_up = Instant::now() + Duration::from_secs(5);
        while self.ops_in_kernel > 0 {
            if Instant::now() > give_up {
                return Err(io::Error::other(
                    "receives still in the kernel 5 s after their sockets were shut down",
                ));
            }
            self.ring.wait(TICK)?;
            self.reap(true)?;
        }
        Ok(())
    }
}
