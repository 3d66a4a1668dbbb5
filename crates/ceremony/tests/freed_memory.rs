//! Writing and reading a ceremony file leaves no copy of the shares it holds in freed heap
//! memory: the JSON is built in buffers that wipe what they outgrow, the hex text is wiped
//! after use, hex is decoded into buffers sized once, and every `SealedShare` is wiped when
//! dropped. An allocator looks in every block this test binary frees while armed
//! (`mkclone_freed_watch`); its own binary, as the allocator is process-wide.
//!
//! A sealed share is ciphertext for a target's CSR key; this checks that mkclone makes no
//! copy of it that it does not account for.

use mkclone_backend::SealedShare;
use mkclone_ceremony::durable::Sensitivity;
use mkclone_ceremony::envelope::{self, Header, Put};
use mkclone_freed_watch::{Watching, copies_freed_during, needle};

#[global_allocator]
static ALLOCATOR: Watching = Watching;

const FORMAT: &str = "mkclone-freed-memory-test";

/// Three shares of some kilobytes each (the text outgrows any first buffer), each with
/// bytes no other data holds.
fn shares() -> Vec<SealedShare> {
    (1..=3u8)
        .map(|k| {
            let bytes = (0..3000u32)
                .map(|i| (i.wrapping_mul(151).wrapping_add(u32::from(k) * 17) % 251) as u8 ^ 0xA5)
                .collect();
            SealedShare::new(bytes).unwrap()
        })
        .collect()
}

/// For each share, its first 16 bytes and the first 16 digits of its hex text.
fn needles(shares: &[SealedShare]) -> Vec<[u8; 16]> {
    shares
        .iter()
        .flat_map(|s| {
            let hex = hex::encode(&s.as_bytes()[..8]);
            [needle(s.as_bytes()), needle(hex.as_bytes())]
        })
        .collect()
}

#[test]
fn writing_and_reading_a_file_of_shares_frees_no_copy_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shares.json");
    let header = Header {
        format: FORMAT.into(),
        version: 1,
        ceremony: "C-FREED".into(),
        rehearsal: true,
    };
    let needles = needles(&shares());
    let found = copies_freed_during(&needles, || {
        let body = shares();
        envelope::write_file(&path, &header, &body, Sensitivity::Secret, Put::Replace).unwrap();
        let read =
            envelope::read_file::<Vec<SealedShare>>(&path, FORMAT, 1, Some("C-FREED")).unwrap();
        assert!(read.body == body);
        assert!(std::fs::metadata(&path).unwrap().len() > 18_000);
    });
    assert_eq!(found, 0, "freed blocks holding a share");
}

/// The watch itself works in this binary.
#[test]
fn a_copy_left_in_a_freed_block_is_seen() {
    assert!(mkclone_freed_watch::sees_a_copy_left_in_a_freed_block());
}
