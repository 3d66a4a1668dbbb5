//! The ceremony files carried between servers, which an insider can swap or edit: the
//! envelopes of `sa.db`, `<target>.csr.db` and share bundles, and the journal.
//!
//! Both formats protect themselves with a hash the fuzzer cannot compute (the envelope's
//! `digest`, the journal's `prev` chain). To get past it, the harness repairs the hash
//! when the decoder says that is the only thing wrong, and decodes again: the repaired
//! input must then pass, and everything behind the hash is fuzzed too. The refusal of a
//! wrong hash is exercised by the unrepaired input first.

use std::path::Path;

use mkclone_ceremony::FileError;
use mkclone_ceremony::dbs::{self, CsrDb, SaDb, ShareBundle};
use mkclone_ceremony::envelope::{self, Decoded};
use mkclone_ceremony::journal::{self, GENESIS_PREV, Verified};
use mkclone_formats::pka::{CertificateSection, PublicKeyTokenView};
use mkclone_formats::seal::SealedShareParts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::alloc_cap::{capped, text_cap};
use crate::shown;

/// Decode `data` as an envelope of `format` with body `T`; if only its digest is wrong,
/// put in the digest it should carry and decode again. A decoded file re-encodes to its
/// bytes exactly. Returns the body of the file that decoded, if one did.
fn envelope_round_trip<T: Serialize + DeserializeOwned>(data: &[u8], format: &str) -> Option<T> {
    let path = Path::new("fuzz.db");
    let cap = text_cap(data.len());
    let decode = |bytes: &[u8]| {
        capped(cap, || {
            envelope::decode::<T>(path, bytes, format, dbs::VERSION, None)
        })
    };
    let (decoded, bytes) = match decode(data) {
        Ok(d) => (d, data.to_vec()),
        Err(FileError::DigestMismatch {
            recorded, computed, ..
        }) => {
            let repaired = with_digest(data, &recorded, &computed);
            match decode(&repaired) {
                Ok(d) => (d, repaired),
                Err(e) => panic!(
                    "a canonical file refused only for its digest is refused with the digest it \
                     should carry: {e}"
                ),
            }
        }
        Err(e) => {
            shown(&e, cap);
            return None;
        }
    };
    let Decoded {
        format,
        version,
        ceremony,
        rehearsal,
        body,
        ..
    } = decoded;
    let again = envelope::encode(&format, version, &ceremony, rehearsal, &body)
        .unwrap_or_else(|e| panic!("a decoded file does not encode: {e}"));
    assert_eq!(
        again, bytes,
        "a decoded file does not re-encode to its bytes"
    );
    Some(body)
}

/// The canonical file `data`, whose digest member is `recorded`, with `digest` instead.
/// A canonical file ends with the digest as a JSON string, `}` and a newline.
fn with_digest(data: &[u8], recorded: &str, digest: &str) -> Vec<u8> {
    let json = |s: &str| serde_json::to_vec(s).expect("a string encodes");
    let tail = [json(recorded), b"}\n".to_vec()].concat();
    let head = data
        .strip_suffix(&tail[..])
        .expect("a file refused only for its digest is canonical: it ends with the digest");
    [head.to_vec(), json(digest), b"}\n".to_vec()].concat()
}

/// The structures a reader of the file decodes next, as the phases do.
fn decode_carried(
    certificates: &[&mkclone_backend::Certificate],
    tokens: &[&mkclone_backend::PublicKeyToken],
) {
    for c in certificates {
        let cap = crate::alloc_cap::binary_cap(c.as_bytes().len());
        if let Err(e) = capped(cap, || CertificateSection::decode(c)) {
            shown(&e, cap);
        }
    }
    for t in tokens {
        let cap = crate::alloc_cap::binary_cap(t.as_bytes().len());
        if let Err(e) = capped(cap, || PublicKeyTokenView::decode(t)) {
            shown(&e, cap);
        }
    }
}

/// Target `sa_db`.
pub fn sa_db(data: &[u8]) {
    if let Some(db) = envelope_round_trip::<SaDb>(data, dbs::SA_DB_FORMAT) {
        let mut certificates = vec![&db.sa_certificate];
        let mut tokens = Vec::new();
        if let Some(css) = &db.css {
            certificates.extend(&css.certificate);
            tokens.push(&css.public_key);
        }
        decode_carried(&certificates, &tokens);
    }
}

