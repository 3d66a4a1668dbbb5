//! The one lock of mkclone's files: an exclusive `flock(2)` on a lock file whose holder
//! names itself in it.
//!
//! The lock file's path is the caller's choice (a ceremony directory's `.mkclone.lock`, a
//! simulated card's `<file>.lock`, a PKCS#11 token's file in a runtime directory). It is
//! created mode 0600 and only ever opened as a plain file of its own: a symbolic link, a
//! hard link, a FIFO, device, directory or socket at its path is refused
//! ([`DurableError::NotALockFile`]), never followed. The lock is advisory
//! ([`File::try_lock`]), so it is released when its holder exits, even by a crash: a stale
//! lock file never blocks anyone. Locks on separate open file descriptions conflict even
//! within one process, so two [`LockFile`]s on one path exclude each other there too.
//!
//! The holder writes `<pid>\n<program> <subcommand>\n` into the file ([`holder_command`]:
//! never other arguments), for the [`DurableError::Locked`] of whoever finds it held, and
//! clears it when it releases the lock. A holder may instead remove the file on release
//! ([`LockFile::remove_on_release`], for lock files in shared directories); whoever takes
//! the lock therefore checks that the file it locked is still the one at the path, and
//! tries again if its last holder removed it meanwhile.

use std::fs::{self, File, Metadata, OpenOptions, TryLockError};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::entry::kind_of;
use crate::error::{DurableError, io_error};
use crate::open::open_no_follow;
use crate::process::holder_command;

/// How often a waiting [`LockFile::acquire_within`] tries the lock again.
const POLL: Duration = Duration::from_millis(20);

/// How many times the lock file may be found replaced before giving up (each replacement is
/// a holder removing it between our open and our lock: another command just finished).
const ATTEMPTS: usize = 8;

/// The most of a lock file read for its holder's name.
const HOLDER_MAX: usize = 4096;

/// An exclusive lock on a lock file, held until dropped.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
    remove_on_release: bool,
}

/// How long to wait for a held lock.
#[derive(Clone, Copy)]
enum Wait {
    /// Poll until this instant, then fail with [`DurableError::Locked`].
    Until(Instant),
    /// Block until the holder releases it.
    Forever,
}

impl LockFile {
    /// Take the lock at `path`, or fail at once with [`DurableError::Locked`] naming the
    /// holder (its pid and command, as far as it wrote them) when another holder has it.
    pub fn try_acquire(path: &Path) -> Result<Self, DurableError> {
        Self::acquire_within(path, Duration::ZERO)
    }

    /// Take the lock at `path`, polling for at most `wait` while another holder has it;
    /// then fail with [`DurableError::Locked`] as [`try_acquire`](Self::try_acquire) does.
    pub fn acquire_within(path: &Path, wait: Duration) -> Result<Self, DurableError> {
        let deadline = Instant::now().checked_add(wait);
        Self::take(path, deadline.map_or(Wait::Forever, Wait::Until))
    }

