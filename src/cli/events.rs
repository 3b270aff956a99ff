//! `kiln events`: the store's event journal, as `docker events` shows it.

use super::{Error, open_store};
use kiln::events;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show events since this time (Unix seconds, RFC 3339, or a
    /// duration ago such as `10m`).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (same forms); without it, follow until ^C.
    #[arg(long)]
    until: Option<String>,
    /// `KEY=VALUE`: type, event, container, image, network, volume, label.
    #[arg(short = 'f', long = "filter")]
    filters: Vec<String>,
    /// `json` (or `{{json .}}`): one JSON object per line, docker's shape.
    #[arg(long)]
    format: Option<String>,
}

/// Prints past events (with `--since`) and follows new ones.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let now = events::now();
    let time = |flag: &str, t: &Option<String>| -> Result<Option<i128>, Error> {
        t.as_deref()
            .map(|t| {
                events::parse_time(t, now).ok_or_else(|| {
                    Error::Usage(format!(
                        "invalid --{flag} {t:?}: Unix seconds, RFC 3339, or a duration such as 10m"
                    ))
                })
            })
            .transpose()
    };
    let (since, until) = (time("since", &args.since)?, time("until", &args.until)?);
    let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &args.filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            Error::Usage(format!("bad format of filter {f:?} (expected name=value)"))
        })?;
        if !events::FILTERS.contains(&k) {
            return Err(Error::Usage(format!("invalid filter '{k}'")));
        }
        filters
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    let json = match args.format.as_deref() {
        None => false,
        Some("json" | "{{json .}}") => true,
        Some(other) => {
            return Err(Error::Usage(format!(
                "--format {other:?}: only json is supported"
            )));
        }
    };
    let wanted = |e: &events::Event| {
        since.is_none_or(|s| e.time_nano >= s)
            && until.is_none_or(|u| e.time_nano <= u)
            && events::matches(e, &filters)
    };
    let mut out = std::io::stdout().lock();
    let mut print = |e: &events::Event| -> std::io::Result<()> {
        match json {
            true => writeln!(out, "{}", e.docker_json())?,
            false => writeln!(out, "{}", line(e))?,
        }
        out.flush()
    };
    let (past, mut follow) = events::read_then_follow(store.root());
    drop(store);
    // Past events only when a time is given, as docker's.
    if since.is_some() || until.is_some() {
        for e in past.iter().filter(|e| wanted(e)) {
            print(e)?;
        }
    }
    loop {
        let over = until.is_some_and(|u| events::now() > u);
        for e in follow.more().iter().filter(|e| wanted(e)) {
            print(e)?;
        }
        if over {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Docker's line: the time (RFC 3339, nanoseconds, local), the type, the
/// action, the id, the attributes sorted by key.
fn line(e: &events::Event) -> String {
    let secs = e.time_nano.div_euclid(1_000_000_000) as i64;
    let nanos = e.time_nano.rem_euclid(1_000_000_000) as u32;
    let time = chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%dT%H:%M:%S%.9f%:z")
                .to_string()
        })
        .unwrap_or_default();
    let attributes = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{time} {} {} {} ({attributes})",
        e.kind.as_str(),
        e.action,
        e.id
    )
}
