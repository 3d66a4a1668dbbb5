//! This host as the printed record names it: its name, its time zone and UTC offset, and
//! local times beside the journal's UTC times.
//!
//! The journal's times are UTC (RFC 3339, milliseconds, `Z`) from each server's clock; a
//! command records its host's offset in its `run-start` note ([`RunStart`]), and the report
//! shows each record's local time with the offset of the run that wrote it (never the
//! offset of the machine printing the report).

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

use crate::event::{EVENTS_VERSION, RunStart};

/// This mkclone's version.
pub const MKCLONE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The host's name as the kernel reports it (`/proc/sys/kernel/hostname`, else
/// `/etc/hostname`), or "unknown host".
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// The host's time zone (its IANA name when it has one) and its UTC offset now.
pub fn local_zone() -> (Option<String>, String) {
    let tz = TimeZone::system();
    let offset = tz.to_offset(Timestamp::now());
    (tz.iana_name().map(str::to_owned), offset_text(offset))
}

/// `+HH:MM` / `-HH:MM` (seconds of historic offsets are dropped).
fn offset_text(offset: Offset) -> String {
    let s = offset.seconds();
    let sign = if s < 0 { '-' } else { '+' };
    let m = s.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Parse `+HH:MM` / `-HH:MM`.
fn parse_offset(text: &str) -> Option<Offset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 25 || m > 59 {
        return None;
    }
    Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

/// The local time of the UTC time `utc` (RFC 3339) at `offset` (`+HH:MM`), as
/// `YYYY-MM-DDTHH:MM:SS+HH:MM`; None when either does not parse.
pub fn local_time(utc: &str, offset: &str) -> Option<String> {
    let t: Timestamp = utc.parse().ok()?;
    let offset = parse_offset(offset)?;
    Some(format!(
        "{}{}",
        offset.to_datetime(t).strftime("%Y-%m-%dT%H:%M:%S"),
        offset_text(offset)
    ))
}

/// Lowercase hex SHA-256 of a configuration file's bytes, as `run-start` records it.
pub fn config_sha256(bytes: &[u8]) -> String {
    crate::journal::line_hash(bytes)
}

impl RunStart {
    /// A run of `command` on this host now, with the configuration's digest when there is
    /// one.
    pub fn here(command: &str, config_sha256: Option<String>) -> Self {
        let (time_zone, utc_offset) = local_zone();
        Self {
            command: command.to_string(),
            config_sha256,
            events_version: EVENTS_VERSION,
            host: host_name(),
            mkclone_version: MKCLONE_VERSION.to_string(),
            time_zone,
            utc_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_use_the_recorded_offset() {
        let utc = "2026-05-01T23:30:05.123Z";
        assert_eq!(
            local_time(utc, "+02:00").as_deref(),
            Some("2026-05-02T01:30:05+02:00")
        );
        assert_eq!(
            local_time(utc, "-05:30").as_deref(),
            Some("2026-05-01T18:00:05-05:30")
        );
        assert_eq!(
            local_time(utc, "+00:00").as_deref(),
            Some("2026-05-01T23:30:05+00:00")
        );
        for bad in ["", "02:00", "+2:00", "+02", "+99:00", "+02:60"] {
            assert_eq!(local_time(utc, bad), None, "{bad}");
        }
        assert_eq!(local_time("yesterday", "+02:00"), None);
    }

    #[test]
    fn a_run_names_this_host() {
        let r = RunStart::here("clone", Some("ab".repeat(32)));
        assert!(!r.host.is_empty());
        assert_eq!(r.events_version, EVENTS_VERSION);
        assert_eq!(r.mkclone_version, MKCLONE_VERSION);
        assert!(parse_offset(&r.utc_offset).is_some(), "{}", r.utc_offset);
        assert_eq!(
            offset_text(Offset::from_seconds(-3600 * 9 - 1800).unwrap()),
            "-09:30"
        );
    }
}
