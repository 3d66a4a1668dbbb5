//! PKCS#11 modules: loaded and initialized once per process, never finalized; their slots
//! and tokens, and the token a node names.
//!
//! C_Initialize may run once per process and module: a second `Pkcs11` instance of the same
//! library shares its state, and finalizing either breaks the other. So every module is
//! kept in one process-wide table ([`shared_module`]) and lives until the process ends.
//!
//! Token information that cryptoki cannot parse (opencryptoki 3.8.1's clock) is read
//! through [`crate::raw`] instead ([`Loaded::token_info`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::Slot;
use cryptoki_sys::{CKF_LOGIN_REQUIRED, CKF_TOKEN_INITIALIZED, CKF_USER_PIN_INITIALIZED};
use log::debug;
use serde::Serialize;

use crate::config::Pkcs11NodeConfig;
use crate::error::{PinTries, Pkcs11Error, TokenPlace, explain};
use crate::identity::TokenIdentity;
use crate::raw::{RawModule, RawTokenInfo, raw_module};
use crate::uri::{LibraryVersion, Pkcs11Uri, TokenMatch};

/// A module as this process loaded it: cryptoki's context and the raw `C_GetTokenInfo`.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub pkcs11: Pkcs11,
    pub raw: Arc<RawModule>,
}

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Loaded>>> = OnceLock::new();

/// The process's one initialized instance of the PKCS#11 library at `path`.
pub fn shared_module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    loaded(path).map(|l| l.pkcs11)
}

pub(crate) fn loaded(path: &Path) -> Result<Loaded, Pkcs11Error> {
    if !path.exists() {
        return Err(Pkcs11Error::ModuleNotFound { path: path.into() });
    }
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let table = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned table still holds valid, initialized modules.
    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(module) = table.get(&key) {
        return Ok(module.clone());
    }
    let not_a_library = |detail: String| Pkcs11Error::NotAPkcs11Library {
        path: path.into(),
        detail,
    };
    let pkcs11 = Pkcs11::new(&key).map_err(|e| {
        not_a_library(match e {
            CkError::LibraryLoading(e) => e.to_string(),
            other => other.to_string(),
        })
    })?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Pkcs11Error::Initialize {
                path: path.into(),
                detail: explain(&e),
                hint: initialize_hint(path),
            });
        }
    }
    // Right after cryptoki's C_Initialize (raw.rs says why).
    let raw = raw_module(&key).map_err(not_a_library)?;
    let module = Loaded { pkcs11, raw };
    table.insert(key, module.clone());
    Ok(module)
}

/// What to check when a known module fails to initialize.
fn initialize_hint(path: &Path) -> &'static str {
    let name = path.to_string_lossy();
    if name.contains("softhsm") {
        "; SoftHSM reads its configuration from SOFTHSM2_CONF (default /etc/softhsm/softhsm2.conf): \
         check that file and its token directory"
    } else if name.contains("opencryptoki") {
        "; opencryptoki needs its slot daemon running (pkcsslotd, which reads \
         /etc/opencryptoki/opencryptoki.conf) and this user in the pkcs11 group"
    } else {
        ""
    }
}

impl Loaded {
    /// The token information of `slot` ([`token_info`]).
    pub(crate) fn token_info(
        &self,
        module: &Path,
        slot: Slot,
    ) -> Result<RawTokenInfo, Pkcs11Error> {
        token_info(&self.pkcs11, &self.raw, module, slot)
    }
}

/// The token information of `slot` of `module`: cryptoki's, or where cryptoki cannot parse
/// what the token says (opencryptoki 3.8.1's clock), the raw read of [`crate::raw`].
pub(crate) fn token_info(
    pkcs11: &Pkcs11,
    raw: &RawModule,
    module: &Path,
    slot: Slot,
) -> Result<RawTokenInfo, Pkcs11Error> {
    let failed = |e: &CkError| call_failure(module, Some(slot.id()), None, "C_GetTokenInfo", e);
    match pkcs11.get_token_info(slot) {
        Ok(info) => Ok(RawTokenInfo::from_cryptoki(&info)),
        Err(e @ (CkError::Pkcs11(..) | CkError::NullFunctionPointer)) => Err(failed(&e)),
        Err(unparsed) => {
            debug!(
                "pkcs11: cryptoki cannot parse the token information of slot {} of {} \
                 ({unparsed}); reading the fields mkclone needs itself",
                slot.id(),
                module.display()
            );
            raw.token_info(slot.id()).map_err(|e| failed(&e))
        }
    }
}

