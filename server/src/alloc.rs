//! The global allocator: the system allocator plus a count of live bytes per thread.
//!
//! - Each thread counts its own allocations minus its own frees in a thread-local (exact,
//!   nothing shared per allocation).
//! - Each thread also publishes that count into a slot of its own (a cache line, written by
//!   that thread alone) whenever it has moved by `PUBLISH_BYTES` since the last time, so the
//!   process total (`total_allocated`) is the sum of a few slots, accurate to
//!   `PUBLISH_BYTES` per thread, without making allocation contend.
//! - Memory freed on another thread than the one that allocated it (replies built on one core
//!   and dropped on another) lowers one thread's count and leaves another's high: a single
//!   thread's figure drifts, the total does not. maxmemory is therefore checked against the
//!   total (as Redis checks `used_memory`), never against one thread's count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

pub struct CountingAlloc;

/// A thread republishes its count when it has moved this far.
const PUBLISH_BYTES: i64 = 64 << 10;
/// Threads with a slot of their own; later ones share the last slot (atomically).
const SLOTS: usize = 256;

#[repr(align(64))]
struct Slot(AtomicI64);

static PUBLISHED: [Slot; SLOTS] = [const { Slot(AtomicI64::new(0)) }; SLOTS];
static SLOTS_USED: AtomicUsize = AtomicUsize::new(0);
/// The highest total seen at a publication (INFO `used_memory_peak`).
static PEAK: AtomicI64 = AtomicI64::new(0);

struct Local {
    live: Cell<i64>,
    published: Cell<i64>,
    slot: Cell<usize>,
}

thread_local! {
    static LOCAL: Local = const {
        Local { live: Cell::new(0), published: Cell::new(0), slot: Cell::new(usize::MAX) }
    };
}

#[inline]
fn add(n: i64) {
    // `try_with`: during thread teardown the slot may be gone; the count then stops mattering.
    let _ = LOCAL.try_with(|l| {
        let live = l.live.get() + n;
        l.live.set(live);
        if (live - l.published.get()).abs() >= PUBLISH_BYTES {
            publish(l, live);
        }
    });
}

#[cold]
fn publish(l: &Local, live: i64) {
    let mut slot = l.slot.get();
    if slot == usize::MAX {
        slot = SLOTS_USED.fetch_add(1, Ordering::Relaxed).min(SLOTS - 1);
        l.slot.set(slot);
    }
    let delta = live - l.published.get();
    // The last slot may be shared by late threads, hence an add rather than a store.
    PUBLISHED[slot].0.fetch_add(delta, Ordering::Relaxed);
    l.published.set(live);
    if delta > 0 {
        let used = SLOTS_USED.load(Ordering::Relaxed).min(SLOTS);
        let total: i64 = PUBLISHED[..used]
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        PEAK.fetch_max(total, Ordering::Relaxed);
    }
}

/// The largest process total seen so far: at any publication, or at any call of this.
pub fn peak_allocated() -> i64 {
    let now = total_allocated();
    PEAK.fetch_max(now, Ordering::Relaxed).max(now)
}

/// Live bytes allocated minus freed by the calling thread (exact; drifts when memory
/// crosses threads, see the module note).
pub fn thread_allocated() -> i64 {
    LOCAL.try_with(|l| l.live.get()).unwrap_or(0)
}

/// Live bytes of the whole process: every thread's published count, with the calling
/// thread's exact one. Accurate to 64 KiB per other thread; O(threads) relaxed loads.
pub fn total_allocated() -> i64 {
    let used = SLOTS_USED.load(Ordering::Relaxed).min(SLOTS);
    let (mine, my_published) = LOCAL
        .try_with(|l| (l.live.get(), l.published.get()))
        .unwrap_or((0, 0));
    let published: i64 = PUBLISHED[..used]
        .iter()
        .map(|s| s.0.load(Ordering::Relaxed))
        .sum();
    published - my_published + mine
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// adds bookkeeping that neither allocates nor touches the returned memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl's note).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_live_bytes_of_this_thread() {
        let before = thread_allocated();
        let v: Vec<u8> = Vec::with_capacity(1 << 20);
        assert!(thread_allocated() - before >= 1 << 20);
        drop(v);
        assert!(thread_allocated() - before < 1 << 20);
    }

    /// Memory allocated on one thread and freed on another: each thread's count drifts, the
    /// total does not.
    #[test]
    fn the_total_survives_frees_on_another_thread() {
        let before = total_allocated();
        let v: Vec<u8> = std::thread::spawn(|| vec![1u8; 8 << 20]).join().unwrap();
        let during = total_allocated();
        assert!(
            (during - before - (8 << 20)).abs() < 1 << 20,
            "{before} {during}"
        );
        std::thread::spawn(move || drop(v)).join().unwrap();
        let after = total_allocated();
        assert!((after - before).abs() < 1 << 20, "{before} {after}");
    }
}
