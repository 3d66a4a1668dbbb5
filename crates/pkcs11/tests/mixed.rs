//! Mixed rehearsals through the `Backend` trait: a simulated source's shares install into a
//! SoftHSM target, a SoftHSM source's shares into a simulated target, so the share bytes
//! are the one format both ends speak. And bundles that must be refused: tampered, for
//! another target, for the wrong master key — each leaves the target unchanged.

mod common;

use common::*;
use mkclone_backend::{Backend, BackendError, CloneableKind, MofN, SealedShare};
use mkclone_formats::seal::SealedShareParts;

#[test]
fn simulated_source_to_softhsm_target() {
    let m_of_n = MofN::new(3, 5).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let mut source = sim_node(2, "SIM SOURCE");
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let (_, mut target) = token_node("mix-target", "HSM TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    for kind in CloneableKind::ALL {
        clone_into(&mut source, &css, &mut target, &csr, kind, &[5, 2, 4], 3);
    }
}

#[test]
fn softhsm_source_to_simulated_target() {
    let m_of_n = MofN::new(3, 5).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let (_, mut source) = token_node("mix-source", "HSM SOURCE");
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let mut target = sim_node(3, "SIM TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    for kind in CloneableKind::ALL {
        clone_into(&mut source, &css, &mut target, &csr, kind, &[1, 2, 3], 3);
    }
    // The token's bundle has the container's exact layout: header, wrapped key of the
    // CSR modulus length, a cloning-information token of the simulator's length.
    let share = obtain(&mut source, CloneableKind::Sym, 4, &csr);
    let parts = SealedShareParts::decode(&share).unwrap();
    assert_eq!(parts.wrapped_key.len(), 256);
    let mut sim_source = sim_node(4, "SIM SOURCE 2");
    sim_source
        .load_random_master_key(CloneableKind::Sym)
        .unwrap();
    let sim_css = phase2(&mut sa_node, &sa, &mut sim_source, m_of_n);
    let _ = sim_css;
    let sim_share = obtain(&mut sim_source, CloneableKind::Sym, 4, &csr);
    let sim_parts = SealedShareParts::decode(&sim_share).unwrap();
    assert_eq!(
        parts.encrypted_clone_info.len(),
        sim_parts.encrypted_clone_info.len()
    );
    assert_eq!(share.as_bytes().len(), sim_share.as_bytes().len());
}

/// A SoftHSM target with one share installed, and what it needs for more.
struct Rig {
    source: mkclone_hw_sim::SimBackend,
    css: mkclone_backend::Certificate,
    target: mkclone_pkcs11::Pkcs11Backend,
    csr: mkclone_backend::Certificate,
    other_csr: mkclone_backend::Certificate,
}

