//! What the server serves: the built-in kinds (typed by k8s-openapi) and the resources of every established
//! CustomResourceDefinition. Discovery documents are rendered from here; handlers look resources up here.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::convert::{self, Conversion};
use crate::store::ResourceKey;

/// What `status` looks like when an object of this kind is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOnCreate {
    /// Status is written by controllers through `/status`; a client's create cannot set it.
    Reset,
    /// Clients create the object with its status (Nodes registered by a kubelet).
    Keep,
}

/// How an object's body is checked beyond metadata.
#[derive(Clone)]
pub enum Schema {
    /// A built-in kind: the body must decode into its k8s-openapi type.
    Typed(fn(&Value) -> Result<(), String>),
    /// A custom resource: the CRD version's structural openAPIV3Schema (when it has one).
    Structural(Option<Arc<Value>>),
}

#[derive(Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    /// The plural resource name used in URLs.
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub status_on_create: StatusOnCreate,
    /// Whether `metadata.generation` is maintained (bumped on spec changes).
    pub generation: bool,
    /// Field-selector labels beyond metadata.name/metadata.namespace, each with the JSON path it reads.
    pub field_labels: Vec<(String, String)>,
    pub schema: Schema,
    /// Custom resources must be updated with a resourceVersion; most built-ins may be updated unconditionally.
    pub unconditional_update: bool,
    /// Where the `scale` subresource reads and writes replicas, when the resource has one.
    pub scale: Option<ScalePaths>,
    /// Served from another resource's storage, converted on the way in and out (events.k8s.io Events).
    pub conversion: Option<Conversion>,
}

/// JSON paths (dotted, without the leading dot) behind a `scale` subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// A path to a serialized label selector (CRDs), or `None` when it is derived from `spec.selector`.
    pub label_selector: Option<String>,
}

impl ScalePaths {
    fn builtin() -> Self {
        ScalePaths {
            spec_replicas: "spec.replicas".into(),
            status_replicas: "status.replicas".into(),
            label_selector: None,
        }
    }
}

