//! `clone`'s console: every action of every phase on standard output as it happens, one
//! line each, prefixed with the target it is for (or the node, for phases 1, 2a, 2b), the
//! fingerprints and the files to carry included; a progress bar on standard error naming
//! the phases running, when standard error is a terminal that can redraw a line.
//!
//! Lines are always plain text on standard output, whatever standard output is (a
//! terminal, a pipe, a file): with a bar, each line is printed with the bar suspended
//! (cleared, the line written, the bar drawn again), so the two never mix. Without a
//! terminal on standard error, or with `TERM=dumb`, there is no bar and the lines are the
//! same. `-q` prints no action lines and no bar; `--json` neither (standard output is the
//! JSON document).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use mkclone_ceremony::progress::Progress;
use mkclone_ceremony::{CeremonyError, Phase};

/// What the console shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Every action, and a bar on a terminal.
    Actions,
    /// The result only (`-q`, `--json`).
    Quiet,
}

pub struct Console {
    bar: Option<ProgressBar>,
    verbosity: Verbosity,
    /// Width of the first column (the longest node name).
    width: usize,
    /// The phases running now, as the bar names them ("3a target1").
    running: Mutex<Vec<String>>,
}

impl Console {
    /// A console for a `clone` of `phases` phases over nodes named `names`.
    pub fn new(phases: u64, verbosity: Verbosity, names: &[&str]) -> Self {
        let bar = (verbosity == Verbosity::Actions && bar_possible()).then(|| {
            let bar = ProgressBar::new(phases);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} phases  {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        if let Some(bar) = &bar {
            // A PIN prompt (the source's SO PIN, in 3c) clears the bar while it is open.
            let bar = bar.clone();
            mkclone::terminal::set_hide(Some(std::sync::Arc::new(move |f: &mut dyn FnMut()| {
                bar.suspend(f)
            })));
        }
        Self {
            bar,
            verbosity,
            width: names.iter().map(|n| n.len()).max().unwrap_or(0),
            running: Mutex::new(Vec::new()),
        }
    }

    /// Show one event.
    pub fn observe(&self, event: &Progress<'_>) {
        match event {
            Progress::PhaseStarted {
                phase,
                node,
                target,
            } => self.update_running(|running| running.push(running_name(*phase, node, *target))),
            Progress::Action {
                phase,
                node,
                target,
                action,
            } => self.line(&self.format(*phase, node, *target, &action.to_string())),
            Progress::Carry {
                phase,
                node,
                target,
                carry,
            } => self.line(&self.format(*phase, node, *target, &carry.to_string())),
            Progress::PhaseDone { report, target } => {
                let name = running_name(report.phase, &report.node, *target);
                self.update_running(|running| running.retain(|r| *r != name));
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            Progress::PhaseFailed {
                phase,
                node,
                target,
                error,
            } => {
                let name = running_name(*phase, node, *target);
                self.update_running(|running| running.retain(|r| *r != name));
                // A signal stops every phase alike: the final message says it once.
                if !matches!(error, CeremonyError::Interrupted { .. }) {
                    let text = self.format(*phase, node, *target, &format!("FAILED: {error}"));
                    self.suspended(|| eprintln!("{}", super::output::terminal_text(&text)));
                }
            }
        }
    }

    /// Clear the bar for good.
    pub fn finish(&self) {
        mkclone::terminal::set_hide(None);
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// `target1  3b  on sa: text`: the target first (or the node for 1, 2a, 2b), then the
    /// phase, then the node when it is not the target.
    fn format(&self, phase: Phase, node: &str, target: Option<&str>, text: &str) -> String {
        let scope = target.unwrap_or(node);
        let on = if scope == node {
            String::new()
        } else {
            format!("on {node}: ")
        };
        format!(
            "{scope:<w$}  {:<3} {on}{text}",
            phase.name(),
            w = self.width
        )
    }

    fn line(&self, line: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        self.suspended(|| {
            let mut out = std::io::stdout().lock();
            // A closed standard output (`| head`) must not stop the ceremony.
            let _ = writeln!(out, "{}", super::output::terminal_text(line));
            let _ = out.flush();
        });
    }

    /// Write with the bar cleared, and never while a PIN prompt is open (the prompt's
    /// question would be written over: `mkclone::terminal`).
    fn suspended(&self, f: impl FnOnce()) {
        mkclone::terminal::exclusive(|| match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        })
    }

    fn update_running(&self, change: impl FnOnce(&mut Vec<String>)) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut running);
        if let Some(bar) = &self.bar {
            bar.set_message(if running.is_empty() {
                String::new()
            } else {
                format!("running: {}", running.join(", "))
            });
        }
    }
}

/// "3a target1", "3b sa for target1", "1 sa".
fn running_name(phase: Phase, node: &str, target: Option<&str>) -> String {
    match target {
        Some(t) if t != node => format!("{phase} on {node} for {t}"),
        _ => format!("{phase} on {node}"),
    }
}

/// A bar needs standard error to be a terminal that can redraw a line.
fn bar_possible() -> bool {
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}
