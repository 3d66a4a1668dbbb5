//! Property tests: every encoder/decoder pair round-trips; no decoder panics on arbitrary
//! bytes or on mutations of valid encodings; and whatever a decoder accepts re-encodes to
//! the very same bytes (the encodings are canonical).

use mkclone_backend::{
    CloneableKind, Eid, KeyLabel, MofN, PatternAlgorithm, SerialNumber, ShareIndex,
    VerificationPattern,
};
use mkclone_formats::ShareValue;
use mkclone_formats::clone_info::{CloneInfo, SignedCloneInfo};
use mkclone_formats::pka::{
    CertInfo, CertificateSection, PublicKeyTokenView, RsaPublicKey, SignatureSubsection,
};
use mkclone_formats::seal::{SealedShareParts, ShareHeader};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn rsa_key() -> impl Strategy<Value = RsaPublicKey> {
    let modulus = prop_oneof![Just(256usize), Just(384), Just(512)]
        .prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len))
        .prop_map(|mut n| {
            n[0] |= 0x80;
            let last = n.len() - 1;
            n[last] |= 1;
            n
        });
    let exponent = prop_oneof![
        Just(vec![0x03]),
        Just(vec![0x01, 0x00, 0x01]),
        (1u64..(1 << 32)).prop_map(|e| {
            let e = e * 2 + 1;
            let bytes = e.to_be_bytes();
            let start = bytes.iter().position(|&b| b != 0).unwrap_or(7);
            bytes[start..].to_vec()
        }),
    ];
    (modulus, exponent).prop_map(|(n, e)| RsaPublicKey::new(n, e).unwrap())
}

fn key_label() -> impl Strategy<Value = KeyLabel> {
    "[A-Z#$@][A-Z0-9#$@]{0,7}(\\.[A-Z#$@][A-Z0-9#$@]{0,7}){0,3}"
        .prop_map(|s| KeyLabel::new(&s).unwrap())
}

fn eid() -> impl Strategy<Value = Eid> {
    "[A-Z0-9][A-Za-z0-9 .\\-_@#$&]{0,15}".prop_map(|s| Eid::new(&s).unwrap())
}

fn serial() -> impl Strategy<Value = SerialNumber> {
    "[!-~][ -~]{0,7}".prop_map(|s| SerialNumber::new(&s).unwrap())
}

fn signature() -> impl Strategy<Value = SignatureSubsection> {
    (
        any::<u8>(),
        any::<u8>(),
        key_label(),
        proptest::collection::vec(any::<u8>(), 1..600),
    )
        .prop_map(
            |(hash_id, format_id, signer, signature)| SignatureSubsection {
                hash_id,
                format_id,
                signer,
                signature,
            },
        )
}

fn cert_info() -> impl Strategy<Value = CertInfo> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=64)),
        proptest::option::of(eid()),
        proptest::option::of(serial()),
    )
        .prop_map(|(user_data, eid, serial)| CertInfo {
            user_data,
            eid,
            serial,
        })
}

fn certificate_for(key: RsaPublicKey) -> impl Strategy<Value = CertificateSection> {
    (cert_info(), proptest::collection::vec(signature(), 1..4)).prop_map(
        move |(info, signatures)| CertificateSection {
            key: key.clone(),
            info,
            signatures,
        },
    )
}

fn certificate() -> impl Strategy<Value = CertificateSection> {
    rsa_key().prop_flat_map(certificate_for)
}

fn token() -> impl Strategy<Value = PublicKeyTokenView> {
    rsa_key().prop_flat_map(|key| {
        proptest::option::of(certificate_for(key.clone())).prop_map(move |certificate| {
            PublicKeyTokenView {
                key: key.clone(),
                certificate,
            }
        })
    })
}

fn kind() -> impl Strategy<Value = CloneableKind> {
    prop_oneof![Just(CloneableKind::Sym), Just(CloneableKind::Asym)]
}

fn clone_info() -> impl Strategy<Value = SignedCloneInfo> {
    let setting = (1u8..=15).prop_flat_map(|n| (1u8..=n, Just(n), 1u8..=n));
    (
        setting,
        eid(),
        serial(),
        kind(),
        any::<[u8; 8]>(),
        any::<[u8; 24]>(),
        signature(),
    )
        .prop_map(
            |((m, n, index), origin_eid, origin_serial, kind, pattern, share, signature)| {
                SignedCloneInfo {
                    info: CloneInfo {
                        index: ShareIndex::new(index).unwrap(),
                        origin_eid,
                        origin_serial,
                        kind,
                        m_of_n: MofN::new(m, n).unwrap(),
                        source_pattern: VerificationPattern::new(
                            PatternAlgorithm::Sha1Method,
                            &pattern,
                        )
                        .unwrap(),
                        share: ShareValue::new(share),
                    },
                    signature,
                }
            },
        )
}

fn share_header() -> impl Strategy<Value = ShareHeader> {
    (eid(), any::<[u8; 32]>(), kind(), 1u8..=15, eid()).prop_map(
        |(target_eid, csr_fingerprint, kind, index, origin_eid)| ShareHeader {
            target_eid,
            csr_fingerprint,
            kind,
            index: ShareIndex::new(index).unwrap(),
            origin_eid,
        },
    )
}

