//! Where a card's state lives: in memory (unit tests) or in one file per card, shared by
//! separate processes.
//!
//! A file card is locked for the whole of each request: read, run the verb, write. The
//! lock, the writes and the clean-up are mkclone's one durable module (`mkclone_durable`):
//! the lock is an `flock` of `<file>.lock`, kept open by each store from one request to
//! the next ([`ReusableLock`]: one `flock`, `lstat` and `pread` per request, the file
//! opened anew if it was removed or replaced); writes are its atomic replacement
//! (temporary file in the same directory, created 0600, fsync, rename, fsync of the
//! directory), and the card file is 0600: it holds keys in the clear (REHEARSAL ONLY).
//!
//! Every request sees the card as its file holds it then, whoever wrote it last, for one
//! `stat` when the file has not changed: a store keeps the card file it last read or wrote
//! open, with its state, and reads the file again only when the path names another file
//! (every write replaces the file, so it has another inode, and the kept file's inode
//! cannot be reused while it is open) or when its size or times changed (a file written in
//! place, by hand); it parses the file again only when its bytes differ.
//!
//! The lock is never waited for silently without end: a request whose card is locked by
//! another process polls for at most [`LOCK_WAIT`], then fails with
//! [`StoreError::InUse`], naming the holder (its pid and command, which every holder writes
//! into the lock file). A temporary file (`.card-XX.json.<pid>.<n>.mkclone-tmp`, or
//! `card-XX.json.tmp.<pid>` as an earlier mkclone named them) that a killed process left
//! behind is removed when the card is next opened, once its process is gone.

use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mkclone_backend::timing::{self, Category};
use mkclone_durable::{DurableError, LockFile, ReusableLock, Sensitivity, WipingBuffer};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::state::CardState;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("simulated card file {path} does not exist: create the card first")]
    Missing { path: PathBuf },
    #[error("simulated card file {path} already exists; it was left untouched")]
    Exists { path: PathBuf },
    #[error(
        "simulated card file {path} is corrupt or not a card file ({detail}); it was left untouched. \
         Restore it from a copy, or delete it to start a fresh card"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "simulated card file {path} is in use by {}; wait for it to finish or stop it, then run \
         this command again (the lock, {lock_file}, is released as soon as that process exits)",
        holder_text(*.pid, .command.as_deref())
    )]
    InUse {
        path: PathBuf,
        lock_file: PathBuf,
        /// The holder's pid and command as it wrote them into the lock file, if it had.
        pid: Option<u32>,
        command: Option<String>,
    },
    #[error("simulated card file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory of the simulated cards can be written by other users.
    #[error(
        "the simulated cards' directory {path} is writable by other users (mode {mode:04o}): \
         one could put card state with keys they know in place of a card's, so mkclone does \
         not use it. Restrict it with `chmod 700 {path}` (and check its files), then run the \
         command again"
    )]
    DirNotPrivate { path: PathBuf, mode: u32 },
    /// Another refusal of the durable module, e.g. something other than a lock file at the
    /// card's lock path (a link, a FIFO…).
    #[error(transparent)]
    File(DurableError),
}

impl StoreError {
    /// The durable module's error on the card file `path`, as the simulator says it.
    pub(crate) fn from_durable(path: &Path, e: DurableError) -> Self {
        match e {
            DurableError::Locked {
                lock_file,
                pid,
                command,
            } => Self::InUse {
                path: path.into(),
                lock_file,
                pid,
                command,
            },
            DurableError::AlreadyExists { .. } => Self::Exists { path: path.into() },
            DurableError::DirectoryNotPrivate { path, mode } => Self::DirNotPrivate { path, mode },
            DurableError::Io { path, source, .. } => Self::Io { path, source },
            other => Self::File(other),
        }
    }
}

/// A card's storage.
#[derive(Clone, Debug)]
pub enum Store {
    Memory(Arc<Mutex<CardState>>),
    File(FileCard),
}

/// A card file as this process uses it. The clones of a store share, and take turns on
/// (one request at a time, under a mutex), the card's lock kept open and the card as it
/// was last read or written.
#[derive(Clone)]
pub struct FileCard {
    path: Arc<Path>,
    shared: Arc<Mutex<CardFile>>,
}

