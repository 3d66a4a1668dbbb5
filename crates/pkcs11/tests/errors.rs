//! Opening a node: each failure is its own error with a message that says what to do.

mod common;

use std::path::PathBuf;

use common::*;
use mkclone_pkcs11::{PinSource, Pkcs11Backend, Pkcs11Error, list_slots, resolve_pin};
use zeroize::Zeroizing;

fn open_with(
    config: &mkclone_pkcs11::Pkcs11NodeConfig,
    pin: &str,
) -> Result<Pkcs11Backend, Pkcs11Error> {
    Pkcs11Backend::open(config, Zeroizing::new(pin.into()))
}

#[test]
fn a_wrong_pin_says_what_the_token_flags_say() {
    let config = new_token("err-pin");
    let err = open_with(&config, "not-the-pin").unwrap_err();
    let Pkcs11Error::WrongPin { label, tries } = &err else {
        panic!("expected WrongPin, got {err:?}");
    };
    assert_eq!(label, "err-pin");
    // SoftHSM 2.6.1 counts the failure (CKF_USER_PIN_COUNT_LOW) and never locks.
    assert!(tries.count_low, "{tries:?}");
    assert!(!tries.locked);
    let text = err.to_string();
    assert!(
        text.contains("err-pin") && text.contains("fewer tries remain"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-pin"),
        "the message never carries the PIN"
    );
    // The right PIN still works, and the flag clears.
    drop(open(&config));
    let slots = list_slots(module_path()).unwrap();
    let summary = listed_token(&slots, "err-pin");
    assert!(!summary.pin.count_low, "{summary:?}");
}

#[test]
fn a_missing_pin_variable_or_file_is_named() {
    let err = resolve_pin(&PinSource::Env("MKCLONE_TEST_PIN_THAT_IS_NOT_SET".into())).unwrap_err();
    assert!(matches!(err, Pkcs11Error::PinEnvMissing { .. }));
    assert_eq!(
        err.to_string(),
        "the PIN environment variable MKCLONE_TEST_PIN_THAT_IS_NOT_SET is not set: export it before running mkclone \
         (the PIN is never taken from the command line)"
    );
    let err = resolve_pin(&PinSource::File("/nonexistent/mkclone/pin".into())).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/mkclone/pin"),
        "{err}"
    );
    // A PIN file works end to end.
    let config = new_token("err-pinfile");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("pin");
    std::fs::write(&file, format!("{USER_PIN}\n")).unwrap();
    let pin = resolve_pin(&PinSource::File(file)).unwrap();
    Pkcs11Backend::open(&config, pin).unwrap();
}

#[test]
fn a_missing_token_lists_the_tokens_present() {
    let _present = new_token("err-present");
    let mut config = new_token("err-other");
    config.token = "no-such-token".into();
    let err = open_with(&config, USER_PIN).unwrap_err();
    let Pkcs11Error::TokenNotFound { available, .. } = &err else {
        panic!("expected TokenNotFound, got {err:?}");
    };
    assert!(available.contains("\"err-present\""), "{available}");
    assert!(
        err.to_string().contains("no-such-token") && err.to_string().contains("mkclone devices")
    );
}

#[test]
fn an_unexpected_serial_is_refused() {
    let mut config = new_token("err-serial");
    let slots = list_slots(module_path()).unwrap();
    let actual = listed_token(&slots, "err-serial").serial.clone();
    config.expect_token_serial = Some("0000000000000000".into());
    let err = open_with(&config, USER_PIN).unwrap_err();
    match &err {
        Pkcs11Error::TokenSerialMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, "0000000000000000");
            assert_eq!(found, &actual);
        }
        other => panic!("expected TokenSerialMismatch, got {other:?}"),
    }
    config.expect_token_serial = Some(actual.clone());
    let node = open_with(&config, USER_PIN).unwrap();
    assert_eq!(node.token_serial(), actual);
}

#[test]
fn modules_that_are_missing_or_not_pkcs11_are_named() {
    let _ = softhsm();
    let mut config = new_token("err-module");
    config.module = PathBuf::from("/nonexistent/libvendor-pkcs11.so");
    let err = open_with(&config, USER_PIN).unwrap_err();
    assert!(matches!(err, Pkcs11Error::ModuleNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/libvendor-pkcs11.so"));

    // A file that is no shared library at all.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let text = dir.path().join("not-a-library.so");
    std::fs::write(&text, "this is not an ELF file").unwrap();
    config.module = text.clone();
    let err = open_with(&config, USER_PIN).unwrap_err();
    assert!(
        matches!(err, Pkcs11Error::NotAPkcs11Library { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not-a-library.so"), "{err}");

    // A real shared library without the PKCS#11 entry points.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    if let Some(libc) = libc {
        config.module = libc;
        let err = open_with(&config, USER_PIN).unwrap_err();
        assert!(
            matches!(err, Pkcs11Error::NotAPkcs11Library { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("C_GetFunctionList"), "{err}");
    }
    let err = list_slots(&text).unwrap_err();
    assert!(matches!(err, Pkcs11Error::NotAPkcs11Library { .. }));
}

#[test]
fn devices_lists_slots_and_tokens() {
    let _ = new_token("err-listed");
    let slots = list_slots(module_path()).unwrap();
    let token = listed_token(&slots, "err-listed");
    assert!(token.initialized && token.user_pin_initialized && token.login_required);
    assert_eq!(token.model, "SoftHSM v2");
    assert_eq!(token.serial.len(), 16);
    let json = serde_json::to_value(&slots).unwrap();
    assert!(
        json.to_string().contains("\"label\":\"err-listed\""),
        "{json}"
    );
}
