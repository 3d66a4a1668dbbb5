//! The ceremony's durable files: [`mkclone_durable`] (atomic replacement, exclusive
//! creation, the safe opening of files, the check of private directories, the lock) with
//! its errors as [`FileError`]s and its fsyncs counted as file-sync time, and the lock of a
//! ceremony directory, [`DirLock`].
//!
//! Every write of a ceremony file and every journal append happens while the caller holds
//! the directory's [`DirLock`]. The rules (temporary files and their removal, modes, what
//! is refused) are `mkclone_durable`'s.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};

use mkclone_backend::timing::{self, Category};
use mkclone_durable::LockFile;

use crate::FileError;

pub use mkclone_durable::{Access, DurableError, Sensitivity, effective_uid};

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE_NAME: &str = ".mkclone.lock";

/// Replace `path` atomically with `bytes` ([`mkclone_durable::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8], sensitivity: Sensitivity) -> Result<(), FileError> {
    synced(|| mkclone_durable::write_atomic(path, bytes, sensitivity))
}

/// Create `path` with `bytes`, refusing ([`DurableError::AlreadyExists`]) when it exists
/// ([`mkclone_durable::create_new_exclusive`]).
pub fn create_new_exclusive(
    path: &Path,
    bytes: &[u8],
    sensitivity: Sensitivity,
) -> Result<(), FileError> {
    synced(|| mkclone_durable::create_new_exclusive(path, bytes, sensitivity))
}

/// fsync a directory ([`mkclone_durable::sync_dir`]).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FileError> {
    synced(|| mkclone_durable::sync_dir(dir))
}

/// Open the regular file `path` of a ceremony directory for `access`, refusing anything
/// else ([`mkclone_durable::open_regular`]). A missing file is an error for which
/// [`FileError::is_not_found`] holds.
pub fn open_regular(path: &Path, access: Access) -> Result<File, FileError> {
    Ok(mkclone_durable::open_regular(path, access)?)
}

/// The check of a ceremony directory and of its `shares/`: a real directory of this user,
/// writable by nobody else ([`mkclone_durable::check_private_dir`]).
pub fn check_private_dir(dir: &Path) -> Result<(), FileError> {
    Ok(mkclone_durable::check_private_dir(dir)?)
}

/// Create the ceremony directory `dir` (and the missing ones above it) mode 0700, then
/// check it ([`mkclone_durable::create_private_dir`]).
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    Ok(mkclone_durable::create_private_dir(dir)?)
}

/// Remove the temporary files that killed writers left in the private directory `dir`
/// beside the existing files of `names` ([`mkclone_durable::remove_stale_temps_in_private_dir`]:
/// only a dead writer's, only regular files named as mkclone names them, only where the
/// file they were written for exists). Best effort: what fails is logged, and the command
/// goes on (a second name left of a bundle refuses its erase, which says what to do). A
/// missing `dir` has nothing to clean. Call it holding the directory's [`DirLock`], which
/// every writer of these files holds.
pub(crate) fn remove_stale_temps(dir: &Path, names: &HashSet<OsString>) {
    let ours = |target: &OsStr| names.contains(target);
    match mkclone_durable::remove_stale_temps_in_private_dir(dir, ours) {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => log::warn!(
            "stale temporary files of {} not removed: {e}",
            dir.display()
        ),
    }
}

/// The temporary files of `path` beside it ([`mkclone_durable::temps_of`]), for its erase.
pub fn temps_of(path: &Path) -> Result<Vec<mkclone_durable::TempOf>, FileError> {
    Ok(mkclone_durable::temps_of(path)?)
}

/// Run a durable write, counting its time as file sync (what dominates it).
fn synced<T>(write: impl FnOnce() -> Result<T, DurableError>) -> Result<T, FileError> {
    Ok(timing::measure(Category::FileSync, write)?)
}

/// The exclusive lock of a ceremony directory, held until dropped: the one lock
/// ([`LockFile`]) on `<dir>/.mkclone.lock`.
///
/// Released when the holder exits, even by a crash: a stale lock file never blocks anyone.
/// The holder writes its pid and command (`<pid>\n<program> <subcommand>\n`, never other
/// arguments) into the file, for the message of a refused [`try_acquire`].
/// Two `DirLock`s exclude each other also within one process.
///
/// [`try_acquire`]: DirLock::try_acquire
#[derive(Debug)]
pub struct DirLock {
    lock: LockFile,
    dir: PathBuf,
}

impl DirLock {
    /// Wait until the directory's lock is free, then take it.
    pub fn acquire(dir: &Path) -> Result<Self, FileError> {
        Self::take(dir, LockFile::acquire)
    }

