//! The device calls in flight in this process, and a stop of the process that waits until
//! none is.
//!
//! **Why.** A thread waiting in the zcrypt ioctl for a card's reply blocks every signal it
//! can (src/zcrypt/ioctl.rs, `send_cprb`; the CCA host library's own thread does the same),
//! but a *stop* of the process is not a signal to that thread: SIGSTOP, or Ctrl-Z's SIGTSTP
//! taken with its default action by any other thread, stops every thread, and the stop
//! ends the waiting thread's wait whatever its mask. The kernel then drops the card's reply
//! and, when the process continues, restarts the ioctl: the card runs the request twice (a
//! RETAIN answers "label in use", an INSTALL or a SET is applied again). So, during a
//! ceremony, the command line catches the job-control signals and stops the process
//! through [`stop_when_quiet`]: no device call starts any more, the calls in flight get
//! their replies, then the process stops; once it continues, the calls held back go on.
//!
//! The calls that can be cut that way take part ([`DeviceCall::enter`]): the zcrypt ioctl,
//! a call into the CCA host library, and every operation of a PKCS#11 token (openCryptoki's
//! CCA and EP11 tokens make the same ioctl inside their functions). A thread may enter
//! again while it holds a call (a nested call passes the gate: the stop waits for the
//! outer one anyway); [`outside_calls`] lets a thread that holds calls wait for a person
//! (a PIN prompt inside a token's operation) without holding a stop back.

use std::cell::Cell;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// What the gate knows.
struct Gate {
    /// Device calls entered and not yet ended.
    in_flight: usize,
    /// A stop is waiting for the calls in flight, or the process is stopped: no call
    /// enters.
    stopping: bool,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    in_flight: 0,
    stopping: false,
});
static CHANGED: Condvar = Condvar::new();
/// One stop at a time.
static ONE_STOP: Mutex<()> = Mutex::new(());

fn gate() -> MutexGuard<'static, Gate> {
    GATE.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The calls this thread holds.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Count `n` calls of this thread in flight, waiting first while a stop is under way.
fn count_in(n: usize) {
    let mut g = gate();
    while g.stopping {
        g = CHANGED.wait(g).unwrap_or_else(PoisonError::into_inner);
    }
    g.in_flight += n;
}

/// Count `n` calls of this thread out; wake a stop waiting once none is in flight.
fn count_out(n: usize) {
    let mut g = gate();
    g.in_flight -= n;
    let quiet = g.in_flight == 0;
    drop(g);
    if quiet {
        CHANGED.notify_all();
    }
}

/// A device call in flight, from [`DeviceCall::enter`] until dropped.
#[must_use = "the call is in flight only while this lives"]
pub struct DeviceCall(());

impl DeviceCall {
    /// Count a device call in flight, waiting first while a stop of the process is under
    /// way, unless this thread holds a call already (the stop waits for that one: waiting
    /// here would wait for the stop, which waits for this thread).
    pub fn enter() -> Self {
        let held = HELD.get();
        if held == 0 {
            count_in(1);
        } else {
            gate().in_flight += 1;
        }
        HELD.set(held + 1);
        DeviceCall(())
    }
}

impl Drop for DeviceCall {
    fn drop(&mut self) {
        HELD.set(HELD.get().saturating_sub(1));
        count_out(1);
    }
}

/// Run `wait` (a PIN prompt: waiting for a person) with this thread's calls not in flight,
/// so that a stop need not wait for it; then count them in again, waiting first while a
/// stop is under way. A thread that holds no call runs `wait` as it is.
pub fn outside_calls<R>(wait: impl FnOnce() -> R) -> R {
    let held = HELD.get();
    if held == 0 {
        return wait();
    }
    count_out(held);
    HELD.set(0);
    // Counted in again even if `wait` panics: the calls' guards count themselves out.
    struct Again(usize);
    impl Drop for Again {
        fn drop(&mut self) {
            count_in(self.0);
            HELD.set(self.0);
        }
    }
    let _again = Again(held);
    wait()
}

