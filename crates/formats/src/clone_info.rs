//! The X'1D' cloning-information token: one share of a master key, signed by the source's
//! CSS key.
//!
//! Layout of CCA's part (IBM CCA Basic Services Reference, release 2.54, Master_Key_Distribution
//! cloning information, as summarised in reference/cca-cloning.md "Formats"):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 1  | X'1D' |
//! | 1  | 1  | version X'00' |
//! | 2  | 2  | total token length (pad included) |
//! | 4  | 4  | reserved, zero |
//! | 8  | 4  | share index |
//! | 12 | 16 | origin EID |
//! | 28 | 8  | origin serial number |
//! | 36 | …  | TLVs, then zero pad |
//!
//! TLVs, in this order (each: id, version X'00', 2-byte length counting the whole TLV):
//! - X'01' share (CCA's): length X'001D' = 29: 1-byte index, 24-byte share;
//! - X'6D' (PROJECT-ASSIGNED, see [`crate::ids::CLONE_MKCLONE_TLV`]): length 16: kind
//!   (1 SYM, 2 ASYM), m, n, pattern-algorithm id (1 = SHA-1 method), the source's CURRENT
//!   verification pattern (8 bytes). It sits inside the signed bytes, so a target can check
//!   that the shares it combines come from one key;
//! - X'45' signature (CCA's shape, see [`crate::SignatureSubsection`]): over the bytes from the X'1D'
//!   byte up to the signature field; mkclone signs with SHA-256 / PKCS#1 v1.5.
//!
//! The TLV area (everything from offset 36) is padded with zero bytes to a multiple of 8,
//! because those bytes are what gets encrypted with triple-DES CBC without further
//! padding. The pad is therefore 0 to 7 bytes and fully determined; decoding checks it is
//! exactly that long and all zero. (The reference says "TLVs padded to a multiple of 8";
//! we read that as the TLV area, since the 36-byte clear header is not a multiple of 8.)

use mkclone_backend::rules::{IncomingShare, ShareFacts};
use mkclone_backend::{
    CloneableKind, Eid, KeyLabel, MofN, PatternAlgorithm, SerialNumber, ShareIndex,
    VerificationPattern,
};
use zeroize::Zeroizing;

use crate::error::{FormatError, Result};
use crate::ids;
use crate::pka::RsaPublicKey;
use crate::reader::{Reader, TLV_HEAD_LEN, Writer};
use crate::secret::ShareValue;
use crate::signature::{self, SIGNATURE_PREFIX_LEN, SignatureError, SignatureSubsection};

/// Bytes before the TLVs; the bytes from here on are encrypted when sealed.
pub const CLEAR_HEADER_LEN: usize = 36;
/// The X'01' share TLV's length (X'001D').
pub const SHARE_TLV_LEN: usize = 29;
/// The X'6D' TLV's length.
pub const MKCLONE_TLV_LEN: usize = 16;
/// The TLV area is padded to a multiple of this.
pub const PAD_MULTIPLE: usize = 8;

/// What errors name this structure.
const STRUCTURE: &str = "cloning-information token";

/// The meaning of a cloning-information token, without its signature.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CloneInfo {
    pub index: ShareIndex,
    pub origin_eid: Eid,
    pub origin_serial: SerialNumber,
    pub kind: CloneableKind,
    pub m_of_n: MofN,
    /// The source's CURRENT master-key verification pattern (SHA-1 method).
    pub source_pattern: VerificationPattern,
    pub share: ShareValue,
}

/// Token length for a signature of `signature_len` bytes, and the pad length.
fn layout(signature_len: usize) -> Option<(usize, usize)> {
    let tlvs =
        (SHARE_TLV_LEN + MKCLONE_TLV_LEN + SIGNATURE_PREFIX_LEN).checked_add(signature_len)?;
    let pad = tlvs
        .checked_next_multiple_of(PAD_MULTIPLE)?
        .checked_sub(tlvs)?;
    Some((CLEAR_HEADER_LEN.checked_add(tlvs)?.checked_add(pad)?, pad))
}

