//! CCA return and reason codes, with messages.
//!
//! IBM's codes come from the IBM 4758 CCA Basic Services Reference, release 2.54
//! (`reference/cca-cloning.md`, "Return / reason codes"). Conditions the simulator must
//! report for which no IBM reason code is published use PROJECT-ASSIGNED reason codes
//! from 0xF000 up; they are never presented as IBM's.

use mkclone_backend::rules::RefusalReason;

/// Return codes.
pub mod rt {
    pub const OK: u16 = 0;
    pub const WARNING: u16 = 4;
    pub const ERROR: u16 = 8;
    pub const SEVERE: u16 = 12;
}

/// Reason codes.
pub mod rs {
    // --- IBM, CCA Basic Services Reference 2.54 ---
    /// 4/1024: sufficient shares processed; the new master key is complete.
    pub const SUFFICIENT_SHARES: u16 = 1024;
    pub const NAME_EXISTS: u16 = 1025;
    pub const NAME_NOT_FOUND: u16 = 1026;
    pub const EID_ALREADY_SET: u16 = 1027;
    pub const SHARE_DATA_ALREADY_SET: u16 = 1028;
    pub const EID_DATA_ERROR: u16 = 1029;
    pub const SHARE_DATA_ERROR: u16 = 1030;
    pub const KEY_USE_ERROR: u16 = 1031;
    pub const HASH_USE_ERROR: u16 = 1032;
    pub const HASH_NOT_REGISTERED: u16 = 1033;
    pub const KEY_NOT_REGISTERED: u16 = 1034;
    pub const CERTIFICATE_NOT_VERIFIED: u16 = 1035;
    pub const SHARE_DISTRIBUTION_ERROR: u16 = 1037;
    pub const HASH_NOT_FOR_CLONING: u16 = 1038;
    pub const KEY_DOES_NOT_MATCH_HASH: u16 = 1039;
    /// 8/1040 (X'410'): the master-key share enciphering key failed ([BSR 2.54] Appendix A,
    /// Figure A-4, page 5 of 6). On INSTALL it is the share's clone-info-encrypting key
    /// that does not decipher under the CSR key: one more "share rejected".
    pub const SHARE_KEY_FAILED: u16 = 1040;

    // --- IBM, codes every verb may answer ([BSR 2.54] Figure A-4, page 1 of 6) ---
    /// A rule array or other parameter specifies a keyword that is not valid.
    pub const BAD_KEYWORD: u16 = 33;
    /// A rule-array keyword combination is not valid.
    pub const BAD_KEYWORD_COMBINATION: u16 = 34;
    /// A rule-array count is not valid.
    pub const BAD_RULE_COUNT: u16 = 35;
    /// The verb data, or its length, is not valid (IBM's CCA for Linux on IBM Z, "Verb data
    /// returned for CSUACFQ keywords"; the simulated host library also answers it for an
    /// output buffer too small for the answer).
    pub const BAD_VERB_DATA_LENGTH: u16 = 72;

    // --- project-assigned (no IBM code published for these conditions) ---
    pub const PROJECT_BASE: u16 = 0xF000;
    /// The share's header names another node.
    pub const WRONG_TARGET: u16 = 0xF001;
    /// m-of-n data out of range (1 <= m <= n <= 15).
    pub const BAD_MOFN: u16 = 0xF002;
    /// Share index outside 1..=n.
    pub const INDEX_OUT_OF_RANGE: u16 = 0xF003;
    /// INSTALL after the NEW key is complete.
    pub const KEY_ALREADY_COMPLETE: u16 = 0xF004;
    /// SET with the NEW register not full.
    pub const NEW_NOT_FULL: u16 = 0xF005;
    /// OBTAIN with the CURRENT register not valid.
    pub const CURRENT_NOT_VALID: u16 = 0xF006;
    /// First INSTALL with the NEW register not empty.
    pub const NEW_NOT_EMPTY: u16 = 0xF007;
    /// OBTAIN/INSTALL before SET-MOFN.
    pub const MOFN_NOT_SET: u16 = 0xF008;
    /// (return code 4) This share index was already received, with the same share.
    pub const SHARE_ALREADY_RECEIVED: u16 = 0xF009;
    /// This share index was already received with a different share.
    pub const SHARE_INDEX_CONFLICT: u16 = 0xF00A;
    /// The key's CLONE mark differs from the one on its registered hash.
    pub const CLONE_MARK_MISMATCH: u16 = 0xF00B;
    /// The retained key's usage does not allow the operation.
    pub const WRONG_KEY_USAGE: u16 = 0xF00C;
    /// (return code 4) The register was already in the requested state.
    pub const ALREADY_IN_STATE: u16 = 0xF00D;
    /// The request is malformed for this verb.
    pub const MALFORMED_REQUEST: u16 = 0xF00E;
    /// A function code the card does not implement.
    pub const UNKNOWN_FUNCTION: u16 = 0xF00F;
    /// The certificate section is malformed or its signature does not verify.
    pub const CERTIFICATE_REJECTED: u16 = 0xF010;
}

