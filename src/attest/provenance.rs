//! SLSA provenance v1 (<https://slsa.dev/provenance/v1>) of one platform's
//! image, shaped as BuildKit's (`buildType` `https://mobyproject.org/buildkit@v1`,
//! `externalParameters.configSource` and `.request`), so tools that read
//! BuildKit's read kiln's.

use super::{Material, scrub};
use crate::store::Digest;
use serde_json::{Map, Value, json};
use std::path::Path;

/// The predicate type written.
pub const PREDICATE: &str = "https://slsa.dev/provenance/v1";
/// The build type: BuildKit's, whose parameters kiln's follow.
pub const BUILD_TYPE: &str = "https://mobyproject.org/buildkit@v1";

/// How much is recorded (BuildKit's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The definition, materials and times.
    Min,
    /// Also the Dockerfile itself and each stage's steps.
    Max,
}

/// What one platform's build was.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// Its name as given (`Dockerfile`, `ci/Dockerfile`).
    pub dockerfile_path: String,
    /// The build context's directory (its git checkout is looked for).
    pub context: std::path::PathBuf,
    /// `--build-arg`s (secrets are never build args).
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// The platform built (`os/arch[/variant]`).
    pub platform: String,
    /// The ids of the secrets the build was given (never their values).
    pub secrets: Vec<String>,
    /// What the build read from outside its context.
    pub materials: Vec<Material>,
    /// When it started and ended (RFC 3339, UTC).
    pub started: String,
    /// See `started`.
    pub finished: String,
    /// `--verify-repro`'s verdict when it ran: the second build's image id
    /// and `reproducible` or the first difference.
    pub verified: Option<Value>,
}

/// The statement about `subject` (see [`super::subject`]).
pub fn statement(subject: Value, inputs: &Inputs, mode: Mode) -> Value {
    let mut args = Map::new();
    for (k, v) in &inputs.build_args {
        args.insert(format!("build-arg:{k}"), Value::String(v.clone()));
    }
    if let Some(t) = &inputs.target {
        args.insert("target".into(), Value::String(t.clone()));
    }
    let mut config_source = json!({
        "path": inputs.dockerfile_path,
        "digest": { "sha256": Digest::of(&inputs.dockerfile).hex() },
    });
    let mut dependencies: Vec<Value> = inputs
        .materials
        .iter()
        .map(|m| json!({ "uri": scrub(&m.uri), "digest": { "sha256": m.digest.hex() } }))
        .collect();
    if let Some(git) = git_checkout(&inputs.context) {
        // A checkout without an origin is named by its commit alone: the
        // builder's own paths are not published.
        match &git.remote {
            Some(r) => {
                let uri = format!("{}#{}", scrub(r), git.commit);
                config_source["uri"] = Value::String(uri.clone());
                dependencies.push(json!({ "uri": uri, "digest": { "gitCommit": git.commit } }));
            }
            None => dependencies.push(json!({ "digest": { "gitCommit": git.commit } })),
        }
    }
    let secrets: Vec<Value> = inputs
        .secrets
        .iter()
        .map(|id| json!({ "id": id }))
        .collect();
    let mut internal = json!({
        "builderPlatform": crate::plan::host_platform(),
        "platform": inputs.platform,
    });
    if let Some(v) = &inputs.verified {
        internal["verifyRepro"] = v.clone();
    }
    if mode == Mode::Max {
        use base64::Engine;
        internal["buildConfig"] = json!({
            "dockerfile": base64::engine::general_purpose::STANDARD.encode(&inputs.dockerfile),
        });
    }
    json!({
        "_type": super::STATEMENT_V1,
        "subject": subject,
        "predicateType": PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "configSource": config_source,
                    "request": {
                        "frontend": "dockerfile.v0",
                        "args": args,
                        "secrets": secrets,
                    },
                },
                "internalParameters": internal,
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": "https://github.com/kiln-build/kiln",
                    "version": { "kiln": env!("CARGO_PKG_VERSION") },
                },
                "metadata": {
                    "invocationId": Digest::of(format!("{}{}", inputs.started, inputs.platform).as_bytes()).short(),
                    "startedOn": inputs.started,
                    "finishedOn": inputs.finished,
                },
            },
        },
    })
}

/// A git checkout's commit and its origin's URL.
struct Git {
    commit: String,
    remote: Option<String>,
}

