//! The token object model: what mkclone keeps in a token, under which labels, in which
//! encoding (docs/ARCHITECTURE.md, "PKCS#11").
//!
//! Every object is a token object (`CKA_TOKEN`), private (`CKA_PRIVATE`: readable only after
//! the user logs in), made from its template in `crate::templates` (which has every
//! attribute). Data objects carry `CKA_APPLICATION` = `mkclone` and a JSON value with a
//! `format` and `version`; no data object holds a secret.
//!
//! | label | class | what |
//! |---|---|---|
//! | `<retained label>` | RSA private + public key, `CKA_ID` = `mkclone/` + id | a retained key pair |
//! | `mkclone/key/<label>` | data | its companion: role, CLONE, bits, id, public-key token (commit point of generation) |
//! | `mkclone/eid` | data | the EID (set once) |
//! | `mkclone/reg/<name>` | data | a registered public-key hash and CLONE mark |
//! | `mkclone/regkey/<name>` | data | the public key (certificate) registered under that name |
//! | `mkclone/map/<generation>` | data | the register map: the one root of everything below |
//! | `mkclone/mofn/<id>` | data | m-of-n and the id of the coefficient seed |
//! | `mkclone/seed/<id>` | generic secret, sensitive, wrapped out only with a key the SO trusts, no use in the token | the HMAC seed of the share polynomials |
//! | `mkclone/mk/<id>` | DES3 secret key, sensitive, wrapped out only with a key the SO trusts | a master-key register value |
//! | `mkclone/mkvp/<id>` | data | its SHA-1-method pattern and `CKA_CHECK_VALUE` |
//! | `mkclone/table/<id>` | data | one master key's share tables and received-share records |
//! | `mkclone/share/<id>` | data | a received share held until the m-th, still sealed (its key wrapped to the CSR key: only an unwrap with the CSR key opens it) |
//!
//! Objects below the map are immutable and named by a random 8-byte id; a change creates
//! new objects, then a new map of the next generation (the commit: one C_CreateObject),
//! then destroys what the old map referenced and the new one does not. SoftHSM 2.6.1
//! refuses to modify a data object's `CKA_VALUE`, so nothing is ever updated in place.

use std::fmt;

use mkclone_backend::rules::{ShareFacts, statmofn, tables};
use mkclone_backend::{
    Certificate, CloneableKind, Eid, GenerationState, KeyLabel, KeyRole, MofN, PublicKeyHash,
    PublicKeyToken, RetainedKeyInfo, SealedShare, SerialNumber, ShareIndex, VerificationPattern,
};
use rand::Rng;

use crate::templates::Made;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `CKA_APPLICATION` of every data object mkclone makes.
pub(crate) const APPLICATION: &[u8] = b"mkclone";
/// Prefix of every label mkclone gives its own objects.
pub(crate) const PREFIX: &str = "mkclone/";
/// Prefix of the `CKA_ID` of retained key pairs.
pub(crate) const KEY_ID_PREFIX: &[u8] = b"mkclone/";

/// A random 8-byte object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct ObjId([u8; 8]);

impl ObjId {
    pub fn random() -> Self {
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        Self(id)
    }
    pub fn bytes(&self) -> &[u8; 8] {
        &self.0
    }
    pub fn parse(text: &str) -> Option<Self> {
        // Only the form `Display` writes: one id, one label (found by the `pkcs11_objects`
        // fuzz target: "mkclone/mkvp/8899aAbb…" named the object of "mkclone/mkvp/8899aabb…").
        if !is_lower_hex(text) {
            return None;
        }
        let mut id = [0u8; 8];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(Self(id))
    }
}

impl fmt::Display for ObjId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for ObjId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjId(")?;
        fmt::Display::fmt(self, f)?;
        f.write_str(")")
    }
}
impl TryFrom<String> for ObjId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("{s:?} is not a 16-hex-digit object id"))
    }
}
impl From<ObjId> for String {
    fn from(id: ObjId) -> String {
        id.to_string()
    }
}

/// The kinds of objects that hang below the register map (and are garbage when no map
/// references them).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Managed {
    MofN,
    Seed,
    MasterKey,
    Pattern,
    Table,
    Share,
}

