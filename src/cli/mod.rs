//! The command line: argument definitions and dispatch. Each command lives in its own
//! module and returns `Result<(), Failure>`; `main` turns a failure into a message and
//! an exit code.

mod ceremony_cmds;
mod demo;
mod devices;
mod output;
mod sim;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use output::Failure;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (the message says why and what to do)
  2  usage error (bad arguments)
  3  the configuration or a ceremony file is invalid
  4  a preflight found problems; nothing was changed";

/// Clone a cryptographic coprocessor's master key into others by m-of-n shares.
///
/// Phases follow IBM's CNM utility: 1 (SA node), 2a (source), 2b (SA), then per target
/// 3a (target), 3b (SA), 3c (source), 3d (target). `clone` runs them all; the phase
/// commands run one each, for ceremonies whose nodes sit in different servers.
#[derive(Parser)]
#[command(version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// The ceremony configuration (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(clap::Args, Clone)]
pub struct TargetArg {
    /// The target node (as named in the configuration).
    #[arg(long, value_name = "NODE")]
    pub target: String,
}

#[derive(Subcommand)]
pub enum Command {
    /// Rehearse a whole ceremony on temporary simulated cards (needs no file).
    Demo {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run every phase of the plan for every target; run it again to resume.
    Clone {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Phase 1, on the SA node: generate the SA key, write sa.db.
    Phase1 {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Phase 2a, on the source: EID, m-of-n, SA key installed, CSS key into sa.db.
    Phase2a {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Phase 2b, on the SA node: certify the CSS key into sa.db.
    Phase2b {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Phase 3a, on a target: EID, m-of-n, SA key installed, CSR key into <target>.csr.db.
    Phase3a {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Phase 3b, on the SA node: certify a target's CSR key.
    Phase3b {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Phase 3c, on the source: preflight, then obtain the shares for a target.
    Phase3c {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Phase 3d, on a target: preflight, install the shares, confirm, SET.
    Phase3d {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        target: TargetArg,
    },
    /// A node's registers, patterns, EID, m-of-n, share tables, retained and registered keys.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// The node (as named in the configuration).
        node: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The CCA coprocessors this machine sees and the PKCS#11 tokens of a configuration.
    Devices {
        /// Also list the slots and tokens of the PKCS#11 modules this configuration names.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// The sysfs root (for tests and chroots).
        #[arg(long, default_value = "/sys", value_name = "DIR")]
        sysfs: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Simulated cards: create them for a rehearsal.
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Subcommand)]
pub enum SimCommand {
    /// Create the card file of every simulated node that has none yet, and (with
    /// --load-source-keys) random master keys on the source.
    Init {
        #[command(flatten)]
        config: ConfigArg,
        /// Load random SYM/ASYM master keys on the source where its CURRENT is empty.
        #[arg(long)]
        load_source_keys: bool,
    },
}

/// Run one command.
pub fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Demo { json } => demo::run(json),
        Command::Clone { config, json } => ceremony_cmds::clone(&config.config, json),
        Command::Phase1 { config } => ceremony_cmds::phase(&config.config, "1", None),
        Command::Phase2a { config } => ceremony_cmds::phase(&config.config, "2a", None),
        Command::Phase2b { config } => ceremony_cmds::phase(&config.config, "2b", None),
        Command::Phase3a { config, target } => {
            ceremony_cmds::phase(&config.config, "3a", Some(&target.target))
        }
        Command::Phase3b { config, target } => {
            ceremony_cmds::phase(&config.config, "3b", Some(&target.target))
        }
        Command::Phase3c { config, target } => {
            ceremony_cmds::phase(&config.config, "3c", Some(&target.target))
        }
        Command::Phase3d { config, target } => {
            ceremony_cmds::phase(&config.config, "3d", Some(&target.target))
        }
        Command::Status { config, node, json } => status::run(&config.config, &node, json),
        Command::Devices {
            config,
            sysfs,
            json,
        } => devices::run(&sysfs, config.as_deref(), json),
        Command::Sim(SimCommand::Init {
            config,
            load_source_keys,
        }) => sim::init(&config.config, load_source_keys),
    }
}
