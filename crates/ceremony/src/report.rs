//! The ceremony report: what a ceremony directory, its journal and the nodes say about a
//! ceremony, as data ([`Report`], serialisable for `--json`) and as a printable page
//! ([`render_markdown`], [`render_html`]).
//!
//! [`build`] only reads: the journal is verified with [`journal::verify`] over its bytes
//! (never opened for appending, never created), `sa.db`, the `<target>.csr.db` files and the
//! share bundles are read as they are, and the nodes' statuses are passed in by the caller.
//! A file that cannot be trusted is not a failure of the report: the report says so.
//!
//! Where each part comes from:
//! - the plan: the [`Plan`] given (the configuration's);
//! - each node's identity and patterns *after*: the statuses given (read now); *before*:
//!   the first `node-status` note of that node in the journal (written at the start of each
//!   phase; "not recorded" when there is none or it cannot be read);
//! - who did what and when: every journal record, intents paired with their outcomes;
//! - the SA key's fingerprint and the CSS/CSR certificates: `sa.db`, `<target>.csr.db`,
//!   certificates verified under the SA key of `sa.db`;
//! - shares issued: the bundles in `shares/` and the journal's `obtain-share` outcomes;
//!   installed: the journal's `install-share` outcomes with result ok; SET: the journal's
//!   `set-master-key` outcomes with result ok;
//! - the journal's final hash, record count and whether its chain verified.
//!
//! The journal is the one of *this* directory: in a ceremony whose nodes sit in different
//! servers, each server's journal records the phases run there.
//!
//! Rehearsals say REHEARSAL in the title, in a banner and in every section's heading.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use mkclone_backend::{
    Certificate, CloneableKind, CurrentState, NewState, NodeStatus, PublicKeyToken, RegisterStatus,
    VerificationPattern,
};
use mkclone_formats::pka::{
    CertificateSection, PublicKeyTokenView, RsaPublicKey, registration_hash,
};
use serde::Serialize;

use crate::dbs::{
    self, BUNDLE_FORMAT, CSR_DB_FORMAT, CsrDb, Layout, SA_DB_FORMAT, SaDb, ShareBundle,
};
use crate::durable;
use crate::error::FileError;
#[cfg(test)]
use crate::event::StepResult;
use crate::event::{Action, Entry, Note, Outcome};
use crate::failure::CeremonyError;
use crate::journal::{self, Record};
use crate::plan::{Plan, PlanNode};

/// `format` of the JSON report.
pub const FORMAT: &str = "mkclone-ceremony-report";
/// `version` of the JSON report (2: timeline entries carry typed `action`, `note` and
/// `outcome` instead of a raw `detail`).
pub const VERSION: u32 = 2;

/// Shown where the journal holds no `node-status` record of a node.
pub const NOT_RECORDED: &str = "not recorded";

/// Everything a ceremony report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub version: u32,
    pub ceremony: String,
    /// A rehearsal: the plan says so, or a journal record does.
    pub rehearsal: bool,
    /// When this report was made (RFC 3339 UTC, this host's clock).
    pub generated: String,
    pub directory: PathBuf,
    /// Every planned step is recorded as done, the target patterns equal the source's
    /// where they could be read, and the journal verified.
    pub complete: bool,
    /// When the journal last recorded the start of an abort or clean-up (`abort-start`).
    pub aborted: Option<String>,
    pub plan: PlanView,
    pub nodes: Vec<NodeView>,
    /// The SA key's registration-hash fingerprint from `sa.db` (compared in person).
    pub sa_fingerprint: Option<String>,
    /// The SA, CSS and CSR keys as the ceremony files hold them.
    pub keys: Vec<KeyView>,
    /// Who registered the SA key's hash and the key on the source and each target.
    pub sa_registrations: Vec<SaRegistrationView>,
    /// One row per planned (target, kind, index), then bundles the plan does not name.
    pub shares: Vec<ShareView>,
    /// One row per planned (target, kind).
    pub set: Vec<SetView>,
    /// Every journal record, oldest first; an intent carries its outcome.
    pub timeline: Vec<TimelineEntry>,
    /// The operators named in the journal, in order of first appearance.
    pub operators: Vec<String>,
    pub journal: JournalView,
    /// What the ceremony has not done yet (empty when complete).
    pub missing: Vec<String>,
    /// What this report could not establish (nodes not read, unreadable files,
    /// intents without an outcome, …).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub id: String,
    pub m: u8,
    pub n: u8,
    pub kinds: Vec<String>,
    pub share_indices: Vec<u8>,
    pub rsa_bits: u16,
    pub rehearsal: bool,
    /// The SA key is registered on each node by two named operators (hash, then key).
    pub dual_control: bool,
    pub sa: PlanNodeView,
    pub source: PlanNodeView,
    pub targets: Vec<PlanNodeView>,
    pub sa_label: String,
    pub css_label: String,
    pub csr_label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanNodeView {
    pub name: String,
    pub eid: String,
    /// The serial number the node must report (identity pinning).
    pub pinned_serial: Option<String>,
}

impl From<&PlanNode> for PlanNodeView {
    fn from(n: &PlanNode) -> Self {
        Self {
            name: n.name.clone(),
            eid: n.eid.to_string(),
            pinned_serial: n.expect_serial.as_ref().map(ToString::to_string),
        }
    }
}

/// One node of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    /// "SA", "source", "target".
    pub roles: Vec<&'static str>,
    pub planned_eid: String,
    /// The serial number the plan pins, if any.
    pub pinned_serial: Option<String>,
    /// "read", "unavailable: <reason>" or "not read".
    pub status: String,
    /// From the status read now, else from the journal's first `node-status` record.
    pub serial: Option<String>,
    pub eid: Option<String>,
    /// The first `node-status` record of this node in the journal.
    pub before: Option<Snapshot>,
    /// The status read now.
    pub after: Option<Snapshot>,
    /// The planned master keys, before → after.
    pub kinds: Vec<KindPatterns>,
}

/// A node's registers at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The journal record it comes from (None: read now).
    pub seq: Option<u64>,
    pub time: Option<String>,
    pub phase: Option<String>,
    pub serial: Option<String>,
    pub eid: Option<String>,
    pub registers: Vec<RegisterView>,
    /// The status it was made from, for comparisons (its text is in `registers`).
    #[serde(skip)]
    status: Option<NodeStatus>,
}

/// One master key's registers: states ("empty", "partial", "full" for NEW; "valid",
/// "invalid" for CURRENT and OLD) and patterns ("SHA-1 0123…").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterView {
    pub kind: String,
    pub new: String,
    pub current: String,
    pub old: String,
    pub new_patterns: Vec<String>,
    pub current_patterns: Vec<String>,
    pub old_patterns: Vec<String>,
}

/// One planned master key of one node: CURRENT before → after, NEW and OLD after.
#[derive(Debug, Clone, Serialize)]
pub struct KindPatterns {
    pub kind: String,
    pub current_before: String,
    pub current_after: String,
    pub new_after: String,
    pub old_after: String,
    /// Targets: whether CURRENT after equals the source's CURRENT (None: not comparable).
    pub equals_source: Option<bool>,
    /// "source", "= source", "DIFFERS from source" or "".
    pub mark: String,
}

/// A key of the ceremony as its file holds it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// "SA", "CSS", "CSR".
    pub role: &'static str,
    pub node: String,
    pub file: String,
    /// What the file says, in words.
    pub state: String,
    /// Registration-hash fingerprint of the key's self-signed certificate section.
    pub fingerprint: Option<String>,
    pub certified: bool,
    /// The SA's certificate verifies under the SA key of `sa.db` (None: not certified or
    /// not checkable).
    pub verified: Option<bool>,
}

/// The SA key's registration on one node: its hash, then the key (dual control).
#[derive(Debug, Clone, Serialize)]
pub struct SaRegistrationView {
    pub node: String,
    pub hash_by: Option<String>,
    pub hash_at: Option<String>,
    pub key_by: Option<String>,
    pub key_at: Option<String>,
    /// In words: "two operators", "one command (dual_control = false)", …
    pub control: String,
}

/// One share.
#[derive(Debug, Clone, Serialize)]
pub struct ShareView {
    pub target: String,
    pub kind: String,
    pub index: u8,
    /// The plan names it.
    pub planned: bool,
    /// "present", "absent", or why the bundle cannot be read.
    pub bundle: String,
    /// When the journal recorded it obtained (result ok).
    pub obtained: Option<String>,
    /// When the journal recorded it installed (result ok).
    pub installed: Option<String>,
}

