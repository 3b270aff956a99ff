//! Docker's container options whose meaning the CLI (`kiln run`) and the
//! Docker API (`POST /containers/create`) share: one parser each, with
//! docker's units and messages, so that the two ways in cannot differ.

/// Parses `--add-host HOST:IP` (docker's form; `HOST=IP` too): `kiln run`,
/// `kiln build`, and the API's ExtraHosts of both.
pub fn parse_add_host(text: &str) -> Result<(String, String), String> {
    let (host, ip) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .ok_or_else(|| format!("invalid --add-host {text:?}: use HOST:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!(
            "invalid --add-host {text:?}: use HOST:IP with an IP address"
        ));
    }
    Ok((host.to_string(), ip.to_string()))
}

/// What `--security-opt` (the API's SecurityOpt) asks of a container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    /// The seccomp profile.
    pub seccomp: crate::sandbox::SeccompProfile,
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
}

/// `--security-opt` values as docker reads them: `seccomp=unconfined`,
/// `builtin`, a profile's JSON (what docker's CLI sends the daemon) or,
/// with `files` (the CLI, on the caller's host), a file holding it;
/// `no-new-privileges[:true|false]`. SELinux and AppArmor kiln applies
/// neither of, so `label=disable` and `apparmor=unconfined` change
/// nothing and are taken; asking for a label or a profile is refused.
pub fn security(opts: &[String], files: bool) -> Result<Security, String> {
    use crate::sandbox::SeccompProfile;
    let mut out = Security::default();
    for opt in opts {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
        let bad = |why: &str| format!("--security-opt {opt}: {why}");
        match (key, value) {
            ("seccomp", Some("unconfined")) => out.seccomp = SeccompProfile::Unconfined,
            ("seccomp", Some("builtin")) => out.seccomp = SeccompProfile::Default,
            ("seccomp", Some(json)) if json.trim_start().starts_with('{') => {
                // Checked now: a bad profile fails before any container
                // is made.
                crate::sandbox::seccomp::from_json(json).map_err(|e| bad(&e.to_string()))?;
                out.seccomp = SeccompProfile::Json(json.to_string());
            }
            ("seccomp", Some(path)) if files && !path.is_empty() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(&format!("reading {path}: {e}")))?;
                crate::sandbox::seccomp::from_json(&text).map_err(|e| bad(&e.to_string()))?;
                out.seccomp = SeccompProfile::Json(text);
            }
            ("seccomp", Some(_)) => {
                return Err(bad(
                    "send the profile's JSON, as the docker CLI does with a file's, or unconfined",
                ));
            }
            ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
            ("label", Some("disable")) | ("apparmor", Some("unconfined")) => {}
            ("label" | "apparmor", _) => {
                return Err(bad(
                    "kiln applies no SELinux label or AppArmor profile (label=disable and apparmor=unconfined are what it does)",
                ));
            }
            _ => {
                return Err(bad(
                    "kiln supports seccomp=unconfined|builtin|PROFILE and no-new-privileges",
                ));
            }
        }
    }
    Ok(out)
}

/// A Go duration (`1m30s`, `500ms`, `2h`) in nanoseconds (`--health-*`,
/// `--stop-timeout`'s kin).
pub fn duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {text:?}: use 30s, 1m, 500ms, 1h30m");
    let mut total: f64 = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

/// The smallest memory limit docker accepts.
const MIN_MEMORY: u64 = 6 << 20;

/// `--memory`, `Memory`: docker's binary units, at least 6 MB (no process
/// starts in less; docker refuses it with these words).
pub fn memory_limit(text: &str) -> Result<u64, String> {
    let bytes = crate::units::ram_in_bytes(text)?;
    if bytes < MIN_MEMORY {
        return Err(format!(
            "invalid memory {text:?}: Minimum memory limit allowed is 6MB"
        ));
    }
    Ok(bytes)
}

