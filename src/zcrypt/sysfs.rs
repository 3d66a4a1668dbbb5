//! Discovery from sysfs: the CCA coprocessors of this machine, their domains (APQNs) and
//! master-key states, without sending a request to any card.
//!
//! Attributes read (Linux `drivers/s390/crypto`; reference/zcrypt-abi.md, "sysfs"):
//! - cards `<root>/bus/ap/devices/cardXX`: `type` ("CEX7C", zcrypt_card.c), `hwtype`
//!   (decimal, ap_card.c), `ap_functions` ("0x%08X", ap_card.c), `online` (zcrypt_card.c),
//!   `config` and `chkstop` (ap_card.c), `serialnr` (CCA cards, zcrypt_cex4.c);
//! - queues `<root>/bus/ap/devices/XX.YYYY`: `online` (zcrypt_queue.c), `config` and
//!   `chkstop` (ap_queue.c, newer kernels), `mkvps` (CCA queues, zcrypt_cex4.c
//!   `cca_mkvps_show`): lines "AES NEW: full 0x0123456789abcdef" for AES and APKA
//!   (`"%s NEW: %s 0x%016llx"`), and in newer kernels three ASYM lines whose 16-byte
//!   pattern is printed as two 64-bit words (`"ASYM NEW: %s 0x%016llx%016llx"`, in s390x
//!   byte order: the bytes as they stand); NEW is empty/partial/full, CUR and OLD
//!   invalid/valid, and "- -" when the state is not one of those.
//!
//! The status words are lszcrypt's (s390-tools zconf/zcrypt/lszcrypt.c,
//! `read_rec_default` and `read_subdev_rec_default`): "deconfig" when `config` is 0,
//! else "chkstop" when `chkstop` is 1, else "online"/"offline".
//!
//! A card is a CCA coprocessor when its function field has the coprocessor bit and not
//! the accelerator bit (the kernel's zcrypt_cex4.c tests the accelerator bit first);
//! accelerators and EP11 coprocessors are left out.
//!
//! `mkvps` asks the card when it is read. When that query fails, the kernel prints "- -"
//! for every register and the read still succeeds; an interrupted read looks the same.
//! Such a read is retried; if every attempt gives "- -", the states are reported as
//! unknown, never guessed.

// Only src/zcrypt/ioctl.rs may hold unsafe code (docs/ARCHITECTURE.md, "zcrypt").
#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mkclone_backend::{MasterKeyKind, PatternAlgorithm, VerificationPattern};
use mkclone_cca::Apqn;
use serde::Serialize;
use thiserror::Error;

/// `ap_functions` bits (the kernel's ap_bus.h, AP_FUNC_*, in the "0x%08X" value).
pub mod functions {
    pub const COPROCESSOR: u32 = 0x1000_0000;
    pub const ACCELERATOR: u32 = 0x0800_0000;
    pub const EP11: u32 = 0x0400_0000;
}

/// How many times an all-"- -" `mkvps` is read in all.
pub const MKVPS_ATTEMPTS: u32 = 3;

/// A failure of discovery as a whole (a single unreadable attribute is not one).
#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error(
        "no AP bus at {path}: this is not Linux on IBM Z / LinuxONE, or the ap module is not loaded \
         (`modprobe ap`), or the sysfs root is wrong"
    )]
    NoApBus { path: PathBuf },
    #[error("cannot list {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One register's state as `mkvps` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterState {
    Empty,
    Partial,
    Full,
    Invalid,
    Valid,
    /// "- -": the kernel could not ask the card (queue offline, or the read was
    /// interrupted every time it was tried).
    Unknown,
}

/// Which register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterName {
    New,
    Current,
    Old,
}

impl RegisterName {
    fn sysfs(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Current => "CUR",
            Self::Old => "OLD",
        }
    }
}

/// One line of `mkvps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MasterKeyRegister {
    pub kind: MasterKeyKind,
    pub register: RegisterName,
    pub state: RegisterState,
    /// Present when the register holds a key (NEW full, CUR/OLD valid).
    pub pattern: Option<VerificationPattern>,
}

