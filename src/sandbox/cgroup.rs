//! Resource limits through cgroups, v1 (one hierarchy per controller) or v2
//! (unified). A container's groups are removed after it exits.

use super::spec::Limits;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Docker's default device rules (moby's `oci/defaults.go`, runc's
/// `AllowedDevices`): everything is denied, then mknod of any device (a
/// node made is still unusable), and reading and writing only the devices
/// a container's /dev holds: null, zero, full, random, urandom, tty,
/// console, ptmx and the pts slaves.
const DEVICE_RULES: [&str; 10] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
];
/// The pts slaves (major 136, any minor).
const PTS_RULE: &str = "c 136:* rwm";

/// The cgroups of one container.
#[derive(Debug, Default)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", dir.join(file).display()),
        )
    })
}

/// True on a cgroup v2 (unified) machine.
pub fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

impl Cgroup {
    /// Creates the groups for container `id` with `limits` and moves `pid`
    /// into them. No limits, no groups.
    /// With `devices`, the group also holds Docker's default device rules
    /// (cgroup v1's devices controller; on v2 they would need a BPF
    /// program, which kiln does not load).
    pub fn create(id: &str, limits: &Limits, pid: u32, devices: bool) -> io::Result<Cgroup> {
        let mut cg = Cgroup::default();
        // Moving a process into a v1 group costs about 20 ms (the kernel
        // waits for an RCU grace period): groups are made only for limits.
        // Device nodes are unusable through nodev mounts anyway (see
        // rootfs.rs); the rules here are a second wall where a group exists.
        let parent = match &limits.parent {
            Some(p) => check_parent(p).map_err(io::Error::other)?,
            None if limits.is_empty() && !limits.group => {
                return Ok(cg);
            }
            None => "kiln".to_string(),
        };
        // Rootless, groups are made in the subtree delegated to the user
        // (systemd's user@UID.service), never at the root.
        let rootless = !super::fs::is_root();
        let result = match (unified(), rootless) {
            (true, true) => {
                let delegated = delegated().ok_or_else(|| io::Error::other(NOT_DELEGATED))?;
                cg.create_v2(&delegated.join(&parent), id, limits, pid, false)
            }
            (true, false) => cg.create_v2(&Path::new(ROOT).join(&parent), id, limits, pid, devices),
            (false, true) => Err(io::Error::other(NOT_DELEGATED)),
            (false, false) => {
                let devices = devices && Path::new(ROOT).join("devices").is_dir();
                cg.create_v1(&parent, id, limits, pid, devices)
            }
        };
        if let Err(e) = result {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn create_v1(
        &mut self,
        parent: &str,
        id: &str,
        limits: &Limits,
        pid: u32,
        devices: bool,
    ) -> io::Result<()> {
        let mut wanted: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
        if devices {
            // Deny everything first, then allow rule by rule (v1 applies
            // each write to the group's list in order).
            let mut rules = vec![("devices.deny", "a".to_string())];
            rules.extend(
                DEVICE_RULES
                    .iter()
                    .chain([&PTS_RULE])
                    .map(|r| ("devices.allow", r.to_string())),
            );
            rules.extend(limits.devices.iter().map(|r| ("devices.allow", r.clone())));
            wanted.push(("devices", rules));
        }
        let mut memory = Vec::new();
        if let Some(mem) = limits.memory {
            // Docker's default swap is as much again (memory-swap = 2 ×
            // memory); kiln's is none unless --memory-swap says.
            let swap = match limits.memory_swap {
                Some(-1) => "-1".to_string(),
                Some(total) => total.to_string(),
                None => mem.to_string(),
            };
            memory.push(("memory.limit_in_bytes", mem.to_string()));
            memory.push(("memory.memsw.limit_in_bytes", swap));
        }
        if let Some(s) = limits.swappiness {
            memory.push(("memory.swappiness", s.to_string()));
        }
        if !memory.is_empty() {
            wanted.push(("memory", memory));
        }
        let mut cpu = Vec::new();
        if let Some(cpus) = limits.cpus {
            let quota = (cpus * 100_000.0).round() as u64;
            cpu.push(("cpu.cfs_period_us", "100000".to_string()));
            cpu.push(("cpu.cfs_quota_us", quota.to_string()));
        }
        if let Some(shares) = limits.cpu_shares {
            cpu.push(("cpu.shares", shares.to_string()));
        }
        if !cpu.is_empty() {
            wanted.push(("cpu", cpu));
        }
        if let Some(set) = &limits.cpuset_cpus {
            // A cpuset group needs its memory nodes too: the parent's.
            let mems = fs::read_to_string(Path::new(ROOT).join("cpuset/cpuset.mems"))
                .unwrap_or_else(|_| "0".into());
            wanted.push((
                "cpuset",
                vec![
                    ("cpuset.cpus", set.clone()),
                    ("cpuset.mems", mems.trim().to_string()),
                ],
            ));
        }
        if let Some(pids) = limits.pids {
            wanted.push(("pids", vec![("pids.max", pids.to_string())]));
        }
        // Under a --cgroup-parent the process joins the usual controllers'
        // groups even without limits: the parent's limits and accounting
        // apply to it.
        for controller in ["memory", "cpu", "pids"] {
            if limits.parent.is_some()
                && !wanted.iter().any(|(c, _)| *c == controller)
                && Path::new(ROOT).join(controller).is_dir()
            {
                wanted.push((controller, Vec::new()));
            }
        }
        for (controller, files) in wanted {
            let dir = Path::new(ROOT).join(controller).join(parent).join(id);
            fs::create_dir_all(&dir)?;
            if controller == "cpuset" {
                // Each new cpuset level starts empty: the parent's set
                // and nodes are copied down first.
                let top = Path::new(ROOT).join("cpuset");
                let mut at = top.clone();
                for part in Path::new(parent).components() {
                    at.push(part);
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        if fs::read_to_string(at.join(f)).is_ok_and(|v| v.trim().is_empty()) {
                            let up = fs::read_to_string(at.parent().unwrap_or(&top).join(f))
                                .unwrap_or_default();
                            let _ = write(&at, f, up.trim());
                        }
                    }
                }
            }
            self.dirs.push(dir.clone());
            let mut files = files;
            // Memory and memory+swap: the kernel keeps memory <= memsw at
            // every write, so a raise (`docker update`) writes memsw first.
            let current = fs::read_to_string(dir.join("memory.limit_in_bytes"))
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            let raised = files
                .iter()
                .any(|(f, v)| *f == "memory.limit_in_bytes" && v.parse::<u64>().ok() > current);
            if controller == "memory" && raised {
                files.sort_by_key(|(f, _)| !f.starts_with("memory.memsw"));
            }
            for (file, value) in files {
                // Without swap accounting there is no memsw file: no swap to limit.
                if file.starts_with("memory.memsw") && !dir.join(file).exists() {
                    continue;
                }
                write(&dir, file, &value)?;
            }
            write(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn create_v2(
        &mut self,
        parent: &Path,
        id: &str,
        limits: &Limits,
        pid: u32,
        devices: bool,
    ) -> io::Result<()> {
        fs::create_dir_all(parent)?;
        // Controllers enabled down the way (each write refused where a
        // group above holds processes or is not ours: then a limit below
        // says which file is missing).
        for dir in parent
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if dir.starts_with(ROOT) {
                let _ = write(dir, "cgroup.subtree_control", "+memory +pids +cpu");
            }
        }
        let _ = write(parent, "cgroup.subtree_control", "+memory +pids +cpu");
        let dir = parent.join(id);
        fs::create_dir_all(&dir)?;
        self.dirs.push(dir.clone());
        if let Some(mem) = limits.memory {
            write(&dir, "memory.max", &mem.to_string())?;
            let _ = write(&dir, "memory.swap.max", "0");
        }
        if let Some(cpus) = limits.cpus {
            write(
                &dir,
                "cpu.max",
                &format!("{} 100000", (cpus * 100_000.0).round() as u64),
            )?;
        }
        if let Some(shares) = limits.cpu_shares {
            // v1 shares (2..262144) to v2 weight (1..10000), as runc maps them.
            let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write(&dir, "cpu.weight", &weight.to_string())?;
        }
        if let Some(set) = &limits.cpuset_cpus {
            write(&dir, "cpuset.cpus", set)?;
        }
        match limits.memory_swap {
            Some(-1) => {
                let _ = write(&dir, "memory.swap.max", "max");
            }
            Some(total) => {
                let swap = (total as u64).saturating_sub(limits.memory.unwrap_or(0));
                let _ = write(&dir, "memory.swap.max", &swap.to_string());
            }
            None => {}
        }
        if let Some(pids) = limits.pids {
            write(&dir, "pids.max", &pids.to_string())?;
        }
        if devices {
            // v1's list (deny all, then docker's allow rules) as the BPF
            // program v2 takes instead.
            let rules = DEVICE_RULES
                .iter()
                .copied()
                .chain([PTS_RULE])
                .chain(limits.devices.iter().map(String::as_str))
                .map(super::devices::Rule::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(io::Error::other)?;
            super::devices::attach(&dir, &rules)?;
        }
        write(&dir, "cgroup.procs", &pid.to_string())
    }

    /// Removes the groups (they are empty once the container has exited).
    pub fn remove(&mut self) {
        for dir in self.dirs.drain(..) {
            for _ in 0..50 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Applies `limits` to running container `id` (`docker update`): its
/// groups, made if it had none, with the new values, and `pids` (its
/// processes, its init first) moved into them. The device rules are left
/// as they were made.
pub fn update(id: &str, limits: &Limits, pids: impl Fn() -> Vec<u32>) -> io::Result<()> {
    let Some(&first) = pids().first() else {
        return Ok(());
    };
    let mut cg = Cgroup::create(id, limits, first, false)?;
    // The groups are the container's from now on: not removed here
    // (its monitor and `reclaim` remove them when it ends).
    let dirs = std::mem::take(&mut cg.dirs);
    // Moved until a pass finds no process outside: one forked while
    // others were moved is moved by the next pass.
    for _ in 0..50 {
        let mut moved = false;
        for dir in &dirs {
            let inside: std::collections::BTreeSet<u32> =
                fs::read_to_string(dir.join("cgroup.procs"))?
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
            for pid in pids() {
                if !inside.contains(&pid) && super::process::running(pid) {
                    // One that ended meanwhile needs no move.
                    if write(dir, "cgroup.procs", &pid.to_string()).is_ok() {
                        moved = true;
                    }
                }
            }
        }
        if !moved {
            return Ok(());
        }
    }
    Err(io::Error::other(
        "the container's processes kept forking while they were moved",
    ))
}

/// Processes frozen by the cgroup freezer while this lives (`kiln commit`
/// reads a container's files without them changing underneath); thawed
/// when dropped.
#[derive(Debug)]
pub struct Frozen {
    dir: PathBuf,
    v2: bool,
}

/// Freezes a container's processes (`pids` lists them, called again
/// until it names no process left out) in a group of their own named for
/// container `id`: v1's freezer hierarchy, or on v2 the container's own
/// group (`kiln/ID`, made for its limits, else made here: the group a
/// container without limits shares is its starter's, which must never be
/// frozen). Returns once the kernel says every one is frozen: a process
/// that forked while the others were being moved is moved too (a frozen
/// group freezes what joins it), so a commit never reads files a running
/// process still changes, nor fails because one forked.
pub fn freeze(id: &str, pids: impl Fn() -> Vec<u32>) -> io::Result<Frozen> {
    let first = *pids()
        .first()
        .ok_or_else(|| io::Error::other("no process to freeze"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let v2 = unified();
    let (dir, move_in) = freezer_dir(id, first)?;
    fs::create_dir_all(&dir)?;
    let frozen = Frozen { dir, v2 };
    let mut asked = false;
    loop {
        let mut outside = Vec::new();
        if move_in {
            let inside: std::collections::BTreeSet<u32> =
                fs::read_to_string(frozen.dir.join("cgroup.procs"))?
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
            outside = pids()
                .into_iter()
                .filter(|p| !inside.contains(p) && super::process::running(*p))
                .collect();
            for pid in &outside {
                // One that exited meanwhile cannot be moved, nor needs to be.
                if let Err(e) = write(&frozen.dir, "cgroup.procs", &pid.to_string())
                    && super::process::running(*pid)
                {
                    return Err(e);
                }
            }
        }
        if !asked {
            match v2 {
                true => write(&frozen.dir, "cgroup.freeze", "1")?,
                false => write(&frozen.dir, "freezer.state", "FROZEN")?,
            }
            asked = true;
        }
        // The kernel freezes asynchronously: v1 says FREEZING until every
        // task stopped, v2's events say `frozen 1` then.
        let done = match v2 {
            true => fs::read_to_string(frozen.dir.join("cgroup.events"))
                .is_ok_and(|s| s.lines().any(|l| l == "frozen 1")),
            false => fs::read_to_string(frozen.dir.join("freezer.state"))
                .is_ok_and(|s| s.trim() == "FROZEN"),
        };
        if outside.is_empty() && done {
            return Ok(frozen);
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::other(
                "the container's processes did not freeze within 10 s",
            ));
        }
        if outside.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// The group that freezes container `id` (whose process `pid` is), and
/// whether its processes must be moved into it first.
fn freezer_dir(id: &str, pid: u32) -> io::Result<(PathBuf, bool)> {
    if !unified() {
        return Ok((Path::new(ROOT).join("freezer").join("kiln").join(id), true));
    }
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| io::Error::other("not in a v2 group"))?;
    let dir = Path::new(ROOT).join(path.trim_start_matches('/'));
    Ok(match dir.file_name().is_some_and(|n| n == id) {
        true => (dir, false),
        false => (Path::new(ROOT).join("kiln").join(id), true),
    })
}

impl Frozen {
    /// Leaves the processes frozen (`kiln pause`): [`thaw`] ends it.
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

/// Thaws container `id` (whose process `pid` is) that [`Frozen::keep`]
/// left frozen (`kiln unpause`).
pub fn thaw(id: &str, pid: u32) -> io::Result<()> {
    let (dir, _) = freezer_dir(id, pid)?;
    match unified() {
        true => write(&dir, "cgroup.freeze", "0"),
        false => write(&dir, "freezer.state", "THAWED"),
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = match self.v2 {
            true => write(&self.dir, "cgroup.freeze", "0"),
            false => write(&self.dir, "freezer.state", "THAWED"),
        };
    }
}

/// Moves `pid` into every group `of` is in (`kiln exec`: the process
/// joins its container's limits and accounting).
pub fn join_same(of: u32, pid: u32) -> io::Result<()> {
    let groups = fs::read_to_string(format!("/proc/{of}/cgroup"))?;
    for line in groups.lines() {
        // `ID:CONTROLLERS:PATH`; v2's single line is `0::PATH`.
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let path = path.trim_start_matches('/');
        if path.is_empty() || path.split('/').any(|c| c == "..") {
            continue;
        }
        let hierarchy = match controllers {
            "" => Path::new(ROOT).to_path_buf(),
            c => {
                let first = c.split(',').next().unwrap_or(c);
                let name = first.strip_prefix("name=").unwrap_or(first);
                let dir = Path::new(ROOT).join(name);
                // Co-mounted controllers (cpu,cpuacct) share one directory.
                match dir.is_dir() {
                    true => dir,
                    false => Path::new(ROOT).join(c),
                }
            }
        };
        let dir = hierarchy.join(path);
        if dir.is_dir() {
            write(&dir, "cgroup.procs", &pid.to_string())?;
        }
    }
    Ok(())
}

/// A `--cgroup-parent` as a path below the cgroup root: relative (a
/// leading `/` is dropped, as docker's systemd-less driver does), with no
/// `.`, `..` or empty component, so it cannot name a group elsewhere.
pub fn check_parent(parent: &str) -> Result<String, String> {
    let trimmed = parent.trim_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.contains('\0')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(format!(
            "invalid cgroup parent {parent:?}: use a path of plain names below the cgroup root, such as ci/builds"
        ));
    }
    Ok(trimmed.to_string())
}

/// Why a rootless kiln sets no limits where it has no delegated subtree.
pub const NOT_DELEGATED: &str = "resource limits need cgroups: run kiln as root, or rootless on cgroup v2 from a subtree delegated to the user (systemd's user@UID.service: `systemd-run --user --scope kiln ...`) for --memory, --memory-swap, --cpus, --cpu-shares, --cpuset-cpus, --pids-limit and --device-cgroup-rule";

/// The subtree of the v2 hierarchy delegated to this user: the highest
/// group above this process's own whose directory and `cgroup.procs`
/// and `cgroup.subtree_control` belong to it (systemd's
/// user@UID.service). None on v1 or where nothing is delegated.
pub fn delegated() -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if !unified() {
        return None;
    }
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let me = nix::unistd::geteuid().as_raw();
    let ours = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.uid() == me);
    let mut best = None;
    let mut dir = Path::new(ROOT).join(path.trim_start_matches('/'));
    while dir != Path::new(ROOT) && dir.starts_with(ROOT) {
        if !(ours(&dir)
            && ours(&dir.join("cgroup.procs"))
            && ours(&dir.join("cgroup.subtree_control")))
        {
            break;
        }
        best = Some(dir.clone());
        dir = dir.parent()?.to_path_buf();
    }
    best
}

/// Removes the groups of container `id` that a kiln which died left
/// behind, killing whatever still runs in them first.
pub fn reclaim(id: &str) {
    let dirs: Vec<PathBuf> = if unified() {
        // Rootless, its groups are in the user's delegated subtree.
        match super::fs::is_root() {
            true => vec![Path::new(ROOT).join("kiln").join(id)],
            false => delegated()
                .map(|d| d.join("kiln").join(id))
                .into_iter()
                .collect(),
        }
    } else {
        fs::read_dir(ROOT)
            .into_iter()
            .flatten()
            .flatten()
            .map(|c| c.path().join("kiln").join(id))
            .collect()
    };
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    Cgroup { dirs }.remove();
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::check_parent;

    #[test]
    fn a_parent_cannot_leave_the_cgroup_root() {
        assert_eq!(check_parent("/ci/builds/").unwrap(), "ci/builds");
        for bad in ["", "/", "..", "a/../../b", "a//b", "./a", "a/."] {
            assert!(check_parent(bad).is_err(), "{bad:?}");
        }
    }
}

/// The mounts of groups `dirs` (a container's, as kiln made them under
/// [`ROOT`]): named by their v1 hierarchy, or at the root on v2.
fn own_mounts_of(dirs: &[PathBuf], v2: bool) -> Vec<super::spec::OwnMount> {
    dirs.iter()
        .filter_map(|d| {
            let rel = d.strip_prefix(ROOT).ok()?;
            let name = match v2 {
                true => String::new(),
                false => rel.components().next()?.as_os_str().to_str()?.to_string(),
            };
            Some(super::spec::OwnMount {
                host: d.clone(),
                name,
            })
        })
        .collect()
}

impl Cgroup {
    /// What the container's /sys/fs/cgroup shows: its own groups only,
    /// never a hierarchy's root or the caller's group (the host's totals
    /// and the caller's stay theirs).
    pub fn own_mounts(&self) -> Vec<super::spec::OwnMount> {
        own_mounts_of(&self.dirs, unified())
    }
}

#[cfg(test)]
mod own_mount_tests {
    use super::*;

    #[test]
    fn a_containers_groups_are_named_by_their_hierarchy() {
        let dirs: Vec<PathBuf> = ["memory", "cpu,cpuacct", "devices"]
            .iter()
            .map(|c| Path::new(ROOT).join(c).join("kiln/abc"))
            .chain([PathBuf::from("/elsewhere/x")])
            .collect();
        let names: Vec<String> = own_mounts_of(&dirs, false)
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["memory", "cpu,cpuacct", "devices"]);
        let v2 = own_mounts_of(&[Path::new(ROOT).join("kiln/abc")], true);
        assert_eq!(
            v2,
            [crate::sandbox::spec::OwnMount {
                host: Path::new(ROOT).join("kiln/abc"),
                name: String::new()
            }]
        );
    }
}
