//! Temporary files next to their target, and the removal of those a crashed writer left.
//!
//! A temporary file is named `.<target name>.<pid>.<counter>.mkclone-tmp`: the writer's
//! pid, so that a later writer can tell whether it is still at work. Readers never look at
//! them (they read the target name only); [`remove_stale_temps`] and
//! [`remove_stale_temps_of`] remove those whose process no longer exists
//! ([`pid_may_be_alive`]).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{DurableError, io_error};
use crate::mode::{Sensitivity, set_exact_mode};
use crate::process::pid_may_be_alive;
use crate::split_target;

const TEMP_SUFFIX: &[u8] = b".mkclone-tmp";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Remove the temporary files that crashed writers left in `dir` (all targets). Only files
/// whose writer process no longer exists are removed; returns their paths. Call it holding
/// the lock that the directory's writers hold.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>, DurableError> {
    remove_stale_temps_for(dir, None)
}

/// [`remove_stale_temps`] for the temporary files of one target, `path`, only.
pub fn remove_stale_temps_of(path: &Path) -> Result<Vec<PathBuf>, DurableError> {
    let (dir, name) = split_target(path)?;
    remove_stale_temps_for(dir, Some(name))
}

/// Best-effort cleaning before a write: failures are logged, never fatal. A process lists a
/// directory for temporary files whose writer is gone once, at its first write there, and
/// notes the targets they belong to; each target's are removed at that target's first
/// write (only this target's: another target's may be a live writer's, under a lock this
/// process does not hold, seen as gone from another pid namespace). Not at every write:
/// a crashed writer is an earlier process (one that crashes meanwhile leaves files that
/// the next opening or process finds), and listing a ceremony directory at each of the
/// hundreds of writes of a 1 -> 10 clone cost more than anything the writes do besides
/// syncing. Keyed by the path as given (a directory removed and made again under the same
/// path in one process is not listed again: nothing of an earlier process can be in it); a
/// listing that fails is tried again at the next write.
pub(crate) fn clean_before_write(dir: &Path, name: &OsStr) {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Mutex, PoisonError};
    /// By directory: the targets with temporary files of a writer that was gone when the
    /// directory was listed, not yet cleaned.
    static STALE: Mutex<Option<HashMap<PathBuf, HashSet<Vec<u8>>>>> = Mutex::new(None);

    let mut stale = STALE.lock().unwrap_or_else(PoisonError::into_inner);
    let stale = stale.get_or_insert_with(HashMap::new);
    if !stale.contains_key(dir) {
        match stale_targets(dir) {
            Ok(targets) => {
                stale.insert(dir.to_path_buf(), targets);
            }
            Err(e) => {
                log::warn!("could not look for stale temporary files: {e}");
                return;
            }
        }
    }
    let Some(targets) = stale.get_mut(dir) else {
        return;
    };
    if targets.remove(name.as_bytes())
        && let Err(e) = remove_stale_temps_for(dir, Some(name))
    {
        log::warn!("could not remove stale temporary files: {e}");
    }
}

/// The targets (names) of the temporary files in `dir` whose writer no longer exists.
fn stale_targets(dir: &Path) -> Result<std::collections::HashSet<Vec<u8>>, DurableError> {
    let entries = fs::read_dir(dir).map_err(io_error(dir, "list the directory"))?;
    let mut targets = std::collections::HashSet::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list the directory"))?;
        if let Some((name, pid)) = parse_temp_name(entry.file_name().as_bytes())
            && !pid_may_be_alive(pid)
        {
            targets.insert(name.to_vec());
        }
    }
    Ok(targets)
}

fn remove_stale_temps_for(
    dir: &Path,
    target: Option<&OsStr>,
) -> Result<Vec<PathBuf>, DurableError> {
    remove_stale_files(dir, |file_name| {
        let (name, pid) = parse_temp_name(file_name.as_bytes())?;
        target.is_none_or(|t| t.as_bytes() == name).then_some(pid)
    })
}

