//! Containers that outlive the command: each one a directory in the store
//! (`containers/<id>/`) with its immutable record (`config.json`: the
//! image, the spec the sandbox runs, limits, restart policy, stop signal),
//! its state (`state.json`, [`state`]), its log ([`logs`]) and its overlay
//! directories. A foreground `kiln run` watches its own container; `kiln
//! run -d` and `kiln start` leave it to a monitor ([`monitor`]): kiln
//! itself, re-executed in a session of its own. No daemon: every command
//! reads the directory.

pub mod archive;
pub mod attach;
pub mod changes;
pub mod filters;
pub mod health;
pub mod inspect;
pub mod logs;
pub mod monitor;
mod names;
pub mod networks;
pub mod options;
pub mod ports;
pub mod state;
pub mod stats;
pub mod volume;

use crate::image::Image;
use crate::network;
use crate::sandbox::{
    self, Bind, ContainerDirs, Limits, Network, SandboxError, SeccompProfile, Spec,
};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a container operation failed.
#[derive(Debug, Error)]
pub enum ContainerError {
    /// No container has that name or id (prefix).
    #[error("No such container: {0}")]
    NotFound(String),
    /// A path in the container does not exist (`docker cp`).
    #[error("Could not find the file {path} in container {container}")]
    NoSuchPath {
        /// The path asked for.
        path: String,
        /// The container's name.
        container: String,
    },
    /// An id prefix names several containers.
    #[error("multiple containers match {0:?}: give more of the id")]
    Ambiguous(String),
    /// The name is taken.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse {
        /// The name.
        name: String,
        /// Its container.
        id: String,
    },
    /// The request does not fit the container or its options.
    #[error("{0}")]
    Invalid(String),
    /// The container is not in the state the request needs (docker's
    /// 409: not running, paused, already paused).
    #[error("{0}")]
    Conflict(String),
    /// The image cannot be used.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An archive from the container could not be unpacked.
    #[error("reading the archive: {0}")]
    Unpack(#[from] crate::layer::ApplyError),
    /// A port cannot be published.
    #[error(transparent)]
    Port(#[from] ports::PortError),
    /// A network of the container failed.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// A file of the container could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io {
        action,
        path,
        source,
    }
}

/// `--restart`: when the monitor starts the container again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never (the default).
    #[default]
    No,
    /// When it exits non-zero, at most this many times (unlimited: None).
    OnFailure(Option<u32>),
    /// Whenever it exits, unless a user stopped it.
    Always,
    /// As `always`; a user's stop is also remembered by `start --all-restartable`.
    UnlessStopped,
}

impl Restart {
    /// Parses docker's `no|on-failure[:N]|always|unless-stopped`.
    pub fn parse(text: &str) -> Result<Restart, String> {
        match text.split_once(':') {
            None if text == "no" => Ok(Restart::No),
            None if text == "always" => Ok(Restart::Always),
            None if text == "unless-stopped" => Ok(Restart::UnlessStopped),
            None if text == "on-failure" => Ok(Restart::OnFailure(None)),
            Some(("on-failure", n)) => {
                n.parse().map(|n| Restart::OnFailure(Some(n))).map_err(|_| {
                    format!("invalid restart policy {text:?}: the count must be a number")
                })
            }
            Some((p @ ("no" | "always" | "unless-stopped"), _)) => Err(format!(
                "invalid restart policy {text:?}: maximum retry count cannot be used with restart policy '{p}'"
            )),
            _ => Err(format!(
                "invalid restart policy {text:?}: use no, on-failure[:N], always or unless-stopped"
            )),
        }
    }

    /// Docker's name of it (`on-failure`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure(_) => "on-failure",
            Restart::Always => "always",
            Restart::UnlessStopped => "unless-stopped",
        }
    }
}

/// What a new container is made of (what `kiln run`'s flags say).
#[derive(Debug, Clone, Default)]
pub struct Create {
    /// The image, as given.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// The command after the image (replaces CMD).
    pub command: Vec<String>,
    /// `--entrypoint` (`""` clears it).
    pub entrypoint: Option<String>,
    /// `KEY=VALUE` entries in the order given (env files, then `-e`).
    pub env: Vec<String>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// Named volumes: (name, path in the container, read-only).
    pub volumes: Vec<(String, String, bool)>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--network`.
    pub network: Network,
    /// Cgroup limits.
    pub limits: Limits,
    /// `--read-only`.
    pub read_only: bool,
    /// The seccomp profile.
    pub seccomp: SeccompProfile,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i` on a detached container: its standard input is a pipe its
    /// monitor holds, written by whoever attaches (Docker's `OpenStdin`).
    pub open_stdin: bool,
    /// Its standard input is closed when the first attached client's ends
    /// (Docker's `StdinOnce`: `docker run -i`).
    pub stdin_once: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--restart`.
    pub restart: Restart,
    /// `--stop-signal` (default: the image's STOPSIGNAL, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (default 10).
    pub stop_timeout: Option<u64>,
    /// `--log-opt max-size`.
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file` (default 1: the log is cut, not kept).
    pub log_max_files: Option<usize>,
    /// The log options as given (inspect shows them).
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// `--log-driver` (empty: json-file).
    pub log_driver: String,
    /// `-l`: labels.
    pub labels: Vec<(String, String)>,
    /// `--health-*` over the image's HEALTHCHECK (`test: ["NONE"]` for
    /// `--no-healthcheck`).
    pub health: Option<crate::image::config::Healthcheck>,
    /// `--shm-size`.
    pub shm_size: Option<u64>,
    /// `--ulimit`.
    pub rlimits: Vec<sandbox::Rlimit>,
    /// `--add-host`: (host, IP) lines of /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// `--dns`: the nameservers of /etc/resolv.conf (default: the host's).
    pub dns: Vec<String>,
    /// `--tmpfs`.
    pub tmpfs: Vec<sandbox::Tmpfs>,
    /// The tmpfs options as given, by path (inspect shows them).
    pub tmpfs_opts: std::collections::BTreeMap<String, String>,
    /// The capabilities kept (None: Docker's default set).
    pub capabilities: Option<Vec<String>>,
    /// `--group-add`.
    pub extra_groups: Vec<String>,
    /// `--sysctl`.
    pub sysctls: Vec<(String, String)>,
    /// `-p`: published ports (the container then gets a network namespace
    /// of its own).
    pub ports: Vec<ports::Port>,
    /// `--network NAME` (with `--network-alias`, `--ip`): user networks,
    /// joined in this order as eth0, eth1… (the container then gets a
    /// network namespace of its own).
    pub networks: Vec<crate::network::Attachment>,
    /// Docker's default network mode as `dockerd --bridge=none` gives it
    /// (`kiln system service --bridge none`): the endpoint asked for, its
    /// `network` the mode as given (`default` or `bridge`).
    pub default_bridge: Option<crate::network::Attachment>,
    /// Runtime and namespace settings (`--runtime`, `--uts`, ...).
    pub host: options::HostOptions,
    /// Paths that get an anonymous volume, beside the image's VOLUMEs
    /// (`-v /path`, the API's `Config.Volumes`).
    pub anonymous_volumes: Vec<String>,
    /// `--volumes-from NAME[:ro|rw]`: another container's volumes and binds.
    pub volumes_from: Vec<String>,
    /// Docker's legacy links (HostConfig.Links, `NAME:ALIAS`) of its
    /// default network: the linked container's name and environment as
    /// `ALIAS_NAME`, `ALIAS_ENV_*`.
    pub legacy_links: Vec<String>,
    /// `--platform`: of a multi-platform image, that platform's.
    pub platform: Option<crate::registry::Platform>,
}

