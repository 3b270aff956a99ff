//! The container side: `kiln __init`, started by [`super::container::run`]
//! from a sealed in-memory copy of kiln, in new mount, UTS, IPC (and for
//! `--network none`, network) namespaces, with new PID namespace for its
//! children.
//!
//! Stage 1 (this process, still in the host's PID namespace) reads the spec
//! from fd 3 and forks PID 1 of the new PID namespace, then relays signals
//! to it and exits with its status. PID 1 builds the root, pivots, forks the
//! user's process as PID 2, reaps every zombie and forwards signals, as an
//! init does, and exits with the user's process's status (128+N for signal
//! N). Failures before the user's process runs go to fd 4 as JSON.

use super::rootfs;
use super::seccomp;
use super::spec::{SeccompProfile, Spec};
use super::sys::Real;
use super::user;
use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;

/// The fd the spec arrives on.
pub const SPEC_FD: i32 = 3;
/// The fd errors are reported on.
pub const STATUS_FD: i32 = 4;
/// With `-t`, the unix socket the pty's master is sent back on.
pub const CONSOLE_FD: i32 = 5;
/// Rootless: the namespaces (clone flags) the init unshares itself, after
/// creating its user namespace.
pub const USERNS_ENV: &str = "KILN_INIT_NAMESPACES";
/// What PID 1 writes on the status descriptor once the container's
/// process has started (a failure is JSON instead).
pub const STARTED: &[u8] = b"started\n";
/// `kiln exec`: the host pid of the PID 1 of the container to join.
pub const EXEC_ENV: &str = "KILN_INIT_EXEC";

/// Signals an init passes on to the process it runs.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Docker's default capability set.
pub(super) const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The capabilities `spec` keeps: its own list, else Docker's default.
pub(super) fn capabilities(spec: &Spec) -> Result<Vec<Capability>, String> {
    match &spec.capabilities {
        None => Ok(DEFAULT_CAPS.to_vec()),
        Some(names) => names
            .iter()
            .map(|n| {
                n.parse::<Capability>()
                    .map_err(|_| format!("unknown capability {n:?}"))
            })
            .collect(),
    }
}

/// Every capability this kernel and this process have, by name, as
/// `--privileged` keeps them all (others cannot be set).
pub fn all_capabilities() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|v| v.trim().parse::<u8>().ok())
        .unwrap_or(40);
    // Nor can one this process's bounding set lacks (a machine that runs
    // kiln without all of them).
    let bounding = caps::read(None, CapSet::Bounding).unwrap_or_else(|_| caps::all());
    caps::all()
        .iter()
        .filter(|c| c.index() <= last && bounding.contains(c))
        .map(|c| c.to_string())
        .collect()
}

/// Docker's default capability set, by name (what `--cap-add` and
/// `--cap-drop` change).
pub fn default_capabilities() -> Vec<String> {
    DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
}

/// A failure before the user's process ran: docker run's exit codes.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Failure {
    /// 125 (kiln), 126 (not executable), 127 (not found).
    pub code: i32,
    /// What went wrong.
    pub message: String,
}

fn fail(code: i32, message: String) -> ! {
    // SAFETY: fd 4 was set up by the host side for exactly this; it is
    // owned here and closed on exit.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    let _ = serde_json::to_writer(&mut status, &Failure { code, message });
    let _ = status.flush();
    std::process::exit(code);
}

fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 125,
    }
}

