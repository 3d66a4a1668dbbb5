//! Durable file primitives: atomic replacement, exclusive creation, and the directory lock.
//!
//! - [`write_atomic`] replaces a file so that a reader (or a crash) sees either the old
//!   contents or the new, never a mix: a temporary file in the same directory is written and
//!   fsynced, renamed over the target, and the directory is fsynced.
//! - [`create_new_exclusive`] creates a file that must never be overwritten (share bundles):
//!   the same temporary file, then a hard link to the target name, which fails atomically when
//!   the target exists; the target is therefore either absent or complete.
//! - [`DirLock`] is the exclusive lock of a ceremony directory (`<dir>/.mkclone.lock`). Every
//!   write of a ceremony file and every journal append happens while the caller holds it.
//!
//! - [`open_regular`] opens a ceremony file to read, append or erase it: never through a
//!   symbolic link, never a FIFO, device, directory or socket, never in a linked directory;
//!   to erase, never a file with other hard links or of another user.
//! - [`check_private_dir`] is the one check of a ceremony directory (and of its `shares/`):
//!   a real directory, this user's, writable by nobody else. [`create_private_dir`] creates
//!   one (and the missing directories above it) mode 0700 whatever the umask, then checks it.
//!
//! Temporary files are named `.<target name>.<pid>.<counter>.mkclone-tmp`. A crash can leave
//! one behind; readers never look at them (they read the target name only), and the next
//! write of the same target removes those whose process no longer exists
//! ([`remove_stale_temps`] does it for a whole directory). "No longer exists" is judged by
//! `/proc/<pid>` in this host's process namespace; without `/proc` nothing is removed.

use std::ffi::OsStr;
use std::fs::{self, File, FileType, Metadata, OpenOptions, Permissions, TryLockError};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    DirBuilderExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FileError;
use crate::error::io_error;

/// Who may read a file: decides its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sensitivity {
    /// Mode 0600, from creation on (the temporary file too): never wider at any moment.
    Secret,
    /// Mode 0644.
    Public,
}

impl Sensitivity {
    /// The permission bits a file of this sensitivity gets.
    pub const fn mode(self) -> u32 {
        match self {
            Self::Secret => 0o600,
            Self::Public => 0o644,
        }
    }
}

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE_NAME: &str = ".mkclone.lock";

const TEMP_SUFFIX: &[u8] = b".mkclone-tmp";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replace `path` atomically with `bytes`, created with the mode of `sensitivity`.
///
/// On success no temporary file is left; on failure the temporary file is removed and the
/// target is unchanged (unless the failure is the final fsync of the directory, after the
/// rename: then the new contents are in place but possibly not yet durable).
pub fn write_atomic(path: &Path, bytes: &[u8], sensitivity: Sensitivity) -> Result<(), FileError> {
    let (dir, name) = split_target(path)?;
    clean_before_write(dir, name);
    let mut tmp = TempFile::create(dir, name, sensitivity)?;
    tmp.write_and_sync(bytes)?;
    tmp.rename_onto(path)?;
    sync_dir(dir)
}

