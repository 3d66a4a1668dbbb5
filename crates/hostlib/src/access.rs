//! The access-control audit on IBM's CCA host library: the points each step's verb needs
//! (as IBM publishes them, each cited), read from the role with CSUAACM GET-ROLE, and
//! what the operator must check by hand where no public document gives the point.
//!
//! Sources, every offset below is from one of them (nothing is inferred):
//! - [LZ-MKP] IBM CCA for Linux on IBM Z, "Master Key Process (CSNBMKP)", Required
//!   commands (ibm.com/docs/en/linuxonibm/lxcc/wskc_r_mkprequired.html);
//! - [LZ-PKG] the same, "PKA Key Generate (CSNDPKG)", Required commands
//!   (wskc_r_xpkgrequired.html);
//! - [LZ-RKD] the same, "Retained Key Delete (CSNDRKD)", Required commands
//!   (wskc_r_l0wskc226.html);
//! - [LZ-ACM] the same, "Access Control Maintenance (CSUAACM)", Required commands
//!   (wskc_r_acmrequired.html): GET-ROLE needs X'0116';
//! - [LZ-CFQ], [LZ-PKX] the same, CSUACFQ and CSNDPKX: "does not need to document any
//!   Required commands" (wskc_r_cfq.html, wskc_r_pkx.html);
//! - [LZ-ROLE] the same, "Role data structure example" (the role's layout, the role ID
//!   DEFAULT) and "Access control point list" (segments of a bitmap).

use mkclone_backend::CloneableKind;
use mkclone_backend::Operation;
use mkclone_backend::access::{AccessPoint, ManualCheck};

const MKP: &str = "IBM CCA for Linux on IBM Z, Master Key Process (CSNBMKP), Required commands";
const PKG: &str = "IBM CCA for Linux on IBM Z, PKA Key Generate (CSNDPKG), Required commands";
const RKD: &str = "IBM CCA for Linux on IBM Z, Retained Key Delete (CSNDRKD), Required commands";
const ACM: &str =
    "IBM CCA for Linux on IBM Z, Access Control Maintenance (CSUAACM), Required commands";

/// The point CSUAACM GET-ROLE itself needs [LZ-ACM].
pub const READ_ROLE: AccessPoint = AccessPoint {
    offset: 0x0116,
    name: "Access Control Manager - Read role",
    verb: "CSUAACM GET-ROLE",
    source: ACM,
};

/// The points `op` needs on this backend (the verbs of `HostlibBackend::verbs_of`), for the
/// plan's master keys `kinds`.
pub fn required(op: Operation, kinds: &[CloneableKind]) -> Vec<AccessPoint> {
    let per_kind = |sym: AccessPoint, asym: AccessPoint| -> Vec<AccessPoint> {
        kinds
            .iter()
            .map(|k| match k {
                CloneableKind::Sym => sym,
                CloneableKind::Asym => asym,
            })
            .collect()
    };
    match op {
        // [LZ-PKG]: the verb, and the CLONE keyword (CSS and CSR keys are generated CLONE).
        Operation::GenerateRetainedKey => vec![
            AccessPoint {
                offset: 0x0103,
                name: "PKA Key Generate",
                verb: "CSNDPKG",
                source: PKG,
            },
            AccessPoint {
                offset: 0x0204,
                name: "PKA Key Generate - Clone",
                verb: "CSNDPKG CLONE",
                source: PKG,
            },
        ],
        Operation::DeleteRetainedKey => vec![AccessPoint {
            offset: 0x0203,
            name: "Retained Key Delete",
            verb: "CSNDRKD",
            source: RKD,
        }],
        // [LZ-MKP]: SET and CLEAR per master-key class.
        Operation::SetMasterKey => per_kind(
            AccessPoint {
                offset: 0x001A,
                name: "DES Master Key - Set master key",
                verb: "CSNBMKP SET SYM-MK",
                source: MKP,
            },
            AccessPoint {
                offset: 0x0057,
                name: "RSA Master Key - Set master key",
                verb: "CSNBMKP SET ASYM-MK",
                source: MKP,
            },
        ),
        Operation::ClearNew => per_kind(
            AccessPoint {
                offset: 0x0032,
                name: "DES Master Key - Clear new master key register",
                verb: "CSNBMKP CLEAR SYM-MK",
                source: MKP,
            },
            AccessPoint {
                offset: 0x0060,
                name: "RSA Master Key - Clear new master key register",
                verb: "CSNBMKP CLEAR ASYM-MK",
                source: MKP,
            },
        ),
        _ => Vec::new(),
    }
}

