//! Typed requests and replies of every verb mkclone uses, and their parameter-block
//! encodings. Shared by `CcaBackend` (encodes requests, decodes replies) and the
//! simulator (decodes requests, encodes replies).
//!
//! Only `FQ` (Cryptographic_Facility_Query) with the rules STATICSA and STATICSB follows a
//! public layout down to the bytes: as the Linux kernel sends and reads them
//! ([`crate::facility`]). STATCCAE and STATEID are CCA's keywords, and their reply as the
//! host library returns it (8-byte rule-array elements) is documented (IBM CCA Basic
//! Services Reference 2.54, CSUACFQ), but not their CPRB encoding: mkclone's form of them
//! is a project encoding (`crate::function::QUERY_RULES`). Every other verb here is
//! project-assigned (see [`crate::function`]); its layout is mkclone's own, documented on
//! each variant and in docs/ARCHITECTURE.md, and valid only between mkclone and its
//! simulator.

use mkclone_backend::rules::statmofn;
use mkclone_backend::{
    Certificate, CloneableKind, DomainError, Eid, GenerationState, HashAlgorithm, KeyLabel,
    KeyUsage, MasterKeyKind, PatternAlgorithm, PublicKeyHash, PublicKeyToken, ReceptionState,
    Registration, RetainedKeyInfo, SealedShare, SerialNumber, ShareTables, VerificationPattern,
};

use crate::cprb::{CPRBX_LEN, Cprbx};
use crate::error::CodecError;
use crate::facility::{FQ_VERB_DATA_SPACE, StaticsA, StaticsB};
use crate::function::{Encoding, FunctionCode, Provenance, QueryRule};
use crate::parm::{KeyEntry, Keyword, ParmBlock, Reader};

/// Rule-array keywords. CCA's own where CCA has them (CSUACFQ, CSUAMKD, CSNBMKP,
/// CSNDPKG, CSNDPKB, CSNDPKH, CSUACFC per the Basic Services Reference); `SHA-256` on
/// CSNDPKH is mkclone's (CCA documents only `SHA-1`).
pub mod kw {
    use crate::parm::Keyword;
    pub const STATCCAE: Keyword = Keyword::new("STATCCAE");
    pub const STATEID: Keyword = Keyword::new("STATEID");
    pub const STATICSA: Keyword = Keyword::new("STATICSA");
    pub const STATICSB: Keyword = Keyword::new("STATICSB");
    pub const SET_MOFN: Keyword = Keyword::new("SET-MOFN");
    pub const RETAIN: Keyword = Keyword::new("RETAIN");
    pub const CLONE: Keyword = Keyword::new("CLONE");
    pub const SIG_ONLY: Keyword = Keyword::new("SIG-ONLY");
    pub const KM_ONLY: Keyword = Keyword::new("KM-ONLY");
    pub const SHA_1: Keyword = Keyword::new("SHA-1");
    pub const SHA_256: Keyword = Keyword::new("SHA-256");
    pub const OBTAIN: Keyword = Keyword::new("OBTAIN");
    pub const INSTALL: Keyword = Keyword::new("INSTALL");
    pub const SYM_MK: Keyword = Keyword::new("SYM-MK");
    pub const ASYM_MK: Keyword = Keyword::new("ASYM-MK");
    pub const SET: Keyword = Keyword::new("SET");
    pub const CLEAR: Keyword = Keyword::new("CLEAR");
    pub const RANDOM: Keyword = Keyword::new("RANDOM");
}

/// The rule keywords that choose a key usage, a hash algorithm, a CSNBMKP action.
const USAGE_RULES: [(Keyword, KeyUsage); 2] = [
    (kw::SIG_ONLY, KeyUsage::SignatureOnly),
    (kw::KM_ONLY, KeyUsage::KeyManagementOnly),
];
const HASH_RULES: [(Keyword, HashAlgorithm); 2] = [
    (kw::SHA_1, HashAlgorithm::Sha1),
    (kw::SHA_256, HashAlgorithm::Sha256),
];
const ACTION_RULES: [(Keyword, MkAction); 3] = [
    (kw::SET, MkAction::Set),
    (kw::CLEAR, MkAction::Clear),
    (kw::RANDOM, MkAction::Random),
];

/// The keyword that chooses `choice` in `rules`.
fn rule_for<T: PartialEq>(rules: &[(Keyword, T)], choice: T) -> Keyword {
    rules
        .iter()
        .find(|(_, t)| *t == choice)
        .map(|(k, _)| *k)
        .unwrap_or(Keyword::new(""))
}

/// What `rule` chooses in `rules`; no rule, or another, is the `missing` rule of
/// `function`.
fn chosen<T: Copy>(
    rules: &[(Keyword, T)],
    rule: Option<&Keyword>,
    function: &'static str,
    missing: &'static str,
) -> Result<T, CodecError> {
    rules
        .iter()
        .find(|(k, _)| Some(k) == rule)
        .map(|(_, t)| *t)
        .ok_or(CodecError::MissingRule { function, missing })
}

/// Which facility query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// STATCCAE: SYM new/current/old in elements 1-3, ASYM in 7-9.
    StatCcae,
    /// STATEID: the EID in elements 1-2.
    StatEid,
    /// STATICSA: adapter serial, ASYM and AES register states and patterns
    /// ([`StaticsA`]). The request carries [`FQ_VERB_DATA_SPACE`] zero bytes of verb data,
    /// the room the card may fill, as the Linux kernel's request does.
    StatIcsa,
    /// STATICSB: APKA register states and patterns, SYM patterns ([`StaticsB`]). Same
    /// request shape as STATICSA.
    StatIcsb,
}

/// Which CSNBMKP action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MkAction {
    Set,
    Clear,
    Random,
}

