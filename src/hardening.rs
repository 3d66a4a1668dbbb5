//! Process hardening, done once at the start of `main`, before any secret can be in memory:
//!
//! 1. **No core files**: `RLIMIT_CORE` soft and hard limits 0 (the hard limit cannot be raised
//!    again by an unprivileged process).
//! 2. **Not dumpable**: `PR_SET_DUMPABLE` 0, which also stops core dumps through a
//!    `core_pattern` pipe (which ignores `RLIMIT_CORE`), ptrace attachment by other
//!    processes of the same user, and reading `/proc/<pid>/mem`.
//! 3. **Memory locked**: `mlockall(MCL_CURRENT | MCL_FUTURE)`, so that master keys, shares and
//!    PINs in memory are never written to swap, but only when `RLIMIT_MEMLOCK` is unlimited
//!    or at least [`MEMLOCK_MINIMUM`]: with `MCL_FUTURE` every later allocation counts
//!    against that limit, and a small limit (the usual 8 MiB or 64 KiB) would make them
//!    fail. Otherwise the step is skipped and the report says why and what to do.
//!
//! Each step's result is in the [`HardeningReport`]; the caller logs it
//! ([`HardeningReport::log`]: info, a warning for a step that failed). Nothing here stops
//! the program: a step that cannot be done is reported, not fatal.
//!
//! Only safe `nix` wrappers are used: this module has no `unsafe` code.

use std::fmt;

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, rlim_t, setrlimit};
use serde::Serialize;

/// `RLIMIT_MEMLOCK` below which memory is not locked (512 MiB).
pub const MEMLOCK_MINIMUM: rlim_t = 512 * 1024 * 1024;

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum StepResult {
    /// Done, with what was done.
    Done(String),
    /// Deliberately not done, with why and what to do.
    Skipped(String),
    /// Tried and failed, with the error.
    Failed(String),
}

/// One hardening step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// "core-limit", "dumpable" or "memory-lock".
    pub name: &'static str,
    pub result: StepResult,
}

impl Step {
    pub fn failed(&self) -> bool {
        matches!(self.result, StepResult::Failed(_))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            StepResult::Done(what) => write!(f, "{}: {what}", self.name),
            StepResult::Skipped(why) => write!(f, "{}: skipped: {why}", self.name),
            StepResult::Failed(why) => write!(f, "{}: FAILED: {why}", self.name),
        }
    }
}

/// The result of [`harden_process`], one entry per step, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HardeningReport {
    pub steps: Vec<Step>,
}

impl HardeningReport {
    /// The step called `name`, if it ran.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Steps that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.failed())
    }

    /// Log every step, prefixed `hardening:`: info, or a warning for a step that failed.
    pub fn log(&self) {
        for step in &self.steps {
            if step.failed() {
                log::warn!("hardening: {step}");
            } else {
                log::info!("hardening: {step}");
            }
        }
    }
}

/// Harden this process (see the module documentation). Call it first thing in `main`.
pub fn harden_process() -> HardeningReport {
    HardeningReport {
        steps: vec![disable_core_files(), disable_dumpable(), lock_memory()],
    }
}

/// A resource limit in words (`rlim_t` is `u64` on Linux).
fn limit_text(v: rlim_t) -> String {
    if v == RLIM_INFINITY {
        return "unlimited".into();
    }
    match v {
        0 => "0".into(),
        v if v % (1024 * 1024) == 0 => format!("{} MiB", v / (1024 * 1024)),
        v if v % 1024 == 0 => format!("{} KiB", v / 1024),
        v => format!("{v} bytes"),
    }
}

fn disable_core_files() -> Step {
    let before = getrlimit(Resource::RLIMIT_CORE)
        .map(|(soft, hard)| format!(" (was {} / {})", limit_text(soft), limit_text(hard)))
        .unwrap_or_default();
    let result = match setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        Ok(()) => StepResult::Done(format!(
            "core files disabled: RLIMIT_CORE soft and hard limits 0{before}"
        )),
        Err(e) => StepResult::Failed(format!(
            "setrlimit(RLIMIT_CORE, 0, 0): {e}{before}; a crash could write a core file \
             holding secrets: set `ulimit -c 0` before running mkclone"
        )),
    };
    Step {
        name: "core-limit",
        result,
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn disable_dumpable() -> Step {
    use nix::sys::prctl;
    let result = match prctl::set_dumpable(false).and_then(|()| prctl::get_dumpable()) {
        Ok(false) => StepResult::Done(
            "PR_SET_DUMPABLE 0: no core dump (not even through a core_pattern pipe), no ptrace \
             attachment by other processes of this user"
                .into(),
        ),
        Ok(true) => StepResult::Failed(
            "PR_SET_DUMPABLE 0 was accepted but PR_GET_DUMPABLE still says 1".into(),
        ),
        Err(e) => StepResult::Failed(format!("prctl(PR_SET_DUMPABLE, 0): {e}")),
    };
    Step {
        name: "dumpable",
        result,
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn disable_dumpable() -> Step {
    Step {
        name: "dumpable",
        result: StepResult::Skipped("PR_SET_DUMPABLE exists on Linux only".into()),
    }
}

fn lock_memory() -> Step {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    let name = "memory-lock";
    let soft = match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) => soft,
        Err(e) => {
            return Step {
                name,
                result: StepResult::Failed(format!("getrlimit(RLIMIT_MEMLOCK): {e}")),
            };
        }
    };
    if soft != RLIM_INFINITY && soft < MEMLOCK_MINIMUM {
        return Step {
            name,
            result: StepResult::Skipped(format!(
                "RLIMIT_MEMLOCK is {} (under {}): locking all memory could make later \
                 allocations fail, so secrets in memory may be swapped out. Raise the limit \
                 (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in a systemd unit), or run \
                 on a machine without swap or with encrypted swap",
                limit_text(soft),
                limit_text(MEMLOCK_MINIMUM)
            )),
        };
    }
    let result = match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        Ok(()) => StepResult::Done(format!(
            "all memory locked (mlockall MCL_CURRENT | MCL_FUTURE, RLIMIT_MEMLOCK {}): secrets \
             are never swapped out",
            limit_text(soft)
        )),
        Err(e) => StepResult::Failed(format!(
            "mlockall(MCL_CURRENT | MCL_FUTURE): {e} (RLIMIT_MEMLOCK {}); secrets in memory may \
             be swapped out",
            limit_text(soft)
        )),
    };
    Step { name, result }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_in_words() {
        assert_eq!(limit_text(RLIM_INFINITY), "unlimited");
        assert_eq!(limit_text(0), "0");
        assert_eq!(limit_text(8 * 1024 * 1024), "8 MiB");
        assert_eq!(limit_text(64 * 1024), "64 KiB");
        assert_eq!(limit_text(1000), "1000 bytes");
    }

    #[test]
    fn steps_say_what_happened() {
        let done = Step {
            name: "core-limit",
            result: StepResult::Done("x".into()),
        };
        let failed = Step {
            name: "dumpable",
            result: StepResult::Failed("y".into()),
        };
        assert_eq!(done.to_string(), "core-limit: x");
        assert_eq!(failed.to_string(), "dumpable: FAILED: y");
        let r = HardeningReport {
            steps: vec![done, failed],
        };
        assert_eq!(r.failures().count(), 1);
        assert!(r.step("dumpable").is_some_and(Step::failed));
        assert_eq!(
            serde_json::to_value(&r.steps[0]).unwrap(),
            serde_json::json!({"name": "core-limit", "result": {"status": "done", "detail": "x"}})
        );
    }
}
