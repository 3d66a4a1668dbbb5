//! Whole-ceremony benchmarks on the simulator (release build):
//! - `clone/1_to_N_serial` and `clone/1_to_N_parallel` for N = 1, 3, 10: phases 1-3d, SYM +
//!   ASYM, 3-of-5, RSA-2048, file-backed cards (every card request read, run, fsynced) and
//!   a real ceremony directory; serial is `--jobs 1` (the order of the per-phase commands),
//!   parallel `--jobs N` (the default; 2 for one target);
//! - `clone_latency_10ms/…`: the same for N = 3 and 10 with a simulated device latency of
//!   10 ms on every card request (`SimTransport::set_latency`): the time a real card spends
//!   on a request outside this process, which parallel targets overlap;
//! - `demo_binary`: the `mkclone demo` binary, wall time;
//! - in the breakdown only, 1 → 3 with the cards in memory (`memory_card`): what the
//!   simulator's card files (a lock, a read and, after a change, a durable write per
//!   request) cost, which a real card does not;
//!
//! and, after criterion's runs, a breakdown of each configuration: wall time, the process's
//! CPU time, each category of primitives (RSA, 3DES, SHA: calls, wall and CPU time) and
//! fsync (calls, wall / CPU: a durable write counts whole), and our own CPU (the process's
//! CPU time minus the primitives' and fsync's CPU time), of which the simulated cards' own
//! code (`Category::Card`: what a real coprocessor runs in the card) and the host's part
//! (the rest: mkclone itself), and, for serial runs, the rest of the wall time (wall minus
//! the wall of the primitives and fsync: the figure tracked before); then one
//! card's requests through its store, file-backed and in memory (CPU per request: what the
//! simulator's card file protocol costs at each request); then the demo's wall time and
//! peak memory. Figures are recorded in docs/PERFORMANCE.md.
//!
//!     cargo bench --bench ceremony            # everything
//!     cargo bench --bench ceremony -- none    # only the breakdown and the demo figures
//!     MKCLONE_BENCH_RUNS=3 cargo bench --bench ceremony -- none   # fewer breakdown runs
//!     MKCLONE_BENCH_ONLY=1_to_10 cargo bench --bench ceremony -- none   # those breakdowns only
//!     MKCLONE_BENCH_ONLY='1_to_10_parallel$' …   # that row only (`$`: the whole label)
//!     MKCLONE_BENCH_TIMELINE=1_to_10_parallel cargo bench --bench ceremony   # one timeline only
//!     MKCLONE_BENCH_PAIRED=30 cargo bench --bench ceremony   # the 1 -> 10 ratio, paired runs only
//!     MKCLONE_BENCH_CHECKS=all-first …    # parallel runs check every target first
//!                                         # (`clone --check-all-first`), not each before its shares
//!
//! The paired mode runs 1 -> 10 serial and parallel alternately, each on fresh cards, and
//! gives the parallel / serial ratio with its 95 % interval: the two runs of a pair see the
//! same state of the machine, so a drift of the machine (other guests on the host, the
//! disk's cache) moves both, where two criterion groups minutes apart see two states.
//!
//! Every run's simulated cards generate their RSA keys from a seed (`setup`): the two runs
//! of a pair, and the n-th run of each configuration in the breakdown and in criterion,
//! generate the same keys, so that they do the same RSA work.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use mkclone::backend::timing::{self, Category};
use mkclone::backend::{Backend, CloneableKind, Eid, MofN, RsaModulusBits, SerialNumber};
use mkclone::ceremony::run::{Checks, CloneOptions, run_clone};
use mkclone::ceremony::{Ceremony, Plan, PlanSpec};
use mkclone::sim::{Apqn, SimBackend, SimBus};

type Cards = BTreeMap<String, SimBackend>;

/// The simulated device latency of the `clone_latency_*` runs.
const LATENCY: Duration = Duration::from_millis(10);

/// One configuration: targets, phases at once, device latency, and (breakdown only)
/// cards kept in memory instead of files, to tell the simulator's card files apart.
#[derive(Clone, Copy)]
struct Config {
    targets: usize,
    jobs: usize,
    latency: Duration,
    memory_cards: bool,
}