fn call_failure(
    module: &Path,
    slot: Option<u64>,
    label: Option<&str>,
    function: &'static str,
    e: &CkError,
) -> Pkcs11Error {
    Pkcs11Error::TokenCall {
        place: TokenPlace {
            module: module.into(),
            slot,
            label: label.map(String::from),
        },
        function,
        detail: explain(e),
    }
}

/// A slot and the token in it, as `mkclone devices` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    pub slot_id: u64,
    pub description: String,
    pub manufacturer: String,
    pub token: Option<TokenSummary>,
}

/// What a token says about itself, and how a configuration names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenSummary {
    pub label: String,
    /// The serial number as the token reports it (empty when blank).
    pub serial: String,
    /// What `expect_token_serial` (or a URI's `serial`) pins: the serial number, or for a
    /// blank one the derived identity (`identity.rs`).
    pub identity: String,
    pub model: String,
    pub manufacturer: String,
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub login_required: bool,
    pub pin: PinTries,
    /// The token's `pkcs11:` URI (RFC 7512), with the module path: what `token` in a
    /// configuration may say.
    pub uri: String,
}

impl TokenSummary {
    fn new(module: &Path, info: &RawTokenInfo) -> Self {
        let identity = TokenIdentity::of(module, info);
        let uri = Pkcs11Uri {
            token: Some(info.label.clone()),
            serial: Some(info.serial.clone()),
            token_match: TokenMatch {
                manufacturer: Some(info.manufacturer.clone()),
                model: Some(info.model.clone()),
                ..TokenMatch::default()
            },
            module_path: Some(module.to_string_lossy().into_owned()),
            ..Pkcs11Uri::default()
        };
        Self {
            label: info.label.clone(),
            serial: info.serial.clone(),
            identity: identity.id,
            model: info.model.clone(),
            manufacturer: info.manufacturer.clone(),
            initialized: info.has(CKF_TOKEN_INITIALIZED),
            user_pin_initialized: info.has(CKF_USER_PIN_INITIALIZED),
            login_required: info.has(CKF_LOGIN_REQUIRED),
            pin: PinTries::from_flags(info.flags),
            uri: uri.to_string(),
        }
    }
}

/// Every slot of the module at `module` and the token in each (for `mkclone devices`).
pub fn list_slots(module: &Path) -> Result<Vec<SlotInfo>, Pkcs11Error> {
    let loaded = loaded(module)?;
    let slots = loaded
        .pkcs11
        .get_all_slots()
        .map_err(|e| call_failure(module, None, None, "C_GetSlotList", &e))?;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let info = loaded
            .pkcs11
            .get_slot_info(slot)
            .map_err(|e| call_failure(module, Some(slot.id()), None, "C_GetSlotInfo", &e))?;
        let token = if info.token_present() {
            Some(TokenSummary::new(module, &loaded.token_info(module, slot)?))
        } else {
            None
        };
        out.push(SlotInfo {
            slot_id: slot.id(),
            description: info.slot_description().trim_end().to_string(),
            manufacturer: info.manufacturer_id().trim_end().to_string(),
            token,
        });
    }
    Ok(out)
}

/// The token a node names, as found.
pub(crate) struct Found {
    pub slot: Slot,
    pub info: RawTokenInfo,
    pub identity: TokenIdentity,
}

/// An attribute a node names (its name, the value wanted if any) and what the token reports.
type Wanted<'a> = (&'static str, &'a Option<String>, &'a str);

