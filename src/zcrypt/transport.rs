//! `IoctlTransport`: `cca::Transport` over `ZSECSENDCPRB`.
//!
//! A request message (CPRBX + parameter block, from `CcaBackend`) becomes an `ica_xcRB`:
//! card from the APQN (`user_defined`), domain already in the CPRBX (the transport checks
//! it is the APQN's), request control block = the message padded with zeros to a
//! multiple of 4, reply control block = a zeroed buffer of the reply capacity rounded up
//! to 4. The CPRBX's request and reply parameter-block address slots are filled with the
//! addresses right after each CPRBX, as the kernel's own requests do
//! (zcrypt_ccamisc.c, `alloc_and_prep_cprbmem`); the uapi header says the card ignores
//! them. After the ioctl the reply is the reply CPRBX plus `rpld_parml` bytes of reply
//! parameter block at +220, within the length the kernel wrote back.
//!
//! The transport refuses project encodings itself, by the bytes (function code, and for
//! FQ the rule form; the provenance guard, `CcaBackend` refuses them earlier), unless the
//! experiment override is on. An errno is "outcome unknown" for a state-changing request
//! whenever the kernel can return it after the request reached the card
//! ([`reached_card_before_failing`]). With a capture on (`capture`), only FQ is sent and
//! every exchange is written.

// Only src/zcrypt/ioctl.rs may hold unsafe code (docs/ARCHITECTURE.md, "zcrypt").
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use log::{debug, warn};
use mkclone_cca::cprb::CPRBX_LEN;
use mkclone_cca::function::{Encoding, FunctionCode, Provenance};
use mkclone_cca::{Apqn, Transport, TransportError};
use nix::errno::Errno;

use super::capture::{CAPTURE_FORMAT, Capture, Exchange, Machine};
use super::error::ZcryptError;
use super::ioctl::{DeviceFile, XcrbCall, ZcryptDevice};

/// The environment variable that turns the experiment override on when it is exactly
/// `1` (read by [`super::open_backend`] only). It lets a real coprocessor receive
/// mkclone's project-assigned encodings, which IBM never published and no card is known
/// to understand: for experiments by people who know what they send, never for a
/// ceremony.
pub const OVERRIDE_ENV: &str = "MKCLONE_I_KNOW_PROJECT_ENCODINGS_ARE_NOT_IBMS";

/// Offsets in the CPRBX this module reads or fills (reference/zcrypt-abi.md, struct
/// CPRBX; the codec in mkclone_cca::cprb writes the rest).
mod cprbx {
    pub const CPRB_LEN: usize = 0;
    pub const RPLD_PARML: usize = 24;
    /// Address slots: 16 bytes each, the 8-byte pointer in the second half.
    pub const REQ_PARMB: usize = 48 + 8;
    pub const RPL_PARMB: usize = 80 + 8;
    pub const CCP_RTCODE: usize = 144;
    pub const CCP_RSCODE: usize = 146;
    pub const DOMAIN: usize = 170;
}

/// Whether project-assigned function codes may go to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProjectEncodings {
    /// Refuse them: the provenance guard (the default).
    #[default]
    Refuse,
    /// Send them anyway. For experiments only: IBM never published these encodings and no
    /// real card is known to understand them. Chosen explicitly by the caller, or by
    /// [`OVERRIDE_ENV`]`=1` in [`super::open_backend`].
    SendAnywayIKnowTheyAreNotIbms,
}

impl ProjectEncodings {
    /// [`Self::SendAnywayIKnowTheyAreNotIbms`] when [`OVERRIDE_ENV`] is exactly `1`.
    pub fn from_env() -> Self {
        match std::env::var_os(OVERRIDE_ENV) {
            Some(v) if v == "1" => Self::SendAnywayIKnowTheyAreNotIbms,
            _ => Self::Refuse,
        }
    }
}