/// Every request mkclone sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Query(Query),
    /// `vp`: no parameters.
    Patterns,
    /// `ei`: verb data = EID (16).
    SetEid(Eid),
    /// `mn`: rule SET-MOFN; verb data = m (1), n (1). Raw, so a card can refuse bad
    /// values itself.
    SetMofN {
        m: u8,
        n: u8,
    },
    /// `st`: no parameters.
    ShareTables,
    /// `kg`: rules RETAIN, SIG-ONLY|KM-ONLY, [CLONE]; verb data = modulus bits (u16);
    /// key block = label (64).
    GenerateRetained {
        label: KeyLabel,
        usage: KeyUsage,
        clone: bool,
        bits: u16,
    },
    /// `kp`: key block = label.
    RetainedPublicKey {
        label: KeyLabel,
    },
    /// `kl`: no parameters.
    ListRetained,
    /// `kd`: key block = label.
    DeleteRetained {
        label: KeyLabel,
    },
    /// `rd`: key block = name. Removes the registered key and its hash.
    UnregisterKey {
        name: KeyLabel,
    },
    /// `hr`: rules SHA-1|SHA-256, [CLONE]; verb data = hash; key block = name.
    RegisterHash {
        name: KeyLabel,
        hash: PublicKeyHash,
        clone: bool,
    },
    /// `pr`: rules [CLONE]; key block = name, certificate section.
    RegisterKey {
        name: KeyLabel,
        certificate: Certificate,
        clone: bool,
    },
    /// `rg`: no parameters.
    ListRegistrations,
    /// `ce`: verb data = flags (bit 0 EID present, bit 1 serial present), EID (16),
    /// serial (8); key block = signer label, subject public-key token.
    Certify {
        signer: KeyLabel,
        subject: PublicKeyToken,
        eid: Option<Eid>,
        serial: Option<SerialNumber>,
    },
    /// `md` OBTAIN: rules OBTAIN, SYM-MK|ASYM-MK; verb data = share index (u32); key
    /// block = CSS label, SA name, CSR certificate section.
    Obtain(ObtainShare),
    /// `md` INSTALL: rules INSTALL, SYM-MK|ASYM-MK; key block = CSR label, SA name, CSS
    /// certificate section, sealed share.
    Install(InstallShare),
    /// `mp`: rules SET|CLEAR|RANDOM, SYM-MK|ASYM-MK.
    MasterKey {
        action: MkAction,
        kind: CloneableKind,
    },
}

/// What `md` OBTAIN carries: one variant's fields, as one value every layer (codec,
/// transport, simulator) hands on whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObtainShare {
    pub kind: CloneableKind,
    /// The share index as the verb data carries it (any u32: the card checks it).
    pub index: u32,
    pub css_label: KeyLabel,
    pub sa_name: KeyLabel,
    pub csr_certificate: Certificate,
}

/// What `md` INSTALL carries (see [`ObtainShare`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallShare {
    pub kind: CloneableKind,
    pub csr_label: KeyLabel,
    pub sa_name: KeyLabel,
    pub css_certificate: Certificate,
    pub share: SealedShare,
}

/// A master-key pattern entry of a `vp` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternEntry {
    pub kind: MasterKeyKind,
    pub register: Register,
    pub pattern: VerificationPattern,
}

/// Which register of a master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    New,
    Current,
    Old,
}

/// What a reply carries besides its codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyBody {
    /// Failure replies and verbs that return nothing.
    Empty,
    /// FQ STATCCAE, STATEID: 8-byte rule-array elements.
    Elements(Vec<Keyword>),
    /// FQ STATICSA: rule-array elements and verb data, decoded (boxed: it is large).
    StaticsA(Box<StaticsA>),
    /// FQ STATICSB: rule-array elements and verb data, decoded (boxed: it is large).
    StaticsB(Box<StaticsB>),
    /// `vp`: verb data = serial (8), count (1), entries of kind (1: SYM 1, ASYM 2, AES 3,
    /// APKA 4), register (1: NEW 1, CURRENT 2, OLD 3), algorithm (1: SHA-1 method 1,
    /// MDC-4 2, SHA-256 method 3), length (1), pattern.
    Patterns {
        serial: SerialNumber,
        entries: Vec<PatternEntry>,
    },
    /// `st`: verb data = m (1), n (1) (0, 0 when unset), count (1), then per key: kind
    /// (1), 15 generation digits, 15 reception digits (STATMOFN's characters).
    ShareTables {
        m_of_n: Option<(u8, u8)>,
        tables: Vec<ShareTables>,
    },
    /// `kg`, `kp`: key block = public-key token.
    PublicKey(PublicKeyToken),
    /// `kl`: verb data = count (u16), entries of label (64), usage (1: SIG-ONLY 1,
    /// KM-ONLY 2), clone (1), modulus bits (u16).
    RetainedKeys(Vec<RetainedKeyInfo>),
    /// `rg`: verb data = count (u16), entries of name (64), clone (1), hash algorithm
    /// (1: SHA-1 1, SHA-256 2), hash length (1), hash, key present (1); key block = the
    /// certificates of the entries with a key, in order.
    Registrations(Vec<Registration>),
    /// `ce`: key block = certificate section.
    Certificate(Certificate),
    /// `md` OBTAIN: key block = sealed share.
    Share(SealedShare),
    /// `md` INSTALL: verb data = shares received (1), m (1).
    InstallProgress { received: u8, m: u8 },
}

/// A reply: CCA's return and reason codes and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub return_code: u16,
    pub reason_code: u16,
    pub body: ReplyBody,
}

impl Reply {
    pub fn ok(body: ReplyBody) -> Self {
        Self {
            return_code: 0,
            reason_code: 0,
            body,
        }
    }
    pub fn code(return_code: u16, reason_code: u16) -> Self {
        Self {
            return_code,
            reason_code,
            body: ReplyBody::Empty,
        }
    }
}

fn kind_keyword(kind: CloneableKind) -> Keyword {
    match kind {
        CloneableKind::Sym => kw::SYM_MK,
        CloneableKind::Asym => kw::ASYM_MK,
    }
}

fn kind_from_rules(p: &ParmBlock, function: &'static str) -> Result<CloneableKind, CodecError> {
    match (p.has_rule(kw::SYM_MK), p.has_rule(kw::ASYM_MK)) {
        (true, false) => Ok(CloneableKind::Sym),
        (false, true) => Ok(CloneableKind::Asym),
        _ => Err(CodecError::MissingRule {
            function,
            missing: "exactly one of SYM-MK, ASYM-MK",
        }),
    }
}

