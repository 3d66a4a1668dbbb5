//! A ceremony in progress: its directory (locked while we work in it), its plan and its
//! journal. Every state-changing request to a node is bracketed by an `intent` and an
//! `outcome` record, written ahead (the intent is durable before the request leaves).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use mkclone_backend::BackendError;
use serde_json::Value;

use crate::dbs::{self, Carried, JournalMark, Layout, SA_DB_FORMAT, SaDb};
use crate::durable::DirLock;
use crate::event::{Action, LostMark, Note, Outcome, RunStart, StepResult};
use crate::failure::{CeremonyError, Result, signal_name};
use crate::journal::{Journal, Kind};
use crate::marks::Chain;
use crate::phase::Phase;
use crate::plan::Plan;
use crate::trust::SaFingerprint;

/// Environment variable for crash-injection tests: abort the process right after the
/// n-th journal record this process appends. Its name is long on purpose.
pub const CRASH_HOOK_ENV: &str = "MKCLONE_TEST_ONLY_ABORT_AFTER_JOURNAL_RECORD";

/// Environment variable for interruption tests: `<n>` or `<n>:<milliseconds>`. Right after
/// the n-th journal record this process appends, print
/// "mkclone: test hook: paused after journal record <n> (pid <pid>)" on standard error and
/// sleep (10 s by default) or until the interrupt flag is raised, so that a test can send
/// a real signal, or SIGSTOP, at a known point. Its name is long on purpose.
pub const PAUSE_HOOK_ENV: &str = "MKCLONE_TEST_ONLY_PAUSE_AFTER_JOURNAL_RECORD";

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
    /// Journaled right before the first record this handle appends.
    run_start: Option<RunStart>,
    appended: u64,
    crash_after: Option<u64>,
    fail_after: Option<u64>,
    pause_after: Option<(u64, Duration)>,
    replace_current: bool,
    /// The SA key's pinned fingerprint: the plan's, `--sa-fingerprint`, or (in `clone`,
    /// and on the SA node) read from the SA node itself.
    sa_anchor: Option<SaFingerprint>,
    interrupt: Arc<AtomicUsize>,
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
        Self::open_locked(lock, plan)
    }

    /// Open the ceremony directory whose lock the caller already holds, for `plan`. A
    /// command takes the ceremony lock before it opens any node (whose locks come second),
    /// so that it never waits on a node for a ceremony it could not enter anyway.
    pub fn open_locked(lock: DirLock, plan: Plan) -> Result<Self> {
        let dir = lock.dir().to_path_buf();
        let dir = dir.as_path();
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
        let pause_after = std::env::var(PAUSE_HOOK_ENV).ok().and_then(|v| {
            let (n, ms) = v.split_once(':').unwrap_or((&v, "10000"));
            Some((n.parse().ok()?, Duration::from_millis(ms.parse().ok()?)))
        });
        Ok(Self {
            sa_anchor: plan.sa_fingerprint.clone(),
            plan,
            layout,
            journal,
            operator: None,
            run_start: None,
            appended: 0,
            crash_after,
            fail_after: None,
            pause_after,
            replace_current: false,
            interrupt: Arc::new(AtomicUsize::new(0)),
            _lock: lock,
        })
    }

    /// The flag a signal handler raises: it holds the signal's number (0: none). The
    /// ceremony installs no handler itself; it checks the flag at its safe points (before
    /// each intent, that is before a state-changing request leaves, and before each phase
    /// begins) and stops there with [`CeremonyError::Interrupted`] after journaling an
    /// `interrupted` note.
    pub fn set_interrupt_flag(&mut self, flag: Arc<AtomicUsize>) {
        self.interrupt = flag;
    }

    /// Stop here if a signal asked for it: journal it and return `Interrupted`.
    fn check_interrupt(&mut self, phase: Phase, node: &str, before: &str) -> Result<()> {
        let signal = self.interrupt.load(Ordering::SeqCst);
        if signal == 0 {
            return Ok(());
        }
        let signal = i32::try_from(signal).unwrap_or(i32::MAX);
        let place = if phase.role().is_some() {
            format!("phase {phase}")
        } else {
            phase.to_string()
        };
        let during = if node.is_empty() {
            format!("{place} (before {before})")
        } else {
            format!("{place} on {node} (before {before})")
        };
        info!(
            "interrupted by {}: stopping before {before}",
            signal_name(signal)
        );
        self.note(
            phase,
            node,
            Note::Interrupted {
                before: before.to_string(),
                during: during.clone(),
                signal: signal_name(signal).to_string(),
            },
        )?;
        Err(CeremonyError::Interrupted { signal, during })
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
    pub fn stamp<T: Carried>(&self, body: &mut T, phase: Phase, node: &str) -> Result<()> {
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
        let files = dbs::carried_files(&self.layout, &self.plan);
        let journal = self.journal.path().display().to_string();
        match self.chain().first_gap(&files, node, &journal) {
            Some(gap) => Err(CeremonyError::JournalGap(Box::new(gap))),
            None => Ok(()),
        }
    }

    fn chain(&self) -> Chain<'_> {
        Chain {
            records: self.journal.records(),
            head: self.journal.head(),
        }
    }

    /// `journal accept-loss`: record, as a note by the operator, that the marks of `node`
    /// which this journal lacks are lost for good; later phases then accept them, and the
    /// report says the chain is not verified end to end. Returns the marks recorded, or
    /// `None` when there was nothing to accept (no note written).
    pub fn accept_journal_loss(
        &mut self,
        node: &str,
    ) -> Result<Option<Vec<(String, JournalMark)>>> {
        let chain = self.chain();
        let accepted = chain.accepted_losses();
        let files = dbs::carried_files(&self.layout, &self.plan);
        let missing: Vec<(String, JournalMark)> = chain
            .missing(&files, |n| n == node)
            .into_iter()
            .filter(|(_, _, m)| !accepted.contains(&(m.seq, m.hash.clone())))
            .map(|(file, _, m)| (file.to_string(), m.clone()))
            .collect();
        // A journal without any record of `node` (deleted, cut, replaced) is accepted as a
        // loss too, even when no file names a mark of it (marks can be stripped).
        let records = self.journal.records();
        let no_record = !records.iter().any(|r| r.node == node);
        if missing.is_empty() && !no_record {
            return Ok(None);
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
        Ok(Some(missing))
    }

    /// Who runs this command, recorded on every record it appends; refused outside the
    /// safe character set of [`crate::operator`].
    pub fn set_operator(&mut self, operator: Option<String>) -> Result<()> {
        if let Some(name) = &operator {
            crate::operator::check(name)?;
        }
        self.operator = operator;
        Ok(())
    }

    /// Where and with what this command runs: journaled as a `run-start` note right
    /// before the first record it appends (a command that appends nothing leaves none).
    pub fn set_run_start(&mut self, run: RunStart) {
        self.run_start = Some(run);
    }

    /// Who runs this command, as given (recorded in every record it appends).
    pub fn operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    /// Append one note.
    pub fn note(&mut self, phase: Phase, node: &str, note: Note) -> Result<()> {
        // A safe point: the phase has not begun.
        if matches!(note, Note::PhaseStart {}) {
            self.check_interrupt(phase, node, "the phase starts")?;
        }
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
        if let Some(run) = self.run_start.take() {
            let (event, detail) = Note::RunStart(run).parts();
            self.append(phase, "", Kind::Note, &event, detail)?;
        }
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
        if let Some((after, longest)) = self.pause_after
            && after == self.appended
        {
            // Interruption tests only (see PAUSE_HOOK_ENV).
            eprintln!(
                "mkclone: test hook: paused after journal record {after} (pid {})",
                std::process::id()
            );
            let start = Instant::now();
            while start.elapsed() < longest && self.interrupt.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
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
        // A safe point: nothing of this step has begun.
        self.check_interrupt(phase, node, &event)?;
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
        Action::LoadRandomMasterKey { .. } => "load a random master key",
    }
}

#[cfg(test)]
mod tests {
    use mkclone_backend::CloneableKind;

    use super::*;

    fn plan() -> Plan {
        crate::plan::test_plan("interrupt-test", true)
    }

    fn events(c: &Ceremony) -> Vec<(Kind, String)> {
        c.journal()
            .records()
            .iter()
            .map(|r| (r.kind, r.event.clone()))
            .collect()
    }

    #[test]
    fn an_interrupt_stops_before_the_next_intent_and_is_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Ceremony::open(dir.path(), plan()).unwrap();
        c.ensure_nonce().unwrap();
        let flag = Arc::new(AtomicUsize::new(0));
        c.set_interrupt_flag(flag.clone());

        // A signal arriving while a request is out: the request's outcome is journaled,
        // the step completes.
        let sym = CloneableKind::Sym;
        let out = c
            .step(
                Phase::P3c,
                "source",
                Action::SetMasterKey { kind: sym },
                || {
                    flag.store(2, Ordering::SeqCst);
                    Ok(7)
                },
                |_| Done::default(),
            )
            .unwrap();
        assert_eq!(out, 7);
        // Notes and outcomes are still written: only new actions are refused.
        c.note(
            Phase::P3c,
            "source",
            Note::BundleWritten { file: "f".into() },
        )
        .unwrap();

        let mut sent = false;
        let err = c
            .step(
                Phase::P3c,
                "source",
                Action::ObtainShare {
                    index: 1,
                    kind: sym,
                    target: "target1".into(),
                },
                || {
                    sent = true;
                    Ok(())
                },
                |_| Done::default(),
            )
            .unwrap_err();
        assert!(!sent, "the request never left");
        match &err {
            CeremonyError::Interrupted { signal, during } => {
                assert_eq!(*signal, 2);
                assert_eq!(during, "phase 3c on source (before obtain-share)");
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            err.to_string(),
            "interrupted by SIGINT during phase 3c on source (before obtain-share); nothing is \
             half-done: run the same command to resume"
        );
        assert_eq!(
            events(&c),
            [
                (Kind::Intent, "set-master-key".to_string()),
                (Kind::Outcome, "set-master-key".to_string()),
                (Kind::Note, "bundle-written".to_string()),
                (Kind::Note, "interrupted".to_string()),
            ]
        );
        let note = c.journal().records().last().unwrap().note();
        assert!(
            matches!(&note, Some(Note::Interrupted { signal, before, .. })
                if signal == "SIGINT" && before == "obtain-share"),
            "{note:?}"
        );
    }

    #[test]
    fn an_interrupt_stops_before_a_phase_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Ceremony::open(dir.path(), plan()).unwrap();
        c.ensure_nonce().unwrap();
        c.note(Phase::P2a, "source", Note::PhaseStart {}).unwrap();
        c.set_interrupt_flag(Arc::new(AtomicUsize::new(15)));
        let err = c.note(Phase::P2b, "sa", Note::PhaseStart {}).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "interrupted by SIGTERM during phase 2b on sa (before the phase starts)"
            ),
            "{err}"
        );
        let last = c.journal().records().last().unwrap();
        assert_eq!(
            (last.kind, last.event.as_str()),
            (Kind::Note, "interrupted")
        );
        assert_eq!(last.phase, "2b");
        assert_eq!(
            c.journal()
                .records()
                .iter()
                .filter(|r| r.note() == Some(Note::PhaseStart {}))
                .count(),
            1,
            "phase 2b never started"
        );
    }
}
