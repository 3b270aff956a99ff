//! `kiln build`: a Dockerfile and its context into an image in the store.

use super::diagnostic::{Located, Severity};
use super::{Error, open_store, read_dockerfile};
use kiln::builder::{self, BuildError, Options, Secret};
use kiln::dockerfile::Source;
use kiln::image::archive::Format;
use kiln::image::{Image, Name};
use kiln::layer::Compression;
use kiln::progress::{Mode, Progress};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln build`, in `docker build --help`'s order and words
/// where they fit (kiln's own options last).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The build context.
    context: PathBuf,
    /// Add a custom host-to-IP mapping to every RUN's /etc/hosts (format:
    /// "host:ip"; repeatable).
    #[arg(long = "add-host", value_parser = kiln::container::options::parse_add_host)]
    add_hosts: Vec<(String, String)>,
    /// How RUN steps are isolated: namespaces over an overlay, or chroot
    /// into a copy of the step's root where this host refuses namespaces
    /// (an unprivileged CI container); auto picks the strongest allowed
    /// [env: KILN_ISOLATION; default: auto].
    #[arg(long, value_name = "auto|namespaces|chroot", value_parser = kiln::sandbox::isolation::Choice::parse)]
    isolation: Option<kiln::sandbox::isolation::Choice>,
    /// Allow extra privileged entitlement: "security.insecure" lets `RUN
    /// --security=insecure` run without the seccomp filter.
    #[arg(long, value_parser = ["security.insecure", "network.host"])]
    allow: Vec<String>,
    /// Add annotation to the image's manifest: `KEY=VALUE` or
    /// `manifest:KEY=VALUE` (repeatable).
    #[arg(long = "annotation", value_parser = parse_annotation)]
    annotations: Vec<(String, String)>,
    /// Attestation parameters: `type=provenance[,mode=min|max]`,
    /// `type=sbom`, `type=…,disabled=true`; repeatable.
    #[arg(long)]
    attest: Vec<String>,
    /// Set build-time variables: `KEY=value`, or `KEY` to take it from the
    /// environment (repeatable).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Additional build contexts (e.g., name=path, name=docker-image://REF,
    /// name=oci-layout://PATH[:TAG|@DIGEST]): `FROM name` and `--from=name`
    /// read them instead of a stage or image (repeatable).
    #[arg(long = "build-context", value_parser = parse_build_context)]
    build_contexts: Vec<(String, builder::NamedContext)>,
    /// External cache sources: `type=local,src=DIR`,
    /// `type=registry,ref=REF`, or a fleet's step cache
    /// `type=registry,ref=REPO,mode=steps` (each step looked up by its key
    /// before it runs) (repeatable).
    #[arg(long, value_parser = parse_cache)]
    cache_from: Vec<builder::CacheTo>,
    /// Cache export destination: `type=local,dest=DIR` or
    /// `type=registry,ref=REF`, with `mode=min` (the final image's steps)
    /// or `mode=max` (every stage's), and `mounts=true` (the contents of
    /// the RUN cache mounts used travel with it); `mode=steps` writes each
    /// step as its own tag of a repository, once (repeatable).
    #[arg(long, value_parser = parse_cache)]
    cache_to: Vec<builder::CacheTo>,
    /// Set method for evaluating build: "check" runs the Dockerfile's
    /// checks instead of building (default "build"); "check,format=json"
    /// prints BuildKit's lint result.
    #[arg(long, value_parser = parse_call)]
    call: Option<Call>,
    /// Set the parent cgroup for the RUN instructions during build (a path
    /// below the cgroup root; root only).
    #[arg(long = "cgroup-parent", value_parser = kiln::sandbox::cgroup::check_parent)]
    cgroup_parent: Option<String>,
    /// Shorthand for "--call=check": exits 1 when there are findings.
    #[arg(long)]
    check: bool,
    /// Say why each step that misses the cache missed: the first input
    /// that differs from its last build (the step before it, the command,
    /// an argument, a file by its path).
    #[arg(long)]
    explain: bool,
    /// The build's SOURCE_DATE_EPOCH: seconds since 1970, or "git" for the
    /// commit time of the context's HEAD (default: the SOURCE_DATE_EPOCH
    /// environment variable; a `--build-arg SOURCE_DATE_EPOCH` wins).
    #[arg(long = "source-date-epoch", value_name = "SECONDS|git")]
    source_date_epoch: Option<String>,
    /// After the build, build the same inputs again in a scratch store
    /// with no cache and compare the two images; print the first
    /// difference and exit 1 when they differ.
    #[arg(long = "verify-repro")]
    verify_repro: bool,
    /// The modes of files COPY and ADD take from the context: "docker"
    /// (their own, as docker copies them) or "git" (0644, 0755 when
    /// executable, as git stores them: checkouts made under any umask
    /// build alike)
    /// [env: KILN_CONTEXT_MODES]
    #[arg(long = "context-modes", value_enum)]
    context_modes: Option<builder::ContextModes>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"); `-` reads
    /// standard input.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Write the image ID to a file.
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set metadata for an image: `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Accepted for scripts written for buildx: every image kiln builds is
    /// in its store already (`kiln run` and `kiln save` read it there).
    #[arg(long)]
    load: bool,
    /// Write build result metadata to a file.
    #[arg(long)]
    metadata_file: Option<PathBuf>,
    /// Set the networking mode for the RUN instructions during build:
    /// "default" (the host's, as BuildKit), "host" or "none".
    #[arg(long, value_parser = ["default", "host", "none"])]
    network: Option<String>,
    /// Do not use cache when building the image.
    #[arg(long)]
    no_cache: bool,
    /// Do not cache specified stages (name or number; repeatable or
    /// comma-separated).
    #[arg(long, value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Output destination: `type=local,dest=DIR` (its filesystem),
    /// `type=oci,dest=FILE` or `type=docker,dest=FILE` (an archive); a bare
    /// path means `type=local`.
    #[arg(short = 'o', long = "output", value_parser = parse_output)]
    output: Vec<Output>,
    /// Set target platform for build (`linux/arm64`): another machine's
    /// RUN steps run through binfmt_misc's qemu handlers. One platform
    /// per build for now.
    #[arg(long)]
    platform: Option<String>,
    /// Set type of progress output: a live view on a terminal (`tty`),
    /// numbered lines (`plain`, the default without a terminal), `json`
    /// lines or nothing (`quiet`).
    #[arg(long, value_enum, default_value = "auto")]
    progress: Mode,
    /// Shorthand for "--attest=type=provenance": `true` or `mode=min`
    /// (the default of a multi-platform build), `mode=max` (the
    /// Dockerfile too), `false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    provenance: Option<String>,
    /// When FROM bases are pulled: `missing` (not in the store), `always`,
    /// `never`; `--pull` alone means always.
    #[arg(long, value_enum, default_value = "missing", num_args = 0..=1, default_missing_value = "always")]
    pull: builder::Pull,
    /// Push the tags (-t) to their registries once built.
    #[arg(long)]
    push: bool,
    /// Suppress the build output and print image ID on success.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Shorthand for "--attest=type=sbom": `true` (an SPDX SBOM of each
    /// platform's image) or `false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    sbom: Option<String>,
    /// Secret to expose to the build: `id=X,src=FILE` or `id=X,env=VAR`
    /// (`id=X` alone reads the variable X); repeatable.
    #[arg(long = "secret", value_parser = parse_secret)]
    secrets: Vec<(String, Secret)>,
    /// Shared memory size for build containers (`64m`, `1g`; binary units
    /// as docker's; default 64m).
    #[arg(long = "shm-size", value_parser = kiln::container::options::shm_size)]
    shm_size: Option<u64>,
    /// SSH agent socket to expose to the build: `default` (the agent of
    /// $SSH_AUTH_SOCK) or `ID=SOCKET`; repeatable.
    #[arg(long = "ssh", value_parser = parse_ssh)]
    ssh: Vec<(String, PathBuf)>,
    /// Name and optionally a tag (format: "name:tag"; repeatable).
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Set the target build stage to build.
    #[arg(long)]
    target: Option<String>,
    /// Set ulimit options for every RUN: `NAME=SOFT[:HARD]` (`nofile`,
    /// `nproc`, `core`, ...; repeatable).
    #[arg(long = "ulimit", value_parser = kiln::sandbox::Rlimit::parse)]
    ulimits: Vec<kiln::sandbox::Rlimit>,
    /// A registry that may be reached over plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    insecure: Vec<String>,
}