fn domain(what: &'static str) -> impl FnOnce(DomainError) -> CodecError {
    move |source| CodecError::Domain { what, source }
}

fn label_entry(label: &KeyLabel) -> KeyEntry {
    KeyEntry::new(label.to_wire().to_vec())
}

/// A 0/1 byte (anything else would give two encodings one meaning).
fn flag_byte(r: &mut Reader<'_>, field: &'static str) -> Result<bool, CodecError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(CodecError::Field {
            what: "reply",
            field,
            detail: format!("{v}, expected 0 or 1"),
        }),
    }
}

/// mkclone's verbs carry no key-block flags: every entry's flag is 0.
fn expect_zero_flags(p: &ParmBlock, what: &'static str) -> Result<(), CodecError> {
    match p.keys.iter().find(|k| k.flag != 0) {
        Some(k) => Err(CodecError::Field {
            what,
            field: "key-block entry flag",
            detail: format!("X'{:04X}', expected 0", k.flag),
        }),
        None => Ok(()),
    }
}

fn key_at<'a>(p: &'a ParmBlock, i: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
    p.keys
        .get(i)
        .map(|k| k.token.as_slice())
        .ok_or(CodecError::Truncated {
            what,
            needed: i + 1,
            available: p.keys.len(),
        })
}

fn label_at(p: &ParmBlock, i: usize, what: &'static str) -> Result<KeyLabel, CodecError> {
    KeyLabel::from_wire(key_at(p, i, what)?).map_err(domain(what))
}

/// Key-block entry `i` as one of the opaque byte types (`new` checks it).
fn bytes_at<T>(
    p: &ParmBlock,
    i: usize,
    what: &'static str,
    new: impl FnOnce(Vec<u8>) -> Result<T, DomainError>,
) -> Result<T, CodecError> {
    new(key_at(p, i, what)?.to_vec()).map_err(domain(what))
}

/// A list's length in its count field (`u8` or `u16`), or `TooLong`.
fn count<N: TryFrom<usize>>(len: usize, what: &'static str) -> Result<N, CodecError> {
    N::try_from(len).map_err(|_| CodecError::TooLong { what, len })
}

/// A message: the CPRBX, then the parameter block.
fn message(header: &Cprbx, parm: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CPRBX_LEN + parm.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(parm);
    out
}

/// A message's CPRBX and parameter bytes, which must be as many as its `field` (the
/// length `declared` reads from it) says.
fn split_message<'a>(
    bytes: &'a [u8],
    what: &'static str,
    field: &'static str,
    declared: impl FnOnce(&Cprbx) -> u32,
) -> Result<(Cprbx, &'a [u8]), CodecError> {
    let header = Cprbx::decode(bytes)?;
    let parm = &bytes[CPRBX_LEN..];
    let declared = declared(&header);
    if declared as usize != parm.len() {
        return Err(CodecError::Field {
            what,
            field,
            detail: format!("{declared} but {} parameter bytes follow", parm.len()),
        });
    }
    Ok((header, parm))
}

/// A `field` of `what` holding `actual` items (`unit`), which must be `expected`.
fn expect_count(
    what: &'static str,
    field: &'static str,
    unit: &str,
    actual: usize,
    expected: usize,
) -> Result<(), CodecError> {
    if actual != expected {
        return Err(CodecError::Field {
            what,
            field,
            detail: format!("{actual} {unit}, expected {expected}"),
        });
    }
    Ok(())
}

fn expect_keys(p: &ParmBlock, n: usize, what: &'static str) -> Result<(), CodecError> {
    expect_count(what, "key block", "entries", p.keys.len(), n)
}

fn expect_no_verb_data(p: &ParmBlock, what: &'static str) -> Result<(), CodecError> {
    if !p.verb_data.is_empty() {
        return Err(CodecError::Field {
            what,
            field: "verb data",
            detail: "must be empty".into(),
        });
    }
    Ok(())
}

impl Query {
    /// The rule keyword that selects this query.
    pub fn keyword(self) -> Keyword {
        match self {
            Self::StatCcae => kw::STATCCAE,
            Self::StatEid => kw::STATEID,
            Self::StatIcsa => kw::STATICSA,
            Self::StatIcsb => kw::STATICSB,
        }
    }
}

impl Request {
    /// What this request is and whether its encoding is public (`function::TABLE`, and
    /// for FQ `function::QUERY_RULES`).
    pub fn encoding(&self) -> Encoding {
        let function = self.function();
        match self {
            Self::Query(q) => match QueryRule::find(q.keyword().bytes()) {
                Some(rule) => Encoding {
                    function,
                    what: rule.what,
                    provenance: rule.provenance,
                },
                // Every query is in QUERY_RULES (a unit test checks it); a missing row
                // would be treated as the project's own, never as public.
                None => Encoding {
                    function,
                    what: function.info().verb,
                    provenance: Provenance::ProjectAssigned,
                },
            },
            _ => Encoding {
                function,
                what: function.info().verb,
                provenance: function.provenance(),
            },
        }
    }

    pub fn function(&self) -> FunctionCode {
        match self {
            Self::Query(_) => FunctionCode::FacilityQuery,
            Self::Patterns => FunctionCode::Patterns,
            Self::SetEid(_) => FunctionCode::SetEid,
            Self::SetMofN { .. } => FunctionCode::SetMofN,
            Self::ShareTables => FunctionCode::ShareTables,
            Self::GenerateRetained { .. } => FunctionCode::GenerateRetained,
            Self::RetainedPublicKey { .. } => FunctionCode::RetainedPublicKey,
            Self::ListRetained => FunctionCode::ListRetained,
            Self::DeleteRetained { .. } => FunctionCode::DeleteRetained,
            Self::UnregisterKey { .. } => FunctionCode::UnregisterKey,
            Self::RegisterHash { .. } => FunctionCode::RegisterHash,
            Self::RegisterKey { .. } => FunctionCode::RegisterKey,
            Self::ListRegistrations => FunctionCode::ListRegistrations,
            Self::Certify { .. } => FunctionCode::Certify,
            Self::Obtain(_) | Self::Install(_) => FunctionCode::MasterKeyDistribution,
            Self::MasterKey { .. } => FunctionCode::MasterKeyProcess,
        }
    }