/// One domain of a CCA card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CcaQueue {
    pub apqn: Apqn,
    pub online: bool,
    /// "online", "offline", "deconfig" or "chkstop" from the queue's own attributes, as
    /// lszcrypt writes a queue's status.
    pub status: &'static str,
    /// `None` when the queue has no readable `mkvps`.
    pub master_keys: Option<Vec<MasterKeyRegister>>,
}

/// One CCA coprocessor and its domains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CcaCard {
    pub card: u8,
    /// `type`, e.g. "CEX7C".
    #[serde(rename = "type")]
    pub card_type: String,
    /// `hwtype`: 10-14 for CEX4-CEX8.
    pub hwtype: u32,
    /// "CCA-Coproc", as lszcrypt writes the mode.
    pub mode: &'static str,
    pub online: bool,
    /// "online", "offline", "deconfig" or "chkstop", as lszcrypt writes the status.
    pub status: &'static str,
    /// `ap_functions`.
    pub functions: u32,
    /// `serialnr`, when readable and not empty.
    pub serial: Option<String>,
    pub queues: Vec<CcaQueue>,
}

/// Read the CCA coprocessors under `sysfs_root` (normally `/sys`).
pub fn discover(sysfs_root: &Path) -> Result<Vec<CcaCard>, DiscoveryError> {
    discover_with(
        sysfs_root,
        &mut |path| std::fs::read_to_string(path),
        Duration::from_millis(50),
    )
}

/// [`discover`] with the attribute reader and the pause between `mkvps` attempts given
/// (tests stand in for sysfs, whose `mkvps` changes between reads).
pub fn discover_with(
    sysfs_root: &Path,
    read: &mut dyn FnMut(&Path) -> io::Result<String>,
    pause: Duration,
) -> Result<Vec<CcaCard>, DiscoveryError> {
    let devices = sysfs_root.join("bus/ap/devices");
    if !devices.is_dir() {
        return Err(DiscoveryError::NoApBus { path: devices });
    }
    let names: Vec<String> = std::fs::read_dir(&devices)
        .map_err(|source| DiscoveryError::List {
            path: devices.clone(),
            source,
        })?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    Ok(cards_from(&devices, names, read, pause))
}

/// A number of an AP bus entry's name as the kernel writes it: exactly `digits` lower-case
/// hex digits (`card%02x`, `%02x.%04x`: drivers/s390/crypto/ap_card.c, ap_queue.c). Not
/// `from_str_radix` alone, which also takes upper case and a leading `+`: "cardB3" or
/// "card+f" would name a card the listing spells otherwise, or one card twice.
fn kernel_hex(text: &str, digits: usize) -> Option<u32> {
    let ok = text.len() == digits
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| u32::from_str_radix(text, 16).ok()).flatten()
}

