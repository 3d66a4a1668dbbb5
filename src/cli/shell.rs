//! `mkclone completions SHELL` and `mkclone man`: generated from the clap definitions the
//! command line itself is parsed with, so they cannot drift from it.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use super::output::Failure;

/// Print the completion script for `shell` on standard output.
pub fn completions(shell: Shell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    Ok(())
}

/// Print the main manual page (roff) on standard output, or, with `out`, write one page
/// per command into that directory (`mkclone.1`, `mkclone-clone.1`, …).
pub fn man(out: Option<&Path>) -> Result<(), Failure> {
    let command = Cli::command();
    match out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| Failure::failed(format!("cannot render the manual page: {e}")))?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&page)
                .map_err(|e| Failure::failed(format!("cannot write the manual page: {e}")))
        }
        Some(dir) => {
            if !dir.is_dir() {
                return Err(Failure::usage(format!(
                    "--out {}: not a directory; create it first",
                    dir.display()
                )));
            }
            clap_mangen::generate_to(command, dir).map_err(|e| {
                Failure::failed(format!(
                    "cannot write the manual pages into {}: {e}",
                    dir.display()
                ))
            })
        }
    }
}
