//! A container's root without overlayfs (`--isolation=chroot`): its layer
//! snapshots copied into one directory, bottom first, whiteouts applied;
//! after the process, what it changed found by walking (each entry's
//! inode and ctime against those recorded after the copy, as kaniko
//! compared its snapshots) and written into the upper directory in
//! overlayfs's own format, so that layers, commit and diff read it as they
//! read an overlay's. Every walk goes by descriptor-free `lstat`s under
//! directories kiln made and no container process runs in yet (the copy)
//! or any longer (the changes): nothing here follows a symlink.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the root held right after the copy: each entry's inode and ctime,
/// by its path relative to the root.
#[derive(Debug, Default)]
pub struct Recorded(BTreeMap<PathBuf, Entry>, Vec<&'static str>);

/// One entry as recorded.
#[derive(Debug, Clone, Copy)]
struct Entry {
    ino: u64,
    ctime: (i64, i64),
    // Birth time where the filesystem keeps it: an inode number is
    // reused at once for a directory removed and made again.
    born: Option<std::time::SystemTime>,
    dir: bool,
    owner_mode: (u32, u32, u32),
    // Its ctime moved with kiln's own renames (a mount's place and the
    // directory holding it): compared by inode, owner and mode instead.
    loose: bool,
}

impl Entry {
    fn of(meta: &fs::Metadata) -> Entry {
        Entry {
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            born: meta.created().ok(),
            dir: meta.is_dir(),
            owner_mode: (meta.uid(), meta.gid(), meta.mode()),
            loose: false,
        }
    }

    fn same(&self, meta: &fs::Metadata) -> bool {
        let now = Entry::of(meta);
        match self.loose {
            true => self.is(&now) && self.owner_mode == now.owner_mode,
            false => self.is(&now) && self.ctime == now.ctime,
        }
    }

    /// The same inode, not another one given its number.
    fn is(&self, now: &Entry) -> bool {
        self.ino == now.ino && self.born == now.born
    }
}

/// Paths a container sees that kiln, not the process, put there: never
/// part of what it changed (BuildKit's mounts hide them the same way).
const KILNS: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];
/// Trees that are mounts in a namespaced container.
const MOUNTS: [&str; 3] = ["dev", "proc", "sys"];

fn opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|k| matches!(xattr::get(dir, k), Ok(Some(v)) if v == b"y"))
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => super::fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies one entry (not a directory's children) from `from` to `to`,
/// which does not exist: content, owner, mode, times, xattrs.
fn copy_entry(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        fs::create_dir(to)?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    } else if ft.is_file() {
        fs::copy(from, to)?;
    } else {
        let kind = if ft.is_char_device() {
            super::fs::Special::Char
        } else if ft.is_block_device() {
            super::fs::Special::Block
        } else if ft.is_fifo() {
            super::fs::Special::Fifo
        } else {
            // A socket: nothing a layer can hold.
            return Ok(());
        };
        let (major, minor) = super::fs::split_dev(meta.rdev());
        super::fs::make_special(to, kind, meta.mode(), major, minor)?;
    }
    copy_meta(from, to, meta)
}

/// Owner, then mode (a chown clears set-uid bits), xattrs, times.
fn copy_meta(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    let ft = meta.file_type();
    if !ft.is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        if let Ok(names) = xattr::list(from) {
            for name in names {
                let n = name.to_string_lossy();
                if n.ends_with("overlay.opaque") || n.starts_with("trusted.overlay.") {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(from, &name) {
                    // Best effort, as a copy with `cp -a`: security.* may be
                    // refused where the process lacks CAP_SETFCAP.
                    let _ = xattr::set(to, &name, &v);
                }
            }
        }
    }
    set_times(to, meta)
}

