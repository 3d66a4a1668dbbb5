//! A whole ceremony on SoftHSM tokens: SA, source, two targets, SYM and ASYM, 3-of-5.

mod common;

use common::*;
use mkclone_backend::{
    Backend, BackendError, CloneableKind, CurrentState, GenerationState, InstallProgress, MofN,
    NewState, ReceptionState, ShareIndex,
};
use mkclone_formats::seal::SealedShareParts;

#[test]
fn clone_sym_and_asym_3_of_5_into_two_tokens() {
    let m_of_n = MofN::new(3, 5).unwrap();
    let (_, mut sa_node) = token_node("cer-sa", "SA NODE");
    let (source_config, mut source) = token_node("cer-source", "SOURCE");
    for kind in CloneableKind::ALL {
        source.load_random_master_key(kind).unwrap();
    }
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let mut targets = Vec::new();
    for (i, name) in ["cer-target1", "cer-target2"].into_iter().enumerate() {
        let (config, mut t) = token_node(name, &format!("TARGET {}", i + 1));
        let csr = phase3ab(&mut sa_node, &sa, &mut t, m_of_n);
        targets.push((config, t, csr));
    }
    let before = source.status().unwrap();

    // Target 1 gets shares 1, 3, 5; target 2 gets 2, 4, 5 (share 5 twice: same share).
    for (t, indices) in targets.iter_mut().zip([[1, 3, 5], [2, 4, 5]]) {
        for kind in CloneableKind::ALL {
            clone_into(&mut source, &css, &mut t.1, &t.2, kind, &indices, 3);
        }
    }

    assert_eq!(
        source.status().unwrap(),
        before,
        "the source's registers are unchanged"
    );
    for (config, mut target, _) in targets {
        let status = target.status().unwrap();
        for kind in CloneableKind::ALL {
            let reg = status.register(kind.kind()).unwrap();
            assert_eq!(reg.current, CurrentState::Valid);
            assert_eq!(reg.new, NewState::Empty);
            assert_eq!(
                reg.current_patterns,
                before.register(kind.kind()).unwrap().current_patterns,
                "{kind}: the target's CURRENT is the source's"
            );
        }
        // SET cleared the share tables and destroyed the held shares.
        let shares = target.share_status().unwrap();
        for kind in CloneableKind::ALL {
            assert!(shares.tables(kind).unwrap().received().is_empty());
        }
        let shape = object_shape(&mut target);
        assert!(
            !shape.iter().any(|l| l.starts_with("mkclone/share")),
            "{shape:?}"
        );
        assert_eq!(
            shape
                .iter()
                .filter(|l| l.starts_with("mkclone/map/"))
                .count(),
            1
        );
        // Everything is in the token: a new session sees the same node (once this one is
        // closed: a token is open in one backend at a time).
        drop(target);
        let reopened_status = {
            let mut again = open(&config);
            again.status().unwrap()
        };
        assert_eq!(reopened_status, status);
    }

    // The source counted the distribution: 5 went out twice (4), the others once (3).
    let tables = source.share_status().unwrap();
    let sym = tables.tables(CloneableKind::Sym).unwrap();
    let digits: Vec<GenerationState> = (1..=5)
        .map(|i| sym.generation_of(ShareIndex::new(i).unwrap()))
        .collect();
    assert_eq!(
        digits,
        [
            GenerationState::DistributedOnce,
            GenerationState::DistributedOnce,
            GenerationState::DistributedOnce,
            GenerationState::DistributedOnce,
            GenerationState::DistributedMore
        ]
    );
    assert_eq!(
        sym.generation_of(ShareIndex::new(6).unwrap()),
        GenerationState::Cannot
    );
    // The source's state survives closing the session too.
    drop(source);
    let mut source = open(&source_config);
    assert_eq!(source.status().unwrap(), before);
    assert_eq!(source.share_status().unwrap(), tables);
}

