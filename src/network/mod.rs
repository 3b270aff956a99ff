//! Container networks (`kiln network create`, `kiln run --network NAME`):
//! a bridge per network, a veth pair per container, addresses from the
//! network's own small IPAM (the endpoint files, under the network's
//! lock), and a DNS resolver per container that answers the network's
//! names and aliases in round robin ([`dns`]).
//!
//! A network is a directory `networks/NAME/` of the store: `network.json`
//! (what `create` was given), `lock`, and `endpoints/CONTAINER-ID.json`,
//! one per connected, running container with the pid and start time of
//! its init. An endpoint whose init is gone is stale: the next allocation
//! takes its address back and `prune` removes what it left, so a kiln
//! killed anywhere leaves nothing that the next one does not reclaim.

pub mod dns;
pub(crate) mod nat;
pub mod rootless;

use crate::sandbox::netlink;
use crate::sandbox::process::Recorded;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What went wrong with a network.
#[derive(Debug, Error)]
pub enum NetworkError {
    /// No network has that name or id.
    #[error("network {0} not found")]
    NotFound(String),
    /// The name is taken.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// The request does not fit.
    #[error("{0}")]
    Invalid(String),
    /// A container still uses it.
    #[error(
        "error while removing network: network {name} id {id} has active endpoints ({containers})"
    )]
    InUse {
        /// Its name.
        name: String,
        /// Its id.
        id: String,
        /// The containers on it.
        containers: String,
    },
    /// Every address of the subnet is taken.
    #[error("no address left in {0}")]
    Full(String),
    /// Netlink refused a change.
    #[error(transparent)]
    Link(#[from] crate::sandbox::netlink::NetlinkError),
    /// The per-user namespace's holder or helper failed (rootless).
    #[error(transparent)]
    Rootless(#[from] crate::sandbox::netns::NetnsError),
    /// The container's init ended before it joined.
    #[error("the container's init ({0}) is gone")]
    InitGone(u32),
    /// A request to or an answer from the rootless helper did not parse.
    #[error("the network helper's {what}: {source}")]
    Helper {
        /// `request` or `answer`.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A socket in a container's namespace could not be made.
    #[error("{what}: {source}")]
    Socket {
        /// What was being made.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// `nft` could not be run.
    #[error("{what}: {source}")]
    Nft {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// `nft` refused kiln's rules.
    #[error("nft refused kiln's rules: {0}")]
    NftRefused(String),
    /// pasta could not connect the per-user namespace.
    #[error("pasta could not connect kiln's network namespace: {said}{hint}")]
    Pasta {
        /// What pasta said.
        said: String,
        /// What to do about it, when known.
        hint: &'static str,
    },
    /// pasta started but is not running.
    #[error("pasta {0}")]
    PastaGone(&'static str),
    /// A rootless `--nat` network needs pasta.
    #[error(
        "--nat as a user that is not root needs pasta (the way out of kiln's per-user network namespace): install passt (apt-get install passt)"
    )]
    NoPasta,
    /// A file of the network could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetworkError {
    let path = path.to_path_buf();
    move |source| NetworkError::Io {
        action,
        path,
        source,
    }
}

/// An IPv4 subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `A.B.C.D/N` (8 ≤ N ≤ 30, no host bits set).
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let bad = || format!("invalid subnet {text:?}: use A.B.C.D/N");
        let (a, n) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = n.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "invalid subnet {text:?}: the prefix must be between /8 and /30"
            ));
        }
        let first = addr.octets()[0];
        if first == 0 || first >= 224 || addr.is_loopback() {
            return Err(format!(
                "invalid subnet {text:?}: not a unicast range a network can use"
            ));
        }
        let s = Subnet { addr, prefix };
        if s.network() != addr {
            return Err(format!(
                "invalid subnet {text:?}: host bits are set (the network is {}/{prefix})",
                s.network()
            ));
        }
        Ok(s)
    }

    fn mask(&self) -> u32 {
        match self.prefix {
            0 => 0,
            p => u32::MAX << (32 - p.min(32)),
        }
    }

    fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// True when `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// True when the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = self.mask().min(other.mask());
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// True when `ip` is one of [`Subnet::hosts`].
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let last = u32::from(self.addr) | !self.mask();
        self.contains(ip) && ip != self.addr && u32::from(ip) != last
    }

    /// Every address of the subnet, its network and broadcast addresses
    /// too (an `--ip-range` inside a larger subnet gives them all).
    pub fn all(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u64::from(u32::from(self.addr));
        let size = 1u64 << (32 - self.prefix.min(32));
        (base..base + size).map(|a| Ipv4Addr::from(a as u32))
    }

    /// The host addresses, first to last (no network or broadcast address).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u64::from(u32::from(self.addr));
        let size = 1u64 << (32 - self.prefix.min(32));
        // u64: the last range's end (255.255.255.255 + 1) fits.
        (base + 1..(base + size).saturating_sub(1)).map(|a| Ipv4Addr::from(a as u32))
    }
}

