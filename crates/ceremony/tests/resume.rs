//! Interrupt `clone` after every journal record — every step of the ceremony — and run it
//! again from the files and the cards alone: it must finish, with nothing duplicated.

use std::collections::BTreeMap;
use std::path::Path;

use mkclone_backend::{Backend, CloneableKind, RsaModulusBits, SerialNumber};
use mkclone_ceremony::envelope::Put;
use mkclone_ceremony::run::{CloneOptions, run_clone};
use mkclone_ceremony::{Ceremony, CeremonyError, Plan};
use mkclone_hw_sim::SimBackend;

mod common;
use common::*;

const NODES: [(&str, u8); 3] = [("sa", 1), ("source", 2), ("target1", 3)];

type Cards = BTreeMap<String, SimBackend>;

fn plan(kinds: Vec<CloneableKind>, m: u8, n: u8) -> Plan {
    common::plan("resume-test", &["target1"], &kinds, m, n, true)
}

/// Fresh cards; the source gets random master keys.
fn setup(root: &Path) {
    create_cards(root, &NODES);
}

/// Everything opened anew, as a new process would.
fn open(root: &Path) -> Cards {
    open_cards(root, &NODES)
}

fn run(root: &Path, plan: &Plan, crash_after: Option<u64>) -> Result<u64, CeremonyError> {
    let mut ceremony = Ceremony::open(&root.join("ceremony"), plan.clone())?;
    if let Some(k) = crash_after {
        ceremony.inject_crash_after(k);
    }
    let mut cards = open(root);
    let result = run_clone(&mut ceremony, &mut cards, &CloneOptions::serial());
    let appended = ceremony.records_appended();
    result.map(|_| appended)
}

fn check_finished(root: &Path, plan: &Plan) {
    let mut cards = open(root);
    let source = cards.get_mut("source").unwrap().status().unwrap();
    let target = cards.get_mut("target1").unwrap();
    let status = target.status().unwrap();
    for kind in &plan.kinds {
        let s = source.register(kind.kind()).unwrap();
        let t = status.register(kind.kind()).unwrap();
        assert_eq!(
            t.current_patterns, s.current_patterns,
            "{kind}: target CURRENT equals source CURRENT"
        );
        assert_eq!(t.new, mkclone_backend::NewState::Empty);
        // SET ran exactly once: OLD is still empty.
        assert_eq!(
            t.old,
            mkclone_backend::CurrentState::Invalid,
            "{kind}: SET ran once"
        );
    }
    // Nothing duplicated: one key per role, one registration per node.
    for name in ["sa", "source", "target1"] {
        let node = cards.get_mut(name).unwrap();
        assert_eq!(
            node.list_retained_keys().unwrap().len(),
            1,
            "{name}: retained keys"
        );
        let regs = node.list_registrations().unwrap().len();
        assert_eq!(regs, usize::from(name != "sa"), "{name}: registrations");
    }
    // The journal's chain is intact.
    let journal =
        mkclone_ceremony::journal::Journal::open(&root.join("ceremony"), &plan.id, true).unwrap();
    assert!(journal.torn_tail().is_none());
}

#[test]
fn a_crash_after_any_journal_record_is_finished_by_a_rerun() {
    let plan = plan(CloneableKind::ALL.to_vec(), 2, 3);
    // How many records does an uninterrupted run write?
    let clean = tempfile::tempdir().unwrap();
    setup(clean.path());
    let total = run(clean.path(), &plan, None).unwrap();
    check_finished(clean.path(), &plan);
    assert!(total > 40, "a whole ceremony writes many records ({total})");

    for k in 1..total {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        match run(dir.path(), &plan, Some(k)) {
            Err(CeremonyError::InjectedCrash { after }) => assert_eq!(after, k),
            other => panic!("crash point {k}: expected the injected crash, got {other:?}"),
        }
        run(dir.path(), &plan, None).unwrap_or_else(|e| panic!("rerun after crash point {k}: {e}"));
        check_finished(dir.path(), &plan);
        // And a third run changes nothing.
        run(dir.path(), &plan, None).unwrap();
        check_finished(dir.path(), &plan);
    }
}

