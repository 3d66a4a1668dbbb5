//! The per-token lock: while a backend has a token open, no other open of that token (in
//! this process or another) may proceed, and above all its recovery may not destroy the
//! objects an operation in progress has created but not yet committed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::*;
use cryptoki::object::{Attribute, AttributeType};
use mkclone_backend::{Backend, BackendError, CloneableKind};
use mkclone_pkcs11::{Pkcs11Backend, Pkcs11Error, Pkcs11NodeConfig};
use zeroize::Zeroizing;

fn open_with(config: &Pkcs11NodeConfig) -> Result<Pkcs11Backend, Pkcs11Error> {
    Pkcs11Backend::open(config, Zeroizing::new(USER_PIN.into()))
}

/// Every token object's label, read around mkclone (a session of the test's own), sorted.
fn raw_objects(label: &str) -> Vec<String> {
    let session = user_session(&node_config(module_path(), label));
    let mut labels: Vec<String> = session
        .find_objects(&[Attribute::Token(true)])
        .unwrap()
        .into_iter()
        .map(|h| {
            match session
                .get_attributes(h, &[AttributeType::Label])
                .unwrap()
                .pop()
            {
                Some(Attribute::Label(l)) => String::from_utf8(l).unwrap(),
                other => panic!("no label: {other:?}"),
            }
        })
        .collect();
    labels.sort();
    labels
}

fn in_flight(objects: &[String]) -> bool {
    objects.iter().any(|l| l.starts_with("mkclone/mk/"))
        && !objects.iter().any(|l| l.starts_with("mkclone/map/"))
}

/// `node` (on the token of `config`) stopped in the middle of RANDOM (a new register value,
/// its pattern and share table, then the map): stopped after each number of calls until its
/// new objects exist and the map does not, the state of a process between creating objects
/// and committing them.
fn stopped_in_flight(config: &Pkcs11NodeConfig, mut node: Pkcs11Backend) -> Pkcs11Backend {
    for k in 0..32 {
        node.stop_after_calls(k);
        let result = node.load_random_master_key(CloneableKind::Sym);
        assert!(
            matches!(result, Err(BackendError::OutcomeUnknown { .. })),
            "stopped after {k} calls: {result:?}"
        );
        if in_flight(&raw_objects(&config.token)) {
            return node;
        }
        drop(node);
        node = open(config);
    }
    panic!("RANDOM never left uncommitted objects");
}

/// The token's lock file, from the error of an open it refused.
fn refused(config: &Pkcs11NodeConfig) -> (Pkcs11Error, String, Option<u32>, std::path::PathBuf) {
    let err = open_with(config).expect_err("the token is in use");
    let Pkcs11Error::TokenInUse {
        label,
        serial,
        holder_pid,
        path,
        ..
    } = &err
    else {
        panic!("expected TokenInUse, got {err:?}");
    };
    assert_eq!(label, &config.token);
    let (serial, holder_pid, path) = (serial.clone(), *holder_pid, path.clone());
    (err, serial, holder_pid, path)
}

