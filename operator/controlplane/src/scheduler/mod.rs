//! The scheduler: binds Pods that have no node to a Ready node that fits them, or says why none does
//! (PodScheduled=False, reason Unschedulable, and a FailedScheduling Event). It looks at the whole cluster at
//! once from watch caches and places Pods one at a time, so two Pods never get the same free room; every change
//! to Pods, Nodes or volumes triggers another pass, which is how unschedulable Pods are retried.

mod bind;
mod claims;
mod demand;
mod fit;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use crate::error::Error;
use crate::events::{self, Kind, Recorder};
use crate::reported::Reported;
use crate::watch;
pub use claims::{DEFAULT_CLASS_ANNOTATION, SELECTED_NODE, is_default_class};
use demand::{Demand, NodeState};
pub use demand::{NOT_READY, UNREACHABLE};

/// A pass also runs this often with no change at all, as a safety net.
const RESYNC: Duration = Duration::from_secs(30);

/// Pods this scheduler places (upstream's default scheduler name, or none).
fn is_ours(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n.is_empty() || n == events::SCHEDULER)
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

struct Scheduler {
    api: Client,
    recorder: Recorder,
    pods: Store<Pod>,
    nodes: Store<Node>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    /// Pods bound by this scheduler that the cache does not show bound yet: uid -> (node, demand).
    assumed: HashMap<String, (String, Demand)>,
    reported: Reported,
}

pub async fn run(client: Client, recorder: Recorder) -> Result<(), Error> {
    let (pods, pod_changes) = watch::reflect(Api::<Pod>::all(client.clone()), (), watch::any);
    let (nodes, node_changes) = watch::reflect(Api::<Node>::all(client.clone()), (), watch::any);
    let (claims, claim_changes) = watch::reflect(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        (),
        watch::any,
    );
    let (volumes, volume_changes) =
        watch::reflect(Api::<PersistentVolume>::all(client.clone()), (), watch::any);
    let (classes, class_changes) =
        watch::reflect(Api::<StorageClass>::all(client.clone()), (), watch::any);
    let mut changes = watch::merge(vec![
        pod_changes,
        node_changes,
        claim_changes,
        volume_changes,
        class_changes,
    ]);
    let mut scheduler = Scheduler {
        api: client,
        recorder,
        pods,
        nodes,
        claims,
        volumes,
        classes,
        assumed: HashMap::new(),
        reported: Reported::default(),
    };
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(true) => {}
                Some(false) => continue,
                None => return Err(Error::WatchEnded { resource: "pods, nodes and volumes".into() }),
            },
            _ = resync.tick() => {}
        }
        // Everything already queued is part of this pass.
        while let Some(Some(_)) = changes.next().now_or_never() {}
        if scheduler.ready() {
            scheduler.pass().await;
        }
    }
}

impl Scheduler {
    fn ready(&self) -> bool {
        let ready = |f: Option<Result<(), _>>| matches!(f, Some(Ok(())));
        ready(self.pods.wait_until_ready().now_or_never())
            && ready(self.nodes.wait_until_ready().now_or_never())
            && ready(self.claims.wait_until_ready().now_or_never())
            && ready(self.volumes.wait_until_ready().now_or_never())
            && ready(self.classes.wait_until_ready().now_or_never())
    }

    /// One look at the cluster: every Pod without a node is placed or reported, highest priority first.
    async fn pass(&mut self) {
        let pods = self.pods.state();
        self.assumed.retain(|uid, _| {
            pods.iter()
                .any(|p| p.uid().as_deref() == Some(uid.as_str()) && node_of(p).is_none())
        });
        let mut cluster = self.cluster(&pods);
        let mut pending: Vec<Arc<Pod>> = pods
            .into_iter()
            .filter(|p| {
                node_of(p).is_none()
                    && p.meta().deletion_timestamp.is_none()
                    && !finished(p)
                    && is_ours(p)
                    && !self.assumed.contains_key(&p.uid().unwrap_or_default())
            })
            .collect();
        pending.sort_by_key(|p| {
            (
                std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
                p.meta().creation_timestamp.clone(),
            )
        });
        for pod in pending {
            let span = info_span!("schedule", pod = %key(&pod));
            self.schedule(&pod, &mut cluster).instrument(span).await;
        }
    }

