//! The container verbs, with docker's flags, output and exit codes: `ps`,
//! `logs`, `stop`, `kill`, `start`, `restart`, `wait`, `rm`, `container
//! prune`; and `__monitor`, the per-container monitor.

use super::format::table;
use super::{Error, open_store};
use kiln::container::logs::{self, Stream};
use kiln::container::{self, Container, monitor};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones).
    #[arg(short = 'a', long)]
    all: bool,
    /// Only ids.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not truncate ids and commands.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// The last N containers made (all states).
    #[arg(short = 'n', long = "last")]
    last: Option<usize>,
    /// The last container made (all states).
    #[arg(short = 'l', long)]
    latest: bool,
    /// Filter: `status=`, `name=`, `ancestor=`, `id=`, `label=`,
    /// `health=starting|healthy|unhealthy|none` (repeatable).
    #[arg(short = 'f', long = "filter")]
    filters: Vec<String>,
    /// `table` (default), `json`, or a template with `{{.ID}}`, `{{.Names}}`,
    /// `{{.Image}}`, `{{.Command}}`, `{{.Status}}`, `{{.State}}`, `{{.CreatedAt}}`.
    #[arg(long)]
    format: Option<String>,
}

/// One container as `ps` shows it.
struct Row {
    id: String,
    image: String,
    command: String,
    created: String,
    created_at: String,
    status: String,
    state: &'static str,
    ports: String,
    names: String,
}

