//! `clone`'s checks before shares leave the source: no share ever leaves for a target
//! whose preflight found a problem, whichever way the targets are checked; checked each
//! before its own shares, a target's shares do not wait for another target's key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use mkclone_backend::access::AccessAudit;
use mkclone_backend::{
    Applied, Backend, BackendError, Capabilities, Certificate, CloneableKind, Eid, GenerateRequest,
    InstallProgress, InstallRequest, KeyLabel, MofN, NewState, NodeStatus, ObtainRequest,
    Operation, PublicKeyHash, PublicKeyToken, Registration, RetainedKeyInfo, SealedShare,
    ShareStatus, SubjectInfo,
};
use mkclone_ceremony::progress::{Observer, Progress};
use mkclone_ceremony::run::{Checks, CloneOptions, run_clone};
use mkclone_ceremony::{Ceremony, CeremonyError, Phase, Plan};
use mkclone_hw_sim::SimBackend;

mod common;
use common::*;

const NODES: [(&str, u8); 5] = [
    ("sa", 1),
    ("source", 2),
    ("target1", 3),
    ("target2", 4),
    ("target3", 5),
];
const TARGETS: [&str; 3] = ["target1", "target2", "target3"];

fn plan() -> Plan {
    common::plan("checks", &TARGETS, &[CloneableKind::Sym], 2, 3, true)
}

fn options(checks: Checks, observer: Option<Observer>) -> CloneOptions {
    CloneOptions {
        jobs: std::num::NonZeroUsize::new(3),
        observer,
        checks,
    }
}

fn clone(root: &Path, options: &CloneOptions, replace_current: bool) -> Result<(), CeremonyError> {
    let mut ceremony = Ceremony::open(&root.join("ceremony"), plan())?;
    ceremony.set_replace_current(replace_current);
    let mut cards = open_cards(root, &NODES);
    run_clone(&mut ceremony, &mut cards, options).map(|_| ())
}

/// The bundles of `target` in the ceremony directory.
fn bundles(root: &Path, target: &str) -> Vec<std::path::PathBuf> {
    let ceremony = Ceremony::open(&root.join("ceremony"), plan()).unwrap();
    let plan = plan();
    let paths = plan.share_indices.iter().map(|i| {
        ceremony
            .layout
            .bundle(target, CloneableKind::Sym, *i)
            .to_path_buf()
    });
    paths.filter(|p| p.exists()).collect()
}

fn sym_register(root: &Path, node: &str) -> mkclone_backend::RegisterStatus {
    let mut cards = open_cards(root, &NODES);
    let status = cards.get_mut(node).unwrap().status().unwrap();
    status.register(CloneableKind::Sym.kind()).unwrap().clone()
}

/// Fresh cards in a new directory, target2's holding a SYM master key of its own.
fn target2_holding_its_own_key() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    create_cards(dir.path(), &NODES);
    bus(dir.path())
        .open_card(apqn(4))
        .unwrap()
        .load_random_master_key(CloneableKind::Sym)
        .unwrap();
    dir
}

/// target2 holds a valid master key of its own: the overwrite guard of its checks refuses
/// its shares. Checked each before its shares or all first, target2 gets no share and
/// keeps its key; all first, no target gets one. Asked to replace it, a rerun finishes.
#[test]
fn a_target_whose_checks_fail_gets_no_share_whichever_way_targets_are_checked() {
    for checks in [Checks::EachTarget, Checks::AllFirst] {
        let dir = target2_holding_its_own_key();
        let own = sym_register(dir.path(), "target2");

        match clone(dir.path(), &options(checks, None), false) {
            Err(CeremonyError::Preflight { problems }) => {
                assert!(!problems.0.is_empty());
                for p in &problems.0 {
                    assert_eq!(
                        (p.node.as_str(), p.kind),
                        ("target2", "would-replace-current")
                    );
                }
            }
            other => panic!("{checks:?}: expected target2's checks to refuse, got {other:?}"),
        }
        assert_eq!(
            bundles(dir.path(), "target2"),
            Vec::<std::path::PathBuf>::new()
        );
        let after = sym_register(dir.path(), "target2");
        assert_eq!(after.current_patterns, own.current_patterns, "{checks:?}");
        assert_eq!(after.new, NewState::Empty, "{checks:?}: no share installed");
        if checks == Checks::AllFirst {
            for t in TARGETS {
                assert!(
                    bundles(dir.path(), t).is_empty(),
                    "all first: {t} got a share"
                );
            }
        }

        clone(dir.path(), &options(checks, None), true)
            .unwrap_or_else(|e| panic!("{checks:?}: rerun with replace-current: {e}"));
        let source = sym_register(dir.path(), "source");
        for t in TARGETS {
            let reg = sym_register(dir.path(), t);
            assert_eq!(
                reg.current_patterns, source.current_patterns,
                "{checks:?} {t}"
            );
        }
        assert_eq!(
            sym_register(dir.path(), "target2").old_patterns,
            own.current_patterns,
            "{checks:?}: target2's own key is OLD now"
        );
    }
}

