//! The configuration of a zcrypt node:
//!
//! ```toml
//! [nodes.cex]
//! backend = "zcrypt"
//! apqn = "03.000d"                # card 0x03, domain 0x000d, as lszcrypt writes it
//! device = "/dev/zcrypt-mkclone"  # optional; default /dev/z90crypt
//! expect_serial = "93AABEG5"      # optional; refused if the card reports another
//! ```
//!
//! Unknown keys are refused. `backend` may be present (and must then be "zcrypt") or
//! absent, so that the struct works both as a whole node table and as the variant of an
//! enum tagged by `backend`.

// Only src/zcrypt/ioctl.rs may hold unsafe code (docs/ARCHITECTURE.md, "zcrypt").
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use mkclone_backend::SerialNumber;
use mkclone_cca::Apqn;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The default device node: the zcrypt misc device.
pub const DEFAULT_DEVICE: &str = "/dev/z90crypt";

/// The only value `backend` may have in a zcrypt node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZcryptTag {
    Zcrypt,
}

/// A real CCA coprocessor domain reached through the Linux zcrypt driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZcryptNodeConfig {
    /// `"zcrypt"` when the node table carries its backend key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<ZcryptTag>,
    /// Card and domain, `"03.000d"`.
    pub apqn: Apqn,
    /// `/dev/z90crypt` (default) or a `/dev/zcrypt-<name>` node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// The coprocessor serial the APQN must report; checked when the node is opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_serial: Option<SerialNumber>,
}

/// A zcrypt node configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ZcryptConfigError {
    #[error(
        "device {path:?} is not a zcrypt device node: use /dev/z90crypt or a /dev/zcrypt-<name> node \
         (created by writing <name> to /sys/class/zcrypt/create)"
    )]
    Device { path: PathBuf },
}

impl ZcryptNodeConfig {
    /// A node for `apqn` on the default device.
    pub fn new(apqn: Apqn) -> Self {
        Self {
            backend: Some(ZcryptTag::Zcrypt),
            apqn,
            device: None,
            expect_serial: None,
        }
    }

    /// The device node to open.
    pub fn device_path(&self) -> PathBuf {
        self.device
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DEVICE))
    }

    /// Check what serde cannot: the device is an absolute path to `z90crypt` or a
    /// `zcrypt-<name>` node. (The APQN and serial are checked as they are parsed.)
    pub fn validate(&self) -> Result<(), ZcryptConfigError> {
        if let Some(path) = &self.device
            && !is_zcrypt_node(path)
        {
            return Err(ZcryptConfigError::Device { path: path.clone() });
        }
        Ok(())
    }
}

fn is_zcrypt_node(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.is_absolute()
        && (name == "z90crypt"
            || name
                .strip_prefix("zcrypt-")
                .is_some_and(|rest| !rest.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ZcryptNodeConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_node_parses_and_validates() {
        let cfg = parse(
            r#"{"backend": "zcrypt", "apqn": "03.000d", "device": "/dev/zcrypt-mkclone",
                "expect_serial": "93AABEG5"}"#,
        )
        .unwrap();
        assert_eq!(cfg.apqn, Apqn::new(3, 0x0d).unwrap());
        assert_eq!(cfg.device_path(), PathBuf::from("/dev/zcrypt-mkclone"));
        assert_eq!(cfg.expect_serial.as_ref().unwrap().as_str(), "93AABEG5");
        cfg.validate().unwrap();
    }

    #[test]
    fn backend_may_be_absent_and_the_device_defaults_to_z90crypt() {
        let cfg = parse(r#"{"apqn": "0a.0001"}"#).unwrap();
        assert_eq!(cfg.backend, None);
        assert_eq!(cfg.device_path(), PathBuf::from("/dev/z90crypt"));
        cfg.validate().unwrap();
    }

    #[test]
    fn another_backend_and_unknown_keys_are_refused() {
        let e = parse(r#"{"backend": "sim", "apqn": "03.000d"}"#).unwrap_err();
        assert!(e.contains("unknown variant `sim`"), "{e}");
        let e = parse(r#"{"apqn": "03.000d", "domain": 13}"#).unwrap_err();
        assert!(e.contains("unknown field `domain`"), "{e}");
    }

    #[test]
    fn malformed_and_out_of_range_apqns_are_clear_errors() {
        for (text, says) in [
            ("3.000d", "the card has 2 hex digits and the domain 4"),
            ("03000d", "a period separates card and domain"),
            ("zz.000d", "the card is not hexadecimal"),
            ("03.00g1", "the domain is not hexadecimal"),
            ("03.0100", "the domain is at most 0x00ff"),
        ] {
            let e = parse(&format!(r#"{{"apqn": "{text}"}}"#)).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.contains("e.g. \"03.000d\""), "{text}: {e}");
        }
        let e = parse(r#"{"apqn": 3}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn a_bad_serial_or_device_is_refused() {
        let e = parse(r#"{"apqn": "03.000d", "expect_serial": "TOO-LONG-SERIAL"}"#).unwrap_err();
        assert!(e.contains("1 to 8 printable ASCII characters"), "{e}");
        for bad in ["/dev/null", "dev/z90crypt", "/dev/zcrypt-", "/tmp/card"] {
            let cfg = parse(&format!(r#"{{"apqn": "03.000d", "device": "{bad}"}}"#)).unwrap();
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("not a zcrypt device node"), "{bad}: {e}");
        }
    }

    /// The shape a configuration enum tagged by `backend` gives it.
    #[test]
    fn it_works_as_the_variant_of_an_enum_tagged_by_backend() {
        #[derive(Deserialize, Debug)]
        #[serde(tag = "backend", rename_all = "lowercase")]
        enum Node {
            Zcrypt(ZcryptNodeConfig),
        }
        let Node::Zcrypt(cfg) =
            serde_json::from_str::<Node>(r#"{"backend": "zcrypt", "apqn": "03.000d"}"#).unwrap();
        assert_eq!(cfg.apqn.to_string(), "03.000d");
        let e = serde_json::from_str::<Node>(r#"{"backend": "zcrypt", "apqn": "03.000d", "x": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `x`"), "{e}");
    }
}
