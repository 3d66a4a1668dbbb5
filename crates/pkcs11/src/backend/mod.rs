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
pub use officer::make_export_keys_token_objects;
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
use crate::error::{Pkcs11Error, TokenPlace, explain};
use crate::lock::TokenLock;
use crate::module::{Found, find_token, loaded, token_info};
use crate::objects::RegisterMap;
use crate::raw::RawModule;
use crate::session::{CallError, CallStats, RsaSigning, Token};
use crate::templates::TokenSupport;
use login::Who;

/// The command line's prompt for the security officer's PIN.
type SoPinPrompt =
    Box<dyn FnMut() -> std::result::Result<Zeroizing<String>, PinPromptError> + Send>;

/// Why a PIN prompt gave no PIN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinPromptError {
    /// A signal (its number) cancelled the prompt: nothing is asked of the token, and the
    /// share export fails with `BackendError::Interrupted`, which the ceremony turns into
    /// its interrupted stop.
    #[error("signal {signal} cancelled the PIN prompt")]
    Interrupted { signal: i32 },
    /// No PIN, and why (never the PIN itself).
    #[error("{0}")]
    Failed(String),
}

impl From<String> for PinPromptError {
    fn from(why: String) -> Self {
        Self::Failed(why)
    }
}

/// What the preflight and the docs say about this backend.
pub const KEY_EXPOSURE_NOTICE: &str = "pkcs11: PKCS#11 has no secret-sharing mechanism, so on this backend the master key is \
     whole in host memory while a share is obtained (source) and when the m-th share is installed (target); \
     mkclone holds it in zeroizing buffers only for those moments";

/// `CKA_APPLICATION` of the retained-key companions and the registry objects, so that each
/// list is one search.
const KEY_APPLICATION: &[u8] = b"mkclone/key";
const REG_APPLICATION: &[u8] = b"mkclone/reg";
const REGKEY_APPLICATION: &[u8] = b"mkclone/regkey";

/// Mechanisms mkclone needs, each with what it is for. Signing (SHA-256 with PKCS#1 v1.5)
/// needs `CKM_SHA256_RSA_PKCS` or, failing it, `CKM_RSA_PKCS` ([`RsaSigning`]).
const MECHANISMS: [(MechanismType, &str); 6] = [
    (
        MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        "generating retained RSA keys",
    ),
    (
        MechanismType::RSA_PKCS_OAEP,
        "unwrapping share keys and exporting the master key for splitting",
    ),
    (MechanismType::DES3_KEY_GEN, "loading a random master key"),
    (MechanismType::DES3_CBC, "decrypting received shares"),
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
    /// The token's identity: its serial number, or the derived one (`identity.rs`).
    token_serial: String,
    serial: SerialNumber,
    /// How this token signs (SHA-256, PKCS#1 v1.5).
    signing: RsaSigning,
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
        // A device call as the operations are (openCryptoki's CCA and EP11 tokens make the
        // zcrypt ioctl inside C_DestroyObject). The session's close after it is not gated:
        // repeated by a restarted ioctl, it changes nothing.
        let _in_flight = mkclone_backend::device_calls::DeviceCall::enter();
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

/// Whose fault a failed call of a share's opening (C_UnwrapKey with the CSR key, C_Decrypt
/// under the share key) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blame {
    /// The token says the data is bad (`CKR_WRAPPED_KEY_INVALID`,
    /// `CKR_ENCRYPTED_DATA_INVALID`, `CKR_DATA_INVALID`, ... and their length ranges): the
    /// share is refused.
    Share,
    /// The token, its session, the module or the host failed (`CKR_DEVICE_ERROR`,
    /// `CKR_DEVICE_MEMORY`, `CKR_HOST_MEMORY`, `CKR_SESSION_HANDLE_INVALID`,
    /// `CKR_TOKEN_NOT_PRESENT`, `CKR_DEVICE_REMOVED`, ...), or the work stopped: the share is
    /// not judged.
    Token,
    /// Either (`CKR_GENERAL_ERROR`, which is SoftHSM's answer to a wrapped key that does not
    /// decrypt; `CKR_FUNCTION_FAILED`; any other value): a control share decides
    /// (install.rs).
    Unclear,
}

