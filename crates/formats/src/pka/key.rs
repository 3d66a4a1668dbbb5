//! [`RsaPublicKey`] and the key body shared by the token's X'04' section and the
//! certificate's X'41' subsection: 2 reserved zero bytes, 2-byte exponent length in bytes,
//! 2-byte modulus length in bits, 2-byte modulus length in bytes, exponent, modulus.

use std::fmt;

use mkclone_backend::RsaModulusBits;
use rsa::BoxedUint;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::error::{FormatError, Result};
use crate::ids;
use crate::reader::{Reader, Writer};

/// An RSA public key as CCA carries it: minimal big-endian modulus and exponent.
///
/// Valid by construction: the modulus is 2048, 3072 or 4096 bits and odd; the exponent is
/// odd, at least 3 and below 2^33 (the bound the `rsa` crate accepts); neither has a
/// leading zero byte.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RsaPublicKey {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

/// Largest public exponent accepted (the `rsa` crate's `PublicKey::MAX_PUB_EXPONENT`).
const MAX_EXPONENT: u64 = (1 << 33) - 1;

impl RsaPublicKey {
    /// Validate and build a key from minimal big-endian byte strings.
    pub fn new(modulus: Vec<u8>, exponent: Vec<u8>) -> Result<Self> {
        check_modulus(&modulus).map_err(|reason| FormatError::InvalidKey { reason })?;
        check_exponent(&exponent).map_err(|reason| FormatError::InvalidKey { reason })?;
        Ok(Self { modulus, exponent })
    }

    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    pub fn exponent(&self) -> &[u8] {
        &self.exponent
    }

    /// The modulus size (validated to be one mkclone supports).
    pub fn bits(&self) -> RsaModulusBits {
        match self.modulus.len() {
            384 => RsaModulusBits::B3072,
            512 => RsaModulusBits::B4096,
            _ => RsaModulusBits::B2048,
        }
    }

    /// Length in bytes of a signature made with (or a ciphertext made for) this key.
    pub fn modulus_len(&self) -> usize {
        self.modulus.len()
    }

    /// The key for the `rsa` crate (verification and OAEP encryption only).
    pub fn to_rsa(&self) -> Result<rsa::PublicKey> {
        // Building the key precomputes its Montgomery parameters: RSA work.
        mkclone_backend::timing::measure(mkclone_backend::timing::Category::Rsa, || {
            rsa::PublicKey::new(
                BoxedUint::from_be_slice_vartime(&self.modulus),
                BoxedUint::from_be_slice_vartime(&self.exponent),
            )
        })
        .map_err(|e| FormatError::InvalidKey {
            reason: format!("the rsa crate refuses it: {e}"),
        })
    }

    pub fn from_rsa(key: &rsa::PublicKey) -> Result<Self> {
        Self::new(
            strip_leading_zeros(&key.n().to_be_bytes()),
            strip_leading_zeros(&key.e().to_be_bytes()),
        )
    }

    /// SHA-256 over the encoded X'41' subsection: the fingerprint a sealed share names its
    /// target's CSR key by (project definition).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut w = Writer::with_capacity(self.x41_len());
        // Cannot fail: a validated key's subsection is at most 12 + 8 + 512 bytes.
        let _ = self.write_subsection(&mut w, ids::CERT_PUBLIC_KEY, "public-key subsection");
        mkclone_backend::timing::measure(mkclone_backend::timing::Category::Sha, || {
            Sha256::digest(w.as_slice()).into()
        })
    }

    fn x41_len(&self) -> usize {
        12usize
            .saturating_add(self.exponent.len())
            .saturating_add(self.modulus.len())
    }

    /// Write a whole key subsection (`id` X'04' or X'41'): head, then the key body.
    pub(crate) fn write_subsection(
        &self,
        w: &mut Writer,
        id: u8,
        structure: &'static str,
    ) -> Result<()> {
        let mark = w.begin_tlv(id);
        w.u16(0); // reserved
        w.u16_len(structure, "exponent length", self.exponent.len())?;
        w.u16_len(
            structure,
            "modulus length in bits",
            bit_length(&self.modulus),
        )?;
        w.u16_len(structure, "modulus length in bytes", self.modulus.len())?;
        w.bytes(&self.exponent);
        w.bytes(&self.modulus);
        w.end_tlv(structure, mark)
    }

    /// Read a key body (the bytes after a subsection's 4-byte head); the reader must hold
    /// exactly the body.
    pub(crate) fn read_body(mut r: Reader<'_>) -> Result<Self> {
        r.reserved_zeros("reserved bytes of the key subsection", 2)?;
        let e_len = usize::from(r.u16("exponent length")?);
        let bits_at = r.offset();
        let n_bits = usize::from(r.u16("modulus length in bits")?);
        let n_len = usize::from(r.u16("modulus length in bytes")?);
        let e_at = r.offset();
        let exponent = r.bytes("exponent", e_len)?.to_vec();
        let n_at = r.offset();
        let modulus = r.bytes("modulus", n_len)?.to_vec();
        r.clone().finish()?;
        check_exponent(&exponent).map_err(|reason| r.invalid("exponent", e_at, reason))?;
        check_modulus(&modulus).map_err(|reason| r.invalid("modulus", n_at, reason))?;
        let actual_bits = bit_length(&modulus);
        if n_bits != actual_bits {
            return Err(FormatError::LengthMismatch {
                structure: r.structure(),
                field: "modulus length in bits",
                offset: bits_at,
                claimed: n_bits,
                actual: actual_bits,
            });
        }
        let key = Self { modulus, exponent };
        Ok(key)
    }
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = self.fingerprint();
        write!(
            f,
            "RsaPublicKey({} bits, e=0x{}, fingerprint {}…)",
            bit_length(&self.modulus),
            hex::encode(&self.exponent),
            hex::encode_upper(&fp[..8])
        )
    }
}

