//! Build progress for people and for machines: a live view on a terminal
//! (one line per running step, its elapsed time and last line of output),
//! BuildKit's numbered plain lines when there is no terminal (CI), JSON
//! lines with one event per step state change, or nothing.
//!
//! Steps of parallel stages report from several threads: every method takes
//! `&self`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `tty` when standard error is a terminal, else `plain`.
    Auto,
    /// A live view, redrawn in place.
    Tty,
    /// Numbered lines, as BuildKit's `--progress=plain` prints them.
    Plain,
    /// Nothing.
    Quiet,
    /// One JSON object per line per step state change.
    Json,
}

/// A step being reported (its number in the build, from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepId(pub usize);

enum Sink {
    Tty(MultiProgress),
    Plain(Box<dyn Write + Send>),
    Json(Box<dyn Write + Send>),
    Quiet,
}

struct Step {
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

struct Inner {
    sink: Sink,
    steps: Vec<Step>,
}

/// The reporter of one build.
pub struct Progress {
    inner: Mutex<Inner>,
    start: Instant,
    /// Quiet on a terminal's stderr (`build -q`): lint warnings still
    /// show, as docker's do; a quiet reporter of the API or serve shows
    /// nothing.
    lint_to_stderr: bool,
}

#[derive(Serialize)]
struct Event<'a> {
    step: usize,
    name: &'a str,
    status: &'a str,
    /// Seconds since the build started (a timeline's x).
    at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<&'a str>,
}

impl Progress {
    /// A reporter writing to standard error in `mode`.
    pub fn stderr(mode: Mode) -> Progress {
        let mode = match mode {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            m => m,
        };
        let sink = match mode {
            Mode::Tty => Sink::Tty(MultiProgress::with_draw_target(
                ProgressDrawTarget::stderr_with_hz(10),
            )),
            Mode::Plain | Mode::Auto => Sink::Plain(Box::new(std::io::stderr())),
            Mode::Json => Sink::Json(Box::new(std::io::stderr())),
            Mode::Quiet => Sink::Quiet,
        };
        Progress {
            lint_to_stderr: true,
            ..Progress::with_sink(sink)
        }
    }

    /// A plain-line reporter writing to `out` (tests, embedding).
    pub fn plain(out: Box<dyn Write + Send>) -> Progress {
        Progress::with_sink(Sink::Plain(out))
    }

    /// A JSON-lines reporter writing to `out` (`kiln serve`'s job events).
    pub fn json(out: Box<dyn Write + Send>) -> Progress {
        Progress::with_sink(Sink::Json(out))
    }

    /// A reporter that shows nothing.
    pub fn quiet() -> Progress {
        Progress::with_sink(Sink::Quiet)
    }

