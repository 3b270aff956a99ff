//! The operator's views beyond the overview, server-rendered (readable
//! without a script): a target's recent jobs as a chart of wall times
//! coloured by outcome, and a job's page with its steps on a timeline,
//! each miss's explanation and the failed step's error and log.

use super::Service;
use super::db::{DbError, Job};

/// Escapes text for HTML.
pub(super) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A job's wall time in seconds, once it ran to an end.
fn wall(job: &Job) -> Option<f64> {
    let at = |t: &Option<String>| {
        chrono::DateTime::parse_from_rfc3339(t.as_deref()?)
            .ok()
            .map(|t| t.timestamp_millis())
    };
    let (start, end) = (at(&job.started_at)?, at(&job.finished_at)?);
    Some((end - start).max(0) as f64 / 1000.0)
}

/// The chart of `jobs` (newest first, as listed): a bar per job that ran,
/// oldest on the left, its height the wall time, its class the outcome;
/// each bar's title says the job, its time and its hits.
pub(super) fn history_svg(jobs: &[Job]) -> String {
    let ran: Vec<(&Job, f64)> = jobs
        .iter()
        .rev()
        .filter_map(|j| Some((j, wall(j)?)))
        .collect();
    let (w, h, bar) = (160.0, 28.0, 8.0);
    let longest = ran.iter().map(|(_, s)| *s).fold(0.001, f64::max);
    let mut bars = String::new();
    for (i, (j, secs)) in ran.iter().enumerate() {
        let height = (secs / longest * (h - 2.0)).max(1.0);
        let total = j.hits + j.misses;
        let rate = match total {
            0 => "-".to_string(),
            n => format!("{}%", j.hits * 100 / n),
        };
        bars.push_str(&format!(
            "<rect class=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\"><title>#{} {} {secs:.1}s, hits {rate}</title></rect>",
            esc(&j.status),
            i as f64 * bar,
            h - height,
            bar - 1.0,
            j.id,
            esc(&j.status),
        ));
    }
    format!(
        "<svg class=\"history\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"wall time of the last jobs\">{bars}</svg>"
    )
}

/// A step of a job, as its events tell it.
#[derive(Debug, Default, PartialEq)]
struct Step {
    n: u64,
    name: String,
    status: String,
    /// Seconds since the build started.
    at: Option<f64>,
    duration: Option<f64>,
    explain: Vec<String>,
    error: Option<String>,
    log: Option<String>,
}

/// The steps of a job's events (the last phase's: a warm check's steps
/// give way to the build's).
fn steps(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["phase"].is_string() {
            steps.clear();
            continue;
        }
        let Some(n) = v["step"].as_u64() else {
            continue;
        };
        let i = match steps.iter().position(|s| s.n == n) {
            Some(i) => i,
            None => {
                steps.push(Step {
                    n,
                    ..Default::default()
                });
                steps.len() - 1
            }
        };
        let s = &mut steps[i];
        if let Some(why) = v["explain"].as_str() {
            s.explain.push(why.to_string());
        }
        if let Some(name) = v["name"].as_str() {
            s.name = name.to_string();
        }
        if let Some(status) = v["status"].as_str() {
            if status == "started" {
                s.at = v["at"].as_f64();
            }
            s.status = status.to_string();
        }
        if let Some(d) = v["duration"].as_f64() {
            s.duration = Some(d);
        }
        s.error = v["error"].as_str().map(str::to_string).or(s.error.take());
        s.log = v["log"].as_str().map(str::to_string).or(s.log.take());
    }
    steps
}

