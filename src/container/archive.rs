//! `docker cp`: a container's files read out as a tar and a tar written
//! into them, as dockerd's archive endpoints do. Every path is resolved
//! inside the container's root (or the volume it falls in) through
//! [`Root`]: a symlink the container made never leads outside it.
//!
//! A running container is seen through its init's `/proc/PID/root`, its
//! volumes mounted where its processes see them. A stopped one through
//! its overlay mounted by descriptor and attached nowhere (no other
//! process sees it; it goes with the descriptor), its volumes and binds
//! by their targets; its lock is held meanwhile, so it cannot start on
//! the same upper directory.

use super::{Container, ContainerError, io_err};
use crate::sandbox::fs::Root;
use crate::sandbox::spec::ContainerLock;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A container's filesystem, opened for a copy.
pub struct View {
    root: Root,
    /// Volumes and binds of a stopped container: target components, the
    /// source, read-only.
    binds: Vec<(Vec<String>, Root, bool)>,
    /// The root is read-only (`--read-only`).
    read_only: bool,
    /// Seen through a running container's `/proc/PID/root`: its `/proc`
    /// and `/sys` are the kernel's, not files to copy.
    running: bool,
    name: String,
    _held: Option<ContainerLock>,
}

/// What `X-Docker-Container-Path-Stat` says of a path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PathStat {
    /// The path's last name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Go's `os.FileMode` bits (type bits high, permissions low).
    pub mode: u32,
    /// Its modification time, RFC 3339.
    pub mtime: String,
    /// Where a symlink leads, as an absolute path in the container.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// How a tar is put into a container (`PUT .../archive`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PutOptions {
    /// Refuse to replace a directory with a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// Keep the tar's owners (`docker cp -a`); else the container's root.
    pub copy_uid_gid: bool,
}

fn not_found(path: &str, name: &str) -> ContainerError {
    ContainerError::NoSuchPath {
        path: path.to_string(),
        container: name.to_string(),
    }
}

fn io_error(action: &'static str, path: &str) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.into();
    move |source| ContainerError::Io {
        action,
        path,
        source,
    }
}

/// The components of a container path, `.` and `..` taken lexically
/// (never above `/`).
fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p.to_string()),
        }
    }
    out
}

/// The name a copy of `path` goes under, from the path as the client
/// wrote it (never from where a symlink led: the container does not
/// choose the name on the other side): its last name, or `.` for a
/// directory's contents (`DIR/.`, `/`).
pub fn rebase_name(path: &str) -> String {
    match components(path).last() {
        Some(_) if path.ends_with("/.") => ".".into(),
        Some(n) => n.clone(),
        None => ".".into(),
    }
}

