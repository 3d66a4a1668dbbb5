//! Where the time of a ceremony goes: cumulative wall time spent in cryptographic
//! primitives, in durable file I/O and in a simulated card's own code, so that a benchmark
//! can tell them from mkclone's own CPU (everything else).
//!
//! Process-wide atomic counters of wall time, of the calling thread's CPU time and of calls,
//! per category; a measurement costs two `Instant::now()` calls and two reads of the
//! thread's CPU clock (system calls: about 0.7 µs each on the project's VM). Counting is
//! off until [`enable`]: only benchmarks and the tests of the counters read them, and a
//! ceremony nobody measures should not pay some 7000 system calls for them. With several
//! threads at work (`clone`'s parallel mode) wall times add up across threads and overlap;
//! CPU times do not, so "our own CPU" is the process's CPU time minus the categories' CPU
//! time.
//!
//! A measurement inside another (a simulated card's RSA inside [`Category::Card`]) counts
//! in its own category only: the enclosing one is charged its time without the nested
//! spans, so that the categories never overlap and add up to what they cover.

use std::cell::Cell;
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
    /// A simulated card's handling of one request (hw-sim: decoding the CPRB, its card
    /// file's lock and read, the verb, the reply), without the primitives and fsyncs
    /// inside it, which count in their own categories. On a real coprocessor this work
    /// happens in the card, not in the host's process.
    Card,
}

/// How many categories there are.
pub const CATEGORIES: usize = 5;

impl Category {
    pub const ALL: [Category; CATEGORIES] =
        [Self::Rsa, Self::Tdes, Self::Sha, Self::FileSync, Self::Card];

    fn slot(self) -> usize {
        match self {
            Self::Rsa => 0,
            Self::Tdes => 1,
            Self::Sha => 2,
            Self::FileSync => 3,
            Self::Card => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::Tdes => "3DES",
            Self::Sha => "SHA",
            Self::FileSync => "fsync",
            Self::Card => "card",
        }
    }
}

static NANOS: [AtomicU64; CATEGORIES] = [const { AtomicU64::new(0) }; CATEGORIES];
static CPU_NANOS: [AtomicU64; CATEGORIES] = [const { AtomicU64::new(0) }; CATEGORIES];
static CALLS: [AtomicU64; CATEGORIES] = [const { AtomicU64::new(0) }; CATEGORIES];
/// Measurements made inside another measurement.
static NESTED_CALLS: AtomicU64 = AtomicU64::new(0);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The measurement this thread is inside, if any: the wall and CPU time of the spans
/// measured within it so far, and whether there is one.
#[derive(Clone, Copy, Default)]
struct Enclosing {
    active: bool,
    inner_nanos: u64,
    inner_cpu: u64,
}

thread_local! {
    static ENCLOSING: Cell<Enclosing> = const {
        Cell::new(Enclosing { active: false, inner_nanos: 0, inner_cpu: 0 })
    };
}

/// Start counting, for the rest of the process (benchmarks, and the tests of the counters).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`measure`] counts.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Run `f`, adding its wall time and the calling thread's CPU time to `category` once
/// counting is [`enable`]d, without the spans measured inside `f`; just run it otherwise.
pub fn measure<T>(category: Category, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let outer = ENCLOSING.replace(Enclosing {
        active: true,
        ..Enclosing::default()
    });
    let start = Instant::now();
    let cpu_start = thread_cpu_nanos();
    let out = f();
    let cpu = thread_cpu_nanos().saturating_sub(cpu_start);
    let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let inner = ENCLOSING.replace(Enclosing {
        inner_nanos: outer.inner_nanos.saturating_add(elapsed),
        inner_cpu: outer.inner_cpu.saturating_add(cpu),
        ..outer
    });
    let slot = category.slot();
    NANOS[slot].fetch_add(elapsed.saturating_sub(inner.inner_nanos), Ordering::Relaxed);
    CPU_NANOS[slot].fetch_add(cpu.saturating_sub(inner.inner_cpu), Ordering::Relaxed);
    CALLS[slot].fetch_add(1, Ordering::Relaxed);
    if outer.active {
        NESTED_CALLS.fetch_add(1, Ordering::Relaxed);
    }
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

/// Totals since the start of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Wall time inside each category (without the spans nested in it), summed over
    /// threads.
    pub nanos: [u64; CATEGORIES],
    /// CPU time of the threads inside each category (without the spans nested in it).
    pub cpu_nanos: [u64; CATEGORIES],
    pub calls: [u64; CATEGORIES],
    /// Measurements made inside another one (whose own cost outside what they count falls
    /// in the enclosing category).
    pub nested_calls: u64,
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
    /// Every measurement.
    pub fn all_calls(&self) -> u64 {
        self.calls.iter().sum()
    }
    /// Add `other`'s counts to these (the sum of several runs).
    pub fn add(&mut self, other: &Totals) {
        self.nested_calls += other.nested_calls;
        for i in 0..CATEGORIES {
            self.nanos[i] += other.nanos[i];
            self.cpu_nanos[i] += other.cpu_nanos[i];
            self.calls[i] += other.calls[i];
        }
    }
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Totals) -> Totals {
        let mut out = Totals {
            nested_calls: self.nested_calls.saturating_sub(earlier.nested_calls),
            ..Totals::default()
        };
        for i in 0..CATEGORIES {
            out.nanos[i] = self.nanos[i].saturating_sub(earlier.nanos[i]);
            out.cpu_nanos[i] = self.cpu_nanos[i].saturating_sub(earlier.cpu_nanos[i]);
            out.calls[i] = self.calls[i].saturating_sub(earlier.calls[i]);
        }
        out
    }
}

pub fn snapshot() -> Totals {
    let mut t = Totals {
        nested_calls: NESTED_CALLS.load(Ordering::Relaxed),
        ..Totals::default()
    };
    for i in 0..CATEGORIES {
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

    /// A span measured inside another counts in its own category only: the enclosing one
    /// is charged the rest, and the two add up to the outer span.
    #[test]
    fn a_nested_span_counts_once_in_its_own_category() {
        use std::time::Duration;
        enable();
        let before = snapshot();
        let start = Instant::now();
        measure(Category::Card, || {
            std::thread::sleep(Duration::from_millis(2));
            measure(Category::Rsa, || {
                std::thread::sleep(Duration::from_millis(30))
            });
        });
        let outer = u64::try_from(start.elapsed().as_nanos()).unwrap();
        // After the outer span, a measurement is top-level again.
        measure(Category::Rsa, || ());
        let d = snapshot().since(&before);
        assert!(d.nanos(Category::Rsa) >= 30_000_000, "{d:?}");
        let card = d.nanos(Category::Card);
        assert!((2_000_000..30_000_000).contains(&card), "{d:?}");
        assert!(
            card + d.nanos(Category::Rsa) <= outer + 1_000_000,
            "{d:?} {outer}"
        );
        assert_eq!((d.calls(Category::Card), d.calls(Category::Rsa)), (1, 2));
        assert_eq!(d.nested_calls, 1, "{d:?}");
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