/// What the operator must check by hand for `op`: the verbs whose required points no
/// public document mkclone cites gives, and the steps that run outside mkclone on IBM's
/// library.
pub fn by_hand(op: Operation) -> Option<ManualCheck> {
    let what = match op {
        Operation::GenerateRetainedKey => {
            "CSNDPKB (the skeleton token): no published list of required access-control points was found; \
             if CSNDPKB is refused with return code 8, check the role with TKE"
        }
        Operation::RegisterPublicKeyHash => {
            "CSNDPKH (PKA Public Key Hash Register, with CLONE): the point's offset is not in the documents \
             mkclone cites; check with TKE or the CNM utility that the role may register public-key hashes \
             for cloning"
        }
        Operation::RegisterPublicKey => {
            "CSNDPKR (PKA Public Key Register, with CLONE): the point's offset is not in the documents mkclone \
             cites; check with TKE or the CNM utility that the role may register public keys for cloning"
        }
        Operation::ObtainShare => {
            "CSUAMKD OBTAIN: IBM's cloning procedure gives every share index its own access-control point, \
             but not its offset in the documents mkclone cites; check with TKE that the role may obtain each \
             share index of the plan"
        }
        Operation::InstallShare => {
            "CSUAMKD INSTALL: as for OBTAIN, one access-control point per share index, offset not published \
             in the documents mkclone cites; check with TKE that the role may install each share index of the \
             plan"
        }
        Operation::LoadRandomMasterKey => {
            "CSNBMKP RANDOM: the point is not in IBM's published Required commands of CSNBMKP; check the role \
             with TKE"
        }
        Operation::SetEid | Operation::SetMofN | Operation::CertifyPublicKey => {
            "runs with IBM's CNM utility or TKE on this backend (no published verb data): audit that tool's \
             role there"
        }
        _ => return None,
    };
    Some(ManualCheck {
        operation: op,
        what: what.to_string(),
    })
}

/// The non-secret part of a role as CSUAACM GET-ROLE returns it [LZ-ROLE]: version (2),
/// length of the structure including this field (2), comment (20), checksum (2),
/// reserved (2), role ID (8), required authentication strength (2), lower and upper time
/// limits (2 + 2), valid days of the week (1), reserved (1); then the access-control-point
/// list: number of segments (2), reserved (2), and per segment its first point (2), last
/// point (2), number of bitmap bytes (2), reserved (2) and the bitmap, one bit per point
/// from the first, most significant bit first. All integers big-endian.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub id: String,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    first: u16,
    last: u16,
    bitmap: Vec<u8>,
}

const ROLE_HEADER: usize = 2 + 2 + 20 + 2 + 2 + 8 + 2 + 2 + 2 + 1 + 1;

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, String> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| {
            format!(
                "the role ends at byte {} (a field at {at} expected)",
                bytes.len()
            )
        })
}

