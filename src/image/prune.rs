//! `kiln prune`: remove what no tag reaches, and trim the build cache.

use super::Result;
use crate::store::{Digest, Store, gc};
use std::collections::BTreeSet;

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

/// Removes blobs, snapshots and cache records no image of the index
/// reaches; then, with `keep_storage`, removes cache records least
/// recently used first until what the cache holds fits. The snapshots in
/// `in_use` (containers' layers, which a running container has mounted)
/// stay whatever reaches them. None when another kiln has the store open.
/// The store's one collector ([`crate::store::gc`]) with the build cache
/// as no root.
pub fn prune(
    store: &Store,
    keep_storage: Option<u64>,
    in_use: &[std::path::PathBuf],
) -> Result<Option<Pruned>> {
    let collected = gc::gc(store, gc::Cache::Drop { keep: keep_storage }, in_use)?;
    Ok(collected.map(|c| Pruned {
        blobs: c.blobs,
        snapshots: c.snapshots,
        cache_records: c.compressed,
        bytes: c.bytes,
        images: c.images,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;
    use crate::layer::Compression;
    use std::fs;

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
        assert!(!store.has_blob(&crate::image::manifest_digest(&gz).unwrap()));
    }
}
