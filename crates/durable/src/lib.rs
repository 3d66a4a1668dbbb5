//! Durable files of mkclone: atomic replacement, exclusive creation, the safe opening of
//! files and directories, and the one lock. Used by the ceremony (its directory's files),
//! the simulator (its card files) and the PKCS#11 backend (its token lock).
//!
//! - [`write_atomic`] replaces a file so that a reader (or a crash) sees either the old
//!   contents or the new, never a mix: a temporary file in the same directory, created
//!   `O_EXCL` with the final mode ([`Sensitivity`]), is written and fsynced, renamed over the
//!   target, and the directory is fsynced ([`sync_dir`]).
//! - [`create_new_exclusive`] creates a file that must never be overwritten (share bundles):
//!   the same temporary file, then a hard link to the target name, which fails atomically
//!   when the target exists (without hard links, a rename with `RENAME_NOREPLACE`); the
//!   target is therefore either absent or complete, except on a file system that takes
//!   neither, where it is written directly (a warning says a crash could cut it).
//!   [`write_atomic_kept`] is [`write_atomic`] returning the file written, still open: its
//!   holder can tell later, from the path's device and inode, that the path still names it.
//! - [`LockFile`] is the one lock: an exclusive `flock` on a lock file whose path the caller
//!   chooses, created 0600, in which the holder names itself (pid and command).
//!   [`ReusableLock`] is the same lock kept open by one holder that takes it again and again
//!   (a simulated card's, at each request): opened and checked once, one `flock`, one
//!   `lstat` and one `pread` per hold.
//! - [`open_regular`] opens a file to read, append or erase it: never through a symbolic
//!   link, never a FIFO, device, directory or socket, never in a linked directory; to
//!   erase, never a file with other hard links or of another user.
//! - [`check_private_dir`] is the one check of a private directory (a ceremony directory
//!   and its `shares/`): a real directory, this user's, writable by nobody else.
//!   [`create_private_dir`] creates one (and the missing directories above it) mode 0700
//!   whatever the umask, then checks it.
//!
//! Temporary files are named `.<target name>.<pid>.<counter>.mkclone-tmp`. A crash can leave
//! one behind; readers never look at them (they read the target name only), and a process's
//! first write of the same target removes those whose process no longer exists
//! ([`remove_stale_temps`] does it for a whole directory, [`remove_stale_temps_of`] for one
//! target). A target never written again (a share bundle) would keep its own for good, and a
//! writer of [`create_new_exclusive`] killed between its link and its unlink leaves a second
//! name of the file it created: [`remove_stale_temps_in_private_dir`], for the holder of a
//! private directory's lock as it opens it, removes a dead writer's temporary files whose
//! target exists (never through a link, only regular files of this user, and not one whose
//! target is missing: it may hold the only copy of a write cut short). "No longer exists" is
//! judged by `/proc/<pid>` in this host's process namespace: no process has the pid, or the
//! one that has it started after the file was last written (pids are given again after a
//! crash and a restart: [`writer_may_be_alive`]); without `/proc` nothing is removed.
//!
//! - [`WipingBuffer`] is where the text of a file holding secrets is built: it wipes the
//!   blocks it outgrows.
//!
//! Every error is a [`DurableError`] naming the file and saying what to do. This crate
//! depends on no other crate of mkclone.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod dir;
mod entry;
mod error;
mod lock;
mod mode;
mod open;
mod process;
mod read;
mod temp;
#[cfg(test)]
mod test_support;
mod wiping;
mod write;

use std::ffi::OsStr;
use std::io;
use std::path::Path;

pub use dir::{check_private_dir, create_private_dir, sync_dir};
pub use error::{DurableError, io_error};
pub use lock::{LockFile, LockHold, ReusableLock};
pub use mode::{Sensitivity, set_exact_mode};
pub use open::{
    Access, effective_uid, is_local_filesystem, is_network_filesystem, open_files_limit,
    open_regular,
};
pub use process::{holder_command, pid_may_be_alive, writer_may_be_alive};
pub use read::{TooLarge, read_all_capped};
pub use temp::{
    TempOf, remove_stale_files, remove_stale_temps, remove_stale_temps_in_private_dir,
    remove_stale_temps_of, temps_of,
};
pub use wiping::WipingBuffer;
pub use write::{create_new_exclusive, write_atomic, write_atomic_kept};

/// Directory and file name of a target path (the directory of a bare name is ".").
fn split_target(path: &Path) -> Result<(&Path, &OsStr), DurableError> {
    let name = path.file_name().ok_or_else(|| DurableError::Io {
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
