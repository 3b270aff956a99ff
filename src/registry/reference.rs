//! Image references as docker parses them: `debian`, `debian:bookworm`,
//! `library/debian`, `host:port/path/name:tag`, `name@sha256:...`, with
//! Docker Hub (`docker.io`, `library/`) as the default.

use crate::image::Name;
use crate::store::Digest;
use std::fmt;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// A reference to an image in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io`.
    pub registry: String,
    /// `library/debian`, `team/app`.
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// A pinned manifest digest.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let (name_part, digest) = match text.split_once('@') {
            Some((n, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| {
                    format!("invalid reference {text:?}: {d:?} is not a sha256 digest")
                })?;
                (n, Some(digest))
            }
            None => (text, None),
        };
        // The local-name rules (lower case, separators, host:port) are
        // docker's for references too.
        let name: Name = name_part
            .parse()
            .map_err(|e: String| e.replace("image name", "reference"))?;
        let has_tag = name_part
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        let (registry, repository) = split_domain(&name.repository);
        let tag = match (has_tag, &digest) {
            (true, _) => Some(name.tag),
            (false, None) => Some("latest".to_string()),
            (false, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is fetched by: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The same repository at `tag` (no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The name kiln's store keeps it under, as docker shows it: Docker
    /// Hub's `library/` and domain left out (`debian:bookworm`).
    pub fn local_name(&self) -> String {
        let repo = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{repo}:{t}"),
            (None, Some(d)) => format!("{repo}@{d}"),
            (None, None) => format!("{repo}:latest"),
        }
    }

    /// The host the API is at (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// The host serving `registry`'s API.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Splits `host[:port]/path` into the registry and the repository, as
/// docker does: a first component with `.` or `:`, or `localhost`, is a
/// host; otherwise the registry is Docker Hub and one-component names get
/// `library/`.
fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            let registry = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            let repository = if registry == DOCKER_HUB && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            (registry.to_string(), repository)
        }
        Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
        None => (DOCKER_HUB.to_string(), format!("library/{name}")),
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_as_docker_does() {
        let d = "sha256:".to_string() + &"ab".repeat(32);
        let cases = [
            ("debian", "docker.io/library/debian:latest", "debian:latest"),
            (
                "debian:bookworm",
                "docker.io/library/debian:bookworm",
                "debian:bookworm",
            ),
            (
                "library/debian:12",
                "docker.io/library/debian:12",
                "debian:12",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "docker.io/debian",
                "docker.io/library/debian:latest",
                "debian:latest",
            ),
            ("index.docker.io/x/y:1", "docker.io/x/y:1", "x/y:1"),
            (
                "localhost:5000/team/app:2",
                "localhost:5000/team/app:2",
                "localhost:5000/team/app:2",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            ("ghcr.io/o/r:v1", "ghcr.io/o/r:v1", "ghcr.io/o/r:v1"),
        ];
        for (input, full, local) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.local_name(), local, "{input}");
        }
        let pinned = Reference::parse(&format!("127.0.0.1:5000/app@{d}")).unwrap();
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.manifest_ref(), d);
        assert_eq!(pinned.local_name(), format!("127.0.0.1:5000/app@{d}"));
        assert_eq!(
            Reference::parse("debian").unwrap().api_host(),
            "registry-1.docker.io"
        );
        for bad in ["Debian", "a@sha256:12", "", "x:"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
