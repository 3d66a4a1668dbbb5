//! A simulated IBM CCA host library: a shared object exporting the verbs of
//! libcsulcca.so (and CSNBMKP, as libcsulccamk.so does) with the same C signatures
//! (vendor-headers/csulcca.h), answered by hw-sim's card model. CI drives whole ceremonies
//! through it by dlopen and the C ABI, as a user's real library would be driven.
//!
//! REHEARSAL ONLY: the cards keep their keys in plain files (hw-sim). The library also
//! exports `mkclone_simlib_ext`, which IBM's library never does: mkclone's backend takes
//! its presence as "simulated" (rehearsal marking) and uses it, with mkclone's own
//! encodings, for the steps whose verb parameters IBM has not published.
//!
//! This file is the only one with `unsafe`: it turns the caller's pointers into slices,
//! trusting the lengths it is given exactly as IBM's library does.

#![allow(non_snake_case)]

mod machine;
mod verbs;

use std::path::PathBuf;
use std::sync::Mutex;

use libc::{c_long, c_uchar};

use machine::{Codes, Machine, ibm};

static MACHINE: Mutex<Option<Machine>> = Mutex::new(None);

/// The path of this shared object (its directory is the simulated machine's default
/// home).
fn own_path() -> Option<PathBuf> {
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let address = own_path as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; dli_fname, when set, is a
    // NUL-terminated string owned by the loader for as long as the object is loaded.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: checked non-null above; the loader keeps the string alive.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(name.to_string_lossy().into_owned()))
}

/// Run `f` on the machine, counting the call of `verb` (crash and failure injection), and
/// store the codes through `rc`/`rs`.
///
/// # Safety
/// `rc` and `rs` are null or point to writable `long`s.
unsafe fn enter(
    verb: &str,
    rc: *mut c_long,
    rs: *mut c_long,
    f: impl FnOnce(&mut Machine) -> Result<Codes, Codes>,
) {
    let mut guard = MACHINE.lock().unwrap_or_else(|p| p.into_inner());
    let machine = guard.get_or_insert_with(|| Machine::new(own_path()));
    let codes = match machine.begin(verb) {
        Ok(()) => {
            let result = f(machine);
            machine.end(verb);
            result.unwrap_or_else(|c| c)
        }
        Err(c) => c,
    };
    // SAFETY: the caller's contract.
    unsafe {
        if !rc.is_null() {
            *rc = codes.rc as c_long;
        }
        if !rs.is_null() {
            *rs = codes.rs as c_long;
        }
    }
}

/// The bytes at `p` described by `len` (input), or an empty slice for a zero length.
///
/// # Safety
/// When `*len > 0`, `p` points to at least `*len` readable bytes that no one else uses
/// during the call.
unsafe fn slice<'a>(len: *mut c_long, p: *mut c_uchar) -> Result<&'a mut [u8], Codes> {
    // SAFETY: the caller's contract.
    let n = unsafe { len.as_ref() }.copied().unwrap_or(0);
    if n <= 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(ibm::TOO_SMALL);
    }
    // SAFETY: the caller's contract: `p` holds `n` bytes.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n as usize) })
}

/// A fixed-size field (a 64-byte name, a 24-byte key part).
///
/// # Safety
/// `p` is null or points to `n` bytes.
unsafe fn fixed<'a>(p: *mut c_uchar, n: usize) -> Result<&'a mut [u8], Codes> {
    if p.is_null() {
        return Err(ibm::BAD_KEYWORD);
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

/// An in/out length as a `&mut i64`.
///
/// # Safety
/// `p` is null or points to a writable `long`.
unsafe fn long<'a>(p: *mut c_long) -> Result<&'a mut i64, Codes> {
    // SAFETY: the caller's contract; `c_long` is `i64` on the 64-bit targets mkclone builds for.
    unsafe { p.cast::<i64>().as_mut() }.ok_or(ibm::TOO_SMALL)
}

/// The rule array as input: `count` 8-byte keywords.
///
/// # Safety
/// `count` points to a `long`; `rules` to `count * 8` bytes.
unsafe fn rules<'a>(count: *mut c_long, rules: *mut c_uchar) -> Result<(i64, &'a [u8]), Codes> {
    // SAFETY: the caller's contract.
    let n = unsafe { count.as_ref() }.copied().ok_or(ibm::BAD_COUNT)?;
    if !(0..=16).contains(&n) {
        return Err(ibm::BAD_COUNT);
    }
    if n == 0 {
        return Ok((0, &[]));
    }
    if rules.is_null() {
        return Err(ibm::BAD_COUNT);
    }
    // SAFETY: the caller's contract.
    Ok((n, unsafe {
        std::slice::from_raw_parts(rules, n as usize * 8)
    }))
}

const OK: Codes = machine::codes(0, 0);

/// CSUACFQ. The output elements are written over the rule array, which (as IBM documents)
/// the caller sized for them; the count is updated.
///
/// # Safety
/// The C contract of CSUACFQ (vendor-headers/csulcca.h).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUACFQ(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    verb_data_length: *mut c_long,
    verb_data: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSUACFQ", rc, rs, |m| {
            let (n, input) = rules(count, rule_array)?;
            let input = input.to_vec();
            let data = slice(verb_data_length, verb_data)?;
            let mut none = 0i64;
            let len = match long(verb_data_length) {
                Ok(l) => l,
                Err(_) => &mut none,
            };
            let elements = verbs::csuacfq(m, n, &input, (len, data))?;
            let out = std::slice::from_raw_parts_mut(rule_array, elements.len() * 8);
            for (i, e) in elements.iter().enumerate() {
                out[i * 8..i * 8 + 8].copy_from_slice(e);
            }
            *count = elements.len() as c_long;
            Ok(OK)
        })
    }
}

