//! Keeping a store under a size cap (`kiln serve`'s `[store] max_size`):
//! what the store holds is measured by kind, and the build cache is
//! evicted least recently used first (a step record's time is when it was
//! last made or hit) with the blobs and snapshots only it reached, then
//! cache mounts by their last use. What a tag reaches (images, pulled
//! bases, imported caches) is never evicted.

use super::StepResult;
use crate::image::prune::dir_size;

use crate::store::{Digest, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bytes a store holds, by kind.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Usage {
    /// Blobs (layers, configs, manifests).
    pub blobs: u64,
    /// Unpacked layers.
    pub snapshots: u64,
    /// `RUN --mount=type=cache` directories.
    pub cache_mounts: u64,
    /// Everything else (step records, logs, git checkouts, temporary files).
    pub other: u64,
}

impl Usage {
    /// The total.
    pub fn total(&self) -> u64 {
        self.blobs + self.snapshots + self.cache_mounts + self.other
    }
}

/// What an eviction removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Evicted {
    /// Step records removed.
    pub steps: usize,
    /// Cache mounts removed.
    pub cache_mounts: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// What the store held before (its use still, when nothing went).
    pub before: Usage,
}

/// What `store` holds, by kind.
pub fn usage(store: &Store) -> Usage {
    let blobs = dir_size(&store.root().join("blobs"));
    let snapshots = dir_size(&store.root().join("snapshots"));
    let cache_mounts = dir_size(&store.cache_dir().join("mounts"));
    let all = dir_size(store.root());
    Usage {
        blobs,
        snapshots,
        cache_mounts,
        other: all.saturating_sub(blobs + snapshots + cache_mounts),
    }
}

/// A step record with the layer it names.
struct Step {
    path: PathBuf,
    used: SystemTime,
    blob: Option<Digest>,
    diff_id: Option<Digest>,
}

fn mtime(path: &Path) -> SystemTime {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn steps(store: &Store) -> Vec<Step> {
    let Ok(entries) = fs::read_dir(store.cache_dir().join("steps")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let r: StepResult = fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            Step {
                used: mtime(&e.path()),
                path: e.path(),
                diff_id: r.diff_id().cloned(),
                blob: r.layer.map(|(d, _)| d),
            }
        })
        .collect()
}

/// Evicts build cache from `store`, least recently used first, until it
/// holds at most `max` bytes (or nothing evictable is left); the snapshots
/// in `in_use` (containers' layers) stay. None when another kiln has the
/// store open (it may be about to use what would go).
pub fn fit(store: &Store, max: u64, in_use: &[PathBuf]) -> Result<Option<Evicted>, StoreError> {
    store.exclusive(|| -> Result<Evicted, StoreError> {
        let _lock = store.lock()?;
        let mut out = Evicted {
            before: usage(store),
            ..Default::default()
        };
        let mut total = out.before.total();
        if total <= max {
            return Ok(out);
        }
        // What the index's images reach stays.
        let (mut live, mut live_diffs) = (BTreeSet::new(), BTreeSet::new());
        // An index keeps every platform's image; an entry that cannot be
        // walked keeps what was reached before the failure.
        for (_, d) in store.images()? {
            let _ = crate::image::index::reachable(store, &d, &mut live, &mut live_diffs);
        }
        let mut steps = steps(store);
        steps.sort_by_key(|s| s.used);
        // How many records name each blob: it goes with its last one.
        let mut users: BTreeMap<Digest, usize> = BTreeMap::new();
        for s in &steps {
            if let Some(b) = &s.blob {
                *users.entry(b.clone()).or_default() += 1;
            }
        }
        for s in &steps {
            if total <= max {
                return Ok(out);
            }
            let size = fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&s.path).is_err() {
                continue;
            }
            out.steps += 1;
            total = total.saturating_sub(size);
            out.bytes += size;
            let Some(blob) = &s.blob else { continue };
            let left = users.get_mut(blob).map(|n| {
                *n -= 1;
                *n
            });
            if left != Some(0) || live.contains(blob) {
                continue;
            }
            let path = store.blob_path(blob);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
                out.bytes += size;
            }
            if let Some(d) = &s.diff_id
                && !live_diffs.contains(d)
                && !in_use
                    .iter()
                    .any(|p| p.file_name() == Some(std::ffi::OsStr::new(d.hex())))
            {
                let snap = store.snapshot_path(d);
                let size = dir_size(&snap);
                if crate::sandbox::fs::remove_dir_all(&snap).is_ok() {
                    total = total.saturating_sub(size);
                    out.bytes += size;
                }
            }
        }
        // Then cache mounts, the least recently used first (a mount's lock
        // file is touched by every step that uses it).
        let dir = store.cache_dir().join("mounts");
        let mut mounts: Vec<(SystemTime, PathBuf)> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .map(|p| (mtime(&p.with_extension("lock")).max(mtime(&p)), p))
            .collect();
        mounts.sort();
        for (_, path) in mounts {
            if total <= max {
                break;
            }
            let size = dir_size(&path);
            if crate::sandbox::fs::remove_dir_all(&path).is_ok() {
                let _ = fs::remove_file(path.with_extension("lock"));
                out.cache_mounts += 1;
                total = total.saturating_sub(size);
                out.bytes += size;
            }
        }
        Ok(out)
    })
}