/// Entry point of `kiln __init`.
pub fn main() -> ! {
    // Executed through /proc/self/fd/N, the process is named "N"; ps in the
    // container should say what it is.
    let _ = nix::sys::prctl::set_name(c"kiln-init");
    // Whatever descriptors kiln's caller left open without close-on-exec
    // end here: none of them may be reachable as /proc/self/fd/N from
    // inside (runc's CVE-2024-21626). 0-2 are the container's stdio, 3-5
    // kiln's own pipes.
    // SAFETY: close_range only closes descriptors; this process holds no
    // other descriptor it needs.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            (CONSOLE_FD + 1) as u32,
            u32::MAX,
            0u32,
        )
    };
    // Rootless: a user namespace first (this process keeps every
    // capability in it); the host maps it, then sends the spec.
    let later = std::env::var(USERNS_ENV)
        .ok()
        .and_then(|b| b.parse::<i32>().ok());
    if later.is_some()
        && let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
    {
        fail(125, format!("creating a user namespace: {e}"));
    }
    // SAFETY: fd 3 was set up by the host side and is owned here.
    let mut input = unsafe { File::from_raw_fd(SPEC_FD) };
    let mut bytes = Vec::new();
    if let Err(e) = input.read_to_end(&mut bytes) {
        fail(125, format!("reading the container spec: {e}"));
    }
    drop(input);
    let spec: Spec = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| fail(125, format!("bad container spec: {e}")));
    if let Some(target) = std::env::var(EXEC_ENV).ok().and_then(|p| p.parse().ok()) {
        exec_into(target, &spec);
    }
    if let Some(bits) = later
        && let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::from_bits_truncate(bits))
    {
        fail(125, format!("creating namespaces: {e}"));
    }
    // The cgroup namespace after the host moved this process into the
    // container's groups: their root is what the container sees as `/`.
    if spec.cgroupns == Some(true)
        && let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
    {
        fail(125, format!("creating a cgroup namespace: {e}"));
    }
    // A network namespace of its own has loopback, up (as docker's
    // --network none, and published ports reach the container there).
    if spec.network == super::spec::Network::None
        && let Err(e) = loopback_up()
    {
        fail(125, format!("bringing up loopback: {e}"));
    }
    // Namespaced sysctls, written from here: this process is in the
    // container's IPC and network namespaces, and /proc/sys shows those of
    // the process that reads it.
    for (key, value) in &spec.sysctls {
        if let Err(e) = super::spec::check_sysctl(key, spec.network == super::spec::Network::None) {
            fail(125, e);
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        if let Err(e) = std::fs::write(&path, value) {
            fail(125, format!("setting sysctl {key}={value}: {e}"));
        }
    }

    let (forwarded, all) = block_signals();
    // Without a PID namespace (chroot), this process adopts every process
    // the container's leave behind, and ends them with it.
    if spec.chroot
        && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
    {
        fail(125, format!("becoming the container's subreaper: {e}"));
    }
    // SAFETY: this process is single-threaded here, so the child may run
    // any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // PID 1 dies with this process, and with it every process of
            // the container: nothing outlives a killed kiln.
            if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
                fail(125, format!("setting the parent-death signal: {e}"));
            }
            pid1(&spec, &forwarded, &all)
        }
        Ok(ForkResult::Parent { child }) => relay(
            child,
            &all,
            match spec.chroot {
                true => Reap::Tree,
                false => Reap::Child,
            },
        ),
        Err(e) => fail(125, format!("forking the container's init: {e}")),
    }
}

/// The image's file at `path` when it is a regular file, else empty: a
/// FIFO there would hang every start, a device would be opened.
fn read_regular(path: &str) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Checked before the open (nothing of a device is opened) and after
    // it (what was opened is what was checked).
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let Ok(mut f) = std::fs::File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
    else {
        return String::new();
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// What the container's process needs once this process is inside the
/// container's root: its user (from the container's /etc/passwd and
/// /etc/group), its environment with HOME, its working directory entered
/// (a failure exits with `cwd_code`), its program looked up in PATH, and
/// with `-t` the pty as 0, 1 and 2.
fn prepare_process(
    spec: &Spec,
    cwd_code: i32,
) -> (user::User, Vec<String>, Result<String, (i32, String)>) {
    let passwd = read_regular("/etc/passwd");
    let group = read_regular("/etc/group");
    let mut user = user::resolve(&spec.user, &passwd, &group).unwrap_or_else(|e| fail(125, e));
    if let Err(e) = user::add_groups(&mut user, &spec.extra_groups, &group) {
        fail(125, e);
    }
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    // The working directory is resolved inside the new root, refusing
    // magic links: `WORKDIR /proc/self/fd/N` cannot reach a descriptor
    // into the host (runc's CVE-2024-21626).
    if let Err(e) = enter_workdir(&spec.cwd) {
        fail(
            cwd_code,
            format!("changing to working directory {}: {e}", spec.cwd),
        );
    }
    let program = find_program(&spec.argv, &env);
    // With -t: a pty from the container's own devpts becomes 0, 1 and 2.
    if spec.tty {
        let slave = super::tty::open_in_container(CONSOLE_FD)
            .unwrap_or_else(|e| fail(125, format!("opening a pty: {e}")));
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this process.
            if unsafe { nix::libc::dup2(slave.as_raw_fd(), fd) } < 0 {
                fail(125, format!("dup2: {}", std::io::Error::last_os_error()));
            }
        }
        // SAFETY: the console socket is ours and no longer needed.
        unsafe { nix::libc::close(CONSOLE_FD) };
    }
    (user, env, program)
}

