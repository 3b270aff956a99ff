//! The host side of a container: start `kiln __init` in new namespaces,
//! put it in its cgroups, hand it the spec, pass signals on, and return its
//! exit status.
//!
//! The init is executed from a sealed in-memory copy of kiln (a memfd), not
//! from kiln's file: a process in the container that opens
//! `/proc/<init>/exe` for writing reaches an immutable anonymous file, never
//! the host's binary (runc's CVE-2019-5736). Between fork and exec the child
//! does only async-signal-safe work: two dup2s and one unshare.

use super::cgroup::Cgroup;
use super::init::{CONSOLE_FD, Failure, SPEC_FD, STATUS_FD};
use super::spec::{Limits, Network, Spec};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sched::{CloneFlags, unshare};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use thiserror::Error;

/// Why a container could not run.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// kiln could not set the container up (exit 125).
    #[error("{0}")]
    Setup(String),
    /// No isolation can be had here (exit 125).
    #[error(transparent)]
    Isolation(#[from] super::isolation::IsolationError),
    /// A caller's step before the process started failed (joining its
    /// networks): exit 125.
    #[error("{0}")]
    Prestart(PrestartError),
    /// The process could not be started: not found (127) or not executable (126).
    #[error("{message}")]
    Exec {
        /// 126 or 127.
        code: i32,
        /// What went wrong.
        message: String,
    },
}

impl SandboxError {
    /// docker run's exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::Setup(_) | SandboxError::Prestart(_) | SandboxError::Isolation(_) => 125,
            SandboxError::Exec { code, .. } => *code,
        }
    }
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SandboxError + '_ {
    move |e| SandboxError::Setup(format!("{what}: {e}"))
}

/// This program as a handle to exec that no container can write through:
/// through a read-only mount, or a sealed copy. Made once per process: a
/// build's steps and a monitor's restarts start from the same handle.
fn sealed_self() -> Result<OwnedFd, SandboxError> {
    static SEALED: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = SEALED.get() {
        return fd.try_clone().map_err(setup("dup"));
    }
    let fd = match read_only_self() {
        Ok(fd) => fd,
        Err(_) => copied_self()?,
    };
    // Two threads may both make one: either is kept, both are sound.
    let kept = SEALED.get_or_init(|| fd);
    kept.try_clone().map_err(setup("dup"))
}

/// kiln's binary opened through a read-only overlayfs mount made with the
/// new mount API and attached nowhere (runc 1.2's answer to
/// CVE-2019-5736): a write through the container's `/proc/PID/exe`
/// meets EROFS, and nothing is copied (the memfd copy of a 28 MB binary
/// was most of a container's start). Needs CAP_SYS_ADMIN here (root);
/// None otherwise, and the caller copies.
fn read_only_self() -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::Error::other("kiln's path has no directory"));
    };
    // Without an upper layer overlayfs wants two lower ones: the second is
    // an empty directory, gone once the mount holds it.
    let empty = tempfile::tempdir()?;
    let layers = [dir, empty.path()];
    if layers
        .iter()
        .any(|p| p.as_os_str().as_bytes().iter().any(|b| b":,\\".contains(b)))
    {
        return Err(io::Error::other("a layer's path holds ':' or ','"));
    }
    let lowerdir = format!("{}:{}", dir.display(), empty.path().display());
    let mount = super::fs::detached_overlay(&[("lowerdir", &lowerdir)], true)?;
    let file = nix::fcntl::openat(
        &mount,
        std::path::Path::new(name),
        // A symlink put there since is not followed: its own size and
        // mtime then fail the check below.
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // The handle must be kiln itself, not what the directory holds now.
    let ours = std::fs::metadata("/proc/self/exe")?;
    let theirs = nix::sys::stat::fstat(&file)?;
    use std::os::unix::fs::MetadataExt;
    // (Overlayfs may number inodes its own way: size and mtime tell.)
    if ours.size() != theirs.st_size as u64
        || ours.mtime() != theirs.st_mtime
        || ours.mtime_nsec() != theirs.st_mtime_nsec
    {
        return Err(io::Error::other(
            "kiln's binary was replaced since it started",
        ));
    }
    Ok(file)
}

