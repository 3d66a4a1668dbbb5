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
use crate::module::token_info;
use crate::session::CallResult;

/// What every PKCS#11 token leaves to a holder of its PINs, whatever mkclone does.
const INHERENT: [&str; 4] = [
    "a holder of both the user PIN and the security officer's PIN can export the master keys, as mkclone's \
     share export does: the SO marks a wrapping key of theirs CKA_TRUSTED",
    "a user-PIN holder can use each key for its one purpose: sign with the retained SA and CSS keys, unwrap \
     share keys with the CSR key; and can destroy mkclone's objects (mkclone then reports the damage)",
    "a user-PIN holder can put objects in place of mkclone's made exactly as mkclone makes them, which mkclone \
     cannot tell from its own: a master key whose value they know, with its records, becomes a key of their own \
     in a register, and a clone from that source spreads it to the targets. Pin the source's master-key \
     patterns in the configuration (source_patterns, read out from the source before the ceremony), so that \
     a ceremony refuses a source key that changed, and compare each target's patterns with them after",
    "a user-PIN holder on a target can open every share for it that they can read, through the CSR key as \
     mkclone's INSTALL does (PKCS#11 cannot tell mkclone's session from theirs; the unwrapped key is a session \
     key, sensitive and decrypt-only, but it decrypts): the shares a target holds between installs (kept \
     sealed in the token, but readable with the PIN) and any share file for it; once they are m, they rebuild \
     the key. Keep share files as secret as the PIN",
];

/// SoftHSM's own limit (its token info's manufacturer).
const SOFTHSM: &str = "SoftHSM is software: its attribute checks bind only callers of its PKCS#11 API; \
     whoever can read its token directory and knows the user PIN can decrypt every object offline";

/// The outcome of one check.
enum Check {
    Enforced,
    NotEnforced,
    /// The token does not know the attribute at all (a PKCS#11 2.20 token).
    Unknown,
    Unchecked(String),
}

/// Test seam: the labels of the tokens a test made behave otherwise.
#[cfg(feature = "test-seams")]
pub(super) struct SeamTokens(std::sync::Mutex<Vec<String>>);

#[cfg(feature = "test-seams")]
impl SeamTokens {
    pub(super) const fn new() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }
    pub(super) fn add(&self, token: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(token.to_string());
    }
    pub(super) fn has(&self, token: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t == token)
    }
}

/// Test seam: tokens whose objects mkclone makes `CKA_MODIFIABLE` true.
#[cfg(feature = "test-seams")]
static MODIFIABLE_TOKENS: SeamTokens = SeamTokens::new();

/// Test seam: from now on, mkclone makes the objects of the token labelled `token`
/// `CKA_MODIFIABLE` true (and expects them so), so that a test can change an attribute
/// SoftHSM would otherwise refuse to change, and see the next open name it.
#[cfg(feature = "test-seams")]
pub fn leave_objects_modifiable(token: &str) {
    MODIFIABLE_TOKENS.add(token);
}

