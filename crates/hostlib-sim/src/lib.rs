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
use verbs::Rules;

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
// SAFETY: a contract for callers, stated under "# Safety" above; every caller is an
// exported verb handing on the application's pointers, which CCA's convention makes valid.
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
// SAFETY: a contract for callers, stated under "# Safety" above; every caller is an
// exported verb handing on the application's pointers, which CCA's convention makes valid.
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
// SAFETY: a contract for callers, stated under "# Safety" above; every caller is an
// exported verb handing on the application's pointers, which CCA's convention makes valid.
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
// SAFETY: a contract for callers, stated under "# Safety" above; every caller is an
// exported verb handing on the application's pointers, which CCA's convention makes valid.
unsafe fn long<'a>(p: *mut c_long) -> Result<&'a mut i64, Codes> {
    // SAFETY: the caller's contract; `c_long` is `i64` on the 64-bit targets mkclone builds for.
    unsafe { p.cast::<i64>().as_mut() }.ok_or(ibm::TOO_SMALL)
}

/// The rule array as input: `count` 8-byte keywords.
///
/// # Safety
/// `count` points to a `long`; `rules` to `count * 8` bytes.
// SAFETY: a contract for callers, stated under "# Safety" above; every caller is an
// exported verb handing on the application's pointers, which CCA's convention makes valid.
unsafe fn rules<'a>(count: *mut c_long, rules: *mut c_uchar) -> Result<Rules<'a>, Codes> {
    // SAFETY: the caller's contract.
    let n = unsafe { count.as_ref() }.copied().ok_or(ibm::BAD_COUNT)?;
    if !(0..=16).contains(&n) {
        return Err(ibm::BAD_COUNT);
    }
    if n == 0 {
        return Ok(Rules {
            count: 0,
            array: &[],
        });
    }
    if rules.is_null() {
        return Err(ibm::BAD_COUNT);
    }
    // SAFETY: the caller's contract.
    let array = unsafe { std::slice::from_raw_parts(rules, n as usize * 8) };
    Ok(Rules { count: n, array })
}

const OK: Codes = machine::codes(0, 0);

/// Exports one function of the library: `#[no_mangle] extern "C"` with the return and
/// reason codes first (every export of csulcca.h has them), then `$param`s; the body runs
/// through `enter` on the machine (`$m`) and answers the codes it stores.
///
/// A macro only because an exported C function's parameter list cannot be produced by a
/// Rust function or generic: it writes the export boilerplate (signature, `enter`, the
/// unsafe block) and nothing else; each function's logic is its body below (and
/// hostlib-sim's verbs.rs). The caller's `# Safety` section is the C contract: every
/// pointer null or as the header describes it, and the body reads the pointers only
/// through `slice`, `fixed` and `long`, which hold it.
macro_rules! export {
    (
        $(#[$doc:meta])*
        fn $name:ident(|$m:pat_param| $($param:ident: $ty:ty),* $(,)?)
        $body:block
    ) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $name(rc: *mut c_long, rs: *mut c_long, $($param: $ty),*) {
            // SAFETY: the C contract in the function's `# Safety` section.
            unsafe { enter(stringify!($name), rc, rs, |$m| $body) }
        }
    };
}

