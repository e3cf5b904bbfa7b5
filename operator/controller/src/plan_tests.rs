use berth_api::Stack;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodCondition,
    PodStatus,
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
        ..Observed::default()
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
            ..Observed::default()
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
fn a_terminating_app_pod_does_not_count_as_ready() {
    let stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    let mut app = running(d.app[0].clone(), true, "Running");
    app.metadata.deletion_timestamp = Some(now());
    pods.push(app);
    let p = plan(&stack, &d, &observed(pods), &now());
    assert_eq!(condition(&p, CONDITION_READY).status, "False");
    assert_eq!(condition(&p, CONDITION_RECONCILING).status, "True");
    assert_eq!(
        p.status
            .components
            .as_ref()
            .and_then(|c| c.app.as_ref())
            .map(|a| a.ready),
        Some(0)
    );
    assert!(applied_pods(&p).is_empty(), "its name is still taken");
}

#[test]
fn pods_of_an_earlier_stack_of_the_name_count_for_nothing_and_keep_their_names() {
    let stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    pods.push(running(d.app[0].clone(), true, "Running"));
    for pod in &mut pods {
        for owner in pod.metadata.owner_references.iter_mut().flatten() {
            owner.uid = "uid-of-the-deleted-stack".into();
        }
    }
    let p = plan(&stack, &d, &observed(pods), &now());
    assert_eq!(condition(&p, CONDITION_READY).status, "False");
    assert!(applied_pods(&p).is_empty(), "{:?}", applied_pods(&p));
    assert!(
        deleted_pods(&p).is_empty(),
        "the garbage collector removes them"
    );
    assert!(!p.notes.iter().any(|n| n.reason == "Created"));

    // Once they are gone the Stack creates its own.
    let p = plan(&stack, &d, &Observed::default(), &now());
    assert_eq!(applied_pods(&p), vec!["demo-db", "demo-redis"]);
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
            ..Observed::default()
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
            ..Observed::default()
        },
        &now(),
    );
    assert_eq!(
        deleted_pods(&p),
        vec![old.app[0].metadata.name.clone().unwrap()]
    );
}

/// The check Pod a plan creates, if any.
fn check_of(plan: &Plan) -> Option<Pod> {
    plan.steps.iter().find_map(|s| match s {
        Step::Apply(Object::Pod(p)) if label(p, LABEL_COMPONENT) == Some(COMPONENT_CHECK) => {
            Some(p.as_ref().clone())
        }
        _ => None,
    })
}

/// A check Pod as the kubelet reports it: its container waiting for `reason`, or ended when None.
fn checked(mut pod: Pod, waiting: Option<&str>) -> Pod {
    let state = match waiting {
        Some(reason) => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some("manifest unknown".into()),
            }),
            ..ContainerState::default()
        },
        None => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 0,
                reason: Some("Completed".into()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        },
    };
    pod.status = Some(PodStatus {
        phase: Some(
            if waiting.is_some() {
                "Pending"
            } else {
                "Succeeded"
            }
            .into(),
        ),
        container_statuses: Some(vec![ContainerStatus {
            name: "check".into(),
            image: image_of(&pod),
            state: Some(state),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    });
    pod
}

fn observed(pods: Vec<Pod>) -> Observed {
    Observed {
        pods,
        ..Observed::default()
    }
}

#[test]
fn apps_with_host_ports_replace_old_pods_first_once_the_new_image_is_checked() {
    let mut stack = sample();
    let old = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &old);
    pods.push(running(old.app[0].clone(), true, "Running"));
    stack.spec.app.image = "127.0.0.1:5000/berth/demo-app:v2".into();
    let new = desired(&stack, "pw").unwrap();
    let p = plan(&stack, &new, &observed(pods.clone()), &now());
    assert!(
        deleted_pods(&p).is_empty(),
        "the old Pod serves while the check runs"
    );
    let check = check_of(&p).expect("a check Pod");
    assert_eq!(applied_pods(&p), vec![check.metadata.name.clone().unwrap()]);
    assert_eq!(
        check.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("127.0.0.1:5000/berth/demo-app:v2")
    );
    assert_eq!(
        check.spec.as_ref().unwrap().containers[0].ports,
        None,
        "the host port is the old Pod's: the check does not ask for it"
    );

    pods.push(checked(check.clone(), None));
    let p = plan(&stack, &new, &observed(pods), &now());
    assert_eq!(
        deleted_pods(&p),
        vec![
            old.app[0].metadata.name.clone().unwrap(),
            check.metadata.name.clone().unwrap()
        ],
        "the old Pod goes first, then the check Pod"
    );
    assert!(
        applied_pods(&p).is_empty(),
        "the new Pod waits for the host port"
    );
}

#[test]
fn a_database_spec_change_is_checked_then_replaces_the_pod_and_keeps_the_claim() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    pods[0].spec.as_mut().unwrap().node_name = Some("node-1".into());
    stack.spec.database.as_mut().unwrap().image = "127.0.0.1:5000/berth/postgres:16".into();
    let d2 = desired(&stack, "pw").unwrap();
    let p = plan(&stack, &d2, &observed(pods.clone()), &now());
    assert!(deleted_pods(&p).is_empty());
    let check = check_of(&p).expect("a check Pod");
    assert!(
        check
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("demo-db-check-")
    );
    assert_eq!(
        check.metadata.labels.as_ref().unwrap()[LABEL_CHECK_FOR],
        "database"
    );
    let spec = check.spec.as_ref().unwrap();
    assert_eq!(
        spec.node_name.as_deref(),
        Some("node-1"),
        "pulled where the database runs"
    );
    assert_eq!(spec.volumes, None);
    assert!(p.notes.iter().any(|n| n.reason == "Checking"));

    // Reconciling again while the check runs creates nothing more.
    pods.push(check.clone());
    let p = plan(&stack, &d2, &observed(pods.clone()), &now());
    assert!(applied_pods(&p).is_empty() && deleted_pods(&p).is_empty());

    let last = pods.len() - 1;
    pods[last] = checked(check.clone(), None);
    let p = plan(&stack, &d2, &observed(pods), &now());
    assert_eq!(
        deleted_pods(&p),
        vec!["demo-db".to_owned(), check.metadata.name.clone().unwrap()]
    );
    assert!(p.steps.iter().any(|s| matches!(s, Step::Apply(Object::Claim(c)) if c.metadata.name.as_deref() == Some("demo-db-data"))));
}

