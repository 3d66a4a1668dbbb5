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
            let text = match read_pin_file(path) {
                Ok(bytes) => bytes,
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

/// The longest PIN file read, newline included (PKCS#11 PINs are far shorter).
const MAX_PIN_FILE: usize = 1024;

/// The PIN file's bytes, in zeroizing memory. Only a regular file (symbolic links
/// followed) of at most [`MAX_PIN_FILE`] bytes is read: a FIFO planted in its place would
/// keep mkclone waiting for a writer (it is opened without waiting and refused), a device
/// or a huge file would never end.
fn read_pin_file(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(
            "it is not a regular file (a FIFO, a device or a directory): `file` must name a file \
             holding the PIN",
        ));
    }
    warn_if_others_can_reach(path, &meta);
    let mut buffer = Zeroizing::new(vec![0u8; MAX_PIN_FILE]);
    let mut len = 0;
    loop {
        let Some(rest) = buffer.get_mut(len..).filter(|r| !r.is_empty()) else {
            return Err(io::Error::other(format!(
                "it is longer than {MAX_PIN_FILE} bytes, which no PIN is: is it the right file?"
            )));
        };
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buffer.truncate(len);
    Ok(buffer)
}

#[cfg(unix)]
fn warn_if_others_can_reach(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        warn!(
            "PIN file {} can be read{} by others (mode {:o}); make it 0600",
            path.display(),
            if mode & 0o022 != 0 { " or changed" } else { "" },
            mode & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_reach(_path: &Path, _meta: &std::fs::Metadata) {}

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

    /// `resolve_pin(File(path))` in a thread: its answer, or `None` if it does not come
    /// within a few seconds (a read that waits on a writer, or never ends).
    fn resolve_in_time(path: &Path) -> Option<Result<Zeroizing<String>, Pkcs11Error>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let source = PinSource::File(path.to_path_buf());
        std::thread::spawn(move || {
            let _ = tx.send(resolve_pin(&source));
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).ok()
    }

    #[test]
    fn a_pin_file_planted_as_a_fifo_or_a_huge_file_is_refused_at_once() {
        // Someone who can write where the PIN file lives puts a FIFO there (mkclone would
        // wait for a writer, holding the token's lock) or a file that is not a PIN.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.pin");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo (coreutils)");
        assert!(made.success());
        match resolve_in_time(&fifo) {
            Some(Err(e @ Pkcs11Error::PinFileUnreadable { .. })) => {
                assert!(e.to_string().contains("not a regular file"), "{e}")
            }
            Some(other) => panic!("a FIFO as the PIN file: {other:?}"),
            None => panic!("reading a FIFO as the PIN file waited for a writer"),
        }
        let huge = dir.path().join("huge.pin");
        std::fs::write(&huge, "1".repeat(64 * 1024)).unwrap();
        match resolve_in_time(&huge) {
            Some(Err(e @ Pkcs11Error::PinFileUnreadable { .. })) => {
                let text = e.to_string();
                assert!(text.contains("longer than"), "{text}");
                assert!(!text.contains("1111"), "no PIN in the message: {text}");
            }
            other => panic!("a 64 KiB PIN file: {:?}", other.map(|r| r.map(|p| p.len()))),
        }
    }

    #[test]
    fn the_prompt_is_left_to_the_cli() {
        assert!(matches!(
            resolve_pin(&PinSource::Prompt),
            Err(Pkcs11Error::PinNeedsPrompt)
        ));
    }
}
