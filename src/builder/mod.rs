//! `kiln build`, first slice: stages in file order (only those the target
//! needs), FROM a local image, `scratch` or an earlier stage; RUN in the
//! sandbox; COPY and ADD from the context or another stage; every config
//! instruction; ARG/ENV expansion; a cache keyed before each step runs.
//!
//! Each step's key is sha256(parent key, the expanded instruction, what it
//! sees, content digests of its inputs): a hit reuses the layer and runs
//! nothing. A RUN's overlay upper directory is the step's diff: it becomes
//! the layer (generated as a tar) and, renamed, the layer's snapshot.

mod cache;
mod copy;
mod explain;
mod fetch;
mod finish;
mod history;
mod log;
mod mounts;
pub mod platforms;
mod prepare;
pub mod report;
pub mod verify;

pub use cache::{CacheMode, CacheSpec, CacheTo, keys as cache_keys};
pub use log::StepLog;
pub use prepare::base_facts;
pub use report::BuildReport;

use prepare::Prepared;
use report::Recorder;

use crate::context::digest::StatCache;
use crate::context::ignore::Matcher;
use crate::dockerfile::heredoc;
use crate::dockerfile::instructions::{self, Command, Instruction, Stage};
use crate::dockerfile::{Error as DfError, Source};
use crate::image::{self, History, Image, ImageConfig, ImageError, Name, config};
use crate::layer;
use crate::plan::{self, Scope};
use crate::progress::{Progress, StepId};
use crate::sandbox::fs::Root;
use crate::sandbox::{self, ContainerDirs, Spec};
use crate::store::{Digest, StepKey, Store, StoreError};
use oci_spec::image::{Descriptor, MediaType};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use thiserror::Error;

/// Why a build failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The Dockerfile is not valid (every error found).
    #[error("the Dockerfile has {} error(s)", .0.len())]
    Dockerfile(Vec<DfError>),
    /// A step failed.
    #[error("{message}")]
    Step {
        /// The instruction's span in the Dockerfile.
        error: DfError,
        /// What happened.
        message: String,
        /// The failed command's output, when it ran.
        log: Option<Box<StepLog>>,
        /// A RUN's command and its exit code, when that is what failed.
        exit: Option<Box<(String, i32)>>,
    },
    /// `--target` names no stage.
    #[error("target stage {name:?} could not be found ({})", match suggestion {
        Some(s) => format!("did you mean {s}?"),
        None => format!("named stages: {}", stages.join(", ")),
    })]
    NoTarget {
        /// The name asked for.
        name: String,
        /// The stage names there are.
        stages: Vec<String>,
        /// The stage name nearest to it, when one is near.
        suggestion: Option<String>,
    },
    /// The build context cannot be used.
    #[error("{0}")]
    Context(String),
    /// The context's `.dockerignore` (or `<Dockerfile>.dockerignore`)
    /// cannot be read or used.
    #[error(transparent)]
    Ignore(#[from] crate::context::ignore::IgnoreError),
    /// A build input (a build arg, SOURCE_DATE_EPOCH) is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A download the build needs failed.
    #[error("{what}: {source}")]
    Fetch {
        /// What it was for.
        what: String,
        /// Why.
        source: fetch::FetchError,
    },
    /// A step cache record cannot be written.
    #[error("step cache: {0}")]
    Cache(String),
    /// Another stage failed first; this one stopped.
    #[error("canceled: another stage failed")]
    Canceled,
    /// A warm check found a step the cache lacks.
    #[error("not warm: {step}: {why}")]
    Cold {
        /// The step, as progress shows it.
        step: String,
        /// Why it missed.
        why: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An image operation failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// What to build.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// A prefix of every step's name (`linux/arm64`), when builds of
    /// several platforms run side by side.
    pub label: Option<String>,
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's path (for `<Dockerfile>.dockerignore`).
    pub dockerfile: Option<PathBuf>,
    /// Names to tag the result with.
    pub tags: Vec<Name>,
    /// `--build-arg` values.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name or number) that use no cache.
    pub no_cache_filter: Vec<String>,
    /// `--secret`: id → where its value comes from.
    pub secrets: Vec<(String, Secret)>,
    /// `--ssh`: id → an ssh-agent socket to forward.
    pub ssh: Vec<(String, PathBuf)>,
    /// `--pull`: when FROM bases are fetched from their registry.
    pub pull: Pull,
    /// How registries are reached.
    pub registry: crate::registry::Options,
    /// `--cache-to`: where to export the step cache, and which steps
    /// (each is exported to; BuildKit takes several).
    pub cache_to: Vec<CacheTo>,
    /// `--cache-from`: caches to import before building.
    pub cache_from: Vec<CacheSpec>,
    /// `--allow security.insecure`: `RUN --security=insecure` may run
    /// without the seccomp filter.
    pub allow_insecure: bool,
    /// `--label`: labels set on the image built.
    pub labels: Vec<(String, String)>,
    /// `--network`: the network of a RUN that does not choose one.
    pub network: DefaultNetwork,
    /// `--add-host`: (host, IP) lines added to every RUN's /etc/hosts.
    pub add_hosts: Vec<(String, String)>,
    /// `--build-context`: named contexts, before stages and images.
    pub build_contexts: Vec<(String, NamedContext)>,
    /// `--shm-size`: /dev/shm of every RUN, in bytes.
    pub shm_size: Option<u64>,
    /// `--ulimit`: resource limits of every RUN.
    pub ulimits: Vec<sandbox::Rlimit>,
    /// `--annotation`: annotations of the image's manifest.
    pub annotations: Vec<(String, String)>,
    /// `--cgroup-parent`: the cgroup every RUN step's groups are made in.
    pub cgroup_parent: Option<String>,
    /// `--explain`: every step that misses the cache says why (the first
    /// input that differs from the step's last recorded build), naming
    /// the file when a source changed.
    pub explain: bool,
    /// A warm check (`kiln serve`'s plan-only path): the step keys a cache
    /// holds. Nothing runs: the build fails with `BuildError::Cold` at the
    /// first step whose key is not among them or not in the store.
    pub warm_check: Option<std::collections::HashSet<String>>,
    /// Cache generations `--cache-to` keeps in a registry (`TAG-gen-N`
    /// tags; older manifests deleted where the registry allows).
    pub cache_generations: Option<usize>,
    /// `--source-date-epoch`: the build's SOURCE_DATE_EPOCH (seconds) when
    /// no `SOURCE_DATE_EPOCH` build arg says otherwise; as buildx passes
    /// its environment's, it is also the build arg `ARG` lines see.
    pub source_date_epoch: Option<i64>,
    /// `--context-modes`: the modes files copied from the context get.
    pub context_modes: ContextModes,
    /// `--platform`: the platform built for, normalized `os/arch[/variant]`
    /// (None: this machine's).
    pub platform: Option<String>,
    /// Set by the caller to stop the build at the next step (`kiln serve`
    /// when its replica lost the job's lease): the build ends `Canceled`.
    pub cancel: Option<std::sync::Arc<AtomicBool>>,
}

/// The modes of files copied from the build context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ContextModes {
    /// The files' own modes, as docker copies them.
    #[default]
    Docker,
    /// The modes git stores: 0755 for a file its owner may execute, 0644
    /// for any other file, 0755 for directories; so that checkouts made
    /// under different umasks give COPY and ADD the same layers and the
    /// same cache keys (a RUN's bind mount of the context, and
    /// `--build-context` directories, see the files as they are).
    Git,
}

impl ContextModes {
    /// The permission bits (`mode & 0o7777`) an entry gets.
    pub fn apply(self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ContextModes::Docker => mode,
            ContextModes::Git if is_dir || mode & 0o100 != 0 => 0o755,
            ContextModes::Git => 0o644,
        }
    }
}

