//! `mkclone report`: the ceremony report, as a printable page (Markdown or HTML) or JSON.
//!
//! Reads only: the configuration, the ceremony directory (journal verified, never opened
//! for appending) and each node's status. A node that cannot be opened or read is shown as
//! "unavailable: <reason>" in the report; it is not a failure (in a ceremony whose nodes
//! sit in different servers, most nodes are elsewhere).

use std::io::Write;
use std::path::{Path, PathBuf};

use mkclone_backend::NodeStatus;
use mkclone_ceremony::durable::{Sensitivity, write_atomic};
use mkclone_ceremony::report;

use super::output::Failure;
use mkclone::config::Config;
use mkclone::nodes;

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

/// `mkclone report`: JSON on standard output (`json`, or into `out` when given), else the
/// Markdown (or `html`) page written atomically to `out`, by default
/// `<ceremony directory>/report.md` (`.html`).
pub fn run(config: &Path, out: Option<&Path>, html: bool, json: bool) -> Result<(), Failure> {
    let config = Config::load(config)?;
    let (read, unavailable) = read_nodes(&config);
    let report = report::build_with(&config.directory, &config.plan, &read, &unavailable)?;
    let write = |path: &Path, text: &str| {
        write_atomic(path, text.as_bytes(), Sensitivity::Public)
            .map_err(|e| Failure::failed(e.to_string()))
    };
    if json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::failed(e.to_string()))?;
        match out {
            Some(path) => {
                write(path, &format!("{text}\n"))?;
                println!("Report (JSON) written to {}", path.display());
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
                    // A reader that stopped early (`| head`) is not a failure.
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        return Err(Failure::failed(format!("cannot write the report: {e}")));
                    }
                    _ => {}
                }
            }
        }
        return Ok(());
    }
    let (text, ext) = if html {
        (report::render_html(&report), "html")
    } else {
        (report::render_markdown(&report), "md")
    };
    let path: PathBuf = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.directory.join(format!("report.{ext}")));
    write(&path, &text)?;
    if report.rehearsal {
        println!("REHEARSAL report of ceremony {}", report.ceremony);
    }
    println!("Report written to {}", path.display());
    if report.complete {
        println!("The ceremony is complete.");
    } else {
        println!(
            "The ceremony is NOT complete: {} item(s) missing (listed in the report).",
            report.missing.len()
        );
    }
    for (node, why) in &unavailable {
        println!("  node {node}: unavailable ({why})");
    }
    match &report.journal.head_hash {
        Some(hash) => println!(
            "Journal: {} records, final hash {hash}{}",
            report.journal.records,
            if report.journal.verified {
                ""
            } else {
                " (NOT verified)"
            }
        ),
        None => println!(
            "Journal: {}",
            report.journal.problem.as_deref().unwrap_or("not verified")
        ),
    }
    Ok(())
}
