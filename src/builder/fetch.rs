//! ADD from an http(s) URL: the file is downloaded aside (its digest taken
//! as it streams), checked against `--checksum`, and named and dated as
//! BuildKit names and dates it.

use crate::store::{Digest, Store};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

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
) -> Result<Downloaded, String> {
    let fail = |what: String| format!("ADD {url}: {what}");
    if let Some(sum) = checksum
        && !sum
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(fail(format!(
            "invalid --checksum={sum}: use sha256:<64 hex digits>"
        )));
    }
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(None)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut response = client.get(url).send().map_err(|e| fail(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(fail(format!("the server answered {}", response.status())));
    }
    let modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok());
    let path = store.temp_path("download");
    let result = (|| -> Result<Digest, String> {
        let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match response.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading the response: {e}")),
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        Ok(Digest::sha256(hasher.finalize().as_slice()))
    })();
    let digest = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(fail(e));
        }
    };
    if let Some(sum) = checksum
        && !sum.eq_ignore_ascii_case(&digest.to_string())
    {
        let _ = std::fs::remove_file(&path);
        return Err(fail(format!(
            "checksum mismatch: --checksum={sum}, but the file is {digest}"
        )));
    }
    if let Some(t) = modified {
        let t = filetime::FileTime::from_unix_time(t.timestamp(), 0);
        let _ = filetime::set_file_mtime(&path, t);
    }
    Ok(Downloaded {
        path,
        name: file_name(url),
        digest,
    })
}

/// The Last-Modified time of `url` in seconds (a SOURCE_DATE_EPOCH source
/// stage's ADD, as BuildKit's source metadata gives it); None when the
/// server does not say.
pub(super) fn modified(url: &str) -> Result<Option<i64>, String> {
    let fail = |what: String| format!("SOURCE_DATE_EPOCH from {url}: {what}");
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = client.head(url).send().map_err(|e| fail(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(fail(format!("the server answered {}", response.status())));
    }
    Ok(response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp()))
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
