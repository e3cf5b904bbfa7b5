//! Kubernetes Events for what the loops decide (FailedScheduling, ProvisioningFailed, NodeNotReady, ...).
//! Written as core/v1 Events, the ones `kubectl describe` and `kubectl get events` show, because kube-runtime's
//! `Recorder` only writes events.k8s.io/v1 Events. A repeat of the same event bumps its count, as upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tracing::warn;

/// The reporting component, as kube-scheduler and kube-controller-manager name themselves.
pub const SCHEDULER: &str = "default-scheduler";
pub const CONTROLLER_MANAGER: &str = "berth-controlplane";

/// Bounds the memory of recent events; past it, the next repeat starts a new Event.
const CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Warning,
}

/// An event's identity: (object uid or name, kind, reason, message).
type Key = (String, Kind, String, String);
/// Where the last such event is, and its count: (namespace, event name, count).
type Seen = (String, String, i32);

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    instance: String,
    recent: Arc<Mutex<HashMap<Key, Seen>>>,
}

impl Recorder {
    pub fn new(client: Client, instance: String) -> Recorder {
        Recorder {
            client,
            instance,
            recent: Arc::default(),
        }
    }

    /// Publishes an event about `regarding`; failures are logged, never returned (events are best effort).
    pub async fn publish(
        &self,
        component: &str,
        regarding: &ObjectReference,
        kind: Kind,
        reason: &str,
        message: &str,
    ) {
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let subject = regarding
            .uid
            .clone()
            .or_else(|| regarding.name.clone())
            .unwrap_or_default();
        let key = (subject, kind, reason.to_owned(), message.to_owned());
        let now = Time(Timestamp::now());
        let repeat = self.lock().get(&key).cloned();
        if let Some((ns, name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.lock().insert(key, (ns, name, count + 1));
                    return;
                }
                // Gone (expired or deleted): start a new one below.
                Err(err) if crate::error::api_code(&err) == Some(404) => {}
                Err(err) => {
                    warn!(reason, error = %err, "updating an event");
                    return;
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(component),
            now.0.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(format!("{kind:?}")),
            source: Some(EventSource {
                component: Some(component.to_owned()),
                host: None,
            }),
            reporting_component: Some(component.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Event::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut recent = self.lock();
                if recent.len() >= CAPACITY {
                    recent.clear();
                }
                recent.insert(key, (namespace, name, 1));
            }
            Err(err) => warn!(reason, error = %err, "recording an event"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Seen>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}
