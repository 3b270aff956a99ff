//! What this host lets kiln do, found by trying (`kiln doctor`): a user
//! namespace, a mount namespace with an overlay mounted in it. Each try is
//! made in a child process that runs kiln's own `--version` after the
//! calls, so nothing here changes kiln's own process.

use nix::sched::CloneFlags;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `kiln --version` in a child that first calls `pre` (between fork
/// and exec: only async-signal-safe calls); the error is the first call's.
fn try_in_child(pre: impl FnMut() -> io::Result<()> + Send + Sync + 'static) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: `pre` makes only raw system calls (unshare, mount) on
    // memory prepared before the fork.
    unsafe {
        cmd.pre_exec(pre);
    }
    let status = cmd.spawn()?.wait()?;
    match status.success() {
        true => Ok(()),
        false => Err(io::Error::other(format!("the probe ended with {status}"))),
    }
}

/// Whether a user namespace can be made (what rootless kiln needs first).
pub fn user_namespace() -> io::Result<()> {
    try_in_child(|| nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(io::Error::from))
}

/// Whether a mount namespace can be made (in a new user namespace when
/// not root): what every container of kiln's needs before anything else.
pub fn mount_namespace() -> io::Result<()> {
    let flags = match super::fs::is_root() {
        true => CloneFlags::CLONE_NEWNS,
        false => CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS,
    };
    try_in_child(move || nix::sched::unshare(flags).map_err(io::Error::from))
        .map_err(|e| io::Error::new(e.kind(), format!("unshare(CLONE_NEWNS): {e}")))
}

/// Whether an overlay can be mounted in a new mount namespace (inside a
/// new user namespace too when not root): what every RUN and `kiln run`
/// does. `dir` is an empty directory for the probe's layers.
pub fn overlay_mount(dir: &Path) -> io::Result<()> {
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let target = c(&dir.join("merged"))?;
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.join("lower").display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let rootless = !super::fs::is_root();
    if rootless {
        data.push_str(",userxattr");
    }
    let data = CString::new(data).map_err(io::Error::other)?;
    let (overlay, fstype) = (c(Path::new("overlay"))?, c(Path::new("overlay"))?);
    // Rootless: the caller mapped to root in the new user namespace, as
    // kiln's init is (what `unshare -r` writes), so that the probe's
    // directories are its own there.
    let maps: Vec<(CString, Vec<u8>)> = [
        ("/proc/self/setgroups", "deny".to_string()),
        (
            "/proc/self/uid_map",
            format!("0 {} 1\n", nix::unistd::geteuid()),
        ),
        (
            "/proc/self/gid_map",
            format!("0 {} 1\n", nix::unistd::getegid()),
        ),
    ]
    .into_iter()
    .map(|(p, v)| Ok((c(Path::new(p))?, v.into_bytes())))
    .collect::<io::Result<_>>()?;
    try_in_child(move || {
        let flags = match rootless {
            true => CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS,
            false => CloneFlags::CLONE_NEWNS,
        };
        nix::sched::unshare(flags).map_err(io::Error::from)?;
        if rootless {
            for (path, value) in &maps {
                // SAFETY: open, write and close on a CString and a buffer
                // made before the fork.
                let written = unsafe {
                    let fd = nix::libc::open(path.as_ptr(), nix::libc::O_WRONLY);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let n = nix::libc::write(fd, value.as_ptr().cast(), value.len());
                    nix::libc::close(fd);
                    n
                };
                if written < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        // SAFETY: every pointer is to a CString made before the fork and
        // alive in this child.
        let rc = unsafe {
            nix::libc::mount(
                overlay.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        match rc {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    })
}

/// The process's effective capabilities (`CapEff` of /proc/self/status).
pub fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The process's seccomp mode (`Seccomp` of /proc/self/status: 2 when a
/// filter confines it, as inside a docker container).
pub fn seccomp_mode() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The filesystem type of `path` (statfs's magic, named where kiln cares).
pub fn filesystem(path: &Path) -> io::Result<String> {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
        statfs,
    };
    let st = statfs(path).map_err(io::Error::from)?;
    let t = st.filesystem_type();
    Ok(match t {
        _ if t == EXT4_SUPER_MAGIC => "ext4".into(),
        _ if t == XFS_SUPER_MAGIC => "xfs".into(),
        _ if t == BTRFS_SUPER_MAGIC => "btrfs".into(),
        _ if t == TMPFS_MAGIC => "tmpfs".into(),
        _ if t == OVERLAYFS_SUPER_MAGIC => "overlay".into(),
        other => format!("{:#x}", other.0),
    })
}
