//! The kubelet part of the agent: the Node and its Lease, the Pods bound to it (volumes, environment,
//! containers through the runtime, probes, restarts, status) and the endpoint the API server proxies
//! `kubectl logs`, `exec` and `attach` to.
//!
//! [`run`] registers the node, watches the Pods with `spec.nodeName=<node>` and gives each Pod (by uid) a
//! worker task ([`pod`]) that drives it, level-triggered, until it is deleted. Everything a worker needs to
//! carry on after an agent restart is on disk ([`record`]) or in the runtime's state directories.

mod backoff;
mod container;
mod down;
pub mod env;
mod lifecycle;
mod lookup;
mod node;
mod pod;
pub mod probe;
mod quantity;
mod record;
mod sandbox;
pub mod server;
mod status;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

pub use down::{DownReport, down, write_pid_file};
pub use node::default_name as default_node_name;
pub use record::Layout;

use crate::image::ImageStore;
use crate::net::{self, NetConfig, Network};
use crate::runtime::{Runtime, RuntimeConfig};

/// The name Events carry as their reporting controller.
pub const REPORTER: &str = "berth-agent";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("container runtime: {0}")]
    Runtime(#[from] crate::runtime::Error),
    #[error("image store: {0}")]
    Image(#[from] crate::image::ImageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Pod watch ended")]
    WatchEnded,
    #[error("kubelet endpoint: {0}")]
    Server(#[from] server::Error),
    #[error("pod network: {0}")]
    Network(#[from] net::Error),
}

/// How the agent runs on this node.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub node_name: String,
    /// Every container's pids limit (upstream's `podPidsLimit`): a fork bomb stays inside its container.
    pub pids_limit: Option<i64>,
    /// Registries reached over plain http beside loopback ones.
    pub insecure_registries: Vec<String>,
    /// The kubelet endpoint (`kubectl logs`, `exec`, `attach`); none without a TLS identity.
    pub server: Option<server::ServerConfig>,
    /// The node's Pod network: bridge, CIDR (state under `<data>/net` by default) and cluster domain.
    pub network: NetConfig,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> Config {
        let data_dir = data_dir.into();
        Config {
            network: NetConfig::new(data_dir.join("net")),
            data_dir,
            node_name: node_name.into(),
            pids_limit: Some(4096),
            insecure_registries: Vec::new(),
            server: None,
        }
    }

    /// The runtime's state root: short, for the shim's socket path (`<data>/c/<id>/shim.sock`).
    pub fn runtime_root(&self) -> PathBuf {
        self.data_dir.join("c")
    }
}

/// What every Pod worker shares.
pub(crate) struct Context {
    pub client: Client,
    pub runtime: Runtime,
    pub images: ImageStore,
    pub recorder: Recorder,
    pub layout: Layout,
    pub node: String,
    pub machine: node::Machine,
    pub host_ip: String,
    pub pids_limit: Option<i64>,
    pub prober: probe::Prober,
    pub volumes: volumes::Volumes,
    /// What the kubelet endpoint finds containers by.
    pub directory: lookup::Directory,
    /// The node's Pod network (addresses, veths, host ports).
    pub network: Arc<Network>,
    /// The node's DNS server, for the Pods' resolv.conf.
    pub cluster_dns: sandbox::ClusterDns,
    /// Pods whose worker has finished (deleted): late watch events about them are ignored.
    finished: Mutex<HashSet<String>>,
}

impl Context {
    fn finish(&self, uid: &str) {
        self.finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(uid.to_owned());
    }

    fn is_finished(&self, uid: &str) -> bool {
        self.finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(uid)
    }
}

/// The agent's runtime for `config`: state under `<data>/c`, this binary as the shim.
pub fn runtime(config: &Config) -> Result<Runtime, Error> {
    Ok(Runtime::new(RuntimeConfig::new(config.runtime_root())?)?)
}

/// Runs the kubelet until `shutdown` resolves. Containers keep running when it returns: a restarted agent
/// re-adopts them.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let runtime = runtime(&config)?;
    let images = ImageStore::open(config.data_dir.join("images"))?
        .with_insecure_registries(config.insecure_registries.clone());
    let machine = node::Machine::read();
    tracing::info!(node = %config.node_name, "{}", node::describe(&machine, &config.data_dir));
    let layout = Layout::new(&config.data_dir);
    // Recorded before anything is created, so that `berth down` finds whatever setup got to.
    layout
        .save_network(&config.network)
        .map_err(|source| Error::Io {
            context: format!(
                "recording the network settings in {}",
                layout.network_file().display()
            ),
            source,
        })?;
    let network = Arc::new(Network::setup(config.network.clone()).await?);
    let cluster_dns = sandbox::ClusterDns {
        server: config.network.gateway(),
        domain: config.network.cluster_domain.clone(),
    };
    let _dns = serve_dns(&client, &config.network).await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTER.into(),
            instance: Some(config.node_name.clone()),
        },
    );
    let directory = lookup::Directory::default();
    let ctx = Arc::new(Context {
        client: client.clone(),
        prober: probe::Prober::new(runtime.clone()),
        volumes: volumes::Volumes::new(layout.volumes()),
        runtime: runtime.clone(),
        images,
        recorder,
        layout,
        node: config.node_name.clone(),
        machine: machine.clone(),
        host_ip: "127.0.0.1".into(),
        pids_limit: config.pids_limit,
        directory: directory.clone(),
        network,
        cluster_dns,
        finished: Mutex::new(HashSet::new()),
    });
    let (stop, stopped) = watch::channel(false);
    let server = match config.server.clone() {
        Some(settings) => {
            let server =
                server::KubeletServer::bind(settings, runtime, Arc::new(directory)).await?;
            tracing::info!(addr = %server.local_addr(), "kubelet endpoint listening");
            Some(server)
        }
        None => {
            tracing::warn!(
                "no TLS identity for the kubelet endpoint: kubectl logs, exec and attach will not reach this node"
            );
            None
        }
    };
    let heartbeat = node::Heartbeat {
        client: client.clone(),
        name: config.node_name.clone(),
        machine,
        kubelet_port: server.as_ref().map(|s| s.local_addr().port()),
    };
    let heartbeat = tokio::spawn(heartbeat.run(stopped.clone()));
    let server = server.map(|server| {
        let mut stopped = stopped.clone();
        tokio::spawn(server.run(async move {
            let _ = stopped.changed().await;
        }))
    });
    let result = tokio::select! {
        result = watch_pods(ctx.clone()) => result,
        () = shutdown => Ok(()),
    };
    let _ = stop.send(true);
    let _ = heartbeat.await;
    if let Some(server) = server {
        let _ = server.await;
    }
    result
}

