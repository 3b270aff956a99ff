//! The service's HTTP API (JSON), metrics, webhooks and status page.
//! Mutating endpoints need the config's bearer token; webhooks are checked
//! by their target's secret instead. Errors are `{"message": ...}`.

use super::Service;
use super::hooks;
use super::metrics::HookLabels;
use super::pages::esc;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use std::sync::Arc;

type Shared = State<Arc<Service>>;

/// An error answer: its status and `{"message": ...}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

impl From<super::db::DbError> for ApiError {
    fn from(e: super::db::DbError) -> Self {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("state database: {e}"),
        )
    }
}

type Answer = Result<Response, ApiError>;

/// Ready when the state can be read: a replica cut off from its database
/// answers 503, and a load balancer sends it nothing.
async fn ready(State(s): Shared) -> Answer {
    match tokio::task::spawn_blocking(move || s.ready()).await {
        Ok(Ok(())) => Ok("ready\n".into_response()),
        Ok(Err(e)) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state database: {e}"),
        )),
        Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// Every route.
pub fn router(service: Arc<Service>) -> Router {
    let router = Router::new()
        .route("/", get(page))
        .route("/jobs/{id}", get(job_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/targets", get(targets))
        .route("/v1/targets/{name}", get(target))
        .route("/v1/targets/{name}/warm", post(warm))
        .route("/v1/bases", get(bases))
        .route("/v1/cache", get(cache))
        .route("/v1/cache/prune", post(prune))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(job).delete(cancel))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/explain", get(explain))
        .route("/v1/hooks/github", post(github))
        .route("/v1/hooks/gitlab", post(gitlab))
        .route("/v1/hooks/registry", post(registry));
    let router = match service.config.mirror {
        Some(_) => router
            .route("/v2/", any(mirror_root))
            .route("/v2/{*rest}", any(mirror)),
        None => router,
    };
    router
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(service)
}

/// Refuses a mutating request without the configured bearer token.
fn authorize(service: &Service, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &service.config.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match hooks::gitlab_signed(token, given) {
        true => Ok(()),
        false => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the service's token: Authorization: Bearer TOKEN".into(),
        )),
    }
}

async fn metrics(State(s): Shared) -> Response {
    // What is read, not counted, here: registry requests (counted by the
    // registry client for the whole process) and the bases' age.
    for ((host, status), total) in crate::registry::client::request_counts() {
        let c = s.metrics.registry_requests.get_or_create(&vec![
            ("registry".to_string(), host),
            ("status".to_string(), status.to_string()),
        ]);
        c.inc_by(total.saturating_sub(c.get()));
    }
    if let Ok(bases) = s.bases() {
        let now = chrono::Utc::now();
        for b in bases {
            let changed = b
                .changed_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if let Some(t) = changed {
                s.metrics
                    .base_age
                    .get_or_create(&vec![("image".to_string(), b.image.clone())])
                    .set((now - t.with_timezone(&chrono::Utc)).num_seconds());
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

/// A target as the API shows it, with its last job.
fn target_json(s: &Service, t: &super::config::Target) -> Result<serde_json::Value, ApiError> {
    let last = s.jobs(Some(&t.name), 1)?.pop();
    Ok(json!({
        "name": t.name,
        "context": t.context,
        "git": t.git_shown(),
        "ref": t.git_ref,
        "dockerfile": t.dockerfile,
        "target": t.target,
        "cache_to": t.cache_to,
        "triggers": t.triggers,
        "last_job": last,
    }))
}

async fn targets(State(s): Shared) -> Answer {
    let list: Result<Vec<_>, _> = s
        .config
        .targets
        .iter()
        .map(|t| target_json(&s, t))
        .collect();
    Ok(Json(list?).into_response())
}

async fn target(State(s): Shared, Path(name): Path<String>) -> Answer {
    let t = s
        .config
        .target(&name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no target {name:?}")))?;
    Ok(Json(target_json(&s, t)?).into_response())
}

async fn warm(State(s): Shared, headers: HeaderMap, Path(name): Path<String>) -> Answer {
    authorize(&s, &headers)?;
    match s.enqueue(&name, "api")? {
        Some((job, _)) => Ok((StatusCode::ACCEPTED, Json(job)).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no target {name:?}"),
        )),
    }
}

/// The store's disk use by kind and, per target, its git checkout; the
/// cap.
async fn cache(State(s): Shared) -> Answer {
    let answer = tokio::task::spawn_blocking(move || {
        let usage = s.usage();
        let targets: Vec<_> = s
            .config
            .targets
            .iter()
            .map(|t| {
                let checkout = match t.git {
                    Some(_) => crate::store::gc::dir_size(&s.checkout_dir(t)),
                    None => 0,
                };
                json!({ "name": t.name, "checkout_bytes": checkout })
            })
            .collect();
        let max = s
            .config
            .store
            .max_size
            .as_deref()
            .and_then(|m| crate::units::human_size(m).ok());
        json!({
            "max_size": max,
            "total": usage.total(),
            "usage": usage,
            "targets": targets,
        })
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(answer).into_response())
}

/// Evicts build cache down to `{"max_size": "10GB"}` (default: the
/// config's); 409 while another kiln holds the store.
async fn prune(State(s): Shared, headers: HeaderMap, body: Bytes) -> Answer {
    authorize(&s, &headers)?;
    let max = match body.is_empty() {
        true => None,
        false => {
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}"),
                )
            })?;
            match v["max_size"].as_str() {
                Some(m) => Some(
                    crate::units::human_size(m)
                        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?,
                ),
                None => None,
            }
        }
    };
    if max.is_none() && s.config.store.max_size.is_none() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "no size to prune to: give {\"max_size\": \"10GB\"} or set [store] max_size".into(),
        ));
    }
    let evicted = tokio::task::spawn_blocking(move || s.keep_under_cap(max))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match evicted {
        Some(e) => Ok(Json(e).into_response()),
        None => Err(ApiError(
            StatusCode::CONFLICT,
            "another kiln has the store open (a job is running): try again when it ends".into(),
        )),
    }
}

