//! The files a ceremony carries between nodes: `sa.db`, `<target>.csr.db` (names from
//! IBM's CNM utility) and one share bundle per (target, master key, index). Each is an
//! envelope (crate::envelope): versioned, canonical, digest-protected, bound to its
//! ceremony, written atomically.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use mkclone_backend::{
    Certificate, CloneableKind, Eid, PublicKeyHash, PublicKeyToken, SealedShare, ShareIndex,
    VerificationPattern,
};
use serde::{Deserialize, Serialize};

use crate::durable::{self, Sensitivity};
use crate::envelope;
use crate::error::{FileError, io_error};

pub const SA_DB_FORMAT: &str = "mkclone-sa-db";
pub const CSR_DB_FORMAT: &str = "mkclone-csr-db";
pub const BUNDLE_FORMAT: &str = "mkclone-share-bundle";
/// Version 2 added [`Provenance`] (ceremony nonce, journal marks); version 1 files are
/// refused with [`FileError::OlderVersion`]. Version 3 added [`JournalMark::journal`]; a
/// version 2 file is read (its marks name no journal) and written again as version 3.
pub const VERSION: u32 = 3;
/// The oldest version read.
pub const OLDEST_VERSION: u32 = 2;

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
    /// Which journal: the hash of its first record (a run's `run-start`, which names the
    /// host and the time), so the journal that began with it must hold the mark even when
    /// it was cut before its first record of the node. Absent in version 2 files (and in
    /// their marks kept by a later write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
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

    /// Remove the temporary files that killed writers of this directory left beside the
    /// ceremony files of `plan` (sa.db, the csr.db and the share bundles of its targets)
    /// here and in `shares/` ([`durable::remove_stale_temps`]); for the holder of the
    /// directory's lock, as it opens the directory. Elsewhere a dead writer's temporary file
    /// is removed only at the next write of its file, and a bundle is never written again:
    /// the second name that a writer killed between linking a bundle and unlinking its
    /// temporary name leaves would stay, and the erase of the bundle (`abort
    /// --erase-files`, the clean-up after 3d) refuses a file with another hard link.
    pub(crate) fn remove_stale_temps(&self, plan: &crate::plan::Plan) {
        let name = |path: PathBuf| path.file_name().map(ToOwned::to_owned);
        let mut files = HashSet::new();
        let mut bundles = HashSet::new();
        files.extend(name(self.sa_db()));
        for t in &plan.targets {
            files.extend(name(self.csr_db(&t.name)));
            for kind in &plan.kinds {
                for index in &plan.share_indices {
                    bundles.extend(name(self.bundle(&t.name, *kind, *index)));
                }
            }
        }
        durable::remove_stale_temps(&self.dir, &files);
        durable::remove_stale_temps(&self.shares_dir(), &bundles);
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
pub fn read_optional<T: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static>(
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

/// Decode the bytes of `path` (see [`read_optional`]). sa.db and csr.db decode once per
/// version of their bytes ([`decoded_cache`]); other files (share bundles, sensitive) are
/// not kept.
fn decode_bytes<T: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static>(
    path: &Path,
    bytes: &[u8],
    format: &str,
    plan: &crate::plan::Plan,
) -> Result<T, FileError> {
    let decode = || {
        envelope::decode::<T>(path, bytes, format, VERSION, Some(&plan.id)).map_err(|e| {
            // A file of an older version fails as a body of another layout: say so plainly.
            match envelope::peek(path, bytes) {
                Ok(h)
                    if matches!(e, FileError::Corrupt { .. })
                        && h.format == format
                        && h.version >= 1
                        && h.version < OLDEST_VERSION =>
                {
                    FileError::OlderVersion {
                        path: path.into(),
                        format: h.format,
                        found: h.version,
                        supported: OLDEST_VERSION,
                    }
                }
                _ => e,
            }
        })
    };
    // Only the public files (an allow-list: a format added later is not kept by default).
    let decoded = if format == SA_DB_FORMAT || format == CSR_DB_FORMAT {
        decoded_cache::decode(bytes, format, &plan.id, decode)?
    } else {
        decode()?
    };
    // The layout alone does not make a file new: a version no mkclone writes any more is
    // refused even with a body of today's layout (an edit, never a writer).
    if decoded.version < OLDEST_VERSION {
        return Err(FileError::OlderVersion {
            path: path.into(),
            format: format.into(),
            found: decoded.version,
            supported: OLDEST_VERSION,
        });
    }
    decoded.require_rehearsal(path, plan.rehearsal)?;
    Ok(decoded.body)
}

/// sa.db and csr.db decoded once for each version of their bytes. A `clone` reads them
/// again at every phase (each phase holds what it reads to the anchor and the plan,
/// whoever may have changed the files meanwhile), and most of the time they have not
/// changed: decoding (three JSON passes and a digest) is what this saves, not the reading.
/// Decoding is a function of the bytes, the format, the version supported and the
/// ceremony id, so a success replayed for the same SHA-256 of the bytes is the same
/// success; failures are never kept (their messages name the path). Only public files:
/// what is kept stays in memory until the process ends.
mod decoded_cache {
    use std::any::{Any, TypeId};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};

    use crate::envelope::Decoded;
    use crate::error::FileError;

    type Key = (TypeId, String, String, [u8; 32]);
    type Entry = Arc<dyn Any + Send + Sync>;

    /// Enough for every sa.db and csr.db version of a 1 -> 15 ceremony; emptied when full.
    const CAPACITY: usize = 256;

    static CACHE: Mutex<Option<HashMap<Key, Entry>>> = Mutex::new(None);

    pub(super) fn decode<T: Clone + Send + Sync + 'static>(
        bytes: &[u8],
        format: &str,
        ceremony: &str,
        decode: impl FnOnce() -> Result<Decoded<T>, FileError>,
    ) -> Result<Decoded<T>, FileError> {
        let key: Key = (
            TypeId::of::<T>(),
            format.to_owned(),
            ceremony.to_owned(),
            crate::digest::sha256(bytes),
        );
        let hit = {
            let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
            cache
                .as_ref()
                .and_then(|c| c.get(&key))
                .and_then(|e| e.downcast_ref::<Decoded<T>>())
                .cloned()
        };
        if let Some(decoded) = hit {
            return Ok(decoded);
        }
        let decoded = decode()?;
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        let cache = cache.get_or_insert_with(HashMap::new);
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        cache.insert(key, Arc::new(decoded.clone()));
        Ok(decoded)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::path::Path;

        #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        struct Body {
            value: u32,
        }

        fn decoded(value: u32) -> Decoded<Body> {
            Decoded {
                format: "mkclone-test".into(),
                version: 1,
                ceremony: "c".into(),
                rehearsal: true,
                digest: String::new(),
                body: Body { value },
            }
        }

        /// The same bytes decode once; other bytes, another ceremony id or another format
        /// decode anew; a failure is not kept, so the next read decodes again.
        #[test]
        fn decodes_once_per_bytes_and_never_keeps_a_failure() {
            let calls = std::cell::Cell::new(0);
            let run = |bytes: &[u8], format: &str, ceremony: &str, ok: bool| {
                decode(bytes, format, ceremony, || {
                    calls.set(calls.get() + 1);
                    if ok {
                        Ok(decoded(bytes.len() as u32))
                    } else {
                        Err(FileError::Corrupt {
                            path: Path::new("x").into(),
                            detail: "changed".into(),
                        })
                    }
                })
            };
            let unique = b"decoded-cache-test-bytes-1";
            assert_eq!(run(unique, "f", "c", true).unwrap(), decoded(26));
            assert_eq!(run(unique, "f", "c", true).unwrap(), decoded(26));
            assert_eq!(calls.get(), 1, "the same bytes are decoded once");
            run(b"decoded-cache-test-bytes-2", "f", "c", true).unwrap();
            run(unique, "f", "other ceremony", true).unwrap();
            run(unique, "g", "c", true).unwrap();
            assert_eq!(
                calls.get(),
                4,
                "other bytes, ceremony or format: decoded anew"
            );
            let tampered = b"decoded-cache-test-bytes-X";
            assert!(run(tampered, "f", "c", false).is_err());
            assert!(run(tampered, "f", "c", false).is_err());
            assert_eq!(calls.get(), 6, "a failure is decoded again, never replayed");
        }
    }
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
/// most of them have not changed. An entry keeps the file it was read from **open**, with
/// the SHA-256 of its bytes. The next look is one `lstat` of the path: when it names that
/// same file (device and inode; a kept file's inode cannot be given to another file while
/// it is open), its bytes are read again through the kept descriptor (`pread`) and hashed,
/// and decoded only if the hash differs; any other file at the path is opened and read as
/// the first time.
///
/// The bytes are always read: no timestamp or size is trusted to tell a change. A write
/// through a shared mapping changes a file's bytes without moving its mtime or ctime until
/// the page is written back (on tmpfs, never), and `write(2)` moves them before it copies
/// the bytes (a write stalled in between looks old); a cache keyed by `lstat` missed both.
/// At most [`KEPT_FILES`] files stay open; beyond, an entry keeps only its hash.
#[derive(Debug, Default)]
pub struct ProvenanceCache {
    decoded: std::sync::Mutex<BTreeMap<PathBuf, Decoded>>,
}

