//! Writing a file durably: atomic replacement and exclusive creation.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::dir::sync_dir;
use crate::error::{DurableError, io_error};
use crate::mode::{Sensitivity, set_exact_mode};
use crate::split_target;
use crate::temp::{TempFile, clean_before_write};

/// Replace `path` atomically with `bytes`, created with the mode of `sensitivity`: a
/// temporary file in the same directory (created `O_EXCL` with the final mode) is written
/// and fsynced, renamed over the target, and the directory is fsynced. A reader (or a
/// crash) sees either the old contents or the new, never a mix. Stale temporary files of
/// the same target are removed first.
///
/// On success no temporary file is left; on failure the temporary file is removed and the
/// target is unchanged (unless the failure is the final fsync of the directory, after the
/// rename: then the new contents are in place but possibly not yet durable).
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    sensitivity: Sensitivity,
) -> Result<(), DurableError> {
    replace(path, bytes, sensitivity, |_| Ok(()))
}

/// [`write_atomic`], returning the file written, open (for writing) at its new name. Kept
/// open, its inode cannot be freed and given to another file: while the path's device and
/// inode are the returned file's, the path still names these contents unless someone
/// wrote into the file itself (which mkclone never does: it replaces files).
pub fn write_atomic_kept(
    path: &Path,
    bytes: &[u8],
    sensitivity: Sensitivity,
) -> Result<File, DurableError> {
    replace(path, bytes, sensitivity, TempFile::keep_open)
}

/// The steps of [`write_atomic`]; `keep` takes what the caller keeps of the temporary file
/// once it is written and synced, before it is renamed.
fn replace<T>(
    path: &Path,
    bytes: &[u8],
    sensitivity: Sensitivity,
    keep: impl FnOnce(&TempFile) -> Result<T, DurableError>,
) -> Result<T, DurableError> {
    let (dir, name) = split_target(path)?;
    clean_before_write(dir, name);
    let mut tmp = TempFile::create(dir, name, sensitivity)?;
    tmp.write_and_sync(bytes)?;
    let kept = keep(&tmp)?;
    tmp.rename_onto(path)?;
    sync_dir(dir)?;
    Ok(kept)
}

/// Create `path` with `bytes`, refusing ([`DurableError::AlreadyExists`]) when it exists, in
/// which case it is left untouched. The file is complete or absent, even after a crash:
/// the contents are written to a temporary file first and linked to `path` (O_EXCL
/// semantics: the link fails if the name exists). On a filesystem without hard links (FAT
/// and exFAT, a FUSE file system without them: [`links_unsupported`]), the temporary file
/// is renamed to `path` with `RENAME_NOREPLACE` instead, which fails as the link does when
/// the name exists and is as atomic (vfat, exFAT and FUSE take the flag). Only where the
/// rename refuses the flag too (EINVAL) is `path` created directly with O_EXCL, and then a
/// crash may leave it incomplete (a warning is logged). Any other failure is an error,
/// with nothing left behind.
pub fn create_new_exclusive(
    path: &Path,
    bytes: &[u8],
    sensitivity: Sensitivity,
) -> Result<(), DurableError> {
    create_new_exclusive_with(path, bytes, sensitivity, &SYSTEM)
}

/// The two calls [`create_new_exclusive`] names its file with (tests give others, to play
/// a file system without hard links, or without `RENAME_NOREPLACE` either).
pub(crate) struct Naming {
    pub(crate) link: fn(&Path, &Path) -> io::Result<()>,
    pub(crate) rename_no_replace: fn(&Path, &Path) -> io::Result<()>,
}

const SYSTEM: Naming = Naming {
    link: |from, to| fs::hard_link(from, to),
    rename_no_replace,
};

/// renameat2(2) with `RENAME_NOREPLACE`: `from` gets the name `to` unless `to` exists
/// (EEXIST), atomically.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
        .map_err(|errno| io::Error::from_raw_os_error(errno as i32))
}

/// Where nix offers no renameat2 (musl): as a file system that refuses the flag (EINVAL),
/// so that [`create_new_exclusive`] writes directly, as it did before.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_no_replace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

