//! `clone`: every phase of a plan, for every target, resumable, the targets' independent
//! steps at once.
//!
//! Run it again after an interruption at any point and it finishes the ceremony: every
//! phase reconciles with the nodes' real state and with the files already written.
//!
//! **Parallel targets.** The phases form a graph: 1 (SA) → 2a (source) → 2b (SA); 1 → 3a
//! (each target) → 3b (SA, for that target); then 3c (source, for a target) → 3d (that
//! target). A phase starts when the phases it needs are done and its nodes are free: a
//! node is never used by two threads at once, so the SA's steps (1, 2b, every 3b) and the
//! source's (2a, every 3c) stay one after another, while 3a runs on every target at once,
//! and 3d on one target overlaps 3c for the next and 3d on the others. `jobs` bounds the
//! phases running at once; with 1 the order is exactly that of the per-phase commands (1,
//! 2a, 2b, then 3a and 3b per target, then 3c and 3d per target). With more, 3c also
//! writes each bundle on a second thread while the source obtains the next share (the
//! source's chain of 3c is the critical path; see `phases::shares`).
//!
//! **Checks before shares leave** ([`Checks`]). No share ever leaves the source for a target
//! before the preflight of that target — the source's side, the target's side and the
//! overwrite guard — has found nothing. With one job, under dual control, or when asked
//! ([`Checks::AllFirst`]), every target is checked at once after every 3b, before the
//! first 3c: every problem of every node is known before any share leaves. Otherwise
//! ([`Checks::EachTarget`]) a target's 3c starts as soon as its own 3b and 2b are done,
//! behind the checks of that one target, so the source's shares overlap the other targets'
//! key generations; a problem on one target then stops the ceremony: no phase starts after
//! it but the 3d of a target whose 3c is done (its shares have left the source; see
//! [`Stop`]), a rerun finishes the rest once it is fixed, and `--dry-run` lists
//! beforehand every problem that can be known before the keys exist.
//!
//! **The journal stays one ordered chain**: every thread appends through the ceremony's one
//! writer, each record whole and synced before the next (see [`Ceremony::worker`]). Records
//! of concurrent phases interleave; each names its phase and node, and an outcome names its
//! intent's seq, so the report pairs them whatever lies between. A signal stops every
//! thread at its next safe point; a failure lets the running phases finish and starts no
//! other but the 3d of a target whose shares have left the source.
//!
//! **Dual control.** With the plan's `dual_control` on, the SA key's registration on the
//! source and each target needs two people and two commands. `clone` runs everything one
//! person may (every phase up to 3b), then, before any share leaves, stops with the
//! registrations still missing ([`CloneSummary::waiting`]); run again after them, it
//! finishes.

use std::num::NonZeroUsize;
use std::sync::{Condvar, Mutex, PoisonError};

use mkclone_backend::{Backend, NodeStatus, StatusCache};

use crate::ceremony::{Ceremony, PhaseReport};
use crate::failure::{CeremonyError, Problems, Result};
use crate::phase::Phase;
use crate::phases;
use crate::progress::{Observer, Progress};

/// Where the orchestrator finds a node by its name in the plan.
pub trait Nodes {
    fn node(&mut self, name: &str) -> Result<&mut dyn Backend>;

    /// Every node named (distinct names), each usable from its own thread, in that order.
    fn nodes_mut(&mut self, names: &[&str]) -> Result<Vec<&mut (dyn Backend + Send)>>;
}

/// Nodes already open, by name (tests, benchmarks, the demo).
impl<B: Backend + Send> Nodes for std::collections::BTreeMap<String, B> {
    fn node(&mut self, name: &str) -> Result<&mut dyn Backend> {
        match self.get_mut(name) {
            Some(b) => Ok(b),
            None => Err(unavailable(name)),
        }
    }

    fn nodes_mut(&mut self, names: &[&str]) -> Result<Vec<&mut (dyn Backend + Send)>> {
        pick(
            self.iter_mut()
                .map(|(n, b)| (n.as_str(), b as &mut (dyn Backend + Send))),
            names,
        )
    }
}

/// The backends of `all` that `names` names, in the order of `names`.
pub fn pick<'a>(
    all: impl Iterator<Item = (&'a str, &'a mut (dyn Backend + Send))>,
    names: &[&str],
) -> Result<Vec<&'a mut (dyn Backend + Send)>> {
    let mut slots: Vec<Option<&'a mut (dyn Backend + Send)>> =
        std::iter::repeat_with(|| None).take(names.len()).collect();
    for (name, backend) in all {
        if let Some(i) = names.iter().position(|n| *n == name) {
            slots[i] = Some(backend);
        }
    }
    slots
        .into_iter()
        .zip(names)
        .map(|(slot, name)| slot.ok_or_else(|| unavailable(name)))
        .collect()
}

