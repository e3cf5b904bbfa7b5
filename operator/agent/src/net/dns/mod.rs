//! The cluster DNS server (hickory) the agent runs on the bridge's gateway address: Service and Pod names
//! from reflectors on Services and Pods, NXDOMAIN for unknown names in the cluster domain, and every other
//! name forwarded to the host's resolvers. A query the server cannot parse is answered (FORMERR) or dropped
//! by hickory; it never stops the server.

mod forward;
mod records;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

pub use forward::upstreams_from_resolv_conf;
use records::{Answer, Snapshot};

use super::Error;

/// TTL of cluster answers: short, so that a client cache follows readiness (CoreDNS's default is 5 s).
const TTL: u32 = 1;
/// How long a TCP client may take to send its query.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the DNS server listens and whom it asks for names outside the cluster.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// UDP and TCP address; the agent uses `<gateway>:53`. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The host's resolvers ([`upstreams_from_resolv_conf`]); empty answers SERVFAIL for outside names.
    pub upstreams: Vec<SocketAddr>,
    pub cluster_domain: String,
}

/// A running DNS server; dropping it stops the server and its watches.
pub struct DnsServer {
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// The address it answers on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds the DNS server and starts answering. Cluster names are answered once the Service and Pod watches
/// have listed everything (SERVFAIL before that, so that clients retry rather than cache a wrong NXDOMAIN).
pub async fn serve(client: Client, config: DnsConfig) -> Result<DnsServer, Error> {
    let udp = tokio::net::UdpSocket::bind(config.listen)
        .await
        .map_err(Error::io(format!(
            "binding the DNS server to udp {}",
            config.listen
        )))?;
    let local_addr = udp
        .local_addr()
        .map_err(Error::io("reading the DNS server's address"))?;
    let tcp = tokio::net::TcpListener::bind(local_addr)
        .await
        .map_err(Error::io(format!(
            "binding the DNS server to tcp {local_addr}"
        )))?;

    let (services, services_writer) = reflector::store::<Service>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let synced = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![
        tokio::spawn(
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .modify(records::trim_service)
            .reflect(services_writer)
            .for_each(|_| async {}),
        ),
        tokio::spawn(
            watcher(Api::<Pod>::all(client), watcher::Config::default())
                .default_backoff()
                .modify(records::trim_pod)
                .reflect(pods_writer)
                .for_each(|_| async {}),
        ),
    ];
    {
        let (services, pods, synced) = (services.clone(), pods.clone(), synced.clone());
        tasks.push(tokio::spawn(async move {
            if services.wait_until_ready().await.is_ok() && pods.wait_until_ready().await.is_ok() {
                synced.store(true, Ordering::Release);
            }
        }));
    }

    let handler = Handler {
        services,
        pods,
        synced,
        cluster_domain: config
            .cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase(),
        upstreams: forward::Upstreams::new(config.upstreams),
    };
    let mut server = hickory_server::Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT, 65_535);
    tasks.push(tokio::spawn(async move {
        if let Err(err) = server.block_until_done().await {
            tracing::error!(%err, "the DNS server stopped");
        }
    }));
    tracing::info!(%local_addr, "DNS server listening");
    Ok(DnsServer { local_addr, tasks })
}

struct Handler {
    services: reflector::Store<Service>,
    pods: reflector::Store<Pod>,
    synced: Arc<AtomicBool>,
    cluster_domain: String,
    upstreams: forward::Upstreams,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::new(&request.queries, request.edns.as_ref());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let info = match request.request_info() {
            Ok(info) => info,
            Err(_) => {
                // Not exactly one query: nothing this server can answer.
                metadata.response_code = ResponseCode::FormErr;
                return send(&mut response, builder.build_no_records(metadata)).await;
            }
        };
        let query = info.query;
        let asked = query.name().to_string();
        let name = asked.trim_end_matches('.').to_ascii_lowercase();
        let answer = if self.in_cluster_domain(&name) && !self.synced.load(Ordering::Acquire) {
            metadata.response_code = ResponseCode::ServFail;
            return send(&mut response, builder.build_no_records(metadata)).await;
        } else {
            let services = self.services.state();
            let pods = self.pods.state();
            Snapshot {
                services: &services,
                pods: &pods,
                cluster_domain: &self.cluster_domain,
            }
            .resolve(&name, info.src.ip())
        };
        match answer {
            Answer::Addresses(ips) => {
                metadata.authoritative = true;
                let owner = Name::from(query.name().clone());
                let records: Vec<Record> = match query.query_type() {
                    RecordType::A | RecordType::ANY => ips
                        .iter()
                        .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(*ip))))
                        .collect(),
                    _ => Vec::new(),
                };
                let built = builder.build(metadata, records.iter(), [], [], []);
                send(&mut response, built).await
            }
            Answer::NxDomain => {
                metadata.authoritative = true;
                metadata.response_code = ResponseCode::NXDomain;
                send(&mut response, builder.build_no_records(metadata)).await
            }
            Answer::Forward => {
                let query = hickory_server::proto::op::Query::query(
                    Name::from(query.name().clone()),
                    query.query_type(),
                );
                match self.upstreams.ask(query).await {
                    Some(upstream) => {
                        metadata.response_code = upstream.metadata.response_code;
                        let built = builder.build(
                            metadata,
                            upstream.answers.iter(),
                            upstream.authorities.iter(),
                            [],
                            upstream.additionals.iter(),
                        );
                        send(&mut response, built).await
                    }
                    None => {
                        metadata.response_code = ResponseCode::ServFail;
                        send(&mut response, builder.build_no_records(metadata)).await
                    }
                }
            }
        }
    }
}

impl Handler {
    fn in_cluster_domain(&self, name: &str) -> bool {
        !name.contains('.')
            || name == self.cluster_domain
            || name.ends_with(&format!(".{}", self.cluster_domain))
    }
}

async fn send<'a, R, A, N, S, D>(
    response: &mut R,
    message: hickory_server::zone_handler::MessageResponse<'_, 'a, A, N, S, D>,
) -> ResponseInfo
where
    R: ResponseHandler,
    A: Iterator<Item = &'a Record> + Send + 'a,
    N: Iterator<Item = &'a Record> + Send + 'a,
    S: Iterator<Item = &'a Record> + Send + 'a,
    D: Iterator<Item = &'a Record> + Send + 'a,
{
    let fallback = *message.metadata();
    match response.send_response(message).await {
        Ok(info) => info,
        Err(err) => {
            tracing::debug!(%err, "sending a DNS response failed");
            let mut header = hickory_server::proto::op::Header {
                metadata: fallback,
                counts: Default::default(),
            };
            header.metadata.response_code = ResponseCode::ServFail;
            header.into()
        }
    }
}
