//! A zcrypt device node served through FUSE, so that mkclone's zcrypt transport runs
//! unmodified, open(2) and ioctl(2) included, with hw-sim's simulated cards behind the
//! node instead of Crypto Express coprocessors.
//!
//! - [`server`]: the node, a FUSE file system of one file, spoken directly on /dev/fuse;
//! - [`model`]: ZSECSENDCPRB as the kernel's zcrypt driver handles it, errnos included,
//!   with faults to inject;
//! - [`memory`]: the caller's memory (process_vm_readv/writev), as copy_from_user and
//!   copy_to_user reach it;
//! - [`xcrb`]: `struct ica_xcRB` as the kernel reads it;
//! - [`wire`]: the FUSE messages;
//! - [`sysfs`]: a sysfs tree describing the model's cards, beside the node.
//!
//! For tests and rehearsals only: nothing here runs on a ceremony's path.

pub mod memory;
pub mod model;
pub mod server;
pub mod sysfs;
pub mod wire;
pub mod xcrb;

pub use model::{CallRecord, Fault, ZcdnMasks, ZcryptModel};
pub use server::{NodeKind, ServeError, ZcryptNode};