impl fmt::Debug for FileCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the card's contents: it holds keys in the clear.
        f.debug_struct("FileCard")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The card's lock, kept open from one request to the next, and the card last seen.
struct CardFile {
    lock: ReusableLock,
    last: Option<LastSeen>,
}

/// The card file as this process last read or wrote it, kept open. While the card's path
/// names this very file (same device and inode: no other file can have that inode while
/// this one is open) with the same size and times, nobody has replaced it, and the state is
/// reused without reading the file; otherwise the file at the path is read, and parsed and
/// checked only if its bytes differ from these.
struct LastSeen {
    _file: File,
    stamp: Stamp,
    bytes: Zeroizing<Vec<u8>>,
    state: CardState,
}

/// What `stat` says of a card file that changes whenever the file does: mkclone replaces a
/// card file (a new inode, see [`LastSeen`]); the size and times change when a file is
/// written in place (by hand), except by a write of the same size within the filesystem's
/// timestamp granularity of the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Store {
    pub fn memory(state: CardState) -> Self {
        Self::Memory(Arc::new(Mutex::new(state)))
    }

    /// Create a card file (refusing to overwrite one).
    pub fn create_file(path: &Path, state: &CardState) -> Result<Self, StoreError> {
        let _lock = lock(path)?;
        let json = to_json(path, state, 0)?;
        timing::measure(Category::FileSync, || {
            mkclone_durable::create_new_exclusive(path, &json, Sensitivity::Secret)
        })
        .map_err(|e| StoreError::from_durable(path, e))?;
        Ok(Self::File(FileCard::new(path)))
    }

    /// Open an existing card file (checked on every request). Temporary files that killed
    /// processes left next to it are removed (see [`remove_stale_temps`]).
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.into() });
        }
        remove_stale_temps(path);
        Ok(Self::File(FileCard::new(path)))
    }

    /// Run `f` on the card's state under the card's lock; save when `f` says the state
    /// changed. `f` returns (result, changed). A card locked by another process is waited
    /// for at most [`LOCK_WAIT`] ([`StoreError::InUse`] after that).
    pub fn with_state<T>(
        &self,
        f: impl FnOnce(&mut CardState) -> (T, bool),
    ) -> Result<T, StoreError> {
        self.with_state_within(LOCK_WAIT, f)
    }

    /// [`with_state`](Self::with_state), waiting at most `wait` for the card's lock.
    pub fn with_state_within<T>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut CardState) -> (T, bool),
    ) -> Result<T, StoreError> {
        match self {
            Self::Memory(m) => {
                // A poisoned lock means a test thread panicked mid-request; the state
                // is still the last complete one (verbs change state last).
                let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
                let (out, _) = f(&mut guard);
                Ok(out)
            }
            Self::File(card) => card.with_state_within(wait, f),
        }
    }

    /// One request that may only read the card, under the card's lock: `read` runs on the
    /// state as it is, without the copy a change is made on (the type of `read` keeps it
    /// from changing anything); when it hands its input back, the request may change the
    /// card, and `change` runs as `f` does in [`with_state_within`](Self::with_state_within).
    pub fn read_or_change_within<T, R>(
        &self,
        wait: Duration,
        read: impl FnOnce(&CardState) -> Result<T, R>,
        change: impl FnOnce(&mut CardState, R) -> (T, bool),
    ) -> Result<T, StoreError> {
        match self {
            Self::Memory(m) => {
                let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(match read(&guard) {
                    Ok(out) => out,
                    Err(input) => change(&mut guard, input).0,
                })
            }
            Self::File(card) => card.read_or_change_within(wait, read, change),
        }
    }

    /// A snapshot of the state (tests, status displays).
    pub fn snapshot(&self) -> Result<CardState, StoreError> {
        self.with_state(|s| (s.clone(), false))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.into(),
        source,
    }
}

/// [`io`], or [`StoreError::Missing`] when the card file is not there.
fn missing_or_io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::Missing { path: path.into() }
        } else {
            io(path)(e)
        }
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// How long a request waits, silently, for a card another process holds. A request holds
/// the lock for milliseconds; a longer wait means the holder is stopped or stuck.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

fn lock(path: &Path) -> Result<LockFile, StoreError> {
    lock_within(path, LOCK_WAIT)
}

