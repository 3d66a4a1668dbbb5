//! Helpers shared by the end-to-end tests of the binary.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Run the binary under test.
pub fn mkclone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkclone"))
        .args(args)
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn ok(args: &[&str]) -> String {
    let o = mkclone(args);
    assert!(o.status.success(), "mkclone {args:?} failed:\n{}", text(&o));
    text(&o)
}

/// The key fingerprint a phase printed on the line starting with `what`.
pub fn fingerprint_in(out: &str, what: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(what))
        .unwrap_or_else(|| panic!("no {what} in:\n{out}"));
    line.rsplit("): ").next().unwrap().trim().to_string()
}

/// Phases 1 to 3c for one target, as the per-phase commands, each key fingerprint read out
/// and confirmed at certification.
pub fn phases_to_3c(c: &str, target: &str) {
    ok(&["phase1", "--config", c]);
    let out = ok(&["phase2a", "--config", c]);
    let css = fingerprint_in(&out, "CSS key fingerprint");
    ok(&["phase2b", "--config", c, "--css-fingerprint", &css]);
    let out = ok(&["phase3a", "--config", c, "--target", target]);
    let csr = fingerprint_in(&out, "CSR key fingerprint");
    ok(&[
        "phase3b",
        "--config",
        c,
        "--target",
        target,
        "--csr-fingerprint",
        &csr,
    ]);
    ok(&["phase3c", "--config", c, "--target", target]);
}