impl Managed {
    pub const ALL: [Managed; 6] = [
        Self::MofN,
        Self::Seed,
        Self::MasterKey,
        Self::Pattern,
        Self::Table,
        Self::Share,
    ];
    pub fn word(self) -> &'static str {
        match self {
            Self::MofN => "mofn",
            Self::Seed => "seed",
            Self::MasterKey => "mk",
            Self::Pattern => "mkvp",
            Self::Table => "table",
            Self::Share => "share",
        }
    }
    /// Secret-key objects (the rest are data objects).
    pub fn is_key(self) -> bool {
        matches!(self, Self::Seed | Self::MasterKey)
    }
    /// The template the object is made from.
    pub fn made(self) -> Made {
        match self {
            Self::Seed => Made::Seed,
            Self::MasterKey => Made::MasterKey,
            _ => Made::Data(APPLICATION),
        }
    }
    pub fn label(self, id: ObjId) -> String {
        format!("{PREFIX}{}/{id}", self.word())
    }
    /// Parse a label made by [`Managed::label`].
    pub fn parse(label: &str) -> Option<(Managed, ObjId)> {
        let rest = label.strip_prefix(PREFIX)?;
        let (word, id) = rest.split_once('/')?;
        let kind = Self::ALL.into_iter().find(|k| k.word() == word)?;
        Some((kind, ObjId::parse(id)?))
    }
}

pub(crate) const EID_LABEL: &str = "mkclone/eid";
pub(crate) const MAP_PREFIX: &str = "mkclone/map/";

pub(crate) fn map_label(generation: u64) -> String {
    format!("{MAP_PREFIX}{generation:016x}")
}
pub(crate) fn parse_map_label(label: &str) -> Option<u64> {
    let digits = label.strip_prefix(MAP_PREFIX)?;
    // The form `map_label` writes only: not "+…" nor upper case, which `from_str_radix`
    // also reads (one generation, one label).
    if digits.len() != 16 || !is_lower_hex(digits) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Lower-case hex digits only, as object ids and map generations are written.
fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
pub(crate) fn key_companion_label(label: &str) -> String {
    format!("{PREFIX}key/{label}")
}
pub(crate) fn registration_label(name: &str) -> String {
    format!("{PREFIX}reg/{name}")
}
pub(crate) fn registered_key_label(name: &str) -> String {
    format!("{PREFIX}regkey/{name}")
}
pub(crate) const KEY_COMPANION_PREFIX: &str = "mkclone/key/";
pub(crate) const REGISTRATION_PREFIX: &str = "mkclone/reg/";

/// A data object's value: a JSON body with a format name and version.
pub(crate) trait Stored: Serialize + DeserializeOwned {
    const FORMAT: &'static str;
    const VERSION: u32 = 1;

    fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a, T> {
            format: &'static str,
            version: u32,
            #[serde(flatten)]
            body: &'a T,
        }
        // Serializing these plain structs cannot fail.
        serde_json::to_vec(&Out {
            format: Self::FORMAT,
            version: Self::VERSION,
            body: self,
        })
        .unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(mut fields) = value else {
            return Err("not a JSON object".into());
        };
        let format = fields.remove("format");
        if format.as_ref().and_then(|f| f.as_str()) != Some(Self::FORMAT) {
            return Err(format!("format {format:?}, expected {:?}", Self::FORMAT));
        }
        let version = fields.remove("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(Self::VERSION)) {
            return Err(format!(
                "{} version {version:?} (this mkclone reads version {}); use a matching mkclone",
                Self::FORMAT,
                Self::VERSION
            ));
        }
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| e.to_string())
    }
}

/// One master key's registers and share tables in the map.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Registers {
    pub new: Option<ObjId>,
    pub current: Option<ObjId>,
    pub old: Option<ObjId>,
    pub table: Option<ObjId>,
}

/// The register map: the root of everything that changes together.
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterMap {
    pub generation: u64,
    pub mofn: Option<ObjId>,
    pub sym: Registers,
    pub asym: Registers,
}

impl Stored for RegisterMap {
    const FORMAT: &'static str = "mkclone-pkcs11-register-map";
}

impl RegisterMap {
    pub fn registers(&self, kind: CloneableKind) -> &Registers {
        match kind {
            CloneableKind::Sym => &self.sym,
            CloneableKind::Asym => &self.asym,
        }
    }
    pub fn registers_mut(&mut self, kind: CloneableKind) -> &mut Registers {
        match kind {
            CloneableKind::Sym => &mut self.sym,
            CloneableKind::Asym => &mut self.asym,
        }
    }
}

