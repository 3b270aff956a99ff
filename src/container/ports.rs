//! Published ports (`-p [IP:]HOST:CTR[/tcp|/udp]`, `-P`): the container
//! has a network namespace of its own; its monitor listens on the host's
//! address and forwards each connection (each UDP flow: a client address)
//! into the container's namespace, where the socket to the container's
//! 127.0.0.1 is made ([`crate::sandbox::net`]). No bridge, no address, no
//! iptables: a server that listens only on the container's 127.0.0.1 is
//! reached too.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A port's protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The host address listened on (`0.0.0.0` unless given).
    pub host_ip: IpAddr,
    /// The host port.
    pub host_port: u16,
    /// The container's port.
    pub port: u16,
    /// Its protocol.
    #[serde(default)]
    pub proto: Proto,
}

impl Port {
    /// As docker's PORTS column shows it: `127.0.0.1:8080->80/tcp`.
    pub fn display(&self) -> String {
        format!(
            "{}:{}->{}/{}",
            self.host_ip,
            self.host_port,
            self.port,
            self.proto.as_str()
        )
    }
}

fn range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port {text:?}");
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses `-p [IP:]HOST:CTR[/tcp|/udp]` (ranges `8080-8081:80-81`);
/// `CTR` alone takes a free host port.
pub fn parse(text: &str) -> Result<Vec<Port>, String> {
    let (spec, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => {
            return Err(format!(
                "invalid -p {text:?}: the protocol is tcp or udp (sctp is not supported)"
            ));
        }
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("0.0.0.0", "", *c),
        [c, h] => ("0.0.0.0", *h, *c),
        [c, h, ip] => (*ip, *h, *c),
        _ => return Err(format!("invalid -p {text:?}: use [IP:]HOST:CTR[/tcp]")),
    };
    let host_ip: IpAddr = ip
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| format!("invalid -p {text:?}: {ip:?} is not an IP address"))?;
    let (c0, c1) = range(ctr).map_err(|e| format!("invalid -p {text:?}: {e}"))?;
    let hosts: Vec<u16> = match host {
        "" => (c0..=c1).map(|_| 0).collect(),
        h => {
            let (h0, h1) = range(h).map_err(|e| format!("invalid -p {text:?}: {e}"))?;
            if h1 - h0 != c1 - c0 {
                return Err(format!(
                    "invalid -p {text:?}: the host and container ranges differ in length"
                ));
            }
            (h0..=h1).collect()
        }
    };
    Ok((c0..=c1)
        .zip(hosts)
        .map(|(port, host_port)| Port {
            host_ip,
            host_port,
            port,
            proto,
        })
        .collect())
}

/// A port's host side, bound.
enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Why a port cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The host port is taken (docker's words).
    #[error("Bind for {ip}:{port} failed: port is already allocated ({source})")]
    Taken {
        /// The host address.
        ip: std::net::IpAddr,
        /// The host port.
        port: u16,
        /// Why the bind failed.
        source: std::io::Error,
    },
    /// No free port could be found for a port asked as 0.
    #[error("finding a free port: {0}")]
    NoneFree(std::io::Error),
}

fn bind(p: &Port) -> std::io::Result<(Listener, u16)> {
    Ok(match p.proto {
        Proto::Tcp => {
            let l = TcpListener::bind((p.host_ip, p.host_port))?;
            let port = l.local_addr()?.port();
            (Listener::Tcp(l), port)
        }
        Proto::Udp => {
            let l = UdpSocket::bind((p.host_ip, p.host_port))?;
            let port = l.local_addr()?.port();
            (Listener::Udp(l), port)
        }
    })
}

/// Binds every port's host side (a port given as 0 gets a free one, and
/// the port records it): a port in use is an error before the container
/// starts.
fn listen(ports: &mut [Port]) -> Result<Vec<Listener>, PortError> {
    ports
        .iter_mut()
        .map(|p| {
            let (l, port) = bind(p).map_err(|source| PortError::Taken {
                ip: p.host_ip,
                port: p.host_port,
                source,
            })?;
            p.host_port = port;
            Ok(l)
        })
        .collect()
}

