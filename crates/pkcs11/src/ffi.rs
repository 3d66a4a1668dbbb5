//! The one PKCS#11 call mkclone makes beside cryptoki: `C_GetTokenInfo`, into a
//! `CK_TOKEN_INFO` read field by field here.
//!
//! Why: cryptoki's `Pkcs11::get_token_info` converts every field, and fails the whole call
//! when a token that sets `CKF_CLOCK_ON_TOKEN` reports a `utcTime` it cannot parse.
//! opencryptoki 3.8.1 (Debian 12) reports `"03:02:26        "` (a time of day, not the
//! `YYYYMMDDhhmmss00` PKCS#11 v2.40 §3.2 prescribes), so no token of that module could even
//! be listed. mkclone needs the label, manufacturer, model, serial number and flags, never the
//! clock, so where cryptoki cannot parse a token's information it reads those here
//! (`module.rs` asks cryptoki first).
//!
//! The function pointer comes from the module's own `C_GetFunctionList` (PKCS#11 v2.40 §5.2:
//! the one entry point every module exports), called on a second `dlopen` of the library
//! cryptoki already loaded: the dynamic loader returns the same copy. Most modules return
//! their one function list, already initialized by cryptoki; a proxy may return a fresh
//! instance (p11-kit's proxy makes one per `C_GetFunctionList`), so the list is initialized
//! here too (`CKR_CRYPTOKI_ALREADY_INITIALIZED` is the usual answer), right after cryptoki's,
//! so that both instances number the slots alike (p11-kit fixes its slot numbering when an
//! instance is initialized). It is never finalized, as no module is (`module.rs`).

#![allow(unsafe_code)]

use std::path::Path;
use std::ptr;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, Rv};
use cryptoki_sys::{
    CK_C_INITIALIZE_ARGS, CK_FLAGS, CK_FUNCTION_LIST, CK_RV, CK_SLOT_ID, CK_TOKEN_INFO,
    CKF_OS_LOCKING_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED, CKR_OK,
};

/// `C_GetTokenInfo` as the module exports it.
type GetTokenInfo = unsafe extern "C" fn(CK_SLOT_ID, *mut CK_TOKEN_INFO) -> CK_RV;

/// A module's raw `C_GetTokenInfo`, and the library handle that keeps it loaded.
pub(crate) struct RawModule {
    get_token_info: GetTokenInfo,
    /// Held so that `get_token_info` stays valid (dropped last, after no call can run).
    _library: cryptoki_sys::Pkcs11,
}

impl std::fmt::Debug for RawModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawModule")
    }
}

/// What a token says about itself, as mkclone reads it: the text fields with their blank
/// (and NUL) padding removed, and the raw flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawTokenInfo {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub flags: CK_FLAGS,
}

impl RawTokenInfo {
    /// Decode the fields mkclone uses; `utcTime` and the counters are never looked at.
    pub fn from_ck(info: &CK_TOKEN_INFO) -> Self {
        Self {
            label: padded_text(&info.label),
            manufacturer: padded_text(&info.manufacturerID),
            model: padded_text(&info.model),
            serial: padded_text(&info.serialNumber),
            flags: info.flags,
        }
    }

    /// The same fields from cryptoki's parse (for tokens it can parse); the flags mkclone
    /// reads are rebuilt from its accessors.
    pub fn from_cryptoki(info: &cryptoki::slot::TokenInfo) -> Self {
        use cryptoki_sys::*;
        let flags = [
            (info.token_initialized(), CKF_TOKEN_INITIALIZED),
            (info.user_pin_initialized(), CKF_USER_PIN_INITIALIZED),
            (info.login_required(), CKF_LOGIN_REQUIRED),
            (info.user_pin_count_low(), CKF_USER_PIN_COUNT_LOW),
            (info.user_pin_final_try(), CKF_USER_PIN_FINAL_TRY),
            (info.user_pin_locked(), CKF_USER_PIN_LOCKED),
            (info.user_pin_to_be_changed(), CKF_USER_PIN_TO_BE_CHANGED),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, flag)| flags | flag);
        Self {
            label: info.label().trim_end_matches([' ', '\0']).to_string(),
            manufacturer: info
                .manufacturer_id()
                .trim_end_matches([' ', '\0'])
                .to_string(),
            model: info.model().trim_end_matches([' ', '\0']).to_string(),
            serial: info
                .serial_number()
                .trim_end_matches([' ', '\0'])
                .to_string(),
            flags,
        }
    }

    pub fn has(&self, flag: CK_FLAGS) -> bool {
        self.flags & flag != 0
    }
}

