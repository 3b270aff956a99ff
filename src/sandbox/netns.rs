//! Rootless networks, as Podman makes them: one user namespace and one
//! network namespace per user, held by a pause process (`kiln
//! __netns-holder`). Bridges live in its network namespace; a rootless
//! container on a network (or with published ports) makes its namespaces
//! inside the holder's user namespace, so that what holds capabilities
//! there reaches both. That is a helper process (`kiln __netns-helper`)
//! started in the holder's namespaces: it makes the links and the sockets
//! a monitor cannot make itself (a multi-threaded process cannot enter a
//! user namespace), and passes sockets back over a unix socket.

use super::process::Recorded;
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The descriptor a helper passes sockets back on.
pub const HELPER_FD: RawFd = 3;

/// What went wrong with the holder or a helper of rootless networks.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A system call on the way failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A namespace of the holder could not be opened.
    #[error("opening the {ns} namespace of {pid}: {source}")]
    Namespace {
        /// `user` or `net`.
        ns: &'static str,
        /// The holder's pid.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// A child's standard stream was not piped.
    #[error("{0} is not a pipe")]
    NoPipe(&'static str),
    /// The holder of a joined store's namespace is gone.
    #[error(
        "the store's user namespace holder ended: run the command again (kiln starts a new one)"
    )]
    HolderEnded,
    /// The holder said something else than expected.
    #[error("the network holder failed: {0}")]
    Holder(String),
    /// The holder died before it was recorded.
    #[error("the network holder died")]
    HolderDied,
    /// A helper failed: what it said.
    #[error("{0}")]
    Helper(String),
}

fn err(what: &'static str) -> impl FnOnce(std::io::Error) -> NetnsError {
    move |source| NetnsError::Io { what, source }
}

/// `kiln __netns-holder`: makes a user namespace (the caller maps this
/// user to root in it, told on standard output, answered on standard
/// input), then a network namespace in it with loopback up; says `ready`
/// and pauses for ever.
pub fn holder_main() -> i32 {
    let mut out = std::io::stdout();
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        let _ = writeln!(out, "error creating a user namespace: {e}");
        return 1;
    }
    let _ = writeln!(out, "userns");
    let _ = out.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim() != "mapped" {
        return 1;
    }
    // unshare(CLONE_NEWUSER) changed this process's credentials, which
    // made it not dumpable: then only a holder of CAP_SYS_PTRACE on the
    // host could open its namespaces, and a kiln inside them (rootless with
    // subordinate ids) starts pasta there. It holds no secret.
    if let Err(e) = nix::sys::prctl::set_dumpable(true) {
        let _ = writeln!(out, "error making the holder dumpable: {e}");
        return 1;
    }
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        let _ = writeln!(out, "error creating a network namespace: {e}");
        return 1;
    }
    if let Err(e) = super::netlink::loopback_up(std::process::id()) {
        let _ = writeln!(out, "error {e}");
        return 1;
    }
    // It needs no capability to pause: holding none, it may be reached
    // by a process with fewer (pasta drops its own before it opens the
    // holder's namespaces, and the kernel refuses a ptrace-mode open of a
    // process whose capabilities exceed the opener's).
    for set in [
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
        caps::CapSet::Inheritable,
    ] {
        if let Err(e) = caps::clear(None, set) {
            let _ = writeln!(out, "error dropping the holder's capabilities: {e}");
            return 1;
        }
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    // Standard streams closed: nothing ties the holder to its starter.
    let null = std::fs::File::open("/dev/null").ok();
    if let Some(null) = &null {
        for fd in 0..3 {
            // SAFETY: dup2 onto this process's own standard descriptors.
            unsafe { nix::libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    loop {
        nix::unistd::pause();
    }
}

/// The holder recorded in `pid_file`, started (and recorded) when none
/// runs. `kiln` is the path of kiln's executable; a new holder's user
/// namespace maps `map` (the caller's subordinate ids) or, without one,
/// the caller alone.
pub fn ensure_holder(
    pid_file: &Path,
    kiln: &Path,
    map: Option<&super::userns::IdMap>,
) -> Result<Recorded, NetnsError> {
    let lock_path = pid_file.with_extension("lock");
    if let Some(dir) = pid_file.parent() {
        std::fs::create_dir_all(dir).map_err(err("creating the networks directory"))?;
    }
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(err("opening the holder's lock"))?;
    lock.lock().map_err(err("locking the holder's lock"))?;
    if let Some(r) = std::fs::read(pid_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Recorded>(&b).ok())
        .filter(Recorded::alive)
    {
        return Ok(r);
    }
    // Inside the store's user namespace already: a holder started from
    // here would nest another.
    if super::userns::joined() {
        return Err(NetnsError::HolderEnded);
    }
    let mut cmd = Command::new(kiln);
    cmd.arg("__netns-holder")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    super::process::new_session(&mut cmd);
    let mut child = cmd.spawn().map_err(err("starting the network holder"))?;
    let pid = child.id();
    let mut stdout = std::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or(NetnsError::NoPipe("the holder's output"))?,
    );
    let mut stdin = child
        .stdin
        .take()
        .ok_or(NetnsError::NoPipe("the holder's input"))?;
    let mut line = String::new();
    let mut expect = |want: &str, line: &mut String| -> Result<(), NetnsError> {
        line.clear();
        stdout
            .read_line(line)
            .map_err(err("reading the holder's output"))?;
        match line.trim() {
            l if l == want => Ok(()),
            l => Err(NetnsError::Holder(l.to_string())),
        }
    };
    expect("userns", &mut line)?;
    match map {
        Some(map) => map.write(pid),
        None => super::container::map_caller_to_root(pid),
    }
    .map_err(err("mapping the holder's user"))?;
    writeln!(stdin, "mapped").map_err(err("answering the holder"))?;
    expect("ready", &mut line)?;
    // Its exit is reaped by whoever inherits it; this process lets go.
    std::mem::forget(child);
    let r = super::process::record(pid).ok_or(NetnsError::HolderDied)?;
    let tmp = pid_file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&r).unwrap_or_default())
        .map_err(err("recording the holder"))?;
    std::fs::rename(&tmp, pid_file).map_err(err("recording the holder"))?;
    Ok(r)
}