/// Access and modification times as `meta` has them, on the entry itself.
fn set_times(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let at = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mt = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &at,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Copies the snapshots `lower` (top first, as overlayfs takes them) into
/// the empty directory `root`, then records what it holds.
pub fn materialize(lower: &[PathBuf], root: &Path, etc: &Path) -> io::Result<Recorded> {
    for layer in lower.iter().rev() {
        apply(layer, root)?;
    }
    let missing = KILNS
        .into_iter()
        .filter(|k| fs::symlink_metadata(root.join(k)).is_err())
        .collect();
    // kiln's own files before the record: what kiln writes is not what
    // the process changed.
    super::rootfs::chroot_files(root, etc)?;
    let mut recorded = record(root)?;
    recorded.1 = missing;
    Ok(recorded)
}

/// Lays one snapshot over `root`: its whiteouts delete, its opaque
/// directories replace, everything else is copied over what is there.
fn apply(layer: &Path, root: &Path) -> io::Result<()> {
    // Directories' times are set after their children were written.
    let mut dirs = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let from_dir = layer.join(&rel);
        for entry in fs::read_dir(&from_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let (from, to) = (from_dir.join(&name), root.join(&rel).join(&name));
            let meta = fs::symlink_metadata(&from)?;
            if is_whiteout(&meta) {
                remove_any(&to)?;
                continue;
            }
            if meta.is_dir() {
                match fs::symlink_metadata(&to) {
                    Ok(m) if m.is_dir() && !opaque(&from) => {
                        copy_meta(&from, &to, &meta)?;
                    }
                    Ok(_) => {
                        remove_any(&to)?;
                        copy_entry(&from, &to, &meta)?;
                    }
                    Err(_) => copy_entry(&from, &to, &meta)?,
                }
                dirs.push((from.clone(), to, meta));
                stack.push(rel.join(&name));
            } else {
                remove_any(&to)?;
                copy_entry(&from, &to, &meta)?;
            }
        }
    }
    for (_, to, meta) in dirs.iter().rev() {
        set_times(to, meta)?;
    }
    Ok(())
}

/// Every entry under `root` with its inode and ctime.
fn record(root: &Path) -> io::Result<Recorded> {
    let mut seen = BTreeMap::new();
    walk(root, &mut |rel, meta| {
        seen.insert(rel.to_path_buf(), Entry::of(meta));
    })?;
    Ok(Recorded(seen, Vec::new()))
}

/// Calls `f` for every entry under `root` (never the root itself), parents
/// before children, leaving out kiln's own files and the mount trees.
fn walk(root: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) -> io::Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            if (rel.as_os_str().is_empty() && MOUNTS.iter().any(|m| name == *m))
                || KILNS.iter().any(|k| child == Path::new(k))
            {
                continue;
            }
            let meta = fs::symlink_metadata(root.join(&child))?;
            f(&child, &meta);
            if meta.is_dir() {
                stack.push(child);
            }
        }
    }
    Ok(())
}

