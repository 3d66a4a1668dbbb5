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
    std::fs::create_dir_all(&home).unwrap();
    let library = home.join("libcsulcca.so");
    std::fs::copy(simulated_cca_library(), &library).unwrap();
    library
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

/// CCA nodes mixed with a simulated node and a SoftHSM token: the SA is the simulated
/// card (on IBM's library the SA's certification is refused, so a rehearsal's SA is a
/// sim or PKCS#11 node), the source and target1 are CCA adapters, target2 a token.
#[test]
fn cca_nodes_mixed_with_sim_and_softhsm_nodes_under_the_rehearsal_rule() {
    let dir = tempfile::tempdir().unwrap();
    library_in(dir.path());
    let conf = softhsm(dir.path(), &["target2"], PIN);
    let env: &[(&str, &Path)] = &[("SOFTHSM2_CONF", &conf)];
    let nodes = sim_node("sa", 1)
        + &cca_node("source", "CCA00002")
        + &cca_node("target1", "CCA00003")
        + &token_node("target2");
    let cfg = common::write_plan(dir.path(), &(plan("") + &nodes));
    let refused = run(&cfg, &["clone"], env);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("rehearsal = true"),
        "{}",
        text(&refused)
    );

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
        &[("SOFTHSM2_CONF", conf), ("MKCLONE_TEST_PIN", PIN)],
    );
}
