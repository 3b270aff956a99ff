//! `POST /build`: the classic builder's API (what `DOCKER_BUILDKIT=0 docker
//! build` and docker-py's `images.build` call). The context arrives as a
//! tar (plain or gzip), unpacked with the same escape checks as a layer;
//! kiln's own builder builds it; its plain progress goes back as the
//! classic builder's JSON lines, then the image id.

use super::wire::url_pairs;
use super::{ApiError, Shared, flag};
use crate::builder::{self, Options};
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::collections::HashMap;
use std::io::Write;

pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/build", axum::routing::post(build_image))
}

/// A writer whose lines go to the response as `{"stream": line}`.
struct Lines(tokio::sync::mpsc::Sender<Vec<u8>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf).into_owned();
        let line = serde_json::json!({ "stream": text }).to_string() + "\n";
        self.0
            .blocking_send(line.into_bytes())
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_map(q: &HashMap<String, String>, key: &str) -> Result<Vec<(String, String)>, ApiError> {
    let Some(text) = q.get(key).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ApiError::bad(format!("invalid {key}: {e}")))?;
    Ok(super::wire::string_pairs(&v))
}

async fn build_image(
    State(state): State<Shared>,
    raw: axum::http::Request<Body>,
) -> Result<Response, ApiError> {
    let pairs = url_pairs(raw.uri().query().unwrap_or_default());
    let all = |key: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    };
    // A key given twice means its first value, as dockerd's Go reads it
    // (docker-py 5 sends `dockerfile` twice for a Dockerfile from outside
    // the context: its name in the tar, then its text).
    let mut q: HashMap<String, String> = HashMap::new();
    for (k, v) in &pairs {
        q.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let tags = all("t");
    let extra_hosts = all("extrahosts")
        .iter()
        .flat_map(|h| h.split(',').map(str::to_string).collect::<Vec<_>>())
        .map(|h| crate::container::options::parse_add_host(&h).map_err(ApiError::bad))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = Vec::new();
    for t in &tags {
        names.push(
            super::wire::familiar(t)
                .parse::<crate::image::Name>()
                .map_err(ApiError::bad)?,
        );
    }
    if let Some(remote) = q.get("remote").filter(|r| !r.is_empty()) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            format!("kiln's API builds a context sent as a tar, not remote {remote:?} yet"),
        ));
    }
    // The context, streamed to a file: it may be large.
    let work = tempfile::Builder::new()
        .prefix("kiln-api-build")
        .tempdir()
        .map_err(|e| ApiError::internal(format!("a directory for the context: {e}")))?;
    let tar_path = work.path().join("context.tar");
    let file = std::fs::File::create(&tar_path)
        .map_err(|e| ApiError::internal(format!("writing the context: {e}")))?;
    super::body_to_file(raw.into_body(), &file, "context").await?;
    drop(file);
    let opts = Options {
        label: None,
        context: work.path().join("context"),
        tags: names,
        build_args: json_map(&q, "buildargs")?,
        labels: json_map(&q, "labels")?,
        target: q.get("target").filter(|t| !t.is_empty()).cloned(),
        no_cache: flag(q.get("nocache")),
        // docker build --pull: the bases are fetched again, the
        // registry's tag may have moved.
        pull: match flag(q.get("pull")) {
            true => builder::Pull::Always,
            false => builder::Pull::Missing,
        },
        network: match q.get("networkmode").map(String::as_str) {
            Some("none") => builder::DefaultNetwork::None,
            _ => builder::DefaultNetwork::Host,
        },
        registry: crate::registry::Options::from_env(),
        add_hosts: extra_hosts,
        ..Options::default()
    };
    let dockerfile = q
        .get("dockerfile")
        .filter(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| "Dockerfile".into());
    let quiet = flag(q.get("q"));
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let gc = state.gc.clone().read_owned().await;
    tokio::task::spawn_blocking(move || {
        let _gc = gc;
        let say = |v: serde_json::Value| {
            let _ = tx.blocking_send((v.to_string() + "\n").into_bytes());
        };
        let fail = |message: String| {
            say(serde_json::json!({ "errorDetail": { "message": message }, "error": message }));
        };
        let context = work.path().join("context");
        if let Err(e) = std::fs::create_dir(&context) {
            return fail(format!("unpacking the context: {e}"));
        }
        let unpacked = std::fs::File::open(&tar_path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                crate::layer::apply(f, &context, crate::layer::Mode::Flatten)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = unpacked {
            return fail(format!("unpacking the context: {e}"));
        }
        // The Dockerfile is found inside the context, never outside it.
        let root = match crate::sandbox::fs::Root::open(&context) {
            Ok(r) => r,
            Err(e) => return fail(format!("opening the context: {e}")),
        };
        let read = root.open_read(&dockerfile).and_then(|mut f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
        });
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                return fail(format!(
                    "Cannot locate specified Dockerfile: {dockerfile} ({e})"
                ));
            }
        };
        let source = crate::dockerfile::Source::new(dockerfile.clone(), &bytes);
        let mut opts = opts;
        opts.dockerfile = root.real_path(&dockerfile).ok();
        let progress = match quiet {
            true => crate::progress::Progress::quiet(),
            false => crate::progress::Progress::plain(Box::new(Lines(tx.clone()))),
        };
        let built = builder::build(&state.store, &source, &opts, &progress);
        drop(progress);
        // Without a name the image stays, as docker's `<none>:<none>`,
        // found by its id until pruned.
        if let Ok((image, _)) = &built
            && tags.is_empty()
            && let Err(e) = state.store.keep_untagged(image.descriptor(&state.store))
        {
            return fail(e.to_string());
        }
        match built {
            // Quiet, the id alone is the output: docker's CLI prints what
            // the stream says as the build's id.
            // The report goes before the ID: docker's CLI keeps the last
            // aux message's ID as the build's.
            Ok((image, report)) if quiet => {
                say(serde_json::json!({ "aux": { "kiln.build.report": report.to_json(None) } }));
                say(serde_json::json!({ "aux": { "ID": image.id.to_string() } }));
                say(serde_json::json!({ "stream": format!("{}\n", image.id) }));
            }
            Ok((image, report)) => {
                say(serde_json::json!({ "aux": { "kiln.build.report": report.to_json(None) } }));
                say(serde_json::json!({ "aux": { "ID": image.id.to_string() } }));
                say(
                    serde_json::json!({ "stream": format!("Successfully built {}\n", image.id.short()) }),
                );
                for t in &tags {
                    say(serde_json::json!({ "stream": format!("Successfully tagged {t}\n") }));
                }
            }
            // The classic builder's words for a RUN that failed, which
            // its clients (docker-py's BuildError) look for.
            Err(builder::BuildError::Step {
                exit: Some(exit), ..
            }) => fail(format!(
                "The command '{}' returned a non-zero code: {}",
                exit.0, exit.1
            )),
            Err(e) => fail(e.to_string()),
        }
    });
    // As dockerd: a build that fails before it said anything (no context,
    // no Dockerfile, one that does not parse) is an HTTP error, which
    // clients raise at once; once it has said something, the error is in
    // the stream.
    let mut rx = rx;
    let first = rx.recv().await;
    if let Some(line) = &first
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
        && let Some(message) = v["error"].as_str()
    {
        return Err(ApiError::bad(message.to_string()));
    }
    let stream = futures::stream::iter(first)
        .chain(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
        .map(Ok::<_, std::io::Error>);
    Ok((
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::super::wire::percent_decode;

    #[test]
    fn percent_decoding_takes_hex_pairs_and_never_splits_a_character() {
        assert_eq!(percent_decode("a%2Fb+c%zz"), "a/b c%zz");
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("é%"), "é%");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
