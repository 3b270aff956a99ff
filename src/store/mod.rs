//! The image store: the only module that knows the on-disk layout.
//!
//! `$KILN_ROOT` is itself an OCI image layout, so other tools read it as is:
//!
//! ```text
//! oci-layout, index.json   tagged images (org.opencontainers.image.ref.name)
//! blobs/sha256/<hex>       layers, configs, manifests; verified on write and read
//! snapshots/<diffid-hex>/  unpacked layers (the overlay lowerdirs of builds)
//! cache/                   step cache records and compressed-layer mappings
//! tmp/                     in-flight writes; emptied when the store opens
//! lock                     flock: exclusive for index and cache updates
//! ```
//!
//! Blobs are never half-written: data goes to a temp file in `tmp/`, hashed
//! as it is written, fsynced, checked against the expected digest and only
//! then renamed into `blobs/` (and the directory fsynced). `index.json` is
//! replaced the same way, under the exclusive lock.

mod digest;
mod fsck;
pub mod gc;
pub mod layout;
pub mod steps;

pub use digest::Digest;
pub use fsck::{Problem, fsck};
pub use steps::{StepKey, StepRecord};

use crate::sandbox::fs::{Loose, private_dir};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// The annotation OCI layouts use to name a tagged manifest.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What kiln was doing ("creating", "renaming", ...).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Content did not hash to the digest it was stored or announced under.
    #[error("digest mismatch for {path}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob or stream.
        path: PathBuf,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// A blob the store should hold is missing.
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    /// A JSON document in the store could not be read.
    #[error("reading {what} {path}: {source}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A rootless store was written with other ids mapped than now.
    #[error(
        "{store} was written with {made} mapped, and kiln now maps {now}: its layers would keep the wrong owners; {hint}"
    )]
    Ids {
        /// The store's root.
        store: PathBuf,
        /// The map it was written with.
        made: &'static str,
        /// The map now.
        now: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// A name meant as one entry of a store directory is not one plain
    /// path component.
    #[error("{0:?} is not a plain name in the store")]
    BadName(String),
    /// The directory is not a kiln store and not empty.
    #[error("{0} is not an OCI image layout (no oci-layout file) and is not empty")]
    NotAStore(PathBuf),
}

/// Shorthand for results of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// A shared lock on `tmp.lock` held while the store is open: another
    /// kiln that opens the store sees it in use and leaves `tmp/` alone.
    _in_use: Option<File>,
}

/// A held store lock; released on drop.
#[must_use]
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The store's directories, each only for the store's owner even when the
/// root is opened to search (0711): a second fence around what holds
/// content, secrets and sockets.
const PRIVATE_DIRS: [&str; 9] = [
    "blobs",
    "snapshots",
    "cache",
    "tmp",
    "containers",
    "volumes",
    "networks",
    "logs",
    "serve",
];

/// Writes `bytes` to `path` as a file only its owner reads (0600 from
/// its creation, whatever the umask): containers' configs and states.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The `oci-layout` file's content.
const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A rootless store's `ids` file: which ids its files were written with.
/// Unpacked layers keep other owners only with subordinate ids, so a store
/// is not carried from one map to the other.
fn check_ids(root: &Path) -> Result<()> {
    use crate::sandbox::userns;
    const CALLER: &str = "only the caller's id";
    const SUBORDINATE: &str = "the caller's subordinate ids";
    let now = match (crate::sandbox::fs::is_root(), userns::joined()) {
        (_, true) => SUBORDINATE,
        (true, false) => return Ok(()),
        (false, false) => CALLER,
    };
    let made = match Store::recorded_ids(root) {
        userns::Recorded::Subordinate => SUBORDINATE,
        userns::Recorded::Caller => CALLER,
        userns::Recorded::Nothing => now,
    };
    // Recorded once, by the first kiln that wrote with this map (a store
    // from before the file had one id: recorded_ids says so).
    let file = root.join("ids");
    if made == now && !file.exists() {
        let text = match now == SUBORDINATE {
            true => "subordinate\n",
            false => "caller\n",
        };
        fs::write(&file, text).map_err(io_err("writing", &file))?;
    }
    if made == now {
        return Ok(());
    }
    Err(StoreError::Ids {
        store: root.to_path_buf(),
        made,
        now,
        hint: match (
            now == SUBORDINATE,
            std::env::var("KILN_USERNS").as_deref() == Ok("single"),
        ) {
            (true, _) => {
                "use a new --root (the old store's files are yours to remove), or KILN_USERNS=single to keep this one"
            }
            (false, true) => {
                "unset KILN_USERNS (=single keeps the one-id map), or use a new --root"
            }
            (false, false) => {
                "give the user its /etc/subuid and /etc/subgid ranges back (`kiln doctor`), or use a new --root"
            }
        },
    })
}

