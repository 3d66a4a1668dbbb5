//! The allocation check of the decoders' tests (crates/cca/tests/allocation.rs,
//! crates/hostlib/tests/allocation.rs, each including this file with `#[path]`): a global
//! allocator of the test binary that records, per thread, the largest single allocation
//! asked for, and [`largest`] to measure one call with it. A length or count field that
//! sizes an allocation before the bytes behind it are read shows as an allocation far
//! larger than the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Records the largest allocation of the current thread, then allocates with `System`.
struct LargestAllocation;

fn note(size: usize) {
    // `try_with`: an allocation while the thread is being torn down is not recorded.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: both methods forward their own arguments to `System` unchanged, after
// recording a size; the contract of `GlobalAlloc` is `System`'s. The provided
// `alloc_zeroed` and `realloc` allocate through `alloc`, so every size asked for, a
// reallocation's new size too, is recorded.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// The largest single allocation `f` makes on this thread, with `f`'s result.
pub fn largest<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}
