//! Dual control: the SA key registered by two commands, two people.

use super::*;

// ----------------------------------------------------------------------------------------
// Dual control: the SA key registered by two commands, two people
// ----------------------------------------------------------------------------------------

pub(super) fn dual_control_node(c: &Ceremony, node_name: &str) -> Result<PlanNode> {
    let plan = &c.plan;
    std::iter::once(&plan.source)
        .chain(plan.targets.iter())
        .find(|n| n.name == node_name)
        .cloned()
        .ok_or_else(|| CeremonyError::NotInPlan {
            node: node_name.into(),
            role: "source or target",
        })
}

/// Start a dual-control step: the operator is recorded, the phase (2a on the source, 3a on
/// a target) begins, and the SA key's fingerprint is shown for comparison in person.
pub(super) fn dual_control_begin(
    c: &mut Ceremony,
    node: &mut dyn Backend,
    plan_node: &PlanNode,
    operator: &str,
    db: &SaDb,
) -> Result<(Phase, PhaseReport)> {
    c.set_operator(Some(operator.to_string()))?;
    let phase = if plan_node.name == c.plan.source.name {
        Phase::P2a
    } else {
        Phase::P3a
    };
    let mut report = begin(c, phase, plan_node, node)?;
    report.did(PhaseAction::CompareSaFingerprint {
        fingerprint: db.sa_hash.fingerprint().to_string(),
    });
    Ok((phase, report))
}

pub(super) fn require_operator(operator: &str) -> Result<()> {
    if operator.trim().is_empty() {
        return Err(CeremonyError::DualControl(
            "dual control: say who you are with --operator NAME; it is recorded in the journal"
                .into(),
        ));
    }
    crate::operator::check(operator)?;
    Ok(())
}

/// What a dual-control `command` needs before it starts: a named operator, the node (the
/// source or a target of the plan) and the trusted sa.db.
fn dual_control_inputs(
    c: &Ceremony,
    node_name: &str,
    operator: &str,
    command: &str,
) -> Result<(PlanNode, SaDb)> {
    require_operator(operator)?;
    let plan_node = dual_control_node(c, node_name)?;
    let db = trusted_sa_db(c, command)?;
    Ok((plan_node, db))
}

/// Dual control, step 1 (one person): register the SA public key's hash on `node`.
pub fn register_sa_hash(
    c: &mut Ceremony,
    node: &mut dyn Backend,
    node_name: &str,
    operator: &str,
) -> Result<PhaseReport> {
    let (plan_node, db) = dual_control_inputs(c, node_name, operator, "register-sa-hash")?;
    let (phase, mut report) = dual_control_begin(c, node, &plan_node, operator, &db)?;
    check_registered_sa(c, node, node_name, &db)?;
    let a = register_sa_hash_step(c, phase, node, node_name, &db, true)?;
    report.did(PhaseAction::RegisterSaHash {
        operator: Some(operator.to_string()),
        fingerprint: None,
        result: applied_result(&a),
    });
    report.did(PhaseAction::NextRegisterSaKey);
    end(c, report)
}

/// Who registered the SA key's hash on `node`: the operator of the last successful
/// outcome of a hash registration there, as this ceremony's journal says.
pub fn hash_registered_by(c: &Ceremony, node: &str) -> Option<String> {
    let journal = c.journal();
    let records = journal.records();
    records
        .iter()
        .rev()
        .filter(|r| r.node == node)
        .find(|r| {
            r.outcome().is_some_and(|o| {
                o.ok()
                    && records.iter().any(|i| {
                        i.seq == o.intent
                            && matches!(i.action(), Some(Action::RegisterSaHash { .. }))
                    })
            })
        })
        .and_then(|r| r.operator.clone())
}

/// Dual control, step 2 (a second person): register the SA public key itself on `node`;
/// the node checks it matches the hash registered in step 1.
pub fn register_sa_key(
    c: &mut Ceremony,
    node: &mut dyn Backend,
    node_name: &str,
    operator: &str,
) -> Result<PhaseReport> {
    let (plan_node, db) = dual_control_inputs(c, node_name, operator, "register-sa-key")?;
    // Who registered the hash here (a successful outcome, with a name)? Dual control means
    // another person registers the key; names are compared trimmed and case-folded.
    let normal = |s: &str| s.trim().to_lowercase();
    let hash_by = hash_registered_by(c, node_name);
    let Some(hash_by) = hash_by else {
        return Err(CeremonyError::DualControl(format!(
            "dual control: this ceremony's journal does not show who registered the SA key's hash on {node_name}. \
             The person who did runs `mkclone register-sa-hash --node {node_name} --operator NAME` here (it is \
             already done on the node, so only the name is recorded), then a second person registers the key"
        )));
    };
    if normal(&hash_by) == normal(operator) {
        return Err(CeremonyError::DualControl(format!(
            "dual control: {operator} registered the SA key's hash on {node_name}; the key must be registered by someone else"
        )));
    }
    let (phase, mut report) = dual_control_begin(c, node, &plan_node, operator, &db)?;
    let a = register_sa_key_step(c, phase, node, node_name, &db, Some(hash_by.clone()))?;
    report.did(PhaseAction::RegisterSaKey {
        operator: Some(operator.to_string()),
        result: applied_result(&a),
    });
    end(c, report)
}