/// Remove the files of `dir` that `writer_of` names as written by a process (it returns
/// the writer's pid from the file name, `None` for any other file) that no longer exists
/// ([`pid_may_be_alive`]); returns their paths. Only plain files are removed, never what
/// a link points to. For temporary files named otherwise than this crate names them (those
/// of an earlier mkclone); [`remove_stale_temps`] is this with this crate's names.
pub fn remove_stale_files(
    dir: &Path,
    writer_of: impl Fn(&OsStr) -> Option<u32>,
) -> Result<Vec<PathBuf>, DurableError> {
    let entries = fs::read_dir(dir).map_err(io_error(dir, "list the directory"))?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list the directory"))?;
        let Some(pid) = writer_of(&entry.file_name()) else {
            continue;
        };
        if pid_may_be_alive(pid) {
            continue;
        }
        let path = entry.path();
        // Only plain files: never follow or remove anything else that happens to match.
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                log::warn!(
                    "removed {}, a temporary file left by an interrupted mkclone (pid {pid})",
                    path.display()
                );
                removed.push(path);
            }
            Err(e) => log::warn!(
                "could not remove stale temporary file {}: {e}",
                path.display()
            ),
        }
    }
    Ok(removed)
}

/// `.<name>.<pid>.<counter>.mkclone-tmp` → (name, pid).
fn parse_temp_name(file_name: &[u8]) -> Option<(&[u8], u32)> {
    let inner = file_name.strip_prefix(b".")?.strip_suffix(TEMP_SUFFIX)?;
    let mut parts = inner.rsplitn(3, |&b| b == b'.');
    let counter = parts.next()?;
    let pid = parts.next()?;
    let name = parts.next()?;
    if name.is_empty() || counter.is_empty() || !counter.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pid = std::str::from_utf8(pid).ok()?.parse::<u32>().ok()?;
    Some((name, pid))
}

fn temp_name(name: &OsStr, pid: u32, counter: u64) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".{pid}.{counter}"));
    s.push(OsStr::from_bytes(TEMP_SUFFIX));
    s
}

/// A temporary file next to its target; removed on drop unless renamed or linked away.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    file: File,
    armed: bool,
}

impl TempFile {
    pub(crate) fn create(
        dir: &Path,
        name: &OsStr,
        sensitivity: Sensitivity,
    ) -> Result<Self, DurableError> {
        Self::create_for_pid(dir, name, sensitivity, std::process::id())
    }

    /// `pid` is part of the name; tests pass another one to simulate a crashed process.
    fn create_for_pid(
        dir: &Path,
        name: &OsStr,
        sensitivity: Sensitivity,
        pid: u32,
    ) -> Result<Self, DurableError> {
        let mut attempts = 0;
        loop {
            let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(temp_name(name, pid, counter));
            // create_new: O_EXCL, so never an existing file nor a symlink planted there.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(sensitivity.mode())
                .open(&path)
            {
                Ok(file) => {
                    let tmp = Self {
                        path,
                        file,
                        armed: true,
                    };
                    set_exact_mode(&tmp.file, &tmp.path, sensitivity)?;
                    return Ok(tmp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 64 => {
                    attempts += 1;
                }
                Err(e) => return Err(io_error(&path, "create a temporary file")(e)),
            }
        }
    }

    pub(crate) fn write_and_sync(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.sync_all())
            .map_err(io_error(&self.path, "write and sync the temporary file"))
    }

    /// A second handle on the file (`dup`), for a caller that keeps it open after the
    /// rename.
    pub(crate) fn keep_open(&self) -> Result<File, DurableError> {
        self.file
            .try_clone()
            .map_err(io_error(&self.path, "keep the written file open"))
    }

    pub(crate) fn rename_onto(mut self, target: &Path) -> Result<(), DurableError> {
        fs::rename(&self.path, target)
            .map_err(io_error(target, "rename the temporary file onto"))?;
        self.armed = false;
        Ok(())
    }

    /// Remove now (logging a failure) instead of silently on drop.
    pub(crate) fn remove(mut self) {
        self.armed = false;
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!(
                "could not remove temporary file {}: {e}",
                self.path.display()
            );
        }
    }

    /// Simulate a crash: leave the file where it is.
    #[cfg(test)]
    fn abandon(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::test_support::{DEAD_PID, mode, names};
    use crate::write_atomic;

    /// Leave in `dir` a temporary file for each of `targets`, as a crashed (dead) writer would.
    fn leave_dead_temps(dir: &Path, targets: &[&str]) {
        for name in targets {
            TempFile::create_for_pid(dir, OsStr::new(name), Sensitivity::Secret, DEAD_PID)
                .unwrap()
                .abandon();
        }
    }

    #[test]
    fn temp_file_is_secret_from_creation() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempFile::create(dir.path(), OsStr::new("t"), Sensitivity::Secret).unwrap();
        assert_eq!(mode(&tmp.path), 0o600);
        let p = tmp.path.clone();
        drop(tmp);
        assert!(!p.exists(), "an unused temp file is removed on drop");
    }

