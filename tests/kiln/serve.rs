//! `kiln serve` as a fleet uses it: a service warms targets (a local
//! directory and a git repository) into a registry cache (Debian's
//! docker-registry on 127.0.0.1); a fresh runner store then builds with
//! `--cache-from` and runs no step. Its API, webhooks, metrics, page and
//! restart after kill -9 are driven over HTTP on 127.0.0.1.

use crate::registry::{Registry, free_port, k, ok, store_with_box};
use crate::util::{kiln, need_root, need_tool, repo, text};
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `kiln serve` process, killed when dropped.
struct Served {
    child: Child,
    base: String,
    /// Its standard error: what a failing test shows.
    log: tempfile::NamedTempFile,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(root: &Path, config: &Path, port: u16) -> Served {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = kiln()
            .arg("--root")
            .arg(root)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("kiln serve");
        let served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        for _ in 0..200 {
            if served.get("/healthz").0 == 200 {
                return served;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kiln serve did not answer /healthz");
    }

    /// What it wrote to its standard error so far.
    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    fn get(&self, path: &str) -> (u16, String) {
        match Self::client().get(format!("{}{path}", self.base)).send() {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let mut req = Self::client()
            .post(format!("{}{path}", self.base))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().expect("POST");
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.text().unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    /// Waits for job `id` to end; its JSON.
    /// Waits until job `id` runs (a minute at most).
    fn wait_running(&self, id: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = self.get(&format!("/v1/jobs/{id}"));
            let job: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            match job["status"].as_str() {
                Some("running") => return,
                Some("queued") | None => {}
                other => panic!("job {id} ended before it was seen running: {other:?} {job}"),
            }
            assert!(Instant::now() < deadline, "job {id} never ran: {job}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            let (_, body) = self.get(&format!("/v1/jobs/{id}"));
            let job: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if !matches!(job["status"].as_str(), Some("queued" | "running") | None) {
                return job;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("job {id} did not end");
    }
}

/// The registry's tags of `repo`, sorted.
fn reg_tags(reg: &Registry, repo: &str) -> Vec<String> {
    let url = format!("http://{}/v2/{repo}/tags/list", reg.host());
    let v: Value = serde_json::from_str(&reqwest::blocking::get(url).unwrap().text().unwrap())
        .unwrap_or(Value::Null);
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// The digest of `repo:tag` in the registry.
fn manifest_digest(reg: &Registry, repo: &str, tag: &str) -> String {
    let r = Served::client()
        .head(format!("http://{}/v2/{repo}/manifests/{tag}", reg.host()))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string()
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[test]
fn serve_warms_targets_for_a_fleet() {
    if !need_root("builds run steps in containers")
        || !need_tool("git", "git targets are checked out with it")
    {
        return;
    }
    // The registry tells the service of every push (its notification
    // endpoint), so a new base is seen at once, not on a schedule.
    let port = free_port();
    let notify = format!(
        "notifications:\n  endpoints:\n    - name: kiln\n      url: http://127.0.0.1:{port}/v1/hooks/registry\n      headers:\n        Authorization: [Bearer s3cret]\n      timeout: 10s\n      threshold: 3\n      backoff: 1s\n"
    );
    let Some(reg) = Registry::start_with(false, &notify) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    let base = format!("{}/kiln/base:1", reg.host());
    ok(k(a.path(), &[], &["push", "box:1", &base]));

    // The git target: src/ feeds the build, README.md does not.
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "--quiet", "-b", "main"]);
    std::fs::create_dir_all(r.join("src")).unwrap();
    std::fs::write(r.join("src/a"), "one\n").unwrap();
    std::fs::write(r.join("README.md"), "docs\n").unwrap();
    std::fs::write(
        r.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY src/ /src/\nRUN cat /src/a > /out\n\
             RUN --mount=type=cache,target=/var/cache/app sh -c 'test -f /var/cache/app/fetched || cat /src/a > /var/cache/app/fetched; cp /var/cache/app/fetched /two'\n"
        ),
    )
    .unwrap();
    git(r, &["add", "."]);
    git(r, &["commit", "--quiet", "-m", "one"]);
    // The local target: slow enough that jobs queue behind it.
    let local = tempfile::tempdir().unwrap();
    std::fs::write(
        local.path().join("Dockerfile"),
        format!("FROM {base}\nRUN sleep 3\n"),
    )
    .unwrap();

    let cache = format!("{}/cache/app:main", reg.host());
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            r#"listen = "127.0.0.1:{port}"
token = "s3cret"
max_jobs = 1
[[base]]
image = "{base}"
check = "0 0 1 1 *"
[[target]]
name = "app"
git = "{repo}"
ref = "main"
cache_to = "{cache}"
keep_generations = 2
mounts = true
triggers = ["push", "base"]
webhook_secret = "hook-secret"
[[target]]
name = "slow"
context = "{local}"
"#,
            repo = r.display(),
            local = local.path().display()
        ),
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let served = Served::start(store.path(), config.path(), port);
    let auth = [("authorization", "Bearer s3cret")];

    // Mutating endpoints need the token.
    let (status, body) = served.post("/v1/targets/app/warm", &[], b"");
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("token"));
    assert_eq!(served.post("/v1/targets/nope/warm", &auth, b"").0, 404);

    // One job at a time: while `slow` runs, three triggers for `app`
    // coalesce into one queued job.
    let (status, slow) = served.post("/v1/targets/slow/warm", &auth, b"");
    assert_eq!(status, 202, "{slow}");
    served.wait_running(slow["id"].as_i64().unwrap());
    let ids: Vec<i64> = (0..3)
        .map(|_| {
            served.post("/v1/targets/app/warm", &auth, b"").1["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    assert_eq!(served.wait(slow["id"].as_i64().unwrap())["status"], "built");
    let first = served.wait(ids[0]);
    assert_eq!(first["status"], "built", "{first}");
    assert_eq!(first["misses"], 3, "{first}");

    // Nothing changed: the next job plans the build, finds every step's
    // key in the cache ref, and ends warm without building or pushing.
    let tags_before = reg_tags(&reg, "cache/app");
    assert_eq!(tags_before, ["main", "main-gen-1"], "one generation so far");
    let digest_before = manifest_digest(&reg, "cache/app", "main");
    let (_, again) = served.post("/v1/targets/app/warm", &auth, b"");
    let again = served.wait(again["id"].as_i64().unwrap());
    assert_eq!(
        (again["status"].as_str(), again["misses"].as_i64()),
        (Some("warm"), Some(0)),
        "{again}"
    );
    assert_eq!(manifest_digest(&reg, "cache/app", "main"), digest_before);
    assert_eq!(
        reg_tags(&reg, "cache/app"),
        tags_before,
        "nothing was pushed"
    );

    // Two fresh runner stores build the same commit from the cache: no
    // step runs, and the cache mount (`mounts = true`) is warm: a step of
    // another Dockerfile, which nothing cached, reads what the service's
    // build left in it.
    let reader = tempfile::tempdir().unwrap();
    std::fs::write(
        reader.path().join("Dockerfile"),
        format!("FROM {base}\nRUN --mount=type=cache,target=/var/cache/app cp /var/cache/app/fetched /got\n"),
    )
    .unwrap();
    for _ in 0..2 {
        let runner = tempfile::tempdir().unwrap();
        let out = k(
            runner.path(),
            &[],
            &[
                "build",
                "--progress=plain",
                &format!("--cache-from=type=registry,ref={cache}"),
                r.to_str().unwrap(),
            ],
        );
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.ends_with(" CACHED")).count(),
            3,
            "{err}"
        );
        assert!(err.contains("restored 1 cache mounts"), "{err}");
        let got = tempfile::tempdir().unwrap();
        ok(k(
            runner.path(),
            &[],
            &[
                "build",
                "-q",
                "-o",
                got.path().to_str().unwrap(),
                reader.path().to_str().unwrap(),
            ],
        ));
        assert_eq!(
            std::fs::read_to_string(got.path().join("got")).unwrap(),
            "one\n"
        );
    }

    // Webhooks: a forged signature warms nothing; a README-only push is
    // accepted and warms nothing; a push touching src/ warms.
    let push = |paths: &[&str]| {
        serde_json::to_vec(&serde_json::json!({
            "ref": "refs/heads/main",
            "repository": {"clone_url": r.display().to_string()},
            "commits": [{"added": [], "modified": paths, "removed": []}],
        }))
        .unwrap()
    };
    let before = served.get("/v1/jobs").1;
    let body = push(&["src/a"]);
    let (status, _) = served.post(
        "/v1/hooks/github",
        &[("x-hub-signature-256", &sign("forged", &body))],
        &body,
    );
    assert_eq!(status, 401);
    let body = push(&["README.md"]);
    let (status, answer) = served.post(
        "/v1/hooks/github",
        &[("x-hub-signature-256", &sign("hook-secret", &body))],
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["queued"], serde_json::json!([]), "{answer}");
    assert_eq!(served.get("/v1/jobs").1, before, "no job was queued");
    std::fs::write(r.join("src/a"), "changed\n").unwrap();
    git(r, &["commit", "--quiet", "-am", "two"]);
    let body = push(&["src/a"]);
    let (status, answer) = served.post(
        "/v1/hooks/github",
        &[("x-hub-signature-256", &sign("hook-secret", &body))],
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    let pushed_id = answer["queued"][0]["id"].as_i64().unwrap();
    let pushed = served.wait(pushed_id);
    assert_eq!(pushed["status"], "built", "{pushed}");
    // Why it missed: the warm check stopped at the COPY, and the build
    // names the file.
    let explained: Value =
        serde_json::from_str(&served.get(&format!("/v1/jobs/{pushed_id}/explain")).1).unwrap();
    assert!(
        explained["check"]
            .as_str()
            .unwrap()
            .starts_with("not warm: COPY src/ /src/: file src/a changed (content sha256:"),
        "{explained}"
    );
    assert!(
        explained["steps"][0]["why"]
            .as_str()
            .unwrap()
            .starts_with("file src/a changed (content sha256:"),
        "{explained}"
    );
    assert_eq!(
        explained["steps"][1]["why"], "the step before it changed",
        "{explained}"
    );
    assert_eq!(pushed["triggers"], serde_json::json!(["push"]));
    // src/a changed: the COPY and both RUNs after it ran again.
    assert_eq!(
        (pushed["hits"].as_i64(), pushed["misses"].as_i64()),
        (Some(0), Some(3)),
        "{pushed}"
    );

    // A new base pushed to the registry re-warms the target with no
    // other trigger: the registry's notification makes the service check
    // the base's digest now (its schedule is once a year).
    let new_base = tempfile::tempdir().unwrap();
    std::fs::write(
        new_base.path().join("Dockerfile"),
        "FROM box:1\nRUN echo new > /new-base\n",
    )
    .unwrap();
    ok(k(
        a.path(),
        &[],
        &[
            "build",
            "-q",
            "-t",
            &base,
            new_base.path().to_str().unwrap(),
        ],
    ));
    ok(k(a.path(), &[], &["push", &base, &base]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let rewarm = loop {
        let jobs: Value = serde_json::from_str(&served.get("/v1/jobs").1).unwrap();
        let found = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["target"] == "app" && j["triggers"] == serde_json::json!(["base"]));
        if let Some(j) = found {
            break j["id"].as_i64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no job for the new base: {jobs}\nbases: {}\nservice's stderr:\n{}",
            served.get("/v1/bases").1,
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let rewarmed = served.wait(rewarm);
    assert_eq!(rewarmed["status"], "built", "{rewarmed}");
    assert_eq!(
        rewarmed["misses"], 3,
        "every step is on a new base: {rewarmed}"
    );
    // Three generations pushed (the first build, the push, the base), two
    // kept: the first one's manifest is deleted from the registry.
    assert_eq!(
        reg_tags(&reg, "cache/app"),
        ["main", "main-gen-2", "main-gen-3"]
    );
    let bases: Value = serde_json::from_str(&served.get("/v1/bases").1).unwrap();
    assert_eq!(bases[0]["image"], base.as_str());
    assert!(
        bases[0]["digest"].as_str().unwrap().starts_with("sha256:"),
        "{bases}"
    );

    // Metrics and the page.
    let metrics = served.get("/metrics").1;
    let requests = format!(
        r#"kiln_registry_requests_total{{registry="{}",status="200"}}"#,
        reg.host()
    );
    let age = format!(r#"kiln_base_age_seconds{{image="{base}"}}"#);
    for want in [
        r#"kiln_jobs_total{target="app",trigger="api",result="built"} 1"#,
        r#"kiln_jobs_total{target="app",trigger="api",result="warm"} 1"#,
        r#"kiln_webhooks_total{kind="github",result="refused"} 1"#,
        r#"kiln_webhooks_total{kind="github",result="ignored"} 1"#,
        r#"kiln_steps_total{target="app",result="hit"}"#,
        r#"kiln_base_digest_changes_total{image="#,
        r#"kiln_webhooks_total{kind="registry",result="accepted"}"#,
        requests.as_str(),
        age.as_str(),
        r#"kiln_cache_export_bytes_total{target="app"}"#,
        r#"kiln_store_bytes{kind="snapshots"}"#,
    ] {
        assert!(metrics.contains(want), "{want} not in:\n{metrics}");
    }
    let (status, page) = served.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<td>app</td>") && page.contains("built"),
        "{page}"
    );

    // kill -9 while a job runs: restarted, the history is there and the
    // job runs again to its end.
    std::fs::write(
        local.path().join("Dockerfile"),
        format!("FROM {base}\nRUN sleep 3; echo again\n"),
    )
    .unwrap();
    let (_, running) = served.post("/v1/targets/slow/warm", &auth, b"");
    let id = running["id"].as_i64().unwrap();
    served.wait_running(id);
    drop(served);
    let served = Served::start(store.path(), config.path(), port);
    let jobs: Value = serde_json::from_str(&served.get("/v1/jobs").1).unwrap();
    assert!(jobs.as_array().unwrap().len() >= 5, "{jobs}");
    assert_eq!(served.wait(id)["status"], "built");
    drop(served);
    ok(k(store.path(), &[], &["fsck"]));
}

/// A service on `store` with one local target `name` building
/// `dockerfile`, with `extra` config lines before it; the context and
/// config are dropped with it.
fn serve_local(
    store: &Path,
    name: &str,
    dockerfile: &str,
    extra: &str,
) -> (Served, tempfile::TempDir, tempfile::NamedTempFile) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let port = free_port();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "listen = \"127.0.0.1:{port}\"\n{extra}[[target]]\nname = \"{name}\"\ncontext = \"{}\"\n",
            ctx.path().display()
        ),
    )
    .unwrap();
    (Served::start(store, config.path(), port), ctx, config)
}

/// `[store] max_size`: after a job, build cache is evicted least recently
/// used first until the store fits; what a tag reaches stays.
#[test]
fn serve_keeps_the_store_under_max_size() {
    if !need_root("builds run steps in containers") {
        return;
    }
    let Some(store) = store_with_box() else {
        return;
    };
    let (served, _ctx, _config) = serve_local(
        store.path(),
        "big",
        "FROM box:1\nRUN dd if=/dev/zero of=/big bs=1M count=4 2>/dev/null\n",
        "[store]\nmax_size = \"1MB\"\n",
    );
    let (_, job) = served.post("/v1/targets/big/warm", &[], b"");
    let first = served.wait(job["id"].as_i64().unwrap());
    assert_eq!(first["status"], "built", "{first}");
    // The 4 MB layer went (its record, blob and snapshot): the next job
    // runs the step again. Eviction follows the job's end: waited for.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = served.get("/metrics").1;
        let evicted: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("kiln_evicted_bytes_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if evicted >= 8 << 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "blob and snapshot of 4 MiB each: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cache: Value = serde_json::from_str(&served.get("/v1/cache").1).unwrap();
    assert_eq!(cache["max_size"], 1_000_000, "{cache}");
    assert!(
        cache["usage"]["snapshots"].as_u64().unwrap() < 4 << 20,
        "{cache}"
    );
    let (_, job) = served.post("/v1/targets/big/warm", &[], b"");
    let second = served.wait(job["id"].as_i64().unwrap());
    assert_eq!(
        (second["status"].as_str(), second["misses"].as_i64()),
        (Some("built"), Some(1)),
        "{second}"
    );
    // A prune to a size given in the request; a bad one is refused.
    let (status, body) = served.post("/v1/cache/prune", &[], br#"{"max_size": "1XB"}"#);
    assert_eq!(status, 400, "{body}");
    let (status, body) = served.post("/v1/cache/prune", &[], br#"{"max_size": "1TB"}"#);
    assert_eq!(
        (status, &body["steps"]),
        (200, &serde_json::json!(0)),
        "{body}"
    );
    drop(served);
    // The tagged base is untouched and the store is whole.
    ok(k(store.path(), &[], &["run", "--rm", "box:1", "true"]));
    ok(k(store.path(), &[], &["fsck"]));
}

/// `[mirror]`: the tracked bases, pulled once by the service, are served
/// read-only under `/v2/` to kiln, skopeo and docker, with the upstream
/// registry gone; nothing else in the store is served.
#[test]
fn serve_mirrors_tracked_bases() {
    if !need_tool("skopeo", "it pulls from the mirror") {
        return;
    }
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    let base = format!("{}/kiln/base:1", reg.host());
    ok(k(a.path(), &[], &["push", "box:1", &base]));
    let port = free_port();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "listen = \"127.0.0.1:{port}\"\ntoken = \"t\"\n[mirror]\n[[base]]\nimage = \"{base}\"\ncheck = \"0 0 1 1 *\"\n"
        ),
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let served = Served::start(store.path(), config.path(), port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.get("/v2/kiln/base/manifests/1").0 != 200 {
        assert!(Instant::now() < deadline, "the base was not pulled");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(reg);
    let mirror = format!("127.0.0.1:{port}/kiln/base:1");

    let fresh = tempfile::tempdir().unwrap();
    ok(k(fresh.path(), &[], &["pull", &mirror]));
    ok(k(fresh.path(), &[], &["run", "--rm", &mirror, "true"]));
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{mirror}"),
        ])
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let v: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let digest = v["Digest"].as_str().unwrap().to_string();
    let listed: Value = serde_json::from_str(&served.get("/v1/bases").1).unwrap();
    assert_eq!(listed[0]["digest"], digest.as_str(), "{listed}");
    if crate::util::docker_ready() {
        let pull = crate::util::docker_cmd()
            .args(["pull", &mirror])
            .output()
            .unwrap();
        assert!(pull.status.success(), "{}", text(&pull.stderr));
        let _ = crate::util::docker_cmd().args(["rmi", &mirror]).output();
    }

    // Only tracked bases, only reads.
    let (status, body) = served.get("/v2/kiln/other/manifests/1");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("MANIFEST_UNKNOWN"), "{body}");
    let config_digest = v["Layers"][0].as_str().unwrap();
    assert_eq!(
        served
            .get(&format!("/v2/kiln/base/blobs/{config_digest}"))
            .0,
        200
    );
    assert_eq!(
        served
            .get(&format!("/v2/kiln/other/blobs/{config_digest}"))
            .0,
        404
    );
    let (status, _) = served.post("/v2/kiln/base/blobs/uploads/", &[], b"");
    assert_eq!(status, 405);
    let metrics = served.get("/metrics").1;
    assert!(
        metrics.contains(r#"kiln_mirror_requests_total{result="hit"}"#),
        "{metrics}"
    );
}

/// Headless Chromium, as on this machine it must be started.
fn chromium(profile: &Path) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stderr(Stdio::null());
    cmd
}

/// The status page in a real browser: a running job's steps arrive live
/// through its events stream (steps the server had not rendered when the
/// page loaded), then its end; a screenshot of the page is kept in
/// `target/tmp/kiln-serve-page.png`.
#[test]
fn serve_status_page_updates_live_in_chromium() {
    if !need_root("builds run steps in containers")
        || !need_tool("chromium", "it opens the status page")
    {
        return;
    }
    let Some(store) = store_with_box() else {
        return;
    };
    // The last step waits at a gate the test opens only once the page's
    // event stream is open: however slow chromium is to start, it sees
    // the job running and follows it to its end.
    let gate = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gate_port = gate.local_addr().unwrap().port();
    let (served, _ctx, _config) = serve_local(
        store.path(),
        "page",
        &format!(
            "FROM box:1\nRUN sleep 1; echo a > /a\nRUN echo b > /b\nRUN timeout 600 wget -q -O /c http://127.0.0.1:{gate_port}/\n"
        ),
        "[store]\nmax_size = \"10GB\"\n",
    );
    let (_, job) = served.post("/v1/targets/page/warm", &[], b"");
    let id = job["id"].as_i64().unwrap();
    // Once the first RUN runs, the page as the server renders it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rendered = loop {
        let (_, page) = served.get("/");
        if page.contains("RUN sleep 1; echo a &gt; /a: started") {
            break page;
        }
        assert!(Instant::now() < deadline, "the job did not start: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!rendered.contains("data-step=\"4\""), "{rendered}");
    let profile = tempfile::tempdir().unwrap();
    // Virtual time stands still while the page's event stream is open
    // (a pending fetch), so the dump waits for the job's end; the budget
    // is what runs after it, made ample so that no timer of the page is
    // cut short.
    let page = chromium(profile.path())
        .args(["--virtual-time-budget=60000", "--dump-dom"])
        .arg(format!("{}/", served.base))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let metrics = served.get("/metrics").1;
        if metrics.lines().any(|l| l == "kiln_event_streams 1") {
            break;
        }
        let (_, job) = served.get(&format!("/v1/jobs/{id}"));
        assert!(!job.contains("\"failed\""), "{job}");
        assert!(
            Instant::now() < deadline,
            "the page opened no event stream: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The page follows the job: the gate opens and the last step ends.
    gate.set_nonblocking(true).unwrap();
    let mut conn = loop {
        match gate.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the last step never reached the gate"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("gate: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    let mut request = [0u8; 1024];
    let _ = std::io::Read::read(&mut conn, &mut request).unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nc\n",
    )
    .unwrap();
    drop(conn);
    let out = page.wait_with_output().unwrap();
    assert!(out.status.success());
    let dom = text(&out.stdout);
    assert!(dom.contains("data-live=\"on\""), "{dom}");
    assert!(
        dom.contains(&format!(
            "data-events=\"/v1/jobs/{id}/events\" data-ended=\"built\""
        )),
        "{dom}"
    );
    assert!(
        dom.contains(&format!(
            "<li data-step=\"4\" class=\"done\">[4/4] RUN timeout 600 wget -q -O /c http://127.0.0.1:{gate_port}/: done</li>"
        )),
        "{dom}"
    );
    // The stream is let go once the page is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !served
        .get("/metrics")
        .1
        .lines()
        .any(|l| l == "kiln_event_streams 0")
    {
        assert!(
            Instant::now() < deadline,
            "the page's event stream stayed counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served.wait(id)["status"], "built");

    // The page once the job is over, as a person sees it.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-serve-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(profile.path())
        .args(["--window-size=1000,700", "--hide-scrollbars"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("{}/", served.base))
        .output()
        .unwrap();
    assert!(out.status.success());
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let dom = text(
        &chromium(profile.path())
            .arg("--dump-dom")
            .arg(format!("{}/", served.base))
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        dom.contains(
            "<td>page</td><td class=\"status\"><a href=\"/jobs/1\">#1 built</a></td><td>0%</td>"
        ),
        "{dom}"
    );
    // The target's last jobs as a chart: one bar, the built job's.
    assert_eq!(dom.matches("<rect class=\"built\"").count(), 1, "{dom}");
    assert!(dom.contains("<title>#1 built "), "{dom}");
    assert!(dom.contains("<ul id=\"queue\"><li>empty</li>"), "{dom}");
    assert!(dom.contains(" of 10GB</p>"), "{dom}");

    // The job's page: its steps in order on a timeline, each miss's
    // reason, as a person sees it.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-serve-job.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(profile.path())
        .args(["--window-size=1200,700", "--hide-scrollbars"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("{}/jobs/{id}", served.base))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(&std::fs::read(&shot).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let dom = text(
        &chromium(profile.path())
            .arg("--dump-dom")
            .arg(format!("{}/jobs/{id}", served.base))
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        dom.contains(&format!(
            "<h1>job #{id} page: <span id=\"status\">built</span></h1>"
        )),
        "{dom}"
    );
    assert!(
        dom.contains("<th>steps cached / run</th><td>0 / 3</td>"),
        "{dom}"
    );
    let rows: Vec<&str> = dom.split("<tr data-step=\"").skip(1).collect();
    assert_eq!(rows.len(), 4, "{dom}");
    assert!(
        rows[1].starts_with("2\" class=\"done\"><td>[2/4] RUN sleep 1; echo a &gt; /a</td>"),
        "{dom}"
    );
    assert!(
        rows.iter().all(|r| r.contains("<svg class=\"timeline\"")),
        "{dom}"
    );
    assert!(
        rows[1].contains("<div class=\"explain\">"),
        "a miss says why: {dom}"
    );
    // The second RUN starts after the first, which slept a second.
    let x = |row: &str| -> f64 {
        let at = row.find("x=\"").unwrap() + 3;
        row[at..at + row[at..].find('"').unwrap()].parse().unwrap()
    };
    assert!(x(rows[2]) > x(rows[1]), "{dom}");
    assert_eq!(served.get("/jobs/999").0, 404);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Load: four clients send signed push webhooks and API reads, a bounded
/// number each (they stop by themselves): no request fails, every job a
/// webhook was given exists and ends built or warm, no job was made that
/// no webhook was given (none lost, none duplicated), and the service's
/// memory stays flat. `bench/serve.sh` runs the same load for 30 s and
/// reports requests/s and peak RSS.
#[test]
fn serve_takes_a_load_of_webhooks_and_reads() {
    if !need_root("builds run steps in containers")
        || !need_tool("git", "git targets are checked out with it")
    {
        return;
    }
    let Some(store) = store_with_box() else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "--quiet", "-b", "main"]);
    std::fs::write(r.join("a"), "a\n").unwrap();
    std::fs::write(r.join("Dockerfile"), "FROM box:1\nCOPY a /a\n").unwrap();
    git(r, &["add", "."]);
    git(r, &["commit", "--quiet", "-m", "one"]);
    let port = free_port();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "listen = \"127.0.0.1:{port}\"\ntoken = \"t\"\n[[target]]\nname = \"hooked\"\ngit = \"{}\"\nref = \"main\"\ntriggers = [\"push\"]\nwebhook_secret = \"s\"\n",
            r.display()
        ),
    )
    .unwrap();
    let served = Served::start(store.path(), config.path(), port);
    let pid = served.child.id();
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"clone_url": r.display().to_string()},
        "commits": [{"added": [], "modified": ["a"], "removed": []}],
    }))
    .unwrap();
    let signature = sign("s", &body);
    let base = served.base.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let load = |count: usize| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (base, body, signature) = (base.clone(), body.clone(), signature.clone());
                std::thread::spawn(move || {
                    let client = Served::client();
                    let (mut failed, mut jobs) = (Vec::new(), Vec::new());
                    for i in 0..count {
                        if Instant::now() > deadline {
                            break;
                        }
                        let r = match (c + i) % 4 {
                            0 => client
                                .post(format!("{base}/v1/hooks/github"))
                                .header("x-hub-signature-256", &signature)
                                .body(body.clone())
                                .send(),
                            1 => client.get(format!("{base}/v1/jobs")).send(),
                            2 => client.get(format!("{base}/v1/targets/hooked")).send(),
                            _ => client.get(format!("{base}/metrics")).send(),
                        };
                        match r {
                            Ok(r) if r.status().is_success() => {
                                let v: Value = serde_json::from_str(&r.text().unwrap_or_default())
                                    .unwrap_or(Value::Null);
                                if let Some(id) = v["queued"][0]["id"].as_i64() {
                                    jobs.push(id);
                                }
                            }
                            Ok(r) => failed.push(format!("{}", r.status())),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    (failed, jobs)
                })
            })
            .collect();
        let mut all = (Vec::new(), std::collections::BTreeSet::new());
        for c in clients {
            let (failed, jobs) = c.join().unwrap();
            all.0.extend(failed);
            all.1.extend(jobs);
        }
        all
    };
    let (failed, mut ids) = load(50);
    assert!(failed.is_empty(), "{failed:?}");
    let warm = rss_kib(pid);
    let (failed, more) = load(400);
    assert!(failed.is_empty(), "{failed:?}");
    ids.extend(more);
    assert!(
        ids.len() >= 2,
        "webhooks queued jobs one after another: {ids:?}"
    );
    let after = rss_kib(pid);
    assert!(
        after < warm + 30 * 1024,
        "memory grew from {warm} KiB to {after} KiB"
    );
    for &id in &ids {
        let job = served.wait(id);
        assert!(
            matches!(job["status"].as_str(), Some("built" | "warm")),
            "{job}"
        );
    }
    let jobs: Value = serde_json::from_str(&served.get("/v1/jobs").1).unwrap();
    let made: std::collections::BTreeSet<i64> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(made, ids, "every job made was one a webhook was given");
}

#[test]
fn serve_refuses_a_bad_config_naming_the_line() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "listen = \"127.0.0.1:1\"\nmax_job = 2\n").unwrap();
    let out = kiln()
        .args(["serve", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:1: unknown field `max_job`",
            config.path().display()
        )),
        "{err}"
    );
}