#[test]
fn lost_replies_are_reconciled() {
    use mkclone_hw_sim::{Fault, FaultPlan};
    let plan = plan(vec![CloneableKind::Sym], 1, 1);
    for k in [1u64, 3, 5, 8] {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let mut ceremony = Ceremony::open(&dir.path().join("ceremony"), plan.clone()).unwrap();
        let mut cards = open(dir.path());
        // The k-th request to the target runs on the card, then its reply is lost.
        cards
            .get_mut("target1")
            .unwrap()
            .transport_mut()
            .set_faults(FaultPlan::new().at(k, Fault::AfterCard));
        run_clone(&mut ceremony, &mut cards, &CloneOptions::serial())
            .unwrap_or_else(|e| panic!("lost reply {k}: {e}"));
        drop(ceremony);
        check_finished(dir.path(), &plan);
    }
}

/// A 1-of-1 SYM ceremony on fresh cards, run through phase 1 and 3a for target1.
fn after_phase_3a() -> (Plan, tempfile::TempDir, Cards, Ceremony) {
    let plan = plan(vec![CloneableKind::Sym], 1, 1);
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let mut cards = open(dir.path());
    let mut c = Ceremony::open(&dir.path().join("ceremony"), plan.clone()).unwrap();
    mkclone_ceremony::phases::phase1(&mut c, cards.get_mut("sa").unwrap()).unwrap();
    mkclone_ceremony::phases::phase3a(&mut c, cards.get_mut("target1").unwrap(), "target1")
        .unwrap();
    (plan, dir, cards, c)
}

#[test]
fn a_key_swapped_into_a_carried_file_is_never_certified() {
    use mkclone_ceremony::dbs::{self, CSR_DB_FORMAT, CsrDb};
    use mkclone_ceremony::durable::Sensitivity;
    use mkclone_ceremony::phases::{self, KeyConfirmation};

    let (plan, dir, mut cards, mut c) = after_phase_3a();
    let genuine: CsrDb = dbs::read_optional(&c.layout.csr_db("target1"), CSR_DB_FORMAT, &plan)
        .unwrap()
        .unwrap();

    // Someone replaces the key in the carried csr.db by one they hold (a key made on
    // another card), with a valid digest.
    let mut other = bus(dir.path())
        .create_card(apqn(9), &SerialNumber::new("S9").unwrap())
        .unwrap();
    let foreign = other
        .generate_retained_key(&mkclone_backend::GenerateRequest {
            label: plan.csr_label(),
            role: mkclone_backend::KeyRole::Csr,
            bits: RsaModulusBits::B2048,
            clone: true,
        })
        .unwrap()
        .value();
    assert_ne!(foreign, genuine.public_key);
    let swapped = CsrDb {
        public_key: foreign,
        ..genuine.clone()
    };
    dbs::write(
        &c.layout.csr_db("target1"),
        CSR_DB_FORMAT,
        &plan.id,
        plan.rehearsal,
        &swapped,
        Sensitivity::Public,
        Put::Replace,
    )
    .unwrap();

    let sa = cards.get_mut("sa").unwrap();
    for confirmation in [
        KeyConfirmation::FromNode(genuine.public_key.clone()),
        KeyConfirmation::Fingerprint(phases::key_fingerprint(&genuine.public_key).unwrap()),
        KeyConfirmation::None,
    ] {
        let err = phases::phase3b(&mut c, sa, "target1", &confirmation).unwrap_err();
        assert!(matches!(err, CeremonyError::Conflict { .. }), "{err}");
    }
    let still: CsrDb = dbs::read_optional(&c.layout.csr_db("target1"), CSR_DB_FORMAT, &plan)
        .unwrap()
        .unwrap();
    assert!(still.certificate.is_none(), "nothing was certified");
    // The genuine file with the genuine fingerprint is certified.
    dbs::write(
        &c.layout.csr_db("target1"),
        CSR_DB_FORMAT,
        &plan.id,
        plan.rehearsal,
        &genuine,
        Sensitivity::Public,
        Put::Replace,
    )
    .unwrap();
    let fp = phases::key_fingerprint(&genuine.public_key).unwrap();
    phases::phase3b(
        &mut c,
        sa,
        "target1",
        &KeyConfirmation::Fingerprint(fp[..19].to_lowercase()),
    )
    .unwrap();
}

