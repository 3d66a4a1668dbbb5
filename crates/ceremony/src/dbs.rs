//! The files a ceremony carries between nodes: `sa.db`, `<target>.csr.db` (names from
//! IBM's CNM utility) and one share bundle per (target, master key, index). Each is an
//! envelope (crate::envelope): versioned, canonical, digest-protected, bound to its
//! ceremony, written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mkclone_backend::{
    Certificate, CloneableKind, Eid, PublicKeyHash, PublicKeyToken, SealedShare, ShareIndex,
    VerificationPattern,
};
use serde::{Deserialize, Serialize};

use crate::durable::{self, Sensitivity};
use crate::envelope;
use crate::error::FileError;

pub const SA_DB_FORMAT: &str = "mkclone-sa-db";
pub const CSR_DB_FORMAT: &str = "mkclone-csr-db";
pub const BUNDLE_FORMAT: &str = "mkclone-share-bundle";
/// Version 2 added [`Provenance`] (ceremony nonce, journal marks); version 1 files are
/// refused with [`FileError::OlderVersion`].
pub const VERSION: u32 = 2;

/// Where a file comes from: the run of the ceremony (the nonce phase 1 drew) and, for each
/// node whose phase wrote it, where that server's journal stood at the time. A server
/// whose own journal lacks a mark it made has lost records (deleted, truncated, replaced).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Provenance {
    pub nonce: String,
    /// By node name.
    pub written: BTreeMap<String, JournalMark>,
}

/// A journal record, by position and hash, as the writer's journal held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalMark {
    pub phase: String,
    pub seq: u64,
    pub hash: String,
}

/// The ceremony files, which all carry a [`Provenance`].
pub trait Carried {
    fn provenance(&self) -> &Provenance;
    fn provenance_mut(&mut self) -> &mut Provenance;
}

macro_rules! carried {
    ($($t:ty),*) => {$(
        impl Carried for $t {
            fn provenance(&self) -> &Provenance {
                &self.provenance
            }
            fn provenance_mut(&mut self) -> &mut Provenance {
                &mut self.provenance
            }
        }
    )*};
}
carried!(SaDb, CsrDb, ShareBundle);

/// `sa.db`: the SA key and the certificates it issued (CNM's SA database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaDb {
    pub sa_node: String,
    pub sa_eid: Eid,
    /// The SA key's self-signed certificate section: what nodes register.
    pub sa_certificate: Certificate,
    /// Its registration hash, compared in person under dual control.
    pub sa_hash: PublicKeyHash,
    /// The source's CSS key (phase 2a) and its SA certificate (phase 2b).
    pub css: Option<CssEntry>,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CssEntry {
    pub node: String,
    pub eid: Eid,
    pub public_key: PublicKeyToken,
    pub certificate: Option<Certificate>,
}

/// `<target>.csr.db`: a target's CSR key (phase 3a) and its SA certificate (phase 3b).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrDb {
    pub target: String,
    pub eid: Eid,
    pub public_key: PublicKeyToken,
    pub certificate: Option<Certificate>,
    pub provenance: Provenance,
}

/// One sealed share, from the source to one target (phase 3c → 3d). Created 0600.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareBundle {
    pub target: String,
    pub target_eid: Eid,
    pub kind: CloneableKind,
    pub index: ShareIndex,
    pub source: String,
    pub source_eid: Eid,
    /// The source's CURRENT pattern when the share was obtained (the same pattern travels
    /// signed inside the share; the target's card checks the rebuilt key against it).
    pub source_pattern: VerificationPattern,
    pub sealed: SealedShare,
    pub provenance: Provenance,
}

/// The file name of the share bundle of (`target`, `kind`, `index`) in `shares/`.
pub fn bundle_name(target: &str, kind: CloneableKind, index: ShareIndex) -> String {
    format!(
        "{target}.{}.{}.share",
        kind.kind().name().to_ascii_lowercase(),
        index.get()
    )
}

/// Paths of a ceremony directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn sa_db(&self) -> PathBuf {
        self.dir.join("sa.db")
    }
    pub fn csr_db(&self, target: &str) -> PathBuf {
        self.dir.join(format!("{target}.csr.db"))
    }
    pub fn shares_dir(&self) -> PathBuf {
        self.dir.join("shares")
    }
    pub fn bundle(&self, target: &str, kind: CloneableKind, index: ShareIndex) -> PathBuf {
        self.shares_dir().join(bundle_name(target, kind, index))
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// [`durable::check_private_dir`] the ceremony directory and its `shares/`, those that
    /// exist: for every command that works in the directory, before it reads or writes.
    pub fn check_dirs(&self) -> Result<(), FileError> {
        for dir in [self.dir.clone(), self.shares_dir()] {
            match std::fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                _ => durable::check_private_dir(&dir)?,
            }
        }
        Ok(())
    }
}

/// Read `path` if it exists. It must belong to `plan`'s ceremony and carry its rehearsal
/// mark (a rehearsal's files are never read by a production run, nor the other way).
pub fn read_optional<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    format: &str,
    plan: &crate::plan::Plan,
) -> Result<Option<T>, FileError> {
    // A link (even a dangling one) is not "absent": reading refuses it.
    let bytes = match envelope::read_bytes(path) {
        Err(e) if e.is_not_found() => return Ok(None),
        other => other?,
    };
    decode_bytes(path, &bytes, format, plan).map(Some)
}

