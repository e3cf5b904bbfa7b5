//! Links, addresses and routes through rtnetlink: the bridge, the veth pairs, and what goes inside a Pod's
//! namespace. Work inside a namespace runs on a short-lived thread that joins it (setns changes only the
//! calling thread), with a netlink connection of its own.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::Error;

/// The Pod's side of its veth pair.
const POD_LINK: &str = "eth0";
/// The main routing table's id.
const MAIN_TABLE: u32 = 254;

/// Opens a netlink connection driven by a task on the current tokio runtime.
pub(super) fn connect() -> Result<Handle, Error> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(Error::io("opening a netlink socket"))?;
    tokio::spawn(connection);
    Ok(handle)
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The index of the link called `name`, if it exists.
pub(super) async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, Error> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(err) if errno(&err) == Some(libc::ENODEV) => Ok(None),
        Err(err) => Err(Error::netlink(format!("looking up link {name}"))(err)),
    }
}

/// Creates the bridge if it is missing, gives it `address` and brings it up. Returns its index.
pub(super) async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    address: Ipv4Net,
) -> Result<u32, Error> {
    if index_of(handle, name).await?.is_none() {
        match handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(err) if errno(&err) == Some(libc::EEXIST) => {}
            Err(err) => return Err(Error::netlink(format!("creating bridge {name}"))(err)),
        }
    }
    let index = index_of(handle, name)
        .await?
        .ok_or_else(|| Error::LinkNotFound(name.to_owned()))?;
    ensure_address(handle, index, address, name).await?;
    set_bridge_mac(handle, index, name).await?;
    set_up(handle, index, name).await?;
    Ok(index)
}

/// A bridge whose MAC address was never set takes the lowest MAC of its ports and changes it as Pods come and
/// go; every Pod's ARP entry for the gateway (its DNS server) then points at a MAC that no longer answers until
/// it expires, tens of seconds later. Setting the address pins it.
async fn set_bridge_mac(handle: &Handle, index: u32, name: &str) -> Result<(), Error> {
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .address(bridge_mac(name).to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(Error::netlink(format!("setting the MAC address of {name}")))
}

/// A locally administered unicast MAC derived from the bridge's name: the same across agent restarts.
fn bridge_mac(name: &str) -> [u8; 6] {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(name.as_bytes());
    [0x02, hash[0], hash[1], hash[2], hash[3], hash[4]]
}

async fn ensure_address(
    handle: &Handle,
    index: u32,
    address: Ipv4Net,
    name: &str,
) -> Result<(), Error> {
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(Error::netlink(format!("listing addresses of {name}")))?
    {
        let present = msg.header.prefix_len == address.prefix_len()
            && msg.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Address(ip) if *ip == std::net::IpAddr::V4(address.addr()))
            });
        if present {
            return Ok(());
        }
    }
    match handle
        .address()
        .add(index, address.addr().into(), address.prefix_len())
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(err) if errno(&err) == Some(libc::EEXIST) => Ok(()),
        Err(err) => Err(Error::netlink(format!("adding {address} to {name}"))(err)),
    }
}

async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), Error> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(Error::netlink(format!("bringing {name} up")))
}

/// Deletes a link by name; a missing one is fine.
pub(super) async fn delete(handle: &Handle, name: &str) -> Result<bool, Error> {
    let Some(index) = index_of(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(err) if errno(&err) == Some(libc::ENODEV) => Ok(false),
        Err(err) => Err(Error::netlink(format!("deleting link {name}"))(err)),
    }
}

/// The names of the links whose controller is the bridge (the Pods' host-side veths).
pub(super) async fn ports_of(handle: &Handle, bridge_index: u32) -> Result<Vec<String>, Error> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(Error::netlink("listing links"))?;
    Ok(links
        .into_iter()
        .filter(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == bridge_index))
        })
        .filter_map(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name),
                _ => None,
            })
        })
        .collect())
}

/// A host route: its destination and the device it goes through.
pub(super) struct HostRoute {
    pub destination: Ipv4Net,
    pub device: String,
    pub oif: Option<u32>,
}

