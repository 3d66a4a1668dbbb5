//! How far a file's timestamps can be trusted to tell a change of its bytes.
//!
//! A cache that skips reading a file whose `lstat` is unchanged (the ceremony's journal-mark
//! cache) must know when that is safe. A write in place moves the file's ctime, which no
//! user can set; but the kernel stamps it from a coarse clock, truncated to the
//! filesystem's granularity, so a rewrite within the same tick as the change the cache saw
//! can leave every field of `lstat` as it was. git calls such an entry "racy". Once the
//! bytes were read a whole tick after the ctime, any later change lands on a later tick.
//!
//! The tick: Linux stamps inodes with its coarse real-time clock (one jiffy: 1-10 ms, for
//! `CONFIG_HZ` 1000 down to 100), truncated to the filesystem's `s_time_gran`. ext2/3/4
//! (with inodes of 256 bytes or more: smaller ones keep whole seconds), XFS, Btrfs and
//! tmpfs keep nanoseconds. Other filesystems (FAT's two seconds, network and FUSE
//! filesystems whose clock is another machine's, overlays) are not assumed to.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use nix::sys::statfs::{self, FsType};

/// How long after its ctime a file on a filesystem of known nanosecond timestamps stays
/// racy: five of the coarsest kernel ticks (10 ms at `CONFIG_HZ=100`).
pub const RACY_FINE: Duration = Duration::from_millis(50);

/// How long after its ctime any other file stays racy: above the coarsest timestamp
/// granularity of the filesystems mkclone may run on (FAT's two seconds, rounded down by
/// some drivers to one).
pub const RACY_COARSE: Duration = Duration::from_secs(2);

/// Filesystems whose timestamps have nanoseconds and come from this kernel's clock.
const FINE_FILESYSTEMS: [FsType; 4] = [
    statfs::EXT4_SUPER_MAGIC, // ext2, ext3 and ext4 share it
    statfs::XFS_SUPER_MAGIC,
    statfs::BTRFS_SUPER_MAGIC,
    statfs::TMPFS_MAGIC,
];

/// Is the open `file`, whose `fstat` is `metadata` (taken before its bytes were read), racy
/// at `now`: could a rewrite after `now` keep its ctime? `now` must be taken after
/// `metadata` and before the bytes are read, so that a rewrite during the read counts.
/// When in doubt (the clock behind the ctime, the filesystem unknown or not answering),
/// the answer is yes.
pub fn is_racy(file: &File, metadata: &Metadata, now: SystemTime) -> bool {
    let Some(age) = ctime_age(metadata, now) else {
        return true;
    };
    if age < RACY_FINE {
        return true;
    }
    if age >= RACY_COARSE {
        return false;
    }
    let filesystem = statfs::fstatfs(file).ok().map(|s| s.filesystem_type());
    window(filesystem, metadata.ctime_nsec()) > age
}

/// How long after its ctime a file stays racy, from its filesystem's type (`None`: not
/// known) and the nanoseconds of its ctime. A ctime of whole seconds on a filesystem that
/// could keep nanoseconds (an ext4 of 128-byte inodes) is taken as whole-second stamps.
fn window(filesystem: Option<FsType>, ctime_nsec: i64) -> Duration {
    match filesystem {
        Some(fs) if FINE_FILESYSTEMS.contains(&fs) && ctime_nsec != 0 => RACY_FINE,
        _ => RACY_COARSE,
    }
}

/// How long before `now` the file's ctime is; `None` when the clock is behind it.
fn ctime_age(metadata: &Metadata, now: SystemTime) -> Option<Duration> {
    let seconds = u64::try_from(metadata.ctime()).ok()?;
    let nanos = u32::try_from(metadata.ctime_nsec()).ok()?;
    let ctime = SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))?;
    now.duration_since(ctime).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_filesystems_with_nanosecond_stamps_get_the_short_window() {
        for fs in FINE_FILESYSTEMS {
            assert_eq!(window(Some(fs), 123_456_789), RACY_FINE);
            // Whole seconds: an ext4 of small inodes, or a stamp that fell on a second.
            assert_eq!(window(Some(fs), 0), RACY_COARSE);
        }
        for fs in [
            statfs::MSDOS_SUPER_MAGIC,
            statfs::NFS_SUPER_MAGIC,
            statfs::FUSE_SUPER_MAGIC,
            statfs::OVERLAYFS_SUPER_MAGIC,
            statfs::SMB_SUPER_MAGIC,
        ] {
            assert_eq!(window(Some(fs), 123_456_789), RACY_COARSE, "{fs:?}");
        }
        assert_eq!(window(None, 123_456_789), RACY_COARSE);
    }

    /// A file just written is racy whatever its filesystem; so is one whose ctime is ahead
    /// of the clock; one read long after its ctime is not.
    #[test]
    fn a_file_is_racy_right_after_its_change_and_not_long_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        let m = file.metadata().unwrap();
        let ctime = SystemTime::UNIX_EPOCH + Duration::new(m.ctime() as u64, m.ctime_nsec() as u32);
        assert!(is_racy(&file, &m, ctime));
        assert!(is_racy(&file, &m, ctime + RACY_FINE / 2));
        assert!(is_racy(&file, &m, ctime - Duration::from_secs(60)));
        assert!(!is_racy(&file, &m, ctime + RACY_COARSE));
        // In between, the filesystem decides: this one's type, as fstatfs reports it.
        let fs = statfs::fstatfs(&file).unwrap().filesystem_type();
        let fine = FINE_FILESYSTEMS.contains(&fs) && m.ctime_nsec() != 0;
        assert_eq!(is_racy(&file, &m, ctime + RACY_FINE), !fine, "{fs:?}");
        assert!(is_racy(
            &file,
            &m,
            ctime + RACY_FINE - Duration::from_nanos(1)
        ));
    }
}
