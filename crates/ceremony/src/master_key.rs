//! `mkclone master-key random`: a random master key generated inside a node (CSNBMKP
//! RANDOM, then SET), journaled. This is how a fresh source — a PKCS#11 token, a simulated
//! card, any node whose backend can do it — gets the key a ceremony then clones; the key
//! never leaves the node.
//!
//! The unit of work is a *request*: a journaled note naming the node, the master keys and
//! whether a valid CURRENT may be replaced, then one RANDOM+SET step per key. A request
//! stays open until every key it names is set, so a run cut short at any point is resumed
//! by running the same command again, and nothing is done twice:
//! - a key whose step has an answered, successful outcome is done;
//! - a key whose step has no outcome (a crash between the request and its answer) is
//!   reconciled from the node: a valid CURRENT other than the one the step would have
//!   replaced is that step's key (journaled as such); otherwise the step is run again.
//!
//! Guards:
//! - a valid CURRENT is never replaced unless the request says so (`replace_current`):
//!   SET moves it to OLD, and every key enciphered under it must then be re-enciphered;
//! - under the plan's dual control, two persons: the first makes the request (nothing is
//!   sent to the node), a second, of another name, runs it. As with the SA key's
//!   registration, mkclone records the names it is given; it cannot prove who typed them.
//! - an open request is run as it was made or cancelled (`cancel`), never changed.
//!
//! The records go into the ceremony's journal, so they carry its nonce: the command runs
//! once phase 1 has drawn it (on the SA node's server) or sa.db has brought it here.

use std::collections::BTreeMap;
use std::path::Path;

use mkclone_backend::{
    Applied, Backend, BackendError, CloneableKind, CurrentState, NodeStatus, Operation,
    VerificationPattern,
};

use crate::ceremony::{Ceremony, Done, PhaseReport};
use crate::dbs::{self, Layout, SA_DB_FORMAT, SaDb};
use crate::event::{Action, Entry, Note};
use crate::failure::{CeremonyError, Result};
use crate::phase::Phase;
use crate::phase_action::{PhaseAction, kinds_text};
use crate::plan::Plan;

/// What `master-key random` is asked to do.
#[derive(Clone, Debug)]
pub struct RandomKeyRequest {
    /// The node, as named in the configuration.
    pub node: String,
    /// The master keys to generate.
    pub kinds: Vec<CloneableKind>,
    /// Allow a valid CURRENT to become OLD.
    pub replace_current: bool,
}

/// What a run did.
#[derive(Debug)]
pub enum RandomKeyResult {
    /// Dual control: the request is journaled; a second person runs it.
    Requested(PhaseReport),
    /// Every key of the request is generated and set; the new CURRENT patterns.
    Done {
        report: PhaseReport,
        patterns: Vec<(CloneableKind, VerificationPattern)>,
    },
    /// The open request was cancelled (or there was none: `false`).
    Cancelled(bool),
}

/// A request the journal holds open for a node.
#[derive(Debug)]
struct OpenRequest {
    /// The request note's record.
    seq: u64,
    by: Option<String>,
    kinds: Vec<CloneableKind>,
    replace_current: bool,
    /// Keys set by an answered step or reconciled.
    done: Vec<CloneableKind>,
    /// Keys whose last step has no outcome, with the CURRENT it would have replaced.
    unanswered: BTreeMap<CloneableKind, Option<VerificationPattern>>,
}

impl OpenRequest {
    fn complete(&self) -> bool {
        self.kinds.iter().all(|k| self.done.contains(k))
    }
}

/// The request the journal holds open for `node`, if any.
fn open_request(c: &Ceremony, node: &str) -> Option<OpenRequest> {
    let mut open: Option<OpenRequest> = None;
    // The intents of the open request's steps, by record: their key.
    let mut steps: BTreeMap<u64, CloneableKind> = BTreeMap::new();
    for r in c.journal().records().iter().filter(|r| r.node == node) {
        let Ok(entry) = r.entry() else { continue };
        match entry {
            Entry::Note(Note::RandomKeyRequested {
                kinds,
                replace_current,
                ..
            }) => {
                steps.clear();
                open = Some(OpenRequest {
                    seq: r.seq,
                    by: r.operator.clone(),
                    kinds,
                    replace_current,
                    done: Vec::new(),
                    unanswered: BTreeMap::new(),
                });
            }
            Entry::Note(Note::RandomKeyRequestCancelled { request })
                if open.as_ref().is_some_and(|o| o.seq == request) =>
            {
                open = None;
            }
            Entry::Note(Note::RandomKeyReconciled { kind, .. }) => {
                if let Some(o) = open.as_mut() {
                    o.unanswered.remove(&kind);
                    o.done.push(kind);
                }
            }
            Entry::Intent(Action::LoadRandomMasterKey { kind, replaces, .. }) => {
                if let Some(o) = open.as_mut() {
                    steps.insert(r.seq, kind);
                    o.unanswered.insert(kind, replaces);
                }
            }
            Entry::Outcome(outcome) => {
                if let (Some(o), Some(kind)) = (open.as_mut(), steps.get(&outcome.intent)) {
                    o.unanswered.remove(kind);
                    if outcome.ok() {
                        o.done.push(*kind);
                    }
                }
            }
            _ => {}
        }
        if open.as_ref().is_some_and(OpenRequest::complete) {
            open = None;
            steps.clear();
        }
    }
    open
}

