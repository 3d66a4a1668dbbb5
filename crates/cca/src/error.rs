//! Codec errors: what could not be encoded or decoded, and where.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("{what} is truncated: {needed} bytes needed, {available} available")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{what}: {count} unexpected trailing bytes")]
    Trailing { what: &'static str, count: usize },
    #[error("{what}: field {field} is invalid: {detail}")]
    Field {
        what: &'static str,
        field: &'static str,
        detail: String,
    },
    #[error("{what} of {len} bytes is too long for its length field")]
    TooLong { what: &'static str, len: usize },
    #[error(
        "function code {:?} is not one mkclone knows",
        String::from_utf8_lossy(code)
    )]
    UnknownFunction { code: [u8; 2] },
    #[error("the request for {function} lacks the rule keyword {missing}")]
    MissingRule {
        function: &'static str,
        missing: &'static str,
    },
    #[error("{what}: {source}")]
    Domain {
        what: &'static str,
        #[source]
        source: mkclone_backend::DomainError,
    },
}
