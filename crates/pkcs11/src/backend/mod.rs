//! `Pkcs11Backend`: a cloning node on a PKCS#11 token.
//!
//! Every check follows the simulated card (hw-sim's `card.rs`), in the same order, with the
//! same typed errors `CcaBackend` reports for it, so that a ceremony cannot tell the two
//! apart except by what the capabilities say about the key's exposure.
//!
//! This file holds the struct, opening, errors and the `Backend` impl, which delegates;
//! each operation family is one `impl Pkcs11Backend` in its own file:
//! `store.rs` (finding, reading, creating objects), `generations.rs` (register-map
//! commits and recovery), `settings.rs` (EID, m-of-n, share tables), `registers.rs`
//! (status, SET, CLEAR NEW, random key), `retained.rs` (retained keys, certifying),
//! `registry.rs` (registered hashes and keys), `obtain.rs` (source side of a share) and
//! `install.rs` (target side).

mod check;
mod generations;
mod install;
mod login;
mod obtain;
mod officer;
mod probe;
mod registers;
mod registry;
mod retained;
mod settings;
mod store;

#[cfg(feature = "test-seams")]
pub use probe::leave_objects_modifiable;

use std::path::PathBuf;
use std::sync::Arc;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::slot::Slot;
use log::info;
use mkclone_backend::{
    Applied, Backend, BackendError, Capabilities, Certificate, CloneableKind, Eid, GenerateRequest,
    InstallProgress, InstallRequest, KeyLabel, MofN, NodeStatus, ObtainRequest, Operation,
    PublicKeyHash, PublicKeyToken, Registration, Result, RetainedKeyInfo, SealedShare,
    SerialNumber, ShareStatus, SubjectInfo,
};
use zeroize::Zeroizing;

use crate::config::{PinSource, Pkcs11NodeConfig};
use crate::error::{Pkcs11Error, explain};
use crate::lock::TokenLock;
use crate::module::{find_token, shared_module};
use crate::objects::RegisterMap;
use crate::raw::{RawModule, raw_module};
use crate::session::{CallError, CallStats, Token};
use crate::templates::TokenSupport;
use login::Who;

/// The command line's prompt for the security officer's PIN.
type SoPinPrompt = Box<dyn FnMut() -> std::result::Result<Zeroizing<String>, String> + Send>;

/// What the preflight and the docs say about this backend.
pub const KEY_EXPOSURE_NOTICE: &str = "pkcs11: PKCS#11 has no secret-sharing mechanism, so on this backend the master key is \
     whole in host memory while a share is obtained (source) and when the m-th share is installed (target); \
     mkclone holds it in zeroizing buffers only for those moments";

/// `CKA_APPLICATION` of the retained-key companions and the registry objects, so that each
/// list is one search.
const KEY_APPLICATION: &[u8] = b"mkclone/key";
const REG_APPLICATION: &[u8] = b"mkclone/reg";
const REGKEY_APPLICATION: &[u8] = b"mkclone/regkey";

/// Mechanisms mkclone needs, each with what it is for.
const MECHANISMS: [(MechanismType, &str); 8] = [
    (
        MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        "generating retained RSA keys",
    ),
    (
        MechanismType::SHA256_RSA_PKCS,
        "signing certificates and shares",
    ),
    (
        MechanismType::RSA_PKCS_OAEP,
        "unwrapping share keys and exporting the master key for splitting",
    ),
    (MechanismType::DES3_KEY_GEN, "loading a random master key"),
    (MechanismType::DES3_CBC, "decrypting received shares"),
    (
        MechanismType::SHA256_HMAC,
        "deriving the share polynomial's coefficients",
    ),
    (
        MechanismType::GENERIC_SECRET_KEY_GEN,
        "creating the coefficient seed",
    ),
    (
        MechanismType::SHA1,
        "computing verification patterns inside the token",
    ),
];

fn oaep() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

fn kind_code(kind: CloneableKind) -> u8 {
    match kind {
        CloneableKind::Sym => 1,
        CloneableKind::Asym => 2,
    }
}

