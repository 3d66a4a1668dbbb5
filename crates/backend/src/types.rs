//! Domain types. Each constructor enforces the rule CCA (or the protocol) imposes and
//! says, on refusal, what a legal value looks like.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Largest number of shares CCA supports (CSUACFC SET-MOFN: 1 <= m <= n <= 15).
pub const MAX_SHARES: u8 = 15;

/// `text` in a wire field of `N` bytes, blank padded (the caller checked that it fits).
fn blank_padded<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    out[..text.len()].copy_from_slice(text.as_bytes());
    out
}

/// A blank-padded wire field's text without the padding (the fields built with
/// [`blank_padded`] hold ASCII only).
fn unpadded(field: &[u8]) -> &str {
    std::str::from_utf8(field)
        .unwrap_or("")
        .trim_end_matches(' ')
}

/// The conversions `#[serde(try_from, into)]` goes through: from `$repr` by the checked
/// constructor, back to `$repr`.
macro_rules! serde_conversions {
    ($name:ident <-> $repr:ty, from |$v:pat_param| $new:expr, into |$s:ident| $into:expr) => {
        impl TryFrom<$repr> for $name {
            type Error = DomainError;
            fn try_from($v: $repr) -> Result<Self, DomainError> {
                $new
            }
        }
        impl From<$name> for $repr {
            fn from($s: $name) -> $repr {
                $into
            }
        }
    };
}

/// What the text types (`KeyLabel`, `Eid`, `SerialNumber`) have alike: shown and turned
/// into a `String` as `as_str()` gives them, made from one through `new`, and a `Debug`
/// form written `$debug` around `as_str()`.
macro_rules! text_type {
    ($name:ident, debug = $debug:literal) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $debug, self.as_str())
            }
        }
        serde_conversions!($name <-> String, from |s| Self::new(&s), into |v| v.as_str().to_string());
    };
}

// ---------------------------------------------------------------------------------------
// Key labels
// ---------------------------------------------------------------------------------------

/// A CCA key label: the name of a retained key or of a registered public key.
///
/// Rules (CCA Basic Services Reference, key-label conventions; see
/// `reference/cca-cloning.md`): at most 64 characters, made of up to 8 period-separated
/// tokens of 1-8 characters each; characters are `A-Z 0-9 # $ @`; each token starts with a
/// letter or one of `# $ @`. On the wire a label is 64 bytes, blank padded.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyLabel(String);

impl KeyLabel {
    /// Wire width of a label field.
    pub const WIRE_LEN: usize = 64;