fn unavailable(name: &str) -> CeremonyError {
    CeremonyError::NodeUnavailable {
        node: name.into(),
        message: "no such node is open".into(),
    }
}

/// When `clone` checks the targets before shares leave the source for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Checks {
    /// Each target right before its own shares (its 3c), once its own key is certified:
    /// the shares of one target need not wait for the others' keys. With one job or under
    /// dual control this is [`Checks::AllFirst`], which costs nothing more there.
    #[default]
    EachTarget,
    /// Every target at once after every 3b, before the first share leaves the source.
    AllFirst,
}

/// How `clone` runs.
#[derive(Clone, Debug, Default)]
pub struct CloneOptions {
    /// Phases running at once, each on nodes of its own: `None` for one per target; 1 for
    /// the order of the per-phase commands.
    pub jobs: Option<NonZeroUsize>,
    /// Where every action is shown as it happens.
    pub observer: Option<Observer>,
    /// When the targets are checked before shares leave the source.
    pub checks: Checks,
}

impl CloneOptions {
    /// One phase at a time, in the order of the per-phase commands.
    pub fn serial() -> Self {
        Self {
            jobs: NonZeroUsize::new(1),
            ..Self::default()
        }
    }

    /// The number of phases running at once for a plan of `targets` targets.
    pub fn jobs_for(&self, targets: usize) -> usize {
        self.jobs.map_or(targets.max(1), NonZeroUsize::get)
    }

    /// The checks a plan gets: every target first with one job or under dual control
    /// (whose stop for the registrations comes after every 3b anyway), else as asked.
    pub fn checks_for(&self, plan: &crate::Plan) -> Checks {
        if self.jobs_for(plan.targets.len()) <= 1 || plan.dual_control {
            Checks::AllFirst
        } else {
            self.checks
        }
    }
}

/// The outcome of a whole `clone`.
#[derive(Debug, serde::Serialize)]
pub struct CloneSummary {
    /// Every phase that ran, in the order they finished.
    pub phases: Vec<PhaseReport>,
    /// Every node's status at the end, by name (as objects: `node` beside the status).
    #[serde(serialize_with = "named_statuses")]
    pub nodes: Vec<(String, NodeStatus)>,
    /// The journal's final hash (for the ceremony report).
    pub journal_head: String,
    /// Dual control: the registrations two people must make before `clone` can go on
    /// (`None` when the ceremony went to its end).
    pub waiting: Option<DualControlWait>,
}

/// `[{"node": NAME, "identity": …, "registers": …}, …]`: each status with its node's name.
fn named_statuses<S: serde::Serializer>(
    nodes: &[(String, NodeStatus)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct Named<'a> {
        node: &'a str,
        #[serde(flatten)]
        status: &'a NodeStatus,
    }
    s.collect_seq(nodes.iter().map(|(node, status)| Named { node, status }))
}

/// Where a dual-control `clone` stopped: the SA key's registrations still missing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DualControlWait {
    /// The SA key's fingerprint, the trust anchor (`--sa-fingerprint`).
    pub sa_fingerprint: String,
    /// The SA public-key hash's fingerprint, which `register-sa-hash` shows and the two
    /// people compare in person with the SA operator's.
    pub registration_fingerprint: String,
    /// Each node still missing a registration, in plan order.
    pub pending: Vec<PendingRegistration>,
}

/// One node's missing SA-key registration steps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingRegistration {
    pub node: String,
    /// The hash is registered (step 1 done).
    pub hash_registered: bool,
    /// Who registered the hash, as the journal says: the key's registrant must be another.
    pub hash_registered_by: Option<String>,
}

/// A retained public key, read from its node, as the confirmation of a key to certify.
fn read_retained(
    node: &mut dyn Backend,
    name: &str,
    label: &mkclone_backend::KeyLabel,
) -> Result<phases::KeyConfirmation> {
    let token = node
        .retained_public_key(label)
        .map_err(CeremonyError::backend(name, "read a retained public key"))?;
    Ok(token
        .map(phases::KeyConfirmation::FromNode)
        .unwrap_or(phases::KeyConfirmation::None))
}

/// The number of phases `clone` runs for a plan (for progress bars).
pub fn phase_count(targets: usize) -> u64 {
    3 + 4 * targets as u64
}

/// One phase of `clone` for the scheduler: what it runs and on which nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    P1,
    P2a,
    P2b,
    P3a(usize),
    P3b(usize),
    P3c(usize),
    P3d(usize),
}

impl Step {
    fn target(self) -> Option<usize> {
        match self {
            Self::P3a(t) | Self::P3b(t) | Self::P3c(t) | Self::P3d(t) => Some(t),
            _ => None,
        }
    }
}

