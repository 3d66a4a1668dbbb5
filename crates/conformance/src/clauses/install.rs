//! INSTALL on the target: progress, idempotency, and every refusal, each leaving the
//! target as it was.

use mkclone_backend::{
    Applied, Backend, BackendError, CloneableKind, CurrentState, InstallProgress, KeyRole,
    NewState, Operation, ReceptionState, SealedShare,
};

use crate::factory::NodeFactory;
use crate::rig::{Rig, generate, prepare, self_signed_certificate};
use crate::support::{
    CSR_LABEL, CSS_LABEL, Snapshot, assert_refused, clause_setup, current_pattern, eid, index,
    label, m_of_n, new_pattern, ok, registers, snapshot, tables,
};

const NEED_ONE: InstallProgress = InstallProgress::NeedMore { received: 1, m: 2 };

/// Shares count to m: `NeedMore` until the m-th, which completes the key in NEW (its
/// pattern the source's CURRENT); a share already held is `AlreadyDone` with the same
/// progress, before and after completion; a new index after completion is
/// `KeyAlreadyComplete`; SET makes NEW CURRENT and starts the tables afresh.
pub fn install_counts_to_m_and_is_idempotent<F: NodeFactory>(factory: &F) {
    let mut rig = clause_setup!(Rig::installing, factory, [Operation::SetMasterKey]);
    for kind in CloneableKind::ALL {
        let source_pattern = current_pattern(&mut rig.source, kind);
        let [s1, s2, s3] = [1, 2, 3].map(|i| rig.obtain(kind, i));

        assert_eq!(
            ok(rig.install(kind, s1.clone()), "install 1"),
            Applied::Done(NEED_ONE)
        );
        let regs = registers(&mut rig.target, kind);
        assert_eq!(
            regs.new,
            NewState::Empty,
            "NEW fills at the m-th share: {regs:?}"
        );
        assert_eq!(
            ok(rig.install(kind, s1), "install 1 again"),
            Applied::AlreadyDone(NEED_ONE)
        );
        let t = tables(&mut rig.target, kind);
        assert_eq!(
            t.reception_of(index(1)),
            ReceptionState::ReceivedMore,
            "{t:?}"
        );

        assert_eq!(
            ok(rig.install(kind, s3.clone()), "install 3"),
            Applied::Done(InstallProgress::Complete)
        );
        let regs = registers(&mut rig.target, kind);
        assert_eq!(regs.new, NewState::Full, "{regs:?}");
        assert_eq!(
            new_pattern(&mut rig.target, kind),
            Some(source_pattern.clone())
        );
        assert_eq!(
            ok(rig.install(kind, s3), "install 3 again"),
            Applied::AlreadyDone(InstallProgress::Complete)
        );
        let before = snapshot(&mut rig.target);
        assert_refused!(
            rig.install(kind, s2),
            BackendError::KeyAlreadyComplete { kind: k } if k == kind,
            format!("a third {kind} share after completion")
        );
        assert_eq!(
            snapshot(&mut rig.target),
            before,
            "the refusal changed nothing"
        );

        assert_eq!(
            ok(rig.target.set_master_key(kind), "SET"),
            Applied::Done(())
        );
        let regs = registers(&mut rig.target, kind);
        assert_eq!(regs.new, NewState::Empty, "{regs:?}");
        assert_eq!(regs.current, CurrentState::Valid, "{regs:?}");
        assert_eq!(current_pattern(&mut rig.target, kind), source_pattern);
        let t = tables(&mut rig.target, kind);
        assert_eq!(t.received(), [], "SET clears the tables: {t:?}");
        assert_eq!(t.reception[..3], [ReceptionState::Can; 3], "{t:?}");
    }
}