fn rig(prefix: &str) -> Rig {
    let m_of_n = MofN::new(2, 3).unwrap();
    let mut sa_node = sim_node(1, "SA NODE");
    let mut source = sim_node(2, "SOURCE");
    source.load_random_master_key(CloneableKind::Sym).unwrap();
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let (_, mut target) = token_node(&format!("{prefix}-target"), "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    let mut other = sim_node(9, "OTHER TARGET");
    let other_csr = phase3ab(&mut sa_node, &sa, &mut other, m_of_n);
    let first = obtain(&mut source, CloneableKind::Sym, 1, &csr);
    install(&mut target, CloneableKind::Sym, &css, first).unwrap();
    Rig {
        source,
        css,
        target,
        csr,
        other_csr,
    }
}

fn flip(share: &SealedShare, at: usize) -> SealedShare {
    let mut bytes = share.as_bytes().to_vec();
    bytes[at] ^= 0x01;
    SealedShare::new(bytes).unwrap()
}

#[test]
fn tampered_bundles_are_rejected_and_change_nothing() {
    let mut r = rig("tamper");
    let kind = CloneableKind::Sym;
    let good = obtain(&mut r.source, kind, 2, &r.csr);
    let parts = SealedShareParts::decode(&good).unwrap();
    let header_len =
        good.as_bytes().len() - parts.encrypted_clone_info.len() - 4 - parts.wrapped_key.len() - 2;
    let key_at = header_len + 2; // the wrapped key
    let token_at = key_at + parts.wrapped_key.len() + 4; // the cloning-information token
    let before = snapshot(&mut r.target);
    let objects = r.target.managed_objects().unwrap();
    for (what, at) in [
        ("wrapped key", key_at + 7),
        ("clear token header", token_at + 20),
        ("encrypted share", token_at + 40),
        (
            "encrypted signature",
            token_at + parts.encrypted_clone_info.len() - 20,
        ),
        ("last byte", good.as_bytes().len() - 1),
    ] {
        let result = install(&mut r.target, kind, &r.css, flip(&good, at));
        assert!(
            matches!(result, Err(BackendError::ShareRejected)),
            "{what}: {result:?}"
        );
        assert_eq!(
            snapshot(&mut r.target),
            before,
            "{what}: the target is unchanged"
        );
        assert_eq!(
            r.target.managed_objects().unwrap(),
            objects,
            "{what}: no object added or removed"
        );
    }
    // Truncated and extended containers.
    let mut short = good.as_bytes().to_vec();
    short.pop();
    let result = install(
        &mut r.target,
        kind,
        &r.css,
        SealedShare::new(short).unwrap(),
    );
    assert!(matches!(result, Err(BackendError::ShareRejected)));
    // The untouched bundle still installs.
    let done = install(&mut r.target, kind, &r.css, good).unwrap();
    assert_eq!(done.value(), mkclone_backend::InstallProgress::Complete);
}

/// A token that fails while it opens a share (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR, ...) is
/// reported as the token's fault, naming the token and the return value and saying to
/// check the token and run the command again, not as a refused share (which says the
/// bundle may be tampered with); nothing changes, and once the token answers again the
/// same share installs. A return value that says the data is bad (CKR_WRAPPED_KEY_INVALID,
/// ...) still refuses the share; a fault the token shows once (it then opens a control
/// share mkclone sealed itself, and the share) does not stop the install. (SoftHSM answers
/// CKR_GENERAL_ERROR for a wrapped key that does not decrypt: the tampered "wrapped key"
/// above is still refused.)
#[test]
fn a_token_fault_while_opening_a_share_is_the_tokens_not_a_refused_share() {
    use cryptoki::error::RvError;
    let mut r = rig("fault");
    let kind = CloneableKind::Sym;
    let good = obtain(&mut r.source, kind, 2, &r.csr);
    let before = snapshot(&mut r.target);
    let objects = r.target.managed_objects().unwrap();
    let mut install_failing = |function: &'static str, rv: RvError| {
        r.target.fail_calls(function, rv, u32::MAX);
        let result = install(&mut r.target, kind, &r.css, good.clone());
        r.target.fail_calls(function, rv, 0);
        let err = result.expect_err(function);
        assert_eq!(snapshot(&mut r.target), before, "{function} {rv:?}");
        assert_eq!(r.target.managed_objects().unwrap(), objects);
        err
    };
    for (function, rv, name) in [
        ("C_UnwrapKey", RvError::GeneralError, "CKR_GENERAL_ERROR"),
        (
            "C_UnwrapKey",
            RvError::FunctionFailed,
            "CKR_FUNCTION_FAILED",
        ),
        ("C_UnwrapKey", RvError::DeviceError, "CKR_DEVICE_ERROR"),
        ("C_UnwrapKey", RvError::DeviceMemory, "CKR_DEVICE_MEMORY"),
        ("C_UnwrapKey", RvError::HostMemory, "CKR_HOST_MEMORY"),
        (
            "C_UnwrapKey",
            RvError::SessionHandleInvalid,
            "CKR_SESSION_HANDLE_INVALID",
        ),
        (
            "C_UnwrapKey",
            RvError::TokenNotPresent,
            "CKR_TOKEN_NOT_PRESENT",
        ),
        ("C_UnwrapKey", RvError::DeviceRemoved, "CKR_DEVICE_REMOVED"),
        ("C_Decrypt", RvError::GeneralError, "CKR_GENERAL_ERROR"),
        ("C_Decrypt", RvError::DeviceError, "CKR_DEVICE_ERROR"),
    ] {
        let err = install_failing(function, rv);
        let text = err.to_string();
        assert!(
            !matches!(err, BackendError::ShareRejected)
                && text.contains("token \"fault-target\"")
                && text.contains(function)
                && text.contains(name)
                && text.contains("not the share")
                && text.contains("check the token")
                && text.contains("run the same command again")
                && !text.contains("tampered"),
            "{function} {name}: {text}"
        );
    }
    for (function, rv) in [
        ("C_UnwrapKey", RvError::WrappedKeyInvalid),
        ("C_UnwrapKey", RvError::WrappedKeyLenRange),
        ("C_UnwrapKey", RvError::EncryptedDataInvalid),
        ("C_UnwrapKey", RvError::DataInvalid),
        ("C_Decrypt", RvError::EncryptedDataLenRange),
        ("C_Decrypt", RvError::DataLenRange),
    ] {
        let err = install_failing(function, rv);
        assert!(
            matches!(err, BackendError::ShareRejected),
            "{function} {rv:?}: {err}"
        );
    }
    // Once only: the token opens the control share, then the share itself.
    r.target.fail_calls("C_UnwrapKey", RvError::GeneralError, 1);
    let done = install(&mut r.target, kind, &r.css, good).unwrap();
    assert_eq!(done.value(), mkclone_backend::InstallProgress::Complete);
}

