//! The ceremony journal: write-ahead, hash-chained JSON lines.
//!
//! The file is `<dir>/journal.jsonl` (mode 0600), append-only. Each record is one line: the
//! compact `serde_json` encoding of a [`Record`], members in this order, then `\n`:
//!
//! ```text
//! {"seq":1,"prev":"000…000","time":"2026-05-01T10:20:30.123Z","ceremony":"C-1","nonce":"9f…","rehearsal":false,"phase":"1","node":"source","kind":"intent","operator":null,"event":"obtain-share","detail":{"index":1}}
//! ```
//!
//! - `seq` counts from 1, by 1.
//! - `prev` is the lowercase hex SHA-256 of the previous line's bytes, without its newline;
//!   64 zeros ([`GENESIS_PREV`]) for the first record.
//! - `time` is RFC 3339 UTC with milliseconds (`YYYY-MM-DDTHH:MM:SS.mmmZ`), from this host's
//!   clock: informative only, never checked for order (machines' clocks differ).
//! - `ceremony`, `nonce` and `rehearsal` are the same on every line. The nonce (32 hex
//!   digits) is drawn at random by phase 1 and carried in `sa.db` and every other ceremony
//!   file: a journal of another run of a ceremony with the same id has another nonce.
//!   Journals written before nonces existed (mkclone 0.1) are refused with a message
//!   saying so.
//! - `phase` is `1`, `2a`, `2b`, `3a`…`3d`, `setup`, `abort`…; `node` the node's name or
//!   empty; `kind` `intent` (written before an action), `outcome` (after it) or `note`;
//!   `operator` a name or null; `event` a short machine name (`obtain-share`).
//! - `detail` is a JSON object whose keys are sorted (at every depth); mkclone sorts them.
//!
//! Each line is canonical (re-encoding the decoded record gives the same bytes). The hash of
//! the last line is the *head hash* ([`Journal::head_hash`]), printed at the end of a
//! ceremony and written into its report: the chain protects every line but the last, and
//! the head hash protects the last.
//!
//! **No secrets.** Records carry names, indices, labels, verification patterns, digests and
//! outcomes, never key material, PINs or shares: no field is meant for them, and callers
//! must not put any into `detail`.
//!
//! **Locking.** [`Journal::open`] reads and verifies; appends must be made while holding
//! the directory's [`DirLock`](crate::durable::DirLock) for the whole life of the open
//! `Journal`. Opening never changes the file, except creating it when missing; a torn tail
//! is removed only right before the next append. A journal larger than any ceremony file
//! ([`MAX_FILE_BYTES`](crate::envelope::MAX_FILE_BYTES)) is refused before it is read
//! ([`FileError::TooLarge`]), as every ceremony file is.
//!
//! **Torn tail.** A crash during an append can leave a last line without its newline, or a
//! last line that is not JSON. Such a line was never acknowledged (an append returns only
//! after its fsync), so it is tolerated: [`Journal::torn_tail`] reports its size, and the
//! next append truncates it away (with a warning). Any other break, anywhere, is
//! [`FileError::JournalCorrupt`] with the line number. A last line damaged later looks the
//! same as a torn one (and a changed last line still verifies): the head hash of the last
//! run, from its report, is what settles it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FileError;
use crate::durable::{self, sync_dir};
use crate::error::io_error;

/// Name of the journal inside the ceremony directory.
pub const FILE_NAME: &str = "journal.jsonl";

/// The `prev` of the first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record says about an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Written (and synced) before the action is attempted.
    Intent,
    /// Written after the action, with its result.
    Outcome,
    /// Anything else worth recording (a torn tail removed, an operator's decision…).
    Note,
}

/// One journal line. Field order is the on-disk member order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    pub time: String,
    pub ceremony: String,
    pub nonce: String,
    pub rehearsal: bool,
    pub phase: String,
    pub node: String,
    pub kind: Kind,
    pub operator: Option<String>,
    pub event: String,
    /// A JSON object. Never secrets.
    pub detail: Value,
}

/// The position and hash of an appended record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHash {
    pub seq: u64,
    /// Lowercase hex SHA-256 of the line (without its newline): the new head hash.
    pub hash: String,
}

