//! A ceremony in progress: its directory (locked while we work in it), its plan and its
//! journal. Every state-changing request to a node is bracketed by an `intent` and an
//! `outcome` record, written ahead (the intent is durable before the request leaves).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
use crate::phase_action::{Carry, PhaseAction};
use crate::plan::Plan;
use crate::progress::{Observer, Progress};
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
    /// What happened, in order (each shown as one line through `Display`).
    pub actions: Vec<PhaseAction>,
    /// Files to carry to other nodes.
    pub carry: Vec<Carry>,
    /// Where each action goes as it happens (`clone`'s console), besides `actions`.
    #[serde(skip)]
    observer: Option<Observer>,
}

impl PhaseReport {
    pub fn new(phase: Phase, node: &str) -> Self {
        Self {
            phase,
            node: node.into(),
            actions: Vec::new(),
            carry: Vec::new(),
            observer: None,
        }
    }
    /// A report whose actions are also shown, as they happen, to `observer`.
    pub(crate) fn observed(phase: Phase, node: &str, observer: Option<Observer>) -> Self {
        Self {
            observer,
            ..Self::new(phase, node)
        }
    }
    pub fn did(&mut self, action: PhaseAction) {
        self.show(|phase, node, target| Progress::Action {
            phase,
            node,
            target,
            action: &action,
        });
        self.actions.push(action);
    }
    /// A file to carry to a node, and why.
    pub fn carry(&mut self, file: PathBuf, to: &str, why: &str) {
        let carry = Carry {
            file,
            to: to.into(),
            why: why.into(),
        };
        self.show(|phase, node, target| Progress::Carry {
            phase,
            node,
            target,
            carry: &carry,
        });
        self.carry.push(carry);
    }
    /// Show an event of this phase to the observer, when there is one, as it happens.
    fn show<'a>(&'a self, event: impl FnOnce(Phase, &'a str, Option<&'a str>) -> Progress<'a>) {
        if let Some(o) = &self.observer {
            o.emit(&event(self.phase, &self.node, o.target()));
        }
    }
}

/// An open ceremony directory: a handle on it. `clone` gives each of its worker threads a
/// handle of its own ([`Ceremony::worker`]); every handle of one directory shares the
/// directory lock and one journal writer, so records are appended whole, one at a time,
/// each synced before the next, whatever thread writes it.
pub struct Ceremony {
    pub plan: Plan,
    pub layout: Layout,
    shared: Arc<Shared>,
    operator: Option<String>,
    replace_current: bool,
    interrupt: Arc<AtomicUsize>,
    /// Where phases show their actions as they happen, if anywhere.
    observer: Option<Observer>,
    /// Phase 3c writes each bundle on a second thread while the source obtains the next
    /// share (`clone` with more than one job); else one action at a time.
    write_behind: bool,
}

/// What every handle of one open ceremony directory shares.
struct Shared {
    writer: Mutex<Writer>,
    /// The SA key's pinned fingerprint: the plan's, `--sa-fingerprint`, or (in `clone`,
    /// and on the SA node) read from the SA node itself. One for every handle: phase 1 on
    /// one thread pins the key the phases on the others check.
    sa_anchor: Mutex<Option<SaFingerprint>>,
    /// The ceremony files' provenance, for the journal marks checked at each phase start.
    provenance: dbs::ProvenanceCache,
    _lock: DirLock,
}

/// The journal's one writer, and the test hooks that count its records.
struct Writer {
    journal: Journal,
    /// Journaled right before the first record appended through this open directory.
    run_start: Option<RunStart>,
    /// Records appended through this open directory (every handle, every thread).
    appended: u64,
    crash_after: Option<u64>,
    fail_after: Option<u64>,
    /// An injected crash happened: nothing more is appended, as after a real one.
    crashed: Option<u64>,
    pause_after: Option<(u64, Duration)>,
}

/// The journal, borrowed from the writer: no other record is appended while it is held.
pub struct JournalGuard<'a>(MutexGuard<'a, Writer>);

impl std::ops::Deref for JournalGuard<'_> {
    type Target = Journal;
    fn deref(&self) -> &Journal {
        &self.0.journal
    }
}

impl Ceremony {
    /// Open (creating if needed, mode 0700) the ceremony directory `dir` for `plan`, check
    /// it and its `shares/` ([`durable::check_private_dir`](crate::durable::check_private_dir)),
    /// lock it, and open its journal ([`open_locked`](Self::open_locked)).
    pub fn open(dir: &Path, plan: Plan) -> Result<Self> {
        crate::durable::create_private_dir(dir)?;
        Layout::new(dir).check_dirs()?;
        // Never wait silently: name the other holder and let the user decide.
        let lock = DirLock::try_acquire(dir)?;
        Self::open_locked(lock, plan)
    }