const PARALLEL_NODES: [(&str, u8); 5] = [
    ("sa", 1),
    ("source", 2),
    ("target1", 3),
    ("target2", 4),
    ("target3", 5),
];

/// `clone` of three targets, every phase that can run at once doing so; the "process"
/// dies right after the journal's k-th record (no thread appends after it; the others may
/// be in the middle of a request or a file write).
fn run_parallel(root: &Path, plan: &Plan, crash_after: Option<u64>) -> Result<u64, CeremonyError> {
    let mut ceremony = Ceremony::open(&root.join("ceremony"), plan.clone())?;
    if let Some(k) = crash_after {
        ceremony.inject_crash_after(k);
    }
    let mut cards = open_cards(root, &PARALLEL_NODES);
    let options = CloneOptions {
        jobs: std::num::NonZeroUsize::new(3),
        ..CloneOptions::default()
    };
    let result = run_clone(&mut ceremony, &mut cards, &options);
    let appended = ceremony.records_appended();
    result.map(|_| appended)
}

/// Every target equals the source, SET once, one key and one registration per node.
fn check_parallel_finished(root: &Path, plan: &Plan) {
    let mut cards = open_cards(root, &PARALLEL_NODES);
    let source = cards.get_mut("source").unwrap().status().unwrap();
    for (name, _) in &PARALLEL_NODES[2..] {
        let st = cards.get_mut(*name).unwrap().status().unwrap();
        for kind in &plan.kinds {
            let s = source.register(kind.kind()).unwrap();
            let t = st.register(kind.kind()).unwrap();
            assert_eq!(t.current_patterns, s.current_patterns, "{name} {kind}");
            assert_eq!(
                t.old,
                mkclone_backend::CurrentState::Invalid,
                "{name}: SET once"
            );
        }
    }
    for (name, _) in PARALLEL_NODES {
        let node = cards.get_mut(name).unwrap();
        assert_eq!(node.list_retained_keys().unwrap().len(), 1, "{name}");
        let regs = node.list_registrations().unwrap().len();
        assert_eq!(regs, usize::from(name != "sa"), "{name}: registrations");
    }
}

#[test]
fn a_crash_at_any_point_of_a_parallel_clone_is_finished_by_a_rerun() {
    let plan = common::plan(
        "parallel-resume",
        &["target1", "target2", "target3"],
        &[CloneableKind::Sym],
        2,
        3,
        true,
    );
    let clean = tempfile::tempdir().unwrap();
    create_cards(clean.path(), &PARALLEL_NODES);
    let total = run_parallel(clean.path(), &plan, None).unwrap();
    check_parallel_finished(clean.path(), &plan);
    // Every fourth record (a different phase of the interleaving each time), and the last.
    let points: Vec<u64> = (1..total).step_by(4).chain([total - 1]).collect();
    for k in points {
        let dir = tempfile::tempdir().unwrap();
        create_cards(dir.path(), &PARALLEL_NODES);
        match run_parallel(dir.path(), &plan, Some(k)) {
            Err(CeremonyError::InjectedCrash { after }) => assert_eq!(after, k),
            other => panic!("crash point {k}: expected the injected crash, got {other:?}"),
        }
        // Nothing was appended after the crash point, by any thread.
        let journal =
            mkclone_ceremony::journal::Journal::open(&dir.path().join("ceremony"), &plan.id, true)
                .unwrap();
        assert_eq!(journal.records().len() as u64, k, "crash point {k}");
        drop(journal);
        run_parallel(dir.path(), &plan, None)
            .unwrap_or_else(|e| panic!("rerun after crash point {k}: {e}"));
        check_parallel_finished(dir.path(), &plan);
    }
}

