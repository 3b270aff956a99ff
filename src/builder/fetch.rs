//! ADD from an http(s) URL: the file is downloaded aside (its digest taken
//! as it streams), checked against `--checksum`, and named and dated as
//! BuildKit names and dates it.

use crate::store::{Digest, Store};
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// `--checksum` is not `sha256:<hex>`.
    #[error("invalid --checksum={0}: use sha256:<64 hex digits>")]
    BadChecksum(String),
    /// The file is not the one `--checksum` names.
    #[error("checksum mismatch: --checksum={wanted}, but the file is {got}")]
    Mismatch {
        /// `--checksum`.
        wanted: String,
        /// The file's digest.
        got: Digest,
    },
    /// The request failed (the error with its causes).
    #[error("{0}")]
    Http(String),
    /// The server answered with an error.
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    /// The download could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No runtime to fetch on.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// The HTTP client of ADD's downloads, one per runtime (its connections
/// belong to the runtime that made them): builds on the process's runtime
/// share it and its connections.
fn client() -> Result<reqwest::Client, FetchError> {
    static CLIENTS: OnceLock<
        std::sync::Mutex<std::collections::HashMap<tokio::runtime::Id, reqwest::Client>>,
    > = OnceLock::new();
    let id = tokio::runtime::Handle::current().id();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = clients.get(&id) {
        return Ok(c.clone());
    }
    let c = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| FetchError::Http(error_chain(&e)))?;
    clients.insert(id, c.clone());
    Ok(c)
}

/// A downloaded file.
pub(super) struct Downloaded {
    /// Where it is (a temporary file of the store).
    pub path: PathBuf,
    /// The name it gets in the image: the URL path's last component.
    pub name: String,
    /// Its content's digest.
    pub digest: Digest,
}

/// Downloads `url`; with `checksum` (`sha256:<hex>`), a file with another
/// digest is an error and is not kept.
pub(super) fn download(
    store: &Store,
    url: &str,
    checksum: Option<&str>,
) -> Result<Downloaded, FetchError> {
    if let Some(sum) = checksum
        && !sum
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(FetchError::BadChecksum(sum.to_string()));
    }
    let path = store.temp_path("download");
    let fetched = crate::runtime::block_on(fetch(url, &path))
        .map_err(FetchError::Runtime)
        .and_then(|r| r);
    let (digest, modified) = match fetched {
        Ok(got) => got,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    if let Some(sum) = checksum
        && !sum.eq_ignore_ascii_case(&digest.to_string())
    {
        let _ = std::fs::remove_file(&path);
        return Err(FetchError::Mismatch {
            wanted: sum.to_string(),
            got: digest,
        });
    }
    if let Some(t) = modified {
        let t = filetime::FileTime::from_unix_time(t, 0);
        let _ = filetime::set_file_mtime(&path, t);
    }
    Ok(Downloaded {
        path,
        name: file_name(url),
        digest,
    })
}

/// Streams `url` into a new file at `path`; its digest, and its
/// Last-Modified time in seconds when the server says.
async fn fetch(url: &str, path: &std::path::Path) -> Result<(Digest, Option<i64>), FetchError> {
    let mut response = client()?
        .get(url)
        .send()
        .await
        .map_err(|e| FetchError::Http(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    let modified = last_modified(response.headers());
    let write = |source| FetchError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(path).map_err(write)?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Http(format!("reading the response: {}", error_chain(&e))))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(write)?;
    }
    Ok((Digest::sha256(hasher.finalize().as_slice()), modified))
}

/// A response's Last-Modified time, in seconds.
fn last_modified(headers: &reqwest::header::HeaderMap) -> Option<i64> {
    headers
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp())
}

/// The Last-Modified time of `url` in seconds (a SOURCE_DATE_EPOCH source
/// stage's ADD, as BuildKit's source metadata gives it); None when the
/// server does not say.
pub(super) fn modified(url: &str) -> Result<Option<i64>, FetchError> {
    crate::runtime::block_on(async {
        let response = client()?
            .head(url)
            .send()
            .await
            .map_err(|e| FetchError::Http(error_chain(&e)))?;
        match response.status().is_success() {
            true => Ok(last_modified(response.headers())),
            false => Err(FetchError::Status(response.status())),
        }
    })
    .map_err(FetchError::Runtime)?
}

/// The last component of the URL's path, as BuildKit names an ADDed URL.
fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn names_come_from_the_url_path() {
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz?x=1"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("http://127.0.0.1:80/f.txt#frag"), "f.txt");
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
    }
}
