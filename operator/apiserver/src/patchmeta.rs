//! How the built-in kinds are patched and merged, field by field: the `patchStrategy`/`patchMergeKey` of
//! strategic merge patch and the list types of server-side apply (`x-kubernetes-list-type`, list-map keys,
//! atomic maps and structs). k8s-openapi's schemas do not carry these, so berth keeps them here, as a table
//! read off upstream's API types (kubernetes/api, apimachinery's meta/v1, apiextensions-apiserver), and
//! walks k8s-openapi's schemas (schemars) for the shape of each kind. Custom resources are not described
//! here: their CRD's structural schema says how their lists merge.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// How a list is merged by server-side apply (and which of its items are the same item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// Items are maps, identified by the values of these keys (a key absent from an item takes its default).
    Map {
        keys: &'static [&'static str],
        defaults: &'static [(&'static str, &'static str)],
    },
}

/// What upstream's Go types say about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Strategic merge patch's `patchStrategy` (`merge`, `retainKeys`, `merge,retainKeys`, `replace`); empty
    /// is the default (maps merge, lists are replaced).
    pub strategy: &'static str,
    /// Strategic merge patch's `patchMergeKey`: the key that identifies the items of a merged list of maps.
    pub merge_key: Option<&'static str>,
    /// Server-side apply's list type.
    pub list: ListType,
    /// A map (or struct) owned and replaced as a whole by server-side apply.
    pub atomic: bool,
}

impl Field {
    /// Whether strategic merge patch merges this list (instead of replacing it).
    pub fn merges(&self) -> bool {
        self.strategy.split(',').any(|s| s == "merge")
    }

    const fn defaults(mut self, defaults: &'static [(&'static str, &'static str)]) -> Field {
        if let ListType::Map { keys, .. } = self.list {
            self.list = ListType::Map { keys, defaults };
        }
        self
    }
}

const DEFAULT: Field = Field {
    strategy: "",
    merge_key: None,
    list: ListType::Atomic,
    atomic: false,
};

/// What a field without an entry does: maps merge, lists are replaced (atomic).
impl Default for Field {
    fn default() -> Self {
        DEFAULT
    }
}

/// A list of maps merged by key, by both strategic merge patch (`merge_key`) and apply (`keys`).
const fn keyed(
    strategy: &'static str,
    merge_key: &'static str,
    keys: &'static [&'static str],
) -> Field {
    Field {
        strategy,
        merge_key: Some(merge_key),
        list: ListType::Map {
            keys,
            defaults: &[],
        },
        ..DEFAULT
    }
}

/// A list of maps that apply merges by key and strategic merge patch replaces.
const fn map_list(keys: &'static [&'static str]) -> Field {
    Field {
        list: ListType::Map {
            keys,
            defaults: &[],
        },
        ..DEFAULT
    }
}

/// A list of scalars that strategic merge patch merges (a union) and apply treats as a set.
const fn merged_set(strategy: &'static str) -> Field {
    Field {
        strategy,
        list: ListType::Set,
        ..DEFAULT
    }
}

/// A list of maps that strategic merge patch merges by key and apply replaces as a whole.
const fn smp_keyed(strategy: &'static str, merge_key: &'static str) -> Field {
    Field {
        strategy,
        merge_key: Some(merge_key),
        ..DEFAULT
    }
}

/// A strategic merge patch strategy on a map field (`retainKeys`, `replace`).
const fn strategy(strategy: &'static str) -> Field {
    Field {
        strategy,
        ..DEFAULT
    }
}

/// A list of scalars that apply treats as a set and strategic merge patch replaces.
const SET: Field = Field {
    list: ListType::Set,
    ..DEFAULT
};

/// A map apply replaces as a whole.
const ATOMIC_MAP: Field = Field {
    atomic: true,
    ..DEFAULT
};

