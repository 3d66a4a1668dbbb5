//! The command line: argument definitions and dispatch. Each command lives in its own
//! module and returns `Result<(), Failure>`; `main` turns a failure into a message and
//! an exit code.

mod ceremony_cmds;
mod clone_log;
mod console;
mod demo;
mod devices;
mod master_key;
mod output;
mod report;
mod shell;
mod signals;
mod sim;
mod status;
mod worksheet;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mkclone_ceremony::Phase;

pub use output::Failure;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (the message says why and what to do)
  2  usage error (bad arguments)
  3  the configuration or a ceremony file is invalid
  4  a preflight found problems and changed nothing (clone: the phases it printed as
     done before it stand, journaled; fix the problems and run it again to go on)
  5  report: the record was written; the ceremony is NOT complete
  6  report: the record was written; the ceremony is complete, with open items
  7  clone: stopped for dual control; it printed the register-sa-hash /
     register-sa-key commands two people run: then run the same command again
  130  interrupted by SIGINT (Ctrl-C) at a safe point, journaled; nothing is half-done:
       run the same command to resume
  143  interrupted by SIGTERM, likewise
A second Ctrl-C (or SIGTERM) ends the process at once, with that signal's code, as a
crash would: run the same command to resume.";

/// Clone a cryptographic coprocessor's master key into others by m-of-n shares.
///
/// Phases follow IBM's CNM utility: 1 (SA node), 2a (source), 2b (SA), then per target
/// 3a (target), 3b (SA), 3c (source), 3d (target). `clone` runs them all; the phase
/// commands run one each, for ceremonies whose nodes sit in different servers.
/// `clone` stopped for dual control (see [`EXIT_CODES`]).
pub const EXIT_DUAL_CONTROL: u8 = 7;

#[derive(Parser)]
#[command(version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print the result as one JSON document on standard output (docs/JSON.md), also on
    /// failure (format mkclone-error); human text goes to standard error. Before or
    /// after the command (`mkclone --json status` = `mkclone status --json`).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// The ceremony configuration (TOML). Default: the MKCLONE_CONFIG environment variable.
    #[arg(long, short = 'c', value_name = "FILE", env = "MKCLONE_CONFIG")]
    pub config: PathBuf,
}

/// `--operator NAME`: held to the safe character set of operator names (a usage error
/// otherwise, before anything is opened).
fn operator_name(name: &str) -> Result<String, String> {
    mkclone_ceremony::operator::check(name)
        .map(|()| name.to_string())
        .map_err(|e| e.to_string())
}

/// Options every ceremony command takes.
#[derive(clap::Args, Clone, Default)]
pub struct RunArgs {
    /// Check everything this command would need, on every node and file, report every
    /// problem at once, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who runs this command: recorded in the journal (never assumed).
    #[arg(long, value_name = "NAME", value_parser = operator_name)]
    pub operator: Option<String>,
    /// The SA key's fingerprint as phase 1 printed it on the SA node (64 hex digits,
    /// spaces allowed): the trust anchor, when the configuration does not pin it with
    /// `sa_fingerprint`. Take it from the SA operator, never from the carried sa.db.
    #[arg(long, value_name = "HEX")]
    pub sa_fingerprint: Option<String>,
}

#[derive(clap::Args, Clone)]
pub struct TargetArg {
    /// The target node (as named in the configuration).
    #[arg(long, value_name = "NODE")]
    pub target: String,
}

/// What a phase on no particular target takes: the configuration and the run options.
#[derive(clap::Args, Clone)]
pub struct PhaseArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub run: RunArgs,
}

impl PhaseArgs {
    fn run(&self, phase: Phase, fingerprint: Option<String>, json: bool) -> Result<(), Failure> {
        ceremony_cmds::phase(
            &self.config.config,
            phase,
            None,
            &self.run,
            false,
            fingerprint,
            json,
        )
    }
}

/// What a phase for one target takes: the configuration, the target and the run options.
#[derive(clap::Args, Clone)]
pub struct TargetPhaseArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub target: TargetArg,
    #[command(flatten)]
    pub run: RunArgs,
}

impl TargetPhaseArgs {
    fn run(
        &self,
        phase: Phase,
        replace_current: bool,
        fingerprint: Option<String>,
        json: bool,
    ) -> Result<(), Failure> {
        ceremony_cmds::phase(
            &self.config.config,
            phase,
            Some(&self.target.target),
            &self.run,
            replace_current,
            fingerprint,
            json,
        )
    }
}

