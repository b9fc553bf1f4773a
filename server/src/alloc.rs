//! The global allocator: mimalloc plus a count of live bytes per thread.
//!
//! Why mimalloc: its small size classes are exact multiples of 8 bytes up to 64, so a
//! 63-byte table entry ([`percore_shard::dict`]) costs 64 bytes where glibc's 8-byte chunk
//! header makes it 80 (1M 16/32-byte keys: RSS 88.8 B/key with glibc); and its heaps are per
//! thread, which is what a thread-per-core server allocates like. Freed memory is returned to
//! the kernel at once ([`PURGE_DELAY_MS`]) rather than after mimalloc 3's default of 1 s, so a burst of large buffers (a client that stops reading) does not linger in RSS.
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

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;

/// mimalloc's delay before freed pages go back to the kernel, in ms: none. With 1 ms, a
/// core stalled on a client that does not read kept 120 MB of freed reply buffers resident
/// (67 MB with 0), because a delayed purge runs only at a later allocation on that thread.
pub const PURGE_DELAY_MS: i64 = 0;

// Positions in mimalloc 3's `mi_option_t` (include/mimalloc.h), which libmimalloc-sys does
// not name for v3; a test checks them against the documented defaults.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ARENA_PURGE_MULT: libmimalloc_sys::mi_option_t = 24;
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Sets mimalloc's options; call first thing in `main`.
pub fn configure() {
    // SAFETY: mi_option_set only stores an option value; these options are read at each
    // purge decision, so setting them after early allocations is fine.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_PURGE_MULT, 1);
        // No transparent huge pages: with them, filling 10M keys showed 12-16 SETs a second
        // taking ~5 ms each (a fault that must find and zero a 2 MB page), and none without.
        // Redis asks for THP off for the same reason. mimalloc reads its option when it
        // starts, before `main`, so the process-wide switch is flipped here as well; it
        // overrides MADV_HUGEPAGE on every mapping, existing or future.
        libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Returns freed memory of the calling thread's heap to the kernel now (MEMORY PURGE).
pub fn purge() {
    // SAFETY: mi_collect only releases memory the allocator holds free.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The allocator's statistics as text (MEMORY MALLOC-STATS).
pub fn stats_text() -> String {
    unsafe extern "C" fn append(msg: *const std::ffi::c_char, arg: *mut std::ffi::c_void) {
        // SAFETY: `arg` is the &mut String passed below, alive for the call; mimalloc hands
        // a NUL-terminated message.
        // The text is only appended within the capacity reserved below: allocating from
        // inside the allocator's own report is avoided.
        unsafe {
            let out = &mut *(arg as *mut String);
            let msg = std::ffi::CStr::from_ptr(msg).to_string_lossy();
            if out.len() + msg.len() <= out.capacity() {
                out.push_str(&msg);
            }
        }
    }
    let mut out = String::with_capacity(64 << 10);
    // SAFETY: the callback only appends to `out`, which outlives the call.
    unsafe {
        libmimalloc_sys::mi_stats_print_out(Some(append), &mut out as *mut String as *mut _);
    }
    out
}

/// The allocator's name and version, as INFO `mem_allocator` reports it.
pub fn name() -> String {
    // SAFETY: mi_version has no preconditions.
    let v = unsafe { libmimalloc_sys::mi_version() };
    format!("mimalloc-{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}
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
            .sum::<i64>()
            + percore_shard::lazyfree::mapped_bytes();
        PEAK.fetch_max(total, Ordering::Relaxed);
    }
}

/// Counts `delta` bytes of memory the calling thread maps itself as allocated by it (the
/// network ring's provided buffers, as their pages become resident or go back).
pub fn count_mapped(delta: i64) {
    add(delta);
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
/// thread's exact one, plus the large table arrays the shards map from the kernel directly
/// (`percore_shard::lazyfree::alloc_zeroed`). Accurate to 64 KiB per other thread;
/// O(threads) relaxed loads.
pub fn total_allocated() -> i64 {
    let used = SLOTS_USED.load(Ordering::Relaxed).min(SLOTS);
    let (mine, my_published) = LOCAL
        .try_with(|l| (l.live.get(), l.published.get()))
        .unwrap_or((0, 0));
    let published: i64 = PUBLISHED[..used]
        .iter()
        .map(|s| s.0.load(Ordering::Relaxed))
        .sum();
    published - my_published + mine + percore_shard::lazyfree::mapped_bytes()
}

// SAFETY: every method forwards to `MiMalloc` with the caller's arguments unchanged and only
// adds bookkeeping that neither allocates nor touches the returned memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (see the impl's note).
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        add(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option positions are right: before `configure` they hold mimalloc 3.3's defaults
    /// (src/options.c: purge_delay 1000 ms, arena_purge_mult 1, allow_thp 1), after it ours.
    #[test]
    fn mimalloc_options_are_the_documented_ones() {
        // SAFETY: mi_option_get only reads an option value.
        let get = |o| unsafe { libmimalloc_sys::mi_option_get(o) };
        if get(MI_OPTION_PURGE_DELAY) != PURGE_DELAY_MS as std::ffi::c_long {
            assert_eq!(get(MI_OPTION_PURGE_DELAY), 1000);
            assert_eq!(get(MI_OPTION_ARENA_PURGE_MULT), 1);
            assert_eq!(get(MI_OPTION_ALLOW_THP), 1);
        }
        configure();
        assert_eq!(
            get(MI_OPTION_PURGE_DELAY),
            PURGE_DELAY_MS as std::ffi::c_long
        );
        assert_eq!(get(MI_OPTION_ARENA_PURGE_MULT), 1);
        assert_eq!(get(MI_OPTION_ALLOW_THP), 0);
        assert!(name().starts_with("mimalloc-3."), "{}", name());
    }

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
        // Other tests of this binary allocate on their own threads meanwhile, so a round can
        // be disturbed; accounting that is wrong fails every round.
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let before = total_allocated();
            let v: Vec<u8> = std::thread::spawn(|| vec![1u8; 8 << 20]).join().unwrap();
            let during = total_allocated();
            std::thread::spawn(move || drop(v)).join().unwrap();
            let after = total_allocated();
            if (during - before - (8 << 20)).abs() < 1 << 20 && (after - before).abs() < 1 << 20 {
                return;
            }
            rounds.push((before, during, after));
        }
        panic!("(before, during, after) in each round: {rounds:?}");
    }
}