impl Role {
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let length = usize::from(u16_at(bytes, 2)?);
        if length > bytes.len() || length < ROLE_HEADER + 4 {
            return Err(format!(
                "the role says it is {length} bytes long; {} were returned",
                bytes.len()
            ));
        }
        let bytes = &bytes[..length];
        let id = String::from_utf8_lossy(&bytes[28..36])
            .trim_end()
            .to_string();
        let count = usize::from(u16_at(bytes, ROLE_HEADER)?);
        let mut at = ROLE_HEADER + 4;
        // Room for the segments the bytes left can hold (8 bytes of head each), never for
        // the count alone: a count of 65535 in a 48-byte role reserved 2 MiB (found by the
        // `hostlib_answers` fuzz target).
        let mut segments = Vec::with_capacity(count.min((length - (ROLE_HEADER + 4)) / 8));
        for _ in 0..count {
            let first = u16_at(bytes, at)?;
            let last = u16_at(bytes, at + 2)?;
            let n = usize::from(u16_at(bytes, at + 4)?);
            at += 8;
            let bitmap = bytes
                .get(at..at + n)
                .ok_or_else(|| format!("a bitmap of {n} bytes at {at} runs past the role"))?
                .to_vec();
            if last < first || n * 8 < usize::from(last - first) + 1 {
                return Err(format!(
                    "segment X'{first:04X}'..X'{last:04X}' has a bitmap of {n} bytes"
                ));
            }
            at += n;
            segments.push(Segment {
                first,
                last,
                bitmap,
            });
        }
        if at != length {
            return Err(format!(
                "the access-control-point list ends at byte {at}, the role at {length}"
            ));
        }
        Ok(Self { id, segments })
    }

    /// Whether the role enables the point at `offset` (a point no segment covers is not
    /// enabled).
    pub fn enables(&self, offset: u16) -> bool {
        self.segments.iter().any(|s| {
            (s.first..=s.last).contains(&offset) && {
                let bit = usize::from(offset - s.first);
                s.bitmap
                    .get(bit / 8)
                    .is_some_and(|b| b & (0x80 >> (bit % 8)) != 0)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IBM's published role example [LZ-ROLE], byte for byte: 102 bytes, role DEFAULT,
    /// two segments: X'0000'..X'0117' (35 bytes, starting F0 FF) and X'0200'..X'0217'
    /// (3 bytes: 8F 99 FE).
    fn ibm_example() -> Vec<u8> {
        let mut v = vec![0x01, 0x00, 0x00, 0x66];
        v.extend_from_slice(b"*New default role 1*");
        v.extend_from_slice(&[0xAB, 0xCD, 0x00, 0x00]);
        v.extend_from_slice(b"DEFAULT ");
        v.extend_from_slice(&[0x23, 0x45, 0x01, 0x0F, 0x17, 0x1E, 0x7C, 0x00]);
        v.extend_from_slice(&[0x00, 0x02, 0x00, 0x00]);
        v.extend_from_slice(&[0x00, 0x00, 0x01, 0x17, 0x00, 0x23, 0x00, 0x00]);
        v.push(0xF0);
        v.extend(std::iter::repeat_n(0xFF, 34));
        v.extend_from_slice(&[0x02, 0x00, 0x02, 0x17, 0x00, 0x03, 0x00, 0x00]);
        v.extend_from_slice(&[0x8F, 0x99, 0xFE]);
        v
    }

    #[test]
    fn ibms_example_role_decodes() {
        let bytes = ibm_example();
        assert_eq!(bytes.len(), 0x66);
        let role = Role::decode(&bytes).expect("decodes");
        assert_eq!(role.id, "DEFAULT");
        // First segment: F0 = points 0-3 on, 4-7 off; FF after.
        assert!(role.enables(0x0000) && role.enables(0x0003));
        assert!(!role.enables(0x0004) && !role.enables(0x0007));
        assert!(role.enables(0x0008) && role.enables(0x001A) && role.enables(0x0116));
        assert!(role.enables(0x0117));
        // Not covered by any segment: not enabled.
        assert!(!role.enables(0x0118) && !role.enables(0x01FF));
        // Second segment 8F 99 FE from X'0200': 0x200 on, 0x201-0x203 off, 0x204-0x207 on;
        // 0x99 = 1001 1001 for 0x208-0x20F; FE for 0x210-0x217 (0x217 off).
        assert!(role.enables(0x0200));
        assert!(!role.enables(0x0201) && !role.enables(0x0203));
        assert!(role.enables(0x0204) && role.enables(0x0207));
        assert!(role.enables(0x0208) && !role.enables(0x0209) && role.enables(0x020B));
        assert!(role.enables(0x0210) && !role.enables(0x0217));
        assert!(!role.enables(0x0218));
    }

    #[test]
    fn a_truncated_or_inconsistent_role_is_refused() {
        let bytes = ibm_example();
        assert!(Role::decode(&bytes[..60]).is_err());
        let mut longer = bytes.clone();
        longer[3] = 0x67; // says 103 bytes, 102 given
        assert!(Role::decode(&longer).is_err());
        let mut fewer = bytes;
        fewer[45] = 0x01; // one segment announced, two present: the list ends early
        assert!(Role::decode(&fewer).is_err());
    }

    #[test]
    fn every_point_cites_its_source() {
        for op in Operation::ALL {
            for p in required(op, &CloneableKind::ALL) {
                assert!(p.source.starts_with("IBM CCA for Linux on IBM Z"), "{p:?}");
            }
        }
        assert_eq!(
            required(Operation::SetMasterKey, &[CloneableKind::Asym])
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            [0x0057]
        );
    }
}