/// A `--build-context NAME=...`: what `FROM NAME` and `--from=NAME` read
/// instead of a stage or an image of that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory (`NAME=PATH`).
    Dir(PathBuf),
    /// An image (`NAME=docker-image://REF`), from the store or pulled.
    Image(String),
    /// An image of an OCI layout directory
    /// (`NAME=oci-layout://PATH[:TAG|@DIGEST]`).
    OciLayout {
        /// The layout directory.
        path: PathBuf,
        /// The tag or manifest digest that picks the image.
        reference: Option<String>,
    },
}

impl NamedContext {
    /// Parses the value of `--build-context NAME=VALUE`.
    pub fn parse(value: &str) -> Result<NamedContext, String> {
        if let Some(r) = value.strip_prefix("docker-image://") {
            return Ok(NamedContext::Image(r.to_string()));
        }
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (path, reference) = match rest.rsplit_once('@') {
                Some((p, d)) => (p, Some(d)),
                None => match rest.rsplit_once(':') {
                    Some((p, t)) if !t.contains('/') => (p, Some(t)),
                    _ => (rest, None),
                },
            };
            return Ok(NamedContext::OciLayout {
                path: PathBuf::from(path),
                reference: reference.map(str::to_string),
            });
        }
        if let Some(scheme) = ["target:", "http://", "https://", "git@"]
            .iter()
            .find(|p| value.starts_with(*p))
        {
            return Err(format!(
                "{scheme} build contexts are not supported by kiln yet: use a directory, docker-image://REF or oci-layout://PATH"
            ));
        }
        Ok(NamedContext::Dir(PathBuf::from(value)))
    }
}

/// The network a RUN step gets unless it says `--network` itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultNetwork {
    /// The host's, as BuildKit's default.
    #[default]
    Host,
    /// None: loopback only.
    None,
}

/// When a FROM base is pulled (`--pull`): the one policy of every
/// command that pulls.
pub use crate::registry::pull::Policy as Pull;

/// Where a build secret's value comes from (never stored anywhere).
#[derive(Debug, Clone)]
pub enum Secret {
    /// A file on the host.
    File(PathBuf),
    /// An environment variable of the kiln process.
    Env(String),
}

/// A stage's state while it is built.
#[derive(Clone)]
struct State {
    config: ImageConfig,
    layers: Vec<(Descriptor, Digest)>,
    key: String,
    /// CMD was set in this stage: ENTRYPOINT then keeps it (otherwise an
    /// ENTRYPOINT clears the CMD inherited from the base, as Docker does).
    cmd_set: bool,
    /// The ARGs in scope, in the order first declared. A stage built FROM
    /// this one starts with them (BuildKit's dispatchState.init).
    args: Scope,
    /// Every ARG declared in scope, valued or not, in the order first
    /// declared: RUN's history lists them (`|3 A=1 B= C=3`).
    declared: Vec<String>,
    /// The config steps since the last layer step, named (`build arg V`,
    /// `ENV ...`): the key holds them through the parent; the next layer
    /// step's miss is explained by them first.
    since_layer: Vec<(String, String)>,
}

impl State {
    /// A stage's start: `config` with no layers yet, keyed `key`, nothing
    /// in scope.
    fn fresh(config: ImageConfig, key: String) -> State {
        State {
            config,
            layers: Vec::new(),
            key,
            cmd_set: false,
            args: Scope::default(),
            declared: Vec::new(),
            since_layer: Vec::new(),
        }
    }

    /// `path` resolved against the stage's WORKDIR (absolute paths as they are).
    fn in_workdir(&self, path: &str) -> String {
        if path.starts_with('/') {
            return path.to_string();
        }
        let wd = self
            .config
            .config
            .working_dir
            .as_deref()
            .filter(|w| !w.is_empty())
            .unwrap_or("/");
        format!("{}/{path}", wd.trim_end_matches('/'))
    }
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    Digest::sha256(h.finalize().as_slice()).hex().to_string()
}

/// The variables a step's words expand with: the config's ENV, then the
/// ARGs in scope (ENV wins, as in a Dockerfile), last declaration first.
fn variables(state: &State) -> Scope {
    let env = state.config.config.env.iter().flatten().filter_map(|e| {
        e.split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
    });
    state.args.pairs().iter().cloned().chain(env).collect()
}

/// Expands one word with `vars`.
fn expand_word(vars: &Scope, escape: char, word: &str) -> Result<String, StepError> {
    vars.expand(word, escape).map_err(fail)
}

/// Why a step failed, before the step's span is attached: that happens
/// once, where steps are dispatched ([`StepError::at`]).
#[derive(Debug)]
enum StepError {
    /// The step itself failed (with the command's output when it ran).
    Failed {
        /// What happened.
        message: String,
        /// The failed command's output.
        log: Option<Box<StepLog>>,
        /// A RUN's command and its exit code, when that is what failed.
        exit: Option<Box<(String, i32)>>,
    },
    /// The build failed under it (the store, the cache, a cancel).
    Build(BuildError),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Failed { message, .. } => f.write_str(message),
            StepError::Build(e) => e.fmt(f),
        }
    }
}

impl StepError {
    /// The error as the build reports it, pointing at `step`.
    fn at(self, step: &instructions::Step) -> BuildError {
        match self {
            StepError::Failed { message, log, exit } => BuildError::Step {
                error: DfError::new(
                    crate::dockerfile::ErrorKind::Instruction(message.clone()),
                    step.span,
                ),
                message,
                log,
                exit,
            },
            StepError::Build(e) => e,
        }
    }
}

impl From<BuildError> for StepError {
    fn from(e: BuildError) -> Self {
        StepError::Build(e)
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Build(e.into())
    }
}

impl From<ImageError> for StepError {
    fn from(e: ImageError) -> Self {
        StepError::Build(e.into())
    }
}

/// A planning error as the build reports it.
fn plan_error(e: plan::PlanError) -> BuildError {
    match e {
        plan::PlanError::Step { step, message } => fail(message).at(&step),
        plan::PlanError::NoTarget {
            name,
            stages,
            suggestion,
        } => BuildError::NoTarget {
            name,
            stages,
            suggestion,
        },
        plan::PlanError::Invalid(m) => BuildError::Invalid(m),
    }
}

/// A step failure saying `message`.
fn fail(message: impl Into<String>) -> StepError {
    StepError::Failed {
        message: message.into(),
        log: None,
        exit: None,
    }
}

/// The ARGs BuildKit defines for proxies (usable without an ARG line,
/// never recorded in the image's history).
pub(crate) const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The proxy values among `--build-arg`s, each under both its names
/// (`http_proxy=x` gives HTTP_PROXY and http_proxy), as BuildKit's ProxyEnv
/// passes them; the last one given wins.
fn opts_proxy_args(opts: &Options) -> Scope {
    let mut out = Scope::default();
    for (k, v) in &opts.build_args {
        if !is_proxy_arg(k) {
            continue;
        }
        for name in [k.to_ascii_uppercase(), k.to_ascii_lowercase()] {
            out.remove(&name);
            out.set(&name, v);
        }
    }
    out
}

/// The stage's ARG values as step keys see them: without the proxy
/// values BuildKit predefines (its ProxyEnv is no cache input) unless the
/// Dockerfile declares them.
fn keyed_args(state: &State) -> Vec<&(String, String)> {
    state
        .args
        .pairs()
        .iter()
        .filter(|(k, _)| !is_proxy_arg(k) || state.declared.iter().any(|d| d == k))
        .collect()
}

/// True for a proxy build arg's name, in any case.
fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// The Dockerfile of `context` when none is named: `Dockerfile`, else
/// `dockerfile` when only that exists (as docker's and BuildKit's
/// dockerui fall back to it).
pub fn default_dockerfile(context: &Path) -> PathBuf {
    let upper = context.join("Dockerfile");
    let lower = context.join("dockerfile");
    if !upper.exists() && lower.exists() {
        return lower;
    }
    upper
}

