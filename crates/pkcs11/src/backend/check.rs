//! mkclone's objects checked against their templates (`crate::templates`): every one at
//! open and in `status`, and each one again right before a step uses it (a key when it is
//! found, a record when it is read). An attribute that differs is an object changed
//! outside mkclone: a typed error naming the object and the attribute, never a use.

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use mkclone_backend::{BackendError, KeyUsage, Operation};

use super::{KEY_APPLICATION, Pkcs11Backend, REG_APPLICATION, REGKEY_APPLICATION};
use crate::error::{ObjectChange, Pkcs11Error};
use crate::objects::{APPLICATION, KeyCompanion, Managed, Stored};
use crate::session::CallError;
use crate::templates::{Drift, Made, checked_types, first_drift, unwrap_template_drift};

/// Why a check did not pass.
#[derive(Debug)]
pub(super) enum CheckError {
    /// A call failed.
    Call(CallError),
    /// An attribute differs from the template.
    Drift(Drift),
    /// mkclone's records do not decode.
    Damaged(String),
}

impl From<CallError> for CheckError {
    fn from(e: CallError) -> Self {
        Self::Call(e)
    }
}

/// The template `made` of a retained key's private half, by its role.
pub(super) fn retained_private(usage: KeyUsage) -> Made {
    if usage == KeyUsage::KeyManagementOnly {
        Made::CsrKey
    } else {
        Made::SigningKey
    }
}

impl Pkcs11Backend {
    /// Read `extra` and every attribute `made`'s template checks from `handle` (mkclone's
    /// object `label`) in one call, check them, and return what was read.
    pub(super) fn read_checked(
        &mut self,
        handle: ObjectHandle,
        label: &str,
        made: Made,
        extra: &[AttributeType],
    ) -> Result<Vec<Attribute>, CheckError> {
        let mut types = extra.to_vec();
        types.extend(checked_types(made, &self.support));
        let found = self.token.attributes(handle, &types)?;
        let mut expected = made.attributes(&self.support);
        expected.extend(made.implied());
        if let Some(drift) = first_drift(label, made, &expected, &found) {
            return Err(CheckError::Drift(drift));
        }
        if let Some(template) = made.unwrap_template(&self.support) {
            let raw = Arc::clone(&self.raw);
            let allowed: Vec<_> = template.iter().map(Attribute::attribute_type).collect();
            let read = self.token.call("C_GetAttributeValue", false, |s| {
                raw.unwrap_template(s, handle, &allowed)
            })?;
            if let Some(drift) = unwrap_template_drift(label, &template, read.as_ref()) {
                return Err(CheckError::Drift(drift));
            }
        }
        Ok(found)
    }

    /// Check `handle`, mkclone's object `label`, against `made`'s template.
    pub(super) fn check_object(
        &mut self,
        handle: ObjectHandle,
        label: &str,
        made: Made,
    ) -> Result<(), CheckError> {
        self.read_checked(handle, label, made, &[]).map(drop)
    }

    /// Check every object mkclone keeps on the token.
    pub(super) fn check_all(&mut self) -> Result<(), CheckError> {
        for application in [
            APPLICATION,
            KEY_APPLICATION,
            REG_APPLICATION,
            REGKEY_APPLICATION,
        ] {
            for h in self.find_application(application)? {
                let label = self.token.label(h)?;
                self.check_object(h, &label, Made::Data(application))?;
            }
        }
        for h in self.find_objects(ObjectClass::SECRET_KEY, [])? {
            let label = self.token.label(h)?;
            if let Some((kind, _)) = Managed::parse(&label) {
                self.check_object(h, &label, kind.made())?;
            }
        }
        // Retained key pairs, through their companions (halves without one are the
        // remains of an interrupted generation or deletion, which recovery removes next:
        // `remove_uncommitted_halves`).
        for h in self.find_application(KEY_APPLICATION)? {
            let label = self.token.label(h)?;
            let value = self.token.value(h)?;
            let companion = KeyCompanion::decode(&value)
                .map_err(|e| CheckError::Damaged(format!("{label}: {e}")))?;
            let key_id = KeyCompanion::key_id(companion.id);
            for (class, made) in [
                (
                    ObjectClass::PRIVATE_KEY,
                    retained_private(companion.role.usage()),
                ),
                (ObjectClass::PUBLIC_KEY, Made::PublicKey),
            ] {
                for k in self.find_objects(class, [Attribute::Id(key_id.clone())])? {
                    let key_label = self.token.label(k)?;
                    self.check_object(k, &key_label, made)?;
                }
            }
        }
        Ok(())
    }

    /// The error of `operation` for a check that did not pass.
    pub(super) fn check_error(&self, operation: Operation, error: CheckError) -> BackendError {
        match error {
            CheckError::Call(e) => self.device(operation, e),
            CheckError::Drift(d) => BackendError::ChangedOutsideMkclone {
                object: format!("token {:?}: {} ({})", self.label, d.object, d.made.what()),
                attribute: d.attribute,
                expected: d.expected,
                found: d.found,
                consequence: d.made.consequence().into(),
            },
            CheckError::Damaged(detail) => self.corrupt(operation, detail),
        }
    }

    /// The error of opening the token for a check that did not pass.
    pub(super) fn check_error_at_open(&self, error: CheckError) -> Pkcs11Error {
        match error {
            CheckError::Call(e) => self.open_error(e),
            CheckError::Drift(d) => Pkcs11Error::ChangedOutside {
                label: self.label.clone(),
                change: Box::new(ObjectChange {
                    object: format!("{} ({})", d.object, d.made.what()),
                    attribute: d.attribute,
                    expected: d.expected,
                    found: d.found,
                    consequence: d.made.consequence().into(),
                }),
            },
            CheckError::Damaged(detail) => Pkcs11Error::Corrupt {
                label: self.label.clone(),
                detail,
            },
        }
    }
}
