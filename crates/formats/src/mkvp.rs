//! Master-key verification patterns (reference/cca-cloning.md, "Master-key verification
//! patterns").
//!
//! - SHA-1 method, for the 24-byte SYM and ASYM master keys: the first 8 bytes of
//!   SHA-1(X'01' || key).
//! - SHA-256 method, for the 32-byte AES and APKA master keys: the first 8 bytes of
//!   SHA-256(X'01' || key).
//!
//! MDC-4 (the 16-byte pattern STATICSA and sysfs `mkvps` report for ASYM) is ABSENT: no
//! published test vectors were available to test an implementation against, so it is not
//! implemented. A node's status can still carry an MDC-4 pattern read from a device
//! ([`PatternAlgorithm::Mdc4`]); mkclone compares only patterns of one algorithm.

use mkclone_backend::{PatternAlgorithm, VerificationPattern};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The SHA-1-method pattern of a 24-byte master key.
pub fn sha1_method(key: &[u8; 24]) -> VerificationPattern {
    let digest = mkclone_backend::timing::measure(mkclone_backend::timing::Category::Sha, || {
        let mut h = Sha1::new();
        h.update([0x01]);
        h.update(key);
        h.finalize()
    });
    pattern(PatternAlgorithm::Sha1Method, &digest)
}

/// The SHA-256-method pattern of a 32-byte master key.
pub fn sha256_method(key: &[u8; 32]) -> VerificationPattern {
    let digest = mkclone_backend::timing::measure(mkclone_backend::timing::Category::Sha, || {
        let mut h = Sha256::new();
        h.update([0x01]);
        h.update(key);
        h.finalize()
    });
    pattern(PatternAlgorithm::Sha256Method, &digest)
}

fn pattern(algorithm: PatternAlgorithm, digest: &[u8]) -> VerificationPattern {
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    match VerificationPattern::new(algorithm, &first) {
        Ok(p) => p,
        // Unreachable: both methods make 8-byte patterns, which is what the type expects.
        Err(_) => unreachable!("an 8-byte pattern is valid for the SHA-1 and SHA-256 methods"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed once, independently of this code, with Python's hashlib:
    //   python3 -c 'import hashlib; k=bytes(range(24)); print(hashlib.sha1(b"\x01"+k).hexdigest()[:16])'
    // (and likewise for the other keys; sha256 for the 32-byte ones).

    #[test]
    fn sha1_method_vectors() {
        let key: [u8; 24] = std::array::from_fn(|i| i as u8); // 00 01 .. 17
        let p = sha1_method(&key);
        assert_eq!(p.algorithm(), PatternAlgorithm::Sha1Method);
        assert_eq!(hex::encode(p.bytes()), "cf5f3c9201ae70a9");
        assert_eq!(
            hex::encode(sha1_method(&[0x01; 24]).bytes()),
            "752b5e49f80534fb"
        );
    }

    #[test]
    fn sha256_method_vectors() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8); // 00 01 .. 1F
        let p = sha256_method(&key);
        assert_eq!(p.algorithm(), PatternAlgorithm::Sha256Method);
        assert_eq!(hex::encode(p.bytes()), "491176b0f443c65a");
        assert_eq!(
            hex::encode(sha256_method(&[0x01; 32]).bytes()),
            "ce041765675ad4d9"
        );
    }

    #[test]
    fn the_x01_prefix_matters() {
        // SHA-1 of the bare key (no X'01') must differ: guards against dropping the prefix.
        let key = [0x01; 24];
        let bare = Sha1::digest(key);
        assert_ne!(&bare[..8], sha1_method(&key).bytes());
    }
}
