//! Logging in and out: the user at open and again after the security officer's step, the
//! security officer for that step (officer.rs). One place reads what a refused login means.

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use mkclone_backend::{BackendError, Operation};

use super::Pkcs11Backend;
use crate::error::{PinTries, Pkcs11Error};
use crate::session::{CallError, Token};

/// Who logs in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Who {
    User,
    SecurityOfficer,
}

impl Who {
    fn user_type(self) -> UserType {
        match self {
            Self::User => UserType::User,
            Self::SecurityOfficer => UserType::So,
        }
    }
}

/// Why a login did not happen.
#[derive(Debug)]
pub(super) enum LoginFailure {
    /// The token refused the PIN; what its flags say about the tries left (`tries`, for the
    /// user PIN; `text` for either).
    Wrong {
        who: Who,
        tries: PinTries,
        text: String,
    },
    /// The token says this PIN is locked.
    Locked { who: Who },
    /// The call failed otherwise (or the crash seam stopped it).
    Call(CallError),
}

/// What a token's flags say about the SO PIN's tries, in one sentence.
fn so_tries(info: &cryptoki::slot::TokenInfo) -> String {
    if info.so_pin_locked() {
        "the token now reports the SO PIN LOCKED".into()
    } else if info.so_pin_final_try() {
        "the token says ONE try remains: one more wrong SO PIN locks it".into()
    } else if info.so_pin_count_low() {
        "the token says wrong SO PINs were entered since the last good login".into()
    } else {
        "the token reports nothing about remaining tries".into()
    }
}

/// Log `who` in on `token` (a token in `slot` of `pkcs11`) with `pin`. Already logged in
/// as `who` is success.
pub(super) fn log_in(
    token: &mut Token,
    pkcs11: &Pkcs11,
    slot: Slot,
    who: Who,
    pin: &str,
) -> Result<(), LoginFailure> {
    let auth = AuthPin::new(pin.into());
    let result = token.call("C_Login", false, |s| {
        match s.login(who.user_type(), Some(&auth)) {
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            other => other,
        }
    });
    drop(auth);
    let error = match result {
        Ok(()) => return Ok(()),
        Err(CallError::Token { error, .. }) => error,
        Err(stopped) => return Err(LoginFailure::Call(stopped)),
    };
    match error {
        CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid, _) => {
            let info = pkcs11.get_token_info(slot).ok();
            let locked = info.as_ref().is_some_and(|i| match who {
                Who::User => i.user_pin_locked(),
                Who::SecurityOfficer => i.so_pin_locked(),
            });
            if locked {
                return Err(LoginFailure::Locked { who });
            }
            let tries = info
                .as_ref()
                .map(PinTries::from_token_info)
                .unwrap_or_default();
            let text = match (&info, who) {
                (Some(i), Who::SecurityOfficer) => so_tries(i),
                _ => tries.to_string(),
            };
            Err(LoginFailure::Wrong { who, tries, text })
        }
        CkError::Pkcs11(RvError::PinLocked, _) => Err(LoginFailure::Locked { who }),
        error => Err(LoginFailure::Call(CallError::Token {
            function: "C_Login",
            error,
            mutating: false,
        })),
    }
}

/// Log whoever is logged in out of `token` (not logged in is success).
pub(super) fn log_out(token: &mut Token) -> Result<(), CallError> {
    token.call("C_Logout", false, |s| match s.logout() {
        Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
        other => other,
    })
}

impl LoginFailure {
    /// The error of opening token `label` (the user's login).
    pub(super) fn at_open(self, label: &str) -> Pkcs11Error {
        let label = label.to_string();
        match self {
            Self::Wrong { tries, .. } => Pkcs11Error::WrongPin { label, tries },
            Self::Locked { .. } => Pkcs11Error::PinLocked { label },
            Self::Call(e) => Pkcs11Error::Session {
                label,
                function: e.function(),
                detail: e.describe(),
            },
        }
    }

    /// The error of `operation` on `backend`'s token, which needed this login.
    pub(super) fn in_operation(
        self,
        operation: Operation,
        backend: &Pkcs11Backend,
    ) -> BackendError {
        let label = &backend.label;
        let whose = |who: Who| match who {
            Who::User => "user PIN",
            Who::SecurityOfficer => "security officer's PIN (so_pin)",
        };
        match self {
            Self::Wrong { who, text, .. } => BackendError::Credential {
                operation,
                detail: format!(
                    "token {label:?} refused the {}: {text}. Nothing was changed; check the PIN source and run \
                     the step again",
                    whose(who)
                ),
            },
            Self::Locked { who } => BackendError::Credential {
                operation,
                detail: format!(
                    "the {} of token {label:?} is locked{}",
                    whose(who),
                    match who {
                        Who::User => ": the security officer must unlock it (C_InitPIN)",
                        Who::SecurityOfficer =>
                            ": only re-initializing the token unlocks it, which destroys every key on it",
                    }
                ),
            },
            Self::Call(e) => backend.device(operation, e),
        }
    }
}