    #[test]
    fn crash_before_rename_leaves_target_alone_and_next_write_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sa.db");
        // Written by an earlier process (this one has not written this target yet).
        fs::write(&target, b"old").unwrap();

        // A process (now dead) wrote and synced its temp file, then crashed before renaming.
        let mut tmp = TempFile::create_for_pid(
            dir.path(),
            OsStr::new("sa.db"),
            Sensitivity::Public,
            DEAD_PID,
        )
        .unwrap();
        tmp.write_and_sync(b"half-done").unwrap();
        let stale = tmp.path.clone();
        tmp.abandon();
        // A temp file of this (live) process for another target, and an unrelated dotfile.
        let mut mine =
            TempFile::create(dir.path(), OsStr::new("other"), Sensitivity::Public).unwrap();
        mine.write_and_sync(b"in progress").unwrap();
        let mine_path = mine.path.clone();
        mine.abandon();
        fs::write(dir.path().join(".notes"), b"keep").unwrap();

        assert!(stale.exists());
        assert_eq!(
            fs::read(&target).unwrap(),
            b"old",
            "readers see the old contents"
        );

        write_atomic(&target, b"new", Sensitivity::Public).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(!stale.exists(), "the dead writer's temp file is removed");
        assert!(
            mine_path.exists(),
            "a live process's temp file is left alone"
        );
        assert!(dir.path().join(".notes").exists());
    }

    /// A write removes the dead writers' temporary files of its own target only; another
    /// target's wait for that target's first write (its writer may hold a lock of its own).
    #[test]
    fn a_write_removes_only_its_own_targets_stale_temps() {
        let dir = tempfile::tempdir().unwrap();
        leave_dead_temps(dir.path(), &["card-03.json", "card-04.json"]);
        write_atomic(&dir.path().join("card-03.json"), b"3", Sensitivity::Public).unwrap();
        let left = names(dir.path());
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().any(|n| n.contains("card-04.json")), "{left:?}");
        write_atomic(&dir.path().join("card-04.json"), b"4", Sensitivity::Public).unwrap();
        let left = names(dir.path());
        assert_eq!(left, ["card-03.json", "card-04.json"], "{left:?}");
    }

    #[test]
    fn remove_stale_temps_whole_directory() {
        let dir = tempfile::tempdir().unwrap();
        leave_dead_temps(dir.path(), &["a", "b.db"]);
        let removed = remove_stale_temps(dir.path()).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn remove_stale_temps_of_one_target_leaves_the_others() {
        let dir = tempfile::tempdir().unwrap();
        leave_dead_temps(dir.path(), &["card-03.json", "card-04.json"]);
        // A directory that happens to match is never removed.
        let dir_match = dir
            .path()
            .join(temp_name(OsStr::new("card-03.json"), DEAD_PID - 1, 0));
        fs::create_dir(&dir_match).unwrap();
        let removed = remove_stale_temps_of(&dir.path().join("card-03.json")).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(removed[0].to_string_lossy().contains("card-03.json"));
        assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
        assert!(dir_match.is_dir());
    }

    #[test]
    fn temp_names_parse() {
        let n = temp_name(OsStr::new("a.b.db"), 42, 7);
        assert_eq!(n, ".a.b.db.42.7.mkclone-tmp");
        assert_eq!(parse_temp_name(n.as_bytes()), Some((&b"a.b.db"[..], 42)));
        // Too few parts, no dot first, an empty target, a pid or counter not a number, or
        // another suffix.
        let bad = ".x.1.mkclone-tmp x.1.2.mkclone-tmp ..1.2.mkclone-tmp .x.y.2.mkclone-tmp \
                   .x.1.z.mkclone-tmp .x.1.2.tmp";
        for bad in bad.split_whitespace() {
            assert_eq!(parse_temp_name(bad.as_bytes()), None, "{bad}");
        }
    }
}
