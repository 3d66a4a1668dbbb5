//! Phases 1-3d through `CcaBackend` over the simulated card: every request crosses the
//! CPRB codec as bytes.

mod common;
mod support;

use RsaModulusBits::B2048;
use common::*;
use mkclone_backend::{
    Applied, Backend, BackendError, CloneableKind, CurrentState, InstallProgress, KeyRole,
    MasterKeyKind, NewState, ReceptionState, RsaModulusBits, ShareIndex,
};
use support::*;

#[test]
fn clone_sym_and_asym_3_of_5_into_two_targets() {
    let mut rig = rig(3, 5, 2);
    let before = rig.source.status().unwrap();
    for target in 0..2 {
        for kind in CloneableKind::ALL {
            clone_into(&mut rig, target, kind, &[1, 3, 5]);
        }
    }
    let after = rig.source.status().unwrap();
    assert_eq!(before, after, "the source's registers are unchanged");
    for (target, _) in rig.targets.iter_mut() {
        mkclone_conformance::assert_holds_source_keys(target, &after);
    }
    // SET cleared the target's share tables.
    let tables = rig.targets[0].0.share_status().unwrap();
    assert!(
        tables
            .tables(CloneableKind::Sym)
            .unwrap()
            .received()
            .is_empty()
    );
}

#[test]
fn one_of_one_and_fifteen_of_fifteen() {
    let mut rig = rig(1, 1, 1);
    clone_into(&mut rig, 0, CloneableKind::Sym, &[1]);
    let all: Vec<u8> = (1..=15).collect();
    let mut rig = rig_15();
    clone_into(&mut rig, 0, CloneableKind::Asym, &all);
    let source = current_pattern(&mut rig.source, CloneableKind::Asym);
    assert_eq!(
        current_pattern(&mut rig.targets[0].0, CloneableKind::Asym),
        source
    );
}

fn rig_15() -> Rig {
    rig(15, 15, 1)
}

#[test]
fn any_m_of_the_n_shares_in_any_order_rebuild_the_key() {
    let mut rig = rig(3, 5, 1);
    let kind = CloneableKind::Sym;
    let csr = rig.targets[0].1.clone();
    let shares: Vec<_> = (1..=5)
        .map(|i| obtain(&mut rig.source, kind, i, &csr))
        .collect();
    let expected = current_pattern(&mut rig.source, kind);
    // Every 3-subset of 5, each in a different order.
    let mut subsets = Vec::new();
    for a in 0..5 {
        for b in a + 1..5 {
            for c in b + 1..5 {
                subsets.push([a, b, c]);
            }
        }
    }
    for (n, subset) in subsets.iter().enumerate() {
        let mut order = subset.to_vec();
        order.rotate_left(n % 3);
        if n % 2 == 1 {
            order.reverse();
        }
        let target = &mut rig.targets[0].0;
        for (k, &i) in order.iter().enumerate() {
            let progress = install(target, kind, &rig.css_certificate, shares[i].clone()).value();
            assert_eq!(
                progress == InstallProgress::Complete,
                k == 2,
                "subset {order:?}"
            );
        }
        assert_eq!(new_pattern(target, kind), expected, "subset {order:?}");
        assert!(matches!(target.clear_new(kind).unwrap(), Applied::Done(())));
    }
}

#[test]
fn share_i_is_the_same_share_however_often_and_for_whichever_target() {
    let mut rig = rig(2, 3, 2);
    let kind = CloneableKind::Asym;
    let csr_a = rig.targets[0].1.clone();
    let csr_b = rig.targets[1].1.clone();
    let first = obtain(&mut rig.source, kind, 2, &csr_a);
    let again = obtain(&mut rig.source, kind, 2, &csr_a);
    let other = obtain(&mut rig.source, kind, 2, &csr_b);
    assert_ne!(first, again, "each sealing uses a fresh triple-DES key");

    let received = |t: &mut SimBackend| {
        let state = t.transport().store().snapshot().unwrap();
        state.keys(kind).received[0].value.clone()
    };
    install(&mut rig.targets[0].0, kind, &rig.css_certificate, first);
    let value_first = received(&mut rig.targets[0].0);
    rig.targets[0].0.clear_new(kind).unwrap();
    install(&mut rig.targets[0].0, kind, &rig.css_certificate, again);
    let value_again = received(&mut rig.targets[0].0);
    install(&mut rig.targets[1].0, kind, &rig.css_certificate, other);
    let value_other = received(&mut rig.targets[1].0);
    assert_eq!(value_first, value_again);
    assert_eq!(value_first, value_other);

    // STATMOFN: share 2 was distributed more than once.
    let tables = rig.source.share_status().unwrap();
    let t = tables.tables(kind).unwrap();
    assert_eq!(
        t.generation_of(ShareIndex::new(2).unwrap()),
        mkclone_backend::GenerationState::DistributedMore
    );
    assert_eq!(
        t.generation_of(ShareIndex::new(1).unwrap()),
        mkclone_backend::GenerationState::Can
    );
}

