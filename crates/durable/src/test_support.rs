//! Helpers of this crate's unit tests.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