/// What a gate saw: whether it opened (the awaited event came) while target3's 3a was
/// held, and the order in which phases ended.
#[derive(Default)]
struct Seen {
    open: bool,
    ended: Vec<(Phase, String)>,
}

/// An observer that holds target3's 3a at its start (its node's lock held, its key not
/// made) until an event `opens` says opens the gate has come, or `patience` has passed.
fn gate_until(
    patience: Duration,
    opens: impl Fn(&Progress<'_>) -> bool + Send + Sync + 'static,
) -> (Observer, Arc<(Mutex<Seen>, Condvar)>) {
    let shared = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
    let seen = shared.clone();
    let observer = Observer::new(move |event| {
        let (lock, cv) = &*seen;
        if let Progress::PhaseStarted {
            phase: Phase::P3a,
            target: Some("target3"),
            ..
        } = event
        {
            let guard = lock.lock().unwrap();
            let _held = cv.wait_timeout_while(guard, patience, |s| !s.open).unwrap();
            return;
        }
        let mut s = lock.lock().unwrap();
        if let Progress::PhaseDone { report, target } = event {
            s.ended
                .push((report.phase, target.unwrap_or_default().to_string()));
        }
        if opens(event) {
            s.open = true;
            cv.notify_all();
        }
    });
    (observer, shared)
}

/// [`gate_until`] target1's 3c has ended.
fn gate(patience: Duration) -> (Observer, Arc<(Mutex<Seen>, Condvar)>) {
    gate_until(patience, |event| {
        matches!(event, Progress::PhaseDone { report, target }
            if report.phase == Phase::P3c && *target == Some("target1"))
    })
}

/// A clone of the three targets checked as `checks` says, target3's 3a held by the gate
/// for at most `patience`: the phases in the order they ended.
fn gated_clone(checks: Checks, patience: Duration) -> Vec<(Phase, String)> {
    let dir = tempfile::tempdir().unwrap();
    create_cards(dir.path(), &NODES);
    let (observer, seen) = gate(patience);
    clone(dir.path(), &options(checks, Some(observer)), false).unwrap();
    std::mem::take(&mut seen.0.lock().unwrap().ended)
}

/// Checked each before its own shares, target1's shares are made while target3's key
/// generation is held back; checked all first, none is made until every key is
/// certified (the gate gives up, and every 3c ends after every 3b).
#[test]
fn a_targets_shares_wait_for_another_targets_key_only_when_every_target_is_checked_first() {
    // Long enough for target1's whole chain on a loaded machine: the gate opens as soon as
    // target1's 3c ends, so this bounds only a failing run.
    let ended = gated_clone(Checks::EachTarget, Duration::from_secs(60));
    let at = |phase: Phase, target: &str| {
        ended
            .iter()
            .position(|(p, t)| *p == phase && t == target)
            .unwrap_or_else(|| panic!("{phase:?} for {target} never ended"))
    };
    assert!(
        at(Phase::P3c, "target1") < at(Phase::P3a, "target3"),
        "target1's shares waited for target3's key: {ended:?}"
    );

    // All first, target1's 3c cannot start before target3's 3b: the gate can only give up.
    let ended = gated_clone(Checks::AllFirst, Duration::from_secs(2));
    let last_3b = ended.iter().rposition(|(p, _)| *p == Phase::P3b).unwrap();
    let first_3c = ended.iter().position(|(p, _)| *p == Phase::P3c).unwrap();
    assert!(last_3b < first_3c, "{ended:?}");
}

/// A simulated card whose next status read fails once when `fail` is raised (a transport
/// error on a real card, once).
struct Flaky {
    card: SimBackend,
    fail: Arc<AtomicBool>,
}

impl Backend for Flaky {
    fn backend_name(&self) -> &'static str {
        self.card.backend_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.card.capabilities()
    }
    fn access_audit(
        &mut self,
        operations: &[Operation],
        kinds: &[CloneableKind],
    ) -> mkclone_backend::Result<AccessAudit> {
        self.card.access_audit(operations, kinds)
    }
    fn status(&mut self) -> mkclone_backend::Result<NodeStatus> {
        if self.fail.swap(false, Ordering::SeqCst) {
            return Err(BackendError::Transport {
                operation: Operation::Status,
                cause: "the test's one failed read".into(),
            });
        }
        self.card.status()
    }
    fn set_eid(&mut self, eid: &Eid) -> mkclone_backend::Result<Applied<()>> {
        self.card.set_eid(eid)
    }
    fn set_m_of_n(&mut self, m_of_n: MofN) -> mkclone_backend::Result<Applied<()>> {
        self.card.set_m_of_n(m_of_n)
    }
    fn share_status(&mut self) -> mkclone_backend::Result<ShareStatus> {
        self.card.share_status()
    }
    fn generate_retained_key(
        &mut self,
        request: &GenerateRequest,
    ) -> mkclone_backend::Result<Applied<PublicKeyToken>> {
        self.card.generate_retained_key(request)
    }
    fn retained_public_key(
        &mut self,
        label: &KeyLabel,
    ) -> mkclone_backend::Result<Option<PublicKeyToken>> {
        self.card.retained_public_key(label)
    }
    fn list_retained_keys(&mut self) -> mkclone_backend::Result<Vec<RetainedKeyInfo>> {
        self.card.list_retained_keys()
    }
    fn register_public_key_hash(
        &mut self,
        name: &KeyLabel,
        hash: &PublicKeyHash,
        clone: bool,
    ) -> mkclone_backend::Result<Applied<()>> {
        self.card.register_public_key_hash(name, hash, clone)
    }
    fn register_public_key(
        &mut self,
        name: &KeyLabel,
        certificate: &Certificate,
        clone: bool,
    ) -> mkclone_backend::Result<Applied<()>> {
        self.card.register_public_key(name, certificate, clone)
    }
    fn list_registrations(&mut self) -> mkclone_backend::Result<Vec<Registration>> {
        self.card.list_registrations()
    }
    fn certify_public_key(
        &mut self,
        signer: &KeyLabel,
        subject: &PublicKeyToken,
        info: &SubjectInfo,
    ) -> mkclone_backend::Result<Certificate> {
        self.card.certify_public_key(signer, subject, info)
    }
    fn obtain_share(&mut self, request: &ObtainRequest) -> mkclone_backend::Result<SealedShare> {
        self.card.obtain_share(request)
    }
    fn install_share(
        &mut self,
        request: &InstallRequest,
    ) -> mkclone_backend::Result<Applied<InstallProgress>> {
        self.card.install_share(request)
    }
    fn set_master_key(&mut self, kind: CloneableKind) -> mkclone_backend::Result<Applied<()>> {
        self.card.set_master_key(kind)
    }
    fn clear_new(&mut self, kind: CloneableKind) -> mkclone_backend::Result<Applied<()>> {
        self.card.clear_new(kind)
    }
}