/// The bytes of target1's csr.db at `path` with its target1 mark pointing at another record
/// (a hash of the same length), encoded with a valid digest in a directory of `dir` of its
/// own: a forgery of the same size, to write into the file in place.
fn forged_csr_db(plan: &Plan, dir: &tempfile::TempDir, path: &Path) -> Vec<u8> {
    use mkclone_ceremony::dbs::{self, CSR_DB_FORMAT, CsrDb};
    use mkclone_ceremony::durable::Sensitivity;

    let mut db: CsrDb = dbs::read_optional(path, CSR_DB_FORMAT, plan)
        .unwrap()
        .unwrap();
    let mark = db.provenance.written.get_mut("target1").unwrap();
    mark.hash = "f".repeat(mark.hash.len());
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let forged = elsewhere.join("target1.csr.db");
    dbs::write(
        &forged,
        CSR_DB_FORMAT,
        &plan.id,
        plan.rehearsal,
        &db,
        Sensitivity::Public,
        Put::Replace,
    )
    .unwrap();
    let bytes = std::fs::read(&forged).unwrap();
    assert_eq!(bytes.len() as u64, std::fs::metadata(path).unwrap().len());
    bytes
}

/// A phase start reads every file its node wrote again (the journal marks' cache keeps the
/// file open and decodes only when the bytes' hash changed). Someone who rewrites a carried
/// file in place, same size, and puts its modification time back: the next phase start
/// finds the mark this journal does not hold.
#[test]
fn a_file_rewritten_in_place_with_its_old_mtime_is_read_again_at_the_next_phase_start() {
    let (plan, dir, _cards, c) = after_phase_3a();
    let path = c.layout.csr_db("target1");
    // Long enough after the write for any clock's tick (a cache trusting timestamps, as
    // an earlier one did, would skip the file from here on), then read once.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    c.check_journal_marks("target1").unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();

    // The forgery, written into the same inode.
    let bytes = forged_csr_db(&plan, &dir, &path);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &file, &bytes).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);

    let err = c.check_journal_marks("target1").unwrap_err();
    assert!(matches!(err, CeremonyError::JournalGap(_)), "{err}");
}

/// A rewrite through a shared writable mapping whose page is already dirty changes a file's
/// bytes and no field of its `lstat` (the mtime and ctime move at the first write fault
/// only, and again when the page is written back: on tmpfs, never). The journal marks'
/// check must find the forged mark all the same. (A cache that skipped files whose `lstat`
/// had not changed since a read 2 s after their ctime missed it.)
#[test]
fn a_file_rewritten_through_a_shared_mapping_is_read_again_at_the_next_phase_start() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    let (plan, dir, _cards, c) = after_phase_3a();
    let path = c.layout.csr_db("target1");
    // The forgery, made beforehand.
    let bytes = forged_csr_db(&plan, &dir, &path);
    let len = bytes.len();

    // The insider maps the file shared and writable and stores its first byte back: the
    // write fault moves the ctime once; the bytes are unchanged.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: a fresh shared mapping of `len` bytes of an open file, checked against
    // MAP_FAILED below, written only within those bytes and unmapped at the end.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let at = map.cast::<u8>();
    // SAFETY: `at` is the start of the mapping, `len` > 0 bytes long.
    unsafe { at.write_volatile(at.read_volatile()) };

    // Past any clock tick, the file is read: a cache trusting its `lstat` would skip it from
    // here on.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    c.check_journal_marks("target1").unwrap();
    let before = std::fs::symlink_metadata(&path).unwrap();

    // The rewrite, through the dirty page: no fault, no timestamp.
    // SAFETY: `bytes` holds `len` bytes and the mapping is `len` bytes long; they do not
    // overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, len) };
    let after = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file holds the forgery"
    );
    let result = c.check_journal_marks("target1");
    // SAFETY: the mapping made above, of `len` bytes, no longer used.
    unsafe { libc::munmap(map, len) };
    let err = result.unwrap_err();
    assert!(matches!(err, CeremonyError::JournalGap(_)), "{err}");
    // What makes this attack: nothing of the file's lstat moved (when the kernel wrote the
    // page back meanwhile, the ctime did, and the test proves less; it still passes).
    if (before.ctime(), before.ctime_nsec()) == (after.ctime(), after.ctime_nsec()) {
        assert_eq!(before.mtime_nsec(), after.mtime_nsec());
    }
}

