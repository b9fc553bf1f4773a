//! io_uring plumbing for the load generator: a ring in the cheapest completion mode the kernel
//! offers, and a ring of provided buffers for multishot receive.
//!
//! Completion modes, best first: `SINGLE_ISSUER | DEFER_TASKRUN` (6.1+: completions are
//! processed only when this thread enters the kernel to wait, no interrupts in between), then
//! `COOP_TASKRUN` (5.19+), then the default. The one chosen is reported in the results.
//!
//! The buffer ring follows `io_uring_register_buf_ring(3)`: a page-aligned array of
//! `io_uring_buf` entries whose tail the application publishes with a release store; the
//! kernel picks a buffer per receive completion and names it in the completion's flags. Every
//! buffer handed to the kernel stays mapped until this value is dropped, and its owner drops
//! it only after the ring (`Worker` declares the ring field first, and reaps every operation
//! before either goes).

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{squeue, IoUring};

/// A ring and the name of its completion mode.
pub struct Ring {
    pub ring: IoUring,
    pub mode: &'static str,
}

impl Ring {
    pub fn new(entries: u32) -> io::Result<Ring> {
        let cq = entries.saturating_mul(4);
        type Setup = fn(&mut io_uring::Builder);
        let attempts: [(&'static str, Setup); 3] = [
            ("single-issuer+defer-taskrun", |b| {
                b.setup_single_issuer().setup_defer_taskrun();
            }),
            ("coop-taskrun", |b| {
                b.setup_coop_taskrun();
            }),
            ("default", |_| {}),
        ];
        let mut last = None;
        for (mode, setup) in attempts {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq);
            setup(&mut b);
            match b.build(entries) {
                Ok(ring) => return Ok(Ring { ring, mode }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
    }

    /// Queues one submission, submitting what is queued first when the queue is full.
    ///
    /// # Safety
    /// Every buffer and file descriptor the entry names must stay valid until its last
    /// completion has been reaped.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees the entry's buffers outlive the operation.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }
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
    /// Maps and registers the ring; `count` must be a power of two ≤ 32768.
    pub fn register(ring: &Ring, bgid: u16, count: u16, size: usize) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two() && count <= 32768,
            "buffer count is a power of two"
        );
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
            ring.ring
                .submitter()
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

    /// The bytes the kernel received into buffer `bid`.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count && len <= self.size,
            "completion names a buffer of ours"
        );
        // SAFETY: the buffer is inside the mapping; the kernel wrote `len` bytes and does not
        // touch this buffer again until `recycle` gives it back.
        unsafe { std::slice::from_raw_parts(self.bufs.add(bid as usize * self.size), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.put(bid);
        self.publish();
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

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{cqueue, opcode, types};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// Multishot receive into 4 provided buffers, 64 messages: buffers must be recycled
    /// through the ring's wrap-around many times and every byte arrive in order.
    #[test]
    fn multishot_receive_recycles_provided_buffers() {
        let mut ring = Ring::new(8).unwrap();
        let mut br = BufRing::register(&ring, 7, 4, 64).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (rx, _) = listener.accept().unwrap();
        let fd = types::Fd(rx.as_raw_fd());
        let arm = opcode::RecvMulti::new(fd, 7).build().user_data(1);
        // SAFETY: the socket and the buffer ring outlive the loop below, which reaps every
        // completion before they are dropped.
        unsafe { ring.push(&arm).unwrap() };
        let mut got = Vec::new();
        let mut expected = Vec::new();
        for i in 0..64u32 {
            let msg = format!("message {i:04};");
            tx.write_all(msg.as_bytes()).unwrap();
            expected.extend_from_slice(msg.as_bytes());
            while got.len() < expected.len() {
                ring.ring.submit_and_wait(1).unwrap();
                let cqes: Vec<_> = ring.ring.completion().collect();
                for cqe in cqes {
                    if cqe.result() == -libc::ENOBUFS || !cqueue::more(cqe.flags()) {
                        // SAFETY: as above.
                        unsafe { ring.push(&arm).unwrap() };
                    }
                    if cqe.result() <= 0 {
                        continue;
                    }
                    let bid = cqueue::buffer_select(cqe.flags()).expect("a provided buffer");
                    got.extend_from_slice(br.data(bid, cqe.result() as usize));
                    br.recycle(bid);
                }
            }
        }
        assert_eq!(got, expected);
        drop(tx);
        drop(ring);
    }
}