/// Sets `lo` up in this process's network namespace (SIOCSIFFLAGS).
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a datagram socket only carries the two ioctls below.
    let fd = unsafe {
        nix::libc::socket(
            nix::libc::AF_INET,
            nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just made and is owned here.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zero is a valid value.
    let mut req: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as nix::libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write `req`, which
    // lives across both calls.
    unsafe {
        if nix::libc::ioctl(sock.as_raw_fd(), nix::libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (nix::libc::IFF_UP | nix::libc::IFF_RUNNING) as i16;
        if nix::libc::ioctl(sock.as_raw_fd(), nix::libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Blocks the signals an init forwards, and SIGCHLD: they wait in a
/// signalfd instead of interrupting anything. Returns (forwarded, all).
fn block_signals() -> (SigSet, SigSet) {
    let mut forwarded = SigSet::empty();
    FORWARDED.iter().for_each(|s| forwarded.add(*s));
    let mut all = forwarded;
    all.add(Signal::SIGCHLD);
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None) {
        fail(125, format!("blocking signals: {e}"));
    }
    (forwarded, all)
}

/// `kiln exec`: joins the namespaces of the container whose PID 1 is
/// `target` (a host pid), then runs the spec's process there as PID 1
/// runs the container's own (user, capabilities, seccomp, working
/// directory); this process stays outside the PID namespace, relaying
/// signals and exiting with the process's status.
fn exec_into(target: i32, spec: &Spec) -> ! {
    use nix::sched::{CloneFlags, setns};
    // Every descriptor first: once in the container's mount namespace,
    // /proc is the container's own.
    // Rootless, its user namespace first: the others belong to it.
    let kinds: &[&str] = match spec.rootless {
        true => &["user", "ipc", "uts", "net", "pid", "cgroup", "mnt"],
        false => &["ipc", "uts", "net", "pid", "cgroup", "mnt"],
    };
    // A namespace the container shares with the host (its network,
    // without --network none) is already this process's: not joined again.
    let same = |ns: &str| {
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok();
        ours.is_some() && ours == std::fs::read_link(format!("/proc/{target}/ns/{ns}")).ok()
    };
    let namespaces: Vec<(&str, File)> = kinds
        .iter()
        .copied()
        .filter(|ns| !same(ns))
        .map(|ns| {
            File::open(format!("/proc/{target}/ns/{ns}"))
                .map(|f| (ns, f))
                .unwrap_or_else(|e| fail(125, format!("the container is not running ({ns}: {e})")))
        })
        .collect();
    for (ns, file) in &namespaces {
        if let Err(e) = setns(file, CloneFlags::empty()) {
            fail(125, format!("joining the container's {ns} namespace: {e}"));
        }
    }
    drop(namespaces);
    let (_, all) = block_signals();
    // SAFETY: this process is single-threaded here.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
                fail(125, format!("setting the parent-death signal: {e}"));
            }
            let (user, env, program) = prepare_process(spec, 126);
            let (code, message) = exec_user(&program, spec, &env, &user);
            fail(code, message)
        }
        Ok(ForkResult::Parent { child }) => relay(child, &all, Reap::Child),
        Err(e) => fail(125, format!("forking the exec'd process: {e}")),
    }
}

/// What [`relay`] reaps besides its child.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reap {
    /// Only the child.
    Child,
    /// Every child (PID 1's duty).
    All,
    /// Every child, and when the child ends, every process left below this
    /// one (a subreaper without a PID namespace: what the end of one
    /// would have killed).
    Tree,
}