/// A step, the node slots it holds, and the steps (indices) it waits for.
struct Task {
    step: Step,
    nodes: Vec<usize>,
    after: Vec<usize>,
    /// 3c under [`Checks::EachTarget`]: its target's preflight first (source, target,
    /// overwrite guard), on the two nodes the task holds.
    check_target: bool,
}

impl Task {
    fn new(step: Step, nodes: Vec<usize>, after: Vec<usize>) -> Self {
        Self {
            step,
            nodes,
            after,
            check_target: false,
        }
    }
}

/// Node slots: 0 the SA, 1 the source, 2.. the targets.
const SA: usize = 0;
const SOURCE: usize = 1;

/// Up to the checks: 1, 2a, 2b, and 3a then 3b for each target, in that order.
fn keys_stage(targets: usize) -> Vec<Task> {
    let mut tasks = vec![
        Task::new(Step::P1, vec![SA], vec![]),
        Task::new(Step::P2a, vec![SOURCE], vec![0]),
        // 2b reads the CSS key from the source to confirm it.
        Task::new(Step::P2b, vec![SA, SOURCE], vec![1]),
    ];
    for t in 0..targets {
        let a = tasks.len();
        tasks.push(Task::new(Step::P3a(t), vec![2 + t], vec![0]));
        // 3b reads the CSR key from the target to confirm it.
        tasks.push(Task::new(Step::P3b(t), vec![SA, 2 + t], vec![a]));
    }
    tasks
}

/// After the checks of every target: 3c then 3d for each target. With one job, in that
/// order (the per-phase commands'). With more, every 3c is listed before every 3d: the
/// source's chain of 3c is the critical path, and a worker takes the first ready task in
/// list order, so the worker whose 3c just freed the source starts the next 3c at once,
/// and the 3d it made ready goes to another worker (waking one takes a few milliseconds on
/// a busy machine).
fn shares_stage(targets: usize, jobs: usize) -> Vec<Task> {
    let three_c = |t: usize| Task::new(Step::P3c(t), vec![SOURCE], vec![]);
    let three_d = |t: usize, c: usize| Task::new(Step::P3d(t), vec![2 + t], vec![c]);
    if jobs <= 1 {
        (0..targets)
            .flat_map(|t| [three_c(t), three_d(t, 2 * t)])
            .collect()
    } else {
        let c = (0..targets).map(three_c);
        c.chain((0..targets).map(|t| three_d(t, t))).collect()
    }
}

/// [`Checks::EachTarget`]: the whole ceremony as one graph. Each target's 3c waits for 2b
/// and that target's 3b only, holds the source and that target (its checks read both),
/// and checks that target first; every 3c is listed before every 3d, as in
/// [`shares_stage`].
fn each_target_graph(targets: usize) -> Vec<Task> {
    let mut tasks = keys_stage(targets);
    let index = |tasks: &[Task], step: Step| tasks.iter().position(|t| t.step == step);
    let first_c = tasks.len();
    for t in 0..targets {
        let after = [Step::P2b, Step::P3b(t)]
            .into_iter()
            .filter_map(|step| index(&tasks, step))
            .collect();
        tasks.push(Task {
            check_target: true,
            ..Task::new(Step::P3c(t), vec![SOURCE, 2 + t], after)
        });
    }
    for t in 0..targets {
        tasks.push(Task::new(Step::P3d(t), vec![2 + t], vec![first_c + t]));
    }
    tasks
}

