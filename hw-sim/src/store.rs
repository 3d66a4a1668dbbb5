//! Where a card's state lives: in memory (unit tests) or in one file per card, shared by
//! separate processes.
//!
//! A file card is locked (an exclusive `flock` on `<file>.lock`) for the whole of each
//! request: read, run the verb, write. Writes are atomic (temporary file in the same
//! directory, fsync, rename, fsync of the directory) and the file is created 0600: it
//! holds keys in the clear (REHEARSAL ONLY).
//!
//! The lock is never waited for silently without end: a request whose card is locked by
//! another process polls for at most [`LOCK_WAIT`], then fails with
//! [`StoreError::InUse`], naming the holder (its pid and command, which every holder writes
//! into the lock file). A temporary file (`card-XX.json.tmp.<pid>`) that a killed process
//! left behind is removed when the card is next opened, once its process is gone.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mkclone_backend::timing::{self, Category};
use thiserror::Error;

use crate::state::CardState;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "simulated card file {path} does not exist: create the card first (mkclone sim create, or the demo)"
    )]
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
}

/// A card's storage.
#[derive(Clone, Debug)]
pub enum Store {
    Memory(Arc<Mutex<CardState>>),
    File(PathBuf),
}

impl Store {
    pub fn memory(state: CardState) -> Self {
        Self::Memory(Arc::new(Mutex::new(state)))
    }

    /// Create a card file (refusing to overwrite one).
    pub fn create_file(path: &Path, state: &CardState) -> Result<Self, StoreError> {
        let _lock = lock(path)?;
        if path.exists() {
            return Err(StoreError::Exists { path: path.into() });
        }
        write_atomically(path, state)?;
        Ok(Self::File(path.into()))
    }

    /// Open an existing card file (checked on every request). Temporary files that killed
    /// processes left next to it are removed (see [`remove_stale_temps`]).
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.into() });
        }
        remove_stale_temps(path);
        Ok(Self::File(path.into()))
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
            Self::File(path) => {
                let _lock = lock_within(path, wait)?;
                let mut state = read(path)?;
                let (out, changed) = f(&mut state);
                if changed {
                    write_atomically(path, &state)?;
                }
                Ok(out)
            }
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

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// How long a request waits, silently, for a card another process holds. A request holds
/// the lock for milliseconds; a longer wait means the holder is stopped or stuck.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

const LOCK_POLL: Duration = Duration::from_millis(20);

/// Holds the card's exclusive lock until dropped.
struct CardLock(File);

impl Drop for CardLock {
    fn drop(&mut self) {
        // Clear the holder before releasing, so a later message is never about us.
        let _ = self.0.set_len(0);
        let _ = self.0.unlock();
    }
}

fn lock(path: &Path) -> Result<CardLock, StoreError> {
    lock_within(path, LOCK_WAIT)
}

/// Take the card's lock, polling for at most `wait` while another process holds it; then
/// record this process (pid and command) in the lock file for the messages of others.
fn lock_within(path: &Path, wait: Duration) -> Result<CardLock, StoreError> {
    let lp = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&lp)
        .map_err(io(&lp))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if start.elapsed() < wait => {
                std::thread::sleep(LOCK_POLL);
            }
            Err(TryLockError::WouldBlock) => {
                let (pid, command) = read_holder(&lp);
                return Err(StoreError::InUse {
                    path: path.into(),
                    lock_file: lp,
                    pid,
                    command,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(&lp)(e)),
        }
    }
    // The holder only serves messages: failing to record it is not fatal.
    let holder = format!("{}\n{}\n", std::process::id(), holder_command());
    if let Err(e) = file
        .set_len(0)
        .and_then(|()| file.write_all_at(holder.as_bytes(), 0))
    {
        log::debug!("{}: could not record this process: {e}", lp.display());
    }
    Ok(CardLock(file))
}

/// The pid and command a lock's holder wrote (`<pid>\n<command>\n`), as far as readable.
fn read_holder(lock_file: &Path) -> (Option<u32>, Option<String>) {
    let text = fs::read_to_string(lock_file).unwrap_or_default();
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
    let command = lines
        .next()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    (pid, command)
}

