//! Filesystem calls std does not offer: device nodes (including overlayfs
//! whiteouts, which are character devices 0:0), FIFOs, the effective uid.

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use std::io;
use std::path::Path;

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

/// Creates a device node or FIFO at `path` (which must not exist).
pub fn make_special(
    path: &Path,
    kind: Special,
    mode: u32,
    major: u64,
    minor: u64,
) -> io::Result<()> {
    let flag = match kind {
        Special::Char => SFlag::S_IFCHR,
        Special::Block => SFlag::S_IFBLK,
        Special::Fifo => SFlag::S_IFIFO,
    };
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    mknod(path, flag, perm, makedev(major, minor)).map_err(io::Error::from)
}

/// Creates an overlayfs whiteout (a character device 0:0) at `path`.
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    make_special(path, Special::Char, 0, 0, 0)
}

/// True when the process runs with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Major and minor numbers of a device number (`st_rdev`).
pub fn split_dev(rdev: u64) -> (u64, u64) {
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}
