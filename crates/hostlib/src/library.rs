//! Loading IBM's CCA host library at run time and calling its verbs: the only module of
//! this crate with `unsafe` code (dlopen, dlsym, and the calls through the C ABI).
//!
//! As opencryptoki's CCA token and s390-tools' zkey do (cca_specific.c; zkey/cca.c), the
//! library is opened by name with dlopen and each verb resolved with dlsym; nothing is
//! linked, so mkclone builds and runs where CCA is not installed. Each loaded instance of
//! the library has one [`Shared`] per process, whichever name each node gives it
//! ([`open_shared`]): the adapter the library has allocated is state of that instance and
//! of the thread that allocated it (IBM scopes it to the thread), so its nodes take turns
//! under one lock, every call is made on the instance's one thread (`library_thread.rs`,
//! which also keeps signals off the calls), and they share one record of the allocation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libloading::Library;

use crate::args::{Args, Param, Slot, Verb, layout};
use crate::error::HostlibError;
use crate::ffi;
use crate::library_thread::{LibraryThread, Runner};
use crate::trace::Trace;

/// The name opencryptoki (CCASHAREDLIB) and zkey (CCA_LIBRARY_NAME) open: the dynamic
/// loader finds it where IBM's package installed it.
pub const DEFAULT_LIBRARY: &str = "libcsulcca.so";
/// The library that exports CSNBMKP (opencryptoki loads the verb from it since 2024).
pub const DEFAULT_MK_LIBRARY: &str = "libcsulccamk.so";
/// Where IBM's host libraries are offered (the address zkey's message gives).
pub const INSTALL_HINT: &str = "install IBM's CCA host libraries and tools for this platform (see \
     http://www.ibm.com/security/cryptocards), or name the library's path with `library = \"...\"` \
     (and `mk_library` for CSNBMKP) in the node's table";

/// The symbol only mkclone's simulated library exports: it marks the library as a
/// simulation (rehearsal only) and carries the project's own encodings.
pub const SIM_EXT_SYMBOL: &str = "mkclone_simlib_ext";
/// The simulated library's second extra symbol: create a simulated card (`sim init`).
pub const SIM_CREATE_CARD_SYMBOL: &str = "mkclone_simlib_create_card";

/// One opened library file with the verbs resolved from it.
pub struct Loaded {
    path: PathBuf,
    // Kept alive as long as the function pointers below are used.
    _lib: Library,
    verbs: BTreeMap<Verb, *const ()>,
    ext: ffi::mkclone_simlib_ext_t,
    create_card: ffi::mkclone_simlib_create_card_t,
}

// SAFETY: the raw pointers are addresses of functions in a library that stays loaded as
// long as `Loaded` lives. They are called only through `Shared`'s methods, that is under
// the `Mutex<Shared>` of the one `Shared` the process has for that library instance, and
// on that `Shared`'s library thread:
// `open_shared` keys its registry on the instance (not on the name a node gives it), and
// a CSNBMKP is claimed by one `Shared` only (`claim_mk`). So no two threads call into one
// instance at once.
unsafe impl Send for Loaded {}
// SAFETY: as for Send: the addresses are only read, and calls through them are serialised.
unsafe impl Sync for Loaded {}

impl Loaded {
    /// dlopen `name` (a path, or a bare name the loader searches for) and resolve `verbs`.
    fn open(name: &Path, verbs: &[Verb], what: &str) -> Result<Self, HostlibError> {
        // SAFETY: loading a shared library runs its initialisers. That is what opening the
        // CCA host library means (opencryptoki and zkey do the same); the path is the
        // user's configuration or IBM's default name.
        let lib = unsafe { Library::new(name) }.map_err(|e| HostlibError::LibraryMissing {
            what: what.to_string(),
            path: name.to_path_buf(),
            cause: e.to_string(),
        })?;
        let mut resolved = BTreeMap::new();
        for verb in verbs {
            let symbol = format!("{}\0", verb.symbol());
            // SAFETY: the symbol is looked up as an untyped address; it is only ever called
            // through the function type vendor-headers/csulcca.h gives that verb (`call`).
            let address = unsafe { lib.get::<*const ()>(symbol.as_bytes()) }
                .map(|s| *s)
                .map_err(|e| HostlibError::SymbolMissing {
                    symbol: verb.symbol(),
                    path: name.to_path_buf(),
                    cause: e.to_string(),
                })?;
            resolved.insert(*verb, address);
        }
        let ext_name = format!("{SIM_EXT_SYMBOL}\0");
        // SAFETY: as above; typed as mkclone_simlib_ext_t, the header's declaration.
        let ext = unsafe { lib.get::<ffi::mkclone_simlib_ext_t>(ext_name.as_bytes()) }
            .ok()
            .and_then(|s| *s);
        let create_name = format!("{SIM_CREATE_CARD_SYMBOL}\0");
        let create_card =
            // SAFETY: as above; typed as mkclone_simlib_create_card_t, the header's declaration.
            unsafe { lib.get::<ffi::mkclone_simlib_create_card_t>(create_name.as_bytes()) }
                .ok()
                .and_then(|s| *s);
        Ok(Self {
            path: name.to_path_buf(),
            _lib: lib,
            verbs: resolved,
            ext,
            create_card,
        })
    }

