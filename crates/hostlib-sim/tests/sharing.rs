//! Nodes on one loaded library: the adapter the library has allocated (CSUACRA) is state
//! of the loaded instance and of the thread that allocated it, so every node on an
//! instance must go through its one `Shared` (one lock, one thread that makes the calls,
//! one record of the allocation), however the node names the library.
//! The loader hands back one instance for the same file under another name (a symbolic
//! link here; a bare name it finds on its search path in a child process), and a new
//! instance for a copy of the file.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::SimMachine;
use mkclone_backend::{Backend, CloneableKind, SerialNumber};
use mkclone_hostlib::library::open_shared;
use mkclone_hostlib::{HostlibBackend, HostlibError, HostlibNodeConfig, verbs};

fn serial(node: &mut HostlibBackend) -> String {
    node.status()
        .expect("status")
        .identity
        .serial
        .as_str()
        .to_string()
}

/// Node A on the library's path, node B on a symbolic link to it (library and
/// mk_library): one `Shared`, and each node keeps talking to its own card whichever
/// opened or called last.
#[test]
fn two_spellings_of_one_library_share_one_allocation() {
    let m = SimMachine::new();
    m.card("HLA00001");
    m.card("HLB00002");
    let alias = m.home().join("alias-libcsulcca.so");
    std::os::unix::fs::symlink(&m.library, &alias).unwrap();

    let by_path = open_shared(&m.library, &m.library).expect("by path");
    let by_link = open_shared(&alias, &alias).expect("by link");
    assert!(Arc::ptr_eq(&by_path, &by_link), "one Shared per instance");

    let mut a = HostlibBackend::open(&m.config("HLA00001")).expect("node A");
    let mut cfg_b = m.config("HLB00002");
    cfg_b.library = Some(alias.clone());
    cfg_b.mk_library = Some(alias);
    let mut b = HostlibBackend::open(&cfg_b).expect("node B");
    // B opened last (its CSUACRA allocated CRP02): A's calls still go to A's card.
    assert_eq!(serial(&mut a), "HLA00001");
    assert_eq!(serial(&mut b), "HLB00002");
    assert_eq!(serial(&mut a), "HLA00001");
    assert_eq!(
        by_path.lock().unwrap().allocated,
        Some(1),
        "the one record says what the library allocated last"
    );
}

/// IBM scopes an adapter's allocation to the thread that made it (the simulated library
/// does too): a thread that allocated nothing goes to the default adapter (CRP01). `clone`
/// opens the nodes on one thread and runs the targets' phases on others; each node's calls
/// must still reach its own card, from any thread, in any order: the library's calls are
/// made on its one thread.
#[test]
fn nodes_opened_on_one_thread_reach_their_own_cards_from_any_other() {
    let m = SimMachine::new();
    m.card("HLA00001");
    m.card("HLB00002");
    m.card("HLC00003");
    let mut a = HostlibBackend::open(&m.config("HLA00001")).expect("node A");
    let mut b = HostlibBackend::open(&m.config("HLB00002")).expect("node B");
    let mut c = HostlibBackend::open(&m.config("HLC00003")).expect("node C");
    // One thread each, then one thread for all, then back here.
    std::thread::scope(|scope| {
        let seen: Vec<_> = [
            (&mut a, "HLA00001"),
            (&mut b, "HLB00002"),
            (&mut c, "HLC00003"),
        ]
        .into_iter()
        .map(|(node, expected)| scope.spawn(move || (serial(node), expected)))
        .collect();
        for handle in seen {
            let (got, expected) = handle.join().unwrap();
            assert_eq!(got, expected, "a node's call from another thread");
        }
    });
    std::thread::scope(|scope| {
        scope.spawn(|| {
            assert_eq!(serial(&mut c), "HLC00003");
            assert_eq!(serial(&mut b), "HLB00002");
            assert_eq!(serial(&mut a), "HLA00001");
        });
    });
    assert_eq!(serial(&mut b), "HLB00002");
}

/// The child's side of `a_bare_name_the_loader_finds_shares_the_instance_opened_by_path`.
const CHILD_DIR: &str = "MKCLONE_TEST_SHARING_DIR";

/// The test IBM's default configuration needs: `libcsulcca.so` as a bare name (what a node
/// without `library` gets) and the same file by its path. The loader reads its search path
/// (`LD_LIBRARY_PATH`) when a process starts, so the nodes are opened in a child process
/// started with the machine's directory on it.
#[test]
fn a_bare_name_the_loader_finds_shares_the_instance_opened_by_path() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let dir = PathBuf::from(dir);
        let config = |library: &Path, serial: &str| HostlibNodeConfig {
            library: Some(library.to_path_buf()),
            mk_library: Some(library.to_path_buf()),
            expect_serial: Some(SerialNumber::new(serial).unwrap()),
            ..HostlibNodeConfig::default()
        };
        let path = dir.join("libcsulcca.so");
        let bare = Path::new("libcsulcca.so");
        let shared = open_shared(&path, &path).expect("by path");
        let same = Arc::ptr_eq(&shared, &open_shared(bare, bare).expect("by bare name"));
        let mut a = HostlibBackend::open(&config(&path, "HLA00001")).expect("node A");
        let mut b = HostlibBackend::open(&config(bare, "HLB00002")).expect("node B");
        let serials = [serial(&mut a), serial(&mut b), serial(&mut a)];
        println!("RESULT same={same} serials={}", serials.join(","));
        return;
    }
    let m = SimMachine::new();
    m.card("HLA00001");
    m.card("HLB00002");
    let search = match std::env::var_os("LD_LIBRARY_PATH") {
        Some(old) => {
            let mut dirs = vec![m.home().to_path_buf()];
            dirs.extend(std::env::split_paths(&old));
            std::env::join_paths(dirs).unwrap()
        }
        None => m.home().as_os_str().to_owned(),
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_bare_name_the_loader_finds_shares_the_instance_opened_by_path",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, m.home())
        .env("LD_LIBRARY_PATH", search)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("RESULT same=true serials=HLA00001,HLB00002,HLA00001"),
        "{stdout}"
    );
}

