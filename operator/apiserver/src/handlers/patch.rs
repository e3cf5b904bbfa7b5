//! `patch` of an object or its status: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
//! patch (built-in kinds; custom resources answer 415, as upstream) and server-side apply
//! (`application/apply-patch+yaml`), which also creates a missing object. Every patch is recorded in
//! managedFields under its field manager.

use std::sync::LazyLock;

use axum::response::Response;
use http::StatusCode;
use serde_json::Value;

use super::create::create_object;
use super::update::{RETRIES, WriteOptions, update_object_as};
use super::{Ctx, respond};
use crate::admission::FieldValidation;
use crate::error::{ApiError, Cause, Result};
use crate::fieldmanager::{self, FieldManager, Tracking};
use crate::object;
use crate::patchmeta;
use crate::store;
use crate::strategic;

#[derive(Clone, Copy, PartialEq, Eq)]
enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// The media types upstream accepts for patches of custom resources (and lists in its 415).
const CUSTOM_PATCH_TYPES: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";
const BUILTIN_PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, \
     application/strategic-merge-patch+json, application/apply-patch+yaml";

impl Ctx {
    /// The manager this request's write is recorded under (`fieldManager`, else the user agent's first word).
    pub fn field_manager(&self) -> Result<String> {
        fieldmanager::manager_of(self.query.get("fieldManager"), self.user_agent.as_deref())
    }
}