/// Builds `source` (the Dockerfile) in `opts.context`: the stages the
/// target needs, independent ones in parallel; `progress` hears of every
/// step. Returns the image and what the build did.
pub fn build(
    store: &Store,
    source: &Source,
    opts: &Options,
    progress: &Progress,
) -> Result<(Image, BuildReport), BuildError> {
    let report = Recorder::new(progress);
    let prepared = prepare::prepare(store, source, opts, &report)?;
    let plan = &prepared.plan;
    let builder = Builder::new(store, opts, &prepared, &report)?;
    let seen = cache::import_all(store, opts, &report);
    let built = builder.stages_in_parallel(&plan.needed, &plan.deps);
    builder.save_stat_cache();
    let mut built = built?;
    let unused = prepare::unused_args(&prepared.file, &plan.needed, &opts.build_args);
    if !unused.is_empty() {
        report.warn(&format!(
            "[Warning] One or more build-args [{}] were not consumed",
            unused.join(" ")
        ));
    }
    // mode=min: the stages the final image is made of (its FROM chain).
    let mut chain = vec![plan.target];
    while let Some(base) = chain
        .last()
        .and_then(|&t| plan::from_stage(&prepared.file.stages, &plan.bases, t))
    {
        chain.push(base);
    }
    for to in &opts.cache_to {
        cache::export_built(store, to, &chain, &seen, opts, &report);
    }
    let state = built[plan.target].take().expect("target built");
    let image = finish::image(store, state, opts, prepared.epoch)?;
    drop(builder);
    Ok((image, report.finish()))
}

/// The process-wide lock of step `key` (dropped entries are forgotten).
fn key_lock(key: &str) -> Arc<Mutex<()>> {
    static LOCKS: Mutex<std::collections::BTreeMap<String, std::sync::Weak<Mutex<()>>>> =
        Mutex::new(std::collections::BTreeMap::new());
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks.retain(|_, l| l.strong_count() > 0);
    if let Some(l) = locks.get(key).and_then(std::sync::Weak::upgrade) {
        return l;
    }
    let l = Arc::new(Mutex::new(()));
    locks.insert(key.to_string(), Arc::downgrade(&l));
    l
}

/// Now, as provenance and SBOMs write times.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What every stage of one build shares: what was decided before it
/// ran, and what its stages collect as they run.
struct Builder<'a> {
    store: &'a Store,
    opts: &'a Options,
    /// The Dockerfile, the plan, the context and the epoch.
    prepared: &'a Prepared,
    /// Where progress goes and the report is kept.
    report: &'a Recorder<'a>,
    logs: log::StepLogs,
    /// Set when a stage fails: the others stop before their next step.
    canceled: AtomicBool,
    /// Content digests of the context's files, remembered by stat.
    stat: StatCache,
    /// Stages and images flattened for `--from`, once each.
    flattened: copy::Flattened,
    /// This context and Dockerfile, from one build to the next (steps are
    /// explained against the last build of the same line).
    identity: String,
    /// Stages that missed in a fleet step cache: their later steps are not
    /// looked up there (a chain that missed once rarely hits again).
    fleet_missed: Mutex<std::collections::HashSet<usize>>,
}

impl<'a> Builder<'a> {
    fn new(
        store: &'a Store,
        opts: &'a Options,
        prepared: &'a Prepared,
        report: &'a Recorder<'a>,
    ) -> Result<Self, BuildError> {
        let context_real = &prepared.context_real;
        Ok(Builder {
            store,
            opts,
            prepared,
            report,
            logs: log::StepLogs::new(store),
            canceled: AtomicBool::new(false),
            stat: StatCache::load(context_real, stat_cache_file(store, context_real)),
            flattened: copy::Flattened::with_named(opts.build_contexts.clone())
                .map_err(BuildError::Context)?,
            identity: hash(&[
                &context_real.to_string_lossy(),
                &opts
                    .dockerfile
                    .as_deref()
                    .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()))
                    .unwrap_or_default()
                    .to_string_lossy(),
            ]),
            fleet_missed: Mutex::default(),
        })
    }

    /// Keeps the context's stat cache for the next build.
    fn save_stat_cache(&self) {
        self.stat.save(|path, bytes| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.store
                .write_atomic(path, bytes)
                .map_err(std::io::Error::other)
        });
    }

    /// The stages of the Dockerfile.
    fn stages(&self) -> &'a [Stage] {
        &self.prepared.file.stages
    }

    /// The Dockerfile's escape character.
    fn escape(&self) -> char {
        self.prepared.file.escape
    }

    /// SOURCE_DATE_EPOCH, when the build sets it.
    fn epoch(&self) -> Option<i64> {
        self.prepared.epoch
    }

    /// The build's events.
    fn progress(&self) -> &'a Progress {
        self.report.progress()
    }
}

/// The build args a build plans with (see [`plan::build_args`]).
pub fn build_args_of(opts: &Options) -> Vec<(String, String)> {
    plan::build_args(&opts.build_args, opts.source_date_epoch)
}

/// Where the stat cache of a context directory is kept.
fn stat_cache_file(store: &Store, context: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
    crate::store::layout::cache(store.root(), crate::store::layout::Cache::Context)
        .join(hash(&[&canonical.to_string_lossy()]))
}

/// Where a stage is while the build runs.
#[derive(Clone)]
enum Slot {
    Pending,
    Done(Box<State>),
    Failed,
}

