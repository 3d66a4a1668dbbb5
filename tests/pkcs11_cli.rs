//! End-to-end tests of the binary with PKCS#11 nodes on SoftHSM 2: a whole `clone`, a
//! mixed rehearsal (simulated source, SoftHSM target) and the rehearsal rule, PIN errors,
//! and `devices` listing the tokens. Each test has its own SoftHSM configuration and token
//! directory; nothing outside its temporary directory is touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::softhsm_module as module;

/// A private SoftHSM with the given tokens, all with the user PIN [`PIN`].
fn softhsm(dir: &Path, tokens: &[&str]) -> PathBuf {
    common::softhsm(dir, tokens, PIN)
}

const PIN: &str = "user-pin-5678";
const SO_PIN: &str = common::SOFTHSM_SO_PIN;

fn run(conf: &Path, args: &[&str], pin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkclone"));
    cmd.args(args)
        .env("SOFTHSM2_CONF", conf)
        .env("MKCLONE_TEST_SO_PIN", SO_PIN)
        .env_remove("MKCLONE_TEST_PIN");
    if let Some(p) = pin {
        cmd.env("MKCLONE_TEST_PIN", p);
    }
    cmd.output().unwrap()
}

/// `sim init` (the simulated nodes' cards), phase 1 (the ceremony's nonce),
/// `master-key random` on the source, then `clone`, all successful; the clone's output.
fn init_and_clone(conf: &Path, c: &str) -> Output {
    let setup = run(conf, &["sim", "init", "--config", c], None);
    assert!(setup.status.success(), "{}", text(&setup));
    let phase1 = run(conf, &["phase1", "--config", c], Some(PIN));
    assert!(phase1.status.success(), "{}", text(&phase1));
    let key = run(
        conf,
        &["master-key", "random", "--config", c, "--node", "source"],
        Some(PIN),
    );
    assert!(key.status.success(), "{}", text(&key));
    let out = run(conf, &["clone", "--config", c], Some(PIN));
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// `status NODE --json`, successful, as JSON.
fn status_json(conf: &Path, c: &str, node: &str) -> serde_json::Value {
    let status = run(conf, &["status", "--config", c, node, "--json"], Some(PIN));
    assert!(status.status.success(), "{}", text(&status));
    let out = String::from_utf8_lossy(&status.stdout).to_string();
    serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A token node; the source's share export reads its SO PIN from `MKCLONE_TEST_SO_PIN`.
fn token_node(name: &str, eid: &str) -> String {
    token_node_without_so_pin(name, eid) + "so_pin = { env = \"MKCLONE_TEST_SO_PIN\" }\n"
}

fn token_node_without_so_pin(name: &str, eid: &str) -> String {
    format!(
        "\n[nodes.{name}]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken = \"{name}\"\npin = {{ env = \"MKCLONE_TEST_PIN\" }}\neid = \"{eid}\"\n",
        module().display()
    )
}

/// A simulated SA and target around the token node `source` (a rehearsal).
fn around_a_token_source(cards: &Path, source: String) -> String {
    sim_node("sa", cards, 1, "SIM SA") + &source + &sim_node("target1", cards, 3, "SIM T1")
}

fn sim_node(name: &str, cards: &Path, card: u8, eid: &str) -> String {
    format!(
        "\n[nodes.{name}]\nbackend = \"sim\"\nsim_dir = \"{}\"\napqn = \"{card:02x}.000d\"\neid = \"{eid}\"\n",
        cards.display()
    )
}

fn plan(extra: &str) -> String {
    format!(
        "[ceremony]\nid = \"p11\"\nsa = \"sa\"\nsource = \"source\"\ntargets = [\"target1\"]\n\
         master_keys = [\"sym\", \"asym\"]\nthreshold = 2\nshares = 3\ndual_control = false\n{extra}\n"
    )
}

/// A private SoftHSM with tokens sa, source and target1, and the plan naming them as those
/// roles: (the SoftHSM configuration, the plan's path).
fn three_tokens(dir: &Path) -> (PathBuf, PathBuf) {
    let conf = softhsm(dir, &["sa", "source", "target1"]);
    let cfg = dir.join("mkclone.toml");
    std::fs::write(
        &cfg,
        plan("")
            + &token_node("sa", "SA TOKEN")
            + &token_node("source", "SOURCE TOKEN")
            + &token_node("target1", "TARGET TOKEN"),
    )
    .unwrap();
    (conf, cfg)
}

#[test]
fn a_whole_clone_on_softhsm_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, cfg) = three_tokens(dir.path());
    let c = cfg.to_str().unwrap();
    let out = init_and_clone(&conf, c);
    assert!(text(&out).contains("= source"), "{}", text(&out));
    assert!(
        text(&out).contains("host memory"),
        "the key-exposure notice is shown:\n{}",
        text(&out)
    );
    let devices = run(&conf, &["devices", "--config", c], None);
    assert!(text(&devices).contains("\"target1\""), "{}", text(&devices));
    // Clean-up on tokens: the ceremony's keys and the SA registrations go.
    let abort = run(
        &conf,
        &[
            "abort",
            "--config",
            c,
            "--delete-keys",
            "--unregister-sa",
            "--erase-files",
        ],
        Some(PIN),
    );
    assert!(abort.status.success(), "{}", text(&abort));
    let v = status_json(&conf, c, "target1");
    assert!(v["retained_keys"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["registrations"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn a_mixed_plan_is_a_rehearsal_and_must_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm(dir.path(), &["target1"]);
    let cards = dir.path().join("cards");
    let nodes = sim_node("sa", &cards, 1, "SIM SA")
        + &sim_node("source", &cards, 2, "SIM SOURCE")
        + &token_node("target1", "TOKEN TARGET");
    let cfg = dir.path().join("mkclone.toml");
    std::fs::write(&cfg, plan("") + &nodes).unwrap();
    let c = cfg.to_str().unwrap();
    let refused = run(&conf, &["clone", "--config", c], Some(PIN));
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("rehearsal = true"),
        "{}",
        text(&refused)
    );

    std::fs::write(&cfg, plan("rehearsal = true") + &nodes).unwrap();
    let out = init_and_clone(&conf, c);
    assert!(
        text(&out).contains("= source") && text(&out).contains("REHEARSAL"),
        "{}",
        text(&out)
    );
    let journal = std::fs::read_to_string(dir.path().join("ceremony/journal.jsonl")).unwrap();
    assert!(journal.lines().all(|l| l.contains("\"rehearsal\":true")));
}

#[test]
fn pin_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm(dir.path(), &["source"]);
    let cfg = dir.path().join("mkclone.toml");
    let cards = dir.path().join("cards");
    let nodes = around_a_token_source(&cards, token_node("source", "SOURCE"));
    std::fs::write(&cfg, plan("rehearsal = true") + &nodes).unwrap();
    let c = cfg.to_str().unwrap();
    let missing = run(&conf, &["status", "--config", c, "source"], None);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("MKCLONE_TEST_PIN"),
        "{}",
        text(&missing)
    );
    assert!(!text(&missing).contains(PIN));
    let wrong = run(
        &conf,
        &["status", "--config", c, "source"],
        Some("not-the-pin"),
    );
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).to_lowercase().contains("pin"),
        "{}",
        text(&wrong)
    );
    assert!(
        !text(&wrong).contains("not-the-pin"),
        "the PIN is never printed"
    );
    let ok = run(&conf, &["status", "--config", c, "source"], Some(PIN));
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("pkcs11 backend"), "{}", text(&ok));
    // What the token cannot protect is said with its status.
    assert!(
        text(&ok).contains("what this node cannot protect (4):")
            && text(&ok).contains("SoftHSM is software"),
        "{}",
        text(&ok)
    );
}

