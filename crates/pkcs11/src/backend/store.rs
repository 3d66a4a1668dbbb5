//! The object store: finding, reading and creating the token objects mkclone keeps
//! (`crate::objects` describes them).

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use log::{Level, log};
use mkclone_backend::{KeyLabel, Operation, Result};

use super::Pkcs11Backend;
use crate::objects::{APPLICATION, Managed, ObjId, Stored};
use crate::session::CallResult;

impl Pkcs11Backend {
    /// The token objects of `class` that have `attributes`.
    pub(super) fn find_objects(
        &mut self,
        class: ObjectClass,
        attributes: impl IntoIterator<Item = Attribute>,
    ) -> CallResult<Vec<ObjectHandle>> {
        let mut template = vec![Attribute::Class(class), Attribute::Token(true)];
        template.extend(attributes);
        self.token.find(&template)
    }

    /// Every data object of `application` (one of mkclone's lists).
    pub(super) fn find_application(&mut self, application: &[u8]) -> CallResult<Vec<ObjectHandle>> {
        self.find_objects(
            ObjectClass::DATA,
            [Attribute::Application(application.to_vec())],
        )
    }

    /// How every key mkclone makes is kept: a token or a session object, private (used
    /// only after login), sensitive, and extractable only when `extractable` (a
    /// master-key register, which leaves the token only wrapped).
    pub(super) fn key_protection(token: bool, extractable: bool) -> [Attribute; 4] {
        [
            Attribute::Token(token),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(extractable),
        ]
    }

    /// A secret key's template up to its uses: its class and type, and how it is kept
    /// ([`Self::key_protection`]).
    pub(super) fn secret_key_template(
        key_type: KeyType,
        token: bool,
        extractable: bool,
    ) -> Vec<Attribute> {
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
        ];
        template.extend(Self::key_protection(token, extractable));
        template
    }

    /// Generate an RSA key pair with these templates.
    pub(super) fn generate_rsa_pair(
        &mut self,
        op: Operation,
        public: &[Attribute],
        private: &[Attribute],
    ) -> Result<(ObjectHandle, ObjectHandle)> {
        self.token
            .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, public, private)
            .map_err(|e| self.device(op, e))
    }

    /// The key label in the object label `text` after `prefix` (one of mkclone's lists
    /// names its objects so); another label is damage, `what` says of which list.
    pub(super) fn listed_name(
        &self,
        op: Operation,
        text: &str,
        prefix: &str,
        what: &str,
    ) -> Result<KeyLabel> {
        text.strip_prefix(prefix)
            .and_then(|n| KeyLabel::new(n).ok())
            .ok_or_else(|| self.corrupt(op, format!("{what} {text:?}")))
    }

    fn data_template(application: &[u8], label: &str) -> Vec<Attribute> {
        vec![
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Application(application.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    pub(super) fn find_data(
        &mut self,
        application: &[u8],
        label: &str,
    ) -> CallResult<Vec<ObjectHandle>> {
        self.token.find(&Self::data_template(application, label))
    }

    /// Destroy `handle`, which nothing needs any more. A failure leaves it behind, said at
    /// `level` as "pkcs11: {stays}: {why}" (the next open, or the session's end, removes
    /// it); only the crash seam is reported (the work stops there).
    pub(super) fn destroy_or_leave(
        &mut self,
        op: Operation,
        handle: ObjectHandle,
        level: Level,
        stays: &str,
    ) -> Result<()> {
        match self.token.destroy(handle) {
            Ok(()) => Ok(()),
            Err(e) if e.is_stop() => Err(self.device(op, e)),
            Err(e) => {
                log!(level, "pkcs11: {stays}: {}", e.describe());
                Ok(())
            }
        }
    }

    /// The one data object labelled `label`, decoded.
    pub(super) fn read<T: Stored>(
        &mut self,
        op: Operation,
        application: &[u8],
        label: &str,
    ) -> Result<Option<(ObjectHandle, T)>> {
        let handles = self
            .find_data(application, label)
            .map_err(|e| self.device(op, e))?;
        let handle = match handles.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            more => {
                return Err(
                    self.corrupt(op, format!("{} objects are labelled {label}", more.len()))
                );
            }
        };
        let bytes = self.token.value(handle).map_err(|e| self.device(op, e))?;
        let value = T::decode(&bytes).map_err(|e| self.corrupt(op, format!("{label}: {e}")))?;
        Ok(Some((handle, value)))
    }

    /// A managed data object that must exist.
    pub(super) fn read_managed<T: Stored>(
        &mut self,
        op: Operation,
        kind: Managed,
        id: ObjId,
    ) -> Result<T> {
        let label = kind.label(id);
        self.read::<T>(op, APPLICATION, &label)?
            .map(|(_, v)| v)
            .ok_or_else(|| self.corrupt(op, format!("{label} is missing")))
    }

    pub(super) fn create_data<T: Stored>(
        &mut self,
        op: Operation,
        application: &[u8],
        label: &str,
        value: &T,
    ) -> Result<ObjectHandle> {
        let mut template = Self::data_template(application, label);
        template.extend([
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Value(value.encode()),
        ]);
        self.token.create(template).map_err(|e| self.device(op, e))
    }

    pub(super) fn find_key(
        &mut self,
        op: Operation,
        class: ObjectClass,
        template: Vec<Attribute>,
        what: &str,
    ) -> Result<Option<ObjectHandle>> {
        let handles = self
            .find_objects(class, template)
            .map_err(|e| self.device(op, e))?;
        match handles.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            more => Err(self.corrupt(op, format!("{} objects are {what}", more.len()))),
        }
    }

    /// The secret-key object of a managed key (master-key register, seed, share key).
    pub(super) fn managed_key(
        &mut self,
        op: Operation,
        kind: Managed,
        id: ObjId,
    ) -> Result<ObjectHandle> {
        let label = kind.label(id);
        self.find_key(
            op,
            ObjectClass::SECRET_KEY,
            vec![Attribute::Label(label.as_bytes().to_vec())],
            &label,
        )?
        .ok_or_else(|| self.corrupt(op, format!("{label} is missing")))
    }
}
