//! The sealed-share container: the bytes inside a `backend::SealedShare`.
//!
//! A PROJECT format (CCA hands the two parts of CSUAMKD OBTAIN's output back separately;
//! mkclone carries them in one canonical byte string with a header naming the target):
//!
//! | size | field |
//! |-----:|-------|
//! | 8  | magic `MKCSHARE` |
//! | 2  | format version, 1 |
//! | 16 | target EID |
//! | 32 | target CSR key fingerprint ([`crate::pka::RsaPublicKey::fingerprint`]) |
//! | 1  | master-key kind (1 SYM, 2 ASYM, as in [`crate::ids`]) |
//! | 1  | share index |
//! | 16 | origin (source) EID |
//! | 2 + n | length, then the wrapped triple-DES key (RSA-OAEP to the CSR key) |
//! | 4 + n | length, then the encrypted cloning-information token |
//!
//! and nothing after. All integers are big-endian.

use mkclone_backend::{CloneableKind, Eid, SealedShare, ShareIndex};
use thiserror::Error;

use crate::clone_info::{kind_code, kind_from_code};
use crate::error::{FormatError, Result};
use crate::reader::{Reader, Writer};

const STRUCTURE: &str = "sealed share";

/// First bytes of every sealed share.
pub const MAGIC: &[u8; 8] = b"MKCSHARE";
/// The container version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// What the container says in the clear: whom the share is for, and what it is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ShareHeader {
    pub target_eid: Eid,
    /// [`crate::pka::RsaPublicKey::fingerprint`] of the target's CSR key.
    pub csr_fingerprint: [u8; 32],
    pub kind: CloneableKind,
    pub index: ShareIndex,
    pub origin_eid: Eid,
}

/// The share names another node. Checked before anything else, by whoever installs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "this share is addressed to EID {target_eid:?} with CSR key {}, but this node is EID {node_eid:?} with CSR key {}; \
     give it to the node it names",
    hex::encode_upper(.target_fingerprint),
    hex::encode_upper(.node_fingerprint)
)]
pub struct WrongTarget {
    pub target_eid: String,
    pub target_fingerprint: [u8; 32],
    pub node_eid: String,
    pub node_fingerprint: [u8; 32],
}

/// How every backend reports a share for another node: the two EIDs and the first 8 bytes
/// of the two CSR-key fingerprints.
impl From<WrongTarget> for mkclone_backend::BackendError {
    fn from(w: WrongTarget) -> Self {
        let short = |f: &[u8; 32]| {
            f.iter()
                .take(8)
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
                + "…"
        };
        mkclone_backend::BackendError::WrongTarget {
            expected_eid: w.target_eid,
            expected_key: short(&w.target_fingerprint),
            actual_eid: w.node_eid,
            actual_key: short(&w.node_fingerprint),
        }
    }
}

impl ShareHeader {
    /// Is this share for the node with `eid` and CSR key fingerprint `csr_fingerprint`?
    pub fn check_addressed_to(
        &self,
        eid: &Eid,
        csr_fingerprint: &[u8; 32],
    ) -> Result<(), WrongTarget> {
        if &self.target_eid == eid && &self.csr_fingerprint == csr_fingerprint {
            return Ok(());
        }
        Err(WrongTarget {
            target_eid: self.target_eid.as_str().to_string(),
            target_fingerprint: self.csr_fingerprint,
            node_eid: eid.as_str().to_string(),
            node_fingerprint: *csr_fingerprint,
        })
    }
}

/// A sealed share, taken apart.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedShareParts {
    pub header: ShareHeader,
    /// The triple-DES key, RSA-OAEP(SHA-1, MGF1-SHA1, no label) encrypted to the CSR key.
    pub wrapped_key: Vec<u8>,
    /// The X'1D' token: 36 clear bytes, then the TLV area under EDE3-CBC.
    pub encrypted_clone_info: Vec<u8>,
}

impl SealedShareParts {
    pub fn encode(&self) -> Result<SealedShare> {
        let fixed: usize = 8 + 2 + 16 + 32 + 1 + 1 + 16 + 2 + 4;
        let len = fixed
            .saturating_add(self.wrapped_key.len())
            .saturating_add(self.encrypted_clone_info.len());
        let mut w = Writer::with_capacity(len);
        w.bytes(MAGIC);
        w.u16(FORMAT_VERSION);
        w.bytes(&self.header.target_eid.to_wire());
        w.bytes(&self.header.csr_fingerprint);
        w.u8(kind_code(self.header.kind));
        w.u8(self.header.index.get());
        w.bytes(&self.header.origin_eid.to_wire());
        w.u16_len(STRUCTURE, "wrapped key length", self.wrapped_key.len())?;
        w.bytes(&self.wrapped_key);
        let ci_len = u32::try_from(self.encrypted_clone_info.len()).map_err(|_| {
            FormatError::Unencodable {
                structure: STRUCTURE,
                field: "cloning-information length",
                reason: "more than 2^32-1 bytes".into(),
            }
        })?;
        w.u32(ci_len);
        w.bytes(&self.encrypted_clone_info);
        SealedShare::new(w.into_vec())
            .map_err(|e| FormatError::unencodable(STRUCTURE, "container", e))
    }

    pub fn decode(share: &SealedShare) -> Result<Self> {
        Self::from_bytes(share.as_bytes())
    }

    /// Decode a container that must fill `bytes` exactly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(STRUCTURE, bytes);
        let magic_at = r.offset();
        if r.bytes("magic", MAGIC.len())? != MAGIC {
            return Err(r.invalid(
                "magic",
                magic_at,
                "this is not a sealed share (it does not start with MKCSHARE)",
            ));
        }
        let version_at = r.offset();
        let version = r.u16("format version")?;
        if version != FORMAT_VERSION {
            return Err(r.invalid(
                "format version",
                version_at,
                format!("version {version}; this mkclone reads version {FORMAT_VERSION}"),
            ));
        }
        let target_eid = read_eid(&mut r, "target EID")?;
        let csr_fingerprint = r.array::<32>("CSR key fingerprint")?;
        let kind_at = r.offset();
        let kind_byte = r.u8("master-key kind")?;
        let kind = kind_from_code(kind_byte).ok_or_else(|| {
            r.invalid(
                "master-key kind",
                kind_at,
                format!("{kind_byte} is neither 1 (SYM) nor 2 (ASYM)"),
            )
        })?;
        let index_at = r.offset();
        let index = ShareIndex::new(r.u8("share index")?)
            .map_err(|e| r.invalid("share index", index_at, e.to_string()))?;
        let origin_eid = read_eid(&mut r, "origin EID")?;
        let key_len = usize::from(r.u16("wrapped key length")?);
        let wrapped_key = r.bytes("wrapped key", key_len)?.to_vec();
        let ci_len = usize::try_from(r.u32("cloning-information length")?).unwrap_or(usize::MAX);
        let encrypted_clone_info = r.bytes("encrypted cloning information", ci_len)?.to_vec();
        r.finish()?;
        Ok(Self {
            header: ShareHeader {
                target_eid,
                csr_fingerprint,
                kind,
                index,
                origin_eid,
            },
            wrapped_key,
            encrypted_clone_info,
        })
    }
}

fn read_eid(r: &mut Reader<'_>, field: &'static str) -> Result<Eid> {
    let at = r.offset();
    let raw = r.bytes(field, Eid::LEN)?;
    Eid::from_wire(raw).map_err(|e| r.invalid(field, at, e.to_string()))
}
