//! The ceremony report: what a ceremony directory, its journal and the nodes say about a
//! ceremony, as data ([`Report`], serialisable for `--json`) and as a printable page
//! ([`render_markdown`], [`render_html`]).
//!
//! [`build_with`] only reads: the journal is verified with [`journal::verify`] over its bytes
//! (never opened for appending, never created), `sa.db`, the `<target>.csr.db` files and the
//! share bundles are read as they are, and the nodes' statuses are passed in by the caller.
//! A file that cannot be trusted is not a failure of the report: the report says so.
//!
//! Where each part comes from:
//! - the plan: the [`Plan`] given (the configuration's);
//! - each node's identity and patterns *after*: the statuses given (read now); *before*:
//!   the first `node-status` note of that node in the journal (written at the start of each
//!   phase; "not recorded" when there is none or it cannot be read);
//! - who did what and when: every journal record, intents paired with their outcomes;
//! - the SA key's fingerprint and the CSS/CSR certificates: `sa.db`, `<target>.csr.db`,
//!   certificates verified under the SA key of `sa.db`;
//! - shares issued: the bundles in `shares/` and the journal's `obtain-share` outcomes;
//!   installed: the journal's `install-share` outcomes with result ok; SET: the journal's
//!   `set-master-key` outcomes with result ok;
//! - the journal's final hash, record count and whether its chain verified.
//!
//! The journal is the one of *this* directory: in a ceremony whose nodes sit in different
//! servers, each server's journal records the phases run there.
//!
//! Rehearsals say REHEARSAL in the title, in a banner and in every section's heading.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use mkclone_backend::{
    Certificate, CloneableKind, CurrentState, NewState, NodeStatus, PublicKeyToken, RegisterStatus,
    VerificationPattern,
};
use mkclone_formats::pka::{
    CertificateSection, PublicKeyTokenView, RsaPublicKey, registration_hash,
};
use serde::Serialize;

use crate::dbs::{
    self, BUNDLE_FORMAT, CSR_DB_FORMAT, CsrDb, Layout, SA_DB_FORMAT, SaDb, ShareBundle,
};
#[cfg(test)]
use crate::event::StepResult;
use crate::event::{Action, Entry, Note, Outcome};
use crate::failure::CeremonyError;
use crate::journal::{self, Record};
use crate::marks::Chain;
use crate::plan::{Plan, PlanNode};

mod build;
mod files;
mod html;
mod markdown;
mod model;
mod nodes;
mod page;
#[cfg(test)]
mod tests;
mod timeline;

pub use build::build_with;
pub use html::{html as escape_html, render_html};
pub use markdown::render_markdown;
pub use model::*;

use files::*;
use nodes::*;
use page::*;
use timeline::*;

/// `format` of the JSON report.
pub const FORMAT: &str = "mkclone-ceremony-report";
/// `version` of the JSON report (2: timeline entries carry typed `action`, `note` and
/// `outcome` instead of a raw `detail`).
pub const VERSION: u32 = 2;

/// Shown where the journal holds no `node-status` record of a node.
pub const NOT_RECORDED: &str = "not recorded";