#[test]
fn a_database_change_that_keeps_the_image_needs_no_check() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let pods = infra(&stack, &d);
    stack.spec.database.as_mut().unwrap().resources = Some(Default::default());
    let d2 = desired(&stack, "pw").unwrap();
    let p = plan(&stack, &d2, &observed(pods), &now());
    assert_eq!(deleted_pods(&p), vec!["demo-db"]);
    assert!(check_of(&p).is_none());
}

#[test]
fn a_database_image_that_cannot_be_pulled_stalls_and_keeps_the_running_database() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    stack.metadata.generation = Some(2);
    stack.spec.database.as_mut().unwrap().image = "127.0.0.1:5000/berth/postgres:nope".into();
    let d2 = desired(&stack, "pw").unwrap();
    let check = check_of(&plan(&stack, &d2, &observed(pods.clone()), &now())).unwrap();
    pods.push(checked(check, Some("ErrImagePull")));
    let p = plan(&stack, &d2, &observed(pods.clone()), &now());
    assert!(deleted_pods(&p).is_empty(), "the running database stays");
    assert!(applied_pods(&p).is_empty());
    let stalled = condition(&p, CONDITION_STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "ImagePullFailed")
    );
    assert!(
        stalled.message.starts_with(
            "spec.database.image \"127.0.0.1:5000/berth/postgres:nope\" cannot be pulled (ErrImagePull"
        ),
        "{}",
        stalled.message
    );
    assert_eq!(condition(&p, CONDITION_RECONCILING).status, "False");
    assert_eq!(p.status.phase, Some(StackPhase::Failed));
    assert!(p.notes.iter().any(|n| n.warning && n.reason == "Stalled"));

    // The edit is undone: the check Pod goes and the Stack is healthy again.
    let p = plan(&stack, &d, &observed(pods.clone()), &now());
    assert_eq!(
        deleted_pods(&p),
        vec![name(&pods[pods.len() - 1]).to_owned()]
    );
    assert_eq!(condition(&p, CONDITION_STALLED).status, "False");
}

#[test]
fn a_database_that_never_served_is_replaced_without_a_check() {
    let mut stack = sample();
    stack.spec.database.as_mut().unwrap().image = "postgres:nope".into();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    pods[0] = running(pods[0].clone(), false, "Pending");
    stack.spec.database.as_mut().unwrap().image = "postgres:16".into();
    let fixed = desired(&stack, "pw").unwrap();
    let p = plan(&stack, &fixed, &observed(pods), &now());
    assert_eq!(deleted_pods(&p), vec!["demo-db"]);
    assert!(check_of(&p).is_none());
}

#[test]
fn a_redis_image_is_checked_too() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &d);
    stack.spec.redis.as_mut().unwrap().image = "redis:nope".into();
    let d2 = desired(&stack, "pw").unwrap();
    let check = check_of(&plan(&stack, &d2, &observed(pods.clone()), &now())).unwrap();
    assert!(
        check
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("demo-redis-check-")
    );
    pods.push(checked(check, Some("ImagePullBackOff")));
    let p = plan(&stack, &d2, &observed(pods), &now());
    assert!(deleted_pods(&p).is_empty());
    assert!(
        condition(&p, CONDITION_STALLED)
            .message
            .starts_with("spec.redis.image")
    );
}

