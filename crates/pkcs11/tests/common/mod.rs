//! A hermetic SoftHSM for one test binary, and a minimal driver of the cloning phases over
//! the `Backend` trait (as hw-sim/tests/common does for simulated cards), so that each test
//! reads as the protocol itself and any node may be a token or a simulated card.
//!
//! The SoftHSM: one configuration file and token directory per test binary, in a fresh
//! directory `mkclone-softhsm-<pid>-<random>` on tmpfs (/dev/shm: SoftHSM rewrites an object
//! file on every change, which a busy disk makes slow) or, without it, under cargo's
//! CARGO_TARGET_TMPDIR; SOFTHSM2_CONF points there before the module is initialized. Nothing
//! outside that directory is read or written (no /etc/softhsm, no /var/lib/softhsm), except
//! that directories of this name left by test processes that no longer run are removed.
//! Each test makes its own tokens, by label, in free slots (under a mutex: SoftHSM offers
//! one free slot at a time).
#![allow(dead_code)]

pub mod opencryptoki;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use mkclone_backend::{
    Applied, Backend, BackendError, Certificate, CloneableKind, Eid, InstallProgress, KeyLabel,
    KeyRole, MofN, SealedShare, VerificationPattern,
};
use mkclone_hw_sim::{Apqn, SimBackend, memory_card};
use mkclone_pkcs11::test_seams::SECRET_USAGES;
use mkclone_pkcs11::{PinSource, Pkcs11Backend, Pkcs11NodeConfig, SlotInfo, TokenSummary};
use zeroize::Zeroizing;

pub const SO_PIN: &str = "so-pin-for-tests";
/// The environment variable the test tokens' `so_pin` names.
pub const SO_PIN_VARIABLE: &str = "MKCLONE_TEST_SO_PIN";
pub const USER_PIN: &str = "user-pin-1234";

/// Where Debian's softhsm2 package puts the module (either path; one is a symlink).
const MODULE_CANDIDATES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

pub struct SoftHsm {
    pub module: PathBuf,
    pub dir: PathBuf,
}

static HSM: OnceLock<SoftHsm> = OnceLock::new();
static TOKEN_INIT: Mutex<()> = Mutex::new(());

/// The test binary's SoftHSM. Fails (never skips) when the module is missing.
pub fn softhsm() -> &'static SoftHsm {
    HSM.get_or_init(|| {
        let module = std::env::var_os("MKCLONE_TEST_PKCS11_MODULE")
            .map(PathBuf::from)
            .or_else(|| {
                MODULE_CANDIDATES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.exists())
            })
            .unwrap_or_else(|| {
                panic!(
                    "libsofthsm2.so was not found (looked in {}). These tests need SoftHSM 2: \
                     install it with `apt-get install softhsm2` (scripts/test does this), or set \
                     MKCLONE_TEST_PKCS11_MODULE to the module's path",
                    MODULE_CANDIDATES.join(", ")
                )
            });
        let base = [Path::new("/dev/shm"), Path::new(env!("CARGO_TARGET_TMPDIR"))]
            .into_iter()
            .find(|p| p.is_dir() && tempfile::tempdir_in(p).is_ok())
            .expect("a writable temporary directory");
        remove_stale(base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir_in(base)
            .expect("a temporary directory")
            .keep();
        std::fs::create_dir(dir.join("tokens")).expect("the token directory");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                dir.join("tokens").display()
            ),
        )
        .expect("the SoftHSM configuration file");
        // SAFETY: runs once, inside this OnceLock, before any PKCS#11 module is loaded in
        // this process (every test reaches a module only through this fixture, so no
        // C code reads the environment concurrently); std's own environment accesses are
        // serialized by std.
        unsafe {
            std::env::set_var("SOFTHSM2_CONF", &conf);
            // Every test token's SO PIN, which a source's share export reads (`so_pin`).
            std::env::set_var(SO_PIN_VARIABLE, SO_PIN);
            // Token locks in this directory too, not the machine's /run/lock/mkclone (a
            // child process of a test inherits it, so it sees the same locks).
            std::env::set_var(mkclone_pkcs11::LOCK_DIR_ENV, dir.join("locks"));
        }
        SoftHsm { module, dir }
    })
}

