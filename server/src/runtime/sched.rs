//! What a core needs to sleep in its network ring instead of in glommio: which of its tasks
//! are runnable, wake-ups from other threads delivered without glommio's help, and timers
//! of its own.
//!
//! Why. glommio's run loop costs two passes through its reactor for every wake-up of an
//! idle core, and each pass re-arms its preemption timers (ASYNC_CANCEL + TIMEOUT on the
//! latency ring, TIMEOUT + linked WRITE on the main ring) and enters the kernel once per
//! ring: 11 `io_uring_enter` and 12.6 submissions per request at 10k requests/s, 79 % of a
//! CPU where Redis used 28 % (2026-12-02, one shard on CPU 0). A driver that sleeps in its
//! own ring pays one enter to sleep and one to send.
//!
//! How. Every task of a core is spawned through [`Tracked`], which polls it with a waker
//! of ours ([`TaskWake`]) around glommio's:
//! - a wake on the core's own thread counts the task in [`Bell::runnable`] and hands it to
//!   glommio's waker (a local wake: glommio schedules it directly);
//! - a wake from another thread (a mailbox message, a cross-core reply, a blocked client
//!   served elsewhere, the main thread) counts it too, queues it on the bell and writes the
//!   bell's eventfd if the core sleeps; the core's driver hands it to glommio on the core.
//!   glommio's own cross-thread path is not used: it is drained only inside glommio's
//!   reactor, which a core sleeping in its network ring never enters.
//! - polling the task uncounts it.
//!
//! So the driver knows when nothing on its core can run ([`Bell::runnable`] is 0). It then
//! sleeps in the network ring, with a read of the bell's eventfd armed there and a timeout
//! at the next [`sleep`] deadline. It falls back to sleeping in glommio (the ring's
//! completion eventfd read through glommio) while other tasks are runnable (they need
//! glommio's run loop) or while glommio's own I/O is in flight ([`ReactorUse`]: snapshot
//! files), whose completions only glommio's reactor collects.
//!
//! Timers are ours too ([`sleep`]): glommio fires its timers only inside its reactor, and
//! the driver must know the next deadline to bound its sleep.
//!
//! Cost per task poll: a pointer comparison of wakers, an atomic swap on the task's own
//! flag, and an atomic add and subtract on the core's counter per wake.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// One core's wake-up state, shared with every thread that may wake its tasks.
pub struct Bell {
    /// Tasks of the core woken (or spawned) and not yet polled.
    runnable: AtomicUsize,
    /// Where the core's driver sleeps (or is about to): [`AWAKE`], [`IN_RING`] (a wake from
    /// another thread writes `fd`) or [`IN_GLOMMIO`] (it wakes `driver` through glommio's
    /// own cross-thread path).
    sleeping: std::sync::atomic::AtomicU8,
    /// glommio's waker of the driver task.
    driver: Mutex<Option<Waker>>,
    /// Tasks woken from other threads, for the driver to hand to glommio.
    remote: Mutex<Vec<Arc<TaskWake>>>,
    has_remote: AtomicBool,
    /// An eventfd whose read the driver keeps armed in its ring.
    pub fd: RawFd,
    /// Eventfd writes made to end a sleep (INFO).
    pub rings: AtomicU64,
    /// Where the driver is (for a stuck core's report): see [`DriverAt`].
    pub at: std::sync::atomic::AtomicU8,
}

/// [`Bell::sleeping`]'s values.
const AWAKE: u8 = 0;
const IN_RING: u8 = 1;
const IN_GLOMMIO: u8 = 2;

/// Where a core's driver is, as [`Bell::at`] holds it.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum DriverAt {
    Running = 0,
    Yielded = 1,
    RingSleep = 2,
    GlommioWait = 3,
}

