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

pub(super) fn register_view(r: &RegisterStatus) -> RegisterView {
    let texts = |list: &[VerificationPattern]| list.iter().map(ToString::to_string).collect();
    RegisterView {
        kind: r.kind,
        new: new_state_name(r.new).into(),
        current: current_state_name(r.current).into(),
        old: current_state_name(r.old).into(),
        new_patterns: texts(&r.new_patterns),
        current_patterns: texts(&r.current_patterns),
        old_patterns: texts(&r.old_patterns),
    }
}

pub(super) fn snapshot_of(st: &NodeStatus) -> Snapshot {
    Snapshot {
        record: None,
        time: None,
        phase: None,
        serial: Some(st.identity.serial.to_string()),
        eid: st.identity.eid.as_ref().map(ToString::to_string),
        registers: st.registers.iter().map(register_view).collect(),
        status: Some(st.clone()),
    }
}

pub(super) fn register_of(s: &Snapshot, kind: CloneableKind) -> Option<RegisterView> {
    s.registers.iter().find(|r| r.kind == kind.kind()).cloned()
}

pub(super) fn current_text(
    reg: Option<&RegisterView>,
    field: impl Fn(&RegisterView) -> (&String, &Vec<String>),
) -> String {
    let Some(reg) = reg else {
        return "not reported".into();
    };
    let (state, patterns) = field(reg);
    match state.as_str() {
        "valid" if patterns.is_empty() => "valid (no pattern reported)".into(),
        "valid" => patterns.join(", "),
        "invalid" => "empty".into(),
        other => other.to_string(),
    }
}

pub(super) fn new_text(reg: Option<&RegisterView>) -> String {
    let Some(reg) = reg else {
        return "not reported".into();
    };
    match (reg.new.as_str(), reg.new_patterns.is_empty()) {
        ("full", false) => format!("full: {}", reg.new_patterns.join(", ")),
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