impl ResourceType {
    /// Where the objects live: the resource's own storage, or the one it is served from.
    pub fn key(&self) -> ResourceKey {
        match self.conversion {
            Some(conversion) => conversion.storage(),
            None => ResourceKey::new(&self.group, &self.resource),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `stacks.berth.dev`: how upstream names a resource in messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Pod` or `Stack.berth.dev`: how upstream names a kind in validation messages.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn is_custom(&self) -> bool {
        matches!(self.schema, Schema::Structural(_))
    }

    /// The JSON path behind a field-selector label, if this resource supports it.
    pub fn field_path(&self, label: &str) -> Option<String> {
        match label {
            "metadata.name" | "metadata.namespace" => Some(label.to_owned()),
            _ => self
                .field_labels
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, path)| path.clone()),
        }
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut main = json!({
            "name": self.resource,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut entries = vec![main];
        let sub = |name: &str, kind: &str, group: Option<(&str, &str)>, verbs: &[&str]| {
            let mut entry = json!({
                "name": format!("{}/{name}", self.resource),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if let Some((group, version)) = group {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            entry
        };
        if self.status_subresource {
            entries.push(sub("status", &self.kind, None, &["get", "patch", "update"]));
        }
        if self.scale.is_some() {
            entries.push(sub(
                "scale",
                "Scale",
                Some(("autoscaling", "v1")),
                &["get", "patch", "update"],
            ));
        }
        match (self.group.as_str(), self.resource.as_str()) {
            ("", "pods") => entries.push(sub("binding", "Binding", None, &["create"])),
            ("", "namespaces") => entries.push(sub("finalize", "Namespace", None, &["update"])),
            _ => {}
        }
        entries
    }
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    T::deserialize(value).map(|_| ()).map_err(|e| e.to_string())
}

/// A built-in kind, described with a small builder so the table below reads as one line per kind.
struct Builtin {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    status_on_create: StatusOnCreate,
    generation: bool,
    field_labels: &'static [(&'static str, &'static str)],
    scale: bool,
    conversion: Option<Conversion>,
    decode: fn(&Value) -> Result<(), String>,
}

const NAMESPACED: bool = true;
const CLUSTER: bool = false;

fn kind<T: DeserializeOwned>(
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        resource,
        kind,
        namespaced,
        short_names: &[],
        categories: &[],
        status: false,
        status_on_create: StatusOnCreate::Reset,
        generation: false,
        field_labels: &[],
        scale: false,
        conversion: None,
        decode: typed::<T>,
    }
}

impl Builtin {
    fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }

    fn categories(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }

    /// Has a `status` subresource, so status is written apart from the rest.
    fn status(mut self) -> Self {
        self.status = true;
        self
    }

    /// Clients create it with its status (Nodes registered by a kubelet).
    fn status_kept_on_create(mut self) -> Self {
        self.status_on_create = StatusOnCreate::Keep;
        self
    }

    fn generation(mut self) -> Self {
        self.generation = true;
        self
    }

    /// Has a `scale` subresource over `spec.replicas`.
    fn scale(mut self) -> Self {
        self.scale = true;
        self
    }

    /// Served from another resource's storage through `conversion`.
    fn served_from(mut self, conversion: Conversion) -> Self {
        self.conversion = Some(conversion);
        self
    }

    fn fields(mut self, labels: &'static [(&'static str, &'static str)]) -> Self {
        self.field_labels = labels;
        self
    }
}

const POD_FIELDS: &[(&str, &str)] = &[
    ("spec.nodeName", "spec.nodeName"),
    ("spec.restartPolicy", "spec.restartPolicy"),
    ("spec.schedulerName", "spec.schedulerName"),
    ("spec.serviceAccountName", "spec.serviceAccountName"),
    ("spec.hostNetwork", "spec.hostNetwork"),
    ("status.phase", "status.phase"),
    ("status.podIP", "status.podIP"),
    ("status.nominatedNodeName", "status.nominatedNodeName"),
];

const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject.kind", "involvedObject.kind"),
    ("involvedObject.namespace", "involvedObject.namespace"),
    ("involvedObject.name", "involvedObject.name"),
    ("involvedObject.uid", "involvedObject.uid"),
    ("involvedObject.apiVersion", "involvedObject.apiVersion"),
    (
        "involvedObject.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("involvedObject.fieldPath", "involvedObject.fieldPath"),
    ("reason", "reason"),
    ("reportingComponent", "reportingComponent"),
    ("source", "source.component"),
    ("type", "type"),
];

fn builtins() -> Vec<Builtin> {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps, autoscaling::v2 as autoscaling,
        batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
        core::v1 as core, discovery::v1 as discovery, events::v1 as events,
        flowcontrol::v1 as flowcontrol, networking::v1 as networking, node::v1 as node,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
    const ALL: &[&str] = &["all"];
    vec![
        // core/v1
        kind::<core::ConfigMap>("", "v1", "configmaps", "ConfigMap", NAMESPACED).short(&["cm"]),
        kind::<core::Endpoints>("", "v1", "endpoints", "Endpoints", NAMESPACED).short(&["ep"]),
        kind::<core::Event>("", "v1", "events", "Event", NAMESPACED)
            .short(&["ev"])
            .fields(EVENT_FIELDS),
        kind::<core::LimitRange>("", "v1", "limitranges", "LimitRange", NAMESPACED)
            .short(&["limits"]),
        kind::<core::Namespace>("", "v1", "namespaces", "Namespace", CLUSTER)
            .short(&["ns"])
            .status()
            .fields(&[("status.phase", "status.phase")]),
        kind::<core::Node>("", "v1", "nodes", "Node", CLUSTER)
            .short(&["no"])
            .status()
            .status_kept_on_create()
            .fields(&[("spec.unschedulable", "spec.unschedulable")]),
        kind::<core::PersistentVolumeClaim>(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            NAMESPACED,
        )
        .short(&["pvc"])
        .status(),
        kind::<core::PersistentVolume>("", "v1", "persistentvolumes", "PersistentVolume", CLUSTER)
            .short(&["pv"])
            .status(),
        kind::<core::Pod>("", "v1", "pods", "Pod", NAMESPACED)
            .short(&["po"])
            .categories(ALL)
            .status()
            .generation()
            .fields(POD_FIELDS),
        kind::<core::PodTemplate>("", "v1", "podtemplates", "PodTemplate", NAMESPACED),
        kind::<core::ReplicationController>(
            "",
            "v1",
            "replicationcontrollers",
            "ReplicationController",
            NAMESPACED,
        )
        .short(&["rc"])
        .categories(ALL)
        .status()
        .generation()
        .scale(),
        kind::<core::ResourceQuota>("", "v1", "resourcequotas", "ResourceQuota", NAMESPACED)
            .short(&["quota"])
            .status(),
        kind::<core::Secret>("", "v1", "secrets", "Secret", NAMESPACED).fields(&[("type", "type")]),
        kind::<core::ServiceAccount>("", "v1", "serviceaccounts", "ServiceAccount", NAMESPACED)
            .short(&["sa"]),
        kind::<core::Service>("", "v1", "services", "Service", NAMESPACED)
            .short(&["svc"])
            .categories(ALL)
            .status(),
        // apiregistration.k8s.io
        kind::<apiregistration::APIService>(
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "APIService",
            CLUSTER,
        )
        .categories(&["api-extensions"])
        .status(),
        // apps
        kind::<apps::ControllerRevision>(
            "apps",
            "v1",
            "controllerrevisions",
            "ControllerRevision",
            NAMESPACED,
        ),
        kind::<apps::DaemonSet>("apps", "v1", "daemonsets", "DaemonSet", NAMESPACED)
            .short(&["ds"])
            .categories(ALL)
            .status()
            .generation(),
        kind::<apps::Deployment>("apps", "v1", "deployments", "Deployment", NAMESPACED)
            .short(&["deploy"])
            .categories(ALL)
            .status()
            .generation()
            .scale(),
        kind::<apps::ReplicaSet>("apps", "v1", "replicasets", "ReplicaSet", NAMESPACED)
            .short(&["rs"])
            .categories(ALL)
            .status()
            .generation()
            .scale(),
        kind::<apps::StatefulSet>("apps", "v1", "statefulsets", "StatefulSet", NAMESPACED)
            .short(&["sts"])
            .categories(ALL)
            .status()
            .generation()
            .scale(),
        // events.k8s.io
        kind::<events::Event>("events.k8s.io", "v1", "events", "Event", NAMESPACED)
            .short(&["ev"])
            .served_from(Conversion::EventsV1)
            .fields(convert::EVENTS_V1_FIELD_LABELS),
        // autoscaling
        kind::<autoscaling::HorizontalPodAutoscaler>(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            NAMESPACED,
        )
        .short(&["hpa"])
        .categories(ALL)
        .status(),
        // batch
        kind::<batch::CronJob>("batch", "v1", "cronjobs", "CronJob", NAMESPACED)
            .short(&["cj"])
            .categories(ALL)
            .status()
            .generation(),
        kind::<batch::Job>("batch", "v1", "jobs", "Job", NAMESPACED)
            .categories(ALL)
            .status()
            .generation(),
        // certificates.k8s.io
        kind::<certificates::CertificateSigningRequest>(
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            "CertificateSigningRequest",
            CLUSTER,
        )
        .short(&["csr"])
        .status(),
        // networking.k8s.io
        kind::<networking::IngressClass>(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "IngressClass",
            CLUSTER,
        ),
        kind::<networking::Ingress>(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            NAMESPACED,
        )
        .short(&["ing"])
        .status()
        .generation(),
        kind::<networking::NetworkPolicy>(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            NAMESPACED,
        )
        .short(&["netpol"])
        .generation(),
        // policy
        kind::<policy::PodDisruptionBudget>(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            NAMESPACED,
        )
        .short(&["pdb"])
        .status()
        .generation(),
        // rbac.authorization.k8s.io
        kind::<rbac::ClusterRoleBinding>(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            CLUSTER,
        ),
        kind::<rbac::ClusterRole>(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            CLUSTER,
        ),
        kind::<rbac::RoleBinding>(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            NAMESPACED,
        ),
        kind::<rbac::Role>(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            NAMESPACED,
        ),
        // storage.k8s.io
        kind::<storage::CSIDriver>("storage.k8s.io", "v1", "csidrivers", "CSIDriver", CLUSTER),
        kind::<storage::CSINode>("storage.k8s.io", "v1", "csinodes", "CSINode", CLUSTER),
        kind::<storage::StorageClass>(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            CLUSTER,
        )
        .short(&["sc"]),
        kind::<storage::VolumeAttachment>(
            "storage.k8s.io",
            "v1",
            "volumeattachments",
            "VolumeAttachment",
            CLUSTER,
        )
        .status(),
        // admissionregistration.k8s.io
        kind::<admission::MutatingWebhookConfiguration>(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            CLUSTER,
        )
        .categories(&["api-extensions"]),
        kind::<admission::ValidatingWebhookConfiguration>(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            CLUSTER,
        )
        .categories(&["api-extensions"]),
        // apiextensions.k8s.io
        kind::<apiextensions::CustomResourceDefinition>(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            CLUSTER,
        )
        .short(&["crd", "crds"])
        .categories(&["api-extensions"])
        .status()
        .generation(),
        // scheduling.k8s.io
        kind::<scheduling::PriorityClass>(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            CLUSTER,
        )
        .short(&["pc"]),
        // coordination.k8s.io
        kind::<coordination::Lease>("coordination.k8s.io", "v1", "leases", "Lease", NAMESPACED),
        // node.k8s.io
        kind::<node::RuntimeClass>(
            "node.k8s.io",
            "v1",
            "runtimeclasses",
            "RuntimeClass",
            CLUSTER,
        ),
        // discovery.k8s.io
        kind::<discovery::EndpointSlice>(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            NAMESPACED,
        ),
        // flowcontrol.apiserver.k8s.io
        kind::<flowcontrol::FlowSchema>(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "flowschemas",
            "FlowSchema",
            CLUSTER,
        )
        .status(),
        kind::<flowcontrol::PriorityLevelConfiguration>(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "prioritylevelconfigurations",
            "PriorityLevelConfiguration",
            CLUSTER,
        )
        .status(),
    ]
}

fn singular(kind: &str) -> String {
    kind.to_lowercase()
}

impl From<Builtin> for ResourceType {
    fn from(b: Builtin) -> Self {
        ResourceType {
            group: b.group.into(),
            version: b.version.into(),
            resource: b.resource.into(),
            singular: singular(b.kind),
            kind: b.kind.into(),
            list_kind: format!("{}List", b.kind),
            namespaced: b.namespaced,
            short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
            categories: b.categories.iter().map(|s| s.to_string()).collect(),
            status_subresource: b.status,
            status_on_create: b.status_on_create,
            generation: b.generation,
            field_labels: b
                .field_labels
                .iter()
                .map(|(l, p)| (l.to_string(), p.to_string()))
                .collect(),
            schema: Schema::Typed(b.decode),
            unconditional_update: true,
            scale: b.scale.then(ScalePaths::builtin),
            conversion: b.conversion,
        }
    }
}

/// The resources a CRD serves, one per served version.
pub fn crd_resources(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .map(|v| {
            let selectable = v["selectableFields"]
                .as_array()
                .map(|fields| {
                    fields
                        .iter()
                        .filter_map(|f| f["jsonPath"].as_str())
                        .map(|p| {
                            let path = p.trim_start_matches('.').to_owned();
                            (path.clone(), path)
                        })
                        .collect()
                })
                .unwrap_or_default();
            ResourceType {
                group: group.to_owned(),
                version: v["name"].as_str().unwrap_or_default().to_owned(),
                resource: plural.to_owned(),
                singular: names["singular"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| singular(kind)),
                kind: kind.to_owned(),
                list_kind: names["listKind"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{kind}List")),
                namespaced: spec["scope"].as_str() == Some("Namespaced"),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status_subresource: v["subresources"]["status"].is_object(),
                status_on_create: StatusOnCreate::Reset,
                generation: true,
                field_labels: selectable,
                schema: Schema::Structural(
                    v["schema"]["openAPIV3Schema"]
                        .as_object()
                        .map(|_| Arc::new(v["schema"]["openAPIV3Schema"].clone())),
                ),
                unconditional_update: false,
                scale: v["subresources"]["scale"].as_object().map(|scale| {
                    let path = |key: &str| {
                        scale
                            .get(key)
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .trim_start_matches('.')
                            .to_owned()
                    };
                    ScalePaths {
                        spec_replicas: path("specReplicasPath"),
                        status_replicas: path("statusReplicasPath"),
                        label_selector: Some(path("labelSelectorPath")).filter(|p| !p.is_empty()),
                    }
                }),
                conversion: None,
            }
        })
        .collect()
}

/// The served resources, keyed by group, version and plural.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    builtin: Vec<Arc<ResourceType>>,
    /// Custom resources by the CRD's name (`<plural>.<group>`).
    custom: BTreeMap<String, Vec<Arc<ResourceType>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let builtin = builtins()
            .into_iter()
            .map(|b| Arc::new(ResourceType::from(b)))
            .collect();
        Registry {
            inner: Arc::new(RwLock::new(Inner {
                builtin,
                custom: BTreeMap::new(),
            })),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Writers replace whole map entries; a poisoned lock still holds a consistent map.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every served resource, built-in ones first. A CRD change replaces its resources with new `Arc`s.
    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        let inner = self.read();
        inner
            .builtin
            .iter()
            .chain(inner.custom.values().flatten())
            .cloned()
            .collect()
    }

    pub fn lookup(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceType>> {
        self.all()
            .into_iter()
            .find(|r| r.group == group && r.version == version && r.resource == resource)
    }

    pub fn set_crd(&self, name: &str, resources: Vec<ResourceType>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if resources.is_empty() {
            inner.custom.remove(name);
        } else {
            inner.custom.insert(
                name.to_owned(),
                resources.into_iter().map(Arc::new).collect(),
            );
        }
    }

    pub fn remove_crd(&self, name: &str) {
        self.set_crd(name, Vec::new());
    }

    /// Group names in discovery order (built-in groups first, then custom ones), each with its versions.
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            if r.group.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        groups
    }

    /// `/apis`: an APIGroupList.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .map(|(group, versions)| group_document(&group, &versions))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/apis/<group>`: an APIGroup.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        self.groups()
            .into_iter()
            .find(|(g, _)| g == group)
            .map(|(g, versions)| {
                let mut doc = group_document(&g, &versions);
                doc["kind"] = json!("APIGroup");
                doc["apiVersion"] = json!("v1");
                doc
            })
    }

    /// `/api/v1` or `/apis/<group>/<version>`: an APIResourceList.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let resources: Vec<Value> = self
            .all()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .flat_map(|r| r.discovery_entries())
            .collect();
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }

