//! Volumes whose claim is gone: Released, then, by reclaimPolicy, deleted with their directory (Delete) or
//! kept with it for an administrator (Retain). Only volumes this provisioner made are deleted.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::class::PROVISIONER;
use super::provision::PROVISIONED_BY;
use super::{Ctx, directory};
use crate::error::{Error, api_code};

#[tracing::instrument(skip_all, fields(volume = %pv.name_any()))]
pub async fn reconcile(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let spec = pv.spec.clone().unwrap_or_default();
    let Some(claim_ref) = spec.claim_ref.as_ref() else {
        return Ok(Action::await_change());
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(
        ctx.client.clone(),
        claim_ref.namespace.as_deref().unwrap_or("default"),
    );
    let claim = claims
        .get_opt(claim_ref.name.as_deref().unwrap_or_default())
        .await?
        .filter(|c| {
            claim_ref
                .uid
                .as_ref()
                .is_none_or(|uid| c.uid().as_ref() == Some(uid))
        });
    let phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if claim.is_some() {
        return Ok(Action::await_change());
    }
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if phase != "Released" && phase != "Failed" {
        let patch = json!({"status": {"phase": "Released"}});
        volumes
            .patch_status(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        info!("released: its claim is gone");
    }
    let ours = pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    if spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") || !ours {
        return Ok(Action::await_change());
    }
    if let Some(host_path) = &spec.host_path {
        match directory::remove(&ctx.root, &pv.name_any(), Path::new(&host_path.path)).await {
            Ok(()) => {}
            // Not a directory this provisioner made (someone edited the volume): keep it, and say so once.
            Err(err @ Error::VolumeOutsideRoot { .. }) => {
                if ctx.reported.first(&format!("{} {err}", pv.name_any())) {
                    warn!(error = %err, "keeping the released volume");
                }
                return Ok(Action::await_change());
            }
            Err(err) => return Err(err),
        }
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match volumes.delete(&pv.name_any(), &params).await {
        Ok(_) => info!("deleted with its directory (reclaimPolicy Delete)"),
        Err(err) if matches!(api_code(&err), Some(404 | 409)) => {}
        Err(err) => return Err(err.into()),
    }
    Ok(Action::await_change())
}
