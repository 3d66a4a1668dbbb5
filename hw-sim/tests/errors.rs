//! Each refusal the protocol requires has its own typed error, and leaves the node as it
//! was.

mod common;
mod support;

use common::*;
use mkclone_backend::{
    Backend, BackendError, CloneableKind, DomainError, KeyRole, MasterKeyKind, MofN, ObtainRequest,
    RsaModulusBits, ShareIndex,
};
use mkclone_cca::Transport;
use mkclone_cca::rc::{rs, rt};
use mkclone_cca::verbs::{Reply, Request};
use mkclone_formats::pka::{PublicKeyTokenView, registration_hash};
use support::*;

#[test]
fn wrong_target() {
    let kind = CloneableKind::Sym;
    let (mut rig, _, share_for_a) = rig_with_a_share(2, kind, 1);
    let b = &mut rig.targets[1].0;
    let before = state_json(b);
    let err = b
        .install_share(&install_request(kind, &rig.css_certificate, share_for_a))
        .unwrap_err();
    match &err {
        BackendError::WrongTarget {
            expected_eid,
            actual_eid,
            ..
        } => {
            assert_eq!(expected_eid, "TARGET 1");
            assert_eq!(actual_eid, "TARGET 2");
        }
        other => panic!("expected WrongTarget, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("Give the bundle to the node it names")
    );
    assert_eq!(before, state_json(b));
}

#[test]
fn unregistered_sa_hash() {
    let mut rig = rig(2, 3, 1);
    let csr = rig.targets[0].1.clone();
    let err = rig
        .source
        .obtain_share(&ObtainRequest {
            sa_name: label("OTHER.SA"),
            ..obtain_request(CloneableKind::Sym, 1, &csr)
        })
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::HashNotRegistered { name } if name.as_str() == "OTHER.SA"),
        "{err}"
    );
    assert!(err.to_string().contains("register the SA key's hash first"));
}

#[test]
fn key_not_matching_its_registered_hash() {
    let mut sa = phase1(card(1, "SA"));
    let mut other = card(3, "OTHER");
    let token = other
        .generate_retained_key(&generate_request(
            "IMPOSTOR",
            KeyRole::Sa,
            RsaModulusBits::B2048,
        ))
        .unwrap()
        .value();
    let impostor = PublicKeyTokenView::decode(&token)
        .unwrap()
        .certificate
        .unwrap()
        .encode()
        .unwrap();
    let mut node = card(2, "NODE");
    node.register_public_key_hash(&label(SA_LABEL), &sa.key.hash, true)
        .unwrap();
    let before = state_json(&node);
    let err = node
        .register_public_key(&label(SA_LABEL), &impostor, true)
        .unwrap_err();
    assert!(
        matches!(err, BackendError::KeyDoesNotMatchHash { .. }),
        "{err}"
    );
    assert_eq!(before, state_json(&node));
    // The right key registers.
    node.register_public_key(&label(SA_LABEL), &sa.key.certificate, true)
        .unwrap();
    // A key registered before its hash:
    let err = sa
        .node
        .register_public_key(&label("NO.HASH"), &sa.key.certificate, true)
        .unwrap_err();
    assert!(
        matches!(err, BackendError::HashNotRegistered { .. }),
        "{err}"
    );
}

#[test]
fn sa_key_without_clone_mark_and_clone_marks_that_disagree() {
    let mut sa = phase1(card(1, "SA"));
    let mut source = card(2, "SOURCE");
    source.load_random_master_key(CloneableKind::Sym).unwrap();
    source.set_m_of_n(MofN::new(1, 1).unwrap()).unwrap();
    source
        .register_public_key_hash(&label(SA_LABEL), &sa.key.hash, false)
        .unwrap();
    let err = source
        .register_public_key(&label(SA_LABEL), &sa.key.certificate, true)
        .unwrap_err();
    assert!(
        matches!(err, BackendError::CloneMarkMismatch { .. }),
        "{err}"
    );
    source
        .register_public_key(&label(SA_LABEL), &sa.key.certificate, false)
        .unwrap();

    let mut target = card(3, "TARGET");
    let csr = phase3ab(&mut sa, &mut target, MofN::new(1, 1).unwrap());
    generate_css(&mut source);
    let err = obtain_refused(&mut source, CloneableKind::Sym, 1, &csr);
    assert!(
        matches!(err, BackendError::NotMarkedForCloning { .. }),
        "{err}"
    );
}