/// Run every phase. Each phase's actions go to `options.observer` as they happen.
pub fn run_clone(
    c: &mut Ceremony,
    nodes: &mut dyn Nodes,
    options: &CloneOptions,
) -> Result<CloneSummary> {
    let plan = c.plan.clone();
    if let Some(o) = &options.observer {
        c.set_observer(Some(o.clone()));
    }
    // The trust anchor: the SA key the SA node holds (when phase 1 made it already) must
    // be the plan's pinned one; phase 1 pins the key it makes. sa.db is checked against it.
    if let Some(token) = nodes
        .node(&plan.sa.name)?
        .retained_public_key(&plan.sa_label())
        .map_err(CeremonyError::backend(
            &plan.sa.name,
            "read the SA public key",
        ))?
    {
        c.set_sa_fingerprint(crate::trust::SaFingerprint::of_token(&token)?)?;
    }
    let names: Vec<&str> = [plan.sa.name.as_str(), plan.source.name.as_str()]
        .into_iter()
        .chain(plan.targets.iter().map(|t| t.name.as_str()))
        .collect();
    let jobs = options.jobs_for(plan.targets.len());
    let mut reports = Vec::new();
    // One stage of the graph on every node of the plan, each usable from its own thread.
    let stage = |c: &mut Ceremony, nodes: &mut dyn Nodes, tasks: &[Task], reports: &mut Vec<_>| {
        let slots = node_slots(nodes, &names)?;
        run_stage(c, &slots, tasks, jobs, reports)
    };
    if options.checks_for(&plan) == Checks::EachTarget {
        let graph = each_target_graph(plan.targets.len());
        stage(c, nodes, &graph, &mut reports)?;
    } else {
        stage(c, nodes, &keys_stage(plan.targets.len()), &mut reports)?;
        // The SA key must be on every node before shares move. Under dual control, two
        // people register it with their own commands: stop here until they have.
        if plan.dual_control {
            let pending = pending_registrations(c, nodes)?;
            if !pending.is_empty() {
                let db = phases::trusted_sa_db(c, "clone")?;
                return Ok(CloneSummary {
                    phases: reports,
                    nodes: statuses(nodes, &names)?,
                    journal_head: c.journal().head_hash(),
                    waiting: Some(DualControlWait {
                        sa_fingerprint: c.sa_anchor().map(|a| a.grouped()).unwrap_or_default(),
                        registration_fingerprint: db.sa_hash.fingerprint(),
                        pending,
                    }),
                });
            }
        }
        preflight(c, nodes)?;
        stage(
            c,
            nodes,
            &shares_stage(plan.targets.len(), jobs),
            &mut reports,
        )?;
    }
    Ok(CloneSummary {
        phases: reports,
        nodes: statuses(nodes, &names)?,
        journal_head: c.journal().head_hash(),
        waiting: None,
    })
}

/// Each node behind a lock of its own: the scheduler hands a node to one phase at a time,
/// and the lock makes sure of it. A name that appears twice (one node in two roles)
/// shares its slot.
fn node_slots<'a>(nodes: &'a mut dyn Nodes, names: &[&str]) -> Result<Vec<SlotRef<'a>>> {
    let mut distinct: Vec<&str> = Vec::new();
    for n in names {
        if !distinct.contains(n) {
            distinct.push(n);
        }
    }
    let backends = nodes.nodes_mut(&distinct)?;
    let locks: Vec<std::sync::Arc<Slot<'a>>> = backends
        .into_iter()
        .map(|b| std::sync::Arc::new(Mutex::new(b)))
        .collect();
    Ok(names
        .iter()
        .map(|n| {
            let i = distinct.iter().position(|d| d == n).unwrap_or_default();
            SlotRef {
                index: i,
                slot: locks[i].clone(),
            }
        })
        .collect())
}

type Slot<'a> = Mutex<&'a mut (dyn Backend + Send)>;

/// A role's node: the lock of its (distinct) node, and that node's index.
struct SlotRef<'a> {
    index: usize,
    slot: std::sync::Arc<Slot<'a>>,
}

/// What the scheduler knows, under its lock.
struct Board {
    started: Vec<bool>,
    done: Vec<bool>,
    /// Distinct nodes in use.
    busy: Vec<bool>,
    /// Distinct nodes a failed phase held: nothing starts on them after the failure.
    failed: Vec<bool>,
    running: usize,
    /// Why phases no longer start, once one failed or a thread panicked.
    stop: Option<Stop>,
    reports: Vec<PhaseReport>,
    errors: Vec<CeremonyError>,
}

/// Run `tasks` on up to `jobs` threads; each phase's report goes into `reports` as it
/// finishes. The first failure is returned once the running phases have finished.
fn run_stage(
    c: &Ceremony,
    slots: &[SlotRef<'_>],
    tasks: &[Task],
    jobs: usize,
    reports: &mut Vec<PhaseReport>,
) -> Result<()> {
    let distinct = slots.iter().map(|s| s.index).max().map_or(0, |m| m + 1);
    let board = Mutex::new(Board {
        started: vec![false; tasks.len()],
        done: vec![false; tasks.len()],
        busy: vec![false; distinct],
        failed: vec![false; distinct],
        running: 0,
        stop: None,
        reports: Vec::new(),
        errors: Vec::new(),
    });
    let wake = Condvar::new();
    let workers = jobs.clamp(1, tasks.len().max(1));
    if workers == 1 {
        work(c, slots, tasks, &board, &wake, false);
    } else {
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| work(c, slots, tasks, &board, &wake, true));
            }
        });
    }
    let board = board.into_inner().unwrap_or_else(PoisonError::into_inner);
    reports.extend(board.reports);
    match board.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One worker: take the first task (in list order) whose predecessors are done and whose