#[test]
fn a_source_without_so_pin_stops_at_its_share_export_and_resumes_once_it_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm(dir.path(), &["source"]);
    let cards = dir.path().join("cards");
    let cfg = dir.path().join("mkclone.toml");
    let nodes = |source| around_a_token_source(&cards, source);
    std::fs::write(
        &cfg,
        plan("rehearsal = true") + &nodes(token_node_without_so_pin("source", "SOURCE")),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    for args in [
        &["sim", "init", "--config", c][..],
        &["phase1", "--config", c],
        &["master-key", "random", "--config", c, "--node", "source"],
    ] {
        let setup = run(&conf, args, Some(PIN));
        assert!(setup.status.success(), "{}", text(&setup));
    }
    let stopped = run(&conf, &["clone", "--config", c], Some(PIN));
    assert!(!stopped.status.success(), "{}", text(&stopped));
    assert!(
        text(&stopped).contains("security officer") && text(&stopped).contains("so_pin"),
        "{}",
        text(&stopped)
    );
    assert!(!text(&stopped).contains(SO_PIN));
    std::fs::write(
        &cfg,
        plan("rehearsal = true") + &nodes(token_node("source", "SOURCE")),
    )
    .unwrap();
    let resumed = run(&conf, &["clone", "--config", c], Some(PIN));
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(!text(&resumed).contains(SO_PIN));
}

#[test]
fn sim_init_leaves_a_token_source_alone_and_names_master_key_random() {
    let dir = tempfile::tempdir().unwrap();
    let (conf, cfg) = three_tokens(dir.path());
    let c = cfg.to_str().unwrap();
    let refused = run(
        &conf,
        &["sim", "init", "--config", c, "--load-source-keys"],
        Some(PIN),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains(
            "is a pkcs11 node that is not simulated, and `sim init` touches simulated nodes only"
        ) && text(&refused).contains("mkclone master-key random --config"),
        "{}",
        text(&refused)
    );
    let v = status_json(&conf, c, "source");
    for register in v["status"]["registers"].as_array().unwrap() {
        assert_eq!(register["current"], "invalid", "nothing loaded: {v}");
    }
    assert!(!dir.path().join("ceremony").exists(), "nothing journaled");
}