/// Take the card's lock, polling for at most `wait` while another process holds it (the
/// holder records its pid and command in the lock file for the messages of others).
fn lock_within(path: &Path, wait: Duration) -> Result<LockFile, StoreError> {
    LockFile::acquire_within(&lock_path(path), wait).map_err(|e| StoreError::from_durable(path, e))
}

fn holder_text(pid: Option<u32>, command: Option<&str>) -> String {
    match (pid, command) {
        (Some(pid), Some(command)) => format!("pid {pid} ({command})"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "another process (it has not written its pid yet)".into(),
    }
}

/// Remove the temporary files (keys in the clear) that a killed process left next to the
/// card file, when that process no longer exists. Done under the card's lock, only if it
/// is free at once (a live writer holds it); best effort: failures are logged.
fn remove_stale_temps(path: &Path) {
    let _lock = match lock_within(path, Duration::ZERO) {
        Ok(lock) => lock,
        Err(e) => {
            log::debug!(
                "stale temporary files of {} not looked for: {e}",
                path.display()
            );
            return;
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let removed = mkclone_durable::remove_stale_temps_of(path).and_then(|_| {
        mkclone_durable::remove_stale_files(dir, |name| earlier_temp_writer(path, name))
    });
    if let Err(e) = removed {
        log::warn!(
            "could not look for stale temporary files of {}: {e}",
            path.display()
        );
    }
}

/// The writer's pid in the name of a temporary file of the card file `path` as mkclone
/// named them before its one durable module: `<card file>.tmp.<pid>`. Such files (keys in
/// the clear) may remain from a process killed before an upgrade.
fn earlier_temp_writer(path: &Path, name: &std::ffi::OsStr) -> Option<u32> {
    let card_name = path.file_name()?.as_encoded_bytes();
    let digits = name
        .as_encoded_bytes()
        .strip_prefix(card_name)?
        .strip_prefix(b".tmp.")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl FileCard {
    fn new(path: &Path) -> Self {
        Self {
            path: path.into(),
            shared: Arc::new(Mutex::new(CardFile {
                lock: ReusableLock::new(&lock_path(path)),
                last: None,
            })),
        }
    }

    /// One request: the card's lock, the state as the file holds it now, `f`, and the
    /// durable write of the new state if `f` changed it.
    fn with_state_within<T>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut CardState) -> (T, bool),
    ) -> Result<T, StoreError> {
        self.read_or_change_within(wait, |_| Err(()), |state, ()| f(state))
    }

    /// One request: the card's lock, the state as the file holds it now, `read` on it;
    /// when `read` hands its input back, `change` on a copy, and the durable write of the
    /// copy if `change` changed it.
    fn read_or_change_within<T, R>(
        &self,
        wait: Duration,
        read: impl FnOnce(&CardState) -> Result<T, R>,
        change: impl FnOnce(&mut CardState, R) -> (T, bool),
    ) -> Result<T, StoreError> {
        let path = &*self.path;
        let mut shared = self.shared.lock().unwrap_or_else(|poisoned| {
            // A thread panicked mid-request: forget what it may have left half done.
            let mut shared = poisoned.into_inner();
            shared.last = None;
            shared
        });
        self.shared.clear_poison();
        let CardFile { lock, last } = &mut *shared;
        let _hold = lock
            .hold_within(wait)
            .map_err(|e| StoreError::from_durable(path, e))?;
        let now = current(path, last)?;
        let input = match read(now) {
            Ok(out) => return Ok(out),
            Err(input) => input,
        };
        // A verb that may change the card runs on a copy: one that fails half-way leaves
        // the card as it was.
        let mut state = now.clone();
        let (out, changed) = change(&mut state, input);
        if changed {
            // Let go of the old file before replacing it, as a store that keeps nothing
            // would: the rename frees it. After a failed write, the next request reads the
            // file again.
            let size_hint = last.as_ref().map_or(0, |l| l.bytes.len());
            *last = None;
            *last = Some(write(path, state, size_hint)?);
        }
        Ok(out)
    }
}

/// The card's state as its file holds it now (under the card's lock): `last`'s, if the
/// path still names the file it was read from, unchanged; else read from the file (and
/// parsed and checked if its bytes differ from `last`'s), and remembered in `last`.
fn current<'a>(path: &Path, last: &'a mut Option<LastSeen>) -> Result<&'a CardState, StoreError> {
    // lstat: a link planted at the path has a stamp of its own, and is refused when read.
    let now = Stamp::of(&fs::symlink_metadata(path).map_err(missing_or_io(path))?);
    let seen = match last.take() {
        Some(l) if l.stamp == now => l,
        previous => read(path, previous)?,
    };
    Ok(&last.insert(seen).state)
}