    /// Open the ceremony directory whose lock the caller already holds, for `plan`. A
    /// command takes the ceremony lock before it opens any node (whose locks come second),
    /// so that it never waits on a node for a ceremony it could not enter anyway. Once the
    /// journal is found to be this ceremony's, the temporary files that killed writers left
    /// beside the ceremony's files are removed (`Layout::remove_stale_temps`).
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
        // Only now, in a directory whose journal is this ceremony's, and under its lock,
        // which every writer of its files holds (the writers' pids are checked all the same).
        layout.remove_stale_temps(&plan);
        if let Some(bytes) = journal.torn_tail() {
            warn!(
                "the journal's last record was torn ({bytes} bytes): an earlier run stopped mid-write; it is dropped"
            );
        }
        let anchor = plan.sa_fingerprint.clone();
        let crash_after = std::env::var(CRASH_HOOK_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        let pause_after = std::env::var(PAUSE_HOOK_ENV).ok().and_then(|v| {
            let (n, ms) = v.split_once(':').unwrap_or((&v, "10000"));
            Some((n.parse().ok()?, Duration::from_millis(ms.parse().ok()?)))
        });
        Ok(Self {
            plan,
            layout,
            shared: Arc::new(Shared {
                writer: Mutex::new(Writer {
                    journal,
                    run_start: None,
                    appended: 0,
                    crash_after,
                    fail_after: None,
                    crashed: None,
                    pause_after,
                }),
                sa_anchor: Mutex::new(anchor),
                provenance: dbs::ProvenanceCache::default(),
                _lock: lock,
            }),
            operator: None,
            replace_current: false,
            interrupt: Arc::new(AtomicUsize::new(0)),
            observer: None,
            write_behind: false,
        })
    }

    /// Another handle on this open directory, for a worker thread: the same lock, journal
    /// writer, interrupt flag and observer; the same operator, anchor and options.
    pub fn worker(&self) -> Ceremony {
        Ceremony {
            plan: self.plan.clone(),
            layout: self.layout.clone(),
            shared: self.shared.clone(),
            operator: self.operator.clone(),
            replace_current: self.replace_current,
            interrupt: self.interrupt.clone(),
            observer: self.observer.clone(),
            write_behind: self.write_behind,
        }
    }

    /// Let phase 3c write its bundles on a second thread while the source obtains the next
    /// share (`clone` with more than one job). Off by default: one action at a time.
    pub(crate) fn set_write_behind(&mut self, yes: bool) {
        self.write_behind = yes;
    }

    pub(crate) fn write_behind(&self) -> bool {
        self.write_behind
    }

    /// Show every action of the phases this handle runs, as it happens, to `observer`.
    pub fn set_observer(&mut self, observer: Option<Observer>) {
        self.observer = observer;
    }

    pub(crate) fn observer(&self) -> Option<&Observer> {
        self.observer.as_ref()
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A thread that panicked while appending left the journal as a crash would: the
        // next append removes whatever a failed write left.
        self.shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        Err(self.stop_interrupted(phase, node, before, signal))
    }

    /// Journal the `interrupted` note of `signal`, stopping before `before`: the error
    /// `Interrupted` (or the journal's, if the note cannot be written).
    fn stop_interrupted(
        &mut self,
        phase: Phase,
        node: &str,
        before: &str,
        signal: i32,
    ) -> CeremonyError {
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
        let noted = self.note(
            phase,
            node,
            Note::Interrupted {
                before: before.to_string(),
                during: during.clone(),
                signal: signal_name(signal).to_string(),
            },
        );
        match noted {
            Ok(_) => CeremonyError::Interrupted { signal, during },
            Err(e) => e,
        }
    }

    /// Tests: stop with [`CeremonyError::InjectedCrash`] right after the n-th journal
    /// record this handle appends, as if the process had died there (all state is in the
    /// files and the nodes, so dropping everything and starting again is a restart).
    /// In `clone`'s parallel mode the other threads stop too: no record is appended after
    /// that one, by any handle.
    pub fn inject_crash_after(&mut self, records: u64) {
        let mut w = self.writer();
        w.fail_after = Some(w.appended + records);
    }

    /// Journal records appended through this open directory (by every handle).
    pub fn records_appended(&self) -> u64 {
        self.writer().appended
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
        let mut anchor = self.anchor();
        match &*anchor {
            Some(pinned) if *pinned != fingerprint => Err(CeremonyError::SaKeyNotPinned {
                pinned: pinned.grouped(),
                found: fingerprint.grouped(),
            }),
            _ => {
                *anchor = Some(fingerprint);
                Ok(())
            }
        }
    }