#[test]
fn a_second_open_while_an_operation_is_in_flight_is_refused_and_destroys_nothing() {
    let (config, first) = token_node("lock-busy", "FIRST");
    let serial = first.token_serial().to_string();

    let first = stopped_in_flight(&config, first);
    let before = raw_objects("lock-busy");

    let (err, err_serial, holder_pid, path) = refused(&config);
    assert_eq!(err_serial, serial);
    assert_eq!(holder_pid, Some(std::process::id()));
    let text = err.to_string();
    for part in [
        "\"lock-busy\"",
        serial.as_str(),
        &format!("pid {}", std::process::id()),
        "wait for that command to finish",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert_eq!(
        raw_objects("lock-busy"),
        before,
        "a refused open destroys nothing"
    );

    // The lock file: the holder's pid (then its command), mode 0600.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().next(),
        Some(std::process::id().to_string().as_str())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    // Once the first is gone, the token opens and its recovery removes what the stopped
    // operation left (it was never committed).
    drop(first);
    assert!(!path.exists(), "the holder removes its lock file");
    let mut second = open_with(&config).unwrap();
    let after = second.managed_objects().unwrap();
    assert!(!in_flight(&after), "{after:?}");
    assert!(
        !after.iter().any(|l| l.starts_with("mkclone/mk/")),
        "{after:?}"
    );
    // And it works.
    second.load_random_master_key(CloneableKind::Sym).unwrap();
    assert!(
        pattern(&mut second, CloneableKind::Sym, "current").is_some(),
        "RANDOM completes once the token is free"
    );
}

#[test]
fn a_token_open_in_this_process_is_refused_until_dropped() {
    let config = new_token("lock-twice");
    let first = open(&config);
    let before = raw_objects("lock-twice");
    let (err, _, holder_pid, _) = refused(&config);
    assert_eq!(holder_pid, Some(std::process::id()));
    assert!(
        err.to_string().contains(&format!(
            "in use by this mkclone process itself, pid {}",
            std::process::id()
        )),
        "{err}"
    );
    // Refused again: a refusal leaves no lock behind.
    let _ = refused(&config);
    assert_eq!(raw_objects("lock-twice"), before);
    drop(first);
    let second = open_with(&config).unwrap();
    drop(second);
    drop(open_with(&config).unwrap());
}

#[test]
fn two_tokens_can_be_open_at_once() {
    let (_, mut a) = token_node("lock-a", "NODE A");
    let (_, mut b) = token_node("lock-b", "NODE B");
    assert_ne!(a.token_serial(), b.token_serial());
    a.load_random_master_key(CloneableKind::Sym).unwrap();
    b.load_random_master_key(CloneableKind::Asym).unwrap();
    assert!(pattern(&mut a, CloneableKind::Sym, "current").is_some());
    assert!(pattern(&mut b, CloneableKind::Asym, "current").is_some());
}

const HELPER_TOKEN: &str = "MKCLONE_TEST_LOCK_HELPER_TOKEN";

/// The child's part of `a_token_open_in_another_process_is_refused` (the test binary runs
/// itself with the token's label in the environment): open the token (this process shares
/// the parent's SoftHSM through SOFTHSM2_CONF), say so, and hold it until standard input
/// closes.
fn hold_a_token_open(label: String) {
    let module = std::env::var_os("MKCLONE_TEST_LOCK_HELPER_MODULE").unwrap();
    let config = node_config(std::path::Path::new(&module), &label);
    let node = open_with(&config).unwrap();
    println!("HOLDING {}", node.token_serial());
    std::io::stdout().flush().unwrap();
    let mut rest = String::new();
    while std::io::stdin().read_line(&mut rest).unwrap() > 0 {}
    drop(node);
}

#[test]
fn a_token_open_in_another_process_is_refused() {
    // In the child this test is the holder.
    if let Ok(label) = std::env::var(HELPER_TOKEN) {
        hold_a_token_open(label);
        return;
    }
    let config = new_token("lock-other");
    // The child's stderr is this test's (inherited).
    let mut child = this_test_in_a_child("a_token_open_in_another_process_is_refused")
        .env(HELPER_TOKEN, &config.token)
        .env("MKCLONE_TEST_LOCK_HELPER_MODULE", module_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let serial = loop {
        let line = lines
            .next()
            .expect("the helper exited before opening the token")
            .unwrap();
        // libtest writes "test a_token_open_in_another_process_is_refused ... " before it.
        if let Some((_, serial)) = line.split_once("HOLDING ") {
            break serial.trim().to_string();
        }
    };
    let before = raw_objects("lock-other");
    let (err, err_serial, holder_pid, _) = refused(&config);
    assert_eq!(err_serial, serial);
    assert_eq!(holder_pid, Some(child.id()), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "in use by another mkclone command, pid {} (lock file",
            child.id()
        )),
        "{err}"
    );
    assert_eq!(raw_objects("lock-other"), before);

    drop(child.stdin.take());
    for _ in lines {}
    assert!(child.wait().unwrap().success());
    drop(open_with(&config).unwrap());
}

