//! CustomResourceDefinitions: checking a definition, its status conditions (NamesAccepted, Established,
//! Terminating), registering its resources for serving, and removing its instances when it is deleted.

use serde_json::{Value, json};

use crate::error::Cause;
use crate::object;
use crate::registry::{Registry, crd_resources};

/// Added to every CRD so that its custom resources are removed before it goes, as upstream does.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The definition's own rules (its schema's shape is checked by decoding into the k8s-openapi type).
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if names["kind"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required("spec.names.kind"));
    }
    let expected = format!("{plural}.{group}");
    if object::name(crd) != Some(expected.as_str()) {
        causes.push(Cause::invalid(
            "metadata.name",
            &crd["metadata"]["name"],
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        None => causes.push(Cause::required("spec.scope")),
        Some(_) => causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                spec["scope"]
            ),
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions"));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &Value::Null,
            "must have exactly one version marked as storage version",
        ));
    }
    causes
}

/// Sets `status` (conditions, acceptedNames, storedVersions) for a definition about to be stored.
pub fn set_status(registry: &Registry, crd: &mut Value, old: Option<&Value>) {
    let name = object::name(crd).unwrap_or_default().to_owned();
    let spec = crd["spec"].clone();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default();
    let plural = names["plural"].as_str().unwrap_or_default();
    let conflict = registry.name_conflict(
        &name,
        spec["group"].as_str().unwrap_or_default(),
        plural,
        kind,
    );
    let mut accepted = if names.is_object() {
        names.clone()
    } else {
        json!({})
    };
    if accepted["singular"].as_str().is_none_or(str::is_empty) {
        object::set_path(&mut accepted, &["singular"], json!(kind.to_lowercase()));
    }
    if accepted["listKind"].as_str().is_none_or(str::is_empty) {
        object::set_path(&mut accepted, &["listKind"], json!(format!("{kind}List")));
    }
    let previous = old
        .map(|o| o["status"]["conditions"].clone())
        .unwrap_or(Value::Null);
    let condition = |kind: &str, ok: bool, reason: &str, message: &str| {
        let status = if ok { "True" } else { "False" };
        // A condition keeps its transition time until its status changes.
        let since = previous
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == kind && c["status"] == status)
            })
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(object::now()));
        json!({"type": kind, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let mut conditions = match &conflict {
        None => vec![
            condition("NamesAccepted", true, "NoConflicts", "no conflicts found"),
            condition(
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
        ],
        Some(why) => vec![
            condition("NamesAccepted", false, "NameConflict", why),
            condition(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
            ),
        ],
    };
    if object::is_deleting(crd) {
        conditions.push(condition(
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        ));
    }
    let mut stored: Vec<Value> = old
        .and_then(|o| o["status"]["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["storage"].as_bool() == Some(true) && !stored.contains(&v["name"]) {
            stored.push(v["name"].clone());
        }
    }
    let status = json!({
        "conditions": conditions,
        "acceptedNames": if conflict.is_none() { accepted } else { json!({"plural": "", "kind": ""}) },
        "storedVersions": stored,
    });
    object::set_path(crd, &["status"], status);
}

/// Whether a stored definition is established (its resources are served).
pub fn is_established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

/// Serves (or stops serving) the resources of a definition as it now stands in the store.
pub fn sync(registry: &Registry, crd: &Value, deleted: bool) {
    let name = object::name(crd).unwrap_or_default();
    if deleted || !is_established(crd) {
        registry.remove_crd(name);
    } else {
        registry.set_crd(name, crd_resources(crd));
    }
}

/// The group and plural of the custom resources a definition stores.
pub fn storage_of(crd: &Value) -> (String, String) {
    (
        crd["spec"]["group"].as_str().unwrap_or_default().to_owned(),
        crd["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true}]
            }
        })
    }

    #[test]
    fn a_valid_definition_is_established_with_defaulted_names() {
        let registry = Registry::new();
        let mut crd = widget_crd();
        assert!(validate(&crd).is_empty());
        set_status(&registry, &mut crd, None);
        assert!(is_established(&crd));
        assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(crd["status"]["acceptedNames"]["singular"], "widget");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn a_definition_named_wrongly_or_without_storage_version_is_invalid() {
        let mut crd = widget_crd();
        crd["metadata"]["name"] = json!("gadgets.example.com");
        crd["spec"]["versions"][0]["storage"] = json!(false);
        let fields: Vec<String> = validate(&crd).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["metadata.name", "spec.versions"]);
    }

    #[test]
    fn a_definition_clashing_with_a_builtin_is_not_established() {
        let registry = Registry::new();
        let mut crd = widget_crd();
        crd["spec"]["group"] = json!("coordination.k8s.io");
        crd["spec"]["names"]["plural"] = json!("leases");
        crd["metadata"]["name"] = json!("leases.coordination.k8s.io");
        set_status(&registry, &mut crd, None);
        assert!(!is_established(&crd));
    }
}
