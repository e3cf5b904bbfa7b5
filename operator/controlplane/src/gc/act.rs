//! The garbage collector's steps. Each one re-reads the objects it is about to change, and each write is
//! conditional (a uid precondition on deletes, the resourceVersion on patches): the cache only nominates.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::gvk::GroupVersion;
use kube::discovery::{Discovery, Scope};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, warn};

use super::Watched;
use super::graph::{self, FOREGROUND, Item, ORPHAN, OwnerState, Propagation, Verdict, Work};
use crate::error::Error;
use crate::reported::Reported;

pub struct Actor<'a> {
    pub client: &'a Client,
    pub discovery: &'a Discovery,
    pub watched: &'a HashMap<String, Watched>,
    pub items: &'a HashMap<String, Item>,
    /// uid -> (watched resource key, cached object)
    pub places: &'a HashMap<String, (String, Arc<DynamicObject>)>,
    pub reported: &'a Reported,
}

fn describe(watched: &Watched, object: &DynamicObject) -> String {
    match object.namespace() {
        Some(ns) => format!("{}/{ns}/{}", watched.resource.plural, object.name_any()),
        None => format!("{}/{}", watched.resource.plural, object.name_any()),
    }
}

fn item_of(object: &DynamicObject) -> Item {
    Item {
        uid: object.uid().unwrap_or_default(),
        owners: object.owner_references().to_vec(),
        finalizers: object.finalizers().to_vec(),
        deleting: object.metadata.deletion_timestamp.is_some(),
    }
}

