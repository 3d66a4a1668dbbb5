//! A ceremony in progress: its directory (locked while we work in it), its plan and its
//! journal. Every state-changing request to a node is bracketed by an `intent` and an
//! `outcome` record, written ahead (the intent is durable before the request leaves).

use std::path::{Path, PathBuf};

use log::{info, warn};
use mkclone_backend::BackendError;
use serde_json::Value;

use crate::dbs::{self, Carried, JournalMark, Layout, Provenance, SA_DB_FORMAT, SaDb};
use crate::durable::DirLock;
use crate::event::{Action, LostMark, Note, Outcome, StepResult};
use crate::failure::{CeremonyError, JournalGap, Result};
use crate::journal::{Journal, Kind};
use crate::phase::Phase;
use crate::plan::Plan;
use crate::trust::SaFingerprint;

/// Environment variable for crash-injection tests: abort the process right after the
/// n-th journal record this process appends. Its name is long on purpose.
pub const CRASH_HOOK_ENV: &str = "MKCLONE_TEST_ONLY_ABORT_AFTER_JOURNAL_RECORD";

/// What a phase did, for the command line to show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseReport {
    pub phase: Phase,
    pub node: String,
    /// What happened, one line each ("done" or "already done").
    pub actions: Vec<String>,
    /// Files to carry: (file, to which node, why).
    pub carry: Vec<(PathBuf, String, String)>,
}

impl PhaseReport {
    pub fn new(phase: Phase, node: &str) -> Self {
        Self {
            phase,
            node: node.into(),
            actions: Vec::new(),
            carry: Vec::new(),
        }
    }
    pub fn did(&mut self, what: impl Into<String>) {
        self.actions.push(what.into());
    }
    /// A file to carry to a node, and why.
    pub fn carry(&mut self, file: PathBuf, to: &str, why: &str) {
        self.carry.push((file, to.into(), why.into()));
    }
}

/// An open ceremony directory.
pub struct Ceremony {
    pub plan: Plan,
    pub layout: Layout,
    journal: Journal,
    operator: Option<String>,
    appended: u64,
    crash_after: Option<u64>,
    fail_after: Option<u64>,
    replace_current: bool,
    /// The SA key's pinned fingerprint: the plan's, `--sa-fingerprint`, or (in `clone`,
    /// and on the SA node) read from the SA node itself.
    sa_anchor: Option<SaFingerprint>,
    _lock: DirLock,
}

