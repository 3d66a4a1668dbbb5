//! The X'40' certificate section: building, encoding, decoding, verifying, and the hash a
//! node registers (CSNDPKH) before the key itself (CSNDPKR).
//!
//! Layout (IBM CCA Basic Services Reference, release 2.54, certificate section, as
//! summarised in reference/cca-cloning.md "Formats"): X'40', X'00', 2-byte length of the
//! whole section; then the X'41' public-key subsection; then the optional X'42'
//! information subsection (inner TLVs X'50' user data 0-64 bytes, X'51' EID 16 bytes, X'52'
//! serial 8 bytes); then one or more X'45' signature subsections.
//!
//! Canonical form (project rules, so that one meaning has one encoding): X'42' is present
//! exactly when it holds at least one inner TLV; inner TLVs appear at most once each, in
//! the order X'50', X'51', X'52'; nothing else may appear.
//!
//! Signed bytes: for each signature subsection, the section's bytes from the X'40' byte up
//! to (not including) that subsection's signature field, as they stand in the finished
//! section. The X'40' length therefore already counts the signature; the signer's modulus
//! length gives the signature length in advance. [`CertificateBuilder`] makes sections
//! with one signature (as CSNDPKG does); sections with several decode and verify.

use mkclone_backend::{
    Certificate, Eid, HashAlgorithm, KeyLabel, PublicKeyHash, SerialNumber, SubjectInfo,
};
use sha2::{Digest, Sha256};

use crate::error::{FormatError, Result};
use crate::ids;
use crate::pka::RsaPublicKey;
use crate::reader::{Reader, Writer};
use crate::signature::{self, SignatureError, SignatureSubsection};

const STRUCTURE: &str = "certificate section";

/// Largest X'50' user-data field.
pub const MAX_USER_DATA: usize = 64;

/// What a certificate says about its subject besides the key (the X'42' subsection).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CertInfo {
    /// X'50', 0 to 64 bytes.
    pub user_data: Option<Vec<u8>>,
    /// X'51'.
    pub eid: Option<Eid>,
    /// X'52'.
    pub serial: Option<SerialNumber>,
}

impl CertInfo {
    /// True when no X'42' subsection is written.
    pub fn is_empty(&self) -> bool {
        self.user_data.is_none() && self.eid.is_none() && self.serial.is_none()
    }

    fn write(&self, w: &mut Writer) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let outer = w.begin_tlv(ids::CERT_INFORMATION);
        if let Some(data) = &self.user_data {
            if data.len() > MAX_USER_DATA {
                return Err(FormatError::Unencodable {
                    structure: STRUCTURE,
                    field: "X'50' user data",
                    reason: format!("{} bytes, at most {MAX_USER_DATA}", data.len()),
                });
            }
            let m = w.begin_tlv(ids::INFO_USER_DATA);
            w.bytes(data);
            w.end_tlv(STRUCTURE, m)?;
        }
        if let Some(eid) = &self.eid {
            let m = w.begin_tlv(ids::INFO_EID);
            w.bytes(&eid.to_wire());
            w.end_tlv(STRUCTURE, m)?;
        }
        if let Some(serial) = &self.serial {
            let m = w.begin_tlv(ids::INFO_SERIAL);
            w.bytes(&serial.to_wire());
            w.end_tlv(STRUCTURE, m)?;
        }
        w.end_tlv(STRUCTURE, outer)
    }

    /// Read the body of an X'42' subsection.
    fn read_body(mut body: Reader<'_>, x42_offset: usize) -> Result<Self> {
        if body.is_empty() {
            return Err(body.invalid(
                "X'42' information subsection",
                x42_offset,
                "it holds no TLV; the canonical form omits an empty X'42'",
            ));
        }
        let mut info = CertInfo::default();
        let mut last_id = 0u8;
        while !body.is_empty() {
            let mut tlv = body.tlv()?;
            if tlv.id <= last_id && last_id != 0 {
                return Err(tlv.unexpected(
                    body.structure(),
                    "X'42' holds X'50', X'51', X'52' at most once each, in that order",
                ));
            }
            last_id = tlv.id;
            let at = tlv.body.offset();
            match tlv.id {
                ids::INFO_USER_DATA => {
                    let data = tlv.body.rest();
                    if data.len() > MAX_USER_DATA {
                        return Err(tlv.body.invalid(
                            "X'50' user data",
                            at,
                            format!("{} bytes, at most {MAX_USER_DATA}", data.len()),
                        ));
                    }
                    info.user_data = Some(data.to_vec());
                }
                ids::INFO_EID => {
                    let field = tlv.body.bytes("X'51' EID", Eid::LEN)?;
                    tlv.body.clone().finish()?;
                    info.eid = Some(
                        Eid::from_wire(field)
                            .map_err(|e| tlv.body.invalid("X'51' EID", at, e.to_string()))?,
                    );
                }
                ids::INFO_SERIAL => {
                    let field = tlv.body.bytes("X'52' serial number", SerialNumber::LEN)?;
                    tlv.body.clone().finish()?;
                    info.serial =
                        Some(SerialNumber::from_wire(field).map_err(|e| {
                            tlv.body.invalid("X'52' serial number", at, e.to_string())
                        })?);
                }
                _ => {
                    return Err(
                        tlv.unexpected(body.structure(), "X'42' holds only X'50', X'51' and X'52'")
                    );
                }
            }
        }
        Ok(info)
    }
}

