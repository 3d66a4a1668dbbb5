//! Processes as the files name them: whether a writer's pid may still run, and how this
//! process names itself as a lock's holder.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// False only when we are sure the process `pid` is gone: judged by `/proc/<pid>` in this
/// host's process namespace; without `/proc`, every process may be alive. This process is
/// always alive.
pub fn pid_may_be_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// False when we are sure the writer of a file last written at `written`, whose name gives
/// its pid, is gone: no process has that pid ([`pid_may_be_alive`]), or the process that
/// has it now started after the file was last written (2 s of slack for the clocks'
/// granularity), so it cannot be the writer: after a crash and a restart, pids are given
/// again, and a leftover temporary file (a card's keys in the clear, a bundle's second
/// name) was kept as long as its pid was someone else's. Without a time, or without the
/// process's start time, only the pid counts.
pub fn writer_may_be_alive(pid: u32, written: Option<SystemTime>) -> bool {
    if !pid_may_be_alive(pid) {
        return false;
    }
    if pid == std::process::id() {
        return true;
    }
    match (written, process_start(pid)) {
        (Some(written), Some(started)) => started <= written + Duration::from_secs(2),
        _ => true,
    }
}

/// When the process `pid` started: the boot time (`btime` of /proc/stat) plus its start
/// in clock ticks after boot (field 22 of /proc/<pid>/stat).
fn process_start(pid: u32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: fields follow the last.
    // After it come the fields from the 3rd (state) on; the start time is the 22nd.
    let ticks: u64 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|hz| u64::try_from(hz).ok())
        .filter(|hz| *hz > 0)?;
    let after_boot =
        Duration::from_secs(ticks / hz) + Duration::from_nanos(ticks % hz * 1_000_000_000 / hz);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(boot) + after_boot)
}

/// This process as a lock holder names itself: the program's file name and the first
/// argument that is not an option (mkclone's subcommand), e.g. "mkclone clone". Never the
/// other arguments.
pub fn holder_command() -> String {
    let mut args = std::env::args_os();
    let clean = |s: &OsStr| -> String {
        String::from_utf8_lossy(s.as_bytes())
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect()
    };
    let program = args
        .next()
        .map(|a| {
            let p = Path::new(&a);
            clean(p.file_name().unwrap_or(p.as_os_str()))
        })
        .unwrap_or_default();
    match args.find(|a| !a.as_bytes().starts_with(b"-")) {
        Some(sub) => format!("{program} {}", clean(&sub)),
        None => program,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::DEAD_PID;

    #[test]
    fn this_process_and_its_parent_may_be_alive_a_pid_beyond_the_limit_is_not() {
        assert!(pid_may_be_alive(std::process::id()));
        assert!(pid_may_be_alive(std::os::unix::process::parent_id()));
        if Path::new("/proc/self").exists() {
            assert!(!pid_may_be_alive(DEAD_PID));
        }
    }

    /// A pid used again by a process that started after the file was written is not the
    /// writer; one that started before may be.
    #[test]
    fn a_process_started_after_the_file_was_written_is_not_its_writer() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = process_start(pid).expect("the start time of a process");
        let now = SystemTime::now();
        assert!(
            started <= now + Duration::from_secs(2),
            "{started:?} {now:?}"
        );
        let an_hour_ago = now - Duration::from_secs(3600);
        assert!(!writer_may_be_alive(pid, Some(an_hour_ago)));
        assert!(writer_may_be_alive(pid, Some(now)));
        assert!(writer_may_be_alive(pid, None));
        // This process is alive whatever the time.
        assert!(writer_may_be_alive(std::process::id(), Some(an_hour_ago)));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!writer_may_be_alive(pid, Some(now)) || pid_may_be_alive(pid));
    }

    #[test]
    fn holder_command_is_the_program_and_the_first_non_option_argument_only() {
        let cmd = holder_command();
        let exe = std::env::current_exe().unwrap();
        assert!(
            cmd.starts_with(&*exe.file_name().unwrap().to_string_lossy()),
            "{cmd}"
        );
        assert!(!cmd.contains('/'), "no directory: {cmd}");
        assert!(cmd.split(' ').count() <= 2, "{cmd}");
    }
}
