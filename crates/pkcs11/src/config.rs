//! A PKCS#11 node's configuration and where its PIN comes from.
//!
//! ```toml
//! [nodes.source]
//! backend = "pkcs11"
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token = "source"
//! expect_token_serial = "d8e157d09f375158"   # optional
//! pin = { env = "SOURCE_PIN" }                # or { file = "/run/keys/source.pin" }, or "prompt"
//! so_pin = "prompt"                           # the source only: its share export (optional)
//! ```
//!
//! A PIN is never taken from the command line. The security officer's PIN (`so_pin`, the
//! same three forms) is read only when the source exports its master key to split it
//! (phase 3c): the SO makes the one key the master keys may be wrapped with.

use std::io;
use std::path::{Path, PathBuf};

use log::warn;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{PinOrigin, Pkcs11Error};

/// One PKCS#11 node: a token, found by label in a module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11NodeConfig {
    /// Path of the PKCS#11 shared library.
    pub module: PathBuf,
    /// The token's label (slot numbers change; labels do not).
    pub token: String,
    /// When set, the token found by label must have this serial number.
    #[serde(default)]
    pub expect_token_serial: Option<String>,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Where the security officer's PIN comes from, on a node that exports its master key
    /// (the source); read only for that export.
    #[serde(default)]
    pub so_pin: Option<PinSource>,
}

/// Where a node's user PIN comes from: `{ env = "VAR" }`, `{ file = "path" }` or `"prompt"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum PinSource {
    /// An environment variable holds the PIN.
    Env(String),
    /// A file holds the PIN (one trailing newline is ignored); keep it mode 0600.
    File(PathBuf),
    /// The command line prompts for it (the CLI resolves this; [`resolve_pin`] refuses).
    Prompt,
}

/// Read the PIN from its source. The prompt is the CLI's to resolve.
pub fn resolve_pin(source: &PinSource) -> Result<Zeroizing<String>, Pkcs11Error> {
    match source {
        PinSource::Env(var) => {
            let origin = || PinOrigin::Env(var.clone());
            let pin = match std::env::var(var) {
                Ok(value) => Zeroizing::new(value),
                Err(std::env::VarError::NotPresent) => {
                    return Err(Pkcs11Error::PinEnvMissing { origin: origin() });
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Pkcs11Error::PinNotUnicode { origin: origin() });
                }
            };
            non_empty(pin, origin)
        }
        PinSource::File(path) => {
            let origin = || PinOrigin::File(path.clone());
            let text = match std::fs::read(path) {
                Ok(bytes) => Zeroizing::new(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Pkcs11Error::PinFileMissing { origin: origin() });
                }
                Err(source) => {
                    return Err(Pkcs11Error::PinFileUnreadable {
                        origin: origin(),
                        source,
                    });
                }
            };
            warn_if_readable_by_others(path);
            let Ok(text) = std::str::from_utf8(&text) else {
                return Err(Pkcs11Error::PinNotUnicode { origin: origin() });
            };
            let line = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(text);
            non_empty(Zeroizing::new(line.to_string()), origin)
        }
        PinSource::Prompt => Err(Pkcs11Error::PinNeedsPrompt),
    }
}

fn non_empty(
    pin: Zeroizing<String>,
    origin: impl FnOnce() -> PinOrigin,
) -> Result<Zeroizing<String>, Pkcs11Error> {
    if pin.is_empty() {
        return Err(Pkcs11Error::PinEmpty { origin: origin() });
    }
    Ok(pin)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        warn!(
            "PIN file {} is readable by others (mode {:o}); make it 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_sources_parse_from_their_three_spellings() {
        let env: PinSource = serde_json::from_str(r#"{"env": "SA_PIN"}"#).unwrap();
        assert_eq!(env, PinSource::Env("SA_PIN".into()));
        let file: PinSource = serde_json::from_str(r#"{"file": "/run/pin"}"#).unwrap();
        assert_eq!(file, PinSource::File("/run/pin".into()));
        let prompt: PinSource = serde_json::from_str(r#""prompt""#).unwrap();
        assert_eq!(prompt, PinSource::Prompt);
        assert!(serde_json::from_str::<PinSource>(r#"{"argv": "1234"}"#).is_err());
        assert!(serde_json::from_str::<PinSource>(r#"{"env": "A", "file": "b"}"#).is_err());
    }

    #[test]
    fn node_config_refuses_unknown_fields() {
        let ok: Pkcs11NodeConfig =
            serde_json::from_str(r#"{"module": "/m.so", "token": "sa", "pin": {"env": "SA_PIN"}}"#)
                .unwrap();
        assert_eq!(ok.expect_token_serial, None);
        let err = serde_json::from_str::<Pkcs11NodeConfig>(
            r#"{"module": "/m.so", "token": "sa", "pin": {"env": "SA_PIN"}, "pin_value": "1234"}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `pin_value`"),
            "{err}"
        );
    }

    #[test]
    fn a_pin_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        for (content, pin) in [("12 34\n", "12 34"), ("1234\r\n", "1234")] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(
                resolve_pin(&PinSource::File(path.clone()))
                    .unwrap()
                    .as_str(),
                pin
            );
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            resolve_pin(&PinSource::File(path.clone())),
            Err(Pkcs11Error::PinEmpty { .. })
        ));
        let missing = dir.path().join("absent");
        let err = resolve_pin(&PinSource::File(missing)).unwrap_err();
        assert!(matches!(err, Pkcs11Error::PinFileMissing { .. }));
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn the_prompt_is_left_to_the_cli() {
        assert!(matches!(
            resolve_pin(&PinSource::Prompt),
            Err(Pkcs11Error::PinNeedsPrompt)
        ));
    }
}