/// The unwrap check's outcome where mkclone cannot set `CKA_UNWRAP_TEMPLATE`: through a
/// proxy's instance of its own (`proxy`; raw.rs: it knows none of mkclone's sessions), or on a
/// token that does not know the attribute.
fn template_out_check(proxy: bool) -> Check {
    if proxy {
        Check::Unchecked(
            "this module gives mkclone's own calls an instance of their own (a proxy, such as \
             p11-kit's), through which mkclone cannot set it; open the token through its own \
             module to have it"
                .into(),
        )
    } else {
        Check::Unknown
    }
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
            self.support.modifiable = MODIFIABLE_TOKENS.has(&self.label);
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
                 and the coefficient seed out with a key of their own"
                    .into(),
            );
        }

        // CKA_WRAP_WITH_TRUSTED and CKA_UNWRAP_TEMPLATE, with an AES key-wrap key.
        let (wrap, unwrap) = self.probe_wrapping(&mut made);
        for (check, what, consequence) in [
            (
                wrap,
                "CKA_WRAP_WITH_TRUSTED",
                "a user-PIN holder can wrap the master keys and the coefficient seed out with a key of their own",
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
                Check::Unknown => limits.push(format!(
                    "this token does not know {what}, so mkclone's templates leave it out: \
                     {consequence}"
                )),
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
        let softhsm = token_info(&self.pkcs11, &self.raw, &self.module, self.slot)
            .map(|i| i.manufacturer == "SoftHSM project")
            .unwrap_or(false);
        let inherent = INHERENT.iter().copied().chain(softhsm.then_some(SOFTHSM));
        for limit in inherent.clone() {
            info!("pkcs11: token {:?}: {limit}", self.label);
        }
        limits.extend(inherent.map(String::from));
        self.limits = limits;
        Ok(())
    }

    /// Whether the token takes `CKA_UNWRAP_TEMPLATE` on a key it generates (a session
    /// triple-DES key, made through the module's own function list: raw.rs); `false` where it
    /// does not know the attribute.
    fn unwrap_template_known(&mut self, made: &mut Vec<ObjectHandle>) -> bool {
        let raw = std::sync::Arc::clone(&self.raw);
        let key = self.token.call("C_GenerateKey", false, |s| {
            raw.generate_key(
                s,
                cryptoki_sys::CKM_DES3_KEY_GEN,
                &[Attribute::Token(false), Attribute::Unwrap(true)],
                &[Attribute::Sensitive(true)],
            )
        });
        match key {
            Ok(k) => {
                made.push(k);
                true
            }
            Err(_) => !type_unknown(&key),
        }
    }

    /// Check `CKA_WRAP_WITH_TRUSTED` and `CKA_UNWRAP_TEMPLATE` (sets `support`), keeping
    /// what was made in `made`.
    fn probe_wrapping(&mut self, made: &mut Vec<ObjectHandle>) -> (Check, Check) {
        // Whether the token knows the two attributes at all (opencryptoki 3.8.1 knows
        // neither): then the templates leave them out, and the limit is said.
        let known = self.token.generate_key(
            &Mechanism::Des3KeyGen,
            &[
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::WrapWithTrusted(true),
            ],
        );
        match known {
            Ok(key) => made.push(key),
            Err(_) if type_unknown(&known) => self.support.wrap_with_trusted = false,
            Err(_) => {}
        }
        // Where the template cannot be set at all: through a proxy's instance (true) or
        // because the token does not know it (false).
        let template_out = if self.raw.own_instance() {
            Some(true)
        } else if !self.unwrap_template_known(made) {
            Some(false)
        } else {
            None
        };
        if template_out.is_some() {
            self.support.unwrap_template = false;
        }
        for mechanism in [MechanismType::AES_KEY_GEN, MechanismType::AES_KEY_WRAP] {
            if self
                .pkcs11
                .get_mechanism_info(self.slot, mechanism)
                .is_err()
            {
                let why =
                    || Check::Unchecked(format!("the check needs {mechanism}, which it lacks"));
                let wrap = if self.support.wrap_with_trusted {
                    why()
                } else {
                    Check::Unknown
                };
                let unwrap = template_out.map_or_else(why, template_out_check);
                return (wrap, unwrap);
            }
        }
        if !self.support.wrap_with_trusted {
            // Nothing to try: every key the token wraps, it wraps for anyone.
            let unwrap = template_out.map_or_else(
                || Check::Unchecked("it knows no CKA_WRAP_WITH_TRUSTED to try it with".into()),
                template_out_check,
            );
            return (Check::Unknown, unwrap);
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
            let unwrap = template_out.map_or_else(
                || Check::Unchecked("it does not accept CKA_UNWRAP_TEMPLATE".into()),
                template_out_check,
            );
            return (wrap, unwrap);
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
