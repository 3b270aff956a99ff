//! The syscalls that build a container's root, behind a small trait so that
//! their order is an ordinary unit test (youki's `syscall/` pattern).

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// What a mount target inside the root is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory (created if missing).
    Dir,
    /// A file (created empty if missing).
    File,
    /// Whatever is there; missing is `NotFound` (masked paths).
    Existing,
}

/// The calls container set-up makes.
pub trait Sys {
    /// mount(2).
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()>;
    /// A bind (or other) mount onto `target`, resolved inside `root` as if
    /// chrooted (symlinks cannot lead out), created as `kind` if missing.
    // mount(2)'s five arguments plus where and what to resolve the target as.
    #[allow(clippy::too_many_arguments)]
    fn mount_in_root(
        &self,
        source: &str,
        root: &Path,
        target: &str,
        kind: Kind,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()>;
    /// mkdir -p.
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates a character device.
    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> io::Result<()>;
    /// symlink(2).
    fn symlink(&self, target: &str, path: &Path) -> io::Result<()>;
    /// Creates an empty file (a bind-mount target).
    fn touch(&self, path: &Path) -> io::Result<()>;
    /// pivot_root into `root` and detach the old root.
    fn pivot_root(&self, root: &Path) -> io::Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Opens `path`, a host path that must hold no symlink, for mounting
    /// from (None where there is nothing to pin, in tests).
    fn open_exact(&self, path: &Path) -> io::Result<Option<OwnedFd>>;
    /// Refuses `target` inside `root` when it is there but is not a real
    /// directory (a symlink would move /proc or /dev, and with them every
    /// mask, somewhere else). Missing is fine: it is created.
    fn real_dir(&self, root: &Path, target: &str) -> io::Result<()>;
}

/// The real thing.
pub struct Real;

fn io(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

impl Sys for Real {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        let data = (!data.is_empty()).then_some(data);
        let fstype = (!fstype.is_empty()).then_some(fstype);
        mount(Some(source), target, fstype, flags, data)
            .map_err(|e| with_path(io(e), "mounting", target))
    }

    fn mount_in_root(
        &self,
        source: &str,
        root: &Path,
        target: &str,
        kind: Kind,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        let fd = open_in_root(root, target, kind)?;
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        // An empty source binds the target onto itself (to remount it).
        let source = if source.is_empty() {
            proc_path.as_str()
        } else {
            source
        };
        let data = (!data.is_empty()).then_some(data);
        let fstype = (!fstype.is_empty()).then_some(fstype);
        mount(Some(source), proc_path.as_str(), fstype, flags, data)
            .map_err(|e| with_path(io(e), "mounting", Path::new(target)))
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::create_dir_all(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
    }

    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> io::Result<()> {
        super::fs::make_special(path, super::fs::Special::Char, mode, major, minor)?;
        // mknod honours the umask; devices need their exact mode.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
    }

    fn symlink(&self, target: &str, path: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, path)
    }

    fn touch(&self, path: &Path) -> io::Result<()> {
        std::fs::File::create(path).map(drop)
    }

    fn pivot_root(&self, root: &Path) -> io::Result<()> {
        // pivot_root(".", ".") stacks the old root under the new one; a lazy
        // unmount then removes it, with no directory left behind.
        nix::unistd::chdir(root).map_err(io)?;
        nix::unistd::pivot_root(".", ".").map_err(io)?;
        umount2(".", MntFlags::MNT_DETACH).map_err(io)?;
        nix::unistd::chdir("/").map_err(io)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(io)
    }

    fn open_exact(&self, path: &Path) -> io::Result<Option<OwnedFd>> {
        super::fs::open_no_symlinks(path).map(Some)
    }

    fn real_dir(&self, root: &Path, target: &str) -> io::Result<()> {
        let root_fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = match openat2(&root_fd, target.trim_start_matches('/'), how) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(with_path(io(e), "looking up", Path::new(target))),
        };
        let meta = std::fs::File::from(fd).metadata()?;
        if meta.is_dir() {
            return Ok(());
        }
        let what = if meta.file_type().is_symlink() {
            "a symlink"
        } else {
            "not a directory"
        };
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{target} in the image is {what}: refusing to mount over it (it must be a real directory)"
            ),
        ))
    }
}

fn with_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {}: {e}", path.display()))
}

