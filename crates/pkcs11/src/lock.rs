//! The per-token lock: one `Pkcs11Backend` per token at a time, across processes and within
//! one.
//!
//! Opening a token destroys every managed object the register map does not reach (the
//! recovery of an interrupted operation). Another process that has created new objects and
//! not yet committed the map would lose them, and then commit a map pointing at missing
//! objects. So a backend holds an exclusive lock on the token for its whole life, taken
//! before recovery.
//!
//! The lock is mkclone's one lock ([`mkclone_durable::LockFile`]: `flock(2)`, mode 0600,
//! never through a link, the holder's pid and command inside) on a file named by the
//! module path's hash and the token serial, in `$XDG_RUNTIME_DIR` if set and writable, else
//! `/run/lock` if writable, else the temporary directory. Locks on separate open file
//! descriptions conflict even within one process, so a second open of the same token in one
//! process is refused too. The holder removes the file when it is done, while still holding
//! the lock ([`LockFile::remove_on_release`]); whoever takes the lock checks that the file
//! is still the one at the path (else it was removed by its last holder, and it tries
//! again).

use std::io;
use std::path::{Path, PathBuf};

use log::debug;
use mkclone_durable::{DurableError, LockFile};
use sha2::{Digest, Sha256};

use crate::error::Pkcs11Error;

/// An exclusive lock on one token, released (and its file removed) on drop.
#[derive(Debug)]
pub(crate) struct TokenLock {
    lock: LockFile,
}

/// The directories the lock file may live in, in order of preference.
fn runtime_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && xdg.is_absolute()
    {
        dirs.push(xdg);
    }
    dirs.push(PathBuf::from("/run/lock"));
    dirs.push(std::env::temp_dir());
    dirs
}

/// The lock file's name: the module (canonical path, hashed) and the token serial.
pub(crate) fn lock_file_name(module: &Path, token_serial: &str) -> String {
    let module = module
        .canonicalize()
        .unwrap_or_else(|_| module.to_path_buf());
    let digest = Sha256::digest(module.as_os_str().as_encoded_bytes());
    let hash = hex::encode(digest.get(..8).unwrap_or_default());
    let mut serial = String::new();
    for b in token_serial.trim().bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            serial.push(char::from(b));
        } else {
            serial.push_str(&format!("%{b:02x}"));
        }
    }
    format!("mkclone-pkcs11-{hash}-{serial}.lock")
}

impl TokenLock {
    /// Take the lock of the token with serial `token_serial` in `module`, or say who holds it.
    pub(crate) fn acquire(
        module: &Path,
        label: &str,
        token_serial: &str,
    ) -> Result<Self, Pkcs11Error> {
        Self::acquire_in(&runtime_dirs(), module, label, token_serial)
    }

    /// [`TokenLock::acquire`] in the first of `dirs` where the lock file can be created.
    fn acquire_in(
        dirs: &[PathBuf],
        module: &Path,
        label: &str,
        token_serial: &str,
    ) -> Result<Self, Pkcs11Error> {
        let name = lock_file_name(module, token_serial);
        let mut unusable = None;
        for dir in dirs {
            let path = dir.join(&name);
            match Self::acquire_at(path, label, token_serial)? {
                Ok(lock) => return Ok(lock),
                Err(e) => {
                    debug!("pkcs11: no lock file in {}: {}", dir.display(), e.1);
                    unusable = Some(e);
                }
            }
        }
        let (path, source) = unusable.unwrap_or_else(|| {
            (
                PathBuf::from(&name),
                io::Error::other("no directory for the lock file"),
            )
        });
        Err(Pkcs11Error::TokenLockFailed {
            label: label.into(),
            path,
            source,
        })
    }

    /// Take the lock at `path`. The inner error: the directory is missing or not writable,
    /// and the next one may be used.
    fn acquire_at(
        path: PathBuf,
        label: &str,
        token_serial: &str,
    ) -> Result<Result<Self, (PathBuf, io::Error)>, Pkcs11Error> {
        let failed = |path: PathBuf, source: io::Error| Pkcs11Error::TokenLockFailed {
            label: label.into(),
            path,
            source,
        };
        match LockFile::try_acquire(&path) {
            Ok(mut lock) => {
                lock.remove_on_release();
                Ok(Ok(Self { lock }))
            }
            Err(DurableError::Locked { pid, command, .. }) => Err(Pkcs11Error::TokenInUse {
                label: label.into(),
                serial: token_serial.into(),
                holder_pid: pid,
                holder_command: command,
                path,
            }),
            Err(DurableError::Io { source, .. }) if std::fs::symlink_metadata(&path).is_err() => {
                Ok(Err((path, source)))
            }
            // The file is there and cannot be used: never fall back to another directory,
            // where the other holder would not see this lock.
            Err(DurableError::Io { source, .. }) => Err(failed(path, source)),
            Err(DurableError::NotALockFile { what, .. }) => Err(failed(
                path,
                io::Error::other(format!("it is {what}, not mkclone's lock file: remove it")),
            )),
            Err(DurableError::LockFileReplaced { attempts, .. }) => Err(failed(
                path,
                io::Error::other(format!(
                    "the lock file was replaced {attempts} times while taking it"
                )),
            )),
            Err(other) => Err(failed(path, io::Error::other(other.to_string()))),
        }
    }

