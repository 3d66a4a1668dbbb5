//! The public-key registry: hashes and keys registered by name (CSNDPKH, CSNDPKR), and
//! the SA key and certificates it vouches for.

use mkclone_backend::rules::rerun;
use mkclone_backend::{
    Applied, BackendError, Certificate, KeyLabel, Operation, PublicKeyHash, Registration, Result,
};
use mkclone_formats::pka::{CertificateSection, RsaPublicKey, registration_hash};

use super::{Pkcs11Backend, REG_APPLICATION, REGKEY_APPLICATION};
use crate::objects::{
    REGISTRATION_PREFIX, RegisteredKeyObject, RegistrationObject, registered_key_label,
    registration_label,
};

impl Pkcs11Backend {
    pub(super) fn register_public_key_hash_internal(
        &mut self,
        name: &KeyLabel,
        hash: &PublicKeyHash,
        clone: bool,
    ) -> Result<Applied<()>> {
        let (op, asked) = (Operation::RegisterPublicKeyHash, (hash, clone));
        match self.registration(op, name)? {
            Some((r, _)) => rerun::registered_hash(name, asked, (&r.hash, r.clone)),
            None => {
                self.create_data(
                    op,
                    REG_APPLICATION,
                    &registration_label(name.as_str()),
                    &RegistrationObject {
                        hash: hash.clone(),
                        clone,
                    },
                )?;
                Ok(Applied::Done(()))
            }
        }
    }

    pub(super) fn register_public_key_internal(
        &mut self,
        name: &KeyLabel,
        certificate: &Certificate,
        clone: bool,
    ) -> Result<Applied<()>> {
        let op = Operation::RegisterPublicKey;
        let (reg, key) = self
            .registration(op, name)?
            .ok_or_else(|| BackendError::HashNotRegistered { name: name.clone() })?;
        if let Some(key) = key {
            return rerun::registered_key(name, (certificate, clone), (Some(&key), reg.clone));
        }
        let section = CertificateSection::decode(certificate).map_err(|e| {
            BackendError::CertificateRejected {
                reason: format!("it is not a certificate section ({e})"),
            }
        })?;
        // The key must be the one whose hash was registered before it (dual control).
        match registration_hash(&section) {
            Ok(h) if h == reg.hash => {}
            _ => return Err(BackendError::KeyDoesNotMatchHash { name: name.clone() }),
        }
        if reg.clone != clone {
            return Err(BackendError::CloneMarkMismatch { name: name.clone() });
        }
        // A registered key certifies itself: its self-signature must verify.
        let self_signed = section
            .signatures
            .iter()
            .any(|s| section.verify(&s.signer, &section.key).is_ok());
        if !self_signed {
            return Err(BackendError::CertificateRejected {
                reason: "its self-signature does not verify under the key it carries".into(),
            });
        }
        self.create_data(
            op,
            REGKEY_APPLICATION,
            &registered_key_label(name.as_str()),
            &RegisteredKeyObject {
                certificate: certificate.clone(),
            },
        )?;
        Ok(Applied::Done(()))
    }

    pub(super) fn unregister_public_key_internal(
        &mut self,
        name: &KeyLabel,
    ) -> Result<Applied<()>> {
        let op = Operation::UnregisterPublicKey;
        // The key goes before its hash: a crash in between leaves a hash without a key,
        // which is what a half-done registration looks like and a rerun finishes.
        let mut removed = false;
        for (application, label) in [
            (REGKEY_APPLICATION, registered_key_label(name.as_str())),
            (REG_APPLICATION, registration_label(name.as_str())),
        ] {
            let handles = self
                .find_data(application, &label)
                .map_err(|e| self.device(op, e))?;
            for h in handles {
                self.token.destroy(h).map_err(|e| self.device(op, e))?;
                removed = true;
            }
        }
        Ok(if removed {
            Applied::Done(())
        } else {
            Applied::AlreadyDone(())
        })
    }

    pub(super) fn list_registrations_internal(&mut self) -> Result<Vec<Registration>> {
        let op = Operation::ListRegistrations;
        let names = self.listed(op, REG_APPLICATION, REGISTRATION_PREFIX, "registration")?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some((reg, key)) = self.registration(op, &name)? {
                out.push(Registration {
                    name,
                    hash: reg.hash,
                    clone: reg.clone,
                    key,
                });
            }
        }
        Ok(out)
    }

    fn registration(
        &mut self,
        op: Operation,
        name: &KeyLabel,
    ) -> Result<Option<(RegistrationObject, Option<Certificate>)>> {
        let Some((_, reg)) = self.read::<RegistrationObject>(
            op,
            REG_APPLICATION,
            &registration_label(name.as_str()),
        )?
        else {
            return Ok(None);
        };
        let key = self
            .read::<RegisteredKeyObject>(
                op,
                REGKEY_APPLICATION,
                &registered_key_label(name.as_str()),
            )?
            .map(|(_, k)| k.certificate);
        Ok(Some((reg, key)))
    }

    /// The registered SA key under `sa_name`, usable for cloning.
    pub(super) fn sa_key(&mut self, op: Operation, sa_name: &KeyLabel) -> Result<RsaPublicKey> {
        let (reg, key) =
            self.registration(op, sa_name)?
                .ok_or_else(|| BackendError::HashNotRegistered {
                    name: sa_name.clone(),
                })?;
        let cert = key.ok_or_else(|| BackendError::KeyNotRegistered {
            name: sa_name.clone(),
        })?;
        if !reg.clone {
            return Err(BackendError::NotMarkedForCloning {
                name: sa_name.clone(),
            });
        }
        let section = CertificateSection::decode(&cert)
            .map_err(|e| self.corrupt(op, format!("the key registered as {sa_name}: {e}")))?;
        Ok(section.key)
    }

    /// A certificate issued by the registered SA key.
    pub(super) fn certified(
        cert: &Certificate,
        sa_name: &KeyLabel,
        sa: &RsaPublicKey,
    ) -> Result<CertificateSection> {
        let section =
            CertificateSection::decode(cert).map_err(|e| BackendError::CertificateRejected {
                reason: format!("it is not a certificate section ({e})"),
            })?;
        section
            .verify(sa_name, sa)
            .map_err(|e| BackendError::CertificateRejected {
                reason: format!(
                    "it does not verify under the SA key registered as {sa_name} ({e})"
                ),
            })?;
        Ok(section)
    }
}
