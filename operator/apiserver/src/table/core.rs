//! Printers for the core (`v1`) kinds and for events.k8s.io Events, with the columns and cell wording of
//! upstream's printers (pkg/printers/internalversion), which is what `kubectl get` users know.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::cells::{
    age, condition_true, containers, int, items, labels, len, name, or_none, since, text, timestamp,
};
use super::{AGE, Column, NAME, Printer};

pub fn printer(group: &str, resource: &str) -> Option<&'static Printer> {
    Some(match (group, resource) {
        ("", "pods") => &POD,
        ("", "services") => &SERVICE,
        ("", "nodes") => &NODE,
        ("", "namespaces") => &NAMESPACE,
        ("", "configmaps") => &CONFIG_MAP,
        ("", "secrets") => &SECRET,
        ("", "events") => &CORE_EVENT,
        ("events.k8s.io", "events") => &EVENTS_EVENT,
        ("", "persistentvolumeclaims") => &PVC,
        ("", "persistentvolumes") => &PV,
        ("", "endpoints") => &ENDPOINTS,
        ("", "serviceaccounts") => &SERVICE_ACCOUNT,
        ("", "podtemplates") => &POD_TEMPLATE,
        ("", "replicationcontrollers") => &REPLICATION_CONTROLLER,
        ("", "resourcequotas") => &RESOURCE_QUOTA,
        _ => return None,
    })
}

const fn col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "string", description)
}

const fn int_col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "integer", description)
}

// ---- Pods ----

static POD: Printer = Printer {
    conditions: pod_conditions,
    ..Printer::new(
        &[
            NAME,
            col(
                "Ready",
                "Ready containers out of all containers that count towards readiness.",
            ),
            col(
                "Status",
                "A summary of the pod's state: its phase, or what holds it back.",
            ),
            col(
                "Restarts",
                "Container restarts, and how long ago the last one was.",
            ),
            AGE,
            col("IP", "The pod's first IP address.").wide(),
            col("Node", "The node the pod is bound to.").wide(),
            col(
                "Nominated Node",
                "The node a preempting pod is expected to run on.",
            )
            .wide(),
            col(
                "Readiness Gates",
                "Readiness gates whose condition is True, out of all gates.",
            )
            .wide(),
        ],
        pod,
    )
};

/// Whether an init container keeps running next to the app containers (a sidecar).
fn is_sidecar(spec: &Value, container: &str) -> bool {
    items(&spec["initContainers"])
        .iter()
        .any(|c| c["name"].as_str() == Some(container) && c["restartPolicy"] == "Always")
}

fn terminated_at(status: &Value) -> Option<Timestamp> {
    timestamp(&status["lastState"]["terminated"]["finishedAt"])
}

/// A terminated container's reason, or its signal or exit code when it gave none.
fn terminated_reason(terminated: &Value, prefix: &str) -> String {
    match text(&terminated["reason"]) {
        "" if int(&terminated["signal"]) != 0 => {
            format!("{prefix}Signal:{}", int(&terminated["signal"]))
        }
        "" => format!("{prefix}ExitCode:{}", int(&terminated["exitCode"])),
        reason => format!("{prefix}{reason}"),
    }
}

