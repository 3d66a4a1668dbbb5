//! What the journal records, typed: one [`Action`] for every state-changing request the
//! ceremony makes (journaled as an `intent` before it leaves and an `outcome` after), one
//! [`Note`] for everything else, and the [`Outcome`] of an action, which names the `seq`
//! of its intent. The writers (phases, abort, dual control) and the readers (resume,
//! report) share these types; nobody reads a record's `detail` by key.
//!
//! On disk a record keeps its `event` (the kebab-case name of the variant) and `detail`
//! (the variant's fields, keys sorted): serde's adjacent tagging gives exactly those two
//! members, so the journal line format is unchanged (see [`crate::journal`]). Journals of
//! mkclone 0.1 are refused when opened (they carry no ceremony nonce), so every journal
//! read here was written with these types; a record that still does not parse (edited by
//! hand, or written by a newer mkclone) is reported, never guessed at.

use mkclone_backend::{
    CloneableKind, Eid, InstallProgress, KeyLabel, KeyRole, NodeStatus, VerificationPattern,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::journal::{Kind, Record};
use crate::trust::PatternAuthority;

/// A state-changing request to a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "detail", rename_all = "kebab-case")]
pub enum Action {
    SetEid {
        eid: Eid,
    },
    #[serde(rename = "set-m-of-n")]
    SetMOfN {
        m: u8,
        n: u8,
    },
    GenerateRetainedKey {
        bits: u16,
        label: KeyLabel,
        role: KeyRole,
    },
    RegisterSaHash {
        clone: bool,
        /// Registered by `register-sa-hash` (dual control), not by a phase.
        dual_control: bool,
        fingerprint: String,
        name: KeyLabel,
    },
    RegisterSaKey {
        clone: bool,
        dual_control: bool,
        /// Under dual control: who registered the hash (another person).
        hash_registered_by: Option<String>,
        name: KeyLabel,
    },
    Certify {
        eid: Eid,
        subject: String,
    },
    ObtainShare {
        index: u8,
        kind: CloneableKind,
        target: String,
    },
    InstallShare {
        index: u8,
        kind: CloneableKind,
    },
    SetMasterKey {
        kind: CloneableKind,
    },
    ClearNew {
        kind: CloneableKind,
    },
    DeleteRetainedKey {
        label: KeyLabel,
    },
    UnregisterSaKey {
        name: KeyLabel,
    },
    /// `master-key random`: CSNBMKP RANDOM then SET, inside the node.
    LoadRandomMasterKey {
        kind: CloneableKind,
        /// The valid CURRENT this replaces (it becomes OLD), if any.
        replaces: Option<VerificationPattern>,
        /// Under dual control: who requested it (another person).
        requested_by: Option<String>,
    },
}

/// What an abort was asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortSteps {
    pub clear_new: bool,
    pub delete_keys: bool,
    pub erase_files: bool,
    pub targets: Vec<String>,
    pub unregister_sa: bool,
}

/// A journal mark whose loss an operator accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostMark {
    pub file: String,
    pub hash: String,
    pub phase: String,
    pub seq: u64,
}

/// The version of the journal's typed events that this mkclone writes, recorded in every
/// [`RunStart`]: 1, the events of the first journals with ceremony nonces; 2 adds
/// `run-start`. A reader meets a higher version's unknown events as unreadable records
/// (shown, never guessed at); journals of version 1 stay readable (they have no
/// `run-start`: the report says where, and with what, their runs ran is not recorded).
pub const EVENTS_VERSION: u32 = 2;

/// A command began working in this ceremony directory: the first record it appends. Where
/// it ran and with what, for the printed record (host, mkclone version, configuration
/// digest, local time beside UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStart {
    /// The command: `clone`, `phase3d`, `register-sa-hash`, `abort`…
    pub command: String,
    /// Lowercase hex SHA-256 of the configuration file's bytes as this command read them.
    pub config_sha256: Option<String>,
    /// [`EVENTS_VERSION`] of the mkclone that wrote this run's records.
    pub events_version: u32,
    /// This host's name (as the kernel reports it).
    pub host: String,
    pub mkclone_version: String,
    /// The host's IANA time zone, when it can be named.
    pub time_zone: Option<String>,
    /// The host's UTC offset when the run began, `+HH:MM` or `-HH:MM`: the local time of
    /// this run's records.
    pub utc_offset: String,
}