/// OBTAIN saves the card only when its state changes: the polynomial made at the first
/// OBTAIN of a key, an index's generation state moved (distributed once, then more than
/// once). From the third OBTAIN of an index on, nothing changes and the card file is left
/// as it was (a save replaces the file: a new inode), as a real card writes nothing.
#[test]
fn an_obtain_that_changes_no_state_leaves_the_card_file_as_it_was() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let bus = mkclone_hw_sim::SimBus::new(dir.path().join("cards"));
    let apqn = Apqn::new(2, 0x0d).unwrap();
    let mut source = bus
        .create_card(apqn, &mkclone_backend::SerialNumber::new("S2").unwrap())
        .unwrap();
    source
        .set_eid(&mkclone_backend::Eid::new("SOURCE").unwrap())
        .unwrap();
    let file = bus.card_path(apqn);
    let mut rig = rig_with_source(source, 2, 3, 1);
    let csr = rig.targets[0].1.clone();
    let kind = CloneableKind::Sym;
    let inode = || std::fs::metadata(&file).unwrap().ino();
    let mut obtain_saves = |index: u8| {
        let before = inode();
        obtain(&mut rig.source, kind, index, &csr);
        inode() != before
    };
    assert!(
        obtain_saves(1),
        "the first OBTAIN makes the polynomial: saved"
    );
    assert!(obtain_saves(1), "distributed once -> more than once: saved");
    assert!(!obtain_saves(1), "nothing changes: not saved");
    assert!(!obtain_saves(1), "nothing changes: not saved");
    assert!(obtain_saves(2), "another index's first OBTAIN: saved");
    let tables = rig.source.share_status().unwrap();
    let t = tables.tables(kind).unwrap();
    use mkclone_backend::GenerationState::{DistributedMore, DistributedOnce};
    assert_eq!(
        t.generation_of(ShareIndex::new(1).unwrap()),
        DistributedMore
    );
    assert_eq!(
        t.generation_of(ShareIndex::new(2).unwrap()),
        DistributedOnce
    );
}

/// An install reads of the target only what the share's header is checked against, its
/// EID (STATEID) and its CSR key, then sends the share: three requests, not a whole status
/// (three more on the simulator, five on a real card) for the EID alone.
#[test]
fn an_install_reads_the_eid_and_the_csr_key_and_nothing_more() {
    let kind = CloneableKind::Sym;
    let (mut rig, _csr, s1) = rig_with_a_share(1, kind, 1);
    let target = &mut rig.targets[0].0;
    let before = target.transport().requests();
    assert_eq!(
        install(target, kind, &rig.css_certificate, s1),
        Applied::Done(InstallProgress::NeedMore { received: 1, m: 2 })
    );
    assert_eq!(target.transport().requests() - before, 3);
}

/// The installs of one key, one after the other, read the EID and the CSR key once: an
/// install changes neither, and nothing else went to the card in between. Any other
/// request in between, or a hand on the transport (through which anything may be sent),
/// and the next install reads them again.
#[test]
fn consecutive_installs_read_the_eid_and_the_csr_key_once() {
    let kind = CloneableKind::Sym;
    let mut rig = rig(4, 5, 1);
    let csr = rig.targets[0].1.clone();
    let shares: Vec<_> = (1..=4)
        .map(|i| obtain(&mut rig.source, kind, i, &csr))
        .collect();
    let target = &mut rig.targets[0].0;
    let sent = |target: &mut SimBackend, share| {
        let before = target.transport().requests();
        let progress = install(target, kind, &rig.css_certificate, share);
        (progress, target.transport().requests() - before)
    };
    let need = |received| Applied::Done(InstallProgress::NeedMore { received, m: 4 });
    assert_eq!(sent(target, shares[0].clone()), (need(1), 3));
    assert_eq!(
        sent(target, shares[1].clone()),
        (need(2), 1),
        "the second install sends the share alone"
    );
    target.share_status().unwrap();
    assert_eq!(
        sent(target, shares[2].clone()),
        (need(3), 3),
        "after another request, the EID and the CSR key are read again"
    );
    target.transport_mut();
    assert_eq!(
        sent(target, shares[3].clone()),
        (Applied::Done(InstallProgress::Complete), 3),
        "after a hand on the transport, the EID and the CSR key are read again"
    );
}

