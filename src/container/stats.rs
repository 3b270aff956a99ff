//! A container's resource use, sampled: one reading for `kiln stats` and
//! the API's `/stats` alike, and docker's CPU percentage between two.

use super::Container;
use crate::sandbox::process::Info;

/// One reading of a container's CPU time, the machine's, and its
/// processes.
pub struct Sample {
    /// When it was read.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The container's processes' CPU time, in nanoseconds.
    pub cpu_ns: u64,
    /// The machine's CPU time (`/proc/stat`), in nanoseconds.
    pub system_ns: u64,
    /// Its processes.
    pub procs: Vec<Info>,
}

/// The machine's CPU time in nanoseconds (`/proc/stat`'s first line).
fn system_cpu_ns(hz: u64) -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .unwrap_or(0)
        * (1_000_000_000 / hz.max(1))
}

impl Sample {
    /// Reads `c` now.
    pub fn take(c: &Container) -> Sample {
        let hz = crate::sandbox::process::ticks_per_second().max(1);
        let procs = c.processes();
        Sample {
            at: chrono::Utc::now(),
            cpu_ns: procs.iter().map(|p| p.cpu_ticks).sum::<u64>() * (1_000_000_000 / hz),
            system_ns: system_cpu_ns(hz),
            procs,
        }
    }

    /// Its processes' resident memory, in bytes.
    pub fn memory(&self) -> u64 {
        self.procs.iter().map(|p| p.rss).sum()
    }

    /// The CPU it used since `before`, as docker's CLI computes it: its
    /// share of the machine's time times the CPUs (100% is one CPU).
    pub fn cpu_percent(&self, before: &Sample) -> f64 {
        let cpu = self.cpu_ns.saturating_sub(before.cpu_ns) as f64;
        let system = self.system_ns.saturating_sub(before.system_ns) as f64;
        match system > 0.0 {
            true => cpu / system * online_cpus() as f64 * 100.0,
            false => 0.0,
        }
    }
}

/// The CPUs kiln can run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What its memory is measured against: its limit, or the machine's.
pub fn memory_limit(c: &Container) -> u64 {
    c.record
        .limits
        .memory
        .unwrap_or_else(crate::sandbox::process::memory_total)
}
