//! Filesystem access under a root that untrusted data must not leave.
//!
//! [`Root`] is a directory handle (an `O_PATH` descriptor). Every path given
//! to it is resolved by the kernel *inside* that directory, as if chrooted:
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so an absolute
//! symlink starts again at the root, `..` stops there, and `/proc/self/fd/N`
//! style magic links are refused. The last component of a mutating call is
//! never followed (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`): a symlink is
//! replaced, not written through. This is how Buildah's copier and youki
//! (through pathrs) keep an image, a build context or a cache from steering
//! a root process outside. Contexts, stage and layer snapshots, staging and
//! export directories and container roots are all Roots; no other module
//! joins an untrusted path onto a host path.
//!
//! Also here: device nodes and FIFOs (overlayfs whiteouts are character
//! devices 0:0), and the effective uid.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The kind of special file to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

fn sflag(kind: Special) -> SFlag {
    match kind {
        Special::Char => SFlag::S_IFCHR,
        Special::Block => SFlag::S_IFBLK,
        Special::Fifo => SFlag::S_IFIFO,
    }
}

/// Creates a device node or FIFO at `path` (which must not exist).
pub fn make_special(
    path: &Path,
    kind: Special,
    mode: u32,
    major: u64,
    minor: u64,
) -> io::Result<()> {
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    mknod(path, sflag(kind), perm, makedev(major, minor)).map_err(io::Error::from)
}

/// Creates an overlayfs whiteout (a character device 0:0) at `path`.
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    make_special(path, Special::Char, 0, 0, 0)
}

/// True when the process runs with effective uid 0, and not as the root
/// of its store's user namespace (a rootless kiln with subordinate ids:
/// [`super::userns`]), where what only the host's root may do (cgroups,
/// bridges, device nodes) is still out of reach.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root() && !super::userns::joined()
}

/// True when the process may set any owner its user namespace maps: root,
/// or the root of a rootless kiln's namespace with subordinate ids.
pub fn sets_owners() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The process's effective uid.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The process's effective gid.
pub fn egid() -> u32 {
    nix::unistd::getegid().as_raw()
}

/// How [`private_dir`] treats a directory that exists with looser modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loose {
    /// Take group and other read and write away (a store made by an older
    /// kiln).
    Repair,
    /// Refuse it, naming the fix (a socket's directory: whoever could
    /// write there could have replaced what is in it already).
    Refuse,
}

/// Makes `dir` only for its owner: created 0700 (missing parents 0755,
/// whatever the umask), or checked when it exists. Either way it must
/// belong to this user (root included: a directory another user owns is
/// theirs to empty and refill, set-uid files and configs of root's
/// containers included), and neither it nor a directory above it may be
/// replaceable by another user ([`trusted_path`]). A store's root may be a
/// symlink its admin made (/var/lib/kiln on another disk): what it points
/// at is checked, and the directories above that. Loose modes are taken
/// away ([`Loose::Repair`]: group and other read and write; 0711 is
/// allowed, search only, as docker's own root) or refused
/// ([`Loose::Refuse`]: any write bit for group or others).
/// Other users of the host must never reach a set-uid file of an image,
/// a container's config or a socket through it.
pub fn private_dir(dir: &Path, loose: Loose) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // Nothing is made under a directory someone else could swap.
    let mut existing = dir;
    while !existing.as_os_str().is_empty() && std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    if !existing.as_os_str().is_empty() && existing != dir {
        trusted_path(existing, false)?;
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| with_path(e, "creating", parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask can only take bits away, but say it once more: a
            // umask of 0 must not matter and neither must an odd one.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| with_path(e, "setting the mode of", dir))?;
            return trusted_path(dir, true);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(with_path(e, "creating", dir)),
    }
    let meta = match loose {
        Loose::Repair => std::fs::metadata(dir),
        Loose::Refuse => std::fs::symlink_metadata(dir),
    }
    .map_err(|e| with_path(e, "reading", dir))?;
    let refuse = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    if !meta.is_dir() {
        return Err(refuse(format!(
            "{} is not a directory (a symlink or a file someone else may have put there): remove it",
            dir.display()
        )));
    }
    // The owner, and every directory above, before any chmod: a mode is
    // not repaired on someone else's directory.
    trusted_path(dir, true)?;
    let mode = meta.mode() & 0o7777;
    // What it holds must not be read (a store) or replaced (a socket).
    let open_bits = match loose {
        Loose::Repair => 0o066,
        Loose::Refuse => 0o022,
    };
    if mode & open_bits == 0 {
        return Ok(());
    }
    match loose {
        Loose::Repair => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| {
                refuse(format!(
                    "{} is mode {mode:o}, open to other users of the host, and cannot be made 0700 ({e}): run chmod 700 {}",
                    dir.display(),
                    dir.display()
                ))
            }),
        Loose::Refuse => Err(refuse(format!(
            "{} is mode {mode:o}: other users of the host can read or write it (chmod 700 {}, or choose another path)",
            dir.display(),
            dir.display()
        ))),
    }
}