impl Builder<'_> {
    /// Builds the `needed` stages, each on its own thread as soon as the
    /// stages it reads are built. The first failure (in file order) is the
    /// build's error; the stages still running stop at their next step.
    fn stages_in_parallel(
        &self,
        needed: &[usize],
        deps: &[Vec<usize>],
    ) -> Result<Vec<Option<State>>, BuildError> {
        let slots = Mutex::new(vec![Slot::Pending; self.stages().len()]);
        let ready = Condvar::new();
        let errors: Mutex<Vec<(usize, BuildError)>> = Mutex::new(Vec::new());
        let lock = |m| -> std::sync::MutexGuard<'_, Vec<Slot>> {
            Mutex::lock(m).unwrap_or_else(|e| e.into_inner())
        };
        std::thread::scope(|scope| {
            for &i in needed {
                let (slots, ready, errors) = (&slots, &ready, &errors);
                scope.spawn(move || {
                    let mut guard = lock(slots);
                    while deps[i].iter().any(|&d| matches!(guard[d], Slot::Pending)) {
                        guard = ready.wait(guard).unwrap_or_else(|e| e.into_inner());
                    }
                    let inputs: Option<Vec<Option<State>>> = guard
                        .iter()
                        .enumerate()
                        .map(|(j, slot)| match slot {
                            Slot::Done(s) if deps[i].contains(&j) => Some(Some((**s).clone())),
                            Slot::Failed if deps[i].contains(&j) => None,
                            _ => Some(None),
                        })
                        .collect();
                    drop(guard);
                    let outcome = match inputs {
                        None => Slot::Failed,
                        Some(built) => match self.stage(i, &built) {
                            Ok(state) => Slot::Done(Box::new(state)),
                            Err(e) => {
                                self.canceled.store(true, Ordering::SeqCst);
                                if !matches!(e, BuildError::Canceled) {
                                    errors
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .push((i, e));
                                }
                                Slot::Failed
                            }
                        },
                    };
                    lock(slots)[i] = outcome;
                    ready.notify_all();
                });
            }
        });
        let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
        errors.sort_by_key(|(i, _)| *i);
        if let Some((_, e)) = errors.into_iter().next() {
            return Err(e);
        }
        // Canceled by the caller: the stages stopped without an error.
        if self
            .opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            return Err(BuildError::Canceled);
        }
        Ok(slots
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|s| match s {
                Slot::Done(s) => Some(*s),
                _ => None,
            })
            .collect())
    }

    /// How progress names stage `i`'s steps: `[name 2/5]`, or `[2/5]` when
    /// the Dockerfile has one stage.
    fn step_name(&self, i: usize, n: usize, total: usize, text: &str) -> String {
        let stage = &self.stages()[i];
        // BuildKit's names: `[linux/arm64 stage-1 2/3]` in a build of
        // several platforms.
        let platform = self
            .opts
            .label
            .as_ref()
            .map(|l| format!("{l} "))
            .unwrap_or_default();
        if self.stages().len() == 1 {
            return format!("[{platform}{n}/{total}] {text}");
        }
        let label = stage
            .from
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{i}"));
        format!("[{platform}{label} {n}/{total}] {text}")
    }

    /// Records base image `name` (as resolved for `platform`) as a
    /// material: `pkg:docker/NAME@TAG?platform=…` and the digest its name
    /// has in the store (an index's when it is one).
    fn record_base(&self, name: &str, platform: &str) {
        let wanted = crate::registry::Platform::parse(platform).ok();
        let Ok(image) = Image::resolve_for(self.store, name, wanted.as_ref()) else {
            return;
        };
        let full = name
            .parse::<image::Name>()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| name.to_string());
        let (repo, tag) = full
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or((&full, "latest"));
        let uri = format!(
            "pkg:docker/{repo}@{tag}?platform={}",
            platform.replace('/', "%2F")
        );
        self.material(uri, image.entry_digest().clone());
    }

    /// Records something read from outside the context.
    pub(super) fn material(&self, uri: String, digest: Digest) {
        self.report
            .material(crate::attest::Material { uri, digest });
    }

    /// Builds stage `i`; `built` holds the stages it reads.
    fn stage(&self, i: usize, built: &[Option<State>]) -> Result<State, BuildError> {
        let stage = &self.stages()[i];
        let (store, escape) = (self.store, self.escape());
        let from_step = &stage.from_step;
        let base = &self.prepared.plan.bases[i];
        // A --build-context of the FROM's name comes before stages and images.
        let named = self
            .opts
            .build_contexts
            .iter()
            .find(|(n, _)| n == base)
            .map(|(_, c)| c);
        let parent = match named {
            Some(_) => None,
            None => plan::from_stage(self.stages(), &self.prepared.plan.bases, i),
        };
        // Numbered as BuildKit numbers them: FROM and the steps that make
        // layers; the config-only ones are not shown.
        let total = 1 + stage
            .steps
            .iter()
            .filter(|s| makes_layer(&s.instruction))
            .count();
        let mut n = 1;
        let from = self
            .report
            .start(self.step_name(i, n, total, &format!("FROM {base}")));
        let started = match named {
            Some(NamedContext::Dir(path)) => dir_state(
                store,
                path,
                base,
                self.flattened.ignore_of(base),
                self.epoch(),
            )
            .map(|s| (s, Vec::new())),
            Some(NamedContext::Image(r)) => base_state(
                store,
                self.stages(),
                built,
                None,
                r,
                self.opts,
                &self.prepared.plan.platforms[i],
            ),
            Some(NamedContext::OciLayout { path, reference }) => {
                image::archive::load_layout(store, path, reference.as_deref())
                    .map_err(|e| e.to_string())
                    .map(image_state)
            }
            None => base_state(
                store,
                self.stages(),
                built,
                parent,
                base,
                self.opts,
                &self.prepared.plan.platforms[i],
            ),
        };
        let (mut state, triggers) = match started {
            Ok(started) => started,
            Err(m) => {
                let e = fail(m).at(from_step);
                self.report.failed(from, &e.to_string(), None);
                return Err(e);
            }
        };
        // A base image is a material of the build's provenance.
        let image_base = match named {
            Some(NamedContext::Image(r)) => Some(r.as_str()),
            None if parent.is_none() && !base.eq_ignore_ascii_case("scratch") => {
                Some(base.as_str())
            }
            _ => None,
        };
        if let Some(name) = image_base {
            self.record_base(name, &self.prepared.plan.platforms[i]);
        }
        self.report.ended(from, report::Outcome::Base, None);
        // ONBUILD triggers of the base (an image's, or the ONBUILD lines of
        // a stage) run first, as if written right after FROM; the image
        // built does not keep them.
        let triggered = onbuild_steps(&triggers, escape, from_step)?;
        // A stage FROM a stage inherits its ARGs; any other starts with the
        // proxy ARGs BuildKit predefines: a --build-arg gives them to RUN
        // without an ARG line, and they stay out of the history.
        if parent.is_none() {
            state.args = opts_proxy_args(self.opts);
            state.declared.clear();
        }
        // --no-cache-filter names stages by name or number.
        let use_cache = !self.opts.no_cache
            && !self.opts.no_cache_filter.iter().any(|f| {
                stage.from.name.as_deref() == Some(f.to_lowercase().as_str())
                    || f.parse::<usize>() == Ok(i)
            });
        for (index, step) in triggered.iter().chain(&stage.steps).enumerate() {
            if self.canceled.load(Ordering::SeqCst)
                || self
                    .opts
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::SeqCst))
            {
                return Err(BuildError::Canceled);
            }
            let text = step.original.trim().to_string();
            let shown = makes_layer(&step.instruction).then(|| {
                n += 1;
                self.report.start(self.step_name(i, n, total, &text))
            });
            let id = shown.as_ref().map(|s| s.id);
            let cx = StepCx {
                built,
                step,
                text: &text,
                id,
                stage: i,
                identity: hash(&[&self.identity, &i.to_string(), &index.to_string()]),
                use_cache,
                keyed: Default::default(),
            };
            // The one place a step's span is attached to its error.
            let result = self.step(&mut state, &cx).map_err(|e| e.at(step));
            match (result, shown) {
                (Ok(cached), Some(shown)) => {
                    let outcome = match cached {
                        true => report::Outcome::Cached,
                        false => report::Outcome::Run,
                    };
                    self.report.ended(shown, outcome, cx.keyed.take());
                }
                (Ok(_), None) => {}
                (Err(e), shown) => {
                    if let Some(shown) = shown {
                        let log = match &e {
                            BuildError::Step { log: Some(l), .. } => {
                                Some(l.path.display().to_string())
                            }
                            _ => None,
                        };
                        self.report.failed(shown, &e.to_string(), log.as_deref());
                    }
                    return Err(e);
                }
            }
        }
        Ok(state)
    }

    /// The cache protocol every step that makes a layer follows: the
    /// result recorded under the key of `inputs` when there is one (and
    /// the stage uses the cache), else `work` run and its result
    /// recorded; either way remembered for `--cache-to`. Returns the
    /// result, true when it came from the cache, and the key.
    fn get_or_run(
        &self,
        cx: &StepCx,
        inputs: explain::KeyInputs,
        work: impl FnOnce() -> Result<StepResult, StepError>,
    ) -> Result<(StepResult, bool, String), StepError> {
        let chain_key = inputs.key();
        // SOURCE_DATE_EPOCH changes what a step makes (mtimes clamped): a
        // result made without it, or with another, is another step's.
        let inputs = match self.epoch() {
            Some(secs) => inputs.then(vec![
                ("", "SOURCE_DATE_EPOCH".to_string()),
                ("SOURCE_DATE_EPOCH", secs.to_string()),
            ]),
            None => inputs,
        };
        let key = inputs.key();
        // One step of a key at a time in this process: builds side by
        // side (the platforms of one build, `kiln serve`'s jobs) that
        // share a step run it once, and the others find it cached.
        let one = key_lock(&key);
        let _running = one.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cx.use_cache.then(|| cached(self.store, &key)).flatten();
        let hit = match hit {
            None if cx.use_cache && self.opts.warm_check.is_none() => self.fleet_lookup(cx, &key),
            hit => hit,
        };
        let hit = match (&self.opts.warm_check, hit) {
            (Some(keys), Some(r)) if keys.contains(&key) => Some(r),
            (Some(_), _) => {
                let why = explain::note(self.store, &cx.identity, &key, &inputs, true, false)
                    .unwrap_or_default();
                let why = match why.as_str() {
                    "its result is no longer in the store" | "" => {
                        "its key is not in the cache".to_string()
                    }
                    _ => why,
                };
                return Err(StepError::Build(BuildError::Cold {
                    step: cx.text.to_string(),
                    why,
                }));
            }
            (None, hit) => hit,
        };
        let why = explain::note(self.store, &cx.identity, &key, &inputs, hit.is_none(), true);
        if let (Some(why), Some(id), true) = (why, cx.id, self.opts.explain) {
            self.progress().explain(id, &why);
        }
        let was_hit = hit.is_some();
        let result = match hit {
            Some(r) => r,
            None => {
                let r = work()?;
                record(self.store, &key, &r)?;
                r
            }
        };
        cx.keyed.set(Some(report::Keyed {
            key: key.clone(),
            bytes: result.layer.as_ref().map_or(0, |(_, size)| *size),
        }));
        self.report
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((cx.stage, key, result.clone()));
        Ok((result, was_hit, chain_key))
    }

    /// Step `key` from the fleet step caches `--cache-from` names (mode=
    /// steps), brought into the store; None when none has it (the stage is
    /// then not looked up again). A cache that cannot be reached costs the
    /// work it would save: a warning, once.
    fn fleet_lookup(&self, cx: &StepCx, key: &str) -> Option<StepResult> {
        let repos: Vec<&str> = self
            .opts
            .cache_from
            .iter()
            .filter_map(|c| match c {
                CacheSpec::Steps(r) => Some(r.as_str()),
                _ => None,
            })
            .collect();
        if repos.is_empty() || report::lock(&self.fleet_missed).contains(&cx.stage) {
            return None;
        }
        for repo in &repos {
            match cache::lookup(self.store, repo, key, &self.opts.registry) {
                Ok(true) => return cached(self.store, key),
                Ok(false) => {}
                Err(e) => self
                    .report
                    .warn(&format!("[Warning] looking step up in {repo}: {e}")),
            }
        }
        // --explain: the key the fleet was asked for, so that a person can
        // find which build wrote (or would write) it.
        if let (true, Some(id)) = (self.opts.explain, cx.id) {
            self.progress().explain(
                id,
                &format!(
                    "not in the fleet's step cache ({}): looked for k-{key}; its later steps are not asked",
                    repos.join(", ")
                ),
            );
        }
        report::lock(&self.fleet_missed).insert(cx.stage);
        None
    }

    /// Runs one step on `state`; true when its result came from the cache.
    fn step(&self, state: &mut State, cx: &StepCx) -> Result<bool, StepError> {
        let (store, opts, escape, text) = (self.store, self.opts, self.escape(), cx.text);
        match &cx.step.instruction {
            Instruction::Arg(decls) => {
                for d in decls {
                    let v = plan::arg_value(
                        &d.name,
                        d.default.as_deref(),
                        &self.prepared.plan.build_args,
                        &state.args,
                        &self
                            .prepared
                            .plan
                            .global
                            .overlaid(&self.prepared.plan.automatic),
                        escape,
                    )
                    .map_err(fail)?;
                    state.since_layer.push((
                        format!("build arg {}", d.name),
                        v.clone().unwrap_or_else(|| "(unset)".into()),
                    ));
                    if let Some(v) = v {
                        state.args.set(&d.name, &v);
                    }
                    if !state.declared.contains(&d.name) {
                        state.declared.push(d.name.clone());
                    }
                }
                let vars = variables(state);
                let expand = |w: &str| expand_word(&vars, escape, w).ok();
                let created_by =
                    history::config_entry(&cx.step.instruction, &state.config, &expand, text);
                push_layer(state, StepResult::default(), created_by, self.epoch());
                state.key = hash(&[&state.key, text, &format!("{:?}", keyed_args(state))]);
                Ok(false)
            }
            Instruction::Run(run) => {
                if run.security == instructions::Security::Insecure && !opts.allow_insecure {
                    return Err(fail(
                        "security.insecure is not allowed: pass --allow security.insecure to kiln build",
                    ));
                }
                let shell = state
                    .config
                    .config
                    .shell
                    .clone()
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                let (argv, script) = run_argv(run, &shell);
                let mut env = state.config.config.env.clone().unwrap_or_default();
                // The proxy values BuildKit predefines reach the process but
                // not the key (its ProxyEnv): a CI runner's proxy changing
                // keeps the cache. One the Dockerfile declares is an ARG.
                let mut key_env = env.clone();
                for (k, v) in state.args.iter() {
                    if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                        env.push(format!("{k}={v}"));
                        if !is_proxy_arg(k) || state.declared.iter().any(|d| d == k) {
                            key_env.push(format!("{k}={v}"));
                        }
                    }
                }
                let c = &state.config.config;
                let inputs = explain::KeyInputs::new(vec![
                    ("parent", state.key.clone()),
                    ("", "RUN".to_string()),
                    ("command", format!("{argv:?}")),
                    ("environment", format!("{key_env:?}")),
                    ("USER", c.user.clone().unwrap_or_default()),
                    ("WORKDIR", c.working_dir.clone().unwrap_or_default()),
                    (
                        "network",
                        match (run.network, opts.network) {
                            // `--network none` for the build: not the same step.
                            (instructions::Network::Default, DefaultNetwork::None) => {
                                "Default(none)".to_string()
                            }
                            (n, _) => format!("{n:?}"),
                        },
                    ),
                ]);
                let created_by = history::run_entry(
                    &argv,
                    &state.declared,
                    state.args.pairs(),
                    state.config.config.env.as_deref().unwrap_or_default(),
                );
                // Mounts: in the key by what they are (never by a secret's
                // value); secrets given as env reach only the process.
                let mut mounts = mounts::prepare(self, cx, state, run)?;
                let inputs = inputs.then(vec![("mounts", mounts.key.clone())]);
                // argv names a #! script by its path only: its text is
                // part of what the step runs.
                let inputs = match &script {
                    Some(s) => inputs.then(vec![
                        ("", PIPES_DIR.to_string()),
                        ("script name", s.name.clone()),
                        ("script", s.data.clone()),
                    ]),
                    None => inputs,
                };
                env.extend(mounts.env.iter().cloned());
                let inputs = inputs.explained_by(&state.since_layer);
                let (result, hit, key) = self.get_or_run(cx, inputs, || {
                    let network = match run.network {
                        instructions::Network::None => true,
                        instructions::Network::Host => false,
                        instructions::Network::Default => opts.network == DefaultNetwork::None,
                    };
                    let _script_dir = match &script {
                        Some(s) => Some(mount_script(store, s, &mut mounts).map_err(fail)?),
                        None => None,
                    };
                    self.run_step(state, argv, env, network, &mounts, cx)
                })?;
                push_layer(state, result, created_by, self.epoch());
                state.key = key;
                state.since_layer.clear();
                Ok(hit)
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let add = matches!(cx.step.instruction, Instruction::Add(_));
                let (inputs, work) = copy::step(self, cx, state, c, add)?;
                let inputs = inputs.explained_by(&state.since_layer);
                let (result, hit, key) = self.get_or_run(cx, inputs, work)?;
                let vars = variables(state);
                let expand = |w: &str| expand_word(&vars, escape, w).ok();
                push_layer(
                    state,
                    result,
                    history::copy_entry(add, c, &expand),
                    self.epoch(),
                );
                state.key = key;
                state.since_layer.clear();
                Ok(hit)
            }
            Instruction::Workdir(_) => {
                image::apply_with(
                    &mut state.config.config,
                    &cx.step.instruction,
                    state.args.pairs(),
                    escape,
                )
                .map_err(fail)?;
                let wd = state.config.config.working_dir.clone().unwrap_or_default();
                let created_by = format!("WORKDIR {wd}");
                if wd.is_empty() || wd == "/" {
                    push_layer(state, StepResult::default(), created_by, self.epoch());
                    state
                        .since_layer
                        .push(("instruction before it".into(), text.to_string()));
                    return Ok(false);
                }
                // The directory is made (with its missing parents, owned by
                // USER) as BuildKit makes it: a layer when it was missing.
                let user = state.config.config.user.clone().unwrap_or_default();
                let inputs = explain::KeyInputs::new(vec![
                    ("parent", state.key.clone()),
                    ("", "WORKDIR".to_string()),
                    ("WORKDIR", wd.clone()),
                    ("USER", user.clone()),
                ])
                .explained_by(&state.since_layer);
                let (result, hit, key) = self.get_or_run(cx, inputs, || {
                    copy::mkdir_layer(store, state, &wd, &user, self.epoch()).map_err(fail)
                })?;
                push_layer(state, result, created_by, self.epoch());
                state.key = key;
                state.since_layer.clear();
                Ok(hit)
            }
            other => {
                let vars = variables(state);
                let expand = |w: &str| expand_word(&vars, escape, w).ok();
                if !matches!(other, Instruction::Maintainer(_)) {
                    image::apply_with(&mut state.config.config, other, state.args.pairs(), escape)
                        .map_err(fail)?;
                }
                match other {
                    Instruction::Cmd(_) => state.cmd_set = true,
                    Instruction::Entrypoint(_) if !state.cmd_set => state.config.config.cmd = None,
                    _ => {}
                }
                if let Instruction::Maintainer(m) = other {
                    state.config.author = Some(m.clone());
                }
                // BuildKit records every config instruction in the history
                // but ONBUILD.
                if !matches!(other, Instruction::Onbuild(..)) {
                    let created_by = history::config_entry(other, &state.config, &expand, text);
                    push_layer(state, StepResult::default(), created_by, self.epoch());
                }
                state
                    .since_layer
                    .push(("instruction before it".into(), text.to_string()));
                state.key = hash(&[&state.key, text, &format!("{:?}", keyed_args(state))]);
                Ok(false)
            }
        }
    }
}

