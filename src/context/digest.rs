//! Content digests of COPY sources: names, modes and contents, never mtimes
//! or owners, so that a fresh checkout of the same files has the same
//! digest. A file's own digest is remembered with its stat (size, mtime,
//! ctime, inode, mode) in a [`StatCache`] kept in the store, so an
//! unchanged context of tens of thousands of files is not read again.
//!
//! The cache is a flat file of length-prefixed records (see [`encode`]): as
//! JSON, parsing it was a third of a 20,000-file context's no-change rebuild.

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::sandbox::fs::{Dir, EntryStat};

#[derive(Default)]
struct Entries {
    /// Path relative to the context → its stat and content digest.
    /// (The stat says the file is unchanged: size, times, inode, mode.)
    files: HashMap<String, (EntryStat, [u8; 32])>,
}

/// The cache file's first bytes. A file without them (a JSON cache of an
/// earlier kiln, a torn write) is an empty cache: it only saves work.
const MAGIC: &[u8; 16] = b"kiln-statcache1\n";

/// The cache file: [`MAGIC`], then per file its key's length (u32) and
/// bytes, then size (u64), mtime and ctime (seconds and nanoseconds, i64),
/// inode (u64), mode (u32), all little-endian, and the sha256 (32 bytes).
fn encode(entries: &Entries) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.files.len() * 120);
    out.extend_from_slice(MAGIC);
    for (key, (st, digest)) in &entries.files {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&st.size.to_le_bytes());
        for t in [st.mtime.0, st.mtime.1, st.ctime.0, st.ctime.1] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(&st.ino.to_le_bytes());
        out.extend_from_slice(&st.mode.to_le_bytes());
        out.extend_from_slice(digest);
    }
    out
}

/// Reads what [`encode`] wrote; None for anything else.
fn decode(bytes: &[u8]) -> Option<Entries> {
    let mut rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    // Sized up front (records are about 100 bytes): growing the table
    // rehashed every key several times.
    let mut files = HashMap::with_capacity(bytes.len() / 96);
    while let Some(len) = take(4) {
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let key = std::str::from_utf8(take(len)?).ok()?.to_string();
        let fixed = take(8 * 6 + 4 + 32)?;
        let word = |i: usize| -> [u8; 8] { fixed[i * 8..i * 8 + 8].try_into().unwrap_or_default() };
        let stat = EntryStat {
            size: u64::from_le_bytes(word(0)),
            mtime: (i64::from_le_bytes(word(1)), i64::from_le_bytes(word(2))),
            ctime: (i64::from_le_bytes(word(3)), i64::from_le_bytes(word(4))),
            ino: u64::from_le_bytes(word(5)),
            mode: u32::from_le_bytes(fixed[48..52].try_into().ok()?),
        };
        files.insert(key, (stat, fixed[52..84].try_into().ok()?));
    }
    Some(Entries { files })
}

