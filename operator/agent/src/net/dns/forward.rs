//! Forwarding names outside the cluster to the host's resolvers, with hickory's client: each upstream in
//! turn until one answers. Truncated UDP answers are passed on truncated (the client then retries over TCP,
//! which this server also serves).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use hickory_server::net::client::Client;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::net::xfer::DnsHandle;
use hickory_server::proto::op::{DnsRequestOptions, Message, Query};

/// How long one upstream may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Upstreams {
    clients: Vec<(SocketAddr, Client<TokioRuntimeProvider>)>,
}

impl Upstreams {
    pub(super) fn new(addrs: Vec<SocketAddr>) -> Upstreams {
        let clients = addrs
            .into_iter()
            .map(|addr| {
                let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::new())
                    .with_timeout(Some(UPSTREAM_TIMEOUT))
                    .build();
                let (client, background) = Client::from_sender(stream);
                tokio::spawn(background);
                (addr, client)
            })
            .collect();
        Upstreams { clients }
    }

    /// The first upstream answer, or None when every upstream failed.
    pub(super) async fn ask(&self, query: Query) -> Option<Message> {
        for (addr, client) in &self.clients {
            let mut options = DnsRequestOptions::default();
            options.recursion_desired = true;
            match client.lookup(query.clone(), options).next().await {
                Some(Ok(response)) => return Some(response.into_message()),
                Some(Err(err)) => tracing::debug!(upstream = %addr, %err, "upstream DNS failed"),
                None => tracing::debug!(upstream = %addr, "upstream DNS gave no answer"),
            }
        }
        None
    }
}

/// The `nameserver` lines of a resolv.conf, on port 53.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n\
                    nameserver not-an-ip\noptions ndots:1\n";
        assert_eq!(
            upstreams_from_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