/// The CCA coprocessors among the entries `names` of the AP bus directory `devices`, their
/// attributes read through `read` (the part of [`discover_with`] after listing the
/// directory; the fuzz target `sysfs` drives it with attribute text of its own).
pub fn cards_from(
    devices: &Path,
    mut names: Vec<String>,
    read: &mut dyn FnMut(&Path) -> io::Result<String>,
    pause: Duration,
) -> Vec<CcaCard> {
    names.sort();
    let mut cards = Vec::new();
    for name in &names {
        let Some(card) = name
            .strip_prefix("card")
            .and_then(|n| kernel_hex(n, 2))
            .and_then(|n| u8::try_from(n).ok())
        else {
            continue;
        };
        let dir = devices.join(name);
        let mut attr = |a: &str| read(&dir.join(a)).ok().map(|s| s.trim().to_string());
        let functions = attr("ap_functions")
            .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        if functions & functions::ACCELERATOR != 0 || functions & functions::COPROCESSOR == 0 {
            continue; // an accelerator, an EP11 coprocessor, or unknown: not CCA
        }
        let hwtype = attr("hwtype").and_then(|h| h.parse().ok()).unwrap_or(0);
        let card_type = attr("type")
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| derived_type(hwtype));
        let online = attr("online").as_deref() == Some("1");
        let status = lszcrypt_status(
            attr("config").as_deref(),
            attr("chkstop").as_deref(),
            online,
        );
        let serial = attr("serialnr").filter(|s| !s.is_empty());

        let prefix = format!("{card:02x}.");
        let mut queues = Vec::new();
        for qname in names.iter().filter(|n| n.starts_with(&prefix)) {
            let Some(domain) = qname
                .strip_prefix(&prefix)
                .and_then(|d| kernel_hex(d, 4))
                .and_then(|d| u16::try_from(d).ok())
            else {
                continue;
            };
            let Ok(apqn) = Apqn::new(card, domain) else {
                continue;
            };
            let qdir = devices.join(qname);
            let mut qattr = |a: &str| read(&qdir.join(a)).ok().map(|s| s.trim().to_string());
            let online = qattr("online").as_deref() == Some("1");
            let status = lszcrypt_status(
                qattr("config").as_deref(),
                qattr("chkstop").as_deref(),
                online,
            );
            let master_keys = read_mkvps(&qdir.join("mkvps"), read, pause);
            queues.push(CcaQueue {
                apqn,
                online,
                status,
                master_keys,
            });
        }
        cards.push(CcaCard {
            card,
            card_type,
            hwtype,
            mode: "CCA-Coproc",
            online,
            status,
            functions,
            serial,
            queues,
        });
    }
    cards
}

/// A card's or queue's status as lszcrypt words it (`read_rec_default`,
/// `read_subdev_rec_default`): `config` 0 is "deconfig"; otherwise `chkstop` above 0 is
/// "chkstop"; otherwise `online`.
fn lszcrypt_status(config: Option<&str>, chkstop: Option<&str>, online: bool) -> &'static str {
    let number = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
    if number(config) == Some(0) {
        "deconfig"
    } else if number(chkstop).is_some_and(|c| c > 0) {
        "chkstop"
    } else if online {
        "online"
    } else {
        "offline"
    }
}

/// The CCA APQNs of `cards`, online or not.
pub fn cca_apqns(cards: &[CcaCard]) -> Vec<Apqn> {
    cards
        .iter()
        .flat_map(|c| c.queues.iter().map(|q| q.apqn))
        .collect()
}

/// "CEX7C" from hwtype 13 when `type` is missing (no zcrypt driver bound).
fn derived_type(hwtype: u32) -> String {
    match hwtype {
        10..=14 => format!("CEX{}C", hwtype - 6),
        _ => format!("hwtype {hwtype}"),
    }
}

/// Read and parse `mkvps`, again while every register reads "- -".
fn read_mkvps(
    path: &Path,
    read: &mut dyn FnMut(&Path) -> io::Result<String>,
    pause: Duration,
) -> Option<Vec<MasterKeyRegister>> {
    let mut last = None;
    for attempt in 1..=MKVPS_ATTEMPTS {
        let text = read(path).ok()?;
        let registers = parse_mkvps(&text);
        let all_unknown = registers.iter().all(|r| r.state == RegisterState::Unknown);
        if !all_unknown || registers.is_empty() {
            return Some(registers);
        }
        last = Some(registers);
        if attempt < MKVPS_ATTEMPTS {
            std::thread::sleep(pause);
        }
    }
    last
}