/// [`memory_limit`]'s check of a number of bytes (the API's `Memory`).
pub fn check_memory(bytes: u64) -> Result<u64, String> {
    match bytes < MIN_MEMORY {
        true => Err("Minimum memory limit allowed is 6MB".into()),
        false => Ok(bytes),
    }
}

/// `--shm-size`: docker's binary units, more than 0.
pub fn shm_size(text: &str) -> Result<u64, String> {
    match crate::units::ram_in_bytes(text)? {
        0 => Err(format!("invalid size {text:?}: it must be more than 0")),
        bytes => Ok(bytes),
    }
}

/// The log drivers there are: kiln's log keeps what a container prints
/// beside it, as docker's json-file (and local) do; `none` keeps nothing
/// to read (`logs` is refused; attach still streams).
const LOG_DRIVERS: [&str; 3] = ["json-file", "local", "none"];

/// What a container's log is kept with under `--log-driver none`: only
/// what attach needs, a small file rotated away.
const NONE_LOG_BYTES: u64 = 1 << 20;

/// A container's log: its rotation, and the options as given (inspect
/// shows them as docker does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `max-size`: bytes per file.
    pub max_size: Option<u64>,
    /// `max-file`: files kept.
    pub max_files: Option<usize>,
    /// The options, as written.
    pub given: std::collections::BTreeMap<String, String>,
    /// The driver as given (empty: the default, json-file).
    pub driver: String,
}

/// A log driver (`--log-driver`, `HostConfig.LogConfig.Type`; empty is
/// the default) and its options (`--log-opt`, `LogConfig.Config`):
/// `max-size=SIZE`, `max-file=N`. An unknown driver or option is refused
/// with docker's words.
pub fn log_options<'a>(
    driver: &str,
    opts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<LogOptions, String> {
    if !driver.is_empty() && !LOG_DRIVERS.contains(&driver) {
        return Err(format!(
            "logger: no log driver named '{driver}' is registered"
        ));
    }
    let mut out = LogOptions {
        driver: driver.to_string(),
        ..LogOptions::default()
    };
    if driver == "none" {
        if let Some((key, _)) = opts.into_iter().next() {
            return Err(format!("unknown log opt '{key}' for none log driver"));
        }
        out.max_size = Some(NONE_LOG_BYTES);
        out.max_files = Some(1);
        return Ok(out);
    }
    for (key, value) in opts {
        match key {
            "max-size" => out.max_size = Some(crate::units::ram_in_bytes(value)?),
            "max-file" => {
                out.max_files = Some(value.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(
                    || format!("invalid value for max-file: {value:?}: a positive number"),
                )?);
            }
            _ => {
                return Err(format!(
                    "unknown log opt '{key}' for json-file log driver (kiln's log takes max-size and max-file)"
                ));
            }
        }
        out.given.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// `CHOWN`, `cap_chown`, `CAP_CHOWN` → `CAP_CHOWN`.
fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    match upper.starts_with("CAP_") {
        true => upper,
        false => format!("CAP_{upper}"),
    }
}

/// The capabilities a container keeps: Docker's default set, with `drop`
/// then `add` applied (`ALL` for every one), or all when `privileged`;
/// None when nothing changes the default.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<Option<Vec<String>>, String> {
    let all = crate::sandbox::init::all_capabilities();
    if privileged {
        return Ok(Some(all));
    }
    if add.is_empty() && drop.is_empty() {
        return Ok(None);
    }
    let mut set = crate::sandbox::init::default_capabilities();
    for d in drop {
        match cap_name(d).as_str() {
            "CAP_ALL" => set.clear(),
            c if all.iter().any(|a| a == c) => set.retain(|s| s != c),
            c => return Err(format!("--cap-drop {d}: unknown capability {c}")),
        }
    }
    for a in add {
        match cap_name(a).as_str() {
            "CAP_ALL" => set = all.clone(),
            c if all.iter().any(|x| x == c) => {
                if !set.iter().any(|s| s == c) {
                    set.push(c.to_string());
                }
            }
            c => return Err(format!("--cap-add {a}: unknown capability {c}")),
        }
    }
    Ok(Some(set))
}

