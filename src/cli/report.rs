//! `mkclone report`: the ceremony record, as a printable page (Markdown or HTML) or JSON,
//! on standard output or into a file outside the ceremony directory (`--out`), never over
//! an existing file without `--force`; `--journal FILE` (repeatable) merges the journals
//! of the ceremony's other servers into one record.
//!
//! Reads only: the configuration, the ceremony directory (journals verified, never opened
//! for appending) and each node's status. A node that cannot be opened or read is shown as
//! "unavailable: <reason>" in the report; it is not a failure (in a ceremony whose nodes
//! sit in different servers, most nodes are elsewhere).
//!
//! The exit code says what the record says: 0 complete with nothing left open,
//! [`EXIT_NOT_COMPLETE`] when a step is missing or a journal does not verify,
//! [`EXIT_OPEN_ITEMS`] when complete with open items (files, registrations or keys left);
//! the record is written in every case but one: journals given with `--journal` that
//! cannot be merged into one record are refused (exit 3), and nothing is written.

use std::io::Write;
use std::path::{Path, PathBuf};

use mkclone_backend::NodeStatus;
use mkclone_ceremony::FileError;
use mkclone_ceremony::durable::{DurableError, Sensitivity, create_new_exclusive, write_atomic};
use mkclone_ceremony::report;

use super::output::{Failure, json_document};
use mkclone::config::Config;
use mkclone::nodes;

/// The record was written; the ceremony is not complete.
pub const EXIT_NOT_COMPLETE: u8 = 5;
/// The record was written; the ceremony is complete, with open items.
pub const EXIT_OPEN_ITEMS: u8 = 6;

/// Nodes read (name, status) and nodes that could not be (name, reason).
type NodesRead = (Vec<(String, NodeStatus)>, Vec<(String, String)>);

/// Read every node of the plan that can be read; the others with the reason.
fn read_nodes(config: &Config) -> NodesRead {
    let mut read = Vec::new();
    let mut unavailable = Vec::new();
    for plan_node in config.plan.nodes() {
        let name = plan_node.name.clone();
        // The reason without the "node NAME: " the errors start with.
        let why = |e: String| {
            e.strip_prefix(&format!("node {name}: "))
                .map(str::to_owned)
                .unwrap_or(e)
        };
        let status = config
            .node(&name)
            .map_err(|e| why(e.to_string()))
            .and_then(|cfg| nodes::open(cfg).map_err(|e| why(e.to_string())))
            .and_then(|mut backend| {
                backend
                    .status()
                    .map_err(|e| format!("cannot read its status: {e}"))
            });
        match status {
            Ok(st) => read.push((name, st)),
            Err(why) => {
                log::info!("report: node {name} is unavailable: {why}");
                unavailable.push((name, why));
            }
        }
    }
    (read, unavailable)
}

/// Where the report goes.
enum Destination {
    Stdout,
    File { path: PathBuf, force: bool },
}

/// A refused `--out`: a usage error (exit code 2), nothing written.
fn usage(message: String) -> Failure {
    Failure::usage(message)
}

/// Where `--out` sends the report: standard output without it or for `-`; else a file
/// that is not in the ceremony directory `ceremony` (the parent's canonical path, and the
/// file's own when it exists, are compared, so `..` and links are seen through) and that
/// does not exist, unless `force`.
fn destination(out: Option<&Path>, force: bool, ceremony: &Path) -> Result<Destination, Failure> {
    let Some(path) = out.filter(|p| *p != Path::new("-")) else {
        return Ok(Destination::Stdout);
    };
    // Without a ceremony directory there is nothing to protect (and the report fails).
    if let Ok(ceremony) = std::fs::canonicalize(ceremony) {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let parent = std::fs::canonicalize(parent).map_err(|e| {
            usage(format!(
                "--out {}: cannot find its directory {} ({e}); give a file in an existing \
                 directory, or `-` for standard output",
                path.display(),
                parent.display()
            ))
        })?;
        let inside = parent.starts_with(&ceremony)
            || std::fs::canonicalize(path).is_ok_and(|p| p.starts_with(&ceremony));
        if inside {
            return Err(usage(format!(
                "--out {} is in the ceremony directory {}: the report is never written among \
                 the ceremony's files (it could replace the journal or a carried file); nothing \
                 was written. Give a file outside it, or `-` for standard output",
                path.display(),
                ceremony.display()
            )));
        }
    }
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(exists(path));
    }
    Ok(Destination::File {
        path: path.into(),
        force,
    })
}

