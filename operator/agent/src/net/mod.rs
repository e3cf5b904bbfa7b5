//! Pod networking: the bridge, a veth pair and an address per Pod, published host ports, and the DNS server
//! that answers Service names. The kubelet creates each Pod's network namespace and calls this module; it
//! never sees netlink, nftables or the IPAM store.
//!
//! The API, in the order the kubelet uses it:
//! - [`Network::setup`] with a [`NetConfig`] once at agent start: the bridge (its first address is the
//!   gateway), IPv4 forwarding and an nftables table of its own that masquerades Pod egress. Idempotent: a
//!   restarted agent calls it again and keeps every Pod's connectivity.
//! - [`Network::attach`] per Pod with its namespace path: a veth pair, an address from the IPAM store (the
//!   same uid gets the same address again, so re-adoption after a restart is a no-op), a default route.
//! - [`Network::publish`] for the Pod's `hostPort`s: userspace TCP/UDP proxies to the Pod's address; a port
//!   already taken is an [`Error::PortInUse`] naming it (the kubelet reports it as an Event).
//! - [`Network::detach`] when the Pod goes: veth, address and proxies are released.
//! - [`Network::teardown`] for `berth down`: the veths left on the bridge, the bridge, the nftables table and
//!   the IPAM state.
//! - [`dns::serve`] answers Service and Pod names on the gateway address; [`resolv_conf`] and [`hosts_file`]
//!   are the files the kubelet writes into each Pod.
//!
//! `hostNetwork: true` Pods need nothing from here: the kubelet gives them no namespace of their own, so they
//! share the host's network (and the host's `/etc/resolv.conf`, as Kubernetes' default `ClusterFirst` does
//! for host-network Pods).

mod attach;
mod detach;
pub mod dns;
mod error;
mod files;
mod ipam;
mod link;
mod nft;
mod proxy;
mod setup;
mod teardown;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Mutex;

pub use error::Error;
pub use files::{hosts_file, resolv_conf};
use ipnet::Ipv4Net;

/// The bridge `berth up` uses unless told otherwise.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The Pod CIDR `berth up` uses unless told otherwise (checked against the host's routes at setup).
pub const DEFAULT_CIDR: &str = "10.89.0.0/16";
/// The cluster domain, as in Kubernetes.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The node's network settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The bridge's name (at most 15 characters: letters, digits, `_`, `-`, `.`).
    pub bridge: String,
    /// The Pod CIDR; its first host address is the bridge's address and the Pods' gateway.
    pub cidr: Ipv4Net,
    /// Where the IPAM store lives; it must survive agent restarts.
    pub state_dir: PathBuf,
    /// The DNS domain of Services and Pods.
    pub cluster_domain: String,
}

impl NetConfig {
    /// The defaults (`berth0`, 10.89.0.0/16, cluster.local) with the given state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> NetConfig {
        NetConfig {
            bridge: DEFAULT_BRIDGE.to_owned(),
            cidr: DEFAULT_CIDR.parse().unwrap_or_else(|_| {
                // The constant above is a valid CIDR; the fallback only keeps this free of a panic.
                Ipv4Net::new(Ipv4Addr::new(10, 89, 0, 0), 16).unwrap_or_default()
            }),
            state_dir: state_dir.into(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
        }
    }

    /// The bridge's address: the first host address of the CIDR. Pods route through it and ask it for DNS.
    pub fn gateway(&self) -> Ipv4Addr {
        let base = u32::from(self.cidr.network());
        Ipv4Addr::from(base + 1)
    }

    /// The nftables table (family `ip`) that holds this bridge's masquerade rule: one per bridge, so that
    /// several agents side by side never touch each other's rules.
    pub fn nft_table(&self) -> String {
        format!("berth_{}", self.bridge.replace(['-', '.'], "_"))
    }

    fn validate(&self) -> Result<(), Error> {
        let name_ok = !self.bridge.is_empty()
            && self.bridge.len() <= 15
            && self
                .bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(Error::Config(format!(
                "bridge name {:?} must be 1 to 15 letters, digits, '_', '-' or '.'",
                self.bridge
            )));
        }
        if self.cidr.prefix_len() > 28 {
            return Err(Error::Config(format!(
                "pod CIDR {} is too small: use a prefix of /28 or shorter",
                self.cidr
            )));
        }
        if self.cidr != self.cidr.trunc() {
            return Err(Error::Config(format!(
                "pod CIDR {} has host bits set: did you mean {}?",
                self.cidr,
                self.cidr.trunc()
            )));
        }
        Ok(())
    }
}

/// Which Pod an address or a veth belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodKey {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// What a Pod got from [`Network::attach`]: its address (`status.podIP`), gateway and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
}

/// A container port's protocol, as in `containerPort.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// One `hostPort` to publish: `host_ip:host_port` on the host forwards to `pod_ip:container_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: Protocol,
    /// `hostIP`; None listens on every address (0.0.0.0), as Kubernetes does.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

/// The node's Pod network, set up once per agent. Cheap to share behind an `Arc`.
pub struct Network {
    config: NetConfig,
    netlink: rtnetlink::Handle,
    bridge_index: u32,
    ipam: Mutex<ipam::Ipam>,
    /// The running port proxies per Pod uid; dropping them stops their listeners.
    proxies: Mutex<HashMap<String, Vec<proxy::Proxy>>>,
}

impl Network {
    pub fn config(&self) -> &NetConfig {
        &self.config
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .field("bridge_index", &self.bridge_index)
            .finish_non_exhaustive()
    }
}

/// The host-side veth of a Pod: derived from its uid, so a restarted agent finds it again. `bv` and 12 hex
/// digits of the uid's SHA-256 stay within the kernel's 15 characters.
pub fn host_veth_name(pod_uid: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(pod_uid.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("bv{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_deterministic_and_short() {
        let a = host_veth_name("6f1c1f1e-5a3b-4d6e-9b1a-0c2d3e4f5a6b");
        assert_eq!(a, host_veth_name("6f1c1f1e-5a3b-4d6e-9b1a-0c2d3e4f5a6b"));
        assert_ne!(a, host_veth_name("6f1c1f1e-5a3b-4d6e-9b1a-0c2d3e4f5a6c"));
        assert!(a.len() <= 15, "{a}");
    }

    #[test]
    fn default_config_has_the_first_address_as_gateway() {
        let config = NetConfig::new("/tmp/x");
        assert_eq!(config.gateway(), Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(config.nft_table(), "berth_berth0");
        config.validate().unwrap();
    }

    #[test]
    fn bad_bridge_names_and_cidrs_are_rejected() {
        let mut config = NetConfig::new("/tmp/x");
        config.bridge = "a-very-long-bridge-name".into();
        assert!(config.validate().is_err());
        let mut config = NetConfig::new("/tmp/x");
        config.cidr = "10.89.0.1/16".parse().unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("10.89.0.0/16")
        );
        config.cidr = "10.89.0.0/30".parse().unwrap();
        assert!(config.validate().is_err());
    }
}
