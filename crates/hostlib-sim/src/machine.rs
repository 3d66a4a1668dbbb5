//! The simulated machine behind the library: where its cards live, which domain the
//! library serves (CSU_DEFAULT_DOMAIN, read once, as IBM's library reads it when loaded:
//! s390-tools zkey/cca.c reloads the library after changing it), which adapter is
//! allocated (CSUACRA, per thread as IBM scopes it), and the test controls (`simlib.json`).
//!
//! Home: `MKCLONE_SIMLIB_DIR`, else the directory the library file is in. Cards are
//! hw-sim's files `card-XX.DDDD.json` there (SimBus); adapter CRPnn is the n-th card
//! number of the library's domain in ascending order.

use std::path::{Path, PathBuf};

use mkclone_backend::SerialNumber;
use mkclone_cca::verbs::{Reply, Request};
use mkclone_cca::{REPLY_CAPACITY, Transport};
use mkclone_hw_sim::{Apqn, SimBus, SimTransport, Store};
use serde::Deserialize;

/// Codes a verb answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codes {
    pub rc: i64,
    pub rs: i64,
}

pub const fn codes(rc: i64, rs: i64) -> Codes {
    Codes { rc, rs }
}

/// IBM's codes the library answers itself (the one table: crates/cca `rc`, from [BSR 2.54]
/// Appendix A, Figure A-4, and [LZ]).
pub mod ibm {
    use super::{Codes, codes};
    use mkclone_cca::rc::rs;
    /// A rule array or other parameter specifies a keyword that is not valid.
    pub const BAD_KEYWORD: Codes = codes(8, rs::BAD_KEYWORD as i64);
    /// A rule-array keyword combination is not valid.
    pub const BAD_COMBINATION: Codes = codes(8, rs::BAD_KEYWORD_COMBINATION as i64);
    /// A rule-array count is not valid.
    pub const BAD_COUNT: Codes = codes(8, rs::BAD_RULE_COUNT as i64);
    /// The verb data (or its length) is not valid: IBM documents it for CSUACFQ's verb data
    /// ("Verb data returned for CSUACFQ keywords"); the simulated library answers it for
    /// every output buffer too small for the result, with the length needed written back.
    pub const TOO_SMALL: Codes = codes(8, rs::BAD_VERB_DATA_LENGTH as i64);
}

/// Codes the simulated library answers where IBM publishes none (project-assigned, from
/// 0xF000 as in crates/cca `rc`).
pub mod project {
    use super::{Codes, codes};
    /// No adapter of that name, or no card at all for the library's domain.
    pub const NO_ADAPTER: Codes = codes(12, 0xF012);
    /// The card file could not be used (locked too long, unreadable).
    pub const CARD_UNAVAILABLE: Codes = codes(12, 0xF013);
    /// A parameter's value is not one the simulated card implements.
    pub const UNSUPPORTED: Codes = codes(8, 0xF014);
    /// CSUACRA while the calling thread has an adapter allocated: IBM documents the
    /// refusal ("You cannot allocate a cryptographic resource while one is already
    /// allocated"), not its codes.
    pub const ALREADY_ALLOCATED: Codes = codes(8, 0xF015);
}

std::thread_local! {
    /// The adapter this thread allocated (CSUACRA): IBM scopes coprocessor allocation to
    /// the thread ("Coprocessor allocation is scoped to a thread, and domain allocation is
    /// scoped to a process", CCA for Linux on IBM Z, CSUACRA), so another thread of the
    /// process is routed to the default adapter.
    static ALLOCATED: std::cell::Cell<Option<u8>> = const { std::cell::Cell::new(None) };
    /// Whether this thread's calls with no adapter allocated go to the default one (CRP01);
    /// CSUACRD DEV-ANY turns it off. Per thread, as the allocation it stands in for.
    static AUTOSELECT: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// `simlib.json`: what a test asks the library to do wrong.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// End the process at the n-th verb call (1-based, all verbs counted).
    #[serde(default)]
    pub crash_at: Option<u64>,
    /// Crash before the card runs the call (default: after, before the reply).
    #[serde(default)]
    pub crash_before: bool,
    /// Answer these codes for every call of a verb, without running it.
    #[serde(default)]
    pub fail: std::collections::BTreeMap<String, (i64, i64)>,
    /// Access-control points CSUAACM GET-ROLE reports disabled.
    #[serde(default)]
    pub disabled_acps: Vec<u16>,
    /// The version data CSUACFV answers instead of its own, as a library of another make
    /// (or a hostile one) might: any bytes but NUL, which it appends.
    #[serde(default)]
    pub version: Option<String>,
}

pub struct Machine {
    pub home: PathBuf,
    pub domain: u16,
    calls: u64,
}

impl Machine {
    pub fn new(own_path: Option<PathBuf>) -> Self {
        let home = std::env::var_os("MKCLONE_SIMLIB_DIR")
            .map(PathBuf::from)
            .or_else(|| own_path.and_then(|p| p.parent().map(Path::to_path_buf)))
            .unwrap_or_else(|| PathBuf::from("."));
        let domain = std::env::var("CSU_DEFAULT_DOMAIN")
            .ok()
            .and_then(|d| d.trim().parse::<u16>().ok())
            .unwrap_or(0);
        Self {
            home,
            domain,
            calls: 0,
        }
    }

