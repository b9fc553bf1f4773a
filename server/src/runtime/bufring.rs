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
    /// Maps and registers the ring; `count` must be a power of two up to 32768.
    pub fn register(ring: &IoUring, bgid: u16, count: u16, size: usize) -> io::Result<BufRing> {
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
        let mut br = BufRing {
            entries,
            entries_bytes,
            bufs,
            bufs_bytes,
            size,
            count,
            tail: 0,
            bgid,
        };
        // SAFETY: the entry array is page-aligned (mmap), holds `count` entries, and stays
        // mapped until `Drop`, which runs after the ring that uses it is gone.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, 0)?;
        }
        for bid in 0..count {
            br.put(bid);
        }
        br.publish();
        Ok(br)
    }

    fn put(&mut self, bid: u16) {
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

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        if bid < self.count {
            self.put(bid);
            self.publish();
        }
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
