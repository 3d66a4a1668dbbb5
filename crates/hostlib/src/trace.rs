//! The opt-in trace of every verb call, for users with real hardware to send reference
//! behaviour back: one JSON line per call with the verb, the rule keywords in and out,
//! the parameter lengths in and out, and the return and reason codes. Never a buffer's
//! contents (no key material, no share, no certificate): only lengths.
//!
//! Turned on per node (`trace = "FILE"`) or for every node by `MKCLONE_CCA_TRACE=FILE`.
//! The file is created 0600, appended to, and never opened through a symbolic link.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::args::Args;

/// The environment variable that turns the trace on for every node.
pub const TRACE_ENV: &str = "MKCLONE_CCA_TRACE";

pub struct Trace {
    path: PathBuf,
    file: File,
    seq: u64,
}

impl Trace {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            seq: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One line for one call.
    pub fn record(&mut self, args: &Args, rules_in: &[String], lengths_in: &[i64]) {
        self.seq += 1;
        let line = serde_json::json!({
            "seq": self.seq,
            "verb": args.verb.symbol(),
            "rules_in": rules_in,
            "rules_out": args.rule_keywords(),
            "lengths_in": lengths_in,
            "lengths_out": args.lengths(),
            "return_code": args.return_code,
            "reason_code": args.reason_code,
        });
        self.write(&line);
    }

    /// One line for a call of the simulated library's extension (project encodings).
    pub fn record_ext(&mut self, rc: i64, rs: i64, request_len: usize, reply_len: usize) {
        self.seq += 1;
        let line = serde_json::json!({
            "seq": self.seq,
            "verb": crate::library::SIM_EXT_SYMBOL,
            "lengths_in": [request_len],
            "lengths_out": [reply_len],
            "return_code": rc,
            "reason_code": rs,
        });
        self.write(&line);
    }

    fn write(&mut self, line: &serde_json::Value) {
        // A trace that cannot be written must not stop a ceremony; it is logged.
        if let Err(e) = writeln!(self.file, "{line}") {
            log::warn!("cannot write the CCA trace {}: {e}", self.path.display());
        }
    }
}