/// Where `--output` sends the result.
#[derive(Debug, Clone)]
enum Output {
    Local(PathBuf),
    Archive(Format, PathBuf),
}

/// Parses `--output type=local|oci|docker,dest=PATH` (or a bare path).
fn parse_output(text: &str) -> Result<Output, String> {
    if !text.contains('=') {
        return Ok(Output::Local(PathBuf::from(text)));
    }
    let (mut kind, mut dest) = (None, None);
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => {
                return Err(format!(
                    "invalid output {text:?}: use type=local|oci|docker,dest=PATH"
                ));
            }
        }
    }
    let dest = dest.ok_or_else(|| format!("invalid output {text:?}: dest=PATH is required"))?;
    match kind.as_deref() {
        Some("local") | None => Ok(Output::Local(dest)),
        Some("oci") => Ok(Output::Archive(Format::Oci, dest)),
        Some("docker") => Ok(Output::Archive(Format::Docker, dest)),
        Some(other) => Err(format!(
            "unsupported output type {other:?}: kiln writes local, oci and docker"
        )),
    }
}

/// Parses `--label KEY=VALUE` (a bare KEY is an empty label, as docker's).
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text.split_once('=').unwrap_or((text, ""));
    if k.is_empty() {
        return Err(format!("invalid label {text:?}: use KEY=VALUE"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses `--build-context NAME=DIR|docker-image://REF|oci-layout://PATH`;
/// a directory must exist.
fn parse_build_context(text: &str) -> Result<(String, builder::NamedContext), String> {
    let (name, value) = text
        .split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            format!(
                "invalid --build-context {text:?}: use NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG]"
            )
        })?;
    let context = builder::NamedContext::parse(value)?;
    if let builder::NamedContext::Dir(dir) | builder::NamedContext::OciLayout { path: dir, .. } =
        &context
        && !dir.is_dir()
    {
        return Err(format!(
            "--build-context {name}: {} is not a directory",
            dir.display()
        ));
    }
    Ok((name.to_string(), context))
}

/// Parses `--annotation [manifest:]KEY=VALUE`; kiln writes one manifest,
/// so the index and descriptor kinds are refused.
fn parse_annotation(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("invalid annotation {text:?}: use [manifest:]KEY=VALUE"))?;
    let key = match key.split_once(':') {
        Some(("manifest", k)) => k,
        Some((kind @ ("index" | "manifest-descriptor" | "index-descriptor"), _)) => {
            return Err(format!(
                "--annotation {kind}:...: kiln writes a single manifest; only manifest annotations are supported"
            ));
        }
        _ => key,
    };
    Ok((key.to_string(), value.to_string()))
}

