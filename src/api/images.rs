//! `/images/...`: list, inspect, history, tag, remove.

use super::wire::{familiar, written_body};
use super::{ApiError, Shared, blocking};
use crate::image::{Image, manifest_digest};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use std::collections::HashMap;

pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/images/json", get(list))
        .route("/images/create", axum::routing::post(create))
        .route("/images/get", get(save))
        .route("/images/load", axum::routing::post(load))
        .route("/images/prune", axum::routing::post(prune))
        .route(
            "/images/{*rest}",
            get(by_name).post(by_name_post).delete(remove),
        )
}

fn unix(rfc3339: Option<&str>) -> i64 {
    rfc3339
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp())
}

async fn list(State(state): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || Ok(Json(serde_json::Value::Array(summaries(&state.store)?)))).await
}

/// Every image as `GET /images/json` lists it: one entry per image, with
/// every name it has (`<none>:<none>` for one without).
pub(super) fn summaries(store: &crate::store::Store) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut by_id: Vec<(Image, Vec<String>)> = Vec::new();
    for (name, d) in store.images()? {
        let image = Image::load(store, &manifest_digest(&d)?)?;
        match by_id.iter_mut().find(|(i, _)| i.id == image.id) {
            Some((_, names)) => names.extend(name),
            None => by_id.push((image, name.into_iter().collect())),
        }
    }
    Ok(by_id
        .into_iter()
        .map(|(image, names)| {
            serde_json::json!({
                "Id": image.id.to_string(),
                "ParentId": "",
                // docker's words for an image without a name.
                "RepoDigests": if names.is_empty() { vec!["<none>@<none>".to_string()] } else { Vec::new() },
                "RepoTags": if names.is_empty() { vec!["<none>:<none>".to_string()] } else { names },
                "Created": unix(image.config.created.as_deref()),
                "Size": image.size(),
                "VirtualSize": image.size(),
                "SharedSize": -1,
                "Labels": image.config.config.labels.clone().unwrap_or_default(),
                "Containers": -1,
            })
        })
        .collect())
}

/// `NAME/json`, `NAME/history` or `NAME/get` (names hold slashes).
async fn by_name(
    State(state): State<Shared>,
    Path(rest): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    // `docker save NAME` of one image, as `/images/get?names=NAME`.
    if let Some(name) = rest.strip_suffix("/get") {
        return save_names(state, vec![familiar(name).to_string()]).await;
    }
    by_name_json(state, rest)
        .await
        .map(IntoResponse::into_response)
}

/// `NAME/json` or `NAME/history`.
async fn by_name_json(state: Shared, rest: String) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let store = &state.store;
        if let Some(name) = rest.strip_suffix("/json") {
            let name = familiar(name);
            let image = Image::resolve(store, name)
                .map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
            return Ok(Json(image.docker_json(store)?));
        }
        if let Some(name) = rest.strip_suffix("/history") {
            let name = familiar(name);
            let image = Image::resolve(store, name)
                .map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
            let history: Vec<serde_json::Value> = image
                .config
                .history
                .iter()
                .rev()
                .map(|h| {
                    serde_json::json!({
                        "Id": "<missing>",
                        "Created": unix(h.created.as_deref()),
                        "CreatedBy": h.created_by.clone().unwrap_or_default(),
                        "Tags": null,
                        "Size": 0,
                        "Comment": h.comment.clone().unwrap_or_default(),
                    })
                })
                .collect();
            return Ok(Json(serde_json::Value::Array(history)));
        }
        Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("kiln does not implement GET /images/{rest} of Docker's API"),
        ))
    })
    .await
}

/// `GET /images/get?names=A&names=B` (`docker save`): a docker-archive
/// of the images, streamed as it is written.
async fn save(
    State(state): State<Shared>,
    raw: axum::http::Request<axum::body::Body>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let names: Vec<String> = raw
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("names="))
        .map(super::wire::percent_decode)
        .map(|n| familiar(&n).to_string())
        .collect();
    save_names(state, names)
        .await
        .map(IntoResponse::into_response)
}

async fn save_names(
    state: Shared,
    names: Vec<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if names.is_empty() {
        return Err(ApiError::bad("names is required"));
    }
    let images = blocking({
        let state = state.clone();
        move || {
            names
                .iter()
                .map(|n| {
                    Image::resolve(&state.store, n)
                        .map(|i| (n.clone(), i))
                        .map_err(|_| ApiError::not_found(format!("No such image: {n}")))
                })
                .collect::<Result<Vec<_>, ApiError>>()
        }
    })
    .await?;
    let body = written_body(move |out| {
        crate::image::archive::save(
            &state.store,
            &images,
            out,
            crate::image::archive::Format::Docker,
            crate::layer::Compression::None,
        )
        .map_err(|e| e.to_string())
    });
    Ok(([("content-type", "application/x-tar")], body).into_response())
}

