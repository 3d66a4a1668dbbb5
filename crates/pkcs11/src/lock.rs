//! The per-token lock: one `Pkcs11Backend` per token at a time, across processes and within
//! one, whatever path leads to the token.
//!
//! Opening a token destroys every managed object the register map does not reach (the
//! recovery of an interrupted operation). Another process that has created new objects and
//! not yet committed the map would lose them, and then commit a map pointing at missing
//! objects. So a backend holds an exclusive lock on the token for its whole life, taken
//! before recovery.
//!
//! **One lock per token identity.** The lock file is named by the token's identity, never
//! by the module it was reached through ([`TokenIdentity::lock_key`]: the serial number and
//! label; for a blank serial, the label, manufacturer and model), so a second command that
//! reaches the same token through another module file, a symbolic link or copy of it, or
//! p11-kit's proxy sees the lock. **One directory for the machine**: `/run/lock/mkclone`
//! (Debian's `/var/lock` is a link to `/run/lock`; where `/run/lock` is missing,
//! `/var/lock/mkclone`), never a per-user or per-session directory (`XDG_RUNTIME_DIR`
//! differs between two logins of one user, and a lock there is invisible to the other).
//! The directory is created mode 0700 with mkclone's private-directory check
//! ([`mkclone_durable::create_private_dir`]): a symbolic link in its place, a directory of
//! another user or one others can write into is refused with the fix, and every mkclone on
//! the machine must therefore run as one user ([`LOCK_DIR_ENV`] moves it, for tests and
//! packagers; every mkclone on the machine must then see the same value).
//!
//! The lock is mkclone's one lock ([`mkclone_durable::LockFile`]: `flock(2)`, mode 0600,
//! never through a link, the holder's pid and command inside). Locks on separate open file
//! descriptions conflict even within one process, so a second open of the same token in one
//! process is refused too. The holder removes the file when it is done, while still holding
//! the lock ([`LockFile::remove_on_release`]); whoever takes the lock checks that the file
//! is still the one at the path (else it was removed by its last holder, and it tries
//! again).

use std::io;
use std::path::{Path, PathBuf};

use mkclone_durable::{DurableError, LockFile};

use crate::error::Pkcs11Error;
use crate::identity::TokenIdentity;

/// The environment variable that moves the lock directory from `/run/lock/mkclone` (an
/// absolute path). For tests and packagers: every mkclone on a machine must see one value.
pub const LOCK_DIR_ENV: &str = "MKCLONE_PKCS11_LOCK_DIR";

/// An exclusive lock on one token, released (and its file removed) on drop.
#[derive(Debug)]
pub(crate) struct TokenLock {
    lock: LockFile,
}

/// The machine's token-lock directory (not created here).
pub fn lock_dir() -> Result<PathBuf, Pkcs11Error> {
    if let Some(dir) = std::env::var_os(LOCK_DIR_ENV).map(PathBuf::from) {
        if !dir.is_absolute() {
            return Err(Pkcs11Error::LockDirUnusable {
                dir,
                reason: format!("{LOCK_DIR_ENV} must be an absolute path"),
            });
        }
        return Ok(dir);
    }
    ["/run/lock", "/var/lock"]
        .into_iter()
        .map(Path::new)
        .find(|base| base.is_dir())
        .map(|base| base.join("mkclone"))
        .ok_or_else(|| Pkcs11Error::LockDirUnusable {
            dir: PathBuf::from("/run/lock/mkclone"),
            reason: format!(
                "neither /run/lock nor /var/lock exists on this machine; create /run/lock \
                 (mode 1777, as the FHS has it) or set {LOCK_DIR_ENV}"
            ),
        })
}

/// Create (or check) the lock directory, with what to do when it cannot be used.
fn ready_dir(dir: &Path) -> Result<(), Pkcs11Error> {
    mkclone_durable::create_private_dir(dir).map_err(|e| unusable_dir(dir, e))
}