/// Hold back new device calls, wait until the calls in flight have ended, run `stop`
/// (which stops the process and returns once it continues), then let calls go on. Must not
/// be called by a thread that holds a [`DeviceCall`].
pub fn stop_when_quiet<R>(stop: impl FnOnce() -> R) -> R {
    let _one = ONE_STOP.lock().unwrap_or_else(PoisonError::into_inner);
    let mut g = gate();
    g.stopping = true;
    while g.in_flight > 0 {
        g = CHANGED.wait(g).unwrap_or_else(PoisonError::into_inner);
    }
    drop(g);
    // Calls wait at the gate even if `stop` panics: they are let go as this unwinds.
    struct Reopen;
    impl Drop for Reopen {
        fn drop(&mut self) {
            gate().stopping = false;
            CHANGED.notify_all();
        }
    }
    let _reopen = Reopen;
    stop()
}

/// The device calls in flight now (for tests and logs).
pub fn in_flight() -> usize {
    gate().in_flight
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// The gate is process-wide: its tests take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// A stop waits for the call in flight; a call that comes while the stop waits or
    /// runs waits for it to end; after it, calls enter at once.
    #[test]
    fn a_stop_waits_for_the_calls_in_flight_and_holds_back_new_ones() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let (events, seen) = mpsc::channel::<&'static str>();
        let first = DeviceCall::enter();
        assert_eq!(in_flight(), 1);
        std::thread::scope(|s| {
            let stop_events = events.clone();
            let stopper = s.spawn(move || {
                stop_when_quiet(|| {
                    stop_events.send("stopped").unwrap();
                    // The process is "stopped" a while: a call that comes now waits.
                    std::thread::sleep(Duration::from_millis(200));
                    stop_events.send("continued").unwrap();
                })
            });
            // The stop waits for `first`.
            assert_eq!(
                seen.recv_timeout(Duration::from_millis(300)),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            let late_events = events.clone();
            let late = s.spawn(move || {
                let _call = DeviceCall::enter();
                late_events.send("late call entered").unwrap();
            });
            // Neither the stop nor the late call has gone on while `first` is in flight.
            assert_eq!(
                seen.recv_timeout(Duration::from_millis(100)),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            drop(first);
            assert_eq!(seen.recv().unwrap(), "stopped");
            assert_eq!(seen.recv().unwrap(), "continued");
            assert_eq!(seen.recv().unwrap(), "late call entered");
            stopper.join().unwrap();
            late.join().unwrap();
        });
        assert_eq!(in_flight(), 0);
        // With nothing in flight, a stop runs at once and calls enter after it.
        assert_eq!(stop_when_quiet(|| 7), 7);
        let _again = DeviceCall::enter();
        assert_eq!(in_flight(), 1);
    }

    /// A thread that holds a call enters again at once while a stop waits for it (it
    /// would wait for the stop, which waits for it); outside its calls (a prompt) it holds
    /// the stop back no more, and counted in again it waits for the stop to end.
    #[test]
    fn a_nested_call_passes_and_a_prompt_lets_the_stop_happen() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let (events, seen) = mpsc::channel::<&'static str>();
        let (stopping, stop_began) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let caller = events.clone();
            s.spawn(move || {
                let _outer = DeviceCall::enter();
                stop_began.recv().unwrap();
                while !gate().stopping {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // The stop waits for `_outer`: a nested call must not wait for the stop.
                let nested = DeviceCall::enter();
                caller.send("nested call entered").unwrap();
                drop(nested);
                outside_calls(|| {
                    // A person is asked: the stop goes on meanwhile.
                    std::thread::sleep(Duration::from_millis(300));
                    caller.send("answered").unwrap();
                });
                caller.send("back in the call").unwrap();
            });
            let stopper = events.clone();
            s.spawn(move || {
                // Wait until the caller is in its call.
                while in_flight() == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                stopping.send(()).unwrap();
                stop_when_quiet(|| {
                    stopper.send("stopped").unwrap();
                    std::thread::sleep(Duration::from_millis(500));
                    stopper.send("continued").unwrap();
                });
            });
        });
        drop(events);
        let order: Vec<_> = seen.iter().collect();
        assert_eq!(
            order,
            [
                "nested call entered",
                "stopped",
                "answered",
                "continued",
                "back in the call"
            ]
        );
        assert_eq!(in_flight(), 0);
    }

    /// A stop that panics does not leave the gate closed.
    #[test]
    fn a_stop_that_panics_lets_calls_go_on() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let unwound = std::panic::catch_unwind(|| stop_when_quiet(|| panic!("stop failed")));
        assert!(unwound.is_err());
        let (done, entered) = mpsc::channel();
        std::thread::spawn(move || {
            let _call = DeviceCall::enter();
            done.send(()).unwrap();
        });
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("a call entered after the failed stop");
    }
}
