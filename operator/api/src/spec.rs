//! `Stack.spec`: what the user asks for. Defaults are part of the schema (the API server fills them
//! in), and the same defaults apply when Rust code deserializes an object that lacks them, so the
//! controller never writes `spec`.

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvFromSource, EnvVar, Probe, ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::StackStatus;
use crate::volume::StackVolume;

/// Desired state of a Stack: a web app, optionally with PostgreSQL and Redis, wired together.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats `type_ = \"string\"`, which is not a duplicate"
)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "Stack",
    plural = "stacks",
    singular = "stack",
    shortname = "st",
    category = "all",
    category = "berth",
    namespaced,
    status = "StackStatus",
    derive = "PartialEq",
    doc = "A Stack runs a web app with optional PostgreSQL and Redis, wired together.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = r#".status.endpoints[?(@.name=="app")].url"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::trim_descriptions)]
pub struct StackSpec {
    /// The web application.
    pub app: AppSpec,
    /// PostgreSQL for the app (it gets `DATABASE_URL`). Removal with data needs annotation berth.dev/allow-data-loss=true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
    /// Redis for the app (it gets `REDIS_URL`). Removal with data needs annotation berth.dev/allow-data-loss=true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// What happens to data volumes and the generated database Secret when the Stack is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The app container and how it runs. The fields mean what they mean in a core/v1 Container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Container image reference.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Entrypoint; the image's ENTRYPOINT when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments to the entrypoint; the image's CMD when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory; the image's WORKDIR when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment variables. `DATABASE_URL` and `REDIS_URL` are added by berth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Environment variables taken from Secrets and ConfigMaps (compose's `env_file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Ports the app listens on; `hostPort` publishes one on the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Number of app Pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the app container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Gates traffic and the rollout: a new Pod replaces an old one once it is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Restarts the container when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Holds the other probes back until the app has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Volumes the app's containers (and the migration) may mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
    ))]
    pub volumes: Vec<StackVolume>,
    /// Where the volumes appear in the app container (and in the migration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// A command that must succeed, once per change of the app, before the app starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate: Option<MigrateSpec>,
}

fn default_replicas() -> i32 {
    1
}

/// A one-shot command run to completion before the app starts (compose's
/// `service_completed_successfully`). It runs with the app's env, envFrom, workingDir, volumes and
/// volumeMounts, after the database and Redis are ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrateSpec {
    /// Container image; the app's image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The command, e.g. `["flask", "db", "upgrade"]`.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Arguments to the command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// A PostgreSQL server with its data on a PersistentVolumeClaim, reachable as Service `<stack>-db`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// PostgreSQL image reference (the official image's environment variables are used).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Name of the database created for the app; fixed once the data directory is initialised.
    #[serde(default = "default_database_identifier")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub database_name: String,
    /// Role the app connects as; fixed once the data directory is initialised.
    #[serde(default = "default_database_identifier")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub user: String,
    /// Secret key holding the password, generated when unset; not `<stack>-db-credentials`, which berth makes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// The PersistentVolumeClaim holding the data directory.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory requests and limits of the database container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_database_identifier() -> String {
    "app".into()
}

/// A key of a Secret in the Stack's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".into()
}

/// Size and class of a PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, a quantity such as `1Gi`; it can grow, never shrink.
    #[serde(default = "default_storage_size")]
    // kube marks optional int-or-string fields nullable; a null size would not deserialize.
    #[schemars(extend("nullable" = false))]
    pub size: Quantity,
    /// StorageClass of the claim; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

