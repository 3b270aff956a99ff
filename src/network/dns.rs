//! The resolver of a container on user networks: 127.0.0.11:53 (UDP and
//! TCP) inside the container's network namespace, served by the process
//! that watches the container (its monitor, or a foreground `kiln run`),
//! so no daemon is needed.
//!
//! It answers A queries for the names on the container's networks: other
//! containers' names, their ids (12 digits or all), their aliases, and
//! each of these as `NAME.NETWORK`. A name several running containers
//! share answers with all their addresses, rotated by one on every query
//! (true round robin), with a short TTL so clients ask again. The
//! endpoints are read from the store on each query: a container that
//! stops leaves the answers at once. Other names go to the host's
//! resolvers, except on internal networks.

use super::{Endpoint, Network};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the resolver listens inside the container, as docker's does.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Seconds a container's address may be cached: short, so a stopped
/// backend leaves the clients' answers quickly and round robin goes on.
const TTL: u32 = 5;

/// Answers one container's queries.
#[derive(Debug)]
pub struct Resolver {
    root: PathBuf,
    container: String,
    upstream: Vec<SocketAddr>,
    turns: Mutex<HashMap<String, usize>>,
    view: Mutex<Option<(std::time::Instant, View)>>,
}

/// The networks a container is on, each with its running endpoints.
type View = Arc<Vec<(Network, Vec<Endpoint>)>>;

/// How long a read of the endpoints answers for (a stopped container
/// leaves the answers within it).
const VIEW_FOR: Duration = Duration::from_millis(100);

/// The nameservers of a resolv.conf's text.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

impl Resolver {
    /// The resolver of container `container` in the store at `root`;
    /// `upstream` answers other names.
    pub fn new(root: PathBuf, container: String, upstream: Vec<SocketAddr>) -> Resolver {
        Resolver {
            root,
            container,
            upstream,
            turns: Mutex::new(HashMap::new()),
            view: Mutex::new(None),
        }
    }

    /// The networks this container is on and their running endpoints,
    /// read at most every [`VIEW_FOR`]: a container querying in a loop
    /// costs its monitor no more than ten reads of the store a second.
    fn view(&self) -> View {
        let mut cache = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, view)) = cache.as_ref()
            && at.elapsed() < VIEW_FOR
        {
            return view.clone();
        }
        let view: View = Arc::new(
            self.networks()
                .into_iter()
                .map(|n| {
                    let e = n.endpoints(&self.root);
                    (n, e)
                })
                .collect(),
        );
        *cache = Some((std::time::Instant::now(), view.clone()));
        view
    }

    /// The networks this container is on now (it has an endpoint there).
    fn networks(&self) -> Vec<Network> {
        super::list(&self.root)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                n.dir(&self.root)
                    .join("endpoints")
                    .join(format!("{}.json", self.container))
                    .exists()
            })
            .collect()
    }

    /// The addresses `name` has on the container's networks, by address,
    /// and whether every network is internal.
    pub fn lookup(&self, name: &str) -> (Vec<Ipv4Addr>, bool) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let view = self.view();
        // On no network any more (disconnected from its last): nothing
        // is forwarded either.
        let internal = view.iter().all(|(n, _)| n.internal);
        let mut found = Vec::new();
        for (net, endpoints) in view.iter() {
            // A link of this container's on this network names another
            // container by an alias only this one sees.
            let own = endpoints.iter().find(|e| e.container == self.container);
            let linked = own
                .and_then(|o| super::link_target(&o.links, &name))
                .map(str::to_ascii_lowercase);
            for e in endpoints {
                let hit = matches(e, &net.name, &name)
                    || linked.as_deref().is_some_and(|t| matches(e, &net.name, t));
                if hit && !found.contains(&e.ip) {
                    found.push(e.ip);
                }
            }
        }
        found.sort();
        (found, internal)
    }

    /// The answer to one DNS message; None for what is not a query.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.queries = request.queries.clone();
        let [q] = request.queries.as_slice() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply.to_vec().ok();
        };
        if request.metadata.op_code != OpCode::Query {
            reply.metadata.response_code = ResponseCode::NotImp;
            return reply.to_vec().ok();
        }
        let qname = q.name().to_ascii();
        let (mut ips, internal) = self.lookup(&qname);
        if !ips.is_empty() {
            reply.metadata.authoritative = true;
            if q.query_type() == RecordType::A {
                let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
                let turn = turns
                    .entry(qname.trim_end_matches('.').to_ascii_lowercase())
                    .or_insert(0);
                let n = ips.len();
                ips.rotate_left(*turn % n);
                *turn = (*turn + 1) % n;
                drop(turns);
                for ip in ips {
                    reply
                        .answers
                        .push(Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))));
                }
            }
            // Other types of a container's name (AAAA): no data, no error.
            return reply.to_vec().ok();
        }
        if internal || self.upstream.is_empty() {
            reply.metadata.response_code = ResponseCode::NXDomain;
            return reply.to_vec().ok();
        }
        match forward(&self.upstream, query) {
            Some(answer) => Some(answer),
            None => {
                reply.metadata.response_code = ResponseCode::ServFail;
                reply.to_vec().ok()
            }
        }
    }
}