/// target2 holds a key of its own (the overwrite guard must refuse its shares), and the
/// first status read of it after its 3b fails once. Whichever way the targets are checked
/// and with one job, the checks refuse, and no share leaves for target2: a failed read is a
/// problem, never a check skipped (it was, in the all-first preflight, found by a review).
#[test]
fn a_status_read_that_fails_once_never_skips_a_targets_checks() {
    for (checks, jobs) in [
        (Checks::EachTarget, 3),
        (Checks::AllFirst, 3),
        (Checks::EachTarget, 1),
    ] {
        let dir = target2_holding_its_own_key();
        let fail = Arc::new(AtomicBool::new(false));
        let mut cards: BTreeMap<String, Flaky> = open_cards(dir.path(), &NODES)
            .into_iter()
            .map(|(name, card)| {
                let fail = if name == "target2" {
                    fail.clone()
                } else {
                    Arc::default()
                };
                (name, Flaky { card, fail })
            })
            .collect();
        let observer = Observer::new(move |event| {
            if let Progress::PhaseDone { report, target } = event
                && report.phase == Phase::P3b
                && *target == Some("target2")
            {
                fail.store(true, Ordering::SeqCst);
            }
        });
        let options = CloneOptions {
            jobs: std::num::NonZeroUsize::new(jobs),
            observer: Some(observer),
            checks,
        };
        let mut ceremony = Ceremony::open(&dir.path().join("ceremony"), plan()).unwrap();
        let result = run_clone(&mut ceremony, &mut cards, &options);
        assert!(
            matches!(result, Err(CeremonyError::Preflight { .. })),
            "{checks:?}, {jobs} job(s): {result:?}"
        );
        drop(ceremony);
        assert!(
            bundles(dir.path(), "target2").is_empty(),
            "{checks:?}, {jobs} job(s): shares left for target2"
        );
    }
}

