//! The JSON contract (docs/JSON.md): every command, and every dry run, prints exactly one
//! JSON document on standard output under `--json`, with `format` "mkclone-<…>", its
//! schema `version` and the `mkclone` version, also when it fails (`mkclone-error`, the
//! exit code unchanged). The commands are those of the clap tree: a command added later
//! without a case here fails `every_command_prints_one_json_document`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

mod common;
use common::*;

/// Standard output must hold exactly one JSON document (and nothing else).
#[track_caller]
fn one_document(stdout: &[u8]) -> Value {
    let docs: Vec<Value> = serde_json::Deserializer::from_slice(stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "standard output is not JSON documents only ({e}):\n{}",
                String::from_utf8_lossy(stdout)
            )
        });
    assert_eq!(
        docs.len(),
        1,
        "standard output holds {} JSON documents:\n{}",
        docs.len(),
        String::from_utf8_lossy(stdout)
    );
    // The envelope comes first, as printed: a reader may dispatch on the first line.
    let text = String::from_utf8_lossy(stdout);
    let head: Vec<&str> = text.lines().skip(1).take(3).map(str::trim).collect();
    assert!(
        head[0].starts_with("\"format\": \"mkclone-")
            && head[1].starts_with("\"version\": ")
            && head[2].starts_with("\"mkclone\": "),
        "{text}"
    );
    docs.into_iter().next().unwrap()
}

/// The envelope every document starts with.
#[track_caller]
fn check_envelope(doc: &Value, format: &str) {
    assert_eq!(doc["format"], format, "{doc:#}");
    assert!(doc["version"].as_u64().is_some_and(|v| v >= 1), "{doc:#}");
    assert_eq!(doc["mkclone"], env!("CARGO_PKG_VERSION"), "{doc:#}");
}

/// Runs commands with `--json` and keeps the names of those it ran.
#[derive(Default)]
struct Runner {
    ran: BTreeSet<String>,
    formats: BTreeSet<String>,
}

impl Runner {
    /// Run `args` (the command's words first) with `--json`; its exit code must be one of
    /// `codes`; its standard output one document of `format`.
    #[track_caller]
    fn run(&mut self, args: &[&str], codes: &[i32], format: &str) -> Value {
        let command: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .copied()
            .collect();
        // The command's words, without a positional argument (status NODE).
        let name = match command.as_slice() {
            [first, second, ..] if ["master-key", "sim", "journal"].contains(first) => {
                format!("{first}-{second}")
            }
            [first, ..] => first.to_string(),
            [] => panic!("no command in {args:?}"),
        };
        self.ran.insert(name);
        self.formats.insert(format.to_string());
        let mut all = args.to_vec();
        all.push("--json");
        let out = mkclone(&all);
        let code = out.status.code();
        assert!(
            code.is_some_and(|c| codes.contains(&c)),
            "mkclone {all:?}: exit {code:?}, expected one of {codes:?}:\n{}",
            text(&out)
        );
        let doc = one_document(&out.stdout);
        check_envelope(&doc, format);
        if format == "mkclone-error" {
            assert_eq!(doc["exit_code"], Value::from(code.unwrap()), "{doc:#}");
        }
        doc
    }
}

/// Every leaf command of mkclone's clap tree, as `mkclone man --out` (clap_mangen, from
/// the same definitions the command line is parsed with) names their pages:
/// "status", "master-key-random", …
fn leaf_commands() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--out", dir.path().to_str().unwrap()]);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|f| {
            f.strip_prefix("mkclone-")
                .and_then(|f| f.strip_suffix(".1"))
                .map(str::to_string)
        })
        .collect();
    let leaves: BTreeSet<String> = names
        .iter()
        .filter(|n| !names.iter().any(|o| o.starts_with(&format!("{n}-"))))
        .cloned()
        .collect();
    assert!(leaves.len() > 15, "{leaves:?}");
    leaves
}

/// The first action of `doc` named `action`.
#[track_caller]
fn action<'a>(doc: &'a Value, action: &str) -> &'a Value {
    doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {doc:#}"))
}

/// `journal accept-loss` of node sa by `who`.
fn accept_loss<'a>(config: &'a str, who: &'a str) -> [&'a str; 8] {
    [
        "journal",
        "accept-loss",
        "--config",
        config,
        "--node",
        "sa",
        "--operator",
        who,
    ]
}