impl Actor<'_> {
    pub async fn perform(&self, work: &Work) {
        let (Work::Dependent(uid) | Work::Orphan(uid) | Work::Release(uid)) = work;
        let Some((key, object)) = self.places.get(uid) else {
            return;
        };
        let Some(watched) = self.watched.get(key) else {
            return;
        };
        let span = info_span!("gc", object = %describe(watched, object));
        let result = match work {
            Work::Dependent(_) => {
                self.dependent(watched, object)
                    .instrument(span.clone())
                    .await
            }
            Work::Orphan(_) => self.orphan(watched, object).instrument(span.clone()).await,
            Work::Release(_) => {
                self.remove_finalizer(watched, object, FOREGROUND)
                    .instrument(span.clone())
                    .await
            }
        };
        if let Err(err) = result {
            span.in_scope(
                || warn!(error = %err, "garbage collection step failed; retrying on the next pass"),
            );
        }
    }

    fn api(&self, watched: &Watched, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| watched.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &watched.resource),
            None => Api::all_with(self.client.clone(), &watched.resource),
        }
    }

    /// The object as the API has it now, if it is still the one the cache knew.
    async fn latest(
        &self,
        watched: &Watched,
        object: &DynamicObject,
    ) -> Result<Option<DynamicObject>, Error> {
        let api = self.api(watched, object.namespace().as_deref());
        Ok(api
            .get_opt(&object.name_any())
            .await?
            .filter(|latest| latest.uid() == object.uid()))
    }

    async fn dependent(&self, watched: &Watched, object: &DynamicObject) -> Result<(), Error> {
        let Some(latest) = self.latest(watched, object).await? else {
            return Ok(());
        };
        let item = item_of(&latest);
        let mut owners = Vec::new();
        for owner in &item.owners {
            let state = self
                .owner_state(watched.namespaced, latest.namespace().as_deref(), owner)
                .await?;
            owners.push((owner.clone(), state));
        }
        let has_dependents = graph::dependents_of(self.items, &item.uid).next().is_some();
        match graph::judge(&item, &owners, has_dependents) {
            Verdict::Keep => Ok(()),
            Verdict::RemoveOwners(uids) => self.remove_owners(watched, &latest, &uids).await,
            Verdict::Delete(_) if item.deleting => Ok(()),
            Verdict::Delete(propagation) => {
                let policy = match propagation {
                    Propagation::Background => PropagationPolicy::Background,
                    Propagation::Foreground => PropagationPolicy::Foreground,
                    Propagation::Orphan => PropagationPolicy::Orphan,
                };
                let params = DeleteParams {
                    propagation_policy: Some(policy),
                    preconditions: Some(Preconditions {
                        uid: Some(item.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let api = self.api(watched, latest.namespace().as_deref());
                match api.delete(&latest.name_any(), &params).await {
                    Ok(_) => {
                        info!(?propagation, "deleted: no owner remains");
                        Ok(())
                    }
                    Err(err) if matches!(crate::error::api_code(&err), Some(404 | 409)) => Ok(()),
                    Err(err) => Err(err.into()),
                }
            }
        }
    }

    /// Looks an owner reference up. Kinds discovery does not know are treated as present (upstream retries
    /// them rather than deleting), and said once.
    async fn owner_state(
        &self,
        dependent_namespaced: bool,
        namespace: Option<&str>,
        owner: &OwnerReference,
    ) -> Result<OwnerState, Error> {
        let resolved = owner
            .api_version
            .parse::<GroupVersion>()
            .ok()
            .and_then(|gv| self.discovery.resolve_gvk(&gv.with_kind(&owner.kind)));
        let Some((resource, caps)) = resolved else {
            let problem = format!(
                "owner {}/{} {} is of a kind the API server does not serve",
                owner.api_version, owner.kind, owner.name
            );
            if self.reported.first(&format!("{} {problem}", owner.uid)) {
                warn!(%problem, "keeping its dependents until it can be resolved");
            }
            return Ok(OwnerState::Solid);
        };
        let api: Api<DynamicObject> = match (caps.scope, namespace) {
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &resource),
            (Scope::Namespaced, Some(ns)) if dependent_namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            // A cluster-scoped dependent cannot have a namespaced owner: the reference cannot resolve.
            (Scope::Namespaced, _) => return Ok(OwnerState::Absent),
        };
        Ok(match api.get_opt(&owner.name).await? {
            Some(found) if found.uid().as_deref() == Some(owner.uid.as_str()) => {
                if item_of(&found).deleting_dependents() {
                    OwnerState::DeletingDependents
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Absent,
        })
    }

    /// propagationPolicy=Orphan: every dependent drops its reference to the owner, then the owner may go.
    async fn orphan(&self, watched: &Watched, owner: &DynamicObject) -> Result<(), Error> {
        let uid = owner.uid().unwrap_or_default();
        for dependent in graph::dependents_of(self.items, &uid) {
            let Some((key, object)) = self.places.get(&dependent.uid) else {
                continue;
            };
            let Some(place) = self.watched.get(key) else {
                continue;
            };
            if let Some(latest) = self.latest(place, object).await? {
                self.remove_owners(place, &latest, std::slice::from_ref(&uid))
                    .await?;
            }
        }
        self.remove_finalizer(watched, owner, ORPHAN).await
    }

    async fn remove_owners(
        &self,
        watched: &Watched,
        latest: &DynamicObject,
        uids: &[String],
    ) -> Result<(), Error> {
        let before = latest.owner_references();
        let kept: Vec<&OwnerReference> = before.iter().filter(|o| !uids.contains(&o.uid)).collect();
        if kept.len() == before.len() {
            return Ok(());
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": latest.resource_version(),
                "ownerReferences": if kept.is_empty() { json!(null) } else { json!(kept) },
            }
        });
        let api = self.api(watched, latest.namespace().as_deref());
        api.patch(
            &latest.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        info!(dependent = %describe(watched, latest), owners = ?uids, "removed owner references");
        Ok(())
    }

    async fn remove_finalizer(
        &self,
        watched: &Watched,
        object: &DynamicObject,
        finalizer: &str,
    ) -> Result<(), Error> {
        let Some(latest) = self.latest(watched, object).await? else {
            return Ok(());
        };
        let before = latest.finalizers();
        if !before.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let kept: Vec<&String> = before.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({
            "metadata": {
                "resourceVersion": latest.resource_version(),
                "finalizers": if kept.is_empty() { json!(null) } else { json!(kept) },
            }
        });
        let api = self.api(watched, latest.namespace().as_deref());
        api.patch(
            &latest.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        info!(%finalizer, "removed the finalizer: its dependents are taken care of");
        Ok(())
    }
}