/// A cloning node on one PKCS#11 token.
pub struct Pkcs11Backend {
    token: Token,
    label: String,
    module: PathBuf,
    token_serial: String,
    serial: SerialNumber,
    /// The register map in force (this backend is the token's one writer: it holds `lock`).
    map: RegisterMap,
    map_handle: Option<ObjectHandle>,
    /// The module's own function list (raw.rs: the unwrap template).
    raw: Arc<RawModule>,
    pkcs11: Pkcs11,
    slot: Slot,
    /// What the token accepts (probe.rs), which the templates follow.
    support: TokenSupport,
    /// What this token cannot protect (probe.rs), said at open and by `capabilities`.
    limits: Vec<String>,
    /// The export key pair the security officer made for this session (officer.rs):
    /// (wrapping half, decrypting half).
    export_pair: Option<(ObjectHandle, ObjectHandle)>,
    /// Where the security officer's PIN comes from (a source node).
    so_pin: Option<PinSource>,
    /// The command line's prompt for `so_pin = "prompt"`.
    so_pin_prompt: Option<SoPinPrompt>,
    /// The user PIN, kept (zeroizing) only on a node with `so_pin`: the user logs in again
    /// after the security officer's step.
    user_pin: Option<Zeroizing<String>>,
    /// The token's exclusive lock, held as long as this backend lives (declared last: it is
    /// released after the session is closed).
    lock: TokenLock,
}

impl Drop for Pkcs11Backend {
    fn drop(&mut self) {
        // Closing the session destroys the export key too; this says so explicitly.
        self.destroy_export_key();
    }
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("module", &self.module)
            .field("token", &self.label)
            .field("token_serial", &self.token_serial)
            .field("lock", &self.lock.path())
            .finish_non_exhaustive()
    }
}

/// The node serial CCA structures carry (8 characters): the token serial's last 8.
fn node_serial(token_serial: &str) -> SerialNumber {
    let trimmed = token_serial.trim();
    let tail: String = trimmed
        .chars()
        .rev()
        .take(SerialNumber::LEN)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    SerialNumber::new(&tail).unwrap_or_else(|_| {
        SerialNumber::new("PKCS11").unwrap_or_else(|_| unreachable!("a valid literal"))
    })
}

/// Return values that mean "this ciphertext or wrapped key is not acceptable" rather than
/// "the token or session failed".
fn is_session_failure(error: &CallError) -> bool {
    match error {
        CallError::Stopped { .. } => true,
        CallError::Token { error, .. } => matches!(
            error,
            CkError::Pkcs11(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::DeviceMemory
                    | RvError::HostMemory
                    | RvError::TokenNotPresent
                    | RvError::UserNotLoggedIn
                    | RvError::CryptokiNotInitialized
                    | RvError::OperationActive,
                _
            ) | CkError::LibraryLoading(_)
                | CkError::NullFunctionPointer
        ),
    }
}

fn attribute_bytes(attrs: Vec<Attribute>, wanted: AttributeType) -> Option<Vec<u8>> {
    attrs.into_iter().find_map(|a| match (a, wanted) {
        (Attribute::Value(v), AttributeType::Value) => Some(v),
        (Attribute::Label(v), AttributeType::Label) => Some(v),
        (Attribute::Modulus(v), AttributeType::Modulus) => Some(v),
        (Attribute::PublicExponent(v), AttributeType::PublicExponent) => Some(v),
        (Attribute::CheckValue(v), AttributeType::CheckValue) => Some(v),
        (Attribute::Id(v), AttributeType::Id) => Some(v),
        _ => None,
    })
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or(&[]).to_vec()
}

