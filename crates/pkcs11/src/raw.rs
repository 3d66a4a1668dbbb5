//! The one attribute cryptoki 0.12 cannot carry: `CKA_UNWRAP_TEMPLATE`, an *array*
//! attribute (`CKF_ARRAY_ATTRIBUTE`: its value is an array of `CK_ATTRIBUTE`s, each pointing
//! at its own value). cryptoki's `Attribute` has no variant for it and its
//! `get_attributes` cannot fill the inner values, so key generation with an unwrap
//! template and reading one back call the module's own `C_GenerateKey`,
//! `C_GenerateKeyPair` and `C_GetAttributeValue`, through the function list the module
//! returns from `C_GetFunctionList`.
//!
//! The module is opened a second time with `dlopen` (libloading): the dynamic loader hands
//! back the library cryptoki already loaded and initialized (same code, same state), so
//! the session handles cryptoki opened are valid here. This is the crate's one module of
//! `unsafe` code.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, Result as CkResult, Rv};
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE, CK_RV,
    CK_ULONG, CK_UNAVAILABLE_INFORMATION, CKA_UNWRAP_TEMPLATE, CKR_OK,
};

/// The function list of one loaded PKCS#11 module.
pub(crate) struct RawModule {
    functions: CK_FUNCTION_LIST,
    /// Keeps the library loaded as long as the function pointers are used (it is never
    /// unloaded anyway: cryptoki's instance holds it too).
    _library: libloading::Library,
}

// SAFETY: the function list is a table of plain function pointers into the module, which
// PKCS#11 requires to be callable from any thread once the module was initialized with
// CKF_OS_LOCKING_OK (module.rs does so); the library handle is Send and Sync.
unsafe impl Send for RawModule {}
// SAFETY: as above: the table is never written after it is read.
unsafe impl Sync for RawModule {}

impl std::fmt::Debug for RawModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawModule")
    }
}

static RAW: OnceLock<Mutex<HashMap<PathBuf, Arc<RawModule>>>> = OnceLock::new();

/// The function list of the module at `path`, which `module::shared_module` has loaded and
/// initialized already.
pub(crate) fn raw_module(path: &Path) -> Result<Arc<RawModule>, String> {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let table = RAW.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned table still holds valid entries.
    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(raw) = table.get(&key) {
        return Ok(Arc::clone(raw));
    }
    // SAFETY: loading the library runs its initializers, as cryptoki's own load of the same
    // file already did; the loader returns that same, already loaded, object.
    let library = unsafe { libloading::Library::new(&key) }.map_err(|e| e.to_string())?;
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: C_GetFunctionList has this signature in every PKCS#11 version (pkcs11f.h); it
    // writes a pointer to the module's static function list, read right after and copied.
    let functions = unsafe {
        let get: libloading::Symbol<'_, unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            library
                .get(b"C_GetFunctionList\0")
                .map_err(|e| e.to_string())?;
        let rv = get(&mut list);
        if rv != CKR_OK || list.is_null() {
            return Err(format!("C_GetFunctionList returned {rv:#x}"));
        }
        *list
    };
    let raw = Arc::new(RawModule {
        functions,
        _library: library,
    });
    table.insert(key, Arc::clone(&raw));
    Ok(raw)
}

/// `CK_ATTRIBUTE`s pointing into `attributes` (valid as long as they are).
fn ck_attributes(attributes: &[Attribute]) -> Vec<CK_ATTRIBUTE> {
    attributes.iter().map(CK_ATTRIBUTE::from).collect()
}

/// `template` with `CKA_UNWRAP_TEMPLATE` = `inner` appended (pointing into `inner`).
fn with_unwrap_template(template: &[Attribute], inner: &mut [CK_ATTRIBUTE]) -> Vec<CK_ATTRIBUTE> {
    let mut out = ck_attributes(template);
    out.push(CK_ATTRIBUTE {
        type_: CKA_UNWRAP_TEMPLATE,
        pValue: inner.as_mut_ptr().cast::<c_void>(),
        ulValueLen: ck_len(std::mem::size_of_val(inner)),
    });
    out
}

fn ck_len(len: usize) -> CK_ULONG {
    CK_ULONG::try_from(len).unwrap_or(CK_ULONG::MAX)
}

fn check(rv: CK_RV, function: Function) -> CkResult<()> {
    Rv::from(rv).into_result(function)
}

