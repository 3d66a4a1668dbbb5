//! What opening or driving a CCA host library can fail with, before a verb's own return
//! and reason codes (those become `BackendError`s in `backend.rs`).

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HostlibError {
    #[error(
        "{what} could not be loaded from {path:?} ({cause}). To use backend = \"cca\", {hint}",
        hint = crate::library::INSTALL_HINT
    )]
    LibraryMissing {
        what: String,
        path: PathBuf,
        cause: String,
    },
    #[error(
        "{path:?} does not export {symbol} ({cause}): it is not IBM's CCA host library, or a release \
         without this verb. Name the right library with `library = \"...\"` (`mk_library` for CSNBMKP)"
    )]
    SymbolMissing {
        symbol: &'static str,
        path: PathBuf,
        cause: String,
    },
    #[error(
        "no adapter of the CCA host library {path:?} has serial number {serial:?} (adapters found: {found}); \
         check `expect_serial` against `lszcrypt -V` or CSUACFQ STATCRD2, and that the card is online"
    )]
    NoSuchSerial {
        path: PathBuf,
        serial: String,
        found: String,
    },
    #[error(
        "adapter CRP{adapter:02} of {path:?} has serial number {actual:?}, the node's table pins {expected:?}: \
         this is another card. Fix `adapter` or `expect_serial`"
    )]
    SerialMismatch {
        path: PathBuf,
        adapter: u8,
        expected: String,
        actual: String,
    },
    #[error(
        "{verb} answered return code {return_code}, reason code {reason_code} while {during}: {message}"
    )]
    Verb {
        verb: &'static str,
        during: String,
        return_code: i64,
        reason_code: i64,
        message: String,
    },
    #[error("the CCA host library's answer to {verb} is malformed: {detail}")]
    Malformed { verb: &'static str, detail: String },
    #[error(
        "{path:?} is not mkclone's simulated CCA host library (it does not export \
         mkclone_simlib_create_card): its adapters are real cards, and `mkclone sim init` creates none"
    )]
    NotSimulated { path: PathBuf },
    #[error("node configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}