    fn anchor(&self) -> MutexGuard<'_, Option<SaFingerprint>> {
        self.shared
            .sa_anchor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The SA key's pinned fingerprint, if any.
    pub fn sa_anchor(&self) -> Option<SaFingerprint> {
        self.anchor().clone()
    }

    /// The ceremony nonce (from the journal or sa.db), if this directory has one yet.
    pub fn nonce(&self) -> Option<String> {
        self.journal().nonce().map(str::to_owned)
    }

    /// Phase 1 on a fresh directory: draw the ceremony nonce (16 random bytes).
    pub fn ensure_nonce(&mut self) -> Result<String> {
        let mut w = self.writer();
        if let Some(n) = w.journal.nonce() {
            return Ok(n.to_string());
        }
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        w.journal.set_nonce(&nonce)?;
        Ok(nonce)
    }

    /// Stamp a file about to be written by a phase on `node`: the ceremony nonce, and
    /// where this server's journal stands for that phase: its last record of `phase` on
    /// `node`, written before the file. (In `clone`'s parallel mode the journal's very
    /// last record may be another thread's, of another phase; the mark names a record of
    /// the phase that writes the file, which is what [`Chain::holds`] checks.)
    pub fn stamp<T: Carried>(&self, body: &mut T, phase: Phase, node: &str) -> Result<()> {
        let journal = self.journal();
        let nonce = journal.nonce().ok_or_else(|| CeremonyError::Conflict {
            what: "the ceremony nonce".into(),
            detail: "unknown: carry sa.db here first".into(),
        })?;
        let records = journal.records();
        let chain = Chain {
            records,
            head: journal.head(),
        };
        let seq = records
            .iter()
            .rposition(|r| r.phase == phase.name() && r.node == node)
            .map_or(records.len(), |i| i + 1) as u64;
        let hash = chain
            .hash_of(seq)
            .map_or_else(|| journal.head_hash(), str::to_owned);
        let p = body.provenance_mut();
        p.nonce = nonce.to_string();
        p.written.insert(
            node.to_string(),
            JournalMark {
                phase: phase.to_string(),
                seq,
                hash,
                journal: chain.first_hash().map(str::to_owned),
            },
        );
        Ok(())
    }

