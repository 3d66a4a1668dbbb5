//! Versioned, canonical, digest-protected ceremony files.
//!
//! Every ceremony file except the journal is one JSON document, the *envelope*:
//!
//! ```text
//! {"format":"<name>","version":<u32>,"ceremony":"<id>","rehearsal":<bool>,"body":<T>,"digest":"sha256:<hex>"}\n
//! ```
//!
//! **Canonical bytes.** The file is exactly the compact `serde_json` encoding of those six
//! members, in that order, with the body encoded by its `Serialize` implementation (struct
//! fields in declaration order), followed by one `\n`. No other whitespace, no BOM, the
//! escapes serde_json writes and no others. [`decode`] re-encodes what it decoded
//! and compares byte for byte: any changed byte is refused, never "harmlessly" re-read.
//!
//! **Digest.** `digest` is `"sha256:"` followed by the 64 lowercase hex digits of SHA-256
//! over the compact encoding of the first five members, i.e. over
//! `{"format":…,"version":…,"ceremony":…,"rehearsal":…,"body":…}` (no newline). These bytes
//! are the file's bytes up to, not including, `,"digest":`, followed by `}`. The `format`,
//! `version`, `ceremony` and `rehearsal` are thus covered: a rehearsal file keeps saying so.
//!
//! **Body types** must encode deterministically, one byte string per value: use `BTreeMap`
//! (never `HashMap`, whose order varies), no floating-point numbers, and no
//! `serde_json::Value` objects unless their keys are sorted. [`encode`] checks
//! that the body re-encodes identically after a decode and refuses it otherwise
//! ([`FileError::Encode`]). Unknown envelope members are refused; unknown body fields make
//! the file non-canonical (re-encoding drops them) and are refused too.
//!
//! **Copies.** A file's shares leave no copy in freed memory on the way: its JSON is built
//! in buffers that wipe what they outgrow (`mkclone_durable::WipingBuffer`), read into one
//! sized once ([`read_bytes`]), [`peek`] skips the body unkept, and the hex text and the
//! share types wipe themselves (crates/ceremony/tests/freed_memory.rs watches it). One copy
//! is out of reach: a string written with escapes (which no canonical file has) is unescaped
//! by serde_json into a scratch buffer it frees as it is.
//!
//! **Versions.** `version` ≥ 1. A reader states the highest version it understands; a newer
//! file is refused ("upgrade mkclone"). To read several versions with different body types,
//! [`peek`] the header first and decode with the matching type.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::FileError;
use crate::durable::{self, Sensitivity};
use crate::error::io_error;

/// Prefix of the `digest` member.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The header of an envelope, as [`peek`] reads it (unverified) or as a [`Decoded`] file
/// carried it (verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub ceremony: String,
    pub rehearsal: bool,
}

/// A verified file: canonical, digest matching, format/version/ceremony as required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<T> {
    pub format: String,
    pub version: u32,
    pub ceremony: String,
    pub rehearsal: bool,
    /// The `digest` member as written (`sha256:<hex>`): identifies the file's contents, e.g.
    /// in a journal record or the report.
    pub digest: String,
    pub body: T,
}

impl<T> Decoded<T> {
    /// Refuse ([`FileError::RehearsalMismatch`]) unless the file's rehearsal mark is
    /// `rehearsal`. `path` is for the message.
    pub fn require_rehearsal(&self, path: &Path, rehearsal: bool) -> Result<(), FileError> {
        if self.rehearsal == rehearsal {
            Ok(())
        } else {
            Err(FileError::RehearsalMismatch {
                path: path.into(),
                file_rehearsal: self.rehearsal,
            })
        }
    }

    /// The header of the file.
    pub fn header(&self) -> Header {
        Header {
            format: self.format.clone(),
            version: self.version,
            ceremony: self.ceremony.clone(),
            rehearsal: self.rehearsal,
        }
    }
}

/// The digest input: the first five members, in file order.
#[derive(Serialize)]
struct Signed<'a, T> {
    format: &'a str,
    version: u32,
    ceremony: &'a str,
    rehearsal: bool,
    body: &'a T,
}

