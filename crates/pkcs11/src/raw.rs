//! The module's own function list, for what cryptoki 0.12 cannot do:
//!
//! - `CKA_UNWRAP_TEMPLATE`, an *array* attribute (`CKF_ARRAY_ATTRIBUTE`: its value is an
//!   array of `CK_ATTRIBUTE`s, each pointing at its own value). cryptoki's `Attribute` has no
//!   variant for it and its `get_attributes` cannot fill the inner values, so key generation
//!   with an unwrap template and reading one back call the module's own `C_GenerateKey`,
//!   `C_GenerateKeyPair` and `C_GetAttributeValue`.
//! - Token information cryptoki cannot parse: its `get_token_info` converts every field and
//!   fails the whole call when a token that sets `CKF_CLOCK_ON_TOKEN` reports a `utcTime` it
//!   cannot parse. opencryptoki 3.8.1 (Debian 12) reports `"03:02:26        "` (a time of day,
//!   not the `YYYYMMDDhhmmss00` PKCS#11 v2.40 §3.2 prescribes), so no token of that module
//!   could even be listed. mkclone needs the label, manufacturer, model, serial number and
//!   flags, never the clock: [`RawModule::token_info`] reads those (`module.rs` asks cryptoki
//!   first).
//!
//! The module is opened a second time with `dlopen` (libloading): the dynamic loader hands
//! back the library cryptoki already loaded and initialized (same code, same state), and its
//! `C_GetFunctionList` (PKCS#11 v2.40 §5.2) returns the one function list cryptoki uses, so
//! the session handles cryptoki opened are valid here. A proxy may instead return a fresh
//! instance per call (p11-kit's proxy does): the list is therefore initialized here too
//! (`CKR_CRYPTOKI_ALREADY_INITIALIZED` is the usual answer), right after cryptoki's (`module.rs`),
//! so that both instances number the slots alike (p11-kit fixes its numbering when an instance
//! is initialized) and the token information read here is that of the same slot; such an
//! instance knows none of cryptoki's sessions, so the calls that take one refuse
//! ([`RawModule::own_instance`]) and the probe says what that costs. Never finalized, as no
//! module is. This is the crate's one module of `unsafe` code.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, Result as CkResult, Rv};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE, CK_C_INITIALIZE_ARGS, CK_FLAGS, CK_FUNCTION_LIST,
    CK_MECHANISM, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE, CK_RV, CK_SLOT_ID, CK_TOKEN_INFO, CK_ULONG,
    CK_UNAVAILABLE_INFORMATION, CKA_UNWRAP_TEMPLATE, CKF_OS_LOCKING_OK,
    CKR_CRYPTOKI_ALREADY_INITIALIZED, CKR_OK,
};

/// The function list of one loaded PKCS#11 module.
pub(crate) struct RawModule {
    functions: CK_FUNCTION_LIST,
    /// `C_Initialize` of this list succeeded rather than finding it initialized: it is an
    /// instance of its own (a proxy's), which knows none of cryptoki's sessions.
    own_instance: bool,
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
    let initialize = functions
        .C_Initialize
        .ok_or_else(|| "the module's function list has no C_Initialize".to_string())?;
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: std::ptr::null_mut(),
    };
    // SAFETY: C_Initialize takes a pointer to a valid CK_C_INITIALIZE_ARGS (no mutex
    // callbacks: the OS's locking), alive across the call; the module keeps no reference
    // to it (PKCS#11 v2.40 §5.4).
    let rv = unsafe { initialize((&mut args as *mut CK_C_INITIALIZE_ARGS).cast::<c_void>()) };
    let own_instance = match rv {
        CKR_CRYPTOKI_ALREADY_INITIALIZED => false,
        CKR_OK => true,
        rv => {
            return Err(format!(
                "C_Initialize of its function list: {}",
                match Rv::from(rv) {
                    Rv::Error(e) => e.to_string(),
                    Rv::Ok => rv.to_string(),
                }
            ));
        }
    };
    let raw = Arc::new(RawModule {
        functions,
        own_instance,
        _library: library,
    });
    table.insert(key, Arc::clone(&raw));
    Ok(raw)
}

