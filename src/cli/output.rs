//! Failures with their exit codes, and the tables commands print.

use mkclone_backend::{CloneableKind, NodeStatus};
use mkclone_ceremony::{CeremonyError, FileError};

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// A stable, machine-readable name of what went wrong (the `kind` of the
    /// `mkclone-error` document, docs/JSON.md).
    pub kind: &'static str,
    /// What to do about it, where the error says so apart from its message.
    pub hint: Option<String>,
    /// Under `--json`, the command already printed its document, which says the outcome
    /// (a dry run's problems, a report not complete, `clone` waiting for dual control):
    /// no `mkclone-error` document follows it.
    pub documented: bool,
    /// A preflight's problems, each named by `kind` (the `problems` of the
    /// `mkclone-error` document, as a dry run gives them).
    pub problems: Vec<mkclone_ceremony::Problem>,
    /// `clone`, once it has opened the ceremony: the phases the run completed and every
    /// phase that failed (the `phases` and `failed_phases` of the `mkclone-error` document).
    pub clone: Option<Box<super::clone_log::CloneOutcome>>,
}

impl Failure {
    fn new(code: u8, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            kind,
            hint: None,
            documented: false,
            problems: Vec::new(),
            clone: None,
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(1, "failed", message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(2, "usage", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(3, "invalid", message)
    }
    /// A failure with its own exit code and kind.
    pub fn with_code(code: u8, kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, kind, message)
    }
    /// The same failure, named `kind`.
    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }
    /// The same failure, with what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// The same failure, its outcome already in the command's JSON document.
    pub fn documented(mut self) -> Self {
        self.documented = true;
        self
    }
}

impl From<mkclone::config::ConfigError> for Failure {
    fn from(e: mkclone::config::ConfigError) -> Self {
        use mkclone::config::ConfigError;
        let kind = match &e {
            ConfigError::Read { .. } => "config-unreadable",
            ConfigError::Parse { .. } => "config-syntax",
            _ => "config-invalid",
        };
        Self::invalid(e.to_string()).kind(kind)
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
        let hint = match &e {
            CeremonyError::MissingFile { hint, .. } => Some(hint.clone()),
            CeremonyError::Interrupted { .. } => Some("run the same command to resume".into()),
            CeremonyError::WouldReplaceCurrent { .. } => {
                Some("rerun with --replace-current if replacing CURRENT is intended".into())
            }
            CeremonyError::File(FileError::Locked { .. }) => {
                Some("wait for the command holding the ceremony to finish, then run again".into())
            }
            CeremonyError::JournalGap(_)
            | CeremonyError::JournalLacksNode { .. }
            | CeremonyError::ForeignJournal { .. } => Some(
                "restore this ceremony's journal from its copy; if it is lost for good, \
                 record the loss with `mkclone journal accept-loss`"
                    .into(),
            ),
            _ => None,
        };
        let problems = match &e {
            CeremonyError::Preflight { problems } => problems.0.clone(),
            _ => Vec::new(),
        };
        Self {
            kind: e.kind(),
            hint,
            problems,
            ..Self::new(code, "", e.to_string())
        }
    }
}

/// The schema version of the document `mkclone-<what>` (docs/JSON.md: a new version
/// means a field was removed, renamed or changed its meaning or type; a new field does not
/// change it). The report kept its own count from before the contract.
pub fn json_version(what: &str) -> u32 {
    match what {
        "report" => mkclone_ceremony::report::VERSION,
        _ => 1,
    }
}

/// Every JSON document mkclone prints: `format` names what it is ("mkclone-status", …),
/// `version` its schema ([`json_version`]), `mkclone` the program that wrote it, then the
/// document's own fields.
#[derive(serde::Serialize)]
struct Envelope<'a, T: serde::Serialize + ?Sized> {
    format: String,
    version: u32,
    mkclone: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// The document `body` as `format` (`mkclone-<what>`), with the envelope, pretty-printed.
pub fn json_document<T: serde::Serialize + ?Sized>(
    what: &str,
    body: &T,
) -> Result<String, Failure> {
    to_json(&Envelope {
        format: format!("mkclone-{what}"),
        version: json_version(what),
        mkclone: env!("CARGO_PKG_VERSION"),
        body,
    })
}

/// `text` as it may go to a terminal: every control character but newline and tab shown
/// escaped (`\u{1b}`), never sent raw. Error messages and action lines quote what came
/// from carried files, journals, configurations and devices, and an escape sequence in
/// one (a title change, a cleared screen, a faked line) must not reach the operator's
/// terminal as one. JSON documents need no such care: serde_json escapes control
/// characters itself.
pub fn terminal_text(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, |c| c.is_control() && c != '\n' && c != '\t')
}

/// What a device, module or library says of itself (a version, a serial, a model, a slot's
/// description), as it may stand within one line of text: every control character, newline
/// and tab included, shown escaped, so that a value cannot end its line and fake the next
/// one. [`terminal_text`] keeps newlines: the text around such values needs them.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    escaped(text, char::is_control)
}

/// `text` with every character `unsafe_char` picks shown as its `\u{..}` escape.
fn escaped(text: &str, unsafe_char: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Print the document `body` as `format` `mkclone-<what>` on standard output: the one
/// thing a command prints there under `--json`.
pub fn print_json<T: serde::Serialize + ?Sized>(what: &str, body: &T) -> Result<(), Failure> {
    let text = json_document(what, body)?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed standard output (`| head`) is not the command's failure.
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::failed(format!(
            "cannot write the JSON document: {e}"
        ))),
        _ => Ok(()),
    }
}

/// The `mkclone-error` document of a failure (docs/JSON.md).
#[derive(serde::Serialize)]
pub struct ErrorDocument<'a> {
    pub exit_code: u8,
    pub kind: &'a str,
    pub message: &'a str,
    pub hint: Option<&'a str>,
    /// `kind` "preflight": every problem found, as a dry run gives them.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub problems: &'a [mkclone_ceremony::Problem],
    /// `clone`, once it has opened the ceremony: `phases` (done in this run) and
    /// `failed_phases`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub clone: Option<&'a super::clone_log::CloneOutcome>,
}

impl<'a> From<&'a Failure> for ErrorDocument<'a> {
    fn from(f: &'a Failure) -> Self {
        Self {
            exit_code: f.code,
            kind: f.kind,
            message: &f.message,
            hint: f.hint.as_deref(),
            problems: &f.problems,
            clone: f.clone.as_deref(),
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

#[cfg(test)]
mod terminal_tests {
    use super::{one_line, terminal_text};

    #[test]
    fn control_characters_reach_no_terminal_raw() {
        assert_eq!(terminal_text("plain\n\tline"), "plain\n\tline");
        let evil = "kind \u{1b}]0;PWNED\u{7}\u{1b}[2J\r done";
        let shown = terminal_text(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(shown, "kind \\u{1b}]0;PWNED\\u{7}\\u{1b}[2J\\u{d} done");
    }

    #[test]
    fn a_device_value_stays_on_its_line() {
        assert_eq!(one_line("CCA 7.5.1"), "CCA 7.5.1");
        assert_eq!(
            one_line("7.5\n  CRP09\t\u{1b}[2J"),
            "7.5\\u{a}  CRP09\\u{9}\\u{1b}[2J"
        );
    }
}
