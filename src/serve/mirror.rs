//! The base-image mirror (`[mirror]`): a read-only OCI distribution
//! endpoint under `/v2/` that serves the tracked bases from the store, by
//! tag and by digest, so a fleet pulls each base from upstream once (the
//! service's HEAD checks) and from here after. Only what a tracked base
//! reaches is served (its manifest, config and layers, under the base's
//! repository); anything else in the store is not there, and every write
//! is refused.

use super::Service;
use crate::image::{Image, manifest_digest};
use crate::registry::Reference;
use crate::store::{Digest, Store};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// A tracked base as the mirror serves it.
struct Served {
    repository: String,
    tag: String,
    image: Image,
}

/// The tracked bases the store has.
fn bases(s: &Service, store: &Store) -> Vec<Served> {
    s.config
        .bases
        .iter()
        .filter_map(|b| {
            let r = Reference::parse(&b.image).ok()?;
            let image = Image::resolve(store, &r.local_name()).ok()?;
            Some(Served {
                repository: r.repository,
                tag: r.tag?,
                image,
            })
        })
        .collect()
}

/// A distribution-spec error answer.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "errors": [{ "code": code, "message": message }] }).to_string(),
    )
        .into_response()
}

fn with_api_version(mut r: Response) -> Response {
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

/// Answers `method` on `/v2/{rest}`.
pub async fn handle(
    s: Arc<Service>,
    method: Method,
    rest: String,
    _headers: HeaderMap,
) -> Response {
    with_api_version(answer(&s, &method, &rest).await)
}

async fn answer(s: &Arc<Service>, method: &Method, rest: &str) -> Response {
    let count = |result: &str| {
        s.metrics
            .mirror_requests
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc();
    };
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the kiln serve mirror is read-only",
        );
    }
    if rest.is_empty() {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response();
    }
    let store = match s.open_store() {
        Ok(st) => st,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
    };
    let bases = bases(s, &store);
    let head = method == Method::HEAD;
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let tags: Vec<&str> = bases
            .iter()
            .filter(|b| b.repository == name)
            .map(|b| b.tag.as_str())
            .collect();
        if tags.is_empty() {
            count("miss");
            return error(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "no tracked base has this name",
            );
        }
        count("hit");
        return axum::Json(json!({ "name": name, "tags": tags })).into_response();
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let found = bases.iter().find(|b| {
            b.repository == name
                && (b.tag == reference || b.image.manifest_digest.to_string() == reference)
        });
        let Some(base) = found else {
            count("miss");
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                &format!("{name}:{reference} is not a tracked base"),
            );
        };
        let digest = &base.image.manifest_digest;
        let bytes = match store.read_blob(digest) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
        };
        let media = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        count("hit");
        let len = bytes.len();
        let body = if head {
            Body::empty()
        } else {
            Body::from(bytes)
        };
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, media),
                (header::CONTENT_LENGTH, len.to_string()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    digest.to_string(),
                ),
            ],
            body,
        )
            .into_response();
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        let Ok(digest) = digest.parse::<Digest>() else {
            count("miss");
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "not a sha256 digest",
            );
        };
        // Only the config and layers of a base of this name.
        let reachable = bases.iter().filter(|b| b.repository == name).any(|b| {
            b.image.id == digest
                || b.image
                    .manifest
                    .layers()
                    .iter()
                    .any(|l| manifest_digest(l).is_ok_and(|d| d == digest))
        });
        if !reachable || !store.has_blob(&digest) {
            count("miss");
            return error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!("{digest} is not a blob of a tracked base named {name}"),
            );
        }
        count("hit");
        return blob(&store, &digest, head).await;
    }
    count("miss");
    error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "not a mirror path")
}

/// Streams blob `digest` from the store.
async fn blob(store: &Store, digest: &Digest, head: bool) -> Response {
    let path = store.blob_path(digest);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = match head {
        true => Body::empty(),
        false => Body::from_stream(futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; 256 << 10];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
                }
                // The error ends the body: the client sees a short read.
                Err(e) => Some((Err::<axum::body::Bytes, _>(e), None)),
            }
        })),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}
