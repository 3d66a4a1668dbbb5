//! `backend = "cca"`: a node over IBM's CCA host library (libcsulcca.so, and
//! libcsulccamk.so for CSNBMKP), loaded at run time.
//!
//! - [`ffi`]: the verb types, bindgen over vendor-headers/csulcca.h (our header, one
//!   citation per verb);
//! - [`args`], [`verbs`]: the argument vector of each call, built from the published
//!   parameter lists (pure, unit-tested against hand-assembled vectors);
//! - [`library`]: dlopen, dlsym and the calls (the crate's only `unsafe`), each made on
//!   the library instance's own thread (`library_thread`: IBM scopes adapter allocation to
//!   the thread; signals stay off it);
//! - [`trace`]: the opt-in trace of every call (lengths and codes, never contents);
//! - [`HostlibBackend`]: the `Backend` trait mapped to the documented verbs.

pub mod access;
pub mod args;
mod error;
pub mod ffi;
pub mod library;
mod library_thread;
pub mod trace;
pub mod verbs;

pub use error::HostlibError;
mod backend;
pub mod transport;

pub use backend::{
    HostlibBackend, HostlibNodeConfig, LibraryAdapters, create_simulated_card, list_adapters,
};