    pub fn new(label: &str) -> Result<Self, DomainError> {
        let bad = |why: &str| DomainError::KeyLabel {
            label: label.chars().take(80).collect(),
            reason: why.to_string(),
        };
        if label.is_empty() {
            return Err(bad("a label may not be empty"));
        }
        if label.len() > Self::WIRE_LEN {
            return Err(bad("a label has at most 64 characters"));
        }
        if label.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(bad("CCA labels are upper case: write it in capitals"));
        }
        if label.split('.').count() > 8 {
            return Err(bad("a label has at most 8 period-separated tokens"));
        }
        for token in label.split('.') {
            if token.is_empty() || token.len() > 8 {
                return Err(bad(
                    "each period-separated token has 1 to 8 characters (e.g. MKCLONE.SA.KEY)",
                ));
            }
            let first = token.as_bytes()[0];
            if !(first.is_ascii_uppercase() || matches!(first, b'#' | b'$' | b'@')) {
                return Err(bad("each token starts with a letter A-Z or one of # $ @"));
            }
            if !token.bytes().all(|b| {
                b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'#' | b'$' | b'@')
            }) {
                return Err(bad("allowed characters are A-Z 0-9 # $ @ and the period"));
            }
        }
        Ok(Self(label.to_string()))
    }

    /// Decode a 64-byte blank-padded wire field.
    pub fn from_wire(field: &[u8]) -> Result<Self, DomainError> {
        if field.len() != Self::WIRE_LEN {
            return Err(DomainError::KeyLabel {
                label: String::from_utf8_lossy(field).chars().take(80).collect(),
                reason: format!("a label field is {} bytes", Self::WIRE_LEN),
            });
        }
        let text = std::str::from_utf8(field).map_err(|_| DomainError::KeyLabel {
            label: hex::encode(&field[..16]),
            reason: "the label field is not ASCII".into(),
        })?;
        Self::new(text.trim_end_matches(' '))
    }

    /// The 64-byte blank-padded wire form.
    pub fn to_wire(&self) -> [u8; 64] {
        blank_padded(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_type!(KeyLabel, debug = "KeyLabel({})");

// ---------------------------------------------------------------------------------------
// Environment ID and serial number
// ---------------------------------------------------------------------------------------

/// A text type kept as its `LEN`-byte wire field, blank padded: the struct, its width,
/// the wire form, the text without the padding, and the [`text_type!`] impls.
macro_rules! blank_padded_text {
    ($(#[$doc:meta])* $name:ident, len = $len:literal, debug = $debug:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name([u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn to_wire(&self) -> [u8; $len] {
                self.0
            }

            /// The text without its blank padding.
            pub fn as_str(&self) -> &str {
                unpadded(&self.0)
            }
        }

        text_type!($name, debug = $debug);
    };
}

blank_padded_text!(
    /// A node's Environment ID: 16 characters, set once per coprocessor (CSUACFC), read
    /// back with CSUACFQ STATEID. Given shorter, it is blank padded to 16.
    Eid, len = 16, debug = "Eid({:?})"
);

impl Eid {
    pub fn new(text: &str) -> Result<Self, DomainError> {
        let bad = |why: &str| DomainError::Eid {
            eid: text.chars().take(40).collect(),
            reason: why.to_string(),
        };
        if text.len() > Self::LEN {
            return Err(bad("an EID has at most 16 characters"));
        }
        if text.trim().is_empty() {
            return Err(bad("an EID may not be blank"));
        }
        if !text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b' ' | b'.' | b'-' | b'_' | b'@' | b'#' | b'$' | b'&')
        }) {
            return Err(bad("use letters, digits, blanks and . - _ @ # $ &"));
        }
        Ok(Self(blank_padded(text)))
    }

    pub fn from_wire(field: &[u8]) -> Result<Self, DomainError> {
        if field.len() != Self::LEN {
            return Err(DomainError::Eid {
                eid: String::from_utf8_lossy(field).into_owned(),
                reason: "an EID field is 16 bytes".into(),
            });
        }
        let text = std::str::from_utf8(field).map_err(|_| DomainError::Eid {
            eid: hex::encode(field),
            reason: "the EID field is not ASCII".into(),
        })?;
        Self::new(text.trim_end_matches(' '))
    }
}

blank_padded_text!(
    /// A coprocessor's 8-character serial number (CCA reports it blank padded).
    SerialNumber, len = 8, debug = "SerialNumber({:?})"
);

impl SerialNumber {
    pub fn new(text: &str) -> Result<Self, DomainError> {
        if text.trim().is_empty()
            || text.len() > Self::LEN
            || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(DomainError::Serial {
                serial: text.chars().take(20).collect(),
                reason: "a serial number is 1 to 8 printable ASCII characters".into(),
            });
        }
        Ok(Self(blank_padded(text)))
    }

    pub fn from_wire(field: &[u8]) -> Result<Self, DomainError> {
        let text = std::str::from_utf8(field).map_err(|_| DomainError::Serial {
            serial: hex::encode(field),
            reason: "the serial-number field is not ASCII".into(),
        })?;
        if field.len() != Self::LEN {
            return Err(DomainError::Serial {
                serial: text.into(),
                reason: "a serial-number field is 8 bytes".into(),
            });
        }
        Self::new(text.trim_end_matches(' '))
    }
}

// ---------------------------------------------------------------------------------------
// m-of-n and share index
// ---------------------------------------------------------------------------------------

