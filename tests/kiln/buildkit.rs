//! BuildKit's own Dockerfile integration tests, ported as data: every
//! `tests/buildkit/<area>/<case>.toml` names the BuildKit test it comes from
//! (`source`), holds a Dockerfile, a context and BuildKit's assertions
//! (files with contents, modes, owners, link targets and hardlinks; config
//! fields; history; or the error the build must end with). The format is
//! documented in tests/buildkit/README.md.
//!
//! `KILN_CASES_DIR=DIR` reads the cases from DIR instead (cases being
//! ported, before they join the suite).
//!
//! Each case is built with kiln and checked. A case marked `docker = true`
//! (docker 20.10's Dockerfile frontend can build it) is also built with
//! `docker build` and the two images compared file by file and by config,
//! as compat.rs does; where the two disagree, the case's own assertions
//! (current BuildKit) decide, and the case says so with `docker = false`.
//!
//! `KILN_CASE=substring` runs only the cases whose path contains it.

use crate::compat::{config_fields, tree};
use crate::util::{busybox_docker_tar, docker_cmd, docker_ready, kiln, need_root, repo, text};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One ported case, as its TOML file says it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    source: String,
    #[serde(default)]
    docker: bool,
    dockerfile: String,
    #[serde(default)]
    build_args: BTreeMap<String, String>,
    target: Option<String>,
    dockerignore: Option<String>,
    /// The Dockerfile's name in the context (default `Dockerfile`).
    dockerfile_name: Option<String>,
    /// More `build` flags (`--shm-size=128m`), given to docker too.
    #[serde(default)]
    flags: Vec<String>,
    /// `--build-context NAME=...`: an image, or a directory made like the
    /// context (docker 20.10 has no named contexts: such cases say
    /// `docker = false`).
    #[serde(default)]
    build_contexts: BTreeMap<String, NamedContext>,
    /// The image's `created` time (RFC 3339).
    created: Option<String>,
    #[serde(default)]
    context: BTreeMap<String, Entry>,
    error: Option<String>,
    #[serde(default)]
    file: Vec<FileCheck>,
    #[serde(default)]
    config: BTreeMap<String, Value>,
    history: Option<HistoryCheck>,
    /// A difference from BuildKit kiln still has, said in README: the
    /// case must still fail (so that fixing it means removing this line).
    known_gap: Option<String>,
    /// Paths whose content is new in every build (random bytes): compared
    /// with docker's by type, mode, owner and size, not by content.
    #[serde(default)]
    varies: Vec<String>,
    /// The lint warnings BuildKit's build reports (its progress stream):
    /// `[]` asserts there are none; absent, they are not looked at.
    warnings: Option<Vec<LintWarning>>,
    /// What the check (`--call=check`, every stage) reports, when it
    /// differs from the build's (BuildKit's UnmarshalWarnings).
    check_warnings: Option<Vec<LintWarning>>,
    /// Why a case is written differently from its BuildKit source, or why
    /// docker 20.10 is not asked; for people, not for the harness.
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// A named context: `image = "busybox:latest"`, or a `[...context]`
/// table of entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedContext {
    image: Option<String>,
    #[serde(default)]
    context: BTreeMap<String, Entry>,
}