/// Job `id`'s page; None when there is no such job.
pub(super) fn job_page(s: &Service, id: i64) -> Result<Option<String>, DbError> {
    let Some(job) = s.job(id)? else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(s.events_path(id)).unwrap_or_default();
    let steps = steps(&text);
    let end = steps
        .iter()
        .map(|s| s.at.unwrap_or(0.0) + s.duration.unwrap_or(0.0))
        .fold(0.001, f64::max);
    let width = 320.0;
    let mut rows = String::new();
    for st in &steps {
        let x = st.at.unwrap_or(0.0) / end * width;
        let w = (st.duration.unwrap_or(0.0) / end * width).max(1.0);
        let mut notes = String::new();
        for why in &st.explain {
            notes.push_str(&format!("<div class=\"explain\">{}</div>", esc(why)));
        }
        if let Some(e) = &st.error {
            notes.push_str(&format!("<div class=\"error\">{}</div>", esc(e)));
        }
        if let Some(log) = &st.log {
            notes.push_str(&format!("<pre class=\"log\">{}</pre>", esc(log)));
        }
        rows.push_str(&format!(
            "<tr data-step=\"{}\" class=\"{}\"><td>{}</td><td>{}</td><td>{}</td>\
<td><svg class=\"timeline\" width=\"{width}\" height=\"10\"><rect class=\"{}\" x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"10\"></rect></svg></td><td>{notes}</td></tr>\n",
            st.n,
            esc(&st.status),
            esc(&st.name),
            esc(&st.status),
            st.duration.map_or("-".to_string(), |d| format!("{d:.2}s")),
            esc(&st.status),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">no steps recorded here (another replica may have run it)</td></tr>\n");
    }
    let field = |v: &Option<String>| esc(v.as_deref().unwrap_or("-"));
    let took = wall(&job).map_or("-".to_string(), |w| format!("{w:.1} s"));
    Ok(Some(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>job #{id} {target}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
rect.cached{{fill:#999}}rect.done{{fill:#2a7}}rect.error{{fill:#c33}}rect.started{{fill:#e90}}\
.explain{{color:#555}}.error{{color:#b00}}pre.log{{max-height:20em;overflow:auto;background:#f6f6f6}}</style></head>\n<body>\
<p><a href=\"/\">kiln serve</a></p>\n<h1>job #{id} {target}: <span id=\"status\">{status}</span></h1>\n\
<table id=\"job\"><tr><th>triggers</th><td>{triggers}</td></tr><tr><th>queued</th><td>{queued}</td></tr>\
<tr><th>started</th><td>{started}</td></tr><tr><th>finished</th><td>{finished}</td></tr>\
<tr><th>wall time</th><td>{took}</td></tr><tr><th>steps cached / run</th><td>{hits} / {misses}</td></tr>\
<tr><th>error</th><td>{error}</td></tr></table>\n<h2>Steps</h2>\n\
<table id=\"steps\"><tr><th>step</th><th>outcome</th><th>time</th><th>timeline</th><th>why it ran, what failed</th></tr>\n{rows}</table>\n</body></html>\n",
        target = esc(&job.target),
        status = esc(&job.status),
        triggers = esc(&job.triggers.join(", ")),
        queued = esc(&job.queued_at),
        started = field(&job.started_at),
        finished = field(&job.finished_at),
        hits = job.hits,
        misses = job.misses,
        error = field(&job.error),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_steps_come_from_its_last_phase_with_times_and_reasons() {
        let text = r#"{"phase":"check"}
{"step":1,"name":"[1/2] FROM a","status":"started","at":0.0}
{"phase":"build"}
{"step":1,"name":"[1/2] FROM a","status":"started","at":0.0}
{"step":1,"name":"[1/2] FROM a","status":"done","at":0.1,"duration":0.1}
{"step":2,"name":"[2/2] RUN x","status":"started","at":0.1}
{"step":2,"explain":"its command changed"}
{"step":2,"name":"[2/2] RUN x","status":"error","at":1.1,"duration":1.0,"error":"exit 1","log":"boom"}
"#;
        let s = steps(text);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            Step {
                n: 2,
                name: "[2/2] RUN x".into(),
                status: "error".into(),
                at: Some(0.1),
                duration: Some(1.0),
                explain: vec!["its command changed".into()],
                error: Some("exit 1".into()),
                log: Some("boom".into()),
            }
        );
    }

    #[test]
    fn the_history_draws_a_bar_per_job_that_ran_oldest_first() {
        let job = |id, status: &str, started: Option<&str>, finished: Option<&str>| Job {
            id,
            target: "t".into(),
            triggers: vec![],
            status: status.into(),
            queued_at: String::new(),
            started_at: started.map(str::to_string),
            finished_at: finished.map(str::to_string),
            hits: 1,
            misses: 1,
            error: None,
        };
        let svg = history_svg(&[
            job(3, "queued", None, None),
            job(
                2,
                "warm",
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:01Z"),
            ),
            job(
                1,
                "built",
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:04Z"),
            ),
        ]);
        assert_eq!(svg.matches("<rect").count(), 2);
        let built = svg.find("class=\"built\"").unwrap();
        let warm = svg.find("class=\"warm\"").unwrap();
        assert!(built < warm, "oldest first: {svg}");
        assert!(
            svg.contains("<title>#1 built 4.0s, hits 50%</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("height=\"26.0\""),
            "the longest is full height: {svg}"
        );
    }
}
