//! A ceremony in progress: its directory (locked while we work in it), its plan and its
//! journal. Every state-changing request to a node is bracketed by an `intent` and an
//! `outcome` record, written ahead (the intent is durable before the request leaves).

use std::path::{Path, PathBuf};

use log::{info, warn};
use mkclone_backend::{BackendError, Operation};
use serde_json::{Value, json};

use crate::dbs::Layout;
use crate::durable::DirLock;
use crate::failure::{CeremonyError, Result};
use crate::journal::{Journal, Kind};
use crate::plan::Plan;

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
        let journal = Journal::open(dir, &plan.id, plan.rehearsal)?;
        if let Some(bytes) = journal.torn_tail() {
            warn!(
                "the journal's last record was torn ({bytes} bytes): an earlier run stopped mid-write; it is dropped"
            );
        }
        let crash_after = std::env::var(CRASH_HOOK_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        Ok(Self {
            plan,
            layout: Layout::new(dir),
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
