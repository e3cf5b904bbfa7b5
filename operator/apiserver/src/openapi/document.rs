//! One group-version's OpenAPI 3.0 document. Built-in kinds take their schemas from k8s-openapi (schemars,
//! with its OpenAPI 3.0 settings: `$ref`s into `#/components/schemas`, `$ref` siblings moved into `allOf`
//! as upstream does); custom resources take their CRD version's openAPIV3Schema, named as upstream names
//! them (`dev.berth.v1alpha1.Stack`). Every kind's schema carries `x-kubernetes-group-version-kind`, which
//! `kubectl explain` and kubectl's patch and validation code look up.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::kinds;
use super::paths::{self, Refs, schema_ref};
use crate::registry::{ResourceType, Schema};

/// The group-version's document path under `/openapi/v3/`: `api/v1` or `apis/<group>/<version>`.
pub fn path_of(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Upstream's component name for a kind without a Go package: the group reversed, then version and kind
/// (`berth.dev/v1alpha1` `Stack` is `dev.berth.v1alpha1.Stack`).
pub fn rest_friendly_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').filter(|p| !p.is_empty()).rev().collect();
    parts.push(version);
    parts.push(kind);
    parts.join(".")
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// The `apiVersion`, `kind` and `metadata` properties every object has, with upstream's descriptions
/// (taken from a built-in kind's schema, so they read exactly as on a real cluster).
struct Standard {
    api_version: Value,
    kind: Value,
    metadata_description: Value,
}

impl Standard {
    fn new(generator: &mut SchemaGenerator) -> Self {
        let config_map = k8s_openapi::api::core::v1::ConfigMap::json_schema(generator);
        let property = |name: &str| {
            config_map
                .get("properties")
                .and_then(|p| p.get(name))
                .cloned()
                .unwrap_or_else(|| json!({"type": "string"}))
        };
        let metadata_description = property("metadata")
            .get("description")
            .cloned()
            .unwrap_or(Value::Null);
        Standard {
            api_version: property("apiVersion"),
            kind: property("kind"),
            metadata_description,
        }
    }

    fn metadata(&self, meta_name: &str) -> Value {
        let mut metadata = json!({"allOf": [schema_ref(meta_name)]});
        if !self.metadata_description.is_null() {
            metadata["description"] = self.metadata_description.clone();
        }
        metadata
    }
}

/// A custom resource's schema: its CRD's openAPIV3Schema (or any object when the CRD gives none), with the
/// standard properties the API server adds to every kind.
fn custom_kind_schema(rt: &ResourceType, standard: &Standard, object_meta: &str) -> Value {
    let mut schema = match &rt.schema {
        Schema::Structural(Some(structural)) if structural.is_object() => (**structural).clone(),
        _ => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    };
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    object.insert("type".into(), json!("object"));
    let properties = object
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !properties.is_object() {
        *properties = Value::Object(Map::new());
    }
    if let Some(properties) = properties.as_object_mut() {
        properties.insert("apiVersion".into(), standard.api_version.clone());
        properties.insert("kind".into(), standard.kind.clone());
        properties.insert("metadata".into(), standard.metadata(object_meta));
    }
    schema
}

fn list_schema(rt: &ResourceType, item: &str, standard: &Standard, list_meta: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}.", rt.list_kind, rt.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": standard.api_version,
            "kind": standard.kind,
            "items": {
                "description": format!("List of {}.", rt.resource),
                "type": "array",
                "items": schema_ref(item),
            },
            "metadata": {
                "allOf": [schema_ref(list_meta)],
                "description": "Standard list metadata.",
            },
        },
        "x-kubernetes-group-version-kind": [gvk(&rt.group, &rt.version, &rt.list_kind)],
    })
}