/// One step as it is dispatched: where it is, what it may read, how it
/// is shown and cached.
struct StepCx<'a> {
    /// The stages built so far (those this stage reads).
    built: &'a [Option<State>],
    /// The step.
    step: &'a instructions::Step,
    /// Its text, as progress and history show it.
    text: &'a str,
    /// Its progress line, when it makes a layer.
    id: Option<StepId>,
    /// The index of its stage.
    stage: usize,
    /// The same line of the same Dockerfile in the same context, from one
    /// build to the next (what a miss is explained against).
    identity: String,
    /// False under `--no-cache` (or a `--no-cache-filter` naming the stage).
    use_cache: bool,
    /// The key and layer size the cache protocol gave the step.
    keyed: std::cell::Cell<Option<report::Keyed>>,
}

/// True for the instructions that run or write files (shown in progress).
fn makes_layer(i: &Instruction) -> bool {
    matches!(
        i,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}

/// ONBUILD triggers as steps. They have no place in this Dockerfile:
/// errors point at the FROM line. A trigger's `COPY --from` names a stage
/// of the build that runs it, as in BuildKit.
fn onbuild_steps(
    triggers: &[String],
    escape: char,
    from_step: &instructions::Step,
) -> Result<Vec<instructions::Step>, BuildError> {
    let mut steps = Vec::new();
    for t in triggers {
        let fail =
            |m: String| fail(format!("ONBUILD trigger {t:?} of the base image: {m}")).at(from_step);
        let text = format!("# escape={escape}\nFROM scratch\n{t}\n");
        let source = Source::new("ONBUILD", text.as_bytes());
        let ast = crate::dockerfile::parse(&source).map_err(|e| fail(e.to_string()))?;
        let (file, errors) = instructions::typed(&ast);
        if let Some(e) = errors.first() {
            return Err(fail(e.to_string()));
        }
        for mut step in file.stages.into_iter().flat_map(|s| s.steps) {
            step.span = from_step.span;
            step.line = from_step.line;
            steps.push(step);
        }
    }
    Ok(steps)
}

/// A FROM base as `--pull` says (quietly: the FROM step's line shows the
/// time a pull takes).
fn pull_base(store: &Store, base: &str, opts: &Options, platform: &str) -> Result<Image, String> {
    crate::registry::pull::ensure(
        store,
        &opts.registry,
        base,
        opts.pull,
        &crate::registry::Platform::parse(platform)?,
    )
    .map_err(|e| format!("base {e}"))
}

/// BuildKit's emptyImage (scratch, a local context): the stage's
/// `platform`, the default PATH (system.DefaultPathEnv) and WorkingDir "/".
fn empty_image(platform: &str) -> ImageConfig {
    let mut config = config::for_platform(platform);
    config.config.env = Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    ]);
    config.config.working_dir = Some("/".into());
    config
}

