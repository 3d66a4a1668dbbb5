//! Where the time of a ceremony goes: cumulative wall time spent in cryptographic
//! primitives and in durable file I/O, so that a benchmark can tell them from mkclone's own
//! CPU (everything else).
//!
//! Process-wide atomic counters of wall time, of the calling thread's CPU time and of calls,
//! per category; a measurement costs two `Instant::now()` calls and two reads of the
//! thread's CPU clock (system calls: about 0.7 µs each on the project's VM). Counting is
//! off until [`enable`]: only benchmarks and the tests of the counters read them, and a
//! ceremony nobody measures should not pay some 7000 system calls for them. With several threads at work (`clone`'s parallel mode) wall times
//! add up across threads and overlap; CPU times do not, so "our own CPU" is the process's
//! CPU time minus the categories' CPU time. Nested measurements of the same category are
//! not double-counted by the callers (each call site wraps one primitive).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use nix::time::{ClockId, clock_gettime};

/// What a measured span was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// RSA: key generation, signing, verification, OAEP wrap/unwrap, key loading.
    Rsa,
    /// Triple-DES (EDE3-CBC) of shares.
    Tdes,
    /// SHA-1/SHA-256 hashing (patterns, fingerprints, digests, signature inputs).
    Sha,
    /// fsync of files and directories (durability).
    FileSync,
}

impl Category {
    pub const ALL: [Category; 4] = [Self::Rsa, Self::Tdes, Self::Sha, Self::FileSync];

    fn slot(self) -> usize {
        match self {
            Self::Rsa => 0,
            Self::Tdes => 1,
            Self::Sha => 2,
            Self::FileSync => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::Tdes => "3DES",
            Self::Sha => "SHA",
            Self::FileSync => "fsync",
        }
    }
}

static NANOS: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];
static CPU_NANOS: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];
static CALLS: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Start counting, for the rest of the process (benchmarks, and the tests of the counters).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`measure`] counts.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Run `f`, adding its wall time and the calling thread's CPU time to `category` once
/// counting is [`enable`]d; just run it otherwise.
pub fn measure<T>(category: Category, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let start = Instant::now();
    let cpu_start = thread_cpu_nanos();
    let out = f();
    let cpu = thread_cpu_nanos().saturating_sub(cpu_start);
    let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    NANOS[category.slot()].fetch_add(elapsed, Ordering::Relaxed);
    CPU_NANOS[category.slot()].fetch_add(cpu, Ordering::Relaxed);
    CALLS[category.slot()].fetch_add(1, Ordering::Relaxed);
    out
}

/// The calling thread's CPU time (user and system), in nanoseconds; 0 where the clock
/// cannot be read.
pub fn thread_cpu_nanos() -> u64 {
    cpu_clock(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

/// The process's CPU time (every thread, user and system), in nanoseconds.
pub fn process_cpu_nanos() -> u64 {
    cpu_clock(ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: ClockId) -> u64 {
    clock_gettime(clock).map_or(0, |t| {
        u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0))
    })
}

/// Totals since the start of the process (or the last [`reset`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Wall time inside each category, summed over threads.
    pub nanos: [u64; 4],
    /// CPU time of the threads inside each category.
    pub cpu_nanos: [u64; 4],
    pub calls: [u64; 4],
}

impl Totals {
    pub fn nanos(&self, category: Category) -> u64 {
        self.nanos[category.slot()]
    }
    pub fn calls(&self, category: Category) -> u64 {
        self.calls[category.slot()]
    }
    pub fn cpu_nanos(&self, category: Category) -> u64 {
        self.cpu_nanos[category.slot()]
    }
    /// CPU time of every category.
    pub fn measured_cpu_nanos(&self) -> u64 {
        self.cpu_nanos.iter().sum()
    }
    /// Sum of every category.
    pub fn measured_nanos(&self) -> u64 {
        self.nanos.iter().sum()
    }
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Totals) -> Totals {
        let mut out = Totals::default();
        for i in 0..4 {
            out.nanos[i] = self.nanos[i].saturating_sub(earlier.nanos[i]);
            out.cpu_nanos[i] = self.cpu_nanos[i].saturating_sub(earlier.cpu_nanos[i]);
            out.calls[i] = self.calls[i].saturating_sub(earlier.calls[i]);
        }
        out
    }
}

pub fn snapshot() -> Totals {
    let mut t = Totals::default();
    for i in 0..4 {
        t.nanos[i] = NANOS[i].load(Ordering::Relaxed);
        t.cpu_nanos[i] = CPU_NANOS[i].load(Ordering::Relaxed);
        t.calls[i] = CALLS[i].load(Ordering::Relaxed);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_accumulate_per_category() {
        enable();
        let before = snapshot();
        let v = measure(Category::Tdes, || {
            std::thread::sleep(std::time::Duration::from_millis(2));
            7
        });
        assert_eq!(v, 7);
        let d = snapshot().since(&before);
        assert!(d.nanos(Category::Tdes) >= 2_000_000);
        assert!(d.calls(Category::Tdes) >= 1);
        // Sleeping is not CPU.
        assert!(d.cpu_nanos(Category::Tdes) < d.nanos(Category::Tdes));
    }

    #[test]
    fn nothing_is_counted_until_enabled() {
        // A process of its own: other tests of this binary enable counting.
        if std::env::var_os("TIMING_CHILD").is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "timing::tests::nothing_is_counted_until_enabled"])
                .args(["--nocapture", "--test-threads", "1"])
                .env("TIMING_CHILD", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        assert!(!enabled());
        assert_eq!(measure(Category::Sha, || 5), 5);
        assert_eq!(snapshot(), Totals::default());
        enable();
        measure(Category::Sha, || ());
        assert_eq!(snapshot().calls(Category::Sha), 1);
    }

    #[test]
    fn cpu_clocks_advance_with_work() {
        let (thread, process) = (thread_cpu_nanos(), process_cpu_nanos());
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(
            thread_cpu_nanos() > thread && process_cpu_nanos() > process,
            "{x}"
        );
    }
}
