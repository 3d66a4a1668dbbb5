//! The report as data: what `--json` prints and the page is made from.

use std::fmt;

use super::*;

/// Everything a ceremony report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ceremony: String,
    /// The ceremony nonce the journals carry (None: no journal record).
    pub nonce: Option<String>,
    /// A rehearsal: the plan says so, or a journal record does.
    pub rehearsal: bool,
    /// When this report was made (this host's clock).
    pub generated: Stamp,
    /// Where and with what this report was made.
    pub generated_by: Generator,
    pub directory: PathBuf,
    /// Every planned step is recorded as done, the target patterns equal the source's
    /// where they could be read, and every journal verified.
    pub complete: bool,
    /// When a journal last recorded the start of an abort or clean-up (`abort-start`).
    pub aborted: Option<At>,
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
    /// The commands that wrote the journals: each journal's records from one `run-start`
    /// to the next (records before a journal's first `run-start`, written by an mkclone
    /// that did not record runs, make one run without a `run_start`).
    pub runs: Vec<RunView>,
    /// Every journal record, merged in time order (each journal's own order kept); an
    /// intent carries its outcome.
    pub timeline: Vec<TimelineEntry>,
    /// The operators named in the journals, in order of first appearance.
    pub operators: Vec<String>,
    /// This directory's journal first (label A), then the journals given with `--journal`.
    pub journals: Vec<JournalView>,
    /// What the ceremony has not done yet (empty when complete).
    pub missing: Vec<Finding>,
    /// What the ceremony left that should not stay once it is over (share bundles on
    /// disk, the SA key still registered, the ceremony's retained keys), each with the
    /// command that closes it.
    pub open_items: Vec<Finding>,
    /// What this report could not establish (nodes not read, unreadable files,
    /// intents without an outcome, …).
    pub warnings: Vec<Finding>,
}

/// One item of `missing`, `open_items`, `warnings` or a journal's `gaps`: `what` says it as the page does,
/// `kind` names it for a script (docs/JSON.md lists the kinds), with the node, phase,
/// file, master key, share, journal record or command it names (absent members: it names
/// none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Several nodes (an SA key still registered on each, the retained keys).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The phase that does what is missing ("3d").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<CloneableKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_index: Option<u8>,
    /// The key's role (a CSS or CSR key not certified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyRole>,
    /// The journal (its label, A, B, …) and record it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// Who did it (a loss accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The command that closes an open item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Finding {
    pub(super) fn new(kind: &'static str, what: impl Into<String>) -> Self {
        Self {
            kind,
            what: what.into(),
            node: None,
            nodes: Vec::new(),
            phase: None,
            file: None,
            master_key: None,
            share_index: None,
            key: None,
            journal: None,
            record: None,
            operator: None,
            command: None,
        }
    }
    pub(super) fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }
    pub(super) fn phase(mut self, phase: impl fmt::Display) -> Self {
        self.phase = Some(phase.to_string());
        self
    }
    pub(super) fn file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
    pub(super) fn master_key(mut self, kind: CloneableKind) -> Self {
        self.master_key = Some(kind);
        self
    }
    pub(super) fn share(mut self, kind: CloneableKind, index: u8) -> Self {
        self.master_key = Some(kind);
        self.share_index = Some(index);
        self
    }
    pub(super) fn key(mut self, role: KeyRole) -> Self {
        self.key = Some(role);
        self
    }
    pub(super) fn record(mut self, journal: impl Into<String>, seq: Option<u64>) -> Self {
        self.journal = Some(journal.into());
        self.record = seq;
        self
    }
    pub(super) fn command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }
    /// The finding a typed error is: its kind and the file it names.
    pub(super) fn error(e: &CeremonyError, what: String) -> Self {
        let file = e.file().map(|f| f.display().to_string());
        Self {
            file,
            ..Self::new(e.kind(), what)
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// A time of the record: UTC as the journal holds it (RFC 3339, milliseconds) and the local
/// time of the host that wrote it, when its run recorded its UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stamp {
    pub utc: String,
    /// `YYYY-MM-DDTHH:MM:SS+HH:MM` (None: the offset is not recorded).
    pub local: Option<String>,
}

impl Stamp {
    pub(super) fn new(utc: &str, offset: Option<&str>) -> Self {
        Self {
            utc: utc.to_string(),
            local: offset.and_then(|o| crate::host::local_time(utc, o)),
        }
    }
}

/// When a step was done: the record of its intent and the time of its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct At {
    pub record: RecordRef,
    pub time: Stamp,
}

/// The mkclone, host and configuration of the report itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Generator {
    pub mkclone_version: String,
    pub host: String,
    /// The SHA-256 of the configuration the report was made with (None: not given).
    pub config_sha256: Option<String>,
    pub utc_offset: String,
}