const PREFIX: &str = "mkclone-softhsm-";

/// Remove the SoftHSM directories of test processes that have ended (the directory of a
/// test binary lives as long as its process: statics are not dropped).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Initialize a fresh token labelled `label` (SO PIN, then the user PIN) and return the
/// configuration of a node on it (`open` gives the user PIN; the SO PIN comes from
/// `SO_PIN_VARIABLE`).
pub fn new_token(label: &str) -> Pkcs11NodeConfig {
    let hsm = softhsm();
    let _guard = TOKEN_INIT.lock().unwrap_or_else(|p| p.into_inner());
    let pkcs11 = mkclone_pkcs11::shared_module(&hsm.module).expect("the SoftHSM module");
    let free = pkcs11
        .get_all_slots()
        .unwrap()
        .into_iter()
        .find(|s| !pkcs11.get_token_info(*s).unwrap().token_initialized())
        .expect("SoftHSM always offers a free slot");
    let so = AuthPin::new(SO_PIN.into());
    pkcs11.init_token(free, &so, label).unwrap();
    // Tokens move between slots after initialization: find it again by label.
    let slot = pkcs11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == label)
        .expect("the token just initialized");
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::So, Some(&so)).unwrap();
    session.init_pin(&AuthPin::new(USER_PIN.into())).unwrap();
    session.logout().unwrap();
    drop(session);
    node_config(&hsm.module, label)
}

/// A node's configuration for the token labelled `label` in `module` (its PIN is passed to
/// `open` directly).
pub fn node_config(module: &Path, label: &str) -> Pkcs11NodeConfig {
    Pkcs11NodeConfig {
        module: module.into(),
        token: label.into(),
        expect_token_serial: None,
        pin: PinSource::Env("MKCLONE_TEST_UNUSED_PIN_VARIABLE".into()),
        so_pin: Some(PinSource::Env(SO_PIN_VARIABLE.into())),
        token_match: Default::default(),
    }
}

/// A session of the test's own on the token `config` names, logged in with the user PIN
/// (around mkclone, as any program with the PIN could). Sessions of one process share their
/// login: one already made is success.
pub fn user_session(config: &Pkcs11NodeConfig) -> Session {
    let pkcs11 = mkclone_pkcs11::shared_module(&config.module).expect("the module");
    let slot = pkcs11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == config.token)
        .unwrap_or_else(|| panic!("token {} is present", config.token));
    let session = pkcs11.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::new(USER_PIN.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    session
}

/// A secret key's template as mkclone makes its keys (crates/pkcs11/src/templates.rs), with
/// `usage` the usage flags that are true and `extra` (label, id, value or size): the
/// look-alike a user-PIN holder can make in place of one of mkclone's keys.
pub fn look_alike_secret(
    key_type: KeyType,
    extractable: bool,
    usage: &[AttributeType],
    extra: Vec<Attribute>,
) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(extractable),
        Attribute::WrapWithTrusted(true),
    ];
    template.extend(
        SECRET_USAGES
            .iter()
            .map(|make| make(usage.contains(&make(true).attribute_type()))),
    );
    template.extend(extra);
    // Last, as in mkclone's templates (SoftHSM applies a template in order).
    template.extend([Attribute::Copyable(false), Attribute::Modifiable(false)]);
    template
}

/// This test binary again, running only `test` with its output shown: how a test plays the
/// other process (another mkclone command, another user of the token) in a child.
pub fn this_test_in_a_child(test: &str) -> std::process::Command {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    child
}

pub fn open(config: &Pkcs11NodeConfig) -> Pkcs11Backend {
    Pkcs11Backend::open(config, Zeroizing::new(USER_PIN.into()))
        .unwrap_or_else(|e| panic!("opening token {}: {e}", config.token))
}

/// A fresh token with its EID set.
pub fn token_node(label: &str, eid: &str) -> (Pkcs11NodeConfig, Pkcs11Backend) {
    let config = new_token(label);
    let mut node = open(&config);
    node.set_eid(&Eid::new(eid).unwrap()).unwrap();
    (config, node)
}

