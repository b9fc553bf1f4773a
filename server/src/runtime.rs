//! The one module that names glommio and io_uring. Everything else in the server sees this
//! small interface — executors, listeners, streams, mailboxes between cores, timers, task
//! spawning — so the router, the connections' command logic and the shard know nothing of
//! either.
//!
//! Two rings per core, one sleeping point at a time. glommio remains each core's executor:
//! tasks and task queues with shares, and O_DIRECT snapshot files on its own rings. Sockets
//! are served by a second ring of the core's own ([`ring`], on the `io-uring` crate):
//! multishot accept, multishot receive into provided buffers, every send of a loop turn in
//! one submission, SINGLE_ISSUER + DEFER_TASKRUN, at most one `io_uring_enter` per turn and
//! none when the kernel holds nothing for the ring.
//!
//! Where the core sleeps ([`sched`]). Every task is polled with a waker of ours, so the
//! core knows how many of its tasks are runnable, and a wake from another thread comes
//! through the core's bell (an eventfd whose read is armed in the network ring) instead of
//! glommio's cross-thread queue; timers ([`sleep`]) are the core's own too. When nothing is
//! runnable and glommio has no I/O of its own in flight, the network driver sleeps in its
//! ring: one enter that submits the turn's sends and waits for a completion, the bell or the
//! next timer. Otherwise (other tasks runnable, or a snapshot file open) it sleeps in glommio:
//! the ring's registered eventfd is enabled and read through glommio, which then wakes for
//! network work too; while the core is busy the eventfd stays disabled
//! (IORING_CQ_EVENTFD_DISABLED), so the bridge costs nothing per request.
//! Measured at 10k requests/s on one shard (CPU 0, generator on CPU 1): 2.77 CPU seconds in
//! 10 s against Redis's 2.76; sleeping in glommio as before, 8.45 (glommio re-arms two
//! preemption timers and enters each of its rings twice per wake-up: 11 enters and 12.6
//! submissions per request).
//!
//! glommio's parking bug (its run loop sleeps when its preemption timer fired before the
//! first task queue ran, runnable tasks or not; fixed in the glommio/glommio fork, PR 53,
//! September 2026, in no crates.io release) is guarded by the driver: while it is runnable
//! it keeps a chain of glommio timers 2 ms to 256 ms ahead, which cost nothing unless glommio
//! sleeps. The main thread's rescue ([`rescue_stranded_cores`]) remains the last resort.
//!
//! Why not glommio's sockets: they are readiness-based (a `recv` syscall first, a POLL_ADD
//! when it would block, the preemption timer re-armed each turn): ~9 `io_uring_enter` and
//! 13 submissions per request at pipeline 1, and 1.4–3× Redis's CPU per request
//! (loadtest/results/2026-11-22). With the network ring, the same machine and run measured
//! 0.63–0.68× Redis's server CPU per request at pipeline 1 and 32 (issue 14's results).
//!
//! Mailboxes are bounded MPSC queues (flume), one inbox per core that every other core
//! sends into. A full inbox makes the sender wait: backpressure, never an unbounded queue.
//! They replaced glommio's shared channels, whose connect handshake does not wake a sleeping
//! peer executor: about one start in a hundred hung with a core parked forever in it.
//! A message to a sleeping core costs one eventfd write (its bell); to an awake core none.

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares, TaskQueueHandle};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

mod bufring;
mod outbound;
mod ring;
mod sched;
mod tls;
pub use outbound::OutStream;
pub use ring::{set_zerocopy_min, NetStats, ZC_MIN_DEFAULT};

/// This core's network ring counters (INFO `# Shards`).
pub fn net_stats() -> NetStats {
    ring::current().map(|n| n.stats()).unwrap_or_default()
}

/// Frees the spare network buffers this core keeps for reuse, in bytes (0 off a core):
/// under `maxmemory` they go before any key is evicted.
pub fn release_spare_buffers() -> usize {
    ring::current().map(|n| n.release_spares()).unwrap_or(0)
}

/// What one core receives at boot: a sender to every core's inbox and its own inbox.
pub struct MailboxEnds<T: Send + 'static> {
    senders: Vec<flume::Sender<T>>,
    inbox: flume::Receiver<T>,
}

/// Builds the mesh: `ends[i]` belongs to core i. Each inbox holds at most `capacity`
/// messages per sending core.
pub fn mesh<T: Send + 'static>(n: usize, capacity: usize) -> Vec<MailboxEnds<T>> {
    let channels: Vec<_> = (0..n)
        .map(|_| flume::bounded(capacity * n.saturating_sub(1).max(1)))
        .collect();
    let senders: Vec<flume::Sender<T>> = channels.iter().map(|(s, _)| s.clone()).collect();
    channels
        .into_iter()
        .map(|(_, r)| MailboxEnds {
            senders: senders.clone(),
            inbox: r,
        })
        .collect()
}

