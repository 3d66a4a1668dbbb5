//! The phases of IBM's CNM utility, as functions over one node and the ceremony's files.
//!
//! 1 (SA): SA key, `sa.db`. 2a (source): EID, m-of-n, SA key installed (hash, then key),
//! CSS key into `sa.db`. 2b (SA): CSS certified. Per target: 3a (target): EID, m-of-n, SA
//! key installed, CSR key into `<target>.csr.db`; 3b (SA): CSR certified; 3c (source):
//! preflight, shares obtained into bundles; 3d (target): preflight, shares installed, NEW
//! confirmed equal to the source's CURRENT, SET.
//!
//! Every phase can be run again after an interruption: keys are found by their
//! deterministic labels, and every request is reconciled with the node's real state
//! (`Applied::AlreadyDone`), so nothing is duplicated or lost.

use mkclone_backend::{
    Applied, Backend, BackendError, Certificate, CloneableKind, CurrentState, Eid, GenerateRequest,
    InstallProgress, InstallRequest, KeyRole, NewState, NodeStatus, ObtainRequest, PublicKeyToken,
    StatusCache, SubjectInfo, VerificationPattern,
};
use mkclone_formats::pka::{
    CertificateSection, PublicKeyTokenView, RsaPublicKey, registration_hash,
};

use crate::ceremony::{Ceremony, Done, PhaseReport};
use crate::event::{Action, Note};
use crate::phase::Phase;
use crate::phase_action::{ActionResult, PhaseAction};
use mkclone_formats::seal::SealedShareParts;

use crate::dbs::{
    self, BUNDLE_FORMAT, CSR_DB_FORMAT, CsrDb, CssEntry, SA_DB_FORMAT, SaDb, ShareBundle,
};
use crate::durable::Sensitivity;
use crate::envelope::Put;
use crate::failure::{CeremonyError, Problem, Problems, Result};
use crate::plan::PlanNode;
use crate::trust::{self, PatternAuthority, SaFingerprint};

mod dual_control;
mod files;
mod keys;
mod preflight;
mod shares;
mod steps;

pub use dual_control::{hash_registered_by, register_sa_hash, register_sa_key};
pub use files::{read_csr_db, read_sa_db, trusted_sa_db};
pub use keys::{phase1, phase2a, phase2b, phase3a, phase3b};
pub use preflight::{SourceReady, overwrite_guard, preflight_source, preflight_target};
pub use shares::{phase3c, phase3d};
pub use steps::{KeyConfirmation, key_fingerprint};

use files::*;
use preflight::*;
use steps::*;

pub(super) fn applied_result<T>(a: &Applied<T>) -> ActionResult {
    ActionResult::applied(a.was_already_done())
}

pub(super) fn format_err(
    what: &str,
) -> impl FnOnce(mkclone_formats::FormatError) -> CeremonyError + '_ {
    move |e| CeremonyError::Format {
        what: what.into(),
        detail: e.to_string(),
    }
}

pub(super) fn status(node: &mut dyn Backend, name: &str) -> Result<NodeStatus> {
    node.status()
        .map_err(CeremonyError::backend(name, "read status"))
}

pub(super) fn current_pattern(
    status: &NodeStatus,
    kind: CloneableKind,
) -> Option<VerificationPattern> {
    let reg = status.register(kind.kind())?;
    (reg.current == CurrentState::Valid)
        .then(|| reg.current_patterns.first().cloned())
        .flatten()
}

pub(super) fn new_pattern(status: &NodeStatus, kind: CloneableKind) -> Option<VerificationPattern> {
    let reg = status.register(kind.kind())?;
    (reg.new == NewState::Full)
        .then(|| reg.new_patterns.first().cloned())
        .flatten()
}

/// Check a node's identity against the plan (pinned serial, EID) before anything is
/// written; returns its status.
pub fn check_identity(plan: &PlanNode, node: &mut dyn Backend) -> Result<NodeStatus> {
    let st = status(node, &plan.name)?;
    if let Some(expected) = &plan.expect_serial
        && &st.identity.serial != expected
    {
        return Err(CeremonyError::IdentityMismatch {
            node: plan.name.clone(),
            what: "serial number",
            expected: expected.to_string(),
            actual: st.identity.serial.to_string(),
        });
    }
    if let Some(eid) = &st.identity.eid
        && eid != &plan.eid
    {
        return Err(CeremonyError::IdentityMismatch {
            node: plan.name.clone(),
            what: "EID",
            expected: plan.eid.to_string(),
            actual: eid.to_string(),
        });
    }
    Ok(st)
}

/// Start a phase on a node: identity first (nothing written before it passes), then the
/// journal's phase-start record with the node's status.
pub(super) fn begin(
    c: &mut Ceremony,
    phase: Phase,
    plan_node: &PlanNode,
    node: &mut dyn Backend,
) -> Result<PhaseReport> {
    let st = check_identity(plan_node, node)?;
    c.check_journal_marks(&plan_node.name)?;
    check_node_history(c, phase, plan_node, node)?;
    c.note(phase, &plan_node.name, Note::PhaseStart {})?;
    c.note(phase, &plan_node.name, Note::NodeStatus(Box::new(st)))?;
    let observer = c.observer().cloned();
    if let Some(o) = &observer {
        o.emit(&crate::progress::Progress::PhaseStarted {
            phase,
            node: &plan_node.name,
            target: o.target(),
        });
    }
    Ok(PhaseReport::observed(phase, &plan_node.name, observer))
}

/// A node that already holds this ceremony's key for its role (the SA, CSS or CSR key)
/// must appear in this journal: a phase on it ran here before. A journal without any
/// record of it was deleted, cut before its first record or replaced (even when the files'
/// journal marks were stripped too), unless an operator recorded the loss.
fn check_node_history(
    c: &Ceremony,
    phase: Phase,
    plan_node: &PlanNode,
    node: &mut dyn Backend,
) -> Result<()> {
    let name = plan_node.name.as_str();
    let known = c.journal().records().iter().any(|r| {
        r.node == name
            && matches!(
                r.note(),
                Some(Note::PhaseStart {}) | Some(Note::JournalLossAccepted { .. })
            )
    });
    if known {
        return Ok(());
    }
    let label = match phase.role() {
        Some(crate::Role::Sa) => c.plan.sa_label(),
        Some(crate::Role::Source) => c.plan.css_label(),
        Some(crate::Role::Target) => c.plan.csr_label(),
        None => return Ok(()),
    };
    let held = node
        .retained_public_key(&label)
        .map_err(CeremonyError::backend(name, "read a retained public key"))?;
    if held.is_some() {
        return Err(CeremonyError::JournalLacksNode {
            node: name.into(),
            key: label.to_string(),
            journal: c.journal().path().display().to_string(),
        });
    }
    Ok(())
}

pub(super) fn end(c: &mut Ceremony, report: PhaseReport) -> Result<PhaseReport> {
    c.note(
        report.phase,
        &report.node,
        Note::PhaseDone {
            // The journal keeps each action as its line (the journal's format).
            actions: report.actions.iter().map(ToString::to_string).collect(),
        },
    )?;
    Ok(report)
}

pub(super) fn plan_target(c: &Ceremony, target: &str) -> Result<PlanNode> {
    c.plan
        .target(target)
        .cloned()
        .ok_or_else(|| CeremonyError::NotInPlan {
            node: target.into(),
            role: "target",
        })
}
