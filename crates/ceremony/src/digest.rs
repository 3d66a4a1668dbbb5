//! SHA-256 of the ceremony's files, envelopes and journal lines, counted as SHA time by
//! `mkclone_backend::timing` (the benchmark's breakdown counts every SHA primitive as such,
//! wherever it runs, and "our own CPU" as what is left).

use mkclone_backend::timing::{self, Category};
use sha2::{Digest, Sha256};

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    timing::measure(Category::Sha, || Sha256::digest(bytes).into())
}