/// An IPv6 subnet, kept as given (docker's own examples set host bits:
/// `2001:db8::1/64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet6 {
    /// The address as given.
    pub addr: Ipv6Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Subnet6 {
    /// Parses `X:Y::Z/N` (16 ≤ N ≤ 120).
    pub fn parse(text: &str) -> Result<Subnet6, String> {
        let bad = || format!("invalid IPv6 subnet {text:?}: use X:Y::Z/N");
        let (a, n) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = n.parse().map_err(|_| bad())?;
        if !(16..=120).contains(&prefix) {
            return Err(format!(
                "invalid IPv6 subnet {text:?}: the prefix must be between /16 and /120"
            ));
        }
        if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
            return Err(format!(
                "invalid IPv6 subnet {text:?}: not a unicast range a network can use"
            ));
        }
        Ok(Subnet6 { addr, prefix })
    }

    fn mask(&self) -> u128 {
        u128::MAX << (128 - u32::from(self.prefix.min(128)))
    }

    /// True when `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr) & self.mask()
    }

    /// True when the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet6) -> bool {
        let m = self.mask().min(other.mask());
        u128::from(self.addr) & m == u128::from(other.addr) & m
    }

    /// The host addresses from the subnet's first, first to last.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv6Addr> {
        let base = u128::from(self.addr) & self.mask();
        // Enough to find a free one; a network never holds more.
        (1..=u128::from(u16::MAX)).map(move |i| Ipv6Addr::from(base + i))
    }
}

impl std::fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A network as `create` made it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    /// Its name.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// The bridge's address (none on an internal network: no way out).
    pub gateway: Option<Ipv4Addr>,
    /// The bridge's name (`kb-` and 12 digits of the id).
    pub bridge: String,
    /// `--internal`: no gateway, no route out, no forwarding of other names.
    pub internal: bool,
    /// `--nat`: what leaves the subnet is masqueraded (nftables).
    #[serde(default)]
    pub nat: bool,
    /// When it was made.
    pub created: String,
    /// `--label`.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// `--ip-range`: where addresses are given from (within the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Subnet>,
    /// `--aux-address NAME=IP`: addresses never given to a container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux: Vec<(String, Ipv4Addr)>,
    /// `--ipv6`: containers get IPv6 addresses from `subnet6` as well.
    #[serde(default)]
    pub enable_ipv6: bool,
    /// The IPv6 subnet (`--subnet X::/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Subnet6>,
    /// The bridge's IPv6 address (default: the IPv6 subnet's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Where IPv6 addresses are given from (within `subnet6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<Subnet6>,
}

/// A container on a network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    /// The container's id.
    pub container: String,
    /// The container's name.
    pub name: String,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its IPv6 address (networks with `--ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// Its MAC address (02:42 and the address, as docker makes them).
    pub mac: String,
    /// The veth end on the bridge.
    pub host_if: String,
    /// The interface in the container.
    pub inner_if: String,
    /// The container's init: the endpoint lives while it does.
    pub init: Recorded,
    /// Its links on this network (`NAME:ALIAS`), which its resolver answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

impl Endpoint {
    /// True while the container it belongs to runs.
    pub fn live(&self) -> bool {
        self.init.alive()
    }
}

/// What `kiln network create` takes.
#[derive(Clone, Debug, Default)]
pub struct Create {
    /// Its name.
    pub name: String,
    /// `--subnet` (default: the first free 10.89.N.0/24).
    pub subnet: Option<String>,
    /// `--gateway` (default: the subnet's first address).
    pub gateway: Option<String>,
    /// `--internal`.
    pub internal: bool,
    /// `--nat`.
    pub nat: bool,
    /// `--label`.
    pub labels: Vec<(String, String)>,
    /// `--ip-range`.
    pub ip_range: Option<String>,
    /// `--aux-address NAME=IP`.
    pub aux: Vec<(String, String)>,
    /// `--ipv6`.
    pub enable_ipv6: bool,
    /// An IPv6 `--subnet`.
    pub subnet6: Option<String>,
    /// An IPv6 `--gateway`.
    pub gateway6: Option<String>,
    /// An IPv6 `--ip-range`.
    pub ip_range6: Option<String>,
}

/// How a container asks to join a network (`--network`, `--network-alias`,
/// `--ip`): kept in its record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// Its aliases on that network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The address asked for.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// The IPv6 address asked for (`--ip6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    /// The MAC address asked for (`--mac-address`, lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `--link NAME:ALIAS` on this network: ALIAS resolves to container
    /// NAME for this container only (docker's links on user networks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// The driver options asked for (EndpointConfig.DriverOpts): shown by
    /// inspect; the bridge driver has none it acts on, as docker's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub driver_opts: Vec<(String, String)>,
    /// Link-local addresses asked for (IPAMConfig.LinkLocalIPs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
}