    /// Which loaded instance of a library this is: the address `verb` resolved to.
    ///
    /// The dynamic loader maps a library once per process and hands that one object back
    /// for every name leading to it: the same path, a bare name it finds on its search
    /// path, a symbolic or hard link (glibc compares the file's device and inode, and a
    /// bare name with the sonames of loaded objects). So the address is the same however a
    /// node spells the library, and another for another copy of it, which has code and
    /// state of its own. A key made by mkclone from the name (as written, `canonicalize`d,
    /// or `stat`ed) would have to redo the loader's search for a bare name and could
    /// disagree with it; this is the loader's own answer. Should `verb` come from a library
    /// the named one depends on, the address is that library's, whose state is the one
    /// the calls share. The registry keeps every instance it keys loaded, so no other
    /// library can later be mapped at an address that is a key.
    fn instance(&self, verb: Verb) -> Option<usize> {
        self.verbs.get(&verb).map(|a| *a as usize)
    }

    /// The address of CSNBMKP when this library exports it too (mkclone's simulated library
    /// does; IBM's libcsulcca.so does not, libcsulccamk.so does).
    fn csnbmkp(&self) -> Option<usize> {
        let name = format!("{}\0", Verb::Csnbmkp.symbol());
        // SAFETY: looked up as an untyped address, only compared, never called from here.
        unsafe { self._lib.get::<*const ()>(name.as_bytes()) }
            .ok()
            .map(|s| *s as usize)
    }
}

/// A library as nodes share it: the main library, CSNBMKP's library (opened when first
/// needed), the thread every call into it runs on, and the adapter that thread allocated
/// (IBM scopes adapter allocation to the thread: `library_thread.rs`). One per loaded
/// instance of the library ([`open_shared`]), so that its lock serialises every call into
/// the instance, one thread makes them, and `allocated` is that thread's record.
pub struct Shared {
    pub main: Loaded,
    pub mk: Option<Loaded>,
    /// CSNBMKP's library as the first node named it; the registry compares later nodes'
    /// with its own copy, so it is not changed after `open_shared`.
    pub(crate) mk_path: PathBuf,
    /// The adapter the library thread allocated last (`None`: autoselect was not disabled
    /// yet).
    pub allocated: Option<u8>,
    pub trace: Option<Trace>,
    /// Where the calls run: the instance's own thread.
    runner: Runner,
}

/// A function of a loaded library, moved to the library thread for one call.
struct Function(*const ());

// SAFETY: an address in a library that stays loaded while the `Shared` that owns it lives,
// and the `Shared` is borrowed (its lock held) until the library thread has made the call
// and answered (`Runner::run` waits). The address is called only there, one call at a time.
unsafe impl Send for Function {}

/// One loaded instance of the host library, as the registry keeps it.
struct Registered {
    shared: Arc<Mutex<Shared>>,
    /// The name the first node gave the library (`Shared::path`), for messages.
    path: PathBuf,
    /// CSNBMKP's library as the first node named it (`Shared::mk_path`), kept here so that a
    /// later node's can be compared without taking the `Shared`'s lock.
    mk_path: PathBuf,
}

/// The process's loaded host libraries.
#[derive(Default)]
struct Registry {
    /// Each instance by its key (`Loaded::instance` of CSUACRA, the verb that allocates
    /// the adapter).
    libraries: BTreeMap<usize, Registered>,
    /// Each CSNBMKP a `Shared` calls, or exports itself, by its address: that `Shared`'s key.
    /// A master-key library called from two `Shared`s would take calls from both locks at
    /// once, and go to whichever adapter its instance allocated last.
    mk_owners: BTreeMap<usize, usize>,
}