/// A copy of the file is another instance, with state of its own: its own `Shared`.
#[test]
fn a_copy_of_the_library_is_an_instance_of_its_own() {
    let m = SimMachine::new();
    m.card("HL000001");
    let copy = m.home().join("copy-libcsulcca.so");
    std::fs::copy(&m.library, &copy).unwrap();
    let first = open_shared(&m.library, &m.library).expect("first");
    let second = open_shared(&copy, &copy).expect("copy");
    assert!(!Arc::ptr_eq(&first, &second));
}

/// A node naming another master-key library (CSNBMKP) than the node that opened the
/// instance first is refused at open, naming both: its Shared loads the first node's,
/// and the second name would be ignored. The same library under another name is not
/// a conflict (`two_spellings_of_one_library_share_one_allocation`).
#[test]
fn another_mk_library_for_an_open_instance_is_refused() {
    let m = SimMachine::new();
    m.card("HLA00001");
    m.card("HLB00002");
    let _a = HostlibBackend::open(&m.config("HLA00001")).expect("node A");
    let other = m.home().join("other-libcsulcca.so");
    std::fs::copy(&m.library, &other).unwrap();

    let mut cfg_b = m.config("HLB00002");
    cfg_b.mk_library = Some(other.clone());
    let e = HostlibBackend::open(&cfg_b).err().expect("refused");
    match &e {
        HostlibError::MkLibraryMismatch {
            first_mk,
            mk,
            detail,
            ..
        } => {
            assert_eq!((first_mk, mk), (&m.library, &other));
            assert_eq!(detail, "two different libraries");
        }
        other => panic!("not the mismatch: {other:?}"),
    }
    assert!(e.to_string().contains("Name the same `mk_library`"), "{e}");

    // One that cannot be loaded cannot be shown to be the same: refused too, with why.
    cfg_b.mk_library = Some(m.home().join("no-such-libcsulccamk.so"));
    let e = HostlibBackend::open(&cfg_b).err().expect("refused");
    assert!(
        matches!(&e, HostlibError::MkLibraryMismatch { detail, .. }
            if detail.contains("could not be compared") && detail.contains("no-such-libcsulccamk.so")),
        "{e:?}"
    );
}

/// A master-key library that is another copy of the host library, open for other nodes,
/// runs CSNBMKP on that copy's allocated adapter: refused when CSNBMKP is first called,
/// before it is.
#[test]
fn a_master_key_library_open_as_another_nodes_host_library_is_refused() {
    let m = SimMachine::new();
    m.card("HL000001");
    let copy = m.home().join("copy-libcsulcca.so");
    std::fs::copy(&m.library, &copy).unwrap();
    let _first = open_shared(&m.library, &m.library).expect("first");
    let second = open_shared(&copy, &m.library).expect("copy, naming the first as mk_library");
    let mut clear = verbs::master_key("CLEAR", CloneableKind::Sym);
    let e = second
        .lock()
        .unwrap()
        .call(&mut clear)
        .expect_err("refused");
    assert!(
        matches!(&e, HostlibError::MkLibraryShared { mk, owner, path }
            if mk == &m.library && owner == &m.library && path == &copy),
        "{e:?}"
    );
    assert_eq!(
        (clear.return_code, clear.reason_code),
        (-1, -1),
        "not called"
    );
}

/// The other order: a copy calls CSNBMKP from the library as its master-key library, then
/// that library is opened as a host library of its own.
#[test]
fn a_host_library_whose_csnbmkp_another_copy_calls_is_refused() {
    let m = SimMachine::new();
    m.card("HL000001");
    let copy = m.home().join("copy-libcsulcca.so");
    std::fs::copy(&m.library, &copy).unwrap();
    let first = open_shared(&copy, &m.library).expect("copy, naming the library as mk_library");
    let mut clear = verbs::master_key("CLEAR", CloneableKind::Sym);
    first.lock().unwrap().call(&mut clear).expect("called");
    assert_ne!(clear.return_code, -1, "the library answered");
    let e = open_shared(&m.library, &m.library).err().expect("refused");
    assert!(
        matches!(&e, HostlibError::MkLibraryShared { mk, owner, path }
            if mk == &m.library && owner == &copy && path == &m.library),
        "{e:?}"
    );
}
