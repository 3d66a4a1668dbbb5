//! What a simulated card remembers. Serialized as one JSON file per card.
//!
//! REHEARSAL ONLY: the master keys and RSA private keys are stored here in plain hex
//! (docs/ARCHITECTURE.md, "Rehearsal and production"). The file is created 0600.

use std::collections::BTreeMap;
use std::fmt;

use mkclone_backend::rules::{ShareFacts, statmofn, tables};
use mkclone_backend::{
    CloneableKind, Eid, KeyLabel, KeyUsage, MAX_SHARES, MofN, PublicKeyToken, Registration,
    SerialNumber, ShareIndex, VerificationPattern,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// `format` field of a card file.
pub const FORMAT: &str = "mkclone-hw-sim-card";
/// Current `version` of a card file.
pub const VERSION: u32 = 1;
/// The notice every card file carries.
pub const NOTICE: &str = "REHEARSAL ONLY: simulated coprocessor; master keys and private keys are kept in this file in the clear";

/// 24 secret bytes (a master key, a share, a polynomial row): zeroized on drop,
/// hex in the card file, redacted in Debug.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct Secret24(
    #[serde(
        serialize_with = "mkclone_backend::lower_hex::serialize",
        deserialize_with = "hex::serde::deserialize"
    )]
    pub [u8; 24],
);

/// A list of secrets (received shares, polynomial rows: 15 at most, as shares are) read
/// into a `Vec` sized once for 15. serde's own grows the `Vec` as it reads, moving the
/// secrets bytewise and freeing each outgrown block with them in it. Longer is refused.
fn list_sized_once<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct SizedOnce<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for SizedOnce<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX_SHARES} entries")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let max = usize::from(MAX_SHARES);
            let mut list = Vec::with_capacity(max);
            while let Some(entry) = seq.next_element()? {
                if list.len() == max {
                    return Err(serde::de::Error::invalid_length(max + 1, &self));
                }
                list.push(entry);
            }
            Ok(list)
        }
    }
    deserializer.deserialize_seq(SizedOnce(std::marker::PhantomData))
}

/// [`list_sized_once`] for a list that may be absent (`null`).
fn optional_list_sized_once<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(bound = "T: Deserialize<'de>")]
    struct List<T>(#[serde(deserialize_with = "list_sized_once")] Vec<T>);
    Ok(Option::<List<T>>::deserialize(deserializer)?.map(|list| list.0))
}

impl fmt::Debug for Secret24 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret24(<redacted>)")
    }
}

/// One master key's registers and share state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MasterKeySet {
    pub new: Option<Secret24>,
    pub current: Option<Secret24>,
    pub old: Option<Secret24>,
    /// The share polynomial's coefficient rows (m-1 of them), made at the first OBTAIN
    /// and kept until SET or a new SET-MOFN, so that share i is the same every time.
    #[serde(default, deserialize_with = "optional_list_sized_once")]
    pub polynomial: Option<Vec<Secret24>>,
    /// STATMOFN generation states, one ASCII digit per index ('0'..'4').
    pub generation: Vec<u8>,
    /// Shares received so far.
    #[serde(deserialize_with = "list_sized_once")]
    pub received: Vec<ReceivedShare>,
    /// Indices received more than once (STATMOFN reception state 4).
    pub received_more: Vec<u8>,
}

/// A share held by a target until the m-th arrives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceivedShare {
    pub index: ShareIndex,
    pub value: Secret24,
    pub origin_eid: Eid,
    pub origin_serial: SerialNumber,
    pub source_pattern: VerificationPattern,
}

impl ReceivedShare {
    /// What the share-admission rules compare (the simulator compares share values
    /// themselves).
    pub fn facts(&self) -> ShareFacts<'_> {
        ShareFacts {
            index: self.index,
            origin_eid: &self.origin_eid,
            source_pattern: &self.source_pattern,
            value_digest: &self.value.0,
        }
    }
}

/// A retained RSA key pair.
#[derive(Clone, Serialize, Deserialize)]
pub struct RetainedKey {
    pub label: KeyLabel,
    pub usage: KeyUsage,
    pub clone: bool,
    pub bits: u16,
    /// PKCS#1 DER of the private key, hex.
    pub private_pkcs1: Zeroizing<String>,
    /// The public-key token returned at generation (with its self-signed certificate).
    pub public_token: PublicKeyToken,
}

impl fmt::Debug for RetainedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedKey")
            .field("label", &self.label)
            .field("usage", &self.usage)
            .field("clone", &self.clone)
            .field("bits", &self.bits)
            .field("private_pkcs1", &format_args!("<redacted>"))
            .field("public_token", &self.public_token)
            .finish()
    }
}

/// Everything a simulated card holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CardState {
    pub format: String,
    pub version: u32,
    pub notice: String,
    pub serial: SerialNumber,
    pub eid: Option<Eid>,
    pub m_of_n: Option<MofN>,
    pub master_keys: BTreeMap<CloneableKind, MasterKeySet>,
    pub retained: Vec<RetainedKey>,
    pub registry: Vec<Registration>,
}