/// The container `name` stands for among `links` (`NAME:ALIAS`, or
/// `NAME` alone standing for itself), when it is one's alias.
pub fn link_target<'a>(links: &'a [String], name: &str) -> Option<&'a str> {
    links.iter().find_map(|l| {
        let (target, alias) = l.split_once(':').unwrap_or((l, l));
        alias.eq_ignore_ascii_case(name).then_some(target)
    })
}

/// The reserved names that are modes, not networks.
pub const MODES: [&str; 3] = ["host", "none", "bridge"];

/// `02:42:ac:11:00:0a` as bytes.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn networks_dir(root: &Path) -> PathBuf {
    crate::store::layout::networks(root)
}

impl Network {
    /// `networks/NAME/`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        networks_dir(root).join(&self.name)
    }

    /// The network in `docker network inspect`'s shape (`kiln network
    /// inspect`, the Docker API).
    pub fn docker_json(&self, root: &Path) -> serde_json::Value {
        let n = self;
        let containers: serde_json::Map<String, serde_json::Value> = n
            .endpoints(root)
            .into_iter()
            .map(|e| {
                (
                    e.container.clone(),
                    serde_json::json!({
                        "Name": e.name,
                        "MacAddress": e.mac,
                        "IPv4Address": format!("{}/{}", e.ip, n.subnet.prefix),
                        "IPv6Address": match (e.ip6, n.subnet6) {
                            (Some(ip), Some(s6)) => format!("{ip}/{}", s6.prefix),
                            _ => String::new(),
                        },
                    }),
                )
            })
            .collect();
        let mut config = serde_json::json!({ "Subnet": n.subnet.to_string() });
        if let Some(r) = n.ip_range {
            config["IPRange"] = r.to_string().into();
        }
        if let Some(g) = n.gateway {
            config["Gateway"] = g.to_string().into();
        }
        if !n.aux.is_empty() {
            config["AuxiliaryAddresses"] = n
                .aux
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.to_string())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let mut configs = vec![config];
        if let Some(s6) = n.subnet6 {
            let mut c6 = serde_json::json!({ "Subnet": s6.to_string() });
            if let Some(r) = n.ip_range6 {
                c6["IPRange"] = r.to_string().into();
            }
            if let Some(g) = n.gateway6 {
                c6["Gateway"] = g.to_string().into();
            }
            configs.push(c6);
        }
        serde_json::json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": n.enable_ipv6,
            // No IPAM options are taken: docker's null, not `{}`.
            "IPAM": { "Driver": "default", "Options": null, "Config": configs },
            "Internal": n.internal,
            "Attachable": false,
            "Ingress": false,
            "Containers": containers,
            "Options": {
                "com.docker.network.bridge.name": n.bridge,
                "com.docker.network.bridge.enable_ip_masquerade": n.nat.to_string(),
            },
            "Labels": n.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })
    }

    /// The network's lock, held while its endpoints change.
    fn lock(&self, root: &Path) -> Result<std::fs::File, NetworkError> {
        let path = self.dir(root).join("lock");
        let f = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        f.lock().map_err(io_err("locking", &path))?;
        Ok(f)
    }

    fn endpoint_path(&self, root: &Path, container: &str) -> PathBuf {
        self.dir(root)
            .join("endpoints")
            .join(format!("{container}.json"))
    }

    /// The endpoint file of container `id`, live or stale.
    pub fn endpoint(&self, root: &Path, id: &str) -> Option<Endpoint> {
        let bytes = std::fs::read(self.endpoint_path(root, id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Renames container `id`'s endpoint (`docker rename`), if it has one.
    pub fn rename_endpoint(&self, root: &Path, id: &str, name: &str) -> Result<(), NetworkError> {
        let _lock = self.lock(root)?;
        let Some(mut e) = self.endpoint(root, id) else {
            return Ok(());
        };
        e.name = name.to_string();
        write_json(&self.endpoint_path(root, id), &e)
    }

    /// Every endpoint file, live or stale.
    fn all_endpoints(&self, root: &Path) -> Vec<Endpoint> {
        let dir = self.dir(root).join("endpoints");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                let hex = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
                let e: Endpoint =
                    serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
                (hex && e.container == id).then_some(e)
            })
            .collect()
    }

    /// The endpoints of running containers, by address.
    pub fn endpoints(&self, root: &Path) -> Vec<Endpoint> {
        let mut live: Vec<Endpoint> = self
            .all_endpoints(root)
            .into_iter()
            .filter(Endpoint::live)
            .collect();
        live.sort_by_key(|e| e.ip);
        live
    }

    /// Removes stale endpoints (their container died without leaving) and
    /// the veth ends they left; called under the lock.
    fn reclaim(&self, root: &Path) {
        for e in self.all_endpoints(root) {
            if !e.live() {
                let _ = netlink::delete_link(&e.host_if);
                let _ = std::fs::remove_file(self.endpoint_path(root, &e.container));
            }
        }
        // What a kiln killed between writing and renaming an endpoint left.
        if let Ok(entries) = std::fs::read_dir(self.dir(root).join("endpoints")) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains(".tmp.") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// True while the network's directory is this network's (it was not
    /// removed, or removed and made again, while a lock was waited for).
    fn still_there(&self, root: &Path) -> bool {
        std::fs::read(self.dir(root).join("network.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Network>(&b).ok())
            .is_some_and(|n| n.id == self.id)
    }

    /// Connects the running container `container` (init `pid`) to this
    /// network as `inner_if`: an address, the veth pair, the endpoint file;
    /// the default route goes through this network's gateway when
    /// `default_route` (the container's first network only, as docker's).
    pub fn join(
        &self,
        root: &Path,
        container: (&str, &str),
        attachment: &Attachment,
        pid: u32,
        inner_if: (&str, bool),
    ) -> Result<Endpoint, NetworkError> {
        if crate::sandbox::fs::is_root() {
            return self.join_here(root, container, attachment, pid, inner_if);
        }
        if self.nat {
            rootless::ensure_pasta(root)?;
        }
        let answer = rootless::call(
            root,
            &rootless::Request::Join {
                root: root.to_path_buf(),
                network: self.name.clone(),
                container: (container.0.to_string(), container.1.to_string()),
                attachment: Box::new(attachment.clone()),
                pid,
                inner_if: (inner_if.0.to_string(), inner_if.1),
            },
        )?;
        serde_json::from_str(&answer).map_err(|source| NetworkError::Helper {
            what: "answer",
            source,
        })
    }

    /// [`Network::join`] in this process (root, or the rootless helper).
    pub fn join_here(
        &self,
        root: &Path,
        container: (&str, &str),
        attachment: &Attachment,
        pid: u32,
        (inner_if, default_route): (&str, bool),
    ) -> Result<Endpoint, NetworkError> {
        let (id, name) = container;
        let _lock = self.lock(root)?;
        if !self.still_there(root) {
            return Err(NetworkError::NotFound(self.name.clone()));
        }
        self.reclaim(root);
        if self.endpoint(root, id).is_some_and(|e| e.live()) {
            return Err(NetworkError::Invalid(format!(
                "endpoint with name {name} already exists in network {}",
                self.name
            )));
        }
        let all = self.all_endpoints(root);
        let taken: Vec<Ipv4Addr> = all.iter().map(|e| e.ip).collect();
        let free = |ip: &Ipv4Addr| {
            !taken.contains(ip)
                && Some(*ip) != self.gateway
                && !self.aux.iter().any(|(_, a)| a == ip)
        };
        let ip = match attachment.ip {
            Some(ip) if !self.subnet.contains(ip) => {
                return Err(NetworkError::Invalid(format!(
                    "invalid address {ip}: it is not in network {}'s subnet {}",
                    self.name, self.subnet
                )));
            }
            Some(ip) if !free(&ip) || !self.subnet.is_host(ip) => {
                return Err(NetworkError::Invalid(format!(
                    "Address already in use: {ip} on network {}",
                    self.name
                )));
            }
            Some(ip) => ip,
            // From --ip-range when there is one, never the subnet's
            // broadcast address.
            None => {
                let pool = self.ip_range.unwrap_or(self.subnet);
                pool.all()
                    .filter(|ip| self.subnet.is_host(*ip))
                    .find(free)
                    .ok_or_else(|| NetworkError::Full(pool.to_string()))?
            }
        };
        let ip6 = match (self.enable_ipv6, self.subnet6) {
            (true, Some(s6)) => {
                let taken6: Vec<Ipv6Addr> = all.iter().filter_map(|e| e.ip6).collect();
                let free6 = |ip: &Ipv6Addr| !taken6.contains(ip) && Some(*ip) != self.gateway6;
                Some(match attachment.ip6 {
                    Some(ip) if !s6.contains(ip) => {
                        return Err(NetworkError::Invalid(format!(
                            "invalid address {ip}: it is not in network {}'s subnet {s6}",
                            self.name
                        )));
                    }
                    Some(ip) if !free6(&ip) => {
                        return Err(NetworkError::Invalid(format!(
                            "Address already in use: {ip} on network {}",
                            self.name
                        )));
                    }
                    Some(ip) => ip,
                    None => self
                        .ip_range6
                        .unwrap_or(s6)
                        .hosts()
                        .find(free6)
                        .ok_or_else(|| NetworkError::Full(s6.to_string()))?,
                })
            }
            _ => None,
        };
        let o = ip.octets();
        let mac = match attachment.mac.as_deref().and_then(parse_mac) {
            Some(asked) => asked,
            None => [0x02, 0x42, o[0], o[1], o[2], o[3]],
        };
        let init = crate::sandbox::process::record(pid).ok_or(NetworkError::InitGone(pid))?;
        let e = Endpoint {
            container: id.to_string(),
            name: name.to_string(),
            aliases: attachment.aliases.clone(),
            ip,
            ip6,
            mac: mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            host_if: host_if(id, &self.id),
            inner_if: inner_if.to_string(),
            init,
            links: attachment.links.clone(),
        };
        // The endpoint is written first: killed from here on, what the
        // veth set-up left is found by its file.
        let path = self.endpoint_path(root, id);
        write_json(&path, &e)?;
        let made = netlink::ensure_bridge(
            &self.bridge,
            self.gateway.map(|g| (g, self.subnet.prefix)),
            self.gateway6
                .zip(self.subnet6)
                .filter(|_| self.enable_ipv6)
                .map(|(g, s6)| (g, s6.prefix)),
        )
        .map_err(NetworkError::from)
        .and_then(|()| match nat::available() {
            true => nat::apply(self),
            false => Ok(()),
        })
        .and_then(|()| {
            netlink::attach(
                pid,
                &netlink::Attach {
                    bridge: self.bridge.clone(),
                    host_if: e.host_if.clone(),
                    inner_if: inner_if.to_string(),
                    address: ip,
                    subnet: (self.subnet.addr, self.subnet.prefix),
                    gateway: self.gateway.filter(|_| default_route),
                    mac,
                    address6: ip6.zip(self.subnet6).map(|(ip, s6)| (ip, s6.prefix)),
                    gateway6: self.gateway6.filter(|_| default_route && self.enable_ipv6),
                },
            )
            .map_err(NetworkError::from)
        });
        if let Err(m) = made {
            let _ = std::fs::remove_file(&path);
            return Err(m);
        }
        Ok(e)
    }

    /// Removes the bridge and the NAT rules (the last container left).
    fn take_down(&self) -> Result<(), NetworkError> {
        if nat::available() {
            nat::disable(self)?;
        }
        netlink::delete_link(&self.bridge)?;
        Ok(())
    }

    /// Takes the container `id` off this network; the bridge goes with
    /// the last container.
    pub fn leave(&self, root: &Path, id: &str) -> Result<(), NetworkError> {
        if crate::sandbox::fs::is_root() {
            return self.leave_here(root, id);
        }
        rootless::call(
            root,
            &rootless::Request::Leave {
                root: root.to_path_buf(),
                network: self.name.clone(),
                container: id.to_string(),
            },
        )
        .map(drop)
    }

    /// [`Network::leave`] in this process (root, or the rootless helper).
    pub fn leave_here(&self, root: &Path, id: &str) -> Result<(), NetworkError> {
        let _lock = self.lock(root)?;
        let path = self.endpoint_path(root, id);
        if let Some(e) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Endpoint>(&b).ok())
        {
            let _ = netlink::delete_link(&e.host_if);
        }
        let _ = std::fs::remove_file(&path);
        self.reclaim(root);
        if self.all_endpoints(root).is_empty() {
            self.take_down()?;
        }
        Ok(())
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), NetworkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    std::fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming", path))
}

fn random_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a network.
pub fn create(root: &Path, opts: &Create) -> Result<Network, NetworkError> {
    if opts.nat && !crate::sandbox::fs::is_root() && !rootless::pasta_available() {
        return Err(NetworkError::NoPasta);
    }
    if MODES.contains(&opts.name.as_str()) {
        return Err(NetworkError::Invalid(format!(
            "{:?} is a pre-defined network mode and cannot be created",
            opts.name
        )));
    }
    // The name is a directory's: no `/`, never `.` or `..`. Spaces inside
    // are docker's too (`test 01`).
    let mut chars = opts.name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.- ".contains(c))
        && !opts.name.ends_with(' ');
    if !valid || opts.name.len() > 64 {
        return Err(NetworkError::Invalid(format!(
            "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_. -] are allowed, not ending in a space",
            opts.name
        )));
    }
    let dir = networks_dir(root);
    std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    // One lock for all networks while names and subnets are chosen.
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("opening", &lock_path))?;
    lock.lock().map_err(io_err("locking", &lock_path))?;
    let existing = list(root)?;
    if existing.iter().any(|n| n.name == opts.name) {
        return Err(NetworkError::Exists(opts.name.clone()));
    }
    let host: Vec<Subnet> = netlink::addresses()?
        .into_iter()
        .filter(|(ip, _)| !ip.is_loopback())
        .map(|(ip, prefix)| {
            let prefix = prefix.clamp(1, 32);
            Subnet {
                addr: Ipv4Addr::from(u32::from(ip) & (u32::MAX << (32 - prefix))),
                prefix,
            }
        })
        .collect();
    let clash = |s: &Subnet| {
        existing
            .iter()
            .map(|n| n.subnet)
            .chain(host.iter().copied())
            .find(|o| o.overlaps(s))
    };
    let subnet = match &opts.subnet {
        Some(text) => {
            let s = Subnet::parse(text).map_err(NetworkError::Invalid)?;
            if let Some(o) = clash(&s) {
                return Err(NetworkError::Invalid(format!(
                    "Pool overlaps with other one on this address space: {s} overlaps {o}"
                )));
            }
            s
        }
        None => (0..=255u8)
            .map(|n| Subnet {
                addr: Ipv4Addr::new(10, 89, n, 0),
                prefix: 24,
            })
            .find(|s| clash(s).is_none())
            .ok_or_else(|| NetworkError::Full("10.89.0.0/16".into()))?,
    };
    if opts.nat && opts.internal {
        return Err(NetworkError::Invalid(
            "an internal network has no way out to translate: drop --nat or --internal".into(),
        ));
    }
    if opts.nat && !nat::available() {
        return Err(NetworkError::Invalid(
            "--nat needs nftables' nft command: install nftables (apt-get install nftables)".into(),
        ));
    }
    let gateway = match (&opts.gateway, opts.internal) {
        (Some(_), true) => {
            return Err(NetworkError::Invalid(
                "an internal network has no gateway: drop --gateway or --internal".into(),
            ));
        }
        (_, true) => None,
        (Some(g), false) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| NetworkError::Invalid(format!("invalid gateway {g:?}")))?;
            if !subnet.is_host(ip) {
                return Err(NetworkError::Invalid(format!(
                    "gateway {ip} is not a host address of {subnet}"
                )));
            }
            Some(ip)
        }
        (None, false) => subnet.hosts().next(),
    };
    let ip_range = match &opts.ip_range {
        None => None,
        Some(text) => {
            let r = Subnet::parse(text).map_err(NetworkError::Invalid)?;
            if r.prefix < subnet.prefix || !subnet.contains(r.addr) {
                return Err(NetworkError::Invalid(format!(
                    "ip-range {r} is not within subnet {subnet}"
                )));
            }
            Some(r)
        }
    };
    let mut aux = Vec::new();
    for (name, ip) in &opts.aux {
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            NetworkError::Invalid(format!("invalid auxiliary address {name}={ip:?}"))
        })?;
        if !subnet.contains(ip) {
            return Err(NetworkError::Invalid(format!(
                "auxiliary address {name}={ip} is not within subnet {subnet}"
            )));
        }
        aux.push((name.clone(), ip));
    }
    let subnet6 = opts
        .subnet6
        .as_deref()
        .map(Subnet6::parse)
        .transpose()
        .map_err(NetworkError::Invalid)?;
    if let Some(s6) = &subnet6
        && let Some(o) = existing
            .iter()
            .filter_map(|n| n.subnet6)
            .find(|o| o.overlaps(s6))
    {
        return Err(NetworkError::Invalid(format!(
            "Pool overlaps with other one on this address space: {s6} overlaps {o}"
        )));
    }
    let gateway6 = match (&opts.gateway6, &subnet6) {
        (Some(g), None) => {
            return Err(NetworkError::Invalid(format!(
                "IPv6 gateway {g} given without an IPv6 subnet"
            )));
        }
        (Some(g), Some(s6)) => {
            let ip: Ipv6Addr = g
                .parse()
                .map_err(|_| NetworkError::Invalid(format!("invalid IPv6 gateway {g:?}")))?;
            if !s6.contains(ip) {
                return Err(NetworkError::Invalid(format!(
                    "IPv6 gateway {ip} is not within subnet {s6}"
                )));
            }
            Some(ip)
        }
        (None, Some(s6)) if !opts.internal => s6.hosts().next(),
        (None, _) => None,
    };
    let ip_range6 = match (&opts.ip_range6, &subnet6) {
        (None, _) => None,
        (Some(r), None) => {
            return Err(NetworkError::Invalid(format!(
                "IPv6 ip-range {r} given without an IPv6 subnet"
            )));
        }
        (Some(r), Some(s6)) => {
            let r = Subnet6::parse(r).map_err(NetworkError::Invalid)?;
            if r.prefix < s6.prefix || !s6.contains(r.addr) {
                return Err(NetworkError::Invalid(format!(
                    "ip-range {r} is not within subnet {s6}"
                )));
            }
            Some(r)
        }
    };
    if opts.enable_ipv6 && subnet6.is_none() {
        return Err(NetworkError::Invalid(
            "--ipv6 needs an IPv6 --subnet: kiln has no pool of IPv6 addresses to choose from"
                .into(),
        ));
    }
    let id = random_id();
    let net = Network {
        ip_range,
        aux,
        enable_ipv6: opts.enable_ipv6,
        subnet6,
        gateway6,
        ip_range6,
        name: opts.name.clone(),
        bridge: format!("kb-{}", &id[..12]),
        id,
        subnet,
        gateway,
        internal: opts.internal,
        nat: opts.nat,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        labels: opts.labels.clone(),
    };
    let ndir = net.dir(root);
    std::fs::create_dir_all(ndir.join("endpoints")).map_err(io_err("creating", &ndir))?;
    write_json(&ndir.join("network.json"), &net)?;
    crate::events::record(
        root,
        crate::events::Kind::Network,
        "create",
        &net.id,
        [
            ("name".to_string(), net.name.clone()),
            ("type".to_string(), "bridge".to_string()),
        ],
    );
    Ok(net)
}