    /// Every node with what is placed on it: bound Pods that still run, and Pods bound but not yet seen so.
    fn cluster(&self, pods: &[Arc<Pod>]) -> BTreeMap<String, NodeState> {
        let mut cluster = BTreeMap::new();
        for node in self.nodes.state() {
            let (state, bad) = demand::node_state(&node);
            for quantity in bad {
                if self
                    .reported
                    .first(&format!("node {} {quantity}", state.name))
                {
                    warn!(node = %state.name, %quantity, "ignoring a node resource that is not a quantity");
                }
            }
            cluster.insert(state.name.clone(), state);
        }
        for pod in pods.iter().filter(|p| !finished(p)) {
            let Some(node) = node_of(pod) else { continue };
            match demand::demand_of(pod) {
                Ok(demand) => {
                    if let Some(state) = cluster.get_mut(node) {
                        state.place(&demand);
                    }
                }
                Err(problem) => {
                    if self.reported.first(&format!("pod {} {problem}", key(pod))) {
                        warn!(pod = %key(pod), %problem, "a bound pod's requests cannot be read; counting none");
                    }
                }
            }
        }
        for (node, demand) in self.assumed.values() {
            if let Some(state) = cluster.get_mut(node) {
                state.place(demand);
            }
        }
        cluster
    }

    async fn schedule(&mut self, pod: &Pod, cluster: &mut BTreeMap<String, NodeState>) {
        let claims = claims::Claims {
            claims: &self.claims,
            volumes: &self.volumes,
            classes: &self.classes,
        };
        let mut demand = match demand::demand_of(pod) {
            Ok(demand) => demand,
            Err(problem) => {
                if self.reported.first(&format!("pod {} {problem}", key(pod))) {
                    warn!(%problem, "cannot read the pod's requests");
                }
                let message = format!("the pod's resource requests cannot be read: {problem}");
                return self.unschedulable(pod, &message).await;
            }
        };
        let unbound = match claims.check(pod) {
            Ok(needs) => {
                demand.volume_affinity = needs.affinity;
                needs.unbound
            }
            Err(reason) => {
                return self
                    .unschedulable(pod, &fit::pod_message(cluster.len(), &reason))
                    .await;
            }
        };
        // A claim already being provisioned on a node that still exists holds the Pod to that node.
        let pinned = unbound
            .iter()
            .find_map(|(_, selected)| selected.as_ref())
            .filter(|node| cluster.contains_key(*node))
            .cloned();
        let mut misfits = Vec::new();
        let mut best: Option<(i128, &String)> = None;
        for (name, node) in cluster.iter() {
            if pinned.as_ref().is_some_and(|p| p != name) {
                continue;
            }
            let why = fit::misfits(&demand, node);
            if why.is_empty() {
                let score = fit::score(&demand, node);
                if best.is_none_or(|(top, _)| score > top) {
                    best = Some((score, name));
                }
            } else {
                misfits.push(why);
            }
        }
        let Some((_, node)) = best else {
            let message = fit::unschedulable_message(cluster.len(), &misfits);
            return self.unschedulable(pod, &message).await;
        };
        let node = node.clone();
        if !unbound.is_empty() {
            // Upstream's PreBind: the claims are provisioned on the node first; their binding brings the next
            // pass, which binds the Pod.
            return self.select_node(pod, &unbound, &node).await;
        }
        let api: Api<Pod> = Api::namespaced(self.api.clone(), &pod.namespace().unwrap_or_default());
        match bind::bind(&api, pod, &node).await {
            Ok(true) => {
                info!(%node, "bound");
                if let Some(state) = cluster.get_mut(&node) {
                    state.place(&demand);
                }
                self.assumed
                    .insert(pod.uid().unwrap_or_default(), (node.clone(), demand));
                let message = format!("Successfully assigned {} to {node}", key(pod));
                self.recorder
                    .publish(
                        events::SCHEDULER,
                        &pod.object_ref(&()),
                        Kind::Normal,
                        "Scheduled",
                        &message,
                    )
                    .await;
            }
            Ok(false) => {}
            Err(err) => warn!(%node, error = %err, "binding failed; retrying on the next pass"),
        }
    }

    /// Names `node` in each unbound claim's `selected-node` annotation, for the provisioner.
    async fn select_node(&self, pod: &Pod, unbound: &[(String, Option<String>)], node: &str) {
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.api.clone(), &pod.namespace().unwrap_or_default());
        for (claim, selected) in unbound {
            if selected.as_deref() == Some(node) {
                continue;
            }
            let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
            match claims
                .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => info!(%claim, %node, "selected the node to provision the claim on"),
                Err(err) => {
                    warn!(%claim, %node, error = %err, "selecting the claim's node; retrying on the next pass")
                }
            }
        }
    }

    async fn unschedulable(&self, pod: &Pod, message: &str) {
        let api: Api<Pod> = Api::namespaced(self.api.clone(), &pod.namespace().unwrap_or_default());
        match bind::report_unschedulable(&api, pod, message).await {
            Ok(true) => {
                info!(%message, "unschedulable");
                self.recorder
                    .publish(
                        events::SCHEDULER,
                        &pod.object_ref(&()),
                        Kind::Warning,
                        "FailedScheduling",
                        message,
                    )
                    .await;
            }
            Ok(false) => {}
            Err(err) => warn!(error = %err, "reporting the pod unschedulable"),
        }
    }
}