    /// Whether repeating the request can change nothing beyond what one request does.
    /// Only these may be retried after a transient device failure.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Self::Query(_)
                | Self::Patterns
                | Self::ShareTables
                | Self::RetainedPublicKey { .. }
                | Self::ListRetained
                | Self::ListRegistrations
                | Self::Certify { .. }
        )
    }

    pub fn to_parm(&self) -> ParmBlock {
        let mut p = ParmBlock::new(self.function());
        match self {
            Self::Query(Query::StatCcae) => p.rules.push(kw::STATCCAE),
            Self::Query(Query::StatEid) => p.rules.push(kw::STATEID),
            Self::Query(Query::StatIcsa) => {
                p.rules.push(kw::STATICSA);
                p.verb_data = vec![0; FQ_VERB_DATA_SPACE];
            }
            Self::Query(Query::StatIcsb) => {
                p.rules.push(kw::STATICSB);
                p.verb_data = vec![0; FQ_VERB_DATA_SPACE];
            }
            Self::Patterns | Self::ShareTables | Self::ListRetained | Self::ListRegistrations => {}
            Self::SetEid(eid) => p.verb_data = eid.to_wire().to_vec(),
            Self::SetMofN { m, n } => {
                p.rules.push(kw::SET_MOFN);
                p.verb_data = vec![*m, *n];
            }
            Self::GenerateRetained {
                label,
                usage,
                clone,
                bits,
            } => {
                p.rules.push(kw::RETAIN);
                p.rules.push(rule_for(&USAGE_RULES, *usage));
                p.rules.extend(clone.then_some(kw::CLONE));
                p.verb_data = bits.to_be_bytes().to_vec();
                p.keys.push(label_entry(label));
            }
            Self::RetainedPublicKey { label }
            | Self::DeleteRetained { label }
            | Self::UnregisterKey { name: label } => p.keys.push(label_entry(label)),
            Self::RegisterHash { name, hash, clone } => {
                p.rules.push(rule_for(&HASH_RULES, hash.algorithm()));
                p.rules.extend(clone.then_some(kw::CLONE));
                p.verb_data = hash.bytes().to_vec();
                p.keys.push(label_entry(name));
            }
            Self::RegisterKey {
                name,
                certificate,
                clone,
            } => {
                p.rules.extend(clone.then_some(kw::CLONE));
                p.keys
                    .extend([label_entry(name), KeyEntry::new(certificate.as_bytes())]);
            }
            Self::Certify {
                signer,
                subject,
                eid,
                serial,
            } => {
                let flags = u8::from(eid.is_some()) | (u8::from(serial.is_some()) << 1);
                p.verb_data.push(flags);
                p.verb_data
                    .extend_from_slice(&eid.as_ref().map(Eid::to_wire).unwrap_or([0; 16]));
                p.verb_data.extend_from_slice(
                    &serial.as_ref().map(SerialNumber::to_wire).unwrap_or([0; 8]),
                );
                p.keys
                    .extend([label_entry(signer), KeyEntry::new(subject.as_bytes())]);
            }
            Self::Obtain(o) => {
                p.rules.extend([kw::OBTAIN, kind_keyword(o.kind)]);
                p.verb_data = o.index.to_be_bytes().to_vec();
                p.keys.extend([
                    label_entry(&o.css_label),
                    label_entry(&o.sa_name),
                    KeyEntry::new(o.csr_certificate.as_bytes()),
                ]);
            }
            Self::Install(i) => {
                p.rules.extend([kw::INSTALL, kind_keyword(i.kind)]);
                p.keys.extend([
                    label_entry(&i.csr_label),
                    label_entry(&i.sa_name),
                    KeyEntry::new(i.css_certificate.as_bytes()),
                    KeyEntry::new(i.share.as_bytes()),
                ]);
            }
            Self::MasterKey { action, kind } => {
                p.rules.push(rule_for(&ACTION_RULES, *action));
                p.rules.push(kind_keyword(*kind));
            }
        }
        p
    }

    pub fn from_parm(p: &ParmBlock) -> Result<Self, CodecError> {
        expect_zero_flags(p, "request")?;
        let expect_rules = |n: usize, what: &'static str| {
            expect_count(what, "rule array", "keywords", p.rules.len(), n)
        };
        let clone_flag = |base: usize, what: &'static str| -> Result<bool, CodecError> {
            match p.rules.len() - base.min(p.rules.len()) {
                0 => Ok(false),
                1 if p.rules[base] == kw::CLONE => Ok(true),
                _ => Err(CodecError::Field {
                    what,
                    field: "rule array",
                    detail: "only CLONE may follow".into(),
                }),
            }
        };
        let req = match p.function {
            FunctionCode::FacilityQuery => {
                expect_rules(1, "FQ request")?;
                expect_keys(p, 0, "FQ request")?;
                let space = |what: &'static str| -> Result<(), CodecError> {
                    if p.verb_data.len() != FQ_VERB_DATA_SPACE
                        || p.verb_data.iter().any(|&b| b != 0)
                    {
                        return Err(CodecError::Field {
                            what,
                            field: "verb data",
                            detail: format!("must be {FQ_VERB_DATA_SPACE} zero bytes"),
                        });
                    }
                    Ok(())
                };
                if p.rules[0] == kw::STATCCAE {
                    expect_no_verb_data(p, "FQ request")?;
                    Self::Query(Query::StatCcae)
                } else if p.rules[0] == kw::STATEID {
                    expect_no_verb_data(p, "FQ request")?;
                    Self::Query(Query::StatEid)
                } else if p.rules[0] == kw::STATICSA {
                    space("FQ STATICSA request")?;
                    Self::Query(Query::StatIcsa)
                } else if p.rules[0] == kw::STATICSB {
                    space("FQ STATICSB request")?;
                    Self::Query(Query::StatIcsb)
                } else {
                    return Err(CodecError::Field {
                        what: "FQ request",
                        field: "rule array",
                        detail: format!("query {:?} is not one mkclone sends", p.rules[0].text()),
                    });
                }
            }
            FunctionCode::Patterns
            | FunctionCode::ShareTables
            | FunctionCode::ListRetained
            | FunctionCode::ListRegistrations => {
                expect_rules(0, "request")?;
                expect_no_verb_data(p, "request")?;
                expect_keys(p, 0, "request")?;
                match p.function {
                    FunctionCode::Patterns => Self::Patterns,
                    FunctionCode::ShareTables => Self::ShareTables,
                    FunctionCode::ListRetained => Self::ListRetained,
                    _ => Self::ListRegistrations,
                }
            }
            FunctionCode::SetEid => {
                expect_rules(0, "set-EID request")?;
                expect_keys(p, 0, "set-EID request")?;
                Self::SetEid(Eid::from_wire(&p.verb_data).map_err(domain("set-EID request"))?)
            }
            FunctionCode::SetMofN => {
                expect_rules(1, "SET-MOFN request")?;
                expect_keys(p, 0, "SET-MOFN request")?;
                if p.rules[0] != kw::SET_MOFN {
                    return Err(CodecError::MissingRule {
                        function: "SET-MOFN",
                        missing: "SET-MOFN",
                    });
                }
                let mut r = Reader::new(&p.verb_data);
                let m = r.u8("m")?;
                let n = r.u8("n")?;
                r.finish("SET-MOFN verb data")?;
                Self::SetMofN { m, n }
            }
            FunctionCode::GenerateRetained => {
                if p.rules.len() < 2 || p.rules[0] != kw::RETAIN {
                    return Err(CodecError::MissingRule {
                        function: "PKA_Key_Generate",
                        missing: "RETAIN, SIG-ONLY|KM-ONLY",
                    });
                }
                let usage = chosen(
                    &USAGE_RULES,
                    p.rules.get(1),
                    "PKA_Key_Generate",
                    "SIG-ONLY|KM-ONLY",
                )?;
                let clone = clone_flag(2, "PKA_Key_Generate request")?;
                expect_keys(p, 1, "PKA_Key_Generate request")?;
                let mut r = Reader::new(&p.verb_data);
                let bits = r.u16("modulus bits")?;
                r.finish("PKA_Key_Generate verb data")?;
                Self::GenerateRetained {
                    label: label_at(p, 0, "retained key label")?,
                    usage,
                    clone,
                    bits,
                }
            }
            FunctionCode::RetainedPublicKey
            | FunctionCode::DeleteRetained
            | FunctionCode::UnregisterKey => {
                expect_rules(0, "retained-key request")?;
                expect_no_verb_data(p, "retained-key request")?;
                expect_keys(p, 1, "retained-key request")?;
                let label = label_at(p, 0, "retained key label")?;
                match p.function {
                    FunctionCode::RetainedPublicKey => Self::RetainedPublicKey { label },
                    FunctionCode::DeleteRetained => Self::DeleteRetained { label },
                    _ => Self::UnregisterKey { name: label },
                }
            }
            FunctionCode::RegisterHash => {
                let algorithm = chosen(
                    &HASH_RULES,
                    p.rules.first(),
                    "PKA_Public_Key_Hash_Register",
                    "SHA-1|SHA-256",
                )?;
                let clone = clone_flag(1, "PKA_Public_Key_Hash_Register request")?;
                expect_keys(p, 1, "PKA_Public_Key_Hash_Register request")?;
                let hash = PublicKeyHash::new(algorithm, &p.verb_data)
                    .map_err(domain("registered hash"))?;
                Self::RegisterHash {
                    name: label_at(p, 0, "registration name")?,
                    hash,
                    clone,
                }
            }
            FunctionCode::RegisterKey => {
                let clone = clone_flag(0, "PKA_Public_Key_Register request")?;
                expect_no_verb_data(p, "PKA_Public_Key_Register request")?;
                expect_keys(p, 2, "PKA_Public_Key_Register request")?;
                let certificate = bytes_at(p, 1, "certificate", Certificate::new)?;
                Self::RegisterKey {
                    name: label_at(p, 0, "registration name")?,
                    certificate,
                    clone,
                }
            }
            FunctionCode::Certify => {
                expect_rules(0, "certify request")?;
                expect_keys(p, 2, "certify request")?;
                let mut r = Reader::new(&p.verb_data);
                let flags = r.u8("flags")?;
                let eid = r.array::<16>("EID")?;
                let serial = r.array::<8>("serial")?;
                r.finish("certify verb data")?;
                if flags & !0b11 != 0 {
                    return Err(CodecError::Field {
                        what: "certify request",
                        field: "flags",
                        detail: format!("X'{flags:02X}'"),
                    });
                }
                // An absent field is all zeros: one encoding per meaning.
                if (flags & 1 == 0 && eid != [0; 16]) || (flags & 2 == 0 && serial != [0; 8]) {
                    return Err(CodecError::Field {
                        what: "certify request",
                        field: "EID/serial",
                        detail: "a field whose flag bit is clear must be zeros".into(),
                    });
                }
                let eid = if flags & 1 != 0 {
                    Some(Eid::from_wire(&eid).map_err(domain("subject EID"))?)
                } else {
                    None
                };
                let serial = if flags & 2 != 0 {
                    Some(SerialNumber::from_wire(&serial).map_err(domain("subject serial"))?)
                } else {
                    None
                };
                let subject = bytes_at(p, 1, "subject token", PublicKeyToken::new)?;
                Self::Certify {
                    signer: label_at(p, 0, "signer label")?,
                    subject,
                    eid,
                    serial,
                }
            }
            FunctionCode::MasterKeyDistribution => {
                expect_rules(2, "Master_Key_Distribution request")?;
                let kind = kind_from_rules(p, "Master_Key_Distribution")?;
                if p.rules[0] == kw::OBTAIN {
                    expect_keys(p, 3, "OBTAIN request")?;
                    let mut r = Reader::new(&p.verb_data);
                    let index = r.u32("share index")?;
                    r.finish("OBTAIN verb data")?;
                    Self::Obtain(ObtainShare {
                        kind,
                        index,
                        css_label: label_at(p, 0, "CSS key label")?,
                        sa_name: label_at(p, 1, "SA key name")?,
                        csr_certificate: bytes_at(p, 2, "CSR certificate", Certificate::new)?,
                    })
                } else if p.rules[0] == kw::INSTALL {
                    expect_keys(p, 4, "INSTALL request")?;
                    expect_no_verb_data(p, "INSTALL request")?;
                    Self::Install(InstallShare {
                        kind,
                        csr_label: label_at(p, 0, "CSR key label")?,
                        sa_name: label_at(p, 1, "SA key name")?,
                        css_certificate: bytes_at(p, 2, "CSS certificate", Certificate::new)?,
                        share: bytes_at(p, 3, "sealed share", SealedShare::new)?,
                    })
                } else {
                    return Err(CodecError::MissingRule {
                        function: "Master_Key_Distribution",
                        missing: "OBTAIN|INSTALL",
                    });
                }
            }
            FunctionCode::MasterKeyProcess => {
                expect_rules(2, "Master_Key_Process request")?;
                expect_no_verb_data(p, "Master_Key_Process request")?;
                expect_keys(p, 0, "Master_Key_Process request")?;
                let kind = kind_from_rules(p, "Master_Key_Process")?;
                let action = chosen(
                    &ACTION_RULES,
                    p.rules.first(),
                    "Master_Key_Process",
                    "SET|CLEAR|RANDOM",
                )?;
                Self::MasterKey { action, kind }
            }
        };
        Ok(req)
    }

    /// The whole request message: CPRBX followed by the parameter block.
    pub fn to_message(&self, domain: u16, reply_capacity: usize) -> Result<Vec<u8>, CodecError> {
        let parm = self.to_parm().encode()?;
        let header = Cprbx::request(domain, parm.len(), reply_capacity)?;
        Ok(message(&header, &parm))
    }

    /// Decode a request message; the CPRBX's parameter length must match.
    pub fn from_message(bytes: &[u8]) -> Result<(Cprbx, Self), CodecError> {
        let (header, parm) = split_message(bytes, "CPRBX", "req_parml", |h| h.req_parml)?;
        Ok((header, Self::from_parm(&ParmBlock::decode(parm)?)?))
    }
}

