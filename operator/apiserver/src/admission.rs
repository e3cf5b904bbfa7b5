//! What happens to an object between decoding and storage: per-kind preparation on create and update (the
//! strategies of upstream's registry: Namespace phase, Pod status, Secret stringData, CRD status) and
//! admission checks (structure, schema defaulting/pruning/validation, metadata rules).

use serde_json::{Value, json};

use crate::error::{ApiError, Cause, Result, Subject};
use crate::registry::{Registry, ResourceType, Schema, StatusOnCreate};
use crate::request::Query;
use crate::{crd, object, schema, validation};

/// `fieldValidation`: what to do with fields a schema does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(query: &Query) -> Result<Self> {
        match query.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got {other:?}"
            ))),
        }
    }
}

fn is(rt: &ResourceType, group: &str, resource: &str) -> bool {
    rt.group == group && rt.resource == resource
}

/// Per-kind preparation of a new object (after metadata is filled in). Fails on what upstream's decoding of
/// the body would reject before this point (a Secret's `stringData` that is not all strings).
pub fn prepare_create(registry: &Registry, rt: &ResourceType, object: &mut Value) -> Result<()> {
    if rt.status_subresource
        && rt.status_on_create == StatusOnCreate::Reset
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    if is(rt, "", "namespaces") {
        object::set_path(object, &["status"], json!({"phase": "Active"}));
        object::set_path(object, &["spec", "finalizers"], json!(["kubernetes"]));
        let name = object["metadata"]["name"].clone();
        object::set_path(
            object,
            &["metadata", "labels", "kubernetes.io/metadata.name"],
            name,
        );
    } else if is(rt, "", "pods")
        || is(rt, "", "persistentvolumeclaims")
        || is(rt, "", "persistentvolumes")
    {
        object::set_path(object, &["status"], json!({"phase": "Pending"}));
    } else if is(rt, "", "secrets") {
        fold_string_data(rt, object)?;
        default_secret_type(object);
    } else if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        let meta = object::meta_mut(object);
        let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == crd::CLEANUP_FINALIZER)
        {
            list.push(json!(crd::CLEANUP_FINALIZER));
        }
        crd::set_status(registry, object, None);
    }
    Ok(())
}

/// Per-kind preparation of an update of the main resource (status and immutable metadata already carried over).
/// Fails as [`prepare_create`] does.
pub fn prepare_update(
    registry: &Registry,
    rt: &ResourceType,
    object: &mut Value,
    old: &Value,
) -> Result<()> {
    if is(rt, "", "namespaces") {
        let name = object["metadata"]["name"].clone();
        object::set_path(
            object,
            &["metadata", "labels", "kubernetes.io/metadata.name"],
            name,
        );
    } else if is(rt, "", "secrets") {
        fold_string_data(rt, object)?;
        default_secret_type(object);
    } else if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        crd::set_status(registry, object, Some(old));
    }
    Ok(())
}

/// A Secret written without a `type` is `Opaque`, as upstream's defaulting makes it.
fn default_secret_type(object: &mut Value) {
    let missing = object
        .get("type")
        .is_none_or(|t| t.is_null() || t.as_str() == Some(""));
    if missing {
        object::set_path(object, &["type"], json!("Opaque"));
    }
}