/// Every network, by name.
pub fn list(root: &Path) -> Result<Vec<Network>, NetworkError> {
    let dir = networks_dir(root);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut all: Vec<Network> = entries
        .flatten()
        // `.removed-ID`: a network being removed, or a dead kiln's.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| std::fs::read(e.path().join("network.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// The network named `what`, or whose id starts with it.
pub fn find(root: &Path, what: &str) -> Result<Network, NetworkError> {
    let all = list(root)?;
    if let Some(n) = all.iter().find(|n| n.name == what || n.id == what) {
        return Ok(n.clone());
    }
    let by_id: Vec<&Network> = all.iter().filter(|n| n.id.starts_with(what)).collect();
    match by_id.as_slice() {
        [n] if !what.is_empty() => Ok((*n).clone()),
        _ => Err(NetworkError::NotFound(what.to_string())),
    }
}

/// Removes a network no running container uses: its bridge and directory.
pub fn remove(root: &Path, net: &Network) -> Result<(), NetworkError> {
    if crate::sandbox::fs::is_root() {
        return remove_here(root, net);
    }
    rootless::call(
        root,
        &rootless::Request::Remove {
            root: root.to_path_buf(),
            network: net.name.clone(),
        },
    )
    .map(drop)
}

/// [`remove`] in this process (root, or the rootless helper).
pub fn remove_here(root: &Path, net: &Network) -> Result<(), NetworkError> {
    let lock = net.lock(root)?;
    net.reclaim(root);
    let live = net.endpoints(root);
    if !live.is_empty() {
        return Err(NetworkError::InUse {
            name: net.name.clone(),
            id: net.id.clone(),
            containers: live
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    net.take_down()?;
    // Renamed away while the lock is held: a join that waited for it
    // finds no network (it checks), never a half-removed one.
    let dir = net.dir(root);
    let gone = networks_dir(root).join(format!(".removed-{}", net.id));
    std::fs::rename(&dir, &gone).map_err(io_err("removing", &dir))?;
    drop(lock);
    crate::events::record(
        root,
        crate::events::Kind::Network,
        "destroy",
        &net.id,
        [
            ("name".to_string(), net.name.clone()),
            ("type".to_string(), "bridge".to_string()),
        ],
    );
    std::fs::remove_dir_all(&gone).map_err(io_err("removing", &gone))
}

/// The veth end of container `id` on network `net_id`, on the bridge:
/// `kv`, 7 digits of the container's id, 5 of the network's.
fn host_if(id: &str, net_id: &str) -> String {
    format!(
        "kv{}{}",
        &id[..7.min(id.len())],
        &net_id[..5.min(net_id.len())]
    )
}

/// Removes every network no running container uses, and the links of
/// this store's networks that nothing accounts for (what a kiln killed in
/// the middle of set-up left); the names of the networks removed. Links of
/// other stores' networks, and links kiln did not make, are left alone.
pub fn prune(root: &Path) -> Result<Vec<String>, NetworkError> {
    if crate::sandbox::fs::is_root() {
        return prune_here(root);
    }
    let answer = rootless::call(
        root,
        &rootless::Request::Prune {
            root: root.to_path_buf(),
        },
    )?;
    Ok(answer.lines().map(String::from).collect())
}

/// [`prune`] in this process (root, or the rootless helper).
pub fn prune_here(root: &Path) -> Result<Vec<String>, NetworkError> {
    let links = netlink::links_named("k")?;
    let mut removed = Vec::new();
    for net in list(root)? {
        {
            // Under the network's lock no join is half done: a veth with
            // no endpoint (its peer too, `p`) is a dead kiln's.
            let _lock = net.lock(root)?;
            net.reclaim(root);
            let live: Vec<String> = net.endpoints(root).into_iter().map(|e| e.host_if).collect();
            let suffix = &net.id[..5];
            for link in &links {
                let veth = link
                    .strip_prefix("kv")
                    .map(|r| r.strip_suffix('p').unwrap_or(r));
                let ours = veth.is_some_and(|v| {
                    v.len() == 12 && v.ends_with(suffix) && v.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if ours && !live.iter().any(|l| link.starts_with(l.as_str())) {
                    let _ = netlink::delete_link(link);
                }
            }
        }
        if remove_here(root, &net).is_ok() {
            removed.push(net.name);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        let s = Subnet::parse("10.89.3.0/24").unwrap();
        assert!(s.contains("10.89.3.7".parse().unwrap()));
        assert!(!s.contains("10.89.4.1".parse().unwrap()));
        assert_eq!(s.hosts().count(), 254);
        assert_eq!(s.hosts().next(), Some("10.89.3.1".parse().unwrap()));
        assert!(s.overlaps(&Subnet::parse("10.89.0.0/16").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.89.4.0/24").unwrap()));
        assert!(
            Subnet::parse("10.89.3.1/24")
                .unwrap_err()
                .contains("host bits are set (the network is 10.89.3.0/24)")
        );
        assert!(Subnet::parse("10.0.0.0/31").unwrap_err().contains("/30"));
        assert!(Subnet::parse("10.0.0.0").is_err());
        assert!(
            Subnet::parse("255.255.255.0/24")
                .unwrap_err()
                .contains("unicast")
        );
        assert!(Subnet::parse("0.0.0.0/8").unwrap_err().contains("unicast"));
        let top = Subnet::parse("223.255.255.0/24").unwrap();
        assert_eq!(top.hosts().last(), Some("223.255.255.254".parse().unwrap()));
    }

    #[test]
    fn veth_names_carry_both_ids() {
        assert_eq!(
            host_if(&"0123456789".repeat(7), &"abcdef".repeat(11)),
            "kv0123456abcde"
        );
    }
}