/// [`private_dir`]'s check of the directories above a path kiln will
/// make something in: none of them replaceable by another user.
pub fn trusted_dir(dir: &Path) -> io::Result<()> {
    trusted_path(dir, false)
}

/// Checks that no other user can replace `dir` (symlinks followed) or
/// any directory above it: a `leaf` belongs to this user (its modes are
/// [`private_dir`]'s to check); a directory kiln is about to make
/// something in, and each directory above, belongs to root or to this user and is writable by others only
/// when sticky (/tmp: then only an entry's owner renames it), by its group
/// only when that group is root's or this user's. Whoever could rename a
/// directory on the way could put their own in its place and have kiln,
/// as root, write set-uid files where they can run them.
fn trusted_path(dir: &Path, leaf: bool) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(dir).map_err(|e| with_path(e, "resolving", dir))?;
    let (me, my_group) = (euid(), egid());
    let refuse = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    // A symlink on the way counts as much as a directory: its owner, or
    // whoever can write where it is, could point it elsewhere later.
    let absolute = match dir.is_absolute() {
        true => dir.to_path_buf(),
        false => std::env::current_dir()?.join(dir),
    };
    for p in absolute.ancestors() {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        if !meta.file_type().is_symlink() || super::userns::verified(p) {
            continue;
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(refuse(format!(
                "{} is a symlink uid {} owns: they could point it elsewhere; name the directory it leads to",
                p.display(),
                meta.uid()
            )));
        }
        if let Some(parent) = p.parent() {
            trusted_path(parent, false)?;
        }
    }
    let shown = |p: &Path| match p == real.as_path() && real != dir {
        true => format!("{} (where {} leads)", p.display(), dir.display()),
        false => p.display().to_string(),
    };
    for (i, p) in real.ancestors().enumerate() {
        let meta = std::fs::symlink_metadata(p).map_err(|e| with_path(e, "reading", p))?;
        let owner = meta.uid();
        let is_leaf = leaf && i == 0;
        // Checked from the host's user namespace before joining a
        // rootless store's (where root's directories and other users'
        // both read as the overflow id).
        if !is_leaf && super::userns::verified(p) {
            continue;
        }
        if owner != me && (is_leaf || owner != 0) {
            return Err(refuse(format!(
                "{} belongs to uid {owner}, not to uid {me}: that user could replace what kiln keeps below it{}",
                shown(p),
                match me {
                    _ if super::userns::joined() =>
                        "; in kiln's user namespace root's directories and other users' look alike (the overflow id): choose a path below the store or $XDG_RUNTIME_DIR",
                    0 =>
                        " and become root through it (set-uid files of images); choose a path whose every directory belongs to root (the default /var/lib/kiln)",
                    _ => "; choose a path whose every directory belongs to root or to you",
                }
            )));
        }
        if is_leaf {
            continue;
        }
        let mode = meta.mode();
        let others_write = mode & 0o002 != 0 && mode & 0o1000 == 0;
        let group_write = mode & 0o020 != 0 && meta.gid() != 0 && meta.gid() != my_group;
        if others_write || group_write {
            return Err(refuse(format!(
                "{} is mode {:o}: {} can rename what is below it and put their own in its place; remove that write bit ({}) or choose another path",
                shown(p),
                mode & 0o7777,
                match others_write {
                    true => "any user of the host".to_string(),
                    false => format!("group {}", meta.gid()),
                },
                match others_write {
                    true => "or set the sticky bit, as /tmp has",
                    false => "chmod g-w",
                }
            )));
        }
    }
    Ok(())
}

/// Opens an existing `path` for writing, refusing a symlink as its last
/// component.
pub fn open_write_nofollow(path: &Path) -> io::Result<File> {
    nix::fcntl::open(
        path,
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| with_path(errno(e), "opening", path))
}

/// Bytes free for an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Starts the writeback of `len` bytes of `file` from `offset` without
/// waiting for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): a big blob's
/// pages go to the disk while it is still being written, so its final
/// fsync waits for the tail only.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: sync_file_range reads no memory of ours; the descriptor is
    // borrowed from a live File.
    let rc = unsafe {
        nix::libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            len,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Major and minor numbers of a device number (`st_rdev`).
pub fn split_dev(rdev: u64) -> (u64, u64) {
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// How many times a resolution is retried when the kernel reports a
/// concurrent rename (`EAGAIN` from `RESOLVE_IN_ROOT` with `..`).
const RETRIES: usize = 32;

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// A path relative to a root, split into its parent and last name. The
/// name is one ordinary component: never empty, `.` or `..`.
struct Split<'p> {
    parent: &'p str,
    name: &'p OsStr,
}

/// Splits `rel` (absolute or relative, taken inside the root). None when it
/// names the root itself or ends in `.` or `..` (there is no last name to
/// act on without following).
fn split(rel: &str) -> Option<Split<'_>> {
    let rel = rel.trim_end_matches('/');
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some(Split {
        parent,
        name: OsStr::new(name),
    })
}