/// The configs people copy (README's example, the Kubernetes ConfigMap)
/// are valid, and kiln's own image's Dockerfile passes `kiln check`.
#[test]
fn documented_configs_and_the_deploy_dockerfile_are_valid() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme
        .find("### `kiln serve`")
        .expect("README has kiln serve")..];
    let start = section.find("```toml\n").expect("an example config") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let mut configs = vec![("README".to_string(), example.to_string())];
    for manifest in ["kiln-serve.yaml", "kiln-serve-replicas.yaml"] {
        let path = repo().join("deploy/kubernetes").join(manifest);
        let yaml = std::fs::read_to_string(&path).unwrap();
        let configmap: String = yaml
            .split("kiln-serve.toml: |\n")
            .nth(1)
            .expect("the ConfigMap's config")
            .lines()
            .take_while(|l| l.starts_with("    "))
            .map(|l| format!("{}\n", &l[4..]))
            .collect();
        configs.push((manifest.to_string(), configmap));
        // Every document is YAML a cluster would take: its kinds, in order.
        if need_tool("python3", "python3-yaml reads the manifests") {
            let kinds = Command::new("python3")
                .args([
                    "-c",
                    "import sys, yaml; print(' '.join(d['kind'] for d in yaml.safe_load_all(open(sys.argv[1]))))",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                kinds.status.success(),
                "{manifest}: {}",
                text(&kinds.stderr)
            );
            let expected = match manifest {
                "kiln-serve.yaml" => "ConfigMap PersistentVolumeClaim Deployment Service\n",
                _ => "Secret ConfigMap Deployment PodDisruptionBudget Service\n",
            };
            assert_eq!(text(&kinds.stdout), expected, "{manifest}");
        }
    }
    for (name, config) in configs {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &config).unwrap();
        let out = kiln()
            .args(["serve", "--check", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{config}",
            text(&out.stderr)
        );
    }
    let out = kiln()
        .args(["check", "-f"])
        .arg(repo().join("deploy/Dockerfile"))
        .arg(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A PostgreSQL server of Debian's packages in a temporary directory, on
/// 127.0.0.1 (trust for user `kiln`, database `serve`), stopped when
/// dropped.
struct Postgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    /// None (the test skips) without its binaries, outside CI.
    fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).max())
            .filter(|b| b.join("initdb").exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL's server is missing: .ci/run installs postgresql"
            );
            eprintln!("skipped: PostgreSQL's server is not installed (apt-get install postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // initdb refuses root: the packages' own user runs it.
        let owner = Command::new("chown")
            .args(["postgres:"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(owner.success(), "chown postgres");
        let port = free_port();
        let as_postgres = |tool: &str, args: &[&str]| {
            let out = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join(tool))
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{tool}: {}", text(&out.stderr));
        };
        let data = dir.path().join("data");
        let d = data.to_str().unwrap();
        as_postgres("initdb", &["-D", d, "-A", "trust", "-U", "kiln"]);
        let opts = format!("-k {} -p {port} -h 127.0.0.1", dir.path().display());
        let log = dir.path().join("log");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                d,
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        let pg = Postgres { bin, dir, port };
        pg.sql_in("postgres", "CREATE DATABASE serve");
        Some(pg)
    }

    fn url(&self) -> String {
        format!("postgres://kiln@127.0.0.1:{}/serve", self.port)
    }

    fn sql_in(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-At", "-F", "|", "-h", "127.0.0.1", "-U", "kiln", "-d", db])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Rows of `sql` against the service's database, fields split.
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        self.sql_in("serve", sql)
            .lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// Commits `dockerfile` to the git target `repo`, pushes it to `to`, and
/// waits until its job runs somewhere: the job and its replica.
fn slow_job_running(pg: &Postgres, to: &Served, repo: &Path, dockerfile: &str) -> (i64, String) {
    std::fs::write(repo.join("Dockerfile"), dockerfile).unwrap();
    git(repo, &["commit", "--quiet", "-am", "slow"]);
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"clone_url": repo.display().to_string()},
        "commits": [{"added": [], "modified": ["Dockerfile"], "removed": []}],
    }))
    .unwrap();
    let (status, answer) = to.post(
        "/v1/hooks/github",
        &[("x-hub-signature-256", &sign("s", &body))],
        &body,
    );
    assert_eq!(status, 202, "{answer}");
    let id = answer["queued"][0]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = pg.rows(&format!(
            "SELECT status, coalesce(replica, '') FROM jobs WHERE id = {id}"
        ));
        if row[0][0] == "running" {
            return (id, row[0][1].clone());
        }
        assert!(Instant::now() < deadline, "job {id} never ran: {row:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 31's measure: three replicas share one PostgreSQL. 30 git
/// targets, 200 signed pushes spread over the replicas, one replica
/// killed with -9 while a job of its runs. Every push's job ends built or
/// warm (the killed replica's job taken back once its lease ran out and
/// run by another), no two jobs of a target ever overlap (from the job
/// table's times), triggers coalesce across replicas. Then a job taken
/// back while its build runs is run by another replica and stopped by
/// the first; a second replica killed mid-job leaves its job to the last.
/// Every replica's store passes fsck, and a replica refuses a schema
/// newer than it knows.
#[test]
fn replicas_share_postgres_and_survive_a_kill() {
    if !need_root("builds run steps in containers; initdb runs as postgres")
        || !need_tool("git", "the targets are git repositories")
        || !need_tool("psql", "the test reads the job table")
    {
        return;
    }
    let Some(pg) = Postgres::start() else {
        return;
    };
    const TARGETS: usize = 30;
    const PUSHES: usize = 200;
    let repos = tempfile::tempdir().unwrap();
    let mut targets = String::new();
    for t in 0..TARGETS {
        let r = repos.path().join(format!("r{t}"));
        std::fs::create_dir(&r).unwrap();
        git(&r, &["init", "--quiet", "-b", "main"]);
        std::fs::write(r.join("a"), format!("{t}\n")).unwrap();
        // A second of work: long enough to be caught running.
        std::fs::write(
            r.join("Dockerfile"),
            "FROM box:1\nCOPY a /a\nRUN sleep 1 && cat /a > /b\n",
        )
        .unwrap();
        git(&r, &["add", "."]);
        git(&r, &["commit", "--quiet", "-m", "one"]);
        targets.push_str(&format!(
            "[[target]]\nname = \"t{t}\"\ngit = \"{}\"\nref = \"main\"\ntriggers = [\"push\"]\nwebhook_secret = \"s\"\n",
            r.display()
        ));
    }
    let mut replicas = Vec::new();
    let mut stores = Vec::new();
    let mut configs = Vec::new();
    for n in 0..3 {
        let Some(store) = store_with_box() else {
            return;
        };
        let port = free_port();
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            format!(
                "listen = \"127.0.0.1:{port}\"\nmax_jobs = 2\n[state]\nurl = \"{}\"\nreplica = \"r{n}\"\nlease_seconds = 3\npoll_ms = 200\n{targets}",
                pg.url()
            ),
        )
        .unwrap();
        replicas.push(Some(Served::start(store.path(), config.path(), port)));
        stores.push(store);
        configs.push(config);
    }
    let bases: Vec<String> = replicas
        .iter()
        .map(|r| r.as_ref().unwrap().base.clone())
        .collect();
    // The pushes, from four clients at once, each to the replica its
    // number picks.
    let pushes: Vec<_> = (0..4)
        .map(|c| {
            let (bases, repos) = (bases.clone(), repos.path().to_path_buf());
            std::thread::spawn(move || {
                let client = Served::client();
                let mut queued = Vec::new();
                for i in (c..PUSHES).step_by(4) {
                    let repo = repos.join(format!("r{}", i % TARGETS));
                    let body = serde_json::to_vec(&serde_json::json!({
                        "ref": "refs/heads/main",
                        "repository": {"clone_url": repo.display().to_string()},
                        "commits": [{"added": [], "modified": ["a"], "removed": []}],
                    }))
                    .unwrap();
                    // Each replica gets its share, until one is killed.
                    let order = [i % 3, (i + 1) % 3, (i + 2) % 3];
                    let answered = order.iter().find_map(|&r| {
                        client
                            .post(format!("{}/v1/hooks/github", bases[r]))
                            .header("x-hub-signature-256", sign("s", &body))
                            .body(body.clone())
                            .send()
                            .ok()
                            .filter(|a| a.status().is_success())
                    });
                    let answer: Value = answered
                        .and_then(|a| a.text().ok())
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or(Value::Null);
                    let ids: Vec<i64> = answer["queued"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|j| j["id"].as_i64())
                        .collect();
                    assert!(!ids.is_empty(), "push {i} queued nothing: {answer}");
                    queued.extend(ids);
                }
                queued
            })
        })
        .collect();
    // Kill, with -9, the first replica seen running a job, while it runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (victim, lost_job) = loop {
        let running = pg.rows("SELECT replica, id FROM jobs WHERE status = 'running' LIMIT 1");
        if let Some(row) = running.first() {
            let n: usize = row[0].trim_start_matches('r').parse().unwrap();
            let mut served = replicas[n].take().unwrap();
            served.child.kill().unwrap();
            served.child.wait().unwrap();
            break (n, row[1].parse::<i64>().unwrap());
        }
        assert!(Instant::now() < deadline, "no job ever ran");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut queued: std::collections::BTreeSet<i64> = Default::default();
    for p in pushes {
        queued.extend(p.join().unwrap());
    }
    // Everything ends: nothing queued or running (the victim's job taken
    // back once its lease ran out).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let open = pg.rows("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')");
        if open[0][0] == "0" {
            break;
        }
        let logs: Vec<String> = replicas.iter().flatten().map(Served::log_text).collect();
        assert!(
            Instant::now() < deadline,
            "jobs still open: {:?}\n{}",
            pg.rows(
                "SELECT id, target, status, replica FROM jobs WHERE status IN ('queued', 'running')"
            ),
            logs.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let jobs = pg.rows(
        "SELECT id, target, status, coalesce(started_at, ''), coalesce(finished_at, ''), coalesce(replica, ''), coalesce(error, '') FROM jobs ORDER BY id",
    );
    let by_id: std::collections::BTreeMap<i64, &Vec<String>> =
        jobs.iter().map(|j| (j[0].parse().unwrap(), j)).collect();
    // Every push's job ended built or warm, or (lost) handed its triggers
    // to a job of its target that did.
    for id in &queued {
        let j = by_id[id];
        match j[2].as_str() {
            "built" | "warm" => {}
            "lost" => {
                let to: i64 = j[6].rsplit(' ').next().unwrap().parse().unwrap();
                assert!(matches!(by_id[&to][2].as_str(), "built" | "warm"), "{j:?}");
            }
            other => panic!("job {id} ended {other}: {j:?}"),
        }
    }
    assert_eq!(
        queued,
        by_id.keys().copied().collect(),
        "every job in the table was one a push was given"
    );
    // Triggers coalesced across replicas: fewer jobs than pushes, and
    // every target built.
    assert!(
        jobs.len() < PUSHES,
        "{} jobs for {PUSHES} pushes",
        jobs.len()
    );
    for t in 0..TARGETS {
        assert!(
            jobs.iter().any(|j| j[1] == format!("t{t}")),
            "t{t} never ran"
        );
    }
    // The killed replica's job was run again, by another replica.
    let lost = by_id[&lost_job];
    assert!(
        (matches!(lost[2].as_str(), "built" | "warm") && lost[5] != format!("r{victim}"))
            || lost[2] == "lost",
        "the victim's job {lost:?}"
    );
    eprintln!(
        "{PUSHES} pushes over 3 replicas: {} jobs ({} lost to a merge); r{victim} killed running job {lost_job}, which ended {} on {}",
        jobs.len(),
        jobs.iter().filter(|j| j[2] == "lost").count(),
        lost[2],
        lost[5]
    );
    // Never two jobs of one target at once.
    let mut spans: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
    for j in jobs.iter().filter(|j| !j[3].is_empty()) {
        spans.entry(&j[1]).or_default().push((&j[3], &j[4]));
    }
    for (target, mut s) in spans {
        s.sort();
        for w in s.windows(2) {
            assert!(w[0].1 <= w[1].0, "{target}: {:?} overlaps {:?}", w[0], w[1]);
        }
    }
    // A job taken back while its build still runs (as the others see a
    // replica cut off for longer than a lease): another replica runs it,
    // and the first, whose renewal no longer holds it, stops its build.
    let (id, holder) = slow_job_running(
        &pg,
        replicas.iter().flatten().next().unwrap(),
        &repos.path().join("r0"),
        "FROM box:1\nCOPY a /a\nRUN sleep 3\nRUN echo after > /c\n",
    );
    // Any replica's page shows the fleet's leases.
    let (_, page) = replicas.iter().flatten().last().unwrap().get("/");
    assert!(
        page.contains(&format!(
            "{holder}: <a href=\"/jobs/{id}\">job #{id}</a> t0 (lease until "
        )),
        "{page}"
    );
    pg.sql_in(
        "serve",
        &format!("UPDATE jobs SET status = 'queued', started_at = NULL, replica = NULL, lease_until = NULL WHERE id = {id}"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let ended = loop {
        let row = pg.rows(&format!(
            "SELECT status, coalesce(replica, '') FROM jobs WHERE id = {id}"
        ));
        if !matches!(row[0][0].as_str(), "queued" | "running") {
            break row[0].clone();
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {row:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ended[0], "built", "{ended:?}");
    assert_ne!(ended[1], holder, "the replica that lost it ran it again");
    let n: usize = holder.trim_start_matches('r').parse().unwrap();
    let said = format!("job {id} lost its lease");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !replicas[n].as_ref().unwrap().log_text().contains(&said) {
        assert!(
            Instant::now() < deadline,
            "{holder} never stopped job {id}: {}",
            replicas[n].as_ref().unwrap().log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second replica killed while the only job of its target runs: the
    // last one takes it back from the queue (same job) once the lease ran
    // out, and builds it.
    let (id, holder) = slow_job_running(
        &pg,
        replicas.iter().flatten().next().unwrap(),
        &repos.path().join("r1"),
        "FROM box:1\nCOPY a /a\nRUN sleep 2 && echo slow > /c\n",
    );
    let n: usize = holder.trim_start_matches('r').parse().unwrap();
    let mut served = replicas[n].take().unwrap();
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    let last = replicas.iter().flatten().next().unwrap();
    let job = last.wait(id);
    assert_eq!(job["status"], "built", "{job}");
    let row = pg.rows(&format!("SELECT replica FROM jobs WHERE id = {id}"));
    assert_ne!(row[0][0], holder, "{row:?}");
    drop(replicas);
    for store in &stores {
        let fsck = kiln()
            .arg("--root")
            .arg(store.path())
            .arg("fsck")
            .output()
            .unwrap();
        assert!(fsck.status.success(), "fsck: {}", text(&fsck.stderr));
    }
    // A replica refuses a schema newer than it knows.
    pg.sql_in("serve", "INSERT INTO kiln_schema VALUES (99)");
    let refused = kiln()
        .arg("--root")
        .arg(stores[0].path())
        .args(["serve", "--config"])
        .arg(configs[0].path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("has schema 99, newer than this kiln knows (2)"),
        "{}",
        text(&refused.stderr)
    );
}

/// `[cache] repo`: the service writes every step of its targets into the
/// fleet's step cache, once; a runner building another Dockerfile that
/// shares the first step finds it there by its key.
#[test]
fn serve_writes_the_fleets_step_cache() {
    if !need_root("builds run steps in containers") {
        return;
    }
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(store) = store_with_box() else {
        return;
    };
    let repo = format!("{}/team/fleet", reg.host());
    // One base for both (a key starts from its base's image id).
    let base = format!("{}/kiln/base:1", reg.host());
    ok(k(store.path(), &[], &["push", "box:1", &base]));
    let (served, _ctx, _config) = serve_local(
        store.path(),
        "app",
        &format!("FROM {base}\nRUN echo shared > /s\nRUN echo app > /a\n"),
        &format!("[cache]\nrepo = \"{repo}\"\n"),
    );
    let (_, job) = served.post("/v1/targets/app/warm", &[], b"");
    let done = served.wait(job["id"].as_i64().unwrap());
    assert_eq!(done["status"], "built", "{done}");
    let tags = reg_tags(&reg, "team/fleet");
    assert_eq!(tags.len(), 2, "a tag per step: {tags:?}");
    assert!(tags.iter().all(|t| t.starts_with("k-")), "{tags:?}");
    let runner = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo shared > /s\nRUN echo other > /o\n"),
    )
    .unwrap();
    let out = kiln()
        .arg("--root")
        .arg(runner.path())
        .args(["build", "--progress=plain"])
        .arg(format!("--cache-from=type=registry,ref={repo},mode=steps"))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    let cached: Vec<&str> = said.lines().filter(|l| l.ends_with(" CACHED")).collect();
    assert_eq!(cached.len(), 1, "{said}");
    assert!(said.contains("RUN echo shared > /s\n#2 CACHED\n"), "{said}");
}

/// `[cache] max_size`: after a job, the fleet's step cache keeps the
/// steps used most recently within the bound; older ones are deleted
/// from the registry, and the page says what is left against the bound.
#[test]
fn serve_keeps_the_fleets_step_cache_within_its_bound() {
    if !need_root("builds run steps in containers") {
        return;
    }
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(store) = store_with_box() else {
        return;
    };
    let repo = format!("{}/team/bounded", reg.host());
    let dirs: Vec<tempfile::TempDir> = ["a", "b"]
        .iter()
        .map(|name| {
            let d = tempfile::tempdir().unwrap();
            // 100 kB that do not compress: one step's layer.
            std::fs::write(
                d.path().join("Dockerfile"),
                format!("FROM box:1\nRUN head -c 100000 /dev/urandom > /{name}\n"),
            )
            .unwrap();
            d
        })
        .collect();
    let port = free_port();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "listen = \"127.0.0.1:{port}\"\n[cache]\nrepo = \"{repo}\"\nmax_size = \"150KB\"\n[[target]]\nname = \"a\"\ncontext = \"{}\"\n[[target]]\nname = \"b\"\ncontext = \"{}\"\n",
            dirs[0].path().display(),
            dirs[1].path().display()
        ),
    )
    .unwrap();
    let served = Served::start(store.path(), config.path(), port);
    let warm = |name: &str| {
        let (_, job) = served.post(&format!("/v1/targets/{name}/warm"), &[], b"");
        let done = served.wait(job["id"].as_i64().unwrap());
        assert_eq!(done["status"], "built", "{done}");
    };
    warm("a");
    let after_a = reg_tags(&reg, "team/bounded");
    assert_eq!(after_a.len(), 1, "{after_a:?}");
    warm("b");
    // Both do not fit in 150 kB: a's step, used longest ago, went.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = reg_tags(&reg, "team/bounded");
        if now.len() == 1 && now != after_a {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tags {now:?} (a's was {after_a:?}): {}",
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        served.log_text().contains("deleted 1"),
        "{}",
        served.log_text()
    );
    let (_, page) = served.get("/");
    assert!(
        page.contains(&format!("<p id=\"fleet\">{repo}: 1 steps, "))
            && page.contains(" of 150KB</p>"),
        "{page}"
    );
}
