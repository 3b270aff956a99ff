//! `docker diff`: what a container changed in its filesystem, read from
//! its overlay upper directory as docker's overlay driver reads it.

use super::{Container, ContainerError};
use crate::sandbox::fs::{Dir, Root};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What happened to a path (docker's `Kind`: 0, 1, 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Changed (`C`).
    Modified = 0,
    /// Added (`A`).
    Added = 1,
    /// Deleted (`D`).
    Deleted = 2,
}

impl Kind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            Kind::Modified => 'C',
            Kind::Added => 'A',
            Kind::Deleted => 'D',
        }
    }
}

/// One change: an absolute path in the container and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `/etc/passwd`.
    pub path: String,
    /// What happened.
    pub kind: Kind,
}

/// The container's changes, in docker's order (a walk of the upper
/// directory by name, each changed path's parent before it). The upper
/// directory is walked through descriptors and the image's layers are
/// asked inside their roots, so nothing a running container does to its
/// files leads a read outside them.
pub fn changes(c: &Container) -> Result<Vec<Change>, ContainerError> {
    let spec = &c.record.spec;
    let read = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| ContainerError::Io {
            action: "reading",
            path: p,
            source: e,
        }
    };
    let upper = Dir::open(&spec.upper).map_err(read(&spec.upper))?;
    let layers: Vec<Root> = spec
        .lower
        .iter()
        .map(|l| Root::open(l).map_err(read(l)))
        .collect::<Result<_, _>>()?;
    // The mount points kiln makes in the upper directory (docker keeps
    // its own in an init layer below the container's): not changes.
    let mut mounts: HashSet<String> = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
        .into_iter()
        .chain([
            "/proc",
            "/sys",
            "/dev",
            "/dev/shm",
            "/dev/pts",
            "/dev/mqueue",
        ])
        .map(String::from)
        .collect();
    mounts.extend(spec.binds.iter().map(|b| clean(&b.target)));
    mounts.extend(spec.tmpfs.iter().map(|t| clean(&t.target)));
    let mut walk = Walk {
        layers,
        mounts,
        out: Vec::new(),
        changed_dirs: HashSet::new(),
    };
    walk.walk(&upper).map_err(read(&spec.upper))?;
    Ok(walk.out)
}

/// `/a//b/` as `/a/b`.
fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

struct Walk {
    layers: Vec<Root>,
    mounts: HashSet<String>,
    out: Vec<Change>,
    changed_dirs: HashSet<String>,
}

impl Walk {
    /// Walks the upper directory `top` in docker's order (by name, a
    /// directory before what it holds), without recursion: a container's
    /// deep tree costs memory, never the stack. Each directory is opened
    /// from `top` beneath it and through no symlink.
    fn walk(&mut self, top: &Dir) -> std::io::Result<()> {
        // (the directory's path in the container, its names still to see)
        let mut stack: Vec<(String, std::vec::IntoIter<std::ffi::OsString>)> =
            vec![(String::new(), top.names()?.into_iter())];
        while let Some((prefix, names)) = stack.last_mut() {
            let Some(name) = names.next() else {
                stack.pop();
                continue;
            };
            let prefix = prefix.clone();
            let dir = match prefix.is_empty() {
                true => top.open_beneath(Path::new("."))?,
                false => top.open_beneath(Path::new(prefix.trim_start_matches('/')))?,
            };
            let path = format!("{prefix}/{}", String::from_utf8_lossy(name.as_bytes()));
            let stat = match dir.lstat(&name) {
                Ok(s) => s,
                // Gone since its directory was listed (it still runs).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let kind = if dir.is_whiteout(&name)? {
                Some(Kind::Deleted)
            } else if stat.is_dir() && opaque(&dir, &name)? {
                // docker's overlay diff: a directory made anew over one
                // the image had is a deletion of the old.
                Some(Kind::Deleted)
            } else {
                self.in_image(&path, &stat)
            };
            if kind == Some(Kind::Added) && self.mounts.contains(&path) {
                continue;
            }
            if stat.is_dir() && kind.is_some() {
                self.changed_dirs.insert(path.clone());
            }
            // An addition or deletion changes its directory, listed once,
            // before it (even when the directory's own stat is the same).
            if let Some(Kind::Added | Kind::Deleted) = kind
                && let Some((parent, _)) = path.rsplit_once('/')
                && !parent.is_empty()
                && self.changed_dirs.insert(parent.to_string())
            {
                self.out.push(Change {
                    path: parent.to_string(),
                    kind: Kind::Modified,
                });
            }
            if let Some(kind) = kind {
                self.out.push(Change {
                    path: path.clone(),
                    kind,
                });
            }
            if stat.is_dir() && kind != Some(Kind::Deleted) {
                let names = dir.open_beneath(Path::new(&name))?.names()?;
                stack.push((path, names.into_iter()));
            }
        }
        Ok(())
    }

    /// Added, modified, or (a directory the same as the image's) no change.
    fn in_image(&self, path: &str, stat: &crate::sandbox::fs::EntryStat) -> Option<Kind> {
        for layer in &self.layers {
            let Ok(old) = layer.lstat(path) else {
                continue;
            };
            // A directory copied up only because something in it changed
            // (its mtime moved with it) is not itself a change; what
            // changed in it lists it before itself.
            let same_dir = stat.is_dir() && old.is_dir() && old.mode() == stat.mode;
            return (!same_dir).then_some(Kind::Modified);
        }
        Some(Kind::Added)
    }
}

fn opaque(dir: &Dir, name: &OsStr) -> std::io::Result<bool> {
    Ok(dir.xattrs(name)?.iter().any(|(k, v)| {
        (k == "trusted.overlay.opaque" || k == "user.overlay.opaque") && v.as_slice() == b"y"
    }))
}
