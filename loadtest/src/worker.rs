//! One load-generating thread: its connections, one io_uring, one loop.
//!
//! Each loop turn: build the requests that are due into each connection's send buffer, start
//! one send per connection that has bytes and no send in flight, enter the kernel once to
//! submit everything and wait (with a timeout), then reap every completion. Receives are
//! multishot into provided buffers, so a connection's receive is armed once, not per reply.
//!
//! Closed loop (default): a connection keeps `pipeline` requests in flight; each reply lets
//! one more go. Latency is measured from the turn the request was built in.
//! Open loop (`--rate`): request k of a connection is *due* at `offset + k × interval`
//! whether or not earlier ones were answered; at most `pipeline` are in flight, and latency
//! is measured from the due time, so a stalled server shows up as latency instead of as
//! requests that were never sent (coordinated omission).
//!
//! Steady state allocates nothing: send buffers, reply accumulators and in-flight queues grow
//! to their working size in the first turns and are reused.

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};
use percore_proto::{scan_reply, ReplyKind};

use crate::config::{Config, Length};
use crate::keys::{Op, Workload};
use crate::stats::Stats;
use crate::uring::{BufRing, Ring};

/// Counters the main thread reads for the progress line; written once per loop turn.
#[derive(Default)]
pub struct Progress {
    pub ops: AtomicU64,
    pub latency_ns_sum: AtomicU64,
}

const RECV: u64 = 1;
const SEND: u64 = 2;
/// Receive buffer size: a provided buffer, or a connection's own buffer without multishot.
const RECV_BUF: usize = 16 * 1024;
/// How long a finished run waits for replies still in flight.
const DRAIN: Duration = Duration::from_secs(3);
/// Longest single wait in the kernel, so the deadline and the stop flag are noticed.
const TICK: Duration = Duration::from_millis(50);
/// Open loop: a request due sooner than this is waited for by polling, not by a kernel
/// timer. Timer wake-ups run late by tens of microseconds (more in a VM), and since latency
/// is measured from the due time that lateness would be reported as server latency; a
/// short timer per request also costs more CPU than the request. Polling keeps the
/// generator's own delay in the single microseconds at the price of a busy core.
const SPIN: Duration = Duration::from_micros(100);

struct Conn {
    stream: TcpStream,
    work: Workload,
    /// Requests built but not yet handed to the kernel.
    tx: Vec<u8>,
    /// The bytes of the send in flight; untouched until its completion.
    tx_inflight: Vec<u8>,
    tx_done: usize,
    sending: bool,
    recv_armed: bool,
    /// One-shot receive target when multishot is not used.
    rbuf: Vec<u8>,
    /// A reply split across receives.
    partial: Vec<u8>,
    /// (start time ns, command) of each request in flight, oldest first.
    inflight: VecDeque<(u64, Op)>,
    issued: u64,
    limit: Option<u64>,
    /// Open loop: the first request's due time and how many are already due-and-built.
    due_offset_ns: f64,
    dead: bool,
    /// Queued in `touched` this turn.
    touched: bool,
}

pub struct Worker<'a> {
    cfg: &'a Config,
    conns: Vec<Conn>,
    /// Declared before `bufs`: the ring (and its registration) goes first when dropped.
    ring: Ring,
    bufs: Option<BufRing>,
    value: Vec<u8>,
    interval_ns: f64,
    /// Submitted operations whose last completion has not been reaped.
    ops_in_kernel: usize,
    touched: Vec<usize>,
    pub stats: Stats,
    clock: Instant,
    /// `--slow` in ns.
    slow_ns: Option<u64>,
}

fn user_data(conn: usize, op: u64) -> u64 {
    ((conn as u64) << 8) | op
}

