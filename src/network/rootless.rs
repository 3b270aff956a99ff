//! Rootless networks: what needs the holder's namespaces is asked of a
//! helper process started in them ([`crate::sandbox::netns`]): joining and
//! leaving a network, removing and pruning (bridges live in the holder's
//! network namespace), and the sockets a monitor needs in a container's
//! namespace (its resolver's, a published port's). Root does the same
//! work in its own process.

use super::{Attachment, Endpoint, NetworkError};
use crate::sandbox::netns::{self, Helper};
use crate::sandbox::process::Recorded;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What a helper is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// [`Network::join`].
    Join {
        /// The store root.
        root: PathBuf,
        /// The network's name.
        network: String,
        /// The container's id and name.
        container: (String, String),
        /// How it joins (boxed: the largest of the requests by far).
        attachment: Box<Attachment>,
        /// Its init.
        pid: u32,
        /// Its interface, and whether it gets the default route.
        inner_if: (String, bool),
    },
    /// [`Network::leave`].
    Leave {
        /// The store root.
        root: PathBuf,
        /// The network's name.
        network: String,
        /// The container's id.
        container: String,
    },
    /// [`super::remove`].
    Remove {
        /// The store root.
        root: PathBuf,
        /// The network's name.
        network: String,
    },
    /// [`super::prune`].
    Prune {
        /// The store root.
        root: PathBuf,
    },
    /// Deletes interface `name` in the namespace of `pid`.
    Detach {
        /// The container's init.
        pid: u32,
        /// The interface.
        name: String,
    },
    /// Brings up loopback in the namespace of `pid`, then passes a UDP and
    /// a TCP socket bound to the resolver's address there.
    Resolver {
        /// The container's init.
        pid: u32,
    },
    /// Passes a TCP socket of the namespace of `pid` for each byte read.
    Sockets {
        /// The container's init.
        pid: u32,
    },
    /// Passes a UDP socket of the namespace of `pid`, connected to `port`
    /// on its loopback.
    Udp {
        /// The container's init.
        pid: u32,
        /// The container's port.
        port: u16,
    },
}

fn kiln() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

/// The holder of the store at `root`, started when none runs.
pub fn holder(root: &Path) -> Result<Recorded, NetworkError> {
    holder_mapping(root, None)
}

/// The holder of the store at `root`; one started here maps `map` (the
/// caller's subordinate ids) or the caller alone.
pub fn holder_mapping(
    root: &Path,
    map: Option<&crate::sandbox::userns::IdMap>,
) -> Result<Recorded, NetworkError> {
    let holder = crate::store::layout::networks(root).join(".holder.json");
    Ok(netns::ensure_holder(&holder, &kiln(), map)?)
}

/// The holder's user namespace, for a rootless container to make its
/// namespaces in.
pub fn userns(root: &Path) -> Result<OwnedFd, NetworkError> {
    Ok(netns::holder_userns(&holder(root)?)?)
}

/// True when `pasta` (from passt) can be run.
pub fn pasta_available() -> bool {
    std::process::Command::new("pasta")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Attaches pasta to the holder's network namespace unless it runs: a tap
/// interface there with the host's address and default route, through
/// which pasta carries what leaves (the way out of `--nat` networks, whose
/// masquerade rule the helper adds in the holder's namespace). Gateway
/// mapping is off: the gateway's address is the gateway, not this host.
pub fn ensure_pasta(root: &Path) -> Result<(), NetworkError> {
    let holder = holder(root)?;
    // One pasta per holder, even when two joins ask at once.
    let lock_path = crate::store::layout::networks(root).join(".pasta.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(super::io_err("opening", &lock_path))?;
    lock.lock().map_err(super::io_err("locking", &lock_path))?;
    let record = crate::store::layout::networks(root).join(".pasta.json");
    let running = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<(Recorded, Recorded)>(&b).ok())
        .is_some_and(|(p, h)| p.alive() && h == holder);
    if running {
        return Ok(());
    }
    let pid_file = crate::store::layout::networks(root).join(".pasta.pid");
    let _ = std::fs::remove_file(&pid_file);
    let mut pasta = std::process::Command::new("pasta");
    pasta
        .args(["--config-net", "--no-map-gw", "--quiet"])
        .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
        // Started by root (of the store's user namespace, subordinate ids),
        // pasta would become nobody, who cannot open the holder's
        // namespaces: it stays who started it.
        .arg("--runas")
        .arg(format!(
            "{}:{}",
            crate::sandbox::fs::euid(),
            crate::sandbox::fs::egid()
        ))
        .arg("-P")
        .arg(&pid_file);
    // In the holder's user namespace already (subordinate ids): only its
    // network namespace is joined.
    match crate::sandbox::userns::joined() {
        true => pasta
            .arg("--netns")
            .arg(format!("/proc/{}/ns/net", holder.pid))
            .arg("--netns-only"),
        false => pasta.arg(holder.pid.to_string()),
    };
    let out = pasta
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| NetworkError::Socket {
            what: "running pasta",
            source,
        })?;
    let said: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("Failed to send"))
        .collect::<Vec<_>>()
        .join("; ");
    if !out.status.success() {
        let hint = match said.contains("tun") {
            true => {
                " (pasta opens /dev/net/tun, which must be open to users: mode 0666, as Debian's udev makes it)"
            }
            false => "",
        };
        return Err(NetworkError::Pasta { said, hint });
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or(NetworkError::PastaGone("started but wrote no pid"))?;
    let p = crate::sandbox::process::record(pid).ok_or(NetworkError::PastaGone("exited"))?;
    std::fs::write(
        &record,
        serde_json::to_vec(&(p, holder)).unwrap_or_default(),
    )
    .map_err(super::io_err("recording pasta in", &record))
}