/// The result of verifying a journal's bytes ([`verify`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub records: Vec<Record>,
    /// Hash of the last verified line ([`GENESIS_PREV`] when there is none).
    pub head_hash: String,
    /// Length in bytes of the verified lines (the file without its torn tail).
    pub verified_len: u64,
    /// Size in bytes of a torn last line, if any.
    pub torn_tail: Option<usize>,
}

/// Verify the bytes of a journal without opening it for writing (e.g. a copy carried from
/// another machine). `ceremony`/`rehearsal`: when given, every record must carry them
/// (a first record that does not is [`FileError::ForeignCeremony`] /
/// [`FileError::RehearsalMismatch`]); when not, the first record's values are required of
/// the others. `path` is for messages.
pub fn verify(
    path: &Path,
    bytes: &[u8],
    ceremony: Option<&str>,
    rehearsal: Option<bool>,
) -> Result<Verified, FileError> {
    let mut records: Vec<Record> = Vec::new();
    let mut head = GENESIS_PREV.to_owned();
    let mut verified_len = 0usize;
    let mut torn_tail = None;
    let mut ceremony = ceremony.map(str::to_owned);
    let mut rehearsal = rehearsal;
    let mut nonce: Option<String> = None;
    let mut rest = bytes;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            torn_tail = Some(rest.len());
            break;
        };
        let (line, after) = (&rest[..end], &rest[end + 1..]);
        let corrupt = |line: usize, reason: String| FileError::JournalCorrupt {
            path: path.into(),
            line,
            reason,
        };
        if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err() {
            if after.is_empty() {
                torn_tail = Some(end + 1);
                break;
            }
            return Err(corrupt(line_no, "the line is not JSON".into()));
        }
        let record: Record = serde_json::from_slice(line).map_err(|e| {
            let old = serde_json::from_slice::<Value>(line)
                .ok()
                .is_some_and(|v| v.get("seq").is_some() && v.get("nonce").is_none());
            if old {
                corrupt(
                    line_no,
                    "written by an older mkclone (0.1, before ceremony nonces): finish that ceremony \
                     with the mkclone that began it, or begin this one in a new directory"
                        .into(),
                )
            } else {
                corrupt(line_no, format!("not a journal record: {e}"))
            }
        })?;
        let canonical = encode_line(&record)
            .map_err(|e| corrupt(line_no, format!("the record cannot be re-encoded: {e}")))?;
        if canonical != line {
            let at = canonical
                .iter()
                .zip(line)
                .position(|(a, b)| a != b)
                .unwrap_or(canonical.len().min(line.len()));
            return Err(corrupt(
                line_no,
                format!(
                    "not in canonical form (byte {} of the line differs from what mkclone writes): \
                     the line was edited or reformatted",
                    at + 1
                ),
            ));
        }
        let expected_seq = records.len() as u64 + 1;
        if record.seq != expected_seq {
            return Err(corrupt(
                line_no,
                format!(
                    "sequence number {} where {expected_seq} was expected: a record was removed, \
                     inserted or moved",
                    record.seq
                ),
            ));
        }
        if record.prev != head {
            return Err(if line_no == 1 {
                corrupt(
                    1,
                    "the first record's prev is not 64 zeros: the beginning of the journal is \
                     missing"
                        .into(),
                )
            } else {
                corrupt(
                    line_no - 1,
                    format!(
                        "its SHA-256 does not match the prev hash recorded in line {line_no}: line \
                         {} was modified (or line {line_no}'s prev was)",
                        line_no - 1
                    ),
                )
            });
        }
        match &ceremony {
            Some(expected) if *expected != record.ceremony => {
                return Err(if line_no == 1 {
                    FileError::ForeignCeremony {
                        path: path.into(),
                        found: record.ceremony,
                        expected: expected.clone(),
                    }
                } else {
                    corrupt(
                        line_no,
                        format!(
                            "the record names ceremony {:?}, the journal is ceremony {expected:?}",
                            record.ceremony
                        ),
                    )
                });
            }
            Some(_) => {}
            None => ceremony = Some(record.ceremony.clone()),
        }
        match &nonce {
            Some(expected) if *expected != record.nonce => {
                return Err(corrupt(
                    line_no,
                    format!(
                        "the record carries ceremony nonce {}, the journal's first record {expected}: \
                         lines of another run of this ceremony were mixed in",
                        record.nonce
                    ),
                ));
            }
            Some(_) => {}
            None => nonce = Some(record.nonce.clone()),
        }
        match rehearsal {
            Some(expected) if expected != record.rehearsal => {
                return Err(if line_no == 1 {
                    FileError::RehearsalMismatch {
                        path: path.into(),
                        file_rehearsal: record.rehearsal,
                    }
                } else {
                    corrupt(
                        line_no,
                        "the record's rehearsal mark differs from the journal's".into(),
                    )
                });
            }
            Some(_) => {}
            None => rehearsal = Some(record.rehearsal),
        }
        if !record.detail.is_object() {
            return Err(corrupt(line_no, "detail is not a JSON object".into()));
        }
        head = line_hash(line);
        records.push(record);
        verified_len += end + 1;
        rest = after;
    }
    Ok(Verified {
        records,
        head_hash: head,
        verified_len: verified_len as u64,
        torn_tail,
    })
}