    fn with_sink(sink: Sink) -> Progress {
        Progress {
            inner: Mutex::new(Inner {
                sink,
                steps: Vec::new(),
            }),
            start: Instant::now(),
            lint_to_stderr: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while reporting leaves nothing half-updated that matters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A step starts (`name` as `[stage 2/5] RUN ...`).
    pub fn start(&self, name: &str) -> StepId {
        let since = self.start.elapsed().as_secs_f64();
        let mut inner = self.lock();
        let id = inner.steps.len() + 1;
        let bar = match &inner.sink {
            Sink::Tty(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(running_style());
                bar.set_prefix(format!("#{id} {}", truncate(name, 72)));
                bar.enable_steady_tick(Duration::from_millis(100));
                Some(bar)
            }
            _ => None,
        };
        inner.steps.push(Step {
            name: name.to_string(),
            started: Instant::now(),
            bar,
        });
        match &mut inner.sink {
            Sink::Plain(w) => {
                let _ = writeln!(w, "#{id} {name}");
            }
            Sink::Json(w) => json(w, (id, since), name, "started", None, None, None),
            _ => {}
        }
        StepId(id)
    }

    /// The step's result came from the cache.
    pub fn cached(&self, id: StepId) {
        self.finish(id, "CACHED", None, None);
    }

    /// The step finished.
    pub fn done(&self, id: StepId) {
        self.finish(id, "DONE", None, None);
    }

    /// The step failed with `error`; its whole output is in `log`.
    pub fn failed(&self, id: StepId, error: &str, log: Option<&str>) {
        self.finish(id, "ERROR", Some(error), log);
    }

    fn finish(&self, id: StepId, status: &str, error: Option<&str>, log: Option<&str>) {
        let mut inner = self.lock();
        let Some(step) = inner.steps.get(id.0 - 1) else {
            return;
        };
        let elapsed = step.started.elapsed().as_secs_f64();
        let name = step.name.clone();
        if let Some(bar) = &step.bar {
            let mark = match status {
                "CACHED" => "CACHED".to_string(),
                "ERROR" => "ERROR".to_string(),
                _ => format!("{elapsed:.1}s"),
            };
            bar.set_style(finished_style());
            bar.set_message(mark);
            bar.finish();
        }
        match &mut inner.sink {
            Sink::Plain(w) => {
                let _ = match (status, error) {
                    ("CACHED", _) => writeln!(w, "#{} CACHED", id.0),
                    (_, Some(e)) => writeln!(w, "#{} ERROR: {e}", id.0),
                    _ => writeln!(w, "#{} DONE {elapsed:.1}s", id.0),
                };
            }
            Sink::Json(w) => {
                let status = status.to_lowercase();
                let at = self.start.elapsed().as_secs_f64();
                json(w, (id.0, at), &name, &status, Some(elapsed), error, log);
            }
            _ => {}
        }
    }

    /// A line the step printed.
    pub fn log(&self, id: StepId, line: &str) {
        let mut inner = self.lock();
        let since = self.start.elapsed().as_secs_f64();
        let Inner { sink, steps } = &mut *inner;
        match sink {
            Sink::Plain(w) => {
                let _ = writeln!(w, "#{} {since:.3} {line}", id.0);
            }
            Sink::Tty(_) => {
                if let Some(bar) = steps.get(id.0 - 1).and_then(|s| s.bar.as_ref()) {
                    bar.set_message(line.trim_end().to_string());
                }
            }
            _ => {}
        }
    }

    /// Why the step missed the cache (`--explain`).
    pub fn explain(&self, id: StepId, why: &str) {
        let mut inner = self.lock();
        match &mut inner.sink {
            Sink::Plain(w) => {
                let _ = writeln!(w, "#{} cache miss: {why}", id.0);
            }
            Sink::Tty(multi) => {
                let _ = multi.println(format!("#{} cache miss: {why}", id.0));
            }
            Sink::Json(w) => {
                let line = serde_json::json!({ "step": id.0, "explain": why });
                let _ = writeln!(w, "{line}");
            }
            Sink::Quiet => {}
        }
    }

    /// The build cache was exported: `steps` step keys, `bytes` of layers,
    /// to `to` (a note for people; a structured event in JSON).
    pub fn exported(&self, steps: usize, bytes: u64, to: &str) {
        let text = format!("exported {steps} cached steps to {to}");
        let mut inner = self.lock();
        match &mut inner.sink {
            Sink::Json(w) => {
                let line = serde_json::json!({
                    "note": text,
                    "exported": { "steps": steps, "bytes": bytes, "to": to },
                });
                let _ = writeln!(w, "{line}");
            }
            _ => {
                drop(inner);
                self.note(&text);
            }
        }
    }

    /// The Dockerfile's lint findings (`Rule: detail (line N)`), as buildx
    /// lists them: shown in quiet mode too, as a build's warnings are.
    pub fn lint(&self, findings: &[String]) {
        if findings.is_empty() {
            return;
        }
        let n = findings.len();
        let mut text = format!("{n} warning{} found:", if n == 1 { "" } else { "s" });
        for f in findings {
            text.push_str("\n - ");
            text.push_str(f);
        }
        let mut inner = self.lock();
        match &mut inner.sink {
            Sink::Quiet if self.lint_to_stderr => eprintln!("{text}"),
            Sink::Quiet => {}
            Sink::Json(w) => {
                let line = serde_json::json!({ "lint": findings });
                let _ = writeln!(w, "{line}");
            }
            _ => {
                drop(inner);
                self.warn(&text);
            }
        }
    }

    /// A warning about the build as a whole.
    pub fn warn(&self, text: &str) {
        self.line("warning", text);
    }

    /// A note about the build as a whole (what a cache import brought).
    pub fn note(&self, text: &str) {
        self.line("note", text);
    }

    fn line(&self, kind: &str, text: &str) {
        let mut inner = self.lock();
        match &mut inner.sink {
            Sink::Plain(w) => {
                let _ = writeln!(w, "{text}");
            }
            Sink::Tty(multi) => {
                let _ = multi.println(text);
            }
            Sink::Json(w) => {
                let line = serde_json::json!({ kind: text });
                let _ = writeln!(w, "{line}");
            }
            Sink::Quiet => {}
        }
    }
}

/// Blob transfers of a pull or push: a byte bar per blob on a terminal,
/// one line per finished blob otherwise.
pub struct Transfers {
    multi: Option<MultiProgress>,
    out: Mutex<Option<Box<dyn Write + Send>>>,
    verb: &'static str,
    /// Docker's JSON progress messages instead of lines (the API's pull
    /// and push).
    docker: bool,
}

/// One blob being transferred.
pub struct Transfer<'a> {
    parent: &'a Transfers,
    bar: Option<ProgressBar>,
    name: String,
    size: u64,
    /// Bytes so far (Docker's progress messages say them).
    sent: std::sync::atomic::AtomicU64,
}

/// How many bytes pass between two of Docker's progress messages.
const DOCKER_STEP: u64 = 1 << 20;

impl Transfers {
    /// A reporter on standard error; `verb` is "pulled" or "pushed".
    pub fn stderr(mode: Mode, verb: &'static str) -> Transfers {
        let mode = match mode {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            m => m,
        };
        Transfers {
            multi: (mode == Mode::Tty)
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10))),
            out: Mutex::new(
                matches!(mode, Mode::Plain | Mode::Json)
                    .then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>),
            ),
            verb,
            docker: false,
        }
    }

    /// A reporter writing Docker's JSON progress messages to `out`, one
    /// per line (`Downloading`/`Pushing` with `progressDetail`, `Pull
    /// complete`/`Pushed`, `Already exists`), as docker's API streams a
    /// pull or push; `verb` is "pulled" or "pushed".
    pub fn docker(out: Box<dyn Write + Send>, verb: &'static str) -> Transfers {
        Transfers {
            multi: None,
            out: Mutex::new(Some(out)),
            verb,
            docker: true,
        }
    }

    fn docker_message(&self, id: &str, status: &str, detail: serde_json::Value) {
        let mut line =
            serde_json::json!({ "status": status, "progressDetail": detail, "id": id }).to_string();
        line.push('\n');
        // One write a message: a client may read each chunk as one.
        if let Some(w) = self.out.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = w.write_all(line.as_bytes());
        }
    }

    fn line(&self, text: &str) {
        if let Some(multi) = &self.multi {
            let _ = multi.println(text);
        } else if let Some(w) = self.out.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = writeln!(w, "{text}");
        }
    }

    /// A blob the other side already has.
    pub fn exists(&self, digest: &impl std::fmt::Display) {
        if self.docker {
            let status = match self.verb {
                "pushed" => "Layer already exists",
                _ => "Already exists",
            };
            return self.docker_message(&short(digest), status, serde_json::json!({}));
        }
        self.line(&format!("{}: already exists", short(digest)));
    }

    /// A blob of `size` bytes starts.
    pub fn start(&self, digest: &impl std::fmt::Display, size: u64) -> Transfer<'_> {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(short(digest));
            bar
        });
        let t = Transfer {
            parent: self,
            bar,
            name: short(digest),
            size,
            sent: std::sync::atomic::AtomicU64::new(0),
        };
        if self.docker {
            self.docker_message(
                &t.name,
                t.doing(),
                serde_json::json!({ "current": 0, "total": size }),
            );
        }
        t
    }
}

