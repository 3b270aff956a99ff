//! `kiln prune`: remove what no tag reaches, and trim the build cache.

use super::{Result, manifest_digest};
use crate::store::{Digest, Store, StoreError};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

/// What a prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs deleted.
    pub blobs: usize,
    /// Snapshots deleted.
    pub snapshots: usize,
    /// Cache records deleted.
    pub cache_records: usize,
    /// Bytes freed (blobs and snapshot files).
    pub bytes: u64,
    /// The ids of the images whose manifests went (docker's
    /// `ImagesDeleted`).
    pub images: Vec<Digest>,
}

/// The image id (config digest) a blob holds the manifest of, if it is
/// one: only small blobs are read.
fn manifest_config(path: &Path, size: u64) -> Option<Digest> {
    if size > 64 << 10 {
        return None;
    }
    let bytes = fs::read(path).ok()?;
    let m: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes).ok()?;
    manifest_digest(m.config()).ok()
}

/// A cache record: a compressed copy of a layer, and when it was last made or used.
struct Record {
    path: std::path::PathBuf,
    blob: Digest,
    size: u64,
    used: SystemTime,
}

fn records(store: &Store) -> Vec<Record> {
    let dir = store.cache_dir().join("compressed");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let text = fs::read_to_string(e.path()).ok()?;
            let (digest, size) = text.trim().split_once(' ')?;
            Some(Record {
                path: e.path(),
                blob: digest.parse().ok()?,
                size: size.parse().ok()?,
                used: e.metadata().and_then(|m| m.modified()).ok()?,
            })
        })
        .collect()
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

/// Forgets the images without a name (docker's dangling `<none>:<none>`)
/// that no container in `used` (image ids) was made from; returns their
/// ids. What they alone reached goes at the next [`prune`].
pub fn forget_dangling(store: &Store, used: &BTreeSet<String>) -> Result<Vec<String>> {
    let mut forgotten = Vec::new();
    for (name, d) in store.images()? {
        let id = store.image_id(&d);
        // A container of any platform's image of an index keeps it.
        let in_use = super::index::ids(store, &d)
            .iter()
            .any(|i| used.contains(i));
        if name.is_none() && !in_use && store.forget_untagged(d.digest().as_ref())? {
            store.image_event("delete", &id, "");
            forgotten.push(id);
        }
    }
    Ok(forgotten)
}

/// Removes blobs, snapshots and cache records no image of the index reaches; then, with
/// `keep_storage`, removes cache records least recently used first until
/// what the cache holds fits. The snapshots in `in_use` (containers' layers,
/// which a running container has mounted) stay whatever reaches them.
/// None when another kiln has the store open.
pub fn prune(
    store: &Store,
    keep_storage: Option<u64>,
    in_use: &[std::path::PathBuf],
) -> Result<Option<Pruned>> {
    store.exclusive(|| -> Result<Pruned> {
        let _lock = store.lock()?;
        let mut live: BTreeSet<Digest> = BTreeSet::new();
        let mut diff_ids: BTreeSet<Digest> = BTreeSet::new();
        // Images without a name are kept too, until `image prune` or
        // `rmi` forgets them.
        // An index keeps every platform's image and its attestations.
        for (_, d) in store.images()? {
            super::index::reachable(store, &d, &mut live, &mut diff_ids)?;
        }
        let mut pruned = Pruned::default();
        let mut cache = records(store);
        // Records of layers no image uses go; the rest keep their blobs alive.
        cache.retain(|r| {
            let name = r
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let diff_hex = name.split('.').next().unwrap_or_default();
            let keep = diff_ids.iter().any(|d| d.hex() == diff_hex);
            if !keep && fs::remove_file(&r.path).is_ok() {
                pruned.cache_records += 1;
            }
            keep
        });
        if let Some(limit) = keep_storage {
            cache.sort_by_key(|r| r.used);
            let mut total: u64 = cache.iter().map(|r| r.size).sum();
            let mut i = 0;
            while total > limit && i < cache.len() {
                if fs::remove_file(&cache[i].path).is_ok() {
                    pruned.cache_records += 1;
                    total -= cache[i].size;
                }
                i += 1;
            }
            cache.drain(..i);
        }
        live.extend(cache.iter().map(|r| r.blob.clone()));

        let blob_dir = store.root().join("blobs/sha256");
        for entry in fs::read_dir(&blob_dir).map_err(|source| StoreError::Io {
            action: "reading",
            path: blob_dir.clone(),
            source,
        })? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = format!("sha256:{name}")
                .parse::<Digest>()
                .is_ok_and(|d| live.contains(&d));
            if !keep {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let image = manifest_config(&entry.path(), size);
                if fs::remove_file(entry.path()).is_ok() {
                    pruned.images.extend(image);
                    pruned.blobs += 1;
                    pruned.bytes += size;
                }
            }
        }
        let snap_dir = store.root().join("snapshots");
        for entry in fs::read_dir(&snap_dir).map_err(|source| StoreError::Io {
            action: "reading",
            path: snap_dir.clone(),
            source,
        })? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let used = in_use
                .iter()
                .any(|p| p.file_name() == Some(std::ffi::OsStr::new(&name)));
            if !diff_ids.iter().any(|d| d.hex() == name) && !used {
                let size = dir_size(&entry.path());
                if crate::sandbox::fs::remove_dir_all(&entry.path()).is_ok() {
                    pruned.snapshots += 1;
                    pruned.bytes += size;
                }
            }
        }
        Ok(pruned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;
    use crate::layer::Compression;

    #[test]
    fn prune_keeps_what_tags_reach() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let mk = |content: &str, name: &str| {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("f"), content).unwrap();
            let (tar, _, _) =
                crate::layer::generate(dir.path(), Vec::new(), Default::default()).unwrap();
            super::super::import(&store, tar.as_slice(), "t", &name.parse().unwrap(), &[]).unwrap()
        };
        let keep = mk("keep", "keep:1");
        let gone = mk("gone", "gone:1");
        let (layer, diff_id) = gone.layers().remove(0);
        super::super::compress::for_export(&store, &layer, Compression::Gzip).unwrap();
        store.untag("gone:1").unwrap();
        let pruned = prune(&store, None, &[])
            .unwrap()
            .expect("sole user of the store");
        // gone's manifest, config, layer and its gzip copy; its snapshot; its record.
        assert_eq!(
            (pruned.blobs, pruned.snapshots, pruned.cache_records),
            (4, 1, 1)
        );
        assert!(!store.snapshot_path(&diff_id).exists());
        assert!(
            store
                .snapshot_path(&keep.config.rootfs.diff_ids[0])
                .exists()
        );
        assert_eq!(Image::resolve(&store, "keep:1").unwrap().id, keep.id);
        assert!(crate::store::fsck(&store).unwrap().problems.is_empty());
        // keep-storage 0 drops the cache records of live images too.
        let (layer, _) = keep.layers().remove(0);
        let gz = super::super::compress::for_export(&store, &layer, Compression::Gzip).unwrap();
        let pruned = prune(&store, Some(0), &[]).unwrap().unwrap();
        assert_eq!((pruned.blobs, pruned.cache_records), (1, 1));
        assert!(!store.has_blob(&manifest_digest(&gz).unwrap()));
    }
}