/// The journal of one ceremony directory, open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    ceremony: String,
    rehearsal: bool,
    /// The ceremony nonce: the first record's, or set before the first append.
    nonce: Option<String>,
    records: Vec<Record>,
    head: String,
    /// Bytes of verified (or appended by us) content: the file's length when all is well.
    verified_len: u64,
    /// A torn tail found at opening, not yet truncated.
    torn_tail: Option<usize>,
    /// An append of ours failed after it may have written bytes.
    failed_append: bool,
}

impl Journal {
    /// Open (creating it, 0600, when missing) and verify `<dir>/journal.jsonl` of ceremony
    /// `ceremony`. See the module documentation for what is verified and tolerated.
    pub fn open(dir: &Path, ceremony: &str, rehearsal: bool) -> Result<Self, FileError> {
        let path = dir.join(FILE_NAME);
        let file = Self::open_or_create(dir, &path)?;
        // Capped as every ceremony file is read (the report and the dry run read the journal
        // so too): a sparse or growing file is refused before it is allocated, and a journal
        // over the cap is never taken for one with a torn last line, to be cut at the next
        // append.
        let bytes = crate::envelope::read_all_capped(&file, &path, "read the journal")?;
        let v = verify(&path, &bytes, Some(ceremony), Some(rehearsal))?;
        if let Some(n) = v.torn_tail {
            log::warn!(
                "journal {}: the last line ({n} bytes) is incomplete, left by an interrupted \
                 append; it was never acknowledged and will be removed before the next append",
                path.display()
            );
        }
        Ok(Self {
            path,
            file,
            ceremony: ceremony.into(),
            rehearsal,
            nonce: v.records.first().map(|r| r.nonce.clone()),
            records: v.records,
            head: v.head_hash,
            verified_len: v.verified_len,
            torn_tail: v.torn_tail,
            failed_append: false,
        })
    }