/// The first of `pairs` whose wanted value (trailing blanks ignored) is not what was
/// found: (attribute, expected, found).
fn first_difference(pairs: &[Wanted<'_>]) -> Option<(&'static str, String, String)> {
    pairs.iter().find_map(|&(attribute, expected, found)| {
        expected
            .as_ref()
            .filter(|e| e.trim_end() != found)
            .map(|e| (attribute, e.clone(), found.to_string()))
    })
}

/// The first attribute of `wanted` that `token` (in `slot` of the module) does not have:
/// (attribute, expected, found).
fn mismatch(
    loaded: &Loaded,
    module: &Path,
    slot: Slot,
    info: &RawTokenInfo,
    wanted: &TokenMatch,
) -> Result<Option<(&'static str, String, String)>, Pkcs11Error> {
    if let Some(m) = first_difference(&[
        (
            "manufacturer",
            &wanted.manufacturer,
            info.manufacturer.as_str(),
        ),
        ("model", &wanted.model, info.model.as_str()),
    ]) {
        return Ok(Some(m));
    }
    if let Some(id) = wanted.slot_id
        && id != slot.id()
    {
        return Ok(Some(("slot-id", id.to_string(), slot.id().to_string())));
    }
    if wanted.slot_description.is_some() || wanted.slot_manufacturer.is_some() {
        let s = loaded
            .pkcs11
            .get_slot_info(slot)
            .map_err(|e| call_failure(module, Some(slot.id()), None, "C_GetSlotInfo", &e))?;
        let (description, manufacturer) = (s.slot_description(), s.manufacturer_id());
        if let Some(m) = first_difference(&[
            (
                "slot-description",
                &wanted.slot_description,
                description.trim_end(),
            ),
            (
                "slot-manufacturer",
                &wanted.slot_manufacturer,
                manufacturer.trim_end(),
            ),
        ]) {
            return Ok(Some(m));
        }
    }
    if wanted.library_manufacturer.is_some()
        || wanted.library_description.is_some()
        || wanted.library_version.is_some()
    {
        let l = loaded
            .pkcs11
            .get_library_info()
            .map_err(|e| call_failure(module, None, None, "C_GetInfo", &e))?;
        let version = LibraryVersion {
            major: l.library_version().major(),
            minor: l.library_version().minor(),
        };
        if let Some(m) = first_difference(&[
            (
                "library-manufacturer",
                &wanted.library_manufacturer,
                l.manufacturer_id().trim_end(),
            ),
            (
                "library-description",
                &wanted.library_description,
                l.library_description().trim_end(),
            ),
        ]) {
            return Ok(Some(m));
        }
        if let Some(v) = wanted.library_version
            && v != version
        {
            return Ok(Some((
                "library-version",
                v.to_string(),
                version.to_string(),
            )));
        }
    }
    Ok(None)
}

/// The slot holding the initialized token `config` names: labelled `config.token` (tokens
/// move between slots, so they are found by label), with the serial number (or derived
/// identity) `expect_token_serial` and every attribute of `token_match`.
pub(crate) fn find_token(loaded: &Loaded, config: &Pkcs11NodeConfig) -> Result<Found, Pkcs11Error> {
    let module = config.module.as_path();
    let label = config.token.as_str();
    let slots = loaded
        .pkcs11
        .get_slots_with_token()
        .map_err(|e| call_failure(module, None, None, "C_GetSlotList", &e))?;
    let mut found = Vec::new();
    let mut labels = Vec::new();
    for slot in slots {
        let info = loaded.token_info(module, slot)?;
        if !info.has(CKF_TOKEN_INITIALIZED) {
            continue;
        }
        labels.push(format!("{:?}", info.label));
        if info.label == label {
            let identity = TokenIdentity::of(module, &info);
            found.push(Found {
                slot,
                info,
                identity,
            });
        }
    }
    if let Some(expected) = config.expect_token_serial.as_deref() {
        let (matching, other): (Vec<_>, Vec<_>) = found
            .into_iter()
            .partition(|f| f.identity.matches(expected));
        if matching.is_empty()
            && let Some(f) = other.first()
        {
            return Err(Pkcs11Error::TokenSerialMismatch {
                label: label.into(),
                expected: expected.trim().into(),
                found: f.identity.id.clone(),
            });
        }
        found = matching;
    }
    if !config.token_match.is_empty() && !found.is_empty() {
        let mut matching = Vec::new();
        let mut first_mismatch = None;
        for f in found {
            match mismatch(loaded, module, f.slot, &f.info, &config.token_match)? {
                None => matching.push(f),
                Some(m) => {
                    first_mismatch.get_or_insert(m);
                }
            }
        }
        if matching.is_empty()
            && let Some((attribute, expected, found)) = first_mismatch
        {
            return Err(Pkcs11Error::TokenAttributeMismatch {
                label: label.into(),
                attribute,
                expected,
                found,
            });
        }
        found = matching;
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Pkcs11Error::TokenNotFound {
            label: label.into(),
            module: module.into(),
            available: if labels.is_empty() {
                "none".into()
            } else {
                labels.join(", ")
            },
        }),
        count => Err(Pkcs11Error::TokenAmbiguous {
            label: label.into(),
            module: module.into(),
            count,
        }),
    }
}