/// How often an idempotent request is sent again after EAGAIN/EIO (the kernel has already
/// retried it itself by then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// Pause between attempts.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A reply as the ioctl returned it: the reply message and the CCA codes in its CPRBX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CprbReply {
    /// Reply CPRBX followed by the reply parameter block (`rpld_parml` bytes).
    pub message: Vec<u8>,
    pub return_code: u16,
    pub reason_code: u16,
}

/// `cca::Transport` through a zcrypt device.
pub struct IoctlTransport<D: ZcryptDevice = DeviceFile> {
    device: D,
    apqn: Apqn,
    encodings: ProjectEncodings,
    retry: RetryPolicy,
    capture: Option<Capture>,
}

impl IoctlTransport<DeviceFile> {
    /// Open `path` (`/dev/z90crypt` or a zcdn node `/dev/<name>`) for the coprocessor
    /// domain `apqn`.
    pub fn open(path: &Path, apqn: Apqn) -> Result<Self, ZcryptError> {
        let device = DeviceFile::open(path)
            .map_err(|errno| ZcryptError::from_open_errno(path.to_path_buf(), errno))?;
        Ok(Self::new(device, apqn))
    }
}

impl<D: ZcryptDevice> IoctlTransport<D> {
    /// A transport to `apqn` through `device`. Project-assigned encodings are refused.
    pub fn new(device: D, apqn: Apqn) -> Self {
        Self {
            device,
            apqn,
            encodings: ProjectEncodings::Refuse,
            retry: RetryPolicy::default(),
            capture: None,
        }
    }

    /// Capture every exchange into `capture`; with a capture on, only FQ is sent
    /// (`capture` module).
    pub fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    pub fn capture(&self) -> Option<&Capture> {
        self.capture.as_ref()
    }

