//! A library without mkclone's `mkclone_simlib_ext` is IBM's to mkclone: not a rehearsal
//! node, and the steps no public document describes are refused with the reason. The
//! library here is a tiny C shim exporting only IBM's verbs, each forwarding to the
//! simulated library (so the cards behind it are still simulated ones).

mod common;

use common::SimMachine;
use mkclone_backend::{
    Applied, Backend, BackendError, Eid, KeyLabel, Operation, PublicKeyToken, SubjectInfo,
};
use mkclone_hostlib::{HostlibBackend, HostlibError, create_simulated_card};

#[test]
fn a_library_without_the_extension_is_treated_as_ibms() {
    let m = SimMachine::new();
    m.card("HL000001");
    let mut cfg = m.config("HL000001");
    let shim = m.ibm_like_library();
    cfg.library = Some(shim.clone());
    cfg.mk_library = Some(shim);
    let mut node = HostlibBackend::open(&cfg).expect("open through the shim");
    assert!(!node.is_simulated());
    let caps = node.capabilities();
    assert!(!caps.rehearsal_only, "{caps:?}");
    for op in [
        Operation::CertifyPublicKey,
        Operation::SetEid,
        Operation::SetMofN,
        Operation::ListRegistrations,
        Operation::UnregisterPublicKey,
    ] {
        assert!(!caps.operations.contains(&op), "{op} listed: {caps:?}");
    }
    // Status through the public encodings only (STATICSA/STATICSB, STATCRD2).
    let status = node.status().expect("status");
    assert_eq!(status.identity.serial.as_str(), "HL000001");

    let e = node
        .certify_public_key(
            &KeyLabel::new("MKCLONE.SA").unwrap(),
            &PublicKeyToken::new(vec![0x1E, 0, 0, 8, 0, 0, 0, 0]).unwrap_or_else(|e| panic!("{e}")),
            &SubjectInfo {
                eid: None,
                serial: None,
            },
        )
        .expect_err("refused");
    match &e {
        BackendError::NotSupported {
            operation: Operation::CertifyPublicKey,
            backend: "cca",
            hint,
        } => assert!(
            hint.contains("not described publicly") && hint.contains("CNM"),
            "{hint}"
        ),
        other => panic!("not the refusal with its reason: {other:?}"),
    }
    let eid = Eid::new("TARGET").unwrap();
    let e = node
        .set_eid(&eid)
        .expect_err("a fresh card's EID cannot be set");
    assert!(
        matches!(&e, BackendError::NotSupported { operation: Operation::SetEid, hint, .. } if hint.contains("CSUACFC")),
        "{e:?}"
    );
    // Set through the simulated library itself, the plan's EID reads as already done.
    let mut simulated = HostlibBackend::open(&m.config("HL000001")).expect("open");
    assert!(simulated.is_simulated());
    simulated
        .set_eid(&eid)
        .expect("set on the simulated library");
    assert!(matches!(node.set_eid(&eid), Ok(Applied::AlreadyDone(()))));

    // `sim init` creates nothing behind IBM's library.
    let e = create_simulated_card(&cfg).expect_err("refused");
    assert!(matches!(e, HostlibError::NotSimulated { .. }), "{e:?}");
}