/// A context entry: file content, or a table.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Content(String),
    Table(EntryTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryTable {
    content: Option<String>,
    #[serde(default)]
    dir: bool,
    symlink: Option<String>,
    hardlink: Option<String>,
    mode: Option<String>,
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCheck {
    path: String,
    #[serde(rename = "type", default = "file_type")]
    kind: String,
    content: Option<String>,
    contains: Option<String>,
    mode: Option<String>,
    owner: Option<String>,
    target: Option<String>,
    same_as: Option<String>,
    /// Modification time, seconds since 1970.
    mtime: Option<i64>,
}

/// One warning as BuildKit's lint tests expect it (the description and
/// URL come from [`BUILDKIT_RULES`]).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct LintWarning {
    line: usize,
    detail: String,
    rule: String,
}

/// BuildKit's rules, their descriptions and URLs, as its ruleset.go has
/// them (the cases' expected warnings carry these).
const BUILDKIT_RULES: [(&str, &str, &str); 22] = [
    (
        "StageNameCasing",
        "Stage names should be lowercase",
        "stage-name-casing",
    ),
    (
        "FromAsCasing",
        "The 'as' keyword should match the case of the 'from' keyword",
        "from-as-casing",
    ),
    (
        "NoEmptyContinuation",
        "Empty continuation lines will become errors in a future release",
        "no-empty-continuation",
    ),
    (
        "ConsistentInstructionCasing",
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
        "consistent-instruction-casing",
    ),
    (
        "DuplicateStageName",
        "Stage names should be unique",
        "duplicate-stage-name",
    ),
    (
        "ReservedStageName",
        "Reserved words should not be used as stage names",
        "reserved-stage-name",
    ),
    (
        "JSONArgsRecommended",
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
        "json-args-recommended",
    ),
    (
        "MaintainerDeprecated",
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        "maintainer-deprecated",
    ),
    (
        "UndefinedArgInFrom",
        "FROM command must use declared ARGs",
        "undefined-arg-in-from",
    ),
    (
        "WorkdirRelativePath",
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
        "workdir-relative-path",
    ),
    (
        "UndefinedVar",
        "Variables should be defined before their use",
        "undefined-var",
    ),
    (
        "MultipleInstructionsDisallowed",
        "Multiple instructions of the same type should not be used in the same stage",
        "multiple-instructions-disallowed",
    ),
    (
        "LegacyKeyValueFormat",
        "Legacy key/value format with whitespace separator should not be used",
        "legacy-key-value-format",
    ),
    (
        "InvalidBaseImagePlatform",
        "Base image platform does not match expected target platform",
        "",
    ),
    (
        "RedundantTargetPlatform",
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
        "redundant-target-platform",
    ),
    (
        "SecretsUsedInArgOrEnv",
        "Sensitive data should not be used in the ARG or ENV commands",
        "secrets-used-in-arg-or-env",
    ),
    (
        "InvalidDefaultArgInFrom",
        "Default value for global ARG results in an empty or invalid base image name",
        "invalid-default-arg-in-from",
    ),
    (
        "FromPlatformFlagConstDisallowed",
        "FROM --platform flag should not use a constant value",
        "from-platform-flag-const-disallowed",
    ),
    (
        "CopyIgnoredFile",
        "Attempting to Copy file that is excluded by .dockerignore",
        "copy-ignored-file",
    ),
    (
        "InvalidDefinitionDescription",
        "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
        "invalid-definition-description",
    ),
    (
        "ExposeProtoCasing",
        "Protocol in EXPOSE instruction should be lowercase",
        "expose-proto-casing",
    ),
    (
        "ExposeInvalidFormat",
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
        "expose-invalid-format",
    ),
];

/// The warnings a build printed (`N warnings found:` then ` - Rule:
/// detail (line N)` lines), as BuildKit's short form.
fn build_warnings(stderr: &str) -> Vec<String> {
    let mut lines = stderr.lines();
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if line.ends_with(" found:") && line.contains(" warning") {
            for item in lines.by_ref() {
                match item.strip_prefix(" - ") {
                    Some(w) => out.push(w.to_string()),
                    None => break,
                }
            }
        }
    }
    out
}

/// Differences between the warnings expected and a check's JSON result.
fn check_lint_json(want: &[LintWarning], result: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut got: Vec<LintWarning> = Vec::new();
    for w in result["warnings"].as_array().into_iter().flatten() {
        let rule = w["ruleName"].as_str().unwrap_or("").to_string();
        let known = BUILDKIT_RULES.iter().find(|(n, _, _)| *n == rule);
        let Some((_, description, slug)) = known else {
            wrong.push(format!("check: a rule BuildKit does not have: {rule}"));
            continue;
        };
        if w["description"].as_str() != Some(description) {
            wrong.push(format!(
                "check: {rule}'s description is {}",
                w["description"]
            ));
        }
        let url = match slug.is_empty() {
            true => None,
            false => Some(format!(
                "https://docs.docker.com/go/dockerfile/rule/{slug}/"
            )),
        };
        if w["url"].as_str().map(str::to_string) != url {
            wrong.push(format!("check: {rule}'s url is {}", w["url"]));
        }
        got.push(LintWarning {
            line: w["location"]["ranges"][0]["start"]["line"]
                .as_u64()
                .unwrap_or(0) as usize,
            detail: w["detail"].as_str().unwrap_or("").to_string(),
            rule,
        });
    }
    got.sort();
    let mut want = want.to_vec();
    want.sort();
    if got != want {
        wrong.push(format!("check warnings: got {got:#?}\n    want {want:#?}"));
    }
    wrong
}