/// A directory that paths are resolved inside of, never outside.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens the directory at `path` (a trusted host path) as a root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| with_path(errno(e), "opening", path))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens the directory at `path` as a root, refusing a symlink as its
    /// last component: a destination the caller names in a directory
    /// another user may write (`build -o`), which they could have made a
    /// symlink to where root must not write.
    pub fn open_not_a_link(path: &Path) -> io::Result<Root> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a directory's name", path.display()),
            )
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = Root::open(parent)?;
        let fd = nix::fcntl::openat(
            &dir.fd,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symlink or not a directory: name the directory itself",
                    path.display()
                ),
            ),
            e => with_path(errno(e), "opening", path),
        })?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root of a mount held by descriptor (a [`detached_overlay`]);
    /// `path` names it in messages.
    pub fn from_mount(fd: OwnedFd, path: &Path) -> Root {
        Root {
            fd,
            path: path.to_path_buf(),
        }
    }

    /// Creates the directory at `path` (a trusted host path, with its
    /// parents) and opens it as a root.
    pub fn create(path: &Path) -> io::Result<Root> {
        std::fs::create_dir_all(path).map_err(|e| with_path(e, "creating", path))?;
        Root::open(path)
    }

    /// The host path the root was opened at (for messages and for handing
    /// the whole root to something else, such as a mount or a tar writer).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves `rel` inside the root with `flags` (a relative or absolute
    /// path; both are taken from the root).
    fn open_at(&self, rel: &str, flags: OFlag) -> io::Result<OwnedFd> {
        let rel = rel.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        for _ in 0..RETRIES {
            match openat2(&self.fd, rel, how(flags)) {
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => return Err(errno(e)),
                Ok(fd) => return Ok(fd),
            }
        }
        Err(io::Error::other(format!(
            "resolving {rel}: the tree kept changing"
        )))
    }

    /// The parent directory of `rel`, resolved inside the root, and the last
    /// name; `InvalidInput` when `rel` names no entry of its own.
    fn parent(&self, rel: &str) -> io::Result<(OwnedFd, OsString)> {
        let s = split(rel).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel:?} does not name an entry"),
            )
        })?;
        let dir = self.open_at(s.parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        Ok((dir, s.name.to_os_string()))
    }

    /// An `O_PATH` descriptor of `rel`; the last component is followed
    /// (inside the root) when `follow`.
    pub fn open_path(&self, rel: &str, follow: bool) -> io::Result<OwnedFd> {
        let flags = if follow {
            OFlag::O_PATH
        } else {
            OFlag::O_PATH | OFlag::O_NOFOLLOW
        };
        self.open_at(rel, flags)
    }

    /// Metadata of `rel`, not following a symlink at the end.
    pub fn lstat(&self, rel: &str) -> io::Result<Metadata> {
        File::from(self.open_path(rel, false)?).metadata()
    }

    /// Metadata of `rel`, following symlinks inside the root.
    pub fn stat(&self, rel: &str) -> io::Result<Metadata> {
        File::from(self.open_path(rel, true)?).metadata()
    }

    /// True when `rel` exists (a dangling symlink exists).
    pub fn exists(&self, rel: &str) -> bool {
        self.open_path(rel, false).is_ok()
    }

    /// The target of symlink `rel`.
    pub fn read_link(&self, rel: &str) -> io::Result<PathBuf> {
        let fd = self.open_path(rel, false)?;
        nix::fcntl::readlinkat(&fd, "")
            .map(PathBuf::from)
            .map_err(errno)
    }

    /// Opens `rel` for reading, following symlinks inside the root.
    pub fn open_read(&self, rel: &str) -> io::Result<File> {
        Ok(File::from(self.open_at(rel, OFlag::O_RDONLY)?))
    }

    /// Opens `rel` for reading only if it is a regular file (symlinks
    /// followed inside the root when `follow`): a FIFO would hang the
    /// reader and a device node would open the host's device, so neither
    /// is ever opened; the inode opened is the one checked.
    pub fn open_regular(&self, rel: &str, follow: bool) -> io::Result<File> {
        let file = File::from(self.open_path(rel, follow)?);
        let meta = file.metadata()?;
        let held = Held(OwnedFd::from(file));
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel} is not a regular file"),
            ));
        }
        held.open_file()
    }

    /// Opens the regular file `rel` (not followed) for writing in place.
    pub fn open_regular_write(&self, rel: &str) -> io::Result<File> {
        let held = Held(self.open_path(rel, false)?);
        if !File::from(held.0.try_clone()?).metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel} is not a regular file"),
            ));
        }
        held.reopen(OFlag::O_WRONLY)
    }

    /// Opens `rel` for reading, refusing a symlink at the end.
    pub fn open_read_nofollow(&self, rel: &str) -> io::Result<File> {
        Ok(File::from(
            self.open_at(rel, OFlag::O_RDONLY | OFlag::O_NOFOLLOW)?,
        ))
    }

    /// The names in directory `rel` (symlinks followed inside the root),
    /// sorted by bytes.
    pub fn read_dir(&self, rel: &str) -> io::Result<Vec<OsString>> {
        sorted_names(self.open_at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?)
    }

    /// `rel` with every symlink resolved inside the root, as a clean path
    /// from the root (`/` for the root itself).
    pub fn resolve(&self, rel: &str) -> io::Result<String> {
        let fd = self.open_path(rel, true)?;
        let real = self.real_of(&fd)?;
        let base = self.real_of(&self.fd)?;
        let inside = real.strip_prefix(&base).map_err(|_| {
            io::Error::other(format!(
                "{rel:?} resolved to {} outside {}",
                real.display(),
                base.display()
            ))
        })?;
        Ok(format!("/{}", inside.display()))
    }

    /// The host path `rel` resolves to inside the root: for handing an
    /// entry to something that takes paths (a bind mount). It holds no
    /// symlink, so the consumer opens it with `RESOLVE_NO_SYMLINKS` and a
    /// component swapped for a symlink in between fails instead of leading
    /// elsewhere.
    pub fn real_path(&self, rel: &str) -> io::Result<PathBuf> {
        let fd = self.open_path(rel, true)?;
        self.real_of(&fd)
    }

    fn real_of(&self, fd: &impl AsRawFd) -> io::Result<PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    /// A root for directory `rel` inside this one.
    pub fn sub(&self, rel: &str) -> io::Result<Root> {
        let fd = self.open_at(rel, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let path = self.real_of(&fd)?;
        Ok(Root { fd, path })
    }

    /// Creates directory `rel` (its parent must exist); `AlreadyExists` when
    /// something is there.
    pub fn mkdir(&self, rel: &str, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::sys::stat::mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(mode))
            .map_err(errno)
    }

    /// Creates directory `rel` and its missing parents (symlinks on the way
    /// followed inside the root), each made with `mode` and handed to
    /// `made` (to set owners); returns how many it made.
    pub fn mkdir_all(
        &self,
        rel: &str,
        mode: u32,
        made: &mut dyn FnMut(&str) -> io::Result<()>,
    ) -> io::Result<usize> {
        let mut so_far = String::new();
        let mut count = 0;
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            so_far.push('/');
            so_far.push_str(part);
            if part == ".." {
                continue;
            }
            match self.open_at(&so_far, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {}
                Err(e) => return Err(with_rel(e, "creating", &so_far)),
            }
            match self.mkdir(&so_far, mode) {
                Ok(()) => {
                    // mkdir honours the umask; the mode asked for is exact.
                    self.chmod(&so_far, mode)?;
                    count += 1;
                    made(&so_far)?;
                }
                // A dangling symlink: mkdir through it is not followed.
                Err(e) => return Err(with_rel(e, "creating", &so_far)),
            }
        }
        Ok(count)
    }

    /// Creates regular file `rel` for writing, replacing a file or symlink
    /// that is there (never writing through it). Its parent must exist.
    pub fn create_file(&self, rel: &str, mode: u32) -> io::Result<File> {
        let (dir, name) = self.parent(rel)?;
        let open = || {
            nix::fcntl::openat(
                &dir,
                name.as_os_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode & 0o7777),
            )
        };
        let fd = match open() {
            Err(Errno::EEXIST) => {
                unlink_entry(dir.as_fd(), &name)?;
                open().map_err(errno)?
            }
            other => other.map_err(errno)?,
        };
        Ok(File::from(fd))
    }

    /// Creates symlink `rel` pointing at `target`, replacing a non-directory.
    pub fn symlink(&self, target: &OsStr, rel: &str) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        match nix::unistd::symlinkat(target, &dir, name.as_os_str()) {
            Err(Errno::EEXIST) => {
                unlink_entry(dir.as_fd(), &name)?;
                nix::unistd::symlinkat(target, &dir, name.as_os_str()).map_err(errno)
            }
            other => other.map_err(errno),
        }
    }

    /// Hard-links `existing` (not followed) as `rel`, both in this root.
    pub fn hard_link(&self, existing: &str, rel: &str) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(existing)?;
        let (to_dir, to_name) = self.parent(rel)?;
        nix::unistd::linkat(
            &from_dir,
            from_name.as_os_str(),
            &to_dir,
            to_name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(errno)
    }

    /// Moves entry `rel` (not followed; its directory resolved inside the
    /// root) out to the host path `to`.
    pub fn move_out(&self, rel: &str, to: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::fcntl::renameat(&dir, name.as_os_str(), nix::fcntl::AT_FDCWD, to).map_err(errno)
    }

    /// Moves the entry `name` of this root's top directory to `name` in
    /// `dst`'s, both by descriptor: `EXDEV` across filesystems, and
    /// `ENOTEMPTY`/`EEXIST` over a directory that holds something.
    pub fn move_top_entry(&self, name: &OsStr, dst: &Root) -> io::Result<()> {
        nix::fcntl::renameat(&self.fd, name, &dst.fd, name).map_err(errno)
    }

    /// Moves the host path `from` into the root as `rel` (its directory
    /// resolved inside the root).
    pub fn move_in(&self, from: &Path, rel: &str) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::fcntl::renameat(nix::fcntl::AT_FDCWD, from, &dir, name.as_os_str()).map_err(errno)
    }

    /// Creates a device node or FIFO at `rel`.
    pub fn mknod(
        &self,
        rel: &str,
        kind: Special,
        mode: u32,
        major: u64,
        minor: u64,
    ) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        nix::sys::stat::mknodat(
            &dir,
            name.as_os_str(),
            sflag(kind),
            Mode::from_bits_truncate(mode & 0o7777),
            makedev(major, minor),
        )
        .map_err(errno)
    }

    /// Removes the entry `rel` (a file, a symlink, not followed, or a whole
    /// directory tree); a missing entry is fine.
    pub fn remove_all(&self, rel: &str) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        remove_tree(dir, &name)
    }

    /// Changes the owner of `rel` (a symlink itself, not its target).
    pub fn chown(&self, rel: &str, uid: u32, gid: u32) -> io::Result<()> {
        let fd = self.open_path(rel, false)?;
        nix::unistd::fchownat(
            &fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(errno)
    }

    /// Sets the permission bits of `rel`; a symlink is left alone (its
    /// mode means nothing and chmod would reach its target).
    pub fn chmod(&self, rel: &str, mode: u32) -> io::Result<()> {
        let fd = self.open_path(rel, false)?;
        let meta = File::from(fd.try_clone()?).metadata()?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        // fchmod does not take an O_PATH descriptor; its /proc magic link
        // names exactly the inode that was opened.
        std::fs::set_permissions(
            format!("/proc/self/fd/{}", fd.as_raw_fd()),
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )
    }

    /// Sets the access and modification times of `rel` (not followed).
    pub fn set_mtime(&self, rel: &str, secs: i64, nanos: i64) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        let t = TimeSpec::new(secs, nanos);
        nix::sys::stat::utimensat(
            &dir,
            name.as_os_str(),
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(errno)
    }

    /// Sets extended attribute `key` on `rel` (not followed).
    pub fn set_xattr(&self, rel: &str, key: &str, value: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        // The parent is pinned by its descriptor and the name is one
        // component that lsetxattr does not follow.
        let path = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        xattr::set(path, key, value)
    }

    /// Extended attribute `key` of `rel` (not followed).
    pub fn get_xattr(&self, rel: &str, key: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(s) = split(rel) else {
            return xattr::get(format!("/proc/self/fd/{}", self.fd.as_raw_fd()), key);
        };
        let dir = self.open_at(s.parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        xattr::get(
            Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(s.name),
            key,
        )
    }

    /// The root's own descriptor (for mounting onto it).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn unlink_entry(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}

/// Removes `name` in `dir` and everything below it, without recursion (a
/// tree's depth is bounded by memory, not by the stack) and without ever
/// following a symlink.
fn remove_tree(dir: OwnedFd, name: &OsStr) -> io::Result<()> {
    match nix::unistd::unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
        Err(e) => return Err(errno(e)),
    }
    // A stack of open directories, each with the child being emptied.
    let mut stack: Vec<(OwnedFd, OsString)> = vec![(dir, name.to_os_string())];
    while let Some((parent, child)) = stack.pop() {
        let fd = match nix::fcntl::openat(
            &parent,
            child.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(Errno::ENOTDIR | Errno::ELOOP) => {
                unlink_entry(parent.as_fd(), &child)?;
                continue;
            }
            Err(e) => return Err(errno(e)),
        };
        let mut subdir: Option<OsString> = None;
        {
            let mut d = nix::dir::Dir::from_fd(fd.try_clone()?).map_err(errno)?;
            for entry in d.iter() {
                let entry = entry.map_err(errno)?;
                let n = entry.file_name().to_bytes();
                if n == b"." || n == b".." {
                    continue;
                }
                let n = OsStr::from_bytes(n);
                match nix::unistd::unlinkat(&fd, n, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(Errno::EISDIR) | Err(Errno::EPERM) => {
                        subdir = Some(n.to_os_string());
                        break;
                    }
                    Err(e) => return Err(errno(e)),
                }
            }
        }
        match subdir {
            // Empty this one's subdirectory first, then come back.
            Some(sub) => {
                stack.push((parent, child));
                stack.push((fd, sub));
            }
            None => {
                match nix::unistd::unlinkat(&parent, child.as_os_str(), UnlinkatFlags::RemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(errno(e)),
                }
            }
        }
    }
    Ok(())
}

/// Removes the host directory tree at `path` (a trusted path) without
/// recursion and without following symlinks inside it; missing is fine.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to remove {}", path.display()),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = match nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(with_path(errno(e), "opening", parent)),
    };
    remove_tree(dir, name).map_err(|e| with_path(e, "removing", path))
}

