//! The security officer's step: the one key the master keys may be wrapped with.
//!
//! Master-key registers are `CKA_WRAP_WITH_TRUSTED`: the token wraps them only with a key
//! marked `CKA_TRUSTED`, which only the token's security officer (SO) can mark. At the first
//! share export of a session (phase 3c, on the source), mkclone logs the user out, logs
//! the SO in (`so_pin`), has the token generate an RSA key pair as *session* objects — the
//! public half trusted and wrapping only, the private half decrypting only — logs the SO
//! out and the user in again. Session objects belong to mkclone's session: no other
//! process, whatever PIN it knows, can see or use them, and the token destroys them when
//! the session closes — when the command ends, or with the process if it crashes, so a
//! crash leaves nothing behind to find. Both halves are public objects (`CKA_PRIVATE`
//! false): the SO cannot make private ones, and the user's logout would destroy them.
//! (docs/ARCHITECTURE.md, "PKCS#11": why a session key and not a token key.)

use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use log::{debug, info, warn};
use mkclone_backend::{BackendError, Operation, Result};
use zeroize::Zeroizing;

use super::login::{self, Who};
use super::{PinPromptError, Pkcs11Backend};
use crate::config::{PinSource, resolve_pin};
use crate::error::Pkcs11Error;
use crate::module::token_info;
use crate::templates::Made;

/// The label of the export key pair (session objects).
pub(crate) const EXPORT_LABEL: &str = "mkclone/export";

/// Test seam: tokens that make the export key pair as token objects whatever mkclone asks
/// (a token that ignores `CKA_TOKEN` false), so that a test sees mkclone refuse the pair.
#[cfg(feature = "test-seams")]
static TOKEN_OBJECT_EXPORT_KEYS: super::probe::SeamTokens = super::probe::SeamTokens::new();

/// Test seam: from now on, the export key pair of the token labelled `token` is made as
/// token objects (as a token that ignored `CKA_TOKEN` false would make it).
#[cfg(feature = "test-seams")]
pub fn make_export_keys_token_objects(token: &str) {
    TOKEN_OBJECT_EXPORT_KEYS.add(token);
}

impl Pkcs11Backend {
    /// This session's export key pair, (wrapping half, decrypting half): made by the
    /// security officer on first use.
    pub(super) fn export_key(&mut self, op: Operation) -> Result<(ObjectHandle, ObjectHandle)> {
        if let Some(pair) = self.export_pair {
            return Ok(pair);
        }
        let so_pin = self.so_pin_value(op)?;
        let user_pin = self.user_pin.clone().ok_or_else(|| {
            self.credential(
                op,
                "the user PIN was not kept for the login after the SO's step",
            )
        })?;
        login::log_out(&mut self.token).map_err(|e| self.device(op, e))?;
        let made = self.make_export_key_as_officer(op, &so_pin);
        drop(so_pin);
        // The user logs in again whatever happened above.
        let back = self.log_in_again(op, &user_pin);
        let pair = made?;
        back?;
        // The pair lasts as long as the session: the user PIN, kept for this login only,
        // is not needed again (dropping it zeroizes it).
        self.user_pin = None;
        info!(
            "pkcs11: token {:?}: the security officer made this session's export key (a session object: \
             it goes when the session closes)",
            self.label
        );
        self.export_pair = Some(pair);
        Ok(pair)
    }

    fn make_export_key_as_officer(
        &mut self,
        op: Operation,
        so_pin: &str,
    ) -> Result<(ObjectHandle, ObjectHandle)> {
        self.log_in_as(op, Who::SecurityOfficer, so_pin)?;
        let label = || Attribute::Label(EXPORT_LABEL.as_bytes().to_vec());
        let mut public = Made::ExportPublic.attributes(&self.support);
        public.extend([
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            label(),
        ]);
        let mut private = Made::ExportPrivate.attributes(&self.support);
        private.push(label());
        #[cfg(feature = "test-seams")]
        if TOKEN_OBJECT_EXPORT_KEYS.has(&self.label) {
            for template in [&mut public, &mut private] {
                template.push(Attribute::Token(true));
                template.retain(|a| *a != Attribute::Token(false));
            }
        }
        let pair = self.generate_rsa_pair(op, &public, &private)?;
        // Read back before any use: a token that made it otherwise than asked (a token
        // object every user-PIN holder could wrap with, a readable private half...) has
        // the pair destroyed, and nothing is exported through it.
        for (h, made) in [(pair.0, Made::ExportPublic), (pair.1, Made::ExportPrivate)] {
            if let Err(e) = self.check_object(h, EXPORT_LABEL, made) {
                for h in [pair.0, pair.1] {
                    if let Err(d) = self.token.destroy(h) {
                        warn!(
                            "pkcs11: token {:?}: the export key made otherwise than asked stays: {}",
                            self.label,
                            d.describe()
                        );
                    }
                }
                return Err(self.check_error(op, e));
            }
        }
        Ok(pair)
    }