fn file_type() -> String {
    "file".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryCheck {
    #[serde(default)]
    created_by_contains: Vec<String>,
    empty_layers: Option<usize>,
}

/// Every case file under tests/buildkit, sorted.
fn case_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("reading tests/buildkit") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&cases_dir(), &mut out);
    out.sort();
    out
}

/// Where the cases are: tests/buildkit, or `KILN_CASES_DIR`.
fn cases_dir() -> PathBuf {
    std::env::var_os("KILN_CASES_DIR").map_or_else(|| repo().join("tests/buildkit"), PathBuf::from)
}

fn load(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).expect("reading a case");
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn octal(s: &str) -> u32 {
    u32::from_str_radix(s, 8).unwrap_or_else(|_| panic!("not an octal mode: {s}"))
}

/// Writes the case's context (and Dockerfile, .dockerignore) into `dir`.
fn make_context(case: &Case, dir: &Path) {
    write_entries(&case.context, dir);
    let name = case.dockerfile_name.as_deref().unwrap_or("Dockerfile");
    std::fs::write(dir.join(name), &case.dockerfile).unwrap();
    if let Some(ignore) = &case.dockerignore {
        std::fs::write(dir.join(".dockerignore"), ignore).unwrap();
    }
}

/// Writes context entries into `dir`.
fn write_entries(entries: &BTreeMap<String, Entry>, dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    for (name, entry) in entries {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let table = match entry {
            Entry::Content(c) => {
                std::fs::write(&path, c).unwrap();
                mode(&path, 0o644);
                continue;
            }
            Entry::Table(t) => t,
        };
        if let Some(target) = &table.symlink {
            std::os::unix::fs::symlink(target, &path).unwrap();
        } else if let Some(other) = &table.hardlink {
            std::fs::hard_link(dir.join(other), &path).unwrap();
        } else if table.dir {
            std::fs::create_dir_all(&path).unwrap();
            mode(&path, table.mode.as_deref().map_or(0o755, octal));
        } else {
            std::fs::write(&path, table.content.as_deref().unwrap_or("")).unwrap();
            mode(&path, table.mode.as_deref().map_or(0o644, octal));
        }
        if let Some(owner) = &table.owner {
            let (u, g) = owner.split_once(':').expect("owner is uid:gid");
            std::os::unix::fs::lchown(&path, u.parse().ok(), g.parse().ok()).unwrap();
        }
    }
}

/// The case's [[file]] assertions against an exported root filesystem.
fn check_files(case: &Case, root: &Path) -> Vec<String> {
    let mut wrong = Vec::new();
    for f in &case.file {
        let path = root.join(f.path.trim_start_matches('/'));
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                if f.kind != "absent" {
                    wrong.push(format!("{}: absent", f.path));
                }
                continue;
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "file"
        };
        if kind != f.kind {
            wrong.push(format!("{}: is a {kind}, want {}", f.path, f.kind));
            continue;
        }
        if f.content.is_some() || f.contains.is_some() {
            let got = text(&std::fs::read(&path).unwrap_or_default());
            if let Some(want) = &f.content
                && &got != want
            {
                wrong.push(format!("{}: content {got:?}, want {want:?}", f.path));
            }
            if let Some(want) = &f.contains
                && !got.contains(want.as_str())
            {
                wrong.push(format!("{}: {got:?} lacks {want:?}", f.path));
            }
        }
        if let Some(want) = &f.mode
            && meta.mode() & 0o7777 != octal(want)
        {
            wrong.push(format!(
                "{}: mode {:04o}, want {want}",
                f.path,
                meta.mode() & 0o7777
            ));
        }
        if let Some(want) = &f.owner {
            let got = format!("{}:{}", meta.uid(), meta.gid());
            if &got != want {
                wrong.push(format!("{}: owner {got}, want {want}", f.path));
            }
        }
        if let Some(want) = &f.target {
            let got = std::fs::read_link(&path).unwrap_or_default();
            if got != Path::new(want) {
                wrong.push(format!("{}: -> {}, want {want}", f.path, got.display()));
            }
        }
        if let Some(want) = f.mtime
            && meta.mtime() != want
        {
            wrong.push(format!("{}: mtime {}, want {want}", f.path, meta.mtime()));
        }
        if let Some(other) = &f.same_as {
            let ino = std::fs::symlink_metadata(root.join(other.trim_start_matches('/')))
                .map(|m| m.ino())
                .ok();
            if ino != Some(meta.ino()) {
                wrong.push(format!("{}: not a hardlink of {other}", f.path));
            }
        }
    }
    wrong
}

