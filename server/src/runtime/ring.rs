//! The network path: one io_uring ring per core, on the `io-uring` crate, for every socket
//! of that core (listeners, clients, metrics scrapes), beside glommio's own rings.
//!
//! Why. glommio 0.9's sockets are readiness-based: a `recv` syscall first, then a POLL_ADD
//! when it would block, and the executor re-arms its preemption timer (ASYNC_CANCEL +
//! TIMEOUT + a linked write) every loop turn. Measured at ~9 `io_uring_enter` per request at
//! pipeline 1 and 1.4–3× Redis's CPU per request (issue 14). Here a request costs a share of
//! one enter: the whole core's sends and receives of a loop turn go in and come out together.
//!
//! Operations:
//! - **accept**: multishot on the core's SO_REUSEPORT listener; accepted descriptors queue on
//!   the listener until `Listener::next` takes them.
//! - **receive**: multishot into a ring of provided buffers (one group per core). Each
//!   completion's bytes are appended to the connection's input and the buffer goes back to
//!   the kernel in the same turn, so the ring only needs as many buffers as completions can
//!   arrive between two turns. It holds that many and no more: it starts at 16, grows when
//!   the kernel runs out and is trimmed back as the core goes to sleep, at most once a
//!   second, when fewer were needed; buffers idle for a second give their pages back, so a
//!   core's resident buffers follow its load (`bufring`'s header; `used_memory` counts
//!   them). The input is a buffer taken from the core's pool when bytes arrive;
//!   [`RingStream::read_into`] hands it to the connection as it is (no copy) or appends it
//!   to a partial command's bytes and pools it, so a connection holds an input
//!   buffer only while it has unread bytes. Replies' buffers come from the same pool and go
//!   back to it when sent: an idle connection holds no buffer at all (10,000 idle
//!   connections: 6.6 KB each, Redis 9.8 KB; 14.9 KB when each held a 16 KiB read buffer
//!   and a reply buffer; the rest is mostly the connection task's own future, 6.5 KB). ENOBUFS (all buffers out) and any other end of a multishot
//!   re-arm it at the end of the turn: no read is ever lost. A connection whose unread input
//!   reaches [`INPUT_HIGH`] (it stopped reading: it is blocked writing to a slow reader) has
//!   its receive cancelled and re-armed when it has read down to [`INPUT_LOW`], so one
//!   client cannot take the buffers or the memory of the others.
//! - **send**: the connection hands its reply buffer over (a swap: no copy) and gets it back
//!   empty when the kernel has taken every byte ([`RingStream::send_owned`]), or, for a
//!   small reply, does not wait at all ([`RingStream::send_detached`]: the buffer goes to the
//!   pool when sent, and the next send waits for this one), which spares the connection's
//!   task a wake-up per reply. A short send is resumed from where it stopped. All sends of
//!   a loop turn go to the kernel in the turn's one enter.
//! - **large replies**: a reply of at least `zerocopy-send-min-bytes` (off by default)
//!   goes out with IORING_OP_SEND_ZC (Linux 6.2, for its usage report): the kernel sends
//!   from the reply buffer's pages instead of copying them. Once sent, the connection goes on
//!   with a new buffer and this one waits apart for the notification that the kernel let go
//!   of its pages (after the peer's acknowledgement); no other zero-copy send of the
//!   connection starts meanwhile. Where the kernel copies anyway (loopback and local
//!   sockets, a device without scatter-gather) the notification says so, and that
//!   connection sends plainly from then on. A refusal (not TCP; pages that cannot be pinned
//!   under RLIMIT_MEMLOCK) gets a plain send of the same bytes. Off by default: its gain
//!   needs a NIC to show, and every test and benchmark here runs on loopback.
//! - **direct descriptors**: a connection's socket is also put into the ring's table of
//!   registered files (Linux 6.13, see [`direct_table`]; by an IORING_OP_FILES_UPDATE queued with its
//!   first receive, so no system call of its own), and once the kernel has it there, sends
//!   and re-armed receives name it by index: no `fget`/`fput` of the socket's file per
//!   operation (0.79 % of the server's CPU before, 0.09 % after, at 30,000 requests/s:
//!   loadtest/results/2026-12-03/direct-descriptors.md). It leaves the table by
//!   another update queued as its descriptor is closed.
//! - **close**: dropping a stream cancels its receive; the descriptor is closed when its last
//!   operation has completed, so it is never reused while the kernel still names it.
//!
//! The ring is set up with SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG (6.1+): completions
//! are produced only when this thread enters the ring, and the kernel raises
//! IORING_SQ_TASKRUN in shared memory when it has some, so a turn enters the kernel only when
//! there is something to submit or to collect. COOP_TASKRUN (5.19) and then the default
//! mode are the fall-backs; the mode is logged. The ring's descriptor is registered
//! (IORING_REGISTER_RING_FDS, 5.18) so that enters skip the descriptor lookup; where the
//! kernel refuses, enters name the descriptor and the log says so.
//!
//! Sleeping. The driver task turns the ring while turns make progress, yielding to the
//! tasks it woke between two. When a turn finds nothing and no task of the core is
//! runnable, it sleeps in this ring: one enter waits for a completion, for the core's bell
//! (a read of `sched::Bell`'s eventfd, armed here: another thread woke a task) or for the
//! core's next timer. When other tasks are runnable or glommio has I/O in flight, it sleeps
//! in glommio instead: it enables the ring's registered eventfd (IORING_CQ_EVENTFD_DISABLED
//! cleared), checks once more, and waits on a read of that eventfd issued through glommio;
//! the kernel signals it when work arrives for this ring. While the driver runs the eventfd
//! stays disabled, so a busy core pays nothing for the bridge. A connection that queues a
//! send while the driver waits in glommio wakes it directly (no syscall).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};

use io_uring::types::{self, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};

use super::bufring::{self, BufRing};

/// Unread input at which a connection's receive is paused, and where it resumes.
pub const INPUT_HIGH: usize = 256 << 10;
pub const INPUT_LOW: usize = 64 << 10;
/// A drained buffer larger than this is released rather than kept in the core's pool
/// (input buffers may be kept apart, as streaming buffers: [`STREAM_BYTES`]).
const INPUT_KEEP: usize = 64 << 10;
/// Drained buffers a core keeps for reuse ([`Net::take_buffer`]), and the capacity a new
/// one starts with. A connection holds a buffer only while it has unread input, a partial
/// command or replies queued; the pool bounds what the idle ones cost the core together.
const POOL_KEEP: usize = 64;
const POOL_FRESH: usize = 4 << 10;
/// The pool's bytes at most: what a core keeps for reuse counts in `used_memory` like
/// everyone's data, and under `maxmemory` every byte of it is a key evicted.
const POOL_BYTES: usize = 256 << 10;
/// Streaming buffers. A client that pipelines a stream (`redis-cli --pipe`, a bulk load)
/// fills its input far past [`INPUT_HIGH`] (one enter brings every provided buffer the
/// kernel could fill: 1.6 MB seen) and again after every read. Grown by doubling from
/// [`POOL_FRESH`] and freed past [`INPUT_KEEP`] each time, every such cycle copied what it
/// held at each doubling and touched fresh pages (the allocator gives freed pages back at
/// once, [`crate::alloc::PURGE_DELAY_MS`]): 150,000 page faults per million 10-member ZADDs
/// of such a stream. So an input that outgrows [`INPUT_KEEP`] moves into a streaming
/// buffer (a power of two), and the core keeps up to [`STREAM_KEEP`] drained input buffers
/// of [`STREAM_BYTES`] together for the next cycle (the connection's read buffer and the
/// ring's input take turns), the most recently given back. Reply buffers past [`INPUT_KEEP`] are
/// kept the same way ([`Net::keep_large`], [`Net::take_large`]). A trim that finds them unused since the last
/// one frees them: 1–2 s after their last use, on a core that goes to sleep (an idle core
/// wakes `hz` times a second). They count in `used_memory` as any client buffer does.
const STREAM_BYTES: usize = 4 << 20;
const STREAM_KEEP: usize = 8;

/// Ring and buffer sizes of a core.
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// Submission queue entries (the completion queue is 4× as large).
    pub entries: u32,
    /// Provided receive buffers at most: a power of two.
    pub buffers: u16,
    /// Buffers in the kernel's ring at first, and the least it is trimmed back to (see
    /// `bufring`'s header): the ring grows when the kernel runs out.
    pub initial_buffers: u16,
    pub buffer_size: usize,
    /// Accepted connections a listener holds before its owner takes them; past this the
    /// multishot accept is cancelled, and clients wait in the kernel's backlog until the
    /// queue has been taken.
    pub accept_queue: usize,
    /// Entries of the ring's table of direct descriptors (at most the open-files limit):
    /// the first this many connection slots of the core are named by index (see
    /// [`Net::fixed`]).
    pub direct_descriptors: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        // 512 × 16 KiB: 8 MiB of address space per core; a turn recycles every buffer it
        // received into, so 512 completions fit between two turns. Only 16 (256 KiB) are in
        // the kernel's ring at first: the ring grows with the completions a turn brings
        // and shrinks back when the load goes (see `bufring`'s header), and only the
        // buffers it cycles through are resident.
        NetConfig {
            entries: 1024,
            buffers: 512,
            initial_buffers: 16,
            buffer_size: 16 << 10,
            accept_queue: 1024,
            // 8 bytes of kernel memory an entry: 128 KiB a core.
            direct_descriptors: 16 << 10,
        }
    }
}

/// From the kernel's uapi (the crate keeps its copies private).
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_EXT_ARG: u32 = 8;
const IORING_ENTER_REGISTERED_RING: u32 = 16;
const IORING_REGISTER_RING_FDS: u32 = 20;
/// SEND_ZC: report in the notification whether the kernel copied after all (6.2), and the
/// bit that says it did.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// `struct io_uring_rsrc_update` (IORING_REGISTER_RING_FDS).
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// `struct io_uring_getevents_arg` (IORING_ENTER_EXT_ARG: a wait with a timeout).
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// Registers `ring`'s descriptor with the calling thread's io_uring context
/// (IORING_REGISTER_RING_FDS, Linux 5.18): its enters then name the ring by that index and the
/// kernel skips the descriptor lookup (an atomic reference count taken and dropped on a
/// file shared by the process's threads) of each one. None where the kernel refuses.
fn register_ring_fd(ring: &IoUring) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let fd = ring.as_raw_fd();
    let mut up = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: fd as u64,
    };
    // SAFETY: IORING_REGISTER_RING_FDS reads and writes the one io_uring_rsrc_update we pass
    // (offset u32::MAX: the kernel picks the index and writes it back).
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd,
            IORING_REGISTER_RING_FDS,
            &mut up as *mut RsrcUpdate,
            1u32,
        )
    };
    (r == 1).then_some(up.offset)
}

/// Registers an empty table of up to `want` direct descriptors (no more than the
/// open-files limit, which the kernel enforces) and returns its length: 0 before Linux
/// 6.13, and where the kernel refuses; connections then name their descriptors. Before
/// 6.13 the kernel let go of removed entries in order: an operation naming the table by
/// index (a connection's long-lived multishot receive) held back the release of every
/// socket removed after it, so closed sockets stayed open with their peers waiting.
fn direct_table(ring: &IoUring, want: u32, release: &str) -> u32 {
    if kernel_version(release).is_none_or(|v| v < (6, 13)) {
        return 0;
    }
    // SAFETY: getrlimit writes the struct we own.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    let limit = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => lim.rlim_cur.min(u32::MAX as u64) as u32,
        _ => 0,
    };
    let n = want.min(limit);
    if n == 0 || ring.submitter().register_files_sparse(n).is_err() {
        return 0;
    }
    n
}

/// `$build` with `$s` naming a connection's socket: by its index in the table of direct
/// descriptors when it has one (`$fixed`), else by descriptor (`$fd`). (The crate's two
/// kinds of target share only a sealed trait, so a generic function cannot take either.)
macro_rules! on_socket {
    ($fixed:expr, $fd:expr, |$s:ident| $build:expr) => {
        match $fixed {
            Some(i) => {
                let $s = types::Fixed(i);
                $build
            }
            None => {
                let $s = Fd($fd);
                $build
            }
        }
    };
}

