//! No length or count field makes a decoder allocate more than the input justifies: each
//! reply here claims the most its field can say (255 patterns, 65535 keys, a 65535-byte
//! verb data) and carries almost nothing, and the largest single allocation the decoder
//! makes must stay within a few bytes per input byte.
//!
//! Found by the `cprb_reply` fuzz target (fuzz/regressions/cprb_reply/): a `vp` reply with
//! a pattern count of 255 and no entries made the decoder reserve room for 255 entries
//! (10200 bytes) from a 300-byte message.
//!
//! The check is a global allocator of this test binary that records, per thread, the
//! largest allocation asked for.

mod common;

use common::*;
use mkclone_cca::cprb::{CPRBX_LEN, Cprbx};
use mkclone_cca::parm::ParmBlock;
use mkclone_cca::verbs::{Reply, Request};

#[path = "../../../build-support/largest_allocation.rs"]
mod largest_allocation;
use largest_allocation::largest;

/// Bytes a decoder may allocate at once per byte of its input.
const PER_INPUT_BYTE: usize = 8;

/// Decode `message` as the reply to `request`: it must be refused, and no allocation may
/// exceed [`PER_INPUT_BYTE`] times the message's length.
#[track_caller]
fn refused_within_bounds(message: &[u8], request: &Request) {
    let (decoded, largest) = largest(|| Reply::from_message(message, request));
    assert!(decoded.is_err(), "{decoded:?}");
    assert!(
        largest <= PER_INPUT_BYTE * message.len(),
        "a {}-byte message made the decoder allocate {largest} bytes at once",
        message.len()
    );
}

#[test]
fn pattern_count_of_255_with_no_entries() {
    let data: &[&[u8]] = &[
        b"SER1    ", //  6 serial
        &[0xFF],     // 14 count 255, and no entry follows
    ];
    let parm = data_only(b"vp", 11, data);
    refused_within_bounds(&reply(0x11, 0, 0, &parm), &Request::Patterns);
}

/// The crash input the fuzzer found (a mutated `vp` reply: a count of 255, then 36 bytes
/// of entries that do not decode), cut where the zcrypt transport cuts a reply: after the
/// `rpld_parml` parameter bytes its CPRBX claims.
#[test]
fn the_fuzzers_pattern_count_input() {
    let written = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/cprb_reply/vp-pattern-count-255"
    ))
    .expect("the regression input is in the repository");
    let header = Cprbx::decode(&written).expect("the input has a CPRBX");
    let message = &written[..CPRBX_LEN + header.rpld_parml as usize];
    refused_within_bounds(message, &Request::Patterns);
}

#[test]
fn key_and_registration_counts_of_65535_with_no_entries() {
    for (code, request) in [
        (b"kl", Request::ListRetained),
        (b"rg", Request::ListRegistrations),
    ] {
        // 6 count 65535, and no entry follows
        let parm = data_only(code, 4, &[&[0xFF, 0xFF]]);
        refused_within_bounds(&reply(0x0A, 0, 0, &parm), &request);
    }
}

#[test]
fn share_table_count_of_255_with_no_tables() {
    // 6 m 3, n 5, count 255, and no table follows
    let parm = data_only(b"st", 5, &[&[0x03, 0x05, 0xFF]]);
    refused_within_bounds(&reply(0x0B, 0, 0, &parm), &Request::ShareTables);
}

#[test]
fn parameter_block_lengths_of_65535_over_a_few_bytes() {
    for parm in [
        cat(&[b"vp", &[0xFF, 0xFA], b"SET     "]), // rule array of 8190 keywords, one given
        cat(&[b"vp", &EMPTY, &[0xFF, 0xFF], &[0; 8]]), // 65533 bytes of verb data, 8 given
        cat(&[b"vp", &EMPTY, &EMPTY, &[0xFF, 0xFF], &[0xFF, 0xFF, 0, 0]]), // key block, entry
    ] {
        let (decoded, largest) = largest(|| ParmBlock::decode(&parm));
        assert!(decoded.is_err(), "{decoded:?}");
        assert!(
            largest <= PER_INPUT_BYTE * parm.len() + 256,
            "a {}-byte parameter block made the decoder allocate {largest} bytes at once",
            parm.len()
        );
    }
}