/// Opens container `c`'s filesystem as its processes see it.
pub fn open(c: &Container) -> Result<View, ContainerError> {
    let st = c.state();
    let name = c.record.name.clone();
    if let Some(init) = st.init.filter(|i| st.is_running() && i.alive()) {
        let proc_root = format!("/proc/{}/root", init.pid);
        let root = Root::open(Path::new(&proc_root)).map_err(io_error("opening", &proc_root))?;
        // The init was asked by its start time: the same process still.
        if !init.alive() {
            return Err(ContainerError::Invalid(format!(
                "container {name} stopped while its files were opened"
            )));
        }
        return Ok(View {
            root,
            binds: Vec::new(),
            read_only: false,
            running: true,
            name,
            _held: None,
        });
    }
    // Mounting its overlay needs CAP_SYS_ADMIN where the store is: a
    // rootless kiln copies while the container runs.
    if c.record.spec.rootless {
        return Err(ContainerError::Invalid(format!(
            "container {name} is stopped: a rootless kiln copies from a running container only (start it first)"
        )));
    }
    let held = ContainerLock::take(&c.dir).map_err(|e| {
        ContainerError::Invalid(format!("container {name} is starting or in use: {e}"))
    })?;
    let spec = &c.record.spec;
    let paths: Vec<&Path> = spec
        .lower
        .iter()
        .map(|p| p.as_path())
        .chain([spec.upper.as_path(), spec.work.as_path()])
        .collect();
    if paths.iter().any(|p| {
        p.as_os_str()
            .as_encoded_bytes()
            .iter()
            .any(|b| b":,\\".contains(b))
    }) {
        return Err(ContainerError::Invalid(
            "a layer's path holds ':', ',' or '\\'".into(),
        ));
    }
    let lower: Vec<String> = spec.lower.iter().map(|p| p.display().to_string()).collect();
    let options = [
        ("lowerdir", lower.join(":")),
        ("upperdir", spec.upper.display().to_string()),
        ("workdir", spec.work.display().to_string()),
    ];
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mount = crate::sandbox::fs::detached_overlay(&options, spec.read_only).map_err(|e| {
        ContainerError::Invalid(format!(
            "mounting container {name}'s filesystem to copy: {e}"
        ))
    })?;
    let root = Root::from_mount(mount, &spec.upper);
    let mut binds = Vec::new();
    for b in &spec.binds {
        // A bind of one file (a device, /etc/hosts) holds no tree to copy.
        if let Ok(source) = Root::open(&b.source) {
            binds.push((components(&b.target), source, b.read_only));
        }
    }
    // The longest target first: a bind inside a volume wins.
    binds.sort_by_key(|(t, _, _)| std::cmp::Reverse(t.len()));
    Ok(View {
        root,
        binds,
        read_only: spec.read_only,
        running: false,
        name,
        _held: Some(held),
    })
}

impl View {
    /// The root that holds `path`, the path inside it, whether that root
    /// is read-only, and where it is in the container (`/vol` for a
    /// volume there, empty for the container's root).
    fn place(&self, path: &str) -> (&Root, String, bool, String) {
        let parts = components(path);
        for (target, root, ro) in &self.binds {
            if parts.starts_with(target) {
                let at = format!("/{}", target.join("/"));
                return (root, parts[target.len()..].join("/"), *ro, at);
            }
        }
        (&self.root, parts.join("/"), self.read_only, String::new())
    }

    /// `HEAD .../archive`: what `path` is (a symlink at its end not
    /// followed, unless the path ends in `/` or `/.`, as docker's).
    pub fn stat(&self, path: &str) -> Result<PathStat, ContainerError> {
        let (root, rel, _, at) = self.place(path);
        let follow = path.ends_with('/') || path.ends_with("/.");
        let meta = match rel.as_str() {
            "" => root.stat("."),
            r if follow => root.stat(r),
            r => root.lstat(r),
        }
        .map_err(|_| not_found(path, &self.name))?;
        // Where the link leads as the container sees it: inside a volume,
        // below the volume's place.
        let link_target = match meta.file_type().is_symlink() {
            true => match root.resolve(&rel) {
                Ok(inside) if at.is_empty() => inside,
                Ok(inside) if inside == "/" => at,
                Ok(inside) => format!("{at}{inside}"),
                Err(_) => String::new(),
            },
            false => String::new(),
        };
        let name = match components(path).last() {
            Some(n) => n.clone(),
            None => "/".into(),
        };
        Ok(PathStat {
            name,
            size: meta.size(),
            mode: go_mode(&meta),
            mtime: chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            link_target,
        })
    }