fn with_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {}: {e}", path.display()))
}

fn with_rel(e: io::Error, action: &str, rel: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {rel}: {e}"))
}

/// The names in the directory `fd` is open on, but `.` and `..`, sorted by
/// bytes (the same order on every machine and locale).
fn sorted_names(fd: OwnedFd) -> io::Result<Vec<OsString>> {
    let mut dir = nix::dir::Dir::from_fd(fd).map_err(errno)?;
    let mut names: Vec<OsString> = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// What a walk needs of an entry's `lstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryStat {
    /// `st_mode`: the type and permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Inode number.
    pub ino: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Status change time (seconds, nanoseconds).
    pub ctime: (i64, i64),
}

impl From<&Metadata> for EntryStat {
    fn from(m: &Metadata) -> EntryStat {
        use std::os::unix::fs::MetadataExt;
        EntryStat {
            mode: m.mode(),
            size: m.size(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl EntryStat {
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & nix::libc::S_IFMT == nix::libc::S_IFDIR
    }

    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & nix::libc::S_IFMT == nix::libc::S_IFREG
    }

    /// True for a symlink.
    pub fn is_symlink(&self) -> bool {
        self.mode & nix::libc::S_IFMT == nix::libc::S_IFLNK
    }
}

/// An overlayfs mount made with the new mount API (fsopen, fsconfig,
/// fsmount) and attached nowhere: a descriptor of its root that no other
/// process sees and that goes with its last descriptor. `options` are
/// fsconfig's strings (`lowerdir`, `upperdir`, `workdir`); nosuid and
/// nodev always, read-only with `read_only`. Needs CAP_SYS_ADMIN.
pub fn detached_overlay(options: &[(&str, &str)], read_only: bool) -> io::Result<OwnedFd> {
    use nix::libc;
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, RawFd};
    let cstr = |s: &str| CString::new(s).map_err(io::Error::other);
    let check = |r: libc::c_long| -> io::Result<libc::c_long> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    let overlay = cstr("overlay")?;
    let options: Vec<(CString, CString)> = options
        .iter()
        .map(|(k, v)| Ok((cstr(k)?, cstr(v)?)))
        .collect::<io::Result<_>>()?;
    // SAFETY: fsopen, fsconfig and fsmount take the NUL-terminated strings
    // and descriptors above, which outlive the calls; each returned
    // descriptor is owned at once.
    let context = unsafe {
        OwnedFd::from_raw_fd(check(libc::syscall(
            libc::SYS_fsopen,
            overlay.as_ptr(),
            FSOPEN_CLOEXEC,
        ))? as RawFd)
    };
    for (key, value) in &options {
        // SAFETY: as above.
        unsafe {
            check(libc::syscall(
                libc::SYS_fsconfig,
                context.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            ))?;
        }
    }
    // SAFETY: as above.
    unsafe {
        check(libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        ))?;
    }
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if read_only {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    // SAFETY: as above.
    let mount = unsafe {
        OwnedFd::from_raw_fd(check(libc::syscall(
            libc::SYS_fsmount,
            context.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs,
        ))? as RawFd)
    };
    Ok(mount)
}

/// A directory open for a walk: its entries are listed, stat'ed and
/// opened by name relative to its descriptor, never by a path from `/`
/// (a path walk per entry cost a 20,000-file context's no-change rebuild
/// a third of its time), and never through a symlink.
pub struct Dir(OwnedFd);

impl Dir {
    /// Opens directory `path`, refusing a symlink at its end.
    pub fn open(path: &Path) -> io::Result<Dir> {
        nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(Dir)
        .map_err(|e| with_path(errno(e), "opening", path))
    }

