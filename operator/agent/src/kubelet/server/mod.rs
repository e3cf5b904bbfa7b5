//! The kubelet endpoint the API server proxies `kubectl logs`, `exec` and `attach` to (the Node's
//! `status.daemonEndpoints.kubeletEndpoint.Port`): HTTPS with a serving certificate from the cluster CA,
//! client certificates required, and
//!
//! - `GET /containerLogs/<ns>/<pod>/<container>?follow&tailLines&sinceSeconds&sinceTime&timestamps&previous&limitBytes`
//!   — the CRI log as a chunked body, streamed while `follow` lasts;
//! - `GET /exec/<ns>/<pod>/<container>?command=…&input=1&output=1&error=1&tty=1` and
//!   `GET /attach/<ns>/<pod>/<container>?…` — WebSocket `v5.channel.k8s.io` (or `v4.channel.k8s.io`):
//!   channels 0 stdin, 1 stdout, 2 stderr, 3 status (a `metav1.Status`), 4 resize, 255 close (v5).
//!
//! Public API, for the agent that owns the Pods:
//!
//! - implement [`ContainerLookup`] on the Pod state: it maps `namespace/pod/container` (and `previous`) to a
//!   [`ContainerRef`], the runtime's id and log file of that container;
//! - build a [`ServerConfig`] (address, and a [`TlsIdentity`]: `berth_apiserver::pki::issue_kubelet_serving`
//!   gives the certificate, `kubelet_client_trust` the client CA and name);
//! - [`KubeletServer::bind`], report [`KubeletServer::local_addr`]'s port in the Node's daemonEndpoints, and
//!   [`KubeletServer::run`] until the shutdown future resolves.
//!
//! Authentication: a client certificate that chains to the CA is required by the TLS handshake (one that does
//! not is refused there); a connection without one gets 401, one whose common name is not the API server's
//! kubelet client gets 403.

mod logs;
mod remote;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

use crate::runtime::Runtime;

/// The port a kubelet listens on by default.
pub const DEFAULT_PORT: u16 = 10250;

/// One container as the endpoint needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRef {
    /// The runtime's container id.
    pub id: String,
    /// Its CRI log file (for `previous`, the log of the instance before the current one).
    pub log_path: PathBuf,
    /// The container runs on a terminal (`tty: true`).
    pub tty: bool,
    /// The container keeps stdin open (`stdin: true`).
    pub stdin: bool,
    /// The instance runs (a previous instance never does).
    pub running: bool,
}

/// How the endpoint finds containers: implemented by the agent's Pod state.
pub trait ContainerLookup: Send + Sync + 'static {
    /// The container `container` of Pod `namespace/pod` on this node: its current instance, or with
    /// `previous` the one before it (the last that ended). `None` when there is no such container (instance).
    fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<ContainerRef>;
}

/// The endpoint's TLS identity and whom it admits.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// The serving certificate (PEM, leaf first) and its key.
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA client certificates must chain to.
    pub client_ca_pem: String,
    /// The common name a client certificate must carry (the API server's, `berth-apiserver-kubelet-client`).
    pub client_name: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen: 127.0.0.1:10250 by default; port 0 picks a free one.
    pub listen: SocketAddr,
    pub tls: TlsIdentity,
}

impl ServerConfig {
    pub fn new(tls: TlsIdentity) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            tls,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the kubelet endpoint's TLS identity is unusable: {0}")]
    Tls(String),
    #[error("binding the kubelet endpoint to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the handlers share.
#[derive(Clone)]
struct State {
    runtime: Runtime,
    lookup: Arc<dyn ContainerLookup>,
    /// Turns true when the server stops: exec and attach sessions (which outlive their connection's task
    /// once upgraded) end then.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A bound kubelet endpoint.
pub struct KubeletServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    client_name: String,
    router: Router,
    stop: tokio::sync::watch::Sender<bool>,
}

impl KubeletServer {
    /// Binds the address and loads the TLS identity; serving starts with [`KubeletServer::run`].
    pub async fn bind(
        config: ServerConfig,
        runtime: Runtime,
        lookup: Arc<dyn ContainerLookup>,
    ) -> Result<Self, Error> {
        let acceptor = tls::acceptor(&config.tls)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let state = State {
            runtime,
            lookup,
            shutdown,
        };
        let router = Router::new()
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                get(logs::container_logs),
            )
            .route(
                "/exec/{namespace}/{pod}/{container}",
                get(remote::exec).post(remote::exec),
            )
            .route(
                "/attach/{namespace}/{pod}/{container}",
                get(remote::attach).post(remote::attach),
            )
            .fallback(|| async { status(StatusCode::NOT_FOUND, "NotFound", "404 page not found") })
            .with_state(state);
        Ok(Self {
            listener,
            addr,
            acceptor,
            client_name: config.tls.client_name,
            router,
            stop,
        })
    }

    /// The address it listens on (with the port picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves; then stops accepting and ends every open connection.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tls::serve(
            self.listener,
            self.acceptor,
            self.client_name,
            self.router,
            shutdown,
        )
        .await;
        let _ = self.stop.send(true);
    }
}

/// An error as a `metav1.Status`, which the API server relays to kubectl.
fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// The container a request names, or the 404 that it is not there (the answer to send as it is).
fn find(
    state: &State,
    (namespace, pod, container): &(String, String, String),
    previous: bool,
) -> Result<ContainerRef, NotFound> {
    state
        .lookup
        .find(namespace, pod, container, previous)
        .ok_or_else(|| {
            NotFound(if previous {
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
            } else {
                format!(
                    "container \"{container}\" in pod \"{namespace}/{pod}\" is not known on this node"
                )
            })
        })
}

/// A container that is not there.
struct NotFound(String);

impl IntoResponse for NotFound {
    fn into_response(self) -> Response {
        status(StatusCode::NOT_FOUND, "NotFound", self.0)
    }
}

/// Whether a query flag is set: `1` or `true` (the kubelet's names and kubectl's spellings).
fn flag(value: Option<&String>) -> bool {
    value.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}
