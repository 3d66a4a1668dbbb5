//! Domain types refuse what CCA refuses, and say what a legal value looks like.

use mkclone_backend::{
    Applied, Certificate, CloneableKind, DomainError, Eid, HashAlgorithm, KeyLabel, KeyRole,
    KeyUsage, MasterKeyKind, MofN, PatternAlgorithm, PublicKeyHash, PublicKeyToken, SerialNumber,
    ShareIndex, VerificationPattern,
};
use proptest::prelude::*;

#[test]
fn key_labels_follow_cca_rules() {
    for good in [
        "A",
        "MKCLONE.SA",
        "#$@.A1.B2",
        "ABCDEFGH.ABCDEFGH.ABCDEFGH.ABCDEFGH.ABCDEFGH.ABCDEFGH.ABCDEFGH",
    ] {
        let l = KeyLabel::new(good).unwrap();
        assert_eq!(KeyLabel::from_wire(&l.to_wire()).unwrap(), l);
    }
    for (bad, hint) in [
        ("", "empty"),
        ("mkclone.sa", "upper case"),
        ("1ABC", "starts with a letter"),
        ("A..B", "1 to 8"),
        ("ABCDEFGHI", "1 to 8"),
        ("A B", "allowed characters"),
        ("A.B.C.D.E.F.G.H.I", "at most 8"),
    ] {
        let err = KeyLabel::new(bad).unwrap_err();
        assert!(matches!(err, DomainError::KeyLabel { .. }));
        assert!(err.to_string().contains(hint), "{bad:?}: {err}");
    }
    assert!(KeyLabel::new(&"A".repeat(65)).is_err());
}

#[test]
fn eids_serials_and_their_wire_forms() {
    let e = Eid::new("NODE 1").unwrap();
    assert_eq!(&e.to_wire(), b"NODE 1          ");
    assert_eq!(Eid::from_wire(&e.to_wire()).unwrap(), e);
    assert!(Eid::new("").is_err());
    assert!(Eid::new("                ").is_err());
    assert!(Eid::new("SEVENTEEN CHARS!!").is_err());
    assert!(Eid::new("tab\there").is_err());
    assert!(Eid::from_wire(b"short").is_err());
    let s = SerialNumber::new("93AB").unwrap();
    assert_eq!(SerialNumber::from_wire(&s.to_wire()).unwrap(), s);
    assert!(SerialNumber::new("   ").is_err());
    assert!(SerialNumber::new("123456789").is_err());
}

