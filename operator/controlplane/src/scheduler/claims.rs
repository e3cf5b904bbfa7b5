//! The scheduler's view of a Pod's PersistentVolumeClaims (upstream's VolumeBinding plugin): a missing claim or
//! an unbound claim of an Immediate class keeps the Pod off every node; a claim bound to a volume with node
//! affinity limits the nodes; an unbound WaitForFirstConsumer claim is provisioned on the node chosen for the
//! Pod before the Pod is bound (the scheduler names the node in the claim's `selected-node` annotation, the
//! provisioner follows it), so a kubelet never sees its Pod's claim unbound.

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{ObjectRef, Store};

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The node a WaitForFirstConsumer claim is to be provisioned on, set by the scheduler.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// What a Pod's claims ask of its node.
#[derive(Debug, Default, PartialEq)]
pub struct ClaimNeeds {
    /// The node affinity of the volumes the claims are bound to.
    pub affinity: Vec<NodeSelector>,
    /// Unbound WaitForFirstConsumer claims, by name, with the node already selected for each (if any): they
    /// must be provisioned on the Pod's node before the Pod is bound.
    pub unbound: Vec<(String, Option<String>)>,
}

pub struct Claims<'a> {
    pub claims: &'a Store<PersistentVolumeClaim>,
    pub volumes: &'a Store<PersistentVolume>,
    pub classes: &'a Store<StorageClass>,
}

impl Claims<'_> {
    /// What the Pod's claims need of its node, or why no node can take the Pod.
    pub fn check(&self, pod: &Pod) -> Result<ClaimNeeds, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut needs = ClaimNeeds::default();
        let names = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.as_str());
        for name in names {
            let Some(claim) = self.claims.get(&ObjectRef::new(name).within(namespace)) else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            let spec = claim.spec.clone().unwrap_or_default();
            match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
                Some(volume) => {
                    let Some(pv) = self.volumes.get(&ObjectRef::new(volume)) else {
                        return Err(format!("persistentvolume \"{volume}\" not found"));
                    };
                    if let Some(required) = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_affinity.as_ref())
                        .and_then(|a| a.required.clone())
                    {
                        needs.affinity.push(required);
                    }
                }
                None if self.waits_for_first_consumer(spec.storage_class_name.as_deref()) => {
                    let selected = claim
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(SELECTED_NODE))
                        .cloned();
                    needs.unbound.push((name.to_owned(), selected));
                }
                None => return Err("pod has unbound immediate PersistentVolumeClaims".to_owned()),
            }
        }
        Ok(needs)
    }

    fn waits_for_first_consumer(&self, class: Option<&str>) -> bool {
        let class = match class {
            Some(name) => self.classes.get(&ObjectRef::new(name)),
            None => self.classes.find(is_default_class),
        };
        class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
    }
}

pub fn is_default_class(class: &StorageClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, Volume,
    };
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    use super::*;

    fn store_of<K>(objects: Vec<K>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut writer = Writer::default();
        for object in objects {
            writer.apply_watcher_event(&Event::Apply(object));
        }
        writer.as_reader()
    }

    fn class(name: &str, mode: &str) -> StorageClass {
        let mut class = StorageClass {
            volume_binding_mode: Some(mode.into()),
            provisioner: "berth.dev/local-path".into(),
            ..StorageClass::default()
        };
        class.metadata.name = Some(name.into());
        class
    }

    fn claim(name: &str, class: &str, selected: Option<&str>) -> PersistentVolumeClaim {
        let mut claim = PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        claim.metadata.name = Some(name.into());
        claim.metadata.namespace = Some("default".into());
        claim.metadata.annotations = selected.map(|node| {
            [(SELECTED_NODE.to_owned(), node.to_owned())]
                .into_iter()
                .collect()
        });
        claim
    }

    fn pod_using(claims: &[&str]) -> Pod {
        let mut pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(
                    claims
                        .iter()
                        .map(|c| Volume {
                            name: (*c).to_owned(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: (*c).to_owned(),
                                read_only: None,
                            }),
                            ..Volume::default()
                        })
                        .collect(),
                ),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        pod.metadata.namespace = Some("default".into());
        pod
    }

    #[test]
    fn unbound_wait_for_first_consumer_claims_are_listed_with_their_selected_node() {
        let claims = store_of(vec![
            claim("fresh", "local", None),
            claim("selected", "local", Some("n2")),
            claim("now", "immediate", None),
        ]);
        let volumes = store_of(Vec::<PersistentVolume>::new());
        let classes = store_of(vec![
            class("local", "WaitForFirstConsumer"),
            class("immediate", "Immediate"),
        ]);
        let view = Claims {
            claims: &claims,
            volumes: &volumes,
            classes: &classes,
        };
        let needs = view.check(&pod_using(&["fresh", "selected"])).unwrap();
        assert!(needs.affinity.is_empty());
        assert_eq!(
            needs.unbound,
            vec![
                ("fresh".to_owned(), None),
                ("selected".to_owned(), Some("n2".to_owned()))
            ]
        );
        assert_eq!(
            view.check(&pod_using(&["now"])).unwrap_err(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
        assert_eq!(
            view.check(&pod_using(&["missing"])).unwrap_err(),
            "persistentvolumeclaim \"missing\" not found"
        );
    }
}