/// Writes into the empty `upper` what changed under `root` since
/// `before` was recorded, as overlayfs would have: new and changed entries
/// copied (with the directories above them), removed ones as whiteouts.
pub fn changes(root: &Path, before: &Recorded, upper: &Path) -> io::Result<()> {
    let mut now = HashSet::new();
    let mut changed = Vec::new();
    // Directories that replaced one (removed, then made again): opaque, as
    // overlayfs makes them, and what the old one held is not whited out.
    let mut replaced = HashSet::new();
    walk(root, &mut |rel, meta| {
        now.insert(rel.to_path_buf());
        let was = before.0.get(rel);
        if !was.is_some_and(|e| e.same(meta)) {
            changed.push((rel.to_path_buf(), meta.is_dir()));
        }
        if meta.is_dir() && was.is_some_and(|e| e.dir && !e.is(&Entry::of(meta))) {
            replaced.insert(rel.to_path_buf());
        }
    })?;
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut dirs = Vec::new();
    // Files with several names are written once and linked, as overlayfs
    // keeps them (and a layer then holds a link entry).
    let mut linked: std::collections::HashMap<(u64, u64), PathBuf> = Default::default();
    for (rel, is_dir) in &changed {
        parents(root, upper, rel, &mut made, &mut dirs)?;
        let (from, to) = (root.join(rel), upper.join(rel));
        if made.contains(rel) {
            continue;
        }
        let meta = fs::symlink_metadata(&from)?;
        let id = (meta.dev(), meta.ino());
        match linked.get(&id) {
            Some(first) if meta.is_file() => fs::hard_link(first, &to)?,
            _ => {
                copy_entry(&from, &to, &meta)?;
                if meta.is_file() && meta.nlink() > 1 {
                    linked.insert(id, to.clone());
                }
            }
        }
        made.insert(rel.clone());
        if *is_dir {
            if replaced.contains(rel) {
                mark_opaque(&to)?;
            }
            dirs.push((to, meta));
        }
    }
    for rel in before.0.keys() {
        if now.contains(rel) || rel.ancestors().skip(1).any(|a| replaced.contains(a)) {
            continue;
        }
        // Only the topmost removed entry is whited out, and only under a
        // directory that is still one (a directory replaced by a file hides
        // its old children already).
        let parent = rel.parent().unwrap_or(Path::new(""));
        let parent_is_dir = parent.as_os_str().is_empty()
            || (now.contains(parent)
                && fs::symlink_metadata(root.join(parent)).is_ok_and(|m| m.is_dir()));
        if !parent_is_dir {
            continue;
        }
        parents(root, upper, rel, &mut made, &mut dirs)?;
        let to = upper.join(rel);
        if fs::symlink_metadata(&to).is_err() {
            super::fs::make_whiteout(&to)?;
        }
    }
    // Where the image had none, a namespaced container's /etc files are
    // mounted on empty files made for them, which its layer keeps (as
    // BuildKit's do): the same empty files here.
    for stub in &before.1 {
        let from = root.join(stub);
        let Ok(meta) = fs::symlink_metadata(&from) else {
            continue;
        };
        let to = upper.join(stub);
        if !meta.is_file() || fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        parents(root, upper, Path::new(stub), &mut made, &mut dirs)?;
        fs::File::create(&to)?;
        copy_meta(&from, &to, &meta)?;
    }
    for (to, meta) in dirs.iter().rev() {
        set_times(to, meta)?;
    }
    Ok(())
}

/// Marks `dir` of an upper directory opaque: overlayfs's trusted form,
/// or its userxattr form where trusted.* is refused (no CAP_SYS_ADMIN),
/// which kiln's layer generator reads alike.
fn mark_opaque(dir: &Path) -> io::Result<()> {
    match xattr::set(dir, "trusted.overlay.opaque", b"y") {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            xattr::set(dir, "user.overlay.opaque", b"y")
        }
        other => other,
    }
}

/// Makes the directories above `rel` in `upper` as `root` has them.
fn parents(
    root: &Path,
    upper: &Path,
    rel: &Path,
    made: &mut HashSet<PathBuf>,
    dirs: &mut Vec<(PathBuf, fs::Metadata)>,
) -> io::Result<()> {
    let mut chain: Vec<&Path> = rel.ancestors().skip(1).collect();
    chain.pop(); // the root itself
    for dir in chain.into_iter().rev() {
        if made.contains(dir) {
            continue;
        }
        let (from, to) = (root.join(dir), upper.join(dir));
        let meta = fs::symlink_metadata(&from)?;
        copy_entry(&from, &to, &meta)?;
        made.insert(dir.to_path_buf());
        dirs.push((to, meta));
    }
    Ok(())
}

/// A mount a chrooted container gets without mounting: a read-write
/// directory on the root's filesystem moved in (a cache, a volume) and
/// back out after, anything else copied in and removed after (a secret, a
/// context bind, a stage's files: writes to it are lost, as to a
/// read-only or copied bind), a tmpfs as an empty directory. What was at
/// the place in the image is kept aside meanwhile.
pub struct Placed {
    rel: String,
    is_dir: bool,
    moved_from: Option<PathBuf>,
    // The moved directory's (device, inode): only that goes home, never
    // what a step left in its place (a symlink to `/` would have become
    // the cache, bind-mounted into the next namespaced step).
    moved_id: (u64, u64),
    aside: Option<PathBuf>,
    existed: bool,
    // The locks of every directory moved in (held by the first place):
    // another chrooted container sharing one waits (a namespaced one would
    // have shared it).
    _locks: Vec<fs::File>,
}