const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_CANCEL: u64 = 4;
/// The read of the core's bell (`sched::Bell`): another thread woke one of its tasks.
const OP_BELL: u64 = 5;
/// A connection's socket put into (or taken out of) the ring's table of direct descriptors.
const OP_FILES: u64 = 6;
const BUFFER_GROUP: u16 = 0;

fn user_data(op: u64, slot: usize, gen: u32) -> u64 {
    op | (slot as u64) << 3 | (gen as u64) << 32
}

fn decode(ud: u64) -> (u64, usize, u32) {
    (
        ud & 7,
        ((ud >> 3) & 0x1FFF_FFFF) as usize,
        (ud >> 32) as u32,
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Recv {
    Idle,
    Armed,
}

/// A client connection's state in the ring.
struct ConnSlot {
    fd: RawFd,
    /// The socket's index in the ring's table of direct descriptors, once the kernel has
    /// put it there (see [`Net::fixed`]); operations then name it by index.
    fixed: Option<u32>,
    gen: u32,
    input: Vec<u8>,
    /// Bytes of `input` already read.
    head: usize,
    eof: bool,
    error: Option<i32>,
    reader: Option<Waker>,
    recv: Recv,
    /// Receive cancelled because the input is full; re-armed once it is read down.
    paused: bool,
    /// The reply being sent, owned by the ring until the kernel has taken it all.
    send: Vec<u8>,
    sent: usize,
    /// A send is in flight: the kernel has not taken all of `send` yet.
    sending: bool,
    /// The send operation in flight is zero-copy.
    zc_now: bool,
    /// Some of `send` went zero-copy: the notifications due are its own (otherwise they
    /// are `zc_held`'s).
    send_zc: bool,
    /// Notifications still due for this connection's zero-copy sends (the kernel lets go
    /// of their pages when the peer has acknowledged them); signed, so a notification that
    /// came before its send's result cannot wedge the count.
    zc_notifs: i32,
    /// The buffer of a zero-copy send whose bytes are all sent but whose notification is
    /// due: the connection goes on with a new buffer, and this one goes back to the core
    /// when the notification comes. At most one: no zero-copy send starts while one is due.
    zc_held: Vec<u8>,
    /// The kernel copied a zero-copy send of this connection (loopback, a device without
    /// scatter-gather) or cannot do one on its socket: plain sends from now.
    zc_off: bool,
    /// The send's buffer goes to the core's pool when it completes: nobody waits for it
    /// ([`RingStream::send_detached`]).
    detached: bool,
    send_error: Option<i32>,
    writer: Option<Waker>,
    /// The stream was dropped: close once no operation is in flight.
    dropped: bool,
}

impl ConnSlot {
    /// Whether a receive should be armed now: none is, the stream is alive and open, and
    /// its unread input is below [`INPUT_HIGH`].
    fn wants_recv(&self) -> bool {
        self.recv == Recv::Idle
            && !self.eof
            && self.error.is_none()
            && !self.paused
            && !self.dropped
            && self.input.len() - self.head < INPUT_HIGH
    }

    /// After a read: whether a receive paused at [`INPUT_HIGH`] must be re-armed now that
    /// the input is down to [`INPUT_LOW`] (the pause ends either way).
    fn resume(&mut self) -> bool {
        let resume = self.paused && self.input.len() - self.head <= INPUT_LOW;
        if resume {
            self.paused = false;
        }
        resume && self.recv == Recv::Idle
    }
}

/// A listener's state in the ring.
struct ListenSlot {
    fd: RawFd,
    gen: u32,
    accepted: VecDeque<RawFd>,
    error: Option<i32>,
    waiter: Option<Waker>,
    armed: bool,
    /// A cancel of the multishot accept is on its way (the queue was full).
    pausing: bool,
    closed: bool,
}

enum Slot {
    Free,
    Conn(ConnSlot),
    Listen(ListenSlot),
}

/// Counters of the ring (INFO and the tests read them).
#[derive(Default, Clone, Copy, Debug)]
pub struct NetStats {
    pub enters: u64,
    pub completions: u64,
    pub parks: u64,
    /// Sleeps in this ring (the core's idle waits), and bell reads that ended one.
    pub sleeps: u64,
    pub bells: u64,
    pub enobufs: u64,
    pub rearms: u64,
    pub pauses: u64,
    /// Multishot accepts cancelled because the accepted queue was full.
    pub accept_pauses: u64,
    /// Receive buffers whose pages went back to the kernel at a trim.
    pub buffers_released: u64,
    /// Connections whose socket went into the table of direct descriptors.
    pub direct: u64,
    /// Connections that stopped sending zero-copy because the kernel copied their pages.
    pub zc_copied: u64,
    /// Reads that lent a partial command's buffer to the receive ([`RingStream::read_into`]).
    pub lends: u64,
}

/// How often, at most, the provided buffers are trimmed (when the core goes to sleep).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// One core's network ring. Lives in a thread-local of the core; everything in it is used
/// from that thread only, and no RefCell borrow is held across an `.await`.
pub struct Net {
    // Field order is drop order: the ring (and with it every registration and operation)
    // goes before the buffers the kernel may write into.
    ring: RefCell<IoUring>,
    bufs: RefCell<BufRing>,
    /// The ring's table of direct descriptors, one entry per connection slot below its
    /// length (empty before Linux 6.13 or where the kernel refuses: [`direct_table`]). A
    /// send names a descriptor of the table by index, and the kernel then takes no
    /// reference on the socket's file per operation (`fget`/`fput`, an atomic increment
    /// and decrement on a line the receive path touches too). A connection's socket goes
    /// in by an IORING_OP_FILES_UPDATE queued with its first receive and comes out by
    /// another before its descriptor is closed: two submissions in enters the core makes
    /// anyway, no system call of their own. Each cell is the argument the kernel reads
    /// when it runs the update (the descriptor, or -1 to clear); cells never move.
    fixed: Box<[Cell<RawFd>]>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    next_gen: Cell<u32>,
    /// Slots whose multishot ended and must be re-armed at the end of the turn.
    rearm: RefCell<Vec<usize>>,
    /// The last enter produced completions: the kernel may hold more deferred work.
    drain: Cell<bool>,
    /// The driver is waiting: a new submission must wake it.
    parked: Cell<bool>,
    driver: RefCell<Option<Waker>>,
    efd: RawFd,
    /// What this core's enters name: the ring's registered index (with
    /// IORING_ENTER_REGISTERED_RING in `enter_flags`) or its descriptor.
    enter_fd: i32,
    enter_flags: u32,
    /// The core's bell eventfd and the 8 bytes its read fills (the kernel writes them while
    /// the read is in flight; never read here).
    bell_fd: RawFd,
    bell_buf: Box<std::cell::UnsafeCell<u64>>,
    /// A ring sleep ended since the last enter: deferred work may wait in the retry list.
    slept: Cell<bool>,
    /// The bell's read works (always, unless the kernel refused it).
    bell_ok: Cell<bool>,
    /// The kernel sends zero-copy and says when it copied after all (Linux 6.2).
    zc_ok: bool,
    pub mode: &'static str,
    accept_queue: usize,
    stats: Cell<NetStats>,
    scratch: RefCell<Vec<(u64, i32, u32)>>,
    /// Receives complete only inside this thread's enters (DEFER_TASKRUN): a trim may
    /// release buffers still in the kernel's ring.
    defer: bool,
    /// The last trim of the provided buffers, and their resident bytes `used_memory` counts.
    trimmed_at: Cell<std::time::Instant>,
    counted: Cell<usize>,
    /// Drained buffers, empty, for the next connection that receives or replies.
    pool: RefCell<Vec<Vec<u8>>>,
    /// The capacity of the pooled buffers, at most [`POOL_BYTES`].
    pool_bytes: Cell<usize>,
    /// Drained streaming buffers, in the order they were given back, and whether one was
    /// taken since the last trim.
    streams: RefCell<VecDeque<Vec<u8>>>,
    streams_used: Cell<bool>,
}

thread_local! {
    static NET: RefCell<Option<Rc<Net>>> = const { RefCell::new(None) };
}

/// This core's ring, created (and its driver started) by [`start`].
pub fn current() -> io::Result<Rc<Net>> {
    NET.with(|n| n.borrow().clone())
        .ok_or_else(|| io::Error::other("the network ring is not started on this thread"))
}

/// The kernel's release, for error messages.
fn kernel_release() -> String {
    // SAFETY: uname fills the struct we own.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: `release` is NUL-terminated by uname.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// (major, minor) of a kernel release such as `6.18.44-fc`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn os_err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Net {
    /// Sets up the ring in the cheapest completion mode the kernel offers, its provided
    /// buffers and its eventfd. Errors name the kernel, the feature and the version needed.
    pub fn new(cfg: NetConfig, bell_fd: RawFd) -> io::Result<Net> {
        // Multishot receive (6.0) fails per operation, not at setup, on older kernels: refuse
        // to start there rather than fail every connection.
        let release = kernel_release();
        if kernel_version(&release).is_some_and(|v| v < (6, 0)) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("percore's network path needs Linux 6.0 or later (multishot receive into provided buffers); this kernel is {release}"),
            ));
        }
        let (ring, mode) = bufring::setup(cfg.entries).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("io_uring setup failed on kernel {}: {e}", kernel_release()),
            )
        })?;
        let bufs = BufRing::register_lazy(
            &ring,
            BUFFER_GROUP,
            cfg.buffers,
            cfg.buffer_size,
            cfg.initial_buffers,
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "kernel {} cannot register a provided-buffer ring ({e}); percore's network path needs Linux 6.0 or later (multishot receive into provided buffers)",
                    kernel_release()
                ),
            )
        })?;
        // SAFETY: eventfd has no preconditions; the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ring = ring;
        ring.submitter().register_eventfd(efd)?;
        ring.completion().disable_eventfd();
        let (enter_fd, enter_flags) = match register_ring_fd(&ring) {
            Some(i) => (i as i32, IORING_ENTER_REGISTERED_RING),
            None => (std::os::fd::AsRawFd::as_raw_fd(&ring), 0),
        };
        let fixed = direct_table(&ring, cfg.direct_descriptors, &release);
        Ok(Net {
            ring: RefCell::new(ring),
            bufs: RefCell::new(bufs),
            fixed: (0..fixed).map(|_| Cell::new(-1)).collect(),
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
            next_gen: Cell::new(1),
            rearm: RefCell::new(Vec::new()),
            drain: Cell::new(false),
            parked: Cell::new(false),
            driver: RefCell::new(None),
            efd,
            enter_fd,
            enter_flags,
            bell_fd,
            bell_buf: Box::new(std::cell::UnsafeCell::new(0)),
            slept: Cell::new(false),
            bell_ok: Cell::new(true),
            zc_ok: kernel_version(&release).is_some_and(|v| v >= (6, 2)),
            defer: mode == "single-issuer+defer-taskrun",
            trimmed_at: Cell::new(std::time::Instant::now()),
            counted: Cell::new(0),
            mode,
            accept_queue: cfg.accept_queue.max(1),
            stats: Cell::new(NetStats::default()),
            scratch: RefCell::new(Vec::with_capacity(256)),
            pool: RefCell::new(Vec::new()),
            pool_bytes: Cell::new(0),
            streams: RefCell::new(VecDeque::new()),
            streams_used: Cell::new(false),
        })
    }

    /// An empty buffer with room for at least `len` bytes: a drained one from the pool, or
    /// a new one; past [`INPUT_KEEP`] (up to [`STREAM_BYTES`]), a large one (see [`Net::take_large`]).
    pub fn take_buffer(&self, len: usize) -> Vec<u8> {
        // Up to the kept buffers' bound, as they are kept; past it, no large buffer on a
        // guess (after a 100 MB reply, the next one would start at 128 MiB).
        if len > INPUT_KEEP && len <= STREAM_BYTES {
            return self.take_large(len);
        }
        let len = if len > INPUT_KEEP { 0 } else { len };
        let mut b = self.pool.borrow_mut().pop().unwrap_or_default();
        self.pool_bytes.set(self.pool_bytes.get() - b.capacity());
        b.reserve(len.max(POOL_FRESH));
        b
    }

    /// Gives a buffer back for reuse (its bytes are dropped): one up to [`INPUT_KEEP`] goes
    /// to the pool, or is freed past the pool's bound; a larger one is kept (see
    /// [`Net::keep_large`]).
    pub fn recycle(&self, mut b: Vec<u8>) {
        let cap = b.capacity();
        if cap > INPUT_KEEP {
            return self.keep_large(b);
        }
        if cap == 0 {
            return;
        }
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_KEEP && self.pool_bytes.get() + cap <= POOL_BYTES {
            b.clear();
            pool.push(b);
            self.pool_bytes.set(self.pool_bytes.get() + cap);
        }
    }

    /// Keeps a drained buffer past [`INPUT_KEEP`] (input or replies), up to [`STREAM_BYTES`];
    /// past [`STREAM_KEEP`] buffers or [`STREAM_BYTES`] together, the ones kept longest go.
    /// So the core keeps the sizes its clients use now. (Keeping the largest first, a 4 MiB
    /// buffer left by a pipelined load held the whole bound, and every 256 KiB SET after it
    /// took fresh pages: 28-50 page faults a request,
    /// loadtest/results/2026-12-03/large-requests.md.)
    fn keep_large(&self, mut b: Vec<u8>) {
        if b.capacity() > STREAM_BYTES {
            return;
        }
        b.clear();
        let mut streams = self.streams.borrow_mut();
        streams.push_back(b);
        while streams.len() > STREAM_KEEP
            || streams.iter().map(|s| s.capacity()).sum::<usize>() > STREAM_BYTES
        {
            streams.pop_front();
        }
    }

    /// Appends `data` to `buf`, an input buffer. When `buf` must grow past [`INPUT_KEEP`],
    /// it moves into a streaming buffer: the smallest the core keeps that is large enough,
    /// or a new one (a power of two), and its old buffer is given back.
    fn append(&self, buf: &mut Vec<u8>, data: &[u8]) {
        let need = buf.len() + data.len();
        if need > buf.capacity() && need > INPUT_KEEP {
            let mut big = self.take_large(need);
            big.extend_from_slice(buf);
            self.recycle(std::mem::replace(buf, big));
        }
        buf.extend_from_slice(data);
    }

    /// An empty buffer of at least `len` bytes (past [`INPUT_KEEP`]): the smallest kept
    /// large buffer that fits (of equal ones, the latest given back: its lines may still be
    /// in cache), or a new one of the next power of two. The allocator gives freed pages
    /// back at once ([`crate::alloc::PURGE_DELAY_MS`]), so a new one is fresh pages to
    /// fault in: a 256 KiB GET whose reply grew by doubling into new buffers paid 67-93 page
    /// faults a request, 0.1 with the kept ones (loadtest/results/2026-12-03/large-replies.md).
    fn take_large(&self, len: usize) -> Vec<u8> {
        self.streams_used.set(true);
        let size = len.next_power_of_two();
        let mut streams = self.streams.borrow_mut();
        let kept = streams
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| b.capacity() >= size)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        kept.and_then(|i| streams.remove(i))
            .unwrap_or_else(|| Vec::with_capacity(size))
    }

    /// Frees the drained streaming buffers if none was taken since the last call.
    fn trim_streams(&self) {
        if !self.streams_used.replace(false) {
            self.streams.borrow_mut().clear();
        }
    }

    /// Frees the pool's spare buffers.
    fn release_pool(&self) {
        *self.pool.borrow_mut() = Vec::new();
        self.pool_bytes.set(0);
    }

    /// Frees every spare buffer the core keeps (the pool and the streaming buffers); what
    /// it freed, in bytes.
    pub fn release_spares(&self) -> usize {
        let streams = std::mem::take(&mut *self.streams.borrow_mut());
        let freed = self.pool_bytes.get() + streams.iter().map(|s| s.capacity()).sum::<usize>();
        self.release_pool();
        freed
    }

    /// `io_uring_enter` on this ring, by its registered index where it has one.
    /// `ts`: wait at most that long (with `min_complete` 1).
    fn enter(
        &self,
        to_submit: u32,
        min_complete: u32,
        ts: Option<&io_uring::types::Timespec>,
    ) -> io::Result<()> {
        let mut flags = IORING_ENTER_GETEVENTS | self.enter_flags;
        let arg = ts.map(|ts| GetEventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: 0,
            ts: (ts as *const io_uring::types::Timespec) as u64,
        });
        let (argp, argsz) = match &arg {
            Some(a) => {
                flags |= IORING_ENTER_EXT_ARG;
                (
                    (a as *const GetEventsArg).cast::<libc::c_void>(),
                    std::mem::size_of::<GetEventsArg>(),
                )
            }
            None => (std::ptr::null(), 0),
        };
        // SAFETY: io_uring_enter on this ring (its registered index or descriptor, which
        // live as long as `self`); the extended argument and the timespec it points to
        // (the crate's `Timespec` is `struct __kernel_timespec`) outlive the call. What the
        // submitted entries name is the pushers' contract.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.enter_fd,
                to_submit,
                min_complete,
                flags,
                argp,
                argsz,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The size from which this core's replies go out zero-copy (0: never).
    fn zc_min(&self) -> usize {
        match self.zc_ok {
            true => ZC_MIN.load(Ordering::Relaxed),
            false => 0,
        }
    }

    /// Whether the ring's descriptor is registered (see [`register_ring_fd`]).
    pub fn ring_fd_registered(&self) -> bool {
        self.enter_flags & IORING_ENTER_REGISTERED_RING != 0
    }

    pub fn stats(&self) -> NetStats {
        self.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut NetStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn alloc(&self, slot: Slot) -> (usize, u32) {
        let gen = self.next_gen.get();
        self.next_gen.set(gen.wrapping_add(1).max(1));
        let mut slots = self.slots.borrow_mut();
        let idx = match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = slot;
                i
            }
            None => {
                slots.push(slot);
                slots.len() - 1
            }
        };
        match &mut slots[idx] {
            Slot::Conn(c) => c.gen = gen,
            Slot::Listen(l) => l.gen = gen,
            Slot::Free => {}
        }
        (idx, gen)
    }

    /// Queues one submission (submitting what is queued first when the queue is full) and
    /// wakes the driver if it waits.
    ///
    /// # Safety
    /// Every buffer and descriptor the entry names must stay valid until its last
    /// completion has been reaped.
    unsafe fn push(&self, entry: &squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: the caller guarantees what the entry names outlives the operation.
            if unsafe { ring.submission().push(entry) }.is_ok() {
                break;
            }
            if let Err(e) = ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    crate::log::warn(&format!("io_uring submit failed: {e}"));
                }
            }
        }
        drop(ring);
        if self.parked.get() {
            self.parked.set(false);
            if let Some(w) = self.driver.borrow_mut().take() {
                w.wake();
            }
        }
    }

    fn arm_recv(&self, idx: usize, fd: RawFd, fixed: Option<u32>, gen: u32) {
        let bgid = self.bufs.borrow().bgid;
        let e = on_socket!(fixed, fd, |s| opcode::RecvMulti::new(s, bgid).build())
            .user_data(user_data(OP_RECV, idx, gen));
        // SAFETY: the descriptor stays open until every operation on it has completed (the
        // slot closes it only then), and so does its entry in the table; the buffers are
        // the ring's own.
        unsafe { self.push(&e) };
    }

    /// Puts connection `idx`'s socket `fd` into the table of direct descriptors (its
    /// operations name it by index once the kernel says it is there), or, with `fd` -1,
    /// takes it out. Nothing for a slot past the table.
    fn update_fixed(&self, idx: usize, fd: RawFd, gen: u32) {
        let Some(cell) = self.fixed.get(idx) else {
            return;
        };
        cell.set(fd);
        let e = opcode::FilesUpdate::new(cell.as_ptr(), 1)
            .offset(idx as i32)
            .build()
            .user_data(user_data(OP_FILES, idx, gen));
        // SAFETY: the kernel reads the one descriptor from `cell` when it runs the update;
        // the cells live as long as the ring (field order) and never move (a boxed slice).
        // A later update of the same slot queued before this one runs rewrites the cell:
        // both then install what the later one meant (the slot's newest socket, or none).
        unsafe { self.push(&e) };
    }

    fn arm_accept(&self, idx: usize, fd: RawFd, gen: u32) {
        let e = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(OP_ACCEPT, idx, gen));
        // SAFETY: the listener's descriptor lives as long as the process (see
        // ListenerCloser): it is shut down, never closed, while the accept is armed.
        unsafe { self.push(&e) };
    }

    fn arm_bell(&self) {
        let e = opcode::Read::new(Fd(self.bell_fd), self.bell_buf.get().cast(), 8)
            .build()
            .user_data(user_data(OP_BELL, 0, 0));
        // SAFETY: the bell's eventfd lives as long as the process, and `bell_buf` as long as
        // the ring (dropped after it: field order).
        unsafe { self.push(&e) };
    }

    /// Sleeps in the kernel until a completion arrives for this ring or `until` passes,
    /// submitting what is queued in the same enter.
    fn sleep(&self, until: Option<std::time::Instant>) {
        let mut ts = None;
        if let Some(at) = until {
            let d = at.saturating_duration_since(std::time::Instant::now());
            if d.is_zero() {
                return;
            }
            ts = Some(io_uring::types::Timespec::from(d));
        }
        let to_submit = self.ring.borrow_mut().submission().len() as u32;
        match self.enter(to_submit, 1, ts.as_ref()) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(e) => crate::log::warn(&format!("io_uring enter failed: {e}")),
        }
        self.slept.set(true);
        self.count(|s| {
            s.enters += 1;
            s.sleeps += 1;
        });
    }

    fn cancel(&self, target: u64) {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        // SAFETY: a cancel names no buffer or descriptor.
        unsafe { self.push(&e) };
    }

    /// Queues the send of what `slot`'s reply buffer still holds.
    fn push_send(&self, idx: usize) {
        let e = match self.slots.borrow_mut().get_mut(idx) {
            Some(Slot::Conn(c)) => {
                let (e, zc) = send_entry(idx, c, self.zc_min());
                c.zc_now = zc;
                c.send_zc |= zc;
                e
            }
            _ => return,
        };
        // SAFETY: the reply buffer is owned by the slot and neither touched nor dropped
        // while `sending` is set (Stream::send_owned waits for the completion; a dropped
        // stream's slot keeps the buffer until then); the descriptor stays open likewise.
        unsafe { self.push(&e) };
    }

    /// One turn: submits what is queued and collects what completed, entering the kernel
    /// only when there is something to submit or to collect (or `force`). Returns whether
    /// any completion was handled.
    fn turn(&self, force: bool) -> bool {
        let mut scratch = self.scratch.borrow_mut();
        scratch.clear();
        {
            let mut ring = self.ring.borrow_mut();
            let (_, mut sq, mut cq) = ring.split();
            sq.sync();
            let must_enter = force || !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
            let to_submit = sq.len() as u32;
            drop(sq);
            if must_enter {
                // Always with GETEVENTS: it is what runs the deferred work (the crate's
                // submit_and_wait adds it only when IORING_SQ_TASKRUN is up, which neither a
                // drain enter nor a send submitted as a reply arrives can count on).
                match self.enter(to_submit, 0, None) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                        ) => {}
                    Err(e) => crate::log::warn(&format!("io_uring enter failed: {e}")),
                }
                self.count(|s| s.enters += 1);
                self.slept.set(false);
            }
            cq.sync();
            for cqe in &mut cq {
                scratch.push((cqe.user_data(), cqe.result(), cqe.flags()));
            }
            // An enter runs a bounded amount of deferred work (20 items in recent kernels);
            // what is left waits on a retry list that raises neither IORING_SQ_TASKRUN nor
            // the eventfd. So after an enter that produced completions, the driver enters
            // again before it waits in glommio, until an enter produces none. (Without
            // this, an 8 MB request stalled for seconds: its receive completions sat in the
            // retry list while the core slept.) A sleep in this ring needs no such enter:
            // it runs the retry list before it waits.
            if must_enter {
                self.drain.set(!scratch.is_empty());
            }
            if scratch.is_empty() {
                return false;
            }
        }
        let n = scratch.len() as u64;
        self.bufs.borrow_mut().turn_begins();
        for &(ud, res, flags) in scratch.iter() {
            self.complete(ud, res, flags);
        }
        drop(scratch);
        self.count_resident();
        self.count(|s| s.completions += n);
        let rearm = std::mem::take(&mut *self.rearm.borrow_mut());
        for idx in &rearm {
            let arm = match self.slots.borrow().get(*idx) {
                Some(Slot::Conn(c)) if c.wants_recv() => Some((c.fd, c.fixed, c.gen)),
                _ => None,
            };
            if let Some((fd, fixed, gen)) = arm {
                if let Some(Slot::Conn(c)) = self.slots.borrow_mut().get_mut(*idx) {
                    c.recv = Recv::Armed;
                }
                self.count(|s| s.rearms += 1);
                self.arm_recv(*idx, fd, fixed, gen);
            }
        }
        let mut back = self.rearm.borrow_mut();
        if back.is_empty() {
            *back = rearm;
            back.clear();
        }
        true
    }

    fn complete(&self, ud: u64, res: i32, flags: u32) {
        let (op, idx, gen) = decode(ud);
        if op == OP_CANCEL {
            return;
        }
        if op == OP_FILES {
            // An update that put a socket in (one entry updated) for a slot still holding
            // that connection: its operations name it by index from now. A failed update
            // (a kernel without direct descriptors for sockets) leaves it named by
            // descriptor; a removal's (generation 0) is ignored.
            if let Some(Slot::Conn(c)) = self.slots.borrow_mut().get_mut(idx) {
                if c.gen == gen && res == 1 && !c.dropped {
                    c.fixed = Some(idx as u32);
                    self.count(|s| s.direct += 1);
                }
            }
            return;
        }
        if op == OP_BELL {
            self.count(|s| s.bells += 1);
            if res == -libc::ECANCELED {
                // The ring is being torn down.
                return;
            }
            if res < 0 && !matches!(-res, libc::EINTR | libc::EAGAIN) {
                // The core can no longer be woken in this ring: it sleeps in glommio from now.
                crate::log::warn(&format!(
                    "reading the core's wake-up eventfd failed: {}; this core now sleeps in glommio",
                    os_err(-res)
                ));
                self.bell_ok.set(false);
                return;
            }
            return self.arm_bell();
        }
        let mut slots = self.slots.borrow_mut();
        match (op, slots.get_mut(idx)) {
            (OP_RECV, Some(Slot::Conn(c))) if c.gen == gen => {
                if !cqueue::more(flags) {
                    c.recv = Recv::Idle;
                }
                if res > 0 {
                    let bid = cqueue::buffer_select(flags);
                    let mut bufs = self.bufs.borrow_mut();
                    if let Some(bid) = bid {
                        if let Some(data) = bufs.data(bid, res as usize) {
                            if !c.dropped {
                                if c.input.capacity() == 0 {
                                    c.input = self.take_buffer(data.len());
                                }
                                self.append(&mut c.input, data);
                            }
                        }
                        bufs.recycle(bid);
                    }
                    drop(bufs);
                    if c.input.len() - c.head >= INPUT_HIGH && c.recv == Recv::Armed && !c.paused {
                        c.paused = true;
                        self.count(|s| s.pauses += 1);
                        let target = user_data(OP_RECV, idx, c.gen);
                        drop(slots);
                        self.cancel(target);
                        slots = self.slots.borrow_mut();
                        let Some(Slot::Conn(c)) = slots.get_mut(idx) else {
                            return;
                        };
                        if let Some(w) = c.reader.take() {
                            w.wake();
                        }
                        return self.maybe_release(idx, slots);
                    }
                } else if res == 0 {
                    c.eof = true;
                } else if res == -libc::ENOBUFS {
                    self.count(|s| s.enobufs += 1);
                    self.bufs.borrow_mut().ran_out();
                } else if res != -libc::ECANCELED {
                    c.error = Some(-res);
                }
                if c.wants_recv() {
                    self.rearm.borrow_mut().push(idx);
                } else if c.recv == Recv::Idle && c.input.len() - c.head >= INPUT_HIGH {
                    // The multishot ended with the input full: resume once it is read down.
                    c.paused = true;
                }
                if let Some(w) = c.reader.take() {
                    w.wake();
                }
                self.maybe_release(idx, slots);
            }
            (OP_SEND, Some(Slot::Conn(c))) if c.gen == gen => {
                if cqueue::notif(flags) {
                    // A zero-copy send's pages are the connection's again. If the kernel
                    // had to copy them anyway, zero-copy only costs here: stop using it.
                    c.zc_notifs -= 1;
                    if res as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0 && !c.zc_off {
                        c.zc_off = true;
                        self.count(|s| s.zc_copied += 1);
                    }
                    if c.zc_notifs <= 0 {
                        self.recycle(std::mem::take(&mut c.zc_held));
                        self.maybe_release(idx, slots);
                    }
                    return;
                }
                if cqueue::more(flags) {
                    c.zc_notifs += 1;
                }
                if c.zc_now
                    && matches!(
                        -res,
                        libc::EOPNOTSUPP | libc::ENOMEM | libc::ENOBUFS | libc::EINVAL
                    )
                {
                    // Zero-copy refused with nothing sent: a socket that cannot (not TCP),
                    // or the pages could not be pinned (RLIMIT_MEMLOCK, for a process
                    // without CAP_IPC_LOCK). The same bytes go plainly, and so do this
                    // connection's next sends.
                    // Nothing of `send` is pinned by a refused send (an earlier zero-copy
                    // part's notification came before this part could go zero-copy).
                    c.zc_off = true;
                    c.send_zc = false;
                    drop(slots);
                    return self.push_send(idx);
                }
                if res < 0 {
                    c.send_error = Some(-res);
                } else {
                    c.sent += res as usize;
                    if c.sent < c.send.len() && !c.dropped && res > 0 {
                        // A short send: the rest goes in the next submission.
                        drop(slots);
                        return self.push_send(idx);
                    }
                    if res == 0 && c.sent < c.send.len() {
                        c.send_error = Some(libc::EPIPE);
                    }
                }
                if c.send_zc && c.zc_notifs > 0 {
                    // Sent, but the kernel still holds its pages until the peer has
                    // acknowledged them: the buffer waits apart, and the connection does not
                    // wait for a round trip.
                    c.zc_held = std::mem::take(&mut c.send);
                }
                c.sending = false;
                if c.detached {
                    c.detached = false;
                    self.recycle(std::mem::take(&mut c.send));
                }
                if let Some(w) = c.writer.take() {
                    w.wake();
                }
                self.maybe_release(idx, slots);
            }
            (OP_ACCEPT, Some(Slot::Listen(l))) if l.gen == gen => {
                if !cqueue::more(flags) {
                    l.armed = false;
                }
                if res >= 0 {
                    if l.closed {
                        // SAFETY: a descriptor the kernel just gave us, used by nobody.
                        unsafe { libc::close(res) };
                    } else {
                        l.accepted.push_back(res);
                        if l.accepted.len() >= self.accept_queue && l.armed && !l.pausing {
                            // The owner is not keeping up (a flood, or start-up before
                            // serving): stop accepting; `accept` re-arms once it is taken.
                            l.pausing = true;
                            self.count(|s| s.accept_pauses += 1);
                            let target = user_data(OP_ACCEPT, idx, gen);
                            drop(slots);
                            return self.cancel(target);
                        }
                    }
                } else if res == -libc::ECANCELED {
                    l.pausing = false;
                } else if !l.closed {
                    l.error = Some(-res);
                }
                if let Some(w) = l.waiter.take() {
                    w.wake();
                }
            }
            _ => {}
        }
    }

    /// Closes a dropped stream's descriptor and frees its slot once nothing is in flight.
    fn maybe_release(&self, idx: usize, mut slots: std::cell::RefMut<'_, Vec<Slot>>) {
        let done = matches!(slots.get(idx), Some(Slot::Conn(c)) if c.dropped && c.recv == Recv::Idle && !c.sending && c.zc_notifs <= 0);
        if done {
            if let Slot::Conn(c) = std::mem::replace(&mut slots[idx], Slot::Free) {
                // The table holds a reference to the socket: the socket closes (its peer
                // sees the end) only once that is dropped too, in the next enter.
                self.update_fixed(idx, -1, 0);
                // SAFETY: the stream is gone and no operation names the descriptor any more.
                unsafe { libc::close(c.fd) };
                self.recycle(c.input);
                self.recycle(c.send);
                self.recycle(c.zc_held);
            }
            self.free.borrow_mut().push(idx);
        }
    }

    /// `used_memory` counts the provided buffers' resident pages (they are mapped, not
    /// allocated): brings the count to what the buffer ring says. A comparison when nothing
    /// changed.
    fn count_resident(&self) {
        let now = self.bufs.borrow().resident_bytes();
        let was = self.counted.replace(now);
        if now != was {
            crate::alloc::count_mapped(now as i64 - was as i64);
        }
    }

    /// Trims the provided buffers (see `bufring`'s header) if the last trim is
    /// [`TRIM_EVERY`] old; called as the core goes to sleep, with every completion reaped.
    /// Under DEFER_TASKRUN the kernel receives only inside this thread's enters, so with
    /// the completion queue empty (and nothing overflowed) no buffer of the ring is being
    /// written or waits to be read: those the last period did not use are released too.
    fn trim_if_due(&self) {
        let now = std::time::Instant::now();
        if now.saturating_duration_since(self.trimmed_at.get()) < TRIM_EVERY {
            return;
        }
        self.trimmed_at.set(now);
        self.trim_streams();
        let quiet = self.defer && {
            let mut ring = self.ring.borrow_mut();
            let (_, mut sq, mut cq) = ring.split();
            sq.sync();
            cq.sync();
            !sq.cq_overflow() && cq.is_empty()
        };
        let n = self.bufs.borrow_mut().trim(quiet) as u64;
        if n > 0 {
            self.count(|s| s.buffers_released += n);
            self.count_resident();
        }
    }

    /// Buffers in the kernel's ring, its target, and the resident bytes of all of them.
    #[cfg(test)]
    fn buffers(&self) -> (u16, u16, usize) {
        let b = self.bufs.borrow();
        let (in_ring, target) = b.in_ring();
        (in_ring, target, b.resident_bytes())
    }

    /// Whether the kernel has work for this ring (checked before the driver waits).
    fn has_work(&self) -> bool {
        let mut ring = self.ring.borrow_mut();
        let (_, mut sq, mut cq) = ring.split();
        sq.sync();
        cq.sync();
        self.drain.get() || !sq.is_empty() || sq.taskrun() || sq.cq_overflow() || !cq.is_empty()
    }
}