/// Upstream's OpenAPI 3.0 spelling of the two scalar unions, next to k8s-openapi's
/// `x-kubernetes-int-or-string`, so that validators that ignore extensions still check the type.
fn scalar_unions(schemas: &mut Map<String, Value>) {
    if let Some(Value::Object(quantity)) =
        schemas.get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity")
    {
        quantity.insert(
            "oneOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
    }
    if let Some(Value::Object(int_or_string)) =
        schemas.get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
    {
        int_or_string.insert("format".into(), json!("int-or-string"));
        int_or_string.insert(
            "oneOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
}

/// The OpenAPI document of the resources of one group-version.
pub fn build(resources: &[Arc<ResourceType>]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let standard = Standard::new(&mut generator);
    let object_meta = kinds::define::<meta::ObjectMeta>(&mut generator);
    let list_meta = kinds::define::<meta::ListMeta>(&mut generator);
    let status = kinds::define::<meta::Status>(&mut generator);
    let delete_options = kinds::define::<meta::DeleteOptions>(&mut generator);
    let patch = kinds::define::<meta::Patch>(&mut generator);
    let watch_event = kinds::define::<meta::WatchEvent<()>>(&mut generator);
    let scale = resources
        .iter()
        .any(|rt| rt.scale.is_some())
        .then(|| kinds::define::<k8s_openapi::api::autoscaling::v1::Scale>(&mut generator));

    let mut own = Map::new();
    let mut kinds = Vec::new();
    let mut paths = Map::new();
    for rt in resources {
        let typed = match rt.schema {
            Schema::Typed(_) => kinds::find(&rt.group, &rt.version, &rt.kind),
            Schema::Structural(_) => None,
        };
        let name = match typed {
            Some(kind) => (kind.define)(&mut generator),
            None => {
                let name = rest_friendly_name(&rt.group, &rt.version, &rt.kind);
                own.insert(
                    name.clone(),
                    custom_kind_schema(rt, &standard, &object_meta),
                );
                name
            }
        };
        let list = match name.strip_suffix(rt.kind.as_str()) {
            Some(prefix) => format!("{prefix}{}", rt.list_kind),
            None => format!("{name}List"),
        };
        own.insert(list.clone(), list_schema(rt, &name, &standard, &list_meta));
        let refs = Refs {
            kind: &name,
            list: &list,
            status: &status,
            delete_options: &delete_options,
            patch: &patch,
            watch_event: &watch_event,
            scale: scale.as_deref(),
        };
        paths::add(&mut paths, rt, &refs);
        kinds.push((name, gvk(&rt.group, &rt.version, &rt.kind)));
    }

    let mut schemas = generator.take_definitions(true);
    // Merge keys and list types, which k8s-openapi's schemas lack: kubectl reads them for client-side apply.
    crate::patchmeta::annotate(&mut schemas);
    schemas.extend(own);
    for (name, gvk) in kinds {
        let Some(Value::Object(schema)) = schemas.get_mut(&name) else {
            continue;
        };
        let list = schema
            .entry("x-kubernetes-group-version-kind")
            .or_insert_with(|| json!([]));
        match list.as_array_mut() {
            Some(list) if !list.contains(&gvk) => list.push(gvk),
            Some(_) => {}
            None => *list = json!([gvk]),
        }
    }
    scalar_unions(&mut schemas);

    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
        "security": [{"BearerToken": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Registry, crd_resources};

    fn stack_crd() -> Value {
        json!({
            "metadata": {"name": "stacks.berth.dev"},
            "spec": {
                "group": "berth.dev",
                "scope": "Namespaced",
                "names": {"plural": "stacks", "singular": "stack", "kind": "Stack", "listKind": "StackList"},
                "versions": [{
                    "name": "v1alpha1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {
                        "description": "A Stack runs a web app.",
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["app"],
                                "properties": {"app": {
                                    "description": "The web application.",
                                    "type": "object",
                                    "properties": {"image": {"type": "string", "description": "The image."}},
                                }},
                            },
                        },
                    }},
                }],
            },
        })
    }

    fn core_v1() -> Vec<Arc<ResourceType>> {
        Registry::new()
            .all()
            .into_iter()
            .filter(|r| r.group.is_empty())
            .collect()
    }

    /// Follows a local `$ref` (directly or as the single element of `allOf`).
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        let reference = schema["$ref"]
            .as_str()
            .or_else(|| schema["allOf"][0]["$ref"].as_str());
        match reference.and_then(|r| r.strip_prefix("#/components/schemas/")) {
            Some(name) => &doc["components"]["schemas"][name],
            None => schema,
        }
    }

    #[test]
    fn names_are_upstream_names() {
        assert_eq!(
            rest_friendly_name("berth.dev", "v1alpha1", "Stack"),
            "dev.berth.v1alpha1.Stack"
        );
        assert_eq!(
            rest_friendly_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
        assert_eq!(path_of("", "v1"), "api/v1");
        assert_eq!(path_of("apps", "v1"), "apis/apps/v1");
    }

    #[test]
    fn core_document_has_pod_with_its_kind_and_descriptions_reachable_through_refs() {
        let doc = build(&core_v1());
        let schemas = &doc["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert_eq!(
            schemas["io.k8s.api.core.v1.PodList"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "PodList"}])
        );
        // pods.spec.containers, as kubectl explain walks it.
        let spec = resolve(&doc, &pod["properties"]["spec"]);
        let containers = &spec["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        // The merge keys kubectl computes client-side apply patches with.
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert!(
            containers["description"]
                .as_str()
                .unwrap()
                .contains("containers")
        );
        let container = resolve(&doc, &containers["items"]);
        assert!(container["properties"]["image"]["description"].is_string());
        // A $ref with a description next to it is wrapped in allOf, as OpenAPI 3.0 ignores $ref siblings.
        let metadata = &pod["properties"]["metadata"];
        assert!(metadata.get("$ref").is_none(), "{metadata}");
        assert_eq!(
            metadata["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]["x-kubernetes-int-or-string"],
            true
        );
        assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"].is_object());
    }

    #[test]
    fn every_ref_resolves_and_no_draft_2020_keyword_is_left() {
        fn walk(doc: &Value, value: &Value, problems: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (key, child) in map {
                        if let ("properties", Value::Object(properties)) = (key.as_str(), child) {
                            // Property names are names, not keywords (JSONSchemaProps has `$ref`).
                            properties.values().for_each(|p| walk(doc, p, problems));
                            continue;
                        }
                        match key.as_str() {
                            "$ref" => {
                                let name = child
                                    .as_str()
                                    .and_then(|r| r.strip_prefix("#/components/schemas/"));
                                if name
                                    .is_none_or(|n| doc["components"]["schemas"].get(n).is_none())
                                {
                                    problems.push(format!("dangling {child}"));
                                }
                            }
                            "$defs" | "const" | "prefixItems" | "$schema" => {
                                problems.push(format!("keyword {key}"))
                            }
                            "type" if child.is_array() => problems.push(format!("type {child}")),
                            _ => {}
                        }
                        walk(doc, child, problems);
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| walk(doc, i, problems)),
                _ => {}
            }
        }
        let registry = Registry::new();
        registry.set_crd("stacks.berth.dev", crd_resources(&stack_crd()));
        let groups: std::collections::BTreeSet<(String, String)> = registry
            .all()
            .iter()
            .map(|r| (r.group.clone(), r.version.clone()))
            .collect();
        for (group, version) in groups {
            let resources: Vec<_> = registry
                .all()
                .into_iter()
                .filter(|r| r.group == group && r.version == version)
                .collect();
            let doc = build(&resources);
            let mut problems = Vec::new();
            walk(&doc, &doc, &mut problems);
            assert!(problems.is_empty(), "{group}/{version}: {problems:?}");
        }
    }

    #[test]
    fn crd_document_names_the_kind_by_reversed_group_with_standard_fields() {
        let resources: Vec<Arc<ResourceType>> = crd_resources(&stack_crd())
            .into_iter()
            .map(Arc::new)
            .collect();
        let doc = build(&resources);
        let schemas = &doc["components"]["schemas"];
        let stack = &schemas["dev.berth.v1alpha1.Stack"];
        assert_eq!(
            stack["x-kubernetes-group-version-kind"],
            json!([{"group": "berth.dev", "version": "v1alpha1", "kind": "Stack"}])
        );
        assert_eq!(
            stack["properties"]["spec"]["properties"]["app"]["description"],
            "The web application."
        );
        assert_eq!(stack["properties"]["apiVersion"]["type"], "string");
        assert!(
            stack["properties"]["kind"]["description"]
                .as_str()
                .unwrap()
                .contains("REST resource")
        );
        assert_eq!(
            stack["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let list = &schemas["dev.berth.v1alpha1.StackList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/dev.berth.v1alpha1.Stack"
        );
        let patch =
            &doc["paths"]["/apis/berth.dev/v1alpha1/namespaces/{namespace}/stacks/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "berth.dev", "version": "v1alpha1", "kind": "Stack"})
        );
        assert_eq!(patch["operationId"], "patchBerthDevV1alpha1NamespacedStack");
        let patch_types = patch["requestBody"]["content"].as_object().unwrap();
        assert!(patch_types.contains_key("application/merge-patch+json"));
        assert!(!patch_types.contains_key("application/strategic-merge-patch+json"));
        assert!(
            doc["paths"]["/apis/berth.dev/v1alpha1/namespaces/{namespace}/stacks/{name}/status"]
                .is_object()
        );
    }

    #[test]
    fn crd_without_schema_accepts_any_object() {
        let mut crd = stack_crd();
        crd["spec"]["versions"][0]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        let resources: Vec<Arc<ResourceType>> =
            crd_resources(&crd).into_iter().map(Arc::new).collect();
        let doc = build(&resources);
        let stack = &doc["components"]["schemas"]["dev.berth.v1alpha1.Stack"];
        assert_eq!(stack["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(stack["type"], "object");
    }
}
