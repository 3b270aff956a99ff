//! A container on user networks (`--network NAME`): at each start, once
//! its namespaces exist, it joins each network (address, veth, endpoint)
//! and gets its resolver; when the run ends, it leaves them.

use super::Container;
use crate::network::{self, Attachment, Network, dns};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What one run of a container holds on its networks; dropped when the
/// run ends, it stops the resolver and leaves the networks.
#[derive(Debug)]
pub struct Joined {
    root: PathBuf,
    id: String,
    networks: Vec<Network>,
    resolver: Option<dns::Server>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        // The resolver first: its sockets hold the namespace.
        self.resolver = None;
        leave_all(&self.root, &self.id, &self.networks);
    }
}

/// Takes container `id` off `known` and every other network it has an
/// endpoint on (one `network connect` added while it ran).
fn leave_all(root: &Path, id: &str, known: &[Network]) {
    let mut nets = known.to_vec();
    for n in network::list(root).unwrap_or_default() {
        if n.endpoint(root, id).is_some() && !nets.iter().any(|m| m.id == n.id) {
            nets.push(n);
        }
    }
    for n in &nets {
        let _ = n.leave(root, id);
    }
}

/// Takes a container that no longer runs off its networks: what its
/// killed monitor could not do (`kill`, `rm -f`).
pub fn release(c: &Container) {
    leave_all(&store_root(c), &c.record.id, &[]);
}