/// The send of what `c`'s reply buffer still holds: zero-copy when it is at least
/// `zc_min` bytes (0: never) and the connection has not found zero-copy to copy anyway.
fn send_entry(idx: usize, c: &ConnSlot, zc_min: usize) -> (squeue::Entry, bool) {
    let rest = &c.send[c.sent..];
    let (ptr, len) = (rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32);
    let zc = zc_min > 0 && rest.len() >= zc_min && !c.zc_off && c.zc_notifs <= 0;
    let flags = libc::MSG_NOSIGNAL;
    let e = on_socket!(c.fixed, c.fd, |s| match zc {
        false => opcode::Send::new(s, ptr, len).flags(flags).build(),
        true => opcode::SendZc::new(s, ptr, len)
            .flags(flags)
            .zc_flags(IORING_SEND_ZC_REPORT_USAGE)
            .build(),
    });
    (e.user_data(user_data(OP_SEND, idx, c.gen)), zc)
}

/// Replies at least this long go out zero-copy (IORING_OP_SEND_ZC) on connections where the
/// kernel does not copy them anyway; 0 turns zero-copy off. `zerocopy-send-min-bytes`.
static ZC_MIN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(ZC_MIN_DEFAULT);
pub const ZC_MIN_DEFAULT: usize = 0;

