//! The store's one garbage collector and its one count of what it holds.
//!
//! [`gc`] marks what its roots reach and sweeps the rest (umoci's
//! `oci/cas` GC): the roots are every entry of the index (an index with
//! all its platforms and attestations), the snapshots containers have
//! mounted, and, under a size cap, the build cache that the cap leaves
//! (step records least recently used go first, with the layers only they
//! reach, then cache mounts). `kiln prune` and the API's prunes call it
//! without a cap (the build cache is then no root); `kiln serve`'s
//! `max_size` calls it with one. [`usage`] is what `system df`, serve's
//! metrics and the cap all read.

use super::{Digest, Result, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bytes a store holds, by kind.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Blobs (layers, configs, manifests).
    pub blobs: u64,
    /// Unpacked layers.
    pub snapshots: u64,
    /// `RUN --mount=type=cache` directories.
    pub cache_mounts: u64,
    /// Everything else (step records, logs, git checkouts, temporary files).
    pub other: u64,
    /// Step records (a count, not bytes).
    #[serde(skip)]
    pub steps: usize,
}

impl Usage {
    /// The total in bytes.
    pub fn total(&self) -> u64 {
        self.blobs + self.snapshots + self.cache_mounts + self.other
    }
}

/// What `store` holds, by kind.
pub fn usage(store: &Store) -> Usage {
    let blobs = dir_size(&store.root().join("blobs"));
    let snapshots = dir_size(&store.root().join("snapshots"));
    let cache_mounts = dir_size(&store.mounts().dir());
    let all = dir_size(store.root());
    Usage {
        blobs,
        snapshots,
        cache_mounts,
        other: all.saturating_sub(blobs + snapshots + cache_mounts),
        steps: store.steps().count(),
    }
}

/// What becomes of the build cache in a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// No root (`kiln prune`): layers only the step cache reaches go (its
    /// records then miss); compressed copies of layers no image has go,
    /// the others kept within `keep` bytes, least recently used first.
    Drop {
        /// `--keep-storage`.
        keep: Option<u64>,
    },
    /// A root trimmed to a size cap (`kiln serve`'s `max_size`): when the
    /// store holds more than `cap` bytes, step records go least recently
    /// used first with the layers only they reach, then cache mounts,
    /// until it fits; nothing else of the cache goes.
    Cap(u64),
}

/// What a collection removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Collected {
    /// Blobs deleted.
    pub blobs: usize,
    /// Snapshots deleted.
    pub snapshots: usize,
    /// Compressed copies' records deleted.
    pub compressed: usize,
    /// Step records removed.
    pub steps: usize,
    /// Cache mounts removed.
    pub cache_mounts: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// The ids of the images whose manifests went (docker's
    /// `ImagesDeleted`).
    #[serde(skip)]
    pub images: Vec<Digest>,
    /// What the store held before (under a cap).
    pub before: Usage,
}

/// A compressed copy of a layer: its record, its blob, and when it was
/// last made or used.
struct Compressed {
    path: PathBuf,
    /// The diffID its record is named after.
    diff_hex: String,
    blob: Digest,
    size: u64,
    used: SystemTime,
}

fn compressed(store: &Store) -> Vec<Compressed> {
    let dir = super::layout::cache(store.root(), super::layout::Cache::Compressed);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let text = fs::read_to_string(e.path()).ok()?;
            let (digest, size) = text.trim().split_once(' ')?;
            let name = e.file_name().to_string_lossy().into_owned();
            Some(Compressed {
                diff_hex: name.split('.').next().unwrap_or_default().to_string(),
                path: e.path(),
                blob: digest.parse().ok()?,
                size: size.parse().ok()?,
                used: e.metadata().and_then(|m| m.modified()).ok()?,
            })
        })
        .collect()
}

/// The image id (config digest) a blob holds the manifest of, if it is
/// one: only small blobs are read.
fn manifest_config(path: &Path, size: u64) -> Option<Digest> {
    if size > 64 << 10 {
        return None;
    }
    let bytes = fs::read(path).ok()?;
    let m: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes).ok()?;
    crate::image::manifest_digest(m.config()).ok()
}

/// What the collection keeps: blobs and snapshots (by diffID hex).
#[derive(Default)]
struct Marked {
    blobs: BTreeSet<Digest>,
    diffs: BTreeSet<Digest>,
}

