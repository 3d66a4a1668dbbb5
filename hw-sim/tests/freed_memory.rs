//! A simulated card's master keys and the shares it received are not left in freed heap
//! memory by its card file's writes and reads, nor by the rebuilding of a key from its
//! shares: an allocator that looks at every block this test binary frees, while
//! armed, for the key's bytes and for its hex text (what the card file holds), or for the
//! shares' bytes.
//!
//! Rehearsal keys are in the card file in the clear anyway (docs/ARCHITECTURE.md,
//! "Rehearsal and production"); what this guards is that the simulator's code does not
//! scatter further copies where a core dump or a later allocation of this process finds
//! them. Its own binary: the allocator is process-wide.

mod common;

use mkclone_backend::{
    CloneableKind, Eid, HashAlgorithm, KeyLabel, PatternAlgorithm, PublicKeyHash, Registration,
    SealedShare, SerialNumber, ShareIndex, VerificationPattern,
};
use mkclone_freed_watch::{Watching, copies_freed_during, needle};
use mkclone_hw_sim::state::{ReceivedShare, Secret24};
use mkclone_hw_sim::{CardState, Store};

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// The master key this test writes: bytes no other data of a card holds.
const KEY: [u8; 24] = [
    0xC3, 0x5A, 0x96, 0x0F, 0xE1, 0x2D, 0x78, 0xB4, 0x4B, 0x87, 0xD2, 0x1E, 0x69, 0xA5, 0x3C, 0xF0,
    0x0E, 0x9B, 0x57, 0xE8, 0x24, 0x71, 0xBD, 0x06,
];
/// The first 16 bytes of its hex text: a copy of the text's start is found with them.
const KEY_HEX_START: &[u8; 16] = b"c35a960fe12d78b4";

/// A card holding [`KEY`] in both registers of both kinds, and after them in its file
/// enough registrations that the text outgrows the buffer it is first written into.
fn card_with_the_key() -> CardState {
    let mut state = CardState::new(SerialNumber::new("FREEDMEM").unwrap());
    for kind in CloneableKind::ALL {
        let keys = state.keys_mut(kind);
        keys.current = Some(Secret24(KEY));
        keys.new = Some(Secret24(KEY));
    }
    // And as many received shares as a card can hold, each holding the key's bytes: read
    // back, the list must not grow through blocks it leaves unwiped.
    let keys = state.keys_mut(CloneableKind::Sym);
    keys.received = (1..=mkclone_backend::MAX_SHARES)
        .map(|i| ReceivedShare {
            index: ShareIndex::new(i).unwrap(),
            value: Secret24(KEY),
            origin_eid: Eid::new("SOURCE").unwrap(),
            origin_serial: SerialNumber::new("SIM00002").unwrap(),
            source_pattern: VerificationPattern::new(PatternAlgorithm::Sha1Method, &[i; 8])
                .unwrap(),
        })
        .collect();
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

/// The key's first 16 bytes and the first 16 characters of its hex text.
fn key_needles() -> [[u8; 16]; 2] {
    [needle(&KEY), *KEY_HEX_START]
}

#[test]
fn writing_and_reading_a_card_file_frees_no_copy_of_its_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let state = card_with_the_key();
    let found = copies_freed_during(&key_needles(), || {
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

/// The watch itself works in this binary.
#[test]
fn a_copy_left_in_a_freed_block_is_seen() {
    assert!(mkclone_freed_watch::sees_a_copy_left_in_a_freed_block());
}

/// A target that rebuilds a master key from m shares frees no block holding a share it
/// had received (m of them are the key): neither the list the shares are combined from
/// nor the card's own list of received shares as it grows.
#[test]
fn rebuilding_a_key_from_shares_frees_no_copy_of_a_share() {
    let kind = CloneableKind::Sym;
    let mut rig = common::rig(5, 5, 1);
    let csr = rig.targets[0].1.clone();
    let shares: Vec<SealedShare> = (1..=5)
        .map(|i| common::obtain(&mut rig.source, kind, i, &csr))
        .collect();
    let mut shares = shares.into_iter();
    let target = &mut rig.targets[0].0;
    for share in shares.by_ref().take(4) {
        common::install(target, kind, &rig.css_certificate, share).value();
    }
    let held = target.transport().store().snapshot().unwrap();
    let needles: Vec<[u8; 16]> = held
        .keys(kind)
        .received
        .iter()
        .map(|share| needle(&share.value.0))
        .collect();
    assert_eq!(needles.len(), 4);
    drop(held);
    let last = shares.next().unwrap();
    let found = copies_freed_during(&needles, || {
        common::install(target, kind, &rig.css_certificate, last).value();
    });
    assert_eq!(found, 0, "freed blocks holding a received share");
    // The shares did rebuild the source's key.
    assert_eq!(
        common::new_pattern(target, kind),
        common::current_pattern(&mut rig.source, kind)
    );
}
