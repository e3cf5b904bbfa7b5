//! `Stack.status`: what the controller observed. Written only by the controller, with server-side
//! apply on the status subresource; conditions follow kstatus (`Ready`, `Reconciling`, `Stalled`)
//! so `kubectl wait`, Flux and Argo CD understand a Stack without berth-specific code.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a Stack.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::trim_descriptions)]
pub struct StackStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary for humans and the printer column; automation should read conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<StackPhase>,
    /// `Ready`, `Reconciling` and `Stalled` (kstatus), and one condition per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["type"],
    ))]
    pub conditions: Vec<Condition>,
    /// Per-component progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<ComponentStatuses>,
    /// Where the Stack can be reached from the node, e.g. `{name: app, url: http://127.0.0.1:5500}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
    ))]
    pub endpoints: Vec<Endpoint>,
}

/// The Stack's lifecycle in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StackPhase {
    /// Accepted; nothing runs yet (e.g. waiting for an image or a node).
    Pending,
    /// Rolling out: components are starting or being replaced.
    Progressing,
    /// Every component is ready and the app serves.
    Ready,
    /// Was ready, and a component is no longer; the controller is recovering it.
    Degraded,
    /// Stuck on an error that retrying cannot fix (see the `Stalled` condition).
    Failed,
    /// Being deleted; the finalizer is applying `deletionPolicy`.
    Deleting,
}

/// Progress of each component; a component the Stack does not have is absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatuses {
    /// The app's Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<ComponentStatus>,
    /// The PostgreSQL Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<ComponentStatus>,
    /// The Redis Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<ComponentStatus>,
    /// The migration Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate: Option<ComponentStatus>,
}

/// Progress of one component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Where the component is in its lifecycle.
    pub phase: ComponentPhase,
    /// Pods that are Ready (for `migrate`: 1 once it succeeded).
    #[serde(default)]
    pub ready: i32,
    /// Pods wanted.
    #[serde(default)]
    pub desired: i32,
    /// Why the component is not ready, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A component's lifecycle in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ComponentPhase {
    /// Waiting for something it depends on (an image, the database, the migration).
    Pending,
    /// Starting, running (migrate) or being replaced.
    Progressing,
    /// Serving (not used by migrate).
    Ready,
    /// Ran to completion (migrate only).
    Succeeded,
    /// Failed in a way the controller reports in `message`.
    Failed,
}

/// A URL where part of the Stack can be reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// What the endpoint serves, e.g. `app`.
    pub name: String,
    /// The URL.
    pub url: String,
}