    /// `GET .../archive`: `path` as a tar, its entries under `top` (the
    /// last name of the path the client asked for, `.` for a directory's
    /// contents: see [`rebase_name`]). A path ending in `/` or `/.` is
    /// followed to what it names.
    pub fn tar<W: Write>(&self, path: &str, top: &str, out: W) -> Result<W, ContainerError> {
        let (root, rel, _, at) = self.place(path);
        let follow = path.ends_with('/') || path.ends_with("/.");
        let start = match rel.as_str() {
            "" => ".".to_string(),
            r if follow => match root.resolve(r) {
                Ok(inside) if inside == "/" => ".".to_string(),
                Ok(inside) => inside.trim_start_matches('/').to_string(),
                Err(_) => return Err(not_found(path, &self.name)),
            },
            r => r.to_string(),
        };
        root.lstat(&start)
            .map_err(|_| not_found(path, &self.name))?;
        // The kernel's own trees in a running container are not copied.
        let kernel = |rel: &str| self.running && at.is_empty() && ["proc", "sys"].contains(&rel);
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        let mut stack = vec![(start.clone(), top.to_string())];
        while let Some((rel, name)) = stack.pop() {
            let meta = match root.lstat(&rel) {
                Ok(m) => m,
                // Gone since its directory was listed (a running
                // container's file): not copied, as docker's tar skips it.
                Err(e) if e.kind() == io::ErrorKind::NotFound && rel != start => continue,
                Err(e) => return Err(io_error("reading", &rel)(e)),
            };
            let ft = meta.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_mode(meta.mode() & 0o7777);
            header.set_uid(meta.uid().into());
            header.set_gid(meta.gid().into());
            header.set_mtime(meta.mtime().max(0) as u64);
            header.set_size(0);
            let written = if ft.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                if !kernel(&rel) {
                    let names = root.read_dir(&rel).map_err(io_error("reading", &rel))?;
                    for n in names.iter().rev() {
                        let n = n.to_string_lossy();
                        let child = match rel.as_str() {
                            "." => n.to_string(),
                            r => format!("{r}/{n}"),
                        };
                        stack.push((child, format!("{name}/{n}")));
                    }
                }
                builder.append_data(&mut header, format!("{name}/"), io::empty())
            } else if ft.is_file() {
                // Opened once, its size that of the open file, and exactly
                // that many bytes written (zeros if it shrank meanwhile):
                // a container that truncates a file cannot shift the tar.
                let file = match root.open_regular(&rel, false) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("reading", &rel)(e)),
                };
                let size = file.metadata().map_err(io_error("reading", &rel))?.len();
                header.set_size(size);
                let data = file.take(size).chain(io::repeat(0)).take(size);
                builder.append_data(&mut header, &name, data)
            } else if ft.is_symlink() {
                header.set_entry_type(tar::EntryType::Symlink);
                let target = root.read_link(&rel).map_err(io_error("reading", &rel))?;
                builder.append_link(&mut header, &name, target)
            } else if ft.is_char_device() || ft.is_block_device() {
                header.set_entry_type(match ft.is_char_device() {
                    true => tar::EntryType::Char,
                    false => tar::EntryType::Block,
                });
                let rdev = meta.rdev();
                let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
                let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
                let _ = header.set_device_major(major as u32);
                let _ = header.set_device_minor(minor as u32);
                builder.append_data(&mut header, &name, io::empty())
            } else if ft.is_fifo() {
                header.set_entry_type(tar::EntryType::Fifo);
                builder.append_data(&mut header, &name, io::empty())
            } else {
                // Sockets are not copied, as docker's tar leaves them.
                Ok(())
            };
            written.map_err(io_error("writing the archive of", path))?;
        }
        builder
            .into_inner()
            .map_err(io_error("writing the archive of", path))
    }

    /// `PUT .../archive`: the tar's entries put into directory `path`
    /// (which must exist). The tar is unpacked apart first (kiln's layer
    /// reader refuses entries that leave it), then placed entry by entry
    /// inside the container's root.
    pub fn put<R: Read>(
        &self,
        path: &str,
        tar: R,
        opts: PutOptions,
        scratch: &Path,
    ) -> Result<(), ContainerError> {
        let (root, rel, read_only, _) = self.place(path);
        let dest = match rel.as_str() {
            "" => root.sub("."),
            r => root.sub(r),
        };
        let dest = match dest {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(ContainerError::Invalid(
                    "extraction point is not a directory".into(),
                ));
            }
            Err(_) => return Err(not_found(path, &self.name)),
        };
        if !dest.stat(".").is_ok_and(|m| m.is_dir()) {
            return Err(ContainerError::Invalid(
                "extraction point is not a directory".into(),
            ));
        }
        if read_only {
            return Err(ContainerError::Invalid(
                "container rootfs is marked read-only".into(),
            ));
        }
        std::fs::create_dir(scratch)
            .map_err(io_error("creating", &scratch.display().to_string()))?;
        let placed = (|| {
            crate::layer::apply(tar, scratch, crate::layer::Mode::Flatten)
                .map_err(|e| ContainerError::Invalid(format!("reading the archive: {e}")))?;
            let src =
                Root::open(scratch).map_err(io_error("opening", &scratch.display().to_string()))?;
            let names = src
                .read_dir(".")
                .map_err(io_error("reading", &scratch.display().to_string()))?;
            if opts.no_overwrite_dir_non_dir {
                for n in &names {
                    let n = n.to_string_lossy();
                    let new_dir = src.lstat(&n).is_ok_and(|m| m.is_dir());
                    if let Ok(old) = dest.lstat(&n)
                        && old.is_dir() != new_dir
                    {
                        let there = format!("{}/{n}", path.trim_end_matches('/'));
                        return Err(ContainerError::Invalid(match old.is_dir() {
                            true => format!(
                                "cannot overwrite directory {there:?} with non-directory {n:?}"
                            ),
                            false => format!(
                                "cannot overwrite non-directory {there:?} with directory {n:?}"
                            ),
                        }));
                    }
                }
            }
            let take = |_: &str| crate::copier::Take::Entry;
            let links = crate::copier::Links::default();
            let copy = crate::copier::CopyOptions {
                owner: (!opts.copy_uid_gid).then_some((0, 0)),
                mode: None,
                take: &take,
                links: &links,
            };
            for n in &names {
                let n = n.to_string_lossy();
                crate::copier::copy_tree(&src, &n, &dest, &n, &copy)
                    .map_err(io_error("copying into", path))?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(scratch);
        placed
    }
}

/// Where a copy out of a container lands on the host (`docker cp
/// CONTAINER:SRC DEST`), as a directory and a name in it: into DEST when
/// it is a directory, else as DEST (its parent must exist); a directory's
/// `contents` (`SRC/.`) go into DEST itself, made if missing.
pub fn host_destination(
    dest: &Path,
    stat: &PathStat,
    contents: bool,
) -> Result<(PathBuf, String), ContainerError> {
    use ContainerError::Invalid;
    // `.` or `..` name no entry: the directory they are.
    let absolute;
    let dest = match dest.file_name() {
        Some(_) => dest,
        None => {
            absolute = std::fs::canonicalize(dest).map_err(io_err("resolving", dest))?;
            absolute.as_path()
        }
    };
    let parent_and_name = || -> Result<(PathBuf, String), ContainerError> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Invalid(format!("invalid destination {}", dest.display())))?;
        Ok((parent, name))
    };
    if contents {
        return match std::fs::metadata(dest) {
            Ok(m) if !m.is_dir() => Err(Invalid(format!(
                "cannot copy a directory's contents to a file: {} is not a directory",
                dest.display()
            ))),
            _ => parent_and_name(),
        };
    }
    match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => Ok((dest.to_path_buf(), stat.name.clone())),
        Ok(_) if stat.mode & (1 << 31) != 0 => Err(Invalid(format!(
            "cannot copy directory {} to a file: {} is not a directory",
            stat.name,
            dest.display()
        ))),
        Ok(_) | Err(_) => {
            if dest.as_os_str().as_encoded_bytes().ends_with(b"/") {
                return Err(Invalid(format!(
                    "destination directory {} does not exist",
                    dest.display()
                )));
            }
            let (parent, name) = parent_and_name()?;
            if !parent.is_dir() {
                return Err(Invalid(format!(
                    "destination directory {} does not exist",
                    parent.display()
                )));
            }
            Ok((parent, name))
        }
    }
}

