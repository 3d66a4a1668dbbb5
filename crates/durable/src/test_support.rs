//! Helpers of this crate's unit tests.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A pid no process can have (above Linux's PID_MAX_LIMIT of 2^22).
pub const DEAD_PID: u32 = 999_999_999;

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Make a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A scratch directory for one test (removed when dropped), and the setup tests make in it.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        self.0.path()
    }

    /// The path of `name` in it; nothing is made.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// A regular file `name` holding `bytes`.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    /// A directory `name`.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        fs::create_dir(&p).unwrap();
        p
    }

    /// A symbolic link `name` to `target` (which need not exist).
    pub fn symlink(&self, name: &str, target: &Path) -> PathBuf {
        let p = self.path(name);
        std::os::unix::fs::symlink(target, &p).unwrap();
        p
    }

    /// What a local user plants where mkclone expects its own file: a symbolic link `link`
    /// to a file of someone else's, and a dangling one, `dangling`, to a name that does not
    /// exist.
    pub fn plant_links(&self, link: &str, dangling: &str) -> Planted {
        let target = self.file("outside", PRECIOUS);
        let nowhere = self.path("nowhere");
        Planted {
            link: self.symlink(link, &target),
            dangling: self.symlink(dangling, &nowhere),
            target,
            nowhere,
        }
    }
}

/// The content of the file a planted link points to.
const PRECIOUS: &[u8] = b"precious";

/// The links of [`Scratch::plant_links`].
pub struct Planted {
    /// The file `link` points to.
    pub target: PathBuf,
    pub link: PathBuf,
    pub dangling: PathBuf,
    /// Where `dangling` points.
    nowhere: PathBuf,
}

impl Planted {
    /// Neither link was followed: the file `link` points to is unchanged, and nothing was
    /// made where `dangling` points.
    pub fn assert_not_followed(&self) {
        assert_eq!(fs::read(&self.target).unwrap(), PRECIOUS);
        assert!(!self.nowhere.exists(), "made through a dangling link");
    }
}