fn container() -> impl Strategy<Value = SealedShareParts> {
    (
        share_header(),
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(any::<u8>(), 0..1000),
    )
        .prop_map(
            |(header, wrapped_key, encrypted_clone_info)| SealedShareParts {
                header,
                wrapped_key,
                encrypted_clone_info,
            },
        )
}

/// A mutation of a byte string: flip, overwrite, insert, delete, truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<prop::sample::Index>(), 1u8..).prop_map(|(i, x)| Mutation::Xor(i, x)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Set(i, x)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ];
    proptest::collection::vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Xor(i, x) => {
                let i = i.index(bytes.len());
                bytes[i] ^= x;
            }
            Mutation::Set(i, x) => {
                let i = i.index(bytes.len());
                bytes[i] = *x;
            }
            Mutation::Insert(i, x) => {
                let i = i.index(bytes.len() + 1);
                bytes.insert(i, *x);
            }
            Mutation::Delete(i) => {
                let i = i.index(bytes.len());
                bytes.remove(i);
            }
            Mutation::Truncate(i) => {
                let i = i.index(bytes.len());
                bytes.truncate(i);
            }
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// "Whatever decodes re-encodes to itself" for each structure
// ---------------------------------------------------------------------------------------

fn canonical_token(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(v) = PublicKeyTokenView::from_bytes(bytes) {
        prop_assert_eq!(v.encode().unwrap().into_bytes(), bytes.to_vec());
    }
    Ok(())
}

fn canonical_certificate(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(v) = CertificateSection::from_bytes(bytes) {
        prop_assert_eq!(v.encode().unwrap().into_bytes(), bytes.to_vec());
    }
    Ok(())
}

fn canonical_clone_info(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(v) = SignedCloneInfo::decode(bytes) {
        prop_assert_eq!(&v.encode().unwrap()[..], bytes);
    }
    Ok(())
}

fn canonical_container(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(v) = SealedShareParts::from_bytes(bytes) {
        prop_assert_eq!(v.encode().unwrap().into_bytes(), bytes.to_vec());
    }
    Ok(())
}

/// `$value` encodes, and its bytes decode (`$decode`) to it again: the bytes.
macro_rules! prop_assert_round_trip {
    ($value:expr, $decode:path) => {{
        let bytes = $value.encode().unwrap();
        prop_assert_eq!($decode(&bytes).unwrap(), $value);
        bytes
    }};
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // --- round trips ---------------------------------------------------------------------

    #[test]
    fn certificate_round_trips(c in certificate()) {
        prop_assert_round_trip!(c, CertificateSection::decode);
    }

    #[test]
    fn token_round_trips(t in token()) {
        prop_assert_round_trip!(t, PublicKeyTokenView::decode);
    }

    #[test]
    fn clone_info_round_trips(c in clone_info()) {
        let bytes = prop_assert_round_trip!(c, SignedCloneInfo::decode);
        prop_assert_eq!((bytes.len() - 36) % 8, 0);
        prop_assert_eq!(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), bytes.len());
    }

    #[test]
    fn container_round_trips(p in container()) {
        prop_assert_round_trip!(p, SealedShareParts::decode);
    }

    #[test]
    fn key_fingerprints_differ(a in rsa_key(), b in rsa_key()) {
        prop_assert_eq!(a == b, a.fingerprint() == b.fingerprint());
    }

    // --- arbitrary bytes -----------------------------------------------------------------

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), first in any::<u8>()) {
        for candidate in [bytes.clone(), [&[first][..], &bytes[..]].concat()] {
            canonical_token(&candidate)?;
            canonical_certificate(&candidate)?;
            canonical_clone_info(&candidate)?;
            canonical_container(&candidate)?;
        }
        // With the right leading bytes the decoders get further.
        for id in [0x1E_u8, 0x40, 0x1D] {
            let mut c = vec![id, 0x00];
            let len = (bytes.len() + 4) as u16;
            c.extend_from_slice(&len.to_be_bytes());
            c.extend_from_slice(&bytes);
            canonical_token(&c)?;
            canonical_certificate(&c)?;
            canonical_clone_info(&c)?;
        }
        let mut c = b"MKCSHARE\x00\x01".to_vec();
        c.extend_from_slice(&bytes);
        canonical_container(&c)?;
    }
}

// --- mutations of valid encodings --------------------------------------------------------

/// One property test per format: every mutation of a valid encoding (`$bytes` takes the
/// encoding's bytes) decodes to something that re-encodes canonically, or is refused.
macro_rules! mutation_tests {
    ($($name:ident: $strategy:expr, $bytes:ident, $check:ident;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            $(
                #[test]
                fn $name(value in $strategy, ms in mutations()) {
                    $check(&mutate(value.encode().unwrap().$bytes(), &ms))?;
                }
            )*
        }
    };
}

mutation_tests! {
    mutated_tokens: token(), into_bytes, canonical_token;
    mutated_certificates: certificate(), into_bytes, canonical_certificate;
    mutated_clone_info: clone_info(), to_vec, canonical_clone_info;
    mutated_containers: container(), into_bytes, canonical_container;
}
