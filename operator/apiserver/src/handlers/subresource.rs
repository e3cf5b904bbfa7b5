//! Subresources other than `status`: `pods/binding` (how a scheduler assigns a Pod to a node),
//! `namespaces/finalize` (how the namespace lifecycle releases a namespace) and `scale` (autoscaling/v1 Scale
//! over a resource's replicas paths). Their writes go through the main resource's update path and are recorded
//! in managedFields under the client's field manager, with the subresource named, as other writes are.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::update::{RETRIES, WriteOptions, update_object_as};
use super::{Ctx, respond};
use crate::admission::FieldValidation;
use crate::error::{ApiError, Cause, Result};
use crate::fieldmanager::Tracking;
use crate::object;
use crate::registry::ScalePaths;
use crate::store;

fn current(ctx: &Ctx) -> Result<Arc<Value>> {
    let target = &ctx.target;
    ctx.app
        .store
        .get(
            &target.rt.key(),
            target.store_namespace(),
            target.name.as_deref().unwrap_or_default(),
        )
        .ok_or_else(|| ApiError::not_found(target.subject()))
}

/// `POST pods/<name>/binding`: sets `spec.nodeName` once.
pub async fn bind(ctx: Ctx) -> Result<Response> {
    let binding = ctx.object_body()?;
    let node = binding["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if node.is_empty() {
        return Err(ApiError::invalid(
            ctx.target.subject(),
            "Binding",
            vec![Cause::required("target.name")],
        ));
    }
    let target = &ctx.target;
    let manager = ctx.field_manager()?;
    let options = WriteOptions {
        dry_run: ctx.query.dry_run()?,
        fields: FieldValidation::Ignore,
        tracking: Tracking::Update(&manager),
        sets_status: true,
    };
    for _ in 0..RETRIES {
        let pod = current(&ctx)?;
        if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(
                target.subject(),
                format!(
                    "pod {} is already assigned to node {existing:?}",
                    target.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        if object::is_deleting(&pod) {
            return Err(ApiError::conflict(
                target.subject(),
                "the pod is being deleted",
            ));
        }
        let mut bound = pod.as_ref().clone();
        object::set_path(&mut bound, &["spec", "nodeName"], json!(node));
        if let Some(annotations) = binding["metadata"]["annotations"].as_object() {
            for (key, value) in annotations {
                object::set_path(
                    &mut bound,
                    &["metadata", "annotations", key.as_str()],
                    value.clone(),
                );
            }
        }
        mark_scheduled(&mut bound);
        match update_object_as(&ctx.app, target, &pod, bound, None, options).await {
            Err(err) if err.reason == "Conflict" => continue,
            Err(err) => return Err(err),
            Ok(_) => {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
                return Ok(respond(StatusCode::CREATED, &status, &[]));
            }
        }
    }
    Err(ApiError::conflict(
        target.subject(),
        "too many concurrent writers; try again",
    ))
}

/// Sets the Pod's PodScheduled condition to True as upstream's binding does (its `UpdatePodCondition`): a
/// condition of another status is replaced, reason and message included, and its transition time is now; one
/// already True keeps its transition time.
fn mark_scheduled(pod: &mut Value) {
    let mut scheduled =
        json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": object::now()});
    let mut conditions: Vec<Value> = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(existing) => {
            if existing["status"] == "True" && !existing["lastTransitionTime"].is_null() {
                scheduled["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = scheduled;
        }
        None => conditions.push(scheduled),
    }
    object::set_path(pod, &["status", "conditions"], Value::Array(conditions));
}

/// `PUT namespaces/<name>/finalize`: replaces `spec.finalizers`; a terminating namespace with none left goes.
pub async fn finalize(ctx: Ctx) -> Result<Response> {
    let mut body = ctx.object_body()?;
    ctx.check_type(&mut body)?;
    let finalizers = body["spec"]["finalizers"].clone();
    let target = &ctx.target;
    let manager = ctx.field_manager()?;
    let namespace = current(&ctx)?;
    let expected = store::stored_rv(&body);
    let mut next = namespace.as_ref().clone();
    object::set_path(
        &mut next,
        &["spec", "finalizers"],
        if finalizers.is_null() {
            json!([])
        } else {
            finalizers
        },
    );
    let options = WriteOptions {
        dry_run: ctx.query.dry_run()?,
        fields: FieldValidation::Ignore,
        tracking: Tracking::Update(&manager),
        sets_status: false,
    };
    let (stored, warnings) =
        update_object_as(&ctx.app, target, &namespace, next, expected, options).await?;
    // A terminating namespace that nothing holds any more is removed by the update itself.
    Ok(respond(
        StatusCode::OK,
        &object::served(&target.rt, &stored),
        &warnings,
    ))
}

fn lookup<'a>(object: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(object, |v, part| &v[part])
}

/// The autoscaling/v1 Scale view of an object.
fn scale_of(paths: &ScalePaths, object: &Value) -> Value {
    let selector = match &paths.label_selector {
        Some(path) => lookup(object, path).as_str().map(str::to_owned),
        None => format_selector(&object["spec"]["selector"]),
    };
    let meta = &object["metadata"];
    let mut status =
        json!({"replicas": lookup(object, &paths.status_replicas).as_i64().unwrap_or(0)});
    if let Some(selector) = selector {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": lookup(object, &paths.spec_replicas).as_i64().unwrap_or(0)},
        "status": status,
    })
}

/// `matchLabels` and `matchExpressions` in label-selector syntax (upstream's FormatLabelSelector).
fn format_selector(selector: &Value) -> Option<String> {
    let mut parts: Vec<String> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match expr["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    (!parts.is_empty() || selector.is_object()).then(|| parts.join(","))
}

/// `GET|PUT|PATCH <resource>/<name>/scale`.
pub async fn scale(ctx: Ctx, method: &http::Method) -> Result<Response> {
    let Some(paths) = ctx.target.rt.scale.clone() else {
        return Err(ApiError::no_route());
    };
    let target = &ctx.target;
    if method == http::Method::GET {
        return Ok(respond(
            StatusCode::OK,
            &scale_of(&paths, current(&ctx)?.as_ref()),
            &[],
        ));
    }
    let manager = ctx.field_manager()?;
    let options = WriteOptions {
        dry_run: ctx.query.dry_run()?,
        fields: FieldValidation::Ignore,
        tracking: Tracking::Update(&manager),
        sets_status: false,
    };
    for _ in 0..RETRIES {
        let object = current(&ctx)?;
        let before = scale_of(&paths, &object);
        let wanted = if method == http::Method::PUT {
            ctx.object_body()?
        } else {
            super::patch::apply_to(&ctx.content_type, &before, &ctx.body)?
        };
        let replicas = wanted["spec"]["replicas"]
            .as_i64()
            .filter(|r| *r >= 0)
            .ok_or_else(|| {
                ApiError::invalid(
                    ctx.target.subject(),
                    "Scale.autoscaling",
                    vec![Cause::invalid(
                        "spec.replicas",
                        &wanted["spec"]["replicas"],
                        "must be greater than or equal to 0",
                    )],
                )
            })?;
        let expected =
            store::stored_rv(&wanted).filter(|rv| Some(*rv) != store::stored_rv(&object));
        let mut next = object.as_ref().clone();
        let path: Vec<&str> = paths.spec_replicas.split('.').collect();
        object::set_path(&mut next, &path, json!(replicas));
        let conditional = expected.or_else(|| store::stored_rv(&wanted));
        match update_object_as(&ctx.app, target, &object, next, conditional, options).await {
            Err(err)
                if err.reason == "Conflict"
                    && expected.is_none()
                    && method != http::Method::PUT =>
            {
                continue;
            }
            Err(err) => return Err(err),
            Ok((stored, warnings)) => {
                return Ok(respond(
                    StatusCode::OK,
                    &scale_of(&paths, &stored),
                    &warnings,
                ));
            }
        }
    }
    Err(ApiError::conflict(
        target.subject(),
        "too many concurrent writers; try again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_marks_the_pod_scheduled_replacing_an_unschedulable_condition() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]}});
        mark_scheduled(&mut pod);
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0], json!({"type": "Ready", "status": "False"}));
        let scheduled = &conditions[1];
        assert_eq!(scheduled["status"], "True");
        assert!(scheduled.get("reason").is_none() && scheduled.get("message").is_none());
        assert_ne!(scheduled["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn binding_adds_the_condition_and_keeps_the_time_of_one_already_true() {
        let mut pod = json!({"spec": {}});
        mark_scheduled(&mut pod);
        assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");
        let mut pod = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]}});
        mark_scheduled(&mut pod);
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn deployment_scale_reads_spec_status_and_formats_the_selector() {
        let deployment = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "4"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}
        });
        let scale = scale_of(
            &ScalePaths {
                spec_replicas: "spec.replicas".into(),
                status_replicas: "status.replicas".into(),
                label_selector: None,
            },
            &deployment,
        );
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(scale["metadata"]["resourceVersion"], "4");
    }
}
