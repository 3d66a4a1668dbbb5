//! End-to-end tests of the binary with PKCS#11 nodes on SoftHSM 2: a whole `clone`, a
//! mixed rehearsal (simulated source, SoftHSM target) and the rehearsal rule, PIN errors,
//! and `devices` listing the tokens. Each test has its own SoftHSM configuration and token
//! directory; nothing outside its temporary directory is touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{softhsm_module as module, text};

/// A private SoftHSM with the given tokens, all with the user PIN [`PIN`].
fn softhsm(dir: &Path, tokens: &[&str]) -> PathBuf {
    common::softhsm(dir, tokens, PIN)
}

const PIN: &str = "user-pin-5678";
const SO_PIN: &str = common::SOFTHSM_SO_PIN;

fn run(conf: &Path, args: &[&str], pin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkclone"));
    // Token locks beside the test's SoftHSM, not in the machine's /run/lock/mkclone.
    let locks = conf.parent().unwrap().join("locks");
    cmd.args(args)
        .env("SOFTHSM2_CONF", conf)
        .env(mkclone::pkcs11::LOCK_DIR_ENV, locks)
        .env("MKCLONE_TEST_SO_PIN", SO_PIN)
        .env_remove("MKCLONE_TEST_PIN");
    if let Some(p) = pin {
        cmd.env("MKCLONE_TEST_PIN", p);
    }
    cmd.output().unwrap()
}

/// `sim init` (the simulated nodes' cards), phase 1 (the ceremony's nonce) and
/// `master-key random` on the source, all successful: a ceremony ready for `clone`.
fn set_up(conf: &Path, c: &str) {
    for args in [
        &["sim", "init", "--config", c][..],
        &["phase1", "--config", c],
        &["master-key", "random", "--config", c, "--node", "source"],
    ] {
        let setup = run(conf, args, Some(PIN));
        assert!(setup.status.success(), "{}", text(&setup));
    }
}

/// [`set_up`], then `clone`, successful; the clone's output.
fn init_and_clone(conf: &Path, c: &str) -> Output {
    set_up(conf, c);
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
    three_tokens_and(dir, &[])
}

/// [`three_tokens`], with more tokens labelled `others` on the same SoftHSM.
fn three_tokens_and(dir: &Path, others: &[&str]) -> (PathBuf, PathBuf) {
    let labels: Vec<&str> = ["sa", "source", "target1"]
        .into_iter()
        .chain(others.iter().copied())
        .collect();
    let conf = softhsm(dir, &labels);
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

/// A private SoftHSM with the token `source`, and a rehearsal plan with the token node
/// `source` (see [`token_source_plan`]): (the SoftHSM configuration, the plan's path).
fn a_token_source(dir: &Path, source: String) -> (PathBuf, PathBuf) {
    let conf = softhsm(dir, &["source"]);
    let cfg = dir.join("mkclone.toml");
    std::fs::write(&cfg, token_source_plan(dir, source)).unwrap();
    (conf, cfg)
}

/// A rehearsal plan with the token node `source` between a simulated SA and target, whose
/// cards are in `dir/cards`.
fn token_source_plan(dir: &Path, source: String) -> String {
    let cards = dir.join("cards");
    plan("rehearsal = true")
        + &sim_node("sa", &cards, 1, "SIM SA")
        + &source
        + &sim_node("target1", &cards, 3, "SIM T1")
}

/// What a PKCS#11 module says of its tokens reaches the terminal with its control
/// characters escaped: a token whose label holds an escape sequence (anyone with the SO
/// PIN of a token on the module can label it so) cannot retitle the terminal, or hide
/// lines, through `devices`.
#[test]
fn a_token_label_with_an_escape_sequence_is_shown_escaped_by_devices() {
    let dir = tempfile::tempdir().unwrap();
    let label = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let (conf, cfg) = three_tokens_and(dir.path(), &[label]);
    let devices = run(&conf, &["devices", "--config", cfg.to_str().unwrap()], None);
    let shown = String::from_utf8_lossy(&devices.stdout);
    assert!(devices.status.success(), "{}", text(&devices));
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "a control character reached the terminal: {shown:?}"
    );
    assert!(
        shown.contains("evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"),
        "the label is shown, escaped: {shown}"
    );
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
    let refused = common::exit_code(&run(&conf, &["clone", "--config", c], Some(PIN)), 3);
    assert!(refused.contains("rehearsal = true"), "{refused}");

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
    let (conf, cfg) = a_token_source(dir.path(), token_node("source", "SOURCE"));
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
        text(&ok).contains("what this node cannot protect (5):")
            && text(&ok).contains("SoftHSM is software"),
        "{}",
        text(&ok)
    );
}