pub async fn patch(ctx: Ctx) -> Result<Response> {
    let rt = &ctx.target.rt;
    let media = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let accepted = if rt.is_custom() {
        CUSTOM_PATCH_TYPES
    } else {
        BUILTIN_PATCH_TYPES
    };
    let kind = match media.as_str() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" if !rt.is_custom() => PatchType::Strategic,
        "application/apply-patch+yaml" => PatchType::Apply,
        _ => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            )));
        }
    };
    let mut causes = Vec::new();
    if kind == PatchType::Apply && ctx.query.get("fieldManager").is_none() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    }
    if kind != PatchType::Apply && ctx.query.get("force").is_some() {
        causes.push(Cause::new(
            "FieldValueForbidden",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    if !causes.is_empty() {
        return Err(fieldmanager::options_invalid(causes));
    }
    match kind {
        PatchType::Apply => apply(ctx).await,
        _ => patch_object(ctx, kind).await,
    }
}

async fn patch_object(ctx: Ctx, kind: PatchType) -> Result<Response> {
    let target = &ctx.target;
    let rt = &target.rt;
    let patch: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let manager = ctx.field_manager()?;
    let options = WriteOptions {
        dry_run: ctx.query.dry_run()?,
        fields: FieldValidation::from_query(&ctx.query)?,
        tracking: Tracking::Update(&manager),
        sets_status: false,
    };
    let types = match kind {
        PatchType::Strategic => Some(
            patchmeta::kind_types(&rt.group, &rt.version, &rt.kind).ok_or_else(|| {
                ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     {CUSTOM_PATCH_TYPES}"
                ))
            })?,
        ),
        _ => None,
    };
    let name = target.name.clone().unwrap_or_default();
    for _ in 0..RETRIES {
        let old = ctx
            .app
            .store
            .get(&rt.key(), target.store_namespace(), &name)
            .ok_or_else(|| ApiError::not_found(target.subject()))?;
        let current = object::served(rt, &old);
        let patched = match (&types, kind) {
            (Some(types), _) => strategic_patch(&current, &patch, types.root())?,
            (None, kind) => apply_json(kind, &current, &patch)?,
        };
        if object::name(&patched) != Some(name.as_str())
            || patched["metadata"]["namespace"] != current["metadata"]["namespace"]
        {
            return Err(ApiError::bad_request(
                "a patch may not change an object's name or namespace",
            ));
        }
        // A uid in the patch pins it to one incarnation of the name (the kubelet's status patches carry
        // one): upstream's update validation refuses a changed uid as immutable, so a writer that knew a
        // deleted object never patches its replacement.
        if let Some(uid) = patched["metadata"]["uid"]
            .as_str()
            .filter(|u| !u.is_empty())
            && patched["metadata"]["uid"] != current["metadata"]["uid"]
        {
            return Err(ApiError::invalid(
                target.subject(),
                &rt.group_kind(),
                vec![Cause::invalid(
                    "metadata.uid",
                    &Value::String(uid.to_owned()),
                    "field is immutable",
                )],
            ));
        }
        let mut checked = patched.clone();
        ctx.check_type(&mut checked)?;
        // A resourceVersion the patch itself sets is a precondition; otherwise the patch applies to the latest.
        let expected_rv = if patched["metadata"]["resourceVersion"]
            != current["metadata"]["resourceVersion"]
        {
            Some(store::stored_rv(&patched).ok_or_else(|| {
                ApiError::bad_request("metadata.resourceVersion in a patch must be a resourceVersion this server issued")
            })?)
        } else {
            None
        };
        match update_object_as(&ctx.app, target, &old, checked, expected_rv, options).await {
            Err(err) if err.reason == "Conflict" && expected_rv.is_none() => continue,
            Err(err) => return Err(err),
            Ok((stored, warnings)) => {
                return Ok(respond(
                    StatusCode::OK,
                    &object::served(rt, &stored),
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

/// Server-side apply: merges the manager's configuration into the object (or creates it), with field
/// ownership and conflicts.
async fn apply(ctx: Ctx) -> Result<Response> {
    let target = &ctx.target;
    let rt = &target.rt;
    let manager = ctx.field_manager()?;
    let force = ctx.query.flag("force")?;
    let options = WriteOptions {
        dry_run: ctx.query.dry_run()?,
        fields: FieldValidation::from_query(&ctx.query)?,
        tracking: Tracking::Recorded,
        sets_status: false,
    };
    let config: Value = serde_yaml::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: an apply configuration must be an object",
        ));
    }
    let name = target.name.clone().unwrap_or_default();
    if let Some(named) = config["metadata"]["name"].as_str()
        && named != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({named}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(namespace) = config["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        && Some(namespace) != target.namespace.as_deref()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let fields = FieldManager::new(rt, target.subresource.as_deref());
    for _ in 0..RETRIES {
        let Some(old) = ctx
            .app
            .store
            .get(&rt.key(), target.store_namespace(), &name)
        else {
            if target.subresource.is_some() {
                return Err(ApiError::not_found(target.subject()));
            }
            let mut object = fields.apply(None, config.clone(), &manager, force)?;
            object::meta_mut(&mut object).insert("name".into(), Value::String(name.clone()));
            match create_object(&ctx, object, Tracking::Recorded).await {
                // Someone else created it meanwhile: apply to theirs.
                Err(err) if err.reason == "AlreadyExists" => continue,
                result => return result,
            }
        };
        let current = object::served(rt, &old);
        let applied = fields.apply(Some(&current), config.clone(), &manager, force)?;
        if applied == current {
            return Ok(respond(StatusCode::OK, &current, &[]));
        }
        match update_object_as(&ctx.app, target, &old, applied, None, options).await {
            // A store conflict (not a field conflict, which has causes): the object changed; apply again.
            Err(err) if err.reason == "Conflict" && err.causes.is_empty() => continue,
            Err(err) => return Err(err),
            Ok((stored, warnings)) => {
                return Ok(respond(
                    StatusCode::OK,
                    &object::served(rt, &stored),
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

/// Applies a JSON merge patch, JSON patch or strategic merge patch body, chosen by media type, to a document
/// that is not stored as such (the `scale` subresource's Scale view).
pub(super) fn apply_to(content_type: &str, current: &Value, body: &[u8]) -> Result<Value> {
    static SCALE: LazyLock<patchmeta::Types> =
        LazyLock::new(patchmeta::Types::of::<k8s_openapi::api::autoscaling::v1::Scale>);
    let kind = match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json (got {other:?})"
            )));
        }
    };
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    match kind {
        PatchType::Strategic => strategic_patch(current, &patch, SCALE.root()),
        _ => apply_json(kind, current, &patch),
    }
}

fn strategic_patch(current: &Value, patch: &Value, node: patchmeta::Node<'_>) -> Result<Value> {
    strategic::apply(current, patch, node).map_err(|e| match e {
        strategic::Error::BadRequest(message) => ApiError::bad_request(message),
        strategic::Error::Invalid(message) => ApiError::invalid_patch(message),
    })
}

fn apply_json(kind: PatchType, current: &Value, patch: &Value) -> Result<Value> {
    let mut doc = current.clone();
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut doc, patch);
        }
        _ => {
            let ops: json_patch::Patch = serde_json::from_value(upstream_tests(current, patch))
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            // `doc` is a scratch copy, so no rollback is needed; json-patch 5.0's rolling-back `patch` can
            // panic while undoing a failed `move` (found by the fuzz tests).
            json_patch::patch_unsafe(&mut doc, &ops)
                .map_err(|e| ApiError::invalid_patch(e.to_string()))?;
        }
    }
    if !doc.is_object() {
        return Err(ApiError::bad_request(
            "the patched object must be a JSON object",
        ));
    }
    Ok(doc)
}

/// Upstream's JSON patch (evanphx/json-patch) lets a `test` for `null` pass when the path does not exist;
/// RFC 6902 (and the json-patch crate) fail it. Such tests are dropped before applying.
fn upstream_tests(current: &Value, patch: &Value) -> Value {
    let Some(ops) = patch.as_array() else {
        return patch.clone();
    };
    let kept: Vec<Value> = ops
        .iter()
        .filter(|op| {
            let null_test = op["op"] == "test" && op.get("value").is_some_and(Value::is_null);
            let missing = op["path"]
                .as_str()
                .is_some_and(|p| current.pointer(p).is_none());
            !(null_test && missing)
        })
        .cloned()
        .collect();
    Value::Array(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_test_on_missing_path_passes_as_upstream() {
        let current = json!({"metadata": {"name": "a"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/labels", "value": null},
            {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}
        ]);
        let out = apply_json(PatchType::Json, &current, &patch).unwrap();
        assert_eq!(out["metadata"]["labels"]["x"], "y");
    }

    #[test]
    fn failing_test_is_unprocessable() {
        let current = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        let patch = json!([{"op": "test", "path": "/metadata/labels/x", "value": "2"}]);
        let err = apply_json(PatchType::Json, &current, &patch).unwrap_err();
        assert_eq!(err.code, http::StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let current = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}});
        let out = apply_json(
            PatchType::Merge,
            &current,
            &json!({"metadata": {"labels": {"x": null}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
    }
}
