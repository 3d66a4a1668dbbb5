//! The one trait every node implements.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{BackendError, Result};
use crate::outcome::{Applied, InstallProgress};
use crate::status::{NodeStatus, ShareStatus};
use crate::types::{
    Certificate, CloneableKind, Eid, KeyLabel, KeyRole, MofN, PublicKeyHash, PublicKeyToken,
    Registration, RetainedKeyInfo, RsaModulusBits, SealedShare, SerialNumber, ShareIndex,
};

/// Every operation of [`Backend`], for capability reports and error messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Status,
    SetEid,
    /// "set-m-of-n", as the journal spells the step (docs/JSON.md: one spelling).
    #[serde(rename = "set-m-of-n", alias = "set-mof-n")]
    SetMofN,
    ShareStatus,
    GenerateRetainedKey,
    RetainedPublicKey,
    ListRetainedKeys,
    DeleteRetainedKey,
    RegisterPublicKeyHash,
    RegisterPublicKey,
    ListRegistrations,
    UnregisterPublicKey,
    CertifyPublicKey,
    ObtainShare,
    InstallShare,
    SetMasterKey,
    ClearNew,
    LoadRandomMasterKey,
}

impl Operation {
    pub const ALL: [Operation; 18] = [
        Self::Status,
        Self::SetEid,
        Self::SetMofN,
        Self::ShareStatus,
        Self::GenerateRetainedKey,
        Self::RetainedPublicKey,
        Self::ListRetainedKeys,
        Self::DeleteRetainedKey,
        Self::RegisterPublicKeyHash,
        Self::RegisterPublicKey,
        Self::ListRegistrations,
        Self::UnregisterPublicKey,
        Self::CertifyPublicKey,
        Self::ObtainShare,
        Self::InstallShare,
        Self::SetMasterKey,
        Self::ClearNew,
        Self::LoadRandomMasterKey,
    ];

    /// What the operation does, in the words of CCA's verbs.
    pub fn description(self) -> &'static str {
        match self {
            Self::Status => "read status (CSUACFQ)",
            Self::SetEid => "set the EID (CSUACFC)",
            Self::SetMofN => "set m-of-n (CSUACFC SET-MOFN)",
            Self::ShareStatus => "read share tables (CSUACFQ STATMOFN)",
            Self::GenerateRetainedKey => "generate a retained key (CSNDPKG RETAIN)",
            Self::RetainedPublicKey => "read a retained public key",
            Self::ListRetainedKeys => "list retained keys (CSNDRKL)",
            Self::DeleteRetainedKey => "delete a retained key (CSNDRKD)",
            Self::RegisterPublicKeyHash => "register a public-key hash (CSNDPKH)",
            Self::RegisterPublicKey => "register a public key (CSNDPKR)",
            Self::ListRegistrations => "list registered hashes and keys",
            Self::UnregisterPublicKey => "unregister a public key and its hash",
            Self::CertifyPublicKey => "certify a public key with a retained key",
            Self::ObtainShare => "obtain a share (CSUAMKD OBTAIN)",
            Self::InstallShare => "install a share (CSUAMKD INSTALL)",
            Self::SetMasterKey => "set the master key (CSNBMKP SET)",
            Self::ClearNew => "clear the NEW register (CSNBMKP CLEAR)",
            Self::LoadRandomMasterKey => "load a random master key (CSNBMKP RANDOM, SET)",
        }
    }
}

display_as!(Operation, description);

/// What a backend can run, and what it guarantees about the master key's exposure.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Capabilities {
    /// Backend name: "sim", "zcrypt", "pkcs11".
    pub backend: &'static str,
    pub operations: BTreeSet<Operation>,
    /// True when the master key never appears whole outside the device.
    pub key_stays_in_device: bool,
    /// True when keys are kept in plain files (the simulator): rehearsal only.
    pub rehearsal_only: bool,
    /// True when INSTALL itself compares the rebuilt key with the source's pattern that
    /// travels signed (by the CSS key) inside every share, before loading NEW: then the
    /// NEW pattern a target reports is vouched for by the source's signature. (True where
    /// the share format is mkclone's and the check is ours: the simulator, PKCS#11. Not
    /// claimed for a real coprocessor, whose firmware's shares are not documented.)
    pub install_checks_signed_pattern: bool,
    /// What this node cannot protect, in sentences (a PKCS#11 token: what a holder of its
    /// user PIN, or of its SO PIN, can still do). Said when it is opened and by `status`.
    #[serde(default)]
    pub limits: Vec<String>,
}

impl Capabilities {
    pub fn supports(&self, op: Operation) -> bool {
        self.operations.contains(&op)
    }
    /// The operations in `needed` this backend lacks.
    pub fn missing(&self, needed: &[Operation]) -> Vec<Operation> {
        needed
            .iter()
            .copied()
            .filter(|op| !self.supports(*op))
            .collect()
    }
}

/// What the source needs to seal share `index` of `kind` for one target (CSUAMKD OBTAIN).
#[derive(Clone, Debug)]
pub struct ObtainRequest {
    pub kind: CloneableKind,
    pub index: ShareIndex,
    /// The source's CSS key (retained, CLONE).
    pub css_label: KeyLabel,
    /// The name under which the SA public key is registered on the source.
    pub sa_name: KeyLabel,
    /// The target's CSR public key certified by SA.
    pub csr_certificate: Certificate,
}