#[test]
fn a_source_without_so_pin_stops_at_its_share_export_and_resumes_once_it_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let source = token_node_without_so_pin("source", "SOURCE");
    let (conf, cfg) = a_token_source(dir.path(), source);
    let c = cfg.to_str().unwrap();
    set_up(&conf, c);
    let stopped = run(&conf, &["clone", "--config", c], Some(PIN));
    assert!(!stopped.status.success(), "{}", text(&stopped));
    assert!(
        text(&stopped).contains("security officer") && text(&stopped).contains("so_pin"),
        "{}",
        text(&stopped)
    );
    assert!(!text(&stopped).contains(SO_PIN));
    let source = token_node("source", "SOURCE");
    std::fs::write(&cfg, token_source_plan(dir.path(), source)).unwrap();
    let resumed = run(&conf, &["clone", "--config", c], Some(PIN));
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(!text(&resumed).contains(SO_PIN));
}

/// mkclone with `args`, with the pty's slave side as its controlling terminal (`setsid
/// --ctty`: a new session whose terminal is its standard input), so that a key typed at
/// the master side is what the person at the terminal types: Ctrl-C sends SIGINT to
/// mkclone. Its standard output and error are captured.
fn on_a_terminal(conf: &Path, args: &[&str], tty: &std::fs::File) -> std::process::Child {
    let locks = conf.parent().unwrap().join("locks");
    Command::new("setsid")
        .args(["--ctty", env!("CARGO_BIN_EXE_mkclone")])
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .env(mkclone::pkcs11::LOCK_DIR_ENV, locks)
        .env("MKCLONE_TEST_PIN", PIN)
        .stdin(tty.try_clone().unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setsid (util-linux)")
}

/// Read the terminal's screen at `person` into `shown` until it holds `wanted`, for at most
/// `within`; whether it did.
fn screen_shows(
    person: &std::fs::File,
    shown: &mut Vec<u8>,
    wanted: &str,
    within: std::time::Duration,
) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::io::Read;
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + within;
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(shown).contains(wanted) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let left = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        if left == 0 {
            return false;
        }
        let mut fds = [PollFd::new(person.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(left)).unwrap_or(0) == 0 {
            continue;
        }
        match (&*person).read(&mut chunk) {
            Ok(n) if n > 0 => shown.extend_from_slice(&chunk[..n]),
            // EIO: no process holds the terminal's side any more.
            _ => return false,
        }
    }
    true
}

fn echo_on(tty: &std::fs::File) -> bool {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    tcgetattr(tty)
        .unwrap()
        .local_flags
        .contains(LocalFlags::ECHO)
}