/// A different share under an index already received (here: the source's polynomial
/// changed) is `DuplicateShare` and changes nothing.
pub fn install_refuses_a_different_share_under_a_received_index<F: NodeFactory>(factory: &F) {
    let mut rig = clause_setup!(Rig::installing, factory, []);
    let kind = CloneableKind::Sym;
    rig.transfer(kind, 1);
    let before = snapshot(&mut rig.target);
    // A new m-of-n makes the source forget its polynomial; back to 2-of-3, share 1 of
    // the same key is another value.
    ok(rig.source.set_m_of_n(m_of_n(2, 4)), "set 2-of-4");
    ok(rig.source.set_m_of_n(m_of_n(2, 3)), "set 2-of-3 again");
    let different = rig.obtain(kind, 1);
    assert_refused!(
        rig.install(kind, different),
        BackendError::DuplicateShare { kind: CloneableKind::Sym, index: i } if i == index(1),
        "another share under index 1"
    );
    assert_eq!(snapshot(&mut rig.target), before);
}

/// Every share of one key comes from one source, one key and one m-of-n: a share of
/// another key of the source, of another source, or made for another m-of-n is
/// `ShareMismatch`, and changes nothing.
pub fn install_refuses_shares_of_another_source_key_or_m_of_n<F: NodeFactory>(factory: &F) {
    let needed = [Operation::LoadRandomMasterKey, Operation::ClearNew];
    let mut rig = clause_setup!(Rig::installing, factory, needed);
    let kind = CloneableKind::Sym;
    rig.transfer(kind, 1);
    let before = snapshot(&mut rig.target);

    // Another source, set up as the first, certified by the same SA.
    let mut other = factory.source_node();
    let other_css = prepare(
        &mut rig.sa,
        &rig.sa_key,
        &mut other,
        "SOURCE 2",
        rig.m_of_n,
        CSS_LABEL,
        KeyRole::Css,
    );
    let request = rig.obtain_request(kind, 2);
    let from_other = ok(other.obtain_share(&request), "obtain from the other source");
    let mut install = rig.install_request(kind, from_other);
    install.css_certificate = other_css;
    let result = rig.target.install_share(&install);
    assert_mismatch(
        &mut rig.target,
        result,
        "a share of another source",
        &before,
    );

    // Another key of the same source.
    ok(rig.source.load_random_master_key(kind), "load another key");
    let other_key = rig.obtain(kind, 2);
    let result = rig.install(kind, other_key);
    assert_mismatch(&mut rig.target, result, "a share of another key", &before);

    // Another m-of-n, on a target that holds nothing.
    ok(rig.target.clear_new(kind), "clear NEW");
    let before = snapshot(&mut rig.target);
    ok(
        rig.source.set_m_of_n(m_of_n(2, 4)),
        "set 2-of-4 on the source",
    );
    let other_setting = rig.obtain(kind, 2);
    let result = rig.install(kind, other_setting);
    let what = "a share made for 2-of-4 on a 2-of-3 node";
    assert_mismatch(&mut rig.target, result, what, &before);
}

/// `result`, an INSTALL of a SYM share on `target`, is `ShareMismatch` (`what` names the
/// share), and `target` is as it was (`before`).
fn assert_mismatch<N: Backend>(
    target: &mut N,
    result: Result<Applied<InstallProgress>, BackendError>,
    what: &str,
    before: &Snapshot,
) {
    assert_refused!(
        result,
        BackendError::ShareMismatch {
            kind: CloneableKind::Sym
        },
        what
    );
    assert_eq!(&snapshot(target), before);
}

/// A share sealed to one target is `WrongTarget` on another, before any cryptography,
/// and changes nothing there.
pub fn install_refuses_a_share_for_another_target<F: NodeFactory>(factory: &F) {
    let mut rig = clause_setup!(Rig::installing, factory, []);
    let kind = CloneableKind::Asym;
    let share = rig.obtain(kind, 1);
    let mut other = factory.target_node();
    ok(other.set_eid(&eid("OTHER TARGET")), "set the EID");
    generate(&mut other, CSR_LABEL, KeyRole::Csr);
    let before = snapshot(&mut other);
    let request = rig.install_request(kind, share);
    assert_refused!(
        other.install_share(&request),
        BackendError::WrongTarget { .. },
        "a share sealed to TARGET, installed on OTHER TARGET"
    );
    assert_eq!(snapshot(&mut other), before);
}

