//! `Pkcs11Backend`: a cloning node on a PKCS#11 token, over the cryptoki crate.
//!
//! A node is a token found by label in a PKCS#11 module. All of the node's state lives in
//! the token (docs/ARCHITECTURE.md, "PKCS#11", lists every object): retained RSA key pairs, the master-key
//! registers as triple-DES key objects, the EID, m-of-n, registry and share tables as
//! private data objects, all reached from one register map that is replaced last, so that
//! every operation survives a crash between any two PKCS#11 calls (the next open finishes
//! or undoes it).
//!
//! Shares are byte for byte those of the simulated coprocessor (`mkclone-formats` builds
//! and reads them); signatures are made inside the token (CKM_SHA256_RSA_PKCS), a received
//! share's key is unwrapped inside the token with the CSR key (CKM_RSA_PKCS_OAEP, SHA-1), into
//! the only template the CSR key's `CKA_UNWRAP_TEMPLATE` allows, and the share decrypted there
//! (CKM_DES3_CBC).
//!
//! **Least privilege** (docs/ARCHITECTURE.md, "Object templates"): every object comes from one
//! template (`templates.rs`) — sensitive, every usage flag off but its step's, not modifiable,
//! not copyable — and is checked against it at open, in `status` and before each use. A master
//! key leaves the token only wrapped by the export key the token's security officer makes, as a
//! session object, at the source's first share export (`so_pin`). What the token cannot protect
//! is found at open and reported ([`Pkcs11Backend::limits`]).
//!
//! **What reaches host memory** ([`KEY_EXPOSURE_NOTICE`]): PKCS#11 has no secret-sharing
//! mechanism, so the master key is whole in host memory while a share is obtained
//! (source) and when the m-th share is installed (target), in zeroizing buffers. The
//! documentation of each operation says what else does (docs/ARCHITECTURE.md, "PKCS#11").
//!
//! Tested against SoftHSM 2.6.1 (tests/common/mod.rs: a hermetic SoftHSM per test binary).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// `unsafe` only in raw.rs (the module's own function list: the one attribute cryptoki
// cannot carry, and token information cryptoki cannot parse), which allows it for itself.
#![deny(unsafe_code)]

mod backend;
mod config;
mod error;
mod identity;
mod lock;
mod module;
mod objects;
mod raw;
mod session;
mod templates;
mod uri;

pub use backend::{KEY_EXPOSURE_NOTICE, PinPromptError, Pkcs11Backend};
pub use config::{PIN_SOURCE_FORMS, PinSource, Pkcs11NodeConfig, resolve_pin};
pub use error::{ObjectChange, PinOrigin, PinTries, Pkcs11Error, TokenPlace};
pub use identity::{DERIVED_PREFIX, TokenIdentity};
pub use lock::{LOCK_DIR_ENV, lock_dir};
pub use module::{SlotInfo, TokenSummary, list_slots, shared_module};
pub use session::CallStats;
pub use uri::{LibraryVersion, Pkcs11Uri, TokenMatch, UriError};

/// Test seams (the `test-seams` feature; never in a release of mkclone).
#[cfg(feature = "test-seams")]
pub mod test_seams {
    pub use crate::backend::{leave_objects_modifiable, make_export_keys_token_objects};
    pub use crate::templates::SECRET_USAGES;
}

/// For fuzz/ only (the `fuzzing` feature): the decoding of the token's data objects and
/// labels, which a user who knows the token's PIN can write.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::objects::fuzzing::*;
}
