//! mkclone: clone the master key of a cryptographic coprocessor into others by m-of-n
//! shares.
//!
//! The library holds what the binary is made of below the command line: the
//! configuration ([`config`]), opening configured nodes ([`nodes`]) and the demo
//! ([`demo`]); and re-exports the crates it stands on: [`backend`] (the `Backend` trait
//! and domain types), [`formats`] (CCA structures and share cryptography), [`cca`] (the
//! CPRB codec and `CcaBackend`), [`ceremony`] (the phases, files and journal) and [`sim`]
//! (the simulated coprocessor).

pub use mkclone_backend as backend;
pub use mkclone_cca as cca;
pub use mkclone_ceremony as ceremony;
pub use mkclone_formats as formats;
pub use mkclone_hw_sim as sim;
pub use mkclone_pkcs11 as pkcs11;

pub mod config;
pub mod demo;
pub mod hardening;
pub mod nodes;
mod pin;
pub mod signals;
pub mod terminal;
pub mod zcrypt;
