//! Processes by pid, safely: a pid is only signalled when its start time
//! (from `/proc/PID/stat`) and the machine's boot id are the ones
//! recorded with it, so a pid the kernel gave to another process since is
//! never touched. And the detaching a container's monitor needs: a new
//! session, a subreaper; and this process's open-file limit.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A process as recorded: its pid and start time (clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    /// The pid.
    pub pid: u32,
    /// Its start time, field 22 of `/proc/PID/stat`.
    pub start: u64,
}

/// The start time of `pid` (clock ticks since boot), if it runs.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is rest's first; start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when `pid` exists and has not ended (a zombie has: it only waits
/// to be reaped).
pub fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may hold spaces and parentheses: state follows the
    // last ')'.
    !stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|s| s == "Z" || s == "X")
}

/// `pid` with its start time now; None when it does not run.
pub fn record(pid: u32) -> Option<Recorded> {
    Some(Recorded {
        pid,
        start: start_time(pid)?,
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Recorded {
    /// True when this very process still runs (not a zombie, not a new
    /// process with its pid).
    pub fn alive(&self) -> bool {
        running(self.pid) && start_time(self.pid) == Some(self.start)
    }

    /// Sends `signal` (a number) if the process is still this one; false
    /// when it is gone.
    pub fn signal(&self, signal: i32) -> std::io::Result<bool> {
        if !self.alive() {
            return Ok(false);
        }
        let sig = Signal::try_from(signal).map_err(std::io::Error::from)?;
        match kill(Pid::from_raw(self.pid as i32), sig) {
            Ok(()) => Ok(true),
            Err(nix::Error::ESRCH) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A process as `top` and `stats` see it.
#[derive(Clone, Debug, Default)]
pub struct Info {
    /// Its pid (the host's).
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// Its real uid.
    pub uid: u32,
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time, in clock ticks since boot.
    pub start: u64,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Its command line (or its name in brackets).
    pub cmd: String,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t as u64)
}

/// The machine's memory in bytes (`MemTotal` of /proc/meminfo; 0 when
/// unreadable).
pub fn memory_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

/// Every process in the PID namespace `of` is in (`of` included).
pub fn in_pid_namespace(of: u32) -> Vec<Info> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{of}/ns/pid")) else {
        return Vec::new();
    };
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64);
    let mut out: Vec<Info> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
        })
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let close = stat.rfind(')')?;
            let name = stat[stat.find('(')? + 1..close].to_string();
            let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = match cmdline.is_empty() {
                true => format!("[{name}]"),
                false => String::from_utf8_lossy(&cmdline)
                    .trim_end_matches('\0')
                    .replace('\0', " "),
            };
            Some(Info {
                pid,
                ppid: num(1) as u32,
                uid,
                // utime and stime are fields 14 and 15 (11, 12 after state).
                cpu_ticks: num(11) + num(12),
                start: num(19),
                rss: num(21) * page,
                cmd,
            })
        })
        .collect();
    out.sort_by_key(|i| i.pid);
    out
}

/// A signal's number from its name (`SIGTERM`, `TERM`, `term`) or number.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok().map(|s| s as i32);
    }
    let upper = name.to_ascii_uppercase();
    let full = match upper.starts_with("SIG") {
        true => upper,
        false => format!("SIG{upper}"),
    };
    full.parse::<Signal>().ok().map(|s| s as i32)
}

/// Makes `cmd` start in a session of its own (no controlling terminal: a
/// closed terminal does not reach it).
pub fn new_session(cmd: &mut Command) {
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Makes this process the reaper of its orphaned descendants.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// This process's open-file limit (soft, hard) as it started, before
/// [`raise_open_files`].
static STARTED_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises this process's soft open-file limit to its hard one, as dockerd
/// and every Go program do: a few hundred idle connections to a published
/// port must not leave kiln unable to accept the next. Containers get the
/// limit kiln started with back ([`started_open_files`]).
pub fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    // A kiln started by kiln (a container's monitor) was given the limit
    // its starter began with.
    let given = std::env::var(NOFILE_ENV).ok().and_then(|v| {
        let (s, h) = v.split_once(':')?;
        Some((s.parse().ok()?, h.parse().ok()?))
    });
    let _ = STARTED_NOFILE.set(given.unwrap_or((soft, hard)));
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The environment variable that hands the limit kiln started with to a
/// kiln it starts ("SOFT:HARD").
pub const NOFILE_ENV: &str = "KILN_STARTED_NOFILE";

/// `(NOFILE_ENV, "SOFT:HARD")` for a kiln this one starts, when this one
/// raised its limit.
pub fn open_files_env() -> Option<(&'static str, String)> {
    started_open_files().map(|(s, h)| (NOFILE_ENV, format!("{s}:{h}")))
}

/// The open-file limit this process started with, when
/// [`raise_open_files`] changed it.
pub fn started_open_files() -> Option<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit};
    let started = *STARTED_NOFILE.get()?;
    let now = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    (now != started).then_some(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_recorded_and_alive() {
        let me = record(std::process::id()).unwrap();
        assert!(me.alive());
        let other = Recorded {
            start: me.start + 1,
            ..me
        };
        assert!(!other.alive(), "another start time is another process");
        assert!(!other.signal(0).unwrap());
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("NOPE"), None);
        assert_eq!(boot_id().len(), 36);
    }
}