/// Every field whose merging is not the default, by upstream's definition name and JSON field name.
/// Defaults: maps and structs merge key by key; lists are replaced whole (atomic).
#[rustfmt::skip]
static FIELDS: &[(&str, &str, Field)] = &[
    ("io.k8s.api.admissionregistration.v1.MutatingAdmissionPolicySpec", "matchConditions", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec", "validationActions", SET),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus", "conditions", map_list(&["type"])),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec", "matchConditions", keyed("merge", "name", &["name"])),
    ("io.k8s.api.admissionregistration.v1beta1.MutatingAdmissionPolicySpec", "matchConditions", keyed("merge", "name", &["name"])),
    ("io.k8s.api.apiserverinternal.v1alpha1.ServerStorageVersion", "decodableVersions", SET),
    ("io.k8s.api.apiserverinternal.v1alpha1.ServerStorageVersion", "servedVersions", SET),
    ("io.k8s.api.apiserverinternal.v1alpha1.StorageVersionStatus", "conditions", map_list(&["type"])),
    ("io.k8s.api.apiserverinternal.v1alpha1.StorageVersionStatus", "storageVersions", map_list(&["apiServerID"])),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", strategy("retainKeys")),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.batch.v1.JobSchedulingConfiguration", "resourceClaims", keyed("merge", "name", &["name"])),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", smp_keyed("merge", "type")),
    ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", SET),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", SET),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", SET),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", map_list(&["type"])),
    ("io.k8s.api.certificates.v1.PodCertificateRequestStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.certificates.v1beta1.PodCertificateRequestStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.ComponentStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.Container", "env", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.Container", "ports", keyed("merge", "containerPort", &["containerPort", "protocol"]).defaults(&[("protocol", "TCP")])),
    ("io.k8s.api.core.v1.Container", "volumeDevices", keyed("merge", "devicePath", &["devicePath"])),
    ("io.k8s.api.core.v1.Container", "volumeMounts", keyed("merge", "mountPath", &["mountPath"])),
    ("io.k8s.api.core.v1.ContainerRestartRuleOnExitCodes", "values", SET),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", keyed("merge", "mountPath", &["mountPath"])),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", keyed("merge", "containerPort", &["containerPort", "protocol"]).defaults(&[("protocol", "TCP")])),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", keyed("merge", "devicePath", &["devicePath"])),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", keyed("merge", "mountPath", &["mountPath"])),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus", "containers", SET),
    ("io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus", "mapping", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus", "overhead", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.NodePodPreemptionPolicy", "disableResizePreemption", SET),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", merged_set("merge")),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.PodSpec", "containers", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.PodSpec", "evictionResponders", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", keyed("merge", "ip", &["ip"])),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", keyed("merge", "name", &["name"]).defaults(&[("name", "")])),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector", ATOMIC_MAP),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", keyed("merge", "topologyKey", &["topologyKey", "whenUnsatisfiable"])),
    ("io.k8s.api.core.v1.PodSpec", "volumes", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.core.v1.PodStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", smp_keyed("merge", "ip")),
    ("io.k8s.api.core.v1.PodStatus", "nodeAllocatableResourceClaimStatuses", keyed("merge", "resourceClaimName", &["resourceClaimName"])),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", keyed("merge", "ip", &["ip"])),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.core.v1.PodStatus", "volumeHealth", map_list(&["name"])),
    ("io.k8s.api.core.v1.PodVolumeHealth", "healthConditions", keyed("merge", "status", &["status", "reason"])),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector", ATOMIC_MAP),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.ResourceRequirements", "claims", map_list(&["name"])),
    ("io.k8s.api.core.v1.ResourceStatus", "resources", map_list(&["resourceID"])),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", keyed("merge", "name", &["name"])),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", keyed("merge", "port", &["port", "protocol"]).defaults(&[("protocol", "TCP")])),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", ATOMIC_MAP),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.core.v1.VolumeHealthStatus", "healthConditions", keyed("merge", "status", &["status", "reason"])),
    ("io.k8s.api.core.v1.VolumeMount", "bindMountOptions", SET),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", SET),
    ("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "nonResourceURLs", SET),
    ("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "verbs", SET),
    ("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "apiGroups", SET),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "namespaces", SET),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "resources", SET),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "verbs", SET),
    ("io.k8s.api.lifecycle.v1alpha1.EvictionRequestStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.lifecycle.v1alpha1.EvictionStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.lifecycle.v1alpha1.EvictionStatus", "requesters", keyed("merge", "name", &["name"])),
    ("io.k8s.api.lifecycle.v1alpha1.EvictionStatus", "responders", keyed("merge", "name", &["name"])),
    ("io.k8s.api.lifecycle.v1alpha1.EvictionStatus", "targetResponders", keyed("merge", "name", &["name"])),
    ("io.k8s.api.networking.v1.ServiceCIDRStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.node.v1.Scheduling", "nodeSelector", ATOMIC_MAP),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", strategy("replace")),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.resource.v1.AllocatedDeviceStatus", "conditions", map_list(&["type"])),
    ("io.k8s.api.resource.v1.DeviceRequestAllocationResult", "skipNodeOperations", SET),
    ("io.k8s.api.resource.v1.DeviceTaintRuleStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.resource.v1.ResourceClaimStatus", "devices", map_list(&["driver", "device", "pool", "shareID"])),
    ("io.k8s.api.resource.v1.ResourceClaimStatus", "reservedFor", keyed("merge", "uid", &["uid"])),
    ("io.k8s.api.resource.v1.ResourceSliceSpec", "skipNodeOperations", SET),
    ("io.k8s.api.resource.v1alpha3.DeviceTaintRuleStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.resource.v1alpha3.ResourcePoolStatusRequestStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.resource.v1beta1.AllocatedDeviceStatus", "conditions", map_list(&["type"])),
    ("io.k8s.api.resource.v1beta1.DeviceRequestAllocationResult", "skipNodeOperations", SET),
    ("io.k8s.api.resource.v1beta1.ResourceClaimStatus", "devices", map_list(&["driver", "device", "pool", "shareID"])),
    ("io.k8s.api.resource.v1beta1.ResourceClaimStatus", "reservedFor", keyed("merge", "uid", &["uid"])),
    ("io.k8s.api.resource.v1beta1.ResourceSliceSpec", "skipNodeOperations", SET),
    ("io.k8s.api.resource.v1beta2.AllocatedDeviceStatus", "conditions", map_list(&["type"])),
    ("io.k8s.api.resource.v1beta2.DeviceRequestAllocationResult", "skipNodeOperations", SET),
    ("io.k8s.api.resource.v1beta2.DeviceTaintRuleStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.resource.v1beta2.ResourceClaimStatus", "devices", map_list(&["driver", "device", "pool", "shareID"])),
    ("io.k8s.api.resource.v1beta2.ResourceClaimStatus", "reservedFor", keyed("merge", "uid", &["uid"])),
    ("io.k8s.api.resource.v1beta2.ResourceSliceSpec", "skipNodeOperations", SET),
    ("io.k8s.api.scheduling.v1alpha3.CompositePodGroupStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.scheduling.v1alpha3.CompositePodGroupTemplate", "compositePodGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.scheduling.v1alpha3.CompositePodGroupTemplate", "podGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.scheduling.v1alpha3.PodGroupSpec", "resourceClaims", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.scheduling.v1alpha3.PodGroupStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.scheduling.v1alpha3.PodGroupStatus", "resourceClaimStatuses", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.scheduling.v1alpha3.PodGroupTemplate", "resourceClaims", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.scheduling.v1alpha3.WorkloadSpec", "compositePodGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.scheduling.v1alpha3.WorkloadSpec", "podGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.scheduling.v1beta1.CompositePodGroupTemplate", "compositePodGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.scheduling.v1beta1.CompositePodGroupTemplate", "podGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.scheduling.v1beta1.PodGroupSpec", "resourceClaims", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.scheduling.v1beta1.PodGroupStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.scheduling.v1beta1.PodGroupStatus", "resourceClaimStatuses", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.scheduling.v1beta1.PodGroupTemplate", "resourceClaims", keyed("merge,retainKeys", "name", &["name"])),
    ("io.k8s.api.scheduling.v1beta1.WorkloadSpec", "compositePodGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.scheduling.v1beta1.WorkloadSpec", "podGroupTemplates", map_list(&["name"])),
    ("io.k8s.api.storage.v1.CSIDriverSpec", "volumeLifecycleModes", SET),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", keyed("merge", "name", &["name"])),
    ("io.k8s.api.storage.v1.CSINodeStatus", "storageHealth", keyed("merge", "name", &["name"])),
    ("io.k8s.api.storagemigration.v1.StorageVersionMigrationStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.api.storagemigration.v1beta1.StorageVersionMigrationStatus", "conditions", keyed("merge", "type", &["type"])),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "conditions", map_list(&["type"])),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", keyed("merge", "rule", &["rule"])),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", merged_set("merge")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", keyed("merge", "uid", &["uid"])),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", "conditions", keyed("merge", "type", &["type"])),
];

