//! The object store: finding, reading and creating the token objects mkclone keeps
//! (`crate::objects` describes them).

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use log::{Level, log};
use mkclone_backend::{KeyLabel, Operation, Result};

use super::{Pkcs11Backend, attribute_bytes};
use crate::objects::{APPLICATION, Managed, ObjId, Stored, map_label};
use crate::session::CallResult;
use crate::templates::Made;

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

    /// The names in one of mkclone's lists, sorted: the labels of `application`'s data
    /// objects after `prefix`; another label is damage (`what` says of which list).
    pub(super) fn listed(
        &mut self,
        op: Operation,
        application: &[u8],
        prefix: &str,
        what: &str,
    ) -> Result<Vec<KeyLabel>> {
        let handles = self
            .find_application(application)
            .map_err(|e| self.device(op, e))?;
        let mut names = Vec::with_capacity(handles.len());
        for h in handles {
            let text = self.token.label(h).map_err(|e| self.device(op, e))?;
            let name = text
                .strip_prefix(prefix)
                .and_then(|n| KeyLabel::new(n).ok())
                .ok_or_else(|| self.corrupt(op, format!("{what} {text:?}")))?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    /// `found`, or damage: `label` is missing.
    pub(super) fn required<T>(&self, op: Operation, found: Option<T>, label: &str) -> Result<T> {
        found.ok_or_else(|| self.corrupt(op, format!("{label} is missing")))
    }

    pub(super) fn find_data(
        &mut self,
        application: &[u8],
        label: &str,
    ) -> CallResult<Vec<ObjectHandle>> {
        self.find_objects(
            ObjectClass::DATA,
            [
                Attribute::Application(application.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
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

    /// The one object of `handles`, none, or damage: `what` says what they are.
    pub(super) fn one_of(
        &self,
        op: Operation,
        handles: Vec<ObjectHandle>,
        what: &str,
    ) -> Result<Option<ObjectHandle>> {
        match handles.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            more => Err(self.corrupt(op, format!("{} objects are {what}", more.len()))),
        }
    }

    /// The one data object labelled `label`, checked against its template and decoded.
    pub(super) fn read<T: Stored>(
        &mut self,
        op: Operation,
        application: &'static [u8],
        label: &str,
    ) -> Result<Option<(ObjectHandle, T)>> {
        let handles = self
            .find_data(application, label)
            .map_err(|e| self.device(op, e))?;
        let Some(handle) = self.one_of(op, handles, &format!("labelled {label}"))? else {
            return Ok(None);
        };
        let attrs = self
            .read_checked(
                handle,
                label,
                Made::Data(application),
                &[AttributeType::Value],
            )
            .map_err(|e| self.check_error(op, e))?;
        let bytes = attribute_bytes(attrs, AttributeType::Value).unwrap_or_default();
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
        let label = &kind.label(id);
        let found = self.read::<T>(op, APPLICATION, label)?;
        self.required(op, found.map(|(_, v)| v), label)
    }

    pub(super) fn create_data<T: Stored>(
        &mut self,
        op: Operation,
        application: &'static [u8],
        label: &str,
        value: &T,
    ) -> Result<ObjectHandle> {
        let mut template = Made::Data(application).attributes(&self.support);
        template.extend([
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Value(value.encode()),
        ]);
        self.token.create(template).map_err(|e| self.device(op, e))
    }

    /// The register map in force's object (after a logout, which invalidates handles).
    pub(super) fn find_map_handle(&mut self, op: Operation) -> Result<Option<ObjectHandle>> {
        if self.map_handle.is_none() {
            return Ok(None);
        }
        let label = map_label(self.map.generation);
        let handles = self
            .find_data(APPLICATION, &label)
            .map_err(|e| self.device(op, e))?;
        let found = self.one_of(op, handles, &format!("labelled {label}"))?;
        self.required(op, found, &label).map(Some)
    }

    /// The one key of `class` with `template`, checked against `made`'s template; `what`
    /// names it in messages.
    pub(super) fn find_key(
        &mut self,
        op: Operation,
        class: ObjectClass,
        template: Vec<Attribute>,
        made: Made,
        what: &str,
    ) -> Result<Option<ObjectHandle>> {
        let handles = self
            .find_objects(class, template)
            .map_err(|e| self.device(op, e))?;
        let Some(handle) = self.one_of(op, handles, what)? else {
            return Ok(None);
        };
        let label = self.token.label(handle).map_err(|e| self.device(op, e))?;
        self.check_object(handle, &label, made)
            .map_err(|e| self.check_error(op, e))?;
        Ok(Some(handle))
    }

    /// The secret-key object of a managed key (master-key register, seed), checked.
    pub(super) fn managed_key(
        &mut self,
        op: Operation,
        kind: Managed,
        id: ObjId,
    ) -> Result<ObjectHandle> {
        let label = kind.label(id);
        let found = self.find_key(
            op,
            ObjectClass::SECRET_KEY,
            vec![Attribute::Label(label.as_bytes().to_vec())],
            kind.made(),
            &label,
        )?;
        self.required(op, found, &label)
    }
}
