//! Shared test fixtures: 2048-bit RSA keys generated once per test binary from a seeded
//! RNG, and the private-key operations a device would do (allowed in tests only).

#![allow(dead_code)]

// Writes golden vectors out as fuzz seeds when MKCLONE_FUZZ_SEEDS is set.
#[path = "../../../../fuzz/seed_export.rs"]
pub mod seed_export;

use std::sync::OnceLock;

use mkclone_backend::{
    CloneableKind, Eid, KeyLabel, MofN, PatternAlgorithm, SerialNumber, ShareIndex,
    VerificationPattern,
};
use mkclone_formats::ShareValue;
use mkclone_formats::clone_info::CloneInfo;
use mkclone_formats::pka::RsaPublicKey;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rsa::{Oaep, Pkcs1v15Sign, PrivateKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub struct Keys {
    pub sa: PrivateKey,
    pub css: PrivateKey,
    pub csr: PrivateKey,
    /// Another target's CSR key.
    pub other: PrivateKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x6d6b_636c_6f6e_6531);
        let mut gen_key = || PrivateKey::new(&mut rng, 2048).expect("RSA key generation");
        Keys {
            sa: gen_key(),
            css: gen_key(),
            csr: gen_key(),
            other: gen_key(),
        }
    })
}

pub fn public(key: &PrivateKey) -> RsaPublicKey {
    RsaPublicKey::from_rsa(key.as_public_key()).expect("a 2048-bit key is valid")
}

/// What a device does with a retained signing key: SHA-256, then PKCS#1 v1.5.
pub fn sign(key: &PrivateKey, bytes: &[u8]) -> Vec<u8> {
    key.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(bytes))
        .expect("sign")
}

/// What a target device does with its CSR key: RSA-OAEP(SHA-1, MGF1-SHA1, no label).
pub fn unwrap_key(key: &PrivateKey, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, rsa::Error> {
    key.decrypt(Oaep::<sha1::Sha1>::new(), wrapped)
        .map(Zeroizing::new)
}

pub fn label(s: &str) -> KeyLabel {
    KeyLabel::new(s).unwrap()
}

pub fn eid(s: &str) -> Eid {
    Eid::new(s).unwrap()
}

pub fn css_label() -> KeyLabel {
    label("MKCLONE.CSS.KEY")
}

pub fn sample_info(index: u8) -> CloneInfo {
    CloneInfo {
        index: ShareIndex::new(index).unwrap(),
        origin_eid: eid("SOURCE.1"),
        origin_serial: SerialNumber::new("93AB1234").unwrap(),
        kind: CloneableKind::Asym,
        m_of_n: MofN::new(3, 5).unwrap(),
        source_pattern: VerificationPattern::new(
            PatternAlgorithm::Sha1Method,
            &[1, 2, 3, 4, 5, 6, 7, 8],
        )
        .unwrap(),
        share: ShareValue::new(std::array::from_fn(|i| 0xA0 ^ i as u8)),
    }
}

/// Concatenate hand-written fields.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A blank-padded 64-byte label field written by hand.
pub fn label_field(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.resize(64, b' ');
    v
}

/// A blank-padded fixed-width ASCII field written by hand.
pub fn ascii_field(text: &str, width: usize) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.resize(width, b' ');
    v
}
