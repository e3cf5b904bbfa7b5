//! The CustomResourceDefinition of Stack, generated from the Rust types. `crds/` and
//! `config/crd/bases/` hold copies of [`crd_yaml`]; a test fails when they drift, and rewrites them
//! when `BERTH_UPDATE_CRDS=1` is set.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::Stack;

/// The Stack CRD, ready to apply.
pub fn crd() -> CustomResourceDefinition {
    Stack::crd()
}

/// The Stack CRD as one YAML document (no leading `---`), ending with a newline.
pub fn crd_yaml() -> String {
    // Invariant: a CRD is plain data with string keys, which serde_yaml always serializes.
    serde_yaml::to_string(&crd()).expect("a CustomResourceDefinition serializes to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants;
    use serde_json::{Value, json};
    use std::path::{Path, PathBuf};

    /// Files that must hold exactly `crd_yaml()`, relative to the workspace root. kustomize refuses
    /// files above a kustomization's root, so `config/crd` gets its own copy.
    const GENERATED: [&str; 2] = [
        "crds/berth.dev_stacks.yaml",
        "config/crd/bases/berth.dev_stacks.yaml",
    ];

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn schema() -> Value {
        let crd = serde_json::to_value(crd()).unwrap();
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
            .unwrap()
            .clone()
    }

    fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
        let pointer: String = path
            .split('.')
            .map(|p| format!("/properties/{p}"))
            .collect();
        schema
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("no schema at {path}"))
    }

    /// The rules of <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema>
    /// that generated schemas can break.
    fn assert_structural(schema: &Value, path: &str) {
        let node = schema.as_object().unwrap();
        for key in ["$ref", "$defs", "definitions", "$schema", "const"] {
            assert!(!node.contains_key(key), "{path}: has {key}");
        }
        let flag = |key: &str| node.get(key) == Some(&Value::Bool(true));
        assert!(
            node.contains_key("type")
                || flag("x-kubernetes-int-or-string")
                || flag("x-kubernetes-preserve-unknown-fields"),
            "{path}: has no type"
        );
        let properties = node.get("properties").and_then(Value::as_object);
        for junctor in ["allOf", "anyOf", "oneOf", "not"] {
            let branches = match node.get(junctor) {
                Some(Value::Array(branches)) => branches.clone(),
                Some(branch) => vec![branch.clone()],
                None => continue,
            };
            for branch in &branches {
                for key in [
                    "type",
                    "description",
                    "default",
                    "nullable",
                    "additionalProperties",
                    "items",
                ] {
                    assert!(branch.get(key).is_none(), "{path}: {junctor} sets {key}");
                }
                let branch_properties = branch.get("properties").and_then(Value::as_object);
                for name in branch_properties.into_iter().flat_map(|p| p.keys()) {
                    assert!(
                        properties.is_some_and(|p| p.contains_key(name)),
                        "{path}: {junctor} adds property {name}"
                    );
                }
            }
        }
        for (name, property) in properties.into_iter().flatten() {
            assert_structural(property, &format!("{path}.{name}"));
        }
        if let Some(items) = node.get("items") {
            assert_structural(items, &format!("{path}[]"));
        }
        if let Some(values @ Value::Object(_)) = node.get("additionalProperties") {
            assert_structural(values, &format!("{path}{{}}"));
        }
    }

    #[test]
    fn committed_crd_files_match_the_types() {
        let expected = crd_yaml();
        let update = std::env::var_os("BERTH_UPDATE_CRDS").is_some_and(|v| v == "1");
        for file in GENERATED {
            let path = workspace_root().join(file);
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &expected).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == expected,
                "{file} is stale: run `make crds` (or BERTH_UPDATE_CRDS=1 cargo test -p berth-api)"
            );
        }
    }

    #[test]
    fn crd_stays_small() {
        let json = serde_json::to_string(&crd()).unwrap();
        let yaml = crd_yaml();

        // Client-side `kubectl apply` copies the JSON into an annotation; all annotations of an
        // object share 256 KiB. The YAML is what `kubectl apply -f crds/` reads.
        assert!(json.len() < 40_000, "CRD is {} bytes of JSON", json.len());
        assert!(yaml.len() < 60_000, "CRD is {} bytes of YAML", yaml.len());
    }

    #[test]
    fn schema_is_structural() {
        assert_structural(&schema(), "");
    }

    #[test]
    fn crd_yaml_is_one_document_that_parses_back_to_the_crd() {
        let yaml = crd_yaml();

        assert!(!yaml.starts_with("---") && yaml.ends_with('\n'));
        let parsed: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed, crd());
    }

    #[test]
    fn crd_names_and_columns_are_berths() {
        let crd = crd();
        let names = &crd.spec.names;
        let version = &crd.spec.versions[0];

        assert_eq!(crd.metadata.name.as_deref(), Some(constants::CRD_NAME));
        assert_eq!(crd.spec.group, constants::GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(names.kind, constants::KIND);
        assert_eq!(names.plural, constants::PLURAL);
        assert_eq!(names.singular.as_deref(), Some(constants::SINGULAR));
        assert_eq!(
            names.short_names,
            Some(vec![constants::SHORT_NAME.to_owned()])
        );
        assert_eq!(
            names.categories,
            Some(vec!["all".to_owned(), "berth".to_owned()])
        );
        assert_eq!(version.name, constants::VERSION);
        assert!(version.served && version.storage);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Ready", r#".status.conditions[?(@.type=="Ready")].status"#),
                ("Phase", ".status.phase"),
                ("Endpoint", r#".status.endpoints[?(@.name=="app")].url"#),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
    }

    #[test]
    fn constants_match_the_derived_resource() {
        use kube::Resource;

        assert_eq!(Stack::group(&()), constants::GROUP);
        assert_eq!(Stack::version(&()), constants::VERSION);
        assert_eq!(Stack::api_version(&()), constants::API_VERSION);
        assert_eq!(Stack::kind(&()), constants::KIND);
        assert_eq!(Stack::plural(&()), constants::PLURAL);
        assert_eq!(Stack::crd_name(), constants::CRD_NAME);
    }

    #[test]
    fn schema_carries_the_defaults() {
        let schema = schema();

        assert_eq!(at(&schema, "spec.app.replicas")["default"], json!(1));
        assert_eq!(at(&schema, "spec.app.replicas")["minimum"], json!(0.0));
        assert_eq!(
            at(&schema, "spec.deletionPolicy")["default"],
            json!("Retain")
        );
        assert_eq!(
            at(&schema, "spec.deletionPolicy")["enum"],
            json!(["Retain", "Delete"])
        );
        assert_eq!(
            at(&schema, "spec.database.databaseName")["default"],
            json!("app")
        );
        assert_eq!(at(&schema, "spec.database.user")["default"], json!("app"));
        assert_eq!(
            at(&schema, "spec.database.storage")["default"],
            json!({"size": "1Gi"})
        );
        assert_eq!(
            at(&schema, "spec.redis.persistence")["default"],
            json!({"enabled": false, "size": "1Gi"})
        );
        assert_eq!(at(&schema, "spec")["required"], json!(["app"]));
        assert_eq!(at(&schema, "spec.app")["required"], json!(["image"]));
    }

    #[test]
    fn keyed_lists_are_list_maps_on_a_required_key() {
        let schema = schema();

        for (list, key) in [
            ("status.conditions", "type"),
            ("status.endpoints", "name"),
            ("spec.app.volumes", "name"),
        ] {
            let list_schema = at(&schema, list);
            assert_eq!(
                list_schema["x-kubernetes-list-type"],
                json!("map"),
                "{list}"
            );
            assert_eq!(
                list_schema["x-kubernetes-list-map-keys"],
                json!([key]),
                "{list}"
            );
            let required = list_schema["items"]["required"].as_array().unwrap();
            assert!(
                required.contains(&json!(key)),
                "{list}: key {key} is not required"
            );
        }
    }

    #[test]
    fn a_volume_needs_exactly_one_source() {
        let schema = schema();
        let volume = &at(&schema, "spec.app.volumes")["items"];

        let sources: Vec<_> = volume["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|branch| branch["required"][0].as_str().unwrap())
            .collect();
        assert_eq!(
            sources,
            [
                "emptyDir",
                "hostPath",
                "secret",
                "configMap",
                "persistentVolumeClaim"
            ]
        );
        for source in sources {
            assert!(volume["properties"].get(source).is_some(), "{source}");
        }
    }

    #[test]
    fn core_documentation_is_trimmed_and_berths_is_kept() {
        let schema = schema();

        let limits = &at(&schema, "spec.app.resources.limits")["additionalProperties"];
        assert_eq!(
            limits["description"],
            json!("Quantity is a fixed-point representation of a number.")
        );
        assert!(at(&schema, "spec.app.readinessProbe.periodSeconds")["description"].is_string());
        assert!(at(&schema, "spec.app.readinessProbe.httpGet.path")["description"].is_null());
        assert_eq!(
            at(&schema, "spec.app.env")["description"],
            json!("Environment variables. `DATABASE_URL` and `REDIS_URL` are added by berth.")
        );
        assert!(at(&schema, "spec.redis.persistence.size")["description"].is_string());
    }
}