/// Another program changes the target between two of our installs: its EID, or the key
/// under the CSR label. The second install checks the share's header against what the
/// first read; the card checks it against what it holds now and refuses the share, and
/// the install after that failure reads the node again and refuses it on the host, naming
/// what the node holds now. No share is taken in either case.
#[test]
fn a_target_changed_by_another_program_between_two_installs_takes_no_share() {
    let kind = CloneableKind::Asym;
    for change in ["eid", "csr key"] {
        let mut rig = rig(3, 5, 2);
        let csr = rig.targets[0].1.clone();
        let s1 = obtain(&mut rig.source, kind, 1, &csr);
        let s2 = obtain(&mut rig.source, kind, 2, &csr);
        let other_csr = rig.targets[1]
            .0
            .transport()
            .store()
            .snapshot()
            .unwrap()
            .retained(&label(CSR_LABEL))
            .unwrap()
            .clone();
        let target = &mut rig.targets[0].0;
        assert_eq!(
            install(target, kind, &rig.css_certificate, s1),
            Applied::Done(InstallProgress::NeedMore { received: 1, m: 3 })
        );
        // The other program, on the same card.
        target
            .transport()
            .store()
            .with_state(|card| {
                match change {
                    "eid" => card.eid = Some(mkclone_backend::Eid::new("SOMEONE ELSE").unwrap()),
                    _ => {
                        card.retained.retain(|k| k.label != other_csr.label);
                        card.retained.push(other_csr.clone());
                    }
                }
                ((), true)
            })
            .unwrap();
        let request = install_request(kind, &rig.css_certificate, s2);
        let by_card = target.install_share(&request).unwrap_err();
        let by_host = target.install_share(&request).unwrap_err();
        assert!(
            matches!(by_host, BackendError::WrongTarget { .. }),
            "{change}: {by_host}"
        );
        if change == "eid" {
            assert!(by_host.to_string().contains("SOMEONE ELSE"), "{by_host}");
        }
        assert!(
            matches!(by_card, BackendError::WrongTarget { .. }),
            "{change}: the card refuses the share: {by_card}"
        );
        let tables = target.share_status().unwrap();
        assert_eq!(
            tables.tables(kind).unwrap().received().len(),
            1,
            "{change}: the second share was not taken ({by_card})"
        );
    }
}

#[test]
fn a_repeated_install_is_reported_and_not_counted_twice() {
    let kind = CloneableKind::Sym;
    let (mut rig, csr, s1) = rig_with_a_share(1, kind, 1);
    let target = &mut rig.targets[0].0;
    assert_eq!(
        install(target, kind, &rig.css_certificate, s1.clone()),
        Applied::Done(InstallProgress::NeedMore { received: 1, m: 2 })
    );
    assert_eq!(
        install(target, kind, &rig.css_certificate, s1.clone()),
        Applied::AlreadyDone(InstallProgress::NeedMore { received: 1, m: 2 })
    );
    let t = target.share_status().unwrap();
    assert_eq!(
        t.tables(kind)
            .unwrap()
            .reception_of(ShareIndex::new(1).unwrap()),
        ReceptionState::ReceivedMore
    );
    // After the key is complete, a share already received is reported as already done,
    // a new index is refused.
    let s2 = obtain(&mut rig.source, kind, 2, &csr);
    let s3 = obtain(&mut rig.source, kind, 3, &csr);
    let target = &mut rig.targets[0].0;
    assert_eq!(
        install(target, kind, &rig.css_certificate, s2.clone()),
        Applied::Done(InstallProgress::Complete)
    );
    assert_eq!(
        install(target, kind, &rig.css_certificate, s2),
        Applied::AlreadyDone(InstallProgress::Complete)
    );
    let err = target
        .install_share(&install_request(kind, &rig.css_certificate, s3))
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::KeyAlreadyComplete {
                kind: CloneableKind::Sym
            }
        ),
        "{err}"
    );
}