/// Sets the size from which replies go out zero-copy, on every core (0: never).
pub fn set_zerocopy_min(bytes: usize) {
    ZC_MIN.store(bytes, Ordering::Relaxed);
}

/// Creates this core's ring and starts its driver on the connections' task queue. Called
/// once per core, after `sched::init`, before anything listens.
pub fn start(cfg: NetConfig) -> io::Result<Rc<Net>> {
    let net = Rc::new(Net::new(cfg, super::sched::bell().fd)?);
    net.arm_bell();
    NET.with(|n| *n.borrow_mut() = Some(net.clone()));
    super::spawn_driver(drive(net.clone()));
    Ok(net)
}

thread_local! {
    /// Whether the driver keeps its guard timers (off only in the rescue's test).
    static GUARD_ON: Cell<bool> = const { Cell::new(true) };
}

/// Turns the driver's guard timers on or off for this core (before [`start`]).
pub fn set_guard(on: bool) {
    GUARD_ON.with(|g| g.set(on));
}

/// Rounds of the driver's loop after which it yields even with nothing done.
const MAX_ROUNDS_WITHOUT_YIELD: u32 = 64;

/// How far ahead the driver keeps a glommio timer while tasks are runnable: the longest
/// glommio's parking bug can hold a core asleep with work to do (see the runtime's header).
const GUARD: std::time::Duration = std::time::Duration::from_millis(2);