/// The share threshold: any `m` of `n` shares rebuild the key; 1 <= m <= n <= 15.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "(u8, u8)", into = "(u8, u8)")]
pub struct MofN {
    m: u8,
    n: u8,
}

impl MofN {
    pub fn new(m: u8, n: u8) -> Result<Self, DomainError> {
        if n == 0 || n > MAX_SHARES {
            return Err(DomainError::MofN {
                m,
                n,
                reason: format!("n (the number of shares) must be 1 to {MAX_SHARES}"),
            });
        }
        if m == 0 {
            return Err(DomainError::MofN {
                m,
                n,
                reason: "m (the threshold) must be at least 1".into(),
            });
        }
        if m > n {
            return Err(DomainError::MofN {
                m,
                n,
                reason:
                    "m (the threshold) cannot exceed n (the number of shares): lower m or raise n"
                        .into(),
            });
        }
        Ok(Self { m, n })
    }
    pub fn m(&self) -> u8 {
        self.m
    }
    pub fn n(&self) -> u8 {
        self.n
    }
    /// Every index 1..=n.
    pub fn indices(&self) -> impl Iterator<Item = ShareIndex> + use<> {
        (1..=self.n).map(ShareIndex)
    }
}

impl fmt::Display for MofN {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-of-{}", self.m, self.n)
    }
}
impl fmt::Debug for MofN {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MofN({}-of-{})", self.m, self.n)
    }
}
serde_conversions!(MofN <-> (u8, u8), from |(m, n)| Self::new(m, n), into |v| (v.m, v.n));

/// A share index, 1..=15. Where an m-of-n applies, [`ShareIndex::check_against`] also
/// enforces index <= n.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct ShareIndex(u8);

impl ShareIndex {
    pub fn new(index: u8) -> Result<Self, DomainError> {
        if index == 0 || index > MAX_SHARES {
            return Err(DomainError::ShareIndex {
                index: u32::from(index),
                reason: format!("a share index is 1 to {MAX_SHARES}"),
            });
        }
        Ok(Self(index))
    }
    /// From a wider wire field (CSUAMKD carries the index as a 4-byte integer).
    pub fn from_u32(index: u32) -> Result<Self, DomainError> {
        u8::try_from(index)
            .map_err(|_| DomainError::ShareIndex {
                index,
                reason: format!("a share index is 1 to {MAX_SHARES}"),
            })
            .and_then(Self::new)
    }
    pub fn get(&self) -> u8 {
        self.0
    }
    pub fn check_against(self, mofn: MofN) -> Result<Self, DomainError> {
        if self.0 > mofn.n {
            return Err(DomainError::ShareIndex {
                index: u32::from(self.0),
                reason: format!(
                    "this node's setting is {mofn}, so the index must be 1 to {}",
                    mofn.n
                ),
            });
        }
        Ok(self)
    }
}

impl fmt::Display for ShareIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl fmt::Debug for ShareIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareIndex({})", self.0)
    }
}
serde_conversions!(ShareIndex <-> u8, from |v| Self::new(v), into |v| v.0);

// ---------------------------------------------------------------------------------------
// Master keys and verification patterns
// ---------------------------------------------------------------------------------------

/// Every master-key register set a CCA coprocessor reports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MasterKeyKind {
    /// The DES master key (24 bytes).
    Sym,
    /// The RSA master key (24 bytes).
    Asym,
    /// The AES master key (32 bytes); reported, never cloned.
    Aes,
    /// The ECC (APKA) master key (32 bytes); reported, never cloned.
    Apka,
}

