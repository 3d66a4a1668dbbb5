//! Temporary files next to their target, and the removal of those a crashed writer left.
//!
//! A temporary file is named `.<target name>.<pid>.<counter>.mkclone-tmp`: the writer's
//! pid, so that a later writer can tell whether it is still at work. Readers never look at
//! them (they read the target name only); [`remove_stale_temps`] and
//! [`remove_stale_temps_of`] remove those whose process no longer exists
//! ([`writer_may_be_alive`]), and [`remove_stale_temps_in_private_dir`] those of them whose
//! target exists, in a private directory, when it is opened.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dir::{check_private, sync_open_dir};
use crate::error::{DurableError, io_error};
use crate::mode::{Sensitivity, set_exact_mode};
use crate::open::effective_uid;
use crate::process::writer_may_be_alive;

/// When the directory entry `entry` (not followed) was last modified, if known.
fn written(entry: &fs::DirEntry) -> Option<std::time::SystemTime> {
    entry.metadata().ok()?.modified().ok()
}
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

/// A temporary file of a target, as [`temps_of`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempOf {
    pub path: PathBuf,
    /// The writer's pid, from the name.
    pub pid: u32,
    /// Whether the writer may still run ([`writer_may_be_alive`]): a process has that pid
    /// now and did not start after the file was last written (after a restart, pids are
    /// used again; such a process may still not be the writer).
    pub pid_alive: bool,
}