/// What both dual-control steps take.
#[derive(clap::Args, Clone)]
pub struct RegisterSaArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The source or target node.
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// Who registers it (recorded in the journal).
    #[arg(long, value_name = "NAME", value_parser = operator_name)]
    pub operator: String,
    /// The SA key's fingerprint (see `phase2a --help`), unless the configuration pins it.
    #[arg(long, value_name = "HEX")]
    pub sa_fingerprint: Option<String>,
}

impl RegisterSaArgs {
    fn run(&self, key: bool, json: bool) -> Result<(), Failure> {
        ceremony_cmds::register_sa(
            &self.config.config,
            &self.node,
            &self.operator,
            key,
            self.sa_fingerprint.as_deref(),
            json,
        )
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Rehearse a whole ceremony on temporary simulated cards (needs no file).
    Demo,
    /// Run every phase of the plan for every target, the targets in parallel; run it again
    /// to resume.
    ///
    /// Every action is printed as it happens, one line each, prefixed with its target (or
    /// node), fingerprints and files to carry included; on a terminal a progress bar names
    /// the phases running. Under dual control it runs every phase one person may, then stops
    /// (exit code 7) with the register-sa-hash / register-sa-key commands two people run.
    Clone {
        #[command(flatten)]
        args: PhaseArgs,
        /// Allow SET over a target's valid, different CURRENT master key (it becomes OLD).
        #[arg(long)]
        replace_current: bool,
        /// Quiet: no action lines and no progress bar; the result, errors and what the
        /// operators must do are still printed.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Phases running at once, each on nodes of its own (a node never serves two at
        /// once): default one per target; 1 runs them one after another in the order of
        /// the per-phase commands.
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<std::num::NonZeroUsize>,
        /// Check every target before the first share leaves the source (every problem of
        /// every node at once), instead of each target right before its own shares. The
        /// way with --jobs 1 and under dual control. Either way no share leaves for a
        /// target its checks have not passed; `--dry-run` lists beforehand every problem
        /// that can be known before the keys exist.
        #[arg(long)]
        check_all_first: bool,
    },
    /// Phase 1, on the SA node: generate the SA key, write sa.db.
    Phase1(PhaseArgs),
    /// Phase 2a, on the source: EID, m-of-n, SA key installed, CSS key into sa.db.
    Phase2a(PhaseArgs),
    /// Phase 2b, on the SA node: certify the CSS key into sa.db.
    Phase2b {
        #[command(flatten)]
        args: PhaseArgs,
        /// The CSS key's fingerprint as phase 2a printed it on the source (at least 16
        /// hex digits), compared with the key in the carried sa.db before certifying.
        #[arg(long, value_name = "HEX")]
        css_fingerprint: Option<String>,
    },
    /// Phase 3a, on a target: EID, m-of-n, SA key installed, CSR key into <target>.csr.db.
    Phase3a(TargetPhaseArgs),
    /// Phase 3b, on the SA node: certify a target's CSR key.
    Phase3b {
        #[command(flatten)]
        args: TargetPhaseArgs,
        /// The CSR key's fingerprint as phase 3a printed it on the target (at least 16
        /// hex digits), compared with the key in the carried csr.db before certifying.
        #[arg(long, value_name = "HEX")]
        csr_fingerprint: Option<String>,
    },
    /// Phase 3c, on the source: preflight, then obtain the shares for a target.
    Phase3c(TargetPhaseArgs),
    /// Phase 3d, on a target: preflight, install the shares, confirm, SET.
    Phase3d {
        #[command(flatten)]
        args: TargetPhaseArgs,
        /// Allow SET over the target's valid, different CURRENT master key (it becomes OLD).
        #[arg(long)]
        replace_current: bool,
    },
    /// Dual control, step 1: register the SA public key's hash on a source or target
    /// (one person; shows the fingerprint to compare in person).
    RegisterSaHash(RegisterSaArgs),
    /// Dual control, step 2: register the SA public key itself (a second person; the node
    /// checks it matches the hash).
    #[command(mut_arg("operator", |a| a.help(
        "Who registers it (recorded in the journal; not the person who registered the hash)"
    )))]
    RegisterSaKey(RegisterSaArgs),
    /// Undo what the ceremony left: only the steps asked for, each journaled.
    Abort {
        #[command(flatten)]
        config: ConfigArg,
        /// Targets concerned (repeatable; default: every target of the plan).
        #[arg(long, value_name = "NODE")]
        target: Vec<String>,
        /// Clear NEW on targets that received shares.
        #[arg(long)]
        clear_new: bool,
        /// Delete the ceremony's CSS key (source) and CSR keys (targets).
        #[arg(long)]
        delete_keys: bool,
        /// Erase the targets' csr.db and share bundles (overwritten, then removed).
        #[arg(long)]
        erase_files: bool,
        /// Unregister the SA public key from the source and the targets.
        #[arg(long)]
        unregister_sa: bool,
        /// Who runs this (recorded in the journal).
        #[arg(long, value_name = "NAME", value_parser = operator_name)]
        operator: Option<String>,
    },
    /// A node's registers, patterns, EID, m-of-n, share tables, retained and registered keys.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// The node (as named in the configuration).
        node: String,
    },
    /// The CCA coprocessors this machine sees and the PKCS#11 tokens of a configuration.
    Devices {
        /// Also list the slots and tokens of the PKCS#11 modules this configuration names
        /// (default: the MKCLONE_CONFIG environment variable, when set).
        #[arg(long, short = 'c', value_name = "FILE", env = "MKCLONE_CONFIG")]
        config: Option<PathBuf>,
        /// The sysfs root (for tests and chroots).
        #[arg(long, default_value = "/sys", value_name = "DIR")]
        sysfs: PathBuf,
        /// Capture kit: send the public facility queries (FQ STATICSA, STATICSB) to each
        /// CCA domain (the configuration's zcrypt nodes, else every online one in sysfs)
        /// and write every request and reply into DIR (0700; files 0600), with the kernel
        /// and card versions, for golden vectors. Only FQ is sent. Also
        /// MKCLONE_CAPTURE_DIR=DIR.
        #[arg(long, value_name = "DIR")]
        capture: Option<PathBuf>,
    },
    /// Write the ceremony record: nodes and identities, who did what and when, patterns
    /// before and after, shares issued and installed, open items, the journals' final
    /// hashes. Exit code 0 when complete with nothing open, 5 when not complete, 6 when
    /// complete with open items (the record is written in every case but one: journals given
    /// with --journal that cannot be merged into one record, exit 3, nothing written).
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// Write it into FILE instead of standard output (`-`, the default). FILE must be
        /// outside the ceremony directory and must not exist unless --force is given;
        /// otherwise nothing is written and the exit code is 2 (usage).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace FILE if it exists (atomically). Never a file of the ceremony directory.
        #[arg(long, requires = "out")]
        force: bool,
        /// HTML instead of Markdown.
        #[arg(long, conflicts_with = "json")]
        html: bool,
        /// A copy of another server's journal of this ceremony (repeatable): each is
        /// verified, checked to be this run of the ceremony and against the journal marks
        /// the carried files record, and merged with this directory's into one record.
        #[arg(long, value_name = "FILE")]
        journal: Vec<PathBuf>,
    },
    /// Print the ceremony's worksheet before it starts: every task with its node, and blanks
    /// for the profile, role and responsible individual (as CNM's cloning procedure asks),
    /// then the cloning information each operator needs.
    Worksheet {
        #[command(flatten)]
        config: ConfigArg,
        /// HTML (printable) instead of text.
        #[arg(long, conflicts_with = "json")]
        html: bool,
    },
    /// A node's master key, outside the cloning ceremony.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
    /// Simulated cards: create them for a rehearsal.
    #[command(subcommand)]
    Sim(SimCommand),
    /// The ceremony journal of this server.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `mkclone completions bash > /etc/bash_completion.d/mkclone`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory, e.g.
    /// `mkclone man --out /usr/local/share/man/man1`.
    Man {
        /// Write mkclone.1 and mkclone-COMMAND.1 into DIR instead, each atomically (a
        /// temporary file in DIR renamed over the page), replacing the pages of an earlier
        /// run. Never through a symbolic link: DIR itself must not be one, and a link at a
        /// page's name is refused (exit code 2, nothing written); remove it and run again.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum JournalCommand {
    /// Record that journal records a phase on NODE wrote here are lost for good (the
    /// journal was deleted or truncated and no copy exists), so that the ceremony can go
    /// on; the note names the operator, and the report then says the chain is not verified
    /// end to end. Restore the journal from a copy instead whenever one exists.
    AcceptLoss {
        #[command(flatten)]
        config: ConfigArg,
        /// The node whose phases ran on this server (as the error named it).
        #[arg(long, value_name = "NODE")]
        node: String,
        /// Who accepts the loss (recorded in the journal).
        #[arg(long, value_name = "NAME", value_parser = operator_name)]
        operator: String,
    },
}

