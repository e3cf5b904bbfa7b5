//! hostPort publishing: a userspace proxy per port, listening on the host and connecting to the Pod's
//! address through the bridge. TCP connections are spliced both ways; UDP gets one upstream socket per client
//! address, dropped after an idle timeout. A Pod's proxies stop when their handles drop.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

use super::{Error, HostPort, Network, Protocol};

/// How long a UDP client may stay silent before its session (and upstream socket) is dropped.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// The largest UDP datagram.
const UDP_BUFFER: usize = 65_536;

/// A running proxy; dropping it stops the listener and every connection it carries.
pub(super) struct Proxy {
    task: JoinHandle<()>,
}

impl Proxy {
    async fn stop(mut self) {
        self.task.abort();
        // The task's future (and with it the socket) is dropped by the time the aborted handle resolves.
        let _ = (&mut self.task).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Network {
    /// Publishes the Pod's host ports, replacing any it had. All or nothing: a port that cannot be bound (in
    /// use, or an address the host lacks) is an error naming it, and none of the Pod's ports stays open.
    pub async fn publish(
        &self,
        pod_uid: &str,
        ports: &[HostPort],
        pod_ip: Ipv4Addr,
    ) -> Result<(), Error> {
        self.unpublish(pod_uid).await;
        // Every socket is bound before any proxy starts: on an error the bound ones close right here, as
        // they drop, instead of with an aborted task some time later.
        let mut bound = Vec::with_capacity(ports.len());
        for port in ports {
            let listen = SocketAddr::new(
                port.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                port.host_port,
            );
            let taken = |source| Error::PortInUse {
                protocol: port.protocol,
                addr: listen,
                source,
            };
            let socket = match port.protocol {
                Protocol::Tcp => Bound::Tcp(bind_tcp(listen).map_err(taken)?),
                Protocol::Udp => Bound::Udp(bind_udp(listen).map_err(taken)?),
            };
            bound.push((
                socket,
                listen,
                SocketAddr::new(IpAddr::V4(pod_ip), port.container_port),
            ));
        }
        let proxies = bound
            .into_iter()
            .map(|(socket, listen, target)| {
                let task = match socket {
                    Bound::Tcp(listener) => tokio::spawn(serve_tcp(listener, target)),
                    Bound::Udp(socket) => tokio::spawn(serve_udp(Arc::new(socket), target)),
                };
                tracing::info!(pod_uid, %listen, %target, "host port published");
                Proxy { task }
            })
            .collect();
        self.lock_proxies().insert(pod_uid.to_owned(), proxies);
        Ok(())
    }

    /// Stops the Pod's proxies and waits until their listeners are closed (so the ports can be bound again).
    pub async fn unpublish(&self, pod_uid: &str) {
        let proxies = self.lock_proxies().remove(pod_uid).unwrap_or_default();
        for proxy in proxies {
            proxy.stop().await;
        }
    }

    fn lock_proxies(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Proxy>>> {
        // Only inserts and removes happen under this lock; a poisoned map is still a valid map.
        self.proxies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds with SO_REUSEADDR (a restarted agent rebinds over TIME_WAIT) but never SO_REUSEPORT, so a port in
/// use by anyone is refused.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

async fn serve_tcp(listener: TcpListener, target: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut client, peer)) => {
                    connections.spawn(async move {
                        match TcpStream::connect(target).await {
                            Ok(mut upstream) => {
                                let _ = client.set_nodelay(true);
                                let _ = upstream.set_nodelay(true);
                                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                                    tracing::debug!(%peer, %target, %err, "proxied connection ended");
                                }
                            }
                            Err(err) => tracing::warn!(%peer, %target, %err, "cannot reach the pod"),
                        }
                    });
                }
                Err(err) => {
                    // Out of descriptors or similar: back off instead of spinning on the error.
                    tracing::warn!(%target, %err, "accepting a proxied connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn serve_udp(listener: Arc<UdpSocket>, target: SocketAddr) {
    let mut sessions: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut tasks: JoinSet<SocketAddr> = JoinSet::new();
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        tokio::select! {
            received = listener.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(r) => r,
                    Err(err) => {
                        tracing::debug!(%target, %err, "receiving a proxied datagram failed");
                        continue;
                    }
                };
                let upstream = match sessions.get(&client) {
                    Some(upstream) => upstream.clone(),
                    None => match open_session(target).await {
                        Ok(upstream) => {
                            let upstream = Arc::new(upstream);
                            sessions.insert(client, upstream.clone());
                            tasks.spawn(relay_back(listener.clone(), upstream.clone(), client));
                            upstream
                        }
                        Err(err) => {
                            tracing::warn!(%client, %target, %err, "cannot open a UDP session to the pod");
                            continue;
                        }
                    },
                };
                if let Err(err) = upstream.send(&buf[..len]).await {
                    tracing::debug!(%client, %target, %err, "forwarding a datagram failed");
                }
            }
            Some(Ok(client)) = tasks.join_next() => {
                sessions.remove(&client);
            }
        }
    }
}

async fn open_session(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let upstream = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).await?;
    upstream.connect(target).await?;
    Ok(upstream)
}

/// Sends the Pod's replies back to one client until the session idles out; returns the client to forget.
async fn relay_back(
    listener: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
) -> SocketAddr {
    let mut buf = vec![0u8; UDP_BUFFER];
    // Both directions keep a session alive: the idle clock restarts on replies here, and a client that
    // keeps sending without replies is timed out and gets a fresh session on its next datagram.
    while let Ok(Ok(len)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        if listener.send_to(&buf[..len], client).await.is_err() {
            break;
        }
    }
    client
}
