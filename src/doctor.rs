//! `kiln doctor`: what this host lets kiln do and what it does not, each
//! finding with its fix. The checks try what kiln will do (a user
//! namespace, an overlay mounted in a mount namespace) rather than guess
//! from versions, and read the settings that explain a refusal.

use crate::sandbox::probe;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Works.
    Ok,
    /// Works in part, or something optional is missing.
    Warn,
    /// Something kiln needs does not work here.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: &'static str,
    /// How it came out.
    pub status: Level,
    /// What was found.
    pub detail: String,
    /// What to do about it, when something is to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn finding(check: &'static str, status: Level, detail: String, fix: Option<String>) -> Finding {
    Finding {
        check,
        status,
        detail,
        fix,
    }
}

/// Where the host's knobs are read (a test points them at its own files).
#[derive(Debug, Clone)]
pub struct Host {
    /// `/proc/sys`.
    pub sysctl: PathBuf,
    /// `/etc` (subuid, subgid, passwd).
    pub etc: PathBuf,
    /// `/sys/fs/cgroup`.
    pub cgroup: PathBuf,
    /// `/proc/sys/fs/binfmt_misc`.
    pub binfmt: PathBuf,
    /// newuidmap and newgidmap are installed.
    pub newidmap: bool,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            sysctl: "/proc/sys".into(),
            etc: "/etc".into(),
            cgroup: "/sys/fs/cgroup".into(),
            binfmt: "/proc/sys/fs/binfmt_misc".into(),
            newidmap: crate::sandbox::userns::helpers_installed(),
        }
    }
}

/// A store with less free space than this cannot take a base image.
const FAIL_BELOW: u64 = 1 << 30;
/// Nor build much with less than this.
const WARN_BELOW: u64 = 5 << 30;
/// CAP_SYS_ADMIN's bit in the capability sets.
const CAP_SYS_ADMIN: u32 = 21;

/// Every check, for a kiln whose store is at `store`.
pub fn run(host: &Host, store: &Path) -> Vec<Finding> {
    let root = crate::sandbox::fs::is_root();
    vec![
        isolation(store, root),
        user_namespaces(host, root),
        uid_ranges(host, root),
        cgroups(host, root),
        seccomp(),
        store_space(store),
        platforms(host),
        networks(root),
        credentials(),
    ]
}

/// The closest existing directory at or above `path`.
fn existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.is_dir() {
        match p.parent() {
            Some(parent) => p = parent.to_path_buf(),
            None => return PathBuf::from("/"),
        }
    }
    p
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn isolation(store: &Path, root: bool) -> Finding {
    const NAME: &str = "isolation";
    // Where kiln will mount its overlays: the store's filesystem.
    let probe_dir = tempfile::Builder::new()
        .prefix(".kiln-doctor")
        .tempdir_in(existing(store))
        .or_else(|_| tempfile::tempdir());
    let tried = probe_dir
        .map_err(|e| e.to_string())
        .and_then(|d| probe::overlay_mount(d.path()).map_err(|e| e.to_string()));
    match tried {
        Ok(()) => finding(
            NAME,
            Level::Ok,
            format!(
                "an overlay mounts in a new mount namespace{}: RUN steps and containers run isolated",
                if root { "" } else { " of a new user namespace" }
            ),
            None,
        ),
        Err(e) => {
            let caps = probe::effective_capabilities();
            let why = match root && caps & (1 << CAP_SYS_ADMIN) == 0 {
                true => {
                    " kiln runs without CAP_SYS_ADMIN, as in a container with docker's default capabilities."
                }
                false => "",
            };
            let full = "for namespaces, limits and mounts: run the container with --privileged, or --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined";
            match crate::sandbox::isolation::chroot_possible() {
                Ok(()) => finding(
                    NAME,
                    Level::Warn,
                    format!(
                        "mounting an overlay in a new mount namespace failed: {e}.{why} kiln isolates with chroot instead (--isolation=chroot): each RUN and container in a copy of its root, without namespaces, read-write -v, ssh mounts or resource limits"
                    ),
                    Some(full.into()),
                ),
                Err(chroot) => finding(
                    NAME,
                    Level::Fail,
                    format!(
                        "mounting an overlay in a new mount namespace failed: {e}.{why} And {chroot}"
                    ),
                    Some(full.into()),
                ),
            }
        }
    }
}

