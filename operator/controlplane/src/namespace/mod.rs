//! Namespace lifecycle: a namespace being deleted (Terminating, its spec.finalizers holding `kubernetes`) has
//! its content deleted across every namespaced resource, honouring the content's own finalizers, reports what
//! is left in its conditions, and is finalized once nothing is left. A namespace the API server removed
//! without waiting (berth's API server does so today) has its leftover content deleted once it is gone.

mod content;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::error::{Error, api_code};

/// The spec finalizer this loop owns.
const FINALIZER: &str = "kubernetes";
/// How soon a namespace whose content is still going is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

struct Ctx {
    client: Client,
}

pub async fn run(client: Client) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let lifecycle = Controller::new(api.clone(), watcher::Config::default())
        .run(
            reconcile,
            error_policy,
            Arc::new(Ctx {
                client: client.clone(),
            }),
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "namespace reconcile");
            }
        });
    let removed = watcher(api, watcher::Config::default())
        .default_backoff()
        .for_each(|event| {
            let client = client.clone();
            async move {
                if let Ok(watcher::Event::Delete(namespace)) = event {
                    sweep(&client, &namespace.name_any()).await;
                }
            }
        });
    futures::future::join(lifecycle, removed).await;
    Err(Error::WatchEnded {
        resource: "namespaces".into(),
    })
}

/// Deletes what a removed namespace left behind. On a conformant API server nothing is left by then.
#[tracing::instrument(skip(client))]
async fn sweep(client: &Client, namespace: &str) {
    match content::delete_all(client, namespace, content::Sweep::Removed).await {
        Ok(left) if left.is_empty() => {}
        Ok(left) => {
            info!(remaining = %left.content_message(), "removed namespace: content with finalizers is left to them")
        }
        Err(err) => warn!(error = %err, "deleting the content of a removed namespace"),
    }
}

fn error_policy(namespace: Arc<Namespace>, err: &Error, _: Arc<Ctx>) -> Action {
    warn!(namespace = %namespace.name_any(), error = %err, "namespace cleanup failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[tracing::instrument(skip_all, fields(namespace = %namespace.name_any()))]
async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let finalizers = namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if namespace.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let remaining = content::delete_all(&ctx.client, &name, content::Sweep::Terminating).await?;
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    if remaining.is_empty() {
        let mut finalized = (*namespace).clone();
        let spec = finalized.spec.get_or_insert_with(Default::default);
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
            .await
        {
            Ok(_) => info!("content gone: namespace finalized"),
            Err(err) if matches!(api_code(&err), Some(404 | 409)) => {}
            Err(err) => return Err(err.into()),
        }
        return Ok(Action::await_change());
    }
    write_conditions(&api, &namespace, &remaining).await?;
    Ok(Action::requeue(RECHECK))
}

/// NamespaceContentRemaining and NamespaceFinalizersRemaining, written only when they change.
async fn write_conditions(
    api: &Api<Namespace>,
    namespace: &Namespace,
    remaining: &content::Remaining,
) -> Result<(), Error> {
    let now = Time(Timestamp::now());
    let wanted = [
        (
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            remaining.content_message(),
        ),
        if remaining.finalizers.is_empty() {
            (
                "NamespaceFinalizersRemaining",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".to_owned(),
            )
        } else {
            (
                "NamespaceFinalizersRemaining",
                "SomeFinalizersRemain",
                remaining.finalizers_message(),
            )
        },
    ];
    let mut conditions = namespace
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for (type_, reason, message) in wanted {
        let status = if reason == "ContentHasNoFinalizers" {
            "False"
        } else {
            "True"
        };
        let condition = NamespaceCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message),
            last_transition_time: Some(now.clone()),
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c)
                if c.status == condition.status
                    && c.reason == condition.reason
                    && c.message == condition.message => {}
            Some(c) => {
                changed = true;
                *c = condition;
            }
            None => {
                changed = true;
                conditions.push(condition);
            }
        }
    }
    if !changed {
        return Ok(());
    }
    let patch = json!({"status": {"conditions": conditions}});
    match api
        .patch_status(
            &namespace.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if api_code(&err) == Some(404) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
