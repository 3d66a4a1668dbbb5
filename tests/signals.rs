//! Locks and signals, end to end on simulated cards:
//!
//! - a `clone` stopped (SIGSTOP) mid-ceremony: a second `clone` fails at once naming it
//!   (the ceremony lock is taken before any card's); the first, continued, finishes;
//! - a card held by another process: `status`, `clone --dry-run` and `clone` fail after a
//!   short wait naming the holder;
//! - SIGINT and SIGTERM mid-ceremony: exit 130 / 143 at the next safe point, an
//!   `interrupted` journal note, a message saying to run the same command, and the rerun
//!   finishes with nothing done twice;
//! - a stale simulated-card temporary file is removed on the next opening.
//!
//! The signals are real (`kill`), sent while the process waits at a known point after the
//! k-th journal record (`MKCLONE_TEST_ONLY_PAUSE_AFTER_JOURNAL_RECORD`).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod common;
use common::*;

const PAUSE_HOOK: &str = "MKCLONE_TEST_ONLY_PAUSE_AFTER_JOURNAL_RECORD";
const CRASH_HOOK: &str = "MKCLONE_TEST_ONLY_ABORT_AFTER_JOURNAL_RECORD";

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    /// One target.
    fn new() -> Self {
        Self::with_targets(1)
    }

    /// A rehearsal of `targets` targets, its cards made.
    fn with_targets(targets: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = rehearsal(dir.path(), targets);
        Self { dir, config }
    }

    fn c(&self) -> &str {
        self.config.to_str().unwrap()
    }

    fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("ceremony/journal.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn card(&self, card: u8) -> PathBuf {
        self.dir
            .path()
            .join(format!("cards/card-{card:02x}.000d.json"))
    }
}

/// A `clone` running in the background, its standard error read line by line.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stderr: Vec<String>,
}

impl Running {
    /// `clone` that pauses after journal record `pause` (the hook's value).
    fn clone(config: &str, pause: &str) -> Self {
        Self::clone_with(config, pause, &[])
    }

    /// The same, with more arguments.
    fn clone_with(config: &str, pause: &str, more: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mkclone"))
            .args(["clone", "--config", config])
            .args(more)
            .env(PAUSE_HOOK, pause)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Wait until the process says it paused at the hook.
    fn wait_for_pause(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let paused = line.contains("test hook: paused after journal record");
                    self.stderr.push(line);
                    if paused {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("mkclone never paused: {:?}", self.stderr);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    panic!("mkclone ended ({status}) before pausing: {:?}", self.stderr);
                }
            }
        }
    }

    /// Wait for the end: (status, stdout, stderr).
    fn finish(mut self) -> (ExitStatus, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("mkclone did not finish: {:?}", self.stderr);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        self.stderr.extend(self.lines.iter());
        (status, stdout, self.stderr.join("\n"))
    }
}

/// Hold a simulated card's lock as process `pid` (`mkclone clone`) would, until dropped.
fn lock_card(card: &Path, pid: u32) -> std::fs::File {
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("{}.lock", card.display()))
        .unwrap();
    lock.lock().unwrap();
    lock.set_len(0).unwrap();
    lock.write_all_at(format!("{pid}\nmkclone clone\n").as_bytes(), 0)
        .unwrap();
    lock
}

#[test]
fn a_stopped_clone_makes_a_second_one_fail_at_once_naming_it() {
    let s = Setup::new();
    // Paused mid-ceremony (after phase 2a's key generation), then stopped.
    let mut first = Running::clone(s.c(), "20:2000");
    first.wait_for_pause();
    kill(first.pid(), Signal::SIGSTOP).unwrap();
    // Stopped between two requests, it holds no card: status (no ceremony lock) works.
    let start = Instant::now();
    ok(&["status", "--config", s.c(), "target1"]);
    assert!(start.elapsed() < Duration::from_secs(5));

    // As if it had been stopped in the middle of a request: a card's lock held too.
    let card_lock = lock_card(&s.card(3), first.child.id());
    let holder = format!("pid {} (mkclone clone)", first.child.id());
    for args in [
        &["clone", "--config", s.c()][..],
        &["phase3a", "--config", s.c(), "--target", "target1"],
    ] {
        let start = Instant::now();
        let out = mkclone(args);
        let took = start.elapsed();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
        // The ceremony lock is taken first: no wait on the card at all.
        assert!(
            took < Duration::from_millis(1500),
            "{args:?} failed after {took:?}: {t}"
        );
        assert!(
            t.contains("another mkclone is working in") && t.contains(&holder),
            "{args:?} names the holder: {t}"
        );
    }
    drop(card_lock);

    kill(first.pid(), Signal::SIGCONT).unwrap();
    let (status, stdout, stderr) = first.finish();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("= source").count(), 1, "{stdout}");
    check_clone_finished(s.c(), 1);
}