impl ShareView {
    /// Issued: its bundle is here or the journal recorded it obtained.
    pub fn issued(&self) -> bool {
        self.bundle == "present" || self.obtained.is_some()
    }
}

/// SET of one master key on one target.
#[derive(Debug, Clone, Serialize)]
pub struct SetView {
    pub target: String,
    pub kind: String,
    /// When the journal recorded SET (result ok).
    pub set: Option<String>,
    /// The NEW pattern confirmed equal to the source's before SET.
    pub confirmed: Option<String>,
    /// What it was confirmed against: "plan" (the plan's source_patterns) or
    /// "signed-shares" (the pattern the source's CSS key signed in every share, checked
    /// by the target's device).
    pub confirmed_against: Option<String>,
    /// The target's CURRENT now equals the source's (None: not comparable).
    pub current_equals_source: Option<bool>,
}

/// One journal record; an intent carries its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub time: String,
    pub phase: String,
    pub node: String,
    pub operator: Option<String>,
    /// "action" (an intent), "note", "outcome" (an outcome without its intent), or
    /// "unreadable" (a record that is not one mkclone writes: `unreadable` says why).
    pub entry: &'static str,
    pub event: String,
    /// An intent's action, typed.
    pub action: Option<Action>,
    /// A note, typed.
    pub note: Option<Note>,
    pub outcome: Option<OutcomeView>,
    pub unreadable: Option<String>,
    /// "ok", "ok (already done)", "FAILED: …", "NO OUTCOME RECORDED", "note".
    pub result: String,
}