impl<'a> Worker<'a> {
    /// `streams` are this thread's connected sockets; `first` is the global index of the
    /// first of them (for key partitioning and seeds). `clock` is the run's common start.
    pub fn new(
        cfg: &'a Config,
        streams: Vec<TcpStream>,
        first: usize,
        clock: Instant,
    ) -> io::Result<Worker<'a>> {
        let n = streams.len();
        let total = cfg.connections();
        let entries = (n * 2 + 16).next_power_of_two().clamp(64, 32768) as u32;
        let ring = Ring::new(entries)?;
        let bufs = if cfg.multishot {
            let count = (n * 4).next_power_of_two().clamp(64, 32768) as u16;
            match BufRing::register(&ring.ring, 1, count, RECV_BUF) {
                Ok(b) => Some(b),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let interval_ns = cfg.rate.map_or(0.0, |r| total as f64 / r * 1e9);
        let conns = streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                let g = first + i;
                let work = Workload::new(cfg, g, total);
                Conn {
                    stream,
                    limit: work.request_limit(cfg.length),
                    work,
                    tx: Vec::new(),
                    tx_inflight: Vec::new(),
                    tx_done: 0,
                    sending: false,
                    recv_armed: false,
                    rbuf: if bufs.is_none() {
                        vec![0; RECV_BUF]
                    } else {
                        Vec::new()
                    },
                    partial: Vec::new(),
                    inflight: VecDeque::with_capacity(cfg.pipeline),
                    issued: 0,
                    // Spread the connections' schedules evenly over one interval.
                    due_offset_ns: interval_ns * g as f64 / total as f64,
                    dead: false,
                    touched: false,
                }
            })
            .collect();
        let mut value = vec![0u8; cfg.data_size];
        for (i, b) in value.iter_mut().enumerate() {
            *b = b'a' + (i % 26) as u8;
        }
        Ok(Worker {
            cfg,
            conns,
            ring,
            bufs,
            value,
            interval_ns,
            ops_in_kernel: 0,
            touched: Vec::new(),
            stats: Stats::with_slow_list(cfg.slow.is_some()),
            clock,
            slow_ns: cfg.slow.map(|d| d.as_nanos() as u64),
        })
    }

    /// "single-issuer+defer-taskrun, multishot" and the like.
    pub fn io_mode(&self) -> String {
        format!(
            "{}, {}",
            self.ring.mode,
            if self.bufs.is_some() {
                "multishot recv + provided buffers"
            } else {
                "one-shot recv"
            }
        )
    }

    fn now_ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    fn touch(&mut self, i: usize) {
        if !self.conns[i].touched {
            self.conns[i].touched = true;
            self.touched.push(i);
        }
    }

    fn fail(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        c.dead = true;
        self.stats.connection_errors += 1;
        self.stats.unanswered += c.inflight.len() as u64;
        c.inflight.clear();
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some(format!("connection {i}: {why}"));
        }
    }

    fn arm_recv(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        if c.dead || c.recv_armed {
            return Ok(());
        }
        let fd = types::Fd(c.stream.as_raw_fd());
        let entry = match &self.bufs {
            Some(b) => opcode::RecvMulti::new(fd, b.bgid).build(),
            None => opcode::Recv::new(fd, c.rbuf.as_mut_ptr(), c.rbuf.len() as u32).build(),
        }
        .user_data(user_data(i, RECV));
        c.recv_armed = true;
        self.ops_in_kernel += 1;
        // SAFETY: the socket and `rbuf` (or the provided buffers) belong to this worker and
        // are neither dropped nor resized before `finish` has reaped every completion.
        unsafe { self.ring.push(&entry) }
    }

    fn start_send(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        if c.dead || c.sending || c.tx.is_empty() {
            return Ok(());
        }
        std::mem::swap(&mut c.tx, &mut c.tx_inflight);
        c.tx_done = 0;
        self.push_send(i)
    }

    fn push_send(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        let rest = &c.tx_inflight[c.tx_done..];
        let entry = opcode::Send::new(
            types::Fd(c.stream.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data(i, SEND));
        c.sending = true;
        self.ops_in_kernel += 1;
        // SAFETY: `tx_inflight` is not touched while `sending` is set, and the worker reaps
        // the completion before dropping it.
        unsafe { self.ring.push(&entry) }
    }

    /// Builds one request into the connection's send buffer.
    fn issue(&mut self, i: usize, start_ns: u64) {
        let c = &mut self.conns[i];
        let (op, key) = c.work.next();
        let prefix = self.cfg.key_prefix.as_bytes();
        let mut digits = itoa::Buffer::new();
        let key = digits.format(key).as_bytes();
        let mut len = itoa::Buffer::new();
        let buf = &mut c.tx;
        buf.extend_from_slice(match op {
            Op::Set => b"*3\r\n$3\r\nSET\r\n$",
            Op::Get => b"*2\r\n$3\r\nGET\r\n$",
        });
        buf.extend_from_slice(len.format(prefix.len() + key.len()).as_bytes());
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(key);
        buf.extend_from_slice(b"\r\n");
        if op == Op::Set {
            buf.push(b'$');
            buf.extend_from_slice(len.format(self.value.len()).as_bytes());
            buf.extend_from_slice(b"\r\n");
            buf.extend_from_slice(&self.value);
            buf.extend_from_slice(b"\r\n");
        }
        c.inflight.push_back((start_ns, op));
        c.issued += 1;
    }

    fn may_issue(&self, i: usize) -> bool {
        let c = &self.conns[i];
        !c.dead && c.inflight.len() < self.cfg.pipeline && c.limit.is_none_or(|l| c.issued < l)
    }

    /// Open loop: the due time of the connection's next request.
    fn next_due_ns(&self, i: usize) -> u64 {
        let c = &self.conns[i];
        (c.due_offset_ns + c.issued as f64 * self.interval_ns) as u64
    }

    /// Parses every complete reply in `data` for connection `i`; returns bytes consumed.
    fn on_replies(&mut self, i: usize, data: &[u8], now: u64) -> Result<usize, String> {
        let mut at = 0;
        let c = &mut self.conns[i];
        loop {
            match scan_reply(&data[at..]) {
                Ok(Some((len, kind))) => {
                    let (start, op) = c
                        .inflight
                        .pop_front()
                        .ok_or_else(|| "a reply arrived with no request in flight".to_string())?;
                    let latency = now.saturating_sub(start);
                    self.stats.record(op, latency, kind);
                    if self.slow_ns.is_some_and(|t| latency >= t) {
                        self.stats.note_slow(start, latency);
                    }
                    if kind == ReplyKind::Error && self.stats.first_error.is_none() {
                        let text = &data[at + 1..at + len - 2];
                        self.stats.first_error = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    at += len;
                }
                Ok(None) => return Ok(at),
                Err(e) => return Err(format!("malformed reply: {e:?}")),
            }
        }
    }

    fn on_data(&mut self, i: usize, data: &[u8], now: u64) {
        self.stats.bytes_received += data.len() as u64;
        let result = if self.conns[i].partial.is_empty() {
            self.on_replies(i, data, now).map(|used| {
                self.conns[i].partial.extend_from_slice(&data[used..]);
            })
        } else {
            let mut partial = std::mem::take(&mut self.conns[i].partial);
            partial.extend_from_slice(data);
            let r = self.on_replies(i, &partial, now).map(|used| {
                partial.drain(..used);
            });
            self.conns[i].partial = partial;
            r
        };
        match result {
            Ok(()) => self.touch(i),
            Err(e) => self.fail(i, e),
        }
    }

    fn on_completion(&mut self, cqe: cqueue::Entry, now: u64, finishing: bool) -> io::Result<()> {
        let i = (cqe.user_data() >> 8) as usize;
        let res = cqe.result();
        match cqe.user_data() & 0xff {
            RECV => {
                let last = self.bufs.is_none() || !cqueue::more(cqe.flags());
                if last {
                    self.ops_in_kernel -= 1;
                    self.conns[i].recv_armed = false;
                }
                if res > 0 {
                    let len = res as usize;
                    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                        let mut bufs = self.bufs.take().expect("provided buffers in use");
                        let Some(data) = bufs.data(bid, len) else {
                            self.bufs = Some(bufs);
                            return Err(io::Error::other(
                                "the kernel named a receive buffer outside the ring",
                            ));
                        };
                        self.on_data(i, data, now);
                        bufs.recycle(bid);
                        self.bufs = Some(bufs);
                    } else {
                        let rbuf = std::mem::take(&mut self.conns[i].rbuf);
                        self.on_data(i, &rbuf[..len], now);
                        self.conns[i].rbuf = rbuf;
                    }
                    if last && !finishing {
                        self.arm_recv(i)?;
                    }
                } else if res == -libc::ENOBUFS {
                    // Every provided buffer was in use; they are back now.
                    if !finishing {
                        self.arm_recv(i)?;
                    }
                } else if !finishing {
                    let why = if res == 0 {
                        "the server closed the connection".to_string()
                    } else {
                        io::Error::from_raw_os_error(-res).to_string()
                    };
                    self.fail(i, why);
                }
            }
            SEND => {
                self.ops_in_kernel -= 1;
                let c = &mut self.conns[i];
                c.sending = false;
                if res < 0 {
                    if !finishing {
                        self.fail(i, io::Error::from_raw_os_error(-res).to_string());
                    }
                    return Ok(());
                }
                self.stats.bytes_sent += res as u64;
                c.tx_done += res as usize;
                if c.tx_done < c.tx_inflight.len() {
                    if !c.dead {
                        self.push_send(i)?;
                    }
                } else {
                    c.tx_inflight.clear();
                    self.touch(i);
                }
            }
            other => unreachable!("user data kind {other} is never submitted"),
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.ring.wait(timeout)
    }

    /// Submits what is queued and takes what has completed, without waiting.
    fn poll(&mut self) -> io::Result<()> {
        let queued = self.ring.ring.submission().len() as u32;
        // SAFETY: IORING_ENTER_GETEVENTS (1) with no minimum and no argument only submits the
        // queued entries, whose buffers the callers keep alive, and posts completions.
        unsafe {
            self.ring
                .ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, 1, None)?;
        }
        Ok(())
    }

    fn reap(&mut self, finishing: bool) -> io::Result<()> {
        let now = self.now_ns();
        loop {
            let Some(cqe) = self.ring.ring.completion().next() else {
                return Ok(());
            };
            self.on_completion(cqe, now, finishing)?;
        }
    }

    fn alive(&self) -> bool {
        self.conns.iter().any(|c| !c.dead)
    }

    /// Runs until the configured length, `stop`, or every connection failing; returns the
    /// seconds of measurement. `progress` is updated once per turn.
    pub fn run(&mut self, stop: &AtomicBool, progress: &Progress) -> io::Result<f64> {
        let open_loop = self.cfg.rate.is_some();
        let deadline = match self.cfg.length {
            Length::Time(d) => Some(d.as_nanos() as u64),
            _ => None,
        };
        for i in 0..self.conns.len() {
            self.arm_recv(i)?;
            self.touch(i);
        }
        loop {
            let now = self.now_ns();
            let over = stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d);
            if !over {
                if open_loop {
                    for i in 0..self.conns.len() {
                        while self.may_issue(i) && self.next_due_ns(i) <= now {
                            let due = self.next_due_ns(i);
                            self.issue(i, due);
                        }
                        self.start_send(i)?;
                    }
                } else {
                    let touched = std::mem::take(&mut self.touched);
                    for &i in &touched {
                        while self.may_issue(i) {
                            self.issue(i, now);
                        }
                    }
                    self.touched = touched;
                }
            }
            let touched = std::mem::take(&mut self.touched);
            for &i in &touched {
                self.conns[i].touched = false;
                self.start_send(i)?;
            }
            self.touched = touched;
            self.touched.clear();

            progress.ops.store(self.stats.replies, Ordering::Relaxed);
            progress
                .latency_ns_sum
                .store(self.stats.latency_ns_sum, Ordering::Relaxed);

            let idle = self.conns.iter().all(|c| {
                c.dead
                    || (c.inflight.is_empty() && (over || c.limit.is_some_and(|l| c.issued >= l)))
            });
            if idle || !self.alive() {
                break;
            }
            if over && deadline.is_some_and(|d| now >= d + DRAIN.as_nanos() as u64) {
                break;
            }
            if open_loop && !over {
                let next = (0..self.conns.len())
                    .filter(|&i| self.may_issue(i))
                    .map(|i| self.next_due_ns(i))
                    .min()
                    .unwrap_or(now + TICK.as_nanos() as u64);
                let ahead = Duration::from_nanos(next.saturating_sub(self.now_ns()));
                if ahead > SPIN * 2 {
                    self.wait((ahead - SPIN).min(TICK))?;
                } else {
                    self.poll()?;
                }
            } else {
                self.wait(TICK)?;
            }
            self.reap(false)?;
        }
        // A timed run is measured over its set length (like memtier's) unless it ended early.
        let secs = match deadline {
            Some(d) => self.now_ns().min(d) as f64 / 1e9,
            None => self.now_ns() as f64 / 1e9,
        };
        self.finish()?;
        Ok(secs)
    }

    /// Closes the connections and reaps every operation still in the kernel, so no buffer is
    /// freed while the kernel may use it.
    fn finish(&mut self) -> io::Result<()> {
        for c in &mut self.conns {
            self.stats.unanswered += c.inflight.len() as u64;
            c.inflight.clear();
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        let give_up = Instant::now() + Duration::from_secs(5);
        while self.ops_in_kernel > 0 {
            if Instant::now() > give_up {
                // The kernel still holds buffers: never free them under it.
                std::mem::forget(self.bufs.take());
                for c in &mut self.conns {
                    std::mem::forget(std::mem::take(&mut c.rbuf));
                    std::mem::forget(std::mem::take(&mut c.tx_inflight));
                }
                return Ok(());
            }
            self.wait(TICK)?;
            self.reap(true)?;
        }
        Ok(())
    }
}
