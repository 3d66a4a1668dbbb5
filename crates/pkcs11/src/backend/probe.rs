//! What this token enforces, found out at open with session objects (which leave no trace),
//! and so what it cannot protect: said at open (the log) and by `status` (the capabilities'
//! `limits`), and in the README for SoftHSM.
//!
//! Each protection mkclone relies on is tried the way an attacker would: a key marked
//! `CKA_TRUSTED` by the user, a `CKA_WRAP_WITH_TRUSTED` key wrapped with an untrusted key,
//! an unwrap against `CKA_UNWRAP_TEMPLATE`, a change to a `CKA_MODIFIABLE`-false key, a copy
//! of a `CKA_COPYABLE`-false one. Each attempt that succeeds is a limit of this token; a
//! check the token lacks the means for (AES key wrap) is said to be unchecked.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use log::{info, warn};

use super::Pkcs11Backend;
use crate::error::Pkcs11Error;
use crate::session::CallResult;

/// What every PKCS#11 token leaves to a holder of its PINs, whatever mkclone does.
const INHERENT: [&str; 3] = [
    "a holder of both the user PIN and the security officer's PIN can export the master keys, as mkclone's \
     share export does: the SO marks a wrapping key of theirs CKA_TRUSTED",
    "a user-PIN holder can use each key for its one purpose: sign with the retained SA and CSS keys, compute \
     the share polynomials' coefficients with the seed, unwrap share keys with the CSR key; and can destroy \
     mkclone's objects (mkclone then reports the damage)",
    "a user-PIN holder on a target who holds a share file for it can open that share through the CSR key as \
     mkclone's INSTALL does (PKCS#11 cannot tell mkclone's session from theirs): the unwrapped key is a \
     session key, sensitive and decrypt-only, but it decrypts; the m share files for one target rebuild the \
     key. A share the target holds between installs stays sealed (no key on the token decrypts it)",
];

/// SoftHSM's own limit (its token info's manufacturer).
const SOFTHSM: &str = "SoftHSM is software: its attribute checks bind only callers of its PKCS#11 API; \
     whoever can read its token directory and knows the user PIN can decrypt every object offline";

/// The outcome of one check.
enum Check {
    Enforced,
    NotEnforced,
    Unchecked(String),
}

/// Test seam: tokens whose objects mkclone makes `CKA_MODIFIABLE` true.
#[cfg(feature = "test-seams")]
static MODIFIABLE_TOKENS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Test seam: from now on, mkclone makes the objects of the token labelled `token`
/// `CKA_MODIFIABLE` true (and expects them so), so that a test can change an attribute
/// SoftHSM would otherwise refuse to change, and see the next open name it.
#[cfg(feature = "test-seams")]
pub fn leave_objects_modifiable(token: &str) {
    MODIFIABLE_TOKENS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(token.to_string());
}

fn refused<T>(result: &CallResult<T>) -> bool {
    result.is_err()
}

fn type_unknown<T>(result: &CallResult<T>) -> bool {
    matches!(
        result,
        Err(crate::session::CallError::Token {
            error: CkError::Pkcs11(
                RvError::AttributeTypeInvalid | RvError::TemplateInconsistent,
                _
            ),
            ..
        })
    )
}

impl Pkcs11Backend {
    /// Find what the token accepts and enforces; set `support` and `limits`.
    pub(super) fn probe(&mut self) -> Result<(), Pkcs11Error> {
        #[cfg(feature = "test-seams")]
        {
            self.support.modifiable = MODIFIABLE_TOKENS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&self.label);
        }
        let mut made: Vec<ObjectHandle> = Vec::new();
        let mut limits: Vec<String> = Vec::new();
        let des3 = |extra: &[Attribute]| {
            let mut t = vec![
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
            ];
            t.extend_from_slice(extra);
            t
        };

        // CKA_COPYABLE, CKA_MODIFIABLE.
        let fixed = self.token.generate_key(
            &Mechanism::Des3KeyGen,
            &des3(&[Attribute::Modifiable(false), Attribute::Copyable(false)]),
        );
        let fixed = if type_unknown(&fixed) {
            self.support.copyable = false;
            limits.push(
                "this token does not know CKA_COPYABLE: a user-PIN holder can copy mkclone's keys (a copy \
                 keeps every attribute, since none can be changed)"
                    .into(),
            );
            self.token.generate_key(
                &Mechanism::Des3KeyGen,
                &des3(&[Attribute::Modifiable(false)]),
            )
        } else {
            fixed
        };
        match fixed {
            Ok(key) => {
                made.push(key);
                if self.support.copyable {
                    let copy = self.token.copy(key, &[]);
                    if let Ok(c) = copy {
                        made.push(c);
                        limits.push(
                            "this token copies CKA_COPYABLE-false keys: a user-PIN holder can copy mkclone's \
                             keys (a copy keeps every attribute, since none can be changed)"
                                .into(),
                        );
                    }
                }
                let changed = self
                    .token
                    .update(key, &[Attribute::Label(b"mkclone/probe".to_vec())]);
                if !refused(&changed) {
                    limits.push(
                        "this token lets CKA_MODIFIABLE-false objects be changed: mkclone checks every object's \
                         attributes at open and before each use, and refuses one that changed"
                            .into(),
                    );
                }
            }
            Err(e) => limits.push(format!(
                "mkclone could not check whether this token enforces CKA_MODIFIABLE ({})",
                e.describe()
            )),
        }