/// A tmpfs at `target` with docker's options (`--tmpfs PATH:OPTS`, the
/// API's `Tmpfs` map): `size=N` is taken; the others are kiln's defaults
/// or not taken, and refused.
pub fn tmpfs(target: &str, opts: &str) -> Result<crate::sandbox::Tmpfs, String> {
    if !target.starts_with('/') {
        return Err(format!(
            "invalid tmpfs {target:?}: the path must be absolute"
        ));
    }
    let mut size = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => size = Some(crate::units::ram_in_bytes(v)?),
            _ => {
                return Err(format!(
                    "invalid tmpfs option {o:?} for {target}: kiln takes size=N only"
                ));
            }
        }
    }
    Ok(crate::sandbox::Tmpfs {
        target: target.to_string(),
        size,
    })
}

/// One mount (`--mount`, the API's `HostConfig.Mounts`), its fields as
/// docker names them.
#[derive(Clone, Debug, Default)]
pub struct MountSpec {
    /// `bind`, `volume` or `tmpfs` (default `volume`).
    pub kind: String,
    /// The host path or the volume's name.
    pub source: Option<String>,
    /// The path in the container.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
    /// A bind's propagation (kiln's are rprivate).
    pub propagation: Option<String>,
    /// A volume's driver.
    pub driver: Option<String>,
    /// A tmpfs's size in bytes.
    pub tmpfs_size: Option<u64>,
}

/// What a mount becomes.
#[derive(Clone, Debug)]
pub enum Mounted {
    /// A host path.
    Bind(crate::sandbox::Bind),
    /// A volume of the store: (name, target, read-only).
    Volume(String, String, bool),
    /// A tmpfs.
    Tmpfs(crate::sandbox::Tmpfs),
}

/// Checks a mount as docker does and says what it becomes; every value is
/// checked (Buildah's CVE-2024-9407: options passed through unvalidated).
pub fn mount(m: &MountSpec) -> Result<Mounted, String> {
    if let Some(p) = &m.propagation
        && !["rprivate", "private", ""].contains(&p.as_str())
    {
        return Err(format!(
            "bind-propagation={p:?}: kiln's binds are rprivate (shared and slave propagation are not supported)"
        ));
    }
    if let Some(d) = &m.driver
        && !["local", ""].contains(&d.as_str())
    {
        return Err(format!(
            "volume-driver={d:?}: kiln has the local driver only"
        ));
    }
    if m.target.is_empty() {
        return Err("target= is required".into());
    }
    match m.kind.as_str() {
        "bind" => {
            let source = m.source.clone().ok_or("a bind needs source=")?;
            if !source.starts_with('/') || !m.target.starts_with('/') {
                return Err("both paths must be absolute".into());
            }
            if !std::path::Path::new(&source).exists() {
                return Err(format!("bind source path does not exist: {source}"));
            }
            Ok(Mounted::Bind(crate::sandbox::Bind {
                source: source.into(),
                target: m.target.clone(),
                read_only: m.readonly,
                exact: false,
                nodev: true,
                movable: false,
            }))
        }
        "volume" | "" => match &m.source {
            Some(name) if !name.is_empty() => {
                Ok(Mounted::Volume(name.clone(), m.target.clone(), m.readonly))
            }
            _ => Err("kiln's volume mounts need source=NAME".into()),
        },
        "tmpfs" => Ok(Mounted::Tmpfs(crate::sandbox::Tmpfs {
            target: m.target.clone(),
            size: m.tmpfs_size,
        })),
        other => Err(format!("type {other:?}: kiln takes bind, volume and tmpfs")),
    }
}