    pub fn control(&self) -> Control {
        std::fs::read(self.home.join("simlib.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Count a call of `verb`; crash or fail it as `simlib.json` says. `Err` carries the
    /// codes to answer without running the verb.
    pub fn begin(&mut self, verb: &str) -> Result<(), Codes> {
        self.calls += 1;
        let control = self.control();
        if control.crash_at == Some(self.calls) && control.crash_before {
            crash(verb, self.calls);
        }
        if let Some((rc, rs)) = control.fail.get(verb) {
            return Err(codes(*rc, *rs));
        }
        Ok(())
    }

    /// After a verb ran: the crash that loses its reply.
    pub fn end(&mut self, verb: &str) {
        let control = self.control();
        if control.crash_at == Some(self.calls) && !control.crash_before {
            crash(verb, self.calls);
        }
    }

    /// The card numbers of the library's domain, ascending (CRP01 is the first).
    pub fn adapters(&self) -> Vec<u8> {
        let mut cards: Vec<u8> = std::fs::read_dir(&self.home)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let apqn: Apqn = name
                    .strip_prefix("card-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                (apqn.domain == self.domain).then_some(apqn.card)
            })
            .collect();
        cards.sort_unstable();
        cards.dedup();
        cards
    }

    /// The adapter the calling thread allocated.
    pub fn allocated(&self) -> Option<u8> {
        ALLOCATED.get()
    }

    pub fn set_allocated(&mut self, adapter: Option<u8>) {
        ALLOCATED.set(adapter);
    }

    pub fn set_autoselect(&mut self, on: bool) {
        AUTOSELECT.set(on);
    }

    /// The APQN the calling thread's calls go to: its allocated adapter, else
    /// (autoselect) the first.
    pub fn apqn(&self) -> Result<Apqn, Codes> {
        let cards = self.adapters();
        let card = match ALLOCATED.get() {
            Some(n) => cards.get(usize::from(n).wrapping_sub(1)).copied(),
            None if AUTOSELECT.get() => cards.first().copied(),
            None => None,
        };
        card.and_then(|c| Apqn::new(c, self.domain).ok())
            .ok_or(project::NO_ADAPTER)
    }

    /// `mkclone sim init`: a factory-fresh card with `serial` in the library's domain, as
    /// the next adapter (card number one above the highest of the domain, so the adapters
    /// already there keep their CRPnn). `Ok(false)` when a card of the domain already has
    /// this serial.
    pub fn create_card(&self, serial: &SerialNumber) -> Result<bool, Codes> {
        let bus = SimBus::new(&self.home);
        let cards = self.adapters();
        for card in &cards {
            let apqn = Apqn::new(*card, self.domain).map_err(|_| project::NO_ADAPTER)?;
            let state = Store::open_file(&bus.card_path(apqn))
                .and_then(|s| s.snapshot())
                .map_err(|_| project::CARD_UNAVAILABLE)?;
            if &state.serial == serial {
                return Ok(false);
            }
        }
        let next = cards.last().map_or(Some(1), |c| c.checked_add(1));
        let apqn = next
            .and_then(|c| Apqn::new(c, self.domain).ok())
            .ok_or(project::NO_ADAPTER)?;
        bus.create_card(apqn, serial)
            .map_err(|_| project::CARD_UNAVAILABLE)?;
        Ok(true)
    }

    /// Run one of mkclone's requests on the selected card: the card model answers it as
    /// it answers the simulator's CPRBs.
    pub fn run(&mut self, request: &Request) -> Result<Reply, Codes> {
        let apqn = self.apqn()?;
        let message = self.exchange(apqn, &request_message(request, apqn)?)?;
        Reply::from_message(&message, request).map_err(|_| project::CARD_UNAVAILABLE)
    }

    /// One request message to the selected card; the reply message.
    pub fn exchange(&mut self, apqn: Apqn, message: &[u8]) -> Result<Vec<u8>, Codes> {
        let path = SimBus::new(&self.home).card_path(apqn);
        let store = Store::open_file(&path).map_err(|_| project::CARD_UNAVAILABLE)?;
        let mut transport = SimTransport::new(apqn, store);
        transport
            .send(message, REPLY_CAPACITY, false)
            .map_err(|_| project::CARD_UNAVAILABLE)
    }
}

fn request_message(request: &Request, apqn: Apqn) -> Result<Vec<u8>, Codes> {
    request
        .to_message(apqn.domain, REPLY_CAPACITY)
        .map_err(|_| project::UNSUPPORTED)
}

/// A crash: the process ends at once, as a power cut would end it (no destructors, no
/// reply).
fn crash(verb: &str, call: u64) -> ! {
    eprintln!("mkclone simulated CCA library: injected crash at call {call} ({verb})");
    std::process::abort()
}
