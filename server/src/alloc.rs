//! The global allocator: the system allocator plus a per-thread count of live bytes, so INFO
//! `used_memory` is exact without a shared atomic on every allocation. Memory freed on
//! another thread than it was allocated on makes one thread's count drop and another's
//! rise; the sum over threads is still the live total.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct CountingAlloc;

thread_local! {
    static ALLOCATED: Cell<i64> = const { Cell::new(0) };
}

#[inline]
fn add(n: i64) {
    // `try_with`: during thread teardown the slot may be gone; the count then stops mattering.
    let _ = ALLOCATED.try_with(|c| c.set(c.get() + n));
}

/// Live bytes allocated minus freed by the calling thread.
pub fn thread_allocated() -> i64 {
    ALLOCATED.try_with(|c| c.get()).unwrap_or(0)
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
    #[test]
    fn counts_live_bytes_of_this_thread() {
        let before = super::thread_allocated();
        let v: Vec<u8> = Vec::with_capacity(1 << 20);
        assert!(super::thread_allocated() - before >= 1 << 20);
        drop(v);
        assert!(super::thread_allocated() - before < 1 << 20);
    }
}