fn mechanism(mechanism: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

fn handle(raw: CK_OBJECT_HANDLE) -> ObjectHandle {
    // SAFETY: the handle was just returned by the module for an object of this session.
    unsafe { ObjectHandle::new_from_raw(raw) }
}

impl RawModule {
    /// C_GenerateKey (`mechanism` without parameters) with `template` and the unwrap
    /// template `unwrap`.
    pub(crate) fn generate_key(
        &self,
        session: &Session,
        mechanism_type: CK_MECHANISM_TYPE,
        template: &[Attribute],
        unwrap: &[Attribute],
    ) -> CkResult<ObjectHandle> {
        let f = self
            .functions
            .C_GenerateKey
            .ok_or(CkError::NullFunctionPointer)?;
        let mut inner = ck_attributes(unwrap);
        let mut outer = with_unwrap_template(template, &mut inner);
        let mut m = mechanism(mechanism_type);
        let mut key: CK_OBJECT_HANDLE = 0;
        // SAFETY: every pointer points into `m`, `outer`, `inner`, `template` or `unwrap`,
        // all alive until the call returns; the module writes only `key`.
        let rv = unsafe {
            f(
                session.handle(),
                &mut m,
                outer.as_mut_ptr(),
                ck_len(outer.len()),
                &mut key,
            )
        };
        check(rv, Function::GenerateKey)?;
        Ok(handle(key))
    }

    /// C_GenerateKeyPair (`mechanism` without parameters) with `public`, and `private`
    /// with the unwrap template `unwrap`.
    pub(crate) fn generate_key_pair(
        &self,
        session: &Session,
        mechanism_type: CK_MECHANISM_TYPE,
        public: &[Attribute],
        private: &[Attribute],
        unwrap: &[Attribute],
    ) -> CkResult<(ObjectHandle, ObjectHandle)> {
        let f = self
            .functions
            .C_GenerateKeyPair
            .ok_or(CkError::NullFunctionPointer)?;
        let mut public_ck = ck_attributes(public);
        let mut inner = ck_attributes(unwrap);
        let mut private_ck = with_unwrap_template(private, &mut inner);
        let mut m = mechanism(mechanism_type);
        let (mut public_key, mut private_key): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        // SAFETY: every pointer points into locals or the caller's slices, alive until the
        // call returns; the module writes only the two handles.
        let rv = unsafe {
            f(
                session.handle(),
                &mut m,
                public_ck.as_mut_ptr(),
                ck_len(public_ck.len()),
                private_ck.as_mut_ptr(),
                ck_len(private_ck.len()),
                &mut public_key,
                &mut private_key,
            )
        };
        check(rv, Function::GenerateKeyPair)?;
        Ok((handle(public_key), handle(private_key)))
    }

    /// `object`'s `CKA_UNWRAP_TEMPLATE`, each inner attribute with its value; `None` when
    /// the object has none (or the token does not know the attribute).
    pub(crate) fn unwrap_template(
        &self,
        session: &Session,
        object: ObjectHandle,
    ) -> CkResult<Option<Vec<Attribute>>> {
        let f = self
            .functions
            .C_GetAttributeValue
            .ok_or(CkError::NullFunctionPointer)?;
        let get = |outer: &mut CK_ATTRIBUTE| -> CK_RV {
            // SAFETY: `outer` and the buffers it points to (set up by the caller below)
            // outlive the call; the module writes at most `ulValueLen` bytes to each.
            unsafe { f(session.handle(), object.handle(), outer, 1) }
        };
        // 1: the array's size.
        let mut outer = CK_ATTRIBUTE {
            type_: CKA_UNWRAP_TEMPLATE,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        };
        let rv = get(&mut outer);
        if rv != CKR_OK || outer.ulValueLen == CK_UNAVAILABLE_INFORMATION {
            return match Rv::from(rv) {
                Rv::Ok => Ok(None),
                Rv::Error(cryptoki::error::RvError::AttributeTypeInvalid) => Ok(None),
                other => other
                    .into_result(Function::GetAttributeValue)
                    .map(|()| None),
            };
        }
        let size = std::mem::size_of::<CK_ATTRIBUTE>();
        let count = usize::try_from(outer.ulValueLen).unwrap_or(0) / size;
        if count == 0 {
            return Ok(None);
        }
        // 2: each inner attribute's type and length (all inner values NULL).
        let mut inner = vec![
            CK_ATTRIBUTE {
                type_: 0,
                pValue: std::ptr::null_mut(),
                ulValueLen: 0,
            };
            count
        ];
        outer.pValue = inner.as_mut_ptr().cast::<c_void>();
        outer.ulValueLen = ck_len(count * size);
        check(get(&mut outer), Function::GetAttributeValue)?;
        // 3: the values, into buffers of those lengths.
        let mut buffers: Vec<Vec<u8>> = inner
            .iter()
            .map(|a| vec![0u8; usize::try_from(a.ulValueLen).unwrap_or(0)])
            .collect();
        for (a, buffer) in inner.iter_mut().zip(buffers.iter_mut()) {
            a.pValue = buffer.as_mut_ptr().cast::<c_void>();
        }
        outer.pValue = inner.as_mut_ptr().cast::<c_void>();
        check(get(&mut outer), Function::GetAttributeValue)?;
        let mut out = Vec::with_capacity(count);
        for a in inner {
            // Reads the buffer `a.pValue` points to, still alive in `buffers`.
            out.push(Attribute::try_from(a)?);
        }
        drop(buffers);
        Ok(Some(out))
    }
}
