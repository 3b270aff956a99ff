//! Content digests of COPY sources: names, modes and contents, never mtimes
//! or owners, so that a fresh checkout of the same files has the same
//! digest. A file's own digest is remembered with its stat (size, mtime,
//! ctime, inode, mode) in a [`StatCache`] kept in the store, so an
//! unchanged context of tens of thousands of files is not read again.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What identifies an unchanged file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    mode: u32,
}

impl Stat {
    fn of(m: &fs::Metadata) -> Stat {
        Stat {
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            mode: m.mode(),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Entries {
    /// Path relative to the context → its stat and content digest (hex).
    files: HashMap<String, (Stat, String)>,
}

/// Per-file content digests of one context directory, remembered by stat.
pub struct StatCache {
    root: PathBuf,
    file: Option<PathBuf>,
    entries: Mutex<Entries>,
    dirty: Mutex<bool>,
}

impl StatCache {
    /// The cache of context `root`, read from `file` (an absent or broken
    /// file is an empty cache: it only saves work).
    pub fn load(root: &Path, file: PathBuf) -> StatCache {
        let entries = fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache {
            root: root.to_path_buf(),
            file: Some(file),
            entries: Mutex::new(entries),
            dirty: Mutex::new(false),
        }
    }

    /// A cache that remembers nothing (sources outside a context).
    pub fn none() -> StatCache {
        StatCache {
            root: PathBuf::new(),
            file: None,
            entries: Mutex::new(Entries::default()),
            dirty: Mutex::new(false),
        }
    }

    /// Writes the cache back when it learnt something, through `write`
    /// (the store's atomic write). Entries for files that are gone are
    /// dropped first.
    pub fn save(&self, write: impl FnOnce(&Path, &[u8]) -> std::io::Result<()>) {
        let (Some(file), true) = (&self.file, *lock(&self.dirty)) else {
            return;
        };
        let mut entries = lock(&self.entries);
        entries
            .files
            .retain(|rel, _| fs::symlink_metadata(self.root.join(rel)).is_ok());
        if let Ok(bytes) = serde_json::to_vec(&*entries) {
            let _ = write(file, &bytes);
        }
    }

    /// The content digest of the regular file `path`.
    fn file_digest(&self, path: &Path, meta: &fs::Metadata) -> String {
        let rel = self
            .file
            .as_ref()
            .and_then(|_| path.strip_prefix(&self.root).ok())
            .map(|r| r.to_string_lossy().into_owned());
        let stat = Stat::of(meta);
        if let Some(rel) = &rel
            && let Some((known, digest)) = lock(&self.entries).files.get(rel)
            && *known == stat
        {
            return digest.clone();
        }
        let mut h = Sha256::new();
        if let Ok(mut f) = fs::File::open(path) {
            let _ = std::io::copy(&mut f, &mut h);
        }
        let digest = format!("{:x}", h.finalize());
        if let Some(rel) = rel {
            lock(&self.entries)
                .files
                .insert(rel, (stat, digest.clone()));
            *lock(&self.dirty) = true;
        }
        digest
    }

    /// Digest of names, modes and contents under `path`, leaving out what
    /// `skip` says.
    pub fn tree_digest(&self, path: &Path, skip: &dyn Fn(&Path) -> bool) -> String {
        let mut h = Sha256::new();
        self.walk(path, skip, &mut |rel, mode, content| {
            h.update((rel.len() as u64).to_le_bytes());
            h.update(rel.as_bytes());
            h.update(mode.to_le_bytes());
            if let Some(c) = content {
                h.update(c.as_bytes());
            }
        });
        format!("{:x}", h.finalize())
    }

    /// What `tree_digest` hashes, entry by entry: each path under `path`
    /// (relative, without a leading `/`) with its mode in octal and its
    /// content digest or symlink target (`cache miss` explanations name
    /// the file that changed).
    pub fn tree_listing(&self, path: &Path, skip: &dyn Fn(&Path) -> bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.walk(path, skip, &mut |rel, mode, content| {
            out.push((
                rel.trim_start_matches('/').to_string(),
                format!("{mode:o} {}", content.unwrap_or("")),
            ));
        });
        out
    }

    /// Visits every entry under `path` in name order (its relative name,
    /// mode, and file digest or symlink target), without recursion: a
    /// tree's depth is bounded by memory, not by the stack. Symlinks are
    /// never followed.
    fn walk(
        &self,
        path: &Path,
        skip: &dyn Fn(&Path) -> bool,
        visit: &mut dyn FnMut(&str, u32, Option<&str>),
    ) {
        let mut todo = vec![(path.to_path_buf(), String::new())];
        while let Some((path, rel)) = todo.pop() {
            if skip(&path) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                visit(&rel, meta.mode(), None);
                let mut names: Vec<_> = fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for n in names.into_iter().rev() {
                    let child = format!("{rel}/{}", n.to_string_lossy());
                    todo.push((path.join(&n), child));
                }
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap_or_default();
                visit(&rel, meta.mode(), Some(&target.to_string_lossy()));
            } else if meta.is_file() {
                visit(&rel, meta.mode(), Some(&self.file_digest(&path, &meta)));
            } else {
                visit(&rel, meta.mode(), None);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_content_not_mtime_and_the_cache_is_used() {
        let dir = tempfile_dir();
        let ctx = dir.join("ctx");
        fs::create_dir_all(ctx.join("sub")).unwrap();
        fs::write(ctx.join("sub/a"), "one").unwrap();
        let cache_file = dir.join("cache.json");
        let cache = StatCache::load(&ctx, cache_file.clone());
        let first = cache.tree_digest(&ctx, &|_| false);
        cache.save(|p, b| fs::write(p, b));
        assert!(cache_file.is_file());

        // A new mtime, same content: same digest.
        let f = fs::File::options()
            .write(true)
            .open(ctx.join("sub/a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let cache = StatCache::load(&ctx, cache_file.clone());
        assert_eq!(cache.tree_digest(&ctx, &|_| false), first);

        // A remembered digest is used while the stat is unchanged: a
        // forged entry shows it (nothing re-reads the file).
        let mut entries: Entries = serde_json::from_slice(&fs::read(&cache_file).unwrap()).unwrap();
        let stat = Stat::of(&fs::symlink_metadata(ctx.join("sub/a")).unwrap());
        entries
            .files
            .insert("sub/a".into(), (stat, "forged".into()));
        fs::write(&cache_file, serde_json::to_vec(&entries).unwrap()).unwrap();
        let cache = StatCache::load(&ctx, cache_file.clone());
        assert_ne!(cache.tree_digest(&ctx, &|_| false), first);

        // Changed content changes the stat, so the file is read again.
        fs::write(ctx.join("sub/a"), "two").unwrap();
        let changed = cache.tree_digest(&ctx, &|_| false);
        assert_ne!(changed, first);
        fs::write(ctx.join("sub/a"), "one").unwrap();
        assert_eq!(cache.tree_digest(&ctx, &|_| false), first);
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kiln-digest-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }
}
