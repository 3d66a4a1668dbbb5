//! A ceremony in progress: its directory (locked while we work in it), its plan and its
//! journal. Every state-changing request to a node is bracketed by an `intent` and an
//! `outcome` record, written ahead (the intent is durable before the request leaves).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use mkclone_backend::{BackendError, Operation};
use serde_json::{Value, json};

use crate::dbs::Layout;
use crate::durable::DirLock;
use crate::failure::{CeremonyError, Result, signal_name};
use crate::journal::{Journal, Kind};
use crate::plan::Plan;

/// Environment variable for crash-injection tests: abort the process right after the
/// n-th journal record this process appends. Its name is long on purpose.
pub const CRASH_HOOK_ENV: &str = "MKCLONE_TEST_ONLY_ABORT_AFTER_JOURNAL_RECORD";

/// Environment variable for interruption tests: `<n>` or `<n>:<milliseconds>`. Right after
/// the n-th journal record this process appends, print
/// "mkclone: test hook: paused after journal record <n> (pid <pid>)" on standard error and
/// sleep (10 s by default) or until the interrupt flag is raised, so that a test can send
/// a real signal, or SIGSTOP, at a known point. Its name is long on purpose.
pub const PAUSE_HOOK_ENV: &str = "MKCLONE_TEST_ONLY_PAUSE_AFTER_JOURNAL_RECORD";

/// The journal event that starts a phase: an interruption is honoured before it.
const PHASE_START: &str = "phase-start";

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
    pause_after: Option<(u64, Duration)>,
    replace_current: bool,
    interrupt: Arc<AtomicUsize>,
    _lock: DirLock,
}

impl Ceremony {
    /// Open (creating if needed) the ceremony directory `dir` for `plan`, lock it, and
    /// open its journal.
    pub fn open(dir: &Path, plan: Plan) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| {
            CeremonyError::File(crate::error::FileError::Io {
                path: dir.into(),
                action: "create the ceremony directory",
                source,
            })
        })?;
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
        let journal = Journal::open(dir, &plan.id, plan.rehearsal)?;
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
            plan,
            layout: Layout::new(dir),
            journal,
            operator: None,
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
    fn check_interrupt(&mut self, phase: &str, node: &str, before: &str) -> Result<()> {
        let signal = self.interrupt.load(Ordering::SeqCst);
        if signal == 0 {
            return Ok(());
        }
        let signal = i32::try_from(signal).unwrap_or(i32::MAX);
        let place = if phase.starts_with(|c: char| c.is_ascii_digit()) {
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
        self.record(
            phase,
            node,
            Kind::Note,
            "interrupted",
            json!({"signal": signal_name(signal), "during": during, "before": before}),
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
        if kind == Kind::Note && event == PHASE_START {
            self.check_interrupt(phase, node, "the phase starts")?;
        }
        self.journal
            .append(phase, node, kind, self.operator.as_deref(), event, detail)?;
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
        // A safe point: nothing of this step has begun.
        self.check_interrupt(phase, node, event)?;
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

#[cfg(test)]
mod tests {
    use mkclone_backend::{CloneableKind, Eid, MofN, RsaModulusBits};

    use super::*;
    use crate::plan::PlanSpec;

    fn plan() -> Plan {
        let m_of_n = MofN::new(2, 3).unwrap();
        let eid = |s: &str| Eid::new(s).unwrap();
        Plan::new(PlanSpec {
            id: "interrupt-test".into(),
            sa: ("sa".into(), eid("SA")),
            source: ("source".into(), eid("SOURCE")),
            targets: vec![("target1".into(), eid("TARGET1"))],
            kinds: vec![CloneableKind::Sym],
            m_of_n,
            bits: RsaModulusBits::B2048,
            rehearsal: true,
            share_indices: crate::plan::share_indices(&[1, 2], m_of_n).unwrap(),
            dual_control: false,
            pinned_serials: Default::default(),
        })
        .unwrap()
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
        let flag = Arc::new(AtomicUsize::new(0));
        c.set_interrupt_flag(flag.clone());

        // A signal arriving while a request is out: the request's outcome is journaled,
        // the step completes.
        let out = c
            .step(
                "3c",
                "source",
                "first",
                json!({}),
                || {
                    flag.store(2, Ordering::SeqCst);
                    Ok(7)
                },
                |_| json!({}),
            )
            .unwrap();
        assert_eq!(out, 7);
        // Notes and outcomes are still written: only new actions are refused.
        c.record("3c", "source", Kind::Note, "share-written", json!({}))
            .unwrap();

        let mut sent = false;
        let err = c
            .step(
                "3c",
                "source",
                "obtain-share",
                json!({}),
                || {
                    sent = true;
                    Ok(())
                },
                |_| json!({}),
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
                (Kind::Intent, "first".to_string()),
                (Kind::Outcome, "first".to_string()),
                (Kind::Note, "share-written".to_string()),
                (Kind::Note, "interrupted".to_string()),
            ]
        );
        let note = c.journal().records().last().unwrap();
        assert_eq!(note.detail["signal"], "SIGINT");
        assert_eq!(note.detail["before"], "obtain-share");
    }

    #[test]
    fn an_interrupt_stops_before_a_phase_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Ceremony::open(dir.path(), plan()).unwrap();
        c.record("2a", "source", Kind::Note, PHASE_START, json!({}))
            .unwrap();
        c.set_interrupt_flag(Arc::new(AtomicUsize::new(15)));
        let err = c
            .record("2b", "sa", Kind::Note, PHASE_START, json!({}))
            .unwrap_err();
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
                .filter(|r| r.event == PHASE_START)
                .count(),
            1,
            "phase 2b never started"
        );
    }
}