/// A simulated card with its EID set.
pub fn sim_node(n: u8, eid: &str) -> SimBackend {
    let mut b = memory_card(Apqn::new(n, 0x0d).unwrap(), &format!("SIM{n:05}")).unwrap();
    b.set_eid(&Eid::new(eid).unwrap()).unwrap();
    b
}

/// Phase 1 on simulated card 1 ("SA NODE"): the SA node and its key.
pub fn sim_sa() -> (SimBackend, SaKey) {
    let mut sa_node = sim_node(1, "SA NODE");
    let sa = phase1(&mut sa_node);
    (sa_node, sa)
}

// ---------------------------------------------------------------------------------------
// The phases
// ---------------------------------------------------------------------------------------

pub fn label(s: &str) -> KeyLabel {
    KeyLabel::new(s).unwrap()
}

pub const SA_LABEL: &str = "MKCLONE.SA";
pub const CSS_LABEL: &str = "MKCLONE.CSS";
pub const CSR_LABEL: &str = "MKCLONE.CSR";

// The SA key after phase 1 (its self-signed certificate and registration hash), a key
// generated, the SA key registered (hash first, then key: dual control), a key certified
// by the SA node, and before/after comparisons: the conformance suite's own driver.
#[allow(unused_imports)] // each test binary uses some of them
pub use mkclone_conformance::{
    SaKey, Snapshot, certify, generate, install_request, install_sa, obtain_request,
    sa_key as phase1, snapshot,
};

/// Every master key loaded at random on `source`, then phase 2 on it: the CSS certificate.
pub fn random_source(
    sa_node: &mut dyn Backend,
    sa: &SaKey,
    source: &mut dyn Backend,
    m_of_n: MofN,
) -> Certificate {
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    phase2(sa_node, sa, source, m_of_n)
}

/// Phases 2a + 2b on the source: m-of-n, SA key installed, CSS certified.
pub fn phase2(
    sa_node: &mut dyn Backend,
    sa: &SaKey,
    source: &mut dyn Backend,
    m_of_n: MofN,
) -> Certificate {
    prepare(sa_node, sa, source, m_of_n, (CSS_LABEL, KeyRole::Css))
}

/// Phases 3a + 3b on a target: m-of-n, SA key installed, CSR certified.
pub fn phase3ab(
    sa_node: &mut dyn Backend,
    sa: &SaKey,
    target: &mut dyn Backend,
    m_of_n: MofN,
) -> Certificate {
    prepare(sa_node, sa, target, m_of_n, (CSR_LABEL, KeyRole::Csr))
}

/// What phases 2 and 3 do alike on a node: m-of-n set, the SA key installed, then the
/// node's key (`label`, `role`: CSS on the source, CSR on a target) made and certified by
/// the SA node.
fn prepare(
    sa_node: &mut dyn Backend,
    sa: &SaKey,
    node: &mut dyn Backend,
    m_of_n: MofN,
    (label, role): (&str, KeyRole),
) -> Certificate {
    node.set_m_of_n(m_of_n).unwrap();
    install_sa(node, sa);
    certify(sa_node, node, label, role)
}

pub fn obtain(
    source: &mut dyn Backend,
    kind: CloneableKind,
    index: u8,
    csr: &Certificate,
) -> SealedShare {
    source
        .obtain_share(&obtain_request(kind, index, csr))
        .unwrap()
}

pub fn install(
    target: &mut dyn Backend,
    kind: CloneableKind,
    css: &Certificate,
    share: SealedShare,
) -> Result<Applied<InstallProgress>, BackendError> {
    target.install_share(&install_request(kind, css, share))
}

pub fn pattern(
    node: &mut dyn Backend,
    kind: CloneableKind,
    register: &str,
) -> Option<VerificationPattern> {
    let status = node.status().unwrap();
    let reg = status.register(kind.kind()).unwrap();
    match register {
        "new" => reg.new_patterns.first().cloned(),
        "current" => reg.current_patterns.first().cloned(),
        "old" => reg.old_patterns.first().cloned(),
        other => panic!("no register {other}"),
    }
}