/// A core's sending side of the mesh.
pub struct Mailbox<T: Send + 'static> {
    senders: Vec<flume::Sender<T>>,
    /// Per destination, messages [`Mailbox::send_now`] could not hand over at once, sent in
    /// order by a task while `draining` (later ones queue behind them).
    backlog: Rc<Backlog<T>>,
}

struct Backlog<T> {
    queued: RefCell<Vec<std::collections::VecDeque<T>>>,
    draining: RefCell<Vec<bool>>,
}

impl<T: Send + 'static> Mailbox<T> {
    /// Sends to core `to`, waiting while its inbox is full. Errors when that core is gone.
    pub async fn send(&self, to: usize, msg: T) -> Result<(), ()> {
        match self.senders.get(to) {
            Some(s) => s.send_async(msg).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Sends to core `to` without waiting: at once when its inbox has room, else from a
    /// task of its own (fire-and-forget messages sent from code that cannot wait).
    /// Messages to one core keep their order either way.
    pub fn send_now(&self, to: usize, msg: T) {
        let Some(s) = self.senders.get(to) else {
            return;
        };
        let b = &self.backlog;
        if !b.draining.borrow()[to] {
            match s.try_send(msg) {
                Err(flume::TrySendError::Full(msg)) => b.queued.borrow_mut()[to].push_back(msg),
                // Sent, or that core is gone (the process is exiting).
                _ => return,
            }
            b.draining.borrow_mut()[to] = true;
            let (s, b) = (s.clone(), b.clone());
            spawn(async move {
                loop {
                    let next = b.queued.borrow_mut()[to].pop_front();
                    let Some(msg) = next else { break };
                    if s.send_async(msg).await.is_err() {
                        break;
                    }
                }
                b.queued.borrow_mut()[to].clear();
                b.draining.borrow_mut()[to] = false;
            });
        } else {
            b.queued.borrow_mut()[to].push_back(msg);
        }
    }

    /// Messages waiting in core `of`'s inbox (for the queue-depth gauge).
    pub fn depth(&self, of: usize) -> usize {
        self.senders.get(of).map_or(0, |s| s.len())
    }
}

impl<T: Send + 'static> MailboxEnds<T> {
    /// Splits into this core's mailbox and inbox (nothing to connect: ready at once).
    pub fn split(self) -> (Mailbox<T>, Inbox<T>) {
        let n = self.senders.len();
        (
            Mailbox {
                senders: self.senders,
                backlog: Rc::new(Backlog {
                    queued: RefCell::new((0..n).map(|_| Default::default()).collect()),
                    draining: RefCell::new(vec![false; n]),
                }),
            },
            Inbox(self.inbox),
        )
    }
}

/// Messages from every other core.
pub struct Inbox<T: Send + 'static>(flume::Receiver<T>);

impl<T: Send + 'static> Inbox<T> {
    pub async fn recv(&self) -> Option<T> {
        self.0.recv_async().await.ok()
    }
}

/// Starts a pinned (when `cpu` is given) executor thread running `main`.
pub fn start_core<F, Fut>(
    index: usize,
    cpu: Option<usize>,
    io_memory: usize,
    main: F,
) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    start_core_with(index, cpu, io_memory, true, main)
}

/// [`start_core`], without the guard timers of the network driver when `guard` is false
/// (tests of the rescue from outside).
fn start_core_with<F, Fut>(
    index: usize,
    cpu: Option<usize>,
    io_memory: usize,
    guard: bool,
    main: F,
) -> io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let placement = match cpu {
        Some(c) => Placement::Fixed(c),
        None => Placement::Unbound,
    };
    let builder = LocalExecutorBuilder::new(placement)
        .name(&format!("percore-shard-{index}"))
        .io_memory(io_memory);
    // glommio's own join handle wraps a thread; a plain thread lets the caller report a
    // failure to build the executor (io_uring unavailable, locked memory) precisely.
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let handle = std::thread::Builder::new()
        .name(format!("percore-{index}"))
        .spawn(move || {
            let ex = match builder.make() {
                Ok(ex) => ex,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            ex.run(async move {
                let bell = match sched::init() {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(format!("creating the core's wake-up eventfd: {e}")));
                        return;
                    }
                };
                ring::set_guard(guard);
                match ring::start(ring::NetConfig::default()) {
                    Ok(net) => {
                        if index == 0 {
                            crate::log::notice(&format!(
                                "network ring mode: {}{}",
                                net.mode,
                                match net.ring_fd_registered() {
                                    true => ", ring fd registered",
                                    false => ", ring fd not registered (Linux 5.18+ registers it)",
                                }
                            ));
                        }
                        let _ = tx.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("network ring: {e}")));
                        return;
                    }
                }
                // Untracked on purpose: the main thread wakes it through glommio's own
                // cross-thread path, the one way into a core that glommio left asleep.
                glommio::spawn_local(RescueSlot::register(index, bell)).detach();
                sched::Tracked::new(main()).await;
                sched::exit();
            });
            RescueSlot::unregister();
        })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(io::Error::other(e)),
        Err(_) => Err(io::Error::other("executor thread exited during start")),
    }
}