/// What a token says about itself, as mkclone reads it: the text fields with their blank
/// (and NUL) padding removed, and the raw flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawTokenInfo {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub flags: CK_FLAGS,
}

impl RawTokenInfo {
    /// Decode the fields mkclone uses; `utcTime` and the counters are never looked at.
    pub fn from_ck(info: &CK_TOKEN_INFO) -> Self {
        Self {
            label: padded_text(&info.label),
            manufacturer: padded_text(&info.manufacturerID),
            model: padded_text(&info.model),
            serial: padded_text(&info.serialNumber),
            flags: info.flags,
        }
    }

    /// The same fields from cryptoki's parse (for tokens it can parse); the flags mkclone
    /// reads are rebuilt from its accessors.
    pub fn from_cryptoki(info: &cryptoki::slot::TokenInfo) -> Self {
        use cryptoki_sys::*;
        let flags = [
            (info.token_initialized(), CKF_TOKEN_INITIALIZED),
            (info.user_pin_initialized(), CKF_USER_PIN_INITIALIZED),
            (info.login_required(), CKF_LOGIN_REQUIRED),
            (info.user_pin_count_low(), CKF_USER_PIN_COUNT_LOW),
            (info.user_pin_final_try(), CKF_USER_PIN_FINAL_TRY),
            (info.user_pin_locked(), CKF_USER_PIN_LOCKED),
            (info.user_pin_to_be_changed(), CKF_USER_PIN_TO_BE_CHANGED),
            (info.so_pin_count_low(), CKF_SO_PIN_COUNT_LOW),
            (info.so_pin_final_try(), CKF_SO_PIN_FINAL_TRY),
            (info.so_pin_locked(), CKF_SO_PIN_LOCKED),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, flag)| flags | flag);
        Self {
            label: info.label().trim_end_matches([' ', '\0']).to_string(),
            manufacturer: info
                .manufacturer_id()
                .trim_end_matches([' ', '\0'])
                .to_string(),
            model: info.model().trim_end_matches([' ', '\0']).to_string(),
            serial: info
                .serial_number()
                .trim_end_matches([' ', '\0'])
                .to_string(),
            flags,
        }
    }

    pub fn has(&self, flag: CK_FLAGS) -> bool {
        self.flags & flag != 0
    }
}