fn parse_cache(text: &str) -> Result<builder::CacheTo, String> {
    builder::CacheSpec::parse(text)
}

/// Parses `--ssh ID[=SOCKET]`: the socket must be an ssh-agent's.
fn parse_ssh(text: &str) -> Result<(String, PathBuf), String> {
    use std::os::unix::fs::FileTypeExt;
    let (id, socket) = match text.split_once('=') {
        Some((id, path)) => (id.to_string(), PathBuf::from(path)),
        None => {
            let sock = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                format!(
                    "--ssh {text}: SSH_AUTH_SOCK is not set; start ssh-agent or pass {text}=SOCKET"
                )
            })?;
            (text.to_string(), PathBuf::from(sock))
        }
    };
    match std::fs::metadata(&socket) {
        Ok(m) if m.file_type().is_socket() => Ok((id, socket)),
        Ok(_) => Err(format!(
            "--ssh {text}: {} is not a socket; kiln forwards ssh-agent sockets (load keys with ssh-add)",
            socket.display()
        )),
        Err(e) => Err(format!("--ssh {text}: {}: {e}", socket.display())),
    }
}

/// Parses `--secret id=X[,src=FILE|,env=VAR]` (also `type=file|env`).
fn parse_secret(text: &str) -> Result<(String, Secret), String> {
    let (mut id, mut src, mut env) = (None, None, None);
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", "file" | "env")) => {}
            _ => {
                return Err(format!(
                    "invalid secret {text:?}: use id=NAME,src=FILE or id=NAME,env=VAR"
                ));
            }
        }
    }
    let id = id.ok_or_else(|| format!("invalid secret {text:?}: id=NAME is required"))?;
    let secret = match (src, env) {
        (Some(path), _) => Secret::File(path),
        (None, Some(var)) => Secret::Env(var),
        (None, None) => Secret::Env(id.clone()),
    };
    Ok((id, secret))
}