/// Create `path` with `bytes`, refusing ([`FileError::AlreadyExists`]) when it exists, in
/// which case it is left untouched. The file is complete or absent, even after a crash:
/// the contents are written to a temporary file first and linked to `path` (O_EXCL
/// semantics: the link fails if the name exists). On a filesystem without hard links (FAT),
/// `path` is created directly with O_EXCL instead, and a crash may leave it incomplete (a
/// warning is logged).
pub fn create_new_exclusive(
    path: &Path,
    bytes: &[u8],
    sensitivity: Sensitivity,
) -> Result<(), FileError> {
    let (dir, name) = split_target(path)?;
    if fs::symlink_metadata(path).is_ok() {
        return Err(FileError::AlreadyExists { path: path.into() });
    }
    clean_before_write(dir, name);
    let mut tmp = TempFile::create(dir, name, sensitivity)?;
    tmp.write_and_sync(bytes)?;
    match fs::hard_link(&tmp.path, path) {
        Ok(()) => {
            tmp.remove();
            sync_dir(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tmp.remove();
            Err(FileError::AlreadyExists { path: path.into() })
        }
        Err(e) => {
            log::warn!(
                "{}: cannot hard-link a temporary file ({e}); creating the file directly, which \
                 a crash could leave incomplete",
                path.display()
            );
            tmp.remove();
            create_direct(path, bytes, sensitivity)?;
            sync_dir(dir)
        }
    }
}

/// The O_EXCL fallback of [`create_new_exclusive`]: removes what it created on failure.
fn create_direct(path: &Path, bytes: &[u8], sensitivity: Sensitivity) -> Result<(), FileError> {
    let file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(sensitivity.mode())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(FileError::AlreadyExists { path: path.into() });
        }
        Err(e) => return Err(io_error(path, "create the file")(e)),
    };
    let written = set_exact_mode(&file, path, sensitivity).and_then(|()| {
        (&file)
            .write_all(bytes)
            .and_then(|()| {
                mkclone_backend::timing::measure(
                    mkclone_backend::timing::Category::FileSync,
                    || file.sync_all(),
                )
            })
            .map_err(io_error(path, "write and sync the file"))
    });
    if written.is_err()
        && let Err(e) = fs::remove_file(path)
    {
        log::warn!(
            "{}: could not remove the incomplete file: {e}",
            path.display()
        );
    }
    written
}

/// Remove the temporary files that crashed writers left in `dir` (all targets). Only files
/// whose writer process no longer exists are removed; returns their paths. Call it while
/// holding the directory's [`DirLock`].
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    remove_stale_temps_for(dir, None)
}

/// Best-effort cleaning before a write: failures are logged, never fatal.
fn clean_before_write(dir: &Path, name: &OsStr) {
    if let Err(e) = remove_stale_temps_for(dir, Some(name)) {
        log::warn!("could not look for stale temporary files: {e}");
    }
}

fn remove_stale_temps_for(dir: &Path, target: Option<&OsStr>) -> Result<Vec<PathBuf>, FileError> {
    let entries = fs::read_dir(dir).map_err(io_error(dir, "list the directory"))?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list the directory"))?;
        let file_name = entry.file_name();
        let Some((name, pid)) = parse_temp_name(file_name.as_bytes()) else {
            continue;
        };
        if target.is_some_and(|t| t.as_bytes() != name) || pid_may_be_alive(pid) {
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

fn temp_name(name: &OsStr, pid: u32, counter: u64) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(".");
    s.push(name);
    s.push(format!(".{pid}.{counter}"));
    s.push(OsStr::from_bytes(TEMP_SUFFIX));
    s
}

/// False only when we are sure the process is gone.
fn pid_may_be_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// Directory and file name of a target path (the directory of a bare name is ".").
fn split_target(path: &Path) -> Result<(&Path, &OsStr), FileError> {
    let name = path.file_name().ok_or_else(|| FileError::Io {
        path: path.into(),
        action: "use the path",
        source: io::Error::new(io::ErrorKind::InvalidInput, "it does not name a file"),
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((dir, name))
}

/// fsync a directory, so that a rename or creation in it is durable. Filesystems that cannot
/// sync a directory (EINVAL) are tolerated.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FileError> {
    let d = File::open(dir).map_err(io_error(dir, "open the directory to sync it"))?;
    match mkclone_backend::timing::measure(mkclone_backend::timing::Category::FileSync, || {
        d.sync_all()
    }) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            log::debug!("{}: directory fsync not supported: {e}", dir.display());
            Ok(())
        }
        Err(e) => Err(io_error(dir, "sync the directory")(e)),
    }
}

