//! Published ports (`-p [IP:]HOST:CTR[/tcp]`, `-P`): the container has a
//! network namespace of its own (loopback only); its monitor listens on
//! the host's address and forwards each connection into the container's
//! namespace, where the connecting socket is made ([`crate::sandbox::net`]).
//! No bridge, no address, no iptables: a server that listens only on the
//! container's 127.0.0.1 is reached too.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};

/// One published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The host address listened on (`0.0.0.0` unless given).
    pub host_ip: IpAddr,
    /// The host port.
    pub host_port: u16,
    /// The container's port.
    pub port: u16,
}

impl Port {
    /// As docker's PORTS column shows it: `127.0.0.1:8080->80/tcp`.
    pub fn display(&self) -> String {
        format!("{}:{}->{}/tcp", self.host_ip, self.host_port, self.port)
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

/// Parses `-p [IP:]HOST:CTR[/tcp]` (ranges `8080-8081:80-81`); `CTR` alone
/// takes a free host port.
pub fn parse(text: &str) -> Result<Vec<Port>, String> {
    let (spec, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    if proto != "tcp" {
        return Err(format!(
            "invalid -p {text:?}: kiln publishes tcp ports (udp is not done yet)"
        ));
    }
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
        })
        .collect())
}

/// Binds every port's host side (a port given as 0 gets a free one, and
/// the port records it): a port in use is an error before the container
/// starts.
pub fn listen(ports: &mut [Port]) -> Result<Vec<TcpListener>, String> {
    ports
        .iter_mut()
        .map(|p| {
            let l = TcpListener::bind((p.host_ip, p.host_port)).map_err(|e| {
                format!(
                    "Bind for {}:{} failed: port is already allocated ({e})",
                    p.host_ip, p.host_port
                )
            })?;
            p.host_port = l.local_addr().map_err(|e| e.to_string())?.port();
            Ok(l)
        })
        .collect()
}

/// Copies both ways between the client and the container until either
/// side closes.
fn relay(client: TcpStream, inner: TcpStream) {
    let (Ok(mut c2), Ok(mut i2)) = (client.try_clone(), inner.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut client = client;
        let mut inner = inner;
        let _ = std::io::copy(&mut client, &mut inner);
        let _ = inner.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut i2, &mut c2);
    let _ = c2.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

/// Accepts on `listener` for ever, forwarding each connection to `port`
/// on the loopback of the container in `dir` while it runs (its init is in
/// its network namespace); refused while it does not.
fn forward(listener: TcpListener, port: u16, dir: std::path::PathBuf) {
    for client in listener.incoming().flatten() {
        let st = super::state::read(&dir);
        let Some(init) = st.init.filter(|i| st.is_running() && i.alive()) else {
            continue;
        };
        std::thread::spawn(move || {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if let Ok(inner) = crate::sandbox::net::connect_in(init.pid, addr) {
                relay(client, inner);
            }
        });
    }
}

/// Publishes the ports of `c`: binds each (a port in use is an error now)
/// and forwards from threads that live as long as this process (the
/// monitor, or a foreground `kiln run`).
pub fn publish(c: &super::Container) -> Result<(), String> {
    let mut ports = c.record.ports.clone();
    for (listener, p) in listen(&mut ports)?.into_iter().zip(&ports) {
        let (port, dir) = (p.port, c.dir.clone());
        std::thread::spawn(move || forward(listener, port, dir));
    }
    Ok(())
}

/// Gives each port asked as 0 a free host port now, so the record names
/// it (`kiln port`, `ps`).
pub fn choose_free(ports: &mut [Port]) -> Result<(), String> {
    for p in ports.iter_mut().filter(|p| p.host_port == 0) {
        let l =
            TcpListener::bind((p.host_ip, 0)).map_err(|e| format!("finding a free port: {e}"))?;
        p.host_port = l.local_addr().map_err(|e| e.to_string())?.port();
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
        assert!(parse("53:53/udp").unwrap_err().contains("udp"));
        assert!(parse("9000-9002:80-81").unwrap_err().contains("differ"));
        assert!(parse("x:80:80").unwrap_err().contains("not an IP"));
    }
}
