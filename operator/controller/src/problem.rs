//! What a Pod reports that retrying will not fix: an image that cannot be pulled, configuration it refers to
//! that does not exist, a host port someone else holds. Read from the kubelet's waiting reasons and the
//! scheduler's PodScheduled condition; the plan turns them into a Stalled condition.

use k8s_openapi::api::core::v1::Pod;

/// The waiting reasons of a container whose image cannot be had.
const PULL_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
/// The kubelet's waiting reason when a Secret or ConfigMap the container needs is missing.
const CONFIG_REASON: &str = "CreateContainerConfigError";
/// berth's agent: a hostPort of the container is held by another process on the node.
const PORT_REASON: &str = "FailedPortBinding";
/// The scheduler's words (upstream's NodePorts filter) for a hostPort that no node has free.
const NO_FREE_PORTS: &str = "didn't have free ports";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The image cannot be pulled; `reason` is the kubelet's (ErrImagePull...).
    Pull { reason: String },
    /// Something the container refers to (a Secret, a ConfigMap, a key) is missing.
    Config,
    /// A hostPort is taken.
    Port,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: Kind,
    /// The image of the container concerned (empty for a scheduling problem).
    pub image: String,
    /// The kubelet's or the scheduler's message.
    pub detail: String,
}

impl Problem {
    /// The Stalled condition's reason.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            Kind::Pull { .. } => "ImagePullFailed",
            Kind::Config => "ConfigError",
            Kind::Port => "PortConflict",
        }
    }

    /// The message for a Pod of the Stack that reports the problem.
    pub fn message(&self, pod: &str) -> String {
        match &self.kind {
            Kind::Pull { reason } => format!(
                "Pod {pod} cannot pull image {:?} ({reason}: {}); fix the image reference in the Stack",
                self.image, self.detail
            ),
            Kind::Config => format!(
                "Pod {pod} cannot start: {}; create what it refers to or fix the Stack",
                self.detail
            ),
            Kind::Port => format!(
                "Pod {pod} cannot get its hostPort: {}; choose a free hostPort in spec.app.ports or stop what \
                 holds it",
                self.detail
            ),
        }
    }
}

/// The first problem `pod` reports that retrying will not fix.
pub fn of(pod: &Pod) -> Option<Problem> {
    let status = pod.status.as_ref()?;
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message
                .as_deref()
                .is_some_and(|m| m.contains(NO_FREE_PORTS))
    });
    if let Some(condition) = unschedulable {
        return Some(Problem {
            kind: Kind::Port,
            image: String::new(),
            detail: condition.message.clone().unwrap_or_default(),
        });
    }
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
        let kind = if PULL_REASONS.contains(&reason) {
            Kind::Pull {
                reason: reason.to_owned(),
            }
        } else if reason == CONFIG_REASON {
            Kind::Config
        } else if reason == PORT_REASON {
            Kind::Port
        } else {
            continue;
        };
        return Some(Problem {
            kind,
            image: container.image.clone(),
            detail: waiting.message.clone().unwrap_or_default(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };

    use super::*;

    fn waiting(reason: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "app".into(),
                    image: "shop:2".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: Some("details".into()),
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn unschedulable(message: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(message.into()),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn pull_config_and_port_reasons_are_problems_and_others_are_not() {
        assert_eq!(
            of(&waiting("ImagePullBackOff")).unwrap().reason(),
            "ImagePullFailed"
        );
        assert_eq!(
            of(&waiting("CreateContainerConfigError")).unwrap().reason(),
            "ConfigError"
        );
        let port = of(&waiting("FailedPortBinding")).unwrap();
        assert_eq!(port.reason(), "PortConflict");
        assert!(port.message("shop-app-1").contains("details"));
        assert_eq!(of(&waiting("ContainerCreating")), None);
        assert_eq!(of(&waiting("CrashLoopBackOff")), None);
    }

    #[test]
    fn only_a_host_port_clash_makes_an_unschedulable_pod_a_problem() {
        let clash = unschedulable(
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
        );
        assert_eq!(of(&clash).unwrap().kind, Kind::Port);
        // No Ready node yet is something time fixes.
        assert_eq!(of(&unschedulable("0/0 nodes are available.")), None);
    }
}