/// The IPv4 routes of the main table, default route excluded (every CIDR "overlaps" 0.0.0.0/0).
pub(super) async fn host_routes(handle: &Handle) -> Result<Vec<HostRoute>, Error> {
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(Error::netlink("listing host routes"))?;
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(Error::netlink("listing links"))?;
    let name_of = |index: u32| {
        links
            .iter()
            .find(|l| l.header.index == index)
            .and_then(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| format!("#{index}"))
    };
    let mut out = Vec::new();
    for route in routes {
        let table = route
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(route.header.table));
        let prefix = route.header.destination_prefix_length;
        if table != MAIN_TABLE || prefix == 0 {
            continue;
        }
        let Some(dest) = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        }) else {
            continue;
        };
        let oif = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if let Ok(destination) = Ipv4Net::new(dest, prefix) {
            out.push(HostRoute {
                destination,
                device: oif.map(name_of).unwrap_or_else(|| "?".to_owned()),
                oif,
            });
        }
    }
    Ok(out)
}

/// What goes inside a Pod's namespace.
pub(super) struct PodSide<'a> {
    pub netns: &'a Path,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// Creates the veth pair `host` (on the bridge, up) and `eth0`, created right inside the Pod's namespace
/// (so its name never meets the host's links), addressed, with a default route through the gateway and
/// loopback up. A stale pair with the same host name is replaced.
pub(super) async fn create_veth(
    handle: &Handle,
    host: &str,
    bridge_index: u32,
    pod: &PodSide<'_>,
) -> Result<(), Error> {
    let ns = std::fs::File::open(pod.netns)
        .map_err(Error::io(format!("opening {}", pod.netns.display())))?;
    delete(handle, host).await?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(POD_LINK.to_owned())
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let message = LinkVeth::new(host, POD_LINK)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge_index)
        .up()
        .build();
    handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(Error::netlink(format!("creating veth pair {host}")))?;
    let result = inside(pod.netns, configure_pod_side(pod.address, pod.gateway)).await;
    if result.is_err() {
        let _ = delete(handle, host).await;
    }
    result
}

/// Whether the Pod's namespace already has `eth0` with `address` (a re-adopted Pod keeps its network).
pub(super) async fn pod_side_ready(netns: &Path, address: Ipv4Net) -> Result<bool, Error> {
    inside(netns, async move {
        let handle = connect()?;
        let Some(index) = index_of(&handle, POD_LINK).await? else {
            return Ok(false);
        };
        let addrs: Vec<_> = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(Error::netlink("listing addresses of eth0"))?;
        Ok(addrs.iter().any(|m| {
            m.header.prefix_len == address.prefix_len()
                && m.attributes.iter().any(|a| {
                    matches!(a, AddressAttribute::Address(ip) if *ip == std::net::IpAddr::V4(address.addr()))
                })
        }))
    })
    .await
}

async fn configure_pod_side(address: Ipv4Net, gateway: Ipv4Addr) -> Result<(), Error> {
    let handle = connect()?;
    let index = index_of(&handle, POD_LINK)
        .await?
        .ok_or_else(|| Error::LinkNotFound(POD_LINK.to_owned()))?;
    ensure_address(&handle, index, address, POD_LINK).await?;
    set_up(&handle, index, POD_LINK).await?;
    if let Some(lo) = index_of(&handle, "lo").await? {
        set_up(&handle, lo, "lo").await?;
    }
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    match handle.route().add(route).execute().await {
        Ok(()) => Ok(()),
        Err(err) if errno(&err) == Some(libc::EEXIST) => Ok(()),
        Err(err) => Err(Error::netlink(format!(
            "adding the default route via {gateway}"
        ))(err)),
    }
}

/// Runs `work` on a thread that has joined the network namespace at `netns`, with a runtime of its own.
async fn inside<T, F>(netns: &Path, work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, Error>> + Send + 'static,
{
    let ns =
        std::fs::File::open(netns).map_err(Error::io(format!("opening {}", netns.display())))?;
    let what = format!("entering {}", netns.display());
    tokio::task::spawn_blocking(move || {
        // The thread is a fresh one: setns on a pooled blocking thread would leave it in the Pod's
        // namespace for the next task, so the work runs on a thread of its own that ends with it.
        std::thread::spawn(move || -> Result<T, Error> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io(what.clone())(e.into()))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::io("starting a runtime inside the namespace"))?;
            runtime.block_on(work)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Panicked("a namespace worker thread")))
    })
    .await
    .unwrap_or_else(|_| Err(Error::Panicked("a namespace worker task")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_macs_are_stable_locally_administered_unicast() {
        let mac = bridge_mac("berth0");
        assert_eq!(mac, bridge_mac("berth0"));
        assert_ne!(mac, bridge_mac("berth1"));
        assert_eq!(mac[0] & 0b11, 0b10, "locally administered, unicast");
    }
}
