//! Retained RSA keys: generation, listing, reading, deletion, and certifying a public key
//! with one.

use std::collections::BTreeSet;
use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki_sys::CKM_RSA_PKCS_KEY_PAIR_GEN;
use log::{Level, debug, warn};
use mkclone_backend::rules::rerun;
use mkclone_backend::{
    Applied, BackendError, Certificate, DomainError, GenerateRequest, KeyLabel, KeyUsage,
    Operation, PublicKeyToken, Result, RetainedKeyInfo, SubjectInfo,
};
use mkclone_formats::pka::{
    CertInfo, CertificateBuilder, CertificateSection, PublicKeyTokenView, RsaPublicKey,
};

use super::check::retained_private;
use super::{KEY_APPLICATION, Pkcs11Backend, attribute_bytes, strip_zeros};
use crate::error::Pkcs11Error;
use crate::objects::{KEY_COMPANION_PREFIX, KeyCompanion, ObjId, Stored, key_companion_label};
use crate::session::CallResult;
use crate::templates::{self, Made};

impl Pkcs11Backend {
    pub(super) fn generate_retained_key_internal(
        &mut self,
        request: &GenerateRequest,
    ) -> Result<Applied<PublicKeyToken>> {
        let op = Operation::GenerateRetainedKey;
        let label = &request.label;
        let usage = request.role.usage();
        if let Some(existing) = self.companion(op, label)? {
            // A rerun: the key of this deterministic label exists. It is ours if it has
            // the usage, CLONE mark and size we asked for.
            rerun::retained_key(request, &existing.info(label.clone()))?;
            return Ok(Applied::AlreadyDone(existing.token));
        }
        // Halves of a generation that failed earlier (no companion; those a crash left
        // were removed at open): remove them. A key with this label that mkclone did not
        // make is left alone, and refused.
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let handles = self
                .find_objects(
                    class,
                    [Attribute::Label(label.as_str().as_bytes().to_vec())],
                )
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
        let csr = usage == KeyUsage::KeyManagementOnly;
        let named = |mut template: Vec<Attribute>| {
            template.extend([
                Attribute::Label(label.as_str().as_bytes().to_vec()),
                Attribute::Id(KeyCompanion::key_id(id)),
            ]);
            template
        };
        let mut public = named(Made::PublicKey.attributes(&self.support));
        public.extend([
            Attribute::ModulusBits(u64::from(request.bits.bits()).into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ]);
        // A signing key is made as it stays. The CSR key signs its own certificate as a
        // session key first, and becomes a token key that only unwraps share keys after.
        let (public_handle, private_handle) = if csr {
            let private = named(templates::csr_generation(&self.support));
            match Made::CsrKey.unwrap_template(&self.support) {
                Some(unwrap) => {
                    let raw = Arc::clone(&self.raw);
                    self.token
                        .call("C_GenerateKeyPair", true, |s| {
                            raw.generate_key_pair(
                                s,
                                CKM_RSA_PKCS_KEY_PAIR_GEN,
                                &public,
                                &private,
                                &unwrap,
                            )
                        })
                        .map_err(|e| self.device(op, e))?
                }
                None => self.generate_rsa_pair(op, &public, &private)?,
            }
        } else {
            let private = named(Made::SigningKey.attributes(&self.support));
            self.generate_rsa_pair(op, &public, &private)?
        };
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
                .copy(private_handle, &templates::csr_copy(&self.support))
                .map_err(|e| self.device(op, e))?;
            let stays = "the CSR key's session original stays until the session ends";
            self.destroy_or_leave(op, private_handle, Level::Debug, stays)?;
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

    pub(super) fn retained_public_key_internal(
        &mut self,
        label: &KeyLabel,
    ) -> Result<Option<PublicKeyToken>> {
        Ok(self
            .companion(Operation::RetainedPublicKey, label)?
            .map(|c| c.token))
    }

    pub(super) fn list_retained_keys_internal(&mut self) -> Result<Vec<RetainedKeyInfo>> {
        let op = Operation::ListRetainedKeys;
        let mut out = Vec::new();
        for name in self.listed(
            op,
            KEY_APPLICATION,
            KEY_COMPANION_PREFIX,
            "retained-key companion",
        )? {
            if let Some(companion) = self.companion(op, &name)? {
                out.push(companion.info(name));
            }
        }
        Ok(out)
    }

    pub(super) fn delete_retained_key_internal(&mut self, label: &KeyLabel) -> Result<Applied<()>> {
        let op = Operation::DeleteRetainedKey;
        let Some((handle, companion)) =
            self.read::<KeyCompanion>(op, KEY_APPLICATION, &key_companion_label(label.as_str()))?
        else {
            return Ok(Applied::AlreadyDone(()));
        };
        // The halves go first, the private one (and any copy of a CSR key: copies keep its
        // CKA_ID) before the public one, and the companion last: it is the record that the
        // key is mkclone's, so while any half is left it stays, the key stays listed, and a
        // rerun after a crash finds it and finishes. (Destroying the companion first left a
        // crash in between with a usable private key and a rerun that answered "already
        // done".) A half that cannot be destroyed is an error, not a warning: the key would
        // still sign or unwrap, so DELETE is not done.
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let handles = self
                .find_objects(class, [Attribute::Id(KeyCompanion::key_id(companion.id))])
                .map_err(|e| self.device(op, e))?;
            for h in handles {
                self.token.destroy(h).map_err(|e| self.device(op, e))?;
            }
        }
        self.token.destroy(handle).map_err(|e| self.device(op, e))?;
        Ok(Applied::Done(()))
    }

    /// Recovery at open: destroy every private or public token key whose `CKA_ID` has the
    /// shape of a retained key's (`KeyCompanion::is_key_id`) and that no companion names.
    /// Such a half is the remains of a generation interrupted before its companion (the
    /// commit), or of a deletion an older mkclone interrupted after the companion (it
    /// destroyed that first), or a key made in mkclone's namespace outside it; none is a
    /// key mkclone counts as its own, and the ones left by a deletion still sign or unwrap.
    /// Safe because it runs under the token's lock, before any operation: no generation or
    /// deletion is in progress in this process or another (generation makes the halves and
    /// then the companion within one operation; deletion now destroys the companion last).
    /// The companions were checked by `check_all` just before; one that does not decode
    /// fails the open here too, before anything is destroyed. A half that cannot be
    /// destroyed is logged and left, and the open goes on. Returns how many it removed.
    pub(super) fn remove_uncommitted_halves(&mut self) -> Result<usize, Pkcs11Error> {
        let mut named = BTreeSet::new();
        for h in self
            .find_application(KEY_APPLICATION)
            .map_err(|e| self.open_error(e))?
        {
            let label = self.token.label(h).map_err(|e| self.open_error(e))?;
            let value = self.token.value(h).map_err(|e| self.open_error(e))?;
            let companion = KeyCompanion::decode(&value).map_err(|e| Pkcs11Error::Corrupt {
                label: self.label.clone(),
                detail: format!("{label}: {e}"),
            })?;
            named.insert(KeyCompanion::key_id(companion.id));
        }
        let mut removed = 0usize;
        for (class, half) in [
            (ObjectClass::PRIVATE_KEY, "private"),
            (ObjectClass::PUBLIC_KEY, "public"),
        ] {
            for h in self
                .find_objects(class, [])
                .map_err(|e| self.open_error(e))?
            {
                let attrs = self
                    .token
                    .attributes(h, &[AttributeType::Id, AttributeType::Label])
                    .map_err(|e| self.open_error(e))?;
                let id = attribute_bytes(attrs.clone(), AttributeType::Id).unwrap_or_default();
                if !KeyCompanion::is_key_id(&id) || named.contains(&id) {
                    continue;
                }
                let label = attribute_bytes(attrs, AttributeType::Label).unwrap_or_default();
                warn!(
                    "pkcs11: removing the {half} key {:?} (CKA_ID {}): no retained-key companion \
                     names it (the remains of an interrupted generation or deletion)",
                    String::from_utf8_lossy(&label),
                    hex::encode(&id),
                );
                // One that cannot be destroyed (CKA_DESTROYABLE false, which a user-PIN
                // holder can set on a key made in this id space) is left and said: failing
                // the open for it would lock every later open out of the token, and a key
                // no companion names is not one mkclone counts as its own.
                match self.token.destroy(h) {
                    Ok(()) => removed += 1,
                    // The test seam's crash ends the work here as a crash would.
                    Err(e) if e.is_stop() => return Err(self.open_error(e)),
                    Err(e) => warn!(
                        "pkcs11: the {half} key {:?} (CKA_ID {}) could not be removed ({}: {}); \
                         it is left on the token, where it is not mkclone's: a holder of the \
                         user PIN may still use it. Remove it with the token's own tools",
                        String::from_utf8_lossy(&label),
                        hex::encode(&id),
                        e.function(),
                        e.describe(),
                    ),
                }
            }
        }
        Ok(removed)
    }

    fn companion(&mut self, op: Operation, label: &KeyLabel) -> Result<Option<KeyCompanion>> {
        Ok(self
            .read::<KeyCompanion>(op, KEY_APPLICATION, &key_companion_label(label.as_str()))?
            .map(|(_, c)| c))
    }

    /// A retained key's private half, checked against the template of its `usage`.
    fn private_key(
        &mut self,
        op: Operation,
        label: &KeyLabel,
        id: ObjId,
        usage: KeyUsage,
    ) -> Result<ObjectHandle> {
        let what = format!("the private key of retained key {label}");
        let found = self.find_key(
            op,
            ObjectClass::PRIVATE_KEY,
            vec![Attribute::Id(KeyCompanion::key_id(id))],
            retained_private(usage),
            &what,
        )?;
        self.required(op, found, &what)
    }

    /// A retained key with `usage` and the CLONE mark (what OBTAIN and INSTALL need).
    pub(super) fn usable(
        &mut self,
        op: Operation,
        label: &KeyLabel,
        usage: KeyUsage,
        needed: &'static str,
    ) -> Result<(KeyCompanion, ObjectHandle)> {
        let companion = self.companion_with(op, label, usage, needed, true)?;
        let handle = self.private_key(op, label, companion.id, usage)?;
        Ok((companion, handle))
    }

    /// The companion of retained key `label`, which must have `usage` and, where
    /// `clone_needed`, the CLONE mark; `needed` names the use in the refusal.
    fn companion_with(
        &mut self,
        op: Operation,
        label: &KeyLabel,
        usage: KeyUsage,
        needed: &'static str,
        clone_needed: bool,
    ) -> Result<KeyCompanion> {
        let companion =
            self.companion(op, label)?
                .ok_or_else(|| BackendError::RetainedKeyNotFound {
                    label: label.clone(),
                })?;
        let found = companion.role.usage();
        if found != usage || (clone_needed && !companion.clone) {
            return Err(BackendError::WrongKeyUsage {
                label: label.clone(),
                needed,
                usage: if found != usage {
                    found.keyword()
                } else {
                    "non-CLONE"
                },
            });
        }
        Ok(companion)
    }

    pub(super) fn certify_public_key_internal(
        &mut self,
        signer: &KeyLabel,
        subject: &PublicKeyToken,
        info: &SubjectInfo,
    ) -> Result<Certificate> {
        let (op, usage) = (Operation::CertifyPublicKey, KeyUsage::SignatureOnly);
        // Any signing key certifies: the CLONE mark is not needed.
        let companion = self.companion_with(op, signer, usage, "signing", false)?;
        let subject = PublicKeyTokenView::decode(subject).map_err(|e| {
            BackendError::Invalid(DomainError::Structure {
                what: "subject public-key token",
                reason: e.to_string(),
            })
        })?;
        let signer_view = PublicKeyTokenView::decode(&companion.token)
            .map_err(|e| self.corrupt(op, format!("the token of {signer}: {e}")))?;
        let handle = self.private_key(op, signer, companion.id, usage)?;
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

    /// Sign `bytes` (SHA-256, PKCS#1 v1.5) inside the token.
    fn sign(&mut self, key: ObjectHandle, bytes: &[u8]) -> CallResult<Vec<u8>> {
        self.token.sign_sha256_rsa(self.signing, key, bytes)
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
}