/// The background task's next tick is due at `at` (for the main thread's rescue, which
/// wakes a core whose tick is overdue while it sleeps).
pub fn guard_tick(at: Instant) {
    RESCUE.with(|r| {
        if let Some(r) = r.borrow().as_ref() {
            r.due_ms.store(rescue_clock_ms(at), Ordering::Relaxed);
        }
    });
}

/// How late a core's background tick may be before the main thread wakes the core from
/// outside ([`rescue_stranded_cores`]).
const RESCUE_SLACK: Duration = Duration::from_millis(50);

/// What the main thread needs to rescue a core that sleeps with runnable tasks: when the
/// core's next background tick is due, and the waker of a task on the core.
///
/// The driver's guard timers end most strands within 2 ms, but they live in the same
/// executor: when every one of them has fired into a strand (seen under CPU contention: two
/// busy threads pinned beside a server taking 8 MB requests, 4 runs in 25 with a core asleep
/// for good, no timer left in any ring, and the network ring holding an unsubmitted entry),
/// nothing on the core can wake it. A wake-up from another thread can: glommio's foreign
/// waker path writes the executor's eventfd, whose read is always armed while it sleeps
/// (writing that eventfd by hand ended such a sleep at once); the core's bell is written
/// too, for a core asleep in its network ring. A stranded core's background
/// tick does not run, so a core asleep with its tick overdue by [`RESCUE_SLACK`] is the sign
/// (a core busy in a long command is overdue too, but running).
struct Rescue {
    /// The core's index (for the log).
    core: usize,
    /// The core's thread id, to read its scheduler state.
    tid: libc::pid_t,
    /// Milliseconds on [`rescue_clock_ms`] when the next tick is due; 0 before the first.
    due_ms: std::sync::atomic::AtomicU64,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
    /// The core's bell: ends a sleep in its network ring.
    bell: std::sync::Arc<sched::Bell>,
    /// Wake-ups given from outside.
    kicks: std::sync::atomic::AtomicU64,
    /// The last look found the core asleep with tasks runnable (see
    /// [`rescue_stranded_cores`]).
    suspect: std::sync::atomic::AtomicBool,
    /// Whether a strand of this core has been logged.
    logged: std::sync::atomic::AtomicBool,
}

static RESCUES: std::sync::Mutex<Vec<std::sync::Arc<Rescue>>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    static RESCUE: std::cell::RefCell<Option<std::sync::Arc<Rescue>>> = const { std::cell::RefCell::new(None) };
}

/// Milliseconds since the first call, never 0.
fn rescue_clock_ms(at: Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| Instant::now() - Duration::from_millis(1));
    at.saturating_duration_since(epoch).as_millis() as u64
}

/// The task whose waker the main thread holds: it does nothing but hand its waker over each
/// time it runs.
struct RescueSlot(std::sync::Arc<Rescue>);

impl RescueSlot {
    fn register(core: usize, bell: std::sync::Arc<sched::Bell>) -> RescueSlot {
        let r = std::sync::Arc::new(Rescue {
            core,
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::gettid() },
            due_ms: Default::default(),
            waker: Default::default(),
            bell,
            kicks: Default::default(),
            suspect: Default::default(),
            logged: Default::default(),
        });
        RESCUE.with(|t| *t.borrow_mut() = Some(r.clone()));
        lock(&RESCUES).push(r.clone());
        RescueSlot(r)
    }

    /// Called as the core's thread ends: nothing is left to wake.
    fn unregister() {
        if let Some(r) = RESCUE.with(|t| t.borrow_mut().take()) {
            lock(&RESCUES).retain(|x| !std::sync::Arc::ptr_eq(x, &r));
        }
    }
}