/// Why the lock directory `dir` cannot be used, and what to do.
fn unusable_dir(dir: &Path, e: DurableError) -> Pkcs11Error {
    let unusable = |reason: String| Pkcs11Error::LockDirUnusable {
        dir: dir.into(),
        reason,
    };
    match e {
        // /run/lock is writable by everyone (mode 1777): any local user can make this
        // directory first. Running as its owner would hand that user the ceremony's process,
        // so the advice is to find out who made it, and to use a directory of one's own.
        DurableError::NotOwned { owner, euid, .. } => unusable(format!(
            "it belongs to uid {owner}, and this mkclone runs as uid {euid}; since the \
             directory above it is writable by every user, another user may have made it to \
             block or watch mkclone's token locks: have an administrator check who uid {owner} \
             is and remove the directory, or set {LOCK_DIR_ENV} to a directory of your own \
             (the same for every mkclone that opens these tokens); do not run mkclone as uid \
             {owner} to get around it"
        )),
        DurableError::DirectoryNotPrivate { mode, .. } => unusable(format!(
            "others can write into it (mode {mode:04o}) and could plant files in it: \
             `chmod 700 {}` after checking what is in it",
            dir.display()
        )),
        DurableError::SymbolicLink { .. } => unusable(
            "it is a symbolic link, which mkclone never follows: remove it (and find out who \
             put it there)"
                .into(),
        ),
        DurableError::NotADirectory { kind, .. } => unusable(format!("it is {kind}: move it away")),
        other => unusable(other.to_string()),
    }
}

/// The lock file's name: the readable part of the token's lock key, escaped, and 16 hex
/// digits of its digest.
pub(crate) fn lock_file_name(identity: &TokenIdentity) -> String {
    let (readable, digest) = identity.lock_key();
    let mut name = String::from("mkclone-token-");
    for b in readable.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02x}"));
        }
    }
    name.push('-');
    name.push_str(&hex::encode(&digest[..8]));
    name.push_str(".lock");
    name
}

impl TokenLock {
    /// Take the lock of `identity` (the token labelled `label` in the configuration), or
    /// say who holds it.
    pub(crate) fn acquire(identity: &TokenIdentity, label: &str) -> Result<Self, Pkcs11Error> {
        Self::acquire_in(&lock_dir()?, identity, label)
    }