/// What `kiln exec` runs.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    /// The command.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries over the container's environment.
    pub env: Vec<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
}

/// What `kiln commit` makes.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// `NAME[:TAG]` to tag it with.
    pub name: Option<crate::image::Name>,
    /// `-a`.
    pub author: Option<String>,
    /// `-m`.
    pub message: Option<String>,
    /// `-c` Dockerfile instructions.
    pub changes: Vec<String>,
    /// `--pause`: freeze the container while its changes are read.
    pub pause: bool,
    /// SOURCE_DATE_EPOCH, as the caller decided it: the image's `created`
    /// time (else now).
    pub epoch: Option<i64>,
}

/// Why `kiln exec` could not run its process.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The container does not run.
    #[error("{0}")]
    NotRunning(String),
    /// The sandbox could not run it (125), or the command could not be
    /// started (126, 127).
    #[error(transparent)]
    Sandbox(SandboxError),
}

impl ExecError {
    /// The exit code docker gives a failed exec: 126 for any process that
    /// could not be started (not found included, where `run` says 127),
    /// 125 for the runtime's own failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::NotRunning(_) => 126,
            ExecError::Sandbox(s) => match s.exit_code() {
                127 => 126,
                code => code,
            },
        }
    }
}

/// A container's record (`config.json`): fixed at create but for its
/// networks, which `network connect` and `disconnect` change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Its name (docker's `/name` without the slash).
    pub name: String,
    /// The image as given.
    pub image: String,
    /// The image's id.
    pub image_id: String,
    /// When it was made.
    pub created: String,
    /// What it runs (entrypoint and command).
    pub argv: Vec<String>,
    /// Its entrypoint, as `commit` keeps it.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Its command, as `commit` keeps it.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// What the sandbox runs.
    pub spec: Spec,
    /// Its cgroup limits.
    pub limits: Limits,
    /// `--restart`.
    pub restart: Restart,
    /// The signal `kiln stop` sends.
    pub stop_signal: String,
    /// Seconds `kiln stop` waits before SIGKILL.
    pub stop_timeout: u64,
    /// `--rm`.
    pub auto_remove: bool,
    /// Log rotation: bytes per file.
    pub log_max_size: Option<u64>,
    /// Log rotation: files kept.
    pub log_max_files: usize,
    /// The log options as given.
    #[serde(default)]
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// The log driver as given (empty: json-file; `none`: not readable).
    #[serde(default)]
    pub log_driver: String,
    /// The tmpfs options as given, by path.
    #[serde(default)]
    pub tmpfs_opts: std::collections::BTreeMap<String, String>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// The anonymous volumes made for the image's VOLUMEs (`rm -v`
    /// removes them).
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// Its healthcheck.
    #[serde(default)]
    pub healthcheck: Option<health::Check>,
    /// The same in docker's form (inspect's Config.Healthcheck).
    #[serde(default)]
    pub healthcheck_config: Option<crate::image::config::Healthcheck>,
    /// Its published ports.
    #[serde(default)]
    pub ports: Vec<ports::Port>,
    /// The user networks it joins at each start.
    #[serde(default)]
    pub networks: Vec<crate::network::Attachment>,
    /// Docker's default network mode without a bridge (see
    /// [`Create::default_bridge`]): shown by inspect, nothing joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_bridge: Option<crate::network::Attachment>,
    /// The nameservers its resolver asks for names not on its networks
    /// (`--dns`, else the host's).
    #[serde(default)]
    pub dns_upstream: Vec<String>,
    /// Its standard input stays open for attached clients (`-i`).
    #[serde(default)]
    pub open_stdin: bool,
    /// Its standard input closes when the first attached client's ends.
    #[serde(default)]
    pub stdin_once: bool,
    /// Runtime and namespace settings, as given.
    #[serde(default)]
    pub host: options::HostOptions,
    /// `--volumes-from`, as given.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// Legacy links: (the linked container's id, the alias).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_links: Vec<(String, String)>,
}

/// A container: its record and directory.
#[derive(Clone, Debug)]
pub struct Container {
    /// The record.
    pub record: Record,
    /// `containers/<id>/`.
    pub dir: PathBuf,
}

fn random_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sets `KEY=VALUE` in `env`, replacing the entry of the same key (in
/// its place) or adding it at the end.
pub fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default().to_string();
    match env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(key.as_str()))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// The kernel's limit on a hostname's length (sethostname's EINVAL).
const HOST_NAME_MAX: usize = 64;

/// True for a name docker accepts (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The image's HEALTHCHECK with the `--health-*` flags over it: a flag's
/// test replaces the image's, each duration or count given replaces its.
fn merge_health(
    image: Option<&crate::image::config::Healthcheck>,
    flags: Option<&crate::image::config::Healthcheck>,
) -> Option<crate::image::config::Healthcheck> {
    let Some(flags) = flags else {
        return image.cloned();
    };
    let mut out = image.cloned().unwrap_or_default();
    if !flags.test.is_empty() {
        out.test = flags.test.clone();
    }
    out.interval = flags.interval.or(out.interval);
    out.timeout = flags.timeout.or(out.timeout);
    out.start_period = flags.start_period.or(out.start_period);
    out.retries = flags.retries.or(out.retries);
    Some(out)
}

