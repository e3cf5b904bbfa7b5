//! The app: its Pod template (the user's container with `DATABASE_URL` and `REDIS_URL` wired in), the hash that
//! names a template, and the one-shot migration Pod that runs the template's image before the app starts.

use berth_api::{MigrateSpec, Stack};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, Pod, PodSpec, SecretKeySelector, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::{Names, REDIS_PORT, URL_KEY, database};

/// The app container's name (and the migration container's).
pub const CONTAINER: &str = "app";

/// The environment berth adds in front of the user's: the user's own entries come later and so win.
fn wiring(stack: &Stack, names: &Names) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(db) = &stack.spec.database {
        env.push(EnvVar {
            name: "DATABASE_PASSWORD".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(database::password_source(names, db)),
                ..EnvVarSource::default()
            }),
        });
        // The URL lives in berth's Secret, percent-encoded there: the password never appears in the Pod spec.
        env.push(EnvVar {
            name: "DATABASE_URL".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: names.secret.clone(),
                    key: URL_KEY.to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    if stack.spec.redis.is_some() {
        env.push(EnvVar {
            name: "REDIS_URL".into(),
            value: Some(format!("redis://{}:{REDIS_PORT}/0", names.redis)),
            value_from: None,
        });
    }
    env
}

pub fn template(stack: &Stack, names: &Names) -> PodSpec {
    let app = &stack.spec.app;
    let mut env = wiring(stack, names);
    env.extend(app.env.iter().cloned());
    let volumes: Vec<Volume> = app.volumes.iter().map(Volume::from).collect();
    PodSpec {
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(app.image.clone()),
            command: non_empty(&app.command),
            args: non_empty(&app.args),
            working_dir: app.working_dir.clone(),
            env: (!env.is_empty()).then_some(env),
            env_from: non_empty(&app.env_from),
            ports: non_empty(&app.ports),
            resources: app.resources.clone(),
            readiness_probe: app.readiness_probe.clone(),
            liveness_probe: app.liveness_probe.clone(),
            startup_probe: app.startup_probe.clone(),
            volume_mounts: non_empty(&app.volume_mounts),
            ..Container::default()
        }],
        volumes: (!volumes.is_empty()).then_some(volumes),
        restart_policy: Some("Always".into()),
        ..PodSpec::default()
    }
}

/// `None` for an empty list, as Kubernetes omits empty lists.
fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

/// A short, stable name for a template: the first 10 hex digits of the SHA-256 of its JSON.
pub fn hash(template: &PodSpec) -> String {
    // Serializing a k8s-openapi struct cannot fail: it has no maps with non-string keys.
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// The migration Pod: the app's container (image, env, volumes) running the migration command once.
/// Probes and host ports stay with the app: a migration serves nothing.
pub fn migrate_pod(meta: ObjectMeta, template: &PodSpec, migrate: &MigrateSpec) -> Pod {
    let mut spec = template.clone();
    if let Some(container) = spec.containers.first_mut() {
        if let Some(image) = &migrate.image {
            container.image = Some(image.clone());
        }
        container.command = Some(migrate.command.clone());
        container.args = (!migrate.args.is_empty()).then(|| migrate.args.clone());
        container.readiness_probe = None;
        container.liveness_probe = None;
        container.startup_probe = None;
        container.ports = None;
    }
    spec.restart_policy = Some("Never".into());
    Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    }
}
