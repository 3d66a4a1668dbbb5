//! Who a token is: the identity mkclone pins (`expect_token_serial`), locks (`lock.rs`) and
//! names a token by, and the 8-character node serial CCA structures carry.
//!
//! A token's serial number (`CK_TOKEN_INFO.serialNumber`, 16 characters) is its identity.
//! PKCS#11 lets a token leave it blank; such a token gets a **derived identity**:
//! `mkclone-` and 16 hex digits, the first 8 bytes of SHA-256 over a domain string and,
//! each length-prefixed, the module's canonical path (symbolic links resolved), the token's
//! label, manufacturer and model. It is 24 characters long, so it can never equal a serial a
//! token reports (at most 16), and two blank-serial tokens that differ in any of those
//! fields differ in it (within one module, two tokens with one label are refused as
//! ambiguous when opened, so the label tells them apart there). The slot number is left out
//! on purpose: modules renumber slots (SoftHSM moves a token when another is initialized),
//! and the identity must not change with it. The cost: the same blank-serial token reached
//! through two different module files has two derived identities; the token lock does not
//! depend on the module (see [`TokenIdentity::lock_key`]).
//!
//! The node serial: the last 8 characters of the serial number, as before; for a derived
//! identity (or a serial that is not printable ASCII) `~` and 7 hex digits of its hash, a
//! form no 8-character tail of a hex or decimal serial takes.

use std::path::Path;

use mkclone_backend::SerialNumber;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::raw::RawTokenInfo;

/// The prefix of a derived identity.
pub const DERIVED_PREFIX: &str = "mkclone-";

const IDENTITY_DOMAIN: &[u8] = b"mkclone pkcs11 derived token identity v1";
const LOCK_DOMAIN: &[u8] = b"mkclone pkcs11 token lock v1";

/// A token's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenIdentity {
    /// What mkclone calls the token: its serial number, or the derived identity.
    pub id: String,
    /// The serial number as the token reports it (empty when blank).
    pub reported_serial: String,
    label: String,
    manufacturer: String,
    model: String,
}