impl Config {
    fn name(&self) -> String {
        let mode = if self.jobs == 1 { "serial" } else { "parallel" };
        let cards = if self.memory_cards {
            "_memory_cards"
        } else {
            ""
        };
        format!("1_to_{}_{mode}{cards}", self.targets)
    }

    /// The breakdown's row label: the name, and the device latency if any.
    fn label(&self) -> String {
        if self.latency.is_zero() {
            self.name()
        } else {
            format!("{} +{}ms", self.name(), self.latency.as_millis())
        }
    }
}

/// Serial (`--jobs 1`) and parallel (the default `--jobs`, one per target; 2 for one
/// target, so that 2a on the source overlaps 3a on the target) for each number of targets.
fn configs(latency: Duration, targets: &[usize]) -> Vec<Config> {
    targets
        .iter()
        .flat_map(|&targets| {
            [1, targets.max(2)].into_iter().map(move |jobs| Config {
                targets,
                jobs,
                latency,
                memory_cards: false,
            })
        })
        .collect()
}

fn target_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("t{i}")).collect()
}

fn plan(targets: usize) -> Plan {
    let m_of_n = MofN::new(3, 5).unwrap();
    let eid = |s: &str| Eid::new(&s.to_uppercase()).unwrap();
    Plan::new(PlanSpec {
        id: "bench".into(),
        sa: ("sa".into(), eid("sa")),
        source: ("source".into(), eid("source")),
        targets: target_names(targets)
            .into_iter()
            .map(|t| {
                let e = eid(&t);
                (t, e)
            })
            .collect(),
        kinds: CloneableKind::ALL.to_vec(),
        m_of_n,
        bits: RsaModulusBits::B2048,
        rehearsal: true,
        share_indices: mkclone::ceremony::plan::share_indices(&[1, 2, 3], m_of_n).unwrap(),
        dual_control: false,
        pinned_serials: Default::default(),
        sa_fingerprint: None,
        source_patterns: Vec::new(),
    })
    .unwrap()
}

/// Fresh cards (SA 1, source 2 with random master keys, targets 3..) in `dir`, whose RSA
/// keys derive from `seed` (`SimTransport::set_keygen_seed`): the runs a figure compares
/// (serial and parallel of one pair, or the n-th run of each configuration) get one seed,
/// so that they generate the same keys and differ only by how they run. A key
/// generation's time varies by a factor of three with where its primes fall: unseeded,
/// that variation was the largest noise of a comparison.
fn setup(dir: &Path, config: Config, seed: u64) -> Cards {
    let bus = SimBus::new(dir.join("cards"));
    let mut cards = BTreeMap::new();
    let names = ["sa".to_string(), "source".to_string()]
        .into_iter()
        .chain(target_names(config.targets));
    for (i, name) in names.enumerate() {
        let card = u8::try_from(i + 1).unwrap();
        let apqn = Apqn::new(card, 0x0d).unwrap();
        let serial = format!("B{card}");
        let mut b = if config.memory_cards {
            mkclone::sim::memory_card(apqn, &serial).unwrap()
        } else {
            bus.create_card(apqn, &SerialNumber::new(&serial).unwrap())
                .unwrap()
        };
        if name == "source" {
            for kind in CloneableKind::ALL {
                b.load_random_master_key(kind).unwrap();
            }
        }
        b.transport_mut().set_latency(config.latency);
        b.transport_mut().set_keygen_seed(seed);
        cards.insert(name, b);
    }
    cards
}

/// `MKCLONE_BENCH_CHECKS=all-first`: `clone --check-all-first`; otherwise the default.
fn checks() -> Checks {
    match std::env::var("MKCLONE_BENCH_CHECKS").as_deref() {
        Ok("all-first") => Checks::AllFirst,
        Ok("each-target") | Err(_) => Checks::EachTarget,
        Ok(other) => panic!("MKCLONE_BENCH_CHECKS={other:?}: use all-first or each-target"),
    }
}

fn one_ceremony(dir: &Path, cards: &mut Cards, config: Config) {
    one_observed_ceremony(dir, cards, config, None);
}

