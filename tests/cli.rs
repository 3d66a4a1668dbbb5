//! End-to-end tests of the `mkclone` binary on simulated cards: `clone` from a config,
//! the per-phase flow as separate processes carrying files between "servers", real kills
//! followed by a rerun, tampered files, and configuration errors.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

fn current(cfg: &Path, node: &str, kind: usize) -> serde_json::Value {
    node_status(cfg.to_str().unwrap(), node)["status"]["registers"][kind]["current_patterns"]
        .clone()
}

#[test]
fn clone_from_a_config_clones_into_every_target() {
    let (dir, cfg) = fresh_rehearsal(2);
    let c = cfg.to_str().unwrap();
    let out = ok(&["clone", "--config", c]);
    assert_eq!(out.matches("= source").count(), 2, "{out}");
    assert!(out.contains("REHEARSAL"), "{out}");
    for kind in 0..2 {
        let source = current(&cfg, "source", kind);
        assert!(source.as_array().is_some_and(|a| !a.is_empty()));
        assert_eq!(current(&cfg, "target1", kind), source);
        assert_eq!(current(&cfg, "target2", kind), source);
    }
    // Running it again finds everything done and changes nothing.
    let again = mkclone(&["clone", "--config", c, "--json"]);
    exit_code(&again, 0);
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(
        summary["journal_head"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    let status = ok(&["status", "--config", c, "target1"]);
    assert!(
        status.contains("MKCLONE.") && status.contains("KM-ONLY CLONE"),
        "{status}"
    );
    // The bundles hold shares: owner only.
    use std::os::unix::fs::PermissionsExt;
    let shares = dir.path().join("ceremony/shares");
    let bundle = std::fs::read_dir(&shares)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Copy `name` (a file or directory) from one server's ceremony directory to another's.
fn carry(from: &Path, to: &Path, name: &str) {
    let src = from.join("ceremony").join(name);
    let dst = to.join("ceremony").join(name);
    if src.is_dir() {
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    } else {
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, dst).unwrap();
    }
}

#[test]
fn the_per_phase_flow_runs_as_separate_processes_on_separate_servers() {
    let dir = tempfile::tempdir().unwrap();
    let cards = dir.path().join("cards");
    let servers: Vec<PathBuf> = ["sa-server", "source-server", "target-server"]
        .iter()
        .map(|s| dir.path().join(s))
        .collect();
    let cfgs: Vec<PathBuf> = servers
        .iter()
        .map(|s| {
            write_plan(
                s,
                &sim_plan_with(&cards, "ceremony", 1, "dual_control = true"),
            )
        })
        .collect();
    let (sa, src, tgt) = (
        cfgs[0].to_str().unwrap(),
        cfgs[1].to_str().unwrap(),
        cfgs[2].to_str().unwrap(),
    );
    ok(&["sim", "init", "--config", sa, "--load-source-keys"]);

    let out = ok(&["phase1", "--config", sa]);
    assert!(
        out.contains("Next, carry") && out.contains("sa.db"),
        "{out}"
    );
    carry(&servers[0], &servers[1], "sa.db");
    carry(&servers[0], &servers[2], "sa.db");
    // Every server pins the SA key phase 1 printed; without it, 2a refuses.
    let unpinned = mkclone(&["phase2a", "--config", src]);
    assert!(!unpinned.status.success());
    assert!(
        text(&unpinned).contains("sa_fingerprint") && text(&unpinned).contains("--sa-fingerprint"),
        "{}",
        text(&unpinned)
    );
    for cfg in &cfgs {
        pin_sa(cfg, &sa_pin_line(&out));
    }
    let out = ok(&["phase2a", "--config", src, "--operator", "carol"]);
    let css = fingerprint_in(&out, "CSS key fingerprint");
    assert!(out.contains("dual control"), "{out}");
    // Dual control on the source: the hash by one person, the key by another.
    let same = mkclone(&register("register-sa-hash", src, "source", "alice"));
    assert!(same.status.success(), "{}", text(&same));
    assert!(text(&same).contains("fingerprint"), "{}", text(&same));
    let refused = mkclone(&register("register-sa-key", src, "source", "alice"));
    assert!(
        !refused.status.success(),
        "the same person may not register both"
    );
    assert!(
        text(&refused).contains("someone else"),
        "{}",
        text(&refused)
    );
    ok(&register("register-sa-key", src, "source", "bob"));
    carry(&servers[1], &servers[0], "sa.db");
    // Without the fingerprint read out from the source, the SA refuses to certify.
    let unconfirmed = mkclone(&["phase2b", "--config", sa]);
    assert!(!unconfirmed.status.success());
    assert!(
        text(&unconfirmed).contains("--css-fingerprint"),
        "{}",
        text(&unconfirmed)
    );
    ok(&["phase2b", "--config", sa, "--css-fingerprint", &css]);
    carry(&servers[0], &servers[1], "sa.db");
    carry(&servers[0], &servers[2], "sa.db");
    let out = ok(&["phase3a", "--config", tgt, "--target", "target1"]);
    let csr = fingerprint_in(&out, "CSR key fingerprint");
    ok(&register("register-sa-hash", tgt, "target1", "dave"));
    ok(&register("register-sa-key", tgt, "target1", "erin"));
    carry(&servers[2], &servers[0], "target1.csr.db");
    // A fingerprint that is not the carried key's (a swapped csr.db) is refused.
    let wrong = mkclone(&phase3b(sa, "target1", "0123456789ABCDEF"));
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("swapped"), "{}", text(&wrong));
    ok(&phase3b(sa, "target1", &csr));
    carry(&servers[0], &servers[1], "target1.csr.db");
    // 3d before the shares arrive: a preflight refusal, nothing changed.
    let early = mkclone(&["phase3d", "--config", tgt, "--target", "target1"]);
    exit_code(&early, 4);
    assert!(
        text(&early).contains("run phase 3c on the source"),
        "{}",
        text(&early)
    );
    // A copy of the source's journal as it stood before 3c (for the report's checks).
    let source_before_3c = dir.path().join("source-journal-before-3c.jsonl");
    std::fs::copy(servers[1].join("ceremony/journal.jsonl"), &source_before_3c).unwrap();
    ok(&["phase3c", "--config", src, "--target", "target1"]);
    carry(&servers[1], &servers[2], "shares");
    let out = ok(&["phase3d", "--config", tgt, "--target", "target1"]);
    assert!(out.contains("SET"), "{out}");
    for kind in 0..2 {
        assert_eq!(
            current(&cfgs[2], "target1", kind),
            current(&cfgs[1], "source", kind)
        );
    }
    // The source's journal names who registered what.
    let journal = std::fs::read_to_string(servers[1].join("ceremony/journal.jsonl")).unwrap();
    assert!(
        journal
            .lines()
            .any(|l| l.contains("\"register-sa-hash\"") && l.contains("\"operator\":\"alice\""))
    );
    assert!(
        journal
            .lines()
            .any(|l| l.contains("\"register-sa-key\"") && l.contains("\"operator\":\"bob\""))
    );
    // Each server journaled its own phases.
    for s in &servers {
        let journal = std::fs::read_to_string(s.join("ceremony/journal.jsonl")).unwrap();
        assert!(journal.lines().count() > 3, "{}", s.display());
        assert!(journal.contains("\"rehearsal\":true"));
    }
    the_journals_of_every_server_make_one_record(&servers, tgt, &source_before_3c);
}

/// After the per-phase flow above: on the target server, `report --journal` merges the SA's
/// and the source's journals with its own into one complete record, and refuses journals
/// that do not make one (each refusal names the journal and the record).
fn the_journals_of_every_server_make_one_record(servers: &[PathBuf], tgt: &str, old: &Path) {
    let journal = |i: usize| servers[i].join("ceremony/journal.jsonl");
    let (sa_j, src_j) = (journal(0), journal(1));
    let report = |journals: &[&Path]| {
        let mut args = vec!["report", "--config", tgt, "--json"];
        for j in journals {
            args.extend(["--journal", j.to_str().unwrap()]);
        }
        mkclone(&args)
    };

    // Alone, the target's journal is not the whole ceremony.
    let alone = report(&[]);
    assert_eq!(alone.status.code(), Some(5), "{}", text(&alone));

    // Merged: complete (the consumed files and registrations are the open items).
    let out = report(&[&sa_j, &src_j]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["complete"], true, "{:#}", v["missing"]);
    let journals = v["journals"].as_array().unwrap();
    assert_eq!(journals.len(), 3);
    for (j, label) in journals.iter().zip(["A", "B", "C"]) {
        assert_eq!(j["label"], label);
        assert_eq!(j["verified"], true);
        assert_eq!(j["end_to_end"], true, "{j:#}");
        assert_eq!(j["hosts"].as_array().unwrap().len(), 1, "{j:#}");
    }
    // Every record of every journal, each journal's own order kept.
    let timeline = v["timeline"].as_array().unwrap();
    for label in ["A", "B", "C"] {
        let seqs: Vec<u64> = timeline
            .iter()
            .filter(|e| e["journal"] == label)
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{label}: {seqs:?}");
    }
    // The runs say which command ran where, with the configuration's digest.
    let commands: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_start"]["command"].as_str().unwrap())
        .collect();
    for c in [
        "phase1", "phase2a", "phase2b", "phase3a", "phase3b", "phase3c", "phase3d",
    ] {
        assert!(commands.contains(&c), "{c}: {commands:?}");
    }
    assert!(commands.contains(&"register-sa-key"), "{commands:?}");
    let digest = v["generated_by"]["config_sha256"].as_str().unwrap();
    assert_eq!(digest.len(), 64);
    // Dual control, as the source's and the target's journals recorded it.
    for (node, hash, key) in [("source", "alice", "bob"), ("target1", "dave", "erin")] {
        let g = v["sa_registrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["node"] == node)
            .unwrap();
        assert_eq!(
            (g["hash_by"].as_str(), g["key_by"].as_str()),
            (Some(hash), Some(key))
        );
        assert_eq!(g["control"], "two operators");
    }
    // The source's journal left out: each file that carries its marks says so, naming the
    // journal by its first record (the hash of its first line) and the option to give it.
    let out = report(&[&sa_j]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = std::fs::read_to_string(&src_j).unwrap();
    let first = first.lines().next().unwrap();
    let named = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(first.as_bytes()))
    };
    let not_given: Vec<&serde_json::Value> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "journal-not-given")
        .collect();
    assert!(
        not_given
            .iter()
            .any(|w| w["node"] == "source" && w["file"] == "sa.db" && w["phase"] == "2a"),
        "{not_given:#?}"
    );
    for w in &not_given {
        assert_eq!(w["node"], "source", "{w:#}");
        let what = w["what"].as_str().unwrap();
        assert!(
            what.contains(&named) && what.contains("--journal"),
            "{what}"
        );
    }

    // The page names records by journal.
    let md = exit_code(
        &mkclone(&[
            "report",
            "--config",
            tgt,
            "--journal",
            sa_j.to_str().unwrap(),
            "--journal",
            src_j.to_str().unwrap(),
        ]),
        6,
    );
    assert!(md.contains("record B14 is record 14 of journal B"), "{md}");

    let refused = |journals: &[&Path], says: &[&str]| {
        let out = report(journals);
        let t = exit_code(&out, 3);
        for s in says {
            assert!(t.contains(s), "{s}: {t}");
        }
        // No record: under --json standard output holds the error document only.
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["format"], "mkclone-error", "nothing written: {t}");
        assert_eq!(doc["exit_code"], 3, "{t}");
    };
    // The same journal twice; an older copy beside the newer.
    refused(&[&sa_j, &sa_j], &["journal C", "given twice"]);
    refused(
        &[&sa_j, &src_j, old],
        &["journal D", "older copy of journal C"],
    );
    // Alone, the older copy lacks the record the bundles name (their 3c mark).
    let records_before = std::fs::read_to_string(old).unwrap().lines().count();
    refused(
        &[&sa_j, old],
        &[
            "journal C",
            "target1.sym.1.share",
            "ran source's phases",
            &format!("ends at record {records_before}"),
        ],
    );
    // A copy changed in one line.
    let edited = servers[0].join("edited.jsonl");
    let text_of = std::fs::read_to_string(&src_j).unwrap();
    std::fs::write(
        &edited,
        text_of.replacen("\"phase\":\"2a\"", "\"phase\":\"2b\"", 1),
    )
    .unwrap();
    refused(&[&sa_j, &edited], &["edited.jsonl", "line "]);
    // A journal that is not there.
    let missing = servers[0].join("nope.jsonl");
    let out = report(&[&missing]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nope.jsonl"), "{}", text(&out));
}