/// The smallest `vp` pattern entry: kind, register, algorithm and length bytes.
const MIN_PATTERN_ENTRY: usize = 4;

const KINDS: [(u8, MasterKeyKind); 4] = [
    (1, MasterKeyKind::Sym),
    (2, MasterKeyKind::Asym),
    (3, MasterKeyKind::Aes),
    (4, MasterKeyKind::Apka),
];
const ALGS: [(u8, PatternAlgorithm); 3] = [
    (1, PatternAlgorithm::Sha1Method),
    (2, PatternAlgorithm::Mdc4),
    (3, PatternAlgorithm::Sha256Method),
];
const REGS: [(u8, Register); 3] = [
    (1, Register::New),
    (2, Register::Current),
    (3, Register::Old),
];

const USAGES: [(u8, KeyUsage); 2] = [
    (1, KeyUsage::SignatureOnly),
    (2, KeyUsage::KeyManagementOnly),
];
const HASH_ALGS: [(u8, HashAlgorithm); 2] = [(1, HashAlgorithm::Sha1), (2, HashAlgorithm::Sha256)];

fn code_of<T: PartialEq + Copy>(table: &[(u8, T)], v: T) -> u8 {
    table
        .iter()
        .find(|(_, t)| *t == v)
        .map(|(c, _)| *c)
        .unwrap_or(0)
}
fn value_of<T: Copy>(table: &[(u8, T)], c: u8) -> Option<T> {
    table.iter().find(|(k, _)| *k == c).map(|(_, t)| *t)
}
fn from_code<T: Copy>(table: &[(u8, T)], c: u8, what: &'static str) -> Result<T, CodecError> {
    value_of(table, c).ok_or(CodecError::Field {
        what: "reply",
        field: what,
        detail: format!("unknown code {c}"),
    })
}
/// The value of a list entry's `field` (its code read from `r`), or an error naming the
/// list (`what`).
fn listed_code<T: Copy>(
    r: &mut Reader<'_>,
    table: &[(u8, T)],
    what: &'static str,
    field: &'static str,
) -> Result<T, CodecError> {
    let c = r.u8(field)?;
    value_of(table, c).ok_or(CodecError::Field {
        what,
        field,
        detail: format!("code {c}"),
    })
}
/// A list entry's 64-byte label (its `field`).
fn listed_label(
    r: &mut Reader<'_>,
    field: &'static str,
    what: &'static str,
) -> Result<KeyLabel, CodecError> {
    KeyLabel::from_wire(r.take(64, field)?).map_err(domain(what))
}