/// Kills and reaps every process left below this subreaper, those that
/// orphaned processes become meanwhile included.
fn end_tree() {
    let me = std::process::id();
    let listed = format!("/proc/{me}/task/{me}/children");
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                for pid in std::fs::read_to_string(&listed)
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = waitpid(Pid::from_raw(-1), None);
            }
            Ok(_) => continue,
            // ECHILD: nothing is left.
            Err(_) => return,
        }
    }
}

/// Waits for `child`, passing on forwarded signals; exits with its status.
fn relay(child: Pid, all: &SigSet, reap: Reap) -> ! {
    let fd = SignalFd::new(all).unwrap_or_else(|e| fail(125, format!("signalfd: {e}")));
    loop {
        // Reap first: the child may already be gone.
        loop {
            let target = match reap {
                Reap::Child => child,
                Reap::All | Reap::Tree => Pid::from_raw(-1),
            };
            match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) if status.pid() == Some(child) => {
                    if reap == Reap::Tree {
                        end_tree();
                    }
                    std::process::exit(exit_code(status))
                }
                Ok(_) => continue,
            }
        }
        match fd.read_signal() {
            Ok(Some(info)) => {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32)
                    && sig != Signal::SIGCHLD
                {
                    let _ = kill(child, sig);
                }
            }
            Ok(None) => {}
            Err(e) => fail(125, format!("reading signals: {e}")),
        }
    }
}

fn pid1(spec: &Spec, _forwarded: &SigSet, all: &SigSet) -> ! {
    let set_up = match spec.chroot {
        // No PID namespace to end the process's children with it: they
        // come back here when orphaned, and go with the process.
        true => nix::sys::prctl::set_child_subreaper(true)
            .map_err(std::io::Error::from)
            .and_then(|()| rootfs::enter_chroot(spec)),
        false => rootfs::setup(&Real, spec),
    };
    if let Err(e) = set_up {
        fail(125, format!("setting up the container's root: {e}"));
    }
    let (user, env, program) = prepare_process(spec, 125);
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .unwrap_or_else(|e| fail(125, format!("pipe: {e}")));
    // SAFETY: PID 1 is single-threaded; the child only execs or exits.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(err_r);
            let code = exec_user(&program, spec, &env, &user);
            let mut w = File::from(err_w);
            let _ = w.write_all(format!("{}\n{}", code.0, code.1).as_bytes());
            // SAFETY: leaving the forked child without running PID 1's
            // destructors or atexit handlers.
            unsafe { nix::libc::_exit(code.0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(err_w);
            let mut msg = String::new();
            let _ = File::from(err_r).read_to_string(&mut msg);
            if let Some((code, message)) = msg.split_once('\n') {
                let _ = waitpid(child, None);
                fail(code.parse().unwrap_or(125), message.to_string());
            }
            // The process runs (its exec closed the error pipe): the host
            // hears it on the status descriptor, where a failure would be.
            let _ = nix::unistd::write(
                // SAFETY: fd 4 is this process's status descriptor.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(STATUS_FD) },
                STARTED,
            );
            relay(child, all, Reap::All)
        }
        Err(e) => fail(125, format!("forking the container's process: {e}")),
    }
}