#[test]
fn share_i_is_the_same_every_time_and_counts_once() {
    let m_of_n = MofN::new(2, 3).unwrap();
    let (_, mut sa_node) = token_node("same-sa", "SA NODE");
    let (_, mut source) = token_node("same-source", "SOURCE");
    source.load_random_master_key(CloneableKind::Sym).unwrap();
    let sa = phase1(&mut sa_node);
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let (_, mut target) = token_node("same-target", "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    let kind = CloneableKind::Sym;

    let first = obtain(&mut source, kind, 2, &csr);
    let second = obtain(&mut source, kind, 2, &csr);
    // Sealed twice (fresh triple-DES keys), so the bytes differ; the share inside does not.
    assert_ne!(first, second);
    let a = SealedShareParts::decode(&first).unwrap();
    assert_eq!(a.header.index, ShareIndex::new(2).unwrap());

    let p = install(&mut target, kind, &css, first).unwrap();
    assert_eq!(p.value(), InstallProgress::NeedMore { received: 1, m: 2 });
    assert!(!p.was_already_done());
    let again = install(&mut target, kind, &css, second).unwrap();
    assert!(
        again.was_already_done(),
        "the same share again is not counted twice"
    );
    assert_eq!(
        again.value(),
        InstallProgress::NeedMore { received: 1, m: 2 }
    );
    let tables = target.share_status().unwrap();
    assert_eq!(
        tables
            .tables(kind)
            .unwrap()
            .reception_of(ShareIndex::new(2).unwrap()),
        ReceptionState::ReceivedMore
    );
    // One share is held in the token, still sealed: no key object of its own.
    let shape = object_shape(&mut target);
    assert_eq!(shape.iter().filter(|l| *l == "mkclone/share/*").count(), 1);
    assert!(
        !shape.iter().any(|l| l.starts_with("mkclone/sharekey")),
        "{shape:?}"
    );

    // Share 3 completes; a fourth index is refused as complete.
    let third = obtain(&mut source, kind, 3, &csr);
    assert_eq!(
        install(&mut target, kind, &css, third).unwrap().value(),
        InstallProgress::Complete
    );
    let shape = object_shape(&mut target);
    assert!(
        !shape.iter().any(|l| l.starts_with("mkclone/share")),
        "held shares are destroyed at the m-th: {shape:?}"
    );
    let one = obtain(&mut source, kind, 1, &csr);
    assert!(matches!(
        install(&mut target, kind, &css, one),
        Err(BackendError::KeyAlreadyComplete {
            kind: CloneableKind::Sym
        })
    ));
    assert_eq!(
        pattern(&mut target, kind, "new"),
        pattern(&mut source, kind, "current")
    );

    // Another source key under the same seed gives other shares: after the source sets a
    // new key, the target (NEW cleared) rebuilds the new key, not the old one.
    target.clear_new(kind).unwrap();
    source.load_random_master_key(kind).unwrap();
    let shares: Vec<_> = [1, 3]
        .iter()
        .map(|&i| obtain(&mut source, kind, i, &csr))
        .collect();
    for s in shares {
        install(&mut target, kind, &css, s).unwrap();
    }
    assert_eq!(
        pattern(&mut target, kind, "new"),
        pattern(&mut source, kind, "current")
    );
}

#[test]
fn obtain_and_install_refuse_what_the_card_refuses() {
    let m_of_n = MofN::new(2, 3).unwrap();
    let (_, mut sa_node) = token_node("ref-sa", "SA NODE");
    let (_, mut source) = token_node("ref-source", "SOURCE");
    let sa = phase1(&mut sa_node);
    let kind = CloneableKind::Asym;
    // No CURRENT yet.
    let css = phase2(&mut sa_node, &sa, &mut source, m_of_n);
    let (_, mut target) = token_node("ref-target", "TARGET");
    let csr = phase3ab(&mut sa_node, &sa, &mut target, m_of_n);
    let request = |index: u8, css_label: &str, csr: &mkclone_backend::Certificate| {
        mkclone_backend::ObtainRequest {
            kind,
            index: ShareIndex::new(index).unwrap(),
            css_label: label(css_label),
            sa_name: label(SA_LABEL),
            csr_certificate: csr.clone(),
        }
    };
    assert!(matches!(
        source.obtain_share(&request(1, CSS_LABEL, &csr)),
        Err(BackendError::CurrentNotValid {
            kind: CloneableKind::Asym
        })
    ));
    source.load_random_master_key(kind).unwrap();
    assert!(matches!(
        source.obtain_share(&request(4, CSS_LABEL, &csr)),
        Err(BackendError::IndexOutOfRange { n: 3, .. })
    ));
    assert!(matches!(
        source.obtain_share(&request(1, "NO.SUCH.KEY", &csr)),
        Err(BackendError::RetainedKeyNotFound { .. })
    ));
    // The SA key signs; it is not a CSS key for cloning purposes only by usage: a CSR
    // (key-management) key cannot sign shares.
    generate(&mut source, "MKCLONE.KM", mkclone_backend::KeyRole::Csr);
    assert!(matches!(
        source.obtain_share(&request(1, "MKCLONE.KM", &csr)),
        Err(BackendError::WrongKeyUsage { .. })
    ));
    // A certificate the SA did not sign.
    let self_signed = {
        let token = target
            .retained_public_key(&label(CSR_LABEL))
            .unwrap()
            .unwrap();
        mkclone_formats::pka::PublicKeyTokenView::decode(&token)
            .unwrap()
            .certificate
            .unwrap()
            .encode()
            .unwrap()
    };
    assert!(matches!(
        source.obtain_share(&request(1, CSS_LABEL, &self_signed)),
        Err(BackendError::CertificateRejected { .. })
    ));
    // The target refuses a share when NEW is full.
    target.load_random_master_key(kind).unwrap(); // CURRENT
    let s1 = obtain(&mut source, kind, 1, &csr);
    let s2 = obtain(&mut source, kind, 2, &csr);
    install(&mut target, kind, &css, s1).unwrap();
    install(&mut target, kind, &css, s2).unwrap();
    target.set_master_key(kind).unwrap();
    assert!(matches!(
        target.set_master_key(kind),
        Err(BackendError::NewNotFull {
            kind: CloneableKind::Asym
        })
    ));
    // OLD holds the key that was CURRENT; CURRENT the source's.
    assert_eq!(
        pattern(&mut target, kind, "current"),
        pattern(&mut source, kind, "current")
    );
    assert!(pattern(&mut target, kind, "old").is_some());
    // An unregistered SA name.
    let mut bad = request(1, CSS_LABEL, &csr);
    bad.sa_name = label("NOT.REGD");
    assert!(matches!(
        source.obtain_share(&bad),
        Err(BackendError::HashNotRegistered { .. })
    ));
}

#[test]
fn registry_and_retained_keys_converge_on_rerun() {
    let (_, mut node) = token_node("reg-node", "NODE");
    let (_, mut other) = token_node("reg-other", "OTHER");
    let sa = phase1(&mut other);
    let name = label(SA_LABEL);
    // Key before hash: refused, the name said.
    assert!(matches!(
        node.register_public_key(&name, &sa.certificate, true),
        Err(BackendError::HashNotRegistered { name: named }) if named == name
    ));
    assert_done_then_already_done(|| {
        node.register_public_key_hash(&label(SA_LABEL), &sa.hash, true)
    });
    assert!(matches!(
        node.register_public_key_hash(&label(SA_LABEL), &sa.hash, false),
        Err(BackendError::Conflict { .. })
    ));
    assert!(matches!(
        node.register_public_key(&label(SA_LABEL), &sa.certificate, false),
        Err(BackendError::CloneMarkMismatch { .. })
    ));
    // A different key under the name: does not match the hash.
    let other_key = phase1(&mut node);
    assert!(matches!(
        node.register_public_key(&label(SA_LABEL), &other_key.certificate, true),
        Err(BackendError::KeyDoesNotMatchHash { .. })
    ));
    assert_done_then_already_done(|| {
        node.register_public_key(&label(SA_LABEL), &sa.certificate, true)
    });
    let regs = node.list_registrations().unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].key.as_ref(), Some(&sa.certificate));
    assert!(regs[0].clone);

    // Retained keys: a rerun returns the same token; a different request conflicts.
    let first = generate(&mut node, CSS_LABEL, mkclone_backend::KeyRole::Css);
    let again = node
        .generate_retained_key(&mkclone_backend::GenerateRequest {
            label: label(CSS_LABEL),
            role: mkclone_backend::KeyRole::Css,
            bits: mkclone_backend::RsaModulusBits::B2048,
            clone: true,
        })
        .unwrap();
    assert!(again.was_already_done());
    assert_eq!(again.value(), first);
    assert!(matches!(
        node.generate_retained_key(&mkclone_backend::GenerateRequest {
            label: label(CSS_LABEL),
            role: mkclone_backend::KeyRole::Csr,
            bits: mkclone_backend::RsaModulusBits::B2048,
            clone: true,
        }),
        Err(BackendError::Conflict { .. })
    ));
    let listed = node.list_retained_keys().unwrap();
    assert_eq!(
        listed.iter().map(|k| k.label.as_str()).collect::<Vec<_>>(),
        [CSS_LABEL, SA_LABEL]
    );
    assert!(
        !node
            .delete_retained_key(&label(CSS_LABEL))
            .unwrap()
            .was_already_done()
    );
    assert!(
        node.delete_retained_key(&label(CSS_LABEL))
            .unwrap()
            .was_already_done()
    );
    assert_eq!(node.retained_public_key(&label(CSS_LABEL)).unwrap(), None);
    // The key pair is gone from the token, not only from mkclone's view.
    let shape = object_shape(&mut node);
    assert!(!shape.contains(&CSS_LABEL.to_string()), "{shape:?}");

    // EID: set once.
    assert!(
        node.set_eid(&mkclone_backend::Eid::new("NODE").unwrap())
            .unwrap()
            .was_already_done()
    );
    assert!(matches!(
        node.set_eid(&mkclone_backend::Eid::new("ELSEWHERE").unwrap()),
        Err(BackendError::EidAlreadySet { .. })
    ));
    let caps = node.capabilities();
    assert!(!caps.key_stays_in_device);
    assert!(!caps.rehearsal_only);
    assert_eq!(caps.operations.len(), mkclone_backend::Operation::ALL.len());
}
