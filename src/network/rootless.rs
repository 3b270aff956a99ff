//! Rootless networks: what needs the holder's namespaces is asked of a
//! helper process started in them ([`crate::sandbox::netns`]): joining and
//! leaving a network, removing and pruning (bridges live in the holder's
//! network namespace), and the sockets a monitor needs in a container's
//! namespace (its resolver's, a published port's). Root does the same
//! work in its own process.

use super::{Attachment, Endpoint, Network, NetworkError};
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
pub fn holder(root: &Path) -> Result<Recorded, String> {
    holder_mapping(root, None)
}

/// The holder of the store at `root`; one started here maps `map` (the
/// caller's subordinate ids) or the caller alone.
pub fn holder_mapping(
    root: &Path,
    map: Option<&crate::sandbox::userns::IdMap>,
) -> Result<Recorded, String> {
    let holder =
        crate::store::layout::network_file(root, ".holder.json").map_err(|e| e.to_string())?;
    netns::ensure_holder(&holder, &kiln(), map)
}

/// The holder's user namespace, for a rootless container to make its
/// namespaces in.
pub fn userns(root: &Path) -> Result<OwnedFd, String> {
    netns::holder_userns(&holder(root)?)
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
pub fn ensure_pasta(root: &Path) -> Result<(), String> {
    let holder = holder(root)?;
    // One pasta per holder, even when two joins ask at once.
    let lock_path = crate::store::layout::networks(root).join(".pasta.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("opening {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
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
        .map_err(|e| format!("running pasta: {e}"))?;
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
        return Err(format!(
            "pasta could not connect kiln's network namespace: {said}{hint}"
        ));
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or("pasta started but wrote no pid")?;
    let p = crate::sandbox::process::record(pid).ok_or("pasta exited")?;
    std::fs::write(
        &record,
        serde_json::to_vec(&(p, holder)).unwrap_or_default(),
    )
    .map_err(|e| format!("recording pasta: {e}"))
}

fn start(root: &Path, request: &Request) -> Result<Helper, String> {
    let line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    Helper::start(&holder(root)?, &kiln(), &line)
}

/// Runs `request` in a helper; its answer.
pub fn call(root: &Path, request: &Request) -> Result<String, NetworkError> {
    start(root, request)
        .and_then(Helper::answer)
        .map_err(NetworkError::Link)
}

/// A helper that makes TCP sockets in a container's namespace on demand.
pub fn socket_helper(root: &Path, pid: u32) -> Result<Helper, String> {
    start(root, &Request::Sockets { pid })
}

/// The resolver's UDP and TCP sockets in the namespace of `pid`.
pub fn resolver_sockets(root: &Path, pid: u32) -> Result<(UdpSocket, TcpListener), String> {
    let h = start(root, &Request::Resolver { pid })?;
    let udp = h.socket()?;
    let tcp = h.socket()?;
    h.answer()?;
    Ok((UdpSocket::from(udp), TcpListener::from(tcp)))
}

/// A UDP socket of the namespace of `pid`, connected to its `port`.
pub fn udp_socket(root: &Path, pid: u32, port: u16) -> Result<UdpSocket, String> {
    let h = start(root, &Request::Udp { pid, port })?;
    let s = h.socket()?;
    h.answer()?;
    Ok(UdpSocket::from(s))
}

fn find(root: &Path, name: &str) -> Result<Network, String> {
    super::find(root, name).map_err(|e| e.to_string())
}

fn handle(request: Request) -> Result<String, String> {
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
            let e: Endpoint = find(&root, &network)?
                .join_here(
                    &root,
                    (&container.0, &container.1),
                    &attachment,
                    pid,
                    (&inner_if.0, inner_if.1),
                )
                .map_err(|e| e.to_string())?;
            serde_json::to_string(&e).map_err(|e| e.to_string())
        }
        Request::Leave {
            root,
            network,
            container,
        } => find(&root, &network)?
            .leave_here(&root, &container)
            .map(|()| String::new())
            .map_err(|e| e.to_string()),
        Request::Remove { root, network } => super::remove_here(&root, &find(&root, &network)?)
            .map(|()| String::new())
            .map_err(|e| e.to_string()),
        Request::Prune { root } => super::prune_here(&root)
            .map(|names| names.join("\n"))
            .map_err(|e| e.to_string()),
        Request::Detach { pid, name } => {
            crate::sandbox::netlink::detach(pid, &name).map(|()| String::new())
        }
        Request::Resolver { pid } => {
            crate::sandbox::netlink::loopback_up(pid)?;
            let (udp, tcp) = crate::sandbox::net::in_namespace(pid, || {
                let udp = UdpSocket::bind((super::dns::ADDRESS, 53))?;
                let tcp = TcpListener::bind((super::dns::ADDRESS, 53))?;
                Ok((udp, tcp))
            })
            .map_err(|e| format!("binding the resolver's sockets: {e}"))?;
            netns::send_fd(&stream, &udp).map_err(|e| e.to_string())?;
            netns::send_fd(&stream, &tcp).map_err(|e| e.to_string())?;
            Ok(String::new())
        }
        Request::Udp { pid, port } => {
            let s = crate::sandbox::net::in_namespace(pid, move || {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                s.connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))?;
                Ok(s)
            })
            .map_err(|e| format!("making a socket in the container: {e}"))?;
            netns::send_fd(&stream, &s).map_err(|e| e.to_string())?;
            Ok(String::new())
        }
        Request::Sockets { pid } => {
            let maker = crate::sandbox::net::SocketMaker::new(pid)
                .map_err(|e| format!("entering the container's namespace: {e}"))?;
            let mut byte = [0u8; 1];
            let mut reader = &stream;
            while reader.read(&mut byte).is_ok_and(|n| n == 1) {
                let fd = maker.socket().map_err(|e| e.to_string())?;
                netns::send_fd(&stream, &fd).map_err(|e| e.to_string())?;
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
        .map_err(|e| format!("bad request: {e}"))
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