/// The node's DNS server on the gateway's port 53, forwarding outside names to the host's resolvers (not to
/// itself: a host whose resolv.conf names the gateway would loop). Kept alive by the returned handle.
async fn serve_dns(client: &Client, config: &NetConfig) -> Result<net::dns::DnsServer, Error> {
    let gateway = std::net::IpAddr::V4(config.gateway());
    let upstreams = match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => net::dns::upstreams_from_resolv_conf(&text),
        Err(err) => {
            tracing::warn!(error = %err, "reading /etc/resolv.conf: names outside the cluster will not resolve");
            Vec::new()
        }
    };
    let upstreams = upstreams
        .into_iter()
        .filter(|addr| addr.ip() != gateway)
        .collect();
    let server = net::dns::serve(
        client.clone(),
        net::dns::DnsConfig {
            listen: std::net::SocketAddr::new(gateway, 53),
            upstreams,
            cluster_domain: config.cluster_domain.clone(),
        },
    )
    .await?;
    tracing::info!(addr = %server.local_addr(), "cluster DNS listening");
    Ok(server)
}

/// Watches the node's Pods and hands each to its worker. Dropping the senders (when this returns) stops the
/// workers without touching their containers.
async fn watch_pods(ctx: Arc<Context>) -> Result<(), Error> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.node);
    let mut events = watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut purged_orphans = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "watching Pods; retrying");
                continue;
            }
        };
        workers.retain(|_, sender| !sender.is_closed());
        match event {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(pod) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    listed.insert(uid);
                }
                dispatch(&ctx, &mut workers, pod);
            }
            watcher::Event::InitDone => {
                // Pods that went while the watch was down.
                for (uid, sender) in &workers {
                    if !listed.contains(uid) {
                        let _ = sender.send(None);
                    }
                }
                if !purged_orphans {
                    purged_orphans = true;
                    pod::purge_orphans(ctx.clone(), listed.clone());
                }
            }
            watcher::Event::Apply(pod) => dispatch(&ctx, &mut workers, pod),
            watcher::Event::Delete(pod) => {
                if let Some(sender) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    let _ = sender.send(None);
                }
            }
        }
    }
    Err(Error::WatchEnded)
}

fn dispatch(
    ctx: &Arc<Context>,
    workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let pod = Arc::new(pod);
    if let Some(sender) = workers.get(&uid) {
        let _ = sender.send(Some(pod));
        return;
    }
    if ctx.is_finished(&uid) {
        return;
    }
    let (sender, receiver) = watch::channel(Some(pod));
    workers.insert(uid.clone(), sender);
    pod::Worker::spawn(ctx.clone(), uid, receiver);
}