impl MasterKeyKind {
    pub const ALL: [MasterKeyKind; 4] = [Self::Sym, Self::Asym, Self::Aes, Self::Apka];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Sym => "SYM",
            Self::Asym => "ASYM",
            Self::Aes => "AES",
            Self::Apka => "APKA",
        }
    }

    /// Parse a user's spelling ("sym", "ASYM", "des", "rsa", ...).
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        match text.to_ascii_uppercase().as_str() {
            "SYM" | "DES" | "SYM-MK" => Ok(Self::Sym),
            "ASYM" | "RSA" | "PKA" | "ASYM-MK" => Ok(Self::Asym),
            "AES" | "AES-MK" => Ok(Self::Aes),
            "APKA" | "ECC" | "APKA-MK" => Ok(Self::Apka),
            _ => Err(DomainError::MasterKeyKind {
                text: text.chars().take(20).collect(),
            }),
        }
    }

    /// The kinds CCA can clone. AES and APKA are refused: IBM documents that cloning does
    /// not support them.
    pub fn cloneable(self) -> Result<CloneableKind, DomainError> {
        match self {
            Self::Sym => Ok(CloneableKind::Sym),
            Self::Asym => Ok(CloneableKind::Asym),
            Self::Aes | Self::Apka => Err(DomainError::CloningNotSupported { kind: self }),
        }
    }
}

display_as!(MasterKeyKind, name);

/// A master-key kind that CCA's cloning verbs accept: the 24-byte SYM and ASYM keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneableKind {
    Sym,
    Asym,
}

impl CloneableKind {
    pub const ALL: [CloneableKind; 2] = [Self::Sym, Self::Asym];
    /// Master-key length in bytes (both are triple-length DES keys).
    pub const KEY_LEN: usize = 24;

    pub fn kind(self) -> MasterKeyKind {
        match self {
            Self::Sym => MasterKeyKind::Sym,
            Self::Asym => MasterKeyKind::Asym,
        }
    }
    /// The CSUAMKD / CSNBMKP rule keyword selecting this register.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Sym => "SYM-MK",
            Self::Asym => "ASYM-MK",
        }
    }
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        MasterKeyKind::parse(text)?.cloneable()
    }
}

impl fmt::Display for CloneableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().name())
    }
}

/// How a verification pattern was computed; only patterns of one algorithm compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternAlgorithm {
    /// First 8 bytes of SHA-1(X'01' || key): SYM and ASYM.
    Sha1Method,
    /// 16-byte MDC-4 pattern (ASYM, as STATICSA and sysfs `mkvps` report it).
    Mdc4,
    /// First 8 bytes of SHA-256(X'01' || key): AES and APKA.
    Sha256Method,
}

impl PatternAlgorithm {
    /// Pattern length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            Self::Sha1Method | Self::Sha256Method => 8,
            Self::Mdc4 => 16,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1Method => "SHA-1",
            Self::Mdc4 => "MDC-4",
            Self::Sha256Method => "SHA-256",
        }
    }
}

/// A master-key verification pattern with the algorithm that made it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "AlgorithmBytes<PatternAlgorithm>")]
pub struct VerificationPattern {
    algorithm: PatternAlgorithm,
    #[serde(with = "lower_hex")]
    bytes: Vec<u8>,
}

/// A verification pattern or public-key hash as serde reads it, before the constructor
/// checks it: deserializing goes through `new`, so that a file or token object cannot
/// carry bytes of another length than the algorithm's (found by the `pkcs11_objects` fuzz
/// target: a registered SHA-256 hash of 20 bytes decoded).
#[derive(Deserialize)]
struct AlgorithmBytes<A> {
    algorithm: A,
    #[serde(with = "lower_hex")]
    bytes: Vec<u8>,
}

