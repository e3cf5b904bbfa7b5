use berth_api::Stack;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
};

use super::*;
use crate::mapping::desired;

const SAMPLE: &str = include_str!("../../../config/samples/stack.yaml");

fn sample() -> Stack {
    let mut stack: Stack = serde_yaml::from_str(SAMPLE).unwrap();
    stack.metadata.namespace = Some("default".into());
    stack.metadata.uid = Some("uid-1".into());
    stack.metadata.generation = Some(1);
    stack
}

fn now() -> Time {
    Time(jiff::Timestamp::from_second(1_800_000_000).unwrap())
}

/// A Pod as the agent reports it: `ready`, in `phase`.
fn running(mut pod: Pod, ready: bool, phase: &str) -> Pod {
    pod.status = Some(PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    pod
}

fn applied_pods(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Apply(Object::Pod(p)) => p.metadata.name.clone(),
            _ => None,
        })
        .collect()
}

fn deleted_pods(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::DeletePod(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> &'a Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap()
}

/// The database and Redis Pods as planned, annotated and reported ready.
fn infra(stack: &Stack, d: &Desired) -> Vec<Pod> {
    let first = plan(stack, d, &Observed::default(), &now());
    first
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Apply(Object::Pod(p)) => Some(running(p.as_ref().clone(), true, "Running")),
            _ => None,
        })
        .collect()
}

#[test]
fn first_reconcile_creates_database_and_redis_but_not_the_app() {
    let stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let p = plan(&stack, &d, &Observed::default(), &now());
    assert_eq!(applied_pods(&p), vec!["demo-db", "demo-redis"]);
    assert_eq!(condition(&p, CONDITION_READY).status, "False");
    assert_eq!(condition(&p, CONDITION_RECONCILING).status, "True");
    assert_eq!(condition(&p, CONDITION_STALLED).status, "False");
    assert_eq!(p.status.observed_generation, Some(1));
    assert_eq!(p.status.phase, Some(StackPhase::Pending));
    assert!(p.notes.iter().any(|n| n.reason == "Created"));
}

#[test]
fn app_starts_once_database_and_redis_are_ready() {
    let stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let observed = Observed {
        pods: infra(&stack, &d),
        blocking: None,
    };
    let p = plan(&stack, &d, &observed, &now());
    assert_eq!(
        applied_pods(&p),
        vec![d.app[0].metadata.name.clone().unwrap()]
    );
    assert!(deleted_pods(&p).is_empty());
}

#[test]
fn all_ready_is_ready_with_the_app_endpoint_and_no_writes_but_applies() {
    let stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    pods.push(running(d.app[0].clone(), true, "Running"));
    let p = plan(
        &stack,
        &d,
        &Observed {
            pods,
            blocking: None,
        },
        &now(),
    );
    assert!(applied_pods(&p).is_empty(), "nothing to create");
    assert!(deleted_pods(&p).is_empty());
    assert_eq!(condition(&p, CONDITION_READY).status, "True");
    assert_eq!(condition(&p, CONDITION_RECONCILING).status, "False");
    assert_eq!(p.status.phase, Some(StackPhase::Ready));
    assert_eq!(p.status.endpoints[0].url, "http://127.0.0.1:5500");
    assert!(p.notes.iter().any(|n| n.reason == "Ready"));
}

#[test]
fn conditions_keep_their_transition_time_when_nothing_changes() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let first = plan(&stack, &d, &Observed::default(), &now());
    stack.status = Some(first.status.clone());
    let later = Time(jiff::Timestamp::from_second(1_800_000_100).unwrap());
    let second = plan(&stack, &d, &Observed::default(), &later);
    assert_eq!(
        condition(&second, CONDITION_READY).last_transition_time,
        now()
    );
    assert_eq!(
        first.status, second.status,
        "the same input gives the same status"
    );
    assert!(
        !second
            .notes
            .iter()
            .any(|n| n.reason == "Ready" || n.reason == "Stalled")
    );
}

#[test]
fn a_changed_app_rolls_new_pods_before_old_ones_go() {
    let mut stack = sample();
    // Without host ports, the rollout surges.
    stack.spec.app.ports[0].host_port = None;
    let old = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &old);
    pods.push(running(old.app[0].clone(), true, "Running"));
    stack.spec.app.image = "127.0.0.1:5000/berth/demo-app:v2".into();
    let new = desired(&stack, "pw").unwrap();
    let p = plan(
        &stack,
        &new,
        &Observed {
            pods: pods.clone(),
            blocking: None,
        },
        &now(),
    );
    assert_eq!(
        applied_pods(&p),
        vec![new.app[0].metadata.name.clone().unwrap()]
    );
    assert!(
        deleted_pods(&p).is_empty(),
        "the old Pod stays until the new one is ready"
    );
    assert!(p.notes.iter().any(|n| n.reason == "RollingOut"));

    pods.push(running(new.app[0].clone(), true, "Running"));
    let p = plan(
        &stack,
        &new,
        &Observed {
            pods,
            blocking: None,
        },
        &now(),
    );
    assert_eq!(
        deleted_pods(&p),
        vec![old.app[0].metadata.name.clone().unwrap()]
    );
}

