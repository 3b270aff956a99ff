//! `kiln run`: an image from the store in a container, like `docker run`.

use super::{Error, open_store};
use kiln::image::Image;
use kiln::sandbox::seccomp::Profile;
use kiln::sandbox::{self, Bind, Limits, Network, SeccompProfile, Spec};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the container's files when it exits.
    #[arg(long)]
    rm: bool,
    /// A name for the container (its hostname unless --hostname).
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (`KEY=value`, or `KEY` to take the host's).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file (`KEY=value` lines).
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Bind mount `HOST:CONTAINER[:ro|rw]`.
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
    /// `host` (default) or `none` (loopback only).
    #[arg(long, default_value = "host", value_parser = ["host", "none"])]
    network: String,
    /// Memory limit (`32m`, `1g`); the process is killed beyond it.
    #[arg(short = 'm', long, value_parser = parse_memory)]
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

/// `--security-opt` values as docker reads them: the seccomp profile (a
/// file is read here, on the host) and no-new-privileges.
fn security_options(opts: &[String]) -> Result<(SeccompProfile, bool), Error> {
    let mut seccomp = SeccompProfile::Default;
    let mut nnp = false;
    for opt in opts {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
        match (key, value) {
            ("seccomp", Some(v)) => {
                seccomp = match Profile::from_option(v)
                    .map_err(|e| Error::Usage(format!("--security-opt {opt}: {e}")))?
                {
                    Profile::Default => SeccompProfile::Default,
                    Profile::Unconfined => SeccompProfile::Unconfined,
                    Profile::File(path) => {
                        let text = std::fs::read_to_string(&path)
                            .map_err(|source| Error::Read { path, source })?;
                        // Checked now, so a bad profile fails before any
                        // container is made.
                        kiln::sandbox::seccomp::from_json(&text)
                            .map_err(|e| Error::Usage(format!("--security-opt {opt}: {e}")))?;
                        SeccompProfile::Json(text)
                    }
                };
            }
            ("no-new-privileges", None | Some("true")) => nnp = true,
            ("no-new-privileges", Some("false")) => nnp = false,
            _ => {
                return Err(Error::Usage(format!(
                    "--security-opt {opt}: kiln supports seccomp=unconfined|builtin|FILE and no-new-privileges"
                )));
            }
        }
    }
    Ok((seccomp, nnp))
}

/// Docker's memory units: b, k, m, g (powers of 1024).
fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (num, scale) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let scale = match &t[i..] {
                "b" => 1,
                "k" | "kb" => 1 << 10,
                "m" | "mb" => 1 << 20,
                "g" | "gb" => 1 << 30,
                _ => {
                    return Err(format!(
                        "invalid memory {text:?}: use a number with b, k, m or g"
                    ));
                }
            };
            (&t[..i], scale)
        }
        None => (t.as_str(), 1),
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("invalid memory {text:?}: use a number with b, k, m or g"))?;
    // No process starts in less: docker refuses it with the same words.
    if bytes < MIN_MEMORY {
        return Err(format!(
            "invalid memory {text:?}: Minimum memory limit allowed is 6MB"
        ));
    }
    Ok(bytes)
}

/// The smallest memory limit docker accepts.
const MIN_MEMORY: u64 = 6 << 20;

/// Removes a container's directory. Overlay creates its `work/work` with
/// mode 000: root removes it anyway, a rootless kiln must give itself access
/// first.
fn remove_container_dir(dir: &std::path::Path) {
    if kiln::sandbox::fs::remove_dir_all(dir).is_ok() {
        return;
    }
    // Iterative: a container's tree may be deeper than the stack allows.
    let open_up = |dir: &std::path::Path| {
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
    let _ = kiln::sandbox::fs::remove_dir_all(dir);
}

fn random_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default().to_string();
    match env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(key.as_str()))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// Runs the container; the exit code is the container's, as docker run's.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let image = Image::resolve(&store, &args.image)?;
    let c = &image.config.config;

    // Entrypoint and Cmd exactly as docker run combines them.
    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => c.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        Vec::new()
    } else {
        c.cmd.clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(Error::Run(
            125,
            format!(
                "no command specified: image {} has no CMD or ENTRYPOINT; give one after the image name",
                args.image
            ),
        ));
    }

    let id = random_id();
    let hostname = args
        .hostname
        .clone()
        .or(args.name.clone())
        .unwrap_or_else(|| id[..12].to_string());
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HOSTNAME={hostname}"),
    ];
    for e in c.env.iter().flatten() {
        set_env(&mut env, e.clone());
    }
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
            set_env(&mut env, line.to_string());
        }
    }
    for e in &args.env {
        match e.split_once('=') {
            Some(_) => set_env(&mut env, e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set_env(&mut env, format!("{e}={v}"));
                }
            }
        }
    }
    let mut binds = Vec::new();
    for v in &args.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [s, t] => (*s, *t, "rw"),
            [s, t, m] => (*s, *t, *m),
            _ => {
                return Err(Error::Usage(format!(
                    "invalid volume {v:?}: use HOST:CONTAINER[:ro|rw]"
                )));
            }
        };
        if !source.starts_with('/') || !target.starts_with('/') || !["ro", "rw"].contains(&mode) {
            return Err(Error::Usage(format!(
                "invalid volume {v:?}: both paths must be absolute, the mode ro or rw"
            )));
        }
        if !std::path::Path::new(source).exists() {
            std::fs::create_dir_all(source)
                .map_err(|e| Error::Run(125, format!("creating {source}: {e}")))?;
        }
        binds.push(Bind {
            source: source.into(),
            target: target.into(),
            read_only: mode == "ro",
            // A host path the user named: followed as docker follows it.
            exact: false,
            nodev: false,
        });
    }

    let (seccomp, no_new_privileges) = security_options(&args.security_opt)?;
    // Layers as overlay lowerdirs, top first.
    let mut lower = image.snapshots(&store)?;
    lower.reverse();
    let dir = store.container_dir(&id);
    let dirs = sandbox::ContainerDirs::create(&dir, &hostname, &[])
        .map_err(|e| Error::Run(125, format!("creating {}: {e}", dir.display())))?;
    if lower.is_empty() {
        lower.push(dirs.empty.clone());
    }
    let spec = Spec {
        lower,
        upper: dirs.upper,
        work: dirs.work,
        rootfs: dirs.rootfs,
        volatile: args.rm,
        read_only: args.read_only,
        argv,
        env,
        cwd: args
            .workdir
            .clone()
            .or(c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: args.user.clone().or(c.user.clone()).unwrap_or_default(),
        hostname,
        network: if args.network == "none" {
            Network::None
        } else {
            Network::Host
        },
        binds,
        tty: args.tty,
        tmpfs: Vec::new(),
        rootless: !kiln::sandbox::fs::is_root(),
        etc_dir: dirs.etc,
        seccomp,
        no_new_privileges,
        shm_size: None,
        rlimits: Vec::new(),
    };
    let limits = Limits {
        memory: args.memory,
        cpus: args.cpus,
        pids: args.pids_limit,
        parent: args.cgroup_parent.clone(),
    };
    let result = sandbox::run(
        &spec,
        &limits,
        &id,
        sandbox::Io {
            stdin: args.interactive,
            output: None,
        },
    );
    if args.rm {
        remove_container_dir(&dir);
    }
    match result {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(255))),
        Err(e) => Err(Error::Run(e.exit_code(), e.to_string())),
    }
}