impl Future for RescueSlot {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut w = lock(&self.0.waker);
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether thread `tid` of this process is asleep (any state but running or runnable).
fn thread_asleep(tid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // "tid (comm) S ...": the state follows the last ')' (comm may hold one).
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'R')
}

/// From a thread that is not a core (the main thread, 10 times a second): wakes every core
/// that is stranded, and returns how many. A core is stranded when it sleeps although
/// - its background tick is overdue by more than [`RESCUE_SLACK`] (a core still running is
///   busy, not stranded), or
/// - tasks of it are runnable (woken and not polled, or woken from another thread and not
///   yet handed over), at this look and at the one before: a core never sleeps on runnable
///   tasks but for glommio's parking bug. This also covers cores whose tick has not started
///   (a set being loaded at start, found stuck so once in 50 runs of a restart test).
///
/// The first strand of each core is logged with its wake-up state.
pub fn rescue_stranded_cores() -> usize {
    let late = rescue_clock_ms(Instant::now()).saturating_sub(RESCUE_SLACK.as_millis() as u64);
    let mut woken = 0;
    for r in lock(&RESCUES).iter() {
        let asleep = thread_asleep(r.tid);
        let runnable = asleep && (r.bell.runnable() > 0 || r.bell.has_remote());
        let was_suspect = r.suspect.swap(runnable, Ordering::Relaxed);
        let due = r.due_ms.load(Ordering::Relaxed);
        let overdue = due != 0 && due <= late;
        if !asleep || !(overdue || (runnable && was_suspect)) {
            continue;
        }
        if let Some(w) = lock(&r.waker).as_ref() {
            if !r.logged.swap(true, Ordering::Relaxed) {
                crate::log::warn(&format!(
                    "core {} was asleep with {}; woken from outside (logged once): {}",
                    r.core,
                    if runnable {
                        "runnable tasks (glommio's parking bug)"
                    } else {
                        "its background tick overdue"
                    },
                    r.bell.describe()
                ));
            }
            w.wake_by_ref();
            r.bell.kick();
            r.kicks.fetch_add(1, Ordering::Relaxed);
            woken += 1;
        }
    }
    woken
}

/// How long the main thread may wait before its next [`rescue_stranded_cores`]: 100 ms, or
/// 1 s while every core sleeps in its network ring, where glommio's parking bug cannot
/// strand it (an idle server: the main thread then wakes once a second instead of ten
/// times; a core that leaves its ring sleep is looked at again within that second).
pub fn next_rescue_in() -> Duration {
    let all_in_ring = lock(&RESCUES).iter().all(|r| {
        r.bell.at.load(Ordering::Relaxed) == sched::DriverAt::RingSleep as u8
            && thread_asleep(r.tid)
    });
    if all_in_ring {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(100)
    }
}

/// Wake-ups the main thread has given this core ([`rescue_stranded_cores`]).
pub fn rescue_kicks() -> u64 {
    RESCUE.with(|r| {
        r.borrow()
            .as_ref()
            .map_or(0, |r| r.kicks.load(Ordering::Relaxed))
    })
}

/// Spawns a latency-critical task on the current core (connections, router).
pub fn spawn<F: Future<Output = ()> + 'static>(f: F) {
    glommio::spawn_local(sched::Tracked::new(f)).detach();
}

thread_local! {
    static BACKGROUND: std::cell::Cell<Option<TaskQueueHandle>> = const { std::cell::Cell::new(None) };
    static CONNECTIONS: std::cell::Cell<Option<TaskQueueHandle>> = const { std::cell::Cell::new(None) };
}

/// How long a runnable connection may wait while others run: the executor polls for I/O
/// at least this often while connection tasks are runnable.
///
/// This is a task queue's latency, not the executor-wide `preempt_timer`: with
/// `preempt_timer(500 µs)` set on the builder, about 1 start in 150 of a 4-shard server
/// left one executor asleep before it had run its first task (seen with a start/stop loop
/// under CPU load: 2 hangs in 300 starts with it, none in 900 without).
const CONNECTION_LATENCY: Duration = Duration::from_micros(500);

/// How long background work (rehash, lazy free, expiry) runs before the executor polls for
/// I/O again: the longest a request can sit unseen behind it.
///
/// glommio sees a client's bytes only when it polls its rings, which it does when the running
/// queue is preempted; a read that has completed does not preempt it (network polls go to
/// the main ring, and only the latency ring's completions end a slice). And when every
/// connection is waiting for I/O, its queue is inactive, so the queue that is running sets
/// the preemption timer alone. At 500 µs, while a 10M-key table rehashed in the
/// background, 4,384 request batches waited 1 ms or more at the server on the wire, with the
/// server in `Dict::rehash_step` (`make bench-stalls`); at 100 µs, 6 in each of two runs,
/// and the server's p99.99 on the wire fell from 1.17 ms to 0.68-0.81 ms. The cost is a
/// timer per 100 µs while background work runs.
const BACKGROUND_LATENCY: Duration = Duration::from_micros(100);

