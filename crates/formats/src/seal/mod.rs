//! Sealing and opening one share, as ARCHITECTURE.md "Shares" specifies for every backend
//! that uses the project's share format (simulator, PKCS#11).
//!
//! Sealing ([`seal`]): build the X'1D' cloning-information token; the source's device signs
//! its signed bytes with the CSS key (SHA-256, RSA PKCS#1 v1.5); a fresh triple-DES key
//! (odd parity) encrypts the token's bytes from offset 36 with EDE3-CBC, zero IV, no
//! padding; the 24-byte key is wrapped raw with RSA-OAEP (SHA-1, MGF1-SHA1, no label) to the
//! target's CSR public key. CCA documents the triple-DES encryption of the token; it does not
//! document the RSA padding that wraps the key (reference/cca-cloning.md), so OAEP is the
//! project's choice (the one SoftHSM supports).
//!
//! Opening, in the order an installer must follow:
//! 1. [`SealedShareParts::decode`]: a [`FormatError`] here means the container is damaged.
//!    Callers report it as a rejected share (`BackendError::ShareRejected`); it is a
//!    separate type only so that a tool can say "this is not a sealed share" to a human.
//! 2. [`ShareHeader::check_addressed_to`]: the share names another node ([`WrongTarget`],
//!    its own error, checked first).
//! 3. [`open`]: unwrap (by the target's device, with the CSR private key), decrypt, decode,
//!    check the pad, verify the CSS signature, compare the header with the token. Every
//!    failure here is the one [`OpenError::Rejected`], with no detail in `Debug` or
//!    `Display`, so that errors are no padding oracle.
//!
//! This crate never performs an RSA private-key operation outside tests: signing and
//! unwrapping are closures the caller's device implements.

mod container;
mod tdes;

use mkclone_backend::{Eid, KeyLabel};
use rsa::Oaep;
use sha1::Sha1;
use thiserror::Error;
use zeroize::Zeroizing;

pub use container::{FORMAT_VERSION, MAGIC, SealedShareParts, ShareHeader, WrongTarget};
pub use tdes::TdesKey;

use crate::clone_info::{CLEAR_HEADER_LEN, CloneInfo, SignedCloneInfo};
use crate::error::FormatError;
use crate::pka::RsaPublicKey;

/// Why a share could not be sealed.
#[derive(Debug, Error)]
pub enum SealError<E> {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("the source's CSS key could not sign the share: {0}")]
    Sign(E),
    #[error("the share key could not be wrapped to the target's CSR key: {reason}")]
    Wrap { reason: String },
    #[error("the random generator produced only weak triple-DES keys; it is not working")]
    WeakRng,
}

/// The one error of [`open`]: the share does not decrypt and verify as a share from the
/// certified source. Deliberately without detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error(
        "the share was rejected: it does not decrypt and verify as a share from the certified source"
    )]
    Rejected,
}

/// Seal `info` for the target named by `target_eid` and its CSR public key.
///
/// `sign` receives the bytes to be signed (they contain the share: the closure should hand
/// them to the device holding the CSS key and not keep them) and returns a
/// `signature_len`-byte SHA-256 / PKCS#1 v1.5 signature by the CSS key labelled
/// `css_label`. `rng` draws the triple-DES key and the OAEP seed.
pub fn seal<E, R>(
    info: &CloneInfo,
    css_label: &KeyLabel,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    signature_len: usize,
    target_eid: &Eid,
    csr_key: &RsaPublicKey,
    rng: &mut R,
) -> Result<SealedShareParts, SealError<E>>
where
    R: rand::CryptoRng + ?Sized,
{
    let key = TdesKey::generate(rng).ok_or(SealError::WeakRng)?;
    let to = Recipient {
        eid: target_eid,
        csr_key,
    };
    seal_with_key(info, css_label, sign, signature_len, to, &key, rng)
}

