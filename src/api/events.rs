//! `GET /events`: the store's event journal (`crate::events`), what was
//! recorded since `since` and, until `until`, what is recorded from now
//! on, one JSON object per line in docker's shape.

use super::{ApiError, Shared};
use crate::events;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;

pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new().route("/events", get(stream))
}

/// How often the journal is looked at for new events.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

async fn stream(
    State(state): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let now = events::now();
    let time = |key: &str| -> Result<Option<i128>, ApiError> {
        q.get(key)
            .filter(|t| !t.is_empty())
            .map(|t| {
                events::parse_time(t, now).ok_or_else(|| {
                    ApiError::bad(format!("invalid {key} {t:?}: a Unix time or RFC 3339"))
                })
            })
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let filters = super::filters_of(&q, &events::FILTERS)?;
    let root = state.store.root().to_path_buf();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    tokio::task::spawn_blocking(move || {
        let wanted = |e: &events::Event| {
            since.is_none_or(|s| e.time_nano >= s)
                && until.is_none_or(|u| e.time_nano <= u)
                && events::matches(e, &filters)
        };
        let send = |e: &events::Event| {
            let mut line = e.docker_json().to_string().into_bytes();
            line.push(b'\n');
            tx.blocking_send(Ok(line)).is_ok()
        };
        let (past, mut follow) = events::read_then_follow(&root);
        // Past events only when a time is given, as docker's.
        if (since.is_some() || until.is_some()) && !past.iter().filter(|e| wanted(e)).all(send) {
            return;
        }
        loop {
            // Taken before the read: what was recorded up to `until` is
            // in this read.
            let over = until.is_some_and(|u| events::now() > u);
            for e in follow.more() {
                if wanted(&e) && !send(&e) {
                    return;
                }
            }
            if over || tx.is_closed() {
                return;
            }
            std::thread::sleep(POLL);
        }
    });
    let body = Body::from_stream(super::wire::tokio_stream(rx));
    Ok(([("content-type", "application/json")], body).into_response())
}
