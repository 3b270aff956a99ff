//! What a build did, typed: each step (its key, cached or run, time,
//! bytes), the caches it exported, its warnings, what it read from
//! outside its context, and when. `kiln serve` counts hits and misses
//! from it; `--metadata-file`, the API's build stream and provenance read
//! it; progress shows the same events as they happen.

use super::StepResult;
use crate::attest::Material;
use crate::progress::{Progress, StepId};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

/// What a build did besides its image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildReport {
    /// Every step progress showed, in the order they ended.
    pub steps: Vec<StepReport>,
    /// The caches exported (`--cache-to`).
    pub exports: Vec<Export>,
    /// The warnings the build printed, as printed.
    pub warnings: Vec<String>,
    /// Base images and remote sources read, each once.
    pub materials: Vec<Material>,
    /// When the build started and finished (RFC 3339, UTC).
    pub started: String,
    /// See `started`.
    pub finished: String,
}

/// One step of a build.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepReport {
    /// The step as progress names it (`[2/3] RUN make`).
    pub name: String,
    /// The key its result is cached under (a step that makes a layer).
    pub key: Option<String>,
    /// What happened to it.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// The size of the layer it made or reused.
    pub bytes: u64,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A FROM: its base found, pulled or built.
    Base,
    /// Its result came from the cache.
    Cached,
    /// It ran.
    Run,
    /// It failed (the build's error says why).
    Failed,
}

/// One cache export.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Export {
    /// Where to, as `--cache-to` was written.
    pub to: String,
    /// Steps exported.
    pub steps: usize,
    /// Bytes uploaded or written.
    pub bytes: u64,
}

impl BuildReport {
    /// Steps whose result came from the cache.
    pub fn hits(&self) -> usize {
        self.count(Outcome::Cached)
    }

    /// Steps that ran.
    pub fn misses(&self) -> usize {
        self.count(Outcome::Run)
    }

    /// Bytes of cache exported.
    pub fn exported_bytes(&self) -> u64 {
        self.exports.iter().map(|e| e.bytes).sum()
    }

    /// The report as `--metadata-file`'s `kiln.build.report` and the
    /// API's build stream give it: the counts first, for `platform`'s
    /// build (None: the only one).
    pub fn to_json(&self, platform: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "platform": platform,
            "cached": self.hits(),
            "run": self.misses(),
            "steps": self.steps,
            "exports": self.exports,
            "warnings": self.warnings,
            "started": self.started,
            "finished": self.finished,
        })
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.steps.iter().filter(|s| s.outcome == outcome).count()
    }
}

/// A step's result as the cache protocol gave it, for its report.
#[derive(Debug, Default)]
pub(super) struct Keyed {
    /// The step's key.
    pub key: String,
    /// The layer's size.
    pub bytes: u64,
}

/// Collects the report while the build runs (its stages share it) and
/// tells progress as it goes: what the build says and what it reports
/// are one call.
pub(super) struct Recorder<'a> {
    progress: &'a Progress,
    started: String,
    steps: Mutex<Vec<StepReport>>,
    exports: Mutex<Vec<Export>>,
    warnings: Mutex<Vec<String>>,
    materials: Mutex<Vec<Material>>,
    /// Every layer step's stage, key and result, for `--cache-to`.
    pub records: Mutex<Vec<(usize, String, StepResult)>>,
    /// The cache mounts (names in the store) RUN steps used, for
    /// `--cache-to ...,mounts=true`.
    pub cache_mounts: Mutex<BTreeSet<String>>,
}

/// A step shown and being timed.
pub(super) struct Started {
    /// Its progress line.
    pub id: StepId,
    name: String,
    at: Instant,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a> Recorder<'a> {
    /// A report of a build starting now, told to `progress`.
    pub fn new(progress: &'a Progress) -> Self {
        Recorder {
            progress,
            started: super::now_rfc3339(),
            steps: Mutex::default(),
            exports: Mutex::default(),
            warnings: Mutex::default(),
            materials: Mutex::default(),
            records: Mutex::default(),
            cache_mounts: Mutex::default(),
        }
    }

