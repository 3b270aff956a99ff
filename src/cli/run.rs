//! `kiln run`: an image from the store in a container, like `docker run`.

use super::{Error, open_store};
use kiln::sandbox::{Limits, Network, SeccompProfile};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in the background (a monitor watches it) and print its id.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Remove the container's files when it exits.
    #[arg(long)]
    rm: bool,
    /// Restart policy: `no`, `on-failure[:N]`, `always`, `unless-stopped`
    /// (needs -d).
    #[arg(long, value_parser = kiln::container::Restart::parse)]
    restart: Option<kiln::container::Restart>,
    /// Signal `kiln stop` sends (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Seconds `kiln stop` waits before SIGKILL (default 10).
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<u64>,
    /// Logging driver: "json-file" and "local" (both kiln's own log), or
    /// "none" (nothing kept to read: `logs` is refused).
    #[arg(long = "log-driver", default_value = "")]
    log_driver: String,
    /// Log options: `max-size=10m`, `max-file=3`.
    #[arg(long = "log-opt")]
    log_opts: Vec<String>,
    /// Set metadata on the container (`KEY=VALUE`).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// Write the container's id to this file.
    #[arg(long)]
    cidfile: Option<PathBuf>,
    /// Command to run to check health (run with /bin/sh -c).
    #[arg(long = "health-cmd")]
    health_cmd: Option<String>,
    /// Time between checks (`30s`, `1m`, `500ms`).
    #[arg(long = "health-interval", value_parser = kiln::container::options::duration)]
    health_interval: Option<i64>,
    /// Maximum time one check may take.
    #[arg(long = "health-timeout", value_parser = kiln::container::options::duration)]
    health_timeout: Option<i64>,
    /// Failures in a row that make the container unhealthy.
    #[arg(long = "health-retries")]
    health_retries: Option<i64>,
    /// Time after a start when failures do not count.
    #[arg(long = "health-start-period", value_parser = kiln::container::options::duration)]
    health_start_period: Option<i64>,
    /// Disable any healthcheck the image has.
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Size of /dev/shm (`64m`; binary units as docker's).
    #[arg(long = "shm-size", value_parser = kiln::container::options::shm_size)]
    shm_size: Option<u64>,
    /// Resource limit `NAME=SOFT[:HARD]` (`nofile`, `nproc`, ...).
    #[arg(long = "ulimit", value_parser = kiln::sandbox::Rlimit::parse)]
    ulimits: Vec<kiln::sandbox::Rlimit>,
    /// Add `HOST:IP` to /etc/hosts.
    #[arg(long = "add-host", value_parser = kiln::container::options::parse_add_host)]
    add_hosts: Vec<(String, String)>,
    /// A nameserver for /etc/resolv.conf (replaces the host's).
    #[arg(long)]
    dns: Vec<String>,
    /// A tmpfs at `PATH[:size=N]`.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// A mount: `type=bind,source=S,target=T[,readonly]`,
    /// `type=volume,source=NAME,target=T[,readonly]` or `type=tmpfs,target=T[,tmpfs-size=N]`.
    #[arg(long)]
    mount: Vec<String>,
    /// Add a capability (`NET_ADMIN`, `ALL`).
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Set a namespaced sysctl `KEY=VALUE` (IPC ones; `net.*` with
    /// `--network none`).
    #[arg(long = "sysctl")]
    sysctls: Vec<String>,
    /// Give the container a host device: `/dev/HOST[:/dev/CTR[:rwm]]`.
    #[arg(long)]
    device: Vec<String>,
    /// Add a supplementary group (a name in the image's /etc/group, or a gid).
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Drop a capability (`CHOWN`, `ALL`).
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Every capability, every host device, no seccomp filter. Not all of
    /// Docker's --privileged: /proc and /sys stay masked and read-only.
    #[arg(long)]
    privileged: bool,
    /// Accepted: kiln's init is always the container's PID 1 (it reaps
    /// zombies and forwards signals, as docker-init does).
    #[arg(long)]
    init: bool,
    /// Mount another container's volumes and binds (`NAME[:ro|rw]`).
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// The runtime: kiln's own (`runc` is taken as its name).
    #[arg(long)]
    runtime: Option<String>,
    /// Isolation technology: `default` only, on Linux.
    #[arg(long)]
    isolation: Option<String>,
    /// `host`: share the host's hostname (no UTS namespace).
    #[arg(long)]
    uts: Option<String>,
    /// PID namespace: the container's own (`private`).
    #[arg(long)]
    pid: Option<String>,
    /// IPC namespace: `private` (default), `shareable`, `host`.
    #[arg(long)]
    ipc: Option<String>,
    /// Cgroup namespace: `host` (kiln's containers see the host's).
    #[arg(long)]
    cgroupns: Option<String>,
    /// The volume driver for the container's volumes (`local`).
    #[arg(long = "volume-driver")]
    volume_driver: Option<String>,
    /// The MAC address on the first network (`--network NAME`).
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Allow a device in the container's devices cgroup (`c 7:128 rwm`).
    #[arg(long = "device-cgroup-rule")]
    device_cgroup_rules: Vec<String>,
    /// Swappiness of the container's memory (0-100; cgroup v1).
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    memory_swappiness: Option<i64>,
    /// When the image is pulled: `missing` (default), `always`, `never`.
    #[arg(long, value_enum, default_value = "missing")]
    pull: kiln::registry::pull::Policy,
    /// The platform of the image to run (`linux/arm64`): pulled for it,
    /// and refused when the local image is another's.
    #[arg(long)]
    platform: Option<String>,
    /// Memory plus swap (`-1`: unlimited swap); needs -m.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// CPUs to run on (`0-1`, `0,2`).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// A name for the container (its hostname unless --hostname).
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (`KEY=value`, or `KEY` to take the host's).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file (`KEY=value` lines).
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Bind mount `HOST:CONTAINER[:ro|rw]`, or a volume `NAME:CONTAINER[:ro|rw]`
    /// (made on first use, filled from the image).
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// `user[:group]` (names or ids).
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Override the image's entrypoint (`""` clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// The container's hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// `host` (the default, without -p), `none` (loopback only; the
    /// default with -p), or a network made by `kiln network create`.
    #[arg(long, visible_alias = "net")]
    network: Option<String>,
    /// A name other containers on the user network resolve to this one
    /// (repeatable; shared by several, answered in round robin).
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    network_aliases: Vec<String>,
    /// The container's IPv4 address on its user network.
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// `NAME[:ALIAS]`: on its user network, ALIAS resolves to container
    /// NAME for this container only.
    #[arg(long)]
    link: Vec<String>,
    /// Publish a port: `[IP:]HOST:CTR[/tcp]` (ranges; `CTR` alone takes a
    /// free host port).
    #[arg(short = 'p', long = "publish", value_parser = kiln::container::ports::parse)]
    publish: Vec<Vec<kiln::container::ports::Port>>,
    /// Publish every EXPOSEd port on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Memory limit (`32m`, `1g`); the process is killed beyond it.
    #[arg(short = 'm', long, value_parser = kiln::container::options::memory_limit)]
    memory: Option<u64>,
    /// CPU limit in CPUs (`1.5`).
    #[arg(long)]
    cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pids_limit: Option<u64>,
    /// The cgroup the container's groups are made in (a path below the
    /// cgroup root; root only).
    #[arg(long = "cgroup-parent", value_parser = kiln::sandbox::cgroup::check_parent)]
    cgroup_parent: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// `seccomp=unconfined|builtin|FILE` (Docker's JSON profile format) or
    /// `no-new-privileges`.
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Keep standard input open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// The image: a name or an id.
    image: String,
    /// The command (replaces the image's CMD); everything after IMAGE belongs to it.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The capabilities a container keeps (`--privileged`, `--cap-add`,
/// `--cap-drop`), as [`kiln::container::options::capabilities`] decides.
fn capabilities(args: &Args) -> Result<Option<Vec<String>>, Error> {
    kiln::container::options::capabilities(args.privileged, &args.cap_add, &args.cap_drop)
        .map_err(Error::Usage)
}

/// `--tmpfs PATH[:size=N]`.
fn parse_tmpfs(text: &str) -> Result<kiln::sandbox::Tmpfs, Error> {
    let (target, opts) = text.split_once(':').unwrap_or((text, ""));
    kiln::container::options::tmpfs(target, opts)
        .map_err(|e| Error::Usage(format!("invalid --tmpfs {text:?}: {e}")))
}

/// The `--health-*` flags as a healthcheck over the image's.
fn health_flags(args: &Args) -> Option<kiln::image::config::Healthcheck> {
    if args.no_healthcheck {
        return Some(kiln::image::config::Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        });
    }
    let any = args.health_cmd.is_some()
        || args.health_interval.is_some()
        || args.health_timeout.is_some()
        || args.health_retries.is_some()
        || args.health_start_period.is_some();
    any.then(|| kiln::image::config::Healthcheck {
        test: args
            .health_cmd
            .as_ref()
            .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
            .unwrap_or_default(),
        interval: args.health_interval,
        timeout: args.health_timeout,
        start_period: args.health_start_period,
        retries: args.health_retries,
        ..Default::default()
    })
}

/// Runs the container; the exit code is the container's, as docker run's.
/// With `-d`, a monitor runs it and its id is printed.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    if args
        .restart
        .is_some_and(|r| r != kiln::container::Restart::No)
    {
        if !args.detach {
            return Err(Error::Usage(
                "--restart needs -d: a foreground kiln run has no monitor to restart the container"
                    .into(),
            ));
        }
        if args.rm {
            return Err(Error::Usage(
                "Conflicting options: --restart and --rm".into(),
            ));
        }
    }
    if let Some(n) = &args.name
        && !kiln::container::valid_name(n)
    {
        return Err(Error::Run(
            125,
            format!("Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
        ));
    }
    let store = open_store(root)?;
    let mut env: Vec<String> = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            kiln::container::set_env(&mut env, line.to_string());
        }
    }
    for e in &args.env {
        match e.split_once('=') {
            Some(_) => kiln::container::set_env(&mut env, e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    kiln::container::set_env(&mut env, format!("{e}={v}"));
                }
            }
        }
    }
    let mut binds = Vec::new();
    let mut named = Vec::new();
    let mut anonymous = Vec::new();
    for v in &args.volumes {
        match kiln::container::volume::parse_flag(v).map_err(Error::Usage)? {
            kiln::container::volume::Flag::Anonymous(target) => anonymous.push(target),
            kiln::container::volume::Flag::Named(name, target, ro) => {
                named.push((name, target, ro))
            }
            kiln::container::volume::Flag::Bind(b) => {
                kiln::container::volume::ensure_source(&b)
                    .map_err(|e| Error::Run(125, e.to_string()))?;
                binds.push(b);
            }
        }
    }
    let mut tmpfs = Vec::new();
    for t in &args.tmpfs {
        tmpfs.push(parse_tmpfs(t)?);
    }
    for m in &args.mount {
        let bad = |why: &str| Error::Usage(format!("invalid --mount {m:?}: {why}"));
        let mut fields = std::collections::BTreeMap::new();
        let mut readonly = false;
        for f in m.split(',') {
            match f.split_once('=') {
                // Go's ParseBool, as docker reads it: a value it does not
                // know is an error, never a read-write mount.
                Some(("readonly" | "ro", v)) => {
                    readonly = match v {
                        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                        _ => return Err(bad(&format!("invalid value for readonly: {v}"))),
                    }
                }
                Some((k, v)) => {
                    fields.insert(k.to_string(), v.to_string());
                }
                None if f == "readonly" || f == "ro" => readonly = true,
                None => return Err(bad("fields are KEY=VALUE")),
            }
        }
        let kind = fields.get("type").map(String::as_str).unwrap_or("volume");
        // Every key is known (Buildah's CVE-2024-9407: options passed
        // through unvalidated); the values are checked where the API's
        // mounts are too.
        let own: &[&str] = match kind {
            "bind" => &["bind-propagation"],
            "volume" => &["volume-driver"],
            "tmpfs" => &["tmpfs-size"],
            _ => &[],
        };
        for key in fields.keys() {
            let common = [
                "type",
                "source",
                "src",
                "target",
                "dst",
                "destination",
                "consistency",
            ];
            if !common.contains(&key.as_str()) && !own.contains(&key.as_str()) {
                return Err(bad(&format!("unexpected key '{key}' for a {kind} mount")));
            }
        }
        if let Some(c) = fields.get("consistency")
            && !["default", "consistent", "cached", "delegated"].contains(&c.as_str())
        {
            return Err(bad(&format!("invalid consistency: {c}")));
        }
        let spec = kiln::container::options::MountSpec {
            kind: kind.to_string(),
            source: fields.get("source").or(fields.get("src")).cloned(),
            target: fields
                .get("target")
                .or(fields.get("dst"))
                .or(fields.get("destination"))
                .cloned()
                .unwrap_or_default(),
            readonly,
            propagation: fields.get("bind-propagation").cloned(),
            driver: fields.get("volume-driver").cloned(),
            tmpfs_size: fields
                .get("tmpfs-size")
                .map(|v| kiln::units::ram_in_bytes(v).map_err(|e| bad(&e)))
                .transpose()?,
        };
        match kiln::container::options::mount(&spec).map_err(|e| bad(&e))? {
            kiln::container::options::Mounted::Bind(b) => binds.push(b),
            kiln::container::options::Mounted::Volume(n, t, ro) => named.push((n, t, ro)),
            kiln::container::options::Mounted::Tmpfs(t) => tmpfs.push(t),
        }
    }
    let mut device_rules = Vec::new();
    for d in &args.device {
        let (rule, bind) = kiln::container::options::device(d).map_err(Error::Usage)?;
        device_rules.push(rule);
        binds.push(bind);
    }
    if args.privileged {
        binds.extend(kiln::container::options::privileged_devices(&binds));
        device_rules.push("a *:* rwm".into());
    }
    let memory_swap =
        kiln::container::options::memory_swap(args.memory_swap.as_deref(), args.memory)
            .map_err(Error::Usage)?;
    let capabilities = capabilities(&args)?;
    let mut ports: Vec<kiln::container::ports::Port> =
        args.publish.iter().flatten().cloned().collect();
    if args.publish_all
        && let Ok(image) = kiln::image::Image::resolve(&store, &args.image)
    {
        for exposed in image
            .config
            .config
            .exposed_ports
            .iter()
            .flatten()
            .map(|(p, _)| p)
        {
            if let Ok(found) = kiln::container::ports::parse(exposed)
                && !ports
                    .iter()
                    .any(|p| p.port == found[0].port && p.proto == found[0].proto)
            {
                ports.extend(found);
            }
        }
    }
    let platform = match args.platform.as_deref() {
        Some(p) => kiln::plan::normalize_platform(p)
            .map_err(|e| Error::Usage(format!("--platform: {e}")))?,
        None => kiln::plan::host_platform(),
    };
    let image = kiln::registry::pull::ensure(
        &store,
        &kiln::registry::Options::from_env(),
        &args.image,
        args.pull,
        &kiln::registry::Platform::parse(&platform).map_err(Error::Usage)?,
    )
    .map_err(|e| Error::Run(125, e.to_string()))?;
    // Another platform's image runs through its qemu handler; one asked
    // for by --platform must be that platform's.
    let arch = &image.config.architecture;
    if args.platform.is_some() && platform.split('/').nth(1) != Some(arch.as_str()) {
        return Err(Error::Run(
            125,
            format!(
                "image {} is for linux/{arch}, not {platform} (--platform): pull or build that platform's",
                args.image
            ),
        ));
    }
    kiln::sandbox::emulator::check(std::path::Path::new(kiln::sandbox::emulator::BINFMT), arch)
        .map_err(|e| {
            Error::Run(
                125,
                format!("image {} is for linux/{arch}: {e}", args.image),
            )
        })?;
    let labels = args
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let kiln::container::options::Security {
        seccomp,
        no_new_privileges,
    } = kiln::container::options::security(&args.security_opt, true).map_err(Error::Usage)?;
    let log = kiln::container::options::log_options(
        &args.log_driver,
        args.log_opts
            .iter()
            .map(|o| o.split_once('=').unwrap_or((o.as_str(), ""))),
    )
    .map_err(|e| Error::Usage(format!("--log-opt: {e}")))?;
    let networks = match args.network.as_deref() {
        Some("host" | "none") | None => {
            if !args.network_aliases.is_empty() || args.ip.is_some() {
                return Err(Error::Usage(
                    "network-scoped aliases and --ip are supported only for containers in user defined networks".into(),
                ));
            }
            if !args.link.is_empty() {
                return Err(Error::Usage(
                    "--link needs a user network (--network NAME): kiln's default network is the host's, where a link would name nothing".into(),
                ));
            }
            Vec::new()
        }
        Some("bridge") => {
            return Err(Error::Usage(
                "kiln has no default bridge: make a network with `kiln network create NAME` and use --network NAME".into(),
            ));
        }
        Some(name) => vec![kiln::network::Attachment {
            network: name.to_string(),
            aliases: args.network_aliases.clone(),
            ip: args.ip,
            links: args.link.clone(),
            ..Default::default()
        }],
    };
    let create = kiln::container::Create {
        default_bridge: None,
        legacy_links: Vec::new(),
        anonymous_volumes: anonymous,
        volumes_from: args.volumes_from.clone(),
        image: args.image.clone(),
        platform: match args.platform {
            Some(_) => Some(kiln::registry::Platform::parse(&platform).map_err(Error::Usage)?),
            None => None,
        },
        name: args.name.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env,
        binds,
        volumes: named,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        network: match (args.network.as_deref(), ports.is_empty()) {
            // Docker's default for `run` is its bridge; kiln's is the
            // host's network, unless ports are published.
            (Some("host"), _) | (None, true) => Network::Host,
            _ => Network::None,
        },
        networks,
        limits: Limits {
            memory: args.memory,
            cpus: args.cpus,
            pids: args.pids_limit,
            parent: args.cgroup_parent.clone(),
            memory_swap,
            cpu_shares: args.cpu_shares,
            cpuset_cpus: args.cpuset_cpus.clone(),
            devices: device_rules
                .into_iter()
                .chain(args.device_cgroup_rules.iter().cloned())
                .collect(),
            swappiness: args.memory_swappiness.filter(|&s| s >= 0).map(|s| s as u64),
            group: false,
        },
        host: kiln::container::options::HostOptions {
            runtime: args.runtime.clone().unwrap_or_default(),
            isolation: args.isolation.clone().unwrap_or_default(),
            init: args.init.then_some(true),
            uts_mode: args.uts.clone().unwrap_or_default(),
            pid_mode: args.pid.clone().unwrap_or_default(),
            ipc_mode: args.ipc.clone().unwrap_or_default(),
            cgroupns_mode: args.cgroupns.clone().unwrap_or_default(),
            volume_driver: args.volume_driver.clone().unwrap_or_default(),
            mac_address: args.mac_address.clone().unwrap_or_default(),
            device_cgroup_rules: args.device_cgroup_rules.clone(),
            memory_swappiness: args.memory_swappiness,
        },
        read_only: args.read_only,
        seccomp: match args.privileged {
            true => SeccompProfile::Unconfined,
            false => seccomp,
        },
        no_new_privileges,
        tty: args.tty,
        // Detached, the monitor holds it open for `kiln attach` and the
        // API; in the foreground it is this process's own.
        open_stdin: args.interactive,
        stdin_once: args.interactive && !args.detach,
        auto_remove: args.rm,
        restart: args.restart.unwrap_or_default(),
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        log_max_size: log.max_size,
        log_driver: log.driver.clone(),
        log_max_files: log.max_files,
        log_opts: log.given,
        labels,
        health: health_flags(&args),
        shm_size: args.shm_size,
        rlimits: args.ulimits.clone(),
        extra_hosts: args.add_hosts.clone(),
        dns: args.dns.clone(),
        tmpfs,
        tmpfs_opts: args
            .tmpfs
            .iter()
            .map(|t| {
                let (target, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
                (target.to_string(), opts.to_string())
            })
            .collect(),
        capabilities,
        extra_groups: args.group_add.clone(),
        ports,
        sysctls: args
            .sysctls
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| Error::Usage(format!("invalid --sysctl {kv:?}: use KEY=VALUE")))
            })
            .collect::<Result<_, _>>()?,
    };
    // docker's check, before anything is made: an existing file (or a
    // symlink someone planted) is never written through.
    if let Some(path) = &args.cidfile
        && std::fs::symlink_metadata(path).is_ok()
    {
        return Err(Error::Usage(format!(
            "container ID file found, make sure the other container isn't running or delete {}",
            path.display()
        )));
    }
    let (container, dirs) =
        kiln::container::create(&store, &create).map_err(super::container_error)?;
    if let Some(path) = &args.cidfile {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| f.write_all(container.record.id.as_bytes()))
            .map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
    }
    if args.detach {
        // The monitor takes the lock once this process lets it go.
        drop(dirs);
        kiln::container::monitor::spawn(store.root(), &container)
            .map_err(|e| Error::Run(e.code, e.message))?;
        writeln!(std::io::stdout(), "{}", container.record.id)?;
        return Ok(ExitCode::SUCCESS);
    }
    match kiln::container::monitor::run_foreground(&container, dirs, args.interactive) {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(255))),
        Err(e) => Err(Error::Run(e.exit_code(), e.to_string())),
    }
}