/// The epoch `--source-date-epoch` or the environment asks for (the
/// precedence is `plan`'s: `kiln::plan::requested_epoch`).
fn source_date_epoch(args: &Args) -> Result<Option<i64>, Error> {
    let build_arg_set = args
        .build_args
        .iter()
        .any(|a| a.split_once('=').map_or(a.as_str(), |(k, _)| k) == "SOURCE_DATE_EPOCH");
    let env = std::env::var("SOURCE_DATE_EPOCH").ok();
    kiln::plan::requested_epoch(
        args.source_date_epoch.as_deref(),
        env.as_deref(),
        build_arg_set,
        || kiln::context::git_commit_time(&args.context),
    )
    .map_err(Error::Usage)
}

/// `--verify-repro`: builds again in a scratch store and says whether
/// the image is the same; exit status 1 when it is not.
fn verify_repro(
    store: &kiln::store::Store,
    source: &Source,
    opts: &Options,
    args: &Args,
    image: &kiln::image::Image,
) -> Result<(ExitCode, serde_json::Value), Error> {
    let progress = Progress::stderr(if args.quiet {
        Mode::Quiet
    } else {
        args.progress
    });
    let verdict = builder::verify::verify(store, source, opts, &progress, image);
    drop(progress);
    let mut err = std::io::stderr();
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => return Ok((build_failed(source, e)?, serde_json::Value::Null)),
    };
    // Provenance records the verdict as this says it.
    match verdict {
        builder::verify::Verdict::Same => {
            writeln!(
                err,
                "reproducible: {} again from the same inputs in a scratch store with no cache",
                image.id
            )?;
            Ok((
                ExitCode::SUCCESS,
                serde_json::json!({ "result": "reproducible", "imageId": image.id.to_string() }),
            ))
        }
        builder::verify::Verdict::Differs { again, first } => {
            writeln!(
                err,
                "kiln: not reproducible: {}, then {again} built again from the same inputs in a scratch store with no cache",
                image.id
            )?;
            for line in &first {
                writeln!(err, "{line}")?;
            }
            Ok((
                ExitCode::FAILURE,
                serde_json::json!({ "result": "differs", "imageId": again, "firstDifference": first }),
            ))
        }
    }
}

/// The records a build attaches: `--attest`, then `--provenance` and
/// `--sbom` over it; provenance (`mode=min`) by default for a
/// multi-platform build, as BuildKit attaches it to what it pushes.
fn attestations(args: &Args, multi: bool) -> Result<kiln::attest::Attest, Error> {
    use kiln::attest::provenance::Mode;
    let mut provenance: Option<Option<Mode>> = None;
    let mut sbom: Option<bool> = None;
    let bad =
        |what: &str, value: &str, hint: &str| Error::Usage(format!("{what} {value:?}: {hint}"));
    let provenance_of = |value: &str| -> Result<Option<Mode>, Error> {
        let mut mode = Some(Mode::Min);
        for field in value.split(',') {
            match field.trim() {
                "true" | "1" | "mode=min" | "" => {}
                "false" | "0" | "disabled=true" => mode = None,
                "mode=max" => mode = mode.map(|_| Mode::Max),
                other => {
                    return Err(bad(
                        "--provenance",
                        other,
                        "use true, false, mode=min or mode=max",
                    ));
                }
            }
        }
        Ok(mode)
    };
    for a in &args.attest {
        let kind = a
            .split(',')
            .find_map(|f| f.strip_prefix("type="))
            .ok_or_else(|| bad("--attest", a, "name its type: type=provenance or type=sbom"))?;
        let rest: Vec<&str> = a.split(',').filter(|f| !f.starts_with("type=")).collect();
        match kind {
            "provenance" => provenance = Some(provenance_of(&rest.join(","))?),
            "sbom" => {
                sbom = Some(!rest.contains(&"disabled=true"));
                if let Some(f) = rest.iter().find(|f| {
                    !f.starts_with("generator=")
                        && **f != "disabled=true"
                        && **f != "disabled=false"
                }) {
                    return Err(bad(
                        "--attest type=sbom parameter",
                        f,
                        "kiln's own scanner takes no parameters but disabled=true",
                    ));
                }
            }
            other => return Err(bad("--attest type", other, "use provenance or sbom")),
        }
    }
    if let Some(p) = &args.provenance {
        provenance = Some(provenance_of(p)?);
    }
    if let Some(s) = &args.sbom {
        sbom = Some(match s.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => return Err(bad("--sbom", other, "use true or false")),
        });
    }
    Ok(kiln::attest::Attest {
        provenance: provenance.unwrap_or(multi.then_some(Mode::Min)),
        sbom: sbom.unwrap_or(false),
    })
}

