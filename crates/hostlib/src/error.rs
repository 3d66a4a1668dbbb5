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
    #[error(
        "{path:?} is the CCA host library another node opened as {first_path:?} (one library loaded once \
         per process, whose allocated adapter all its nodes share), and that node names {first_mk:?} as \
         the master-key library (CSNBMKP), this one {mk:?}: {detail}. Name the same `mk_library` for \
         every node on this library"
    )]
    MkLibraryMismatch {
        path: PathBuf,
        first_path: PathBuf,
        first_mk: PathBuf,
        mk: PathBuf,
        detail: String,
    },
    #[error(
        "the master-key library {mk:?} (CSNBMKP) is already used with the CCA host library {owner:?}; \
         {path:?} is another loaded copy of the host library, and CSNBMKP calls through both would \
         share one library's adapter allocation without taking turns. Name one host library for these \
         nodes, or a master-key library of each copy's own"
    )]
    MkLibraryShared {
        mk: PathBuf,
        owner: PathBuf,
        path: PathBuf,
    },
    #[error("node configuration: {0}")]
    Config(String),
    /// The thread that makes every call of one library instance (`library_thread.rs`).
    #[error(
        "the thread that calls the CCA host library {0}. Run the command again: a request \
         whose outcome is unknown is settled by the rerun"
    )]
    LibraryThread(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HostlibError {
    /// A verb that answered a nonzero return code: the codes with IBM's message for them
    /// (a code outside 0..=65535 is looked up as 65535, which has no message).
    pub fn verb(
        verb: &'static str,
        during: impl Into<String>,
        return_code: i64,
        reason_code: i64,
    ) -> Self {
        let code = |v: i64| u16::try_from(v).unwrap_or(u16::MAX);
        Self::Verb {
            verb,
            during: during.into(),
            return_code,
            reason_code,
            message: mkclone_cca::rc::message(code(return_code), code(reason_code)).into(),
        }
    }
}