/// Docker's HostConfig settings that choose a runtime or a namespace
/// (`--runtime`, `--isolation`, `--init`, `--uts`, `--pid`, `--ipc`,
/// `--cgroupns`, `--volume-driver`, `--mac-address`): kept as given, shown
/// by inspect, and refused where kiln cannot do what they ask.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HostOptions {
    /// `--runtime`: kiln's own runtime is runc's kind (`runc` or empty).
    pub runtime: String,
    /// `--isolation`: only `default` on Linux.
    pub isolation: String,
    /// `--init`: kiln's init is always the container's pid 1, reaping as
    /// docker's tini does; kept to show.
    pub init: Option<bool>,
    /// `--uts`: `host` shares the host's hostname (no UTS namespace).
    pub uts_mode: String,
    /// `--pid`: only the container's own.
    pub pid_mode: String,
    /// `--ipc`: the container's own (`private`, `shareable`) or `host`.
    pub ipc_mode: String,
    /// `--cgroupns`: `private` (docker's default on cgroup v2) or `host`
    /// (its default on v1); empty: the default.
    pub cgroupns_mode: String,
    /// `--volume-driver`: names a plugin; only `local` volumes are made.
    pub volume_driver: String,
    /// `--mac-address` (docker's Config.MacAddress) for the first network.
    pub mac_address: String,
    /// `--device-cgroup-rule`s, as given (applied through the limits).
    pub device_cgroup_rules: Vec<String>,
    /// `--memory-swappiness` (-1: the kernel's).
    pub memory_swappiness: Option<i64>,
}

impl HostOptions {
    /// Refuses what dockerd refuses, in its words, and what kiln cannot do.
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.runtime.as_str(), "" | "runc" | "kiln") {
            return Err(format!("Unknown runtime specified {}", self.runtime));
        }
        if !matches!(self.isolation.as_str(), "" | "default") {
            return Err(format!(
                "Invalid isolation: {:?} - linux only supports 'default'",
                self.isolation
            ));
        }
        if !matches!(self.uts_mode.as_str(), "" | "host") {
            return Err(format!("invalid UTS mode: {}", self.uts_mode));
        }
        match self.pid_mode.as_str() {
            "" | "private" => {}
            "host" => {
                return Err(
                    "--pid host is not supported: kiln's init is each container's pid 1 and ends what the container started, which the host's PID namespace would not allow".into(),
                );
            }
            m if m.starts_with("container:") => {
                return Err(format!(
                    "--pid {m} is not supported: a container has its own PID namespace"
                ));
            }
            m => return Err(format!("invalid PID mode: {m}")),
        }
        match self.ipc_mode.as_str() {
            "" | "private" | "shareable" | "host" | "none" => {}
            m if m.starts_with("container:") => {
                return Err(format!(
                    "--ipc {m} is not supported: a container has its own IPC namespace or the host's"
                ));
            }
            m => return Err(format!("invalid IPC mode: {m}")),
        }
        match self.cgroupns_mode.as_str() {
            "" | "host" | "private" => {}
            m => return Err(format!("invalid cgroup namespace mode: {m}")),
        }
        if !self.mac_address.is_empty() && !is_mac(&self.mac_address) {
            return Err(format!("invalid MAC address: {}", self.mac_address));
        }
        for rule in &self.device_cgroup_rules {
            if !is_device_rule(rule) {
                return Err(format!("invalid device cgroup format '{rule}'"));
            }
        }
        if let Some(s) = self.memory_swappiness
            && !(s == -1 || (0..=100).contains(&s))
        {
            return Err(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
        Ok(())
    }
}