/// The registry, locked. A poisoned lock still holds valid entries. Taken while a
/// `Shared` is locked (`claim_mk`), never the other way round.
fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| Mutex::new(Registry::default()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The library at `path` (`mk_path` names CSNBMKP's library), with one `Shared` per loaded
/// instance and process: a node naming an instance already open gets its `Shared`, however
/// it spells the library (`Loaded::instance` says why the key is the loader's answer),
/// provided it names the same master-key library (`same_mk_library`).
pub fn open_shared(path: &Path, mk_path: &Path) -> Result<Arc<Mutex<Shared>>, HostlibError> {
    let mut registry = registry();
    // Loaded before the registry is consulted: only the loader knows whether `path` is an
    // instance already loaded under another name. If it is, `main` is one more reference
    // the loader counts, dropped (dlclose) on return; the registry's keeps it loaded.
    let main = Loaded::open(path, &Verb::MAIN, "the CCA host library")?;
    let key = main
        .instance(Verb::Csuacra)
        .ok_or_else(|| HostlibError::Internal("CSUACRA was not resolved".into()))?;
    if let Some(found) = registry.libraries.get(&key) {
        same_mk_library(found, path, mk_path)?;
        return Ok(found.shared.clone());
    }
    // A library that exports CSNBMKP itself: that CSNBMKP runs on this instance's state, so
    // no other `Shared` may call it as its master-key library (`claim_mk`).
    if let Some(own_mk) = main.csnbmkp() {
        if let Some(owner) = registry.mk_owners.get(&own_mk).copied()
            && owner != key
        {
            return Err(HostlibError::MkLibraryShared {
                mk: path.to_path_buf(),
                owner: owner_path(&registry, owner),
                path: path.to_path_buf(),
            });
        }
        registry.mk_owners.insert(own_mk, key);
    }
    let shared = Arc::new(Mutex::new(Shared {
        main,
        mk: None,
        mk_path: mk_path.to_path_buf(),
        allocated: None,
        trace: None,
        runner: Runner::Thread(LibraryThread::start()?),
    }));
    registry.libraries.insert(
        key,
        Registered {
            shared: shared.clone(),
            path: path.to_path_buf(),
            mk_path: mk_path.to_path_buf(),
        },
    );
    Ok(shared)
}

/// The name the first node gave the library registered under `key`.
fn owner_path(registry: &Registry, key: usize) -> PathBuf {
    registry
        .libraries
        .get(&key)
        .map_or_else(|| PathBuf::from("(unknown)"), |r| r.path.clone())
}

/// A node opening an instance already open must name the master-key library its `Shared`
/// loads (`mk_path`, the first node's): a second name would otherwise be ignored and the
/// node's CSNBMKP calls go to a library it did not name. The same name passes; another
/// name passes only if the loader resolves both to the same CSNBMKP, which needs both
/// loaded to compare (they are released again here).
fn same_mk_library(found: &Registered, path: &Path, mk_path: &Path) -> Result<(), HostlibError> {
    if found.mk_path == mk_path {
        return Ok(());
    }
    let what = "the CCA master-key library (CSNBMKP)";
    let first = Loaded::open(&found.mk_path, &[Verb::Csnbmkp], what);
    let this = Loaded::open(mk_path, &[Verb::Csnbmkp], what);
    let detail = match (&first, &this) {
        (Ok(a), Ok(b)) if a.instance(Verb::Csnbmkp) == b.instance(Verb::Csnbmkp) => {
            return Ok(());
        }
        (Ok(_), Ok(_)) => "two different libraries".to_string(),
        (Err(e), _) | (_, Err(e)) => format!("which could not be compared: {e}"),
    };
    Err(HostlibError::MkLibraryMismatch {
        path: path.to_path_buf(),
        first_path: found.path.clone(),
        first_mk: found.mk_path.clone(),
        mk: mk_path.to_path_buf(),
        detail,
    })
}

/// Record that `shared` calls the CSNBMKP of `mk`, unless another `Shared` does (or is the
/// library that exports it): then refused, as the calls would go to that library's
/// adapter and not be serialised with its other calls. A `Shared` whose library has no
/// CSUACRA (only the fuzzing entry point makes one) has no key and claims nothing.
fn claim_mk(shared: &Shared, mk: &Loaded) -> Result<(), HostlibError> {
    let (Some(key), Some(address)) = (
        shared.main.instance(Verb::Csuacra),
        mk.instance(Verb::Csnbmkp),
    ) else {
        return Ok(());
    };
    let mut registry = registry();
    let owner = *registry.mk_owners.entry(address).or_insert(key);
    if owner == key {
        return Ok(());
    }
    Err(HostlibError::MkLibraryShared {
        mk: mk.path.clone(),
        owner: owner_path(&registry, owner),
        path: shared.main.path.clone(),
    })
}

impl Shared {
    pub fn path(&self) -> &Path {
        &self.main.path
    }

    /// True when the library is mkclone's simulation (it exports the extension symbol).
    pub fn is_simulated(&self) -> bool {
        self.main.ext.is_some()
    }

    /// Run one verb call. The arguments are checked first against the verb's parameter
    /// list (`Args::check_shape`: kinds, buffer lengths, fixed-field sizes); the call is
    /// traced when tracing is on.
    pub fn call(&mut self, args: &mut Args) -> Result<(), HostlibError> {
        // Before CSNBMKP's library is loaded for a vector that would be refused anyway
        // (`dispatch` checks again, where the pointers are made).
        args.check_shape().map_err(HostlibError::Internal)?;
        let lengths_in = args.lengths();
        let rules_in = args.rule_keywords();
        let address = if args.verb == Verb::Csnbmkp {
            if self.mk.is_none() {
                let mk = Loaded::open(
                    &self.mk_path,
                    &[Verb::Csnbmkp],
                    "the CCA master-key library (CSNBMKP)",
                )?;
                claim_mk(self, &mk)?;
                self.mk = Some(mk);
            }
            self.mk
                .as_ref()
                .and_then(|l| l.verbs.get(&Verb::Csnbmkp).copied())
        } else {
            self.main.verbs.get(&args.verb).copied()
        };
        let Some(address) = address else {
            return Err(HostlibError::Internal(format!(
                "{} was not resolved",
                args.verb
            )));
        };
        // Moved to the library thread and back (a placeholder meanwhile, of the same verb).
        let sent = std::mem::replace(args, Args::new(args.verb, &[], Vec::new()));
        let function = Function(address);
        let (back, called) = self.runner.run(move || {
            let function = function;
            let mut sent = sent;
            let called = dispatch(function.0, &mut sent);
            (sent, called)
        })?;
        *args = back;
        called?;
        if let Some(trace) = &mut self.trace {
            trace.record(args, &rules_in, &lengths_in);
        }
        Ok(())
    }

    /// The simulated library's card factory (`mkclone sim init`): a factory-fresh card with
    /// `serial` as the next adapter. `Ok(true)` created, `Ok(false)` one with this serial
    /// exists already.
    pub fn create_simulated_card(&mut self, serial: &str) -> Result<bool, HostlibError> {
        let Some(f) = self.main.create_card else {
            return Err(HostlibError::NotSimulated {
                path: self.main.path.clone(),
            });
        };
        let mut text = serial.as_bytes().to_vec();
        let (rc, rs) = self.runner.run(move || {
            let mut len = text.len() as libc::c_long;
            let (mut rc, mut rs): (libc::c_long, libc::c_long) = (-1, -1);
            // SAFETY: the buffer is as long as the length passed with it; the function is
            // the simulated library's, typed as the header declares it, and stays loaded
            // until this returns (`Function`).
            unsafe { f(&mut rc, &mut rs, &mut len, text.as_mut_ptr()) };
            (rc, rs)
        })?;
        match (rc, rs) {
            (0, _) => Ok(true),
            (4, 0) => Ok(false),
            _ => Err(HostlibError::verb(
                SIM_CREATE_CARD_SYMBOL,
                format!("creating a simulated card with serial {serial}"),
                rc,
                rs,
            )),
        }
    }

    /// The simulated library's extension: one request message in, the reply message out.
    pub fn ext_call(
        &mut self,
        request: &[u8],
        room: usize,
    ) -> Result<(i64, i64, Vec<u8>), HostlibError> {
        let Some(f) = self.main.ext else {
            return Err(HostlibError::Internal(
                "the project extension is only in mkclone's simulated library".into(),
            ));
        };
        let mut request = request.to_vec();
        let request_bytes = request.len();
        let (rc, rs, reply_len, mut reply) = self.runner.run(move || {
            let mut request_len = request.len() as libc::c_long;
            let mut reply = vec![0u8; room];
            let mut reply_len = room as libc::c_long;
            let (mut rc, mut rs): (libc::c_long, libc::c_long) = (-1, -1);
            // SAFETY: both buffers are as long as the lengths passed with them; the
            // function is the simulated library's, typed as the header declares it, and
            // stays loaded until this returns (`Function`).
            unsafe {
                f(
                    &mut rc,
                    &mut rs,
                    &mut request_len,
                    request.as_mut_ptr(),
                    &mut reply_len,
                    reply.as_mut_ptr(),
                )
            };
            (rc, rs, reply_len, reply)
        })?;
        let n = usize::try_from(reply_len).unwrap_or(usize::MAX);
        if n > reply.len() {
            return Err(HostlibError::Internal(format!(
                "the extension returned {n} bytes for a buffer of {room}"
            )));
        }
        reply.truncate(n);
        if let Some(trace) = &mut self.trace {
            trace.record_ext(rc, rs, request_bytes, n);
        }
        Ok((rc, rs, reply))
    }
}

type Long = libc::c_long;
type Bytes = libc::c_uchar;

/// The pointers of the head: return and reason codes, exit data (always length 0: mkclone
/// passes no exit data), the rule-array count and the rule array.
struct Head {
    rc: Long,
    rs: Long,
    exit_len: Long,
    exit: [Bytes; 4],
    count: Long,
}

fn shape_error(verb: Verb) -> HostlibError {
    HostlibError::Internal(format!("{verb}: argument vector of the wrong shape"))
}

/// The pointers `params` pass after the head, in the header's order (a buffer passes its
/// length, then its data), once each parameter is proven the kind its position takes.
fn pointers(verb: Verb, params: &mut [Param]) -> Result<Vec<*mut libc::c_void>, HostlibError> {
    let slots = layout(verb);
    if slots.len() != params.len() {
        return Err(shape_error(verb));
    }
    let mut out = Vec::with_capacity(2 * params.len());
    for (slot, p) in slots.iter().zip(params.iter_mut()) {
        match (slot, p) {
            (Slot::Buf, Param::Buf { len, data }) => {
                out.push(std::ptr::from_mut::<Long>(len).cast());
                out.push(data.as_mut_ptr().cast());
            }
            (Slot::Field(_) | Slot::Labels, Param::Field(d)) => out.push(d.as_mut_ptr().cast()),
            (Slot::Int, Param::Int(v)) => out.push(std::ptr::from_mut::<Long>(v).cast()),
            _ => return Err(shape_error(verb)),
        }
    }
    Ok(out)
}

/// The `N` pointers a verb's function type takes after the head (`pointers` made them).
fn take<const N: usize>(
    pointers: &[*mut libc::c_void],
    verb: Verb,
) -> Result<[*mut libc::c_void; N], HostlibError> {
    pointers.try_into().map_err(|_| shape_error(verb))
}

/// Call the function at `address` with `args`, through the type the header gives its verb.
/// `args` is checked against the verb's parameter list first (`Args::check_shape`), here
/// where the pointers are made, so that no path to the call can skip it.
fn dispatch(address: *const (), args: &mut Args) -> Result<(), HostlibError> {
    args.check_shape().map_err(HostlibError::Internal)?;
    let verb = args.verb;
    let mut h = Head {
        rc: -1,
        rs: -1,
        exit_len: 0,
        exit: [0; 4],
        count: args.rule_count,
    };
    let r = args.rule_array.as_mut_ptr();
    let p = pointers(verb, &mut args.params)?;
    let bad = || shape_error(verb);
    let (rc, rs, el, ex, n): (*mut Long, *mut Long, *mut Long, *mut Bytes, *mut Long) = (
        &mut h.rc,
        &mut h.rs,
        &mut h.exit_len,
        h.exit.as_mut_ptr(),
        &mut h.count,
    );
    // SAFETY (every arm): `address` is the library's export of `verb`, transmuted to the
    // function type vendor-headers/csulcca.h declares for it (ffi::<VERB>_t), and called
    // with as many pointers as that type takes (`take`), in the header's order and of the
    // kinds `args::layout` gives (`pointers` checked them; each `cast` is to the pointer type
    // of its position). Every pointer points into `h` or `args`, which outlive the call and
    // are not touched during it. `check_shape`, run at the top of this function, proved
    // every buffer at least as long as the length passed with it, every fixed field exactly
    // the size the verb reads or writes (64-byte names, 24-byte key part, 8-byte role
    // name), CSNDRKL's label list room for the count passed before it, and the rule array
    // at least `count` elements (CSUACFQ's `verbs::RULE_ROOM`, the room opencryptoki's CCA
    // token gives the elements it answers over the array); the C prototypes the header
    // cites have the library read and write no more than that.
    // One verb call: `address` as the verb's function type, called with the head and the
    // pointers `pointers` made, each cast to the pointer type of its position (one name a
    // pointer, in the header's order).
    macro_rules! call {
        ($ty:ty; $($x:ident)*) => {{
            let f: $ty = std::mem::transmute(address);
            let [$($x),*] = take(&p, verb)?;
            f.ok_or_else(bad)?(rc, rs, el, ex, n, r, $($x.cast()),*)
        }};
    }
    // SAFETY: see "SAFETY (every arm)" above the macro.
    unsafe {
        match verb {
            Verb::Csuacfq | Verb::Csuacra | Verb::Csuacrd => call!(ffi::CSUACFQ_t; l d),
            Verb::Csuacfv => {
                // CSUACFV alone has no rule array.
                let f: ffi::CSUACFV_t = std::mem::transmute(address);
                let [l, d] = take(&p, verb)?;
                f.ok_or_else(bad)?(rc, rs, el, ex, l.cast(), d.cast());
            }
            Verb::Csuaacm => call!(ffi::CSUAACM_t; a l d),
            // CSNDPKR_t is CSNDPKH_t's type (the header's two declarations are alike).
            Verb::Csndpkh | Verb::Csndpkr => call!(ffi::CSNDPKH_t; a l d),
            Verb::Csndpkb => call!(ffi::CSNDPKB_t; a b c d e g i j k l m o q s t u),
            Verb::Csndpkg => call!(ffi::CSNDPKG_t; a b c d e g i),
            Verb::Csndpkx => call!(ffi::CSNDPKX_t; a b c e),
            Verb::Csndrkl => call!(ffi::CSNDRKL_t; a b c e),
            Verb::Csndrkd => call!(ffi::CSNDRKD_t; k),
            Verb::Csnbmkp => call!(ffi::CSNBMKP_t; k),
            Verb::Csuamkd => call!(ffi::CSUAMKD_t; a b c d e g i j k),
        }
    }
    args.return_code = h.rc;
    args.reason_code = h.rs;
    args.rule_count = h.count;
    Ok(())
}

/// `dispatch` hands each parameter to the C function in the position the header gives it:
/// fake verbs with the header's signatures record what they receive (read through the
/// pointers, as a library would) and answer through the output pointers; the records
/// are compared with what the published parameter list says each position holds.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs;
    use mkclone_backend::CloneableKind;
    use std::cell::RefCell;

    thread_local! {
        static SEEN: RefCell<Vec<(String, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }

    fn seen(name: &str, bytes: &[u8]) {
        SEEN.with(|s| s.borrow_mut().push((name.to_string(), bytes.to_vec())));
    }

    fn take() -> Vec<(String, Vec<u8>)> {
        SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    /// # Safety
    /// `len` points to a `long` and `p` to that many bytes.
    // SAFETY: callers uphold the contract above (the fake verbs pass the header's pointers).
    unsafe fn bytes(len: *mut Long, p: *mut Bytes) -> Vec<u8> {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(p, *len as usize).to_vec() }
    }

    /// The common head: codes answered, no exit data, the rule array recorded.
    ///
    /// # Safety
    /// The head's pointers as the header declares them.
    // SAFETY: callers uphold the contract above (the fake verbs pass the header's pointers).
    unsafe fn head(
        rc: *mut Long,
        rs: *mut Long,
        exit_len: *mut Long,
        count: *mut Long,
        rules: *mut Bytes,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            seen("exit_data_length", &(*exit_len).to_be_bytes());
            seen("rules", &bytes(&mut (*count * 8), rules));
            *rc = 4;
            *rs = 1024;
        }
    }

    /// A fake verb with the header's signature: the head every verb takes (return and
    /// reason codes, exit-data length and data, rule-array count and rule array; the caller
    /// names the ones it reads) and then the verb's own parameters.
    macro_rules! fake_verb {
        (
            $(#[$doc:meta])*
            fn $name:ident($rc:ident, $rs:ident, $el:ident, $count:ident, $rules:ident;
                $($p:ident: $t:ty),* $(,)?) $body:block
        ) => {
            $(#[$doc])*
            #[allow(clippy::too_many_arguments)]
            unsafe extern "C" fn $name(
                $rc: *mut Long,
                $rs: *mut Long,
                $el: *mut Long,
                _exit: *mut Bytes,
                $count: *mut Long,
                $rules: *mut Bytes,
                $($p: $t),*
            ) $body
        };
    }

    fake_verb! {
        fn fake_csuamkd(rc, rs, exit_len, count, rules;
            share_index: *mut Long, private_key_name: *mut Bytes, certifying_key_name: *mut Bytes,
            certificate_length: *mut Long, certificate: *mut Bytes,
            key_length: *mut Long, key: *mut Bytes, info_length: *mut Long, info: *mut Bytes,
        ) {
            // SAFETY: called by `dispatch` with the header's CSUAMKD parameters.
            unsafe {
                head(rc, rs, exit_len, count, rules);
                seen("share_index", &(*share_index).to_be_bytes());
                seen("private_key_name", &bytes(&mut 64, private_key_name));
                seen("certifying_key_name", &bytes(&mut 64, certifying_key_name));
                seen("certificate", &bytes(certificate_length, certificate));
                seen("key room", &(*key_length).to_be_bytes());
                seen("info room", &(*info_length).to_be_bytes());
                // OBTAIN's outputs: 3 bytes of key, 2 of clone info, lengths written back.
                *key = 0xC1;
                *key.add(1) = 0xC2;
                *key.add(2) = 0xC3;
                *key_length = 3;
                *info = 0xD1;
                *info.add(1) = 0xD2;
                *info_length = 2;
            }
        }
    }

    #[test]
    fn csuamkd_parameters_arrive_in_the_published_order() {
        let mut args = verbs::obtain(
            CloneableKind::Sym,
            2,
            "MKCLONE.CSS",
            "MKCLONE.SA",
            &[0x40, 0, 0, 4],
        );
        dispatch(fake_csuamkd as *const (), &mut args).expect("dispatched");
        let mut css = b"MKCLONE.CSS".to_vec();
        css.resize(64, b' ');
        let mut sa = b"MKCLONE.SA".to_vec();
        sa.resize(64, b' ');
        let expected: Vec<(String, Vec<u8>)> = vec![
            ("exit_data_length".into(), 0i64.to_be_bytes().to_vec()),
            ("rules".into(), b"OBTAIN  SYM-MK  ".to_vec()),
            ("share_index".into(), 2i64.to_be_bytes().to_vec()),
            ("private_key_name".into(), css),
            ("certifying_key_name".into(), sa),
            ("certificate".into(), vec![0x40, 0, 0, 4]),
            ("key room".into(), 4096i64.to_be_bytes().to_vec()),
            ("info room".into(), 4096i64.to_be_bytes().to_vec()),
        ];
        assert_eq!(take(), expected);
        assert_eq!((args.return_code, args.reason_code), (4, 1024));
        assert_eq!(args.output(4).expect("key"), [0xC1, 0xC2, 0xC3]);
        assert_eq!(args.output(5).expect("info"), [0xD1, 0xD2]);
    }

    fake_verb! {
        fn fake_csndpkb(rc, rs, exit_len, count, rules;
            kvs_len: *mut Long, kvs: *mut Bytes, name_len: *mut Long, name: *mut Bytes,
            cd_len: *mut Long, _cd: *mut Bytes, r2_len: *mut Long, _r2: *mut Bytes,
            r3_len: *mut Long, _r3: *mut Bytes, r4_len: *mut Long, _r4: *mut Bytes,
            r5_len: *mut Long, _r5: *mut Bytes, token_len: *mut Long, token: *mut Bytes,
        ) {
            // SAFETY: called by `dispatch` with the header's CSNDPKB parameters.
            unsafe {
                head(rc, rs, exit_len, count, rules);
                seen("key_values_structure", &bytes(kvs_len, kvs));
                seen("key_name", &bytes(name_len, name));
                let reserved = [*cd_len, *r2_len, *r3_len, *r4_len, *r5_len];
                seen(
                    "customer data and reserved lengths",
                    &reserved.map(|l| l as u8),
                );
                seen("token room", &(*token_len).to_be_bytes());
                *token = 0x1E;
                *token_len = 1;
            }
        }
    }

    #[test]
    fn csndpkb_parameters_arrive_in_the_published_order() {
        let mut args =
            verbs::build_skeleton("MKCLONE.SA", mkclone_backend::KeyUsage::SignatureOnly, 2048);
        dispatch(fake_csndpkb as *const (), &mut args).expect("dispatched");
        let mut name = b"MKCLONE.SA".to_vec();
        name.resize(64, b' ');
        let expected: Vec<(String, Vec<u8>)> = vec![
            ("exit_data_length".into(), 0i64.to_be_bytes().to_vec()),
            ("rules".into(), b"RSA-CRT SIG-ONLY".to_vec()),
            (
                "key_values_structure".into(),
                vec![
                    8, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1,
                ],
            ),
            ("key_name".into(), name),
            ("customer data and reserved lengths".into(), vec![0; 5]),
            ("token room".into(), 8000i64.to_be_bytes().to_vec()),
        ];
        assert_eq!(take(), expected);
        assert_eq!(args.output(7).expect("token"), [0x1E]);
    }

    fake_verb! {
        fn fake_csuacfq(rc, rs, exit_len, count, rules;
            data_len: *mut Long, _data: *mut Bytes,
        ) {
            // SAFETY: called by `dispatch` with the header's CSUACFQ parameters.
            unsafe {
                head(rc, rs, exit_len, count, rules);
                seen("verb data room", &(*data_len).to_be_bytes());
                // The answer goes over the rule array, the count updated (two elements).
                std::ptr::copy_nonoverlapping(b"3       CCA00001".as_ptr(), rules, 16);
                *count = 2;
                *data_len = 0;
                *rc = 0;
                *rs = 0;
            }
        }
    }

    /// Where each call of `fake_csuacfq_where` ran, and whether SIGINT and SIGTERM were
    /// blocked there.
    static WHERE: Mutex<Vec<(std::thread::ThreadId, bool)>> = Mutex::new(Vec::new());

    fake_verb! {
        fn fake_csuacfq_where(rc, rs, _exit_len, _count, _rules;
            _data_len: *mut Long, _data: *mut Bytes,
        ) {
            use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
            let mut mask = SigSet::empty();
            let read = pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut mask)).is_ok();
            let blocked = read && mask.contains(Signal::SIGINT) && mask.contains(Signal::SIGTERM);
            WHERE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((std::thread::current().id(), blocked));
            // SAFETY: called by `dispatch` with the header's CSUACFQ parameters.
            unsafe {
                *rc = 0;
                *rs = 0;
            }
        }
    }

    /// Every call of a library `open_shared` loads runs on the library's one thread (IBM
    /// scopes adapter allocation to the thread), whichever thread asks, with the signals
    /// that would make the kernel send a card request twice blocked there.
    #[test]
    fn every_call_runs_on_the_library_thread_with_signals_blocked() {
        let shared = Mutex::new(Shared {
            main: Loaded {
                path: PathBuf::from("/test/libcsulcca.so"),
                _lib: libloading::os::unix::Library::this().into(),
                verbs: [(Verb::Csuacfq, fake_csuacfq_where as *const ())].into(),
                ext: None,
                create_card: None,
            },
            mk: None,
            mk_path: PathBuf::from("/test/libcsulccamk.so"),
            allocated: None,
            trace: None,
            runner: Runner::Thread(LibraryThread::start().expect("thread")),
        });
        let call = || {
            let mut args = verbs::query("STATCRD2", 0);
            shared.lock().unwrap().call(&mut args).expect("called");
            assert_eq!(args.return_code, 0);
        };
        call();
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(call);
            }
        });
        call();
        let seen = WHERE.lock().unwrap().clone();
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(seen.iter().all(|(id, _)| *id == seen[0].0), "{seen:?}");
        assert_ne!(seen[0].0, std::thread::current().id());
        assert!(seen.iter().all(|(_, blocked)| *blocked), "{seen:?}");
    }

    #[test]
    fn csuacfq_answers_over_the_rule_array() {
        let mut args = verbs::query("STATCRD2", 0);
        dispatch(fake_csuacfq as *const (), &mut args).expect("dispatched");
        let seen = take();
        assert_eq!(seen[1], ("rules".to_string(), b"STATCRD2".to_vec()));
        assert_eq!(
            seen[2],
            ("verb data room".to_string(), 0i64.to_be_bytes().to_vec())
        );
        assert_eq!(args.rule_keywords(), ["3", "CCA00001"]);
        assert_eq!(args.element(1), Some(&b"CCA00001"[..]));
        assert_eq!(args.element(2), None);
    }

    fake_verb! {
        fn fake_csndrkl(rc, rs, exit_len, count, rules;
            mask: *mut Bytes, retained_keys_count: *mut Long,
            key_labels_count: *mut Long, labels: *mut Bytes,
        ) {
            // SAFETY: called by `dispatch` with the header's CSNDRKL parameters.
            unsafe {
                head(rc, rs, exit_len, count, rules);
                seen("key_label_mask", &bytes(&mut 64, mask));
                seen("key_labels_count", &(*key_labels_count).to_be_bytes());
                *retained_keys_count = 7;
                *key_labels_count = 1;
                std::ptr::copy_nonoverlapping(b"MKCLONE.SA".as_ptr(), labels, 10);
            }
        }
    }

    #[test]
    fn csndrkl_counts_go_in_and_out_through_their_own_pointers() {
        let mut args = verbs::list_retained("*");
        dispatch(fake_csndrkl as *const (), &mut args).expect("dispatched");
        let mut mask = b"*".to_vec();
        mask.resize(64, b' ');
        let seen = take();
        assert_eq!(seen[1], ("rules".to_string(), Vec::new()));
        assert_eq!(seen[2], ("key_label_mask".to_string(), mask));
        assert_eq!(
            seen[3],
            (
                "key_labels_count".to_string(),
                256i64.to_be_bytes().to_vec()
            )
        );
        assert_eq!((args.int(1), args.int(2)), (Some(7), Some(1)));
        assert_eq!(&args.output(3).expect("labels")[..10], b"MKCLONE.SA");
    }

    fake_verb! {
        /// A length the library writes back beyond the buffer is never read.
        fn fake_csndpkx_overlong(rc, rs, _exit_len, _count, _rules;
            _src_len: *mut Long, _src: *mut Bytes, out_len: *mut Long, _out: *mut Bytes,
        ) {
            // SAFETY: called by `dispatch` with the header's CSNDPKX parameters.
            unsafe {
                *rc = 0;
                *rs = 0;
                *out_len = 1_000_000;
            }
        }
    }

    #[test]
    fn an_overlong_returned_length_is_refused_not_read() {
        let mut args = verbs::public_key_extract("MKCLONE.CSR");
        dispatch(fake_csndpkx_overlong as *const (), &mut args).expect("dispatched");
        let e = args.output(1).expect_err("refused");
        assert!(e.contains("larger than its buffer"), "{e}");
    }

    /// A parameter of another kind than its position takes (a name where CSUAMKD's share
    /// index, a `long`, goes), or one too few, is refused before the verb is called.
    #[test]
    fn a_parameter_of_the_wrong_kind_or_count_is_never_handed_over() {
        let mut args = verbs::obtain(CloneableKind::Sym, 2, "MKCLONE.CSS", "MKCLONE.SA", &[1]);
        args.params[0] = Param::Field(vec![0; 64]);
        let e = dispatch(fake_csuamkd as *const (), &mut args).expect_err("refused");
        assert!(e.to_string().contains("wrong shape"), "{e}");
        let mut args = verbs::obtain(CloneableKind::Sym, 2, "MKCLONE.CSS", "MKCLONE.SA", &[1]);
        args.params.pop();
        let e = dispatch(fake_csuamkd as *const (), &mut args).expect_err("refused");
        assert!(e.to_string().contains("wrong shape"), "{e}");
        assert!(take().is_empty(), "the verb was not called");
        assert_eq!((args.return_code, args.reason_code), (-1, -1));
    }

    #[test]
    fn a_vector_whose_length_exceeds_its_buffer_is_never_handed_over() {
        let mut args = verbs::public_key_extract("MKCLONE.CSR");
        args.params[1] = Param::Buf {
            len: 9000,
            data: vec![0; 10],
        };
        assert!(args.check_shape().is_err());
    }

    /// The library reads and writes a fixed field at the size its verb's C prototype fixes,
    /// whatever the vector holds: every builder's fields have those sizes, and a field one
    /// byte short or long, or a label list with room for fewer labels than its count, is
    /// refused by `dispatch` itself, before the verb is called.
    #[test]
    fn a_fixed_field_of_another_size_is_never_handed_over() {
        use mkclone_backend::{HashAlgorithm, KeyUsage};
        let built = [
            verbs::get_role(b"DEFAULT "),
            verbs::build_skeleton("MKCLONE.SA", KeyUsage::SignatureOnly, 2048),
            verbs::generate_retained(&[1], true),
            verbs::list_retained("*"),
            verbs::delete_retained("MKCLONE.SA"),
            verbs::register_hash("MKCLONE.SA", HashAlgorithm::Sha256, &[0; 32], true),
            verbs::register_key("MKCLONE.SA", &[1], true),
            verbs::obtain(CloneableKind::Sym, 2, "MKCLONE.CSS", "MKCLONE.SA", &[1]),
            verbs::install(
                CloneableKind::Asym,
                1,
                "MKCLONE.CSR",
                "MKCLONE.SA",
                &[1],
                &[2],
                &[3],
            ),
            verbs::master_key("SET", CloneableKind::Sym),
            verbs::query("STATCRD2", 0),
            verbs::resource(Verb::Csuacra, Some(1)),
            verbs::version(),
        ];
        let mut fields = 0;
        for args in built {
            assert_eq!(args.check_shape(), Ok(()), "{}", args.verb);
            for (i, (slot, p)) in layout(args.verb).iter().zip(&args.params).enumerate() {
                let Param::Field(d) = p else { continue };
                let wrong: &[usize] = match slot {
                    Slot::Field(n) => {
                        assert_eq!(d.len(), *n, "{} parameter {}", args.verb, i + 1);
                        &[0, n - 1, n + 1]
                    }
                    // Room for more labels than the count is room enough.
                    _ => &[0, d.len() - 1],
                };
                for &len in wrong {
                    let mut bad = args.clone();
                    bad.params[i] = Param::Field(vec![b' '; len]);
                    assert!(bad.check_shape().is_err(), "{} {len} bytes", args.verb);
                    fields += 1;
                }
            }
        }
        assert_eq!(
            fields,
            3 * 11 + 2,
            "every fixed field of every builder was tried"
        );

        let mut args = verbs::list_retained("*");
        args.params[3] = Param::Field(vec![b' '; 64]);
        let e = dispatch(fake_csndrkl as *const (), &mut args).expect_err("refused");
        assert!(e.to_string().contains("room for 1 labels"), "{e}");
        assert!(take().is_empty(), "the verb was not called");
    }
}