#[derive(Subcommand)]
pub enum MasterKeyCommand {
    /// Generate a random master key inside NODE and set it (CSNBMKP RANDOM, then SET),
    /// journaled: how a fresh source gets the key the ceremony clones. Refused over a
    /// valid CURRENT unless --replace-current. Under the plan's dual control one person
    /// requests it and a second person (another --operator) runs the same command. A run
    /// cut short is resumed by running the same command again.
    Random {
        #[command(flatten)]
        config: ConfigArg,
        /// The node (as named in the configuration).
        #[arg(long, value_name = "NODE")]
        node: String,
        /// Only this master key (sym or asym; repeatable). Default: the plan's.
        #[arg(long, value_name = "KIND", value_parser = parse_kind)]
        kind: Vec<mkclone_backend::CloneableKind>,
        /// Allow a valid CURRENT to be replaced (it becomes OLD; every key enciphered under
        /// it must then be re-enciphered).
        #[arg(long)]
        replace_current: bool,
        /// Who runs this (recorded in the journal; required under dual control).
        #[arg(long, value_name = "NAME", value_parser = operator_name)]
        operator: Option<String>,
        /// Cancel the request open on NODE instead (journaled).
        #[arg(long, conflicts_with_all = ["kind", "replace_current"])]
        cancel: bool,
    },
}