/// nodes are free, run it, repeat; stop when none is left that may start. With
/// `write_behind` (more than one job), phase 3c writes its bundles on a thread of its own.
fn work(
    c: &Ceremony,
    slots: &[SlotRef<'_>],
    tasks: &[Task],
    board: &Mutex<Board>,
    wake: &Condvar,
    write_behind: bool,
) {
    let lock = || board.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let mut b = lock();
        let ready = |b: &Board, skip: Option<usize>| {
            tasks.iter().enumerate().position(|(i, t)| {
                let nodes = || t.nodes.iter().map(|n| slots[*n].index);
                Some(i) != skip
                    && !b.started[i]
                    && b.may_start(t.step, nodes())
                    && t.after.iter().all(|a| b.done[*a])
                    && nodes().all(|n| !b.busy[n])
            })
        };
        let next = loop {
            if b.started.iter().all(|s| *s) {
                break None;
            }
            match ready(&b, None) {
                Some(i) => break Some(i),
                // Nothing can start and nothing runs: what is left waits for a failed
                // phase, or was stopped. (While phases run, one of them may yet make a
                // task ready: after a failure, a running 3c makes its target's 3d ready.)
                None if b.running == 0 => break None,
                None => b = wake.wait(b).unwrap_or_else(PoisonError::into_inner),
            }
        };
        let Some(i) = next else {
            wake.notify_all();
            return;
        };
        let task = &tasks[i];
        b.started[i] = true;
        b.running += 1;
        let nodes: Vec<usize> = task.nodes.iter().map(|n| slots[*n].index).collect();
        for n in &nodes {
            b.busy[*n] = true;
        }
        // Wake one more worker only when another task can start now: each woken worker
        // does the same, so a phase that makes many ready (phase 1: every 3a) wakes as many
        // workers as there are tasks, and one that makes none wakes nobody in vain.
        let more = ready(&b, Some(i)).is_some();
        drop(b);
        if more {
            wake.notify_one();
        }
        let running = Running {
            board,
            wake,
            index: i,
            nodes,
            result: None,
        };

        let target = task.step.target().map(|t| c.plan.targets[t].name.clone());
        let mut handle = c.worker();
        handle.set_observer(c.observer().map(|o| o.for_target(target.as_deref())));
        handle.set_write_behind(write_behind);
        let result = run_step(&mut handle, slots, task);
        if let Some(o) = handle.observer() {
            match &result {
                Ok(report) => o.emit(&Progress::PhaseDone {
                    report,
                    target: o.target(),
                }),
                Err(error) => o.emit(&Progress::PhaseFailed {
                    phase: phase_of(task.step),
                    node: &node_name(c, task),
                    target: o.target(),
                    error,
                }),
            }
        }

        let mut running = running;
        running.finish(result);
    }
}

/// A task taken off the board: whatever happens to its thread, even a panic, the board is
/// told it ended (its nodes freed, after a failure only what [`Stop`] allows started) and the other
/// workers are woken, so none waits forever.
struct Running<'a> {
    board: &'a Mutex<Board>,
    wake: &'a Condvar,
    index: usize,
    nodes: Vec<usize>,
    result: Option<Result<PhaseReport>>,
}

impl Running<'_> {
    fn finish(&mut self, result: Result<PhaseReport>) {
        self.result = Some(result);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut b = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        b.running -= 1;
        for n in &self.nodes {
            b.busy[*n] = false;
        }
        match self.result.take() {
            Some(Ok(report)) => {
                b.done[self.index] = true;
                b.reports.push(report);
            }
            Some(Err(e)) => {
                for n in &self.nodes {
                    b.failed[*n] = true;
                }
                let stop = match e {
                    CeremonyError::Interrupted { .. } => Stop::Halted,
                    _ => Stop::Failed,
                };
                b.stop = b.stop.max(Some(stop));
                b.errors.push(e);
            }
            // The thread is unwinding from a panic: stop; the scope re-raises it.
            None => b.stop = Some(Stop::Halted),
        }
        let stop = b.stop.is_some();
        drop(b);
        // A task ended: its nodes are free and its successors may be ready. One worker
        // wakes (it wakes the next if more can start); after a failure, all of them, to end.
        if stop {
            self.wake.notify_all();
        } else {
            self.wake.notify_one();
        }
    }
}

impl Board {
    /// Whether what has failed lets a task of `step` on the distinct nodes `nodes` start.
    fn may_start(&self, step: Step, mut nodes: impl Iterator<Item = usize>) -> bool {
        match self.stop {
            None => true,
            Some(stop) => stop.still_starts(step) && nodes.all(|n| !self.failed[n]),
        }
    }
}

