//! Step logs: every RUN's whole output is kept on disk, under
//! `<store>/logs/<build>/<step>.log`, and its last lines are kept in memory
//! for the failure report. The ten newest builds' logs are kept.

use crate::progress::{Progress, StepId};
use crate::store::Store;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Lines of output a failure report shows.
pub const TAIL_LINES: usize = 20;
/// Builds whose logs are kept.
const KEEP_BUILDS: usize = 10;
/// Longest line passed to progress (the log file has it whole).
const MAX_LINE: usize = 4096;

/// The output of a step that failed.
#[derive(Debug, Clone)]
pub struct StepLog {
    /// Its whole output.
    pub path: PathBuf,
    /// Its last lines.
    pub tail: Vec<String>,
}

/// The log directory of one build.
pub(super) struct StepLogs {
    dir: PathBuf,
}

/// One step's log file.
pub(super) struct LogFile {
    path: PathBuf,
}

impl StepLogs {
    /// A new directory for this build's logs (made when the first step
    /// logs), after removing all but the newest builds' logs.
    pub fn new(store: &Store) -> StepLogs {
        let root = crate::store::layout::logs(store.root());
        if let Ok(entries) = fs::read_dir(&root) {
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            let excess = names.len().saturating_sub(KEEP_BUILDS - 1);
            for old in &names[..excess] {
                let _ = fs::remove_dir_all(old);
            }
        }
        // Sortable by time; the pid keeps concurrent builds apart.
        let name = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"),
            std::process::id()
        );
        StepLogs {
            dir: root.join(name),
        }
    }

    /// The log of step `n`.
    pub fn open(&self, n: usize) -> LogFile {
        LogFile {
            path: self.dir.join(format!("{n}.log")),
        }
    }
}

impl LogFile {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `reader` (the step's stdout and stderr) to the file and, line
    /// by line, to `progress`, until it closes; returns the last lines.
    pub fn relay(
        &self,
        mut reader: impl Read,
        progress: &Progress,
        id: Option<StepId>,
    ) -> Vec<String> {
        let mut file = self
            .path
            .parent()
            .and_then(|d| fs::create_dir_all(d).ok())
            .and_then(|_| {
                // A step's output may hold what its secrets printed.
                std::os::unix::fs::OpenOptionsExt::mode(
                    File::options().write(true).create(true).truncate(true),
                    0o600,
                )
                .open(&self.path)
                .ok()
            });
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES + 1);
        let mut line: Vec<u8> = Vec::new();
        let mut emit = |line: &mut Vec<u8>| {
            if line.is_empty() {
                return;
            }
            let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]).into_owned();
            if let Some(id) = id {
                progress.log(id, &text);
            }
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
            line.clear();
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if let Some(f) = &mut file
                && f.write_all(&buf[..n]).is_err()
            {
                file = None;
            }
            for &b in &buf[..n] {
                // apt and curl redraw with \r: each redraw is a line here.
                if b == b'\n' || b == b'\r' {
                    emit(&mut line);
                } else {
                    line.push(b);
                }
            }
        }
        emit(&mut line);
        tail.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_keeps_the_whole_output_and_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("kiln-log-{}", std::process::id()));
        let log = LogFile {
            path: dir.join("3.log"),
        };
        let text: String =
            (1..=30).map(|i| format!("line {i}\n")).collect::<String>() + "50%\r100%";
        let tail = log.relay(text.as_bytes(), &Progress::quiet(), None);
        assert_eq!(fs::read_to_string(log.path()).unwrap(), text);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 13");
        assert_eq!(tail[TAIL_LINES - 2..], ["50%", "100%"]);
        fs::remove_dir_all(dir).unwrap();
    }
}
