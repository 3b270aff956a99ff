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
fn with_handle<T: Send + 'static, F, Fut>(pid: Option<u32>, work: F) -> Result<T, String>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let ns = match pid {
        Some(pid) => Some(
            std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|e| format!("opening the network namespace of {pid}: {e}"))?,
        ),
        None => None,
    };
    std::thread::spawn(move || {
        if let Some(ns) = ns {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("joining the container's network namespace: {e}"))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("starting netlink: {e}"))?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| format!("opening netlink: {e}"))?;
            tokio::spawn(conn);
            work(handle).await
        })
    })
    .join()
    .map_err(|_| "the netlink thread panicked".to_string())?
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, String> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(format!("looking up {name}: {e}")),
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
) -> Result<(), String> {
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
                .map_err(|e| format!("creating bridge {name}: {e}"))?;
        }
        let index = index_of(&h, &name)
            .await?
            .ok_or_else(|| format!("bridge {name} vanished"))?;
        for (gw, prefix) in gateways {
            use rtnetlink::packet_route::address::AddressAttribute;
            let mut has = false;
            let mut all = h.address().get().set_link_index_filter(index).execute();
            while let Some(a) = all
                .try_next()
                .await
                .map_err(|e| format!("reading {name}'s addresses: {e}"))?
            {
                has |= a.header.index == index
                    && a.attributes
                        .iter()
                        .any(|at| matches!(at, AddressAttribute::Address(ip) if *ip == gw));
            }
            if !has {
                add_address(&h, index, gw, prefix)
                    .await
                    .map_err(|e| format!("giving {name} the address {gw}/{prefix}: {e}"))?;
            }
        }
        h.link()
            .set(up(index))
            .execute()
            .await
            .map_err(|e| format!("bringing {name} up: {e}"))
    })
}

/// Deletes the link `name` in this namespace; false when there was none.
pub fn delete_link(name: &str) -> Result<bool, String> {
    delete_in(None, name)
}

/// Deletes the link `name` in the network namespace of `pid` (or this
/// one); false when there was none.
fn delete_in(pid: Option<u32>, name: &str) -> Result<bool, String> {
    let name = name.to_string();
    with_handle(pid, move |h| async move {
        match index_of(&h, &name).await? {
            Some(index) => h
                .link()
                .del(index)
                .execute()
                .await
                .map(|()| true)
                .map_err(|e| format!("deleting {name}: {e}")),
            None => Ok(false),
        }
    })
}

/// The names of this namespace's links that start with `prefix`.
pub fn links_named(prefix: &str) -> Result<Vec<String>, String> {
    let prefix = prefix.to_string();
    with_handle(None, move |h| async move {
        let mut names = Vec::new();
        let mut links = h.link().get().execute();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|e| format!("listing links: {e}"))?
        {
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
pub fn addresses() -> Result<Vec<(Ipv4Addr, u8)>, String> {
    use rtnetlink::packet_route::address::AddressAttribute;
    with_handle(None, move |h| async move {
        let mut found = Vec::new();
        let mut all = h.address().get().execute();
        while let Some(a) = all
            .try_next()
            .await
            .map_err(|e| format!("listing addresses: {e}"))?
        {
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
pub fn attach(pid: u32, a: &Attach) -> Result<(), String> {
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
                .map_err(|e| format!("creating veth {}: {e}", a.host_if))
        })?;
    }
    let made = {
        let (a, peer) = (a.clone(), peer.clone());
        with_handle(None, move |h| async move {
            let host = index_of(&h, &a.host_if).await?.ok_or("the veth vanished")?;
            let bridge = index_of(&h, &a.bridge)
                .await?
                .ok_or_else(|| format!("bridge {} is missing", a.bridge))?;
            let inner = index_of(&h, &peer).await?.ok_or("the veth peer vanished")?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(host)
                        .controller(bridge)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| format!("putting {} on {}: {e}", a.host_if, a.bridge))?;
            h.link()
                .set(LinkUnspec::new_with_index(inner).setns_by_pid(pid).build())
                .execute()
                .await
                .map_err(|e| format!("moving {peer} into the container: {e}"))
        })
    };
    let inside =
        made.and_then(|()| {
            let a = a.clone();
            with_handle(Some(pid), move |h| async move {
                let index = index_of(&h, &peer)
                    .await?
                    .ok_or("the veth did not reach the container")?;
                h.link()
                    .set(
                        LinkUnspec::new_with_index(index)
                            .name(a.inner_if.clone())
                            .address(a.mac.to_vec())
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(|e| format!("naming {}: {e}", a.inner_if))?;
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
                    .map_err(|e| format!("giving {} {}: {e}", a.inner_if, a.address))?;
                if let Some((ip6, prefix)) = a.address6 {
                    add_address(&h, index, ip6.into(), prefix)
                        .await
                        .map_err(|e| format!("giving {} {ip6}: {e}", a.inner_if))?;
                }
                h.link()
                    .set(up(index))
                    .execute()
                    .await
                    .map_err(|e| format!("bringing {} up: {e}", a.inner_if))?;
                let link_route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(a.subnet.0, a.subnet.1)
                    .output_interface(index)
                    .pref_source(a.address)
                    .scope(RouteScope::Link)
                    .build();
                h.route().add(link_route).execute().await.map_err(|e| {
                    format!("adding the route to {}/{}: {e}", a.subnet.0, a.subnet.1)
                })?;
                if let Some(gw) = a.gateway {
                    let route = RouteMessageBuilder::<Ipv4Addr>::new()
                        .output_interface(index)
                        .gateway(gw)
                        .build();
                    h.route()
                        .add(route)
                        .execute()
                        .await
                        .map_err(|e| format!("adding the default route via {gw}: {e}"))?;
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
                        .map_err(|e| format!("adding the IPv6 default route via {gw}: {e}"))?;
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
pub fn detach(pid: u32, name: &str) -> Result<(), String> {
    delete_in(Some(pid), name).map(drop)
}

/// Brings up `lo` in the network namespace of `pid` (before the init does,
/// so that a resolver can bind 127.0.0.11 there before the process starts).
pub fn loopback_up(pid: u32) -> Result<(), String> {
    with_handle(Some(pid), move |h| async move {
        let index = index_of(&h, "lo").await?.ok_or("the container has no lo")?;
        h.link()
            .set(up(index))
            .execute()
            .await
            .map_err(|e| format!("bringing lo up: {e}"))
    })
}
