//! Whole-ceremony benchmarks on the simulator (release build):
//! - `clone_1_source_3_targets`: phases 1-3d, SYM+ASYM, 3-of-5, RSA-2048, file-backed cards
//!   (every card request read, run, fsynced) and a real ceremony directory;
//! - `demo`: the `mkclone demo` binary, wall time;
//!
//! and, after criterion's runs, a breakdown of one ceremony's wall time into RSA, 3DES,
//! SHA, fsync and everything else (mkclone's own CPU), plus the demo's peak memory.
//! Figures are recorded in docs/PERFORMANCE.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use mkclone::backend::timing::{self, Category};
use mkclone::backend::{Backend, CloneableKind, Eid, MofN, RsaModulusBits, SerialNumber};
use mkclone::ceremony::run::run_clone;
use mkclone::ceremony::{Ceremony, Plan, PlanSpec};
use mkclone::sim::{Apqn, SimBackend, SimBus};

type Cards = BTreeMap<String, SimBackend>;

const NODES: [(&str, u8); 5] = [("sa", 1), ("source", 2), ("t1", 3), ("t2", 4), ("t3", 5)];

fn plan() -> Plan {
    let m_of_n = MofN::new(3, 5).unwrap();
    let eid = |s: &str| Eid::new(&s.to_uppercase()).unwrap();
    Plan::new(PlanSpec {
        id: "bench".into(),
        sa: ("sa".into(), eid("sa")),
        source: ("source".into(), eid("source")),
        targets: ["t1", "t2", "t3"]
            .iter()
            .map(|t| (t.to_string(), eid(t)))
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

/// Fresh cards with a random source key, in `dir`.
fn setup(dir: &Path) -> Cards {
    let bus = SimBus::new(dir.join("cards"));
    let mut cards = BTreeMap::new();
    for (name, card) in NODES {
        let mut b = bus
            .create_card(
                Apqn::new(card, 0x0d).unwrap(),
                &SerialNumber::new(&format!("B{card}")).unwrap(),
            )
            .unwrap();
        if name == "source" {
            for kind in CloneableKind::ALL {
                b.load_random_master_key(kind).unwrap();
            }
        }
        cards.insert(name.to_string(), b);
    }
    cards
}

fn one_ceremony(dir: &Path, cards: &mut Cards) {
    let mut ceremony = Ceremony::open(&dir.join("ceremony"), plan()).unwrap();
    run_clone(&mut ceremony, cards, &Default::default()).unwrap();
}

fn bench_clone(c: &mut Criterion) {
    let mut g = c.benchmark_group("ceremony");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("clone_1_source_3_targets", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let cards = setup(dir.path());
                (dir, cards)
            },
            |(dir, mut cards)| {
                one_ceremony(dir.path(), &mut cards);
                dir
            },
            BatchSize::PerIteration,
        )
    });
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

/// One ceremony's wall time split by category, averaged over `runs`.
fn breakdown(runs: u32) {
    let mut wall = Duration::ZERO;
    let mut totals = timing::Totals::default();
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let mut cards = setup(dir.path());
        let before = timing::snapshot();
        let start = Instant::now();
        one_ceremony(dir.path(), &mut cards);
        wall += start.elapsed();
        let d = timing::snapshot().since(&before);
        for i in 0..4 {
            totals.nanos[i] += d.nanos[i];
            totals.calls[i] += d.calls[i];
        }
    }
    let wall_ns = wall.as_nanos() as f64 / f64::from(runs);
    println!("\nclone 1 source -> 3 targets, SYM+ASYM, 3-of-5, RSA-2048 (mean of {runs} runs)");
    println!("  wall                     {:>9.1} ms", wall_ns / 1e6);
    let mut measured = 0.0;
    for cat in Category::ALL {
        let ns = totals.nanos(cat) as f64 / f64::from(runs);
        measured += ns;
        println!(
            "  {:<24} {:>9.1} ms  {:>5.1} %  ({} calls)",
            cat.name(),
            ns / 1e6,
            100.0 * ns / wall_ns,
            totals.calls(cat) / u64::from(runs)
        );
    }
    let other = wall_ns - measured;
    println!(
        "  {:<24} {:>9.1} ms  {:>5.1} %",
        "everything else (ours)",
        other / 1e6,
        100.0 * other / wall_ns
    );
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
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    breakdown(5);
    demo_figures(10);
}
