//! Writes golden vectors out as fuzz seeds. Included by the golden tests of mkclone-cca and
//! mkclone-formats with `#[path]` (std only, no dependencies), so that the seed corpora
//! under `fuzz/seeds/` come from the hand-assembled vectors, never from an encoder.
//!
//! Inert unless `MKCLONE_FUZZ_SEEDS` names a directory: then each vector a test hands to
//! [`write`] lands in `<dir>/<target>/<test name>.<hash>` (the test harness names each
//! test's thread after the test; the hash tells apart several vectors of one test).
//! `fuzz/README.md` gives the command that regenerates the seeds.

#![allow(dead_code)]

use std::path::PathBuf;

/// The environment variable naming the directory seeds are written to.
pub const SEEDS_ENV: &str = "MKCLONE_FUZZ_SEEDS";

/// Write `bytes` as a seed of fuzz target `target`, when [`SEEDS_ENV`] is set.
pub fn write(target: &str, bytes: &[u8]) {
    let Some(root) = std::env::var_os(SEEDS_ENV) else {
        return;
    };
    let dir = PathBuf::from(root).join(target);
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .replace("::", "-");
    let path = dir.join(format!("{test}.{:016x}", fnv1a(bytes)));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes)) {
        panic!("{SEEDS_ENV}: cannot write {}: {e}", path.display());
    }
}

/// FNV-1a, 64 bits: a stable name for a vector (not a security property).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