    /// The entries' names, sorted by bytes.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        sorted_names(self.0.try_clone()?)
    }

    /// The `lstat` of entry `name`.
    pub fn lstat(&self, name: &OsStr) -> io::Result<EntryStat> {
        let st =
            nix::sys::stat::fstatat(&self.0, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
        Ok(EntryStat {
            mode: st.st_mode,
            size: u64::try_from(st.st_size).unwrap_or(0),
            ino: st.st_ino,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        })
    }

    /// True when entry `name` is an overlay whiteout (a 0:0 character
    /// device): a deletion in an upper directory.
    pub fn is_whiteout(&self, name: &OsStr) -> io::Result<bool> {
        let st =
            nix::sys::stat::fstatat(&self.0, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
        Ok(st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFCHR && st.st_rdev == 0)
    }

    /// Opens entry `name` for reading, refusing a symlink.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        nix::fcntl::openat(
            &self.0,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(errno)
    }

    /// Opens directory `rel` below this one: beneath it, and through no
    /// symlink at all.
    pub fn open_beneath(&self, rel: &Path) -> io::Result<Dir> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        openat2(&self.0, rel, how).map(Dir).map_err(errno)
    }

    /// The target of symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        nix::fcntl::readlinkat(&self.0, name)
            .map(PathBuf::from)
            .map_err(errno)
    }

    /// Holds entry `name` itself (`O_PATH`, a symlink not followed, a
    /// device or FIFO not opened) and its metadata read from that hold:
    /// what the caller then opens is what it stat'ed, even when the name
    /// is swapped for a symlink meanwhile.
    pub fn hold(&self, name: &OsStr) -> io::Result<(Held, Metadata)> {
        let fd = nix::fcntl::openat(
            &self.0,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        Ok((Held(OwnedFd::from(file)), meta))
    }

    /// The extended attributes of entry `name` (a symlink's own), as
    /// sorted (name, value) pairs. The directory is pinned by its
    /// descriptor and the name is one component that l*xattr does not
    /// follow.
    pub fn xattrs(&self, name: &OsStr) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        let path = Path::new(&format!("/proc/self/fd/{}", self.0.as_raw_fd())).join(name);
        let mut out = Vec::new();
        for key in xattr::list(&path)? {
            if let Some(value) = xattr::get(&path, &key)? {
                out.push((key, value));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The directory's own extended attributes, sorted.
    pub fn own_xattrs(&self) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        file_xattrs(&File::from(self.0.try_clone()?))
    }
}

/// The extended attributes of an open file, as sorted (name, value) pairs.
pub fn file_xattrs(file: &File) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    use xattr::FileExt;
    let mut out = Vec::new();
    for key in file.list_xattr()? {
        if let Some(value) = file.get_xattr(&key)? {
            out.push((key, value));
        }
    }
    out.sort();
    Ok(out)
}