impl Pkcs11Backend {
    /// Open the token `config.token` names in `config.module`, log in with `pin`, find
    /// what the token enforces (`limits`), check every object mkclone keeps against its
    /// template ([`Pkcs11Error::ChangedOutside`] names one that differs), and recover
    /// mkclone's state (finish or undo an operation a crash interrupted).
    ///
    /// The backend holds the token's exclusive lock until it is dropped (`lock.rs`): while
    /// another backend, in this process or another, has the token open, this fails with
    /// [`Pkcs11Error::TokenInUse`] before touching the token.
    pub fn open(config: &Pkcs11NodeConfig, pin: Zeroizing<String>) -> Result<Self, Pkcs11Error> {
        let pkcs11 = shared_module(&config.module)?;
        let (slot, info) = find_token(
            &pkcs11,
            &config.module,
            &config.token,
            config.expect_token_serial.as_deref(),
        )?;
        let label = config.token.clone();
        let token_serial = info.serial_number().trim().to_string();
        // Before anything else, and above all before recovery destroys what no map
        // references: another process may be between creating objects and committing them.
        let lock = TokenLock::acquire(&config.module, &label, &token_serial)?;
        if !info.user_pin_initialized() {
            return Err(Pkcs11Error::UserPinNotInitialized { label });
        }
        if info.user_pin_locked() {
            return Err(Pkcs11Error::PinLocked { label });
        }
        for (mechanism, needed_for) in MECHANISMS {
            match pkcs11.get_mechanism_info(slot, mechanism) {
                Ok(_) => {}
                Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {
                    return Err(Pkcs11Error::MechanismMissing {
                        label,
                        mechanism: mechanism.to_string(),
                        needed_for,
                    });
                }
                Err(e) => {
                    return Err(Pkcs11Error::Session {
                        label,
                        function: "C_GetMechanismInfo",
                        detail: explain(&e),
                    });
                }
            }
        }
        let raw = raw_module(&config.module).map_err(|detail| Pkcs11Error::Session {
            label: label.clone(),
            function: "C_GetFunctionList",
            detail,
        })?;
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(|e| Pkcs11Error::Session {
                label: label.clone(),
                function: "C_OpenSession",
                detail: explain(&e),
            })?;
        let mut token = Token::new(session);
        login::log_in(&mut token, &pkcs11, slot, Who::User, &pin)
            .map_err(|failure| failure.at_open(&label))?;
        // A node that may export its master key logs in again after the SO's step.
        let user_pin = config.so_pin.is_some().then_some(pin);
        let mut backend = Self {
            token,
            raw,
            pkcs11,
            slot,
            support: TokenSupport::default(),
            limits: Vec::new(),
            serial: node_serial(&token_serial),
            token_serial,
            label,
            module: config.module.clone(),
            map: RegisterMap::default(),
            map_handle: None,
            export_pair: None,
            so_pin: config.so_pin.clone(),
            so_pin_prompt: None,
            user_pin,
            lock,
        };
        // What the token enforces (said in the log), then every object against its
        // template, before recovery destroys or anything uses one.
        backend.probe()?;
        backend
            .check_all()
            .map_err(|e| backend.check_error_at_open(e))?;
        backend.recover()?;
        info!(
            "pkcs11: token {:?} (serial {}) open, register map generation {}",
            backend.label, backend.token_serial, backend.map.generation
        );
        Ok(backend)
    }

    /// How the security officer's PIN is asked for when `so_pin = "prompt"` (the command
    /// line's no-echo prompt): called at the first share export, not before.
    pub fn set_so_pin_prompt(
        &mut self,
        prompt: impl FnMut() -> std::result::Result<Zeroizing<String>, String> + Send + 'static,
    ) {
        self.so_pin_prompt = Some(Box::new(prompt));
    }

    /// What this token cannot protect (also in [`Backend::capabilities`]).
    pub fn limits(&self) -> &[String] {
        &self.limits
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.label
    }

    /// The token's serial number as the token reports it.
    pub fn token_serial(&self) -> &str {
        &self.token_serial
    }

    /// PKCS#11 calls made so far and the time spent inside them.
    pub fn call_stats(&self) -> CallStats {
        self.token.stats()
    }

    /// Test seam: let `calls` more PKCS#11 calls through, then stop all work as a crash
    /// would (every later call fails, the operation reports an unknown outcome). Drop the
    /// backend and open the token again to recover.
    #[cfg(feature = "test-seams")]
    pub fn stop_after_calls(&mut self, calls: u64) {
        self.token.stop_after(calls);
    }

    /// Calls made since [`Pkcs11Backend::stop_after_calls`] (test seam).
    #[cfg(feature = "test-seams")]
    pub fn calls_since_armed(&self) -> u64 {
        self.token.calls_since_armed()
    }

    /// The labels of every token object the logged-in user can see (mkclone's and any
    /// other), sorted: for inspection and before/after comparisons.
    pub fn managed_objects(&mut self) -> Result<Vec<String>> {
        let op = Operation::Status;
        let handles = self
            .token
            .find(&[Attribute::Token(true)])
            .map_err(|e| self.device(op, e))?;
        let mut labels = Vec::new();
        for h in handles {
            let label = self.token.label(h).map_err(|e| self.device(op, e))?;
            labels.push(label);
        }
        labels.sort();
        Ok(labels)
    }