/// A pid no process can have (above Linux's PID_MAX_LIMIT of 2^22): a writer killed since.
const DEAD_PID: u32 = 999_999_999;

/// The names of mkclone's temporary files in `dir`, sorted.
fn temporary_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mkclone-tmp"))
        .collect();
    names.sort();
    names
}

fn nlink(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().nlink()
}

/// What `durable::create_new_exclusive` leaves when its process is killed (a second
/// Ctrl-C, SIGKILL, power loss) between linking the file to its name and unlinking its
/// temporary name: the temporary name of writer `pid`, a second hard link of `file`.
fn second_name_left_by(file: &Path, pid: u32) -> std::path::PathBuf {
    let name = file.file_name().unwrap().to_string_lossy();
    let tmp = file.with_file_name(format!(".{name}.{pid}.0.mkclone-tmp"));
    std::fs::hard_link(file, &tmp).unwrap();
    tmp
}

/// A ceremony of one target (SYM) run to its end; its root directory (dropped with the
/// first) and its plan.
fn one_finished_target() -> (tempfile::TempDir, Plan) {
    let plan = plan(vec![CloneableKind::Sym], 1, 1);
    let root = tempfile::tempdir().unwrap();
    setup(root.path());
    run(root.path(), &plan, None).unwrap();
    (root, plan)
}

/// The files an abort reports it erased, in order.
fn erased_files(report: &mkclone_ceremony::PhaseReport) -> Vec<String> {
    report
        .actions
        .iter()
        .filter_map(|a| match a {
            mkclone_ceremony::PhaseAction::EraseFile { file } => Some(file.clone()),
            _ => None,
        })
        .collect()
}

/// `abort --erase-files` (the clean-up after 3d) of every target, the ceremony opened as
/// the command opens it.
fn erase_files(root: &Path, plan: &Plan) -> Result<mkclone_ceremony::PhaseReport, CeremonyError> {
    let mut c = Ceremony::open(&root.join("ceremony"), plan.clone())?;
    let mut cards = open(root);
    mkclone_ceremony::abort::abort(
        &mut c,
        &mut cards,
        &mkclone_ceremony::abort::AbortSteps {
            erase_files: true,
            ..Default::default()
        },
    )
}

