//! Helpers shared by the end-to-end tests of the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run the binary under test.
pub fn mkclone(args: &[&str]) -> Output {
    mkclone_env(args, &[])
}

/// Run the binary under test with these environment variables set (a SoftHSM
/// configuration, a PIN variable).
pub fn mkclone_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkclone"))
        .args(args)
        .envs(env.iter().copied())
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

/// The output's text, once its exit code is checked.
#[track_caller]
pub fn exit_code(out: &Output, code: i32) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    t
}

pub fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

pub fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = mkclone_env(args, env);
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
pub fn pin_sa(config: &Path, line: &str) {
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
    pin_sa(Path::new(c), &sa_pin_line(&out));
    let out = ok(&["phase2a", "--config", c]);
    let css = fingerprint_in(&out, "CSS key fingerprint");
    ok(&["phase2b", "--config", c, "--css-fingerprint", &css]);
    let out = ok(&["phase3a", "--config", c, "--target", target]);
    let csr = fingerprint_in(&out, "CSR key fingerprint");
    ok(&phase3b(c, target, &csr));
    ok(&["phase3c", "--config", c, "--target", target]);
}

/// A plan on simulated cards in `cards`: SA card 01, source 02, targets 03.. (`targets` of
/// them), dual control off, the ceremony directory `ceremony` (relative to the config).
pub fn sim_plan(cards: &Path, ceremony: &str, targets: usize) -> String {
    sim_plan_with(cards, ceremony, targets, "")
}