impl Store {
    /// The default root: `$KILN_ROOT`, else `/var/lib/kiln` for root, else
    /// `$XDG_DATA_HOME/kiln` (or `~/.local/share/kiln`).
    pub fn default_root(is_root: bool) -> PathBuf {
        if let Some(root) = std::env::var_os("KILN_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(root);
        }
        if is_root {
            return PathBuf::from("/var/lib/kiln");
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        data.join("kiln")
    }

    /// Makes `root` (or checks it) only for its owner. The store holds
    /// images' set-uid files, containers' roots and their configs
    /// (environment secrets among them): only its owner may reach them
    /// (docker's answer to CVE-2021-41091). An older store's 0755 is
    /// repaired here, each time it is opened; a directory that is not a
    /// store keeps its modes.
    pub fn secure_root(root: &Path) -> Result<()> {
        if !root.join("oci-layout").exists()
            && let Ok(mut entries) = fs::read_dir(root)
            && entries.next().is_some()
        {
            return Err(StoreError::NotAStore(root.to_path_buf()));
        }
        private_dir(root, Loose::Repair).map_err(io_err("securing", root))
    }

    /// Which ids the store at `root` says its files were written with
    /// (its `ids` file; a used store without one is from before it, when
    /// rootless kiln mapped one id).
    pub fn recorded_ids(root: &Path) -> crate::sandbox::userns::Recorded {
        use crate::sandbox::userns::Recorded;
        match fs::read_to_string(root.join("ids")) {
            Ok(text) if text.trim() == "subordinate" => Recorded::Subordinate,
            Ok(_) => Recorded::Caller,
            Err(_)
                if fs::read_dir(root.join("snapshots")).is_ok_and(|mut d| d.next().is_some()) =>
            {
                Recorded::Caller
            }
            Err(_) => Recorded::Nothing,
        }
    }

    /// The init pids of the containers of the store at `root` that still
    /// run.
    pub fn running_inits(root: &Path) -> Vec<u32> {
        fs::read_dir(layout::containers(root))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| crate::container::state::read(&e.path()).init)
            .filter(|init| init.alive())
            .map(|init| init.pid)
            .collect()
    }

