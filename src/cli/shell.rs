//! `mkclone completions SHELL` and `mkclone man`: generated from the clap definitions the
//! command line itself is parsed with, so they cannot drift from it.

use std::path::{Component, Path};

use clap::CommandFactory;
use clap_complete::Shell;
use mkclone_durable::{Sensitivity, write_atomic};

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
        Some(dir) => write_pages(command, dir),
    }
}

/// `man --out DIR`: every page rendered first, then each written atomically (a temporary
/// file in DIR, renamed over the page's name: [`write_atomic`]), so a reader sees a whole
/// page, old or new. Never through a symbolic link: DIR itself must not be one, and a link
/// at a page's name is refused before any page is written; one planted after that check is
/// replaced by the rename, never followed. Real pages of an earlier run are replaced.
fn write_pages(command: clap::Command, dir: &Path) -> Result<(), Failure> {
    // `DIR/` and `DIR/.` name what DIR names, but lstat(2) resolves a path that ends in a
    // slash or a `.`: as written, a link at DIR would pass for a directory. Its components
    // name DIR itself (`components` drops a trailing slash and every `.` but a leading one).
    let named = dir;
    let dir: &Path = &dir.components().collect::<std::path::PathBuf>();
    if dir.file_name().is_none() && dir.components().next_back() == Some(Component::ParentDir) {
        return Err(Failure::usage(format!(
            "--out {}: name the directory itself, not `..` of another (where `..` leads \
             depends on links along the way); no page was written",
            named.display()
        )));
    }
    let link = |path: &Path| {
        Failure::usage(format!(
            "{} is a symbolic link: mkclone never writes a manual page through a link; no page \
             was written. Remove the link (and find out who put it there){}, then run the \
             command again",
            path.display(),
            if path == dir {
                " or give the directory it points to"
            } else {
                ""
            }
        ))
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(link(dir)),
        Ok(meta) if meta.is_dir() => {}
        _ => {
            return Err(Failure::usage(format!(
                "--out {}: not a directory; create it first",
                dir.display()
            )));
        }
    }
    let pages = render_pages(command)?;
    for (name, _) in &pages {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(link(&path));
        }
    }
    for (name, page) in &pages {
        write_atomic(&dir.join(name), page, Sensitivity::Public).map_err(|e| {
            Failure::failed(format!(
                "cannot write the manual pages into {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Each page `mkclone man --out` writes, as clap_mangen's `generate_to` names and renders
/// them (`mkclone.1`, `mkclone-clone.1`, `mkclone-master-key-random.1`, …), in memory.
fn render_pages(command: clap::Command) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    fn render(command: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            render(sub.clone(), pages)?;
        }
        let man = clap_mangen::Man::new(command);
        let mut page = Vec::new();
        man.render(&mut page)?;
        pages.push((man.get_filename(), page));
        Ok(())
    }
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    render(command, &mut pages)
        .map_err(|e| Failure::failed(format!("cannot render the manual pages: {e}")))?;
    Ok(pages)
}