/// A blank-padded PKCS#11 text field (PKCS#11 v2.40 §3.2: "padded with the blank
/// character"); some modules pad with NULs instead, which are removed too.
fn padded_text(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

impl RawModule {
    /// Load the module at `path` (already loaded and initialized by cryptoki) once more and
    /// take its `C_GetTokenInfo` from its function list. The error says what failed.
    pub fn load(path: &Path) -> Result<Self, String> {
        // SAFETY: `path` names the PKCS#11 library cryptoki has just loaded and initialized
        // from the same path: dlopen returns that copy (its initializers do not run again),
        // and the handle keeps it loaded for as long as this value lives.
        let library = unsafe { cryptoki_sys::Pkcs11::new(path) }.map_err(|e| e.to_string())?;
        let get_function_list = library
            .C_GetFunctionList
            .as_ref()
            .map_err(|e| format!("C_GetFunctionList: {e}"))?;
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: C_GetFunctionList takes one out-pointer, which is valid and writable here;
        // the module writes the address of its own function list into it.
        let rv = unsafe { (*get_function_list)(&mut list) };
        if let Rv::Error(e) = Rv::from(rv) {
            return Err(format!("C_GetFunctionList: {e}"));
        }
        if list.is_null() {
            return Err("C_GetFunctionList returned no function list".into());
        }
        // SAFETY: `list` is non-null and points to the module's function list, which stays
        // valid while the library is loaded (PKCS#11 v2.40 §5.2: the function list is owned
        // by the Cryptoki library); two fields are copied out.
        let (initialize, get_token_info) =
            unsafe { ((*list).C_Initialize, (*list).C_GetTokenInfo) };
        let get_token_info = get_token_info
            .ok_or_else(|| "the module's function list has no C_GetTokenInfo".to_string())?;
        let initialize = initialize
            .ok_or_else(|| "the module's function list has no C_Initialize".to_string())?;
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: ptr::null_mut(),
        };
        // SAFETY: C_Initialize takes a pointer to a valid CK_C_INITIALIZE_ARGS (no mutex
        // callbacks, the OS's locking), which lives across the call; the module keeps no
        // reference to it (PKCS#11 v2.40 §5.4).
        let rv = unsafe { initialize((&mut args as *mut CK_C_INITIALIZE_ARGS).cast()) };
        if rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED {
            let detail = match Rv::from(rv) {
                Rv::Error(e) => e.to_string(),
                Rv::Ok => rv.to_string(),
            };
            return Err(format!("C_Initialize (of its function list): {detail}"));
        }
        Ok(Self {
            get_token_info,
            _library: library,
        })
    }

    /// `C_GetTokenInfo` of `slot`. Call only once the module is initialized (every
    /// `RawModule` is made after cryptoki's `C_Initialize` succeeded).
    pub fn token_info(&self, slot: CK_SLOT_ID) -> Result<RawTokenInfo, CkError> {
        let mut info = CK_TOKEN_INFO::default();
        // SAFETY: the module is initialized; `info` is a valid, writable CK_TOKEN_INFO of
        // the layout cryptoki-sys generated from pkcs11t.h for this platform; the module
        // writes only inside it.
        let rv = unsafe { (self.get_token_info)(slot, &mut info) };
        Rv::from(rv).into_result(Function::GetTokenInfo)?;
        Ok(RawTokenInfo::from_ck(&info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_lose_their_padding_and_the_clock_is_never_read() {
        let padded = |text: &[u8], len: usize, pad: u8| {
            let mut field = vec![pad; len];
            field[..text.len()].copy_from_slice(text);
            field
        };
        let mut info = CK_TOKEN_INFO {
            // What opencryptoki 3.8.1 puts in utcTime with CKF_CLOCK_ON_TOKEN set.
            utcTime: *b"03:02:26        ",
            flags: cryptoki_sys::CKF_CLOCK_ON_TOKEN | cryptoki_sys::CKF_TOKEN_INITIALIZED,
            ..CK_TOKEN_INFO::default()
        };
        info.label.copy_from_slice(&padded(b"source", 32, b' '));
        info.manufacturerID
            .copy_from_slice(&padded(b"IBM Corp.", 32, b' '));
        info.model.copy_from_slice(&padded(b"IBM SoftTok", 16, 0));
        info.serialNumber.copy_from_slice(&padded(b"123", 16, b' '));
        let raw = RawTokenInfo::from_ck(&info);
        assert_eq!(raw.label, "source");
        assert_eq!(raw.manufacturer, "IBM Corp.");
        assert_eq!(raw.model, "IBM SoftTok");
        assert_eq!(raw.serial, "123");
        assert!(raw.has(cryptoki_sys::CKF_TOKEN_INITIALIZED));
        assert!(!raw.has(cryptoki_sys::CKF_USER_PIN_INITIALIZED));
        // cryptoki's own conversion refuses this token outright.
        assert!(cryptoki::slot::TokenInfo::try_from(info).is_err());
        // A blank serial is empty.
        info.serialNumber = [b' '; 16];
        assert_eq!(RawTokenInfo::from_ck(&info).serial, "");
    }
}
