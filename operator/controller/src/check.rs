//! Check Pods: before a running Pod that must go first (the database, Redis, an app whose hostPorts the new
//! Pods need) is replaced, a short-lived Pod tries what the replacement needs and the old Pod could not prove:
//! the new image (pulled with the same pull secrets, on the same node when the old Pod has one), the Secrets
//! and ConfigMaps its environment names, and host ports the old Pods do not hold. It runs a trivial command
//! and only its start matters: a pull, configuration or port error keeps the old Pod and stalls the Stack.
//! The check Pod's name carries the hash of what it checks, so reconciling again finds the same one.

use std::collections::BTreeMap;

use berth_api::constants::{COMPONENT_CHECK, LABEL_CHECK_FOR, LABEL_COMPONENT};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::problem::{self, Problem};

/// The check container's command: anything that exits at once. An image without a shell fails to run it,
/// which still proves the image was pulled.
const COMMAND: [&str; 3] = ["/bin/sh", "-c", "exit 0"];
/// Waiting reasons that come after the image was pulled: the runtime could not run the trivial command.
const RAN_INTO_RUNTIME: [&str; 2] = ["RunContainerError", "CreateContainerError"];

/// What the check of a replacement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pending,
    Passed,
    Failed(Problem),
}

/// The part of `pod`'s first container a replacement depends on and a check can try, plus `host_ports`.
fn essentials(pod: &Pod, host_ports: &[ContainerPort]) -> PodSpec {
    let spec = pod.spec.clone().unwrap_or_default();
    let container = spec.containers.first().cloned().unwrap_or_default();
    PodSpec {
        containers: vec![Container {
            name: "check".into(),
            image: container.image,
            image_pull_policy: container.image_pull_policy,
            command: Some(COMMAND.iter().map(|s| (*s).to_owned()).collect()),
            env: container.env,
            env_from: container.env_from,
            ports: (!host_ports.is_empty()).then(|| host_ports.to_vec()),
            ..Container::default()
        }],
        image_pull_secrets: spec.image_pull_secrets,
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(0),
        ..PodSpec::default()
    }
}

/// Would replacing `existing` with `desired` (which also needs `host_ports`) take something a check can try
/// first: another image, environment or pull secrets, or host ports?
pub fn needed(existing: &Pod, desired: &Pod, host_ports: &[ContainerPort]) -> bool {
    essentials(existing, &[]) != essentials(desired, host_ports)
}

