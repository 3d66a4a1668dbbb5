//! The one table of CCA function codes mkclone sends, each with its provenance.
//!
//! IBM publishes the function codes of a few verbs only (they appear in the Linux kernel
//! and in libica, which build those requests). The codes and parameter layouts of the
//! cloning verbs (CSUAMKD, CSNBMKP, CSNDPKH, CSNDPKR, CSNDRKL/RKD, CSUACFC, CSNDPKG with
//! RETAIN) are not public. For those mkclone assigns its own codes, in LOWER-case ASCII,
//! so that they can never alias a real CCA function code (all of which are upper case).
//! The simulator understands both; the zcrypt transport refuses to send a
//! project-assigned code to a real device.

use std::fmt;

use crate::error::CodecError;

/// Where a function code comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Published by IBM or visible in public source; `source` says where.
    Public { source: &'static str },
    /// Assigned by mkclone because IBM has not published the verb's encoding. Valid only
    /// between mkclone and its simulator.
    ProjectAssigned,
}

/// A function code mkclone knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionCode {
    /// Cryptographic_Facility_Query (CSUACFQ).
    FacilityQuery,
    /// Master-key verification patterns and the adapter serial, per register.
    Patterns,
    /// Cryptographic_Facility_Control (CSUACFC) setting the EID.
    SetEid,
    /// Cryptographic_Facility_Control (CSUACFC) SET-MOFN.
    SetMofN,
    /// Share tables per master key (what STATMOFN reports, per key).
    ShareTables,
    /// PKA_Key_Generate (CSNDPKG) with RETAIN.
    GenerateRetained,
    /// Read the public-key token of a retained key.
    RetainedPublicKey,
    /// Retained_Key_List (CSNDRKL).
    ListRetained,
    /// Retained_Key_Delete (CSNDRKD).
    DeleteRetained,
    /// PKA_Public_Key_Hash_Register (CSNDPKH).
    RegisterHash,
    /// PKA_Public_Key_Register (CSNDPKR).
    RegisterKey,
    /// List registered hashes and keys.
    ListRegistrations,
    /// Remove a registered public key and its hash.
    UnregisterKey,
    /// Certify a public key with a retained key (on CCA: a signature by the retained SA
    /// key over a certificate section; inferred, not documented).
    Certify,
    /// Master_Key_Distribution (CSUAMKD) OBTAIN / INSTALL.
    MasterKeyDistribution,
    /// Master_Key_Process (CSNBMKP) SET / CLEAR / RANDOM.
    MasterKeyProcess,
}

/// One row of the table.
pub struct FunctionInfo {
    pub function: FunctionCode,
    pub code: [u8; 2],
    pub verb: &'static str,
    pub provenance: Provenance,
}

/// THE table. Every code mkclone can send or the simulator can answer appears here once.
pub const TABLE: &[FunctionInfo] = &[
    FunctionInfo {
        function: FunctionCode::FacilityQuery,
        code: *b"FQ",
        verb: "Cryptographic_Facility_Query (CSUACFQ)",
        provenance: Provenance::Public {
            source: "Linux kernel drivers/s390/crypto/zcrypt_ccamisc.c (cca_query_crypto_facility)",
        },
    },
    FunctionInfo {
        function: FunctionCode::Patterns,
        code: *b"vp",
        verb: "master-key verification patterns (SHA-1 method) and serial",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::SetEid,
        code: *b"ei",
        verb: "Cryptographic_Facility_Control (CSUACFC), set EID",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::SetMofN,
        code: *b"mn",
        verb: "Cryptographic_Facility_Control (CSUACFC), SET-MOFN",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::ShareTables,
        code: *b"st",
        verb: "share tables per master key (as CSUACFQ STATMOFN)",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::GenerateRetained,
        code: *b"kg",
        verb: "PKA_Key_Generate (CSNDPKG) RETAIN",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::RetainedPublicKey,
        code: *b"kp",
        verb: "read a retained public key",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::ListRetained,
        code: *b"kl",
        verb: "Retained_Key_List (CSNDRKL)",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::DeleteRetained,
        code: *b"kd",
        verb: "Retained_Key_Delete (CSNDRKD)",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::RegisterHash,
        code: *b"hr",
        verb: "PKA_Public_Key_Hash_Register (CSNDPKH)",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::RegisterKey,
        code: *b"pr",
        verb: "PKA_Public_Key_Register (CSNDPKR)",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::ListRegistrations,
        code: *b"rg",
        verb: "list registered public-key hashes and keys",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::UnregisterKey,
        code: *b"rd",
        verb: "remove a registered public key and its hash",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::Certify,
        code: *b"ce",
        verb: "certify a public key with a retained key",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::MasterKeyDistribution,
        code: *b"md",
        verb: "Master_Key_Distribution (CSUAMKD)",
        provenance: Provenance::ProjectAssigned,
    },
    FunctionInfo {
        function: FunctionCode::MasterKeyProcess,
        code: *b"mp",
        verb: "Master_Key_Process (CSNBMKP)",
        provenance: Provenance::ProjectAssigned,
    },
];