    pub fn with_project_encodings(mut self, encodings: ProjectEncodings) -> Self {
        if encodings == ProjectEncodings::SendAnywayIKnowTheyAreNotIbms {
            warn!(
                "APQN {}: project-assigned encodings WILL be sent to this device ({OVERRIDE_ENV}); \
                 IBM never published them",
                self.apqn
            );
        }
        self.encodings = encodings;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            attempts: retry.attempts.max(1),
            ..retry
        };
        self
    }

    pub fn apqn(&self) -> Apqn {
        self.apqn
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    pub fn project_encodings(&self) -> ProjectEncodings {
        self.encodings
    }

    /// What `request` asks for (its function code, and for FQ its rule form), refused
    /// when no public source shows its encoding (unless the override is on).
    fn check_function(&self, request: &[u8]) -> Result<Encoding, ZcryptError> {
        if request.len() < CPRBX_LEN + 2 {
            return Err(ZcryptError::MalformedRequest {
                detail: format!(
                    "{} bytes cannot hold a CPRBX and a function code ({} needed)",
                    request.len(),
                    CPRBX_LEN + 2
                ),
            });
        }
        let parm = &request[CPRBX_LEN..];
        let code = |n: usize| String::from_utf8_lossy(&parm[..n.min(parm.len())]).into_owned();
        let encoding = Encoding::of(parm).map_err(|_| ZcryptError::UnknownFunction {
            code: if parm.starts_with(b"FQ") {
                format!("FQ {}", code(12).get(4..).unwrap_or("").trim_end())
            } else {
                code(2)
            },
        })?;
        match encoding.provenance {
            Provenance::Public { .. } => Ok(encoding),
            Provenance::ProjectAssigned
                if self.encodings == ProjectEncodings::SendAnywayIKnowTheyAreNotIbms =>
            {
                warn!(
                    "APQN {}: sending the project's encoding of {} to a real device (override {OVERRIDE_ENV})",
                    self.apqn, encoding.what
                );
                Ok(encoding)
            }
            Provenance::ProjectAssigned => Err(ZcryptError::ProjectAssigned {
                what: encoding.what,
                code: code(2),
                apqn: self.apqn,
            }),
        }
    }

    /// Send one request message and return the reply with its CCA codes. A CCA failure
    /// (return code other than 0) is a reply like any other, not an error.
    pub fn send_cprb(
        &mut self,
        request: &[u8],
        reply_capacity: usize,
        idempotent: bool,
    ) -> Result<CprbReply, ZcryptError> {
        let encoding = self.check_function(request)?;
        let function = encoding.what;
        if let Some(capture) = &self.capture
            && encoding.function != FunctionCode::FacilityQuery
        {
            return Err(ZcryptError::CaptureRefused {
                what: function,
                dir: capture.dir().to_path_buf(),
            });
        }
        let domain = u16::from_be_bytes([request[cprbx::DOMAIN], request[cprbx::DOMAIN + 1]]);
        if domain != self.apqn.domain {
            return Err(ZcryptError::MalformedRequest {
                detail: format!(
                    "the CPRBX addresses domain 0x{domain:04x}, this transport domain 0x{:04x}",
                    self.apqn.domain
                ),
            });
        }
        let cprb_len = u16::from_be_bytes([request[cprbx::CPRB_LEN], request[cprbx::CPRB_LEN + 1]]);
        if usize::from(cprb_len) != CPRBX_LEN {
            return Err(ZcryptError::MalformedRequest {
                detail: format!("cprb_len is {cprb_len}, not {CPRBX_LEN}"),
            });
        }

        // Buffers: lengths rounded up to multiples of 4 (the kernel rounds them; the
        // padding must be ours to read), zero-padded.
        let mut request_buf = vec![0u8; ceil4(request.len())];
        request_buf[..request.len()].copy_from_slice(request);
        let mut reply_buf = vec![0u8; ceil4(reply_capacity.max(CPRBX_LEN + 2))];
        let request_parms = request_buf.as_ptr() as usize + CPRBX_LEN;
        let reply_parms = reply_buf.as_ptr() as usize + CPRBX_LEN;
        put_address(&mut request_buf, cprbx::REQ_PARMB, request_parms);
        put_address(&mut request_buf, cprbx::RPL_PARMB, reply_parms);

        let capacity = reply_buf.len();
        let card = u32::from(self.apqn.card);
        let attempts = if idempotent { self.retry.attempts } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            reply_buf.fill(0);
            let mut call = XcrbCall::new(card, &request_buf, &mut reply_buf).map_err(|e| {
                ZcryptError::MalformedRequest {
                    detail: format!("a buffer of {} bytes is too large for ica_xcRB", e.len),
                }
            })?;
            debug!(
                "{}: ZSECSENDCPRB {} to APQN {} ({} request bytes, {} reply bytes offered, attempt {attempt})",
                self.device.path().display(),
                function,
                self.apqn,
                request.len(),
                capacity
            );
            let sent = self.device.send_cprb(&mut call);
            self.record(request, function, &call, sent.err())?;
            match sent {
                Ok(()) => return self.read_reply(&call, function, idempotent),
                Err(errno @ (Errno::EAGAIN | Errno::EIO | Errno::EINTR)) if attempt < attempts => {
                    warn!(
                        "APQN {}: {function} failed with {errno}; retrying (attempt {attempt} of {attempts}, \
                         the request only reads)",
                        self.apqn
                    );
                    std::thread::sleep(self.retry.backoff);
                }
                Err(errno) => {
                    let failure = Failure {
                        errno,
                        status: call.status(),
                        attempts: attempt,
                        capacity,
                    };
                    return Err(self.map_errno(failure, function, idempotent));
                }
            }
        }
    }

    /// Write the exchange to the capture, when one is on.
    fn record(
        &self,
        request: &[u8],
        what: &str,
        call: &XcrbCall<'_>,
        errno: Option<Errno>,
    ) -> Result<(), ZcryptError> {
        let Some(capture) = &self.capture else {
            return Ok(());
        };
        let written = call.reply_control_len() as usize;
        let reply = match errno {
            None => call.reply_buffer()[..written.min(call.reply_buffer().len())].to_vec(),
            Some(_) => Vec::new(),
        };
        let exchange = Exchange {
            format: CAPTURE_FORMAT.into(),
            version: 1,
            mkclone: env!("CARGO_PKG_VERSION").into(),
            captured_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            device: self.device.path().to_path_buf(),
            apqn: self.apqn.to_string(),
            machine: Machine::default(),
            what: what.to_string(),
            request: request.to_vec(),
            errno: errno.map(|e| format!("{e}")),
            status: call.status(),
            reply_length: call.reply_control_len(),
            reply,
        };
        capture
            .record(exchange)
            .map(drop)
            .map_err(|source| ZcryptError::Capture {
                apqn: self.apqn,
                source,
            })
    }

    fn read_reply(
        &self,
        call: &XcrbCall<'_>,
        function: &str,
        idempotent: bool,
    ) -> Result<CprbReply, ZcryptError> {
        let malformed = |detail: String| ZcryptError::MalformedReply {
            apqn: self.apqn,
            detail,
            outcome_unknown: !idempotent,
        };
        let written = call.reply_control_len() as usize;
        let buffer = call.reply_buffer();
        if written > buffer.len() {
            return Err(malformed(format!(
                "the kernel reports {written} reply bytes in a {}-byte buffer",
                buffer.len()
            )));
        }
        if written < CPRBX_LEN {
            return Err(malformed(format!(
                "{written} reply bytes cannot hold a CPRBX ({CPRBX_LEN})"
            )));
        }
        let rpld_parml = u32::from_be_bytes([
            buffer[cprbx::RPLD_PARML],
            buffer[cprbx::RPLD_PARML + 1],
            buffer[cprbx::RPLD_PARML + 2],
            buffer[cprbx::RPLD_PARML + 3],
        ]) as usize;
        let end = CPRBX_LEN
            .checked_add(rpld_parml)
            .filter(|&end| end <= written)
            .ok_or_else(|| {
                malformed(format!(
                    "the reply CPRBX claims {rpld_parml} parameter bytes, the kernel wrote {} after the CPRBX",
                    written - CPRBX_LEN
                ))
            })?;
        let return_code =
            u16::from_be_bytes([buffer[cprbx::CCP_RTCODE], buffer[cprbx::CCP_RTCODE + 1]]);
        let reason_code =
            u16::from_be_bytes([buffer[cprbx::CCP_RSCODE], buffer[cprbx::CCP_RSCODE + 1]]);
        debug!(
            "APQN {}: {function} answered {return_code}/{reason_code} ({rpld_parml} parameter bytes)",
            self.apqn
        );
        Ok(CprbReply {
            message: buffer[..end].to_vec(),
            return_code,
            reason_code,
        })
    }

    /// The error for a failed ZSECSENDCPRB, split by whether the request may have
    /// reached the card (`reached_card_before_failing`): for a state-changing request
    /// every errno the kernel can return after delivery is "outcome unknown".
    fn map_errno(&self, failure: Failure, function: &str, idempotent: bool) -> ZcryptError {
        let path = self.device.path().to_path_buf();
        let name = function.to_string();
        let Failure {
            errno,
            status,
            attempts,
            capacity,
        } = failure;
        let outcome_unknown = !idempotent && reached_card_before_failing(errno);
        match errno {
            Errno::ENODEV => ZcryptError::NotOnline {
                path,
                apqn: self.apqn,
                card: self.apqn.card,
            },
            Errno::EPERM => ZcryptError::IoctlNotAllowed { path },
            Errno::EACCES => ZcryptError::PermissionDenied { path },
            Errno::ENOTTY => ZcryptError::NotZcrypt { path },
            Errno::EOPNOTSUPP => ZcryptError::Unsupported { path },
            Errno::EAGAIN | Errno::EIO | Errno::EINTR if idempotent => ZcryptError::CardFailure {
                apqn: self.apqn,
                errno,
                attempts,
            },
            Errno::EAGAIN | Errno::EIO | Errno::EINTR => ZcryptError::CardFailureOutcomeUnknown {
                apqn: self.apqn,
                errno,
                function: name,
            },
            Errno::EMSGSIZE => ZcryptError::ReplyTooLarge {
                function: name,
                capacity,
                outcome_unknown,
            },
            Errno::EINVAL => ZcryptError::Rejected {
                function: name,
                status,
                outcome_unknown,
            },
            Errno::EFAULT => ZcryptError::BadAddress {
                function: name,
                outcome_unknown,
            },
            errno => ZcryptError::Ioctl {
                path,
                errno,
                outcome_unknown,
            },
        }
    }
}

