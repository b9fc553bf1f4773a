//! io_uring plumbing shared by the server's network ring and the load generator: a ring in
//! the cheapest completion mode the kernel offers, and a ring of provided buffers for
//! multishot receive.
//!
//! The load generator includes this file by path (`#[path]`): it may not depend on the
//! server crate, and the two must not drift apart. So it uses only `std`, `libc` and
//! `io-uring`.
//!
//! Completion modes, best first: `SINGLE_ISSUER | DEFER_TASKRUN` (6.1+: completions are
//! produced only when the issuing thread enters the kernel), then `COOP_TASKRUN` (5.19+),
//! then the default; each with `TASKRUN_FLAG`, so that the kernel says in shared memory when
//! it holds work for the ring and an enter can be skipped when it holds none.
//!
//! The buffer ring follows `io_uring_register_buf_ring(3)`: a page-aligned array of
//! `io_uring_buf` entries whose tail the application publishes with a release store; the
//! kernel picks a buffer per receive completion and names it in the completion's flags.
//! Every buffer handed to the kernel stays mapped until this value is dropped, and its owner
//! drops it only after the ring.
//!
//! # Resident memory follows the load
//! The kernel takes buffers in ring order, so a ring that holds all of its buffers makes a
//! busy core cycle through every one of them: all of them become resident (the server's
//! 512 × 16 KiB made 8 MiB a core, 8.4 B/key of the 1M-hashes memory row). A ring
//! registered with [`BufRing::register_lazy`] instead keeps only `target` buffers in the
//! kernel's ring, starting small; the others wait in `spare`, and the ring is refilled from
//! its end (the buffers used last), so a light load cycles through the same few buffers
//! and never touches the rest. Nothing here costs a syscall per receive.
//! - Growth: when the kernel runs out (ENOBUFS, [`BufRing::ran_out`]) the target doubles, up
//!   to `count`, and the ring is refilled at once.
//! - Shrinking, at [`BufRing::trim`] (the server calls it at most once a second, as its core
//!   goes to sleep): the target comes down to twice the most buffers one turn used in the
//!   last period, and the pages of buffers nobody received into during that period go back
//!   to the kernel (MADV_DONTNEED, ranges merged: a few syscalls a second at most, none
//!   while nothing changed). A spare buffer is ours alone; a buffer still in the kernel's
//!   ring is released only when the caller knows the kernel cannot be writing into it
//!   (DEFER_TASKRUN: receives complete only inside this thread's enters, and every
//!   completion has been reaped). A released buffer is an untouched mapping again: the next
//!   receive into it faults its pages back in.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Builds a ring of `entries` submissions (and 4× as many completions) in the best mode
/// this kernel offers; returns it with the mode's name.
pub fn setup(entries: u32) -> io::Result<(IoUring, &'static str)> {
    type Setup = fn(&mut io_uring::Builder);
    let attempts: [(&'static str, Setup); 3] = [
        ("single-issuer+defer-taskrun", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag();
        }),
        ("coop-taskrun", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("default", |_| {}),
    ];
    let mut last = None;
    for (mode, setup) in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(entries.saturating_mul(4));
        setup(&mut b);
        match b.build(entries) {
            Ok(ring) => return Ok((ring, mode)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
}

/// Provided buffers for multishot receive: `count` buffers of `size` bytes, group `bgid`.
pub struct BufRing {
    entries: *mut BufRingEntry,
    entries_bytes: usize,
    bufs: *mut u8,
    bufs_bytes: usize,
    size: usize,
    count: u16,
    tail: u16,
    pub bgid: u16,
    /// Buffers published to the kernel and not yet named by a completion.
    in_ring: u16,
    /// How many buffers the ring is refilled to (see the module header); `count` for a
    /// ring registered whole.
    target: u16,
    /// The smallest target (the one a lazy ring starts with).
    base: u16,
    /// Buffers held back from the kernel's ring, the one used last at the end.
    spare: Vec<u16>,
    /// Per buffer: the period it was last received into; 0 when its pages are not resident
    /// (never used, or released since).
    used: Vec<u32>,
    /// The current period (from 1; [`BufRing::trim`] starts the next).
    period: u32,
    /// The kernel ran out during this period.
    short: bool,
    /// Buffers received into in the current turn, and the most in one turn this period.
    turn_used: u16,
    peak_used: u16,
    /// Buffers whose `used` is not 0.
    resident: usize,
    /// The ring grew in the current turn (once a turn is enough: every receive that ran out
    /// in it did so before the growth).
    grew: bool,
}

fn map_anonymous(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl BufRing {
    /// Maps and registers the ring with all `count` buffers in it; `count` must be a power
    /// of two up to 32768.
    #[allow(dead_code)] // the server registers its rings lazily; the load generator whole
    pub fn register(ring: &IoUring, bgid: u16, count: u16, size: usize) -> io::Result<BufRing> {
        Self::register_lazy(ring, bgid, count, size, count)
    }

    /// Maps and registers the ring with `initial` of its `count` buffers in the kernel's
    /// ring (see the module header): the others are address space only until a load needs
    /// them. `count` must be a power of two up to 32768.
    pub fn register_lazy(
        ring: &IoUring,
        bgid: u16,
        count: u16,
        size: usize,
        initial: u16,
    ) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(io::Error::other(
                "buffer count must be a power of two up to 32768",
            ));
        }
        let entries_bytes = count as usize * std::mem::size_of::<BufRingEntry>();
        let bufs_bytes = count as usize * size;
        let entries = map_anonymous(entries_bytes)?.cast::<BufRingEntry>();
        let bufs = match map_anonymous(bufs_bytes) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `entries` was mapped above with this length and is not used again.
                unsafe { libc::munmap(entries.cast(), entries_bytes) };
                return Err(e);
            }
        };
        let initial = initial.clamp(1, count);
        let mut br = BufRing {
            entries,
            entries_bytes,
            bufs,
            bufs_bytes,
            size,
            count,
            tail: 0,
            bgid,
            in_ring: 0,
            target: initial,
            base: initial,
            // The lowest buffer numbers go first, so the ring's first buffers are 0, 1, …
            spare: (initial..count).rev().collect(),
            used: vec![0; count as usize],
            period: 1,
            short: false,
            turn_used: 0,
            peak_used: 0,
            resident: 0,
            grew: false,
        };
        // SAFETY: the entry array is page-aligned (mmap), holds `count` entries, and stays
        // mapped until `Drop`, which runs after the ring that uses it is gone.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, 0)?;
        }
        for bid in 0..initial {
            br.put(bid);
        }
        br.publish();
        Ok(br)
    }

    fn put(&mut self, bid: u16) {
        self.in_ring += 1;
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `slot < count`, inside the mapped entry array; the kernel reads only entries
        // before the published tail, and this one is past it until `publish`.
        let e = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `bid < count`, so the buffer lies inside the mapped buffer area.
        e.set_addr(unsafe { self.bufs.add(bid as usize * self.size) } as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives inside the first mapped entry; the kernel reads it
        // concurrently, hence the atomic release store (liburing's io_uring_buf_ring_advance).
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The bytes the kernel received into buffer `bid`; None for a buffer or length that is
    /// not of this ring (never expected: the kernel names only buffers of this group).
    pub fn data(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.count || len > self.size {
            return None;
        }
        // SAFETY: the buffer is inside the mapping; the kernel wrote `len` bytes and does not
        // touch this buffer again until `recycle` gives it back.
        Some(unsafe { std::slice::from_raw_parts(self.bufs.add(bid as usize * self.size), len) })
    }

    /// Takes back buffer `bid`, which a completion named (its bytes have been read): into
    /// the kernel's ring again while the ring is below its target, else among the spares.
    pub fn recycle(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        self.in_ring = self.in_ring.saturating_sub(1);
        if self.used[bid as usize] == 0 {
            self.resident += 1;
        }
        self.used[bid as usize] = self.period;
        self.turn_used = self.turn_used.saturating_add(1);
        self.peak_used = self.peak_used.max(self.turn_used);
        if self.in_ring < self.target {
            self.put(bid);
            self.publish();
        } else {
            self.spare.push(bid);
        }
    }

    /// A new turn of the owner's loop begins (the count of buffers a turn uses).
    #[allow(dead_code)] // the load generator, which includes this file, keeps its ring whole
    pub fn turn_begins(&mut self) {
        self.turn_used = 0;
        self.grew = false;
    }

    /// The kernel found no buffer for a receive (ENOBUFS): the target doubles (once a
    /// turn), and the ring is filled up to it from the spares.
    #[allow(dead_code)] // see `turn_begins`
    pub fn ran_out(&mut self) {
        self.short = true;
        if !self.grew {
            self.grew = true;
            self.target = self.target.saturating_mul(2).min(self.count);
        }
        self.refill();
    }

    /// Puts spare buffers, the ones used last first, into the kernel's ring up to the target.
    fn refill(&mut self) {
        let mut any = false;
        while self.in_ring < self.target {
            let Some(bid) = self.spare.pop() else { break };
            self.put(bid);
            any = true;
        }
        if any {
            self.publish();
        }
    }

    /// Ends a period (see the module header): sets the target from the period's need and
    /// releases the pages of the buffers nobody received into during it: the spares, and,
    /// when `ring_too` (the caller knows the kernel cannot be writing into them: see the
    /// module header), those still in the kernel's ring. Returns how many it released.
    #[allow(dead_code)] // see `turn_begins`
    pub fn trim(&mut self, ring_too: bool) -> usize {
        if !self.short {
            let need = (self.peak_used as u32 * 2).next_power_of_two();
            self.target = need.clamp(self.base as u32, self.count as u32) as u16;
        }
        let period = self.period;
        self.period += 1;
        self.short = false;
        self.peak_used = 0;
        // SAFETY: sysconf reads a constant of the process.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        if !self.size.is_multiple_of(page) {
            // Buffers that do not fill whole pages share them: nothing is released.
            return 0;
        }
        let mut idle: Vec<u16> = if ring_too {
            (0..self.count).collect()
        } else {
            self.spare.clone()
        };
        idle.retain(|&b| {
            let u = self.used[b as usize];
            u != 0 && u < period
        });
        idle.sort_unstable();
        let mut start = 0;
        while start < idle.len() {
            let mut end = start + 1;
            while end < idle.len() && idle[end] == idle[end - 1] + 1 {
                end += 1;
            }
            let (first, n) = (idle[start] as usize, end - start);
            // SAFETY: the range lies inside the buffer mapping (bid < count); its buffers
            // are spares (ours alone) or, with `ring_too`, buffers the kernel is not writing
            // (the caller's promise). Their contents are not needed: each is written whole
            // by its next receive before it is read.
            unsafe {
                libc::madvise(
                    self.bufs.add(first * self.size).cast(),
                    n * self.size,
                    libc::MADV_DONTNEED,
                );
            }
            start = end;
        }
        for &b in &idle {
            self.used[b as usize] = 0;
        }
        self.resident -= idle.len();
        idle.len()
    }

    /// Bytes of buffers whose pages may be resident (received into and not released since).
    #[allow(dead_code)] // see `turn_begins`
    pub fn resident_bytes(&self) -> usize {
        self.resident * self.size
    }

    /// Buffers in the kernel's ring now, and the target it is refilled to (tests, INFO).
    #[allow(dead_code)] // see `turn_begins`
    pub fn in_ring(&self) -> (u16, u16) {
        (self.in_ring, self.target)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both areas were mapped in `register` with these lengths; the owner drops the
        // ring (and so the kernel's registration) first.
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_bytes);
            libc::munmap(self.bufs.cast(), self.bufs_bytes);
        }
    }
}
