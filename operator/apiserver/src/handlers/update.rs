//! `update` (PUT) of an object or its status, and the update path every other write shares (patch, finalizer
//! removal): system metadata carried over, status kept apart, generation rules, admission, preconditions.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{App, Ctx, committed, respond, store_error};
use crate::admission::{self, FieldValidation};
use crate::error::{ApiError, Cause, Result};
use crate::object;
use crate::request::Target;
use crate::store::{self, Action, StoreError, WriteOp};

/// How many times a write without a resourceVersion precondition is retried after losing a race.
pub const RETRIES: usize = 8;

pub async fn replace(ctx: Ctx) -> Result<Response> {
    let target = &ctx.target;
    let rt = &target.rt;
    let dry_run = ctx.query.dry_run()?;
    let fields = FieldValidation::from_query(&ctx.query)?;
    let mut object = ctx.object_body()?;
    ctx.check_type(&mut object)?;
    let url_name = target.name.clone().unwrap_or_default();
    let meta = object::meta_mut(&mut object);
    match meta.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() && name != url_name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({url_name})"
            )));
        }
        _ => {
            meta.insert("name".into(), json!(url_name));
        }
    }
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str)
        && !ns.is_empty()
        && Some(ns) != target.namespace.as_deref()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let expected_rv = match meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                target.subject(),
                &rt.group_kind(),
                vec![Cause::invalid(
                    "metadata.resourceVersion",
                    &json!(rv),
                    "must be a resourceVersion this server issued",
                )],
            )
        })?),
    };
    if expected_rv.is_none() && !rt.unconditional_update {
        return Err(ApiError::invalid(
            target.subject(),
            &rt.group_kind(),
            vec![admission::missing_resource_version()],
        ));
    }
    for _ in 0..RETRIES {
        let old = ctx
            .app
            .store
            .get(&rt.key(), target.store_namespace(), &url_name)
            .ok_or_else(|| ApiError::not_found(target.subject()))?;
        match update_object(
            &ctx.app,
            target,
            &old,
            object.clone(),
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

/// Writes `new` over `old` (both as clients see them) for the target (the object or its `status`).
/// `expected_rv` is the client's precondition; the write is always conditional on `old` being current, so a
/// lost race is a Conflict the caller may retry. Returns the stored object and warnings for the client.
pub async fn update_object(
    app: &Arc<App>,
    target: &Target,
    old: &Arc<Value>,
    mut new: Value,
    expected_rv: Option<u64>,
    dry_run: bool,
    fields: FieldValidation,
) -> Result<(Arc<Value>, Vec<String>)> {
    let rt = &target.rt;
    let old_rv = store::stored_rv(old);
    if expected_rv.is_some() && expected_rv != old_rv {
        return Err(store_error(target, StoreError::Conflict));
    }
    if target.subresource.as_deref() == Some("status") {
        // A status write changes status and nothing else.
        let mut merged = old.as_ref().clone();
        match new.get("status") {
            Some(status) => merged["status"] = status.clone(),
            None => {
                if let Some(map) = merged.as_object_mut() {
                    map.remove("status");
                }
            }
        }
        new = merged;
    } else {
        let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
        let meta = object::meta_mut(&mut new);
        for key in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ] {
            match old_meta.get(key) {
                Some(v) => meta.insert(key.into(), v.clone()),
                None => meta.remove(key),
            };
        }
        meta.remove("selfLink");
        if rt.status_subresource {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        if object::is_deleting(old) {
            let before = object::finalizers(old);
            let added: Vec<String> = object::finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    target.subject(),
                    &rt.group_kind(),
                    vec![Cause::new(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        admission::prepare_update(&app.registry, rt, &mut new, old);
    }
    let generation = object::generation(old).max(1);
    let meta = object::meta_mut(&mut new);
    if rt.generation {
        let bumped = generation + i64::from(object::spec_changed(rt, old, &new));
        new["metadata"]["generation"] = json!(bumped);
    } else {
        meta.remove("generation");
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    object::tidy_metadata(&mut new);
    let warnings = admission::admit(rt, &mut new, fields)?;
    if dry_run {
        return Ok((Arc::new(new), warnings));
    }
    let name = object::name(old).unwrap_or_default().to_owned();
    let finished = object::is_deleting(&new) && object::finalizers(&new).is_empty();
    let action = if finished {
        Action::Delete {
            expected_rv: old_rv,
            expected_uid: None,
        }
    } else {
        Action::Update {
            object: new,
            expected_rv: old_rv,
        }
    };
    let stored = app
        .store
        .write(WriteOp {
            resource: rt.key(),
            namespace: target.store_namespace().to_owned(),
            name,
            action,
        })
        .await
        .map_err(|e| store_error(target, e))?;
    committed(app, rt, &stored, finished).await;
    Ok((stored, warnings))
}