impl Bell {
    fn new() -> std::io::Result<Bell> {
        // Non-blocking, so the ring's read of it waits by polling the eventfd: a blocking one
        // is handed to an io-wq worker thread, which kept an exiting process alive for
        // seconds.
        // SAFETY: eventfd has no preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Bell {
            runnable: AtomicUsize::new(0),
            sleeping: std::sync::atomic::AtomicU8::new(AWAKE),
            driver: Mutex::new(None),
            remote: Mutex::new(Vec::new()),
            has_remote: AtomicBool::new(false),
            fd,
            rings: AtomicU64::new(0),
            at: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// Ends the core's sleep if it sleeps (or is about to: see [`Bell::prepare_to_sleep`]).
    ///
    /// A core asleep in glommio is woken through glommio, not through the eventfd: the
    /// eventfd's read completes in the network ring, whose own completion eventfd would have
    /// to wake glommio, and the kernel does not signal an eventfd from inside another
    /// eventfd's wake-up (seen: 30 writes to a core's bell, none read, the core asleep).
    pub fn ring(&self) {
        match self.sleeping.swap(AWAKE, Ordering::SeqCst) {
            IN_RING => self.write(),
            IN_GLOMMIO => {
                if let Some(w) = lock(&self.driver).as_ref() {
                    w.wake_by_ref();
                }
            }
            _ => {}
        }
    }

    /// Ends the driver's sleep wherever it is, whatever the core announced (the main
    /// thread's rescue): writes the eventfd (a sleep in the ring) and wakes the driver
    /// through glommio (a wait in glommio, where the eventfd alone does not reach it).
    pub fn kick(&self) {
        self.write();
        if let Some(w) = lock(&self.driver).as_ref() {
            w.wake_by_ref();
        }
    }

    /// Writes the eventfd whether or not the core sleeps.
    pub fn write(&self) {
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a local to the bell's own eventfd, which lives as
        // long as the process.
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
        self.rings.fetch_add(1, Ordering::Relaxed);
    }

    /// Announces a sleep: returns false, and the sleep must not happen, when a task became
    /// runnable meanwhile. A wake from another thread after this rings the bell.
    /// (SeqCst on both sides: either the waker sees `sleeping`, or this sees its count.)
    pub fn prepare_to_sleep(&self) -> bool {
        self.sleeping.store(IN_RING, Ordering::SeqCst);
        if self.runnable.load(Ordering::SeqCst) > 0 {
            self.sleeping.store(AWAKE, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Announces a sleep in glommio: wakes from other threads ring the bell from now on
    /// (the ring's eventfd then ends glommio's sleep). Check [`Bell::has_remote`] after.
    pub fn sleeping_in_glommio(&self) {
        self.sleeping.store(IN_GLOMMIO, Ordering::SeqCst);
    }

    pub fn has_remote(&self) -> bool {
        self.has_remote.load(Ordering::SeqCst)
    }

    pub fn woke(&self) {
        self.sleeping.store(AWAKE, Ordering::SeqCst);
    }

    pub fn set_at(&self, at: DriverAt) {
        self.at.store(at as u8, Ordering::Relaxed);
    }

    /// The core's wake-up state in a line (a stuck core's report).
    pub fn describe(&self) -> String {
        format!(
            "runnable={} sleeping={} remote={} driver_at={} bell_writes={}",
            self.runnable.load(Ordering::SeqCst),
            self.sleeping.load(Ordering::SeqCst),
            self.has_remote.load(Ordering::SeqCst),
            self.at.load(Ordering::Relaxed),
            self.rings.load(Ordering::Relaxed)
        )
    }

    pub fn runnable(&self) -> usize {
        self.runnable.load(Ordering::SeqCst)
    }

    /// Hands the tasks woken from other threads to glommio; returns how many.
    pub fn take_remote(&self) -> usize {
        if !self.has_remote.load(Ordering::Acquire) {
            return 0;
        }
        let woken = {
            let mut q = lock(&self.remote);
            self.has_remote.store(false, Ordering::Release);
            std::mem::take(&mut *q)
        };
        let n = woken.len();
        for w in woken {
            w.inner.wake_by_ref();
        }
        n
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    static BELL: std::cell::RefCell<Option<Arc<Bell>>> = const { std::cell::RefCell::new(None) };
    /// The bell of the core this thread runs, as an address to compare (0 elsewhere).
    static BELL_ADDR: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The driver while it waits in glommio, and what must end that wait.
    static GLOMMIO_WAIT: std::cell::RefCell<Option<DriverWait>> = const { std::cell::RefCell::new(None) };
    /// The last deadline of the driver's guard chain (see `ring::Guard`), while it has one.
    static GUARD_UNTIL: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    /// glommio timers armed by a wake of the driver waiting in glommio ([`kick`]).
    static KICKS: std::cell::RefCell<Vec<Pin<Box<glommio::timer::Timer>>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// glommio operations in flight on this core ([`ReactorUse`]).
    static REACTOR_USES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static TIMERS: std::cell::RefCell<Timers> = std::cell::RefCell::new(Timers::default());
    static EXITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Creates this core's bell; called once on the core's thread before any task is spawned.
pub fn init() -> std::io::Result<Arc<Bell>> {
    let bell = Arc::new(Bell::new()?);
    BELL_ADDR.with(|a| a.set(Arc::as_ptr(&bell) as usize));
    BELL.with(|b| *b.borrow_mut() = Some(bell.clone()));
    Ok(bell)
}

/// This core's bell. Panics off a core thread: tasks are spawned only on cores.
pub fn bell() -> Arc<Bell> {
    BELL.with(|b| b.borrow().clone())
        .expect("tasks are spawned only on a core thread, after runtime::sched::init")
}

/// Our waker around glommio's, one per task (replaced if glommio's ever changes).
pub struct TaskWake {
    inner: Waker,
    bell: Arc<Bell>,
    /// Woken and not yet polled (counted in the bell's `runnable`).
    queued: AtomicBool,
}

impl TaskWake {
    /// Clears the task's runnable mark.
    fn unqueue(&self) {
        if self.queued.swap(false, Ordering::AcqRel) {
            self.bell.runnable.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The task is gone (dropped, or its waker replaced): marks it runnable for good, so a
    /// late wake through a clone someone still holds (a oneshot sender that completed and
    /// then woke) counts nothing.
    fn retire(&self) {
        if self.queued.swap(true, Ordering::AcqRel) {
            self.bell.runnable.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Counted before it is marked, so the core's unmark (which follows a mark) never
        // takes the count below zero.
        self.bell.runnable.fetch_add(1, Ordering::SeqCst);
        if self.queued.swap(true, Ordering::AcqRel) {
            // Already runnable: glommio (or the bell's queue) has it. Or the task is gone
            // (see `retire`).
            self.bell.runnable.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if BELL_ADDR.with(|a| a.get()) == Arc::as_ptr(&self.bell) as usize {
            self.inner.wake_by_ref();
        } else {
            lock(&self.bell.remote).push(self.clone());
            self.bell.has_remote.store(true, Ordering::SeqCst);
            self.bell.ring();
        }
    }
}

/// A task of a core, polled with a [`TaskWake`] so the core knows when it is runnable.
pub struct Tracked<F> {
    fut: Pin<Box<F>>,
    bell: Arc<Bell>,
    waker: Option<(Arc<TaskWake>, Waker)>,
    /// Spawned and not yet polled (counted in `runnable` at spawn).
    fresh: bool,
    /// The core's network driver: its glommio waker is kept in the bell.
    driver: bool,
}

impl<F: Future> Tracked<F> {
    /// Wraps a future about to be spawned on this core: it counts as runnable until its
    /// first poll.
    pub fn new(fut: F) -> Tracked<F> {
        let bell = bell();
        bell.runnable.fetch_add(1, Ordering::SeqCst);
        Tracked {
            fut: Box::pin(fut),
            bell,
            waker: None,
            fresh: true,
            driver: false,
        }
    }

    /// [`Tracked::new`] for the core's network driver.
    pub fn driver(fut: F) -> Tracked<F> {
        let mut t = Tracked::new(fut);
        t.driver = true;
        t
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if std::mem::take(&mut this.fresh) {
            this.bell.runnable.fetch_sub(1, Ordering::SeqCst);
        }
        let current = this
            .waker
            .as_ref()
            .is_some_and(|(tw, _)| tw.inner.will_wake(cx.waker()));
        if !current {
            if let Some((old, _)) = this.waker.take() {
                old.retire();
            }
            let tw = Arc::new(TaskWake {
                inner: cx.waker().clone(),
                bell: this.bell.clone(),
                queued: AtomicBool::new(false),
            });
            let w = Waker::from(tw.clone());
            this.waker = Some((tw, w));
            if this.driver {
                *lock(&this.bell.driver) = Some(cx.waker().clone());
            }
        }
        let Some((tw, w)) = this.waker.as_ref() else {
            unreachable!("set just above")
        };
        tw.unqueue();
        let r = this.fut.as_mut().poll(&mut Context::from_waker(w));
        if !this.driver && this.bell.runnable.load(Ordering::Relaxed) == 0 {
            wake_waiting_driver(|d| d.idle_wake);
        }
        r
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        if self.fresh {
            self.bell.runnable.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some((tw, _)) = self.waker.take() {
            tw.retire();
        }
    }
}

/// The core's main future has ended: the driver stops, so glommio's run loop gets back
/// to see it and returns.
pub fn exit() {
    EXITING.with(|e| e.set(true));
}

pub fn exiting() -> bool {
    EXITING.with(|e| e.get())
}

/// What ends the driver's wait in glommio, besides its own sources (the ring's eventfd, a
/// local send, its glommio timer, a wake from another thread).
pub struct DriverWait {
    waker: Waker,
    /// The deadline its glommio timer is set for: an earlier [`sleep_until`] wakes it.
    until: Option<Instant>,
    /// Woken once no task of the core is runnable (then it may sleep in its ring).
    idle_wake: bool,
}

/// The driver waits in glommio (see [`DriverWait`]); replaces an earlier registration.
pub fn glommio_wait(waker: &Waker, until: Option<Instant>, idle_wake: bool) {
    GLOMMIO_WAIT.with(|g| {
        *g.borrow_mut() = Some(DriverWait {
            waker: waker.clone(),
            until,
            idle_wake,
        })
    });
}

/// The driver runs again: its wait and the timers that guarded its wake-up are done.
pub fn end_glommio_wait() {
    GLOMMIO_WAIT.with(|g| g.borrow_mut().take());
    KICKS.with(|k| k.borrow_mut().clear());
}

/// glommio timers at `first` and doubling distances (8 of them), registered to wake
/// `cx`'s task. Call from a task's poll only: glommio's timer table is borrowed while it
/// fires timers, so registering one from a waker it calls would panic.
pub fn timer_chain(
    cx: &mut Context<'_>,
    first: std::time::Duration,
) -> Vec<Pin<Box<glommio::timer::Timer>>> {
    (0..8)
        .map(|k| {
            let mut t = Box::pin(glommio::timer::Timer::new(first * (1 << k)));
            // Polling registers the timer with the task's waker; it is not due yet.
            let _ = t.as_mut().poll(cx);
            t
        })
        .collect()
}

/// The driver armed a guard chain whose last timer is due at `until`: [`kick`] need not
/// arm timers of its own before then.
pub fn guarded_until(until: Instant) {
    GUARD_UNTIL.with(|g| g.set(Some(until)));
}

/// How soon after a local wake of the waiting driver glommio is made to look again.
const KICK: std::time::Duration = std::time::Duration::from_millis(2);

/// Wakes the driver waiting in glommio, from a task's poll on its core, with a chain of
/// glommio timers behind the wake. glommio 0.9's run loop can go to sleep with the driver
/// runnable (when its preemption timer fired before the first task queue ran, the loop
/// parks: the parking bug of the runtime's header), and only a glommio event ends that
/// sleep; these timers are that event. A wake alone left a core asleep for good in about
/// 1 run in 50 of `a_core_waiting_in_glommio_sees_other_threads_and_new_timers` on a busy
/// 2-CPU machine (stuck with the driver runnable and unpolled). They cost nothing when
/// glommio does not sleep, and are dropped as soon as the driver runs. While the driver's
/// own guard chain has timers ahead (it is renewed as the driver works, so a busy core has
/// one), none are armed: a busy core does not register 8 timers per wait.
fn kick(waker: Waker) {
    if exiting() {
        // The executor may be gone (tasks dropped after its run): no timers then.
        return waker.wake();
    }
    // The driver's guard chain still has timers ahead: they end such a sleep already.
    if GUARD_UNTIL
        .with(|g| g.get())
        .is_some_and(|u| u > Instant::now() + KICK)
    {
        return waker.wake();
    }
    KICKS.with(|k| {
        let mut k = k.borrow_mut();
        if k.is_empty() {
            *k = timer_chain(&mut Context::from_waker(&waker), KICK);
        }
    });
    waker.wake();
}

/// Wakes the driver out of its glommio wait if `cond` holds for it.
fn wake_waiting_driver(cond: impl FnOnce(&DriverWait) -> bool) {
    let w = GLOMMIO_WAIT.with(|g| {
        let mut g = g.borrow_mut();
        if g.as_ref().is_some_and(cond) {
            g.take().map(|d| d.waker)
        } else {
            None
        }
    });
    if let Some(w) = w {
        kick(w);
    }
}

/// Held while glommio's reactor has an operation of this core in flight (snapshot files):
/// the core then sleeps in glommio, which alone collects those completions.
pub struct ReactorUse(());

impl ReactorUse {
    pub fn begin() -> ReactorUse {
        REACTOR_USES.with(|n| n.set(n.get() + 1));
        ReactorUse(())
    }
}

impl Drop for ReactorUse {
    fn drop(&mut self) {
        let left = REACTOR_USES.with(|n| {
            n.set(n.get().saturating_sub(1));
            n.get()
        });
        if left == 0 {
            // The driver may sleep in its ring now: let it look again.
            let _ = GLOMMIO_WAIT.try_with(|_| wake_waiting_driver(|_| true));
        }
    }
}

pub fn reactor_in_use() -> bool {
    REACTOR_USES.with(|n| n.get()) > 0
}

/// This core's timers: deadline order, exact removal.
#[derive(Default)]
struct Timers {
    pending: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
}

/// Wakes every timer due at `now`; returns how many.
pub fn fire_timers(now: Instant) -> usize {
    let due: Vec<Waker> = TIMERS.with(|t| {
        let mut t = t.borrow_mut();
        let mut due = Vec::new();
        while let Some(entry) = t.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    });
    let n = due.len();
    for w in due {
        w.wake();
    }
    n
}

/// The earliest deadline of a pending [`sleep`].
pub fn next_deadline() -> Option<Instant> {
    TIMERS.with(|t| t.borrow().pending.first_key_value().map(|(k, _)| k.0))
}

/// A timer of this core; see [`sleep`].
pub struct Sleep {
    at: Instant,
    /// Key in the core's timers while registered.
    key: Option<(Instant, u64)>,
    /// A core's timer: registered in, and removed from, that thread's timers only.
    _core: std::marker::PhantomData<*const ()>,
}

/// Resolves at `at`, fired by the core's driver. O(log n) to register and to drop.
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep {
        at,
        key: None,
        _core: std::marker::PhantomData,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            if let Some(k) = self.key.take() {
                TIMERS.with(|t| t.borrow_mut().pending.remove(&k));
            }
            return Poll::Ready(());
        }
        let at = self.at;
        let key = self.key;
        self.key = Some(TIMERS.with(|t| {
            let mut t = t.borrow_mut();
            match key.and_then(|k| t.pending.get_mut(&k).map(|w| (k, w))) {
                Some((k, w)) => {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                    k
                }
                None => {
                    // New, or fired (woken) but polled before its deadline: register.
                    t.next_id += 1;
                    let k = (at, t.next_id);
                    t.pending.insert(k, cx.waker().clone());
                    k
                }
            }
        }));
        // A driver waiting in glommio with a later deadline must come back for this one.
        wake_waiting_driver(|d| d.until.is_none_or(|u| at < u));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            // try_with: a task dropped as its thread ends may outlive the thread-local.
            let _ = TIMERS.try_with(|t| t.borrow_mut().pending.remove(&k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A wake from another thread reaches a driver announced as sleeping in glommio through
    /// its glommio waker, once, and a driver announced as sleeping in its ring through the
    /// eventfd; an awake driver is left alone.
    #[test]
    fn a_wake_from_another_thread_reaches_the_driver_where_it_sleeps() {
        let bell = Arc::new(Bell::new().expect("eventfd"));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        *lock(&bell.driver) = Some(Waker::from(count.clone()));
        bell.sleeping_in_glommio();
        let b = bell.clone();
        std::thread::spawn(move || {
            b.ring();
            b.ring();
        })
        .join()
        .expect("ring");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(bell.rings.load(Ordering::SeqCst), 0);
        assert!(bell.prepare_to_sleep());
        let b = bell.clone();
        std::thread::spawn(move || b.ring()).join().expect("ring");
        assert_eq!(bell.rings.load(Ordering::SeqCst), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        bell.ring();
        assert_eq!(bell.rings.load(Ordering::SeqCst), 1, "awake: nothing to do");
    }

    /// A timer earlier than the waiting driver's deadline wakes it, with glommio timers
    /// behind the wake that the driver's return drops; a later timer does not.
    #[test]
    fn a_new_earlier_timer_wakes_the_waiting_driver_with_kicks_behind() {
        glommio::LocalExecutor::default().run(async {
            init().expect("bell");
            let count = Arc::new(Count(AtomicUsize::new(0)));
            let w = Waker::from(count.clone());
            let now = Instant::now();
            glommio_wait(&w, Some(now + std::time::Duration::from_secs(5)), false);
            let mut later = std::pin::pin!(sleep_until(now + std::time::Duration::from_secs(9)));
            let noop = Waker::noop();
            assert!(later
                .as_mut()
                .poll(&mut Context::from_waker(noop))
                .is_pending());
            assert_eq!(count.0.load(Ordering::SeqCst), 0);
            assert!(KICKS.with(|k| k.borrow().is_empty()));
            let mut sooner = std::pin::pin!(sleep_until(now + std::time::Duration::from_secs(1)));
            assert!(sooner
                .as_mut()
                .poll(&mut Context::from_waker(noop))
                .is_pending());
            assert_eq!(count.0.load(Ordering::SeqCst), 1);
            assert_eq!(KICKS.with(|k| k.borrow().len()), 8);
            end_glommio_wait();
            assert!(KICKS.with(|k| k.borrow().is_empty()));
        });
    }
}