/// The whole document as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<T> {
    format: String,
    version: u32,
    ceremony: String,
    rehearsal: bool,
    body: T,
    digest: String,
}

/// The canonical bytes of an envelope (see the module documentation). Fails only when
/// `version` is 0 or the body does not encode deterministically (a bug in its type).
///
/// ```
/// # use mkclone_ceremony::envelope;
/// # use std::path::Path;
/// let bytes = envelope::encode("mkclone-example", 1, "C1", false, &vec![1u8, 2]).unwrap();
/// let d = envelope::decode::<Vec<u8>>(Path::new("example"), &bytes, "mkclone-example", 1, Some("C1")).unwrap();
/// assert_eq!(d.body, [1, 2]);
/// assert!(bytes.starts_with(br#"{"format":"mkclone-example","version":1,"ceremony":"C1","rehearsal":false,"body":[1,2],"digest":"sha256:"#));
/// ```
pub fn encode<T: Serialize + DeserializeOwned>(
    format: &str,
    version: u32,
    ceremony: &str,
    rehearsal: bool,
    body: &T,
) -> Result<Vec<u8>, FileError> {
    let encode_error = |detail: String| FileError::Encode {
        what: format!("a {format} file"),
        detail,
    };
    if version == 0 {
        return Err(encode_error("version 0 is reserved".into()));
    }
    // The body must survive a decode unchanged, or the file could never be read back.
    let first = json_of(body, 4096).map_err(encode_error)?;
    let back: T = serde_json::from_slice(&first)
        .map_err(|e| encode_error(format!("the encoded body does not decode again: {e}")))?;
    let second = json_of(&back, first.len()).map_err(encode_error)?;
    if *first != *second {
        return Err(encode_error(
            "the body does not encode to the same bytes twice".into(),
        ));
    }
    encode_unchecked(format, version, ceremony, rehearsal, body, first.len())
        .map(|(bytes, _)| bytes)
        .map_err(encode_error)
}

/// Canonical bytes and digest, without the determinism check.
fn encode_unchecked<T: Serialize>(
    format: &str,
    version: u32,
    ceremony: &str,
    rehearsal: bool,
    body: &T,
    body_len: usize,
) -> Result<(Vec<u8>, String), String> {
    let signed = signed_bytes(format, version, ceremony, rehearsal, body, body_len + 256)?;
    let digest = digest_of(&signed);
    let bytes = assemble(&signed, &digest)?;
    Ok((bytes, digest))
}

/// The digest input: `{"format":…,"version":…,"ceremony":…,"rehearsal":…,"body":…}`.
/// `capacity`: the bytes expected (the buffer grows, wiping, past it).
fn signed_bytes<T: Serialize>(
    format: &str,
    version: u32,
    ceremony: &str,
    rehearsal: bool,
    body: &T,
    capacity: usize,
) -> Result<Zeroizing<Vec<u8>>, String> {
    json_of(
        &Signed {
            format,
            version,
            ceremony,
            rehearsal,
            body,
        },
        capacity,
    )
}

/// The compact JSON of `value`, built in a buffer of `capacity` bytes to begin with that
/// wipes the blocks it outgrows ([`mkclone_durable::WipingBuffer`]): a `Vec`'s own growth
/// would free copies of the shares a file holds.
fn json_of<T: Serialize + ?Sized>(
    value: &T,
    capacity: usize,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut out = mkclone_durable::WipingBuffer::with_capacity(capacity);
    serde_json::to_writer(&mut out, value).map_err(|e| e.to_string())?;
    Ok(out.into_bytes())
}

