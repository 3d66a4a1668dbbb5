//! The safe opening of an existing file: never through a symbolic link, never a FIFO,
//! device, directory or socket, never in a linked directory; to erase, never a file with
//! other hard links or of another user.

use std::fs::{self, File, Metadata, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::entry::{Expected, check_entry};
use crate::error::{DurableError, io_error};
use crate::split_target;

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
/// else, and return the open file. Refused, each with its own [`DurableError`] naming the
/// path: a symbolic link ([`DurableError::SymbolicLink`]: never followed, by `O_NOFOLLOW`),
/// a file whose directory is a symbolic link (`shares/`), a FIFO, device, directory or
/// socket ([`DurableError::NotRegularFile`]: looked at with `lstat` before opening, so never
/// even opened, and checked again with `fstat` on what was opened, `O_NONBLOCK` so that
/// opening can never block); for [`Access::Erase`] also a file with more than one hard
/// link ([`DurableError::HardLinked`]) or owned by another user ([`DurableError::NotOwned`]).
/// A missing file is an [`DurableError::Io`] for which [`DurableError::is_not_found`] holds.
pub fn open_regular(path: &Path, access: Access) -> Result<File, DurableError> {
    open_regular_as(path, access, effective_uid())
}

/// [`open_regular`] for a process of effective uid `euid` (tests pass another one).
fn open_regular_as(path: &Path, access: Access, euid: u32) -> Result<File, DurableError> {
    // O_NOFOLLOW covers the last component only: the directory holding the file (shares/)
    // must not be a link either. A missing directory is reported by the lstat below.
    let (dir, _) = split_target(path)?;
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(DurableError::SymbolicLink {
            path: dir.into(),
            what: "directory",
        });
    }
    let check = |meta: &Metadata| check_regular(path, meta, access, euid);
    check(&fs::symlink_metadata(path).map_err(io_error(path, "examine the file"))?)?;
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::Append => options.read(true).append(true),
        Access::Erase => options.write(true),
    };
    let actions = ("open the file", "examine the opened file");
    let on_link = || DurableError::SymbolicLink {
        path: path.into(),
        what: "file",
    };
    open_no_follow(&mut options, path, actions, on_link, check)
}

/// Open `path` with `options` never through a symbolic link and never blocking
/// (`O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`), and `check` the `fstat` of what was opened,
/// whatever the name points to now (the caller checked the name's `lstat` before). A link
/// put there since that `lstat` is `on_link`'s error; `(open, examine)` say what failed in
/// the others.
pub(crate) fn open_no_follow(
    options: &mut OpenOptions,
    path: &Path,
    (open, examine): (&'static str, &'static str),
    on_link: impl FnOnce() -> DurableError,
    check: impl FnOnce(&Metadata) -> Result<(), DurableError>,
) -> Result<File, DurableError> {
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(on_link()),
        Err(e) => return Err(io_error(path, open)(e)),
    };
    check(&file.metadata().map_err(io_error(path, examine))?)?;
    Ok(file)
}

/// [`check_entry`] of a file to open for `access`; to erase, also this user's, with one name.
fn check_regular(
    path: &Path,
    meta: &Metadata,
    access: Access,
    euid: u32,
) -> Result<(), DurableError> {
    let erase = access == Access::Erase;
    check_entry(path, meta, Expected::File, erase.then_some(euid))?;
    if erase && meta.nlink() > 1 {
        return Err(DurableError::HardLinked {
            path: path.into(),
            links: meta.nlink(),
        });
    }
    Ok(())
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether the open `file` is on a local filesystem whose inode numbers name one file for
/// as long as it is open and whose reads see every write of this machine at once (ext2/3/4,
/// XFS, Btrfs, tmpfs): where a file kept open may be read again instead of opened anew.
/// Not on NFS (attributes and pages cached per client, revalidated only at open), FUSE
/// (whatever its server answers) or anything else unknown; false when the filesystem
/// cannot be told.
pub fn is_local_filesystem(file: &File) -> bool {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT2_SUPER_MAGIC, EXT3_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC,
        XFS_SUPER_MAGIC, fstatfs,
    };
    fstatfs(file).is_ok_and(|s| {
        [
            EXT2_SUPER_MAGIC,
            EXT3_SUPER_MAGIC,
            EXT4_SUPER_MAGIC,
            XFS_SUPER_MAGIC,
            BTRFS_SUPER_MAGIC,
            TMPFS_MAGIC,
        ]
        .contains(&s.filesystem_type())
    })
}

/// Whether `file` is on a network or FUSE file system (NFS, SMB/CIFS, Ceph, 9P, AFS,
/// Lustre, GFS2, OCFS2, sshfs and other FUSE), where `flock` may keep out only the
/// processes of this machine (NFS mounted `nolock` or `local_lock=flock`, a FUSE file system
/// without locks) and a pid says nothing of another machine's processes.
pub fn is_network_filesystem(file: &File) -> bool {
    nix::sys::statfs::fstatfs(file).is_ok_and(|s| is_network_magic(s.filesystem_type().0 as u64))
}

