//! `Pkcs11Backend`: a cloning node on a PKCS#11 token.
//!
//! Every check follows the simulated card (hw-sim's `card.rs`), in the same order, with the
//! same typed errors `CcaBackend` reports for it, so that a ceremony cannot tell the two
//! apart except by what the capabilities say about the key's exposure.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use log::{debug, info, warn};
use mkclone_backend::{
    Applied, Backend, BackendError, Capabilities, Certificate, CloneableKind, CurrentState,
    DomainError, Eid, GenerateRequest, GenerationState, Identity, InstallProgress, InstallRequest,
    KeyLabel, KeyUsage, MofN, NewState, NodeStatus, ObtainRequest, Operation, PublicKeyHash,
    PublicKeyToken, ReceptionState, RegisterStatus, Registration, Result, RetainedKeyInfo,
    SealedShare, SerialNumber, ShareIndex, ShareStatus, ShareTables, SubjectInfo,
    VerificationPattern,
};
use mkclone_formats::clone_info::{CLEAR_HEADER_LEN, CloneInfo, SignedCloneInfo};
use mkclone_formats::pka::{
    CertInfo, CertificateBuilder, CertificateSection, PublicKeyTokenView, RsaPublicKey,
    registration_hash,
};
use mkclone_formats::seal::{self, SealedShareParts};
use mkclone_formats::shamir::{self, Polynomial};
use mkclone_formats::{ShareValue, mkvp};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::config::Pkcs11NodeConfig;
use crate::error::{PinTries, Pkcs11Error, explain};
use crate::lock::TokenLock;
use crate::module::{find_token, shared_module};
use crate::objects::{
    APPLICATION, EID_LABEL, EidObject, KEY_COMPANION_PREFIX, KeyCompanion, Managed, MofNObject,
    ObjId, PatternObject, REGISTRATION_PREFIX, Received, RegisterMap, RegisteredKeyObject,
    RegistrationObject, ShareObject, Stored, TableObject, key_companion_label, map_label,
    parse_map_label, registered_key_label, registration_label,
};
use crate::session::{CallError, CallResult, CallStats, Token};

/// What the preflight and the docs say about this backend.
pub const KEY_EXPOSURE_NOTICE: &str = "pkcs11: PKCS#11 has no secret-sharing mechanism, so on this backend the master key is \
     whole in host memory while a share is obtained (source) and when the m-th share is installed (target); \
     mkclone holds it in zeroizing buffers only for those moments";

/// `CKA_APPLICATION` of the retained-key companions and the registry objects, so that each
/// list is one search.
const KEY_APPLICATION: &[u8] = b"mkclone/key";
const REG_APPLICATION: &[u8] = b"mkclone/reg";
const REGKEY_APPLICATION: &[u8] = b"mkclone/regkey";

/// Domain strings of the two hashes mkclone computes (project definitions).
const COEFFICIENT_DOMAIN: &[u8] = b"mkclone-pkcs11-coefficient";
const SHARE_DIGEST_DOMAIN: &[u8] = b"mkclone-pkcs11-share-digest";

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
    /// Session key pair the master key is wrapped to, to be split (obtain).
    export_pair: Option<(ObjectHandle, ObjectHandle)>,
    /// The token's exclusive lock, held as long as this backend lives (declared last: it is
    /// released after the session is closed).
    lock: TokenLock,
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

/// `CKA_CHECK_VALUE` of a triple-DES key: the first 3 bytes of EDE3(key, 0^8).
fn des3_check_value(key: &[u8; 24]) -> [u8; 3] {
    use des::cipher::{BlockCipherEncrypt, KeyInit};
    let mut block = des::cipher::Block::<des::TdesEde3>::default();
    if let Ok(cipher) = des::TdesEde3::new_from_slice(key) {
        cipher.encrypt_block(&mut block);
    }
    let out = [block[0], block[1], block[2]];
    block.zeroize();
    out
}

fn share_digest(kind: CloneableKind, index: ShareIndex, share: &ShareValue) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SHARE_DIGEST_DOMAIN);
    h.update([kind_code(kind), index.get()]);
    h.update(share.as_bytes());
    h.finalize().into()
}

fn generation_state(digit: u8) -> GenerationState {
    match digit {
        b'1' => GenerationState::Can,
        b'2' => GenerationState::Generated,
        b'3' => GenerationState::DistributedOnce,
        b'4' => GenerationState::DistributedMore,
        _ => GenerationState::Cannot,
    }
}

/// The shares of one key held until the m-th arrives, as they come out of the token.
struct Opened {
    index: ShareIndex,
    value: ShareValue,
}

