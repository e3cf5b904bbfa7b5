//! The reconciler's brain, with no I/O: given a Stack, what it should consist of, and the Pods that exist, decide
//! the writes (apply or delete), the status to report and the events to record. Order lives here: database and
//! Redis first, then the migration, then the app, rolled so that a working app is not torn down by a bad edit.

use std::collections::BTreeMap;

use berth_api::constants::{
    CONDITION_APP_READY, CONDITION_DATABASE_READY, CONDITION_MIGRATED, CONDITION_READY,
    CONDITION_RECONCILING, CONDITION_REDIS_READY, CONDITION_STALLED, ENDPOINT_APP, LABEL_COMPONENT,
};
use berth_api::{
    ComponentPhase, ComponentStatus, ComponentStatuses, Endpoint, Stack, StackPhase, StackStatus,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::mapping::{Desired, LABEL_TEMPLATE_HASH};

/// Records on each owned Pod the hash of the spec it was made from: Pod specs cannot be updated in place, so a
/// different hash means the Pod is replaced.
pub const ANNOTATION_SPEC_HASH: &str = "berth.dev/spec-hash";

/// An object the controller writes (server-side apply, one field manager).
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Secret(Box<Secret>),
    Claim(Box<PersistentVolumeClaim>),
    Service(Box<Service>),
    Pod(Box<Pod>),
}

impl Object {
    pub fn name(&self) -> &str {
        let meta = match self {
            Object::Secret(o) => &o.metadata,
            Object::Claim(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Object::Secret(_) => "Secret",
            Object::Claim(_) => "PersistentVolumeClaim",
            Object::Service(_) => "Service",
            Object::Pod(_) => "Pod",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Apply(Object),
    /// Deletes a Pod (the only kind the controller replaces).
    DeletePod(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    /// The Pod the note is about: events name it as `related`, which also keeps notes with the same reason
    /// about different Pods from being counted as one.
    pub pod: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: StackStatus,
    pub notes: Vec<Note>,
}

/// What exists now.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The Stack's Pods (those labelled with its name), any component.
    pub pods: Vec<Pod>,
    /// Problems found while observing that no retry can fix (a Secret the spec names does not exist…).
    pub blocking: Option<(String, String)>,
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// A problem a Pod reports that retrying will not fix, as (reason, message).
fn pod_blocker(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in all {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let message = waiting.message.clone().unwrap_or_default();
        match reason {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                return Some((
                    "ImagePullFailed".into(),
                    format!(
                        "Pod {} cannot pull image {:?} ({reason}: {message}); fix the image reference in the Stack",
                        name(pod),
                        container.image
                    ),
                ));
            }
            "CreateContainerConfigError" => {
                return Some((
                    "ConfigError".into(),
                    format!(
                        "Pod {} cannot start: {message}; create what it refers to or fix the Stack",
                        name(pod)
                    ),
                ));
            }
            _ => {}
        }
    }
    None
}

/// The spec hash a desired Pod is annotated with.
pub fn spec_hash(pod: &Pod) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(&pod.spec).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn annotated(mut pod: Pod) -> Pod {
    let hash = spec_hash(&pod);
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_SPEC_HASH.to_owned(), hash);
    pod
}

fn same_spec(existing: &Pod, desired: &Pod) -> bool {
    let want = desired
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SPEC_HASH));
    let have = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SPEC_HASH));
    want.is_some() && want == have
}

fn uses_host_ports(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .any(|p| p.host_port.is_some_and(|h| h > 0))
}