        // CKA_TRUSTED can be set by the security officer only.
        let trusted = self
            .token
            .generate_key(&Mechanism::Des3KeyGen, &des3(&[Attribute::Trusted(true)]));
        if let Ok(key) = trusted {
            made.push(key);
            limits.push(
                "this token lets the user mark a key CKA_TRUSTED: a user-PIN holder can wrap the master keys \
                 out with a key of their own"
                    .into(),
            );
        }

        // CKA_WRAP_WITH_TRUSTED and CKA_UNWRAP_TEMPLATE, with an AES key-wrap key.
        let (wrap, unwrap) = self.probe_wrapping(&mut made);
        for (check, what, consequence) in [
            (
                wrap,
                "CKA_WRAP_WITH_TRUSTED",
                "a user-PIN holder can wrap the master keys out with a key of their own",
            ),
            (
                unwrap,
                "CKA_UNWRAP_TEMPLATE",
                "a user-PIN holder can unwrap a share key with the CSR key as a key they can read",
            ),
        ] {
            match check {
                Check::Enforced => {}
                Check::NotEnforced => {
                    limits.push(format!("this token does not enforce {what}: {consequence}"))
                }
                Check::Unchecked(why) => limits.push(format!(
                    "mkclone could not check whether this token enforces {what} ({why})"
                )),
            }
        }
        for h in made {
            // Session objects: they go with the session anyway.
            let _ = self.token.destroy(h);
        }
        for limit in &limits {
            warn!("pkcs11: token {:?}: {limit}", self.label);
        }
        let softhsm = self
            .pkcs11
            .get_token_info(self.slot)
            .map(|i| i.manufacturer_id().trim() == "SoftHSM project")
            .unwrap_or(false);
        let inherent = INHERENT.iter().copied().chain(softhsm.then_some(SOFTHSM));
        for limit in inherent.clone() {
            info!("pkcs11: token {:?}: {limit}", self.label);
        }
        limits.extend(inherent.map(String::from));
        self.limits = limits;
        Ok(())
    }

    /// Check `CKA_WRAP_WITH_TRUSTED` and `CKA_UNWRAP_TEMPLATE` (sets `support`), keeping
    /// what was made in `made`.
    fn probe_wrapping(&mut self, made: &mut Vec<ObjectHandle>) -> (Check, Check) {
        for mechanism in [MechanismType::AES_KEY_GEN, MechanismType::AES_KEY_WRAP] {
            if self
                .pkcs11
                .get_mechanism_info(self.slot, mechanism)
                .is_err()
            {
                let why =
                    || Check::Unchecked(format!("the check needs {mechanism}, which it lacks"));
                return (why(), why());
            }
        }
        let base = [Attribute::Token(false), Attribute::ValueLen(32.into())];
        let mut wrapping = base.to_vec();
        wrapping.extend([Attribute::Wrap(true), Attribute::Unwrap(true)]);
        let raw = std::sync::Arc::clone(&self.raw);
        let key = self.token.call("C_GenerateKey", false, |s| {
            raw.generate_key(
                s,
                cryptoki_sys::CKM_AES_KEY_GEN,
                &wrapping,
                &[Attribute::Sensitive(true)],
            )
        });
        let (wrapper, template_kept) = match key {
            Ok(k) => (Ok(k), true),
            Err(_) => {
                self.support.unwrap_template = false;
                let plain = self.token.generate_key(&Mechanism::AesKeyGen, &wrapping);
                (plain, false)
            }
        };
        let Ok(wrapper) = wrapper else {
            let why = || Check::Unchecked("the token did not make an AES key".into());
            return (why(), why());
        };
        made.push(wrapper);
        let des3 = |wwt: bool| {
            [
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::WrapWithTrusted(wwt),
            ]
        };
        let (Ok(plain), Ok(guarded)) = (
            self.token
                .generate_key(&Mechanism::Des3KeyGen, &des3(false)),
            self.token.generate_key(&Mechanism::Des3KeyGen, &des3(true)),
        ) else {
            let why = || Check::Unchecked("the token did not make the test keys".into());
            return (why(), why());
        };
        made.extend([plain, guarded]);
        let Ok(blob) = self.token.wrap(&Mechanism::AesKeyWrap, wrapper, plain) else {
            let why = || Check::Unchecked("its AES key wrap refused an ordinary key".into());
            return (why(), why());
        };
        let wrap = match self.token.wrap(&Mechanism::AesKeyWrap, wrapper, guarded) {
            Ok(_) => Check::NotEnforced,
            Err(_) => Check::Enforced,
        };
        if !template_kept {
            return (
                wrap,
                Check::Unchecked("it does not accept CKA_UNWRAP_TEMPLATE".into()),
            );
        }
        let unwrap_as = |sensitive: bool| {
            [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::DES3),
                Attribute::Token(false),
                Attribute::Sensitive(sensitive),
            ]
        };
        let loose = self
            .token
            .unwrap(&Mechanism::AesKeyWrap, wrapper, &blob, &unwrap_as(false));
        let allowed = self
            .token
            .unwrap(&Mechanism::AesKeyWrap, wrapper, &blob, &unwrap_as(true));
        let unwrap = match (loose, allowed) {
            (Err(_), Ok(k)) => {
                made.push(k);
                Check::Enforced
            }
            (Ok(k), other) => {
                made.push(k);
                made.extend(other.ok());
                Check::NotEnforced
            }
            (Err(_), Err(e)) => Check::Unchecked(format!(
                "it refused an unwrap the template allows: {}",
                e.describe()
            )),
        };
        if !matches!(unwrap, Check::Enforced) {
            // Keys made with a template the token ignores protect nothing: say so, and
            // make the CSR key without one rather than with one that reads as a promise.
            self.support.unwrap_template = false;
        }
        (wrap, unwrap)
    }
}