/// Spawns a client connection on a task queue whose latency bound keeps I/O polled every
/// 500 µs while connections are busy (see `yield_if_needed` in the read loop). Created on
/// first use, after the core has started.
pub fn spawn_connection<F: Future<Output = ()> + 'static>(f: F) {
    spawn_in(
        &CONNECTIONS,
        Shares::Static(1000),
        CONNECTION_LATENCY,
        "connections",
        sched::Tracked::new(f),
    );
}

/// Spawns the core's network driver beside the connections.
fn spawn_driver<F: Future<Output = ()> + 'static>(f: F) {
    spawn_in(
        &CONNECTIONS,
        Shares::Static(1000),
        CONNECTION_LATENCY,
        "connections",
        sched::Tracked::driver(f),
    );
}

/// Spawns background work (active expiry, lazy free, rehash, snapshots) on a low-share task
/// queue, so the scheduler favours connections when both are runnable. It has a latency
/// bound too, and a tighter one ([`BACKGROUND_LATENCY`]): glommio polls I/O only when the
/// running queue is preempted, and a queue without a bound is preempted after glommio's
/// default of 100 ms, so background work held the core for its whole time slice while
/// clients' requests waited unseen (25-100 ms stalls while a 10M-key table grew).
pub fn spawn_background<F: Future<Output = ()> + 'static>(f: F) {
    spawn_in(
        &BACKGROUND,
        Shares::Static(100),
        BACKGROUND_LATENCY,
        "background",
        sched::Tracked::new(f),
    );
}

/// Spawns `f` into this core's task queue kept in `queue`, creating it on first use with
/// `shares` and the `latency` bound.
fn spawn_in<F: Future<Output = ()> + 'static>(
    queue: &'static std::thread::LocalKey<std::cell::Cell<Option<TaskQueueHandle>>>,
    shares: Shares,
    latency: Duration,
    name: &str,
    f: sched::Tracked<F>,
) {
    let tq = queue.with(|q| match q.get() {
        Some(tq) => tq,
        None => {
            let tq = glommio::executor().create_task_queue(shares, Latency::Matters(latency), name);
            q.set(Some(tq));
            tq
        }
    });
    match glommio::spawn_local_into(f, tq) {
        Ok(t) => t.detach(),
        Err(e) => panic!("creating a task in a queue this core just made cannot fail: {e}"),
    };
}

/// Resolves after `d`, on this core's own timers (see [`sched`]).
pub async fn sleep(d: Duration) {
    sched::sleep_until(Instant::now() + d).await;
}

/// Yields to other tasks if this one has run past its time slice.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// A listening socket on this core (SO_REUSEPORT: every core binds the same address and the
/// kernel spreads connections across them), accepted from by the core's network ring.
pub struct Listener {
    inner: ring::RingListener,
    /// Accept errors not yet logged, and when the last line was written.
    unlogged: std::cell::Cell<u64>,
    logged_at: std::cell::Cell<Option<Instant>>,
}

/// Shuts a core's listener down at exit; see [`Listener::closer`].
pub struct ListenerCloser {
    inner: ring::RingListener,
}

impl ListenerCloser {
    /// Stops listening now: the port is free for the next start as soon as this returns,
    /// even though io_uring still holds a reference to the socket until the ring is torn
    /// down after the process exits (closing the descriptor alone leaves the socket in
    /// LISTEN for that while, and the next start cannot bind).
    pub fn close(&self) {
        if self.inner.mark_closed() {
            // SAFETY: the descriptor belongs to the listener's ring slot, which never
            // closes it (listeners live as long as the process), so it is still this
            // socket. shutdown(2) does not close or reuse the descriptor.
            unsafe { libc::shutdown(self.inner.fd, libc::SHUT_RDWR) };
        }
    }
}

/// Accept errors are logged at most once per this period, with a count of the others: a
/// descriptor shortage otherwise fails every accept attempt, 100 a second per core.
const ACCEPT_ERROR_LOG_PERIOD: Duration = Duration::from_secs(10);

