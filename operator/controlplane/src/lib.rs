//! berth's embedded control plane: the parts of kube-scheduler and kube-controller-manager that Pods, PVCs,
//! owner references, namespaces and nodes need to behave as on a real cluster. Every loop is a Kubernetes
//! client of the API server (never the store), so the same code runs against any conformant API.

mod error;
mod events;
mod gc;
mod namespace;
mod nodes;
mod reported;
mod scheduler;
mod volumes;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use tracing::{info, warn};

pub use berth_lease::LeaseConfig;
pub use error::Error;

/// How the control plane is set up; `berth up` fills it from its flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// berth's data directory: local volumes live in `<data_dir>/volumes/<pv-name>`.
    pub data_dir: PathBuf,
    /// How long a node's Lease may go unrenewed before the node turns Ready=Unknown.
    pub node_lease_grace: Duration,
    /// The Lease that makes sure only one control plane acts at a time.
    pub leader: LeaseConfig,
}

impl Config {
    /// Upstream's defaults (node-monitor-grace-period 40 s, kube-controller-manager's Lease timings) for a data
    /// directory.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            node_lease_grace: DEFAULT_NODE_LEASE_GRACE,
            leader: LeaseConfig::new("kube-system", "berth-controlplane"),
        }
    }
}

/// kube-controller-manager's default `--node-monitor-grace-period`.
pub const DEFAULT_NODE_LEASE_GRACE: Duration = Duration::from_secs(40);

/// Runs the control plane until `shutdown` completes: campaigns for the leader Lease, runs every loop while it
/// holds it, stops them when it loses it (and campaigns again), and releases the Lease on shutdown.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let mut elector = berth_lease::Elector::new(client.clone(), config.leader.clone());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = elector.acquire() => {}
        }
        info!(identity = %config.leader.identity, "leading: starting the control-plane loops");
        let lost = tokio::select! {
            () = &mut shutdown => false,
            () = elector.hold() => true,
            result = run_loops(client.clone(), &config) => {
                // The loops only return on errors they cannot recover from; let another instance try.
                if let Err(err) = &result {
                    warn!(error = %err, "a control-plane loop failed");
                }
                elector.release().await;
                return result;
            }
        };
        if !lost {
            elector.release().await;
            return Ok(());
        }
        warn!("lost the leader Lease: control-plane loops stopped until it is won back");
    }
}

async fn run_loops(client: Client, config: &Config) -> Result<(), Error> {
    let recorder = events::Recorder::new(client.clone(), config.leader.identity.clone());
    tokio::try_join!(
        scheduler::run(client.clone(), recorder.clone()),
        gc::run(client.clone()),
        namespace::run(client.clone()),
        volumes::run(
            client.clone(),
            recorder.clone(),
            config.data_dir.join("volumes")
        ),
        nodes::run(client.clone(), recorder.clone(), config.node_lease_grace),
    )?;
    Ok(())
}
