//! What a library answers never makes the host side allocate more than the answer
//! justifies. Found by the `hostlib_answers` fuzz target
//! (fuzz/regressions/hostlib_answers/role-segment-count-sizes-allocation): a CSUAACM
//! GET-ROLE role announcing 65535 access-control-point segments reserved room for all of
//! them (2 MiB) before reading one, from a role of a few dozen bytes.
//!
//! The check is a global allocator of this test binary that records, per thread, the
//! largest allocation asked for.

use mkclone_hostlib::access::Role;

#[path = "../../../build-support/largest_allocation.rs"]
mod largest_allocation;
use largest_allocation::largest;

/// A role as IBM's "Role data structure example" lays it out (version X'0100', length,
/// comment 20, checksum 2, reserved 2, role ID 8, strength 2, times 2 + 2, days 1,
/// reserved 1), then the point list's segment count and reserved, then `tail`.
fn role(count: u16, tail: &[u8]) -> Vec<u8> {
    let mut v = vec![0x01, 0x00, 0x00, 0x00];
    v.extend_from_slice(b"*New default role 1*");
    v.extend_from_slice(&[0xAB, 0xCD, 0x00, 0x00]);
    v.extend_from_slice(b"DEFAULT ");
    v.extend_from_slice(&[0x23, 0x45, 0x01, 0x0F, 0x17, 0x1E, 0x7C, 0x00]);
    v.extend_from_slice(&count.to_be_bytes());
    v.extend_from_slice(&[0x00, 0x00]);
    v.extend_from_slice(tail);
    let n = v.len() as u16;
    v[2..4].copy_from_slice(&n.to_be_bytes());
    v
}

#[test]
fn a_segment_count_of_65535_with_no_segments_allocates_nothing_for_them() {
    let bytes = role(0xFFFF, &[]);
    assert_eq!(bytes.len(), 48);
    let (decoded, most) = largest(|| Role::decode(&bytes));
    let error = decoded.unwrap_err();
    assert!(error.contains("the role ends at byte 48"), "{error}");
    assert!(
        most <= 8 * bytes.len(),
        "decoding a {}-byte role allocated {most} bytes at once",
        bytes.len()
    );
}

#[test]
fn a_large_count_with_one_segment_is_refused_within_its_bytes() {
    // One segment X'0000'..X'0007' (one bitmap byte), the count saying 40000.
    let segment = [0x00, 0x00, 0x00, 0x07, 0x00, 0x01, 0x00, 0x00, 0xFF];
    let bytes = role(40000, &segment);
    let (decoded, most) = largest(|| Role::decode(&bytes));
    assert!(decoded.is_err());
    assert!(most <= 8 * bytes.len(), "allocated {most} bytes at once");
    // The count right: decodes, and the point list is read.
    let good = role(1, &segment);
    let role = Role::decode(&good).unwrap();
    assert!(role.enables(0x0007) && !role.enables(0x0008));
}

/// The fuzzer's input, byte for byte: the operation byte (18: decode the role), flags and
/// an offset to ask about, then the role (IBM's example, mutated: the segment count at
/// offset 44 of the role reads X'FFFF').
#[test]
fn the_fuzzers_role_input() {
    let input = hex::decode(concat!(
        "12000204010000662a4e65772064650000011700230000f0ffffffffffffffff",
        "ffffffffffffffffffffffffffffffffffffff6661756c7420726f6c6520312a",
        "abcd000044454641554c54202345010f171e7c00000200000000011700230000",
        "f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "ffffff02000217000300008f99fe",
    ))
    .unwrap();
    let bytes = &input[4..];
    assert_eq!(&bytes[44..46], &[0xFF, 0xFF]);
    let (decoded, most) = largest(|| Role::decode(bytes));
    assert!(decoded.is_err());
    assert!(most <= 8 * bytes.len(), "allocated {most} bytes at once");
}
