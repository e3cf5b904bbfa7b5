//! Semantic validation that every write goes through: object metadata (names, labels, annotations, finalizers,
//! owner references) with upstream's rules and messages, and the few per-kind rules a type cannot express.
//! Structure is checked elsewhere: built-in kinds by decoding into their k8s-openapi type, custom
//! resources by their CRD schema.

use serde_json::Value;

use crate::error::Cause;
use crate::registry::ResourceType;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    let valid = !value.is_empty()
        && value.chars().all(is_label_char)
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !valid {
        errs.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
             and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                .into(),
        );
    }
    errs
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let valid = !value.is_empty()
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(is_label_char)
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must \
             start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                .into(),
        );
    }
    errs
}

/// A DNS-1035 label (Service names): like a DNS-1123 label but starting with a letter.
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut errs = dns1123_label(value);
    if errs.is_empty() && !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        errs.push(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic \
             character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for \
             validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
                .into(),
        );
    }
    errs
}

fn is_name_part(s: &str) -> bool {
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    !s.is_empty()
        && s.len() <= 63
        && chars_ok
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A qualified name (`[prefix/]name`) as used for label and annotation keys and finalizers.
pub fn qualified_name(value: &str) -> Vec<String> {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    let mut errs = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_owned());
        } else {
            errs.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if !is_name_part(name) || name.contains('/') {
        errs.push(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                .into(),
        );
    }
    errs
}

fn label_value(value: &str) -> Vec<String> {
    if value.is_empty() || is_name_part(value) {
        Vec::new()
    } else {
        vec![
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used \
             for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                .into(),
        ]
    }
}

fn push_invalid(causes: &mut Vec<Cause>, field: &str, value: &str, errs: Vec<String>) {
    for e in errs {
        causes.push(Cause::invalid(field, &Value::String(value.to_owned()), e));
    }
}

/// Which name rule a kind follows.
fn name_rule(rt: &ResourceType) -> fn(&str) -> Vec<String> {
    match (rt.group.as_str(), rt.resource.as_str()) {
        ("", "namespaces") => dns1123_label,
        ("", "services") => dns1035_label,
        _ => dns1123_subdomain,
    }
}

/// Validates `metadata` of an object about to be stored. The name must already be resolved (generateName).
pub fn metadata(rt: &ResourceType, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = &object["metadata"];
    match meta["name"].as_str() {
        None | Some("") => causes.push(Cause::new(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        )),
        Some(name) => push_invalid(&mut causes, "metadata.name", name, name_rule(rt)(name)),
    }
    if rt.namespaced {
        match meta["namespace"].as_str() {
            None | Some("") => causes.push(Cause::required("metadata.namespace")),
            Some(ns) => push_invalid(&mut causes, "metadata.namespace", ns, dns1123_label(ns)),
        }
    } else if meta["namespace"].as_str().is_some_and(|ns| !ns.is_empty()) {
        causes.push(Cause::new(
            "FieldValueForbidden",
            "metadata.namespace",
            "Forbidden: not allowed on this type",
        ));
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (key, value) in labels {
            push_invalid(&mut causes, "metadata.labels", key, qualified_name(key));
            match value.as_str() {
                Some(v) => push_invalid(
                    &mut causes,
                    &format!("metadata.labels[{key}]"),
                    v,
                    label_value(v),
                ),
                None => causes.push(Cause::invalid(
                    format!("metadata.labels[{key}]"),
                    value,
                    "must be a string",
                )),
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        let mut total = 0;
        for (key, value) in annotations {
            push_invalid(
                &mut causes,
                "metadata.annotations",
                key,
                qualified_name(&key.to_lowercase()),
            );
            total += key.len() + value.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            causes.push(Cause::new(
                "FieldValueTooLong",
                "metadata.annotations",
                format!("Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
            ));
        }
    }
    if let Some(finalizers) = meta["finalizers"].as_array() {
        for (i, f) in finalizers.iter().enumerate() {
            let field = format!("metadata.finalizers[{i}]");
            match f.as_str() {
                Some(s) => push_invalid(&mut causes, &field, s, qualified_name(s)),
                None => causes.push(Cause::invalid(field, f, "must be a string")),
            }
        }
    }
    if let Some(owners) = meta["ownerReferences"].as_array() {
        let mut controllers = 0;
        for (i, owner) in owners.iter().enumerate() {
            for required in ["apiVersion", "kind", "name", "uid"] {
                if owner[required].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!(
                        "metadata.ownerReferences[{i}].{required}"
                    )));
                }
            }
            if owner["controller"].as_bool() == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            causes.push(Cause::invalid(
                "metadata.ownerReferences",
                &Value::Null,
                "Only one reference can have Controller set to true",
            ));
        }
    }
    causes.extend(kind_rules(rt, object));
    causes
}

