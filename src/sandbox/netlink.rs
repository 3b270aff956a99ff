//! Links of container networks over netlink (rtnetlink): a bridge per
//! network in kiln's own network namespace, and a veth pair per container
//! whose one end goes into the container's namespace as `ethN`, with its
//! address and default route. Work inside a container's namespace is done
//! by a thread that joined it, which ends with the work.

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

/// What went wrong on a netlink socket or on the way to one.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The container's network namespace could not be opened.
    #[error("opening the network namespace of {pid}: {source}")]
    Namespace {
        /// The process whose namespace it is.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// The namespace could not be joined.
    #[error("joining the container's network namespace: {0}")]
    Join(nix::Error),
    /// The socket or its runtime could not be made.
    #[error("opening netlink: {0}")]
    Open(std::io::Error),
    /// The thread doing the work panicked.
    #[error("the netlink thread panicked")]
    Panicked,
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Refused {
        /// What was asked ("creating bridge kiln0").
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// A link that should be there is not.
    #[error("{0} is missing")]
    Missing(String),
}

/// Maps the kernel's refusal of `what`.
fn refused(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Refused { what, source }
}

/// A link that should be there and is not.
fn missing(what: impl Into<String>) -> impl FnOnce() -> NetlinkError {
    let what = what.into();
    move || NetlinkError::Missing(what)
}

/// How a container joins a network: the bridge, both ends' names, and the
/// container side's address.
#[derive(Clone, Debug)]
pub struct Attach {
    /// The network's bridge, in this namespace.
    pub bridge: String,
    /// The veth end left on the bridge (unique on the host).
    pub host_if: String,
    /// Its name inside the container (`eth0`).
    pub inner_if: String,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The network's subnet (address, prefix length), reached on the link.
    pub subnet: (Ipv4Addr, u8),
    /// The default route's gateway (none on an internal network).
    pub gateway: Option<Ipv4Addr>,
    /// The container side's MAC address.
    pub mac: [u8; 6],
    /// Its IPv6 address and the IPv6 subnet's prefix length (`--ipv6`).
    pub address6: Option<(Ipv6Addr, u8)>,
    /// The IPv6 default route's gateway.
    pub gateway6: Option<Ipv6Addr>,
}

/// Adds `ip/prefix` to link `index`; an IPv6 address without duplicate
/// address detection, usable at once (the address is the network's to
/// give: no other host has it).
async fn add_address(
    h: &Handle,
    index: u32,
    ip: IpAddr,
    prefix: u8,
) -> Result<(), rtnetlink::Error> {
    use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
    let mut req = h.address().add(index, ip, prefix);
    if ip.is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await
}

/// Runs `work` with a netlink handle on a thread of its own, first joining
/// the network namespace of `pid` when given.
fn with_handle<T: Send + 'static, F, Fut>(pid: Option<u32>, work: F) -> Result<T, NetlinkError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetlinkError>>,
{
    let ns = match pid {
        Some(pid) => Some(
            std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|source| NetlinkError::Namespace { pid, source })?,
        ),
        None => None,
    };
    std::thread::spawn(move || {
        if let Some(ns) = ns {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(NetlinkError::Join)?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(NetlinkError::Open)?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
            tokio::spawn(conn);
            work(handle).await
        })
    })
    .join()
    .map_err(|_| NetlinkError::Panicked)?
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, NetlinkError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(refused(format!("looking up {name}"))(e)),
    }
}

fn up(index: u32) -> LinkMessage {
    LinkUnspec::new_with_index(index).up().build()
}