    /// Take the directory's lock, or fail at once with [`FileError::Locked`] (naming the
    /// holder's pid and command) when another holder has it.
    pub fn try_acquire(dir: &Path) -> Result<Self, FileError> {
        Self::take(dir, LockFile::try_acquire)
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    fn take(
        dir: &Path,
        take: impl FnOnce(&Path) -> Result<LockFile, DurableError>,
    ) -> Result<Self, FileError> {
        match take(&dir.join(LOCK_FILE_NAME)) {
            Ok(lock) => {
                // The lock keeps out the mkclone processes of this machine; on a network or
                // FUSE file system perhaps not another machine's, nor do pids say whether
                // another machine's writer is alive: said, every time.
                if std::fs::File::open(dir)
                    .is_ok_and(|d| mkclone_durable::is_network_filesystem(&d))
                {
                    log::warn!(
                        "{}: the ceremony directory is on a network or FUSE file system, where its \
                         lock may not keep out mkclone on another machine: run the ceremony's \
                         commands for this directory from one server at a time",
                        dir.display()
                    );
                }
                Ok(Self {
                    lock,
                    dir: dir.into(),
                })
            }
            Err(DurableError::Locked {
                lock_file,
                pid,
                command,
            }) => Err(FileError::Locked {
                dir: dir.into(),
                lock_file,
                pid,
                command,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use mkclone_durable::holder_command;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn mkfifo(path: &Path) {
        let st = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }

    #[test]
    fn the_journal_and_carried_files_are_opened_safely() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("journal");
        fs::write(&target, b"").unwrap();
        let journal = dir.path().join(crate::journal::FILE_NAME);
        std::os::unix::fs::symlink(&target, &journal).unwrap();
        let err = crate::journal::Journal::open(dir.path(), "C-1", false).unwrap_err();
        assert!(
            matches!(&err, FileError::Durable(DurableError::SymbolicLink { path, .. }) if *path == journal),
            "{err}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"", "the link target untouched");
        fs::remove_file(&journal).unwrap();
        mkfifo(&journal);
        let err = crate::journal::Journal::open(dir.path(), "C-1", false).unwrap_err();
        assert!(
            matches!(err, FileError::Durable(DurableError::NotRegularFile { .. })),
            "{err}"
        );

        let sa_db = dir.path().join("sa.db");
        std::os::unix::fs::symlink(&target, &sa_db).unwrap();
        let err = crate::envelope::read_file::<serde_json::Value>(&sa_db, "mkclone-sa-db", 1, None)
            .unwrap_err();
        assert!(
            matches!(&err, FileError::Durable(DurableError::SymbolicLink { path, .. }) if *path == sa_db),
            "{err}"
        );
    }

    #[test]
    fn dir_lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::try_acquire(dir.path()).unwrap();
        assert_eq!(mode(lock.lock_path()), 0o600);
        let err = DirLock::try_acquire(dir.path()).unwrap_err();
        match &err {
            FileError::Locked {
                pid,
                command,
                dir: d,
                ..
            } => {
                assert_eq!(*pid, Some(std::process::id()));
                assert_eq!(command.as_deref(), Some(holder_command().as_str()));
                assert_eq!(d, dir.path());
            }
            other => panic!("{other}"),
        }
        let holder = format!("pid {} ({})", std::process::id(), holder_command());
        let msg = err.to_string();
        assert!(msg.contains("another mkclone is working in"), "{msg}");
        assert!(msg.contains(&holder), "{msg}");
        let exe = std::env::current_exe().unwrap();
        assert!(
            holder_command().starts_with(&*exe.file_name().unwrap().to_string_lossy()),
            "the program's name, without its directory: {}",
            holder_command()
        );
        drop(lock);
        let again = DirLock::try_acquire(dir.path()).unwrap();
        assert_eq!(again.dir(), dir.path());
    }

    #[test]
    fn dir_lock_acquire_waits_for_release() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let lock = DirLock::acquire(&path).unwrap();
            tx.send(()).unwrap();
            drop(lock);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "the second acquire must wait");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn dir_lock_on_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DirLock::try_acquire(&dir.path().join("nope")).unwrap_err();
        assert!(
            matches!(err, FileError::Durable(DurableError::Io { .. })),
            "{err}"
        );
    }

    #[test]
    fn durable_writes_count_as_file_sync_time() {
        let dir = tempfile::tempdir().unwrap();
        timing::enable();
        let before = timing::snapshot();
        write_atomic(&dir.path().join("sa.db"), b"x", Sensitivity::Public).unwrap();
        create_new_exclusive(&dir.path().join("share"), b"y", Sensitivity::Secret).unwrap();
        let d = timing::snapshot().since(&before);
        assert!(d.calls(Category::FileSync) >= 2, "{d:?}");
        assert!(d.nanos(Category::FileSync) > 0, "{d:?}");
    }
}
