//! Layer tar → directory, refusing every way out of the directory.
//!
//! Paths are resolved here in userspace, component by component with
//! `lstat`, instead of with `openat2(RESOLVE_BENEATH)`: the directory being
//! written is private to this process (a fresh directory under the store's
//! `tmp/`, renamed into place only when complete), so no other process can
//! swap a component between the check and the use.

use super::{HashingReader, OPAQUE_WHITEOUT, WHITEOUT_PREFIX, decompress};
use crate::sandbox::fs::{Special, is_root, make_special, make_whiteout, remove_dir_all};
use crate::store::{Digest, Store};
use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use tar::EntryType;
use thiserror::Error;

/// How many symlinks one path may go through (Linux's limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// What to do with whiteouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The directory is one layer's snapshot, an overlay lowerdir: whiteouts
    /// become overlay whiteouts (char 0:0) and opaque markers.
    Overlay,
    /// The layer goes on top of what the directory holds: whiteouts delete.
    Flatten,
}

/// Why a layer could not be applied.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// An entry tries to leave the directory.
    #[error("layer entry {name:?} refused: {reason}")]
    Escape {
        /// The entry's name in the tar.
        name: String,
        /// How it would escape.
        reason: String,
    },
    /// The tar stream itself is broken.
    #[error("reading layer tar: {0}")]
    Tar(#[source] io::Error),
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An owner the user namespace does not map (rootless: the user's
    /// subordinate ranges are smaller than the image needs).
    #[error(
        "{path}: owner {uid}:{gid} is beyond the ids kiln's user namespace maps (the caller's /etc/subuid and /etc/subgid ranges, and 0): give the user a range of 65536 ids or more that no other user has (usermod --add-subuids FIRST-LAST --add-subgids FIRST-LAST USER, as root)"
    )]
    Unmapped {
        /// The file.
        path: PathBuf,
        /// Its uid in the layer.
        uid: u32,
        /// Its gid in the layer.
        gid: u32,
    },
    /// The layer's content is not what its diffID says.
    #[error("layer content hashes to {actual}, expected diffID {expected}")]
    DiffIdMismatch {
        /// The diffID the image config names.
        expected: Digest,
        /// What the tar hashes to.
        actual: Digest,
    },
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ApplyError + 'p {
    move |source| ApplyError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Applies a layer (plain, gzip or zstd) to `dest`; returns its diffID (the
/// sha256 of the uncompressed tar) and the uncompressed size.
pub fn apply<R: Read>(reader: R, dest: &Path, mode: Mode) -> Result<(Digest, u64), ApplyError> {
    let (_, plain) = decompress(reader).map_err(ApplyError::Tar)?;
    let mut archive = tar::Archive::new(HashingReader::new(plain));
    let mut state = State {
        dest,
        mode,
        created: HashSet::new(),
        dir_times: Vec::new(),
        root: is_root(),
        owners: crate::sandbox::fs::sets_owners(),
        last_dir: None,
    };
    for entry in archive.entries().map_err(ApplyError::Tar)? {
        let mut entry = entry.map_err(ApplyError::Tar)?;
        state.entry(&mut entry)?;
    }
    // Directory times last: creating their children changed them.
    for (path, mtime) in state.dir_times.iter().rev() {
        let t = filetime::FileTime::from_unix_time(*mtime, 0);
        filetime::set_symlink_file_times(path, t, t).map_err(io_err("setting times on", path))?;
    }
    archive.into_inner().finish().map_err(ApplyError::Tar)
}

/// Unpacks a layer blob into a new snapshot in the store, atomically: the
/// snapshot appears complete or not at all. Returns the diffID.
pub fn unpack_snapshot<R: Read>(
    store: &Store,
    blob: R,
    expected: Option<&Digest>,
) -> Result<Digest, ApplyError> {
    let tmp = store.temp_path("snapshot");
    fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
    let result = apply(blob, &tmp, Mode::Overlay).and_then(|(diff_id, _)| match expected {
        Some(want) if want != &diff_id => Err(ApplyError::DiffIdMismatch {
            expected: want.clone(),
            actual: diff_id,
        }),
        _ => Ok(diff_id),
    });
    let diff_id = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = remove_dir_all(&tmp);
            return Err(e);
        }
    };
    store
        .put_snapshot(&tmp, &diff_id)
        .map_err(|e| ApplyError::Io {
            action: "renaming into place",
            path: store.snapshot_path(&diff_id),
            source: io::Error::other(e.to_string()),
        })?;
    Ok(diff_id)
}