/// Give a freshly created file exactly the mode of `sensitivity`, whatever the umask.
/// A secret file whose group/other bits cannot be cleared is an error; a public file that
/// cannot be widened only logs a warning.
pub(crate) fn set_exact_mode(
    file: &File,
    path: &Path,
    sensitivity: Sensitivity,
) -> Result<(), FileError> {
    let want = sensitivity.mode();
    let mode_of = |f: &File| -> Result<u32, FileError> {
        Ok(f.metadata()
            .map_err(io_error(path, "read the file's mode"))?
            .permissions()
            .mode()
            & 0o7777)
    };
    if mode_of(file)? == want {
        return Ok(());
    }
    let set = file.set_permissions(Permissions::from_mode(want));
    let have = mode_of(file)?;
    match sensitivity {
        Sensitivity::Secret if have & 0o077 != 0 => Err(FileError::Io {
            path: path.into(),
            action: "restrict the file to mode 0600 (secret files need a filesystem with Unix \
                     permissions)",
            source: set.err().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, format!("mode is {have:o}"))
            }),
        }),
        _ => {
            if have != want {
                log::warn!(
                    "{}: mode is {have:o} instead of {want:o}{}",
                    path.display(),
                    set.err().map(|e| format!(" ({e})")).unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

/// What [`open_regular`] opens a file for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reading (a carried file: `sa.db`, a `csr.db`, a share bundle, the journal).
    Read,
    /// Reading and appending (the journal).
    Append,
    /// Writing, to overwrite it with zeros before removing it. The file must moreover have
    /// no other hard link (zero-filling would destroy the other name's content) and belong
    /// to this user.
    Erase,
}

/// Open the regular file `path` of a ceremony directory for `access`, refusing anything
/// else, and return the open file. Refused, each with its own [`FileError`] naming the
/// path: a symbolic link ([`FileError::SymbolicLink`]: never followed, by `O_NOFOLLOW`),
/// a file whose directory is a symbolic link (`shares/`), a FIFO, device, directory or
/// socket ([`FileError::NotRegularFile`]: looked at with `lstat` before opening, so never
/// even opened, and checked again with `fstat` on what was opened, `O_NONBLOCK` so that
/// opening can never block); for [`Access::Erase`] also a file with more than one hard
/// link ([`FileError::HardLinked`]) or owned by another user ([`FileError::NotOwned`]).
/// A missing file is an [`FileError::Io`] for which [`FileError::is_not_found`] holds.
pub fn open_regular(path: &Path, access: Access) -> Result<File, FileError> {
    open_regular_as(path, access, effective_uid())
}

/// [`open_regular`] for a process of effective uid `euid` (tests pass another one).
fn open_regular_as(path: &Path, access: Access, euid: u32) -> Result<File, FileError> {
    // O_NOFOLLOW covers the last component only: the directory holding the file (shares/)
    // must not be a link either. A missing directory is reported by the lstat below.
    let (dir, _) = split_target(path)?;
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(FileError::SymbolicLink {
            path: dir.into(),
            what: "directory",
        });
    }
    let named = fs::symlink_metadata(path).map_err(io_error(path, "examine the file"))?;
    check_regular(path, &named, access, euid)?;
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::Append => options.read(true).append(true),
        Access::Erase => options.write(true),
    };
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    let file = match options.open(path) {
        Ok(f) => f,
        // Replaced by a link since the lstat.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(FileError::SymbolicLink {
                path: path.into(),
                what: "file",
            });
        }
        Err(e) => return Err(io_error(path, "open the file")(e)),
    };
    // What was opened, whatever the name points to now.
    let opened = file
        .metadata()
        .map_err(io_error(path, "examine the opened file"))?;
    check_regular(path, &opened, access, euid)?;
    Ok(file)
}

fn check_regular(path: &Path, meta: &Metadata, access: Access, euid: u32) -> Result<(), FileError> {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return Err(FileError::SymbolicLink {
            path: path.into(),
            what: "file",
        });
    }
    if !file_type.is_file() {
        return Err(FileError::NotRegularFile {
            path: path.into(),
            kind: kind_of(file_type),
        });
    }
    if access == Access::Erase {
        if meta.uid() != euid {
            return Err(FileError::NotOwned {
                path: path.into(),
                what: "file",
                owner: meta.uid(),
                euid,
            });
        }
        if meta.nlink() > 1 {
            return Err(FileError::HardLinked {
                path: path.into(),
                links: meta.nlink(),
            });
        }
    }
    Ok(())
}

/// What a file of `file_type` is, for messages.
fn kind_of(file_type: FileType) -> &'static str {
    if file_type.is_fifo() {
        "a named pipe (FIFO)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "of an unknown kind"
    }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The check of a ceremony directory (and of its `shares/`), made whenever one is opened