/// `stringData` is write-only: its entries are base64-encoded into `data`, overriding keys there. A value that
/// is not a string (YAML's `y`, `on` or `8080` unquoted) is rejected as upstream's decoding rejects it, with a
/// 400 that names the entry, rather than stored as something the user did not write.
fn fold_string_data(rt: &ResourceType, object: &mut Value) -> Result<()> {
    use base64::Engine;
    let Some(map) = object.as_object_mut() else {
        return Ok(());
    };
    // A stringData or data of the wrong shape is left for decoding to reject.
    let Some(Value::Object(string_data)) = map.get("stringData").cloned() else {
        return Ok(());
    };
    for (key, value) in &string_data {
        let found = match value {
            // Go decodes a null into a string as the empty string.
            Value::String(_) | Value::Null => continue,
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let hint = match value {
            Value::Bool(_) | Value::Number(_) => {
                format!(" (quote the value in YAML: {key}: \"{value}\")")
            }
            _ => String::new(),
        };
        return Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: json: cannot unmarshal {found} into \
             Go struct field {kind}.stringData.{key} of type string{hint}",
            kind = rt.kind,
            version = rt.version,
        )));
    }
    let data = map.entry("data").or_insert(Value::Null);
    if data.is_null() {
        *data = json!({});
    }
    let Some(data) = data.as_object_mut() else {
        return Ok(());
    };
    for (key, value) in string_data {
        let text = value.as_str().unwrap_or_default();
        data.insert(
            key,
            json!(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
    map.remove("stringData");
    Ok(())
}

/// Checks an object about to be stored; custom resources are also defaulted and pruned by their schema.
/// Returns the warnings for the client (`Warning` headers).
pub fn admit(
    rt: &ResourceType,
    object: &mut Value,
    fields: FieldValidation,
) -> Result<Vec<String>> {
    let subject = Subject {
        group: rt.group.clone(),
        kind: rt.resource.clone(),
        name: object::name(object).unwrap_or_default().to_owned(),
    };
    let mut warnings = Vec::new();
    let mut causes = Vec::new();
    match &rt.schema {
        Schema::Typed(decode) => {
            decode(object).map_err(|e| {
                ApiError::bad_request(format!(
                    "{kind} in version {version:?} cannot be handled as a {kind}: {e}",
                    kind = rt.kind,
                    version = rt.version
                ))
            })?;
            if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
                causes.extend(crd::validate(object));
            }
        }
        Schema::Structural(Some(structural)) => {
            // Upstream's order: prune what the schema does not declare, then default, then validate.
            let pruned = schema::prune(structural, object);
            schema::default(structural, object);
            if !pruned.is_empty() {
                match fields {
                    FieldValidation::Strict => {
                        let list: Vec<String> = pruned
                            .iter()
                            .map(|p| format!("unknown field {p:?}"))
                            .collect();
                        return Err(ApiError::bad_request(format!(
                            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                            list.join(", "),
                            kind = rt.kind,
                            version = rt.version,
                        )));
                    }
                    FieldValidation::Warn => {
                        warnings.extend(pruned.iter().map(|p| format!("unknown field {p:?}")));
                    }
                    FieldValidation::Ignore => {}
                }
            }
            causes.extend(schema::validate(structural, object));
        }
        Schema::Structural(None) => {}
    }
    causes.extend(validation::metadata(rt, object));
    if !causes.is_empty() {
        return Err(ApiError::invalid(subject, &rt.group_kind(), causes));
    }
    Ok(warnings)
}

/// A cause for updates of custom resources that do not say which version they change.
pub fn missing_resource_version() -> Cause {
    Cause::invalid(
        "metadata.resourceVersion",
        &json!("0x0"),
        "must be specified for an update",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_without_a_type_is_opaque_and_a_given_type_is_kept() {
        let registry = Registry::new();
        let secrets = registry.lookup("", "v1", "secrets").unwrap();
        let mut untyped = json!({"metadata": {"name": "s"}, "data": {}});
        prepare_create(&registry, &secrets, &mut untyped).unwrap();
        assert_eq!(untyped["type"], "Opaque");
        let mut empty = json!({"metadata": {"name": "s"}, "type": ""});
        prepare_update(&registry, &secrets, &mut empty, &untyped).unwrap();
        assert_eq!(empty["type"], "Opaque");
        let mut typed = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
        prepare_create(&registry, &secrets, &mut typed).unwrap();
        assert_eq!(typed["type"], "kubernetes.io/tls");
    }

    #[test]
    fn string_data_is_folded_into_base64_data() {
        let registry = Registry::new();
        let secrets = registry.lookup("", "v1", "secrets").unwrap();
        let mut secret = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"a": "hi", "b": "yo"}});
        prepare_create(&registry, &secrets, &mut secret).unwrap();
        assert_eq!(secret["data"], json!({"a": "aGk=", "b": "eW8="}));
        assert!(secret.get("stringData").is_none());
    }

    #[test]
    fn string_data_that_is_not_a_string_is_rejected_naming_the_entry() {
        let registry = Registry::new();
        let secrets = registry.lookup("", "v1", "secrets").unwrap();
        for (value, found) in [
            (json!(true), "bool"),
            (json!(8080), "number"),
            (json!(["a"]), "array"),
        ] {
            let mut secret =
                json!({"metadata": {"name": "s"}, "stringData": {"ok": "x", "flag": value}});
            let err = prepare_create(&registry, &secrets, &mut secret).unwrap_err();
            assert_eq!(err.code, http::StatusCode::BAD_REQUEST);
            let message = err.to_status()["message"].as_str().unwrap().to_owned();
            assert!(message.starts_with("Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal "), "{message}");
            assert!(
                message.contains(&format!(
                    "{found} into Go struct field Secret.stringData.flag of type string"
                )),
                "{message}"
            );
            let old = json!({"metadata": {"name": "s"}});
            assert!(prepare_update(&registry, &secrets, &mut secret, &old).is_err());
        }
        let mut secret = json!({"metadata": {"name": "s"}, "stringData": {"empty": null}});
        prepare_create(&registry, &secrets, &mut secret).unwrap();
        assert_eq!(secret["data"]["empty"], "");
    }

    #[test]
    fn new_namespaces_are_active_with_the_kubernetes_finalizer() {
        let registry = Registry::new();
        let ns = registry.lookup("", "v1", "namespaces").unwrap();
        let mut object = json!({"metadata": {"name": "team"}, "status": {"phase": "Terminating"}});
        prepare_create(&registry, &ns, &mut object).unwrap();
        assert_eq!(object["status"]["phase"], "Active");
        assert_eq!(object["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(
            object["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team"
        );
    }

    #[test]
    fn a_pod_that_does_not_decode_is_a_bad_request() {
        let registry = Registry::new();
        let pods = registry.lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": "nope"}});
        let err = admit(&pods, &mut pod, FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, http::StatusCode::BAD_REQUEST);
        assert!(
            err.message
                .starts_with("Pod in version \"v1\" cannot be handled as a Pod"),
            "{}",
            err.message
        );
    }
}