/// `POST /images/load` (`docker load`): a docker-archive or OCI archive,
/// plain or compressed.
async fn load(
    State(state): State<Shared>,
    raw: axum::http::Request<axum::body::Body>,
) -> Result<axum::response::Response, ApiError> {
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::internal(format!("a file for the archive: {e}")))?;
    super::body_to_file(raw.into_body(), tmp.as_file(), "archive").await?;
    let gc = state.gc.clone().read_owned().await;
    blocking(move || {
        let _gc = gc;
        let file = std::fs::File::open(tmp.path())
            .map_err(|e| ApiError::internal(format!("reading the archive: {e}")))?;
        // As dockerd: the answer is a stream, a bad archive an error in
        // it (clients raise their load error from it).
        let loaded = match crate::image::archive::load(&state.store, file) {
            Ok(l) => l,
            Err(e) => {
                let m = e.to_string();
                return Ok(lines(&[
                    serde_json::json!({ "errorDetail": { "message": m }, "error": m }),
                ]));
            }
        };
        let mut out: Vec<serde_json::Value> = loaded
            .names
            .iter()
            .map(|n| serde_json::json!({ "stream": format!("Loaded image: {n}\n") }))
            .collect();
        out.extend(
            loaded
                .untagged
                .iter()
                .map(|id| serde_json::json!({ "stream": format!("Loaded image ID: {id}\n") })),
        );
        Ok(lines(&out))
    })
    .await
}

/// `POST /images/prune` (`docker image prune`): what no name reaches goes
/// (kiln's images without a name are docker's dangling ones); with
/// `dangling=false` (`-a`), every image no container was made from loses
/// its names first. Waits for the builds, pulls and loads in flight.
async fn prune(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filters = super::filters_of(&q, &["dangling", "until", "label", "label!"])?;
    if let Some(k) = ["until", "label", "label!"]
        .iter()
        .find(|k| filters.contains_key(**k))
    {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("kiln's API does not prune images by {k} yet"),
        ));
    }
    let all = filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
    let gc = state.gc.clone().write_owned().await;
    blocking(move || {
        let _gc = gc;
        let store = &state.store;
        let busy = || {
            ApiError::new(
                StatusCode::CONFLICT,
                "another kiln process has the store open: prune when it is done",
            )
        };
        // Asked first: no name is taken for a prune that cannot run.
        if store.exclusive(|| Ok::<_, crate::store::StoreError>(()))?.is_none() {
            return Err(busy());
        }
        let mut deleted = Vec::new();
        let used: std::collections::BTreeSet<String> = crate::container::list(store)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_iter()
            .map(|c| c.record.image_id)
            .collect();
        for id in crate::image::prune::forget_dangling(store, &used)? {
            deleted.push(serde_json::json!({ "Deleted": id }));
        }
        if all {
            for (name, d) in store.tags()? {
                let in_use = crate::image::index::ids(store, &d)
                    .iter()
                    .any(|i| used.contains(i));
                if !in_use && store.untag(&name)?.is_some() {
                    deleted.push(serde_json::json!({ "Untagged": name }));
                }
            }
        }
        let in_use = crate::container::snapshots_in_use(store);
        let pruned = crate::image::prune::prune(store, None, &in_use)?.ok_or_else(busy)?;
        // Their `delete` events were told when their last names went.
        for id in &pruned.images {
            let entry = serde_json::json!({ "Deleted": id.to_string() });
            if !deleted.contains(&entry) {
                deleted.push(entry);
            }
        }
        Ok(Json(serde_json::json!({
            "ImagesDeleted": if deleted.is_empty() { serde_json::Value::Null } else { deleted.into() },
            "SpaceReclaimed": pruned.bytes,
        })))
    })
    .await
}

