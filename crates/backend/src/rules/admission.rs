//! Share admission (CSUAMKD INSTALL, after the share was opened and its signature
//! verified): is the incoming share new, one already received, or refused, and why.
//!
//! The checks run in the card's order: kind, m-of-n, index within n, one source and one
//! key, the index already received (the same share: "already received"; another: a
//! conflict), the key already complete, NEW not empty. At the m-th share the caller
//! rebuilds the key and [`check_rebuilt`] compares it with the pattern the source signed.
//! A refusal changes nothing; `BackendError::from(refusal)` is the one typed error each
//! case is, on every backend.

use thiserror::Error;

use crate::error::BackendError;
use crate::outcome::{Applied, InstallProgress};
use crate::types::{CloneableKind, Eid, MofN, ShareIndex, VerificationPattern};

/// What the rules need to know of one share: where it sits and where it comes from, and a
/// digest of its value.
#[derive(Clone, Copy, Debug)]
pub struct ShareFacts<'a> {
    pub index: ShareIndex,
    /// The EID of the source that made it.
    pub origin_eid: &'a Eid,
    /// The source's CURRENT pattern, carried signed inside the share.
    pub source_pattern: &'a VerificationPattern,
    /// Compared for equality only, to tell the same share from another under one index:
    /// any digest of the share value that is the same for the same value (the PKCS#11
    /// backend keeps a SHA-256 digest; the simulator compares the values themselves).
    pub value_digest: &'a [u8],
}

/// What a node holds for one master key when a share arrives.
#[derive(Clone, Copy, Debug)]
pub struct HeldShares<'a> {
    pub kind: CloneableKind,
    /// The node's m-of-n (a node without one refuses INSTALL before the share is opened).
    pub m_of_n: MofN,
    /// Whether the NEW register is empty.
    pub new_empty: bool,
    /// The shares received since the tables were last cleared, in order.
    pub received: &'a [ShareFacts<'a>],
}

/// An opened share, as its signed content describes it.
#[derive(Clone, Copy, Debug)]
pub struct IncomingShare<'a> {
    pub kind: CloneableKind,
    /// The m-of-n the source made it for.
    pub m_of_n: MofN,
    pub share: ShareFacts<'a>,
}

/// An admitted share.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Admission {
    /// A share under an index not received yet: keep it. `received` counts it; at `m`
    /// the key is to be rebuilt and placed in NEW.
    New { received: u8, m: u8 },
    /// This very share was received before: nothing to keep, the index is marked
    /// "received more than once" (STATMOFN 4).
    AlreadyReceived { received: u8, m: u8 },
}

impl Admission {
    /// Distinct shares held, this one included.
    pub fn received(&self) -> u8 {
        match self {
            Self::New { received, .. } | Self::AlreadyReceived { received, .. } => *received,
        }
    }

    /// Whether the key is (now) complete.
    pub fn is_complete(&self) -> bool {
        match self {
            Self::New { received, m } | Self::AlreadyReceived { received, m } => received >= m,
        }
    }

    pub fn progress(&self) -> InstallProgress {
        match self {
            Self::New { received, m } | Self::AlreadyReceived { received, m } => {
                if received >= m {
                    InstallProgress::Complete
                } else {
                    InstallProgress::NeedMore {
                        received: *received,
                        m: *m,
                    }
                }
            }
        }
    }

    /// What INSTALL returns: `Done` for a new share, `AlreadyDone` for a repeated one.
    pub fn applied(&self) -> Applied<InstallProgress> {
        match self {
            Self::New { .. } => Applied::Done(self.progress()),
            Self::AlreadyReceived { .. } => Applied::AlreadyDone(self.progress()),
        }
    }
}

/// Why a share was refused.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum RefusalReason {
    #[error("it is a share of the {share} master key")]
    WrongKind { share: CloneableKind },
    #[error("it was made for {share} on the source; this node is set to {node}")]
    MofNMismatch { share: MofN, node: MofN },
    #[error("its index is outside this node's 1..{n}")]
    IndexOutOfRange { n: u8 },
    #[error(
        "it comes from EID {origin} (key {pattern}); the shares held come from EID {held_origin} (key {held_pattern})"
    )]
    OtherSource {
        origin: Eid,
        pattern: VerificationPattern,
        held_origin: Eid,
        held_pattern: VerificationPattern,
    },
    #[error("a different share is held under this index")]
    IndexConflict,
    #[error("the key in NEW is already complete")]
    KeyAlreadyComplete,
    #[error("the NEW register is not empty")]
    NewNotEmpty,
    #[error("the rebuilt key's pattern {rebuilt} is not the source's {signed}")]
    RebuiltKeyMismatch {
        rebuilt: VerificationPattern,
        signed: VerificationPattern,
    },
}