/// What a verification pattern and a public-key hash have alike: bytes of the length
/// their algorithm gives (refused otherwise with `DomainError::$error`, naming `$what`),
/// also when deserialized, shown as the algorithm's name and upper-case hex.
macro_rules! algorithm_bytes {
    ($name:ident, $algorithm:ty, $error:ident, what = $what:literal) => {
        impl TryFrom<AlgorithmBytes<$algorithm>> for $name {
            type Error = DomainError;
            fn try_from(raw: AlgorithmBytes<$algorithm>) -> Result<Self, DomainError> {
                Self::new(raw.algorithm, &raw.bytes)
            }
        }

        impl $name {
            pub fn new(algorithm: $algorithm, bytes: &[u8]) -> Result<Self, DomainError> {
                if bytes.len() != algorithm.len() {
                    return Err(DomainError::$error {
                        reason: format!(
                            concat!("a {} ", $what, " is {} bytes, not {}"),
                            algorithm.name(),
                            algorithm.len(),
                            bytes.len()
                        ),
                    });
                }
                Ok(Self {
                    algorithm,
                    bytes: bytes.to_vec(),
                })
            }
            pub fn algorithm(&self) -> $algorithm {
                self.algorithm
            }
            pub fn bytes(&self) -> &[u8] {
                &self.bytes
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{} {}",
                    self.algorithm.name(),
                    hex::encode_upper(&self.bytes)
                )
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

algorithm_bytes!(
    VerificationPattern,
    PatternAlgorithm,
    Pattern,
    what = "verification pattern"
);

impl VerificationPattern {
    /// `Some(equal)` when both patterns use one algorithm, `None` when they cannot be
    /// compared.
    pub fn matches(&self, other: &VerificationPattern) -> Option<bool> {
        (self.algorithm == other.algorithm).then(|| self.bytes == other.bytes)
    }
}

// ---------------------------------------------------------------------------------------
// Retained keys, roles, registrations
// ---------------------------------------------------------------------------------------

/// The role a retained key plays in cloning.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Share administration: certifies CSS and CSR keys.
    Sa,
    /// Coprocessor share signing (source).
    Css,
    /// Coprocessor share receiving (target).
    Csr,
}

impl KeyRole {
    /// The usage CCA gives a key of this role: SA and CSS sign; CSR unwraps the key that
    /// encrypts a share (CSNDPKB KEY-MGMT, without signature use: KM-ONLY).
    pub fn usage(self) -> KeyUsage {
        match self {
            Self::Sa | Self::Css => KeyUsage::SignatureOnly,
            Self::Csr => KeyUsage::KeyManagementOnly,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Sa => "SA",
            Self::Css => "CSS",
            Self::Csr => "CSR",
        }
    }
}

display_as!(KeyRole, name);

/// Key usage of an RSA key (CSNDPKB keywords SIG-ONLY and KM-ONLY).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyUsage {
    SignatureOnly,
    KeyManagementOnly,
}

impl KeyUsage {
    pub fn keyword(self) -> &'static str {
        match self {
            Self::SignatureOnly => "SIG-ONLY",
            Self::KeyManagementOnly => "KM-ONLY",
        }
    }
}

/// RSA modulus sizes mkclone generates. On CCA for IBM Z retained keys are at most 2048
/// bits; the simulator and PKCS#11 tokens also take 3072 and 4096.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub enum RsaModulusBits {
    #[default]
    B2048,
    B3072,
    B4096,
}

impl RsaModulusBits {
    pub fn bits(self) -> u16 {
        match self {
            Self::B2048 => 2048,
            Self::B3072 => 3072,
            Self::B4096 => 4096,
        }
    }
    pub fn bytes(self) -> usize {
        usize::from(self.bits() / 8)
    }
    pub fn from_bits(bits: u16) -> Result<Self, DomainError> {
        match bits {
            2048 => Ok(Self::B2048),
            3072 => Ok(Self::B3072),
            4096 => Ok(Self::B4096),
            _ => Err(DomainError::ModulusBits { bits }),
        }
    }
}
serde_conversions!(RsaModulusBits <-> u16, from |v| Self::from_bits(v), into |v| v.bits());

/// A retained key as the node lists it (CSNDRKL plus the role mkclone gave it).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RetainedKeyInfo {
    pub label: KeyLabel,
    pub usage: KeyUsage,
    pub clone: bool,
    pub bits: u16,
}

/// The hash algorithm of a registered public-key hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashAlgorithm {
    /// CCA's CSNDPKH "SHA-1" rule.
    Sha1,
    /// The hash mkclone's simulator and PKCS#11 path use.
    Sha256,
}

impl HashAlgorithm {
    /// Digest length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA-1",
            Self::Sha256 => "SHA-256",
        }
    }
}

