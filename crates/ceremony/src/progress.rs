//! What a ceremony shows as it goes: every action of every phase, every file to carry, each
//! phase's start and end, as it happens. The library prints nothing; the command line
//! gives an [`Observer`] and prints (or draws a progress bar) from it. In `clone`'s
//! parallel mode several worker threads report at once: the observer is called from each
//! of them, one whole event at a time.

use std::sync::Arc;

use crate::ceremony::PhaseReport;
use crate::failure::CeremonyError;
use crate::phase::Phase;
use crate::phase_action::{Carry, PhaseAction};

/// One thing that happened.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A phase begins on `node` (its identity checked, its journal record written).
    PhaseStarted {
        phase: Phase,
        node: &'a str,
        /// The target a per-target phase (3a-3d) works for.
        target: Option<&'a str>,
    },
    /// One action of a phase, as its report keeps it.
    Action {
        phase: Phase,
        node: &'a str,
        target: Option<&'a str>,
        action: &'a PhaseAction,
    },
    /// A file the phase's output must be carried with, to a node, and why.
    Carry {
        phase: Phase,
        node: &'a str,
        target: Option<&'a str>,
        carry: &'a Carry,
    },
    /// A phase finished.
    PhaseDone {
        report: &'a PhaseReport,
        target: Option<&'a str>,
    },
    /// A phase stopped with an error (in parallel mode, the others finish theirs first).
    PhaseFailed {
        phase: Phase,
        node: &'a str,
        target: Option<&'a str>,
        error: &'a CeremonyError,
    },
}

impl Progress<'_> {
    /// The target the event concerns (per-target phases), if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::PhaseStarted { target, .. }
            | Self::Action { target, .. }
            | Self::Carry { target, .. }
            | Self::PhaseDone { target, .. }
            | Self::PhaseFailed { target, .. } => *target,
        }
    }
}

/// A sink for [`Progress`] events, shared by every worker thread, and the target the phase
/// a handle runs works for.
#[derive(Clone)]
pub struct Observer {
    sink: Arc<dyn Fn(&Progress<'_>) + Send + Sync>,
    target: Option<Arc<str>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Observer {
    pub fn new(sink: impl Fn(&Progress<'_>) + Send + Sync + 'static) -> Self {
        Self {
            sink: Arc::new(sink),
            target: None,
        }
    }

    /// The same sink, for phases working for `target`.
    pub fn for_target(&self, target: Option<&str>) -> Self {
        Self {
            sink: self.sink.clone(),
            target: target.map(Arc::from),
        }
    }

    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    pub fn emit(&self, event: &Progress<'_>) {
        (self.sink)(event);
    }
}