/// A writer whose bytes go down a channel (a transfer's progress, from
/// async code: it never blocks).
struct Sink(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs a pull or push (`work`, given Docker's progress reporter) with its
/// progress streamed to the client as docker streams it: `head` first,
/// each blob's messages as they come, then what `finish` makes of the
/// result. A failure before any progress is answered with `status` (a
/// pull of a missing image is docker's 404); after it, in the stream as
/// docker's `errorDetail`.
async fn streamed<T, Fut>(
    verb: &'static str,
    head: Vec<serde_json::Value>,
    status: StatusCode,
    work: impl FnOnce(std::sync::Arc<crate::progress::Transfers>) -> Fut,
    finish: impl FnOnce(T) -> Vec<serde_json::Value> + Send + 'static,
) -> Result<axum::response::Response, ApiError>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    use axum::response::IntoResponse;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let transfers =
        std::sync::Arc::new(crate::progress::Transfers::docker(Box::new(Sink(tx)), verb));
    let mut task = tokio::spawn(work(transfers));
    // The first progress, or the end: which decides the status.
    let first = tokio::select! {
        // The end first when both are ready.
        biased;
        done = &mut task => Err(done),
        chunk = rx.recv() => Ok(chunk),
    };
    let (first_chunk, ended) = match first {
        Err(Ok(Err(e))) => return Err(ApiError::new(status, e)),
        Err(done) => (None, Some(done)),
        Ok(Some(chunk)) => (Some(chunk), None),
        // The reporter is gone without a word: the work ended (its end
        // may not be told yet); it decides.
        Ok(None) => match (&mut task).await {
            Ok(Err(e)) => return Err(ApiError::new(status, e)),
            done => (None, Some(done)),
        },
    };
    let (btx, brx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    tokio::spawn(async move {
        let line = |v: serde_json::Value| Ok((v.to_string() + "\n").into_bytes());
        for v in head {
            let _ = btx.send(line(v)).await;
        }
        // The progress, in order, until the work (and its reporter) ends.
        if let Some(c) = first_chunk {
            let _ = btx.send(Ok(c)).await;
        }
        while let Some(c) = rx.recv().await {
            let _ = btx.send(Ok(c)).await;
        }
        let result = match ended {
            Some(done) => done,
            None => task.await,
        };
        let tail = match result {
            Ok(Ok(v)) => finish(v),
            Ok(Err(e)) => vec![serde_json::json!({ "errorDetail": { "message": e }, "error": e })],
            Err(e) => {
                let e = e.to_string();
                vec![serde_json::json!({ "errorDetail": { "message": e }, "error": e })]
            }
        };
        for v in tail {
            let _ = btx.send(line(v)).await;
        }
    });
    Ok((
        [("content-type", "application/json")],
        axum::body::Body::from_stream(super::wire::tokio_stream(brx)),
    )
        .into_response())
}

/// JSON lines of a pull or push, as docker's progress shows them.
fn lines(values: &[serde_json::Value]) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body: String = values.iter().map(|v| v.to_string() + "\n").collect();
    ([("content-type", "application/json")], body).into_response()
}

/// `POST /images/create`: a pull (`fromImage`), or an import of the
/// tarball in the body (`fromSrc=-`, `docker import`).
async fn create(
    State(state): State<Shared>,
    raw: axum::http::Request<axum::body::Body>,
) -> Result<axum::response::Response, ApiError> {
    let pairs = super::wire::url_pairs(raw.uri().query().unwrap_or_default());
    if pairs.iter().any(|(k, v)| k == "fromSrc" && v == "-") {
        return import(state, &pairs, raw.into_body()).await;
    }
    pull(State(state), Query(pairs.into_iter().collect())).await
}

/// `docker import FILE NAME`: the body is a root filesystem tarball (plain
/// or compressed), `changes` Dockerfile instructions for its config.
async fn import(
    state: Shared,
    pairs: &[(String, String)],
    body: axum::body::Body,
) -> Result<axum::response::Response, ApiError> {
    let get = |k: &str| super::wire::first(pairs, k);
    let repo = get("repo").ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "kiln imports into a name: give one (docker import FILE NAME)",
        )
    })?;
    let name = match get("tag") {
        Some(t) => format!("{}:{t}", familiar(&repo)),
        None => familiar(&repo).to_string(),
    };
    let name: crate::image::Name = name.parse().map_err(ApiError::bad)?;
    let changes = super::wire::every(pairs, "changes");
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::internal(format!("a file for the tarball: {e}")))?;
    super::body_to_file(body, tmp.as_file(), "tarball").await?;
    let gc = state.gc.clone().read_owned().await;
    blocking(move || {
        let _gc = gc;
        let file = std::fs::File::open(tmp.path())
            .map_err(|e| ApiError::internal(format!("reading the tarball: {e}")))?;
        let image = crate::image::import(&state.store, file, "-", &name, &changes)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        Ok(lines(&[
            serde_json::json!({ "status": image.id.to_string() }),
        ]))
    })
    .await
}

