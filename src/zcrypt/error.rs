//! What can go wrong between mkclone and a real coprocessor: each errno of `open(2)` and
//! `ZSECSENDCPRB` with its cause and its fix (reference/zcrypt-abi.md, "ZSECSENDCPRB
//! handling"; the kernel's drivers/s390/crypto/zcrypt_api.c and zcrypt_msgtype6.c).
//!
//! Whether the request may have reached the card follows the kernel's code paths
//! (`transport::reached_card_before_failing`): ENODEV, EPERM, ENOTTY, EOPNOTSUPP come
//! only before delivery; EINVAL, EFAULT, EINTR, EIO, EMSGSIZE may come after it. For a
//! state-changing request the latter are "outcome unknown", never "not sent".
//!
//! A CCA failure is not here: the ioctl returns 0 and the CPRBX carries the return and
//! reason codes, which `CcaBackend` interprets like any other reply.

// Only src/zcrypt/ioctl.rs may hold unsafe code (docs/ARCHITECTURE.md, "zcrypt").
#![forbid(unsafe_code)]

use std::path::PathBuf;

use mkclone_backend::{BackendError, SerialNumber};
use mkclone_cca::Apqn;
use nix::errno::Errno;
use thiserror::Error;

use super::config::ZcryptConfigError;

/// A failure of the zcrypt driver.
#[derive(Debug, Error)]
pub enum ZcryptError {
    #[error(
        "the device node {path} does not exist (ENOENT): load the zcrypt device driver \
         (`modprobe zcrypt`; lszcrypt lists the cards when it is loaded) or, for a node of its own, \
         create it by writing its name to /sys/class/zcrypt/create (the kernel makes /dev/<name>; \
         `zcryptctl create`)"
    )]
    DeviceMissing { path: PathBuf },

    #[error(
        "permission denied on {path} (EACCES): the device file's owner, group or mode does not let this \
         user open it. Run mkclone as a member of the group that owns it, or change the udev rule that \
         sets its mode"
    )]
    PermissionDenied { path: PathBuf },

    #[error(
        "APQN {apqn} cannot be reached through {path} (ENODEV): the card or the domain is offline, not \
         configured, or not in this device node's apmask/aqmask. Check `lszcrypt -V`; bring the card \
         online with `chzcrypt -e 0x{card:02x}`, or add the APQN to the node's masks"
    )]
    NotOnline { path: PathBuf, apqn: Apqn, card: u8 },

    #[error(
        "ZSECSENDCPRB is not allowed on {path} (EPERM): the node's ioctlmask excludes it. Use \
         /dev/z90crypt, or allow the ioctl in /sys/class/zcrypt/<node>/ioctlmask"
    )]
    IoctlNotAllowed { path: PathBuf },

    #[error(
        "{path} is not a zcrypt device (ENOTTY): it does not understand ZSECSENDCPRB. Configure \
         /dev/z90crypt or a node made through /sys/class/zcrypt/create, /dev/<name> \
         (device = \"...\" in the node's configuration). Nothing was sent"
    )]
    NotZcrypt { path: PathBuf },

    #[error(
        "{path} refuses this kind of request (EOPNOTSUPP): a node made through /sys/class/zcrypt/create \
         passes only usage and administrative CPRBs (zcrypt_api.c). Nothing was sent; use /dev/z90crypt"
    )]
    Unsupported { path: PathBuf },

    #[error(
        "card failure on APQN {apqn} ({errno}) after {attempts} attempts (the kernel had already \
         retried each): the card is failing, was taken offline, or the wait was interrupted. Check \
         `lszcrypt -V` and the kernel log (dmesg). Nothing was changed: the request only reads"
    )]
    CardFailure {
        apqn: Apqn,
        errno: Errno,
        attempts: u32,
    },

    #[error(
        "{} on APQN {apqn} ({errno}) during {function}: the request may or may not have run on \
         the card{}. It was not repeated, because repeating it could apply it twice. Read the node's \
         state (mkclone status) before going on",
        if *errno == Errno::EINTR { "the wait for the card was interrupted" } else { "card failure" },
        if *errno == Errno::EINTR {
            " (the kernel cancels only its wait: a request already with the card runs)"
        } else {
            " (the kernel retries a failing usage request itself, up to 10 times, before EIO)"
        }
    )]
    CardFailureOutcomeUnknown {
        apqn: Apqn,
        errno: Errno,
        function: String,
    },

    #[error(
        "the card's reply to {function} did not fit in the {capacity}-byte reply buffer (EMSGSIZE){}",
        if *.outcome_unknown {
            ": the card ran the request, so its outcome is unknown; read the node's state (mkclone status) \
             before going on"
        } else {
            "; nothing was changed (the request only reads). This is a defect in mkclone: report it"
        }
    )]
    ReplyTooLarge {
        function: String,
        capacity: usize,
        outcome_unknown: bool,
    },

    #[error(
        "{function} was refused with EINVAL{}: either the kernel found the request malformed before \
         sending it (a defect in mkclone: report it with the debug log, RUST_LOG=debug) or the card \
         answered with an error reply code the kernel turns into EINVAL (zcrypt_error.h, convert_error: \
         e.g. 0x82 operand invalid, 0x8A domain pending, 0x8B filtered by the hypervisor: check \
         the LPAR's or guest's crypto configuration). {}",
        status_note(*status),
        if *outcome_unknown {
            "The request may have reached the card: read the node's state (mkclone status) before going on"
        } else {
            "Nothing was changed: the request only reads"
        }
    )]
    Rejected {
        function: String,
        /// `ica_xcRB.status` as the kernel wrote it back (0x0008044D after an error reply
        /// of type 82 or 88, the AP's failure reason after one of type 86).
        status: u32,
        outcome_unknown: bool,
    },

    #[error(
        "the kernel could not read or write the buffers of {function} (EFAULT): a defect in mkclone, \
         report it. {}",
        if *outcome_unknown {
            "The kernel also copies the reply back after the card ran, so the request may have run: \
             read the node's state (mkclone status) before going on"
        } else {
            "Nothing was changed: the request only reads"
        }
    )]
    BadAddress {
        function: String,
        outcome_unknown: bool,
    },

    #[error(
        "ZSECSENDCPRB on {path} failed: {errno} ({}){}",
        errno.desc(),
        if *outcome_unknown {
            "; the request may have reached the card: read the node's state (mkclone status) before going on"
        } else {
            ""
        }
    )]
    Ioctl {
        path: PathBuf,
        errno: Errno,
        outcome_unknown: bool,
    },

    #[error("cannot open {path}: {errno} ({})", errno.desc())]
    Open { path: PathBuf, errno: Errno },

    #[error(
        "IBM has not published the encoding of {what}: mkclone's {code:?} request is its own and is valid \
         only between mkclone and its simulator, so it is not sent to the real coprocessor at {apqn}. \
         Rehearse this step on the simulator (backend = \"sim\"); on this coprocessor use IBM's CNM \
         utility or TKE"
    )]
    ProjectAssigned {
        what: &'static str,
        code: String,
        apqn: Apqn,
    },

    #[error("{code:?} is not in mkclone's tables of function codes and FQ rules; it is not sent")]
    UnknownFunction { code: String },

    #[error("the request message is malformed: {detail}. Nothing was sent")]
    MalformedRequest { detail: String },

    #[error("the reply from APQN {apqn} is malformed: {detail}{}", if *.outcome_unknown {
        "; the request may have run on the card, read the node's state before going on"
    } else {
        ""
    })]
    MalformedReply {
        apqn: Apqn,
        detail: String,
        outcome_unknown: bool,
    },

    #[error(
        "capture is on ({}): while it is, only facility queries (FQ) are sent and captured, and {what} \
         is not one; a capture never holds key material. Drop --capture (or unset \
         MKCLONE_CAPTURE_DIR) for this command. Nothing was sent",
        dir.display()
    )]
    CaptureRefused { what: &'static str, dir: PathBuf },

    #[error("the exchange with APQN {apqn} could not be captured: {source}")]
    Capture {
        apqn: Apqn,
        #[source]
        source: super::capture::CaptureError,
    },

    #[error(transparent)]
    Config(#[from] ZcryptConfigError),

    #[error("cannot read the status of APQN {apqn}: {source}")]
    Status {
        apqn: Apqn,
        #[source]
        source: BackendError,
    },

    #[error(
        "APQN {apqn} is coprocessor {actual}, not {expected} as the configuration expects \
         (expect_serial): check the APQN, or correct expect_serial if the card was replaced"
    )]
    SerialMismatch {
        apqn: Apqn,
        expected: SerialNumber,
        actual: SerialNumber,
    },
}