/// For fuzz/ only (the `fuzzing` feature): a library made of function pointers instead of
/// a file, so that a fuzz target can play a hostile library in process and drive the host
/// side's reading of its answers through the real call path (`Shared::call`, `dispatch`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// A `Shared` whose verbs are `verbs` (each an `extern "C"` function of the type
    /// vendor-headers/csulcca.h declares for its verb, cast to `*const ()`), with the
    /// simulated library's two extra entry points when given. CSNBMKP, when listed, is
    /// taken as already loaded from the master-key library.
    ///
    /// # Safety
    /// Every address is a function of the type its verb's `ffi::<VERB>_t` declares.
    // SAFETY: unsafe to call: the addresses are called later through `dispatch` as the types
    // above; the caller vouches for them (the fuzz target passes its own `extern "C"` fakes).
    pub unsafe fn shared_over(
        verbs: &[(Verb, *const ())],
        ext: ffi::mkclone_simlib_ext_t,
        create_card: ffi::mkclone_simlib_create_card_t,
    ) -> Arc<Mutex<Shared>> {
        let loaded = |verbs: BTreeMap<Verb, *const ()>, ext, create_card| Loaded {
            path: PathBuf::from("/fuzz/libcsulcca.so"),
            // The process itself: a handle that keeps nothing extra loaded.
            _lib: libloading::os::unix::Library::this().into(),
            verbs,
            ext,
            create_card,
        };
        let (mk, main): (Vec<_>, Vec<_>) = verbs.iter().partition(|(v, _)| *v == Verb::Csnbmkp);
        Arc::new(Mutex::new(Shared {
            main: loaded(main.into_iter().collect(), ext, create_card),
            mk: (!mk.is_empty()).then(|| loaded(mk.into_iter().collect(), None, None)),
            mk_path: PathBuf::from("/fuzz/libcsulccamk.so"),
            allocated: None,
            trace: None,
            runner: Runner::Inline,
        }))
    }
}
