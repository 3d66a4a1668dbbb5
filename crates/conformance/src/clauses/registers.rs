//! The master-key registers: SET, CLEAR NEW, a random key.

use mkclone_backend::{
    Applied, Backend, BackendError, CloneableKind, CurrentState, NewState, Operation,
};

use crate::factory::NodeFactory;
use crate::rig::Rig;
use crate::support::{
    assert_refused, clause_setup, current_pattern, ok, registers, supporting, tables,
};

/// CLEAR NEW with nothing to clear is `AlreadyDone`; with shares held it is `Done`, drops
/// them (the indices can be received again), and again is `AlreadyDone`.
pub fn clear_new_is_idempotent<F: NodeFactory>(factory: &F) {
    let needed = [
        Operation::ClearNew,
        Operation::InstallShare,
        Operation::ShareStatus,
    ];
    let mut rig = clause_setup!(Rig::with_keys, factory, needed);
    for kind in CloneableKind::ALL {
        assert_eq!(
            ok(rig.target.clear_new(kind), "clear an empty NEW"),
            Applied::AlreadyDone(()),
            "{kind}"
        );
    }
    let kind = CloneableKind::Sym;
    let share = rig.obtain(kind, 1);
    ok(rig.install(kind, share.clone()), "install 1");
    assert_eq!(
        ok(rig.target.clear_new(kind), "clear NEW"),
        Applied::Done(())
    );
    assert_eq!(tables(&mut rig.target, kind).received(), []);
    assert_eq!(registers(&mut rig.target, kind).new, NewState::Empty);
    assert_eq!(
        ok(rig.target.clear_new(kind), "clear NEW again"),
        Applied::AlreadyDone(())
    );
    assert!(
        !ok(rig.install(kind, share), "install 1 after CLEAR").was_already_done(),
        "the share counts again"
    );
}

/// SET with NEW not full is `NewNotFull`, for each master key, and changes nothing.
pub fn set_needs_a_full_new<F: NodeFactory>(factory: &F) {
    let needed = [Operation::SetMasterKey, Operation::Status];
    let mut node = clause_setup!(supporting, factory.fresh_node(), needed);
    let before = ok(node.status(), "status");
    for kind in CloneableKind::ALL {
        assert_refused!(
            node.set_master_key(kind),
            BackendError::NewNotFull { kind: k } if k == kind,
            format!("SET {kind} with NEW empty")
        );
    }
    assert_eq!(ok(node.status(), "status"), before);
}

/// A random key goes to CURRENT (through NEW, which is empty after); the previous
/// CURRENT becomes OLD.
pub fn load_random_master_key_moves_current_to_old<F: NodeFactory>(factory: &F) {
    let needed = [Operation::LoadRandomMasterKey, Operation::Status];
    let mut node = clause_setup!(supporting, factory.fresh_node(), needed);
    for kind in CloneableKind::ALL {
        assert_eq!(
            ok(node.load_random_master_key(kind), "load a random key"),
            Applied::Done(())
        );
        let regs = registers(&mut node, kind);
        assert_eq!(
            (regs.new, regs.current, regs.old),
            (NewState::Empty, CurrentState::Valid, CurrentState::Invalid),
            "{regs:?}"
        );
        let first = current_pattern(&mut node, kind);
        ok(node.load_random_master_key(kind), "load another");
        let regs = registers(&mut node, kind);
        assert_eq!(regs.old, CurrentState::Valid, "{regs:?}");
        assert_eq!(
            regs.old_patterns,
            std::slice::from_ref(&first),
            "the first key is OLD"
        );
        assert_ne!(current_pattern(&mut node, kind), first, "a new CURRENT");
    }
}
