//! Fault injection and file-backed cards.

mod common;
mod support;

use common::*;
use mkclone_backend::{
    Backend, BackendError, CloneableKind, CurrentState, Eid, MasterKeyKind, SerialNumber,
};
use mkclone_hw_sim::{Apqn, Fault, FaultPlan, SimBus, StoreError};
use support::*;

#[test]
fn a_reply_fault_is_a_device_error_and_changes_nothing() {
    let mut node = card(1, "FAULTY");
    node.transport_mut().set_faults(FaultPlan::new().at(
        1,
        Fault::Reply {
            return_code: 12,
            reason_code: 0,
        },
    ));
    let err = node.load_random_master_key(CloneableKind::Sym).unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Device {
                return_code: 12,
                ..
            }
        ),
        "{err}"
    );
    let reg = register_of(&mut node, MasterKeyKind::Sym);
    assert_eq!(reg.current, CurrentState::Invalid);
}

#[test]
fn a_transport_error_before_the_card_is_not_an_unknown_outcome() {
    let mut node = card(1, "FAULTY");
    node.transport_mut()
        .set_faults(FaultPlan::new().at(1, Fault::BeforeCard));
    let err = node.clear_new(CloneableKind::Sym).unwrap_err();
    assert!(matches!(err, BackendError::Transport { .. }), "{err}");
    assert!(!err.is_outcome_unknown());
}

#[test]
fn a_lost_reply_after_the_card_acted_is_an_unknown_outcome_that_status_resolves() {
    let mut node = card(1, "FAULTY");
    node.transport_mut()
        .set_faults(FaultPlan::new().at(1, Fault::AfterCard));
    let err = node.set_eid(&Eid::new("ANOTHER").unwrap());
    // card() already set an EID, so the set is refused by the card; use m-of-n instead.
    assert!(err.is_err());
    node.transport_mut()
        .set_faults(FaultPlan::new().at(1, Fault::AfterCard));
    let err = node
        .set_m_of_n(mkclone_backend::MofN::new(2, 3).unwrap())
        .unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
    // The card did act: reading its state tells.
    assert_eq!(
        node.share_status().unwrap().m_of_n,
        Some(mkclone_backend::MofN::new(2, 3).unwrap())
    );
    // And repeating is harmless.
    assert!(
        node.set_m_of_n(mkclone_backend::MofN::new(2, 3).unwrap())
            .unwrap()
            .was_already_done()
    );
}

#[test]
fn a_corrupted_reply_is_never_taken_for_an_answer() {
    for offset in [0usize, 2, 6, 24, 144, 146, 220, 221, 224] {
        let mut node = card(1, "FAULTY");
        node.transport_mut()
            .set_faults(FaultPlan::new().at(1, Fault::CorruptReply { offset }));
        match node.load_random_master_key(CloneableKind::Asym) {
            Err(e) => assert!(
                e.is_outcome_unknown()
                    || matches!(
                        e,
                        BackendError::Device { .. } | BackendError::MalformedReply { .. }
                    ),
                "offset {offset}: {e}"
            ),
            Ok(_) => {
                // A flip that leaves a well-formed success (e.g. in a reserved byte the
                // codec ignores) is only acceptable if the card really succeeded.
                let reg = register_of(&mut node, MasterKeyKind::Asym);
                assert_eq!(reg.current, CurrentState::Valid, "offset {offset}");
            }
        }
    }
}

#[test]
fn file_cards_are_shared_between_handles_private_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let bus = SimBus::new(dir.path());
    let apqn: Apqn = "03.000d".parse().unwrap();
    let mut one = bus
        .create_card(apqn, &SerialNumber::new("93AABC01").unwrap())
        .unwrap();
    assert!(matches!(
        bus.create_card(apqn, &SerialNumber::new("X").unwrap()),
        Err(StoreError::Exists { .. })
    ));
    one.set_eid(&Eid::new("FILE CARD").unwrap()).unwrap();
    one.load_random_master_key(CloneableKind::Sym).unwrap();
    // A second handle (another process would do the same) sees the same card.
    let mut two = bus.open_card(apqn).unwrap();
    let status = two.status().unwrap();
    assert_eq!(status.identity.eid.as_ref().unwrap().as_str(), "FILE CARD");
    assert_eq!(status.identity.serial.as_str(), "93AABC01");
    assert_eq!(
        status.register(MasterKeyKind::Sym).unwrap().current,
        CurrentState::Valid
    );

    use std::os::unix::fs::PermissionsExt;
    let path = bus.card_path(apqn);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the card file holds keys: owner only");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("REHEARSAL ONLY"));
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_corrupt_or_missing_card_file_is_a_clear_error_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let bus = SimBus::new(dir.path());
    let apqn: Apqn = "04.0001".parse().unwrap();
    assert!(matches!(
        bus.open_card(apqn),
        Err(StoreError::Missing { .. })
    ));
    bus.create_card(apqn, &SerialNumber::new("S1").unwrap())
        .unwrap();
    let path = bus.card_path(apqn);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    let mut node = bus.open_card(apqn).unwrap();
    let err = node.status().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("corrupt") && text.contains(&path.display().to_string()),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left untouched");

    // A file from a newer mkclone is refused, not overwritten.
    let apqn2: Apqn = "04.0002".parse().unwrap();
    bus.create_card(apqn2, &SerialNumber::new("S2").unwrap())
        .unwrap();
    let path2 = bus.card_path(apqn2);
    let text2 = std::fs::read_to_string(&path2)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 99");
    std::fs::write(&path2, &text2).unwrap();
    let err = bus.open_card(apqn2).unwrap().status().unwrap_err();
    assert!(err.to_string().contains("newer mkclone"), "{err}");
    assert_eq!(std::fs::read_to_string(&path2).unwrap(), text2);
}
