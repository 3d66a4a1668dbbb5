//! End-to-end tests of the binary with `backend = "cca"` nodes on mkclone's simulated CCA
//! host library (crates/hostlib-sim): the library is dlopened by the binary and driven
//! through the verbs' C signatures exactly as IBM's libcsulcca.so would be. Each test has
//! its own copy of the library in its temporary directory, so its cards live there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{
    check_clone_finished, check_clone_finished_env, node_status, simulated_cca_library, softhsm,
    text,
};

const PIN: &str = "user-pin-5678";

/// A copy of the simulated library in `dir/simlib` (its cards are created beside it).
fn library_in(dir: &Path) -> PathBuf {
    let home = dir.join("simlib");
    private_dir(&home);
    let library = home.join("libcsulcca.so");
    std::fs::copy(simulated_cca_library(), &library).unwrap();
    library
}

/// A directory for simulated cards: private (0700) whatever the umask, as `sim init` makes
/// one (a card directory others can write is refused).
fn private_dir(dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .unwrap();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
}

fn run(config: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkclone"));
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env_remove("MKCLONE_CCA_TRACE")
        .env_remove("MKCLONE_SIMLIB_DIR")
        .env_remove("CSU_DEFAULT_DOMAIN")
        .env("MKCLONE_TEST_PIN", PIN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[track_caller]
fn ok(config: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let out = run(config, args, env);
    assert!(
        out.status.success(),
        "mkclone {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

/// The plan: SA, source, target1 and target2, SYM and ASYM, 3-of-5.
fn plan(extra: &str) -> String {
    format!(
        "[ceremony]\nid = \"cca\"\ndirectory = \"ceremony\"\nsa = \"sa\"\nsource = \"source\"\n\
         targets = [\"target1\", \"target2\"]\nmaster_keys = [\"sym\", \"asym\"]\nthreshold = 3\n\
         shares = 5\ndual_control = false\n{extra}\n"
    )
}

/// A `backend = "cca"` node on the library copied to `simlib/` (relative to the config).
fn cca_node(name: &str, serial: &str) -> String {
    format!(
        "\n[nodes.{name}]\nbackend = \"cca\"\nlibrary = \"simlib/libcsulcca.so\"\n\
         mk_library = \"simlib/libcsulcca.so\"\nexpect_serial = \"{serial}\"\neid = \"{}\"\n",
        name.to_uppercase()
    )
}

fn sim_node(name: &str, card: u8) -> String {
    format!(
        "\n[nodes.{name}]\nbackend = \"sim\"\nsim_dir = \"cards\"\napqn = \"{card:02x}.000d\"\neid = \"{}\"\n",
        name.to_uppercase()
    )
}

fn token_node(name: &str) -> String {
    format!(
        "\n[nodes.{name}]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken = \"{name}\"\n\
         pin = {{ env = \"MKCLONE_TEST_PIN\" }}\neid = \"{}\"\n",
        common::softhsm_module().display(),
        name.to_uppercase()
    )
}

fn all_cca_nodes() -> String {
    cca_node("sa", "CCA00001")
        + &cca_node("source", "CCA00002")
        + &cca_node("target1", "CCA00003")
        + &cca_node("target2", "CCA00004")
}

#[test]
fn a_whole_ceremony_on_cca_nodes_through_the_simulated_host_library() {
    let dir = tempfile::tempdir().unwrap();
    library_in(dir.path());
    let cfg = common::write_plan(dir.path(), &(plan("") + &all_cca_nodes()));

    // `sim init` creates the simulated cards on the simulated library (as CRP01..CRP04).
    let init = ok(&cfg, &["sim", "init"], &[]);
    assert_eq!(init.matches(": created").count(), 4, "{init}");
    assert!(init.contains("simulated CCA card CCA00003"), "{init}");
    let again = ok(&cfg, &["sim", "init"], &[]);
    assert_eq!(again.matches(": exists").count(), 4, "{again}");
    // `devices --config` lists the library's adapters by serial, and says what it is and
    // the version it reports of itself (CSUACFV).
    let devices = ok(&cfg, &["devices"], &[]);
    assert!(
        devices.contains("(mkclone's simulated library: rehearsal only)")
            && devices.contains("  version 0.0.0zMKCLONE-SIM\n")
            && devices.contains("CRP01  serial CCA00001")
            && devices.contains("CRP04  serial CCA00004"),
        "{devices}"
    );
    let out = run(&cfg, &["devices", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed["cca_host_libraries"][0]["found"]["version"], "0.0.0zMKCLONE-SIM",
        "{listed}"
    );

    // The configuration cannot see that the library is a simulation; opening the node
    // does, and a plan that does not say it is a rehearsal is refused.
    let refused = run(&cfg, &["clone"], &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("rehearsal = true")
            && text(&refused).contains("simulated CCA host library"),
        "{}",
        text(&refused)
    );

    std::fs::write(&cfg, plan("rehearsal = true") + &all_cca_nodes()).unwrap();
    let load = ok(&cfg, &["sim", "init", "--load-source-keys"], &[]);
    assert!(
        load.contains("random SYM master key loaded"),
        "the source's keys are loaded through CSNBMKP RANDOM:\n{load}"
    );
    let out = ok(&cfg, &["clone"], &[]);
    assert_eq!(out.matches("= source").count(), 2, "{out}");
    assert!(out.contains("REHEARSAL"), "{out}");
    let c = cfg.to_str().unwrap();
    check_clone_finished(c, 2);

    // The share tables of a 3-of-5 plan: three shares went to each target.
    let st = node_status(c, "target1");
    assert_eq!(st["shares"]["m_of_n"], serde_json::json!([3, 5]), "{st}");

    // A rerun finds everything done and changes nothing.
    let before = node_status(c, "target2");
    ok(&cfg, &["clone"], &[]);
    assert_eq!(node_status(c, "target2"), before);
}

/// A library's version (CSUACFV) is whatever the library says: one that holds a newline and a
/// line of its own making is shown on its one line, escaped, and never adds a line to what
/// `devices` lists (the adapters an operator picks from).
#[test]
fn a_library_version_cannot_add_a_line_to_the_devices_list() {
    let dir = tempfile::tempdir().unwrap();
    let library = library_in(dir.path());
    let cfg = common::write_plan(dir.path(), &(plan("rehearsal = true") + &all_cca_nodes()));
    ok(&cfg, &["sim", "init"], &[]);
    std::fs::write(
        library.parent().unwrap().join("simlib.json"),
        r#"{"version": "1z\r\t\nCRP09 serial X"}"#,
    )
    .unwrap();
    let devices = ok(&cfg, &["devices"], &[]);
    assert!(
        devices.contains("  version 1z\\u{d}\\u{9}\\u{a}CRP09 serial X\n"),
        "{devices}"
    );
    assert!(
        !devices.lines().any(|l| l.trim_start().starts_with("CRP09")),
        "{devices}"
    );
    // (19 bytes and a NUL: the 20 bytes IBM's callers hand CSUACFV.) The JSON document
    // carries the version as the library gave it (serde_json escapes it).
    let out = run(&cfg, &["devices", "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed["cca_host_libraries"][0]["found"]["version"], "1z\r\t\nCRP09 serial X",
        "{listed}"
    );
}

/// CCA nodes mixed with a simulated node and a SoftHSM token: the SA is the simulated
/// card (on IBM's library the SA's certification is refused, so a rehearsal's SA is a
/// sim or PKCS#11 node), the source and target1 are CCA adapters, target2 a token.
#[test]
fn cca_nodes_mixed_with_sim_and_softhsm_nodes_under_the_rehearsal_rule() {
    let dir = tempfile::tempdir().unwrap();
    library_in(dir.path());
    let conf = softhsm(dir.path(), &["target2"], PIN);
    // The token's lock beside the test's SoftHSM, not in the machine's /run/lock/mkclone.
    let locks = dir.path().join("locks");
    let env: &[(&str, &Path)] = &[
        ("SOFTHSM2_CONF", &conf),
        (mkclone::pkcs11::LOCK_DIR_ENV, &locks),
    ];
    let nodes = sim_node("sa", 1)
        + &cca_node("source", "CCA00002")
        + &cca_node("target1", "CCA00003")
        + &token_node("target2");
    let cfg = common::write_plan(dir.path(), &(plan("") + &nodes));
    let refused = common::exit_code(&run(&cfg, &["clone"], env), 3);
    assert!(refused.contains("rehearsal = true"), "{refused}");

    std::fs::write(&cfg, plan("rehearsal = true") + &nodes).unwrap();
    let init = ok(&cfg, &["sim", "init", "--load-source-keys"], env);
    assert_eq!(init.matches(": created").count(), 3, "{init}");
    let out = ok(&cfg, &["clone"], env);
    assert_eq!(out.matches("= source").count(), 2, "{out}");
    assert!(out.contains("REHEARSAL"), "{out}");
    let conf = conf.to_str().unwrap();
    check_clone_finished_env(
        cfg.to_str().unwrap(),
        2,
        &[
            ("SOFTHSM2_CONF", conf),
            ("MKCLONE_TEST_PIN", PIN),
            (mkclone::pkcs11::LOCK_DIR_ENV, locks.to_str().unwrap()),
        ],
    );
}

// ---- a crash at every verb call, then a rerun -------------------------------------------

/// The plan of the crash test: all four roles on CCA nodes of one simulated library, one
/// target, SYM and ASYM, 2-of-3 (every verb the ceremony uses, in fewer calls than 3-of-5
/// with two targets).
fn crash_plan(library: &Path) -> String {
    let mut s = "[ceremony]\nid = \"crash\"\ndirectory = \"ceremony\"\nsa = \"sa\"\nsource = \"source\"\n\
                 targets = [\"target1\"]\nmaster_keys = [\"sym\", \"asym\"]\nthreshold = 2\nshares = 3\n\
                 dual_control = false\nrehearsal = true\n"
        .to_string();
    for (name, serial) in [
        ("sa", "CCA00001"),
        ("source", "CCA00002"),
        ("target1", "CCA00003"),
    ] {
        s.push_str(&format!(
            "\n[nodes.{name}]\nbackend = \"cca\"\nlibrary = \"{lib}\"\nmk_library = \"{lib}\"\n\
             expect_serial = \"{serial}\"\neid = \"{}\"\n",
            name.to_uppercase(),
            lib = library.display()
        ));
    }
    s
}

/// A copy of the prepared machine (configuration and card files) in `to`.
fn copy_machine(from: &Path, to: &Path) {
    private_dir(&to.join("cards"));
    std::fs::copy(from.join("mkclone.toml"), to.join("mkclone.toml")).unwrap();
    for e in std::fs::read_dir(from.join("cards")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("cards").join(e.file_name())).unwrap();
    }
}

/// Run `args` on the machine in `dir` (its cards in `dir/cards`).
fn on_machine(dir: &Path, args: &[&str], trace: Option<&Path>) -> Output {
    let cards = dir.join("cards");
    let trace_env;
    let mut env: Vec<(&str, &Path)> = vec![("MKCLONE_SIMLIB_DIR", &cards)];
    if let Some(t) = trace {
        trace_env = t.to_path_buf();
        env.push(("MKCLONE_CCA_TRACE", &trace_env));
    }
    run(&dir.join("mkclone.toml"), args, &env)
}

fn status_on(dir: &Path, node: &str) -> serde_json::Value {
    let out = on_machine(dir, &["status", node, "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    common::json_in(&String::from_utf8_lossy(&out.stdout))
}

/// What a finished clone must look like after any crash and rerun: the target's CURRENT
/// is the source's for both kinds, set once (OLD still empty, NEW cleared), the source's
/// registers as they were before the ceremony, one retained key per node, one SA
/// registration on the source and the target, and share tables that agree with the
/// plan (m-of-n 2-of-3; the source distributed shares 1 and 2 and no other; the
/// target's reception table cleared by SET).
fn check_after_rerun(dir: &Path, source_before: &serde_json::Value, what: &str) {
    let source = status_on(dir, "source");
    let target = status_on(dir, "target1");
    assert_eq!(
        source["status"]["registers"], source_before["status"]["registers"],
        "{what}: the source's registers changed"
    );
    for kind in 0..2 {
        let s = &source["status"]["registers"][kind];
        let t = &target["status"]["registers"][kind];
        assert_eq!(t["current_patterns"], s["current_patterns"], "{what}: {t}");
        assert_eq!(t["new"], "empty", "{what}: {t}");
        assert_eq!(t["old"], "invalid", "{what}: SET ran more than once: {t}");
        assert_eq!(t["old_patterns"], serde_json::json!([]), "{what}: {t}");
    }
    for (node, st, registrations) in [
        ("sa", status_on(dir, "sa"), 0),
        ("source", source.clone(), 1),
        ("target1", target.clone(), 1),
    ] {
        assert_eq!(
            st["retained_keys"].as_array().map(Vec::len),
            Some(1),
            "{what}: {node} holds one retained key: {}",
            st["retained_keys"]
        );
        assert_eq!(
            st["registrations"].as_array().map(Vec::len),
            Some(registrations),
            "{what}: {node}: {}",
            st["registrations"]
        );
    }
    for st in [&source, &target] {
        assert_eq!(st["shares"]["m_of_n"], serde_json::json!([2, 3]), "{what}");
    }
    for table in source["shares"]["tables"].as_array().unwrap() {
        let generation = table["generation"].as_array().unwrap();
        for (i, state) in generation.iter().enumerate() {
            let allowed: &[&str] = match i {
                0 | 1 => &["distributed-once", "distributed-more"],
                2 => &["can"],
                _ => &["cannot"],
            };
            assert!(
                allowed.contains(&state.as_str().unwrap_or("")),
                "{what}: source share {} is {state}: {table}",
                i + 1
            );
        }
    }
    for table in target["shares"]["tables"].as_array().unwrap() {
        let reception = table["reception"].as_array().unwrap();
        for (i, state) in reception.iter().enumerate() {
            let expected = if i < 3 { "can" } else { "cannot" };
            assert_eq!(
                state,
                expected,
                "{what}: target reception {}: {table}",
                i + 1
            );
        }
    }
}

/// For every verb call of a `clone` (counted by the simulated library: every call of
/// every verb, in the order the process makes them), the process dies at that call —
/// after the card ran it (the reply is lost), and for the calls that change the card
/// also before — and a rerun of `clone` finishes the ceremony with nothing done twice.
#[test]
fn a_crash_at_every_verb_call_is_finished_by_a_rerun() {
    let root = tempfile::tempdir().unwrap();
    let library = root.path().join("lib").join("libcsulcca.so");
    std::fs::create_dir_all(library.parent().unwrap()).unwrap();
    std::fs::copy(simulated_cca_library(), &library).unwrap();
    let template = root.path().join("template");
    private_dir(&template.join("cards"));
    std::fs::write(template.join("mkclone.toml"), crash_plan(&library)).unwrap();
    let init = on_machine(&template, &["sim", "init", "--load-source-keys"], None);
    assert!(init.status.success(), "{}", text(&init));
    let source_before = status_on(&template, "source");

    // The reference run: how many verb calls a whole clone makes.
    let reference = root.path().join("reference");
    copy_machine(&template, &reference);
    let trace = root.path().join("reference.trace");
    let out = on_machine(&reference, &["clone"], Some(&trace));
    assert!(out.status.success(), "{}", text(&out));
    check_after_rerun(&reference, &source_before, "the reference run");
    let verbs: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["verb"].as_str().unwrap().to_string()
        })
        .collect();
    let calls = verbs.len();
    assert!(calls > 100, "a clone makes {calls} verb calls?");
    // Every call is crashed after the card ran it; the calls that can change the card are
    // also crashed before (for a read, before and after leave the same card).
    let reads = [
        "CSUACFQ", "CSUACFV", "CSUACRA", "CSUACRD", "CSUAACM", "CSNDPKB", "CSNDPKX",
    ];
    let points: Vec<(usize, bool)> = verbs
        .iter()
        .enumerate()
        .flat_map(|(i, verb)| {
            let k = i + 1;
            let both = !reads.contains(&verb.as_str());
            std::iter::once((k, false)).chain(both.then_some((k, true)))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        // The clones wait on fsync more than on the CPU: eight at a time.
        for _ in 0..8 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&(k, before)) = points.get(i) else {
                        break;
                    };
                    let what = format!(
                        "crash at call {k} of {calls} ({} the card ran it)",
                        if before { "before" } else { "after" }
                    );
                    let run = std::panic::catch_unwind(|| {
                        crash_and_rerun(root.path(), &template, &source_before, k, before, &what)
                    });
                    if let Err(e) = run {
                        let message = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.lock().unwrap().push(format!("{what}: {message}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} crash points failed:\n{}",
        failures.len(),
        points.len(),
        failures.join("\n\n")
    );
}

fn crash_and_rerun(
    root: &Path,
    template: &Path,
    source_before: &serde_json::Value,
    k: usize,
    before: bool,
    what: &str,
) {
    let dir = root.join(format!("crash-{k}-{}", if before { "b" } else { "a" }));
    copy_machine(template, &dir);
    std::fs::write(
        dir.join("cards/simlib.json"),
        serde_json::json!({ "crash_at": k, "crash_before": before }).to_string(),
    )
    .unwrap();
    let killed = on_machine(&dir, &["clone"], None);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        killed.status.signal(),
        Some(libc_sigabrt()),
        "{what}: the process should have died there:\n{}",
        text(&killed)
    );
    assert!(
        text(&killed).contains(&format!("injected crash at call {k} ")),
        "{what}: {}",
        text(&killed)
    );
    std::fs::remove_file(dir.join("cards/simlib.json")).unwrap();
    let rerun = on_machine(&dir, &["clone"], None);
    assert!(
        rerun.status.success(),
        "{what}: the rerun failed:\n{}",
        text(&rerun)
    );
    check_after_rerun(&dir, source_before, what);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGABRT: the simulated library ends the process with abort(3), as a power cut would
/// end it (no destructors, no reply).
fn libc_sigabrt() -> i32 {
    6
}

// ---- the access-control audit in the dry run ----------------------------------------------

/// `clone --dry-run` audits each CCA node's role: every point its steps need (cited) with
/// whether the role enables it, the points it lacks as problems, and what the operator
/// must check by hand; nothing is changed.
#[test]
fn the_dry_run_audits_the_access_controls_of_cca_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let library = library_in(dir.path());
    let cfg = common::write_plan(dir.path(), &(plan("rehearsal = true") + &all_cca_nodes()));
    ok(&cfg, &["sim", "init", "--load-source-keys"], &[]);
    // The simulated cards' role lacks "RSA Master Key - Set master key".
    std::fs::write(
        library.parent().unwrap().join("simlib.json"),
        r#"{"disabled_acps": [87]}"#,
    )
    .unwrap();
    let out = run(&cfg, &["clone", "--dry-run"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    for expected in [
        "access controls of target1 (role DEFAULT, phases 3a, 3d):",
        "MISSING  X'0057' RSA Master Key - Set master key (CSNBMKP SET ASYM-MK) for set the master key",
        "enabled  X'001A' DES Master Key - Set master key (CSNBMKP SET SYM-MK)",
        "enabled  X'0204' PKA Key Generate - Clone (CSNDPKG CLONE)",
        "by hand  obtain a share (CSUAMKD OBTAIN): CSUAMKD OBTAIN",
        "role DEFAULT does not enable access-control point X'0057'",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
    // Every target is audited; the source's steps (2a, 3c) do not need SET.
    assert!(t.contains("access controls of target2"), "{t}");
    assert_eq!(t.matches("MISSING").count(), 2, "{t}");
    let json = run(&cfg, &["clone", "--dry-run", "--json"], &[]);
    let doc = common::json_in(&String::from_utf8_lossy(&json.stdout));
    let nodes: Vec<&str> = doc["access_controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["sa", "source", "target1", "target2"], "{doc}");
    let missing: Vec<&serde_json::Value> = doc["access_controls"][2]["audit"]["checked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["enabled"] == false)
        .collect();
    assert_eq!(missing.len(), 1, "{doc}");
    assert_eq!(missing[0]["point"]["offset"], 0x57);
    // Nothing was changed: no ceremony directory, the targets still fresh.
    assert!(!dir.path().join("ceremony").exists());
    let st = node_status(cfg.to_str().unwrap(), "target1");
    assert!(st["retained_keys"].as_array().unwrap().is_empty(), "{st}");
}

// ---- the trace ------------------------------------------------------------------------------

/// Every hex string of at least 32 digits in `text` (key material as the card files and
/// sa.db hold it).
fn long_hex_strings(text: &str) -> Vec<String> {
    text.split('"')
        .filter(|s| s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

/// Phase 1 with `MKCLONE_CCA_TRACE`: one JSON line per verb call with the verb, the rule
/// keywords, the parameter lengths and the return/reason codes, and nothing else: no
/// byte of a buffer (the SA key's certificate, the private keys in the card files) is in
/// the file, which is the owner's alone.
#[test]
fn the_trace_records_every_call_and_no_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let library = library_in(dir.path());
    let cfg = common::write_plan(dir.path(), &(plan("rehearsal = true") + &all_cca_nodes()));
    ok(&cfg, &["sim", "init"], &[]);
    let trace = dir.path().join("trace.jsonl");
    ok(&cfg, &["phase1"], &[("MKCLONE_CCA_TRACE", &trace)]);

    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&trace).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text_of_trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<serde_json::Value> = text_of_trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 10, "{text_of_trace}");
    let verbs = [
        "CSUACFQ",
        "CSUACFV",
        "CSUACRA",
        "CSUACRD",
        "CSUAACM",
        "CSNDPKB",
        "CSNDPKG",
        "CSNDPKX",
        "CSNDRKD",
        "CSNDPKH",
        "CSNDPKR",
        "CSUAMKD",
        "CSNBMKP",
        "mkclone_simlib_ext",
    ];
    for (i, line) in lines.iter().enumerate() {
        let obj = line.as_object().unwrap();
        assert_eq!(obj["seq"], serde_json::json!(i + 1), "{line}");
        let verb = obj["verb"].as_str().unwrap();
        assert!(verbs.contains(&verb), "{line}");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let expected: &[&str] = if verb == "mkclone_simlib_ext" {
            &[
                "lengths_in",
                "lengths_out",
                "reason_code",
                "return_code",
                "seq",
                "verb",
            ]
        } else {
            &[
                "lengths_in",
                "lengths_out",
                "reason_code",
                "return_code",
                "rules_in",
                "rules_out",
                "seq",
                "verb",
            ]
        };
        assert_eq!(keys, expected, "{line}");
        assert!(obj["return_code"].is_i64() && obj["reason_code"].is_i64());
        for k in ["lengths_in", "lengths_out"] {
            let v = obj[k].as_array().unwrap();
            assert!(v.len() <= 8 && v.iter().all(|n| n.is_i64()), "{line}");
        }
        for k in ["rules_in", "rules_out"] {
            if let Some(rules) = obj.get(k) {
                assert!(
                    rules
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r.as_str().is_some_and(|s| s.len() <= 8)),
                    "{line}"
                );
            }
        }
    }
    // The SA key was generated: CSNDPKG RETAIN CLONE, its output length recorded.
    let pkg = lines
        .iter()
        .find(|l| l["verb"] == "CSNDPKG")
        .expect("CSNDPKG traced");
    assert_eq!(pkg["rules_in"], serde_json::json!(["RETAIN", "CLONE"]));
    assert!(pkg["lengths_out"][3].as_i64().unwrap() > 100, "{pkg}");
    assert_eq!(pkg["return_code"], 0);

    // No buffer: no 8-byte run of the SA certificate or of a card's keys appears.
    let mut secrets =
        long_hex_strings(&std::fs::read_to_string(dir.path().join("ceremony/sa.db")).unwrap());
    for e in std::fs::read_dir(library.parent().unwrap()).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            secrets.extend(long_hex_strings(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(
        secrets.iter().any(|s| s.len() > 1000),
        "the SA key's private key and certificate are among the strings checked"
    );
    let lower = text_of_trace.to_lowercase();
    for s in &secrets {
        let s = s.to_lowercase();
        for window in (0..s.len().saturating_sub(16)).step_by(16) {
            assert!(
                !lower.contains(&s[window..window + 16]),
                "key material in the trace: {}",
                &s[window..window + 16]
            );
        }
    }
}