/// A bundle is never written again (a rerun finds it done), so its writer's dead
/// temporary name, a second hard link of the bundle, used to stay for good, and the erase
/// refused the hard-linked bundle, and with it every file. Opening the ceremony, under
/// its lock, removes it: at the rerun, or at the abort itself; the erase then succeeds and
/// leaves no name of any share behind.
#[test]
fn a_bundles_second_name_left_by_a_killed_writer_is_removed_at_opening_and_the_erase_succeeds() {
    let (scratch, plan) = one_finished_target();
    let root = scratch.path();
    let dir = root.join("ceremony");
    let shares = dir.join("shares");
    let bundle = shares.join("target1.sym.1.share");
    let contents = std::fs::read(&bundle).unwrap();

    // Killed in 3c, then the rerun: it finds the bundle done, and the second name gone.
    let tmp = second_name_left_by(&bundle, DEAD_PID);
    assert_eq!(nlink(&bundle), 2);
    run(root, &plan, None).unwrap();
    check_finished(root, &plan);
    assert!(
        !tmp.exists(),
        "the rerun left the dead writer's second name of the bundle"
    );
    assert_eq!(nlink(&bundle), 1);
    assert_eq!(std::fs::read(&bundle).unwrap(), contents);

    // Killed again, and no rerun: the abort's own opening removes it.
    let tmp = second_name_left_by(&bundle, DEAD_PID);
    let report = erase_files(root, &plan).unwrap_or_else(|e| panic!("the erase refused: {e}"));
    assert!(!tmp.exists());
    assert!(!bundle.exists() && !dir.join("target1.csr.db").exists());
    let erased = erased_files(&report);
    let expected = [&dir.join("target1.csr.db"), &bundle].map(|p| p.display().to_string());
    assert_eq!(erased, expected);
    let left: Vec<_> = std::fs::read_dir(&shares).unwrap().collect();
    assert!(
        left.is_empty(),
        "a name of a share survives the erase: {left:?}"
    );
    assert!(
        temporary_files(&dir).is_empty(),
        "{:?}",
        temporary_files(&dir)
    );
}

/// A dead writer's temporary file whose bundle never got its name (the writer killed
/// before the link) may be the only copy of that write, so the opening leaves it; the
/// erase erases it with the files it erases, and reports it.
#[test]
fn a_dead_writers_bundle_that_never_got_its_name_is_erased_with_the_files() {
    let (scratch, plan) = one_finished_target();
    let root = scratch.path();
    let dir = root.join("ceremony");
    let shares = dir.join("shares");
    let bundle = shares.join("target1.sym.1.share");
    let tmp = shares.join(format!(".target1.sym.1.share.{DEAD_PID}.3.mkclone-tmp"));
    std::fs::rename(&bundle, &tmp).unwrap();
    // Another target's leftover, of a file this erase does not erase, stays.
    let other = shares.join(format!(".target9.sym.1.share.{DEAD_PID}.4.mkclone-tmp"));
    std::fs::write(&other, b"not this erase's").unwrap();

    let report = erase_files(root, &plan).unwrap_or_else(|e| panic!("the erase refused: {e}"));
    assert!(!tmp.exists(), "the unnamed bundle survives the erase");
    let erased = erased_files(&report);
    let expected = [&dir.join("target1.csr.db"), &tmp].map(|p| p.display().to_string());
    assert_eq!(erased, expected);
    assert!(other.exists());
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(&tmp.display().to_string()),
        "not journaled"
    );
}

/// A temporary name whose pid is alive (here this process's: another mkclone, or after a
/// restart any process that got the pid) is never removed at opening. The erase then
/// refuses, naming the file and the pid, and erases nothing: a second name of a bundle,
/// or a bundle that never got its name (whose sealed share would otherwise outlive a
/// "successful" erase), is never skipped in silence.
#[test]
fn a_temporary_file_with_a_live_pid_is_kept_and_the_erase_refuses_naming_it() {
    let (scratch, plan) = one_finished_target();
    let root = scratch.path();
    let dir = root.join("ceremony");
    let bundle = dir.join("shares").join("target1.sym.1.share");
    let pid = std::process::id();
    let refused = |tmp: &Path| {
        let err = erase_files(root, &plan).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, CeremonyError::Conflict { .. })
                && text.contains(&tmp.display().to_string())
                && text.contains(&format!("pid {pid}"))
                && text.contains("Nothing was erased"),
            "{text}"
        );
        assert!(tmp.exists() && dir.join("target1.csr.db").exists());
    };

    let tmp = second_name_left_by(&bundle, pid);
    refused(&tmp);
    assert_eq!(nlink(&bundle), 2);

    std::fs::remove_file(&bundle).unwrap();
    refused(&tmp);
    assert_eq!(nlink(&tmp), 1);
}