/// CSUACFV: the version string (zkey parses "%u.%u.%uz%s").
///
/// # Safety
/// The C contract of CSUACFV.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUACFV(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    len: *mut c_long,
    data: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSUACFV", rc, rs, |_| {
            let out = slice(len, data)?;
            verbs::put((long(len)?, out), b"0.0.0zMKCLONE-SIMULATED\0")?;
            Ok(OK)
        })
    }
}

macro_rules! resource_verb {
    ($name:ident, $allocate:expr) => {
        /// CSUACRA / CSUACRD.
        ///
        /// # Safety
        /// The C contract of the verb.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            rc: *mut c_long,
            rs: *mut c_long,
            _exit_len: *mut c_long,
            _exit: *mut c_uchar,
            count: *mut c_long,
            rule_array: *mut c_uchar,
            name_len: *mut c_long,
            name: *mut c_uchar,
        ) {
            // SAFETY: the C contract.
            unsafe {
                enter(stringify!($name), rc, rs, |m| {
                    let (n, r) = rules(count, rule_array)?;
                    verbs::resource(m, $allocate, n, r, slice(name_len, name)?)?;
                    Ok(OK)
                })
            }
        }
    };
}
resource_verb!(CSUACRA, true);
resource_verb!(CSUACRD, false);

/// CSUAACM.
///
/// # Safety
/// The C contract of CSUAACM.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSUAACM(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    name: *mut c_uchar,
    out_len: *mut c_long,
    out: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSUAACM", rc, rs, |m| {
            let (n, r) = rules(count, rule_array)?;
            let data = slice(out_len, out)?;
            verbs::get_role(m, n, r, fixed(name, 8)?, (long(out_len)?, data))?;
            Ok(OK)
        })
    }
}

/// CSNDPKB.
///
/// # Safety
/// The C contract of CSNDPKB.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn CSNDPKB(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    kvs_len: *mut c_long,
    kvs: *mut c_uchar,
    name_len: *mut c_long,
    name: *mut c_uchar,
    _cd_len: *mut c_long,
    _cd: *mut c_uchar,
    _r2_len: *mut c_long,
    _r2: *mut c_uchar,
    _r3_len: *mut c_long,
    _r3: *mut c_uchar,
    _r4_len: *mut c_long,
    _r4: *mut c_uchar,
    _r5_len: *mut c_long,
    _r5: *mut c_uchar,
    token_len: *mut c_long,
    token: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSNDPKB", rc, rs, |_| {
            let (n, r) = rules(count, rule_array)?;
            let out = slice(token_len, token)?;
            verbs::csndpkb(
                n,
                r,
                slice(kvs_len, kvs)?,
                slice(name_len, name)?,
                (long(token_len)?, out),
            )?;
            Ok(OK)
        })
    }
}

/// CSNDPKG.
///
/// # Safety
/// The C contract of CSNDPKG.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn CSNDPKG(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    regen_len: *mut c_long,
    regen: *mut c_uchar,
    skel_len: *mut c_long,
    skel: *mut c_uchar,
    _transport: *mut c_uchar,
    out_len: *mut c_long,
    out: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSNDPKG", rc, rs, |m| {
            let (n, r) = rules(count, rule_array)?;
            let o = slice(out_len, out)?;
            verbs::csndpkg(
                m,
                n,
                r,
                slice(regen_len, regen)?,
                slice(skel_len, skel)?,
                (long(out_len)?, o),
            )?;
            Ok(OK)
        })
    }
}

/// CSNDPKX.
///
/// # Safety
/// The C contract of CSNDPKX.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDPKX(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    src_len: *mut c_long,
    src: *mut c_uchar,
    out_len: *mut c_long,
    out: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSNDPKX", rc, rs, |m| {
            let (n, r) = rules(count, rule_array)?;
            let o = slice(out_len, out)?;
            verbs::csndpkx(m, n, r, slice(src_len, src)?, (long(out_len)?, o))?;
            Ok(OK)
        })
    }
}

/// CSNDRKL.
///
/// # Safety
/// The C contract of CSNDRKL: `key_labels` holds `*key_labels_count` 64-byte labels.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDRKL(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    mask: *mut c_uchar,
    total: *mut c_long,
    listed: *mut c_long,
    labels: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSNDRKL", rc, rs, |m| {
            let (n, r) = rules(count, rule_array)?;
            let listed = long(listed)?;
            let room = usize::try_from(*listed).unwrap_or(0);
            let labels = if room == 0 {
                &mut [][..]
            } else {
                fixed(labels, room * 64)?
            };
            verbs::csndrkl(m, n, r, fixed(mask, 64)?, long(total)?, listed, labels)?;
            Ok(OK)
        })
    }
}