fn holder_text(pid: Option<u32>, command: Option<&str>) -> String {
    match (pid, command) {
        (Some(pid), Some(command)) => format!("pid {pid} ({command})"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "another process (it has not written its pid yet)".into(),
    }
}

/// This process as a lock holder names itself: the program's file name and the first
/// argument that is not an option (mkclone's subcommand), e.g. "mkclone clone". Never the
/// other arguments. Twin of `holder_command` in crates/ceremony/src/durable.rs (hw-sim
/// cannot depend on the ceremony crate).
fn holder_command() -> String {
    let mut args = std::env::args_os();
    let clean = |s: &std::ffi::OsStr| -> String {
        String::from_utf8_lossy(s.as_bytes())
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect()
    };
    let program = args
        .next()
        .map(|a| {
            let p = PathBuf::from(a);
            clean(p.file_name().unwrap_or(p.as_os_str()))
        })
        .unwrap_or_default();
    match args.find(|a| !a.as_bytes().starts_with(b"-")) {
        Some(sub) => format!("{program} {}", clean(&sub)),
        None => program,
    }
}

/// Remove the temporary files (`<card file>.tmp.<pid>`, keys in the clear) that a killed
/// process left next to the card file, when that process no longer exists. Done under the
/// card's lock, only if it is free at once (a live writer holds it); best effort: failures
/// are logged. Twin of `remove_stale_temps` in crates/ceremony/src/durable.rs.
fn remove_stale_temps(path: &Path) {
    let Some(card_name) = path.file_name() else {
        return;
    };
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
    let mut prefix = card_name.as_bytes().to_vec();
    prefix.extend_from_slice(b".tmp.");
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log::warn!(
                "could not look for stale temporary files in {}: {e}",
                dir.display()
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .as_bytes()
            .strip_prefix(prefix.as_slice())
            .filter(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok())
        else {
            continue;
        };
        if pid_may_be_alive(pid) {
            continue;
        }
        let tmp = entry.path();
        // Only plain files: never follow or remove anything else that happens to match.
        if !fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        match fs::remove_file(&tmp) {
            Ok(()) => log::info!(
                "removed {}, a temporary card file left by a stopped process (pid {pid})",
                tmp.display()
            ),
            Err(e) => log::warn!(
                "could not remove stale temporary file {}: {e}",
                tmp.display()
            ),
        }
    }
}

/// False only when we are sure the process is gone (judged by `/proc/<pid>` in this host's
/// process namespace; without `/proc`, every process may be alive). Twin of
/// `pid_may_be_alive` in crates/ceremony/src/durable.rs.
fn pid_may_be_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

fn read(path: &Path) -> Result<CardState, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing { path: path.into() });
        }
        Err(e) => return Err(io(path)(e)),
    };
    let state: CardState = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.into(),
        detail: e.to_string(),
    })?;
    state.validate().map_err(|detail| StoreError::Corrupt {
        path: path.into(),
        detail,
    })?;
    Ok(state)
}

fn write_atomically(path: &Path, state: &CardState) -> Result<(), StoreError> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec_pretty(state).map_err(|e| {
        StoreError::Corrupt {
            path: path.into(),
            detail: e.to_string(),
        }
    })?);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&json).map_err(io(&tmp))?;
        timing::measure(Category::FileSync, || f.sync_all()).map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir)
        .and_then(|d| timing::measure(Category::FileSync, || d.sync_all()))
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use mkclone_backend::SerialNumber;

    use super::*;

    /// A pid no process can have (above Linux's PID_MAX_LIMIT of 2^22).
    const DEAD_PID: u32 = 999_999_999;
    const HOLDER_ENV: &str = "MKCLONE_TEST_ONLY_SIM_CARD_HOLDER";

    fn card(dir: &Path) -> PathBuf {
        let path = dir.join("card-03.000d.json");
        Store::create_file(&path, &CardState::new(SerialNumber::new("S3").unwrap())).unwrap();
        path
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
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "store::tests::card_holder_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
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

        let store = Store::open_file(&path).unwrap();
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

    #[test]
    fn holder_command_is_the_program_and_the_first_non_option_argument_only() {
        let cmd = holder_command();
        let exe = std::env::current_exe().unwrap();
        assert!(
            cmd.starts_with(&*exe.file_name().unwrap().to_string_lossy()),
            "{cmd}"
        );
        assert!(!cmd.contains('/'), "no directory: {cmd}");
        assert!(cmd.split(' ').count() <= 2, "{cmd}");
    }

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = card(dir.path());
        let live = std::os::unix::process::parent_id();
        let with = |suffix: &str| {
            let p = dir.path().join(format!("card-03.000d.json{suffix}"));
            fs::write(&p, b"{\"keys\": \"in the clear\"}").unwrap();
            p
        };
        let dead = with(&format!(".tmp.{DEAD_PID}"));
        let alive = with(&format!(".tmp.{live}"));
        let not_a_pid = with(".tmp.12x");
        let other_card = dir.path().join(format!("card-04.000d.json.tmp.{DEAD_PID}"));
        fs::write(&other_card, b"x").unwrap();
        // A directory that happens to match is never removed.
        let dir_match = dir
            .path()
            .join(format!("card-03.000d.json.tmp.{}", DEAD_PID - 1));
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
}