/// The file bytes: the digest input without its `}`, then `,"digest":"<digest>"}` and `\n`.
/// `digest` is written as a JSON string (escaped as serde_json does), so that a recorded
/// digest of any content re-assembles to the bytes it was read from.
fn assemble(signed: &[u8], digest: &str) -> Result<Vec<u8>, String> {
    let open = signed
        .strip_suffix(b"}")
        .ok_or_else(|| "the encoding does not end with }".to_owned())?;
    let digest = serde_json::to_vec(digest).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(signed.len() + digest.len() + 14);
    out.extend_from_slice(open);
    out.extend_from_slice(b",\"digest\":");
    out.extend_from_slice(&digest);
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Verify and decode the bytes of the file at `path` (used in messages only).
///
/// Refusals, in the order checked: [`FileError::Corrupt`] (not JSON, truncated, not an
/// envelope), [`FileError::WrongFormat`], [`FileError::InvalidVersion`] (0),
/// [`FileError::NewerVersion`] (above `max_version`), [`FileError::ForeignCeremony`]
/// (when `ceremony` is given), [`FileError::Corrupt`] (body not of type `T`),
/// [`FileError::NonCanonical`], [`FileError::DigestMismatch`].
pub fn decode<T: Serialize + DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    format: &str,
    max_version: u32,
    ceremony: Option<&str>,
) -> Result<Decoded<T>, FileError> {
    let header = peek(path, bytes)?;
    if header.format != format {
        return Err(FileError::WrongFormat {
            path: path.into(),
            expected: format.into(),
            found: header.format,
        });
    }
    if header.version == 0 {
        return Err(FileError::InvalidVersion {
            path: path.into(),
            format: header.format,
        });
    }
    if header.version > max_version {
        return Err(FileError::NewerVersion {
            path: path.into(),
            format: header.format,
            found: header.version,
            supported: max_version,
        });
    }
    if let Some(expected) = ceremony
        && header.ceremony != expected
    {
        return Err(FileError::ForeignCeremony {
            path: path.into(),
            found: header.ceremony,
            expected: expected.into(),
        });
    }
    let doc: Document<T> = serde_json::from_slice(bytes).map_err(|e| FileError::Corrupt {
        path: path.into(),
        detail: format!(
            "it does not have the layout of {format} version {}: {e}",
            header.version
        ),
    })?;
    // Re-encode what was read, with the digest as recorded: any byte that differs is a
    // non-canonical file; then the digest is checked against the canonical contents.
    let encode_error = |detail| FileError::Encode {
        what: path.display().to_string(),
        detail,
    };
    let signed = signed_bytes(
        &doc.format,
        doc.version,
        &doc.ceremony,
        doc.rehearsal,
        &doc.body,
        bytes.len(),
    )
    .map_err(encode_error)?;
    let canonical = Zeroizing::new(assemble(&signed, &doc.digest).map_err(encode_error)?);
    let computed = digest_of(&signed);
    if let Some(offset) = first_difference(&canonical, bytes) {
        return Err(FileError::NonCanonical {
            path: path.into(),
            offset,
        });
    }
    if computed != doc.digest {
        return Err(FileError::DigestMismatch {
            path: path.into(),
            recorded: doc.digest,
            computed,
        });
    }
    Ok(Decoded {
        format: doc.format,
        version: doc.version,
        ceremony: doc.ceremony,
        rehearsal: doc.rehearsal,
        digest: doc.digest,
        body: doc.body,
    })
}

/// Read and [`decode`] the file at `path`, a regular file opened without following a
/// link ([`durable::open_regular`]: a link, FIFO, device… is refused and never read).
pub fn read_file<T: Serialize + DeserializeOwned>(
    path: &Path,
    format: &str,
    max_version: u32,
    ceremony: Option<&str>,
) -> Result<Decoded<T>, FileError> {
    let bytes = read_bytes(path)?;
    decode(path, &bytes, format, max_version, ceremony)
}

/// The bytes of the ceremony file (or journal) at `path`, opened safely
/// ([`durable::open_regular`]: never through a link, never a FIFO or device) and read into
/// a buffer sized once, so that no copy of a share is left behind by a reallocation.
pub fn read_bytes(path: &Path) -> Result<Zeroizing<Vec<u8>>, FileError> {
    read_bytes_kept(path).map(|(bytes, _)| bytes)
}

