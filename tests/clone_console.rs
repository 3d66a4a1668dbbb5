//! What `clone` shows, captured from the binary: every action of every phase on standard
//! output as it happens, fingerprints and files to carry included, each line prefixed with
//! its target (or node); the same plain lines whether standard output is a pipe, a file
//! while standard error is a terminal, or a terminal with `TERM=dumb` (terminals through
//! `script`, util-linux, which gives the command a pseudo-terminal); `-q`; and dual control
//! inside `clone`: it stops (exit 7) with the exact commands, which run as printed, and a
//! rerun finishes.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::*;

/// Every action line the journal's `phase-done` notes record, as `clone` prints it:
/// (target or node, phase, node, action).
fn journal_actions(dir: &Path) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(dir.join("ceremony/journal.jsonl")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if r["event"] != "phase-done" {
            continue;
        }
        let phase = r["phase"].as_str().unwrap().to_string();
        let node = r["node"].as_str().unwrap().to_string();
        for a in r["detail"]["actions"].as_array().unwrap() {
            let a = a.as_str().unwrap().to_string();
            // 3b and 3c run on the SA node and the source for a target, which the action names.
            let scope = match phase.as_str() {
                "3b" | "3c" => ["target1", "target2"]
                    .into_iter()
                    .find(|t| a.contains(t))
                    .unwrap_or_else(|| panic!("{phase} {a}"))
                    .to_string(),
                _ => node.clone(),
            };
            out.push((scope, phase.clone(), node.clone(), a));
        }
    }
    out
}

/// The line `clone` prints for an action.
fn printed(scope: &str, phase: &str, node: &str, text: &str) -> String {
    let on = if scope == node {
        String::new()
    } else {
        format!("on {node}: ")
    };
    format!("{scope:<7}  {phase:<3} {on}{text}")
}

/// Every action of the journal is a line of `out`, and the lines the operator needs are
/// there: the SA, CSS and CSR fingerprints, and the files to carry, with their prefixes.
fn check_every_action_shown(dir: &Path, out: &str) {
    let actions = journal_actions(dir);
    assert!(actions.len() > 40, "{actions:?}");
    for (scope, phase, node, text) in &actions {
        let line = printed(scope, phase, node, text);
        assert!(
            out.lines().any(|l| l == line),
            "missing line {line:?} in:\n{out}"
        );
    }
    let lines: Vec<&str> = out.lines().collect();
    let has = |prefix: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(text))
    };
    assert!(has(
        "sa       1   ",
        "SA key fingerprint (compare in person): "
    ));
    assert!(has(
        "source   2a  ",
        "CSS key fingerprint (read it to the SA operator for phase 2b): "
    ));
    for t in ["target1", "target2"] {
        assert!(has(
            &format!("{t}  3a  "),
            "CSR key fingerprint (read it to the SA operator for phase 3b): "
        ));
        assert!(has(
            &format!("{t}  3b  on sa: "),
            &format!("CSR key fingerprint of {t} confirmed: ")
        ));
        assert!(has(
            &format!("{t}  3a  "),
            &format!("carry ./ceremony/{t}.csr.db -> sa (phase 3b certifies the CSR key)")
        ));
        assert!(has(
            &format!("{t}  3c  on source: "),
            &format!("carry ./ceremony/shares -> {t} (phase 3d installs the files {t}.*.share)")
        ));
        assert!(has(&format!("{t}  3d  "), "SYM: SET; CURRENT = "));
    }
    assert!(has(
        "sa       1   ",
        "carry ./ceremony/sa.db -> source (phase 2a installs the SA key)"
    ));
    // The fingerprint the operator reads out is the key's: 3b confirms the one 3a showed.
    for t in ["target1", "target2"] {
        let shown = fingerprint_in(
            &lines
                .iter()
                .map(|l| l.trim_start_matches(&format!("{t}  3a  ")))
                .collect::<Vec<_>>()
                .join("\n"),
            "CSR key fingerprint",
        );
        assert!(
            out.contains(&format!("CSR key fingerprint of {t} confirmed: {shown}")),
            "{out}"
        );
    }
}