struct State<'d> {
    dest: &'d Path,
    mode: Mode,
    /// Paths this layer created (an opaque marker keeps them).
    created: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, i64)>,
    /// The host's root: device nodes and trusted.* xattrs.
    root: bool,
    /// Owners can be set: root, or a rootless kiln in its store's user
    /// namespace with subordinate ids.
    owners: bool,
    /// The last directory entry written: its components and its path, a
    /// real directory (no symlink on the way). Tars list a directory's
    /// children right after it, so their parent is found without walking
    /// the path again (which made deep trees quadratic in their depth).
    /// Forgotten whenever anything is removed.
    last_dir: Option<(Vec<String>, PathBuf)>,
}

/// An entry name split into safe components; None for the root itself.
fn components(name: &str) -> Result<Option<Vec<String>>, String> {
    if name.starts_with('/') {
        return Err("absolute names are not allowed in a layer".into());
    }
    let mut out = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("'..' leads out of the layer".into()),
            p => out.push(p.to_string()),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

impl State<'_> {
    fn escape(name: &str, reason: impl Into<String>) -> ApplyError {
        ApplyError::Escape {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// Resolves `parents` inside `dest`: missing directories are created
    /// (when `create`), symlinks are followed only while they stay inside.
    fn resolve_dir(
        &mut self,
        name: &str,
        parents: &[String],
        create: bool,
    ) -> Result<PathBuf, ApplyError> {
        let mut todo: VecDeque<String> = parents.iter().cloned().collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            if part == ".." {
                if resolved.pop().is_none() {
                    return Err(Self::escape(
                        name,
                        "a symlink on its path leads out of the layer",
                    ));
                }
                continue;
            }
            if part.is_empty() || part == "." {
                continue;
            }
            let path = self.join(&resolved).join(&part);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => resolved.push(part),
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Self::escape(name, "too many symlinks on its path"));
                    }
                    let target = fs::read_link(&path).map_err(io_err("reading link", &path))?;
                    let target = target.to_string_lossy();
                    if target.starts_with('/') {
                        return Err(Self::escape(
                            name,
                            format!(
                                "it would be written through symlink {part:?} -> {target:?}, which points outside the layer"
                            ),
                        ));
                    }
                    for (i, t) in target.split('/').enumerate() {
                        todo.insert(i, t.to_string());
                    }
                }
                Ok(_) => {
                    return Err(Self::escape(
                        name,
                        format!("{part:?} on its path is not a directory"),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(io_err("creating", &path))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("chmod", &path))?;
                    resolved.push(part);
                }
                Err(e) => return Err(io_err("looking up", &path)(e)),
            }
        }
        Ok(self.join(&resolved))
    }

    fn join(&self, parts: &[String]) -> PathBuf {
        let mut p = self.dest.to_path_buf();
        p.extend(parts);
        p
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(parts) = components(&name).map_err(|reason| Self::escape(&name, reason))? else {
            return Ok(());
        };
        let (base, parents) = parts.split_last().expect("non-empty");
        let parent = match &self.last_dir {
            Some((known, path)) if known.as_slice() == parents => path.clone(),
            _ => self.resolve_dir(&name, parents, true)?,
        };

        if base == OPAQUE_WHITEOUT {
            return self.opaque(&parent);
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(".wh.") || hidden.is_empty() {
                return Ok(()); // other AUFS metadata: nothing to do
            }
            // A whiteout hides one entry of its directory: `.wh..` and
            // `.wh...` would name the directory itself or its parent.
            if hidden == "." || hidden == ".." {
                return Err(Self::escape(
                    &name,
                    format!("a whiteout must name an entry, not {hidden:?}"),
                ));
            }
            let target = parent.join(hidden);
            self.last_dir = None;
            remove_any(&target)?;
            if self.mode == Mode::Overlay {
                make_whiteout(&target).map_err(io_err("creating whiteout", &target))?;
            }
            return Ok(());
        }

        let path = parent.join(base);
        let kind = entry.header().entry_type();
        let header = entry.header().clone();
        let existing = fs::symlink_metadata(&path).ok();
        let keep_dir =
            kind == EntryType::Directory && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            self.last_dir = None;
            remove_any(&path)?;
        }
        match kind {
            EntryType::Directory => {
                if !keep_dir {
                    fs::create_dir(&path).map_err(io_err("creating", &path))?;
                }
                // A real directory at a path resolved inside: its children
                // come next.
                self.last_dir = Some((parts.clone(), path.clone()));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_err("creating", &path))?;
                io::copy(entry, &mut file).map_err(io_err("writing", &path))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::escape(&name, "symlink without a target"))?;
                symlink(std::ffi::OsStr::from_bytes(&target), &path)
                    .map_err(io_err("creating symlink", &path))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::escape(&name, "hardlink without a target"))?;
                let target_name = String::from_utf8_lossy(&target).into_owned();
                let Some(tparts) = components(&target_name)
                    .map_err(|r| Self::escape(&name, format!("hardlink target: {r}")))?
                else {
                    return Err(Self::escape(&name, "hardlink to the layer root"));
                };
                let (tbase, tparents) = tparts.split_last().expect("non-empty");
                let tdir = self.resolve_dir(&name, tparents, false)?;
                let tpath = tdir.join(tbase);
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if m.is_dir() => {
                        return Err(Self::escape(&name, "hardlink to a directory"));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(Self::escape(
                            &name,
                            format!("hardlink target {target_name:?} is not in the layer"),
                        ));
                    }
                }
                fs::hard_link(&tpath, &path).map_err(io_err("linking", &path))?;
                self.created.insert(path);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let special = match kind {
                    EntryType::Char => Special::Char,
                    EntryType::Block => Special::Block,
                    _ => Special::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let mode = header.mode().unwrap_or(0o644);
                match make_special(&path, special, mode, u64::from(major), u64::from(minor)) {
                    Ok(()) => {}
                    // Without CAP_MKNOD a device node cannot exist in a
                    // snapshot; rootless containers bind the host's devices.
                    Err(e)
                        if !self.root
                            && special != Special::Fifo
                            && e.kind() == io::ErrorKind::PermissionDenied =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(io_err("creating device", &path)(e)),
                }
            }
            // Global and per-entry PAX headers and GNU long names are consumed
            // by the tar reader; anything else has no filesystem form.
            _ => return Ok(()),
        }
        self.metadata(entry, &header, &path, kind)?;
        self.created.insert(path);
        Ok(())
    }

    fn metadata<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        h: &tar::Header,
        path: &Path,
        kind: EntryType,
    ) -> Result<(), ApplyError> {
        let uid = h
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(0);
        let gid = h
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0);
        // chown first: it clears setuid bits and security.capability.
        // Without root, owners other than ours cannot be set: the snapshot
        // keeps the caller's (rootless builds map them back in a user ns).
        match lchown(path, Some(uid), Some(gid)) {
            Ok(()) => {}
            // An id beyond the user namespace's map: the user's ranges are
            // too small for this image.
            Err(e) if self.owners && e.kind() == io::ErrorKind::InvalidInput => {
                return Err(ApplyError::Unmapped {
                    path: path.to_path_buf(),
                    uid,
                    gid,
                });
            }
            Err(e) if self.owners => return Err(io_err("chown", path)(e)),
            Err(_) if (uid, gid) != (0, 0) => crate::sandbox::userns::owners_lost(uid, gid),
            Err(_) => {}
        }
        if kind != EntryType::Symlink {
            let mode = h.mode().unwrap_or(0o644) & 0o7777;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", path))?;
        }
        if let Some(exts) = entry.pax_extensions().map_err(ApplyError::Tar)? {
            for ext in exts {
                let ext = ext.map_err(ApplyError::Tar)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(attr) = key.strip_prefix("SCHILY.xattr.")
                    && let Err(e) = xattr::set(path, attr, ext.value_bytes())
                    && self.root
                {
                    return Err(io_err("setting xattr on", path)(e));
                }
            }
        }
        let mtime = h
            .mtime()
            .ok()
            .and_then(|m| i64::try_from(m).ok())
            .unwrap_or(0);
        if kind == EntryType::Directory {
            self.dir_times.push((path.to_path_buf(), mtime));
        } else {
            let t = filetime::FileTime::from_unix_time(mtime, 0);
            filetime::set_symlink_file_times(path, t, t)
                .map_err(io_err("setting times on", path))?;
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &Path) -> Result<(), ApplyError> {
        self.last_dir = None;
        match self.mode {
            Mode::Overlay => {
                let name = if self.root {
                    "trusted.overlay.opaque"
                } else {
                    "user.overlay.opaque"
                };
                match xattr::set(dir, name, b"y") {
                    // Root without CAP_SYS_ADMIN (inside a CI job's
                    // container) cannot write trusted.*: overlayfs's
                    // userxattr form, which every reader of snapshots takes.
                    Err(e) if self.root && e.kind() == std::io::ErrorKind::PermissionDenied => {
                        xattr::set(dir, "user.overlay.opaque", b"y")
                    }
                    other => other,
                }
                .map_err(io_err("marking opaque", dir))
            }
            Mode::Flatten => {
                for child in fs::read_dir(dir).map_err(io_err("reading", dir))? {
                    let child = child.map_err(io_err("reading", dir))?.path();
                    if !self.created.contains(&child) {
                        remove_any(&child)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Removes a file, symlink or whole directory; a missing path is fine.
fn remove_any(path: &Path) -> Result<(), ApplyError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_dir_all(path).map_err(io_err("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(io_err("removing", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("looking up", path)(e)),
    }
}