/// Empty strings, arrays and objects count as absent, as in compat.rs.
fn blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

/// The case's [config] and [history] assertions against `inspect` output.
fn check_config(case: &Case, inspected: &Value, history: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    if let Some(want) = &case.created
        && inspected["Created"].as_str() != Some(want.as_str())
    {
        wrong.push(format!("created {}, want {want}", inspected["Created"]));
    }
    let config = &inspected["Config"];
    for (key, want) in &case.config {
        let got = config.get(key);
        if got != Some(want) && !(blank(got) && blank(Some(want))) {
            wrong.push(format!(
                "config {key}: {}, want {want}",
                got.map_or("absent".into(), Value::to_string)
            ));
        }
    }
    if let Some(h) = &case.history {
        let mut at = 0;
        for want in &h.created_by_contains {
            match history[at..].iter().position(|c| c.contains(want.as_str())) {
                Some(i) => at += i + 1,
                None => {
                    wrong.push(format!("history lacks {want:?} (in order): {history:#?}"));
                    break;
                }
            }
        }
        if let Some(want) = h.empty_layers {
            let got = inspected["History"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|e| e["empty_layer"] == true).count());
            if got != want {
                wrong.push(format!("history: {got} empty layers, want {want}"));
            }
        }
    }
    wrong
}

/// What one build gave: the exported root, or the error text.
struct Built {
    ok: bool,
    stderr: String,
}

fn build_args(case: &Case) -> Vec<String> {
    let mut args = Vec::new();
    for (k, v) in &case.build_args {
        args.push("--build-arg".into());
        args.push(format!("{k}={v}"));
    }
    if let Some(t) = &case.target {
        args.push("--target".into());
        args.push(t.clone());
    }
    args.extend(case.flags.iter().cloned());
    args
}

/// `--build-context` flags of the case, its directories made under `dir`.
fn named_contexts(case: &Case, dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for (name, named) in &case.build_contexts {
        let value = match &named.image {
            Some(image) => format!("docker-image://{image}"),
            None => {
                let path = dir.join(format!("named-{name}"));
                write_entries(&named.context, &path);
                path.display().to_string()
            }
        };
        args.push("--build-context".into());
        args.push(format!("{name}={value}"));
    }
    args
}

