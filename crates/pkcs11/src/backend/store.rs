//! The object store: finding, reading and creating the token objects mkclone keeps
//! (`crate::objects` describes them).

use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use mkclone_backend::{Operation, Result};

use super::Pkcs11Backend;
use crate::objects::{APPLICATION, Managed, ObjId, Stored};
use crate::session::CallResult;

impl Pkcs11Backend {
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
        let mut t = vec![Attribute::Class(class), Attribute::Token(true)];
        t.extend(template);
        let handles = self.token.find(&t).map_err(|e| self.device(op, e))?;
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
