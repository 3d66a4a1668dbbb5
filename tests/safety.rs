//! Ceremony safety, end to end on simulated cards: dry runs (healthy and with every kind of
//! problem, nothing changed), the overwrite guard, abort at several points, identity
//! pinning.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

use mkclone::backend::{Backend, CloneableKind, Eid};
use mkclone::cca::Transport;
use mkclone::cca::verbs::{MkAction, Request};
use mkclone::sim::{Apqn, SimBus};

struct Node<'a> {
    name: &'a str,
    card: u8,
    eid: &'a str,
    extra: &'a str,
}

fn node(name: &str, card: u8) -> Node<'_> {
    Node {
        name,
        card,
        eid: "",
        extra: "",
    }
}

fn write_config(dir: &Path, targets: &[&str], nodes: &[Node], plan_extra: &str) -> PathBuf {
    let cards = dir.join("cards");
    let mut s = format!(
        "[ceremony]\nid = \"safety\"\nsa = \"sa\"\nsource = \"source\"\ntargets = [{}]\n\
         master_keys = [\"sym\", \"asym\"]\nthreshold = 2\nshares = 3\ndual_control = false\n{plan_extra}\n",
        targets
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for n in nodes {
        let eid = if n.eid.is_empty() {
            n.name.to_uppercase()
        } else {
            n.eid.to_string()
        };
        s.push_str(&format!(
            "\n[nodes.{}]\nbackend = \"sim\"\nsim_dir = \"{}\"\napqn = \"{:02x}.000d\"\neid = \"{eid}\"\n{}\n",
            n.name,
            cards.display(),
            n.card,
            n.extra
        ));
    }
    let path = dir.join("mkclone.toml");
    std::fs::write(&path, s).unwrap();
    path
}

/// Everything a run could change: every card file and every ceremony file, by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["cards", "ceremony", "ceremony/shares"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries {
                let p = e.unwrap().path();
                if p.is_file() && !p.to_string_lossy().ends_with(".lock") {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

fn current(cfg: &Path, node: &str, kind: usize) -> serde_json::Value {
    node_status(cfg.to_str().unwrap(), node)["status"]["registers"][kind].clone()
}

/// The plan sa / source / t1 written in `dir`, its cards created and the source's master
/// keys loaded; the configuration's path.
fn one_target(dir: &Path) -> PathBuf {
    let cfg = write_config(
        dir,
        &["t1"],
        &[node("sa", 1), node("source", 2), node("t1", 3)],
        "",
    );
    sim_init(&cfg);
    cfg
}

#[test]
fn a_dry_run_of_a_healthy_plan_finds_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_target(dir.path());
    let c = cfg.to_str().unwrap();
    let before = snapshot(dir.path());
    let out = ok(&["clone", "--config", c, "--dry-run"]);
    assert!(out.contains("no problem found"), "{out}");
    assert_eq!(snapshot(dir.path()), before, "nothing changed");
    assert!(
        !dir.path().join("ceremony").exists(),
        "not even the ceremony directory was created"
    );
    // Each phase command has it too.
    let out = ok(&["phase3d", "--config", c, "--target", "t1", "--dry-run"]);
    assert!(out.contains("no problem found"), "{out}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_dry_run_reports_every_kind_of_problem_at_once_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        node("sa", 1),
        node("source", 2),
        // A target whose card is not there (unreachable).
        node("t_missing", 3),
        // A target whose card reports another serial than the pinned one.
        Node {
            name: "t_pinned",
            card: 4,
            eid: "",
            extra: "expect_serial = \"NOT-IT\"",
        },
        // A target that already carries another EID.
        node("t_eid", 5),
        // A target with another key in NEW.
        node("t_new", 6),
        // A target with another valid key in CURRENT (the overwrite guard).
        node("t_current", 7),
    ];
    let targets = ["t_missing", "t_pinned", "t_eid", "t_new", "t_current"];
    let cfg = write_config(dir.path(), &targets, &nodes, "");
    let c = cfg.to_str().unwrap();
    // Cards for everyone but t_missing; the source has NO master key (nothing to clone).
    ok(&["sim", "init", "--config", c]);
    std::fs::remove_file(dir.path().join("cards/card-03.000d.json")).unwrap();
    let bus = SimBus::new(dir.path().join("cards"));
    let card = |n: u8| bus.open_card(Apqn::new(n, 0x0d).unwrap()).unwrap();
    // t_eid: another EID on the card.
    card(5).set_eid(&Eid::new("SOMEONE ELSE").unwrap()).unwrap();
    // t_new: a random key left in NEW (RANDOM without SET).
    let mut t_new = card(6);
    let request = Request::MasterKey {
        action: MkAction::Random,
        kind: CloneableKind::Sym,
    };
    t_new
        .transport_mut()
        .send(&request.to_message(0x0d, 4096).unwrap(), 4096, false)
        .unwrap();
    // t_current: a valid CURRENT of its own.
    card(7).load_random_master_key(CloneableKind::Sym).unwrap();
    // A corrupt sa.db in the ceremony directory.
    std::fs::create_dir_all(dir.path().join("ceremony")).unwrap();
    std::fs::write(dir.path().join("ceremony/sa.db"), b"{ not a ceremony file").unwrap();

    let before = snapshot(dir.path());
    let out = mkclone(&["clone", "--config", c, "--dry-run"]);
    let t = exit_code(&out, 4);
    for expected in [
        "t_missing: unreachable",
        "t_pinned: the serial number",
        "NOT-IT",
        "t_eid: the EID is \"SOMEONE ELSE\"",
        "source: the SYM CURRENT register is not valid",
        "t_new: the SYM NEW register holds another key",
        "sa.db",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
    // The same problems for a script: each named by `kind`, with the register, master
    // key and file it is about.
    let out = mkclone(&["clone", "--config", c, "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = doc["problems"].as_array().unwrap();
    let has = |node: &str, kind: &str| {
        problems
            .iter()
            .find(|p| p["node"] == node && p["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} problem on {node}: {doc:#}"))
    };
    has("t_missing", "node-unavailable");
    has("t_pinned", "identity-mismatch");
    has("t_eid", "identity-mismatch");
    let p = has("source", "register-not-valid");
    assert_eq!(
        (&p["master_key"], &p["register"]),
        (&"sym".into(), &"current".into())
    );
    let p = has("t_new", "new-register-occupied");
    assert_eq!(
        (&p["master_key"], &p["register"]),
        (&"sym".into(), &"new".into())
    );
    let p = has("sa", "file");
    assert!(p["file"].as_str().unwrap().ends_with("sa.db"), "{p}");
    assert_eq!(snapshot(dir.path()), before, "nothing changed");
}

#[test]
fn the_overwrite_guard_refuses_set_over_a_different_current_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_target(dir.path());
    let c = cfg.to_str().unwrap();
    // t1 has a valid CURRENT key of its own.
    let bus = SimBus::new(dir.path().join("cards"));
    let mut t1 = bus.open_card(Apqn::new(3, 0x0d).unwrap()).unwrap();
    for kind in CloneableKind::ALL {
        t1.load_random_master_key(kind).unwrap();
    }
    let own_current = current(&cfg, "t1", 0)["current_patterns"].clone();

    let refused = mkclone(&["clone", "--config", c]);
    exit_code(&refused, 4);
    assert!(
        text(&refused).contains("re-enciphered"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        current(&cfg, "t1", 0)["current_patterns"],
        own_current,
        "CURRENT untouched"
    );

    ok(&["clone", "--config", c, "--replace-current"]);
    let after = current(&cfg, "t1", 0);
    assert_eq!(
        after["old_patterns"], own_current,
        "the previous CURRENT is now OLD"
    );
    assert_eq!(
        after["current_patterns"],
        current(&cfg, "source", 0)["current_patterns"]
    );
}

/// The share bundles in the ceremony directory, by file name.
fn bundle_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("ceremony/shares")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".share"))
        .collect();
    names.sort();
    names
}

/// Of two targets, t2 holds a valid key of its own. `--check-all-first`: the preflight of
/// every target refuses before any 3c starts, and no share is made. By default each target
/// is checked by its 3c: t2's 3c fails on its checks and t2 gets no share.
#[test]
fn a_target_whose_checks_fail_gets_no_share_with_or_without_check_all_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &["t1", "t2"],
        &[
            node("sa", 1),
            node("source", 2),
            node("t1", 3),
            node("t2", 4),
        ],
        "",
    );
    sim_init(&cfg);
    let c = cfg.to_str().unwrap();
    let bus = SimBus::new(dir.path().join("cards"));
    let mut t2 = bus.open_card(Apqn::new(4, 0x0d).unwrap()).unwrap();
    for kind in CloneableKind::ALL {
        t2.load_random_master_key(kind).unwrap();
    }
    let own_current = current(&cfg, "t2", 0)["current_patterns"].clone();
    let is_3c = |line: &&str| line.split_whitespace().nth(1) == Some("3c");

    let all_first = mkclone(&["clone", "--config", c, "--check-all-first"]);
    exit_code(&all_first, 4);
    let out = text(&all_first);
    assert!(out.contains("re-enciphered"), "{out}");
    assert_eq!(
        out.lines().filter(is_3c).count(),
        0,
        "no 3c started:\n{out}"
    );
    assert_eq!(bundle_names(dir.path()), Vec::<String>::new());

    let each = mkclone(&["clone", "--config", c]);
    exit_code(&each, 4);
    let out = text(&each);
    assert!(
        out.lines()
            .filter(is_3c)
            .any(|l| l.starts_with("t2 ") && l.contains("FAILED: the preflight")),
        "t2's 3c refused by its checks:\n{out}"
    );
    assert!(out.contains("re-enciphered"), "{out}");
    let names = bundle_names(dir.path());
    assert!(names.iter().all(|n| n.starts_with("t1.")), "{names:?}");
    assert_eq!(
        current(&cfg, "t2", 0)["current_patterns"],
        own_current,
        "CURRENT untouched"
    );
}