/// Collects `store`'s garbage: marks what the index's entries reach and
/// the build cache `cache` keeps, then removes every other blob and
/// every snapshot neither marked nor in `in_use` (containers' mounted
/// layers). None when another kiln has the store open (it may be about to
/// use what would go).
pub fn gc(store: &Store, cache: Cache, in_use: &[PathBuf]) -> Result<Option<Collected>> {
    store.exclusive(|| -> Result<Collected> {
        let _lock = store.lock()?;
        let mut out = Collected::default();
        let mut total = 0;
        if let Cache::Cap(cap) = cache {
            out.before = usage(store);
            total = out.before.total();
            if total <= cap {
                return Ok(out);
            }
        }
        // Images without a name are kept too, until `image prune` or `rmi`
        // forgets them; an index keeps every platform's image and its
        // attestations. A walk that fails stops the collection: what it
        // would have reached must not be swept.
        let mut marked = Marked::default();
        for (_, d) in store.images()? {
            crate::image::index::reachable(store, &d, &mut marked.blobs, &mut marked.diffs)
                .map_err(|e| StoreError::Io {
                    action: "walking",
                    path: PathBuf::from(d.digest().to_string()),
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
        match cache {
            Cache::Drop { keep } => mark_compressed(store, &mut marked, keep, &mut out),
            Cache::Cap(cap) => {
                marked
                    .blobs
                    .extend(compressed(store).into_iter().map(|c| c.blob));
                trim_steps(store, &mut marked, cap, &mut total, in_use, &mut out);
                trim_mounts(store, cap, &mut total, &mut out);
            }
        }
        sweep(store, &marked, in_use, &mut out)?;
        Ok(out)
    })
}

/// Keeps the compressed copies of layers an image has (within `keep`
/// bytes, the least recently used going first); the others' records go.
fn mark_compressed(store: &Store, marked: &mut Marked, keep: Option<u64>, out: &mut Collected) {
    let mut records = compressed(store);
    records.retain(|r| {
        let keep = marked.diffs.iter().any(|d| d.hex() == r.diff_hex);
        if !keep && fs::remove_file(&r.path).is_ok() {
            out.compressed += 1;
        }
        keep
    });
    if let Some(limit) = keep {
        records.sort_by_key(|r| r.used);
        let mut total: u64 = records.iter().map(|r| r.size).sum();
        let mut i = 0;
        while total > limit && i < records.len() {
            if fs::remove_file(&records[i].path).is_ok() {
                out.compressed += 1;
                total -= records[i].size;
            }
            i += 1;
        }
        records.drain(..i);
    }
    marked.blobs.extend(records.into_iter().map(|r| r.blob));
}

/// Removes step records, least recently used first, while the store
/// holds more than `cap` (`total`, less what the sweep will free of the
/// layers only they reached); the records left are roots.
fn trim_steps(
    store: &Store,
    marked: &mut Marked,
    cap: u64,
    total: &mut u64,
    in_use: &[PathBuf],
    out: &mut Collected,
) {
    let steps = store.steps();
    let mut records = steps.list();
    records.sort_by(|a, b| (a.used, &a.key).cmp(&(b.used, &b.key)));
    // How many records name each blob: it goes with its last one.
    let mut users: BTreeMap<Digest, usize> = BTreeMap::new();
    for s in &records {
        if let Some(b) = s.record.blob() {
            *users.entry(b.clone()).or_default() += 1;
        }
    }
    let mut kept = Vec::new();
    for s in records {
        if *total <= cap || !steps.remove(&s.key) {
            kept.push(s);
            continue;
        }
        out.steps += 1;
        *total = total.saturating_sub(s.bytes);
        out.bytes += s.bytes;
        let Some(blob) = s.record.blob() else {
            continue;
        };
        let left = users.get_mut(blob).map(|n| {
            *n -= 1;
            *n
        });
        if left != Some(0) || marked.blobs.contains(blob) {
            continue;
        }
        // What the sweep will free: the blob, and its snapshot unless an
        // image or a container has it.
        *total = total.saturating_sub(fs::metadata(store.blob_path(blob)).map_or(0, |m| m.len()));
        if let Some(d) = s.record.diff_id()
            && !marked.diffs.contains(d)
            && !mounted(in_use, d)
        {
            *total = total.saturating_sub(dir_size(&store.snapshot_path(d)));
        }
    }
    for s in kept {
        marked.blobs.extend(s.record.blob().cloned());
        marked.diffs.extend(s.record.diff_id().cloned());
    }
}

/// Removes cache mounts, least recently used first, while the store
/// holds more than `cap`.
fn trim_mounts(store: &Store, cap: u64, total: &mut u64, out: &mut Collected) {
    for m in store.mounts().by_use() {
        if *total <= cap {
            break;
        }
        let size = dir_size(&m.path);
        if crate::sandbox::fs::remove_dir_all(&m.path).is_ok() {
            let _ = fs::remove_file(m.path.with_extension("lock"));
            out.cache_mounts += 1;
            *total = total.saturating_sub(size);
            out.bytes += size;
        }
    }
}

/// True when a container has snapshot `d` mounted.
fn mounted(in_use: &[PathBuf], d: &Digest) -> bool {
    in_use
        .iter()
        .any(|p| p.file_name() == Some(std::ffi::OsStr::new(d.hex())))
}

/// Removes every blob and snapshot not `marked` (snapshots in `in_use`
/// stay).
fn sweep(store: &Store, marked: &Marked, in_use: &[PathBuf], out: &mut Collected) -> Result<()> {
    let read = |dir: &Path| {
        fs::read_dir(dir).map_err(|source| StoreError::Io {
            action: "reading",
            path: dir.to_path_buf(),
            source,
        })
    };
    for entry in read(&store.root().join("blobs/sha256"))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = format!("sha256:{name}")
            .parse::<Digest>()
            .is_ok_and(|d| marked.blobs.contains(&d));
        if !keep {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let image = manifest_config(&entry.path(), size);
            if fs::remove_file(entry.path()).is_ok() {
                out.images.extend(image);
                out.blobs += 1;
                out.bytes += size;
            }
        }
    }
    for entry in read(&store.root().join("snapshots"))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        let used = in_use
            .iter()
            .any(|p| p.file_name() == Some(std::ffi::OsStr::new(&name)));
        if !marked.diffs.iter().any(|d| d.hex() == name) && !used {
            let size = dir_size(&entry.path());
            if crate::sandbox::fs::remove_dir_all(&entry.path()).is_ok() {
                out.snapshots += 1;
                out.bytes += size;
            }
        }
    }
    Ok(())
}

/// Bytes under `path`, walked without recursion (a snapshot's depth is
/// bounded by memory, not by the stack) and without following symlinks.
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![path.to_path_buf()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() {
            total += meta.len();
            continue;
        }
        if let Ok(entries) = fs::read_dir(&path) {
            todo.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    total
}

impl Store {
    /// What the store holds, by kind.
    pub fn usage(&self) -> Usage {
        usage(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StepKey, StepRecord};

    /// A layer made of `content` as a build step makes one: its blob and
    /// its snapshot, and a step record `key` naming it, used at `used`
    /// seconds.
    fn step(store: &Store, key: char, content: &str, used: i64) -> Digest {
        let (digest, size) = store.put_bytes(content.as_bytes()).unwrap();
        let snap = store.snapshot_path(&digest);
        fs::create_dir_all(&snap).unwrap();
        fs::write(snap.join("f"), content).unwrap();
        let key = StepKey::parse(&key.to_string().repeat(64)).unwrap();
        let record = StepRecord {
            layer: Some((digest.clone(), size)),
            compressed: None,
        };
        store.steps().put(&key, &record).unwrap();
        let path = super::super::layout::cache(store.root(), super::super::layout::Cache::Steps)
            .join(key.as_str());
        filetime::set_file_mtime(&path, filetime::FileTime::from_unix_time(used, 0)).unwrap();
        digest
    }

    fn has_layer(store: &Store, d: &Digest) -> bool {
        store.has_blob(d) && store.snapshot_path(d).is_dir()
    }

    #[test]
    fn a_cap_trims_the_least_recently_used_steps_and_what_only_they_reach() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let big = "x".repeat(100_000);
        let old = step(&store, 'a', &format!("old{big}"), 1_000);
        let new = step(&store, 'b', &format!("new{big}"), 2_000);
        let mounted = step(&store, 'c', &format!("mounted{big}"), 500);
        // A blob nothing names: garbage whatever the cap.
        let (stray, _) = store.put_bytes(b"stray").unwrap();
        let before = usage(&store);
        assert_eq!(before.steps, 3);
        assert!(before.blobs >= 300_000 && before.snapshots >= 300_000);
        // Under the cap: nothing goes, not even the stray blob.
        let none = gc(&store, Cache::Cap(u64::MAX), &[]).unwrap().unwrap();
        assert_eq!((none.steps, none.blobs, none.bytes), (0, 0, 0));
        assert!(store.has_blob(&stray));
        // A cap that the oldest two records' layers make: they go, oldest
        // first; the mounted snapshot stays though its record went.
        let in_use = [store.snapshot_path(&mounted)];
        let cap = before.total() - 250_000;
        let out = gc(&store, Cache::Cap(cap), &in_use).unwrap().unwrap();
        assert_eq!(out.steps, 2, "the two least recently used");
        assert!(!has_layer(&store, &old) && has_layer(&store, &new));
        assert!(!store.has_blob(&mounted) && store.snapshot_path(&mounted).is_dir());
        assert!(
            !store.has_blob(&stray),
            "the sweep takes what nothing reaches"
        );
        assert!(usage(&store).total() <= cap);
        assert_eq!(store.steps().count(), 1);
        assert!(crate::store::fsck(&store).unwrap().problems.is_empty());
    }

    #[test]
    fn without_a_cap_the_step_cache_is_no_root_and_images_are() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let cached = step(&store, 'a', "cached", 1_000);
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "kept").unwrap();
        let (tar, _, _) =
            crate::layer::generate(dir.path(), Vec::new(), Default::default()).unwrap();
        let image = crate::image::import(&store, tar.as_slice(), "t", &"k:1".parse().unwrap(), &[])
            .unwrap();
        let out = gc(&store, Cache::Drop { keep: None }, &[])
            .unwrap()
            .unwrap();
        assert_eq!((out.blobs, out.snapshots, out.steps), (1, 1, 0));
        assert!(
            !has_layer(&store, &cached),
            "only the step cache reached it"
        );
        assert!(has_layer(&store, &image.config.rootfs.diff_ids[0]));
        // Its record stays, and is a miss now.
        let key = StepKey::parse(&"a".repeat(64)).unwrap();
        assert_eq!(store.steps().get(&key), None);
    }
}