pub(crate) fn kind_code(kind: CloneableKind) -> u8 {
    match kind {
        CloneableKind::Sym => ids::KIND_SYM,
        CloneableKind::Asym => ids::KIND_ASYM,
    }
}

pub(crate) fn kind_from_code(code: u8) -> Option<CloneableKind> {
    match code {
        ids::KIND_SYM => Some(CloneableKind::Sym),
        ids::KIND_ASYM => Some(CloneableKind::Asym),
        _ => None,
    }
}

impl CloneInfo {
    /// This opened share as the admission rules see it
    /// ([`mkclone_backend::rules::admission`]); `value_digest` is whatever digest of the
    /// share value the node compares shares by.
    pub fn incoming<'a>(&'a self, value_digest: &'a [u8]) -> IncomingShare<'a> {
        IncomingShare {
            kind: self.kind,
            m_of_n: self.m_of_n,
            share: ShareFacts {
                index: self.index,
                origin_eid: &self.origin_eid,
                source_pattern: &self.source_pattern,
                value_digest,
            },
        }
    }

    /// Write everything up to the signature field into a writer sized for the whole token.
    fn write_prefix(
        &self,
        hash_id: u8,
        format_id: u8,
        signer: &KeyLabel,
        signature_len: usize,
    ) -> Result<Writer> {
        let unencodable = |field, reason: String| FormatError::Unencodable {
            structure: STRUCTURE,
            field,
            reason,
        };
        if self.source_pattern.algorithm() != PatternAlgorithm::Sha1Method {
            return Err(unencodable(
                "source verification pattern",
                format!(
                    "the X'6D' TLV carries a SHA-1-method pattern; this one is {}",
                    self.source_pattern.algorithm().name()
                ),
            ));
        }
        self.index
            .check_against(self.m_of_n)
            .map_err(|e| unencodable("share index", e.to_string()))?;
        let (total, _) = layout(signature_len)
            .filter(|(t, _)| *t <= usize::from(u16::MAX))
            .ok_or_else(|| {
                unencodable(
                    "token length",
                    format!("a {signature_len}-byte signature is too long"),
                )
            })?;

        let mut w = Writer::with_capacity(total);
        w.u8(ids::CLONE_INFO_TOKEN);
        w.u8(ids::VERSION);
        w.u16_len(STRUCTURE, "token length", total)?;
        w.u32(0); // reserved
        w.u32(u32::from(self.index.get()));
        w.bytes(&self.origin_eid.to_wire());
        w.bytes(&self.origin_serial.to_wire());

        let share = w.begin_tlv(ids::CLONE_SHARE_TLV);
        w.u8(self.index.get());
        w.bytes(self.share.as_bytes());
        w.end_tlv(STRUCTURE, share)?;

        let ours = w.begin_tlv(ids::CLONE_MKCLONE_TLV);
        w.u8(kind_code(self.kind));
        w.u8(self.m_of_n.m());
        w.u8(self.m_of_n.n());
        w.u8(ids::PATTERN_SHA1_METHOD);
        w.bytes(self.source_pattern.bytes());
        w.end_tlv(STRUCTURE, ours)?;

        SignatureSubsection::write_prefix(
            &mut w,
            STRUCTURE,
            hash_id,
            format_id,
            signer,
            signature_len,
        )?;
        Ok(w)
    }

    /// Lay out the token with an X'45' TLV by `signer` (SHA-256, PKCS#1 v1.5 ids) for a
    /// `signature_len`-byte signature; the caller's device signs [`UnsignedCloneInfo::signed_bytes`].
    pub fn to_be_signed(
        &self,
        signer: &KeyLabel,
        signature_len: usize,
    ) -> Result<UnsignedCloneInfo> {
        let prefix = self.write_prefix(
            ids::HASH_SHA256,
            ids::FORMAT_PKCS1_V15,
            signer,
            signature_len,
        )?;
        Ok(UnsignedCloneInfo {
            prefix,
            info: self.clone(),
            signer: signer.clone(),
            signature_len,
        })
    }
}

