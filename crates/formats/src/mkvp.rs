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
    method::<Sha1>(PatternAlgorithm::Sha1Method, key)
}

/// The SHA-256-method pattern of a 32-byte master key.
pub fn sha256_method(key: &[u8; 32]) -> VerificationPattern {
    method::<Sha256>(PatternAlgorithm::Sha256Method, key)
}

/// The first 8 bytes of `D`(X'01' || key), as an `algorithm` pattern.
fn method<D: Digest>(algorithm: PatternAlgorithm, key: &[u8]) -> VerificationPattern {
    let digest = mkclone_backend::timing::measure(mkclone_backend::timing::Category::Sha, || {
        let mut h = D::new();
        h.update([0x01]);
        h.update(key);
        h.finalize()
    });
    pattern(algorithm, &digest)
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

    /// `method` of the N-byte key 00 01 .. is an `algorithm` pattern `counting`; of the
    /// key 01 01 .., `ones`.
    #[track_caller]
    fn check_vectors<const N: usize>(
        method: fn(&[u8; N]) -> VerificationPattern,
        algorithm: PatternAlgorithm,
        counting: &str,
        ones: &str,
    ) {
        let key: [u8; N] = std::array::from_fn(|i| i as u8);
        let p = method(&key);
        assert_eq!(p.algorithm(), algorithm);
        assert_eq!(hex::encode(p.bytes()), counting);
        assert_eq!(hex::encode(method(&[0x01; N]).bytes()), ones);
    }

    #[test]
    fn sha1_method_vectors() {
        // 00 01 .. 17
        check_vectors(
            sha1_method,
            PatternAlgorithm::Sha1Method,
            "cf5f3c9201ae70a9",
            "752b5e49f80534fb",
        );
    }

    #[test]
    fn sha256_method_vectors() {
        // 00 01 .. 1F
        check_vectors(
            sha256_method,
            PatternAlgorithm::Sha256Method,
            "491176b0f443c65a",
            "ce041765675ad4d9",
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
