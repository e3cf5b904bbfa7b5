//! tcpSocket: success when a TCP connection opens, as upstream (the connection is closed at once).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, TCPSocketAction};

use super::connect::{connect, describe};
use super::{Outcome, resolve_port};

pub(super) async fn probe(
    action: &TCPSocketAction,
    ports: &[ContainerPort],
    default_host: IpAddr,
    netns: Option<&Path>,
    timeout: Duration,
) -> Outcome {
    let port = match resolve_port(&action.port, ports) {
        Ok(port) => port,
        Err(message) => return Outcome::Failure(message),
    };
    let host = match action.host.as_deref().filter(|h| !h.is_empty()) {
        None => default_host,
        Some(host) => match super::http::resolve_host(host).await {
            Ok(ip) => ip,
            Err(message) => return Outcome::Failure(message),
        },
    };
    let addr = SocketAddr::new(host, port);
    match tokio::time::timeout(timeout, connect(netns, addr)).await {
        Ok(Ok(_stream)) => Outcome::Success,
        Ok(Err(err)) => Outcome::Failure(format!("dial tcp {addr}: {}", describe(&err))),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}