/// `mkclone/mofn/<id>`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MofNObject {
    pub m_of_n: MofN,
    pub seed: ObjId,
}
impl Stored for MofNObject {
    const FORMAT: &'static str = "mkclone-pkcs11-m-of-n";
}

/// `mkclone/mkvp/<id>`: what a master-key register object must be.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatternObject {
    pub kind: CloneableKind,
    pub pattern: VerificationPattern,
    /// The token's `CKA_CHECK_VALUE` of the key (first 3 bytes of EDE3(key, 0^8)).
    #[serde(with = "hex::serde")]
    pub check_value: Vec<u8>,
}
impl Stored for PatternObject {
    const FORMAT: &'static str = "mkclone-pkcs11-pattern";
}

/// A share received and counted (until SET, SET-MOFN or CLEAR forgets it).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Received {
    pub index: ShareIndex,
    pub origin_eid: Eid,
    pub origin_serial: SerialNumber,
    pub source_pattern: VerificationPattern,
    /// SHA-256 over a domain string and the share value: tells a repeated share from a
    /// different one under the same index without keeping the share readable.
    #[serde(with = "hex::serde")]
    pub digest: [u8; 32],
    /// The share's objects in the token until the key is complete.
    pub share: Option<ObjId>,
}

impl Received {
    /// What the share-admission rules compare.
    pub fn facts(&self) -> ShareFacts<'_> {
        ShareFacts {
            index: self.index,
            origin_eid: &self.origin_eid,
            source_pattern: &self.source_pattern,
            value_digest: &self.digest,
        }
    }
}

/// `mkclone/table/<id>`: one master key's STATMOFN tables and received shares.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableObject {
    pub kind: CloneableKind,
    /// Generation states, one ASCII digit per index ('0'..'4'), as the simulator keeps them.
    pub generation: String,
    pub received: Vec<Received>,
    /// Indices received more than once (reception state 4).
    pub received_more: Vec<u8>,
}
impl Stored for TableObject {
    const FORMAT: &'static str = "mkclone-pkcs11-share-table";
}

impl TableObject {
    /// Fresh tables: indices 1..=n can be generated, nothing received.
    pub fn fresh(kind: CloneableKind, m_of_n: Option<MofN>) -> Self {
        let mut table = Self {
            kind,
            generation: String::new(),
            received: Vec::new(),
            received_more: Vec::new(),
        };
        table.set_generation_row(&tables::fresh_generation(m_of_n));
        table
    }
    /// The generation states, from their STATMOFN digits.
    pub fn generation_row(&self) -> Result<[GenerationState; statmofn::ROW_LEN], String> {
        statmofn::parse_generation(self.generation.as_bytes())
            .map_err(|e| format!("the {} generation table is malformed: {e}", self.kind))
    }
    pub fn set_generation_row(&mut self, row: &[GenerationState; statmofn::ROW_LEN]) {
        self.generation = statmofn::generation_digits(row)
            .into_iter()
            .map(char::from)
            .collect();
    }
    pub fn check(&self) -> Result<(), String> {
        self.generation_row().map(|_| ())
    }
}

/// `mkclone/share/<id>`: a received share held until the m-th, as it arrived: still sealed
/// (its triple-DES key wrapped to the CSR key), so that no key on the token decrypts it
/// directly; a user-PIN holder opens it as INSTALL does (the README's per-backend guarantee).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShareObject {
    pub kind: CloneableKind,
    pub index: ShareIndex,
    /// The sealed share as it arrived (`formats::seal`).
    pub sealed: SealedShare,
}
impl Stored for ShareObject {
    const FORMAT: &'static str = "mkclone-pkcs11-share";
    /// Version 1 held the cloning-information token with its key as a token object.
    const VERSION: u32 = 2;
}

/// `mkclone/key/<label>`: a retained key's companion.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyCompanion {
    pub role: KeyRole,
    pub clone: bool,
    pub bits: u16,
    /// The key pair's `CKA_ID` after the `mkclone/` prefix.
    pub id: ObjId,
    /// The public-key token returned at generation (with its self-signed certificate).
    pub token: PublicKeyToken,
}
impl Stored for KeyCompanion {
    const FORMAT: &'static str = "mkclone-pkcs11-retained-key";
}

