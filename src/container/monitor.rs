//! The per-container monitor (kiln re-executed as `kiln __monitor ID`, in
//! a session of its own, a subreaper): it holds the container's lock,
//! starts the container with the sandbox, writes its stdout and stderr to
//! the log, records every start and end in its state, applies the restart
//! policy with docker's growing back-off, and exits when the container is
//! finally stopped. It tells the command that started it how the first
//! start went on its standard output: `started`, or `error CODE MESSAGE`.
//! A foreground `kiln run` does the same for its own container, without a
//! monitor ([`run_foreground`]).

use super::attach;
use super::logs::{self, Stream};
use super::state::{self, Status};
use super::{Container, ContainerError, Restart};
use crate::sandbox::{self, ContainerDirs, ContainerLock, SandboxError, process};
use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Why `kiln start` (or `run -d`) could not start a container.
#[derive(Debug)]
pub struct StartError {
    /// docker's exit code (125 set-up, 126/127 the command).
    pub code: i32,
    /// What happened.
    pub message: String,
}

/// Starts a monitor for `c` and waits until the container runs (or could
/// not start).
pub fn spawn(store_root: &Path, c: &Container) -> Result<(), StartError> {
    let fail = |message: String| StartError { code: 125, message };
    let exe =
        std::fs::read_link("/proc/self/exe").map_err(|e| fail(format!("finding kiln: {e}")))?;
    let log = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true),
        0o600,
    )
    .open(c.dir.join("monitor.log"))
    .map_err(|e| fail(format!("creating the monitor's log: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(store_root)
        .arg("__monitor")
        .arg(&c.record.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    if let Some((key, value)) = process::open_files_env() {
        cmd.env(key, value);
    }
    process::new_session(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("starting the monitor: {e}")))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    // The monitor lives on in its session; it is reaped by init when it
    // ends (this process is gone by then), or here if it already did.
    let _ = child.try_wait();
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "started" => Ok(()),
        Some(("error", rest)) => {
            let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
            Err(StartError {
                code: code.parse().unwrap_or(125),
                message: message.to_string(),
            })
        }
        _ => {
            let mut why = String::new();
            let _ = std::fs::File::open(c.dir.join("monitor.log"))
                .and_then(|mut f| f.read_to_string(&mut why));
            Err(fail(format!(
                "the container's monitor exited before it started: {}",
                why.trim()
            )))
        }
    }
}

/// Copies a pipe (or a pty's master) into the log as `stream` until every
/// writer closed it; with `whole_lines`, a line is written once it ends (a
/// tty's prompt is written as it comes).
fn pump(mut reader: impl Read, stream: Stream, log: Arc<Mutex<logs::Writer>>, whole_lines: bool) {
    let mut buf = vec![0u8; 32 << 10];
    // Lines are written whole: a piece without its newline waits for the
    // rest (up to the buffer's size).
    let mut pending: Vec<u8> = Vec::new();
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                let cut = match pending.iter().rposition(|&b| b == b'\n') {
                    _ if !whole_lines => pending.len(),
                    Some(i) => i + 1,
                    None if pending.len() >= buf.len() => pending.len(),
                    None => continue,
                };
                let mut w = log.lock().unwrap_or_else(|e| e.into_inner());
                let _ = w.write(stream, &pending[..cut]);
                pending.drain(..cut);
            }
        }
    }
    if !pending.is_empty() {
        let _ = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(stream, &pending);
    }
}

/// Records each start of the container: running, with its init, and
/// `starting` health when it has a healthcheck (before anyone is told it
/// runs).
fn record_start(dir: &Path, pid: u32, checked: bool) {
    let _ = state::update(dir, |s| {
        s.status = Status::Running;
        s.init = process::record(pid);
        s.started_at = Some(state::now());
        // A new run is not frozen, whatever the last one was.
        s.paused = false;
        s.exit_code = None;
        s.error = None;
        s.health = checked.then(|| super::health::Health {
            status: "starting".into(),
            ..Default::default()
        });
    });
}