#[test]
fn a_card_held_by_another_process_is_named_after_a_short_wait() {
    let s = Setup::new();
    let holder = lock_card(&s.card(3), std::process::id());
    let named = format!("in use by pid {} (mkclone clone)", std::process::id());

    for args in [
        &["status", "--config", s.c(), "target1"][..],
        &["clone", "--config", s.c(), "--dry-run"],
        &["clone", "--config", s.c()],
    ] {
        let start = Instant::now();
        let out = mkclone(args);
        let took = start.elapsed();
        let t = text(&out);
        assert!(!out.status.success(), "{args:?}: {t}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        assert!(
            t.contains(&named) && t.contains("card-03.000d.json"),
            "{args:?}: {t}"
        );
    }
    // The identity checks failed: nothing was written, not even the ceremony directory.
    assert!(!s.dir.path().join("ceremony").exists());

    drop(holder);
    ok(&["status", "--config", s.c(), "target1"]);
}

/// Interrupt `clone` with `signal` while it pauses after journal record `k`; check the
/// exit code, the message, the journal; then run it again to the end.
fn interrupt_and_resume(k: u64, signal: Signal, code: i32, during: &str) {
    let s = Setup::new();
    let mut run = Running::clone(s.c(), &k.to_string());
    run.wait_for_pause();
    kill(run.pid(), signal).unwrap();
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(code), "k={k}: {stdout}\n{stderr}");
    let name = format!("{signal:?}");
    assert!(
        stderr.contains(&format!(
            "mkclone: interrupted by {name} during {during}; nothing is half-done: run the same \
             command to resume"
        )),
        "k={k}: {stderr}"
    );

    let journal = s.journal();
    let last = journal.last().unwrap();
    assert_eq!(last["kind"], "note", "k={k}: {last}");
    assert_eq!(last["event"], "interrupted", "k={k}: {last}");
    assert_eq!(last["detail"]["signal"], name.as_str());
    assert_eq!(last["detail"]["during"], during);
    assert!(journal.len() as u64 > k);
    // Nothing half-done: every intent has its outcome.
    let count = |kind: &str| journal.iter().filter(|r| r["kind"] == kind).count();
    assert_eq!(count("intent"), count("outcome"), "k={k}");

    let out = ok(&["clone", "--config", s.c()]);
    assert_eq!(out.matches("= source").count(), 1, "k={k}: {out}");
    check_clone_finished(s.c(), 1);
    let interrupted = s
        .journal()
        .iter()
        .filter(|r| r["event"] == "interrupted")
        .count();
    assert_eq!(interrupted, 1);
}

#[test]
fn sigint_mid_ceremony_stops_at_a_safe_point_and_a_rerun_finishes() {
    // After set-eid's outcome on the SA: before the next request.
    interrupt_and_resume(
        4,
        Signal::SIGINT,
        130,
        "phase 1 on sa (before generate-retained-key)",
    );
    // Between phases.
    interrupt_and_resume(
        26,
        Signal::SIGINT,
        130,
        "phase 3a on target1 (before the phase starts)",
    );
    // After an intent, while the request is about to leave: the share is obtained and its
    // bundle written; the next share is not asked for.
    interrupt_and_resume(
        48,
        Signal::SIGINT,
        130,
        "phase 3c on source (before obtain-share)",
    );
}

#[test]
fn sigterm_mid_ceremony_stops_at_a_safe_point_and_a_rerun_finishes() {
    // After SET's intent for the first kind: SET completes, the second kind waits.
    interrupt_and_resume(
        68,
        Signal::SIGTERM,
        143,
        "phase 3d on target1 (before install-share)",
    );
}

#[test]
fn a_stale_card_temp_file_is_removed_on_the_next_opening() {
    let s = Setup::new();
    let card = s.card(3);
    let temp = |pid: u32| PathBuf::from(format!("{}.tmp.{pid}", card.display()));
    // A pid no process can have (above Linux's PID_MAX_LIMIT), and a live one (ours).
    let dead = temp(999_999_999);
    let live = temp(std::process::id());
    for p in [&dead, &live] {
        std::fs::write(p, b"{\"keys\": \"in the clear\"}").unwrap();
    }
    ok(&["status", "--config", s.c(), "target1"]);
    assert!(!dead.exists(), "the dead process's file is removed");
    assert!(live.exists(), "a live process's file is kept");
    assert!(Path::new(&card).exists());
}

/// A `clone` of three targets, every target's phases at once.
type Parallel = Setup;

impl Setup {
    fn parallel() -> Self {
        Self::with_targets(3)
    }