impl Pkcs11Backend {
    /// Open the token `config.token` names in `config.module`, log in with `pin`, and
    /// recover mkclone's state (finish or undo an operation a crash interrupted).
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
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(|e| Pkcs11Error::Session {
                label: label.clone(),
                function: "C_OpenSession",
                detail: explain(&e),
            })?;
        let auth = AuthPin::new(pin.as_str().into());
        drop(pin);
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(
                RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid,
                _,
            )) => {
                let tries = pkcs11
                    .get_token_info(slot)
                    .map(|i| PinTries::from_token_info(&i))
                    .unwrap_or_default();
                return Err(if tries.locked {
                    Pkcs11Error::PinLocked { label }
                } else {
                    Pkcs11Error::WrongPin { label, tries }
                });
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(Pkcs11Error::PinLocked { label });
            }
            Err(e) => {
                return Err(Pkcs11Error::Session {
                    label,
                    function: "C_Login",
                    detail: explain(&e),
                });
            }
        }
        drop(auth);
        let mut backend = Self {
            token: Token::new(session),
            serial: node_serial(&token_serial),
            token_serial,
            label,
            module: config.module.clone(),
            map: RegisterMap::default(),
            map_handle: None,
            export_pair: None,
            lock,
        };
        backend.recover()?;
        info!(
            "pkcs11: token {:?} (serial {}) open, register map generation {}",
            backend.label, backend.token_serial, backend.map.generation
        );
        Ok(backend)
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

    // ---------------------------------------------------------------------------------
    // Objects
    // ---------------------------------------------------------------------------------

    fn data_template(application: &[u8], label: &str) -> Vec<Attribute> {
        vec![
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Application(application.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    fn find_data(&mut self, application: &[u8], label: &str) -> CallResult<Vec<ObjectHandle>> {
        self.token.find(&Self::data_template(application, label))
    }

    /// The one data object labelled `label`, decoded.
    fn read<T: Stored>(
        &mut self,
        op: Operation,
        application: &[u8],
        label: &str,
    ) -> Result<Option<(ObjectHandle, T)>> {
        let handles = self
            .find_data(application, label)
            .map_err(|e| self.device(op, e))?;
        let handle = match handles.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            more => {
                return Err(
                    self.corrupt(op, format!("{} objects are labelled {label}", more.len()))
                );
            }
        };
        let bytes = self.token.value(handle).map_err(|e| self.device(op, e))?;
        let value = T::decode(&bytes).map_err(|e| self.corrupt(op, format!("{label}: {e}")))?;
        Ok(Some((handle, value)))
    }

    /// A managed data object that must exist.
    fn read_managed<T: Stored>(&mut self, op: Operation, kind: Managed, id: ObjId) -> Result<T> {
        let label = kind.label(id);
        self.read::<T>(op, APPLICATION, &label)?
            .map(|(_, v)| v)
            .ok_or_else(|| self.corrupt(op, format!("{label} is missing")))
    }

    fn create_data<T: Stored>(
        &mut self,
        op: Operation,
        application: &[u8],
        label: &str,
        value: &T,
    ) -> Result<ObjectHandle> {
        let mut template = Self::data_template(application, label);
        template.extend([
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Value(value.encode()),
        ]);
        self.token.create(template).map_err(|e| self.device(op, e))
    }

    fn find_key(
        &mut self,
        op: Operation,
        class: ObjectClass,
        template: Vec<Attribute>,
        what: &str,
    ) -> Result<Option<ObjectHandle>> {
        let mut t = vec![Attribute::Class(class), Attribute::Token(true)];
        t.extend(template);
        let handles = self.token.find(&t).map_err(|e| self.device(op, e))?;
        match handles.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            more => Err(self.corrupt(op, format!("{} objects are {what}", more.len()))),
        }
    }

    /// The secret-key object of a managed key (master-key register, seed, share key).
    fn managed_key(&mut self, op: Operation, kind: Managed, id: ObjId) -> Result<ObjectHandle> {
        let label = kind.label(id);
        self.find_key(
            op,
            ObjectClass::SECRET_KEY,
            vec![Attribute::Label(label.as_bytes().to_vec())],
            &label,
        )?
        .ok_or_else(|| self.corrupt(op, format!("{label} is missing")))
    }

    /// Destroy managed objects after a commit. A failure leaves garbage that the next
    /// open removes; only the crash seam is reported (the work stops there).
    fn destroy_garbage(&mut self, op: Operation, garbage: &[(Managed, ObjId)]) -> Result<()> {
        for (kind, id) in garbage {
            let label = kind.label(*id);
            let found = if kind.is_key() {
                self.token.find(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Token(true),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
            } else {
                self.find_data(APPLICATION, &label)
            };
            let handles = match found {
                Ok(h) => h,
                Err(e) if e.is_stop() => return Err(self.device(op, e)),
                Err(e) => {
                    warn!(
                        "pkcs11: {label} stays until the next open: {}",
                        e.describe()
                    );
                    continue;
                }
            };
            for h in handles {
                match self.token.destroy(h) {
                    Ok(()) => {}
                    Err(e) if e.is_stop() => return Err(self.device(op, e)),
                    Err(e) => warn!(
                        "pkcs11: {label} stays until the next open: {}",
                        e.describe()
                    ),
                }
            }
        }
        Ok(())
    }

    /// Make `map` the node's state: create it as the next generation (one
    /// C_CreateObject: the commit), then destroy the previous map and `garbage`.
    fn commit(
        &mut self,
        op: Operation,
        mut map: RegisterMap,
        garbage: Vec<(Managed, ObjId)>,
    ) -> Result<()> {
        map.generation = self.map.generation.saturating_add(1);
        let label = map_label(map.generation);
        let handle = self.create_data(op, APPLICATION, &label, &map)?;
        debug!("pkcs11: {:?} committed {label}", self.label);
        let previous = self.map_handle.replace(handle);
        self.map = map;
        if let Some(old) = previous {
            match self.token.destroy(old) {
                Ok(()) => {}
                Err(e) if e.is_stop() => return Err(self.device(op, e)),
                Err(e) => warn!(
                    "pkcs11: the previous register map stays until the next open: {}",
                    e.describe()
                ),
            }
        }
        self.destroy_garbage(op, &garbage)
    }

    /// Objects of one register value (the key and its pattern companion).
    fn register_objects(id: ObjId) -> [(Managed, ObjId); 2] {
        [(Managed::MasterKey, id), (Managed::Pattern, id)]
    }

    /// A table, its share objects.
    /// The end of SET (and of loading a random key): `current` becomes CURRENT, the old
    /// CURRENT becomes OLD, NEW is empty and the share tables start afresh; one commit.
    fn commit_as_current(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        regs: crate::objects::Registers,
        current: ObjId,
        m_of_n: Option<MofN>,
        garbage: Vec<(Managed, ObjId)>,
    ) -> Result<Applied<()>> {
        let table_id = ObjId::random();
        self.create_data(
            op,
            APPLICATION,
            &Managed::Table.label(table_id),
            &TableObject::fresh(kind, m_of_n),
        )?;
        let mut map = self.map.clone();
        *map.registers_mut(kind) = crate::objects::Registers {
            new: None,
            current: Some(current),
            old: regs.current,
            table: Some(table_id),
        };
        self.commit(op, map, garbage)?;
        Ok(Applied::Done(()))
    }

    fn table_objects(table_id: Option<ObjId>, table: &TableObject) -> Vec<(Managed, ObjId)> {
        let mut out: Vec<(Managed, ObjId)> = table_id
            .map(|id| vec![(Managed::Table, id)])
            .unwrap_or_default();
        for r in &table.received {
            if let Some(s) = r.share {
                out.extend([(Managed::ShareKey, s), (Managed::Share, s)]);
            }
        }
        out
    }

    // ---------------------------------------------------------------------------------
    // Recovery
    // ---------------------------------------------------------------------------------

    /// Find the register map in force (the highest generation), and destroy everything
    /// an interrupted operation left: older maps and managed objects no map references.
    fn recover(&mut self) -> Result<(), Pkcs11Error> {
        let data = self
            .token
            .find(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Application(APPLICATION.to_vec()),
            ])
            .map_err(|e| self.open_error(e))?;
        let keys = self
            .token
            .find(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
            ])
            .map_err(|e| self.open_error(e))?;
        let mut maps = Vec::new();
        let mut managed = Vec::new();
        for h in data.into_iter().chain(keys) {
            let label = self.token.label(h).map_err(|e| self.open_error(e))?;
            if let Some(generation) = parse_map_label(&label) {
                maps.push((generation, h));
            } else if let Some((kind, id)) = Managed::parse(&label) {
                managed.push((kind, id, h));
            }
        }
        maps.sort_by_key(|(g, _)| *g);
        let token_label = self.label.clone();
        let corrupt = |detail: String| Pkcs11Error::Corrupt {
            label: token_label.clone(),
            detail,
        };
        if let Some((generation, handle)) = maps.pop() {
            let bytes = self.token.value(handle).map_err(|e| self.open_error(e))?;
            let map = RegisterMap::decode(&bytes)
                .map_err(|e| corrupt(format!("{}: {e}", map_label(generation))))?;
            if map.generation != generation {
                return Err(corrupt(format!(
                    "{} says it is generation {}",
                    map_label(generation),
                    map.generation
                )));
            }
            self.map = map;
            self.map_handle = Some(handle);
        }
        let referenced = self.referenced().map_err(|e| corrupt(e.to_string()))?;
        let mut removed = 0usize;
        for (_, handle) in maps {
            self.token.destroy(handle).map_err(|e| self.open_error(e))?;
            removed += 1;
        }
        for (kind, id, handle) in managed {
            if !referenced.contains(&(kind, id)) {
                debug!("pkcs11: removing unreferenced {}", kind.label(id));
                self.token.destroy(handle).map_err(|e| self.open_error(e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(
                "pkcs11: token {:?}: removed {removed} object(s) an interrupted operation left behind",
                self.label
            );
        }
        Ok(())
    }

    /// Every managed object the map in force reaches.
    fn referenced(&mut self) -> Result<BTreeSet<(Managed, ObjId)>> {
        let op = Operation::Status;
        let mut out = BTreeSet::new();
        let map = self.map.clone();
        if let Some(id) = map.mofn {
            out.insert((Managed::MofN, id));
            let mofn: MofNObject = self.read_managed(op, Managed::MofN, id)?;
            out.insert((Managed::Seed, mofn.seed));
        }
        for kind in CloneableKind::ALL {
            let regs = *map.registers(kind);
            for id in [regs.new, regs.current, regs.old].into_iter().flatten() {
                out.extend(Self::register_objects(id));
            }
            if let Some(id) = regs.table {
                let table: TableObject = self.read_managed(op, Managed::Table, id)?;
                out.extend(Self::table_objects(Some(id), &table));
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------
    // State readers
    // ---------------------------------------------------------------------------------

    fn eid(&mut self, op: Operation) -> Result<Option<Eid>> {
        Ok(self
            .read::<EidObject>(op, APPLICATION, EID_LABEL)?
            .map(|(_, e)| e.eid))
    }

    fn m_of_n(&mut self, op: Operation) -> Result<Option<MofNObject>> {
        match self.map.mofn {
            Some(id) => Ok(Some(self.read_managed(op, Managed::MofN, id)?)),
            None => Ok(None),
        }
    }

    fn table(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        m_of_n: Option<MofN>,
    ) -> Result<TableObject> {
        match self.map.registers(kind).table {
            Some(id) => {
                let table: TableObject = self.read_managed(op, Managed::Table, id)?;
                table.check().map_err(|e| self.corrupt(op, e))?;
                if table.kind != kind {
                    return Err(self.corrupt(op, format!("table {id} is for the {}", table.kind)));
                }
                Ok(table)
            }
            None => Ok(TableObject::fresh(kind, m_of_n)),
        }
    }

    /// A register's pattern, cross-checked: the key object must exist and its
    /// `CKA_CHECK_VALUE` must equal the one recorded when it was made.
    fn register_pattern(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        id: ObjId,
    ) -> Result<(ObjectHandle, VerificationPattern)> {
        let recorded: PatternObject = self.read_managed(op, Managed::Pattern, id)?;
        let key = self.managed_key(op, Managed::MasterKey, id)?;
        if recorded.kind != kind {
            return Err(self.corrupt(
                op,
                format!(
                    "{} belongs to the {}",
                    Managed::Pattern.label(id),
                    recorded.kind
                ),
            ));
        }
        let attrs = self
            .token
            .attributes(key, &[AttributeType::CheckValue])
            .map_err(|e| self.device(op, e))?;
        let actual = attribute_bytes(attrs, AttributeType::CheckValue).unwrap_or_default();
        if !recorded.check_value.is_empty() && actual != recorded.check_value {
            return Err(self.corrupt(
                op,
                format!(
                    "the {kind} register key {} has check value {} but its pattern object records {}: \
                     the key object was replaced outside mkclone",
                    Managed::MasterKey.label(id),
                    hex::encode_upper(&actual),
                    hex::encode_upper(&recorded.check_value)
                ),
            ));
        }
        Ok((key, recorded.pattern))
    }

    fn companion(&mut self, op: Operation, label: &KeyLabel) -> Result<Option<KeyCompanion>> {
        Ok(self
            .read::<KeyCompanion>(op, KEY_APPLICATION, &key_companion_label(label.as_str()))?
            .map(|(_, c)| c))
    }

    /// A retained key's private half.
    fn private_key(&mut self, op: Operation, label: &KeyLabel, id: ObjId) -> Result<ObjectHandle> {
        self.find_key(
            op,
            ObjectClass::PRIVATE_KEY,
            vec![Attribute::Id(KeyCompanion::key_id(id))],
            &format!("the private key of {label}"),
        )?
        .ok_or_else(|| {
            self.corrupt(
                op,
                format!("the private key of retained key {label} is missing"),
            )
        })
    }

    /// A retained key with `usage` and the CLONE mark (what OBTAIN and INSTALL need).
    fn usable(
        &mut self,
        op: Operation,
        label: &KeyLabel,
        usage: KeyUsage,
        needed: &'static str,
    ) -> Result<(KeyCompanion, ObjectHandle)> {
        let companion =
            self.companion(op, label)?
                .ok_or_else(|| BackendError::RetainedKeyNotFound {
                    label: label.clone(),
                })?;
        if companion.role.usage() != usage || !companion.clone {
            return Err(BackendError::WrongKeyUsage {
                label: label.clone(),
                needed,
                usage: if companion.role.usage() != usage {
                    companion.role.usage().keyword()
                } else {
                    "non-CLONE"
                },
            });
        }
        let handle = self.private_key(op, label, companion.id)?;
        Ok((companion, handle))
    }

    fn registration(
        &mut self,
        op: Operation,
        name: &KeyLabel,
    ) -> Result<Option<(RegistrationObject, Option<Certificate>)>> {
        let Some((_, reg)) = self.read::<RegistrationObject>(
            op,
            REG_APPLICATION,
            &registration_label(name.as_str()),
        )?
        else {
            return Ok(None);
        };
        let key = self
            .read::<RegisteredKeyObject>(
                op,
                REGKEY_APPLICATION,
                &registered_key_label(name.as_str()),
            )?
            .map(|(_, k)| k.certificate);
        Ok(Some((reg, key)))
    }

    /// The registered SA key under `sa_name`, usable for cloning.
    fn sa_key(&mut self, op: Operation, sa_name: &KeyLabel) -> Result<RsaPublicKey> {
        let (reg, key) =
            self.registration(op, sa_name)?
                .ok_or_else(|| BackendError::HashNotRegistered {
                    name: sa_name.clone(),
                })?;
        let cert = key.ok_or_else(|| BackendError::KeyNotRegistered {
            name: sa_name.clone(),
        })?;
        if !reg.clone {
            return Err(BackendError::NotMarkedForCloning {
                name: sa_name.clone(),
            });
        }
        let section = CertificateSection::decode(&cert)
            .map_err(|e| self.corrupt(op, format!("the key registered as {sa_name}: {e}")))?;
        Ok(section.key)
    }

    /// A certificate issued by the registered SA key.
    fn certified(
        cert: &Certificate,
        sa_name: &KeyLabel,
        sa: &RsaPublicKey,
    ) -> Result<CertificateSection> {
        let section =
            CertificateSection::decode(cert).map_err(|e| BackendError::CertificateRejected {
                reason: format!("it is not a certificate section ({e})"),
            })?;
        section
            .verify(sa_name, sa)
            .map_err(|e| BackendError::CertificateRejected {
                reason: format!(
                    "it does not verify under the SA key registered as {sa_name} ({e})"
                ),
            })?;
        Ok(section)
    }

    /// Sign `bytes` (SHA-256, PKCS#1 v1.5) inside the token.
    fn sign(&mut self, key: ObjectHandle, bytes: &[u8]) -> CallResult<Vec<u8>> {
        self.token.sign(&Mechanism::Sha256RsaPkcs, key, bytes)
    }

    fn make_certificate(
        &mut self,
        op: Operation,
        signer_label: &KeyLabel,
        signer: ObjectHandle,
        signature_len: usize,
        subject: RsaPublicKey,
        info: CertInfo,
    ) -> Result<CertificateSection> {
        let unsigned = CertificateBuilder::new(subject, info)
            .to_be_signed(signer_label, signature_len)
            .map_err(|e| {
                BackendError::Invalid(DomainError::Structure {
                    what: "certificate section",
                    reason: e.to_string(),
                })
            })?;
        let signature = self
            .sign(signer, unsigned.signed_bytes())
            .map_err(|e| self.device(op, e))?;
        unsigned
            .finish(signature)
            .map_err(|e| self.corrupt(op, format!("the token's signature: {e}")))
    }

    fn public_key_of(&mut self, op: Operation, public: ObjectHandle) -> Result<RsaPublicKey> {
        let attrs = self
            .token
            .attributes(
                public,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(|e| self.device(op, e))?;
        let modulus = attribute_bytes(attrs.clone(), AttributeType::Modulus).unwrap_or_default();
        let exponent = attribute_bytes(attrs, AttributeType::PublicExponent).unwrap_or_default();
        RsaPublicKey::new(strip_zeros(&modulus), strip_zeros(&exponent))
            .map_err(|e| self.corrupt(op, format!("the token's RSA public key: {e}")))
    }

    /// The session key pair the master key is wrapped to for splitting (made once per
    /// session; session objects vanish when the session closes).
    fn export_pair(&mut self, op: Operation) -> Result<(ObjectHandle, ObjectHandle)> {
        if let Some(pair) = self.export_pair {
            return Ok(pair);
        }
        let public = [
            Attribute::Token(false),
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
            Attribute::Verify(false),
        ];
        let private = [
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Decrypt(true),
            Attribute::Sign(false),
            Attribute::Unwrap(false),
        ];
        let pair = self
            .token
            .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
            .map_err(|e| self.device(op, e))?;
        self.export_pair = Some(pair);
        Ok(pair)
    }

    /// The master key in host memory, to be split: wrapped to the session key pair with
    /// RSA-OAEP(SHA-1) and decrypted with its private half.
    fn export_master_key(
        &mut self,
        op: Operation,
        key: ObjectHandle,
        pattern: &VerificationPattern,
    ) -> Result<Zeroizing<[u8; 24]>> {
        let (public, private) = self.export_pair(op)?;
        let wrapped = self
            .token
            .wrap(&oaep(), public, key)
            .map_err(|e| self.device(op, e))?;
        let clear = self
            .token
            .decrypt(&oaep(), private, &wrapped)
            .map_err(|e| self.device(op, e))?;
        let mut out = Zeroizing::new([0u8; 24]);
        if clear.len() != 24 {
            return Err(self.corrupt(
                op,
                format!("a master-key register is {} bytes", clear.len()),
            ));
        }
        out.copy_from_slice(&clear);
        if mkvp::sha1_method(&out) != *pattern {
            return Err(self.corrupt(
                op,
                "the exported master key does not match its recorded verification pattern",
            ));
        }
        Ok(out)
    }

    /// Coefficient row `j` (1..m) of `kind`'s share polynomial: HMAC-SHA256 under the seed
    /// over (domain, kind, m, j, the key's pattern), first 24 bytes.
    fn coefficients(
        &mut self,
        op: Operation,
        seed: ObjectHandle,
        kind: CloneableKind,
        m: u8,
        pattern: &VerificationPattern,
    ) -> Result<Zeroizing<Vec<[u8; 24]>>> {
        let mut rows = Zeroizing::new(Vec::with_capacity(usize::from(m.saturating_sub(1))));
        for j in 1..m {
            let mut input = COEFFICIENT_DOMAIN.to_vec();
            input.extend([kind_code(kind), m, j]);
            input.extend_from_slice(pattern.bytes());
            let mac = self
                .token
                .sign_secret(&Mechanism::Sha256Hmac, seed, &input)
                .map_err(|e| self.device(op, e))?;
            let mut row = [0u8; 24];
            match mac.get(..24) {
                Some(bytes) => row.copy_from_slice(bytes),
                None => return Err(self.corrupt(op, "the coefficient seed's HMAC is short")),
            }
            rows.push(row);
            row.zeroize();
        }
        Ok(rows)
    }

    /// Create a master-key register object holding `key`, and its pattern companion.
    fn create_register(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        key: &[u8; 24],
    ) -> Result<ObjId> {
        let id = ObjId::random();
        let handle = self
            .token
            .create(vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES3),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Label(Managed::MasterKey.label(id).into_bytes()),
                Attribute::Id(id.bytes().to_vec()),
                Attribute::Value(key.to_vec()),
            ])
            .map_err(|e| self.device(op, e))?;
        let expected = des3_check_value(key);
        let attrs = self
            .token
            .attributes(handle, &[AttributeType::CheckValue])
            .map_err(|e| self.device(op, e))?;
        let actual = attribute_bytes(attrs, AttributeType::CheckValue).unwrap_or_default();
        if !actual.is_empty() && actual != expected {
            return Err(self.corrupt(
                op,
                "the token computes another CKA_CHECK_VALUE for the new register than EDE3(key, 0)",
            ));
        }
        self.create_data(
            op,
            APPLICATION,
            &Managed::Pattern.label(id),
            &PatternObject {
                kind,
                pattern: mkvp::sha1_method(key),
                check_value: expected.to_vec(),
            },
        )?;
        Ok(id)
    }

    /// Decrypt a held share inside the token (its key never leaves) and decode it.
    fn open_held(
        &mut self,
        op: Operation,
        kind: CloneableKind,
        received: &Received,
    ) -> Result<Opened> {
        let id = received.share.ok_or_else(|| {
            self.corrupt(op, format!("{kind} share {} is not held", received.index))
        })?;
        let stored: ShareObject = self.read_managed(op, Managed::Share, id)?;
        let key = self.managed_key(op, Managed::ShareKey, id)?;
        let area = stored
            .encrypted_clone_info
            .get(CLEAR_HEADER_LEN..)
            .unwrap_or(&[]);
        let clear_area = self
            .token
            .decrypt(&Mechanism::Des3Cbc([0; 8]), key, area)
            .map_err(|e| self.device(op, e))?;
        let mut clear = Zeroizing::new(
            stored
                .encrypted_clone_info
                .get(..CLEAR_HEADER_LEN)
                .unwrap_or(&[])
                .to_vec(),
        );
        clear.extend_from_slice(&clear_area);
        let signed = SignedCloneInfo::decode(&clear).map_err(|_| {
            self.corrupt(
                op,
                format!("held {kind} share {} no longer decodes", received.index),
            )
        })?;
        let info = signed.info;
        if info.kind != kind
            || info.index != received.index
            || share_digest(kind, info.index, &info.share) != received.digest
        {
            return Err(self.corrupt(
                op,
                format!(
                    "held {kind} share {} is not the share recorded",
                    received.index
                ),
            ));
        }
        Ok(Opened {
            index: info.index,
            value: info.share.clone(),
        })
    }
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
        }
    }

    fn status(&mut self) -> Result<NodeStatus> {
        let op = Operation::Status;
        let eid = self.eid(op)?;
        let mut registers = Vec::new();
        for kind in CloneableKind::ALL {
            let regs = *self.map.registers(kind);
            let mut pattern_of = |id: Option<ObjId>| -> Result<Vec<VerificationPattern>> {
                match id {
                    Some(id) => Ok(vec![self.register_pattern(op, kind, id)?.1]),
                    None => Ok(Vec::new()),
                }
            };
            let new_patterns = pattern_of(regs.new)?;
            let current_patterns = pattern_of(regs.current)?;
            let old_patterns = pattern_of(regs.old)?;
            registers.push(RegisterStatus {
                kind: kind.kind(),
                new: if regs.new.is_some() {
                    NewState::Full
                } else {
                    NewState::Empty
                },
                current: if regs.current.is_some() {
                    CurrentState::Valid
                } else {
                    CurrentState::Invalid
                },
                old: if regs.old.is_some() {
                    CurrentState::Valid
                } else {
                    CurrentState::Invalid
                },
                new_patterns,
                current_patterns,
                old_patterns,
            });
        }
        Ok(NodeStatus {
            identity: Identity {
                serial: self.serial.clone(),
                eid,
            },
            registers,
        })
    }

    fn set_eid(&mut self, eid: &Eid) -> Result<Applied<()>> {
        let op = Operation::SetEid;
        match self.eid(op)? {
            Some(current) if &current == eid => Ok(Applied::AlreadyDone(())),
            Some(current) => Err(BackendError::EidAlreadySet {
                current,
                requested: eid.clone(),
            }),
            None => {
                self.create_data(op, APPLICATION, EID_LABEL, &EidObject { eid: eid.clone() })?;
                Ok(Applied::Done(()))
            }
        }
    }

    fn set_m_of_n(&mut self, m_of_n: MofN) -> Result<Applied<()>> {
        let op = Operation::SetMofN;
        let previous = self.m_of_n(op)?;
        if previous.as_ref().map(|p| p.m_of_n) == Some(m_of_n) {
            // Not resetting keeps the polynomials, so shares already issued stay valid.
            return Ok(Applied::AlreadyDone(()));
        }
        let mut garbage = Vec::new();
        if let (Some(id), Some(p)) = (self.map.mofn, &previous) {
            garbage.extend([(Managed::MofN, id), (Managed::Seed, p.seed)]);
        }
        for kind in CloneableKind::ALL {
            let table_id = self.map.registers(kind).table;
            let table = self.table(op, kind, previous.as_ref().map(|p| p.m_of_n))?;
            garbage.extend(Self::table_objects(table_id, &table));
        }

        let seed = ObjId::random();
        self.token
            .generate_key(
                &Mechanism::GenericSecretKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                    Attribute::Verify(false),
                    Attribute::Encrypt(false),
                    Attribute::Decrypt(false),
                    Attribute::Derive(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Label(Managed::Seed.label(seed).into_bytes()),
                    Attribute::Id(seed.bytes().to_vec()),
                ],
            )
            .map_err(|e| self.device(op, e))?;
        let mofn_id = ObjId::random();
        self.create_data(
            op,
            APPLICATION,
            &Managed::MofN.label(mofn_id),
            &MofNObject { m_of_n, seed },
        )?;
        let mut map = self.map.clone();
        map.mofn = Some(mofn_id);
        for kind in CloneableKind::ALL {
            let id = ObjId::random();
            self.create_data(
                op,
                APPLICATION,
                &Managed::Table.label(id),
                &TableObject::fresh(kind, Some(m_of_n)),
            )?;
            map.registers_mut(kind).table = Some(id);
        }
        self.commit(op, map, garbage)?;
        Ok(Applied::Done(()))
    }

    fn share_status(&mut self) -> Result<ShareStatus> {
        let op = Operation::ShareStatus;
        let m_of_n = self.m_of_n(op)?.map(|p| p.m_of_n);
        let n = m_of_n.map(|mn| mn.n()).unwrap_or(0);
        let mut tables = Vec::new();
        for kind in CloneableKind::ALL {
            let table = self.table(op, kind, m_of_n)?;
            let mut generation = [GenerationState::Cannot; 15];
            for (g, digit) in generation.iter_mut().zip(table.generation.bytes()) {
                *g = generation_state(digit);
            }
            let mut reception = [ReceptionState::Cannot; 15];
            for (i, r) in (1u8..).zip(reception.iter_mut()) {
                *r = if table.received_more.contains(&i) {
                    ReceptionState::ReceivedMore
                } else if table.received.iter().any(|s| s.index.get() == i) {
                    ReceptionState::Received
                } else if i <= n {
                    ReceptionState::Can
                } else {
                    ReceptionState::Cannot
                };
            }
            tables.push(ShareTables {
                kind,
                generation,
                reception,
            });
        }
        Ok(ShareStatus { m_of_n, tables })
    }

    fn generate_retained_key(
        &mut self,
        request: &GenerateRequest,
    ) -> Result<Applied<PublicKeyToken>> {
        let op = Operation::GenerateRetainedKey;
        let label = &request.label;
        let usage = request.role.usage();
        if let Some(existing) = self.companion(op, label)? {
            // A rerun: the key of this deterministic label exists. It is ours if it has
            // the usage, CLONE mark and size we asked for.
            if existing.role.usage() == usage
                && existing.clone == request.clone
                && existing.bits == request.bits.bits()
            {
                return Ok(Applied::AlreadyDone(existing.token));
            }
            return Err(BackendError::Conflict {
                what: format!("retained key {label}"),
                detail: format!(
                    "it is a {}-bit {} key{}; delete it or choose another ceremony id",
                    existing.bits,
                    existing.role.usage().keyword(),
                    if existing.clone {
                        " marked CLONE"
                    } else {
                        " without CLONE"
                    }
                ),
            });
        }
        // Halves of a generation a crash interrupted (no companion): remove them. A key
        // with this label that mkclone did not make is left alone, and refused.
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let handles = self
                .token
                .find(&[
                    Attribute::Class(class),
                    Attribute::Token(true),
                    Attribute::Label(label.as_str().as_bytes().to_vec()),
                ])
                .map_err(|e| self.device(op, e))?;
            for h in handles {
                let attrs = self
                    .token
                    .attributes(h, &[AttributeType::Id])
                    .map_err(|e| self.device(op, e))?;
                let id = attribute_bytes(attrs, AttributeType::Id).unwrap_or_default();
                if !id.starts_with(crate::objects::KEY_ID_PREFIX) {
                    return Err(BackendError::Conflict {
                        what: format!("retained key {label}"),
                        detail: "the token holds a key with this label that mkclone did not make; \
                                 relabel or remove it, or choose another ceremony id"
                            .into(),
                    });
                }
                debug!("pkcs11: removing the remains of an interrupted generation of {label}");
                self.token.destroy(h).map_err(|e| self.device(op, e))?;
            }
        }

        let id = ObjId::random();
        let key_id = KeyCompanion::key_id(id);
        let csr = usage == KeyUsage::KeyManagementOnly;
        let label_bytes = label.as_str().as_bytes().to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label_bytes.clone()),
            Attribute::Id(key_id.clone()),
            Attribute::ModulusBits(u64::from(request.bits.bits()).into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Verify(!csr),
            Attribute::Encrypt(false),
            Attribute::Wrap(csr),
        ];
        // The private key signs its own certificate, then a CSR key loses CKA_SIGN: it
        // only unwraps share keys (KM-ONLY).
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(label_bytes),
            Attribute::Id(key_id),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(csr),
        ];
        let (public_handle, private_handle) = self
            .token
            .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
            .map_err(|e| self.device(op, e))?;
        let key = self.public_key_of(op, public_handle)?;
        let info = CertInfo {
            user_data: None,
            eid: self.eid(op)?,
            serial: Some(self.serial.clone()),
        };
        let certificate = self.make_certificate(
            op,
            label,
            private_handle,
            key.modulus_len(),
            key.clone(),
            info,
        )?;
        let token = PublicKeyTokenView {
            key,
            certificate: Some(certificate),
        }
        .encode()
        .map_err(|e| self.corrupt(op, format!("the new key's token: {e}")))?;
        if csr {
            self.token
                .update(private_handle, &[Attribute::Sign(false)])
                .map_err(|e| self.device(op, e))?;
        }
        self.create_data(
            op,
            KEY_APPLICATION,
            &key_companion_label(label.as_str()),
            &KeyCompanion {
                role: request.role,
                clone: request.clone,
                bits: request.bits.bits(),
                id,
                token: token.clone(),
            },
        )?;
        Ok(Applied::Done(token))
    }

    fn retained_public_key(&mut self, label: &KeyLabel) -> Result<Option<PublicKeyToken>> {
        Ok(self
            .companion(Operation::RetainedPublicKey, label)?
            .map(|c| c.token))
    }

    fn list_retained_keys(&mut self) -> Result<Vec<RetainedKeyInfo>> {
        let op = Operation::ListRetainedKeys;
        let handles = self
            .token
            .find(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Application(KEY_APPLICATION.to_vec()),
            ])
            .map_err(|e| self.device(op, e))?;
        let mut out = Vec::new();
        for h in handles {
            let attrs = self
                .token
                .attributes(h, &[AttributeType::Label, AttributeType::Value])
                .map_err(|e| self.device(op, e))?;
            let text = attribute_bytes(attrs.clone(), AttributeType::Label)
                .and_then(|l| String::from_utf8(l).ok())
                .unwrap_or_default();
            let value = attribute_bytes(attrs, AttributeType::Value).unwrap_or_default();
            let name = text
                .strip_prefix(KEY_COMPANION_PREFIX)
                .and_then(|n| KeyLabel::new(n).ok())
                .ok_or_else(|| self.corrupt(op, format!("retained-key companion {text:?}")))?;
            let companion = KeyCompanion::decode(&value)
                .map_err(|e| self.corrupt(op, format!("{text}: {e}")))?;
            out.push(RetainedKeyInfo {
                label: name,
                usage: companion.role.usage(),
                clone: companion.clone,
                bits: companion.bits,
            });
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    fn delete_retained_key(&mut self, label: &KeyLabel) -> Result<Applied<()>> {
        let op = Operation::DeleteRetainedKey;
        let Some((handle, companion)) =
            self.read::<KeyCompanion>(op, KEY_APPLICATION, &key_companion_label(label.as_str()))?
        else {
            return Ok(Applied::AlreadyDone(()));
        };
        // The companion goes first: without it the key is no longer mkclone's, and a
        // crash after this leaves only halves that the next generation removes.
        self.token.destroy(handle).map_err(|e| self.device(op, e))?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let handles = self
                .token
                .find(&[
                    Attribute::Class(class),
                    Attribute::Token(true),
                    Attribute::Id(KeyCompanion::key_id(companion.id)),
                ])
                .map_err(|e| self.device(op, e))?;
            for h in handles {
                if let Err(e) = self.token.destroy(h) {
                    if e.is_stop() {
                        return Err(self.device(op, e));
                    }
                    warn!(
                        "pkcs11: a half of deleted key {label} stays: {}",
                        e.describe()
                    );
                }
            }
        }
        Ok(Applied::Done(()))
    }

    fn register_public_key_hash(
        &mut self,
        name: &KeyLabel,
        hash: &PublicKeyHash,
        clone: bool,
    ) -> Result<Applied<()>> {
        let op = Operation::RegisterPublicKeyHash;
        match self.registration(op, name)? {
            Some((r, _)) if &r.hash == hash && r.clone == clone => Ok(Applied::AlreadyDone(())),
            Some((r, _)) => Err(BackendError::Conflict {
                what: format!("registered hash {name}"),
                detail: format!(
                    "registered: {}{}; requested: {}{}. Unregister it first if the old one is wrong",
                    r.hash.fingerprint(),
                    if r.clone { " CLONE" } else { "" },
                    hash.fingerprint(),
                    if clone { " CLONE" } else { "" }
                ),
            }),
            None => {
                self.create_data(
                    op,
                    REG_APPLICATION,
                    &registration_label(name.as_str()),
                    &RegistrationObject {
                        hash: hash.clone(),
                        clone,
                    },
                )?;
                Ok(Applied::Done(()))
            }
        }
    }

    fn register_public_key(
        &mut self,
        name: &KeyLabel,
        certificate: &Certificate,
        clone: bool,
    ) -> Result<Applied<()>> {
        let op = Operation::RegisterPublicKey;
        let (reg, key) = self
            .registration(op, name)?
            .ok_or_else(|| BackendError::HashNotRegistered { name: name.clone() })?;
        if let Some(key) = key {
            if &key == certificate && reg.clone == clone {
                return Ok(Applied::AlreadyDone(()));
            }
            return Err(BackendError::Conflict {
                what: format!("registered public key {name}"),
                detail: "another key is registered under this name".into(),
            });
        }
        let section = CertificateSection::decode(certificate).map_err(|e| {
            BackendError::CertificateRejected {
                reason: format!("it is not a certificate section ({e})"),
            }
        })?;
        // The key must be the one whose hash was registered before it (dual control).
        match registration_hash(&section) {
            Ok(h) if h == reg.hash => {}
            _ => return Err(BackendError::KeyDoesNotMatchHash { name: name.clone() }),
        }
        if reg.clone != clone {
            return Err(BackendError::CloneMarkMismatch { name: name.clone() });
        }
        // A registered key certifies itself: its self-signature must verify.
        let self_signed = section
            .signatures
            .iter()
            .any(|s| section.verify(&s.signer, &section.key).is_ok());
        if !self_signed {
            return Err(BackendError::CertificateRejected {
                reason: "its self-signature does not verify under the key it carries".into(),
            });
        }
        self.create_data(
            op,
            REGKEY_APPLICATION,
            &registered_key_label(name.as_str()),
            &RegisteredKeyObject {
                certificate: certificate.clone(),
            },
        )?;
        Ok(Applied::Done(()))
    }

    fn unregister_public_key(&mut self, name: &KeyLabel) -> Result<Applied<()>> {
        let op = Operation::UnregisterPublicKey;
        // The key goes before its hash: a crash in between leaves a hash without a key,
        // which is what a half-done registration looks like and a rerun finishes.
        let mut removed = false;
        for (application, label) in [
            (REGKEY_APPLICATION, registered_key_label(name.as_str())),
            (REG_APPLICATION, registration_label(name.as_str())),
        ] {
            let handles = self
                .find_data(application, &label)
                .map_err(|e| self.device(op, e))?;
            for h in handles {
                self.token.destroy(h).map_err(|e| self.device(op, e))?;
                removed = true;
            }
        }
        Ok(if removed {
            Applied::Done(())
        } else {
            Applied::AlreadyDone(())
        })
    }

    fn list_registrations(&mut self) -> Result<Vec<Registration>> {
        let op = Operation::ListRegistrations;
        let handles = self
            .token
            .find(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Application(REG_APPLICATION.to_vec()),
            ])
            .map_err(|e| self.device(op, e))?;
        let mut names = Vec::new();
        for h in handles {
            let text = self.token.label(h).map_err(|e| self.device(op, e))?;
            let name = text
                .strip_prefix(REGISTRATION_PREFIX)
                .and_then(|n| KeyLabel::new(n).ok())
                .ok_or_else(|| self.corrupt(op, format!("registration {text:?}")))?;
            names.push(name);
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some((reg, key)) = self.registration(op, &name)? {
                out.push(Registration {
                    name,
                    hash: reg.hash,
                    clone: reg.clone,
                    key,
                });
            }
        }
        Ok(out)
    }

    fn certify_public_key(
        &mut self,
        signer: &KeyLabel,
        subject: &PublicKeyToken,
        info: &SubjectInfo,
    ) -> Result<Certificate> {
        let op = Operation::CertifyPublicKey;
        let companion =
            self.companion(op, signer)?
                .ok_or_else(|| BackendError::RetainedKeyNotFound {
                    label: signer.clone(),
                })?;
        if companion.role.usage() != KeyUsage::SignatureOnly {
            return Err(BackendError::WrongKeyUsage {
                label: signer.clone(),
                needed: "signing",
                usage: companion.role.usage().keyword(),
            });
        }
        let subject = PublicKeyTokenView::decode(subject).map_err(|e| {
            BackendError::Invalid(DomainError::Structure {
                what: "subject public-key token",
                reason: e.to_string(),
            })
        })?;
        let signer_view = PublicKeyTokenView::decode(&companion.token)
            .map_err(|e| self.corrupt(op, format!("the token of {signer}: {e}")))?;
        let handle = self.private_key(op, signer, companion.id)?;
        let section = self.make_certificate(
            op,
            signer,
            handle,
            signer_view.key.modulus_len(),
            subject.key,
            CertInfo {
                user_data: None,
                eid: info.eid.clone(),
                serial: info.serial.clone(),
            },
        )?;
        section
            .encode()
            .map_err(|e| self.corrupt(op, format!("the new certificate: {e}")))
    }

    fn obtain_share(&mut self, request: &ObtainRequest) -> Result<SealedShare> {
        let op = Operation::ObtainShare;
        let kind = request.kind;
        let current = self
            .map
            .registers(kind)
            .current
            .ok_or(BackendError::CurrentNotValid { kind })?;
        let mofn = self.m_of_n(op)?.ok_or(BackendError::MofNNotSet)?;
        let m_of_n = mofn.m_of_n;
        let index =
            request
                .index
                .check_against(m_of_n)
                .map_err(|_| BackendError::IndexOutOfRange {
                    index: request.index,
                    n: m_of_n.n(),
                })?;
        let origin_eid = self.eid(op)?.ok_or_else(|| BackendError::Conflict {
            what: "this node's EID".into(),
            detail: "no EID is set, so shares cannot name their origin: set the EID first".into(),
        })?;
        let (css, css_handle) =
            self.usable(op, &request.css_label, KeyUsage::SignatureOnly, "signing")?;
        let sa = self.sa_key(op, &request.sa_name)?;
        let csr = Self::certified(&request.csr_certificate, &request.sa_name, &sa)?;
        let target_eid = csr
            .info
            .eid
            .clone()
            .ok_or_else(|| BackendError::CertificateRejected {
                reason: "the CSR certificate names no EID, so the share cannot be addressed".into(),
            })?;
        let css_view = PublicKeyTokenView::decode(&css.token)
            .map_err(|e| self.corrupt(op, format!("the token of {}: {e}", request.css_label)))?;

        let (key_handle, pattern) = self.register_pattern(op, kind, current)?;
        let seed = self.managed_key(op, Managed::Seed, mofn.seed)?;
        let mut rows = self.coefficients(op, seed, kind, m_of_n.m(), &pattern)?;
        // The master key is whole in host memory from here to the end of this block.
        let share = {
            let key = self.export_master_key(op, key_handle, &pattern)?;
            let polynomial = Polynomial::new(&key, std::mem::take(&mut *rows))
                .map_err(|e| self.corrupt(op, format!("the share polynomial: {e}")))?;
            polynomial.share(index)
        };
        let info = CloneInfo {
            index,
            origin_eid,
            origin_serial: self.serial.clone(),
            kind,
            m_of_n,
            source_pattern: pattern,
            share,
        };
        let mut rng = rand::rng();
        let mut sign_failure = None;
        let parts = seal::seal(
            &info,
            &request.css_label,
            |bytes| {
                self.token
                    .sign(&Mechanism::Sha256RsaPkcs, css_handle, bytes)
                    .map_err(|e| {
                        sign_failure = Some(e);
                    })
            },
            css_view.key.modulus_len(),
            &target_eid,
            &csr.key,
            &mut rng,
        );
        drop(info);
        if let Some(e) = sign_failure {
            return Err(self.device(op, e));
        }
        let sealed = parts
            .and_then(|p| p.encode().map_err(seal::SealError::Format))
            .map_err(|e| {
                let reason = match e {
                    seal::SealError::Sign(()) => "the CSS key did not sign".to_string(),
                    seal::SealError::Format(f) => f.to_string(),
                    seal::SealError::Wrap { reason } => reason,
                    seal::SealError::WeakRng => "the random generator is not working".to_string(),
                };
                self.corrupt(op, format!("sealing the share: {reason}"))
            })?;

        // STATMOFN: distributed once (3), more than once (4).
        let table_id = self.map.registers(kind).table;
        let mut table = self.table(op, kind, Some(m_of_n))?;
        let digit = if table.generation_digit(index) >= b'3' {
            b'4'
        } else {
            b'3'
        };
        if table.generation_digit(index) != b'4' {
            table.set_generation_digit(index, digit);
            let id = ObjId::random();
            self.create_data(op, APPLICATION, &Managed::Table.label(id), &table)?;
            let mut map = self.map.clone();
            map.registers_mut(kind).table = Some(id);
            let garbage = table_id
                .map(|t| vec![(Managed::Table, t)])
                .unwrap_or_default();
            self.commit(op, map, garbage)?;
        }
        Ok(sealed)
    }

    fn install_share(&mut self, request: &InstallRequest) -> Result<Applied<InstallProgress>> {
        let op = Operation::InstallShare;
        let kind = request.kind;
        let parts =
            SealedShareParts::decode(&request.share).map_err(|_| BackendError::ShareRejected)?;
        // The header is checked first, so that a share for another node gets its own
        // error before any cryptography runs.
        let eid = self.eid(op)?.ok_or_else(|| BackendError::Conflict {
            what: "this node's EID".into(),
            detail:
                "no EID is set, so no share can be addressed to it: set the EID first (phase 3a)"
                    .into(),
        })?;
        let (csr, csr_handle) = self.usable(
            op,
            &request.csr_label,
            KeyUsage::KeyManagementOnly,
            "unwrapping a share key",
        )?;
        let csr_view = PublicKeyTokenView::decode(&csr.token)
            .map_err(|e| self.corrupt(op, format!("the token of {}: {e}", request.csr_label)))?;
        let fingerprint = csr_view.key.fingerprint();
        parts.header.check_addressed_to(&eid, &fingerprint)?;
        if parts.header.kind != kind {
            warn!(
                "share header names the {} master key, the request {kind}",
                parts.header.kind
            );
            return Err(BackendError::ShareRejected);
        }
        let mofn = self.m_of_n(op)?.ok_or(BackendError::MofNNotSet)?;
        let m_of_n = mofn.m_of_n;
        let sa = self.sa_key(op, &request.sa_name)?;
        let css = Self::certified(&request.css_certificate, &request.sa_name, &sa)?;

        // Unwrap the share key inside the token (a session object: nothing stays if the
        // share is refused) and decrypt the token there. Every failure from here on is one
        // answer: no padding oracle.
        let mut session_key = None;
        let mut failure = None;
        let opened = seal::open_in_device(
            &parts,
            |wrapped, area| {
                let key = self
                    .token
                    .unwrap(
                        &oaep(),
                        csr_handle,
                        wrapped,
                        &[
                            Attribute::Class(ObjectClass::SECRET_KEY),
                            Attribute::KeyType(KeyType::DES3),
                            Attribute::Token(false),
                            Attribute::Private(true),
                            Attribute::Sensitive(true),
                            Attribute::Extractable(false),
                            Attribute::Decrypt(true),
                            Attribute::Encrypt(false),
                        ],
                    )
                    .map_err(|e| failure = Some(e))?;
                session_key = Some(key);
                self.token
                    .decrypt(&Mechanism::Des3Cbc([0; 8]), key, area)
                    .map_err(|e| failure = Some(e))
            },
            &css.key,
            None,
        );
        let result = self.install_opened(op, request, &parts, opened, failure, session_key, m_of_n);
        if let Some(key) = session_key {
            match self.token.destroy(key) {
                Ok(()) => {}
                Err(e) if e.is_stop() => return Err(self.device(op, e)),
                Err(e) => debug!(
                    "pkcs11: session key stays until the session ends: {}",
                    e.describe()
                ),
            }
        }
        result
    }

    fn set_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        let op = Operation::SetMasterKey;
        let regs = *self.map.registers(kind);
        let new = regs.new.ok_or(BackendError::NewNotFull { kind })?;
        let m_of_n = self.m_of_n(op)?.map(|p| p.m_of_n);
        let table = self.table(op, kind, m_of_n)?;
        let mut garbage = Self::table_objects(regs.table, &table);
        if let Some(old) = regs.old {
            garbage.extend(Self::register_objects(old));
        }
        self.commit_as_current(op, kind, regs, new, m_of_n, garbage)
    }

    fn clear_new(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        let op = Operation::ClearNew;
        let regs = *self.map.registers(kind);
        let m_of_n = self.m_of_n(op)?.map(|p| p.m_of_n);
        let table = self.table(op, kind, m_of_n)?;
        if regs.new.is_none() && table.received.is_empty() {
            return Ok(Applied::AlreadyDone(()));
        }
        let mut garbage = Self::table_objects(regs.table, &table);
        if let Some(new) = regs.new {
            garbage.extend(Self::register_objects(new));
        }
        let cleared = TableObject {
            received: Vec::new(),
            received_more: Vec::new(),
            ..table
        };
        let table_id = ObjId::random();
        self.create_data(op, APPLICATION, &Managed::Table.label(table_id), &cleared)?;
        let mut map = self.map.clone();
        let r = map.registers_mut(kind);
        r.new = None;
        r.table = Some(table_id);
        self.commit(op, map, garbage)?;
        Ok(Applied::Done(()))
    }

    fn load_random_master_key(&mut self, kind: CloneableKind) -> Result<Applied<()>> {
        let op = Operation::LoadRandomMasterKey;
        let regs = *self.map.registers(kind);
        let m_of_n = self.m_of_n(op)?.map(|p| p.m_of_n);
        let table = self.table(op, kind, m_of_n)?;
        let mut garbage = Self::table_objects(regs.table, &table);
        for id in [regs.new, regs.old].into_iter().flatten() {
            garbage.extend(Self::register_objects(id));
        }
        // Generated inside the token: this key never reaches the host here. Its pattern
        // is computed inside too (C_DigestKey).
        let id = ObjId::random();
        let key = self
            .token
            .generate_key(
                &Mechanism::Des3KeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::DES3),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(true),
                    Attribute::Encrypt(false),
                    Attribute::Decrypt(false),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Label(Managed::MasterKey.label(id).into_bytes()),
                    Attribute::Id(id.bytes().to_vec()),
                ],
            )
            .map_err(|e| self.device(op, e))?;
        let attrs = self
            .token
            .attributes(key, &[AttributeType::CheckValue])
            .map_err(|e| self.device(op, e))?;
        let check_value = attribute_bytes(attrs, AttributeType::CheckValue).unwrap_or_default();
        let digest = self
            .token
            .digest_with_key(&Mechanism::Sha1, &[0x01], key)
            .map_err(|e| self.device(op, e))?;
        let pattern = digest
            .get(..8)
            .and_then(|p| {
                VerificationPattern::new(mkclone_backend::PatternAlgorithm::Sha1Method, p).ok()
            })
            .ok_or_else(|| self.corrupt(op, "the token's SHA-1 digest is short"))?;
        self.create_data(
            op,
            APPLICATION,
            &Managed::Pattern.label(id),
            &PatternObject {
                kind,
                pattern,
                check_value,
            },
        )?;
        self.commit_as_current(op, kind, regs, id, m_of_n, garbage)
    }
}

