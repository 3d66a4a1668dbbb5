//! The report as data: what `--json` prints and the page is made from.

use super::*;

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
    pub(super) status: Option<NodeStatus>,
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
    pub(super) fn ok(&self) -> bool {
        self.outcome.as_ref().is_some_and(|o| o.outcome.ok())
    }
    pub(super) fn done_at(&self) -> Option<String> {
        self.outcome
            .as_ref()
            .filter(|o| o.outcome.ok())
            .map(|o| o.time.clone())
    }
    /// The master key of an action, if it concerns one.
    pub(super) fn kind(&self) -> Option<CloneableKind> {
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
