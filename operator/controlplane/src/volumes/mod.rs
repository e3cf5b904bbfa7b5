//! The local volume provisioner (`berth.dev/local-path`): the default StorageClass, claims provisioned as
//! directories under `<data-dir>/volumes`, and volumes reclaimed when their claims go.

mod class;
mod directory;
mod provision;
mod reclaim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use crate::error::Error;
use crate::events::Recorder;
use crate::reported::Reported;

pub struct Ctx {
    client: Client,
    recorder: Recorder,
    /// `<data-dir>/volumes`
    root: PathBuf,
    reported: Reported,
}

pub async fn run(client: Client, recorder: Recorder, root: PathBuf) -> Result<(), Error> {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder,
        root,
        reported: Reported::default(),
    });
    let default_class = async {
        while let Err(err) = class::ensure_default(&client).await {
            warn!(error = %err, "creating the default StorageClass; retrying");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    };
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let pending = claims.store();
    let claims = claims
        // A Pod scheduled onto a node is the first consumer its WaitForFirstConsumer claims wait for.
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            |pod: Pod| {
                let namespace = pod.namespace().unwrap_or_default();
                let scheduled = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some();
                pod.spec
                    .into_iter()
                    .flat_map(|s| s.volumes.unwrap_or_default())
                    .filter_map(|v| v.persistent_volume_claim)
                    .filter(move |_| scheduled)
                    .map(move |c| ObjectRef::new(&c.claim_name).within(&namespace))
                    .collect::<Vec<_>>()
            },
        )
        // A class that appears may be the one a Pending claim names.
        .watches(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
            move |_: StorageClass| {
                pending
                    .state()
                    .into_iter()
                    .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound"))
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .run(provision::reconcile, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let volumes = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    // A claim that goes releases its volume.
    .watches(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
        |claim: PersistentVolumeClaim| {
            claim
                .spec
                .and_then(|s| s.volume_name)
                .filter(|v| !v.is_empty())
                .map(|v| ObjectRef::new(&v))
        },
    )
    .run(reclaim::reconcile, error_policy, ctx)
    .for_each(|_| futures::future::ready(()));
    futures::future::join3(default_class, claims, volumes).await;
    Err(Error::WatchEnded {
        resource: "persistentvolumeclaims and persistentvolumes".into(),
    })
}

fn error_policy<K: Resource<DynamicType = ()> + ResourceExt>(
    object: Arc<K>,
    err: &Error,
    _: Arc<Ctx>,
) -> Action {
    warn!(object = %object.name_any(), kind = %K::kind(&()), error = %err, "volume reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
