//! Push webhooks: which targets a GitHub or GitLab push is for, whether it
//! is signed by the target's secret, and whether the files it changed feed
//! the target's build at all (a README-only push warms nothing).

use super::config::Target;
use crate::context::ignore::Matcher;
use crate::dockerfile::instructions::{Instruction, SourceKind, source_kind};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::path::Path;

/// What a push says: where, which ref, which files.
#[derive(Debug, Default, PartialEq)]
pub struct Push {
    /// The repository's URLs as the payload gives them.
    pub urls: Vec<String>,
    /// The ref pushed (`refs/heads/main`).
    pub git_ref: String,
    /// Every path added, modified or removed.
    pub paths: Vec<String>,
}

/// Reads a GitHub or GitLab push payload (they share `ref` and `commits`).
pub fn parse_push(body: &[u8]) -> Option<Push> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut urls = Vec::new();
    for (object, keys) in [
        (
            "repository",
            &["clone_url", "ssh_url", "git_url", "html_url", "url"][..],
        ),
        (
            "project",
            &["git_http_url", "git_ssh_url", "web_url", "http_url"][..],
        ),
    ] {
        for k in keys {
            if let Some(u) = v[object][k].as_str() {
                urls.push(u.to_string());
            }
        }
    }
    let mut paths = Vec::new();
    for commit in v["commits"].as_array().into_iter().flatten() {
        for kind in ["added", "modified", "removed"] {
            for p in commit[kind].as_array().into_iter().flatten() {
                if let Some(p) = p.as_str() {
                    paths.push(p.to_string());
                }
            }
        }
    }
    Some(Push {
        urls,
        git_ref: v["ref"].as_str()?.to_string(),
        paths,
    })
}

