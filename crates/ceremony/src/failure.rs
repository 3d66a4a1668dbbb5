//! Why a ceremony step stopped, and what to do.

use std::fmt;
use std::path::PathBuf;

use mkclone_backend::{BackendError, CloneableKind, DomainError, VerificationPattern};
use thiserror::Error;

use crate::error::FileError;

/// One problem found by a preflight or a dry run: `what` says it in words; `kind` names
/// it for a script (the `kind` of the `mkclone-error` document where the problem is a
/// typed error, else the problem's family: docs/JSON.md lists them), with the file,
/// master key, register or share it is about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub node: String,
    pub kind: &'static str,
    pub what: String,
    /// The file it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The master key it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<CloneableKind>,
    /// The master-key register it is about: "current" or "new".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<&'static str>,
    /// The share it is about (with `master_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_index: Option<u8>,
    /// The operation a backend or a role lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

impl Problem {
    pub fn new(node: impl Into<String>, kind: &'static str, what: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            kind,
            what: what.into(),
            file: None,
            master_key: None,
            register: None,
            share_index: None,
            operation: None,
        }
    }
    /// The problem a typed error is: its kind and the file it names.
    pub fn error(node: impl Into<String>, e: &CeremonyError) -> Self {
        let file = e.file().map(|f| f.display().to_string());
        Self {
            file,
            ..Self::new(node, e.kind(), e.to_string())
        }
    }
    /// The problem a file error is.
    pub fn file_error(node: impl Into<String>, e: &FileError) -> Self {
        let file = e.path().map(|f| f.display().to_string());
        Self {
            file,
            ..Self::new(node, file_error_kind(e), e.to_string())
        }
    }
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
    pub fn with_master_key(mut self, kind: CloneableKind) -> Self {
        self.master_key = Some(kind);
        self
    }
    pub fn with_register(mut self, register: &'static str) -> Self {
        self.register = Some(register);
        self
    }
    pub fn with_share(mut self, kind: CloneableKind, index: u8) -> Self {
        self.master_key = Some(kind);
        self.share_index = Some(index);
        self
    }
    pub fn with_operation(mut self, operation: impl fmt::Display) -> Self {
        self.operation = Some(operation.to_string());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.node, self.what)
    }
}

/// Every problem of a preflight, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum CeremonyError {
    #[error(transparent)]
    File(#[from] FileError),

    #[error("{node}: {step}: {source}")]
    Backend {
        node: String,
        step: &'static str,
        #[source]
        source: Box<BackendError>,
    },

    #[error(transparent)]
    Domain(#[from] DomainError),

    #[error("{what} is malformed: {detail}")]
    Format { what: String, detail: String },

    #[error("the preflight found {} problem(s) and changed nothing:\n{problems}", problems.0.len())]
    Preflight { problems: Problems },

    #[error(
        "{target}: SET refused for the {kind} master key: the NEW register holds {new}, \
         the source's CURRENT is {source_pattern}. Clear NEW on the target (abort) and install the shares again"
    )]
    PatternMismatch {
        target: String,
        kind: CloneableKind,
        new: VerificationPattern,
        source_pattern: VerificationPattern,
    },

    #[error("{path} is missing: it is made by {made_by}. {hint}")]
    MissingFile {
        path: PathBuf,
        made_by: String,
        hint: String,
    },

    #[error("{what}: {detail}")]
    Conflict { what: String, detail: String },

    #[error(
        "{node}: the {what} is {actual:?}, the plan pins {expected:?}. Nothing was written. \
         Check that this is the right node, or correct the plan"
    )]
    IdentityMismatch {
        node: String,
        what: &'static str,
        expected: String,
        actual: String,
    },

    #[error(
        "{target}: SET refused for the {kind} master key: CURRENT holds another valid key ({current}), \
         which SET would move to OLD, destroying the OLD key now there. Every key enciphered under \
         the current master key must be re-enciphered under the new one. Rerun with --replace-current \
         if that is intended"
    )]
    WouldReplaceCurrent {
        target: String,
        kind: CloneableKind,
        current: Box<VerificationPattern>,
    },

    #[error("{0}")]
    DualControl(String),

    /// A signal (SIGINT, SIGTERM: `signal` is its number) asked the process to stop, and it
    /// stopped at a safe point (before a request left, or before a phase began) after
    /// journaling an `interrupted` note. Every step before is complete, none after began.
    #[error(
        "interrupted by {} during {during}; nothing is half-done: run the same command to resume",
        signal_name(*.signal)
    )]
    Interrupted {
        signal: i32,
        /// Where: "phase 3c on source (before obtain-share)".
        during: String,
    },

    /// Tests only: the crash injected by `Ceremony::inject_crash_after`.
    #[error("injected crash after journal record {after}")]
    InjectedCrash { after: u64 },

    #[error("node {node} cannot be used: {message}")]
    NodeUnavailable { node: String, message: String },

    #[error("node {node:?} is not part of this ceremony's plan ({role})")]
    NotInPlan { node: String, role: &'static str },

    /// A carried file says something the plan or its anchors do not vouch for.
    #[error("{file} is refused: {detail}")]
    UntrustedFile { file: String, detail: String },

    #[error(
        "the SA key in sa.db is not the pinned one: the plan or --sa-fingerprint pins {pinned}, sa.db holds {found}. \
         sa.db was swapped or comes from another ceremony; nothing was changed on any node. Get sa.db again from \
         the SA node, and check the pinned fingerprint with the SA operator"
    )]
    SaKeyNotPinned { pinned: String, found: String },

    #[error(
        "{command} relies on the SA key, and no SA fingerprint is pinned: add the line phase 1 printed on the SA \
         node (sa_fingerprint = \"…\") to the [ceremony] table of the configuration, or give it with \
         --sa-fingerprint. Take it from the SA operator, never from the carried sa.db{shown}"
    )]
    SaAnchorMissing { command: String, shown: String },

    #[error(transparent)]
    JournalGap(Box<JournalGap>),

    #[error(transparent)]
    InvalidOperator(#[from] crate::operator::InvalidOperator),

    /// Journals given to the report together do not make one record.
    #[error("{journal}{}: {detail}", record.map(|r| format!(", record {r}")).unwrap_or_default())]
    JournalMerge {
        journal: String,
        record: Option<u64>,
        detail: String,
    },

    #[error(
        "{node} already holds this ceremony's key {key}, but {journal} has no record of any phase on {node}: \
         the journal was deleted, cut before its first record or replaced. Nothing was changed. Restore this \
         ceremony's journal from its copy and run again. If it is lost for good, record the loss with \
         `mkclone journal accept-loss --config FILE --node {node} --operator NAME`"
    )]
    JournalLacksNode {
        node: String,
        key: String,
        journal: String,
    },

    #[error(
        "{journal} belongs to another run of ceremony {id}: its nonce is {journal_nonce}, sa.db's is {file_nonce}. \
         Nothing was changed. Move that journal aside and restore this ceremony's own; if it is lost for good, \
         start an empty journal and record the loss with `mkclone journal accept-loss`"
    )]
    ForeignJournal {
        journal: String,
        id: String,
        journal_nonce: String,
        file_nonce: String,
    },
}