/// `FROM NAME` of a `--build-context NAME=DIR`: the directory's tree as
/// the one layer of an otherwise empty image (BuildKit's emptyImage).
fn dir_state(
    store: &Store,
    path: &Path,
    name: &str,
    ignore: Option<&Matcher>,
    epoch: Option<i64>,
) -> Result<State, String> {
    let src =
        Root::open(path).map_err(|e| format!("build context {name} ({}): {e}", path.display()))?;
    let staging_path = store.temp_path("context");
    let copied = Root::create(&staging_path).and_then(|staging| {
        let opts = crate::copier::CopyOptions {
            owner: None,
            mode: None,
            // The directory's own .dockerignore, as for the context.
            take: &|rel: &str| match ignore {
                Some(m) if m.is_ignored(rel) && !m.may_take_below(rel) => {
                    crate::copier::Take::Nothing
                }
                Some(m) if m.is_ignored(rel) => crate::copier::Take::Below,
                _ => crate::copier::Take::Entry,
            },
            links: &crate::copier::Links::default(),
        };
        for n in src.read_dir("")? {
            let n = n.to_string_lossy();
            crate::copier::copy_tree(&src, &n, &staging, &n, &opts)?;
        }
        Ok(())
    });
    if let Err(e) = copied {
        let _ = sandbox::fs::remove_dir_all(&staging_path);
        return Err(format!("build context {name} ({}): {e}", path.display()));
    }
    let result = commit_dir(store, &staging_path, epoch).map_err(|e| e.to_string())?;
    let config = empty_image(&plan::host_platform());
    let key = hash(&[
        "context-dir",
        &result.diff_id().map(|d| d.to_string()).unwrap_or_default(),
    ]);
    let mut state = State::fresh(config, key);
    push_layer(&mut state, result, format!("FROM {name}"), epoch);
    Ok(state)
}

