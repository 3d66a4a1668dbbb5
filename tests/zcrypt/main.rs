//! The zcrypt driver, tested without a coprocessor: the ioctl transport over a fake
//! kernel that enforces ZSECSENDCPRB's rules and hands requests to hw-sim, real file
//! descriptors that are not zcrypt devices, and fake sysfs trees.

mod capture;
mod ceremony;
mod conformance;
mod errno;
mod fake_kernel;
mod fuse_ceremony;
mod fuse_cli;
mod fuse_errno;
mod fuse_node;
mod guard;
mod sysfs;
