//! `mkclone master-key random` end to end on simulated cards: a fresh source gets its
//! key, a valid CURRENT is never replaced unasked, dual control takes two persons, an open
//! request is run as made or cancelled, and a run cut short is resumed without a second
//! SET.

use std::path::Path;
use std::process::Command;

mod common;
use common::*;

/// A plan (dual control as given) whose cards exist, the source's master keys empty.
fn fresh(dir: &Path, dual_control: bool) -> String {
    let cfg = write_plan(
        dir,
        &sim_plan_with(
            &dir.join("cards"),
            "ceremony",
            1,
            &format!("dual_control = {dual_control}\n"),
        ),
    );
    let c = cfg.to_str().unwrap().to_string();
    ok(&["sim", "init", "--config", &c]);
    ok(&["phase1", "--config", &c]);
    c
}

/// The source's registers of `kind` (0 SYM, 1 ASYM).
fn registers(c: &str, kind: usize) -> serde_json::Value {
    node_status(c, "source")["status"]["registers"][kind].clone()
}

fn random(c: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["master-key", "random", "--config", c, "--node", "source"];
    args.extend_from_slice(extra);
    mkclone(&args)
}

#[test]
fn before_phase_1_the_command_says_to_run_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = plan_in(dir.path(), 1);
    let c = cfg.to_str().unwrap();
    ok(&["sim", "init", "--config", c]);
    let t = exit_code(&random(c, &[]), 1);
    assert!(t.contains("run phase 1 first"), "{t}");
    assert_eq!(registers(c, 0)["current"], "invalid", "nothing done");
    // "Nothing was done" holds for the ceremony directory too: no empty journal left for
    // a later report to show as a journal of 0 records, in either form of the command.
    let t = exit_code(&random(c, &["--cancel"]), 1);
    assert!(t.contains("run phase 1 first"), "{t}");
    let journal = dir.path().join("ceremony").join("journal.jsonl");
    assert!(
        !journal.exists(),
        "a refused command left {}",
        journal.display()
    );
}

/// The source's server has no journal before phase 2a: the sa.db carried from the SA
/// node's server brings the ceremony's nonce, and the command runs. An sa.db of another
/// ceremony is named, and leaves no journal behind.
#[test]
fn a_carried_sa_db_alone_is_enough_and_a_foreign_one_is_named() {
    let sa_server = tempfile::tempdir().unwrap();
    fresh(sa_server.path(), false);
    let plan = sim_plan_with(&sa_server.path().join("cards"), "ceremony", 1, "");
    let carry_sa_db = |server: &Path| {
        std::fs::create_dir_all(server.join("ceremony")).unwrap();
        std::fs::copy(
            sa_server.path().join("ceremony/sa.db"),
            server.join("ceremony/sa.db"),
        )
        .unwrap();
    };

    let source_server = tempfile::tempdir().unwrap();
    let cfg = write_plan(source_server.path(), &plan);
    let c = cfg.to_str().unwrap();
    carry_sa_db(source_server.path());
    let out = exit_code(&random(c, &["--operator", "alice"]), 0);
    assert!(out.contains("SYM: random key generated and set"), "{out}");
    assert_eq!(registers(c, 0)["current"], "valid");
    let journal = source_server.path().join("ceremony/journal.jsonl");
    let nonce = |journal: &Path| {
        let first = std::fs::read_to_string(journal).unwrap();
        let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        first["nonce"].as_str().unwrap().to_string()
    };
    assert_eq!(
        nonce(&journal),
        nonce(&sa_server.path().join("ceremony/journal.jsonl")),
        "the journal takes the ceremony's nonce from the carried sa.db"
    );

    let other_server = tempfile::tempdir().unwrap();
    let cfg = write_plan(
        other_server.path(),
        &plan.replace("id = \"e2e\"", "id = \"another\""),
    );
    carry_sa_db(other_server.path());
    let t = exit_code(&random(cfg.to_str().unwrap(), &[]), 3);
    assert!(t.contains("sa.db"), "{t}");
    assert!(
        !other_server.path().join("ceremony/journal.jsonl").exists(),
        "a refused command left a journal"
    );
}