impl TimelineEntry {
    fn ok(&self) -> bool {
        self.outcome.as_ref().is_some_and(|o| o.outcome.ok())
    }
    fn done_at(&self) -> Option<String> {
        self.outcome
            .as_ref()
            .filter(|o| o.outcome.ok())
            .map(|o| o.time.clone())
    }
    /// The master key of an action, if it concerns one.
    fn kind(&self) -> Option<CloneableKind> {
        self.action.as_ref().and_then(Action::kind)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OutcomeView {
    pub seq: u64,
    pub time: String,
    pub operator: Option<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct JournalView {
    pub file: PathBuf,
    pub present: bool,
    /// Records read (verified ones when `verified`).
    pub records: usize,
    /// The hash of the last verified line (the journal's final hash).
    pub head_hash: Option<String>,
    pub verified: bool,
    /// Why it did not verify (or that it is absent).
    pub problem: Option<String>,
    /// A torn last line, never acknowledged (an interrupted append).
    pub torn_tail_bytes: Option<usize>,
    /// Verified, and every journal mark the ceremony files carry for the nodes whose
    /// phases ran here is in it, and no loss was accepted: nothing is missing before the
    /// final hash.
    pub end_to_end: bool,
    /// Why not end to end: marks this journal lacks, losses accepted with who and when.
    pub gaps: Vec<String>,
}

// ----------------------------------------------------------------------------------------
// Building
// ----------------------------------------------------------------------------------------

/// Build the report of the ceremony in `dir` for `plan`, with the statuses of the nodes
/// the caller could read (`nodes`, by plan name). Nodes not given are "not read".
pub fn build(
    dir: &Path,
    plan: &Plan,
    nodes: &[(String, NodeStatus)],
) -> Result<Report, CeremonyError> {
    build_with(dir, plan, nodes, &[])
}

/// [`build`], with the nodes that could not be opened or read and why (`unavailable`, by
/// plan name): their status is "unavailable: <reason>".
///
/// Fails only when `dir` is not a directory, fails the check of a ceremony directory
/// ([`durable::check_private_dir`]: a link, another user's, writable by others), or the
/// journal exists but cannot be read (a link, a FIFO…); every other problem is in the
/// report.
pub fn build_with(
    dir: &Path,
    plan: &Plan,
    nodes: &[(String, NodeStatus)],
    unavailable: &[(String, String)],
) -> Result<Report, CeremonyError> {
    if !dir.is_dir() {
        return Err(CeremonyError::MissingFile {
            path: dir.into(),
            made_by: "the first phase run for this plan".into(),
            hint: "Give the ceremony directory of the configuration, or carry the ceremony's \
                   files here"
                .into(),
        });
    }
    let layout = Layout::new(dir);
    layout.check_dirs()?;
    let mut missing = Vec::new();
    let mut warnings = Vec::new();

    let (mut journal_view, records) = read_journal(&layout, plan)?;
    journal_view.gaps = chain_gaps(&layout, plan, &records, journal_view.head_hash.as_deref());
    journal_view.end_to_end = journal_view.verified && journal_view.gaps.is_empty();
    if !journal_view.present {
        missing.push("the journal: no phase has run in this directory".to_string());
    } else if let Some(problem) = journal_view
        .problem
        .as_ref()
        .filter(|_| !journal_view.verified)
    {
        missing.push(format!(
            "a journal that verifies: {problem} (the records below are shown as found, unverified)"
        ));
    }
    if let Some(n) = journal_view.torn_tail_bytes {
        warnings.push(format!(
            "the journal ends with a torn line ({n} bytes) left by an interrupted append; it was \
             never acknowledged and is not counted"
        ));
    }
    let rehearsal = plan.rehearsal || records.iter().any(|r| r.rehearsal);
    let timeline = timeline(&records);
    for e in timeline
        .iter()
        .filter(|e| e.entry == "action" && e.outcome.is_none())
    {
        warnings.push(format!(
            "record {} ({} on {}, phase {}) has no outcome: the run stopped there; a later run \
             may have done it again",
            e.seq, e.event, e.node, e.phase
        ));
    }
    let operators = operators(&records);

    let (keys, sa_fingerprint) = keys(&layout, plan, &timeline, &mut missing, &mut warnings);
    let bundles = bundles(&layout, plan, &mut warnings);

    // The source's CURRENT patterns, per kind: read now, else as the bundles or the
    // journal's confirmations recorded them.
    let source_status = nodes
        .iter()
        .find(|(n, _)| *n == plan.source.name)
        .map(|(_, st)| st);
    let source_ref: Vec<(CloneableKind, Vec<VerificationPattern>)> = plan
        .kinds
        .iter()
        .map(|kind| {
            let now: Vec<VerificationPattern> = source_status
                .and_then(|st| st.register(kind.kind()))
                .filter(|r| r.current == CurrentState::Valid)
                .map(|r| r.current_patterns.clone())
                .unwrap_or_default();
            let recorded = || -> Vec<VerificationPattern> {
                let mut out: Vec<VerificationPattern> = Vec::new();
                let confirmed = timeline.iter().filter_map(|e| match &e.note {
                    Some(Note::Confirmed {
                        kind: k, pattern, ..
                    }) if k == kind => Some(pattern.clone()),
                    _ => None,
                });
                for p in bundles
                    .iter()
                    .filter(|(_, b)| b.kind == *kind)
                    .map(|(_, b)| b.source_pattern.clone())
                    .chain(confirmed)
                {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                out
            };
            (*kind, if now.is_empty() { recorded() } else { now })
        })
        .collect();
    let reference = |kind: CloneableKind| -> &[VerificationPattern] {
        source_ref
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    };

    // Nodes.
    let mut names: Vec<(&str, &'static str, &PlanNode)> = vec![
        (plan.sa.name.as_str(), "SA", &plan.sa),
        (plan.source.name.as_str(), "source", &plan.source),
    ];
    names.extend(plan.targets.iter().map(|t| (t.name.as_str(), "target", t)));
    let mut node_views: Vec<NodeView> = Vec::new();
    for (name, role, planned) in names {
        if let Some(v) = node_views.iter_mut().find(|v| v.name == name) {
            v.roles.push(role);
            continue;
        }
        let after_status = nodes.iter().find(|(n, _)| n == name).map(|(_, st)| st);
        let status = match (after_status, unavailable.iter().find(|(n, _)| n == name)) {
            (Some(_), _) => "read".to_string(),
            (None, Some((_, why))) => format!("unavailable: {why}"),
            (None, None) => "not read".to_string(),
        };
        if after_status.is_none() {
            warnings.push(format!(
                "node {name}: {status}; its patterns after the ceremony are not in this report"
            ));
        }
        let before = first_node_status(&records, name);
        if before.is_none() && journal_view.present {
            warnings.push(format!(
                "node {name}: its patterns before the ceremony are {NOT_RECORDED} in the journal"
            ));
        }
        let after = after_status.map(snapshot_of);
        let serial = after
            .as_ref()
            .and_then(|s| s.serial.clone())
            .or_else(|| before.as_ref().and_then(|s| s.serial.clone()));
        let eid = after
            .as_ref()
            .and_then(|s| s.eid.clone())
            .or_else(|| before.as_ref().and_then(|s| s.eid.clone()));
        node_views.push(NodeView {
            name: name.to_string(),
            roles: vec![role],
            planned_eid: planned.eid.to_string(),
            pinned_serial: planned.expect_serial.as_ref().map(ToString::to_string),
            status,
            serial,
            eid,
            before,
            after,
            kinds: Vec::new(),
        });
    }
    for v in &mut node_views {
        let is_target = v.roles.contains(&"target");
        let is_source = v.roles.contains(&"source");
        v.kinds = plan
            .kinds
            .iter()
            .map(|kind| {
                let before = v.before.as_ref().map(|s| register_of(s, *kind));
                let after = v.after.as_ref().map(|s| register_of(s, *kind));
                let equals_source = match (&after, is_target && !is_source) {
                    (Some(Some(reg)), true) if reg.current == "valid" => v
                        .after
                        .as_ref()
                        .and_then(|s| s.status.as_ref())
                        .and_then(|st| st.register(kind.kind()))
                        .and_then(|r| compare(&r.current_patterns, reference(*kind))),
                    _ => None,
                };
                let mark = if is_source {
                    "source".to_string()
                } else {
                    match equals_source {
                        Some(true) => "= source".to_string(),
                        Some(false) => "DIFFERS from source".to_string(),
                        None => String::new(),
                    }
                };
                KindPatterns {
                    kind: kind.to_string(),
                    current_before: match &before {
                        None => NOT_RECORDED.to_string(),
                        Some(reg) => {
                            current_text(reg.as_ref(), |r| (&r.current, &r.current_patterns))
                        }
                    },
                    current_after: match &after {
                        None => "not read".to_string(),
                        Some(reg) => {
                            current_text(reg.as_ref(), |r| (&r.current, &r.current_patterns))
                        }
                    },
                    new_after: match &after {
                        None => "not read".to_string(),
                        Some(reg) => new_text(reg.as_ref()),
                    },
                    old_after: match &after {
                        None => "not read".to_string(),
                        Some(reg) => current_text(reg.as_ref(), |r| (&r.old, &r.old_patterns)),
                    },
                    equals_source,
                    mark,
                }
            })
            .collect();
    }

    // Identity pinning.
    for v in &node_views {
        if let (Some(pinned), Some(after)) = (&v.pinned_serial, &v.after)
            && after.serial.as_deref() != Some(pinned.as_str())
        {
            missing.push(format!(
                "node {}: it reports serial {}, the plan pins {pinned}: it is not the planned node",
                v.name,
                or_dash(after.serial.as_deref())
            ));
        }
    }

    // The SA key's registrations (dual control).
    let mut sa_registrations = Vec::new();
    let mut registering: Vec<&PlanNode> = vec![&plan.source];
    registering.extend(plan.targets.iter());
    for n in registering {
        if sa_registrations
            .iter()
            .any(|r: &SaRegistrationView| r.node == n.name)
        {
            continue;
        }
        let done = |hash: bool| {
            actions(&timeline, |a| match a {
                Action::RegisterSaHash { .. } => hash,
                Action::RegisterSaKey { .. } => !hash,
                _ => false,
            })
            .filter(|e| e.node == n.name && e.ok())
            .map(|e| {
                let by = e
                    .operator
                    .clone()
                    .or_else(|| e.outcome.as_ref().and_then(|o| o.operator.clone()));
                (by, e.done_at())
            })
            .next()
        };
        let hash = done(true);
        let key = done(false);
        let off = timeline
            .iter()
            .any(|e| matches!(e.note, Some(Note::DualControlOff { .. })) && e.node == n.name);
        let control = match (&hash, &key) {
            (None, _) | (_, None) => "not recorded in this journal".to_string(),
            _ if off => "one command (the plan sets dual_control = false)".to_string(),
            (Some((Some(a), _)), Some((Some(b), _))) if a != b => "two operators".to_string(),
            (Some((Some(a), _)), Some((Some(_), _))) => format!("ONE operator ({a}) did both"),
            _ => "operators not recorded".to_string(),
        };
        let (hash_by, hash_at) = hash.unwrap_or((None, None));
        let (key_by, key_at) = key.unwrap_or((None, None));
        sa_registrations.push(SaRegistrationView {
            node: n.name.clone(),
            hash_by,
            hash_at,
            key_by,
            key_at,
            control,
        });
    }

    // Shares.
    let mut shares = Vec::new();
    for t in &plan.targets {
        for kind in &plan.kinds {
            for index in &plan.share_indices {
                let path = layout.bundle(&t.name, *kind, *index);
                let bundle = match bundles.iter().find(|(p, _)| *p == path) {
                    Some(_) => "present".to_string(),
                    None => match bundle_problem(&path, &warnings) {
                        Some(problem) => problem,
                        None => match erased(&timeline, &path) {
                            Some(e) => format!("erased (record {}, {})", e.seq, e.time),
                            None => "absent".to_string(),
                        },
                    },
                };
                let obtained = actions(&timeline, |a| {
                    matches!(a, Action::ObtainShare { target, kind: k, index: i }
                        if *target == t.name && k == kind && *i == index.get())
                })
                .filter(|e| e.node == plan.source.name)
                .find_map(TimelineEntry::done_at);
                let installed = actions(&timeline, |a| {
                    matches!(a, Action::InstallShare { kind: k, index: i }
                        if k == kind && *i == index.get())
                })
                .filter(|e| e.node == t.name)
                .find_map(TimelineEntry::done_at);
                shares.push(ShareView {
                    target: t.name.clone(),
                    kind: kind.to_string(),
                    index: index.get(),
                    planned: true,
                    bundle,
                    obtained,
                    installed,
                });
            }
        }
    }
    for (path, b) in &bundles {
        let planned = plan.target(&b.target).is_some()
            && plan.kinds.contains(&b.kind)
            && plan.share_indices.contains(&b.index)
            && *path == layout.bundle(&b.target, b.kind, b.index);
        if !planned {
            warnings.push(format!(
                "{} is a share bundle the plan does not name (target {}, {} share {})",
                path.display(),
                b.target,
                b.kind,
                b.index
            ));
            shares.push(ShareView {
                target: b.target.clone(),
                kind: b.kind.to_string(),
                index: b.index.get(),
                planned: false,
                bundle: format!("present ({})", file_name(path)),
                obtained: None,
                installed: None,
            });
        }
    }

    // SET.
    let mut set = Vec::new();
    for t in &plan.targets {
        let view = node_views.iter().find(|v| v.name == t.name);
        for kind in &plan.kinds {
            let done = actions(&timeline, |a| matches!(a, Action::SetMasterKey { .. }))
                .filter(|e| e.node == t.name && e.kind() == Some(*kind))
                .find_map(TimelineEntry::done_at);
            let confirmation = timeline
                .iter()
                .filter(|e| e.node == t.name)
                .find_map(|e| match &e.note {
                    Some(Note::Confirmed {
                        authority,
                        kind: k,
                        pattern,
                    }) if k == kind => Some((authority, pattern)),
                    _ => None,
                });
            let confirmed = confirmation.map(|(_, p)| p.to_string());
            let confirmed_against = confirmation.map(|(a, _)| a.name().to_string());
            let current_equals_source = view
                .and_then(|v| v.kinds.iter().find(|k| k.kind == kind.to_string()))
                .and_then(|k| k.equals_source);
            set.push(SetView {
                target: t.name.clone(),
                kind: kind.to_string(),
                set: done,
                confirmed,
                confirmed_against,
                current_equals_source,
            });
        }
    }

    // What is missing, in ceremony order.
    for t in &plan.targets {
        for kind in &plan.kinds {
            let of = |s: &&ShareView| s.planned && s.target == t.name && s.kind == kind.to_string();
            let s = set
                .iter()
                .find(|s| s.target == t.name && s.kind == kind.to_string());
            let was_set = s.is_some_and(|s| s.set.is_some());
            let equal_now = s.and_then(|s| s.current_equals_source);
            for share in shares.iter().filter(of) {
                if !share.issued() && !was_set && equal_now != Some(true) {
                    missing.push(format!(
                        "{} share {} for {}: not obtained (phase 3c on {})",
                        share.kind, share.index, share.target, plan.source.name
                    ));
                }
            }
            for share in shares.iter().filter(of) {
                if share.installed.is_none() && !was_set && equal_now != Some(true) {
                    missing.push(format!(
                        "{} share {} for {}: not installed (phase 3d on {})",
                        share.kind, share.index, share.target, share.target
                    ));
                }
            }
            match (was_set, equal_now) {
                (_, Some(false)) => missing.push(format!(
                    "{}: the {kind} CURRENT register does not hold the source's key",
                    t.name
                )),
                (false, Some(true)) => warnings.push(format!(
                    "{}: SET of the {kind} master key is not recorded in this journal, but its \
                     CURRENT equals the source's (done from another directory?)",
                    t.name
                )),
                (false, None) => missing.push(format!(
                    "{}: SET of the {kind} master key (phase 3d on {})",
                    t.name, t.name
                )),
                (true, _) => {}
            }
        }
    }

    let complete = missing.is_empty() && journal_view.verified;
    let aborted = timeline
        .iter()
        .rev()
        .find(|e| matches!(e.note, Some(Note::AbortStart { .. })))
        .map(|e| e.time.clone());
    Ok(Report {
        format: FORMAT,
        version: VERSION,
        ceremony: plan.id.clone(),
        rehearsal,
        generated: journal::rfc3339_utc(SystemTime::now()),
        directory: dir.to_path_buf(),
        complete,
        aborted,
        plan: plan_view(plan),
        nodes: node_views,
        sa_fingerprint,
        keys,
        sa_registrations,
        shares,
        set,
        timeline,
        operators,
        journal: journal_view,
        missing,
        warnings,
    })
}

/// The journal's `file-erased` note of `path` (matched by file name: the journal records
/// the path as the ceremony that erased it named it).
fn erased<'a>(timeline: &'a [TimelineEntry], path: &Path) -> Option<&'a TimelineEntry> {
    let name = path.file_name()?;
    timeline.iter().rev().find(|e| match &e.note {
        Some(Note::FileErased { file }) => Path::new(file).file_name() == Some(name),
        _ => false,
    })
}

/// The intents (with their outcomes) whose action `which` selects.
fn actions<'a>(
    timeline: &'a [TimelineEntry],
    which: impl Fn(&Action) -> bool + 'a,
) -> impl Iterator<Item = &'a TimelineEntry> + 'a {
    timeline
        .iter()
        .filter(move |e| e.action.as_ref().is_some_and(&which))
}

fn plan_view(plan: &Plan) -> PlanView {
    PlanView {
        id: plan.id.clone(),
        m: plan.m_of_n.m(),
        n: plan.m_of_n.n(),
        kinds: plan.kinds.iter().map(ToString::to_string).collect(),
        share_indices: plan.share_indices.iter().map(|i| i.get()).collect(),
        rsa_bits: plan.bits.bits(),
        rehearsal: plan.rehearsal,
        dual_control: plan.dual_control,
        sa: (&plan.sa).into(),
        source: (&plan.source).into(),
        targets: plan.targets.iter().map(Into::into).collect(),
        sa_label: plan.sa_label().to_string(),
        css_label: plan.css_label().to_string(),
        csr_label: plan.csr_label().to_string(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// What keeps the chain from being verified end to end: journal marks that files carry for
/// the nodes whose phases ran in this journal but that it lacks, and accepted losses.
fn chain_gaps(layout: &Layout, plan: &Plan, records: &[Record], head: Option<&str>) -> Vec<String> {
    let local: Vec<&str> = records
        .iter()
        .filter(|r| matches!(r.note(), Some(Note::PhaseStart {})))
        .map(|r| r.node.as_str())
        .collect();
    let hash_of = |seq: u64| -> Option<&str> {
        let i = usize::try_from(seq).ok()?.checked_sub(1)?;
        records.get(i)?;
        match records.get(i + 1) {
            Some(next) => Some(next.prev.as_str()),
            None => head,
        }
    };
    let mut gaps = Vec::new();
    for (file, provenance) in crate::dbs::carried_files(layout, plan) {
        for (node, mark) in &provenance.written {
            if local.contains(&node.as_str()) && hash_of(mark.seq) != Some(mark.hash.as_str()) {
                gaps.push(format!(
                    "{}: record {} of this journal (phase {} on {node}) is not in it",
                    file_name(Path::new(&file)),
                    mark.seq,
                    mark.phase
                ));
            }
        }
    }
    for r in records {
        let Some(Note::JournalLossAccepted { marks, .. }) = r.note() else {
            continue;
        };
        let count = marks.len();
        gaps.push(format!(
            "lost records accepted at record {} by {} at {} ({count} file mark(s) of {})",
            r.seq,
            r.operator.as_deref().unwrap_or("an unnamed operator"),
            r.time,
            r.node
        ));
    }
    gaps
}

/// Read and verify the journal's bytes; an unverifiable journal is read leniently.
fn read_journal(layout: &Layout, plan: &Plan) -> Result<(JournalView, Vec<Record>), CeremonyError> {
    let path = layout.journal();
    let read = durable::open_regular(&path, durable::Access::Read).and_then(|mut file| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)
            .map(|_| bytes)
            .map_err(|source| FileError::Io {
                path: path.clone(),
                action: "read the journal",
                source,
            })
    });
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Ok((
                JournalView {
                    file: path,
                    present: false,
                    records: 0,
                    head_hash: None,
                    verified: false,
                    problem: Some("there is no journal: no phase has run in this directory".into()),
                    torn_tail_bytes: None,
                    end_to_end: false,
                    gaps: Vec::new(),
                },
                Vec::new(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(
        match journal::verify(&path, &bytes, Some(&plan.id), Some(plan.rehearsal)) {
            Ok(v) => (
                JournalView {
                    file: path,
                    present: true,
                    records: v.records.len(),
                    head_hash: Some(v.head_hash),
                    verified: true,
                    problem: None,
                    torn_tail_bytes: v.torn_tail,
                    end_to_end: false,
                    gaps: Vec::new(),
                },
                v.records,
            ),
            Err(e) => {
                let records: Vec<Record> = bytes
                    .split(|&b| b == b'\n')
                    .filter_map(|line| serde_json::from_slice::<Record>(line).ok())
                    .collect();
                (
                    JournalView {
                        file: path,
                        present: true,
                        records: records.len(),
                        head_hash: None,
                        verified: false,
                        problem: Some(e.to_string()),
                        torn_tail_bytes: None,
                        end_to_end: false,
                        gaps: Vec::new(),
                    },
                    records,
                )
            }
        },
    )
}

fn operators(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in records.iter().filter_map(|r| r.operator.as_ref()) {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Every record, intents paired with their outcomes (the outcome names its intent's seq).
fn timeline(records: &[Record]) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = Vec::new();
    // Indices into `out` of intents still waiting for their outcome.
    let mut open: Vec<usize> = Vec::new();
    for r in records {
        let base = |entry: &'static str, result: String| TimelineEntry {
            seq: r.seq,
            time: r.time.clone(),
            phase: r.phase.clone(),
            node: r.node.clone(),
            operator: r.operator.clone(),
            entry,
            event: r.event.clone(),
            action: None,
            note: None,
            outcome: None,
            unreadable: None,
            result,
        };
        match r.entry() {
            Err(why) => out.push(TimelineEntry {
                unreadable: Some(why),
                ..base("unreadable", "NOT READABLE".into())
            }),
            Ok(Entry::Intent(action)) => {
                open.push(out.len());
                out.push(TimelineEntry {
                    action: Some(action),
                    ..base("action", "NO OUTCOME RECORDED".into())
                });
            }
            Ok(Entry::Note(note)) => out.push(TimelineEntry {
                note: Some(note),
                ..base("note", "note".into())
            }),
            Ok(Entry::Outcome(outcome)) => {
                let position = open
                    .iter()
                    .position(|&i| out.get(i).is_some_and(|e| e.seq == outcome.intent));
                let result = outcome.describe();
                let view = OutcomeView {
                    seq: r.seq,
                    time: r.time.clone(),
                    operator: r.operator.clone(),
                    outcome,
                };
                match position
                    .map(|p| open.remove(p))
                    .and_then(|i| out.get_mut(i))
                {
                    Some(entry) => {
                        entry.result = result;
                        entry.outcome = Some(view);
                    }
                    None => out.push(TimelineEntry {
                        outcome: Some(view),
                        ..base("outcome", result)
                    }),
                }
            }
        }
    }
    out
}

// ----------------------------------------------------------------------------------------
// Node snapshots
// ----------------------------------------------------------------------------------------

fn new_state_name(s: NewState) -> &'static str {
    match s {
        NewState::Empty => "empty",
        NewState::Partial => "partial",
        NewState::Full => "full",
    }
}

fn current_state_name(s: CurrentState) -> &'static str {
    match s {
        CurrentState::Invalid => "invalid",
        CurrentState::Valid => "valid",
    }
}

fn register_view(r: &RegisterStatus) -> RegisterView {
    let texts = |list: &[VerificationPattern]| list.iter().map(ToString::to_string).collect();
    RegisterView {
        kind: r.kind.name().to_string(),
        new: new_state_name(r.new).into(),
        current: current_state_name(r.current).into(),
        old: current_state_name(r.old).into(),
        new_patterns: texts(&r.new_patterns),
        current_patterns: texts(&r.current_patterns),
        old_patterns: texts(&r.old_patterns),
    }
}

fn snapshot_of(st: &NodeStatus) -> Snapshot {
    Snapshot {
        seq: None,
        time: None,
        phase: None,
        serial: Some(st.identity.serial.to_string()),
        eid: st.identity.eid.as_ref().map(ToString::to_string),
        registers: st.registers.iter().map(register_view).collect(),
        status: Some(st.clone()),
    }
}

fn register_of(s: &Snapshot, kind: CloneableKind) -> Option<RegisterView> {
    s.registers
        .iter()
        .find(|r| r.kind.eq_ignore_ascii_case(kind.kind().name()))
        .cloned()
}

fn current_text(
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

fn new_text(reg: Option<&RegisterView>) -> String {
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
fn compare(patterns: &[VerificationPattern], reference: &[VerificationPattern]) -> Option<bool> {
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
fn first_node_status(records: &[Record], node: &str) -> Option<Snapshot> {
    records
        .iter()
        .filter(|r| r.node == node)
        .find_map(|r| match r.note() {
            Some(Note::NodeStatus(st)) => Some(Snapshot {
                seq: Some(r.seq),
                time: Some(r.time.clone()),
                phase: Some(r.phase.clone()),
                ..snapshot_of(&st)
            }),
            _ => None,
        })
}

// ----------------------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------------------

fn sa_key_of(db: &SaDb) -> Option<RsaPublicKey> {
    CertificateSection::decode(&db.sa_certificate)
        .ok()
        .map(|s| s.key)
}

/// Fingerprint of a public-key token's self-signed certificate section.
fn token_fingerprint(token: &PublicKeyToken) -> Option<String> {
    let section = PublicKeyTokenView::decode(token).ok()?.certificate?;
    registration_hash(&section).ok().map(|h| h.fingerprint())
}

/// Whether `cert` verifies under the SA key; Err(reason) when it does not.
fn verify_cert(
    plan: &Plan,
    sa: Option<&RsaPublicKey>,
    cert: &Certificate,
) -> Option<Result<(), String>> {
    let sa = sa?;
    Some(match CertificateSection::decode(cert) {
        Err(e) => Err(format!("the certificate is malformed: {e}")),
        Ok(section) => section
            .verify(&plan.sa_label(), sa)
            .map_err(|e| e.to_string()),
    })
}

fn certified_state(
    plan: &Plan,
    sa: Option<&RsaPublicKey>,
    cert: Option<&Certificate>,
    missing_step: String,
    missing: &mut Vec<String>,
    what: &str,
) -> (String, bool, Option<bool>) {
    match cert {
        None => {
            missing.push(format!("{what}: not certified yet ({missing_step})"));
            ("public key present, not certified yet".into(), false, None)
        }
        Some(cert) => match verify_cert(plan, sa, cert) {
            None => (
                "certified (not checked: the SA key is not readable)".into(),
                true,
                None,
            ),
            Some(Ok(())) => (
                "certified; the certificate verifies under the SA key of sa.db".into(),
                true,
                Some(true),
            ),
            Some(Err(why)) => {
                missing.push(format!("{what}: the certificate does not verify ({why})"));
                (
                    format!(
                        "certified, but the certificate does NOT verify under the SA key: {why}"
                    ),
                    true,
                    Some(false),
                )
            }
        },
    }
}

fn keys(
    layout: &Layout,
    plan: &Plan,
    timeline: &[TimelineEntry],
    missing: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> (Vec<KeyView>, Option<String>) {
    let mut out = Vec::new();
    let absent = |role: &'static str, node: &str, state: String| KeyView {
        role,
        node: node.to_string(),
        file: "sa.db".into(),
        state,
        fingerprint: None,
        certified: false,
        verified: None,
    };
    let db = match dbs::read_optional::<SaDb>(&layout.sa_db(), SA_DB_FORMAT, plan) {
        Ok(Some(db)) => Some(db),
        Ok(None) => {
            missing.push(format!("sa.db: the SA key (phase 1 on {})", plan.sa.name));
            out.push(absent("SA", &plan.sa.name, "absent".into()));
            None
        }
        Err(e) => {
            warnings.push(e.to_string());
            missing.push("a readable sa.db".into());
            out.push(absent("SA", &plan.sa.name, format!("unreadable: {e}")));
            None
        }
    };
    let sa_key = db.as_ref().and_then(sa_key_of);
    let fingerprint = db.as_ref().map(|db| db.sa_hash.fingerprint());
    if let Some(db) = &db {
        out.push(KeyView {
            role: "SA",
            node: db.sa_node.clone(),
            file: "sa.db".into(),
            state: if sa_key.is_some() {
                format!("present (self-signed, EID {})", db.sa_eid)
            } else {
                "present, but its certificate cannot be decoded".into()
            },
            fingerprint: fingerprint.clone(),
            certified: true,
            verified: None,
        });
    }
    match db.as_ref().and_then(|db| db.css.as_ref()) {
        None => {
            missing.push(format!(
                "the CSS key in sa.db (phase 2a on {})",
                plan.source.name
            ));
            out.push(absent("CSS", &plan.source.name, "absent".into()));
        }
        Some(css) => {
            let (state, certified, verified) = certified_state(
                plan,
                sa_key.as_ref(),
                css.certificate.as_ref(),
                format!("phase 2b on {}", plan.sa.name),
                missing,
                "the CSS key",
            );
            out.push(KeyView {
                role: "CSS",
                node: css.node.clone(),
                file: "sa.db".into(),
                state,
                fingerprint: token_fingerprint(&css.public_key),
                certified,
                verified,
            });
        }
    }
    for t in &plan.targets {
        let path = layout.csr_db(&t.name);
        let file = file_name(&path);
        match dbs::read_optional::<CsrDb>(&path, CSR_DB_FORMAT, plan) {
            Err(e) => {
                warnings.push(e.to_string());
                missing.push(format!("a readable {file}"));
                out.push(KeyView {
                    role: "CSR",
                    node: t.name.clone(),
                    file,
                    state: format!("unreadable: {e}"),
                    fingerprint: None,
                    certified: false,
                    verified: None,
                });
            }
            Ok(None) => {
                // Erased by the clean-up after 3d or by an abort: recorded, not missing.
                let state = match erased(timeline, &path) {
                    Some(e) => format!("erased (record {}, {})", e.seq, e.time),
                    None => {
                        missing.push(format!(
                            "{file}: the CSR key of {} (phase 3a on {})",
                            t.name, t.name
                        ));
                        "absent".into()
                    }
                };
                out.push(KeyView {
                    role: "CSR",
                    node: t.name.clone(),
                    file,
                    state,
                    fingerprint: None,
                    certified: false,
                    verified: None,
                });
            }
            Ok(Some(db)) => {
                let (state, certified, verified) = certified_state(
                    plan,
                    sa_key.as_ref(),
                    db.certificate.as_ref(),
                    format!("phase 3b on {}", plan.sa.name),
                    missing,
                    &format!("the CSR key of {}", t.name),
                );
                out.push(KeyView {
                    role: "CSR",
                    node: db.target.clone(),
                    file,
                    state,
                    fingerprint: token_fingerprint(&db.public_key),
                    certified,
                    verified,
                });
            }
        }
    }
    (out, fingerprint)
}

/// Every readable share bundle in `shares/`; unreadable ones become warnings that start
/// with their path.
fn bundles(
    layout: &Layout,
    plan: &Plan,
    warnings: &mut Vec<String>,
) -> Vec<(PathBuf, ShareBundle)> {
    let dir = layout.shares_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "share"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        match dbs::read_optional::<ShareBundle>(&path, BUNDLE_FORMAT, plan) {
            Ok(Some(b)) => out.push((path, b)),
            Ok(None) => {}
            Err(e) => warnings.push(format!("{}: unreadable: {e}", path.display())),
        }
    }
    out
}

/// The reason an expected bundle could not be read, if `bundles` reported one.
fn bundle_problem(path: &Path, warnings: &[String]) -> Option<String> {
    let prefix = format!("{}: ", path.display());
    warnings
        .iter()
        .find(|w| w.starts_with(&prefix))
        .map(|_| "present but unreadable (see the warnings)".to_string())
}

// ----------------------------------------------------------------------------------------
// Rendering
// ----------------------------------------------------------------------------------------

/// A page, rendered to Markdown or HTML by the same walk so that both say the same.
struct Page {
    title: String,
    rehearsal: bool,
    intro: Vec<Block>,
    sections: Vec<Section>,
}

struct Section {
    title: String,
    blocks: Vec<Block>,
}

enum Block {
    Text(String),
    Strong(String),
    List(Vec<String>),
    Table {
        head: Vec<&'static str>,
        rows: Vec<Vec<String>>,
    },
    Subheading(String),
    Signatures(Vec<String>),
}

const REHEARSAL_BANNER: &str = "REHEARSAL: this ceremony was planned as a rehearsal (simulated \
    nodes keep their keys in plain files); it did not clone a production master key.";

fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "NO".into(),
        None => "-".into(),
    }
}

fn outcome_cell(e: &TimelineEntry) -> String {
    match &e.outcome {
        None => e.result.clone(),
        Some(o) => {
            let mut s = format!("{} (record {}, {})", e.result, o.seq, o.time);
            if o.operator != e.operator {
                let _ = write!(s, " by {}", or_dash(o.operator.as_deref()));
            }
            s
        }
    }
}

fn page(r: &Report) -> Page {
    let mark = if r.rehearsal { "REHEARSAL: " } else { "" };
    let title = format!("{mark}mkclone ceremony report: {}", r.ceremony);
    let mut intro = vec![Block::Text(format!(
        "Generated {} from the ceremony directory {}.",
        r.generated,
        r.directory.display()
    ))];
    if let Some(at) = &r.aborted {
        intro.push(Block::Strong(format!(
            "ABORT / CLEAN-UP recorded at {at}: its steps are in \"Who did what and when\"."
        )));
    }
    intro.push(Block::Strong(if r.complete {
        "Status: COMPLETE. Every planned step is recorded as done and the journal verified."
            .to_string()
    } else {
        format!(
            "Status: NOT COMPLETE. {} item(s) missing: see \"What is missing\".",
            r.missing.len()
        )
    }));
    if let Some(hash) = &r.journal.head_hash {
        intro.push(Block::Text(format!(
            "Journal final hash: {hash} ({} records{}).",
            r.journal.records,
            if r.journal.end_to_end {
                ", chain verified end to end"
            } else if r.journal.verified {
                ", chain verified, but NOT end to end: see \"Journal\""
            } else {
                ", chain NOT verified"
            }
        )));
    }

    let p = &r.plan;
    let node = |n: &PlanNodeView| match &n.pinned_serial {
        Some(serial) => format!("{} (EID {}, serial {serial} pinned)", n.name, n.eid),
        None => format!("{} (EID {})", n.name, n.eid),
    };
    let plan = Section {
        title: "Plan".into(),
        blocks: vec![Block::Table {
            head: vec!["item", "value"],
            rows: vec![
                vec!["ceremony id".into(), p.id.clone()],
                vec![
                    "rehearsal".into(),
                    if p.rehearsal { "YES: REHEARSAL" } else { "no" }.into(),
                ],
                vec![
                    "m-of-n".into(),
                    format!("{} of {} (any {} shares rebuild the key)", p.m, p.n, p.m),
                ],
                vec!["master keys".into(), p.kinds.join(", ")],
                vec![
                    "share indices per target".into(),
                    p.share_indices
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ],
                vec!["RSA key size".into(), format!("{} bits", p.rsa_bits)],
                vec![
                    "dual control".into(),
                    if p.dual_control {
                        "yes: the SA key's hash and the key are registered on each node by two \
                         named operators"
                    } else {
                        "NO: the plan sets dual_control = false; clone registers the SA key's \
                         hash and the key itself"
                    }
                    .into(),
                ],
                vec!["SA node".into(), node(&p.sa)],
                vec!["source".into(), node(&p.source)],
                vec![
                    "targets".into(),
                    p.targets.iter().map(node).collect::<Vec<_>>().join(", "),
                ],
                vec![
                    "key labels".into(),
                    format!(
                        "SA {}, CSS {}, CSR {}",
                        p.sa_label, p.css_label, p.csr_label
                    ),
                ],
            ],
        }],
    };

    let identity_rows = r
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.roles.join(", "),
                n.status.clone(),
                or_dash(n.serial.as_deref()),
                or_dash(n.eid.as_deref()),
                match &n.pinned_serial {
                    Some(serial) => format!("EID {}, serial {serial}", n.planned_eid),
                    None => format!("EID {}", n.planned_eid),
                },
                n.before
                    .as_ref()
                    .map(|b| {
                        format!(
                            "record {}, phase {}, {}",
                            b.seq.unwrap_or(0),
                            or_dash(b.phase.as_deref()),
                            or_dash(b.time.as_deref())
                        )
                    })
                    .unwrap_or_else(|| NOT_RECORDED.into()),
            ]
        })
        .collect();
    let pattern_rows = r
        .nodes
        .iter()
        .flat_map(|n| {
            n.kinds.iter().map(|k| {
                vec![
                    n.name.clone(),
                    k.kind.clone(),
                    format!("{} → {}", k.current_before, k.current_after),
                    k.new_after.clone(),
                    k.old_after.clone(),
                    k.mark.clone(),
                ]
            })
        })
        .collect();
    let nodes = Section {
        title: "Nodes".into(),
        blocks: vec![
            Block::Table {
                head: vec![
                    "node",
                    "role",
                    "state",
                    "serial",
                    "EID",
                    "plan",
                    "patterns before recorded at",
                ],
                rows: identity_rows,
            },
            Block::Subheading("Master-key verification patterns: CURRENT before → after".into()),
            Block::Table {
                head: vec![
                    "node",
                    "key",
                    "CURRENT before → after",
                    "NEW after",
                    "OLD after",
                    "vs source",
                ],
                rows: pattern_rows,
            },
        ],
    };

    let mut key_blocks = vec![Block::Strong(match &r.sa_fingerprint {
        Some(f) => format!("SA key fingerprint (compare in person): {f}"),
        None => "SA key fingerprint: sa.db is not here".into(),
    })];
    key_blocks.push(Block::Table {
        head: vec!["key", "node", "file", "state", "fingerprint"],
        rows: r
            .keys
            .iter()
            .map(|k| {
                vec![
                    k.role.to_string(),
                    k.node.clone(),
                    k.file.clone(),
                    k.state.clone(),
                    or_dash(k.fingerprint.as_deref()),
                ]
            })
            .collect(),
    });
    key_blocks.push(Block::Subheading(
        "SA key registration on each node: its hash, then the key (dual control)".into(),
    ));
    key_blocks.push(Block::Table {
        head: vec!["node", "hash registered", "key registered", "control"],
        rows: r
            .sa_registrations
            .iter()
            .map(|g| {
                let who = |by: &Option<String>, at: &Option<String>| match at {
                    None => "-".to_string(),
                    Some(at) => format!("{at} by {}", or_dash(by.as_deref())),
                };
                vec![
                    g.node.clone(),
                    who(&g.hash_by, &g.hash_at),
                    who(&g.key_by, &g.key_at),
                    g.control.clone(),
                ]
            })
            .collect(),
    });
    let keys = Section {
        title: "Keys and certificates".into(),
        blocks: key_blocks,
    };

    let shares = Section {
        title: "Shares".into(),
        blocks: vec![
            Block::Table {
                head: vec!["target", "key", "index", "bundle", "obtained", "installed"],
                rows: r
                    .shares
                    .iter()
                    .map(|s| {
                        vec![
                            s.target.clone(),
                            s.kind.clone(),
                            if s.planned {
                                s.index.to_string()
                            } else {
                                format!("{} (not in the plan)", s.index)
                            },
                            s.bundle.clone(),
                            or_dash(s.obtained.as_deref()),
                            or_dash(s.installed.as_deref()),
                        ]
                    })
                    .collect(),
            },
            Block::Subheading("SET per target and master key".into()),
            Block::Table {
                head: vec![
                    "target",
                    "key",
                    "SET",
                    "NEW confirmed before SET",
                    "against",
                    "CURRENT = source now",
                ],
                rows: r
                    .set
                    .iter()
                    .map(|s| {
                        vec![
                            s.target.clone(),
                            s.kind.clone(),
                            s.set.clone().unwrap_or_else(|| "NOT RECORDED".into()),
                            or_dash(s.confirmed.as_deref()),
                            match s.confirmed_against.as_deref() {
                                Some("plan") => "the plan's source_patterns".to_string(),
                                Some("signed-shares") => {
                                    "the pattern signed in the shares (checked by the device)"
                                        .to_string()
                                }
                                other => or_dash(other),
                            },
                            yes_no(s.current_equals_source),
                        ]
                    })
                    .collect(),
            },
        ],
    };

    let timeline = Section {
        title: "Who did what and when".into(),
        blocks: vec![
            Block::Text(format!(
                "Every journal record, oldest first; an action's outcome is shown on its line. \
                 Operators named in the journal: {}.",
                if r.operators.is_empty() {
                    "none".to_string()
                } else {
                    r.operators.join(", ")
                }
            )),
            Block::Table {
                head: vec![
                    "#",
                    "time (UTC)",
                    "phase",
                    "node",
                    "operator",
                    "event",
                    "detail",
                    "outcome",
                ],
                rows: r
                    .timeline
                    .iter()
                    .map(|e| {
                        vec![
                            e.seq.to_string(),
                            e.time.clone(),
                            e.phase.clone(),
                            or_dash(Some(&e.node)),
                            or_dash(e.operator.as_deref()),
                            match e.entry {
                                "action" => e.event.clone(),
                                other => format!("{} ({other})", e.event),
                            },
                            match (&e.action, &e.note, &e.unreadable) {
                                (Some(a), _, _) => a.describe(),
                                (_, Some(n), _) => n.describe(),
                                (_, _, Some(why)) => why.clone(),
                                _ => String::new(),
                            },
                            outcome_cell(e),
                        ]
                    })
                    .collect(),
            },
        ],
    };

    let mut findings = Vec::new();
    if r.missing.is_empty() {
        findings.push(Block::Text(
            "Nothing: every planned step is recorded as done.".into(),
        ));
    } else {
        findings.push(Block::List(r.missing.clone()));
    }
    if !r.warnings.is_empty() {
        findings.push(Block::Subheading(
            "What this report could not establish".into(),
        ));
        findings.push(Block::List(r.warnings.clone()));
    }
    let findings = Section {
        title: "What is missing".into(),
        blocks: findings,
    };

    let j = &r.journal;
    let journal = Section {
        title: "Journal".into(),
        blocks: vec![Block::Table {
            head: vec!["item", "value"],
            rows: vec![
                vec!["file".into(), j.file.display().to_string()],
                vec!["present".into(), yes_no(Some(j.present))],
                vec!["records".into(), j.records.to_string()],
                vec![
                    "chain verified".into(),
                    if j.verified {
                        "yes".to_string()
                    } else {
                        format!("NO: {}", or_dash(j.problem.as_deref()))
                    },
                ],
                vec![
                    "verified end to end".into(),
                    if j.end_to_end {
                        "yes: every journal mark the ceremony files carry for this server is in it"
                            .to_string()
                    } else if j.gaps.is_empty() {
                        "no".to_string()
                    } else {
                        format!("NO: {}", j.gaps.join("; "))
                    },
                ],
                vec![
                    "final hash (SHA-256 of the last record)".into(),
                    or_dash(j.head_hash.as_deref()),
                ],
            ],
        }],
    };

    let signatures = Section {
        title: "Signatures".into(),
        blocks: vec![
            Block::Text(
                "We were present at this ceremony and confirm that this report describes it."
                    .into(),
            ),
            Block::Signatures(r.operators.clone()),
        ],
    };

    Page {
        title,
        rehearsal: r.rehearsal,
        intro,
        sections: vec![
            plan, nodes, keys, shares, timeline, findings, journal, signatures,
        ],
    }
}

/// Blank signature lines after the named operators.
const BLANK_SIGNATURE_LINES: usize = 4;

/// Escape text for Markdown (inline, table cells included): what could start emphasis,
/// code, a link, an HTML tag or a table cell anywhere, and a block (heading, quote, list)
/// at the start.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    if text.starts_with(['#', '>', '+', '-', '=']) {
        out.push('\\');
    }
    for c in text.chars() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '<' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text on one line of a fenced block: no control characters, no backticks.
