//! Asking for a PIN on the terminal, without echo. A PIN never comes from the command
//! line; when the configuration says `pin = "prompt"` (or `so_pin = "prompt"`), this is
//! where it comes from.
//!
//! The prompt talks to the process's controlling terminal (`/dev/tty`), as passwd and
//! ssh do, not to standard input and error: `mkclone status … < list` or `2> log` still
//! asks the person at the terminal, and a PIN never lands in a redirected file.

use std::fs::File;
use std::io::{Read, Write};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

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
pub fn prompt(node: &str, token: &str, whose: Whose) -> Result<Zeroizing<String>, String> {
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
    prompt_on(&tty, &format!("{what} for token {token:?} (node {node}): "))
}

/// Turn echo off on `tty`, write `question`, read one line, and restore the terminal's
/// settings whatever happened. The line is read byte by byte into zeroized memory: no
/// buffer keeps a copy of the PIN.
fn prompt_on(tty: &File, question: &str) -> Result<Zeroizing<String>, String> {
    let original =
        termios::tcgetattr(tty).map_err(|e| format!("cannot read the terminal settings: {e}"))?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    // Echo off before the question shows: what is typed as soon as it appears is not shown.
    termios::tcsetattr(tty, SetArg::TCSANOW, &silent)
        .map_err(|e| format!("cannot turn off echo: {e}"))?;
    let mut out = tty;
    let _ = out.write_all(question.as_bytes());
    let _ = out.flush();
    let read = read_line(tty);
    // Echo comes back whatever happened.
    let _ = termios::tcsetattr(tty, SetArg::TCSANOW, &original);
    let _ = out.write_all(b"\n");
    let line = read?;
    let pin =
        std::str::from_utf8(&line).map_err(|_| "the PIN entered is not UTF-8 text".to_string())?;
    let pin = Zeroizing::new(pin.trim_end_matches('\r').to_string());
    if pin.is_empty() {
        return Err("no PIN was entered".into());
    }
    Ok(pin)
}

/// One line from `tty`, without its newline, at most [`MAX_PIN`] bytes.
fn read_line(mut tty: &File) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PIN));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        match tty.read(&mut byte[..]) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == MAX_PIN => {
                return Err(format!("the PIN entered is longer than {MAX_PIN} bytes"));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the PIN: {e}")),
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
        let pin = prompt_on(&tty, "PIN: ").unwrap();
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
        assert_eq!(prompt_on(&tty, "PIN: ").unwrap_err(), "no PIN was entered");
        screen.join().unwrap();
        let long = format!("{}\n", "9".repeat(MAX_PIN + 1)).into_bytes();
        let screen = type_after_question(&person, long);
        let err = prompt_on(&tty, "PIN: ").unwrap_err();
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
}