    /// [`Store::secure_root`], and the `oci-layout` file written when
    /// missing: what a rootless kiln keeps in the store before opening it
    /// (its user namespace's holder) makes it a store, not a stranger's
    /// directory.
    pub fn prepare_root(root: &Path) -> Result<()> {
        Store::secure_root(root)?;
        let layout = root.join("oci-layout");
        if layout.exists() {
            return Ok(());
        }
        let tmp = root.join(format!(".oci-layout.{}", std::process::id()));
        fs::write(&tmp, LAYOUT).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &layout).map_err(io_err("renaming into place", &layout))
    }

    /// Opens (creating if needed) the store at `root`, and removes what
    /// interrupted writes left in `tmp/` when no other kiln holds the store.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        Store::secure_root(&root)?;
        let layout = root.join("oci-layout");
        check_ids(&root)?;
        for dir in PRIVATE_DIRS {
            let path = root.join(dir);
            private_dir(&path, Loose::Repair).map_err(io_err("securing", &path))?;
        }
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
        let mut store = Store {
            root,
            _in_use: None,
        };
        {
            let _lock = store.lock()?;
            if !layout.exists() {
                store.write_atomic(&layout, LAYOUT)?;
            }
            let index = store.root.join("index.json");
            if !index.exists() {
                store.write_index(&empty_index())?;
            }
        }
        store._in_use = Some(store.clean_tmp()?);
        store.reclaim_containers();
        Ok(store)
    }

    /// Removes the containers of kilns that died while running them (their
    /// lock is there and nobody holds it): their processes and cgroups,
    /// then their directories. Best effort: a leftover costs only space.
    fn reclaim_containers(&self) {
        let dir = layout::containers(&self.root);
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            // A removed --rm container's exit code, left for whoever waited
            // for its removal: nobody waits ten minutes.
            if path.extension().is_some_and(|e| e == "exit") {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(600));
                if old {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            if crate::sandbox::ContainerLock::held(&path) != Some(false) {
                continue;
            }
            // A container with a record outlives its kiln (`ps` shows how
            // it ended, `rm` removes it), unless it was run with --rm.
            if path.join("config.json").exists() && !path.join("auto-remove").exists() {
                continue;
            }
            let id = entry.file_name().to_string_lossy().into_owned();
            crate::sandbox::reclaim(&id);
            let _ = crate::sandbox::fs::remove_dir_all(&path);
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Where the snapshot of a layer with this diffID lives.
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(diff_id.hex())
    }

    /// The directory of a container: its overlay upper and work dirs, its
    /// mount point and generated /etc files.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        layout::containers(&self.root).join(id)
    }

    /// Takes the exclusive store lock (index and cache updates).
    pub fn lock(&self) -> Result<Lock> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        file.lock().map_err(io_err("locking", &path))?;
        Ok(Lock(file))
    }

    /// Removes leftovers of interrupted writes, only when no other kiln
    /// has the store open (so a running kiln's temp files survive); returns
    /// the in-use lock to hold.
    fn clean_tmp(&self) -> Result<File> {
        let guard = self.root.join("tmp.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&guard)
            .map_err(io_err("opening", &guard))?;
        if file.try_lock().is_ok() {
            let tmp = self.root.join("tmp");
            for entry in fs::read_dir(&tmp).map_err(io_err("reading", &tmp))? {
                let path = entry.map_err(io_err("reading", &tmp))?.path();
                let removed = if path.is_dir() {
                    crate::sandbox::fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.map_err(io_err("removing", &path))?;
            }
            let _ = file.unlock();
        }
        file.lock_shared().map_err(io_err("locking", &guard))?;
        Ok(file)
    }

    /// Runs `f` with this process as the only kiln using the store (no other
    /// process holds it open), or returns None when another one does.
    /// Garbage collection needs this: another kiln may have written blobs
    /// that it has not tagged yet.
    pub fn exclusive<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let Some(file) = self._in_use.as_ref() else {
            return Ok(None);
        };
        let path = self.root.join("tmp.lock");
        if file.try_lock().is_err() {
            return Ok(None);
        }
        let out = f();
        // Back to shared: flock converts the lock in place.
        file.lock_shared()
            .map_err(io_err("locking", &path))
            .map_err(E::from)?;
        out.map(Some)
    }

    /// A fresh path under `tmp/` (nothing is created there).
    pub fn temp_path(&self, hint: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{hint}-{}-{n}", std::process::id()))
    }

    /// Starts writing a blob; call [`BlobWriter::commit`] to keep it.
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let path = self.temp_path("blob");
        let file = File::create(&path).map_err(io_err("creating", &path))?;
        Ok(BlobWriter {
            store: self,
            file: Some(file),
            path,
            hasher: Some(Sha256::new()),
            size: 0,
            flushing: 0,
        })
    }

    /// A blob writer for a writer that hashes the very bytes it writes
    /// itself (a layer's generator computes the diffID, which is the
    /// digest of an uncompressed blob): hashing them twice doubled a
    /// commit's CPU time on machines without SHA instructions.
    /// `commit` must then be given that digest.
    pub fn blob_writer_prehashed(&self) -> Result<BlobWriter<'_>> {
        let mut w = self.blob_writer()?;
        w.hasher = None;
        Ok(w)
    }

    /// Stores `bytes` as a blob and returns its digest and size.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(io_err("writing", &w.path.clone()))?;
        w.commit(None)
    }

    /// True when the blob is present (not verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading; the reader fails at the end if the content
    /// does not match the digest.
    pub fn open_blob(&self, digest: &Digest) -> Result<VerifiedReader<File>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(digest.clone())
            } else {
                StoreError::Io {
                    action: "opening",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        Ok(VerifiedReader::new(file, digest.clone(), path))
    }

    /// Reads a whole (small) blob, verified.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut reader = self.open_blob(digest)?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map_err(|e| reader.error(e))?;
        Ok(out)
    }

    /// Reads a blob as JSON, verified.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Digest,
        what: &'static str,
    ) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what,
            path: self.blob_path(digest),
            source,
        })
    }

    /// The current index (read without the lock: it is replaced atomically).
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: "index",
            path,
            source,
        })
    }

    /// Changes the index under the exclusive lock: `f` edits the manifest
    /// list, and the new index replaces the old one atomically.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> T) -> Result<T> {
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests);
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(out)
    }

    /// Gives `other` (a new store) every blob of this one, as hard links
    /// (copies across filesystems), and this index: the same images, none
    /// of the snapshots (unpacked there when needed) or the cache.
    pub fn share_images_with(&self, other: &Store) -> Result<()> {
        let blobs = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_err("reading", &blobs))? {
            let name = entry.map_err(io_err("reading", &blobs))?.file_name();
            let (from, to) = (
                blobs.join(&name),
                other.root.join("blobs/sha256").join(&name),
            );
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(io_err("copying", &from))?;
            }
        }
        let manifests = self.index()?.manifests().clone();
        other.update_index(|m| *m = manifests)
    }

    /// Points `name` (a full `repo:tag`) at a manifest, replacing any
    /// previous image of that name.
    pub fn tag(&self, name: &str, manifest: Descriptor) -> Result<()> {
        self.update_index(|list| {
            // The name moves here; the image loses its untagged entry.
            list.retain(|d| {
                ref_name(d) != Some(name)
                    && !(ref_name(d).is_none() && d.digest() == manifest.digest())
            });
            let mut d = manifest;
            let mut annotations = HashMap::new();
            annotations.insert(REF_NAME.to_string(), name.to_string());
            d.set_annotations(Some(annotations));
            list.push(d);
            list.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        })
    }

    /// Removes the name; returns the manifest it pointed at.
    pub fn untag(&self, name: &str) -> Result<Option<Descriptor>> {
        let (removed, last) = self.update_index(|list| {
            let pos = list.iter().position(|d| ref_name(d) == Some(name));
            let removed = pos.map(|p| list.remove(p));
            let last = removed
                .as_ref()
                .is_some_and(|r| !list.iter().any(|d| d.digest() == r.digest()));
            (removed, last)
        })?;
        if let Some(d) = &removed {
            let id = self.image_id(d);
            self.image_event("untag", &id, name);
            // Its last name gone, the image is, for docker's clients.
            if last {
                self.image_event("delete", &id, name);
            }
        }
        Ok(removed)
    }

    /// The image id (its config's digest) of an index entry, as events
    /// name images: that of the image [`crate::image::Image::load`]
    /// chooses (an index's image for this machine); the entry's own digest
    /// when it cannot be read.
    pub fn image_id(&self, entry: &Descriptor) -> String {
        let digest = entry.digest().to_string();
        digest
            .parse::<Digest>()
            .ok()
            .and_then(|d| crate::image::Image::load(self, &d).ok())
            .map_or(digest, |image| image.id.to_string())
    }

    /// Records an image event in the store's journal.
    pub fn image_event(&self, action: &str, id: &str, name: &str) {
        crate::events::record(
            self.root(),
            crate::events::Kind::Image,
            action,
            id,
            [("name".to_string(), name.to_string())],
        );
    }

    /// Keeps an image that has no name (`commit` or `build` without one,
    /// docker's `<none>:<none>`): an index entry without a ref name, until
    /// a name is given to it, or `image prune` or `rmi` removes it. An
    /// image the index already holds is left as it is.
    pub fn keep_untagged(&self, manifest: Descriptor) -> Result<()> {
        self.update_index(|list| {
            if !list.iter().any(|d| d.digest() == manifest.digest()) {
                let mut d = manifest;
                d.set_annotations(None);
                list.push(d);
            }
        })
    }

    /// Every image the index keeps: its name, or None for one without
    /// (a manifest with names is listed once per name).
    pub fn images(&self) -> Result<Vec<(Option<String>, Descriptor)>> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .map(|d| (ref_name(d).map(str::to_string), d.clone()))
            .collect())
    }

    /// Removes the entries of manifest `digest` that have no name.
    pub fn forget_untagged(&self, digest: &str) -> Result<bool> {
        self.update_index(|list| {
            let before = list.len();
            list.retain(|d| ref_name(d).is_some() || d.digest().to_string() != digest);
            list.len() != before
        })
    }

    /// Every tagged manifest: (name, descriptor).
    pub fn tags(&self) -> Result<Vec<(String, Descriptor)>> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(|n| (n.to_string(), d.clone())))
            .collect())
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let path = self.root.join("index.json");
        let bytes = serde_json::to_vec(index).map_err(|source| StoreError::Json {
            what: "index",
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &bytes)
    }

    /// Moves `dir`, a complete unpacked layer, into place as the snapshot
    /// of `diff_id`. A snapshot already there is success (another writer
    /// finished the same layer first, even between the check and the
    /// rename): snapshots are content-addressed, so both are the same.
    pub fn put_snapshot(&self, dir: &Path, diff_id: &Digest) -> Result<()> {
        let dest = self.snapshot_path(diff_id);
        if dest.is_dir() {
            let _ = crate::sandbox::fs::remove_dir_all(dir);
            return Ok(());
        }
        match fs::rename(dir, &dest) {
            Ok(()) => sync_dir(dest.parent().unwrap_or(&self.root)),
            Err(_) if dest.is_dir() => {
                let _ = crate::sandbox::fs::remove_dir_all(dir);
                Ok(())
            }
            Err(e) => Err(io_err("renaming into place", &dest)(e)),
        }
    }

    /// Writes a small file by temp file + fsync + rename + directory fsync.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.temp_path("file");
        let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(bytes).map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("renaming into place", path))?;
        sync_dir(path.parent().unwrap_or(&self.root))
    }
}