    /// Where the build's events go.
    pub fn progress(&self) -> &'a Progress {
        self.progress
    }

    /// Shows step `name` starting.
    pub fn start(&self, name: String) -> Started {
        Started {
            id: self.progress.start(&name),
            name,
            at: Instant::now(),
        }
    }

    /// Step `s` ended as `outcome`; `keyed` is what the cache protocol
    /// said of it.
    pub fn ended(&self, s: Started, outcome: Outcome, keyed: Option<Keyed>) {
        match outcome {
            Outcome::Cached => self.progress.cached(s.id),
            Outcome::Base | Outcome::Run => self.progress.done(s.id),
            Outcome::Failed => {}
        }
        let keyed = keyed.unwrap_or_default();
        lock(&self.steps).push(StepReport {
            name: s.name,
            key: (!keyed.key.is_empty()).then_some(keyed.key),
            outcome,
            millis: u64::try_from(s.at.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes: keyed.bytes,
        });
    }

    /// Step `s` failed with `error` (its output in the file at `log`).
    pub fn failed(&self, s: Started, error: &str, log: Option<&str>) {
        self.progress.failed(s.id, error, log);
        self.ended(s, Outcome::Failed, None);
    }

    /// The checks' findings (`kiln check`'s short form), printed as one
    /// block and kept as warnings.
    pub fn lint(&self, findings: &[String]) {
        self.progress.lint(findings);
        lock(&self.warnings).extend(findings.iter().cloned());
    }

    /// A warning, printed and kept.
    pub fn warn(&self, text: &str) {
        self.progress.warn(text);
        lock(&self.warnings).push(text.to_string());
    }

    /// A cache export done.
    pub fn exported(&self, export: Export) {
        self.progress
            .exported(export.steps, export.bytes, &export.to);
        lock(&self.exports).push(export);
    }

    /// Something read from outside the context.
    pub fn material(&self, m: Material) {
        lock(&self.materials).push(m);
    }

    /// The report, the build having finished now.
    pub fn finish(self) -> BuildReport {
        let mut materials = self
            .materials
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        materials.sort_by(|a, b| a.uri.cmp(&b.uri));
        materials.dedup();
        BuildReport {
            steps: self.steps.into_inner().unwrap_or_else(|e| e.into_inner()),
            exports: self.exports.into_inner().unwrap_or_else(|e| e.into_inner()),
            warnings: self
                .warnings
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            materials,
            started: self.started,
            finished: super::now_rfc3339(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Digest;

    #[test]
    fn counts_steps_by_outcome_and_sums_exports() {
        let progress = Progress::quiet();
        let r = Recorder::new(&progress);
        let from = r.start("[1/3] FROM scratch".into());
        r.ended(from, Outcome::Base, None);
        let hit = r.start("[2/3] COPY a /".into());
        r.ended(
            hit,
            Outcome::Cached,
            Some(Keyed {
                key: "k1".into(),
                bytes: 10,
            }),
        );
        let ran = r.start("[3/3] RUN make".into());
        r.ended(
            ran,
            Outcome::Run,
            Some(Keyed {
                key: "k2".into(),
                bytes: 20,
            }),
        );
        r.warn("[Warning] w");
        r.lint(&["JSONArgsRecommended: ...".to_string()]);
        r.exported(Export {
            to: "a".into(),
            steps: 2,
            bytes: 5,
        });
        r.exported(Export {
            to: "b".into(),
            steps: 2,
            bytes: 7,
        });
        let d = Digest::of(b"x");
        for uri in ["b", "a", "b"] {
            r.material(Material {
                uri: uri.into(),
                digest: d.clone(),
            });
        }
        let report = r.finish();
        assert_eq!((report.hits(), report.misses()), (1, 1), "FROM is neither");
        assert_eq!(report.exported_bytes(), 12);
        assert_eq!(report.warnings, ["[Warning] w", "JSONArgsRecommended: ..."]);
        assert_eq!(report.steps[0].key, None);
        assert_eq!(report.steps[2].key.as_deref(), Some("k2"));
        assert_eq!(report.steps[2].bytes, 20);
        let uris: Vec<&str> = report.materials.iter().map(|m| m.uri.as_str()).collect();
        assert_eq!(uris, ["a", "b"], "sorted, each once");
        assert!(!report.started.is_empty() && report.finished >= report.started);
    }
}
