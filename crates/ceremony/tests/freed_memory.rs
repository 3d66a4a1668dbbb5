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

/// For each share, 16 bytes of its start, middle and end, and the first 16 digits of its
/// hex text: a block holding any part of a share is seen.
fn needles(shares: &[SealedShare]) -> Vec<[u8; 16]> {
    shares
        .iter()
        .flat_map(|s| {
            let bytes = s.as_bytes();
            let hex = hex::encode(&bytes[..8]);
            [
                needle(bytes),
                needle(&bytes[bytes.len() / 2..]),
                needle(&bytes[bytes.len() - 16..]),
                needle(hex.as_bytes()),
            ]
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
        // A file never overwritten (a share bundle) is written the other way.
        let bundle = dir.path().join("bundle.json");
        envelope::write_file(&bundle, &header, &body, Sensitivity::Secret, Put::CreateNew).unwrap();
        let read =
            envelope::read_file::<Vec<SealedShare>>(&path, FORMAT, 1, Some("C-FREED")).unwrap();
        assert!(read.body == body);
        assert!(std::fs::metadata(&path).unwrap().len() > 18_000);
    });
    assert_eq!(found, 0, "freed blocks holding a share");
}

/// A share refused for its length is wiped as one accepted: the bytes decoded before the
/// refusal are not left behind.
#[test]
fn a_share_refused_when_read_leaves_no_copy() {
    let too_long: Vec<u8> = (0..16_385u32)
        .map(|i| (i.wrapping_mul(193) % 241) as u8 ^ 0x3C)
        .collect();
    let text = serde_json::to_string(&hex::encode(&too_long)).unwrap();
    let watched = [needle(&too_long), needle(&too_long[8000..])];
    let found = copies_freed_during(&watched, || {
        let err = serde_json::from_str::<SealedShare>(&text).unwrap_err();
        assert!(err.to_string().contains("sealed share"), "{err}");
    });
    assert_eq!(found, 0, "freed blocks holding the refused share");
}

/// The watch itself works in this binary.
#[test]
fn a_copy_left_in_a_freed_block_is_seen() {
    assert!(mkclone_freed_watch::sees_a_copy_left_in_a_freed_block());
}