/// for work: `dir` must be a directory, not a symbolic link to one
/// ([`FileError::SymbolicLink`]), owned by this process's effective uid
/// ([`FileError::NotOwned`]), and writable by nobody else: no group or other write bit
/// ([`FileError::DirectoryNotPrivate`], whose message gives the `chmod`). Nothing is changed.
pub fn check_private_dir(dir: &Path) -> Result<(), FileError> {
    check_private_dir_as(dir, effective_uid())
}

fn check_private_dir_as(dir: &Path, euid: u32) -> Result<(), FileError> {
    let meta =
        fs::symlink_metadata(dir).map_err(io_error(dir, "examine the ceremony directory"))?;
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return Err(FileError::SymbolicLink {
            path: dir.into(),
            what: "directory",
        });
    }
    if !file_type.is_dir() {
        return Err(FileError::NotADirectory {
            path: dir.into(),
            kind: kind_of(file_type),
        });
    }
    if meta.uid() != euid {
        return Err(FileError::NotOwned {
            path: dir.into(),
            what: "directory",
            owner: meta.uid(),
            euid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(FileError::DirectoryNotPrivate {
            path: dir.into(),
            mode,
        });
    }
    Ok(())
}

/// Create the ceremony directory `dir` if it is missing, with the missing directories
/// above it, each mode 0700 whatever the umask (set explicitly after creating it, as
/// [`set_exact_mode`] does for files), then [`check_private_dir`] it. An existing
/// directory is only checked, never changed.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(d) = next.filter(|d| !d.as_os_str().is_empty()) {
        match fs::symlink_metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(d);
                next = d.parent();
            }
            Err(e) => return Err(io_error(d, "examine the directory")(e)),
        }
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {
                restrict_dir(d);
                let parent = d
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                sync_dir(parent)?;
            }
            // Made meanwhile by someone else: the check of `dir` below decides.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(d, "create the directory")(e)),
        }
    }
    check_private_dir(dir)
}

/// Set mode 0700 on the directory just created at `dir` (never through a link). A failure
/// is only logged: [`check_private_dir`] then refuses the directory with the fix.
fn restrict_dir(dir: &Path) {
    let restricted = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .and_then(|d| d.set_permissions(Permissions::from_mode(0o700)));
    if let Err(e) = restricted {
        log::warn!("{}: could not set mode 0700: {e}", dir.display());
    }
}

/// A temporary file next to its target; removed on drop unless renamed or linked away.
pub(crate) struct TempFile {
    path: PathBuf,
    file: File,
    armed: bool,
}

impl TempFile {
    fn create(dir: &Path, name: &OsStr, sensitivity: Sensitivity) -> Result<Self, FileError> {
        Self::create_for_pid(dir, name, sensitivity, std::process::id())
    }