#[test]
fn a_bad_image_for_a_host_port_app_keeps_the_old_app() {
    let mut stack = sample();
    let old = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &old);
    pods.push(running(old.app[0].clone(), true, "Running"));
    stack.spec.app.image = "127.0.0.1:5000/berth/demo-app:nope".into();
    let new = desired(&stack, "pw").unwrap();
    let check = check_of(&plan(&stack, &new, &observed(pods.clone()), &now())).unwrap();
    pods.push(checked(check, Some("ErrImagePull")));
    let p = plan(&stack, &new, &observed(pods), &now());
    assert!(deleted_pods(&p).is_empty(), "the old app Pod stays");
    assert!(applied_pods(&p).is_empty());
    let stalled = condition(&p, CONDITION_STALLED);
    assert_eq!(stalled.reason, "ImagePullFailed");
    assert!(
        stalled.message.starts_with("spec.app.image"),
        "{}",
        stalled.message
    );
}

#[test]
fn an_app_moving_to_another_host_port_starts_new_pods_beside_the_old_ones() {
    let mut stack = sample();
    let old = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &old);
    pods.push(running(old.app[0].clone(), true, "Running"));
    stack.spec.app.ports[0].host_port = Some(5501);
    let new = desired(&stack, "pw").unwrap();
    let p = plan(&stack, &new, &observed(pods), &now());
    assert!(deleted_pods(&p).is_empty());
    assert_eq!(
        applied_pods(&p),
        vec![new.app[0].metadata.name.clone().unwrap()],
        "no port is shared: the new Pod proves its own while the old one serves"
    );
}

/// An app Pod the scheduler could not place, or whose host port the agent could not bind.
fn port_taken(mut pod: Pod, unschedulable: bool) -> Pod {
    let mut status = PodStatus {
        phase: Some("Pending".into()),
        ..PodStatus::default()
    };
    if unschedulable {
        status.conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(
                "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
                    .into(),
            ),
            ..PodCondition::default()
        }]);
    } else {
        status.container_statuses = Some(vec![ContainerStatus {
            name: "app".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("FailedPortBinding".into()),
                    message: Some("0.0.0.0:5501/TCP is in use".into()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
    }
    pod.status = Some(status);
    pod
}

#[test]
fn a_host_port_clash_stalls_and_keeps_the_old_app() {
    for unschedulable in [true, false] {
        let mut stack = sample();
        let old = desired(&stack, "pw").unwrap();
        let mut pods = infra(&stack, &old);
        pods.push(running(old.app[0].clone(), true, "Running"));
        stack.spec.app.ports[0].host_port = Some(5501);
        let new = desired(&stack, "pw").unwrap();
        pods.push(port_taken(new.app[0].clone(), unschedulable));
        let p = plan(&stack, &new, &observed(pods), &now());
        assert!(deleted_pods(&p).is_empty(), "the old app Pod stays");
        let stalled = condition(&p, CONDITION_STALLED);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "PortConflict")
        );
        assert!(
            stalled.message.contains("spec.app.ports"),
            "{}",
            stalled.message
        );
        assert_eq!(condition(&p, CONDITION_RECONCILING).status, "False");
        assert!(p.notes.iter().any(|n| n.warning && n.reason == "Stalled"));
    }
}

#[test]
fn a_new_host_port_next_to_a_shared_one_is_checked_by_the_check_pod() {
    let mut stack = sample();
    let old = desired(&stack, "pw").unwrap();
    let mut pods = infra(&stack, &old);
    pods.push(running(old.app[0].clone(), true, "Running"));
    let mut extra = stack.spec.app.ports[0].clone();
    extra.name = Some("admin".into());
    extra.container_port = 5600;
    extra.host_port = Some(5600);
    stack.spec.app.ports.push(extra);
    let new = desired(&stack, "pw").unwrap();
    let check = check_of(&plan(&stack, &new, &observed(pods.clone()), &now())).unwrap();
    let ports = check.spec.as_ref().unwrap().containers[0]
        .ports
        .clone()
        .unwrap();
    assert_eq!(
        ports.iter().map(|p| p.host_port).collect::<Vec<_>>(),
        vec![Some(5600)],
        "only the port the old Pod does not hold"
    );
    pods.push(port_taken(check, true));
    let p = plan(&stack, &new, &observed(pods), &now());
    assert!(deleted_pods(&p).is_empty());
    assert_eq!(condition(&p, CONDITION_STALLED).reason, "PortConflict");
}

fn claim_named(name: &str, size: &str) -> PersistentVolumeClaim {
    let mut claim = desired(&sample(), "pw").unwrap().claims[0].clone();
    claim.metadata.name = Some(name.into());
    claim
        .spec
        .as_mut()
        .unwrap()
        .resources
        .as_mut()
        .unwrap()
        .requests = Some(BTreeMap::from([(
        "storage".into(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity(size.into()),
    )]));
    claim
}

#[test]
fn removed_redis_without_persistence_has_its_pod_and_service_pruned() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let pods = infra(&stack, &d);
    let services = d.services.clone();
    stack.spec.redis = None;
    let d2 = desired(&stack, "pw").unwrap();
    let p = plan(
        &stack,
        &d2,
        &Observed {
            pods,
            services,
            ..Observed::default()
        },
        &now(),
    );
    assert_eq!(deleted_pods(&p), vec!["demo-redis"]);
    assert!(p.steps.contains(&Step::DeleteService("demo-redis".into())));
    assert_eq!(condition(&p, CONDITION_STALLED).status, "False");
}

#[test]
fn removing_the_database_with_its_data_is_refused_and_changes_nothing() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let pods = infra(&stack, &d);
    let seen = Observed {
        pods,
        services: d.services.clone(),
        claims: vec![claim_named("demo-db-data", "1Gi")],
        ..Observed::default()
    };
    stack.spec.database = None;
    let d2 = desired(&stack, "pw").unwrap();
    let p = plan(&stack, &d2, &seen, &now());
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    let stalled = condition(&p, CONDITION_STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "DataLossRefused")
    );
    assert!(stalled.message.starts_with("spec.database was removed"));
    assert!(p.notes.iter().any(|n| n.warning && n.reason == "Stalled"));

    // With the opt-in, the database goes, its claim included.
    stack.metadata.annotations = Some(BTreeMap::from([(
        berth_api::constants::ANNOTATION_ALLOW_DATA_LOSS.to_owned(),
        "true".to_owned(),
    )]));
    let p = plan(&stack, &d2, &seen, &now());
    assert_eq!(deleted_pods(&p), vec!["demo-db"]);
    assert!(p.steps.contains(&Step::DeleteService("demo-db".into())));
    assert!(p.steps.contains(&Step::DeleteClaim("demo-db-data".into())));
}