impl KeyCompanion {
    /// The retained key `label` as the node lists it.
    pub fn info(&self, label: KeyLabel) -> RetainedKeyInfo {
        RetainedKeyInfo {
            label,
            usage: self.role.usage(),
            clone: self.clone,
            bits: self.bits,
        }
    }

    pub fn key_id(id: ObjId) -> Vec<u8> {
        let mut out = KEY_ID_PREFIX.to_vec();
        out.extend_from_slice(id.bytes());
        out
    }

    /// Whether `cka_id` has the shape of a retained key pair's `CKA_ID` (`key_id`: the
    /// prefix and 8 bytes): the ids recovery may treat as mkclone's.
    pub fn is_key_id(cka_id: &[u8]) -> bool {
        cka_id.len() == KEY_ID_PREFIX.len() + 8 && cka_id.starts_with(KEY_ID_PREFIX)
    }
}

/// `mkclone/eid`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EidObject {
    pub eid: Eid,
}
impl Stored for EidObject {
    const FORMAT: &'static str = "mkclone-pkcs11-eid";
}

/// `mkclone/reg/<name>`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrationObject {
    pub hash: PublicKeyHash,
    pub clone: bool,
}
impl Stored for RegistrationObject {
    const FORMAT: &'static str = "mkclone-pkcs11-registered-hash";
}

/// `mkclone/regkey/<name>`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisteredKeyObject {
    pub certificate: Certificate,
}
impl Stored for RegisteredKeyObject {
    const FORMAT: &'static str = "mkclone-pkcs11-registered-key";
}

#[cfg(test)]
mod tests {
    use super::*;
    use mkclone_backend::PatternAlgorithm;

    #[test]
    fn managed_labels_round_trip() {
        let id = ObjId::parse("0011223344556677").unwrap();
        for kind in Managed::ALL {
            let label = kind.label(id);
            assert_eq!(Managed::parse(&label), Some((kind, id)), "{label}");
        }
        assert_eq!(
            Managed::label(Managed::Table, id),
            "mkclone/table/0011223344556677"
        );
        assert_eq!(Managed::parse("mkclone/table/0011"), None);
        assert_eq!(Managed::parse("mkclone/other/0011223344556677"), None);
        assert_eq!(Managed::parse("MKCLONE.SA"), None);
        assert_eq!(parse_map_label(&map_label(42)), Some(42));
        assert_eq!(map_label(42), "mkclone/map/000000000000002a");
        assert_eq!(parse_map_label("mkclone/map/2a"), None);
    }

    #[test]
    fn only_the_shape_of_a_retained_key_id_is_a_key_id() {
        let id = KeyCompanion::key_id(ObjId::parse("0011223344556677").unwrap());
        assert!(KeyCompanion::is_key_id(&id));
        // Recovery destroys halves by this shape: a shorter or longer id under the prefix,
        // or another prefix, is not mkclone's.
        assert!(!KeyCompanion::is_key_id(&id[..id.len() - 1]));
        assert!(!KeyCompanion::is_key_id(&[id.as_slice(), &[0]].concat()));
        assert!(!KeyCompanion::is_key_id(b"mkclonE/01234567"));
        assert!(!KeyCompanion::is_key_id(&[
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77
        ]));
    }

    /// A label names an object only in the form mkclone writes it (found by the
    /// `pkcs11_objects` fuzz target, fuzz/regressions/pkcs11_objects/): upper-case hex or a
    /// sign would let a second object stand for the same id or generation.
    #[test]
    fn labels_parse_only_in_the_form_they_are_written() {
        assert_eq!(Managed::parse("mkclone/mkvp/8899aAbbccddeeff"), None);
        assert_eq!(
            Managed::parse("mkclone/mk/0011223344556677").map(|(k, _)| k),
            Some(Managed::MasterKey)
        );
        assert_eq!(
            ObjId::parse("0011223344556677")
                .map(|i| i.to_string())
                .as_deref(),
            Some("0011223344556677")
        );
        assert_eq!(ObjId::parse("00112233445566FF"), None);
        assert_eq!(parse_map_label("mkclone/map/000000000000002A"), None);
        assert_eq!(parse_map_label("mkclone/map/+00000000000002a"), None);
        assert_eq!(parse_map_label("mkclone/map/000000000000002a"), Some(42));
        // An id in a stored value is read the same way.
        let upper = r#"{"format":"mkclone-pkcs11-m-of-n","version":1,"m_of_n":[2,3],"seed":"00112233445566FF"}"#;
        assert!(
            MofNObject::decode(upper.as_bytes())
                .unwrap_err()
                .contains("object id")
        );
    }

