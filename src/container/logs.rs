//! A container's log, in the k8s-file format Podman and CRI runtimes
//! write (`TIME STREAM F|P TEXT`, one line each: `F` a full line, `P` a
//! part of a longer one): stdout and stderr kept apart, readable after the
//! monitor is gone, capped in size with rotation (`ctr.log`, `ctr.log.1`,
//! ...).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The longest piece written as one line; longer lines are split into
/// `P` parts.
const PIECE: usize = 16 << 10;

/// Where the log is in a container's directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("ctr.log")
}

/// Appends lines to a container's log, rotating it at `max_size` bytes
/// into at most `max_files` files (the current one included).
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_files: usize,
}

impl Writer {
    /// Opens (appends to) the log in `dir`.
    pub fn open(dir: &Path, max_size: Option<u64>, max_files: usize) -> std::io::Result<Writer> {
        let path = path(dir);
        // Only the store's owner reads what a container printed.
        let file = File::options()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path,
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Writes `data` from `stream` (whole lines, or a last piece without
    /// its newline, written as a part).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let time = super::state::now();
        let mut rest = data;
        while !rest.is_empty() {
            let (line, full, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i <= PIECE => (&rest[..i], true, &rest[i + 1..]),
                _ if rest.len() > PIECE => (&rest[..PIECE], false, &rest[PIECE..]),
                _ => (rest, false, &rest[rest.len()..]),
            };
            let mut out = Vec::with_capacity(line.len() + 48);
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.as_str().as_bytes());
            out.extend_from_slice(if full { b" F " } else { b" P " });
            out.extend_from_slice(line);
            out.push(b'\n');
            self.file.write_all(&out)?;
            self.size += out.len() as u64;
            rest = next;
            if self.max_size.is_some_and(|m| self.size >= m) {
                self.rotate()?;
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(numbered(self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = File::options()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When it was written (RFC 3339, nanoseconds).
    pub time: String,
    /// Its stream.
    pub stream: Stream,
    /// Its text, with its newline when it ended one.
    pub text: Vec<u8>,
}

fn parse(line: &[u8]) -> Option<Entry> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = parts.next()? == b"F";
    let mut text = parts.next().unwrap_or_default().to_vec();
    if full {
        text.push(b'\n');
    }
    Some(Entry { time, stream, text })
}

/// The files of the log in `dir`, oldest first.
fn files(dir: &Path) -> Vec<PathBuf> {
    let current = path(dir);
    let mut rotated: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("ctr.log.")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(current))
        .collect()
}

/// Every entry of the log in `dir`, oldest first.
pub fn read(dir: &Path) -> Vec<Entry> {
    files(dir)
        .into_iter()
        .filter_map(|p| File::open(p).ok())
        .flat_map(|f| {
            BufReader::new(f)
                .split(b'\n')
                .map_while(Result::ok)
                .filter_map(|l| parse(&l))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A log followed through an open handle: what is written after it was
/// opened is read even after the file is removed (a `--rm` container's
/// last lines).
#[derive(Debug)]
pub struct Tail {
    file: File,
    partial: Vec<u8>,
}

impl Tail {
    /// Follows the current log file of the container in `dir` from its
    /// start; None while it does not exist yet.
    pub fn open(dir: &Path) -> Option<Tail> {
        Some(Tail {
            file: File::open(path(dir)).ok()?,
            partial: Vec::new(),
        })
    }

    /// Follows the current log file from its end: only what is written
    /// from now on.
    pub fn open_at_end(dir: &Path) -> Option<Tail> {
        use std::io::{Seek, SeekFrom};
        let mut t = Tail::open(dir)?;
        t.file.seek(SeekFrom::End(0)).ok()?;
        Some(t)
    }

    /// The whole entries written since the last call.
    pub fn more(&mut self) -> Vec<Entry> {
        use std::io::Read;
        let _ = (&self.file).read_to_end(&mut self.partial);
        let whole = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let entries = self.partial[..whole]
            .split(|&b| b == b'\n')
            .filter_map(parse)
            .collect();
        self.partial.drain(..whole);
        entries
    }
}

/// Every entry of the log in `dir`, oldest first, and the offset in the
/// current file after them: `logs -f` reads on from there, so that nothing
/// written between the two reads is lost or shown twice.
pub fn read_to_offset(dir: &Path) -> (Vec<Entry>, u64) {
    let current = path(dir);
    let mut entries: Vec<Entry> = files(dir)
        .into_iter()
        .filter(|p| *p != current)
        .filter_map(|p| File::open(p).ok())
        .flat_map(|f| {
            BufReader::new(f)
                .split(b'\n')
                .map_while(Result::ok)
                .filter_map(|l| parse(&l))
                .collect::<Vec<_>>()
        })
        .collect();
    let (more, offset) = read_from(dir, 0);
    entries.extend(more);
    (entries, offset)
}

/// Entries of the current log file from byte `offset` on, and the offset
/// after them (`logs -f` reads on from there).
pub fn read_from(dir: &Path, offset: u64) -> (Vec<Entry>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path(dir)) else {
        return (Vec::new(), offset);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Rotated since: start again from the new file's beginning.
    let offset = if len < offset { 0 } else { offset };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    // Only whole lines: one being written waits for the next read.
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let entries = bytes[..whole]
        .split(|&b| b == b'\n')
        .filter_map(parse)
        .collect();
    (entries, offset + whole as u64)
}

/// A `--since`/`--until` value (RFC 3339, or a time before `now`:
/// `10s`, `5m`, `2h`, bare seconds) as the RFC 3339 time log entries are
/// compared with.
pub fn time_bound(text: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    }
    let bad = || format!("invalid time {text:?}: use RFC 3339 or 10s, 5m, 2h");
    let (n, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    Ok((now - chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_rfc3339_or_before_now() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            time_bound("2026-01-01T00:00:00+01:00", now).unwrap(),
            "2025-12-31T23:00:00.000000000Z"
        );
        assert_eq!(
            time_bound("5m", now).unwrap(),
            "2026-01-02T02:59:05.000000000Z"
        );
        assert_eq!(
            time_bound("2h", now).unwrap(),
            "2026-01-02T01:04:05.000000000Z"
        );
        assert_eq!(
            time_bound("10", now).unwrap(),
            "2026-01-02T03:03:55.000000000Z"
        );
        assert_eq!(
            time_bound("3d", now).unwrap_err(),
            "invalid time \"3d\": use RFC 3339 or 10s, 5m, 2h"
        );
    }

    #[test]
    fn lines_keep_their_stream_and_the_log_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(dir.path(), Some(200), 3).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\n").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"no newline").unwrap();
        let got = read(dir.path());
        let texts: Vec<(Stream, &[u8])> =
            got.iter().map(|e| (e.stream, e.text.as_slice())).collect();
        assert_eq!(
            texts,
            [
                (Stream::Stdout, &b"one\n"[..]),
                (Stream::Stdout, b"two\n"),
                (Stream::Stderr, b"oops\n"),
                (Stream::Stdout, b"no newline"),
            ]
        );
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        // Three files at most; the newest lines are kept.
        assert!(dir.path().join("ctr.log.2").exists());
        assert!(!dir.path().join("ctr.log.3").exists());
        let all = read(dir.path());
        assert_eq!(all.last().unwrap().text, b"line 19\n");
        let (tail, _) = read_from(dir.path(), 0);
        assert!(tail.len() < 20);
    }
}