/// Sets `--ulimit`s.
fn set_rlimits(limits: &[crate::sandbox::spec::Rlimit]) -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    for l in limits {
        let resource = match l.name.as_str() {
            "core" => Resource::RLIMIT_CORE,
            "cpu" => Resource::RLIMIT_CPU,
            "data" => Resource::RLIMIT_DATA,
            "fsize" => Resource::RLIMIT_FSIZE,
            "locks" => Resource::RLIMIT_LOCKS,
            "memlock" => Resource::RLIMIT_MEMLOCK,
            "msgqueue" => Resource::RLIMIT_MSGQUEUE,
            "nice" => Resource::RLIMIT_NICE,
            "nofile" => Resource::RLIMIT_NOFILE,
            "nproc" => Resource::RLIMIT_NPROC,
            "rss" => Resource::RLIMIT_RSS,
            "rtprio" => Resource::RLIMIT_RTPRIO,
            "rttime" => Resource::RLIMIT_RTTIME,
            "sigpending" => Resource::RLIMIT_SIGPENDING,
            "stack" => Resource::RLIMIT_STACK,
            "as" => Resource::RLIMIT_AS,
            other => return Err(format!("unknown ulimit {other}")),
        };
        setrlimit(resource, l.soft, l.hard)
            .map_err(|e| format!("setting ulimit {}={}:{}: {e}", l.name, l.soft, l.hard))?;
    }
    Ok(())
}

/// Sets no_new_privs when asked, and installs the seccomp filter.
fn confine(spec: &Spec) -> Result<(), String> {
    // Without CAP_SYS_ADMIN (a chroot inside a CI job's container) a
    // filter can only be installed under no_new_privs.
    if spec.no_new_privileges || spec.chroot {
        seccomp::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;
    }
    let caps = capabilities(spec)?;
    let program = match &spec.seccomp {
        SeccompProfile::Default => seccomp::filter(&caps).map(Some),
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::Json(text) => seccomp::from_json(text).and_then(|p| p.compile(&caps)),
        SeccompProfile::Compiled { flags, program } => {
            Ok(Some(seccomp::Program::from_words(*flags, program)))
        }
    }
    .map_err(|e| format!("seccomp profile: {e}"))?;
    if let Some(program) = program {
        seccomp::apply(&program).map_err(|e| format!("installing the seccomp filter: {e}"))?;
    }
    Ok(())
}

/// Creates `cwd` (with its parents) inside the root this process pivoted
/// into and makes it the working directory, by descriptor.
fn enter_workdir(cwd: &str) -> std::io::Result<()> {
    let root = super::fs::Root::open(std::path::Path::new("/"))?;
    root.mkdir_all(cwd, 0o755, &mut |_| Ok(()))?;
    let dir = root.open_path(cwd, true)?;
    nix::unistd::fchdir(&dir).map_err(std::io::Error::from)
}

/// Every signal back to its default action, as runc leaves them: kiln (and
/// whoever started kiln) ignores some, SIGPIPE first of all, and an ignored
/// signal stays ignored across exec (`yes | head` would spin for ever).
fn default_signals() {
    // The kernel's own struct sigaction, all zero: SIG_DFL, no flags, an
    // empty mask. The raw call reaches 32 and 33 too, which glibc's
    // signal() refuses to touch.
    let default = [0u64; 4];
    for sig in 1..=64 {
        if sig == nix::libc::SIGKILL || sig == nix::libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads a struct from `default` (32 bytes, as
        // large as the kernel's on every architecture) and writes nothing.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<u8>(),
                8usize,
            )
        };
    }
}

/// argv[0] looked up in the container's PATH, as execvp would; errors are
/// docker run's: 127 not found, 126 not executable.
fn find_program(argv: &[String], env: &[String]) -> Result<String, (i32, String)> {
    let Some(name) = argv.first().filter(|a| !a.is_empty()) else {
        return Err((125, "no command specified".into()));
    };
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = std::path::Path::new(name);
        return match std::fs::metadata(p) {
            Err(_) => Err((
                127,
                format!("exec: \"{name}\": stat {name}: no such file or directory"),
            )),
            Ok(_) if !executable(p) => Err((126, format!("exec: \"{name}\": permission denied"))),
            Ok(_) => Ok(name.clone()),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = std::path::Path::new(dir).join(name);
        if executable(&candidate) {
            return Ok(candidate.display().to_string());
        }
    }
    Err((
        127,
        format!("exec: \"{name}\": executable file not found in $PATH"),
    ))
}