fn hash(spec: &PodSpec) -> String {
    // Serializing a k8s-openapi struct cannot fail: it has no maps with non-string keys.
    let bytes = serde_json::to_vec(spec).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The check Pod for replacing a Pod of `component` with `desired`: named `<base>-check-<hash>`, labelled
/// and owned as `desired` is, on `node` when given (where the replacement will most likely run, so the image
/// is there when it starts).
pub fn pod(
    desired: &Pod,
    component: &str,
    base: &str,
    host_ports: &[ContainerPort],
    node: Option<String>,
) -> Pod {
    let mut spec = essentials(desired, host_ports);
    let name = format!("{base}-check-{}", hash(&spec));
    spec.node_name = node;
    let mut labels: BTreeMap<String, String> = desired.metadata.labels.clone().unwrap_or_default();
    labels.retain(|key, _| key != crate::mapping::LABEL_TEMPLATE_HASH);
    labels.insert(LABEL_COMPONENT.to_owned(), COMPONENT_CHECK.to_owned());
    labels.insert(LABEL_CHECK_FOR.to_owned(), component.to_owned());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: desired.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: desired.metadata.owner_references.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Reads a check Pod's status: a problem fails it; a container that started or ended (whatever its exit
/// code) or a runtime error after the pull passes it.
pub fn verdict(pod: &Pod) -> Verdict {
    if let Some(problem) = problem::of(pod) {
        return Verdict::Failed(problem);
    }
    let Some(status) = pod.status.as_ref() else {
        return Verdict::Pending;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Verdict::Passed;
    }
    let got_going = status.container_statuses.iter().flatten().any(|c| {
        let state = c.state.clone().unwrap_or_default();
        state.running.is_some()
            || state.terminated.is_some()
            || state
                .waiting
                .and_then(|w| w.reason)
                .is_some_and(|r| RAN_INTO_RUNTIME.contains(&r.as_str()))
    });
    if got_going {
        Verdict::Passed
    } else {
        Verdict::Pending
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        LocalObjectReference, PodStatus, Volume,
    };

    use super::*;

    fn desired(image: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("shop-db".into()),
                namespace: Some("default".into()),
                labels: Some(crate::mapping::labels("shop", "database")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "postgres".into(),
                    image: Some(image.into()),
                    ports: Some(vec![ContainerPort {
                        container_port: 5432,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                volumes: Some(vec![Volume {
                    name: "data".into(),
                    ..Volume::default()
                }]),
                image_pull_secrets: Some(vec![LocalObjectReference {
                    name: "registry".into(),
                }]),
                restart_policy: Some("Always".into()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn reporting(mut pod: Pod, state: ContainerState) -> Pod {
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "check".into(),
                image: "postgres:16".into(),
                state: Some(state),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn a_check_pod_carries_the_image_and_pull_secrets_but_no_volumes_or_ports() {
        let check = pod(
            &desired("postgres:16"),
            "database",
            "shop-db",
            &[],
            Some("n1".into()),
        );
        let spec = check.spec.as_ref().unwrap();
        assert!(
            check
                .metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("shop-db-check-")
        );
        let labels = check.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_COMPONENT], COMPONENT_CHECK);
        assert_eq!(labels[LABEL_CHECK_FOR], "database");
        assert_eq!(spec.containers[0].image.as_deref(), Some("postgres:16"));
        assert_eq!(spec.containers[0].ports, None);
        assert_eq!(spec.volumes, None);
        assert_eq!(
            spec.image_pull_secrets.as_ref().unwrap()[0].name,
            "registry"
        );
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn the_name_follows_the_image_and_not_the_node() {
        let a = pod(&desired("postgres:16"), "database", "shop-db", &[], None);
        let b = pod(
            &desired("postgres:16"),
            "database",
            "shop-db",
            &[],
            Some("n2".into()),
        );
        let c = pod(&desired("postgres:17"), "database", "shop-db", &[], None);
        assert_eq!(a.metadata.name, b.metadata.name);
        assert_ne!(a.metadata.name, c.metadata.name);
    }

    #[test]
    fn only_a_change_a_check_can_try_needs_one() {
        let old = desired("postgres:15");
        assert!(needed(&old, &desired("postgres:16"), &[]));
        let mut resources_only = desired("postgres:15");
        resources_only.spec.as_mut().unwrap().containers[0].resources = Some(Default::default());
        assert!(!needed(&old, &resources_only, &[]));
        let port = ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..ContainerPort::default()
        };
        assert!(needed(&old, &old, &[port]));
    }

    #[test]
    fn a_pull_error_fails_the_check_and_any_start_or_end_passes_it() {
        let check = pod(&desired("postgres:16"), "database", "shop-db", &[], None);
        assert_eq!(verdict(&check), Verdict::Pending);
        let waiting = |reason: &str| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some("manifest unknown".into()),
            }),
            ..ContainerState::default()
        };
        assert!(matches!(
            verdict(&reporting(check.clone(), waiting("ErrImagePull"))),
            Verdict::Failed(p) if p.reason() == "ImagePullFailed"
        ));
        assert_eq!(
            verdict(&reporting(check.clone(), waiting("ContainerCreating"))),
            Verdict::Pending
        );
        assert_eq!(
            verdict(&reporting(check.clone(), waiting("RunContainerError"))),
            Verdict::Passed
        );
        let ended = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 127,
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        assert_eq!(verdict(&reporting(check, ended)), Verdict::Passed);
    }
}
