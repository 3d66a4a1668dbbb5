//! The `mkclone` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mkclone::backend::{CloneableKind, NodeStatus};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the operation failed (the message says why and what to do); \
2 usage error.";

/// Clone a cryptographic coprocessor's master key into others by m-of-n shares.
#[derive(Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rehearse a whole ceremony on temporary simulated cards: SA, source, two targets,
    /// SYM and ASYM master keys, 3-of-5 shares. Needs no file.
    Demo {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match cli.command {
        Command::Demo { json } => demo(json),
    }
}

fn demo(json: bool) -> ExitCode {
    if !json {
        println!(
            "mkclone demo: REHEARSAL on temporary simulated cards (keys held in host memory)\n"
        );
    }
    let result = mkclone::demo::run(|entry| {
        if !json {
            println!(
                "  phase {:<5} {:<8} {}",
                entry.phase, entry.node, entry.action
            );
        }
    });
    match result {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("mkclone: cannot encode the report: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print_table(&report.nodes);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mkclone demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_table(nodes: &[(String, NodeStatus)]) {
    println!("\nMaster-key verification patterns (SHA-1 method), CURRENT register:\n");
    println!(
        "  {:<8} {:<10} {:<16} {:<18} {:<18}",
        "node", "serial", "EID", "SYM", "ASYM"
    );
    let mut source: Option<Vec<String>> = None;
    for (name, status) in nodes {
        let cells: Vec<String> = CloneableKind::ALL
            .into_iter()
            .map(|kind| {
                status
                    .register(kind.kind())
                    .and_then(|r| r.current_patterns.first())
                    .map(|p| hex(p.bytes()))
                    .unwrap_or_else(|| "-".into())
            })
            .collect();
        let mark = match (&source, name.as_str()) {
            (_, "source") => {
                source = Some(cells.clone());
                ""
            }
            (Some(s), n) if n.starts_with("target") && *s == cells => "  = source",
            (Some(_), n) if n.starts_with("target") => "  DIFFERS",
            _ => "",
        };
        let eid = status
            .identity
            .eid
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        println!(
            "  {:<8} {:<10} {:<16} {:<18} {:<18}{mark}",
            name,
            status.identity.serial.to_string(),
            eid,
            cells[0],
            cells[1]
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