/// Checked each before its shares, with two jobs: one worker is held in target3's 3a while
/// the other serves target1 up to its 3c, then takes target2's 3c (listed before every 3d),
/// whose checks fail (target2 holds its own key). target1's shares have left the source by
/// then; nothing is wrong with target1, so its 3d still runs and its master key is set: a
/// failure stops every phase not started except the 3d of a target whose shares are out
/// (it left target1 with its bundles on disk and no key set, found by a review). target3
/// gets nothing after the 3a that was running, and target2 keeps its own key.
#[test]
fn a_check_failure_on_one_target_still_finishes_a_target_whose_shares_have_left() {
    let dir = target2_holding_its_own_key();
    let own = sym_register(dir.path(), "target2");
    // target3's 3a held until target2's 3c has failed.
    let (observer, seen) = gate_until(Duration::from_secs(60), |event| {
        matches!(
            event,
            Progress::PhaseFailed {
                phase: Phase::P3c,
                target: Some("target2"),
                ..
            }
        )
    });
    let options = CloneOptions {
        jobs: std::num::NonZeroUsize::new(2),
        observer: Some(observer),
        checks: Checks::EachTarget,
    };

    let result = clone(dir.path(), &options, false);
    assert!(
        matches!(result, Err(CeremonyError::Preflight { .. })),
        "{result:?}"
    );
    let ended = std::mem::take(&mut seen.0.lock().unwrap().ended);
    let ended_for = |target: &str| -> Vec<Phase> {
        ended
            .iter()
            .filter(|(_, t)| t == target)
            .map(|(p, _)| *p)
            .collect()
    };
    assert_eq!(
        ended_for("target1"),
        [Phase::P3a, Phase::P3b, Phase::P3c, Phase::P3d],
        "{ended:?}"
    );
    assert_eq!(
        sym_register(dir.path(), "target1").current_patterns,
        sym_register(dir.path(), "source").current_patterns,
        "target1's master key is set"
    );
    assert_eq!(ended_for("target3"), [Phase::P3a], "{ended:?}");
    assert!(bundles(dir.path(), "target2").is_empty());
    assert!(bundles(dir.path(), "target3").is_empty());
    let target2 = sym_register(dir.path(), "target2");
    assert_eq!(target2.current_patterns, own.current_patterns);
    assert_eq!(target2.new, NewState::Empty);
}