/// A file names a journal record this server's journal lacks.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file} says this server's journal held record {seq} (hash {hash}) when phase {phase} on {node} wrote it, \
     but {journal} {found}: the journal was deleted, truncated or replaced. Restore this ceremony's journal \
     from its copy and run again. If it is lost for good, record the loss with `mkclone journal accept-loss \
     --config FILE --node {node} --operator NAME` (journaled; the report then says the chain is not verified end to end)"
)]
pub struct JournalGap {
    pub file: String,
    pub phase: String,
    pub node: String,
    pub seq: u64,
    pub hash: String,
    pub journal: String,
    pub found: String,
}

fn file_error_kind(e: &FileError) -> &'static str {
    match e {
        FileError::Locked { .. } => "locked",
        _ => "file",
    }
}

impl CeremonyError {
    /// The stable name of this error: the `kind` of its `mkclone-error` document and of
    /// the problem it makes (docs/JSON.md).
    pub fn kind(&self) -> &'static str {
        match self {
            CeremonyError::File(e) => file_error_kind(e),
            CeremonyError::Backend { .. } => "node",
            CeremonyError::Domain(_) => "domain",
            CeremonyError::Format { .. } => "malformed",
            CeremonyError::Preflight { .. } => "preflight",
            CeremonyError::PatternMismatch { .. } => "pattern-mismatch",
            CeremonyError::MissingFile { .. } => "missing-file",
            CeremonyError::Conflict { .. } => "conflict",
            CeremonyError::IdentityMismatch { .. } => "identity-mismatch",
            CeremonyError::WouldReplaceCurrent { .. } => "would-replace-current",
            CeremonyError::DualControl(_) => "dual-control",
            CeremonyError::Interrupted { .. } => "interrupted",
            CeremonyError::InjectedCrash { .. } => "injected-crash",
            CeremonyError::NodeUnavailable { .. } => "node-unavailable",
            CeremonyError::NotInPlan { .. } => "not-in-plan",
            CeremonyError::UntrustedFile { .. } => "untrusted-file",
            CeremonyError::SaKeyNotPinned { .. } => "sa-key-not-pinned",
            CeremonyError::SaAnchorMissing { .. } => "sa-anchor-missing",
            CeremonyError::JournalGap(_) => "journal-gap",
            CeremonyError::InvalidOperator(_) => "usage",
            CeremonyError::JournalMerge { .. } => "journal-merge",
            CeremonyError::JournalLacksNode { .. } => "journal-lacks-node",
            CeremonyError::ForeignJournal { .. } => "foreign-journal",
        }
    }

    /// The file this error is about, where it names one.
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            CeremonyError::File(e) => e.path().map(Into::into),
            CeremonyError::MissingFile { path, .. } => Some(path.clone()),
            CeremonyError::UntrustedFile { file, .. } => Some(file.into()),
            CeremonyError::JournalGap(g) => Some(g.file.as_str().into()),
            CeremonyError::JournalMerge { journal, .. }
            | CeremonyError::JournalLacksNode { journal, .. }
            | CeremonyError::ForeignJournal { journal, .. } => Some(journal.into()),
            _ => None,
        }
    }

    pub fn backend<'a>(
        node: &'a str,
        step: &'static str,
    ) -> impl FnOnce(BackendError) -> CeremonyError + 'a {
        move |source| CeremonyError::Backend {
            node: node.to_string(),
            step,
            source: Box::new(source),
        }
    }
}

/// "SIGINT", "SIGTERM", "SIGHUP", or "signal N".
pub(crate) fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

pub type Result<T, E = CeremonyError> = std::result::Result<T, E>;
