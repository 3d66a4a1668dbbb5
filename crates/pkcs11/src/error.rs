//! Errors of opening a PKCS#11 node, and what a token's flags say about PIN tries.
//!
//! Each message names the module, the token or the variable concerned and says what to do.
//! No message ever contains a PIN.

use std::fmt;
use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};
use serde::Serialize;
use thiserror::Error;

/// What the token's flags say about the user PIN (PKCS#11 `CK_TOKEN_INFO.flags`).
///
/// Tokens report these where they count failed logins; SoftHSM 2.6.1 sets
/// `CKF_USER_PIN_COUNT_LOW` after a failure but never locks.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug, Serialize)]
pub struct PinTries {
    /// `CKF_USER_PIN_COUNT_LOW`: a wrong PIN was entered since the last good login.
    pub count_low: bool,
    /// `CKF_USER_PIN_FINAL_TRY`: one more wrong PIN locks the token.
    pub final_try: bool,
    /// `CKF_USER_PIN_LOCKED`: the user PIN is locked.
    pub locked: bool,
    /// `CKF_USER_PIN_TO_BE_CHANGED`: the PIN must be changed before use.
    pub to_be_changed: bool,
}

impl PinTries {
    /// Decode the user-PIN bits of a raw `CK_TOKEN_INFO.flags` value.
    pub fn from_flags(flags: cryptoki_sys::CK_FLAGS) -> Self {
        Self {
            count_low: flags & cryptoki_sys::CKF_USER_PIN_COUNT_LOW != 0,
            final_try: flags & cryptoki_sys::CKF_USER_PIN_FINAL_TRY != 0,
            locked: flags & cryptoki_sys::CKF_USER_PIN_LOCKED != 0,
            to_be_changed: flags & cryptoki_sys::CKF_USER_PIN_TO_BE_CHANGED != 0,
        }
    }

    /// The same bits, read through cryptoki's token information.
    pub fn from_token_info(info: &cryptoki::slot::TokenInfo) -> Self {
        Self {
            count_low: info.user_pin_count_low(),
            final_try: info.user_pin_final_try(),
            locked: info.user_pin_locked(),
            to_be_changed: info.user_pin_to_be_changed(),
        }
    }

    /// What a person should know, in one sentence.
    pub fn describe(&self) -> &'static str {
        if self.locked {
            "the token now reports the user PIN LOCKED; the security officer must unlock it (C_InitPIN)"
        } else if self.final_try {
            "the token says ONE try remains: one more wrong PIN locks it"
        } else if self.count_low {
            "the token says wrong PINs were entered since the last good login (fewer tries remain)"
        } else {
            "the token reports nothing about remaining tries"
        }
    }
}

impl fmt::Display for PinTries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Where a PIN was to come from, for messages (never the PIN itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinOrigin {
    Env(String),
    File(PathBuf),
}

impl fmt::Display for PinOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Where a failing call was made: the module, and the slot and token label when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPlace {
    pub module: PathBuf,
    pub slot: Option<u64>,
    pub label: Option<String>,
}

impl fmt::Display for TokenPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.label, self.slot) {
            (Some(label), Some(slot)) => write!(f, "token {label:?} in slot {slot} of "),
            (Some(label), None) => write!(f, "token {label:?} of "),
            (None, Some(slot)) => write!(f, "the token in slot {slot} of "),
            (None, None) => Ok(()),
        }?;
        write!(f, "PKCS#11 module {}", self.module.display())
    }
}

/// An object of mkclone's whose attribute differs from the template mkclone made it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectChange {
    /// The object's label and what it is.
    pub object: String,
    /// `CKA_...`.
    pub attribute: String,
    pub expected: String,
    pub found: String,
    /// What the change may have allowed.
    pub consequence: String,
}

impl fmt::Display for ObjectChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is {}, but mkclone made it {}: it was changed outside mkclone; {}",
            self.object, self.attribute, self.found, self.expected, self.consequence
        )
    }
}