/// Ctrl-C at a user PIN prompt (`pin = "prompt"`, asked when the node opens, before the
/// ceremony's signal handlers exist): the command ends by SIGINT as before, but with the
/// terminal's echo back on (it stayed off under a shell that does not restore the
/// terminal, such as dash).
#[test]
fn ctrl_c_at_a_user_pin_prompt_ends_the_command_with_echo_back() {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let source = token_node("source", "SOURCE")
        .replace("pin = { env = \"MKCLONE_TEST_PIN\" }", "pin = \"prompt\"");
    let (conf, cfg) = a_token_source(dir.path(), source);
    let c = cfg.to_str().unwrap();
    let question = "PIN for token \"source\" (node source): ";
    let pty = nix::pty::openpty(None, None).unwrap();
    let (person, tty) = (
        std::fs::File::from(pty.master),
        std::fs::File::from(pty.slave),
    );
    let child = on_a_terminal(&conf, &["status", "--config", c, "source"], &tty);
    let mut shown = Vec::new();
    let asked = screen_shows(&person, &mut shown, question, Duration::from_secs(60));
    let echo_at_the_question = echo_on(&tty);
    (&person).write_all(b"\x03").unwrap();
    let out = child.wait_with_output().unwrap();
    screen_shows(
        &person,
        &mut shown,
        &format!("{question}\r\n"),
        Duration::from_secs(1),
    );
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert!(asked, "{shown:?}\n{}", text(&out));
    assert!(!echo_at_the_question, "the prompt waits with echo off");
    assert_eq!(
        out.status.signal(),
        Some(2),
        "ended by SIGINT: {}",
        text(&out)
    );
    assert!(echo_on(&tty), "the terminal's echo is back");
    assert_eq!(shown, format!("{question}\r\n"));
}

/// Ctrl-C at the source's SO PIN prompt (`so_pin = "prompt"`, asked at its first share
/// export in phase 3c, the ceremony's signal handlers in place): the prompt is cancelled at
/// once and the terminal's echo comes back; the SO PIN typed afterwards is not read, no
/// share is exported, and `clone` stops as interrupted (exit 130, journaled, "run the same
/// command to resume"). Run again, it asks again and finishes. (Before, the first Ctrl-C
/// did not cancel the prompt: the PIN typed after it exported a share before the stop.)
/// `clone` on a new pseudo-terminal: (the side a person types into, mkclone's terminal,
/// the running command).
fn clone_on_a_new_terminal(
    conf: &Path,
    c: &str,
) -> (std::fs::File, std::fs::File, std::process::Child) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let (person, tty) = (
        std::fs::File::from(pty.master),
        std::fs::File::from(pty.slave),
    );
    let child = on_a_terminal(conf, &["clone", "--config", c], &tty);
    (person, tty, child)
}