    /// The lock file's path.
    pub(crate) fn path(&self) -> &Path {
        self.lock.path()
    }
}

#[cfg(test)]
mod tests {
    use mkclone_durable::holder_command;

    use super::*;

    #[test]
    fn the_name_hashes_the_module_and_escapes_the_serial() {
        let a = lock_file_name(Path::new("/nonexistent/a.so"), "d8e157d09f375158");
        let b = lock_file_name(Path::new("/nonexistent/b.so"), "d8e157d09f375158");
        assert_ne!(a, b);
        assert!(a.starts_with("mkclone-pkcs11-") && a.ends_with("-d8e157d09f375158.lock"));
        assert_eq!(
            a.len(),
            "mkclone-pkcs11-".len() + 16 + 1 + 16 + ".lock".len()
        );
        let odd = lock_file_name(Path::new("/nonexistent/a.so"), "12/ 3 ");
        assert!(odd.ends_with("-12%2f%203.lock"), "{odd}");
    }

    const MODULE: &str = "/nonexistent/libtest-pkcs11.so";

    fn take(dirs: &[PathBuf], serial: &str) -> Result<TokenLock, Pkcs11Error> {
        TokenLock::acquire_in(dirs, Path::new(MODULE), "tok", serial)
    }

    #[test]
    fn a_missing_directory_is_skipped_and_a_held_lock_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = [dir.path().join("absent"), dir.path().to_path_buf()];
        let lock = take(&dirs, "0001").unwrap();
        assert_eq!(lock.path().parent(), Some(dir.path()));
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap(),
            format!("{}\n{}\n", std::process::id(), holder_command())
        );
        // A second take, on its own open file description, conflicts even in this process.
        match take(&dirs, "0001") {
            Err(Pkcs11Error::TokenInUse {
                holder_pid,
                holder_command: command,
                path,
                ..
            }) => {
                assert_eq!(holder_pid, Some(std::process::id()));
                assert_eq!(path, lock.path());
                assert_eq!(command.as_deref(), Some(holder_command().as_str()));
            }
            other => panic!("expected TokenInUse, got {other:?}"),
        }
        // The message names the holder's command too.
        let err = take(&dirs, "0001").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!(", held by {}): wait", holder_command())),
            "{err}"
        );
        // Another token is another lock.
        let other = take(&dirs, "0002").unwrap();
        let path = lock.path().to_path_buf();
        drop(lock);
        assert!(!path.exists(), "the holder removes its file");
        let again = take(&dirs, "0001").unwrap();
        drop((again, other));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_stale_file_is_taken_and_no_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = [dir.path().to_path_buf()];
        // Left by a holder that was killed: nobody holds its lock.
        let path = dir.path().join(lock_file_name(Path::new(MODULE), "0003"));
        std::fs::write(&path, "999999\n").unwrap();
        let lock = take(&dirs, "0003").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n{}\n", std::process::id(), holder_command())
        );
        drop(lock);
        let none = [dir.path().join("absent")];
        assert!(matches!(
            take(&none, "0003"),
            Err(Pkcs11Error::TokenLockFailed { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_in_place_of_the_file_is_refused_without_falling_back() {
        let dir = tempfile::tempdir().unwrap();
        let later = tempfile::tempdir().unwrap();
        let dirs = [dir.path().to_path_buf(), later.path().to_path_buf()];
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let path = dir.path().join(lock_file_name(Path::new(MODULE), "0004"));
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = take(&dirs, "0004").unwrap_err();
        assert!(
            matches!(err, Pkcs11Error::TokenLockFailed { .. })
                && err.to_string().contains("symbolic link"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&victim, &path).unwrap();
        let err = take(&dirs, "0004").unwrap_err();
        assert!(err.to_string().contains("hard link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(std::fs::read_dir(later.path()).unwrap().count(), 0);
    }
}