/// Waits (on its own thread) for the container's process to start: then
/// records the start, starts the healthcheck for this run and says
/// `started` on `ready`. Returns the sender the sandbox tells, the thread
/// (which gives `ready` back when the process never started), and the
/// flag that ends the healthcheck.
fn watch_start(
    c: &Container,
    ready: Option<std::io::Stdout>,
) -> (
    mpsc::Sender<u32>,
    std::thread::JoinHandle<Option<std::io::Stdout>>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let (tx, rx) = mpsc::channel::<u32>();
    let dir = c.dir.clone();
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = c
        .record
        .healthcheck
        .clone()
        .map(|check| (c.clone(), check, ended.clone()));
    let mut ready = ready;
    let who = c.clone();
    let watcher = std::thread::spawn(move || {
        if let Ok(pid) = rx.recv() {
            record_start(&dir, pid, health.is_some());
            who.event("start", []);
            // The healthcheck runs beside the container, for this run.
            if let Some((c, check, ended)) = health {
                std::thread::spawn(move || super::health::watch(c, check, pid, ended));
            }
            if let Some(out) = ready.as_mut() {
                let _ = writeln!(out, "started");
                let _ = out.flush();
            }
            ready = None;
        }
        ready
    });
    (tx, watcher, ended)
}

/// Runs the container once, its output into the log, its input from
/// attached clients (`input`); its exit code.
fn run_once(
    c: &Container,
    log: &Arc<Mutex<logs::Writer>>,
    input: &attach::Shared,
    stdin: Option<std::io::PipeReader>,
    ready: &mut Option<std::io::Stdout>,
) -> Result<i32, SandboxError> {
    let setup = |e: std::io::Error| SandboxError::Setup(format!("log pipes: {e}"));
    let (out_r, out_w) = std::io::pipe().map_err(setup)?;
    let (err_r, err_w) = std::io::pipe().map_err(setup)?;
    let pumps = [(out_r, Stream::Stdout), (err_r, Stream::Stderr)].map(|(r, s)| {
        let log = log.clone();
        std::thread::spawn(move || pump(r, s, log, true))
    });
    let tty = c.record.spec.tty;
    let stdin = match stdin {
        Some(r) => sandbox::Stdin::Fd(r.into()),
        None => sandbox::Stdin::Null,
    };
    // A tty's output is the master's: read into the log by a thread the
    // run waits for once it ends.
    let tty_pump = Arc::new(Mutex::new(None));
    let console = tty.then(|| {
        let (log, input, slot) = (log.clone(), input.clone(), tty_pump.clone());
        let open_stdin = c.record.open_stdin;
        sandbox::Console(Box::new(move |master: OwnedFd| {
            let writer = open_stdin
                .then(|| master.try_clone().ok().map(std::fs::File::from))
                .flatten();
            attach::set(&input, writer, master.try_clone().ok());
            let reader = std::fs::File::from(master);
            let pump = std::thread::spawn(move || pump(reader, Stream::Stdout, log, false));
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(pump);
        }))
    });
    let userns = super::networks::userns(c).map_err(|e| SandboxError::Prestart(Box::new(e)))?;
    let (tx, watcher, ended) = watch_start(c, ready.take());
    let joined = Arc::new(Mutex::new(None));
    let result = sandbox::run(
        &c.record.spec,
        &c.record.limits,
        &c.record.id,
        sandbox::Io {
            stdin,
            console,
            output: Some(OwnedFd::from(out_w)),
            stderr: Some(OwnedFd::from(err_w)),
            started: Some(tx),
            userns,
            prestart: super::networks::prestart(c, &joined),
        },
    );
    // The run is over: off its networks.
    drop(joined.lock().map(|mut j| j.take()));
    ended.store(true, std::sync::atomic::Ordering::SeqCst);
    // Not started: the readiness pipe is still ours, to say why.
    *ready = watcher.join().unwrap_or(None);
    attach::clear(input);
    let tty_pump = tty_pump.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = tty_pump {
        let _ = p.join();
    }
    for p in pumps {
        let _ = p.join();
    }
    result
}

/// Docker's restart back-off: 100 ms, doubled each time, at most a
/// minute; a run that lasted 10 s starts it over.
fn backoff(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(d) if ran < Duration::from_secs(10) => (d * 2).min(Duration::from_secs(60)),
        _ => Duration::from_millis(100),
    }
}