/// 3c + 3d: obtain `indices` from the source, install them, confirm NEW, SET.
pub fn clone_into(
    source: &mut dyn Backend,
    css: &Certificate,
    target: &mut dyn Backend,
    csr: &Certificate,
    kind: CloneableKind,
    indices: &[u8],
    m: u8,
) {
    let shares: Vec<SealedShare> = indices
        .iter()
        .map(|&i| obtain(source, kind, i, csr))
        .collect();
    for (k, share) in shares.into_iter().enumerate() {
        let progress = install(target, kind, css, share).unwrap();
        assert!(!progress.was_already_done());
        let received = k as u8 + 1;
        if received < m {
            assert_eq!(progress.value(), InstallProgress::NeedMore { received, m });
        } else {
            assert_eq!(progress.value(), InstallProgress::Complete);
        }
    }
    let expected = pattern(source, kind, "current").unwrap();
    assert_eq!(
        pattern(target, kind, "new"),
        Some(expected.clone()),
        "{kind}: NEW equals the source's CURRENT"
    );
    target.set_master_key(kind).unwrap();
    assert_eq!(
        pattern(target, kind, "current"),
        Some(expected),
        "{kind}: CURRENT after SET"
    );
}

/// CLEAR NEW (as `abort --clear-new` runs it) on a target whose `kind` CURRENT is the
/// source's, m = 2: a new key on the source and one share of it installed, cleared; then the
/// whole new key (shares 1 and 2, NEW full), cleared. NEW ends empty and CURRENT unchanged
/// each time, and share status reads throughout.
pub fn clear_new_after_one_share_and_after_all(
    source: &mut dyn Backend,
    css: &Certificate,
    target: &mut dyn Backend,
    csr: &Certificate,
    kind: CloneableKind,
) {
    let current = pattern(target, kind, "current");
    assert!(current.is_some());
    source.load_random_master_key(kind).unwrap();
    let one = obtain(source, kind, 3, csr);
    assert_eq!(
        install(target, kind, css, one).unwrap().value(),
        InstallProgress::NeedMore { received: 1, m: 2 }
    );
    target.share_status().unwrap();
    assert!(!target.clear_new(kind).unwrap().was_already_done());
    assert!(target.clear_new(kind).unwrap().was_already_done());
    assert_eq!(pattern(target, kind, "new"), None);
    assert_eq!(pattern(target, kind, "current"), current);
    for i in [1, 2] {
        let share = obtain(source, kind, i, csr);
        install(target, kind, css, share).unwrap();
    }
    assert_eq!(
        pattern(target, kind, "new"),
        pattern(source, kind, "current")
    );
    assert!(!target.clear_new(kind).unwrap().was_already_done());
    assert_eq!(pattern(target, kind, "new"), None);
    assert_eq!(pattern(target, kind, "current"), current);
    target.share_status().unwrap();
}

/// A token's object labels with the random ids and map generations blanked: the shape of
/// its state, comparable between two runs.
pub fn object_shape(node: &mut Pkcs11Backend) -> Vec<String> {
    let mut shape: Vec<String> = node
        .managed_objects()
        .unwrap()
        .into_iter()
        .map(|l| match l.rsplit_once('/') {
            Some((head, tail))
                if head.starts_with("mkclone/")
                    && tail.len() == 16
                    && tail.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                format!("{head}/*")
            }
            _ => l,
        })
        .collect();
    shape.sort();
    shape
}

pub fn module_path() -> &'static Path {
    &softhsm().module
}

/// The token labelled `label` among `slots` (as `list_slots` reports them).
pub fn listed_token<'a>(slots: &'a [SlotInfo], label: &str) -> &'a TokenSummary {
    slots
        .iter()
        .filter_map(|s| s.token.as_ref())
        .find(|t| t.label == label)
        .unwrap_or_else(|| panic!("token {label} is listed: {slots:?}"))
}

/// `change` does the work the first time and finds it done when asked again.
#[track_caller]
pub fn assert_done_then_already_done<T>(
    mut change: impl FnMut() -> Result<Applied<T>, BackendError>,
) {
    assert!(!change().unwrap().was_already_done());
    assert!(change().unwrap().was_already_done());
}