/// `POST /images/create?fromImage=NAME&tag=TAG`: a pull, through kiln's
/// registry client (mirrors, credentials, HTTP on loopback).
async fn pull(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::response::Response, ApiError> {
    use crate::registry::{Options, Platform, Reference};
    if q.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "kiln's API imports only a tarball sent in the request (fromSrc=-), not one from a URL",
        ));
    }
    let from = q
        .get("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad("fromImage is required"))?;
    let name = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    let reference = Reference::parse(familiar(&name)).map_err(ApiError::bad)?;
    let gc = state.gc.clone().read_owned().await;
    let head = vec![
        serde_json::json!({ "status": format!("Pulling from {}", reference.repository), "id": reference.manifest_ref() }),
    ];
    streamed(
        "pulled",
        head,
        StatusCode::NOT_FOUND,
        move |transfers| async move {
            let _gc = gc;
            crate::registry::pull::pull_via_mirrors(
                &state.store,
                &Options::from_env(),
                &reference,
                &Platform::host(),
                &transfers,
            )
            .await
            .map_err(|e| e.to_string())
        },
        move |image: Image| {
            vec![
                serde_json::json!({ "status": format!("Digest: {}", image.manifest_digest) }),
                serde_json::json!({ "status": format!("Status: Downloaded newer image for {name}") }),
            ]
        },
    )
    .await
}

/// `POST /images/NAME/push?tag=T`: a push of a name the store has.
async fn push(
    state: Shared,
    name: String,
    q: HashMap<String, String>,
) -> Result<axum::response::Response, ApiError> {
    use crate::registry::{Client, Options, Reference};
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{}:{t}", familiar(&name)),
        None => familiar(&name).to_string(),
    };
    let image = Image::resolve(&state.store, &target)
        .map_err(|_| ApiError::not_found(format!("No such image: {target}")))?;
    let reference = Reference::parse(&target).map_err(ApiError::bad)?;
    let head = vec![serde_json::json!({ "status": format!(
        "The push refers to repository [{}/{}]",
        reference.registry, reference.repository
    ) })];
    let tag = reference.manifest_ref();
    // Its compressed blobs and cache records are written as it goes.
    let gc = state.gc.clone().read_owned().await;
    streamed(
        "pushed",
        head,
        StatusCode::INTERNAL_SERVER_ERROR,
        move |transfers| async move {
            let _gc = gc;
            let opts = Options::from_env();
            let client = Client::connect(&reference.registry, &opts, None)
                .await
                .map_err(|e| e.to_string())?;
            crate::registry::push::push(&state.store, &client, &image, &reference, &transfers)
                .await
                .map_err(|e| e.to_string())
        },
        move |pushed: crate::registry::push::Pushed| {
            let digest = pushed.digest.map(|d| d.to_string()).unwrap_or_default();
            vec![
                serde_json::json!({ "status": format!("{tag}: digest: {digest} size: {}", pushed.size) }),
                serde_json::json!({ "aux": { "Tag": tag, "Digest": digest, "Size": pushed.size } }),
            ]
        },
    )
    .await
}

/// `NAME/tag?repo=R&tag=T`.
async fn by_name_post(
    State(state): State<Shared>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if let Some(name) = rest.strip_suffix("/push") {
        return push(state, name.to_string(), q).await;
    }
    let Some(name) = rest.strip_suffix("/tag").map(|n| familiar(n).to_string()) else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("kiln does not implement POST /images/{rest} of Docker's API"),
        ));
    };
    blocking(move || {
        let store = &state.store;
        let image = Image::resolve(store, &name)
            .map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
        let repo = familiar(
            q.get("repo")
                .ok_or_else(|| ApiError::bad("repo is required"))?,
        );
        let target = match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{repo}:{t}"),
            None => repo.to_string(),
        };
        let target: crate::image::Name = target.parse().map_err(ApiError::bad)?;
        store.tag(&target.to_string(), image.descriptor(store))?;
        store.image_event("tag", &image.id.to_string(), &target.to_string());
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

/// `DELETE /images/NAME`: its names go; what no name reaches is pruned
/// later (`kiln prune`), as kiln's `rmi`.
async fn remove(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let store = &state.store;
        let name = familiar(&name).to_string();
        let mut out = Vec::new();
        if let Ok(n) = name.parse::<crate::image::Name>()
            && store.untag(&n.to_string())?.is_some()
        {
            out.push(serde_json::json!({ "Untagged": n.to_string() }));
            return Ok(Json(serde_json::Value::Array(out)));
        }
        let image = Image::resolve(store, &name)
            .map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
        for n in image.names(store)? {
            store.untag(&n)?;
            out.push(serde_json::json!({ "Untagged": n }));
        }
        if store.forget_untagged(&image.entry_digest().to_string())? {
            store.image_event("delete", &image.id.to_string(), "");
        }
        out.push(serde_json::json!({ "Deleted": image.id.to_string() }));
        Ok(Json(serde_json::Value::Array(out)))
    })
    .await
}
