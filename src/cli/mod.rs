//! Subcommands: one file each. Arguments become validated options here, and
//! reports are rendered here; the library does the work.

mod build;
mod check;
mod container;
mod cp;
mod diagnostic;
mod doctor;
mod events;
mod format;
mod fsck;
mod history;
mod images;
mod import;
mod inspect;
mod load;
mod login;
mod manifest;
mod network;
mod parse;
mod prune;
mod pull;
mod push;
mod rmi;
mod run;
mod save;
mod serve;
mod tag;

use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use diagnostic::color_stderr;

/// kiln: a daemonless container image builder.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    /// The store [default: $KILN_ROOT, /var/lib/kiln as root, else $XDG_DATA_HOME/kiln].
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a Dockerfile's syntax tree (BuildKit's parser-test notation, or JSON).
    Parse(parse::Args),
    /// Check a Dockerfile: every instruction, flag and argument, and lint rules.
    Check(check::Args),
    /// Build an image from a Dockerfile and its context.
    Build(Box<build::Args>),
    /// Make an image from a root filesystem tarball (like docker import).
    Import(import::Args),
    /// List images.
    Images(images::Args),
    /// Show images' config, layers and manifest as JSON.
    Inspect(inspect::Args),
    /// Give an image another name.
    Tag(tag::Args),
    /// Remove image names (prune removes what no name reaches).
    Rmi(rmi::Args),
    /// Make multi-platform images (image indexes) of images in the store.
    Manifest(manifest::Args),
    /// Show the steps that made an image.
    History(history::Args),
    /// Write images to an OCI archive or a docker-archive.
    Save(save::Args),
    /// Read images from an OCI archive or a docker-archive.
    Load(load::Args),
    /// Remove blobs, snapshots and cache no image name reaches.
    Prune(prune::Args),
    /// Verify every blob, reference and snapshot in the store.
    Fsck(fsck::Args),
    /// Download an image from a registry.
    Pull(pull::Args),
    /// Upload an image to a registry.
    Push(push::Args),
    /// Log in to a registry (kept in docker's config.json).
    Login(login::Args),
    /// Log out of a registry.
    Logout(login::LogoutArgs),
    /// Run a command in a new container from an image.
    Run(Box<run::Args>),
    /// List containers.
    Ps(container::PsArgs),
    /// Show a container's output (stdout and stderr kept apart).
    Logs(container::LogsArgs),
    /// Stop running containers (their stop signal, then SIGKILL).
    Stop(container::StopArgs),
    /// Send a signal to running containers (default SIGKILL).
    Kill(container::KillArgs),
    /// Pause all processes within one or more containers.
    Pause(container::PauseArgs),
    /// Unpause all processes within one or more containers.
    Unpause(container::PauseArgs),
    /// Rename a container.
    Rename(container::RenameArgs),
    /// Copy files between a container and the host.
    Cp(cp::CpArgs),
    /// Update the resources and restart policy of containers.
    Update(container::UpdateArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(container::DiffArgs),
    /// Start stopped containers.
    Start(container::StartArgs),
    /// Stop and start containers.
    Restart(container::StopArgs),
    /// Wait for containers to stop; print their exit codes.
    Wait(container::WaitArgs),
    /// Remove containers.
    Rm(container::RmArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// Join a running container's output and input (leave: ctrl-p ctrl-q).
    Attach(container::AttachArgs),
    /// Make an image of a container's changes.
    Commit(container::CommitArgs),
    /// Manage volumes (`create`, `ls`, `inspect`, `rm`, `prune`).
    Volume(container::VolumeArgs),
    /// Manage networks (`create`, `ls`, `inspect`, `rm`, `prune`, `connect`, `disconnect`).
    Network(network::Args),
    /// Show a running container's processes.
    Top(container::TopArgs),
    /// Show running containers' CPU, memory and process counts.
    Stats(container::StatsArgs),
    /// The store as a whole (`df`).
    System(container::SystemArgs),
    /// Say what this host lets kiln do and what it does not, with fixes.
    Doctor(doctor::Args),
    /// Show a container's published ports.
    Port(container::PortArgs),
    /// Show what happened to containers, images, networks and volumes.
    Events(events::Args),
    /// Manage containers (`prune`, `ls`).
    Container(container::ContainerArgs),
    /// Keep build caches warm for a fleet of CI builders (an HTTP service).
    Serve(serve::Args),
    /// The container's init (started by kiln itself).
    #[command(name = "__init", hide = true)]
    Init,
    /// The per-user network namespace's pause process (rootless networks).
    #[command(name = "__netns-holder", hide = true)]
    NetnsHolder,
    /// A helper in that namespace (started by kiln itself).
    #[command(name = "__netns-helper", hide = true)]
    NetnsHelper,
    /// A detached container's monitor (started by kiln itself).
    #[command(name = "__monitor", hide = true)]
    Monitor {
        /// The container's id.
        id: String,
    },
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    kiln::sandbox::process::raise_open_files();
    let root = cli.root;
    if touches_store(&cli.command) {
        // `kiln serve`'s store may be its config's.
        let serve_root = match &cli.command {
            Command::Serve(args) if root.is_none() => serve::store_root(args),
            _ => None,
        };
        enter_userns(root.as_deref().or(serve_root.as_deref()))?;
    }
    match cli.command {
        Command::Parse(args) => parse::run(args),
        Command::Check(args) => check::run(root, args),
        Command::Build(args) => build::run(root, *args),
        Command::Import(args) => import::run(root, args),
        Command::Images(args) => images::run(root, args),
        Command::Inspect(args) => inspect::run(root, args),
        Command::Tag(args) => tag::run(root, args),
        Command::Rmi(args) => rmi::run(root, args),
        Command::Manifest(args) => manifest::run(root, args),
        Command::History(args) => history::run(root, args),
        Command::Save(args) => save::run(root, args),
        Command::Load(args) => load::run(root, args),
        Command::Prune(args) => prune::run(root, args),
        Command::Fsck(args) => fsck::run(root, args),
        Command::Pull(args) => pull::run(root, args),
        Command::Push(args) => push::run(root, args),
        Command::Login(args) => login::run(args),
        Command::Logout(args) => login::logout(args),
        Command::Run(args) => run::run(root, *args),
        Command::Ps(args) => container::ps(root, args),
        Command::Logs(args) => container::logs(root, args),
        Command::Stop(args) => container::stop(root, args),
        Command::Kill(args) => container::kill(root, args),
        Command::Pause(args) => container::pause(root, args, true),
        Command::Unpause(args) => container::pause(root, args, false),
        Command::Rename(args) => container::rename(root, args),
        Command::Cp(args) => cp::cp(root, args),
        Command::Update(args) => container::update(root, args),
        Command::Diff(args) => container::diff(root, args),
        Command::Start(args) => container::start(root, args),
        Command::Restart(args) => container::restart(root, args),
        Command::Wait(args) => container::wait(root, args),
        Command::Rm(args) => container::rm(root, args),
        Command::Exec(args) => container::exec(root, args),
        Command::Attach(args) => container::attach(root, args),
        Command::Commit(args) => container::commit(root, args),
        Command::Volume(args) => container::volume(root, args),
        Command::Network(args) => network::run(root, args),
        Command::Top(args) => container::top(root, args),
        Command::Stats(args) => container::stats(root, args),
        Command::System(args) => container::system(root, args),
        Command::Doctor(args) => doctor::run(root, args),
        Command::Port(args) => container::port(root, args),
        Command::Events(args) => events::run(root, args),
        Command::Container(args) => container::container_cmd(root, args),
        Command::Monitor { id } => container::monitor(root, id),
        Command::Serve(args) => serve::run(root, args),
        Command::Init => kiln::sandbox::init::main(),
        Command::NetnsHolder => std::process::exit(kiln::sandbox::netns::holder_main()),
        Command::NetnsHelper => std::process::exit(kiln::network::rootless::helper_main()),
    }
}

/// True for the commands that read or write the store (and so, rootless
/// with subordinate ids, run in its user namespace).
fn touches_store(command: &Command) -> bool {
    !matches!(
        command,
        Command::Parse(_)
            | Command::Login(_)
            | Command::Logout(_)
            | Command::Doctor(_)
            | Command::Init
            | Command::NetnsHolder
            | Command::NetnsHelper
    )
}

/// Rootless with subordinate ids: joins the store's user namespace before
/// any thread starts (a multi-threaded process cannot).
fn enter_userns(root: Option<&Path>) -> Result<(), Error> {
    let root = root.map_or_else(
        || kiln::store::Store::default_root(kiln::sandbox::fs::is_root()),
        Path::to_path_buf,
    );
    // The API socket's default directory is secured later, inside.
    let checked: Vec<PathBuf> = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    let store_error = std::cell::RefCell::new(None);
    let hooks = kiln::sandbox::userns::StoreHooks {
        secure: |root: &Path| match kiln::store::Store::prepare_root(root) {
            Ok(()) => Ok(kiln::store::Store::recorded_ids(root)),
            Err(e) => {
                let shown = e.to_string();
                *store_error.borrow_mut() = Some(e);
                Err(shown)
            }
        },
        holder: |map: &kiln::sandbox::userns::IdMap| {
            kiln::network::rootless::holder_mapping(&root, Some(map))
        },
        inits: || kiln::store::Store::running_inits(&root),
    };
    match kiln::sandbox::userns::enter(&root, &checked, hooks) {
        Ok(_) => Ok(()),
        // The store's own trouble is reported as the store's.
        Err(_) if store_error.borrow().is_some() => {
            Err(Error::Store(store_error.take().expect("checked")))
        }
        Err(e) => Err(Error::Userns(e)),
    }
}

/// Everything a subcommand can fail with; rendered once, in main.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Dockerfile could not be read.
    #[error("reading {path}: {source}")]
    ReadDockerfile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the output failed (a closed pipe counts as success).
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    /// A file operation of the command itself failed (not its output).
    #[error("{action} {path}: {source}")]
    Io {
        /// What kiln was doing ("starting", "reading", ...).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Dockerfile is not valid.
    #[error("{}", .0.kind)]
    Dockerfile(Box<diagnostic::Located>),
    /// The context's ignore file could not be used.
    #[error(transparent)]
    Ignore(#[from] kiln::context::ignore::IgnoreError),
    /// A bad argument value that clap could not catch (an image name).
    #[error("{0}")]
    Usage(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln::store::StoreError),
    /// An image operation failed.
    #[error(transparent)]
    Image(#[from] kiln::image::ImageError),
    /// `kiln run` could not run the container: docker run's codes (125 kiln, 126, 127).
    #[error("{1}")]
    Run(i32, String),
    /// Another kiln has the store open.
    #[error("the store {0} is in use by another kiln process")]
    Busy(PathBuf),
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] kiln::registry::RegistryError),
    /// The API service could not start, or stopped.
    #[error(transparent)]
    Api(#[from] kiln::api::ServiceError),
    /// A build failed before any step, for a reason that is not the
    /// command line's (a download it needs).
    #[error(transparent)]
    Build(Box<kiln::builder::BuildError>),
    /// A container operation failed.
    #[error(transparent)]
    Container(kiln::container::ContainerError),
    /// The store's user namespace (rootless, subordinate ids) could not be
    /// entered.
    #[error("{0}")]
    Userns(String),
}

/// A container error as the CLI reports it (a bad request is a usage
/// error, as docker's 125 for `run`).
fn container_error(e: kiln::container::ContainerError) -> Error {
    use kiln::container::ContainerError as C;
    match e {
        C::Image(e) => Error::Image(e),
        C::Store(e) => Error::Store(e),
        e @ (C::NameInUse { .. } | C::Invalid(_) | C::Network(_) | C::Port(_)) => {
            Error::Run(125, e.to_string())
        }
        e => Error::Container(e),
    }
}

/// The process's tokio runtime (the library's blocking calls use it too).
fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    kiln::runtime::get().map_err(Error::Write)
}

/// Opens the store named by `--root`, or the default one.
/// `SOURCE_DATE_EPOCH` from the environment, for images made outside a
/// build (`kiln import`, `kiln commit`): read here, at the edge, so that
/// the library never takes a process's environment for a caller's (under
/// the API every client's commit would take the service's).
fn env_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
}