/// glommio timers kept ahead of the driver while it is runnable: the first between
/// `GUARD`/2 and `GUARD` ahead, the others at doubling distances to 128 × `GUARD`. They cost
/// nothing unless glommio sleeps (a timer becomes an armed TIMEOUT only then); the chain
/// is renewed at most once per `GUARD`/2. A chain, because a strand can strike again before
/// the driver has run: the timer that ended the first one is spent by then (seen with one
/// timer: stuck after 4,360 and 1,075 of 20,000 round trips beside a busy thread).
struct Guard(Option<(std::time::Instant, Vec<Pin<Box<glommio::timer::Timer>>>)>);

impl Guard {
    fn keep(&mut self, cx: &mut std::task::Context<'_>, now: std::time::Instant) {
        if !GUARD_ON.with(|g| g.get())
            || self.0.as_ref().is_some_and(|(at, _)| *at > now + GUARD / 2)
        {
            return;
        }
        let timers = super::sched::timer_chain(cx, GUARD);
        super::sched::guarded_until(now + GUARD * (1 << (timers.len() - 1)));
        self.0 = Some((now + GUARD, timers));
    }
}

/// The driver of a core: turns the ring, hands other threads' wake-ups to glommio and
/// fires the core's timers while any of that makes progress (yielding to the tasks it woke
/// between two rounds). With nothing left it sleeps:
/// - in this ring when no task of the core is runnable and glommio has no I/O in flight:
///   one enter waits for a completion, the bell (a wake from another thread) or the next
///   timer, and submits the queued sends on the way;
/// - otherwise in glommio, which must run the other tasks or collect its I/O: the ring's
///   completion eventfd is enabled and read through glommio, with a glommio timer at the
///   next deadline, and the driver is woken as soon as no task is runnable.
async fn drive(net: Rc<Net>) {
    use super::sched;
    let bell = sched::bell();
    // SAFETY: `efd` is this ring's eventfd, owned by `net` for the life of the core; the
    // BufferedFile only reads it (8-byte counter reads) and is never closed (ManuallyDrop).
    let efile = Rc::new(std::mem::ManuallyDrop::new(unsafe {
        <glommio::io::BufferedFile as std::os::fd::FromRawFd>::from_raw_fd(net.efd)
    }));
    let mut signal: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
    let mut guard = Guard(None);
    // Enter the ring in the next turn even with nothing to submit (see below).
    let mut force = false;
    // Rounds since the driver last gave the core back to glommio.
    let mut rounds = 0u32;
    while !sched::exiting() {
        bell.set_at(sched::DriverAt::Running);
        let mut progress = net.turn(std::mem::take(&mut force));
        // A bound on rounds without yielding: glommio must get the core back now and then
        // to run its other task queues. A driver that went round for minutes without
        // yielding, at about 2 million rounds a second, held up a 2-shard server's
        // shutdown on one CPU after heavy load (1 run in 10; cause not found yet, see
        // loadtest/results/2026-12-02/network/notes.md).
        rounds += 1;
        progress |= rounds > MAX_ROUNDS_WITHOUT_YIELD;
        progress |= bell.take_remote() > 0;
        progress |= sched::fire_timers(std::time::Instant::now()) > 0;
        if progress {
            // Yield to the tasks just woken, keeping a timer against glommio's parking bug.
            rounds = 0;
            let mut yielded = false;
            std::future::poll_fn(|cx| {
                if yielded {
                    return Poll::Ready(());
                }
                yielded = true;
                bell.set_at(sched::DriverAt::Yielded);
                guard.keep(cx, std::time::Instant::now());
                cx.waker().wake_by_ref();
                Poll::Pending
            })
            .await;
            continue;
        }
        if bell.runnable() == 0 && !sched::reactor_in_use() && net.bell_ok.get() {
            if bell.prepare_to_sleep() {
                net.trim_if_due();
                bell.set_at(sched::DriverAt::RingSleep);
                net.sleep(sched::next_deadline());
                bell.woke();
            }
            continue;
        }
        if net.slept.get() || net.drain.get() {
            // The last enter may have left deferred work in the kernel's retry list, which
            // signals no eventfd: enter once more before waiting on it. That turn's
            // completions are progress like any other (yield to the tasks they woke): a
            // loop here that did not yield kept a core from running its other tasks for
            // minutes when every such enter brought a completion (seen at shutdown, 2
            // shards on one CPU, 1 run in 10).
            force = true;
            continue;
        }
        // Sleep in glommio: let the kernel signal the eventfd when work arrives, look once
        // more (work that came before the eventfd was enabled raised IORING_SQ_TASKRUN),
        // then wait.
        net.ring.borrow_mut().completion().enable_eventfd();
        bell.sleeping_in_glommio();
        std::sync::atomic::fence(Ordering::SeqCst);
        if net.has_work() || bell.has_remote() {
            net.ring.borrow_mut().completion().disable_eventfd();
            bell.woke();
            continue;
        }
        net.count(|s| s.parks += 1);
        net.trim_if_due();
        let sig = signal.get_or_insert_with(|| {
            let f = efile.clone();
            Box::pin(async move {
                let _ = f.read_at(0, 8).await;
            })
        });
        let now = std::time::Instant::now();
        let mut wake_at = sched::next_deadline();
        if bell.runnable() > 0 && GUARD_ON.with(|g| g.get()) {
            wake_at = Some(wake_at.map_or(now + GUARD, |t| t.min(now + GUARD)));
        }
        let mut timer = wake_at.map(|at| {
            Box::pin(glommio::timer::Timer::new(
                at.saturating_duration_since(now),
            ))
        });
        let idle_wake = !sched::reactor_in_use();
        let mut first = true;
        let woke_by_eventfd = std::future::poll_fn(|cx| {
            if sig.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if timer
                .as_mut()
                .is_some_and(|t| t.as_mut().poll(cx).is_ready())
            {
                return Poll::Ready(false);
            }
            if !first {
                // Every other wake-up means the driver has something to look at: a local
                // send (push cleared `parked`), a task woken from another thread (through
                // glommio, see `Bell::ring`), nothing else runnable any more, a new timer
                // earlier than `wake_at`, glommio's I/O done, or a guard timer (spurious:
                // one more round).
                return Poll::Ready(false);
            }
            first = false;
            if !idle_wake || bell.runnable() > 0 {
                // Wake-ups of this wait may come while glommio's loop runs other tasks
                // or collects its I/O, where its parking bug can strike: the guard's
                // chain bounds such a sleep (a snapshot in flight: 500 wake-ups a
                // second at most while it lasts).
                guard.keep(cx, now);
            }
            bell.set_at(sched::DriverAt::GlommioWait);
            net.parked.set(true);
            *net.driver.borrow_mut() = Some(cx.waker().clone());
            sched::glommio_wait(cx.waker(), wake_at, idle_wake);
            Poll::Pending
        })
        .await;
        sched::end_glommio_wait();
        rounds = 0;
        net.parked.set(false);
        net.driver.borrow_mut().take();
        if woke_by_eventfd {
            signal = None;
        }
        net.ring.borrow_mut().completion().disable_eventfd();
        bell.woke();
    }
}

/// [`RingStream::read_into`]'s future. `lent`: the length `buf` had when it was lent to
/// the slot as its input (the slot's `head` then marks those bytes as already read); the
/// buffer is the slot's until it comes back, by a read or by the future's drop.
struct ReadInto<'a> {
    s: &'a RingStream,
    buf: &'a mut Vec<u8>,
    lent: Option<usize>,
}

impl Future for ReadInto<'_> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let (buf, lent, net) = (&mut *this.buf, &mut this.lent, &this.s.net);
        if let Some(l) = *lent {
            // The buffer comes back with what arrived, else at an error or the end.
            let r = this.s.with(|c| {
                let r = match c.error {
                    _ if c.input.len() > l => Ok(c.input.len() - l),
                    Some(e) => Err(os_err(e)),
                    None if c.eof => Ok(0),
                    None => {
                        c.reader = Some(cx.waker().clone());
                        return None;
                    }
                };
                *buf = std::mem::take(&mut c.input);
                c.head = 0;
                let resume = matches!(r, Ok(n) if n > 0) && c.resume();
                Some((r, resume))
            });
            return match r {
                Some((r, resume)) => {
                    *lent = None;
                    if resume {
                        this.s.rearm();
                    }
                    Poll::Ready(r)
                }
                None => Poll::Pending,
            };
        }
        let r = this.s.poll_input(cx, |c| {
            let have = c.input.len() - c.head;
            if buf.is_empty() && c.head == 0 {
                let spare = std::mem::replace(buf, std::mem::take(&mut c.input));
                net.recycle(spare);
            } else {
                net.append(buf, &c.input[c.head..]);
                c.head = c.input.len();
            }
            have
        });
        if r.is_pending() && !buf.is_empty() {
            // Nothing waiting: lend the partial command's buffer, unless the slot holds an
            // input buffer of its own (a read that left some bytes).
            this.s.with(|c| {
                if c.input.capacity() == 0 && c.head == 0 {
                    let l = buf.len();
                    c.input = std::mem::take(buf);
                    c.head = l;
                    *lent = Some(l);
                    net.count(|s| s.lends += 1);
                }
            });
        }
        r
    }
}

impl Drop for ReadInto<'_> {
    /// A read given up (the connection had a message to push first) takes its buffer back;
    /// bytes that arrived meanwhile stay the slot's, unread, for the next read.
    fn drop(&mut self) {
        let Some(l) = self.lent.take() else {
            return;
        };
        let buf = &mut *self.buf;
        self.s.with(|c| {
            let mut input = std::mem::take(&mut c.input);
            c.head = 0;
            if input.len() > l {
                c.input = input.split_off(l);
            }
            *buf = input;
        });
    }
}

/// A listening socket served by this core's ring.
#[derive(Clone)]
pub struct RingListener {
    net: Rc<Net>,
    idx: usize,
    pub fd: RawFd,
}

impl RingListener {
    /// Takes over a bound, listening socket and arms a multishot accept on it.
    pub fn new(fd: RawFd) -> io::Result<RingListener> {
        let net = current()?;
        let (idx, gen) = net.alloc(Slot::Listen(ListenSlot {
            fd,
            gen: 0,
            accepted: VecDeque::new(),
            error: None,
            waiter: None,
            armed: true,
            pausing: false,
            closed: false,
        }));
        net.arm_accept(idx, fd, gen);
        Ok(RingListener { net, idx, fd })
    }

    /// Marks the listener closed: later accepts are refused and [`RingListener::accept`]
    /// waits forever (the process is exiting). True the first time.
    pub fn mark_closed(&self) -> bool {
        match self.net.slots.borrow_mut().get_mut(self.idx) {
            Some(Slot::Listen(l)) => !std::mem::replace(&mut l.closed, true),
            _ => false,
        }
    }

