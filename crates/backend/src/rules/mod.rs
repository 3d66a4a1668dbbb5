//! The card's rules, written once: pure functions over the domain types, no device, no
//! I/O. The simulated card (hw-sim), the PKCS#11 backend and the CCA codec all apply them,
//! so that every backend keeps the same tables and refuses a share with the same typed
//! error (docs/ARCHITECTURE.md, "The card's rules").
//!
//! - [`statmofn`]: the STATMOFN digits of the share tables and the states they stand for.
//! - [`tables`]: one master key's share tables, per index: what a fresh table holds, what
//!   OBTAIN does to an index's generation state, the reception states of what was received.
//! - [`admission`]: whether an incoming share is admitted as new, is one already received,
//!   or is refused, and the one [`crate::BackendError`] each refusal is.
//! - [`rerun`]: what a rerun of a state change makes of what it finds in place
//!   (`AlreadyDone` or a conflict), for the backends that reconcile on the host.

pub mod admission;
pub mod rerun;
pub mod statmofn;
pub mod tables;
#[cfg(test)]
mod test_values;

pub use admission::{
    Admission, HeldShares, IncomingShare, Refusal, RefusalReason, ShareFacts, admit, check_rebuilt,
};
