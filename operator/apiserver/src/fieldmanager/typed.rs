//! Objects walked with their schema, as structured-merge-diff walks typed values: the set of fields a value
//! sets, the merge of an applied configuration into a live object, the comparison of two objects (added,
//! modified, removed fields) and the removal of fields. Maps and structs are granular unless atomic; lists
//! are atomic, sets of scalars, or maps keyed by some of their items' fields.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::fieldpath::{Path, PathElement, Set};
use crate::patchmeta::{self, ListType, Node};

/// Where in an object's schema a value sits.
#[derive(Clone, Copy)]
pub enum Shape<'a> {
    /// A built-in type (k8s-openapi's schema with berth's merge table).
    Builtin(Node<'a>),
    /// A node of a CRD's structural schema; `root` for the object itself, whose `metadata` is ObjectMeta.
    Structural { schema: &'a Value, root: bool },
    /// Anything without a schema: maps merge key by key, lists are atomic (upstream's deduced type).
    Deduced,
}

/// How a list's items are told apart.
#[derive(Debug, Clone, PartialEq)]
enum ListKind {
    Atomic,
    Set,
    /// Key field names, each with the default a missing key field takes.
    Map(Vec<(String, Option<Value>)>),
}

/// The schema of a custom resource without one: any fields, kept.
static ANYTHING: LazyLock<Value> =
    LazyLock::new(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));

impl<'a> Shape<'a> {
    /// The root shape of a custom resource with this structural schema (or none).
    pub fn custom(schema: Option<&'a Value>) -> Shape<'a> {
        Shape::Structural {
            schema: schema.unwrap_or(&ANYTHING),
            root: true,
        }
    }

    /// The shape of a field (or map value) and whether the type declares it as a field.
    fn field(self, name: &str) -> (Shape<'a>, bool) {
        match self {
            Shape::Builtin(node) => match node.child(name) {
                Some(child) => (Shape::Builtin(child), node.declares(name)),
                None => (Shape::Deduced, false),
            },
            Shape::Structural { schema, root } => {
                let embedded = root
                    || schema
                        .get("x-kubernetes-embedded-resource")
                        .and_then(Value::as_bool)
                        == Some(true);
                if embedded && name == "metadata" {
                    return (Shape::Builtin(patchmeta::object_meta().root()), true);
                }
                if let Some(property) = schema.get("properties").and_then(|p| p.get(name)) {
                    return (
                        Shape::Structural {
                            schema: property,
                            root: false,
                        },
                        true,
                    );
                }
                if embedded && (name == "apiVersion" || name == "kind") {
                    return (Shape::Deduced, true);
                }
                match schema.get("additionalProperties") {
                    Some(values @ Value::Object(_)) => (
                        Shape::Structural {
                            schema: values,
                            root: false,
                        },
                        false,
                    ),
                    _ => (Shape::Deduced, false),
                }
            }
            Shape::Deduced => (Shape::Deduced, false),
        }
    }

    fn declares(self, name: &str) -> bool {
        match self {
            Shape::Builtin(node) => node.declares(name),
            Shape::Structural { .. } => self.field(name).1,
            Shape::Deduced => false,
        }
    }

    fn items(self) -> Shape<'a> {
        match self {
            Shape::Builtin(node) => node.items().map_or(Shape::Deduced, Shape::Builtin),
            Shape::Structural { schema, .. } => match schema.get("items") {
                Some(items @ Value::Object(_)) => Shape::Structural {
                    schema: items,
                    root: false,
                },
                _ => Shape::Deduced,
            },
            Shape::Deduced => Shape::Deduced,
        }
    }