fn cloneable_code(kind: CloneableKind) -> u8 {
    code_of(&KINDS, kind.kind())
}

/// A STATMOFN digit of an `st` reply (the digits are `mkclone_backend::rules::statmofn`'s).
fn statmofn_state<S>(
    digit: u8,
    field: &'static str,
    state: impl FnOnce(u8) -> Result<S, DomainError>,
) -> Result<S, CodecError> {
    state(digit).map_err(|_| CodecError::Field {
        what: "reply",
        field,
        detail: format!("unknown code {digit}"),
    })
}

impl ReplyBody {
    fn to_parm(&self, function: FunctionCode) -> Result<ParmBlock, CodecError> {
        let mut p = ParmBlock::new(function);
        match self {
            Self::Empty => {}
            Self::Elements(e) => p.rules = e.clone(),
            Self::StaticsA(a) => (p.rules, p.verb_data) = a.encode(),
            Self::StaticsB(b) => (p.rules, p.verb_data) = b.encode(),
            Self::Patterns { serial, entries } => {
                p.verb_data.extend_from_slice(&serial.to_wire());
                p.verb_data
                    .push(count::<u8>(entries.len(), "pattern list")?);
                for e in entries {
                    p.verb_data.push(code_of(&KINDS, e.kind));
                    p.verb_data.push(code_of(&REGS, e.register));
                    p.verb_data.push(code_of(&ALGS, e.pattern.algorithm()));
                    p.verb_data.push(e.pattern.bytes().len() as u8);
                    p.verb_data.extend_from_slice(e.pattern.bytes());
                }
            }
            Self::ShareTables { m_of_n, tables } => {
                let (m, n) = m_of_n.unwrap_or((0, 0));
                let count = count::<u8>(tables.len(), "share-table list")?;
                p.verb_data.extend_from_slice(&[m, n, count]);
                for t in tables {
                    p.verb_data.push(cloneable_code(t.kind));
                    p.verb_data
                        .extend_from_slice(&statmofn::generation_digits(&t.generation));
                    p.verb_data
                        .extend_from_slice(&statmofn::reception_digits(&t.reception));
                }
            }
            Self::PublicKey(t) => p.keys.push(KeyEntry::new(t.as_bytes())),
            Self::RetainedKeys(list) => {
                p.verb_data
                    .extend_from_slice(&count::<u16>(list.len(), "key list")?.to_be_bytes());
                for k in list {
                    p.verb_data.extend_from_slice(&k.label.to_wire());
                    p.verb_data.push(code_of(&USAGES, k.usage));
                    p.verb_data.push(u8::from(k.clone));
                    p.verb_data.extend_from_slice(&k.bits.to_be_bytes());
                }
            }
            Self::Registrations(list) => {
                let count = count::<u16>(list.len(), "registration list")?;
                p.verb_data.extend_from_slice(&count.to_be_bytes());
                for r in list {
                    p.verb_data.extend_from_slice(&r.name.to_wire());
                    p.verb_data.push(u8::from(r.clone));
                    p.verb_data.push(code_of(&HASH_ALGS, r.hash.algorithm()));
                    p.verb_data.push(r.hash.bytes().len() as u8);
                    p.verb_data.extend_from_slice(r.hash.bytes());
                    p.verb_data.push(u8::from(r.key.is_some()));
                    if let Some(cert) = &r.key {
                        p.keys.push(KeyEntry::new(cert.as_bytes()));
                    }
                }
            }
            Self::Certificate(c) => p.keys.push(KeyEntry::new(c.as_bytes())),
            Self::Share(s) => p.keys.push(KeyEntry::new(s.as_bytes())),
            Self::InstallProgress { received, m } => p.verb_data = vec![*received, *m],
        }
        Ok(p)
    }