/// How many files the cache keeps open at most (a 1 -> 10 clone has 71 files to watch), and
/// never more than a quarter of the process's soft limit of open files (commonly 1024;
/// hardened hosts set 256), so that the phases' own opens do not run out.
const KEPT_FILES: usize = 256;

/// [`KEPT_FILES`], or a quarter of the soft limit if lower: read once per process (not at
/// every look at a file).
fn kept_files_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let quarter = mkclone_durable::open_files_limit()
            .map_or(0, |soft| usize::try_from(soft / 4).unwrap_or(usize::MAX));
        KEPT_FILES.min(quarter)
    })
}

/// A file's bytes as last read: the file itself, still open (with its device and inode),
/// the SHA-256 of the bytes, and their provenance if they decoded.
#[derive(Clone, Debug)]
struct Decoded {
    kept: Option<Kept>,
    digest: [u8; 32],
    provenance: Option<Provenance>,
}

/// An open file and the device and inode it had when opened.
#[derive(Clone, Debug)]
struct Kept {
    file: std::sync::Arc<std::fs::File>,
    dev: u64,
    ino: u64,
}

impl ProvenanceCache {
    /// The files of [`files_written_by`] `node` that decode, with their provenance (files
    /// that do not decode are for the phases to report), by path. A file that exists and
    /// cannot be read (a link or a FIFO put at its path, an I/O error, no descriptor left)
    /// is an error naming it: its marks cannot be left unchecked.
    pub fn written_by(
        &self,
        layout: &Layout,
        plan: &crate::plan::Plan,
        node: &str,
    ) -> Result<Vec<(String, Provenance)>, FileError> {
        let mut out = Vec::new();
        for (path, format) in files_written_by(layout, plan, node) {
            if let Some(p) = self.provenance(&path, format, plan)? {
                out.push((path.display().to_string(), p));
            }
        }
        Ok(out)
    }