/// An entry held by [`Dir::hold`]: opened again only as the kind it was
/// when it was stat'ed.
pub struct Held(OwnedFd);

impl Held {
    /// The held directory, opened for listing.
    pub fn open_dir(&self) -> io::Result<Dir> {
        nix::fcntl::openat(
            &self.0,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(Dir)
        .map_err(errno)
    }

    /// The held regular file, opened for reading: through its own
    /// descriptor's magic link, so the inode read is the one held, never
    /// what the name points at now.
    pub fn open_file(&self) -> io::Result<File> {
        self.reopen(OFlag::O_RDONLY)
    }

    /// The held inode opened again with `access` (read or write).
    fn reopen(&self, access: OFlag) -> io::Result<File> {
        let path = format!("/proc/self/fd/{}", self.0.as_raw_fd());
        nix::fcntl::open(
            path.as_str(),
            access | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(errno)
    }

    /// The held symlink's target.
    pub fn read_link(&self) -> io::Result<PathBuf> {
        nix::fcntl::readlinkat(&self.0, "")
            .map(PathBuf::from)
            .map_err(errno)
    }
}

/// Opens a host path that must contain no symlink at all (one that
/// [`Root::real_path`] returned): a component swapped for a symlink since
/// then makes this fail instead of leading elsewhere. `O_PATH`, for
/// mounting from.
pub fn open_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(nix::fcntl::AT_FDCWD, path, how).map_err(|e| with_path(errno(e), "opening", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf, Root) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside").unwrap();
        std::fs::write(outer.path().join("secret"), "outside").unwrap();
        let r = Root::open(&root).unwrap();
        (outer, root, r)
    }

    #[test]
    fn absolute_and_dotdot_symlinks_stay_inside() {
        let (outer, root, r) = tree();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("rel")).unwrap();
        symlink("../secret", root.join("up")).unwrap();
        let read = |p: &str| std::io::read_to_string(r.open_read(p).unwrap()).unwrap();
        assert_eq!(read("abs/passwd"), "inside");
        assert_eq!(read("rel/passwd"), "inside");
        assert_eq!(read("/../../etc/passwd"), "inside");
        assert!(r.open_read("up").is_err(), "../secret is /secret inside");
        assert_eq!(r.resolve("abs/passwd").unwrap(), "/etc/passwd");
        assert_eq!(r.real_path("rel").unwrap(), root.join("etc"));
        drop(outer);
    }