impl Generator {
    /// This host, this mkclone, and the configuration's digest when known.
    pub fn here(config_sha256: Option<String>) -> Self {
        let (_, utc_offset) = crate::host::local_zone();
        Self {
            mkclone_version: crate::host::MKCLONE_VERSION.to_string(),
            host: crate::host::host_name(),
            config_sha256,
            utc_offset,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    pub id: String,
    pub m: u8,
    pub n: u8,
    pub kinds: Vec<CloneableKind>,
    pub share_indices: Vec<u8>,
    pub rsa_bits: u16,
    pub rehearsal: bool,
    /// The SA key is registered on each node by two named operators (hash, then key).
    pub dual_control: bool,
    /// The plan's nodes as the plan (and the worksheet) gives them: `name`, `eid`,
    /// `expect_serial` (docs/JSON.md: one spelling).
    pub sa: PlanNode,
    pub source: PlanNode,
    pub targets: Vec<PlanNode>,
    pub sa_label: String,
    pub css_label: String,
    pub csr_label: String,
}

/// One node of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    /// "sa", "source", "target" (as every JSON document spells a node's role).
    pub roles: Vec<Role>,
    pub planned_eid: String,
    /// The serial number the plan pins, if any.
    pub expect_serial: Option<String>,
    /// "read", "unavailable: <reason>" or "not read".
    pub status: String,
    /// From the status read now, else from the journal's first `node-status` record.
    pub serial: Option<String>,
    pub eid: Option<String>,
    /// The first `node-status` record of this node in the journals.
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
    pub record: Option<RecordRef>,
    pub time: Option<Stamp>,
    pub phase: Option<String>,
    pub serial: Option<String>,
    pub eid: Option<String>,
    /// As `status` gives them (docs/JSON.md: one spelling; the page words them).
    pub registers: Vec<RegisterStatus>,
    /// The status it was made from, for comparisons.
    #[serde(skip)]
    pub(super) status: Option<NodeStatus>,
}

/// One record of one journal: its label (A, B, …) and its `seq` there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    pub journal: String,
    pub seq: u64,
}

/// One planned master key of one node: CURRENT before → after, NEW and OLD after.
#[derive(Debug, Clone, Serialize)]
pub struct KindPatterns {
    pub kind: CloneableKind,
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
    /// "sa", "css", "csr" (as every JSON document spells a key's role).
    pub role: KeyRole,
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
    pub hash_at: Option<At>,
    pub key_by: Option<String>,
    pub key_at: Option<At>,
    /// In words: "two operators", "one command (dual_control = false)", …
    pub control: String,
}

/// One share.
#[derive(Debug, Clone, Serialize)]
pub struct ShareView {
    pub target: String,
    pub kind: CloneableKind,
    pub index: u8,
    /// The plan names it.
    pub planned: bool,
    /// The bundle's file name in `shares/`.
    pub file: String,
    /// "present", "absent", "erased (record …)", or why the bundle cannot be read.
    pub bundle: String,
    /// When a journal recorded it obtained (result ok).
    pub obtained: Option<At>,
    /// When a journal recorded it installed (result ok).
    pub installed: Option<At>,
}

impl ShareView {
    /// Issued: its bundle is here or a journal recorded it obtained.
    pub fn issued(&self) -> bool {
        self.bundle == "present" || self.obtained.is_some()
    }
}

/// SET of one master key on one target.
#[derive(Debug, Clone, Serialize)]
pub struct SetView {
    pub target: String,
    pub kind: CloneableKind,
    /// When a journal recorded SET (result ok).
    pub set: Option<At>,
    /// The NEW pattern confirmed equal to the source's before SET.
    pub confirmed: Option<String>,
    /// What it was confirmed against: "plan" (the plan's source_patterns) or
    /// "signed-shares" (the pattern the source's CSS key signed in every share, checked
    /// by the target's device).
    pub confirmed_against: Option<String>,
    /// The target's CURRENT now equals the source's (None: not comparable).
    pub current_equals_source: Option<bool>,
}

/// One command's records in one journal.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub journal: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub started: Stamp,
    pub ended: Stamp,
    /// What its `run-start` note recorded (None: its journal recorded none).
    pub run_start: Option<RunStart>,
    pub operators: Vec<String>,
    /// "3d on target1", in order.
    pub phases: Vec<String>,
    /// Every step it took was already done and it wrote nothing else of consequence (a
    /// rerun): the printed timeline shows it as one line.
    pub changed_nothing: bool,
}

/// One journal record; an intent carries its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// The journal's label (A, B, …).
    pub journal: String,
    pub seq: u64,
    pub time: Stamp,
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
    pub(super) fn done_at(&self) -> Option<At> {
        self.outcome
            .as_ref()
            .filter(|o| o.outcome.ok())
            .map(|o| At {
                record: self.record(),
                time: o.time.clone(),
            })
    }
    pub(super) fn record(&self) -> RecordRef {
        RecordRef {
            journal: self.journal.clone(),
            seq: self.seq,
        }
    }
    /// The master key of an action, if it concerns one.
    pub(super) fn kind(&self) -> Option<CloneableKind> {
        self.action.as_ref().and_then(Action::kind)
    }
    /// Changes nothing: a step the node said was already done, or a note that only
    /// records where things stand.
    pub(super) fn changes_nothing(&self) -> bool {
        match (self.entry, &self.note, &self.outcome) {
            ("action", _, Some(o)) => matches!(
                o.outcome.result,
                StepResult::Ok {
                    already_done: true,
                    ..
                }
            ),
            ("note", Some(n), _) => bookkeeping(n) || matches!(n, Note::Confirmed { .. }),
            _ => false,
        }
    }
}

/// A note that records where things stand or what runs, not a change: a run or phase
/// begins or ends, a node's status, dual control off.
pub(super) fn bookkeeping(note: &Note) -> bool {
    matches!(
        note,
        Note::RunStart(_)
            | Note::PhaseStart {}
            | Note::NodeStatus(_)
            | Note::PhaseDone { .. }
            | Note::DualControlOff { .. }
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct OutcomeView {
    pub seq: u64,
    pub time: Stamp,
    pub operator: Option<String>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct JournalView {
    /// A, B, …: how the printed record names it ("record B14").
    pub label: String,
    pub file: PathBuf,
    pub present: bool,
    /// The hosts its `run-start` notes name.
    pub hosts: Vec<String>,
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
    /// phases ran in it is in it (or in another journal given that ran them too), and no
    /// loss was accepted: nothing is missing before the final hash.
    pub end_to_end: bool,
    /// Why not end to end: marks this journal lacks, losses accepted with who and when.
    pub gaps: Vec<Finding>,
}
