//! The X'45' signature subsection, shared by the certificate section and the
//! cloning-information token, and its verification.
//!
//! Layout (IBM CCA Basic Services Reference, release 2.54, certificate section, as
//! summarised in reference/cca-cloning.md "Formats"): id X'45', version X'00', 2-byte
//! length of the whole subsection, 1-byte hash id, 1-byte signature-format id, 64-byte
//! signer key label (blank padded), signature bytes. The signature covers the bytes of the
//! enclosing structure from its first byte up to, not including, the signature field.
//!
//! CCA's ids are X'01' SHA-1 and X'01' ISO 9796-1; mkclone signs with SHA-256 and RSA
//! PKCS#1 v1.5 and records that with the project-assigned ids in [`crate::ids`]. Decoders
//! accept any id; [`verify`] refuses ids it cannot verify.

use mkclone_backend::KeyLabel;
use rsa::Pkcs1v15Sign;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::error::{FormatError, Result};
use crate::ids;
use crate::pka::RsaPublicKey;
use crate::reader::{Reader, TLV_HEAD_LEN, Writer};

/// Bytes of an X'45' subsection before the signature field: head, hash id, format id,
/// label.
pub const SIGNATURE_PREFIX_LEN: usize = TLV_HEAD_LEN + 2 + KeyLabel::WIRE_LEN;

/// One X'45' signature subsection.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignatureSubsection {
    pub hash_id: u8,
    pub format_id: u8,
    /// The label of the key that made the signature (e.g. the SA key, or the source's CSS
    /// key).
    pub signer: KeyLabel,
    pub signature: Vec<u8>,
}

impl SignatureSubsection {
    /// A signature with mkclone's algorithm: SHA-256, RSA PKCS#1 v1.5.
    pub fn sha256_pkcs1(signer: KeyLabel, signature: Vec<u8>) -> Self {
        Self {
            hash_id: ids::HASH_SHA256,
            format_id: ids::FORMAT_PKCS1_V15,
            signer,
            signature,
        }
    }

    /// Encoded length of the subsection.
    pub fn encoded_len(&self) -> usize {
        SIGNATURE_PREFIX_LEN.saturating_add(self.signature.len())
    }

    /// Write everything up to the signature field, with a length that already counts a
    /// signature of `signature_len` bytes.
    pub(crate) fn write_prefix(
        w: &mut Writer,
        structure: &'static str,
        hash_id: u8,
        format_id: u8,
        signer: &KeyLabel,
        signature_len: usize,
    ) -> Result<()> {
        if signature_len == 0 {
            return Err(FormatError::Unencodable {
                structure,
                field: "signature",
                reason: "a signature may not be empty".into(),
            });
        }
        w.u8(ids::SIGNATURE);
        w.u8(ids::VERSION);
        w.u16_len(
            structure,
            "signature subsection length",
            SIGNATURE_PREFIX_LEN.saturating_add(signature_len),
        )?;
        w.u8(hash_id);
        w.u8(format_id);
        w.bytes(&signer.to_wire());
        Ok(())
    }

    /// Write the whole subsection; returns the offset of the signature field in `w`.
    pub(crate) fn write(&self, w: &mut Writer, structure: &'static str) -> Result<usize> {
        Self::write_prefix(
            w,
            structure,
            self.hash_id,
            self.format_id,
            &self.signer,
            self.signature.len(),
        )?;
        let at = w.len();
        w.bytes(&self.signature);
        Ok(at)
    }

    /// Read the body of an X'45' subsection (after its head); `body` must hold exactly it.
    pub(crate) fn read_body(mut body: Reader<'_>) -> Result<Self> {
        let hash_id = body.u8("hash id")?;
        let format_id = body.u8("signature-format id")?;
        let label_at = body.offset();
        let label = body.bytes("signer key label", KeyLabel::WIRE_LEN)?;
        let signer = KeyLabel::from_wire(label)
            .map_err(|e| body.invalid("signer key label", label_at, e.to_string()))?;
        let sig_at = body.offset();
        let signature = body.rest().to_vec();
        if signature.is_empty() {
            return Err(FormatError::Missing {
                structure: body.structure(),
                what: "signature",
                offset: sig_at,
            });
        }
        Ok(Self {
            hash_id,
            format_id,
            signer,
            signature,
        })
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("no signature by {signer} is present")]
    NoSignatureBy { signer: KeyLabel },
    #[error("more than one signature names {signer}; which one counts is ambiguous")]
    DuplicateSigner { signer: KeyLabel },
    #[error(
        "the signature by {signer} uses hash id X'{hash_id:02X}' and format id X'{format_id:02X}'; mkclone verifies \
         only SHA-256 with RSA PKCS#1 v1.5 (project ids X'82'/X'81'). CCA's SHA-1/ISO 9796-1 (X'01'/X'01') \
         signatures are checked by a coprocessor, not by mkclone"
    )]
    UnsupportedAlgorithm {
        signer: KeyLabel,
        hash_id: u8,
        format_id: u8,
    },
    #[error(
        "the signature by {signer} is {found} bytes; the signer's key makes {expected}-byte signatures"
    )]
    WrongLength {
        signer: KeyLabel,
        expected: usize,
        found: usize,
    },
    #[error("the signature by {signer} does not verify under the key given for {signer}")]
    Invalid { signer: KeyLabel },
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// The signature certificate verification reports ([`crate::pka::CertificateSection::verify`]).
pub type CertificateError = SignatureError;

/// Pick the one subsection naming `signer`.
pub(crate) fn find<'s>(
    subsections: impl IntoIterator<Item = &'s SignatureSubsection>,
    signer: &KeyLabel,
) -> std::result::Result<(usize, &'s SignatureSubsection), SignatureError> {
    let mut found = None;
    for (i, s) in subsections.into_iter().enumerate() {
        if &s.signer == signer {
            if found.is_some() {
                return Err(SignatureError::DuplicateSigner {
                    signer: signer.clone(),
                });
            }
            found = Some((i, s));
        }
    }
    found.ok_or_else(|| SignatureError::NoSignatureBy {
        signer: signer.clone(),
    })
}

/// Verify `sub` over `signed_bytes` with SHA-256 / RSA PKCS#1 v1.5 (public-key operation
/// only).
pub(crate) fn verify(
    sub: &SignatureSubsection,
    signer_key: &RsaPublicKey,
    signed_bytes: &[u8],
) -> std::result::Result<(), SignatureError> {
    if sub.hash_id != ids::HASH_SHA256 || sub.format_id != ids::FORMAT_PKCS1_V15 {
        return Err(SignatureError::UnsupportedAlgorithm {
            signer: sub.signer.clone(),
            hash_id: sub.hash_id,
            format_id: sub.format_id,
        });
    }
    if sub.signature.len() != signer_key.modulus_len() {
        return Err(SignatureError::WrongLength {
            signer: sub.signer.clone(),
            expected: signer_key.modulus_len(),
            found: sub.signature.len(),
        });
    }
    let key = signer_key.to_rsa()?;
    let digest = mkclone_backend::timing::measure(mkclone_backend::timing::Category::Sha, || {
        Sha256::digest(signed_bytes)
    });
    mkclone_backend::timing::measure(mkclone_backend::timing::Category::Rsa, || {
        key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &sub.signature)
    })
    .map_err(|_| SignatureError::Invalid {
        signer: sub.signer.clone(),
    })
}