/// Structs apply owns as a whole (`+structType=atomic`): references and selectors.
#[rustfmt::skip]
static ATOMIC_TYPES: &[&str] = &[
    "io.k8s.api.admissionregistration.v1.MatchResources",
    "io.k8s.api.admissionregistration.v1.NamedRuleWithOperations",
    "io.k8s.api.admissionregistration.v1.ParamKind",
    "io.k8s.api.admissionregistration.v1.ParamRef",
    "io.k8s.api.admissionregistration.v1.Variable",
    "io.k8s.api.admissionregistration.v1alpha1.MatchResources",
    "io.k8s.api.admissionregistration.v1alpha1.NamedRuleWithOperations",
    "io.k8s.api.admissionregistration.v1alpha1.ParamKind",
    "io.k8s.api.admissionregistration.v1alpha1.ParamRef",
    "io.k8s.api.admissionregistration.v1beta1.MatchResources",
    "io.k8s.api.admissionregistration.v1beta1.NamedRuleWithOperations",
    "io.k8s.api.admissionregistration.v1beta1.ParamKind",
    "io.k8s.api.admissionregistration.v1beta1.ParamRef",
    "io.k8s.api.admissionregistration.v1beta1.Variable",
    "io.k8s.api.autoscaling.v1.CrossVersionObjectReference",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.EvictionResponder",
    "io.k8s.api.core.v1.FileKeySelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.api.lifecycle.v1alpha1.Requester",
    "io.k8s.api.lifecycle.v1alpha1.TargetResponder",
    "io.k8s.api.networking.v1.ServiceBackendPort",
    "io.k8s.api.rbac.v1.RoleRef",
    "io.k8s.api.rbac.v1.Subject",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
];

