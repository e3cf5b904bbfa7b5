//! One reconcile of one Stack: observe, map, plan, then write what the plan says (server-side apply under one
//! field manager, deletes), the status (only when it changed) and Events. Deletion goes through the finalizer
//! helper: `Cleanup` applies `deletionPolicy` to the data the Stack leaves behind; owner references and the
//! garbage collector take care of the rest. The Stack's `spec` is never written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::constants::{
    API_VERSION, CONDITION_RECONCILING, CONDITION_STALLED, FIELD_MANAGER, FINALIZER, KIND,
};
use berth_api::{DeletionPolicy, Stack, StackStatus};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::mapping::{self, Desired, MappingError, Names};
use crate::observe::{self, Stores};
use crate::plan::{self, Note, Object, Observed, Step};
use crate::server::State;

/// The controller's name on the Events it records.
pub const REPORTER: &str = "berth-controller";
/// How soon a Stack that is rolling out is looked at again even if nothing it owns changes.
pub const PROGRESS_REQUEUE: Duration = Duration::from_secs(10);
/// How soon a stalled Stack is looked at again: a missing Secret may have been created meanwhile.
pub const STALLED_REQUEUE: Duration = Duration::from_secs(30);
/// The first retry after an error; it doubles with each error in a row, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub recorder: Recorder,
    pub state: Arc<State>,
    /// Errors in a row per Stack (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// `instance` tells this replica's Events from another's (the Pod name, or the host name).
    pub fn new(client: Client, stores: Stores, state: Arc<State>, instance: String) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: REPORTER.into(),
                instance: Some(instance),
            },
        );
        Context {
            client,
            stores,
            recorder,
            state,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic while the lock was held left a counter, not a broken map.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn key(stack: &Stack) -> String {
    format!(
        "{}/{}",
        stack.namespace().unwrap_or_default(),
        stack.name_any()
    )
}

/// Conditions carry second precision on the wire; a finer `now` would differ from its own echo.
fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()))
}

#[tracing::instrument(skip_all, fields(stack = %key(&stack)))]
pub async fn reconcile(stack: Arc<Stack>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.state.metrics.reconcile();
    ctx.stores.synced().await;
    let namespace = stack.namespace().ok_or(Error::Unnamespaced)?;
    let api: Api<Stack> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, stack, |event| async {
        match event {
            Event::Apply(stack) => apply(&stack, &ctx, &namespace).await,
            Event::Cleanup(stack) => cleanup(&stack, &ctx, &namespace).await,
        }
    })
    .await;
    match result {
        Ok(action) => Ok(action),
        // The cache was behind: the Stack is already gone, and there is nothing left to do for it.
        Err(err) if stack_gone(&err) => {
            debug!("the Stack is gone");
            Ok(Action::await_change())
        }
        Err(err) => Err(Error::Finalizer(Box::new(err))),
    }
}

/// Did a write to the Stack itself find it deleted?
fn stack_gone(err: &kube::runtime::finalizer::Error<Error>) -> bool {
    use kube::runtime::finalizer::Error as F;
    let not_found = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    match err {
        F::AddFinalizer(e) | F::RemoveFinalizer(e) => not_found(e),
        F::ApplyFailed(Error::Status(e)) => not_found(e),
        _ => false,
    }
}

