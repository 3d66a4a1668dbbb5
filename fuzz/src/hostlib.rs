//! The CCA host-library boundary, from both sides:
//!
//! - `cca_host_args`: the arguments of a verb call as an application hands them to the
//!   simulated CCA host library (crates/hostlib-sim), through its exported C functions:
//!   rule-array count and keywords, lengths, buffers, fixed fields, null pointers;
//! - `hostlib_answers`: what a (hostile) library answers to mkclone's host side
//!   (crates/hostlib): return and reason codes, returned lengths, rule-array counts and
//!   elements, output bytes, the CSUAACM GET-ROLE role.

use std::cell::RefCell;
use std::ptr::null_mut;
use std::sync::{Arc, Mutex, Once, OnceLock};

use libc::{c_long, c_uchar, c_void};
use mkclone_backend::{
    Backend, Certificate, CloneableKind, Eid, GenerateRequest, HashAlgorithm, InstallRequest,
    KeyLabel, KeyRole, MofN, ObtainRequest, Operation, PublicKeyHash, PublicKeyToken,
    RsaModulusBits, SealedShare, SerialNumber, ShareIndex, SubjectInfo,
};
use mkclone_cca::parm::Keyword;
use mkclone_hostlib::access::{self, Role};
use mkclone_hostlib::args::{Param, Verb};
use mkclone_hostlib::library::{Shared, fuzzing::shared_over};
use mkclone_hostlib::{HostlibBackend, HostlibError, verbs};
use mkclone_simcca as sim;

use crate::alloc_cap::{binary_cap, capped};
use crate::guarded::{self, SLOT};
use crate::shown;

/// The input, read front to back; past its end every byte is 0.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        b
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes([self.byte(), self.byte()])
    }
    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.at = self.at.saturating_add(n);
        &self.data[start..end]
    }
    /// `n` bytes, padded with `pad` past the end of the input.
    fn padded(&mut self, n: usize, pad: u8) -> Vec<u8> {
        let mut v = self.take(n).to_vec();
        v.resize(n, pad);
        v
    }
}

// ---- cca_host_args ----------------------------------------------------------------------

/// One parameter of an export after the head, as vendor-headers/csulcca.h lists them.
#[derive(Clone, Copy)]
enum P {
    /// A length (`long *`, in/out) and the buffer it measures.
    Buf,
    /// A buffer of a size the verb fixes.
    Field(usize),
    /// One `long *`.
    Long,
    /// CSNDRKL's label list: as many 64-byte labels as the `Long` before it says.
    Labels,
}

/// The library's exports: name, whether the CCA head (rule-array count and array)
/// precedes the parameters, the parameters. The first input byte chooses one.
const EXPORTS: [(&str, bool, &[P]); 16] = [
    ("CSUACFQ", true, &[P::Buf]),
    ("CSUACFV", false, &[P::Buf]),
    ("CSUACRA", true, &[P::Buf]),
    ("CSUACRD", true, &[P::Buf]),
    ("CSUAACM", true, &[P::Field(8), P::Buf]),
    ("CSNDPKB", true, &[P::Buf; 8]),
    ("CSNDPKG", true, &[P::Buf, P::Buf, P::Field(64), P::Buf]),
    ("CSNDPKX", true, &[P::Buf, P::Buf]),
    (
        "CSNDRKL",
        true,
        &[P::Field(64), P::Long, P::Long, P::Labels],
    ),
    ("CSNDRKD", true, &[P::Field(64)]),
    ("CSNDPKH", true, &[P::Field(64), P::Buf]),
    ("CSNDPKR", true, &[P::Field(64), P::Buf]),
    (
        "CSUAMKD",
        true,
        &[P::Long, P::Field(64), P::Field(64), P::Buf, P::Buf, P::Buf],
    ),
    ("CSNBMKP", true, &[P::Field(24)]),
    ("mkclone_simlib_ext", false, &[P::Buf, P::Buf]),
    ("mkclone_simlib_create_card", false, &[P::Buf]),
];

/// The room CSUACFQ's caller gives the rule array for the elements it answers
/// (opencryptoki's CCA_RULE_ARRAY_SIZE, 256 bytes; crates/hostlib's `RULE_ROOM`).
const CFQ_RULE_ROOM: usize = 32 * 8;

