//! The reconciler's brain, with no I/O: given a Stack, what it should consist of, and the Pods that exist, decide
//! the writes (apply or delete), the status to report and the events to record. Order lives here: database and
//! Redis first, then the migration, then the app, rolled so that a working app is not torn down by a bad edit.

use std::collections::BTreeMap;

use berth_api::constants::{
    COMPONENT_APP, COMPONENT_CHECK, COMPONENT_DATABASE, COMPONENT_MIGRATE, COMPONENT_REDIS,
    CONDITION_APP_READY, CONDITION_DATABASE_READY, CONDITION_MIGRATED, CONDITION_READY,
    CONDITION_RECONCILING, CONDITION_REDIS_READY, CONDITION_STALLED, ENDPOINT_APP, LABEL_CHECK_FOR,
    LABEL_COMPONENT,
};
use berth_api::{
    ComponentPhase, ComponentStatus, ComponentStatuses, Endpoint, Stack, StackPhase, StackStatus,
};
use k8s_openapi::api::core::v1::{ContainerPort, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::check::{self, Verdict};
use crate::mapping::{Desired, LABEL_TEMPLATE_HASH, Names};
use crate::problem::{self, Kind, Problem};
use crate::safety;

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
    /// Deletes a Pod (replaced, unwanted, or a finished check).
    DeletePod(String),
    /// Deletes the Service of a component the spec no longer has.
    DeleteService(String),
    /// Deletes a data claim; only with the Stack's explicit opt-in to data loss.
    DeleteClaim(String),
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
    /// The Stack's Services.
    pub services: Vec<Service>,
    /// The Stack's PersistentVolumeClaims.
    pub claims: Vec<PersistentVolumeClaim>,
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

/// True when the Pod's controller is another object than this Stack (an earlier Stack of the same name).
fn foreign(pod: &Pod, stack: &Stack) -> bool {
    let Some(uid) = stack.metadata.uid.as_deref() else {
        return false;
    };
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.uid != uid)
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

/// The hostPorts a Pod publishes.
fn host_ports(pod: &Pod) -> Vec<ContainerPort> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .cloned()
        .collect()
}

/// What makes two hostPorts clash on one node.
fn port_key(port: &ContainerPort) -> (i32, &str) {
    (
        port.host_port.unwrap_or_default(),
        port.protocol.as_deref().unwrap_or("TCP"),
    )
}

fn node(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn is_check(pod: &Pod) -> bool {
    label(pod, LABEL_COMPONENT) == Some(COMPONENT_CHECK)
}

/// The Stalled (reason, message) of a replacement its check Pod refused: `field` is what the user edits.
fn refused_replacement(
    problem: &Problem,
    image: &str,
    what: &str,
    field: &str,
) -> (String, String) {
    let message = match &problem.kind {
        Kind::Pull { reason } => format!(
            "{field} {image:?} cannot be pulled ({reason}: {}); the running {what} Pod is kept until {field} \
             names an image that can be pulled",
            problem.detail
        ),
        Kind::Config => format!(
            "the new {what} Pod could not start: {}; the running one is kept: create what it refers to or fix \
             the Stack",
            problem.detail
        ),
        Kind::Port => format!(
            "a hostPort in spec.app.ports is taken: {}; the running {what} Pods are kept: choose a free \
             hostPort or stop what holds it",
            problem.detail
        ),
    };
    (problem.reason().to_owned(), message)
}

/// What one plan collects as it goes.
struct Work<'a> {
    observed: &'a Observed,
    steps: Vec<Step>,
    notes: Vec<Note>,
    /// What check Pods found that stops a replacement, as (reason, message).
    blockers: Vec<(String, String)>,
    /// The check Pods still needed; the others go.
    checks: Vec<String>,
}

impl Work<'_> {
    fn delete(&mut self, pod: &str) {
        let step = Step::DeletePod(pod.to_owned());
        if !self.steps.contains(&step) {
            self.steps.push(step);
        }
    }

    /// Creates or reads the check Pod `probe` of replacing `what`'s running Pods. A check that passed is no
    /// longer needed: the caller deletes the old Pods, then the check Pod goes with the others not needed.
    fn check(&mut self, probe: Pod, what: &str, field: &str) -> Verdict {
        let probe_name = name(&probe).to_owned();
        let image = image_of(&probe);
        let verdict = match self.observed.pods.iter().find(|p| name(p) == probe_name) {
            None => {
                self.notes.push(Note {
                    warning: false,
                    reason: "Checking",
                    message: format!(
                        "Checking the new {what} image {image:?} before the running Pod is replaced"
                    ),
                    pod: Some(probe_name.clone()),
                });
                self.steps.push(Step::Apply(Object::Pod(Box::new(probe))));
                Verdict::Pending
            }
            Some(pod) if deleting(pod) => Verdict::Pending,
            Some(pod) => check::verdict(pod),
        };
        match &verdict {
            Verdict::Passed => {}
            Verdict::Failed(problem) => {
                self.blockers
                    .push(refused_replacement(problem, &image, what, field));
                self.checks.push(probe_name);
            }
            Verdict::Pending => self.checks.push(probe_name),
        }
        verdict
    }
}

