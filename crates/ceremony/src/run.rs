//! `clone`: every phase of a plan, for every target, resumable.
//!
//! Run it again after an interruption at any point and it finishes the ceremony: every
//! phase reconciles with the nodes' real state and with the files already written.

use mkclone_backend::{Backend, NodeStatus};

use crate::ceremony::{Ceremony, PhaseReport};
use crate::failure::{CeremonyError, Problems, Result};
use crate::phases;

/// Where the orchestrator finds a node by its name in the plan.
pub trait Nodes {
    fn node(&mut self, name: &str) -> Result<&mut dyn Backend>;
}

/// Nodes already open, by name (tests, benchmarks, the demo).
impl<B: Backend> Nodes for std::collections::BTreeMap<String, B> {
    fn node(&mut self, name: &str) -> Result<&mut dyn Backend> {
        match self.get_mut(name) {
            Some(b) => Ok(b),
            None => Err(CeremonyError::NodeUnavailable {
                node: name.into(),
                message: "no such node is open".into(),
            }),
        }
    }
}

/// The outcome of a whole `clone`.
#[derive(Debug, serde::Serialize)]
pub struct CloneSummary {
    pub phases: Vec<PhaseReport>,
    /// Every node's status at the end, by name.
    pub nodes: Vec<(String, NodeStatus)>,
    /// The journal's final hash (for the ceremony report).
    pub journal_head: String,
}

/// A retained public key, read from its node, as the confirmation of a key to certify.
fn read_retained(
    nodes: &mut dyn Nodes,
    name: &str,
    label: &mkclone_backend::KeyLabel,
) -> Result<phases::KeyConfirmation> {
    let token = nodes
        .node(name)?
        .retained_public_key(label)
        .map_err(CeremonyError::backend(name, "read a retained public key"))?;
    Ok(token
        .map(phases::KeyConfirmation::FromNode)
        .unwrap_or(phases::KeyConfirmation::None))
}

/// The number of phases `clone` runs for a plan (for progress bars).
pub fn phase_count(targets: usize) -> u64 {
    3 + 4 * targets as u64
}

/// Run every phase. `on_phase` sees each phase's report as it completes.
pub fn run_clone(
    c: &mut Ceremony,
    nodes: &mut dyn Nodes,
    on_phase: &mut dyn FnMut(&PhaseReport),
) -> Result<CloneSummary> {
    let plan = c.plan.clone();
    let mut reports = Vec::new();
    let mut done = |r: PhaseReport, reports: &mut Vec<PhaseReport>| {
        on_phase(&r);
        reports.push(r);
    };
    // The trust anchor: the SA key the SA node holds (when phase 1 made it already) must
    // be the plan's pinned one; phase 1 pins the key it makes. sa.db is checked against it.
    if let Some(token) = nodes
        .node(&plan.sa.name)?
        .retained_public_key(&plan.sa_label())
        .map_err(CeremonyError::backend(
            &plan.sa.name,
            "read the SA public key",
        ))?
    {
        c.set_sa_fingerprint(crate::trust::SaFingerprint::of_token(&token)?)?;
    }
    let r = phases::phase1(c, nodes.node(&plan.sa.name)?)?;
    done(r, &mut reports);
    let r = phases::phase2a(c, nodes.node(&plan.source.name)?)?;
    done(r, &mut reports);
    // Every node is reachable here: the key to certify is compared with the one its node
    // holds, so a changed file cannot slip another key in.
    let css = read_retained(nodes, &plan.source.name, &plan.css_label())?;
    let r = phases::phase2b(c, nodes.node(&plan.sa.name)?, &css)?;
    done(r, &mut reports);
    for t in &plan.targets {
        let r = phases::phase3a(c, nodes.node(&t.name)?, &t.name)?;
        done(r, &mut reports);
        let csr = read_retained(nodes, &t.name, &plan.csr_label())?;
        let r = phases::phase3b(c, nodes.node(&plan.sa.name)?, &t.name, &csr)?;
        done(r, &mut reports);
    }
    // Before any share leaves the source: every problem of every node, at once.
    let mut problems = Vec::new();
    for t in &plan.targets {
        phases::preflight_source(c, nodes.node(&plan.source.name)?, &t.name, &mut problems);
        phases::preflight_target(c, nodes.node(&t.name)?, &t.name, &mut problems);
    }
    if let Ok(source_status) = nodes.node(&plan.source.name)?.status() {
        for t in &plan.targets {
            if let Ok(st) = nodes.node(&t.name)?.status() {
                phases::overwrite_guard(c, &source_status, &st, &t.name, &mut problems);
            }
        }
    }
    // Bundles are made by 3c: their absence is not a problem yet.
    problems.dedup();
    if !problems.is_empty() {
        return Err(CeremonyError::Preflight {
            problems: Problems(problems),
        });
    }
    for t in &plan.targets {
        let r = phases::phase3c(c, nodes.node(&plan.source.name)?, &t.name)?;
        done(r, &mut reports);
        let r = phases::phase3d(c, nodes.node(&t.name)?, &t.name)?;
        done(r, &mut reports);
    }
    let mut statuses = Vec::new();
    let mut names = vec![plan.sa.name.clone(), plan.source.name.clone()];
    names.extend(plan.targets.iter().map(|t| t.name.clone()));
    names.dedup();
    for name in names {
        let st = nodes
            .node(&name)?
            .status()
            .map_err(CeremonyError::backend(&name, "read status"))?;
        statuses.push((name, st));
    }
    Ok(CloneSummary {
        phases: reports,
        nodes: statuses,
        journal_head: c.journal().head_hash(),
    })
}
