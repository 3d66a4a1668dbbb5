//! Asking for a PIN on the terminal, without echo. A PIN never comes from the command
//! line; when the configuration says `pin = "prompt"` (or `so_pin = "prompt"`), this is
//! where it comes from.

use std::io::{BufRead, IsTerminal, Write};

use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

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
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!(
            "the {what} of token {token:?} is to be prompted for, but standard input is not a terminal: \
             use {setting} = {{ env = \"VAR\" }} or {setting} = {{ file = \"path\" }} for unattended runs"
        ));
    }
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{what} for token {token:?} (node {node}): ");
    let _ = stderr.flush();
    let original = termios::tcgetattr(&stdin)
        .map_err(|e| format!("cannot read the terminal settings: {e}"))?;
    let mut silent = original.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    termios::tcsetattr(&stdin, SetArg::TCSANOW, &silent)
        .map_err(|e| format!("cannot turn off echo: {e}"))?;
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    // Echo comes back whatever happened.
    let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &original);
    let _ = writeln!(stderr);
    read.map_err(|e| format!("cannot read the PIN: {e}"))?;
    let pin = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_string());
    if pin.is_empty() {
        return Err("no PIN was entered".into());
    }
    Ok(pin)
}
