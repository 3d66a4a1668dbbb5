//! Failures with their exit codes, and the tables commands print.

use mkclone_backend::{CloneableKind, NodeStatus};
use mkclone_ceremony::{CeremonyError, FileError};

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }
}

impl From<mkclone::config::ConfigError> for Failure {
    fn from(e: mkclone::config::ConfigError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<CeremonyError> for Failure {
    fn from(e: CeremonyError) -> Self {
        let code = match &e {
            CeremonyError::Preflight { .. } | CeremonyError::IdentityMismatch { .. } => 4,
            // 128 + the signal, as a shell reports a process the signal ended: 130, 143.
            CeremonyError::Interrupted { signal, .. } => {
                u8::try_from(128 + i64::from(*signal)).unwrap_or(1)
            }
            CeremonyError::InvalidOperator(_) => 2,
            // Another process holds the ceremony: nothing is wrong with the files.
            CeremonyError::File(FileError::Locked { .. }) => 1,
            CeremonyError::File(_)
            | CeremonyError::MissingFile { .. }
            | CeremonyError::NotInPlan { .. }
            | CeremonyError::Format { .. }
            | CeremonyError::UntrustedFile { .. }
            | CeremonyError::SaKeyNotPinned { .. }
            | CeremonyError::SaAnchorMissing { .. }
            | CeremonyError::JournalGap(_)
            | CeremonyError::JournalLacksNode { .. }
            | CeremonyError::ForeignJournal { .. }
            | CeremonyError::JournalMerge { .. } => 3,
            _ => 1,
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

/// A command's JSON document, pretty-printed.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::failed(e.to_string()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The CURRENT patterns of every node, marking targets equal to the source.
pub fn pattern_table(nodes: &[(String, NodeStatus)], source: &str, targets: &[String]) -> String {
    let mut out =
        String::from("Master-key verification patterns (SHA-1 method), CURRENT register:\n\n");
    out.push_str(&format!(
        "  {:<10} {:<10} {:<16} {:<18} {:<18}\n",
        "node", "serial", "EID", "SYM", "ASYM"
    ));
    let cells_of = |st: &NodeStatus| -> Vec<String> {
        CloneableKind::ALL
            .into_iter()
            .map(|kind| {
                st.register(kind.kind())
                    .and_then(|r| r.current_patterns.first())
                    .map(|p| hex(p.bytes()))
                    .unwrap_or_else(|| "-".into())
            })
            .collect()
    };
    let source_cells = nodes
        .iter()
        .find(|(n, _)| n == source)
        .map(|(_, st)| cells_of(st));
    for (name, st) in nodes {
        let cells = cells_of(st);
        let mark = if targets.contains(name) {
            if Some(&cells) == source_cells.as_ref() {
                "  = source"
            } else {
                "  DIFFERS from source"
            }
        } else {
            ""
        };
        let eid = st
            .identity
            .eid
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<10} {:<10} {:<16} {:<18} {:<18}{mark}\n",
            name,
            st.identity.serial.to_string(),
            eid,
            cells[0],
            cells[1]
        ));
    }
    out
}
