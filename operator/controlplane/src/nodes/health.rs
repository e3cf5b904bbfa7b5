//! How the node lifecycle judges a node, apart from any I/O: when it last showed a sign of life (its Lease
//! renewed or its Ready heartbeat moved, as seen on this process's clock), the conditions of a node that went
//! silent, and the NoSchedule taints its Ready condition implies (upstream's TaintNodesByCondition).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

use crate::scheduler::{NOT_READY, UNREACHABLE};

/// The node conditions the kubelet posts; all turn Unknown when it goes silent.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What changes while a kubelet is alive.
#[derive(Debug, Clone, PartialEq)]
pub struct Signs {
    pub lease_renewed: Option<MicroTime>,
    pub ready_heartbeat: Option<Time>,
}

/// When each node last showed a sign of life.
#[derive(Default)]
pub struct Tracker {
    seen: HashMap<String, (Signs, Instant)>,
}

impl Tracker {
    /// Records what the node shows now; returns how long it has shown nothing new.
    pub fn silent_for(&mut self, node: &str, signs: Signs, now: Instant) -> Duration {
        match self.seen.get(node) {
            Some((before, since)) if *before == signs => now.saturating_duration_since(*since),
            _ => {
                self.seen.insert(node.to_owned(), (signs, now));
                Duration::ZERO
            }
        }
    }

    pub fn retain(&mut self, alive: impl Fn(&str) -> bool) {
        self.seen.retain(|name, _| alive(name));
    }
}

/// The conditions of a node whose kubelet went silent, or None when Ready already says Unknown.
pub fn silent_conditions(
    current: &[NodeCondition],
    created: Option<&Time>,
    now: &Time,
) -> Option<Vec<NodeCondition>> {
    let ready = current.iter().find(|c| c.type_ == "Ready");
    if ready.is_some_and(|c| c.status == "Unknown") {
        return None;
    }
    let mut conditions = current.to_vec();
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(condition) => {
                if condition.status != "Unknown" {
                    condition.last_transition_time = Some(now.clone());
                }
                condition.status = "Unknown".to_owned();
                condition.reason = Some("NodeStatusUnknown".to_owned());
                condition.message = Some("Kubelet stopped posting node status.".to_owned());
            }
            None => conditions.push(NodeCondition {
                type_: type_.to_owned(),
                status: "Unknown".to_owned(),
                reason: Some("NodeStatusNeverUpdated".to_owned()),
                message: Some("Kubelet never posted node status.".to_owned()),
                last_heartbeat_time: created.cloned(),
                last_transition_time: Some(now.clone()),
            }),
        }
    }
    Some(conditions)
}

/// The taints a node should carry for its Ready status, or None when they are right already.
pub fn condition_taints(current: &[Taint], ready: Option<&str>) -> Option<Vec<Taint>> {
    let wanted = match ready {
        Some("True") => None,
        Some("False") => Some(NOT_READY),
        Some(_) => Some(UNREACHABLE),
        None => return None,
    };
    let ours = |t: &Taint| (t.key == NOT_READY || t.key == UNREACHABLE) && t.effect == "NoSchedule";
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !ours(t) || Some(t.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted
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
    (taints != current).then_some(taints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn condition(type_: &str, status: &str) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            ..NodeCondition::default()
        }
    }

    #[test]
    fn silence_is_measured_from_the_last_change_seen() {
        let mut tracker = Tracker::default();
        let start = Instant::now();
        let signs = |n: i64| Signs {
            lease_renewed: Some(MicroTime(Timestamp::from_second(n).unwrap())),
            ready_heartbeat: None,
        };
        assert_eq!(tracker.silent_for("n", signs(1), start), Duration::ZERO);
        let later = start + Duration::from_secs(30);
        assert_eq!(
            tracker.silent_for("n", signs(1), later),
            Duration::from_secs(30)
        );
        assert_eq!(tracker.silent_for("n", signs(2), later), Duration::ZERO);
    }

    #[test]
    fn a_silent_node_turns_unknown_with_upstream_reasons() {
        let now = Time(Timestamp::now());
        let current = vec![
            condition("Ready", "True"),
            condition("NetworkUnavailable", "False"),
        ];
        let conditions = silent_conditions(&current, None, &now).unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let memory = conditions
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(memory.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let network = conditions
            .iter()
            .find(|c| c.type_ == "NetworkUnavailable")
            .unwrap();
        assert_eq!(network.status, "False");
        assert!(
            silent_conditions(&conditions, None, &now).is_none(),
            "already unknown"
        );
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let unreachable = condition_taints(&[], Some("Unknown")).unwrap();
        assert_eq!(unreachable[0].key, UNREACHABLE);
        let not_ready = condition_taints(&unreachable, Some("False")).unwrap();
        assert_eq!(not_ready.len(), 1);
        assert_eq!(not_ready[0].key, NOT_READY);
        let user = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let mut both = not_ready.clone();
        both.push(user.clone());
        assert_eq!(
            condition_taints(&both, Some("True")),
            Some(vec![user.clone()])
        );
        assert_eq!(condition_taints(&[user], Some("True")), None);
        assert_eq!(condition_taints(&not_ready, None), None);
    }
}