/// A cloning-information token waiting for its signature.
#[derive(Debug)]
pub struct UnsignedCloneInfo {
    prefix: Writer,
    info: CloneInfo,
    signer: KeyLabel,
    signature_len: usize,
}

impl UnsignedCloneInfo {
    /// The bytes the CSS key signs (the SHA-256 input): the token from X'1D' up to the
    /// signature field. They contain the share: keep them inside the signing device.
    pub fn signed_bytes(&self) -> &[u8] {
        self.prefix.as_slice()
    }

    pub fn signature_len(&self) -> usize {
        self.signature_len
    }

    /// Insert the signature (not verified here).
    pub fn finish(self, signature: Vec<u8>) -> Result<SignedCloneInfo> {
        FormatError::check_signature_len(STRUCTURE, "token", self.signature_len, signature.len())?;
        Ok(SignedCloneInfo {
            info: self.info,
            signature: SignatureSubsection::sha256_pkcs1(self.signer, signature),
        })
    }
}

/// A whole cloning-information token: its meaning and its X'45' signature.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedCloneInfo {
    pub info: CloneInfo,
    pub signature: SignatureSubsection,
}

impl SignedCloneInfo {
    /// The token in the clear (it holds the share: zeroized on drop).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let s = &self.signature;
        let mut w = self
            .info
            .write_prefix(s.hash_id, s.format_id, &s.signer, s.signature.len())?;
        w.bytes(&s.signature);
        let (_, pad) = layout(s.signature.len()).unwrap_or((0, 0));
        for _ in 0..pad {
            w.u8(0);
        }
        Ok(w.into_zeroizing())
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        let s = &self.signature;
        Ok(self
            .info
            .write_prefix(s.hash_id, s.format_id, &s.signer, s.signature.len())?
            .into_zeroizing())
    }

    /// Verify the signature: it must name `signer` and verify (SHA-256, PKCS#1 v1.5) under
    /// `signer_key`.
    pub fn verify(
        &self,
        signer: &KeyLabel,
        signer_key: &RsaPublicKey,
    ) -> Result<(), SignatureError> {
        let (_, sub) = signature::find([&self.signature], signer)?;
        signature::verify(sub, signer_key, &self.signed_bytes()?)
    }

    /// Decode a token in the clear that must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::token(STRUCTURE, bytes, ids::CLONE_INFO_TOKEN)?;
        let index_at = r.offset();
        let index = ShareIndex::from_u32(r.u32("share index")?)
            .map_err(|e| r.invalid("share index", index_at, e.to_string()))?;
        let eid_at = r.offset();
        let origin_eid = Eid::from_wire(r.bytes("origin EID", Eid::LEN)?)
            .map_err(|e| r.invalid("origin EID", eid_at, e.to_string()))?;
        let serial_at = r.offset();
        let origin_serial =
            SerialNumber::from_wire(r.bytes("origin serial number", SerialNumber::LEN)?)
                .map_err(|e| r.invalid("origin serial number", serial_at, e.to_string()))?;

        // X'01' share TLV.
        let mut share_tlv = expect_tlv(
            &mut r,
            ids::CLONE_SHARE_TLV,
            "the X'01' share TLV comes first",
        )?;
        check_tlv_len(
            &share_tlv.body,
            share_tlv.offset,
            SHARE_TLV_LEN,
            "X'01' share TLV length",
        )?;
        let byte_at = share_tlv.body.offset();
        let index_byte = share_tlv.body.u8("share TLV index")?;
        if index_byte != index.get() {
            return Err(share_tlv.body.invalid(
                "share TLV index",
                byte_at,
                format!("it says {index_byte}, the header's share index is {index}"),
            ));
        }
        let share = ShareValue::from_slice(share_tlv.body.bytes("share", ShareValue::LEN)?).ok_or(
            FormatError::Truncated {
                structure: STRUCTURE,
                field: "share",
                offset: byte_at.saturating_add(1),
                needed: ShareValue::LEN,
                remaining: 0,
            },
        )?;

        // X'6D' project TLV.
        let mut ours = expect_tlv(
            &mut r,
            ids::CLONE_MKCLONE_TLV,
            "the X'6D' mkclone TLV follows the share TLV",
        )?;
        check_tlv_len(&ours.body, ours.offset, MKCLONE_TLV_LEN, "X'6D' TLV length")?;
        let kind_at = ours.body.offset();
        let kind_byte = ours.body.u8("master-key kind")?;
        let kind = kind_from_code(kind_byte).ok_or_else(|| {
            ours.body.invalid(
                "master-key kind",
                kind_at,
                format!("{kind_byte} is neither 1 (SYM) nor 2 (ASYM)"),
            )
        })?;
        let m = ours.body.u8("m")?;
        let n = ours.body.u8("n")?;
        let m_of_n = MofN::new(m, n).map_err(|e| {
            ours.body
                .invalid("m and n", kind_at.saturating_add(1), e.to_string())
        })?;
        index
            .check_against(m_of_n)
            .map_err(|e| r.invalid("share index", index_at, e.to_string()))?;
        let alg_at = ours.body.offset();
        ours.body
            .expect_u8("verification-pattern algorithm", ids::PATTERN_SHA1_METHOD)
            .map_err(|_| {
                ours.body.invalid(
                    "verification-pattern algorithm",
                    alg_at,
                    "only 1 (SHA-1 method) is defined",
                )
            })?;
        let pattern_at = ours.body.offset();
        let source_pattern = VerificationPattern::new(
            PatternAlgorithm::Sha1Method,
            ours.body.bytes("verification pattern", 8)?,
        )
        .map_err(|e| {
            ours.body
                .invalid("verification pattern", pattern_at, e.to_string())
        })?;

        // X'45' signature TLV.
        let sig = expect_tlv(
            &mut r,
            ids::SIGNATURE,
            "the X'45' signature TLV follows the X'6D' TLV",
        )?;
        let signature = SignatureSubsection::read_body(sig.body)?;

        // Zero pad.
        let pad_at = r.offset();
        let pad = r.rest();
        let area = bytes.len().saturating_sub(CLEAR_HEADER_LEN);
        if !area.is_multiple_of(PAD_MULTIPLE) || pad.len() >= PAD_MULTIPLE {
            return Err(FormatError::Invalid {
                structure: STRUCTURE,
                field: "pad",
                offset: pad_at,
                reason: format!(
                    "{} bytes follow the signature TLV and the TLV area is {area} bytes; the area must be padded \
                     with fewer than {PAD_MULTIPLE} zero bytes to a multiple of {PAD_MULTIPLE}",
                    pad.len()
                ),
            });
        }
        if let Some(pos) = pad.iter().position(|&b| b != 0) {
            return Err(FormatError::UnexpectedByte {
                structure: STRUCTURE,
                field: "pad",
                offset: pad_at.saturating_add(pos),
                expected: 0,
                found: pad.get(pos).copied().unwrap_or(0),
            });
        }

        Ok(Self {
            info: CloneInfo {
                index,
                origin_eid,
                origin_serial,
                kind,
                m_of_n,
                source_pattern,
                share,
            },
            signature,
        })
    }
}

fn expect_tlv<'a>(
    r: &mut Reader<'a>,
    id: u8,
    reason: &'static str,
) -> Result<crate::reader::Tlv<'a>> {
    let at = r.offset();
    if r.is_empty() {
        return Err(FormatError::Missing {
            structure: STRUCTURE,
            what: reason,
            offset: at,
        });
    }
    let tlv = r.tlv()?;
    if tlv.id != id {
        return Err(tlv.unexpected(STRUCTURE, reason));
    }
    Ok(tlv)
}

fn check_tlv_len(
    body: &Reader<'_>,
    offset: usize,
    expected: usize,
    field: &'static str,
) -> Result<()> {
    let actual = body.remaining().saturating_add(TLV_HEAD_LEN);
    if actual != expected {
        return Err(FormatError::Invalid {
            structure: STRUCTURE,
            field,
            offset: offset.saturating_add(2),
            reason: format!("the TLV says {actual} bytes; it is always {expected}"),
        });
    }
    Ok(())
}
