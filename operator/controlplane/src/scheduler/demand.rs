//! What a Pod asks of a node (requests, host ports, placement rules) and what a node offers (allocatable,
//! labels, taints, what is already placed on it), read from the API objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, NodeSelector, Pod, Taint, Toleration};

use berth_api::quantity;

/// Resource amounts in milli-units by resource name ("cpu", "memory", "pods", extended resources).
pub type Resources = BTreeMap<String, i128>;

/// A host port a container publishes; ip "" stands for every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports clash when protocol and port match and their addresses overlap.
    pub fn clashes(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wildcard(&self.ip) || wildcard(&other.ip))
    }
}

/// What one Pod needs from the node it lands on.
#[derive(Debug, Clone, Default)]
pub struct Demand {
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity (`requiredDuringSchedulingIgnoredDuringExecution`).
    pub affinity: Option<NodeSelector>,
    pub tolerations: Vec<Toleration>,
    /// Node affinity of the PersistentVolumes bound to the Pod's claims.
    pub volume_affinity: Vec<NodeSelector>,
}

/// A node and what is placed on it so far.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    /// spec.taints, plus the not-ready/unreachable taint its Ready condition implies.
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub requested: Resources,
    pub host_ports: Vec<HostPort>,
}

impl NodeState {
    pub fn place(&mut self, demand: &Demand) {
        for (name, amount) in &demand.requests {
            *self.requested.entry(name.clone()).or_default() += amount;
        }
        self.host_ports.extend(demand.host_ports.iter().cloned());
    }
}

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Reads a Pod's demand. Err names the quantity that could not be read.
pub fn demand_of(pod: &Pod) -> Result<Demand, String> {
    let Some(spec) = &pod.spec else {
        return Err("the pod has no spec".to_owned());
    };
    let mut requests = Resources::new();
    for container in &spec.containers {
        for (name, amount) in container_requests(container)? {
            *requests.entry(name).or_default() += amount;
        }
    }
    // Init containers run one at a time before the others: the Pod needs the largest of them.
    for container in spec.init_containers.iter().flatten() {
        for (name, amount) in container_requests(container)? {
            let entry = requests.entry(name).or_default();
            *entry = (*entry).max(amount);
        }
    }
    for (name, amount) in spec.overhead.iter().flatten() {
        *requests.entry(name.clone()).or_default() += parse(name, &amount.0)?;
    }
    requests.retain(|_, amount| *amount > 0);
    requests.insert("pods".to_owned(), 1000);
    let host_ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|port| *port > 0)?;
            Some(HostPort {
                ip: p.host_ip.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                port,
            })
        })
        .collect();
    Ok(Demand {
        requests,
        host_ports,
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        affinity: spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
        tolerations: spec.tolerations.clone().unwrap_or_default(),
        volume_affinity: Vec::new(),
    })
}

/// A container's requests; a resource with a limit and no request requests its limit (upstream defaulting).
fn container_requests(container: &Container) -> Result<Resources, String> {
    let resources = container.resources.clone().unwrap_or_default();
    let mut merged = resources.limits.unwrap_or_default();
    merged.extend(resources.requests.unwrap_or_default());
    merged
        .iter()
        .map(|(name, q)| Ok((name.clone(), parse(name, &q.0)?)))
        .collect()
}

fn parse(name: &str, text: &str) -> Result<i128, String> {
    quantity::parse_milli(text).ok_or_else(|| format!("quantities must match the regular expression of Kubernetes quantities: {name}: {text:?}"))
}

/// Reads a node. Allocatable falls back to capacity; quantities that cannot be read are left out, and named
/// in the second value so the caller can say so once.
pub fn node_state(node: &Node) -> (NodeState, Vec<String>) {
    let status = node.status.clone().unwrap_or_default();
    let spec = node.spec.clone().unwrap_or_default();
    let offered = status.allocatable.or(status.capacity).unwrap_or_default();
    let mut bad = Vec::new();
    let mut allocatable = Resources::new();
    for (name, q) in offered {
        match quantity::parse_milli(&q.0) {
            Some(amount) => {
                allocatable.insert(name, amount);
            }
            None => bad.push(format!("{name}: {:?}", q.0)),
        }
    }
    let mut taints = spec.taints.unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str());
    let implied = match ready {
        Some("True") => None,
        Some("Unknown") => Some(UNREACHABLE),
        _ => Some(NOT_READY),
    };
    if let Some(key) = implied
        && !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: key.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Taint::default()
        });
    }
    let state = NodeState {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        unschedulable: spec.unschedulable.unwrap_or(false),
        taints,
        allocatable,
        requested: Resources::new(),
        host_ports: Vec::new(),
    };
    (state, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn requests_add_up_over_containers_and_init_containers_take_the_max() {
        let demand = demand_of(&pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "1"}}}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]
        })))
        .unwrap();
        assert_eq!(demand.requests["cpu"], 2000);
        assert_eq!(demand.requests["memory"], 64 * 1024 * 1024 * 1000);
        assert_eq!(demand.requests["pods"], 1000);
    }

    #[test]
    fn a_bad_quantity_is_named() {
        let err = demand_of(&pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]
        })))
        .unwrap_err();
        assert!(err.contains("cpu") && err.contains("lots"), "{err}");
    }

    #[test]
    fn host_ports_default_to_tcp_on_every_address() {
        let demand = demand_of(&pod(json!({
            "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]
        })))
        .unwrap();
        assert_eq!(
            demand.host_ports,
            vec![HostPort {
                ip: String::new(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
    }

    #[test]
    fn host_ports_on_different_addresses_do_not_clash_unless_one_is_a_wildcard() {
        let port = |ip: &str| HostPort {
            ip: ip.into(),
            protocol: "TCP".into(),
            port: 80,
        };
        assert!(!port("127.0.0.1").clashes(&port("127.0.0.2")));
        assert!(port("127.0.0.1").clashes(&port("0.0.0.0")));
        assert!(port("").clashes(&port("127.0.0.1")));
        let udp = HostPort {
            protocol: "UDP".into(),
            ..port("")
        };
        assert!(!udp.clashes(&port("")));
    }

    #[test]
    fn a_node_that_is_not_ready_carries_the_implied_taint() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                       "capacity": {"cpu": "2", "memory": "bad"}}
        }))
        .unwrap();
        let (state, bad) = node_state(&node);
        assert_eq!(state.taints[0].key, UNREACHABLE);
        assert_eq!(state.allocatable["cpu"], 2000);
        assert_eq!(bad, vec!["memory: \"bad\"".to_owned()]);
    }
}
