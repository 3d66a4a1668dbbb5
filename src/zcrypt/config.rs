//! The configuration of a zcrypt node:
//!
//! ```toml
//! [nodes.cex]
//! backend = "zcrypt"
//! apqn = "03.000d"                # card 0x03, domain 0x000d, as lszcrypt writes it
//! device = "/dev/zcrypt_0"        # optional; default /dev/z90crypt
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
    /// `/dev/z90crypt` (default) or a zcdn node `/dev/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// The coprocessor serial the APQN must report; checked when the node is opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_serial: Option<SerialNumber>,
}

/// The longest name of a zcdn node: the kernel copies the name written to
/// /sys/class/zcrypt/create into `char name[ZCDN_MAX_NAME]` (32) with strscpy, so at most
/// 31 bytes survive (drivers/s390/crypto/zcrypt_api.c, `zcdn_create_store`).
pub const ZCDN_MAX_NAME_LEN: usize = 31;

/// A zcrypt node configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ZcryptConfigError {
    #[error(
        "device {path:?} cannot be a zcrypt device node: {reason}. Use /dev/z90crypt, or a node made by \
         writing its name to /sys/class/zcrypt/create (the kernel makes /dev/<name>; with no name, \
         /dev/zcrypt_<n>; `zcryptctl list` shows them)"
    )]
    Device { path: PathBuf, reason: &'static str },
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

    /// Check what serde cannot: the device is an absolute path without `.` or `..`
    /// components whose name a zcrypt node can have. Where it lives is not checked: the
    /// kernel makes /dev/z90crypt and `/dev/<name>`, but a container or a udev rule may
    /// place a node elsewhere; a file that is not a zcrypt device answers the first
    /// request with ENOTTY, which mkclone reports as such.
    pub fn validate(&self) -> Result<(), ZcryptConfigError> {
        match &self.device {
            Some(path) => check_node_path(path).map_err(|reason| ZcryptConfigError::Device {
                path: path.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// Whether `path` can name a zcrypt node: /dev/z90crypt (the misc device), or a zcdn
/// node, which the kernel names `<name>` (1 to 31 bytes as written to
/// /sys/class/zcrypt/create, leading and trailing blanks stripped: `zcdn_create_store`,
/// `skip_spaces` and `strim`) or, with no name given, `zcrypt_<minor>` (`zcdn_create`:
/// `dev_set_name(..., ZCRYPT_NAME "_%d", MINOR(devt))`), and udev creates as /dev/<name>.
fn check_node_path(path: &Path) -> Result<(), &'static str> {
    use std::os::unix::ffi::OsStrExt;
    if !path.is_absolute() {
        return Err("it is not an absolute path");
    }
    // On the bytes: `Path::components` drops a `.` that is not first.
    if path
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .any(|c| c == b"." || c == b"..")
    {
        return Err("it has a . or .. component");
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Err("it has no file name");
    };
    if name.len() > ZCDN_MAX_NAME_LEN {
        return Err("a zcrypt node's name has at most 31 bytes");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "the kernel strips blanks from a node name and a name holds no control character",
        );
    }
    Ok(())
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
            r#"{"backend": "zcrypt", "apqn": "03.000d", "device": "/dev/zcrypt_0",
                "expect_serial": "93AABEG5"}"#,
        )
        .unwrap();
        assert_eq!(cfg.apqn, Apqn::new(3, 0x0d).unwrap());
        assert_eq!(cfg.device_path(), PathBuf::from("/dev/zcrypt_0"));
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
    fn a_bad_serial_is_refused() {
        let e = parse(r#"{"apqn": "03.000d", "expect_serial": "TOO-LONG-SERIAL"}"#).unwrap_err();
        assert!(e.contains("1 to 8 printable ASCII characters"), "{e}");
    }

    /// The node names the kernel makes (zcrypt_api.c, `zcdn_create`): the name written to
    /// /sys/class/zcrypt/create, or `zcrypt_<minor>` when none was written; and
    /// /dev/z90crypt.
    #[test]
    fn every_node_name_the_kernel_can_make_is_accepted() {
        let longest = format!("/dev/{}", "n".repeat(ZCDN_MAX_NAME_LEN));
        for good in [
            "/dev/z90crypt",
            "/dev/zcrypt_0",
            "/dev/zcrypt_255",
            "/dev/mkclone",
            "/dev/zcrypt-mkclone",
            "/dev/ccaNode.1",
            longest.as_str(),
            // Placed elsewhere by a container or a udev rule.
            "/run/zcrypt/zcrypt_1",
        ] {
            let cfg = parse(&format!(r#"{{"apqn": "03.000d", "device": "{good}"}}"#)).unwrap();
            cfg.validate().unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(cfg.device_path(), PathBuf::from(good));
        }
    }

    #[test]
    fn a_path_no_zcrypt_node_can_have_is_refused_with_the_reason() {
        let too_long = format!("/dev/{}", "n".repeat(ZCDN_MAX_NAME_LEN + 1));
        for (bad, says) in [
            ("dev/z90crypt", "not an absolute path"),
            ("zcrypt_0", "not an absolute path"),
            ("/dev/../tmp/card", ". or .. component"),
            ("/dev/./zcrypt_0", ". or .. component"),
            (too_long.as_str(), "at most 31 bytes"),
            ("/dev/zcrypt 0", "strips blanks"),
            ("/", "no file name"),
        ] {
            let cfg = parse(&format!(r#"{{"apqn": "03.000d", "device": "{bad}"}}"#)).unwrap();
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains("/sys/class/zcrypt/create"), "{bad}: {e}");
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
