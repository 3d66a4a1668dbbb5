//! The one thread that calls into a loaded instance of the host library.
//!
//! **Allocation is per thread.** IBM scopes a coprocessor's allocation to the thread that
//! made it: "Coprocessor allocation is scoped to a thread, and domain allocation is scoped
//! to a process"; a thread that allocated nothing is routed to the default resource (CRP01
//! unless CSU_DEFAULT_ADAPTER says otherwise) (CCA for Linux on IBM Z, "Cryptographic
//! Resource Allocate (CSUACRA)", www.ibm.com/docs/en/linuxonibm/lxcc/wskc_r_cra.html).
//! `clone` runs the targets' phases on worker threads. Had each called the library itself,
//! a worker's verbs would have gone to CRP01, or to the adapter that worker allocated for
//! another node, whatever the `Shared`'s record of the allocated adapter said: a RETAIN,
//! an INSTALL or a SET on another card. Every call of one instance runs here instead, so
//! the adapter this thread allocated last is the one its calls go to, and the record is
//! true. (A thread that ends with an adapter allocated also leaves memory behind in IBM's
//! library, CSUACRD's page says; this one lives as long as the process.)
//!
//! **Signals stay off this thread.** IBM's library makes the ZSECSENDCPRB ioctl itself. A
//! signal handled on the thread waiting in it makes the kernel drop the card's reply and,
//! since mkclone's SIGINT/SIGTERM handlers restart system calls (SA_RESTART), send the
//! request to the card a second time (src/zcrypt/ioctl.rs, `send_cprb`, says how). This
//! thread blocks every asynchronous signal for its life, so the kernel delivers the
//! process's signals to another thread and the ceremony sees them at its next safe point.
//! (SIGKILL and SIGSTOP cannot be blocked; the fault signals are left as they are, so a
//! fault still ends the process as it should.) A stop of the process ends the wait all the
//! same, whatever the mask: each call counts itself in flight
//! (`mkclone_backend::device_calls`), and during a ceremony the command line stops the
//! process on Ctrl-Z only once no call is.

use std::sync::mpsc;

use mkclone_backend::device_calls::DeviceCall;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

use crate::HostlibError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Where a `Shared`'s calls run.
pub(crate) enum Runner {
    /// On the instance's own thread (every library `open_shared` loads).
    Thread(LibraryThread),
    /// On the caller's thread: the fuzzing entry point's in-process fakes only, which
    /// allocate nothing per thread and make no system call a signal could restart.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    Inline,
}

impl Runner {
    /// Run `job` where this instance's calls run, and wait for its result.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, HostlibError> {
        match self {
            Self::Thread(thread) => thread.run(job),
            Self::Inline => Ok(job()),
        }
    }
}

/// A thread that runs jobs one at a time, in the order sent, with the asynchronous signals
/// blocked.
pub(crate) struct LibraryThread {
    jobs: mpsc::Sender<Job>,
}

/// The signals this thread never takes: all but those the kernel raises for a fault of
/// the thread itself (blocking those would only hide the fault's cause).
fn blocked() -> SigSet {
    let mut set = SigSet::all();
    for fault in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        set.remove(fault);
    }
    set
}

impl LibraryThread {
    /// Start the thread; returns once its signals are blocked.
    pub(crate) fn start() -> Result<Self, HostlibError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::sync_channel::<Result<(), String>>(1);
        std::thread::Builder::new()
            .name("cca-library".into())
            .spawn(move || {
                let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked()), None)
                    .map_err(|e| format!("cannot block signals on it: {e}"));
                let ok = blocked.is_ok();
                let _ = ready.send(blocked);
                if ok {
                    for job in queue {
                        job();
                    }
                }
            })
            .map_err(|e| HostlibError::LibraryThread(format!("could not be started: {e}")))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Self { jobs }),
            Ok(Err(why)) => Err(HostlibError::LibraryThread(why)),
            Err(_) => Err(HostlibError::LibraryThread(
                "ended as it started".to_string(),
            )),
        }
    }

    /// Run `job` on the thread and wait for its result. The thread ends only if a job
    /// panics (none of mkclone's does); every call after that is refused.
    fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, HostlibError> {
        // The library makes the ioctl itself: the call is in flight from here to its
        // answer, and a stop of the process during a ceremony waits for it
        // (`mkclone_backend::device_calls`).
        let _in_flight = DeviceCall::enter();
        let (answer, result) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(job());
            }))
            .map_err(|_| HostlibError::LibraryThread("has ended".to_string()))?;
        result.recv().map_err(|_| {
            HostlibError::LibraryThread("ended during a call, whose outcome is unknown".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_on_one_thread_with_the_asynchronous_signals_blocked() {
        let thread = LibraryThread::start().unwrap();
        let here = std::thread::current().id();
        let mut ids = Vec::new();
        for i in 0..3 {
            let (id, mask, n) = thread
                .run(move || {
                    let mut mask = SigSet::empty();
                    pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut mask)).unwrap();
                    (std::thread::current().id(), mask, i)
                })
                .unwrap();
            assert_eq!(n, i);
            assert_ne!(id, here);
            for s in [
                Signal::SIGINT,
                Signal::SIGTERM,
                Signal::SIGHUP,
                Signal::SIGQUIT,
                Signal::SIGTSTP,
                Signal::SIGCONT,
                Signal::SIGALRM,
                Signal::SIGCHLD,
            ] {
                assert!(mask.contains(s), "{s} not blocked");
            }
            assert!(!mask.contains(Signal::SIGSEGV));
            ids.push(id);
        }
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
        // The caller's own mask is left as it was.
        let mut mine = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut mine)).unwrap();
        assert!(!mine.contains(Signal::SIGINT));
    }

    /// A call counts itself in flight while it runs, so that a stop of the process (Ctrl-Z
    /// during a ceremony) waits for it; a stop under way holds the next call back.
    #[test]
    fn a_call_is_a_device_call_in_flight_and_waits_for_a_stop_under_way() {
        use mkclone_backend::device_calls::{in_flight, stop_when_quiet};
        let thread = LibraryThread::start().unwrap();
        assert!(thread.run(in_flight).unwrap() >= 1);
        let (stopped, seen) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                stop_when_quiet(|| {
                    stopped.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(200));
                })
            });
            seen.recv().unwrap();
            let held = std::time::Instant::now();
            thread.run(|| ()).unwrap();
            assert!(held.elapsed() >= std::time::Duration::from_millis(150));
        });
    }

    #[test]
    fn a_job_that_panics_ends_the_thread_and_later_calls_are_refused() {
        let thread = LibraryThread::start().unwrap();
        let e = thread
            .run(|| -> u8 { panic!("a job panicked") })
            .unwrap_err();
        assert!(e.to_string().contains("outcome is unknown"), "{e}");
        // Refused as sent ("has ended") or, when sent before the thread was gone, as lost.
        let e = thread.run(|| 1).unwrap_err();
        assert!(e.to_string().contains("ended"), "{e}");
    }
}