fn plain_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// The report as a printable Markdown page.
pub fn render_markdown(report: &Report) -> String {
    let page = page(report);
    let tag = if page.rehearsal { " (REHEARSAL)" } else { "" };
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", md(&page.title));
    if page.rehearsal {
        let _ = writeln!(out, "> **{}**\n", md(REHEARSAL_BANNER));
    }
    for b in &page.intro {
        md_block(&mut out, b);
    }
    for s in &page.sections {
        let _ = writeln!(out, "## {}{tag}\n", md(&s.title));
        for b in &s.blocks {
            md_block(&mut out, b);
        }
    }
    out
}

fn md_block(out: &mut String, b: &Block) {
    match b {
        Block::Text(t) => {
            let _ = writeln!(out, "{}\n", md(t));
        }
        Block::Strong(t) => {
            let _ = writeln!(out, "**{}**\n", md(t));
        }
        Block::Subheading(t) => {
            let _ = writeln!(out, "### {}\n", md(t));
        }
        Block::List(items) => {
            for i in items {
                let _ = writeln!(out, "- {}", md(i));
            }
            out.push('\n');
        }
        Block::Table { head, rows } => {
            let _ = writeln!(
                out,
                "| {} |",
                head.iter().map(|h| md(h)).collect::<Vec<_>>().join(" | ")
            );
            let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
            for row in rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| if c.is_empty() { " ".into() } else { md(c) })
                    .collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
            out.push('\n');
        }
        Block::Signatures(names) => {
            out.push_str("```text\n");
            let line = "_".repeat(28);
            for name in names {
                let _ = writeln!(
                    out,
                    "Name: {:<28}  Role: {:<16}  Signature: {line}  Date: {}",
                    plain_line(name),
                    "operator",
                    "_".repeat(12)
                );
                out.push('\n');
            }
            for _ in 0..BLANK_SIGNATURE_LINES {
                let _ = writeln!(
                    out,
                    "Name: {line}  Role: {}  Signature: {line}  Date: {}",
                    "_".repeat(16),
                    "_".repeat(12)
                );
                out.push('\n');
            }
            out.push_str("```\n\n");
        }
    }
}

