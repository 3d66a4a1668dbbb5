//! The node itself: capabilities, a fresh node's reports, EID, m-of-n.

use mkclone_backend::{
    Backend, BackendError, CloneableKind, CurrentState, DomainError, GenerationState, MofN,
    NewState, Operation, ReceptionState,
};

use crate::factory::NodeFactory;
use crate::support::{
    SNAPSHOT_READS, assert_done_then_already_done, assert_not_supported, assert_refused,
    clause_setup, eid, label, m_of_n, ok, registers, supporting, tables,
};

/// `capabilities()` names the backend, every operation it leaves out answers
/// `NotSupported`, and every read it lists answers on a fresh node.
pub fn capabilities_are_honest<F: NodeFactory>(factory: &F) {
    let mut node = factory.fresh_node();
    let capabilities = node.capabilities();
    assert_eq!(capabilities.backend, node.backend_name());
    for op in Operation::ALL {
        if !capabilities.supports(op) {
            assert_not_supported(&mut node, op);
            continue;
        }
        let what = format!("{op:?} is in capabilities()");
        match op {
            Operation::Status => drop(ok(node.status(), &what)),
            Operation::ShareStatus => drop(ok(node.share_status(), &what)),
            Operation::ListRetainedKeys => drop(ok(node.list_retained_keys(), &what)),
            Operation::ListRegistrations => drop(ok(node.list_registrations(), &what)),
            Operation::RetainedPublicKey => assert_eq!(
                ok(node.retained_public_key(&label("NO.SUCH.KEY")), &what),
                None
            ),
            // The changes are exercised by the other clauses.
            _ => {}
        }
    }
}

/// A fresh node reports no EID, empty registers, no m-of-n, empty share tables, no
/// retained key and no registration.
pub fn a_fresh_node_reports_nothing<F: NodeFactory>(factory: &F) {
    let mut node = clause_setup!(supporting, factory.fresh_node(), SNAPSHOT_READS);
    let status = ok(node.status(), "status");
    assert_eq!(status.identity.eid, None, "no EID: {status:?}");
    for kind in CloneableKind::ALL {
        let regs = registers(&mut node, kind);
        assert_eq!(regs.new, NewState::Empty, "{regs:?}");
        assert_eq!(regs.current, CurrentState::Invalid, "{regs:?}");
        assert_eq!(regs.old, CurrentState::Invalid, "{regs:?}");
        assert!(
            regs.new_patterns.is_empty()
                && regs.current_patterns.is_empty()
                && regs.old_patterns.is_empty(),
            "no patterns without keys: {regs:?}"
        );
        let t = tables(&mut node, kind);
        assert_eq!(t.generation, [GenerationState::Cannot; 15], "{t:?}");
        assert_eq!(t.reception, [ReceptionState::Cannot; 15], "{t:?}");
    }
    assert_eq!(ok(node.share_status(), "share_status").m_of_n, None);
    assert_eq!(ok(node.list_retained_keys(), "list_retained_keys"), []);
    assert_eq!(ok(node.list_registrations(), "list_registrations"), []);
}

/// The EID is set once: the same EID again is `AlreadyDone`, another is `EidAlreadySet`.
pub fn set_eid_is_idempotent_and_set_once<F: NodeFactory>(factory: &F) {
    let needed = [Operation::SetEid, Operation::Status];
    let mut node = clause_setup!(supporting, factory.fresh_node(), needed);
    let first = eid("NODE ONE");
    assert_done_then_already_done(|| node.set_eid(&first), "set the EID", "set the same EID");
    let other = eid("NODE TWO");
    assert_refused!(
        node.set_eid(&other),
        BackendError::EidAlreadySet { ref current, ref requested }
            if *current == first && *requested == other,
        "set another EID"
    );
    assert_eq!(ok(node.status(), "status").identity.eid, Some(first));
}

/// SET-MOFN: the same setting again is `AlreadyDone`; a setting starts the share tables
/// afresh (indices 1..=n can be generated and received, the rest cannot).
pub fn set_m_of_n_is_idempotent_and_starts_the_tables<F: NodeFactory>(factory: &F) {
    let needed = [Operation::SetMofN, Operation::ShareStatus];
    let mut node = clause_setup!(supporting, factory.fresh_node(), needed);
    for (m, n) in [(2, 3), (3, 5)] {
        let setting = m_of_n(m, n);
        assert_done_then_already_done(
            || node.set_m_of_n(setting),
            &format!("set m-of-n {setting}"),
            &format!("set the same m-of-n {setting}"),
        );
        assert_eq!(
            ok(node.share_status(), "share_status").m_of_n,
            Some(setting)
        );
        for kind in CloneableKind::ALL {
            let t = tables(&mut node, kind);
            for (i, (g, r)) in t.generation.iter().zip(&t.reception).enumerate() {
                let within = i < usize::from(n);
                assert_eq!(
                    *g,
                    if within {
                        GenerationState::Can
                    } else {
                        GenerationState::Cannot
                    },
                    "{kind} generation of index {} under {setting}: {t:?}",
                    i + 1
                );
                assert_eq!(
                    *r,
                    if within {
                        ReceptionState::Can
                    } else {
                        ReceptionState::Cannot
                    },
                    "{kind} reception of index {} under {setting}: {t:?}",
                    i + 1
                );
            }
        }
    }
}

/// m > n (and m or n of 0, n over 15) cannot even be asked: `MofN` refuses it, so no
/// backend receives it; the node keeps its setting.
pub fn m_greater_than_n_cannot_be_asked<F: NodeFactory>(factory: &F) {
    for (m, n) in [(3, 2), (0, 1), (1, 0), (2, 16)] {
        assert!(
            matches!(MofN::new(m, n), Err(DomainError::MofN { m: a, n: b, .. }) if a == m && b == n),
            "{m}-of-{n} must be refused"
        );
    }
    let needed = [Operation::SetMofN, Operation::ShareStatus];
    let mut node = clause_setup!(supporting, factory.fresh_node(), needed);
    ok(node.set_m_of_n(m_of_n(2, 2)), "set 2-of-2");
    assert_eq!(
        ok(node.share_status(), "share_status").m_of_n,
        Some(m_of_n(2, 2))
    );
}
