//! `patch` of an object or its status: JSON merge patch (RFC 7386) and JSON patch (RFC 6902). Strategic merge
//! patch and server-side apply are answered with 415 until they are served (see the README's API coverage).

use axum::response::Response;
use http::StatusCode;
use serde_json::Value;

use super::update::{RETRIES, update_object};
use super::{Ctx, respond};
use crate::admission::FieldValidation;
use crate::error::{ApiError, Result};
use crate::object;
use crate::store;

#[derive(Clone, Copy)]
enum PatchType {
    Json,
    Merge,
}

pub async fn patch(ctx: Ctx) -> Result<Response> {
    let target = &ctx.target;
    let rt = &target.rt;
    let media = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let kind = match media.as_str() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" if rt.is_custom() => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json (strategic merge patch is not supported \
                 for custom resources: {})",
                rt.group_resource()
            )));
        }
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json (got {other:?}; strategic merge patch \
                 and server-side apply are not served by this server yet)"
            )));
        }
    };
    let patch: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let dry_run = ctx.query.dry_run()?;
    let fields = FieldValidation::from_query(&ctx.query)?;
    let name = target.name.clone().unwrap_or_default();
    for _ in 0..RETRIES {
        let old = ctx
            .app
            .store
            .get(&rt.key(), target.store_namespace(), &name)
            .ok_or_else(|| ApiError::not_found(target.subject()))?;
        let current = object::served(rt, &old);
        let patched = apply(kind, &current, &patch)?;
        if object::name(&patched) != Some(name.as_str())
            || patched["metadata"]["namespace"] != current["metadata"]["namespace"]
        {
            return Err(ApiError::bad_request(
                "a patch may not change an object's name or namespace",
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
        match update_object(
            &ctx.app,
            target,
            &old,
            checked,
            expected_rv,
            dry_run,
            fields,
        )
        .await
        {
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

/// Applies a JSON merge patch or JSON patch body, chosen by media type, to a document that is not stored as
/// such (the `scale` subresource's Scale view).
pub(super) fn apply_to(content_type: &str, current: &Value, body: &[u8]) -> Result<Value> {
    let kind = match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json (got {other:?})"
            )));
        }
    };
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    apply(kind, current, &patch)
}

fn apply(kind: PatchType, current: &Value, patch: &Value) -> Result<Value> {
    let mut doc = current.clone();
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut doc, patch);
        }
        PatchType::Json => {
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
        let out = apply(PatchType::Json, &current, &patch).unwrap();
        assert_eq!(out["metadata"]["labels"]["x"], "y");
    }

    #[test]
    fn failing_test_is_unprocessable() {
        let current = json!({"metadata": {"name": "a", "labels": {"x": "1"}}});
        let patch = json!([{"op": "test", "path": "/metadata/labels/x", "value": "2"}]);
        let err = apply(PatchType::Json, &current, &patch).unwrap_err();
        assert_eq!(err.code, http::StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let current = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}});
        let out = apply(
            PatchType::Merge,
            &current,
            &json!({"metadata": {"labels": {"x": null}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
    }
}