fn check_modulus(modulus: &[u8]) -> std::result::Result<(), String> {
    match modulus.first() {
        None => return Err("the modulus is empty".into()),
        Some(0) => return Err("the modulus has a leading zero byte (it must be minimal)".into()),
        Some(_) => {}
    }
    let bits = bit_length(modulus);
    if RsaModulusBits::from_bits(u16::try_from(bits).unwrap_or(0)).is_err() {
        return Err(format!(
            "the modulus has {bits} bits; mkclone uses 2048, 3072 or 4096"
        ));
    }
    if modulus.last().is_some_and(|b| b & 1 == 0) {
        return Err("the modulus is even".into());
    }
    Ok(())
}

fn check_exponent(exponent: &[u8]) -> std::result::Result<(), String> {
    match exponent.first() {
        None => return Err("the exponent is empty".into()),
        Some(0) => return Err("the exponent has a leading zero byte (it must be minimal)".into()),
        Some(_) => {}
    }
    if exponent.len() > 8 {
        return Err(format!(
            "the exponent is {} bytes; at most 2^33-1 is accepted",
            exponent.len()
        ));
    }
    let e = exponent
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if !(3..=MAX_EXPONENT).contains(&e) {
        return Err(format!("the exponent {e} is outside 3..=2^33-1"));
    }
    if e & 1 == 0 {
        return Err(format!("the exponent {e} is even"));
    }
    Ok(())
}

/// Bit length of a big-endian unsigned integer.
pub(crate) fn bit_length(be: &[u8]) -> usize {
    let trimmed = match be.iter().position(|&b| b != 0) {
        Some(i) => be.get(i..).unwrap_or(&[]),
        None => return 0,
    };
    let top = trimmed.first().copied().unwrap_or(0);
    let top_bits = 8usize.saturating_sub(top.leading_zeros() as usize);
    trimmed
        .len()
        .saturating_sub(1)
        .saturating_mul(8)
        .saturating_add(top_bits)
}

fn strip_leading_zeros(be: &[u8]) -> Vec<u8> {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    be.get(start..).unwrap_or(&[]).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fake_modulus(bytes: usize) -> Vec<u8> {
        let mut n = vec![0xA5; bytes];
        n[0] = 0xC3;
        n
    }

    #[test]
    fn validates_sizes_and_exponent() {
        assert!(RsaPublicKey::new(fake_modulus(256), vec![1, 0, 1]).is_ok());
        assert!(RsaPublicKey::new(fake_modulus(384), vec![3]).is_ok());
        assert!(RsaPublicKey::new(fake_modulus(512), vec![1, 0, 1]).is_ok());
        assert!(RsaPublicKey::new(fake_modulus(128), vec![1, 0, 1]).is_err());
        let mut leading = vec![0];
        leading.extend(fake_modulus(256));
        assert!(RsaPublicKey::new(leading, vec![1, 0, 1]).is_err());
        let mut small_top = fake_modulus(256);
        small_top[0] = 0x01; // 2041 bits
        assert!(RsaPublicKey::new(small_top, vec![1, 0, 1]).is_err());
        let mut even = fake_modulus(256);
        even[255] = 0xA4;
        assert!(RsaPublicKey::new(even, vec![1, 0, 1]).is_err());
        assert!(RsaPublicKey::new(fake_modulus(256), vec![1, 0, 0]).is_err());
        assert!(RsaPublicKey::new(fake_modulus(256), vec![1]).is_err());
        assert!(RsaPublicKey::new(fake_modulus(256), vec![0, 3]).is_err());
        assert!(RsaPublicKey::new(fake_modulus(256), vec![]).is_err());
        assert!(RsaPublicKey::new(fake_modulus(256), vec![0xFF; 9]).is_err());
    }

    #[test]
    fn bit_length_counts() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0x00, 0x01]), 17);
    }

    #[test]
    fn debug_shows_size_and_fingerprint() {
        let k = RsaPublicKey::new(fake_modulus(256), vec![1, 0, 1]).unwrap();
        let s = format!("{k:?}");
        assert!(
            s.starts_with("RsaPublicKey(2048 bits, e=0x010001, fingerprint "),
            "{s}"
        );
    }
}