    /// Whether a CRD's names clash with a served resource other than its own.
    pub fn name_conflict(
        &self,
        crd_name: &str,
        group: &str,
        plural: &str,
        kind: &str,
    ) -> Option<String> {
        let inner = self.read();
        let others = inner.builtin.iter().chain(
            inner
                .custom
                .iter()
                .filter(|(n, _)| *n != crd_name)
                .flat_map(|(_, r)| r),
        );
        for r in others {
            if r.group != group {
                continue;
            }
            if r.resource == plural {
                return Some(format!("{plural:?} is already in use"));
            }
            if r.kind == kind {
                return Some(format!("{kind:?} is already in use"));
            }
        }
        None
    }
}

fn group_document(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_lists_pods_with_short_name_and_status_subresource() {
        let registry = Registry::new();
        let list = registry.resource_list("", "v1").unwrap();
        let resources = list["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["namespaced"], true);
        assert!(resources.iter().any(|r| r["name"] == "pods/status"));
    }

    #[test]
    fn crd_versions_become_served_resources() {
        let registry = Registry::new();
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        });
        registry.set_crd("widgets.example.com", crd_resources(&crd));
        let widget = registry.lookup("example.com", "v1", "widgets").unwrap();
        assert!(widget.status_subresource && widget.namespaced && widget.is_custom());
        assert!(registry.lookup("example.com", "v0", "widgets").is_none());
        assert_eq!(
            registry.api_group("example.com").unwrap()["preferredVersion"]["version"],
            "v1"
        );
        assert!(
            registry
                .name_conflict("other.example.com", "example.com", "widgets", "Other")
                .is_some()
        );
        registry.remove_crd("widgets.example.com");
        assert!(registry.lookup("example.com", "v1", "widgets").is_none());
    }
}