/// The reason code a card answers (return code 8) when it refuses a share by the rules
/// (`mkclone_backend::rules::admission`). `CcaBackend` maps each back to the typed error
/// `BackendError::from(refusal)` gives, so that a refusal reads the same on every backend.
pub fn refusal_reason(reason: &RefusalReason) -> u16 {
    match reason {
        // The signed content disagrees with the request: as any other unusable share.
        RefusalReason::WrongKind { .. } => rs::SHARE_DATA_ERROR,
        RefusalReason::MofNMismatch { .. }
        | RefusalReason::OtherSource { .. }
        | RefusalReason::RebuiltKeyMismatch { .. } => rs::SHARE_DISTRIBUTION_ERROR,
        RefusalReason::IndexOutOfRange { .. } => rs::INDEX_OUT_OF_RANGE,
        RefusalReason::IndexConflict => rs::SHARE_INDEX_CONFLICT,
        RefusalReason::KeyAlreadyComplete => rs::KEY_ALREADY_COMPLETE,
        RefusalReason::NewNotEmpty => rs::NEW_NOT_EMPTY,
    }
}

/// Whether a reason code is IBM's or mkclone's.
pub fn is_project_assigned(reason: u16) -> bool {
    reason >= rs::PROJECT_BASE
}

/// A human message for a return/reason pair.
pub fn message(return_code: u16, reason_code: u16) -> &'static str {
    use rs::*;
    match (return_code, reason_code) {
        (0, 0) => "success",
        (4, SUFFICIENT_SHARES) => "sufficient shares processed: the new master key is complete",
        (_, NAME_EXISTS) => "a key or registration with this name already exists",
        (_, NAME_NOT_FOUND) => "no key or registration with this name exists",
        (_, EID_ALREADY_SET) => "the environment ID is already set",
        (_, SHARE_DATA_ALREADY_SET) => "share data already set",
        (_, EID_DATA_ERROR) => "environment ID data error",
        (_, SHARE_DATA_ERROR) => "error using the share data",
        (_, KEY_USE_ERROR) => "error using a registered or retained key",
        (_, HASH_USE_ERROR) => "error using a registered hash",
        (_, HASH_NOT_REGISTERED) => "the public-key hash is not registered",
        (_, KEY_NOT_REGISTERED) => "the public key is not registered",
        (_, CERTIFICATE_NOT_VERIFIED) => "the certificate's signature does not verify",
        (_, SHARE_DISTRIBUTION_ERROR) => "share distribution error",
        (_, HASH_NOT_FOR_CLONING) => "the registered hash is not marked for cloning",
        (_, KEY_DOES_NOT_MATCH_HASH) => "the registered key does not match the registered hash",
        (_, SHARE_KEY_FAILED) => "the master-key share enciphering key failed",
        (8, BAD_KEYWORD) => "a rule-array keyword or other keyword parameter is not valid",
        (8, BAD_KEYWORD_COMBINATION) => "the rule-array keyword combination is not valid",
        (8, BAD_RULE_COUNT) => "the rule-array count is not valid",
        (8, BAD_VERB_DATA_LENGTH) => {
            "the verb data or its length is not valid (an output buffer too small for the answer)"
        }
        (_, WRONG_TARGET) => "[mkclone] the share is addressed to another node",
        (_, BAD_MOFN) => "[mkclone] m-of-n out of range",
        (_, INDEX_OUT_OF_RANGE) => "[mkclone] share index outside 1..n",
        (_, KEY_ALREADY_COMPLETE) => "[mkclone] the new master key is already complete",
        (_, NEW_NOT_FULL) => "[mkclone] the NEW master-key register is not full",
        (_, CURRENT_NOT_VALID) => "[mkclone] the CURRENT master-key register is not valid",
        (_, NEW_NOT_EMPTY) => "[mkclone] the NEW master-key register is not empty",
        (_, MOFN_NOT_SET) => "[mkclone] m-of-n is not set",
        (_, SHARE_ALREADY_RECEIVED) => "[mkclone] this share was already received",
        (_, SHARE_INDEX_CONFLICT) => {
            "[mkclone] a different share with this index was already received"
        }
        (_, CLONE_MARK_MISMATCH) => "[mkclone] the CLONE mark differs from the registered hash's",
        (_, WRONG_KEY_USAGE) => "[mkclone] the retained key's usage does not allow this",
        (_, ALREADY_IN_STATE) => "[mkclone] already in the requested state",
        (_, MALFORMED_REQUEST) => "[mkclone] the request is malformed",
        (_, UNKNOWN_FUNCTION) => "[mkclone] the card does not implement this function code",
        (_, CERTIFICATE_REJECTED) => "[mkclone] the certificate is malformed or does not verify",
        _ => "no message known for this code; see the CCA Basic Services Reference",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mkclone_backend::rules::Refusal;
    use mkclone_backend::{
        BackendError, CloneableKind, Eid, MofN, PatternAlgorithm, ShareIndex, VerificationPattern,
    };

    fn every_refusal() -> Vec<RefusalReason> {
        let mofn = MofN::new(2, 3).unwrap();
        let eid = Eid::new("SOURCE").unwrap();
        let pattern = VerificationPattern::new(PatternAlgorithm::Sha1Method, &[1; 8]).unwrap();
        vec![
            RefusalReason::WrongKind {
                share: CloneableKind::Asym,
            },
            RefusalReason::MofNMismatch {
                share: mofn,
                node: mofn,
            },
            RefusalReason::IndexOutOfRange { n: 3 },
            RefusalReason::OtherSource {
                origin: eid.clone(),
                pattern: pattern.clone(),
                held_origin: eid,
                held_pattern: pattern.clone(),
            },
            RefusalReason::IndexConflict,
            RefusalReason::KeyAlreadyComplete,
            RefusalReason::NewNotEmpty,
            RefusalReason::RebuiltKeyMismatch {
                rebuilt: pattern.clone(),
                signed: pattern,
            },
        ]
    }

    /// Two refusals share a reason code exactly when they are one typed error, so the
    /// code carries everything `CcaBackend` needs to give the error the rules give.
    #[test]
    fn refusal_codes_keep_the_typed_errors_apart() {
        let error = |reason: &RefusalReason| {
            std::mem::discriminant(&BackendError::from(Refusal {
                kind: CloneableKind::Sym,
                index: ShareIndex::new(1).unwrap(),
                reason: reason.clone(),
            }))
        };
        let all = every_refusal();
        for a in &all {
            let text = message(rt::ERROR, refusal_reason(a));
            assert!(!text.starts_with("no message known"), "{a:?}: {text}");
            for b in &all {
                assert_eq!(
                    refusal_reason(a) == refusal_reason(b),
                    error(a) == error(b),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn project_reason_codes_never_collide_with_ibm_ranges() {
        for code in [
            rs::WRONG_TARGET,
            rs::BAD_MOFN,
            rs::CERTIFICATE_REJECTED,
            rs::UNKNOWN_FUNCTION,
        ] {
            assert!(is_project_assigned(code));
            assert!(message(8, code).starts_with("[mkclone]"));
        }
        for code in [
            rs::NAME_EXISTS,
            rs::KEY_DOES_NOT_MATCH_HASH,
            rs::SUFFICIENT_SHARES,
        ] {
            assert!(!is_project_assigned(code));
            assert!(!message(8, code).starts_with("[mkclone]"));
        }
    }
}