/// `--call=METHOD[,format=text|json]`.
#[derive(Clone, Debug, Default)]
struct Call {
    /// "check": the checks instead of a build.
    check: bool,
    /// `format=json`.
    json: bool,
}

fn parse_call(text: &str) -> Result<Call, String> {
    let mut parts = text.split(',');
    let check = match parts.next().unwrap_or_default() {
        "build" => false,
        "check" => true,
        other => {
            return Err(format!(
                "invalid --call method {other:?}: use build or check"
            ));
        }
    };
    let mut call = Call { check, json: false };
    for part in parts {
        match part.split_once('=') {
            Some(("format", "json")) => call.json = true,
            Some(("format", "text")) => call.json = false,
            _ => {
                return Err(format!(
                    "invalid --call option {part:?}: use format=text or format=json"
                ));
            }
        }
    }
    Ok(call)
}

/// Builds and prints the image id.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    if let Some(choice) = args.isolation {
        kiln::sandbox::isolation::ask(choice);
    }
    let call = args.call.clone().unwrap_or_default();
    if args.check || call.check {
        return super::check::for_build(
            root,
            args.file.clone(),
            args.context.clone(),
            args.build_args.clone(),
            call.json,
        );
    }
    // `--platform a,b`: each normalized, once, in the order given.
    let mut platforms: Vec<String> = Vec::new();
    for p in args.platform.iter().flat_map(|p| p.split(',')) {
        let p = kiln::plan::normalize_platform(p.trim())
            .map_err(|e| Error::Usage(format!("--platform: {e}")))?;
        if !platforms.contains(&p) {
            platforms.push(p);
        }
    }
    let attest = attestations(&args, platforms.len() > 1)?;
    // One platform without records: one image, as before; else an index.
    let indexed = platforms.len() > 1 || attest.any();
    let platform = match platforms.as_slice() {
        [one] if *one != kiln::plan::host_platform() => Some(one.clone()),
        _ => None,
    };
    if platforms.is_empty() {
        platforms.push(kiln::plan::host_platform());
    }
    let mut tags = Vec::new();
    for t in &args.tags {
        tags.push(t.parse::<Name>().map_err(Error::Usage)?);
    }
    let mut build_args = Vec::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.push((a.clone(), v));
                }
            }
        }
    }
    let source_date_epoch = source_date_epoch(&args)?;
    let context_modes = match (&args.context_modes, std::env::var("KILN_CONTEXT_MODES")) {
        (Some(m), _) => *m,
        (None, Ok(v)) if !v.is_empty() => {
            <builder::ContextModes as clap::ValueEnum>::from_str(&v, true).map_err(|_| {
                Error::Usage(format!(
                    "KILN_CONTEXT_MODES={v}: expected \"docker\" or \"git\""
                ))
            })?
        }
        (None, _) => builder::ContextModes::Docker,
    };
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| builder::default_dockerfile(&args.context));
    let (name, bytes) = read_dockerfile(&file)?;
    let source = Source::new(name, &bytes);
    let store = open_store(root)?;
    let opts = Options {
        label: None,
        platform,
        context: args.context.clone(),
        dockerfile: (file.as_os_str() != "-").then_some(file),
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        secrets: args.secrets.clone(),
        ssh: args.ssh.clone(),
        pull: args.pull,
        cache_to: args.cache_to.clone(),
        cache_from: args.cache_from.iter().map(|c| c.spec.clone()).collect(),
        allow_insecure: args.allow.iter().any(|a| a == "security.insecure"),
        labels: args.labels.clone(),
        network: match args.network.as_deref() {
            Some("none") => builder::DefaultNetwork::None,
            _ => builder::DefaultNetwork::Host,
        },
        add_hosts: args.add_hosts.clone(),
        build_contexts: args.build_contexts.clone(),
        shm_size: args.shm_size,
        ulimits: args.ulimits.clone(),
        annotations: args.annotations.clone(),
        cgroup_parent: args.cgroup_parent.clone(),
        explain: args.explain,
        warm_check: None,
        cache_generations: None,
        cancel: None,
        source_date_epoch,
        context_modes,
        registry: {
            let mut r = kiln::registry::Options::from_env();
            r.insecure.extend(args.insecure.iter().cloned());
            r
        },
    };
    let progress = Progress::stderr(if args.quiet {
        Mode::Quiet
    } else {
        args.progress
    });
    let mut verified: Option<(ExitCode, serde_json::Value)> = None;
    let result = match indexed {
        false => {
            let r = builder::build(&store, &source, &opts, &progress);
            // The live view ends before anything else is printed.
            drop(progress);
            r.map(|(image, report)| (image, vec![(None, report)]))
        }
        true => {
            let built =
                builder::platforms::build_each(&store, &source, &opts, &platforms, &progress);
            drop(progress);
            match built {
                Err(e) => Err(e),
                Ok(built) => {
                    // Verified before the records are written: provenance
                    // carries the verdict. This machine's image, else the first.
                    let host = kiln::plan::host_platform();
                    let checked = built
                        .iter()
                        .find(|b| b.platform == host)
                        .unwrap_or(&built[0]);
                    if args.verify_repro {
                        let one = Options {
                            platform: (checked.platform != host).then(|| checked.platform.clone()),
                            tags: Vec::new(),
                            ..opts.clone()
                        };
                        let (code, mut verdict) =
                            verify_repro(&store, &source, &one, &args, &checked.image)?;
                        // Recorded in that platform's provenance only.
                        verdict["platform"] = serde_json::Value::String(checked.platform.clone());
                        verified = Some((code, verdict));
                    }
                    let inputs = kiln::attest::provenance::Inputs {
                        dockerfile: bytes.clone(),
                        dockerfile_path: opts
                            .dockerfile
                            .as_ref()
                            .map_or_else(|| "-".to_string(), |d| d.display().to_string()),
                        context: args.context.clone(),
                        build_args: builder::build_args_of(&opts),
                        target: opts.target.clone(),
                        secrets: opts.secrets.iter().map(|(id, _)| id.clone()).collect(),
                        verified: verified.as_ref().map(|(_, v)| v.clone()),
                        ..Default::default()
                    };
                    let reports = built
                        .iter()
                        .map(|b| (Some(b.platform.clone()), b.report.clone()))
                        .collect();
                    builder::platforms::assemble(&store, &built, &opts, &attest, &inputs)
                        .map(|image| (image, reports))
                }
            }
        }
    };
    match result {
        Ok((image, reports)) => {
            // Without a name and not exported, the image stays as
            // docker's `<none>:<none>`: `kiln run ID` finds it.
            if opts.tags.is_empty() && args.output.is_empty() {
                store.keep_untagged(image.descriptor(&store))?;
            }
            // Verified first: an image that is not what it claims is
            // neither exported nor pushed.
            if args.verify_repro {
                let code = match verified.take() {
                    Some((code, _)) => code,
                    None => verify_repro(&store, &source, &opts, &args, &image)?.0,
                };
                if code != ExitCode::SUCCESS {
                    writeln!(std::io::stdout(), "{}", image.id)?;
                    return Ok(code);
                }
            }
            for output in &args.output {
                match output {
                    // Several platforms: a directory each, named as
                    // BuildKit names them (`linux_arm64`).
                    Output::Local(dir) if platforms.len() > 1 => {
                        for p in &platforms {
                            let wanted =
                                kiln::registry::Platform::parse(p).map_err(Error::Usage)?;
                            let one = kiln::image::Image::load_for(
                                &store,
                                image.entry_digest(),
                                Some(&wanted),
                            )?;
                            one.export_rootfs(&store, &dir.join(p.replace('/', "_")))?;
                        }
                    }
                    Output::Local(dir) => image.export_rootfs(&store, dir)?,
                    Output::Archive(format, file) => {
                        let name = opts
                            .tags
                            .first()
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| image.id.to_string());
                        super::save::write_archive(
                            &store,
                            &[(name, image.clone())],
                            file,
                            *format,
                            Compression::Gzip,
                        )?;
                    }
                }
            }
            if args.push {
                push_tags(&store, &image, &opts, args.quiet)?;
            }
            if let Some(path) = &args.metadata_file {
                write_file(
                    path,
                    metadata(&store, &image, &opts.tags, &reports).as_bytes(),
                )?;
            }
            if let Some(path) = &args.iidfile {
                write_file(path, image.id.to_string().as_bytes())?;
            }
            writeln!(std::io::stdout(), "{}", image.id)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => build_failed(&source, e),
    }
}

