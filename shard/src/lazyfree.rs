//! Freeing large blocks in bounded slices.
//!
//! Dropping a 512 MB string or the 128 MB bucket array a 10M-key table leaves behind when it
//! grows is one `free`, which the allocator turns into one `munmap` of every resident page:
//! tens of milliseconds during which the shard's core serves nobody. A [`Doomed`] block is
//! instead handed back to the kernel a slice at a time with `madvise(MADV_DONTNEED)` from
//! the shard's background step ([`crate::Shard::lazyfree_step`]), and only the final `free`
//! — of a block that no longer has resident pages, so cheap — happens at once.
//!
//! Invariants:
//! - A `Doomed` exclusively owns its block from creation until it deallocates it, exactly
//!   once, with the layout it was allocated with.
//! - Only whole pages strictly inside `[ptr, ptr + size)` are advised away, so allocator
//!   metadata next to the block (glibc's chunk header, for instance) is never touched.
//!
//! Blocks smaller than [`LAZYFREE_MIN_BYTES`] are freed at once: their `free` is already as
//! cheap as one slice.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, Ordering};

/// Blocks at least this large are freed in slices.
pub const LAZYFREE_MIN_BYTES: usize = 1 << 20;
/// Bytes returned to the kernel per slice: about 0.3 ms of page freeing on this class of
/// machine (see the note of issue 5), so a step stays well under the 1 ms latency goal.
pub const LAZYFREE_SLICE_BYTES: usize = 4 << 20;
const PAGE: usize = 4096;

/// Bytes of arrays mapped directly by [`alloc_zeroed`] and not yet unmapped, process-wide:
/// the server adds them to the allocator's count for `used_memory` and maxmemory.
static MAPPED_BYTES: AtomicI64 = AtomicI64::new(0);

pub fn mapped_bytes() -> i64 {
    MAPPED_BYTES.load(Ordering::Relaxed)
}

fn is_mapped(layout: Layout) -> bool {
    layout.size() >= LAZYFREE_MIN_BYTES && layout.align() <= PAGE
}