/// The handful of per-kind rules that clients rely on seeing as 422s.
fn kind_rules(rt: &ResourceType, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !rt.group.is_empty() {
        return causes;
    }
    match rt.resource.as_str() {
        "pods" => {
            let containers = object["spec"]["containers"].as_array();
            if containers.is_none_or(Vec::is_empty) {
                causes.push(Cause::required("spec.containers"));
            }
            for (list, field) in [
                ("containers", "spec.containers"),
                ("initContainers", "spec.initContainers"),
            ] {
                let mut seen = std::collections::BTreeSet::new();
                for (i, c) in object["spec"][list]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    match c["name"].as_str() {
                        None | Some("") => {
                            causes.push(Cause::required(format!("{field}[{i}].name")))
                        }
                        Some(name) => {
                            push_invalid(
                                &mut causes,
                                &format!("{field}[{i}].name"),
                                name,
                                dns1123_label(name),
                            );
                            if !seen.insert(name.to_owned()) {
                                causes.push(Cause::new(
                                    "FieldValueDuplicate",
                                    format!("{field}[{i}].name"),
                                    format!("Duplicate value: {name:?}"),
                                ));
                            }
                        }
                    }
                    if c["image"].as_str().is_none_or(str::is_empty) {
                        causes.push(Cause::required(format!("{field}[{i}].image")));
                    }
                }
            }
        }
        "services" => {
            for (i, p) in object["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let port = p["port"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(Cause::invalid(
                        format!("spec.ports[{i}].port"),
                        &p["port"],
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        "configmaps" | "secrets" => {
            for section in ["data", "binaryData", "stringData"] {
                for key in object[section]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    let ok = !key.is_empty()
                        && key.len() <= DNS1123_SUBDOMAIN_MAX
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                    if !ok {
                        causes.push(Cause::invalid(
                            format!("{section}[{key}]"),
                            &Value::String(key.clone()),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. \
                             'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
                             '[-._a-zA-Z0-9]+')",
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    fn rt(resource: &str) -> std::sync::Arc<ResourceType> {
        Registry::new().lookup("", "v1", resource).unwrap()
    }

    #[test]
    fn dns_names_follow_rfc1123() {
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!dns1123_subdomain("Upper").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert!(!dns1035_label("1abc").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn invalid_name_and_label_are_reported_by_field() {
        let cm = json!({"metadata": {"name": "Bad_Name", "namespace": "default", "labels": {"ok": "not ok!"}}});
        let causes = metadata(&rt("configmaps"), &cm);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.name", "metadata.labels[ok]"]);
        assert!(
            causes[0]
                .message
                .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
    }

    #[test]
    fn pod_without_containers_or_image_is_invalid() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c"}]}});
        let causes = metadata(&rt("pods"), &pod);
        assert_eq!(causes, vec![Cause::required("spec.containers[0].image")]);
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {}});
        assert_eq!(
            metadata(&rt("pods"), &pod),
            vec![Cause::required("spec.containers")]
        );
    }

    #[test]
    fn qualified_names_accept_prefixes() {
        assert!(qualified_name("berth.dev/stack").is_empty());
        assert!(qualified_name("kubernetes").is_empty());
        assert!(!qualified_name("/x").is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
    }
}