/// Copies both ways between the client and the container until either
/// side closes (splice: the bytes stay in the kernel).
fn relay(client: TcpStream, inner: TcpStream) {
    use crate::sandbox::net::splice_copy;
    let (Ok(c2), Ok(i2)) = (client.try_clone(), inner.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = splice_copy(&client, &inner);
        let _ = inner.shutdown(std::net::Shutdown::Write);
    });
    let _ = splice_copy(&i2, &c2);
    let _ = c2.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

/// Accepts on `listener` for ever, forwarding each connection to `port`
/// on the loopback of the container in `dir` while it runs (its init is in
/// its network namespace); refused while it does not.
/// Where a published port's sockets in the container come from: a thread
/// of this process living in the container's namespace (root), or a helper
/// in the network holder's namespaces (rootless).
enum Maker {
    Here(crate::sandbox::net::SocketMaker),
    Helper(Mutex<crate::sandbox::netns::Helper>),
}

impl Maker {
    fn new(c_dir: &std::path::Path, pid: u32) -> Option<Maker> {
        match crate::sandbox::fs::is_root() {
            true => crate::sandbox::net::SocketMaker::new(pid)
                .ok()
                .map(Maker::Here),
            false => crate::network::rootless::socket_helper(&store_root(c_dir), pid)
                .ok()
                .map(|h| Maker::Helper(Mutex::new(h))),
        }
    }

    fn socket(&self) -> Option<std::os::fd::OwnedFd> {
        match self {
            Maker::Here(m) => m.socket().ok(),
            Maker::Helper(h) => h.lock().ok()?.ask().ok(),
        }
    }
}