/// The valid CURRENT pattern of `kind` on `backend` (node `node`), if any.
fn current(
    backend: &mut dyn Backend,
    node: &str,
    kind: CloneableKind,
) -> Result<Option<VerificationPattern>> {
    let status = backend.status().map_err(|e| CeremonyError::Backend {
        node: node.into(),
        step: "read the master-key registers",
        source: Box::new(e),
    })?;
    Ok(valid_current(&status, kind))
}

/// The pattern of `kind`'s CURRENT when it holds a valid key.
fn valid_current(status: &NodeStatus, kind: CloneableKind) -> Option<VerificationPattern> {
    status
        .register(kind.kind())
        .filter(|r| r.current == CurrentState::Valid)
        .and_then(|r| r.current_patterns.first().cloned())
}

/// The refusal to replace a valid CURRENT without being asked.
fn would_replace(node: &str, kind: CloneableKind, current: &VerificationPattern) -> CeremonyError {
    CeremonyError::Conflict {
        what: format!("{node}: master-key random {kind}"),
        detail: format!(
            "CURRENT holds a valid key ({current}); a random key would move it to OLD and every key \
             enciphered under it would have to be re-enciphered. Nothing was done. Give \
             --replace-current only if that is intended"
        ),
    }
}

/// Make, resume or run the request of `request` on `backend`; see the module's
/// documentation. The ceremony's operator is the person running it.
pub fn random_master_key(
    c: &mut Ceremony,
    backend: &mut dyn Backend,
    request: &RandomKeyRequest,
) -> Result<RandomKeyResult> {
    let node = request.node.as_str();
    let mut report = PhaseReport::new(Phase::Setup, node);
    need_nonce(c, node)?;
    // A backend that cannot do it is refused before anything is journaled.
    let capabilities = backend.capabilities();
    if !capabilities.supports(Operation::LoadRandomMasterKey) {
        return Err(CeremonyError::Backend {
            node: node.into(),
            step: "load a random master key",
            source: Box::new(BackendError::NotSupported {
                operation: Operation::LoadRandomMasterKey,
                backend: capabilities.backend,
                hint: "load the master key with the device's own tools (on a CCA coprocessor: \
                       the TKE workstation or CNM's master-key loading), then run the ceremony"
                    .into(),
            }),
        });
    }
    let me = c
        .operator()
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned);
    if c.plan.dual_control && me.is_none() {
        return Err(CeremonyError::DualControl(
            "the plan has dual control: say who you are with --operator NAME (recorded)".into(),
        ));
    }
    let open = match open_request(c, node) {
        Some(open) => {
            if open.kinds != request.kinds || open.replace_current != request.replace_current {
                return Err(CeremonyError::Conflict {
                    what: format!("{node}: master-key random"),
                    detail: format!(
                        "record {} holds an open request for a random {} master key{}{}; run it as \
                         it was made, or cancel it first (master-key random --cancel)",
                        open.seq,
                        kinds_text(&open.kinds),
                        if open.replace_current {
                            " with --replace-current"
                        } else {
                            ""
                        },
                        open.by
                            .as_ref()
                            .map(|b| format!(", made by {b}"))
                            .unwrap_or_default()
                    ),
                });
            }
            if c.plan.dual_control && open.by == me {
                return Err(CeremonyError::DualControl(format!(
                    "{} made this request (record {}): under dual control a second person runs it \
                     (--operator OTHER)",
                    me.unwrap_or_default(),
                    open.seq
                )));
            }
            open
        }
        None => {
            // A new request: checked against the node before it is written.
            let mut replaces = Vec::new();
            for &kind in &request.kinds {
                if let Some(now) = current(backend, node, kind)? {
                    if !request.replace_current {
                        return Err(would_replace(node, kind, &now));
                    }
                    replaces.push(now);
                }
            }
            c.note(
                Phase::Setup,
                node,
                Note::RandomKeyRequested {
                    kinds: request.kinds.clone(),
                    replace_current: request.replace_current,
                    replaces,
                },
            )?;
            if c.plan.dual_control {
                report.did(PhaseAction::RandomKeyRequested {
                    operator: me.unwrap_or_default().to_string(),
                    kinds: request.kinds.clone(),
                });
                return Ok(RandomKeyResult::Requested(report));
            }
            open_request(c, node).ok_or_else(|| CeremonyError::Conflict {
                what: format!("{node}: master-key random"),
                detail: "the request just journaled cannot be read back: check the journal".into(),
            })?
        }
    };
    let requested_by = if c.plan.dual_control {
        open.by.clone()
    } else {
        None
    };
    for &kind in &open.kinds {
        if open.done.contains(&kind) {
            report.did(PhaseAction::RandomKeySetEarlier { kind });
            continue;
        }
        let now = current(backend, node, kind)?;
        if let Some(replaced) = open.unanswered.get(&kind)
            && let Some(now) = &now
            && Some(now) != replaced.as_ref()
        {
            // The interrupted step reached the node: its key is CURRENT.
            c.note(
                Phase::Setup,
                node,
                Note::RandomKeyReconciled {
                    kind,
                    current: now.clone(),
                },
            )?;
            report.did(PhaseAction::RandomKeyTookEffect {
                kind,
                pattern: now.clone(),
            });
            continue;
        }
        if let Some(now) = &now
            && !open.replace_current
        {
            return Err(would_replace(node, kind, now));
        }
        let replaces = now.clone();
        let mut attempts = 0u32;
        c.step(
            Phase::Setup,
            node,
            Action::LoadRandomMasterKey {
                kind,
                replaces: now.clone(),
                requested_by: requested_by.clone(),
            },
            || {
                attempts += 1;
                // `step` repeats a request whose outcome is unknown, but RANDOM then SET is
                // not idempotent: a second one would move the first random key to OLD,
                // over the key the request meant to keep there. So the repetition reads
                // the node first, as a resumed request does: a valid CURRENT other than
                // the one this step replaces means the first attempt took effect. (One
                // that stopped after RANDOM left NEW only: repeating it loses nothing.)
                if attempts > 1 {
                    let current = valid_current(&backend.status()?, kind);
                    if current.is_some() && current != replaces {
                        return Ok(Applied::AlreadyDone(()));
                    }
                }
                backend.load_random_master_key(kind)
            },
            Done::applied,
        )?;
        report.did(PhaseAction::RandomKeySet {
            kind,
            replaced: now,
        });
    }
    let mut patterns = Vec::new();
    for &kind in &open.kinds {
        let now = current(backend, node, kind)?.ok_or_else(|| CeremonyError::Conflict {
            what: format!("{node}: master-key random {kind}"),
            detail: "the node reports no valid CURRENT after SET: check it with `mkclone status`"
                .into(),
        })?;
        report.did(PhaseAction::CurrentPattern {
            kind,
            pattern: now.clone(),
        });
        patterns.push((kind, now));
    }
    Ok(RandomKeyResult::Done { report, patterns })
}