#[test]
fn abort_at_several_points_does_only_what_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_target(dir.path());
    let c = cfg.to_str().unwrap();
    phases_to_3c(c, "t1");
    let status = |n: &str| node_status(c, n);
    // Nothing asked: refused.
    let none = mkclone(&["abort", "--config", c]);
    assert_eq!(
        none.status.code(),
        Some(2),
        "a usage error: {}",
        text(&none)
    );
    assert!(text(&none).contains("no step was asked"), "{}", text(&none));

    // Interrupt 3d after its first share is installed (a real abort of the process): its
    // records are run-start, phase-start, node-status, the install's intent and outcome.
    let killed = Command::new(env!("CARGO_BIN_EXE_mkclone"))
        .args(["phase3d", "--config", c, "--target", "t1"])
        .env("MKCLONE_TEST_ONLY_ABORT_AFTER_JOURNAL_RECORD", "5")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let tables = status("t1")["shares"]["tables"].clone();
    assert!(
        tables.to_string().contains("received"),
        "a share was received: {tables}"
    );

    // Clear NEW only: the keys and files stay.
    ok(&["abort", "--config", c, "--clear-new", "--operator", "frank"]);
    let t1 = status("t1");
    assert!(
        !t1["shares"]["tables"].to_string().contains("\"received\""),
        "{}",
        t1["shares"]
    );
    assert_eq!(
        t1["retained_keys"].as_array().unwrap().len(),
        1,
        "the CSR key stays"
    );
    assert!(dir.path().join("ceremony/shares/t1.sym.1.share").exists());

    // Erase the files only.
    ok(&["abort", "--config", c, "--erase-files"]);
    assert!(!dir.path().join("ceremony/shares/t1.sym.1.share").exists());
    assert!(!dir.path().join("ceremony/t1.csr.db").exists());
    assert_eq!(status("t1")["retained_keys"].as_array().unwrap().len(), 1);

    // Delete the keys and unregister the SA key.
    ok(&["abort", "--config", c, "--delete-keys", "--unregister-sa"]);
    assert!(status("t1")["retained_keys"].as_array().unwrap().is_empty());
    assert!(
        status("source")["retained_keys"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        status("source")["registrations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        status("sa")["retained_keys"].as_array().unwrap().len(),
        1,
        "the SA key was not asked for"
    );
    // Every step is in the journal, with the operator where given.
    let journal = std::fs::read_to_string(dir.path().join("ceremony/journal.jsonl")).unwrap();
    for event in [
        "clear-new",
        "file-erased",
        "delete-retained-key",
        "unregister-sa-key",
    ] {
        assert!(
            journal.contains(&format!("\"event\":\"{event}\"")),
            "{event} not journaled"
        );
    }
    assert!(journal.contains("\"operator\":\"frank\""));
}

#[test]
fn a_pinned_identity_mismatch_stops_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        Node {
            name: "sa",
            card: 1,
            eid: "",
            extra: "expect_serial = \"WRONG01\"",
        },
        node("source", 2),
        node("t1", 3),
    ];
    let cfg = write_config(dir.path(), &["t1"], &nodes, "");
    let c = cfg.to_str().unwrap();
    ok(&["sim", "init", "--config", c, "--load-source-keys"]);
    let before = snapshot(dir.path());
    let out = mkclone(&["clone", "--config", c]);
    exit_code(&out, 4);
    let t = text(&out);
    assert!(
        t.contains("WRONG01") && t.contains("SIM0100D"),
        "names both values: {t}"
    );
    assert_eq!(snapshot(dir.path()), before);
    assert!(!dir.path().join("ceremony").exists(), "nothing written");
    let out = mkclone(&["phase1", "--config", c]);
    assert_eq!(out.status.code(), Some(4));
    assert!(!dir.path().join("ceremony").exists());
}