/// `kiln __monitor ID`: watches the container until it is finally stopped.
pub fn main(store_root: &Path, id: &str) -> i32 {
    let mut ready = Some(std::io::stdout());
    let say = |ready: &mut Option<std::io::Stdout>, code: i32, message: &str| {
        if let Some(out) = ready.as_mut() {
            let _ = writeln!(out, "error {code} {}", message.replace('\n', " "));
            let _ = out.flush();
        }
        *ready = None;
    };
    // The id names a directory: 64 hex digits and nothing else.
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        say(&mut ready, 125, &format!("{id:?} is not a container id"));
        return 125;
    }
    let Ok(dir) = crate::store::layout::container(store_root, id) else {
        say(&mut ready, 125, &format!("{id:?} is not a container id"));
        return 125;
    };
    let Some(mut c) = super::load(&dir) else {
        say(&mut ready, 125, &format!("no container {id}"));
        return 125;
    };
    let _lock = match ContainerLock::take(&dir) {
        Ok(l) => l,
        Err(_) => {
            say(
                &mut ready,
                125,
                &format!("container {} is already running", c.record.name),
            );
            return 125;
        }
    };
    // Orphans of the container (a double-forked daemon) are reaped here.
    let _ = process::become_subreaper();
    let me = process::record(std::process::id());
    let _ = state::update(&dir, |s| {
        s.monitor = me;
        s.boot_id = process::boot_id();
        s.stopped_by_user = false;
    });
    if let Err(e) = super::ports::publish(&c) {
        let _ = state::update(&dir, |s| {
            s.status = Status::Exited;
            s.exit_code = Some(125);
            s.error = Some(e.to_string());
        });
        say(&mut ready, 125, &e.to_string());
        return 125;
    }
    let log = match logs::Writer::open(&dir, c.record.log_max_size, c.record.log_max_files) {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            say(&mut ready, 125, &format!("opening the log: {e}"));
            return 125;
        }
    };
    // Attached clients reach the container's input (and a tty's size)
    // through this monitor, whichever run is current. Each run's stdin
    // pipe is made before anyone can attach, so no early input is lost (a
    // tty's, sent before its pty exists, is kept for it: attach.rs).
    let input = attach::Shared::default();
    let pipe_stdin = c.record.open_stdin && !c.record.spec.tty;
    let stdin_pipe = || -> Option<std::io::PipeReader> {
        let (r, w) = std::io::pipe().ok()?;
        attach::set(&input, Some(std::fs::File::from(OwnedFd::from(w))), None);
        Some(r)
    };
    let mut stdin = pipe_stdin.then(stdin_pipe).flatten();
    if (c.record.open_stdin || c.record.spec.tty)
        && let Err(e) = attach::serve(&dir, input.clone(), c.record.stdin_once, c.record.spec.tty)
    {
        say(
            &mut ready,
            125,
            &format!("listening for attached clients: {e}"),
        );
        return 125;
    }
    let mut delay = None;
    let mut last_code;
    loop {
        let started = Instant::now();
        if stdin.is_none() && pipe_stdin {
            stdin = stdin_pipe();
        }
        let result = run_once(&c, &log, &input, stdin.take(), &mut ready);
        let (code, error) = match &result {
            Ok(code) => (*code, None),
            Err(e) => (e.exit_code(), Some(e.to_string())),
        };
        // Told before the state says so: a `stop` waiting for the state
        // records its own event after this one, docker's order.
        c.event("die", [("exitCode".into(), code.to_string())]);
        let st = state::update(&dir, |s| {
            s.status = Status::Exited;
            s.exit_code = Some(code);
            s.error = error.clone();
            s.finished_at = Some(state::now());
            s.init = None;
            s.clone()
        })
        .unwrap_or_default();
        last_code = code;
        // Said after the state is written: the command told of the failure
        // finds the container exited.
        if let Some(message) = &error {
            say(&mut ready, code, message);
        }
        // `docker update` may have changed the policy and the limits
        // while it ran: the next run follows the record as it is now.
        if let Some(now) = super::load(&dir) {
            c.record.restart = now.record.restart;
            c.record.limits = now.record.limits;
        }
        let again = !st.stopped_by_user
            && match c.record.restart {
                Restart::No => false,
                Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| st.restart_count < m),
                Restart::Always | Restart::UnlessStopped => true,
            };
        if !again {
            break;
        }
        let wait = backoff(delay, started.elapsed());
        delay = Some(wait);
        let _ = state::update(&dir, |s| s.status = Status::Restarting);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if state::read(&dir).stopped_by_user {
                let _ = state::update(&dir, |s| s.status = Status::Exited);
                return code;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = state::update(&dir, |s| s.restart_count += 1);
    }
    if c.record.auto_remove {
        // Its exit code outlives it for a moment: a client waiting for
        // its removal (`docker run --rm`) reads it there.
        let _ = std::fs::write(super::exit_file(&dir), last_code.to_string());
        drop(_lock);
        sandbox::reclaim(&c.record.id);
        c.auto_removed();
    }
    0
}

