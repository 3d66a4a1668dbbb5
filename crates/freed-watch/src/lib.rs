//! Test support: does code leave a secret in freed heap memory?
//!
//! A `Vec` or `String` that grows moves its bytes to a larger block and frees the old one
//! as it is, and a value dropped without being wiped frees its bytes the same way; a core
//! dump, or a later allocation of the same process, finds them there. [`Watching`] is a
//! global allocator that, while armed by [`copies_freed_during`], looks in every block
//! freed for the needles it was given and counts the blocks that hold one.
//!
//! A test binary installs it as its allocator (it is process-wide, so the binaries that
//! use it hold only such tests):
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: mkclone_freed_watch::Watching = mkclone_freed_watch::Watching;
//! ```
//!
//! Each of its tests then checks one piece of work:
//! `assert_eq!(copies_freed_during(&[needle], || work()), 0)`. Blocks freed by other threads
//! while armed are looked at too (the armed calls are serialized, the other tests of the
//! binary are not): give each test needles of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The length of a needle: long enough that no unrelated block holds one by chance.
pub const NEEDLE: usize = 16;
/// How many needles one armed call may look for.
pub const MAX_NEEDLES: usize = 16;

static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// The needles, set only while not armed (so that no `dealloc` waits on this lock while
/// it is held to set them, and setting them frees nothing).
static NEEDLES: Mutex<([[u8; NEEDLE]; MAX_NEEDLES], usize)> =
    Mutex::new(([[0; NEEDLE]; MAX_NEEDLES], 0));
/// One armed call at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The allocator: the system's, which looks in each block it frees while armed.
pub struct Watching;

/// Whether the `len` bytes at `block` hold `needle`. Read with volatile reads, byte by
/// byte: a freed block's bytes past what its owner wrote were never initialized, which a
/// `&[u8]` over them may not claim.
///
/// # Safety
/// `block` must be valid for reads of `len` bytes.
// SAFETY: an unsafe fn for its contract above; it only reads, within `len` bytes.
unsafe fn contains(block: *const u8, len: usize, needle: &[u8; NEEDLE]) -> bool {
    if len < NEEDLE {
        return false;
    }
    // SAFETY: `i < len` at every call below, and `block` is valid for `len` bytes.
    let at = |i: usize| unsafe { std::ptr::read_volatile(block.add(i)) };
    (0..=len - NEEDLE)
        .filter(|&start| at(start) == needle[0])
        .any(|start| (1..NEEDLE).all(|k| at(start + k) == needle[k]))
}

// SAFETY: every call is handed to `System` unchanged; `dealloc` only reads the block it is
// about to free (valid for `layout.size()` bytes until then, read volatile), touches atomics
// and takes a lock that is never held while armed except by another `dealloc` (needles are
// set only while disarmed, and disarming survives a panic), without allocating.
unsafe impl GlobalAlloc for Watching {
    // SAFETY: the caller keeps `GlobalAlloc::alloc`'s contract, which `System` needs.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    // SAFETY: the caller keeps `GlobalAlloc::dealloc`'s contract: `ptr` is a live block
    // of `layout.size()` bytes from this allocator.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) && layout.size() >= NEEDLE {
            let needles = NEEDLES.lock().unwrap_or_else(|e| e.into_inner());
            let (list, count) = &*needles;
            let holds_a_needle = list[..*count].iter().any(|needle| {
                // SAFETY: `ptr` is a live block of `layout.size()` bytes until freed below.
                unsafe { contains(ptr, layout.size(), needle) }
            });
            if holds_a_needle {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// The first [`NEEDLE`] bytes of `secret` (which must have that many), as a needle.
pub fn needle(secret: &[u8]) -> [u8; NEEDLE] {
    let mut start = [0; NEEDLE];
    start.copy_from_slice(&secret[..NEEDLE]);
    start
}

/// How many blocks freed while `work` ran held one of `needles` (at most [`MAX_NEEDLES`]).
/// Counts nothing unless the binary's global allocator is [`Watching`]: check that a test
/// sees a planted copy (`a_copy_left_in_a_freed_block_is_seen` in each binary).
pub fn copies_freed_during(needles: &[[u8; NEEDLE]], work: impl FnOnce()) -> usize {
    assert!(
        needles.len() <= MAX_NEEDLES,
        "at most {MAX_NEEDLES} needles"
    );
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    {
        let mut set = NEEDLES.lock().unwrap_or_else(|e| e.into_inner());
        set.0[..needles.len()].copy_from_slice(needles);
        set.1 = needles.len();
    }
    /// Disarms when dropped: also when `work` panics, so that the rest of the binary runs
    /// unwatched (and no needle is set while armed).
    struct Armed;
    impl Drop for Armed {
        fn drop(&mut self) {
            ARMED.store(false, Ordering::Relaxed);
        }
    }
    FOUND.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let armed = Armed;
    work();
    drop(armed);
    FOUND.load(Ordering::Relaxed)
}

/// A check of the watch itself, for each binary that installs it: a `Vec` that grows
/// past its capacity frees a block holding what it held, which must be counted, and the
/// last block, wiped before it is freed, must not be. `true` when both hold.
pub fn sees_a_copy_left_in_a_freed_block() -> bool {
    let secret: [u8; NEEDLE] = *b"\xA7freed-watch\x5C\x01\xFE\x33";
    let found = copies_freed_during(&[secret], || {
        let mut v: Vec<u8> = Vec::with_capacity(NEEDLE);
        v.extend_from_slice(&secret);
        v.extend_from_slice(&[0; 64]);
        // The last block is wiped as `Zeroizing` would: only the first one counts.
        zeroize::Zeroize::zeroize(&mut v);
    });
    found == 1
}