/// The `org.opencontainers.image.ref.name` of an index entry.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

fn empty_index() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(Vec::new());
    index
}

/// fsync a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

/// A blob being written: hashed as it is written, kept only by `commit`.
pub struct BlobWriter<'s> {
    store: &'s Store,
    file: Option<File>,
    path: PathBuf,
    /// None for a prehashed writer (`Store::blob_writer_prehashed`).
    hasher: Option<Sha256>,
    size: u64,
    /// Bytes whose writeback has been started (`start_writeback`).
    flushing: u64,
}

/// A blob writer starts the writeback of each this many new bytes.
const WRITEBACK_STEP: u64 = 8 << 20;

impl BlobWriter<'_> {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the digest (when one is expected), syncs and renames the blob
    /// into place. A blob that is already present is not written again.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let file = self.file.take().expect("commit is called once");
        let actual = match (self.hasher.take(), expected) {
            (Some(hasher), _) => Digest::sha256(hasher.finalize().as_slice()),
            (None, Some(known)) => known.clone(),
            (None, None) => {
                let _ = fs::remove_file(&self.path);
                return Err(StoreError::Io {
                    action: "committing (a prehashed blob needs its digest)",
                    path: self.path.clone(),
                    source: io::Error::other("no digest given"),
                });
            }
        };
        if let Some(expected) = expected
            && expected != &actual
        {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::DigestMismatch {
                path: self.path.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        let dest = self.store.blob_path(&actual);
        if dest.is_file() {
            drop(file);
            let _ = fs::remove_file(&self.path);
            return Ok((actual, self.size));
        }
        file.sync_all().map_err(io_err("syncing", &self.path))?;
        drop(file);
        fs::rename(&self.path, &dest).map_err(io_err("renaming into place", &dest))?;
        sync_dir(dest.parent().unwrap_or(self.store.root()))?;
        Ok((actual, self.size))
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob already committed"))?;
        let n = file.write(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.size += n as u64;
        if self.size - self.flushing >= WRITEBACK_STEP {
            // Only a head start for `commit`'s fsync, which still waits
            // for every page: a failure here changes nothing.
            let _ =
                crate::sandbox::fs::start_writeback(file, self.flushing, self.size - self.flushing);
            self.flushing = self.size;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A reader that hashes what it reads and fails with `InvalidData` at the
/// end of the stream when the content is not what its digest says.
pub struct VerifiedReader<R> {
    inner: R,
    hasher: Sha256,
    expected: Digest,
    path: PathBuf,
    done: bool,
}

impl<R: Read> VerifiedReader<R> {
    /// Wraps `inner`, which should hash to `expected`; `path` names it in errors.
    pub fn new(inner: R, expected: Digest, path: PathBuf) -> Self {
        VerifiedReader {
            inner,
            hasher: Sha256::new(),
            expected,
            path,
            done: false,
        }
    }

    /// Turns an error from reading into a store error.
    pub fn error(&self, e: io::Error) -> StoreError {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Mismatch>())
        {
            Some(m) => StoreError::DigestMismatch {
                path: self.path.clone(),
                expected: self.expected.clone(),
                actual: m.0.clone(),
            },
            None => StoreError::Io {
                action: "reading",
                path: self.path.clone(),
                source: e,
            },
        }
    }
}

#[derive(Debug)]
struct Mismatch(Digest);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "content hashes to {}", self.0)
    }
}