/// A share whose wrapped key is not one block of the CSR key (a byte cut or added, the
/// container re-encoded so that it decodes) or whose encrypted token is not whole
/// triple-DES blocks is refused on the host: the token is never asked to unwrap it (a
/// token that would fail every unwrap shows no fault), and the target is unchanged.
#[test]
fn a_share_of_impossible_lengths_is_refused_before_the_token_is_asked() {
    use cryptoki::error::RvError;
    let mut r = rig("lengths");
    let kind = CloneableKind::Sym;
    let good = obtain(&mut r.source, kind, 2, &r.csr);
    let before = snapshot(&mut r.target);
    let parts = SealedShareParts::decode(&good).unwrap();
    let reencoded = |change: &dyn Fn(&mut SealedShareParts)| {
        let mut p = SealedShareParts::decode(&good).unwrap();
        change(&mut p);
        p.encode().unwrap()
    };
    let cases: [(&str, SealedShare); 4] = [
        (
            "wrapped key cut",
            reencoded(&|p| p.wrapped_key.truncate(255)),
        ),
        (
            "wrapped key extended",
            reencoded(&|p| p.wrapped_key.push(0)),
        ),
        ("wrapped key empty", reencoded(&|p| p.wrapped_key.clear())),
        (
            "token not whole blocks",
            reencoded(&|p| {
                p.encrypted_clone_info.pop();
            }),
        ),
    ];
    assert_eq!(parts.wrapped_key.len(), 256, "RSA-2048 CSR key");
    for (what, share) in cases {
        r.target
            .fail_calls("C_UnwrapKey", RvError::DeviceError, u32::MAX);
        let result = install(&mut r.target, kind, &r.css, share);
        r.target.fail_calls("C_UnwrapKey", RvError::DeviceError, 0);
        assert!(
            matches!(result, Err(BackendError::ShareRejected)),
            "{what}: {result:?}"
        );
        assert_eq!(snapshot(&mut r.target), before, "{what}");
    }
    let done = install(&mut r.target, kind, &r.css, good).unwrap();
    assert_eq!(done.value(), mkclone_backend::InstallProgress::Complete);
}

