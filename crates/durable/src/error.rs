//! The one error type of the durable-file layer.
//!
//! Every variant names the file (or directory) concerned and says what to do. A file that
//! is refused is always left untouched: nothing in this layer "repairs" a file it does not
//! trust.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a file could not be written, opened, locked or trusted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DurableError {
    /// An operating-system call failed.
    #[error(
        "{path}: could not {action}: {source}. Check that the directory exists and is writable, \
         that there is free space, and run the command again"
    )]
    Io {
        path: PathBuf,
        /// What was being done, e.g. "create a temporary file".
        action: &'static str,
        #[source]
        source: io::Error,
    },

    /// Another holder has the lock ([`LockFile`](crate::LockFile)); callers usually turn it
    /// into an error of their own that names what the lock protects.
    #[error(
        "{lock_file} is held by {}; wait for it to finish and run this command again (the lock \
         is released as soon as that process exits)",
        holder_text(.pid, .command)
    )]
    Locked {
        lock_file: PathBuf,
        /// The holder's process id as it wrote it into the lock file, if it had.
        pid: Option<u32>,
        /// The holder's program and subcommand ("mkclone clone"), if it wrote them.
        command: Option<String>,
    },

    /// Something other than a lock file where a lock file must be: a symbolic link, a hard
    /// link, a FIFO, device, directory or socket. Never used as a lock, never followed.
    #[error(
        "{path} is {what}, not mkclone's lock file; it was left untouched. Remove it (and find \
         out who put it there), then run the command again"
    )]
    NotALockFile {
        path: PathBuf,
        /// What it is, e.g. "a symbolic link".
        what: &'static str,
    },

    /// The lock file was removed by its holders (see
    /// [`LockFile::remove_on_release`](crate::LockFile::remove_on_release)) every time it
    /// was about to be taken.
    #[error(
        "{path}: the lock file was replaced {attempts} times while taking it (other commands          are starting and finishing on it); run this command again"
    )]
    LockFileReplaced { path: PathBuf, attempts: usize },

    /// A file that must never be overwritten already exists.
    #[error(
        "{path} already exists and is never overwritten; it was left untouched. If it is left \
         over from an earlier run of this step, move it away after checking it, then run the \
         command again"
    )]
    AlreadyExists { path: PathBuf },

    /// A symbolic link where a ceremony file or directory must be (never followed).
    #[error(
        "{path} is a symbolic link; mkclone never follows links in a ceremony directory: \
         replace it with the real {what} (and find out who put the link there), then run the \
         command again"
    )]
    SymbolicLink {
        path: PathBuf,
        /// "file" or "directory".
        what: &'static str,
    },

    /// A FIFO, device, directory or socket where a ceremony file must be.
    #[error(
        "{path} is {kind}, not a regular file; mkclone reads and erases only regular files in a \
         ceremony directory, and left it untouched. Remove it, put the real file in its place \
         (and find out who put it there), then run the command again"
    )]
    NotRegularFile {
        path: PathBuf,
        /// What it is, e.g. "a named pipe (FIFO)".
        kind: &'static str,
    },

    /// Something else where a ceremony directory must be.
    #[error(
        "{path} is {kind}, not a directory, so it cannot be a ceremony directory; it was left \
         untouched. Move it away, or name another directory in the configuration"
    )]
    NotADirectory { path: PathBuf, kind: &'static str },

    /// A file to erase that has other names: zero-filling it would destroy their content.
    #[error(
        "{path} has {links} hard links: zero-filling it would also destroy the content of its \
         other name(s), so it was not erased (nothing was). Find them (`find / -xdev -samefile \
         {path}`) and why they exist; remove them, or replace this name with a copy (`cp -p`), \
         then run the command again"
    )]
    HardLinked { path: PathBuf, links: u64 },

    /// A ceremony directory, or a file to erase, owned by another user.
    #[error(
        "{path} is owned by uid {owner}, not by uid {euid} who runs mkclone; mkclone only uses a \
         ceremony {what} of its own user, and left it untouched. Find out who put it there, then \
         run mkclone as its owner or replace it with a {what} of your own"
    )]
    NotOwned {
        path: PathBuf,
        /// "file" or "directory".
        what: &'static str,
        owner: u32,
        euid: u32,
    },

    /// A ceremony directory that other local users can write into.
    #[error(
        "the ceremony directory {path} is writable by {} (mode {mode:04o}): another local user \
         could plant links or swap files in it, so mkclone does not use it. Restrict it with \
         `chmod 700 {path}` (and check that nothing was planted in it), then run the command \
         again; on a filesystem without Unix permissions (FAT), mount it with dmask=077",
        writable_by(*.mode)
    )]
    DirectoryNotPrivate {
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl DurableError {
    /// The file (or a directory on its path) does not exist: an I/O error of kind
    /// `NotFound`, for callers to which a missing file is not an error.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn writable_by(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and by every user",
        (true, false) => "its group",
        _ => "every user",
    }
}

fn holder_text(pid: &Option<u32>, command: &Option<String>) -> String {
    match (pid, command) {
        (Some(pid), Some(command)) => format!("pid {pid} ({command})"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "another process (it has not written its pid yet)".to_owned(),
    }
}

/// `map_err` helper: an I/O error on `path` while doing `action`. The path is copied only
/// when there is an error (this sits on every file operation's success path too).
pub fn io_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> DurableError + 'a {
    move |source| DurableError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}