/// Actions are objects with a name, never prose strings; carry lines likewise.
#[track_caller]
fn check_structured(phase: &Value) {
    let actions = phase["actions"].as_array().unwrap();
    assert!(!actions.is_empty(), "{phase:#}");
    for a in actions {
        assert!(
            a.is_object() && a["action"].as_str().is_some_and(|n| !n.contains(' ')),
            "an action that is not an object: {a}"
        );
    }
    for c in phase["carry"].as_array().unwrap() {
        assert!(
            c["file"].is_string() && c["to"].is_string() && c["why"].is_string(),
            "{c}"
        );
    }
}

#[test]
fn every_command_prints_one_json_document() {
    let mut r = Runner::default();
    let dir = tempfile::tempdir().unwrap();
    let cfg = plan_in(dir.path(), 1);
    let c = cfg.to_str().unwrap();

    // Before the ceremony.
    let doc = r.run(
        &["sim", "init", "--config", c, "--load-source-keys"],
        &[0],
        "mkclone-sim-init",
    );
    assert!(
        doc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "source-key" && a["kind"] == "sym" && a["loaded"] == true),
        "{doc:#}"
    );
    let doc = r.run(&["worksheet", "--config", c], &[0], "mkclone-worksheet");
    assert_eq!(doc["kinds"], serde_json::json!(["sym", "asym"]), "{doc:#}");
    let sysfs = dir.path().join("no-sysfs");
    std::fs::create_dir(&sysfs).unwrap();
    r.run(
        &["devices", "--config", c, "--sysfs", sysfs.to_str().unwrap()],
        &[0],
        "mkclone-devices",
    );
    let doc = r.run(&["status", "--config", c, "source"], &[0], "mkclone-status");
    assert_eq!(doc["node"], "source");
    assert_eq!(doc["status"]["registers"][0]["kind"], "sym", "{doc:#}");

    // Every dry run, before anything ran: one document each (exit 0 or 4: problems).
    for phase in ["clone", "phase1", "phase2a", "phase2b"] {
        let doc = r.run(
            &[phase, "--config", c, "--dry-run"],
            &[0, 4],
            "mkclone-dry-run",
        );
        assert_eq!(doc["changed"], false, "{doc:#}");
    }
    for phase in ["phase3a", "phase3b", "phase3c", "phase3d"] {
        r.run(
            &[phase, "--config", c, "--target", "target1", "--dry-run"],
            &[0, 4],
            "mkclone-dry-run",
        );
    }

    // The phases, each a structured record; the fingerprints are read from the JSON.
    let doc = r.run(&["phase1", "--config", c], &[0], "mkclone-phase");
    check_structured(&doc);
    assert_eq!(doc["phase"], "1");
    pin_sa(
        &cfg,
        action(&doc, "pin-sa-fingerprint")["config_line"]
            .as_str()
            .unwrap(),
    );
    let doc = r.run(&["phase2a", "--config", c], &[0], "mkclone-phase");
    check_structured(&doc);
    let css = action(&doc, "key-fingerprint");
    assert_eq!(css["role"], "css");
    assert_eq!(css["certified_at"], "2b");
    let css = css["fingerprint"].as_str().unwrap().to_string();
    let doc = r.run(
        &["phase2b", "--config", c, "--css-fingerprint", &css],
        &[0],
        "mkclone-phase",
    );
    check_structured(&doc);
    let doc = r.run(
        &["phase3a", "--config", c, "--target", "target1"],
        &[0],
        "mkclone-phase",
    );
    assert_eq!(doc["target"], "target1");
    let csr = action(&doc, "key-fingerprint")["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = r.run(&phase3b(c, "target1", &csr), &[0], "mkclone-phase");
    check_structured(&doc);
    let doc = r.run(
        &["phase3c", "--config", c, "--target", "target1"],
        &[0],
        "mkclone-phase",
    );
    let share = action(&doc, "obtain-share");
    assert!(share["index"].is_u64() && share["kind"] == "sym", "{share}");
    let doc = r.run(
        &["phase3d", "--config", c, "--target", "target1"],
        &[0],
        "mkclone-phase",
    );
    check_structured(&doc);
    assert!(doc["journal_hash"].as_str().is_some_and(|h| h.len() == 64));
    assert!(
        doc["next"][0]
            .as_str()
            .is_some_and(|n| n.contains("--erase-files")),
        "{doc:#}"
    );
    let set = action(&doc, "set");
    assert!(set["pattern"]["bytes"].is_string(), "{set}");

    // After it: the record (open items: the bundles are on disk), then the clean-up.
    let doc = r.run(&["report", "--config", c], &[0, 5, 6], "mkclone-report");
    assert_eq!(doc["plan"]["kinds"], serde_json::json!(["sym", "asym"]));
    assert_eq!(doc["set"][0]["kind"], "sym", "{doc:#}");
    let doc = r.run(
        &[
            "abort",
            "--config",
            c,
            "--target",
            "target1",
            "--erase-files",
        ],
        &[0],
        "mkclone-abort",
    );
    assert!(
        doc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["action"] == "erase-file" && a["file"].is_string()),
        "{doc:#}"
    );
    let doc = r.run(
        &accept_loss(c, "alice"),
        &[0],
        "mkclone-journal-accept-loss",
    );
    assert_eq!(doc["recorded"], false, "{doc:#}");
    let doc = r.run(
        &[
            "master-key",
            "random",
            "--config",
            c,
            "--node",
            "target1",
            "--cancel",
        ],
        &[0],
        "mkclone-master-key-random",
    );
    assert_eq!(doc["result"], "nothing-to-cancel");

    // clone, and under dual control the two registration steps.
    let dual = tempfile::tempdir().unwrap();
    let cfg = write_plan(
        dual.path(),
        &sim_plan_with(
            &dual.path().join("cards"),
            "ceremony",
            1,
            "dual_control = true",
        ),
    );
    sim_init(&cfg);
    let d = cfg.to_str().unwrap();
    let doc = r.run(&["clone", "--config", d], &[7], "mkclone-clone");
    let next: Vec<&str> = doc["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(next.len(), 4, "{doc:#}");
    assert!(
        next[0].starts_with("mkclone register-sa-hash --config ")
            && next[0].contains("--node source --operator NAME --sa-fingerprint"),
        "{next:?}"
    );
    let anchor = doc["waiting"]["sa_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    for phase in doc["phases"].as_array().unwrap() {
        check_structured(phase);
    }
    for (step, who) in [("register-sa-hash", "alice"), ("register-sa-key", "bob")] {
        let mut args = register(step, d, "source", who).to_vec();
        args.extend(["--sa-fingerprint", &anchor]);
        let doc = r.run(&args, &[0], &format!("mkclone-{step}"));
        assert_eq!(action(&doc, step)["operator"], who, "{doc:#}");
        assert_eq!(action(&doc, step)["result"], "done", "{doc:#}");
        assert!(action(&doc, "compare-sa-fingerprint")["fingerprint"].is_string());
    }
    r.run(&["demo"], &[0], "mkclone-demo");

    // Not data: refused with a usage error, as a document.
    for args in [&["completions", "bash"][..], &["man"]] {
        let doc = r.run(args, &[2], "mkclone-error");
        assert_eq!(doc["kind"], "json-not-supported", "{doc:#}");
    }

    let missing: Vec<String> = leaf_commands()
        .into_iter()
        .filter(|c| !r.ran.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "commands without a JSON case here (add one, and its example to docs/JSON.md): {missing:?}"
    );
    // docs/JSON.md shows an example of every document.
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md"))
        .unwrap();
    for format in &r.formats {
        assert!(
            docs.contains(&format!("\"format\": \"{format}\"")),
            "docs/JSON.md has no example of {format}"
        );
    }
}

#[test]
fn a_finished_clone_gives_every_action_as_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rehearsal(dir.path(), 2);
    let out = mkclone(&["clone", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = one_document(&out.stdout);
    check_envelope(&doc, "mkclone-clone");
    // The rehearsal banner is not dropped under --json: it goes to standard error.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REHEARSAL"), "{stderr}");
    let phases = doc["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3 + 4 * 2);
    for p in phases {
        check_structured(p);
    }
    let names: BTreeSet<&str> = phases
        .iter()
        .flat_map(|p| p["actions"].as_array().unwrap())
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for needed in [
        "generate-key",
        "key-fingerprint",
        "sa-fingerprint",
        "set-eid",
        "set-m-of-n",
        "register-sa-hash",
        "obtain-share",
        "install-share",
        "confirm-new",
        "set",
    ] {
        assert!(names.contains(needed), "{needed} missing: {names:?}");
    }
    // Each node's status with its name; kinds spelled as everywhere in JSON.
    assert_eq!(doc["nodes"][0]["node"], "sa", "{:#}", doc["nodes"]);
    assert_eq!(doc["nodes"][1]["registers"][1]["kind"], "asym");
    // No standard-error noise is needed to read it, and nothing else is on stdout.
    assert!(doc["waiting"].is_null());
}

/// A `clone` that fails says, besides the error, which phases this run completed (as
/// `mkclone-clone` gives them) and every phase that failed: with targets in parallel the
/// others go on until the failure, and a script must know which targets got their key.
#[test]
fn a_failed_clone_names_the_phases_it_completed_and_each_phase_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rehearsal(dir.path(), 2);
    let c = cfg.to_str().unwrap();
    // target2 holds a key of its own: its shares are refused (would replace CURRENT).
    ok(&["phase1", "--config", c]);
    ok(&[
        "master-key",
        "random",
        "--config",
        c,
        "--node",
        "target2",
        "--operator",
        "alice",
    ]);
    let doc = error_of(&["clone", "--config", c, "--jobs", "2"], 4, "preflight");
    let phases = doc["phases"].as_array().unwrap();
    for p in phases {
        check_structured(p);
    }
    let done = |phase: &str, node: &str| {
        phases
            .iter()
            .filter(|p| p["phase"] == phase && p["node"] == node)
            .count()
    };
    for (phase, node) in [
        ("1", "sa"),
        ("2a", "source"),
        ("2b", "sa"),
        ("3a", "target2"),
    ] {
        assert_eq!(done(phase, node), 1, "{phase} on {node}: {doc:#}");
    }
    assert_eq!(done("3d", "target2"), 0, "{doc:#}");
    assert_eq!(
        doc["failed_phases"],
        serde_json::json!([{
            "phase": "3c",
            "node": "source",
            "target": "target2",
            "kind": "preflight",
            "message": doc["message"],
        }]),
        "{doc:#}"
    );
    // Whether target1 got through 3d before the failure stopped the run depends on the
    // order the threads ran in; what the document says must be what target1 holds.
    let status =
        |node: &str| one_document(&mkclone(&["status", "--config", c, node, "--json"]).stdout);
    let (source, target1) = (status("source"), status("target1"));
    let current = |d: &Value| d["status"]["registers"][0]["current_patterns"].clone();
    assert_eq!(
        done("3d", "target1") == 1,
        current(&target1) == current(&source),
        "{doc:#}"
    );
    // A refusal that is not a phase's (every target checked at once, before any share
    // moves): no phase failed, and the phases before it are listed.
    let doc = error_of(
        &["clone", "--config", c, "--check-all-first"],
        4,
        "preflight",
    );
    assert_eq!(doc["failed_phases"], serde_json::json!([]), "{doc:#}");
    let phases = doc["phases"].as_array().unwrap();
    let certified = phases.iter().filter(|p| p["phase"] == "3b").count();
    assert_eq!(certified, 2, "3b for each target: {doc:#}");
    // A clone that fails before it opens the ceremony has no such members.
    let nowhere = dir.path().join("nowhere.toml");
    let doc = error_of(
        &["clone", "--config", nowhere.to_str().unwrap()],
        3,
        "config-unreadable",
    );
    assert!(doc.get("phases").is_none() && doc.get("failed_phases").is_none());
}

#[test]
fn json_goes_before_or_after_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rehearsal(dir.path(), 1);
    let c = cfg.to_str().unwrap();
    let before = mkclone(&["--json", "status", "--config", c, "target1"]);
    let after = mkclone(&["status", "--config", c, "target1", "--json"]);
    assert!(before.status.success() && after.status.success());
    assert_eq!(one_document(&before.stdout), one_document(&after.stdout));
}

/// A failure under `--json`: one `mkclone-error` document on standard output, the message
/// on standard error too, the exit code of docs/JSON.md.
#[track_caller]
fn error_of(args: &[&str], code: i32, kind: &str) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = mkclone(&all);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    let doc = one_document(&out.stdout);
    check_envelope(&doc, "mkclone-error");
    assert_eq!(doc["exit_code"], code, "{doc:#}");
    assert_eq!(doc["kind"], kind, "{doc:#}");
    let message = doc["message"].as_str().unwrap();
    assert!(!message.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(message.lines().next().unwrap()),
        "the message is also on standard error: {}",
        text(&out)
    );
    doc
}