/// The temporary files of `path` beside it (the names this crate gives,
/// `.<name>.<pid>.<counter>.mkclone-tmp`), whether or not `path` exists, each with whether
/// its writer's pid is alive; sorted, nothing changed. For an erase of `path`, which erases
/// these too: one whose target never got its name holds a copy of the contents that was
/// never put in place, and [`remove_stale_temps_in_private_dir`] leaves it (it may be the
/// only copy). What each one is (a regular file of this user, one link) is for the eraser
/// to check as it opens it. A missing directory has none.
pub fn temps_of(path: &Path) -> Result<Vec<TempOf>, DurableError> {
    let (dir, name) = split_target(path)?;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, "list the directory")(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list the directory"))?;
        let file_name = entry.file_name();
        if let Some((target, pid)) = parse_temp_name(file_name.as_bytes())
            && target == name.as_bytes()
        {
            found.push(TempOf {
                path: dir.join(&file_name),
                pid,
                pid_alive: writer_may_be_alive(pid, written(&entry)),
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
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
            && !writer_may_be_alive(pid, written(&entry))
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
/// ([`writer_may_be_alive`]); returns their paths. Only plain files are removed, never what
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
        if writer_may_be_alive(pid, written(&entry)) {
            continue;
        }
        let path = entry.path();
        // Only plain files: never follow or remove anything else that happens to match.
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        let unlinked = fs::remove_file(&path);
        log_removal(unlinked, path, pid, &mut removed);
    }
    Ok(removed)
}

/// Remove the temporary files that crashed writers left in the private directory `dir`
/// beside targets that exist, for the targets `is_target` accepts (by name); returns their
/// paths. For a directory whose every writer holds one lock (a ceremony directory), by the
/// holder of that lock when it opens the directory: a target that is never written again
/// (a share bundle) has its dead writers' temporary files removed here or nowhere, since
/// the others are removed at their target's next write.
///
/// `dir` is opened once, never through a symbolic link, and checked private on the open
/// directory (the rules of [`check_private_dir`](crate::check_private_dir): a directory
/// of this user, writable by nobody else); every name is then examined and removed
/// relative to that open directory (`fstatat`, `unlinkat`): no other user can put or
/// change a name in it, and no link or rename above it can send a removal elsewhere. A
/// file is removed only when
/// - its name is this crate's temporary name of a target that `is_target` accepts,
///   `.<target>.<pid>.<counter>.mkclone-tmp`, and process `pid` no longer exists
///   ([`writer_may_be_alive`]): a live writer's file is never removed;
/// - it is a regular file of this user: never a symbolic link (whatever it points to), a
///   directory or anything else whose name happens to match;
/// - its target exists, a regular file. The target holds the last complete contents then,
///   and the temporary file is either a second name of it (a writer of
///   [`create_new_exclusive`](crate::create_new_exclusive) killed between its link and its
///   unlink), or a later write never put in place, which no reader reads. One whose target
///   does not exist is left: it may hold the only copy of a write cut short (a bundle
///   written but not yet named); the target's next write removes it, as before every write.
///
/// Best effort for each file: one that cannot be examined or removed is logged and left.
/// An error only when `dir` cannot be opened or listed, or is not private (then nothing is
/// removed).
pub fn remove_stale_temps_in_private_dir(
    dir: &Path,
    is_target: impl Fn(&OsStr) -> bool,
) -> Result<Vec<PathBuf>, DurableError> {
    let euid = effective_uid();
    // The name first, for an error that says what is there instead (a link, a file, a
    // directory others can write in); then the directory as opened, whatever the name
    // points to by now, since every name below is looked up in it.
    crate::dir::check_private_dir(dir)?;
    let handle = crate::open::open_no_follow(
        OpenOptions::new().read(true),
        dir,
        ("open the directory", "examine the directory"),
        || DurableError::SymbolicLink {
            path: dir.into(),
            what: "directory",
        },
        |meta| check_private(dir, meta, euid),
    )?;

    let mut removed = Vec::new();
    for (name, pid, target) in dead_writers_temps(&handle, dir, &is_target)? {
        let path = dir.join(&name);
        match leftover_beside(&handle, &name, &target, euid) {
            Ok(Leftover::Remove) => {}
            Ok(Leftover::Keep(why)) => {
                log::info!(
                    "left {}, a temporary file of an interrupted mkclone (pid {pid}): {why}",
                    path.display()
                );
                continue;
            }
            Err(e) => {
                log::warn!(
                    "could not examine stale temporary file {}: {e}",
                    path.display()
                );
                continue;
            }
        }
        let unlinked = nix::unistd::unlinkat(
            handle.as_fd(),
            name.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        log_removal(unlinked, path, pid, &mut removed);
    }
    // Not durable, a removal may come back after a crash: it is removed again at the next
    // opening. Hence only logged.
    if !removed.is_empty()
        && let Err(e) = sync_open_dir(&handle, dir)
    {
        log::warn!("{e}");
    }
    Ok(removed)
}

/// The names in the open directory `handle` (`dir`) that are this crate's temporary names
/// of a target `is_target` accepts, written by a process that no longer exists: (name,
/// writer's pid, target name).
fn dead_writers_temps(
    handle: &File,
    dir: &Path,
    is_target: &impl Fn(&OsStr) -> bool,
) -> Result<Vec<(OsString, u32, OsString)>, DurableError> {
    let list = |e: nix::Error| io_error(dir, "list the directory")(e.into());
    // A descriptor of its own for the listing (fdopendir takes it over); the names are
    // looked up and removed through `handle`.
    let listed = handle
        .try_clone()
        .map_err(io_error(dir, "list the directory"))?;
    let mut listing = nix::dir::Dir::from_fd(listed.into()).map_err(list)?;
    let mut found = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(list)?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if let Some((target, pid)) = parse_temp_name(name.as_bytes()) {
            let target = OsStr::from_bytes(target);
            // Not followed: the entry's own time (a link's is refused later anyway).
            let written =
                nix::sys::stat::fstatat(handle, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .ok()
                    .and_then(|st| {
                        let secs = u64::try_from(st.st_mtime).ok()?;
                        let nanos = u32::try_from(st.st_mtime_nsec).ok()?;
                        Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
                    });
            if is_target(target) && !writer_may_be_alive(pid, written) {
                found.push((name.to_owned(), pid, target.to_owned()));
            }
        }
    }
    Ok(found)
}

/// Whether a dead writer's temporary file is removed: [`remove_stale_temps_in_private_dir`].
enum Leftover {
    Remove,
    /// Left, for this reason.
    Keep(&'static str),
}

/// What to do with the dead writer's temporary file `name` of `target`, both names in the
/// open directory `handle`, neither followed if a link.
fn leftover_beside(
    handle: &File,
    name: &OsStr,
    target: &OsStr,
    euid: u32,
) -> nix::Result<Leftover> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::fstatat;

    let is_regular = |mode: libc::mode_t| mode & libc::S_IFMT == libc::S_IFREG;
    let tmp = fstatat(handle.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if !is_regular(tmp.st_mode) {
        return Ok(Leftover::Keep("it is not a regular file"));
    }
    if tmp.st_uid != euid {
        return Ok(Leftover::Keep("it belongs to another user"));
    }
    match fstatat(handle.as_fd(), target, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(t) if is_regular(t.st_mode) => Ok(Leftover::Remove),
        Ok(_) => Ok(Leftover::Keep("its target is not a regular file")),
        Err(nix::Error::ENOENT) => Ok(Leftover::Keep(
            "its target does not exist, so it may hold the only copy of an interrupted write; \
             the target's next write removes it",
        )),
        Err(e) => Err(e),
    }
}

/// Say what became of a dead writer's (`pid`) temporary file `path`, and list it in
/// `removed` when it went.
fn log_removal<E: std::fmt::Display>(
    unlinked: Result<(), E>,
    path: PathBuf,
    pid: u32,
    removed: &mut Vec<PathBuf>,
) {
    match unlinked {
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

    /// Give the file the name `target` unless `target` exists (`RENAME_NOREPLACE`, through
    /// `naming`); on failure the temporary file is handed back with the error.
    pub(crate) fn rename_no_replace(
        mut self,
        target: &Path,
        naming: &crate::write::Naming,
    ) -> Result<(), (Self, io::Error)> {
        match (naming.rename_no_replace)(&self.path, target) {
            Ok(()) => {
                self.armed = false;
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
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
    use crate::test_support::{DEAD_PID, Scratch, mkfifo, mode, names};
    use crate::write_atomic;

    /// Leave in `dir` a temporary file for each of `targets`, as a crashed (dead) writer would.
    fn leave_dead_temps(dir: &Path, targets: &[&str]) {
        for name in targets {
            TempFile::create_for_pid(dir, OsStr::new(name), Sensitivity::Secret, DEAD_PID)
                .unwrap()
                .abandon();
        }
    }

    /// After a crash and a restart, a leftover temporary file's pid may be another
    /// process's: one that started after the file was written is not its writer, and the
    /// file is removed; one that started before is left alone.
    #[test]
    fn a_pid_given_again_after_the_file_was_written_is_not_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut reuser = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = reuser.id();
        let old = TempFile::create_for_pid(dir.path(), OsStr::new("old"), Sensitivity::Secret, pid)
            .unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        old.file.set_modified(an_hour_ago).unwrap();
        let old_path = old.path.clone();
        old.abandon();
        let new = TempFile::create_for_pid(dir.path(), OsStr::new("new"), Sensitivity::Secret, pid)
            .unwrap();
        let new_path = new.path.clone();
        new.abandon();
        let removed = remove_stale_temps(dir.path()).unwrap();
        let _ = reuser.kill();
        let _ = reuser.wait();
        assert_eq!(removed, std::slice::from_ref(&old_path));
        assert!(!old_path.exists());
        assert!(
            new_path.exists(),
            "its writer may be the process with that pid"
        );
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

    /// The name of a temporary file of `target` written by process `pid`.
    fn tmp_name(target: &str, pid: u32) -> String {
        temp_name(OsStr::new(target), pid, 0).into_string().unwrap()
    }

    /// The path of a temporary file of `target` in `dir` written by process `pid`.
    fn temp_of(dir: &Path, target: &str, pid: u32) -> PathBuf {
        dir.join(tmp_name(target, pid))
    }

    fn nlink(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).unwrap().nlink()
    }

    /// A writer of `create_new_exclusive` killed between its link and its unlink leaves a
    /// second name of the file it created; a writer of `write_atomic` killed before its
    /// rename leaves a later write never put in place. Both are removed at opening, and
    /// the targets keep their contents, each with one name.
    #[test]
    fn at_opening_a_dead_writers_temporary_files_beside_existing_targets_are_removed() {
        let s = Scratch::new();
        let bundle = s.path("t.sym.1.share");
        crate::create_new_exclusive(&bundle, b"share", Sensitivity::Secret).unwrap();
        let second_name = temp_of(s.dir(), "t.sym.1.share", DEAD_PID);
        fs::hard_link(&bundle, &second_name).unwrap();
        assert_eq!(nlink(&bundle), 2);
        let db = s.file("sa.db", b"old");
        let unplaced = s.file(&tmp_name("sa.db", DEAD_PID), b"new");

        let mut removed = remove_stale_temps_in_private_dir(s.dir(), |_| true).unwrap();
        removed.sort();
        let mut expected = vec![second_name, unplaced];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(names(s.dir()), ["sa.db", "t.sym.1.share"]);
        assert_eq!(nlink(&bundle), 1);
        assert_eq!(fs::read(&bundle).unwrap(), b"share");
        assert_eq!(fs::read(&db).unwrap(), b"old");
        // Nothing left: a second opening removes nothing.
        assert!(
            remove_stale_temps_in_private_dir(s.dir(), |_| true)
                .unwrap()
                .is_empty()
        );
    }

    /// A dead writer's temporary file whose target does not exist may hold the only copy of
    /// a write cut short (a bundle written, not yet named): it is left at opening, and
    /// removed, as before, by the target's next write.
    #[test]
    fn at_opening_a_dead_writers_temporary_file_without_its_target_is_left() {
        let s = Scratch::new();
        let mut tmp = TempFile::create_for_pid(
            s.dir(),
            OsStr::new("t.sym.2.share"),
            Sensitivity::Secret,
            DEAD_PID,
        )
        .unwrap();
        tmp.write_and_sync(b"only copy").unwrap();
        let only_copy = tmp.path.clone();
        tmp.abandon();

        let removed = remove_stale_temps_in_private_dir(s.dir(), |_| true).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        assert_eq!(fs::read(&only_copy).unwrap(), b"only copy");

        crate::create_new_exclusive(&s.path("t.sym.2.share"), b"share", Sensitivity::Secret)
            .unwrap();
        assert_eq!(names(s.dir()), ["t.sym.2.share"]);
    }

    /// For an erase: every temporary file of one target, whether the target exists or
    /// not, each with whether its writer's pid is alive; not another target's; none in a
    /// missing directory. Nothing is changed.
    #[test]
    fn the_temporary_files_of_one_target_are_listed_for_its_erase() {
        let s = Scratch::new();
        let target = s.path("t.sym.1.share");
        let dead = s.file(&tmp_name("t.sym.1.share", DEAD_PID), b"sealed");
        let live = s.file(&tmp_name("t.sym.1.share", std::process::id()), b"live");
        s.file(&tmp_name("t.sym.2.share", DEAD_PID), b"other");
        let mut expected = vec![
            TempOf {
                path: dead.clone(),
                pid: DEAD_PID,
                pid_alive: false,
            },
            TempOf {
                path: live,
                pid: std::process::id(),
                pid_alive: true,
            },
        ];
        expected.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(temps_of(&target).unwrap(), expected);
        assert!(dead.exists() && !target.exists());
        assert!(
            temps_of(&s.path("gone").join("t.sym.1.share"))
                .unwrap()
                .is_empty()
        );
    }

    /// A temporary file of a process that still runs (this one, another mkclone) is never
    /// removed, even a second name of an existing target; once that process is gone, it is.
    #[test]
    fn at_opening_a_live_writers_temporary_file_is_left_until_its_process_is_gone() {
        let s = Scratch::new();
        let target = s.file("t.sym.1.share", b"share");
        let mine = temp_of(s.dir(), "t.sym.1.share", std::process::id());
        fs::hard_link(&target, &mine).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let childs = temp_of(s.dir(), "t.sym.1.share", child.id());
        fs::hard_link(&target, &childs).unwrap();

        let removed = remove_stale_temps_in_private_dir(s.dir(), |_| true);
        // The child is ended before any assertion, whatever they find.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(removed.unwrap().is_empty());
        assert!(mine.exists() && childs.exists());
        assert_eq!(nlink(&target), 3);

        if Path::new("/proc/self").exists() {
            let removed = remove_stale_temps_in_private_dir(s.dir(), |_| true).unwrap();
            assert_eq!(removed, [childs]);
            assert!(mine.exists(), "this process still runs");
        }
    }

    /// Only regular files of this user, named as this crate names temporary files of a
    /// target the caller accepts, are removed: not a symbolic link (nor what it points
    /// to), a directory or a FIFO that happens to match, not another name, not the
    /// temporary file of a target that is itself a link, not another user's file.
    #[test]
    fn at_opening_only_this_users_temporary_files_of_accepted_targets_are_removed() {
        let s = Scratch::new();
        for t in ["sa.db", "card-03.json", "a", "b", "c", "d"] {
            s.file(t, b"x");
        }
        let link_target = s.file("outside", b"precious");
        let kept = [
            // A target the caller does not accept (a simulated card kept there).
            s.file(&tmp_name("card-03.json", DEAD_PID), b"card"),
            s.symlink(&tmp_name("a", DEAD_PID), &link_target),
            s.subdir(&tmp_name("b", DEAD_PID)),
            s.file(".c.999999999.0.tmp", b"x"),
            s.file("c.999999999.0.mkclone-tmp", b"x"),
        ];
        let fifo = temp_of(s.dir(), "d", DEAD_PID);
        mkfifo(&fifo);
        // A temporary file whose target is a link.
        s.symlink("e", &link_target);
        let beside_link = s.file(&tmp_name("e", DEAD_PID), b"x");
        let ours = s.file(&tmp_name("sa.db", DEAD_PID), b"x");
        // Another user's (when this test may give it away: as root).
        let others = s.file(&tmp_name("f", DEAD_PID), b"x");
        s.file("f", b"x");
        let chowned =
            effective_uid() == 0 && std::os::unix::fs::chown(&others, Some(12345), None).is_ok();

        let mut removed =
            remove_stale_temps_in_private_dir(s.dir(), |t| t != "card-03.json").unwrap();
        removed.sort();
        if chowned {
            assert_eq!(removed, [ours]);
            assert!(others.exists(), "another user's file is left");
        } else {
            let mut expected = vec![ours, others];
            expected.sort();
            assert_eq!(removed, expected);
        }
        for k in kept.iter().chain([&fifo, &beside_link]) {
            assert!(fs::symlink_metadata(k).is_ok(), "{} removed", k.display());
        }
        assert_eq!(fs::read(&link_target).unwrap(), b"precious");
    }

    /// A directory others can write in, or a link to one, is not cleaned at all: a name in
    /// it may be someone else's doing.
    #[test]
    fn at_opening_a_directory_not_private_or_a_link_is_refused_and_left_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let s = Scratch::new();
        let d = s.subdir("ceremony");
        fs::write(d.join("f"), b"f").unwrap();
        let tmp = temp_of(&d, "f", DEAD_PID);
        fs::hard_link(d.join("f"), &tmp).unwrap();

        let link = s.symlink("link", &d);
        let err = remove_stale_temps_in_private_dir(&link, |_| true).unwrap_err();
        assert!(
            matches!(&err, DurableError::SymbolicLink { path, .. } if *path == link),
            "{err}"
        );
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let err = remove_stale_temps_in_private_dir(&d, |_| true).unwrap_err();
        assert!(
            matches!(err, DurableError::DirectoryNotPrivate { .. }),
            "{err}"
        );
        assert!(tmp.exists());
        assert_eq!(nlink(&d.join("f")), 2);
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