/// `02:42:ac:11:00:0a`: six hex pairs.
fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// docker's device cgroup rule: `[acb] MAJOR:MINOR [rwm]{1,3}`, `*` for any
/// number.
fn is_device_rule(rule: &str) -> bool {
    let number = |n: &str| n == "*" || (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    match rule.split(' ').collect::<Vec<_>>().as_slice() {
        [kind, numbers, access] => {
            matches!(*kind, "a" | "b" | "c")
                && numbers
                    .split_once(':')
                    .is_some_and(|(a, b)| number(a) && number(b))
                && (1..=3).contains(&access.len())
                && access.bytes().all(|b| b"rwm".contains(&b))
        }
        _ => false,
    }
}

/// `--device HOST[:CONTAINER[:rwm]]`: the device program's rule for the
/// host node (`c 1:3 rw`) and the bind that puts the node in the
/// container (device access kept for this one mount; read-only without
/// `w`), as docker makes them.
pub fn device(spec: &str) -> Result<(String, crate::sandbox::Bind), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if c.starts_with('/') => (*h, *c, "rwm"),
        [h, p] => (*h, *h, *p),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(format!(
                "invalid --device {spec:?}: use HOST[:CONTAINER[:rwm]]"
            ));
        }
    };
    let meta = std::fs::metadata(host)
        .ok()
        .filter(|m| m.file_type().is_char_device() || m.file_type().is_block_device());
    let Some(meta) = meta.filter(|_| {
        ctr.starts_with("/dev/") && !perms.is_empty() && perms.chars().all(|c| "rwm".contains(c))
    }) else {
        return Err(format!(
            "invalid --device {spec:?}: {host} must be a device node, the container path under /dev/, the permissions of r, w, m"
        ));
    };
    let rdev = meta.rdev();
    let kind = match meta.file_type().is_block_device() {
        true => 'b',
        false => 'c',
    };
    let (major, minor) = (
        (rdev >> 8) & 0xfff,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    );
    Ok((
        format!("{kind} {major}:{minor} {perms}"),
        crate::sandbox::Bind {
            source: host.into(),
            target: ctr.to_string(),
            read_only: !perms.contains('w'),
            exact: true,
            nodev: false,
            movable: false,
        },
    ))
}

/// `--privileged`'s devices: every device node of the host's /dev not
/// already bound at its path (`binds`), as docker gives them; the host's
/// tty, console and ptmx stay the container's own (the host's would reach
/// the host's terminals).
pub fn privileged_devices(binds: &[crate::sandbox::Bind]) -> Vec<crate::sandbox::Bind> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/dev").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let is_device = kind.is_char_device() || kind.is_block_device();
        if !is_device || ["tty", "console", "ptmx"].contains(&name.as_str()) {
            continue;
        }
        let path = format!("/dev/{name}");
        if binds.iter().any(|b| b.target == path) {
            continue;
        }
        out.push(crate::sandbox::Bind {
            source: entry.path(),
            target: path,
            read_only: false,
            exact: true,
            nodev: false,
            movable: false,
        });
    }
    out
}

