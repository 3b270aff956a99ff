//! `kiln serve`: the cache-warming service for a fleet of CI builders.
//!
//! One process holds the config, a job queue (`state`: SQLite in the
//! store, `db`, or PostgreSQL shared by replicas, `pg`), the triggers (the
//! API, cron schedules, push webhooks) and the HTTP API (`api`). A job
//! builds its target with the same library call as `kiln build`, importing
//! and exporting the target's cache ref, on its own thread (a build
//! blocks); at most `max_jobs` run at once in a replica, one per target in
//! the fleet. Replicas share the database and the registry, nothing else.

pub mod api;
mod bases;
pub mod config;
pub mod db;
pub mod fleet;
pub mod hooks;
pub mod metrics;
mod mirror;
mod pages;
pub mod pg;
pub mod state;

use crate::builder::{self, BuildReport, CacheMode, CacheSpec};
use crate::dockerfile::Source;
use crate::progress::Progress;
use crate::store::Store;
use config::{Config, Target, Trigger};
use db::{Db, Job};
use metrics::{JobLabels, Metrics, StepLabels};
use state::State;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why the service cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config is not valid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The state database failed.
    #[error("state database {at}: {source}")]
    Db {
        /// Where it is (a path, or a URL without its password).
        at: String,
        /// Why.
        source: db::DbError,
    },
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The listener failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a job, or the service's own work between jobs (keeping the store
/// under its cap, watching bases), failed: what a job's row records.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// `max_size` does not parse (the config check should have said so).
    #[error("store.max_size: {0}")]
    MaxSize(String),
    /// A base's name is not a reference.
    #[error("{0}")]
    Reference(String),
    /// A registry failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The fleet's registry refuses deletes: its step cache cannot be
    /// kept within its bound.
    #[error(
        "{0} does not allow deletes (docker-registry: storage.delete.enabled): the step cache cannot be kept within its bound"
    )]
    NoDeletes(String),
    /// The target left the config while the job waited.
    #[error("target {0} is no longer configured")]
    Unconfigured(String),
    /// `min_free` does not parse (the config check should have said so).
    #[error("store.min_free: {0}")]
    MinFree(String),
    /// The store's filesystem is fuller than `min_free` allows.
    #[error("the store's filesystem has {free} bytes free, under min_free ({min})")]
    LowSpace {
        /// Free bytes now.
        free: u64,
        /// `min_free`.
        min: u64,
    },
    /// A file of the job could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// git could not be run.
    #[error("running git: {0} (install git for git targets)")]
    NoGit(std::io::Error),
    /// git failed.
    #[error("git {args}: {said}")]
    Git {
        /// Its arguments.
        args: String,
        /// What it said.
        said: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The state database failed.
    #[error("state database: {0}")]
    Db(#[from] db::DbError),
    /// The build failed.
    #[error(transparent)]
    Build(#[from] builder::BuildError),
}

fn job_io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JobError {
    let path = path.to_path_buf();
    move |source| JobError::Io {
        action,
        path,
        source,
    }
}

/// A job running in this replica.
#[derive(Clone)]
struct Running {
    id: i64,
    /// Set when its lease is lost: the build stops at its next step.
    cancel: Arc<std::sync::atomic::AtomicBool>,
}

/// The running service, shared by the API, the triggers and the jobs.
pub struct Service {
    /// The config it was started with.
    pub config: Config,
    store_root: PathBuf,
    db: State,
    /// Its metrics.
    pub metrics: Metrics,
    /// Targets with a job running here, and the job.
    running: Mutex<BTreeMap<String, Running>>,
    /// Held while the store is brought under its cap: the one after a job
    /// and one asked for through the API wait for each other instead of
    /// finding the store open and giving up.
    evicting: Mutex<()>,
    /// Woken when a job is queued or one ends.
    wake: tokio::sync::Notify,
    registry: crate::registry::Options,
    started: Instant,
    /// Set on SIGTERM: no job starts any more.
    stopping: std::sync::atomic::AtomicBool,
    /// The store's use as last measured.
    last_usage: Mutex<Option<crate::store::gc::Usage>>,
}

impl Service {
    /// Opens the store and the state for `config`; jobs a previous run
    /// left unfinished are queued again.
    pub fn open(config: Config, store_root: PathBuf) -> Result<Arc<Service>, ServeError> {
        let store = Store::open(&store_root)?;
        let dir = crate::store::layout::serve(store.root());
        let path = dir.join("state.db");
        std::fs::create_dir_all(dir.join("jobs")).map_err(|source| ServeError::Db {
            at: path.display().to_string(),
            source: db::DbError::Io {
                path: dir.join("jobs"),
                source,
            },
        })?;
        let url = config.state.url.clone().or_else(|| {
            std::env::var("KILN_STATE_URL")
                .ok()
                .filter(|u| !u.is_empty())
        });
        let (db, requeued) = match url {
            Some(url) => {
                let at = without_password(&url);
                let replica = config.state.replica.clone().unwrap_or_else(default_replica);
                let lease = std::time::Duration::from_secs(config.state.lease_seconds);
                let pg = pg::Pg::connect(&url, replica, lease)
                    .map_err(|source| ServeError::Db { at, source })?;
                let queued = pg.queued().map(|q| q.len()).unwrap_or(0);
                (State::Shared(pg), queued)
            }
            None => {
                let db_err = |source: rusqlite::Error| ServeError::Db {
                    at: path.display().to_string(),
                    source: source.into(),
                };
                let db = Db::open(&path).map_err(db_err)?;
                let requeued = db.requeue_unfinished().map_err(db_err)?;
                (State::Local(Mutex::new(db)), requeued.len())
            }
        };
        let service = Arc::new(Service {
            config,
            store_root,
            db,
            metrics: Metrics::new(),
            running: Mutex::new(BTreeMap::new()),
            evicting: Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            registry: crate::registry::Options::from_env(),
            started: Instant::now(),
            stopping: Default::default(),
            last_usage: Mutex::new(None),
        });
        service.metrics.queued.set(requeued as i64);
        if let Some(pg) = service.db.shared() {
            let woken = Arc::downgrade(&service);
            pg.listen(move || {
                if let Some(s) = woken.upgrade() {
                    s.wake.notify_one();
                }
            });
        }
        Ok(service)
    }

    fn db(&self) -> &State {
        &self.db
    }

    /// True when the state can be read: the readiness a load balancer
    /// asks for (a replica cut off from the database takes no requests).
    pub fn ready(&self) -> Result<(), db::DbError> {
        self.db.ready()
    }

    /// The store's directory.
    pub fn store_root(&self) -> &Path {
        &self.store_root
    }

    /// A handle on the store, open for as long as the caller keeps it:
    /// each job, check and read takes its own, so that a job running
    /// holds the store open and the cap's collection (which needs the
    /// store to itself, `Store::exclusive`) waits for it to end.
    pub fn open_store(&self) -> Result<Store, crate::store::StoreError> {
        Store::open(&self.store_root)
    }

    /// How long the service has run.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Queues a job for `target` because of `trigger`, coalescing with one
    /// already queued; None when there is no such target.
    pub fn enqueue(&self, target: &str, trigger: &str) -> Result<Option<(Job, bool)>, db::DbError> {
        if self.config.target(target).is_none() {
            return Ok(None);
        }
        let (job, new) = self.db().enqueue(target, trigger)?;
        if new {
            self.metrics.queued.inc();
        }
        self.wake.notify_one();
        Ok(Some((job, new)))
    }

    /// The tracked bases as last checked.
    pub fn bases(&self) -> Result<Vec<db::BaseState>, db::DbError> {
        self.db().bases()
    }

    /// Job `id`.
    pub fn job(&self, id: i64) -> Result<Option<Job>, db::DbError> {
        self.db().get(id)
    }

    /// The latest jobs (of one target).
    pub fn jobs(&self, target: Option<&str>, limit: i64) -> Result<Vec<Job>, db::DbError> {
        self.db().list(target, limit)
    }

    /// The shared state, when replicas share one.
    pub fn db_shared(&self) -> Option<&pg::Pg> {
        self.db.shared()
    }

    /// The fleet step cache's steps as this service knows them.
    pub fn fleet_steps(&self) -> Result<Vec<(String, i64, String)>, db::DbError> {
        self.db().fleet_steps()
    }

    /// The queued jobs, oldest first.
    pub fn queued(&self) -> Result<Vec<Job>, db::DbError> {
        self.db().queued()
    }

    /// Cancels a queued job; true when it was queued.
    pub fn cancel(&self, id: i64) -> Result<bool, db::DbError> {
        let canceled = self.db().cancel(id)?;
        if canceled {
            self.metrics.queued.dec();
        }
        Ok(canceled)
    }

    /// The store's use by kind (and the gauges that show it).
    pub fn usage(&self) -> crate::store::gc::Usage {
        let usage = self.open_store().map(|s| s.usage()).unwrap_or_default();
        self.record_usage(usage)
    }

    /// Shows `usage` in the gauges and keeps it as the last measured.
    fn record_usage(&self, usage: crate::store::gc::Usage) -> crate::store::gc::Usage {
        for (kind, bytes) in [
            ("blobs", usage.blobs),
            ("snapshots", usage.snapshots),
            ("cache_mounts", usage.cache_mounts),
            ("other", usage.other),
        ] {
            self.metrics
                .store_bytes
                .get_or_create(&vec![("kind".to_string(), kind.to_string())])
                .set(bytes as i64);
        }
        *self.last_usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage.clone());
        usage
    }

    /// The store's use as last measured (measured now the first time).
    pub fn last_usage(&self) -> crate::store::gc::Usage {
        let known = self
            .last_usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        known.unwrap_or_else(|| self.usage())
    }

    /// Evicts build cache, least recently used first, until the store
    /// fits `max` (default: `[store] max_size`); None when there is no cap
    /// or another kiln has the store open.
    pub fn keep_under_cap(
        &self,
        max: Option<u64>,
    ) -> Result<Option<crate::store::gc::Collected>, JobError> {
        let max = match (max, &self.config.store.max_size) {
            (Some(m), _) => m,
            (None, Some(text)) => crate::units::human_size(text).map_err(JobError::MaxSize)?,
            (None, None) => return Ok(None),
        };
        let _evicting = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        let store = self.open_store()?;
        let in_use = crate::container::snapshots_in_use(&store);
        let evicted = crate::store::gc::gc(&store, crate::store::gc::Cache::Cap(max), &in_use)?;
        drop(store);
        match &evicted {
            // Nothing went: the use fit measured is the use now.
            Some(e) if e.bytes == 0 => {
                self.record_usage(e.before.clone());
            }
            Some(e) => {
                self.metrics.evicted_bytes.inc_by(e.bytes);
                self.usage();
            }
            None => {
                self.usage();
            }
        }
        Ok(evicted)
    }

    /// Where job `id`'s events (JSON lines, as `--progress=json`) are.
    pub fn events_path(&self, id: i64) -> PathBuf {
        self.store_root
            .join("serve")
            .join("jobs")
            .join(format!("{id}.jsonl"))
    }

    /// Runs queued jobs for ever: at most `max_jobs` at once, one per
    /// target, oldest first.
    pub async fn dispatch(self: Arc<Self>) {
        let poll = std::time::Duration::from_millis(self.config.state.poll_ms);
        loop {
            // Shared: what a dead replica held comes back to the queue.
            if let Some(pg) = self.db.shared() {
                let service = self.clone();
                let reaped = tokio::task::spawn_blocking(move || match service.db.shared() {
                    Some(pg) => pg.reap(),
                    None => Ok(0),
                })
                .await;
                if let Ok(Err(e)) = reaped {
                    eprintln!("kiln serve: taking back lost jobs ({}): {e}", pg.replica);
                }
                // The queue is the fleet's: its length read, not counted here.
                if let Ok(q) = pg.queued() {
                    self.metrics.queued.set(q.len() as i64);
                }
            }
            while self.running_count() < self.config.max_jobs
                && !self.stopping.load(std::sync::atomic::Ordering::SeqCst)
            {
                let Some(job) = self.next_job() else { break };
                self.start_job(job);
            }
            match self.db.shared() {
                // Notifications wake it; polling covers one missed.
                Some(_) => {
                    let _ = tokio::time::timeout(poll, self.wake.notified()).await;
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Shared state: renews this replica's leases on its running jobs, a
    /// third of a lease apart, for ever. A job whose lease is gone (taken
    /// back by another replica, or not renewed for a whole lease because
    /// the database could not be reached) is canceled here: it stops at
    /// its next step, so that a target never runs twice for long.
    pub async fn renew_leases(self: Arc<Self>) {
        use std::sync::atomic::Ordering;
        let Some(pg) = self.db.shared() else { return };
        let (every, lease) = (pg.lease / 3, pg.lease);
        let mut renewed_at = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let jobs: Vec<Running> = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            if jobs.is_empty() {
                renewed_at = Instant::now();
                continue;
            }
            let ids: Vec<i64> = jobs.iter().map(|r| r.id).collect();
            let service = self.clone();
            let renewed = tokio::task::spawn_blocking(move || match service.db.shared() {
                Some(pg) => pg.renew(&ids),
                None => Ok(Vec::new()),
            })
            .await
            .unwrap_or_else(|e| Err(db::DbError::Pool(e.to_string())));
            let lost: Vec<&Running> = match &renewed {
                Ok(held) => {
                    renewed_at = Instant::now();
                    jobs.iter().filter(|r| !held.contains(&r.id)).collect()
                }
                Err(e) => {
                    eprintln!("kiln serve: renewing leases: {e}");
                    match renewed_at.elapsed() >= lease {
                        true => jobs.iter().collect(),
                        false => Vec::new(),
                    }
                }
            };
            for r in lost {
                if !r.cancel.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "kiln serve: job {} lost its lease (another replica may run it): stopping it",
                        r.id
                    );
                }
            }
        }
    }

    fn running_count(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The oldest queued job whose target has none running, marked running.
    fn next_job(&self) -> Option<Job> {
        let busy: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        match self.db().claim(&busy) {
            Ok(job) => job,
            Err(e) => {
                eprintln!("kiln serve: claiming a job: {e}");
                None
            }
        }
    }

    fn start_job(self: &Arc<Self>, job: Job) {
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                job.target.clone(),
                Running {
                    id: job.id,
                    cancel: cancel.clone(),
                },
            );
        self.metrics.queued.dec();
        self.metrics.running.inc();
        let service = self.clone();
        // A build blocks (and makes its own runtimes for registry calls):
        // a thread of its own, never one of tokio's.
        std::thread::spawn(move || {
            let started = Instant::now();
            let outcome = service.run_job(&job, cancel);
            let counts = outcome.as_ref().map_or((0, 0), |r| {
                let n = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                (n(r.hits()), n(r.misses()))
            });
            let (status, error) = match &outcome {
                Ok(_) if counts.1 == 0 => ("warm", None),
                Ok(_) => ("built", None),
                Err(e) => ("failed", Some(e.to_string())),
            };
            if let Err(e) = service
                .db()
                .finish(job.id, status, counts, error.as_deref())
            {
                eprintln!("kiln serve: recording job {}: {e}", job.id);
            }
            if let (Some(cache), Ok(report)) = (&service.config.cache, &outcome) {
                let kept = service
                    .fleet_used(report)
                    .and_then(|()| service.fleet_trim(cache));
                match kept {
                    Ok(Some(t)) if t.deleted > 0 => eprintln!(
                        "kiln serve: the step cache {} kept {} steps ({} bytes), deleted {}",
                        cache.repo, t.steps, t.bytes, t.deleted
                    ),
                    Ok(_) => {}
                    Err(e) => eprintln!("kiln serve: keeping the step cache {}: {e}", cache.repo),
                }
            }
            let m = &service.metrics;
            m.jobs
                .get_or_create(&JobLabels {
                    target: job.target.clone(),
                    trigger: job.triggers.first().cloned().unwrap_or_default(),
                    result: status.into(),
                })
                .inc();
            m.job_seconds
                .get_or_create(&vec![("target".to_string(), job.target.clone())])
                .observe(started.elapsed().as_secs_f64());
            m.cache_export_bytes
                .get_or_create(&vec![("target".to_string(), job.target.clone())])
                .inc_by(outcome.as_ref().map_or(0, BuildReport::exported_bytes));
            for (result, n) in [("hit", counts.0), ("miss", counts.1)] {
                m.steps
                    .get_or_create(&StepLabels {
                        target: job.target.clone(),
                        result: result.into(),
                    })
                    .inc_by(n as u64);
            }
            m.running.dec();
            let idle = {
                let mut running = service.running.lock().unwrap_or_else(|e| e.into_inner());
                running.remove(&job.target);
                running.is_empty()
            };
            // The cap is kept between jobs: eviction needs the store to
            // itself.
            if idle {
                match service.keep_under_cap(None) {
                    Ok(None) => {
                        service.usage();
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("kiln serve: keeping the store under max_size: {e}"),
                }
            }
            service.wake.notify_one();
        });
    }

    /// Builds job's target; the steps that hit and missed the cache.
    fn run_job(
        &self,
        job: &Job,
        cancel: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<BuildReport, JobError> {
        let target = self
            .config
            .target(&job.target)
            .ok_or_else(|| JobError::Unconfigured(job.target.clone()))?;
        if let Some(min) = &self.config.store.min_free {
            let min = crate::units::human_size(min).map_err(JobError::MinFree)?;
            let free = crate::sandbox::fs::free_bytes(&self.store_root)
                .map_err(job_io("statvfs", &self.store_root))?;
            if free < min {
                return Err(JobError::LowSpace { free, min });
            }
        }
        let context = self.checkout(target)?;
        let dockerfile = context.join(&target.dockerfile);
        let text = target
            .read_dockerfile(&context)
            .map_err(job_io("reading", &dockerfile))?;
        let source = Source::new(&target.dockerfile, &text);
        let cache = target
            .cache_to
            .as_ref()
            .map(|r| CacheSpec::Registry(r.clone()));
        let opts = builder::Options {
            context: context.clone(),
            dockerfile: Some(dockerfile),
            build_args: target
                .build_args
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            target: target.target.clone(),
            registry: self.registry.clone(),
            explain: true,
            cancel: Some(cancel),
            ..Default::default()
        };
        let events_path = self.events_path(job.id);
        let mut events =
            std::fs::File::create(&events_path).map_err(job_io("creating", &events_path))?;
        let store = self.open_store()?;
        // Plan before building: the step keys computed with nothing run,
        // checked against the keys the cache ref holds (its manifest and
        // config, no layer). All there: the job is warm, nothing is
        // imported, built or pushed.
        if let Some(spec) = &cache {
            match builder::cache_keys(spec, &self.registry) {
                Ok(Some(keys)) => {
                    phase(&mut events, "check");
                    let check = builder::Options {
                        warm_check: Some(keys),
                        ..opts.clone()
                    };
                    let progress = Progress::json(Box::new(
                        events
                            .try_clone()
                            .map_err(job_io("opening", &events_path))?,
                    ));
                    let checked = builder::build(&store, &source, &check, &progress);
                    match checked {
                        Ok((_, report)) => return Ok(report),
                        Err(e @ builder::BuildError::Cold { .. }) => progress.note(&e.to_string()),
                        // A check that cannot be made is a build to do.
                        Err(e) => progress.warn(&format!("[Warning] warm check: {e}")),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let line = serde_json::json!({ "warning": format!("[Warning] reading {}: {e}", spec.describe()) });
                    let _ = writeln!(events, "{line}");
                }
            }
        }
        phase(&mut events, "build");
        // The fleet's step cache, when configured: every step written
        // once across targets, and looked up by key before it runs.
        let fleet = self
            .config
            .cache
            .as_ref()
            .map(|c| CacheSpec::Steps(c.repo.clone()));
        let opts = builder::Options {
            cache_to: cache
                .clone()
                .map(|spec| builder::CacheTo {
                    spec,
                    mode: CacheMode::Max,
                    mounts: target.mounts,
                })
                .into_iter()
                .chain(fleet.clone().map(|spec| builder::CacheTo {
                    spec,
                    mode: CacheMode::Max,
                    mounts: false,
                }))
                .collect(),
            cache_from: cache.into_iter().chain(fleet).collect(),
            cache_generations: Some(target.keep_generations).filter(|&n| n > 0),
            ..opts
        };
        let progress = Progress::json(Box::new(events));
        let built = builder::build(&store, &source, &opts, &progress);
        drop(progress);
        Ok(built?.1)
    }

    /// The target's context: its directory, or its git ref checked out in
    /// the store (`serve/git/<name>`), fetched anew for every job.
    fn checkout(&self, target: &Target) -> Result<PathBuf, JobError> {
        if let Some(dir) = &target.context {
            return Ok(dir.clone());
        }
        let (url, credentials) = target.git_fetch();
        let url = url.as_str();
        // Checked here, not through checkout_dir's fallback: a name that is
        // not one plain name must never make this remove the checkouts' parent.
        let dir = crate::store::layout::serve_checkout(&self.store_root, &target.name)?;
        let git = |args: &[&str]| -> Result<(), JobError> {
            let out = std::process::Command::new("git")
                .args(args)
                .envs(credentials.iter().map(|(k, v)| (k, v)))
                .output()
                .map_err(JobError::NoGit)?;
            match out.status.success() {
                true => Ok(()),
                false => Err(JobError::Git {
                    args: args.join(" "),
                    said: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                }),
            }
        };
        let d = dir.to_string_lossy().into_owned();
        if !dir.join(".git").is_dir() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(job_io("creating", &dir))?;
            git(&["init", "--quiet", &d])?;
        }
        let what = target.git_ref.as_deref().unwrap_or("HEAD");
        git(&["-C", &d, "fetch", "--quiet", "--depth=1", "--", url, what])?;
        git(&["-C", &d, "checkout", "--quiet", "--force", "FETCH_HEAD"])?;
        git(&["-C", &d, "clean", "-fdxq"])?;
        Ok(dir)
    }

    /// Where a git target is checked out.
    pub fn checkout_dir(&self, target: &Target) -> PathBuf {
        // The config refuses a target name that is not a plain name; one
        // that got past it would name the checkouts' directory itself.
        crate::store::layout::serve_checkout(&self.store_root, &target.name)
            .unwrap_or_else(|_| crate::store::layout::serve(&self.store_root).join("git"))
    }

    /// Queues every target with a cron trigger at its times, for ever.
    pub async fn schedule(self: Arc<Self>) {
        let mut crons: Vec<(String, croner::Cron)> = Vec::new();
        for t in &self.config.targets {
            for trigger in t.parsed_triggers().unwrap_or_default() {
                if let Trigger::Cron(c) = trigger {
                    crons.push((t.name.clone(), *c));
                }
            }
        }
        while let Some(due) = next_due(&crons).await {
            for name in due {
                if let Err(e) = self.enqueue(name, "cron") {
                    eprintln!("kiln serve: queueing {name}: {e}");
                }
            }
        }
    }
}

/// Sleeps until the next time one of `schedules` is due; the items due
/// then. None when nothing is ever due (no schedules).
pub(crate) async fn next_due<T>(schedules: &[(T, croner::Cron)]) -> Option<Vec<&T>> {
    let now = chrono::Utc::now();
    let at = schedules
        .iter()
        .filter_map(|(_, c)| c.find_next_occurrence(&now, false).ok())
        .min()?;
    tokio::time::sleep((at - now).to_std().unwrap_or_default()).await;
    Some(
        schedules
            .iter()
            .filter(|(_, c)| c.is_time_matching(&at).unwrap_or(false))
            .map(|(item, _)| item)
            .collect(),
    )
}

/// Marks the start of a job's phase in its events (`check`, `build`).
fn phase(events: &mut std::fs::File, name: &str) {
    let _ = writeln!(events, "{}", serde_json::json!({ "phase": name }));
}

/// Serves `config` with the store at `store_root` until the process ends.
pub async fn serve(config: Config, store_root: PathBuf) -> Result<(), ServeError> {
    let addr = config.listen.clone();
    let service = Service::open(config, store_root)?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: addr.clone(),
            source,
        })?;
    eprintln!("kiln serve: listening on http://{addr}");
    tokio::spawn(service.clone().dispatch());
    tokio::spawn(service.clone().renew_leases());
    tokio::spawn(service.clone().schedule());
    tokio::spawn(service.clone().watch_bases());
    axum::serve(listener, api::router(service.clone()))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    // Stopping: no job starts any more; those running finish, so the store
    // is left whole and their results are recorded.
    service
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if service.running_count() > 0 {
        eprintln!("kiln serve: waiting for the running jobs to finish");
    }
    while service.running_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `url` as it may be shown: without its password.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A replica's default name: the host's, and this process's pid.
fn default_replica() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "kiln".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_state_url_is_shown_without_its_password() {
        use super::without_password as shown;
        assert_eq!(
            shown("postgres://kiln:s3cret@db:5432/serve"),
            "postgres://kiln@db:5432/serve"
        );
        assert_eq!(
            shown("postgres://kiln@db/serve"),
            "postgres://kiln@db/serve"
        );
        assert_eq!(shown("postgres://db/serve"), "postgres://db/serve");
    }
}