/// A sealed in-memory copy of kiln's binary (rootless, or where the
/// overlay cannot be made): sealed, it is as safe to share as the overlay's
/// handle.
fn copied_self() -> Result<OwnedFd, SandboxError> {
    let fd = memfd_create(
        "kiln-init",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(setup("memfd_create"))?;
    let mut exe = File::open("/proc/self/exe").map_err(setup("opening /proc/self/exe"))?;
    let mut copy = File::from(fd);
    io::copy(&mut exe, &mut copy).map_err(setup("copying kiln into memory"))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    // The kernel refuses the write seal (EBUSY) while pages of the copy
    // are still pinned by the write that just ended; it passes moments later.
    let mut tries = 0;
    loop {
        match fcntl(&copy, FcntlArg::F_ADD_SEALS(seals)) {
            Err(nix::Error::EBUSY) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            r => break r.map(drop).map_err(setup("sealing the copy"))?,
        };
    }
    Ok(OwnedFd::from(copy))
}

/// Moves an fd above the low numbers the child remaps, so that dup2 onto 3
/// and 4 never meets one of them.
fn high(fd: OwnedFd) -> Result<OwnedFd, SandboxError> {
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(setup("dup"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Where a container's standard input comes from.
#[derive(Debug, Default)]
pub enum Stdin {
    /// /dev/null.
    #[default]
    Null,
    /// This process's own (`-i` in the foreground).
    Inherit,
    /// This descriptor (a monitor's pipe, an API client's stream).
    Fd(OwnedFd),
}

/// Takes a `-t` container's pty master instead of it being relayed to
/// this process's terminal (a monitor logs it, the API relays it to a
/// client); the container runs on while the taker reads it.
pub struct Console(pub Box<dyn FnOnce(OwnedFd) + Send>);

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

/// Where a container's standard streams go.
#[derive(Debug, Default)]
pub struct Io {
    /// Its standard input (without a tty; a tty's input is the pty's).
    pub stdin: Stdin,
    /// With `spec.tty`: who takes the pty master (default: relayed to
    /// this process's terminal).
    pub console: Option<Console>,
    /// Send stdout and stderr here (a build step's log pipe) instead of
    /// this process's own.
    pub output: Option<OwnedFd>,
    /// Send stderr here instead (a monitor keeps the streams apart).
    pub stderr: Option<OwnedFd>,
    /// Told the init's pid once the container's process is set to start.
    pub started: Option<std::sync::mpsc::Sender<u32>>,
    /// Rootless: the user namespace (an open `/proc/PID/ns/user`) the
    /// container's namespaces are made in instead of a new one: the network
    /// holder's, so that its helper can reach them ([`super::netns`]).
    pub userns: Option<OwnedFd>,
    /// Run with the init's pid once its namespaces exist and before it
    /// starts anything: a container network's interfaces and resolver
    /// are made here, so the process starts with its network up.
    pub prestart: Option<Prestart>,
}

/// A step run between a container's namespaces being made and its
/// process starting, given the init's pid; its error fails the start.
pub struct Prestart(pub Box<dyn FnOnce(u32) -> Result<(), PrestartError> + Send>);

/// Why a [`Prestart`] step failed: the caller's own error.
pub type PrestartError = Box<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for Prestart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prestart")
    }
}

/// Runs a container; returns its exit code (128+N when killed by signal N).
/// `id` names its cgroups; `io.stdin` passes standard input through (`-i`);
/// with `spec.tty` the process gets a pty relayed to this terminal (`-t`).
pub fn run(spec: &Spec, limits: &Limits, id: &str, io: Io) -> Result<i32, SandboxError> {
    launch(spec, limits, id, io, None)
}

/// Runs `spec`'s process in the running container whose PID 1 is
/// `container_pid1` (a host pid): its namespaces and cgroups, with the
/// spec's user, capabilities and seccomp filter (`kiln exec`); returns its
/// exit code.
pub fn exec(spec: &Spec, container_pid1: u32, io: Io) -> Result<i32, SandboxError> {
    launch(spec, &Limits::default(), "", io, Some(container_pid1))
}

/// The PID 1 of the container whose init (stage 1, host side) is `init`.
pub fn container_pid1(init: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn launch(
    spec: &Spec,
    limits: &Limits,
    id: &str,
    io: Io,
    join: Option<u32>,
) -> Result<i32, SandboxError> {
    let relay_input = matches!(io.stdin, Stdin::Inherit);
    let taker = io.console;
    // Without namespaces (a CI job's container refuses them), a chroot
    // into a copy of the root; what it changed is found after it ends.
    let chroot = super::isolation::chosen()? == super::isolation::Isolation::Chroot;
    let recorded = match (chroot, join) {
        (false, _) => None,
        (true, Some(_)) => {
            return Err(SandboxError::Setup(
                "kiln exec enters a container's namespaces, and with --isolation=chroot it has none: run the command with kiln run".into(),
            ));
        }
        (true, None) if io.prestart.is_some() => {
            return Err(SandboxError::Setup(
                "networks and published ports need a network namespace, which --isolation=chroot cannot make (`kiln doctor` says why)".into(),
            ));
        }
        (true, None) => Some(chroot_root(spec, limits)?),
    };
    // The container's end of the console socket, like every descriptor the
    // child remaps, lives above the numbers it is remapped onto.
    let console = match spec.tty {
        true => {
            let (ours, theirs) = UnixStream::pair().map_err(setup("socketpair"))?;
            Some((ours, high(OwnedFd::from(theirs))?))
        }
        false => None,
    };
    let console_raw = match &console {
        Some((_, theirs)) => theirs.as_raw_fd(),
        None => -1,
    };
    let exe = high(sealed_self()?)?;
    let (spec_r, spec_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("pipe"))?;
    let (status_r, status_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("pipe"))?;
    let (spec_r, status_w) = (high(spec_r)?, high(status_w)?);
    let userns = match (join, io.userns) {
        (None, Some(fd)) if spec.rootless => Some(high(fd)?),
        _ => None,
    };
    // In the store's user namespace with subordinate ids (joined), or
    // entering the network holder's: already mapped.
    let in_holder = userns.is_some() || super::userns::joined();
    let (flags, init_flags) = match (join, in_holder) {
        // Joining a container: its namespaces are entered by the init
        // itself (setns), none made.
        (Some(_), _) => (CloneFlags::empty(), CloneFlags::empty()),
        (None, _) if chroot => (CloneFlags::empty(), CloneFlags::empty()),
        // In the holder's user namespace, already mapped: every namespace
        // is made between fork and exec, as a rootful container's are.
        (None, true) => {
            let (outer, inner) = namespaces(spec);
            (outer | inner, CloneFlags::empty())
        }
        (None, false) => namespaces(spec),
    };
    let userns_raw = userns.as_ref().map_or(-1, |f| f.as_raw_fd());
    let new_userns = spec.rootless && join.is_none() && !in_holder;
    if spec.rootless && limits.parent.is_some() {
        return Err(SandboxError::Setup(
            "--cgroup-parent names a group below the cgroup root, which needs root: run kiln as root".into(),
        ));
    }
    // Rootless limits only in a subtree delegated to the user (cgroup v2).
    if spec.rootless && !limits.is_empty() && super::cgroup::delegated().is_none() {
        return Err(SandboxError::Setup(super::cgroup::NOT_DELEGATED.into()));
    }
    let (spec_raw, status_raw) = (spec_r.as_raw_fd(), status_w.as_raw_fd());
    let mut cmd = Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    cmd.arg0("kiln-init").arg("__init").env_clear();
    if new_userns {
        cmd.env(super::init::USERNS_ENV, init_flags.bits().to_string());
    }
    if let Some(pid1) = join {
        cmd.env(super::init::EXEC_ENV, pid1.to_string());
    }
    // The caller's terminal is never handed to a container that has no
    // pty of its own: a process inside could queue input that the caller's
    // shell runs on the host when kiln returns (TIOCSTI). It gets pipes,
    // relayed here, as docker's containers do; pipes and files pass as is.
    let mut relays = Vec::new();
    cmd.stdin(match io.stdin {
        _ if spec.tty => Stdio::null(),
        Stdin::Null => Stdio::null(),
        Stdin::Inherit if io::stdin().is_terminal() => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("pipe"))?;
            relay_input_pipe(w);
            Stdio::from(r)
        }
        Stdin::Inherit => Stdio::inherit(),
        Stdin::Fd(fd) => Stdio::from(fd),
    });
    match io.output {
        Some(out) => {
            let err = match io.stderr {
                Some(err) => err,
                None => out.try_clone().map_err(setup("dup"))?,
            };
            cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        }
        None if !spec.tty => {
            if io::stdout().is_terminal() {
                let (r, w) =
                    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("pipe"))?;
                relays.push(relay_output_pipe(r, Output::Stdout));
                cmd.stdout(Stdio::from(w));
            }
            if io::stderr().is_terminal() {
                let (r, w) =
                    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(setup("pipe"))?;
                relays.push(relay_output_pipe(r, Output::Stderr));
                cmd.stderr(Stdio::from(w));
            }
        }
        None => {}
    }
    // SAFETY: dup2 and unshare are async-signal-safe system calls; nothing
    // else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The init dies with the thread that started it (and takes the
            // container with it): a kiln killed with SIGKILL leaves no
            // container running.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // dup2 onto 3, 4 (and 5) clears close-on-exec there only.
            for (from, to) in [
                (spec_raw, SPEC_FD),
                (status_raw, STATUS_FD),
                (console_raw, CONSOLE_FD),
            ] {
                if from >= 0 && nix::libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if userns_raw >= 0 {
                super::netns::join_then_unshare(userns_raw, flags)
            } else if flags.is_empty() {
                Ok(())
            } else {
                unshare(flags).map_err(io::Error::from)
            }
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| {
            // EPERM from unshare: this host or the container kiln runs in
            // refuses namespaces; say so, and where to look.
            let hint = match e.raw_os_error() == Some(nix::libc::EPERM) {
                true => ": namespaces cannot be made here (inside a container without CAP_SYS_ADMIN, or under a seccomp filter that refuses unshare); `kiln doctor` says what this host allows",
                false => "",
            };
            SandboxError::Setup(format!("starting the container's init: {e}{hint}"))
        })?;
    // The Command holds copies of what it passed to the child; only the init
    // keeps its end of the console socket.
    drop(cmd);
    let console = console.map(|(ours, _theirs)| ours);
    drop(spec_r);
    drop(status_w);
    let pid = child.id();
    if new_userns && let Err(e) = map_caller_to_root(pid) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SandboxError::Setup(format!(
            "mapping the user namespace: {e}"
        )));
    }
    let made = match join {
        // A rootless container's groups, where it has any (a delegated
        // subtree), are joined if they can be.
        Some(pid1) if spec.rootless => {
            let _ = super::cgroup::join_same(pid1, pid);
            Ok(Cgroup::default())
        }
        Some(pid1) => super::cgroup::join_same(pid1, pid).map(|()| Cgroup::default()),
        // No cgroups to make where there are no namespaces: the CI job's
        // own container holds every process.
        None if chroot => Ok(Cgroup::default()),
        // Rootless, only limits make a group (no steps' groups: none
        // where nothing is delegated).
        None if spec.rootless && limits.is_empty() => Ok(Cgroup::default()),
        // A step's own group (v2) is BuildKit's habit, not a limit: where
        // it cannot be made (a read-only /sys/fs/cgroup, bpf refused) the
        // step runs in kiln's, as before.
        None if limits.is_empty() && limits.parent.is_none() => {
            Ok(Cgroup::create(id, limits, pid, !spec.rootless).unwrap_or_default())
        }
        None => Cgroup::create(id, limits, pid, !spec.rootless),
    };
    let mut cgroup = match made {
        Ok(c) => c,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SandboxError::Setup(format!("setting resource limits: {e}")));
        }
    };
    if let Some(Prestart(step)) = io.prestart
        && let Err(e) = step(pid)
    {
        let _ = child.kill();
        let _ = child.wait();
        cgroup.remove();
        return Err(SandboxError::Prestart(e));
    }
    // Signals to kiln are the container's from before it can start: one
    // that came between its start and this would have ended kiln instead.
    let forwarder = forward_signals(pid);
    // The spec goes last: the init starts nothing before it has it, so
    // every process of the container starts inside its cgroups.
    let mut sent = compiled(spec)?;
    let own = cgroup.own_mounts();
    if !own.is_empty() {
        sent.to_mut().cgroups = own.clone();
    }
    if chroot {
        sent.to_mut().chroot = true;
    }
    // A cgroup namespace of its own where the container has a group of
    // its own to be the root of: asked for, or docker's default on v2.
    let v2 = matches!(own.as_slice(), [m] if m.name.is_empty());
    let private = !chroot
        && match spec.cgroupns {
            Some(asked) => asked,
            None => v2 && !own.is_empty(),
        };
    if spec.cgroupns != Some(private) {
        sent.to_mut().cgroupns = Some(private);
    }
    // kiln raised its own open-file limit; the container gets the one kiln
    // was started with unless `--ulimit nofile` says otherwise.
    if let Some((soft, hard)) = super::process::started_open_files()
        && !sent.rlimits.iter().any(|l| l.name == "nofile")
    {
        sent.to_mut().rlimits.push(super::spec::Rlimit {
            name: "nofile".into(),
            soft,
            hard,
        });
    }
    let json = serde_json::to_vec(&sent).map_err(setup("encoding the spec"))?;
    let mut w = File::from(spec_w);
    if let Err(e) = w.write_all(&json) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SandboxError::Setup(format!("sending the spec: {e}")));
    }
    drop(w);
    // Told when the process runs: for a container, once PID 1 says its
    // exec succeeded (a command not found never counts as started); for
    // an exec, once the spec is sent.
    let started = match (io.started, join) {
        (Some(tx), Some(_)) => {
            let _ = tx.send(pid);
            None
        }
        (started, _) => started,
    };
    let mut status_file = File::from(status_r);
    let status_reader = std::thread::spawn(move || {
        let mut report = Vec::new();
        let mut buf = [0u8; 4096];
        let mut started = started;
        loop {
            match status_file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => report.extend_from_slice(&buf[..n]),
            }
            if report.starts_with(super::init::STARTED)
                && let Some(tx) = started.take()
            {
                let _ = tx.send(pid);
            }
        }
        let text = String::from_utf8_lossy(&report).into_owned();
        text.strip_prefix("started\n").unwrap_or(&text).to_string()
    });

    if let Some(socket) = console {
        // The init sends the pty once the root is set up (or fails and
        // closes the socket); the relay returns when the container is done.
        match taker {
            Some(Console(take)) => {
                if let Ok(master) = super::tty::receive_master(&socket) {
                    take(master);
                }
            }
            None => {
                if let Ok(pty) = super::tty::Pty::receive(&socket) {
                    drop(socket);
                    let _ = pty.relay(relay_input);
                }
            }
        }
    }
    let status = child.wait().map_err(setup("waiting for the container"));
    drop(forwarder);
    cgroup.remove();
    // Every writer is gone with the container's processes: what they
    // wrote is all on the terminal before kiln returns.
    for relay in relays {
        let _ = relay.join();
    }
    let status = status?;
    if let Some(prepared) = recorded {
        // The init ended its tree; a process that got away from it (its
        // subreaper killed from inside) still has the copy as its root.
        // None may run while kiln takes mounts back and reads the copy.
        end_processes_rooted_at(&spec.rootfs);
        prepared.finish(&spec.upper).map_err(|e| {
            SandboxError::Setup(format!(
                "finding what the container changed in {}: {e}",
                spec.rootfs.display()
            ))
        })?;
    }
    let report = status_reader.join().unwrap_or_default();
    if let Ok(failure) = serde_json::from_str::<Failure>(&report) {
        return Err(match failure.code {
            126 | 127 => SandboxError::Exec {
                code: failure.code,
                message: failure.message,
            },
            _ => SandboxError::Setup(failure.message),
        });
    }
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Kills every process whose root is the directory `root`, until a pass
/// finds none (a chrooted container's, which has no PID namespace).
fn end_processes_rooted_at(root: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::metadata(root) else {
        return;
    };
    for _ in 0..200 {
        let mut found = false;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if std::fs::metadata(format!("/proc/{pid}/root"))
                .is_ok_and(|m| m.dev() == dir.dev() && m.ino() == dir.ino())
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                found = true;
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The root of a chrooted container: its layers copied into `rootfs`
/// (what it held recorded), once the spec asks nothing that needs a mount.
fn chroot_root(spec: &Spec, limits: &Limits) -> Result<super::copyroot::Prepared, SandboxError> {
    let refuse = |what: &str| {
        SandboxError::Setup(format!(
            "{what} with --isolation=chroot: this host refuses the namespaces and mounts that needs (`kiln doctor` says why)"
        ))
    };
    if !limits.is_empty() || limits.parent.is_some() {
        return Err(refuse(
            "resource limits need cgroups, which kiln cannot make",
        ));
    }
    if spec.read_only {
        return Err(refuse("a read-only root cannot be made"));
    }
    if spec.tty {
        return Err(refuse(
            "a terminal (-t) needs a devpts mount, which cannot be made",
        ));
    }
    if spec.network == Network::None {
        return Err(refuse(
            "--network none needs a network namespace, which cannot be made",
        ));
    }
    if !spec.sysctls.is_empty() {
        return Err(refuse(
            "--sysctl would set the host's (there is no namespace of the container's own)",
        ));
    }
    if super::probe::filesystem(&spec.rootfs).is_ok_and(|t| t == "overlay") {
        return Err(SandboxError::Setup(format!(
            "kiln's store ({}) is on overlayfs, this container's own root, which refuses the whiteouts layers hold: put the store on a volume (docker run -v kiln-store:/var/lib/kiln, a Kubernetes emptyDir)",
            spec.rootfs.display()
        )));
    }
    super::copyroot::Prepared::new(spec).map_err(|e| {
        SandboxError::Setup(format!(
            "preparing the root of a chrooted container in {}: {e}",
            spec.rootfs.display()
        ))
    })
}

/// Which of this process's outputs a relay writes to.
#[derive(Clone, Copy)]
enum Output {
    Stdout,
    Stderr,
}

/// Copies what the container writes into pipe `r` to this process's
/// terminal, flushed as it comes; ends when every writer is gone.
fn relay_output_pipe(r: OwnedFd, to: Output) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = File::from(r);
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let written = match to {
                Output::Stdout => {
                    let mut out = io::stdout().lock();
                    out.write_all(&buf[..n]).and_then(|()| out.flush())
                }
                Output::Stderr => io::stderr().lock().write_all(&buf[..n]),
            };
            if written.is_err() {
                return;
            }
        }
    })
}

