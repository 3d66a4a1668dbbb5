//! RSA key generation for the simulated card.
//!
//! Real generation (`rsa`, 2048/3072/4096 bits) everywhere except in debug test builds
//! with the `test-keys` feature, where 2048-bit keys come from a pool pre-generated with a
//! seeded RNG (hw-sim/test-keys/pool-2048.hex), so that the suite stays fast on 2 cores.
//! The pool is compiled only with `debug_assertions`: a release build (the binary users
//! run, and the benchmarks) cannot reach it, even with the feature on.

use mkclone_backend::RsaModulusBits;
use rand::{CryptoRng, Rng};
use rsa::PrivateKey;

#[derive(Debug, thiserror::Error)]
#[error("RSA key generation failed: {0}")]
pub struct KeygenError(String);

pub fn generate<R: Rng + CryptoRng>(
    bits: RsaModulusBits,
    rng: &mut R,
) -> Result<PrivateKey, KeygenError> {
    #[cfg(all(feature = "test-keys", debug_assertions))]
    if bits == RsaModulusBits::B2048 {
        return pool::next();
    }
    PrivateKey::new(rng, usize::from(bits.bits())).map_err(|e| KeygenError(e.to_string()))
}

#[cfg(all(feature = "test-keys", debug_assertions))]
mod pool {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rsa::PrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;

    use super::KeygenError;

    const POOL: &str = include_str!("../test-keys/pool-2048.hex");
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// Keys are handed out in turn, so the keys of one test process are distinct (the
    /// pool has 64; tests run at most a few at a time). Each process starts at an offset
    /// drawn from its pid (37 is coprime with 64, so processes spawned one after another
    /// start far apart), so that the processes of one multi-process test - `mkclone`
    /// runs, one phase each - do not all hand out the same first key.
    pub fn next() -> Result<PrivateKey, KeygenError> {
        let lines: Vec<&str> = POOL.lines().filter(|l| !l.is_empty()).collect();
        let start = (std::process::id() as usize).wrapping_mul(37);
        let i = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % lines.len();
        let der = hex::decode(lines[i]).map_err(|e| KeygenError(e.to_string()))?;
        PrivateKey::from_pkcs1_der(&der).map_err(|e| KeygenError(e.to_string()))
    }
}