    #[test]
    fn stored_values_carry_format_and_version() {
        let mut map = RegisterMap {
            generation: 7,
            ..RegisterMap::default()
        };
        map.sym.current = Some(ObjId::parse("0102030405060708").unwrap());
        let bytes = map.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"format":"mkclone-pkcs11-register-map","version":1,"#));
        assert_eq!(RegisterMap::decode(&bytes).unwrap(), map);
        // Another object's bytes, a newer version, junk: refused with a reason.
        let table = TableObject::fresh(CloneableKind::Sym, Some(MofN::new(2, 3).unwrap()));
        assert!(
            RegisterMap::decode(&table.encode())
                .unwrap_err()
                .contains("expected \"mkclone-pkcs11-register-map\"")
        );
        let newer = text.replace("\"version\":1", "\"version\":2");
        assert!(
            RegisterMap::decode(newer.as_bytes())
                .unwrap_err()
                .contains("version Some(2)")
        );
        assert!(RegisterMap::decode(b"{").is_err());
        let extra = text.replacen('{', r#"{"surprise":1,"#, 1);
        assert!(RegisterMap::decode(extra.as_bytes()).is_err());
    }

    #[test]
    fn fresh_tables_follow_n() {
        let t = TableObject::fresh(CloneableKind::Asym, Some(MofN::new(3, 5).unwrap()));
        assert_eq!(t.generation, "111110000000000");
        let mut t2 = t.clone();
        let mut row = t2.generation_row().unwrap();
        row[1] = GenerationState::DistributedOnce;
        t2.set_generation_row(&row);
        assert_eq!(t2.generation, "131110000000000");
        assert_eq!(
            t2.generation_row().unwrap()[1],
            GenerationState::DistributedOnce
        );
        assert!(t2.check().is_ok());
        let mut bad = t2.clone();
        bad.generation = "13111000000000".into();
        assert!(
            bad.check()
                .unwrap_err()
                .contains("ASYM generation table is malformed")
        );
        bad.generation = "131110000000009".into();
        assert!(bad.check().is_err());
        assert_eq!(
            TableObject::fresh(CloneableKind::Sym, None).generation,
            "0".repeat(15)
        );
        let p = PatternObject {
            kind: CloneableKind::Sym,
            pattern: VerificationPattern::new(PatternAlgorithm::Sha1Method, &[1; 8]).unwrap(),
            check_value: vec![1, 2, 3],
        };
        assert_eq!(PatternObject::decode(&p.encode()).unwrap(), p);
    }
}

/// For fuzz/ only (the `fuzzing` feature, re-exported as `mkclone_pkcs11::fuzzing`): each
/// data object's value and each label as the backend reads them from the token, with the
/// checks the backend then makes, so that a fuzz target reaches the crate-private types.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use super::*;
    use mkclone_formats::pka::{CertificateSection, PublicKeyTokenView};
    use mkclone_formats::seal::SealedShareParts;

    /// One format's reading of a value.
    #[derive(Debug)]
    pub struct Decoded {
        /// The value's `Debug`.
        pub debug: String,
        /// The value encoded again.
        pub encoded: Vec<u8>,
        /// Whether decoding `encoded` gives the same value.
        pub round_trip: bool,
        /// The checks the backend makes on the value after decoding it (the table's
        /// digits, the tokens, certificate and share it carries, the labels of what it
        /// references): `Err` with the refusal.
        pub checks: Result<(), String>,
        /// The promises of the domain types inside (a verification pattern or public-key
        /// hash as long as its algorithm makes it): `Err` names one decoding broke.
        pub promises: Result<(), String>,
    }

    fn one<T: Stored + PartialEq + fmt::Debug>(
        bytes: &[u8],
        checks: impl Fn(&T) -> Result<(), String>,
    ) -> (&'static str, Result<Decoded, String>) {
        one_with(bytes, checks, |_| Ok(()))
    }

    fn one_with<T: Stored + PartialEq + fmt::Debug>(
        bytes: &[u8],
        checks: impl Fn(&T) -> Result<(), String>,
        promises: impl Fn(&T) -> Result<(), String>,
    ) -> (&'static str, Result<Decoded, String>) {
        let decoded = T::decode(bytes).map(|value| {
            let encoded = value.encode();
            Decoded {
                debug: format!("{value:?}"),
                round_trip: T::decode(&encoded).as_ref() == Ok(&value),
                encoded,
                checks: checks(&value),
                promises: promises(&value),
            }
        });
        (T::FORMAT, decoded)
    }