async fn bases(State(s): Shared) -> Answer {
    Ok(Json(s.bases()?).into_response())
}

/// `GET /v1/jobs?target=NAME&limit=N`.
#[derive(serde::Deserialize)]
struct JobsQuery {
    target: Option<String>,
    limit: Option<i64>,
}

/// The latest jobs (100 unless `limit` says, at most 10,000), of one
/// target when `target` says.
async fn jobs(State(s): Shared, Query(q): Query<JobsQuery>) -> Answer {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(s.jobs(q.target.as_deref(), limit)?).into_response())
}

fn job_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("job id {id:?} is not a number"),
        )
    })
}

async fn job(State(s): Shared, Path(id): Path<String>) -> Answer {
    let id = job_id(&id)?;
    match s.job(id)? {
        Some(j) => Ok(Json(j).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}"))),
    }
}

async fn cancel(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    authorize(&s, &headers)?;
    let id = job_id(&id)?;
    match (s.job(id)?, s.cancel(id)?) {
        (None, _) => Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}"))),
        (Some(_), true) => Ok(Json(s.job(id)?).into_response()),
        (Some(j), false) => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {}: only a queued job can be canceled",
                j.status
            ),
        )),
    }
}

/// The job's events as server-sent events: what happened so far, then
/// each new event until the job ends.
async fn events(State(s): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    if s.job(id)?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}")));
    }
    let path = s.events_path(id);
    let open = OpenStream::new(&s.metrics.event_streams);
    let start = (s, 0usize, false, open);
    let stream = futures::stream::unfold(start, move |(s, sent, ended, open)| {
        let path = path.clone();
        async move {
            if ended {
                return None;
            }
            loop {
                let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                // Only whole lines (a line being written has no newline yet).
                let whole = if text.ends_with('\n') {
                    lines.len()
                } else {
                    lines.len().saturating_sub(1)
                };
                if whole > sent {
                    let event = Event::default().event("step").data(lines[sent].clone());
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (s, sent + 1, false, open),
                    ));
                }
                let done = s
                    .job(id)
                    .ok()
                    .flatten()
                    .is_none_or(|j| !matches!(j.status.as_str(), "queued" | "running"));
                if done {
                    let status = s
                        .job(id)
                        .ok()
                        .flatten()
                        .map(|j| j.status)
                        .unwrap_or_default();
                    let event = Event::default().event("end").data(status);
                    return Some((Ok(event), (s, sent, true, open)));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One open event stream, counted in `kiln_event_streams` until the
/// stream ends or its client goes (axum drops the stream either way).
struct OpenStream(prometheus_client::metrics::gauge::Gauge);

impl OpenStream {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> OpenStream {
        gauge.inc();
        OpenStream(gauge.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn mirror_root(State(s): Shared, method: Method, headers: HeaderMap) -> Response {
    super::mirror::handle(s, method, String::new(), headers).await
}

async fn mirror(
    State(s): Shared,
    method: Method,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> Response {
    super::mirror::handle(s, method, rest, headers).await
}

/// Why the job's steps missed the cache: for each step that ran, the
/// first input that differs from its last build; and, when the warm
/// check found the cache cold, the step where it stopped.
async fn explain(State(s): Shared, Path(id): Path<String>) -> Answer {
    let id = job_id(&id)?;
    if s.job(id)?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}")));
    }
    let text = tokio::fs::read_to_string(s.events_path(id))
        .await
        .unwrap_or_default();
    let mut names = std::collections::HashMap::new();
    let (mut steps, mut check) = (Vec::new(), None);
    let mut phase = String::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(p) = v["phase"].as_str() {
            phase = p.to_string();
            names.clear();
        }
        if let (Some(n), Some(name)) = (v["step"].as_u64(), v["name"].as_str()) {
            names.insert(n, name.to_string());
        }
        if let (Some(n), Some(why)) = (v["step"].as_u64(), v["explain"].as_str())
            && phase != "check"
        {
            steps.push(json!({ "step": n, "name": names.get(&n), "why": why }));
        }
        if let Some(note) = v["note"].as_str()
            && note.starts_with("not warm: ")
        {
            check = Some(note.to_string());
        }
    }
    Ok(Json(json!({ "job": id, "check": check, "steps": steps })).into_response())
}

/// A registry's notifications (the distribution registry's envelope): a
/// push of a tracked base's tag checks that base now, as its schedule
/// would (a changed digest pulls it and warms the targets built on it).
async fn registry(State(s): Shared, headers: HeaderMap, body: Bytes) -> Answer {
    authorize(&s, &headers)?;
    let pushed = hooks::parse_registry_events(&body).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "not a registry notification envelope ({\"events\": [...]})".into(),
        )
    })?;
    // Each base pushed, with the digest the event says its tag now names
    // (the last such event's).
    let mut checked: Vec<(String, Option<String>)> = Vec::new();
    for base in &s.config.bases {
        for p in pushed.iter().filter(|p| p.names(&base.image)) {
            match checked.iter_mut().find(|(image, _)| *image == base.image) {
                Some(entry) => entry.1 = p.digest.clone().or(entry.1.take()),
                None => checked.push((base.image.clone(), p.digest.clone())),
            }
        }
    }
    s.metrics
        .webhooks
        .get_or_create(&HookLabels {
            kind: "registry".into(),
            result: if checked.is_empty() {
                "ignored"
            } else {
                "accepted"
            }
            .into(),
        })
        .inc();
    // Checked on tasks of their own: the registry waits for this answer
    // only so long (its endpoint timeout) and a check cut short by its
    // hanging up would leave a new digest seen but its pull and its jobs
    // never done.
    for (image, pushed) in checked.clone() {
        let s = s.clone();
        // The distribution registry queues its event before it moves the
        // tag, and a registry busy with the push may not answer at all: a
        // check that fails, or still sees another digest than the one
        // pushed, is tried again for a while, not left to the schedule.
        tokio::spawn(async move {
            for wait in [1, 2, 4, 8, 16] {
                let seen = s.check_base(&image).await;
                if seen.is_some() && (pushed.is_none() || seen == pushed) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            }
        });
    }
    let checked: Vec<String> = checked.into_iter().map(|(image, _)| image).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "checked": checked }))).into_response())
}

