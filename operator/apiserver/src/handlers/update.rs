//! `update` (PUT) of an object or its status, and the update path every other write shares (patch, finalizer
//! removal): system metadata carried over, status kept apart, generation rules, admission, preconditions.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::{App, Ctx, committed, respond, store_error};
use crate::admission::{self, FieldValidation};
use crate::error::{ApiError, Cause, Result};
use crate::fieldmanager::{FieldManager, Tracking};
use crate::object;
use crate::request::Target;
use crate::store::{self, Action, StoreError, WriteOp};

/// How many times a write without a resourceVersion precondition is retried after losing a race.
pub const RETRIES: usize = 8;

/// The manager the server's own writes (and writes through [`update_object`]) are recorded under.
pub const SERVER_MANAGER: &str = "berth-apiserver";

/// How [`update_object_as`] writes: dry run or not, unknown-field handling, and who the write is recorded
/// under in managedFields.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions<'a> {
    pub dry_run: bool,
    pub fields: FieldValidation,
    pub tracking: Tracking<'a>,
    /// Whether the write sets status too, although the resource has a status subresource (`pods/binding`
    /// marks the Pod scheduled in the same write that assigns its node, as upstream's binding does).
    pub sets_status: bool,
}

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
    let manager = ctx.field_manager()?;
    let options = WriteOptions {
        dry_run,
        fields,
        tracking: Tracking::Update(&manager),
        sets_status: false,
    };
    for _ in 0..RETRIES {
        let old = ctx
            .app
            .store
            .get(&rt.key(), target.store_namespace(), &url_name)
            .ok_or_else(|| ApiError::not_found(target.subject()))?;
        match update_object_as(&ctx.app, target, &old, object.clone(), expected_rv, options).await {
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
    new: Value,
    expected_rv: Option<u64>,
    dry_run: bool,
    fields: FieldValidation,
) -> Result<(Arc<Value>, Vec<String>)> {
    let options = WriteOptions {
        dry_run,
        fields,
        tracking: Tracking::Update(SERVER_MANAGER),
        sets_status: false,
    };
    update_object_as(app, target, old, new, expected_rv, options).await
}

/// [`update_object`], recorded in managedFields as `options.tracking` says.
pub async fn update_object_as(
    app: &Arc<App>,
    target: &Target,
    old: &Arc<Value>,
    mut new: Value,
    expected_rv: Option<u64>,
    options: WriteOptions<'_>,
) -> Result<(Arc<Value>, Vec<String>)> {
    let WriteOptions {
        dry_run,
        fields,
        tracking,
        sets_status,
    } = options;
    let rt = &target.rt;
    let old_rv = store::stored_rv(old);
    // `new` is as the client sees the object; so must `old` be wherever the two are compared.
    let old_view = object::write_view(rt, old);
    if expected_rv.is_some() && expected_rv != old_rv {
        return Err(store_error(target, StoreError::Conflict));
    }
    if target.subresource.as_deref() == Some("status") {
        // A status write changes status and nothing else.
        let mut merged = old_view.as_ref().clone();
        match new.get("status") {
            Some(status) => merged["status"] = status.clone(),
            None => {
                if let Some(map) = merged.as_object_mut() {
                    map.remove("status");
                }
            }
        }
        // ...and the ownership of it, when an apply has already recorded that.
        if let Tracking::Recorded = tracking {
            let meta = object::meta_mut(&mut merged);
            match new["metadata"].get("managedFields") {
                Some(managed) => meta.insert("managedFields".into(), managed.clone()),
                None => meta.remove("managedFields"),
            };
        }
        new = merged;
    } else {
        let old_meta = old_view["metadata"]
            .as_object()
            .cloned()
            .unwrap_or_default();
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
        if rt.status_subresource && !sets_status {
            match old_view.get("status") {
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
        admission::prepare_update(&app.registry, rt, &mut new, &old_view)?;
    }
    let generation = object::generation(old).max(1);
    let meta = object::meta_mut(&mut new);
    if rt.generation {
        let bumped = generation + i64::from(object::spec_changed(rt, &old_view, &new));
        new["metadata"]["generation"] = json!(bumped);
    } else {
        meta.remove("generation");
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    object::tidy_metadata(&mut new);
    let warnings = admission::admit(rt, &mut new, fields)?;
    if let Tracking::Update(manager) = tracking {
        FieldManager::new(rt, target.subresource.as_deref()).update(
            Some(old_view.as_ref()),
            &mut new,
            manager,
        );
    }
    let new = object::stored(rt, new);
    if dry_run {
        return Ok((Arc::new(new), warnings));
    }
    let name = object::name(old).unwrap_or_default().to_owned();
    let finished = object::is_deleting(&new) && !object::held(rt, &new);
    if !finished && new == **old {
        // As upstream: a write that changes nothing is not stored (no new resourceVersion, no watch event).
        return Ok((old.clone(), warnings));
    }
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