/// Docker's STATUS text: `Up 2 minutes`, `Exited (0) 5 seconds ago`.
fn row(c: &Container, no_trunc: bool) -> Row {
    let st = c.state();
    let command = c
        .record
        .argv
        .iter()
        .map(|a| match a.contains(' ') {
            true => format!("'{a}'"),
            false => a.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let command = match (no_trunc, command.chars().count() > 20) {
        (false, true) => format!("\"{}…\"", command.chars().take(19).collect::<String>()),
        _ => format!("\"{command}\""),
    };
    Row {
        id: match no_trunc {
            true => c.record.id.clone(),
            false => c.short_id().to_string(),
        },
        image: c.record.image.clone(),
        command,
        created: format!("{} ago", container::state::up_for(Some(&c.record.created))),
        created_at: c.record.created.clone(),
        status: st.docker_status(),
        state: st.status.as_str(),
        ports: match st.is_running() {
            true => c
                .record
                .ports
                .iter()
                .map(|p| p.display())
                .collect::<Vec<_>>()
                .join(", "),
            false => String::new(),
        },
        names: c.record.name.clone(),
    }
}

/// `kiln ps`.
pub fn ps(root: Option<PathBuf>, args: PsArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let filters = container::filters::parse(&args.filters).map_err(Error::Usage)?;
    let mut all = container::list(&store).map_err(super::container_error)?;
    // Newest first, as docker lists them.
    all.reverse();
    let last = if args.latest { Some(1) } else { args.last };
    let shown: Vec<&Container> = all
        .iter()
        .filter(|c| {
            args.all || last.is_some() || filters.contains_key("status") || c.state().is_running()
        })
        .filter(|c| container::filters::matches(c, &filters))
        .take(last.unwrap_or(usize::MAX))
        .collect();
    let rows: Vec<Row> = shown.iter().map(|c| row(c, args.no_trunc)).collect();
    let mut out = String::new();
    match (args.quiet, args.format.as_deref()) {
        (true, _) => {
            for r in &rows {
                out.push_str(&r.id);
                out.push('\n');
            }
        }
        (false, Some("json")) => {
            for r in &rows {
                let v = serde_json::json!({
                    "ID": r.id, "Image": r.image, "Command": r.command, "CreatedAt": r.created_at,
                    "RunningFor": r.created, "Status": r.status, "State": r.state, "Names": r.names,
                    "Ports": r.ports,
                });
                out.push_str(&v.to_string());
                out.push('\n');
            }
        }
        (false, Some(t)) if t != "table" => {
            let t = t.strip_prefix("table ").unwrap_or(t);
            for r in &rows {
                let line = t
                    .replace("{{.ID}}", &r.id)
                    .replace("{{.Image}}", &r.image)
                    .replace("{{.Command}}", &r.command)
                    .replace("{{.CreatedAt}}", &r.created_at)
                    .replace("{{.RunningFor}}", &r.created)
                    .replace("{{.Status}}", &r.status)
                    .replace("{{.State}}", r.state)
                    .replace("{{.Names}}", &r.names)
                    .replace("{{.Ports}}", &r.ports)
                    .replace("\\t", "\t");
                out.push_str(&line);
                out.push('\n');
            }
        }
        _ => {
            let mut table_rows = vec![
                [
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for r in rows {
                table_rows.push(vec![
                    r.id,
                    r.image,
                    r.command,
                    r.created,
                    r.status,
                    String::new(),
                    r.names,
                ]);
            }
            out = table(&table_rows);
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow the log until the container stops.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Show each line's time.
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Lines since this time (RFC 3339) or duration ago (`10s`, `5m`, `2h`).
    #[arg(long)]
    since: Option<String>,
    /// Lines until this time or duration ago.
    #[arg(long)]
    until: Option<String>,
    /// Only the last N lines (`all` for every one).
    #[arg(short = 'n', long = "tail")]
    tail: Option<String>,
    /// The container.
    container: String,
}

fn print_entry(e: &logs::Entry, timestamps: bool) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    if timestamps {
        bytes.extend_from_slice(e.time.as_bytes());
        bytes.push(b' ');
    }
    bytes.extend_from_slice(&e.text);
    match e.stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()
        }
        Stream::Stderr => std::io::stderr().write_all(&bytes),
    }
}

/// `kiln logs`.
pub fn logs(root: Option<PathBuf>, args: LogsArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let c = container::find(&store, &args.container).map_err(super::container_error)?;
    if c.record.log_driver == "none" {
        return Err(Error::Usage(container::LOGS_NOT_READABLE.into()));
    }
    let now = chrono::Utc::now();
    let bound = |t: &str| logs::time_bound(t, now).map_err(Error::Usage);
    let since = args.since.as_deref().map(bound).transpose()?;
    let until = args.until.as_deref().map(bound).transpose()?;
    let tail = match args.tail.as_deref() {
        None | Some("all") | Some("-1") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| Error::Usage(format!("invalid --tail {n:?}: a number or all")))?,
        ),
    };
    let keep = |e: &logs::Entry| {
        since.as_ref().is_none_or(|s| e.time >= *s) && until.as_ref().is_none_or(|u| e.time <= *u)
    };
    let (entries, mut offset) = logs::read_to_offset(&c.dir);
    let entries: Vec<logs::Entry> = entries.into_iter().filter(|e| keep(e)).collect();
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        print_entry(e, args.timestamps)?;
    }
    if args.follow {
        loop {
            let running = c.state().is_running();
            let (more, next) = logs::read_from(&c.dir, offset);
            offset = next;
            for e in more.iter().filter(|e| keep(e)) {
                print_entry(e, args.timestamps)?;
            }
            if !running {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln stop` and `kiln restart`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing it (default: the container's, 10).
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    /// Signal to send (default: the container's stop signal).
    #[arg(short = 's', long)]
    signal: Option<String>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `each` on every container named; errors are printed, the exit
/// code is 1 when any failed (docker's way with several names).
fn for_each(
    root: Option<PathBuf>,
    names: &[String],
    each: impl Fn(&kiln::store::Store, &Container) -> Result<(), Error>,
) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut failed = false;
    for name in names {
        let result = container::find(&store, name)
            .map_err(super::container_error)
            .and_then(|c| each(&store, &c));
        match result {
            Ok(()) => writeln!(std::io::stdout(), "{name}")?,
            Err(e) => {
                failed = true;
                eprintln!("Error response from kiln: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `kiln stop`.
pub fn stop(root: Option<PathBuf>, args: StopArgs) -> Result<ExitCode, Error> {
    for_each(root, &args.containers, |_, c| {
        c.stop(args.time, args.signal.as_deref())
            .map_err(super::container_error)
    })
}

/// `kiln restart`.
pub fn restart(root: Option<PathBuf>, args: StopArgs) -> Result<ExitCode, Error> {
    for_each(root, &args.containers, |store, c| {
        c.stop(args.time, args.signal.as_deref())
            .map_err(super::container_error)?;
        monitor::spawn(store.root(), c).map_err(|e| Error::Run(e.code, e.message))?;
        c.event("restart", []);
        Ok(())
    })
}

/// Arguments of `kiln kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln kill`.
pub fn kill(root: Option<PathBuf>, args: KillArgs) -> Result<ExitCode, Error> {
    let sig = kiln::sandbox::process::signal_number(&args.signal)
        .ok_or_else(|| Error::Usage(format!("invalid signal: {}", args.signal)))?;
    for_each(root, &args.containers, |_, c| {
        if sig == 9 {
            let _ = container::state::update(&c.dir, |s| s.stopped_by_user = true);
        }
        match c.signal(sig).map_err(super::container_error)? {
            true => Ok(()),
            false => Err(Error::Usage(format!(
                "cannot kill container: {}: container {} is not running",
                c.record.name, c.record.id
            ))),
        }
    })
}

/// Arguments of `kiln pause` and `kiln unpause`.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln pause` (`pause`) and `kiln unpause`: each name printed once done.
pub fn pause(root: Option<PathBuf>, args: PauseArgs, pause: bool) -> Result<ExitCode, Error> {
    for_each(root, &args.containers, |_, c| {
        match pause {
            true => c.pause(),
            false => c.unpause(),
        }
        .map_err(super::container_error)
    })
}

/// Arguments of `kiln update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Memory limit (`32m`, `1g`).
    #[arg(short = 'm', long, value_parser = container::options::memory_limit)]
    memory: Option<u64>,
    /// Memory plus swap (`-1`: unlimited swap).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU limit in CPUs (`1.5`).
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// CPUs to run on (`0-1`, `0,2`).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pids_limit: Option<u64>,
    /// Restart policy: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    #[arg(long, value_parser = container::Restart::parse)]
    restart: Option<container::Restart>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln update` (`docker update`): each name printed once updated.
pub fn update(root: Option<PathBuf>, args: UpdateArgs) -> Result<ExitCode, Error> {
    let memory_swap = match args.memory_swap.as_deref() {
        None => None,
        Some("-1") => Some(-1),
        Some(v) => Some(kiln::units::ram_in_bytes(v).map_err(Error::Usage)? as i64),
    };
    let u = container::Update {
        memory: args.memory,
        memory_swap,
        cpus: args.cpus,
        cpu_shares: args.cpu_shares,
        cpuset_cpus: args.cpuset_cpus.clone(),
        pids: args.pids_limit,
        restart: args.restart,
    };
    for_each(root, &args.containers, |_, c| {
        c.clone().update(&u).map_err(super::container_error)
    })
}

/// Arguments of `kiln diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The container.
    container: String,
}

/// `kiln diff` (`docker diff`): `C /etc`, `A /etc/new`, `D /old`, a line each.
pub fn diff(root: Option<PathBuf>, args: DiffArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let c = container::find(&store, &args.container).map_err(super::container_error)?;
    let mut out = std::io::stdout().lock();
    for change in container::changes::changes(&c).map_err(super::container_error)? {
        writeln!(out, "{} {}", change.kind.letter(), change.path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln rename`.
#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    /// The container.
    container: String,
    /// Its new name.
    new_name: String,
}

/// `kiln rename` (`docker rename`): silent when done.
pub fn rename(root: Option<PathBuf>, args: RenameArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut c = container::find(&store, &args.container).map_err(super::container_error)?;
    container::rename(&store, &mut c, &args.new_name).map_err(super::container_error)?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Start every container whose restart policy asks for it (`always`,
    /// and `unless-stopped` ones not stopped by a user): for boot time.
    #[arg(long = "all-restartable", conflicts_with = "containers")]
    all_restartable: bool,
    /// Containers.
    #[arg(required_unless_present = "all_restartable")]
    containers: Vec<String>,
}

/// `kiln start`.
pub fn start(root: Option<PathBuf>, args: StartArgs) -> Result<ExitCode, Error> {
    let names = match args.all_restartable {
        false => args.containers.clone(),
        true => {
            let store = open_store(root.clone())?;
            container::list(&store)
                .map_err(super::container_error)?
                .into_iter()
                .filter(|c| {
                    let st = c.state();
                    !st.is_running()
                        && match c.record.restart {
                            container::Restart::Always => true,
                            container::Restart::UnlessStopped => !st.stopped_by_user,
                            _ => false,
                        }
                })
                .map(|c| c.record.name)
                .collect()
        }
    };
    for_each(root, &names, |store, c| {
        if c.state().is_running() {
            return Ok(());
        }
        monitor::spawn(store.root(), c).map_err(|e| Error::Run(e.code, e.message))
    })
}

/// Arguments of `kiln wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln wait`: prints each container's exit code once it stops.
pub fn wait(root: Option<PathBuf>, args: WaitArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    for name in &args.containers {
        let c = container::find(&store, name).map_err(super::container_error)?;
        let code = monitor::wait(&c).map_err(super::container_error)?;
        writeln!(std::io::stdout(), "{code}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove its anonymous volumes (its image's VOLUMEs) too.
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln rm`.
pub fn rm(root: Option<PathBuf>, args: RmArgs) -> Result<ExitCode, Error> {
    for_each(root, &args.containers, |store, c| {
        c.remove_with_volumes(store, args.force, args.volumes)
            .map_err(super::container_error)
    })
}

/// Arguments of `kiln container`.
#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    command: ContainerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ContainerCommand {
    /// Remove every stopped container.
    Prune {
        /// Do not ask (kiln never asks).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// List containers (as `kiln ps`).
    Ls(PsArgs),
}

/// `kiln container ...`.
pub fn container_cmd(root: Option<PathBuf>, args: ContainerArgs) -> Result<ExitCode, Error> {
    match args.command {
        ContainerCommand::Ls(a) => ps(root, a),
        ContainerCommand::Prune { .. } => {
            let store = open_store(root)?;
            let mut out = String::from("Deleted Containers:\n");
            for c in container::list(&store).map_err(super::container_error)? {
                if !c.state().is_running() {
                    c.remove(false).map_err(super::container_error)?;
                    out.push_str(&c.record.id);
                    out.push('\n');
                }
            }
            std::io::stdout().write_all(out.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `kiln __monitor ID`.
pub fn monitor(root: Option<PathBuf>, id: String) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let root = store.root().to_path_buf();
    // The monitor holds no store handle while the container runs: another
    // kiln's prune must not wait on it for ever (the container's snapshots
    // are kept by its image's tag, as for a foreground run).
    drop(store);
    let code = monitor::main(&root, &id);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

/// Arguments of `kiln attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Do not send standard input to it.
    #[arg(long)]
    no_stdin: bool,
    /// The keys that leave it running (`ctrl-p,ctrl-q`).
    #[arg(long)]
    detach_keys: Option<String>,
    /// The container.
    container: String,
}

/// `kiln attach`: this terminal joined to a running container's output
/// and, opened with `-i`, its input, until it ends (its exit code is
/// kiln's) or the detach keys are typed (0, the container runs on).
pub fn attach(root: Option<PathBuf>, args: AttachArgs) -> Result<ExitCode, Error> {
    use kiln::container::attach::{Attached, Escape, detach_keys, follow_run};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = open_store(root)?;
    let c = container::find(&store, &args.container).map_err(super::container_error)?;
    drop(store);
    if !c.state().is_running() {
        return Err(Error::Run(
            1,
            "You cannot attach to a stopped container, start it first".into(),
        ));
    }
    // The keys are looked for on a terminal's input only: piped bytes
    // pass as they are, as docker's.
    let keys = match c.record.spec.tty {
        true => detach_keys(args.detach_keys.as_deref()).map_err(Error::Usage)?,
        false => Vec::new(),
    };
    let input = c.record.open_stdin && !args.no_stdin;
    let tty = c.record.spec.tty;
    let stop = Arc::new(AtomicBool::new(false));
    let detached = Arc::new(AtomicBool::new(false));
    // Raw only when keys typed here go to it (^C stays ours otherwise).
    let _raw = (tty && input).then(kiln::sandbox::tty::RawMode::enter);
    if tty && let Ok(mut m) = Attached::connect(&c.dir) {
        if let Some((rows, cols)) = kiln::sandbox::tty::terminal_size() {
            let _ = m.resize(rows, cols);
        }
        // The window's later sizes follow it.
        if let Ok(mut signals) =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
        {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    if let Some((rows, cols)) = kiln::sandbox::tty::terminal_size() {
                        let _ = m.resize(rows, cols);
                    }
                }
            });
        }
    }
    if input {
        let mut monitor = Attached::connect(&c.dir)
            .map_err(|e| Error::Run(1, format!("attaching to {}: {e}", c.record.name)))?;
        let (stop, detached) = (stop.clone(), detached.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut escape = Escape::new(keys);
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = monitor.send(&escape.rest());
                        let _ = monitor.close_input();
                        return;
                    }
                    Ok(n) => {
                        let (pass, done) = escape.scan(&buf[..n]);
                        if monitor.send(&pass).is_err() || done {
                            detached.store(done, Ordering::SeqCst);
                            stop.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }
        });
    }
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    follow_run(&c, false, &|| stop.load(Ordering::SeqCst), |e| {
        let to: &mut dyn Write = match (tty, e.stream) {
            (false, kiln::container::logs::Stream::Stderr) => &mut err,
            _ => &mut out,
        };
        to.write_all(&e.text).and_then(|()| to.flush()).is_ok()
    });
    drop(_raw);
    if detached.load(Ordering::SeqCst) {
        return Ok(ExitCode::SUCCESS);
    }
    // A `--rm` container is gone by now: its code was left beside it.
    let code = match c.dir.exists() {
        true => c.state().exit_code.unwrap_or(0),
        false => std::fs::read_to_string(container::exit_file(&c.dir))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

/// Arguments of `kiln exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Run it in the background.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep standard input open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable (`KEY=value`, or `KEY` to take the host's).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// `user[:group]`.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// The container.
    container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `kiln exec`: the process's exit code is kiln's.
pub fn exec(root: Option<PathBuf>, args: ExecArgs) -> Result<ExitCode, Error> {
    let store = open_store(root.clone())?;
    let c = container::find(&store, &args.container).map_err(super::container_error)?;
    if args.detach {
        // The same command in a session of its own, not waited for.
        let exe = std::fs::read_link("/proc/self/exe").map_err(|source| Error::Io {
            action: "reading",
            path: "/proc/self/exe".into(),
            source,
        })?;
        let mut cmd = std::process::Command::new(exe);
        if let Some(r) = &root {
            cmd.arg("--root").arg(r);
        }
        cmd.arg("exec");
        for e in &args.env {
            cmd.args(["-e", e]);
        }
        for f in &args.env_file {
            cmd.arg("--env-file").arg(f);
        }
        if let Some(u) = &args.user {
            cmd.args(["-u", u]);
        }
        if let Some(w) = &args.workdir {
            cmd.args(["-w", w]);
        }
        cmd.arg(&c.record.id).arg("--").args(&args.command);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        kiln::sandbox::process::new_session(&mut cmd);
        cmd.spawn().map_err(|source| Error::Io {
            action: "starting",
            path: "kiln exec".into(),
            source,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut env = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        env.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    for e in &args.env {
        match e.split_once('=') {
            Some(_) => env.push(e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    env.push(format!("{e}={v}"));
                }
            }
        }
    }
    let opts = container::Exec {
        argv: args.command.clone(),
        env,
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty,
        interactive: args.interactive,
    };
    match c.exec(&opts) {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(255))),
        Err(container::ExecError::NotRunning(m)) => Err(Error::Run(1, m)),
        Err(e @ container::ExecError::Sandbox(_)) => Err(Error::Run(e.exit_code(), e.to_string())),
    }
}

/// Arguments of `kiln commit`.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// Author (`Name <email>`).
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Commit message.
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Apply a Dockerfile instruction to the image's config (repeatable).
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Freeze the container (cgroup freezer) while its changes are read.
    #[arg(short = 'p', long, default_value = "true", action = clap::ArgAction::Set)]
    pause: bool,
    /// The container.
    container: String,
    /// `NAME[:TAG]` for the image.
    name: Option<String>,
}

/// `kiln commit`: prints the new image's id.
pub fn commit(root: Option<PathBuf>, args: CommitArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let c = container::find(&store, &args.container).map_err(super::container_error)?;
    let name = args
        .name
        .as_deref()
        .map(|n| n.parse::<kiln::image::Name>().map_err(Error::Usage))
        .transpose()?;
    let opts = container::Commit {
        name,
        author: args.author.clone(),
        message: args.message.clone(),
        changes: args.changes.clone(),
        pause: args.pause,
        epoch: super::env_epoch(),
    };
    let image = c.commit(&store, &opts).map_err(super::container_error)?;
    writeln!(std::io::stdout(), "{}", image.id)?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln volume`.
#[derive(Debug, clap::Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    command: VolumeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VolumeCommand {
    /// Make a volume (a fresh name when none is given).
    Create {
        /// Its name.
        name: Option<String>,
        /// Set metadata for a volume (KEY=VALUE; repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// List volumes.
    Ls {
        /// Only names.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Show volumes as JSON.
    Inspect {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one, unless -f).
    Rm {
        /// Remove even when a container uses it.
        #[arg(short = 'f', long)]
        force: bool,
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove the volumes no container uses (anonymous ones; -a: all).
    Prune {
        /// Named ones too.
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not ask (kiln never asks).
        #[arg(short = 'f', long)]
        force: bool,
    },
}

/// `kiln volume ...`.
pub fn volume(root: Option<PathBuf>, args: VolumeArgs) -> Result<ExitCode, Error> {
    use kiln::container::volume;
    let store = open_store(root)?;
    let mut out = String::new();
    let mut failed = false;
    match args.command {
        VolumeCommand::Create { name, labels } => {
            let labels = labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.clone(), String::new()),
                })
                .collect();
            let (v, _) = volume::create_labelled(&store, name.as_deref(), labels)
                .map_err(super::container_error)?;
            out = format!("{}\n", v.name);
        }
        VolumeCommand::Ls { quiet } => {
            let vols = volume::list(&store);
            if quiet {
                for v in vols {
                    out.push_str(&v.name);
                    out.push('\n');
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                rows.extend(vols.into_iter().map(|v| vec![v.driver, v.name]));
                out = table(&rows);
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut found = Vec::new();
            for n in &names {
                match volume::get(&store, n) {
                    Some(v) => found.push(v),
                    None => {
                        failed = true;
                        eprintln!("Error: No such volume: {n}");
                    }
                }
            }
            out = serde_json::to_string_pretty(&found).map_err(std::io::Error::other)? + "\n";
        }
        VolumeCommand::Rm { force, names } => {
            for n in &names {
                match volume::remove(&store, n, force) {
                    Ok(()) => {
                        out.push_str(n);
                        out.push('\n');
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("Error response from kiln: {e}");
                    }
                }
            }
        }
        VolumeCommand::Prune { all, .. } => {
            out.push_str("Deleted Volumes:\n");
            for n in volume::prune(&store, all) {
                out.push_str(&n);
                out.push('\n');
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Arguments of `kiln top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The container.
    container: String,
}

/// `kiln top`: the container's processes, as `ps -ef` shows them.
pub fn top(root: Option<PathBuf>, args: TopArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let c = container::find(&store, &args.container).map_err(super::container_error)?;
    let procs = c.processes();
    if procs.is_empty() {
        return Err(Error::Run(
            1,
            format!("Container {} is not running", c.record.id),
        ));
    }
    let hz = kiln::sandbox::process::ticks_per_second();
    let boot = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let mut rows = vec![
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
            .map(String::from)
            .to_vec(),
    ];
    for p in procs {
        let started = chrono::DateTime::from_timestamp(boot + (p.start / hz) as i64, 0)
            .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
            .unwrap_or_default();
        let cpu = p.cpu_ticks / hz;
        rows.push(vec![
            match p.uid {
                0 => "root".to_string(),
                u => u.to_string(),
            },
            p.pid.to_string(),
            p.ppid.to_string(),
            "0".into(),
            started,
            "?".into(),
            format!("{:02}:{:02}:{:02}", cpu / 3600, cpu / 60 % 60, cpu % 60),
            p.cmd,
        ]);
    }
    std::io::stdout().write_all(table(&rows).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// One sample, then exit (otherwise a table every second until the
    /// containers stop).
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Running containers, or these.
    containers: Vec<String>,
}

/// `kiln stats`: CPU over a short sample, memory (resident) against the
/// limit or the machine's, processes.
pub fn stats(root: Option<PathBuf>, args: StatsArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let targets: Vec<Container> = match args.containers.is_empty() {
        true => container::list(&store)
            .map_err(super::container_error)?
            .into_iter()
            .filter(|c| c.state().is_running())
            .collect(),
        false => args
            .containers
            .iter()
            .map(|n| container::find(&store, n).map_err(super::container_error))
            .collect::<Result<_, _>>()?,
    };
    // Streaming: a table every second, redrawn in place on a terminal,
    // until every container has stopped (or the user interrupts).
    let interval = std::time::Duration::from_millis(match args.no_stream {
        true => 500,
        false => 1000,
    });
    loop {
        let table = stats_table(&targets, interval);
        let mut out = std::io::stdout().lock();
        if !args.no_stream && std::io::IsTerminal::is_terminal(&out) {
            out.write_all(b"\x1b[2J\x1b[H")?;
        }
        out.write_all(table.as_bytes())?;
        out.flush()?;
        if args.no_stream || !targets.iter().any(|c| c.state().is_running()) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// One `stats` table: CPU over `interval`, memory, processes.
fn stats_table(targets: &[Container], interval: std::time::Duration) -> String {
    use kiln::container::stats::{Sample, memory_limit};
    let before: Vec<Sample> = targets.iter().map(Sample::take).collect();
    std::thread::sleep(interval);
    let mut rows = vec![
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (c, before) in targets.iter().zip(before) {
        let now = Sample::take(c);
        let cpu = now.cpu_percent(&before);
        let mem = now.memory();
        let limit = memory_limit(c);
        let pct = if limit > 0 {
            mem as f64 * 100.0 / limit as f64
        } else {
            0.0
        };
        rows.push(vec![
            c.short_id().to_string(),
            c.record.name.clone(),
            format!("{cpu:.2}%"),
            format!("{} / {}", mib(mem), mib(limit)),
            format!("{pct:.2}%"),
            "0B / 0B".into(),
            "0B / 0B".into(),
            now.procs.len().to_string(),
        ]);
    }
    table(&rows)
}

/// Bytes as docker's stats shows them (`1.5MiB`).
fn mib(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        b0 if b0 < 1024 => format!("{bytes}B"),
        b0 if b0 < 1 << 20 => format!("{:.3}KiB", b / 1024.0),
        b0 if b0 < 1 << 30 => format!("{:.3}MiB", b / 1048576.0),
        _ => format!("{:.3}GiB", b / 1073741824.0),
    }
}

/// Arguments of `kiln system`.
#[derive(Debug, clap::Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    command: SystemCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SystemCommand {
    /// Show what images, containers, volumes and the build cache use.
    Df,
    /// Serve Docker's Engine API (1.41) for the docker CLI, docker-py and
    /// docker-compose, until idle for --timeout.
    Service {
        /// The unix socket (default: /run/kiln/docker.sock as root,
        /// $XDG_RUNTIME_DIR/kiln/docker.sock otherwise).
        #[arg(long, conflicts_with = "listen")]
        socket: Option<PathBuf>,
        /// A TCP address instead: `127.0.0.1:PORT`, or any address with
        /// --tlsverify.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve TCP over TLS, only to clients whose certificate
        /// --tlscacert signed.
        #[arg(long, requires_all = ["listen", "tlscacert", "tlscert", "tlskey"])]
        tlsverify: bool,
        /// The CA that signs clients' certificates (PEM).
        #[arg(long, requires = "tlsverify")]
        tlscacert: Option<PathBuf>,
        /// The service's certificate (PEM).
        #[arg(long, requires = "tlsverify")]
        tlscert: Option<PathBuf>,
        /// The service's private key (PEM).
        #[arg(long, requires = "tlsverify")]
        tlskey: Option<PathBuf>,
        /// Stop after this many seconds without a request (0: never).
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// What Docker's default network mode gives a container: the
        /// host's network, or (`none`, as `dockerd --bridge=none`) a
        /// namespace of its own with loopback only.
        #[arg(long, value_enum, default_value = "host")]
        bridge: kiln::api::Bridge,
    },
}

/// `kiln system df` and `kiln system service`.
pub fn system(root: Option<PathBuf>, args: SystemArgs) -> Result<ExitCode, Error> {
    if let SystemCommand::Service {
        socket,
        listen,
        tlsverify,
        tlscacert,
        tlscert,
        tlskey,
        timeout,
        bridge,
    } = args.command
    {
        let store = open_store(root)?;
        let opts = kiln::api::Options {
            socket: match listen {
                Some(_) => None,
                None => Some(match socket {
                    Some(s) => s,
                    None => kiln::api::default_socket()?,
                }),
            },
            listen,
            tls: match (tlsverify, tlscacert, tlscert, tlskey) {
                (true, Some(ca), Some(cert), Some(key)) => {
                    Some(kiln::api::tls::TlsFiles { ca, cert, key })
                }
                _ => None,
            },
            timeout: std::time::Duration::from_secs(timeout),
            bridge,
        };
        super::runtime()?.block_on(kiln::api::serve(store, opts))?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store(root)?;
    let rows_in = container::disk_use(&store).map_err(super::container_error)?;
    let mut rows = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows_in {
        let pct = match r.size {
            0 => 0,
            s => r.reclaimable * 100 / s,
        };
        let reclaim = match r.kind {
            "Build Cache" => super::format::size(r.reclaimable),
            _ => format!("{} ({pct}%)", super::format::size(r.reclaimable)),
        };
        rows.push(vec![
            r.kind.to_string(),
            r.total.to_string(),
            r.active.to_string(),
            super::format::size(r.size),
            reclaim,
        ]);
    }
    std::io::stdout().write_all(table(&rows).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln port`.
#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// The container.
    container: String,
    /// Only this container port (`80` or `80/tcp`).
    port: Option<String>,
}

/// `kiln port`: the container's published ports (`80/tcp -> 127.0.0.1:8080`, `53/udp -> …`).
pub fn port(root: Option<PathBuf>, args: PortArgs) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let c = container::find(&store, &args.container).map_err(super::container_error)?;
    let want = args
        .port
        .as_deref()
        .map(|p| {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            match (n.parse::<u16>(), proto) {
                (Ok(n), "tcp" | "udp") => Ok((n, proto)),
                _ => Err(Error::Usage(
                    "the port is a number and a protocol (80, 80/tcp or 53/udp)".into(),
                )),
            }
        })
        .transpose()?;
    let mut out = String::new();
    for p in c
        .record
        .ports
        .iter()
        .filter(|p| want.is_none_or(|(n, proto)| n == p.port && proto == p.proto.as_str()))
    {
        match want {
            Some(_) => out.push_str(&format!("{}:{}\n", p.host_ip, p.host_port)),
            None => out.push_str(&format!(
                "{}/{} -> {}:{}\n",
                p.port,
                p.proto.as_str(),
                p.host_ip,
                p.host_port
            )),
        }
    }
    if let Some((n, proto)) = want
        && out.is_empty()
    {
        return Err(Error::Run(
            1,
            format!(
                "no public port '{n}/{proto}' published for {}",
                c.record.name
            ),
        ));
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