    #[test]
    fn writes_replace_symlinks_instead_of_following_them() {
        let (outer, root, r) = tree();
        symlink(outer.path().join("secret"), root.join("link")).unwrap();
        std::io::Write::write_all(&mut r.create_file("link", 0o644).unwrap(), b"new").unwrap();
        assert_eq!(
            std::fs::read_to_string(outer.path().join("secret")).unwrap(),
            "outside"
        );
        assert!(
            std::fs::symlink_metadata(root.join("link"))
                .unwrap()
                .is_file()
        );
        // A directory symlink on the way is followed inside the root.
        symlink("/etc", root.join("e")).unwrap();
        r.create_file("e/shadow", 0o600).unwrap();
        assert!(root.join("etc/shadow").is_file());
        // chmod and chown of a symlink never reach its target.
        symlink(outer.path().join("secret"), root.join("l2")).unwrap();
        r.chmod("l2", 0o777).unwrap();
        assert_ne!(
            std::fs::metadata(outer.path().join("secret"))
                .unwrap()
                .permissions(),
            std::os::unix::fs::PermissionsExt::from_mode(0o100777)
        );
    }

    #[test]
    fn magic_links_are_refused() {
        let (_outer, _root, r) = tree();
        r.mkdir_all("proc/self", 0o755, &mut |_| Ok(())).unwrap();
        // Inside the root /proc/self/fd/N is an ordinary (missing) path;
        // the host's magic link is never reached.
        assert!(r.open_read("/proc/self/fd/0").is_err());
    }

