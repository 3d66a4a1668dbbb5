//! The access-control audit through the library: CSUAACM GET-ROLE read and decoded as IBM
//! lays the role out, each step's cited points checked against it.

mod common;

use common::SimMachine;
use mkclone_backend::{Backend, CloneableKind, Operation};
use mkclone_hostlib::HostlibBackend;

const STEPS: [Operation; 6] = [
    Operation::GenerateRetainedKey,
    Operation::RegisterPublicKey,
    Operation::ObtainShare,
    Operation::InstallShare,
    Operation::SetMasterKey,
    Operation::ClearNew,
];

fn offsets(audit: &mkclone_backend::access::AccessAudit, enabled: bool) -> Vec<u16> {
    audit
        .checked
        .iter()
        .filter(|c| c.enabled == enabled)
        .map(|c| c.point.offset)
        .collect()
}

#[test]
fn every_cited_point_is_read_from_the_role() {
    let m = SimMachine::new();
    let mut node = m.node();
    let audit = node
        .access_audit(&STEPS, &CloneableKind::ALL)
        .expect("audit");
    assert_eq!(audit.role.as_deref(), Some("DEFAULT"));
    assert_eq!(
        offsets(&audit, true),
        [0x0103, 0x0204, 0x001A, 0x0057, 0x0032, 0x0060]
    );
    assert!(offsets(&audit, false).is_empty());
    // What no public document gives is for the operator, by step.
    let by_hand: Vec<Operation> = audit.by_hand.iter().map(|m| m.operation).collect();
    assert_eq!(
        by_hand,
        [
            Operation::GenerateRetainedKey,
            Operation::RegisterPublicKey,
            Operation::ObtainShare,
            Operation::InstallShare
        ]
    );
    assert!(
        audit.by_hand[2].what.contains("share index"),
        "{:?}",
        audit.by_hand[2]
    );
}

#[test]
fn a_disabled_point_is_reported_missing_for_its_step_only() {
    let m = SimMachine::new();
    let mut node = m.node();
    m.control(serde_json::json!({ "disabled_acps": [0x0057, 0x0204] }));
    let audit = node
        .access_audit(&STEPS, &[CloneableKind::Asym])
        .expect("audit");
    let missing: Vec<(Operation, u16)> = audit
        .missing()
        .map(|c| (c.operation, c.point.offset))
        .collect();
    assert_eq!(
        missing,
        [
            (Operation::GenerateRetainedKey, 0x0204),
            (Operation::SetMasterKey, 0x0057)
        ]
    );
    // Only the plan's master keys: no SYM point is asked for.
    assert!(!audit.checked.iter().any(|c| c.point.offset == 0x001A));
}

#[test]
fn a_role_the_card_does_not_have_leaves_every_point_to_check_by_hand() {
    let m = SimMachine::new();
    m.card("HL000001");
    let mut cfg = m.config("HL000001");
    cfg.role = Some("AUDITOR".into());
    let mut node = HostlibBackend::open(&cfg).expect("open");
    let audit = node
        .access_audit(&[Operation::SetMasterKey], &[CloneableKind::Sym])
        .expect("audit");
    assert!(audit.checked.is_empty(), "{audit:?}");
    let hand = &audit.by_hand[0].what;
    assert!(
        hand.contains("AUDITOR") && hand.contains("8/772") && hand.contains("X'001A'"),
        "{hand}"
    );
    assert!(
        hand.contains("X'0116'"),
        "reading a role needs X'0116': {hand}"
    );
}