/// The largest card file read: far above any card's state (a few retained keys and
/// registrations), far below what would exhaust memory.
const MAX_CARD_FILE: u64 = 16 << 20;

/// The card file read anew; parsed and checked only if its bytes differ from `previous`'s.
/// Never through a symbolic link, never a FIFO or device (opening one would block with the
/// card's lock held), never more than [`MAX_CARD_FILE`] bytes.
fn read(path: &Path, previous: Option<LastSeen>) -> Result<LastSeen, StoreError> {
    let file = mkclone_durable::open_regular(path, mkclone_durable::Access::Read).map_err(|e| {
        if e.is_not_found() {
            StoreError::Missing { path: path.into() }
        } else {
            StoreError::from_durable(path, e)
        }
    })?;
    let stamp = Stamp::of(&file.metadata().map_err(io(path))?);
    // Sized once from the file (no reallocation leaves a copy of it unzeroed), capped.
    let bytes = mkclone_durable::read_all_capped(&file, MAX_CARD_FILE).map_err(|e| {
        match mkclone_durable::TooLarge::in_error(&e) {
            Some(refused) => StoreError::Corrupt {
                path: path.into(),
                detail: format!(
                    "{} bytes, more than any card's state ({MAX_CARD_FILE} at most): not a card \
                     file",
                    refused.size
                ),
            },
            None => io(path)(e),
        }
    })?;
    let state = match previous {
        Some(l) if l.bytes == bytes => l.state,
        _ => parse(path, &bytes)?,
    };
    Ok(LastSeen {
        _file: file,
        stamp,
        bytes,
        state,
    })
}

/// The state a card file's bytes hold, checked.
fn parse(path: &Path, bytes: &[u8]) -> Result<CardState, StoreError> {
    let corrupt = |detail| StoreError::Corrupt {
        path: path.into(),
        detail,
    };
    let state: CardState = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    state.validate().map_err(corrupt)?;
    Ok(state)
}

/// The card file's bytes for `state`, in a buffer of about `size_hint` bytes to begin with
/// (the card file's last size).
fn to_json(
    path: &Path,
    state: &CardState,
    size_hint: usize,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    // Built where no outgrown block keeps the card's keys.
    let mut out =
        WipingBuffer::with_capacity(size_hint.saturating_add(size_hint / 8).saturating_add(4096));
    serde_json::to_writer_pretty(&mut out, state).map_err(|e| StoreError::Corrupt {
        path: path.into(),
        detail: e.to_string(),
    })?;
    Ok(out.into_bytes())
}