#[test]
fn failures_are_one_error_document_with_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = rehearsal(dir.path(), 1);
    let c = cfg.to_str().unwrap();
    let nowhere = dir.path().join("nowhere.toml");
    let n = nowhere.to_str().unwrap();

    // A configuration that is not there: every family says so alike (exit 3).
    for args in [
        &["status", "--config", n, "source"][..],
        &["phase1", "--config", n],
        &["phase1", "--config", n, "--dry-run"],
        &["clone", "--config", n],
        &["report", "--config", n],
        &["worksheet", "--config", n],
        &["abort", "--config", n, "--erase-files"],
        &["sim", "init", "--config", n],
        &register("register-sa-hash", n, "source", "a"),
        &["master-key", "random", "--config", n, "--node", "source"],
        &accept_loss(n, "a"),
    ] {
        let doc = error_of(args, 3, "config-unreadable");
        assert!(doc["message"].as_str().unwrap().contains("nowhere.toml"));
    }
    // Bad phase input.
    let doc = error_of(
        &["phase3a", "--config", c, "--target", "nosuch"],
        3,
        "invalid",
    );
    assert!(doc["message"].as_str().unwrap().contains("nosuch"));
    let doc = error_of(&["phase2a", "--config", c], 3, "missing-file");
    assert!(
        doc["hint"].as_str().is_some_and(|h| h.contains("phase 1")),
        "{doc:#}"
    );
    error_of(&["status", "--config", c, "nosuch"], 3, "config-invalid");
    // A preflight that refuses (exit 4): every problem as a dry run gives it, by `kind`.
    let doc = error_of(
        &["phase3d", "--config", c, "--target", "target1"],
        4,
        "preflight",
    );
    let problems = doc["problems"].as_array().unwrap();
    assert!(problems.iter().all(|p| p["kind"].is_string()), "{doc:#}");
    assert!(
        problems.iter().any(|p| p["kind"] == "missing-file"
            && p["master_key"] == "sym"
            && p["share_index"] == 1
            && p["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("target1.sym.1.share"))),
        "{doc:#}"
    );
    // Other errors carry no `problems`.
    let doc = error_of(&["phase2a", "--config", c], 3, "missing-file");
    assert!(doc.get("problems").is_none(), "{doc:#}");
    // Usage errors: ours (abort naming no step) and clap's.
    error_of(&["abort", "--config", c], 2, "usage");
    let doc = error_of(&["status", "--config", c], 2, "usage");
    assert!(
        doc["hint"].as_str().is_some_and(|h| h.contains("Usage:")),
        "{doc:#}"
    );
    error_of(&["no-such-command"], 2, "usage");
    error_of(
        &["phase1", "--config", c, "--operator", "x\u{7}y"],
        2,
        "usage",
    );
}

#[test]
fn a_dry_run_with_problems_is_its_own_document_only() {
    let dir = tempfile::tempdir().unwrap();
    // No card exists: the dry run finds problems (exit 4) and says them in its document.
    let cfg = plan_in(dir.path(), 1);
    let out = mkclone(&[
        "phase3d",
        "--config",
        cfg.to_str().unwrap(),
        "--target",
        "target1",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let doc = one_document(&out.stdout);
    check_envelope(&doc, "mkclone-dry-run");
    assert_eq!(doc["phases"], serde_json::json!(["3d"]));
    let problems = doc["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{doc:#}");
    // Each problem named for a script: a kebab-case `kind`, the node, and the words.
    for p in problems {
        let kind = p["kind"].as_str().unwrap_or_else(|| panic!("{p}"));
        assert!(
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{p}"
        );
        assert!(p["node"].is_string() && p["what"].is_string(), "{p}");
    }
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "node-unavailable" && p["node"] == "target1"),
        "{doc:#}"
    );
    assert!(!Path::new(&dir.path().join("ceremony")).exists());
}
