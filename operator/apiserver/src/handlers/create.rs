//! `create` (POST to a collection): names (generateName), system metadata, per-kind preparation, admission,
//! the namespace's existence and lifecycle, then the store.

use axum::response::Response;
use http::StatusCode;
use rand::Rng;
use serde_json::{Value, json};

use super::{Ctx, committed, respond, store_error};
use crate::admission::{self, FieldValidation};
use crate::error::{ApiError, Result, Subject};
use crate::fieldmanager::{FieldManager, Tracking};
use crate::object;
use crate::store::{Action, ResourceKey, WriteOp};

/// Upstream's alphabet for generated name suffixes (no vowels, no confusable characters).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub async fn create(ctx: Ctx) -> Result<Response> {
    let rt = ctx.target.rt.clone();
    if rt.namespaced && ctx.target.namespace.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "{} must be created in a namespace: POST to /.../namespaces/<namespace>/{}",
            rt.resource, rt.resource
        )));
    }
    let object = ctx.object_body()?;
    let manager = ctx.field_manager()?;
    create_object(&ctx, object, Tracking::Update(&manager)).await
}

/// Creates `object` at the request's collection. `tracking` says whether the write still has to record its
/// manager in managedFields (a server-side apply that creates has recorded its own).
pub async fn create_object(
    ctx: &Ctx,
    mut object: Value,
    tracking: Tracking<'_>,
) -> Result<Response> {
    let rt = ctx.target.rt.clone();
    let dry_run = ctx.query.dry_run()?;
    let fields = FieldValidation::from_query(&ctx.query)?;
    ctx.check_type(&mut object)?;

    let meta = object::meta_mut(&mut object);
    if rt.namespaced {
        let url_ns = ctx.target.namespace.clone().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty()
        && let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        let mut rng = rand::rng();
        let suffix: String = (0..5)
            .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
            .collect();
        meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now()));
    for system in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(system);
    }
    if rt.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    admission::prepare_create(&ctx.app.registry, &rt, &mut object)?;
    object::tidy_metadata(&mut object);
    let warnings = admission::admit(&rt, &mut object, fields)?;
    if let Tracking::Update(manager) = tracking {
        FieldManager::new(&rt, None).update(None, &mut object, manager);
    }
    let object = object::stored(&rt, object);

    let name = object::name(&object).unwrap_or_default().to_owned();
    let mut target = ctx.target.clone();
    target.name = Some(name.clone());
    if let Some(ns) = target.namespace.as_deref() {
        check_namespace(ctx, ns, &target.subject())?;
    }
    if dry_run {
        if ctx
            .app
            .store
            .get(&rt.key(), target.store_namespace(), &name)
            .is_some()
        {
            return Err(ApiError::already_exists(target.subject()));
        }
        return Ok(respond(
            StatusCode::CREATED,
            &object::served(&rt, &object),
            &warnings,
        ));
    }
    let stored = ctx
        .app
        .store
        .write(WriteOp {
            resource: rt.key(),
            namespace: target.store_namespace().to_owned(),
            name,
            action: Action::Create(object),
        })
        .await
        .map_err(|e| store_error(&target, e))?;
    committed(&ctx.app, &rt, &stored, false).await;
    Ok(respond(
        StatusCode::CREATED,
        &object::served(&rt, &stored),
        &warnings,
    ))
}

/// New objects need an existing namespace that is not being deleted.
fn check_namespace(ctx: &Ctx, namespace: &str, subject: &Subject) -> Result<()> {
    let namespaces = ResourceKey::new("", "namespaces");
    match ctx.app.store.get(&namespaces, "", namespace) {
        None => Err(ApiError::not_found(Subject {
            group: String::new(),
            kind: "namespaces".into(),
            name: namespace.to_owned(),
        })),
        Some(ns) if object::is_deleting(&ns) || ns["status"]["phase"] == "Terminating" => {
            Err(ApiError::forbidden(
                subject.clone(),
                format!(
                    "{} {:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    ctx.target.rt.group_resource(),
                    subject.name
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}