/// True when `name` (lower case, no final dot) names endpoint `e` on
/// network `net`.
fn matches(e: &Endpoint, net: &str, name: &str) -> bool {
    let names = std::iter::once(e.name.as_str())
        .chain(e.aliases.iter().map(String::as_str))
        .chain([
            &e.container[..12.min(e.container.len())],
            e.container.as_str(),
        ]);
    for n in names {
        let n = n.to_ascii_lowercase();
        if name == n || name.strip_suffix(net).and_then(|s| s.strip_suffix('.')) == Some(&n) {
            return true;
        }
    }
    false
}

/// Asks the host's resolvers (from the host's namespace, where this
/// process runs): the first answer, or None when none answers in time.
fn forward(upstream: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = match server {
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let Ok(sock) = UdpSocket::bind(bind) else {
            continue;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
        if sock.connect(server).is_err() || sock.send(query).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// A running resolver: stops and closes its sockets when dropped (a
/// socket would keep the container's network namespace alive).
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The resolver's sockets, UDP and TCP on 127.0.0.11:53, inside the
/// network namespace of the process `pid` (the container's init).
pub fn sockets(pid: u32) -> std::io::Result<(UdpSocket, TcpListener)> {
    crate::sandbox::net::in_namespace(pid, || {
        let udp = UdpSocket::bind((ADDRESS, 53))?;
        let tcp = TcpListener::bind((ADDRESS, 53))?;
        Ok((udp, tcp))
    })
}

/// Serves `resolver` on its sockets ([`sockets`]).
pub fn serve(resolver: Resolver, (udp, tcp): (UdpSocket, TcpListener)) -> std::io::Result<Server> {
    let resolver = Arc::new(resolver);
    let stop = Arc::new(AtomicBool::new(false));
    udp.set_read_timeout(Some(Duration::from_millis(200)))?;
    tcp.set_nonblocking(true)?;
    let u = {
        let (resolver, stop) = (resolver.clone(), stop.clone());
        std::thread::spawn(move || serve_udp(udp, resolver, stop))
    };
    let t = {
        let (resolver, stop) = (resolver.clone(), stop.clone());
        std::thread::spawn(move || serve_tcp(tcp, resolver, stop))
    };
    Ok(Server {
        stop,
        threads: vec![u, t],
    })
}

/// Queries answered at once, at the most: the container is not trusted,
/// and each one in progress is a thread of its monitor (one waiting on the
/// host's resolvers holds up no other). Beyond it a query is dropped, as a
/// busy resolver drops; the client asks again.
const IN_FLIGHT: usize = 64;

/// A count of what is in progress, taken back when the guard is dropped.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    fn take(count: &Arc<std::sync::atomic::AtomicUsize>) -> Option<Slot> {
        let before = count.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(count.clone());
        (before < IN_FLIGHT).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_udp(sock: UdpSocket, resolver: Arc<Resolver>, stop: Arc<AtomicBool>) {
    let busy = Arc::default();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some(slot) = Slot::take(&busy) else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (Ok(sock), resolver) = (sock.try_clone(), resolver.clone()) else {
            continue;
        };
        // A thread that cannot be made drops the query (never the loop).
        let _ = std::thread::Builder::new().spawn(move || {
            let _slot = slot;
            if let Some(answer) = resolver.answer(&query) {
                let _ = sock.send_to(&answer, from);
            }
        });
    }
}

fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>, stop: Arc<AtomicBool>) {
    let busy = Arc::default();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, _)) => {
                // Beyond the bound the connection is closed at once.
                let Some(slot) = Slot::take(&busy) else {
                    continue;
                };
                let resolver = resolver.clone();
                let _ = std::thread::Builder::new().spawn(move || {
                    let _slot = slot;
                    serve_conn(conn, &resolver)
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Queries over one TCP connection, each with its two-byte length.
fn serve_conn(mut conn: TcpStream, resolver: &Resolver) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        if conn.read_exact(&mut query).is_err() {
            return;
        }
        let Some(answer) = resolver.answer(&query) else {
            return;
        };
        let len = (answer.len() as u16).to_be_bytes();
        if conn.write_all(&len).is_err() || conn.write_all(&answer).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::process::Recorded;
    use hickory_proto::rr::Name;

    fn endpoint(name: &str, aliases: &[&str]) -> Endpoint {
        Endpoint {
            container: "0123456789abcdef".repeat(4),
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ip: Ipv4Addr::new(10, 89, 0, 2),
            mac: String::new(),
            host_if: String::new(),
            inner_if: "eth0".into(),
            init: Recorded { pid: 1, start: 0 },
            ip6: None,
            links: Vec::new(),
        }
    }

    #[test]
    fn names_aliases_ids_and_network_suffixes_match() {
        let e = endpoint("web1", &["web", "Front"]);
        for n in [
            "web1",
            "web",
            "front",
            "web1.appnet",
            "web.appnet",
            "0123456789ab",
        ] {
            assert!(matches(&e, "appnet", n), "{n}");
        }
        for n in ["web2", "web1.other", "appnet", "web1appnet", "0123456789a"] {
            assert!(!matches(&e, "appnet", n), "{n}");
        }
    }

    fn ask(r: &Resolver, name: &str, t: RecordType) -> Message {
        let mut q = Message::query();
        q.queries.push(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            t,
        ));
        Message::from_vec(&r.answer(&q.to_vec().unwrap()).unwrap()).unwrap()
    }

    fn addresses(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .map(|a| match &a.data {
                RData::A(ip) => ip.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Three live endpoints sharing an alias on an internal network, in a
    /// store made here: every A query rotates the answer by one.
    #[test]
    fn a_shared_alias_is_answered_in_turn_and_other_names_fail() {
        let root = tempfile::tempdir().unwrap();
        let net = Network {
            name: "appnet".into(),
            id: "ab".repeat(32),
            subnet: super::super::Subnet::parse("10.89.0.0/24").unwrap(),
            gateway: None,
            bridge: "kb-abababababab".into(),
            internal: true,
            nat: false,
            created: String::new(),
            labels: Vec::new(),
            ip_range: None,
            aux: Vec::new(),
            enable_ipv6: false,
            subnet6: None,
            gateway6: None,
            ip_range6: None,
        };
        let dir = root.path().join("networks/appnet/endpoints");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            root.path().join("networks/appnet/network.json"),
            serde_json::to_vec(&net).unwrap(),
        )
        .unwrap();
        let me = crate::sandbox::process::record(std::process::id()).unwrap();
        for (i, name) in ["web3", "web1", "web2", "client"].iter().enumerate() {
            let mut e = endpoint(name, if *name == "client" { &[] } else { &["web"] });
            e.container = format!("{i}").repeat(64);
            e.ip = Ipv4Addr::new(10, 89, 0, [4, 2, 3, 9][i]);
            e.init = me;
            if *name == "client" {
                e.links = vec!["web1:db".into()];
            }
            std::fs::write(
                dir.join(format!("{}.json", e.container)),
                serde_json::to_vec(&e).unwrap(),
            )
            .unwrap();
        }
        let r = Resolver::new(root.path().to_path_buf(), "3".repeat(64), Vec::new());
        let turns: Vec<Vec<String>> = (0..4)
            .map(|_| addresses(&ask(&r, "web.", RecordType::A)))
            .collect();
        assert_eq!(
            turns,
            [
                ["10.89.0.2", "10.89.0.3", "10.89.0.4"],
                ["10.89.0.3", "10.89.0.4", "10.89.0.2"],
                ["10.89.0.4", "10.89.0.2", "10.89.0.3"],
                ["10.89.0.2", "10.89.0.3", "10.89.0.4"],
            ]
        );
        let one = ask(&r, "WEB1.appnet.", RecordType::A);
        assert_eq!(addresses(&one), ["10.89.0.2"]);
        assert_eq!(one.answers[0].ttl, TTL);
        let v6 = ask(&r, "web1.", RecordType::AAAA);
        assert_eq!(
            (v6.metadata.response_code, v6.answers.len()),
            (ResponseCode::NoError, 0)
        );
        // Internal: a name not on the network is not forwarded.
        let other = ask(&r, "example.org.", RecordType::A);
        assert_eq!(other.metadata.response_code, ResponseCode::NXDomain);
        // A link's alias is the linking container's alone.
        assert_eq!(addresses(&ask(&r, "DB.", RecordType::A)), ["10.89.0.2"]);
        let web3 = Resolver::new(root.path().to_path_buf(), "0".repeat(64), Vec::new());
        assert_eq!(
            ask(&web3, "db.", RecordType::A).metadata.response_code,
            ResponseCode::NXDomain
        );
        // A container that is not on the network resolves nothing there.
        let outsider = Resolver::new(root.path().to_path_buf(), "f".repeat(64), Vec::new());
        assert_eq!(
            ask(&outsider, "web.", RecordType::A).metadata.response_code,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn queries_in_flight_are_bounded() {
        let busy = Arc::default();
        let held: Vec<Slot> = (0..IN_FLIGHT).map(|_| Slot::take(&busy).unwrap()).collect();
        assert!(Slot::take(&busy).is_none(), "one more than the bound");
        drop(held);
        assert!(Slot::take(&busy).is_some(), "slots are given back");
    }

    #[test]
    fn resolv_conf_nameservers_are_read() {
        let ns = nameservers("# x\nnameserver 10.0.0.2\nsearch example\nnameserver ::1\n");
        assert_eq!(ns.len(), 2);
        assert_eq!(ns[0].to_string(), "10.0.0.2:53");
    }
}