/// A rehearsal of two targets, run from its directory (the ceremony directory is
/// `./ceremony`, as the lines show it).
fn two_targets(dir: &Path, extra: &str) -> String {
    let body = sim_plan_with(&dir.join("cards"), "ceremony", 2, extra);
    write_plan(dir, &body);
    sim_init(&dir.join("mkclone.toml"));
    "mkclone.toml".to_string()
}

fn clone_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkclone"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `sh -c command` in `dir` on a pseudo-terminal (util-linux `script`); what the terminal
/// showed, and the exit code.
fn on_a_terminal(dir: &Path, term: &str, command: &str) -> (String, Option<i32>) {
    let out = Command::new("script")
        .current_dir(dir)
        .env("TERM", term)
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `script` (util-linux, Debian package bsdutils) to give mkclone a terminal: {e}"
            )
        });
    (
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
        out.status.code(),
    )
}

/// A fresh two-target rehearsal in `dir`, then `mkclone clone --config … <more>` run there
/// on a terminal of type `term`: what the terminal showed (the command succeeded).
fn clone_on_a_terminal(dir: &Path, term: &str, more: &str) -> String {
    let cfg = two_targets(dir, "");
    let exe = env!("CARGO_BIN_EXE_mkclone");
    let (terminal, code) = on_a_terminal(dir, term, &format!("{exe} clone --config {cfg}{more}"));
    assert_eq!(code, Some(0), "{terminal}");
    terminal
}

#[test]
fn every_action_is_a_plain_line_on_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_targets(dir.path(), "");
    let out = clone_in(dir.path(), &["clone", "--config", &cfg]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    check_every_action_shown(dir.path(), &stdout);
    // No bar, no terminal control sequences, on a pipe.
    assert!(!stdout.contains('\x1b'), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("phases"));
    assert_eq!(stdout.matches("= source").count(), 2, "{stdout}");
}

#[test]
fn standard_output_redirected_from_a_terminal_gets_every_line_and_the_bar_stays_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = clone_on_a_terminal(dir.path(), "xterm", " > out.txt");
    let stdout = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    check_every_action_shown(dir.path(), &stdout);
    assert!(!stdout.contains('\x1b'), "{stdout}");
    // The progress bar went to the terminal (standard error), naming what runs.
    assert!(terminal.contains("/11 phases"), "{terminal}");
    assert!(terminal.contains("running: "), "{terminal}");
}

#[test]
fn a_dumb_terminal_gets_every_line_and_no_bar() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = clone_on_a_terminal(dir.path(), "dumb", "");
    check_every_action_shown(dir.path(), &terminal);
    assert!(
        !terminal.contains("phases  "),
        "no bar on a dumb terminal: {terminal}"
    );
    assert!(!terminal.contains("\x1b["), "{terminal}");
}

#[test]
fn a_terminal_gets_every_line_with_the_bar_suspended_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = clone_on_a_terminal(dir.path(), "xterm", " --jobs 2");
    // The bar is cleared before each line (ESC [2K) and drawn again after: stripped of
    // the bar's redraws, every line is whole.
    let plain: String = terminal
        .split('\n')
        .map(|l| {
            let l = l.rsplit("\x1b[2K").next().unwrap_or(l);
            if l.contains(" phases  ") { "" } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n");
    check_every_action_shown(dir.path(), &plain);
}

#[test]
fn quiet_prints_the_result_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_targets(dir.path(), "");
    let out = clone_in(dir.path(), &["clone", "--config", &cfg, "-q"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("fingerprint"), "{stdout}");
    assert!(!stdout.contains("carry"), "{stdout}");
    assert!(!stdout.contains("  3a  "), "{stdout}");
    assert_eq!(stdout.matches("= source").count(), 2, "{stdout}");
    assert!(stdout.contains("final hash"), "{stdout}");
}

/// The commands a dual-control stop printed, for `node`, in order (hash, key).
fn stop_commands(out: &str, node: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("mkclone register-sa-") && l.contains(&format!(" --node {node} "))
        })
        .map(str::to_string)
        .collect()
}

/// Run a printed command through the shell, the operator's name in place of the
/// placeholder.
fn run_printed(dir: &Path, command: &str, placeholder: &str, name: &str) -> Output {
    assert!(
        command.contains(&format!("--operator {placeholder}")),
        "{command}"
    );
    let command = command
        .replacen(
            "mkclone ",
            &format!("{} ", env!("CARGO_BIN_EXE_mkclone")),
            1,
        )
        .replace(
            &format!("--operator {placeholder}"),
            &format!("--operator {name}"),
        );
    Command::new("sh")
        .current_dir(dir)
        .args(["-c", &command])
        .output()
        .unwrap()
}

