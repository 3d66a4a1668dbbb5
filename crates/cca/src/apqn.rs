//! APQN: an adjunct-processor queue number, card and domain, written "03.000d" as
//! lszcrypt shows it (reference/zcrypt-abi.md, "sysfs").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Highest domain number the AP bus addresses (`ap_max_domain_id` is at most 255 on
/// current machines; the field is 16 bits in CPRBX).
pub const MAX_DOMAIN: u16 = 0x00FF;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Apqn {
    pub card: u8,
    pub domain: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "APQN {text:?} is not valid: {reason} (write it as lszcrypt does, e.g. \"03.000d\": card 0x03, domain 0x000d)"
)]
pub struct ApqnError {
    pub text: String,
    pub reason: &'static str,
}

impl Apqn {
    pub fn new(card: u8, domain: u16) -> Result<Self, ApqnError> {
        if domain > MAX_DOMAIN {
            return Err(ApqnError {
                text: format!("{card:02x}.{domain:04x}"),
                reason: "the domain is at most 0x00ff",
            });
        }
        Ok(Self { card, domain })
    }
}

impl FromStr for Apqn {
    type Err = ApqnError;
    fn from_str(text: &str) -> Result<Self, ApqnError> {
        let err = |reason| ApqnError {
            text: text.chars().take(20).collect(),
            reason,
        };
        let (card, domain) = text
            .split_once('.')
            .ok_or_else(|| err("a period separates card and domain"))?;
        if card.len() != 2 || domain.len() != 4 {
            return Err(err("the card has 2 hex digits and the domain 4"));
        }
        // Hex digits only: `from_str_radix` would also take a leading '+'.
        let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
        let card = u8::from_str_radix(card, 16)
            .ok()
            .filter(|_| hex(card))
            .ok_or_else(|| err("the card is not hexadecimal"))?;
        let domain = u16::from_str_radix(domain, 16)
            .ok()
            .filter(|_| hex(domain))
            .ok_or_else(|| err("the domain is not hexadecimal"))?;
        Self::new(card, domain).map_err(|_| err("the domain is at most 0x00ff"))
    }
}

impl fmt::Display for Apqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:04x}", self.card, self.domain)
    }
}
impl fmt::Debug for Apqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Apqn({self})")
    }
}
impl TryFrom<String> for Apqn {
    type Error = ApqnError;
    fn try_from(s: String) -> Result<Self, ApqnError> {
        s.parse()
    }
}
impl From<Apqn> for String {
    fn from(a: Apqn) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_like_lszcrypt() {
        let a: Apqn = "03.000d".parse().unwrap();
        assert_eq!((a.card, a.domain), (3, 13));
        assert_eq!(a.to_string(), "03.000d");
        for bad in [
            "3.000d",
            "03.13",
            "0x03.000d",
            "03000d",
            "zz.0001",
            "03.0100",
            "+3.000d",
            "03.+00d",
            "",
        ] {
            assert!(bad.parse::<Apqn>().is_err(), "{bad}");
        }
    }
}