/// The READY, STATUS and RESTARTS logic of upstream's pod printer: init containers first (`Init:1/2`,
/// `Init:CrashLoopBackOff`), then the last app container that is waiting or terminated (`ContainerCreating`,
/// `CrashLoopBackOff`, `Completed`, `ExitCode:1`), and `Terminating` once deletion started.
fn pod(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    if items(&status["conditions"])
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".to_owned();
    }
    let init_containers = items(&spec["initContainers"]);
    let total = len(&spec["containers"])
        + i64::try_from(
            init_containers
                .iter()
                .filter(|c| c["restartPolicy"] == "Always")
                .count(),
        )
        .unwrap_or(0);
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (i, container) in items(&status["initContainerStatuses"]).iter().enumerate() {
        let sidecar = is_sidecar(spec, text(&container["name"]));
        restarts += int(&container["restartCount"]);
        last_restart = last_restart.max(terminated_at(container));
        if sidecar {
            sidecar_restarts += int(&container["restartCount"]);
            last_sidecar_restart = last_sidecar_restart.max(terminated_at(container));
        }
        let state = &container["state"];
        let terminated = &state["terminated"];
        let waiting_reason = text(&state["waiting"]["reason"]);
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && container["started"] == true {
            if container["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            terminated_reason(terminated, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(&status["conditions"], "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut running = false;
        for container in items(&status["containerStatuses"]).iter().rev() {
            restarts += int(&container["restartCount"]);
            last_restart = last_restart.max(terminated_at(container));
            let state = &container["state"];
            let waiting_reason = text(&state["waiting"]["reason"]);
            let terminated = &state["terminated"];
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if terminated.is_object() {
                reason = terminated_reason(terminated, "");
            } else if container["ready"] == true && state["running"].is_object() {
                running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is Running (or NotReady).
        if reason == "Completed" && running {
            reason = if condition_true(&status["conditions"], "Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    let deleting = pod["metadata"]["deletionTimestamp"].is_string();
    if deleting && text(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_owned();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".to_owned();
    }

    let restarts_cell = match last_restart {
        Some(at) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            super::cells::human_duration(now.duration_since(at))
        ),
        _ => restarts.to_string(),
    };

    // The kubelet writes both podIP and podIPs; podIP covers writers that only set the former.
    let ip = items(&status["podIPs"])
        .first()
        .map(|p| text(&p["ip"]))
        .unwrap_or_else(|| text(&status["podIP"]));
    let gates = items(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                items(&status["conditions"])
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| c["status"] == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        json!(name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(or_none(ip)),
        json!(or_none(text(&spec["nodeName"]))),
        json!(or_none(text(&status["nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

/// Finished pods carry a `Completed` row condition, as upstream marks them.
fn pod_conditions(pod: &Value) -> Vec<Value> {
    let (reason, message) = match text(&pod["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

// ---- Services ----

static SERVICE: Printer = Printer::new(
    &[
        NAME,
        col("Type", "How the service is exposed."),
        col("Cluster-IP", "The service's cluster IP address."),
        col(
            "External-IP",
            "External IPs or load-balancer ingress of the service.",
        ),
        col("Port(s)", "The service's ports."),
        AGE,
        col("Selector", "The labels of the pods the service routes to.").wide(),
    ],
    service,
);

fn service(svc: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &svc["spec"];
    let kind = match text(&spec["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = items(&spec["clusterIPs"])
        .first()
        .map(text)
        .unwrap_or_else(|| text(&spec["clusterIP"]));
    let external_ips: Vec<&str> = items(&spec["externalIPs"]).iter().map(text).collect();
    let external = match kind {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut ingress: Vec<&str> = Vec::new();
            for i in items(&svc["status"]["loadBalancer"]["ingress"]) {
                let address = [text(&i["ip"]), text(&i["hostname"])]
                    .into_iter()
                    .find(|a| !a.is_empty());
                if let Some(a) = address
                    && !ingress.contains(&a)
                {
                    ingress.push(a);
                }
            }
            ingress.extend(external_ips);
            if ingress.is_empty() {
                "<pending>".to_owned()
            } else {
                ingress.join(",")
            }
        }
        "ExternalName" => text(&spec["externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    };
    let ports: Vec<String> = items(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = match text(&p["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int(&p["nodePort"]) {
                0 => format!("{}/{protocol}", int(&p["port"])),
                node_port => format!("{}:{node_port}/{protocol}", int(&p["port"])),
            }
        })
        .collect();
    vec![
        json!(name(svc)),
        json!(kind),
        json!(or_none(cluster_ip)),
        json!(external),
        json!(or_none(&ports.join(","))),
        json!(age(svc, now)),
        json!(labels(&spec["selector"])),
    ]
}

// ---- Nodes ----

static NODE: Printer = Printer::new(
    &[
        NAME,
        col("Status", "Whether the node is Ready, and schedulable."),
        col("Roles", "The node's roles, from its node-role labels."),
        AGE,
        col("Version", "The kubelet version the node reports."),
        col("Internal-IP", "The node's internal IP address.").wide(),
        col("External-IP", "The node's external IP address.").wide(),
        col("OS-Image", "The operating system the node reports.").wide(),
        col("Kernel-Version", "The kernel version the node reports.").wide(),
        col(
            "Container-Runtime",
            "The container runtime the node reports.",
        )
        .wide(),
    ],
    node,
);

fn node(node: &Value, now: Timestamp) -> Vec<Value> {
    let status = &node["status"];
    let mut state = match items(&status["conditions"])
        .iter()
        .find(|c| c["type"] == "Ready")
    {
        Some(c) if c["status"] == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if node["spec"]["unschedulable"] == true {
        state.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = Vec::new();
    for (key, value) in node["metadata"]["labels"].as_object().into_iter().flatten() {
        let role = match key.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => role,
            None if key == "kubernetes.io/role" => text(value),
            None => "",
        };
        if !role.is_empty() && !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort_unstable();
    let address = |kind: &str| {
        items(&status["addresses"])
            .iter()
            .find(|a| a["type"].as_str() == Some(kind))
            .map(|a| text(&a["address"]).to_owned())
            .unwrap_or_else(|| "<none>".to_owned())
    };
    let info = &status["nodeInfo"];
    let unknown = |v: &Value| match text(v) {
        "" => "<unknown>".to_owned(),
        s => s.to_owned(),
    };
    vec![
        json!(name(node)),
        json!(state.join(",")),
        json!(or_none(&roles.join(","))),
        json!(age(node, now)),
        json!(text(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown(&info["osImage"])),
        json!(unknown(&info["kernelVersion"])),
        json!(unknown(&info["containerRuntimeVersion"])),
    ]
}

// ---- Namespaces, ConfigMaps, Secrets, ServiceAccounts ----

static NAMESPACE: Printer = Printer::new(
    &[
        NAME,
        col("Status", "Active, or Terminating while being deleted."),
        AGE,
    ],
    |ns, now| {
        vec![
            json!(name(ns)),
            json!(text(&ns["status"]["phase"])),
            json!(age(ns, now)),
        ]
    },
);

static CONFIG_MAP: Printer = Printer::new(
    &[
        NAME,
        col("Data", "How many keys the config map holds."),
        AGE,
    ],
    |cm, now| {
        vec![
            json!(name(cm)),
            json!(len(&cm["data"]) + len(&cm["binaryData"])),
            json!(age(cm, now)),
        ]
    },
);

static SECRET: Printer = Printer::new(
    &[
        NAME,
        col("Type", "The secret's type."),
        col("Data", "How many keys the secret holds."),
        AGE,
    ],
    |secret, now| {
        vec![
            json!(name(secret)),
            // Upstream's defaulting makes an untyped secret Opaque.
            json!(match text(&secret["type"]) {
                "" => "Opaque",
                t => t,
            }),
            json!(len(&secret["data"])),
            json!(age(secret, now)),
        ]
    },
);

static SERVICE_ACCOUNT: Printer = Printer::new(
    &[
        NAME,
        col("Secrets", "How many secrets the account lists."),
        AGE,
    ],
    |sa, now| {
        vec![
            json!(name(sa)),
            json!(len(&sa["secrets"])),
            json!(age(sa, now)),
        ]
    },
);

// ---- Events (core/v1 and events.k8s.io/v1, printed alike) ----

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "Time since the event was last seen."),
    col("Type", "Normal or Warning."),
    col("Reason", "Why the event happened, in one word."),
    col("Object", "The object the event is about."),
    col("Subobject", "The part of the object the event is about.").wide(),
    col("Source", "The component that reported the event.").wide(),
    col("Message", "What happened, for people."),
    col("First Seen", "Time since the event was first seen.").wide(),
    col("Count", "How many times the event happened.").wide(),
    Column {
        format: "name",
        ..col("Name", "The event object's name.").wide()
    },
];

static CORE_EVENT: Printer = Printer::new(EVENT_COLUMNS, |e, now| {
    event(
        &EventView {
            involved: &e["involvedObject"],
            message: &e["message"],
            source_component: &e["source"]["component"],
            source_host: &e["source"]["host"],
            first: &e["firstTimestamp"],
            last: &e["lastTimestamp"],
            count: &e["count"],
            reporting_controller: &e["reportingComponent"],
        },
        e,
        now,
    )
});

static EVENTS_EVENT: Printer = Printer::new(EVENT_COLUMNS, |e, now| {
    event(
        &EventView {
            involved: &e["regarding"],
            message: &e["note"],
            source_component: &e["deprecatedSource"]["component"],
            source_host: &e["deprecatedSource"]["host"],
            first: &e["deprecatedFirstTimestamp"],
            last: &e["deprecatedLastTimestamp"],
            count: &e["deprecatedCount"],
            reporting_controller: &e["reportingController"],
        },
        e,
        now,
    )
});

/// The fields of an Event that the two API groups name differently.
struct EventView<'a> {
    involved: &'a Value,
    message: &'a Value,
    source_component: &'a Value,
    source_host: &'a Value,
    first: &'a Value,
    last: &'a Value,
    count: &'a Value,
    /// core/v1 serializes the reporting controller as `reportingComponent`.
    reporting_controller: &'a Value,
}

fn event(view: &EventView, e: &Value, now: Timestamp) -> Vec<Value> {
    let first = if timestamp(view.first).is_some() {
        since(view.first, now)
    } else {
        since(&e["eventTime"], now)
    };
    let mut last = if timestamp(view.last).is_some() {
        since(view.last, now)
    } else {
        first.clone()
    };
    let mut count = int(view.count);
    if e["series"].is_object() {
        last = since(&e["series"]["lastObservedTime"], now);
        count = int(&e["series"]["count"]);
    } else if count == 0 {
        // Singleton events of the events.k8s.io API carry no count.
        count = 1;
    }
    let kind = text(&view.involved["kind"]).to_lowercase();
    let target = match text(&view.involved["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = [text(view.source_component), text(view.reporting_controller)]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let host = [text(view.source_host), text(&e["reportingInstance"])]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let source = if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(text(&e["type"])),
        json!(text(&e["reason"])),
        json!(target),
        json!(text(&view.involved["fieldPath"])),
        json!(source),
        json!(text(view.message).trim()),
        json!(first),
        json!(count),
        json!(name(e)),
    ]
}

// ---- Volumes ----

/// Access modes as their abbreviations, in upstream's order.
fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = items(modes).iter().map(text).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .into_iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class: the legacy beta annotation wins over the field, as upstream reads it.
fn storage_class(object: &Value) -> &str {
    object["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
        .as_str()
        .unwrap_or_else(|| text(&object["spec"]["storageClassName"]))
}

fn unset(value: &Value) -> String {
    match value.as_str() {
        Some(s) => s.to_owned(),
        None => "<unset>".to_owned(),
    }
}

/// The phase, or `Terminating` once deletion started.
fn volume_phase(object: &Value) -> &str {
    if object["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else {
        text(&object["status"]["phase"])
    }
}

static PVC: Printer = Printer::new(
    &[
        NAME,
        col("Status", "Pending, Bound or Lost."),
        col("Volume", "The volume bound to the claim."),
        col("Capacity", "The bound volume's capacity."),
        col("Access Modes", "How the bound volume may be mounted."),
        col("StorageClass", "The claim's storage class."),
        col(
            "VolumeAttributesClass",
            "The claim's volume attributes class.",
        ),
        AGE,
        col("VolumeMode", "Filesystem or Block.").wide(),
    ],
    pvc,
);

fn pvc(claim: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &claim["spec"];
    let volume = text(&spec["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            text(&claim["status"]["capacity"]["storage"]).to_owned(),
            access_modes(&claim["status"]["accessModes"]),
        )
    };
    vec![
        json!(name(claim)),
        json!(volume_phase(claim)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(claim)),
        json!(unset(&spec["volumeAttributesClassName"])),
        json!(age(claim, now)),
        json!(unset(&spec["volumeMode"])),
    ]
}

static PV: Printer = Printer::new(
    &[
        NAME,
        col("Capacity", "The volume's capacity."),
        col("Access Modes", "How the volume may be mounted."),
        col(
            "Reclaim Policy",
            "What happens to the volume when its claim goes.",
        ),
        col("Status", "Available, Bound, Released or Failed."),
        col("Claim", "The claim bound to the volume."),
        col("StorageClass", "The volume's storage class."),
        col(
            "VolumeAttributesClass",
            "The volume's volume attributes class.",
        ),
        col("Reason", "Why the volume is in its phase."),
        AGE,
        col("VolumeMode", "Filesystem or Block.").wide(),
    ],
    pv,
);

fn pv(volume: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &volume["spec"];
    let claim = if spec["claimRef"].is_object() {
        format!(
            "{}/{}",
            text(&spec["claimRef"]["namespace"]),
            text(&spec["claimRef"]["name"])
        )
    } else {
        String::new()
    };
    vec![
        json!(name(volume)),
        json!(text(&spec["capacity"]["storage"])),
        json!(access_modes(&spec["accessModes"])),
        json!(text(&spec["persistentVolumeReclaimPolicy"])),
        json!(volume_phase(volume)),
        json!(claim),
        json!(storage_class(volume)),
        json!(unset(&spec["volumeAttributesClassName"])),
        json!(text(&volume["status"]["reason"])),
        json!(age(volume, now)),
        json!(unset(&spec["volumeMode"])),
    ]
}

// ---- Endpoints, PodTemplates, ReplicationControllers, ResourceQuotas ----

static ENDPOINTS: Printer = Printer::new(
    &[NAME, col("Endpoints", "Up to three ready addresses."), AGE],
    |ep, now| vec![json!(name(ep)), json!(endpoints(ep)), json!(age(ep, now))],
);

/// Up to three `ip:port` pairs, then `+ N more...`.
fn endpoints(ep: &Value) -> String {
    const SHOWN: usize = 3;
    let subsets = items(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut all: Vec<String> = Vec::new();
    for subset in subsets {
        let addresses = items(&subset["addresses"]);
        let ports = items(&subset["ports"]);
        if ports.is_empty() {
            all.extend(addresses.iter().map(|a| text(&a["ip"]).to_owned()));
            continue;
        }
        for port in ports {
            for a in addresses {
                let ip = text(&a["ip"]);
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_owned()
                };
                all.push(format!("{host}:{}", int(&port["port"])));
            }
        }
    }
    let shown = all
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if all.len() > SHOWN {
        format!("{shown} + {} more...", all.len() - SHOWN)
    } else {
        shown
    }
}

static POD_TEMPLATE: Printer = Printer::new(
    &[
        NAME,
        col("Containers", "The template's container names."),
        col("Images", "The template's container images."),
        col("Pod Labels", "The labels of the template's pods."),
    ],
    |t, _| {
        let (names, images) = containers(&t["template"]["spec"]["containers"]);
        vec![
            json!(name(t)),
            json!(names),
            json!(images),
            json!(labels(&t["template"]["metadata"]["labels"])),
        ]
    },
);

static REPLICATION_CONTROLLER: Printer = Printer::new(
    &[
        NAME,
        int_col("Desired", "How many pods are wanted."),
        int_col("Current", "How many pods exist."),
        int_col("Ready", "How many pods are ready."),
        AGE,
        col("Containers", "The template's container names.").wide(),
        col("Images", "The template's container images.").wide(),
        col("Selector", "The labels of the pods it controls.").wide(),
    ],
    |rc, now| {
        let (names, images) = containers(&rc["spec"]["template"]["spec"]["containers"]);
        vec![
            json!(name(rc)),
            json!(rc["spec"]["replicas"].as_i64().unwrap_or(1)),
            json!(int(&rc["status"]["replicas"])),
            json!(int(&rc["status"]["readyReplicas"])),
            json!(age(rc, now)),
            json!(names),
            json!(images),
            json!(labels(&rc["spec"]["selector"])),
        ]
    },
);

static RESOURCE_QUOTA: Printer = Printer::new(
    &[
        NAME,
        AGE,
        col("Request", "Used and hard request quotas."),
        col("Limit", "Used and hard limit quotas."),
    ],
    |quota, now| {
        let mut hard: Vec<(&String, &Value)> = quota["status"]["hard"]
            .as_object()
            .into_iter()
            .flatten()
            .collect();
        hard.sort_by(|a, b| a.0.cmp(b.0));
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        for (resource, limit) in hard {
            let used = text(&quota["status"]["used"][resource]);
            let entry = format!("{resource}: {}/{}", or_zero(used), text(limit));
            if resource.starts_with("limits.") {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
        vec![
            json!(name(quota)),
            json!(age(quota, now)),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
        ]
    },
);

fn or_zero(quantity: &str) -> &str {
    if quantity.is_empty() { "0" } else { quantity }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn ago(seconds: i64) -> String {
        (now() - SignedDuration::from_secs(seconds)).to_string()
    }

    fn cells(printer: &Printer, object: Value) -> Vec<Value> {
        let cells = (printer.cells)(&object, now());
        assert_eq!(
            cells.len(),
            printer.columns.len(),
            "one cell per column: {cells:?}"
        );
        cells
    }

    fn running_pod() -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(300)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}
                ]
            }
        })
    }

    #[test]
    fn running_pod_shows_ready_count_status_age_and_wide_columns() {
        let c = cells(&POD, running_pod());
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("2/2"),
                json!("Running"),
                json!("0"),
                json!("5m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let names: Vec<&str> = POD.columns.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert!(POD.columns[5..].iter().all(|c| c.priority == 1));
    }

    #[test]
    fn pod_without_status_is_pending_with_nothing_ready() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        let c = cells(&POD, pod);
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "Pending");
        assert_eq!(c[4], "<unknown>");
        assert_eq!(c[5], "<none>");
        assert_eq!(c[6], "<none>");
    }

    #[test]
    fn waiting_container_reason_becomes_the_status() {
        let mut pod = running_pod();
        pod["status"]["containerStatuses"][1] = json!({
            "name": "b", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}
        });
        let c = cells(&POD, pod);
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "ContainerCreating");
    }

    #[test]
    fn crash_looping_container_shows_restarts_with_time_since_the_last() {
        let mut pod = running_pod();
        pod["status"]["containerStatuses"][0] = json!({
            "name": "a", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(130)}}
        });
        let c = cells(&POD, pod);
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "4 (2m10s ago)");
    }

    #[test]
    fn terminated_containers_show_reason_signal_or_exit_code() {
        let mut pod = running_pod();
        pod["status"]["phase"] = json!("Succeeded");
        for status in pod["status"]["containerStatuses"].as_array_mut().unwrap() {
            status["ready"] = json!(false);
            status["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        }
        assert_eq!(cells(&POD, pod.clone())[2], "Completed");
        assert_eq!(pod_conditions(&pod)[0]["type"], "Completed");
        pod["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(cells(&POD, pod.clone())[2], "ExitCode:2");
        pod["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 137, "signal": 9}});
        assert_eq!(cells(&POD, pod)[2], "Signal:9");
        assert!(pod_conditions(&running_pod()).is_empty());
    }

    #[test]
    fn completed_container_next_to_a_running_one_reads_running() {
        let mut pod = running_pod();
        pod["status"]["containerStatuses"][1] = json!({
            "name": "b", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
        });
        assert_eq!(cells(&POD, pod.clone())[2], "Running");
        pod["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        assert_eq!(cells(&POD, pod)[2], "NotReady");
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let mut pod = running_pod();
        pod["status"]["phase"] = json!("Pending");
        pod["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
        pod["status"]["containerStatuses"] = json!([]);
        pod["status"]["initContainerStatuses"] = json!([
            {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "restartCount": 0, "state": {"running": {}}}
        ]);
        assert_eq!(cells(&POD, pod.clone())[2], "Init:1/2");
        pod["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(cells(&POD, pod.clone())[2], "Init:CrashLoopBackOff");
        pod["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(cells(&POD, pod)[2], "Init:ExitCode:3");
    }

    #[test]
    fn sidecar_init_containers_count_towards_ready() {
        let mut pod = running_pod();
        pod["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        pod["status"]["conditions"] =
            json!([{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]);
        pod["status"]["initContainerStatuses"] = json!([
            {"name": "proxy", "restartCount": 1, "started": true, "ready": true, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(60)}}}
        ]);
        let c = cells(&POD, pod);
        assert_eq!(c[1], "3/3");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "1 (60s ago)");
    }

    #[test]
    fn deleted_pod_reads_terminating_until_it_finished() {
        let mut pod = running_pod();
        pod["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cells(&POD, pod.clone())[2], "Terminating");
        pod["status"]["phase"] = json!("Succeeded");
        assert_eq!(cells(&POD, pod.clone())[2], "Succeeded");
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(&POD, pod)[2], "Unknown");
    }

    #[test]
    fn scheduling_gated_pod_and_readiness_gates() {
        let mut pod = running_pod();
        pod["status"]["phase"] = json!("Pending");
        pod["status"]["containerStatuses"] = json!([]);
        pod["spec"]["readinessGates"] =
            json!([{"conditionType": "lb/ready"}, {"conditionType": "other"}]);
        pod["status"]["conditions"] = json!([
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
            {"type": "lb/ready", "status": "True"}
        ]);
        let c = cells(&POD, pod);
        assert_eq!(c[2], "SchedulingGated");
        assert_eq!(c[8], "1/2");
    }

    #[test]
    fn services_show_type_ips_and_ports() {
        let svc = json!({
            "metadata": {"name": "db", "creationTimestamp": ago(7200)},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "db"},
                     "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 80, "nodePort": 30080}]}
        });
        let c = cells(&SERVICE, svc);
        assert_eq!(
            c,
            vec![
                json!("db"),
                json!("ClusterIP"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("5432/TCP,80:30080/TCP"),
                json!("120m"),
                json!("app=db")
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.1"]}});
        let c = cells(&SERVICE, lb);
        assert_eq!(c[3], "<pending>");
        assert_eq!(c[4], "<none>");
        assert_eq!(c[6], "<none>");
    }

    #[test]
    fn nodes_show_readiness_roles_and_versions() {
        let node_object = json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian"}
            }
        });
        let c = cells(&NODE, node_object);
        assert_eq!(c[1], "Ready,SchedulingDisabled");
        assert_eq!(c[2], "control-plane");
        assert_eq!(c[4], "v1.32.0");
        assert_eq!(c[5], "192.0.2.1");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[7], "Debian");
        assert_eq!(c[8], "<unknown>");
        assert_eq!(
            cells(&NODE, json!({"metadata": {"name": "x"}}))[1],
            "Unknown"
        );
    }

    #[test]
    fn config_maps_and_secrets_count_their_keys() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": ""}});
        assert_eq!(cells(&CONFIG_MAP, cm)[1], 2);
        let secret = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}});
        let c = cells(&SECRET, secret);
        assert_eq!((c[1].clone(), c[2].clone()), (json!("Opaque"), json!(1)));
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(cells(&NAMESPACE, ns)[1], "Active");
    }

    #[test]
    fn core_events_show_last_seen_object_and_message() {
        let e = json!({
            "metadata": {"name": "web.1"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
            "reason": "Started", "type": "Normal", "message": "Started container a\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 3
        });
        let c = cells(&CORE_EVENT, e);
        assert_eq!(
            c,
            vec![
                json!("30s"),
                json!("Normal"),
                json!("Started"),
                json!("pod/web"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("Started container a"),
                json!("10m"),
                json!(3),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn core_events_without_a_source_name_their_reporting_component() {
        let e = json!({
            "metadata": {"name": "s.1"},
            "involvedObject": {"kind": "Stack", "name": "shop"},
            "reason": "Reconciled", "type": "Normal", "message": "all good",
            "reportingComponent": "berth.dev/controller", "reportingInstance": "host-1",
            "eventTime": ago(90)
        });
        assert_eq!(cells(&CORE_EVENT, e)[5], "berth.dev/controller, host-1");
    }

    #[test]
    fn events_k8s_io_events_print_like_core_events() {
        let e = json!({
            "metadata": {"name": "s.1"},
            "regarding": {"kind": "Stack", "name": "shop"},
            "reason": "Reconciled", "type": "Normal", "note": "all good",
            "reportingController": "berth.dev/controller",
            "eventTime": ago(90)
        });
        let c = cells(&EVENTS_EVENT, e.clone());
        assert_eq!(c[0], "90s", "last seen falls back to first seen");
        assert_eq!(c[3], "stack/shop");
        assert_eq!(c[5], "berth.dev/controller");
        assert_eq!(c[6], "all good");
        assert_eq!(c[8], 1, "singleton events count once");
        let mut series = e;
        series["series"] = json!({"count": 5, "lastObservedTime": ago(5)});
        let c = cells(&EVENTS_EVENT, series);
        assert_eq!((c[0].clone(), c[8].clone()), (json!("5s"), json!(5)));
    }

    #[test]
    fn claims_show_capacity_only_once_bound() {
        let pending = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "local",
            "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        let c = cells(&PVC, pending);
        assert_eq!(
            c[1..7],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("local"),
                json!("<unset>")
            ]
        );
        let bound = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}});
        let c = cells(&PVC, bound);
        assert_eq!(c[2..5], [json!("pv1"), json!("1Gi"), json!("RWO,RWX")]);
        assert_eq!(c[8], "Filesystem");
    }

    #[test]
    fn volumes_show_claim_and_terminating() {
        let pv_object = json!({"metadata": {"name": "pv1", "deletionTimestamp": ago(1)},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "data"}},
            "status": {"phase": "Bound"}});
        let c = cells(&PV, pv_object);
        assert_eq!(
            c[1..6],
            [
                json!("5Gi"),
                json!("RWO"),
                json!("Retain"),
                json!("Terminating"),
                json!("ns/data")
            ]
        );
    }

    #[test]
    fn endpoints_show_three_addresses_then_a_count() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
            "ports": [{"port": 80}]
        }]});
        assert_eq!(
            cells(&ENDPOINTS, ep)[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."
        );
        assert_eq!(
            cells(&ENDPOINTS, json!({"metadata": {"name": "x"}}))[1],
            "<none>"
        );
    }

    #[test]
    fn quotas_split_requests_from_limits() {
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"limits.cpu": "2", "pods": "10", "requests.memory": "1Gi"},
            "used": {"pods": "3"}
        }});
        let c = cells(&RESOURCE_QUOTA, quota);
        assert_eq!(c[2], "pods: 3/10, requests.memory: 0/1Gi");
        assert_eq!(c[3], "limits.cpu: 0/2");
    }
}