fn ns_file(pid: u32, ns: &'static str) -> Result<std::fs::File, NetnsError> {
    std::fs::File::open(format!("/proc/{pid}/ns/{ns}")).map_err(|source| NetnsError::Namespace {
        ns,
        pid,
        source,
    })
}

/// The holder's user namespace, for a rootless container's init to join
/// before it makes its own namespaces (between fork and exec).
pub fn holder_userns(holder: &Recorded) -> Result<OwnedFd, NetnsError> {
    Ok(OwnedFd::from(ns_file(holder.pid, "user")?))
}

/// Joins the user namespace `userns` (an open /proc/PID/ns/user) and
/// unshares `flags`: the pre-exec step of a rootless container whose
/// namespaces belong to the holder's user namespace. Async-signal-safe.
pub fn join_then_unshare(userns: RawFd, flags: CloneFlags) -> std::io::Result<()> {
    // SAFETY: the descriptor stays open for the duration of the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(userns) };
    setns(fd, CloneFlags::CLONE_NEWUSER).map_err(std::io::Error::from)?;
    unshare(flags).map_err(std::io::Error::from)
}

/// A helper running in the holder's namespaces: `request` is written to
/// its standard input; its standard output is the answer; sockets it makes
/// arrive on the returned stream.
pub struct Helper {
    child: std::process::Child,
    sockets: UnixStream,
}

impl Helper {
    /// Starts `kiln __netns-helper` in the holder's user and network
    /// namespaces and sends it `request` (one JSON line).
    pub fn start(holder: &Recorded, kiln: &Path, request: &str) -> Result<Helper, NetnsError> {
        let user = ns_file(holder.pid, "user")?;
        let net = ns_file(holder.pid, "net")?;
        let (ours, theirs) = UnixStream::pair().map_err(err("socketpair"))?;
        let (u, n, t) = (user.as_raw_fd(), net.as_raw_fd(), theirs.as_raw_fd());
        let joined = super::userns::joined();
        let mut cmd = Command::new(kiln);
        cmd.arg("__netns-helper")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setns and dup2 are async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                let user = std::os::fd::BorrowedFd::borrow_raw(u);
                let net = std::os::fd::BorrowedFd::borrow_raw(n);
                // A kiln joined to the store's namespace is in it already
                // (and setns into one's own user namespace fails).
                if !joined {
                    setns(user, CloneFlags::CLONE_NEWUSER).map_err(std::io::Error::from)?;
                }
                setns(net, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                if nix::libc::dup2(t, HELPER_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(err("starting the network helper"))?;
        drop((user, net, theirs));
        let mut stdin = child
            .stdin
            .take()
            .ok_or(NetnsError::NoPipe("the helper's input"))?;
        writeln!(stdin, "{request}").map_err(err("writing to the network helper"))?;
        drop(stdin);
        Ok(Helper {
            child,
            sockets: ours,
        })
    }

    /// Waits for the answer: the helper's output, or its error.
    pub fn answer(mut self) -> Result<String, NetnsError> {
        let mut out = String::new();
        let mut errors = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut errors);
        }
        let status = self.child.wait().map_err(err("waiting for the helper"))?;
        match status.success() {
            true => Ok(out),
            false => Err(NetnsError::Helper(errors.trim().to_string())),
        }
    }

    /// The next socket the helper passes back.
    pub fn socket(&self) -> Result<OwnedFd, NetnsError> {
        receive_fd(&self.sockets).map_err(err("receiving a socket from the helper"))
    }

    /// Asks a helper that makes sockets on demand for one more.
    pub fn ask(&self) -> Result<OwnedFd, NetnsError> {
        (&self.sockets)
            .write_all(b"s")
            .map_err(err("asking the helper for a socket"))?;
        self.socket()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.sockets.shutdown(std::net::Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Helper({})", self.child.id())
    }
}

/// Sends `fd` over `to` (SCM_RIGHTS).
pub fn send_fd(to: &UnixStream, fd: impl AsFd) -> std::io::Result<()> {
    let fds = [fd.as_fd().as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"f")];
    sendmsg::<()>(to.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`].
pub fn receive_fd(from: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        from.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just gave this process the descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(std::io::Error::other("no descriptor arrived"))
}

/// The helper's end of the socket stream (descriptor [`HELPER_FD`]).
pub fn helper_stream() -> UnixStream {
    // SAFETY: the helper was started with HELPER_FD set to its end.
    unsafe { UnixStream::from_raw_fd(HELPER_FD) }
}