/// One single-Pod component (database or Redis): keep it, create it, or replace it when its spec changed,
/// once a check Pod showed that what the new spec needs is there. `field` is the image field of the spec.
fn single(
    work: &mut Work,
    desired: Option<&Pod>,
    existing: Option<&Pod>,
    what: &str,
    component: &str,
    field: &str,
) -> Option<ComponentStatus> {
    let desired = desired?;
    let progressing = |ready: bool, message: String| ComponentStatus {
        phase: ComponentPhase::Progressing,
        ready: i32::from(ready),
        desired: 1,
        message: Some(message),
    };
    let status = match existing {
        Some(pod) if deleting(pod) => progressing(false, format!("{what} Pod is being replaced")),
        Some(pod) if !same_spec(pod, desired) => {
            // A Pod that does not serve (still starting, or broken itself) has nothing to protect.
            let verdict = if pod_ready(pod) && check::needed(pod, desired, &[]) {
                let probe = check::pod(desired, component, name(desired), &[], node(pod));
                work.check(probe, what, field)
            } else {
                Verdict::Passed
            };
            match verdict {
                Verdict::Passed => {
                    work.delete(name(pod));
                    work.notes.push(Note {
                        warning: false,
                        reason: "Replacing",
                        message: format!(
                            "{what} Pod {} is replaced to apply the new spec; its volume is kept",
                            name(pod)
                        ),
                        pod: Some(name(pod).to_owned()),
                    });
                    progressing(false, format!("{what} Pod is being replaced"))
                }
                Verdict::Pending => progressing(
                    pod_ready(pod),
                    format!("checking the new {what} image before the running Pod is replaced"),
                ),
                Verdict::Failed(_) => progressing(
                    pod_ready(pod),
                    format!("the new {what} spec cannot run; the running Pod is kept"),
                ),
            }
        }
        Some(pod) => {
            if pod_phase(pod) == "Failed" {
                work.delete(name(pod));
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
            work.steps
                .push(Step::Apply(Object::Pod(Box::new(desired.clone()))));
            work.notes.push(Note {
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

/// The claims to apply; the database's carries the identity its data was initialised with.
fn claims(
    stack: &Stack,
    desired: &Desired,
    observed: &Observed,
    names: Option<&Names>,
) -> Vec<Step> {
    let database = observed
        .pods
        .iter()
        .find(|p| label(p, LABEL_COMPONENT) == Some(COMPONENT_DATABASE) && !deleting(p));
    let initialised = match (database, &desired.database) {
        (Some(pod), Some(wanted)) => pod_ready(pod) && same_spec(pod, &annotated(wanted.clone())),
        _ => false,
    };
    desired
        .claims
        .iter()
        .cloned()
        .map(|mut claim| {
            let is_database =
                names.is_some_and(|n| claim.metadata.name.as_ref() == Some(&n.database_claim));
            if is_database {
                let existing = observed
                    .claims
                    .iter()
                    .find(|c| c.metadata.name == claim.metadata.name);
                let identity = safety::identity(existing, stack, initialised);
                if !identity.is_empty() {
                    claim
                        .metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .extend(identity);
                }
            }
            Step::Apply(Object::Claim(Box::new(claim)))
        })
        .collect()
}

/// Removes what belongs to components the spec no longer has: their Pod and Service, and their claim when
/// the Stack allows data loss (otherwise a claim there refuses the edit before this runs).
fn prune(stack: &Stack, desired: &Desired, observed: &Observed, names: &Names, work: &mut Work) {
    let redis_claim_unwanted = stack
        .spec
        .redis
        .as_ref()
        .is_none_or(|r| !r.persistence.enabled);
    let gone = [
        (
            desired.database.is_none(),
            COMPONENT_DATABASE,
            &names.database,
            &names.database_claim,
            true,
        ),
        (
            desired.redis.is_none(),
            COMPONENT_REDIS,
            &names.redis,
            &names.redis_claim,
            redis_claim_unwanted,
        ),
    ];
    for (removed, component, service, claim, claim_unwanted) in gone {
        if removed {
            let pods: Vec<String> = observed
                .pods
                .iter()
                .filter(|p| label(p, LABEL_COMPONENT) == Some(component) && !deleting(p))
                .map(|p| name(p).to_owned())
                .collect();
            for pod in pods {
                work.delete(&pod);
                work.notes.push(Note {
                    warning: false,
                    reason: "Pruned",
                    message: format!("Deleted {component} Pod {pod}: the Stack no longer has it"),
                    pod: Some(pod.clone()),
                });
            }
            if observed
                .services
                .iter()
                .any(|s| s.metadata.name.as_ref() == Some(service))
            {
                work.steps.push(Step::DeleteService(service.clone()));
            }
        }
        let claim_there = observed.claims.iter().any(|c| {
            c.metadata.name.as_ref() == Some(claim) && c.metadata.deletion_timestamp.is_none()
        });
        if claim_unwanted && claim_there && safety::allowed(stack) {
            work.steps.push(Step::DeleteClaim(claim.clone()));
            work.notes.push(Note {
                warning: true,
                reason: "DataDeleted",
                message: format!(
                    "Deleting PersistentVolumeClaim {claim}: the Stack no longer keeps {component} data and allows data loss"
                ),
                pod: None,
            });
        }
    }
}

/// Decides what to do. `now` stamps conditions that change.
pub fn plan(stack: &Stack, desired: &Desired, observed: &Observed, now: &Time) -> Plan {
    // Pods of an earlier Stack of this name (deleted, its Pods not yet collected) carry the same labels but
    // are not this Stack's: they count for nothing, and a name one of them holds is created once it is gone.
    let (own, earlier): (Vec<Pod>, Vec<Pod>) = observed
        .pods
        .iter()
        .cloned()
        .partition(|pod| !foreign(pod, stack));
    let observed = &Observed {
        pods: own,
        ..observed.clone()
    };
    let names = Names::of(stack).ok();
    let refusal = names
        .as_ref()
        .and_then(|n| safety::refusal(stack, n, &observed.claims));
    let mut work = Work {
        observed,
        steps: Vec::new(),
        notes: Vec::new(),
        blockers: Vec::new(),
        checks: Vec::new(),
    };
    let component = |c: &str| -> Vec<&Pod> {
        observed
            .pods
            .iter()
            .filter(|p| label(p, LABEL_COMPONENT) == Some(c))
            .collect()
    };

    if let Some(secret) = &desired.secret {
        work.steps
            .push(Step::Apply(Object::Secret(Box::new(secret.clone()))));
    }
    work.steps
        .extend(claims(stack, desired, observed, names.as_ref()));
    work.steps.extend(
        desired
            .services
            .iter()
            .cloned()
            .map(|s| Step::Apply(Object::Service(Box::new(s)))),
    );
    if let Some(names) = &names {
        prune(stack, desired, observed, names, &mut work);
    }

    let database_pod = desired.database.clone().map(annotated);
    let redis_pod = desired.redis.clone().map(annotated);
    let database = single(
        &mut work,
        database_pod.as_ref(),
        component(COMPONENT_DATABASE).first().copied(),
        "database",
        COMPONENT_DATABASE,
        "spec.database.image",
    );
    let redis = single(
        &mut work,
        redis_pod.as_ref(),
        component(COMPONENT_REDIS).first().copied(),
        "redis",
        COMPONENT_REDIS,
        "spec.redis.image",
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
            let existing = component(COMPONENT_MIGRATE)
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
                    work.steps
                        .push(Step::Apply(Object::Pod(Box::new(pod.clone()))));
                    work.notes.push(Note {
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
    let apps = component(COMPONENT_APP);
    let (current, old): (Vec<&Pod>, Vec<&Pod>) = apps
        .iter()
        .partition(|p| label(p, LABEL_TEMPLATE_HASH) == Some(desired.app_hash.as_str()));
    let wanted: Vec<String> = desired.app.iter().map(|p| name(p).to_owned()).collect();
    let replicas = desired.app.len() as i32;
    let current_ready = current
        .iter()
        .filter(|p| wanted.iter().any(|w| w == name(p)) && pod_ready(p) && !deleting(p))
        .count() as i32;
    // HostPorts the new Pods share with the old ones cannot be held twice on a node: the old Pods go first,
    // after a check. New hostPorts are left to the new Pods, which prove them while the old ones serve.
    let new_ports = desired.app.first().map(host_ports).unwrap_or_default();
    let old_ports: Vec<ContainerPort> = old.iter().flat_map(|p| host_ports(p)).collect();
    let held = |port: &ContainerPort| old_ports.iter().any(|o| port_key(o) == port_key(port));
    let recreate = new_ports.iter().any(held);
    // A check Pod may hold hostPorts the new Pods want.
    let app_check_holds_ports = observed.pods.iter().any(|p| {
        is_check(p) && label(p, LABEL_CHECK_FOR) == Some(COMPONENT_APP) && !host_ports(p).is_empty()
    });
    let may_start = infra_ready && migrated;
    let mut rolling = false;
    if may_start {
        // Extra Pods of the current template (replicas went down) and failed ones go.
        for pod in &current {
            let unwanted = !wanted.iter().any(|w| w == name(pod)) || pod_phase(pod) == "Failed";
            if unwanted && !deleting(pod) {
                work.delete(name(pod));
            }
        }
        let live_old: Vec<&&Pod> = old.iter().filter(|p| !deleting(p)).collect();
        if !old.is_empty() {
            rolling = true;
            work.notes.push(Note {
                warning: false,
                reason: "RollingOut",
                message: format!("Rolling out app template {}", desired.app_hash),
                pod: None,
            });
        }
        if recreate {
            if let (Some(first_old), Some(new), Some(names)) =
                (live_old.first(), desired.app.first(), &names)
            {
                let new_only: Vec<ContainerPort> =
                    new_ports.iter().filter(|p| !held(p)).cloned().collect();
                let serving = live_old.iter().any(|p| pod_ready(p));
                let verdict = if serving && check::needed(first_old, new, &new_only) {
                    let probe = check::pod(new, COMPONENT_APP, &names.app, &new_only, None);
                    work.check(probe, "app", "spec.app.image")
                } else {
                    Verdict::Passed
                };
                if verdict == Verdict::Passed {
                    for pod in &live_old {
                        work.delete(name(pod));
                    }
                }
            }
        } else if !app_check_holds_ports {
            for pod in &desired.app {
                if !current.iter().any(|c| name(c) == name(pod)) {
                    work.steps
                        .push(Step::Apply(Object::Pod(Box::new(pod.clone()))));
                    work.notes.push(Note {
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
                    work.delete(name(pod));
                }
            }
        }
        // Migrations of earlier templates are done with once the app moved on.
        if !rolling {
            for pod in component(COMPONENT_MIGRATE) {
                if desired
                    .migrate
                    .as_ref()
                    .is_none_or(|m| name(m) != name(pod))
                    && !deleting(pod)
                {
                    work.delete(name(pod));
                }
            }
        }
    }
    // Check Pods nobody needs any more go (after the old Pods a passed check lets go).
    let finished: Vec<String> = observed
        .pods
        .iter()
        .filter(|p| is_check(p) && !deleting(p) && !work.checks.iter().any(|c| c == name(p)))
        .map(|p| name(p).to_owned())
        .collect();
    for pod in finished {
        work.delete(&pod);
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
    let blocker = refusal
        .clone()
        .map(|message| (safety::REASON.to_owned(), message))
        .or_else(|| observed.blocking.clone())
        .or_else(|| migration_failed.map(|m| ("MigrationFailed".to_owned(), m)))
        .or_else(|| work.blockers.first().cloned())
        .or_else(|| {
            observed
                .pods
                .iter()
                .filter(|p| !deleting(p) && !is_check(p))
                .find_map(|p| {
                    problem::of(p)
                        .map(|problem| (problem.reason().to_owned(), problem.message(name(p))))
                })
        });
    let Work {
        mut steps,
        mut notes,
        ..
    } = work;
    // An edit that would lose data is not applied at all: nothing is written or announced but the refusal.
    if refusal.is_some() {
        steps.clear();
        notes.clear();
    }
    let taken = |pod_name: &str| earlier.iter().any(|p| name(p) == pod_name);
    steps.retain(|step| !matches!(step, Step::Apply(Object::Pod(pod)) if taken(name(pod))));
    // Only a creation can name a Pod this Stack does not own (Created, Migrating, Checking): it did not happen.
    notes.retain(|note| !note.pod.as_deref().is_some_and(taken));
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
    // A spec that cannot work (a Secret it names is missing…) must not tear down what runs: while such an
    // error stands, nothing is replaced or removed, only created.
    if observed.blocking.is_some() {
        steps.retain(|step| matches!(step, Step::Apply(_)));
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