fn page_round(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

/// Zeroed memory for a large array (a table's buckets). At [`LAZYFREE_MIN_BYTES`] and
/// above it is mapped from the kernel directly: zero pages arrive lazily, one fault per page
/// as the array is first touched, whatever the allocator would do (an allocator reusing
/// freed memory must `memset` it: 16 ms for a 64 MB array, all inside one insert). Smaller
/// arrays come from the global allocator. Null when memory is exhausted. Free with
/// [`Doomed::from_zeroed`].
pub fn alloc_zeroed(layout: Layout) -> *mut u8 {
    if !is_mapped(layout) {
        // SAFETY: callers pass non-empty layouts (a table has at least 4 buckets).
        return unsafe { alloc::alloc_zeroed(layout) };
    }
    let len = page_round(layout.size());
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    MAPPED_BYTES.fetch_add(len as i64, Ordering::Relaxed);
    p as *mut u8
}

/// A block of memory on its way back to the system.
pub struct Doomed {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Offset from `ptr` below which the pages have been released.
    released: usize,
    /// Mapped by [`alloc_zeroed`]: released by `munmap`, not the allocator.
    mapped: bool,
}

// SAFETY: a Doomed is the only owner of its block (see the module invariants); moving that
// ownership to another thread is as sound as moving a Vec<u8>.
unsafe impl Send for Doomed {}

impl Doomed {
    /// Takes ownership of `v`'s buffer; `None` (the vector simply dropped) when it has no
    /// heap buffer.
    pub fn from_vec(v: Vec<u8>) -> Option<Doomed> {
        let cap = v.capacity();
        if cap == 0 {
            return None;
        }
        let mut v = std::mem::ManuallyDrop::new(v);
        let layout = Layout::array::<u8>(cap).expect("a Vec's capacity is a valid layout");
        // SAFETY: a Vec with capacity > 0 holds a non-null pointer allocated by the global
        // allocator with exactly `Layout::array::<u8>(cap)`; ManuallyDrop keeps the Vec from
        // freeing it, so the Doomed becomes its only owner.
        Some(Doomed {
            ptr: unsafe { NonNull::new_unchecked(v.as_mut_ptr()) },
            layout,
            released: 0,
            mapped: false,
        })
    }

    /// Takes ownership of a block from [`alloc_zeroed`].
    ///
    /// # Safety
    /// `ptr` must have been returned by [`alloc_zeroed`] for `layout` and must not be used
    /// or freed by anyone else afterwards.
    pub unsafe fn from_zeroed(ptr: NonNull<u8>, layout: Layout) -> Doomed {
        Doomed {
            ptr,
            layout,
            released: 0,
            mapped: is_mapped(layout),
        }
    }

    pub fn size(&self) -> usize {
        self.layout.size()
    }

    /// Releases at most `slice` more bytes of pages. Returns true when every page has been
    /// released; the block itself is freed when the `Doomed` is dropped.
    pub fn step(&mut self, slice: usize) -> bool {
        if self.mapped {
            let total = page_round(self.layout.size());
            let len = (total - self.released).min(page_round(slice.max(PAGE)));
            if len > 0 {
                // SAFETY: [ptr + released, + len) is a page-aligned part of the mapping this
                // Doomed owns and nobody uses; unmapping part of a mapping is allowed.
                unsafe {
                    libc::munmap(
                        self.ptr.as_ptr().add(self.released) as *mut libc::c_void,
                        len,
                    );
                }
                MAPPED_BYTES.fetch_sub(len as i64, Ordering::Relaxed);
                self.released += len;
            }
            return self.released >= total;
        }
        let base = self.ptr.as_ptr() as usize;
        let first = (base + PAGE - 1) & !(PAGE - 1);
        let end = (base + self.layout.size()) & !(PAGE - 1);
        let start = first.max(base + self.released);
        if start >= end {
            self.released = self.layout.size();
            return true;
        }
        let len = (end - start).min(slice.max(PAGE) & !(PAGE - 1));
        // SAFETY: [start, start + len) is page-aligned and lies inside the block this Doomed
        // owns exclusively; nobody reads it again before it is freed, so replacing its pages
        // with zero-fill-on-demand pages changes nothing observable. A failure (which Linux
        // reports only for invalid ranges) merely leaves the pages to the final free.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
        self.released = start + len - base;
        start + len >= end
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        if self.mapped {
            // Whatever `step` has not unmapped yet.
            self.step(usize::MAX / 2);
            return;
        }
        // SAFETY: the block was allocated with `self.layout` (constructors' contracts) and is
        // freed only here, once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A queue of blocks freed in slices; what each shard and each table keeps.
#[derive(Default)]
pub struct Graveyard {
    blocks: Vec<Doomed>,
    /// Collections too large to free at once, freed a slice of buckets at a time.
    tables: Vec<crate::dict::Dict>,
    /// Lists too long to free at once, freed a slice of nodes at a time.
    lists: Vec<crate::types::list::List>,
    /// Large sorted sets, freed a few tree leaves and table buckets at a time.
    zsets: Vec<crate::types::zset::Sorted>,
}

/// Fields a buried collection may have and still be freed at once (Redis's
/// `LAZYFREE_THRESHOLD`).
pub const LAZYFREE_MIN_ELEMENTS: usize = 64;

/// Nodes of a buried list freed per slice (each up to 8 KiB by default).
const LIST_SLICE_NODES: usize = 64;

/// Buckets of a buried collection freed per slice.
const TABLE_SLICE_BUCKETS: usize = 1024;

impl Graveyard {
    /// Frees a collection now when it is small, or queues its table for slicing.
    ///
    /// A small table is emptied here (at most 64 nodes), but its large values, if any, join
    /// the queue rather than being freed on the request path.
    pub fn bury_hash(&mut self, h: crate::types::hash::Hash) {
        match h {
            crate::types::hash::Hash::Table(d) => self.bury_table(*d),
            small => drop(small),
        }
    }

    /// [`Graveyard::bury_hash`] for a set.
    pub fn bury_set(&mut self, s: crate::types::set::Set) {
        match s {
            crate::types::set::Set::Table(d) => self.bury_table(*d),
            small => drop(small),
        }
    }

    /// [`Graveyard::bury_hash`] for a sorted set: a tree of more than
    /// [`LAZYFREE_MIN_ELEMENTS`] elements is queued and freed in slices.
    pub fn bury_zset(&mut self, z: crate::types::zset::ZSet) {
        match z {
            crate::types::zset::ZSet::Tree(t) if t.len() > LAZYFREE_MIN_ELEMENTS => {
                self.zsets.push(*t)
            }
            crate::types::zset::ZSet::Tree(mut t) => {
                self.append(t.graveyard());
            }
            small => drop(small),
        }
    }

    /// A list of many nodes is queued and freed a slice of nodes at a time.
    pub fn bury_list(&mut self, l: crate::types::list::List) {
        if l.is_large() {
            self.lists.push(l);
        }
    }

    fn bury_table(&mut self, mut d: crate::dict::Dict) {
        if d.len() > LAZYFREE_MIN_ELEMENTS {
            self.tables.push(d);
        } else {
            while d.free_step(LAZYFREE_MIN_ELEMENTS) {}
            self.append(d.graveyard());
        }
    }

    /// Frees `v` now when it is small, or queues it for slicing.
    pub fn bury_vec(&mut self, v: Vec<u8>) {
        if v.capacity() >= LAZYFREE_MIN_BYTES {
            self.blocks.extend(Doomed::from_vec(v));
        }
    }

    pub fn bury(&mut self, d: Doomed) {
        if d.size() >= LAZYFREE_MIN_BYTES {
            self.blocks.push(d);
        }
    }

    pub fn append(&mut self, other: &mut Graveyard) {
        self.blocks.append(&mut other.blocks);
        self.tables.append(&mut other.tables);
        self.lists.append(&mut other.lists);
        self.zsets.append(&mut other.zsets);
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
            && self.tables.is_empty()
            && self.lists.is_empty()
            && self.zsets.is_empty()
    }

    /// Blocks and collections waiting.
    pub fn len(&self) -> usize {
        self.blocks.len() + self.tables.len() + self.lists.len() + self.zsets.len()
    }

    /// Bytes still owned.
    pub fn bytes(&self) -> usize {
        self.blocks.iter().map(|d| d.size()).sum()
    }

    /// Releases up to `slices` slices of [`LAZYFREE_SLICE_BYTES`] (or of a buried
    /// collection's buckets); true while anything remains.
    pub fn step(&mut self, mut slices: usize) -> bool {
        while slices > 0 {
            if let Some(l) = self.lists.last_mut() {
                slices -= 1;
                if !l.free_nodes(LIST_SLICE_NODES) {
                    self.lists.pop();
                }
                continue;
            }
            if let Some(z) = self.zsets.last_mut() {
                slices -= 1;
                if !z.free_step() {
                    let mut z = self.zsets.pop().expect("just seen");
                    self.append(z.graveyard());
                }
                continue;
            }
            if let Some(t) = self.tables.last_mut() {
                slices -= 1;
                if !t.free_step(TABLE_SLICE_BUCKETS) {
                    let mut t = self.tables.pop().expect("just seen");
                    // What the table's own graveyard holds (large values, its arrays) joins
                    // this one's queue.
                    self.append(t.graveyard());
                }
                continue;
            }
            let Some(d) = self.blocks.last_mut() else {
                return false;
            };
            slices -= 1;
            if d.step(LAZYFREE_SLICE_BYTES) {
                self.blocks.pop();
            }
        }
        !self.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_pages(ptr: *const u8, len: usize) -> usize {
        let base = ptr as usize & !(PAGE - 1);
        let span = ptr as usize + len - base;
        let mut vec = vec![0u8; span.div_ceil(PAGE)];
        // SAFETY: [base, base + span) is mapped (it covers a live allocation) and `vec` has
        // one byte per page of it, as mincore requires.
        let rc = unsafe { libc::mincore(base as *mut libc::c_void, span, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        vec.iter().filter(|b| *b & 1 == 1).count()
    }

    #[test]
    fn slices_release_pages_then_free() {
        let size = 24 << 20;
        let v = vec![7u8; size];
        let ptr = v.as_ptr();
        assert!(resident_pages(ptr, size) > (size / PAGE) * 9 / 10);
        let mut d = Doomed::from_vec(v).expect("non-empty");
        let mut steps = 1;
        while !d.step(LAZYFREE_SLICE_BYTES) {
            steps += 1;
            assert!(steps <= 8, "24 MB in 4 MB slices takes at most 7 steps");
        }
        assert!(steps >= 6, "each step released at most one slice: {steps}");
        assert!(
            resident_pages(ptr, size) <= 2,
            "only the partial pages at either end remain"
        );
        drop(d);
    }

    #[test]
    fn large_zeroed_arrays_are_mapped_and_unmapped_in_slices() {
        let layout = Layout::array::<u64>(3 << 20).unwrap(); // 24 MB
        let p = alloc_zeroed(layout);
        assert!(!p.is_null());
        // SAFETY: the mapping is 24 MB of zeroed, writable memory owned here.
        let words = unsafe { std::slice::from_raw_parts_mut(p as *mut u64, 3 << 20) };
        assert!(words.iter().all(|w| *w == 0));
        words[12345] = 7;
        assert!(resident_pages(p, layout.size()) > (layout.size() / PAGE) * 9 / 10);
        // SAFETY: from alloc_zeroed with this layout; not used below.
        let mut d = unsafe { Doomed::from_zeroed(NonNull::new(p).unwrap(), layout) };
        let mut steps = 1;
        while !d.step(LAZYFREE_SLICE_BYTES) {
            steps += 1;
        }
        assert_eq!(steps, 6, "24 MB in 4 MB munmaps");
        drop(d);
        // Small arrays come from the allocator and are freed by it.
        let small = Layout::array::<u64>(16).unwrap();
        let q = alloc_zeroed(small);
        // SAFETY: as above.
        drop(unsafe { Doomed::from_zeroed(NonNull::new(q).unwrap(), small) });
    }

    #[test]
    fn buried_hashes_are_freed_in_steps_and_keep_their_large_values_queued() {
        use crate::types::hash::{Hash, HashLimits};
        let limits = HashLimits::default();
        // A table of few fields, one of them a large value: the value is queued.
        let mut few = Hash::default();
        few.set(b"big", &vec![1u8; 2 * LAZYFREE_MIN_BYTES], limits, 1);
        few.set(b"small", b"v", limits, 1);
        assert_eq!(few.encoding(), "hashtable");
        let mut g = Graveyard::default();
        g.bury_hash(few);
        assert_eq!((g.len(), g.bytes()), (1, 2 * LAZYFREE_MIN_BYTES));
        // A table of many fields is queued whole and freed a slice of buckets per step.
        let mut many = Hash::default();
        for i in 0..10_000 {
            many.set(format!("f{i}").as_bytes(), b"v", limits, 1);
        }
        let mut g = Graveyard::default();
        g.bury_hash(many);
        assert_eq!(g.len(), 1);
        let mut steps = 1;
        while g.step(1) {
            steps += 1;
        }
        assert!(
            steps > 2,
            "10,000 fields took {steps} steps of 1,024 buckets"
        );
        assert!(g.is_empty());
    }

    #[test]
    fn graveyard_keeps_only_large_blocks() {
        let mut g = Graveyard::default();
        g.bury_vec(vec![1u8; 1000]);
        assert!(g.is_empty());
        g.bury_vec(vec![1u8; LAZYFREE_MIN_BYTES]);
        g.bury_vec(vec![1u8; 3 * LAZYFREE_SLICE_BYTES]);
        assert_eq!(g.len(), 2);
        let mut steps = 0;
        while g.step(1) {
            steps += 1;
        }
        assert_eq!(
            steps, 3,
            "3 slices for the big block, 1 for the small, last returns false"
        );
        assert_eq!(g.bytes(), 0);
    }
}