/// One rule form of Cryptographic_Facility_Query with its provenance. The function code
/// "FQ" is public, but only the forms the kernel itself sends are public down to the
/// bytes: a request whose encoding no public source shows is mkclone's own guess, even
/// where CCA's keyword and its host-library (CSUACFQ) reply layout are documented.
pub struct QueryRule {
    pub keyword: [u8; 8],
    pub what: &'static str,
    pub provenance: Provenance,
}

/// THE table of FQ rule forms mkclone sends.
pub const QUERY_RULES: &[QueryRule] = &[
    QueryRule {
        keyword: *b"STATICSA",
        what: "FQ STATICSA (serial; ASYM and AES master-key registers)",
        provenance: Provenance::Public {
            source: "Linux kernel drivers/s390/crypto/zcrypt_ccamisc.c (cca_get_info: the request bytes and the reply offsets)",
        },
    },
    QueryRule {
        keyword: *b"STATICSB",
        what: "FQ STATICSB (APKA master-key registers)",
        provenance: Provenance::Public {
            source: "Linux kernel drivers/s390/crypto/zcrypt_ccamisc.c (cca_get_info: the request bytes and the reply offsets)",
        },
    },
    // STATCCAE and STATEID: no public source shows their CPRB encoding. The kernel never
    // sends them; opencryptoki and other users call the CCA host library (CSUACFQ), which
    // builds the CPRB itself. mkclone's request (the keyword, no verb data) and its reading
    // of the reply (8-byte rule-array elements, as the host library returns them) are
    // therefore project encodings: sent only where project encodings may be sent.
    QueryRule {
        keyword: *b"STATCCAE",
        what: "FQ STATCCAE (SYM master-key register states; CPRB encoding not public)",
        provenance: Provenance::ProjectAssigned,
    },
    QueryRule {
        keyword: *b"STATEID ",
        what: "FQ STATEID (the environment identifier; CPRB encoding not public)",
        provenance: Provenance::ProjectAssigned,
    },
];

/// What a request message's parameter block asks for, and whether its encoding is
/// public: the function code, and for FQ the rule form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub function: FunctionCode,
    /// The verb, or for FQ the rule form.
    pub what: &'static str,
    pub provenance: Provenance,
}

impl Encoding {
    /// The encoding of the parameter block `parm` (the bytes after the CPRBX): its
    /// function code, and for FQ its first rule keyword. An unknown code or FQ rule is
    /// an error: nothing mkclone does not know is sent.
    pub fn of(parm: &[u8]) -> Result<Self, CodecError> {
        let code = parm.get(..2).ok_or(CodecError::Truncated {
            what: "function code",
            needed: 2,
            available: parm.len(),
        })?;
        let function = FunctionCode::from_bytes([code[0], code[1]])?;
        if function != FunctionCode::FacilityQuery {
            return Ok(function.encoding());
        }
        let keyword: [u8; 8] =
            parm.get(4..12)
                .and_then(|k| k.try_into().ok())
                .ok_or(CodecError::Truncated {
                    what: "FQ rule array",
                    needed: 12,
                    available: parm.len(),
                })?;
        let rule = QueryRule::find(keyword).ok_or_else(|| CodecError::Field {
            what: "FQ request",
            field: "rule array",
            detail: format!(
                "query {:?} is not one mkclone sends",
                String::from_utf8_lossy(&keyword).trim_end()
            ),
        })?;
        Ok(Self {
            function,
            what: rule.what,
            provenance: rule.provenance,
        })
    }

