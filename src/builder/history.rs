//! The `created_by` text of each history entry, as BuildKit's Dockerfile
//! frontend writes it (`docker history` shows it): words expanded, Go's
//! `%q`/`%v` renderings of lists, maps and the healthcheck struct kept.

use crate::dockerfile::instructions::{Copy, Healthcheck, Instruction};
use crate::dockerfile::source::go_quote;
use crate::image::ImageConfig;
use std::time::Duration;

/// The text for config instruction `instr`, applied to give `after`;
/// `expand` expands a word as the instruction saw it.
pub(super) fn config_entry(
    instr: &Instruction,
    after: &ImageConfig,
    expand: &dyn Fn(&str) -> Option<String>,
    original: &str,
) -> String {
    let c = &after.config;
    let x = |w: &str| expand(w).unwrap_or_else(|| w.to_string());
    match instr {
        Instruction::Env(pairs) | Instruction::Label(pairs) => {
            let kw = if matches!(instr, Instruction::Env(_)) {
                "ENV"
            } else {
                "LABEL"
            };
            let mut text = kw.to_string();
            for kv in pairs {
                text.push_str(&format!(" {}={}", x(&kv.key), x(&kv.value)));
            }
            text
        }
        Instruction::Arg(decls) => {
            let words: Vec<String> = decls
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={}", d.name, x(v)),
                    None => d.name.clone(),
                })
                .collect();
            format!("ARG {}", words.join(" "))
        }
        Instruction::Maintainer(m) => format!("MAINTAINER {m}"),
        Instruction::Expose(words) => {
            // BuildKit's `EXPOSE %v` of the ports it parsed, in the order
            // of the (sorted) words: `EXPOSE [443/tcp 80/tcp]`.
            let expanded: Vec<String> = words
                .iter()
                .flat_map(|w| {
                    x(w).split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect();
            let ports = crate::image::exposed(&expanded).unwrap_or_default();
            format!("EXPOSE [{}]", ports.join(" "))
        }
        Instruction::Volume(v) => {
            let v: Vec<String> = v.iter().map(|w| x(w)).collect();
            format!("VOLUME [{}]", v.join(" "))
        }
        Instruction::User(u) => format!("USER {}", x(u)),
        Instruction::StopSignal(s) => format!("STOPSIGNAL {}", x(s)),
        Instruction::Cmd(_) => format!("CMD {}", go_list(c.cmd.as_deref().unwrap_or_default())),
        Instruction::Entrypoint(_) => format!(
            "ENTRYPOINT {}",
            go_list(c.entrypoint.as_deref().unwrap_or_default())
        ),
        Instruction::Shell(s) => format!("SHELL [{}]", s.join(" ")),
        Instruction::Healthcheck(h) => healthcheck(h),
        _ => original.to_string(),
    }
}

/// RUN's text: every build arg declared in scope, in the order first
/// declared, with its value (an ENV of the same name wins; none is empty),
/// as `|N K=V ...`, then the command (BuildKit's runCommandString).
pub(super) fn run_entry(
    argv: &[String],
    declared: &[String],
    args: &[(String, String)],
    env: &[String],
) -> String {
    let shown: Vec<String> = declared
        .iter()
        .filter(|k| !super::is_proxy_arg(k))
        .map(|k| {
            let from_env = env
                .iter()
                .rev()
                .find_map(|e| e.split_once('=').filter(|(n, _)| n == k).map(|(_, v)| v));
            let from_args = args
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str());
            format!("{k}={}", from_env.or(from_args).unwrap_or(""))
        })
        .collect();
    let mut words = Vec::new();
    if !shown.is_empty() {
        words.push(format!("|{}", shown.len()));
        words.extend(shown);
    }
    words.extend(argv.iter().cloned());
    format!("RUN {} # buildkit", words.join(" "))
}

/// COPY's and ADD's text: the keyword, `--parents`, `--chown=`, `--chmod=`,
/// the sources and the destination as expanded.
pub(super) fn copy_entry(add: bool, c: &Copy, expand: &dyn Fn(&str) -> Option<String>) -> String {
    let mut text = if add { "ADD" } else { "COPY" }.to_string();
    // Current BuildKit writes these flags (expanded) into the history.
    if c.parents {
        text.push_str(" --parents");
    }
    if let Some(chown) = &c.chown {
        text.push_str(&format!(
            " --chown={}",
            expand(chown).unwrap_or_else(|| chown.clone())
        ));
    }
    if let Some(chmod) = &c.chmod {
        text.push_str(&format!(
            " --chmod={}",
            expand(chmod).unwrap_or_else(|| chmod.clone())
        ));
    }
    for s in c.sources.iter().chain([&c.dest]) {
        text.push(' ');
        text.push_str(&expand(s).unwrap_or_else(|| s.clone()));
    }
    text + " # buildkit"
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%+v` of a HealthcheckConfig, as current BuildKit writes it:
/// `{Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s
/// StartInterval:0s Retries:2}`.
fn healthcheck(h: &Healthcheck) -> String {
    let none = (vec!["NONE".to_string()], None, None, None, None, None);
    let (test, interval, timeout, start, start_interval, retries) = match h {
        Healthcheck::None => none,
        Healthcheck::Cmd {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match command {
                crate::dockerfile::instructions::Command::Exec(v) => {
                    std::iter::once("CMD".to_string())
                        .chain(v.iter().cloned())
                        .collect()
                }
                crate::dockerfile::instructions::Command::Shell(s) => {
                    vec!["CMD-SHELL".to_string(), s.clone()]
                }
            };
            (
                test,
                *interval,
                *timeout,
                *start_period,
                *start_interval,
                *retries,
            )
        }
    };
    let d = |d: Option<Duration>| go_duration(d.unwrap_or_default());
    format!(
        "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        test.join(" "),
        d(interval),
        d(timeout),
        d(start),
        d(start_interval),
        retries.unwrap_or(0)
    )
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `2h0m0s`, `500ms`.
fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let frac = |v: u128, unit: u128| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 1_000_000));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s = frac(ns % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_renderings() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_list(&["sh".into(), "-c".into()]), r#"["sh" "-c"]"#);
        assert_eq!(
            run_entry(
                &["/bin/sh".into(), "-c".into(), "echo $V".into()],
                &["V".into(), "E".into(), "N".into(), "http_proxy".into()],
                &[
                    ("V".into(), "1".into()),
                    ("E".into(), "x".into()),
                    ("http_proxy".into(), "p".into())
                ],
                &["E=y".into()]
            ),
            "RUN |3 V=1 E=y N= /bin/sh -c echo $V # buildkit"
        );
    }
}
