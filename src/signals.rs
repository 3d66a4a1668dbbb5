//! Signals: the ceremony's SIGINT/SIGTERM handlers, and what a PIN prompt catches while
//! it is open.
//!
//! **The ceremony's handlers** ([`install_ceremony_handlers`], called by the command line
//! once the nodes are open, right before the ceremony work): the first SIGINT or SIGTERM
//! raises a flag the ceremony checks at its safe points (it stops there, journaled, exit
//! 130 or 143); a second ends the process at once with 128 + its number
//! (`register_conditional_shutdown`), as a crash would.
//!
//! **A PIN prompt** ([`PromptSignals`], used by `pin.rs`) catches SIGINT, SIGTERM, SIGHUP,
//! SIGQUIT and SIGTSTP while it is open, through a self-pipe it polls along with the
//! terminal: a signal wakes it at once, and it puts the terminal's echo back before the
//! signal has any other effect (the readpassphrase way). Then SIGTSTP stops the process
//! and the question is asked again when it continues; SIGINT and SIGTERM, when the
//! ceremony's handlers are installed (the security officer's PIN, asked in phase 3c), have
//! raised the ceremony's flag and the prompt gives no PIN (the ceremony stops, interrupted,
//! before anything is sent); otherwise the signal takes its default effect, the process
//! ending as the signal says.
//!
//! **Job control during a ceremony** (installed with the ceremony's handlers): SIGTSTP
//! (Ctrl-Z), SIGTTIN and SIGTTOU stop the process only once no device call is in flight
//! (`mkclone_backend::device_calls`). Their default action stopped it at once, and a stop
//! ends a thread's wait in the zcrypt ioctl whatever its signal mask: the kernel restarted
//! the ioctl on continue and the card ran the request twice. Each is caught and handed to
//! a thread of its own, which holds back new device calls, waits for those in flight to
//! end, then stops the process (SIGSTOP); once it continues, the calls held back go on.
//! Ctrl-Z at an open prompt is the prompt's, which stops the same way once the terminal is
//! restored. A background process under `stty tostop` writing to the terminal (SIGTTOU),
//! or reading a PIN from it (SIGTTIN), takes the signal again at each retry of its write
//! or read until the stop comes: a busy wait as long as the calls in flight last.
//!
//! signal-hook leaves its handler in place once a signal has had an action, even when the
//! last one is unregistered (the signal would then be ignored). So the first prompt also
//! registers, for good, an action per caught signal that emulates the signal's default
//! action whenever no prompt is open and nothing else handles it (SIGINT and SIGTERM under
//! the ceremony's handlers): outside a prompt each signal does what it did before.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU};
use signal_hook::flag;
use signal_hook::low_level::{self, pipe};

/// The signals the ceremony's handlers catch.
pub const CEREMONY_SIGNALS: [i32; 2] = [SIGINT, SIGTERM];

/// The signals a prompt catches while it is open.
pub(crate) const PROMPT_SIGNALS: [i32; 5] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP];

/// The job-control signals a ceremony catches: each stops the process once no device call
/// is in flight.
pub const JOB_CONTROL_SIGNALS: [i32; 3] = [SIGTSTP, SIGTTIN, SIGTTOU];

/// Whether the job-control signals are caught (see the module's documentation).
static JOB_CONTROL_CAUGHT: AtomicBool = AtomicBool::new(false);

/// The ceremony's flag, once its handlers are installed.
static CEREMONY: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Whether a prompt is open, and the conditions of the default actions registered for
/// good (see the module's documentation); each change of one is made under this lock.
static STATE: Mutex<State> = Mutex::new(State {
    prompt_open: false,
    defaults: None,
});

/// One prompt at a time (there is one terminal).
static PROMPT: Mutex<()> = Mutex::new(());

struct State {
    prompt_open: bool,
    defaults: Option<Defaults>,
}

/// When the default action of a caught signal applies outside a prompt.
struct Defaults {
    /// SIGINT and SIGTERM: no prompt open and no ceremony handler installed.
    ceremony_signals: Arc<AtomicBool>,
    /// SIGHUP, SIGQUIT: no prompt open.
    others: Arc<AtomicBool>,
    /// SIGTSTP: no prompt open and the job-control signals not caught.
    stop: Arc<AtomicBool>,
    /// The prompt's signals this process did not ignore at the first prompt: only these
    /// are caught (`nohup` keeps SIGHUP ignored, a background job of a script SIGINT and
    /// SIGQUIT).
    caught: Vec<i32>,
}