/// Makes the bridge `name` unless it exists, with `gateway/prefix` (and
/// `gateway6/prefix`) as its addresses, and brings it up.
pub fn ensure_bridge(
    name: &str,
    gateway: Option<(Ipv4Addr, u8)>,
    gateway6: Option<(Ipv6Addr, u8)>,
) -> Result<(), NetlinkError> {
    let name = name.to_string();
    let gateways: Vec<(IpAddr, u8)> = gateway
        .map(|(g, p)| (IpAddr::V4(g), p))
        .into_iter()
        .chain(gateway6.map(|(g, p)| (IpAddr::V6(g), p)))
        .collect();
    with_handle(None, move |h| async move {
        if index_of(&h, &name).await?.is_none() {
            h.link()
                .add(LinkBridge::new(&name).build())
                .execute()
                .await
                .map_err(refused(format!("creating bridge {name}")))?;
        }
        let index = index_of(&h, &name)
            .await?
            .ok_or_else(missing(format!("bridge {name}")))?;
        for (gw, prefix) in gateways {
            use rtnetlink::packet_route::address::AddressAttribute;
            let mut has = false;
            let mut all = h.address().get().set_link_index_filter(index).execute();
            while let Some(a) = all
                .try_next()
                .await
                .map_err(refused(format!("reading {name}'s addresses")))?
            {
                has |= a.header.index == index
                    && a.attributes
                        .iter()
                        .any(|at| matches!(at, AddressAttribute::Address(ip) if *ip == gw));
            }
            if !has {
                add_address(&h, index, gw, prefix)
                    .await
                    .map_err(refused(format!("giving {name} the address {gw}/{prefix}")))?;
            }
        }
        h.link()
            .set(up(index))
            .execute()
            .await
            .map_err(refused(format!("bringing {name} up")))
    })
}

/// Deletes the link `name` in this namespace; false when there was none.
pub fn delete_link(name: &str) -> Result<bool, NetlinkError> {
    delete_in(None, name)
}

/// Deletes the link `name` in the network namespace of `pid` (or this
/// one); false when there was none.
fn delete_in(pid: Option<u32>, name: &str) -> Result<bool, NetlinkError> {
    let name = name.to_string();
    with_handle(pid, move |h| async move {
        match index_of(&h, &name).await? {
            Some(index) => h
                .link()
                .del(index)
                .execute()
                .await
                .map(|()| true)
                .map_err(refused(format!("deleting {name}"))),
            None => Ok(false),
        }
    })
}

/// The names of this namespace's links that start with `prefix`.
pub fn links_named(prefix: &str) -> Result<Vec<String>, NetlinkError> {
    let prefix = prefix.to_string();
    with_handle(None, move |h| async move {
        let mut names = Vec::new();
        let mut links = h.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(refused("listing links"))? {
            for a in &link.attributes {
                if let LinkAttribute::IfName(n) = a
                    && n.starts_with(&prefix)
                {
                    names.push(n.clone());
                }
            }
        }
        Ok(names)
    })
}

/// The IPv4 networks on this namespace's links, as (address, prefix).
pub fn addresses() -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    with_handle(None, move |h| async move {
        let mut found = Vec::new();
        let mut all = h.address().get().execute();
        while let Some(a) = all.try_next().await.map_err(refused("listing addresses"))? {
            for attr in &a.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V4(ip)) = attr {
                    found.push((*ip, a.header.prefix_len));
                }
            }
        }
        Ok(found)
    })
}

