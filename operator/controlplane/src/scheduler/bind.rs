//! The scheduler's writes: the `pods/binding` subresource (which also marks the Pod scheduled), and the
//! PodScheduled=False condition of a Pod that fits no node.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::error::api_code;

/// Binds the Pod to the node. Ok(false) when someone else bound it first or it is being deleted.
pub async fn bind(api: &Api<Pod>, pod: &Pod, node: &str) -> Result<bool, kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": pod.metadata.namespace, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        // The binding also marks the Pod scheduled (PodScheduled=True replaces an Unschedulable condition).
        Ok(_) => Ok(true),
        Err(err) if matches!(api_code(&err), Some(404 | 409)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Writes PodScheduled=False/Unschedulable with `message`. Ok(false) when it already said so (nothing written)
/// or the Pod changed meanwhile (the next pass looks again).
pub async fn report_unschedulable(
    api: &Api<Pod>,
    pod: &Pod,
    message: &str,
) -> Result<bool, kube::Error> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let existing = conditions.iter().position(|c| c.type_ == "PodScheduled");
    let wanted = PodCondition {
        type_: "PodScheduled".to_owned(),
        status: "False".to_owned(),
        reason: Some("Unschedulable".to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..PodCondition::default()
    };
    match existing.map(|i| &mut conditions[i]) {
        Some(current)
            if current.status == wanted.status
                && current.reason == wanted.reason
                && current.message == wanted.message =>
        {
            return Ok(false);
        }
        Some(current) => {
            let moved = current.status != wanted.status;
            let since = current.last_transition_time.clone();
            *current = wanted;
            if !moved {
                current.last_transition_time = since;
            }
        }
        None => conditions.push(wanted),
    }
    let patch = json!({
        "metadata": {"resourceVersion": pod.metadata.resource_version},
        "status": {"conditions": conditions},
    });
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if matches!(api_code(&err), Some(404 | 409)) => Ok(false),
        Err(err) => Err(err),
    }
}
