//! The seam between `CcaBackend` and whatever carries CPRB bytes: the zcrypt ioctl on a
//! real coprocessor, or the simulator.

use thiserror::Error;

/// What carries a request message (CPRBX + parameter block) to a coprocessor and brings
/// the reply message back.
pub trait Transport {
    /// "sim" or "zcrypt".
    fn backend_name(&self) -> &'static str;

    /// True when a real CCA coprocessor is behind this transport. `CcaBackend` then never
    /// sends a project-assigned function code: IBM has not published those encodings.
    fn is_real_device(&self) -> bool;

    /// Whether project-assigned function codes may be sent through this transport. By
    /// default only where no real device is behind it. A transport to a real device may
    /// answer `true` only when its user asked for it explicitly, under a name nobody sets
    /// by accident (the zcrypt transport's experiment override): CCA would receive
    /// encodings IBM never published.
    fn allows_project_encodings(&self) -> bool {
        !self.is_real_device()
    }

    /// The usage domain written into each CPRBX.
    fn domain(&self) -> u16;

    /// Send one request message and return the reply message. `idempotent` tells the
    /// transport whether a transient failure may be retried.
    fn send(
        &mut self,
        request: &[u8],
        reply_capacity: usize,
        idempotent: bool,
    ) -> Result<Vec<u8>, TransportError>;
}

/// A transport failure, split by whether the device may have acted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// The request never reached the device: nothing changed.
    #[error("{0}")]
    NotSent(String),
    /// The request left; no reply came back. The device may or may not have acted.
    #[error("{0}")]
    OutcomeUnknown(String),
}