/// Gives `binds` and `tmpfs` to the root at `root_dir` as [`Placed`]
/// says; `aside` (on the same filesystem) keeps what they cover. Every
/// mount is checked before any is placed.
pub fn place(
    root_dir: &Path,
    aside: &Path,
    binds: &[super::spec::Bind],
    tmpfs: &[super::spec::Tmpfs],
) -> io::Result<Vec<Placed>> {
    let root_dev = fs::metadata(root_dir)?.dev();
    let mut plan = Vec::new();
    for b in binds {
        let meta = fs::metadata(&b.source)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", b.source.display())))?;
        let how = if meta.file_type().is_socket() {
            return Err(io::Error::other(format!(
                "{} is a socket (an ssh agent's): with --isolation=chroot there is no mount to give it",
                b.source.display()
            )));
        } else if b.read_only {
            How::Copy
        } else if !b.movable {
            return Err(io::Error::other(format!(
                "a read-write mount of {} at {} cannot be given with --isolation=chroot (no mounts here, and a copy would lose its writes): mount it read-only, or use a cache mount",
                b.source.display(),
                b.target
            )));
        } else if meta.is_dir() && meta.dev() == root_dev {
            How::Move
        } else {
            return Err(io::Error::other(format!(
                "{} is not a directory on the store's filesystem: with --isolation=chroot a read-write mount can only be moved in from there",
                b.source.display()
            )));
        };
        plan.push((b.target.as_str(), Some(&b.source), how, meta.is_dir()));
    }
    for t in tmpfs {
        plan.push((t.target.as_str(), None, How::Empty, true));
    }
    // Each moved directory is one step's at a time: locked before any is
    // moved, in one order for every step (two steps taking two caches in
    // opposite orders never wait for each other).
    let mut moved: Vec<&PathBuf> = plan
        .iter()
        .filter(|(_, _, how, _)| *how == How::Move)
        .filter_map(|(_, source, _, _)| *source)
        .collect();
    moved.sort();
    let count = moved.len();
    moved.dedup();
    if moved.len() != count {
        return Err(io::Error::other(
            "one cache mounted twice in a step cannot be given with --isolation=chroot (a directory is in one place at a time)",
        ));
    }
    let mut locks = Vec::new();
    for source in moved {
        let lock = fs::File::create(source.with_extension("chroot-lock"))?;
        lock.lock()?;
        locks.push(lock);
    }
    let mut placed = Vec::new();
    for (i, (target, source, how, is_dir)) in plan.into_iter().enumerate() {
        match place_one(root_dir, aside, i, target, source, how, is_dir) {
            Ok(p) => placed.push(p),
            Err(e) => {
                let _ = unplace(root_dir, &mut placed);
                return Err(e);
            }
        }
    }
    if let Some(first) = placed.first_mut() {
        first._locks = locks;
    }
    Ok(placed)
}

/// How a mount is given without mounting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// kiln's own directory, moved in and back.
    Move,
    /// A copy, removed after.
    Copy,
    /// An empty directory (a tmpfs), removed after.
    Empty,
}

fn place_one(
    root_dir: &Path,
    aside: &Path,
    i: usize,
    target: &str,
    source: Option<&PathBuf>,
    how: How,
    is_dir: bool,
) -> io::Result<Placed> {
    let root = super::fs::Root::open(root_dir)?;
    let target = target.trim_matches('/');
    let (parent, name) = target.rsplit_once('/').unwrap_or(("", target));
    if name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::other(format!(
            "mount target /{target}: not a place"
        )));
    }
    root.mkdir_all(parent, 0o755, &mut |_| Ok(()))?;
    let parent = root.resolve(parent)?;
    let rel = format!("{}/{name}", parent.trim_end_matches('/'))
        .trim_start_matches('/')
        .to_string();
    let existed = root.lstat(&rel).is_ok();
    let hidden = aside.join(format!("covered-{i}"));
    if existed {
        root.move_out(&rel, &hidden)?;
    }
    let mut p = Placed {
        rel: rel.clone(),
        is_dir,
        moved_from: None,
        moved_id: (0, 0),
        aside: existed.then_some(hidden),
        existed,
        _locks: Vec::new(),
    };
    let given = match (how, source) {
        (How::Move, Some(source)) => fs::symlink_metadata(source).and_then(|m| {
            root.move_in(source, &rel)?;
            p.moved_from = Some(source.clone());
            p.moved_id = (m.dev(), m.ino());
            Ok(())
        }),
        (How::Copy, Some(source)) => root
            .real_path(&parent)
            .and_then(|dir| copy_tree(source, &dir.join(name))),
        _ => root
            .mkdir(&rel, 0o1777)
            .and_then(|()| root.chmod(&rel, 0o1777)),
    };
    if let Err(e) = given {
        let _ = unplace(root_dir, &mut vec![p]);
        return Err(e);
    }
    Ok(p)
}