fn user_namespaces(host: &Host, root: bool) -> Finding {
    const NAME: &str = "user namespaces";
    if root {
        return finding(NAME, Level::Ok, "not needed as root".into(), None);
    }
    match probe::user_namespace() {
        Ok(()) => finding(NAME, Level::Ok, "a user namespace can be made".into(), None),
        Err(e) => {
            let knob = |name: &str| read(&host.sysctl.join(name));
            let fix = if knob("user/max_user_namespaces").as_deref() == Some("0") {
                "sysctl -w user.max_user_namespaces=15000".to_string()
            } else if knob("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
                "sysctl -w kernel.unprivileged_userns_clone=1".to_string()
            } else if knob("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile for kiln)".to_string()
            } else if probe::seccomp_mode() == 2 {
                "a seccomp filter refuses it (docker's default profile refuses unshare(CLONE_NEWUSER)): run the container with --security-opt seccomp=unconfined".to_string()
            } else {
                "run kiln as root".to_string()
            };
            finding(
                NAME,
                Level::Fail,
                format!("unshare(CLONE_NEWUSER) failed: {e}"),
                Some(fix),
            )
        }
    }
}

/// The caller's user name (from `etc/passwd`), else its uid.
fn user_name(host: &Host, uid: u32) -> String {
    read(&host.etc.join("passwd"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// The ranges `etc/FILE` gives `name` or `uid`: (first, count).
fn ranges(host: &Host, file: &str, name: &str, uid: u32) -> Vec<(u64, u64)> {
    crate::sandbox::userns::ranges(&read(&host.etc.join(file)).unwrap_or_default(), name, uid)
}

fn uid_ranges(host: &Host, root: bool) -> Finding {
    const NAME: &str = "uid ranges";
    if root {
        return finding(NAME, Level::Ok, "not needed as root".into(), None);
    }
    let uid = crate::sandbox::fs::euid();
    let name = user_name(host, uid);
    let (u, g) = (
        ranges(host, "subuid", &name, uid),
        ranges(host, "subgid", &name, uid),
    );
    let total = |r: &[(u64, u64)]| r.iter().map(|(_, c)| c).sum::<u64>();
    match (u.is_empty(), g.is_empty()) {
        (false, false) if !host.newidmap => finding(
            NAME,
            Level::Warn,
            format!(
                "{name} has {} subordinate uids and {} gids, but newuidmap and newgidmap are not installed: kiln maps one id, so files of other owners in an image become yours and -u other than root is refused",
                total(&u),
                total(&g)
            ),
            Some(
                "apt-get install uidmap (Debian, Ubuntu); dnf install shadow-utils (Fedora)".into(),
            ),
        ),
        (false, false) => finding(
            NAME,
            Level::Ok,
            format!(
                "{name} has {} subordinate uids and {} gids: kiln maps the first range of each (newuidmap, in the store's user namespace), so images keep their owners",
                total(&u),
                total(&g)
            ),
            None,
        ),
        _ => finding(
            NAME,
            Level::Warn,
            format!(
                "{name} has no subordinate {} in {}: only the caller's own id can be mapped",
                match (u.is_empty(), g.is_empty()) {
                    (true, true) => "uids or gids",
                    (true, false) => "uids",
                    _ => "gids",
                },
                host.etc.display()
            ),
            Some(format!(
                "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name} (as root)"
            )),
        ),
    }
}

fn cgroups(host: &Host, root: bool) -> Finding {
    const NAME: &str = "cgroups";
    let v2 = host.cgroup.join("cgroup.controllers").exists();
    let v1 = host.cgroup.join("memory").is_dir() || host.cgroup.join("pids").is_dir();
    let version = match (v2, v1) {
        (true, _) => "v2 (unified)",
        (false, true) => "v1",
        (false, false) => {
            return finding(
                NAME,
                Level::Fail,
                format!("no cgroup hierarchy is mounted at {}", host.cgroup.display()),
                Some("mount one (mount -t cgroup2 none /sys/fs/cgroup); without it -m, --cpus and --pids-limit cannot hold".into()),
            );
        }
    };
    if !root {
        // Only the real hierarchy can be delegated: a test's stand-in is not.
        let delegated = match host.cgroup == Path::new("/sys/fs/cgroup") && v2 {
            true => crate::sandbox::cgroup::delegated(),
            false => None,
        };
        return match delegated {
            Some(dir) => finding(
                NAME,
                Level::Ok,
                format!(
                    "{version}; rootless limits are set in {}, delegated to this user",
                    dir.display()
                ),
                None,
            ),
            None if v2 => finding(
                NAME,
                Level::Warn,
                format!("{version}; nothing is delegated to this user, so rootless kiln sets no limits (-m, --cpus, --pids-limit)"),
                Some("run kiln in systemd's user@UID.service, which is delegated: systemd-run --user --scope kiln ...".into()),
            ),
            None => finding(
                NAME,
                Level::Warn,
                format!("{version}; rootless kiln sets no limits (-m, --cpus, --pids-limit need root)"),
                None,
            ),
        };
    }
    let probe_at = match v2 {
        true => host.cgroup.clone(),
        false => host.cgroup.join("memory"),
    };
    let writable = tempfile::Builder::new()
        .prefix("kiln-doctor-")
        .tempdir_in(&probe_at)
        .map(drop)
        .map_err(|e| e.to_string());
    match writable {
        Ok(()) => finding(
            NAME,
            Level::Ok,
            format!("{version}, writable: limits hold"),
            None,
        ),
        Err(e) => finding(
            NAME,
            Level::Warn,
            format!(
                "{version}, but a group cannot be made in {} ({e}): -m, --cpus and --pids-limit fail here",
                probe_at.display()
            ),
            Some("inside a container: give it a writable cgroup (docker run --cgroupns=private on cgroup v2, or --privileged)".into()),
        ),
    }
}

fn seccomp() -> Finding {
    match probe::seccomp_mode() {
        2 => finding(
            "seccomp",
            Level::Warn,
            "kiln itself runs under a seccomp filter (inside a container?): its containers' profile is added beneath it, and calls the outer one refuses stay refused".into(),
            None,
        ),
        _ => finding(
            "seccomp",
            Level::Ok,
            "docker's default profile is applied to every container and RUN".into(),
            None,
        ),
    }
}

fn store_space(store: &Path) -> Finding {
    const NAME: &str = "store";
    let at = existing(store);
    let fs = probe::filesystem(&at).unwrap_or_else(|e| format!("unknown ({e})"));
    let free = match crate::sandbox::fs::free_bytes(&at) {
        Ok(f) => f,
        Err(e) => {
            return finding(NAME, Level::Fail, format!("{}: {e}", at.display()), None);
        }
    };
    let gib = free as f64 / (1u64 << 30) as f64;
    let detail = format!("{} on {fs}, {gib:.1} GiB free", store.display());
    if fs == "overlay" {
        return finding(
            NAME,
            Level::Fail,
            format!("{detail}: overlayfs cannot take its upper directory on overlayfs"),
            Some("put the store on a volume (docker run -v kiln-store:/var/lib/kiln) or use --root on another filesystem".into()),
        );
    }
    match free {
        f if f < FAIL_BELOW => finding(
            NAME,
            Level::Fail,
            format!("{detail}: less than 1 GiB, too little for a base image and its layers"),
            Some("free space (kiln prune) or use --root on a larger filesystem".into()),
        ),
        f if f < WARN_BELOW => finding(
            NAME,
            Level::Warn,
            format!("{detail}: builds of larger images may run out"),
            Some("kiln prune, or --root on a larger filesystem".into()),
        ),
        _ => finding(NAME, Level::Ok, detail, None),
    }
}

fn platforms(host: &Host) -> Finding {
    const NAME: &str = "other platforms";
    let Some(names) = crate::sandbox::emulator::handlers(&host.binfmt) else {
        return finding(
            NAME,
            Level::Warn,
            format!("binfmt_misc is not mounted at {}", host.binfmt.display()),
            Some("mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; apt-get install qemu-user-static".into()),
        );
    };
    match names.is_empty() {
        true => finding(
            NAME,
            Level::Warn,
            "no qemu handler with the fix-binary flag is registered: RUN steps of other platforms cannot run".into(),
            Some("apt-get install qemu-user-static (Debian registers its handlers with the F flag)".into()),
        ),
        false => finding(
            NAME,
            Level::Ok,
            format!("qemu handlers: {}", names.join(", ")),
            None,
        ),
    }
}

fn networks(root: bool) -> Finding {
    const NAME: &str = "networks";
    let nft = crate::network::nat::available();
    let pasta = crate::network::rootless::pasta_available();
    let mut missing = Vec::new();
    if !nft {
        missing.push("nft (nftables: --nat, and the rules that keep networks apart)");
    }
    if !root && !pasta {
        missing.push("pasta (passt: a rootless --nat network's way out)");
    }
    match missing.is_empty() {
        true => finding(NAME, Level::Ok, "nftables and pasta found".into(), None),
        false => finding(
            NAME,
            Level::Warn,
            format!("missing: {}", missing.join("; ")),
            Some(format!(
                "apt-get install {}",
                [
                    (!nft).then_some("nftables"),
                    (!root && !pasta).then_some("passt")
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
            )),
        ),
    }
}

fn credentials() -> Finding {
    const NAME: &str = "registry credentials";
    let dir = crate::registry::auth::DockerConfig::default_dir();
    match crate::registry::auth::DockerConfig::load(&dir) {
        Err(e) => finding(
            NAME,
            Level::Fail,
            e.to_string(),
            Some("fix or remove the file".into()),
        ),
        Ok(c) => {
            let found = c.registries();
            finding(
                NAME,
                Level::Ok,
                match found.is_empty() {
                    true => format!("none in {} (pulls are anonymous)", dir.display()),
                    false => format!("{} in {}", found.join(", "), dir.display()),
                },
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(
            etc.path().join("subuid"),
            "alice:100000:65536\n1001:200000:10\nbob:x:1\n",
        )
        .unwrap();
        let host = Host {
            etc: etc.path().into(),
            ..Host::default()
        };
        assert_eq!(ranges(&host, "subuid", "alice", 1000), [(100000, 65536)]);
        assert_eq!(ranges(&host, "subuid", "carol", 1001), [(200000, 10)]);
        assert!(ranges(&host, "subuid", "bob", 1002).is_empty());
        assert!(ranges(&host, "subgid", "alice", 1000).is_empty());
    }

    #[test]
    fn ranges_are_used_where_newuidmap_is_installed() {
        let etc = tempfile::tempdir().unwrap();
        let me = crate::sandbox::fs::euid();
        std::fs::write(etc.path().join("subuid"), format!("{me}:100000:65536\n")).unwrap();
        std::fs::write(etc.path().join("subgid"), format!("{me}:100000:65536\n")).unwrap();
        let mut host = Host {
            etc: etc.path().into(),
            newidmap: false,
            ..Host::default()
        };
        let without = uid_ranges(&host, false);
        assert_eq!(without.status, Level::Warn);
        assert!(without.fix.unwrap().starts_with("apt-get install uidmap"));
        host.newidmap = true;
        let with = uid_ranges(&host, false);
        assert_eq!(with.status, Level::Ok);
        assert!(
            with.detail.ends_with("so images keep their owners"),
            "{}",
            with.detail
        );
    }

    #[test]
    fn binfmt_handlers_need_the_fix_binary_flag() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("qemu-arm"), "enabled\nflags: P\n").unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let host = Host {
            binfmt: dir.path().into(),
            ..Host::default()
        };
        let f = platforms(&host);
        assert_eq!(
            (f.status, f.detail.as_str()),
            (Level::Ok, "qemu handlers: qemu-aarch64")
        );
        let none = platforms(&Host {
            binfmt: dir.path().join("missing"),
            ..Host::default()
        });
        assert_eq!(none.status, Level::Warn);
        assert!(none.fix.unwrap().contains("mount -t binfmt_misc"));
    }
}
