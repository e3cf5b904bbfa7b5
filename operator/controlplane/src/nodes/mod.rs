//! Node lifecycle: a node whose kubelet stops renewing its Lease (kube-node-lease) and posting status for the
//! grace period turns Ready=Unknown (NodeStatusUnknown), gets the unreachable NoSchedule taint, and the Ready
//! condition of its Pods turns False, as upstream's node lifecycle controller does. It evicts nothing.

mod health;

use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use crate::error::{Error, api_code};
use crate::events::{CONTROLLER_MANAGER, Kind, Recorder};
use crate::watch;

/// Where kubelets keep their heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

struct Lifecycle {
    client: Client,
    recorder: Recorder,
    grace: Duration,
    nodes: Store<Node>,
    leases: Store<Lease>,
    tracker: health::Tracker,
}

pub async fn run(client: Client, recorder: Recorder, grace: Duration) -> Result<(), Error> {
    let (nodes, node_changes) = watch::reflect(Api::<Node>::all(client.clone()), (), watch::any);
    let (leases, lease_changes) = watch::reflect(
        Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
        (),
        watch::any,
    );
    let mut changes = watch::merge(vec![node_changes, lease_changes]);
    let mut lifecycle = Lifecycle {
        client,
        recorder,
        grace,
        nodes,
        leases,
        tracker: health::Tracker::default(),
    };
    // Check often enough to notice silence soon after the grace period ends (upstream: every 5 s).
    let period = (grace / 8).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            change = changes.next() => if change.is_none() {
                return Err(Error::WatchEnded { resource: "nodes and leases".into() });
            },
            _ = tick.tick() => {
                if lifecycle.ready() {
                    lifecycle.check().await;
                }
            }
        }
    }
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
}

impl Lifecycle {
    fn ready(&self) -> bool {
        matches!(self.nodes.wait_until_ready().now_or_never(), Some(Ok(())))
            && matches!(self.leases.wait_until_ready().now_or_never(), Some(Ok(())))
    }

    async fn check(&mut self) {
        let nodes = self.nodes.state();
        self.tracker
            .retain(|name| nodes.iter().any(|n| n.name_any() == name));
        let now = Instant::now();
        for node in nodes {
            let name = node.name_any();
            let lease = self
                .leases
                .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
            let signs = health::Signs {
                lease_renewed: lease
                    .and_then(|l| l.spec.clone())
                    .and_then(|s| s.renew_time),
                ready_heartbeat: node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .and_then(|c| c.last_heartbeat_time.clone()),
            };
            let silent = self.tracker.silent_for(&name, signs, now) >= self.grace;
            let span = info_span!("node", node = %name);
            if let Err(err) = self.reconcile(&node, silent).instrument(span.clone()).await {
                span.in_scope(|| warn!(error = %err, "node lifecycle step failed; retrying"));
            }
        }
    }

    async fn reconcile(&self, node: &Node, silent: bool) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = node.clone();
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if silent
            && let Some(conditions) = health::silent_conditions(
                &conditions,
                node.metadata.creation_timestamp.as_ref(),
                &Time(Timestamp::now()),
            )
        {
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "status": {"conditions": conditions},
            });
            node = match api
                .patch_status(
                    &node.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(node) => node,
                // The kubelet (or a user) wrote meanwhile: look again on the next tick.
                Err(err) if matches!(api_code(&err), Some(404 | 409)) => return Ok(()),
                Err(err) => return Err(err.into()),
            };
            info!(grace = ?self.grace, "kubelet silent: node Ready=Unknown");
            let message = format!("Node {} status is now: NodeNotReady", node.name_any());
            self.recorder
                .publish(
                    CONTROLLER_MANAGER,
                    &node.object_ref(&()),
                    Kind::Normal,
                    "NodeNotReady",
                    &message,
                )
                .await;
        }
        let ready = ready_status(&node);
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if let Some(taints) = health::condition_taints(&taints, ready.as_deref()) {
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "spec": {"taints": taints},
            });
            match api
                .patch(
                    &node.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(err) if matches!(api_code(&err), Some(404 | 409)) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
        }
        if ready.is_some_and(|r| r != "True") {
            self.mark_pods_not_ready(&node.name_any()).await?;
        }
        Ok(())
    }

    /// Upstream's MarkPodsNotReady: the Ready condition of every Pod on the node turns False.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        for pod in on_node.items {
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let Some(ready) = conditions
                .iter_mut()
                .find(|c| c.type_ == "Ready" && c.status != "False")
            else {
                continue;
            };
            ready.status = "False".to_owned();
            ready.last_transition_time = Some(Time(Timestamp::now()));
            let patch = json!({
                "metadata": {"resourceVersion": pod.resource_version()},
                "status": {"conditions": conditions},
            });
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            match api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    info!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), "pod Ready=False: its node is not ready")
                }
                Err(err) if matches!(api_code(&err), Some(404 | 409)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }
}