    /// The next accepted connection, or the error that ended the multishot accept (which
    /// the next call re-arms).
    pub async fn accept(&self) -> io::Result<RingStream> {
        let fd = std::future::poll_fn(|cx| {
            let mut slots = self.net.slots.borrow_mut();
            let Some(Slot::Listen(l)) = slots.get_mut(self.idx) else {
                return Poll::Ready(Err(io::Error::other("listener slot lost")));
            };
            if let Some(fd) = l.accepted.pop_front() {
                return Poll::Ready(Ok(fd));
            }
            if l.closed {
                return Poll::Pending;
            }
            if let Some(e) = l.error.take() {
                return Poll::Ready(Err(os_err(e)));
            }
            if !l.armed {
                l.armed = true;
                l.pausing = false;
                let (fd, gen) = (l.fd, l.gen);
                drop(slots);
                self.net.arm_accept(self.idx, fd, gen);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            l.waiter = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(RingStream::new(self.net.clone(), fd))
    }
}

/// A connected socket served by this core's ring.
pub struct RingStream {
    net: Rc<Net>,
    idx: usize,
    pub fd: RawFd,
}

impl RingStream {
    fn new(net: Rc<Net>, fd: RawFd) -> RingStream {
        let (idx, gen) = net.alloc(Slot::Conn(ConnSlot {
            fd,
            fixed: None,
            gen: 0,
            input: Vec::new(),
            head: 0,
            eof: false,
            error: None,
            reader: None,
            recv: Recv::Armed,
            paused: false,
            send: Vec::new(),
            sent: 0,
            sending: false,
            zc_now: false,
            send_zc: false,
            zc_notifs: 0,
            zc_held: Vec::new(),
            zc_off: false,
            detached: false,
            send_error: None,
            writer: None,
            dropped: false,
        }));
        // The first receive names the descriptor: it runs before the kernel has the socket
        // in the table, and a multishot takes its reference once for as long as it lasts.
        net.arm_recv(idx, fd, None, gen);
        net.update_fixed(idx, fd, gen);
        RingStream { net, idx, fd }
    }

    /// Serves connected socket `fd` (owned from now on) on this core's ring.
    pub(crate) fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<RingStream> {
        use std::os::fd::IntoRawFd;
        Ok(RingStream::new(current()?, fd.into_raw_fd()))
    }

    /// Two connected streams of a Unix socket pair (tests).
    #[cfg(test)]
    pub fn pair() -> io::Result<(RingStream, RingStream)> {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills the two descriptors of the array we own.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let net = current()?;
        Ok((
            RingStream::new(net.clone(), fds[0]),
            RingStream::new(net, fds[1]),
        ))
    }

    fn with<R>(&self, f: impl FnOnce(&mut ConnSlot) -> R) -> R {
        match self.net.slots.borrow_mut().get_mut(self.idx) {
            Some(Slot::Conn(c)) => f(c),
            _ => unreachable!("a stream's slot is freed only after the stream is dropped"),
        }
    }

    /// Copies received bytes into `buf`; 0 at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            self.poll_input(cx, |c| {
                let n = (c.input.len() - c.head).min(buf.len());
                buf[..n].copy_from_slice(&c.input[c.head..c.head + n]);
                c.head += n;
                n
            })
        })
        .await
    }

    /// Moves every received byte to the end of `buf`; Ok(0) at end of stream. An empty
    /// `buf` takes the ring's buffer as it is (no copy). A `buf` holding a partial command
    /// is lent to the stream while it waits: the receives append to it directly and it comes
    /// back with them (one copy of each byte, not two: provided buffer, then this). If
    /// bytes were waiting already, they are appended and the ring's buffer goes back to the
    /// core's pool. Either way the stream holds no input buffer afterwards, unless the read
    /// was given up while lent and bytes had arrived (they stay the stream's, in order).
    pub async fn read_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        ReadInto {
            s: self,
            buf,
            lent: None,
        }
        .await
    }

    /// Polls for received bytes: while there are some, `take` consumes what it wants of
    /// them (advancing `head`) and says how many; a drained input goes back to the core's
    /// pool, and a paused receive is re-armed once the input is read down. Without input:
    /// the stream's error, 0 at its end, or a wait.
    fn poll_input(
        &self,
        cx: &mut std::task::Context<'_>,
        take: impl FnOnce(&mut ConnSlot) -> usize,
    ) -> Poll<io::Result<usize>> {
        let (r, resume) = self.with(|c| {
            if c.input.len() > c.head {
                let n = take(c);
                if c.head == c.input.len() {
                    c.head = 0;
                    self.net.recycle(std::mem::take(&mut c.input));
                }
                return (Poll::Ready(Ok(n)), c.resume());
            }
            if let Some(e) = c.error {
                return (Poll::Ready(Err(os_err(e))), false);
            }
            if c.eof {
                return (Poll::Ready(Ok(0)), false);
            }
            c.reader = Some(cx.waker().clone());
            (Poll::Pending, false)
        });
        if resume {
            self.rearm();
        }
        r
    }

    /// Re-arms the receive of a stream whose input was read down (see [`ConnSlot::resume`]).
    fn rearm(&self) {
        let (fd, fixed, gen) = self.with(|c| {
            c.recv = Recv::Armed;
            (c.fd, c.fixed, c.gen)
        });
        self.net.arm_recv(self.idx, fd, fixed, gen);
    }

    /// Gives a drained buffer to the core's pool (see [`Net::recycle`]).
    pub fn recycle(&self, b: Vec<u8>) {
        self.net.recycle(b)
    }

    /// An empty buffer from the core's pool (see [`Net::take_buffer`]).
    pub fn take_buffer(&self, len: usize) -> Vec<u8> {
        self.net.take_buffer(len)
    }

    /// Sends all of `out` and hands back an empty buffer in its place: the bytes are not
    /// copied (the buffer is swapped into the ring for the send and swapped back).
    /// A send whose future was dropped still completes in the ring (the kernel holds its
    /// buffer); the next send waits for it first, so a buffer the kernel reads from is never
    /// swapped out, and the bytes go out in order.
    pub async fn send_owned(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.start_send(out, false).await?;
        std::future::poll_fn(|cx| {
            self.with(|c| {
                if c.sending {
                    c.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                std::mem::swap(out, &mut c.send);
                out.clear();
                Poll::Ready(match c.send_error.take() {
                    Some(e) => Err(os_err(e)),
                    None => Ok(()),
                })
            })
        })
        .await
    }

    /// Hands all of `out` to the ring for sending and returns without waiting for the
    /// kernel to take it, leaving an empty buffer in its place; the ring gives the buffer to
    /// the core's pool once sent. Sends stay in order: the next one waits for this one, and
    /// reports its error.
    pub async fn send_detached(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.start_send(out, true).await
    }

    /// Waits for the send in flight, if any (a detached one, or one whose future was
    /// dropped), fails with its error, else swaps `out` into the ring and queues its send.
    async fn start_send(&mut self, out: &mut Vec<u8>, detached: bool) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            self.with(|c| {
                if c.sending {
                    c.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                // The last send's outcome: an error ends this stream too.
                if let Some(e) = c.send_error.take() {
                    return Poll::Ready(Err(os_err(e)));
                }
                std::mem::swap(out, &mut c.send);
                c.sent = 0;
                c.sending = true;
                c.send_zc = false;
                c.detached = detached;
                Poll::Ready(Ok(()))
            })
        })
        .await?;
        self.net.push_send(self.idx);
        Ok(())
    }

    /// Sends a copy of `buf` (small replies off the hot path).
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut out = self.net.take_buffer(buf.len());
        out.extend_from_slice(buf);
        let r = self.send_owned(&mut out).await;
        self.net.recycle(out);
        r
    }

    fn sockaddr(&self, peer: bool) -> io::Result<SocketAddr> {
        // SAFETY: the descriptor is this stream's open socket; ManuallyDrop keeps the
        // temporary std stream from closing it.
        let s = std::mem::ManuallyDrop::new(unsafe {
            <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(self.fd)
        });
        if peer {
            s.peer_addr()
        } else {
            s.local_addr()
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sockaddr(true)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sockaddr(false)
    }

    /// Bytes received and not yet read, and the capacity holding them (CLIENT LIST).
    pub fn input_bytes(&self) -> (usize, usize) {
        self.with(|c| (c.input.len() - c.head, c.input.capacity()))
    }

    /// Resolves when the peer has closed the connection (or it failed), without reading:
    /// input that arrives meanwhile stays queued for the next read. For a connection
    /// parked in a blocking command, which must notice its client leave.
    pub async fn closed(&self) {
        std::future::poll_fn(|cx| {
            self.with(|c| {
                if c.eof || c.error.is_some() {
                    return Poll::Ready(());
                }
                c.reader = Some(cx.waker().clone());
                Poll::Pending
            })
        })
        .await
    }
}