impl Pkcs11Backend {
    /// The rest of INSTALL once the share was opened (or refused) inside the token.
    #[allow(clippy::too_many_arguments)]
    fn install_opened(
        &mut self,
        op: Operation,
        request: &InstallRequest,
        parts: &SealedShareParts,
        opened: std::result::Result<CloneInfo, seal::OpenError>,
        failure: Option<CallError>,
        session_key: Option<ObjectHandle>,
        m_of_n: MofN,
    ) -> Result<Applied<InstallProgress>> {
        let kind = request.kind;
        if let Some(e) = failure
            && is_session_failure(&e)
        {
            return Err(self.device(op, e));
        }
        let info = opened.map_err(|_| BackendError::ShareRejected)?;
        let session_key = session_key.ok_or(BackendError::ShareRejected)?;
        if info.kind != kind {
            return Err(BackendError::ShareRejected);
        }
        if info.m_of_n != m_of_n {
            return Err(BackendError::Conflict {
                what: format!("{kind} share {}", info.index),
                detail: format!(
                    "it was made for {} on the source; this node is set to {m_of_n}. Set the same m-of-n on both",
                    info.m_of_n
                ),
            });
        }
        let index =
            info.index
                .check_against(m_of_n)
                .map_err(|_| BackendError::IndexOutOfRange {
                    index: info.index,
                    n: m_of_n.n(),
                })?;

        let regs = *self.map.registers(kind);
        let table = self.table(op, kind, Some(m_of_n))?;
        // All shares of one key come from one source and one master key.
        if let Some(first) = table.received.first()
            && (first.origin_eid != info.origin_eid || first.source_pattern != info.source_pattern)
        {
            return Err(BackendError::Conflict {
                what: format!("the {kind} shares received"),
                detail: format!(
                    "this share comes from EID {} (key {}); those received so far from EID {} (key {}). \
                     Clear NEW (clear-new) to start again with one source",
                    info.origin_eid, info.source_pattern, first.origin_eid, first.source_pattern
                ),
            });
        }
        let progress = |received: usize| {
            let received = u8::try_from(received).unwrap_or(u8::MAX);
            if received >= m_of_n.m() {
                InstallProgress::Complete
            } else {
                InstallProgress::NeedMore {
                    received,
                    m: m_of_n.m(),
                }
            }
        };
        let digest = share_digest(kind, index, &info.share);
        if let Some(prev) = table.received.iter().find(|r| r.index == index) {
            if prev.digest != digest {
                return Err(BackendError::DuplicateShare { kind, index });
            }
            let count = table.received.len();
            if !table.received_more.contains(&index.get()) {
                let mut updated = table.clone();
                updated.received_more.push(index.get());
                let id = ObjId::random();
                self.create_data(op, APPLICATION, &Managed::Table.label(id), &updated)?;
                let mut map = self.map.clone();
                map.registers_mut(kind).table = Some(id);
                let garbage = regs
                    .table
                    .map(|t| vec![(Managed::Table, t)])
                    .unwrap_or_default();
                self.commit(op, map, garbage)?;
            }
            return Ok(Applied::AlreadyDone(progress(count)));
        }
        if table.received.len() >= usize::from(m_of_n.m()) {
            return Err(BackendError::KeyAlreadyComplete { kind });
        }
        if regs.new.is_some() {
            return Err(BackendError::NewNotEmpty { kind });
        }

        let count = table.received.len().saturating_add(1);
        let complete = count == usize::from(m_of_n.m());
        let mut record = Received {
            index,
            origin_eid: info.origin_eid.clone(),
            origin_serial: info.origin_serial.clone(),
            source_pattern: info.source_pattern.clone(),
            digest,
            share: None,
        };
        let mut map = self.map.clone();
        let mut garbage: Vec<(Managed, ObjId)> = regs
            .table
            .map(|t| vec![(Managed::Table, t)])
            .unwrap_or_default();
        if complete {
            // The m-th share: the held shares are decrypted inside the token and the key
            // is whole in host memory until the NEW register object is created.
            let mut shares = Vec::with_capacity(count);
            for r in &table.received {
                let held = self.open_held(op, kind, r)?;
                shares.push((held.index, held.value));
                if let Some(s) = r.share {
                    garbage.extend([(Managed::ShareKey, s), (Managed::Share, s)]);
                }
            }
            shares.push((index, info.share.clone()));
            let key = shamir::combine(&shares)
                .map_err(|e| self.corrupt(op, format!("combining the shares: {e}")))?;
            drop(shares);
            if mkvp::sha1_method(key.as_bytes()) != info.source_pattern {
                return Err(BackendError::Conflict {
                    what: format!("the rebuilt {kind} master key"),
                    detail: format!(
                        "its pattern {} is not the source's {}: the shares are not of one key. \
                         Clear NEW (clear-new) and obtain the shares again",
                        mkvp::sha1_method(key.as_bytes()),
                        info.source_pattern
                    ),
                });
            }
            let id = self.create_register(op, kind, key.as_bytes())?;
            drop(key);
            map.registers_mut(kind).new = Some(id);
        } else {
            // Keep the share encrypted, its key a token object that never leaves.
            let id = ObjId::random();
            self.token
                .copy(
                    session_key,
                    &[
                        Attribute::Token(true),
                        Attribute::Label(Managed::ShareKey.label(id).into_bytes()),
                        Attribute::Id(id.bytes().to_vec()),
                    ],
                )
                .map_err(|e| self.device(op, e))?;
            self.create_data(
                op,
                APPLICATION,
                &Managed::Share.label(id),
                &ShareObject {
                    kind,
                    index,
                    encrypted_clone_info: parts.encrypted_clone_info.clone(),
                },
            )?;
            record.share = Some(id);
        }
        let mut updated = table;
        if complete {
            // The held shares' objects are destroyed with this commit.
            for r in updated.received.iter_mut() {
                r.share = None;
            }
        }
        updated.received.push(record);
        let table_id = ObjId::random();
        self.create_data(op, APPLICATION, &Managed::Table.label(table_id), &updated)?;
        map.registers_mut(kind).table = Some(table_id);
        self.commit(op, map, garbage)?;
        Ok(Applied::Done(progress(count)))
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

    #[test]
    fn check_value_is_ede3_of_zero() {
        // Key and expected value from SoftHSM 2.6.1 (CKA_CHECK_VALUE of a created key),
        // confirmed with `openssl enc -des-ede3 -nopad` over 8 zero bytes.
        let key: [u8; 24] = std::array::from_fn(|i| {
            let h = (i as u8).wrapping_mul(37) & 0xfe;
            h | u8::from(h.count_ones().is_multiple_of(2))
        });
        assert_eq!(des3_check_value(&key), [251, 47, 147]);
    }

    #[test]
    fn share_digests_separate_kind_index_and_value() {
        let i1 = ShareIndex::new(1).unwrap();
        let i2 = ShareIndex::new(2).unwrap();
        let v = ShareValue::new([7; 24]);
        let d = share_digest(CloneableKind::Sym, i1, &v);
        assert_ne!(d, share_digest(CloneableKind::Asym, i1, &v));
        assert_ne!(d, share_digest(CloneableKind::Sym, i2, &v));
        assert_ne!(
            d,
            share_digest(CloneableKind::Sym, i1, &ShareValue::new([8; 24]))
        );
    }
}