static BY_TYPE: LazyLock<HashMap<&'static str, HashMap<&'static str, Field>>> =
    LazyLock::new(|| {
        let mut by_type: HashMap<&'static str, HashMap<&'static str, Field>> = HashMap::new();
        for (definition, name, field) in FIELDS {
            by_type.entry(definition).or_default().insert(name, *field);
        }
        by_type
    });

/// The merge metadata of a field of a built-in type, when it is not the default.
pub fn field(definition: &str, name: &str) -> Option<Field> {
    BY_TYPE.get(definition)?.get(name).copied()
}

/// Whether a built-in struct is owned as a whole by server-side apply.
pub fn atomic_type(definition: &str) -> bool {
    ATOMIC_TYPES.contains(&definition)
}

/// Adds upstream's merge extensions (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
/// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`) to k8s-openapi's
/// schemas, keyed by definition name, as upstream's OpenAPI documents carry them: kubectl computes its
/// client-side apply patches from them.
pub fn annotate(definitions: &mut Map<String, Value>) {
    for (definition, name, field) in FIELDS {
        let Some(property) = definitions
            .get_mut(*definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*name))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if !field.strategy.is_empty() {
            property.insert("x-kubernetes-patch-strategy".into(), json!(field.strategy));
        }
        if let Some(key) = field.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        let is_list = property.get("type").and_then(Value::as_str) == Some("array");
        match field.list {
            ListType::Map { keys, .. } => {
                property.insert("x-kubernetes-list-type".into(), json!("map"));
                property.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
            ListType::Set => {
                property.insert("x-kubernetes-list-type".into(), json!("set"));
            }
            ListType::Atomic if is_list => {
                property.insert("x-kubernetes-list-type".into(), json!("atomic"));
            }
            ListType::Atomic => {}
        }
        if field.atomic {
            property.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
    }
    for definition in ATOMIC_TYPES {
        if let Some(Value::Object(schema)) = definitions.get_mut(*definition) {
            schema.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
    }
}

/// The schemas of one built-in kind and of every type it refers to, as k8s-openapi describes them (without
/// descriptions, which nothing here reads).
pub struct Types {
    root: String,
    definitions: Map<String, Value>,
}

impl Types {
    /// The schemas of a Rust type of k8s-openapi.
    pub fn of<T: JsonSchema>() -> Types {
        Types::build(|generator| {
            generator.subschema_for::<T>();
            T::schema_name().into_owned()
        })
    }

    /// The schemas a definer puts into a generator; the definer returns the name of the root type.
    pub fn build(define: impl FnOnce(&mut SchemaGenerator) -> String) -> Types {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let root = define(&mut generator);
        let mut definitions = generator.take_definitions(true);
        for schema in definitions.values_mut() {
            strip_descriptions(schema);
        }
        Types { root, definitions }
    }

    pub fn root(&self) -> Node<'_> {
        match self.definitions.get_key_value(&self.root) {
            Some((name, schema)) => Node {
                types: self,
                schema,
                name: Some(name),
                field: None,
            },
            None => Node {
                types: self,
                schema: &Value::Null,
                name: None,
                field: None,
            },
        }
    }
}

fn strip_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("description");
            for value in map.values_mut() {
                strip_descriptions(value);
            }
        }
        Value::Array(list) => list.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// The schemas of a served built-in kind (built once, when first needed), or None for kinds k8s-openapi