impl Transfer<'_> {
    /// `n` more bytes went.
    pub fn add(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        let before = self.sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        // One message a MiB: a client redraws its bar from them.
        if self.parent.docker && (before + n) / DOCKER_STEP != before / DOCKER_STEP {
            self.parent.docker_message(
                &self.name,
                self.doing(),
                serde_json::json!({ "current": before + n, "total": self.size }),
            );
        }
    }

    fn doing(&self) -> &'static str {
        match self.parent.verb {
            "pushed" => "Pushing",
            _ => "Downloading",
        }
    }

    /// The blob is done.
    pub fn done(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.parent.docker {
            let status = match self.parent.verb {
                "pushed" => "Pushed",
                _ => "Pull complete",
            };
            return self
                .parent
                .docker_message(&self.name, status, serde_json::json!({}));
        }
        self.parent.line(&format!(
            "{}: {} {:.1} MB",
            self.name,
            self.parent.verb,
            self.size as f64 / 1e6
        ));
    }
}

/// The first 12 hex digits of a digest, as docker shows layers.
fn short(digest: &impl std::fmt::Display) -> String {
    let text = digest.to_string();
    let hex = text.split_once(':').map_or(text.as_str(), |(_, h)| h);
    hex.chars().take(12).collect()
}

fn json(
    w: &mut Box<dyn Write + Send>,
    (step, at): (usize, f64),
    name: &str,
    status: &str,
    duration: Option<f64>,
    error: Option<&str>,
    log: Option<&str>,
) {
    let event = Event {
        step,
        name,
        status,
        at: (at * 1000.0).round() / 1000.0,
        duration: duration.map(|d| (d * 1000.0).round() / 1000.0),
        error,
        log,
    };
    if let Ok(line) = serde_json::to_string(&event) {
        let _ = writeln!(w, "{line}");
    }
}

