//! Values the rules' unit tests are written with.

use crate::types::{MofN, ShareIndex};

/// Share index `i`, which the test knows is valid.
pub fn idx(i: u8) -> ShareIndex {
    ShareIndex::new(i).unwrap()
}

/// `m`-of-`n`, which the test knows is valid.
pub fn mofn(m: u8, n: u8) -> MofN {
    MofN::new(m, n).unwrap()
}