/// Lower-case hex of a digest.
fn to_hex(digest: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Per-file content digests of one context directory, remembered by stat.
pub struct StatCache {
    root: PathBuf,
    file: Option<PathBuf>,
    entries: RwLock<Entries>,
    dirty: Mutex<bool>,
}

impl StatCache {
    /// The cache of context `root`, read from `file` (an absent or broken
    /// file is an empty cache: it only saves work).
    pub fn load(root: &Path, file: PathBuf) -> StatCache {
        let entries = fs::read(&file)
            .ok()
            .and_then(|b| decode(&b))
            .unwrap_or_default();
        StatCache {
            root: root.to_path_buf(),
            file: Some(file),
            entries: RwLock::new(entries),
            dirty: Mutex::new(false),
        }
    }

    /// A cache that remembers nothing (sources outside a context).
    pub fn none() -> StatCache {
        StatCache {
            root: PathBuf::new(),
            file: None,
            entries: RwLock::new(Entries::default()),
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
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries
            .files
            .retain(|rel, _| fs::symlink_metadata(self.root.join(rel)).is_ok());
        let _ = write(file, &encode(&entries));
    }

    /// The content digest of a regular file: remembered under `key` (its
    /// path from the context) while its stat is unchanged, else read
    /// through `open` (a file that cannot be opened hashes as empty).
    fn file_digest(
        &self,
        key: Option<String>,
        meta: &EntryStat,
        open: impl FnOnce() -> std::io::Result<fs::File>,
    ) -> String {
        let stat = *meta;
        if let Some(key) = &key
            && let Some((known, digest)) = self
                .entries
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .files
                .get(key)
            && *known == stat
        {
            return to_hex(digest);
        }
        let mut h = Sha256::new();
        if let Ok(mut f) = open() {
            let _ = std::io::copy(&mut f, &mut h);
        }
        let digest: [u8; 32] = h.finalize().into();
        if let Some(key) = key {
            self.entries
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .files
                .insert(key, (stat, digest));
            *lock(&self.dirty) = true;
        }
        to_hex(&digest)
    }

    /// Digest of names, modes and contents under `path`, leaving out what
    /// `skip` says; the permission bits of files and directories are what
    /// `perm` makes of them (`perm(bits, is_dir)`), as the copy gives them.
    pub fn tree_digest(
        &self,
        path: &Path,
        skip: &(dyn Fn(&str) -> bool + Sync),
        perm: &dyn Fn(u32, bool) -> u32,
    ) -> String {
        let mut h = Sha256::new();
        self.walk(path, skip, &mut |rel, mode, content| {
            let mode = copied_mode(mode, perm);
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
    pub fn tree_listing(
        &self,
        path: &Path,
        skip: &(dyn Fn(&str) -> bool + Sync),
        perm: &dyn Fn(u32, bool) -> u32,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.walk(path, skip, &mut |rel, mode, content| {
            let mode = copied_mode(mode, perm);
            out.push((
                rel.trim_start_matches('/').to_string(),
                format!("{mode:o} {}", content.unwrap_or("")),
            ));
        });
        out
    }

    /// Visits every entry under `path` in name order (its name from
    /// `path` with a leading `/`, empty for `path` itself; its mode; its
    /// file digest or symlink target), without recursion: a tree's depth
    /// is bounded by memory, not by the stack or by descriptors. Entries
    /// are stat'ed by name in their directory, and no symlink is followed
    /// below `path`. `skip` is given the name without its leading `/`.
    fn walk(
        &self,
        path: &Path,
        skip: &(dyn Fn(&str) -> bool + Sync),
        visit: &mut dyn FnMut(&str, u32, Option<&str>),
    ) {
        // The cache's key of a name: its path from the context.
        let prefix = self
            .file
            .as_ref()
            .and_then(|_| path.strip_prefix(&self.root).ok())
            .map(|p| p.to_string_lossy().into_owned());
        let key = |rel: &str| {
            prefix.as_ref().map(|p| match (p.as_str(), rel) {
                (p, "") => p.to_string(),
                ("", r) => r[1..].to_string(),
                (p, r) => format!("{p}{r}"),
            })
        };
        if skip("") {
            return;
        }
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        let top_stat = EntryStat::from(&meta);
        if meta.is_file() {
            let digest = self.file_digest(key(""), &top_stat, || fs::File::open(path));
            visit("", top_stat.mode, Some(&digest));
            return;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(path).unwrap_or_default();
            visit("", top_stat.mode, Some(&target.to_string_lossy()));
            return;
        } else if !meta.is_dir() {
            visit("", top_stat.mode, None);
            return;
        }
        visit("", top_stat.mode, None);
        let Ok(top) = Dir::open(path) else {
            return;
        };
        let list = |dir: &Dir, parent: &Entry, out: &mut Vec<Entry>| {
            let start = out.len();
            for name in dir.names().unwrap_or_default() {
                let rel = format!("{}/{}", parent.rel, name.to_string_lossy());
                if skip(&rel[1..]) {
                    continue;
                }
                let Ok(stat) = dir.lstat(&name) else {
                    continue;
                };
                let content = if stat.is_symlink() {
                    let target = dir.read_link(&name).unwrap_or_default();
                    Some(target.to_string_lossy().into_owned())
                } else if stat.is_file() {
                    Some(self.file_digest(key(&rel), &stat, || dir.open_file(&name)))
                } else {
                    None
                };
                let raw = parent.raw.join(&name);
                out.push(Entry {
                    rel,
                    raw,
                    stat,
                    content,
                });
            }
            out[start..].reverse();
        };
        // The entries under directory `parent`, in the order they are
        // visited.
        let subtree = |parent: &Entry| {
            let mut out = Vec::new();
            let Ok(dir) = top.open_beneath(&parent.raw) else {
                return out;
            };
            // Entries listed and not yet gone through, the next one last.
            let mut todo = Vec::new();
            list(&dir, parent, &mut todo);
            while let Some(entry) = todo.pop() {
                if entry.stat.is_dir()
                    && let Ok(dir) = top.open_beneath(&entry.raw)
                {
                    list(&dir, &entry, &mut todo);
                }
                out.push(entry);
            }
            out
        };
        let start = Entry {
            rel: String::new(),
            raw: PathBuf::new(),
            stat: top_stat,
            content: None,
        };
        let mut children = Vec::new();
        list(&top, &start, &mut children);
        children.reverse();
        // The top directories' subtrees are walked on two threads: the
        // walk is a stat per entry, and two cores stat twice as fast.
        let slots: Vec<Mutex<Option<Vec<Entry>>>> =
            children.iter().map(|_| Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(child) = children.get(i) else {
                    break;
                };
                if child.stat.is_dir() {
                    *lock(&slots[i]) = Some(subtree(child));
                }
            }
        };
        let dirs = children.iter().filter(|c| c.stat.is_dir()).count();
        std::thread::scope(|scope| {
            // A thread that cannot be had leaves the work to this one.
            if dirs > 1 {
                let _ = std::thread::Builder::new().spawn_scoped(scope, work);
            }
            work();
        });
        for (child, slot) in children.iter().zip(slots) {
            visit(&child.rel, child.stat.mode, child.content.as_deref());
            let below = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            for e in below.unwrap_or_default() {
                visit(&e.rel, e.stat.mode, e.content.as_deref());
            }
        }
    }
}

/// `st_mode` with the permission bits a copy gives a file or directory
/// (`perm`); other entries' as they are.
fn copied_mode(mode: u32, perm: &dyn Fn(u32, bool) -> u32) -> u32 {
    let kind = mode & 0o170000;
    match kind {
        0o040000 | 0o100000 => kind | perm(mode & 0o7777, kind == 0o040000),
        _ => mode,
    }
}

/// An entry of a walk.
struct Entry {
    /// Its name from the walk's start, with a leading `/` (lossy UTF-8:
    /// what the digest hashes).
    rel: String,
    /// The same name as it is (what is opened).
    raw: PathBuf,
    stat: EntryStat,
    /// Its file digest or symlink target.
    content: Option<String>,
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
        let first = cache.tree_digest(&ctx, &|_| false, &|m, _| m);
        cache.save(|p, b| fs::write(p, b));
        assert!(cache_file.is_file());

        // A new mtime, same content: same digest.
        let f = fs::File::options()
            .write(true)
            .open(ctx.join("sub/a"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let cache = StatCache::load(&ctx, cache_file.clone());
        assert_eq!(cache.tree_digest(&ctx, &|_| false, &|m, _| m), first);

        // A remembered digest is used while the stat is unchanged: a
        // forged entry shows it (nothing re-reads the file).
        let mut entries = decode(&fs::read(&cache_file).unwrap()).unwrap();
        let stat = EntryStat::from(&fs::symlink_metadata(ctx.join("sub/a")).unwrap());
        entries.files.insert("sub/a".into(), (stat, [7; 32]));
        fs::write(&cache_file, encode(&entries)).unwrap();
        let cache = StatCache::load(&ctx, cache_file.clone());
        assert_ne!(cache.tree_digest(&ctx, &|_| false, &|m, _| m), first);

        // Changed content changes the stat, so the file is read again.
        fs::write(ctx.join("sub/a"), "two").unwrap();
        let changed = cache.tree_digest(&ctx, &|_| false, &|m, _| m);
        assert_ne!(changed, first);
        fs::write(ctx.join("sub/a"), "one").unwrap();
        assert_eq!(cache.tree_digest(&ctx, &|_| false, &|m, _| m), first);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_walk_lists_in_name_order_on_two_threads_and_follows_no_symlink() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile_dir().join("walk");
        let _ = fs::remove_dir_all(&dir);
        for d in ["a/x/y", "a.d", "b", "c/skip/deep", "e"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        for f in [
            "a/x/y/f",
            "a/1",
            "a.d/g",
            "b/h",
            "c/skip/deep/no",
            "c/k",
            "top",
        ] {
            fs::write(dir.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("/etc", dir.join("e/link")).unwrap();
        std::os::unix::fs::symlink("../b", dir.join("a/up")).unwrap();
        let listing = StatCache::none().tree_listing(&dir, &|r| r == "c/skip", &|m, _| m);
        let names: Vec<&str> = listing.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "", "a", "a/1", "a/up", "a/x", "a/x/y", "a/x/y/f", "a.d", "a.d/g", "b", "b/h", "c",
                "c/k", "e", "e/link", "top"
            ]
        );
        let of = |n: &str| &listing.iter().find(|(name, _)| name == n).unwrap().1;
        assert_eq!(of("e/link"), "120777 /etc");
        assert_eq!(of("a/up"), "120777 ../b");
        let sha = |c: &str| format!("{:x}", Sha256::digest(c));
        // A directory whose name is not UTF-8 is walked too.
        let odd = std::ffi::OsStr::from_bytes(b"n\xff");
        fs::create_dir(dir.join(odd)).unwrap();
        fs::write(dir.join(odd).join("in"), "in").unwrap();
        let listing = StatCache::none().tree_listing(&dir, &|r| r == "c/skip", &|m, _| m);
        assert!(
            listing.iter().any(|(n, _)| n == "n\u{fffd}/in"),
            "{listing:?}"
        );
        let mode = EntryStat::from(&fs::metadata(dir.join("a/x/y/f")).unwrap()).mode;
        assert_eq!(*of("a/x/y/f"), format!("{mode:o} {}", sha("a/x/y/f")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_cache_file_round_trips_and_anything_else_is_empty() {
        let mut entries = Entries::default();
        let stat = EntryStat {
            size: 5,
            mtime: (-1, 999_999_999),
            ctime: (1_700_000_000, 0),
            ino: u64::MAX,
            mode: 0o100644,
        };
        entries.files.insert("d/é".into(), (stat, [9; 32]));
        entries.files.insert(String::new(), (stat, [0; 32]));
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes).unwrap().files, entries.files);
        // Torn at every length but the whole: never a panic, and never a
        // partial entry taken for a whole one.
        for cut in 0..bytes.len() {
            if let Some(e) = decode(&bytes[..cut]) {
                assert!(e.files.len() < 2, "{cut}");
                assert!(e.files.iter().all(|(k, v)| entries.files.get(k) == Some(v)));
            }
        }
        assert!(decode(br#"{"files":{}}"#).is_none());
        assert_eq!(to_hex(&[0xab; 32]), "ab".repeat(32));
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