/// Everything else worth recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "detail", rename_all = "kebab-case")]
pub enum Note {
    /// Before the first record a command appends (events version 2).
    RunStart(RunStart),
    PhaseStart {},
    /// The node's status when the phase began (the report's "before").
    NodeStatus(Box<NodeStatus>),
    PhaseDone {
        actions: Vec<String>,
    },
    DualControlOff {
        note: String,
    },
    BundleWritten {
        file: String,
    },
    /// NEW confirmed equal to the source's CURRENT before SET, and against what.
    Confirmed {
        authority: PatternAuthority,
        kind: CloneableKind,
        pattern: VerificationPattern,
    },
    ReplaceCurrent {
        current: VerificationPattern,
        kind: CloneableKind,
    },
    /// An action whose outcome was unknown is repeated once.
    OutcomeUnknownRetry {
        error: String,
        intent: u64,
    },
    AbortStart {
        steps: AbortSteps,
    },
    AbortDone {
        actions: Vec<String>,
    },
    FileErased {
        file: String,
    },
    JournalLossAccepted {
        marks: Vec<LostMark>,
        records_now: u64,
    },
    /// `master-key random` under dual control: the first person's request; a second runs it.
    RandomKeyRequested {
        kinds: Vec<CloneableKind>,
        replace_current: bool,
        /// The valid CURRENT patterns the request would replace.
        replaces: Vec<VerificationPattern>,
    },
    /// `master-key random --cancel`: the open request of record `request` is dropped.
    RandomKeyRequestCancelled {
        request: u64,
    },
    /// `master-key random`: an interrupted step's key was found CURRENT on the node.
    RandomKeyReconciled {
        kind: CloneableKind,
        current: VerificationPattern,
    },
    /// A signal stopped the command at a safe point.
    Interrupted {
        before: String,
        during: String,
        signal: String,
    },
}

/// The result of an action, as its outcome record carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum StepResult {
    Ok {
        /// The node said it was already so (`Applied::AlreadyDone`).
        already_done: bool,
        /// INSTALL: where the target stands.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<InstallProgress>,
        /// OBTAIN: the sealed share's size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_bytes: Option<usize>,
    },
    Failed {
        error: String,
    },
}

/// The outcome of the action journaled at record `intent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub intent: u64,
    #[serde(flatten)]
    pub result: StepResult,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self.result, StepResult::Ok { .. })
    }
}

/// What one record says.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Intent(Action),
    Outcome(Outcome),
    Note(Note),
}

impl Action {
    /// The record's `event` and `detail`.
    pub fn parts(&self) -> (String, Value) {
        parts(self)
    }
}

impl Note {
    /// The record's `event` and `detail`.
    pub fn parts(&self) -> (String, Value) {
        parts(self)
    }
}

/// Split an adjacently tagged value into its `event` name and `detail`.
fn parts<T: Serialize>(v: &T) -> (String, Value) {
    // Serialising these types cannot fail: no maps with non-string keys, no floats.
    let mut value = serde_json::to_value(v).unwrap_or(Value::Null);
    let event = value
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let detail = value
        .get_mut("detail")
        .map(Value::take)
        .filter(|d| !d.is_null())
        .unwrap_or_else(|| Value::Object(Default::default()));
    (event, detail)
}

impl Record {
    /// What this record says, typed; an error names what does not parse.
    pub fn entry(&self) -> Result<Entry, String> {
        let tagged = || serde_json::json!({"event": self.event, "detail": self.detail});
        let fail = |e: serde_json::Error| {
            format!(
                "record {} ({} {}) is not one mkclone writes: {e}",
                self.seq,
                match self.kind {
                    Kind::Intent => "intent",
                    Kind::Outcome => "outcome",
                    Kind::Note => "note",
                },
                self.event
            )
        };
        match self.kind {
            Kind::Intent => serde_json::from_value(tagged())
                .map(Entry::Intent)
                .map_err(fail),
            Kind::Outcome => serde_json::from_value(self.detail.clone())
                .map(Entry::Outcome)
                .map_err(fail),
            Kind::Note => serde_json::from_value(tagged())
                .map(Entry::Note)
                .map_err(fail),
        }
    }

    /// The action of an intent record.
    pub fn action(&self) -> Option<Action> {
        match self.entry() {
            Ok(Entry::Intent(a)) => Some(a),
            _ => None,
        }
    }

    /// The note of a note record.
    pub fn note(&self) -> Option<Note> {
        match self.entry() {
            Ok(Entry::Note(n)) => Some(n),
            _ => None,
        }
    }

