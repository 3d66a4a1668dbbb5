//! Processes as the files name them: whether a writer's pid may still run, and how this
//! process names itself as a lock's holder.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
