//! The container's root: overlay, /proc, a minimal /dev, read-only /sys,
//! generated /etc files, bind mounts, Docker's masked and read-only paths,
//! then pivot_root. Every call goes through [`Sys`].

use super::fs::{Root, Special};
use super::spec::Spec;
use super::sys::{Kind, Real, Sys};
use nix::mount::MsFlags;
use std::ffi::OsStr;
use std::io;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// /proc files Docker hides behind /dev/null.
const MASKED_FILES: [&str; 7] = [
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/interrupts",
];
/// Directories Docker hides behind an empty read-only tmpfs.
const MASKED_DIRS: [&str; 3] = ["proc/acpi", "proc/scsi", "sys/firmware"];
/// /proc entries Docker makes read-only.
const READ_ONLY: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];
/// Device nodes of a minimal /dev: name, major, minor.
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The container's own cgroups at /sys/fs/cgroup, read-only, where
/// docker's containers find theirs (runtimes such as the JVM size
/// themselves by `memory.limit_in_bytes`): cgroup v1's hierarchies each
/// under a read-only tmpfs, with a link per controller of a shared one
/// (`cpu` -> `cpu,cpuacct`); cgroup v2's one group at the root. Only the
/// container's groups, never a hierarchy's root: the host's totals stay
/// the host's.
fn cgroups(
    sys: &impl Sys,
    root: &Path,
    own: &[super::spec::OwnMount],
    private: bool,
) -> io::Result<()> {
    let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let read_only = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked;
    let bind = |host: &Path, target: &str| -> io::Result<()> {
        let host = host.display().to_string();
        sys.mount_in_root(&host, root, target, Kind::Dir, "", MsFlags::MS_BIND, "")?;
        sys.mount_in_root("", root, target, Kind::Dir, "", read_only, "")
    };
    match own {
        [] => Ok(()),
        // In a cgroup namespace of its own, cgroup2 mounted anew shows
        // the container's group as its root, as docker's do on v2.
        [v2] if v2.name.is_empty() && private => {
            let cgroup2 = || {
                sys.mount_in_root(
                    "cgroup2",
                    root,
                    "/sys/fs/cgroup",
                    Kind::Dir,
                    "cgroup2",
                    locked | MsFlags::MS_RDONLY,
                    "",
                )
            };
            match cgroup2() {
                // Rootless, /sys is the host's bound whole, its cgroup2
                // included, and a filesystem is not mounted again on its
                // own mount's root: a tmpfs goes between.
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                    let top = "/sys/fs/cgroup";
                    sys.mount_in_root("tmpfs", root, top, Kind::Dir, "tmpfs", locked, "mode=755")?;
                    cgroup2()
                }
                other => other,
            }
        }
        [v2] if v2.name.is_empty() => bind(&v2.host, "/sys/fs/cgroup"),
        _ => {
            let top = "/sys/fs/cgroup";
            sys.mount_in_root("tmpfs", root, top, Kind::Dir, "tmpfs", locked, "mode=755")?;
            for m in own.iter().filter(|m| !m.name.is_empty()) {
                bind(&m.host, &format!("{top}/{}", m.name))?;
                for part in m.name.split(',').filter(|p| *p != m.name) {
                    // `name=systemd` is no controller's name.
                    if !part.contains('=') && !own.iter().any(|o| o.name == part) {
                        sys.symlink(&m.name, &root.join("sys/fs/cgroup").join(part))?;
                    }
                }
            }
            sys.mount_in_root(
                "tmpfs",
                root,
                top,
                Kind::Dir,
                "tmpfs",
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
                "mode=755",
            )
        }
    }
}

