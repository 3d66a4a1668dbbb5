//! What a phase did, as data: one [`PhaseAction`] per step, a [`Carry`] per file to carry.
//! The command line prints each through `Display` (the operator's line, one per action)
//! and `--json` gives them as objects tagged by `action` (docs/JSON.md): the same facts,
//! never prose to parse.

use std::fmt;
use std::path::PathBuf;

use mkclone_backend::{CloneableKind, KeyRole, MofN, ShareIndex, VerificationPattern};
use serde::Serialize;

use crate::phase::Phase;
use crate::trust::PatternAuthority;

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionResult {
    /// The request was made now.
    Done,
    /// An earlier run made it; the node (or the file) already holds it.
    AlreadyDone,
    /// There was nothing to do (abort: nothing of the ceremony's was there).
    NothingToDo,
}

impl ActionResult {
    /// Done, or already done (an idempotent step the node reported as applied before).
    pub fn applied(already: bool) -> Self {
        if already {
            Self::AlreadyDone
        } else {
            Self::Done
        }
    }
}

impl fmt::Display for ActionResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Done => "done",
            Self::AlreadyDone => "already done",
            Self::NothingToDo => "nothing to do",
        })
    }
}

/// One thing a phase (or `abort`, or `master-key random`) did. Serialized with its name in
/// `action` and its fields beside it; `Display` is the operator's line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PhaseAction {
    /// A retained key of `role` generated (or found) on the node.
    GenerateKey {
        role: KeyRole,
        label: String,
        result: ActionResult,
    },
    /// The new CSS/CSR key's fingerprint, read out to the SA operator.
    KeyFingerprint {
        role: KeyRole,
        /// The phase at which the SA operator compares it.
        certified_at: Phase,
        fingerprint: String,
    },
    /// A ceremony file written (or found written by an earlier run).
    WriteFile { file: String, result: ActionResult },
    /// The SA key's fingerprint to compare in person (phase 1).
    SaFingerprint { fingerprint: String },
    /// The line that pins the SA key in every server's configuration (phase 1).
    PinSaFingerprint { config_line: String },
    /// The CSS public key added to sa.db (phase 2a).
    AddCssKey { result: ActionResult },
    /// A key's fingerprint given on the command line matched the carried one.
    ConfirmFingerprint {
        role: KeyRole,
        /// The CSR key's target.
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        fingerprint: String,
    },
    /// The SA certified a CSS key (into sa.db) or a target's CSR key.
    Certify {
        role: KeyRole,
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        result: ActionResult,
    },
    /// The node's EID set (or found set to the plan's).
    SetEid { eid: String, result: ActionResult },
    /// The node's m-of-n set.
    SetMOfN { m_of_n: MofN, result: ActionResult },
    /// Under dual control the SA key is registered by two people, with these commands.
    SaKeyDualControl { node: String, fingerprint: String },
    /// The SA public key's hash registered (CLONE) on the node.
    RegisterSaHash {
        /// Who registered it (dual control); None: within the phase.
        #[serde(skip_serializing_if = "Option::is_none")]
        operator: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        result: ActionResult,
    },
    /// The SA public key registered (CLONE), matching its hash.
    RegisterSaKey {
        #[serde(skip_serializing_if = "Option::is_none")]
        operator: Option<String>,
        result: ActionResult,
    },
    /// Dual control: the SA key's registration fingerprint to compare in person.
    CompareSaFingerprint { fingerprint: String },
    /// Dual control: the key itself is registered next, by a second person.
    NextRegisterSaKey,
    /// A share obtained from the source for a target (phase 3c).
    ObtainShare {
        kind: CloneableKind,
        index: ShareIndex,
        target: String,
        result: ActionResult,
    },
    /// A target's CURRENT already equals the plan's source pattern (phase 3d).
    CurrentEqualsSource {
        kind: CloneableKind,
        pattern: VerificationPattern,
    },
    /// A share installed into the target's NEW register.
    InstallShare {
        kind: CloneableKind,
        index: ShareIndex,
        result: ActionResult,
    },
    /// NEW confirmed equal to the source's CURRENT, against the plan or the signed shares.
    ConfirmNew {
        kind: CloneableKind,
        pattern: VerificationPattern,
        against: PatternAuthority,
    },
    /// CURRENT already holds the key (an earlier SET): NEW cleared, no SET.
    AlreadySet { kind: CloneableKind },
    /// `--replace-current`: CURRENT becomes OLD.
    ReplaceCurrent {
        kind: CloneableKind,
        pattern: VerificationPattern,
    },
    /// SET: NEW became CURRENT.
    Set {
        kind: CloneableKind,
        pattern: VerificationPattern,
    },
    /// `master-key random` under dual control: requested, a second person runs it.
    RandomKeyRequested {
        operator: String,
        kinds: Vec<CloneableKind>,
    },
    /// `master-key random`: an earlier run set this key.
    RandomKeySetEarlier { kind: CloneableKind },
    /// `master-key random`: an interrupted step took effect.
    RandomKeyTookEffect {
        kind: CloneableKind,
        pattern: VerificationPattern,
    },
    /// `master-key random`: a random key generated and set.
    RandomKeySet {
        kind: CloneableKind,
        /// The former CURRENT, now OLD.
        #[serde(skip_serializing_if = "Option::is_none")]
        replaced: Option<VerificationPattern>,
    },
    /// A node's CURRENT pattern after the command.
    CurrentPattern {
        kind: CloneableKind,
        pattern: VerificationPattern,
    },
    /// Random master keys loaded and set on the source (the demo's setup).
    SourceKeysLoaded { kinds: Vec<CloneableKind> },
    /// Abort: a target's NEW register cleared.
    ClearNew {
        target: String,
        kind: CloneableKind,
        result: ActionResult,
    },
    /// Abort: NEW holds no share of the ceremony: nothing to clear.
    NothingToClear { target: String, kind: CloneableKind },
    /// Abort: NEW holds a key that is not the ceremony's: left as is.
    ForeignNewLeft { target: String, kind: CloneableKind },
    /// Abort: a retained key of the ceremony deleted.
    DeleteRetainedKey {
        node: String,
        label: String,
        result: ActionResult,
    },
    /// Abort: the SA public key unregistered.
    UnregisterSaKey {
        node: String,
        label: String,
        result: ActionResult,
    },
    /// Abort: a file overwritten, then removed.
    EraseFile { file: String },
}