fn open_store(root: Option<PathBuf>) -> Result<kiln::store::Store, Error> {
    let root =
        root.unwrap_or_else(|| kiln::store::Store::default_root(kiln::sandbox::fs::is_root()));
    Ok(kiln::store::Store::open(root)?)
}

impl Error {
    /// The process exit code: 1 for a bad input, 2 for kiln's own trouble.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Read { .. }
            | Error::ReadDockerfile { .. }
            | Error::Dockerfile(_)
            | Error::Ignore(_) => 1,
            Error::Store(_)
            | Error::Image(_)
            | Error::Busy(_)
            | Error::Registry(_)
            | Error::Build(_)
            | Error::Container(_)
            | Error::Userns(_)
            | Error::Io { .. }
            | Error::Write(_) => 1,
            Error::Usage(_) => 2,
            Error::Api(e) if e.is_usage() => 2,
            Error::Api(_) => 1,
            Error::Run(code, _) => u8::try_from(*code).unwrap_or(125),
        }
    }

    /// True for a write to a pipe whose reader went away (`kiln parse | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The error as a person reads it.
    pub fn render(&self, color: bool) -> String {
        match self {
            Error::Dockerfile(located) => located.render(color),
            Error::Read { path, source } => {
                format!("error: cannot read {}: {source}\n", path.display())
            }
            Error::Io { .. } => format!("error: {self}\n"),
            Error::ReadDockerfile { path, source } => {
                let hint = if source.kind() == std::io::ErrorKind::NotFound {
                    "\n  help: pass the Dockerfile's path with -f, or - to read standard input\n"
                } else {
                    "\n"
                };
                format!("error: cannot read {}: {source}{hint}", path.display())
            }
            Error::Image(kiln::image::ImageError::NotFound(_)) => {
                format!(
                    "error: {self}\n  help: `kiln images` lists the names and ids in this store\n"
                )
            }
            Error::Busy(_) => {
                format!("error: {self}\n  help: run it again once the other kiln has finished\n")
            }
            Error::Userns(_) => format!(
                "error: {self}\n  help: `kiln doctor` says what this host allows; KILN_USERNS=single keeps the one-id map (files of other owners become yours)\n"
            ),
            other => format!("error: {other}\n"),
        }
    }
}

/// Reads the Dockerfile named by `-f` (`-` for standard input).
fn read_dockerfile(path: &Path) -> Result<(String, Vec<u8>), Error> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|source| Error::ReadDockerfile {
                path: path.into(),
                source,
            })?;
        return Ok(("<stdin>".into(), bytes));
    }
    let bytes = std::fs::read(path).map_err(|source| Error::ReadDockerfile {
        path: path.into(),
        source,
    })?;
    Ok((path.display().to_string(), bytes))
}