impl State {
    fn update(&self) {
        if let Some(d) = &self.defaults {
            let unhandled = !self.prompt_open && CEREMONY.get().is_none();
            d.ceremony_signals.store(unhandled, Ordering::SeqCst);
            d.others.store(!self.prompt_open, Ordering::SeqCst);
            let caught = JOB_CONTROL_CAUGHT.load(Ordering::SeqCst);
            d.stop.store(!self.prompt_open && !caught, Ordering::SeqCst);
        }
    }

    /// Register the default actions (once per process).
    fn ensure_defaults(&mut self) -> io::Result<()> {
        if self.defaults.is_some() {
            return Ok(());
        }
        let ignored = ignored_signals();
        let defaults = Defaults {
            ceremony_signals: Arc::new(AtomicBool::new(false)),
            others: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            caught: PROMPT_SIGNALS
                .into_iter()
                .filter(|s| ignored & (1 << (s - 1)) == 0)
                .collect(),
        };
        self.defaults = Some(defaults);
        // The conditions as they stand (no prompt open yet) before any action exists.
        self.update();
        let d = self.defaults.as_ref().expect("just set");
        for &signal in &d.caught {
            let condition = if CEREMONY_SIGNALS.contains(&signal) {
                &d.ceremony_signals
            } else if signal == SIGTSTP {
                &d.stop
            } else {
                &d.others
            };
            flag::register_conditional_default(signal, condition.clone())?;
        }
        Ok(())
    }
}

/// The signals this process ignores, one bit each (bit n - 1 for signal n): `SigIgn` of
/// /proc/self/status (none if it cannot be read).
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Install the ceremony's SIGINT/SIGTERM handlers (once per process) and return the flag
/// they raise: the number of the signal that arrived, 0 while none has.
pub fn install_ceremony_handlers() -> Result<Arc<AtomicUsize>, (i32, io::Error)> {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(flag) = CEREMONY.get() {
        return Ok(flag.clone());
    }
    let raised = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    for signal in CEREMONY_SIGNALS {
        let fail = |e| (signal, e);
        // Registration order matters: the first signal finds `armed` false (no exit), then
        // arms it and raises the flag; a second one exits at once.
        flag::register_conditional_shutdown(signal, 128 + signal, armed.clone()).map_err(fail)?;
        flag::register(signal, armed.clone()).map_err(fail)?;
        flag::register_usize(signal, raised.clone(), signal as usize).map_err(fail)?;
    }
    catch_job_control().map_err(|e| (SIGTSTP, e))?;
    let flag = CEREMONY.get_or_init(|| raised).clone();
    // From here the ceremony's handlers take SIGINT and SIGTERM: the default action a
    // prompt left in place no longer applies to them. (Until this update, a signal still
    // took the default action first, as it did before the install.)
    state().update();
    Ok(flag)
}

/// The job-control signals' pipe and flags, once caught.
struct JobControl {
    /// Read side of the pipe their actions write to (non-blocking).
    wake: UnixStream,
    /// SIGTSTP arrived.
    tstp: Arc<AtomicBool>,
    /// SIGTTIN or SIGTTOU arrived.
    others: Arc<AtomicBool>,
}

impl JobControl {
    /// Wait until a signal wrote to the pipe (or it failed: false).
    fn wait(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        loop {
            let mut fds = [PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => return true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("job-control signals: waiting on their pipe failed: {e}");
                    return false;
                }
            }
        }
    }

    /// Forget every signal arrived so far (the pipe emptied first, then the flags, as
    /// [`PromptSignals::take`] does): the stop about to happen serves them. Without this a
    /// SIGTTOU repeated while the calls in flight ended (a background write under
    /// `stty tostop` takes it at each retry) stopped the process again right after `fg`.
    fn served(&self) {
        drain(&self.wake);
        self.tstp.store(false, Ordering::SeqCst);
        self.others.store(false, Ordering::SeqCst);
    }
}

static JOB_CONTROL: OnceLock<JobControl> = OnceLock::new();

/// Empty a signal pipe's (non-blocking) read side.
fn drain(pipe: &UnixStream) {
    let mut bytes = [0u8; 64];
    while matches!((&*pipe).read(&mut bytes), Ok(n) if n > 0) {}
}

