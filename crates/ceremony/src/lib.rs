//! mkclone's ceremony: the phases of a cloning ceremony and the files that carry its state
//! between machines.
//!
//! The durable-file layer:
//! - [`durable`]: the durable primitives of `mkclone_durable` (atomic replacement,
//!   exclusive creation, the safe opening of ceremony files, the check of ceremony
//!   directories) with [`FileError`]s, and the directory lock [`durable::DirLock`];
//! - [`envelope`]: versioned, canonical, digest-protected JSON files (`sa.db`,
//!   `<target>.csr.db`, share bundles…);
//! - [`journal`]: the write-ahead, hash-chained journal of a ceremony.
//!
//! Every error is a [`FileError`] naming the file and saying what to do.
//!
//! The orchestrator:
//! - [`plan`]: the validated plan and its deterministic key labels;
//! - [`dbs`]: `sa.db`, `<target>.csr.db`, share bundles;
//! - [`phases`]: phases 1, 2a, 2b, 3a, 3b, 3c, 3d and their preflights;
//! - [`run`]: `clone`, every phase for every target, resumable, targets in parallel;
//! - [`progress`]: what a ceremony shows as it goes.

pub mod durable;
pub mod envelope;
pub mod journal;
pub mod marks;

mod error;

pub use error::FileError;

// The orchestrator: the plan, the ceremony's files, the phases and `clone`.
pub mod abort;
mod ceremony;
pub mod dbs;
mod digest;
pub mod dry_run;
pub mod event;
mod failure;
pub mod host;
pub mod master_key;
pub mod operator;
pub mod phase;
pub mod phase_action;
pub mod phases;
pub mod plan;
pub mod progress;
pub mod report;
pub mod run;
pub mod trust;

pub use ceremony::{CRASH_HOOK_ENV, Ceremony, Done, JournalGuard, PAUSE_HOOK_ENV, PhaseReport};
pub use failure::{CeremonyError, Problem, Problems};
pub use phase::{Phase, Role};
pub use phase_action::{ActionResult, Carry, PhaseAction};
pub use plan::{Plan, PlanError, PlanNode, PlanSpec};
