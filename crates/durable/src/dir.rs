//! Directories: the check of a private one, its creation, and the fsync that makes a
//! rename or creation in a directory durable.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::entry::{Expected, check_entry};
use crate::error::{DurableError, io_error};
use crate::open::effective_uid;

/// fsync a directory, so that a rename or creation in it is durable. Filesystems that cannot
/// sync a directory (EINVAL) are tolerated.
pub fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    let d = File::open(dir).map_err(io_error(dir, "open the directory to sync it"))?;
    sync_open_dir(&d, dir)
}

/// [`sync_dir`] of the directory `d`, open already (`dir` names it in messages).
pub(crate) fn sync_open_dir(d: &File, dir: &Path) -> Result<(), DurableError> {
    match d.sync_all() {
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

/// The check of a ceremony directory (and of its `shares/`), made whenever one is opened
/// for work: `dir` must be a directory, not a symbolic link to one
/// ([`DurableError::SymbolicLink`]), owned by this process's effective uid
/// ([`DurableError::NotOwned`]), and writable by nobody else: no group or other write bit
/// ([`DurableError::DirectoryNotPrivate`], whose message gives the `chmod`). Nothing is
/// changed.
pub fn check_private_dir(dir: &Path) -> Result<(), DurableError> {
    check_private_dir_as(dir, effective_uid())
}

fn check_private_dir_as(dir: &Path, euid: u32) -> Result<(), DurableError> {
    let meta =
        fs::symlink_metadata(dir).map_err(io_error(dir, "examine the ceremony directory"))?;
    check_private(dir, &meta, euid)
}

/// [`check_private_dir`] of what `meta` shows of `dir`: the `lstat` of its name, or the
/// `fstat` of the directory once opened (what a caller working through the open directory
/// relies on, whatever the name points to by then).
pub(crate) fn check_private(
    dir: &Path,
    meta: &fs::Metadata,
    euid: u32,
) -> Result<(), DurableError> {
    check_entry(dir, meta, Expected::Directory, Some(euid))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DurableError::DirectoryNotPrivate {
            path: dir.into(),
            mode,
        });
    }
    Ok(())
}

/// Create the ceremony directory `dir` if it is missing, with the missing directories
/// above it, each mode 0700 whatever the umask (set explicitly after creating it, as
/// [`set_exact_mode`](crate::set_exact_mode) does for files), then [`check_private_dir`]
/// it. An existing directory is only checked, never changed.
pub fn create_private_dir(dir: &Path) -> Result<(), DurableError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Scratch, mode};

    #[test]
    fn a_private_directory_passes_and_others_are_refused_with_the_fix() {
        let s = Scratch::new();
        let d = s.subdir("ceremony");
        for ok in [0o700, 0o750, 0o755, 0o500] {
            fs::set_permissions(&d, Permissions::from_mode(ok)).unwrap();
            check_private_dir(&d).unwrap();
        }
        for wide in [0o770, 0o720, 0o702, 0o777, 0o1777] {
            fs::set_permissions(&d, Permissions::from_mode(wide)).unwrap();
            let err = check_private_dir(&d).unwrap_err();
            assert!(
                matches!(&err, DurableError::DirectoryNotPrivate { path, mode } if *path == d && *mode == wide),
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

        let link = s.symlink("link", &d);
        let err = check_private_dir(&link).unwrap_err();
        assert!(
            matches!(&err, DurableError::SymbolicLink { path, what: "directory" } if *path == link),
            "{err}"
        );
        let file = s.file("file", b"");
        let err = check_private_dir(&file).unwrap_err();
        assert!(
            matches!(&err, DurableError::NotADirectory { path, kind: "a regular file" } if *path == file),
            "{err}"
        );
        let other = effective_uid().wrapping_add(1);
        let err = check_private_dir_as(&d, other).unwrap_err();
        assert!(
            matches!(&err, DurableError::NotOwned { what: "directory", owner, euid, .. }
                if *owner == effective_uid() && *euid == other),
            "{err}"
        );
        assert!(
            check_private_dir(&s.path("none"))
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn create_private_dir_makes_every_missing_level_0700_and_only_checks_existing_ones() {
        let s = Scratch::new();
        let d = s.path("a/b/ceremony");
        create_private_dir(&d).unwrap();
        for p in ["a", "a/b", "a/b/ceremony"] {
            assert_eq!(mode(&s.path(p)), 0o700, "{p}");
        }
        create_private_dir(&d).unwrap();
        create_private_dir(&d.join("shares")).unwrap();
        assert_eq!(mode(&d.join("shares")), 0o700);

        let wide = s.subdir("wide");
        fs::set_permissions(&wide, Permissions::from_mode(0o777)).unwrap();
        let err = create_private_dir(&wide).unwrap_err();
        assert!(
            matches!(err, DurableError::DirectoryNotPrivate { .. }),
            "{err}"
        );
        assert_eq!(mode(&wide), 0o777, "never changed behind the user's back");

        let link = s.symlink("link", &s.path("target"));
        let err = create_private_dir(&link).unwrap_err();
        assert!(matches!(err, DurableError::SymbolicLink { .. }), "{err}");
        assert!(!s.path("target").exists(), "nothing made through it");
    }
}
