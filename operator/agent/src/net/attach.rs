//! `Network::attach`: a Pod's address and its veth pair into the Pod's namespace.

use std::path::Path;
use std::time::Instant;

use ipnet::Ipv4Net;

use super::{Error, Network, PodKey, PodNetwork, host_veth_name, link};

impl Network {
    /// Connects the Pod's namespace to the bridge and returns its address. Idempotent per uid: a Pod that is
    /// already attached (an agent restart re-adopting it) keeps its address, veth and connections.
    pub async fn attach(&self, pod: &PodKey, netns: &Path) -> Result<PodNetwork, Error> {
        let started = Instant::now();
        let ip = self.lock_ipam().allocate(pod)?;
        let prefix = self.config.cidr.prefix_len();
        let address = Ipv4Net::new(ip, prefix).map_err(|e| Error::Config(e.to_string()))?;
        let gateway = self.config.gateway();
        let host = host_veth_name(&pod.uid);
        let attached = link::index_of(&self.netlink, &host).await?.is_some()
            && link::pod_side_ready(netns, address).await?;
        if !attached {
            let pod_side = link::PodSide {
                netns,
                address,
                gateway,
            };
            if let Err(err) =
                link::create_veth(&self.netlink, &host, self.bridge_index, &pod_side).await
            {
                let _ = self.lock_ipam().release(&pod.uid);
                return Err(err);
            }
        }
        // `micros` is what bench-network reports as the Pod's network setup time.
        tracing::info!(
            pod = %format!("{}/{}", pod.namespace, pod.name),
            %ip,
            veth = %host,
            created = !attached,
            micros = started.elapsed().as_micros() as u64,
            "pod attached"
        );
        Ok(PodNetwork {
            ip,
            gateway,
            prefix,
        })
    }

    /// The address a Pod holds, if it is attached.
    pub fn pod_ip(&self, pod_uid: &str) -> Option<std::net::Ipv4Addr> {
        self.lock_ipam().get(pod_uid)
    }

    pub(super) fn lock_ipam(&self) -> std::sync::MutexGuard<'_, super::ipam::Ipam> {
        // A poisoned lock means a panic while the store was being changed; the store on disk is still
        // consistent (it is replaced atomically), so the in-memory copy is used as it is.
        self.ipam.lock().unwrap_or_else(|e| e.into_inner())
    }
}