/// Connects the container whose init is `pid` to a bridge: a veth pair,
/// one end on the bridge, the other moved into the container's namespace,
/// renamed, addressed, up, with a default route through the gateway. On
/// failure nothing is left (deleting the host end deletes its peer).
pub fn attach(pid: u32, a: &Attach) -> Result<(), NetlinkError> {
    // A temporary name for the container's end while it is still here:
    // `ethN` may exist on the host.
    let peer = format!("{}p", &a.host_if[..a.host_if.len().min(14)]);
    // The pair is made first and alone: when that fails (a link of that
    // name exists), nothing is deleted, since nothing here was made.
    {
        let (a, peer) = (a.clone(), peer.clone());
        with_handle(None, move |h| async move {
            h.link()
                .add(LinkVeth::new(&a.host_if, &peer).build())
                .execute()
                .await
                .map_err(refused(format!("creating veth {}", a.host_if)))
        })?;
    }
    let made = {
        let (a, peer) = (a.clone(), peer.clone());
        with_handle(None, move |h| async move {
            let host = index_of(&h, &a.host_if)
                .await?
                .ok_or_else(missing("the veth"))?;
            let bridge = index_of(&h, &a.bridge)
                .await?
                .ok_or_else(missing(format!("bridge {}", a.bridge)))?;
            let inner = index_of(&h, &peer)
                .await?
                .ok_or_else(missing("the veth peer"))?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(host)
                        .controller(bridge)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(refused(format!("putting {} on {}", a.host_if, a.bridge)))?;
            h.link()
                .set(LinkUnspec::new_with_index(inner).setns_by_pid(pid).build())
                .execute()
                .await
                .map_err(refused(format!("moving {peer} into the container")))
        })
    };
    let inside = made.and_then(|()| {
        let a = a.clone();
        with_handle(Some(pid), move |h| async move {
            let index = index_of(&h, &peer)
                .await?
                .ok_or_else(missing("the veth in the container"))?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .name(a.inner_if.clone())
                        .address(a.mac.to_vec())
                        .build(),
                )
                .execute()
                .await
                .map_err(refused(format!("naming {}", a.inner_if)))?;
            // The address is a /32 and the subnet a route on the link:
            // glibc's getaddrinfo sorts IPv4 answers by the prefix they
            // share with the source address when both are in the source's
            // subnet (RFC 6724 rule 9), which would undo the resolver's
            // round robin; on a /32 no other address is, so the order the
            // resolver gives is the order the client tries.
            h.address()
                .add(index, a.address.into(), 32)
                .execute()
                .await
                .map_err(refused(format!("giving {} {}", a.inner_if, a.address)))?;
            if let Some((ip6, prefix)) = a.address6 {
                add_address(&h, index, ip6.into(), prefix)
                    .await
                    .map_err(refused(format!("giving {} {ip6}", a.inner_if)))?;
            }
            h.link()
                .set(up(index))
                .execute()
                .await
                .map_err(refused(format!("bringing {} up", a.inner_if)))?;
            let link_route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(a.subnet.0, a.subnet.1)
                .output_interface(index)
                .pref_source(a.address)
                .scope(RouteScope::Link)
                .build();
            h.route()
                .add(link_route)
                .execute()
                .await
                .map_err(refused(format!(
                    "adding the route to {}/{}",
                    a.subnet.0, a.subnet.1
                )))?;
            if let Some(gw) = a.gateway {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .output_interface(index)
                    .gateway(gw)
                    .build();
                h.route()
                    .add(route)
                    .execute()
                    .await
                    .map_err(refused(format!("adding the default route via {gw}")))?;
            }
            if let Some(gw) = a.gateway6 {
                let route = RouteMessageBuilder::<Ipv6Addr>::new()
                    .output_interface(index)
                    .gateway(gw)
                    .build();
                h.route()
                    .add(route)
                    .execute()
                    .await
                    .map_err(refused(format!("adding the IPv6 default route via {gw}")))?;
            }
            Ok(())
        })
    });
    if inside.is_err() {
        let _ = delete_link(&a.host_if);
    }
    inside
}

/// Deletes the interface `name` inside the network namespace of `pid`
/// (`network disconnect`): its veth peer goes with it.
pub fn detach(pid: u32, name: &str) -> Result<(), NetlinkError> {
    delete_in(Some(pid), name).map(drop)
}

/// Brings up `lo` in the network namespace of `pid` (before the init does,
/// so that a resolver can bind 127.0.0.11 there before the process starts).
pub fn loopback_up(pid: u32) -> Result<(), NetlinkError> {
    with_handle(Some(pid), move |h| async move {
        let index = index_of(&h, "lo")
            .await?
            .ok_or_else(missing("the container's lo"))?;
        h.link()
            .set(up(index))
            .execute()
            .await
            .map_err(refused("bringing lo up"))
    })
}