#[test]
fn m_of_n_and_share_index() {
    assert!(MofN::new(1, 1).is_ok());
    assert!(MofN::new(15, 15).is_ok());
    assert!(MofN::new(3, 2).is_err());
    assert!(MofN::new(0, 2).is_err());
    assert!(MofN::new(2, 16).is_err());
    let mn = MofN::new(3, 5).unwrap();
    assert_eq!(
        mn.indices().map(|i| i.get()).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(ShareIndex::new(5).unwrap().check_against(mn).is_ok());
    let err = ShareIndex::new(6).unwrap().check_against(mn).unwrap_err();
    assert!(err.to_string().contains("1 to 5"), "{err}");
    assert!(ShareIndex::from_u32(0x1_0001).is_err());
    // serde goes through the same checks.
    assert!(serde_json::from_str::<MofN>("[4, 3]").is_err());
    assert!(serde_json::from_str::<ShareIndex>("0").is_err());
    assert!(serde_json::from_str::<KeyLabel>("\"lower\"").is_err());
}

#[test]
fn kinds_usages_patterns() {
    assert_eq!(MasterKeyKind::parse("des").unwrap(), MasterKeyKind::Sym);
    assert!(MasterKeyKind::parse("3des").is_err());
    assert!(matches!(
        MasterKeyKind::Aes.cloneable(),
        Err(DomainError::CloningNotSupported { .. })
    ));
    assert_eq!(CloneableKind::Asym.keyword(), "ASYM-MK");
    assert_eq!(KeyRole::Sa.usage(), KeyUsage::SignatureOnly);
    assert_eq!(KeyRole::Css.usage(), KeyUsage::SignatureOnly);
    assert_eq!(KeyRole::Csr.usage(), KeyUsage::KeyManagementOnly);

    let a = VerificationPattern::new(PatternAlgorithm::Sha1Method, &[1; 8]).unwrap();
    let b = VerificationPattern::new(PatternAlgorithm::Sha256Method, &[1; 8]).unwrap();
    let c = VerificationPattern::new(PatternAlgorithm::Mdc4, &[1; 16]).unwrap();
    assert_eq!(a.matches(&a.clone()), Some(true));
    assert_eq!(a.matches(&b), None, "unlike algorithms are never compared");
    assert_eq!(a.matches(&c), None);
    assert!(VerificationPattern::new(PatternAlgorithm::Mdc4, &[1; 8]).is_err());
    assert!(PublicKeyHash::new(HashAlgorithm::Sha256, &[0; 20]).is_err());
    let h = PublicKeyHash::new(HashAlgorithm::Sha256, &[0xAB; 32]).unwrap();
    assert!(h.fingerprint().starts_with("ABAB ABAB"));
}

#[test]
fn opaque_tokens_check_their_identifier() {
    assert!(PublicKeyToken::new(vec![0x1E; 8]).is_ok());
    assert!(PublicKeyToken::new(vec![0x1F; 8]).is_err());
    assert!(Certificate::new(vec![0x40, 0, 0, 4]).is_ok());
    assert!(Certificate::new(vec![0x41, 0, 0, 4]).is_err());
    assert!(format!("{:?}", Certificate::new(vec![0x40, 0, 0, 4]).unwrap()).contains("4 bytes"));
    assert_eq!(
        Applied::AlreadyDone(3).map(|x| x + 1),
        Applied::AlreadyDone(4)
    );
}

proptest! {
    #[test]
    fn label_wire_form_round_trips_and_never_panics(bytes in proptest::collection::vec(any::<u8>(), 64)) {
        if let Ok(l) = KeyLabel::from_wire(&bytes) {
            prop_assert_eq!(KeyLabel::from_wire(&l.to_wire()).unwrap(), l);
        }
        let _ = Eid::from_wire(&bytes[..16]);
        let _ = SerialNumber::from_wire(&bytes[..8]);
    }

    #[test]
    fn valid_m_of_n_always_accepted(m in 1u8..=15, extra in 0u8..15) {
        let n = m.saturating_add(extra).min(15);
        prop_assert!(MofN::new(m, n).is_ok());
    }
}

/// A pattern or hash read from JSON (a ceremony file, a card file, a PKCS#11 token's data
/// object) is checked as `new` checks it: found by the `pkcs11_objects` fuzz target, a
/// registered SHA-256 hash of 20 bytes decoded from a token object
/// (fuzz/regressions/pkcs11_objects/sha256-hash-of-20-bytes). Hand-written JSON.
#[test]
fn deserialized_patterns_and_hashes_have_their_algorithms_length() {
    let hash = |text: &str| serde_json::from_str::<PublicKeyHash>(text);
    let twenty = "a5".repeat(20);
    let error = hash(&format!(r#"{{"algorithm":"sha256","bytes":"{twenty}"}}"#))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("a SHA-256 hash is 32 bytes, not 20"),
        "{error}"
    );
    let sha1 = hash(&format!(r#"{{"algorithm":"sha1","bytes":"{twenty}"}}"#)).unwrap();
    assert_eq!(
        sha1,
        PublicKeyHash::new(HashAlgorithm::Sha1, &[0xA5; 20]).unwrap()
    );
    // The fuzzer's form: the member twice, the last one (20 bytes) counting.
    let twice = format!(
        r#"{{"algorithm":"sha256","bytes":"{}","bytes":"{twenty}"}}"#,
        "a5".repeat(32)
    );
    assert!(serde_json::from_str::<serde_json::Value>(&twice).is_ok());
    assert!(
        serde_json::from_value::<PublicKeyHash>(serde_json::from_str(&twice).unwrap()).is_err()
    );

    let pattern = |text: &str| serde_json::from_str::<VerificationPattern>(text);
    for bad in [
        r#"{"algorithm":"sha1-method","bytes":""}"#,
        r#"{"algorithm":"sha1-method","bytes":"0102030405060708090a0b0c0d0e0f10"}"#,
        r#"{"algorithm":"mdc4","bytes":"0102030405060708"}"#,
    ] {
        let error = pattern(bad).unwrap_err().to_string();
        assert!(error.contains("verification pattern"), "{bad}: {error}");
    }
    let good =
        pattern(r#"{"algorithm":"mdc4","bytes":"0102030405060708090a0b0c0d0e0f10"}"#).unwrap();
    assert_eq!(
        good,
        VerificationPattern::new(PatternAlgorithm::Mdc4, &(1..=16).collect::<Vec<u8>>()).unwrap()
    );
    // Written as before: the members in order, lower-case hex.
    assert_eq!(
        serde_json::to_string(&good).unwrap(),
        r#"{"algorithm":"mdc4","bytes":"0102030405060708090a0b0c0d0e0f10"}"#
    );
}