/// The store root of a container's directory (`ROOT/containers/ID`).
fn store_root(c: &Container) -> PathBuf {
    c.dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Rootless: the user namespace `c`'s namespaces are made in when it is
/// on a network or publishes ports (the network holder's, started if
/// needed), so that the holder's helper can reach them.
pub fn userns(c: &Container) -> Result<Option<std::os::fd::OwnedFd>, network::NetworkError> {
    // Joined to the holder's namespace (subordinate ids), every container
    // is made in it already.
    if crate::sandbox::fs::is_root()
        || crate::sandbox::userns::joined()
        || (c.record.networks.is_empty() && c.record.ports.is_empty())
    {
        return Ok(None);
    }
    network::rootless::userns(&store_root(c)).map(Some)
}

/// `attachments` with each network by its name (a network given by an id
/// prefix is recorded by name); an error for a network that does not exist.
pub fn check(
    root: &Path,
    attachments: &[Attachment],
) -> Result<Vec<Attachment>, network::NetworkError> {
    attachments
        .iter()
        .map(|a| {
            Ok(Attachment {
                network: network::find(root, &a.network)?.name,
                ..a.clone()
            })
        })
        .collect()
}

/// Joins `c`'s networks as the container whose init is `pid`: interfaces
/// `eth0`, `eth1`… in the order given, /etc/hosts naming its first
/// address, and the resolver on 127.0.0.11.
fn join(c: &Container, pid: u32) -> Result<Joined, network::NetworkError> {
    use network::NetworkError;
    let resolver_err = |source| NetworkError::Socket {
        what: "starting the resolver",
        source,
    };
    let root = store_root(c);
    let mut joined = Joined {
        root: root.clone(),
        id: c.record.id.clone(),
        networks: Vec::new(),
        resolver: None,
    };
    // Loopback up before the resolver binds there (root: here; rootless:
    // the helper that makes the resolver's sockets brings it up).
    if crate::sandbox::fs::is_root() {
        crate::sandbox::netlink::loopback_up(pid)?;
    }
    let mut first = None;
    for (i, a) in c.record.networks.iter().enumerate() {
        let net = network::find(&root, &a.network)?;
        let e = net.join(
            &root,
            (&c.record.id, &c.record.name),
            a,
            pid,
            (&format!("eth{i}"), i == 0),
        )?;
        first.get_or_insert(e.ip);
        joined.networks.push(net);
    }
    if let Some(ip) = first {
        hosts_name_address(&c.record.spec.etc_dir, &c.record.spec.hostname, ip).map_err(
            |source| NetworkError::Io {
                action: "writing",
                path: c.record.spec.etc_dir.join("hosts"),
                source,
            },
        )?;
    }
    let upstream = c
        .record
        .dns_upstream
        .iter()
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect();
    let sockets = match crate::sandbox::fs::is_root() {
        true => dns::sockets(pid).map_err(resolver_err)?,
        false => network::rootless::resolver_sockets(&root, pid)?,
    };
    let resolver = dns::Resolver::new(root, c.record.id.clone(), upstream);
    joined.resolver = Some(dns::serve(resolver, sockets).map_err(resolver_err)?);
    Ok(joined)
}

/// The step that joins `c`'s networks before its process starts; what it
/// joined is kept in `slot` for the length of the run. None when `c` is
/// on no user network.
pub fn prestart(
    c: &Container,
    slot: &Arc<Mutex<Option<Joined>>>,
) -> Option<crate::sandbox::Prestart> {
    if c.record.networks.is_empty() {
        return None;
    }
    let (mut c, slot) = (c.clone(), slot.clone());
    Some(crate::sandbox::Prestart(Box::new(move |pid| {
        // The networks as they are now: `network connect` may have
        // changed them since the watcher read the record.
        if let Some(now) = super::load(&c.dir) {
            c.record.networks = now.record.networks;
        }
        let joined = join(&c, pid).map_err(Box::new)?;
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(joined);
        Ok(())
    })))
}

/// Rewrites the line of /etc/hosts that names the container's hostname
/// with its address on its first network, as docker's does.
fn hosts_name_address(etc: &Path, hostname: &str, ip: std::net::Ipv4Addr) -> std::io::Result<()> {
    use std::io::Read;
    // The container can write this file: read no more than a hosts file
    // needs, whatever its bytes.
    let path = etc.join("hosts");
    let mut bytes = Vec::new();
    std::fs::File::open(&path)?
        .take(64 * 1024)
        .read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let (a, n) = (f.next().unwrap_or(""), f.next());
            if !done
                && n == Some(hostname)
                && f.next().is_none()
                && a.parse::<std::net::Ipv4Addr>().is_ok()
            {
                done = true;
                format!("{ip}\t{hostname}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n")
}

/// The resolv.conf of a container on user networks: kiln's resolver, and
/// the host's search domains.
pub fn resolv_conf(host: &str) -> String {
    let mut text = format!("nameserver {}\n", dns::ADDRESS);
    for l in host.lines() {
        if l.starts_with("search ") {
            text.push_str(l);
            text.push('\n');
        }
    }
    text.push_str("options ndots:0\n");
    text
}

/// `network connect`: a stopped container joins at its next start; a
/// running one on a user network joins now (its resolver already runs).
pub fn connect(c: &mut Container, a: Attachment) -> Result<(), super::ContainerError> {
    use super::ContainerError::Invalid;
    let root = store_root(c);
    let net = network::find(&root, &a.network)?;
    if c.record.spec.network == crate::sandbox::Network::Host {
        return Err(Invalid(
            "container cannot be disconnected from host network or connected to host network"
                .into(),
        ));
    }
    if c.record.networks.iter().any(|n| n.network == net.name) {
        return Err(Invalid(format!(
            "endpoint with name {} already exists in network {}",
            c.record.name, net.name
        )));
    }
    let st = c.state();
    if let Some(init) = st.init.filter(|i| st.is_running() && i.alive()) {
        // Root reaches any namespace; a rootless container's is in the
        // network holder's user namespace only when it started on a
        // network (or with ports).
        if c.record.networks.is_empty()
            && c.record.ports.is_empty()
            && !crate::sandbox::fs::is_root()
            && !crate::sandbox::userns::joined()
        {
            return Err(Invalid(format!(
                "container {} started on no network, so kiln's network helper cannot reach it: stop it, connect it, and start it again",
                c.record.name
            )));
        }
        // Started on no user network, it has no resolver of kiln's: it
        // joins with its address and route, and names on the network
        // resolve from its next start (its resolv.conf is written then).
        // The lowest ethN none of its live endpoints has.
        let used: Vec<String> = settings(c)
            .into_iter()
            .filter_map(|(_, _, e)| e.map(|e| e.inner_if))
            .collect();
        let name = (0..)
            .map(|n| format!("eth{n}"))
            .find(|n| !used.contains(n))
            .unwrap_or_default();
        // The init runs in the container's network namespace.
        // Its first network gives it its default route, as at a start.
        let first = used.is_empty();
        net.join(
            &root,
            (&c.record.id, &c.record.name),
            &a,
            init.pid,
            (&name, first),
        )?;
    }
    network_event(&root, "connect", &net, c);
    let attachment = Attachment {
        network: net.name,
        ..a
    };
    *c = c.modify_record(|r| {
        r.networks.push(attachment);
        Ok(())
    })?;
    Ok(())
}

/// After a rename: the endpoints of the networks it is on carry the new
/// name (a stopped container's have none; its next start makes them).
pub fn renamed(c: &Container) {
    let root = store_root(c);
    for a in &c.record.networks {
        if let Ok(net) = network::find(&root, &a.network) {
            let _ = net.rename_endpoint(&root, &c.record.id, &c.record.name);
        }
    }
}

/// `network disconnect`: off the network now if it runs, and at its
/// next starts.
pub fn disconnect(c: &mut Container, name: &str) -> Result<(), super::ContainerError> {
    use super::ContainerError::Invalid;
    let root = store_root(c);
    let net = network::find(&root, name)?;
    if !c.record.networks.iter().any(|n| n.network == net.name) {
        return Err(Invalid(format!(
            "container {} is not connected to network {}",
            c.record.name, net.name
        )));
    }
    if let Some(e) = net.endpoint(&root, &c.record.id) {
        if e.live() {
            match crate::sandbox::fs::is_root() {
                true => crate::sandbox::netlink::detach(e.init.pid, &e.inner_if)
                    .map_err(network::NetworkError::from)?,
                false => {
                    let request = network::rootless::Request::Detach {
                        pid: e.init.pid,
                        name: e.inner_if.clone(),
                    };
                    network::rootless::call(&root, &request)?;
                }
            }
        }
        net.leave(&root, &c.record.id)?;
    }
    network_event(&root, "disconnect", &net, c);
    *c = c.modify_record(|r| {
        r.networks.retain(|n| n.network != net.name);
        Ok(())
    })?;
    Ok(())
}

/// Records a network's `connect` or `disconnect` of `c`, as docker's
/// events say them (the network the actor, the container an attribute).
fn network_event(root: &Path, action: &str, net: &Network, c: &Container) {
    crate::events::record(
        root,
        crate::events::Kind::Network,
        action,
        &net.id,
        [
            ("container".to_string(), c.record.id.clone()),
            ("name".to_string(), net.name.clone()),
            ("type".to_string(), "bridge".to_string()),
        ],
    );
}

/// Each network `c` is attached to, with its endpoint while it runs
/// (`inspect`'s NetworkSettings).
pub fn settings(c: &Container) -> Vec<(Attachment, Option<Network>, Option<network::Endpoint>)> {
    let root = store_root(c);
    c.record
        .networks
        .iter()
        .map(|a| {
            let net = network::find(&root, &a.network).ok();
            let e = net
                .as_ref()
                .and_then(|n| n.endpoint(&root, &c.record.id))
                .filter(network::Endpoint::live);
            (a.clone(), net, e)
        })
        .collect()
}