    fn list_kind(self) -> ListKind {
        match self {
            Shape::Builtin(node) => match node.list_type() {
                ListType::Atomic => ListKind::Atomic,
                ListType::Set => ListKind::Set,
                ListType::Map { keys, defaults } => ListKind::Map(
                    keys.iter()
                        .map(|k| {
                            let default = defaults
                                .iter()
                                .find(|(name, _)| name == k)
                                .map(|(_, v)| json!(v));
                            ((*k).to_owned(), default)
                        })
                        .collect(),
                ),
            },
            Shape::Structural { schema, .. } => {
                match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListKind::Set,
                    Some("map") => {
                        let items = schema.get("items");
                        let keys = schema
                            .get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|keys| {
                                keys.iter()
                                    .filter_map(Value::as_str)
                                    .map(|k| {
                                        let default = items
                                            .and_then(|i| i.get("properties"))
                                            .and_then(|p| p.get(k))
                                            .and_then(|p| p.get("default"))
                                            .cloned();
                                        (k.to_owned(), default)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        ListKind::Map(keys)
                    }
                    _ => ListKind::Atomic,
                }
            }
            Shape::Deduced => ListKind::Atomic,
        }
    }

    fn atomic_map(self) -> bool {
        match self {
            Shape::Builtin(node) => node.atomic(),
            Shape::Structural { schema, .. } => {
                schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            Shape::Deduced => false,
        }
    }
}

/// A list value could not be indexed by its schema's keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    pub path: String,
    pub message: String,
}

/// The path element of a list item, or why it has none.
fn item_element(kind: &ListKind, item: &Value) -> Result<PathElement, String> {
    match kind {
        ListKind::Atomic => Err("an atomic list has no item keys".into()),
        ListKind::Set => match item {
            Value::Object(_) => Err("a set may not hold maps".into()),
            Value::Array(_) => Err("a set may not hold lists".into()),
            Value::Null => Err("a set may not hold null".into()),
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
        ListKind::Map(keys) => {
            let Some(map) = item.as_object() else {
                return Err("associative list with keys may not have non-map elements".into());
            };
            let mut fields: Vec<(String, Value)> = keys
                .iter()
                .filter_map(|(name, default)| {
                    map.get(name)
                        .cloned()
                        .or_else(|| default.clone())
                        .map(|v| (name.clone(), v))
                })
                .collect();
            if !keys.is_empty() && fields.is_empty() {
                let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields {names:?}"
                ));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
    }
}

/// The elements of a list's items when every item has one and none repeats; None when the list is to be
/// treated as atomic (it is one, or its items do not fit its keys).
fn item_elements(kind: &ListKind, list: &[Value]) -> Option<Vec<PathElement>> {
    if *kind == ListKind::Atomic {
        return None;
    }
    let elements: Vec<PathElement> = list
        .iter()
        .map(|item| item_element(kind, item))
        .collect::<Result<_, _>>()
        .ok()?;
    let mut sorted: Vec<&PathElement> = elements.iter().collect();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    Some(elements)
}

/// Checks that an applied configuration's lists fit their keys (upstream rejects those that do not).
pub fn validate_keys(value: &Value, shape: Shape<'_>) -> Result<(), KeyError> {
    fn walk(value: &Value, shape: Shape<'_>, path: &mut Path) -> Result<(), KeyError> {
        match value {
            Value::Object(map) if !shape.atomic_map() => {
                for (key, child) in map {
                    path.push(PathElement::Field(key.clone()));
                    walk(child, shape.field(key).0, path)?;
                    path.pop();
                }
            }
            Value::Array(list) => {
                let kind = shape.list_kind();
                if kind == ListKind::Atomic {
                    return Ok(());
                }
                let mut seen = Vec::new();
                for item in list {
                    let element = item_element(&kind, item).map_err(|message| KeyError {
                        path: super::fieldpath::path_string(path),
                        message,
                    })?;
                    if seen.contains(&element) {
                        return Err(KeyError {
                            path: super::fieldpath::path_string(path),
                            message: format!("duplicate entries for key {element}"),
                        });
                    }
                    path.push(element.clone());
                    walk(item, shape.items(), path)?;
                    path.pop();
                    seen.push(element);
                }
            }
            _ => {}
        }
        Ok(())
    }
    walk(value, shape, &mut Vec::new())
}

/// The fields a value sets: its leaves, its list items, and maps that are empty or not declared fields.
pub fn to_field_set(value: &Value, shape: Shape<'_>) -> Set {
    fn walk(value: &Value, shape: Shape<'_>, path: &mut Path, set: &mut Set) {
        match value {
            Value::Object(map) => {
                if shape.atomic_map() {
                    set.insert(path);
                    return;
                }
                for (key, child) in map {
                    let (child_shape, declared) = shape.field(key);
                    path.push(PathElement::Field(key.clone()));
                    walk(child, child_shape, path, set);
                    let empty = match child {
                        Value::Null => true,
                        Value::Object(m) => m.is_empty(),
                        _ => false,
                    };
                    if empty || !declared {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
            Value::Array(list) => {
                let kind = shape.list_kind();
                let Some(elements) = item_elements(&kind, list) else {
                    set.insert(path);
                    return;
                };
                for (item, element) in list.iter().zip(elements) {
                    path.push(element);
                    walk(item, shape.items(), path, set);
                    set.insert(path);
                    path.pop();
                }
            }
            _ => set.insert(path),
        }
    }
    let mut set = Set::new();
    walk(value, shape, &mut Vec::new(), &mut set);
    set
}

/// Members for struct fields that have members below them, so that removing the field's subtree also
/// removes the field (upstream's `EnsureNamedFieldsAreMembers`).
pub fn ensure_named_fields(set: &Set, shape: Shape<'_>) -> Set {
    let mut out = Set::new();
    for member in set.member_elements() {
        out.add_member(member.clone());
    }
    for (element, child) in set.child_sets() {
        let child_shape = match element {
            PathElement::Field(name) => {
                if shape.declares(name) {
                    out.add_member(element.clone());
                }
                shape.field(name).0
            }
            _ => shape.items(),
        };
        out.set_child(element.clone(), ensure_named_fields(child, child_shape));
    }
    out
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// Compares two versions of an object field by field.
pub fn compare(old: &Value, new: &Value, shape: Shape<'_>) -> Comparison {
    let mut comparison = Comparison::default();
    compare_at(
        Some(old),
        Some(new),
        shape,
        &mut Vec::new(),
        &mut comparison,
    );
    comparison
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

fn same_kind(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_)) => true,
        (a, b) => !is_container(a) && !is_container(b),
    }
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: Shape<'_>,
    path: &mut Path,
    out: &mut Comparison,
) {
    match (lhs, rhs) {
        (None, None) => {}
        (Some(l), Some(r)) if !same_kind(l, r) => {
            out.modified.insert(path);
            compare_children(Some(l), None, shape, path, out);
            compare_children(None, Some(r), shape, path, out);
        }
        (Some(l), Some(r)) => {
            if is_leaf(l, r, shape) {
                if l != r {
                    out.modified.insert(path);
                }
            } else {
                compare_children(Some(l), Some(r), shape, path, out);
            }
        }
        (Some(l), None) => {
            if !is_leaf(l, l, shape) {
                compare_children(Some(l), None, shape, path, out);
            }
            out.removed.insert(path);
        }
        (None, Some(r)) => {
            if !is_leaf(r, r, shape) {
                compare_children(None, Some(r), shape, path, out);
            }
            out.added.insert(path);
        }
    }
}

/// Whether a pair of values of one kind is compared and merged as a whole.
fn is_leaf(l: &Value, r: &Value, shape: Shape<'_>) -> bool {
    match (l, r) {
        (Value::Object(a), Value::Object(b)) => {
            shape.atomic_map() || (a.is_empty() && b.is_empty())
        }
        (Value::Array(a), Value::Array(b)) => {
            (a.is_empty() && b.is_empty())
                || shape.list_kind() == ListKind::Atomic
                || item_elements(&shape.list_kind(), a).is_none()
                || item_elements(&shape.list_kind(), b).is_none()
        }
        _ => true,
    }
}

fn compare_children(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: Shape<'_>,
    path: &mut Path,
    out: &mut Comparison,
) {
    let value = lhs.or(rhs);
    match value {
        Some(Value::Object(_)) => {
            let l = lhs.and_then(Value::as_object);
            let r = rhs.and_then(Value::as_object);
            let keys: std::collections::BTreeSet<&String> = l
                .into_iter()
                .flat_map(Map::keys)
                .chain(r.into_iter().flat_map(Map::keys))
                .collect();
            for key in keys {
                path.push(PathElement::Field(key.clone()));
                compare_at(
                    l.and_then(|m| m.get(key)),
                    r.and_then(|m| m.get(key)),
                    shape.field(key).0,
                    path,
                    out,
                );
                path.pop();
            }
        }
        Some(Value::Array(_)) => {
            fn index<'v>(
                kind: &ListKind,
                list: Option<&'v Value>,
            ) -> Vec<(PathElement, &'v Value)> {
                let Some(list) = list.and_then(Value::as_array) else {
                    return Vec::new();
                };
                match item_elements(kind, list) {
                    Some(elements) => elements.into_iter().zip(list.iter()).collect(),
                    None => Vec::new(),
                }
            }
            let kind = shape.list_kind();
            let left = index(&kind, lhs);
            let right = index(&kind, rhs);
            let right_map: BTreeMap<&PathElement, &Value> =
                right.iter().map(|(e, v)| (e, *v)).collect();
            let left_map: BTreeMap<&PathElement, &Value> =
                left.iter().map(|(e, v)| (e, *v)).collect();
            for (element, value) in &left {
                path.push(element.clone());
                compare_at(
                    Some(value),
                    right_map.get(element).copied(),
                    shape.items(),
                    path,
                    out,
                );
                path.pop();
            }
            for (element, value) in &right {
                if left_map.contains_key(element) {
                    continue;
                }
                path.push(element.clone());
                compare_at(None, Some(value), shape.items(), path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Merges an applied configuration (`rhs`) into a live value (`lhs`): the configuration's values win, maps
/// merge key by key, keyed lists item by item (live items the configuration does not name stay where they
/// are), atomic lists and maps are replaced.
pub fn merge(lhs: Option<&Value>, rhs: Option<&Value>, shape: Shape<'_>) -> Option<Value> {
    let (l, r) = match (lhs, rhs) {
        (None, None) => return None,
        (Some(l), None) => return Some(l.clone()),
        (None, Some(r)) => return Some(r.clone()),
        (Some(l), Some(r)) => (l, r),
    };
    if !same_kind(l, r) || is_leaf(l, r, shape) {
        return Some(r.clone());
    }
    match (l, r) {
        (Value::Object(lm), Value::Object(rm)) => {
            let mut out = Map::new();
            for key in lm.keys().chain(rm.keys()) {
                if out.contains_key(key) {
                    continue;
                }
                if let Some(v) = merge(lm.get(key), rm.get(key), shape.field(key).0) {
                    out.insert(key.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (Value::Array(ll), Value::Array(rl)) => {
            let kind = shape.list_kind();
            // Both lists fit their keys: is_leaf said so.
            let lpe = item_elements(&kind, ll).unwrap_or_default();
            let rpe = item_elements(&kind, rl).unwrap_or_default();
            let merged = merge_items(ll, &lpe, rl, &rpe, shape.items());
            (!merged.is_empty()).then_some(Value::Array(merged))
        }
        _ => Some(r.clone()),
    }
}

/// Upstream's list merge: items only the live list has stay in place, the configuration's items come in its
/// order, and shared items are merged where the configuration puts them.
fn merge_items(
    lhs: &[Value],
    lpe: &[PathElement],
    rhs: &[Value],
    rpe: &[PathElement],
    items: Shape<'_>,
) -> Vec<Value> {
    let observed_l: BTreeMap<&PathElement, &Value> = lpe.iter().zip(lhs).collect();
    let observed_r: BTreeMap<&PathElement, &Value> = rpe.iter().zip(rhs).collect();
    let mut shared = rpe.iter().filter(|pe| observed_l.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_r: std::collections::BTreeSet<&PathElement> = Default::default();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let pe = &lpe[li];
            if *pe == rpe[ri] {
                merged_r.insert(pe);
                out.extend(merge(
                    observed_l.get(pe).copied(),
                    observed_r.get(pe).copied(),
                    items,
                ));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_r.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let pe = &lpe[li];
            if !observed_r.contains_key(pe) {
                out.extend(merge(Some(&lhs[li]), None, items));
                li += 1;
                continue;
            } else if merged_r.contains(pe) {
                li += 1;
            }
        }
        if ri < rhs.len() {
            let pe = &rpe[ri];
            merged_r.insert(pe);
            out.extend(merge(
                observed_l.get(pe).copied(),
                observed_r.get(pe).copied(),
                items,
            ));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// Removes the fields of `set` (with everything below them) from a value; maps and lists left empty by the
/// removal go as well. None when nothing is left.
pub fn remove_items(value: &Value, set: &Set, shape: Shape<'_>) -> Option<Value> {
    match value {
        Value::Object(map) if !map.is_empty() && !shape.atomic_map() => {
            let mut out = Map::new();
            for (key, child) in map {
                let element = PathElement::Field(key.clone());
                if set.has(std::slice::from_ref(&element)) {
                    continue;
                }
                let below = set.with_prefix(&element);
                if below.is_empty() {
                    out.insert(key.clone(), child.clone());
                } else if let Some(kept) = remove_items(child, &below, shape.field(key).0) {
                    out.insert(key.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(list) if !list.is_empty() => {
            let kind = shape.list_kind();
            let Some(elements) = item_elements(&kind, list) else {
                return Some(value.clone());
            };
            let mut out = Vec::with_capacity(list.len());
            for (item, element) in list.iter().zip(elements) {
                if set.has(std::slice::from_ref(&element)) {
                    continue;
                }
                let below = set.with_prefix(&element);
                if below.is_empty() {
                    out.push(item.clone());
                } else if let Some(kept) = remove_items(item, &below, shape.items()) {
                    out.push(kept);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldmanager::fieldpath::path_string;
    use crate::patchmeta::Types;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};

    fn paths(set: &Set) -> Vec<String> {
        set.paths().iter().map(|p| path_string(p)).collect()
    }

    #[test]
    fn field_set_of_a_pod_has_keyed_items_and_map_keys() {
        let types = Types::of::<Pod>();
        let pod = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 80}]}]}
        });
        let set = to_field_set(&pod, Shape::Builtin(types.root()));
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            })
        );
    }

    #[test]
    fn compare_reports_added_modified_and_removed_leaves() {
        let types = Types::of::<ConfigMap>();
        let old = json!({"data": {"a": "1", "b": "2"}});
        let new = json!({"data": {"a": "9", "c": "3"}});
        let cmp = compare(&old, &new, Shape::Builtin(types.root()));
        assert_eq!(paths(&cmp.modified), [".data.a"]);
        assert_eq!(paths(&cmp.added), [".data.c"]);
        assert_eq!(paths(&cmp.removed), [".data.b"]);
        let same = compare(&old, &old, Shape::Builtin(types.root()));
        assert!(same.added.is_empty() && same.modified.is_empty() && same.removed.is_empty());
    }

    #[test]
    fn merge_keeps_live_items_and_replaces_atomic_lists() {
        let types = Types::of::<Pod>();
        let live = json!({"spec": {
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
            "tolerations": [{"key": "x"}]
        }});
        let config = json!({"spec": {
            "containers": [{"name": "c", "image": "3"}, {"name": "b", "image": "2"}],
            "tolerations": [{"key": "y"}]
        }});
        let merged = merge(Some(&live), Some(&config), Shape::Builtin(types.root())).unwrap();
        let names: Vec<&str> = merged["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "c", "b"]);
        assert_eq!(merged["spec"]["containers"][2]["image"], "2");
        assert_eq!(merged["spec"]["tolerations"], json!([{"key": "y"}]));
    }

    #[test]
    fn remove_items_drops_fields_and_emptied_parents() {
        let types = Types::of::<ConfigMap>();
        let value = json!({"data": {"a": "1"}, "metadata": {"name": "x"}});
        let mut set = Set::new();
        set.insert(&[
            PathElement::Field("data".into()),
            PathElement::Field("a".into()),
        ]);
        let out = remove_items(&value, &set, Shape::Builtin(types.root())).unwrap();
        assert_eq!(out, json!({"metadata": {"name": "x"}}));
    }

    #[test]
    fn custom_resources_use_list_map_keys_and_object_meta() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
            "args": {"type": "array", "items": {"type": "string"}}
        }}}});
        let value = json!({"metadata": {"finalizers": ["f"]}, "spec": {"ports": [{"name": "http", "port": 80}], "args": ["a"]}});
        let set = to_field_set(&value, Shape::custom(Some(&schema)));
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"f\"": {}}},
                "f:spec": {"f:args": {}, "f:ports": {"k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}}}
            })
        );
        let no_schema = to_field_set(&json!({"spec": {"x": 1}}), Shape::custom(None));
        assert_eq!(
            no_schema.to_fields_v1(),
            json!({"f:spec": {".": {}, "f:x": {}}})
        );
    }

    #[test]
    fn configurations_with_unkeyed_or_duplicate_items_are_rejected() {
        let types = Types::of::<Pod>();
        let shape = Shape::Builtin(types.root());
        let missing = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(validate_keys(&missing, shape).is_err());
        let duplicate = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        let err = validate_keys(&duplicate, shape).unwrap_err();
        assert!(err.message.contains("duplicate"), "{err}");
        assert!(validate_keys(&json!({"spec": {"containers": [{"name": "a"}]}}), shape).is_ok());
    }
}
