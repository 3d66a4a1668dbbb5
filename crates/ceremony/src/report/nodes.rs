//! The nodes' registers before (the journal's first `node-status` note) and after (read
//! now), and their comparison with the source's.

use super::*;

// ----------------------------------------------------------------------------------------
// Node snapshots
// ----------------------------------------------------------------------------------------

pub(super) fn new_state_name(s: NewState) -> &'static str {
    match s {
        NewState::Empty => "empty",
        NewState::Partial => "partial",
        NewState::Full => "full",
    }
}

pub(super) fn current_state_name(s: CurrentState) -> &'static str {
    match s {
        CurrentState::Invalid => "invalid",
        CurrentState::Valid => "valid",
    }
}

/// One register of a master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Register {
    New,
    Current,
    Old,
}

/// The state of register `which` of `r` in words ("empty", "partial", "full" for NEW;
/// "valid", "invalid" for CURRENT and OLD) and its patterns as the page shows them
/// ("SHA-1 0123…").
pub(super) fn register_texts(r: &RegisterStatus, which: Register) -> (&'static str, Vec<String>) {
    let texts = |list: &[VerificationPattern]| list.iter().map(ToString::to_string).collect();
    match which {
        Register::New => (new_state_name(r.new), texts(&r.new_patterns)),
        Register::Current => (current_state_name(r.current), texts(&r.current_patterns)),
        Register::Old => (current_state_name(r.old), texts(&r.old_patterns)),
    }
}

pub(super) fn snapshot_of(st: &NodeStatus) -> Snapshot {
    Snapshot {
        record: None,
        time: None,
        phase: None,
        serial: Some(st.identity.serial.to_string()),
        eid: st.identity.eid.as_ref().map(ToString::to_string),
        registers: st.registers.clone(),
        status: Some(st.clone()),
    }
}

pub(super) fn register_of(s: &Snapshot, kind: CloneableKind) -> Option<RegisterStatus> {
    s.registers.iter().find(|r| r.kind == kind.kind()).cloned()
}

pub(super) fn current_text(reg: Option<&RegisterStatus>, which: Register) -> String {
    let Some(reg) = reg else {
        return "not reported".into();
    };
    let (state, patterns) = register_texts(reg, which);
    match state {
        "valid" if patterns.is_empty() => "valid (no pattern reported)".into(),
        "valid" => patterns.join(", "),
        "invalid" => "empty".into(),
        other => other.to_string(),
    }
}

pub(super) fn new_text(reg: Option<&RegisterStatus>) -> String {
    let Some(reg) = reg else {
        return "not reported".into();
    };
    match register_texts(reg, Register::New) {
        ("full", patterns) if !patterns.is_empty() => format!("full: {}", patterns.join(", ")),
        (state, _) => state.to_string(),
    }
}

/// Whether `patterns` hold the key `reference` names (patterns of one algorithm compared);
/// None when no two are of one algorithm.
pub(super) fn compare(
    patterns: &[VerificationPattern],
    reference: &[VerificationPattern],
) -> Option<bool> {
    let mut comparable = false;
    for p in patterns {
        for r in reference {
            match p.matches(r) {
                Some(true) => return Some(true),
                Some(false) => comparable = true,
                None => {}
            }
        }
    }
    comparable.then_some(false)
}

/// The first `node-status` note of `node`: the node before the ceremony touched it.
pub(super) fn first_node_status(records: &[Rec<'_>], node: &str) -> Option<Snapshot> {
    records
        .iter()
        .filter(|r| r.record.node == node)
        .find_map(|r| match r.record.note() {
            Some(Note::NodeStatus(st)) => Some(Snapshot {
                record: Some(r.reference()),
                time: Some(r.stamp()),
                phase: Some(r.record.phase.clone()),
                ..snapshot_of(&st)
            }),
            _ => None,
        })
}