/// A blank-padded PKCS#11 text field (PKCS#11 v2.40 §3.2: "padded with the blank
/// character"); some modules pad with NULs instead, which are removed too.
fn padded_text(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_end_matches([' ', '\0'])
        .to_string()
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
    /// This list is an instance of its own (see the module documentation): the calls that
    /// take one of cryptoki's sessions refuse.
    pub(crate) fn own_instance(&self) -> bool {
        self.own_instance
    }

    /// The module's entry point `entry` for `function`, a call that takes one of cryptoki's
    /// sessions: refused on an instance of its own, and where the module gives none.
    fn shared_entry<F>(&self, function: Function, entry: Option<F>) -> CkResult<F> {
        if self.own_instance {
            return Err(CkError::Pkcs11(
                cryptoki::error::RvError::FunctionNotSupported,
                function,
            ));
        }
        entry.ok_or(CkError::NullFunctionPointer)
    }

    /// `C_GetTokenInfo` of `slot`, the fields mkclone uses.
    pub(crate) fn token_info(&self, slot: CK_SLOT_ID) -> CkResult<RawTokenInfo> {
        let f = self
            .functions
            .C_GetTokenInfo
            .ok_or(CkError::NullFunctionPointer)?;
        let mut info = CK_TOKEN_INFO::default();
        // SAFETY: the module is initialized; `info` is a valid, writable CK_TOKEN_INFO of
        // the layout cryptoki-sys generated from pkcs11t.h for this platform; the module
        // writes only inside it.
        let rv = unsafe { f(slot, &mut info) };
        check(rv, Function::GetTokenInfo)?;
        Ok(RawTokenInfo::from_ck(&info))
    }

    /// C_GenerateKey (`mechanism` without parameters) with `template` and the unwrap
    /// template `unwrap`.
    pub(crate) fn generate_key(
        &self,
        session: &Session,
        mechanism_type: CK_MECHANISM_TYPE,
        template: &[Attribute],
        unwrap: &[Attribute],
    ) -> CkResult<ObjectHandle> {
        let f = self.shared_entry(Function::GenerateKey, self.functions.C_GenerateKey)?;
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
        let f = self.shared_entry(Function::GenerateKeyPair, self.functions.C_GenerateKeyPair)?;
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
    /// the object has none (or the token does not know the attribute). Only inner
    /// attributes of the types `allowed` lists, each of its type's fixed size, are decoded
    /// ([`ReadTemplate`]).
    pub(crate) fn unwrap_template(
        &self,
        session: &Session,
        object: ObjectHandle,
        allowed: &[AttributeType],
    ) -> CkResult<Option<ReadTemplate>> {
        let f = self.shared_entry(
            Function::GetAttributeValue,
            self.functions.C_GetAttributeValue,
        )?;
        read_unwrap_template(
            |outer: &mut CK_ATTRIBUTE| -> CK_RV {
                // SAFETY: `outer` and the buffers it points to (set up by
                // `read_unwrap_template`) outlive the call; the module writes at most
                // `ulValueLen` bytes to each.
                unsafe { f(session.handle(), object.handle(), outer, 1) }
            },
            allowed,
        )
    }
}

/// An unwrap template as read back.
#[derive(Debug, PartialEq)]
pub(crate) enum ReadTemplate {
    /// Every inner attribute of a type asked for, and of that type's size.
    Attributes(Vec<Attribute>),
    /// An inner attribute of another type, or of another size than its type has (the
    /// first such): never decoded. cryptoki's decoder takes a type's size for granted (a
    /// date of 1 byte would be read 8 bytes long, past its buffer; a version of 0 bytes
    /// panics), and a token's user may put any type and length in a template.
    Foreign {
        attribute: CK_ATTRIBUTE_TYPE,
        len: usize,
    },
}

/// The most inner attributes, and the longest inner value, an unwrap template read back
/// may have: mkclone's has 16 attributes of at most 8 bytes. More is a token answering
/// otherwise than PKCS#11 says, refused before anything is allocated for it.
const MAX_TEMPLATE_ATTRIBUTES: usize = 64;
const MAX_TEMPLATE_VALUE: usize = 1024;

/// A `CKA_UNWRAP_TEMPLATE` read with `get` (one `C_GetAttributeValue` of that attribute
/// alone): its size, then each inner attribute's type and length, then the values.
/// Lengths the token reports are bounded, and a value longer than its buffer is refused,
/// never read.
fn read_unwrap_template(
    mut get: impl FnMut(&mut CK_ATTRIBUTE) -> CK_RV,
    allowed: &[AttributeType],
) -> CkResult<Option<ReadTemplate>> {
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
    let count = usize::try_from(outer.ulValueLen).unwrap_or(usize::MAX) / size;
    if count == 0 {
        return Ok(None);
    }
    if count > MAX_TEMPLATE_ATTRIBUTES {
        return Err(CkError::InvalidValue);
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
    let lengths = inner
        .iter()
        .map(|a| match usize::try_from(a.ulValueLen) {
            Ok(len) if len <= MAX_TEMPLATE_VALUE => Ok(len),
            _ => Err(CkError::InvalidValue),
        })
        .collect::<CkResult<Vec<usize>>>()?;
    // 3: the values, into buffers of those lengths.
    let mut buffers: Vec<Vec<u8>> = lengths.iter().map(|&len| vec![0u8; len]).collect();
    for (a, buffer) in inner.iter_mut().zip(buffers.iter_mut()) {
        a.pValue = buffer.as_mut_ptr().cast::<c_void>();
    }
    outer.pValue = inner.as_mut_ptr().cast::<c_void>();
    check(get(&mut outer), Function::GetAttributeValue)?;
    let mut out = Vec::with_capacity(count);
    for (a, buffer) in inner.into_iter().zip(&buffers) {
        // A length beyond the buffer would read past it: refused.
        let len = match usize::try_from(a.ulValueLen) {
            Ok(len) if len <= buffer.len() => len,
            _ => return Err(CkError::InvalidValue),
        };
        if a.pValue != buffer.as_ptr().cast_mut().cast::<c_void>() {
            return Err(CkError::InvalidValue);
        }
        // Decoded only as a type asked for, of its exact size: what cryptoki assumes.
        let decodable = AttributeType::try_from(a.type_)
            .is_ok_and(|t| allowed.contains(&t) && t.fixed_size() == Some(len));
        if !decodable {
            return Ok(Some(ReadTemplate::Foreign {
                attribute: a.type_,
                len,
            }));
        }
        // Reads the buffer `a.pValue` points to, still alive in `buffers`.
        out.push(Attribute::try_from(a)?);
    }
    drop(buffers);
    Ok(Some(ReadTemplate::Attributes(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki_sys::{CKA_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID};

    /// What mkclone's template holds, as the reader is told.
    const ALLOWED: &[AttributeType] = &[AttributeType::Sensitive, AttributeType::Class];

    /// A token answering `C_GetAttributeValue(CKA_UNWRAP_TEMPLATE)` with one inner
    /// attribute, `CKA_SENSITIVE` true, reporting `announced` as its length in step 2 and
    /// `written` after writing the value in step 3.
    fn token(announced: CK_ULONG, written: CK_ULONG) -> impl FnMut(&mut CK_ATTRIBUTE) -> CK_RV {
        typed(CKA_SENSITIVE, announced, written)
    }

    /// [`token`] with an inner attribute of type `type_` (its value bytes all 1).
    fn typed(
        type_: CK_ATTRIBUTE_TYPE,
        announced: CK_ULONG,
        written: CK_ULONG,
    ) -> impl FnMut(&mut CK_ATTRIBUTE) -> CK_RV {
        let mut step = 0;
        move |outer: &mut CK_ATTRIBUTE| {
            step += 1;
            match step {
                1 => outer.ulValueLen = ck_len(std::mem::size_of::<CK_ATTRIBUTE>()),
                _ => {
                    // SAFETY: `outer.pValue` points to the one CK_ATTRIBUTE the reader
                    // allocated for the size announced in step 1.
                    let inner = unsafe { &mut *outer.pValue.cast::<CK_ATTRIBUTE>() };
                    inner.type_ = type_;
                    if step == 2 {
                        inner.ulValueLen = announced;
                    } else {
                        let room = usize::try_from(announced).unwrap_or(0);
                        // SAFETY: the reader gave a buffer of the announced length.
                        unsafe { std::ptr::write_bytes(inner.pValue.cast::<u8>(), 1, room) };
                        inner.ulValueLen = written;
                    }
                }
            }
            CKR_OK
        }
    }

    #[test]
    fn a_template_read_back_as_the_token_reports_it() {
        assert_eq!(
            read_unwrap_template(token(1, 1), ALLOWED).unwrap(),
            Some(ReadTemplate::Attributes(vec![Attribute::Sensitive(true)]))
        );
        let none = read_unwrap_template(|_: &mut CK_ATTRIBUTE| CKR_ATTRIBUTE_TYPE_INVALID, ALLOWED);
        assert_eq!(none.unwrap(), None);
    }

    /// A user of the token can put any type and length in a template (SoftHSM keeps an
    /// unknown inner type as bytes). cryptoki's decoder takes each type's size for granted:
    /// a 0-byte CKA_VALIDATION_VERSION made it panic, a 1-byte CKA_START_DATE made it read
    /// 8 bytes. Such an attribute is reported, never decoded; so is a type mkclone does not
    /// put there, or one of its own types at another size.
    #[test]
    fn an_inner_attribute_of_another_type_or_size_is_reported_not_decoded() {
        for (type_, len) in [
            (cryptoki_sys::CKA_VALIDATION_VERSION, 0),
            (cryptoki_sys::CKA_START_DATE, 1),
            (cryptoki_sys::CKA_END_DATE, 8),
            (cryptoki_sys::CKA_LABEL, 3),
            (CKA_SENSITIVE, 0),
            (CKA_SENSITIVE, 2),
            (cryptoki_sys::CKA_CLASS, 1),
            (0x8000_0001, 4),
        ] {
            let read = read_unwrap_template(typed(type_, len, len), ALLOWED).unwrap();
            assert_eq!(
                read,
                Some(ReadTemplate::Foreign {
                    attribute: type_,
                    len: len as usize
                }),
                "type {type_:#x}, {len} bytes"
            );
        }
    }

    #[test]
    fn lengths_a_hostile_token_reports_are_refused_not_allocated_or_read() {
        // A value "unavailable", or far longer than any template's: nothing is allocated.
        for announced in [CK_UNAVAILABLE_INFORMATION, 1 << 40] {
            assert!(matches!(
                read_unwrap_template(token(announced, 1), ALLOWED),
                Err(CkError::InvalidValue)
            ));
        }
        // A value written longer than the buffer it was given: never read past it.
        assert!(matches!(
            read_unwrap_template(token(1, 1 << 20), ALLOWED),
            Err(CkError::InvalidValue)
        ));
        // An array larger than any template.
        let huge = |outer: &mut CK_ATTRIBUTE| {
            outer.ulValueLen = 1 << 40;
            CKR_OK
        };
        assert!(matches!(
            read_unwrap_template(huge, ALLOWED),
            Err(CkError::InvalidValue)
        ));
    }

    #[test]
    fn fields_lose_their_padding_and_the_clock_is_never_read() {
        let padded = |text: &[u8], len: usize, pad: u8| {
            let mut field = vec![pad; len];
            field[..text.len()].copy_from_slice(text);
            field
        };
        let mut info = CK_TOKEN_INFO {
            // What opencryptoki 3.8.1 puts in utcTime with CKF_CLOCK_ON_TOKEN set.
            utcTime: *b"03:02:26        ",
            flags: cryptoki_sys::CKF_CLOCK_ON_TOKEN | cryptoki_sys::CKF_TOKEN_INITIALIZED,
            ..CK_TOKEN_INFO::default()
        };
        info.label.copy_from_slice(&padded(b"source", 32, b' '));
        info.manufacturerID
            .copy_from_slice(&padded(b"IBM Corp.", 32, b' '));
        info.model.copy_from_slice(&padded(b"IBM SoftTok", 16, 0));
        info.serialNumber.copy_from_slice(&padded(b"123", 16, b' '));
        let raw = RawTokenInfo::from_ck(&info);
        assert_eq!(raw.label, "source");
        assert_eq!(raw.manufacturer, "IBM Corp.");
        assert_eq!(raw.model, "IBM SoftTok");
        assert_eq!(raw.serial, "123");
        assert!(raw.has(cryptoki_sys::CKF_TOKEN_INITIALIZED));
        assert!(!raw.has(cryptoki_sys::CKF_USER_PIN_INITIALIZED));
        // cryptoki's own conversion refuses this token outright.
        assert!(cryptoki::slot::TokenInfo::try_from(info).is_err());
        // A blank serial is empty.
        info.serialNumber = [b' '; 16];
        assert_eq!(RawTokenInfo::from_ck(&info).serial, "");
    }
}