/// Unpacks a tar read from a container (its entries under `top`) into
/// host directory `into` as `name`: unpacked apart first, in `scratch` (a
/// new directory in the store's private tmp: the unpacking goes by path,
/// and `into` may be another user's, who could swap a directory made there
/// for a symlink mid-way), entries that would leave it refused; then
/// copied in by descriptor, owned by `owner` (the caller, as docker's cp)
/// or, without one, as the tar says.
pub fn unpack_on_host<R: Read>(
    tar: R,
    top: &str,
    into: &Path,
    name: &str,
    owner: Option<(u32, u32)>,
    scratch: &Path,
) -> Result<(), ContainerError> {
    std::fs::create_dir(scratch).map_err(io_err("creating", scratch))?;
    let _gone = Gone(scratch);
    // The destination first: whatever its path leads to later, the copy
    // goes where it led now.
    let dst = Root::open(into).map_err(io_err("opening", into))?;
    crate::layer::apply(tar, scratch, crate::layer::Mode::Flatten)?;
    let src = Root::open(scratch).map_err(io_err("opening", scratch))?;
    let take = |_: &str| crate::copier::Take::Entry;
    let links = crate::copier::Links::default();
    // Owned by the caller, a file keeps no set-uid or set-gid bit the
    // container gave it (a root-owned set-uid program on the host).
    let plain = |mode: u32, _: bool| mode & !0o6000;
    let copy = crate::copier::CopyOptions {
        owner,
        mode: owner.map(|_| &plain as &dyn Fn(u32, bool) -> u32),
        take: &take,
        links: &links,
    };
    match top {
        // A directory's contents (`SRC/.`): each entry into `name`.
        "." => {
            if !dst.lstat(name).is_ok_and(|m| m.is_dir()) {
                dst.mkdir(name, 0o755)
                    .map_err(io_err("making", &into.join(name)))?;
            }
            for n in src.read_dir(".").map_err(io_err("reading", scratch))? {
                let n = n.to_string_lossy();
                crate::copier::copy_tree(&src, &n, &dst, &format!("{name}/{n}"), &copy)
                    .map_err(io_err("copying into", into))?;
            }
            Ok(())
        }
        top => crate::copier::copy_tree(&src, top, &dst, name, &copy)
            .map_err(io_err("copying into", into)),
    }
}