/// A refused share: which, and why. Convert it into the typed error with `From`.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
#[error("{kind} share {index} refused: {reason}")]
pub struct Refusal {
    pub kind: CloneableKind,
    pub index: ShareIndex,
    pub reason: RefusalReason,
}

/// The one typed error of each refusal, whatever the backend.
impl From<Refusal> for BackendError {
    fn from(refusal: Refusal) -> Self {
        let Refusal {
            kind,
            index,
            reason,
        } = refusal;
        match reason {
            RefusalReason::WrongKind { .. } => BackendError::ShareRejected,
            RefusalReason::MofNMismatch { .. }
            | RefusalReason::OtherSource { .. }
            | RefusalReason::RebuiltKeyMismatch { .. } => BackendError::ShareMismatch { kind },
            RefusalReason::IndexOutOfRange { n } => BackendError::IndexOutOfRange { index, n },
            RefusalReason::IndexConflict => BackendError::DuplicateShare { kind, index },
            RefusalReason::KeyAlreadyComplete => BackendError::KeyAlreadyComplete { kind },
            RefusalReason::NewNotEmpty => BackendError::NewNotEmpty { kind },
        }
    }
}

fn count(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// Admit `incoming` into `held`, or refuse it. Pure: the caller keeps the share (or marks
/// the index received more than once) only on `Ok`.
pub fn admit(held: &HeldShares<'_>, incoming: &IncomingShare<'_>) -> Result<Admission, Refusal> {
    let share = &incoming.share;
    let refuse = |reason| Refusal {
        kind: held.kind,
        index: share.index,
        reason,
    };
    if incoming.kind != held.kind {
        return Err(refuse(RefusalReason::WrongKind {
            share: incoming.kind,
        }));
    }
    if incoming.m_of_n != held.m_of_n {
        return Err(refuse(RefusalReason::MofNMismatch {
            share: incoming.m_of_n,
            node: held.m_of_n,
        }));
    }
    if share.index.check_against(held.m_of_n).is_err() {
        return Err(refuse(RefusalReason::IndexOutOfRange {
            n: held.m_of_n.n(),
        }));
    }
    // All shares of one key come from one source and one master key.
    if let Some(first) = held.received.first()
        && (first.origin_eid != share.origin_eid || first.source_pattern != share.source_pattern)
    {
        return Err(refuse(RefusalReason::OtherSource {
            origin: share.origin_eid.clone(),
            pattern: share.source_pattern.clone(),
            held_origin: first.origin_eid.clone(),
            held_pattern: first.source_pattern.clone(),
        }));
    }
    let m = held.m_of_n.m();
    if let Some(previous) = held.received.iter().find(|r| r.index == share.index) {
        if previous.value_digest != share.value_digest {
            return Err(refuse(RefusalReason::IndexConflict));
        }
        return Ok(Admission::AlreadyReceived {
            received: count(held.received.len()),
            m,
        });
    }
    if held.received.len() >= usize::from(m) {
        return Err(refuse(RefusalReason::KeyAlreadyComplete));
    }
    if !held.new_empty {
        return Err(refuse(RefusalReason::NewNotEmpty));
    }
    Ok(Admission::New {
        received: count(held.received.len() + 1),
        m,
    })
}

/// At the m-th share: the rebuilt key must be the source's, whose pattern travelled
/// signed inside the share.
pub fn check_rebuilt(
    kind: CloneableKind,
    index: ShareIndex,
    rebuilt: &VerificationPattern,
    signed: &VerificationPattern,
) -> Result<(), Refusal> {
    if rebuilt == signed {
        return Ok(());
    }
    Err(Refusal {
        kind,
        index,
        reason: RefusalReason::RebuiltKeyMismatch {
            rebuilt: rebuilt.clone(),
            signed: signed.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_values::{idx, mofn};
    use crate::types::PatternAlgorithm;

    const SYM: CloneableKind = CloneableKind::Sym;

    fn pattern(b: u8) -> VerificationPattern {
        VerificationPattern::new(PatternAlgorithm::Sha1Method, &[b; 8]).unwrap()
    }

    struct World {
        source: Eid,
        other_source: Eid,
        key: VerificationPattern,
        other_key: VerificationPattern,
    }

    fn world() -> World {
        World {
            source: Eid::new("SOURCE").unwrap(),
            other_source: Eid::new("OTHER").unwrap(),
            key: pattern(1),
            other_key: pattern(2),
        }
    }

    fn facts<'a>(w: &'a World, index: u8, digest: &'a [u8]) -> ShareFacts<'a> {
        ShareFacts {
            index: idx(index),
            origin_eid: &w.source,
            source_pattern: &w.key,
            value_digest: digest,
        }
    }

    fn held<'a>(received: &'a [ShareFacts<'a>], new_empty: bool) -> HeldShares<'a> {
        HeldShares {
            kind: SYM,
            m_of_n: mofn(2, 3),
            new_empty,
            received,
        }
    }

    fn incoming(share: ShareFacts<'_>) -> IncomingShare<'_> {
        IncomingShare {
            kind: SYM,
            m_of_n: mofn(2, 3),
            share,
        }
    }

    /// `result` is refused for `reason`, and that refusal is the typed error `error`.
    macro_rules! assert_refusal {
        ($result:expr, $reason:expr, $error:pat $(if $guard:expr)?) => {{
            let refusal = $result.unwrap_err();
            assert_eq!(refusal.reason, $reason);
            assert!(matches!(BackendError::from(refusal), $error $(if $guard)?));
        }};
    }

    fn reason(result: Result<Admission, Refusal>) -> RefusalReason {
        let refusal = result.unwrap_err();
        assert_eq!(refusal.kind, SYM);
        refusal.reason
    }

    #[test]
    fn a_first_share_is_new_and_the_mth_completes() {
        let w = world();
        let first = admit(&held(&[], true), &incoming(facts(&w, 2, b"two"))).unwrap();
        assert_eq!(first, Admission::New { received: 1, m: 2 });
        assert!(!first.is_complete());
        assert_eq!(
            first.applied(),
            Applied::Done(InstallProgress::NeedMore { received: 1, m: 2 })
        );
        let kept = [facts(&w, 2, b"two")];
        let second = admit(&held(&kept, true), &incoming(facts(&w, 3, b"three"))).unwrap();
        assert_eq!(second, Admission::New { received: 2, m: 2 });
        assert!(second.is_complete());
        assert_eq!(second.applied(), Applied::Done(InstallProgress::Complete));
    }

    #[test]
    fn the_same_share_again_is_already_received_even_when_complete() {
        let w = world();
        let kept = [facts(&w, 1, b"one")];
        let again = admit(&held(&kept, true), &incoming(facts(&w, 1, b"one"))).unwrap();
        assert_eq!(again, Admission::AlreadyReceived { received: 1, m: 2 });
        assert_eq!(
            again.applied(),
            Applied::AlreadyDone(InstallProgress::NeedMore { received: 1, m: 2 })
        );
        // After the m-th share NEW is full: a share already held is still "already
        // received", not "NEW not empty" nor "complete".
        let both = [facts(&w, 1, b"one"), facts(&w, 3, b"three")];
        let again = admit(&held(&both, false), &incoming(facts(&w, 3, b"three"))).unwrap();
        assert_eq!(
            again.applied(),
            Applied::AlreadyDone(InstallProgress::Complete)
        );
        assert_eq!(again.received(), 2);
    }

    #[test]
    fn a_share_of_another_kind_is_rejected() {
        let w = world();
        let mut share = incoming(facts(&w, 1, b"one"));
        share.kind = CloneableKind::Asym;
        assert_refusal!(
            admit(&held(&[], true), &share),
            RefusalReason::WrongKind {
                share: CloneableKind::Asym
            },
            BackendError::ShareRejected
        );
    }

    #[test]
    fn a_share_for_another_m_of_n_is_a_mismatch() {
        let w = world();
        let mut share = incoming(facts(&w, 1, b"one"));
        share.m_of_n = mofn(2, 4);
        assert_refusal!(
            admit(&held(&[], true), &share),
            RefusalReason::MofNMismatch {
                share: mofn(2, 4),
                node: mofn(2, 3)
            },
            BackendError::ShareMismatch { kind: SYM }
        );
    }

    #[test]
    fn an_index_beyond_n_is_out_of_range() {
        let w = world();
        assert_refusal!(
            admit(&held(&[], true), &incoming(facts(&w, 4, b"four"))),
            RefusalReason::IndexOutOfRange { n: 3 },
            BackendError::IndexOutOfRange { index, n: 3 } if index == idx(4)
        );
    }

    #[test]
    fn a_share_of_another_source_or_key_is_a_mismatch() {
        let w = world();
        let kept = [facts(&w, 1, b"one")];
        let mut other_source = facts(&w, 2, b"two");
        other_source.origin_eid = &w.other_source;
        let mut other_key = facts(&w, 2, b"two");
        other_key.source_pattern = &w.other_key;
        for share in [other_source, other_key] {
            let refusal = admit(&held(&kept, true), &incoming(share)).unwrap_err();
            assert!(
                matches!(refusal.reason, RefusalReason::OtherSource { .. }),
                "{refusal}"
            );
            assert!(matches!(
                BackendError::from(refusal),
                BackendError::ShareMismatch { kind: SYM }
            ));
        }
        // Even under an index already held: the source is checked first.
        let mut same_index = facts(&w, 1, b"one");
        same_index.source_pattern = &w.other_key;
        assert!(matches!(
            reason(admit(&held(&kept, true), &incoming(same_index))),
            RefusalReason::OtherSource { .. }
        ));
    }

    #[test]
    fn a_different_share_under_a_received_index_is_a_conflict() {
        let w = world();
        let kept = [facts(&w, 1, b"one")];
        assert_refusal!(
            admit(&held(&kept, true), &incoming(facts(&w, 1, b"not one"))),
            RefusalReason::IndexConflict,
            BackendError::DuplicateShare { kind: SYM, index } if index == idx(1)
        );
    }

    #[test]
    fn a_first_share_needs_new_empty() {
        let w = world();
        assert_refusal!(
            admit(&held(&[], false), &incoming(facts(&w, 1, b"one"))),
            RefusalReason::NewNotEmpty,
            BackendError::NewNotEmpty { kind: SYM }
        );
    }

    #[test]
    fn a_new_index_after_completion_is_refused() {
        let w = world();
        let kept = [facts(&w, 1, b"one"), facts(&w, 2, b"two")];
        assert_refusal!(
            admit(&held(&kept, false), &incoming(facts(&w, 3, b"three"))),
            RefusalReason::KeyAlreadyComplete,
            BackendError::KeyAlreadyComplete { kind: SYM }
        );
    }

    #[test]
    fn the_rebuilt_key_must_be_the_sources() {
        assert!(check_rebuilt(SYM, idx(2), &pattern(1), &pattern(1)).is_ok());
        let refusal = check_rebuilt(SYM, idx(2), &pattern(2), &pattern(1)).unwrap_err();
        assert!(matches!(
            refusal.reason,
            RefusalReason::RebuiltKeyMismatch { .. }
        ));
        let text = refusal.to_string();
        assert!(
            text.starts_with("SYM share 2 refused: the rebuilt key's pattern"),
            "{text}"
        );
        assert!(matches!(
            BackendError::from(refusal),
            BackendError::ShareMismatch { kind: SYM }
        ));
        // Patterns of another algorithm never match.
        let sha256 = VerificationPattern::new(PatternAlgorithm::Sha256Method, &[1; 8]).unwrap();
        assert!(check_rebuilt(SYM, idx(2), &sha256, &pattern(1)).is_err());
    }

    #[test]
    fn checks_run_in_the_cards_order() {
        let w = world();
        // Wrong kind beats everything else.
        let mut share = incoming(facts(&w, 9, b"x"));
        share.kind = CloneableKind::Asym;
        share.m_of_n = mofn(1, 1);
        assert!(matches!(
            reason(admit(&held(&[], false), &share)),
            RefusalReason::WrongKind { .. }
        ));
        // m-of-n before the index.
        share.kind = SYM;
        assert!(matches!(
            reason(admit(&held(&[], false), &share)),
            RefusalReason::MofNMismatch { .. }
        ));
        // Already complete before NEW not empty.
        let kept = [facts(&w, 1, b"one"), facts(&w, 2, b"two")];
        assert_eq!(
            reason(admit(&held(&kept, false), &incoming(facts(&w, 3, b"3")))),
            RefusalReason::KeyAlreadyComplete
        );
    }
}