/// Retries with a per-Stack exponential backoff; a success resets it.
pub fn error_policy(stack: Arc<Stack>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = key(&stack);
    ctx.state.metrics.error(error.metric_label());
    let failures = {
        let mut failures = ctx.failures();
        let count = failures.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_BACKOFF);
    warn!(stack = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn apply(stack: &Stack, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let now = now();
    let names = Names::of(stack);
    let (desired, observed) = match names {
        Ok(names) => {
            let (password, blocking) =
                observe::credentials(&ctx.client, &ctx.stores, stack, &names, namespace).await?;
            match mapping::desired(stack, &password) {
                Ok(desired) => (
                    desired,
                    Observed {
                        pods: ctx.stores.pods_of(stack),
                        services: ctx.stores.services_of(stack),
                        claims: ctx.stores.claims_of(stack),
                        blocking,
                    },
                ),
                Err(err) => invalid(err),
            }
        }
        Err(err) => invalid(err),
    };
    let plan = plan::plan(stack, &desired, &observed, &now);
    execute(stack, ctx, namespace, &plan.steps).await?;
    write_status(stack, ctx, namespace, &plan.status).await?;
    publish(stack, ctx, &plan.notes).await;
    ctx.failures().remove(&key(stack));
    ctx.state.metrics.phase(&key(stack), plan.status.phase);
    Ok(next(&plan.status))
}

/// A Stack the schema let through that cannot be mapped (its name is too long for the names it would give
/// its objects): nothing to create, and a Stalled status that says what to change.
fn invalid(err: MappingError) -> (Desired, Observed) {
    let desired = Desired {
        secret: None,
        claims: Vec::new(),
        services: Vec::new(),
        database: None,
        redis: None,
        migrate: None,
        app: Vec::new(),
        app_hash: String::new(),
    };
    let observed = Observed {
        blocking: Some(("InvalidStack".into(), err.to_string())),
        ..Observed::default()
    };
    (desired, observed)
}

/// Steady Stacks wait for a change (the controller also resyncs every Stack now and then); others are looked
/// at again soon.
fn next(status: &StackStatus) -> Action {
    let is_true = |type_: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    if is_true(CONDITION_STALLED) {
        Action::requeue(STALLED_REQUEUE)
    } else if is_true(CONDITION_RECONCILING) {
        Action::requeue(PROGRESS_REQUEUE)
    } else {
        Action::await_change()
    }
}

async fn execute(
    stack: &Stack,
    ctx: &Context,
    namespace: &str,
    steps: &[Step],
) -> Result<(), Error> {
    for step in steps {
        match step {
            Step::Apply(object) => {
                if ctx.stores.unchanged(object, namespace) {
                    continue;
                }
                let client = ctx.client.clone();
                match object {
                    Object::Secret(o) => server_side_apply(client, namespace, o.as_ref()).await,
                    Object::Claim(o) => server_side_apply(client, namespace, o.as_ref()).await,
                    Object::Service(o) => server_side_apply(client, namespace, o.as_ref()).await,
                    Object::Pod(o) => server_side_apply(client, namespace, o.as_ref()).await,
                }
                .map_err(|source| Error::Apply {
                    kind: object.kind(),
                    name: object.name().to_owned(),
                    source,
                })?;
                info!(kind = object.kind(), name = object.name(), "applied");
            }
            Step::DeletePod(name) => delete::<Pod>(ctx, namespace, "Pod", name).await?,
            Step::DeleteService(name) => {
                delete::<Service>(ctx, namespace, "Service", name).await?;
            }
            Step::DeleteClaim(name) => {
                delete::<PersistentVolumeClaim>(ctx, namespace, "PersistentVolumeClaim", name)
                    .await?;
            }
        }
    }
    debug!(stack = %key(stack), steps = steps.len(), "plan executed");
    Ok(())
}

/// Deletes one object; one already gone is fine.
async fn delete<K>(
    ctx: &Context,
    namespace: &str,
    kind: &'static str,
    name: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => info!(kind, name, "deleted"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(source) => {
            return Err(Error::Delete {
                kind,
                name: name.to_owned(),
                source,
            });
        }
    }
    Ok(())
}

async fn server_side_apply<K>(
    client: Client,
    namespace: &str,
    object: &K,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client, namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Writes the status with server-side apply on `/status`, unless it is what the Stack already reports.
async fn write_status(
    stack: &Stack,
    ctx: &Context,
    namespace: &str,
    status: &StackStatus,
) -> Result<(), Error> {
    if stack.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<Stack> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({"apiVersion": API_VERSION, "kind": KIND, "status": status});
    api.patch_status(
        &stack.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    debug!(phase = ?status.phase, "status written");
    Ok(())
}

/// The Stack as Events refer to it; without its resourceVersion, so that repeated notes count as one series.
fn reference(stack: &Stack) -> ObjectReference {
    ObjectReference {
        resource_version: None,
        ..stack.object_ref(&())
    }
}

/// Records the plan's notes as Events. An Event that cannot be written is logged, not retried: the next
/// reconcile does not depend on it.
async fn publish(stack: &Stack, ctx: &Context, notes: &[Note]) {
    let regarding = reference(stack);
    for note in notes {
        let related = note.pod.as_ref().map(|pod| ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.clone()),
            namespace: stack.namespace(),
            ..ObjectReference::default()
        });
        let event = KubeEvent {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.message.clone()),
            action: "Reconcile".into(),
            secondary: related,
        };
        if let Err(err) = ctx.recorder.publish(&event, &regarding).await {
            warn!(reason = note.reason, error = %err, "recording an event");
        }
    }
}

/// `deletionPolicy`: `Retain` takes the Stack's owner reference off the data it leaves behind (the claims and
/// the generated Secret), so the garbage collector keeps them and a Stack of the same name adopts them again;
/// `Delete` deletes them. Pods and Services go with the Stack through their owner references.
async fn cleanup(stack: &Stack, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let Ok(names) = Names::of(stack) else {
        // A Stack that could not be mapped made nothing.
        return Ok(Action::await_change());
    };
    let uid = stack.uid().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let policy = stack.spec.deletion_policy;
    let mut handled = Vec::new();
    for name in [&names.database_claim, &names.redis_claim] {
        if settle(&claims, "PersistentVolumeClaim", name, &uid, policy).await? {
            handled.push(name.clone());
        }
    }
    if settle(&secrets, "Secret", &names.secret, &uid, policy).await? {
        handled.push(names.secret.clone());
    }
    if !handled.is_empty() {
        let (reason, message) = match policy {
            DeletionPolicy::Retain => (
                "Retained",
                format!(
                    "deletionPolicy Retain: kept {} (no longer owned by the Stack)",
                    handled.join(", ")
                ),
            ),
            DeletionPolicy::Delete => (
                "Deleted",
                format!("deletionPolicy Delete: deleted {}", handled.join(", ")),
            ),
        };
        let note = Note {
            warning: false,
            reason,
            message,
            pod: None,
        };
        publish(stack, ctx, &[note]).await;
    }
    ctx.failures().remove(&key(stack));
    ctx.state.metrics.phase(&key(stack), None);
    Ok(Action::await_change())
}

/// Applies `policy` to one object the Stack may own; true when there was something to do.
async fn settle<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    uid: &str,
    policy: DeletionPolicy,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let Some(object) = api.get_opt(name).await.map_err(|source| Error::Read {
        kind,
        name: name.to_owned(),
        source,
    })?
    else {
        return Ok(false);
    };
    // Only what this Stack owns: never a Secret the user made and named in passwordSecretRef.
    let Some(index) = object.owner_references().iter().position(|o| o.uid == uid) else {
        return Ok(false);
    };
    match policy {
        DeletionPolicy::Retain => {
            let path = format!("/metadata/ownerReferences/{index}");
            let patch = serde_json::from_value(json!([
                {"op": "test", "path": format!("{path}/uid"), "value": uid},
                {"op": "remove", "path": path},
            ]))
            .map_err(|e| Error::Release {
                kind,
                name: name.to_owned(),
                source: kube::Error::SerdeError(e),
            })?;
            api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
                .map_err(|source| Error::Release {
                    kind,
                    name: name.to_owned(),
                    source,
                })?;
            info!(kind, name, "retained");
        }
        DeletionPolicy::Delete => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: object.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => info!(kind, name, "deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        kind,
                        name: name.to_owned(),
                        source,
                    });
                }
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
