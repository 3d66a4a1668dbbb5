//! The triple-DES key that encrypts one cloning-information token, and EDE3-CBC with a
//! zero IV and no padding (the key is fresh per share, and the TLV area is already a
//! multiple of 8 bytes).

use std::fmt;

use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use des::TdesEde3;
use rand::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Triple-DES block size.
pub const BLOCK: usize = 8;

/// A 24-byte triple-DES (EDE3) key with odd parity in every byte.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct TdesKey([u8; 24]);

impl TdesKey {
    /// A fresh key from `rng`: odd parity fixed, refusing the weak and semi-weak DES keys
    /// and keys with two equal parts. `None` only if `rng` keeps producing such keys
    /// (8 tries), which a working generator does not.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Option<Self> {
        for _ in 0..8 {
            let mut key = Self([0; 24]);
            rng.fill_bytes(&mut key.0);
            fix_parity(&mut key.0);
            if des::weak_key_test(&key.0).is_ok() {
                return Some(key);
            }
        }
        None
    }

    /// A key from given bytes (golden vectors, keys drawn elsewhere); parity is fixed.
    /// The caller is responsible for using it for one share only.
    pub fn from_bytes(bytes: [u8; 24]) -> Self {
        let mut key = Self(bytes);
        fix_parity(&mut key.0);
        key
    }

    /// A key unwrapped from a sealed share: exactly 24 bytes with odd parity, or `None`.
    pub(crate) fn from_unwrapped(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 24] = bytes.try_into().ok()?;
        has_odd_parity(bytes).then(|| Self(*bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 24] {
        &self.0
    }

    /// EDE3-CBC, zero IV, no padding; `None` when `data` is not whole blocks.
    pub(crate) fn encrypt_cbc(&self, data: &mut [u8]) -> Option<()> {
        cbc_blocks(
            data,
            || cbc::Encryptor::<TdesEde3>::new((&self.0).into(), &[0u8; BLOCK].into()),
            |enc, block| enc.encrypt_block(block),
        )
    }

    /// The inverse of [`TdesKey::encrypt_cbc`].
    pub(crate) fn decrypt_cbc(&self, data: &mut [u8]) -> Option<()> {
        cbc_blocks(
            data,
            || cbc::Decryptor::<TdesEde3>::new((&self.0).into(), &[0u8; BLOCK].into()),
            |dec, block| dec.decrypt_block(block),
        )
    }
}

impl fmt::Debug for TdesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TdesKey(<redacted>)")
    }
}

/// Run a CBC mode (made by `mode`, timed with it) over `data` block by block with
/// `apply`; `None` when `data` is not whole blocks.
fn cbc_blocks<M>(
    data: &mut [u8],
    mode: impl FnOnce() -> M,
    mut apply: impl FnMut(&mut M, &mut cbc::cipher::Block<TdesEde3>),
) -> Option<()> {
    if !data.len().is_multiple_of(BLOCK) {
        return None;
    }
    mkclone_backend::timing::measure(mkclone_backend::timing::Category::Tdes, || {
        let mut m = mode();
        for chunk in data.chunks_exact_mut(BLOCK) {
            let block = <&mut cbc::cipher::Block<TdesEde3>>::try_from(chunk).ok()?;
            apply(&mut m, block);
        }
        Some(())
    })
}

/// Set each byte's low bit so that the byte has an odd number of one bits (DES parity).
fn fix_parity(key: &mut [u8]) {
    for b in key.iter_mut() {
        let high = *b & 0xFE;
        *b = high | u8::from(high.count_ones() % 2 == 0);
    }
}

fn has_odd_parity(key: &[u8]) -> bool {
    key.iter().all(|b| b.count_ones() % 2 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What encrypts a share wipes its key schedule and chaining state when dropped (the
    /// `zeroize` features of des and cbc, root Cargo.toml): this does not compile without
    /// them.
    #[test]
    fn the_cipher_states_are_wiped_when_dropped() {
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<TdesEde3>();
        wiped_on_drop::<cbc::Encryptor<TdesEde3>>();
        wiped_on_drop::<cbc::Decryptor<TdesEde3>>();
        wiped_on_drop::<TdesKey>();
        // And they still encrypt and decrypt with the key handed by reference (no copy
        // of it on the stack).
        let key = TdesKey::from_bytes([0x5B; 24]);
        let mut data = [0x11; 16];
        key.encrypt_cbc(&mut data).unwrap();
        assert_ne!(data, [0x11; 16]);
        key.decrypt_cbc(&mut data).unwrap();
        assert_eq!(data, [0x11; 16]);
    }

    #[test]
    fn parity_is_fixed() {
        let k = TdesKey::from_bytes([0x00; 24]);
        assert_eq!(k.as_bytes(), &[0x01; 24]);
        let k = TdesKey::from_bytes([0xFF; 24]);
        assert_eq!(k.as_bytes(), &[0xFE; 24]);
        let k = TdesKey::from_bytes(std::array::from_fn(|i| i as u8 * 11));
        assert!(has_odd_parity(k.as_bytes()));
    }

    #[test]
    fn ede3_cbc_matches_openssl() {
        // Computed once, independently, with the OpenSSL 3.0 command line:
        //   python3 -c "import sys; sys.stdout.buffer.write(bytes(range(32)))" | openssl enc -des-ede3-cbc -nopad \
        //     -K 0123456789abcdef23456789abcdef01456789abcdef0123 -iv 0000000000000000 | xxd -p
        // over the 32 bytes 00 01 02 .. 1f, and confirmed with Python's `cryptography`
        // (TripleDES, CBC, IV 0). The key bytes already have odd parity.
        let key = TdesKey::from_bytes(hex_key("0123456789abcdef23456789abcdef01456789abcdef0123"));
        let mut data: Vec<u8> = (0u8..32).collect();
        key.encrypt_cbc(&mut data).unwrap();
        assert_eq!(hex::encode(&data), OPENSSL_CT);
        key.decrypt_cbc(&mut data).unwrap();
        assert_eq!(data, (0u8..32).collect::<Vec<_>>());
        assert!(key.encrypt_cbc(&mut [0u8; 7]).is_none());
    }

    const OPENSSL_CT: &str = "30329253bd29654072a1c27a3b483ebc4c34960fe4330515024d6fdf62f9b244";

    fn hex_key(s: &str) -> [u8; 24] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn unwrapped_keys_must_be_24_bytes_with_parity() {
        assert!(TdesKey::from_unwrapped(&[0x01; 24]).is_some());
        assert!(TdesKey::from_unwrapped(&[0x01; 23]).is_none());
        assert!(TdesKey::from_unwrapped(&[0x00; 24]).is_none());
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", TdesKey::from_bytes([0x13; 24])),
            "TdesKey(<redacted>)"
        );
    }
}