/// Copies this process's terminal input into pipe `w` until the terminal
/// ends its input or the container stops reading. Not waited for: a read
/// of a terminal cannot be interrupted, and the process ends soon after.
fn relay_input_pipe(w: OwnedFd) {
    std::thread::spawn(move || {
        let mut to = File::from(w);
        let mut buf = [0u8; 4096];
        loop {
            let n = match io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
}

/// `spec` with its seccomp profile compiled here, once per kiln process
/// for Docker's default (parsing and compiling it cost each container
/// about 2 ms), so the init only installs it.
fn compiled(spec: &Spec) -> Result<std::borrow::Cow<'_, Spec>, SandboxError> {
    use super::seccomp;
    use super::spec::SeccompProfile;
    static DEFAULT: std::sync::OnceLock<Result<(u32, Vec<u64>), String>> =
        std::sync::OnceLock::new();
    let caps = super::init::capabilities(spec).map_err(SandboxError::Setup)?;
    let default_caps = spec.capabilities.is_none();
    let words = match &spec.seccomp {
        // Docker's profile allows some calls by capability: another set
        // compiles another filter.
        SeccompProfile::Default if !default_caps => seccomp::filter(&caps)
            .map(|p| p.to_words())
            .map_err(|e| SandboxError::Setup(format!("seccomp profile: {e}")))?,
        SeccompProfile::Default => DEFAULT
            .get_or_init(|| {
                seccomp::filter(&super::init::DEFAULT_CAPS)
                    .map(|p| p.to_words())
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| SandboxError::Setup(format!("seccomp profile: {e}")))?,
        SeccompProfile::Json(text) => {
            match seccomp::from_json(text).and_then(|p| p.compile(&caps)) {
                Ok(Some(p)) => p.to_words(),
                Ok(None) => return Ok(std::borrow::Cow::Borrowed(spec)),
                Err(e) => return Err(SandboxError::Setup(format!("seccomp profile: {e}"))),
            }
        }
        SeccompProfile::Unconfined | SeccompProfile::Compiled { .. } => {
            return Ok(std::borrow::Cow::Borrowed(spec));
        }
    };
    let mut out = spec.clone();
    out.seccomp = SeccompProfile::Compiled {
        flags: words.0,
        program: words.1,
    };
    Ok(std::borrow::Cow::Owned(out))
}

/// Which namespaces are unshared before exec (by the forked child) and which
/// by the init itself after exec. As root, all before exec. Rootless, none
/// before: the init creates its user namespace first (an exec with a
/// not-yet-mapped uid would drop every capability in it), then the others,
/// which then belong to it.
fn namespaces(spec: &Spec) -> (CloneFlags, CloneFlags) {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    if !spec.host_uts {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if !spec.host_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if spec.rootless {
        (CloneFlags::empty(), flags)
    } else {
        (flags, CloneFlags::empty())
    }
}

/// Maps the caller's uid and gid to root in the child's new user namespace
/// (one id each; setgroups denied, as an unprivileged map requires), once
/// the child has created it.
pub(super) fn map_caller_to_root(pid: u32) -> io::Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/user")?;
    let theirs = format!("/proc/{pid}/ns/user");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_link(&theirs)? == ours {
        if std::time::Instant::now() > deadline {
            return Err(io::Error::other(
                "the container's init did not create its user namespace",
            ));
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1"))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1"))
}

/// Passes SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH on
/// to `pid` until the returned handle is dropped.
fn forward_signals(pid: u32) -> Forwarder {
    use signal_hook::consts::*;
    let Ok(mut signals) = signal_hook::iterator::Signals::new([
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
    ]) else {
        return Forwarder(None);
    };
    let handle = signals.handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(sig) = Signal::try_from(sig) {
                let _ = kill(Pid::from_raw(pid as i32), sig);
            }
        }
    });
    Forwarder(Some(handle))
}