/// does not type.
pub fn kind_types(group: &str, version: &str, kind: &str) -> Option<Arc<Types>> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Types>>>> = LazyLock::new(Default::default);
    let key = format!("{group}/{version}/{kind}");
    // Entries are only ever added whole; a panic elsewhere leaves the map usable.
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(types) = cache.get(&key) {
        return Some(types.clone());
    }
    let definer = crate::openapi::kinds::find(group, version, kind)?;
    let types = Arc::new(Types::build(definer.define));
    cache.insert(key, types.clone());
    Some(types)
}

/// ObjectMeta's schemas: custom resources' `metadata` merges as the built-in kinds' does.
pub fn object_meta() -> &'static Types {
    static META: LazyLock<Types> =
        LazyLock::new(Types::of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>);
    &META
}

/// A place in a built-in kind's schema: a type, reached through a field whose metadata applies to it.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    types: &'a Types,
    schema: &'a Value,
    /// The type's name when the schema is a definition itself (a root), not a reference to one.
    name: Option<&'a str>,
    /// The metadata of the field this node is the value of (for list items and map values: none).
    field: Option<Field>,
}

impl<'a> Node<'a> {
    /// The schema with `$ref`s (plain, or as the only `allOf` member) followed, and the type's name.
    fn resolved(&self) -> (&'a Value, Option<&'a str>) {
        let mut schema = self.schema;
        let mut name = self.name;
        // References chain at most a few levels; the bound guards against a cyclic definition.
        for _ in 0..8 {
            let reference = schema.get("$ref").or_else(|| {
                schema
                    .get("allOf")
                    .and_then(Value::as_array)
                    .filter(|all| all.len() == 1)
                    .and_then(|all| all[0].get("$ref"))
            });
            let Some(target) = reference
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
            else {
                break;
            };
            let Some((key, definition)) = self.types.definitions.get_key_value(target) else {
                break;
            };
            schema = definition;
            name = Some(key.as_str());
        }
        (schema, name)
    }