/// Replace the card file with `state`, durably (0600), keeping the new file open.
fn write(path: &Path, state: CardState, size_hint: usize) -> Result<LastSeen, StoreError> {
    let bytes = to_json(path, &state, size_hint)?;
    let file = timing::measure(Category::FileSync, || {
        mkclone_durable::write_atomic_kept(path, &bytes, Sensitivity::Secret)
    })
    .map_err(|e| StoreError::from_durable(path, e))?;
    let stamp = Stamp::of(&file.metadata().map_err(io(path))?);
    Ok(LastSeen {
        _file: file,
        stamp,
        bytes,
        state,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use mkclone_backend::SerialNumber;
    use mkclone_durable::holder_command;

    use super::*;

    /// A pid no process can have (above Linux's PID_MAX_LIMIT of 2^22).
    const DEAD_PID: u32 = 999_999_999;
    const HOLDER_ENV: &str = "MKCLONE_TEST_ONLY_SIM_CARD_HOLDER";

    /// A card's text is the same whatever buffer it starts in
    /// (hw-sim/tests/freed_memory.rs checks that the blocks it leaves hold no key).
    #[test]
    fn a_card_text_does_not_depend_on_its_first_buffer() {
        let state = CardState::new(SerialNumber::new("WIPING").unwrap());
        let path = Path::new("card.json");
        let small = to_json(path, &state, 0).unwrap();
        assert_eq!(*small, serde_json::to_vec_pretty(&state).unwrap());
        assert_eq!(*to_json(path, &state, 1 << 20).unwrap(), *small);
    }

    fn card(dir: &Path) -> PathBuf {
        let path = dir.join("card-03.000d.json");
        Store::create_file(&path, &CardState::new(SerialNumber::new("S3").unwrap())).unwrap();
        path
    }

    /// This test binary run again as another process, for its test `name` alone, with `env`
    /// set to the card file `path`; its standard input and output are pipes.
    fn spawn_child(name: &str, env: &str, path: &Path) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(env, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Not a test of its own: the other process of
    /// `a_card_held_by_another_process_fails_after_the_short_wait_naming_it`, which runs this
    /// test binary again with `HOLDER_ENV` set. It holds the card through a request until its
    /// standard input closes.
    #[test]
    fn card_holder_child() {
        let Ok(path) = std::env::var(HOLDER_ENV) else {
            return;
        };
        let store = Store::open_file(Path::new(&path)).unwrap();
        store
            .with_state(|_| {
                println!("HOLDING");
                std::io::stdout().flush().unwrap();
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                ((), false)
            })
            .unwrap();
    }

    #[test]
    fn a_card_held_by_another_process_fails_after_the_short_wait_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = card(dir.path());
        // Our store has used the card before: its lock file is open, and names us.
        let store = Store::open_file(&path).unwrap();
        store.with_state(|_| ((), false)).unwrap();
        let mut child = spawn_child("store::tests::card_holder_child", HOLDER_ENV, &path);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("HOLDING")),
            "the child never took the card"
        );
        // The holder named itself in the lock file.
        let recorded = fs::read_to_string(lock_path(&path)).unwrap();
        assert!(
            recorded.starts_with(&format!("{}\n", child.id())),
            "{recorded:?}"
        );

        let start = Instant::now();
        let err = store.with_state(|_| ((), false)).unwrap_err();
        let waited = start.elapsed();
        match &err {
            StoreError::InUse {
                path: p,
                pid,
                command,
                ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*pid, Some(child.id()));
                let exe = std::env::current_exe().unwrap();
                let exe = exe.file_name().unwrap().to_string_lossy();
                assert_eq!(
                    command.as_deref(),
                    Some(format!("{exe} store::tests::card_holder_child").as_str())
                );
            }
            other => panic!("expected InUse, got {other}"),
        }
        assert!(waited >= LOCK_WAIT, "it waits a little first ({waited:?})");
        assert!(
            waited < LOCK_WAIT + Duration::from_secs(2),
            "then fails ({waited:?})"
        );
        let msg = err.to_string();
        for part in [
            path.display().to_string(),
            format!("in use by pid {}", child.id()),
            "card_holder_child".into(),
            "wait for it to finish or stop it".into(),
        ] {
            assert!(msg.contains(&part), "{part:?} not in: {msg}");
        }
        // Asked not to wait, it fails at once.
        let start = Instant::now();
        let err = store
            .with_state_within(Duration::ZERO, |_| ((), false))
            .unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_millis(500));

        drop(child.stdin.take());
        let _rest: Vec<String> = lines.map_while(Result::ok).collect();
        assert!(child.wait().unwrap().success());
        // Released (and the holder's name cleared): the card answers again.
        assert_eq!(fs::read_to_string(lock_path(&path)).unwrap(), "");
        store.with_state(|_| ((), false)).unwrap();
    }

    #[test]
    fn a_lock_holder_names_itself_and_clears_its_name_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = card(dir.path());
        let held = lock(&path).unwrap();
        let recorded = fs::read_to_string(lock_path(&path)).unwrap();
        let mut lines = recorded.lines();
        assert_eq!(lines.next(), Some(std::process::id().to_string().as_str()));
        assert_eq!(lines.next(), Some(holder_command().as_str()));
        // A second holder (locks exclude each other within a process too) waits, then fails.
        let start = Instant::now();
        let err = lock_within(&path, Duration::from_millis(200))
            .err()
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(200));
        match err {
            StoreError::InUse { pid, .. } => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other}"),
        }
        drop(held);
        assert_eq!(fs::read_to_string(lock_path(&path)).unwrap(), "");
        drop(lock_within(&path, Duration::ZERO).unwrap());
    }

    #[test]
    fn a_backend_on_a_busy_card_waits_once_not_at_every_request() {
        use mkclone_backend::Backend;
        let dir = tempfile::tempdir().unwrap();
        let bus = crate::SimBus::new(dir.path());
        let apqn = crate::Apqn::new(3, 0x0d).unwrap();
        bus.create_card(apqn, &SerialNumber::new("S3").unwrap())
            .unwrap();
        let mut backend = bus.open_card(apqn).unwrap();
        let held = lock(&bus.card_path(apqn)).unwrap();
        // A read is retried once by CcaBackend: still one wait in all.
        let start = Instant::now();
        let err = backend.status().unwrap_err();
        let waited = start.elapsed();
        assert!(
            waited >= LOCK_WAIT && waited < LOCK_WAIT + Duration::from_secs(1),
            "{waited:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("in use by pid {}", std::process::id())),
            "{msg}"
        );
        let start = Instant::now();
        backend.status().unwrap_err();
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "no second wait"
        );
        drop(held);
        backend.status().unwrap();
    }

    const WRITER_ENV: &str = "MKCLONE_TEST_ONLY_SIM_CARD_WRITER";

    fn eid(text: &str) -> Option<mkclone_backend::Eid> {
        Some(mkclone_backend::Eid::new(text).unwrap())
    }

    /// Not a test of its own: the other process of
    /// `changes_made_by_another_process_between_two_requests_are_seen`. For each line
    /// `<expected EID> <new EID>` of its standard input it checks that the card shows the
    /// expected EID, sets the new one, and answers `ANSWER OK` (or what it found).
    #[test]
    fn card_writer_child() {
        let Ok(path) = std::env::var(WRITER_ENV) else {
            return;
        };
        let store = Store::open_file(Path::new(&path)).unwrap();
        for line in std::io::stdin().lines() {
            let line = line.unwrap();
            let (expected, new) = line.split_once(' ').unwrap();
            let found = store
                .with_state(|s| {
                    let found = s.eid.clone();
                    s.eid = eid(new);
                    (found, true)
                })
                .unwrap();
            // On a line of its own: the harness prints the test's name without a newline.
            if found == eid(expected) {
                println!("\nANSWER OK");
            } else {
                println!("\nANSWER found {found:?}");
            }
            std::io::stdout().flush().unwrap();
        }
    }

    #[test]
    fn changes_made_by_another_process_between_two_requests_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = card(dir.path());
        let store = Store::open_file(&path).unwrap();
        let read_eid = || store.with_state(|s| (s.eid.clone(), false)).unwrap();
        // The read-only path (no copy of the state) must see the other's changes too.
        let only_read_eid = || {
            store
                .read_or_change_within(
                    LOCK_WAIT,
                    |s| Ok::<_, ()>(s.eid.clone()),
                    |_, ()| panic!("a read was handed over to change the card"),
                )
                .unwrap()
        };
        assert_eq!(read_eid(), None);
        let mut child = spawn_child("store::tests::card_writer_child", WRITER_ENV, &path);
        let mut to_child = child.stdin.take().unwrap();
        let mut answers = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ANSWER ").map(str::to_owned));
        // Turn about, in quick succession: each side changes the card (to a file of the same
        // size: an EID of the same length) and reads the other's change at its next request.
        // Every write replaces the file; a filesystem may give a freed inode number again at
        // once, and times may fall within one tick of its clock: the store keeps the file it
        // last saw open, so that its inode number cannot be given to the next one.
        for i in 0..50 {
            let ours = format!("P{i:04}");
            store
                .with_state(|s| {
                    s.eid = eid(&ours);
                    ((), true)
                })
                .unwrap();
            let theirs = format!("C{i:04}");
            writeln!(to_child, "{ours} {theirs}").unwrap();
            assert_eq!(answers.next().as_deref(), Some("OK"), "round {i}");
            if i % 2 == 0 {
                assert_eq!(read_eid(), eid(&theirs), "round {i}");
            } else {
                let stamp = std::fs::metadata(&path).unwrap().ino();
                assert_eq!(only_read_eid(), eid(&theirs), "round {i}");
                // And it writes nothing.
                assert_eq!(std::fs::metadata(&path).unwrap().ino(), stamp, "round {i}");
            }
        }
        drop(to_child);
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn a_card_file_replaced_or_edited_in_place_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = card(dir.path());
        let store = Store::open_file(&path).unwrap();
        let read_eid = || store.with_state(|s| (s.eid.clone(), false)).unwrap();
        assert_eq!(read_eid(), None);
        let mut state = store.snapshot().unwrap();
        // Replaced as another mkclone would, outside this store.
        state.eid = eid("REPLACED");
        mkclone_durable::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&state).unwrap(),
            Sensitivity::Secret,
        )
        .unwrap();
        assert_eq!(read_eid(), eid("REPLACED"));
        // Written in place (the same inode), to another size.
        state.eid = eid("EDITED IN PLACE");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all(&serde_json::to_vec_pretty(&state).unwrap())
            .unwrap();
        drop(file);
        assert_eq!(read_eid(), eid("EDITED IN PLACE"));
        // Removed: said so, as before.
        fs::remove_file(&path).unwrap();
        let err = store.with_state(|_| ((), false)).unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    }

    #[test]
    fn clones_of_a_store_take_turns_and_see_each_others_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = card(dir.path());
        let store = Store::open_file(&path).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        store
                            .with_state(|s| {
                                let state = s.keys_mut(mkclone_backend::CloneableKind::Sym);
                                state.received_more.push(t);
                                ((), true)
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every change of every thread is there: none was made on a stale state.
        let fresh = Store::open_file(&path).unwrap().snapshot().unwrap();
        let seen = &fresh
            .keys(mkclone_backend::CloneableKind::Sym)
            .received_more;
        assert_eq!(seen.len(), 40);
        for t in 0..4 {
            assert_eq!(seen.iter().filter(|&&x| x == t).count(), 10);
        }
    }

    /// Temporary files of a card named `name(card file, pid)`: those of dead processes are
    /// removed when the card is opened, and nothing else.
    fn stale_temps_are_removed_on_open(name: fn(&str, &str) -> String) {
        let dir = tempfile::tempdir().unwrap();
        let path = card(dir.path());
        let live = std::os::unix::process::parent_id();
        let with = |pid: &str| {
            let p = dir.path().join(name("card-03.000d.json", pid));
            fs::write(&p, b"{\"keys\": \"in the clear\"}").unwrap();
            p
        };
        let dead = with(&DEAD_PID.to_string());
        let alive = with(&live.to_string());
        let not_a_pid = with("12x");
        let other_card = dir
            .path()
            .join(name("card-04.000d.json", &DEAD_PID.to_string()));
        fs::write(&other_card, b"x").unwrap();
        // A directory that happens to match is never removed.
        let dir_match = dir
            .path()
            .join(name("card-03.000d.json", &(DEAD_PID - 1).to_string()));
        fs::create_dir(&dir_match).unwrap();

        // While a live process holds the card (it may be writing), nothing is removed.
        let held = lock(&path).unwrap();
        Store::open_file(&path).unwrap();
        assert!(dead.exists());
        drop(held);

        Store::open_file(&path).unwrap();
        assert!(
            !dead.exists(),
            "the dead process's temporary file is removed"
        );
        assert!(alive.exists(), "a live process's temporary file is kept");
        assert!(not_a_pid.exists());
        assert!(
            other_card.exists(),
            "another card's files wait for its own opening"
        );
        assert!(dir_match.is_dir());
        // The card itself is untouched and still answers.
        Store::open_file(&path)
            .unwrap()
            .with_state(|s| (s.validate(), false))
            .unwrap()
            .unwrap();
    }

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed_on_open() {
        // As the durable module names them: `.<card file>.<pid>.<counter>.mkclone-tmp`.
        stale_temps_are_removed_on_open(|card, pid| format!(".{card}.{pid}.0.mkclone-tmp"));
    }

    #[test]
    fn stale_temp_files_of_an_earlier_mkclone_are_removed_on_open() {
        // As mkclone named them before: `<card file>.tmp.<pid>`.
        stale_temps_are_removed_on_open(|card, pid| format!("{card}.tmp.{pid}"));
    }
}
