//! The 1 source → 3 targets ceremony (SYM and ASYM, 3-of-5) on SoftHSM tokens: phases 1
//! to 3d, timed as a whole, and split into time inside PKCS#11 calls (the token's work,
//! measured by the session wrapper) and the rest (our own CPU: certificates, sealing,
//! verification, state encoding). Target: our own CPU under 10% of the total.
//!
//!     cargo bench -p mkclone-pkcs11
//!
//! Token initialization and the source's random master keys are set up outside the timed
//! part.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use mkclone_backend::{Backend, CloneableKind, MofN};
use mkclone_pkcs11::{CallStats, Pkcs11Backend};

static RUN: AtomicUsize = AtomicUsize::new(0);

struct Nodes {
    sa: Pkcs11Backend,
    source: Pkcs11Backend,
    targets: Vec<Pkcs11Backend>,
}

impl Nodes {
    fn new() -> Self {
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        let (_, sa) = token_node(&format!("bench{run}-sa"), "SA NODE");
        let (_, mut source) = token_node(&format!("bench{run}-source"), "SOURCE");
        for kind in CloneableKind::ALL {
            source.load_random_master_key(kind).unwrap();
        }
        let targets = (1..=3)
            .map(|i| token_node(&format!("bench{run}-target{i}"), &format!("TARGET {i}")).1)
            .collect();
        Self {
            sa,
            source,
            targets,
        }
    }

    fn stats(&self) -> CallStats {
        let mut total = self.sa.call_stats();
        total += self.source.call_stats();
        for t in &self.targets {
            total += t.call_stats();
        }
        total
    }

    /// Phases 1 to 3d. Returns the time inside PKCS#11 calls during them.
    fn ceremony(&mut self) -> CallStats {
        let before = self.stats();
        let m_of_n = MofN::new(3, 5).unwrap();
        let sa = phase1(&mut self.sa);
        let css = phase2(&mut self.sa, &sa, &mut self.source, m_of_n);
        for target in self.targets.iter_mut() {
            let csr = phase3ab(&mut self.sa, &sa, target, m_of_n);
            for kind in CloneableKind::ALL {
                clone_into(&mut self.source, &css, target, &csr, kind, &[1, 2, 3], 3);
            }
        }
        let after = self.stats();
        CallStats {
            calls: after.calls - before.calls,
            time_in_calls: after.time_in_calls - before.time_in_calls,
        }
    }
}

fn ceremony(c: &mut Criterion) {
    let mut total = Duration::ZERO;
    let mut inside = CallStats::default();
    let mut runs = 0u32;
    let mut group = c.benchmark_group("pkcs11");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("ceremony 1 source -> 3 targets, SYM+ASYM, 3-of-5", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let mut nodes = Nodes::new();
                let start = Instant::now();
                let stats = nodes.ceremony();
                let took = start.elapsed();
                elapsed += took;
                total += took;
                inside += stats;
                runs += 1;
            }
            elapsed
        })
    });
    group.finish();

    let ours = total.saturating_sub(inside.time_in_calls);
    let share = 100.0 * ours.as_secs_f64() / total.as_secs_f64().max(f64::EPSILON);
    println!(
        "\nceremony 1 source -> 3 targets over {runs} runs: {:.3} s per run; \
         inside PKCS#11: {:.3} s in {} calls per run; our own CPU: {:.3} s per run = {share:.1}% of the total (target < 10%)",
        total.as_secs_f64() / f64::from(runs.max(1)),
        inside.time_in_calls.as_secs_f64() / f64::from(runs.max(1)),
        inside.calls / u64::from(runs.max(1)),
        ours.as_secs_f64() / f64::from(runs.max(1)),
    );
}

criterion_group!(benches, ceremony);
criterion_main!(benches);
