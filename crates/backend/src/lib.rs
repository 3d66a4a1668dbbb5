//! The `Backend` trait and the domain types every part of mkclone speaks.
//!
//! A backend is one node of a cloning ceremony: one CCA coprocessor (APQN), one PKCS#11
//! token, or one simulated card. This crate knows no device and no byte format: CCA
//! structures cross it as opaque, minimally validated byte newtypes ([`PublicKeyToken`],
//! [`Certificate`], [`SealedShare`]); `mkclone-formats` gives them meaning.
//!
//! Every domain type validates on construction, so a value that exists is a legal value.

/// `Display` as the text the type's `$method` gives (a name or a description).
macro_rules! display_as {
    ($name:ident, $method:ident) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.$method())
            }
        }
    };
}

pub mod access;
mod backend;
pub mod device_calls;
mod error;
mod outcome;
pub mod rules;
mod status;
mod status_cache;
pub mod timing;
mod types;

pub use backend::{
    Backend, Capabilities, GenerateRequest, InstallRequest, ObtainRequest, Operation, SubjectInfo,
};
pub use error::{BackendError, DomainError, Result};
pub use outcome::{Applied, InstallProgress};
pub use status::{
    CurrentState, GenerationState, Identity, NewState, NodeStatus, ReceptionState, RegisterStatus,
    ShareStatus, ShareTables,
};
pub use status_cache::StatusCache;
pub use types::lower_hex;
pub use types::{
    Certificate, CloneableKind, Eid, HashAlgorithm, KeyLabel, KeyRole, KeyUsage, MAX_SHARES,
    MasterKeyKind, MofN, PatternAlgorithm, PublicKeyHash, PublicKeyToken, Registration,
    RetainedKeyInfo, RsaModulusBits, SealedShare, SerialNumber, ShareIndex, VerificationPattern,
    grouped_hex,
};