/// How a failed build is told: the Dockerfile's errors and a failed
/// step's with their lines, others as messages.
fn build_failed(source: &Source, e: BuildError) -> Result<ExitCode, Error> {
    match e {
        BuildError::Dockerfile(errors) => {
            let mut out = String::new();
            for e in errors {
                out.push_str(
                    &Located::with(source, e, Severity::Error, None).render(super::color_stderr()),
                );
            }
            std::io::stderr().write_all(out.as_bytes())?;
            Ok(ExitCode::FAILURE)
        }
        BuildError::Step { error, log, .. } => {
            let mut text = String::new();
            if let Some(log) = &log {
                // BuildKit's report: the command's last lines between rules.
                text.push_str("------\n");
                for line in &log.tail {
                    text.push_str(&format!(" > {line}\n"));
                }
                text.push_str("------\n");
            }
            text.push_str(
                &Located::with(source, error, Severity::Error, None).render(super::color_stderr()),
            );
            if let Some(log) = &log {
                text.push_str(&format!(
                    "the step's whole output: {}\n",
                    log.path.display()
                ));
            }
            std::io::stderr().write_all(text.as_bytes())?;
            Ok(ExitCode::FAILURE)
        }
        BuildError::Canceled => Ok(ExitCode::FAILURE),
        e @ (BuildError::NoTarget { .. }
        | BuildError::Context(_)
        | BuildError::Cache(_)
        | BuildError::Invalid(_)
        | BuildError::Cold { .. }) => Err(Error::Usage(e.to_string())),
        BuildError::Ignore(e) => Err(Error::Ignore(e)),
        e @ BuildError::Fetch { .. } => Err(Error::Build(Box::new(e))),
        BuildError::Store(e) => Err(e.into()),
        BuildError::Image(e) => Err(e.into()),
    }
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// `--metadata-file`'s JSON, with the keys `docker buildx build` writes
/// and `kiln.build.report`: each platform's build report (its steps with
/// their keys, outcome, time and bytes; cache exports; warnings).
fn metadata(
    store: &kiln::store::Store,
    image: &Image,
    tags: &[Name],
    reports: &[(Option<String>, builder::BuildReport)],
) -> String {
    let descriptor = image.descriptor(store);
    let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let reports: Vec<serde_json::Value> = reports
        .iter()
        .map(|(platform, r)| r.to_json(platform.as_deref()))
        .collect();
    let value = serde_json::json!({
        "containerimage.config.digest": image.id.to_string(),
        "containerimage.descriptor": descriptor,
        "containerimage.digest": image.entry_digest().to_string(),
        "image.name": names.join(","),
        "kiln.build.report": reports,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// `--push`: each tag to its registry.
fn push_tags(
    store: &kiln::store::Store,
    image: &Image,
    opts: &Options,
    quiet: bool,
) -> Result<(), Error> {
    use kiln::registry::{self, Client, Reference, Transfer};
    let mode = if quiet { Mode::Quiet } else { Mode::Auto };
    let runtime = super::runtime()?;
    for tag in &opts.tags {
        let reference = Reference::parse(&tag.to_string()).map_err(Error::Usage)?;
        let transfers = Transfer::stderr(mode, "pushed");
        let pushed = runtime.block_on(async {
            let client = Client::connect(&reference.registry, &opts.registry, None).await?;
            registry::push::push(store, &client, image, &reference, &transfers).await
        })?;
        if !quiet {
            let digest = pushed.digest.map(|d| d.to_string()).unwrap_or_default();
            writeln!(std::io::stderr(), "pushed {reference}: {digest}")?;
        }
    }
    Ok(())
}