/// Parse `mkvps`. Lines that are not "KIND REG: state pattern" are skipped; a pattern is
/// kept only when the register holds a key and the pattern has the kind's length.
pub fn parse_mkvps(text: &str) -> Vec<MasterKeyRegister> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((head, rest)) = line.split_once(':') else {
            continue;
        };
        let mut head = head.split_whitespace();
        let (Some(kind), Some(reg), None) = (head.next(), head.next(), head.next()) else {
            continue;
        };
        let kind = match kind {
            "AES" => MasterKeyKind::Aes,
            "APKA" => MasterKeyKind::Apka,
            "ASYM" => MasterKeyKind::Asym,
            "SYM" => MasterKeyKind::Sym,
            _ => continue,
        };
        let register = match reg {
            "NEW" => RegisterName::New,
            "CUR" => RegisterName::Current,
            "OLD" => RegisterName::Old,
            _ => continue,
        };
        let mut rest = rest.split_whitespace();
        let (Some(state), Some(pattern)) = (rest.next(), rest.next()) else {
            continue;
        };
        let state = match (register, state) {
            (_, "-") => RegisterState::Unknown,
            (RegisterName::New, "empty") => RegisterState::Empty,
            (RegisterName::New, "partial") => RegisterState::Partial,
            (RegisterName::New, "full") => RegisterState::Full,
            (RegisterName::Current | RegisterName::Old, "invalid") => RegisterState::Invalid,
            (RegisterName::Current | RegisterName::Old, "valid") => RegisterState::Valid,
            _ => continue,
        };
        let holds_key = matches!(state, RegisterState::Full | RegisterState::Valid);
        let pattern = if holds_key {
            mkvp_pattern(kind, pattern)
        } else {
            None
        };
        out.push(MasterKeyRegister {
            kind,
            register,
            state,
            pattern,
        });
    }
    out
}

fn mkvp_pattern(kind: MasterKeyKind, text: &str) -> Option<VerificationPattern> {
    let algorithm = match kind {
        MasterKeyKind::Aes | MasterKeyKind::Apka => PatternAlgorithm::Sha256Method,
        MasterKeyKind::Asym => PatternAlgorithm::Mdc4,
        MasterKeyKind::Sym => PatternAlgorithm::Sha1Method,
    };
    let digits = text.strip_prefix("0x")?;
    let bytes = hex::decode(digits).ok()?;
    VerificationPattern::new(algorithm, &bytes).ok()
}

/// The devices as a table, the way lszcrypt lists them: a row per card ("03") and per
/// domain ("03.000d"), then the domain's master-key registers as `mkvps` shows them.
pub fn format_devices(cards: &[CcaCard]) -> String {
    if cards.is_empty() {
        return "no CCA coprocessor found\n".to_string();
    }
    let mut out = String::new();
    out.push_str(&format!(
        "{:<12} {:<6} {:<11} {:<9} {}\n",
        "CARD.DOMAIN", "TYPE", "MODE", "STATUS", "SERIAL"
    ));
    out.push_str(&"-".repeat(52));
    out.push('\n');
    for card in cards {
        out.push_str(&format!(
            "{:<12} {:<6} {:<11} {:<9} {}\n",
            format!("{:02x}", card.card),
            card.card_type,
            card.mode,
            card.status,
            card.serial.as_deref().unwrap_or("-")
        ));
        for queue in &card.queues {
            let status = match card.status {
                "online" => queue.status,
                card_status => card_status,
            };
            out.push_str(&format!(
                "{:<12} {:<6} {:<11} {:<9}\n",
                queue.apqn.to_string(),
                card.card_type,
                card.mode,
                status
            ));
            match &queue.master_keys {
                None => out.push_str("    master keys: not readable\n"),
                Some(regs) if regs.is_empty() => out.push_str("    master keys: none reported\n"),
                Some(regs) => {
                    for r in regs {
                        let state = match r.state {
                            RegisterState::Empty => "empty",
                            RegisterState::Partial => "partial",
                            RegisterState::Full => "full",
                            RegisterState::Invalid => "invalid",
                            RegisterState::Valid => "valid",
                            RegisterState::Unknown => "unknown",
                        };
                        let pattern = r
                            .pattern
                            .as_ref()
                            .map(|p| format!("0x{}", hex::encode(p.bytes())))
                            .unwrap_or_else(|| "-".into());
                        out.push_str(&format!(
                            "    {:<4} {}: {:<8} {}\n",
                            r.kind.name(),
                            r.register.sysfs(),
                            state,
                            pattern
                        ));
                    }
                }
            }
        }
    }
    out
}