    /// Wait as long as it takes for the lock at `path`, then take it.
    pub fn acquire(path: &Path) -> Result<Self, DurableError> {
        Self::take(path, Wait::Forever)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the lock file on release (while still holding the lock) instead of clearing
    /// it: for a lock file in a shared directory, which should not outlive its use.
    pub fn remove_on_release(&mut self) {
        self.remove_on_release = true;
    }

    fn take(path: &Path, wait: Wait) -> Result<Self, DurableError> {
        for _ in 0..ATTEMPTS {
            let file = open_lock_file(path)?;
            lock_open_file(&file, path, wait)?;
            if still_at(&file, path) {
                return Ok(Self::held(file, path));
            }
            // Its last holder removed it between our open and our lock: take the new one.
            log::debug!("{} was replaced; trying again", path.display());
        }
        Err(DurableError::LockFileReplaced {
            path: path.into(),
            attempts: ATTEMPTS,
        })
    }

    /// Record this process (pid and command) in the lock file just taken.
    fn held(file: File, path: &Path) -> Self {
        record_holder(&file, path, this_holder().as_bytes());
        Self {
            file,
            path: path.into(),
            remove_on_release: false,
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if self.remove_on_release {
            // Removed while still held, and only if it is still ours.
            if still_at(&self.file, &self.path)
                && let Err(e) = fs::remove_file(&self.path)
            {
                log::debug!("{} stays: {e}", self.path.display());
            }
        } else {
            // Clear the holder before releasing, so a later message is never about us.
            let _ = self.file.set_len(0);
        }
        let _ = self.file.unlock();
    }
}

/// A lock file kept open to be taken again and again by one holder: a simulated card's,
/// taken at each of its requests. Each [`hold_within`](Self::hold_within) is an `flock` on
/// the same open file, released when its [`LockHold`] is dropped; the file is opened and
/// checked once, not at every hold. What a [`LockFile`] guarantees holds for every hold:
/// holds on two handles (or on a handle and a [`LockFile`]) exclude each other, in one
/// process or in two; the file held is the one at the path (checked after each `flock` by
/// one `lstat`: a lock file removed or replaced since it was opened is opened anew, and a
/// link or special file put at the path is refused); a holder that dies releases it.
///
/// The holder's name is kept differently: a hold writes `<pid>\n<command>\n` only when the
/// file names someone else (one `pread` per hold when it names us already), and leaves it
/// there between holds; it is cleared when the handle is dropped. Whoever finds the lock
/// held therefore reads its holder's name, except in the instant between that holder's
/// `flock` and its write, where it reads the previous holder's.
#[derive(Debug)]
pub struct ReusableLock {
    path: PathBuf,
    /// This process as it names itself in the file: `<pid>\n<command>\n`.
    holder: String,
    open: Option<OpenLock>,
}

/// A [`ReusableLock`]'s open file and its identity, to compare with the path's.
#[derive(Debug)]
struct OpenLock {
    file: File,
    dev: u64,
    ino: u64,
}

/// One hold of a [`ReusableLock`]: the lock is released when this is dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the hold is dropped"]
pub struct LockHold<'a> {
    file: &'a File,
}

impl Drop for LockHold<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl ReusableLock {
    /// A handle on the lock file at `path`; nothing is opened before the first hold.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.into(),
            holder: this_holder(),
            open: None,
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the lock, polling for at most `wait` while another holder has it; then fail
    /// with [`DurableError::Locked`] naming the holder, as
    /// [`LockFile::acquire_within`] does.
    pub fn hold_within(&mut self, wait: Duration) -> Result<LockHold<'_>, DurableError> {
        let wait = Instant::now()
            .checked_add(wait)
            .map_or(Wait::Forever, Wait::Until);
        let open = self.take(wait)?;
        let open = self.open.insert(open);
        Ok(LockHold { file: &open.file })
    }

    /// The lock file, locked, checked to be the one at the path, naming this process.
    fn take(&mut self, wait: Wait) -> Result<OpenLock, DurableError> {
        for _ in 0..ATTEMPTS {
            let open = match self.open.take() {
                Some(open) => open,
                None => OpenLock::open(&self.path)?,
            };
            if let Err(e) = lock_open_file(&open.file, &self.path, wait) {
                self.open = Some(open);
                return Err(e);
            }
            match fs::symlink_metadata(&self.path) {
                Ok(meta) if meta.dev() == open.dev && meta.ino() == open.ino => {
                    // Still ours: a hard link made to it since is refused all the same.
                    if let Err(e) = check_lock_file(&self.path, &meta) {
                        let _ = open.file.unlock();
                        return Err(e);
                    }
                    if !names(&open.file, &self.holder) {
                        record_holder(&open.file, &self.path, self.holder.as_bytes());
                    }
                    return Ok(open);
                }
                // Removed or replaced since it was opened: a holder of what is at the path
                // now would not be excluded by this lock. Open that instead.
                _ => log::debug!("{} was replaced; opening it again", self.path.display()),
            }
        }
        Err(DurableError::LockFileReplaced {
            path: self.path.clone(),
            attempts: ATTEMPTS,
        })
    }
}