/// Sets up the root described by `spec` and pivots into it.
pub fn setup(sys: &impl Sys, spec: &Spec) -> io::Result<()> {
    let root = spec.rootfs.as_path();
    // Nothing mounted here may propagate back to the host.
    sys.mount(
        "none",
        Path::new("/"),
        "",
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        "",
    )?;
    sys.mkdir_all(root, 0o755)?;
    // One snapshot twice (an image with two identical layers, such as the
    // empty layers of steps that change nothing) is an overlap overlayfs
    // refuses (ELOOP). The topmost copy holds all the lower one holds, so
    // the lower copies go.
    let mut lower: Vec<String> = Vec::with_capacity(spec.lower.len());
    for p in &spec.lower {
        let p = p.display().to_string();
        if !lower.contains(&p) {
            lower.push(p);
        }
    }
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        spec.upper.display(),
        spec.work.display()
    );
    if spec.volatile {
        data.push_str(",volatile");
    }
    if spec.rootless {
        // Unprivileged overlay keeps its metadata in user.* xattrs.
        data.push_str(",userxattr");
    }
    // nodev: a device node in the image, or one a process makes with mknod,
    // opens nothing. Docker's devices (null, zero, ...) are bind mounts of
    // their own below, the only nodes that work (Docker's device rules,
    // on cgroup v1 and v2, rootful and rootless, at no cost per container).
    sys.mount("overlay", root, "overlay", MsFlags::MS_NODEV, &data)?;

    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // /proc and /dev carry the masks and the device nodes: an image must
    // not move them with a symlink (runc refuses this too).
    sys.real_dir(root, "/proc")?;
    sys.real_dir(root, "/dev")?;
    // /sys too: the cgroup links below are made by host path under it.
    sys.real_dir(root, "/sys")?;
    sys.mount_in_root("proc", root, "/proc", Kind::Dir, "proc", nosuid, "")?;
    sys.mount_in_root(
        "tmpfs",
        root,
        "/dev",
        Kind::Dir,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        "mode=755,size=65536k",
    )?;
    let dev = root.join("dev");
    for (name, major, minor) in DEVICES {
        if spec.rootless {
            // mknod needs CAP_MKNOD in the host's namespace: bind the host's.
            sys.touch(&dev.join(name))?;
            sys.mount(
                &format!("/dev/{name}"),
                &dev.join(name),
                "",
                MsFlags::MS_BIND,
                "",
            )?;
        } else {
            sys.mknod_char(&dev.join(name), 0o666, major, minor)?;
        }
    }
    sys.mkdir_all(&dev.join("pts"), 0o755)?;
    sys.mount(
        "devpts",
        &dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        // gid 5 (tty) exists only when the namespace maps it.
        if spec.rootless {
            "newinstance,ptmxmode=0666,mode=0620"
        } else {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        },
    )?;
    sys.mkdir_all(&dev.join("shm"), 0o1777)?;
    let shm = match spec.shm_size {
        Some(bytes) => format!("mode=1777,size={bytes}"),
        None => "mode=1777,size=65536k".to_string(),
    };
    sys.mount("shm", &dev.join("shm"), "tmpfs", nosuid, &shm)?;
    // Each device its own mount (keeping its device semantics), then /dev
    // itself nodev: a node made later in /dev opens nothing.
    for (name, _, _) in DEVICES {
        let path = dev.join(name);
        let p = path.display().to_string();
        sys.mount(&p, &path, "", MsFlags::MS_BIND, "")?;
    }
    sys.mount_in_root(
        "tmpfs",
        root,
        "/dev",
        Kind::Dir,
        "tmpfs",
        MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        "mode=755,size=65536k",
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        sys.symlink(target, &dev.join(link))?;
    }
    let sysfs = sys.mount_in_root(
        "sysfs",
        root,
        "/sys",
        Kind::Dir,
        "sysfs",
        nosuid | MsFlags::MS_RDONLY,
        "",
    );
    if sysfs.is_err() {
        // Without its own network namespace, sysfs cannot be mounted anew:
        // the host's, read-only.
        sys.mount_in_root(
            "/sys",
            root,
            "/sys",
            Kind::Dir,
            "",
            MsFlags::MS_BIND | MsFlags::MS_REC,
            "",
        )?;
        sys.mount_in_root(
            "none",
            root,
            "/sys",
            Kind::Dir,
            "",
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nosuid,
            "",
        )?;
    }
    cgroups(sys, root, &spec.cgroups, spec.cgroupns == Some(true))?;
    for name in ["hosts", "hostname", "resolv.conf"] {
        let source = spec.etc_dir.join(name).display().to_string();
        sys.mount_in_root(
            &source,
            root,
            &format!("/etc/{name}"),
            Kind::File,
            "",
            MsFlags::MS_BIND,
            "",
        )?;
    }
    for bind in &spec.binds {
        let kind = if bind.source.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        // Held until mounted: the mount is made from this descriptor.
        let pinned = match bind.exact {
            true => sys.open_exact(&bind.source)?,
            false => None,
        };
        // Binds of build sources (a stage, a cache) hold no usable device.
        let nodev = match bind.nodev {
            true => MsFlags::MS_NODEV,
            false => MsFlags::empty(),
        };
        let source = match &pinned {
            Some(fd) => format!("/proc/self/fd/{}", fd.as_raw_fd()),
            None => bind.source.display().to_string(),
        };
        sys.mount_in_root(
            &source,
            root,
            &bind.target,
            kind,
            "",
            MsFlags::MS_BIND | MsFlags::MS_REC,
            "",
        )?;
        // A new bind ignores every flag but MS_REC: read-only and nodev
        // take a remount.
        if bind.read_only || bind.nodev {
            let ro = match bind.read_only {
                true => MsFlags::MS_RDONLY,
                false => MsFlags::empty(),
            };
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro | nodev;
            sys.mount_in_root("none", root, &bind.target, kind, "", flags, "")?;
        }
    }
    for t in &spec.tmpfs {
        let data = t.size.map(|s| format!("size={s}")).unwrap_or_default();
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        sys.mount_in_root("tmpfs", root, &t.target, Kind::Dir, "tmpfs", flags, &data)?;
    }
    // Masks by descriptor, inside the root; a path this kernel lacks is
    // not masked (as Docker skips it).
    let skip_missing = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    };
    // Files behind /dev/null, directories behind an empty read-only tmpfs.
    let masks = MASKED_FILES
        .iter()
        .map(|p| (p, "/dev/null", "", MsFlags::MS_BIND, ""))
        .chain(
            MASKED_DIRS
                .iter()
                .map(|p| (p, "tmpfs", "tmpfs", MsFlags::MS_RDONLY, "size=0")),
        );
    for (path, source, fstype, flags, data) in masks {
        let at = format!("/{path}");
        skip_missing(sys.mount_in_root(source, root, &at, Kind::Existing, fstype, flags, data))?;
    }
    for path in READ_ONLY {
        let at = format!("/{path}");
        let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        match sys.mount_in_root("", root, &at, Kind::Existing, "", bind, "") {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            r => r?,
        }
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
        sys.mount_in_root("", root, &at, Kind::Existing, "", ro, "")?;
    }
    sys.pivot_root(root)?;
    if spec.read_only {
        sys.mount(
            "none",
            Path::new("/"),
            "",
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
            "",
        )?;
    }
    match spec.host_uts {
        // The host's UTS namespace: its hostname is not the container's to set.
        true => Ok(()),
        false => sys.sethostname(&spec.hostname),
    }
}