const TRY_TOKEN: &str = "MKCLONE_TEST_LOCK_TRY_TOKEN";
const TRY_MODULE: &str = "MKCLONE_TEST_LOCK_TRY_MODULE";

/// Where p11-kit's proxy module is (Debian's p11-kit-modules): it offers every module p11-kit
/// is configured with, SoftHSM among them (/usr/share/p11-kit/modules/softhsm2.module).
const P11_KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

/// Run this test binary's `another_path_to_a_held_token_is_refused` as a child that opens
/// token `label` through `module` (sharing this process's SoftHSM through SOFTHSM2_CONF and
/// its lock directory through the environment) and reports what happened.
fn try_in_child(label: &str, module: &std::path::Path) -> String {
    let out = this_test_in_a_child("another_path_to_a_held_token_is_refused")
        .env(TRY_TOKEN, label)
        .env(TRY_MODULE, module)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("the child reported nothing: {stdout}"))
}

#[test]
fn another_path_to_a_held_token_is_refused() {
    // In the child: try to open the token through the module named, and say what happened.
    if let (Ok(label), Some(module)) = (std::env::var(TRY_TOKEN), std::env::var_os(TRY_MODULE)) {
        match open_with(&node_config(std::path::Path::new(&module), &label)) {
            Ok(node) => println!(
                "RESULT OPENED {} LIMITS {}",
                node.token_serial(),
                node.limits().join(" | ")
            ),
            Err(e) => println!("RESULT REFUSED {e}"),
        }
        return;
    }
    assert!(
        std::path::Path::new(P11_KIT_PROXY).exists(),
        "{P11_KIT_PROXY} is missing: install p11-kit-modules (scripts/test does)"
    );
    let (config, holder) = token_node("lock-paths", "HOLDER");
    // The holder is between creating objects and committing them.
    let holder = stopped_in_flight(&config, holder);
    let before = raw_objects("lock-paths");

    // Other files that lead to the same token: a copy of the module (another inode, so
    // another instance of SoftHSM in the child), a link to that copy, and p11-kit's proxy.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libsofthsm2-copy.so");
    std::fs::copy(module_path(), &copy).unwrap();
    let link = dir.path().join("link-to-copy.so");
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    for module in [
        copy.as_path(),
        link.as_path(),
        std::path::Path::new(P11_KIT_PROXY),
    ] {
        let result = try_in_child("lock-paths", module);
        for part in [
            "REFUSED token \"lock-paths\"".to_string(),
            format!("(serial {})", holder.token_serial()),
            format!(
                "is in use by another mkclone command, pid {}",
                std::process::id()
            ),
            "wait for that command to finish".into(),
        ] {
            assert!(
                result.contains(&part),
                "{}: {part:?} missing from: {result}",
                module.display()
            );
        }
        assert_eq!(
            raw_objects("lock-paths"),
            before,
            "{}: the refused open destroyed nothing",
            module.display()
        );
    }
    // Once the holder is gone, each path opens the token (and its recovery tidies up).
    // Through p11-kit's proxy, mkclone's own calls reach an instance of their own, which
    // cannot set the CSR key's unwrap template: said at open, and only there.
    drop(holder);
    let proxy_limit = "through which mkclone cannot set it";
    for (module, proxy) in [
        (copy.as_path(), false),
        (std::path::Path::new(P11_KIT_PROXY), true),
    ] {
        let result = try_in_child("lock-paths", module);
        assert!(
            result.starts_with("OPENED ") && result.contains(proxy_limit) == proxy,
            "{}: {result}",
            module.display()
        );
    }
    assert!(!in_flight(&raw_objects("lock-paths")));
}
