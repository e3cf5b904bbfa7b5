//! Small helpers over objects held as JSON: metadata access, timestamps, and the shape an object takes when it
//! is served at a particular version.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::registry::ResourceType;

/// Now, as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Now plus `seconds`, in the same format.
pub fn now_plus(seconds: i64) -> String {
    let ts = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metadata` as a mutable map, created when absent or not an object.
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let root = object.as_object_mut().expect("made an object just above");
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object just above")
}

/// Sets the value at `path`, creating absent (or null) maps on the way. Leaves the object untouched and returns
/// false when something on the way is not a map: client input is never trusted to have the expected shape.
pub fn set_path(object: &mut Value, path: &[&str], value: Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = object;
    for part in parents {
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
        let Some(map) = node.as_object_mut() else {
            return false;
        };
        node = map.entry(*part).or_insert(Value::Null);
    }
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    match node.as_object_mut() {
        Some(map) => {
            map.insert((*last).to_owned(), value);
            true
        }
        None => false,
    }
}

pub fn name(object: &Value) -> Option<&str> {
    object["metadata"]["name"]
        .as_str()
        .filter(|s| !s.is_empty())
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether something still holds the object once it is being deleted: metadata finalizers, or for a Namespace
/// its `spec.finalizers` (released through `namespaces/<name>/finalize`).
pub fn held(rt: &ResourceType, object: &Value) -> bool {
    let namespace_held = rt.group.is_empty()
        && rt.resource == "namespaces"
        && object["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
    !finalizers(object).is_empty() || namespace_held
}

pub fn is_deleting(object: &Value) -> bool {
    object["metadata"]["deletionTimestamp"].is_string()
}

pub fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap_or(0)
}

/// Whether two versions of an object differ outside metadata (and outside status when status is a subresource):
/// the changes that bump `metadata.generation`.
pub fn spec_changed(rt: &ResourceType, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if rt.status_subresource {
            m.remove("status");
        }
        m
    };
    strip(old) != strip(new)
}

/// The object as served at `rt`'s version: custom resources are stored at one version and served at any, and
/// some resources are served from another one's storage (events.k8s.io Events from core Events).
pub fn served(rt: &ResourceType, object: &Value) -> Value {
    let mut object = match rt.conversion {
        Some(conversion) => conversion.to_served(object),
        None => object.clone(),
    };
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version()));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    object
}

/// A served object (a client's write, once admitted) in the form it is stored in.
pub fn stored(rt: &ResourceType, object: Value) -> Value {
    match rt.conversion {
        Some(conversion) => conversion.to_storage(&object),
        None => object,
    }
}

/// A stored object as the writes to `rt` compare against it: [`served`] when `rt` is served from another
/// resource's storage, else the object itself.
pub fn write_view<'a>(rt: &ResourceType, stored: &'a Value) -> Cow<'a, Value> {
    match rt.conversion {
        Some(_) => Cow::Owned(served(rt, stored)),
        None => Cow::Borrowed(stored),
    }
}

/// Removes empty lists and maps from metadata, as upstream omits them.
pub fn tidy_metadata(object: &mut Value) {
    let meta = meta_mut(object);
    meta.retain(|_, v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn status_changes_do_not_count_as_spec_changes_when_status_is_a_subresource() {
        let pods = Registry::new().lookup("", "v1", "pods").unwrap();
        let a =
            json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"phase": "Pending"}});
        let mut b = a.clone();
        b["status"]["phase"] = json!("Running");
        b["metadata"]["labels"] = json!({"k": "v"});
        assert!(!spec_changed(&pods, &a, &b));
        b["spec"]["x"] = json!(2);
        assert!(spec_changed(&pods, &a, &b));
    }

    #[test]
    fn set_path_creates_maps_but_never_overwrites_other_shapes() {
        let mut o = json!({"spec": "text"});
        assert!(!set_path(&mut o, &["spec", "finalizers"], json!([])));
        assert_eq!(o, json!({"spec": "text"}));
        assert!(set_path(&mut o, &["status", "phase"], json!("Active")));
        assert_eq!(o["status"]["phase"], "Active");
    }

    #[test]
    fn tidy_metadata_drops_empty_collections() {
        let mut o = json!({"metadata": {"name": "a", "labels": {}, "finalizers": [], "annotations": {"k": "v"}}});
        tidy_metadata(&mut o);
        assert_eq!(
            o,
            json!({"metadata": {"name": "a", "annotations": {"k": "v"}}})
        );
    }

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        let t = now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
    }
}