/// Catch the job-control signals this process does not ignore, for good: each arrival
/// wakes a thread that stops the process once no device call is in flight (the module's
/// documentation says why). Ctrl-Z while a prompt is open is left to the prompt.
fn catch_job_control() -> io::Result<()> {
    let ignored = ignored_signals();
    let (wake, write) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    let caught = JOB_CONTROL.get_or_init(|| JobControl {
        wake,
        tstp: Arc::new(AtomicBool::new(false)),
        others: Arc::new(AtomicBool::new(false)),
    });
    for signal in JOB_CONTROL_SIGNALS {
        if ignored & (1 << (signal - 1)) != 0 {
            continue;
        }
        // The flag first, then the pipe: woken, the thread finds which signal it was.
        let arrived = if signal == SIGTSTP {
            &caught.tstp
        } else {
            &caught.others
        };
        flag::register(signal, arrived.clone())?;
        pipe::register(signal, write.try_clone()?)?;
    }
    std::thread::Builder::new()
        .name("mkclone-stop".into())
        .spawn(move || {
            // This thread never takes SIGTTIN/SIGTTOU: were it to write to the terminal in
            // the background, its write would go through rather than raise them again.
            let mut job_control = nix::sys::signal::SigSet::empty();
            job_control.add(nix::sys::signal::Signal::SIGTTIN);
            job_control.add(nix::sys::signal::Signal::SIGTTOU);
            let _ = job_control.thread_block();
            while caught.wait() {
                drain(&caught.wake);
                let tstp = caught.tstp.swap(false, Ordering::SeqCst);
                let other = caught.others.swap(false, Ordering::SeqCst);
                // Ctrl-Z at an open prompt is the prompt's: it stops the process once its
                // terminal is restored. SIGTTIN/SIGTTOU are not (the prompt's own read or
                // tcsetattr in the background raises them again at each restart, and never
                // gets back to the prompt's loop): those stop the process here, prompt or not
                // (the shell keeps a stopped job's terminal modes and gives them back on
                // `fg`).
                if other {
                    stop_when_quiet(StopBy::Background);
                } else if tstp && !state().prompt_open {
                    stop_when_quiet(StopBy::CtrlZ);
                }
            }
        })?;
    // Only now that a thread reads the pipe: until here a signal took its default action.
    // The default a prompt left for SIGTSTP stops applying at the same time.
    let state = state();
    JOB_CONTROL_CAUGHT.store(true, Ordering::SeqCst);
    state.update();
    Ok(())
}

/// Who stops the process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopBy {
    /// The job-control signals' thread, for Ctrl-Z (SIGTSTP): a prompt that opened
    /// meanwhile is handed the stop.
    CtrlZ,
    /// The job-control signals' thread, for a background read or write of the terminal
    /// (SIGTTIN, SIGTTOU): stopped whatever is open.
    Background,
    /// A PIN prompt, its terminal restored.
    Prompt,
}

/// Stop the process as SIGTSTP's default action would, once no device call is in flight
/// (new ones are held back until it continues); returns when it continues. The job-control
/// signals that arrived before the stop, or were pending when it continued, are served by
/// it (the kernel's SIGCONT drops pending stop signals too).
///
/// Nothing is written before the stop: a thread writing to the terminal in the background
/// under `stty tostop` holds standard error while SIGTTOU repeats, and a log line here
/// would wait for it forever. Not stopped at all, for Ctrl-Z: when the ceremony's
/// SIGINT/SIGTERM came meanwhile (it stops at its next safe point, and a stop would hold
/// that back until `fg`), and when a PIN prompt opened meanwhile (its echo may be off: the
/// prompt is handed the stop, which it makes with its terminal restored). A background stop
/// (SIGTTIN/SIGTTOU) is made whatever came: the call that raised it restarts and raises it
/// again until the process is stopped or in the foreground, and nothing else ends that (a
/// `kill %1`, SIGTERM then SIGCONT, to a job stopped at its prompt spun forever).
pub(crate) fn stop_when_quiet(by: StopBy) {
    let interrupted = || ceremony_flag().is_some_and(|f| f.load(Ordering::SeqCst) != 0);
    let stopped = mkclone_backend::device_calls::stop_when_quiet(|| {
        if by != StopBy::Background && interrupted() {
            return false;
        }
        // Held across the stop: no prompt opens (its echo off) between the look and it.
        let state = state();
        if by == StopBy::CtrlZ && state.prompt_open {
            drop(state);
            // The prompt's own action wakes it; the catcher, woken too, leaves it to it.
            let _ = low_level::raise(SIGTSTP);
            return false;
        }
        if let Some(caught) = JOB_CONTROL.get() {
            caught.served();
        }
        let stop = low_level::emulate_default_handler(SIGTSTP);
        if let Some(caught) = JOB_CONTROL.get() {
            caught.served();
        }
        drop(state);
        if let Err(e) = stop {
            log::error!("could not stop the process: {e}");
        }
        true
    });
    if stopped {
        log::debug!("continued after a stop made once no device call was in flight");
    }
}