impl From<SubjectInfo> for CertInfo {
    fn from(s: SubjectInfo) -> Self {
        Self {
            user_data: None,
            eid: s.eid,
            serial: s.serial,
        }
    }
}

/// A decoded (or built) certificate section.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CertificateSection {
    pub key: RsaPublicKey,
    pub info: CertInfo,
    /// One or more.
    pub signatures: Vec<SignatureSubsection>,
}

impl CertificateSection {
    /// The section's bytes and the offset of each signature field in them.
    fn encode_parts(&self) -> Result<(Vec<u8>, Vec<usize>)> {
        if self.signatures.is_empty() {
            return Err(FormatError::Unencodable {
                structure: STRUCTURE,
                field: "signatures",
                reason: "a certificate section has at least one X'45' signature subsection".into(),
            });
        }
        let mut w = Writer::new();
        let outer = w.begin_tlv(ids::CERTIFICATE_SECTION);
        self.key
            .write_subsection(&mut w, ids::CERT_PUBLIC_KEY, STRUCTURE)?;
        self.info.write(&mut w)?;
        let mut offsets = Vec::with_capacity(self.signatures.len());
        for s in &self.signatures {
            offsets.push(s.write(&mut w, STRUCTURE)?);
        }
        w.end_tlv(STRUCTURE, outer)?;
        Ok((w.into_vec(), offsets))
    }

    pub fn encode(&self) -> Result<Certificate> {
        let (bytes, _) = self.encode_parts()?;
        Certificate::new(bytes).map_err(|e| FormatError::unencodable(STRUCTURE, "section", e))
    }

    pub fn decode(cert: &Certificate) -> Result<Self> {
        Self::from_bytes(cert.as_bytes())
    }

    /// Decode a section that must fill `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(STRUCTURE, bytes);
        let section = Self::read(&mut r)?;
        r.finish()?;
        Ok(section)
    }

    /// Read one section from `r` (used by the public-key token decoder too).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let at = r.offset();
        match r.peek_u8() {
            Some(ids::CERTIFICATE_SECTION) => {}
            Some(found) => {
                return Err(FormatError::UnexpectedByte {
                    structure: r.structure(),
                    field: "certificate section identifier",
                    offset: at,
                    expected: ids::CERTIFICATE_SECTION,
                    found,
                });
            }
            None => {
                return Err(FormatError::Missing {
                    structure: r.structure(),
                    what: "certificate section",
                    offset: at,
                });
            }
        }
        let mut body = r.tlv()?.body;

        let key_tlv = match body.is_empty() {
            true => {
                return Err(FormatError::Missing {
                    structure: r.structure(),
                    what: "X'41' public-key subsection",
                    offset: body.offset(),
                });
            }
            false => body.tlv()?,
        };
        if key_tlv.id != ids::CERT_PUBLIC_KEY {
            return Err(
                key_tlv.unexpected(r.structure(), "the X'41' public-key subsection comes first")
            );
        }
        let key = RsaPublicKey::read_body(key_tlv.body)?;

        let mut info = CertInfo::default();
        if body.peek_u8() == Some(ids::CERT_INFORMATION) {
            let tlv = body.tlv()?;
            info = CertInfo::read_body(tlv.body, tlv.offset)?;
        }

        let mut signatures = Vec::new();
        while !body.is_empty() {
            let tlv = body.tlv()?;
            if tlv.id != ids::SIGNATURE {
                return Err(tlv.unexpected(
                    r.structure(),
                    "after X'41' and an optional X'42' only X'45' signature subsections may follow",
                ));
            }
            signatures.push(SignatureSubsection::read_body(tlv.body)?);
        }
        if signatures.is_empty() {
            return Err(FormatError::Missing {
                structure: r.structure(),
                what: "X'45' signature subsection",
                offset: body.offset(),
            });
        }
        Ok(Self {
            key,
            info,
            signatures,
        })
    }

    /// Verify the signature made by `signer` (SHA-256, RSA PKCS#1 v1.5) under
    /// `signer_key`. Refuses a signature with ids mkclone cannot verify (e.g. CCA's
    /// SHA-1 / ISO 9796-1) with [`SignatureError::UnsupportedAlgorithm`].
    pub fn verify(
        &self,
        signer: &KeyLabel,
        signer_key: &RsaPublicKey,
    ) -> Result<(), SignatureError> {
        let (index, sub) = signature::find(&self.signatures, signer)?;
        let (bytes, offsets) = self.encode_parts()?;
        let end = offsets.get(index).copied().unwrap_or(0);
        let signed = bytes.get(..end).unwrap_or(&[]);
        signature::verify(sub, signer_key, signed)
    }
}