    pub fn is_project_assigned(&self) -> bool {
        self.provenance == Provenance::ProjectAssigned
    }
}

impl QueryRule {
    pub fn find(keyword: [u8; 8]) -> Option<&'static QueryRule> {
        QUERY_RULES.iter().find(|r| r.keyword == keyword)
    }
}

impl FunctionCode {
    pub fn info(self) -> &'static FunctionInfo {
        // Every variant has exactly one row (checked by a unit test).
        TABLE
            .iter()
            .find(|row| row.function == self)
            .unwrap_or(&TABLE[0])
    }
    pub fn code(self) -> [u8; 2] {
        self.info().code
    }
    pub fn provenance(self) -> Provenance {
        self.info().provenance
    }
    pub fn is_project_assigned(self) -> bool {
        self.provenance() == Provenance::ProjectAssigned
    }
    /// The encoding of a request for this function whatever its rules (for FQ, the
    /// function code alone: a request's own [`Encoding`] adds the rule form).
    pub fn encoding(self) -> Encoding {
        let info = self.info();
        Encoding {
            function: self,
            what: info.verb,
            provenance: info.provenance,
        }
    }
    pub fn from_bytes(code: [u8; 2]) -> Result<Self, CodecError> {
        TABLE
            .iter()
            .find(|row| row.code == code)
            .map(|row| row.function)
            .ok_or(CodecError::UnknownFunction { code })
    }
}

impl fmt::Display for FunctionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.info();
        write!(f, "{} ({})", String::from_utf8_lossy(&info.code), info.verb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FunctionCode; 16] = [
        FunctionCode::FacilityQuery,
        FunctionCode::Patterns,
        FunctionCode::SetEid,
        FunctionCode::SetMofN,
        FunctionCode::ShareTables,
        FunctionCode::GenerateRetained,
        FunctionCode::RetainedPublicKey,
        FunctionCode::ListRetained,
        FunctionCode::DeleteRetained,
        FunctionCode::RegisterHash,
        FunctionCode::RegisterKey,
        FunctionCode::ListRegistrations,
        FunctionCode::UnregisterKey,
        FunctionCode::Certify,
        FunctionCode::MasterKeyDistribution,
        FunctionCode::MasterKeyProcess,
    ];

    #[test]
    fn every_function_has_exactly_one_row_and_codes_are_unique() {
        assert_eq!(TABLE.len(), ALL.len());
        for f in ALL {
            assert_eq!(TABLE.iter().filter(|r| r.function == f).count(), 1, "{f:?}");
            assert_eq!(FunctionCode::from_bytes(f.code()).unwrap(), f);
        }
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert_ne!(a.code, b.code);
            }
        }
    }

    #[test]
    fn only_the_fq_forms_the_kernel_sends_are_public() {
        let fq = |rule: &[u8; 8]| {
            let mut parm = b"FQ\x00\x0a".to_vec();
            parm.extend_from_slice(rule);
            Encoding::of(&parm).unwrap()
        };
        assert!(!fq(b"STATICSA").is_project_assigned());
        assert!(!fq(b"STATICSB").is_project_assigned());
        assert!(fq(b"STATCCAE").is_project_assigned());
        assert!(fq(b"STATEID ").is_project_assigned());
        let mut unknown = b"FQ\x00\x0a".to_vec();
        unknown.extend_from_slice(b"STATAES ");
        assert!(Encoding::of(&unknown).is_err());
        assert!(Encoding::of(b"F").is_err());
        assert!(Encoding::of(b"FQ\x00\x02").is_err(), "an FQ without a rule");
        assert_eq!(
            Encoding::of(b"vp").unwrap().function,
            FunctionCode::Patterns
        );
        assert!(Encoding::of(b"vp").unwrap().is_project_assigned());
    }

    #[test]
    fn project_assigned_codes_are_lower_case_and_public_ones_upper_case() {
        for row in TABLE {
            match row.provenance {
                Provenance::ProjectAssigned => {
                    assert!(row.code.iter().all(u8::is_ascii_lowercase), "{}", row.verb)
                }
                Provenance::Public { source } => {
                    assert!(row.code.iter().all(u8::is_ascii_uppercase), "{}", row.verb);
                    assert!(!source.is_empty());
                }
            }
        }
    }
}
