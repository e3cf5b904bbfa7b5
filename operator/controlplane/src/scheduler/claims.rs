//! The scheduler's view of a Pod's PersistentVolumeClaims (upstream's VolumeBinding filter, without its
//! pre-binding): a missing claim or an unbound claim of an Immediate class keeps the Pod off every node; a
//! claim bound to a volume with node affinity limits the nodes; a WaitForFirstConsumer claim waits for the
//! Pod to be scheduled (the provisioner then follows it).

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{ObjectRef, Store};

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

pub struct Claims<'a> {
    pub claims: &'a Store<PersistentVolumeClaim>,
    pub volumes: &'a Store<PersistentVolume>,
    pub classes: &'a Store<StorageClass>,
}

impl Claims<'_> {
    /// The node affinity the Pod's bound volumes impose, or why no node can take the Pod.
    pub fn check(&self, pod: &Pod) -> Result<Vec<NodeSelector>, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut affinity = Vec::new();
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
                        affinity.push(required);
                    }
                }
                None if self.waits_for_first_consumer(spec.storage_class_name.as_deref()) => {}
                None => return Err("pod has unbound immediate PersistentVolumeClaims".to_owned()),
            }
        }
        Ok(affinity)
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