/// Every return/reason pair the simulated library answers by itself (no card answers
/// here): success; IBM's codes of hostlib-sim's machine.rs `ibm` (keyword 33, combination
/// 34, rule count 35, verb data or output too small 72); the codes its verbs.rs cites for
/// one verb each (a label 8/32, CSNDPKB's key values or name 8/43, CSNDPKG's skeleton
/// 8/47, CSUAACM's unknown role 8/772, CSUAMKD's share data, EID and key 8/1029-1031,
/// CSNDPKH's hash 8/1032, a certificate 8/1035); its project-assigned codes (machine.rs
/// `project`: no adapter 12/X'F012', card unavailable 12/X'F013', unsupported
/// 8/X'F014'); and `mkclone_simlib_create_card`'s "exists already" 4/0.
fn documented(rc: c_long, rs: c_long) -> bool {
    matches!(
        (rc, rs),
        (0, 0)
            | (4, 0)
            | (8, 32..=35)
            | (8, 43)
            | (8, 47)
            | (8, 72)
            | (8, 772)
            | (8, 1029..=1032)
            | (8, 1035)
            | (12, 0xF012)
            | (12, 0xF013)
            | (8, 0xF014)
    )
}

/// The simulated machine of the library: a home under /dev/null, so that no card, no
/// `simlib.json` and no card directory can ever exist there (each call's look-ups fail at
/// once, `mkclone_simlib_create_card` cannot write a card): the calls decode their
/// arguments and stop where they would need a card, with no file read or written and no
/// key generated.
fn init_sim_home() {
    static HOME: Once = Once::new();
    HOME.call_once(|| {
        // SAFETY: set once, before the library's first call reads it, from the only thread
        // that calls into the library (libFuzzer's); no other thread reads the environment.
        unsafe { std::env::set_var("MKCLONE_SIMLIB_DIR", "/dev/null/mkclone-fuzz") };
    });
}

/// What was handed for one (length, buffer) pair.
struct Handed {
    /// Index of its length in `longs`.
    long: usize,
    /// The length handed (the buffer has `max(len, 0)` bytes).
    len: c_long,
    /// The length pointer was null.
    len_null: bool,
}