impl Listener {
    /// Binds with SO_REUSEADDR (connections of a previous run in TIME-WAIT on this port do
    /// not stop a restart, as with Redis) and SO_REUSEPORT.
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sk = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        sk.set_reuse_address(true)?;
        sk.set_reuse_port(true)?;
        if addr.is_ipv6() {
            // `bind ::` serves IPv4 clients too (as ::ffff:a.b.c.d), as Redis's does.
            let _ = sk.set_only_v6(false);
        }
        sk.bind(&addr.into())?;
        sk.listen(1024)?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(sk);
        Ok(Listener {
            inner: ring::RingListener::new(fd)?,
            unlogged: std::cell::Cell::new(0),
            logged_at: std::cell::Cell::new(None),
        })
    }

    /// The handle that shuts this listener down at exit.
    pub fn closer(&self) -> ListenerCloser {
        ListenerCloser {
            inner: self.inner.clone(),
        }
    }

    /// The next accepted connection. Errors (EMFILE when descriptors run out, ECONNABORTED)
    /// are logged at most once per [`ACCEPT_ERROR_LOG_PERIOD`] and retried after 10 ms;
    /// the clients keep waiting in the backlog meanwhile. After the listener was closed this
    /// never returns (the process is exiting).
    pub async fn next(&self) -> Stream {
        loop {
            match self.inner.accept().await {
                // A closed listener's accept never returns (the process is exiting).
                Ok(s) => return Stream { ring: s, tls: None },
                Err(e) => {
                    self.note_error(&e);
                    sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn note_error(&self, e: &io::Error) {
        let due = self
            .logged_at
            .get()
            .is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_PERIOD);
        if !due {
            self.unlogged.set(self.unlogged.get() + 1);
            return;
        }
        let more = self.unlogged.replace(0);
        let hint = if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            "; clients wait until descriptors free up: raise 'ulimit -n' (LimitNOFILE) or lower maxclients"
        } else {
            ""
        };
        crate::log::warn(&format!(
            "accepting a client connection: {e}{hint} ({more} more such errors in the last {} s)",
            ACCEPT_ERROR_LOG_PERIOD.as_secs()
        ));
        self.logged_at.set(Some(Instant::now()));
    }
}

/// A connected client socket, in plain TCP or TLS.
pub struct Stream {
    ring: ring::RingStream,
    tls: Option<Box<tls::Layer>>,
}

impl Stream {
    /// Serves this connection in TLS from now on (before anything was read).
    pub fn start_tls(&mut self, cfg: std::sync::Arc<rustls::ServerConfig>) -> io::Result<()> {
        self.tls = Some(Box::new(tls::Layer::new(cfg)?));
        Ok(())
    }

    /// Speaks TLS as the client of `name` on this connection this server opened, from now
    /// on (before anything was sent or read).
    pub fn start_tls_client(
        &mut self,
        cfg: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        self.tls = Some(Box::new(tls::Layer::client(cfg, name)?));
        Ok(())
    }

    /// A connected socket this server opened (plain TCP), served by this core's ring.
    pub fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<Stream> {
        Ok(Stream {
            ring: ring::RingStream::adopt(fd)?,
            tls: None,
        })
    }

    /// Received bytes (plaintext).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.ring.read(buf).await,
            Some(t) => t.read(&mut self.ring, buf).await,
        }
    }

    /// Moves the received bytes (plaintext) to the end of `buf`; Ok(0) at end of stream.
    /// In plain TCP the stream keeps no input buffer afterwards, and an empty `buf` takes
    /// the received bytes without a copy (see [`ring::RingStream::read_into`]).
    pub async fn read_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match &mut self.tls {
            None => self.ring.read_into(buf).await,
            Some(t) => t.read_into(&mut self.ring, buf).await,
        }
    }

    /// Gives a drained buffer back to the core, for the next connection that receives or
    /// replies (a large one is kept apart: see [`ring::Net::recycle`]).
    pub fn recycle(&self, b: Vec<u8>) {
        self.ring.recycle(b)
    }

    /// An empty buffer with room for `len` bytes, from the core's pool when it has one.
    pub fn take_buffer(&self, len: usize) -> Vec<u8> {
        self.ring.take_buffer(len)
    }

    /// Sends a copy of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.ring.write_all(buf).await,
            Some(t) => t.send(&mut self.ring, &mut buf.to_vec()).await,
        }
    }

    /// Sends all of `out` without copying it (in TLS: encrypted from it) and leaves an
    /// empty buffer in its place.
    pub async fn send_owned(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.tls {
            None => self.ring.send_owned(out).await,
            Some(t) => t.send(&mut self.ring, out).await,
        }
    }

    /// Hands all of `out` over for sending and returns without waiting for the kernel to
    /// take it (in TLS: encrypts and waits), leaving an empty buffer in its place. The next
    /// send waits for this one and reports its error.
    pub async fn send_detached(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.tls {
            None => self.ring.send_detached(out).await,
            Some(t) => t.send(&mut self.ring, out).await,
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.ring.peer_addr()
    }

    /// Two connected streams of a Unix socket pair (tests).
    #[cfg(test)]
    fn pair() -> io::Result<(Stream, Stream)> {
        let (a, b) = ring::RingStream::pair()?;
        Ok((Stream { ring: a, tls: None }, Stream { ring: b, tls: None }))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.ring.local_addr()
    }

    pub fn set_nodelay(&self) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int we own from a valid pointer of the given length.
        let r = unsafe {
            libc::setsockopt(
                self.ring.fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.ring.fd
    }

    /// Bytes received and not yet read by the connection, and the memory holding them.
    pub fn input_bytes(&self) -> (usize, usize) {
        self.ring.input_bytes()
    }

    /// Resolves when the peer has gone (see [`ring::RingStream::closed`]).
    pub async fn closed(&self) {
        self.ring.closed().await
    }
}

/// A file written through io_uring and made visible atomically (snapshots).
///
/// Bytes go to `<path>.tmp` through glommio's DMA stream writer (O_DIRECT, so a snapshot does
/// not flush the page cache of a cache server), or through buffered io_uring writes where
/// the filesystem refuses O_DIRECT (tmpfs, some overlay filesystems). [`FileWriter::commit`]
/// syncs the data, renames the file over `path` and syncs the directory: after a crash the
/// file is there whole or not at all.
pub struct FileWriter {
    out: FileOut,
    /// The DMA writer keeps writes in flight between calls (write-behind): while the file
    /// is open, the core sleeps in glommio, which collects their completions.
    _reactor: sched::ReactorUse,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
}

enum FileOut {
    Dma(glommio::io::DmaStreamWriter),
    Buffered(glommio::io::StreamWriter),
}

impl FileWriter {
    pub async fn create(path: &std::path::Path) -> io::Result<FileWriter> {
        let reactor = sched::ReactorUse::begin();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let out = match glommio::io::DmaFile::create(&tmp).await {
            Ok(f) => FileOut::Dma(
                glommio::io::DmaStreamWriterBuilder::new(f)
                    .with_buffer_size(1 << 20)
                    .with_write_behind(4)
                    .build(),
            ),
            Err(_) => {
                let f = glommio::io::BufferedFile::create(&tmp)
                    .await
                    .map_err(io::Error::from)?;
                FileOut::Buffered(glommio::io::StreamWriterBuilder::new(f).build())
            }
        };
        Ok(FileWriter {
            out,
            _reactor: reactor,
            tmp,
            path: path.to_path_buf(),
        })
    }

    pub async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        match &mut self.out {
            FileOut::Dma(w) => w.write_all(b).await,
            FileOut::Buffered(w) => w.write_all(b).await,
        }
    }

    /// Syncs and closes the file, renames it into place and syncs the directory.
    pub async fn commit(self) -> io::Result<()> {
        let _reactor = sched::ReactorUse::begin();
        match self.out {
            FileOut::Dma(mut w) => {
                w.sync().await.map_err(io::Error::from)?;
                w.close().await?;
            }
            // The buffered stream writer syncs the file as it closes.
            FileOut::Buffered(mut w) => w.close().await?,
        }
        glommio::io::rename(&self.tmp, &self.path)
            .await
            .map_err(io::Error::from)?;
        let parent = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let dir = glommio::io::Directory::open(&parent)
            .await
            .map_err(io::Error::from)?;
        dir.sync().await.map_err(io::Error::from)?;
        let _ = dir.close().await;
        Ok(())
    }

    /// Drops an unfinished file.
    pub async fn abandon(self) {
        let _reactor = sched::ReactorUse::begin();
        let _ = match self.out {
            FileOut::Dma(mut w) => w.close().await,
            FileOut::Buffered(mut w) => w.close().await,
        };
        let _ = glommio::io::remove(&self.tmp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    async fn read_exact(s: &mut Stream, mut n: usize) {
        let mut buf = [0u8; 16];
        while n > 0 {
            let got = s.read(&mut buf[..n]).await.expect("read");
            assert!(got > 0, "the peer closed early");
            n -= got;
        }
    }

    /// Pins the calling thread to `cpu`.
    fn pin_to(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
        // sched_setaffinity only reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }

    /// Two connection tasks play 20,000 rounds of ping-pong over a socket pair on a core
    /// pinned to `cpu`, which a busy thread shares, as a server shares its CPU with kernel
    /// threads and neighbours. `guard`: the driver keeps its guard timers; `strand_tick`: its background
    /// tick is due 10 ms after start and never runs (as in the failures seen, so no timer of
    /// its own ends a sleep). `every_100ms` runs on this thread while it waits and returns
    /// how many wake-ups it gave. Panics naming the round when no progress is made for 10 s;
    /// returns the wake-ups given.
    fn ping_pong_beside_a_busy_thread(
        cpu: usize,
        guard: bool,
        strand_tick: bool,
        mut every_100ms: impl FnMut() -> usize,
    ) -> usize {
        const ROUND_TRIPS: u64 = 20_000;
        let progress = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let hog = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_to(cpu);
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let p = progress.clone();
        let core = start_core_with(0, Some(cpu), 256 << 10, guard, move || async move {
            if strand_tick {
                guard_tick(Instant::now() + Duration::from_millis(10));
            }
            let (mut a, mut b) = Stream::pair().expect("socket pair");
            spawn_connection(async move {
                for _ in 0..ROUND_TRIPS {
                    read_exact(&mut b, 4).await;
                    b.write_all(b"pong").await.expect("pong");
                }
            });
            let (tx, rx) = futures_channel::oneshot::channel();
            spawn_connection(async move {
                for _ in 0..ROUND_TRIPS {
                    a.write_all(b"ping").await.expect("ping");
                    read_exact(&mut a, 4).await;
                    p.fetch_add(1, Ordering::Relaxed);
                }
                let _ = tx.send(());
            });
            let _ = rx.await;
        })
        .expect("executor starts");
        let (mut last, mut woken) = ((0, Instant::now()), 0);
        while progress.load(Ordering::Relaxed) < ROUND_TRIPS {
            std::thread::sleep(Duration::from_millis(100));
            woken += every_100ms();
            let now = progress.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            }
            if last.1.elapsed() > Duration::from_secs(10) {
                stop.store(true, Ordering::Relaxed);
                let states: Vec<String> =
                    lock(&RESCUES).iter().map(|r| r.bell.describe()).collect();
                panic!("the core slept with runnable tasks: stuck after {now} of {ROUND_TRIPS} round trips, {woken} wake-ups from outside; {states:?}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        hog.join().unwrap();
        core.join().unwrap();
        woken
    }

    /// The descheduling makes glommio's preemption timer fire before its task queues run;
    /// without a guard timer the core then sleeps with both tasks runnable and nothing left
    /// to wake it (stuck after 3,297 and 218 of 20,000 round trips in two runs, before the
    /// driver's guard replaced the watchdog task that guarded then).
    #[test]
    fn a_descheduled_core_never_sleeps_on_runnable_tasks() {
        ping_pong_beside_a_busy_thread(0, true, false, || 0);
    }

    /// A core waiting in glommio (its own I/O in flight, no timer of its own) is reached by
    /// a wake from another thread (the path itself: `sched::tests`), then by a timer registered meanwhile, then
    /// goes back to sleeping in its ring when the I/O ends. Before each was handled, the
    /// wait lasted for good (found in review: a SIGTERM'd server's final save waiting for
    /// another core's reply would have hung there). Run with the guard timers since
    /// 2026-12-02: without them glommio's parking bug stranded the core after the wake in
    /// about 1 run in 300 on a busy 2-CPU machine (the driver woken, never polled).
    #[test]
    fn a_core_waiting_in_glommio_sees_other_threads_and_new_timers() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (tx, rx) = futures_channel::oneshot::channel::<u32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let core = start_core(0, None, 256 << 10, move || async move {
            let busy = sched::ReactorUse::begin();
            ready_tx.send(sched::bell()).expect("test waits");
            let v = rx.await.expect("sent");
            sleep(Duration::from_millis(20)).await;
            drop(busy);
            sleep(Duration::from_millis(20)).await;
            done_tx.send(v).expect("test waits");
        })
        .expect("executor starts");
        let bell = ready_rx.recv().expect("core runs");
        std::thread::sleep(Duration::from_millis(100));
        tx.send(7).expect("core waits");
        let got = done_rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(
            got,
            Ok(7),
            "the core did not wake for another thread or for its own timer: {}",
            bell.describe()
        );

        core.join().expect("core exits");
    }

    /// No guard timers and the background tick stranded: only the rescue the main thread runs
    /// ends each strand. Without it the core sleeps for good (stuck after 1,691 and 92 of
    /// 20,000 round trips in two runs).
    #[test]
    fn a_stranded_core_is_woken_from_outside() {
        let rescues = ping_pong_beside_a_busy_thread(1, false, true, rescue_stranded_cores);
        eprintln!("20,000 round trips with {rescues} rescues from outside");
    }
}