/// Decode the bytes of `path` (see [`read_optional`]).
fn decode_bytes<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    bytes: &[u8],
    format: &str,
    plan: &crate::plan::Plan,
) -> Result<T, FileError> {
    let decoded =
        envelope::decode::<T>(path, bytes, format, VERSION, Some(&plan.id)).map_err(|e| {
            // A file of an older version fails as a body of another layout: say so plainly.
            match envelope::peek(path, bytes) {
                Ok(h)
                    if matches!(e, FileError::Corrupt { .. })
                        && h.format == format
                        && h.version >= 1
                        && h.version < VERSION =>
                {
                    FileError::OlderVersion {
                        path: path.into(),
                        format: h.format,
                        found: h.version,
                        supported: VERSION,
                    }
                }
                _ => e,
            }
        })?;
    decoded.require_rehearsal(path, plan.rehearsal)?;
    Ok(decoded.body)
}

/// Write `body` as a file of this format and version, put in place as `put` says.
pub fn write<T: Serialize + for<'de> Deserialize<'de>>(
    path: &Path,
    format: &str,
    ceremony: &str,
    rehearsal: bool,
    body: &T,
    sensitivity: Sensitivity,
    put: envelope::Put,
) -> Result<(), FileError> {
    // `shares/` is created like the ceremony directory: 0700, and checked when it exists.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        durable::create_private_dir(parent)?;
    }
    let header = envelope::Header {
        format: format.into(),
        version: VERSION,
        ceremony: ceremony.into(),
        rehearsal,
    };
    envelope::write_file(path, &header, body, sensitivity, put)
}

/// The ceremony files a phase on `node` writes, which alone can carry its journal marks:
/// sa.db and every csr.db for the SA node (1, 2b, 3b), sa.db and every share bundle for the
/// source (2a, 3c), its csr.db for a target (3a); with their format. A node named in two
/// roles gets both lists.
pub fn files_written_by(
    layout: &Layout,
    plan: &crate::plan::Plan,
    node: &str,
) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if node == plan.sa.name || node == plan.source.name {
        out.push((layout.sa_db(), SA_DB_FORMAT));
    }
    for t in &plan.targets {
        if node == plan.sa.name || node == t.name {
            out.push((layout.csr_db(&t.name), CSR_DB_FORMAT));
        }
        if node == plan.source.name {
            for kind in &plan.kinds {
                for index in &plan.share_indices {
                    out.push((layout.bundle(&t.name, *kind, *index), BUNDLE_FORMAT));
                }
            }
        }
    }
    out
}

/// The provenance of ceremony files, decoded once for each version of their bytes: a phase
/// start reads again every file its node wrote (the journal marks), and in a long `clone`
/// most of them have not changed. Keyed by the SHA-256 of the bytes read, so never stale.
#[derive(Debug, Default)]
pub struct ProvenanceCache {
    decoded: std::sync::Mutex<BTreeMap<PathBuf, Decoded>>,
}

/// The SHA-256 of a file's bytes, and its provenance if it decoded.
type Decoded = ([u8; 32], Option<Provenance>);

impl ProvenanceCache {
    /// The files of [`files_written_by`] `node` that decode, with their provenance (files
    /// that do not decode are for the phases to report), by path.
    pub fn written_by(
        &self,
        layout: &Layout,
        plan: &crate::plan::Plan,
        node: &str,
    ) -> Vec<(String, Provenance)> {
        use sha2::Digest;
        let mut decoded = self
            .decoded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        for (path, format) in files_written_by(layout, plan, node) {
            let Ok(bytes) = envelope::read_bytes(&path) else {
                decoded.remove(&path);
                continue;
            };
            let digest: [u8; 32] = sha2::Sha256::digest(&bytes[..]).into();
            let provenance = match decoded.get(&path) {
                Some((d, p)) if *d == digest => p.clone(),
                _ => {
                    let p = provenance_of(&path, &bytes, format, plan);
                    decoded.insert(path.clone(), (digest, p.clone()));
                    p
                }
            };
            if let Some(p) = provenance {
                out.push((path.display().to_string(), p));
            }
        }
        out
    }
}

/// The provenance of a ceremony file of `format`, if it decodes.
fn provenance_of(
    path: &Path,
    bytes: &[u8],
    format: &str,
    plan: &crate::plan::Plan,
) -> Option<Provenance> {
    match format {
        SA_DB_FORMAT => decode_bytes::<SaDb>(path, bytes, format, plan)
            .ok()
            .map(|d| d.provenance),
        CSR_DB_FORMAT => decode_bytes::<CsrDb>(path, bytes, format, plan)
            .ok()
            .map(|d| d.provenance),
        _ => decode_bytes::<ShareBundle>(path, bytes, format, plan)
            .ok()
            .map(|b| b.provenance),
    }
}

/// The ceremony files of a directory that decode, with their provenance (files that do not
/// decode are for the phases to report), by path.
pub fn carried_files(layout: &Layout, plan: &crate::plan::Plan) -> Vec<(String, Provenance)> {
    let mut out = Vec::new();
    let mut push = |path: PathBuf, p: Option<Provenance>| {
        if let Some(p) = p {
            out.push((path.display().to_string(), p));
        }
    };
    let sa = read_optional::<SaDb>(&layout.sa_db(), SA_DB_FORMAT, plan);
    push(layout.sa_db(), sa.ok().flatten().map(|d| d.provenance));
    for t in &plan.targets {
        let path = layout.csr_db(&t.name);
        let db = read_optional::<CsrDb>(&path, CSR_DB_FORMAT, plan);
        push(path, db.ok().flatten().map(|d| d.provenance));
        for kind in &plan.kinds {
            for index in &plan.share_indices {
                let path = layout.bundle(&t.name, *kind, *index);
                let b = read_optional::<ShareBundle>(&path, BUNDLE_FORMAT, plan);
                push(path, b.ok().flatten().map(|b| b.provenance));
            }
        }
    }
    out
}