/// Target `cca_host_args`. Input: export (byte, modulo 16), rule-array count (signed
/// byte), null mask (bit i: parameter i's pointer null, i < 6; bit 6 the rule array, bit
/// 7 the count), the rule array (count × 8 bytes, for counts 0..=16), then per parameter:
/// a buffer as its length (big-endian i16; X'8000' is a null length pointer) and that
/// many bytes (zeros past the input's end); a fixed field as its bytes (blanks past the
/// end); a `long` as a big-endian i16 (CSNDRKL's label count at most 1024, the room of
/// a slot).
///
/// Every buffer handed is exactly as long as its length (or count × 8, 64 × labels) and
/// ends at a guard page: a read or write past it faults. Checked: the codes are ones the
/// library documents; a returned length beyond the buffer comes only with 8/72 ("too
/// small", the length needed); CSNDRKL lists no more labels than it was given room for;
/// CSUACFQ's element count fits the room; no allocation beyond the bytes handed.
pub fn cca_host_args(data: &[u8]) {
    init_sim_home();
    let mut input = Cursor::new(data);
    let export = usize::from(input.byte()) % EXPORTS.len();
    let (name, has_rules, params) = EXPORTS[export];
    let count = c_long::from(input.byte() as i8);
    let nulls = input.byte();

    // The values first, then the pointers to them (nothing moves after).
    let mut longs: [c_long; 24] = [0; 24];
    longs[0] = -1; // return code
    longs[1] = -1; // reason code
    longs[2] = 0; // exit data length: mkclone's callers, as zkey's, pass none
    longs[3] = count;
    let mut next_long = 4;
    let mut slot = 0;
    let mut total = 0usize;
    let mut rules: *mut u8 = null_mut();
    if has_rules {
        let n = usize::try_from(count.clamp(0, 16)).unwrap_or(0) * 8;
        let mut array = input.padded(n, b' ');
        if name == "CSUACFQ" {
            array.resize(CFQ_RULE_ROOM.max(n), b' ');
        }
        total += array.len();
        rules = guarded::place(slot, &array);
        slot += 1;
        if nulls & 0x40 != 0 {
            rules = null_mut();
        }
    }
    // Each parameter: (index in `longs` or none, data pointer).
    let mut placed: Vec<(Option<usize>, *mut u8)> = Vec::new();
    let mut handed: Vec<Handed> = Vec::new();
    let mut listed_room = 0usize;
    for (i, p) in params.iter().enumerate() {
        let null = i < 6 && nulls & (1 << i) != 0;
        let (long, bytes) = match p {
            P::Buf => {
                let raw = input.i16();
                let len = c_long::from(raw);
                let room = usize::try_from(len).unwrap_or(0);
                longs[next_long] = len;
                handed.push(Handed {
                    long: next_long,
                    len,
                    len_null: raw == i16::MIN,
                });
                next_long += 1;
                (Some(next_long - 1), input.padded(room, 0))
            }
            P::Field(n) => (None, input.padded(*n, b' ')),
            P::Long => {
                let mut v = c_long::from(input.i16());
                if matches!(params.get(i + 1), Some(P::Labels)) {
                    v = v.min((SLOT / 64) as c_long);
                    listed_room = usize::try_from(v).unwrap_or(0);
                }
                longs[next_long] = v;
                next_long += 1;
                (Some(next_long - 1), Vec::new())
            }
            P::Labels => (None, input.padded(listed_room * 64, b' ')),
        };
        let pointer = if matches!(p, P::Long) {
            null_mut()
        } else {
            total += bytes.len();
            let at = guarded::place(slot, &bytes);
            slot += 1;
            if null { null_mut() } else { at }
        };
        placed.push((long, pointer));
        // A `long *` parameter's null is its own pointer, set below.
        if matches!(p, P::Long) && null {
            placed.last_mut().expect("just pushed").0 = None;
        }
    }
    let before = longs;

    let base = longs.as_mut_ptr();
    // SAFETY: every index is below the array's length (24 > 4 + the most parameters).
    let at = |i: usize| unsafe { base.add(i) };
    let mut args: Vec<*mut c_void> = Vec::new();
    for ((long, pointer), p) in placed.iter().zip(params) {
        match p {
            P::Buf => {
                let h = handed
                    .iter()
                    .find(|h| Some(h.long) == *long)
                    .expect("every buffer has its length");
                args.push(if h.len_null {
                    null_mut()
                } else {
                    at(h.long).cast()
                });
                args.push(pointer.cast());
            }
            P::Long => args.push(long.map_or(null_mut(), |l| at(l).cast())),
            P::Field(_) | P::Labels => args.push(pointer.cast()),
        }
    }
    let (rc, rs, exit_len) = (at(0), at(1), at(2));
    let count_p = if nulls & 0x80 != 0 { null_mut() } else { at(3) };
    let exit: *mut c_uchar = null_mut();
    let a = |i: usize| args[i];
    let cap = binary_cap(total.saturating_add(data.len()));
    // One export's call: the head its C declaration begins with (by default the CCA
    // head: codes, exit data, rule-array count and array), then `args` at these indices.
    macro_rules! call {
        ($f:path; $($i:literal),*) => {
            call!($f[rc, rs, exit_len, exit, count_p, rules]; $($i),*)
        };
        ($f:path[$($head:expr),*]; $($i:literal),*) => {
            $f($($head,)* $(a($i).cast()),*)
        };
    }
    // SAFETY: each export is called with the parameter list its C declaration has
    // (vendor-headers/csulcca.h; hostlib-sim's lib.rs), every pointer null or to a `long`
    // in `longs` or to a guarded buffer exactly as long as the length or count handed
    // with it (fixed fields as long as the verb fixes them); all outlive the call.
    capped(cap, || unsafe {
        match export {
            0 => call!(sim::CSUACFQ; 0, 1),
            1 => call!(sim::CSUACFV[rc, rs, exit_len, exit]; 0, 1),
            2 => call!(sim::CSUACRA; 0, 1),
            3 => call!(sim::CSUACRD; 0, 1),
            4 => call!(sim::CSUAACM; 0, 1, 2),
            5 => call!(sim::CSNDPKB; 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            6 => call!(sim::CSNDPKG; 0, 1, 2, 3, 4, 5, 6),
            7 => call!(sim::CSNDPKX; 0, 1, 2, 3),
            8 => call!(sim::CSNDRKL; 0, 1, 2, 3),
            9 => call!(sim::CSNDRKD; 0),
            10 => call!(sim::CSNDPKH; 0, 1, 2),
            11 => call!(sim::CSNDPKR; 0, 1, 2),
            12 => call!(sim::CSUAMKD; 0, 1, 2, 3, 4, 5, 6, 7, 8),
            13 => call!(sim::CSNBMKP; 0),
            14 => call!(sim::mkclone_simlib_ext[rc, rs]; 0, 1, 2, 3),
            _ => call!(sim::mkclone_simlib_create_card[rc, rs]; 0, 1),
        }
    });
    let after = longs;
    let (rc, rs) = (after[0], after[1]);
    assert!(
        documented(rc, rs),
        "{name} answered {rc}/{rs}, a code the simulated library does not document"
    );
    for h in &handed {
        let returned = after[h.long];
        if !h.len_null && returned > h.len.max(0) {
            assert_eq!(
                (rc, rs),
                (8, 72),
                "{name} returned length {returned} for a buffer of {} without refusing the call as too small",
                h.len
            );
        }
    }
    if rc == 0 && name == "CSNDRKL" {
        let (listed_before, listed_after) = (before[5], after[5]);
        assert!(
            (0..=listed_before.max(0)).contains(&listed_after),
            "CSNDRKL listed {listed_after} labels in room for {listed_before}"
        );
    }
    if rc == 0 && name == "CSUACFQ" {
        let n = after[3];
        assert!(
            (0..=(CFQ_RULE_ROOM / 8) as c_long).contains(&n),
            "CSUACFQ answered {n} elements in a rule array of room for {}",
            CFQ_RULE_ROOM / 8
        );
    }
}

// ---- hostlib_answers ----------------------------------------------------------------------

thread_local! {
    /// What the hostile library answers next: the rest of the input.
    static SCRIPT: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

fn script_byte() -> u8 {
    SCRIPT.with(|s| {
        let mut s = s.borrow_mut();
        let b = s.0.get(s.1).copied().unwrap_or(0);
        s.1 = s.1.saturating_add(1);
        b
    })
}

fn script_i16() -> i16 {
    i16::from_be_bytes([script_byte(), script_byte()])
}

/// The codes of one answer: a byte choosing success (0..=9 of its low nibble), a warning,
/// an error, a severe error, -1, or any 64-bit value (14: the next 8 bytes); a reason
/// code (big-endian u16) after any nonzero return code.
///
/// # Safety
/// `rc` and `rs` point to writable `long`s (the host side passes its own).
unsafe fn codes(rc: *mut c_long, rs: *mut c_long) {
    let b = script_byte() & 0x0F;
    let code: c_long = match b {
        0..=9 => 0,
        10 | 15 => 4,
        11 => 8,
        12 => 12,
        13 => -1,
        _ => c_long::from_be_bytes(std::array::from_fn(|_| script_byte())),
    };
    let reason = if code == 0 {
        0
    } else {
        c_long::from(u16::from_be_bytes([script_byte(), script_byte()]))
    };
    // SAFETY: the caller's contract.
    unsafe {
        *rc = code;
        *rs = reason;
    }
}

/// A returned length: a big-endian i16, except X'7FFF' one byte more than the room and
/// X'7FFE' the largest `long`.
fn returned_length(room: c_long) -> c_long {
    match script_i16() {
        0x7FFF => room.saturating_add(1),
        0x7FFE => c_long::MAX,
        v => c_long::from(v),
    }
}

/// Answer an output buffer: write up to its room (the length handed) from the script,
/// and return a length of the script's choice, which may exceed the room: a hostile
/// library cannot be kept from saying so, only from being believed.
///
/// # Safety
/// `len` points to the length handed with `data`, a buffer of at least that many bytes.
unsafe fn output(len: *mut c_long, data: *mut c_uchar) {
    // SAFETY: the caller's contract.
    let room = unsafe { *len }.max(0);
    let returned = returned_length(room);
    let n = usize::try_from(returned.clamp(0, room)).unwrap_or(0);
    for i in 0..n {
        // SAFETY: i < n <= room, the buffer's length.
        unsafe { *data.add(i) = script_byte() };
    }
    // SAFETY: the caller's contract.
    unsafe { *len = returned };
}

type L = *mut c_long;
type B = *mut c_uchar;

// The hostile library: one function per verb type of vendor-headers/csulcca.h. Each
// answers codes, then its outputs. The host side (crates/hostlib `dispatch`) calls them
// with its own buffers, each at least as long as the length handed with it.

/// Hostile functions that answer codes, then each (length, buffer) pair listed after `=>`
/// as `output` does (a pair among the inputs is one a library may scribble on and whose
/// length it may change). Every function begins with the return and reason codes; a `cca`
/// one has the CCA head (exit data, rule-array count and array) before the parameters
/// given, a `plain` one only those.
macro_rules! hostile_fns {
    ($($head:ident fn $name:ident($($p:ident: $t:ty),*) => [$($l:ident, $d:ident);*];)*) => {$(
        hostile_fns!(@$head $name($($p: $t),*) [$($l, $d);*]);
    )*};
    (@cca $name:ident($($p:ident: $t:ty),*) [$($out:tt)*]) => {
        hostile_fns!(@plain $name(_el: L, _ex: B, _n: L, _r: B, $($p: $t),*) [$($out)*]);
    };
    (@plain $name:ident($($p:ident: $t:ty),*) [$($l:ident, $d:ident);*]) => {
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(rc: L, rs: L, $($p: $t),*) {
            // SAFETY: the host side's pointers, as `output` and `codes` require.
            unsafe {
                codes(rc, rs);
                $(output($l, $d);)*
            }
        }
    };
}

hostile_fns! {
    // CSUACRA, CSUACRD.
    cca fn resource(_l: L, _d: B) => [];
    plain fn csuacfv(_el: L, _ex: B, l: L, d: B) => [l, d];
    // CSUAACM's role out; CSNDPKH's and CSNDPKR's inputs.
    cca fn name_and_buffer(_f: B, l: L, d: B) => [l, d];
    cca fn csndpkb(_l1: L, _d1: B, _l2: L, _d2: B, _l3: L, _d3: B, _l4: L, _d4: B,
        _l5: L, _d5: B, _l6: L, _d6: B, _l7: L, _d7: B, l8: L, d8: B) => [l8, d8];
    cca fn csndpkg(_l1: L, _d1: B, _l2: L, _d2: B, _t: B, l: L, d: B) => [l, d];
    cca fn csndpkx(_l1: L, _d1: B, l: L, d: B) => [l, d];
    // CSNDRKD, CSNBMKP.
    cca fn one_field(_f: B) => [];
    // OBTAIN's outputs; INSTALL's inputs.
    cca fn csuamkd(_index: L, _private: B, _certifying: B, _cl: L, _cd: B, kl: L, kd: B,
        il: L, id: B) => [kl, kd; il, id];
    plain fn ext(_ql: L, _q: B, l: L, d: B) => [l, d];
    plain fn create_card(_l: L, _d: B) => [];
}

unsafe extern "C" fn csuacfq(rc: L, rs: L, _el: L, _ex: B, count: L, rules: B, vl: L, vd: B) {
    // SAFETY: the host side's pointers, as `output` and `codes` require; CSUACFQ's rule
    // array has the room crates/hostlib gives it (`verbs::RULE_ROOM` elements).
    unsafe {
        codes(rc, rs);
        let returned = c_long::from(script_byte() as i8);
        let n = usize::try_from(returned.clamp(0, verbs::RULE_ROOM as c_long)).unwrap_or(0);
        for i in 0..n * 8 {
            *rules.add(i) = script_byte();
        }
        *count = returned;
        output(vl, vd);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn csndrkl(
    rc: L,
    rs: L,
    _el: L,
    _ex: B,
    _n: L,
    _r: B,
    _m: B,
    total: L,
    listed: L,
    _labels: B,
) {
    // SAFETY: the host side's pointers, as `codes` requires; `total` and `listed` point to
    // the host side's `long`s.
    unsafe {
        codes(rc, rs);
        *total = c_long::from(script_i16());
        *listed = returned_length(*listed);
    }
}

/// The hostile library, as the host side's `Shared` (one per "simulated" flag: a library
/// with the simulated library's extension, and one without, as IBM's).
fn hostile(simulated: bool) -> Arc<Mutex<Shared>> {
    static LIBS: OnceLock<[Arc<Mutex<Shared>>; 2]> = OnceLock::new();
    let libs = LIBS.get_or_init(|| {
        let f = |p: *const ()| p;
        let verbs: Vec<(Verb, *const ())> = vec![
            (Verb::Csuacfq, f(csuacfq as *const ())),
            (Verb::Csuacfv, f(csuacfv as *const ())),
            (Verb::Csuacra, f(resource as *const ())),
            (Verb::Csuacrd, f(resource as *const ())),
            (Verb::Csuaacm, f(name_and_buffer as *const ())),
            (Verb::Csndpkb, f(csndpkb as *const ())),
            (Verb::Csndpkg, f(csndpkg as *const ())),
            (Verb::Csndpkx, f(csndpkx as *const ())),
            (Verb::Csndrkl, f(csndrkl as *const ())),
            (Verb::Csndrkd, f(one_field as *const ())),
            (Verb::Csndpkh, f(name_and_buffer as *const ())),
            (Verb::Csndpkr, f(name_and_buffer as *const ())),
            (Verb::Csuamkd, f(csuamkd as *const ())),
            (Verb::Csnbmkp, f(one_field as *const ())),
        ];
        // SAFETY: each function above has the parameter list of its verb's type in
        // vendor-headers/csulcca.h (ffi::<VERB>_t), and `ext`/`create_card` those of the
        // simulated library's two entry points.
        unsafe {
            [
                shared_over(&verbs, None, None),
                shared_over(&verbs, Some(ext), Some(create_card)),
            ]
        }
    });
    libs[usize::from(simulated)].clone()
}

/// The arguments of every operation, which mkclone makes (not the library): the golden
/// certificate (with an EID) and sealed share of crates/formats, a golden token.
struct Fixtures {
    generate: GenerateRequest,
    obtain: ObtainRequest,
    install: InstallRequest,
    label: KeyLabel,
    hash: PublicKeyHash,
    certificate: Certificate,
    token: PublicKeyToken,
    eid: Eid,
    subject: SubjectInfo,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let label = |t: &str| KeyLabel::new(t).expect("fixture label");
        let certificate = Certificate::new(
            include_bytes!(
                "../seeds/certificate/certificate_section_with_information_subsection.3519b80372736792"
            )
            .to_vec(),
        )
        .expect("golden certificate");
        let token = PublicKeyToken::new(
            include_bytes!(
                "../seeds/pka_token/public_key_token_with_certificate_section.5972bc92c7c507ef"
            )
            .to_vec(),
        )
        .expect("golden token");
        let share = SealedShare::new(
            include_bytes!("../seeds/sealed_share/sealed_share_container.ca64e75e9b295402")
                .to_vec(),
        )
        .expect("golden sealed share");
        let eid = Eid::new("TARGET.1").expect("fixture EID");
        Fixtures {
            generate: GenerateRequest {
                label: label("MKCLONE.CSR"),
                role: KeyRole::Csr,
                bits: RsaModulusBits::B2048,
                clone: true,
            },
            obtain: ObtainRequest {
                kind: CloneableKind::Asym,
                index: ShareIndex::new(2).expect("fixture index"),
                css_label: label("MKCLONE.CSS"),
                sa_name: label("MKCLONE.SA"),
                csr_certificate: certificate.clone(),
            },
            install: InstallRequest {
                kind: CloneableKind::Sym,
                csr_label: label("MKCLONE.CSR"),
                sa_name: label("MKCLONE.SA"),
                css_certificate: certificate.clone(),
                share,
            },
            label: label("MKCLONE.CSS"),
            hash: PublicKeyHash::new(HashAlgorithm::Sha256, &[0xA5; 32]).expect("fixture hash"),
            certificate,
            token,
            subject: SubjectInfo {
                eid: Some(eid.clone()),
                serial: Some(SerialNumber::new("93AB1234").expect("fixture serial")),
            },
            eid,
        }
    })
}

/// The room the host side gives its largest output buffer (CSNDRKL's 256 labels of 64
/// bytes), besides what the input justifies: an answer must never make it allocate more.
const HOST_ROOM: usize = verbs::LABELS_ROOM * 64;

/// Target `hostlib_answers`. Input: an operation (byte), flags (bit 0: the library is the
/// simulated one, with the extension), a role offset to check (2 bytes), then what the
/// library answers, call after call (`codes`, `output`, CSUACFQ's element count and
/// elements). The operations: each `Backend` operation of a `backend = "cca"` node, its
/// access audit (CSUAACM GET-ROLE read and decoded), the simulated card factory, and the
/// outputs of every verb builder's call read back through `Args`.
///
/// Checked besides no panic and the allocation cap: a returned length beyond the buffer
/// is refused by `Args::output`, never read, and a length within it gives exactly that
/// many bytes; an element is returned only within the count and the room; the access
/// audit accounts for every required point (checked or left to the operator), and a
/// decoded role's answer for the offset matches a reading of the role's bytes by hand.
pub fn hostlib_answers(data: &[u8]) {
    let fx = fixtures();
    let mut input = Cursor::new(data);
    let op = input.byte();
    let simulated = input.byte() & 1 != 0;
    let offset = u16::from_be_bytes([input.byte(), input.byte()]);
    let rest = data.get(4..).unwrap_or(&[]).to_vec();
    SCRIPT.with(|s| *s.borrow_mut() = (rest, 0));
    let shared = hostile(simulated);
    shared.lock().unwrap_or_else(|p| p.into_inner()).allocated = None;
    let cap = binary_cap(data.len()).saturating_add(HOST_ROOM);

    if op % 24 >= 20 {
        capped(cap, || verb_outputs(&shared, op % 24 - 20));
        return;
    }
    if op % 24 == 19 {
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = capped(cap, || guard.create_simulated_card("93AB1234")) {
            shown(&e, cap);
        }
        return;
    }
    if op % 24 == 18 {
        role_bytes(&input.data[input.at.min(data.len())..], offset, cap);
        return;
    }
    let mut node = HostlibBackend::over_shared(shared, 1, simulated, "DEFAULT");
    let kinds = CloneableKind::ALL;
    macro_rules! run {
        ($e:expr) => {{
            if let Err(e) = capped(cap, || $e) {
                shown(&e, cap);
            }
        }};
    }
    match op % 24 {
        0 => run!(node.status()),
        1 => run!(node.share_status()),
        2 => run!(node.generate_retained_key(&fx.generate)),
        3 => run!(node.retained_public_key(&fx.label)),
        4 => run!(node.delete_retained_key(&fx.label)),
        5 => run!(node.register_public_key_hash(&fx.label, &fx.hash, true)),
        6 => run!(node.register_public_key(&fx.label, &fx.certificate, true)),
        7 => run!(node.obtain_share(&fx.obtain)),
        8 => run!(node.install_share(&fx.install)),
        9 => run!(node.set_master_key(CloneableKind::Asym)),
        10 => run!(node.clear_new(CloneableKind::Sym)),
        11 => run!(node.load_random_master_key(CloneableKind::Asym)),
        12 => run!(node.set_eid(&fx.eid)),
        13 => run!(node.set_m_of_n(MofN::new(2, 3).expect("fixture m-of-n"))),
        14 => run!(node.list_retained_keys()),
        15 => run!(node.list_registrations()),
        16 => run!(node.certify_public_key(&fx.label, &fx.token, &fx.subject)),
        _ => {
            let ops = Operation::ALL;
            match capped(cap, || node.access_audit(&ops, &kinds)) {
                Err(e) => {
                    shown(&e, cap);
                }
                Ok(audit) => {
                    for op in ops {
                        for point in access::required(op, &kinds) {
                            let checked = audit
                                .checked
                                .iter()
                                .filter(|c| c.operation == op && c.point == point)
                                .count();
                            let by_hand = audit
                                .by_hand
                                .iter()
                                .any(|m| m.operation == op && m.what.contains(&point.to_string()));
                            assert!(
                                checked == 1 || (checked == 0 && by_hand),
                                "the audit lost point {point} of {op:?} (checked {checked} times)"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The role's bytes from the input, decoded as the access audit decodes GET-ROLE's
/// output, and asked about `offset` (and the points the audit asks about).
fn role_bytes(bytes: &[u8], offset: u16, cap: usize) {
    let role = match capped(cap, || Role::decode(bytes)) {
        Ok(r) => r,
        Err(e) => {
            capped(cap, || e.to_string());
            return;
        }
    };
    let mut points = vec![offset, access::READ_ROLE.offset];
    for op in Operation::ALL {
        points.extend(
            access::required(op, &CloneableKind::ALL)
                .iter()
                .map(|p| p.offset),
        );
    }
    for p in points {
        assert_eq!(
            role.enables(p),
            enabled_by_hand(bytes, p),
            "the role's answer for X'{p:04X}' differs from its bytes"
        );
    }
}

/// Whether the role's bytes enable `point`, read by hand from the layout ([LZ-ROLE], as
/// crates/hostlib's access.rs cites it): header of 44 bytes, segment count at 44, segments
/// from 48 (first 2, last 2, bitmap bytes 2, reserved 2, bitmap), most significant bit
/// first. Only called on a role that decoded.
fn enabled_by_hand(bytes: &[u8], point: u16) -> bool {
    let be = |at: usize| usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    let mut at = 48;
    for _ in 0..be(44) {
        let (first, last, n) = (be(at), be(at + 2), be(at + 4));
        let bitmap = &bytes[at + 8..at + 8 + n];
        let p = usize::from(point);
        if (first..=last).contains(&p) && bitmap[(p - first) / 8] & (0x80 >> ((p - first) % 8)) != 0
        {
            return true;
        }
        at += 8 + n;
    }
    false
}

/// One call of a verb builder's arguments (one per verb with outputs) through the host's
/// call path, then every output read back: `Args::output` refuses a returned length
/// beyond the buffer (and a negative one) and gives exactly the bytes of one within it;
/// `Args::element` returns only elements within the count and the room.
fn verb_outputs(shared: &Arc<Mutex<Shared>>, which: u8) {
    let fx = fixtures();
    let mut args = match which {
        0 => verbs::query("STATCRD2", verbs::VERB_DATA_ROOM),
        1 => verbs::get_role(b"DEFAULT "),
        2 => verbs::obtain(
            CloneableKind::Sym,
            1,
            "MKCLONE.CSS",
            "MKCLONE.SA",
            fx.certificate.as_bytes(),
        ),
        _ => verbs::public_key_extract("MKCLONE.CSR"),
    };
    let rooms: Vec<Option<usize>> = args
        .params
        .iter()
        .map(|p| match p {
            Param::Buf { data, .. } => Some(data.len()),
            _ => None,
        })
        .collect();
    let rule_room = args.rule_array.len();
    let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = guard.call(&mut args) {
        let _ = e.to_string();
        return;
    }
    for (i, room) in rooms.iter().enumerate() {
        let Some(room) = room else { continue };
        let returned = args.int(i).expect("a buffer has a length");
        match args.output(i) {
            Ok(bytes) => assert!(
                usize::try_from(returned).is_ok_and(|n| n == bytes.len() && n <= *room),
                "parameter {i}: returned length {returned}, room {room}, {} bytes read",
                bytes.len()
            ),
            Err(_) => assert!(
                usize::try_from(returned).map_or(true, |n| n > *room),
                "parameter {i}: a returned length {returned} within the room {room} was refused"
            ),
        }
    }
    let count = usize::try_from(args.rule_count).unwrap_or(0);
    for i in 0..(count + 2).min(64) {
        if let Some(e) = args.element(i) {
            assert!(i < count && i * 8 + 8 <= rule_room && e.len() == 8);
            let _ = Keyword::from_bytes(e.try_into().expect("8 bytes"));
        }
    }
    let _ = HostlibError::verb(
        "CSUACFQ",
        "reading the answer",
        args.return_code,
        args.reason_code,
    )
    .to_string();
}