/// Removes a scratch directory when dropped.
struct Gone<'a>(&'a Path);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let _ = crate::sandbox::fs::remove_dir_all(self.0);
    }
}

/// A host file or directory as a tar whose top entry is `name` (a copy
/// into a container); `SRC/.` gives the directory's contents.
pub fn host_tar<W: Write>(src: &Path, name: &str, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src)?;
    if meta.is_dir() {
        builder.append_dir_all(name, src)?;
    } else {
        builder.append_path_with_name(src, name)?;
    }
    builder.into_inner()
}

/// Go's `os.FileMode` of `meta`, as docker's stat header carries it.
fn go_mode(meta: &std::fs::Metadata) -> u32 {
    let ft = meta.file_type();
    let mut mode = meta.mode() & 0o777;
    if ft.is_dir() {
        mode |= 1 << 31;
    }
    if ft.is_symlink() {
        mode |= 1 << 27;
    }
    if ft.is_block_device() {
        mode |= 1 << 26;
    }
    if ft.is_char_device() {
        mode |= (1 << 26) | (1 << 21);
    }
    if ft.is_fifo() {
        mode |= 1 << 25;
    }
    if ft.is_socket() {
        mode |= 1 << 24;
    }
    let bits = meta.mode();
    if bits & 0o4000 != 0 {
        mode |= 1 << 23;
    }
    if bits & 0o2000 != 0 {
        mode |= 1 << 22;
    }
    if bits & 0o1000 != 0 {
        mode |= 1 << 20;
    }
    mode
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_taken_lexically_and_never_above_the_root() {
        assert_eq!(super::components("/a/./b/../c/"), vec!["a", "c"]);
        assert_eq!(super::components("../../etc"), vec!["etc"]);
        assert!(super::components("/").is_empty());
    }
}