    /// The upstream name of the node's type, when it is a named type.
    pub fn type_name(&self) -> Option<&'a str> {
        self.resolved().1
    }

    fn meta(&self) -> Field {
        self.field.unwrap_or(DEFAULT)
    }

    /// Whether the node's type declares `name` as a field (a struct field, not a map key).
    pub fn declares(&self, name: &str) -> bool {
        self.resolved()
            .0
            .get("properties")
            .and_then(|p| p.get(name))
            .is_some()
    }

    /// The node of a struct field or of a map's values; None for a field the type does not know.
    pub fn child(&self, name: &str) -> Option<Node<'a>> {
        let (schema, type_name) = self.resolved();
        if let Some(property) = schema.get("properties").and_then(|p| p.get(name)) {
            return Some(Node {
                types: self.types,
                schema: property,
                name: None,
                field: type_name.and_then(|t| field(t, name)),
            });
        }
        schema
            .get("additionalProperties")
            .filter(|a| a.is_object())
            .map(|values| Node {
                types: self.types,
                schema: values,
                name: None,
                field: None,
            })
    }

    /// The node of a list's items.
    pub fn items(&self) -> Option<Node<'a>> {
        let (schema, _) = self.resolved();
        schema
            .get("items")
            .filter(|i| i.is_object())
            .map(|items| Node {
                types: self.types,
                schema: items,
                name: None,
                field: None,
            })
    }

    /// Server-side apply's list type of this (list) node.
    pub fn list_type(&self) -> ListType {
        self.meta().list
    }

    /// Whether server-side apply owns this map or struct as a whole.
    pub fn atomic(&self) -> bool {
        self.meta().atomic || self.type_name().is_some_and(atomic_type)
    }

    /// Strategic merge patch's metadata of the field this node is the value of.
    pub fn patch(&self) -> Field {
        self.meta()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, Service};

    #[test]
    fn every_entry_names_a_field_k8s_openapi_knows() {
        let mut definitions = Map::new();
        for rt in crate::registry::Registry::new().all() {
            if let Some(types) = kind_types(&rt.group, &rt.version, &rt.kind) {
                definitions.extend(types.definitions.clone());
            }
        }
        let aggregator =
            Types::of::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>();
        definitions.extend(aggregator.definitions);
        let mut checked = 0;
        for (definition, name, _) in FIELDS {
            let Some(schema) = definitions.get(*definition) else {
                continue;
            };
            assert!(
                schema["properties"].get(*name).is_some(),
                "{definition} has no field {name}"
            );
            checked += 1;
        }
        assert!(
            checked >= 40,
            "only {checked} entries are reachable from served kinds"
        );
        for definition in ATOMIC_TYPES {
            if let Some(schema) = definitions.get(*definition) {
                assert!(schema["properties"].is_object(), "{definition}");
            }
        }
    }

    #[test]
    fn pod_containers_merge_by_name_and_their_ports_by_port_and_protocol() {
        let types = Types::of::<Pod>();
        let spec = types.root().child("spec").unwrap();
        let containers = spec.child("containers").unwrap();
        assert_eq!(containers.patch().merge_key, Some("name"));
        assert!(containers.patch().merges());
        let container = containers.items().unwrap();
        assert_eq!(container.type_name(), Some("io.k8s.api.core.v1.Container"));
        let ports = container.child("ports").unwrap();
        assert_eq!(ports.patch().merge_key, Some("containerPort"));
        assert_eq!(
            ports.list_type(),
            ListType::Map {
                keys: &["containerPort", "protocol"],
                defaults: &[("protocol", "TCP")]
            }
        );
        let tolerations = spec.child("tolerations").unwrap();
        assert!(!tolerations.patch().merges());
        assert_eq!(tolerations.list_type(), ListType::Atomic);
        assert!(spec.child("nodeSelector").unwrap().atomic());
        let finalizers = types
            .root()
            .child("metadata")
            .unwrap()
            .child("finalizers")
            .unwrap();
        assert!(finalizers.patch().merges() && finalizers.patch().merge_key.is_none());
        assert!(!spec.declares("bogus") && spec.child("bogus").is_none());
    }

    #[test]
    fn map_values_and_atomic_structs_are_found() {
        let types = Types::of::<Service>();
        let meta = types.root().child("metadata").unwrap();
        let labels = meta.child("labels").unwrap();
        assert!(!labels.declares("app"));
        assert!(labels.child("app").is_some());
        let owner = meta.child("ownerReferences").unwrap().items().unwrap();
        assert!(owner.atomic());
        let ports = types.root().child("spec").unwrap().child("ports").unwrap();
        assert_eq!(ports.patch().merge_key, Some("port"));
    }

    #[test]
    fn annotated_definitions_carry_upstream_extensions() {
        let mut generator = SchemaSettings::openapi3().into_generator();
        generator.subschema_for::<Pod>();
        let mut definitions = generator.take_definitions(true);
        annotate(&mut definitions);
        let containers = &definitions["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(
            definitions["io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"]["x-kubernetes-map-type"],
            "atomic"
        );
    }
}