/// The target a share is sealed to: its EID and its CSR public key.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    pub eid: &'a Eid,
    pub csr_key: &'a RsaPublicKey,
}

/// [`seal`] with a triple-DES key drawn by the caller (golden vectors; a device that draws
/// its own key). The key must never be used for another share.
pub fn seal_with_key<E, R>(
    info: &CloneInfo,
    css_label: &KeyLabel,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    signature_len: usize,
    to: Recipient<'_>,
    key: &TdesKey,
    rng: &mut R,
) -> Result<SealedShareParts, SealError<E>>
where
    R: rand::CryptoRng + ?Sized,
{
    let Recipient {
        eid: target_eid,
        csr_key,
    } = to;
    let unsigned = info.to_be_signed(css_label, signature_len)?;
    let signature = sign(unsigned.signed_bytes()).map_err(SealError::Sign)?;
    let signed = unsigned.finish(signature)?;
    let mut token = signed.encode()?;
    let area = token.get_mut(CLEAR_HEADER_LEN..).unwrap_or(&mut []);
    key.encrypt_cbc(area).ok_or(FormatError::Unencodable {
        structure: "cloning-information token",
        field: "TLV area",
        reason: "not a multiple of 8 bytes".into(),
    })?;
    let wrapped_key = wrap(key, csr_key, rng)?;
    // Past offset 36 the token is now ciphertext; the clear header holds no secret.
    let encrypted_clone_info = std::mem::take(&mut *token);
    Ok(SealedShareParts {
        header: container::ShareHeader {
            target_eid: target_eid.clone(),
            csr_fingerprint: csr_key.fingerprint(),
            kind: info.kind,
            index: info.index,
            origin_eid: info.origin_eid.clone(),
        },
        wrapped_key,
        encrypted_clone_info,
    })
}

/// `key` wrapped raw to `csr_key` with RSA-OAEP (SHA-1, MGF1-SHA1, no label), as every
/// sealed share's key is.
fn wrap<E, R>(key: &TdesKey, csr_key: &RsaPublicKey, rng: &mut R) -> Result<Vec<u8>, SealError<E>>
where
    R: rand::CryptoRng + ?Sized,
{
    let csr_rsa = csr_key.to_rsa()?;
    mkclone_backend::timing::measure(mkclone_backend::timing::Category::Rsa, || {
        csr_rsa.encrypt(rng, Oaep::<Sha1>::new(), key.as_bytes())
    })
    .map_err(|e| SealError::Wrap {
        reason: e.to_string(),
    })
}

/// What a device that opens shares must do with a [`control`]: unwrap `wrapped_key` with
/// its CSR private key and decrypt `encrypted` (EDE3-CBC, zero IV, no padding) under the
/// key, giving `clear`.
#[derive(Clone, Debug)]
pub struct Control {
    pub wrapped_key: Vec<u8>,
    pub encrypted: [u8; 16],
    pub clear: [u8; 16],
}

/// A control for a device that opens shares ([`open_in_device`]'s unwrap and decrypt): a
/// fresh triple-DES key wrapped to `csr_key` as a sealed share's is, and a random block
/// encrypted under it. A device that opens it works; one that cannot is failing, whatever
/// it answered for a share: with it a caller tells a device fault from a share that does
/// not open, when the device's answer could be either. It holds no secret of anyone's.
pub fn control<R>(
    csr_key: &RsaPublicKey,
    rng: &mut R,
) -> Result<Control, SealError<std::convert::Infallible>>
where
    R: rand::CryptoRng + ?Sized,
{
    let key = TdesKey::generate(rng).ok_or(SealError::WeakRng)?;
    let mut clear = [0; 16];
    rng.fill_bytes(&mut clear);
    let mut encrypted = clear;
    key.encrypt_cbc(&mut encrypted)
        .ok_or(FormatError::Unencodable {
            structure: "control block",
            field: "data",
            reason: "not a multiple of 8 bytes".into(),
        })?;
    Ok(Control {
        wrapped_key: wrap(&key, csr_key, rng)?,
        encrypted,
        clear,
    })
}