/// Escape text for HTML (content and attribute values).
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "\
@page { size: A4; margin: 1.5cm; }
body { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 9.5pt; color: #000; background: #fff; margin: 1.5cm; }
h1 { font-size: 16pt; margin: 0 0 0.5em; }
h2 { font-size: 12.5pt; border-bottom: 1px solid #000; margin: 1.4em 0 0.5em; page-break-after: avoid; break-after: avoid; }
h3 { font-size: 10.5pt; margin: 1em 0 0.4em; page-break-after: avoid; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 0.3em 0 1em; }
th, td { border: 1px solid #555; padding: 2px 4px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: #e8e8e8; }
tr { page-break-inside: avoid; break-inside: avoid; }
thead { display: table-header-group; }
.rehearsal { border: 3px solid #b00000; color: #b00000; font-weight: bold; font-size: 13pt; padding: 0.4em; text-align: center; margin: 0.5em 0 1em; }
.tag { color: #b00000; font-weight: bold; }
.strong { font-weight: bold; }
.rehearsal-mark { display: none; }
table.signatures td { height: 2.6em; }
@media print {
  body { margin: 0; }
  .rehearsal-mark { display: block; position: fixed; top: 0; right: 0; color: #b00000; font-weight: bold; border: 2px solid #b00000; padding: 1px 6px; background: #fff; }
  .rehearsal, .tag { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section { page-break-inside: auto; }
}
";

/// The report as a self-contained, printable HTML page (every value escaped).
pub fn render_html(report: &Report) -> String {
    let page = page(report);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        html(&page.title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", html(&page.title));
    if page.rehearsal {
        // Repeated on every printed page (a fixed element prints on each page).
        out.push_str("<div class=\"rehearsal-mark\">REHEARSAL</div>\n");
        let _ = writeln!(
            out,
            "<div class=\"rehearsal\">{}</div>",
            html(REHEARSAL_BANNER)
        );
    }
    for b in &page.intro {
        html_block(&mut out, b);
    }
    for s in &page.sections {
        out.push_str("<section>\n");
        let tag = if page.rehearsal {
            " <span class=\"tag\">REHEARSAL</span>"
        } else {
            ""
        };
        let _ = writeln!(out, "<h2>{}{tag}</h2>", html(&s.title));
        for b in &s.blocks {
            html_block(&mut out, b);
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn html_block(out: &mut String, b: &Block) {
    match b {
        Block::Text(t) => {
            let _ = writeln!(out, "<p>{}</p>", html(t));
        }
        Block::Strong(t) => {
            let _ = writeln!(out, "<p class=\"strong\">{}</p>", html(t));
        }
        Block::Subheading(t) => {
            let _ = writeln!(out, "<h3>{}</h3>", html(t));
        }
        Block::List(items) => {
            out.push_str("<ul>\n");
            for i in items {
                let _ = writeln!(out, "<li>{}</li>", html(i));
            }
            out.push_str("</ul>\n");
        }
        Block::Table { head, rows } => {
            out.push_str("<table>\n<thead><tr>");
            for h in head {
                let _ = write!(out, "<th>{}</th>", html(h));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for row in rows {
                out.push_str("<tr>");
                for c in row {
                    let _ = write!(out, "<td>{}</td>", html(c));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Block::Signatures(names) => {
            out.push_str(
                "<table class=\"signatures\">\n<thead><tr><th>name</th><th>role</th><th>signature</th><th>date</th></tr></thead>\n<tbody>\n",
            );
            for name in names {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>operator</td><td></td><td></td></tr>",
                    html(name)
                );
            }
            for _ in 0..BLANK_SIGNATURE_LINES {
                out.push_str("<tr><td></td><td></td><td></td><td></td></tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Kind;
    use serde_json::{Value, json};

    fn record(seq: u64, kind: Kind, node: &str, event: &str, detail: Value) -> Record {
        Record {
            seq,
            prev: journal::GENESIS_PREV.into(),
            time: format!("2026-05-01T10:00:{seq:02}.000Z"),
            ceremony: "C-1".into(),
            nonce: "00112233445566778899aabbccddeeff".into(),
            rehearsal: false,
            phase: "3d".into(),
            node: node.into(),
            kind,
            operator: None,
            event: event.into(),
            detail,
        }
    }

    fn status(serial: &str, pattern: u8) -> NodeStatus {
        use mkclone_backend::{
            Identity, MasterKeyKind, PatternAlgorithm, RegisterStatus, SerialNumber,
        };
        NodeStatus {
            identity: Identity {
                serial: SerialNumber::new(serial).unwrap(),
                eid: None,
            },
            registers: vec![RegisterStatus {
                kind: MasterKeyKind::Sym,
                new: NewState::Empty,
                current: CurrentState::Valid,
                old: CurrentState::Invalid,
                new_patterns: vec![],
                current_patterns: vec![
                    VerificationPattern::new(PatternAlgorithm::Sha1Method, &[pattern; 8]).unwrap(),
                ],
                old_patterns: vec![],
            }],
        }
    }

    fn note(seq: u64, node: &str, n: Note) -> Record {
        let (event, detail) = n.parts();
        record(seq, Kind::Note, node, &event, detail)
    }

    fn intent(seq: u64, a: Action) -> Record {
        let (event, detail) = a.parts();
        record(seq, Kind::Intent, "t1", &event, detail)
    }

    fn outcome(seq: u64, event: &str, intent: u64, result: StepResult) -> Record {
        let detail = serde_json::to_value(Outcome { intent, result }).unwrap();
        record(seq, Kind::Outcome, "t1", event, detail)
    }

    #[test]
    fn the_first_readable_node_status_is_the_before() {
        let records = vec![
            // Not what mkclone writes: reported, not guessed at.
            record(
                1,
                Kind::Note,
                "t1",
                "node-status",
                json!({"registers": "garbage"}),
            ),
            note(2, "t1", Note::NodeStatus(Box::new(status("S1", 1)))),
            note(3, "t1", Note::NodeStatus(Box::new(status("S1", 2)))),
        ];
        let s = first_node_status(&records, "t1").unwrap();
        assert_eq!(s.seq, Some(2));
        assert_eq!(s.serial.as_deref(), Some("S1"));
        assert_eq!(s.registers[0].current_patterns, ["SHA-1 0101010101010101"]);
        let sym = register_of(&s, CloneableKind::Sym);
        assert_eq!(
            current_text(sym.as_ref(), |r| (&r.current, &r.current_patterns)),
            "SHA-1 0101010101010101"
        );
        assert!(first_node_status(&records, "other").is_none());
        let t = timeline(&records);
        assert_eq!(t[0].entry, "unreadable");
        assert!(t[0].unreadable.as_deref().unwrap().contains("record 1"));
    }

    #[test]
    fn intents_pair_with_the_outcome_that_names_them() {
        let ok = |already_done| StepResult::Ok {
            already_done,
            progress: None,
            share_bytes: None,
        };
        let install = Action::InstallShare {
            index: 1,
            kind: CloneableKind::Sym,
        };
        let records = vec![
            intent(1, install.clone()),
            // Interrupted: no outcome; the rerun does it again.
            intent(2, install.clone()),
            note(
                3,
                "t1",
                Note::OutcomeUnknownRetry {
                    error: "lost".into(),
                    intent: 2,
                },
            ),
            outcome(4, "install-share", 2, ok(true)),
            intent(
                5,
                Action::SetMasterKey {
                    kind: CloneableKind::Sym,
                },
            ),
            outcome(
                6,
                "set-master-key",
                5,
                StepResult::Failed {
                    error: "boom".into(),
                },
            ),
            outcome(7, "orphan", 99, ok(false)),
        ];
        let t = timeline(&records);
        let by_seq = |s: u64| t.iter().find(|e| e.seq == s).unwrap();
        assert!(by_seq(1).outcome.is_none());
        assert_eq!(by_seq(1).result, "NO OUTCOME RECORDED");
        assert_eq!(by_seq(2).outcome.as_ref().unwrap().seq, 4);
        assert_eq!(by_seq(2).result, "ok (already done)");
        assert_eq!(by_seq(2).action, Some(install));
        assert_eq!(by_seq(3).entry, "note");
        assert_eq!(by_seq(5).result, "FAILED: boom");
        assert!(!by_seq(5).ok());
        assert_eq!(by_seq(7).entry, "outcome");
        assert!(t.iter().all(|e| e.seq != 4 && e.seq != 6));
    }

    #[test]
    fn patterns_compare_per_algorithm() {
        use mkclone_backend::PatternAlgorithm::{Mdc4, Sha1Method};
        let p = |a, b: u8| {
            VerificationPattern::new(a, &vec![b; if a == Mdc4 { 16 } else { 8 }]).unwrap()
        };
        assert_eq!(
            compare(&[p(Sha1Method, 1)], &[p(Sha1Method, 1)]),
            Some(true)
        );
        assert_eq!(
            compare(&[p(Sha1Method, 1)], &[p(Sha1Method, 2)]),
            Some(false)
        );
        assert_eq!(compare(&[p(Mdc4, 1)], &[p(Sha1Method, 1)]), None);
        assert_eq!(
            compare(&[p(Mdc4, 1), p(Sha1Method, 2)], &[p(Sha1Method, 2)]),
            Some(true)
        );
        assert_eq!(compare(&[], &[p(Sha1Method, 2)]), None);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(md("a|b*c_d`e<f\nz\\"), "a\\|b\\*c\\_d\\`e\\<f z\\\\");
        assert_eq!(md("# h > x"), "\\# h > x");
        assert_eq!(md("- item"), "\\- item");
        assert_eq!(plain_line("a`b\nc"), "a'b c");
    }
}
