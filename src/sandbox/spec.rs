//! What a container is made of: the data the host side hands to the init
//! inside the container (as JSON on a pipe).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Network mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network stack.
    #[default]
    Host,
    /// A new network namespace with only loopback.
    None,
}

/// A bind mount from the host into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container (resolved inside its root).
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// `source` is a path kiln resolved inside a root ([`super::fs::Root::real_path`]):
    /// it holds no symlink, so the init opens it refusing any and mounts
    /// that descriptor. A component swapped for a symlink since then fails
    /// the mount instead of leading elsewhere.
    #[serde(default)]
    pub exact: bool,
    /// Mounted nodev: a device node in it opens nothing (every bind a
    /// build makes: a stage, a cache, a context copy).
    #[serde(default)]
    pub nodev: bool,
    /// kiln's own directory (a build's cache mount), which
    /// `--isolation=chroot` may move into the root and back.
    #[serde(default)]
    pub movable: bool,
}

/// An empty tmpfs inside the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Path inside the container.
    pub target: String,
    /// Size limit in bytes.
    pub size: Option<u64>,
}

/// The seccomp filter a container's process runs under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompProfile {
    /// Docker's default profile (as BuildKit's RUN and docker run apply).
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format, read on the host.
    Json(String),
    /// A filter the host compiled ([`super::seccomp::Program::to_words`]):
    /// what the host sends the init, so that no container parses and
    /// compiles the profile again.
    Compiled {
        /// `SECCOMP_FILTER_FLAG_*`.
        flags: u32,
        /// One BPF instruction a word.
        program: Vec<u64>,
    },
}

/// Resource limits (cgroups).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (no swap beyond it).
    pub memory: Option<u64>,
    /// CPU quota in CPUs (`1.5`).
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
    /// The cgroup the container's groups are made in (`--cgroup-parent`,
    /// checked by `cgroup::check_parent`) instead of `kiln`.
    #[serde(default)]
    pub parent: Option<String>,
    /// Memory plus swap in bytes (`--memory-swap`; -1: unlimited swap).
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// CPU shares, the relative weight (`--cpu-shares`).
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// CPUs the processes may run on (`--cpuset-cpus 0-1`).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    /// Device rules allowed beyond Docker's defaults (`--device`: `c 10:229 rwm`).
    #[serde(default)]
    pub devices: Vec<String>,
    /// The memory's swappiness, 0-100 (`--memory-swappiness`; cgroup v1).
    #[serde(default)]
    pub swappiness: Option<u64>,
    /// A group of its own even without a limit: a RUN step on cgroup v2,
    /// whose cgroup namespace is rooted there (and its device program
    /// attached), as BuildKit's runc makes one for every step.
    #[serde(default)]
    pub group: bool,
}

impl Limits {
    /// True when no limit is set (no group is made unless [`Limits::group`]).
    pub fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.cpus.is_none()
            && self.pids.is_none()
            && self.memory_swap.is_none()
            && self.cpu_shares.is_none()
            && self.cpuset_cpus.is_none()
            && self.swappiness.is_none()
            && self.devices.is_empty()
    }
}

/// Everything the init needs to set up and start the container's process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Read-only layer snapshots, top layer first (overlay lowerdirs).
    pub lower: Vec<PathBuf>,
    /// The writable overlay upper directory.
    pub upper: PathBuf,
    /// The overlay work directory (same filesystem as `upper`).
    pub work: PathBuf,
    /// Where the overlay is mounted before pivot_root.
    pub rootfs: PathBuf,
    /// Mount the overlay `volatile` (build steps: no sync on unmount).
    pub volatile: bool,
    /// Remount the root read-only.
    pub read_only: bool,
    /// argv of the process (argv[0] looked up in PATH inside the container).
    pub argv: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory inside the container (created if missing).
    pub cwd: String,
    /// `user[:group]`, names resolved in the container's /etc/passwd and /etc/group.
    pub user: String,
    /// The container's hostname.
    pub hostname: String,
    /// Network mode.
    pub network: Network,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// tmpfs mounts (after the binds).
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// kiln is not root: the container runs in a user namespace that maps
    /// the caller to root (overlay with userxattr, devices bind-mounted).
    #[serde(default)]
    pub rootless: bool,
    /// The container's own cgroups, shown read-only at /sys/fs/cgroup
    /// (set by kiln once it made them, before the spec is sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<OwnMount>,
    /// A cgroup namespace of its own (`--cgroupns`): None is docker's
    /// default, private on cgroup v2 (where RUN gets one too, as
    /// BuildKit's), the host's on v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroupns: Option<bool>,
    /// No namespaces: the init chroots into `rootfs`, a copy of the
    /// layers (set by kiln under `--isolation=chroot`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chroot: bool,
    /// The process's stdio is a pty: it becomes its controlling terminal.
    #[serde(default)]
    pub tty: bool,
    /// Content of the generated /etc/hosts, /etc/hostname, /etc/resolv.conf,
    /// written in this directory and bind-mounted.
    pub etc_dir: PathBuf,
    /// The seccomp filter.
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// Set no_new_privs before exec (`--security-opt no-new-privileges`).
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Size of /dev/shm in bytes (Docker's default: 64 MiB).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// Resource limits set before exec (`--ulimit`).
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// The capabilities the process keeps (`CAP_CHOWN`, ...); None:
    /// Docker's default set (`--cap-add`, `--cap-drop`, `--privileged`).
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// Supplementary groups added (`--group-add`: names or gids).
    #[serde(default)]
    pub extra_groups: Vec<String>,
    /// Namespaced sysctls set before the process starts (`--sysctl`),
    /// checked by [`check_sysctl`].
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
    /// The host's UTS namespace (`--uts host`): no hostname of its own.
    #[serde(default)]
    pub host_uts: bool,
    /// The host's IPC namespace (`--ipc host`).
    #[serde(default)]
    pub host_ipc: bool,
}

