//! SIGINT and SIGTERM during a ceremony.
//!
//! The ceremony library installs no handler: it checks a flag at its safe points (before a
//! state-changing request leaves, before a phase begins) and stops there, journaled, with
//! `CeremonyError::Interrupted`, which `main` turns into exit code 130 (SIGINT) or 143
//! (SIGTERM) and a message saying to run the same command to resume. The handlers are
//! installed once the nodes are open (after any PIN prompt: Ctrl-C at a prompt still just
//! ends the process) and right before the ceremony work starts.
//!
//! A second SIGINT or SIGTERM ends the process at once (exit 130 or 143), as a crash
//! would: the journal's intent records let the same command resume after it.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

use super::output::Failure;

/// Install the handlers (once per process) and return the flag they raise: the number of
/// the signal that arrived, 0 while none has.
pub fn install() -> Result<Arc<AtomicUsize>, Failure> {
    static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    if let Some(flag) = FLAG.get() {
        return Ok(flag.clone());
    }
    let raised = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let fail = |e: std::io::Error| {
            Failure::failed(format!(
                "cannot install the handler of signal {signal}: {e}"
            ))
        };
        // Registration order matters: the first signal finds `armed` false (no exit), then
        // arms it and raises the flag; a second one exits at once.
        flag::register_conditional_shutdown(signal, 128 + signal, armed.clone()).map_err(fail)?;
        flag::register(signal, armed.clone()).map_err(fail)?;
        flag::register_usize(signal, raised.clone(), signal as usize).map_err(fail)?;
    }
    Ok(FLAG.get_or_init(|| raised).clone())
}
