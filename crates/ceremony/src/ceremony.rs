//! A ceremony in progress: its directory (locked while we work in it), its plan and its
//! journal. Every state-changing request to a node is bracketed by an `intent` and an
//! `outcome` record, written ahead (the intent is durable before the request leaves).

use std::path::{Path, PathBuf};

use log::{info, warn};
use mkclone_backend::{BackendError, Operation};
use serde_json::{Value, json};

use crate::dbs::{self, Carried, JournalMark, Layout, Provenance, SA_DB_FORMAT, SaDb};
use crate::durable::DirLock;
use crate::failure::{CeremonyError, JournalGap, Result};
use crate::journal::{Journal, Kind};
use crate::plan::Plan;
use crate::trust::SaFingerprint;

/// Environment variable for crash-injection tests: abort the process right after the
/// n-th journal record this process appends. Its name is long on purpose.
pub const CRASH_HOOK_ENV: &str = "MKCLONE_TEST_ONLY_ABORT_AFTER_JOURNAL_RECORD";

/// What a phase did, for the command line to show.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PhaseReport {
    pub phase: &'static str,
    pub node: String,
    /// What happened, one line each ("done" or "already done").
    pub actions: Vec<String>,
    /// Files to carry: (file, to which node, why).
    pub carry: Vec<(PathBuf, String, String)>,
}

impl PhaseReport {
    pub fn new(phase: &'static str, node: &str) -> Self {
        Self {
            phase,
            node: node.into(),
            ..Self::default()
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
        let marks: Vec<Value> = missing
            .iter()
            .map(|(file, m)| json!({"file": file, "phase": m.phase, "seq": m.seq, "hash": m.hash}))
            .collect();
        self.record(
            "journal",
            node,
            Kind::Note,
            LOSS_ACCEPTED_EVENT,
            json!({"marks": marks, "records_now": self.journal.records().len()}),
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

    /// Append one journal record.
    pub fn record(
        &mut self,
        phase: &str,
        node: &str,
        kind: Kind,
        event: &str,
        detail: Value,
    ) -> Result<()> {
        self.journal
            .append(phase, node, kind, self.operator.as_deref(), event, detail)?;
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
        Ok(())
    }

    /// Run one state-changing request: intent, request, outcome. A request whose outcome
    /// is unknown is repeated once (every step is idempotent by reconciliation) and the
    /// repetition is journaled.
    pub fn step<T>(
        &mut self,
        phase: &'static str,
        node: &str,
        event: &'static str,
        detail: Value,
        mut request: impl FnMut() -> std::result::Result<T, BackendError>,
        describe: impl Fn(&T) -> Value,
    ) -> Result<T> {
        self.record(phase, node, Kind::Intent, event, detail.clone())?;
        let mut result = request();
        if let Err(e) = &result
            && e.is_outcome_unknown()
        {
            warn!("{node}: {event}: outcome unknown ({e}); repeating it once");
            self.record(
                phase,
                node,
                Kind::Note,
                event,
                json!({"retry": "outcome unknown", "error": e.to_string()}),
            )?;
            result = request();
        }
        match result {
            Ok(value) => {
                let mut out = describe(&value);
                if let Value::Object(map) = &mut out {
                    map.insert("result".into(), json!("ok"));
                }
                self.record(phase, node, Kind::Outcome, event, out)?;
                info!("{node}: {event}: ok");
                Ok(value)
            }
            Err(e) => {
                self.record(
                    phase,
                    node,
                    Kind::Outcome,
                    event,
                    json!({"result": "failed", "error": e.to_string()}),
                )?;
                Err(CeremonyError::Backend {
                    node: node.into(),
                    step: event,
                    source: Box::new(e),
                })
            }
        }
    }
}

/// The journal event recording an operator's acceptance of lost journal records.
pub const LOSS_ACCEPTED_EVENT: &str = "journal-loss-accepted";

/// The (seq, hash) marks listed by `journal-loss-accepted` notes in `records`.
pub fn accepted_losses(records: &[crate::journal::Record]) -> Vec<(u64, String)> {
    records
        .iter()
        .filter(|r| r.event == LOSS_ACCEPTED_EVENT)
        .filter_map(|r| r.detail.get("marks")?.as_array().cloned())
        .flatten()
        .filter_map(|m| {
            Some((
                m.get("seq")?.as_u64()?,
                m.get("hash")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The operations each phase needs from its node, for capability checks.
pub fn needed_operations(phase: &str) -> &'static [Operation] {
    use Operation::*;
    match phase {
        "1" => &[Status, SetEid, GenerateRetainedKey],
        "2a" => &[
            Status,
            SetEid,
            SetMofN,
            RegisterPublicKeyHash,
            RegisterPublicKey,
            GenerateRetainedKey,
        ],
        "2b" | "3b" => &[CertifyPublicKey, RetainedPublicKey],
        "3a" => &[
            Status,
            SetEid,
            SetMofN,
            RegisterPublicKeyHash,
            RegisterPublicKey,
            GenerateRetainedKey,
        ],
        "3c" => &[Status, ShareStatus, ListRegistrations, ObtainShare],
        "3d" => &[Status, ShareStatus, InstallShare, SetMasterKey],
        _ => &[],
    }
}