    /// Whether this body encodes to a parameter block with nothing in it.
    fn is_bare(&self, function: FunctionCode) -> Result<bool, CodecError> {
        let p = self.to_parm(function)?;
        Ok(p.rules.is_empty() && p.verb_data.is_empty() && p.keys.is_empty())
    }

    /// Decode the body of a successful reply to `request`.
    fn from_parm(p: &ParmBlock, request: &Request) -> Result<Self, CodecError> {
        if !matches!(request, Request::Query(_)) {
            expect_zero_flags(p, "reply")?;
        }
        let only_key = |what: &'static str| -> Result<Vec<u8>, CodecError> {
            expect_keys(p, 1, what)?;
            expect_no_verb_data(p, what)?;
            Ok(p.keys[0].token.clone())
        };
        let body = match request {
            // FQ replies are read as the kernel reads them: the rule array and the verb
            // data; a key block (and its flags) is not looked at
            // (zcrypt_ccamisc.c, `cca_query_crypto_facility`).
            Request::Query(Query::StatCcae | Query::StatEid) => Self::Elements(p.rules.clone()),
            Request::Query(Query::StatIcsa) => {
                Self::StaticsA(Box::new(StaticsA::decode(&p.rules, &p.verb_data)?))
            }
            Request::Query(Query::StatIcsb) => {
                Self::StaticsB(Box::new(StaticsB::decode(&p.rules, &p.verb_data)?))
            }
            Request::Patterns => {
                let mut r = Reader::new(&p.verb_data);
                let serial =
                    SerialNumber::from_wire(r.take(8, "serial")?).map_err(domain("serial"))?;
                let count = r.u8("pattern count")?;
                // Room for no more entries than the bytes left can hold (4 each at least):
                // the count alone must not size an allocation (tests/allocation.rs).
                let mut entries =
                    Vec::with_capacity(usize::from(count).min(r.remaining() / MIN_PATTERN_ENTRY));
                for _ in 0..count {
                    let kind = from_code(&KINDS, r.u8("kind")?, "kind")?;
                    let register = from_code(&REGS, r.u8("register")?, "register")?;
                    let algorithm = from_code(&ALGS, r.u8("algorithm")?, "pattern algorithm")?;
                    let len = r.u8("pattern length")?;
                    let pattern =
                        VerificationPattern::new(algorithm, r.take(usize::from(len), "pattern")?)
                            .map_err(domain("pattern"))?;
                    entries.push(PatternEntry {
                        kind,
                        register,
                        pattern,
                    });
                }
                r.finish("patterns reply")?;
                Self::Patterns { serial, entries }
            }
            Request::ShareTables => {
                let mut r = Reader::new(&p.verb_data);
                let m = r.u8("m")?;
                let n = r.u8("n")?;
                let count = r.u8("table count")?;
                let mut tables = Vec::new();
                for _ in 0..count {
                    let kind = from_code(&KINDS, r.u8("kind")?, "kind")?
                        .cloneable()
                        .map_err(domain("share-table kind"))?;
                    let mut generation = [GenerationState::Cannot; statmofn::ROW_LEN];
                    for g in generation.iter_mut() {
                        *g = statmofn_state(
                            r.u8("generation state")?,
                            "generation state",
                            GenerationState::from_digit,
                        )?;
                    }
                    let mut reception = [ReceptionState::Cannot; statmofn::ROW_LEN];
                    for s in reception.iter_mut() {
                        *s = statmofn_state(
                            r.u8("reception state")?,
                            "reception state",
                            ReceptionState::from_digit,
                        )?;
                    }
                    tables.push(ShareTables {
                        kind,
                        generation,
                        reception,
                    });
                }
                r.finish("share-tables reply")?;
                Self::ShareTables {
                    m_of_n: (m != 0 || n != 0).then_some((m, n)),
                    tables,
                }
            }
            Request::GenerateRetained { .. } | Request::RetainedPublicKey { .. } => {
                Self::PublicKey(
                    PublicKeyToken::new(only_key("public-key reply")?)
                        .map_err(domain("public-key token"))?,
                )
            }
            Request::ListRetained => {
                let mut r = Reader::new(&p.verb_data);
                let count = r.u16("key count")?;
                let mut list = Vec::new();
                for _ in 0..count {
                    let label = listed_label(&mut r, "label", "retained key label")?;
                    let usage = listed_code(&mut r, &USAGES, "key list", "usage")?;
                    let clone = flag_byte(&mut r, "clone")?;
                    let bits = r.u16("bits")?;
                    list.push(RetainedKeyInfo {
                        label,
                        usage,
                        clone,
                        bits,
                    });
                }
                r.finish("key-list reply")?;
                Self::RetainedKeys(list)
            }
            Request::ListRegistrations => {
                let mut r = Reader::new(&p.verb_data);
                let count = r.u16("registration count")?;
                let mut keys = p.keys.iter();
                let mut list = Vec::new();
                for _ in 0..count {
                    let name = listed_label(&mut r, "name", "registration name")?;
                    let clone = flag_byte(&mut r, "clone")?;
                    let algorithm =
                        listed_code(&mut r, &HASH_ALGS, "registration list", "hash algorithm")?;
                    let len = r.u8("hash length")?;
                    let hash = PublicKeyHash::new(algorithm, r.take(usize::from(len), "hash")?)
                        .map_err(domain("hash"))?;
                    let key = match r.u8("key present")? {
                        0 => None,
                        1 => {
                            let entry = keys.next().ok_or(CodecError::Truncated {
                                what: "registered certificates",
                                needed: 1,
                                available: 0,
                            })?;
                            Some(
                                Certificate::new(entry.token.clone())
                                    .map_err(domain("registered certificate"))?,
                            )
                        }
                        f => {
                            return Err(CodecError::Field {
                                what: "registration list",
                                field: "key present",
                                detail: format!("{f}"),
                            });
                        }
                    };
                    list.push(Registration {
                        name,
                        hash,
                        clone,
                        key,
                    });
                }
                r.finish("registration-list reply")?;
                if keys.next().is_some() {
                    return Err(CodecError::Trailing {
                        what: "registered certificates",
                        count: 1,
                    });
                }
                Self::Registrations(list)
            }
            Request::Certify { .. } => Self::Certificate(
                Certificate::new(only_key("certify reply")?).map_err(domain("certificate"))?,
            ),
            Request::Obtain(_) => Self::Share(
                SealedShare::new(only_key("OBTAIN reply")?).map_err(domain("sealed share"))?,
            ),
            Request::Install(_) => {
                expect_keys(p, 0, "INSTALL reply")?;
                let mut r = Reader::new(&p.verb_data);
                let received = r.u8("shares received")?;
                let m = r.u8("m")?;
                r.finish("INSTALL reply")?;
                Self::InstallProgress { received, m }
            }
            Request::SetEid(_)
            | Request::SetMofN { .. }
            | Request::DeleteRetained { .. }
            | Request::UnregisterKey { .. }
            | Request::RegisterHash { .. }
            | Request::RegisterKey { .. }
            | Request::MasterKey { .. } => {
                expect_keys(p, 0, "reply")?;
                expect_no_verb_data(p, "reply")?;
                Self::Empty
            }
        };
        Ok(body)
    }
}

