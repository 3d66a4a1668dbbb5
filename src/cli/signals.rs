//! SIGINT and SIGTERM during a ceremony.
//!
//! The ceremony library installs no handler: it checks a flag at its safe points (before a
//! state-changing request leaves, before a phase begins) and stops there, journaled, with
//! `CeremonyError::Interrupted`, which `main` turns into exit code 130 (SIGINT) or 143
//! (SIGTERM) and a message saying to run the same command to resume. The handlers
//! (`mkclone::signals`) are installed once the nodes are open and right before the
//! ceremony work starts.
//!
//! A PIN prompt catches these signals itself while it is open and restores the
//! terminal's echo first (`src/pin.rs`, `mkclone::signals`). Before the handlers (a user
//! PIN, asked when a node opens) the signal then ends the process as it would have. With
//! them (a PKCS#11 source's SO PIN, asked at its first share export in phase 3c) the
//! handlers have raised the flag and the prompt gives no PIN: the share export fails with
//! `BackendError::Interrupted` before anything is sent, and the ceremony journals it and
//! stops as at a safe point (exit 130 or 143, "run the same command to resume").
//!
//! A second SIGINT or SIGTERM ends the process at once (exit 130 or 143), as a crash
//! would: the journal's intent records let the same command resume after it.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::output::Failure;

/// Install the handlers (once per process) and return the flag they raise: the number of
/// the signal that arrived, 0 while none has.
pub fn install() -> Result<Arc<AtomicUsize>, Failure> {
    mkclone::signals::install_ceremony_handlers().map_err(|(signal, e)| {
        Failure::failed(format!(
            "cannot install the handler of signal {signal}: {e}"
        ))
    })
}
