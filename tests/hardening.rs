//! Process hardening (src/hardening.rs) and secrets' Debug output.
//!
//! - `harden_process` in a child process (this test binary run again with an environment
//!   variable): core limit 0 and not dumpable, checked by the child itself (getrlimit,
//!   PR_GET_DUMPABLE, /proc/self/status) and by this process (/proc/<pid>/limits) while the
//!   child waits; memory locked when RLIMIT_MEMLOCK allows it, skipped with the reason when
//!   it does not.
//! - The `mkclone` binary hardens itself at the start of `main` and logs it (`-v`): it is
//!   stopped while it reads its configuration from a FIFO, and inspected from outside.
//! - Every secret-holding type's Debug output is redacted.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mkclone::hardening::{self, HardeningReport, StepResult};
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

const CHILD_ENV: &str = "MKCLONE_TEST_ONLY_HARDENING_CHILD";
const MARK: &str = "HARDENING-CHILD ";

/// `VmLck` of /proc/<pid>/status, in kB.
fn vm_locked_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// "Max core file size" soft and hard limits of /proc/<pid>/limits.
fn core_limits(limits: &str) -> Option<(String, String)> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))?;
    let mut fields = line["Max core file size".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

/// The child's side: runs only when this binary is started by `harden_in_a_child`.
#[test]
fn hardening_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    // Set the memory-lock limit the parent asked for, before hardening.
    let (_, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    let raised = match mode.as_str() {
        "low" => {
            setrlimit(Resource::RLIMIT_MEMLOCK, 64 * 1024, hard).unwrap();
            false
        }
        "high" => setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY)
            .or_else(|_| setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard))
            .is_ok(),
        other => panic!("unknown mode {other}"),
    };
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    let report = hardening::harden_process();
    let (core_soft, core_hard) = getrlimit(Resource::RLIMIT_CORE).unwrap();
    let dumpable = nix::sys::prctl::get_dumpable().unwrap();
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let mut out = std::io::stdout().lock();
    let json = serde_json::json!({
        "report": report,
        "memlock_soft": if soft == RLIM_INFINITY { None } else { Some(soft) },
        "memlock_raised": raised,
        "core": [core_soft, core_hard],
        "dumpable": dumpable,
        "vm_locked_kb": vm_locked_kb(&status),
    });
    writeln!(out, "{MARK}{json}").unwrap();
    writeln!(out, "{MARK}ready").unwrap();
    out.flush().unwrap();
    drop(out);
    // Wait until the parent has looked at /proc/<pid> from outside.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

struct ChildResult {
    json: serde_json::Value,
    outside_core: (String, String),
}