/// Queues every push-triggered target `push` is for, signed by its
/// secret and changing a file its build reads.
fn on_push(s: &Service, kind: &str, push: &hooks::Push, signed: impl Fn(&str) -> bool) -> Answer {
    let mut signed_for = 0;
    let (mut queued, mut ignored) = (Vec::new(), Vec::new());
    for t in &s.config.targets {
        if !t.triggers.iter().any(|x| x == "push") || !hooks::is_for(t, push) {
            continue;
        }
        if !t.webhook_secret.as_deref().is_some_and(&signed) {
            continue;
        }
        signed_for += 1;
        if push.paths.is_empty() || hooks::feeds_build(t, &s.checkout_dir(t), &push.paths) {
            if let Some((job, _)) = s.enqueue(&t.name, "push")? {
                queued.push(job);
            }
        } else {
            ignored.push(t.name.clone());
        }
    }
    let count = |result: &str| {
        s.metrics
            .webhooks
            .get_or_create(&HookLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    };
    if signed_for == 0 {
        count("refused");
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "no push-triggered target of this repository and ref accepts this signature".into(),
        ));
    }
    count(if queued.is_empty() {
        "ignored"
    } else {
        "accepted"
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "queued": queued, "unchanged": ignored })),
    )
        .into_response())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn github(State(s): Shared, headers: HeaderMap, body: Bytes) -> Answer {
    let signature = header_str(&headers, "x-hub-signature-256");
    if header_str(&headers, "x-github-event") == "ping" {
        return Ok((StatusCode::OK, Json(json!({ "message": "pong" }))).into_response());
    }
    let push = hooks::parse_push(&body)
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "not a push event payload".into()))?;
    on_push(&s, "github", &push, |secret| {
        hooks::github_signed(secret, &body, signature)
    })
}

