//! The `mkclone` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any secret can be in memory: no core files, not dumpable, memory locked
    // where the platform allows (logged once the logger is up).
    let hardening = mkclone::hardening::harden_process();
    let args = cli::Cli::parse();
    let level = match args.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    hardening.log();
    match cli::run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mkclone: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
