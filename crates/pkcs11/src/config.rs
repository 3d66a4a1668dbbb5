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
//! or, with a `pkcs11:` URI (RFC 7512; `mkclone devices` prints each token's):
//!
//! ```toml
//! [nodes.source]
//! backend = "pkcs11"
//! token = "pkcs11:token=source;serial=d8e157d09f375158?module-path=/usr/lib/softhsm/libsofthsm2.so"
//! pin = { env = "SOURCE_PIN" }
//! ```
//!
//! A PIN is never taken from the command line, nor from the configuration itself. The
//! security officer's PIN (`so_pin`, the same three forms) is read only when the source
//! exports its master key to split it (phase 3c): the SO makes the one key the master keys
//! may be wrapped with.
//!
//! What each URI attribute means here ([`Pkcs11NodeConfig::from_fields`]):
//! - `token` (required: mkclone finds tokens by label, since slot numbers change), `serial`
//!   (as `expect_token_serial`; an empty `serial=` asks for a token with a blank serial
//!   number), `manufacturer`, `model`, `slot-id`, `slot-description`, `slot-manufacturer`,
//!   `library-manufacturer`, `library-description`, `library-version`: each one given must
//!   match, or the token is not the one meant.
//! - `module-path` (absolute): the module, as `module` (in `token`'s URI or in a `module`
//!   URI; given twice, both must agree).
//! - `pin-source=file:/path` (or an absolute path): the PIN file, as `pin = { file = … }`
//!   (never both). Other forms (`|program`, `env:`) are refused: use `pin`.
//! - Refused, each with the reason: `pin-value` (a PIN written into a configuration file that
//!   is carried between servers and shown in logs), `module-name` (mkclone loads a library
//!   only by its path, so the configuration says exactly which code runs), `object`, `type`,
//!   `id` (they name an object in a token; mkclone names its own), and vendor-specific
//!   attributes (mkclone would not know what they ask for).

use std::io;
use std::path::{Path, PathBuf};

use log::warn;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{PinOrigin, Pkcs11Error};
use crate::uri::{Pkcs11Uri, TokenMatch, UriError};

/// One PKCS#11 node: a token, found by label in a module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11NodeConfig {
    /// Path of the PKCS#11 shared library.
    pub module: PathBuf,
    /// The token's label (slot numbers change; labels do not).
    pub token: String,
    /// When set, the token found by label must have this serial number (or, for a token
    /// with a blank serial, its derived identity: `mkclone devices` shows it).
    #[serde(default)]
    pub expect_token_serial: Option<String>,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Where the security officer's PIN comes from, on a node that exports its master key
    /// (the source); read only for that export.
    #[serde(default)]
    pub so_pin: Option<PinSource>,
    /// Further attributes the token, its slot and its module must have (from a URI).
    #[serde(default, skip_serializing_if = "TokenMatch::is_empty")]
    pub token_match: TokenMatch,
}

/// A configuration field's error.
fn field_error(field: &'static str, detail: impl Into<String>) -> Pkcs11Error {
    Pkcs11Error::Config {
        field,
        detail: detail.into(),
    }
}

fn uri_error(field: &'static str, e: UriError) -> Pkcs11Error {
    field_error(field, format!("this pkcs11: URI is not valid: {e}"))
}

/// Set `slot` to `value`, or check that it already holds the same: a value given twice
/// (a field and a URI attribute) must agree.
fn agree<T: PartialEq + std::fmt::Debug>(
    field: &'static str,
    what: &str,
    slot: &mut Option<T>,
    value: Option<T>,
) -> Result<(), Pkcs11Error> {
    match (slot.as_ref(), value) {
        (_, None) => Ok(()),
        (None, Some(v)) => {
            *slot = Some(v);
            Ok(())
        }
        (Some(a), Some(b)) if *a == b => Ok(()),
        (Some(a), Some(b)) => Err(field_error(
            field,
            format!("{what} is given twice, as {a:?} and as {b:?}: keep one"),
        )),
    }
}