/// The state a stage starts from, and the ONBUILD triggers to run first
/// (only an image base has them).
fn base_state(
    store: &Store,
    stages: &[Stage],
    built: &[Option<State>],
    parent: Option<usize>,
    base: &str,
    opts: &Options,
    platform: &str,
) -> Result<(State, Vec<String>), String> {
    if base.eq_ignore_ascii_case("scratch") {
        // This machine's scratch keeps the key it always had.
        let key = match platform == plan::host_platform() {
            true => hash(&["scratch"]),
            false => hash(&["scratch", platform]),
        };
        let state = State::fresh(empty_image(platform), key);
        return Ok((state, Vec::new()));
    }
    if let Some(i) = parent {
        let Some(Some(state)) = built.get(i) else {
            return Err(format!(
                "stage {base} was not built before the stage FROM it"
            ));
        };
        let mut state = State {
            cmd_set: false,
            since_layer: Vec::new(),
            ..state.clone()
        };
        // The stage's own ONBUILD lines are the triggers; its config keeps
        // none for this stage (BuildKit's init clears them).
        state.config.config.on_build = None;
        let triggers = stages[i]
            .steps
            .iter()
            .filter_map(|s| match &s.instruction {
                Instruction::Onbuild(_, text) => Some(text.clone()),
                _ => None,
            })
            .collect();
        return Ok((state, triggers));
    }
    let mut image = pull_base(store, base, opts, platform)?;
    let wanted = platform.split('/').take(2).collect::<Vec<_>>().join("/");
    let platform_of = |i: &Image| format!("{}/{}", i.config.os, i.config.architecture);
    // A one-platform base of another platform that came from a registry
    // (another platform's build pulled it under the name first): this
    // platform's is pulled too, and the name becomes a local index of
    // both (`pull::merged`).
    if platform_of(&image) != wanted
        && image.index.is_none()
        && opts.pull != Pull::Never
        && crate::registry::pull::origin(store, &image.manifest_digest).is_some()
    {
        let again = Options {
            pull: Pull::Always,
            ..opts.clone()
        };
        if let Ok(pulled) = pull_base(store, base, &again, platform)
            && platform_of(&pulled) == wanted
        {
            image = pulled;
        }
    }
    // Building for another platform, a local base of this machine's
    // would put its programs in the image: refused, not warned about.
    let has = platform_of(&image);
    let (has_arch, arch) = (
        &image.config.architecture,
        platform.split('/').nth(1).unwrap_or_default(),
    );
    if platform != plan::host_platform() && has != wanted {
        return Err(format!(
            "base {base} in the store is for {has}, and this stage builds for {platform}: give the name an image of each platform (kiln pull --all-platforms REF, or kiln manifest create {base} IMAGE-{has_arch} IMAGE-{arch} of images pulled or imported with --platform)"
        ));
    }
    image.snapshots(store).map_err(|e| e.to_string())?;
    Ok(image_state(image))
}

/// The state a stage FROM `image` starts with, and the image's ONBUILD
/// triggers.
fn image_state(image: Image) -> (State, Vec<String>) {
    let mut config = image.config.clone();
    let triggers = config.config.on_build.take().unwrap_or_default();
    // A committed base's own origin is not the built image's (BuildKit
    // writes none of docker's commit fields).
    (config.container, config.container_config, config.parent) = (None, None, None);
    let state = State {
        layers: image.layers(),
        // The image id (the config digest): it names the same content
        // whatever compression the layers travelled with.
        key: hash(&["image", &image.id.to_string()]),
        config,
        cmd_set: false,
        args: Scope::default(),
        declared: Vec::new(),
        since_layer: Vec::new(),
    };
    (state, triggers)
}

/// Where a `RUN <<EOF` script that starts with `#!` is mounted (BuildKit's
/// dispatchRun mounts it there, read-only, and runs it by its path).
const PIPES_DIR: &str = "/dev/pipes";

/// A `RUN <<EOF` body run as a file: the heredoc's name and the script.
#[derive(Debug, PartialEq, Eq)]
struct Script {
    name: String,
    data: String,
}

/// The argv of a RUN, and the script file it runs when it is one, as
/// BuildKit's dispatchRun makes them: when the whole command is a single
/// opener (`RUN <<EOF`, `RUN <<-  'EOF'`), the first heredoc's body (tabs
/// stripped for `<<-`) is the program: written to a file and run by its
/// path when it starts with `#!`, so its interpreter runs it, else given
/// to the SHELL. Any other command is handed to the SHELL with each body
/// and terminator appended, for the shell to read its heredocs itself.
fn run_argv(run: &instructions::Run, shell: &[String]) -> (Vec<String>, Option<Script>) {
    let text = match &run.command {
        Command::Exec(v) => return (v.clone(), None),
        Command::Shell(s) => s,
    };
    let (arg, script) = match (run.heredocs.first(), heredoc::parse(text)) {
        (None, _) => (text.clone(), None),
        (Some(first), Some(_)) => {
            let data = match first.chomp {
                true => heredoc::chomp(&first.content),
                false => first.content.clone(),
            };
            if data.starts_with("#!") {
                let path = format!("{PIPES_DIR}/{}", first.name);
                let script = Script {
                    name: first.name.clone(),
                    data,
                };
                (path, Some(script))
            } else {
                (data, None)
            }
        }
        (Some(_), None) => {
            let mut whole = text.clone();
            for h in &run.heredocs {
                whole.push('\n');
                whole.push_str(&h.content);
                whole.push_str(&h.name);
            }
            (whole, None)
        }
    };
    (shell.iter().cloned().chain([arg]).collect(), script)
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = sandbox::fs::remove_dir_all(&self.0);
    }
}

/// Writes `script` (mode 0755) into a new directory of the store's tmp and
/// adds its read-only bind at [`PIPES_DIR`] to `mounts`. The directory
/// lives as long as the returned value.
fn mount_script(
    store: &Store,
    script: &Script,
    mounts: &mut mounts::Mounts,
) -> Result<TempDir, String> {
    use std::os::unix::fs::PermissionsExt;
    // The name becomes a file of that directory: one plain component.
    if script.name.is_empty()
        || script.name.contains(['/', '\0'])
        || script.name == "."
        || script.name == ".."
    {
        return Err(format!(
            "heredoc name {:?} cannot name the script file under {PIPES_DIR}",
            script.name
        ));
    }
    let dir = TempDir(store.temp_path("pipes"));
    let file = dir.0.join(&script.name);
    let io = |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
    std::fs::create_dir(&dir.0).map_err(|e| io("creating", &dir.0, e))?;
    std::fs::write(&file, &script.data).map_err(|e| io("writing", &file, e))?;
    for path in [&dir.0, &file] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("setting the mode of", path, e))?;
    }
    mounts.binds.push(sandbox::Bind {
        source: dir.0.clone(),
        target: PIPES_DIR.into(),
        read_only: true,
        exact: false,
        nodev: true,
        movable: false,
    });
    Ok(dir)
}

/// A layer a step made (or None when it changed nothing), as the store's
/// step records keep it.
pub(crate) type StepResult = crate::store::StepRecord;

/// The result recorded under `key`, when its layer is still there.
fn cached(store: &Store, key: &str) -> Option<StepResult> {
    store.steps().get(&StepKey::parse(key).ok()?)
}

/// Records `r` under `key`.
fn record(store: &Store, key: &str, r: &StepResult) -> Result<(), BuildError> {
    let key = StepKey::parse(key).map_err(BuildError::Cache)?;
    Ok(store.steps().put(&key, r)?)
}

fn push_layer(state: &mut State, r: StepResult, created_by: String, epoch: Option<i64>) {
    let empty = r.layer.is_none();
    let diff_id = r.diff_id().cloned();
    if let (Some((digest, size)), Some(diff_id)) = (r.layer, diff_id) {
        let media = match r.compressed {
            Some((_, media)) => MediaType::from(media.as_str()),
            None => MediaType::ImageLayer,
        };
        state
            .layers
            .push((Descriptor::new(media, size, digest.to_oci()), diff_id));
    }
    state.config.history.push(History {
        created: Some(config::created_at(epoch)),
        created_by: Some(created_by),
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer: empty.then_some(true),
        ..Default::default()
    });
}

/// Commits a directory holding a step's diff: its tar becomes the layer
/// blob (uncompressed: digest = diffID) and the directory, renamed, the
/// layer's snapshot.
/// A step that changed nothing still gets its (empty) layer, as in
/// BuildKit: `RUN true` is a layer in the image and in its history.
pub(crate) fn commit_dir(
    store: &Store,
    dir: &Path,
    epoch: Option<i64>,
) -> Result<StepResult, BuildError> {
    let clamp = epoch.and_then(|s| u64::try_from(s).ok());
    // The generator hashes the tar it writes: that digest is the blob's.
    let writer = store.blob_writer_prehashed()?;
    let (writer, diff_id, _) = layer::generate(dir, writer, layer::Options { mtime_clamp: clamp })
        .map_err(|e| ImageError::BadArchive(format!("generating a layer: {e}")))?;
    let (digest, size) = writer.commit(Some(&diff_id))?;
    store.put_snapshot(dir, &digest)?;
    Ok(StepResult {
        layer: Some((digest, size)),
        compressed: None,
    })
}