fn harden_in_a_child(mode: &str) -> ChildResult {
    let exe = std::env::current_exe().unwrap();
    // The child's stderr is this test's (inherited).
    let mut child = Command::new(exe)
        .args([
            "hardening_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut json = None;
    let mut ready = false;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest may have written "test hardening_child ... " on the same line.
        match line.find(MARK).map(|at| &line[at + MARK.len()..]) {
            Some("ready") => {
                ready = true;
                break;
            }
            Some(j) => json = Some(serde_json::from_str(j).unwrap()),
            None => {}
        }
    }
    assert!(ready, "the child did not run the hardening test");
    // The child is waiting on its stdin: look at it from outside.
    let limits = fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let outside_core = core_limits(&limits).expect("a core-size line in /proc/<pid>/limits");
    drop(child.stdin.take());
    // Read the rest (libtest's summary), so that the child never writes to a closed pipe.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "child: {status}: {rest:?}");
    ChildResult {
        json: json.expect("the child's report"),
        outside_core,
    }
}

fn report_of(json: &serde_json::Value) -> HardeningReport {
    let steps = json["report"]["steps"].as_array().unwrap();
    HardeningReport {
        steps: steps
            .iter()
            .map(|s| {
                let detail = s["result"]["detail"].as_str().unwrap().to_string();
                hardening::Step {
                    name: match s["name"].as_str().unwrap() {
                        "core-limit" => "core-limit",
                        "dumpable" => "dumpable",
                        "memory-lock" => "memory-lock",
                        other => panic!("unknown step {other}"),
                    },
                    result: match s["result"]["status"].as_str().unwrap() {
                        "done" => StepResult::Done(detail),
                        "skipped" => StepResult::Skipped(detail),
                        "failed" => StepResult::Failed(detail),
                        other => panic!("unknown status {other}"),
                    },
                }
            })
            .collect(),
    }
}

/// Core files and dumping are off, as the child's report says too; the report.
fn check_core_and_dumpable(r: &ChildResult) -> HardeningReport {
    assert_eq!(r.json["core"], serde_json::json!([0, 0]), "RLIMIT_CORE 0/0");
    assert_eq!(r.json["dumpable"], false, "PR_GET_DUMPABLE 0");
    assert_eq!(
        r.outside_core,
        ("0".into(), "0".into()),
        "/proc/<pid>/limits"
    );
    let report = report_of(&r.json);
    let names: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(names, ["core-limit", "dumpable", "memory-lock"]);
    for name in ["core-limit", "dumpable"] {
        assert!(
            matches!(report.step(name).unwrap().result, StepResult::Done(_)),
            "{report:?}"
        );
    }
    report
}

#[test]
fn harden_process_disables_core_files_and_dumping_and_skips_a_small_memlock() {
    let r = harden_in_a_child("low");
    let report = check_core_and_dumpable(&r);
    let step = report.step("memory-lock").unwrap();
    match &step.result {
        StepResult::Skipped(why) => {
            assert!(why.contains("RLIMIT_MEMLOCK is 64 KiB"), "{why}");
            assert!(why.contains("ulimit -l"), "{why}");
        }
        other => panic!("a 64 KiB limit must be left alone: {other:?}"),
    }
    assert_eq!(r.json["vm_locked_kb"], 0);
}

#[test]
fn harden_process_locks_memory_when_the_limit_allows_it() {
    let r = harden_in_a_child("high");
    let report = check_core_and_dumpable(&r);
    let step = report.step("memory-lock").unwrap();
    let allows = match r.json["memlock_soft"].as_u64() {
        None => true,
        Some(soft) => soft >= hardening::MEMLOCK_MINIMUM,
    };
    if allows {
        match &step.result {
            StepResult::Done(_) => {
                let locked = r.json["vm_locked_kb"].as_u64().unwrap();
                assert!(locked > 0, "VmLck {locked} kB after mlockall");
            }
            // mlockall may still be refused (e.g. a locked-memory cgroup limit): reported.
            StepResult::Failed(why) => assert!(why.contains("mlockall"), "{why}"),
            StepResult::Skipped(why) => panic!("the limit allows locking: {why}"),
        }
    } else {
        // This machine's hard limit is small and we may not raise it.
        assert_eq!(r.json["memlock_raised"], true);
        assert!(matches!(step.result, StepResult::Skipped(_)), "{step:?}");
    }
}

// ----------------------------------------------------------------------------------------
// The binary
// ----------------------------------------------------------------------------------------

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mkclone did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Open `fifo` for writing once a reader has it open (non-blocking: ENXIO until then).
fn open_fifo_writer(fifo: &Path, child: &mut Child) -> fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let start = Instant::now();
    loop {
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(fifo)
        {
            Ok(f) => return f,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {}
            Err(e) => panic!("open the FIFO: {e}"),
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            panic!("mkclone exited ({status}) before reading its configuration: {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "mkclone never opened its configuration"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_binary_hardens_itself_at_start_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.toml");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mkclone"))
        .args(["-v", "status", "--config"])
        .arg(&fifo)
        .arg("sa")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once mkclone has opened its configuration, `main` has hardened the process.
    let mut writer = open_fifo_writer(&fifo, &mut child);
    let pid = child.id();
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert_eq!(
        core_limits(&limits),
        Some(("0".into(), "0".into())),
        "mkclone's RLIMIT_CORE, from /proc/{pid}/limits"
    );
    // Not dumpable: the kernel makes /proc/<pid> belong to root (visible when we are not).
    let our_uid = fs::metadata(dir.path()).unwrap().uid();
    if our_uid != 0 {
        let owner = fs::metadata(format!("/proc/{pid}/status")).unwrap().uid();
        assert_eq!(
            owner, 0,
            "a non-dumpable process's /proc entries belong to root"
        );
    }
    writer.write_all(b"this is = = not toml\n").unwrap();
    drop(writer);
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(3), "an invalid configuration: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("hardening:"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("core-limit") && l.contains("RLIMIT_CORE")),
        "{stderr}"
    );
    assert!(lines.iter().any(|l| l.contains("dumpable")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("memory-lock")), "{stderr}");
}

// ----------------------------------------------------------------------------------------
// Debug output of secrets
// ----------------------------------------------------------------------------------------

/// 24 distinct bytes, unlikely anywhere else.
fn secret(seed: u8) -> [u8; 24] {
    let mut out = [0u8; 24];
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed.wrapping_add((i as u8).wrapping_mul(37)) | 0x81;
    }
    out
}

