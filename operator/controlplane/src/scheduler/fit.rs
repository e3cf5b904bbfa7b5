//! Whether a Pod fits a node, in the order of upstream's filter plugins (NodeUnschedulable, TaintToleration,
//! NodeAffinity, NodePorts, NodeResourcesFit, VolumeBinding), why not in upstream's words, and which of the
//! nodes that fit is best (upstream's LeastAllocated score).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, Taint, Toleration};

use super::demand::{Demand, NodeState};

/// Why a Pod does not fit a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    Unschedulable,
    Taint { key: String, value: String },
    Affinity,
    Ports,
    Insufficient(String),
    VolumeAffinity,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::Unschedulable => f.write_str("node(s) were unschedulable"),
            Misfit::Taint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Misfit::Affinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Misfit::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Misfit::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Misfit::VolumeAffinity => f.write_str("node(s) had volume node affinity conflict"),
        }
    }
}

/// Why `demand` does not fit `node` (empty when it fits). Like upstream, the first filter that fails decides;
/// the resource filter names every resource that is short.
pub fn misfits(demand: &Demand, node: &NodeState) -> Vec<Misfit> {
    if node.unschedulable
        && !demand.tolerations.iter().any(|t| {
            tolerates(
                t,
                &Taint {
                    key: "node.kubernetes.io/unschedulable".into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                },
            )
        })
    {
        return vec![Misfit::Unschedulable];
    }
    if let Some(taint) = node.taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !demand.tolerations.iter().any(|t| tolerates(t, taint))
    }) {
        return vec![Misfit::Taint {
            key: taint.key.clone(),
            value: taint.value.clone().unwrap_or_default(),
        }];
    }
    let selector_matches = demand
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    if !selector_matches
        || demand
            .affinity
            .as_ref()
            .is_some_and(|s| !selector_admits(s, node))
    {
        return vec![Misfit::Affinity];
    }
    if demand
        .host_ports
        .iter()
        .any(|want| node.host_ports.iter().any(|used| used.clashes(want)))
    {
        return vec![Misfit::Ports];
    }
    let short: Vec<Misfit> = demand
        .requests
        .iter()
        .filter(|(name, amount)| {
            let free = node.allocatable.get(*name).copied().unwrap_or(0)
                - node.requested.get(*name).copied().unwrap_or(0);
            **amount > free
        })
        .map(|(name, _)| Misfit::Insufficient(name.clone()))
        .collect();
    if !short.is_empty() {
        return short;
    }
    if demand
        .volume_affinity
        .iter()
        .any(|s| !selector_admits(s, node))
    {
        return vec![Misfit::VolumeAffinity];
    }
    Vec::new()
}

/// Upstream's toleration matching: an empty effect tolerates every effect; `Exists` with no key tolerates
/// every taint.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" | "" => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Node selector terms are ORed; the requirements of a term are ANDed; a term with none matches nothing.
pub fn selector_admits(selector: &NodeSelector, node: &NodeState) -> bool {
    selector.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        (!expressions.is_empty() || !fields.is_empty())
            && expressions
                .iter()
                .all(|r| requirement_admits(r, node.labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                r.key == "metadata.name" && requirement_admits(r, Some(node.name.as_str()))
            })
    })
}