    /// Log whoever is logged in out and the user in with `pin`; find the register map
    /// again (handles of private objects do not survive a logout).
    fn log_in_again(&mut self, op: Operation, pin: &str) -> Result<()> {
        login::log_out(&mut self.token).map_err(|e| self.device(op, e))?;
        self.log_in_as(op, Who::User, pin)?;
        self.map_handle = self.find_map_handle(op)?;
        Ok(())
    }

    /// Log `who` in with `pin` on the open session (the token's flags name a locked or
    /// low PIN in the error).
    fn log_in_as(&mut self, op: Operation, who: Who, pin: &str) -> Result<()> {
        let flags = || {
            token_info(&self.pkcs11, &self.raw, &self.module, self.slot)
                .ok()
                .map(|i| i.flags)
        };
        login::log_in(&mut self.token, &flags, who, pin).map_err(|f| f.in_operation(op, self))
    }

    /// Destroy this session's export key (closing the session would as well).
    pub(super) fn destroy_export_key(&mut self) {
        if let Some((public, private)) = self.export_pair.take() {
            for h in [public, private] {
                if let Err(e) = self.token.destroy(h) {
                    debug!(
                        "pkcs11: the export key stays until the session closes: {}",
                        e.describe()
                    );
                }
            }
        }
    }

    /// The security officer's PIN, from `so_pin`.
    fn so_pin_value(&mut self, op: Operation) -> Result<Zeroizing<String>> {
        let answer = match self.so_pin.clone() {
            None => Err(
                "exporting the master key to split it needs the token's security officer, who makes the \
                 only key the master keys can be wrapped with: set so_pin = { env = \"VAR\" }, \
                 { file = \"path\" } or \"prompt\" in this node's configuration (it is read for this step only)"
                    .to_string(),
            ),
            Some(PinSource::Prompt) => match self.so_pin_prompt.as_mut() {
                // Asked outside the export's device call: a Ctrl-Z meanwhile need not wait
                // for the person to answer (`mkclone_backend::device_calls`).
                Some(prompt) => match mkclone_backend::device_calls::outside_calls(prompt) {
                    Ok(pin) => Ok(pin),
                    // Cancelled by a signal: no PIN, nothing sent, and not a credential
                    // problem (the ceremony stops as at a safe point).
                    Err(PinPromptError::Interrupted { signal }) => {
                        return Err(BackendError::Interrupted {
                            operation: op,
                            signal,
                        });
                    }
                    Err(PinPromptError::Failed(why)) => Err(why),
                },
                None => Err("so_pin is \"prompt\", but nothing here can prompt for it (a library caller sets \
                     Pkcs11Backend::set_so_pin_prompt)"
                    .to_string()),
            },
            Some(source) => {
                resolve_pin(&source).map_err(|e| format!("the security officer's PIN: {e}"))
            }
        };
        answer.map_err(|detail| self.credential(op, &detail))
    }

    fn credential(&self, operation: Operation, detail: &str) -> BackendError {
        BackendError::Credential {
            operation,
            detail: format!("token {:?}: {detail}", self.label),
        }
    }
}

impl Pkcs11Backend {
    /// Refuse a token that holds a key its security officer marked trusted (a token
    /// object: mkclone's export key is a session object of its own session, and the
    /// recovery at open has removed any token object under its label). Every
    /// `CKA_WRAP_WITH_TRUSTED` key — the master keys, the seed — can be wrapped out with it
    /// by anyone who knows the user PIN.
    pub(super) fn refuse_trusted_keys(&mut self) -> std::result::Result<(), Pkcs11Error> {
        for class in [ObjectClass::PUBLIC_KEY, ObjectClass::SECRET_KEY] {
            let found = self
                .find_objects(class, [Attribute::Trusted(true)])
                .map_err(|e| self.open_error(e))?;
            if let Some(&h) = found.first() {
                let key = self.token.label(h).map_err(|e| self.open_error(e))?;
                return Err(Pkcs11Error::TrustedKey {
                    label: self.label.clone(),
                    class: class.to_string(),
                    key,
                });
            }
        }
        Ok(())
    }
}
