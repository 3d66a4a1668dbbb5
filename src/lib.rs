//! mkclone: clone the master key of a cryptographic coprocessor into others by m-of-n
//! shares.
//!
//! The library re-exports the crates the binary is built from:
//! [`backend`] (the `Backend` trait and domain types), [`formats`] (CCA structures and
//! the share cryptography), [`cca`] (the CPRB codec and `CcaBackend`) and [`sim`] (the
//! simulated coprocessor), and holds [`demo`], a full rehearsal on temporary simulated
//! cards.

pub use mkclone_backend as backend;
pub use mkclone_cca as cca;
pub use mkclone_formats as formats;
pub use mkclone_hw_sim as sim;

pub mod demo;