    /// An existing journal is opened by [`durable::open_regular`]: a link, FIFO… is refused.
    fn open_or_create(dir: &Path, path: &Path) -> Result<File, FileError> {
        match durable::open_regular(path, durable::Access::Append) {
            Err(e) if e.is_not_found() => {}
            other => return other,
        }
        // create_new (O_EXCL) never follows a link planted meanwhile: it fails instead.
        match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => {
                sync_dir(dir)?;
                Ok(f)
            }
            // Created meanwhile by someone else: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                durable::open_regular(path, durable::Access::Append)
            }
            Err(e) => Err(io_error(path, "create the journal")(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn ceremony(&self) -> &str {
        &self.ceremony
    }

    pub fn rehearsal(&self) -> bool {
        self.rehearsal
    }

    /// The verified records, oldest first (without a torn tail).
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The ceremony nonce its records carry (`None` for an empty journal not yet given one).
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// Give an empty journal the ceremony nonce its records will carry. Refused when the
    /// journal already carries another.
    pub fn set_nonce(&mut self, nonce: &str) -> Result<(), FileError> {
        match &self.nonce {
            Some(n) if n != nonce => Err(FileError::InvalidEntry {
                path: self.path.clone(),
                reason: format!("the journal carries ceremony nonce {n}, not {nonce}"),
            }),
            _ => {
                self.nonce = Some(nonce.into());
                Ok(())
            }
        }
    }

    /// Hash of the last line, borrowed: 64 zeros for an empty journal.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Hash of the last line: 64 zeros for an empty journal.
    pub fn head_hash(&self) -> String {
        self.head.clone()
    }

    /// Size in bytes of a torn last line found at opening, until the next append removes it.
    /// A caller may record its removal with a `note` (which is that next append).
    pub fn torn_tail(&self) -> Option<usize> {
        self.torn_tail
    }

    /// Append one record, fsync, and return its seq and hash (the new head). `detail` must
    /// be a JSON object (its keys are sorted on writing) and never holds secrets. Hold the
    /// directory's lock. On failure nothing is acknowledged, and the next append removes
    /// whatever a failed write may have left.
    pub fn append(
        &mut self,
        phase: &str,
        node: &str,
        kind: Kind,
        operator: Option<&str>,
        event: &str,
        detail: Value,
    ) -> Result<RecordHash, FileError> {
        let invalid = |reason: String| FileError::InvalidEntry {
            path: self.path.clone(),
            reason,
        };
        if !detail.is_object() {
            return Err(invalid("detail must be a JSON object".into()));
        }
        if phase.is_empty() || event.is_empty() {
            return Err(invalid("phase and event must not be empty".into()));
        }
        // The last line of defence: callers check names where they enter.
        if let Some(name) = operator {
            crate::operator::check(name).map_err(|e| invalid(e.to_string()))?;
        }
        let Some(nonce) = self.nonce.clone() else {
            return Err(invalid(
                "the journal has no ceremony nonce yet: phase 1 draws it, and sa.db carries it to the other \
                 nodes (carry sa.db here first)"
                    .into(),
            ));
        };
        let record = Record {
            seq: self.records.len() as u64 + 1,
            prev: self.head.clone(),
            time: rfc3339_utc(SystemTime::now()),
            ceremony: self.ceremony.clone(),
            nonce,
            rehearsal: self.rehearsal,
            phase: phase.into(),
            node: node.into(),
            kind,
            operator: operator.map(str::to_owned),
            event: event.into(),
            // serde_json's map keeps its keys sorted already: copy only when it does not.
            detail: if detail_is_sorted(&detail) {
                detail
            } else {
                sort_keys(&detail)
            },
        };
        let line = encode_line(&record).map_err(|e| invalid(e.to_string()))?;
        // Never write a line that the next open would refuse.
        let reread: Record = serde_json::from_slice(&line)
            .map_err(|e| invalid(format!("the record does not decode again: {e}")))?;
        if encode_line(&reread).ok().as_deref() != Some(&line[..]) || reread != record {
            return Err(invalid("the record does not re-encode identically".into()));
        }
        self.prepare_tail()?;

        let head = line_hash(&line);
        // The line and its newline in one write, without a copy of the line.
        let mut buf = line;
        buf.push(b'\n');
        self.failed_append = true;
        self.file
            .write_all(&buf)
            .map_err(io_error(&self.path, "append to the journal"))?;
        mkclone_backend::timing::measure(mkclone_backend::timing::Category::FileSync, || {
            self.file.sync_data()
        })
        .map_err(io_error(&self.path, "sync the journal"))?;
        self.failed_append = false;

        self.verified_len += buf.len() as u64;
        self.head = head;
        self.records.push(record);
        Ok(RecordHash {
            seq: self.records.len() as u64,
            hash: self.head.clone(),
        })
    }

    /// Make the file end where the verified content ends: remove a torn tail or what a
    /// failed append of ours left; refuse any other change.
    fn prepare_tail(&mut self) -> Result<(), FileError> {
        let len = self
            .file
            .metadata()
            .map_err(io_error(&self.path, "read the journal's length"))?
            .len();
        if len == self.verified_len {
            self.torn_tail = None;
            self.failed_append = false;
            return Ok(());
        }
        let expected_torn = self.torn_tail.map(|n| self.verified_len + n as u64);
        let ours = self.failed_append && len > self.verified_len;
        if !(ours || expected_torn == Some(len)) {
            return Err(FileError::JournalChanged {
                path: self.path.clone(),
                reason: format!(
                    "it is {len} bytes long where {} were expected",
                    expected_torn.unwrap_or(self.verified_len)
                ),
            });
        }
        log::warn!(
            "journal {}: removing {} bytes of an incomplete last line",
            self.path.display(),
            len - self.verified_len
        );
        self.file
            .set_len(self.verified_len)
            .and_then(|()| self.file.sync_data())
            .map_err(io_error(
                &self.path,
                "remove the torn last line of the journal",
            ))?;
        self.torn_tail = None;
        self.failed_append = false;
        Ok(())
    }
}

/// Lowercase hex SHA-256 of a line's bytes (without its newline).
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(crate::digest::sha256(line))
}

/// The canonical line of a record (without newline), `detail` keys sorted.
fn encode_line(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    if detail_is_sorted(&record.detail) {
        serde_json::to_vec(record)
    } else {
        let mut sorted = record.clone();
        sorted.detail = sort_keys(&record.detail);
        serde_json::to_vec(&sorted)
    }
}

fn detail_is_sorted(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b) && m.values().all(detail_is_sorted)
        }
        Value::Array(a) => a.iter().all(detail_is_sorted),
        _ => true,
    }
}

