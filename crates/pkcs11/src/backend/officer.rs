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

use cryptoki::object::{Attribute, ObjectHandle};
use log::{debug, info};
use mkclone_backend::{BackendError, Operation, Result};
use zeroize::Zeroizing;

use super::Pkcs11Backend;
use super::login::{self, Who};
use crate::config::{PinSource, resolve_pin};
use crate::templates::Made;

/// The label of the export key pair (session objects).
pub(crate) const EXPORT_LABEL: &str = "mkclone/export";

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
        login::log_in(
            &mut self.token,
            &self.pkcs11,
            self.slot,
            Who::SecurityOfficer,
            so_pin,
        )
        .map_err(|f| f.in_operation(op, self))?;
        let label = || Attribute::Label(EXPORT_LABEL.as_bytes().to_vec());
        let mut public = Made::ExportPublic.attributes(&self.support);
        public.extend([
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            label(),
        ]);
        let mut private = Made::ExportPrivate.attributes(&self.support);
        private.push(label());
        self.generate_rsa_pair(op, &public, &private)
    }

    /// Log whoever is logged in out and the user in with `pin`; find the register map
    /// again (handles of private objects do not survive a logout).
    fn log_in_again(&mut self, op: Operation, pin: &str) -> Result<()> {
        login::log_out(&mut self.token).map_err(|e| self.device(op, e))?;
        login::log_in(&mut self.token, &self.pkcs11, self.slot, Who::User, pin)
            .map_err(|f| f.in_operation(op, self))?;
        self.map_handle = self.find_map_handle(op)?;
        Ok(())
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
                Some(prompt) => prompt(),
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