impl OpenLock {
    fn open(path: &Path) -> Result<Self, DurableError> {
        let file = open_lock_file(path)?;
        let meta = file
            .metadata()
            .map_err(io_error(path, "examine the lock file"))?;
        Ok(Self {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for ReusableLock {
    fn drop(&mut self) {
        // Clear this process's name if the file still shows it: under the lock, taken
        // only if it is free at once.
        if let Some(open) = &self.open
            && open.file.try_lock().is_ok()
        {
            if still_at(&open.file, &self.path) && names(&open.file, &self.holder) {
                let _ = open.file.set_len(0);
            }
            let _ = open.file.unlock();
        }
    }
}

/// This process as a lock holder writes itself into the lock file.
fn this_holder() -> String {
    format!("{}\n{}\n", std::process::id(), holder_command())
}

/// Write `holder` into the lock file just taken, in place of what it held.
fn record_holder(file: &File, path: &Path, holder: &[u8]) {
    // The holder only serves messages: failing to record it is not fatal.
    if let Err(e) = file.set_len(0).and_then(|()| file.write_all_at(holder, 0)) {
        log::warn!("{}: could not record this process: {e}", path.display());
    }
}

/// Whether the lock file holds exactly `holder`.
fn names(file: &File, holder: &str) -> bool {
    // One byte more than `holder`, to see a longer content.
    let mut seen = [0u8; 256];
    let Some(seen) = seen.get_mut(..=holder.len()) else {
        return false;
    };
    file.read_at(seen, 0)
        .is_ok_and(|n| seen.get(..n) == Some(holder.as_bytes()))
}

/// Take the flock of the open lock file `file` (at `path`), waiting as `wait` says.
fn lock_open_file(file: &File, path: &Path, wait: Wait) -> Result<(), DurableError> {
    match wait {
        Wait::Forever => file.lock().map_err(io_error(path, "lock")),
        Wait::Until(deadline) => loop {
            match file.try_lock() {
                Ok(()) => return Ok(()),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(POLL);
                }
                Err(TryLockError::WouldBlock) => {
                    let (pid, command) = read_holder(file);
                    return Err(DurableError::Locked {
                        lock_file: path.into(),
                        pid,
                        command,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io_error(path, "lock")(e)),
            }
        },
    }
}

/// Open (or create, mode 0600) the lock file at `path`, refusing anything but a plain file
/// of its own: a symbolic or hard link could point elsewhere, a FIFO or device could block.
fn open_lock_file(path: &Path) -> Result<File, DurableError> {
    let check = |meta: &Metadata| check_lock_file(path, meta);
    if let Ok(meta) = fs::symlink_metadata(path) {
        check(&meta)?;
    }
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600);
    let actions = ("open the lock file", "examine the lock file");
    let on_link = || DurableError::NotALockFile {
        path: path.into(),
        what: "a symbolic link",
    };
    open_no_follow(&mut options, path, actions, on_link, check)
}

fn check_lock_file(path: &Path, meta: &Metadata) -> Result<(), DurableError> {
    let what = if meta.file_type().is_symlink() {
        "a symbolic link"
    } else if !meta.is_file() {
        kind_of(meta.file_type())
    } else if meta.nlink() > 1 {
        "a file with more than one name (a hard link)"
    } else {
        return Ok(());
    };
    Err(DurableError::NotALockFile {
        path: path.into(),
        what,
    })
}

/// Whether `path` still names the file `file` has open.
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// The pid and command a lock's holder wrote (`<pid>\n<command>\n`), as far as readable.
fn read_holder(file: &File) -> (Option<u32>, Option<String>) {
    let mut bytes = vec![0; HOLDER_MAX];
    // At offset 0 whatever the file's position (a [`ReusableLock`]'s file is read again).
    match file.read_at(&mut bytes, 0) {
        Ok(n) => bytes.truncate(n),
        Err(e) => {
            log::debug!("could not read a lock's holder: {e}");
            bytes.clear();
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
    let command = lines
        .next()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    (pid, command)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::test_support::{Scratch, mode};

    /// A scratch directory, and the path of a lock file in it (not made yet).
    fn lock_path() -> (Scratch, PathBuf) {
        let s = Scratch::new();
        let path = s.path("x.lock");
        (s, path)
    }

    /// `err` says that the lock at `path` is held by this process, named as it names itself.
    fn assert_locked_by_this_process(err: &DurableError, path: &Path) {
        match err {
            DurableError::Locked {
                lock_file,
                pid,
                command,
            } => {
                assert_eq!(lock_file, path);
                assert_eq!(*pid, Some(std::process::id()));
                assert_eq!(command.as_deref(), Some(holder_command().as_str()));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_holder_names_itself_is_named_to_others_and_clears_its_name_on_release() {
        let (_dir, path) = lock_path();
        let lock = LockFile::try_acquire(&path).unwrap();
        assert_eq!(lock.path(), path);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n{}\n", std::process::id(), holder_command())
        );
        // A second holder, even in this process, fails at once naming the first.
        let start = Instant::now();
        let err = LockFile::try_acquire(&path).unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(500));
        assert_locked_by_this_process(&err, &path);
        let holder = format!("pid {} ({})", std::process::id(), holder_command());
        let msg = err.to_string();
        assert!(msg.contains(&format!("is held by {holder}")), "{msg}");
        drop(lock);
        assert_eq!(fs::read_to_string(&path).unwrap(), "", "cleared on release");
        drop(LockFile::try_acquire(&path).unwrap());
        assert!(path.exists(), "the file stays for the next holder");
    }

    #[test]
    fn a_holder_that_wrote_nothing_yet_is_named_as_such() {
        let (_dir, path) = lock_path();
        let held = File::create(&path).unwrap();
        held.lock().unwrap();
        let err = LockFile::try_acquire(&path).unwrap_err();
        assert!(
            matches!(
                err,
                DurableError::Locked {
                    pid: None,
                    command: None,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("it has not written its pid yet"));
    }

    #[test]
    fn acquire_within_polls_then_fails_or_takes_the_released_lock() {
        let (_dir, path) = lock_path();
        let held = LockFile::try_acquire(&path).unwrap();
        let start = Instant::now();
        let err = LockFile::acquire_within(&path, Duration::from_millis(200)).unwrap_err();
        let waited = start.elapsed();
        assert!(matches!(err, DurableError::Locked { .. }), "{err}");
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");

        // Released while it polls: taken.
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let lock = LockFile::acquire_within(&p, Duration::from_secs(10));
            tx.send(lock.is_ok()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "it waits");
        drop(held);
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        waiter.join().unwrap();
    }

    #[test]
    fn acquire_waits_for_release() {
        let (_dir, path) = lock_path();
        let first = LockFile::acquire(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let lock = LockFile::acquire(&p).unwrap();
            tx.send(()).unwrap();
            drop(lock);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "the second acquire must wait");
        drop(first);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn a_removed_lock_file_is_taken_anew_by_who_waited_on_it() {
        let (_dir, path) = lock_path();
        let mut first = LockFile::try_acquire(&path).unwrap();
        first.remove_on_release();
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            // Opened (and waiting on) the file the first holder then removes.
            let lock = LockFile::acquire_within(&p, Duration::from_secs(10)).unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(lock);
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // The waiter holds a new file at the path, not the removed one.
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with(&format!("{}\n", std::process::id()))
        );
        assert!(matches!(
            LockFile::try_acquire(&path),
            Err(DurableError::Locked { .. })
        ));
        waiter.join().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn links_and_special_files_are_never_used_as_lock_files() {
        let s = Scratch::new();
        let planted = s.plant_links("x.lock", "dangling.lock");
        let path = &planted.link;
        for p in [path, &planted.dangling] {
            let err = LockFile::try_acquire(p).unwrap_err();
            assert!(
                matches!(&err, DurableError::NotALockFile { what: "a symbolic link", path } if path == p),
                "{err}"
            );
            assert!(err.to_string().contains("not mkclone's lock file"), "{err}");
        }
        planted.assert_not_followed();
        fs::remove_file(path).unwrap();
        fs::hard_link(&planted.target, path).unwrap();
        let err = LockFile::try_acquire(path).unwrap_err();
        assert!(err.to_string().contains("hard link"), "{err}");
        planted.assert_not_followed();
        fs::remove_file(path).unwrap();
        fs::create_dir(path).unwrap();
        let err = LockFile::try_acquire(path).unwrap_err();
        assert!(
            matches!(
                err,
                DurableError::NotALockFile {
                    what: "a directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    /// The lock file's content.
    fn holder_in(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_reusable_lock_excludes_other_holders_at_each_hold_and_names_itself_once() {
        let (_dir, path) = lock_path();
        let mut reusable = ReusableLock::new(&path);
        assert!(!path.exists(), "nothing is opened before the first hold");
        let ours = this_holder();
        for _ in 0..3 {
            let hold = reusable.hold_within(Duration::ZERO).unwrap();
            assert_eq!(mode(&path), 0o600);
            assert_eq!(holder_in(&path), ours);
            // Another holder, a LockFile or another handle, in this process too, is refused.
            let err = LockFile::try_acquire(&path).unwrap_err();
            assert!(
                matches!(&err, DurableError::Locked { pid: Some(p), .. } if *p == std::process::id()),
                "{err}"
            );
            let mut other = ReusableLock::new(&path);
            assert!(matches!(
                other.hold_within(Duration::ZERO),
                Err(DurableError::Locked { .. })
            ));
            drop(other);
            assert_eq!(
                holder_in(&path),
                ours,
                "a handle that never held clears nothing"
            );
            drop(hold);
            // Released: others take it; the name stays between holds.
            assert_eq!(holder_in(&path), ours);
            drop(LockFile::try_acquire(&path).unwrap());
            // A LockFile clears its name on release: the next hold writes ours again.
            assert_eq!(holder_in(&path), "");
        }
        // A holder that named itself otherwise (another process) is replaced by us.
        fs::write(&path, "1\nmkclone clone\nmore\n").unwrap();
        let hold = reusable.hold_within(Duration::ZERO).unwrap();
        assert_eq!(holder_in(&path), ours);
        drop(hold);
        // Held by another when the handle is dropped: its name is left alone.
        let other = LockFile::try_acquire(&path).unwrap();
        fs::write(&path, &ours).unwrap();
        drop(reusable);
        assert_eq!(holder_in(&path), ours);
        drop(other);
        // Dropped while free: our name is cleared.
        let mut reusable = ReusableLock::new(&path);
        drop(reusable.hold_within(Duration::ZERO).unwrap());
        drop(reusable);
        assert_eq!(holder_in(&path), "");
    }

    #[test]
    fn a_reusable_lock_polls_for_at_most_its_wait_then_names_the_holder() {
        let (_dir, path) = lock_path();
        let mut reusable = ReusableLock::new(&path);
        let held = LockFile::try_acquire(&path).unwrap();
        let start = Instant::now();
        let err = reusable
            .hold_within(Duration::from_millis(200))
            .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_locked_by_this_process(&err, &path);
        drop(held);
        drop(reusable.hold_within(Duration::ZERO).unwrap());
    }

    #[test]
    fn a_reusable_lock_whose_file_was_removed_or_replaced_takes_the_one_at_the_path() {
        let (_dir, path) = lock_path();
        let mut reusable = ReusableLock::new(&path);
        drop(reusable.hold_within(Duration::ZERO).unwrap());
        // Removed between two holds, then made anew by another holder who holds it now:
        // the next hold must wait for that one, not lock the removed file.
        fs::remove_file(&path).unwrap();
        let other = LockFile::try_acquire(&path).unwrap();
        assert!(matches!(
            reusable.hold_within(Duration::ZERO),
            Err(DurableError::Locked { .. })
        ));
        drop(other);
        let hold = reusable.hold_within(Duration::ZERO).unwrap();
        assert!(matches!(
            LockFile::try_acquire(&path),
            Err(DurableError::Locked { .. })
        ));
        drop(hold);
        // Replaced by another file (a rename onto it): the same.
        let new = path.with_extension("new");
        fs::write(&new, "").unwrap();
        fs::rename(&new, &path).unwrap();
        let hold = reusable.hold_within(Duration::ZERO).unwrap();
        assert!(matches!(
            LockFile::try_acquire(&path),
            Err(DurableError::Locked { .. })
        ));
        drop(hold);
    }

    #[test]
    fn a_reusable_lock_refuses_a_link_put_at_its_path_between_holds() {
        let s = Scratch::new();
        let path = s.path("x.lock");
        let mut reusable = ReusableLock::new(&path);
        drop(reusable.hold_within(Duration::ZERO).unwrap());
        // A second name given to the lock file itself.
        let other_name = s.path("elsewhere");
        fs::hard_link(&path, &other_name).unwrap();
        let err = reusable.hold_within(Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("hard link"), "{err}");
        fs::remove_file(&other_name).unwrap();
        drop(reusable.hold_within(Duration::ZERO).unwrap());
        // The lock file replaced by a symbolic link.
        fs::remove_file(&path).unwrap();
        let target = s.file("target", b"keep");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = reusable.hold_within(Duration::ZERO).unwrap_err();
        assert!(
            matches!(
                err,
                DurableError::NotALockFile {
                    what: "a symbolic link",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn a_lock_in_a_missing_directory_is_an_io_error() {
        let s = Scratch::new();
        let err = LockFile::try_acquire(&s.path("nope/x.lock")).unwrap_err();
        assert!(
            matches!(
                err,
                DurableError::Io {
                    action: "open the lock file",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_not_found());
    }
}