fn parse_kind(text: &str) -> Result<mkclone_backend::CloneableKind, String> {
    mkclone_backend::CloneableKind::parse(text).map_err(|e| e.to_string())
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

/// Run one command; `json`: every result as one JSON document on standard output.
pub fn run(command: Command, json: bool) -> Result<(), Failure> {
    match command {
        Command::Demo => demo::run(json),
        Command::Clone {
            args,
            replace_current,
            quiet,
            jobs,
            check_all_first,
        } => ceremony_cmds::clone(
            &args.config.config,
            &args.run,
            &ceremony_cmds::CloneArgs {
                replace_current,
                json,
                quiet,
                jobs,
                checks: if check_all_first {
                    mkclone_ceremony::run::Checks::AllFirst
                } else {
                    mkclone_ceremony::run::Checks::EachTarget
                },
            },
        ),
        Command::Phase1(args) => args.run(Phase::P1, None, json),
        Command::Phase2a(args) => args.run(Phase::P2a, None, json),
        Command::Phase2b {
            args,
            css_fingerprint,
        } => args.run(Phase::P2b, css_fingerprint, json),
        Command::Phase3a(args) => args.run(Phase::P3a, false, None, json),
        Command::Phase3b {
            args,
            csr_fingerprint,
        } => args.run(Phase::P3b, false, csr_fingerprint, json),
        Command::Phase3c(args) => args.run(Phase::P3c, false, None, json),
        Command::Phase3d {
            args,
            replace_current,
        } => args.run(Phase::P3d, replace_current, None, json),
        Command::RegisterSaHash(args) => args.run(false, json),
        Command::RegisterSaKey(args) => args.run(true, json),
        Command::Abort {
            config,
            target,
            clear_new,
            delete_keys,
            erase_files,
            unregister_sa,
            operator,
        } => {
            let steps = mkclone::ceremony::abort::AbortSteps {
                targets: target,
                clear_new,
                delete_keys,
                erase_files,
                unregister_sa,
            };
            // Naming no step is a usage error (exit 2), found before any file or node.
            if steps.is_empty() {
                return Err(Failure::usage(mkclone::ceremony::abort::NO_STEP));
            }
            ceremony_cmds::abort(&config.config, &steps, operator, json)
        }
        Command::Status { config, node } => status::run(&config.config, &node, json),
        Command::Report {
            config,
            out,
            force,
            html,
            journal,
        } => report::run(&report::ReportArgs {
            config: &config.config,
            out: out.as_deref(),
            force,
            html,
            json,
            journals: &journal,
        }),
        Command::Devices {
            config,
            sysfs,
            capture,
        } => devices::run(&sysfs, config.as_deref(), json, capture),
        Command::Journal(JournalCommand::AcceptLoss {
            config,
            node,
            operator,
        }) => ceremony_cmds::accept_journal_loss(&config.config, &node, &operator, json),
        Command::Worksheet { config, html } => worksheet::run(&config.config, html, json),
        Command::Completions { shell } => {
            refuse_json(json, "completions")?;
            shell::completions(shell)
        }
        Command::Man { out } => {
            refuse_json(json, "man")?;
            shell::man(out.as_deref())
        }
        Command::MasterKey(MasterKeyCommand::Random {
            config,
            node,
            kind,
            replace_current,
            operator,
            cancel,
        }) => master_key::random(master_key::RandomArgs {
            config: &config.config,
            node: &node,
            kinds: kind,
            replace_current,
            operator,
            cancel,
            json,
        }),
        Command::Sim(SimCommand::Init {
            config,
            load_source_keys,
        }) => sim::init(&config.config, load_source_keys, json),
    }
}

/// `completions` and `man` print a script and a manual page, not data: `--json` is a
/// usage error there (exit 2), said before anything is printed.
fn refuse_json(json: bool, command: &str) -> Result<(), Failure> {
    if json {
        return Err(Failure::usage(format!(
            "`{command}` prints a {}, not data: --json does not apply; run it without --json",
            if command == "man" {
                "manual page"
            } else {
                "shell script"
            }
        ))
        .kind("json-not-supported"));
    }
    Ok(())
}

/// Print a failure: the message on standard error, and under `--json` the
/// `mkclone-error` document on standard output (unless the command's own document
/// already said the outcome).
pub fn report_failure(failure: &Failure, json: bool) {
    eprintln!("mkclone: {}", output::terminal_text(&failure.message));
    if json && !failure.documented {
        // The document cannot fail to serialize; if stdout is gone there is no one to tell.
        let _ = output::print_json("error", &output::ErrorDocument::from(failure));
    }
}

/// Print a command-line (clap) error under `--json`: the `mkclone-error` document with
/// kind "usage" and clap's exit code, beside clap's own message on standard error.
pub fn report_usage_error(error: &clap::Error) {
    let code = u8::try_from(error.exit_code()).unwrap_or(2);
    let _ = error.print();
    // clap's text: "error: WHAT\n  DETAIL…\n\nUsage: …\n\nFor more information, …".
    let text = error.render().to_string();
    let mut parts = text.split("\n\n");
    let message = parts
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .trim_end();
    let usage = parts.find(|p| p.starts_with("Usage:")).map(str::trim_end);
    let mut failure = Failure::with_code(code, "usage", message);
    if let Some(usage) = usage {
        failure = failure.hint(format!("{usage} (see --help)"));
    }
    let _ = output::print_json("error", &output::ErrorDocument::from(&failure));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command of the tree, its words joined by '-' ("master-key-random").
    fn leaves(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        let subcommands: Vec<&clap::Command> = command
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subcommands.is_empty() {
            out.push((path.to_string(), command.clone()));
        }
        for c in subcommands {
            let name = if path.is_empty() {
                c.get_name().to_string()
            } else {
                format!("{path}-{}", c.get_name())
            };
            leaves(c, &name, out);
        }
    }

    /// `--json` reaches every command (a global flag), and a command added later gets it
    /// too; tests/json.rs runs each of them with it.
    #[test]
    fn every_command_takes_json() {
        let mut cli = Cli::command();
        cli.build();
        let mut all = Vec::new();
        leaves(&cli, "", &mut all);
        assert!(all.len() > 15, "{}", all.len());
        for (name, command) in all {
            assert!(
                command
                    .get_arguments()
                    .any(|a| a.get_long() == Some("json")),
                "{name} has no --json"
            );
            // A dry run, where a command has one, is JSON too (tests/json.rs).
            if command
                .get_arguments()
                .any(|a| a.get_long() == Some("dry-run"))
            {
                assert!(name == "clone" || name.starts_with("phase"), "{name}");
            }
        }
    }
}