    /// [`TokenLock::acquire`] in `dir`.
    fn acquire_in(dir: &Path, identity: &TokenIdentity, label: &str) -> Result<Self, Pkcs11Error> {
        ready_dir(dir)?;
        let path = dir.join(lock_file_name(identity));
        let failed = |path: PathBuf, source: io::Error| Pkcs11Error::TokenLockFailed {
            label: label.into(),
            path,
            source,
        };
        match LockFile::try_acquire(&path) {
            Ok(mut lock) => {
                lock.remove_on_release();
                Ok(Self { lock })
            }
            Err(DurableError::Locked { pid, command, .. }) => Err(Pkcs11Error::TokenInUse {
                label: label.into(),
                serial: identity.id.clone(),
                holder_pid: pid,
                holder_command: command,
                path,
            }),
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
    use crate::raw::RawTokenInfo;

    fn identity(module: &str, label: &str, serial: &str) -> TokenIdentity {
        TokenIdentity::of(
            Path::new(module),
            &RawTokenInfo {
                label: label.into(),
                manufacturer: "Vendor".into(),
                model: "Model".into(),
                serial: serial.into(),
                flags: 0,
            },
        )
    }

    const MODULE: &str = "/nonexistent/libtest-pkcs11.so";

    fn take(dir: &Path, serial: &str) -> Result<TokenLock, Pkcs11Error> {
        TokenLock::acquire_in(dir, &identity(MODULE, "tok", serial), "tok")
    }

    #[test]
    fn the_name_depends_on_the_token_not_the_module() {
        let a = lock_file_name(&identity("/nonexistent/a.so", "tok", "d8e157d09f375158"));
        let b = lock_file_name(&identity("/nonexistent/b.so", "tok", "d8e157d09f375158"));
        assert_eq!(a, b);
        assert!(
            a.starts_with("mkclone-token-d8e157d09f375158-") && a.ends_with(".lock"),
            "{a}"
        );
        assert_eq!(
            a.len(),
            "mkclone-token-".len() + 16 + 1 + 16 + ".lock".len()
        );
        assert_ne!(
            lock_file_name(&identity(MODULE, "other", "d8e157d09f375158")),
            a
        );
        let odd = lock_file_name(&identity(MODULE, "tok", "12/ 3"));
        assert!(odd.starts_with("mkclone-token-12%2f%203-"), "{odd}");
        let blank = lock_file_name(&identity(MODULE, "tok", ""));
        assert!(blank.starts_with("mkclone-token-blank-serial-"), "{blank}");
        assert_eq!(
            lock_file_name(&identity("/nonexistent/other.so", "tok", "")),
            blank
        );
    }

    #[test]
    fn a_held_lock_is_refused_and_a_missing_directory_made_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("locks");
        let lock = take(&dir, "0001").unwrap();
        assert_eq!(lock.path().parent(), Some(dir.as_path()));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o700, "{mode:o}");
        }
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap(),
            format!("{}\n{}\n", std::process::id(), holder_command())
        );
        // A second take, on its own open file description, conflicts even in this process.
        match take(&dir, "0001") {
            Err(Pkcs11Error::TokenInUse {
                holder_pid,
                holder_command: command,
                path,
                serial,
                ..
            }) => {
                assert_eq!(holder_pid, Some(std::process::id()));
                assert_eq!(path, lock.path());
                assert_eq!(serial, "0001");
                assert_eq!(command.as_deref(), Some(holder_command().as_str()));
            }
            other => panic!("expected TokenInUse, got {other:?}"),
        }
        // The message names the holder's command too.
        let err = take(&dir, "0001").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!(", held by {}): wait", holder_command())),
            "{err}"
        );
        // Through another module: the same lock.
        let other_module = TokenLock::acquire_in(
            &dir,
            &identity("/nonexistent/p11-kit-proxy.so", "tok", "0001"),
            "tok",
        );
        assert!(
            matches!(other_module, Err(Pkcs11Error::TokenInUse { .. })),
            "{other_module:?}"
        );
        // Another token is another lock.
        let other = take(&dir, "0002").unwrap();
        let path = lock.path().to_path_buf();
        drop(lock);
        assert!(!path.exists(), "the holder removes its file");
        let again = take(&dir, "0001").unwrap();
        drop((again, other));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_stale_file_is_taken() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("locks");
        ready_dir(&dir).unwrap();
        // Left by a holder that was killed: nobody holds its lock.
        let path = dir.join(lock_file_name(&identity(MODULE, "tok", "0003")));
        std::fs::write(&path, "999999\n").unwrap();
        let lock = take(&dir, "0003").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n{}\n", std::process::id(), holder_command())
        );
        drop(lock);
    }

    /// `take` in `dir` refused, the message saying `says`.
    #[cfg(unix)]
    fn refused(dir: &Path, says: &str) -> Pkcs11Error {
        let err = take(dir, "0004").unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        err
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_directory_or_link_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        // A link in place of the directory: never followed.
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = refused(&link, "symbolic link");
        assert!(matches!(err, Pkcs11Error::LockDirUnusable { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
        // A directory others can write into.
        let wide = base.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o777)).unwrap();
        refused(&wide, "chmod 700");
        assert_eq!(std::fs::read_dir(&wide).unwrap().count(), 0);
        // A link in place of the lock file.
        let dir = base.path().join("locks");
        ready_dir(&dir).unwrap();
        let victim = base.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let path = dir.join(lock_file_name(&identity(MODULE, "tok", "0004")));
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = refused(&dir, "symbolic link");
        assert!(matches!(err, Pkcs11Error::TokenLockFailed { .. }), "{err}");
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&victim, &path).unwrap();
        refused(&dir, "hard link");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        // Another user's directory (any user can make it first in /run/lock): the advice is
        // an administrator and a directory of one's own, never to run as its owner.
        let planted = base.path().join("planted");
        let err = unusable_dir(
            &planted,
            DurableError::NotOwned {
                path: planted.clone(),
                what: "directory",
                owner: 1001,
                euid: 0,
            },
        )
        .to_string();
        assert!(
            err.contains("another user may have made it")
                && err.contains(LOCK_DIR_ENV)
                && err.contains("do not run mkclone as uid 1001"),
            "{err}"
        );
    }
}
