//! Every kind k8s-openapi types, by group, version and kind, with a way to put its schema (and the schemas
//! it refers to) into a generator. The registry says which of them are served; this table only knows types.

use k8s_openapi::Resource;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};

pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Adds the kind's schema to the generator's definitions and returns its name (upstream's name).
    pub define: fn(&mut SchemaGenerator) -> String,
}

pub fn define<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

macro_rules! kinds {
    ($($($module:ident)::+ => [$($kind:ident),+ $(,)?]),+ $(,)?) => {
        &[$({
            use k8s_openapi::$($module)::+ as m;
            &[$(Kind {
                group: <m::$kind as Resource>::GROUP,
                version: <m::$kind as Resource>::VERSION,
                kind: <m::$kind as Resource>::KIND,
                define: define::<m::$kind>,
            }),+]
        }),+]
    };
}

/// The listable resource kinds of k8s-openapi's `latest` API version.
static KINDS: &[&[Kind]] = kinds![
    api::admissionregistration::v1 => [
        MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, MutatingWebhookConfiguration,
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
    ],
    api::admissionregistration::v1alpha1 => [MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding],
    api::admissionregistration::v1beta1 => [MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding],
    api::apiserverinternal::v1alpha1 => [StorageVersion],
    api::apps::v1 => [ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet],
    api::autoscaling::v1 => [HorizontalPodAutoscaler],
    api::autoscaling::v2 => [HorizontalPodAutoscaler],
    api::batch::v1 => [CronJob, Job],
    api::certificates::v1 => [CertificateSigningRequest, ClusterTrustBundle, PodCertificateRequest],
    api::certificates::v1beta1 => [ClusterTrustBundle, PodCertificateRequest],
    api::coordination::v1 => [Lease],
    api::coordination::v1alpha2 => [LeaseCandidate],
    api::coordination::v1beta1 => [LeaseCandidate],
    api::core::v1 => [
        ComponentStatus, ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, PersistentVolume,
        PersistentVolumeClaim, Pod, PodTemplate, ReplicationController, ResourceQuota, Secret, Service,
        ServiceAccount,
    ],
    api::discovery::v1 => [EndpointSlice],
    api::events::v1 => [Event],
    api::flowcontrol::v1 => [FlowSchema, PriorityLevelConfiguration],
    api::lifecycle::v1alpha1 => [Eviction, EvictionRequest],
    api::networking::v1 => [Ingress, IngressClass, IPAddress, NetworkPolicy, ServiceCIDR],
    api::node::v1 => [RuntimeClass],
    api::policy::v1 => [PodDisruptionBudget],
    api::rbac::v1 => [ClusterRole, ClusterRoleBinding, Role, RoleBinding],
    api::resource::v1 => [
        DeviceClass, DeviceTaintRule, ResourceClaim, ResourceClaimTemplate, ResourceSlice,
    ],
    api::resource::v1alpha3 => [DeviceTaintRule, ResourcePoolStatusRequest],
    api::resource::v1beta1 => [DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice],
    api::resource::v1beta2 => [
        DeviceClass, DeviceTaintRule, ResourceClaim, ResourceClaimTemplate, ResourceSlice,
    ],
    api::scheduling::v1 => [PriorityClass],
    api::scheduling::v1alpha3 => [CompositePodGroup, PodGroup, Workload],
    api::scheduling::v1beta1 => [PodGroup, Workload],
    api::storage::v1 => [
        CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment, VolumeAttributesClass,
    ],
    api::storagemigration::v1 => [StorageVersionMigration],
    api::storagemigration::v1beta1 => [StorageVersionMigration],
    apiextensions_apiserver::pkg::apis::apiextensions::v1 => [CustomResourceDefinition],
    kube_aggregator::pkg::apis::apiregistration::v1 => [APIService],
];

pub fn find(group: &str, version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .flatten()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::schemars::generate::SchemaSettings;

    #[test]
    fn kinds_are_found_by_group_version_and_kind_and_named_as_upstream() {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let pod = find("", "v1", "Pod").unwrap();
        assert_eq!((pod.define)(&mut generator), "io.k8s.api.core.v1.Pod");
        let deployment = find("apps", "v1", "Deployment").unwrap();
        assert_eq!(
            (deployment.define)(&mut generator),
            "io.k8s.api.apps.v1.Deployment"
        );
        let crd = find("apiextensions.k8s.io", "v1", "CustomResourceDefinition").unwrap();
        assert_eq!(
            (crd.define)(&mut generator),
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
        );
        assert!(find("apps", "v1", "Pod").is_none());
        let definitions = generator.definitions();
        assert!(definitions.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(definitions.contains_key("io.k8s.api.core.v1.Container"));
    }

    #[test]
    fn every_kind_is_listed_once() {
        let all: Vec<&Kind> = KINDS.iter().copied().flatten().collect();
        assert!(all.len() > 90, "{}", all.len());
        for (i, a) in all.iter().enumerate() {
            assert!(
                !all[i + 1..]
                    .iter()
                    .any(|b| (a.group, a.version, a.kind) == (b.group, b.version, b.kind)),
                "{}/{} {} is listed twice",
                a.group,
                a.version,
                a.kind
            );
        }
    }
}