/// [`read_bytes`], with the file the bytes were read from, still open.
pub fn read_bytes_kept(path: &Path) -> Result<(Zeroizing<Vec<u8>>, std::fs::File), FileError> {
    let file = durable::open_regular(path, durable::Access::Read)?;
    let bytes = read_all_capped(&file, path, "read the file")?;
    Ok((bytes, file))
}

/// The largest file [`read_all_at`] reads: the largest ceremony file, a 1 -> 15 journal,
/// is a few megabytes; a larger one (or one that keeps growing, or a sparse file claiming
/// terabytes) is not one mkclone wrote, and is refused before it is allocated.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// [`read_all_at`] of the open `file` at `path`: a file over [`MAX_FILE_BYTES`] is
/// [`FileError::TooLarge`], any other failure an I/O error while doing `action`. For every
/// reader of a ceremony file or journal that knows its path.
pub(crate) fn read_all_capped(
    file: &std::fs::File,
    path: &Path,
    action: &'static str,
) -> Result<Zeroizing<Vec<u8>>, FileError> {
    read_all_at(file).map_err(|e| match mkclone_durable::TooLarge::in_error(&e) {
        Some(refused) => FileError::TooLarge {
            path: path.into(),
            size: refused.size,
            limit: MAX_FILE_BYTES,
        },
        None => io_error(path, action)(e),
    })
}

/// Every byte of the open `file`, from its start whatever its offset, at most
/// [`MAX_FILE_BYTES`] (`mkclone_durable::read_all_capped`).
pub fn read_all_at(file: &std::fs::File) -> std::io::Result<Zeroizing<Vec<u8>>> {
    mkclone_durable::read_all_capped(file, MAX_FILE_BYTES)
}

/// How [`write_file`] puts a file in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// Replace `path` atomically ([`durable::write_atomic`]).
    Replace,
    /// Create `path`, which must not exist ([`durable::create_new_exclusive`]): for files
    /// never overwritten, such as share bundles.
    CreateNew,
}

/// [`encode`] the file `header` describes and put it at `path` as `put` says. Call it
/// holding the directory's [`DirLock`](crate::durable::DirLock).
pub fn write_file<T: Serialize + DeserializeOwned>(
    path: &Path,
    header: &Header,
    body: &T,
    sensitivity: Sensitivity,
    put: Put,
) -> Result<(), FileError> {
    let bytes = Zeroizing::new(encode(
        &header.format,
        header.version,
        &header.ceremony,
        header.rehearsal,
        body,
    )?);
    match put {
        Put::Replace => durable::write_atomic(path, &bytes, sensitivity),
        Put::CreateNew => durable::create_new_exclusive(path, &bytes, sensitivity),
    }
}

/// Read an envelope's header WITHOUT verifying the file (no digest, no canonical check): to
/// choose how to decode it (e.g. by version) or to name it in a message, never to trust it.
pub fn peek(path: &Path, bytes: &[u8]) -> Result<Header, FileError> {
    let corrupt = |detail: String| FileError::Corrupt {
        path: path.into(),
        detail,
    };
    if bytes.is_empty() {
        return Err(corrupt("the file is empty".into()));
    }
    let HeaderMembers(object) = serde_json::from_slice(bytes).map_err(|e| {
        corrupt(match e.classify() {
            serde_json::error::Category::Eof => {
                format!("truncated: it ends in the middle of the document ({e})")
            }
            // Only a document that is not an object is refused for its data here.
            serde_json::error::Category::Data => {
                "not a ceremony file: not a JSON object".to_owned()
            }
            _ => format!("not JSON: {e}"),
        })
    })?;
    let text = |name: &str| -> Result<String, FileError> {
        object
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(format!("not a ceremony file: no {name:?} text member")))
    };
    let format = text("format")?;
    let version = object
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("the version member is missing or not a whole number".into()))?;
    let version = u32::try_from(version)
        .map_err(|_| corrupt(format!("version {version} is out of range")))?;
    let ceremony = text("ceremony")?;
    let rehearsal = object
        .get("rehearsal")
        .and_then(serde_json::Value::as_bool)
        .ok_or_else(|| corrupt("the rehearsal member is missing or not true/false".into()))?;
    Ok(Header {
        format,
        version,
        ceremony,
        rehearsal,
    })
}

