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

/// The `sa_fingerprint = "…"` line phase 1 printed.
pub fn sa_pin_line(out: &str) -> String {
    let at = out
        .find("sa_fingerprint = \"")
        .unwrap_or_else(|| panic!("phase 1 printed no sa_fingerprint line:\n{out}"));
    let open = "sa_fingerprint = \"".len();
    let close = out[at + open..].find('"').unwrap();
    out[at..at + open + close + 1].to_string()
}

/// Pin the SA key in a configuration file: the line goes into its `[ceremony]` table, as
/// an operator adds it on every server after phase 1.
pub fn pin_sa(config: &std::path::Path, line: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("[ceremony]\n"), "{text}");
    std::fs::write(
        config,
        text.replacen("[ceremony]\n", &format!("[ceremony]\n{line}\n"), 1),
    )
    .unwrap();
}

/// Phases 1 to 3c for one target, as the per-phase commands, each key fingerprint read out
/// and confirmed at certification.
pub fn phases_to_3c(c: &str, target: &str) {
    let out = ok(&["phase1", "--config", c]);
    pin_sa(std::path::Path::new(c), &sa_pin_line(&out));
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
