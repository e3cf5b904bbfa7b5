//! The garbage collector: ownerReferences with background and foreground cascading deletion and orphaning
//! (propagationPolicy, as the `foregroundDeletion` and `orphan` finalizers the API server sets),
//! blockOwnerDeletion, and dependents of owners that are gone or never existed. It caches every resource that
//! discovery lists, plans from the cache, and checks each step against the API before writing, as upstream's
//! collector does. Discovery is refreshed when a CustomResourceDefinition changes (so that a new kind's
//! objects, a deleted Stack's say, are collected at once) and every 30 s besides.

mod act;
mod graph;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::DynamicObject;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{Instrument, info, info_span, warn};

use crate::error::Error;
use crate::reported::Reported;
use crate::watch;

/// How often discovery is refreshed (upstream's collector resyncs its monitors every 30 s).
const RESYNC: Duration = Duration::from_secs(30);

/// One watched resource: its type, scope and cache.
pub struct Watched {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub store: Store<DynamicObject>,
    task: AbortHandle,
}

/// A change worth a pass: something was deleted, or an object with owners or a deletionTimestamp changed.
fn worth_a_look(event: &watcher::Event<DynamicObject>) -> bool {
    match event {
        watcher::Event::Delete(_) | watcher::Event::InitDone => true,
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            o.metadata.deletion_timestamp.is_some()
                || o.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|r| !r.is_empty())
        }
        watcher::Event::Init => false,
    }
}

struct Collector {
    client: Client,
    discovery: Arc<Discovery>,
    watched: HashMap<String, Watched>,
    tasks: JoinSet<()>,
    changes: mpsc::UnboundedSender<()>,
    reported: Reported,
}

pub async fn run(client: Client) -> Result<(), Error> {
    let (changes, mut changed) = mpsc::unbounded_channel();
    let mut collector = Collector {
        discovery: Arc::new(Discovery::new(client.clone())),
        client,
        watched: HashMap::new(),
        tasks: JoinSet::new(),
        changes,
        reported: Reported::default(),
    };
    let mut resync = tokio::time::interval(RESYNC);
    let mut definitions = definition_changes(&collector.client);
    loop {
        tokio::select! {
            _ = resync.tick() => collector.discover().await,
            changed_definition = definitions.next() => match changed_definition {
                Some(true) => {
                    // A burst of CRD changes (an install of several) costs one refresh.
                    while let Some(Some(_)) = definitions.next().now_or_never() {}
                    collector.discover().await;
                }
                Some(false) => {}
                None => {
                    return Err(Error::WatchEnded { resource: "customresourcedefinitions".into() });
                }
            },
            change = changed.recv() => if change.is_none() {
                return Err(Error::WatchEnded { resource: "every resource".into() });
            },
        }
        while let Some(Some(())) = changed.recv().now_or_never() {}
        if collector.ready() {
            collector.pass().await;
        }
    }
}

/// Yields true for each CustomResourceDefinition created, changed (Established, new versions) or deleted after
/// the watch has listed them (discovery at start covers those), false for anything else.
fn definition_changes(client: &Client) -> futures::stream::BoxStream<'static, bool> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(|event| {
            matches!(
                event,
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))
            )
        })
        .boxed()
}

impl Collector {
    /// Refreshes discovery; starts caches for new resources and drops those of resources no longer served.
    async fn discover(&mut self) {
        let discovery = match Discovery::new(self.client.clone()).run().await {
            Ok(discovery) => discovery,
            Err(err) => {
                warn!(error = %Error::Discovery(err), "keeping the resources discovered before");
                return;
            }
        };
        let mut wanted: HashMap<String, (ApiResource, ApiCapabilities)> = HashMap::new();
        for group in discovery.groups() {
            for (resource, caps) in group.recommended_resources() {
                if [verbs::LIST, verbs::WATCH, verbs::DELETE, verbs::PATCH]
                    .iter()
                    .all(|v| caps.supports_operation(v))
                {
                    wanted.insert(
                        format!("{}/{}", resource.api_version, resource.plural),
                        (resource, caps),
                    );
                }
            }
        }
        self.watched.retain(|key, watched| {
            let keep = wanted.contains_key(key);
            if !keep {
                info!(resource = %key, "no longer served: no longer watched");
                watched.task.abort();
            }
            keep
        });
        for (key, (resource, caps)) in wanted {
            if self.watched.contains_key(&key) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let (store, stream) = watch::reflect(api, resource.clone(), worth_a_look);
            let changes = self.changes.clone();
            let task = self.tasks.spawn(
                stream
                    .for_each(move |touch| {
                        if touch {
                            let _ = changes.send(());
                        }
                        futures::future::ready(())
                    })
                    .instrument(info_span!("gc_watch", resource = %key)),
            );
            self.watched.insert(
                key,
                Watched {
                    resource,
                    namespaced: caps.scope == Scope::Namespaced,
                    store,
                    task,
                },
            );
        }
        self.discovery = Arc::new(discovery);
    }

    fn ready(&self) -> bool {
        !self.watched.is_empty()
            && self
                .watched
                .values()
                .all(|w| matches!(w.store.wait_until_ready().now_or_never(), Some(Ok(()))))
    }

    async fn pass(&self) {
        let mut items = HashMap::new();
        let mut places = HashMap::new();
        for (key, watched) in &self.watched {
            for object in watched.store.state() {
                let Some(uid) = object.metadata.uid.clone() else {
                    continue;
                };
                items.insert(
                    uid.clone(),
                    graph::Item {
                        uid: uid.clone(),
                        owners: object.metadata.owner_references.clone().unwrap_or_default(),
                        finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
                        deleting: object.metadata.deletion_timestamp.is_some(),
                    },
                );
                places.insert(uid, (key.clone(), object));
            }
        }
        let actor = act::Actor {
            client: &self.client,
            discovery: &self.discovery,
            watched: &self.watched,
            items: &items,
            places: &places,
            reported: &self.reported,
        };
        for work in graph::plan(&items) {
            actor.perform(&work).await;
        }
    }
}