    /// The outcome of an outcome record.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.entry() {
            Ok(Entry::Outcome(o)) => Some(o),
            _ => None,
        }
    }
}

impl Action {
    /// The master key an action concerns, if any.
    pub fn kind(&self) -> Option<CloneableKind> {
        match self {
            Self::ObtainShare { kind, .. }
            | Self::InstallShare { kind, .. }
            | Self::SetMasterKey { kind }
            | Self::ClearNew { kind }
            | Self::LoadRandomMasterKey { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The share index an action concerns, if any.
    pub fn index(&self) -> Option<u8> {
        match self {
            Self::ObtainShare { index, .. } | Self::InstallShare { index, .. } => Some(*index),
            _ => None,
        }
    }
}

impl Action {
    /// The action in words, for the printed record.
    pub fn describe(&self) -> String {
        match self {
            Self::SetEid { eid } => format!("EID {eid}"),
            Self::SetMOfN { m, n } => format!("m-of-n {m}-of-{n}"),
            Self::GenerateRetainedKey { bits, label, role } => {
                format!("{role} key {label}, {bits} bits")
            }
            Self::RegisterSaHash {
                clone,
                dual_control,
                fingerprint,
                name,
            } => format!(
                "SA key hash {name}{}{}, fingerprint {fingerprint}",
                if *clone { ", CLONE" } else { "" },
                if *dual_control { ", dual control" } else { "" }
            ),
            Self::RegisterSaKey {
                clone,
                dual_control,
                hash_registered_by,
                name,
            } => format!(
                "SA key {name}{}{}{}",
                if *clone { ", CLONE" } else { "" },
                if *dual_control { ", dual control" } else { "" },
                hash_registered_by
                    .as_ref()
                    .map(|b| format!(", hash registered by {b}"))
                    .unwrap_or_default()
            ),
            Self::Certify { eid, subject } => format!("certify the key of {subject} (EID {eid})"),
            Self::ObtainShare {
                index,
                kind,
                target,
            } => format!("{kind} share {index} for {target}"),
            Self::InstallShare { index, kind } => format!("{kind} share {index}"),
            Self::SetMasterKey { kind } => format!("SET {kind}"),
            Self::ClearNew { kind } => format!("clear {kind} NEW"),
            Self::DeleteRetainedKey { label } => format!("delete {label}"),
            Self::UnregisterSaKey { name } => format!("unregister {name}"),
            Self::LoadRandomMasterKey {
                kind,
                replaces,
                requested_by,
            } => format!(
                "random {kind} master key, SET{}{}",
                replaces
                    .as_ref()
                    .map(|p| format!(" (CURRENT {p} becomes OLD)"))
                    .unwrap_or_default(),
                requested_by
                    .as_ref()
                    .map(|b| format!(", requested by {b}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// A pattern list in words ("SHA-1 0123…, MDC-4 …").
fn patterns_text(list: &[VerificationPattern]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A node's status in words: identity, then each master key's registers.
pub fn status_text(st: &NodeStatus) -> String {
    use mkclone_backend::{CurrentState, NewState};
    let mut parts = vec![format!(
        "serial {}, EID {}",
        st.identity.serial,
        st.identity
            .eid
            .as_ref()
            .map(|e| e.as_str().trim_end().to_string())
            .unwrap_or_else(|| "not set".into())
    )];
    for r in &st.registers {
        let register = |state: CurrentState, patterns: &[VerificationPattern]| match state {
            CurrentState::Valid if patterns.is_empty() => "valid (no pattern reported)".into(),
            CurrentState::Valid => patterns_text(patterns),
            CurrentState::Invalid => "empty".to_string(),
        };
        let new = match r.new {
            NewState::Full if !r.new_patterns.is_empty() => {
                format!("full: {}", patterns_text(&r.new_patterns))
            }
            NewState::Full => "full".into(),
            NewState::Partial => "partial".into(),
            NewState::Empty => "empty".into(),
        };
        parts.push(format!(
            "{}: NEW {new}, CURRENT {}, OLD {}",
            r.kind.name(),
            register(r.current, &r.current_patterns),
            register(r.old, &r.old_patterns)
        ));
    }
    parts.join("; ")
}

impl Note {
    /// The note in words, for the printed record.
    pub fn describe(&self) -> String {
        match self {
            Self::PhaseStart {} => String::new(),
            Self::RunStart(r) => format!(
                "{} on {}, mkclone {}, configuration SHA-256 {}, UTC{}",
                r.command,
                r.host,
                r.mkclone_version,
                r.config_sha256.as_deref().unwrap_or("not recorded"),
                r.utc_offset
            ),
            Self::NodeStatus(st) => status_text(st),
            Self::PhaseDone { actions } | Self::AbortDone { actions } => actions.join("; "),
            Self::DualControlOff { note } => note.clone(),
            Self::BundleWritten { file } | Self::FileErased { file } => file.clone(),
            Self::Confirmed {
                authority,
                kind,
                pattern,
            } => format!(
                "{kind} NEW = {pattern}, confirmed against {}",
                match authority {
                    PatternAuthority::Plan => "the plan's source_patterns",
                    PatternAuthority::SignedShares => "the pattern signed in the shares",
                }
            ),
            Self::ReplaceCurrent { current, kind } => format!(
                "{kind} CURRENT {current} becomes OLD (--replace-current): re-encipher the keys under it"
            ),
            Self::OutcomeUnknownRetry { error, intent } => {
                format!("record {intent}: outcome unknown ({error}); repeated once")
            }
            Self::AbortStart { steps } => {
                let mut asked = Vec::new();
                for (yes, what) in [
                    (steps.clear_new, "clear NEW"),
                    (steps.delete_keys, "delete keys"),
                    (steps.erase_files, "erase files"),
                    (steps.unregister_sa, "unregister the SA key"),
                ] {
                    if yes {
                        asked.push(what);
                    }
                }
                format!("{} for {}", asked.join(", "), steps.targets.join(", "))
            }
            Self::Interrupted { during, signal, .. } => {
                format!("interrupted by {signal} during {during}")
            }
            Self::RandomKeyRequestCancelled { request } => {
                format!("the random master-key request of record {request} is cancelled")
            }
            Self::RandomKeyReconciled { kind, current } => {
                format!("{kind}: the interrupted random-key step took effect: CURRENT {current}")
            }
            Self::RandomKeyRequested {
                kinds,
                replace_current,
                replaces,
            } => format!(
                "random {} master key requested{}",
                kinds
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" and "),
                if *replace_current && !replaces.is_empty() {
                    format!(", replacing CURRENT {}", patterns_text(replaces))
                } else {
                    String::new()
                }
            ),
            Self::JournalLossAccepted { marks, records_now } => format!(
                "{} lost record(s) accepted ({}); the journal then had {records_now} records",
                marks.len(),
                marks
                    .iter()
                    .map(|m| format!("record {} of phase {}, named by {}", m.seq, m.phase, m.file))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

impl Outcome {
    /// The outcome in words: "ok", "ok (already done)", "FAILED: …", with what it carried.
    pub fn describe(&self) -> String {
        match &self.result {
            StepResult::Ok {
                already_done,
                progress,
                share_bytes,
            } => {
                let mut s = if *already_done {
                    "ok (already done)".to_string()
                } else {
                    "ok".to_string()
                };
                match progress {
                    Some(InstallProgress::NeedMore { received, m }) => {
                        s.push_str(&format!("; {received} of {m} shares received"))
                    }
                    Some(InstallProgress::Complete) => s.push_str("; the key is complete in NEW"),
                    None => {}
                }
                if let Some(n) = share_bytes {
                    s.push_str(&format!("; sealed share of {n} bytes"));
                }
                s
            }
            StepResult::Failed { error } => format!("FAILED: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_details_are_the_journal_s() {
        let (event, detail) = Action::SetMOfN { m: 2, n: 3 }.parts();
        assert_eq!(event, "set-m-of-n");
        assert_eq!(detail, serde_json::json!({"m": 2, "n": 3}));
        let (event, detail) = Note::PhaseStart {}.parts();
        assert_eq!(event, "phase-start");
        assert_eq!(detail, serde_json::json!({}));
        let (event, _) = Action::InstallShare {
            index: 1,
            kind: CloneableKind::Asym,
        }
        .parts();
        assert_eq!(event, "install-share");
        let o = Outcome {
            intent: 7,
            result: StepResult::Ok {
                already_done: false,
                progress: Some(InstallProgress::Complete),
                share_bytes: None,
            },
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"intent": 7, "result": "ok", "already_done": false, "progress": {"state": "complete"}})
        );
        assert_eq!(serde_json::from_value::<Outcome>(v).unwrap(), o);
    }
}