/// Open a sealed share whose header was already checked with
/// [`ShareHeader::check_addressed_to`].
///
/// `unwrap` receives the wrapped key and returns the 24-byte triple-DES key; the target's
/// device does it (RSA-OAEP with SHA-1, MGF1-SHA1, no label, under the CSR private key).
/// The share must verify under `css_key` (the source's CSS public key, taken from its
/// SA-certified certificate); with `css_label`, its signature must also name that label.
/// (A target knows the CSS key from its certificate, which does not carry the label: it
/// passes `None` and the label the token names is used to find the signature.)
///
/// Every failure, including an error returned by `unwrap`, is [`OpenError::Rejected`]. A
/// caller that must tell a device it could not reach (outcome unknown) from a key that did
/// not unwrap keeps that distinction itself, e.g. by storing the transport error in a
/// variable the closure captures; only the caller knows which of its errors are
/// cryptographic.
pub fn open<E>(
    parts: &SealedShareParts,
    unwrap: impl FnOnce(&[u8]) -> Result<Zeroizing<Vec<u8>>, E>,
    css_key: &RsaPublicKey,
    css_label: Option<&KeyLabel>,
) -> Result<CloneInfo, OpenError> {
    open_in_device(
        parts,
        |wrapped, area| {
            let key = {
                let raw = unwrap(wrapped).map_err(|_| ())?;
                TdesKey::from_unwrapped(&raw).ok_or(())?
            };
            let mut clear = Zeroizing::new(area.to_vec());
            key.decrypt_cbc(&mut clear).ok_or(())?;
            Ok::<_, ()>(clear)
        },
        css_key,
        css_label,
    )
}

/// [`open`] for a device that keeps the triple-DES key inside: `decrypt` receives the
/// wrapped key and the encrypted TLV area (the token's bytes from offset
/// [`CLEAR_HEADER_LEN`]) and returns that area in the clear, the same length. The device
/// unwraps the key with the CSR private key (RSA-OAEP, SHA-1, MGF1-SHA1, no label) and
/// decrypts with EDE3-CBC, zero IV, no padding; the key never reaches the caller.
///
/// What the device cannot check (the DES parity of the unwrapped key) is covered by the
/// signature: a share whose key was not made by [`seal`] does not decrypt to a token the
/// CSS key signed. Every failure is [`OpenError::Rejected`], as in [`open`].
pub fn open_in_device<E>(
    parts: &SealedShareParts,
    decrypt: impl FnOnce(&[u8], &[u8]) -> Result<Zeroizing<Vec<u8>>, E>,
    css_key: &RsaPublicKey,
    css_label: Option<&KeyLabel>,
) -> Result<CloneInfo, OpenError> {
    let (head, area) = parts
        .encrypted_clone_info
        .split_at_checked(CLEAR_HEADER_LEN)
        .ok_or(OpenError::Rejected)?;
    let clear_area = decrypt(&parts.wrapped_key, area).map_err(|_| OpenError::Rejected)?;
    if clear_area.len() != area.len() {
        return Err(OpenError::Rejected);
    }
    let mut clear = Zeroizing::new(Vec::with_capacity(parts.encrypted_clone_info.len()));
    clear.extend_from_slice(head);
    clear.extend_from_slice(&clear_area);
    let signed = SignedCloneInfo::decode(&clear).map_err(|_| OpenError::Rejected)?;
    let signer = css_label.unwrap_or(&signed.signature.signer);
    signed
        .verify(signer, css_key)
        .map_err(|_| OpenError::Rejected)?;
    let info = signed.info;
    let header = &parts.header;
    if header.kind != info.kind
        || header.index != info.index
        || header.origin_eid != info.origin_eid
    {
        return Err(OpenError::Rejected);
    }
    Ok(info)
}