/// The statfs(2) magic numbers of network and FUSE file systems (linux/magic.h; CIFS's and
/// SMB2's from fs/smb/client).
fn is_network_magic(magic: u64) -> bool {
    const NETWORK: [u64; 12] = [
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x00C3_6400, // Ceph
        0x0102_1997, // 9P
        0x5346_414F, // AFS
        0x6B41_4653, // kAFS
        0x0BD0_0BD0, // Lustre
        0x0116_1970, // GFS2
        0x7461_636F, // OCFS2
        0x6573_5546, // FUSE
    ];
    NETWORK.contains(&magic)
}

/// The soft limit of open files of this process (`RLIMIT_NOFILE`), if it can be read.
pub fn open_files_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::test_support::{Scratch, mkfifo};

    const ACCESSES: [Access; 3] = [Access::Read, Access::Append, Access::Erase];

    #[test]
    fn open_regular_opens_a_regular_file_for_each_access() {
        let s = Scratch::new();
        let p = s.file("sa.db", b"content");
        let mut read = String::new();
        std::io::Read::read_to_string(&mut open_regular(&p, Access::Read).unwrap(), &mut read)
            .unwrap();
        assert_eq!(read, "content");
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
        let s = Scratch::new();
        let planted = s.plant_links("journal.jsonl", "sa.db");
        for access in ACCESSES {
            for p in [&planted.link, &planted.dangling] {
                let err = open_regular(p, access).unwrap_err();
                assert!(
                    matches!(&err, DurableError::SymbolicLink { path, what: "file" } if path == p),
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
        planted.assert_not_followed();
    }

    #[test]
    fn open_regular_refuses_a_file_in_a_linked_directory() {
        let s = Scratch::new();
        let real = s.subdir("elsewhere");
        fs::write(real.join("t1.sym.1.share"), b"x").unwrap();
        let shares = s.symlink("shares", &real);
        for access in ACCESSES {
            let err = open_regular(&shares.join("t1.sym.1.share"), access).unwrap_err();
            assert!(
                matches!(&err, DurableError::SymbolicLink { path, what: "directory" } if *path == shares),
                "{err}"
            );
        }
        assert_eq!(fs::read(real.join("t1.sym.1.share")).unwrap(), b"x");
    }

    #[test]
    fn open_regular_refuses_fifos_directories_and_sockets_without_blocking() {
        let s = Scratch::new();
        let fifo = s.path("fifo");
        mkfifo(&fifo);
        let sub = s.subdir("sub");
        let socket = s.path("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (p, kind) in [
            (&fifo, "a named pipe (FIFO)"),
            (&sub, "a directory"),
            (&socket, "a socket"),
        ] {
            for access in ACCESSES {
                let err = open_regular(p, access).unwrap_err();
                match &err {
                    DurableError::NotRegularFile { path, kind: k } => {
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
                DurableError::NotRegularFile {
                    kind: "a character device",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn erase_access_refuses_hard_links_and_other_users_files() {
        let s = Scratch::new();
        let outside = s.file("outside", b"precious");
        let inside = s.path("t1.csr.db");
        fs::hard_link(&outside, &inside).unwrap();
        // Reading through another name is harmless; zero-filling is not.
        open_regular(&inside, Access::Read).unwrap();
        let err = open_regular(&inside, Access::Erase).unwrap_err();
        assert!(
            matches!(&err, DurableError::HardLinked { path, links: 2 } if *path == inside),
            "{err}"
        );
        assert!(err.to_string().contains("hard links"), "{err}");
        fs::remove_file(&outside).unwrap();
        open_regular(&inside, Access::Erase).unwrap();

        let other = effective_uid().wrapping_add(1);
        open_regular_as(&inside, Access::Read, other).unwrap();
        let err = open_regular_as(&inside, Access::Erase, other).unwrap_err();
        assert!(
            matches!(&err, DurableError::NotOwned { what: "file", euid, .. } if *euid == other),
            "{err}"
        );
        assert_eq!(fs::read(&inside).unwrap(), b"precious");
    }

    #[test]
    fn open_regular_says_when_a_file_is_missing() {
        let s = Scratch::new();
        for p in [s.path("none"), s.path("no/dir")] {
            for access in ACCESSES {
                let err = open_regular(&p, access).unwrap_err();
                assert!(err.is_not_found(), "{err}");
            }
        }
        assert!(!s.path("none").exists(), "nothing created");
    }

    /// Files kept open are read again only on the filesystems named: tmpfs is one, procfs
    /// (as NFS or FUSE would be) is not.
    #[test]
    fn only_local_filesystems_are_local() {
        let dir = tempfile::tempdir_in("/dev/shm").expect("this test needs /dev/shm (tmpfs)");
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        assert!(is_local_filesystem(&File::open(&p).unwrap()));
        assert!(!is_network_filesystem(&File::open(&p).unwrap()));
        for magic in [0x6969, 0xFF53_4D42, 0x6573_5546] {
            assert!(is_network_magic(magic), "{magic:#x}");
        }
        for magic in [0xEF53, 0x0102_1994, 0x5846_5342, 0x4d44] {
            assert!(!is_network_magic(magic), "{magic:#x}");
        }
        assert!(!is_local_filesystem(
            &File::open("/proc/self/status").unwrap()
        ));
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