impl std::error::Error for Mismatch {}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            let actual = Digest::sha256(std::mem::take(&mut self.hasher).finalize().as_slice());
            if actual != self.expected {
                return Err(io::Error::new(io::ErrorKind::InvalidData, Mismatch(actual)));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_content_addressed_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root")).unwrap();
        let (digest, size) = store.put_bytes(b"hello").unwrap();
        assert_eq!(
            digest.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(size, 5);
        assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
        // The same content again is not rewritten and leaves no temp file.
        store.put_bytes(b"hello").unwrap();
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
        // Corruption on disk is caught on read.
        fs::write(store.blob_path(&digest), b"jello").unwrap();
        let err = store.read_blob(&digest).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn expected_digest_is_checked_before_rename() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"payload").unwrap();
        let wrong = Digest::sha256(&[0; 32]);
        assert!(matches!(
            w.commit(Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.has_blob(&wrong));
        assert_eq!(
            fs::read_dir(store.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    /// Two writers finishing the same snapshot: the second one's copy is
    /// discarded and both succeed, from many threads at once (the race a
    /// two-stage build of empty RUN steps met one time in eight).
    #[test]
    fn the_same_snapshot_put_twice_is_success() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let diff_id = Digest::sha256(&[7; 32]);
        std::thread::scope(|scope| {
            for i in 0..8 {
                let store = &store;
                let diff_id = &diff_id;
                scope.spawn(move || {
                    let tmp = store.temp_path("snapshot");
                    fs::create_dir_all(tmp.join("etc")).unwrap();
                    fs::write(tmp.join("etc/f"), format!("{i}")).unwrap();
                    store.put_snapshot(&tmp, diff_id).unwrap();
                    assert!(!tmp.exists());
                });
            }
        });
        assert!(store.snapshot_path(&diff_id).join("etc/f").is_file());
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn tags_replace_and_untag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (d1, s1) = store.put_bytes(b"{}").unwrap();
        let (d2, s2) = store.put_bytes(b"{ }").unwrap();
        store
            .tag(
                "a:1",
                Descriptor::new(MediaType::ImageManifest, s1, d1.to_oci()),
            )
            .unwrap();
        store
            .tag(
                "a:1",
                Descriptor::new(MediaType::ImageManifest, s2, d2.to_oci()),
            )
            .unwrap();
        store
            .tag(
                "b:2",
                Descriptor::new(MediaType::ImageManifest, s1, d1.to_oci()),
            )
            .unwrap();
        let tags = store.tags().unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].1.digest().to_string(), d2.to_string());
        assert!(store.untag("a:1").unwrap().is_some());
        assert!(store.untag("a:1").unwrap().is_none());
        let layout = fs::read_to_string(store.root().join("oci-layout")).unwrap();
        assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
    }

    #[test]
    fn refuses_a_foreign_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::NotAStore(_))
        ));
    }
}