/// `--isolation=chroot`, kiln's side: the root at `root` is a copy of the
/// layers; no mount can be made, so the devices a process needs are nodes
/// made in the copy's /dev (their use is what the container kiln runs in
/// allows) and kiln's /etc files (from `etc`) are written in, over what
/// the image has there (in place: its directory stays as it was).
pub fn chroot_files(root_dir: &Path, etc: &Path) -> io::Result<()> {
    let root = Root::open(root_dir)?;
    // /dev must be the image's own directory, not a way out of the copy.
    Real.real_dir(root_dir, "/dev")?;
    if !root.exists("dev") {
        root.mkdir("dev", 0o755)?;
    }
    for (name, major, minor) in DEVICES {
        let rel = format!("dev/{name}");
        let _ = root.remove_all(&rel);
        root.mknod(&rel, Special::Char, 0o666, major, minor)?;
        root.chmod(&rel, 0o666)?;
    }
    if !root.exists("dev/shm") {
        root.mkdir("dev/shm", 0o1777)?;
        root.chmod("dev/shm", 0o1777)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        // Whatever the image has there (a directory too) gives way.
        let rel = format!("dev/{link}");
        let _ = root.remove_all(&rel);
        root.symlink(OsStr::new(target), &rel)?;
    }
    root.mkdir_all("etc", 0o755, &mut |_| Ok(()))?;
    for name in ["hosts", "hostname", "resolv.conf"] {
        let content = std::fs::read(etc.join(name))?;
        let rel = format!("etc/{name}");
        let mut file = match root.lstat(&rel) {
            Ok(m) if m.is_file() => {
                let f = root.open_regular_write(&rel)?;
                f.set_len(0)?;
                f
            }
            _ => root.create_file(&rel, 0o644)?,
        };
        file.write_all(&content)?;
    }
    Ok(())
}

