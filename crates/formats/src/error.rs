//! [`FormatError`]: what a decoder or encoder refused, naming the structure, the field and
//! the offset at fault.

use thiserror::Error;

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// A byte string that is not a legal encoding of the structure asked for, or a value that
/// cannot be encoded.
///
/// Offsets count from the first byte of the outermost structure being decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error(
        "{structure}: {field} at offset {offset} needs {needed} bytes, only {remaining} remain"
    )]
    Truncated {
        structure: &'static str,
        field: &'static str,
        offset: usize,
        needed: usize,
        remaining: usize,
    },
    #[error(
        "{structure}: X'{id:02X}' subsection at offset {offset} claims {claimed} bytes, only {remaining} remain"
    )]
    SubsectionOverrun {
        structure: &'static str,
        id: u8,
        offset: usize,
        claimed: usize,
        remaining: usize,
    },
    #[error(
        "{structure}: {field} at offset {offset} is X'{found:02X}', expected X'{expected:02X}'"
    )]
    UnexpectedByte {
        structure: &'static str,
        field: &'static str,
        offset: usize,
        expected: u8,
        found: u8,
    },
    #[error("{structure}: X'{id:02X}' subsection at offset {offset} is not allowed here: {reason}")]
    UnexpectedSubsection {
        structure: &'static str,
        id: u8,
        offset: usize,
        reason: &'static str,
    },
    #[error("{structure}: {what} is missing at offset {offset}")]
    Missing {
        structure: &'static str,
        what: &'static str,
        offset: usize,
    },
    #[error(
        "{structure}: {field} at offset {offset} says {claimed}, but the structure holds {actual}"
    )]
    LengthMismatch {
        structure: &'static str,
        field: &'static str,
        offset: usize,
        claimed: usize,
        actual: usize,
    },
    #[error("{structure}: {field} at offset {offset}: {reason}")]
    Invalid {
        structure: &'static str,
        field: &'static str,
        offset: usize,
        reason: String,
    },
    #[error(
        "{structure}: {count} unexpected bytes after the end of the structure at offset {offset}"
    )]
    TrailingBytes {
        structure: &'static str,
        offset: usize,
        count: usize,
    },
    #[error("{structure}: cannot encode {field}: {reason}")]
    Unencodable {
        structure: &'static str,
        field: &'static str,
        reason: String,
    },
    #[error("RSA public key is not usable: {reason}")]
    InvalidKey { reason: String },
}

impl FormatError {
    /// `structure` cannot encode `field`, for `reason`.
    pub fn unencodable(
        structure: &'static str,
        field: &'static str,
        reason: impl std::fmt::Display,
    ) -> Self {
        Self::Unencodable {
            structure,
            field,
            reason: reason.to_string(),
        }
    }

    /// A signature of `len` bytes for a `what` laid out for `expected`: refused unless
    /// they match.
    pub(crate) fn check_signature_len(
        structure: &'static str,
        what: &str,
        expected: usize,
        len: usize,
    ) -> Result<()> {
        if len != expected {
            return Err(Self::unencodable(
                structure,
                "signature",
                format!("the signature is {len} bytes; the {what} was laid out for {expected}"),
            ));
        }
        Ok(())
    }
}