/// "SYM and ASYM".
pub(crate) fn kinds_text(kinds: &[CloneableKind]) -> String {
    kinds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

impl fmt::Display for PhaseAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ActionResult::{AlreadyDone, Done};
        match self {
            Self::GenerateKey {
                role,
                label,
                result,
            } => write!(f, "{} key {label} ({result})", role.name()),
            Self::KeyFingerprint {
                role,
                certified_at,
                fingerprint,
            } => write!(
                f,
                "{} key fingerprint (read it to the SA operator for phase {certified_at}): {fingerprint}",
                role.name()
            ),
            Self::WriteFile { file, result } => match result {
                Done => write!(f, "{file} written"),
                _ => write!(f, "{file} (already written)"),
            },
            Self::SaFingerprint { fingerprint } => {
                write!(f, "SA key fingerprint (compare in person): {fingerprint}")
            }
            Self::PinSaFingerprint { config_line } => write!(
                f,
                "pin it on every server: add this line to the [ceremony] table of the configuration \
                 (or give it with --sa-fingerprint): {config_line}"
            ),
            Self::AddCssKey { result } => match result {
                Done => f.write_str("CSS public key added to sa.db"),
                _ => f.write_str("CSS public key in sa.db (already)"),
            },
            Self::ConfirmFingerprint {
                role,
                target,
                fingerprint,
            } => match target {
                Some(t) => write!(
                    f,
                    "{} key fingerprint of {t} confirmed: {fingerprint}",
                    role.name()
                ),
                None => write!(
                    f,
                    "{} key fingerprint confirmed: {fingerprint}",
                    role.name()
                ),
            },
            Self::Certify {
                role,
                target,
                result,
            } => {
                let role = role.name();
                match (target, result) {
                    (Some(t), Done) => write!(f, "{role} key of {t} certified by SA"),
                    (Some(t), _) => write!(f, "{role} key of {t} certified (already)"),
                    (None, Done) => write!(f, "{role} key certified by SA into sa.db"),
                    (None, _) => write!(f, "{role} key certified (already)"),
                }
            }
            Self::SetEid { eid, result } => match result {
                AlreadyDone => write!(f, "EID {eid} (already set)"),
                _ => write!(f, "EID {eid} ({result})"),
            },
            Self::SetMOfN { m_of_n, result } => write!(f, "m-of-n {m_of_n} ({result})"),
            Self::SaKeyDualControl { node, fingerprint } => write!(
                f,
                "SA public key: registered under dual control, by two people: \
                 `mkclone register-sa-hash --node {node} --operator NAME`, then \
                 `mkclone register-sa-key --node {node} --operator NAME` (fingerprint {fingerprint})"
            ),
            Self::RegisterSaHash {
                operator,
                fingerprint,
                result,
            } => {
                match operator {
                    Some(o) => write!(f, "SA public-key hash registered by {o}, CLONE ({result})")?,
                    None => write!(f, "SA public-key hash registered, CLONE ({result})")?,
                }
                match fingerprint {
                    Some(fp) => write!(f, ": {fp}"),
                    None => Ok(()),
                }
            }
            Self::RegisterSaKey { operator, result } => match operator {
                Some(o) => write!(
                    f,
                    "SA public key registered by {o}, CLONE, matching its hash ({result})"
                ),
                None => write!(
                    f,
                    "SA public key registered, CLONE, matching its hash ({result})"
                ),
            },
            Self::CompareSaFingerprint { fingerprint } => {
                write!(f, "SA key fingerprint to compare in person: {fingerprint}")
            }
            Self::NextRegisterSaKey => f.write_str(
                "next: a second person registers the key itself with `mkclone register-sa-key`",
            ),
            Self::ObtainShare {
                kind,
                index,
                target,
                result,
            } => match result {
                Done => write!(f, "{kind} share {index} for {target} obtained"),
                _ => write!(f, "{kind} share {index} for {target} (already obtained)"),
            },
            Self::CurrentEqualsSource { kind, pattern } => write!(
                f,
                "{kind}: CURRENT already equals the source's ({pattern}; the plan's source_patterns)"
            ),
            Self::InstallShare {
                kind,
                index,
                result,
            } => write!(f, "{kind} share {index} installed ({result})"),
            Self::ConfirmNew {
                kind,
                pattern,
                against,
            } => write!(
                f,
                "{kind}: NEW confirmed equal to the source's CURRENT ({pattern}; {})",
                match against {
                    PatternAuthority::Plan => "the plan's source_patterns",
                    PatternAuthority::SignedShares =>
                        "the pattern the source's CSS key signed in every share, checked by this device",
                }
            ),
            Self::AlreadySet { kind } => write!(
                f,
                "{kind}: CURRENT already holds it (an earlier SET): NEW cleared, no SET"
            ),
            Self::ReplaceCurrent { kind, pattern } => write!(
                f,
                "{kind}: CURRENT {pattern} becomes OLD (--replace-current): re-encipher the keys enciphered under it"
            ),
            Self::Set { kind, pattern } => write!(f, "{kind}: SET; CURRENT = {pattern}"),
            Self::RandomKeyRequested { operator, kinds } => write!(
                f,
                "requested by {operator}: a random {} master key; a second person runs the same command \
                 with another --operator",
                kinds_text(kinds)
            ),
            Self::RandomKeySetEarlier { kind } => write!(f, "{kind}: set by an earlier run"),
            Self::RandomKeyTookEffect { kind, pattern } => write!(
                f,
                "{kind}: the interrupted step took effect: CURRENT {pattern}"
            ),
            Self::RandomKeySet { kind, replaced } => match replaced {
                Some(old) => write!(
                    f,
                    "{kind}: random key generated and set; the former CURRENT {old} is OLD"
                ),
                None => write!(f, "{kind}: random key generated and set"),
            },
            Self::CurrentPattern { kind, pattern } => {
                write!(f, "{kind} CURRENT pattern: {pattern}")
            }
            Self::SourceKeysLoaded { kinds } => {
                write!(f, "random {} master keys loaded and set", kinds_text(kinds))
            }
            Self::ClearNew {
                target,
                kind,
                result,
            } => write!(f, "{target}: {kind} NEW cleared ({result})"),
            Self::NothingToClear { target, kind } => write!(
                f,
                "{target}: {kind} NEW: no share received, nothing to clear"
            ),
            Self::ForeignNewLeft { target, kind } => write!(
                f,
                "{target}: {kind} NEW holds a key that is not this ceremony's: left as is"
            ),
            Self::DeleteRetainedKey {
                node,
                label,
                result,
            } => write!(f, "{node}: retained key {label} deleted ({result})"),
            Self::UnregisterSaKey {
                node,
                label,
                result,
            } => write!(f, "{node}: SA public key {label} unregistered ({result})"),
            Self::EraseFile { file } => write!(f, "{file} erased"),
        }
    }
}

/// A file the operators carry to another node, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Carry {
    pub file: PathBuf,
    /// The node it goes to.
    pub to: String,
    pub why: String,
}

impl fmt::Display for Carry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "carry {} -> {} ({})",
            self.file.display(),
            self.to,
            self.why
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_with_its_name_and_fields() {
        let a = PhaseAction::ObtainShare {
            kind: CloneableKind::Sym,
            index: ShareIndex::new(2).unwrap(),
            target: "target1".into(),
            result: ActionResult::AlreadyDone,
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({
                "action": "obtain-share", "kind": "sym", "index": 2,
                "target": "target1", "result": "already-done"
            })
        );
        assert_eq!(a.to_string(), "SYM share 2 for target1 (already obtained)");
        let g = PhaseAction::GenerateKey {
            role: KeyRole::Css,
            label: "MKCLONE.CSS".into(),
            result: ActionResult::Done,
        };
        assert_eq!(g.to_string(), "CSS key MKCLONE.CSS (done)");
        assert_eq!(serde_json::to_value(&g).unwrap()["role"], "css");
    }
}
