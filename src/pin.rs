//! Asking for a PIN on the terminal, without echo. A PIN never comes from the command
//! line; when the configuration says `pin = "prompt"` (or `so_pin = "prompt"`), this is
//! where it comes from.
//!
//! The prompt talks to the process's controlling terminal (`/dev/tty`), as passwd and
//! ssh do, not to standard input and error: `mkclone status … < list` or `2> log` still
//! asks the person at the terminal, and a PIN never lands in a redirected file.
//!
//! Signals, the readpassphrase way: while the prompt is open, SIGINT, SIGTERM, SIGHUP,
//! SIGQUIT and SIGTSTP wake it through a self-pipe it polls along with the terminal
//! ([`crate::signals`]), and it restores the terminal (echo back on, the newline) before the
//! signal has any other effect. SIGTSTP then stops the process and the question is asked
//! again once it continues. SIGINT and SIGTERM with the ceremony's handlers installed (the
//! SO PIN, asked in phase 3c) give [`PromptError::Interrupted`] and no PIN: the share export
//! fails before anything is sent and the ceremony stops, interrupted and resumable. Any
//! other case (a user PIN, asked as a node opens, before those handlers) ends the process
//! as the signal says, echo on. What remains is in docs/ARCHITECTURE.md ("Signals at a PIN
//! prompt"): a second SIGINT/SIGTERM in the microseconds before the first one's
//! `tcsetattr`, uncatchable signals, SIGTTIN/SIGTTOU.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;
use nix::sys::termios::{self, LocalFlags, SetArg};
use signal_hook::consts::SIGTSTP;
use zeroize::Zeroizing;

use crate::signals::{self, CEREMONY_SIGNALS, PromptSignals};

/// Why a prompt gave no PIN: a signal cancelled it, or what went wrong (never the PIN).
pub use mkclone_pkcs11::PinPromptError as PromptError;

/// The longest PIN line read (PKCS#11 tokens take far shorter PINs).
const MAX_PIN: usize = 256;

/// Whose PIN is asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Whose {
    /// The token's user PIN (`pin`).
    User,
    /// The token's security officer's PIN (`so_pin`), for the source's share export.
    SecurityOfficer,
}

impl Whose {
    fn name(self) -> &'static str {
        match self {
            Self::User => "PIN",
            Self::SecurityOfficer => "security officer's (SO) PIN",
        }
    }
    fn setting(self) -> &'static str {
        match self {
            Self::User => "pin",
            Self::SecurityOfficer => "so_pin",
        }
    }
}

/// Prompt on the terminal for `whose` PIN of `token` (node `node`).
pub fn prompt(node: &str, token: &str, whose: Whose) -> Result<Zeroizing<String>, PromptError> {
    let (what, setting) = (whose.name(), whose.setting());
    let tty = nix::fcntl::open(
        "/dev/tty",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| {
        format!(
            "the {what} of token {token:?} is to be prompted for, but this process has no terminal \
             (/dev/tty: {e}): use {setting} = {{ env = \"VAR\" }} or {setting} = {{ file = \"path\" }} \
             for unattended runs"
        )
    })?;
    let ceremony = crate::signals::ceremony_flag();
    // The terminal is the prompt's until it is answered: `clone`'s other threads write
    // nothing under the question, and its progress bar is cleared (crate::terminal).
    crate::terminal::prompting(|| {
        prompt_on(
            &tty,
            &format!("{what} for token {token:?} (node {node}): "),
            ceremony.as_deref(),
        )
    })
}