/// Starts a certificate section for a key; the signature is made by the caller's device.
#[derive(Clone, Debug)]
pub struct CertificateBuilder {
    key: RsaPublicKey,
    info: CertInfo,
}

impl CertificateBuilder {
    pub fn new(key: RsaPublicKey, info: CertInfo) -> Self {
        Self { key, info }
    }

    /// Lay out the section with one X'45' subsection by `signer` (SHA-256, PKCS#1 v1.5 ids)
    /// whose signature will be `signature_len` bytes (the signer's modulus length).
    pub fn to_be_signed(
        &self,
        signer: &KeyLabel,
        signature_len: usize,
    ) -> Result<UnsignedCertificate> {
        let mut w = Writer::new();
        w.u8(ids::CERTIFICATE_SECTION);
        w.u8(ids::VERSION);
        w.u16(0); // patched below
        self.key
            .write_subsection(&mut w, ids::CERT_PUBLIC_KEY, STRUCTURE)?;
        self.info.write(&mut w)?;
        SignatureSubsection::write_prefix(
            &mut w,
            STRUCTURE,
            ids::HASH_SHA256,
            ids::FORMAT_PKCS1_V15,
            signer,
            signature_len,
        )?;
        let total = w.len().saturating_add(signature_len);
        w.patch_len16(STRUCTURE, "section length", 2, total)?;
        Ok(UnsignedCertificate {
            prefix: w.into_vec(),
            key: self.key.clone(),
            info: self.info.clone(),
            signer: signer.clone(),
            signature_len,
        })
    }
}

/// A certificate section waiting for its signature.
#[derive(Clone, Debug)]
pub struct UnsignedCertificate {
    prefix: Vec<u8>,
    key: RsaPublicKey,
    info: CertInfo,
    signer: KeyLabel,
    signature_len: usize,
}

impl UnsignedCertificate {
    /// The bytes the signer signs (the SHA-256 input): the section from the X'40' byte up
    /// to the signature field.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.prefix
    }

    pub fn signature_len(&self) -> usize {
        self.signature_len
    }

    /// Insert the signature. Does not verify it (the caller holds the signer's key).
    pub fn finish(self, signature: Vec<u8>) -> Result<CertificateSection> {
        FormatError::check_signature_len(
            STRUCTURE,
            "section",
            self.signature_len,
            signature.len(),
        )?;
        Ok(CertificateSection {
            key: self.key,
            info: self.info,
            signatures: vec![SignatureSubsection::sha256_pkcs1(self.signer, signature)],
        })
    }
}

/// The hash a node registers for a public key (CSNDPKH) and checks the key against
/// (CSNDPKR): SHA-256 over the encoded X'41' subsection followed by the encoded X'42'
/// subsection when present, i.e. the certificate section without its head and its
/// signatures.
///
/// This is the project's definition. CCA computes SHA-1 over its own selection of the
/// section ("excluding the signature bits"), which is not documented byte-exactly, so
/// hashes made here do not match a real card's.
pub fn registration_hash(section: &CertificateSection) -> Result<PublicKeyHash> {
    let mut w = Writer::new();
    section
        .key
        .write_subsection(&mut w, ids::CERT_PUBLIC_KEY, STRUCTURE)?;
    section.info.write(&mut w)?;
    let digest = mkclone_backend::timing::measure(mkclone_backend::timing::Category::Sha, || {
        Sha256::digest(w.as_slice())
    });
    PublicKeyHash::new(HashAlgorithm::Sha256, &digest)
        .map_err(|e| FormatError::unencodable(STRUCTURE, "registration hash", e))
}