fn requirement_admits(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match (requirement.operator.as_str(), value) {
        ("In", Some(v)) => values.iter().any(|x| x == v),
        ("In", None) => false,
        ("NotIn", Some(v)) => !values.iter().any(|x| x == v),
        ("NotIn", None) => true,
        ("Exists", v) => v.is_some(),
        ("DoesNotExist", v) => v.is_none(),
        ("Gt", Some(v)) => {
            matches!((number(v), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a > b)
        }
        ("Lt", Some(v)) => {
            matches!((number(v), values.first().and_then(|x| number(x))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Upstream's FitError message: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
/// taint {...}." (counts per reason, sorted as strings).
pub fn unschedulable_message(nodes: usize, misfits: &[Vec<Misfit>]) -> String {
    if nodes == 0 {
        return "no nodes available to schedule pods".to_owned();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for misfit in misfits.iter().flatten() {
        *counts.entry(misfit.to_string()).or_default() += 1;
    }
    let mut reasons: Vec<String> = counts
        .into_iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    reasons.sort();
    format!("0/{nodes} nodes are available: {}.", reasons.join(", "))
}

/// The message for a Pod that no node can take for a reason of its own (a missing claim).
pub fn pod_message(nodes: usize, reason: &str) -> String {
    format!("0/{nodes} nodes are available: {reason}.")
}

/// Upstream's non-zero defaults for Pods that request nothing, so they still spread.
const DEFAULT_CPU: i128 = 100;
const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024 * 1000;

/// LeastAllocated: the share of cpu and memory left free after placing the Pod, 0..=100.
pub fn score(demand: &Demand, node: &NodeState) -> i128 {
    let share = |resource: &str, default: i128| {
        let allocatable = node.allocatable.get(resource).copied().unwrap_or(0);
        if allocatable <= 0 {
            return 0;
        }
        let want = demand.requests.get(resource).copied().unwrap_or(default);
        let used = node.requested.get(resource).copied().unwrap_or(0) + want;
        ((allocatable - used).max(0) * 100) / allocatable
    };
    (share("cpu", DEFAULT_CPU) + share("memory", DEFAULT_MEMORY)) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::demand::HostPort;
    use k8s_openapi::api::core::v1::NodeSelectorTerm;

    fn node(cpu: i128) -> NodeState {
        NodeState {
            name: "n1".into(),
            labels: [("disk".to_owned(), "ssd".to_owned())].into(),
            allocatable: [("cpu".to_owned(), cpu), ("pods".to_owned(), 110_000)].into(),
            ..NodeState::default()
        }
    }

    fn wants(cpu: i128) -> Demand {
        Demand {
            requests: [("cpu".to_owned(), cpu), ("pods".to_owned(), 1000)].into(),
            ..Demand::default()
        }
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn a_pod_fits_a_node_with_room() {
        assert!(misfits(&wants(500), &node(1000)).is_empty());
    }

    #[test]
    fn requests_beyond_what_is_free_are_insufficient() {
        let mut n = node(1000);
        n.requested.insert("cpu".into(), 600);
        assert_eq!(
            misfits(&wants(500), &n),
            vec![Misfit::Insufficient("cpu".into())]
        );
        let mut gpu = wants(0);
        gpu.requests.insert("example.com/gpu".into(), 1000);
        assert_eq!(
            misfits(&gpu, &node(1000)),
            vec![Misfit::Insufficient("example.com/gpu".into())]
        );
    }

    #[test]
    fn a_full_node_has_insufficient_pods() {
        let mut n = node(1000);
        n.requested.insert("pods".into(), 110_000);
        assert_eq!(
            misfits(&wants(0), &n),
            vec![Misfit::Insufficient("pods".into())]
        );
    }

    #[test]
    fn node_selector_must_match_labels() {
        let mut d = wants(0);
        d.node_selector.insert("disk".into(), "hdd".into());
        assert_eq!(misfits(&d, &node(1000)), vec![Misfit::Affinity]);
        d.node_selector.insert("disk".into(), "ssd".into());
        assert!(misfits(&d, &node(1000)).is_empty());
    }

    #[test]
    fn required_node_affinity_terms_are_ored_and_requirements_anded() {
        let n = node(1000);
        let term = |reqs: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: Some(reqs),
            match_fields: None,
        };
        let selector = |terms| NodeSelector {
            node_selector_terms: terms,
        };
        let ssd = requirement("disk", "In", &["ssd", "nvme"]);
        let no_gpu = requirement("gpu", "DoesNotExist", &[]);
        let zone = requirement("zone", "Exists", &[]);
        assert!(selector_admits(
            &selector(vec![term(vec![ssd.clone(), no_gpu])]),
            &n
        ));
        assert!(!selector_admits(
            &selector(vec![term(vec![ssd.clone(), zone.clone()])]),
            &n
        ));
        assert!(selector_admits(
            &selector(vec![term(vec![zone]), term(vec![ssd])]),
            &n
        ));
        assert!(!selector_admits(&selector(vec![term(vec![])]), &n));
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![requirement("metadata.name", "In", &["n1"])]),
        };
        assert!(selector_admits(&selector(vec![by_name]), &n));
    }

    #[test]
    fn gt_and_lt_compare_integers() {
        let mut n = node(1000);
        n.labels.insert("cores".into(), "8".into());
        let only = |r| NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![r]),
                match_fields: None,
            }],
        };
        assert!(selector_admits(
            &only(requirement("cores", "Gt", &["4"])),
            &n
        ));
        assert!(!selector_admits(
            &only(requirement("cores", "Lt", &["4"])),
            &n
        ));
        assert!(!selector_admits(
            &only(requirement("disk", "Gt", &["4"])),
            &n
        ));
    }

    #[test]
    fn untolerated_no_schedule_taints_keep_pods_off() {
        let mut n = node(1000);
        n.taints = vec![
            taint("dedicated", "db", "PreferNoSchedule"),
            taint("dedicated", "db", "NoSchedule"),
        ];
        assert_eq!(
            misfits(&wants(0), &n),
            vec![Misfit::Taint {
                key: "dedicated".into(),
                value: "db".into()
            }]
        );
        let mut d = wants(0);
        d.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("db".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }];
        assert!(misfits(&d, &n).is_empty());
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = taint("k", "v", "NoExecute");
        let exists_all = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&exists_all, &t));
        let wrong_effect = Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        };
        assert!(!tolerates(&wrong_effect, &t));
        let wrong_value = Toleration {
            key: Some("k".into()),
            value: Some("x".into()),
            ..Toleration::default()
        };
        assert!(!tolerates(&wrong_value, &t));
    }

    #[test]
    fn cordoned_nodes_are_unschedulable() {
        let mut n = node(1000);
        n.unschedulable = true;
        assert_eq!(misfits(&wants(0), &n), vec![Misfit::Unschedulable]);
    }

    #[test]
    fn a_used_host_port_does_not_fit() {
        let port = HostPort {
            ip: String::new(),
            protocol: "TCP".into(),
            port: 8080,
        };
        let mut n = node(1000);
        n.host_ports.push(port.clone());
        let mut d = wants(0);
        d.host_ports.push(port);
        assert_eq!(misfits(&d, &n), vec![Misfit::Ports]);
    }

    #[test]
    fn the_message_counts_reasons_like_upstream() {
        let message = unschedulable_message(1, &[vec![Misfit::Insufficient("cpu".into())]]);
        assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
        let message = unschedulable_message(
            3,
            &[
                vec![
                    Misfit::Insufficient("cpu".into()),
                    Misfit::Insufficient("memory".into()),
                ],
                vec![Misfit::Taint {
                    key: "a".into(),
                    value: String::new(),
                }],
                vec![Misfit::Taint {
                    key: "a".into(),
                    value: String::new(),
                }],
            ],
        );
        assert_eq!(
            message,
            "0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 2 node(s) had untolerated taint {a: }."
        );
        assert_eq!(
            unschedulable_message(0, &[]),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let mut busy = node(4000);
        busy.requested.insert("cpu".into(), 3000);
        assert!(score(&wants(500), &node(4000)) > score(&wants(500), &busy));
    }
}