/// [`sim_plan`] with `extra` lines in its `[ceremony]` table; dual control stays off
/// unless they set it.
pub fn sim_plan_with(cards: &Path, ceremony: &str, targets: usize, extra: &str) -> String {
    // One operator runs these tests: dual control off unless a test turns it on.
    let extra = if extra.contains("dual_control") {
        extra.to_string()
    } else {
        format!("dual_control = false\n{extra}")
    };
    let mut s = format!(
        "[ceremony]\nid = \"e2e\"\ndirectory = \"{ceremony}\"\nsa = \"sa\"\nsource = \"source\"\n\
         targets = [{}]\nmaster_keys = [\"sym\", \"asym\"]\nthreshold = 2\nshares = 3\n{extra}\n",
        (1..=targets)
            .map(|i| format!("\"target{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut nodes = vec![("sa".to_string(), 1), ("source".to_string(), 2)];
    nodes.extend((1..=targets).map(|i| (format!("target{i}"), 2 + i)));
    for (name, card) in nodes {
        s.push_str(&format!(
            "\n[nodes.{name}]\nbackend = \"sim\"\nsim_dir = \"{}\"\napqn = \"{card:02x}.000d\"\neid = \"{}\"\n",
            cards.display(),
            name.to_uppercase()
        ));
    }
    s
}

/// Write `body` as `dir/mkclone.toml` (creating `dir`); its path.
pub fn write_plan(dir: &Path, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("mkclone.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// The [`sim_plan`] of `targets` targets written into `dir` (cards in `dir/cards`, the
/// ceremony in `dir/ceremony`); nothing created yet. The configuration's path.
pub fn plan_in(dir: &Path, targets: usize) -> PathBuf {
    write_plan(dir, &sim_plan(&dir.join("cards"), "ceremony", targets))
}

/// `sim init --load-source-keys`: the cards of the plan's simulated nodes created, the
/// source's master keys loaded.
pub fn sim_init(config: &Path) {
    ok(&[
        "sim",
        "init",
        "--config",
        config.to_str().unwrap(),
        "--load-source-keys",
    ]);
}

/// A rehearsal in `dir`: the [`sim_plan`] of `targets` targets written, its cards created
/// and the source's master keys loaded; the configuration's path.
pub fn rehearsal(dir: &Path, targets: usize) -> PathBuf {
    let cfg = plan_in(dir, targets);
    sim_init(&cfg);
    cfg
}

/// A fresh directory with a [`rehearsal`] of `targets` targets in it, and the
/// configuration's path. The directory goes when the first is dropped.
pub fn fresh_rehearsal(targets: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rehearsal(dir.path(), targets);
    (dir, cfg)
}

/// A [`fresh_rehearsal`] of one target after phase 1, its journal forged: in each
/// `(line, field, value)`, the string value of `"field"` on that line (0-based) replaced
/// by `value`, written as it stands between the quotes (JSON escapes and all).
pub fn phase1_with_forged_journal(forged: &[(usize, &str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let (dir, cfg) = fresh_rehearsal(1);
    ok(&["phase1", "--config", cfg.to_str().unwrap()]);
    let journal = dir.path().join("ceremony/journal.jsonl");
    let original = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    for (line, field, value) in forged {
        let key = format!("\"{field}\":\"");
        let line = &mut lines[*line];
        let at = line.find(&key).expect("the field in the record") + key.len();
        let end = at + line[at..].find('"').unwrap();
        line.replace_range(at..end, value);
    }
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    (dir, cfg)
}

/// The JSON document in a command's output (after anything printed before it).
pub fn json_in(out: &str) -> serde_json::Value {
    serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap()
}

/// `mkclone report --json`, parsed: the record is written whatever the ceremony's state
/// (exit code 0 complete, 5 not complete, 6 complete with open items).
#[track_caller]
pub fn report_json(config: &str) -> serde_json::Value {
    let out = mkclone(&["report", "--config", config, "--json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 5 | 6)),
        "{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A dual-control step (`register-sa-hash` or `register-sa-key`) on `node` by `operator`.
pub fn register<'a>(
    step: &'a str,
    config: &'a str,
    node: &'a str,
    operator: &'a str,
) -> [&'a str; 7] {
    [
        step,
        "--config",
        config,
        "--node",
        node,
        "--operator",
        operator,
    ]
}

/// Phase 3b for `target`, confirming the CSR key's fingerprint.
pub fn phase3b<'a>(config: &'a str, target: &'a str, csr: &'a str) -> [&'a str; 7] {
    [
        "phase3b",
        "--config",
        config,
        "--target",
        target,
        "--csr-fingerprint",
        csr,
    ]
}

/// `mkclone status NODE --json`, parsed.
pub fn node_status(config: &str, node: &str) -> serde_json::Value {
    node_status_env(config, node, &[])
}

pub fn node_status_env(config: &str, node: &str, env: &[(&str, &str)]) -> serde_json::Value {
    json_in(&ok_env(
        &["status", "--config", config, node, "--json"],
        env,
    ))
}

/// After a finished `clone` of `targets` targets: every target's CURRENT equals the
/// source's for both kinds, and nothing was done twice (one retained key per node, one SA
/// registration on the source and each target, SET once: OLD still empty).
pub fn check_clone_finished(config: &str, targets: usize) {
    check_clone_finished_env(config, targets, &[])
}

/// [`check_clone_finished`] for nodes that need environment variables.
pub fn check_clone_finished_env(config: &str, targets: usize, env: &[(&str, &str)]) {
    let source = node_status_env(config, "source", env);
    for t in 1..=targets {
        let name = format!("target{t}");
        let target = node_status_env(config, &name, env);
        for kind in 0..2 {
            let s = &source["status"]["registers"][kind];
            let r = &target["status"]["registers"][kind];
            assert!(
                s["current_patterns"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
                "{s}"
            );
            assert_eq!(r["current_patterns"], s["current_patterns"], "{name}");
            assert_eq!(r["new"], "empty", "{name}: {r}");
            assert_eq!(r["old"], "invalid", "{name}: SET ran once: {r}");
        }
    }
    let mut names = vec!["sa".to_string(), "source".to_string()];
    names.extend((1..=targets).map(|t| format!("target{t}")));
    for name in names {
        let st = node_status_env(config, &name, env);
        assert_eq!(
            st["retained_keys"].as_array().unwrap().len(),
            1,
            "{name}: one retained key"
        );
        assert_eq!(
            st["registrations"].as_array().unwrap().len(),
            usize::from(name != "sa"),
            "{name}: registrations"
        );
    }
}

const SOFTHSM_MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

/// SoftHSM 2's PKCS#11 module.
pub fn softhsm_module() -> PathBuf {
    SOFTHSM_MODULES.iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("libsofthsm2.so not found in {SOFTHSM_MODULES:?}: install softhsm2 (scripts/test does) to run these tests")
    })
}

/// The security officer's PIN of every token [`softhsm`] makes.
pub const SOFTHSM_SO_PIN: &str = "so-pin-0000";

/// A private SoftHSM in `dir` with the given tokens, all with user PIN `pin`; the path of
/// its configuration (for SOFTHSM2_CONF).
pub fn softhsm(dir: &Path, tokens: &[&str], pin: &str) -> PathBuf {
    let tokdir = dir.join("tokens");
    std::fs::create_dir_all(&tokdir).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokdir.display()
        ),
    )
    .unwrap();
    for t in tokens {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                t,
                "--so-pin",
                SOFTHSM_SO_PIN,
                "--pin",
                pin,
            ])
            .output()
            .expect("softhsm2-util is missing: install softhsm2 (scripts/test does)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    conf
}

/// The name cargo gives mkclone's simulated CCA host library (crates/hostlib-sim).
pub const SIMULATED_CCA_LIBRARY: &str = "libmkclone_simcca.so";

/// The simulated CCA host library cargo built for this test run. mkclone's root package
/// dev-depends on crates/hostlib-sim, so cargo builds the cdylib before these tests, into
/// `<target>/<profile>/deps/` (and `<target>/<profile>/` when it was built on its own).
/// The test binary lives in that same `deps/` directory, whatever `CARGO_TARGET_DIR`,
/// profile or target triple, so the search starts from it; `deps/` first, as it is the
/// copy of this very build.
pub fn simulated_cca_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe
        .parent()
        .expect("the test binary is in <target>/<profile>/deps");
    let mut looked = Vec::new();
    for dir in [Some(deps), deps.parent()].into_iter().flatten() {
        let candidate = dir.join(SIMULATED_CCA_LIBRARY);
        if candidate.is_file() {
            return candidate;
        }
        looked.push(candidate.display().to_string());
    }
    panic!(
        "{SIMULATED_CCA_LIBRARY} (crates/hostlib-sim) was not found; looked at {looked:?}. cargo builds it \
         before mkclone's tests because the root package dev-depends on mkclone-hostlib-sim: run the tests \
         through cargo (`cargo test`), or build it with `cargo build -p mkclone-hostlib-sim` into the same \
         target directory"
    );
}
