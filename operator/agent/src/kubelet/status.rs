//! A Pod's status from what its worker knows of its containers: the phase by upstream's `getPhase` rules,
//! the five conditions (transition times kept while a condition holds), and the container states with the
//! kubelet's reasons. Pure functions, so the rules are tested without a node.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodCondition,
    PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Everything the status is made of.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    pub restart_policy: &'a str,
    pub init: &'a [ContainerStatus],
    pub containers: &'a [ContainerStatus],
    /// The Pod's network namespace exists.
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<Time>,
    /// The status as it is now in the API (conditions others wrote, transition times).
    pub previous: Option<&'a PodStatus>,
}

pub fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

pub fn terminated(state: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    state.state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn succeeded(status: &ContainerStatus) -> bool {
    terminated(status).is_some_and(|t| t.exit_code == 0)
}

/// The termination reason the kubelet reports: OOMKilled, Completed (exit 0) or Error.
pub fn exit_reason(code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Upstream's `getPhase`.
pub fn phase(
    restart_policy: &str,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
) -> &'static str {
    let init_pending = init.iter().any(|s| !succeeded(s));
    if init_pending {
        let failed_for_good = restart_policy == "Never"
            && init
                .iter()
                .any(|s| terminated(s).is_some_and(|t| t.exit_code != 0));
        return if failed_for_good { "Failed" } else { "Pending" };
    }
    let (mut waiting, mut running_n, mut stopped, mut succeeded_n) = (0, 0, 0, 0);
    for status in containers {
        let state = status.state.as_ref();
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded_n += 1;
            }
        } else if state.is_some_and(|s| s.running.is_some()) {
            running_n += 1;
        } else if status
            .last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some())
        {
            // Waiting to be restarted after a run.
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running_n > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded_n {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// The merge patch a status write sends: the status, and the Pod's uid as a precondition (as upstream's
/// `preparePatchBytesForPodStatus` puts it there), so that the worker of a deleted Pod can never write onto a
/// new Pod of the same name: the API server refuses a patch that would change the uid.
pub fn patch(uid: &str, status: &PodStatus) -> serde_json::Value {
    serde_json::json!({"metadata": {"uid": uid}, "status": status})
}

/// Whether a status write failed because the Pod it was for is gone or was replaced by a new one of the same
/// name (404, or the uid precondition refused: 422 `metadata.uid` as upstream, or a 409 Conflict).
pub fn pod_replaced(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(e) => {
            e.code == 404 || e.code == 409 || (e.code == 422 && e.message.contains("metadata.uid"))
        }
        _ => false,
    }
}

/// The whole status.
pub fn pod_status(inputs: &Inputs<'_>, now: Timestamp) -> PodStatus {
    let phase = phase(inputs.restart_policy, inputs.init, inputs.containers);
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let names = |items: &[ContainerStatus], keep: &dyn Fn(&ContainerStatus) -> bool| {
        items
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    let previous: &[PodCondition] = inputs
        .previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: Option<String>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: if ok { None } else { reason },
            message: if ok { None } else { message },
            last_transition_time: Some(since),
            ..PodCondition::default()
        }
    };
    let list = |names: Vec<String>| format!("[{}]", names.join(" "));

    let not_initialized = names(inputs.init, &|s| !succeeded(s));
    let initialized = not_initialized.is_empty();
    let unready = names(inputs.containers, &|s| !s.ready);
    let ready = unready.is_empty() && initialized && !terminal;
    let (unready_reason, unready_message) = if terminal {
        ("PodCompleted".to_owned(), None)
    } else if !initialized {
        (
            "ContainersNotInitialized".to_owned(),
            Some(format!(
                "containers with incomplete status: {}",
                list(not_initialized.clone())
            )),
        )
    } else {
        (
            "ContainersNotReady".to_owned(),
            Some(format!("containers with unready status: {}", list(unready))),
        )
    };

    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            inputs.sandbox_ready,
            None,
            None,
        ),
        condition(
            "Initialized",
            initialized,
            Some(if terminal && !initialized {
                "PodCompleted".into()
            } else {
                "ContainersNotInitialized".into()
            }),
            Some(format!(
                "containers with incomplete status: {}",
                list(not_initialized)
            )),
        ),
        condition(
            "Ready",
            ready,
            Some(unready_reason.clone()),
            unready_message.clone(),
        ),
        condition(
            "ContainersReady",
            ready,
            Some(unready_reason),
            unready_message,
        ),
    ];
    // PodScheduled is the scheduler's; keep what it wrote.
    match previous.iter().find(|c| c.type_ == "PodScheduled") {
        Some(scheduled) => conditions.push(scheduled.clone()),
        None => conditions.push(condition("PodScheduled", true, None, None)),
    }

    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: Some(inputs.host_ip.clone()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: inputs.host_ip.clone(),
        }]),
        pod_ip: inputs.pod_ip.clone(),
        pod_ips: inputs
            .pod_ip
            .as_ref()
            .map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: inputs.start_time.clone(),
        init_container_statuses: (!inputs.init.is_empty()).then(|| inputs.init.to_vec()),
        container_statuses: Some(inputs.containers.to_vec()),
        qos_class: inputs.previous.and_then(|p| p.qos_class.clone()),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerStateRunning;

    fn status(name: &str, state: ContainerState, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            ready,
            ..ContainerStatus::default()
        }
    }

    fn run() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }
    }

    fn exit(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(exit_reason(code, false).into()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }
    }

    fn crashlooping(name: &str) -> ContainerStatus {
        ContainerStatus {
            last_state: Some(exit(1)),
            ..status(name, waiting("CrashLoopBackOff", None), false)
        }
    }

    #[test]
    fn phases_follow_upstream() {
        let created = status("a", waiting("ContainerCreating", None), false);
        assert_eq!(
            phase("Always", &[], std::slice::from_ref(&created)),
            "Pending"
        );
        assert_eq!(phase("Always", &[], &[status("a", run(), true)]), "Running");
        // One waiting for its first start keeps the Pod Pending even while another runs.
        assert_eq!(
            phase("Always", &[], &[status("a", run(), true), created.clone()]),
            "Pending"
        );
        assert_eq!(phase("Always", &[], &[crashlooping("a")]), "Running");
        assert_eq!(
            phase("Never", &[], &[status("a", exit(0), false)]),
            "Succeeded"
        );
        assert_eq!(
            phase("OnFailure", &[], &[status("a", exit(0), false)]),
            "Succeeded"
        );
        assert_eq!(
            phase(
                "Never",
                &[],
                &[status("a", exit(0), false), status("b", exit(2), false)]
            ),
            "Failed"
        );
        assert_eq!(
            phase("Always", &[], &[status("a", exit(0), false)]),
            "Running"
        );
        // Init containers gate the Pod; a failed one fails it only with Never.
        let init_failed = [status("i", exit(1), false)];
        assert_eq!(
            phase("Never", &init_failed, std::slice::from_ref(&created)),
            "Failed"
        );
        assert_eq!(
            phase("OnFailure", &init_failed, std::slice::from_ref(&created)),
            "Pending"
        );
        assert_eq!(
            phase(
                "Never",
                &[status("i", exit(0), false)],
                &[status("a", run(), true)]
            ),
            "Running"
        );
    }

    #[test]
    fn conditions_name_what_is_missing_and_keep_transition_times() {
        let earlier: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let init = [status("setup", run(), false)];
        let containers = [status("web", waiting("PodInitializing", None), false)];
        let inputs = Inputs {
            restart_policy: "Always",
            init: &init,
            containers: &containers,
            sandbox_ready: true,
            host_ip: "127.0.0.1".into(),
            ..Inputs::default()
        };
        let now = Timestamp::now();
        let got = pod_status(&inputs, now);
        let find = |s: &PodStatus, t: &str| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .cloned()
                .unwrap()
        };
        assert_eq!(got.phase.as_deref(), Some("Pending"));
        let initialized = find(&got, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [setup]")
        );
        assert_eq!(
            find(&got, "Ready").reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(find(&got, "PodReadyToStartContainers").status, "True");
        assert_eq!(find(&got, "PodScheduled").status, "True");
        assert!(
            got.pod_ip.is_none(),
            "no address until the network gives one"
        );

        let init = [status("setup", exit(0), false)];
        let containers = [status("web", run(), true)];
        let mut previous = got.clone();
        for c in previous.conditions.as_mut().unwrap() {
            c.last_transition_time = Some(Time(earlier));
        }
        let inputs = Inputs {
            init: &init,
            containers: &containers,
            previous: Some(&previous),
            pod_ip: Some("10.88.0.2".into()),
            ..inputs
        };
        let got = pod_status(&inputs, now);
        assert_eq!(got.phase.as_deref(), Some("Running"));
        assert_eq!(find(&got, "Ready").status, "True");
        assert_eq!(find(&got, "Ready").last_transition_time, Some(Time(now)));
        assert_eq!(
            find(&got, "PodReadyToStartContainers").last_transition_time,
            Some(Time(earlier)),
            "an unchanged condition keeps its time"
        );
        assert_eq!(got.pod_ips.unwrap()[0].ip, "10.88.0.2");
    }

    #[test]
    fn a_finished_pod_is_not_ready_because_it_completed() {
        let containers = [status("job", exit(0), false)];
        let inputs = Inputs {
            restart_policy: "Never",
            containers: &containers,
            sandbox_ready: true,
            ..Inputs::default()
        };
        let got = pod_status(&inputs, Timestamp::now());
        assert_eq!(got.phase.as_deref(), Some("Succeeded"));
        let ready = got
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
    }

    #[test]
    fn the_status_patch_carries_the_uid() {
        let status = PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        };
        let patch = patch("u-1", &status);
        assert_eq!(patch["metadata"]["uid"], "u-1");
        assert_eq!(patch["status"]["phase"], "Running");
    }

    #[test]
    fn exit_reasons_are_the_kubelets() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(1, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }
}