/// Why the scheduler starts no more phases (the worse reason wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    /// A phase failed. Only the 3d of a target whose 3c is done still starts, on a node no
    /// failed phase held: that target's shares have left the source, and setting them
    /// needs only its own node. (Its node can have failed only as another role's: the SA's
    /// node may also be a target, and then a failed 3b for another target holds it.)
    /// Stopping it too would leave a sound target with its bundles on disk and its master
    /// key not set until a rerun.
    Failed,
    /// A signal stopped a phase at a safe point, or a thread panicked: nothing starts.
    Halted,
}

impl Stop {
    fn still_starts(self, step: Step) -> bool {
        // A task starts only once every task it waits for is done: a 3d's is its 3c.
        self == Self::Failed && matches!(step, Step::P3d(_))
    }
}

fn phase_of(step: Step) -> Phase {
    match step {
        Step::P1 => Phase::P1,
        Step::P2a => Phase::P2a,
        Step::P2b => Phase::P2b,
        Step::P3a(_) => Phase::P3a,
        Step::P3b(_) => Phase::P3b,
        Step::P3c(_) => Phase::P3c,
        Step::P3d(_) => Phase::P3d,
    }
}

/// The node a step runs on (its first slot), by name.
fn node_name(c: &Ceremony, task: &Task) -> String {
    let plan = &c.plan;
    match task.nodes[0] {
        SA => plan.sa.name.clone(),
        SOURCE => plan.source.name.clone(),
        t => plan.targets[t - 2].name.clone(),
    }
}

/// Run one step with its nodes locked.
fn run_step(c: &mut Ceremony, slots: &[SlotRef<'_>], task: &Task) -> Result<PhaseReport> {
    let plan = c.plan.clone();
    let guard = |slot: usize| {
        slots[slot]
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    };
    let target = |t: usize| plan.targets[t].name.as_str();
    match task.step {
        Step::P1 => phases::phase1(c, *guard(SA)),
        Step::P2a => phases::phase2a(c, *guard(SOURCE)),
        Step::P2b => {
            let css = read_retained(*guard(SOURCE), &plan.source.name, &plan.css_label())?;
            phases::phase2b(c, *guard(SA), &css)
        }
        Step::P3a(t) => phases::phase3a(c, *guard(2 + t), target(t)),
        Step::P3b(t) => {
            let csr = read_retained(*guard(2 + t), target(t), &plan.csr_label())?;
            phases::phase3b(c, *guard(SA), target(t), &csr)
        }
        Step::P3c(t) => {
            let mut held = guard(SOURCE);
            let mut source = StatusCache::new(&mut **held);
            if task.check_target {
                check_target(c, &mut source, slots, t)?;
            }
            phases::phase3c(c, &mut source, target(t))
        }
        Step::P3d(t) => phases::phase3d(c, *guard(2 + t), target(t)),
    }
}

/// [`Checks::EachTarget`], before any share leaves the source for target `t`: the
/// preflight of that target, as [`preflight`] makes it for every target. `source` is the
/// source the 3c task holds (the status read here serves the 3c that follows, nothing
/// having changed it); the target is locked here, unless one node holds both roles.
fn check_target(
    c: &Ceremony,
    source: &mut StatusCache<'_>,
    slots: &[SlotRef<'_>],
    t: usize,
) -> Result<()> {
    let name = c.plan.targets[t].name.as_str();
    let mut problems = Vec::new();
    phases::preflight_source(c, source, name, &mut problems);
    let source_status = source.status().ok();
    let target_status = if slots[2 + t].index == slots[SOURCE].index {
        phases::preflight_target(c, source, name, &mut problems);
        source.status().ok()
    } else {
        let mut held = slots[2 + t]
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut node = StatusCache::new(&mut **held);
        phases::preflight_target(c, &mut node, name, &mut problems);
        node.status().ok()
    };
    guard_or_problem(
        c,
        source_status.as_ref(),
        target_status.as_ref(),
        name,
        &mut problems,
    );
    found(problems)
}

/// The overwrite guard of one target; when a status it needs could not be read, a problem
/// saying so (the preflights report the read's own error too): never a guard skipped.
fn guard_or_problem(
    c: &Ceremony,
    source: Option<&NodeStatus>,
    target: Option<&NodeStatus>,
    name: &str,
    problems: &mut Vec<crate::failure::Problem>,
) {
    match (source, target) {
        (Some(source), Some(target)) => {
            phases::overwrite_guard(c, source, target, name, problems);
        }
        _ => problems.push(crate::failure::Problem::new(
            name,
            "node",
            "the overwrite guard could not read the source's and this target's status: \
             check the devices and run the command again",
        )),
    }
}

/// Before any share leaves the source: every problem of every node, at once. Nothing
/// changes a node here: each node's status is read once and serves every check of it.
fn preflight(c: &Ceremony, nodes: &mut dyn Nodes) -> Result<()> {
    let plan = c.plan.clone();
    let mut problems = Vec::new();
    // The statuses the checks read, kept for the next checks and the overwrite guard: a
    // read that failed is retried by the next check, and reported by it.
    let mut source_status = None;
    let mut target_statuses = Vec::new();
    for t in &plan.targets {
        let source = nodes.node(&plan.source.name)?;
        let mut source = StatusCache::with_status(source, source_status.take());
        phases::preflight_source(c, &mut source, &t.name, &mut problems);
        source_status = source.status().ok();
        let mut node = StatusCache::new(nodes.node(&t.name)?);
        phases::preflight_target(c, &mut node, &t.name, &mut problems);
        target_statuses.push(node.status().ok());
    }
    for (t, st) in plan.targets.iter().zip(&target_statuses) {
        guard_or_problem(
            c,
            source_status.as_ref(),
            st.as_ref(),
            &t.name,
            &mut problems,
        );
    }
    // Bundles are made by 3c: their absence is not a problem yet.
    found(problems)
}

/// A preflight's verdict: every problem at once, or none.
fn found(mut problems: Vec<crate::failure::Problem>) -> Result<()> {
    problems.dedup();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CeremonyError::Preflight {
            problems: Problems(problems),
        })
    }
}