    #[test]
    fn remove_all_is_iterative_and_does_not_follow() {
        let (outer, root, r) = tree();
        let mut deep = root.join("deep");
        for _ in 0..3000 {
            deep.push("d");
        }
        // Paths this deep exceed PATH_MAX: make them a level at a time.
        let mut dir = nix::fcntl::open(&root, OFlag::O_PATH, Mode::empty()).unwrap();
        for name in std::iter::once("deep").chain(std::iter::repeat_n("d", 3000)) {
            nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o755)).unwrap();
            dir = nix::fcntl::openat(&dir, name, OFlag::O_PATH, Mode::empty()).unwrap();
        }
        symlink(outer.path(), root.join("out")).unwrap();
        r.remove_all("deep").unwrap();
        r.remove_all("out").unwrap();
        assert!(!root.join("deep").exists());
        assert!(outer.path().join("secret").exists());
        assert_eq!(
            r.parent("..").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    /// One step of a random tree: a directory, a file, or a symlink whose
    /// target is absolute, relative, looping or dangling.
    fn entry() -> impl Strategy<Value = (String, u8, String)> {
        let name = prop::sample::select(vec!["a", "b", "c", "..", "."]);
        let path = prop::collection::vec(name, 1..4).prop_map(|v| v.join("/"));
        let target = prop::collection::vec(
            prop::sample::select(vec!["a", "b", "..", "/", "c", "x"]),
            1..5,
        )
        .prop_map(|v| v.join("/"));
        (path, 0u8..3, target)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the tree and the path, a resolution lands inside.
        #[test]
        fn every_resolution_stays_inside(
            entries in prop::collection::vec(entry(), 1..12),
            probes in prop::collection::vec("[abc./]{0,12}", 1..8),
        ) {
            let (outer, root, r) = tree();
            for (path, kind, target) in &entries {
                let _ = match kind {
                    0 => r.mkdir_all(path, 0o755, &mut |_| Ok(())).map(drop),
                    1 => r.create_file(path, 0o644).map(drop),
                    _ => r.symlink(OsStr::new(target), path),
                };
            }
            let base = std::fs::canonicalize(&root).unwrap();
            for p in &probes {
                if let Ok(real) = r.real_path(p) {
                    prop_assert!(real.starts_with(&base), "{p} -> {}", real.display());
                }
                if let Ok(inside) = r.resolve(p) {
                    prop_assert!(inside.starts_with('/'));
                }
                let _ = r.create_file(&format!("{p}/f"), 0o644);
                let _ = r.mkdir_all(&format!("{p}/d/e"), 0o755, &mut |_| Ok(()));
            }
            // Nothing appeared beside the root.
            let mut names: Vec<_> = std::fs::read_dir(outer.path()).unwrap()
                .map(|e| e.unwrap().file_name()).collect();
            names.sort();
            prop_assert_eq!(names, vec![OsString::from("root"), OsString::from("secret")]);
        }
    }
}