/// The commit checked out in `dir` (a checkout's own `.git`), read from
/// its files: HEAD, the ref it names, or packed-refs. The context is the
/// user's: every file is opened inside it (a `.git` symlinked out reads
/// nothing), regular files only, and a few MiB at most.
fn git_checkout(dir: &Path) -> Option<Git> {
    use std::io::Read;
    let root = crate::sandbox::fs::Root::open(dir).ok()?;
    let read = |rel: &str| -> Option<String> {
        let mut text = String::new();
        root.open_regular(rel, true)
            .ok()?
            .take(4 << 20)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    let head = read(".git/HEAD")?;
    let head = head.trim();
    let commit = match head.strip_prefix("ref: ") {
        None => head.to_string(),
        Some(name) if name.starts_with("refs/") && !name.contains("..") => {
            read(&format!(".git/{name}"))
                .map(|s| s.trim().to_string())
                .or_else(|| {
                    read(".git/packed-refs")?.lines().find_map(|l| {
                        let (hash, r) = l.split_once(' ')?;
                        (r == name).then(|| hash.to_string())
                    })
                })?
        }
        Some(_) => return None,
    };
    if !matches!(commit.len(), 40 | 64) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let remote = read(".git/config").and_then(|c| {
        let mut in_origin = false;
        c.lines().find_map(|l| {
            let l = l.trim();
            if l.starts_with('[') {
                in_origin = l == "[remote \"origin\"]";
                return None;
            }
            let (k, v) = l.split_once('=')?;
            (in_origin && k.trim() == "url").then(|| v.trim().to_string())
        })
    });
    Some(Git { commit, remote })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_definition_materials_and_a_checkout_without_secrets_or_credentials() {
        let ctx = tempfile::tempdir().unwrap();
        let git = ctx.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(
            git.join("packed-refs"),
            format!("# pack-refs\n{} refs/heads/main\n", "a".repeat(40)),
        )
        .unwrap();
        std::fs::write(
            git.join("config"),
            "[core]\n\turl = nope\n[remote \"origin\"]\n\turl = https://bot:tok@git.example/x.git\n",
        )
        .unwrap();
        let inputs = Inputs {
            dockerfile: b"FROM busybox\n".to_vec(),
            dockerfile_path: "Dockerfile".into(),
            context: ctx.path().to_path_buf(),
            build_args: vec![("A".into(), "1".into())],
            target: Some("app".into()),
            platform: "linux/arm64".into(),
            secrets: vec!["npmrc".into()],
            materials: vec![Material {
                uri: "https://u:p@files.example/a.tgz".into(),
                digest: Digest::of(b"a"),
            }],
            started: "2026-12-07T10:00:00Z".into(),
            finished: "2026-12-07T10:00:01Z".into(),
            verified: None,
        };
        let s = statement(
            super::super::subject("app:1", "linux/arm64", &Digest::of(b"m")),
            &inputs,
            Mode::Min,
        );
        let text = s.to_string();
        assert!(!text.contains("tok") && !text.contains("u:p"), "{text}");
        let def = &s["predicate"]["buildDefinition"];
        assert_eq!(
            def["externalParameters"]["request"]["args"]["build-arg:A"],
            "1"
        );
        assert_eq!(
            def["externalParameters"]["request"]["args"]["target"],
            "app"
        );
        assert_eq!(
            def["externalParameters"]["request"]["secrets"][0]["id"],
            "npmrc"
        );
        assert_eq!(
            def["externalParameters"]["configSource"]["digest"]["sha256"],
            Digest::of(b"FROM busybox\n").hex()
        );
        assert_eq!(
            def["externalParameters"]["configSource"]["uri"],
            format!("https://***@git.example/x.git#{}", "a".repeat(40))
        );
        assert_eq!(
            def["resolvedDependencies"][1]["digest"]["gitCommit"],
            "a".repeat(40)
        );
        assert!(
            def["internalParameters"].get("buildConfig").is_none(),
            "min"
        );
        assert_eq!(
            s["subject"][0]["name"],
            "pkg:docker/app@1?platform=linux%2Farm64"
        );
        // A .git that points out of the context is not followed there.
        let outside = tempfile::tempdir().unwrap();
        std::fs::rename(&git, outside.path().join(".git")).unwrap();
        std::os::unix::fs::symlink(outside.path().join(".git"), &git).unwrap();
        assert!(git_checkout(ctx.path()).is_none());
        let max = statement(Value::Null, &inputs, Mode::Max);
        assert!(
            max["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["dockerfile"]
                .is_string()
        );
    }
}