    /// `pid` is part of the name; tests pass another one to simulate a crashed process.
    pub(crate) fn create_for_pid(
        dir: &Path,
        name: &OsStr,
        sensitivity: Sensitivity,
        pid: u32,
    ) -> Result<Self, FileError> {
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

    pub(crate) fn write_and_sync(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        self.file
            .write_all(bytes)
            .and_then(|()| {
                mkclone_backend::timing::measure(
                    mkclone_backend::timing::Category::FileSync,
                    || self.file.sync_all(),
                )
            })
            .map_err(io_error(&self.path, "write and sync the temporary file"))
    }

    fn rename_onto(mut self, target: &Path) -> Result<(), FileError> {
        fs::rename(&self.path, target)
            .map_err(io_error(target, "rename the temporary file onto"))?;
        self.armed = false;
        Ok(())
    }

    /// Remove now (logging a failure) instead of silently on drop.
    fn remove(mut self) {
        self.armed = false;
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!(
                "could not remove temporary file {}: {e}",
                self.path.display()
            );
        }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Simulate a crash: leave the file where it is.
    #[cfg(test)]
    pub(crate) fn abandon(mut self) {
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

/// The exclusive lock of a ceremony directory, held until dropped.
///
/// An advisory lock (`flock` through [`File::lock`]) on `<dir>/.mkclone.lock`, so it is
/// released when the holder exits, even by a crash: a stale lock file never blocks anyone.
/// The holder writes its pid and command (`<pid>\n<program> <subcommand>\n`, never other
/// arguments) into the file, for the message of a refused [`try_acquire`].
/// Two `DirLock`s exclude each other also within one process.
///
/// [`try_acquire`]: DirLock::try_acquire
#[derive(Debug)]
pub struct DirLock {
    file: File,
    dir: PathBuf,
    lock_path: PathBuf,
}

impl DirLock {
    /// Wait until the directory's lock is free, then take it.
    pub fn acquire(dir: &Path) -> Result<Self, FileError> {
        let (file, lock_path) = Self::open(dir)?;
        file.lock().map_err(io_error(&lock_path, "lock"))?;
        Ok(Self::held(file, dir, lock_path))
    }

    /// Take the directory's lock, or fail at once with [`FileError::Locked`] (naming the
    /// holder's pid) when another holder has it.
    pub fn try_acquire(dir: &Path) -> Result<Self, FileError> {
        let (file, lock_path) = Self::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Self::held(file, dir, lock_path)),
            Err(TryLockError::WouldBlock) => {
                let text = fs::read_to_string(&lock_path).unwrap_or_default();
                let mut lines = text.lines();
                let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
                let command = lines
                    .next()
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned);
                Err(FileError::Locked {
                    dir: dir.into(),
                    lock_file: lock_path,
                    pid,
                    command,
                })
            }
            Err(TryLockError::Error(e)) => Err(io_error(&lock_path, "lock")(e)),
        }
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    fn open(dir: &Path) -> Result<(File, PathBuf), FileError> {
        let lock_path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error(&lock_path, "open the lock file"))?;
        Ok((file, lock_path))
    }

    fn held(file: File, dir: &Path, lock_path: PathBuf) -> Self {
        // The holder only serves messages: failing to record it is not fatal.
        let holder = format!("{}\n{}\n", std::process::id(), holder_command());
        if let Err(e) = file
            .set_len(0)
            .and_then(|()| file.write_all_at(holder.as_bytes(), 0))
        {
            log::warn!("{}: could not record this pid: {e}", lock_path.display());
        }
        Self {
            file,
            dir: dir.into(),
            lock_path,
        }
    }
}