/// In PID 2: drop to the user, limit capabilities, exec. Returns only on failure.
fn exec_user(
    program: &Result<String, (i32, String)>,
    spec: &Spec,
    env: &[String],
    user: &user::User,
) -> (i32, String) {
    let program = match program {
        Ok(p) => p,
        Err((code, msg)) => return (*code, msg.clone()),
    };
    default_signals();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // A session of its own: no controlling terminal it could push input
    // into (TIOCSTI needs it, or CAP_SYS_ADMIN), but its own pty with -t.
    let _ = nix::unistd::setsid();
    if spec.tty {
        // SAFETY: TIOCSCTTY takes an integer argument, no pointer.
        if unsafe { nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) } != 0 {
            return (
                125,
                format!(
                    "making the pty the controlling terminal: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
    let mut defaults: CapsHashSet = match capabilities(spec) {
        Ok(c) => c.into_iter().collect(),
        Err(e) => return (125, e),
    };
    if spec.chroot {
        // Inside another container, only what that container left us;
        // never CAP_SYS_CHROOT, with which a chroot is left by chrooting
        // again below it (its absence also keeps kiln, which holds it,
        // out of the process's ptrace reach).
        let held = caps::read(None, CapSet::Permitted).unwrap_or_default();
        defaults.retain(|c| held.contains(c) && *c != caps::Capability::CAP_SYS_CHROOT);
    }
    for cap in caps::all() {
        if !defaults.contains(&cap) && caps::drop(None, CapSet::Bounding, cap).is_err() {
            return (125, format!("dropping capability {cap}"));
        }
    }
    if !super::userns::mapped(user.uid, user.gid) {
        return (
            125,
            format!(
                "user {}:{} is not mapped: {}",
                user.uid,
                user.gid,
                match spec.rootless && super::userns::mapped(1, 1) {
                    true => "it is beyond the caller's subordinate ids (/etc/subuid, /etc/subgid)",
                    false =>
                        "rootless kiln maps only the caller, as root, without subordinate ids in /etc/subuid and /etc/subgid (`kiln doctor` says how to add them)",
                }
            ),
        );
    }
    // Only ids the namespace maps can be supplementary groups; with
    // setgroups denied (the one-id map), none.
    let groups: Vec<Gid> = user
        .groups
        .iter()
        .filter(|g| super::userns::mapped(0, **g))
        .map(|g| Gid::from_raw(*g))
        .collect();
    let denied = std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !denied && let Err(e) = nix::unistd::setgroups(&groups) {
        return (125, format!("setgroups: {e}"));
    }
    if let Err(e) = nix::unistd::setgid(Gid::from_raw(user.gid)) {
        return (125, format!("setgid {}: {e}", user.gid));
    }
    // Limits while still root: raising a hard limit needs CAP_SYS_RESOURCE.
    if let Err(e) = set_rlimits(&spec.rlimits) {
        return (125, e);
    }
    // The filter goes on while this process still holds CAP_SYS_ADMIN
    // (needed without no_new_privs); Docker's profile allows the setuid,
    // capset and execve that follow.
    if let Err(e) = confine(spec) {
        return (125, e);
    }
    if let Err(e) = nix::unistd::setuid(Uid::from_raw(user.uid)) {
        return (125, format!("setuid {}: {e}", user.uid));
    }
    if user.uid == 0 {
        for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
            if let Err(e) = caps::set(None, set, &defaults) {
                return (125, format!("setting capabilities: {e}"));
            }
        }
    }
    // Only 0, 1 and 2 reach the process: every other descriptor (the status
    // pipe, anything the caller of kiln had open) closes at exec.
    // SAFETY: close_range only changes descriptor flags.
    if unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    } != 0
    {
        return (
            125,
            format!("close_range: {}", std::io::Error::last_os_error()),
        );
    }
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let path = to_c(program);
    let argv: Vec<CString> = spec.argv.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    let err = nix::unistd::execve(&path, &argv, &envp).err();
    match err {
        Some(nix::Error::EACCES) => (126, format!("exec: \"{program}\": permission denied")),
        Some(nix::Error::ENOENT) => (
            127,
            format!("exec: \"{program}\": no such file or directory"),
        ),
        Some(e) => (126, format!("exec: \"{program}\": {e}")),
        None => (125, "exec returned".into()),
    }
}