fn blame(error: &CallError) -> Blame {
    let rv = match error {
        CallError::Stopped { .. } => return Blame::Token,
        CallError::Token {
            error: CkError::Pkcs11(rv, _),
            ..
        } => rv,
        // The module could not be called at all (not loaded, a missing function, ...).
        CallError::Token { .. } => return Blame::Token,
    };
    match rv {
        RvError::WrappedKeyInvalid
        | RvError::WrappedKeyLenRange
        | RvError::EncryptedDataInvalid
        | RvError::EncryptedDataLenRange
        | RvError::DataInvalid
        | RvError::DataLenRange
        | RvError::SignatureInvalid
        | RvError::SignatureLenRange => Blame::Share,
        RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::DeviceRemoved
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::HostMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::UserNotLoggedIn
        | RvError::CryptokiNotInitialized
        | RvError::OperationActive
        | RvError::FunctionCanceled
        | RvError::CantLock => Blame::Token,
        _ => Blame::Unclear,
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
        let module = loaded(&config.module)?;
        let Found {
            slot,
            info,
            identity,
        } = find_token(&module, config)?;
        let pkcs11 = module.pkcs11.clone();
        let label = config.token.clone();
        let place = TokenPlace {
            module: config.module.clone(),
            slot: Some(slot.id()),
            label: Some(label.clone()),
        };
        let failed = |function: &'static str, e: &CkError| Pkcs11Error::TokenCall {
            place: place.clone(),
            function,
            detail: explain(e),
        };
        // Before anything else, and above all before recovery destroys what no map
        // references: another process may be between creating objects and committing them,
        // whichever module it reached the token through.
        let lock = TokenLock::acquire(&identity, &label)?;
        if !info.has(cryptoki_sys::CKF_USER_PIN_INITIALIZED) {
            return Err(Pkcs11Error::UserPinNotInitialized { label });
        }
        if info.has(cryptoki_sys::CKF_USER_PIN_LOCKED) {
            return Err(Pkcs11Error::PinLocked { label });
        }
        let has = |mechanism: MechanismType| match pkcs11.get_mechanism_info(slot, mechanism) {
            Ok(info) => Ok(Some(info)),
            Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => Ok(None),
            Err(e) => Err(failed("C_GetMechanismInfo", &e)),
        };
        for (mechanism, needed_for) in MECHANISMS {
            if has(mechanism)?.is_none() {
                return Err(Pkcs11Error::MechanismMissing {
                    label,
                    mechanism: mechanism.to_string(),
                    needed_for,
                });
            }
        }
        let signing = if has(MechanismType::SHA256_RSA_PKCS)?.is_some() {
            RsaSigning::Sha256RsaPkcs
        } else if has(MechanismType::RSA_PKCS)?.is_some_and(|i| i.sign()) {
            info!(
                "pkcs11: token {label:?} has no CKM_SHA256_RSA_PKCS: it signs with CKM_RSA_PKCS \
                 over the SHA-256 DigestInfo (the same signatures)"
            );
            RsaSigning::RsaPkcsOverDigestInfo
        } else {
            return Err(Pkcs11Error::MechanismMissing {
                label,
                mechanism: "CKM_SHA256_RSA_PKCS (nor CKM_RSA_PKCS with CKF_SIGN)".into(),
                needed_for: "signing certificates and shares",
            });
        };
        let raw = Arc::clone(&module.raw);
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(|e| failed("C_OpenSession", &e))?;
        let mut token = Token::new(session);
        let flags = || {
            token_info(&pkcs11, &raw, &config.module, slot)
                .ok()
                .map(|i| i.flags)
        };
        login::log_in(&mut token, &flags, Who::User, &pin)
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
            serial: identity.node_serial(),
            token_serial: identity.id,
            signing,
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
        // A key the SO trusted opens every master key to the user PIN.
        backend.refuse_trusted_keys()?;
        info!(
            "pkcs11: token {:?} (serial {}) open, register map generation {}",
            backend.label, backend.token_serial, backend.map.generation
        );
        Ok(backend)
    }

    /// How the security officer's PIN is asked for when `so_pin = "prompt"` (the command
    /// line's no-echo prompt): called at the first share export, not before. A prompt a
    /// signal cancelled ([`PinPromptError::Interrupted`]) fails the export with
    /// `BackendError::Interrupted` before anything is sent to the token.
    pub fn set_so_pin_prompt(
        &mut self,
        prompt: impl FnMut() -> std::result::Result<Zeroizing<String>, PinPromptError> + Send + 'static,
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

    /// The token's identity: its serial number as the token reports it, or for a token
    /// with a blank serial its derived identity (`mkclone-` and 16 hex digits).
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

    /// Test seam: the next `times` calls of `function` (`"C_UnwrapKey"`, `"C_Decrypt"`)
    /// answer `rv` without reaching the token, as a failing token (or one that finds the
    /// data bad) would; `times` 0 disarms it.
    #[cfg(feature = "test-seams")]
    pub fn fail_calls(&mut self, function: &'static str, rv: RvError, times: u32) {
        self.token.fail_calls(function, rv, times);
    }

    /// Whether the backend still holds the user PIN (test seam): a node with `so_pin`
    /// keeps it, zeroizing, only until the security officer's step is done.
    #[cfg(feature = "test-seams")]
    pub fn holds_user_pin(&self) -> bool {
        self.user_pin.is_some()
    }

    /// Answer every `CKA_CHECK_VALUE` as empty from now on, as opencryptoki 3.27 does for a
    /// created triple-DES key (test seam; 3.8.1 gives none at all).
    #[cfg(feature = "test-seams")]
    pub fn withhold_check_values(&mut self) {
        self.token.withhold_check_values();
    }

    /// Sign with `CKM_RSA_PKCS` over the SHA-256 `DigestInfo` from now on, as on a token
    /// without `CKM_SHA256_RSA_PKCS` (test seam).
    #[cfg(feature = "test-seams")]
    pub fn sign_through_rsa_pkcs(&mut self) {
        self.signing = RsaSigning::RsaPkcsOverDigestInfo;
    }

    /// Whether this token signs through `CKM_RSA_PKCS` (it lacks `CKM_SHA256_RSA_PKCS`).
    pub fn signs_through_rsa_pkcs(&self) -> bool {
        self.signing == RsaSigning::RsaPkcsOverDigestInfo
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
        Self::device_because(operation, &error, cause)
    }

    /// [`Pkcs11Backend::device`] of `error`, said as `cause`.
    fn device_because(operation: Operation, error: &CallError, cause: String) -> BackendError {
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
/// `impl Pkcs11Backend` that implements it in its family's file. Each is a device call in
/// flight while it runs (`mkclone_backend::device_calls`): openCryptoki's CCA and EP11
/// tokens make the zcrypt ioctl inside their functions, and a stop of the process (Ctrl-Z)
/// during one would make the kernel send the request to the card again. The SO PIN prompt
/// inside an export waits outside the call (`officer.rs`).
macro_rules! forward {
    ($($operation:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $method:ident;)*) => {
        $(
            fn $operation(&mut self $(, $arg: $ty)*) -> $ret {
                let _in_flight = mkclone_backend::device_calls::DeviceCall::enter();
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