fn one_observed_ceremony(
    dir: &Path,
    cards: &mut Cards,
    config: Config,
    observer: Option<mkclone::ceremony::progress::Observer>,
) {
    let mut ceremony = Ceremony::open(&dir.join("ceremony"), plan(config.targets)).unwrap();
    let options = CloneOptions {
        jobs: std::num::NonZeroUsize::new(config.jobs),
        observer,
        checks: checks(),
    };
    run_clone(&mut ceremony, cards, &options).unwrap();
}

/// Where the wall time of one ceremony goes: each phase's start and end (ms from the
/// start), in the order they started, and the time no phase ran (the preflight, the
/// stages' set-up). `MKCLONE_BENCH_TIMELINE=<configuration>` (e.g. `1_to_10_parallel`).
fn timeline(name: &str) {
    let Some(config) = configs(Duration::ZERO, &[1, 3, 10])
        .into_iter()
        .find(|c| c.name() == name)
    else {
        eprintln!("MKCLONE_BENCH_TIMELINE: no configuration {name}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cards = setup(dir.path(), config, 0);
    let start = Instant::now();
    type Event = (String, bool, f64, u64);
    let events: std::sync::Arc<std::sync::Mutex<Vec<Event>>> = Default::default();
    let sink = events.clone();
    let observer = mkclone::ceremony::progress::Observer::new(move |p| {
        use mkclone::ceremony::progress::Progress;
        let at = start.elapsed().as_secs_f64() * 1e3;
        let (phase, node, begins) = match p {
            Progress::PhaseStarted { phase, node, .. } => (*phase, node.to_string(), true),
            Progress::PhaseDone { report, .. } => (report.phase, report.node.clone(), false),
            _ => return,
        };
        let target = p.target().map(|t| format!(" for {t}")).unwrap_or_default();
        // The observer runs on the phase's thread: its CPU clock is the phase's.
        sink.lock().unwrap().push((
            format!("{phase} on {node}{target}"),
            begins,
            at,
            timing::thread_cpu_nanos(),
        ));
    });
    one_observed_ceremony(dir.path(), &mut cards, config, Some(observer));
    let total = start.elapsed().as_secs_f64() * 1e3;
    let events = events.lock().unwrap();
    println!(
        "\ntimeline of one {name} ceremony (ms from its start; total {total:.1}): start, end, \
         wall, CPU of the phase's thread"
    );
    let mut open = 0usize;
    let mut idle = 0.0;
    let mut last = 0.0;
    for (what, begins, at, cpu) in events.iter() {
        if open == 0 {
            idle += at - last;
        }
        open = if *begins {
            open + 1
        } else {
            open.saturating_sub(1)
        };
        last = *at;
        if *begins {
            let (end, end_cpu) = events
                .iter()
                .find(|(w, b, t, _)| w == what && !b && t >= at)
                .map_or((f64::NAN, *cpu), |e| (e.2, e.3));
            println!(
                "{at:>8.1} {end:>8.1} {:>7.1} {:>7.1}  {what}",
                end - at,
                (end_cpu - cpu) as f64 / 1e6
            );
        }
    }
    idle += total - last;
    println!("no phase running: {idle:.1} ms");
}

/// `pairs` pairs of 1 -> 10 ceremonies, serial then parallel, each on fresh cards: the wall
/// time of each, and the parallel / serial ratio of their means with the 95 % interval of
/// the per-pair ratio's mean (normal approximation).
fn paired(pairs: usize) {
    let configs = configs(Duration::ZERO, &[10]);
    let mut walls = [Vec::new(), Vec::new()];
    for pair in 0..pairs {
        for (i, config) in configs.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let mut cards = setup(dir.path(), *config, pair as u64);
            let start = Instant::now();
            one_ceremony(dir.path(), &mut cards, *config);
            walls[i].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt()
    };
    let ratios: Vec<f64> = walls[1].iter().zip(&walls[0]).map(|(p, s)| p / s).collect();
    let half = 1.96 * sd(&ratios) / (ratios.len() as f64).sqrt();
    println!(
        "1 -> 10, {pairs} pairs (ms): serial mean {:.1} (sd {:.1}), parallel mean {:.1} (sd {:.1}); \
         parallel / serial {:.3} (ratio of means); per-pair ratio {:.3} [{:.3}, {:.3}]",
        mean(&walls[0]),
        sd(&walls[0]),
        mean(&walls[1]),
        sd(&walls[1]),
        mean(&walls[1]) / mean(&walls[0]),
        mean(&ratios),
        mean(&ratios) - half,
        mean(&ratios) + half,
    );
}

fn bench_group(c: &mut Criterion, group: &str, configs: &[Config]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for &config in configs {
        // Every configuration draws the same sequence of seeds.
        let mut seed = 0;
        g.bench_function(config.name(), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    seed += 1;
                    let cards = setup(dir.path(), config, seed);
                    (dir, cards)
                },
                |(dir, mut cards)| {
                    one_ceremony(dir.path(), &mut cards, config);
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn bench_clone(c: &mut Criterion) {
    bench_group(c, "clone", &configs(Duration::ZERO, &[1, 3, 10]));
    bench_group(
        c,
        &format!("clone_latency_{}ms", LATENCY.as_millis()),
        &configs(LATENCY, &[3, 10]),
    );
    let mut g = c.benchmark_group("ceremony");
    g.sample_size(10);
    g.bench_function("demo_binary", |b| {
        b.iter(|| {
            let out = Command::new(env!("CARGO_BIN_EXE_mkclone"))
                .arg("demo")
                .output()
                .unwrap();
            assert!(out.status.success());
        })
    });
    g.finish();
}

/// One configuration's means over `runs` ceremonies.
struct Breakdown {
    wall: f64,
    process_cpu: f64,
    totals: timing::Totals,
    requests: f64,
}

fn measure(config: Config, runs: u32) -> Breakdown {
    let mut wall = Duration::ZERO;
    let mut process_cpu = 0u64;
    let mut totals = timing::Totals::default();
    let mut requests = 0u64;
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let mut cards = setup(dir.path(), config, u64::from(run));
        let before = timing::snapshot();
        let cpu_before = timing::process_cpu_nanos();
        let start = Instant::now();
        one_ceremony(dir.path(), &mut cards, config);
        wall += start.elapsed();
        process_cpu += timing::process_cpu_nanos() - cpu_before;
        totals.add(&timing::snapshot().since(&before));
        requests += cards
            .values()
            .map(|c| c.transport().requests())
            .sum::<u64>();
    }
    let n = f64::from(runs);
    Breakdown {
        wall: wall.as_nanos() as f64 / n,
        process_cpu: process_cpu as f64 / n,
        totals,
        requests: requests as f64 / n,
    }
}

/// What one counted measurement (`timing::measure`) costs, in ns: (outside the span it
/// counts, which "ours" includes; inside it, which a category includes). The median of 5
/// rounds of 20 000 empty measurements on this thread, the process otherwise idle. A
/// ceremony that nobody measures pays neither: counting is the benchmark's
/// (`timing::enable`).
fn probe_cost() -> (f64, f64) {
    const CALLS: u32 = 20_000;
    let mut rounds: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let before = timing::snapshot();
            let cpu = timing::process_cpu_nanos();
            for _ in 0..CALLS {
                timing::measure(Category::Sha, || std::hint::black_box(()));
            }
            let total = timing::process_cpu_nanos() - cpu;
            let inside = timing::snapshot().since(&before).cpu_nanos(Category::Sha);
            let per_call = |ns: u64| ns as f64 / f64::from(CALLS);
            (per_call(total.saturating_sub(inside)), per_call(inside))
        })
        .collect();
    rounds.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    rounds[rounds.len() / 2]
}

/// Every configuration's breakdown, `runs` ceremonies each.
fn breakdown(runs: u32) {
    timing::enable();
    let (probe_out, probe_in) = probe_cost();
    let only = std::env::var("MKCLONE_BENCH_ONLY").unwrap_or_default();
    let all: Vec<Config> = configs(Duration::ZERO, &[1, 3, 10])
        .into_iter()
        .chain(configs(LATENCY, &[3, 10]))
        .chain(configs(Duration::ZERO, &[3]).into_iter().map(|c| Config {
            memory_cards: true,
            ..c
        }))
        .filter(|c| match only.strip_suffix('$') {
            Some(exact) => c.label() == exact,
            None => c.label().contains(&only),
        })
        .collect();
    println!(
        "\nclone, SYM+ASYM, 3-of-5, RSA-2048, file-backed simulated cards: mean of {runs} runs (ms; \
         categories: calls, wall summed over threads / CPU)"
    );
    println!(
        "the counters' own cost per measurement: {probe_out:.0} ns outside what it counts \
         (in \"ours\"), {probe_in:.0} ns inside; \"counters\" is the outside part over the \
         run's measurements, and \"%CPU uncounted\" the share of ours in a run that counts \
         nothing (as a ceremony outside this benchmark)"
    );
    println!(
        "ours counts the simulated cards' own code (\"card\": a request's handling outside \
         its primitives and fsyncs, which a real coprocessor does in the card); \"host\" is \
         ours without it, what mkclone itself costs the host, as a share of the process's \
         CPU in a run that counts nothing"
    );
    println!(
        "{:<28} {:>8} {:>8} {:>22} {:>13} {:>9} {:>18} {:>9} {:>14} {:>7} {:>7} {:>9} {:>14} {:>9} {:>14} {:>13}",
        "configuration",
        "wall",
        "CPU",
        "RSA",
        "3DES",
        "SHA",
        "fsync",
        "requests",
        "ours CPU",
        "%wall",
        "%CPU",
        "counters",
        "%CPU uncounted",
        "card CPU",
        "host %CPU unc.",
        "rest of wall"
    );
    let mut serial_wall = BTreeMap::new();
    for config in all {
        let b = measure(config, runs);
        let n = f64::from(runs);
        let cat = |c: Category| {
            (
                b.totals.calls(c) as f64 / n,
                b.totals.nanos(c) as f64 / n / 1e6,
                b.totals.cpu_nanos(c) as f64 / n / 1e6,
            )
        };
        let (rsa, tdes, sha, fsync) = (
            cat(Category::Rsa),
            cat(Category::Tdes),
            cat(Category::Sha),
            cat(Category::FileSync),
        );
        // Ours: everything outside the primitives and fsync, the simulated cards' own code
        // included; the host's part: without it.
        let card = b.totals.cpu_nanos(Category::Card) as f64 / n / 1e6;
        let host = (b.process_cpu - b.totals.measured_cpu_nanos() as f64 / n) / 1e6;
        let ours = host + card;
        // Without the counters: ours loses every measurement's outside part and the card
        // spans' inside part; the host part the outside part of the measurements not made
        // inside a card's span; the process both parts of every measurement.
        let measurements = b.totals.all_calls() as f64 / n;
        let top_level = measurements - b.totals.nested_calls as f64 / n;
        let card_spans = b.totals.calls(Category::Card) as f64 / n;
        let counters = (measurements * probe_out + card_spans * probe_in) / 1e6;
        let uncounted_cpu = b.process_cpu - measurements * (probe_out + probe_in);
        let uncounted = 100.0 * (ours - counters) * 1e6 / uncounted_cpu;
        let host_uncounted = 100.0 * (host - top_level * probe_out / 1e6) * 1e6 / uncounted_cpu;
        let label = config.label();
        // Serial, no latency: the figure docs/PERFORMANCE.md tracked before CPU clocks,
        // wall time minus the wall time of every category, as a share of the wall.
        let rest = if config.jobs == 1 && config.latency.is_zero() {
            let rest =
                b.wall - (b.totals.measured_nanos() - b.totals.nanos(Category::Card)) as f64 / n;
            format!("{:.1} {:.1}%", rest / 1e6, 100.0 * rest / b.wall)
        } else {
            String::new()
        };
        let key = (config.targets, config.latency);
        let vs_serial = if config.jobs == 1 {
            serial_wall.insert(key, b.wall);
            String::new()
        } else {
            serial_wall
                .get(&key)
                .map(|s| format!("  = {:.2} x serial", b.wall / s))
                .unwrap_or_default()
        };
        println!(
            "{label:<28} {:>8.1} {:>8.1} {:>5.0} {:>7.1}/{:>7.1} {:>3.0} {:>4.1}/{:>4.1} {:>3.0} {:>4.1} {:>4.0} {:>7.1}/{:>5.1} {:>9.0} {:>14.1} {:>6.1}% {:>6.1}% {counters:>9.1} {uncounted:>13.1}% {card:>9.1} {host_uncounted:>13.1}% {rest:>13}{vs_serial}",
            b.wall / 1e6,
            b.process_cpu / 1e6,
            rsa.0,
            rsa.1,
            rsa.2,
            tdes.0,
            tdes.1,
            tdes.2,
            sha.0,
            sha.1,
            fsync.0,
            fsync.1,
            fsync.2,
            b.requests,
            ours,
            100.0 * ours * 1e6 / b.wall,
            100.0 * ours * 1e6 / b.process_cpu,
        );
    }
}

/// The simulator's card protocol alone: requests on one card through its store (the
/// source's card after a 1 -> 1 ceremony: retained keys, registrations, master keys),
/// file-backed and in memory. `reads` requests that leave the card unchanged, then a tenth
/// as many that change it (its EID, to one of two values of the same length); process CPU
/// per request, and for the changes the CPU inside the fsync category (the durable write).
fn card_requests(reads: u32) {
    timing::enable();
    println!(
        "\none card's requests through its store (the source card after a 1 -> 1 ceremony): \
         CPU per request (us)"
    );
    for memory_cards in [false, true] {
        let config = Config {
            targets: 1,
            jobs: 1,
            latency: Duration::ZERO,
            memory_cards,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut cards = setup(dir.path(), config, 0);
        one_ceremony(dir.path(), &mut cards, config);
        let store = cards["source"].transport().store().clone();
        let start = timing::process_cpu_nanos();
        for _ in 0..reads {
            store.with_state(|s| (s.eid.is_some(), false)).unwrap();
        }
        let read = (timing::process_cpu_nanos() - start) as f64 / f64::from(reads) / 1e3;
        let changes = (reads / 10).max(1);
        let eids = [Eid::new("SOURCE").unwrap(), Eid::new("SOURCX").unwrap()];
        let before = timing::snapshot();
        let start = timing::process_cpu_nanos();
        for i in 0..changes {
            let eid = eids[i as usize % 2].clone();
            store
                .with_state(|s| {
                    s.eid = Some(eid);
                    ((), true)
                })
                .unwrap();
        }
        let per_change = |nanos: u64| nanos as f64 / f64::from(changes) / 1e3;
        let change = per_change(timing::process_cpu_nanos() - start);
        let fsync = per_change(
            timing::snapshot()
                .since(&before)
                .cpu_nanos(Category::FileSync),
        );
        let kind = if memory_cards { "in memory" } else { "file" };
        println!(
            "  card {kind:<9}: unchanged {read:>7.1} ({reads} requests); changed {change:>7.1}, \
             of which {fsync:.1} in the fsync category ({changes} requests)"
        );
    }
}

/// The demo binary's wall time, and its peak resident memory measured by GNU time (a
/// child's `ru_maxrss` seen from this process would include the pages of the forking
/// benchmark itself).
fn demo_figures(runs: u32) {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mkclone"))
            .arg("demo")
            .output()
            .unwrap();
        best = best.min(start.elapsed());
        assert!(out.status.success());
    }
    println!(
        "\nmkclone demo (release): best wall {:.0} ms of {runs}",
        best.as_secs_f64() * 1e3
    );
    match Command::new("/usr/bin/time")
        .args(["-f", "%M", env!("CARGO_BIN_EXE_mkclone"), "demo"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stderr);
            let kib: f64 = text
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(f64::NAN);
            println!(
                "mkclone demo (release): peak RSS {:.1} MiB (GNU time)",
                kib / 1024.0
            );
        }
        _ => {
            println!("mkclone demo: peak RSS not measured (install GNU time: apt-get install time)")
        }
    }
}

criterion_group!(benches, bench_clone);

fn main() {
    if let Ok(name) = std::env::var("MKCLONE_BENCH_TIMELINE") {
        timeline(&name);
        return;
    }
    if let Some(pairs) = std::env::var("MKCLONE_BENCH_PAIRED")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        paired(pairs);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    let runs = std::env::var("MKCLONE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    breakdown(runs);
    card_requests(2000);
    if std::env::var_os("MKCLONE_BENCH_ONLY").is_none() {
        demo_figures(10);
    }
}
