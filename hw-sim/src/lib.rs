//! Simulated CCA coprocessors for rehearsals and tests.
//!
//! A simulated card answers the same CPRB bytes the zcrypt ioctl would carry
//! ([`SimTransport`] implements `mkclone_cca::Transport`), so `CcaBackend` drives it
//! exactly as it would drive a real coprocessor. The card keeps its state (serial, EID,
//! master-key registers, retained keys, registrations, m-of-n, share polynomial and
//! tables) in memory or in one file per card.
//!
//! REHEARSAL ONLY: keys live in plain files and the card signs on the host
//! (docs/ARCHITECTURE.md, "Rehearsal and production").

mod card;
pub mod fault;
mod keygen;
pub mod state;
pub mod store;
mod transport;

use std::path::{Path, PathBuf};

use mkclone_backend::SerialNumber;
use mkclone_cca::CcaBackend;

pub use fault::{Fault, FaultPlan};
/// Cards are addressed by APQN; the type lives in the codec crate (the zcrypt driver uses
/// it too, without the simulator).
pub use mkclone_cca::apqn::Apqn;
pub use state::CardState;
pub use store::{Store, StoreError};
pub use transport::SimTransport;

/// A `Backend` over a simulated card.
pub type SimBackend = CcaBackend<SimTransport>;

/// A fresh in-memory card as a backend.
pub fn memory_card(apqn: Apqn, serial: &str) -> Result<SimBackend, mkclone_backend::DomainError> {
    let state = CardState::new(SerialNumber::new(serial)?);
    Ok(CcaBackend::new(SimTransport::new(
        apqn,
        Store::memory(state),
    )))
}

/// The cards of one simulated machine: one file per APQN in a directory.
#[derive(Clone, Debug)]
pub struct SimBus {
    dir: PathBuf,
}

impl SimBus {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the card at `apqn`.
    pub fn card_path(&self, apqn: Apqn) -> PathBuf {
        self.dir.join(format!("card-{apqn}.json"))
    }

    /// Install a factory-fresh card at `apqn`.
    /// The directory is created private (0700) if missing, and must be this user's and
    /// writable by nobody else: another local user could otherwise put card state of
    /// their own (keys they know) in place of a card's, or hold its lock.
    pub fn create_card(&self, apqn: Apqn, serial: &SerialNumber) -> Result<SimBackend, StoreError> {
        mkclone_durable::create_private_dir(&self.dir)
            .map_err(|e| StoreError::from_durable(&self.dir, e))?;
        let store = Store::create_file(&self.card_path(apqn), &CardState::new(serial.clone()))?;
        Ok(CcaBackend::new(SimTransport::new(apqn, store)))
    }

    /// Open the card at `apqn`; its directory must be this user's and writable by nobody
    /// else, as [`SimBus::create_card`] makes it.
    pub fn open_card(&self, apqn: Apqn) -> Result<SimBackend, StoreError> {
        let path = self.card_path(apqn);
        match mkclone_durable::check_private_dir(&self.dir) {
            Err(e) if e.is_not_found() => return Err(StoreError::Missing { path }),
            Err(e) => return Err(StoreError::from_durable(&self.dir, e)),
            Ok(()) => {}
        }
        let store = Store::open_file(&path)?;
        Ok(CcaBackend::new(SimTransport::new(apqn, store)))
    }
}