/// Why a PKCS#11 node could not be opened (or its slots listed).
#[derive(Debug, Error)]
pub enum Pkcs11Error {
    #[error("`{field}`: {detail}")]
    Config { field: &'static str, detail: String },
    #[error("{place}: {function} failed: {detail}")]
    TokenCall {
        place: TokenPlace,
        function: &'static str,
        detail: String,
    },
    #[error(
        "the token lock directory {dir} cannot be used: {reason}. mkclone locks each token it \
         opens, in one directory for the whole machine, so that two commands never change a \
         token at once"
    )]
    LockDirUnusable { dir: PathBuf, reason: String },
    #[error(
        "PKCS#11 module {path} does not exist: give the path of the vendor's PKCS#11 library \
         (SoftHSM: /usr/lib/softhsm/libsofthsm2.so, from the softhsm2 package)"
    )]
    ModuleNotFound { path: PathBuf },
    #[error(
        "{path} is not a PKCS#11 library ({detail}): `module` must name the vendor's PKCS#11 shared library"
    )]
    NotAPkcs11Library { path: PathBuf, detail: String },
    #[error("PKCS#11 module {path} could not be initialized (C_Initialize: {detail}){hint}")]
    Initialize {
        path: PathBuf,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "no token labelled {label:?} in PKCS#11 module {module}; tokens present: {available}. \
         Check `token` in the configuration (`mkclone devices` lists them)"
    )]
    TokenNotFound {
        label: String,
        module: PathBuf,
        available: String,
    },
    #[error(
        "{count} tokens are labelled {label:?} in PKCS#11 module {module}: relabel them or set \
         `expect_token_serial` to pick one"
    )]
    TokenAmbiguous {
        label: String,
        module: PathBuf,
        count: usize,
    },
    #[error(
        "token {label:?} has serial number {found:?}, not the expected {expected:?}: this is another \
         token with the same label. Do not proceed until you know which token this is"
    )]
    TokenSerialMismatch {
        label: String,
        expected: String,
        found: String,
    },
    #[error(
        "token {label:?} has {attribute} {found:?}, not {expected:?} as the configuration's \
         pkcs11: URI asks: this is another token (or another module) with the same label. \
         Do not proceed until you know which token this is"
    )]
    TokenAttributeMismatch {
        label: String,
        attribute: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "the user PIN of token {label:?} is not initialized: the security officer must set it first \
         (softhsm2-util --init-token, or C_InitPIN)"
    )]
    UserPinNotInitialized { label: String },
    #[error("the PIN for token {label:?} is wrong: {tries}. Check the PIN source and try again")]
    WrongPin { label: String, tries: PinTries },
    #[error(
        "the user PIN of token {label:?} is locked: the security officer must unlock it (C_InitPIN) \
         before mkclone can log in"
    )]
    PinLocked { label: String },
    #[error(
        "the PIN {origin} is not set: export it before running mkclone (the PIN is never taken from the command line)"
    )]
    PinEnvMissing { origin: PinOrigin },
    #[error("the PIN {origin} is not valid UTF-8")]
    PinNotUnicode { origin: PinOrigin },
    #[error(
        "the PIN {origin} does not exist: create it (mode 0600) or fix `pin` in the configuration"
    )]
    PinFileMissing { origin: PinOrigin },
    #[error("the PIN {origin} cannot be read: {source}")]
    PinFileUnreadable {
        origin: PinOrigin,
        #[source]
        source: std::io::Error,
    },
    #[error("the PIN {origin} is empty")]
    PinEmpty { origin: PinOrigin },
    #[error(
        "this node's PIN is to be typed at a prompt: the mkclone command line asks for it; \
         a library caller must resolve the prompt itself"
    )]
    PinNeedsPrompt,
    #[error(
        "token {label:?} lacks mechanism {mechanism} ({needed_for}); mkclone cannot run on this token"
    )]
    MechanismMissing {
        label: String,
        mechanism: String,
        needed_for: &'static str,
    },
    #[error("token {label:?}: {function} failed: {detail}")]
    Session {
        label: String,
        function: &'static str,
        detail: String,
    },
    #[error(
        "token {label:?} (serial {serial}) is in use by {holder} (lock file {path}{command}): wait \
         for that command to finish, then run this one again",
        holder = holder_text(*.holder_pid),
        command = command_text(.holder_command.as_deref())
    )]
    TokenInUse {
        label: String,
        serial: String,
        /// The pid the holder wrote into the lock file (`None` if it had not yet).
        holder_pid: Option<u32>,
        /// The holder's program and subcommand ("mkclone clone"), if it wrote them.
        holder_command: Option<String>,
        path: PathBuf,
    },
    #[error(
        "cannot take the lock of token {label:?} ({path}): {source}. mkclone locks each token it \
         opens so that two commands never change it at once"
    )]
    TokenLockFailed {
        label: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token {label:?}: mkclone's state on this token is damaged ({detail}); it was changed outside mkclone. \
         Nothing was modified; inspect the token's objects"
    )]
    Corrupt { label: String, detail: String },
    #[error(
        "token {label:?}: {change}. mkclone will not use this token until that object is dealt with: \
         see \"Changed outside mkclone\" in the README"
    )]
    ChangedOutside {
        label: String,
        change: Box<ObjectChange>,
    },
    #[error(
        "token {label:?} holds a {class} labelled {key:?} that the token's security officer marked \
         CKA_TRUSTED: with it, anyone who knows the user PIN can wrap the master keys and the coefficient \
         seed out of the token (CKA_WRAP_WITH_TRUSTED keeps them only from keys nobody trusted). If master \
         keys were on this token while it existed, treat them as exposed. mkclone will not use this token \
         while it holds such a key: have the security officer delete it (e.g. pkcs11-tool --login \
         --login-type so --delete-object --label LABEL --type pubkey or secrkey) or use another token"
    )]
    TrustedKey {
        label: String,
        class: String,
        key: String,
    },
}