/// The journal must know the ceremony's nonce before anything is asked of the node.
fn need_nonce(c: &Ceremony, node: &str) -> Result<()> {
    if c.nonce().is_some() {
        return Ok(());
    }
    Err(no_nonce(node))
}

/// Before the ceremony directory is opened (which creates its journal): a directory whose
/// journal is absent or empty, and which holds no sa.db of `plan`'s ceremony, has no nonce,
/// so the command is refused without leaving an empty journal behind, which a later report
/// would show as a journal of 0 records. An sa.db carried here brings the nonce (the
/// ceremony takes it from there when it opens); one that does not belong to the ceremony is
/// named with what is wrong with it.
pub fn refuse_before_phase_1(dir: &Path, plan: &Plan, node: &str) -> Result<()> {
    let layout = Layout::new(dir);
    if matches!(std::fs::symlink_metadata(layout.journal()), Ok(meta) if meta.len() > 0) {
        return Ok(());
    }
    match dbs::read_optional::<SaDb>(&layout.sa_db(), SA_DB_FORMAT, plan)? {
        Some(_) => Ok(()),
        None => Err(no_nonce(node)),
    }
}

fn no_nonce(node: &str) -> CeremonyError {
    CeremonyError::Conflict {
        what: format!("{node}: master-key random"),
        detail: "this ceremony directory has no journal nonce yet, and the command is journaled in the \
                 ceremony: run phase 1 first (on the SA node's server), or carry sa.db here from it, \
                 then run this command again. Nothing was done"
            .into(),
    }
}

/// Cancel the open request on `node`, journaled. `Cancelled(false)` when none is open.
pub fn cancel_request(c: &mut Ceremony, node: &str) -> Result<RandomKeyResult> {
    need_nonce(c, node)?;
    let Some(open) = open_request(c, node) else {
        return Ok(RandomKeyResult::Cancelled(false));
    };
    c.note(
        Phase::Setup,
        node,
        Note::RandomKeyRequestCancelled { request: open.seq },
    )?;
    Ok(RandomKeyResult::Cancelled(true))
}