impl Drop for RingStream {
    fn drop(&mut self) {
        let cancel = {
            let mut slots = self.net.slots.borrow_mut();
            let Some(Slot::Conn(c)) = slots.get_mut(self.idx) else {
                return;
            };
            c.dropped = true;
            c.reader = None;
            c.writer = None;
            let cancel = (c.recv == Recv::Armed).then(|| user_data(OP_RECV, self.idx, c.gen));
            self.net.maybe_release(self.idx, slots);
            cancel
        };
        if let Some(target) = cancel {
            self.net.cancel(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs an echo server on a fresh core with ring settings `cfg`: every connection's bytes
    /// come back `amplify` times, each read after `read_delay`, the first connection taken
    /// after `accept_delay`. Returns the port, and a receiver of the ring's counters sent each
    /// time a connection ends.
    fn echo_core(
        cfg: NetConfig,
        amplify: usize,
        read_delay: Option<Duration>,
        accept_delay: Option<Duration>,
    ) -> (u16, mpsc::Receiver<(NetStats, usize)>) {
        let (port_tx, port_rx) = mpsc::channel();
        let (stats_tx, stats_rx) = mpsc::channel();
        spawn_core(move || {
            echo_core_main(
                cfg,
                amplify,
                read_delay,
                accept_delay,
                port_tx,
                stats_tx,
                None,
            )
        });
        (port_rx.recv().unwrap(), stats_rx)
    }

    /// What a probe of an echo core answers: its buffers (in the kernel's ring, the target,
    /// resident bytes) and its counters.
    type Probe = ((u16, u16, usize), NetStats);

    /// An echo core (as [`echo_core`]) that answers each message on the returned sender
    /// with its [`Probe`], within 20 ms.
    fn echo_core_probed(cfg: NetConfig) -> (u16, mpsc::Sender<()>, mpsc::Receiver<Probe>) {
        let (port_tx, port_rx) = mpsc::channel();
        let (stats_tx, _stats_rx) = mpsc::channel();
        let (ask_tx, ask_rx) = mpsc::channel();
        let (answer_tx, answer_rx) = mpsc::channel();
        spawn_core(move || {
            let probe = Some((ask_rx, answer_tx));
            echo_core_main(cfg, 1, None, None, port_tx, stats_tx, probe)
        });
        (port_rx.recv().unwrap(), ask_tx, answer_rx)
    }

    /// Runs `main` on a new thread as a core (an executor with the core's bell). The
    /// thread is left behind when the test ends.
    fn spawn_core<F, Fut>(main: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        std::thread::spawn(move || {
            let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .make()
                .expect("executor");
            ex.run(async move {
                super::super::sched::init().expect("bell");
                super::super::sched::Tracked::new(main()).await
            });
        });
    }

    async fn echo_core_main(
        cfg: NetConfig,
        amplify: usize,
        read_delay: Option<Duration>,
        accept_delay: Option<Duration>,
        port_tx: mpsc::Sender<u16>,
        stats_tx: mpsc::Sender<(NetStats, usize)>,
        probe: Option<(mpsc::Receiver<()>, mpsc::Sender<Probe>)>,
    ) {
        let net = start(cfg).expect("network ring");
        if let Some((ask, answer)) = probe {
            let net = net.clone();
            super::super::spawn(async move {
                loop {
                    super::super::sleep(Duration::from_millis(20)).await;
                    if ask.try_recv().is_ok() && answer.send((net.buffers(), net.stats())).is_err()
                    {
                        break;
                    }
                }
            });
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(l);
        let listener = RingListener::new(fd).unwrap();
        port_tx.send(port).unwrap();
        if let Some(d) = accept_delay {
            super::super::sleep(d).await;
        }
        loop {
            let mut s = listener.accept().await.expect("accept");
            let (net, stats_tx) = (net.clone(), stats_tx.clone());
            super::super::spawn(async move {
                let mut buf = vec![0u8; 4 << 10];
                let mut out = Vec::new();
                loop {
                    if let Some(d) = read_delay {
                        super::super::sleep(d).await;
                    }
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    for _ in 0..amplify.max(1) {
                        out.extend_from_slice(&buf[..n]);
                    }
                    if s.send_owned(&mut out).await.is_err() {
                        break;
                    }
                }
                drop(s);
                let live = net
                    .slots
                    .borrow()
                    .iter()
                    .filter(|s| matches!(s, Slot::Conn(_)))
                    .count();
                let _ = stats_tx.send((net.stats(), live));
            });
        }
    }

    /// Sends `data` from one thread while reading the echo on this one; the echo must be
    /// the same bytes.
    fn echo_round_trip(mut c: TcpStream, data: Vec<u8>) {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = c.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
        let mut got = vec![0u8; data.len()];
        c.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        assert!(got == data, "the echo differs from what was sent");
    }

    /// The default ring with `buffers` provided buffers of `size` bytes, `initial` of them
    /// in the kernel's ring at first.
    fn buffers_of(buffers: u16, initial: u16, size: usize) -> NetConfig {
        NetConfig {
            buffers,
            initial_buffers: initial,
            buffer_size: size,
            ..NetConfig::default()
        }
    }

    /// `clients` clients at once, each with a connection of its own, echo `bytes` bytes.
    fn echo_at_once(port: u16, clients: u8, bytes: usize) {
        let clients: Vec<_> = (0..clients)
            .map(|i| {
                std::thread::spawn(move || {
                    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    echo_round_trip(c, pattern(bytes, i));
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }

    /// Runs `main` on a fresh core with its network ring; fails if `main` panics or takes
    /// more than 30 s. (The core's thread is left behind, as the echo cores are: glommio
    /// waits at exit for the driver's read of the ring's eventfd.)
    fn on_core<F, Fut>(main: F)
    where
        F: FnOnce(Rc<Net>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        on_core_with(NetConfig::default(), main)
    }

    fn on_core_with<F, Fut>(cfg: NetConfig, main: F)
    where
        F: FnOnce(Rc<Net>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let (done_tx, done_rx) = mpsc::channel();
        spawn_core(move || async move {
            let net = start(cfg).expect("network ring");
            main(net).await;
            done_tx.send(()).expect("the test waits");
            std::future::pending::<()>().await
        });
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the test on the core failed or hung");
    }

    /// `read_into` moves what was received: into an empty buffer without a copy (the
    /// ring's buffer changes hands), after a partial command's bytes otherwise. Either way
    /// the stream keeps no input buffer; drained buffers go to the core's pool, which keeps
    /// at most POOL_KEEP of them, none larger than INPUT_KEEP.
    #[test]
    fn read_into_moves_the_input_and_keeps_no_buffer() {
        on_core(|net| async move {
            let (mut a, mut b) = RingStream::pair().expect("pair");
            let held = |s: &RingStream| s.with(|c| c.input.capacity());
            a.write_all(b"hello").await.unwrap();
            let mut got = Vec::new();
            assert_eq!(b.read_into(&mut got).await.unwrap(), 5);
            assert_eq!(got, b"hello");
            assert!(got.capacity() >= POOL_FRESH, "not the ring's buffer");
            assert_eq!(held(&b), 0);
            // Bytes already waiting when a partial command's read comes: appended, and the
            // ring's buffer goes to the pool (nothing is lent).
            a.write_all(b" world").await.unwrap();
            crate::runtime::sleep(std::time::Duration::from_millis(20)).await;
            assert!(held(&b) > 0, "the bytes did not wait in the stream");
            assert_eq!(b.read_into(&mut got).await.unwrap(), 6);
            assert_eq!(got, b"hello world");
            assert_eq!(held(&b), 0);
            assert_eq!(net.stats().lends, 0);
            let pooled = net.pool.borrow().len();
            assert!(pooled >= 1, "the drained buffer was not pooled");
            b.recycle(got);
            assert_eq!(net.pool.borrow().len(), pooled + 1);
            for _ in 0..2 * POOL_KEEP {
                net.recycle(Vec::with_capacity(100));
            }
            net.recycle(Vec::with_capacity(INPUT_KEEP + 1));
            assert_eq!(net.pool.borrow().len(), POOL_KEEP);
            assert!(net
                .pool
                .borrow()
                .iter()
                .all(|b| b.is_empty() && b.capacity() <= INPUT_KEEP));
            // Large buffers fill the pool's byte bound before its count.
            net.release_pool();
            for _ in 0..8 {
                net.recycle(Vec::with_capacity(INPUT_KEEP));
            }
            assert_eq!(net.pool.borrow().len(), POOL_BYTES / INPUT_KEEP);
            let bytes: usize = net.pool.borrow().iter().map(|b| b.capacity()).sum();
            assert_eq!(net.pool_bytes.get(), bytes);
            assert!(bytes <= POOL_BYTES);
            let taken = net.take_buffer(1);
            assert_eq!(net.pool_bytes.get(), bytes - INPUT_KEEP);
            drop(taken);
            drop(a);
            assert_eq!(
                b.read_into(&mut Vec::new()).await.unwrap(),
                0,
                "end of stream"
            );
        });
    }

    /// A partial command's buffer waiting for more is lent to the receive: the bytes land in
    /// it (the same allocation comes back, the partial bytes kept), and a read given up
    /// while it is lent gives it back, leaving what arrived meanwhile to the next read.
    #[test]
    fn a_waiting_partial_buffer_is_lent_to_the_receive_and_comes_back() {
        on_core(|net| async move {
            let (mut a, mut b) = RingStream::pair().expect("pair");
            let mut got = Vec::with_capacity(1 << 20);
            got.extend_from_slice(b"partial:");
            let at = got.as_ptr() as usize;
            let body = vec![b'x'; 100_000];
            let (_, read) = futures_lite::future::zip(
                async {
                    crate::runtime::sleep(std::time::Duration::from_millis(20)).await;
                    a.write_all(&body).await.unwrap();
                },
                async {
                    while got.len() < 8 + body.len() {
                        b.read_into(&mut got).await.unwrap();
                    }
                },
            )
            .await;
            let () = read;
            assert!(net.stats().lends >= 1, "never lent");
            assert_eq!(
                got.as_ptr() as usize,
                at,
                "the bytes were not received into it"
            );
            assert_eq!(&got[..8], b"partial:");
            assert!(got[8..].iter().all(|&c| c == b'x'));
            assert_eq!(
                b.with(|c| c.input.capacity()),
                0,
                "the stream kept a buffer"
            );

            // Given up while lent, with bytes arriving meanwhile.
            let mut part = Vec::with_capacity(4096);
            part.extend_from_slice(b"p");
            {
                let mut fut = std::pin::pin!(b.read_into(&mut part));
                let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                assert!(first.is_pending(), "nothing was sent yet");
                a.write_all(b"mid").await.unwrap();
                crate::runtime::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(part, b"p", "the lent buffer did not come back as it was");
            let mut next = Vec::new();
            assert_eq!(b.read_into(&mut next).await.unwrap(), 3);
            assert_eq!(next, b"mid", "what arrived while lent was lost");
            drop(a);
            assert_eq!(b.read_into(&mut part).await.unwrap(), 0, "end of stream");
            assert_eq!(part, b"p");
        });
    }

    /// A client streaming more than INPUT_KEEP at a time: its input moves once into a
    /// streaming buffer instead of doubling from POOL_FRESH, the drained buffer is kept for
    /// the next cycle (the same allocation serves it), and trims free the kept ones once a
    /// period passes without use.
    #[test]
    fn streamed_input_reuses_one_buffer_per_cycle() {
        on_core(|net| async move {
            let (mut a, mut b) = RingStream::pair().expect("pair");
            let chunk = vec![b'x'; 3 * INPUT_KEEP];
            let mut seen = Vec::new();
            for _ in 0..3 {
                a.write_all(&chunk).await.unwrap();
                // A partial command's bytes, as the connection keeps them between reads.
                let mut got = b"*1\r\n".to_vec();
                let mut n = 0;
                while n < chunk.len() {
                    n += b.read_into(&mut got).await.unwrap();
                }
                assert_eq!(got.len(), chunk.len() + 4);
                assert!(got.capacity().is_power_of_two() && got.capacity() > INPUT_KEEP);
                seen.push(got.as_ptr() as usize);
                b.recycle(got);
                let streams = net.streams.borrow();
                assert!(!streams.is_empty() && streams.len() <= STREAM_KEEP);
                assert!(streams
                    .iter()
                    .all(|s| s.is_empty() && s.capacity() > INPUT_KEEP));
            }
            // Two buffers at most take turns (the connection's and the ring's input).
            seen.sort_unstable();
            seen.dedup();
            assert!(seen.len() <= 2, "a new buffer per cycle: {seen:?}");
            // Nor is more than STREAM_BYTES kept.
            let kept = |net: &Net| {
                net.streams
                    .borrow()
                    .iter()
                    .map(|s| s.capacity())
                    .sum::<usize>()
            };
            // A large reply's buffer is kept too, and a large take hands it back.
            let before = kept(&net);
            let reply = Vec::<u8>::with_capacity(4 * INPUT_KEEP);
            let at = reply.as_ptr() as usize;
            net.recycle(reply);
            assert_eq!(
                kept(&net),
                before + 4 * INPUT_KEEP,
                "a large reply buffer was freed"
            );
            let again = net.take_buffer(3 * INPUT_KEEP);
            assert_eq!(again.as_ptr() as usize, at, "not the kept buffer");
            assert_eq!(kept(&net), before);
            let huge = net.take_buffer(2 * STREAM_BYTES);
            assert!(
                huge.capacity() <= INPUT_KEEP,
                "a buffer past STREAM_BYTES allocated on a guess: {}",
                huge.capacity()
            );
            assert!(
                net.take_buffer(INPUT_KEEP).capacity() <= 2 * INPUT_KEEP,
                "small takes use the pool"
            );
            net.recycle(again);
            let before = kept(&net);
            net.recycle(Vec::with_capacity(2 * STREAM_BYTES));
            assert_eq!(kept(&net), before, "past STREAM_BYTES, kept");
            net.recycle(Vec::with_capacity(STREAM_BYTES / 2 + 1));
            assert!(kept(&net) <= STREAM_BYTES && net.streams.borrow().len() <= STREAM_KEEP);
            // A buffer of the whole bound, left by a past load, gives way to the sizes in
            // use now: four 300 KiB inputs taken and given back in turns stay kept.
            net.recycle(Vec::with_capacity(STREAM_BYTES));
            for round in 0..3 {
                let in_use: Vec<Vec<u8>> = (0..4).map(|_| net.take_buffer(300 << 10)).collect();
                in_use.into_iter().for_each(|b| net.recycle(b));
                if round > 0 {
                    let caps: Vec<usize> =
                        net.streams.borrow().iter().map(|s| s.capacity()).collect();
                    assert_eq!(caps, vec![512 << 10; 4], "round {round}: not kept");
                }
            }
            net.trim_streams();
            assert!(!net.streams.borrow().is_empty(), "used since the last trim");
            net.trim_streams();
            assert!(net.streams.borrow().is_empty(), "idle for a period: freed");
        });
    }

    /// Connections in the table of direct descriptors: their sends and receives name the
    /// socket by index once the kernel has it there, a slot past the table is served by
    /// descriptor, and a dropped stream's socket leaves the table, so its peer sees the end
    /// (the table's reference would otherwise keep the socket open after `close`).
    #[test]
    fn connections_use_direct_descriptors_and_leave_the_table_on_close() {
        let cfg = NetConfig {
            direct_descriptors: 3,
            ..NetConfig::default()
        };
        on_core_with(cfg, |net| async move {
            assert_eq!(net.fixed.len(), 3, "a table of the size asked");
            let (mut a, mut b) = RingStream::pair().expect("pair");
            let (mut c, mut d) = RingStream::pair().expect("pair");
            let fixed = |s: &RingStream| s.with(|c| c.fixed);
            // A round trip each way lets the updates complete (they run in the first
            // enter), and the replies after it go by index.
            for round in 0..3 {
                for (x, y) in [(&mut a, &mut b), (&mut c, &mut d)] {
                    x.write_all(format!("ping{round}").as_bytes())
                        .await
                        .unwrap();
                    let mut got = Vec::new();
                    y.read_into(&mut got).await.unwrap();
                    assert_eq!(got, format!("ping{round}").as_bytes());
                    y.write_all(b"pong").await.unwrap();
                    let mut got = Vec::new();
                    x.read_into(&mut got).await.unwrap();
                    assert_eq!(got, b"pong");
                }
            }
            let (ia, ib, ic, id) = (a.idx, b.idx, c.idx, d.idx);
            assert_eq!(fixed(&a), Some(ia as u32));
            assert_eq!(fixed(&b), Some(ib as u32));
            let past: Vec<_> = [(&c, ic), (&d, id)]
                .into_iter()
                .filter(|(_, i)| *i >= 3)
                .collect();
            assert!(
                !past.is_empty(),
                "slots {ia} {ib} {ic} {id}: none past the table"
            );
            for (s, _) in past {
                assert_eq!(fixed(s), None, "a slot past the table has no index");
            }
            assert!(net.stats().direct >= 2);
            // A's stream goes: its socket must close although the table held it.
            drop(a);
            let mut got = Vec::new();
            assert_eq!(
                b.read_into(&mut got).await.unwrap(),
                0,
                "the peer saw the end"
            );
            // The freed slot serves the next connection, by index again.
            let (mut e, mut f) = RingStream::pair().expect("pair");
            for _ in 0..2 {
                e.write_all(b"again").await.unwrap();
                let mut got = Vec::new();
                f.read_into(&mut got).await.unwrap();
                assert_eq!(got, b"again");
            }
            assert!(e.idx == ia || f.idx == ia, "the freed slot was reused");
            let reused = if e.idx == ia { &e } else { &f };
            assert_eq!(fixed(reused), Some(ia as u32));
            drop((b, c, d, e, f));
        });
    }

    /// Replies of `zerocopy-send-min-bytes` or more go out zero-copy. On loopback the kernel
    /// copies them anyway and says so in the notification: the connection then sends
    /// plainly. A socket that cannot send zero-copy (a Unix socket) gets the bytes by a
    /// plain send instead. Every byte arrives either way; the connection gets its buffer
    /// back once sent, and a zero-copy buffer waits apart for its notification.
    #[test]
    fn large_replies_go_zero_copy_until_the_kernel_copies_them() {
        const MIN: usize = 64 << 10;
        // Off by default; on for this test (other tests' large sends then try it too, and
        // must not mind).
        set_zerocopy_min(MIN);
        on_core(|net| async move {
            use std::os::fd::OwnedFd;
            if !net.zc_ok {
                return;
            }
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            let mut a = RingStream::adopt(OwnedFd::from(server)).unwrap();
            let mut b = RingStream::adopt(OwnedFd::from(client)).unwrap();
            let (mut u, mut v) = RingStream::pair().expect("pair");
            let big = pattern(4 * MIN, 5);
            let state = |s: &RingStream| s.with(|c| (c.zc_off, c.send_zc, c.sending));
            let due = |s: &RingStream| s.with(|c| (c.zc_notifs, c.zc_held.capacity()));
            let copied = net.stats().zc_copied;
            for (tcp, (x, y)) in [(true, (&mut a, &mut b)), (false, (&mut u, &mut v))] {
                for round in 0..2 {
                    let mut out = big.clone();
                    x.send_owned(&mut out).await.unwrap();
                    assert!(out.is_empty(), "the buffer came back emptied");
                    let (_, zc, sending) = state(x);
                    assert!(!sending, "returned while sending");
                    // Only TCP's first large send went zero-copy (the Unix socket's was
                    // refused and resent plainly).
                    assert_eq!(zc, tcp && round == 0, "tcp {tcp} round {round}");
                    let mut got = Vec::new();
                    while got.len() < big.len() {
                        assert!(y.read_into(&mut got).await.unwrap() > 0, "closed early");
                    }
                    assert!(got == big, "round {round}: the bytes differ");
                    for _ in 0..1000 {
                        if due(x).0 <= 0 {
                            break;
                        }
                        crate::runtime::sleep(Duration::from_millis(1)).await;
                    }
                    assert_eq!(due(x), (0, 0), "the notification never came");
                    assert!(state(x).0, "round {round}: zero-copy still on");
                }
            }
            assert_eq!(
                net.stats().zc_copied,
                copied + 1,
                "loopback's copy was reported once; the Unix socket's refusal is not a copy"
            );
            // A small reply never goes zero-copy.
            let (mut s, t) = RingStream::pair().expect("pair");
            s.write_all(b"small").await.unwrap();
            assert_eq!(state(&s), (false, false, false));
            drop((a, b, u, v, s, t));
        });
    }

    #[test]
    fn kernel_versions_are_read_from_the_release() {
        assert_eq!(kernel_version("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert!(kernel_version("5.15.0").is_some_and(|v| v < (6, 0)));
        assert_eq!(kernel_version("unknown"), None);
    }

    /// 50 clients connect while the core takes none for 300 ms and may queue only 8: the
    /// multishot accept is cancelled at the bound (the rest wait in the kernel's backlog),
    /// re-armed once the queue has been taken, and every client is served.
    #[test]
    fn the_accept_queue_is_bounded_and_resumes() {
        let cfg = NetConfig {
            accept_queue: 8,
            ..NetConfig::default()
        };
        let (port, stats) = echo_core(cfg, 1, None, Some(Duration::from_millis(300)));
        let mut conns: Vec<TcpStream> = (0..50)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(format!("{i:04}").as_bytes()).unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(buf, *format!("{i:04}").as_bytes(), "connection {i}");
        }
        drop(conns);
        let (s, _) = stats.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            s.accept_pauses > 0,
            "the queue never reached its bound: {s:?}"
        );
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Four 64-byte buffers for eight clients sending 64 KiB each at once: the buffers run
    /// out again and again (ENOBUFS ends the multishot receive), every receive is re-armed,
    /// and every byte comes back in order.
    #[test]
    fn buffer_exhaustion_rearms_and_loses_nothing() {
        let cfg = NetConfig {
            entries: 64,
            ..buffers_of(4, 4, 64)
        };
        let (port, stats) = echo_core(cfg, 1, None, None);
        echo_at_once(port, 8, 64 << 10);
        let (s, _) = stats.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(s.enobufs > 0, "the buffers never ran out: {s:?}");
        assert!(s.rearms >= s.enobufs, "{s:?}");
    }

    /// The provided buffers follow the load: one client cycles through the ring's first
    /// few buffers and touches no other; 64 clients at once run the ring out (ENOBUFS), which
    /// grows it; once the load is gone, trims give the buffers' pages back and the ring's
    /// target returns to where it started. Every byte echoes back right throughout.
    #[test]
    fn provided_buffers_follow_the_load() {
        let (port, ask, answers) = echo_core_probed(buffers_of(256, 4, 4096));
        let probe = || {
            ask.send(()).unwrap();
            answers.recv_timeout(Duration::from_secs(10)).unwrap()
        };
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        for i in 0..200u8 {
            echo_round_trip(c.try_clone().unwrap(), pattern(100, i));
        }
        let ((_, target, resident), _) = probe();
        assert_eq!(target, 4, "one client at a time needs no more");
        assert!(
            resident <= 4 * 4096,
            "one client touched {resident} bytes of buffers"
        );

        echo_at_once(port, 64, 256 << 10);
        let ((_, grown, busy), s) = probe();
        assert!(s.enobufs > 0 && grown > 4, "the ring never grew: {s:?}");
        assert!(
            busy > 4 * 4096,
            "the burst used only {busy} bytes of buffers"
        );

        // Idle: within a few trims (one a second at most) the pages go back.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let ((_, target, resident), s) = probe();
            if target == 4 && resident < busy && s.buffers_released > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still {resident} bytes resident, target {target}: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        echo_round_trip(c, pattern(5000, 9));
    }

    /// A 16 MiB reply to a client with a small receive buffer that reads slowly: the kernel
    /// takes it in many short sends, each resumed where the last stopped.
    #[test]
    fn short_sends_are_resumed() {
        let (port, _stats) = echo_core(NetConfig::default(), 16 << 10, None, None);
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        c.set_recv_buffer_size(4096).unwrap();
        c.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
            .unwrap();
        let mut c: TcpStream = c.into();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let unit = pattern(1024, 7);
        c.write_all(&unit).unwrap();
        let mut got = vec![0u8; 16 << 20];
        let mut at = 0;
        while at < got.len() {
            let end = (at + 4096).min(got.len());
            let n = c.read(&mut got[at..end]).unwrap();
            assert!(n > 0, "closed after {at} bytes");
            at += n;
            if at % (1 << 20) < 4096 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for (i, chunk) in got.chunks(1024).enumerate() {
            assert!(chunk == unit, "chunk {i} differs");
        }
    }

    /// A connection that does not read while its client keeps sending is paused at
    /// INPUT_HIGH (its receive cancelled) and resumed when it reads again; nothing is lost.
    #[test]
    fn unread_input_pauses_the_receive_and_resumes() {
        let (port, stats) = echo_core(
            NetConfig::default(),
            1,
            Some(Duration::from_millis(20)),
            None,
        );
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        echo_round_trip(c, pattern(2 << 20, 3));
        let (s, _) = stats.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(s.pauses > 0, "never paused: {s:?}");
    }

    /// A peer that resets mid-pipeline, and one that half-closes: the first ends its
    /// connection with an error or end of stream and frees its slot; the second still gets
    /// the replies to what it sent before its FIN. Other connections go on.
    #[test]
    fn resets_and_half_closes() {
        let (port, stats) = echo_core(NetConfig::default(), 1, None, None);
        let mut steady = TcpStream::connect(("127.0.0.1", port)).unwrap();
        steady
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Reset: SO_LINGER 0 makes close send RST with unread replies pending.
        let r = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        r.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
            .unwrap();
        r.set_linger(Some(Duration::ZERO)).unwrap();
        let mut rs: TcpStream = r.into();
        rs.write_all(&pattern(200 << 10, 1)).unwrap();
        drop(rs);
        let (_, _) = stats
            .recv_timeout(Duration::from_secs(10))
            .expect("the reset connection ends");
        // Half-close: the reply to everything sent before the FIN arrives in full.
        let mut h = TcpStream::connect(("127.0.0.1", port)).unwrap();
        h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data = pattern(100 << 10, 2);
        h.write_all(&data).unwrap();
        h.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        h.read_to_end(&mut got).unwrap();
        assert!(
            got == data,
            "half-closed peer got {} of {} bytes",
            got.len(),
            data.len()
        );
        let (_, live) = stats
            .recv_timeout(Duration::from_secs(10))
            .expect("the half-closed connection ends");
        assert_eq!(live, 1, "only the steady connection is left");
        steady.write_all(b"still here").unwrap();
        let mut buf = [0u8; 10];
        steady.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"still here");
    }

    /// Raises RLIMIT_NOFILE to `want` (the hard limit too where allowed).
    fn raise_nofile(want: u64) {
        // SAFETY: getrlimit/setrlimit on a struct we own.
        unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            if lim.rlim_cur < want {
                let new = libc::rlimit {
                    rlim_cur: want,
                    rlim_max: lim.rlim_max.max(want),
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
                    let soft = libc::rlimit {
                        rlim_cur: lim.rlim_max.min(want),
                        rlim_max: lim.rlim_max,
                    };
                    libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
                }
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            }
            assert!(
                lim.rlim_cur >= want,
                "RLIMIT_NOFILE {} is below the {want} this test needs",
                lim.rlim_cur
            );
        }
    }

    const MANY: usize = 10_000;

    /// 10,000 connections at once on one core, each answered. The clients run in a child
    /// process (this test binary, running `ten_thousand_clients`), so that each process
    /// needs only 10,000 descriptors.
    #[test]
    fn ten_thousand_connections() {
        raise_nofile(MANY as u64 + 256);
        let (port, _stats) = echo_core(NetConfig::default(), 1, None, None);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "runtime::ring::tests::ten_thousand_clients",
                "--ignored",
                "--nocapture",
            ])
            .env("PERCORE_RING_TEST_PORT", port.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "clients failed:\n{text}"
        );
    }

    /// The client side of `ten_thousand_connections` (run by it, not on its own).
    #[test]
    #[ignore]
    fn ten_thousand_clients() {
        let Ok(port) = std::env::var("PERCORE_RING_TEST_PORT") else {
            return;
        };
        let port: u16 = port.parse().unwrap();
        raise_nofile(MANY as u64 + 256);
        let mut conns: Vec<TcpStream> = (0..MANY)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(format!("{i:08}").as_bytes()).unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = [0u8; 8];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(buf, *format!("{i:08}").as_bytes(), "connection {i}");
        }
    }
}