/// The flag of the ceremony's handlers, if they are installed.
pub fn ceremony_flag() -> Option<Arc<AtomicUsize>> {
    CEREMONY.get().cloned()
}

/// The signals a prompt catches, caught while this lives: each writes to a self-pipe the
/// prompt polls ([`PromptSignals::fd`]) after noting which it was. [`PromptSignals::close`]
/// (or dropping it) closes the prompt: the defaults apply again, then the prompt's own
/// actions go.
pub(crate) struct PromptSignals {
    ids: Vec<SigId>,
    wake: UnixStream,
    /// Each caught signal, and whether it arrived.
    arrived: Vec<(i32, Arc<AtomicBool>)>,
    _one_prompt: MutexGuard<'static, ()>,
}

impl PromptSignals {
    /// Catch the prompt's signals (waiting for any other prompt to close first).
    pub(crate) fn catch() -> io::Result<Self> {
        let one_prompt = PROMPT.lock().unwrap_or_else(PoisonError::into_inner);
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let mut prompt = Self {
            ids: Vec::new(),
            wake,
            arrived: Vec::new(),
            _one_prompt: one_prompt,
        };
        let mut state = state();
        state.ensure_defaults()?;
        let signals = state.defaults.as_ref().map_or(&[][..], |d| &d.caught[..]);
        for &signal in signals {
            // The flag first, then the pipe: woken, the prompt finds which signal it was.
            let arrived = Arc::new(AtomicBool::new(false));
            prompt.ids.push(flag::register(signal, arrived.clone())?);
            prompt.arrived.push((signal, arrived));
            prompt.ids.push(pipe::register(signal, write.try_clone()?)?);
        }
        // Only now that the pipe is written to: until here a signal took its default
        // action (the terminal is still untouched).
        state.prompt_open = true;
        state.update();
        drop(state);
        Ok(prompt)
    }

    /// What the prompt polls: readable once a caught signal arrived.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The caught signal that arrived since the last call, if any: of several, one that
    /// ends the process before SIGTSTP. (The pipe is emptied first, then the flags read: a
    /// signal in between wakes the prompt once more, never not at all.)
    pub(crate) fn take(&self) -> Option<i32> {
        drain(&self.wake);
        let mut taken = None;
        for (signal, arrived) in &self.arrived {
            if arrived.swap(false, Ordering::SeqCst) && taken.is_none_or(|t| t == SIGTSTP) {
                taken = Some(*signal);
            }
        }
        taken
    }

    /// Close the prompt: the defaults apply again, then any caught signal that arrived
    /// before is taken (returned), then the prompt's actions go. No signal is lost: one
    /// before the defaults apply is returned, one after takes its default action (or the
    /// ceremony's handlers take it).
    pub(crate) fn close(mut self) -> Option<i32> {
        self.defaults_again();
        let late = self.take();
        self.unregister();
        late
    }

    fn defaults_again(&self) {
        let mut state = state();
        state.prompt_open = false;
        state.update();
    }

    fn unregister(&mut self) {
        for id in self.ids.drain(..) {
            low_level::unregister(id);
        }
    }
}

impl Drop for PromptSignals {
    fn drop(&mut self) {
        // The defaults first: a signal between the two takes its default action rather
        // than being ignored.
        self.defaults_again();
        self.unregister();
    }
}

/// Give `signal` its default effect now: the process ends (SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT) or stops until continued (SIGTSTP: stopped with SIGSTOP, as signal-hook
/// emulates it, once no device call is in flight), after which this returns.
pub(crate) fn take_default_action(signal: i32) -> io::Result<()> {
    if signal == SIGTSTP {
        stop_when_quiet(StopBy::Prompt);
        return Ok(());
    }
    low_level::emulate_default_handler(signal)
}