/// Turn echo off on `tty`, write `question`, read one line, and restore the terminal's
/// settings whatever happened. The line is read byte by byte into zeroized memory: no
/// buffer keeps a copy of the PIN.
///
/// While the prompt is open, SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGTSTP are caught
/// (`signals.rs`): each wakes the prompt, which restores the terminal first. SIGTSTP then
/// stops the process, and the question is asked again when it continues. SIGINT and
/// SIGTERM, when `ceremony` is the flag of the ceremony's handlers (installed: they have
/// raised it), give [`PromptError::Interrupted`]: no PIN, whatever is typed after. Any
/// other signal, or these without the ceremony's handlers, takes its default effect (the
/// process ends) once the terminal is restored.
fn prompt_on(
    tty: &File,
    question: &str,
    ceremony: Option<&AtomicUsize>,
) -> Result<Zeroizing<String>, PromptError> {
    // A signal the ceremony's handlers took before the prompt: nothing is asked.
    let interrupted = || {
        ceremony
            .map(|flag| flag.load(Ordering::SeqCst))
            .filter(|&signal| signal != 0)
            .map(|signal| PromptError::Interrupted {
                signal: i32::try_from(signal).unwrap_or(i32::MAX),
            })
    };
    if let Some(stop) = interrupted() {
        return Err(stop);
    }
    let signals = PromptSignals::catch()
        .map_err(|e| format!("cannot catch signals for the PIN prompt: {e}"))?;
    if let Some(stop) = interrupted() {
        return Err(stop);
    }
    let asked = ask(tty, question, &signals);
    // The terminal is restored. The prompt closes: a signal that came before (with the end
    // of the line) counts too, one after finds the ceremony's handlers or its default.
    let late = signals.close();
    let signal = match &asked {
        Err(Stop::Signal(signal)) => Some(*signal),
        _ => late,
    };
    match signal {
        // Stopped as Ctrl-Z says (echo on); the line read stands once continued.
        Some(SIGTSTP) => {
            let _ = signals::take_default_action(SIGTSTP);
        }
        Some(signal) => {
            if !(ceremony.is_some() && CEREMONY_SIGNALS.contains(&signal)) {
                // The process ends as the signal says (this returns only if it could not).
                let _ = signals::take_default_action(signal);
            }
            return Err(PromptError::Interrupted { signal });
        }
        None => {}
    }
    if let Some(stop) = interrupted() {
        return Err(stop);
    }
    let line = asked.map_err(|stop| match stop {
        Stop::Failed(why) => PromptError::Failed(why),
        Stop::Signal(signal) => PromptError::Interrupted { signal },
    })?;
    let pin =
        std::str::from_utf8(&line).map_err(|_| "the PIN entered is not UTF-8 text".to_string())?;
    let pin = Zeroizing::new(pin.trim_end_matches('\r').to_string());
    if pin.is_empty() {
        return Err("no PIN was entered".to_string().into());
    }
    Ok(pin)
}

/// Turn echo off, write `question`, read one line; the terminal's settings are restored
/// (and the newline written) whatever happened, before a signal has any other effect. A
/// stop (SIGTSTP) stops the process there, echo on, and asks again once it continues.
fn ask(tty: &File, question: &str, signals: &PromptSignals) -> Result<Zeroizing<Vec<u8>>, Stop> {
    let original = termios::tcgetattr(tty)
        .map_err(|e| Stop::Failed(format!("cannot read the terminal settings: {e}")))?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    let mut out = tty;
    loop {
        // Echo off before the question shows: what is typed as soon as it appears is not
        // shown.
        termios::tcsetattr(tty, SetArg::TCSANOW, &silent)
            .map_err(|e| Stop::Failed(format!("cannot turn off echo: {e}")))?;
        let _ = out.write_all(question.as_bytes());
        let _ = out.flush();
        let read = read_line(tty, signals);
        let _ = termios::tcsetattr(tty, SetArg::TCSANOW, &original);
        let _ = out.write_all(b"\n");
        match read {
            Err(Stop::Signal(SIGTSTP)) => {
                let _ = signals::take_default_action(SIGTSTP);
            }
            other => return other,
        }
    }
}

/// Why [`read_line`] gave no line.
enum Stop {
    /// A caught signal arrived (its number).
    Signal(i32),
    Failed(String),
}