/// A share damaged in transit, or installed as the other master key, is
/// `ShareRejected` and changes nothing.
pub fn install_refuses_a_damaged_or_mislabelled_share<F: NodeFactory>(factory: &F) {
    let mut rig = clause_setup!(Rig::installing, factory, []);
    let share = rig.obtain(CloneableKind::Sym, 1);
    let before = snapshot(&mut rig.target);
    let mut bytes = share.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01; // in the enciphered cloning-information token
    }
    let damaged = SealedShare::new(bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_refused!(
        rig.install(CloneableKind::Sym, damaged),
        BackendError::ShareRejected,
        "a damaged share"
    );
    assert_refused!(
        rig.install(CloneableKind::Asym, share),
        BackendError::ShareRejected,
        "a SYM share installed as ASYM"
    );
    assert_eq!(snapshot(&mut rig.target), before);
}

/// INSTALL needs the SA key registered under the name given (`HashNotRegistered`) and a
/// CSS certificate that key signed (`CertificateRejected`); neither changes anything.
pub fn install_refuses_without_the_registered_sa_key<F: NodeFactory>(factory: &F) {
    let mut rig = clause_setup!(Rig::installing, factory, [Operation::RetainedPublicKey]);
    let kind = CloneableKind::Sym;
    let share = rig.obtain(kind, 1);
    let before = snapshot(&mut rig.target);
    let mut request = rig.install_request(kind, share.clone());
    request.sa_name = label("NO.SUCH.SA");
    assert_refused!(
        rig.target.install_share(&request),
        BackendError::HashNotRegistered { ref name } if name.as_str() == "NO.SUCH.SA",
        "an SA name with no hash registered"
    );
    let mut request = rig.install_request(kind, share);
    request.css_certificate = self_signed_certificate(&mut rig.source, CSS_LABEL);
    assert_refused!(
        rig.target.install_share(&request),
        BackendError::CertificateRejected { .. },
        "a CSS certificate the SA key did not sign"
    );
    assert_eq!(snapshot(&mut rig.target), before);
}

/// A first share needs NEW empty (`NewNotEmpty`): here NEW holds a complete key whose
/// share tables a new SET-MOFN cleared. CLEAR NEW lets the shares in again.
pub fn install_needs_new_empty<F: NodeFactory>(factory: &F) {
    let mut rig = clause_setup!(Rig::installing, factory, [Operation::ClearNew]);
    let kind = CloneableKind::Asym;
    let [s1, s2] = [1, 2].map(|i| rig.obtain(kind, i));
    ok(rig.install(kind, s1.clone()), "install 1");
    ok(rig.install(kind, s2), "install 2");
    ok(rig.target.set_m_of_n(m_of_n(2, 4)), "set 2-of-4");
    ok(rig.target.set_m_of_n(rig.m_of_n), "set 2-of-3 again");
    assert_eq!(registers(&mut rig.target, kind).new, NewState::Full);
    assert_eq!(tables(&mut rig.target, kind).received(), []);
    let before = snapshot(&mut rig.target);
    assert_refused!(
        rig.install(kind, s1.clone()),
        BackendError::NewNotEmpty {
            kind: CloneableKind::Asym
        },
        "a first share while NEW holds a key"
    );
    assert_eq!(snapshot(&mut rig.target), before);
    assert_eq!(
        ok(rig.target.clear_new(kind), "clear NEW"),
        Applied::Done(())
    );
    assert_eq!(
        ok(rig.install(kind, s1), "install 1"),
        Applied::Done(NEED_ONE)
    );
}