/// A Redis server, reachable as Service `<stack>-redis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Redis image reference.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Whether Redis keeps its data on a PersistentVolumeClaim (append-only file) or in memory only.
    #[serde(default)]
    pub persistence: RedisPersistence,
    /// CPU and memory requests and limits of the Redis container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Redis persistence; off by default, as Redis is most often a cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisPersistence {
    /// Keep the data on a PersistentVolumeClaim; turning it off needs annotation berth.dev/allow-data-loss=true.
    #[serde(default)]
    pub enabled: bool,
    /// Requested size of the claim, a quantity such as `1Gi`; it can grow, never shrink.
    #[serde(default = "default_storage_size")]
    // kube marks optional int-or-string fields nullable; a null size would not deserialize.
    #[schemars(extend("nullable" = false))]
    pub size: Quantity,
    /// StorageClass of the claim; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for RedisPersistence {
    fn default() -> Self {
        RedisPersistence {
            enabled: false,
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// What deleting a Stack does to its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the data volumes and the generated Secret: a new Stack with the same name finds them.
    #[default]
    Retain,
    /// Delete the data volumes and the generated Secret with the Stack.
    Delete,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::ENDPOINT_APP;
    use crate::{ComponentPhase, ComponentStatus, ComponentStatuses, Endpoint, StackPhase};
    use serde_json::{Value, json};

    const SAMPLE: &str = include_str!("../../../config/samples/stack.yaml");

    fn schema() -> Value {
        let crd = serde_json::to_value(crate::crd()).unwrap();
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
            .unwrap()
            .clone()
    }

    /// What the API server does on create: fill absent fields from the schema's defaults.
    fn apply_schema_defaults(schema: &Value, value: &mut Value) {
        match value {
            Value::Object(object) => {
                let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                    return;
                };
                for (name, property) in properties {
                    if let (false, Some(default)) =
                        (object.contains_key(name), property.get("default"))
                    {
                        object.insert(name.clone(), default.clone());
                    }
                    if let Some(field) = object.get_mut(name) {
                        apply_schema_defaults(property, field);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for item in items {
                        apply_schema_defaults(item_schema, item);
                    }
                }
            }
            _ => {}
        }
    }

    #[test]
    fn sample_parses_into_a_stack_and_loses_no_field() {
        let stack: Stack = serde_yaml::from_str(SAMPLE).unwrap();

        assert_eq!(stack.metadata.name.as_deref(), Some("demo"));
        assert_eq!(stack.spec.app.image, "127.0.0.1:5000/berth/demo-app:latest");
        let port = &stack.spec.app.ports[0];
        assert_eq!((port.container_port, port.host_port), (5500, Some(5500)));
        let database = stack.spec.database.as_ref().unwrap();
        assert_eq!(database.image, "127.0.0.1:5000/berth/postgres:15");
        let redis = stack.spec.redis.as_ref().unwrap();
        assert_eq!(redis.image, "127.0.0.1:5000/berth/redis:7");

        // A field the types do not know would be dropped here and make the two differ.
        let mut defaulted: Value = serde_yaml::from_str(SAMPLE).unwrap();
        apply_schema_defaults(&schema(), &mut defaulted);
        assert_eq!(serde_json::to_value(&stack).unwrap(), defaulted);
    }

    #[test]
    fn sample_survives_a_yaml_round_trip() {
        let stack: Stack = serde_yaml::from_str(SAMPLE).unwrap();

        let again: Stack = serde_yaml::from_str(&serde_yaml::to_string(&stack).unwrap()).unwrap();

        assert_eq!(again, stack);
    }

    #[test]
    fn rust_defaults_are_the_schema_defaults() {
        let minimal = json!({
            "apiVersion": "berth.dev/v1alpha1",
            "kind": "Stack",
            "metadata": {"name": "shop"},
            "spec": {
                "app": {"image": "shop:1", "volumes": [{"name": "tmp", "emptyDir": {}}]},
                "database": {"image": "postgres:15", "passwordSecretRef": {"name": "pw"}},
                "redis": {"image": "redis:7"},
            },
        });
        let mut defaulted_by_server = minimal.clone();
        apply_schema_defaults(&schema(), &mut defaulted_by_server);

        let stack: Stack = serde_json::from_value(minimal).unwrap();

        assert_eq!(serde_json::to_value(&stack).unwrap(), defaulted_by_server);
    }

    #[test]
    fn absent_fields_take_the_documented_defaults() {
        let spec: StackSpec = serde_json::from_value(json!({
            "app": {"image": "shop:1"},
            "database": {"image": "postgres:15"},
            "redis": {"image": "redis:7"},
        }))
        .unwrap();

        assert_eq!(spec.app.replicas, 1);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        let database = spec.database.unwrap();
        assert_eq!(
            (database.database_name.as_str(), database.user.as_str()),
            ("app", "app")
        );
        assert_eq!(database.storage.size, Quantity("1Gi".into()));
        assert!(database.password_secret_ref.is_none());
        let persistence = spec.redis.unwrap().persistence;
        assert!(!persistence.enabled);
        assert_eq!(persistence.size, Quantity("1Gi".into()));
    }

    #[test]
    fn serialized_stack_omits_unset_fields() {
        let stack = Stack::new(
            "shop",
            StackSpec {
                app: AppSpec {
                    image: "shop:1".into(),
                    command: vec![],
                    args: vec![],
                    working_dir: None,
                    env: vec![],
                    env_from: vec![],
                    ports: vec![],
                    replicas: 2,
                    resources: None,
                    readiness_probe: None,
                    liveness_probe: None,
                    startup_probe: None,
                    volumes: vec![],
                    volume_mounts: vec![],
                    migrate: None,
                },
                database: None,
                redis: None,
                deletion_policy: DeletionPolicy::Delete,
            },
        );

        assert_eq!(
            serde_json::to_value(&stack).unwrap(),
            json!({
                "apiVersion": "berth.dev/v1alpha1",
                "kind": "Stack",
                "metadata": {"name": "shop"},
                "spec": {"app": {"image": "shop:1", "replicas": 2}, "deletionPolicy": "Delete"},
            })
        );
    }

    #[test]
    fn status_serializes_in_camel_case_without_empty_fields() {
        let status = crate::StackStatus {
            observed_generation: Some(3),
            phase: Some(StackPhase::Progressing),
            conditions: vec![],
            components: Some(ComponentStatuses {
                app: Some(ComponentStatus {
                    phase: ComponentPhase::Pending,
                    ready: 0,
                    desired: 1,
                    message: None,
                }),
                ..Default::default()
            }),
            endpoints: vec![Endpoint {
                name: ENDPOINT_APP.into(),
                url: "http://127.0.0.1:5500".into(),
            }],
        };

        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({
                "observedGeneration": 3,
                "phase": "Progressing",
                "components": {"app": {"phase": "Pending", "ready": 0, "desired": 1}},
                "endpoints": [{"name": "app", "url": "http://127.0.0.1:5500"}],
            })
        );
    }
}