impl Builder<'_> {
    /// Runs a RUN step's command in the sandbox, its output going to the
    /// step's log file and to progress; the overlay's upper directory
    /// becomes the layer.
    fn run_step(
        &self,
        state: &State,
        argv: Vec<String>,
        env: Vec<String>,
        no_network: bool,
        mounts: &mounts::Mounts,
        cx: &StepCx,
    ) -> Result<StepResult, StepError> {
        let store = self.store;
        let progress_id = cx.id;
        let id = hash(&[
            &format!("{:?}", std::time::SystemTime::now()),
            &std::process::id().to_string(),
            &argv.join(" "),
        ]);
        let dir = store.container_dir(&id);
        // BuildKit's default, or the BUILDKIT_SANDBOX_HOSTNAME build arg.
        let hostname = self
            .opts
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == "BUILDKIT_SANDBOX_HOSTNAME")
            .map_or_else(|| "buildkitsandbox".to_string(), |(_, v)| v.clone());
        let dirs = ContainerDirs::create(&dir, &hostname, &self.opts.add_hosts)
            .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
        let mut lower: Vec<PathBuf> = state
            .layers
            .iter()
            .rev()
            .map(|(_, d)| store.snapshot_path(d))
            .collect();
        if lower.is_empty() {
            lower.push(dirs.empty.clone());
        }
        let c = &state.config.config;
        let spec = Spec {
            lower,
            upper: dirs.upper.clone(),
            work: dirs.work,
            rootfs: dirs.rootfs,
            volatile: true,
            read_only: false,
            argv: argv.clone(),
            env,
            cwd: c
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: c.user.clone().unwrap_or_default(),
            hostname,
            network: if no_network {
                sandbox::Network::None
            } else {
                sandbox::Network::Host
            },
            binds: mounts.binds.clone(),
            tmpfs: mounts.tmpfs.clone(),
            rootless: !sandbox::fs::is_root(),
            tty: false,
            etc_dir: dirs.etc,
            // RUN steps run under Docker's default seccomp profile, as in
            // BuildKit's default sandbox; an allowed insecure step without.
            seccomp: match &cx.step.instruction {
                Instruction::Run(r) if r.security == instructions::Security::Insecure => {
                    sandbox::SeccompProfile::Unconfined
                }
                _ => sandbox::SeccompProfile::Default,
            },
            no_new_privileges: false,
            shm_size: self.opts.shm_size,
            rlimits: self.opts.ulimits.clone(),
            capabilities: None,
            extra_groups: Vec::new(),
            sysctls: Vec::new(),
            host_uts: false,
            host_ipc: false,
            cgroups: Vec::new(),
            chroot: false,
            cgroupns: None,
        };
        let log = self.logs.open(progress_id.map_or(0, |p| p.0));
        let (reader, writer) =
            std::io::pipe().map_err(|e| fail(format!("creating a pipe: {e}")))?;
        let (code, tail) = std::thread::scope(|scope| {
            let relay = scope.spawn(|| log.relay(reader, self.progress(), progress_id));
            let code = sandbox::run(
                &spec,
                &sandbox::Limits {
                    parent: self.opts.cgroup_parent.clone(),
                    // On v2, a group and cgroup namespace of the step's own,
                    // as BuildKit gives each step (moving the init there
                    // costs one RCU grace period, ~7 ms; v1's cost more
                    // and show nothing a step needs).
                    group: sandbox::cgroup::unified() && sandbox::fs::is_root(),
                    ..Default::default()
                },
                &id,
                sandbox::Io {
                    output: Some(writer.into()),
                    ..Default::default()
                },
            );
            (code, relay.join().unwrap_or_default())
        });
        let upper = dirs.upper;
        let result = match code {
            Ok(0) => {
                mounts::remove_stubs(store, state, &upper, &mounts.targets);
                let staged = store.temp_path("upper");
                std::fs::rename(&upper, &staged)
                    .map_err(|e| fail(format!("moving the step's diff: {e}")))
                    .and_then(|_| Ok(commit_dir(store, &staged, self.epoch())?))
            }
            Ok(code) => {
                let message = format!(
                    "process \"{}\" did not complete successfully: exit code: {code}",
                    argv.join(" ")
                );
                Err(StepError::Failed {
                    message,
                    log: Some(Box::new(StepLog {
                        path: log.path().to_path_buf(),
                        tail,
                    })),
                    exit: Some(Box::new((argv.join(" "), code))),
                })
            }
            Err(e) => Err(fail(e.to_string())),
        };
        let _ = sandbox::fs::remove_dir_all(&dir);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::instructions::typed;

    /// The RUN of `FROM a` + `text`.
    fn run_of(text: &str) -> instructions::Run {
        let source = Source::new("Dockerfile", format!("FROM a\n{text}").as_bytes());
        let (file, errors) = typed(&crate::dockerfile::parse(&source).unwrap());
        assert!(errors.is_empty(), "{errors:?}");
        match &file.stages[0].steps[0].instruction {
            Instruction::Run(r) => r.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn argv(text: &str) -> (Vec<String>, Option<(String, String)>) {
        let shell = ["/bin/sh".to_string(), "-c".to_string()];
        let (argv, script) = run_argv(&run_of(text), &shell);
        (argv, script.map(|s| (s.name, s.data)))
    }

    /// Asserts the argv (under `/bin/sh -c`) and script file of a RUN.
    fn check(text: &str, arg: &str, script: Option<(&str, &str)>) {
        let want = (
            vec!["/bin/sh".to_string(), "-c".into(), arg.into()],
            script.map(|(n, d)| (n.to_string(), d.to_string())),
        );
        assert_eq!(argv(text), want, "{text:?}");
    }

    #[test]
    fn run_heredoc_table() {
        check("RUN echo hi\n", "echo hi", None);
        // The body alone is the script.
        check("RUN <<EOF\necho a\nEOF\n", "echo a\n", None);
        check("RUN <<  EOF\necho a\nEOF\n", "echo a\n", None);
        check("RUN 3<<EOF\nEOF\n", "", None);
        check(
            "RUN <<-EOF\n\techo \"\n\ta\"\nEOF\n",
            "echo \"\na\"\n",
            None,
        );
        // A #! body is a file run by its path, tabs stripped first.
        check(
            "RUN <<EOF\n#!/bin/awk -f\nBEGIN{}\nEOF\n",
            "/dev/pipes/EOF",
            Some(("EOF", "#!/bin/awk -f\nBEGIN{}\n")),
        );
        check(
            "RUN <<-'X'\n\t#!/bin/sh\n\t\ttrue\n\tX\n",
            "/dev/pipes/X",
            Some(("X", "#!/bin/sh\ntrue\n")),
        );
        // Anything more: the shell reads the heredocs from the whole text.
        check(
            "RUN <<-EOF sh > out\n\techo a\nEOF\n",
            "<<-EOF sh > out\n\techo a\nEOF",
            None,
        );
        check(
            "RUN cat <<A <<B\na\nA\nb\nB\n",
            "cat <<A <<B\na\nA\nb\nB",
            None,
        );
        // The exec form reads no heredoc.
        let exec = run_of("RUN [\"a\", \"<<EOF\"]\n");
        assert_eq!(
            run_argv(&exec, &[]),
            (vec!["a".into(), "<<EOF".into()], None)
        );
    }

    #[test]
    fn run_heredoc_uses_the_stage_shell() {
        let shell = ["/bin/awk".to_string()];
        let (argv, _) = run_argv(&run_of("RUN <<EOF\nBEGIN{}\nEOF\n"), &shell);
        assert_eq!(argv, ["/bin/awk", "BEGIN{}\n"]);
    }
}