impl ZcryptError {
    /// Whether the request may have reached the card (the ceremony must then read the
    /// node's state before it goes on).
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::CardFailureOutcomeUnknown { .. } => true,
            Self::ReplyTooLarge {
                outcome_unknown, ..
            }
            | Self::MalformedReply {
                outcome_unknown, ..
            }
            | Self::Rejected {
                outcome_unknown, ..
            }
            | Self::BadAddress {
                outcome_unknown, ..
            }
            | Self::Ioctl {
                outcome_unknown, ..
            } => *outcome_unknown,
            _ => false,
        }
    }

    /// The error for a failed `open(2)` of `path`.
    pub fn from_open_errno(path: PathBuf, errno: Errno) -> Self {
        match errno {
            Errno::ENOENT => Self::DeviceMissing { path },
            Errno::EACCES => Self::PermissionDenied { path },
            errno => Self::Open { path, errno },
        }
    }
}

/// " (status 0x0008044D: ...)" for a non-zero `ica_xcRB.status`, which the kernel writes
/// only after the card (or the AP firmware) answered (zcrypt_msgtype6.c,
/// `convert_response_xcrb`); nothing for 0.
fn status_note(status: u32) -> String {
    if status == 0 {
        String::new()
    } else {
        format!(
            " (ica_xcRB.status 0x{status:08X}: the card or the AP firmware answered with an error reply)"
        )
    }
}