/// A URI's `module-path`: an absolute path.
fn module_path(field: &'static str, path: String) -> Result<PathBuf, Pkcs11Error> {
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(field_error(
            field,
            format!(
                "module-path {} is not an absolute path: name the module's library by its full path",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// A URI's `pin-source` as a [`PinSource`]: `file:/path`, `file:///path` or `/path`.
fn pin_source(source: &str) -> Result<PinSource, Pkcs11Error> {
    let field = "token";
    let path = source
        .strip_prefix("file://")
        .filter(|rest| rest.starts_with('/'))
        .or_else(|| source.strip_prefix("file:"))
        .unwrap_or(source);
    if path.starts_with('/') && !path.starts_with("//") {
        return Ok(PinSource::File(PathBuf::from(path)));
    }
    let why = if source.starts_with('|') {
        "mkclone never runs a program to get a PIN"
    } else {
        "mkclone reads a pin-source only as a file (file:/absolute/path)"
    };
    Err(field_error(
        field,
        format!(
            "pin-source is refused: {why}; use pin = {{ env = \"VAR\" }}, {{ file = \"path\" }} or \"prompt\""
        ),
    ))
}

/// Refuse the URI attributes mkclone does not take (see the module documentation).
fn refuse_unused(field: &'static str, uri: &Pkcs11Uri) -> Result<(), Pkcs11Error> {
    if uri.pin_value_given {
        return Err(field_error(
            field,
            "pin-value is refused: a PIN does not belong in a configuration file, which is \
             carried between servers and shown in logs; remove it from the URI, change that \
             PIN if the file was shared, and use pin = { env = \"VAR\" }, { file = \"path\" } \
             (mode 0600) or \"prompt\"",
        ));
    }
    if uri.module_name.is_some() {
        return Err(field_error(
            field,
            "module-name is refused: mkclone loads a PKCS#11 library only by its path, so the \
             configuration says exactly which code runs; use module-path=/path/to/library.so",
        ));
    }
    for (given, name) in [
        (uri.object.is_some(), "object"),
        (uri.object_type.is_some(), "type"),
        (uri.id.is_some(), "id"),
    ] {
        if given {
            return Err(field_error(
                field,
                format!(
                    "attribute {name:?} names an object in a token; a node names a whole token \
                     (mkclone names its own objects): remove it"
                ),
            ));
        }
    }
    if let Some(name) = uri.vendor.first() {
        return Err(field_error(
            field,
            format!(
                "vendor-specific attribute {name:?} is refused: mkclone would not know what it \
                 asks for (RFC 7512 §2.5 has it match no token); remove it"
            ),
        ));
    }
    Ok(())
}

/// The library attributes of a URI in `field`, into `token_match`.
fn library_match(
    field: &'static str,
    uri: &Pkcs11Uri,
    token_match: &mut TokenMatch,
) -> Result<(), Pkcs11Error> {
    agree(
        field,
        "library-manufacturer",
        &mut token_match.library_manufacturer,
        uri.token_match.library_manufacturer.clone(),
    )?;
    agree(
        field,
        "library-description",
        &mut token_match.library_description,
        uri.token_match.library_description.clone(),
    )?;
    agree(
        field,
        "library-version",
        &mut token_match.library_version,
        uri.token_match.library_version,
    )
}

impl Pkcs11NodeConfig {
    /// A node's configuration from its fields as written: `module` (a path, or a
    /// `pkcs11:` URI with `module-path`), `token` (a label, or a `pkcs11:` URI),
    /// `expect_token_serial` and `pin` (either may instead come from `token`'s URI), and
    /// `so_pin`. Every error names the field and, for a URI, the attribute (the module
    /// documentation lists what each attribute means here).
    pub fn from_fields(
        module: Option<&str>,
        token: &str,
        expect_token_serial: Option<String>,
        pin: Option<PinSource>,
        so_pin: Option<PinSource>,
    ) -> Result<Self, Pkcs11Error> {
        let mut module_path_value: Option<PathBuf> = None;
        let mut token_match = TokenMatch::default();
        let mut expect = expect_token_serial;
        let mut pin = pin;
        if let Some(module) = module {
            if Pkcs11Uri::is_uri(module) {
                let field = "module";
                let uri = Pkcs11Uri::parse(module).map_err(|e| uri_error(field, e))?;
                refuse_unused(field, &uri)?;
                let token_attributes = [
                    (uri.token.is_some(), "token"),
                    (uri.serial.is_some(), "serial"),
                    (uri.token_match.manufacturer.is_some(), "manufacturer"),
                    (uri.token_match.model.is_some(), "model"),
                    (uri.token_match.slot_id.is_some(), "slot-id"),
                    (
                        uri.token_match.slot_description.is_some(),
                        "slot-description",
                    ),
                    (
                        uri.token_match.slot_manufacturer.is_some(),
                        "slot-manufacturer",
                    ),
                    (uri.pin_source.is_some(), "pin-source"),
                ];
                if let Some((_, name)) = token_attributes.iter().find(|(given, _)| *given) {
                    return Err(field_error(
                        field,
                        format!(
                            "attribute {name:?} describes the token: put it in `token` (a \
                             pkcs11: URI there may carry the module too)"
                        ),
                    ));
                }
                let path = uri.module_path.clone().ok_or_else(|| {
                    field_error(
                        field,
                        "this pkcs11: URI has no module-path: write \
                         module = \"pkcs11:?module-path=/path/to/library.so\", or the path alone",
                    )
                })?;
                module_path_value = Some(module_path(field, path)?);
                library_match(field, &uri, &mut token_match)?;
            } else if module.trim().is_empty() {
                return Err(field_error("module", "the module path may not be empty"));
            } else {
                module_path_value = Some(PathBuf::from(module));
            }
        }

        let label = if Pkcs11Uri::is_uri(token) {
            let field = "token";
            let uri = Pkcs11Uri::parse(token).map_err(|e| uri_error(field, e))?;
            refuse_unused(field, &uri)?;
            let label = uri.token.clone().ok_or_else(|| {
                field_error(
                    field,
                    "this pkcs11: URI has no token attribute: mkclone finds a token by its label \
                     (token=…), which slot numbers cannot replace; copy the URI `mkclone \
                     devices` prints",
                )
            })?;
            if let Some(path) = uri.module_path.clone() {
                agree(
                    field,
                    "the module (`module` and module-path)",
                    &mut module_path_value,
                    Some(module_path(field, path)?),
                )?;
            }
            agree(
                field,
                "the serial number (`expect_token_serial` and serial)",
                &mut expect,
                uri.serial.clone(),
            )?;
            if let Some(source) = &uri.pin_source {
                if pin.is_some() {
                    return Err(field_error(
                        field,
                        "the PIN's source is given twice (`pin` and pin-source): keep one",
                    ));
                }
                pin = Some(pin_source(source)?);
            }
            // The token's attributes come from here only (the module's URI may not carry
            // them); the library's may come from both, and must then agree.
            library_match(field, &uri, &mut token_match)?;
            token_match = TokenMatch {
                library_manufacturer: token_match.library_manufacturer,
                library_description: token_match.library_description,
                library_version: token_match.library_version,
                ..uri.token_match.clone()
            };
            label
        } else {
            token.to_string()
        };
        if label.trim().is_empty() {
            return Err(field_error("token", "the token label may not be empty"));
        }
        let module = module_path_value.ok_or_else(|| {
            field_error(
                "module",
                "missing: give the PKCS#11 library's path (module = \"/usr/lib/…/lib….so\"), \
                 or module-path in the token's pkcs11: URI",
            )
        })?;
        let pin = pin.ok_or_else(|| {
            field_error(
                "pin",
                "missing: pin = { env = \"VAR\" }, { file = \"path\" } or \"prompt\" (or \
                 pin-source=file:/path in the token's pkcs11: URI)",
            )
        })?;
        Ok(Self {
            module,
            token: label,
            expect_token_serial: expect,
            pin,
            so_pin,
            token_match,
        })
    }
}

/// Where a node's user PIN comes from: `{ env = "VAR" }`, `{ file = "path" }` or `"prompt"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinSource {
    /// An environment variable holds the PIN.
    Env(String),
    /// A file holds the PIN (one trailing newline is ignored); keep it mode 0600.
    File(PathBuf),
    /// The command line prompts for it (the CLI resolves this; [`resolve_pin`] refuses).
    Prompt,
}

/// What a `pin` or `so_pin` that is none of its three forms is told. It never shows the
/// value: the likeliest mistake is the PIN itself written there (`pin = "482913"`), and
/// the message goes to the terminal, the `--json` error document and any log. (A parser
/// that quotes the line at fault must not, for this message.)
pub const PIN_SOURCE_FORMS: &str = "must be { env = \"VAR\" }, { file = \"path\" } or \"prompt\" \
    (the value written there is not shown: if it is a PIN, remove it from the file and change the PIN)";

/// Written by hand rather than derived: serde's own messages quote the value they refuse
/// ("unknown variant `482913`", "invalid type: integer `482913`"), which here may be a PIN.
impl<'de> Deserialize<'de> for PinSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, Visitor};
        struct Forms;
        impl<'de> Visitor<'de> for Forms {
            type Value = PinSource;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(PIN_SOURCE_FORMS)
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<PinSource, E> {
                match v {
                    "prompt" => Ok(PinSource::Prompt),
                    _ => Err(E::custom(PIN_SOURCE_FORMS)),
                }
            }
            fn visit_bytes<E: Error>(self, _: &[u8]) -> Result<PinSource, E> {
                Err(E::custom(PIN_SOURCE_FORMS))
            }
            fn visit_char<E: Error>(self, _: char) -> Result<PinSource, E> {
                Err(E::custom(PIN_SOURCE_FORMS))
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<PinSource, E> {
                Err(E::custom(PIN_SOURCE_FORMS))
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<PinSource, E> {
                Err(E::custom(PIN_SOURCE_FORMS))
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<PinSource, E> {
                Err(E::custom(PIN_SOURCE_FORMS))
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<PinSource, E> {
                Err(E::custom(PIN_SOURCE_FORMS))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PinSource, A::Error> {
                let forms = || A::Error::custom(PIN_SOURCE_FORMS);
                let key: String = map.next_key()?.ok_or_else(forms)?;
                let source = match key.as_str() {
                    "env" => PinSource::Env(map.next_value().map_err(|_| forms())?),
                    "file" => {
                        PinSource::File(map.next_value::<String>().map_err(|_| forms())?.into())
                    }
                    _ => return Err(forms()),
                };
                // One form only.
                if map.next_key::<String>().map_err(|_| forms())?.is_some() {
                    return Err(forms());
                }
                Ok(source)
            }
        }
        deserializer.deserialize_any(Forms)
    }
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
                Err(std::env::VarError::NotUnicode(value)) => {
                    // The copy is the PIN all the same: wiped, not just dropped.
                    wipe_os_string(value);
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

fn wipe_os_string(value: std::ffi::OsString) {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        drop(Zeroizing::new(value.into_vec()));
    }
    #[cfg(not(unix))]
    drop(value);
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
    use crate::uri::LibraryVersion;

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

    /// A PIN written where its source belongs is refused without being shown, whatever
    /// its form (serde's own messages quote the refused value).
    #[test]
    fn a_pin_written_in_place_of_its_source_is_never_shown() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Node {
            pin: PinSource,
        }
        for text in [
            r#"{"pin": "482913"}"#,
            r#"{"pin": 482913}"#,
            r#"{"pin": -482913}"#,
            r#"{"pin": 482913.5}"#,
            r#"{"pin": {"env": 482913}}"#,
            r#"{"pin": {"file": 482913}}"#,
            r#"{"pin": {"482913": "x"}}"#,
            r#"{"pin": {"env": "A", "pin": "482913"}}"#,
            r#"{"pin": [482913]}"#,
        ] {
            let err = serde_json::from_str::<Node>(text).unwrap_err().to_string();
            assert!(
                err.contains("must be { env") && !err.contains("482913"),
                "{text}: {err}"
            );
        }
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

    fn fields(
        module: Option<&str>,
        token: &str,
        serial: Option<&str>,
        pin: Option<PinSource>,
    ) -> Result<Pkcs11NodeConfig, Pkcs11Error> {
        Pkcs11NodeConfig::from_fields(module, token, serial.map(String::from), pin, None)
    }

    fn env() -> Option<PinSource> {
        Some(PinSource::Env("PIN".into()))
    }

    #[test]
    fn plain_fields_are_taken_as_they_are() {
        let c = fields(Some("/m.so"), "source", Some("0001"), env()).unwrap();
        assert_eq!(c.module, PathBuf::from("/m.so"));
        assert_eq!(c.token, "source");
        assert_eq!(c.expect_token_serial.as_deref(), Some("0001"));
        assert!(c.token_match.is_empty());
        for (module, token, pin, field) in [
            (None, "source", env(), "module"),
            (Some(" "), "source", env(), "module"),
            (Some("/m.so"), " ", env(), "token"),
            (Some("/m.so"), "source", None, "pin"),
        ] {
            let err = fields(module, token, None, pin).unwrap_err();
            assert!(
                matches!(&err, Pkcs11Error::Config { field: f, .. } if *f == field),
                "{err}"
            );
            assert!(err.to_string().starts_with(&format!("`{field}`")), "{err}");
        }
    }

    #[test]
    fn a_token_uri_gives_label_serial_module_pin_and_what_must_match() {
        let c = fields(
            None,
            "pkcs11:token=The%20Source;serial=d8e157d09f375158;manufacturer=SoftHSM%20project;\
             model=SoftHSM%20v2;slot-id=7;slot-description=A%20slot;library-version=2.6\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/keys/src.pin",
            None,
            None,
        )
        .unwrap();
        assert_eq!(c.token, "The Source");
        assert_eq!(c.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(c.expect_token_serial.as_deref(), Some("d8e157d09f375158"));
        assert_eq!(c.pin, PinSource::File("/run/keys/src.pin".into()));
        assert_eq!(
            c.token_match,
            TokenMatch {
                manufacturer: Some("SoftHSM project".into()),
                model: Some("SoftHSM v2".into()),
                slot_id: Some(7),
                slot_description: Some("A slot".into()),
                library_version: Some(LibraryVersion { major: 2, minor: 6 }),
                ..TokenMatch::default()
            }
        );
        // The module as a URI, the token as a label.
        let c = fields(
            Some("pkcs11:library-manufacturer=SoftHSM?module-path=/m.so"),
            "source",
            None,
            env(),
        )
        .unwrap();
        assert_eq!(c.module, PathBuf::from("/m.so"));
        assert_eq!(
            c.token_match.library_manufacturer.as_deref(),
            Some("SoftHSM")
        );
        // Given twice and agreeing: fine.
        let c = fields(
            Some("/m.so"),
            "pkcs11:token=src;serial=0001?module-path=/m.so",
            Some("0001"),
            env(),
        )
        .unwrap();
        assert_eq!(c.expect_token_serial.as_deref(), Some("0001"));
        // pin-source spellings.
        for source in ["file:/p", "file:///p", "/p"] {
            let c = fields(
                Some("/m.so"),
                &format!("pkcs11:token=src?pin-source={source}"),
                None,
                None,
            )
            .unwrap();
            assert_eq!(c.pin, PinSource::File("/p".into()), "{source}");
        }
    }

    #[test]
    fn refused_uri_attributes_say_why_and_never_echo_a_pin() {
        type Case<'a> = (
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            Option<PinSource>,
            &'a str,
        );
        let cases: [Case; 16] = [
            (
                Some("/m.so"),
                "pkcs11:token=src?pin-value=123456",
                None,
                env(),
                "pin-value is refused",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src?module-name=softhsm2",
                None,
                env(),
                "module-name is refused",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src;object=key",
                None,
                env(),
                "\"object\" names an object",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src;type=private",
                None,
                env(),
                "\"type\" names an object",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src;id=%01",
                None,
                env(),
                "\"id\" names an object",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src;x-vendor=1",
                None,
                env(),
                "vendor-specific attribute \"x-vendor\"",
            ),
            (
                Some("/m.so"),
                "pkcs11:serial=0001",
                None,
                env(),
                "no token attribute",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src;serial=0002",
                Some("0001"),
                env(),
                "serial number",
            ),
            (
                Some("/a.so"),
                "pkcs11:token=src?module-path=/b.so",
                None,
                env(),
                "the module",
            ),
            (
                None,
                "pkcs11:token=src?module-path=lib.so",
                None,
                env(),
                "not an absolute path",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src?pin-source=file:/p",
                None,
                env(),
                "given twice",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src?pin-source=|/bin/getpin",
                None,
                None,
                "never runs a program",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src?pin-source=env:PIN",
                None,
                None,
                "only as a file",
            ),
            (
                Some("pkcs11:token=src?module-path=/m.so"),
                "src",
                None,
                env(),
                "put it in `token`",
            ),
            (
                Some("pkcs11:library-version=1"),
                "src",
                None,
                env(),
                "no module-path",
            ),
            (
                Some("/m.so"),
                "pkcs11:token=src;token=other",
                None,
                env(),
                "appears twice",
            ),
        ];
        for (module, token, serial, pin, says) in cases {
            let err = fields(module, token, serial, pin).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(says), "{token}: {msg}");
            assert!(!msg.contains("123456"), "{msg}");
            assert!(matches!(err, Pkcs11Error::Config { .. }), "{err:?}");
        }
    }
}
