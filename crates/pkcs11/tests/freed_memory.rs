//! A PIN read from its source is not left in freed heap memory: neither the PIN that is
//! used, nor one refused for not being UTF-8 (the refused copy is the PIN all the same).
//! An allocator looks in every block this test binary frees while armed
//! (`mkclone_freed_watch`); its own binary, as the allocator is process-wide.
//!
//! The environment is set for a child run of this binary, never in this one (setting a
//! variable in a running process is unsound while another thread reads the environment).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use mkclone_freed_watch::{Watching, copies_freed_during, needle};
use mkclone_pkcs11::{PinSource, Pkcs11Error, resolve_pin};

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// The variable the child runs read their PIN from.
const PIN_VAR: &str = "MKCLONE_TEST_ONLY_FREED_MEMORY_PIN";
/// A PIN that is not UTF-8 (0xFF stands in no UTF-8 text), and one that is.
const NOT_UNICODE_PIN: &[u8] = b"\xFFpin-not-utf8-31d7e";
const GOOD_PIN: &[u8] = b"pin-is-utf8-9c04b2";
/// The file test's own PINs: the other tests hand theirs to a child run (its environment
/// is built and freed in this process) while this one may be watching.
const FILE_PIN: &[u8] = b"file-pin-utf8-58e1a";
const FILE_NOT_UNICODE_PIN: &[u8] = b"\xFEfile-pin-not-utf8-d3";

/// In a child run of this binary's test `name` with the PIN variable set to `pin` (the
/// parent only starts it and checks that it passed): how many freed blocks held `pin` while
/// `resolve_pin` read it and `check` looked at the outcome.
fn pin_copies_freed_in_a_child(
    name: &str,
    pin: &[u8],
    check: impl FnOnce(Result<zeroize::Zeroizing<String>, Pkcs11Error>),
) -> usize {
    if std::env::var_os(PIN_VAR).is_some() {
        let source = PinSource::Env(PIN_VAR.into());
        return copies_freed_during(&[needle(pin)], || check(resolve_pin(&source)));
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(PIN_VAR, OsStr::from_bytes(pin))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child run of {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    0
}

#[test]
fn a_pin_refused_for_not_being_utf8_is_wiped_not_just_dropped() {
    let found = pin_copies_freed_in_a_child(
        "a_pin_refused_for_not_being_utf8_is_wiped_not_just_dropped",
        NOT_UNICODE_PIN,
        |outcome| {
            let err = outcome.unwrap_err();
            assert!(matches!(err, Pkcs11Error::PinNotUnicode { .. }), "{err}");
            assert!(!err.to_string().contains("pin-not-utf8"), "{err}");
        },
    );
    assert_eq!(found, 0, "freed blocks holding the refused PIN");
}

#[test]
fn a_pin_read_from_the_environment_is_wiped_when_dropped() {
    let found = pin_copies_freed_in_a_child(
        "a_pin_read_from_the_environment_is_wiped_when_dropped",
        GOOD_PIN,
        |outcome| assert_eq!(outcome.unwrap().as_bytes(), GOOD_PIN),
    );
    assert_eq!(found, 0, "freed blocks holding the PIN");
}

#[test]
fn a_pin_read_from_a_file_is_wiped_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pin");
    let mut text = FILE_PIN.to_vec();
    text.push(b'\n');
    std::fs::write(&path, &text).unwrap();
    let found = copies_freed_during(&[needle(FILE_PIN)], || {
        let pin = resolve_pin(&PinSource::File(path.clone())).unwrap();
        assert_eq!(pin.as_bytes(), FILE_PIN);
        // And the file of a PIN that is not UTF-8.
        std::fs::write(&path, FILE_NOT_UNICODE_PIN).unwrap();
    });
    assert_eq!(found, 0, "freed blocks holding the PIN");
    let found = copies_freed_during(&[needle(FILE_NOT_UNICODE_PIN)], || {
        let err = resolve_pin(&PinSource::File(path.clone())).unwrap_err();
        assert!(matches!(err, Pkcs11Error::PinNotUnicode { .. }), "{err}");
    });
    assert_eq!(found, 0, "freed blocks holding the refused PIN");
}

/// The watch itself works in this binary.
#[test]
fn a_copy_left_in_a_freed_block_is_seen() {
    assert!(mkclone_freed_watch::sees_a_copy_left_in_a_freed_block());
}