#[test]
fn a_fresh_source_gets_a_key_and_a_valid_current_is_never_replaced_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let c = fresh(dir.path(), false);
    for kind in 0..2 {
        assert_eq!(registers(&c, kind)["current"], "invalid");
    }
    let out = exit_code(&random(&c, &["--operator", "alice"]), 0);
    assert!(out.contains("SYM: random key generated and set"), "{out}");
    assert!(
        out.contains("sym = \"SHA-1 "),
        "the pattern to write down: {out}"
    );
    let mut first = Vec::new();
    for kind in 0..2 {
        let r = registers(&c, kind);
        assert_eq!(r["current"], "valid", "{r}");
        assert_eq!(r["old"], "invalid", "{r}");
        first.push(r["current_patterns"].clone());
    }
    let journal = std::fs::read_to_string(dir.path().join("ceremony/journal.jsonl")).unwrap();
    assert_eq!(
        journal.matches("\"load-random-master-key\"").count(),
        4,
        "{journal}"
    );
    assert!(journal.contains("\"random-key-requested\""), "{journal}");

    // Again: refused, nothing changed.
    let t = exit_code(&random(&c, &[]), 1);
    assert!(
        t.contains("CURRENT holds a valid key") && t.contains("--replace-current"),
        "{t}"
    );
    for (kind, pattern) in first.iter().enumerate() {
        assert_eq!(&registers(&c, kind)["current_patterns"], pattern);
    }
    // Asked: the former CURRENT becomes OLD.
    let out = exit_code(&random(&c, &["--kind", "sym", "--replace-current"]), 0);
    assert!(out.contains("is OLD"), "{out}");
    let sym = registers(&c, 0);
    assert_ne!(sym["current_patterns"], first[0]);
    assert_eq!(sym["old_patterns"], first[0], "{sym}");
    assert_eq!(
        registers(&c, 1)["current_patterns"],
        first[1],
        "ASYM untouched"
    );
}

#[test]
fn under_dual_control_one_person_requests_and_another_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = fresh(dir.path(), true);
    let t = exit_code(&random(&c, &[]), 1);
    assert!(t.contains("--operator NAME"), "{t}");

    let out = exit_code(&random(&c, &["--operator", "alice"]), 0);
    assert!(out.contains("requested by alice"), "{out}");
    assert!(out.contains("--node source --operator OTHER"), "{out}");
    assert_eq!(registers(&c, 0)["current"], "invalid", "nothing sent yet");

    let t = exit_code(&random(&c, &["--operator", "alice"]), 1);
    assert!(t.contains("a second person runs it"), "{t}");
    let t = exit_code(&random(&c, &["--operator", "bob", "--kind", "sym"]), 1);
    assert!(
        t.contains("holds an open request") && t.contains("--cancel"),
        "{t}"
    );

    let json = json_in(&exit_code(&random(&c, &["--operator", "bob", "--json"]), 0));
    assert_eq!(json["format"], "mkclone-master-key-random");
    assert_eq!(json["version"], 1);
    assert_eq!(json["result"], "done");
    assert_eq!(
        json["current_patterns"].as_array().unwrap().len(),
        2,
        "{json}"
    );
    assert_eq!(
        json["current_patterns"][0]["bytes"],
        registers(&c, 0)["current_patterns"][0]["bytes"],
        "{json}"
    );
    let journal = std::fs::read_to_string(dir.path().join("ceremony/journal.jsonl")).unwrap();
    assert!(journal.contains("\"requested_by\":\"alice\""), "{journal}");
}

#[test]
fn an_open_request_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let c = fresh(dir.path(), true);
    exit_code(&random(&c, &["--operator", "alice", "--kind", "asym"]), 0);
    let out = exit_code(&random(&c, &["--operator", "carol", "--cancel"]), 0);
    assert!(out.contains("the open request is cancelled"), "{out}");
    let out = exit_code(&random(&c, &["--operator", "carol", "--cancel"]), 0);
    assert!(out.contains("no request is open on source"), "{out}");
    // A new request may now differ.
    let out = exit_code(&random(&c, &["--operator", "carol", "--kind", "sym"]), 0);
    assert!(out.contains("requested by carol"), "{out}");
}

#[test]
fn a_run_cut_short_is_resumed_without_a_second_set() {
    // Records of a run after phase 1: 1 its run-start, 2 the request, 3 SYM's intent, 4 its
    // outcome, 5 ASYM's intent, 6 its outcome. Cut after each, rerun, and the source ends
    // with both keys set once: OLD stays empty (a second SET would have moved the first key
    // there).
    for cut in 1..=5 {
        let dir = tempfile::tempdir().unwrap();
        let c = fresh(dir.path(), false);
        let killed = Command::new(env!("CARGO_BIN_EXE_mkclone"))
            .args(["master-key", "random", "--config", &c, "--node", "source"])
            .env(mkclone::ceremony::CRASH_HOOK_ENV, cut.to_string())
            .output()
            .unwrap();
        assert!(!killed.status.success(), "cut {cut}: {}", text(&killed));
        let journal = dir.path().join("ceremony/journal.jsonl");
        if cut == 4 {
            // The request reached the card, but its outcome was never written: the line
            // is lost (a crash before it reached the disk).
            let text = std::fs::read_to_string(&journal).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert!(
                lines.last().unwrap().contains("\"kind\":\"outcome\""),
                "{text}"
            );
            let kept = &lines[..lines.len() - 1];
            std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
        }
        let out = exit_code(&random(&c, &[]), 0);
        if cut == 4 {
            assert!(
                out.contains("SYM: the interrupted step took effect"),
                "{out}"
            );
        }
        for kind in 0..2 {
            let r = registers(&c, kind);
            assert_eq!(r["current"], "valid", "cut {cut}: {r}");
            assert_eq!(r["old"], "invalid", "cut {cut}: set twice: {r}");
        }
        // Complete: a further run is a new request, refused over the valid keys.
        exit_code(&random(&c, &[]), 1);
    }
}
