//! Errors. Each says what went wrong, on what, and what to do about it.

use thiserror::Error;

use crate::backend::Operation;
use crate::types::{CloneableKind, Eid, KeyLabel, MasterKeyKind, ShareIndex};

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// A value refused by a domain type's constructor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("key label {label:?} is not a valid CCA label: {reason}")]
    KeyLabel { label: String, reason: String },
    #[error("environment ID {eid:?} is not valid: {reason}")]
    Eid { eid: String, reason: String },
    #[error("serial number {serial:?} is not valid: {reason}")]
    Serial { serial: String, reason: String },
    #[error("m-of-n {m}-of-{n} is not valid: {reason}")]
    MofN { m: u8, n: u8, reason: String },
    #[error("share index {index} is not valid: {reason}")]
    ShareIndex { index: u32, reason: String },
    #[error(
        "{text:?} is not a master-key kind: use sym or asym (aes and apka are reported, not cloned)"
    )]
    MasterKeyKind { text: String },
    #[error(
        "CCA does not support cloning the {kind} master key; only the SYM and ASYM master keys can be cloned. \
         Load the {kind} master key on each node from key parts instead"
    )]
    CloningNotSupported { kind: MasterKeyKind },
    #[error("verification pattern is not valid: {reason}")]
    Pattern { reason: String },
    #[error("public-key hash is not valid: {reason}")]
    Hash { reason: String },
    #[error("RSA modulus of {bits} bits is not supported: use 2048, 3072 or 4096")]
    ModulusBits { bits: u16 },
    #[error("{what} is malformed: {reason}")]
    Structure { what: &'static str, reason: String },
}