#[test]
fn apps_with_host_ports_replace_old_pods_first() {
    let mut stack = sample();
    let old = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &old);
    pods.push(running(old.app[0].clone(), true, "Running"));
    stack.spec.app.image = "127.0.0.1:5000/berth/demo-app:v2".into();
    let new = desired(&stack, "pw").unwrap();
    let p = plan(
        &stack,
        &new,
        &Observed {
            pods,
            blocking: None,
        },
        &now(),
    );
    assert_eq!(
        deleted_pods(&p),
        vec![old.app[0].metadata.name.clone().unwrap()]
    );
    assert!(
        applied_pods(&p).is_empty(),
        "the new Pod waits for the host port"
    );
}

#[test]
fn a_database_spec_change_replaces_the_pod_and_keeps_the_claim() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let pods = infra(&stack, &d);
    stack.spec.database.as_mut().unwrap().image = "127.0.0.1:5000/berth/postgres:16".into();
    let d2 = desired(&stack, "pw").unwrap();
    let p = plan(
        &stack,
        &d2,
        &Observed {
            pods,
            blocking: None,
        },
        &now(),
    );
    assert_eq!(deleted_pods(&p), vec!["demo-db"]);
    assert!(p.steps.iter().any(|s| matches!(s, Step::Apply(Object::Claim(c)) if c.metadata.name.as_deref() == Some("demo-db-data"))));
}

#[test]
fn migration_runs_before_the_app_and_its_failure_stalls() {
    let mut stack = sample();
    stack.spec.app.migrate = Some(berth_api::MigrateSpec {
        image: None,
        command: vec!["migrate".into()],
        args: vec![],
    });
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    let p = plan(
        &stack,
        &d,
        &Observed {
            pods: pods.clone(),
            blocking: None,
        },
        &now(),
    );
    let migrate_name = d.migrate.as_ref().unwrap().metadata.name.clone().unwrap();
    assert_eq!(
        applied_pods(&p),
        vec![migrate_name.clone()],
        "the app waits for the migration"
    );

    pods.push(running(d.migrate.clone().unwrap(), false, "Failed"));
    let p = plan(
        &stack,
        &d,
        &Observed {
            pods: pods.clone(),
            blocking: None,
        },
        &now(),
    );
    assert!(applied_pods(&p).is_empty());
    let stalled = condition(&p, CONDITION_STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "MigrationFailed")
    );
    assert!(stalled.message.contains("kubectl logs"));
    assert_eq!(p.status.phase, Some(StackPhase::Failed));
    assert!(
        p.notes
            .iter()
            .any(|n| n.warning && n.reason == "MigrationFailed")
    );

    let last = pods.len() - 1;
    pods[last] = running(d.migrate.clone().unwrap(), false, "Succeeded");
    let p = plan(
        &stack,
        &d,
        &Observed {
            pods,
            blocking: None,
        },
        &now(),
    );
    assert_eq!(
        applied_pods(&p),
        vec![d.app[0].metadata.name.clone().unwrap()]
    );
}

#[test]
fn an_image_that_cannot_be_pulled_stalls_with_a_message_naming_it() {
    let stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    let mut bad = running(d.app[0].clone(), false, "Pending");
    bad.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "app".into(),
        image: "nope:latest".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("manifest unknown".into()),
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }]);
    pods.push(bad);
    let p = plan(
        &stack,
        &d,
        &Observed {
            pods,
            blocking: None,
        },
        &now(),
    );
    let stalled = condition(&p, CONDITION_STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "ImagePullFailed")
    );
    assert!(
        stalled.message.contains("nope:latest"),
        "{}",
        stalled.message
    );
    assert_eq!(condition(&p, CONDITION_RECONCILING).status, "False");
}

#[test]
fn scaling_down_deletes_the_highest_indices() {
    let mut stack = sample();
    stack.spec.app.replicas = 3;
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    pods.extend(d.app.iter().map(|p| running(p.clone(), true, "Running")));
    stack.spec.app.replicas = 1;
    let d1 = desired(&stack, "pw").unwrap();
    assert_eq!(
        d.app_hash, d1.app_hash,
        "replicas are not part of the template"
    );
    let p = plan(
        &stack,
        &d1,
        &Observed {
            pods,
            blocking: None,
        },
        &now(),
    );
    let names: Vec<String> = d.app[1..]
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(deleted_pods(&p), names);
}

#[test]
fn a_blocking_error_replaces_nothing_that_runs() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let pods = infra(&stack, &d);
    stack.spec.database.as_mut().unwrap().password_secret_ref = Some(berth_api::SecretKeyRef {
        name: "missing".into(),
        key: "password".into(),
    });
    let d2 = desired(&stack, "pw").unwrap();
    let blocking = Some((
        "MissingSecret".to_owned(),
        "Secret missing not found".to_owned(),
    ));
    let p = plan(&stack, &d2, &Observed { pods, blocking }, &now());
    assert!(deleted_pods(&p).is_empty(), "the running database stays");
    assert_eq!(condition(&p, CONDITION_STALLED).status, "True");
}