/// Builds and checks one case; Err holds every difference found.
fn run_case(file: &Path, store: &Path, scratch: &Path, docker: bool) -> Result<(), String> {
    let name = file
        .strip_prefix(cases_dir())
        .unwrap()
        .with_extension("")
        .display()
        .to_string();
    let case = load(file);
    let slug = name.replace('/', "-");
    let ctx = scratch.join(format!("ctx-{slug}"));
    make_context(&case, &ctx);
    let tag = format!("bk-{slug}:1");
    let rootfs = scratch.join(format!("kiln-{slug}"));
    let out = kiln()
        .arg("--root")
        .arg(store)
        .args(["build", "-q", "-t", &tag])
        .arg(format!("--output=type=local,dest={}", rootfs.display()))
        .args(build_args(&case))
        .args(named_contexts(
            &case,
            &scratch.join(format!("named-{slug}")),
        ))
        .arg(&ctx)
        .output()
        .expect("running kiln");
    let built = Built {
        ok: out.status.success(),
        stderr: text(&out.stderr),
    };
    let mut wrong = Vec::new();
    if let Some(expected) = &case.warnings {
        let mut want: Vec<LintWarning> = expected.clone();
        want.sort();
        let want: Vec<String> = want
            .iter()
            .map(|w| format!("{}: {} (line {})", w.rule, w.detail, w.line))
            .collect();
        let got = build_warnings(&built.stderr);
        if got != want {
            wrong.push(format!("build warnings: got {got:#?}\n    want {want:#?}"));
        }
        // The check: every stage, BuildKit's lint result JSON.
        let out = kiln()
            .arg("--root")
            .arg(store)
            .args(["build", "--call=check,format=json"])
            .args(build_args(&case))
            .arg(&ctx)
            .output()
            .expect("running kiln");
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(result) => {
                let want = case.check_warnings.as_ref().unwrap_or(expected);
                wrong.extend(check_lint_json(want, &result));
                // BuildKit's check ends with the lint error when the
                // build does; a build error of another kind (a missing
                // file) is no lint error.
                let lint_error = case
                    .error
                    .as_deref()
                    .filter(|e| e.to_lowercase().starts_with("lint violation"));
                let message = result["buildError"]["message"].as_str();
                match (lint_error, message) {
                    (Some(e), Some(m)) if m.starts_with(e) => {}
                    (Some(e), m) => {
                        wrong.push(format!("check: buildError {m:?}, want {e:?}"));
                    }
                    (None, Some(m)) if case.error.is_none() => {
                        wrong.push(format!("check: buildError {m:?}, want none"));
                    }
                    _ => {}
                }
            }
            Err(e) => wrong.push(format!(
                "check: no JSON ({e}): {}{}",
                text(&out.stdout),
                text(&out.stderr)
            )),
        }
    }
    if let Some(want) = &case.error {
        if built.ok {
            wrong.push(format!("built, want an error containing {want:?}"));
        } else if !built.stderr.to_lowercase().contains(&want.to_lowercase()) {
            wrong.push(format!("error lacks {want:?}:\n{}", built.stderr));
        } else if built.stderr.contains("panicked") {
            wrong.push(format!("kiln panicked:\n{}", built.stderr));
        }
    } else if !built.ok {
        wrong.push(format!("build failed:\n{}", built.stderr));
    } else {
        wrong.extend(check_files(&case, &rootfs));
        let out = kiln()
            .arg("--root")
            .arg(store)
            .args(["inspect", &tag])
            .output()
            .expect("kiln inspect");
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let history: Vec<String> = inspected[0]["History"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| h["created_by"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        wrong.extend(check_config(&case, &inspected[0], &history));
        if docker && case.docker {
            wrong.extend(compare_with_docker(
                &case,
                &ctx,
                &tag,
                &rootfs,
                &inspected[0],
                scratch,
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&ctx);
    let _ = std::fs::remove_dir_all(&rootfs);
    let _ = std::fs::remove_dir_all(scratch.join(format!("named-{slug}")));
    if let Some(gap) = &case.known_gap {
        return match wrong.is_empty() {
            true => Err(format!(
                "{name} ({}): passes now; remove its known_gap ({gap}) and README's mention",
                case.source
            )),
            false => Ok(()),
        };
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name} ({}):\n    {}",
            case.source,
            wrong.join("\n    ")
        ))
    }
}

/// `docker build` of the same case: the same files and config fields.
fn compare_with_docker(
    case: &Case,
    ctx: &Path,
    tag: &str,
    kiln_root: &Path,
    kiln_cfg: &Value,
    scratch: &Path,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let out = docker_cmd()
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--network", "host", "-q", "-t", tag])
        .args(build_args(case))
        .arg(ctx)
        .output()
        .expect("docker build");
    if !out.status.success() {
        return vec![format!("docker build failed:\n{}", text(&out.stderr))];
    }
    let docker_root = scratch.join(format!("docker-{}", tag.replace(':', "-")));
    std::fs::create_dir_all(&docker_root).unwrap();
    // An image with neither Cmd nor Entrypoint (FROM scratch) needs a
    // command to be created; it never runs.
    let created = docker_cmd().args(["create", tag]).output().unwrap();
    let created = match created.status.success() {
        true => created,
        false => docker_cmd()
            .args(["create", tag, "/kiln-no-cmd"])
            .output()
            .unwrap(),
    };
    let id = text(&created.stdout).trim().to_string();
    if id.is_empty() {
        return vec![format!("docker create: {}", text(&created.stderr))];
    }
    let mut export = docker_cmd()
        .args(["export", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker export");
    let untar = std::process::Command::new("tar")
        .args(["--numeric-owner", "-xpf", "-", "-C"])
        .arg(&docker_root)
        .stdin(export.stdout.take().expect("pipe"))
        .status()
        .expect("tar");
    let exported = export.wait().is_ok_and(|s| s.success());
    if !untar.success() || !exported {
        return vec!["untarring docker's export failed".into()];
    }
    let _ = docker_cmd().args(["rm", &id]).output();
    let (ours, theirs) = (tree(kiln_root), tree(&docker_root));
    for path in ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (mut a, mut b) = (ours.get(path).cloned(), theirs.get(path).cloned());
        if case.varies.contains(path) {
            let shape = |v: String| v.split(" sha256:").next().unwrap_or_default().to_string();
            (a, b) = (a.map(shape), b.map(shape));
        }
        let (a, b) = (a.as_ref(), b.as_ref());
        // `docker export` of a container adds these directories (mount
        // points, /etc for hosts and resolv.conf) to any image.
        let export_made = ["/dev", "/proc", "/sys", "/etc"].contains(&path.as_str())
            && a.is_none()
            && b.is_some_and(|d| d.starts_with("dir 0755 0:0"));
        if a != b && !export_made {
            wrong.push(format!(
                "docker differs at {path}\n      kiln:   {}\n      docker: {}",
                a.map_or("(absent)", String::as_str),
                b.map_or("(absent)", String::as_str)
            ));
        }
    }
    let inspected: Value = serde_json::from_slice(
        &docker_cmd()
            .args(["image", "inspect", tag])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap_or(Value::Null);
    let (a, b) = (
        config_fields(&kiln_cfg["Config"]),
        config_fields(&inspected[0]["Config"]),
    );
    for (key, value) in &a {
        if b.get(key) != Some(value) {
            wrong.push(format!(
                "docker differs in config {key}\n      kiln:   {value}\n      docker: {}",
                b[key]
            ));
        }
    }
    // The tag stays until every case is done: two cases may build the same
    // image, and removing it under the other's build fails that build.
    let _ = std::fs::remove_dir_all(&docker_root);
    wrong
}

#[test]
fn every_case_names_its_buildkit_test() {
    let files = case_files();
    for file in &files {
        let case = load(file);
        assert!(
            case.source.contains("_test.go:test") || case.source.contains("_test.go:Test"),
            "{}: source must be <file>_test.go:<test function>, got {:?}",
            file.display(),
            case.source
        );
        assert!(
            case.error.is_none() || case.file.is_empty() && case.config.is_empty(),
            "{}: a case expects an error or an image, not both",
            file.display()
        );
        assert!(
            !case.docker || case.build_contexts.is_empty(),
            "{}: docker 20.10 has no --build-context: say docker = false",
            file.display()
        );
    }
}

#[test]
fn buildkit_cases_build_as_buildkit_asserts() {
    if !need_root("build steps run in containers") {
        return;
    }
    let Some(tar) = busybox_docker_tar() else {
        return;
    };
    let only = std::env::var("KILN_CASE").ok();
    let files: Vec<PathBuf> = case_files()
        .into_iter()
        .filter(|f| {
            only.as_ref()
                .is_none_or(|o| f.to_string_lossy().contains(o.as_str()))
        })
        .collect();
    // A filter that matches nothing, or an empty cases directory, is no
    // pass: "0 of 0 differ" asserts nothing.
    let least = if only.is_some() { 1 } else { 320 };
    assert!(
        files.len() >= least,
        "{} BuildKit cases found (KILN_CASE={only:?}, in {}): at least {least} expected",
        files.len(),
        cases_dir().display()
    );
    let store = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let out = kiln()
        .arg("--root")
        .arg(store.path())
        .arg("import")
        .arg(tar)
        .args([
            "busybox:latest",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            r#"CMD ["sh"]"#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    // docker gets the very same base, saved by kiln.
    let docker = docker_ready() && {
        let saved = scratch.path().join("busybox.tar");
        let out = kiln()
            .arg("--root")
            .arg(store.path())
            .args(["save", "--format", "docker", "-o"])
            .arg(&saved)
            .arg("busybox:latest")
            .output()
            .unwrap();
        assert!(out.status.success(), "save: {}", text(&out.stderr));
        let out = docker_cmd()
            .arg("load")
            .arg("-i")
            .arg(&saved)
            .output()
            .unwrap();
        assert!(out.status.success(), "docker load: {}", text(&out.stderr));
        true
    };
    let queue = Mutex::new(files.clone());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let Some(file) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    if let Err(e) = run_case(&file, store.path(), scratch.path(), docker) {
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    if docker {
        let listed = docker_cmd()
            .args([
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "--filter",
                "reference=bk-*",
            ])
            .output()
            .unwrap();
        let tags: Vec<String> = text(&listed.stdout).lines().map(str::to_string).collect();
        if !tags.is_empty() {
            let _ = docker_cmd().arg("rmi").args(&tags).output();
        }
    }
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} BuildKit cases differ:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
