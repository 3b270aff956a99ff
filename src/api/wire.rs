//! The wire helpers every route of Docker's API shares: query strings
//! (percent-decoding, repeated keys), JSON label objects, names as docker's
//! clients send them, and bodies streamed from blocking writers. Here, so
//! that the routes (`build`, `containers`, `images`, ...) import this and
//! not each other.

use serde_json::Value;

/// `%XX` and `+` of a query value.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // Two hex digits, read from the bytes: a query may hold raw
            // UTF-8, which no character boundary test must meet.
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON object of strings (`Labels`) as pairs.
pub(crate) fn string_pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The first non-empty value of `key` among a query's pairs.
pub(crate) fn first(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

/// Every value of `key` among a query's pairs, in order.
pub(crate) fn every(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

/// A query string's pairs, decoded (keys repeat: `changes=...&changes=...`).
pub(crate) fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A stream of the channel's items.
pub(crate) fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A name as kiln keeps it: docker's clients may send the full form
/// (`docker.io/library/box`), kiln stores the familiar one (`box`).
pub(crate) fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// A body streamed as `write` writes it (on a blocking thread). A failure
/// midway ends the body with an error: the client sees a broken archive,
/// never a short one taken for whole.
pub(crate) fn written_body(
    write: impl FnOnce(std::io::BufWriter<Chunks>) -> Result<std::io::BufWriter<Chunks>, String>
    + Send
    + 'static,
) -> axum::body::Body {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::task::spawn_blocking(move || {
        let out = std::io::BufWriter::with_capacity(1 << 20, Chunks(tx.clone()));
        let written = write(out).and_then(|w| {
            w.into_inner()
                .map(drop)
                .map_err(|e| e.into_error().to_string())
        });
        if let Err(e) = written {
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    axum::body::Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// A writer whose bytes go to a response body, chunk by chunk.
pub(crate) struct Chunks(pub(crate) tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl std::io::Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::other("the client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