/// `--isolation=chroot`, the init's side: into the prepared copy.
pub fn enter_chroot(spec: &Spec) -> io::Result<()> {
    nix::unistd::chroot(&spec.rootfs).map_err(io::Error::from)?;
    nix::unistd::chdir("/").map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::{Bind, Network};
    use crate::sandbox::sys::Recorder;
    use std::path::PathBuf;

    fn spec() -> Spec {
        Spec {
            lower: vec!["/s/top".into(), "/s/base".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            rootfs: "/c/rootfs".into(),
            volatile: true,
            read_only: true,
            argv: vec!["sh".into()],
            env: vec![],
            cwd: "/".into(),
            user: "0".into(),
            hostname: "box".into(),
            network: Network::None,
            binds: vec![Bind {
                source: PathBuf::from("/host/data"),
                target: "/data".into(),
                read_only: true,
                exact: false,
                nodev: false,
                movable: false,
            }],
            tty: false,
            rootless: false,
            tmpfs: vec![],
            etc_dir: "/c/etc".into(),
            seccomp: Default::default(),
            no_new_privileges: false,
            shm_size: None,
            rlimits: Vec::new(),
            capabilities: None,
            extra_groups: Vec::new(),
            sysctls: Vec::new(),
            host_uts: false,
            host_ipc: false,
            cgroups: ["memory", "cpu,cpuacct"]
                .map(|n| crate::sandbox::spec::OwnMount {
                    host: format!("/sys/fs/cgroup/{n}/kiln/c").into(),
                    name: n.into(),
                })
                .to_vec(),
            chroot: false,
            cgroupns: None,
        }
    }

    const EXPECTED: &str = "\
mount  none /
mkdir /c/rootfs
mount overlay overlay /c/rootfs [lowerdir=/s/top:/s/base,upperdir=/c/upper,workdir=/c/work,volatile]
real-dir /proc
real-dir /dev
real-dir /sys
mount-in-root proc proc /proc
mount-in-root tmpfs tmpfs /dev
mknod /c/rootfs/dev/null 1:3
mknod /c/rootfs/dev/zero 1:5
mknod /c/rootfs/dev/full 1:7
mknod /c/rootfs/dev/random 1:8
mknod /c/rootfs/dev/urandom 1:9
mknod /c/rootfs/dev/tty 5:0
mkdir /c/rootfs/dev/pts
mount devpts devpts /c/rootfs/dev/pts [newinstance,ptmxmode=0666,mode=0620,gid=5]
mkdir /c/rootfs/dev/shm
mount tmpfs shm /c/rootfs/dev/shm [mode=1777,size=65536k]
mount bind /c/rootfs/dev/null /c/rootfs/dev/null
mount bind /c/rootfs/dev/zero /c/rootfs/dev/zero
mount bind /c/rootfs/dev/full /c/rootfs/dev/full
mount bind /c/rootfs/dev/random /c/rootfs/dev/random
mount bind /c/rootfs/dev/urandom /c/rootfs/dev/urandom
mount bind /c/rootfs/dev/tty /c/rootfs/dev/tty
mount-in-root tmpfs tmpfs /dev
symlink /c/rootfs/dev/ptmx -> pts/ptmx
symlink /c/rootfs/dev/fd -> /proc/self/fd
symlink /c/rootfs/dev/stdin -> /proc/self/fd/0
symlink /c/rootfs/dev/stdout -> /proc/self/fd/1
symlink /c/rootfs/dev/stderr -> /proc/self/fd/2
mount-in-root sysfs sysfs /sys ro
mount-in-root tmpfs tmpfs /sys/fs/cgroup
mount-in-root bind /sys/fs/cgroup/memory/kiln/c /sys/fs/cgroup/memory
mount-in-root bind  /sys/fs/cgroup/memory ro
mount-in-root bind /sys/fs/cgroup/cpu,cpuacct/kiln/c /sys/fs/cgroup/cpu,cpuacct
mount-in-root bind  /sys/fs/cgroup/cpu,cpuacct ro
symlink /c/rootfs/sys/fs/cgroup/cpu -> cpu,cpuacct
symlink /c/rootfs/sys/fs/cgroup/cpuacct -> cpu,cpuacct
mount-in-root tmpfs tmpfs /sys/fs/cgroup ro
mount-in-root bind /c/etc/hosts /etc/hosts
mount-in-root bind /c/etc/hostname /etc/hostname
mount-in-root bind /c/etc/resolv.conf /etc/resolv.conf
mount-in-root bind /host/data /data
mount-in-root bind none /data ro
mount-in-root bind /dev/null /proc/kcore
mount-in-root bind /dev/null /proc/keys
mount-in-root bind /dev/null /proc/latency_stats
mount-in-root bind /dev/null /proc/timer_list
mount-in-root bind /dev/null /proc/timer_stats
mount-in-root bind /dev/null /proc/sched_debug
mount-in-root bind /dev/null /proc/interrupts
mount-in-root tmpfs tmpfs /proc/acpi ro
mount-in-root tmpfs tmpfs /proc/scsi ro
mount-in-root tmpfs tmpfs /sys/firmware ro
mount-in-root bind  /proc/bus
mount-in-root bind  /proc/bus ro
mount-in-root bind  /proc/fs
mount-in-root bind  /proc/fs ro
mount-in-root bind  /proc/irq
mount-in-root bind  /proc/irq ro
mount-in-root bind  /proc/sys
mount-in-root bind  /proc/sys ro
mount-in-root bind  /proc/sysrq-trigger
mount-in-root bind  /proc/sysrq-trigger ro
pivot_root /c/rootfs
mount bind none / ro
sethostname box
";

    /// Propagation is made private before anything is mounted, the overlay
    /// before what goes on it, /proc and /dev checked to be real directories
    /// before anything is mounted on them, /proc before its masks (made
    /// inside the root, by descriptor), everything in the
    /// root before pivot_root, the read-only remount and hostname after.
    #[test]
    fn mounts_happen_in_a_safe_order() {
        let rec = Recorder(Default::default(), "");
        setup(&rec, &spec()).unwrap();
        let calls = rec.0.into_inner().join("\n") + "\n";
        assert_eq!(calls, EXPECTED);
    }

    #[test]
    fn a_snapshot_twice_is_one_lowerdir() {
        let rec = Recorder(Default::default(), "");
        let mut s = spec();
        s.lower = vec!["/s/empty".into(), "/s/a".into(), "/s/empty".into()];
        setup(&rec, &s).unwrap();
        let log = rec.0.borrow().join("\n");
        assert!(log.contains("[lowerdir=/s/empty:/s/a,upperdir="), "{log}");
    }

    #[test]
    fn shm_size_is_the_tmpfs_size() {
        let rec = Recorder(Default::default(), "");
        let mut s = spec();
        s.shm_size = Some(1 << 27);
        setup(&rec, &s).unwrap();
        let log = rec.0.borrow().join("\n");
        assert!(
            log.contains("mount tmpfs shm /c/rootfs/dev/shm [mode=1777,size=134217728]"),
            "{log}"
        );
    }

    #[test]
    fn rootless_binds_devices_and_uses_userxattr() {
        let rec = Recorder(Default::default(), "");
        setup(
            &rec,
            &Spec {
                rootless: true,
                ..spec()
            },
        )
        .unwrap();
        let calls = rec.0.into_inner();
        assert!(calls[2].ends_with(",volatile,userxattr]"), "{}", calls[2]);
        assert!(!calls.iter().any(|c| c.starts_with("mknod")));
        let at = calls
            .iter()
            .position(|c| c == "touch /c/rootfs/dev/null")
            .expect("touch");
        assert_eq!(calls[at + 1], "mount bind /dev/null /c/rootfs/dev/null");
    }

    /// A bind source kiln resolved in a root is opened (refusing symlinks)
    /// before it is mounted, and mounted from that descriptor.
    #[test]
    fn exact_bind_sources_are_pinned_first() {
        let rec = Recorder(Default::default(), "");
        let mut s = spec();
        s.binds[0].exact = true;
        setup(&rec, &s).unwrap();
        let calls = rec.0.into_inner();
        let at = calls
            .iter()
            .position(|c| c == "open-exact /host/data")
            .expect("pinned");
        assert!(calls[at + 1].starts_with("mount-in-root bind /host/data /data"));
    }

    #[test]
    fn sysfs_falls_back_to_a_read_only_bind_of_the_hosts() {
        let rec = Recorder(Default::default(), "sysfs");
        setup(&rec, &spec()).unwrap();
        let calls = rec.0.into_inner();
        let at = calls
            .iter()
            .position(|c| c == "mount-in-root bind /sys /sys")
            .expect("bind of /sys");
        assert_eq!(calls[at + 1], "mount-in-root bind none /sys ro");
    }
}
