//! A simulated card's master keys are not left in freed heap memory by its card file's
//! writes and reads: an allocator that looks at every block this test binary frees, while
//! armed, for the key's bytes and for its hex text (what the card file holds).
//!
//! Rehearsal keys are in the card file in the clear anyway (docs/ARCHITECTURE.md,
//! "Rehearsal and production"); what this guards is that the simulator's code does not
//! scatter further copies where a core dump or a later allocation of this process finds
//! them. Its own binary: the allocator is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mkclone_backend::{
    CloneableKind, HashAlgorithm, KeyLabel, PublicKeyHash, Registration, SerialNumber,
};
use mkclone_hw_sim::state::Secret24;
use mkclone_hw_sim::{CardState, Store};

/// The master key this test writes: bytes no other data of a card holds.
const KEY: [u8; 24] = [
    0xC3, 0x5A, 0x96, 0x0F, 0xE1, 0x2D, 0x78, 0xB4, 0x4B, 0x87, 0xD2, 0x1E, 0x69, 0xA5, 0x3C, 0xF0,
    0x0E, 0x9B, 0x57, 0xE8, 0x24, 0x71, 0xBD, 0x06,
];
/// The first 16 bytes of its hex text: a copy of the text's start is found with them.
const KEY_HEX_START: &[u8; 16] = b"c35a960fe12d78b4";

static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);

struct Watching;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// SAFETY: every call is handed to `System` unchanged; `dealloc` only reads the block it is
// about to free (valid for `layout.size()` bytes until then) and touches atomics, without
// allocating.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) && layout.size() >= KEY_HEX_START.len() {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until freed below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if contains(block, &KEY[..16]) || contains(block, KEY_HEX_START) {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// One test at a time arms the allocator.
static SERIAL: Mutex<()> = Mutex::new(());

/// A card holding [`KEY`] in both registers of both kinds, and after them in its file
/// enough registrations that the text outgrows the buffer it is first written into.
fn card_with_the_key() -> CardState {
    let mut state = CardState::new(SerialNumber::new("FREEDMEM").unwrap());
    for kind in CloneableKind::ALL {
        let keys = state.keys_mut(kind);
        keys.current = Some(Secret24(KEY));
        keys.new = Some(Secret24(KEY));
    }
    state.registry = (0..80u8)
        .map(|i| Registration {
            name: KeyLabel::new(&format!("SA.KEY.K{i:02}")).unwrap(),
            hash: PublicKeyHash::new(HashAlgorithm::Sha256, &[i; 32]).unwrap(),
            clone: false,
            key: None,
        })
        .collect();
    state
}

/// How many freed blocks held the key while `f` ran.
fn copies_freed_during(f: impl FnOnce()) -> usize {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    FOUND.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    f();
    ARMED.store(false, Ordering::Relaxed);
    FOUND.load(Ordering::Relaxed)
}

#[test]
fn writing_and_reading_a_card_file_frees_no_copy_of_its_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let state = card_with_the_key();
    let found = copies_freed_during(|| {
        let store = Store::create_file(&path, &state).unwrap();
        let written = std::fs::metadata(&path).unwrap().len();
        assert!(
            written > 3 * 4096,
            "the card's text outgrows a first buffer: {written}"
        );
        // A change: the card file written again (with more text than before).
        store
            .with_state(|s| {
                s.eid = Some(mkclone_backend::Eid::new("FREED MEMORY").unwrap());
                ((), true)
            })
            .unwrap();
        // Another process's view: the file read and parsed anew.
        let again = Store::open_file(&path).unwrap();
        let current = again
            .with_state(|s| (s.keys(CloneableKind::Sym).current.clone(), false))
            .unwrap();
        assert!(current == Some(Secret24(KEY)));
        drop((store, again, current));
    });
    assert_eq!(found, 0, "freed blocks holding the master key");
}

/// The watch itself works: a `Vec` that grows past its capacity frees a block holding
/// what it held, and the allocator sees it.
#[test]
fn the_watch_sees_a_key_left_in_a_freed_block() {
    let found = copies_freed_during(|| {
        let mut v: Vec<u8> = Vec::with_capacity(24);
        v.extend_from_slice(&KEY);
        v.extend_from_slice(&[0; 64]);
        // `v`'s last block is wiped, as `Zeroizing` would: only the first one counts.
        zeroize::Zeroize::zeroize(&mut v);
    });
    assert_eq!(found, 1);
}