/// What a target needs to install one share (CSUAMKD INSTALL).
#[derive(Clone, Debug)]
pub struct InstallRequest {
    pub kind: CloneableKind,
    /// The target's CSR key (retained, CLONE).
    pub csr_label: KeyLabel,
    /// The name under which the SA public key is registered on the target.
    pub sa_name: KeyLabel,
    /// The source's CSS public key certified by SA.
    pub css_certificate: Certificate,
    pub share: SealedShare,
}

/// Generate parameters for a retained key.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub label: KeyLabel,
    pub role: KeyRole,
    pub bits: RsaModulusBits,
    /// Mark the key usable for cloning (CLONE).
    pub clone: bool,
}

/// What a certificate says about its subject besides the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectInfo {
    pub eid: Option<Eid>,
    pub serial: Option<SerialNumber>,
}

fn unsupported<T>(backend: &'static str, operation: Operation) -> Result<T> {
    Err(BackendError::NotSupported {
        operation,
        backend,
        hint: "run this step on a node whose backend supports it (see `mkclone status --capabilities`)".into(),
    })
}

/// The operations of [`Backend`], each written once: its signature and the [`Operation`]
/// its default body reports as `NotSupported` (the arguments unused).
macro_rules! not_supported_by_default {
    ($(
        $(#[$doc:meta])*
        fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty = $operation:ident;
    )*) => {
        $(
            $(#[$doc])*
            fn $name(&mut self $(, $arg: $ty)*) -> $ret {
                $(let _ = $arg;)*
                unsupported(self.backend_name(), Operation::$operation)
            }
        )*
    };
}

/// One node of a cloning ceremony.
///
/// Every state-changing method is safe to repeat: doing again what is already in place
/// returns [`Applied::AlreadyDone`], a different state in place is
/// [`BackendError::Conflict`] (or a more specific error), and a request whose fate is
/// unknown is [`BackendError::OutcomeUnknown`]. The read methods exist so that an
/// interrupted ceremony can be reconciled with the node's real state.
///
/// Methods default to "not supported by this backend" (as parsec's providers do), so a
/// backend states what it can do by what it implements and by [`Backend::capabilities`].
pub trait Backend {
    /// Short backend name: "sim", "zcrypt", "pkcs11".
    fn backend_name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// The access-control audit of `operations` on the plan's master keys `kinds`: the
    /// points of the device's role each needs and whether it has them, and what to check
    /// by hand. A device without access-control roles answers an empty audit (the
    /// default).
    fn access_audit(
        &mut self,
        operations: &[Operation],
        kinds: &[CloneableKind],
    ) -> Result<crate::access::AccessAudit> {
        let _ = (operations, kinds);
        Ok(crate::access::AccessAudit::default())
    }

    not_supported_by_default! {
        fn status(&mut self) -> Result<NodeStatus> = Status;

        fn set_eid(&mut self, eid: &Eid) -> Result<Applied<()>> = SetEid;

        fn set_m_of_n(&mut self, m_of_n: MofN) -> Result<Applied<()>> = SetMofN;

        fn share_status(&mut self) -> Result<ShareStatus> = ShareStatus;

        /// Generate a retained RSA key pair; returns its public-key token, which carries a
        /// certificate section self-signed by the new key (what CSNDPKH/CSNDPKR register).
        fn generate_retained_key(&mut self, request: &GenerateRequest)
            -> Result<Applied<PublicKeyToken>> = GenerateRetainedKey;

        /// The public-key token of a retained key, `None` when no key has that label.
        fn retained_public_key(&mut self, label: &KeyLabel)
            -> Result<Option<PublicKeyToken>> = RetainedPublicKey;

        fn list_retained_keys(&mut self) -> Result<Vec<RetainedKeyInfo>> = ListRetainedKeys;

        fn delete_retained_key(&mut self, label: &KeyLabel)
            -> Result<Applied<()>> = DeleteRetainedKey;

        fn register_public_key_hash(&mut self, name: &KeyLabel, hash: &PublicKeyHash, clone: bool)
            -> Result<Applied<()>> = RegisterPublicKeyHash;

        /// Register the key in `certificate` under `name`; it must match the hash registered
        /// under that name, with the same CLONE mark.
        fn register_public_key(&mut self, name: &KeyLabel, certificate: &Certificate, clone: bool)
            -> Result<Applied<()>> = RegisterPublicKey;

        /// Remove a registered public key and its hash (abort and clean-up).
        fn unregister_public_key(&mut self, name: &KeyLabel)
            -> Result<Applied<()>> = UnregisterPublicKey;

        fn list_registrations(&mut self) -> Result<Vec<Registration>> = ListRegistrations;

        /// Certify `subject`'s public key with the retained key `signer`: a certificate
        /// section naming the subject's EID/serial, signed by `signer`.
        fn certify_public_key(&mut self, signer: &KeyLabel, subject: &PublicKeyToken,
            info: &SubjectInfo) -> Result<Certificate> = CertifyPublicKey;

        fn obtain_share(&mut self, request: &ObtainRequest) -> Result<SealedShare> = ObtainShare;

        /// Install one share. Installing a share already received returns
        /// `AlreadyDone` with the current progress.
        fn install_share(&mut self, request: &InstallRequest)
            -> Result<Applied<InstallProgress>> = InstallShare;

        /// CSNBMKP SET: CURRENT → OLD, NEW → CURRENT, NEW cleared, share tables cleared.
        fn set_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>> = SetMasterKey;

        fn clear_new(&mut self, kind: CloneableKind) -> Result<Applied<()>> = ClearNew;

        /// Setup and tests: a random key into NEW, then SET.
        fn load_random_master_key(&mut self, kind: CloneableKind)
            -> Result<Applied<()>> = LoadRandomMasterKey;
    }
}
