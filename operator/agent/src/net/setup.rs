//! `Network::setup`: the bridge with the gateway address, IPv4 forwarding, the masquerade table and the
//! IPAM store, after checking that the Pod CIDR collides with no host route.

use std::collections::HashMap;
use std::sync::Mutex;

use ipnet::Ipv4Net;

use super::{Error, NetConfig, Network, ipam, link, nft};

impl Network {
    /// Sets the node's Pod network up (idempotent) and returns the handle the kubelet keeps. Must run on a
    /// tokio runtime: the netlink connection is a task on it.
    pub async fn setup(config: NetConfig) -> Result<Network, Error> {
        config.validate()?;
        let netlink = link::connect()?;
        let own = link::index_of(&netlink, &config.bridge).await?;
        for route in link::host_routes(&netlink).await? {
            if own.is_some() && route.oif == own {
                continue;
            }
            if route.destination.contains(&config.cidr.network())
                || config.cidr.contains(&route.destination.network())
            {
                return Err(Error::CidrOverlap {
                    cidr: config.cidr,
                    route: route.destination,
                    device: route.device,
                });
            }
        }
        let ipam = ipam::Ipam::open(&config.state_dir, config.cidr)?;
        let gateway = Ipv4Net::new(config.gateway(), config.cidr.prefix_len())
            .map_err(|e| Error::Config(e.to_string()))?;
        let bridge_index = link::ensure_bridge(&netlink, &config.bridge, gateway).await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(Error::io("enabling IPv4 forwarding"))?;
        nft::apply(&config.nft_table(), &config.bridge, config.cidr)?;
        tracing::info!(bridge = %config.bridge, cidr = %config.cidr, "pod network ready");
        Ok(Network {
            config,
            netlink,
            bridge_index,
            ipam: Mutex::new(ipam),
            proxies: Mutex::new(HashMap::new()),
        })
    }
}
