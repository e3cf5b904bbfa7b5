//! TLS for the kubelet endpoint: the serving identity, client certificates verified against the cluster CA,
//! and the accept loop that admits only the API server's kubelet client (401 without a certificate, 403 for
//! another name) before a request reaches the routes. HTTP/1.1 only: exec and attach are upgrades.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt;

use super::{Error, TlsIdentity, status};

pub(super) fn acceptor(identity: &TlsIdentity) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let tls_error = |what: &str| {
        let what = what.to_owned();
        move |err: &dyn std::fmt::Display| Error::Tls(format!("{what}: {err}"))
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls_error("reading the serving certificate")(&e))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| tls_error("reading the serving key")(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(identity.client_ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| tls_error("reading the client CA")(&e))?;
        roots
            .add(ca)
            .map_err(|e| tls_error("adding the client CA")(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Connections without a certificate complete the handshake, so that they get a 401 they can read.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls_error("building the client verifier")(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("choosing TLS versions")(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("loading the serving certificate")(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Who a connection is, by its client certificate.
#[derive(Debug, Clone, PartialEq)]
enum Peer {
    Anonymous,
    Named(String),
}

fn peer(connection: &rustls::ServerConnection) -> Peer {
    let Some(leaf) = connection.peer_certificates().and_then(|c| c.first()) else {
        return Peer::Anonymous;
    };
    let name = x509_parser::parse_x509_certificate(leaf)
        .ok()
        .and_then(|(_, cert)| {
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_owned))
        })
        .unwrap_or_default();
    Peer::Named(name)
}

pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    client_name: String,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let client_name: Arc<str> = client_name.into();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, most likely: the next accept may succeed once some close.
                    tracing::warn!(%err, "accepting a kubelet connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let client_name = client_name.clone();
        connections.spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%remote, %err, "kubelet TLS handshake failed");
                    return;
                }
            };
            let peer = peer(stream.get_ref().1);
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    let peer = peer.clone();
                    let client_name = client_name.clone();
                    async move {
                        let response = match &peer {
                            Peer::Anonymous => status(
                                StatusCode::UNAUTHORIZED,
                                "Unauthorized",
                                "a client certificate is required",
                            ),
                            Peer::Named(name) if **name != *client_name => status(
                                StatusCode::FORBIDDEN,
                                "Forbidden",
                                format!("client {name:?} may not use the kubelet API"),
                            ),
                            Peer::Named(_) => router.oneshot(request.map(Body::new)).await?,
                        };
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(err) = connection.await {
                tracing::debug!(%remote, %err, "kubelet connection ended");
            }
        });
    }
    connections.shutdown().await;
}