/// `debug` says redacted and shows none of `secrets`: not in hex (either case, whole or
/// its first 4 bytes), not as a decimal or hex array (whole or its first 3 elements).
fn assert_redacted(what: &str, debug: &str, secrets: &[&[u8]]) {
    assert!(
        debug.to_lowercase().contains("redacted"),
        "{what}: Debug does not say redacted: {debug}"
    );
    for s in secrets {
        let mut forms = vec![
            hex::encode(s),
            hex::encode_upper(s),
            hex::encode(&s[..4]),
            hex::encode_upper(&s[..4]),
            format!("{s:?}"),
            format!("{:x?}", s),
            format!("{:#x?}", s),
        ];
        let first3: Vec<String> = s[..3].iter().map(|b| b.to_string()).collect();
        forms.push(first3.join(", "));
        forms.push(first3.join(","));
        let first3_hex: Vec<String> = s[..3].iter().map(|b| format!("{b:#x}")).collect();
        forms.push(first3_hex.join(", "));
        for form in forms {
            assert!(
                !debug.contains(&form),
                "{what}: Debug shows the secret ({form}): {debug}"
            );
        }
    }
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    use mkclone::backend::{
        CloneableKind, Eid, KeyLabel, KeyUsage, MofN, PatternAlgorithm, PublicKeyToken,
        SerialNumber, ShareIndex, VerificationPattern,
    };
    use mkclone::formats::clone_info::CloneInfo;
    use mkclone::formats::seal::TdesKey;
    use mkclone::formats::shamir::Polynomial;
    use mkclone::formats::{Key24, ShareValue};
    use mkclone::sim::state::{CardState, MasterKeySet, ReceivedShare, RetainedKey, Secret24};

    let (a, b, c, d) = (secret(0x11), secret(0x52), secret(0x93), secret(0xD4));

    assert_redacted("ShareValue", &format!("{:?}", ShareValue::new(a)), &[&a]);
    assert_redacted("Key24", &format!("{:?}", Key24::new(a)), &[&a]);
    let tdes = TdesKey::from_bytes(b);
    let tdes_bytes = *tdes.as_bytes();
    assert_redacted("TdesKey", &format!("{tdes:?}"), &[&tdes_bytes, &b]);
    assert_redacted("Secret24", &format!("{:?}", Secret24(a)), &[&a]);
    let poly = Polynomial::new(&a, vec![b, c]).unwrap();
    assert_redacted("Polynomial", &format!("{poly:?}"), &[&a, &b, &c]);
    // A share made from it, and a whole key rebuilt.
    let share = poly.share(ShareIndex::new(1).unwrap());
    let share_bytes = *share.as_bytes();
    assert_redacted(
        "ShareValue (shamir)",
        &format!("{share:?}"),
        &[&share_bytes],
    );

    let pattern = VerificationPattern::new(PatternAlgorithm::Sha1Method, &[1; 8]).unwrap();
    let info = CloneInfo {
        index: ShareIndex::new(1).unwrap(),
        origin_eid: Eid::new("SOURCE").unwrap(),
        origin_serial: SerialNumber::new("S2").unwrap(),
        kind: CloneableKind::Sym,
        m_of_n: MofN::new(2, 3).unwrap(),
        source_pattern: pattern.clone(),
        share: ShareValue::new(d),
    };
    assert_redacted("CloneInfo", &format!("{info:?}"), &[&d]);

    // The simulator's card state: registers, polynomial rows, held shares, private keys.
    let private = hex::encode(secret(0x37).repeat(4));
    let retained = RetainedKey {
        label: KeyLabel::new("MKCLONE.C1234567.SA").unwrap(),
        usage: KeyUsage::SignatureOnly,
        clone: true,
        bits: 2048,
        private_pkcs1: zeroize::Zeroizing::new(private.clone()),
        public_token: PublicKeyToken::new(vec![0x1E, 0, 0, 8, 0, 0, 0, 0]).unwrap(),
    };
    let retained_debug = format!("{retained:?}");
    assert_redacted("RetainedKey", &retained_debug, &[&secret(0x37)]);
    assert!(!retained_debug.contains(&private[..16]), "{retained_debug}");
    assert!(
        retained_debug.contains("MKCLONE.C1234567.SA"),
        "still useful: {retained_debug}"
    );

    let mut state = CardState::new(SerialNumber::new("S9").unwrap());
    state.master_keys.insert(
        CloneableKind::Sym,
        MasterKeySet {
            new: Some(Secret24(a)),
            current: Some(Secret24(b)),
            old: Some(Secret24(c)),
            polynomial: Some(vec![Secret24(d)]),
            generation: b"1100000000000000".to_vec(),
            received: vec![ReceivedShare {
                index: ShareIndex::new(2).unwrap(),
                value: Secret24(secret(0x61)),
                origin_eid: Eid::new("SOURCE").unwrap(),
                origin_serial: SerialNumber::new("S2").unwrap(),
                source_pattern: pattern,
            }],
            received_more: vec![],
        },
    );
    state.retained.push(retained);
    let state_debug = format!("{state:?}");
    assert_redacted(
        "CardState",
        &state_debug,
        &[&a, &b, &c, &d, &secret(0x61), &secret(0x37)],
    );
    assert!(!state_debug.contains(&private[..16]), "{state_debug}");
}