/// One single-Pod component (database or Redis): keep it, create it, or replace it when its spec changed.
fn single(
    desired: Option<&Pod>,
    existing: Option<&Pod>,
    steps: &mut Vec<Step>,
    notes: &mut Vec<Note>,
    what: &str,
) -> Option<ComponentStatus> {
    let desired = desired?;
    let status = match existing {
        Some(pod) if deleting(pod) => ComponentStatus {
            phase: ComponentPhase::Progressing,
            ready: 0,
            desired: 1,
            message: Some(format!("{what} Pod is being replaced")),
        },
        Some(pod) if !same_spec(pod, desired) => {
            steps.push(Step::DeletePod(name(pod).to_owned()));
            notes.push(Note {
                warning: false,
                reason: "Replacing",
                message: format!(
                    "{what} Pod {} is replaced to apply the new spec; its volume is kept",
                    name(pod)
                ),
                pod: Some(name(pod).to_owned()),
            });
            ComponentStatus {
                phase: ComponentPhase::Progressing,
                ready: 0,
                desired: 1,
                message: Some(format!("{what} Pod is being replaced")),
            }
        }
        Some(pod) => {
            if pod_phase(pod) == "Failed" {
                steps.push(Step::DeletePod(name(pod).to_owned()));
            }
            let ready = pod_ready(pod);
            ComponentStatus {
                phase: if ready {
                    ComponentPhase::Ready
                } else {
                    ComponentPhase::Progressing
                },
                ready: i32::from(ready),
                desired: 1,
                message: (!ready).then(|| format!("waiting for {what} to accept connections")),
            }
        }
        None => {
            steps.push(Step::Apply(Object::Pod(Box::new(desired.clone()))));
            notes.push(Note {
                warning: false,
                reason: "Created",
                message: format!("Created {what} Pod {}", name(desired)),
                pod: Some(name(desired).to_owned()),
            });
            ComponentStatus {
                phase: ComponentPhase::Pending,
                ready: 0,
                desired: 1,
                message: Some(format!("{what} Pod created")),
            }
        }
    };
    Some(status)
}