#[test]
fn the_state_changing_operations_are_idempotent() {
    let mut rig = rig(2, 2, 1);
    let source = &mut rig.source;
    let eid = source.status().unwrap().identity.eid.unwrap();
    assert!(source.set_eid(&eid).unwrap().was_already_done());
    let other = mkclone_backend::Eid::new("ANOTHER").unwrap();
    assert!(matches!(
        source.set_eid(&other),
        Err(BackendError::EidAlreadySet { .. })
    ));
    assert!(source.set_m_of_n(rig.m_of_n).unwrap().was_already_done());
    assert!(
        source
            .register_public_key_hash(&label(SA_LABEL), &rig.sa.key.hash, true)
            .unwrap()
            .was_already_done()
    );
    assert!(
        source
            .register_public_key(&label(SA_LABEL), &rig.sa.key.certificate, true)
            .unwrap()
            .was_already_done()
    );
    assert!(matches!(
        source.register_public_key_hash(&label(SA_LABEL), &rig.sa.key.hash, false),
        Err(BackendError::Conflict { .. })
    ));
    let again = source
        .generate_retained_key(&generate_request(CSS_LABEL, KeyRole::Css, B2048))
        .unwrap();
    assert!(again.was_already_done());
    assert_eq!(
        Some(again.value()),
        source.retained_public_key(&label(CSS_LABEL)).unwrap()
    );
    let conflicting =
        source.generate_retained_key(&generate_request(CSS_LABEL, KeyRole::Csr, B2048));
    assert!(matches!(conflicting, Err(BackendError::Conflict { .. })));
    let kind = CloneableKind::Sym;
    assert!(rig.targets[0].0.clear_new(kind).unwrap().was_already_done());
    assert!(
        source
            .delete_retained_key(&label("NO.SUCH.KEY"))
            .unwrap()
            .was_already_done()
    );
    assert_eq!(
        source.retained_public_key(&label("NO.SUCH.KEY")).unwrap(),
        None
    );
}

#[test]
fn registers_follow_the_cca_state_machine() {
    let mut node = card(7, "REGS");
    let kind = CloneableKind::Sym;
    let reg = |n: &mut SimBackend| register_of(n, MasterKeyKind::Sym);
    let r = reg(&mut node);
    assert_eq!(
        (r.new, r.current, r.old),
        (
            NewState::Empty,
            CurrentState::Invalid,
            CurrentState::Invalid
        )
    );
    node.load_random_master_key(kind).unwrap();
    let first = reg(&mut node);
    assert_eq!(
        (first.new, first.current, first.old),
        (NewState::Empty, CurrentState::Valid, CurrentState::Invalid)
    );
    node.load_random_master_key(kind).unwrap();
    let second = reg(&mut node);
    assert_eq!(
        (second.new, second.current, second.old),
        (NewState::Empty, CurrentState::Valid, CurrentState::Valid)
    );
    assert_eq!(
        second.old_patterns, first.current_patterns,
        "SET moved CURRENT to OLD"
    );
    assert_ne!(second.current_patterns, first.current_patterns);
    // ASYM untouched.
    let asym = register_of(&mut node, MasterKeyKind::Asym);
    assert_eq!(asym.current, CurrentState::Invalid);
    assert_eq!(
        second.current_patterns[0].algorithm(),
        mkclone_backend::PatternAlgorithm::Sha1Method
    );
}

#[test]
fn a_3072_bit_csr_key_receives_shares() {
    use mkclone_backend::SubjectInfo;
    let mut rig = rig(1, 2, 0);
    let mut target = card(20, "BIG KEY TARGET");
    target.set_m_of_n(rig.m_of_n).unwrap();
    install_sa(&mut target, &rig.sa.key);
    let token = target
        .generate_retained_key(&generate_request(
            CSR_LABEL,
            KeyRole::Csr,
            RsaModulusBits::B3072,
        ))
        .unwrap()
        .value();
    let keys = target.list_retained_keys().unwrap();
    assert_eq!(keys[0].bits, 3072);
    let id = target.status().unwrap().identity;
    let csr = rig
        .sa
        .node
        .certify_public_key(
            &label(SA_LABEL),
            &token,
            &SubjectInfo {
                eid: id.eid,
                serial: Some(id.serial),
            },
        )
        .unwrap();
    let share = obtain(&mut rig.source, CloneableKind::Sym, 2, &csr);
    assert_eq!(
        install(&mut target, CloneableKind::Sym, &rig.css_certificate, share).value(),
        InstallProgress::Complete
    );
    target.set_master_key(CloneableKind::Sym).unwrap();
    assert_eq!(
        current_pattern(&mut target, CloneableKind::Sym),
        current_pattern(&mut rig.source, CloneableKind::Sym)
    );
}
