//! Where a card's state lives: in memory (unit tests) or in one file per card, shared by
//! separate processes.
//!
//! A file card is locked (an exclusive `flock` on `<file>.lock`) for the whole of each
//! request: read, run the verb, write. Writes are atomic (temporary file in the same
//! directory, fsync, rename, fsync of the directory) and the file is created 0600: it
//! holds keys in the clear (REHEARSAL ONLY).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

    /// Open an existing card file (checked on every request).
    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.into() });
        }
        Ok(Self::File(path.into()))
    }

    /// Run `f` on the card's state under the card's lock; save when `f` says the state
    /// changed. `f` returns (result, changed).
    pub fn with_state<T>(
        &self,
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
                let _lock = lock(path)?;
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

/// Holds the card's exclusive lock until dropped.
struct CardLock(File);

impl Drop for CardLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn lock(path: &Path) -> Result<CardLock, StoreError> {
    let lp = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lp)
        .map_err(io(&lp))?;
    file.lock().map_err(io(&lp))?;
    Ok(CardLock(file))
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