/// A copy with object keys in sorted order at every depth (whatever serde_json's map type).
fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// RFC 3339 UTC with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    // i64 milliseconds reach 292 million years either way; i128 arithmetic here was a
    // library division per field at every journal record.
    let clamp = |ms: u128| i64::try_from(ms).unwrap_or(i64::MAX);
    let millis: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => clamp(d.as_millis()),
        Err(e) => -clamp(e.duration().as_millis()),
    };
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use sha2::{Digest, Sha256};

    fn open(dir: &Path) -> Result<Journal, FileError> {
        let mut j = Journal::open(dir, "C-1", false)?;
        if j.nonce().is_none() {
            j.set_nonce("00112233445566778899aabbccddeeff")?;
        }
        Ok(j)
    }

    /// A journal with `n` records; returns its bytes.
    fn journal_with(dir: &Path, n: usize) -> Vec<u8> {
        let mut j = open(dir).unwrap();
        for i in 0..n {
            let kind = [Kind::Intent, Kind::Outcome, Kind::Note][i % 3];
            j.append(
                "2a",
                "target1",
                kind,
                None,
                &format!("event-{i}"),
                json!({"index": i, "z": [1, {"b": 2, "a": "x"}]}),
            )
            .unwrap();
        }
        fs::read(dir.join(FILE_NAME)).unwrap()
    }

    fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn join(lines: &[Vec<u8>]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect()
    }

    fn corrupt_line(err: FileError) -> usize {
        match err {
            FileError::JournalCorrupt { line, .. } => line,
            other => panic!("expected JournalCorrupt, got {other}"),
        }
    }

    #[test]
    fn new_journal_is_created_secret_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(dir.path()).unwrap();
        let p = dir.path().join(FILE_NAME);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(j.records().is_empty());
        assert_eq!(j.head_hash(), GENESIS_PREV);
        assert_eq!(j.torn_tail(), None);
        assert_eq!(fs::read(&p).unwrap(), b"");
    }

    #[test]
    fn chain_verifies_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = journal_with(dir.path(), 5);
        let ls = lines(&bytes);
        assert_eq!(ls.len(), 5);
        let mut prev = GENESIS_PREV.to_owned();
        for (i, l) in ls.iter().enumerate() {
            let r: Record = serde_json::from_slice(l).unwrap();
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.prev, prev);
            prev = hex::encode(Sha256::digest(l));
        }
        // The documented member order, and sorted detail keys.
        let first = std::str::from_utf8(&ls[0]).unwrap();
        assert!(
            first.starts_with(&format!(
                "{{\"seq\":1,\"prev\":\"{GENESIS_PREV}\",\"time\":\""
            )),
            "{first}"
        );
        assert!(
            first.ends_with(
                "\",\"ceremony\":\"C-1\",\"nonce\":\"00112233445566778899aabbccddeeff\",\"rehearsal\":false,\"phase\":\"2a\",\"node\":\"target1\",\
                 \"kind\":\"intent\",\"operator\":null,\"event\":\"event-0\",\
                 \"detail\":{\"index\":0,\"z\":[1,{\"a\":\"x\",\"b\":2}]}}"
            ),
            "{first}"
        );
        let j = open(dir.path()).unwrap();
        assert_eq!(j.records().len(), 5);
        assert_eq!(j.head_hash(), prev);
        assert_eq!(j.torn_tail(), None);
    }

    #[test]
    fn kinds_and_operator() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = open(dir.path()).unwrap();
        let a = j
            .append(
                "1",
                "source",
                Kind::Intent,
                Some("alice"),
                "obtain-share",
                json!({"index": 1}),
            )
            .unwrap();
        let b = j
            .append(
                "1",
                "source",
                Kind::Outcome,
                Some("alice"),
                "obtain-share",
                json!({"intent": a.seq, "result": "done"}),
            )
            .unwrap();
        let c = j
            .append(
                "setup",
                "",
                Kind::Note,
                None,
                "torn-tail-removed",
                json!({}),
            )
            .unwrap();
        assert_eq!((a.seq, b.seq, c.seq), (1, 2, 3));
        assert_eq!(j.head_hash(), c.hash);
        let r = j.records();
        assert_eq!(r[0].kind, Kind::Intent);
        assert_eq!(r[1].kind, Kind::Outcome);
        assert_eq!(r[2].kind, Kind::Note);
        assert_eq!(r[0].operator.as_deref(), Some("alice"));
        assert_eq!(r[2].operator, None);
        assert_eq!(r[1].prev, a.hash);
        let reopened = open(dir.path()).unwrap();
        assert_eq!(reopened.records(), r);
        assert_eq!(reopened.head_hash(), c.hash);
    }

    #[test]
    fn torn_last_line_is_tolerated_then_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let good = journal_with(dir.path(), 2);
        let p = dir.path().join(FILE_NAME);
        let head = open(dir.path()).unwrap().head_hash();
        for torn in [
            &b"{\"seq\":3,\"pr"[..],
            b"\0\0\0\0\0\0\0\0",
            b"garbage\n",
            b"\n",
            b"{\"seq\":3,",
        ] {
            let bytes = [&good[..], torn].concat();
            fs::write(&p, &bytes).unwrap();
            let mut j = open(dir.path()).unwrap();
            assert_eq!(j.torn_tail(), Some(torn.len()));
            assert_eq!(j.records().len(), 2);
            assert_eq!(j.head_hash(), head);
            assert_eq!(
                fs::read(&p).unwrap(),
                bytes,
                "open must not modify the file"
            );
            let h = j
                .append("3a", "", Kind::Note, None, "resumed", json!({}))
                .unwrap();
            assert_eq!(j.torn_tail(), None);
            let after = fs::read(&p).unwrap();
            assert!(after.starts_with(&good));
            assert_eq!(lines(&after).len(), 3);
            let j2 = open(dir.path()).unwrap();
            assert_eq!(j2.torn_tail(), None);
            assert_eq!(j2.head_hash(), h.hash);
            assert_eq!(j2.records()[2].prev, head);
        }
    }

    #[test]
    fn complete_record_without_newline_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = journal_with(dir.path(), 3);
        let p = dir.path().join(FILE_NAME);
        fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let j = open(dir.path()).unwrap();
        assert_eq!(j.records().len(), 2);
        assert_eq!(j.torn_tail(), Some(lines(&bytes)[2].len()));
    }

    #[test]
    fn only_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{\"seq\":1").unwrap();
        let mut j = open(dir.path()).unwrap();
        assert_eq!(j.torn_tail(), Some(8));
        assert!(j.records().is_empty());
        j.append("1", "", Kind::Note, None, "start", json!({}))
            .unwrap();
        assert_eq!(open(dir.path()).unwrap().records().len(), 1);
    }

    #[test]
    fn modified_middle_line_is_detected_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut ls = lines(&journal_with(dir.path(), 4));
        let s = String::from_utf8(ls[1].clone()).unwrap();
        ls[1] = s.replace("event-1", "event-X").into_bytes();
        fs::write(dir.path().join(FILE_NAME), join(&ls)).unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(corrupt_line(err), 2);
    }

    #[test]
    fn garbage_or_non_canonical_middle_line_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let good = lines(&journal_with(dir.path(), 4));
        let p = dir.path().join(FILE_NAME);
        let respaced = String::from_utf8(good[2].clone())
            .unwrap()
            .replacen("\"seq\":3", "\"seq\": 3", 1)
            .into_bytes();
        let crlf = [&good[2][..], b"\r"].concat();
        let unsorted = String::from_utf8(good[2].clone())
            .unwrap()
            .replacen(r#"{"a":"x","b":2}"#, r#"{"b":2,"a":"x"}"#, 1)
            .into_bytes();
        for bad in [b"garbage".to_vec(), b"".to_vec(), respaced, crlf, unsorted] {
            let mut ls = good.clone();
            ls[2] = bad;
            fs::write(&p, join(&ls)).unwrap();
            assert_eq!(corrupt_line(open(dir.path()).unwrap_err()), 3);
        }
    }

    #[test]
    fn reordering_and_removal_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let good = lines(&journal_with(dir.path(), 4));
        let p = dir.path().join(FILE_NAME);
        let mut swapped = good.clone();
        swapped.swap(1, 2);
        fs::write(&p, join(&swapped)).unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("sequence number 3"), "{err}");
        assert_eq!(corrupt_line(err), 2);

        let mut removed = good.clone();
        removed.remove(1);
        fs::write(&p, join(&removed)).unwrap();
        assert_eq!(corrupt_line(open(dir.path()).unwrap_err()), 2);

        let mut headless = good.clone();
        headless.remove(0);
        fs::write(&p, join(&headless)).unwrap();
        assert_eq!(corrupt_line(open(dir.path()).unwrap_err()), 1);
    }

    #[test]
    fn ceremony_and_rehearsal_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let good = journal_with(dir.path(), 2);
        let err = Journal::open(dir.path(), "C-2", false).unwrap_err();
        assert!(
            matches!(&err, FileError::ForeignCeremony { found, expected, .. } if found == "C-1" && expected == "C-2"),
            "{err}"
        );
        let err = Journal::open(dir.path(), "C-1", true).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::RehearsalMismatch {
                    file_rehearsal: false,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), good);

        // A foreign line in the middle of a chain (re-chained so only the id differs).
        let other = tempfile::tempdir().unwrap();
        let mut j = open(other.path()).unwrap();
        j.append("1", "", Kind::Note, None, "a", json!({})).unwrap();
        let mut ls = lines(&fs::read(other.path().join(FILE_NAME)).unwrap());
        let forged = Record {
            seq: 2,
            prev: line_hash(&ls[0]),
            time: rfc3339_utc(SystemTime::now()),
            ceremony: "C-9".into(),
            nonce: "00112233445566778899aabbccddeeff".into(),
            rehearsal: false,
            phase: "1".into(),
            node: String::new(),
            kind: Kind::Note,
            operator: None,
            event: "b".into(),
            detail: json!({}),
        };
        ls.push(encode_line(&forged).unwrap());
        ls.push(b"{}".to_vec());
        fs::write(other.path().join(FILE_NAME), join(&ls)).unwrap();
        let err = Journal::open(other.path(), "C-1", false).unwrap_err();
        assert!(err.to_string().contains("C-9"), "{err}");
        assert_eq!(corrupt_line(err), 2);
    }

    #[test]
    fn verify_without_expectations_takes_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = journal_with(dir.path(), 3);
        let v = verify(Path::new("copy"), &bytes, None, None).unwrap();
        assert_eq!(v.records.len(), 3);
        assert_eq!(v.verified_len, bytes.len() as u64);
        assert_eq!(v.head_hash, open(dir.path()).unwrap().head_hash());
    }

    #[test]
    fn a_change_under_an_open_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        journal_with(dir.path(), 1);
        let mut j = open(dir.path()).unwrap();
        let mut other = open(dir.path()).unwrap();
        other
            .append("1", "", Kind::Note, None, "sneaky", json!({}))
            .unwrap();
        let err = j
            .append("1", "", Kind::Note, None, "mine", json!({}))
            .unwrap_err();
        assert!(matches!(err, FileError::JournalChanged { .. }), "{err}");
        assert_eq!(open(dir.path()).unwrap().records().len(), 2);
    }

    /// A journal over the limit of every ceremony file (here a good journal grown sparse
    /// past it, then one claiming a terabyte) is refused before it is read into memory,
    /// naming the file, its size and the limit, and is left as it was: never taken for a
    /// journal with a torn last line, which the next append would cut.
    #[test]
    fn a_journal_larger_than_any_ceremony_file_is_refused_unread_and_left_untouched() {
        use crate::envelope::MAX_FILE_BYTES;
        use std::os::unix::fs::{FileExt, MetadataExt};

        let dir = tempfile::tempdir().unwrap();
        let good = journal_with(dir.path(), 2);
        let path = dir.path().join(FILE_NAME);
        for size in [MAX_FILE_BYTES + 1, 1 << 40] {
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(size)
                .unwrap();
            let blocks = fs::metadata(&path).unwrap().blocks();
            let err = Journal::open(dir.path(), "C-1", false).unwrap_err();
            assert!(
                matches!(&err, FileError::TooLarge { path: p, size: s, limit }
                    if *p == path && *s == size && *limit == MAX_FILE_BYTES),
                "{err}"
            );
            let msg = err.to_string();
            for words in [
                &*path.display().to_string(),
                &format!("is {size} bytes"),
                "larger than 64 MiB",
                "left untouched",
                "put back a good copy",
            ] {
                assert!(msg.contains(words), "{words:?} not in: {msg}");
            }
            let meta = fs::metadata(&path).unwrap();
            assert_eq!(
                (meta.len(), meta.blocks()),
                (size, blocks),
                "left untouched"
            );
            let mut start = vec![0u8; good.len()];
            fs::File::open(&path)
                .unwrap()
                .read_exact_at(&mut start, 0)
                .unwrap();
            assert_eq!(start, good);
        }
        // Cut back to its records by hand, it opens again, whole.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(good.len() as u64)
            .unwrap();
        let j = open(dir.path()).unwrap();
        assert_eq!((j.records().len(), j.torn_tail()), (2, None));
    }

    #[test]
    fn invalid_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = open(dir.path()).unwrap();
        for (phase, event, detail) in [
            ("1", "x", json!([1])),
            ("1", "x", Value::Null),
            ("", "x", json!({})),
            ("1", "", json!({})),
        ] {
            assert!(matches!(
                j.append(phase, "", Kind::Note, None, event, detail),
                Err(FileError::InvalidEntry { .. })
            ));
        }
        assert!(j.records().is_empty());
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), b"");
    }

    #[test]
    fn rfc3339() {
        let at = |s: u64, ms: u64| {
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 999), "2023-11-14T22:13:20.999Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59.999Z"
        );
        let now = rfc3339_utc(SystemTime::now());
        assert_eq!(now.len(), 24, "{now}");
        // Far beyond 9999 the year just has more digits (no overflow, no panic).
        let far = UNIX_EPOCH
            .checked_add(Duration::from_secs(1 << 40))
            .unwrap();
        assert_eq!(rfc3339_utc(far), "36812-02-20T00:36:16.000Z");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic_open(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(FILE_NAME), &bytes).unwrap();
            let _ = Journal::open(dir.path(), "C-1", false);
            let _ = verify(Path::new("x"), &bytes, None, None);
        }

        #[test]
        fn arbitrary_lines_never_panic(ls in proptest::collection::vec("\\{(\"[a-z]{1,5}\":(\"[0-9a-z]{0,4}\"|[0-9]{1,3}|null|true|\\{\\}),?){0,11}\\}", 0..4)) {
            let bytes = ls.join("\n").into_bytes();
            let _ = verify(Path::new("x"), &bytes, None, None);
        }
    }

    /// One 3-record journal for the flip property (written once: appends fsync).
    fn sample_journal() -> Vec<u8> {
        static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        SAMPLE
            .get_or_init(|| journal_with(tempfile::tempdir().unwrap().path(), 3))
            .clone()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// A flipped byte is refused, or is a torn tail, or (only in the last line, which the
        /// chain cannot protect) changes the head hash.
        #[test]
        fn flipped_byte_never_goes_unnoticed(pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
            let good = sample_journal();
            let orig = verify(Path::new("x"), &good, Some("C-1"), Some(false)).unwrap();
            let mut bad = good.clone();
            let i = pos.index(bad.len());
            bad[i] ^= mask;
            if let Ok(v) = verify(Path::new("x"), &bad, Some("C-1"), Some(false)) {
                let n = v.records.len();
                prop_assert!(n <= 3);
                prop_assert_eq!(&v.records[..n.saturating_sub(1)], &orig.records[..n.saturating_sub(1)]);
                if n == 3 && v.torn_tail.is_none() {
                    prop_assert_ne!(v.head_hash, orig.head_hash);
                } else {
                    prop_assert!(v.torn_tail.is_some());
                }
            }
        }
    }
}
