//! The `mkclone` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before any secret can be in memory: no core files, not dumpable, memory locked
    // where the platform allows (logged once the logger is up).
    let hardening = mkclone::hardening::harden_process();
    // Under --json a command-line error is also a JSON document (mkclone-error).
    let wants_json = std::env::args_os().skip(1).any(|a| a == "--json");
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            let informative =
                matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if wants_json && !informative {
                cli::report_usage_error(&e);
                return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
            }
            e.exit()
        }
    };
    let level = match args.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    hardening.log();
    match cli::run(args.command, args.json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            cli::report_failure(&failure, args.json);
            ExitCode::from(failure.code)
        }
    }
}
