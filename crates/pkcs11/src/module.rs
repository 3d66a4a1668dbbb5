//! PKCS#11 modules: loaded and initialized once per process, never finalized.
//!
//! C_Initialize may run once per process and module: a second `Pkcs11` instance of the same
//! library shares its state, and finalizing either breaks the other. So every module is
//! kept in one process-wide table ([`shared_module`]) and lives until the process ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::{Slot, TokenInfo};
use serde::Serialize;

use crate::error::{PinTries, Pkcs11Error, explain};

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// The process's one initialized instance of the PKCS#11 library at `path`.
pub fn shared_module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
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
    let module = Pkcs11::new(&key).map_err(|e| Pkcs11Error::NotAPkcs11Library {
        path: path.into(),
        detail: match e {
            CkError::LibraryLoading(e) => e.to_string(),
            other => other.to_string(),
        },
    })?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Pkcs11Error::Initialize {
                path: path.into(),
                detail: explain(&e),
                hint: if path.to_string_lossy().contains("softhsm") {
                    "; SoftHSM reads its configuration from SOFTHSM2_CONF (default /etc/softhsm/softhsm2.conf): \
                     check that file and its token directory"
                } else {
                    ""
                },
            });
        }
    }
    table.insert(key, module.clone());
    Ok(module)
}

/// A slot and the token in it, as `mkclone devices` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    pub slot_id: u64,
    pub description: String,
    pub manufacturer: String,
    pub token: Option<TokenSummary>,
}

/// What a token says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenSummary {
    pub label: String,
    pub serial: String,
    pub model: String,
    pub manufacturer: String,
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub login_required: bool,
    pub pin: PinTries,
}

impl TokenSummary {
    fn from_info(info: &TokenInfo) -> Self {
        Self {
            label: info.label().trim_end().to_string(),
            serial: info.serial_number().trim_end().to_string(),
            model: info.model().trim_end().to_string(),
            manufacturer: info.manufacturer_id().trim_end().to_string(),
            initialized: info.token_initialized(),
            user_pin_initialized: info.user_pin_initialized(),
            login_required: info.login_required(),
            pin: PinTries::from_token_info(info),
        }
    }
}

fn module_failure(module: &Path, function: &'static str, e: &CkError) -> Pkcs11Error {
    Pkcs11Error::Session {
        label: format!("(module {})", module.display()),
        function,
        detail: explain(e),
    }
}

/// Every slot of the module at `module` and the token in each (for `mkclone devices`).
pub fn list_slots(module: &Path) -> Result<Vec<SlotInfo>, Pkcs11Error> {
    let pkcs11 = shared_module(module)?;
    let slots = pkcs11
        .get_all_slots()
        .map_err(|e| module_failure(module, "C_GetSlotList", &e))?;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let info = pkcs11
            .get_slot_info(slot)
            .map_err(|e| module_failure(module, "C_GetSlotInfo", &e))?;
        let token = if info.token_present() {
            let t = pkcs11
                .get_token_info(slot)
                .map_err(|e| module_failure(module, "C_GetTokenInfo", &e))?;
            Some(TokenSummary::from_info(&t))
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

/// The slot holding the initialized token labelled `label` (tokens move between slots, so
/// they are found by label), checked against `expect_serial`.
pub(crate) fn find_token(
    pkcs11: &Pkcs11,
    module: &Path,
    label: &str,
    expect_serial: Option<&str>,
) -> Result<(Slot, TokenInfo), Pkcs11Error> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| module_failure(module, "C_GetSlotList", &e))?;
    let mut found = Vec::new();
    let mut labels = Vec::new();
    for slot in slots {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(|e| module_failure(module, "C_GetTokenInfo", &e))?;
        if !info.token_initialized() {
            continue;
        }
        let this = info.label().trim_end();
        labels.push(format!("{this:?}"));
        if this == label {
            found.push((slot, info));
        }
    }
    if let Some(expected) = expect_serial {
        let (matching, other): (Vec<_>, Vec<_>) = found
            .into_iter()
            .partition(|(_, info)| info.serial_number().trim_end() == expected.trim());
        if matching.is_empty()
            && let Some((_, info)) = other.first()
        {
            return Err(Pkcs11Error::TokenSerialMismatch {
                label: label.into(),
                expected: expected.trim().into(),
                found: info.serial_number().trim_end().into(),
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