#[test]
fn a_killed_clone_is_finished_by_a_rerun() {
    for k in [3u32, 17, 40, 60] {
        let (_dir, cfg) = fresh_rehearsal(1);
        let c = cfg.to_str().unwrap();
        let killed = Command::new(env!("CARGO_BIN_EXE_mkclone"))
            .args(["clone", "--config", c])
            .env(
                "MKCLONE_TEST_ONLY_ABORT_AFTER_JOURNAL_RECORD",
                k.to_string(),
            )
            .output()
            .unwrap();
        assert!(
            !killed.status.success(),
            "crash point {k} should have killed the process"
        );
        let out = ok(&["clone", "--config", c]);
        assert_eq!(
            out.matches("= source").count(),
            1,
            "after crash point {k}:\n{out}"
        );
        let keys = node_status(c, "target1")["retained_keys"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(keys, 1, "no duplicate keys after crash point {k}");
    }
}

#[test]
fn a_tampered_bundle_is_refused_and_the_target_is_unchanged() {
    let (dir, cfg) = fresh_rehearsal(1);
    let c = cfg.to_str().unwrap();
    phases_to_3c(c, "target1");
    let before = node_status(c, "target1");
    let bundle = dir.path().join("ceremony/shares/target1.sym.1.share");
    let original = std::fs::read(&bundle).unwrap();

    // One byte changed anywhere: the file's digest refuses it.
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&bundle, &bytes).unwrap();
    let out = mkclone(&["phase3d", "--config", c, "--target", "target1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("target1.sym.1.share"), "{}", text(&out));
    assert_eq!(node_status(c, "target1"), before, "the target is unchanged");
    assert_eq!(
        std::fs::read(&bundle).unwrap(),
        bytes,
        "the file is left as it was"
    );

    // A share changed by someone who also fixed the digest: the card refuses it.
    use mkclone::ceremony::dbs::{BUNDLE_FORMAT, ShareBundle, VERSION};
    let decoded = mkclone::ceremony::envelope::decode::<ShareBundle>(
        &bundle,
        &original,
        BUNDLE_FORMAT,
        VERSION,
        None,
    )
    .unwrap();
    let mut body = decoded.body;
    let mut raw = body.sealed.as_bytes().to_vec();
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    body.sealed = mkclone::backend::SealedShare::new(raw).unwrap();
    let forged =
        mkclone::ceremony::envelope::encode(BUNDLE_FORMAT, VERSION, &decoded.ceremony, true, &body)
            .unwrap();
    std::fs::write(&bundle, &forged).unwrap();
    let out = mkclone(&["phase3d", "--config", c, "--target", "target1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("share was rejected"), "{}", text(&out));
    assert_eq!(
        node_status(c, "target1")["status"],
        before["status"],
        "the target's registers are unchanged"
    );

    // With the real share back, 3d completes.
    std::fs::write(&bundle, &original).unwrap();
    ok(&["phase3d", "--config", c, "--target", "target1"]);
}

#[test]
fn a_corrupt_sa_db_is_a_clear_error_and_left_untouched() {
    let (dir, cfg) = fresh_rehearsal(1);
    let c = cfg.to_str().unwrap();
    ok(&["phase1", "--config", c]);
    let sa_db = dir.path().join("ceremony/sa.db");
    let mut bytes = std::fs::read(&sa_db).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&sa_db, &bytes).unwrap();
    let out = mkclone(&["phase2a", "--config", c]);
    exit_code(&out, 3);
    assert!(text(&out).contains("sa.db"), "{}", text(&out));
    assert_eq!(std::fs::read(&sa_db).unwrap(), bytes);
    let out = mkclone(&["phase1", "--config", c]);
    assert!(
        !out.status.success(),
        "phase 1 does not overwrite a corrupt sa.db"
    );
    assert_eq!(std::fs::read(&sa_db).unwrap(), bytes);
}

/// A missing card file names the command that makes it; a corrupt one does not (`sim init`
/// refuses to overwrite a card), and is left as it was.
#[test]
fn a_missing_card_names_sim_init_and_a_corrupt_one_does_not() {
    let (dir, cfg) = fresh_rehearsal(1);
    let c = cfg.to_str().unwrap();
    let cards: Vec<_> = std::fs::read_dir(dir.path().join("cards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(cards.len(), 3, "{cards:?}");
    let hint = "run `mkclone sim init --config";
    let target_card = |dir: &Path| {
        // The target's card: the one status of target1 reads.
        let out = ok(&["status", "--config", c, "target1", "--json"]);
        let serial = json_in(&out)["status"]["identity"]["serial"]
            .as_str()
            .unwrap()
            .to_string();
        cards
            .iter()
            .find(|p| std::fs::read_to_string(p).unwrap().contains(&serial))
            .unwrap_or_else(|| panic!("no card of {serial} in {}", dir.display()))
            .clone()
    };
    let card = target_card(dir.path());

    let saved = std::fs::read(&card).unwrap();
    std::fs::remove_file(&card).unwrap();
    let t = exit_code(&mkclone(&["status", "--config", c, "target1"]), 1);
    assert!(t.contains("does not exist") && t.contains(hint), "{t}");
    assert!(!t.contains("sim create"), "{t}");

    let corrupt = &saved[..saved.len() / 2];
    std::fs::write(&card, corrupt).unwrap();
    let t = exit_code(&mkclone(&["status", "--config", c, "target1"]), 1);
    assert!(t.contains("corrupt") && !t.contains(hint), "{t}");
    assert_eq!(std::fs::read(&card).unwrap(), corrupt);
}

/// A PIN written where its source belongs (`pin = "482913"` for `pin = { env = "VAR" }`)
/// is refused without being shown: not in the message, not in the line quoted, not in the
/// `--json` document.
#[test]
fn a_pin_written_in_the_configuration_is_refused_without_being_shown() {
    let dir = tempfile::tempdir().unwrap();
    let base = sim_plan(&dir.path().join("cards"), "ceremony", 1);
    for (i, pin) in [
        "pin = \"482913\"",
        "pin = 482913",
        "so_pin = { env = 482913 }",
    ]
    .iter()
    .enumerate()
    {
        // The SA node's block (up to its eid line) made a PKCS#11 node's.
        let start = base.find("[nodes.sa]\n").unwrap();
        let end = start + base[start..].find("eid = ").unwrap();
        let node = format!(
            "[nodes.sa]\nbackend = \"pkcs11\"\nmodule = \"/nonexistent/module.so\"\n\
             token = \"sa\"\n{pin}\n"
        );
        let body = format!("{}{node}{}", &base[..start], &base[end..]);
        let cfg = write_plan(&dir.path().join(i.to_string()), &body);
        let c = cfg.to_str().unwrap();
        for json in [false, true] {
            let mut args = vec!["worksheet", "--config", c];
            if json {
                args.push("--json");
            }
            let t = exit_code(&mkclone(&args), 3);
            assert!(
                t.contains("must be { env") && !t.contains("482913"),
                "{pin}: {t}"
            );
        }
    }
}

/// An escape sequence planted in a journal (or any file) reaches no terminal raw: the
/// messages quoting it show it escaped.
#[test]
fn an_escape_sequence_in_a_journal_reaches_no_terminal() {
    let (_dir, cfg) =
        common::phase1_with_forged_journal(&[(1, "kind", "\\u001b]0;PWNED\\u0007\\u001b[2J")]);
    let c = cfg.to_str().unwrap();
    for args in [
        &["report", "--config", c][..],
        &["phase2a", "--config", c][..],
    ] {
        let out = mkclone(args);
        assert!(!out.status.success(), "{args:?}");
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !stream.iter().any(|&b| b == 0x1b || b == 0x07),
                "{args:?}: {}",
                String::from_utf8_lossy(stream)
            );
        }
        assert!(text(&out).contains("\\u{1b}"), "{args:?}: {}", text(&out));
    }
}

/// Paths and names from the configuration reach no terminal raw in `worksheet`'s text.
#[test]
fn an_escape_sequence_in_the_configuration_reaches_no_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let body = sim_plan(&dir.path().join("cards"), "cer\\u001b[31mmony", 1);
    let cfg = write_plan(dir.path(), &body);
    let out = mkclone(&["worksheet", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !out.stdout.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(text(&out).contains("cer\\u{1b}[31mmony"), "{}", text(&out));
}

#[test]
fn configuration_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cards = dir.path().join("cards");
    let base = sim_plan(&cards, "ceremony", 1);
    // (directory, the edit of the plan, the exit code if checked, what the message names)
    let cases = [
        (
            "a",
            ("threshold = 2", "threshold = 2\ncolour = \"red\""),
            Some(3),
            &["colour", "line"][..],
        ),
        (
            "b",
            ("threshold = 2", "threshold = 4"),
            Some(3),
            &["cannot exceed n"][..],
        ),
        (
            "c",
            ("apqn = \"03.000d\"", "apqn = \"3.13\""),
            None,
            &["APQN"][..],
        ),
        (
            "d",
            (
                "backend = \"sim\"\nsim_dir",
                "backend = \"sim\"\nsimdir = 1\nsim_dir",
            ),
            None,
            &["simdir"][..],
        ),
        (
            "e",
            ("apqn = \"03.000d\"", "apqn = \"02.000d\""),
            Some(3),
            &["are the same device"][..],
        ),
        (
            "f",
            ("eid = \"TARGET1\"", "eid = \"SOURCE\""),
            Some(3),
            &["source and target1 both have the EID \"SOURCE\""][..],
        ),
    ];
    for (sub, (from, to), code, names) in cases {
        let cfg = write_plan(&dir.path().join(sub), &base.replace(from, to));
        let out = mkclone(&["clone", "--config", cfg.to_str().unwrap()]);
        if let Some(code) = code {
            exit_code(&out, code);
        }
        assert!(
            names.iter().all(|n| text(&out).contains(n)),
            "{names:?}: {}",
            text(&out)
        );
    }

    let missing = mkclone(&["clone", "--config", "/nonexistent/mkclone.toml"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(text(&missing).contains("/nonexistent/mkclone.toml"));
}
