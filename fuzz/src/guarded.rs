//! Buffers that end at a guard page, for handing to a C function: a read or write one byte
//! past a buffer's end faults at once (libFuzzer reports the signal and saves the input).
//!
//! Why: the targets run without AddressSanitizer (`--sanitizer none`), so an overrun of a
//! heap buffer would go unseen. The simulated CCA library trusts the lengths it is handed,
//! as IBM's does; what this checks is that it reads and writes no more than them. Each
//! buffer is placed flush against the end of its slot, and every slot is followed by a
//! page mapped with no access. The slots are mapped once per process and reused.

use std::sync::OnceLock;

/// Bytes of one slot (a buffer handed to a call is at most this long).
pub const SLOT: usize = 64 << 10;
/// Slots: more than any verb has buffers (CSNDPKB: a rule array and eight).
pub const SLOTS: usize = 12;

/// The address of the mapping (an integer: the slots are used by one fuzzing thread).
fn arena() -> usize {
    static ARENA: OnceLock<usize> = OnceLock::new();
    *ARENA.get_or_init(|| {
        let page = page_size();
        assert!(
            SLOT.is_multiple_of(page),
            "the slot size is a whole number of pages"
        );
        let total = SLOTS * (SLOT + page);
        // SAFETY: an anonymous private mapping of `total` bytes at an address the kernel
        // chooses; nothing else refers to that memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "mmap of the guarded slots failed");
        for i in 0..SLOTS {
            // SAFETY: the page after slot `i` lies inside the mapping made above.
            let guard = unsafe { base.cast::<u8>().add(i * (SLOT + page) + SLOT) };
            // SAFETY: `guard` is page-aligned (the mapping is, SLOT is a multiple of the
            // page size) and one page of the mapping; no reference to it exists.
            let r = unsafe { libc::mprotect(guard.cast(), page, libc::PROT_NONE) };
            assert!(r == 0, "mprotect of a guard page failed");
        }
        base as usize
    })
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// A pointer to `bytes.len()` bytes holding `bytes`, ending where slot `slot`'s guard page
/// begins (for an empty buffer: the guard page itself, which nothing may touch). The
/// pointer stays valid for the process; the next `place` in the same slot overwrites it.
///
/// Panics when `bytes` is longer than a slot or `slot` is out of range: the harness's
/// own mistake.
pub fn place(slot: usize, bytes: &[u8]) -> *mut u8 {
    assert!(slot < SLOTS && bytes.len() <= SLOT, "guarded slot misuse");
    let page = page_size();
    let end = arena() + slot * (SLOT + page) + SLOT;
    let start = (end - bytes.len()) as *mut u8;
    // SAFETY: `start..end` lies inside slot `slot` of the mapping, readable and writable,
    // and does not overlap `bytes` (a Rust allocation).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, bytes.len()) };
    start
}