/// Closes the forwarding thread's signal source when dropped.
struct Forwarder(Option<signal_hook::iterator::Handle>);

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rootless: bool, network: Network) -> Spec {
        Spec {
            lower: vec![],
            upper: "/u".into(),
            work: "/w".into(),
            rootfs: "/r".into(),
            volatile: false,
            read_only: false,
            argv: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            hostname: "h".into(),
            network,
            binds: vec![],
            tmpfs: vec![],
            rootless,
            tty: false,
            etc_dir: "/e".into(),
            seccomp: Default::default(),
            no_new_privileges: false,
            shm_size: None,
            rlimits: Vec::new(),
            capabilities: None,
            extra_groups: Vec::new(),
            sysctls: Vec::new(),
            host_uts: false,
            host_ipc: false,
            cgroups: Vec::new(),
            chroot: false,
            cgroupns: None,
        }
    }

    #[test]
    fn namespace_order() {
        let base = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWPID;
        // As root, everything before exec; the network only for --network none.
        assert_eq!(
            namespaces(&spec(false, Network::Host)),
            (base, CloneFlags::empty())
        );
        assert_eq!(
            namespaces(&spec(false, Network::None)),
            (base | CloneFlags::CLONE_NEWNET, CloneFlags::empty())
        );
        // Rootless: nothing before exec; the init creates the user namespace
        // itself and these after it (so they belong to it).
        let (before, after) = namespaces(&spec(true, Network::None));
        assert!(before.is_empty());
        assert_eq!(after, base | CloneFlags::CLONE_NEWNET);
        assert!(
            !after.contains(CloneFlags::CLONE_NEWUSER),
            "the user namespace is made separately, first"
        );
        // --uts host and --ipc host keep the host's.
        let mut shared = spec(false, Network::Host);
        shared.host_uts = true;
        shared.host_ipc = true;
        assert_eq!(
            namespaces(&shared),
            (
                CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID,
                CloneFlags::empty()
            )
        );
    }
}