    /// The provenance of one file, read now: through the kept descriptor when the path
    /// still names the kept file, else opened anew; decoded only when its hash changed (the
    /// lock is not held while reading: phases on other threads check theirs). `None` when
    /// no file is there or it does not decode.
    fn provenance(
        &self,
        path: &Path,
        format: &'static str,
        plan: &crate::plan::Plan,
    ) -> Result<Option<Provenance>, FileError> {
        use std::os::unix::fs::MetadataExt;
        let lock = || {
            self.decoded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let forget = |e: FileError| {
            lock().remove(path);
            if e.is_not_found() { Ok(None) } else { Err(e) }
        };
        let cached = lock().get(path).cloned();
        // Most of the files a node may write do not exist yet (the bundles of later
        // targets): one `lstat` says so.
        let now = match std::fs::symlink_metadata(path) {
            Ok(now) => now,
            Err(e) => return forget(io_error(path, "examine the file for its journal marks")(e)),
        };
        let same = cached
            .as_ref()
            .and_then(|c| c.kept.clone())
            .filter(|k| now.file_type().is_file() && now.dev() == k.dev && now.ino() == k.ino);
        // A read through the kept descriptor that fails (EIO, a handle gone stale) is made
        // again on the file opened anew, which reports its own failure.
        let read = same.and_then(|kept| {
            envelope::read_all_at(&kept.file)
                .ok()
                .map(|bytes| (bytes, Some(kept)))
        });
        let (bytes, kept) = match read {
            Some(read) => read,
            None => match envelope::read_bytes_kept(path) {
                Ok((bytes, file)) => (bytes, keepable(file)),
                Err(e) => return forget(e),
            },
        };
        let digest = crate::digest::sha256(&bytes[..]);
        let provenance = match cached {
            Some(c) if c.digest == digest => c.provenance,
            _ => provenance_of(path, &bytes, format, plan),
        };
        let budget = kept_files_budget();
        let mut entries = lock();
        let open = entries.values().filter(|d| d.kept.is_some()).count();
        let kept_before = entries.get(path).is_some_and(|d| d.kept.is_some());
        let kept = kept.filter(|_| kept_before || open < budget);
        entries.insert(
            path.to_path_buf(),
            Decoded {
                kept,
                digest,
                provenance: provenance.clone(),
            },
        );
        Ok(provenance)
    }
}

/// A file just read, to keep open for the next look: only on a local filesystem, where the
/// same device and inode name the same file while it is open and a read sees every write
/// at once. On NFS, a read through a descriptor kept open may be served from the client's
/// cache, which only a new open revalidates.
fn keepable(file: std::fs::File) -> Option<Kept> {
    use std::os::unix::fs::MetadataExt;
    if !mkclone_durable::is_local_filesystem(&file) {
        return None;
    }
    let meta = file.metadata().ok()?;
    Some(Kept {
        dev: meta.dev(),
        ino: meta.ino(),
        file: std::sync::Arc::new(file),
    })
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

#[cfg(test)]
mod provenance_cache_tests {
    use super::*;

    /// A temporary directory on a local filesystem (where files are kept open): TMPDIR's,
    /// else /dev/shm.
    fn local_tempdir() -> tempfile::TempDir {
        let local = |dir: tempfile::TempDir| {
            let probe = dir.path().join("probe");
            std::fs::write(&probe, b"").unwrap();
            let file = std::fs::File::open(&probe).unwrap();
            mkclone_durable::is_local_filesystem(&file).then_some(dir)
        };
        local(tempfile::tempdir().unwrap())
            .or_else(|| local(tempfile::tempdir_in("/dev/shm").ok()?))
            .expect("these tests need TMPDIR or /dev/shm on ext2/3/4, XFS, Btrfs or tmpfs")
    }

    /// The provenance the cache gives `path` now, which must not be an error.
    fn read(cache: &ProvenanceCache, path: &Path, plan: &crate::plan::Plan) -> Option<Provenance> {
        cache.provenance(path, SA_DB_FORMAT, plan).unwrap()
    }

    /// A cache, a plan, and the path of an sa.db in a local temporary directory.
    fn cache_and_sa_db() -> (
        tempfile::TempDir,
        crate::plan::Plan,
        ProvenanceCache,
        PathBuf,
    ) {
        let dir = local_tempdir();
        let path = dir.path().join("sa.db");
        let plan = crate::plan::test_plan("cache", true);
        (dir, plan, ProvenanceCache::default(), path)
    }

    /// Every file looked at has an entry, and no more than `KEPT_FILES` of them (or a
    /// quarter of the process's limit of open files) keep their file open; those beyond
    /// are read anew each time.
    #[test]
    fn at_most_kept_files_stay_open() {
        let dir = local_tempdir();
        let plan = crate::plan::test_plan("cache", true);
        let cache = ProvenanceCache::default();
        let count = KEPT_FILES + 20;
        for i in 0..count {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, b"not a ceremony file").unwrap();
            assert!(read(&cache, &path, &plan).is_none());
            // A second look goes through the kept file, or reads anew: the same answer.
            assert!(read(&cache, &path, &plan).is_none());
        }
        let entries = cache.decoded.lock().unwrap();
        assert_eq!(entries.len(), count);
        let open = entries.values().filter(|d| d.kept.is_some()).count();
        assert_eq!(open, kept_files_budget());
        assert!(kept_files_budget() <= KEPT_FILES);
    }

    /// A file gone, or replaced by another (a new inode), is never answered from the kept
    /// one.
    #[test]
    fn a_removed_or_replaced_file_is_not_answered_from_the_kept_one() {
        let (dir, plan, cache, path) = cache_and_sa_db();
        let digest_of = |cache: &ProvenanceCache| cache.decoded.lock().unwrap()[&path].digest;
        std::fs::write(&path, b"first").unwrap();
        read(&cache, &path, &plan);
        assert!(cache.decoded.lock().unwrap()[&path].kept.is_some());
        let first = digest_of(&cache);
        let other = dir.path().join("other");
        std::fs::write(&other, b"second").unwrap();
        std::fs::rename(&other, &path).unwrap();
        read(&cache, &path, &plan);
        assert_ne!(digest_of(&cache), first);
        std::fs::remove_file(&path).unwrap();
        assert!(read(&cache, &path, &plan).is_none());
        assert!(!cache.decoded.lock().unwrap().contains_key(&path));
    }

    /// A link or a FIFO put where a node's file belongs, kept open before or not, is an
    /// error naming the path: the marks of a file that exists are never skipped.
    #[test]
    fn a_link_or_fifo_at_a_watched_path_is_an_error_naming_it() {
        let (dir, plan, cache, path) = cache_and_sa_db();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"not a ceremony file").unwrap();
        std::fs::write(&path, b"not a ceremony file").unwrap();
        assert!(read(&cache, &path, &plan).is_none());
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let err = cache.provenance(&path, SA_DB_FORMAT, &plan).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(!cache.decoded.lock().unwrap().contains_key(&path));
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let err = cache.provenance(&path, SA_DB_FORMAT, &plan).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