/// `text` cut to `max` characters (a live line must not wrap).
fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\t'], " ");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:>4} {wide_msg:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn finished_style() -> ProgressStyle {
    ProgressStyle::with_template("=> {prefix} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<StdMutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn plain_lines_are_buildkits() {
        let buf = Buf::default();
        let p = Progress::plain(Box::new(buf.clone()));
        let a = p.start("[1/2] FROM busybox");
        p.done(a);
        let b = p.start("[2/2] RUN echo hi");
        p.log(b, "hi");
        p.failed(b, "exit code: 3", None);
        let c = p.start("[1/1] COPY . /");
        p.cached(c);
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 [1/2] FROM busybox");
        assert!(lines[1].starts_with("#1 DONE ") && lines[1].ends_with('s'));
        assert_eq!(lines[2], "#2 [2/2] RUN echo hi");
        assert!(lines[3].starts_with("#2 0.") && lines[3].ends_with(" hi"));
        assert_eq!(lines[4], "#2 ERROR: exit code: 3");
        assert_eq!(lines[5..], ["#3 [1/1] COPY . /", "#3 CACHED"]);
    }

    #[test]
    fn json_has_one_event_per_state_change() {
        let buf = Buf::default();
        let p = Progress::with_sink(Sink::Json(Box::new(buf.clone())));
        let a = p.start("[1/1] RUN true");
        p.log(a, "not an event");
        p.failed(a, "boom", Some("/logs/1.log"));
        let events: Vec<serde_json::Value> = buf
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["status"], "started");
        assert_eq!(events[0]["step"], 1);
        assert_eq!(events[1]["status"], "error");
        assert_eq!(events[1]["error"], "boom");
        assert_eq!(events[1]["log"], "/logs/1.log");
        assert!(events[1]["duration"].is_number());
    }
}