/// Opens `target` inside `root` with chroot semantics (RESOLVE_IN_ROOT: an
/// absolute symlink or `..` stays inside), creating the last component (and
/// missing parents) as `kind`. Returns an O_PATH descriptor to mount onto.
pub fn open_in_root(root: &Path, target: &str, kind: Kind) -> io::Result<OwnedFd> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    let how = |flags: OFlag| {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    let rel = target.trim_start_matches('/');
    if rel.is_empty() {
        return openat2(&root_fd, ".", how(OFlag::O_PATH)).map_err(io);
    }
    match openat2(&root_fd, rel, how(OFlag::O_PATH)) {
        Ok(fd) => return Ok(fd),
        Err(e) if kind == Kind::Existing => return Err(io(e)),
        Err(_) => {}
    }
    // Create parents one component at a time, each resolved in the root.
    let mut parent = String::new();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let path = if parent.is_empty() {
            part.to_string()
        } else {
            format!("{parent}/{part}")
        };
        let last = i + 1 == parts.len();
        if openat2(&root_fd, path.as_str(), how(OFlag::O_PATH)).is_err() {
            let dir = if parent.is_empty() {
                openat2(&root_fd, ".", how(OFlag::O_PATH | OFlag::O_DIRECTORY)).map_err(io)?
            } else {
                openat2(
                    &root_fd,
                    parent.as_str(),
                    how(OFlag::O_PATH | OFlag::O_DIRECTORY),
                )
                .map_err(io)?
            };
            let name = CString::new(*part).map_err(|_| io::Error::other("NUL in path"))?;
            if last && kind == Kind::File {
                let f = nix::fcntl::openat(
                    &dir,
                    name.as_c_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                );
                match f {
                    Ok(_) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(io(e)),
                }
            } else {
                match nix::sys::stat::mkdirat(
                    &dir,
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(io(e)),
                }
            }
        }
        parent = path;
    }
    openat2(&root_fd, rel, how(OFlag::O_PATH)).map_err(io)
}

/// A fake that records calls, for ordering tests; mounts of the type
/// `fail` fail with EPERM.
#[cfg(test)]
pub struct Recorder(pub std::cell::RefCell<Vec<String>>, pub &'static str);

#[cfg(test)]
impl Sys for Recorder {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        let ro = if flags.contains(MsFlags::MS_RDONLY) {
            " ro"
        } else {
            ""
        };
        let kind = if flags.contains(MsFlags::MS_BIND) {
            "bind"
        } else {
            fstype
        };
        let data = if data.is_empty() {
            String::new()
        } else {
            format!(" [{data}]")
        };
        self.0.borrow_mut().push(format!(
            "mount {kind} {source} {}{ro}{data}",
            target.display()
        ));
        Ok(())
    }

    fn mount_in_root(
        &self,
        source: &str,
        _root: &Path,
        target: &str,
        _kind: Kind,
        fstype: &str,
        flags: MsFlags,
        _data: &str,
    ) -> io::Result<()> {
        if !self.1.is_empty() && fstype == self.1 {
            return Err(io::Error::from_raw_os_error(nix::libc::EPERM));
        }
        let kind = if flags.contains(MsFlags::MS_BIND) {
            "bind"
        } else {
            fstype
        };
        let ro = if flags.contains(MsFlags::MS_RDONLY) {
            " ro"
        } else {
            ""
        };
        self.0
            .borrow_mut()
            .push(format!("mount-in-root {kind} {source} {target}{ro}"));
        Ok(())
    }

    fn mkdir_all(&self, path: &Path, _mode: u32) -> io::Result<()> {
        self.0
            .borrow_mut()
            .push(format!("mkdir {}", path.display()));
        Ok(())
    }

    fn mknod_char(&self, path: &Path, _mode: u32, major: u64, minor: u64) -> io::Result<()> {
        self.0
            .borrow_mut()
            .push(format!("mknod {} {major}:{minor}", path.display()));
        Ok(())
    }

    fn symlink(&self, target: &str, path: &Path) -> io::Result<()> {
        self.0
            .borrow_mut()
            .push(format!("symlink {} -> {target}", path.display()));
        Ok(())
    }

    fn touch(&self, path: &Path) -> io::Result<()> {
        self.0
            .borrow_mut()
            .push(format!("touch {}", path.display()));
        Ok(())
    }

    fn pivot_root(&self, root: &Path) -> io::Result<()> {
        self.0
            .borrow_mut()
            .push(format!("pivot_root {}", root.display()));
        Ok(())
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.0.borrow_mut().push(format!("sethostname {name}"));
        Ok(())
    }

    fn open_exact(&self, path: &Path) -> io::Result<Option<OwnedFd>> {
        self.0
            .borrow_mut()
            .push(format!("open-exact {}", path.display()));
        Ok(None)
    }

    fn real_dir(&self, _root: &Path, target: &str) -> io::Result<()> {
        self.0.borrow_mut().push(format!("real-dir {target}"));
        Ok(())
    }
}