#[test]
fn ctrl_c_at_the_so_pin_prompt_stops_the_clone_before_any_export_with_echo_back() {
    use std::io::Write;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let source = token_node_without_so_pin("source", "SOURCE") + "so_pin = \"prompt\"\n";
    let (conf, cfg) = a_token_source(dir.path(), source);
    let c = cfg.to_str().unwrap();
    set_up(&conf, c);
    let question = "security officer's (SO) PIN for token \"source\" (node source): ";

    let (person, tty, child) = clone_on_a_new_terminal(&conf, c);
    let mut shown = Vec::new();
    let asked = screen_shows(&person, &mut shown, question, Duration::from_secs(300));
    let echo_at_the_question = echo_on(&tty);
    // Ctrl-C, then the SO PIN typed all the same.
    (&person).write_all(b"\x03").unwrap();
    let woken = screen_shows(
        &person,
        &mut shown,
        &format!("{question}\r\n"),
        Duration::from_secs(5),
    );
    (&person)
        .write_all(format!("{SO_PIN}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert!(asked, "{shown:?}\n{}", text(&out));
    assert!(!echo_at_the_question, "the prompt waits with echo off");
    assert!(woken, "Ctrl-C did not cancel the prompt: {shown:?}");
    assert!(echo_on(&tty), "the terminal's echo is back");
    let stopped = common::exit_code(&out, 130);
    assert!(
        stopped.contains("interrupted by SIGINT during phase 3c on source (before obtain-share)")
            && stopped.contains("run the same command to resume"),
        "{stopped}"
    );
    assert!(!stopped.contains(SO_PIN) && !shown.contains(SO_PIN));
    // Nothing exported: no share bundle, and the journal's obtain-share failed, saying
    // nothing was sent, followed by the interrupted note.
    let shares = dir.path().join("ceremony/shares");
    let bundles = std::fs::read_dir(&shares).map(|d| d.count()).unwrap_or(0);
    assert_eq!(bundles, 0, "no share exported");
    let journal = std::fs::read_to_string(dir.path().join("ceremony/journal.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let obtains: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"] == "obtain-share" && r["kind"] == "outcome")
        .collect();
    assert_eq!(obtains.len(), 1, "{journal}");
    assert_eq!(obtains[0]["detail"]["result"], "failed", "{journal}");
    assert!(
        obtains[0]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("SIGINT cancelled it before anything was sent to the node"),
        "{journal}"
    );
    let last = records.last().unwrap();
    assert_eq!(
        (&last["kind"], &last["event"]),
        (
            &serde_json::json!("note"),
            &serde_json::json!("interrupted")
        ),
        "{journal}"
    );

    // Run again: asked again; with the SO PIN typed, the clone finishes.
    let (person, tty, child) = clone_on_a_new_terminal(&conf, c);
    let mut shown = Vec::new();
    let asked = screen_shows(&person, &mut shown, question, Duration::from_secs(300));
    (&person)
        .write_all(format!("{SO_PIN}\n").as_bytes())
        .unwrap();
    let resumed = child.wait_with_output().unwrap();
    assert!(asked, "{:?}", String::from_utf8_lossy(&shown));
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(!text(&resumed).contains(SO_PIN));
    assert!(echo_on(&tty));
    // Two shares (the threshold) of each of the two master keys for the target.
    assert_eq!(std::fs::read_dir(&shares).unwrap().count(), 4);
}

/// The SO PIN's question stays whole while other targets' phases run. `clone` with two
/// jobs, its standard output and error on the terminal too (action lines and the progress
/// bar): target1's 3c asks for the source's SO PIN while target2's 3b runs on a slow SA.
/// From the question to the answer nothing else reaches the terminal; the lines held back
/// come after it, and the clone finishes. Before, target2's lines were written under the
/// question and the bar, redrawn, erased the line it was on.
#[test]
fn the_so_pin_question_is_not_written_over_by_other_targets_phases() {
    use std::io::Write;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm(dir.path(), &["source"]);
    let cards = dir.path().join("cards");
    let cfg = dir.path().join("mkclone.toml");
    let plan = plan("rehearsal = true").replace(
        "targets = [\"target1\"]",
        "targets = [\"target1\", \"target2\"]",
    ) + &sim_node("sa", &cards, 1, "SIM SA")
        + &(token_node_without_so_pin("source", "SOURCE") + "so_pin = \"prompt\"\n")
        + &sim_node("target1", &cards, 3, "SIM T1")
        + &sim_node("target2", &cards, 4, "SIM T2");
    std::fs::write(&cfg, plan).unwrap();
    let c = cfg.to_str().unwrap();
    set_up(&conf, c);
    let question = "security officer's (SO) PIN for token \"source\" (node source): ";

    let pty = nix::pty::openpty(None, None).unwrap();
    let (person, tty) = (
        std::fs::File::from(pty.master),
        std::fs::File::from(pty.slave),
    );
    let locks = dir.path().join("locks");
    let child = Command::new("setsid")
        .args(["--ctty", env!("CARGO_BIN_EXE_mkclone")])
        .args(["clone", "--config", c, "--jobs", "2"])
        .env("SOFTHSM2_CONF", &conf)
        .env(mkclone::pkcs11::LOCK_DIR_ENV, locks)
        .env("MKCLONE_TEST_PIN", PIN)
        .env("TERM", "xterm")
        // Every request to the SA takes 250 ms: target2's 3b outlasts target1's checks.
        .env(mkclone::nodes::SIM_LATENCY_ENV, "sa=250")
        .stdin(tty.try_clone().unwrap())
        .stdout(tty.try_clone().unwrap())
        .stderr(tty.try_clone().unwrap())
        .spawn()
        .expect("setsid (util-linux)");
    drop(tty);
    let mut shown = Vec::new();
    let asked = screen_shows(&person, &mut shown, question, Duration::from_secs(300));
    let at_question = String::from_utf8_lossy(&shown)
        .rfind(question)
        .map(|i| i + question.len());
    // Whatever reaches the terminal in the next 3 s (target2's 3b needs more than one SA
    // request, each 250 ms).
    screen_shows(&person, &mut shown, "\u{0}never", Duration::from_secs(3));
    let during = String::from_utf8_lossy(&shown)[at_question.unwrap_or(0)..].to_string();
    (&person)
        .write_all(format!("{SO_PIN}\n").as_bytes())
        .unwrap();
    // The rest, until the command ends and the terminal's side closes (EIO).
    screen_shows(&person, &mut shown, "\u{0}never", Duration::from_secs(300));
    let out = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&shown).into_owned();
    assert!(asked, "{screen:?}");
    assert_eq!(during, "", "written under the question: {screen:?}");
    assert!(out.status.success(), "{screen}");
    assert!(!screen.contains(SO_PIN));
    let after = &screen[at_question.unwrap()..];
    assert!(
        after.contains("target2  3b  on sa: CSR key of target2 certified by SA"),
        "target2's 3b lines came after the answer: {screen:?}"
    );
}

/// The SO PIN prompt of a `clone` run in the background (a job of an interactive shell,
/// not the terminal's foreground): its echo off is a `tcsetattr` the terminal answers with
/// SIGTTOU. Caught during a ceremony (so that a stop waits for the device calls in flight),
/// it must still stop the process, as the default action did, not make the prompt's call
/// restart forever: the process is seen stopped, as `bg`/`fg` users expect. (A first version
/// handed SIGTTOU to the prompt, which never got back to its loop: a busy loop, never
/// stopped.)
#[test]
fn a_clone_in_the_background_stops_at_its_so_pin_prompt() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let source = token_node_without_so_pin("source", "SOURCE") + "so_pin = \"prompt\"\n";
    let (conf, cfg) = a_token_source(dir.path(), source);
    let c = cfg.to_str().unwrap();
    set_up(&conf, c);
    let pty = nix::pty::openpty(None, None).unwrap();
    let (_person, tty) = (
        std::fs::File::from(pty.master),
        std::fs::File::from(pty.slave),
    );
    let pid_file = dir.path().join("clone.pid");
    // An interactive-like shell (job control on) that owns the terminal and runs clone as a
    // background job, staying alive (a stopped job of an exited shell would be sent SIGHUP).
    let mut shell = Command::new("setsid")
        .args(["--ctty", "bash", "-m", "-c"])
        .arg(r#""$0" clone --config "$1" 2>"$3" & echo $! > "$2"; while kill -0 $! 2>/dev/null; do sleep 0.1; done"#)
        .args([env!("CARGO_BIN_EXE_mkclone"), c])
        .arg(&pid_file)
        .arg(dir.path().join("clone.err"))
        .env("SOFTHSM2_CONF", &conf)
        .env(mkclone::pkcs11::LOCK_DIR_ENV, dir.path().join("locks"))
        .env("MKCLONE_TEST_PIN", PIN)
        .stdin(tty.try_clone().unwrap())
        .stdout(std::process::Stdio::null())
        // bash's job control works on its standard error's terminal.
        .stderr(tty.try_clone().unwrap())
        .spawn()
        .expect("setsid and bash");
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the background job never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next())
            })
    };
    let mut seen = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        seen = state();
        if seen == Some('T') || seen.is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = |pid: i32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    // `kill %1` of a stopped job: SIGTERM, then SIGCONT. Continued, the prompt's echo-off
    // raises SIGTTOU again: the job stops again (or ends), and never spins.
    let mut again = None;
    if seen == Some('T') {
        for signal in [
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGCONT,
        ] {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        std::thread::sleep(Duration::from_millis(100));
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            again = state();
            if again == Some('T') || again.is_none() || Instant::now() > until {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // What the job was doing, for a failure's message.
    let doing: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            format!("{} in {:?}", read("comm").trim(), read("wchan"))
        })
        .collect();
    let said = std::fs::read_to_string(dir.path().join("clone.err")).unwrap_or_default();
    kill(pid);
    kill(shell.id() as i32);
    let _ = shell.wait();
    assert_eq!(
        seen,
        Some('T'),
        "the background clone was not stopped at its prompt: {doing:?}\n{said}"
    );
    assert!(
        matches!(again, Some('T') | None),
        "after kill %1 the job neither stopped again nor ended: {again:?} {doing:?}"
    );
    // Stopped before any share left the source: nothing exported.
    let shares = dir.path().join("ceremony/shares");
    assert_eq!(
        std::fs::read_dir(&shares).map(|d| d.count()).unwrap_or(0),
        0
    );
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

#[test]
fn devices_prints_each_tokens_uri_and_a_node_may_name_its_token_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm(dir.path(), &["source", "R&D; 100%"]);
    let cfg = dir.path().join("mkclone.toml");
    let cards = dir.path().join("cards");
    let sims = sim_node("sa", &cards, 1, "SIM SA") + &sim_node("target1", &cards, 3, "SIM T1");
    std::fs::write(
        &cfg,
        plan("rehearsal = true") + &sims + &token_node("source", "SOURCE"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let devices = run(&conf, &["devices", "--config", c, "--json"], None);
    assert!(devices.status.success(), "{}", text(&devices));
    let v: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    let tokens: Vec<&serde_json::Value> = v["pkcs11"][0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["token"].as_object().map(|_| &s["token"]))
        .filter(|t| t["initialized"] == true)
        .collect();
    assert_eq!(tokens.len(), 2, "{v}");
    let uri_of = |label: &str| {
        tokens
            .iter()
            .find(|t| t["label"] == label)
            .unwrap_or_else(|| panic!("no token {label:?}: {v}"))["uri"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let source = uri_of("source");
    let serial = tokens.iter().find(|t| t["label"] == "source").unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        source,
        format!(
            "pkcs11:token=source;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial={serial}\
             ?module-path={}",
            module().display()
        )
    );
    // A label with characters a URI must encode.
    assert!(
        uri_of("R&D; 100%").starts_with("pkcs11:token=R%26D%3B%20100%25;"),
        "{}",
        uri_of("R&D; 100%")
    );
    // The text listing shows the URI under each token.
    let listing = run(&conf, &["devices", "--config", c], None);
    assert!(text(&listing).contains(&source), "{}", text(&listing));

    // The node names its token by the URI alone: module, label and serial from it.
    let by_uri = format!(
        "\n[nodes.source]\nbackend = \"pkcs11\"\ntoken = \"{source}\"\n\
         pin = {{ env = \"MKCLONE_TEST_PIN\" }}\neid = \"SOURCE\"\n"
    );
    std::fs::write(&cfg, plan("rehearsal = true") + &sims + &by_uri).unwrap();
    let ok = run(&conf, &["status", "--config", c, "source"], Some(PIN));
    assert!(ok.status.success(), "{}", text(&ok));
    // Another serial in the URI: refused, both serials named.
    let wrong = by_uri.replace(&format!("serial={serial}"), "serial=0000000000000000");
    std::fs::write(&cfg, plan("rehearsal = true") + &sims + &wrong).unwrap();
    let refused = run(&conf, &["status", "--config", c, "source"], Some(PIN));
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("0000000000000000") && text(&refused).contains(&serial),
        "{}",
        text(&refused)
    );
    // A PIN in the URI: the configuration is refused, the PIN never shown.
    let with_pin = by_uri.replace("?module-path", "?pin-value=31337&module-path");
    std::fs::write(&cfg, plan("rehearsal = true") + &sims + &with_pin).unwrap();
    let refused = run(&conf, &["status", "--config", c, "source"], Some(PIN));
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("[nodes.source] `token`: pin-value is refused"),
        "{}",
        text(&refused)
    );
    assert!(!text(&refused).contains("31337"), "{}", text(&refused));
}

/// The private opencryptoki fixture of crates/pkcs11's tests (private namespaces, its own
/// pkcsslotd; fails, never skips, without opencryptoki).
#[path = "../crates/pkcs11/tests/common/opencryptoki.rs"]
mod opencryptoki;

#[test]
fn a_clone_onto_an_opencryptoki_target_then_abort() {
    if !opencryptoki::in_private_opencryptoki("a_clone_onto_an_opencryptoki_target_then_abort") {
        return;
    }
    let ock = opencryptoki::Opencryptoki::start();
    ock.init_token("ocktarget");
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm(dir.path(), &["sa", "source"]);
    let cfg = dir.path().join("mkclone.toml");
    let ock_node = format!(
        "\n[nodes.target1]\nbackend = \"pkcs11\"\n\
         token = \"pkcs11:token=ocktarget?module-path={}\"\n\
         pin = {{ env = \"MKCLONE_TEST_OCK_PIN\" }}\neid = \"OCK TARGET\"\n",
        opencryptoki::MODULE
    );
    std::fs::write(
        &cfg,
        plan("")
            + &token_node("sa", "SA TOKEN")
            + &token_node("source", "SOURCE TOKEN")
            + &ock_node,
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let mkclone = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mkclone"))
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .env(mkclone::pkcs11::LOCK_DIR_ENV, dir.path().join("locks"))
            .env("MKCLONE_TEST_PIN", PIN)
            .env("MKCLONE_TEST_OCK_PIN", opencryptoki::USER_PIN)
            .env("MKCLONE_TEST_SO_PIN", SO_PIN)
            .output()
            .unwrap()
    };
    for step in [
        &["phase1", "--config", c][..],
        &["master-key", "random", "--config", c, "--node", "source"],
    ] {
        let out = mkclone(step);
        assert!(out.status.success(), "{step:?}: {}", text(&out));
    }
    let clone = mkclone(&["clone", "--config", c]);
    assert!(clone.status.success(), "{}", text(&clone));
    // What opencryptoki 3.8.1 cannot protect is said when the token is opened, and by status.
    let limit = "this token does not know CKA_WRAP_WITH_TRUSTED";
    assert!(text(&clone).contains(limit), "{}", text(&clone));
    let status = mkclone(&["status", "--config", c, "target1"]);
    assert!(
        text(&status).contains("cannot protect") && text(&status).contains(limit),
        "{}",
        text(&status)
    );
    // The target's CURRENT is the source's, read through the CLI on both tokens.
    let current = |node: &str| {
        let out = mkclone(&["status", "--config", c, node, "--json"]);
        assert!(out.status.success(), "{node}: {}", text(&out));
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let v: serde_json::Value = serde_json::from_str(&s[s.find('{').unwrap()..]).unwrap();
        v["status"]["registers"].clone()
    };
    let source = current("source");
    let target = current("target1");
    for kind in 0..2 {
        assert!(
            source[kind]["current_patterns"]
                .as_array()
                .is_some_and(|p| p.len() == 1),
            "{source}"
        );
        assert_eq!(
            target[kind]["current_patterns"], source[kind]["current_patterns"],
            "source {source}\ntarget {target}"
        );
    }
    // Abort on the opencryptoki target (no CKA_CHECK_VALUE there): every step runs.
    let abort = mkclone(&[
        "abort",
        "--config",
        c,
        "--target",
        "target1",
        "--clear-new",
        "--delete-keys",
        "--unregister-sa",
    ]);
    assert!(abort.status.success(), "{}", text(&abort));
    let after = mkclone(&["status", "--config", c, "target1", "--json"]);
    assert!(after.status.success(), "{}", text(&after));
    let devices = mkclone(&["devices", "--config", c]);
    assert!(
        text(&devices).contains(&format!(
            "pkcs11:token=ocktarget;manufacturer=IBM%20Corp.;model=IBM%20SoftTok;serial=123\
             ?module-path={}",
            opencryptoki::MODULE
        )),
        "{}",
        text(&devices)
    );
}