    /// Before a phase on `node` writes anything: every ceremony file here that a phase on
    /// `node` wrote names a journal record this journal must still hold (unless its loss
    /// was recorded with `journal accept-loss`).
    pub fn check_journal_marks(&self, node: &str) -> Result<()> {
        // Only the files a phase on `node` writes can carry its marks.
        let files = self
            .shared
            .provenance
            .written_by(&self.layout, &self.plan, node)?;
        let journal = self.journal();
        let path = journal.path().display().to_string();
        match chain(&journal).first_gap(&files, node, &path) {
            Some(gap) => Err(CeremonyError::JournalGap(Box::new(gap))),
            None => Ok(()),
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
        let files = dbs::carried_files(&self.layout, &self.plan);
        let journal = self.journal();
        let chain = chain(&journal);
        let accepted = chain.accepted_losses();
        let missing: Vec<(String, JournalMark)> = chain
            .missing(&files, |n| n == node)
            .into_iter()
            .filter(|(_, _, m)| !accepted.contains(&(m.seq, m.hash.clone())))
            .map(|(file, _, m)| (file.to_string(), m.clone()))
            .collect();
        // A journal without any record of `node` (deleted, cut, replaced) is accepted as a
        // loss too, even when no file names a mark of it (marks can be stripped).
        let no_record = !journal.records().iter().any(|r| r.node == node);
        let records_now = journal.records().len() as u64;
        drop(journal);
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
        self.writer().run_start = Some(run);
    }

    /// Who runs this command, as given (recorded in every record it appends).
    pub fn operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    /// The journal, read under the writer's lock (hold it briefly: no thread appends
    /// meanwhile).
    pub fn journal(&self) -> JournalGuard<'_> {
        JournalGuard(self.writer())
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

    /// Append one record; returns its seq. One writer at a time: the record is whole and
    /// synced before any other thread appends. The run-start note, when one waits, goes
    /// first.
    fn append(
        &mut self,
        phase: Phase,
        node: &str,
        kind: Kind,
        event: &str,
        detail: Value,
    ) -> Result<u64> {
        let mut w = self.writer();
        if let Some(run) = w.run_start.take() {
            let (event, detail) = Note::RunStart(run).parts();
            self.append_locked(&mut w, phase, "", Kind::Note, &event, detail)?;
        }
        self.append_locked(&mut w, phase, node, kind, event, detail)
    }

    /// Append one record through the held writer, and run the test hooks that count it.
    fn append_locked(
        &self,
        w: &mut Writer,
        phase: Phase,
        node: &str,
        kind: Kind,
        event: &str,
        detail: Value,
    ) -> Result<u64> {
        if let Some(after) = w.crashed {
            // Tests: the "process" died at that record; no thread writes after it.
            return Err(CeremonyError::InjectedCrash { after });
        }
        let at = w.journal.append(
            phase.name(),
            node,
            kind,
            self.operator.as_deref(),
            event,
            detail,
        )?;
        w.appended += 1;
        let appended = w.appended;
        if w.crash_after == Some(appended) {
            // Crash-injection tests only (see CRASH_HOOK_ENV).
            std::process::abort();
        }
        if let Some((after, longest)) = w.pause_after
            && after == appended
        {
            // Interruption tests only (see PAUSE_HOOK_ENV). The writer stays held: no
            // other thread appends while the process waits here.
            eprintln!(
                "mkclone: test hook: paused after journal record {after} (pid {})",
                std::process::id()
            );
            let start = Instant::now();
            while start.elapsed() < longest && self.interrupt.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if w.fail_after == Some(appended) {
            w.crashed = Some(appended);
            return Err(CeremonyError::InjectedCrash { after: appended });
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
                // A signal cancelled the request before it left (the SO PIN prompt): the
                // same stop as at the safe point before the intent, journaled after the
                // failed outcome that says nothing was sent.
                if let Some(signal) = e.interrupted_by() {
                    return Err(self.stop_interrupted(phase, node, &event, signal));
                }
                Err(CeremonyError::Backend {
                    node: node.into(),
                    step: action_name(&action),
                    source: Box::new(e),
                })
            }
        }
    }
}

/// The chain of a journal, for its marks.
fn chain(journal: &Journal) -> Chain<'_> {
    Chain {
        records: journal.records(),
        head: journal.head(),
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
        assert_sigint_stop(&err, "phase 3c on source (before obtain-share)");
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
        let journal = c.journal();
        let last = journal.records().last().unwrap();
        assert_eq!(
            (last.kind, last.event.as_str()),
            (Kind::Note, "interrupted")
        );
        assert_eq!(last.phase, "2b");
        assert_eq!(
            journal
                .records()
                .iter()
                .filter(|r| r.note() == Some(Note::PhaseStart {}))
                .count(),
            1,
            "phase 2b never started"
        );
    }

    /// `err` is the interrupted stop of a SIGINT, `during` what it says.
    #[track_caller]
    fn assert_sigint_stop(err: &CeremonyError, during: &str) {
        match err {
            CeremonyError::Interrupted { signal, during: d } => {
                assert_eq!(*signal, 2);
                assert_eq!(d, during);
            }
            other => panic!("{other}"),
        }
    }

    /// A request that a signal cancelled before it left (the SO PIN prompt, at Ctrl-C):
    /// the stop is the interrupted one, journaled after an outcome saying nothing was sent,
    /// not a node failure.
    #[test]
    fn a_request_a_signal_cancelled_before_it_left_is_an_interrupted_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Ceremony::open(dir.path(), plan()).unwrap();
        c.ensure_nonce().unwrap();
        // The flag the ceremony's handler raised along with the prompt's cancellation.
        c.set_interrupt_flag(Arc::new(AtomicUsize::new(0)));
        let err = c
            .step(
                Phase::P3c,
                "source",
                Action::ObtainShare {
                    index: 1,
                    kind: CloneableKind::Sym,
                    target: "target1".into(),
                },
                || -> std::result::Result<(), BackendError> {
                    Err(BackendError::Interrupted {
                        operation: mkclone_backend::Operation::ObtainShare,
                        signal: 2,
                    })
                },
                |_| Done::default(),
            )
            .unwrap_err();
        assert_sigint_stop(&err, "phase 3c on source (before obtain-share)");
        assert!(
            err.to_string().ends_with("run the same command to resume"),
            "{err}"
        );
        assert_eq!(
            events(&c),
            [
                (Kind::Intent, "obtain-share".to_string()),
                (Kind::Outcome, "obtain-share".to_string()),
                (Kind::Note, "interrupted".to_string()),
            ]
        );
        let journal = c.journal();
        let records = journal.records();
        let outcome: Outcome = serde_json::from_value(records[1].detail.clone()).unwrap();
        match outcome.result {
            StepResult::Failed { error } => assert!(
                error.contains("SIGINT cancelled it before anything was sent to the node"),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(records[2].note(), Some(Note::Interrupted { signal, before, .. })
                if signal == "SIGINT" && before == "obtain-share"),
        );
    }
}