/// One line from `tty`, without its newline, at most [`MAX_PIN`] bytes. Each byte is
/// waited for with poll(2) on the terminal and on the prompt's signal pipe: a caught
/// signal ends the wait at once.
fn read_line(mut tty: &File, signals: &PromptSignals) -> Result<Zeroizing<Vec<u8>>, Stop> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PIN));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        let mut fds = [
            PollFd::new(tty.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Stop::Failed(format!("cannot wait for the PIN: {e}"))),
        }
        if let Some(signal) = signals.take() {
            return Err(Stop::Signal(signal));
        }
        // Readable, hung up or failed: read says which.
        if fds[0].revents().is_none_or(|r| r.is_empty()) {
            continue;
        }
        match tty.read(&mut byte[..]) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == MAX_PIN => {
                return Err(Stop::Failed(format!(
                    "the PIN entered is longer than {MAX_PIN} bytes"
                )));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Stop::Failed(format!("cannot read the PIN: {e}"))),
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::pty::openpty;

    /// A pseudo-terminal: (the side a person types into, the side mkclone reads).
    fn pty() -> (File, File) {
        let pair = openpty(None, None).expect("openpty");
        (File::from(pair.master), File::from(pair.slave))
    }

    /// The person at `person`: waits for the question, then types `typed`; returns what
    /// the screen showed (the question and anything echoed after it).
    /// (The thread has its own handle on the pty's master: the caller keeps one open,
    /// since the terminal's side fails with EIO once every master handle is closed.)
    fn type_after_question(person: &File, typed: Vec<u8>) -> std::thread::JoinHandle<String> {
        let mut person = person.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut shown = Vec::new();
            let mut chunk = [0u8; 64];
            while !String::from_utf8_lossy(&shown).contains("PIN: ") {
                let n = person.read(&mut chunk).unwrap();
                shown.extend_from_slice(&chunk[..n]);
            }
            person.write_all(&typed).unwrap();
            // The newline mkclone writes after reading: anything echoed comes before it.
            while !String::from_utf8_lossy(&shown).ends_with('\n') {
                let n = person.read(&mut chunk).unwrap();
                shown.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8_lossy(&shown).into_owned()
        })
    }

    #[test]
    fn the_pin_is_read_from_the_terminal_with_echo_off_and_echo_comes_back() {
        let (person, tty) = pty();
        let before = termios::tcgetattr(&tty).unwrap();
        assert!(before.local_flags.contains(LocalFlags::ECHO));
        let screen = type_after_question(&person, b"1234-pin\n".to_vec());
        let pin = prompt_on(&tty, "PIN: ", None).unwrap();
        assert_eq!(pin.as_str(), "1234-pin");
        let after = termios::tcgetattr(&tty).unwrap();
        assert!(
            after.local_flags.contains(LocalFlags::ECHO),
            "echo restored"
        );
        // What the person's screen shows: the question and a newline, never the PIN.
        let shown = screen.join().unwrap();
        assert!(shown.starts_with("PIN: "), "{shown:?}");
        assert!(!shown.contains("1234"), "the PIN was echoed: {shown:?}");
    }

    #[test]
    fn an_empty_or_overlong_pin_is_refused_and_echo_still_comes_back() {
        let (person, tty) = pty();
        let screen = type_after_question(&person, b"\n".to_vec());
        assert_eq!(
            prompt_on(&tty, "PIN: ", None).unwrap_err().to_string(),
            "no PIN was entered"
        );
        screen.join().unwrap();
        let long = format!("{}\n", "9".repeat(MAX_PIN + 1)).into_bytes();
        let screen = type_after_question(&person, long);
        let err = prompt_on(&tty, "PIN: ", None).unwrap_err().to_string();
        assert!(err.contains("longer than 256 bytes"), "{err}");
        assert!(!err.contains("999"), "the PIN is not in the message: {err}");
        assert!(!screen.join().unwrap().contains("999"), "not echoed");
        assert!(
            termios::tcgetattr(&tty)
                .unwrap()
                .local_flags
                .contains(LocalFlags::ECHO)
        );
    }

    // --- signals at the prompt ---------------------------------------------------------

    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use nix::unistd::Pid;

    /// The signal tests send signals to this process or its children: one at a time.
    static ONE_SIGNAL_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_signal_test() -> std::sync::MutexGuard<'static, ()> {
        ONE_SIGNAL_TEST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn echo_on(tty: &File) -> bool {
        termios::tcgetattr(tty)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ECHO)
    }

    /// Read what the screen at `person` shows into `shown` until `done` says so, for at
    /// most `within`; whether it did.
    fn watch(
        person: &File,
        shown: &mut Vec<u8>,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        let mut reader = person;
        let mut chunk = [0u8; 64];
        while !done(&String::from_utf8_lossy(shown)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let left = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            if left == 0 {
                return false;
            }
            let mut fds = [PollFd::new(person.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(left)).unwrap_or(0) == 0 {
                continue;
            }
            let n = reader.read(&mut chunk).unwrap();
            shown.extend_from_slice(&chunk[..n]);
        }
        true
    }

    /// A signal while the prompt waits, with the ceremony's handlers installed (here their
    /// flag alone, as `install_ceremony_handlers` registers it: its second-signal exit
    /// would end the test run): the prompt wakes at once, echo comes back, the answer is
    /// `Interrupted` with the flag raised, and a PIN typed after the signal is not read.
    #[test]
    fn a_signal_at_the_prompt_under_the_ceremonys_handlers_cancels_it_and_echo_comes_back() {
        let _one = one_signal_test();
        for (signal, number) in [(Signal::SIGINT, 2), (Signal::SIGTERM, 15)] {
            let (person, tty) = pty();
            let ceremony = Arc::new(AtomicUsize::new(0));
            let handler =
                signal_hook::flag::register_usize(number, ceremony.clone(), number as usize)
                    .unwrap();
            let (answer, answered) = mpsc::channel();
            let (mkclone, flag) = (tty.try_clone().unwrap(), ceremony.clone());
            std::thread::spawn(move || {
                let _ = answer.send(prompt_on(&mkclone, "PIN: ", Some(&flag)));
            });
            let mut shown = Vec::new();
            assert!(watch(&person, &mut shown, Duration::from_secs(10), |s| {
                s.contains("PIN: ")
            }));
            assert!(!echo_on(&tty), "the prompt waits with echo off");
            kill(Pid::this(), signal).unwrap();
            // The prompt answers the signal (its newline) without any key pressed...
            let woken = watch(&person, &mut shown, Duration::from_secs(5), |s| {
                s.ends_with('\n')
            });
            // ...and a PIN typed after it is not taken.
            (&person).write_all(b"1234-pin\n").unwrap();
            let result = answered.recv_timeout(Duration::from_secs(10));
            signal_hook::low_level::unregister(handler);
            assert!(woken, "{signal}: the prompt did not wake at the signal");
            match result {
                Ok(Err(PromptError::Interrupted { signal: s })) => assert_eq!(s, number),
                Ok(Ok(_)) => panic!("{signal}: the PIN typed after the signal was taken"),
                other => panic!("{signal}: {other:?}"),
            }
            assert_eq!(ceremony.load(Ordering::SeqCst), number as usize);
            assert!(echo_on(&tty), "{signal}: echo restored");
            let shown = String::from_utf8_lossy(&shown);
            // (The terminal shows the newline as CR LF.)
            assert_eq!(shown, "PIN: \r\n", "{signal}");
        }
    }

    /// The ceremony's handlers took a signal before the prompt opened (between the safe
    /// point and the share export): nothing is asked, the terminal is left alone.
    #[test]
    fn a_signal_the_ceremony_took_before_the_prompt_means_no_question() {
        let (person, tty) = pty();
        let ceremony = Arc::new(AtomicUsize::new(2));
        let (answer, answered) = mpsc::channel();
        let mkclone = tty.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = answer.send(prompt_on(&mkclone, "PIN: ", Some(&ceremony)));
        });
        let result = answered.recv_timeout(Duration::from_secs(5));
        if result.is_err() {
            // Asked all the same: answer it so that the thread ends.
            (&person).write_all(b"1234-pin\n").unwrap();
        }
        assert!(
            matches!(result, Ok(Err(PromptError::Interrupted { signal: 2 }))),
            "{result:?}"
        );
        let mut shown = Vec::new();
        assert!(
            !watch(&person, &mut shown, Duration::from_millis(200), |s| !s
                .is_empty()),
            "nothing is shown: {shown:?}"
        );
        assert!(echo_on(&tty));
    }

    /// Set in the child process the tests below start (this test binary itself).
    const CHILD: &str = "MKCLONE_TEST_ONLY_PIN_PROMPT_CHILD";

    /// The child's part of the tests below: a prompt on its standard input (a pty), no
    /// ceremony handler installed, as at a node's opening. It exits 0 if it read the PIN
    /// `typed-after-tstp`, 1 for anything else; a signal that ends it ends it there.
    #[test]
    fn a_prompt_in_a_child_process() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let tty = File::from(std::io::stdin().as_fd().try_clone_to_owned().unwrap());
        let pin = prompt_on(&tty, "PIN: ", None);
        std::process::exit(match pin {
            Ok(pin) if pin.as_str() == "typed-after-tstp" => 0,
            _ => 1,
        });
    }

    /// A child process prompting on `tty`, and the screen once its question shows.
    fn child_prompting(person: &File, tty: &File) -> (std::process::Child, Vec<u8>) {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pin::tests::a_prompt_in_a_child_process",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .stdin(Stdio::from(tty.try_clone().unwrap()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut shown = Vec::new();
        assert!(watch(person, &mut shown, Duration::from_secs(30), |s| {
            s.contains("PIN: ")
        }));
        (child, shown)
    }

    /// `child`'s end, within 10 s.
    fn ended(child: &mut std::process::Child) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the child did not end");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Without the ceremony's handlers (a user PIN asked at a node's opening), a signal at
    /// the prompt ends the process as the signal says, but with the terminal's echo back
    /// on (the old prompt left it off: the default action ended the process mid-read).
    #[test]
    fn a_signal_at_the_prompt_before_the_ceremonys_handlers_ends_the_process_echo_on() {
        let _one = one_signal_test();
        for signal in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            let (person, tty) = pty();
            let (mut child, mut shown) = child_prompting(&person, &tty);
            assert!(!echo_on(&tty), "{signal}: the prompt waits with echo off");
            kill(Pid::from_raw(child.id() as i32), signal).unwrap();
            let status = ended(&mut child);
            assert_eq!(status.signal(), Some(signal as i32), "{signal}: {status:?}");
            assert!(echo_on(&tty), "{signal}: echo restored");
            watch(&person, &mut shown, Duration::from_secs(1), |s| {
                s.ends_with('\n')
            });
            assert_eq!(String::from_utf8_lossy(&shown), "PIN: \r\n", "{signal}");
        }
    }

    /// Ctrl-Z (SIGTSTP) at the prompt: echo back on while the process is stopped; once it
    /// continues, echo off again and the question asked again, and the PIN is read.
    #[test]
    fn a_stop_at_the_prompt_leaves_echo_on_while_stopped_and_asks_again() {
        let _one = one_signal_test();
        let (person, tty) = pty();
        let (mut child, mut shown) = child_prompting(&person, &tty);
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGTSTP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stopped = loop {
            match waitpid(pid, Some(WaitPidFlag::WUNTRACED | WaitPidFlag::WNOHANG)).unwrap() {
                WaitStatus::StillAlive if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other,
            }
        };
        assert!(
            matches!(stopped, WaitStatus::Stopped(..)),
            "the child stopped: {stopped:?}"
        );
        let echo_while_stopped = echo_on(&tty);
        kill(pid, Signal::SIGCONT).unwrap();
        assert!(echo_while_stopped, "echo on while stopped");
        assert!(
            watch(&person, &mut shown, Duration::from_secs(10), |s| s
                .matches("PIN: ")
                .count()
                == 2),
            "asked again: {:?}",
            String::from_utf8_lossy(&shown)
        );
        assert!(!echo_on(&tty), "echo off again for the question");
        (&person).write_all(b"typed-after-tstp\n").unwrap();
        let status = ended(&mut child);
        assert_eq!(status.code(), Some(0), "the PIN was read: {status:?}");
        assert!(echo_on(&tty));
        watch(&person, &mut shown, Duration::from_secs(1), |s| {
            s.matches('\n').count() == 2
        });
        let shown = String::from_utf8_lossy(&shown);
        assert_eq!(shown, "PIN: \r\nPIN: \r\n", "never the PIN");
    }
}
