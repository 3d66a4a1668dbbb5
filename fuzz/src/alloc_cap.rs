//! The allocation cap: a global allocator that aborts the fuzzer on any single allocation
//! larger than the input in hand justifies.
//!
//! Why here and not libFuzzer's `-malloc_limit_mb`: that limit works through the malloc
//! hooks of a sanitizer runtime, and the targets run with `--sanitizer none`, so it never
//! fires (only the RSS limit, checked once a second, still applies). A decoder that
//! trusted a length field (`Vec::with_capacity(u32 from the input)`) would allocate
//! gigabytes from a few bytes; this allocator sees the request itself.
//!
//! A target runs its decoding inside [`capped`] with a bound computed from the input
//! length ([`binary_cap`], [`text_cap`]); its own set-up (fixtures, the reference
//! encoders) runs uncapped. On a violation the allocator disables itself, prints what
//! was asked and the cap, and aborts: libFuzzer reports a deadly signal and saves the
//! input as a crash artifact.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bound on one allocation; `usize::MAX` when no cap is in force.
static CAP: AtomicUsize = AtomicUsize::new(usize::MAX);

/// [`System`], with every allocation's size checked against the current cap.
pub struct CappedAlloc;

#[inline]
fn check(size: usize) {
    let cap = CAP.load(Ordering::Relaxed);
    if size > cap {
        // Off first: the message below must not trip the cap again.
        CAP.store(usize::MAX, Ordering::Relaxed);
        eprintln!(
            "mkclone-fuzz: an allocation of {size} bytes exceeds the cap of {cap} bytes for this \
             input: a length field made a decoder allocate more than the input justifies\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        std::process::abort();
    }
}

// SAFETY: every method forwards to `System` with the caller's own arguments after a size
// check that either returns or aborts; the contract of `GlobalAlloc` is `System`'s.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Run `f` with every single allocation capped at `cap` bytes.
pub fn capped<R>(cap: usize, f: impl FnOnce() -> R) -> R {
    struct Uncap;
    impl Drop for Uncap {
        fn drop(&mut self) {
            CAP.store(usize::MAX, Ordering::Relaxed);
        }
    }
    CAP.store(cap, Ordering::Relaxed);
    let _uncap = Uncap;
    f()
}

/// The cap for a binary decoder: it copies fields out of the input and formats error
/// messages (hex at most triples a field), so 16 bytes per input byte and 4 KiB besides
/// are ample; a `u16` length field trusted before it is checked already exceeds it.
pub fn binary_cap(input_len: usize) -> usize {
    input_len.saturating_mul(16).saturating_add(4 << 10)
}

/// The cap for a text decoder (JSON, TOML): a parsed value may cost more than its text
/// (a JSON array of one-digit numbers is 2 bytes of text and 32 bytes of `Value` per
/// element, and vectors grow by doubling), so 64 bytes per input byte and 64 KiB besides.
pub fn text_cap(input_len: usize) -> usize {
    input_len.saturating_mul(64).saturating_add(64 << 10)
}