/// Copies `from` (a file or a whole tree, not followed below it) to `to`.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::metadata(from)?;
    copy_entry(from, to, &meta)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mut dirs = vec![(from.to_path_buf(), to.to_path_buf(), meta)];
    let mut i = 0;
    while i < dirs.len() {
        let (f, t) = (dirs[i].0.clone(), dirs[i].1.clone());
        for entry in fs::read_dir(&f)? {
            let name = entry?.file_name();
            let (cf, ct) = (f.join(&name), t.join(&name));
            let m = fs::symlink_metadata(&cf)?;
            copy_entry(&cf, &ct, &m)?;
            if m.is_dir() {
                dirs.push((cf, ct, m));
            }
        }
        i += 1;
    }
    for (_, t, m) in dirs.iter().rev() {
        set_times(t, m)?;
    }
    Ok(())
}

/// Takes back what [`place`] gave, last first: moved directories go home,
/// copies go, what they covered returns.
pub fn unplace(root_dir: &Path, placed: &mut Vec<Placed>) -> io::Result<()> {
    let root = super::fs::Root::open(root_dir)?;
    while let Some(p) = placed.pop() {
        let ours = |m: &fs::Metadata| m.is_dir() && (m.dev(), m.ino()) == p.moved_id;
        match &p.moved_from {
            Some(home) if root.lstat(&p.rel).is_ok_and(|m| ours(&m)) => {
                root.move_out(&p.rel, home)?
            }
            // The step moved or replaced it: what is there is removed and
            // the cache starts again empty (what the step moved away stays
            // where it put it, in its layer).
            Some(home) => {
                match root.remove_all(&p.rel) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                fs::create_dir(home)?;
            }
            None => match root.remove_all(&p.rel) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        match &p.aside {
            Some(aside) => root.move_in(aside, &p.rel)?,
            // What a mount needs where the image had nothing: the stub a
            // namespaced container's mount leaves (and a build removes).
            None if p.is_dir => root.mkdir(&p.rel, 0o755)?,
            None => drop(root.create_file(&p.rel, 0o644)?),
        }
    }
    Ok(())
}

/// A chrooted container's root while it runs: what it held, and the
/// mounts given to it, taken back when dropped (a start that failed).
pub struct Prepared {
    root: PathBuf,
    recorded: Recorded,
    placed: Vec<Placed>,
}

impl Prepared {
    /// Copies `lower` into `root`, records it, then places the mounts.
    pub fn new(spec: &super::spec::Spec) -> io::Result<Prepared> {
        let (root, binds, tmpfs) = (&spec.rootfs, &spec.binds, &spec.tmpfs);
        // A container that ran before holds its copy and its changes: a
        // new copy over it would bring back what it removed.
        if fs::read_dir(root)?.next().is_some() {
            return Err(io::Error::other(
                "a container that ran once cannot start again with --isolation=chroot (its copy and its changes cannot be laid again): commit it and run the image",
            ));
        }
        let recorded = materialize(&spec.lower, root, &spec.etc_dir)?;
        let aside = root.parent().unwrap_or(root);
        let placed = place(root, aside, binds, tmpfs)?;
        Ok(Prepared {
            root: root.to_path_buf(),
            recorded,
            placed,
        })
    }

    /// Once the container ended: the mounts taken back, then what it
    /// changed written into `upper`.
    pub fn finish(mut self, upper: &Path) -> io::Result<()> {
        let places: Vec<(String, bool)> = self
            .placed
            .iter()
            .map(|p| (p.rel.clone(), p.existed))
            .collect();
        unplace(&self.root, &mut self.placed)?;
        let mut recorded = std::mem::take(&mut self.recorded);
        recorded.refresh(&places);
        changes(&self.root, &recorded, upper)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = unplace(&self.root, &mut self.placed);
    }
}

impl Recorded {
    /// Takes what kiln's own moves changed for `placed` (the covered
    /// entries and their directories, moved out and back) as recorded, so
    /// that only the process's changes count.
    fn refresh(&mut self, places: &[(String, bool)]) {
        for (rel, existed) in places {
            let rel = Path::new(rel);
            let mut paths = vec![rel];
            if let Some(parent) = rel.parent().filter(|d| !d.as_os_str().is_empty()) {
                paths.push(parent);
            }
            for path in paths {
                // A place made for the mount changed its directory as
                // overlayfs's stub would have (and shows so).
                if !existed || !self.0.contains_key(path) {
                    continue;
                }
                if let Some(e) = self.0.get_mut(path) {
                    e.loose = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path, files: &[(&str, &str)]) {
        for (p, content) in files {
            let path = dir.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            match content.strip_prefix("->") {
                Some(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
                None => fs::write(&path, content).unwrap(),
            }
        }
    }

    #[test]
    fn layers_are_laid_bottom_first_and_changes_come_back_as_overlay_would() {
        let t = tempfile::tempdir().unwrap();
        let (base, top, root, upper) = (
            t.path().join("base"),
            t.path().join("top"),
            t.path().join("root"),
            t.path().join("upper"),
        );
        tree(
            &base,
            &[
                ("etc/a", "a"),
                ("etc/gone", "x"),
                ("opq/old", "o"),
                ("keep/k", "k"),
                ("edit/e", "1"),
                ("del/d1", "1"),
                ("link", "->etc/a"),
            ],
        );
        tree(&top, &[("etc/b", "b"), ("opq/new", "n")]);
        super::super::fs::make_whiteout(&top.join("etc/gone")).unwrap();
        xattr::set(top.join("opq"), "user.overlay.opaque", b"y").unwrap();
        fs::create_dir(&root).unwrap();
        fs::create_dir(&upper).unwrap();
        let etc = t.path().join("etc");
        tree(
            &etc,
            &[("hosts", "h"), ("hostname", "n"), ("resolv.conf", "r")],
        );
        let before = materialize(&[top.clone(), base.clone()], &root, &etc).unwrap();
        assert_eq!(fs::read_to_string(root.join("etc/b")).unwrap(), "b");
        assert!(!root.join("etc/gone").exists(), "whiteout applied");
        assert!(!root.join("opq/old").exists(), "opaque directory replaced");
        assert_eq!(
            fs::read_link(root.join("link")).unwrap(),
            Path::new("etc/a")
        );

        // The process: an edit, a new file, a removed file and tree, and
        // kiln's own /etc/hosts written.
        fs::write(root.join("edit/e"), "2").unwrap();
        tree(&root, &[("new/n", "n")]);
        fs::remove_file(root.join("etc/a")).unwrap();
        fs::remove_dir_all(root.join("del")).unwrap();
        changes(&root, &before, &upper).unwrap();

        let mut listed = Vec::new();
        walk(&upper, &mut |rel, _| listed.push(rel.display().to_string())).unwrap();
        listed.sort();
        assert_eq!(
            listed,
            ["del", "edit", "edit/e", "etc", "etc/a", "new", "new/n"],
            "only what changed, with its directories"
        );
        // kiln's hosts file: the empty stub a mount would have left.
        assert_eq!(fs::read(upper.join("etc/hosts")).unwrap(), b"");
        assert_eq!(fs::read_to_string(upper.join("edit/e")).unwrap(), "2");
        for wh in ["del", "etc/a"] {
            let m = fs::symlink_metadata(upper.join(wh)).unwrap();
            assert!(is_whiteout(&m), "{wh} is a whiteout");
        }
        assert!(!upper.join("keep").exists());
    }
}
