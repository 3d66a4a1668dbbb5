//! The harnesses of mkclone's fuzz targets: one function per input an attacker or a broken
//! device can hand mkclone, each checking the invariant the decoder promises. The binaries
//! in `fuzz_targets/` are one line each; docs/RELIABILITY.md describes every target.
//!
//! Every harness
//! - decodes under the allocation cap ([`alloc_cap`]): no single allocation beyond what
//!   the input's length justifies;
//! - formats every error it gets (Display and Debug run on attacker-chosen values too);
//! - checks a round trip where the format has one: canonical binary formats re-encode to
//!   the input byte for byte, the others decode to the same value after re-encoding.
//!
//! A failed invariant panics, which libFuzzer reports as a crash with the input saved.

pub mod alloc_cap;
pub mod cca;
pub mod files;
pub mod formats;
pub mod guarded;
pub mod host;
pub mod hostlib;
pub mod pkcs11;

#[global_allocator]
static ALLOC: alloc_cap::CappedAlloc = alloc_cap::CappedAlloc;

/// Format an error both ways, under the cap of the input it came from: a message is
/// built from attacker-chosen values and must neither panic nor balloon.
pub(crate) fn shown<E: std::fmt::Display + std::fmt::Debug>(error: &E, cap: usize) -> String {
    alloc_cap::capped(cap, || {
        let debug = format!("{error:?}");
        let mut text = error.to_string();
        text.push('\n');
        text.push_str(&debug);
        text
    })
}