/// The store root of a container's directory (`ROOT/containers/ID`).
fn store_root(dir: &std::path::Path) -> std::path::PathBuf {
    dir.parent()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// Accepts on `listener` for ever, forwarding each connection to `port`
/// on the loopback of the container in `dir` while it runs; refused while
/// it does not.
fn forward(listener: TcpListener, port: u16, dir: std::path::PathBuf) {
    // The maker of the container's current run: made again when the
    // container was restarted (a new init, a new namespace).
    let mut maker: Option<(crate::sandbox::process::Recorded, Arc<Maker>)> = None;
    let addr = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut warned = false;
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                // Out of descriptors: the connection waits in the backlog;
                // say so once, and try again when relays have ended
                // instead of spinning on the same error.
                if !warned {
                    eprintln!("published port {port}: accepting a connection: {e}");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        warned = false;
        if open.load(std::sync::atomic::Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
            eprintln!(
                "published port {port}: {MAX_TCP_CONNECTIONS} connections are relayed already; closing a new one"
            );
            continue;
        }
        if !maker.as_ref().is_some_and(|(init, _)| init.alive()) {
            let st = super::state::read(&dir);
            maker = st
                .init
                .filter(|i| st.is_running() && i.alive())
                .and_then(|i| Some((i, Arc::new(Maker::new(&dir, i.pid)?))));
        }
        let Some(socket) = maker.as_ref().and_then(|(_, m)| m.socket()) else {
            continue;
        };
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let count = Arc::clone(&open);
        let spawned = std::thread::Builder::new().spawn(move || {
            if let Ok(inner) = crate::sandbox::net::connect(socket, addr) {
                relay(client, inner);
            }
            count.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        if spawned.is_err() {
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The pid of the running init of the container in `dir`: its network
/// namespace is the container's.
fn running_init(dir: &std::path::Path) -> Option<u32> {
    let st = super::state::read(dir);
    st.init
        .filter(|i| st.is_running() && i.alive())
        .map(|i| i.pid)
}

/// TCP connections relayed at once, per published port (each holds four
/// descriptors and two threads): past it a new one is closed with a line
/// in the monitor's log, so one client cannot take every descriptor.
const MAX_TCP_CONNECTIONS: usize = 1024;

/// UDP flows relayed at once, per published port (each holds one
/// descriptor and one thread for up to [`UDP_IDLE`]).
const MAX_UDP_FLOWS: usize = 256;

/// A UDP flow with no answer for this long ends.
const UDP_IDLE: Duration = Duration::from_secs(30);

/// Relays datagrams for ever: each client address is a flow with a
/// socket of its own in the container's namespace, connected to `port` on
/// its 127.0.0.1, whose answers go back to that client; a flow idle for
/// a minute ends.
fn forward_udp(sock: UdpSocket, port: u16, dir: std::path::PathBuf) {
    // One descriptor per flow (its socket in the container, shared by the
    // thread that reads its answers); the host socket is shared by all.
    let sock = Arc::new(sock);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let known = flows.lock().ok().and_then(|f| f.get(&client).cloned());
        let inner = match known {
            Some(s) => s,
            // Each flow is a thread and a socket in the container: a
            // bounded number, as docker-proxy bounds its UDP connections.
            None if flows.lock().map_or(true, |f| f.len() >= MAX_UDP_FLOWS) => continue,
            None => {
                let Some(pid) = running_init(&dir) else {
                    continue;
                };
                let made = match crate::sandbox::fs::is_root() {
                    true => crate::sandbox::net::in_namespace(pid, move || {
                        let s = UdpSocket::bind(("127.0.0.1", 0))?;
                        s.connect(("127.0.0.1", port))?;
                        Ok(s)
                    })
                    .ok(),
                    false => {
                        crate::network::rootless::udp_socket(&store_root(&dir), pid, port).ok()
                    }
                };
                let Some(inner) = made.map(Arc::new) else {
                    continue;
                };
                let _ = inner.set_read_timeout(Some(UDP_IDLE));
                if let Ok(mut f) = flows.lock() {
                    f.insert(client, inner.clone());
                }
                let (all, back, reader) = (flows.clone(), sock.clone(), inner.clone());
                let spawned = std::thread::Builder::new().spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = reader.recv(&mut buf) {
                        let _ = back.send_to(&buf[..n], client);
                    }
                    if let Ok(mut f) = all.lock() {
                        f.remove(&client);
                    }
                });
                if spawned.is_err()
                    && let Ok(mut f) = flows.lock()
                {
                    f.remove(&client);
                    continue;
                }
                inner
            }
        };
        let _ = inner.send(&buf[..n]);
    }
}

/// Publishes the ports of `c`: binds each (a port in use is an error now)
/// and forwards from threads that live as long as this process (the
/// monitor, or a foreground `kiln run`).
pub fn publish(c: &super::Container) -> Result<(), PortError> {
    let mut ports = c.record.ports.clone();
    for (listener, p) in listen(&mut ports)?.into_iter().zip(&ports) {
        let (port, dir) = (p.port, c.dir.clone());
        match listener {
            Listener::Tcp(l) => std::thread::spawn(move || forward(l, port, dir)),
            Listener::Udp(s) => std::thread::spawn(move || forward_udp(s, port, dir)),
        };
    }
    Ok(())
}

/// Gives each port asked as 0 a free host port now, so the record names
/// it (`kiln port`, `ps`).
pub fn choose_free(ports: &mut [Port]) -> Result<(), PortError> {
    for p in ports.iter_mut().filter(|p| p.host_port == 0) {
        let (_, port) = bind(p).map_err(PortError::NoneFree)?;
        p.host_port = port;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_port_forms() {
        let p = parse("127.0.0.1:8080:80").unwrap();
        assert_eq!(p[0].display(), "127.0.0.1:8080->80/tcp");
        assert_eq!(
            parse("8080:80/tcp").unwrap()[0].host_ip.to_string(),
            "0.0.0.0"
        );
        assert_eq!(parse("80").unwrap()[0].host_port, 0);
        let r = parse("127.0.0.1:9000-9001:80-81").unwrap();
        assert_eq!((r.len(), r[1].host_port, r[1].port), (2, 9001, 81));
        let u = parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(
            (u[0].proto, u[0].display().as_str()),
            (Proto::Udp, "127.0.0.1:5353->53/udp")
        );
        assert!(parse("53:53/sctp").unwrap_err().contains("tcp or udp"));
        assert!(parse("9000-9002:80-81").unwrap_err().contains("differ"));
        assert!(parse("x:80:80").unwrap_err().contains("not an IP"));
    }
}