fn create_new_exclusive_with(
    path: &Path,
    bytes: &[u8],
    sensitivity: Sensitivity,
    naming: &Naming,
) -> Result<(), DurableError> {
    let (dir, name) = split_target(path)?;
    if fs::symlink_metadata(path).is_ok() {
        return Err(DurableError::AlreadyExists { path: path.into() });
    }
    clean_before_write(dir, name);
    let mut tmp = TempFile::create(dir, name, sensitivity)?;
    tmp.write_and_sync(bytes)?;
    match (naming.link)(&tmp.path, path) {
        Ok(()) => {
            tmp.remove();
            sync_dir(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tmp.remove();
            Err(DurableError::AlreadyExists { path: path.into() })
        }
        Err(e) if links_unsupported(&e) => match tmp.rename_no_replace(path, naming) {
            Ok(()) => sync_dir(dir),
            Err((tmp, e)) if e.kind() == io::ErrorKind::AlreadyExists => {
                tmp.remove();
                Err(DurableError::AlreadyExists { path: path.into() })
            }
            Err((tmp, e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                log::warn!(
                    "{}: cannot hard-link a temporary file nor rename it without replacing \
                     ({e}); creating the file directly, which a crash could leave incomplete",
                    path.display()
                );
                tmp.remove();
                create_direct(path, bytes, sensitivity)?;
                sync_dir(dir)
            }
            Err((tmp, e)) => {
                tmp.remove();
                Err(io_error(
                    path,
                    "rename the written temporary file to its name",
                )(e))
            }
        },
        Err(e) => {
            tmp.remove();
            Err(io_error(
                path,
                "link the written temporary file to its name",
            )(e))
        }
    }
}

/// Whether a failed link(2) says that the file system has no hard links (FAT and exFAT
/// answer EPERM, a FUSE file system without them ENOSYS, others EOPNOTSUPP): the one case
/// where [`create_new_exclusive`] creates the file directly instead. Any other failure (no
/// space, an I/O error, a quota, a read-only file system) is an error: a direct write would
/// fail alike, or succeed only to leave a file a crash could cut.
fn links_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
    )
}