/// Who holds a token's lock, for [`Pkcs11Error::TokenInUse`].
fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) if pid == std::process::id() => format!(
            "this mkclone process itself, pid {pid}, which has the token open already (a node opened twice)"
        ),
        Some(pid) => format!("another mkclone command, pid {pid}"),
        None => "another mkclone command (its pid is not written yet)".into(),
    }
}

/// The holder's command, for [`Pkcs11Error::TokenInUse`]: after the lock file's path.
fn command_text(command: Option<&str>) -> String {
    command
        .map(|c| format!(", held by {c}"))
        .unwrap_or_default()
}

/// A readable name and, where it helps, advice for a PKCS#11 return value.
pub(crate) fn explain(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, function) => {
            let advice = match rv {
                RvError::SessionHandleInvalid | RvError::SessionClosed => {
                    " (the session was closed: open the node again)"
                }
                RvError::DeviceRemoved | RvError::TokenNotPresent => {
                    " (the token was removed or the module lost it)"
                }
                RvError::DeviceMemory => " (the token is out of memory)",
                RvError::UserNotLoggedIn => " (the login was lost: open the node again)",
                RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
                    " (the token does not support this mechanism or its parameters)"
                }
                RvError::TokenWriteProtected => " (the token is write-protected)",
                _ => "",
            };
            format!("{function}: {}: {rv}{advice}", return_value_name(rv))
        }
        other => other.to_string(),
    }
}

