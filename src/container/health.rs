//! Healthchecks, run by the monitor through the exec path: the image's
//! HEALTHCHECK or `--health-*` flags, every interval while the container
//! runs; `starting` until the first result, `unhealthy` after `retries`
//! failures in a row (failures during the start period do not count),
//! `healthy` after a success; the last five results kept in the state, as
//! `docker inspect` shows them.

use super::Container;
use super::state::{self, State};
use crate::image::config::Healthcheck;
use crate::sandbox::{self, process};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A container's healthcheck, resolved (durations in nanoseconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The command run in the container.
    pub argv: Vec<String>,
    /// Between checks.
    pub interval: Duration,
    /// One check's limit.
    pub timeout: Duration,
    /// Failures in this time after a start do not count.
    pub start_period: Duration,
    /// Failures in a row that make it unhealthy.
    pub retries: u32,
}

/// Docker's defaults: 30 s interval and timeout, no start period, 3 retries.
const DEFAULT: Duration = Duration::from_secs(30);

/// The check `hc` (the image's, with `--health-*` flags over it) describes;
/// None for none or `NONE`.
pub fn resolve(hc: Option<&Healthcheck>) -> Option<Check> {
    let hc = hc?;
    let argv = match hc.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        _ => return None,
    };
    let nanos = |v: Option<i64>, default: Duration| match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    };
    Some(Check {
        argv,
        interval: nanos(hc.interval, DEFAULT),
        timeout: nanos(hc.timeout, DEFAULT),
        start_period: nanos(hc.start_period, Duration::ZERO),
        retries: hc.retries.filter(|&r| r > 0).map_or(3, |r| r as u32),
    })
}

pub use super::state::{Health, Probe};

/// Runs one check in `c`; its exit code and output.
fn probe(c: &Container, check: &Check, pid1: u32) -> (i32, String) {
    let mut spec = c.record.spec.clone();
    spec.argv = check.argv.clone();
    spec.tty = false;
    let Ok((mut reader, writer)) = std::io::pipe() else {
        return (-1, "pipe failed".into());
    };
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let runner = std::thread::spawn(move || {
        sandbox::container::exec(
            &spec,
            pid1,
            sandbox::Io {
                output: Some(std::os::fd::OwnedFd::from(writer)),
                started: Some(tx),
                ..Default::default()
            },
        )
    });
    let reading = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut reader).take(4096).read_to_end(&mut out);
        // Drain the rest so the check never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        String::from_utf8_lossy(&out).into_owned()
    });
    let started = rx
        .recv_timeout(check.timeout)
        .ok()
        .and_then(process::record);
    let deadline = Instant::now() + check.timeout;
    while !runner.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let timed_out = !runner.is_finished();
    if timed_out && let Some(p) = started {
        let _ = p.signal(9);
    }
    let result = runner.join();
    let output = reading.join().unwrap_or_default();
    match (timed_out, result) {
        (true, _) => (
            -1,
            format!("Health check exceeded timeout ({:?})", check.timeout),
        ),
        (false, Ok(Ok(code))) => (code, output),
        (false, Ok(Err(e))) => (-1, e.to_string()),
        (false, Err(_)) => (-1, "the check panicked".into()),
    }
}

/// Records a result: the streak, the status, the last five.
fn record(s: &mut State, check: &Check, since_start: Duration, p: Probe) {
    let h = s.health.get_or_insert_with(|| Health {
        status: "starting".into(),
        ..Default::default()
    });
    if p.exit_code == 0 {
        h.failing_streak = 0;
        h.status = "healthy".into();
    } else if since_start >= check.start_period || h.status != "starting" {
        h.failing_streak += 1;
        if h.failing_streak >= check.retries {
            h.status = "unhealthy".into();
        }
    }
    h.log.push(p);
    let extra = h.log.len().saturating_sub(5);
    h.log.drain(..extra);
}

/// Checks `c` every interval until `stop` is set (its run ended).
pub fn watch(c: Container, check: Check, init: u32, stop: Arc<AtomicBool>) {
    let started = Instant::now();
    let Some(pid1) = (0..100).find_map(|_| {
        sandbox::container::container_pid1(init).or_else(|| {
            std::thread::sleep(Duration::from_millis(10));
            None
        })
    }) else {
        return;
    };
    loop {
        let until = Instant::now() + check.interval;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let start = state::now();
        let (exit_code, output) = probe(&c, &check, pid1);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let p = Probe {
            start,
            end: state::now(),
            exit_code,
            output,
        };
        let since = started.elapsed();
        let _ = state::update(&c.dir, |s| record(s, &check, since, p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_resolve_and_results_make_the_status() {
        let hc = Healthcheck {
            test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
            interval: Some(1_000_000_000),
            retries: Some(2),
            ..Default::default()
        };
        let check = resolve(Some(&hc)).unwrap();
        assert_eq!(check.argv, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(
            (check.interval, check.timeout, check.retries),
            (Duration::from_secs(1), DEFAULT, 2)
        );
        assert!(
            resolve(Some(&Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }))
            .is_none()
        );
        let mut s = State::default();
        let fail = Probe {
            exit_code: 1,
            ..Default::default()
        };
        let late = Duration::from_secs(5);
        record(&mut s, &check, late, fail.clone());
        assert_eq!(s.health.as_ref().unwrap().status, "starting");
        record(&mut s, &check, late, fail.clone());
        assert_eq!(s.health.as_ref().unwrap().status, "unhealthy");
        for _ in 0..5 {
            record(&mut s, &check, late, fail.clone());
        }
        assert_eq!(s.health.as_ref().unwrap().log.len(), 5);
        record(&mut s, &check, late, Probe::default());
        let h = s.health.unwrap();
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
    }
}
