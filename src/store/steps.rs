//! The store's sub-stores: the step cache's records (`cache/steps/<key>`,
//! the one reader and writer of their format), the cache mounts
//! (`cache/mounts/<name>`), and the directories of containers, volumes,
//! networks and logs. Every name that comes from outside (a step key from
//! a shared cache, a mount id from a Dockerfile) is checked where it
//! enters, so no sub-store path leaves its directory.

use super::{Digest, Result, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

/// A step's cache key as it names a file in the store: 64 lowercase hex
/// digits, nothing else. Keys come from shared caches too, so a key that
/// is not one (`../../etc/cron.d/x`) is refused where it enters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StepKey(String);

impl StepKey {
    /// Checks `text`.
    pub fn parse(text: &str) -> std::result::Result<StepKey, String> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(StepKey(text.to_string()))
        } else {
            Err(format!("step key {text:?} is not a sha256 hex digest"))
        }
    }

    /// The key's text (a safe file name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StepKey {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<StepKey, String> {
        StepKey::parse(&text)
    }
}

impl From<StepKey> for String {
    fn from(k: StepKey) -> String {
        k.0
    }
}

/// What a step made: its layer (or none when it changed nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The layer blob's digest and size.
    pub layer: Option<(Digest, u64)>,
    /// Its diffID and media type when the blob is compressed (a layer
    /// that came from a shared cache); a built layer is stored plain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed: Option<(Digest, String)>,
}

impl StepRecord {
    /// The diffID: the blob's digest unless the blob is compressed.
    pub fn diff_id(&self) -> Option<&Digest> {
        match (&self.compressed, &self.layer) {
            (Some((diff_id, _)), _) => Some(diff_id),
            (None, Some((d, _))) => Some(d),
            (None, None) => None,
        }
    }

    /// The layer blob's digest.
    pub fn blob(&self) -> Option<&Digest> {
        self.layer.as_ref().map(|(d, _)| d)
    }
}

/// A record as the store holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its key.
    pub key: StepKey,
    /// What it names.
    pub record: StepRecord,
    /// When it was last made or hit (eviction goes by it).
    pub used: SystemTime,
    /// The record file's size.
    pub bytes: u64,
}

/// The step cache's records.
pub struct Steps<'a> {
    store: &'a Store,
}

fn mtime(path: &std::path::Path) -> SystemTime {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl Steps<'_> {
    fn dir(&self) -> PathBuf {
        super::layout::cache(self.store.root(), super::layout::Cache::Steps)
    }

    fn path(&self, key: &StepKey) -> PathBuf {
        self.dir().join(key.as_str())
    }

    /// The record of `key` when its layer is still in the store (blob and
    /// snapshot); a hit is a use: its time is now.
    pub fn get(&self, key: &StepKey) -> Option<StepRecord> {
        let path = self.path(key);
        let r: StepRecord = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
        if let (Some(blob), Some(diff_id)) = (r.blob(), r.diff_id())
            && (!self.store.has_blob(blob) || !self.store.snapshot_path(diff_id).is_dir())
        {
            return None;
        }
        let _ = filetime::set_file_mtime(&path, filetime::FileTime::now());
        Some(r)
    }

    /// Records what `key` made.
    pub fn put(&self, key: &StepKey, record: &StepRecord) -> Result<()> {
        let dir = self.dir();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            action: "creating",
            path: dir.clone(),
            source,
        })?;
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Io {
            action: "writing",
            path: self.path(key),
            source: std::io::Error::other(e),
        })?;
        self.store.write_atomic(&self.path(key), &bytes)
    }

    /// Forgets `key`; true when it was there.
    pub fn remove(&self, key: &StepKey) -> bool {
        fs::remove_file(self.path(key)).is_ok()
    }

    /// Every record (unreadable ones as records of nothing), in no order.
    pub fn list(&self) -> Vec<Stored> {
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let key = StepKey::parse(&e.file_name().to_string_lossy()).ok()?;
                let path = e.path();
                let record = fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                Some(Stored {
                    key,
                    record,
                    used: mtime(&path),
                    bytes: fs::symlink_metadata(&path).map_or(0, |m| m.len()),
                })
            })
            .collect()
    }

    /// How many records there are.
    pub fn count(&self) -> usize {
        fs::read_dir(self.dir()).map_or(0, |d| d.count())
    }
}

