//! What a Stack should consist of: a pure function from the Stack (and the database password already chosen)
//! to the objects the controller owns. No I/O here; the reconciler compares this with what exists.

mod app;
mod database;
mod names;
mod redis;
mod services;

use std::collections::BTreeMap;

use berth_api::Stack;
use berth_api::constants::{
    API_VERSION, COMPONENT_APP, COMPONENT_DATABASE, COMPONENT_MIGRATE, COMPONENT_REDIS, KIND,
    LABEL_COMPONENT, LABEL_STACK,
};
use k8s_openapi::api::core::v1::{ExecAction, PersistentVolumeClaim, Pod, Probe, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub use names::Names;

/// The label that tells app Pods of one template from another during a rollout.
pub const LABEL_TEMPLATE_HASH: &str = "berth.dev/template-hash";
/// Marks every object berth manages, as the recommended Kubernetes labels do.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The key of the database password in the generated Secret.
pub const PASSWORD_KEY: &str = "password";
/// The key of `DATABASE_URL` in the Secret berth makes for the database.
pub const URL_KEY: &str = "url";

pub const POSTGRES_PORT: i32 = 5432;
pub const REDIS_PORT: i32 = 6379;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("the Stack has no name or namespace")]
    Unnamed,
    #[error(
        "stack name {name:?} is too long: names of the Services it makes (`{name}-redis`) must fit in 63 characters; use a name of at most {max} characters"
    )]
    NameTooLong { name: String, max: usize },
}

/// Everything a Stack consists of, as it should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The generated Secret holding the database password (absent when the spec names its own Secret).
    pub secret: Option<Secret>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub services: Vec<Service>,
    pub database: Option<Pod>,
    pub redis: Option<Pod>,
    /// The one-shot migration Pod for the current app template, when the spec asks for one.
    pub migrate: Option<Pod>,
    /// App Pods of the current template, `replicas` of them, named by index.
    pub app: Vec<Pod>,
    /// The current app template's hash (the value of [`LABEL_TEMPLATE_HASH`] on `app` Pods).
    pub app_hash: String,
}

/// Maps a Stack to what it should consist of. `password` is the database password: the generated one (the
/// reconciler keeps the one already stored, so it is stable) or the one in the Secret the spec names; empty
/// when that Secret cannot be read.
pub fn desired(stack: &Stack, password: &str) -> Result<Desired, MappingError> {
    let names = Names::of(stack)?;
    let owner = owner_reference(stack)?;
    let spec = &stack.spec;
    let meta = |name: &str, component: &str| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: stack.metadata.namespace.clone(),
        labels: Some(labels(&names.stack, component)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let mut desired = Desired {
        secret: None,
        claims: Vec::new(),
        services: Vec::new(),
        database: None,
        redis: None,
        migrate: None,
        app: Vec::new(),
        app_hash: String::new(),
    };
    if let Some(database) = &spec.database {
        // Without the password (a Secret the spec names is missing) there is no URL to write yet.
        let generated = database.password_secret_ref.is_none();
        if generated || !password.is_empty() {
            desired.secret = Some(database::secret(
                meta(&names.secret, COMPONENT_DATABASE),
                password,
                generated,
                database::url(&names, database, password),
            ));
        }
        desired.claims.push(database::claim(
            meta(&names.database_claim, COMPONENT_DATABASE),
            database,
        ));
        desired.database = Some(database::pod(
            meta(&names.database, COMPONENT_DATABASE),
            &names,
            database,
        ));
        desired.services.push(services::headless(
            meta(&names.database, COMPONENT_DATABASE),
            &names.stack,
            COMPONENT_DATABASE,
            &[("postgres", POSTGRES_PORT)],
        ));
    }
    if let Some(redis) = &spec.redis {
        if redis.persistence.enabled {
            desired.claims.push(redis::claim(
                meta(&names.redis_claim, COMPONENT_REDIS),
                redis,
            ));
        }
        desired.redis = Some(redis::pod(
            meta(&names.redis, COMPONENT_REDIS),
            &names,
            redis,
        ));
        desired.services.push(services::headless(
            meta(&names.redis, COMPONENT_REDIS),
            &names.stack,
            COMPONENT_REDIS,
            &[("redis", REDIS_PORT)],
        ));
    }
    let template = app::template(stack, &names);
    desired.app_hash = app::hash(&template);
    let app_ports: Vec<(String, i32)> = spec
        .app
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p.name.clone().unwrap_or_else(|| format!("port-{i}")),
                p.container_port,
            )
        })
        .collect();
    let port_refs: Vec<(&str, i32)> = app_ports.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    desired.services.push(services::headless(
        meta(&names.app, COMPONENT_APP),
        &names.stack,
        COMPONENT_APP,
        &port_refs,
    ));
    if let Some(migrate) = &spec.app.migrate {
        // Named by its own spec (the app's template with the migration's command): a change of the app or of
        // the migration alone runs it again, and a failed migration fixed in the Stack gets a new Pod.
        let mut pod = app::migrate_pod(ObjectMeta::default(), &template, migrate);
        let hash = pod.spec.as_ref().map(app::hash).unwrap_or_default();
        pod.metadata = meta(&names.migrate(&hash), COMPONENT_MIGRATE);
        desired.migrate = Some(pod);
    }
    desired.app = (0..spec.app.replicas.max(0))
        .map(|i| {
            let mut m = meta(&names.app_pod(&desired.app_hash, i), COMPONENT_APP);
            m.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(LABEL_TEMPLATE_HASH.to_owned(), desired.app_hash.clone());
            Pod {
                metadata: m,
                spec: Some(template.clone()),
                status: None,
            }
        })
        .collect();
    Ok(desired)
}

/// The labels every object of a Stack carries.
pub fn labels(stack: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_STACK.to_owned(), stack.to_owned()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), "berth".to_owned()),
    ])
}

/// The readiness check run every second as a startup probe, and the readiness probe itself, which runs only
/// once the startup probe passed: a new database or Redis is seen ready within about a second of accepting
/// connections (the kubelet probes readiness right after startup), where a readiness probe alone would find
/// it up to a period later, and the probe every second stops once it started. The startup probe allows an
/// hour: a restart would only start PostgreSQL's crash recovery over again.
fn startup_and_readiness(check: ExecAction) -> (Probe, Probe) {
    let startup = Probe {
        exec: Some(check.clone()),
        period_seconds: Some(1),
        failure_threshold: Some(3600),
        ..Probe::default()
    };
    let ready = Probe {
        exec: Some(check),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    (startup, ready)
}

fn owner_reference(stack: &Stack) -> Result<OwnerReference, MappingError> {
    Ok(OwnerReference {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        name: stack.metadata.name.clone().ok_or(MappingError::Unnamed)?,
        uid: stack.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

#[cfg(test)]
mod tests;