    // ---------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------

    fn device(&self, operation: Operation, error: CallError) -> BackendError {
        let cause = format!("token {:?}: {}", self.label, error.describe());
        match error {
            CallError::Stopped { .. } | CallError::Token { mutating: true, .. } => {
                BackendError::OutcomeUnknown { operation, cause }
            }
            CallError::Token { .. } => BackendError::Transport { operation, cause },
        }
    }

    fn corrupt(&self, operation: Operation, detail: impl Into<String>) -> BackendError {
        BackendError::MalformedReply {
            operation,
            detail: format!(
                "mkclone's state on token {:?} is damaged: {}",
                self.label,
                detail.into()
            ),
        }
    }

    fn open_error(&self, error: CallError) -> Pkcs11Error {
        Pkcs11Error::Session {
            label: self.label.clone(),
            function: error.function(),
            detail: error.describe(),
        }
    }
}

/// The `Backend` operations, each forwarded (as parsec's providers do) to the method of the
/// `impl Pkcs11Backend` that implements it in its family's file.
macro_rules! forward {
    ($($operation:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $method:ident;)*) => {
        $(
            fn $operation(&mut self $(, $arg: $ty)*) -> $ret {
                self.$method($($arg),*)
            }
        )*
    };
}

impl Backend for Pkcs11Backend {
    fn backend_name(&self) -> &'static str {
        "pkcs11"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "pkcs11",
            operations: Operation::ALL.into_iter().collect(),
            key_stays_in_device: false,
            rehearsal_only: false,
            // `install_share` compares the rebuilt key's pattern with the signed one.
            install_checks_signed_pattern: true,
            limits: self.limits.clone(),
        }
    }

    forward! {
        status() -> Result<NodeStatus> => status_internal;
        set_eid(eid: &Eid) -> Result<Applied<()>> => set_eid_internal;
        set_m_of_n(m_of_n: MofN) -> Result<Applied<()>> => set_m_of_n_internal;
        share_status() -> Result<ShareStatus> => share_status_internal;
        generate_retained_key(request: &GenerateRequest) -> Result<Applied<PublicKeyToken>>
            => generate_retained_key_internal;
        retained_public_key(label: &KeyLabel) -> Result<Option<PublicKeyToken>>
            => retained_public_key_internal;
        list_retained_keys() -> Result<Vec<RetainedKeyInfo>> => list_retained_keys_internal;
        delete_retained_key(label: &KeyLabel) -> Result<Applied<()>>
            => delete_retained_key_internal;
        register_public_key_hash(name: &KeyLabel, hash: &PublicKeyHash, clone: bool)
            -> Result<Applied<()>> => register_public_key_hash_internal;
        register_public_key(name: &KeyLabel, certificate: &Certificate, clone: bool)
            -> Result<Applied<()>> => register_public_key_internal;
        unregister_public_key(name: &KeyLabel) -> Result<Applied<()>>
            => unregister_public_key_internal;
        list_registrations() -> Result<Vec<Registration>> => list_registrations_internal;
        certify_public_key(signer: &KeyLabel, subject: &PublicKeyToken, info: &SubjectInfo)
            -> Result<Certificate> => certify_public_key_internal;
        obtain_share(request: &ObtainRequest) -> Result<SealedShare> => obtain_share_internal;
        install_share(request: &InstallRequest) -> Result<Applied<InstallProgress>>
            => install_share_internal;
        set_master_key(kind: CloneableKind) -> Result<Applied<()>> => set_master_key_internal;
        clear_new(kind: CloneableKind) -> Result<Applied<()>> => clear_new_internal;
        load_random_master_key(kind: CloneableKind) -> Result<Applied<()>>
            => load_random_master_key_internal;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_serial_keeps_the_last_eight_characters() {
        assert_eq!(node_serial("d8e157d09f375158").as_str(), "9f375158");
        assert_eq!(node_serial("1234").as_str(), "1234");
        assert_eq!(node_serial("   ").as_str(), "PKCS11");
    }
}
