//! The zcrypt driver, tested without a coprocessor: the ioctl transport over a fake
//! kernel that enforces ZSECSENDCPRB's rules and hands requests to hw-sim, real file
//! descriptors that are not zcrypt devices, and fake sysfs trees.

/// Assert that `value` matches `pattern`, showing the value when it does not (as the
/// unstable `std::assert_matches!` does).
macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        let value = &$value;
        assert!(matches!(value, $pattern $(if $guard)?), "{value:?}");
    };
}

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
