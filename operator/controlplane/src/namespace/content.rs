//! Deleting what a namespace holds, across every namespaced resource discovery lists (CRDs included), and
//! counting what is left: objects still there, and the finalizers holding them (upstream's namespaced
//! resources deleter).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, ListParams, PropagationPolicy};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, warn};

use crate::error::{Error, api_code};

/// What is left in a namespace after a round of deletes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    /// "<resource>.<group>" -> objects left
    pub resources: BTreeMap<String, usize>,
    /// finalizer -> objects it holds
    pub finalizers: BTreeMap<String, usize>,
}

impl Remaining {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Upstream's NamespaceContentRemaining message.
    pub fn content_message(&self) -> String {
        let parts: Vec<String> = self
            .resources
            .iter()
            .map(|(resource, count)| format!("{resource} has {count} resource instances"))
            .collect();
        format!("Some resources are remaining: {}", parts.join(", "))
    }

    /// Upstream's NamespaceFinalizersRemaining message.
    pub fn finalizers_message(&self) -> String {
        let parts: Vec<String> = self
            .finalizers
            .iter()
            .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
            .collect();
        format!(
            "Some content in the namespace has finalizers remaining: {}",
            parts.join(", ")
        )
    }
}

/// Why a namespace's content is being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// A Terminating namespace.
    Terminating,
    /// A namespace the API server removed before its content was deleted: every delete first checks that
    /// no namespace of that name exists again, so content of a namespace created anew is never touched.
    Removed,
}

/// Deletes every object in `namespace` that is not already being deleted (background propagation, as
/// upstream), then counts what is left.
pub async fn delete_all(
    client: &Client,
    namespace: &str,
    sweep: Sweep,
) -> Result<Remaining, Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::Discovery)?;
    let mut remaining = Remaining::default();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let label = format!("{}.{}", resource.plural, resource.group);
            let objects = api.list(&ListParams::default()).await?;
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            for object in &objects.items {
                if object.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if sweep == Sweep::Removed && exists(client, namespace).await? {
                    return Ok(Remaining::default());
                }
                match api.delete(&object.name_any(), &params).await {
                    Ok(_) => debug!(resource = %label, name = %object.name_any(), "deleted"),
                    Err(err) if matches!(api_code(&err), Some(404 | 409)) => {}
                    Err(err) => {
                        warn!(resource = %label, name = %object.name_any(), error = %err, "deleting namespace content")
                    }
                }
            }
            if objects.items.is_empty() {
                continue;
            }
            let left = api.list(&ListParams::default()).await?;
            if !left.items.is_empty() {
                remaining.resources.insert(label, left.items.len());
            }
            for object in &left.items {
                for finalizer in object.finalizers() {
                    *remaining.finalizers.entry(finalizer.clone()).or_default() += 1;
                }
            }
        }
    }
    Ok(remaining)
}

async fn exists(client: &Client, namespace: &str) -> Result<bool, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    Ok(api.get_opt(namespace).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_is_left_as_upstream_does() {
        let remaining = Remaining {
            resources: [
                ("configmaps.".to_owned(), 2),
                ("stacks.berth.dev".to_owned(), 1),
            ]
            .into(),
            finalizers: [("example.com/hold".to_owned(), 1)].into(),
        };
        assert_eq!(
            remaining.content_message(),
            "Some resources are remaining: configmaps. has 2 resource instances, stacks.berth.dev has 1 resource instances"
        );
        assert_eq!(
            remaining.finalizers_message(),
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert!(!remaining.is_empty());
        assert!(Remaining::default().is_empty());
    }
}