#[test]
fn m_greater_than_n_and_n_of_16_are_refused_by_the_type_and_by_the_card() {
    assert!(matches!(
        MofN::new(4, 3),
        Err(DomainError::MofN { m: 4, n: 3, .. })
    ));
    assert!(matches!(
        MofN::new(1, 16),
        Err(DomainError::MofN { n: 16, .. })
    ));
    assert!(matches!(MofN::new(0, 3), Err(DomainError::MofN { .. })));
    assert!(
        MofN::new(4, 3)
            .unwrap_err()
            .to_string()
            .contains("cannot exceed n")
    );
    // A card refuses the raw values too (a request that bypasses the type).
    let mut node = card(4, "RAW");
    for (m, n) in [(4u8, 3u8), (1, 16), (0, 0)] {
        let request = Request::SetMofN { m, n };
        let msg = request.to_message(0x0d, 4096).unwrap();
        let reply = Reply::from_message(
            &node.transport_mut().send(&msg, 4096, false).unwrap(),
            &request,
        )
        .unwrap();
        assert_eq!(
            (reply.return_code, reply.reason_code),
            (rt::ERROR, rs::BAD_MOFN),
            "{m}-of-{n}"
        );
    }
    assert_eq!(node.share_status().unwrap().m_of_n, None);
}

#[test]
fn share_index_zero_and_beyond_n() {
    assert!(matches!(
        ShareIndex::new(0),
        Err(DomainError::ShareIndex { index: 0, .. })
    ));
    assert!(matches!(
        ShareIndex::new(16),
        Err(DomainError::ShareIndex { index: 16, .. })
    ));
    let mut rig = rig(2, 3, 1);
    let csr = rig.targets[0].1.clone();
    let err = obtain_refused(&mut rig.source, CloneableKind::Sym, 4, &csr);
    assert!(
        matches!(err, BackendError::IndexOutOfRange { n: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("use 1 to 3"));
}

#[test]
fn set_with_new_not_full_and_obtain_with_current_empty() {
    let mut node = card(5, "EMPTY");
    let err = node.set_master_key(CloneableKind::Asym).unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::NewNotFull {
                kind: CloneableKind::Asym
            }
        ),
        "{err}"
    );

    let mut rig = rig(2, 3, 1);
    // A source whose ASYM CURRENT was never loaded.
    let mut source = card(6, "NO KEY");
    source.set_m_of_n(rig.m_of_n).unwrap();
    install_sa(&mut source, &rig.sa.key);
    generate_css(&mut source);
    let err = obtain_refused(&mut source, CloneableKind::Asym, 1, &rig.targets[0].1);
    assert!(
        matches!(
            err,
            BackendError::CurrentNotValid {
                kind: CloneableKind::Asym
            }
        ),
        "{err}"
    );
    let _ = &mut rig;
}

#[test]
fn install_with_new_not_empty() {
    let kind = CloneableKind::Sym;
    let (mut rig, _, share) = rig_with_a_share(1, kind, 1);
    let target = &mut rig.targets[0].0;
    target.load_random_master_key(kind).unwrap();
    // RANDOM without SET leaves NEW full.
    let request = Request::MasterKey {
        action: mkclone_cca::verbs::MkAction::Random,
        kind,
    };
    let msg = request.to_message(0x0d, 4096).unwrap();
    target.transport_mut().send(&msg, 4096, false).unwrap();
    let err = target
        .install_share(&install_request(kind, &rig.css_certificate, share))
        .unwrap_err();
    assert!(matches!(err, BackendError::NewNotEmpty { .. }), "{err}");
}

#[test]
fn aes_and_apka_cloning_is_refused_with_the_reason() {
    for kind in [MasterKeyKind::Aes, MasterKeyKind::Apka] {
        let err = kind.cloneable().unwrap_err();
        assert!(matches!(err, DomainError::CloningNotSupported { .. }));
        assert!(
            err.to_string().contains("CCA does not support cloning"),
            "{err}"
        );
    }
    assert!(CloneableKind::parse("aes").is_err());
    assert_eq!(CloneableKind::parse("asym").unwrap(), CloneableKind::Asym);
}

#[test]
fn registration_hash_is_what_the_card_checks() {
    let sa = phase1(card(1, "SA"));
    let section = mkclone_formats::pka::CertificateSection::decode(&sa.key.certificate).unwrap();
    assert_eq!(registration_hash(&section).unwrap(), sa.key.hash);
}