/// Decides what to do. `now` stamps conditions that change.
pub fn plan(stack: &Stack, desired: &Desired, observed: &Observed, now: &Time) -> Plan {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let component = |c: &str| -> Vec<&Pod> {
        observed
            .pods
            .iter()
            .filter(|p| label(p, LABEL_COMPONENT) == Some(c))
            .collect()
    };

    if let Some(secret) = &desired.secret {
        steps.push(Step::Apply(Object::Secret(Box::new(secret.clone()))));
    }
    steps.extend(
        desired
            .claims
            .iter()
            .cloned()
            .map(|c| Step::Apply(Object::Claim(Box::new(c)))),
    );
    steps.extend(
        desired
            .services
            .iter()
            .cloned()
            .map(|s| Step::Apply(Object::Service(Box::new(s)))),
    );

    let database_pod = desired.database.clone().map(annotated);
    let redis_pod = desired.redis.clone().map(annotated);
    let database = single(
        database_pod.as_ref(),
        component(berth_api::constants::COMPONENT_DATABASE)
            .first()
            .copied(),
        &mut steps,
        &mut notes,
        "database",
    );
    let redis = single(
        redis_pod.as_ref(),
        component(berth_api::constants::COMPONENT_REDIS)
            .first()
            .copied(),
        &mut steps,
        &mut notes,
        "redis",
    );
    let infra_ready = [&database, &redis]
        .iter()
        .all(|c| c.as_ref().is_none_or(|c| c.phase == ComponentPhase::Ready));

    // The migration of the current template.
    let mut migrate = None;
    let mut migration_failed = None;
    let migrated = match &desired.migrate {
        None => true,
        Some(pod) => {
            let existing = component(berth_api::constants::COMPONENT_MIGRATE)
                .into_iter()
                .find(|p| name(p) == name(pod));
            let (phase, message, done) = match existing.map(pod_phase) {
                Some("Succeeded") => (ComponentPhase::Succeeded, None, true),
                Some("Failed") => {
                    let message = format!(
                        "migration Pod {} failed; see `kubectl logs {}`, then fix the migration or the app and apply the Stack again",
                        name(pod),
                        name(pod)
                    );
                    migration_failed = Some(message.clone());
                    (ComponentPhase::Failed, Some(message), false)
                }
                Some(_) => (
                    ComponentPhase::Progressing,
                    Some("migration running".to_owned()),
                    false,
                ),
                None if infra_ready => {
                    steps.push(Step::Apply(Object::Pod(Box::new(pod.clone()))));
                    notes.push(Note {
                        warning: false,
                        reason: "Migrating",
                        message: format!("Created migration Pod {}", name(pod)),
                        pod: Some(name(pod).to_owned()),
                    });
                    (
                        ComponentPhase::Pending,
                        Some("migration Pod created".to_owned()),
                        false,
                    )
                }
                None => (
                    ComponentPhase::Pending,
                    Some("waiting for the database and Redis".to_owned()),
                    false,
                ),
            };
            migrate = Some(ComponentStatus {
                phase,
                ready: i32::from(done),
                desired: 1,
                message,
            });
            done
        }
    };

    // The app, rolled by template hash.
    let apps = component(berth_api::constants::COMPONENT_APP);
    let (current, old): (Vec<&Pod>, Vec<&Pod>) = apps
        .iter()
        .partition(|p| label(p, LABEL_TEMPLATE_HASH) == Some(desired.app_hash.as_str()));
    let wanted: Vec<String> = desired.app.iter().map(|p| name(p).to_owned()).collect();
    let replicas = desired.app.len() as i32;
    let current_ready = current
        .iter()
        .filter(|p| wanted.iter().any(|w| w == name(p)) && pod_ready(p))
        .count() as i32;
    let recreate = desired.app.first().is_some_and(uses_host_ports);
    let may_start = infra_ready && migrated;
    let mut rolling = false;
    if may_start {
        // Extra Pods of the current template (replicas went down) and failed ones go.
        for pod in &current {
            let unwanted = !wanted.iter().any(|w| w == name(pod)) || pod_phase(pod) == "Failed";
            if unwanted && !deleting(pod) {
                steps.push(Step::DeletePod(name(pod).to_owned()));
            }
        }
        let live_old: Vec<&&Pod> = old.iter().filter(|p| !deleting(p)).collect();
        if !old.is_empty() {
            rolling = true;
            notes.push(Note {
                warning: false,
                reason: "RollingOut",
                message: format!("Rolling out app template {}", desired.app_hash),
                pod: None,
            });
        }
        if recreate && !old.is_empty() {
            // Host ports cannot be held by two Pods on one node: the old Pods go first.
            for pod in live_old {
                steps.push(Step::DeletePod(name(pod).to_owned()));
            }
        } else {
            for pod in &desired.app {
                if !current.iter().any(|c| name(c) == name(pod)) {
                    steps.push(Step::Apply(Object::Pod(Box::new(pod.clone()))));
                    notes.push(Note {
                        warning: false,
                        reason: "Created",
                        message: format!("Created app Pod {}", name(pod)),
                        pod: Some(name(pod).to_owned()),
                    });
                }
            }
            // A new Pod Ready before an old one goes.
            if current_ready >= replicas {
                for pod in live_old {
                    steps.push(Step::DeletePod(name(pod).to_owned()));
                }
            }
        }
        // Migrations of earlier templates are done with once the app moved on.
        if !rolling {
            for pod in component(berth_api::constants::COMPONENT_MIGRATE) {
                if desired
                    .migrate
                    .as_ref()
                    .is_none_or(|m| name(m) != name(pod))
                    && !deleting(pod)
                {
                    steps.push(Step::DeletePod(name(pod).to_owned()));
                }
            }
        }
    }
    let app_ready = current_ready >= replicas && old.is_empty();
    let app = ComponentStatus {
        phase: if app_ready {
            ComponentPhase::Ready
        } else if may_start {
            ComponentPhase::Progressing
        } else {
            ComponentPhase::Pending
        },
        ready: current_ready,
        desired: replicas,
        message: if app_ready {
            None
        } else if !infra_ready {
            Some("waiting for the database and Redis to be ready".into())
        } else if !migrated {
            Some("waiting for the migration to succeed".into())
        } else {
            Some(format!("{current_ready}/{replicas} app Pods ready"))
        },
    };

    // Stalled: errors that retrying cannot fix.
    let blocker = observed
        .blocking
        .clone()
        .or_else(|| migration_failed.map(|m| ("MigrationFailed".to_owned(), m)))
        .or_else(|| {
            observed
                .pods
                .iter()
                .filter(|p| !deleting(p))
                .find_map(pod_blocker)
        });
    let ready = app_ready && infra_ready && migrated && blocker.is_none();
    let previous = stack.status.clone().unwrap_or_default();
    let generation = stack.metadata.generation;
    let mut conditions = Vec::new();
    let mut condition = |type_: &str, ok: bool, reason: &str, message: String| {
        conditions.push(transition(
            &previous.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
            now,
        ));
    };
    match &blocker {
        Some((reason, message)) => condition(CONDITION_READY, false, reason, message.clone()),
        None if ready => condition(
            CONDITION_READY,
            true,
            "Ready",
            "the app, database and Redis are ready".into(),
        ),
        None => condition(
            CONDITION_READY,
            false,
            "Progressing",
            app.message.clone().unwrap_or_default(),
        ),
    }
    match &blocker {
        Some(_) => condition(
            CONDITION_RECONCILING,
            false,
            "Stalled",
            "the rollout is stalled".into(),
        ),
        None if ready => condition(
            CONDITION_RECONCILING,
            false,
            "Ready",
            "nothing left to do".into(),
        ),
        None => condition(
            CONDITION_RECONCILING,
            true,
            "Progressing",
            app.message.clone().unwrap_or_default(),
        ),
    }
    match &blocker {
        Some((reason, message)) => condition(CONDITION_STALLED, true, reason, message.clone()),
        None => condition(CONDITION_STALLED, false, "Healthy", "no errors".into()),
    }
    let component_condition = |status: &Option<ComponentStatus>| {
        status.as_ref().map(|s| {
            let ok = matches!(s.phase, ComponentPhase::Ready | ComponentPhase::Succeeded);
            (
                ok,
                format!("{:?}", s.phase),
                s.message
                    .clone()
                    .unwrap_or_else(|| format!("{}/{} ready", s.ready, s.desired)),
            )
        })
    };
    for (type_, status) in [
        (CONDITION_DATABASE_READY, component_condition(&database)),
        (CONDITION_REDIS_READY, component_condition(&redis)),
        (CONDITION_MIGRATED, component_condition(&migrate)),
        (CONDITION_APP_READY, component_condition(&Some(app.clone()))),
    ] {
        if let Some((ok, reason, message)) = status {
            condition(type_, ok, &reason, message);
        }
    }
    for (type_, ok) in [
        (CONDITION_READY, ready),
        (CONDITION_STALLED, blocker.is_some()),
    ] {
        let was = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.status == "True");
        if was != Some(ok) && ok {
            notes.push(match type_ {
                CONDITION_READY => Note {
                    warning: false,
                    reason: "Ready",
                    message: "The Stack is ready".into(),
                    pod: None,
                },
                _ => {
                    let (reason, message) = blocker.clone().unwrap_or_default();
                    Note {
                        warning: true,
                        reason: if reason == "MigrationFailed" {
                            "MigrationFailed"
                        } else {
                            "Stalled"
                        },
                        message: format!("{reason}: {message}"),
                        pod: None,
                    }
                }
            });
        }
    }
    let phase = if stack.metadata.deletion_timestamp.is_some() {
        StackPhase::Deleting
    } else if blocker.is_some() {
        StackPhase::Failed
    } else if ready {
        StackPhase::Ready
    } else if previous.phase == Some(StackPhase::Ready) && !rolling {
        StackPhase::Degraded
    } else if observed.pods.is_empty() {
        StackPhase::Pending
    } else {
        StackPhase::Progressing
    };
    let endpoints = endpoints(desired);
    let status = StackStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions,
        components: Some(ComponentStatuses {
            app: Some(app),
            database,
            redis,
            migrate,
        }),
        endpoints,
    };
    // A spec that cannot work (a Secret it names is missing…) must not tear down what runs: while such an error
    // stands, nothing is replaced or removed, only created.
    if observed.blocking.is_some() {
        steps.retain(|step| !matches!(step, Step::DeletePod(_)));
    }
    Plan {
        steps,
        status,
        notes,
    }
}

/// URLs of the app's published host ports; the first is the `app` endpoint.
fn endpoints(desired: &Desired) -> Vec<Endpoint> {
    let Some(pod) = desired.app.first() else {
        return Vec::new();
    };
    let ports = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten());
    ports
        .filter_map(|p| {
            let host_port = p.host_port.filter(|h| *h > 0)?;
            let host = p
                .host_ip
                .clone()
                .filter(|h| !h.is_empty() && h != "0.0.0.0")
                .unwrap_or_else(|| "127.0.0.1".into());
            Some((p.name.clone(), format!("http://{host}:{host_port}")))
        })
        .enumerate()
        .map(|(i, (port_name, url))| Endpoint {
            name: if i == 0 {
                ENDPOINT_APP.to_owned()
            } else {
                port_name.unwrap_or_else(|| format!("port-{i}"))
            },
            url,
        })
        .collect()
}

/// A condition that keeps its transition time while its status stays the same.
fn transition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