#[test]
fn a_smaller_database_claim_is_refused() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let seen = Observed {
        pods: infra(&stack, &d),
        claims: vec![claim_named("demo-db-data", "2Gi")],
        ..Observed::default()
    };
    let p = plan(&stack, &d, &seen, &now());
    assert!(p.steps.is_empty());
    assert_eq!(condition(&p, CONDITION_STALLED).reason, "DataLossRefused");
    stack.spec.database.as_mut().unwrap().storage.size =
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into());
    let d2 = desired(&stack, "pw").unwrap();
    assert_eq!(
        condition(&plan(&stack, &d2, &seen, &now()), CONDITION_STALLED).status,
        "False"
    );
}

#[test]
fn the_database_claim_records_the_user_once_the_database_was_ready() {
    let mut stack = sample();
    let d = desired(&stack, "pw").unwrap();
    let applied_claim = |p: &Plan| {
        p.steps
            .iter()
            .find_map(|s| match s {
                Step::Apply(Object::Claim(c)) => Some(c.as_ref().clone()),
                _ => None,
            })
            .unwrap()
    };
    let first = plan(&stack, &d, &Observed::default(), &now());
    assert_eq!(
        applied_claim(&first).metadata.annotations,
        None,
        "not initialised yet"
    );
    let ready = plan(&stack, &d, &observed(infra(&stack, &d)), &now());
    let claim = applied_claim(&ready);
    let user = &stack.spec.database.as_ref().unwrap().user;
    assert_eq!(
        &claim.metadata.annotations.as_ref().unwrap()[crate::safety::ANNOTATION_DATABASE_USER],
        user
    );

    stack.spec.database.as_mut().unwrap().user = "renamed".into();
    let d2 = desired(&stack, "pw").unwrap();
    let seen = Observed {
        pods: infra(&stack, &d),
        claims: vec![claim],
        ..Observed::default()
    };
    let p = plan(&stack, &d2, &seen, &now());
    assert!(
        p.steps.is_empty(),
        "the database is not replaced with a user it does not know"
    );
    let stalled = condition(&p, CONDITION_STALLED);
    assert!(
        stalled.message.starts_with("spec.database.user changed"),
        "{}",
        stalled.message
    );
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
            ..Observed::default()
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
            ..Observed::default()
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
            ..Observed::default()
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
            ..Observed::default()
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
            ..Observed::default()
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
    let p = plan(
        &stack,
        &d2,
        &Observed {
            pods,
            blocking,
            ..Observed::default()
        },
        &now(),
    );
    assert!(deleted_pods(&p).is_empty(), "the running database stays");
    assert_eq!(condition(&p, CONDITION_STALLED).status, "True");
}