fn start(root: &Path, request: &Request) -> Result<Helper, NetworkError> {
    let line = serde_json::to_string(request).map_err(|source| NetworkError::Helper {
        what: "request",
        source,
    })?;
    Ok(Helper::start(&holder(root)?, &kiln(), &line)?)
}

/// Runs `request` in a helper; its answer.
pub fn call(root: &Path, request: &Request) -> Result<String, NetworkError> {
    Ok(start(root, request)?.answer()?)
}

/// A helper that makes TCP sockets in a container's namespace on demand.
pub fn socket_helper(root: &Path, pid: u32) -> Result<Helper, NetworkError> {
    start(root, &Request::Sockets { pid })
}

/// The resolver's UDP and TCP sockets in the namespace of `pid`.
pub fn resolver_sockets(root: &Path, pid: u32) -> Result<(UdpSocket, TcpListener), NetworkError> {
    let h = start(root, &Request::Resolver { pid })?;
    let udp = h.socket()?;
    let tcp = h.socket()?;
    h.answer()?;
    Ok((UdpSocket::from(udp), TcpListener::from(tcp)))
}

/// A UDP socket of the namespace of `pid`, connected to its `port`.
pub fn udp_socket(root: &Path, pid: u32, port: u16) -> Result<UdpSocket, NetworkError> {
    let h = start(root, &Request::Udp { pid, port })?;
    let s = h.socket()?;
    h.answer()?;
    Ok(UdpSocket::from(s))
}

/// A failed system call on the way to a socket.
fn socket_err(what: &'static str) -> impl FnOnce(std::io::Error) -> NetworkError {
    move |source| NetworkError::Socket { what, source }
}

fn handle(request: Request) -> Result<String, NetworkError> {
    use super::find;
    let stream = netns::helper_stream();
    match request {
        Request::Join {
            root,
            network,
            container,
            attachment,
            pid,
            inner_if,
        } => {
            let e: Endpoint = find(&root, &network)?.join_here(
                &root,
                (&container.0, &container.1),
                &attachment,
                pid,
                (&inner_if.0, inner_if.1),
            )?;
            serde_json::to_string(&e).map_err(|source| NetworkError::Helper {
                what: "answer",
                source,
            })
        }
        Request::Leave {
            root,
            network,
            container,
        } => find(&root, &network)?
            .leave_here(&root, &container)
            .map(|()| String::new()),
        Request::Remove { root, network } => {
            super::remove_here(&root, &find(&root, &network)?).map(|()| String::new())
        }
        Request::Prune { root } => super::prune_here(&root).map(|names| names.join("\n")),
        Request::Detach { pid, name } => {
            crate::sandbox::netlink::detach(pid, &name)?;
            Ok(String::new())
        }
        Request::Resolver { pid } => {
            crate::sandbox::netlink::loopback_up(pid)?;
            let (udp, tcp) = crate::sandbox::net::in_namespace(pid, || {
                let udp = UdpSocket::bind((super::dns::ADDRESS, 53))?;
                let tcp = TcpListener::bind((super::dns::ADDRESS, 53))?;
                Ok((udp, tcp))
            })
            .map_err(socket_err("binding the resolver's sockets"))?;
            netns::send_fd(&stream, &udp).map_err(socket_err("passing a socket"))?;
            netns::send_fd(&stream, &tcp).map_err(socket_err("passing a socket"))?;
            Ok(String::new())
        }
        Request::Udp { pid, port } => {
            let s = crate::sandbox::net::in_namespace(pid, move || {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                s.connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))?;
                Ok(s)
            })
            .map_err(socket_err("making a socket in the container"))?;
            netns::send_fd(&stream, &s).map_err(socket_err("passing a socket"))?;
            Ok(String::new())
        }
        Request::Sockets { pid } => {
            let maker = crate::sandbox::net::SocketMaker::new(pid)
                .map_err(socket_err("entering the container's namespace"))?;
            let mut byte = [0u8; 1];
            let mut reader = &stream;
            while reader.read(&mut byte).is_ok_and(|n| n == 1) {
                let fd = maker
                    .socket()
                    .map_err(socket_err("making a socket in the container"))?;
                netns::send_fd(&stream, &fd).map_err(socket_err("passing a socket"))?;
            }
            Ok(String::new())
        }
    }
}

static IN_HELPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True in a helper: this process works in kiln's per-user namespace.
pub fn in_helper() -> bool {
    IN_HELPER.load(std::sync::atomic::Ordering::Relaxed)
}

/// `kiln __netns-helper`: one request on standard input, done in the
/// holder's namespaces; the answer on standard output, an error on
/// standard error (exit 1).
pub fn helper_main() -> i32 {
    IN_HELPER.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return 1;
    }
    let done = serde_json::from_str::<Request>(&line)
        .map_err(|source| NetworkError::Helper {
            what: "request",
            source,
        })
        .and_then(handle);
    match done {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