/// The hash of a public key's certificate section (signatures excluded), as registered by
/// CSNDPKH before the key itself.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "AlgorithmBytes<HashAlgorithm>")]
pub struct PublicKeyHash {
    algorithm: HashAlgorithm,
    #[serde(with = "lower_hex")]
    bytes: Vec<u8>,
}

algorithm_bytes!(PublicKeyHash, HashAlgorithm, Hash, what = "hash");

impl PublicKeyHash {
    /// Upper-case hex in groups of four, for reading aloud under dual control.
    pub fn fingerprint(&self) -> String {
        grouped_hex(&self.bytes)
    }
}

/// Bytes as upper-case hex in groups of four digits ("0A1B 2C3D …"): how every fingerprint
/// is shown, so that one read aloud compares with one printed elsewhere.
pub fn grouped_hex(bytes: &[u8]) -> String {
    let hex = hex::encode_upper(bytes);
    hex.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name in a node's public-key registry: its hash (CSNDPKH) and, once registered, the
/// key's certificate (CSNDPKR), with the CLONE mark.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Registration {
    pub name: KeyLabel,
    pub hash: PublicKeyHash,
    pub clone: bool,
    pub key: Option<Certificate>,
}

// ---------------------------------------------------------------------------------------
// Opaque byte newtypes: CCA structures crossing the trait
// ---------------------------------------------------------------------------------------

macro_rules! opaque_bytes {
    ($(#[$doc:meta])* $name:ident, first = $first:expr, min = $min:expr, max = $max:expr, what = $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "HexBytes")]
        pub struct $name(Vec<u8>);

        // By reference: serde's `into` would clone the bytes and drop the copy.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                lower_hex::serialize(&self.0, s)
            }
        }

        impl $name {
            /// Checks the leading identifier byte and the length bounds only; the full
            /// structure is parsed by `mkclone-formats`.
            pub fn new(bytes: Vec<u8>) -> Result<Self, DomainError> {
                // Held from the start, so that refused bytes are wiped too (`Drop`).
                let value = Self(bytes);
                let bytes = &value.0;
                if bytes.len() < $min || bytes.len() > $max {
                    return Err(DomainError::Structure {
                        what: $what,
                        reason: format!("length {} is outside {}..={} bytes", bytes.len(), $min, $max),
                    });
                }
                if let Some(first) = $first {
                    if bytes[0] != first {
                        return Err(DomainError::Structure {
                            what: $what,
                            reason: format!("starts with X'{:02X}', expected X'{:02X}'", bytes[0], first),
                        });
                    }
                }
                Ok(value)
            }
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
            pub fn into_bytes(mut self) -> Vec<u8> {
                std::mem::take(&mut self.0)
            }
        }

        // Wiped when dropped, as every copy a ceremony makes of a share should be (a
        // sealed share is ciphertext for a target's key, but a copy left in freed memory
        // is one more to account for); certificates and tokens alike, for one rule.
        impl Drop for $name {
            fn drop(&mut self) {
                zeroize::Zeroize::zeroize(&mut self.0);
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({} bytes)"), self.0.len())
            }
        }
        impl TryFrom<HexBytes> for $name {
            type Error = DomainError;
            fn try_from(v: HexBytes) -> Result<Self, DomainError> {
                Self::new(v.0)
            }
        }
    };
}

