//! Starting the server: the data directory, the store, CRDs already defined, the default namespaces, TLS,
//! and the accept loop (HTTP/1.1 and HTTP/2 over rustls).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::handlers::{self, App};
use crate::pki::{self, PkiError};
use crate::registry::Registry;
use crate::store::{Action, ResourceKey, Store, StoreError, WriteOp};
use crate::{crd, object};

/// The namespaces every cluster has.
pub const DEFAULT_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(
        "listening on {addr}: {source} (is another berth or kube-apiserver using it? choose another with --listen)"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started server: its address (useful with port 0) and the task serving it.
pub struct Running {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub serve: tokio::task::JoinHandle<()>,
}

pub async fn start(config: Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let store = Store::open(&config.data_dir.join("state.db"))?;
    let registry = Registry::new();
    let (_, crds) = store.list(
        &ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions"),
        None,
    );
    for definition in crds {
        crd::sync(&registry, &definition, false);
    }
    ensure_namespaces(&store).await?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let creds = pki::prepare(&config.data_dir, addr)?;
    let app = Arc::new(App {
        store,
        registry,
        token: creds.token.clone(),
        openapi: Default::default(),
        kubelet_client: Some(creds.kubelet_client.clone()),
    });
    let acceptor = TlsAcceptor::from(creds.tls.clone());
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "API server listening");
    let serve = tokio::spawn(accept_loop(listener, acceptor, app));
    Ok(Running {
        addr,
        kubeconfig: pki::kubeconfig_path(&config.data_dir),
        serve,
    })
}

async fn ensure_namespaces(store: &Store) -> Result<(), StoreError> {
    let key = ResourceKey::new("", "namespaces");
    for name in DEFAULT_NAMESPACES {
        if store.get(&key, "", name).is_some() {
            continue;
        }
        let namespace = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": object::now(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        match store
            .write(WriteOp {
                resource: key.clone(),
                namespace: String::new(),
                name: name.to_owned(),
                action: Action::Create(namespace),
            })
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, app: Arc<App>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Running out of file descriptors must not end the server; back off and go on.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let request = request.map(Body::new);
                        Ok::<_, std::convert::Infallible>(handlers::handle(app, request).await)
                    }
                });
            if let Err(err) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
}