async fn gitlab(State(s): Shared, headers: HeaderMap, body: Bytes) -> Answer {
    let token = header_str(&headers, "x-gitlab-token");
    let push = hooks::parse_push(&body)
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "not a push event payload".into()))?;
    on_push(&s, "gitlab", &push, |secret| {
        hooks::gitlab_signed(secret, token)
    })
}

/// The steps of a job's events so far (the last phase's): name → status.
fn job_steps(text: &str) -> Vec<(u64, String, String)> {
    let mut steps: Vec<(u64, String, String)> = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["phase"].is_string() {
            steps.clear();
        }
        if let (Some(n), Some(name), Some(status)) =
            (v["step"].as_u64(), v["name"].as_str(), v["status"].as_str())
        {
            match steps.iter_mut().find(|(i, _, _)| *i == n) {
                Some(step) => step.2 = status.to_string(),
                None => steps.push((n, name.to_string(), status.to_string())),
            }
        }
    }
    steps
}

/// Renders bytes as people read them (powers of 1000, as `max_size`).
fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    match u {
        0 => format!("{bytes} B"),
        _ => format!("{v:.1} {}", units[u]),
    }
}

/// The page's script: each running job's steps are updated live from its
/// events stream (the same events as `--progress=json`) until it ends.
/// Without JavaScript the page refreshes itself instead.
const LIVE_SCRIPT: &str = r#"<script>
document.body.dataset.live = "on";
for (const list of document.querySelectorAll("ol[data-events]")) {
  const source = new EventSource(list.dataset.events);
  source.addEventListener("step", (e) => {
    const v = JSON.parse(e.data);
    if (v.phase) { list.replaceChildren(); return; }
    if (v.step === undefined || v.name === undefined) return;
    let item = list.querySelector(`li[data-step="${v.step}"]`);
    if (!item) {
      item = document.createElement("li");
      item.dataset.step = v.step;
      list.appendChild(item);
    }
    item.textContent = `${v.name}: ${v.status}`;
    item.className = v.status;
  });
  source.addEventListener("end", (e) => {
    source.close();
    list.dataset.ended = e.data;
    const item = document.createElement("li");
    item.textContent = `ended: ${e.data}`;
    list.appendChild(item);
  });
}
</script>"#;

/// The status page: targets with their last job, hit rate, next trigger
/// and cache size; the running jobs with their steps, live; the store's
/// use against its cap. Server-rendered: it works without JavaScript
/// (refreshing itself every 5 s); with it, running jobs update live.
async fn page(State(s): Shared) -> Answer {
    let page = tokio::task::spawn_blocking(move || render_page(&s))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Html(page).into_response())
}

/// A job's page: its steps on a timeline, why each ran, what failed.
async fn job_page(State(s): Shared, Path(id): Path<i64>) -> Answer {
    let page = tokio::task::spawn_blocking(move || super::pages::job_page(&s, id))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    match page {
        Some(html) => Ok(Html(html).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}"))),
    }
}

