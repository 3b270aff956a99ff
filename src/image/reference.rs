//! Local image names: `[host[:port]/]path[:tag]`, as Docker spells them.
//! A name without a tag means `:latest`. (Registry defaults such as
//! `docker.io/library/` come with pull and push.)

use std::fmt;
use std::str::FromStr;

/// A repository and a tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    /// `busybox`, `localhost:5000/team/app`.
    pub repository: String,
    /// `latest`, `1.2`.
    pub tag: String,
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

impl FromStr for Name {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("invalid image name {s:?}: {why}");
        if s.is_empty() {
            return Err(bad("empty"));
        }
        // A ':' after the last '/' starts the tag; one before it is a port.
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "latest"),
        };
        if s.contains('@') {
            return Err(bad("digests are not names; use the image id or a tag"));
        }
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !tag_ok {
            return Err(bad(
                "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            ));
        }
        let mut parts = repository.split('/').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            let is_host = first
                && parts.peek().is_some()
                && (part.contains(['.', ':']) || part == "localhost");
            first = false;
            if is_host {
                let (host, port) = part.split_once(':').unwrap_or((part, "1"));
                // Docker's domain: labels of letters, digits and inner
                // '-', joined by single dots (`..`, `.x`, `a..b` are no
                // hosts: a path-shaped host would lead a request astray).
                let host_ok = host.split('.').all(|label| {
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                });
                if !host_ok || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("bad registry host"));
                }
                continue;
            }
            if !path_component_ok(part) {
                return Err(bad(
                    "repository names are lower-case letters and digits, separated by '.', '_', '__' or '-'",
                ));
            }
        }
        Ok(Name {
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// Docker's path component: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn path_component_ok(part: &str) -> bool {
    let b = part.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let ok = [
            ("busybox", "busybox", "latest"),
            ("busybox:1.36", "busybox", "1.36"),
            (
                "library/debian:bookworm-slim",
                "library/debian",
                "bookworm-slim",
            ),
            (
                "localhost:5000/team/app",
                "localhost:5000/team/app",
                "latest",
            ),
            ("127.0.0.1:5000/app:v1_2", "127.0.0.1:5000/app", "v1_2"),
            ("a.b-c__d", "a.b-c__d", "latest"),
            ("reg-1.example.com/app", "reg-1.example.com/app", "latest"),
        ];
        for (input, repo, tag) in ok {
            let n: Name = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (n.repository.as_str(), n.tag.as_str()),
                (repo, tag),
                "{input}"
            );
        }
        for bad in [
            "",
            "Upper",
            "a:",
            "a:.x",
            "a//b",
            "-a",
            "a-",
            "x@sha256:00",
            "a:b:c",
            "host:port/x",
            "../x",
            "../../x",
            ".x/app",
            "a..b/app",
            "a./app",
            "-a.b/app",
            "a.b-/app",
            "a.b:/app",
        ] {
            assert!(bad.parse::<Name>().is_err(), "{bad} should be refused");
        }
    }
}
