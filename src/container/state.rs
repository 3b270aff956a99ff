//! A container's `state.json`: what it is doing, rewritten atomically
//! under the container's state lock, and read truthfully: a container
//! recorded as running whose monitor is gone (killed, or the machine
//! rebooted) is reported exited.

use crate::sandbox::process::{self, Recorded};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Waiting to start again (restart policy).
    Restarting,
    /// It ended (or its watcher died with it: see [`State::truthful`]).
    Exited,
}

impl Status {
    /// The word docker uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }
}

/// The state file's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Where it is.
    pub status: Status,
    /// The container's init (its stage 1, in the host's PID namespace).
    pub init: Option<Recorded>,
    /// The process that watches it (a monitor, or a foreground `kiln run`).
    pub monitor: Option<Recorded>,
    /// The boot the processes belong to.
    pub boot_id: String,
    /// The exit code of the last run.
    pub exit_code: Option<i32>,
    /// Why it could not start, when it could not.
    pub error: Option<String>,
    /// When it last started (RFC 3339).
    pub started_at: Option<String>,
    /// When it last ended.
    pub finished_at: Option<String>,
    /// Restarts by its restart policy.
    pub restart_count: u32,
    /// A user stopped it (`kiln stop`, `kill`, `rm -f`): no restart policy
    /// brings it back, and `unless-stopped` remembers it.
    pub stopped_by_user: bool,
    /// Its healthcheck's results, when it has one.
    #[serde(default)]
    pub health: Option<Health>,
    /// Its processes are frozen (`kiln pause`); it still runs.
    #[serde(default)]
    pub paused: bool,
}

/// The time now as state records it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Holds a container's state lock while it lives (a read-modify-write
/// of its state by the monitor and by commands never interleaves).
pub struct Locked {
    _file: File,
}

/// Takes the state lock of the container in `dir`.
pub fn lock(dir: &Path) -> std::io::Result<Locked> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("state.lock"))?;
    file.lock()?;
    Ok(Locked { _file: file })
}

/// The state as recorded (a new container's when there is none).
pub fn read(dir: &Path) -> State {
    std::fs::read(path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes `state` atomically (a reader sees the old or the new file).
pub fn write(dir: &Path, state: &State) -> std::io::Result<()> {
    let tmp = dir.join(".state.json.tmp");
    crate::store::write_private(&tmp, &serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(tmp, path(dir))
}

/// Changes the state under its lock.
pub fn update<T>(dir: &Path, change: impl FnOnce(&mut State) -> T) -> std::io::Result<T> {
    let _lock = lock(dir)?;
    let mut state = read(dir);
    let out = change(&mut state);
    write(dir, &state)?;
    Ok(out)
}

impl State {
    /// The state as it truly is: running or restarting with no live monitor
    /// (or from another boot) is dead, its end unrecorded.
    pub fn truthful(mut self) -> State {
        if matches!(self.status, Status::Running | Status::Restarting) {
            let same_boot = self.boot_id == process::boot_id();
            let watched = same_boot && self.monitor.is_some_and(|m| m.alive());
            if !watched {
                self.status = Status::Exited;
                self.exit_code.get_or_insert(137);
                self.error
                    .get_or_insert_with(|| "its monitor died with it".into());
                self.init = None;
            }
        }
        self
    }

    /// True while its process runs (or waits to run again).
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Restarting)
    }

    /// docker's state word: its status's, or `paused`.
    pub fn docker_state(&self) -> &'static str {
        match self.paused && self.status == Status::Running {
            true => "paused",
            false => self.status.as_str(),
        }
    }

    /// docker's STATUS words: `Up 5 seconds (healthy)`, `Exited (0) 2
    /// minutes ago`, `Created`.
    pub fn docker_status(&self) -> String {
        let st = self;
        match st.status {
            Status::Running => {
                let health = match st.health.as_ref().map(|h| h.status.as_str()) {
                    _ if st.paused => " (Paused)",
                    Some("starting") => " (health: starting)",
                    Some("healthy") => " (healthy)",
                    Some("unhealthy") => " (unhealthy)",
                    _ => "",
                };
                format!("Up {}{health}", up_for(st.started_at.as_deref()))
            }
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                st.exit_code.unwrap_or(0),
                up_for(st.finished_at.as_deref())
            ),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                st.exit_code.unwrap_or(0),
                up_for(st.finished_at.as_deref())
            ),
            Status::Created => "Created".into(),
        }
    }
}

/// Docker's duration words (`units.HumanDuration`): `Up ...`, `... ago`.
pub fn up_for(since: Option<&str>) -> String {
    let Some(t) = since.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "Less than a second".into();
    };
    let secs = (chrono::Utc::now().timestamp() - t.timestamp()).max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// The health part of a container's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last five results.
    pub log: Vec<Probe>,
}

/// One check's result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    /// When it started.
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code (-1: it timed out or could not run).
    pub exit_code: i32,
    /// What it printed (at most 4 KiB).
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_container_without_its_monitor_is_reported_exited() {
        let me = process::record(std::process::id()).unwrap();
        let running = State {
            status: Status::Running,
            monitor: Some(me),
            boot_id: process::boot_id(),
            ..Default::default()
        };
        assert_eq!(running.clone().truthful().status, Status::Running);
        let other_boot = State {
            boot_id: "another".into(),
            ..running.clone()
        };
        assert_eq!(other_boot.truthful().status, Status::Exited);
        let dead_monitor = State {
            monitor: Some(Recorded {
                start: me.start + 1,
                ..me
            }),
            ..running
        };
        let s = dead_monitor.truthful();
        assert_eq!((s.status, s.exit_code), (Status::Exited, Some(137)));
    }

    #[test]
    fn updates_are_atomic_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        update(dir.path(), |s| s.restart_count = 2).unwrap();
        assert_eq!(read(dir.path()).restart_count, 2);
        assert!(!dir.path().join(".state.json.tmp").exists());
    }
}