/// Target `csr_db`.
pub fn csr_db(data: &[u8]) {
    if let Some(db) = envelope_round_trip::<CsrDb>(data, dbs::CSR_DB_FORMAT) {
        let certificates: Vec<_> = db.certificate.iter().collect();
        decode_carried(&certificates, &[&db.public_key]);
    }
}

/// Target `bundle`.
pub fn bundle(data: &[u8]) {
    if let Some(b) = envelope_round_trip::<ShareBundle>(data, dbs::BUNDLE_FORMAT) {
        let cap = crate::alloc_cap::binary_cap(b.sealed.as_bytes().len());
        if let Err(e) = capped(cap, || SealedShareParts::decode(&b.sealed)) {
            shown(&e, cap);
        }
    }
}

/// `data` with the `prev` of every line after the first set to the hash of the line
/// before it (as repaired), where the line has a `prev` member with 64 characters.
fn chained(data: &[u8]) -> Vec<u8> {
    const PREV: &[u8] = b",\"prev\":\"";
    let mut out = Vec::with_capacity(data.len());
    let mut previous: Option<Vec<u8>> = None;
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let mut line = line.to_vec();
        if let Some(prev_line) = &previous
            && let Some(at) = line.windows(PREV.len()).position(|w| w == PREV)
        {
            let start = at + PREV.len();
            if let Some(field) = line.get_mut(start..start + 64) {
                field.copy_from_slice(journal::line_hash(prev_line).as_bytes());
            }
        }
        out.extend_from_slice(&line);
        previous = Some(line);
    }
    out
}

/// A verified journal's promises about `bytes`: lengths add up, every verified line is
/// its record's canonical encoding, sequence numbers count from 1, and the head hash is
/// the last line's.
fn check_verified(v: &Verified, bytes: &[u8]) {
    let verified_len = usize::try_from(v.verified_len).expect("a length in memory");
    assert_eq!(
        verified_len + v.torn_tail.unwrap_or(0),
        bytes.len(),
        "verified bytes and the torn tail do not make up the journal"
    );
    let verified = &bytes[..verified_len];
    let lines: Vec<&[u8]> = match verified.strip_suffix(b"\n") {
        Some(body) => body.split(|&b| b == b'\n').collect(),
        None => {
            assert!(verified.is_empty(), "verified lines end with a newline");
            Vec::new()
        }
    };
    assert_eq!(lines.len(), v.records.len(), "one record per verified line");
    for (i, (line, record)) in lines.iter().zip(&v.records).enumerate() {
        assert_eq!(record.seq, i as u64 + 1, "sequence numbers count from 1");
        let canonical = serde_json::to_vec(record).expect("a record encodes");
        assert_eq!(&canonical[..], *line, "a verified line is not canonical");
    }
    let head = lines
        .last()
        .map_or_else(|| GENESIS_PREV.to_owned(), |l| journal::line_hash(l));
    assert_eq!(v.head_hash, head, "the head hash is not the last line's");
}

/// Verify `bytes` as a journal; a verified one keeps its promises and verifies the same
/// when its own ceremony and rehearsal mark are required of it.
fn verify_journal(bytes: &[u8]) {
    let path = Path::new("journal.jsonl");
    let cap = text_cap(bytes.len());
    match capped(cap, || journal::verify(path, bytes, None, None)) {
        Ok(v) => {
            check_verified(&v, bytes);
            if let Some(first) = v.records.first() {
                let again =
                    journal::verify(path, bytes, Some(&first.ceremony), Some(first.rehearsal))
                        .unwrap_or_else(|e| {
                            panic!("the journal fails its own ceremony's check: {e}")
                        });
                assert_eq!(again, v, "naming the ceremony changes the verified journal");
            }
        }
        Err(e) => {
            shown(&e, cap);
        }
    }
}

/// Target `journal`: the bytes of a journal, one record a line. Verified as found, then
/// with its hash chain repaired (when that changes anything).
pub fn journal(data: &[u8]) {
    verify_journal(data);
    let repaired = chained(data);
    if repaired != data {
        verify_journal(&repaired);
    }
}