#[test]
fn wrong_target_and_wrong_kind_are_refused_before_any_cryptography() {
    let mut r = rig("wrong");
    let before = snapshot(&mut r.target);
    let objects = r.target.managed_objects().unwrap();
    let for_other = obtain(&mut r.source, CloneableKind::Sym, 2, &r.other_csr);
    match install(&mut r.target, CloneableKind::Sym, &r.css, for_other) {
        Err(BackendError::WrongTarget {
            expected_eid,
            actual_eid,
            ..
        }) => {
            assert_eq!(expected_eid, "OTHER TARGET");
            assert_eq!(actual_eid, "TARGET");
        }
        other => panic!("expected WrongTarget, got {other:?}"),
    }
    // A SYM share offered as ASYM.
    let sym = obtain(&mut r.source, CloneableKind::Sym, 2, &r.csr);
    let result = install(&mut r.target, CloneableKind::Asym, &r.css, sym.clone());
    assert!(
        matches!(result, Err(BackendError::ShareRejected)),
        "{result:?}"
    );
    // A CSS certificate from another SA: refused as a certificate.
    let mut foreign_sa = sim_node(7, "FOREIGN SA");
    let foreign = phase1(&mut foreign_sa);
    let mut elsewhere = sim_node(8, "ELSEWHERE");
    elsewhere.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap();
    install_sa(&mut elsewhere, &foreign);
    let foreign_css = certify(
        &mut foreign_sa,
        &mut elsewhere,
        CSS_LABEL,
        mkclone_backend::KeyRole::Css,
    );
    let result = install(&mut r.target, CloneableKind::Sym, &foreign_css, sym);
    assert!(
        matches!(result, Err(BackendError::CertificateRejected { .. })),
        "{result:?}"
    );
    assert_eq!(snapshot(&mut r.target), before);
    assert_eq!(r.target.managed_objects().unwrap(), objects);
}

#[test]
fn shares_of_another_polynomial_or_key_are_refused() {
    let mut r = rig("mixsrc");
    let kind = CloneableKind::Sym;
    let before = snapshot(&mut r.target);
    // The source forgets its polynomial (a new m-of-n, then the old one again): share 1
    // of the same key is now another value under an index already held.
    r.source.set_m_of_n(MofN::new(2, 4).unwrap()).unwrap();
    r.source.set_m_of_n(MofN::new(2, 3).unwrap()).unwrap();
    let different = obtain(&mut r.source, kind, 1, &r.csr);
    let result = install(&mut r.target, kind, &r.css, different);
    assert!(
        matches!(result, Err(BackendError::DuplicateShare { index, .. }) if index.get() == 1),
        "{result:?}"
    );
    assert_eq!(snapshot(&mut r.target), before);
    // The source's key changed since share 1: the next share is of another key, refused
    // as the simulated card refuses it (through CcaBackend: ShareMismatch).
    r.source.load_random_master_key(kind).unwrap();
    let other_key = obtain(&mut r.source, kind, 2, &r.csr);
    let result = install(&mut r.target, kind, &r.css, other_key);
    assert!(
        matches!(
            result,
            Err(BackendError::ShareMismatch {
                kind: CloneableKind::Sym
            })
        ),
        "{result:?}"
    );
    assert_eq!(snapshot(&mut r.target), before);
    // After CLEAR NEW the target starts again and takes the new key's shares.
    r.target.clear_new(kind).unwrap();
    assert!(r.target.clear_new(kind).unwrap().was_already_done());
    for i in [1, 2] {
        let s = obtain(&mut r.source, kind, i, &r.csr);
        install(&mut r.target, kind, &r.css, s).unwrap();
    }
    assert_eq!(
        pattern(&mut r.target, kind, "new"),
        pattern(&mut r.source, kind, "current")
    );
}