/// The members of a document [`peek`] looks at, the others (the body) checked as JSON
/// ([`WellFormed`]) and kept nowhere: a `serde_json::Value` of the whole file would copy
/// every share into a `String`, freed unwiped.
struct HeaderMembers(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for HeaderMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = HeaderMembers;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HeaderMembers, A::Error> {
                let mut members = serde_json::Map::new();
                while let Some(name) = map.next_key::<String>()? {
                    if ["format", "version", "ceremony", "rehearsal"].contains(&name.as_str()) {
                        members.insert(name, map.next_value()?);
                    } else {
                        map.next_value::<WellFormed>()?;
                    }
                }
                Ok(HeaderMembers(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// Any JSON value, checked as `serde_json::Value` would check it (strings valid UTF-8 and
/// their escapes whole, numbers in range, nesting within serde_json's limit) and kept
/// nowhere. `IgnoredAny` would skip a body without those checks, and a damaged body would
/// then be refused for its header before it is found corrupt.
struct WellFormed;

impl<'de> Deserialize<'de> for WellFormed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WellFormed)
    }
}

impl<'de> serde::de::Visitor<'de> for WellFormed {
    type Value = WellFormed;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<WellFormed, E> {
        Ok(WellFormed)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<WellFormed, A::Error> {
        while seq.next_element::<WellFormed>()?.is_some() {}
        Ok(WellFormed)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<WellFormed, A::Error> {
        while map.next_entry::<WellFormed, WellFormed>()?.is_some() {}
        Ok(WellFormed)
    }
}

fn digest_of(signed: &[u8]) -> String {
    format!(
        "{DIGEST_PREFIX}{}",
        hex::encode(crate::digest::sha256(signed))
    )
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use proptest::prelude::*;

    use super::*;
    use crate::durable::DurableError;
    use sha2::{Digest, Sha256};

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Body {
        name: String,
        count: u32,
        #[serde(with = "hex::serde")]
        blob: Vec<u8>,
        map: BTreeMap<String, u64>,
        note: Option<String>,
        inner: Inner,
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Inner {
        flag: bool,
        list: Vec<String>,
    }

    const FMT: &str = "mkclone-test-db";

    /// The error's message contains `text`.
    #[track_caller]
    fn says(err: &FileError, text: &str) {
        assert!(err.to_string().contains(text), "{err}");
    }

    fn body() -> Body {
        Body {
            name: "tärget \"1\"\n\\ alpha".into(),
            count: 7,
            blob: vec![0, 1, 0xfe, 0xff],
            map: [("b".to_owned(), 2), ("a".to_owned(), 1)].into(),
            note: None,
            inner: Inner {
                flag: true,
                list: vec!["x".into(), "".into(), "\u{1}".into()],
            },
        }
    }

    fn encoded() -> Vec<u8> {
        encode(FMT, 2, "C-1", true, &body()).unwrap()
    }

    fn dec(bytes: &[u8]) -> Result<Decoded<Body>, FileError> {
        decode::<Body>(Path::new("test.db"), bytes, FMT, 2, Some("C-1"))
    }

    fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
        let s = std::str::from_utf8(bytes).unwrap();
        assert!(s.contains(from), "{from} not in {s}");
        s.replacen(from, to, 1).into_bytes()
    }

    /// A file larger than any ceremony file (here a sparse one) is refused before a byte
    /// of it is allocated, with its path.
    #[test]
    fn a_file_larger_than_any_ceremony_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.db");
        let file = fs::File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        drop(file);
        let err = read_bytes(&path).unwrap_err();
        assert!(
            matches!(&err, FileError::TooLarge { path: p, size, .. } if *p == path && *size == MAX_FILE_BYTES + 1),
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains("larger than 64 MiB"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        // At the limit it is read.
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(MAX_FILE_BYTES)
            .unwrap();
        assert_eq!(read_bytes(&path).unwrap().len() as u64, MAX_FILE_BYTES);
    }

    #[test]
    fn round_trip() {
        let bytes = encoded();
        let d = dec(&bytes).unwrap();
        assert_eq!(d.body, body());
        assert_eq!(
            d.header(),
            Header {
                format: FMT.into(),
                version: 2,
                ceremony: "C-1".into(),
                rehearsal: true
            }
        );
        assert!(d.digest.starts_with("sha256:") && d.digest.len() == 7 + 64);
        // Older versions are read too, and the ceremony check is optional.
        let v1 = encode(FMT, 1, "C-9", false, &body()).unwrap();
        let d = decode::<Body>(Path::new("x"), &v1, FMT, 2, None).unwrap();
        assert_eq!(
            (d.version, d.ceremony.as_str(), d.rehearsal),
            (1, "C-9", false)
        );
        assert!(d.require_rehearsal(Path::new("x"), false).is_ok());
        assert!(matches!(
            d.require_rehearsal(Path::new("x"), true),
            Err(FileError::RehearsalMismatch {
                file_rehearsal: false,
                ..
            })
        ));
    }

    #[test]
    fn documented_layout_and_digest() {
        let bytes = encoded();
        let body_json = String::from_utf8(serde_json::to_vec(&body()).unwrap()).unwrap();
        let signed = format!(
            "{{\"format\":\"{FMT}\",\"version\":2,\"ceremony\":\"C-1\",\"rehearsal\":true,\"body\":{body_json}}}"
        );
        let digest = hex::encode(Sha256::digest(signed.as_bytes()));
        let expected = format!(
            "{},\"digest\":\"sha256:{digest}\"}}\n",
            &signed[..signed.len() - 1]
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
        // Map keys sorted; one trailing newline.
        assert!(expected.contains(r#""map":{"a":1,"b":2}"#));
    }

    #[test]
    fn encode_refuses_version_zero_and_unstable_bodies() {
        assert!(matches!(
            encode(FMT, 0, "C", false, &body()),
            Err(FileError::Encode { .. })
        ));
        // A HashMap's order differs between instances; with enough keys it shows.
        let map: HashMap<String, u32> = (0..64).map(|i| (format!("k{i}"), i)).collect();
        let err = encode(FMT, 1, "C", false, &map).unwrap_err();
        says(&err, "BTreeMap");
        // NaN does not survive JSON.
        assert!(encode(FMT, 1, "C", false, &f64::NAN).is_err());
    }

    #[test]
    fn corrupt_and_truncated() {
        let bytes = encoded();
        for bad in [
            &b""[..],
            b"not json",
            b"[1,2]",
            b"{}",
            b"{\"format\":\"mkclone-test-db\"}",
            &bytes[..bytes.len() / 2],
            &bytes[..bytes.len() - 3],
        ] {
            let err = dec(bad).unwrap_err();
            assert!(matches!(err, FileError::Corrupt { .. }), "{err}");
            says(&err, "test.db");
        }
        let err = dec(&bytes[..bytes.len() / 2]).unwrap_err();
        says(&err, "truncated");
    }

    /// A body that is not well-formed JSON is found corrupt first, whatever its header
    /// says: peek checks the body as it skips it (a lone surrogate, a number out of range,
    /// nesting past serde_json's limit, bytes that are not UTF-8 in a string).
    #[test]
    fn a_damaged_body_is_corrupt_before_its_header_is_judged() {
        let other = encode("mkclone-other", 9, "C-9", true, &body()).unwrap();
        let text = String::from_utf8(other).unwrap();
        let (head, _) = text.split_once("\"body\":").unwrap();
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for damaged in [
            r#""\ud800""#.to_owned(),
            "1e999".to_owned(),
            deep,
            r#"{"a":"\q"}"#.to_owned(),
        ] {
            let bytes = format!("{head}\"body\":{damaged},\"digest\":\"x\"}}\n");
            let err = dec(bytes.as_bytes()).unwrap_err();
            assert!(
                matches!(err, FileError::Corrupt { .. }),
                "{damaged:.20}: {err}"
            );
        }
        let mut bytes = format!("{head}\"body\":\"ab\",\"digest\":\"x\"}}\n").into_bytes();
        let at = bytes.windows(4).position(|w| w == b"\"ab\"").unwrap() + 1;
        bytes[at] = 0xFF;
        let err = dec(&bytes).unwrap_err();
        assert!(matches!(err, FileError::Corrupt { .. }), "{err}");
        // And a body that is well-formed is skipped: the header is judged.
        let fine = format!(
            "{head}\"body\":[{{\"a\":[1,-2,3.5,null,true,\"\\u00e9\"]}}],\"digest\":\"x\"}}\n"
        );
        assert!(matches!(
            dec(fine.as_bytes()),
            Err(FileError::WrongFormat { .. })
        ));
    }

    #[test]
    fn wrong_format() {
        let bytes = encode("mkclone-other", 1, "C-1", true, &body()).unwrap();
        let err = dec(&bytes).unwrap_err();
        assert!(
            matches!(&err, FileError::WrongFormat { found, .. } if found == "mkclone-other"),
            "{err}"
        );
    }

    #[test]
    fn newer_and_zero_version() {
        let bytes = encode(FMT, 3, "C-1", true, &body()).unwrap();
        let err = dec(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NewerVersion {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err}"
        );
        says(&err, "newer mkclone");
        let zero = replace(&encoded(), "\"version\":2", "\"version\":0");
        assert!(matches!(dec(&zero), Err(FileError::InvalidVersion { .. })));
        let huge = replace(&encoded(), "\"version\":2", "\"version\":4294967296");
        assert!(matches!(dec(&huge), Err(FileError::Corrupt { .. })));
        let float = replace(&encoded(), "\"version\":2", "\"version\":2.0");
        assert!(matches!(dec(&float), Err(FileError::Corrupt { .. })));
    }

    #[test]
    fn foreign_ceremony() {
        let bytes = encode(FMT, 1, "C-2", true, &body()).unwrap();
        let err = dec(&bytes).unwrap_err();
        assert!(
            matches!(&err, FileError::ForeignCeremony { found, expected, .. } if found == "C-2" && expected == "C-1"),
            "{err}"
        );
        says(&err, "belongs to ceremony \"C-2\"");
    }

    #[test]
    fn digest_mismatch() {
        let bytes = encoded();
        // A changed value, still canonical.
        let changed = replace(&bytes, "\"count\":7", "\"count\":8");
        assert!(matches!(
            dec(&changed),
            Err(FileError::DigestMismatch { .. })
        ));
        // The rehearsal mark is covered by the digest.
        let production = replace(&bytes, "\"rehearsal\":true", "\"rehearsal\":false");
        assert!(matches!(
            dec(&production),
            Err(FileError::DigestMismatch { .. })
        ));
        // The digest itself changed.
        let s = String::from_utf8(bytes.clone()).unwrap();
        let at = s.find("sha256:").unwrap() + 7;
        let mut d = bytes.clone();
        d[at] = if d[at] == b'0' { b'1' } else { b'0' };
        assert!(matches!(dec(&d), Err(FileError::DigestMismatch { .. })));
        let upper = replace(&bytes, &s[at..at + 64], &s[at..at + 64].to_uppercase());
        assert!(dec(&upper).is_err());
    }

    #[test]
    fn non_canonical() {
        let bytes = encoded();
        let cases = [
            replace(&bytes, "\"count\":7", "\"count\": 7"),
            replace(&bytes, "{\"format\"", "{ \"format\""),
            replace(
                &bytes,
                "\"map\":{\"a\":1,\"b\":2}",
                "\"map\":{\"b\":2,\"a\":1}",
            ),
            replace(&bytes, "\"map\":{\"a\":1", "\"map\":{\"\\u0061\":1"),
            replace(&bytes, "\"count\":7", "\"count\":7e0"),
            replace(&bytes, "\"note\":null,", ""),
            replace(&bytes, "\"note\":null,", "\"note\":null,\"extra\":1,"),
            replace(&bytes, "\"map\":{\"a\":1,", "\"map\":{\"a\":0,\"a\":1,"),
            bytes[..bytes.len() - 1].to_vec(),
            [&bytes[..], b"\n"].concat(),
            [&bytes[..bytes.len() - 1], b"\r\n"].concat(),
            [b" ", &bytes[..]].concat(),
        ];
        for (i, case) in cases.iter().enumerate() {
            match dec(case) {
                Err(FileError::NonCanonical { .. }) => {}
                // serde refuses some (e.g. a float for a u32, a missing field) as corrupt.
                Err(FileError::Corrupt { .. }) if [4, 5].contains(&i) => {}
                other => panic!("case {i}: {other:?}"),
            }
        }
        // Key order of the envelope itself.
        let swapped = replace(
            &bytes,
            "\"ceremony\":\"C-1\",\"rehearsal\":true",
            "\"rehearsal\":true,\"ceremony\":\"C-1\"",
        );
        assert!(matches!(dec(&swapped), Err(FileError::NonCanonical { .. })));
        // An unknown envelope member.
        let extra = replace(&bytes, "{\"format\"", "{\"x\":1,\"format\"");
        assert!(matches!(dec(&extra), Err(FileError::Corrupt { .. })));
    }

    #[test]
    fn files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sa.db");
        let header = |version| Header {
            format: FMT.into(),
            version,
            ceremony: "C-1".into(),
            rehearsal: true,
        };
        write_file(&p, &header(2), &body(), Sensitivity::Public, Put::Replace).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let d = read_file::<Body>(&p, FMT, 2, Some("C-1")).unwrap();
        assert_eq!(d.body, body());

        let b = dir.path().join("bundle");
        let create = || write_file(&b, &header(1), &body(), Sensitivity::Secret, Put::CreateNew);
        create().unwrap();
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            create(),
            Err(FileError::Durable(DurableError::AlreadyExists { .. }))
        ));
        let err = read_file::<Body>(&dir.path().join("none"), FMT, 2, None).unwrap_err();
        assert!(
            matches!(err, FileError::Durable(DurableError::Io { .. })),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn flipped_byte_is_always_refused(pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
            let bytes = encoded();
            let mut bad = bytes.clone();
            let i = pos.index(bad.len());
            bad[i] ^= mask;
            prop_assert!(dec(&bad).is_err(), "flip at {} accepted", i);
        }

        #[test]
        fn truncation_is_always_refused(pos in any::<prop::sample::Index>()) {
            let bytes = encoded();
            let i = pos.index(bytes.len());
            prop_assert!(dec(&bytes[..i]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = dec(&bytes);
            let _ = peek(Path::new("x"), &bytes);
        }

        #[test]
        fn arbitrary_json_like_text_never_panics(s in "\\{(\"[a-z]{1,8}\":(\"[a-zA-Z0-9-]{0,8}\"|[0-9]{1,11}|true|null|\\{\\}),?){0,7}\\}\n?") {
            let _ = dec(s.as_bytes());
        }

        #[test]
        fn any_body_round_trips(name in ".*", count in any::<u32>(), blob in proptest::collection::vec(any::<u8>(), 0..40),
                                map in proptest::collection::btree_map(".{0,6}", any::<u64>(), 0..5),
                                rehearsal in any::<bool>(), ceremony in ".{0,20}") {
            let b = Body { name, count, blob, map, note: Some("n".into()), inner: Inner { flag: false, list: vec![] } };
            let bytes = encode(FMT, 1, &ceremony, rehearsal, &b).unwrap();
            let d = decode::<Body>(Path::new("x"), &bytes, FMT, 1, Some(&ceremony)).unwrap();
            prop_assert_eq!(d.body, b);
            prop_assert_eq!(d.rehearsal, rehearsal);
        }
    }
}
