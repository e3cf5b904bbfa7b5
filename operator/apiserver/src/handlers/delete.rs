//! `delete` and `deletecollection`: DeleteOptions (body or query), preconditions, finalizers and
//! `deletionTimestamp`, propagation policies (as the finalizers the garbage collector honours), graceful
//! deletion of Pods bound to a node, and the cleanup of a CRD's custom resources.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::read::Filter;
use super::{App, Ctx, committed, respond, store_error};
use crate::error::{ApiError, Result};
use crate::object;
use crate::request::Target;
use crate::store::{self, Action, StoreError, WriteOp};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
    preconditions: Option<Preconditions>,
    dry_run: Option<Vec<String>>,
}

impl DeleteOptions {
    /// 409 when the object is not the one the preconditions name.
    fn check_preconditions(&self, target: &Target, object: &Value) -> Result<()> {
        let Some(pre) = &self.preconditions else {
            return Ok(());
        };
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        if let Some(want) = pre.uid.as_deref().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::conflict(
                target.subject(),
                format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        let rv = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if let Some(want) = pre.resource_version.as_deref().filter(|r| !r.is_empty())
            && want != rv
        {
            return Err(ApiError::conflict(
                target.subject(),
                format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        Ok(())
    }

    fn from_ctx(ctx: &Ctx) -> Result<DeleteOptions> {
        let mut options: DeleteOptions = if ctx.body.iter().all(u8::is_ascii_whitespace) {
            DeleteOptions::default()
        } else {
            // Decoded by content type like any body (a protobuf body gets the 415 that says so).
            serde_json::from_value(ctx.object_body()?)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        if let Some(grace) = ctx.query.number("gracePeriodSeconds")? {
            options.grace_period_seconds = Some(grace);
        }
        if let Some(policy) = ctx.query.get("propagationPolicy") {
            options.propagation_policy = Some(policy.to_owned());
        }
        if ctx.query.get("orphanDependents").is_some() {
            options.orphan_dependents = Some(ctx.query.flag("orphanDependents")?);
        }
        if ctx.query.dry_run()? {
            options.dry_run = Some(vec!["All".into()]);
        }
        match options.propagation_policy.as_deref() {
            None | Some("Orphan") | Some("Background") | Some("Foreground") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        }
        if options.orphan_dependents.is_some() && options.propagation_policy.is_some() {
            return Err(ApiError::bad_request(
                "propagationPolicy: Invalid value: orphanDependents and propagationPolicy cannot both be set",
            ));
        }
        Ok(options)
    }

    fn dry_run(&self) -> Result<bool> {
        match self.dry_run.as_deref() {
            None | Some([]) => Ok(false),
            Some([all]) if all == "All" => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value {other:?}: valid values are \"All\""
            ))),
        }
    }

    /// The finalizer the propagation policy asks for, if any.
    fn propagation_finalizer(&self) -> Option<&'static str> {
        match (self.propagation_policy.as_deref(), self.orphan_dependents) {
            (Some("Orphan"), _) | (None, Some(true)) => Some(ORPHAN),
            (Some("Foreground"), _) => Some(FOREGROUND),
            _ => None,
        }
    }
}

pub async fn delete(ctx: Ctx) -> Result<Response> {
    let options = DeleteOptions::from_ctx(&ctx)?;
    let target = &ctx.target;
    let name = target.name.clone().unwrap_or_default();
    let old = ctx
        .app
        .store
        .get(&target.rt.key(), target.store_namespace(), &name)
        .ok_or_else(|| ApiError::not_found(target.subject()))?;
    let (code, object) = delete_object(&ctx.app, target, old, &options).await?;
    Ok(respond(code, &object::served(&target.rt, &object), &[]))
}

pub async fn delete_collection(ctx: Ctx) -> Result<Response> {
    let options = DeleteOptions::from_ctx(&ctx)?;
    let rt = &ctx.target.rt;
    let filter = Filter::from_query(rt, &ctx.query)?;
    let (_, items) = ctx
        .app
        .store
        .list(&rt.key(), ctx.target.namespace.as_deref());
    let mut deleted = Vec::new();
    for item in items.into_iter().filter(|o| filter.matches(o)) {
        let mut target = ctx.target.clone();
        target.name = object::name(&item).map(str::to_owned);
        if rt.namespaced {
            target.namespace = item["metadata"]["namespace"].as_str().map(str::to_owned);
        }
        match delete_object(&ctx.app, &target, item, &options).await {
            Ok((_, object)) => deleted.push(object::served(rt, &object)),
            // Gone in the meantime: that is what the client asked for.
            Err(err) if err.code == StatusCode::NOT_FOUND => {}
            Err(err) => return Err(err),
        }
    }
    Ok(respond(
        StatusCode::OK,
        &json!({
            "kind": rt.list_kind,
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": ctx.app.store.current_rv().to_string()},
            "items": deleted,
        }),
        &[],
    ))
}

/// How often a delete re-reads an object that another writer changed under it before giving up.
const ATTEMPTS: usize = 16;

/// Deletes one object: at once, or by marking it (deletionTimestamp) while finalizers or a grace period hold it.
/// As upstream's guaranteed update does, a write that raced another one re-reads the object and tries again,
/// checking the preconditions each time; only a precondition can turn the race into a 409.
pub async fn delete_object(
    app: &Arc<App>,
    target: &Target,
    mut old: Arc<Value>,
    options: &DeleteOptions,
) -> Result<(StatusCode, Value)> {
    let dry_run = options.dry_run()?;
    for _ in 0..ATTEMPTS {
        options.check_preconditions(target, &old)?;
        match try_delete(app, target, &old, options, dry_run).await {
            Err(StoreError::Conflict) => {
                old = app
                    .store
                    .get(
                        &target.rt.key(),
                        target.store_namespace(),
                        object::name(&old).unwrap_or_default(),
                    )
                    .ok_or_else(|| ApiError::not_found(target.subject()))?;
            }
            Err(other) => return Err(store_error(target, other)),
            Ok(done) => return Ok(done),
        }
    }
    Err(ApiError::conflict(
        target.subject(),
        "the object kept changing while it was being deleted; try again",
    ))
}

/// One attempt of [`delete_object`] against the object as read.
async fn try_delete(
    app: &Arc<App>,
    target: &Target,
    old: &Value,
    options: &DeleteOptions,
    dry_run: bool,
) -> std::result::Result<(StatusCode, Value), StoreError> {
    let rt = &target.rt;
    let mut finalizers = object::finalizers(old);
    if let Some(wanted) = options.propagation_finalizer() {
        finalizers.retain(|f| f != ORPHAN && f != FOREGROUND);
        finalizers.push(wanted.to_owned());
    }
    let grace = pod_grace_period(target, old, options);
    let code = if options.propagation_finalizer() == Some(FOREGROUND) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let name = object::name(old).unwrap_or_default().to_owned();
    let namespace_held = object::held(rt, old) && object::finalizers(old).is_empty();
    if finalizers.is_empty() && !namespace_held && grace.is_none() {
        if dry_run {
            return Ok((StatusCode::OK, old.clone()));
        }
        let stored = app
            .store
            .write(WriteOp {
                resource: rt.key(),
                namespace: target.store_namespace().to_owned(),
                name,
                action: Action::Delete {
                    expected_rv: store::stored_rv(old),
                    expected_uid: None,
                },
            })
            .await?;
        committed(app, rt, &stored, true).await;
        return Ok((StatusCode::OK, stored.as_ref().clone()));
    }
    let mut marked = old.clone();
    let already = object::is_deleting(old);
    {
        let meta = object::meta_mut(&mut marked);
        if !already {
            let seconds = grace.unwrap_or(0);
            meta.insert("deletionTimestamp".into(), json!(object::now_plus(seconds)));
            meta.insert("deletionGracePeriodSeconds".into(), json!(seconds));
            if rt.generation {
                let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
                meta.insert("generation".into(), json!(generation + 1));
            }
        }
        meta.insert("finalizers".into(), json!(finalizers));
    }
    if rt.group == "apiextensions.k8s.io" && rt.resource == "customresourcedefinitions" {
        crate::crd::set_status(&app.registry, &mut marked, Some(old));
    }
    if rt.group.is_empty() && rt.resource == "namespaces" {
        object::set_path(&mut marked, &["status", "phase"], json!("Terminating"));
    }
    object::tidy_metadata(&mut marked);
    if marked == *old {
        return Ok((code, marked));
    }
    if dry_run {
        return Ok((code, marked));
    }
    let stored = app
        .store
        .write(WriteOp {
            resource: rt.key(),
            namespace: target.store_namespace().to_owned(),
            name,
            action: Action::Update {
                object: marked,
                expected_rv: store::stored_rv(old),
            },
        })
        .await?;
    committed(app, rt, &stored, false).await;
    Ok((code, stored.as_ref().clone()))
}

/// Pods on a node stop gracefully: the kubelet removes them when their containers are gone. Unscheduled or
/// finished Pods, and a grace period of 0, delete at once.
fn pod_grace_period(target: &Target, pod: &Value, options: &DeleteOptions) -> Option<i64> {
    if !(target.rt.group.is_empty() && target.rt.resource == "pods") {
        return None;
    }
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    );
    let grace = options
        .grace_period_seconds
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    (bound && !finished && grace > 0).then_some(grace)
}