/// Makes a container from `opts`: its directories, record and state
/// (`created`). The container's lock is returned held: the caller runs it
/// (foreground) or drops it for a monitor to take.
pub fn create(store: &Store, opts: &Create) -> Result<(Container, ContainerDirs), ContainerError> {
    let image = Image::resolve_for(store, &opts.image, opts.platform.as_ref())?;
    let c = &image.config.config;
    // Entrypoint and Cmd exactly as docker run combines them.
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => c.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        c.cmd.clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();
    if argv.is_empty() {
        return Err(ContainerError::Invalid(format!(
            "no command specified: image {} has no CMD or ENTRYPOINT; give one after the image name",
            opts.image
        )));
    }
    let existing = list(store)?;
    let name = match &opts.name {
        Some(n) if !valid_name(n) => {
            return Err(ContainerError::Invalid(format!(
                "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        Some(n) => n.clone(),
        None => names::unused(
            &existing
                .iter()
                .map(|c| c.record.name.as_str())
                .collect::<Vec<_>>(),
        ),
    };
    if let Some(other) = existing.iter().find(|c| c.record.name == name) {
        return Err(ContainerError::NameInUse {
            name,
            id: other.record.id.clone(),
        });
    }
    if !opts.ports.is_empty() && opts.network != Network::None {
        return Err(ContainerError::Invalid(
            "published ports need the container's own network namespace: -p goes without --network host".into(),
        ));
    }
    if !opts.networks.is_empty() && opts.network != Network::None {
        return Err(ContainerError::Invalid(
            "a user network needs the container's own network namespace: not with --network host"
                .into(),
        ));
    }
    opts.host.check().map_err(ContainerError::Invalid)?;
    if !opts.host.mac_address.is_empty() && opts.networks.is_empty() {
        return Err(ContainerError::Invalid(
            "conflicting options: mac-address and the network mode: a MAC address is given on a user network (--network NAME)".into(),
        ));
    }
    let mut asked = opts.networks.clone();
    if let Some(first) = asked.first_mut()
        && !opts.host.mac_address.is_empty()
    {
        first.mac = Some(opts.host.mac_address.to_ascii_lowercase());
    }
    let attachments = networks::check(store.root(), &asked)?;
    let mut published = opts.ports.clone();
    ports::choose_free(&mut published)?;
    let id = random_id();
    if let Some(h) = &opts.hostname
        && h.len() > HOST_NAME_MAX
    {
        return Err(ContainerError::Invalid(format!(
            "invalid hostname {h:?}: a hostname has at most {HOST_NAME_MAX} characters (the kernel's limit)"
        )));
    }
    // A name too long to be a hostname leaves the id's first digits
    // there, as docker's containers always have.
    let hostname = opts
        .hostname
        .clone()
        .or(opts.name.clone().filter(|n| n.len() <= HOST_NAME_MAX))
        .unwrap_or_else(|| id[..12].to_string());
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HOSTNAME={hostname}"),
    ];
    // Legacy links' variables before the container's own, which win
    // (moby's CreateDaemonEnvironment).
    let mut legacy_links = Vec::new();
    for l in &opts.legacy_links {
        let (target, alias) = l.split_once(':').unwrap_or((l, l));
        let target = target.trim_start_matches('/');
        let other = existing
            .iter()
            .find(|o| o.record.name == target || o.record.id == target)
            .ok_or_else(|| ContainerError::NotFound(target.to_string()))?;
        let prefix = alias.to_ascii_uppercase().replace('-', "_");
        set_env(&mut env, format!("{prefix}_NAME=/{name}/{alias}"));
        for e in &other.record.spec.env {
            if let Some((k, v)) = e.split_once('=')
                && k != "HOME"
                && k != "PATH"
            {
                set_env(&mut env, format!("{prefix}_ENV_{k}={v}"));
            }
        }
        legacy_links.push((other.record.id.clone(), alias.to_string()));
    }
    for e in c.env.iter().flatten().chain(&opts.env) {
        set_env(&mut env, e.clone());
    }
    // Volumes: named ones made on first use, the image's VOLUMEs not
    // covered given anonymous ones; a new, empty one gets the image's
    // content at its path.
    // `--volumes-from NAME[:ro|rw]`: every volume and bind of that
    // container at the same place, read-only with `:ro`, else as it was
    // there; its devices stay its own. What this one mounts itself wins.
    let own_targets: Vec<&str> = opts
        .binds
        .iter()
        .map(|b| b.target.as_str())
        .chain(opts.volumes.iter().map(|(_, t, _)| t.as_str()))
        .collect();
    let mut inherited: Vec<Bind> = Vec::new();
    for from in &opts.volumes_from {
        let (name, mode) = match from.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
            Some(_) => {
                return Err(ContainerError::Invalid(format!(
                    "invalid volumes-from {from:?}: use NAME[:ro|rw]"
                )));
            }
            None => (from.as_str(), None),
        };
        let other = find(store, name)?;
        for b in &other.record.spec.binds {
            if b.target.starts_with("/dev/")
                || own_targets.contains(&b.target.as_str())
                || inherited.iter().any(|i| i.target == b.target)
            {
                continue;
            }
            let mut b = b.clone();
            if let Some(m) = mode {
                b.read_only = m == "ro";
            }
            inherited.push(b);
        }
    }
    let mut binds = opts.binds.clone();
    binds.extend(inherited.iter().cloned());
    let mut anonymous = Vec::new();
    let image_volumes: Vec<String> = c
        .volumes
        .iter()
        .flatten()
        .map(|(path, _)| path.clone())
        .chain(opts.anonymous_volumes.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|p| {
            !opts.volumes.iter().any(|(_, t, _)| t == p) && !binds.iter().any(|b| b.target == *p)
        })
        .collect();
    let wanted = opts
        .volumes
        .iter()
        .map(|(n, t, ro)| (Some(n.as_str()), t.clone(), *ro))
        .chain(image_volumes.iter().map(|p| (None, p.clone(), false)));
    for (name, target, read_only) in wanted {
        let (v, new) = volume::create(store, name)?;
        if v.anonymous {
            anonymous.push(v.name.clone());
        }
        if new || volume::is_empty(&v.mountpoint) {
            volume::copy_up(store, &image, &target, &v)?;
        }
        binds.push(Bind {
            source: v.mountpoint.clone(),
            target,
            read_only,
            exact: true,
            // A device node the container makes in a volume must not
            // open the host's device (cgroup v2 has no device filter of
            // kiln's to stop it): docker's devices cgroup, by the mount.
            nodev: true,
            movable: false,
        });
    }
    // Layers as overlay lowerdirs, top first.
    let mut lower = image.snapshots(store)?;
    lower.reverse();
    let dir = store.container_dir(&id);
    let dirs = ContainerDirs::create(&dir, &hostname, &opts.extra_hosts)
        .map_err(io_err("creating", &dir))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if !opts.networks.is_empty() {
        let resolv = dirs.etc.join("resolv.conf");
        std::fs::write(&resolv, networks::resolv_conf(&host_resolv))
            .map_err(io_err("writing", &resolv))?;
    } else if !opts.dns.is_empty() {
        let resolv = dirs.etc.join("resolv.conf");
        let text: String = opts
            .dns
            .iter()
            .map(|ns| format!("nameserver {ns}\n"))
            .collect();
        std::fs::write(&resolv, text).map_err(io_err("writing", &resolv))?;
    }
    if lower.is_empty() {
        lower.push(dirs.empty.clone());
    }
    let spec = Spec {
        lower,
        upper: dirs.upper.clone(),
        work: dirs.work.clone(),
        rootfs: dirs.rootfs.clone(),
        volatile: opts.auto_remove,
        read_only: opts.read_only,
        argv: argv.clone(),
        env,
        cwd: opts
            .workdir
            .clone()
            .or(c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: opts.user.clone().or(c.user.clone()).unwrap_or_default(),
        hostname,
        network: opts.network,
        binds,
        tty: opts.tty,
        tmpfs: opts.tmpfs.clone(),
        rootless: !sandbox::fs::is_root(),
        etc_dir: dirs.etc.clone(),
        seccomp: opts.seccomp.clone(),
        no_new_privileges: opts.no_new_privileges,
        shm_size: opts.shm_size,
        rlimits: opts.rlimits.clone(),
        capabilities: opts.capabilities.clone(),
        extra_groups: opts.extra_groups.clone(),
        sysctls: opts.sysctls.clone(),
        host_uts: opts.host.uts_mode == "host",
        host_ipc: opts.host.ipc_mode == "host",
        cgroups: Vec::new(),
        chroot: false,
        cgroupns: match opts.host.cgroupns_mode.as_str() {
            "private" => Some(true),
            "host" => Some(false),
            _ => None,
        },
    };
    for (key, _) in &opts.sysctls {
        sandbox::spec::check_sysctl(key, opts.network == Network::None)
            .map_err(ContainerError::Invalid)?;
    }
    let stop_signal = opts
        .stop_signal
        .clone()
        .or(c.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    if sandbox::process::signal_number(&stop_signal).is_none() {
        return Err(ContainerError::Invalid(format!(
            "invalid stop signal {stop_signal:?}"
        )));
    }
    let mut record = Record {
        id: id.clone(),
        name,
        image: opts.image.clone(),
        image_id: image.id.to_string(),
        created: state::now(),
        argv,
        entrypoint,
        cmd,
        spec,
        limits: opts.limits.clone(),
        restart: opts.restart,
        stop_signal,
        stop_timeout: opts.stop_timeout.unwrap_or(10),
        auto_remove: opts.auto_remove,
        log_max_size: opts.log_max_size,
        log_max_files: opts.log_max_files.unwrap_or(1),
        log_opts: opts.log_opts.clone(),
        log_driver: opts.log_driver.clone(),
        tmpfs_opts: opts.tmpfs_opts.clone(),
        labels: opts.labels.clone(),
        anonymous_volumes: anonymous,
        ports: published,
        networks: attachments,
        default_bridge: opts.default_bridge.clone(),
        dns_upstream: match opts.dns.is_empty() {
            true => network::dns::nameservers(&host_resolv)
                .iter()
                .map(|a| a.ip().to_string())
                .collect(),
            false => opts.dns.clone(),
        },
        healthcheck_config: merge_health(c.healthcheck.as_ref(), opts.health.as_ref()),
        healthcheck: health::resolve(
            merge_health(c.healthcheck.as_ref(), opts.health.as_ref()).as_ref(),
        ),
        open_stdin: opts.open_stdin,
        stdin_once: opts.stdin_once,
        host: opts.host.clone(),
        volumes_from: opts.volumes_from.clone(),
        legacy_links,
    };
    let path = dir.join("config.json");
    // The name is taken under the names lock: a create or rename that
    // checked it meanwhile does not get it too. A name kiln chose that
    // another create took meanwhile (twenty `run -d` at once) is chosen
    // again, as docker does; one the user gave is a conflict.
    let names = names_lock(store)?;
    let existing = list(store)?;
    if let Some(other) = existing.iter().find(|c| c.record.name == record.name) {
        if opts.name.is_some() {
            remove_dir(&dir);
            return Err(ContainerError::NameInUse {
                name: record.name,
                id: other.record.id.clone(),
            });
        }
        record.name = names::unused(
            &existing
                .iter()
                .map(|c| c.record.name.as_str())
                .collect::<Vec<_>>(),
        );
    }
    let bytes =
        serde_json::to_vec_pretty(&record).map_err(|e| io_err("writing", &path)(e.into()))?;
    crate::store::write_private(&path, &bytes).map_err(io_err("writing", &path))?;
    drop(names);
    state::write(&dir, &state::State::default()).map_err(io_err("writing", &dir))?;
    // The log exists from the start: an attach made before `start` holds
    // it open, and reads what a short-lived `--rm` container printed even
    // once its directory is gone.
    logs::Writer::open(&dir, None, 1).map_err(io_err("creating the log in", &dir))?;
    if opts.auto_remove {
        // Store::open reclaims a --rm container whose kiln died.
        let marker = dir.join("auto-remove");
        std::fs::write(&marker, b"").map_err(io_err("writing", &marker))?;
    }
    let c = Container { record, dir };
    c.event("create", []);
    Ok((c, dirs))
}

impl Container {
    /// Records `action` about it in its store's event journal, with its
    /// name, image and labels (and `extra`), as docker's events carry.
    pub fn event(&self, action: &str, extra: impl IntoIterator<Item = (String, String)>) {
        let Some(root) = self.dir.parent().and_then(Path::parent) else {
            return;
        };
        let mut attributes = self.record.labels.clone();
        attributes.push(("name".into(), self.record.name.clone()));
        attributes.push(("image".into(), self.record.image.clone()));
        attributes.extend(extra);
        crate::events::record(
            root,
            crate::events::Kind::Container,
            action,
            &self.record.id,
            attributes,
        );
    }

    /// The record as it is now, changed by `f` and written back under a
    /// lock of the container's directory: two changes (a rename, a
    /// connect, an update) never interleave, and none undoes another.
    /// When `f` fails, nothing is written.
    pub fn modify_record(
        &self,
        f: impl FnOnce(&mut Record) -> Result<(), ContainerError>,
    ) -> Result<Container, ContainerError> {
        let held = std::fs::File::open(&self.dir).map_err(io_err("opening", &self.dir))?;
        held.lock().map_err(io_err("locking", &self.dir))?;
        let mut fresh =
            load(&self.dir).ok_or_else(|| ContainerError::NotFound(self.record.id.clone()))?;
        f(&mut fresh.record)?;
        fresh.save_record()?;
        Ok(fresh)
    }

    /// Writes the record back (atomically: a reader sees the old or the new).
    pub fn save_record(&self) -> Result<(), ContainerError> {
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = self.dir.join("config.json");
        // A name of its own for each write: two writers never share one.
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".config.json.{}.{n}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| io_err("writing", &path)(e.into()))?;
        crate::store::write_private(&tmp, &bytes).map_err(io_err("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("writing", &path))
    }
}

/// docker's answer to `logs` of a container whose log driver keeps none.
pub const LOGS_NOT_READABLE: &str = "configured logging driver does not support reading";

/// What `docker update` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// `--memory`, bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`, bytes (-1: unlimited).
    pub memory_swap: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`.
    pub pids: Option<u64>,
    /// `--restart`.
    pub restart: Option<Restart>,
}

impl Container {
    /// `docker update`: the record takes the new limits and restart
    /// policy, and a running container's groups the limits at once (its
    /// monitor applies the policy at the next exit).
    pub fn update(&mut self, u: &Update) -> Result<(), ContainerError> {
        let this = self.clone();
        let fresh = self.modify_record(|record| {
            let l = &mut record.limits;
            if let Some(m) = u.memory {
                // dockerd's floor.
                if m < 6 * 1024 * 1024 {
                    return Err(ContainerError::Invalid(
                        "Minimum memory limit allowed is 6MB".into(),
                    ));
                }
                l.memory = Some(m);
            }
            if let Some(s) = u.memory_swap {
                l.memory_swap = Some(s);
            }
            if let (Some(m), Some(s)) = (l.memory, l.memory_swap)
                && s != -1
                && s < m as i64
            {
                return Err(ContainerError::Invalid(
                    "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
                ));
            }
            if u.cpus.is_some() {
                l.cpus = u.cpus;
            }
            if u.cpu_shares.is_some() {
                l.cpu_shares = u.cpu_shares;
            }
            if u.cpuset_cpus.is_some() {
                l.cpuset_cpus = u.cpuset_cpus.clone();
            }
            if u.pids.is_some() {
                l.pids = u.pids;
            }
            if let Some(r) = u.restart {
                if record.auto_remove && r != Restart::No {
                    return Err(ContainerError::Invalid(
                        "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                    ));
                }
                record.restart = r;
            }
            // Applied to the running container before the record keeps
            // it: a limit the kernel refuses is not recorded.
            let st = this.state();
            if let Some(init) = st.init.filter(|i| st.is_running() && i.alive()) {
                // Its init first, then its processes as they are at each pass.
                let pids = || {
                    let mut pids = vec![init.pid];
                    pids.extend(
                        this.processes()
                            .iter()
                            .map(|p| p.pid)
                            .filter(|&p| p != init.pid),
                    );
                    pids
                };
                sandbox::cgroup::update(&record.id, &record.limits, pids).map_err(|e| {
                    ContainerError::Invalid(format!("Cannot update container {}: {e}", record.id))
                })?;
            }
            Ok(())
        })?;
        fresh.event("update", []);
        *self = fresh;
        Ok(())
    }
}

/// Held while a container name is checked and taken (create, rename):
/// a lock on the `containers` directory itself, so no file is left there.
fn names_lock(store: &Store) -> Result<std::fs::File, ContainerError> {
    let path = store.containers().dir().to_path_buf();
    let f = std::fs::File::open(&path).map_err(io_err("opening", &path))?;
    f.lock().map_err(io_err("locking", &path))?;
    Ok(f)
}

/// `docker rename`: the container is known by `new` from now on, on its
/// networks too (their DNS answers the new name while it runs); its
/// hostname stays what it was, as docker's does.
pub fn rename(store: &Store, c: &mut Container, new: &str) -> Result<(), ContainerError> {
    let new = new.strip_prefix('/').unwrap_or(new);
    if !valid_name(new) {
        return Err(ContainerError::Invalid(format!(
            "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if new == c.record.name {
        return Err(ContainerError::Invalid(
            "Renaming a container with the same name as its current name".into(),
        ));
    }
    let _names = names_lock(store)?;
    if let Some(other) = list(store)?.iter().find(|o| o.record.name == new) {
        return Err(ContainerError::NameInUse {
            name: new.to_string(),
            id: other.record.id.clone(),
        });
    }
    // The record as it is now (a connect may have changed it since `c`
    // was read), with the new name.
    let old = c.record.name.clone();
    let fresh = c.modify_record(|r| {
        r.name = new.to_string();
        Ok(())
    })?;
    networks::renamed(&fresh);
    fresh.event("rename", [("oldName".to_string(), format!("/{old}"))]);
    *c = fresh;
    Ok(())
}

/// Where a `--rm` container's exit code is left when it is removed
/// (`containers/ID.exit`, beside its directory; read once by whoever waits
/// for the removal).
pub fn exit_file(dir: &Path) -> PathBuf {
    dir.with_extension("exit")
}

/// The container in `dir`, if it has a record.
pub fn load(dir: &Path) -> Option<Container> {
    let bytes = std::fs::read(dir.join("config.json")).ok()?;
    let record: Record = serde_json::from_slice(&bytes).ok()?;
    Some(Container {
        record,
        dir: dir.to_path_buf(),
    })
}

/// Every container with a record, oldest first.
pub fn list(store: &Store) -> Result<Vec<Container>, ContainerError> {
    let dir = store.containers().dir().to_path_buf();
    let mut out: Vec<Container> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| load(&e.path()))
        .collect();
    out.sort_by(|a, b| a.record.created.cmp(&b.record.created));
    Ok(out)
}

/// The container `what` names: its id, its name, or a unique id prefix.
pub fn find(store: &Store, what: &str) -> Result<Container, ContainerError> {
    let all = list(store)?;
    if let Some(c) = all
        .iter()
        .find(|c| c.record.id == what || c.record.name == what.trim_start_matches('/'))
    {
        return Ok(c.clone());
    }
    let matching: Vec<&Container> = all
        .iter()
        .filter(|c| !what.is_empty() && c.record.id.starts_with(what))
        .collect();
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ContainerError::NotFound(what.to_string())),
        _ => Err(ContainerError::Ambiguous(what.to_string())),
    }
}

impl Container {
    /// Its state, truthfully (a dead monitor's container is not running).
    pub fn state(&self) -> state::State {
        state::read(&self.dir).truthful()
    }

    /// Its id's first 12 digits, as docker shows it.
    pub fn short_id(&self) -> &str {
        &self.record.id[..12]
    }

    /// Sends signal `sig` to its process; false when it does not run. A
    /// paused container is thawed first: a frozen process would take the
    /// signal only once thawed.
    pub fn signal(&self, sig: i32) -> Result<bool, ContainerError> {
        let st = self.state();
        if let (true, Some(init)) = (st.paused, st.init) {
            self.thaw(init.pid)?;
        }
        let sent = match (st.is_running(), st.init) {
            (true, Some(init)) => init.signal(sig).map_err(|e| {
                ContainerError::Invalid(format!("signalling {}: {e}", self.record.name))
            })?,
            _ => false,
        };
        if sent {
            self.event("kill", [("signal".into(), sig.to_string())]);
        }
        Ok(sent)
    }

    /// Freezes its processes (`kiln pause`): they stay, using no CPU,
    /// until [`Container::unpause`].
    pub fn pause(&self) -> Result<(), ContainerError> {
        let st = self.state();
        let init = match (st.status, st.init) {
            (state::Status::Running, Some(init)) if init.alive() => init,
            _ => {
                return Err(ContainerError::Conflict(format!(
                    "Container {} is not running",
                    self.record.id
                )));
            }
        };
        if st.paused {
            return Err(ContainerError::Conflict(format!(
                "Container {} is already paused",
                self.record.id
            )));
        }
        let pids = || -> Vec<u32> { self.processes().iter().map(|p| p.pid).collect() };
        let pids = || match pids() {
            p if p.is_empty() => vec![init.pid],
            p => p,
        };
        sandbox::cgroup::freeze(&self.record.id, pids)
            .map_err(|e| ContainerError::Invalid(format!("pausing {}: {e}", self.record.name)))?
            .keep();
        state::update(&self.dir, |s| s.paused = true)
            .map_err(io_err("writing the state of", &self.dir))?;
        self.event("pause", []);
        Ok(())
    }

    /// Thaws what [`Container::pause`] froze (`kiln unpause`).
    pub fn unpause(&self) -> Result<(), ContainerError> {
        let st = self.state();
        let init = match (st.paused, st.init) {
            (true, Some(init)) if st.is_running() => init,
            _ => {
                return Err(ContainerError::Conflict(format!(
                    "Container {} is not paused",
                    self.record.id
                )));
            }
        };
        self.thaw(init.pid)?;
        self.event("unpause", []);
        Ok(())
    }

    /// Thaws it and says so in its state (a paused container that is
    /// stopped or killed is thawed first, as docker does).
    fn thaw(&self, pid: u32) -> Result<(), ContainerError> {
        sandbox::cgroup::thaw(&self.record.id, pid)
            .map_err(|e| ContainerError::Invalid(format!("unpausing {}: {e}", self.record.name)))?;
        state::update(&self.dir, |s| s.paused = false)
            .map_err(io_err("writing the state of", &self.dir))
    }

    /// Waits until it is not running, at most `timeout`; true when it
    /// stopped.
    pub fn wait_stopped(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if !self.state().is_running() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops it as `docker stop` does: its stop signal (or `signal`), then
    /// after `timeout` seconds (default: its own) SIGKILL. The user's stop
    /// is remembered: no restart policy brings it back.
    pub fn stop(&self, timeout: Option<u64>, signal: Option<&str>) -> Result<(), ContainerError> {
        let sig_name = signal.unwrap_or(&self.record.stop_signal);
        let sig = sandbox::process::signal_number(sig_name)
            .ok_or_else(|| ContainerError::Invalid(format!("invalid signal {sig_name:?}")))?;
        state::update(&self.dir, |s| s.stopped_by_user = true)
            .map_err(io_err("writing the state of", &self.dir))?;
        if !self.state().is_running() {
            return Ok(());
        }
        self.signal(sig)?;
        let wait = std::time::Duration::from_secs(timeout.unwrap_or(self.record.stop_timeout));
        if !self.wait_stopped(wait) {
            self.signal(9)?;
            self.wait_stopped(std::time::Duration::from_secs(10));
        }
        self.event("stop", []);
        Ok(())
    }

    /// Runs a process in it (`kiln exec`): its namespaces, cgroups, user,
    /// capabilities and seccomp filter, with `opts` over its own settings.
    /// The process's exit code.
    pub fn exec(&self, opts: &Exec) -> Result<i32, ExecError> {
        let (spec, pid1) = self.exec_spec(opts)?;
        sandbox::container::exec(
            &spec,
            pid1,
            sandbox::Io {
                stdin: match opts.interactive {
                    true => sandbox::Stdin::Inherit,
                    false => sandbox::Stdin::Null,
                },
                ..Default::default()
            },
        )
        .map_err(ExecError::Sandbox)
    }

    /// [`Container::exec`] with its streams where `io` says (the Docker
    /// API's exec: stdout and stderr to the client, stdin from it, a tty's
    /// master taken by it).
    pub fn exec_with(&self, opts: &Exec, io: sandbox::Io) -> Result<i32, ExecError> {
        let (spec, pid1) = self.exec_spec(opts)?;
        sandbox::container::exec(&spec, pid1, io).map_err(ExecError::Sandbox)
    }

    /// The spec an exec runs with, and the PID 1 it joins.
    fn exec_spec(&self, opts: &Exec) -> Result<(sandbox::Spec, u32), ExecError> {
        let st = self.state();
        let not_running =
            || ExecError::NotRunning(format!("Container {} is not running", self.record.id));
        if st.status != state::Status::Running {
            return Err(not_running());
        }
        if st.paused {
            return Err(ExecError::NotRunning(format!(
                "Container {} is paused, unpause the container before exec",
                self.record.id
            )));
        }
        let init = st.init.filter(|i| i.alive()).ok_or_else(not_running)?;
        let pid1 = sandbox::container::container_pid1(init.pid).ok_or_else(not_running)?;
        let mut spec = self.record.spec.clone();
        spec.argv = opts.argv.clone();
        for e in &opts.env {
            set_env(&mut spec.env, e.clone());
        }
        if let Some(u) = &opts.user {
            spec.user = u.clone();
        }
        if let Some(w) = &opts.workdir {
            spec.cwd = w.clone();
        }
        spec.tty = opts.tty;
        Ok((spec, pid1))
    }

    /// Makes an image of it (`kiln commit`): its image's layers and one
    /// more, its overlay upper directory (whiteouts included); the config
    /// its image's with the container's command, environment, user and
    /// working directory, then `changes` (Dockerfile instructions), and a
    /// history entry. Tagged `name` when given.
    pub fn commit(&self, store: &Store, opts: &Commit) -> Result<Image, ContainerError> {
        let base = Image::resolve(store, &self.record.image_id)?;
        let mut config = base.config.clone();
        let c = &mut config.config;
        c.env = Some(self.record.spec.env.clone());
        c.cmd = (!self.record.cmd.is_empty()).then(|| self.record.cmd.clone());
        c.entrypoint = (!self.record.entrypoint.is_empty()).then(|| self.record.entrypoint.clone());
        c.user = (!self.record.spec.user.is_empty()).then(|| self.record.spec.user.clone());
        c.working_dir = Some(self.record.spec.cwd.clone()).filter(|w| w != "/");
        crate::image::apply_changes(c, &opts.changes)?;
        config.container = Some(self.record.id.clone());
        config.container_config = Some(serde_json::json!({
            "Hostname": self.record.spec.hostname,
            "User": self.record.spec.user,
            "Env": self.record.spec.env,
            "Cmd": self.record.argv,
            "Image": self.record.image,
            "WorkingDir": self.record.spec.cwd,
            "Labels": self.record.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        }));
        config.parent = Some(base.id.to_string());
        // Paused while its changes are read, so no file is caught half
        // written (`--pause=false` reads it running).
        let pids = || -> Vec<u32> { self.processes().iter().map(|p| p.pid).collect() };
        // A paused container is frozen already (and stays so after).
        let _frozen = match !opts.pause || self.state().paused || pids().is_empty() {
            true => None,
            false => match sandbox::cgroup::freeze(&self.record.id, pids) {
                Ok(frozen) => Some(frozen),
                // It ended between the look and the freeze (docker-py's
                // test_remove commits a container that is just exiting):
                // nothing is left to pause.
                Err(_) if pids().is_empty() => None,
                Err(e) => {
                    let hint = match self.record.spec.rootless {
                        true => " (rootless kiln has no cgroup freezer: commit with --pause=false)",
                        false => "",
                    };
                    return Err(ContainerError::Invalid(format!(
                        "pausing {} to commit it: {e}{hint}",
                        self.record.name
                    )));
                }
            },
        };
        let writer = store.blob_writer_prehashed()?;
        let upper = &self.record.spec.upper;
        let (writer, diff_id, _) =
            crate::layer::generate(upper, writer, crate::layer::Options { mtime_clamp: None })
                .map_err(|e| {
                    ContainerError::Invalid(format!("reading the container's changes: {e}"))
                })?;
        let (digest, size) = writer.commit(Some(&diff_id))?;
        config.rootfs.diff_ids.push(diff_id);
        config.created = Some(crate::image::config::created_at(opts.epoch));
        if let Some(a) = &opts.author {
            config.author = Some(a.clone());
        }
        config.history.push(crate::image::History {
            created: config.created.clone(),
            created_by: Some(format!(
                "/bin/sh -c #(nop) kiln commit {}",
                self.record.name
            )),
            comment: opts.message.clone(),
            author: opts.author.clone(),
            ..Default::default()
        });
        let mut layers: Vec<oci_spec::image::Descriptor> = base.manifest.layers().to_vec();
        layers.push(oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::ImageLayer,
            size,
            digest.to_oci(),
        ));
        let manifest = crate::image::write_image(store, &config, layers)?;
        self.event("commit", []);
        match &opts.name {
            Some(name) => store.tag(&name.to_string(), manifest.clone())?,
            // docker's `<none>:<none>`, found by its id.
            None => store.keep_untagged(manifest.clone())?,
        }
        Ok(Image::load(
            store,
            &crate::image::manifest_digest(&manifest)?,
        )?)
    }

    /// Its processes (`top`, `stats`): those in its PID namespace, kiln's
    /// init as PID 1 among them; none when it does not run.
    pub fn processes(&self) -> Vec<sandbox::process::Info> {
        let st = self.state();
        match st
            .init
            .filter(|i| st.status == state::Status::Running && i.alive())
        {
            Some(init) => sandbox::container::container_pid1(init.pid)
                .map(sandbox::process::in_pid_namespace)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Kills it for good: its monitor and process, then its cgroups (what a
    /// dead kiln left included).
    pub fn kill_all(&self) -> Result<(), ContainerError> {
        let _ = state::update(&self.dir, |s| s.stopped_by_user = true);
        let running = self.state().is_running();
        let st = state::read(&self.dir);
        // The monitor first, so it starts nothing again; its container dies
        // with it (the init's parent-death signal).
        if let Some(m) = st.monitor {
            let _ = m.signal(9);
        }
        if let Some(i) = st.init {
            let _ = i.signal(9);
            // A frozen process takes its SIGKILL once thawed.
            if st.paused {
                let _ = self.thaw(i.pid);
            }
        }
        // The monitor that would have told of the end is gone: told here.
        if running {
            self.event("kill", [("signal".into(), "9".into())]);
            self.event("die", [("exitCode".into(), "137".into())]);
        }
        self.wait_stopped(std::time::Duration::from_secs(10));
        sandbox::reclaim(&self.record.id);
        networks::release(self);
        Ok(())
    }

    /// The end of a `--rm` container that ended: its directory and the
    /// anonymous volumes of its image's VOLUMEs go, as docker's `run --rm`
    /// removes them (named volumes stay).
    pub fn auto_removed(&self) {
        self.event("destroy", []);
        remove_dir(&self.dir);
        if let Some(root) = self.dir.parent().and_then(Path::parent) {
            for v in &self.record.anonymous_volumes {
                volume::remove_at(root, v);
            }
        }
    }

    /// Removes it: refused while it runs unless `force` (then killed);
    /// with `volumes`, its anonymous volumes too.
    pub fn remove_with_volumes(
        &self,
        store: &Store,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        self.remove(force)?;
        if volumes {
            for v in &self.record.anonymous_volumes {
                volume::remove(store, v, false)?;
            }
        }
        Ok(())
    }

    /// Removes it: refused while it runs unless `force` (then killed).
    pub fn remove(&self, force: bool) -> Result<(), ContainerError> {
        if self.state().is_running() {
            if !force {
                return Err(ContainerError::Invalid(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    self.record.name
                )));
            }
            self.kill_all()?;
        } else {
            sandbox::reclaim(&self.record.id);
            networks::release(self);
        }
        self.event("destroy", []);
        remove_dir(&self.dir);
        Ok(())
    }
}

/// The layer snapshots containers are made of (their overlay lower
/// directories): `prune` and eviction keep them.
pub fn snapshots_in_use(store: &Store) -> Vec<PathBuf> {
    list(store)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|c| c.record.spec.lower)
        .collect()
}

/// One row of `kiln system df`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskUse {
    /// `Images`, `Containers`, `Local Volumes`, `Build Cache`.
    pub kind: &'static str,
    /// How many.
    pub total: usize,
    /// How many a container uses (or runs).
    pub active: usize,
    /// Bytes.
    pub size: u64,
    /// Bytes that removing what nothing uses would free.
    pub reclaimable: u64,
}

/// What the store's images, containers, volumes and build cache use, as
/// `docker system df` counts them.
pub fn disk_use(store: &Store) -> Result<Vec<DiskUse>, ContainerError> {
    use crate::store::gc::dir_size;
    let containers = list(store)?;
    let used_images: std::collections::BTreeSet<String> = containers
        .iter()
        .map(|c| c.record.image_id.clone())
        .collect();
    // Images: by id, each layer blob counted once.
    let mut images: std::collections::BTreeMap<String, Image> = Default::default();
    for (_, d) in store.images()? {
        if let Ok(i) = crate::image::manifest_digest(&d).and_then(|m| Image::load(store, &m)) {
            images.insert(i.id.to_string(), i);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let (mut size, mut reclaimable, mut layer_bytes) = (0, 0, 0);
    for (id, image) in &images {
        let mut own = 0;
        for l in image.manifest.layers() {
            if seen.insert(l.digest().to_string()) {
                own += l.size();
            }
        }
        layer_bytes += own;
        size += own;
        if !used_images.contains(id) {
            reclaimable += own;
        }
    }
    let mut rows = vec![DiskUse {
        kind: "Images",
        total: images.len(),
        active: images.keys().filter(|id| used_images.contains(*id)).count(),
        size,
        reclaimable,
    }];
    let (mut size, mut reclaimable, mut active) = (0, 0, 0);
    for c in &containers {
        let bytes = dir_size(&c.record.spec.upper);
        size += bytes;
        match c.state().is_running() {
            true => active += 1,
            false => reclaimable += bytes,
        }
    }
    rows.push(DiskUse {
        kind: "Containers",
        total: containers.len(),
        active,
        size,
        reclaimable,
    });
    let vols = volume::list(store);
    let (mut size, mut reclaimable, mut active) = (0, 0, 0);
    for v in &vols {
        let bytes = dir_size(&v.mountpoint);
        size += bytes;
        match volume::users(store, v).is_empty() {
            true => reclaimable += bytes,
            false => active += 1,
        }
    }
    rows.push(DiskUse {
        kind: "Local Volumes",
        total: vols.len(),
        active,
        size,
        reclaimable,
    });
    // Build cache: step records, and the blobs and snapshots beyond what
    // the images' layers take.
    let usage = store.usage();
    let steps = usage.steps;
    let cache = (usage.blobs + usage.snapshots).saturating_sub(layer_bytes);
    rows.push(DiskUse {
        kind: "Build Cache",
        total: steps,
        active: 0,
        size: cache,
        reclaimable: cache,
    });
    Ok(rows)
}

/// Removes a container's directory. Overlay creates its `work/work` with
/// mode 000: root removes it anyway, a rootless kiln must give itself access
/// first.
pub fn remove_dir(dir: &Path) {
    if sandbox::fs::remove_dir_all(dir).is_ok() {
        return;
    }
    // Iterative: a container's tree may be deeper than the stack allows.
    let open_up = |dir: &Path| {
        use std::os::unix::fs::PermissionsExt;
        let mut todo = vec![dir.to_path_buf()];
        while let Some(path) = todo.pop() {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
                let entries = std::fs::read_dir(&path).into_iter().flatten().flatten();
                todo.extend(entries.map(|e| e.path()));
            }
        }
    };
    open_up(dir);
    let _ = sandbox::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_as_docker_reads_them() {
        assert_eq!(Restart::parse("no"), Ok(Restart::No));
        assert_eq!(
            Restart::parse("on-failure:3"),
            Ok(Restart::OnFailure(Some(3)))
        );
        assert_eq!(Restart::parse("on-failure"), Ok(Restart::OnFailure(None)));
        assert_eq!(Restart::parse("unless-stopped"), Ok(Restart::UnlessStopped));
        assert!(
            Restart::parse("always:2")
                .unwrap_err()
                .contains("cannot be used")
        );
        assert!(Restart::parse("sometimes").is_err());
        assert!(valid_name("web-1") && !valid_name("-x") && !valid_name("a") && !valid_name("a/b"));
    }
}