/// True when `push` is for `target`: its repository and its ref.
pub fn is_for(target: &Target, push: &Push) -> bool {
    if target.git.is_none() {
        return false;
    }
    // Credentials in the configured URL are not part of the repository.
    let (git, _) = target.git_fetch();
    let git = git.as_str();
    let trim = |u: &str| u.trim_end_matches('/').trim_end_matches(".git").to_string();
    let same_repo = push.urls.iter().any(|u| trim(u) == trim(git));
    let same_ref = match target.git_ref.as_deref() {
        None => true,
        Some(r) => {
            push.git_ref == r
                || push.git_ref == format!("refs/heads/{r}")
                || push.git_ref == format!("refs/tags/{r}")
        }
    };
    same_repo && same_ref
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex>` of `body` under `secret`,
/// compared in constant time.
pub fn github_signed(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(want) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&want).is_ok()
}

/// GitLab's `X-Gitlab-Token`: the secret itself, compared in constant time.
pub fn gitlab_signed(secret: &str, header: &str) -> bool {
    let (a, b) = (secret.as_bytes(), header.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// True when one of `paths` (from the repository's root) can change what
/// the target builds: the Dockerfile, an ignore file, or a file not
/// ignored that a COPY/ADD source or a bind mount of the context names.
/// Without a checkout to read the Dockerfile from, every push counts.
pub fn feeds_build(target: &Target, checkout: &Path, paths: &[String]) -> bool {
    let Some(file) = target.typed_dockerfile(checkout) else {
        return true;
    };
    let ignore = Matcher::for_build(checkout, Some(&checkout.join(&target.dockerfile))).ok();
    let mut patterns: Vec<String> = Vec::new();
    for step in file.stages.iter().flat_map(|s| &s.steps) {
        match &step.instruction {
            Instruction::Copy(c) | Instruction::Add(c) if c.from.is_none() => {
                patterns.extend(
                    c.sources
                        .iter()
                        .filter(|s| source_kind(s) == SourceKind::Local && !s.starts_with("<<"))
                        .cloned(),
                );
            }
            Instruction::Run(r) => patterns.extend(
                r.mounts
                    .iter()
                    .filter(|m| {
                        m.kind == crate::dockerfile::mount::MountType::Bind
                            && m.from.is_none()
                            && m.deferred.is_none()
                    })
                    .filter_map(|m| m.source.clone()),
            ),
            _ => {}
        }
    }
    let dockerignore = format!("{}.dockerignore", target.dockerfile);
    paths.iter().any(|p| {
        let p = p.trim_start_matches("./");
        if p == target.dockerfile || p == ".dockerignore" || p == dockerignore {
            return true;
        }
        if ignore.as_ref().is_some_and(|m| m.is_ignored(p)) {
            return false;
        }
        patterns
            .iter()
            .any(|pat| pat.contains('$') || names(pat, p))
    })
}

/// True when source pattern `pattern` names `path` or a directory above it.
fn names(pattern: &str, path: &str) -> bool {
    let pat = crate::copier::components(pattern);
    if pat.is_empty() {
        return true;
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    parts.len() >= pat.len()
        && pat
            .iter()
            .zip(&parts)
            .all(|(p, c)| crate::copier::glob(p, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_notifications_name_the_tags_pushed() {
        let body = br#"{"events":[
            {"action":"pull","target":{"repository":"library/debian","tag":"bookworm"}},
            {"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",
              "repository":"library/debian","tag":"bookworm","digest":"sha256:00"},
             "request":{"host":"127.0.0.1:5000"}},
            {"action":"push","target":{"repository":"library/debian","digest":"sha256:11"}}]}"#;
        let pushed = parse_registry_events(body).unwrap();
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].digest.as_deref(), Some("sha256:00"));
        assert!(pushed[0].names("127.0.0.1:5000/library/debian:bookworm"));
        assert!(!pushed[0].names("127.0.0.1:5001/library/debian:bookworm"));
        assert!(!pushed[0].names("127.0.0.1:5000/library/debian:trixie"));
        assert!(parse_registry_events(b"{}").is_none());
        assert!(parse_registry_events(b"not json").is_none());
    }

    fn target(git: &str, r: Option<&str>) -> Target {
        Target {
            name: "t".into(),
            context: None,
            git: Some(git.into()),
            git_ref: r.map(str::to_string),
            dockerfile: "Dockerfile".into(),
            build_args: Default::default(),
            target: None,
            cache_to: None,
            keep_generations: 3,
            mounts: false,
            triggers: vec!["push".into()],
            webhook_secret: Some("s".into()),
        }
    }

    #[test]
    fn github_signatures_are_checked() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(github_signed(
            "It's a Secret to Everybody",
            b"Hello, World!",
            sig
        ));
        assert!(!github_signed("another", b"Hello, World!", sig));
        assert!(!github_signed(
            "It's a Secret to Everybody",
            b"Hello, World?",
            sig
        ));
        assert!(!github_signed("x", b"", "sha1=00"));
        assert!(gitlab_signed("tok", "tok") && !gitlab_signed("tok", "tok2"));
    }

    #[test]
    fn a_push_is_for_the_targets_repository_and_ref() {
        let body = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://h/a.git"},
            "commits":[{"added":["src/x.rs"],"modified":["README.md"],"removed":[]}]}"#;
        let push = parse_push(body).unwrap();
        assert_eq!(push.paths, ["src/x.rs", "README.md"]);
        assert!(is_for(&target("https://h/a", Some("main")), &push));
        assert!(!is_for(&target("https://h/a", Some("dev")), &push));
        assert!(!is_for(&target("https://h/b", None), &push));
    }

    #[test]
    fn only_files_the_build_reads_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY src/ /src/\nCOPY *.toml /\nRUN --mount=type=bind,source=vendor,target=/v true\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "src/*.md\n").unwrap();
        let t = target("x", None);
        let feeds = |p: &str| feeds_build(&t, dir.path(), &[p.to_string()]);
        assert!(feeds("src/main.rs"));
        assert!(feeds("Cargo.toml"));
        assert!(feeds("vendor/a/b.c"));
        assert!(feeds("Dockerfile"));
        assert!(feeds(".dockerignore"));
        assert!(!feeds("README.md"));
        assert!(!feeds("src/notes.md"), "ignored");
        assert!(!feeds("docs/Cargo.toml"));
    }

    #[test]
    fn a_dockerfile_symlinked_out_of_the_checkout_is_not_read() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "FROM scratch\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("Dockerfile"))
            .unwrap();
        let t = target("x", None);
        // Resolved inside the checkout, the absolute link names nothing.
        assert!(t.read_dockerfile(dir.path()).is_err());
        assert!(t.typed_dockerfile(dir.path()).is_none());
    }
}

/// A manifest push a registry notified (`action: push` with a tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPush {
    /// The registry's host as its client addressed it (`request.host`).
    pub host: Option<String>,
    /// The repository (`library/debian`).
    pub repository: String,
    /// The tag pushed.
    pub tag: String,
    /// The manifest's digest the tag now names, when the event says.
    pub digest: Option<String>,
}

impl RegistryPush {
    /// True when this push is of `image` (a reference): the same
    /// repository and tag, and the same registry when the event says.
    pub fn names(&self, image: &str) -> bool {
        let Ok(r) = crate::registry::Reference::parse(image) else {
            return false;
        };
        r.repository == self.repository
            && r.tag.as_deref() == Some(self.tag.as_str())
            && self.host.as_deref().is_none_or(|h| h == r.registry)
    }
}

/// The tagged manifest pushes of a distribution registry's notification
/// envelope (`{"events": [{"action": "push", "target": {"repository",
/// "tag", ...}, "request": {"host"}}]}`); None when it is not one.
pub fn parse_registry_events(body: &[u8]) -> Option<Vec<RegistryPush>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let events = v["events"].as_array()?;
    Some(
        events
            .iter()
            .filter(|e| e["action"] == "push")
            .filter_map(|e| {
                Some(RegistryPush {
                    host: e["request"]["host"].as_str().map(str::to_string),
                    repository: e["target"]["repository"].as_str()?.to_string(),
                    tag: e["target"]["tag"].as_str()?.to_string(),
                    digest: e["target"]["digest"].as_str().map(str::to_string),
                })
            })
            .collect(),
    )
}
