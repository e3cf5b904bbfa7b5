//! Wires the controller together: the watches (one per owned kind, feeding both the triggers and the stores),
//! the kube-rs `Controller`, the HTTP endpoints, and leader election when several replicas run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_api::Stack;
use berth_api::constants::LABEL_STACK;
use berth_lease::{Elector, LeaseConfig};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::ListParams;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::observe::Stores;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::server::{self, Phase, State};

/// Every Stack is reconciled again this often even when nothing changes: a safety net for missed events.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// How often to look again for the Stack CRD while it is not installed.
const CRD_POLL: Duration = Duration::from_secs(2);

/// How the controller runs; `berth controller` and `berth up` fill it from their flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; none serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// The Lease to hold while reconciling, when several replicas run.
    pub leader_election: Option<LeaseConfig>,
    /// How many Stacks are reconciled at once.
    pub concurrency: u16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            metrics_addr: None,
            leader_election: None,
            concurrency: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("serving metrics on {addr}: {source} (pick another address with --metrics-addr)")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let state = Arc::new(State::default());
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match config.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Metrics { addr, source })?;
            let state = state.clone();
            Some(tokio::spawn(server::serve(listener, state, async {
                let _ = server_stopped.await;
            })))
        }
        None => None,
    };
    let mut elector = config
        .leader_election
        .clone()
        .map(|lease| Elector::new(client.clone(), lease));
    tokio::select! {
        () = shutdown => {}
        () = lead(client, &config, state, elector.as_mut()) => {}
    }
    // Give the Lease up while the API still answers, so that a standby takes over at once.
    if let Some(elector) = elector.as_mut() {
        elector.release().await;
    }
    let _ = stop_server.send(());
    if let Some(server) = server {
        let _ = server.await;
    }
    Ok(())
}

/// Reconciles, holding the Lease first when there is an elector; runs until the caller stops it.
async fn lead(client: Client, config: &Config, state: Arc<State>, elector: Option<&mut Elector>) {
    let Some(elector) = elector else {
        reconcile_all(client, config, state, hostname()).await;
        return;
    };
    let instance = elector.identity().to_owned();
    loop {
        state.set_phase(Phase::Standby);
        elector.acquire().await;
        info!(identity = %instance, "leading: reconciling Stacks");
        state.set_phase(Phase::Starting);
        tokio::select! {
            () = elector.hold() => {
                warn!("lost the leader Lease: reconciling stops until it is won back");
            }
            () = reconcile_all(client.clone(), config, state.clone(), instance.clone()) => return,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "berth".to_owned())
}

/// Waits until the API serves Stacks: `berth up` starts before anyone has applied the CRD.
async fn wait_for_crd(client: &Client) {
    let api: Api<Stack> = Api::all(client.clone());
    let mut told = false;
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                if !told {
                    info!(
                        "waiting for the Stack CRD; install it with `berth crd | kubectl apply -f -`"
                    );
                    told = true;
                }
            }
            Err(err) => warn!(error = %err, "looking for the Stack CRD"),
        }
        tokio::time::sleep(CRD_POLL).await;
    }
}

/// A watch on every object of kind `K` labelled as owned by a Stack, mirrored into `writer`'s store.
fn owned<K>(
    client: &Client,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    watcher(api, watcher::Config::default().labels(LABEL_STACK))
        .default_backoff()
        .reflect(writer)
        .touched_objects()
}

async fn reconcile_all(client: Client, config: &Config, state: Arc<State>, instance: String) {
    wait_for_crd(&client).await;
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (services, services_writer) = reflector::store::<Service>();
    let (secrets, secrets_writer) = reflector::store::<Secret>();
    let (claims, claims_writer) = reflector::store::<PersistentVolumeClaim>();
    let (stores, sync) = Stores::new(pods, services, secrets, claims);
    let synced = {
        let state = state.clone();
        async move {
            sync.await;
            state.set_phase(Phase::Leading);
            info!("caches synced");
        }
    };
    let resync = futures::stream::unfold((), |()| async {
        tokio::time::sleep(RESYNC).await;
        Some(((), ()))
    });
    let ctx = Arc::new(Context::new(client.clone(), stores, state, instance));
    let controller = Controller::new(
        Api::<Stack>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(owned(&client, pods_writer))
    .owns_stream(owned(&client, services_writer))
    .owns_stream(owned(&client, secrets_writer))
    .owns_stream(owned(&client, claims_writer))
    .reconcile_all_on(resync)
    .with_config(controller::Config::default().concurrency(config.concurrency))
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((stack, action)) => debug!(stack = %stack, ?action, "reconciled"),
            // error_policy logged it already.
            Err(controller::Error::ReconcilerFailed(..)) => {}
            // An owned object changed after its Stack went: nothing to reconcile.
            Err(controller::Error::ObjectNotFound(stack)) => {
                debug!(stack = %stack, "the Stack is gone")
            }
            Err(err) => warn!(error = %err, "controller"),
        }
    });
    futures::join!(synced, controller);
}
