//! The ceremony report: what a ceremony directory, the journals of its servers and the
//! nodes say about a ceremony, as data ([`Report`], serialisable for `--json`) and as a
//! printable ceremony record ([`render_markdown`], [`render_html`]: a few A4 pages, the
//! timeline as a condensed appendix).
//!
//! [`build`] only reads: each journal is verified with [`journal::verify`] over its bytes
//! (never opened for appending, never created), `sa.db`, the `<target>.csr.db` files and
//! the share bundles are read as they are, and the nodes' statuses are passed in by the
//! caller. A file that cannot be trusted is not a failure of the report: the report says
//! so (merged journals that do not agree are: see [`build`]).
//!
//! Where each part comes from:
//! - the plan: the [`Plan`] given (the configuration's);
//! - each node's identity and patterns *after*: the statuses given (read now); *before*:
//!   the first `node-status` note of that node in the journals (written at the start of
//!   each phase; "not recorded" when there is none or it cannot be read);
//! - who did what and when: every journal record, intents paired with their outcomes,
//!   grouped into runs (a `run-start` note opens each: host, mkclone version,
//!   configuration SHA-256, UTC offset for the local times);
//! - the SA key's fingerprint and the CSS/CSR certificates: `sa.db`, `<target>.csr.db`,
//!   certificates verified under the SA key of `sa.db`;
//! - shares issued: the bundles in `shares/` and the journals' `obtain-share` outcomes;
//!   installed: the `install-share` outcomes with result ok; SET: the `set-master-key`
//!   outcomes with result ok;
//! - open items: bundles and csr.db files left after SET, and (once complete) the SA key
//!   still registered and the retained keys still on the nodes, as the journals show;
//! - each journal's final hash, record count, whether its chain verified and whether end
//!   to end (the journal marks the carried files record).
//!
//! In a ceremony whose nodes sit in different servers, each server's journal records the
//! phases run there: the report of one directory shows its own journal (A), and the
//! copies of the others given with `--journal` (B, C, …) are merged into one record.
//!
//! Rehearsals say REHEARSAL in the title, in a banner and in every section's heading.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use mkclone_backend::{
    Certificate, CloneableKind, CurrentState, KeyRole, NewState, NodeStatus, PublicKeyToken,
    RegisterStatus, VerificationPattern,
};
use mkclone_formats::pka::{
    CertificateSection, PublicKeyTokenView, RsaPublicKey, registration_hash,
};
use serde::Serialize;

use crate::dbs::Provenance;
use crate::dbs::{
    self, BUNDLE_FORMAT, CSR_DB_FORMAT, CsrDb, Layout, SA_DB_FORMAT, SaDb, ShareBundle,
};
use crate::event::{Action, Entry, Note, Outcome, RunStart, StepResult};
use crate::failure::CeremonyError;
use crate::journal::{self, GENESIS_PREV, Record};
use crate::marks::Chain;
use crate::phase::Role;
use crate::plan::{Plan, PlanNode};

mod build;
mod files;
mod html;
mod journals;
mod markdown;
mod model;
mod nodes;
mod page;
#[cfg(test)]
mod tests;
mod timeline;

pub use build::{Inputs, build, build_with};
pub use html::{html as escape_html, render_html};
pub use markdown::render_markdown;
pub use model::*;
pub use page::status_line;

use files::*;
use journals::*;
use nodes::*;
use page::*;
use timeline::*;

/// `version` of the JSON report (`format` "mkclone-report", docs/JSON.md; the command
/// line adds both). 2: timeline entries carry typed `action`, `note` and `outcome`
/// instead of a raw `detail`. 3: `journals` (A, B, …) instead of `journal`, times as
/// `{utc, local}`, record references as `{journal, seq}`, `runs`, `open_items`, `nonce`,
/// `generated_by`, and each share's `file`. 4: `format` "mkclone-report" (was
/// "mkclone-ceremony-report") with `mkclone`; master-key kinds spelled "sym", "asym",
/// roles "sa", "css", "csr"; snapshot registers as `status` gives them; `expect_serial`
/// (the plan's nodes as the plan gives them) instead of `pinned_serial`. 5: `missing`,
/// `open_items`, `warnings` and each journal's `gaps` are objects ([`Finding`]: `kind`, `what` and the node,
/// phase, file, master key, share, record or command named) instead of strings.
pub const VERSION: u32 = 5;

/// Shown where the journal holds no `node-status` record of a node.
pub const NOT_RECORDED: &str = "not recorded";