    /// A pattern the constructor accepts.
    fn pattern(p: &VerificationPattern) -> Result<(), String> {
        VerificationPattern::new(p.algorithm(), p.bytes())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The labels of the managed objects a map references, each of which must parse back.
    fn labels_of(map: &RegisterMap) -> Result<(), String> {
        let mut ids: Vec<(Managed, ObjId)> =
            map.mofn.map(|m| (Managed::MofN, m)).into_iter().collect();
        for kind in CloneableKind::ALL {
            let r = map.registers(kind);
            for id in [r.new, r.current, r.old].into_iter().flatten() {
                ids.push((Managed::MasterKey, id));
            }
            ids.extend(r.table.map(|t| (Managed::Table, t)));
        }
        for (kind, id) in ids {
            if Managed::parse(&kind.label(id)) != Some((kind, id)) {
                return Err(format!("{} does not parse back", kind.label(id)));
            }
        }
        if parse_map_label(&map_label(map.generation)) != Some(map.generation) {
            return Err(format!("{} does not parse back", map_label(map.generation)));
        }
        Ok(())
    }

    /// `bytes` read as the value of every kind of data object mkclone keeps (the register
    /// map and each object below it, the key companion, EID and registry objects): each
    /// format's name and what it decodes to, or the refusal.
    pub fn decode_value(bytes: &[u8]) -> Vec<(&'static str, Result<Decoded, String>)> {
        let token = |t: &PublicKeyToken| {
            PublicKeyTokenView::decode(t)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        vec![
            one::<RegisterMap>(bytes, labels_of),
            one::<MofNObject>(bytes, |o| {
                let label = Managed::Seed.label(o.seed);
                (Managed::parse(&label) == Some((Managed::Seed, o.seed)))
                    .then_some(())
                    .ok_or(label)
            }),
            one_with::<PatternObject>(bytes, |_| Ok(()), |p| pattern(&p.pattern)),
            one_with::<TableObject>(
                bytes,
                |t| {
                    t.check()?;
                    let row = t.generation_row()?;
                    let mut again = t.clone();
                    again.set_generation_row(&row);
                    if again.generation != t.generation {
                        return Err(format!(
                            "generation digits {:?} rewrite as {:?}",
                            t.generation, again.generation
                        ));
                    }
                    for r in &t.received {
                        let _ = r.facts();
                    }
                    Ok(())
                },
                |t| {
                    t.received
                        .iter()
                        .try_for_each(|r| pattern(&r.source_pattern))
                },
            ),
            one::<ShareObject>(bytes, |s| {
                SealedShareParts::decode(&s.sealed)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
            one::<KeyCompanion>(bytes, |k| {
                let _ = KeyCompanion::key_id(k.id);
                token(&k.token)
            }),
            one::<EidObject>(bytes, |_| Ok(())),
            one_with::<RegistrationObject>(
                bytes,
                |_| Ok(()),
                |r| {
                    PublicKeyHash::new(r.hash.algorithm(), r.hash.bytes())
                        .map(drop)
                        .map_err(|e| e.to_string())
                },
            ),
            one::<RegisteredKeyObject>(bytes, |r| {
                CertificateSection::decode(&r.certificate)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        ]
    }

    /// What a label means to the backend when it lists the token's objects: a register
    /// map's generation, a managed object's kind and id (with the label each gives back),
    /// a key companion's or registration's name.
    #[derive(Debug, PartialEq, Eq)]
    pub struct LabelMeaning {
        pub map: Option<(u64, String)>,
        pub managed: Option<(&'static str, String, String)>,
        pub companion_of: Option<String>,
        pub registration_of: Option<String>,
    }

    pub fn parse_label(label: &str) -> LabelMeaning {
        LabelMeaning {
            map: parse_map_label(label).map(|g| (g, map_label(g))),
            managed: Managed::parse(label).map(|(k, id)| (k.word(), id.to_string(), k.label(id))),
            companion_of: label.strip_prefix(KEY_COMPANION_PREFIX).map(str::to_string),
            registration_of: label.strip_prefix(REGISTRATION_PREFIX).map(str::to_string),
        }
    }
}