/// The name PKCS#11 gives a return value (`CKR_GENERAL_ERROR`), from cryptoki's variant
/// name (`GeneralError`); a vendor's or an unknown value as cryptoki writes it, with its
/// number.
pub(crate) fn return_value_name(rv: &RvError) -> String {
    match rv {
        RvError::VendorDefined(_) | RvError::UnknownErrorCode(_) => rv.to_string(),
        named => {
            let mut name = String::from("CKR");
            for c in format!("{named:?}").chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages name a return value as PKCS#11 does.
    #[test]
    fn return_values_are_named_as_pkcs11_names_them() {
        for (rv, name) in [
            (RvError::GeneralError, "CKR_GENERAL_ERROR"),
            (RvError::DeviceError, "CKR_DEVICE_ERROR"),
            (RvError::SessionHandleInvalid, "CKR_SESSION_HANDLE_INVALID"),
            (RvError::WrappedKeyLenRange, "CKR_WRAPPED_KEY_LEN_RANGE"),
            (RvError::Cancel, "CKR_CANCEL"),
        ] {
            assert_eq!(return_value_name(&rv), name);
        }
        assert_eq!(
            return_value_name(&RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED(0x80000001)"
        );
        let text = explain(&CkError::Pkcs11(
            RvError::DeviceMemory,
            cryptoki::context::Function::UnwrapKey,
        ));
        assert!(
            text.contains("CKR_DEVICE_MEMORY") && text.contains("out of memory"),
            "{text}"
        );
    }
    use cryptoki_sys::{
        CKF_LOGIN_REQUIRED, CKF_TOKEN_INITIALIZED, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY,
        CKF_USER_PIN_LOCKED, CKF_USER_PIN_TO_BE_CHANGED,
    };

    #[test]
    fn pin_flags_decode_each_bit_and_ignore_the_others() {
        let unrelated = CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED;
        assert_eq!(PinTries::from_flags(unrelated), PinTries::default());
        assert_eq!(
            PinTries::from_flags(unrelated | CKF_USER_PIN_COUNT_LOW),
            PinTries {
                count_low: true,
                ..PinTries::default()
            }
        );
        assert_eq!(
            PinTries::from_flags(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY),
            PinTries {
                count_low: true,
                final_try: true,
                ..PinTries::default()
            }
        );
        assert_eq!(
            PinTries::from_flags(CKF_USER_PIN_LOCKED),
            PinTries {
                locked: true,
                ..PinTries::default()
            }
        );
        assert!(PinTries::from_flags(CKF_USER_PIN_TO_BE_CHANGED).to_be_changed);
        // The bit values are PKCS#11's (pkcs11t.h), so a token's raw flags decode right.
        assert_eq!(CKF_USER_PIN_COUNT_LOW, 0x0001_0000);
        assert_eq!(CKF_USER_PIN_FINAL_TRY, 0x0002_0000);
        assert_eq!(CKF_USER_PIN_LOCKED, 0x0004_0000);
        assert_eq!(CKF_USER_PIN_TO_BE_CHANGED, 0x0008_0000);
    }

    #[test]
    fn pin_messages_put_the_most_urgent_first() {
        let all = PinTries::from_flags(
            CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED,
        );
        assert!(all.describe().contains("LOCKED"));
        let last = PinTries::from_flags(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY);
        assert!(last.describe().contains("ONE try remains"));
        let low = PinTries::from_flags(CKF_USER_PIN_COUNT_LOW);
        assert!(low.describe().contains("fewer tries remain"));
        assert!(
            PinTries::default()
                .describe()
                .contains("nothing about remaining tries")
        );
        let e = Pkcs11Error::WrongPin {
            label: "src".into(),
            tries: last,
        };
        assert_eq!(
            e.to_string(),
            "the PIN for token \"src\" is wrong: the token says ONE try remains: one more wrong PIN locks it. \
             Check the PIN source and try again"
        );
    }

    #[test]
    fn a_failing_call_names_the_module_and_the_slot_and_label_it_knows() {
        let place = |slot, label: Option<&str>| TokenPlace {
            module: "/usr/lib/x.so".into(),
            slot,
            label: label.map(String::from),
        };
        let e = Pkcs11Error::TokenCall {
            place: place(Some(3), None),
            function: "C_GetTokenInfo",
            detail: "CKR_DEVICE_ERROR".into(),
        };
        assert_eq!(
            e.to_string(),
            "the token in slot 3 of PKCS#11 module /usr/lib/x.so: C_GetTokenInfo failed: CKR_DEVICE_ERROR"
        );
        assert_eq!(
            place(Some(3), Some("src")).to_string(),
            "token \"src\" in slot 3 of PKCS#11 module /usr/lib/x.so"
        );
        assert_eq!(
            place(None, Some("src")).to_string(),
            "token \"src\" of PKCS#11 module /usr/lib/x.so"
        );
        assert_eq!(
            place(None, None).to_string(),
            "PKCS#11 module /usr/lib/x.so"
        );
    }
}