/// `--memory-swap` (`-1`: unlimited) checked against `--memory`, with
/// docker's words.
pub fn memory_swap(swap: Option<&str>, memory: Option<u64>) -> Result<Option<i64>, String> {
    let swap = match swap {
        None => None,
        Some("-1") => Some(-1),
        Some(v) => Some(i64::try_from(crate::units::ram_in_bytes(v)?).unwrap_or(i64::MAX)),
    };
    if swap.is_some() && memory.is_none() {
        return Err(
            "You should always set the Memory limit when using Memoryswap limit, see usage.".into(),
        );
    }
    if let (Some(swap), Some(mem)) = (swap, memory)
        && swap >= 0
        && (swap as u64) < mem
    {
        return Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage.".into(),
        );
    }
    Ok(swap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_become_a_rule_and_a_bind() {
        let (rule, bind) = device("/dev/null").unwrap();
        assert_eq!(rule, "c 1:3 rwm");
        assert_eq!((bind.target.as_str(), bind.read_only), ("/dev/null", false));
        let (rule, bind) = device("/dev/null:/dev/nothing:r").unwrap();
        assert_eq!(rule, "c 1:3 r");
        assert_eq!(
            (bind.target.as_str(), bind.read_only),
            ("/dev/nothing", true)
        );
        assert_eq!(device("/dev/zero:rw").unwrap().0, "c 1:5 rw");
        for bad in [
            "/etc/passwd",
            "/dev/null:/x",
            "/dev/null:/dev/n:rwx",
            "a:b:c:d",
        ] {
            assert!(device(bad).is_err(), "{bad}");
        }
        assert!(
            privileged_devices(&[])
                .iter()
                .all(|b| !["/dev/tty", "/dev/console", "/dev/ptmx"].contains(&b.target.as_str()))
        );
    }

    #[test]
    fn swap_needs_memory_and_at_least_as_much() {
        assert_eq!(memory_swap(None, None), Ok(None));
        assert_eq!(memory_swap(Some("-1"), Some(1)), Ok(Some(-1)));
        assert_eq!(memory_swap(Some("2m"), Some(1 << 20)), Ok(Some(2 << 20)));
        assert!(
            memory_swap(Some("1m"), None)
                .unwrap_err()
                .contains("Memory limit")
        );
        assert!(
            memory_swap(Some("1m"), Some(2 << 20))
                .unwrap_err()
                .starts_with("Minimum memoryswap limit")
        );
    }

    #[test]
    fn docker_units_and_words() {
        assert_eq!(memory_limit("64m"), Ok(64 << 20));
        assert!(
            memory_limit("1024")
                .unwrap_err()
                .contains("Minimum memory limit allowed is 6MB")
        );
        assert!(memory_limit("12x").is_err());
        assert_eq!(shm_size("64m"), Ok(64 << 20));
        assert_eq!(duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(duration("500ms"), Ok(500_000_000));
        assert!(duration("5 minutes").is_err());
        assert!(shm_size("0").is_err());
        let l = log_options("", [("max-file", "100"), ("max-size", "1k")]).unwrap();
        assert_eq!((l.max_size, l.max_files), (Some(1024), Some(100)));
        assert_eq!(l.given.get("max-file").map(String::as_str), Some("100"));
        assert_eq!(
            log_options("asdf", []).unwrap_err(),
            "logger: no log driver named 'asdf' is registered"
        );
        assert!(log_options("json-file", [("max-file", "0")]).is_err());
        assert!(log_options("json-file", [("compress", "true")]).is_err());
        assert_eq!(log_options("none", []).unwrap().driver, "none");
        assert_eq!(
            log_options("none", [("max-size", "1k")]).unwrap_err(),
            "unknown log opt 'max-size' for none log driver"
        );
    }

    #[test]
    fn host_options_are_refused_in_dockerds_words() {
        let ok = HostOptions {
            runtime: "runc".into(),
            isolation: "default".into(),
            uts_mode: "host".into(),
            mac_address: "02:42:ac:11:00:0a".into(),
            device_cgroup_rules: vec!["c 7:128 rwm".into(), "a *:* m".into()],
            memory_swappiness: Some(40),
            ..HostOptions::default()
        };
        assert_eq!(ok.check(), Ok(()));
        let bad = |o: HostOptions| o.check().unwrap_err();
        assert_eq!(
            bad(HostOptions {
                runtime: "kata".into(),
                ..ok.clone()
            }),
            "Unknown runtime specified kata"
        );
        assert_eq!(
            bad(HostOptions {
                isolation: "hyperv".into(),
                ..ok.clone()
            }),
            "Invalid isolation: \"hyperv\" - linux only supports 'default'"
        );
        assert_eq!(
            bad(HostOptions {
                device_cgroup_rules: vec!["c 7 rwm".into()],
                ..ok.clone()
            }),
            "invalid device cgroup format 'c 7 rwm'"
        );
        assert_eq!(
            bad(HostOptions {
                memory_swappiness: Some(101),
                ..ok.clone()
            }),
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        assert!(
            bad(HostOptions {
                pid_mode: "host".into(),
                ..ok.clone()
            })
            .contains("not supported")
        );
        assert!(
            bad(HostOptions {
                mac_address: "02:42".into(),
                ..ok
            })
            .contains("MAC")
        );
    }
}
