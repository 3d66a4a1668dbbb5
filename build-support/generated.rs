//! bindgen's output for one header (build-support/bindings.rs wrote it to OUT_DIR, under
//! the name it gave in `MKCLONE_BINDINGS_GENERATED`), as a module: the crate's binding
//! module (src/zcrypt/abi.rs, crates/hostlib/src/ffi.rs) includes this file with `#[path]`
//! and re-exports it.

// bindgen keeps C's names and emits items a crate may not use.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    clippy::all
)]

include!(concat!(
    env!("OUT_DIR"),
    "/",
    env!("MKCLONE_BINDINGS_GENERATED")
));

/// Whether the bindings in this build are a fresh bindgen run (false: the committed copy).
pub const FRESHLY_GENERATED: bool = cfg!(mkclone_bindings_fresh);

/// The committed copy is checked against a fresh generation.
#[cfg(test)]
#[path = "bindings_check.rs"]
mod bindings_check;