/// This process as a lock holder names itself: the program's file name and the first
/// argument that is not an option (mkclone's subcommand), e.g. "mkclone clone". Never the
/// other arguments. Twin of `holder_command` in hw-sim/src/store.rs (a later refactor will
/// merge them).
fn holder_command() -> String {
    let mut args = std::env::args_os();
    let clean = |s: &OsStr| -> String {
        String::from_utf8_lossy(s.as_bytes())
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect()
    };
    let program = args
        .next()
        .map(|a| {
            let p = PathBuf::from(a);
            clean(p.file_name().unwrap_or(p.as_os_str()))
        })
        .unwrap_or_default();
    match args.find(|a| !a.as_bytes().starts_with(b"-")) {
        Some(sub) => format!("{program} {}", clean(&sub)),
        None => program,
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Clear the pid before releasing, so a later holder's message is never about us.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A pid no process can have (above Linux's PID_MAX_LIMIT of 2^22).
    const DEAD_PID: u32 = 999_999_999;

    #[test]
    fn atomic_write_modes_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("bundle");
        let public = dir.path().join("sa.db");
        write_atomic(&secret, b"s1", Sensitivity::Secret).unwrap();
        write_atomic(&public, b"p1", Sensitivity::Public).unwrap();
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(mode(&public), 0o644);
        assert_eq!(fs::read(&secret).unwrap(), b"s1");
        assert_eq!(names(dir.path()), ["bundle", "sa.db"]);

        // Overwrite: new contents, and the new sensitivity's mode.
        write_atomic(&public, b"p2", Sensitivity::Secret).unwrap();
        assert_eq!(fs::read(&public).unwrap(), b"p2");
        assert_eq!(mode(&public), 0o600);
        assert_eq!(names(dir.path()), ["bundle", "sa.db"]);
    }

    #[test]
    fn modes_do_not_depend_on_a_wide_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"new", Sensitivity::Secret).unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn temp_file_is_secret_from_creation() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempFile::create(dir.path(), OsStr::new("t"), Sensitivity::Secret).unwrap();
        assert_eq!(mode(tmp.path()), 0o600);
        let p = tmp.path().to_path_buf();
        drop(tmp);
        assert!(!p.exists(), "an unused temp file is removed on drop");
    }

    #[test]
    fn crash_before_rename_leaves_target_alone_and_next_write_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sa.db");
        write_atomic(&target, b"old", Sensitivity::Public).unwrap();

        // A process (now dead) wrote and synced its temp file, then crashed before renaming.
        let mut tmp = TempFile::create_for_pid(
            dir.path(),
            OsStr::new("sa.db"),
            Sensitivity::Public,
            DEAD_PID,
        )
        .unwrap();
        tmp.write_and_sync(b"half-done").unwrap();
        let stale = tmp.path().to_path_buf();
        tmp.abandon();
        // A temp file of this (live) process for another target, and an unrelated dotfile.
        let mut mine =
            TempFile::create(dir.path(), OsStr::new("other"), Sensitivity::Public).unwrap();
        mine.write_and_sync(b"in progress").unwrap();
        let mine_path = mine.path().to_path_buf();
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

    #[test]
    fn remove_stale_temps_whole_directory() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b.db"] {
            TempFile::create_for_pid(dir.path(), OsStr::new(name), Sensitivity::Secret, DEAD_PID)
                .unwrap()
                .abandon();
        }
        let removed = remove_stale_temps(dir.path()).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn temp_names_parse() {
        let n = temp_name(OsStr::new("a.b.db"), 42, 7);
        assert_eq!(n, ".a.b.db.42.7.mkclone-tmp");
        assert_eq!(parse_temp_name(n.as_bytes()), Some((&b"a.b.db"[..], 42)));
        for bad in [
            &b".x.1.mkclone-tmp"[..],
            b"x.1.2.mkclone-tmp",
            b"..1.2.mkclone-tmp",
            b".x.y.2.mkclone-tmp",
            b".x.1.z.mkclone-tmp",
            b".x.1.2.tmp",
        ] {
            assert_eq!(
                parse_temp_name(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn failed_rename_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("d");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        let err = write_atomic(&target, b"x", Sensitivity::Secret).unwrap_err();
        assert!(matches!(err, FileError::Io { .. }), "{err}");
        assert!(err.to_string().contains(&*target.to_string_lossy()));
        assert_eq!(names(dir.path()), ["d"]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nope").join("f");
        let err = write_atomic(&target, b"x", Sensitivity::Public).unwrap_err();
        assert!(matches!(err, FileError::Io { .. }), "{err}");
    }

    #[test]
    fn exclusive_create_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("share-1");
        create_new_exclusive(&p, b"first", Sensitivity::Secret).unwrap();
        assert_eq!(mode(&p), 0o600);
        let err = create_new_exclusive(&p, b"second", Sensitivity::Secret).unwrap_err();
        assert!(matches!(err, FileError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["share-1"]);

        let q = dir.path().join("pub");
        create_new_exclusive(&q, b"x", Sensitivity::Public).unwrap();
        assert_eq!(mode(&q), 0o644);
        assert_eq!(names(dir.path()), ["pub", "share-1"]);
    }

    #[test]
    fn exclusive_create_refuses_a_dangling_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &p).unwrap();
        let err = create_new_exclusive(&p, b"x", Sensitivity::Secret).unwrap_err();
        assert!(matches!(err, FileError::AlreadyExists { .. }), "{err}");
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn direct_fallback_creates_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        create_direct(&p, b"x", Sensitivity::Secret).unwrap();
        assert_eq!(mode(&p), 0o600);
        let err = create_direct(&p, b"y", Sensitivity::Secret).unwrap_err();
        assert!(matches!(err, FileError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"x");
    }

    fn mkfifo(path: &Path) {
        let st = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }

    const ACCESSES: [Access; 3] = [Access::Read, Access::Append, Access::Erase];

    #[test]
    fn open_regular_opens_a_regular_file_for_each_access() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sa.db");
        fs::write(&p, b"content").unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut open_regular(&p, Access::Read).unwrap(), &mut s)
            .unwrap();
        assert_eq!(s, "content");
        open_regular(&p, Access::Append)
            .unwrap()
            .write_all(b"+")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"content+");
        open_regular(&p, Access::Erase)
            .unwrap()
            .write_all(b"00")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"00ntent+");
    }

    #[test]
    fn open_regular_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("outside");
        fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("journal.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("sa.db");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for access in ACCESSES {
            for p in [&link, &dangling] {
                let err = open_regular(p, access).unwrap_err();
                assert!(
                    matches!(&err, FileError::SymbolicLink { path, what: "file" } if path == p),
                    "{access:?}: {err}"
                );
                assert!(!err.is_not_found());
                let msg = err.to_string();
                assert!(
                    msg.contains(&*p.to_string_lossy())
                        && msg.contains("is a symbolic link; mkclone never follows links in a ceremony directory: replace it with the real file"),
                    "{msg}"
                );
            }
        }
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn open_regular_refuses_a_file_in_a_linked_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("elsewhere");
        fs::create_dir(&real).unwrap();
        fs::write(real.join("t1.sym.1.share"), b"x").unwrap();
        let shares = dir.path().join("shares");
        std::os::unix::fs::symlink(&real, &shares).unwrap();
        for access in ACCESSES {
            let err = open_regular(&shares.join("t1.sym.1.share"), access).unwrap_err();
            assert!(
                matches!(&err, FileError::SymbolicLink { path, what: "directory" } if *path == shares),
                "{err}"
            );
        }
        assert_eq!(fs::read(real.join("t1.sym.1.share")).unwrap(), b"x");
    }

    #[test]
    fn open_regular_refuses_fifos_directories_and_sockets_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (p, kind) in [
            (&fifo, "a named pipe (FIFO)"),
            (&sub, "a directory"),
            (&socket, "a socket"),
        ] {
            for access in ACCESSES {
                let err = open_regular(p, access).unwrap_err();
                match &err {
                    FileError::NotRegularFile { path, kind: k } => {
                        assert_eq!(path, p);
                        assert_eq!(*k, kind);
                    }
                    other => panic!("{access:?} {}: {other}", p.display()),
                }
                assert!(err.to_string().contains("not a regular file"), "{err}");
            }
        }
        // What is opened is checked too, not only what the name showed before.
        let null = Path::new("/dev/null");
        let meta = fs::metadata(null).unwrap();
        let err = check_regular(null, &meta, Access::Read, effective_uid()).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NotRegularFile {
                    kind: "a character device",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn erase_access_refuses_hard_links_and_other_users_files() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        let inside = dir.path().join("t1.csr.db");
        fs::hard_link(&outside, &inside).unwrap();
        // Reading through another name is harmless; zero-filling is not.
        open_regular(&inside, Access::Read).unwrap();
        let err = open_regular(&inside, Access::Erase).unwrap_err();
        assert!(
            matches!(&err, FileError::HardLinked { path, links: 2 } if *path == inside),
            "{err}"
        );
        assert!(err.to_string().contains("hard links"), "{err}");
        fs::remove_file(&outside).unwrap();
        open_regular(&inside, Access::Erase).unwrap();

        let other = effective_uid().wrapping_add(1);
        open_regular_as(&inside, Access::Read, other).unwrap();
        let err = open_regular_as(&inside, Access::Erase, other).unwrap_err();
        assert!(
            matches!(&err, FileError::NotOwned { what: "file", euid, .. } if *euid == other),
            "{err}"
        );
        assert_eq!(fs::read(&inside).unwrap(), b"precious");
    }

    #[test]
    fn open_regular_says_when_a_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        for p in [dir.path().join("none"), dir.path().join("no/dir")] {
            for access in ACCESSES {
                let err = open_regular(&p, access).unwrap_err();
                assert!(err.is_not_found(), "{err}");
            }
        }
        assert!(!dir.path().join("none").exists(), "nothing created");
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
            matches!(&err, FileError::SymbolicLink { path, .. } if *path == journal),
            "{err}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"", "the link target untouched");
        fs::remove_file(&journal).unwrap();
        mkfifo(&journal);
        let err = crate::journal::Journal::open(dir.path(), "C-1", false).unwrap_err();
        assert!(matches!(err, FileError::NotRegularFile { .. }), "{err}");

        let sa_db = dir.path().join("sa.db");
        std::os::unix::fs::symlink(&target, &sa_db).unwrap();
        let err = crate::envelope::read_file::<serde_json::Value>(&sa_db, "mkclone-sa-db", 1, None)
            .unwrap_err();
        assert!(
            matches!(&err, FileError::SymbolicLink { path, .. } if *path == sa_db),
            "{err}"
        );
    }

    #[test]
    fn a_private_directory_passes_and_others_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("ceremony");
        fs::create_dir(&d).unwrap();
        for ok in [0o700, 0o750, 0o755, 0o500] {
            fs::set_permissions(&d, Permissions::from_mode(ok)).unwrap();
            check_private_dir(&d).unwrap();
        }
        for wide in [0o770, 0o720, 0o702, 0o777, 0o1777] {
            fs::set_permissions(&d, Permissions::from_mode(wide)).unwrap();
            let err = check_private_dir(&d).unwrap_err();
            assert!(
                matches!(&err, FileError::DirectoryNotPrivate { path, mode } if *path == d && *mode == wide),
                "{wide:o}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("mode {wide:04o}"))
                    && msg.contains(&format!("chmod 700 {}", d.display())),
                "{msg}"
            );
            assert_eq!(mode(&d), wide, "the check changes nothing");
        }
        fs::set_permissions(&d, Permissions::from_mode(0o700)).unwrap();

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let err = check_private_dir(&link).unwrap_err();
        assert!(
            matches!(
                &err,
                FileError::SymbolicLink {
                    what: "directory",
                    ..
                }
            ),
            "{err}"
        );
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = check_private_dir(&file).unwrap_err();
        assert!(
            matches!(
                &err,
                FileError::NotADirectory {
                    kind: "a regular file",
                    ..
                }
            ),
            "{err}"
        );
        let other = effective_uid().wrapping_add(1);
        let err = check_private_dir_as(&d, other).unwrap_err();
        assert!(
            matches!(&err, FileError::NotOwned { what: "directory", owner, euid, .. }
                if *owner == effective_uid() && *euid == other),
            "{err}"
        );
        assert!(
            check_private_dir(&dir.path().join("none"))
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn create_private_dir_makes_every_missing_level_0700_and_only_checks_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b/ceremony");
        create_private_dir(&d).unwrap();
        for p in ["a", "a/b", "a/b/ceremony"] {
            assert_eq!(mode(&dir.path().join(p)), 0o700, "{p}");
        }
        create_private_dir(&d).unwrap();
        create_private_dir(&d.join("shares")).unwrap();
        assert_eq!(mode(&d.join("shares")), 0o700);

        let wide = dir.path().join("wide");
        fs::create_dir(&wide).unwrap();
        fs::set_permissions(&wide, Permissions::from_mode(0o777)).unwrap();
        let err = create_private_dir(&wide).unwrap_err();
        assert!(
            matches!(err, FileError::DirectoryNotPrivate { .. }),
            "{err}"
        );
        assert_eq!(mode(&wide), 0o777, "never changed behind the user's back");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        let err = create_private_dir(&link).unwrap_err();
        assert!(matches!(err, FileError::SymbolicLink { .. }), "{err}");
        assert!(
            !dir.path().join("target").exists(),
            "nothing made through it"
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
        let msg = err.to_string();
        assert!(msg.contains("another mkclone is working in"), "{msg}");
        assert!(
            msg.contains(&format!(
                "pid {} ({})",
                std::process::id(),
                holder_command()
            )),
            "{msg}"
        );
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
        assert!(matches!(err, FileError::Io { .. }), "{err}");
    }
}