/// SHA-256 over `domain` and each part, length-prefixed (so no two lists of parts collide).
fn hash_parts(domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl TokenIdentity {
    /// The identity of the token `info` describes, reached through the module at `module`.
    pub(crate) fn of(module: &Path, info: &RawTokenInfo) -> Self {
        let reported_serial = info.serial.trim().to_string();
        let id = if reported_serial.is_empty() {
            let module = module
                .canonicalize()
                .unwrap_or_else(|_| module.to_path_buf());
            let digest = hash_parts(
                IDENTITY_DOMAIN,
                &[
                    module.as_os_str().as_encoded_bytes(),
                    info.label.as_bytes(),
                    info.manufacturer.as_bytes(),
                    info.model.as_bytes(),
                ],
            );
            format!("{DERIVED_PREFIX}{}", hex::encode(&digest[..8]))
        } else {
            reported_serial.clone()
        };
        Self {
            id,
            reported_serial,
            label: info.label.clone(),
            manufacturer: info.manufacturer.clone(),
            model: info.model.clone(),
        }
    }

    /// The token reports no serial number; [`TokenIdentity::id`] is derived.
    pub fn is_derived(&self) -> bool {
        self.reported_serial.is_empty()
    }

    /// Whether `expected` (`expect_token_serial`, or a URI's `serial`) names this token:
    /// its serial number, or for a blank one its derived identity or the empty string.
    pub fn matches(&self, expected: &str) -> bool {
        let expected = expected.trim();
        expected == self.id || (self.is_derived() && expected.is_empty())
    }

    /// The node serial CCA structures carry (8 characters).
    pub fn node_serial(&self) -> SerialNumber {
        let tail: String = {
            let chars: Vec<char> = self.id.chars().collect();
            chars[chars.len().saturating_sub(SerialNumber::LEN)..]
                .iter()
                .collect()
        };
        if !self.is_derived()
            && let Ok(serial) = SerialNumber::new(&tail)
        {
            return serial;
        }
        let digest = hash_parts(IDENTITY_DOMAIN, &[self.id.as_bytes()]);
        let text = format!("~{}", &hex::encode(digest)[..SerialNumber::LEN - 1]);
        SerialNumber::new(&text).unwrap_or_else(|_| unreachable!("~ and hex digits are printable"))
    }

    /// What the token lock is keyed by, independent of the module a token is reached
    /// through: its serial number and label, or for a blank serial its label, manufacturer
    /// and model (two blank-serial tokens alike in all three share one lock, which only
    /// ever makes one wait for the other). Returns a short readable part and a digest.
    pub fn lock_key(&self) -> (String, [u8; 32]) {
        if self.is_derived() {
            (
                "blank-serial".into(),
                hash_parts(
                    LOCK_DOMAIN,
                    &[
                        b"blank",
                        self.label.as_bytes(),
                        self.manufacturer.as_bytes(),
                        self.model.as_bytes(),
                    ],
                ),
            )
        } else {
            (
                self.reported_serial.clone(),
                hash_parts(
                    LOCK_DOMAIN,
                    &[
                        b"serial",
                        self.reported_serial.as_bytes(),
                        self.label.as_bytes(),
                    ],
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(label: &str, serial: &str) -> RawTokenInfo {
        RawTokenInfo {
            label: label.into(),
            manufacturer: "Vendor".into(),
            model: "Model".into(),
            serial: serial.into(),
            flags: 0,
        }
    }

    const A: &str = "/nonexistent/a.so";
    const B: &str = "/nonexistent/b.so";

    #[test]
    fn a_serial_is_the_identity_and_its_tail_the_node_serial() {
        let id = TokenIdentity::of(Path::new(A), &info("src", "d8e157d09f375158"));
        assert_eq!(id.id, "d8e157d09f375158");
        assert!(!id.is_derived());
        assert_eq!(id.node_serial().as_str(), "9f375158");
        assert!(id.matches(" d8e157d09f375158 "));
        assert!(!id.matches(""));
        assert_eq!(
            TokenIdentity::of(Path::new(A), &info("src", "123"))
                .node_serial()
                .as_str(),
            "123"
        );
        // The module does not matter.
        assert_eq!(
            TokenIdentity::of(Path::new(B), &info("src", "d8e157d09f375158")),
            id
        );
    }

    #[test]
    fn a_blank_serial_gets_a_stable_identity_that_no_serial_can_take() {
        let one = TokenIdentity::of(Path::new(A), &info("src", ""));
        assert!(one.is_derived());
        assert!(one.id.starts_with(DERIVED_PREFIX), "{}", one.id);
        assert_eq!(one.id.len(), DERIVED_PREFIX.len() + 16);
        assert!(one.id.len() > 16, "longer than any reported serial");
        // Stable: the same inputs, the same identity, whatever else changes (the flags).
        let mut again = info("src", "");
        again.flags = 0xffff;
        assert_eq!(TokenIdentity::of(Path::new(A), &again).id, one.id);
        // Any input changed: another identity.
        let others = [
            TokenIdentity::of(Path::new(B), &info("src", "")),
            TokenIdentity::of(Path::new(A), &info("tgt", "")),
            TokenIdentity::of(
                Path::new(A),
                &RawTokenInfo {
                    manufacturer: "Other".into(),
                    ..info("src", "")
                },
            ),
            TokenIdentity::of(
                Path::new(A),
                &RawTokenInfo {
                    model: "Other".into(),
                    ..info("src", "")
                },
            ),
        ];
        for other in &others {
            assert_ne!(other.id, one.id);
        }
        // Pinned by its identity, or by the empty serial a URI may give.
        assert!(one.matches(&one.id));
        assert!(one.matches(""));
        assert!(!one.matches(&others[0].id));
        // Never "PKCS11": a node serial of its own, marked derived.
        let node = one.node_serial();
        assert!(node.as_str().starts_with('~'), "{node:?}");
        assert_eq!(node.as_str().len(), 8);
        assert_ne!(others[1].node_serial(), node);
    }

    #[test]
    fn the_lock_key_ignores_the_module_and_sees_serial_and_label() {
        let lock_key = |module: &str, label: &str, serial: &str| {
            TokenIdentity::of(Path::new(module), &info(label, serial)).lock_key()
        };
        let (name, a) = lock_key(A, "src", "0001");
        assert_eq!(name, "0001");
        assert_eq!(lock_key(B, "src", "0001").1, a);
        assert_ne!(lock_key(A, "tgt", "0001").1, a);
        assert_ne!(lock_key(A, "src", "0002").1, a);
        // Blank serials: one lock through every module.
        let (name, blank) = lock_key(A, "src", "");
        assert_eq!(name, "blank-serial");
        assert_eq!(lock_key(B, "src", "").1, blank);
        assert_ne!(blank, a);
    }
}