impl Ceremony {
    /// Open (creating if needed, mode 0700) the ceremony directory `dir` for `plan`, check
    /// it and its `shares/` ([`durable::check_private_dir`](crate::durable::check_private_dir)),
    /// lock it, and open its journal.
    pub fn open(dir: &Path, plan: Plan) -> Result<Self> {
        crate::durable::create_private_dir(dir)?;
        Layout::new(dir).check_dirs()?;
        // Never wait silently: name the other holder and let the user decide.
        let lock = DirLock::try_acquire(dir)?;
        let mut journal = Journal::open(dir, &plan.id, plan.rehearsal)?;
        let layout = Layout::new(dir);
        // The ceremony nonce: the journal's and sa.db's must be one (a journal of another
        // run of a ceremony with this id has another). An sa.db that does not decode is
        // left to the phases, which report it.
        if let Ok(Some(db)) = dbs::read_optional::<SaDb>(&layout.sa_db(), SA_DB_FORMAT, &plan) {
            let file_nonce = db.provenance.nonce;
            match journal.nonce() {
                Some(j) if j != file_nonce => {
                    return Err(CeremonyError::ForeignJournal {
                        journal: journal.path().display().to_string(),
                        id: plan.id.clone(),
                        journal_nonce: j.to_string(),
                        file_nonce,
                    });
                }
                Some(_) => {}
                None => journal.set_nonce(&file_nonce)?,
            }
        }
        if let Some(bytes) = journal.torn_tail() {
            warn!(
                "the journal's last record was torn ({bytes} bytes): an earlier run stopped mid-write; it is dropped"
            );
        }
        let crash_after = std::env::var(CRASH_HOOK_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        Ok(Self {
            sa_anchor: plan.sa_fingerprint.clone(),
            plan,
            layout,
            journal,
            operator: None,
            appended: 0,
            crash_after,
            fail_after: None,
            replace_current: false,
            _lock: lock,
        })
    }

    /// Tests: stop with [`CeremonyError::InjectedCrash`] right after the n-th journal
    /// record this handle appends, as if the process had died there (all state is in the
    /// files and the nodes, so dropping everything and starting again is a restart).
    pub fn inject_crash_after(&mut self, records: u64) {
        self.fail_after = Some(self.appended + records);
    }

    /// Journal records this handle appended.
    pub fn records_appended(&self) -> u64 {
        self.appended
    }

    /// Allow SET over a valid, different CURRENT (which becomes OLD).
    pub fn set_replace_current(&mut self, yes: bool) {
        self.replace_current = yes;
    }

    pub fn replace_current(&self) -> bool {
        self.replace_current
    }

    /// Pin the SA key's fingerprint for this command (`--sa-fingerprint`, or the key
    /// `clone` read from the SA node). Refused when the plan pins another.
    pub fn set_sa_fingerprint(&mut self, fingerprint: SaFingerprint) -> Result<()> {
        match &self.sa_anchor {
            Some(pinned) if *pinned != fingerprint => Err(CeremonyError::SaKeyNotPinned {
                pinned: pinned.grouped(),
                found: fingerprint.grouped(),
            }),
            _ => {
                self.sa_anchor = Some(fingerprint);
                Ok(())
            }
        }
    }

    /// The SA key's pinned fingerprint, if any.
    pub fn sa_anchor(&self) -> Option<&SaFingerprint> {
        self.sa_anchor.as_ref()
    }

    /// The ceremony nonce (from the journal or sa.db), if this directory has one yet.
    pub fn nonce(&self) -> Option<&str> {
        self.journal.nonce()
    }

    /// Phase 1 on a fresh directory: draw the ceremony nonce (16 random bytes).
    pub fn ensure_nonce(&mut self) -> Result<String> {
        if let Some(n) = self.journal.nonce() {
            return Ok(n.to_string());
        }
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        self.journal.set_nonce(&nonce)?;
        Ok(nonce)
    }

    /// Stamp a file about to be written by a phase on `node`: the ceremony nonce, and
    /// where this server's journal stands (its last record, written before the file).
    pub fn stamp<T: Carried>(&self, body: &mut T, phase: &str, node: &str) -> Result<()> {
        let nonce = self.nonce().ok_or_else(|| CeremonyError::Conflict {
            what: "the ceremony nonce".into(),
            detail: "unknown: carry sa.db here first".into(),
        })?;
        let seq = self.journal.records().len() as u64;
        let p = body.provenance_mut();
        p.nonce = nonce.to_string();
        p.written.insert(
            node.to_string(),
            JournalMark {
                phase: phase.to_string(),
                seq,
                hash: self.journal.head_hash(),
            },
        );
        Ok(())
    }

    /// Before a phase on `node` writes anything: every ceremony file here that a phase on
    /// `node` wrote names a journal record this journal must still hold (unless its loss
    /// was recorded with `journal accept-loss`).
    pub fn check_journal_marks(&self, node: &str) -> Result<()> {
        let accepted = self.accepted_losses();
        for (file, provenance) in self.carried_files() {
            let Some(mark) = provenance.written.get(node) else {
                continue;
            };
            if accepted.contains(&(mark.seq, mark.hash.clone())) {
                continue;
            }
            let phase_of = |seq: u64| {
                let i = usize::try_from(seq).ok()?.checked_sub(1)?;
                self.journal.records().get(i).map(|r| r.phase.clone())
            };
            let found = match self.journal.hash_of(mark.seq) {
                Some(h) if h == mark.hash && phase_of(mark.seq).as_ref() == Some(&mark.phase) => {
                    continue;
                }
                Some(h) if h == mark.hash => format!(
                    "has record {} of phase {}, not {}",
                    mark.seq,
                    phase_of(mark.seq).unwrap_or_default(),
                    mark.phase
                ),
                Some(h) => format!("holds another record {} (hash {h})", mark.seq),
                None if self.journal.records().is_empty() => "is empty".to_string(),
                None => format!("ends at record {}", self.journal.records().len()),
            };
            return Err(CeremonyError::JournalGap(Box::new(JournalGap {
                file,
                phase: mark.phase.clone(),
                node: node.into(),
                seq: mark.seq,
                hash: mark.hash.clone(),
                journal: self.journal.path().display().to_string(),
                found,
            })));
        }
        Ok(())
    }

    /// Journal marks named by files here that this journal lacks, for every node (what
    /// `journal accept-loss` records, and what the report shows).
    pub fn missing_marks(&self) -> Vec<(String, String, JournalMark)> {
        let mut out = Vec::new();
        for (file, provenance) in self.carried_files() {
            for (node, mark) in &provenance.written {
                if self.journal.hash_of(mark.seq).as_deref() != Some(mark.hash.as_str()) {
                    out.push((file.clone(), node.clone(), mark.clone()));
                }
            }
        }
        out
    }

    /// The (seq, hash) marks whose loss an operator recorded.
    fn accepted_losses(&self) -> Vec<(u64, String)> {
        accepted_losses(self.journal.records())
    }

    fn carried_files(&self) -> Vec<(String, Provenance)> {
        dbs::carried_files(&self.layout, &self.plan)
    }

    /// `journal accept-loss`: record, as a note by the operator, that the marks of `node`
    /// which this journal lacks are lost for good; later phases then accept them, and the
    /// report says the chain is not verified end to end. Returns the marks recorded.
    pub fn accept_journal_loss(&mut self, node: &str) -> Result<Vec<(String, JournalMark)>> {
        let accepted = self.accepted_losses();
        let missing: Vec<(String, JournalMark)> = self
            .missing_marks()
            .into_iter()
            .filter(|(_, n, m)| n == node && !accepted.contains(&(m.seq, m.hash.clone())))
            .map(|(file, _, m)| (file, m))
            .collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        let marks = missing
            .iter()
            .map(|(file, m)| LostMark {
                file: file.clone(),
                hash: m.hash.clone(),
                phase: m.phase.clone(),
                seq: m.seq,
            })
            .collect();
        let records_now = self.journal.records().len() as u64;
        self.note(
            Phase::Journal,
            node,
            Note::JournalLossAccepted { marks, records_now },
        )?;
        Ok(missing)
    }

    pub fn set_operator(&mut self, operator: Option<String>) {
        self.operator = operator;
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Append one note.
    pub fn note(&mut self, phase: Phase, node: &str, note: Note) -> Result<()> {
        let (event, detail) = note.parts();
        self.append(phase, node, Kind::Note, &event, detail)
            .map(|_| ())
    }

    /// Append one record; returns its seq.
    fn append(
        &mut self,
        phase: Phase,
        node: &str,
        kind: Kind,
        event: &str,
        detail: Value,
    ) -> Result<u64> {
        let at = self.journal.append(
            phase.name(),
            node,
            kind,
            self.operator.as_deref(),
            event,
            detail,
        )?;
        self.appended += 1;
        if self.crash_after == Some(self.appended) {
            // Crash-injection tests only (see CRASH_HOOK_ENV).
            std::process::abort();
        }
        if self.fail_after == Some(self.appended) {
            return Err(CeremonyError::InjectedCrash {
                after: self.appended,
            });
        }
        Ok(at.seq)
    }

    /// Run one state-changing request: intent, request, outcome (naming the intent's seq).
    /// A request whose outcome is unknown is repeated once (every step is idempotent by
    /// reconciliation) and the repetition is journaled.
    pub fn step<T>(
        &mut self,
        phase: Phase,
        node: &str,
        action: Action,
        mut request: impl FnMut() -> std::result::Result<T, BackendError>,
        describe: impl Fn(&T) -> Done,
    ) -> Result<T> {
        let (event, detail) = action.parts();
        let intent = self.append(phase, node, Kind::Intent, &event, detail)?;
        let mut result = request();
        if let Err(e) = &result
            && e.is_outcome_unknown()
        {
            warn!("{node}: {event}: outcome unknown ({e}); repeating it once");
            self.note(
                phase,
                node,
                Note::OutcomeUnknownRetry {
                    error: e.to_string(),
                    intent,
                },
            )?;
            result = request();
        }
        let outcome = |result| {
            serde_json::to_value(Outcome { intent, result })
                .unwrap_or_else(|_| Value::Object(Default::default()))
        };
        match result {
            Ok(value) => {
                let done = describe(&value);
                self.append(
                    phase,
                    node,
                    Kind::Outcome,
                    &event,
                    outcome(StepResult::Ok {
                        already_done: done.already_done,
                        progress: done.progress,
                        share_bytes: done.share_bytes,
                    }),
                )?;
                info!("{node}: {event}: ok");
                Ok(value)
            }
            Err(e) => {
                self.append(
                    phase,
                    node,
                    Kind::Outcome,
                    &event,
                    outcome(StepResult::Failed {
                        error: e.to_string(),
                    }),
                )?;
                Err(CeremonyError::Backend {
                    node: node.into(),
                    step: action_name(&action),
                    source: Box::new(e),
                })
            }
        }
    }
}

/// What a successful request did, for its outcome record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Done {
    pub already_done: bool,
    pub progress: Option<mkclone_backend::InstallProgress>,
    pub share_bytes: Option<usize>,
}

impl Done {
    /// The outcome of a request answered `Applied::Done` or `AlreadyDone`.
    pub fn applied<T>(a: &mkclone_backend::Applied<T>) -> Self {
        Self {
            already_done: a.was_already_done(),
            ..Self::default()
        }
    }
}

/// A short name of an action, for error messages.
fn action_name(action: &Action) -> &'static str {
    match action {
        Action::SetEid { .. } => "set the EID",
        Action::SetMOfN { .. } => "set m-of-n",
        Action::GenerateRetainedKey { .. } => "generate a retained key",
        Action::RegisterSaHash { .. } => "register the SA key's hash",
        Action::RegisterSaKey { .. } => "register the SA key",
        Action::Certify { .. } => "certify",
        Action::ObtainShare { .. } => "obtain-share",
        Action::InstallShare { .. } => "install-share",
        Action::SetMasterKey { .. } => "set-master-key",
        Action::ClearNew { .. } => "clear NEW",
        Action::DeleteRetainedKey { .. } => "delete a retained key",
        Action::UnregisterSaKey { .. } => "unregister the SA key",
    }
}

/// The (seq, hash) marks whose loss `journal-loss-accepted` notes in `records` accept.
pub fn accepted_losses(records: &[crate::journal::Record]) -> Vec<(u64, String)> {
    records
        .iter()
        .filter_map(|r| match r.note() {
            Some(Note::JournalLossAccepted { marks, .. }) => Some(marks),
            _ => None,
        })
        .flatten()
        .map(|m| (m.seq, m.hash))
        .collect()
}