/// CSNDRKD.
///
/// # Safety
/// The C contract of CSNDRKD.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNDRKD(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    key: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSNDRKD", rc, rs, |m| {
            let (n, r) = rules(count, rule_array)?;
            verbs::csndrkd(m, n, r, fixed(key, 64)?)?;
            Ok(OK)
        })
    }
}

macro_rules! registry_verb {
    ($name:ident, $f:path) => {
        /// CSNDPKH / CSNDPKR.
        ///
        /// # Safety
        /// The C contract of the verb.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            rc: *mut c_long,
            rs: *mut c_long,
            _exit_len: *mut c_long,
            _exit: *mut c_uchar,
            count: *mut c_long,
            rule_array: *mut c_uchar,
            name: *mut c_uchar,
            data_len: *mut c_long,
            data: *mut c_uchar,
        ) {
            // SAFETY: the C contract.
            unsafe {
                enter(stringify!($name), rc, rs, |m| {
                    let (n, r) = rules(count, rule_array)?;
                    $f(m, n, r, fixed(name, 64)?, slice(data_len, data)?)?;
                    Ok(OK)
                })
            }
        }
    };
}
registry_verb!(CSNDPKH, verbs::csndpkh);
registry_verb!(CSNDPKR, verbs::csndpkr);

/// CSUAMKD.
///
/// # Safety
/// The C contract of CSUAMKD.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn CSUAMKD(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    share_index: *mut c_long,
    private_key: *mut c_uchar,
    certifying_key: *mut c_uchar,
    cert_len: *mut c_long,
    cert: *mut c_uchar,
    key_len: *mut c_long,
    key: *mut c_uchar,
    info_len: *mut c_long,
    info: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSUAMKD", rc, rs, |m| {
            let (n, r) = rules(count, rule_array)?;
            let index = *long(share_index)?;
            let k = slice(key_len, key)?;
            let i = slice(info_len, info)?;
            verbs::csuamkd(
                m,
                n,
                r,
                index,
                fixed(private_key, 64)?,
                fixed(certifying_key, 64)?,
                slice(cert_len, cert)?,
                (long(key_len)?, k),
                (long(info_len)?, i),
            )
        })
    }
}

/// CSNBMKP (libcsulccamk.so exports it; so does this library).
///
/// # Safety
/// The C contract of CSNBMKP.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn CSNBMKP(
    rc: *mut c_long,
    rs: *mut c_long,
    _exit_len: *mut c_long,
    _exit: *mut c_uchar,
    count: *mut c_long,
    rule_array: *mut c_uchar,
    _key_part: *mut c_uchar,
) {
    // SAFETY: the C contract.
    unsafe {
        enter("CSNBMKP", rc, rs, |m| {
            let (n, r) = rules(count, rule_array)?;
            verbs::csnbmkp(m, n, r)
        })
    }
}

/// PROJECT-ASSIGNED (never in IBM's library): one request message in mkclone's own
/// encoding (crates/cca) to the allocated card, the reply message back.
///
/// # Safety
/// `request` holds `*request_length` bytes; `reply` has room for `*reply_length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkclone_simlib_ext(
    rc: *mut c_long,
    rs: *mut c_long,
    request_length: *mut c_long,
    request: *mut c_uchar,
    reply_length: *mut c_long,
    reply: *mut c_uchar,
) {
    // SAFETY: the C contract above.
    unsafe {
        enter("mkclone_simlib_ext", rc, rs, |m| {
            let message = slice(request_length, request)?.to_vec();
            let out = slice(reply_length, reply)?;
            let apqn = m.apqn()?;
            let answer = m.exchange(apqn, &message)?;
            verbs::put((long(reply_length)?, out), &answer)?;
            Ok(OK)
        })
    }
}

/// PROJECT-ASSIGNED (never in IBM's library): create a factory-fresh simulated card with
/// this serial number as the next adapter of the library's domain (`mkclone sim init`).
/// Return code 0: created; 4/0: a card with this serial exists already.
///
/// # Safety
/// `serial` holds `*serial_length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkclone_simlib_create_card(
    rc: *mut c_long,
    rs: *mut c_long,
    serial_length: *mut c_long,
    serial: *mut c_uchar,
) {
    // SAFETY: the C contract above.
    unsafe {
        enter("mkclone_simlib_create_card", rc, rs, |m| {
            let text = slice(serial_length, serial)?;
            let serial = std::str::from_utf8(text)
                .ok()
                .and_then(|t| mkclone_backend::SerialNumber::new(t.trim_end()).ok())
                .ok_or(machine::project::UNSUPPORTED)?;
            Ok(if m.create_card(&serial)? {
                OK
            } else {
                machine::codes(4, 0)
            })
        })
    }
}