/// What a failed ioctl left: its errno, `ica_xcRB.status` as the kernel wrote it back
/// (zsecsendcprb_ioctl copies the structure back on failure too), the attempts made and
/// the reply capacity offered.
struct Failure {
    errno: Errno,
    status: u32,
    attempts: u32,
    capacity: usize,
}

/// Whether ZSECSENDCPRB can fail with `errno` after the request reached the card, by
/// the kernel's code paths (drivers/s390/crypto, current mainline):
/// - ENOTTY: not a zcrypt device, or an ioctl number the driver does not know
///   (`zcrypt_unlocked_ioctl`: -ENOIOCTLCMD); EPERM: the node's ioctlmask
///   (`zcrypt_check_ioctl`, before anything else); ENODEV: no eligible card or queue, or
///   the domain outside a zcdn node's masks; EOPNOTSUPP: a zcdn node and a CPRB that is
///   neither usage nor administrative (`_zcrypt_send_cprb`, before `send_cprb`). All
///   before delivery.
/// - EINVAL: malformed lengths or header (`xcrb_msg_to_type6cprb_msgx`), before; but also
///   an error reply from the card or the AP firmware (`convert_response_xcrb` ->
///   `convert_error` in zcrypt_error.h: reply codes 0x82, 0x8A, 0x8B "filtered by
///   hypervisor", ...), after.
/// - EFAULT: copying the ica_xcRB or the request in, before; copying the reply out
///   (`convert_type86_xcrb`) or the ica_xcRB back (`zsecsendcprb_ioctl`), after the card
///   ran the request.
/// - EINTR: the wait for the reply was interrupted (`zcrypt_msgtype6_send_cprb`:
///   `wait_for_completion_interruptible`, then `ap_cancel_message`, which drops the
///   reply, not a request the card already has).
/// - EIO: a failure the kernel retried itself (EAGAIN, up to TRACK_AGAIN_MAX times in
///   `zsecsendcprb_ioctl`) before giving up; EMSGSIZE: the reply did not fit, after.
/// - anything else: not known to come only before delivery, so treated as after.
pub(crate) fn reached_card_before_failing(errno: Errno) -> bool {
    !matches!(
        errno,
        Errno::ENOTTY | Errno::EPERM | Errno::ENODEV | Errno::EOPNOTSUPP | Errno::EACCES
    )
}