fn exists(path: &Path) -> Failure {
    usage(format!(
        "--out {} exists and was left untouched; give --force to replace it, or another file",
        path.display()
    ))
}

/// Write `text` to `destination`: a file atomically, created exclusively (never over a
/// file that appeared meanwhile) unless forced; standard output as is.
fn write(destination: &Destination, text: &str) -> Result<(), Failure> {
    match destination {
        Destination::File { path, force: true } => {
            write_atomic(path, text.as_bytes(), Sensitivity::Public)
                .map_err(|e| Failure::failed(e.to_string()))
        }
        Destination::File { path, force: false } => {
            match create_new_exclusive(path, text.as_bytes(), Sensitivity::Public) {
                Err(FileError::Durable(DurableError::AlreadyExists { .. })) => Err(exists(path)),
                other => other.map_err(|e| Failure::failed(e.to_string())),
            }
        }
        Destination::Stdout => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                // A reader that stopped early (`| head`) is not a failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(Failure::failed(format!("cannot write the report: {e}")))
                }
                _ => Ok(()),
            }
        }
    }
}

/// What `mkclone report` is asked for.
pub struct ReportArgs<'a> {
    pub config: &'a Path,
    pub out: Option<&'a Path>,
    pub force: bool,
    pub html: bool,
    pub json: bool,
    /// Copies of the other servers' journals, merged into the record.
    pub journals: &'a [PathBuf],
}

/// `mkclone report`: the Markdown (or `html`) page, or the JSON data (`json`), on standard
/// output, or written into `out` (see [`destination`]; replaced only with `force`); the
/// exit code says whether the ceremony is complete (see the module documentation).
pub fn run(args: &ReportArgs<'_>) -> Result<(), Failure> {
    let config = Config::load(args.config)?;
    let destination = destination(args.out, args.force, &config.directory)?;
    let (read, unavailable) = read_nodes(&config);
    let report = report::build(&report::Inputs {
        dir: &config.directory,
        plan: &config.plan,
        nodes: &read,
        unavailable: &unavailable,
        journals: args.journals,
        generator: report::Generator::here(Some(config.sha256.clone())),
    })?;
    let text = if args.json {
        format!("{}\n", json_document("report", &report)?)
    } else if args.html {
        report::render_html(&report)
    } else {
        report::render_markdown(&report)
    };
    write(&destination, &text)?;
    // The summary goes where it does not mix with the report (under --json, never on
    // standard output, which holds the JSON document or nothing).
    let say = |line: String| {
        let line = super::output::terminal_text(&line);
        match &destination {
            Destination::File { .. } if !args.json => println!("{line}"),
            _ => eprintln!("{line}"),
        }
    };
    if report.rehearsal {
        say(format!("REHEARSAL record of ceremony {}", report.ceremony));
    }
    if let Destination::File { path, .. } = &destination {
        say(format!(
            "{} written to {}",
            if args.json { "Report (JSON)" } else { "Report" },
            path.display()
        ));
    }
    for (node, why) in &unavailable {
        say(format!("  node {node}: unavailable ({why})"));
    }
    for j in &report.journals {
        say(match &j.head_hash {
            Some(hash) => format!(
                "Journal {} ({}): {} records, final hash {hash}{}",
                j.label,
                j.file.display(),
                j.records,
                if j.verified { "" } else { " (NOT verified)" }
            ),
            None => format!(
                "Journal {} ({}): {}",
                j.label,
                j.file.display(),
                j.problem.as_deref().unwrap_or("not verified")
            ),
        });
    }
    for item in &report.open_items {
        say(format!("  open: {item}"));
    }
    let status = report::status_line(&report);
    let failure = match (report.complete, report.open_items.is_empty()) {
        (true, true) => {
            say(format!("The ceremony is {status}"));
            return Ok(());
        }
        (true, false) => Failure::with_code(
            EXIT_OPEN_ITEMS,
            "open-items",
            format!("the ceremony is {status}"),
        ),
        (false, _) => Failure::with_code(
            EXIT_NOT_COMPLETE,
            "not-complete",
            format!(
                "the ceremony is {status}{}",
                if report.missing.is_empty() {
                    String::new()
                } else {
                    report
                        .missing
                        .iter()
                        .map(|m| format!("\n  - {m}"))
                        .collect::<String>()
                }
            ),
        ),
    };
    // Under --json the report document (`complete`, `missing`, `open_items`) says it.
    Err(if args.json {
        failure.documented()
    } else {
        failure
    })
}
