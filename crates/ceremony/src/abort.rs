//! `abort` and clean-up: undo what a ceremony left behind, only the steps asked for, each
//! journaled.
//!
//! - clear NEW on targets that received shares of this ceremony;
//! - delete the ceremony's CSS and CSR keys (retained-key storage is small);
//! - erase `<target>.csr.db` and the share bundles (CNM erases csr.db after 3d), and the
//!   temporary files of them that killed writers left: each file is overwritten with zeros,
//!   synced, then removed; only regular files of this user with no other hard link, never
//!   through a link, all checked before any is erased;
//! - unregister the SA key from source and targets.
//!
//! After a successful 3d the same erasing of the consumed files is the clean-up.

use std::io::Write;
use std::path::Path;

use mkclone_backend::{Applied, Backend, BackendError, KeyLabel, NewState};

use crate::ceremony::{Ceremony, Done, PhaseReport};
use crate::durable::{self, Access};
use crate::error::{FileError, io_error};
use crate::event::{Action, Note};
use crate::failure::{CeremonyError, Result};
use crate::phase::Phase;
use crate::phase_action::{ActionResult, PhaseAction};
use crate::run::Nodes;

/// The clean-up steps to run. Nothing else is done.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AbortSteps {
    /// Targets concerned (empty: every target of the plan).
    pub targets: Vec<String>,
    pub clear_new: bool,
    pub delete_keys: bool,
    pub erase_files: bool,
    pub unregister_sa: bool,
}

impl AbortSteps {
    pub fn is_empty(&self) -> bool {
        !(self.clear_new || self.delete_keys || self.erase_files || self.unregister_sa)
    }
}

/// One journaled abort step on node `name`, reported by `what` with whether it had
/// anything to do.
fn reported_step(
    c: &mut Ceremony,
    report: &mut PhaseReport,
    name: &str,
    action: Action,
    request: impl FnMut() -> std::result::Result<Applied<()>, BackendError>,
    what: impl FnOnce(ActionResult) -> PhaseAction,
) -> Result<()> {
    let a = c.step(Phase::Abort, name, action, request, Done::applied)?;
    report.did(what(if a.was_already_done() {
        ActionResult::NothingToDo
    } else {
        ActionResult::Done
    }));
    Ok(())
}

/// What `--delete-keys` and `--unregister-sa` take off a node.
#[derive(Clone, Copy)]
enum Removal {
    /// One of the ceremony's retained keys (CSS, CSR).
    RetainedKey,
    /// The SA public key's registration.
    SaKey,
}

impl Removal {
    /// The journaled action that takes `label` off.
    fn action(self, label: KeyLabel) -> Action {
        match self {
            Self::RetainedKey => Action::DeleteRetainedKey { label },
            Self::SaKey => Action::UnregisterSaKey { name: label },
        }
    }

    /// The node's call that takes it off.
    fn request(
        self,
        node: &mut dyn Backend,
        label: &KeyLabel,
    ) -> std::result::Result<Applied<()>, BackendError> {
        match self {
            Self::RetainedKey => node.delete_retained_key(label),
            Self::SaKey => node.unregister_public_key(label),
        }
    }

    /// The report's line for it.
    fn reported(self, node: String, label: String, result: ActionResult) -> PhaseAction {
        match self {
            Self::RetainedKey => PhaseAction::DeleteRetainedKey {
                node,
                label,
                result,
            },
            Self::SaKey => PhaseAction::UnregisterSaKey {
                node,
                label,
                result,
            },
        }
    }
}

/// Take `removal` off each `(node, label)` of `on`, in order, each a journaled step.
fn remove_each(
    c: &mut Ceremony,
    report: &mut PhaseReport,
    nodes: &mut dyn Nodes,
    on: Vec<(String, KeyLabel)>,
    removal: Removal,
) -> Result<()> {
    for (name, label) in on {
        let node = nodes.node(&name)?;
        reported_step(
            c,
            report,
            &name,
            removal.action(label.clone()),
            || removal.request(&mut *node, &label),
            |result| removal.reported(name.clone(), label.to_string(), result),
        )?;
    }
    Ok(())
}

