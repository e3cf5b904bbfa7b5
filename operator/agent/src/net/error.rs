//! The network module's one error type: each variant says what failed and, where the user can act, how.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Protocol;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the pod CIDR {cidr} overlaps the host route {route} (dev {device}): choose another --pod-cidr"
    )]
    CidrOverlap {
        cidr: ipnet::Ipv4Net,
        route: ipnet::Ipv4Net,
        device: String,
    },
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft failed while {what}: {stderr}")]
    Nft { what: String, stderr: String },
    #[error("no free address left in {cidr} (every address is allocated to a Pod)")]
    AddressesExhausted { cidr: ipnet::Ipv4Net },
    #[error(
        "the IPAM state {path} was written for CIDR {stored}, not {configured}: run `berth down` or keep the old --pod-cidr"
    )]
    CidrChanged {
        path: PathBuf,
        stored: ipnet::Ipv4Net,
        configured: ipnet::Ipv4Net,
    },
    #[error("the IPAM state {path} is unreadable: {message}")]
    State { path: PathBuf, message: String },
    #[error("host port {protocol} {addr} is already in use: {source}")]
    PortInUse {
        protocol: Protocol,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} panicked")]
    Panicked(&'static str),
    #[error("the link {0} was not found")]
    LinkNotFound(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
        let what = what.into();
        move |source| Error::Netlink { what, source }
    }
}
