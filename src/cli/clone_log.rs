//! What a `clone` run did, phase by phase, for its `mkclone-error` document when it fails:
//! the phases it completed (as the `mkclone-clone` document gives them) and every phase that
//! failed. In parallel mode the phases running when one fails finish first, and more than
//! one may fail; the error the command returns is one of them, so without this a script
//! learns neither which targets got their shares nor what else went wrong.

use std::sync::{Mutex, PoisonError};

use mkclone_ceremony::progress::Progress;
use mkclone_ceremony::{Phase, PhaseReport};

/// Fed by the clone's observer, from every worker thread.
#[derive(Default)]
pub struct CloneLog {
    seen: Mutex<CloneOutcome>,
}

/// The phases of a failed `clone` run (docs/JSON.md, "Errors").
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CloneOutcome {
    /// The phases this run completed, in the order they were reported.
    pub phases: Vec<PhaseReport>,
    /// Every phase that failed, in the order they were reported (the error the command
    /// returns is one of them, the one the scheduler recorded first).
    pub failed_phases: Vec<FailedPhase>,
}

/// A phase that stopped with an error.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FailedPhase {
    pub phase: Phase,
    pub node: String,
    /// The target a per-target phase (3a-3d) worked for.
    pub target: Option<String>,
    /// The error's `kind`, as an `mkclone-error` document names it.
    pub kind: &'static str,
    pub message: String,
}

impl CloneLog {
    pub fn observe(&self, event: &Progress<'_>) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Progress::PhaseDone { report, .. } => {
                // A copy without the report's observer (which holds this log).
                let mut done = PhaseReport::new(report.phase, &report.node);
                done.actions = report.actions.clone();
                done.carry = report.carry.clone();
                seen.phases.push(done);
            }
            Progress::PhaseFailed {
                phase,
                node,
                target,
                error,
            } => seen.failed_phases.push(FailedPhase {
                phase: *phase,
                node: (*node).to_string(),
                target: target.map(str::to_string),
                kind: error.kind(),
                message: error.to_string(),
            }),
            Progress::PhaseStarted { .. } | Progress::Action { .. } | Progress::Carry { .. } => {}
        }
    }

    /// What was seen so far.
    pub fn outcome(&self) -> CloneOutcome {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mkclone_ceremony::{CeremonyError, Phase};

    #[test]
    fn keeps_each_phase_done_and_each_failure_with_its_kind() {
        let log = CloneLog::default();
        let report = PhaseReport::new(Phase::P3a, "target1");
        log.observe(&Progress::PhaseStarted {
            phase: Phase::P3a,
            node: "target1",
            target: Some("target1"),
        });
        log.observe(&Progress::PhaseDone {
            report: &report,
            target: Some("target1"),
        });
        // In parallel mode a phase running when the first failed may fail too.
        let failures = [
            (
                Phase::P3c,
                "source",
                "target2",
                "phase 3c on source (before obtain-share)",
            ),
            (
                Phase::P3a,
                "target3",
                "target3",
                "phase 3a on target3 (before set-eid)",
            ),
        ];
        let mut expected = Vec::new();
        for (phase, node, target, during) in failures {
            let error = CeremonyError::Interrupted {
                signal: 15,
                during: during.into(),
            };
            log.observe(&Progress::PhaseFailed {
                phase,
                node,
                target: Some(target),
                error: &error,
            });
            expected.push(serde_json::json!({
                "phase": phase.name(),
                "node": node,
                "target": target,
                "kind": "interrupted",
                "message": error.to_string(),
            }));
        }
        let json = serde_json::to_value(log.outcome()).unwrap();
        assert_eq!(json["phases"].as_array().unwrap().len(), 1, "{json:#}");
        assert_eq!(json["phases"][0]["phase"], "3a", "{json:#}");
        assert_eq!(json["phases"][0]["node"], "target1", "{json:#}");
        assert_eq!(
            json["failed_phases"],
            serde_json::Value::Array(expected),
            "{json:#}"
        );
    }
}
