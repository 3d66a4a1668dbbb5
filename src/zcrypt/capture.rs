//! The capture kit: every CPRB request and reply exchanged with a coprocessor written to
//! a directory, with what the machine says about itself, so that a user with hardware
//! can send replies of real cards to become golden vectors.
//!
//! Only Cryptographic_Facility_Query (FQ) is captured, and with a capture on, nothing
//! else is sent: its replies carry the serial, register states and verification patterns,
//! never key material. Any other request is refused before it leaves
//! (`ZcryptError::CaptureRefused`).
//!
//! One file per exchange, `<unix seconds>-<pid>-<n>-<APQN>-<what>.json`, created 0600 and
//! exclusively (never over an existing file) in a directory created 0700
//! (crates/durable), holding the request as mkclone built it, the reply buffer up to the
//! length the kernel wrote back (bytes after `rpld_parml` included), the ioctl's errno and
//! `ica_xcRB.status`, and: the kernel release and version (/proc/sys/kernel), the card's
//! `type`, `hwtype`, `raw_hwtype`, `ap_functions`, `serialnr` and, where the kernel has
//! one, `FW_version` (sysfs; the kernel publishes a firmware level for EP11 cards only,
//! zcrypt_cex4.c `ep11_card_attrs`: for a CCA coprocessor it is absent).

// Only src/zcrypt/ioctl.rs may hold unsafe code (docs/ARCHITECTURE.md, "zcrypt").
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use mkclone_cca::Apqn;
use mkclone_durable::{DurableError, Sensitivity, create_new_exclusive, create_private_dir};
use serde::{Deserialize, Serialize};

/// The environment variable that turns the capture on for `mkclone devices` and every
/// zcrypt node opened (its value: the directory).
pub const CAPTURE_ENV: &str = "MKCLONE_CAPTURE_DIR";

/// The `format` of a capture file.
pub const CAPTURE_FORMAT: &str = "mkclone-cprb-capture";

/// What the kernel and sysfs say about the machine and the card.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// /proc/sys/kernel/osrelease.
    pub kernel_release: Option<String>,
    /// /proc/sys/kernel/version.
    pub kernel_version: Option<String>,
    /// `<sysfs>/bus/ap/devices/cardXX/type`, e.g. "CEX8C".
    pub card_type: Option<String>,
    pub hwtype: Option<String>,
    pub raw_hwtype: Option<String>,
    pub ap_functions: Option<String>,
    pub serialnr: Option<String>,
    /// `FW_version`: absent for CCA coprocessors (the kernel has it for EP11 cards only).
    pub firmware: Option<String>,
}

impl Machine {
    /// Read what the machine says about `apqn`'s card under `sysfs` (normally /sys).
    pub fn read(sysfs: &Path, apqn: Apqn) -> Self {
        let trim = |p: PathBuf| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let card = sysfs.join(format!("bus/ap/devices/card{:02x}", apqn.card));
        Self {
            kernel_release: trim(PathBuf::from("/proc/sys/kernel/osrelease")),
            kernel_version: trim(PathBuf::from("/proc/sys/kernel/version")),
            card_type: trim(card.join("type")),
            hwtype: trim(card.join("hwtype")),
            raw_hwtype: trim(card.join("raw_hwtype")),
            ap_functions: trim(card.join("ap_functions")),
            serialnr: trim(card.join("serialnr")),
            firmware: trim(card.join("FW_version")),
        }
    }
}

/// One exchange as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub format: String,
    pub version: u32,
    /// mkclone's version.
    pub mkclone: String,
    pub captured_at_unix: u64,
    pub device: PathBuf,
    pub apqn: String,
    pub machine: Machine,
    /// What was asked: "FQ STATICSA (...)".
    pub what: String,
    /// The request message as mkclone built it: CPRBX (address slots zero) and parameter
    /// block.
    #[serde(with = "hex")]
    pub request: Vec<u8>,
    /// The ioctl's errno, when it failed.
    pub errno: Option<String>,
    /// `ica_xcRB.status` as the kernel wrote it back.
    pub status: u32,
    /// `reply_control_blk_length` as the kernel wrote it back.
    pub reply_length: u32,
    /// The reply buffer up to `reply_length` (empty when the ioctl failed).
    #[serde(with = "hex")]
    pub reply: Vec<u8>,
}

/// Where and for what exchanges are captured.
#[derive(Debug)]
pub struct Capture {
    dir: PathBuf,
    machine: Machine,
    counter: AtomicU32,
    written: Mutex<Vec<PathBuf>>,
}

/// A capture that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("the capture directory cannot be used: {0}")]
    Dir(#[source] DurableError),
    #[error("cannot write the capture file: {0}")]
    Write(#[source] DurableError),
    #[error("cannot encode the capture: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Capture {
    /// Capture into `dir` (created 0700 if missing; an existing one must be private),
    /// with `machine` recorded in every file.
    pub fn open(dir: &Path, machine: Machine) -> Result<Self, CaptureError> {
        create_private_dir(dir).map_err(CaptureError::Dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            machine,
            counter: AtomicU32::new(0),
            written: Mutex::new(Vec::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files written so far.
    pub fn written(&self) -> Vec<PathBuf> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Write one exchange; the file's path.
    pub fn record(&self, mut exchange: Exchange) -> Result<PathBuf, CaptureError> {
        exchange.machine = self.machine.clone();
        let json = serde_json::to_vec_pretty(&exchange)?;
        let short: String = exchange
            .what
            .split(" (")
            .next()
            .unwrap_or("")
            .replace(' ', "-");
        loop {
            let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
            let name = format!(
                "{}-{}-{n:04}-{}-{short}.json",
                exchange.captured_at_unix,
                std::process::id(),
                exchange.apqn
            );
            let path = self.dir.join(name);
            match create_new_exclusive(&path, &json, Sensitivity::Secret) {
                Ok(()) => {
                    self.written
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(path.clone());
                    return Ok(path);
                }
                Err(DurableError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(CaptureError::Write(e)),
            }
        }
    }
}

/// Read a capture file back (for tests and for turning captures into golden vectors).
pub fn read_exchange(path: &Path) -> Result<Exchange, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let exchange: Exchange =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if exchange.format != CAPTURE_FORMAT || exchange.version != 1 {
        return Err(format!(
            "{}: not an mkclone CPRB capture of version 1",
            path.display()
        ));
    }
    Ok(exchange)
}
