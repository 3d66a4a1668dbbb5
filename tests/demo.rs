//! End-to-end: the `mkclone demo` binary.

use std::process::Command;

fn mkclone() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mkclone"))
}

#[test]
fn demo_clones_into_both_targets_and_shows_the_match() {
    let out = mkclone().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("REHEARSAL"));
    for phase in [
        "phase 1 ", "phase 2a", "phase 2b", "phase 3a", "phase 3b", "phase 3c", "phase 3d",
    ] {
        assert!(text.contains(phase), "{phase} missing:\n{text}");
    }
    let matches = text.lines().filter(|l| l.ends_with("= source")).count();
    assert_eq!(matches, 2, "{text}");
    assert!(!text.contains("DIFFERS"));
}

#[test]
fn demo_json_reports_equal_current_patterns() {
    let out = mkclone().args(["demo", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "mkclone-demo");
    assert!(String::from_utf8_lossy(&out.stderr).contains("REHEARSAL"));
    assert_eq!(v["summary"]["nodes"][0]["node"], "sa");
    let nodes = v["summary"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    let current =
        |i: usize, kind: usize| nodes[i]["registers"][kind]["current_patterns"][0]["bytes"].clone();
    for kind in 0..2 {
        assert!(current(1, kind).is_string());
        assert_eq!(current(2, kind), current(1, kind));
        assert_eq!(current(3, kind), current(1, kind));
    }
}

#[test]
fn help_documents_exit_codes() {
    let out = mkclone().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes"));
    let bad = mkclone().arg("no-such-command").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
