//! Claims: a Pending PVC of a class this provisioner serves gets a PersistentVolume backed by a directory
//! under the data dir, and both are bound. WaitForFirstConsumer claims wait for a Pod that uses them to be
//! scheduled; a claim naming a class that does not exist, or asking for no size, says so in an Event.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::class::{self, PROVISIONER};
use super::{Ctx, directory};
use crate::error::{Error, api_code};
use crate::events::{CONTROLLER_MANAGER, Kind};

pub use crate::scheduler::SELECTED_NODE;
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

#[tracing::instrument(skip_all, fields(claim = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any())))]
pub async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if claim.metadata.deletion_timestamp.is_some() || phase == Some("Bound") {
        return Ok(Action::await_change());
    }
    let namespace = claim.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let spec = claim.spec.clone().unwrap_or_default();
    if let Some(volume) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
        // Bound in spec already (a step of ours was interrupted, or a user pre-bound it): finish the status.
        let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
        if let Some(pv) = volumes.get_opt(volume).await?
            && claimed_by(&pv, &claim)
        {
            mark_bound(&ctx, &claim, &pv).await?;
        }
        return Ok(Action::await_change());
    }
    let class_name = match spec.storage_class_name.as_deref() {
        // "" asks for no class: only a pre-made volume could bind it.
        Some("") => return Ok(Action::await_change()),
        Some(name) => name.to_owned(),
        None => {
            if let Some(default) = class::default_class(&ctx.client).await? {
                let patch = json!({"spec": {"storageClassName": default}});
                claims
                    .patch(
                        &claim.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                info!(class = %default, "assigned the default StorageClass");
            }
            return Ok(Action::await_change());
        }
    };
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let Some(class) = classes.get_opt(&class_name).await? else {
        let message = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
        ctx.event(&claim, Kind::Warning, "ProvisioningFailed", &message)
            .await;
        return Ok(Action::await_change());
    };
    if class.provisioner != PROVISIONER {
        let message = format!(
            "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
            class.provisioner
        );
        ctx.event(&claim, Kind::Normal, "ExternalProvisioning", &message)
            .await;
        return Ok(Action::await_change());
    }
    let node = if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
        match consumer_node(&ctx, &claim).await? {
            Some(node) => Some(node),
            None => {
                let message = "waiting for first consumer to be created before binding";
                ctx.event(&claim, Kind::Normal, "WaitForFirstConsumer", message)
                    .await;
                return Ok(Action::await_change());
            }
        }
    } else {
        None
    };
    let Some(size) = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
    else {
        let message =
            "spec.resources.requests.storage is required: set the size the claim asks for";
        ctx.event(&claim, Kind::Warning, "ProvisioningFailed", message)
            .await;
        return Ok(Action::await_change());
    };
    let pv = provision(&ctx, &claim, &class, node, size).await?;
    let pv_name = pv.name_any();
    let patch = json!({
        "metadata": {"annotations": {
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.kubernetes.io/storage-provisioner": PROVISIONER,
        }},
        "spec": {"volumeName": pv_name},
    });
    let bound = claims
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    mark_bound(&ctx, &bound, &pv).await?;
    let message = format!("Successfully provisioned volume {pv_name}");
    ctx.event(&claim, Kind::Normal, "ProvisioningSucceeded", &message)
        .await;
    Ok(Action::await_change())
}

fn claimed_by(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.name.as_deref() == claim.metadata.name.as_deref()
                && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
                && r.uid
                    .as_ref()
                    .is_none_or(|uid| Some(uid) == claim.metadata.uid.as_ref())
        })
}

/// The node of a scheduled Pod that uses the claim (or the node a scheduler selected for it).
async fn consumer_node(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<Option<String>, Error> {
    if let Some(node) = claim.annotations().get(SELECTED_NODE) {
        return Ok(Some(node.clone()));
    }
    let pods: Api<Pod> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let name = claim.name_any();
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| uses_claim(p, &name))
        .find_map(|p| p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty())))
}

pub fn uses_claim(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .any(|c| c.claim_name == claim)
}

/// Makes the directory and the PersistentVolume (named `pvc-<claim uid>`, as upstream's provisioners do),
/// or finds the one an earlier attempt made.
async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: Option<String>,
    size: k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) -> Result<PersistentVolume, Error> {
    let name = format!("pvc-{}", claim.uid().unwrap_or_default());
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if let Some(existing) = volumes.get_opt(&name).await? {
        return Ok(existing);
    }
    let Some(path) = directory::path(&ctx.root, &name) else {
        return Err(Error::VolumeOutsideRoot {
            path: ctx.root.join(&name),
            root: ctx.root.clone(),
        });
    };
    directory::create(&path).await?;
    let spec = claim.spec.clone().unwrap_or_default();
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some([(PROVISIONED_BY.to_owned(), PROVISIONER.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some([("storage".to_owned(), size)].into()),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".to_owned()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("PersistentVolumeClaim".to_owned()),
                namespace: claim.namespace(),
                name: claim.metadata.name.clone(),
                uid: claim.uid(),
                ..ObjectReference::default()
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".to_owned()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: spec.volume_mode.clone(),
            mount_options: class.mount_options.clone(),
            node_affinity: node.map(|node| VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: None,
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec![node]),
                        }]),
                    }],
                }),
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    match volumes.create(&PostParams::default(), &pv).await {
        Ok(created) => {
            info!(volume = %name, path = %path.display(), "provisioned");
            Ok(created)
        }
        Err(err) if api_code(&err) == Some(409) => Ok(volumes.get(&name).await?),
        Err(err) => Err(err.into()),
    }
}

/// Status Bound on both sides, with the claim's granted access modes and capacity.
async fn mark_bound(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<(), Error> {
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let patch = json!({"status": {"phase": "Bound"}});
    volumes
        .patch_status(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let spec = pv.spec.clone().unwrap_or_default();
    let patch = json!({"status": {
        "phase": "Bound",
        "accessModes": spec.access_modes,
        "capacity": spec.capacity,
    }});
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    claims
        .patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    info!(volume = %pv.name_any(), "bound");
    Ok(())
}

impl Ctx {
    async fn event(&self, claim: &PersistentVolumeClaim, kind: Kind, reason: &str, message: &str) {
        self.recorder
            .publish(
                CONTROLLER_MANAGER,
                &claim.object_ref(&()),
                kind,
                reason,
                message,
            )
            .await;
    }
}