/// Everything a backend operation can report.
///
/// The variants a ceremony must react to differently are distinct: a conflict is not an
/// outcome-unknown, a wrong target is not a rejected share.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("{operation} is not supported by the {backend} backend: {hint}")]
    NotSupported {
        operation: Operation,
        backend: &'static str,
        hint: String,
    },

    #[error(transparent)]
    Invalid(#[from] DomainError),

    // --- share transport ---------------------------------------------------------------
    #[error(
        "this share is addressed to another node: it names EID {expected_eid:?} and CSR key {expected_key}, \
         this node is EID {actual_eid:?} with CSR key {actual_key}. Give the bundle to the node it names"
    )]
    WrongTarget {
        expected_eid: String,
        expected_key: String,
        actual_eid: String,
        actual_key: String,
    },
    /// One error for every cryptographic failure after the header check (OAEP, CBC pad,
    /// structure, signature), so that errors are no padding oracle.
    #[error(
        "the share was rejected: it does not decrypt and verify as a share from the certified source. \
         It may be damaged or tampered with; obtain it again from the source. Nothing was changed on this node"
    )]
    ShareRejected,
    #[error("the certificate was rejected: {reason}. Certify the key again on the SA node")]
    CertificateRejected { reason: String },
    /// A different share under an index already received.
    #[error(
        "a different share with index {index} was already installed here for the {kind} master key: the shares \
         come from different sources, keys or m-of-n settings. Clear NEW (mkclone abort --clear-new) and install \
         shares of one source and one key"
    )]
    DuplicateShare {
        kind: CloneableKind,
        index: ShareIndex,
    },
    /// The shares do not fit together (m-of-n, source, or rebuilt key).
    #[error(
        "the {kind} share does not fit the shares already installed or this node's setting: its m-of-n differs \
         from this node's, it comes from another source or key, or the rebuilt key does not match the pattern the \
         source signed. Nothing was loaded; check m-of-n on both nodes, clear NEW (mkclone abort --clear-new) and \
         install shares of one source"
    )]
    ShareMismatch { kind: CloneableKind },
    #[error(
        "the {kind} master key in the NEW register is already complete; no more shares are needed. \
         Confirm and set it, or clear NEW to start again"
    )]
    KeyAlreadyComplete { kind: CloneableKind },

    // --- registry ----------------------------------------------------------------------
    #[error(
        "no public-key hash is registered under {name}: register the SA key's hash first (dual control, step 1)"
    )]
    HashNotRegistered { name: KeyLabel },
    #[error(
        "no public key is registered under {name}: register the SA public key (dual control, step 2)"
    )]
    KeyNotRegistered { name: KeyLabel },
    #[error(
        "the public key offered for {name} does not match the hash registered under that name: \
         compare the fingerprints; the key or the hash is not the one you meant"
    )]
    KeyDoesNotMatchHash { name: KeyLabel },
    #[error("{name} is not marked for cloning (CLONE): register it again with the CLONE mark")]
    NotMarkedForCloning { name: KeyLabel },
    #[error(
        "the CLONE mark requested for {name} disagrees with the one on its registered hash: \
         register both with the same mark"
    )]
    CloneMarkMismatch { name: KeyLabel },

    // --- retained keys -----------------------------------------------------------------
    #[error("no retained key is labelled {label} on this node")]
    RetainedKeyNotFound { label: KeyLabel },
    #[error("retained key {label} cannot be used for {needed}: it is a {usage} key")]
    WrongKeyUsage {
        label: KeyLabel,
        needed: &'static str,
        usage: &'static str,
    },

    // --- master-key registers ----------------------------------------------------------
    #[error(
        "the {kind} master-key CURRENT register is not valid: load or set a master key on the source first"
    )]
    CurrentNotValid { kind: CloneableKind },
    #[error(
        "the {kind} master-key NEW register is not empty: clear it (mkclone abort / clear-new) before installing shares"
    )]
    NewNotEmpty { kind: CloneableKind },
    #[error(
        "the {kind} master-key NEW register is not full: install the remaining shares before SET"
    )]
    NewNotFull { kind: CloneableKind },
    #[error(
        "m-of-n is not set on this node: set it (SET-MOFN) before obtaining or installing shares"
    )]
    MofNNotSet,
    #[error("share index {index} is outside this node's m-of-n {n}: use 1 to {n}")]
    IndexOutOfRange { index: ShareIndex, n: u8 },

    // --- reconciliation ----------------------------------------------------------------
    /// The node already holds something different under the same name.
    #[error("{what} already exists on this node with different contents: {detail}")]
    Conflict { what: String, detail: String },
    #[error(
        "the EID is already set to {current:?} on this node; it cannot be changed to {requested:?}"
    )]
    EidAlreadySet { current: Eid, requested: Eid },

    /// An object the node keeps no longer has the attributes the backend gave it (a
    /// PKCS#11 key made sensitive, never extractable, not modifiable... found otherwise).
    #[error(
        "{object}: {attribute} is {found}, but mkclone made it {expected}: it was changed outside \
         mkclone; {consequence}. mkclone will not use it: see \"Changed outside mkclone\" in the README"
    )]
    ChangedOutsideMkclone {
        object: String,
        attribute: String,
        expected: String,
        found: String,
        consequence: String,
    },
    /// The operation needs a credential the node does not have or that was refused (the
    /// PKCS#11 security officer's PIN); nothing changed.
    #[error("{operation}: {detail}")]
    Credential {
        operation: Operation,
        detail: String,
    },
    /// A signal cancelled the operation before any request left for the node (the PKCS#11
    /// security officer's PIN prompt, at Ctrl-C); nothing changed. The ceremony stops there
    /// as at a safe point.
    #[error(
        "{operation}: {} cancelled it before anything was sent to the node; nothing changed",
        signal_name(*.signal)
    )]
    Interrupted { operation: Operation, signal: i32 },

    // --- device and transport ----------------------------------------------------------
    /// The request may or may not have been carried out. Read the node's state to learn.
    #[error(
        "{operation}: the outcome is unknown (the request left, no valid answer came back: {cause}). \
         Read the node's status before retrying; mkclone's resume does this for you"
    )]
    OutcomeUnknown { operation: Operation, cause: String },
    /// The device did not carry out the request (it never reached it, or it failed
    /// before changing anything: a PKCS#11 token's session-object work); nothing changed.
    #[error("{operation}: the device did not carry out the request; nothing changed: {cause}")]
    Transport { operation: Operation, cause: String },
    /// A CCA return/reason code without a more specific meaning.
    #[error(
        "{operation}: the coprocessor answered return code {return_code}, reason code {reason_code}: {message}"
    )]
    Device {
        operation: Operation,
        return_code: u16,
        reason_code: u16,
        message: String,
    },
    /// The device answered something mkclone cannot parse.
    #[error("{operation}: the device's reply is malformed: {detail}")]
    MalformedReply {
        operation: Operation,
        detail: String,
    },
}

impl BackendError {
    /// True when the request may have taken effect although no success was reported.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. })
    }

    /// The signal that cancelled the operation before any request left
    /// ([`BackendError::Interrupted`]).
    pub fn interrupted_by(&self) -> Option<i32> {
        match self {
            Self::Interrupted { signal, .. } => Some(*signal),
            _ => None,
        }
    }
}

/// The usual name of the signals that interrupt mkclone (Linux numbers).
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        3 => "SIGQUIT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}
