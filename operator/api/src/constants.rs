//! Names shared by every berth component: the Stack's API coordinates, the labels put on the objects
//! a Stack owns, the finalizer, the field manager and the condition types. Changing one of these is
//! an API change: objects already in a cluster carry them.

/// API group of the Stack resource.
pub const GROUP: &str = "berth.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of a Stack object.
pub const API_VERSION: &str = "berth.dev/v1alpha1";
/// Kind of the Stack resource.
pub const KIND: &str = "Stack";
/// Resource name in URLs (`/apis/berth.dev/v1alpha1/namespaces/{ns}/stacks`).
pub const PLURAL: &str = "stacks";
/// Singular resource name (`kubectl get stack demo`).
pub const SINGULAR: &str = "stack";
/// Short name (`kubectl get st`); no built-in kind uses it (`sts` is StatefulSet).
pub const SHORT_NAME: &str = "st";
/// Name of the CustomResourceDefinition object: `<plural>.<group>`.
pub const CRD_NAME: &str = "stacks.berth.dev";

/// Label on every object a Stack owns; the value is the Stack's name.
pub const LABEL_STACK: &str = "berth.dev/stack";
/// Label on every object a Stack owns; the value is one of the `COMPONENT_*` constants.
pub const LABEL_COMPONENT: &str = "berth.dev/component";

/// The web application (`spec.app`).
pub const COMPONENT_APP: &str = "app";
/// PostgreSQL (`spec.database`).
pub const COMPONENT_DATABASE: &str = "database";
/// Redis (`spec.redis`).
pub const COMPONENT_REDIS: &str = "redis";
/// The one-shot migration (`spec.app.migrate`).
pub const COMPONENT_MIGRATE: &str = "migrate";
/// A short-lived Pod that tries a new image (and the environment it needs) before the controller replaces a
/// running Pod with one that uses it; it never matches a Service's selector.
pub const COMPONENT_CHECK: &str = "check";
/// Label on a check Pod: the component (`COMPONENT_*`) whose replacement it checks.
pub const LABEL_CHECK_FOR: &str = "berth.dev/check-for";
/// Annotation on a Stack: `"true"` lets an edit through that deletes data (a removed `spec.database` or
/// `spec.redis`, Redis persistence turned off): the claim that held it is deleted. Remove it once done.
pub const ANNOTATION_ALLOW_DATA_LOSS: &str = "berth.dev/allow-data-loss";

/// Finalizer the controller puts on a Stack to apply `deletionPolicy` before the Stack goes.
pub const FINALIZER: &str = "berth.dev/cleanup";
/// Field manager of every server-side apply the controller sends.
pub const FIELD_MANAGER: &str = "berth-controller";

/// Condition type: the whole Stack serves (kstatus: present from the first reconcile).
pub const CONDITION_READY: &str = "Ready";
/// Condition type: True while the controller is rolling a change out (kstatus).
pub const CONDITION_RECONCILING: &str = "Reconciling";
/// Condition type: True on an error that retrying cannot fix (kstatus).
pub const CONDITION_STALLED: &str = "Stalled";
/// Condition type: the app's Pods are Ready.
pub const CONDITION_APP_READY: &str = "AppReady";
/// Condition type: PostgreSQL is Ready (absent when `spec.database` is not set).
pub const CONDITION_DATABASE_READY: &str = "DatabaseReady";
/// Condition type: Redis is Ready (absent when `spec.redis` is not set).
pub const CONDITION_REDIS_READY: &str = "RedisReady";
/// Condition type: the migration succeeded (absent when `spec.app.migrate` is not set).
pub const CONDITION_MIGRATED: &str = "Migrated";

/// Name of the app's entry in `status.endpoints` (the `Endpoint` printer column reads it).
pub const ENDPOINT_APP: &str = "app";