impl Reply {
    /// The whole reply message: CPRBX (with the return/reason codes) and the reply
    /// parameter block.
    pub fn to_message(&self, function: FunctionCode, domain: u16) -> Result<Vec<u8>, CodecError> {
        let parm = self.body.to_parm(function)?.encode()?;
        let header = Cprbx {
            rpld_parml: crate::cprb::len_u32(parm.len(), "reply parameter block")?,
            ccp_rtcode: self.return_code,
            ccp_rscode: self.reason_code,
            domain,
            ..Cprbx::default()
        };
        Ok(message(&header, &parm))
    }

    /// Decode a reply to `request`. A reply with return code 8 or more carries no body.
    ///
    /// The reply is read as the kernel reads one, no stricter: the CPRBX by
    /// [`Cprbx::decode_reply`] (cprb_ver_id X'02'), the parameter block at +220 by
    /// [`ParmBlock::decode_reply`] (rule array and verb data by their lengths, the key
    /// block when present). `rpld_parml` may not claim more bytes than are present;
    /// bytes after it, or after the last field inside it, are ignored (a real reply
    /// copied from the kernel's buffer may carry them). The function code must echo the
    /// request's (mkclone's own check).
    pub fn from_message(bytes: &[u8], request: &Request) -> Result<Self, CodecError> {
        let header = Cprbx::decode_reply(bytes)?;
        let available = bytes.len() - CPRBX_LEN;
        let declared = header.rpld_parml as usize;
        if declared > available {
            return Err(CodecError::Field {
                what: "reply CPRBX",
                field: "rpld_parml",
                detail: format!("{declared} but only {available} parameter bytes follow"),
            });
        }
        let parm_bytes = &bytes[CPRBX_LEN..CPRBX_LEN + declared];
        let (parm, _trailing) = ParmBlock::decode_reply(parm_bytes)?;
        if parm.function != request.function() {
            return Err(CodecError::Field {
                what: "reply",
                field: "function code",
                detail: format!(
                    "{} answers a request for {}",
                    parm.function,
                    request.function()
                ),
            });
        }
        let warning = header.ccp_rtcode == crate::rc::rt::WARNING;
        let body = if header.ccp_rtcode >= crate::rc::rt::ERROR
            || (warning
                && parm.rules.is_empty()
                && parm.verb_data.is_empty()
                && parm.keys.is_empty())
        {
            ReplyBody::Empty
        } else {
            match ReplyBody::from_parm(&parm, request)? {
                // A warning whose body says nothing (FQ elements: none, the rest of the
                // block unread) is the empty warning: the bare block it encodes to reads
                // back as `Empty`, so one meaning keeps one encoding (found by the
                // cprb_reply fuzz target; tests/rejections.rs).
                body if warning && body.is_bare(request.function())? => ReplyBody::Empty,
                body => body,
            }
        };
        Ok(Self {
            return_code: header.ccp_rtcode,
            reason_code: header.ccp_rscode,
            body,
        })
    }
}