/// Dual control: the source and targets whose SA-key registration is not complete.
fn pending_registrations(c: &Ceremony, nodes: &mut dyn Nodes) -> Result<Vec<PendingRegistration>> {
    let plan = c.plan.clone();
    let label = plan.sa_label();
    let mut pending = Vec::new();
    for node in std::iter::once(&plan.source).chain(plan.targets.iter()) {
        let registrations = nodes
            .node(&node.name)?
            .list_registrations()
            .map_err(CeremonyError::backend(&node.name, "list registrations"))?;
        let registration = registrations.iter().find(|r| r.name == label);
        if registration.is_some_and(|r| r.key.is_some()) {
            continue;
        }
        pending.push(PendingRegistration {
            node: node.name.clone(),
            hash_registered: registration.is_some(),
            hash_registered_by: registration
                .and_then(|_| phases::hash_registered_by(c, &node.name)),
        });
    }
    Ok(pending)
}

fn statuses(nodes: &mut dyn Nodes, names: &[&str]) -> Result<Vec<(String, NodeStatus)>> {
    let mut out: Vec<(String, NodeStatus)> = Vec::new();
    for name in names {
        if out.iter().any(|(n, _)| n == name) {
            continue;
        }
        let st = nodes
            .node(name)?
            .status()
            .map_err(CeremonyError::backend(name, "read status"))?;
        out.push((name.to_string(), st));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a failure only a 3d starts (its 3c being done, as it waits for it); after a
    /// signal or a panic nothing does, whatever failed before or after.
    #[test]
    fn after_a_failure_only_the_3d_of_a_target_whose_shares_left_starts() {
        use Step::*;
        for step in [P1, P2a, P2b, P3a(0), P3b(1), P3c(2), P3d(0), P3d(3)] {
            let d = matches!(step, P3d(_));
            assert_eq!(Stop::Failed.still_starts(step), d, "{step:?}");
            assert!(!Stop::Halted.still_starts(step), "{step:?}");
        }
        assert_eq!(
            Some(Stop::Failed).max(Some(Stop::Halted)),
            Some(Stop::Halted)
        );
        assert_eq!(
            Some(Stop::Halted).max(Some(Stop::Failed)),
            Some(Stop::Halted)
        );
        assert_eq!(None.max(Some(Stop::Failed)), Some(Stop::Failed));
        // Nothing starts on a node a failed phase held, not even a 3d.
        let board = |stop| Board {
            started: vec![],
            done: vec![],
            busy: vec![false; 3],
            failed: vec![false, true, false],
            running: 0,
            stop,
            reports: vec![],
            errors: vec![],
        };
        assert!(board(None).may_start(P3a(0), [1].into_iter()));
        assert!(board(Some(Stop::Failed)).may_start(P3d(0), [2].into_iter()));
        assert!(!board(Some(Stop::Failed)).may_start(P3d(0), [1].into_iter()));
        assert!(!board(Some(Stop::Failed)).may_start(P3b(0), [2].into_iter()));
        assert!(!board(Some(Stop::Halted)).may_start(P3d(0), [2].into_iter()));
        // Every 3d waits for its own 3c, in every graph: "done before it starts" holds.
        for tasks in [shares_stage(3, 1), shares_stage(3, 3), each_target_graph(3)] {
            for t in tasks.iter().filter(|t| matches!(t.step, P3d(_))) {
                let P3d(n) = t.step else { unreachable!() };
                assert!(
                    t.after.iter().any(|a| tasks[*a].step == P3c(n)),
                    "{:?}",
                    t.step
                );
            }
        }
    }

    /// With one worker, the first ready task in list order is the list itself: the order
    /// of the per-phase commands. With more, the shares stage lists the source's 3c first.
    #[test]
    fn the_stages_list_every_phase_after_what_it_needs() {
        for targets in [1, 3, 10] {
            for stage in [
                keys_stage(targets),
                shares_stage(targets, 1),
                shares_stage(targets, targets),
            ] {
                for (i, t) in stage.iter().enumerate() {
                    assert!(t.after.iter().all(|a| *a < i), "{:?}", t.step);
                }
            }
            assert_eq!(
                (keys_stage(targets).len() + shares_stage(targets, 1).len()) as u64,
                phase_count(targets)
            );
        }
        let order: Vec<Step> = keys_stage(2).iter().map(|t| t.step).collect();
        assert_eq!(
            order,
            [
                Step::P1,
                Step::P2a,
                Step::P2b,
                Step::P3a(0),
                Step::P3b(0),
                Step::P3a(1),
                Step::P3b(1)
            ]
        );
        let steps = |stage: Vec<Task>| -> Vec<(Step, Vec<Step>)> {
            let all: Vec<Step> = stage.iter().map(|t| t.step).collect();
            stage
                .iter()
                .map(|t| (t.step, t.after.iter().map(|a| all[*a]).collect()))
                .collect()
        };
        use Step::{P3c, P3d};
        assert_eq!(
            steps(shares_stage(2, 1)),
            [
                (P3c(0), vec![]),
                (P3d(0), vec![P3c(0)]),
                (P3c(1), vec![]),
                (P3d(1), vec![P3c(1)])
            ]
        );
        // More than one job: the source's chain first, each 3d still after its own 3c.
        assert_eq!(
            steps(shares_stage(2, 3)),
            [
                (P3c(0), vec![]),
                (P3c(1), vec![]),
                (P3d(0), vec![P3c(0)]),
                (P3d(1), vec![P3c(1)])
            ]
        );
    }

    /// Each target checked before its own shares: its 3c waits for 2b and its own 3b and
    /// nothing else, holds the source and its target, and is the only kind of task that
    /// checks; every phase of the per-phase commands is there once.
    #[test]
    fn each_target_is_checked_before_its_own_shares_and_waits_for_no_other_target() {
        use Step::{P2b, P3b, P3c, P3d};
        for targets in [1, 3, 10] {
            let graph = each_target_graph(targets);
            assert_eq!(graph.len() as u64, phase_count(targets));
            let all: Vec<Step> = graph.iter().map(|t| t.step).collect();
            for (i, task) in graph.iter().enumerate() {
                assert!(task.after.iter().all(|a| *a < i), "{:?}", task.step);
                let after: Vec<Step> = task.after.iter().map(|a| all[*a]).collect();
                match task.step {
                    P3c(t) => {
                        assert!(task.check_target);
                        assert_eq!(after, [P2b, P3b(t)]);
                        assert_eq!(task.nodes, [SOURCE, 2 + t]);
                    }
                    P3d(t) => {
                        assert!(!task.check_target);
                        assert_eq!(after, [P3c(t)]);
                    }
                    _ => assert!(!task.check_target),
                }
            }
            // Every 3c before every 3d, as in the shares stage with more than one job.
            let first_d = all.iter().position(|s| matches!(s, P3d(_))).unwrap();
            assert!(all[first_d..].iter().all(|s| matches!(s, P3d(_))));
        }
    }

    /// One job and dual control always check every target first; otherwise as asked.
    #[test]
    fn one_job_and_dual_control_check_every_target_first() {
        let one_target = crate::plan::test_plan("checks", true);
        let plan = |dual_control: bool| {
            let mut plan = one_target.clone();
            let mut second = plan.targets[0].clone();
            second.name = "target2".into();
            plan.targets.push(second);
            plan.dual_control = dual_control;
            plan
        };
        let options = |jobs: usize, checks: Checks| CloneOptions {
            jobs: NonZeroUsize::new(jobs),
            checks,
            ..CloneOptions::default()
        };
        assert_eq!(CloneOptions::default().checks, Checks::EachTarget);
        let each = Checks::EachTarget;
        assert_eq!(options(2, each).checks_for(&plan(false)), each);
        assert_eq!(options(1, each).checks_for(&plan(false)), Checks::AllFirst);
        assert_eq!(options(2, each).checks_for(&plan(true)), Checks::AllFirst);
        assert_eq!(
            options(2, Checks::AllFirst).checks_for(&plan(false)),
            Checks::AllFirst
        );
        // The default jobs: one per target, so one target means one job.
        assert_eq!(
            CloneOptions::default().checks_for(&one_target),
            Checks::AllFirst
        );
    }
}