/// Overwrite a file with zeros, sync it, remove it, sync its directory. Only a regular
/// file of this user with no other hard link, never through a symbolic link
/// ([`durable::open_regular`] with [`Access::Erase`]); anything else is refused and left
/// untouched. `Ok(false)` when there is no file.
pub fn erase_file(path: &Path) -> std::result::Result<bool, FileError> {
    let io = |action: &'static str| io_error(path, action);
    let mut f = match durable::open_regular(path, Access::Erase) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(e),
    };
    let len = f.metadata().map_err(io("read the file's size"))?.len();
    let zeros = vec![0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(io("overwrite the file"))?;
        left -= n as u64;
    }
    f.sync_all().map_err(io("sync the overwritten file"))?;
    drop(f);
    std::fs::remove_file(path).map_err(io("remove the file"))?;
    if let Some(dir) = path.parent() {
        durable::sync_dir(dir)?;
    }
    Ok(true)
}

/// Check that [`erase_file`] would accept `path` (or that it is absent), changing nothing.
fn check_erasable(path: &Path) -> std::result::Result<(), FileError> {
    match durable::open_regular(path, Access::Erase) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Why an abort that names no step is refused.
pub const NO_STEP: &str = "no step was asked for: choose among --clear-new, --delete-keys, --erase-files, --unregister-sa";

/// Run the asked steps.
pub fn abort(c: &mut Ceremony, nodes: &mut dyn Nodes, steps: &AbortSteps) -> Result<PhaseReport> {
    if steps.is_empty() {
        return Err(CeremonyError::Conflict {
            what: "abort".into(),
            detail: NO_STEP.into(),
        });
    }
    let plan = c.plan.clone();
    let targets: Vec<String> = if steps.targets.is_empty() {
        plan.targets.iter().map(|t| t.name.clone()).collect()
    } else {
        steps.targets.clone()
    };
    for t in &targets {
        if plan.target(t).is_none() {
            return Err(CeremonyError::NotInPlan {
                node: t.clone(),
                role: "target",
            });
        }
    }
    // The files to erase are all checked before anything is done: a link, FIFO or hard
    // link planted at one of their paths refuses the whole abort, and nothing is erased.
    let mut erasable = Vec::new();
    if steps.erase_files {
        for t in &targets {
            let mut files = vec![c.layout.csr_db(t)];
            for kind in &plan.kinds {
                for index in &plan.share_indices {
                    files.push(c.layout.bundle(t, *kind, *index));
                }
            }
            for f in files {
                // A temporary file of it that the opening left (its file never got its
                // name, so it may hold the only copy of those contents: a sealed share) is
                // erased with it: nothing of a share outlives the erase. Every writer of
                // these files holds the ceremony's lock, which this command holds, so none
                // is writing; a temporary file whose pid is alive names a process that got
                // the pid since (after a restart): said, not skipped in silence.
                let leftovers = durable::temps_of(&f)?;
                if let Some(live) = leftovers.iter().find(|l| l.pid_alive) {
                    return Err(CeremonyError::Conflict {
                        what: "abort --erase-files".into(),
                        detail: format!(
                            "{} is a temporary file of {} written by pid {}, and a process with \
                             that pid is running. No mkclone writes this ceremony while this \
                             command holds its lock, so that process most likely got the pid \
                             after a restart: check it, then remove the file (it may hold a \
                             sealed share) and run the command again. Nothing was erased",
                            live.path.display(),
                            f.display(),
                            live.pid
                        ),
                    });
                }
                erasable.push((t, f));
                erasable.extend(leftovers.into_iter().map(|l| (t, l.path)));
            }
        }
        for (_, f) in &erasable {
            check_erasable(f)?;
        }
    }
    let mut report = PhaseReport::new(Phase::Abort, "");
    c.note(
        Phase::Abort,
        "",
        Note::AbortStart {
            steps: crate::event::AbortSteps {
                clear_new: steps.clear_new,
                delete_keys: steps.delete_keys,
                erase_files: steps.erase_files,
                targets: targets.clone(),
                unregister_sa: steps.unregister_sa,
            },
        },
    )?;

    if steps.clear_new {
        for t in &targets {
            let node = nodes.node(t)?;
            let st = node
                .status()
                .map_err(CeremonyError::backend(t, "read status"))?;
            let shares = node
                .share_status()
                .map_err(CeremonyError::backend(t, "read share tables"))?;
            for kind in plan.kinds.clone() {
                let received = shares
                    .tables(kind)
                    .map(|tb| !tb.received().is_empty())
                    .unwrap_or(false);
                let new_full = st
                    .register(kind.kind())
                    .map(|r| r.new != NewState::Empty)
                    .unwrap_or(false);
                // NEW is this ceremony's when it holds the key the bundles carry.
                let ours = st
                    .register(kind.kind())
                    .and_then(|r| r.new_patterns.first().cloned())
                    .is_some_and(|new| bundle_patterns(c, t, kind).contains(&new));
                if !(received || new_full) {
                    report.did(PhaseAction::NothingToClear {
                        target: t.to_string(),
                        kind,
                    });
                    continue;
                }
                if new_full && !received && !ours {
                    report.did(PhaseAction::ForeignNewLeft {
                        target: t.to_string(),
                        kind,
                    });
                    continue;
                }
                reported_step(
                    c,
                    &mut report,
                    t,
                    Action::ClearNew { kind },
                    || node.clear_new(kind),
                    |result| PhaseAction::ClearNew {
                        target: t.to_string(),
                        kind,
                        result,
                    },
                )?;
            }
        }
    }
    // The source is touched only by an abort of the whole ceremony (no target named):
    // aborting one target must leave the others able to finish.
    let whole = steps.targets.is_empty();
    if steps.delete_keys {
        let mut keys: Vec<(String, KeyLabel)> = Vec::new();
        if whole {
            keys.push((plan.source.name.clone(), plan.css_label()));
        }
        keys.extend(targets.iter().map(|t| (t.clone(), plan.csr_label())));
        remove_each(c, &mut report, nodes, keys, Removal::RetainedKey)?;
    }
    if steps.unregister_sa {
        let label = plan.sa_label();
        let registrations: Vec<(String, KeyLabel)> = whole
            .then(|| plan.source.name.clone())
            .into_iter()
            .chain(targets.iter().cloned())
            .map(|name| (name, label.clone()))
            .collect();
        remove_each(c, &mut report, nodes, registrations, Removal::SaKey)?;
    }
    if steps.erase_files {
        for (t, f) in erasable {
            if erase_file(&f)? {
                c.note(
                    Phase::Abort,
                    t,
                    Note::FileErased {
                        file: f.display().to_string(),
                    },
                )?;
                report.did(PhaseAction::EraseFile {
                    file: f.display().to_string(),
                });
            }
        }
    }
    c.note(
        Phase::Abort,
        "",
        Note::AbortDone {
            // The journal keeps each action as its line (the journal's format).
            actions: report.actions.iter().map(ToString::to_string).collect(),
        },
    )?;
    Ok(report)
}

/// The source patterns the bundles of `target` and `kind` carry.
fn bundle_patterns(
    c: &Ceremony,
    target: &str,
    kind: mkclone_backend::CloneableKind,
) -> Vec<mkclone_backend::VerificationPattern> {
    c.plan
        .share_indices
        .iter()
        .filter_map(|i| {
            crate::dbs::read_optional::<crate::dbs::ShareBundle>(
                &c.layout.bundle(target, kind, *i),
                crate::dbs::BUNDLE_FORMAT,
                &c.plan,
            )
            .ok()
            .flatten()
            .map(|b| b.source_pattern)
        })
        .collect()
}