/// The O_EXCL fallback of [`create_new_exclusive`]: removes what it created on failure.
fn create_direct(path: &Path, bytes: &[u8], sensitivity: Sensitivity) -> Result<(), DurableError> {
    let file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(sensitivity.mode())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(DurableError::AlreadyExists { path: path.into() });
        }
        Err(e) => return Err(io_error(path, "create the file")(e)),
    };
    let written = set_exact_mode(&file, path, sensitivity).and_then(|()| {
        (&file)
            .write_all(bytes)
            .and_then(|()| file.sync_all())
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

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::test_support::{Scratch, mode, names};

    /// `create` makes `p` secret (0600) with its bytes, then refuses to make it again
    /// ([`DurableError::AlreadyExists`]), leaving the first contents.
    fn creates_once_then_refuses(
        create: fn(&Path, &[u8], Sensitivity) -> Result<(), DurableError>,
        p: &Path,
    ) {
        create(p, b"first", Sensitivity::Secret).unwrap();
        assert_eq!(mode(p), 0o600);
        let err = create(p, b"second", Sensitivity::Secret).unwrap_err();
        assert!(matches!(err, DurableError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(p).unwrap(), b"first");
    }

    #[test]
    fn atomic_write_modes_and_no_leftovers() {
        let s = Scratch::new();
        let secret = s.path("bundle");
        let public = s.path("sa.db");
        write_atomic(&secret, b"s1", Sensitivity::Secret).unwrap();
        write_atomic(&public, b"p1", Sensitivity::Public).unwrap();
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(mode(&public), 0o644);
        assert_eq!(fs::read(&secret).unwrap(), b"s1");
        assert_eq!(names(s.dir()), ["bundle", "sa.db"]);

        // Overwrite: new contents, and the new sensitivity's mode.
        write_atomic(&public, b"p2", Sensitivity::Secret).unwrap();
        assert_eq!(fs::read(&public).unwrap(), b"p2");
        assert_eq!(mode(&public), 0o600);
        assert_eq!(names(s.dir()), ["bundle", "sa.db"]);
    }

    #[test]
    fn a_kept_atomic_write_returns_the_file_now_at_the_path() {
        use std::os::unix::fs::MetadataExt;
        let s = Scratch::new();
        let p = s.file("card.json", b"old");
        let kept = write_atomic_kept(&p, b"new", Sensitivity::Secret).unwrap();
        let (named, open) = (fs::metadata(&p).unwrap(), kept.metadata().unwrap());
        assert_eq!((named.dev(), named.ino()), (open.dev(), open.ino()));
        assert_eq!(open.len(), 3);
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(names(s.dir()), ["card.json"]);
        // Replaced again: the path names another file, the kept one stays open.
        write_atomic(&p, b"newer", Sensitivity::Secret).unwrap();
        assert_ne!(
            fs::metadata(&p).unwrap().ino(),
            kept.metadata().unwrap().ino()
        );
    }

    #[test]
    fn modes_do_not_depend_on_a_wide_existing_file() {
        let s = Scratch::new();
        let p = s.file("x", b"old");
        fs::set_permissions(&p, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"new", Sensitivity::Secret).unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn failed_rename_removes_temp() {
        let s = Scratch::new();
        let target = s.subdir("d");
        fs::write(target.join("inside"), b"x").unwrap();
        let err = write_atomic(&target, b"x", Sensitivity::Secret).unwrap_err();
        assert!(matches!(err, DurableError::Io { .. }), "{err}");
        assert!(err.to_string().contains(&*target.to_string_lossy()));
        assert_eq!(names(s.dir()), ["d"]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let s = Scratch::new();
        let target = s.path("nope/f");
        let err = write_atomic(&target, b"x", Sensitivity::Public).unwrap_err();
        assert!(matches!(err, DurableError::Io { .. }), "{err}");
    }

    #[test]
    fn exclusive_create_never_overwrites() {
        let s = Scratch::new();
        let p = s.path("share-1");
        creates_once_then_refuses(create_new_exclusive, &p);
        assert_eq!(names(s.dir()), ["share-1"]);

        let q = s.path("pub");
        create_new_exclusive(&q, b"x", Sensitivity::Public).unwrap();
        assert_eq!(mode(&q), 0o644);
        assert_eq!(names(s.dir()), ["pub", "share-1"]);
    }

    #[test]
    fn exclusive_create_refuses_a_dangling_symlink() {
        let s = Scratch::new();
        let p = s.symlink("link", &s.path("elsewhere"));
        let err = create_new_exclusive(&p, b"x", Sensitivity::Secret).unwrap_err();
        assert!(matches!(err, DurableError::AlreadyExists { .. }), "{err}");
        assert!(!s.path("elsewhere").exists());
    }

    #[test]
    fn only_a_file_system_without_hard_links_falls_back_to_a_direct_write() {
        for errno in [libc::EPERM, libc::EOPNOTSUPP, libc::ENOSYS] {
            assert!(
                links_unsupported(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [
            libc::ENOSPC,
            libc::EIO,
            libc::EDQUOT,
            libc::EROFS,
            libc::EMLINK,
            libc::EACCES,
            libc::EXDEV,
        ] {
            assert!(
                !links_unsupported(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    /// Without hard links (vfat and exFAT answer EPERM), the written temporary file is
    /// renamed to its name without replacing: complete or absent, as with a link, and an
    /// existing file is refused and left as it was. Only a rename that refuses the flag too
    /// (EINVAL) makes the direct write. (A torn bundle under its final name, left by a crash
    /// in the direct write on a FAT stick, stopped 3c until removed by hand: found by the
    /// durable-files review.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn without_hard_links_the_file_is_renamed_into_place_without_replacing() {
        let eperm = |_: &Path, _: &Path| Err(io::Error::from_raw_os_error(libc::EPERM));
        let fat = Naming {
            link: eperm,
            rename_no_replace,
        };
        let s = Scratch::new();
        let p = s.path("t1.sym.1.share");
        create_new_exclusive_with(&p, b"first", Sensitivity::Secret, &fat).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(mode(&p), 0o600);
        let err = create_new_exclusive_with(&p, b"second", Sensitivity::Secret, &fat).unwrap_err();
        assert!(matches!(err, DurableError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(names(s.dir()), ["t1.sym.1.share"], "no temporary file left");

        // The name never holds part of the contents: the rename comes after the write and
        // its fsync, so a crash before it leaves the name free (the rename is seen only
        // whole).
        let seen_at_rename = |from: &Path, to: &Path| {
            assert!(!to.exists(), "the name was taken before the rename");
            assert_eq!(fs::read(from)?, b"whole contents");
            rename_no_replace(from, to)
        };
        let q = s.path("t1.sym.2.share");
        let checked = Naming {
            link: eperm,
            rename_no_replace: seen_at_rename,
        };
        create_new_exclusive_with(&q, b"whole contents", Sensitivity::Secret, &checked).unwrap();
        assert_eq!(fs::read(&q).unwrap(), b"whole contents");

        // A file system that takes neither: the direct write, refusing an existing name.
        let neither = Naming {
            link: eperm,
            rename_no_replace: |_, _| Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let r = s.path("t1.sym.3.share");
        create_new_exclusive_with(&r, b"direct", Sensitivity::Secret, &neither).unwrap();
        assert_eq!(fs::read(&r).unwrap(), b"direct");
        let err =
            create_new_exclusive_with(&r, b"again", Sensitivity::Secret, &neither).unwrap_err();
        assert!(matches!(err, DurableError::AlreadyExists { .. }), "{err}");
        // Any other failure of the rename is an error, with nothing left behind.
        let enospc = Naming {
            link: eperm,
            rename_no_replace: |_, _| Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        };
        let t = s.path("t1.sym.4.share");
        let err = create_new_exclusive_with(&t, b"x", Sensitivity::Secret, &enospc).unwrap_err();
        assert!(matches!(err, DurableError::Io { .. }), "{err}");
        assert!(!t.exists());
        assert_eq!(names(s.dir()).len(), 3, "no temporary file left");
    }

    #[test]
    fn direct_fallback_creates_and_refuses() {
        let s = Scratch::new();
        creates_once_then_refuses(create_direct, &s.path("f"));
    }
}
