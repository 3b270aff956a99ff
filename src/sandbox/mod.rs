//! Everything that needs `unsafe`, `nix` or `libc` lives here; the rest of
//! the crate compiles under `#![deny(unsafe_code)]`: containers (namespaces,
//! overlay, pivot_root, cgroups, capabilities, signals) and the few
//! filesystem calls std does not offer.

pub mod cgroup;
pub mod container;
mod copyroot;
pub mod devices;
pub mod emulator;
pub mod fs;
pub mod init;
pub mod isolation;
pub mod net;
pub mod netlink;
pub mod netns;
pub mod probe;
pub mod process;
mod rootfs;
pub mod seccomp;
pub mod spec;
mod sys;
pub mod tty;
pub mod user;
pub mod userns;

pub use container::{Console, Io, Prestart, SandboxError, Stdin, run};
pub use spec::{
    Bind, ContainerDirs, ContainerLock, Limits, Network, Rlimit, SeccompProfile, Spec, Tmpfs,
};

/// Removes what a container whose kiln died left outside its directory:
/// its cgroups, after killing whatever still runs in them.
pub fn reclaim(id: &str) {
    cgroup::reclaim(id);
}