/// Round up to a multiple of 4 (the kernel's CEIL4).
fn ceil4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Write an address into a CPRBX address slot, big-endian as the CPRBX's other fields.
fn put_address(buf: &mut [u8], at: usize, address: usize) {
    buf[at..at + 8].copy_from_slice(&(address as u64).to_be_bytes());
}

impl<D: ZcryptDevice> Transport for IoctlTransport<D> {
    fn backend_name(&self) -> &'static str {
        "zcrypt"
    }

    /// Always: whatever answers behind the device (a fake kernel in tests included), this
    /// transport speaks to it as to a real coprocessor.
    fn is_real_device(&self) -> bool {
        true
    }

    fn allows_project_encodings(&self) -> bool {
        self.encodings == ProjectEncodings::SendAnywayIKnowTheyAreNotIbms
    }

    fn domain(&self) -> u16 {
        self.apqn.domain
    }

    fn send(
        &mut self,
        request: &[u8],
        reply_capacity: usize,
        idempotent: bool,
    ) -> Result<Vec<u8>, TransportError> {
        self.send_cprb(request, reply_capacity, idempotent)
            .map(|reply| reply.message)
            .map_err(|e| {
                if e.outcome_unknown() {
                    TransportError::OutcomeUnknown(e.to_string())
                } else {
                    TransportError::NotSent(e.to_string())
                }
            })
    }
}
