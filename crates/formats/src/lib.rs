//! CCA's structures and the share cryptography of mkclone. Pure: no I/O, no device.
//!
//! - [`reader`]: the bounds-checked big-endian reader and writer every codec here uses.
//! - [`ids`]: every identifier byte, with its provenance (CCA's or project-assigned).
//! - [`pka`]: the RSA public key, the PKA public-key token (X'1E'/X'04') and the X'40'
//!   certificate section (X'41', X'42', X'45'); building, verifying, registration hash.
//! - [`clone_info`]: the X'1D' cloning-information token.
//! - [`mkvp`]: master-key verification patterns.
//! - [`shamir`]: m-of-n sharing of a 24-byte key in GF(2^8).
//! - [`seal`]: sealing a share for a target and opening it there.
//!
//! Layouts follow the IBM CCA Basic Services Reference, release 2.54, as summarised in
//! reference/cca-cloning.md; each module says which facts are CCA's and which values the
//! project assigned. Decoders are strict and canonical (one byte string per meaning) and
//! never panic, whatever the input. Secrets live in zeroizing types whose `Debug` is
//! redacted. RSA private-key operations happen only in tests: signing and unwrapping are
//! closures supplied by the device that holds the key.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod clone_info;
mod error;
mod gf256;
pub mod ids;
pub mod mkvp;
pub mod pka;
pub mod reader;
pub mod seal;
mod secret;
pub mod shamir;
mod signature;

pub use error::{FormatError, Result};
pub use secret::{Key24, ShareValue};
pub use signature::{CertificateError, SIGNATURE_PREFIX_LEN, SignatureError, SignatureSubsection};
