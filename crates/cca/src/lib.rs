//! CCA's request/reply blocks and `CcaBackend`.
//!
//! - [`cprb`]: the 220-byte CPRBX header, big-endian fields written explicitly;
//! - [`parm`]: the parameter block (function code, rule array, verb data, key block);
//! - [`function`]: THE table of function codes, each with its provenance;
//! - [`rc`]: return/reason codes with messages;
//! - [`verbs`]: typed requests and replies of every verb, shared with the simulator;
//! - [`facility`]: the public FQ STATICSA/STATICSB reply layouts (serial, register states
//!   and verification patterns of real coprocessors);
//! - [`CcaBackend`]: the `Backend` trait over any [`Transport`];
//! - [`apqn`]: the APQN ("03.000d") that names a card and domain.

pub mod apqn;
mod backend;
pub mod cprb;
mod error;
pub mod facility;
pub mod function;
pub mod parm;
pub mod rc;
mod transport;
pub mod verbs;

pub use apqn::Apqn;
pub use backend::CcaBackend;
pub use error::CodecError;
pub use transport::{Transport, TransportError};

/// Reply capacity offered with each request: the zcrypt driver's default card message
/// size limit (12 KiB, `reference/zcrypt-abi.md`) less the 48-byte type 86 reply header
/// (`sizeof(struct type86_fmt2_msg)`, zcrypt_msgtype6.h). Kernels before the AP message
/// buffer rework refuse with EINVAL a ZSECSENDCPRB whose reply control block, rounded up
/// to a multiple of 4, and that header together exceed MSGTYPE06_MAX_MSG_SIZE (12 KiB)
/// (XCRB_msg_to_type6CPRB_msgX); 12 KiB itself was refused there. Every reply of the
/// verbs mkclone sends is far smaller.
pub const REPLY_CAPACITY: usize = 12 * 1024 - 48;