fn render_page(s: &Service) -> Result<String, ApiError> {
    let store = s.open_store().ok();
    let mut rows = String::new();
    for t in &s.config.targets {
        let recent = s.jobs(Some(&t.name), 20)?;
        let last = recent.first();
        let (status, hits) = match last {
            Some(j) => {
                let total = j.hits + j.misses;
                let rate = match total {
                    0 => "-".to_string(),
                    n => format!("{}%", j.hits * 100 / n),
                };
                (
                    format!(
                        "<a href=\"/jobs/{}\">#{} {}</a>",
                        j.id,
                        j.id,
                        esc(&j.status)
                    ),
                    rate,
                )
            }
            None => ("never".into(), "-".into()),
        };
        let history = super::pages::history_svg(&recent);
        let next = t
            .parsed_triggers()
            .unwrap_or_default()
            .iter()
            .filter_map(|tr| match tr {
                super::config::Trigger::Cron(c) => {
                    c.find_next_occurrence(&chrono::Utc::now(), false).ok()
                }
                _ => None,
            })
            .min()
            .map_or("-".to_string(), |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
        // The cache's size: the copy of its ref the last import left.
        let size = match (&t.cache_to, &store) {
            (Some(r), Some(store)) => crate::registry::Reference::parse(r)
                .ok()
                .and_then(|r| crate::image::Image::resolve(store, &r.local_name()).ok())
                .map_or("-".to_string(), |i| human(i.size())),
            _ => "-".to_string(),
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"status\">{}</td><td>{}</td><td>{history}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&t.name),
            status,
            esc(&hits),
            esc(&next),
            esc(t.cache_to.as_deref().unwrap_or("-")),
            esc(&size),
        ));
    }
    let mut running = String::new();
    for j in s.jobs(None, 100)?.iter().filter(|j| j.status == "running") {
        let text = std::fs::read_to_string(s.events_path(j.id)).unwrap_or_default();
        let mut steps = String::new();
        for (n, name, status) in job_steps(&text) {
            steps.push_str(&format!(
                "<li data-step=\"{n}\" class=\"{}\">{}: {}</li>",
                esc(&status),
                esc(&name),
                esc(&status)
            ));
        }
        running.push_str(&format!(
            "<li><a href=\"/jobs/{}\">job #{}</a> {} (since {})<ol data-events=\"/v1/jobs/{}/events\">{steps}</ol></li>\n",
            j.id,
            j.id,
            esc(&j.target),
            esc(j.started_at.as_deref().unwrap_or("")),
            j.id,
        ));
    }
    if running.is_empty() {
        running.push_str("<li>none</li>\n");
    }
    let mut queue = String::new();
    for j in s.queued()? {
        queue.push_str(&format!(
            "<li><a href=\"/jobs/{}\">job #{}</a> {} ({}) since {}</li>\n",
            j.id,
            j.id,
            esc(&j.target),
            esc(&j.triggers.join(", ")),
            esc(&j.queued_at)
        ));
    }
    if queue.is_empty() {
        queue.push_str("<li>empty</li>\n");
    }
    // Replicas sharing PostgreSQL: this one, and the leases of every
    // running job in the fleet.
    let replicas = match s.db_shared() {
        Some(pg) => {
            let mut list = format!(
                "<p>this replica: {}</p>\n<ul id=\"replicas\">",
                esc(&pg.replica)
            );
            let leases = pg.leases().map_err(ApiError::from)?;
            for (id, target, replica, until) in &leases {
                list.push_str(&format!(
                    "<li>{}: <a href=\"/jobs/{id}\">job #{id}</a> {} (lease until {})</li>",
                    esc(replica),
                    esc(target),
                    esc(until)
                ));
            }
            if leases.is_empty() {
                list.push_str("<li>no job runs in the fleet</li>");
            }
            format!("<h2>Replicas</h2>\n{list}</ul>\n")
        }
        None => String::new(),
    };
    let fleet = match &s.config.cache {
        Some(c) => {
            let steps = s.fleet_steps().map_err(ApiError::from)?;
            let bytes: i64 = steps.iter().map(|s| s.1.max(0)).sum();
            format!(
                "<h2>Step cache</h2>\n<p id=\"fleet\">{}: {} steps, {} of {}</p>\n",
                esc(&c.repo),
                steps.len(),
                human(bytes.unsigned_abs()),
                esc(c.max_size.as_deref().unwrap_or("no bound"))
            )
        }
        None => String::new(),
    };
    let used = human(s.last_usage().total());
    let cap = match &s.config.store.max_size {
        Some(m) => format!("{used} of {}", m),
        None => format!("{used} (no cap)"),
    };
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\
<title>kiln serve</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
li.started{{color:#a60}}li.cached{{color:#666}}li.done{{color:#070}}li.error{{color:#b00}}\
svg.history{{background:#f6f6f6}}rect.warm{{fill:#2a7}}rect.built{{fill:#37c}}rect.failed,rect.lost{{fill:#c33}}rect.canceled{{fill:#999}}</style></head>\n<body>\
<h1>kiln serve</h1>\n<h2>Targets</h2>\n<table><tr><th>target</th><th>last job</th><th>hit rate</th>\
<th>last jobs' wall time</th><th>next trigger</th><th>cache</th><th>cache size</th></tr>\n{rows}</table>\n<h2>Running</h2>\n<ul id=\"running\">{running}</ul>\n\
<h2>Queue</h2>\n<ul id=\"queue\">{queue}</ul>\n{replicas}{fleet}\
<h2>Store</h2>\n<p id=\"store\">{}</p>\n<p>up {} s</p>\n{LIVE_SCRIPT}\n</body></html>\n",
        esc(&cap),
        s.uptime().as_secs()
    ))
}