/// Bytes as a lowercase hex string in serde formats: `hex::serde`'s text, written through a
/// byte buffer (`hex::encode_to_slice`) rather than a `char` at a time; every certificate,
/// token and sealed share of every ceremony file, card file and journal record goes
/// through it, and the simulator's keys (`#[serde(serialize_with =
/// "mkclone_backend::lower_hex::serialize")]`). Both ways go through buffers sized once and
/// the text is wiped after use: `hex`'s own decoding collects into a `Vec` that grows,
/// freeing each outgrown block with the bytes it held.
pub mod lower_hex {
    use serde::de::{self, Deserializer, Visitor};
    use serde::{Serializer, ser::Error};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(data: &T, s: S) -> Result<S::Ok, S::Error> {
        let bytes = data.as_ref();
        let mut text = Zeroizing::new(vec![0u8; bytes.len() * 2]);
        hex::encode_to_slice(bytes, &mut text).map_err(S::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&text).map_err(S::Error::custom)?)
    }

    /// Hex text (either case, as `hex::serde` reads it) into a `Vec` of exactly its size.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct HexText;
        impl Visitor<'_> for HexText {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string of hex digits")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
                let mut bytes = vec![0u8; text.len() / 2];
                match hex::decode_to_slice(text, &mut bytes) {
                    Ok(()) => Ok(bytes),
                    Err(e) => {
                        zeroize::Zeroize::zeroize(&mut bytes);
                        Err(E::custom(e))
                    }
                }
            }
        }
        d.deserialize_str(HexText)
    }
}

/// Bytes serialized as a hex string.
#[derive(Serialize, Deserialize)]
struct HexBytes(#[serde(with = "lower_hex")] Vec<u8>);

opaque_bytes!(
    /// A CCA PKA public-key token (X'1E' header, RSA public section, optional X'40'
    /// certificate section).
    PublicKeyToken, first = Some(0x1E_u8), min = 8, max = 8192, what = "public-key token"
);
opaque_bytes!(
    /// A CCA certificate section (X'40'): public key, EID/serial, signature(s).
    Certificate, first = Some(0x40_u8), min = 4, max = 8192, what = "certificate section"
);
opaque_bytes!(
    /// A sealed share as it travels from source to target: the header naming the target,
    /// the RSA-wrapped triple-DES key and the encrypted cloning-information token.
    SealedShare, first = None::<u8>, min = 1, max = 16384, what = "sealed share"
);

#[cfg(test)]
mod lower_hex_tests {
    use super::*;

    /// The text is `hex::serde`'s, byte for byte (files written before read the same).
    #[test]
    fn lower_hex_writes_what_hex_serde_wrote() {
        #[derive(Serialize)]
        struct Old(#[serde(with = "hex::serde")] Vec<u8>);
        let bytes: Vec<u8> = (0..=255u8).chain([0x1E, 0x40, 0xAB]).collect();
        let new = serde_json::to_string(&HexBytes(bytes.clone())).unwrap();
        assert_eq!(new, serde_json::to_string(&Old(bytes.clone())).unwrap());
        let back: HexBytes = serde_json::from_str(&new).unwrap();
        assert_eq!(back.0, bytes);
        assert_eq!(
            serde_json::to_string(&HexBytes(Vec::new())).unwrap(),
            "\"\""
        );
    }

    /// Read back into a buffer of exactly its size, from either case; what is not hex,
    /// or not whole bytes, is refused as `hex::serde` refused it.
    #[test]
    fn lower_hex_reads_into_a_buffer_sized_once() {
        let back: HexBytes = serde_json::from_str("\"00aBcD1e\"").unwrap();
        assert_eq!(back.0, [0x00, 0xAB, 0xCD, 0x1E]);
        assert_eq!(back.0.capacity(), 4);
        // An escaped character reaches the decoder as a transient string: the same bytes.
        let escaped: HexBytes = serde_json::from_str("\"\\u0030a\"").unwrap();
        assert_eq!(escaped.0, [0x0A]);
        for bad in ["\"abc\"", "\"0g\"", "\"\\u00e900\"", "12", "[1]"] {
            assert!(serde_json::from_str::<HexBytes>(bad).is_err(), "{bad}");
        }
        let share = SealedShare::new(vec![0xC1, 0x0D]).unwrap();
        let text = serde_json::to_string(&share).unwrap();
        assert_eq!(text, "\"c10d\"");
        assert_eq!(serde_json::from_str::<SealedShare>(&text).unwrap(), share);
        assert!(
            serde_json::from_str::<SealedShare>("\"\"").is_err(),
            "min 1 byte"
        );
    }
}