#[test]
fn dual_control_stops_with_the_commands_and_a_rerun_after_them_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_targets(dir.path(), "dual_control = true");

    // Carol runs the ceremony, and reruns the same command.
    let carol = || {
        clone_in(
            dir.path(),
            &["clone", "--config", &cfg, "--operator", "carol"],
        )
    };
    // The `step`-th command printed for each node (`placeholder` the operator to fill in),
    // run by `operator`: each succeeds.
    let everywhere = |printed: &str, step: usize, placeholder: &str, operator: &str| {
        for node in ["source", "target1", "target2"] {
            let command = &stop_commands(printed, node)[step];
            let o = run_printed(dir.path(), command, placeholder, operator);
            assert!(o.status.success(), "{}", text(&o));
        }
    };
    let out = carol();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("stopped for dual control") && stderr.contains("run the same command"),
        "{stderr}"
    );
    // Everything one person may do is done (and shown), no share left the source.
    for t in ["target1", "target2"] {
        assert!(stdout.contains(&format!("{t}  3b  on sa: CSR key of {t} certified by SA")));
    }
    assert!(!stdout.contains("  3c  "), "{stdout}");
    assert!(
        !dir.path()
            .join("ceremony/shares/target1.sym.1.share")
            .exists()
    );
    // The fingerprint to compare, and the anchor in every command (the configuration
    // does not pin it).
    let fingerprint = sa_pin_line(&stdout)
        .trim_start_matches("sa_fingerprint = \"")
        .trim_end_matches('"')
        .to_string();
    assert!(
        stdout.contains(&format!(
            "Compare in person, with the SA operator, the SA key fingerprint each command shows: {fingerprint}"
        )),
        "{stdout}"
    );
    for node in ["source", "target1", "target2"] {
        let commands = stop_commands(&stdout, node);
        assert_eq!(
            commands,
            [
                format!(
                    "mkclone register-sa-hash --config {cfg} --node {node} --operator NAME --sa-fingerprint \"{fingerprint}\""
                ),
                format!(
                    "mkclone register-sa-key --config {cfg} --node {node} --operator OTHER-NAME --sa-fingerprint \"{fingerprint}\""
                ),
            ],
            "{stdout}"
        );
    }

    // Alice registers the hashes; a rerun still stops, now naming only the key steps and
    // who may not do them.
    everywhere(&stdout, 0, "NAME", "alice");
    let again = carol();
    let again_out = String::from_utf8_lossy(&again.stdout).to_string();
    assert_eq!(again.status.code(), Some(7), "{}", text(&again));
    for node in ["source", "target1", "target2"] {
        assert!(
            again_out.contains(&format!(
                "  {node}:\n    (the hash is registered by alice; now someone other than alice registers the key:)\n    mkclone register-sa-key"
            )),
            "{again_out}"
        );
        assert_eq!(stop_commands(&again_out, node).len(), 1, "{again_out}");
    }
    // Alice may not register the key too.
    let key = &stop_commands(&again_out, "source")[0];
    let refused = run_printed(dir.path(), key, "OTHER-NAME", "alice");
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("someone else"),
        "{}",
        text(&refused)
    );
    everywhere(&again_out, 0, "OTHER-NAME", "bob");

    // Both registrations made everywhere: the same command finishes the ceremony.
    let done = carol();
    let done_out = text(&done);
    assert!(done.status.success(), "{done_out}");
    assert_eq!(done_out.matches("= source").count(), 2, "{done_out}");
    check_clone_finished(dir.path().join(&cfg).to_str().unwrap(), 2);
}

#[test]
fn dual_control_json_names_what_waits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_targets(dir.path(), "dual_control = true");
    let out = clone_in(dir.path(), &["clone", "--config", &cfg, "--json"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pending: Vec<&str> = doc["waiting"]["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["node"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["source", "target1", "target2"]);
    assert_eq!(
        doc["waiting"]["sa_fingerprint"]
            .as_str()
            .unwrap()
            .replace(' ', "")
            .len(),
        64
    );
}