    fn clone(&self, env: (&str, &str)) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_mkclone"))
            .args(["clone", "--config", self.c(), "--jobs", "3"])
            .env(env.0, env.1)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn records(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("ceremony/journal.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Run it again to the end: every target equals the source, nothing done twice, and
    /// the journal verifies (the report reads and checks it).
    fn finish(&self, what: &str) {
        let out = mkclone(&["clone", "--config", self.c(), "--jobs", "3"]);
        let t = text(&out);
        assert!(out.status.success(), "{what}: the rerun failed:\n{t}");
        assert_eq!(t.matches("= source").count(), 3, "{what}: {t}");
        check_clone_finished(self.c(), 3);
        // 0, or 6: complete with open items (the share bundles are still on disk).
        let report = mkclone(&["report", "--config", self.c(), "--json"]);
        assert!(
            matches!(report.status.code(), Some(0 | 6)),
            "{what}: {}",
            text(&report)
        );
        let doc = json_in(&String::from_utf8_lossy(&report.stdout));
        assert_eq!(doc["journals"][0]["verified"], true, "{what}: {doc}");
        assert_eq!(doc["journals"][0]["end_to_end"], true, "{what}: {doc}");
        assert_eq!(doc["complete"], true, "{what}: {}", doc["missing"]);
    }
}

/// A few record numbers spread over `1..total`, drawn anew each run (the seed is printed,
/// and `MKCLONE_TEST_SEED` replays it).
fn kill_points(total: usize, count: usize) -> Vec<u64> {
    let seed: u64 = std::env::var("MKCLONE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
        });
    eprintln!("kill points drawn with MKCLONE_TEST_SEED={seed}");
    let mut x = seed | 1;
    (0..count)
        .map(|i| {
            // xorshift64*, one draw in each of `count` equal slices of the journal.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let slice = total / count;
            (i * slice + 1 + (r as usize) % slice.max(1)) as u64
        })
        .collect()
}

#[test]
fn a_parallel_clone_killed_at_random_points_finishes_on_rerun_with_nothing_twice() {
    // How long is a whole parallel ceremony's journal?
    let clean = Parallel::parallel();
    let out = clean.clone(("MKCLONE_UNUSED", ""));
    assert!(out.status.success(), "{}", text(&out));
    let total = clean.records();
    assert!(total > 150, "{total}");

    // The process dies (abort, as a kill -9 would) right after record k: the other
    // threads may be in the middle of a request to their card, or of a file write.
    for k in kill_points(total, 6) {
        let s = Parallel::parallel();
        let out = s.clone((CRASH_HOOK, &k.to_string()));
        assert!(!out.status.success(), "k={k}: it did not die");
        assert!(s.records() as u64 >= k, "k={k}");
        s.finish(&format!("crash after record {k}"));
    }
}

#[test]
fn a_parallel_clone_killed_while_phases_run_at_once_finishes_on_rerun() {
    // SIGKILL while paused right after record k, the other threads blocked on the
    // journal or in a request: 3a on every target, then 3c/3d overlapping.
    for k in [30u64, 70, 160] {
        let s = Parallel::parallel();
        let mut run = Running::clone_with(s.c(), &k.to_string(), &["--jobs", "3"]);
        run.wait_for_pause();
        kill(run.pid(), Signal::SIGKILL).unwrap();
        let (status, _, _) = run.finish();
        assert_eq!(status.code(), None, "k={k}: killed by a signal");
        s.finish(&format!("SIGKILL after record {k}"));
    }
}

#[test]
fn sigint_stops_every_parallel_phase_at_a_safe_point() {
    let s = Parallel::parallel();
    // Record 20: phase 1 is done, 2a and 3a run on the source and the three targets.
    let mut run = Running::clone_with(s.c(), "20", &["--jobs", "3"]);
    run.wait_for_pause();
    kill(run.pid(), Signal::SIGINT).unwrap();
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nothing is half-done: run the same command to resume"),
        "{stderr}"
    );
    let journal: Vec<serde_json::Value> =
        std::fs::read_to_string(s.dir.path().join("ceremony/journal.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    // Every thread stopped at a safe point: each intent has its outcome (naming it).
    let intents: Vec<u64> = journal
        .iter()
        .filter(|r| r["kind"] == "intent")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    let mut answered: Vec<u64> = journal
        .iter()
        .filter(|r| r["kind"] == "outcome")
        .map(|r| r["detail"]["intent"].as_u64().unwrap())
        .collect();
    // Concurrent phases' outcomes come in any order; each names its intent.
    answered.sort_unstable();
    assert_eq!(intents, answered, "every intent has exactly one outcome");
    assert!(
        journal.iter().any(|r| r["event"] == "interrupted"),
        "journaled"
    );
    s.finish("SIGINT at record 20");
}