/// Runs `c` in the foreground, this process its watcher: standard streams
/// passed through, its state kept as a monitor keeps it. Returns the exit
/// code; removes the container after with `--rm`.
pub fn run_foreground(
    c: &Container,
    dirs: ContainerDirs,
    stdin: bool,
) -> Result<i32, SandboxError> {
    super::ports::publish(c).map_err(|e| SandboxError::Prestart(Box::new(e)))?;
    let me = process::record(std::process::id());
    let _ = state::update(&c.dir, |s| {
        s.monitor = me;
        s.boot_id = process::boot_id();
    });
    let userns = super::networks::userns(c).map_err(|e| SandboxError::Prestart(Box::new(e)))?;
    let (tx, watcher, ended) = watch_start(c, None);
    let joined = Arc::new(Mutex::new(None));
    let result = sandbox::run(
        &c.record.spec,
        &c.record.limits,
        &c.record.id,
        sandbox::Io {
            stdin: match stdin {
                true => sandbox::Stdin::Inherit,
                false => sandbox::Stdin::Null,
            },
            console: None,
            output: None,
            stderr: None,
            started: Some(tx),
            userns,
            prestart: super::networks::prestart(c, &joined),
        },
    );
    drop(joined.lock().map(|mut j| j.take()));
    ended.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watcher.join();
    let (code, error) = match &result {
        Ok(code) => (*code, None),
        Err(e) => (e.exit_code(), Some(e.to_string())),
    };
    c.event("die", [("exitCode".into(), code.to_string())]);
    let _ = state::update(&c.dir, |s| {
        s.status = Status::Exited;
        s.exit_code = Some(code);
        s.error = error;
        s.finished_at = Some(state::now());
        s.init = None;
    });
    drop(dirs);
    if c.record.auto_remove {
        c.auto_removed();
    }
    result
}

/// Waits for `c` to stop running; its exit code (`kiln wait`).
pub fn wait(c: &Container) -> Result<i32, ContainerError> {
    let first = c.state();
    loop {
        let st = c.state();
        // An exit ends the wait, as in docker: between two runs of its
        // restart policy too, and one seen only by its time (the restart
        // came between two looks).
        let exited = matches!(st.status, Status::Exited | Status::Restarting)
            || st.status == Status::Running
                && first.status == Status::Running
                && st.finished_at != first.finished_at;
        if exited {
            return Ok(st.exit_code.unwrap_or(0));
        }
        // A `--rm` container being removed: its code was left beside it.
        if let Ok(text) = std::fs::read_to_string(super::exit_file(&c.dir))
            && let Ok(code) = text.trim().parse()
        {
            return Ok(code);
        }
        if !c.dir.exists() {
            return Err(ContainerError::NotFound(c.record.name.clone()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_starts_over_after_a_long_run() {
        let short = Duration::from_secs(1);
        let a = backoff(None, short);
        let b = backoff(Some(a), short);
        let c = backoff(Some(b), short);
        assert_eq!(
            (a, b, c),
            (
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(400)
            )
        );
        assert_eq!(
            backoff(Some(Duration::from_secs(50)), short),
            Duration::from_secs(60)
        );
        assert_eq!(
            backoff(Some(c), Duration::from_secs(11)),
            Duration::from_millis(100)
        );
    }
}