/// Checks a `--sysctl KEY=VALUE` as docker does: only the sysctls the
/// container's own namespaces hold (IPC: `kernel.msg*`, `kernel.sem`,
/// `kernel.shm*`, `fs.mqueue.*`; network: `net.*`, and only with a network
/// namespace of its own).
pub fn check_sysctl(key: &str, own_network: bool) -> Result<(), String> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let safe_name = !key.is_empty()
        && key.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !safe_name {
        return Err(format!("sysctl {key:?} is not a sysctl name"));
    }
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key.starts_with("net.") {
        return match own_network {
            true => Ok(()),
            false => Err(format!(
                "sysctl {key:?} is not allowed in the host's network namespace (use --network none)"
            )),
        };
    }
    Err(format!(
        "sysctl {key:?} is not allowed: it is not namespaced (only IPC and network sysctls are)"
    ))
}

/// One `--ulimit NAME=SOFT[:HARD]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Docker's name: `nofile`, `nproc`, `core`, `stack`, ...
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

impl Rlimit {
    /// The names Docker accepts, with the resource each sets.
    pub const NAMES: [&'static str; 16] = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];

    /// Parses `NAME=SOFT[:HARD]` as `docker build --ulimit` does (`-1` is
    /// unlimited).
    pub fn parse(text: &str) -> Result<Rlimit, String> {
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit {text:?}: use NAME=SOFT[:HARD]"))?;
        if !Self::NAMES.contains(&name) {
            return Err(format!(
                "invalid ulimit type: {name} (one of {})",
                Self::NAMES.join(", ")
            ));
        }
        let number = |v: &str| -> Result<u64, String> {
            match v {
                "-1" => Ok(u64::MAX),
                v => v
                    .parse::<u64>()
                    .map_err(|_| format!("invalid ulimit {text:?}: {v:?} is not a number")),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (number(s)?, number(h)?),
            None => (number(values)?, number(values)?),
        };
        if soft > hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
        Ok(Rlimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }
}

/// The directories of one container (under the store's `containers/<id>`):
/// overlay upper and work dirs, the mount point, generated /etc files and
/// an empty lowerdir for images with no layer.
#[derive(Debug)]
pub struct ContainerDirs {
    /// Overlay upper directory: the container's changes.
    pub upper: PathBuf,
    /// Overlay work directory.
    pub work: PathBuf,
    /// Mount point of the root.
    pub rootfs: PathBuf,
    /// Generated hosts, hostname and resolv.conf.
    pub etc: PathBuf,
    /// An empty lowerdir (overlay needs one).
    pub empty: PathBuf,
    /// Held while the container runs: a dead kiln's containers are found
    /// by their unheld lock.
    pub lock: ContainerLock,
}

/// The lock file of a running container (`containers/<id>/lock`), locked
/// for as long as this value lives. Dropped normally (the container is
/// done), it is removed; a kiln killed outright leaves it unlocked, and
/// the next kiln that opens the store reclaims the container
/// ([`crate::store::Store::open`]).
#[derive(Debug)]
pub struct ContainerLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl ContainerLock {
    /// Creates and locks `dir/lock` (a monitor takes it for the
    /// container it runs); fails when a live kiln holds it. The file is
    /// locked before it has its name: another kiln's `Store::open` never
    /// sees it unheld, which would mean a dead kiln's container to reclaim.
    pub fn take(dir: &std::path::Path) -> std::io::Result<ContainerLock> {
        use std::io::ErrorKind;
        static TAKES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = dir.join("lock");
        let n = TAKES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".lock.{}.{n}", std::process::id()));
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&tmp)?;
        let result = (|| {
            file.try_lock().map_err(std::io::Error::other)?;
            // A monitor killed a moment ago holds its lock until the last
            // of its threads is gone: give it that moment.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                // The name is taken by a link, which fails when it is
                // there: of two takers, one gets it (a rename would let
                // both believe they had it).
                match std::fs::hard_link(&tmp, &path) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                let old = match std::fs::File::options().write(true).open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                match old.try_lock() {
                    // A dead kiln's: taken away under its own lock (so two
                    // takers never both remove), if the name is still it.
                    Ok(()) => {
                        if same_file(&old, &path) {
                            std::fs::remove_file(&path)?;
                        }
                    }
                    Err(_) if std::time::Instant::now() > deadline => {
                        return Err(std::io::Error::other("the container is in use"));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        result.map(|()| ContainerLock { path, _file: file })
    }

    /// True when a live kiln holds the lock of the container in `dir`;
    /// false when it has none (it finished) or nobody holds it.
    pub fn held(dir: &std::path::Path) -> Option<bool> {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join("lock"))
            .ok()?;
        Some(file.try_lock().is_err())
    }
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        // Only its own: the name is ours while we hold the file.
        if same_file(&self._file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// True when `path` names the open `file`.
fn same_file(file: &std::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl ContainerDirs {
    /// Creates the directories in `dir` and writes /etc files for `hostname`.
    pub fn create(
        dir: &std::path::Path,
        hostname: &str,
        extra_hosts: &[(String, String)],
    ) -> std::io::Result<ContainerDirs> {
        std::fs::create_dir_all(dir)?;
        // The lock first: a directory is never seen unlocked while made.
        let lock = ContainerLock::take(dir)?;
        let dirs = ContainerDirs {
            upper: dir.join("upper"),
            work: dir.join("work"),
            rootfs: dir.join("rootfs"),
            etc: dir.join("etc"),
            empty: dir.join("empty"),
            lock,
        };
        for d in [
            &dirs.upper,
            &dirs.work,
            &dirs.rootfs,
            &dirs.etc,
            &dirs.empty,
        ] {
            std::fs::create_dir_all(d)?;
        }
        let files = [
            (
                "hosts",
                format!(
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n{}",
                    extra_hosts
                        .iter()
                        .map(|(h, ip)| format!("{ip}\t{h}\n"))
                        .collect::<String>()
                ),
            ),
            ("hostname", format!("{hostname}\n")),
            (
                "resolv.conf",
                std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
        ];
        for (name, content) in files {
            std::fs::write(dirs.etc.join(name), content)?;
        }
        Ok(dirs)
    }
}

/// One of a container's cgroups as it sees it: `host` (the group's
/// directory) mounted at `/sys/fs/cgroup/NAME`, NAME empty for cgroup v2's
/// one hierarchy (at `/sys/fs/cgroup` itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnMount {
    /// The group's directory on the host.
    pub host: PathBuf,
    /// Its directory under /sys/fs/cgroup (`memory`, `cpu,cpuacct`).
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::{ContainerLock, Rlimit};

    #[test]
    fn a_container_lock_has_one_holder_and_a_dead_ones_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A dead kiln's lock: the file is there, nobody holds it.
        std::fs::write(dir.path().join("lock"), b"").unwrap();
        let first = ContainerLock::take(dir.path()).unwrap();
        assert_eq!(ContainerLock::held(dir.path()), Some(true));
        // Threads racing for it while it is held: none gets it.
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || ContainerLock::take(&d).is_ok())
            })
            .collect();
        assert!(racers.into_iter().all(|r| !r.join().unwrap()));
        // A loser removed nothing: the holder's name is still there.
        assert_eq!(ContainerLock::held(dir.path()), Some(true));
        drop(first);
        assert_eq!(ContainerLock::held(dir.path()), None);
        // Freed, exactly one of several racers gets it.
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || ContainerLock::take(&d).ok())
            })
            .collect();
        let held: Vec<ContainerLock> = racers
            .into_iter()
            .filter_map(|r| r.join().unwrap())
            .collect();
        assert_eq!(held.len(), 1);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lock"], "no temporary file is left");
    }

    #[test]
    fn ulimits_parse_as_docker_reads_them() {
        let l = Rlimit::parse("nofile=1024:2048").unwrap();
        assert_eq!((l.name.as_str(), l.soft, l.hard), ("nofile", 1024, 2048));
        let l = Rlimit::parse("core=-1").unwrap();
        assert_eq!((l.soft, l.hard), (u64::MAX, u64::MAX));
        assert_eq!(
            Rlimit::parse("nproc=5:4").unwrap_err(),
            "ulimit soft limit must be less than or equal to hard limit: 5 > 4"
        );
        assert!(
            Rlimit::parse("files=1")
                .unwrap_err()
                .starts_with("invalid ulimit type: files")
        );
        assert!(Rlimit::parse("nofile").is_err());
        assert!(Rlimit::parse("nofile=x").is_err());
    }
}