impl CardState {
    /// A factory-fresh card: no EID, no master keys, nothing retained or registered.
    pub fn new(serial: SerialNumber) -> Self {
        let master_keys = CloneableKind::ALL
            .into_iter()
            .map(|k| (k, MasterKeySet::fresh()))
            .collect();
        Self {
            format: FORMAT.into(),
            version: VERSION,
            notice: NOTICE.into(),
            serial,
            eid: None,
            m_of_n: None,
            master_keys,
            retained: Vec::new(),
            registry: Vec::new(),
        }
    }

    pub fn keys(&self, kind: CloneableKind) -> &MasterKeySet {
        // Both kinds are created in `new` and checked in `validate`.
        &self.master_keys[&kind]
    }

    pub fn keys_mut(&mut self, kind: CloneableKind) -> &mut MasterKeySet {
        self.master_keys
            .entry(kind)
            .or_insert_with(MasterKeySet::fresh)
    }

    pub fn retained(&self, label: &KeyLabel) -> Option<&RetainedKey> {
        self.retained.iter().find(|k| &k.label == label)
    }

    pub fn registration(&self, name: &KeyLabel) -> Option<&Registration> {
        self.registry.iter().find(|r| &r.name == name)
    }

    /// Checks a state read from a file: format, version, internal consistency.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.version > VERSION {
            return Err(format!(
                "version {} was written by a newer mkclone (this one reads up to {VERSION}); upgrade mkclone",
                self.version
            ));
        }
        if self.version == 0 {
            return Err("version 0 is not valid".into());
        }
        for kind in CloneableKind::ALL {
            let set = self
                .master_keys
                .get(&kind)
                .ok_or_else(|| format!("the {kind} master-key set is missing"))?;
            if let Err(e) = statmofn::parse_generation(&set.generation) {
                return Err(format!("the {kind} generation table is malformed: {e}"));
            }
            if let Some(p) = &set.polynomial {
                let m = self.m_of_n.map(|mn| mn.m()).unwrap_or(0);
                if p.len() + 1 != usize::from(m) {
                    return Err(format!("the {kind} share polynomial does not match m-of-n"));
                }
            }
        }
        Ok(())
    }
}

impl MasterKeySet {
    pub fn fresh() -> Self {
        Self {
            generation: generation_row(None),
            ..Self::default()
        }
    }

    /// Forget the polynomial and both share tables (SET, SET-MOFN).
    pub fn clear_share_tables(&mut self, m_of_n: Option<MofN>) {
        self.polynomial = None;
        self.received.clear();
        self.received_more.clear();
        self.generation = generation_row(m_of_n);
    }
}

/// A fresh generation row as the card file keeps it: STATMOFN digits.
fn generation_row(m_of_n: Option<MofN>) -> Vec<u8> {
    statmofn::generation_digits(&tables::fresh_generation(m_of_n)).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key is written as lower-case hex, as card files have always held it, and read
    /// back from it; text that is not 48 hex digits is refused.
    #[test]
    fn a_secret_is_lower_case_hex_in_a_card_file() {
        let key = Secret24(std::array::from_fn(|i| (i as u8) * 11));
        let text = serde_json::to_string(&key).unwrap();
        assert_eq!(text, "\"000b16212c37424d58636e79848f9aa5b0bbc6d1dce7f2fd\"");
        assert!(serde_json::from_str::<Secret24>(&text).unwrap() == key);
        let upper = text.to_uppercase();
        assert!(serde_json::from_str::<Secret24>(&upper).unwrap() == key);
        assert!(serde_json::from_str::<Secret24>("\"000b16\"").is_err());
        assert!(serde_json::from_str::<Secret24>(&text.replace("0b", "0g")).is_err());
    }

    /// The lists of secrets are read into room for 15 entries (no growth, hence no
    /// outgrown block freed with secrets in it); a 16th entry is refused; a polynomial
    /// may be absent or null.
    #[test]
    fn secret_lists_are_read_sized_once_and_at_most_fifteen_long() {
        let row = "\"000b16212c37424d58636e79848f9aa5b0bbc6d1dce7f2fd\"";
        let set = |rows: usize| {
            let rows = vec![row; rows].join(",");
            format!(
                r#"{{"new":null,"current":null,"old":null,"polynomial":[{rows}],"generation":[],"received":[],"received_more":[]}}"#
            )
        };
        let read: MasterKeySet = serde_json::from_str(&set(14)).unwrap();
        let rows = read.polynomial.unwrap();
        assert_eq!(rows.len(), 14);
        assert_eq!(rows.capacity(), usize::from(MAX_SHARES));
        assert_eq!(read.received.capacity(), usize::from(MAX_SHARES));
        let err = serde_json::from_str::<MasterKeySet>(&set(16)).unwrap_err();
        assert!(err.to_string().contains("at most 15 entries"), "{err}");
        let absent = r#"{"new":null,"current":null,"old":null,"generation":[],"received":[],"received_more":[]}"#;
        assert!(
            serde_json::from_str::<MasterKeySet>(absent)
                .unwrap()
                .polynomial
                .is_none()
        );
        let null = absent.replace(r#""old":null,"#, r#""old":null,"polynomial":null,"#);
        assert!(
            serde_json::from_str::<MasterKeySet>(&null)
                .unwrap()
                .polynomial
                .is_none()
        );
    }
}