/// A cache mount's name as it names a directory in the store: what the
/// builder makes of a mount id (a digest's hex), checked as a step key is.
pub struct Mounts<'a> {
    store: &'a Store,
}

/// A cache mount in the store.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Its directory.
    pub path: PathBuf,
    /// When a step last used it (its lock file is touched by every use).
    pub used: SystemTime,
}

impl Mounts<'_> {
    /// Where cache mounts live.
    pub fn dir(&self) -> PathBuf {
        super::layout::cache(self.store.root(), super::layout::Cache::Mounts)
    }

    /// The directory of mount `name` (one path component, checked).
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        one_component(name)?;
        Ok(self.dir().join(name))
    }

    /// Every cache mount, least recently used first.
    pub fn by_use(&self) -> Vec<Mount> {
        let mut mounts: Vec<Mount> = fs::read_dir(self.dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .map(|p| Mount {
                used: mtime(&p.with_extension("lock")).max(mtime(&p)),
                path: p,
            })
            .collect();
        mounts.sort_by(|a, b| (a.used, &a.path).cmp(&(b.used, &b.path)));
        mounts
    }
}

/// A directory of the store holding one entry per name (containers,
/// volumes, networks, logs).
pub struct Area {
    dir: PathBuf,
}

impl Area {
    /// The directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Entry `name`'s path (one path component, checked).
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        one_component(name)?;
        Ok(self.dir.join(name))
    }
}

use super::layout::one_component;

impl Store {
    /// The step cache's records.
    pub fn steps(&self) -> Steps<'_> {
        Steps { store: self }
    }

    /// The cache mounts (`RUN --mount=type=cache`).
    pub fn mounts(&self) -> Mounts<'_> {
        Mounts { store: self }
    }

    /// The containers' directories.
    pub fn containers(&self) -> Area {
        Area {
            dir: super::layout::containers(self.root()),
        }
    }

    /// The volumes' directories.
    pub fn volumes(&self) -> Area {
        Area {
            dir: super::layout::volumes(self.root()),
        }
    }

    /// The networks' records.
    pub fn networks(&self) -> Area {
        Area {
            dir: super::layout::networks(self.root()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> StepKey {
        StepKey::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn keys_are_hex_digests_only() {
        assert!(StepKey::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "../../etc/cron.d/x", &"A".repeat(64), &"a".repeat(63)] {
            assert!(StepKey::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&"../x").unwrap();
        assert!(serde_json::from_str::<StepKey>(&json).is_err());
    }

    #[test]
    fn a_record_is_a_hit_only_while_its_layer_is_there() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let steps = store.steps();
        let empty = StepRecord::default();
        steps.put(&key('a'), &empty).unwrap();
        assert_eq!(
            steps.get(&key('a')),
            Some(empty),
            "a step that made nothing"
        );
        // A layer whose blob is there but whose snapshot is not: a miss.
        let (digest, size) = store.put_bytes(b"layer").unwrap();
        let made = StepRecord {
            layer: Some((digest.clone(), size)),
            compressed: None,
        };
        steps.put(&key('b'), &made).unwrap();
        assert_eq!(steps.get(&key('b')), None);
        fs::create_dir_all(store.snapshot_path(&digest)).unwrap();
        assert_eq!(steps.get(&key('b')), Some(made.clone()));
        assert_eq!(made.diff_id(), Some(&digest));
        let mut listed: Vec<StepKey> = steps.list().into_iter().map(|s| s.key).collect();
        listed.sort();
        assert_eq!(listed, [key('a'), key('b')]);
        assert_eq!(steps.count(), 2);
        assert!(steps.remove(&key('a')) && !steps.remove(&key('a')));
        assert_eq!(steps.get(&key('c')), None);
    }

    #[test]
    fn sub_store_paths_stay_in_their_directory() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        for bad in ["..", "a/b", "", "."] {
            assert!(store.mounts().path(bad).is_err(), "{bad}");
            assert!(store.volumes().path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            store.containers().path("c1").unwrap(),
            root.path().join("containers/c1")
        );
    }
}