/// A CCA verb: `export!` with the head every verb but CSUACFV shares in
/// vendor-headers/csulcca.h after the codes (exit data, which mkclone's callers never
/// pass, the rule-array count and the rule array), the rule array already read (`$n`
/// keywords in `$r`) when the body runs.
macro_rules! cca_verb {
    (
        $(#[$doc:meta])*
        fn $name:ident(|$m:pat_param, $r:ident| $($param:ident: $ty:ty),* $(,)?)
        $body:block
    ) => {
        export! {
            $(#[$doc])*
            ///
            /// # Safety
            /// The C contract of the verb (vendor-headers/csulcca.h).
            fn $name(|$m|
                _exit_len: *mut c_long,
                _exit: *mut c_uchar,
                count: *mut c_long,
                rule_array: *mut c_uchar,
                $($param: $ty),*
            ) {
                let $r = rules(count, rule_array)?;
                $body
            }
        }
    };
}

export! {
    /// CSUACFQ. The output elements are written over the rule array, which (as IBM
    /// documents) the caller sized for them; the count is updated.
    ///
    /// # Safety
    /// The C contract of CSUACFQ (vendor-headers/csulcca.h).
    fn CSUACFQ(|m|
        _exit_len: *mut c_long,
        _exit: *mut c_uchar,
        count: *mut c_long,
        rule_array: *mut c_uchar,
        verb_data_length: *mut c_long,
        verb_data: *mut c_uchar,
    ) {
        // Copied: the answer is written over the rule array.
        let input = rules(count, rule_array)?;
        let (n, input) = (input.count, input.array.to_vec());
        let data = slice(verb_data_length, verb_data)?;
        let mut none = 0i64;
        let len = match long(verb_data_length) {
            Ok(l) => l,
            Err(_) => &mut none,
        };
        let elements = verbs::csuacfq(m, Rules { count: n, array: &input }, (len, data))?;
        let out = std::slice::from_raw_parts_mut(rule_array, elements.len() * 8);
        for (i, e) in elements.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(e);
        }
        *count = elements.len() as c_long;
        Ok(OK)
    }
}

export! {
    /// CSUACFV: the version string (zkey parses "%u.%u.%uz%s"). It fits, with its NUL, the
    /// 20-byte buffer zkey (s390-tools zkey/cca.c, get_cca_version) and opencryptoki's CCA
    /// token (cca_get_version) hand over; the version "0.0.0" is no IBM release.
    ///
    /// # Safety
    /// The C contract of CSUACFV.
    fn CSUACFV(|m| _exit_len: *mut c_long, _exit: *mut c_uchar, len: *mut c_long, data: *mut c_uchar) {
        let out = slice(len, data)?;
        match m.control().version {
            Some(version) => verbs::put((long(len)?, out), &[version.as_bytes(), b"\0"].concat())?,
            None => verbs::put((long(len)?, out), b"0.0.0zMKCLONE-SIM\0")?,
        }
        Ok(OK)
    }
}

/// CSUACRA and CSUACRD: one body, `allocate` telling them apart.
macro_rules! resource_verb {
    ($name:ident, $allocate:expr) => {
        cca_verb! {
            /// CSUACRA / CSUACRD.
            fn $name(|m, r| name_len: *mut c_long, name: *mut c_uchar) {
                verbs::resource(m, $allocate, r, slice(name_len, name)?)?;
                Ok(OK)
            }
        }
    };
}
resource_verb!(CSUACRA, true);
resource_verb!(CSUACRD, false);

cca_verb! {
    /// CSUAACM.
    fn CSUAACM(|m, r| name: *mut c_uchar, out_len: *mut c_long, out: *mut c_uchar) {
        let data = slice(out_len, out)?;
        verbs::get_role(m, r, fixed(name, 8)?, (long(out_len)?, data))?;
        Ok(OK)
    }
}

// One line per CCA parameter: a (length, buffer) pair or a fixed field.
cca_verb! {
    /// CSNDPKB.
    fn CSNDPKB(|_, r|
        kvs_len: *mut c_long, kvs: *mut c_uchar,
        name_len: *mut c_long, name: *mut c_uchar,
        _cd_len: *mut c_long, _cd: *mut c_uchar,
        _r2_len: *mut c_long, _r2: *mut c_uchar,
        _r3_len: *mut c_long, _r3: *mut c_uchar,
        _r4_len: *mut c_long, _r4: *mut c_uchar,
        _r5_len: *mut c_long, _r5: *mut c_uchar,
        token_len: *mut c_long, token: *mut c_uchar,
    ) {
        let out = slice(token_len, token)?;
        let (kvs, name) = (slice(kvs_len, kvs)?, slice(name_len, name)?);
        verbs::csndpkb(r, kvs, name, (long(token_len)?, out))?;
        Ok(OK)
    }
}

cca_verb! {
    /// CSNDPKG.
    fn CSNDPKG(|m, r|
        regen_len: *mut c_long, regen: *mut c_uchar,
        skel_len: *mut c_long, skel: *mut c_uchar,
        _transport: *mut c_uchar,
        out_len: *mut c_long, out: *mut c_uchar,
    ) {
        let o = slice(out_len, out)?;
        let (regen, skel) = (slice(regen_len, regen)?, slice(skel_len, skel)?);
        verbs::csndpkg(m, r, regen, skel, (long(out_len)?, o))?;
        Ok(OK)
    }
}

cca_verb! {
    /// CSNDPKX.
    fn CSNDPKX(|m, r|
        src_len: *mut c_long, src: *mut c_uchar,
        out_len: *mut c_long, out: *mut c_uchar,
    ) {
        let o = slice(out_len, out)?;
        verbs::csndpkx(m, r, slice(src_len, src)?, (long(out_len)?, o))?;
        Ok(OK)
    }
}

cca_verb! {
    /// CSNDRKL: `labels` holds `*listed` 64-byte labels.
    fn CSNDRKL(|m, r|
        mask: *mut c_uchar,
        total: *mut c_long,
        listed: *mut c_long,
        labels: *mut c_uchar,
    ) {
        let listed = long(listed)?;
        let room = usize::try_from(*listed).unwrap_or(0);
        let labels = if room == 0 {
            &mut [][..]
        } else {
            fixed(labels, room * 64)?
        };
        verbs::csndrkl(m, r, fixed(mask, 64)?, long(total)?, listed, labels)?;
        Ok(OK)
    }
}

cca_verb! {
    /// CSNDRKD.
    fn CSNDRKD(|m, r| key: *mut c_uchar) {
        verbs::csndrkd(m, r, fixed(key, 64)?)?;
        Ok(OK)
    }
}

/// CSNDPKH and CSNDPKR: the same parameters, each its verbs.rs function.
macro_rules! registry_verb {
    ($name:ident, $f:path) => {
        cca_verb! {
            /// CSNDPKH / CSNDPKR.
            fn $name(|m, r| name: *mut c_uchar, data_len: *mut c_long, data: *mut c_uchar) {
                $f(m, r, fixed(name, 64)?, slice(data_len, data)?)?;
                Ok(OK)
            }
        }
    };
}
registry_verb!(CSNDPKH, verbs::csndpkh);
registry_verb!(CSNDPKR, verbs::csndpkr);

cca_verb! {
    /// CSUAMKD.
    fn CSUAMKD(|m, r|
        share_index: *mut c_long,
        private_key: *mut c_uchar,
        certifying_key: *mut c_uchar,
        cert_len: *mut c_long, cert: *mut c_uchar,
        key_len: *mut c_long, key: *mut c_uchar,
        info_len: *mut c_long, info: *mut c_uchar,
    ) {
        let index = *long(share_index)?;
        let (k, i) = (slice(key_len, key)?, slice(info_len, info)?);
        let (private_key, certifying_key) = (fixed(private_key, 64)?, fixed(certifying_key, 64)?);
        let cert = slice(cert_len, cert)?;
        let (key, info) = ((long(key_len)?, k), (long(info_len)?, i));
        verbs::csuamkd(m, r, index, private_key, certifying_key, cert, key, info)
    }
}

cca_verb! {
    /// CSNBMKP (libcsulccamk.so exports it; so does this library).
    fn CSNBMKP(|m, r| _key_part: *mut c_uchar) {
        verbs::csnbmkp(m, r)
    }
}

export! {
    /// PROJECT-ASSIGNED (never in IBM's library): one request message in mkclone's own
    /// encoding (crates/cca) to the allocated card, the reply message back.
    ///
    /// # Safety
    /// `request` holds `*request_length` bytes; `reply` has room for `*reply_length` bytes.
    fn mkclone_simlib_ext(|m|
        request_length: *mut c_long,
        request: *mut c_uchar,
        reply_length: *mut c_long,
        reply: *mut c_uchar,
    ) {
        let message = slice(request_length, request)?.to_vec();
        let out = slice(reply_length, reply)?;
        let apqn = m.apqn()?;
        let answer = m.exchange(apqn, &message)?;
        verbs::put((long(reply_length)?, out), &answer)?;
        Ok(OK)
    }
}

export! {
    /// PROJECT-ASSIGNED (never in IBM's library): create a factory-fresh simulated card
    /// with this serial number as the next adapter of the library's domain (`mkclone sim
    /// init`). Return code 0: created; 4/0: a card with this serial exists already.
    ///
    /// # Safety
    /// `serial` holds `*serial_length` bytes.
    fn mkclone_simlib_create_card(|m| serial_length: *mut c_long, serial: *mut c_uchar) {
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
    }
}
