//! The service's Prometheus metrics (OpenMetrics text at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A job's target, what triggered it and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The target.
    pub target: String,
    /// The first trigger (`api`, `cron`, `push`, `base`).
    pub trigger: String,
    /// `warm`, `built`, `failed`, `canceled`.
    pub result: String,
}

/// A target and whether steps hit the cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The target.
    pub target: String,
    /// `hit` or `miss`.
    pub result: String,
}

/// A webhook kind and whether it was accepted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// `github`, `gitlab`, `registry`.
    pub kind: String,
    /// `accepted`, `ignored` or `refused`.
    pub result: String,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    /// Jobs finished.
    pub jobs: Family<JobLabels, Counter>,
    /// How long jobs took.
    pub job_seconds: Family<Vec<(String, String)>, Histogram>,
    /// Steps by target and cache result.
    pub steps: Family<StepLabels, Counter>,
    /// Jobs waiting.
    pub queued: Gauge,
    /// Jobs running.
    pub running: Gauge,
    /// Webhooks received.
    pub webhooks: Family<HookLabels, Counter>,
    /// Base digest changes, by image.
    pub base_changes: Family<Vec<(String, String)>, Counter>,
    /// Docker Hub's `ratelimit-remaining`, by registry.
    pub ratelimit_remaining: Family<Vec<(String, String)>, Gauge>,
    /// The store's bytes by kind, as last measured.
    pub store_bytes: Family<Vec<(String, String)>, Gauge>,
    /// Bytes evicted to keep the store under `max_size`.
    pub evicted_bytes: Counter,
    /// Mirror requests, by result (`hit`, `miss`).
    pub mirror_requests: Family<Vec<(String, String)>, Counter>,
    /// Registry requests, by registry and status.
    pub registry_requests: Family<Vec<(String, String)>, Counter>,
    /// Seconds since each base's digest last changed.
    pub base_age: Family<Vec<(String, String)>, Gauge>,
    /// Bytes of cache exported (the layers of the cache images pushed).
    pub cache_export_bytes: Family<Vec<(String, String)>, Counter>,
    /// Job event streams open (status pages and `kiln serve` followers).
    pub event_streams: Gauge,
}

fn job_histogram() -> Histogram {
    // 1 s to about an hour.
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

impl Metrics {
    /// All metrics at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kiln");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs",
            "Jobs finished, by target, trigger and result",
            jobs.clone(),
        );
        let job_seconds = Family::<Vec<(String, String)>, Histogram>::new_with_constructor(
            job_histogram as fn() -> Histogram,
        );
        registry.register(
            "job_duration_seconds",
            "How long jobs took, by target",
            job_seconds.clone(),
        );
        let steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "steps",
            "Build steps, by target and cache result",
            steps.clone(),
        );
        let queued = Gauge::default();
        registry.register("queue_length", "Jobs waiting to run", queued.clone());
        let running = Gauge::default();
        registry.register("running_jobs", "Jobs running", running.clone());
        let webhooks = Family::<HookLabels, Counter>::default();
        registry.register(
            "webhooks",
            "Webhooks received, by kind and result",
            webhooks.clone(),
        );
        let base_changes = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "base_digest_changes",
            "Tracked base images whose digest changed",
            base_changes.clone(),
        );
        let ratelimit_remaining = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "registry_ratelimit_remaining",
            "Pulls left as the registry's ratelimit-remaining header says",
            ratelimit_remaining.clone(),
        );
        let store_bytes = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "store_bytes",
            "Bytes the store holds, by kind, as last measured",
            store_bytes.clone(),
        );
        let evicted_bytes = Counter::default();
        registry.register(
            "evicted_bytes",
            "Bytes of build cache evicted to keep the store under max_size",
            evicted_bytes.clone(),
        );
        let mirror_requests = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "mirror_requests",
            "Base-image mirror requests, by result",
            mirror_requests.clone(),
        );
        let registry_requests = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "registry_requests",
            "Requests sent to registries, by registry and status (0: no answer)",
            registry_requests.clone(),
        );
        let base_age = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "base_age_seconds",
            "Seconds since a tracked base's digest last changed",
            base_age.clone(),
        );
        let cache_export_bytes = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "cache_export_bytes",
            "Bytes of cache exported, by target",
            cache_export_bytes.clone(),
        );
        let event_streams = Gauge::default();
        registry.register(
            "event_streams",
            "Job event streams open (status pages and followers)",
            event_streams.clone(),
        );
        Metrics {
            registry,
            event_streams,
            registry_requests,
            base_age,
            cache_export_bytes,
            store_bytes,
            evicted_bytes,
            mirror_requests,
            base_changes,
            ratelimit_remaining,
            jobs,
            job_seconds,
            steps,
            queued,
            running,
            webhooks,
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
