//! Strategic merge patch (`application/strategic-merge-patch+json`) of the built-in kinds, as upstream's
//! apimachinery applies it on the server: lists merge by their `patchMergeKey` (or, for lists of scalars, as
//! a union) where the type says `patchStrategy: merge` and are replaced otherwise; maps merge key by key,
//! `null` deletes. Directives: `$patch` (`replace`, `delete`; `merge` is implied), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. Which fields merge how comes from
//! [`crate::patchmeta`]; custom resources have no such metadata and are not patched here (upstream answers 415).
//! No crate implements this (json-patch does RFC 7386 and 6902 only), hence the hand-written walk.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::patchmeta::Node;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The patch is malformed (a directive in the wrong shape, an unknown `$patch` value).
    #[error("{0}")]
    BadRequest(String),
    /// The patch does not fit the object (items without their merge key, lists of lists).
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, Error>;

/// Applies `patch` to `original` (a whole object of a built-in kind whose schema `node` is).
pub fn apply(original: &Value, patch: &Value, node: Node<'_>) -> Result<Value> {
    let Some(patch) = patch.as_object() else {
        return Err(Error::BadRequest(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = original.as_object().cloned().unwrap_or_default();
    merge_map(original, patch.clone(), Some(node)).map(Value::Object)
}

/// The kinds of JSON value upstream tells apart when it decides whether to merge or to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Map,
    List,
    Scalar,
}

fn shape(value: &Value) -> Shape {
    match value {
        Value::Object(_) => Shape::Map,
        Value::Array(_) => Shape::List,
        _ => Shape::Scalar,
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: Option<Node<'_>>,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => Ok(patch),
            Some("delete") => Ok(Map::new()),
            _ => Err(Error::BadRequest(format!(
                "Unknown patch type: {directive} in map: {}",
                Value::Object(patch)
            ))),
        };
    }
    retain_keys(&mut original, &mut patch)?;
    set_element_orders(&mut original, &mut patch, node)?;

    for (key, value) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(list) => (list.to_owned(), true),
            None => (key, false),
        };
        if value.is_null() {
            original.remove(&key);
            continue;
        }
        let Some(current) = original.get(&key) else {
            if !delete_list && let Some(value) = cleaned(value) {
                original.insert(key, value);
            }
            continue;
        };
        if shape(current) != shape(&value) {
            if !delete_list {
                match cleaned(value) {
                    Some(value) => original.insert(key, value),
                    None => original.remove(&key),
                };
            }
            continue;
        }
        let child = node.and_then(|n| n.child(&key));
        let meta = child.map(|c| c.patch()).unwrap_or_default();
        let merged = match (original.remove(&key), value) {
            (Some(Value::Object(current)), Value::Object(value)) => {
                if strategies(meta.strategy).any(|s| s == "replace") {
                    Some(Value::Object(value))
                } else {
                    Some(Value::Object(merge_map(current, value, child)?))
                }
            }
            (Some(Value::Array(current)), Value::Array(value)) => {
                if meta.merges() || delete_list {
                    Some(Value::Array(merge_list(
                        current,
                        value,
                        child.and_then(|c| c.items()),
                        meta.merge_key,
                        delete_list,
                    )?))
                } else {
                    Some(Value::Array(value))
                }
            }
            (_, value) => remove_directives(value),
        };
        if let Some(merged) = merged {
            original.insert(key, merged);
        }
    }
    Ok(original)
}

fn strategies(strategy: &str) -> impl Iterator<Item = &str> {
    strategy.split(',').filter(|s| !s.is_empty())
}

/// A value from the patch as it lands in the object: without `null`s and without directive maps.
fn cleaned(mut value: Value) -> Option<Value> {
    discard_nulls(&mut value);
    remove_directives(value)
}

fn discard_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(list) => list.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Drops maps that carry a `$patch` directive (and list items that are such maps); None when the value
/// itself is one.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                map.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(list) => Some(Value::Array(
            list.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// `$retainKeys`: keys of the original the list does not name are cleared; the patch may only set keys it
/// names.
fn retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<()> {
    let Some(retained) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || Error::BadRequest("invalid patch format of retainKeys".into());
    let retained: Vec<&str> = retained
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|k| k.as_str().ok_or_else(bad))
        .collect::<Result<_>>()?;
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained.contains(&key.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|key, _| retained.contains(&key.as_str()));
    Ok(())
}

/// `$setElementOrder/<list>`: merges the list now and orders the result as the directive says (the items it
/// names first, in its order; the others where they were).
fn set_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    node: Option<Node<'_>>,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in keys {
        let Some(order) = patch.remove(&directive) else {
            continue;
        };
        let bad = || Error::BadRequest("invalid patch format of setElementOrder list".into());
        let Value::Array(order) = order else {
            return Err(bad());
        };
        let key = directive
            .strip_prefix(SET_ELEMENT_ORDER)
            .filter(|k| !k.is_empty())
            .ok_or_else(bad)?
            .to_owned();
        let current = match original.get(&key) {
            Some(Value::Array(list)) => Some(list.clone()),
            Some(_) => return Err(not_a_list(&key)),
            None => None,
        };
        let patched = match patch.remove(&key) {
            Some(Value::Array(list)) => Some(list),
            Some(_) => return Err(not_a_list(&key)),
            None => None,
        };
        let child = node.and_then(|n| n.child(&key));
        let meta = child.map(|c| c.patch()).unwrap_or_default();
        let merge_key = meta.merge_key;
        check_order(patched.as_deref().unwrap_or_default(), &order, merge_key)?;
        let merged = match (&current, patched.clone()) {
            (Some(current), None) => current.clone(),
            (None, Some(patched)) => match remove_directives(Value::Array(patched)) {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            },
            (Some(current), Some(patched)) => {
                if meta.merges() {
                    merge_list(
                        current.clone(),
                        patched,
                        child.and_then(|c| c.items()),
                        merge_key,
                        false,
                    )?
                } else {
                    patched
                }
            }
            (None, None) => continue,
        };
        let all: Vec<Value> = current
            .iter()
            .flatten()
            .chain(patched.iter().flatten())
            .cloned()
            .collect();
        let kind = element_shape(&all)?;
        let (ordered, rest) = partition(merged, &order, merge_key, kind)?;
        let both = normalize_order(
            ordered,
            rest,
            &order,
            current.as_deref().unwrap_or_default(),
            merge_key,
            kind,
        )?;
        original.insert(key, Value::Array(both));
    }
    Ok(())
}

fn not_a_list(key: &str) -> Error {
    Error::Invalid(format!(
        "{key} is a list in the patch but not in the object, or the other way round"
    ))
}

/// The items of the patched list must appear in the same relative order as in `$setElementOrder`.
fn check_order(patched: &[Value], order: &[Value], merge_key: Option<&str>) -> Result<()> {
    if order.is_empty() || patched.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = match merge_key {
        Some(_) => patched.iter().filter(|v| !is_delete(v)).collect(),
        None => patched.iter().collect(),
    };
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if items[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if key_equal(items[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(Error::BadRequest(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}",
            Value::Array(patched.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn key_equal(a: &Value, b: &Value, merge_key: Option<&str>) -> Result<bool> {
    match merge_key {
        None => Ok(a == b),
        Some(key) => Ok(merge_key_of(a, key)? == merge_key_of(b, key)?),
    }
}

fn merge_key_of<'v>(item: &'v Value, key: &str) -> Result<&'v Value> {
    let map = item
        .as_object()
        .ok_or_else(|| Error::Invalid(format!("{item} is not a map (merge key {key})")))?;
    map.get(key).ok_or_else(|| {
        Error::Invalid(format!(
            "map: {item} does not contain declared merge key: {key}"
        ))
    })
}

fn is_delete(item: &Value) -> bool {
    item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

/// The one shape all items of the lists share; lists of lists cannot be merged.
fn element_shape(items: &[Value]) -> Result<Shape> {
    let mut found: Option<&Value> = None;
    for item in items {
        match found {
            None => {
                if item.is_array() {
                    return Err(Error::Invalid("lists of lists are not supported".into()));
                }
                found = Some(item);
            }
            Some(first) => {
                let same = match (first, item) {
                    (Value::Number(a), Value::Number(b)) => a.is_f64() == b.is_f64(),
                    _ => std::mem::discriminant(first) == std::mem::discriminant(item),
                };
                if !same {
                    return Err(Error::Invalid(format!(
                        "list element types are not identical: {first} and {item}"
                    )));
                }
            }
        }
    }
    found
        .map(shape)
        .ok_or_else(|| Error::Invalid("no elements in any of the given slices".into()))
}

fn merge_list(
    current: Vec<Value>,
    patch: Vec<Value>,
    items: Option<Node<'_>>,
    merge_key: Option<&str>,
    delete_list: bool,
) -> Result<Vec<Value>> {
    if current.is_empty() && patch.is_empty() {
        return Ok(current);
    }
    let all: Vec<Value> = current.iter().chain(&patch).cloned().collect();
    let kind = element_shape(&all)?;
    let (current, patch, merged) = if kind != Shape::Map {
        if delete_list {
            return Ok(current.into_iter().filter(|v| !patch.contains(v)).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(all.len());
        for value in all {
            if !merged.contains(&value) {
                merged.push(value);
            }
        }
        (current, patch, merged)
    } else {
        let Some(key) = merge_key else {
            return Err(Error::Invalid(
                "cannot merge lists without merge key".into(),
            ));
        };
        let (current, patch) = special_elements(current, patch, key)?;
        let merged = merge_items(current.clone(), &patch, key, items)?;
        (current, patch, merged)
    };
    let (ordered, rest) = partition(merged, &patch, merge_key, kind)?;
    normalize_order(ordered, rest, &patch, &current, merge_key, kind)
}

/// `$patch: delete` items remove their item from the list; `$patch: replace` makes the patch's items the list.
fn special_elements(
    mut current: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = merge_key_of(&item, key)?.clone();
                for existing in &current {
                    if !existing.is_object() {
                        return Err(Error::Invalid(format!("{existing} is not a map")));
                    }
                }
                current.retain(|existing| existing.get(key) != Some(&value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(Error::BadRequest(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            _ => {
                return Err(Error::BadRequest(format!(
                    "Unknown patch type: {directive} in map: {item}"
                )));
            }
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((current, plain))
    }
}

fn merge_items(
    mut current: Vec<Value>,
    patch: &[Value],
    key: &str,
    items: Option<Node<'_>>,
) -> Result<Vec<Value>> {
    for item in patch {
        let value = merge_key_of(item, key)?;
        let mut found = None;
        for (i, existing) in current.iter().enumerate() {
            let Some(existing) = existing.as_object() else {
                return Err(Error::Invalid(format!("value for key {i} is not a map")));
            };
            if existing.get(key) == Some(value) {
                found = Some(i);
                break;
            }
        }
        match (found, item) {
            (Some(i), Value::Object(patch_item)) => {
                let existing = match std::mem::take(&mut current[i]) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                current[i] = Value::Object(merge_map(existing, patch_item.clone(), items)?);
            }
            _ => {
                if let Some(item) = cleaned(item.clone()) {
                    current.push(item);
                }
            }
        }
    }
    Ok(current)
}

/// Splits merged items into those the patch (or order list) names and the rest, the server's.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
    kind: Shape,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut named = Vec::with_capacity(merged.len());
    let mut rest = Vec::new();
    for item in merged {
        let present = match (kind, merge_key) {
            (Shape::Map, Some(key)) => {
                let value = merge_key_of(&item, key)?;
                by.iter()
                    .any(|b| b.as_object().and_then(|m| m.get(key)) == Some(value))
            }
            _ => by.contains(&item),
        };
        if present {
            named.push(item);
        } else {
            rest.push(item);
        }
    }
    Ok((named, rest))
}

fn position(list: &[Value], item: &Value, merge_key: Option<&str>, kind: Shape) -> Option<usize> {
    match (kind, merge_key) {
        (Shape::Map, Some(key)) => {
            let value = item.get(key);
            list.iter().position(|v| v.get(key) == value)
        }
        _ => list.iter().position(|v| v == item),
    }
}

/// Orders the patch's items by the patch (or `$setElementOrder`), the server's by the live list, and
/// interleaves them by the live list's order where both sides know an item.
fn normalize_order(
    mut named: Vec<Value>,
    mut rest: Vec<Value>,
    order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: Shape,
) -> Result<Vec<Value>> {
    sort_by(&mut named, order, merge_key, kind)?;
    sort_by(&mut rest, server_order, merge_key, kind)?;
    let mut out = Vec::with_capacity(named.len() + rest.len());
    let mut left = rest.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    position(server_order, l, merge_key, kind),
                    position(server_order, r, merge_key, kind),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn sort_by(
    items: &mut Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    kind: Shape,
) -> Result<()> {
    let mut deleted = Vec::new();
    if kind == Shape::Map
        && let Some(key) = merge_key
    {
        for item in items.iter().chain(order) {
            merge_key_of(item, key)?;
        }
        let (keep, delete): (Vec<Value>, Vec<Value>) = std::mem::take(items)
            .into_iter()
            .partition(|v| !is_delete(v));
        *items = keep;
        deleted = delete;
    }
    items.sort_by(|a, b| {
        match (
            position(order, a, merge_key, kind),
            position(order, b, merge_key, kind),
        ) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => Ordering::Equal,
        }
    });
    items.extend(deleted);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patchmeta::Types;
    use k8s_openapi::api::core::v1::{Pod, Service};
    use serde_json::json;

    fn pod_patch(original: Value, patch: Value) -> Result<Value> {
        let types = Types::of::<Pod>();
        apply(&original, &patch, types.root())
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web", "finalizers": ["a", "b"], "labels": {"app": "web", "tier": "x"}},
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "side:1"}
                ],
                "tolerations": [{"key": "k1"}],
            }
        })
    }

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let out = pod_patch(
            pod(),
            json!({"spec": {"containers": [{"name": "app", "image": "app:2", "env": [{"name": "C", "value": "3"}]}]}}),
        )
        .unwrap();
        let containers = &out["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        assert_eq!(containers[0]["image"], "app:2");
        // Without `$setElementOrder`, upstream puts the patch's new items before the server's.
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "C", "value": "3"}, {"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(containers[1]["name"], "sidecar");
    }

    #[test]
    fn lists_without_a_merge_strategy_are_replaced() {
        let out = pod_patch(pod(), json!({"spec": {"tolerations": [{"key": "k2"}]}})).unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "k2"}]));
    }

    #[test]
    fn finalizers_are_a_union_and_delete_from_primitive_list_removes() {
        let out = pod_patch(pod(), json!({"metadata": {"finalizers": ["c", "a"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = pod_patch(
            pod(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn patch_delete_removes_an_item_and_null_removes_a_key() {
        let out = pod_patch(
            pod(),
            json!({"metadata": {"labels": {"tier": null}}, "spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn patch_replace_replaces_a_map_or_a_list() {
        let out = pod_patch(
            pod(),
            json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
        let out = pod_patch(
            pod(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "new", "image": "n"}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "new", "image": "n"}])
        );
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        let out = pod_patch(
            pod(),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [{"name": "app", "image": "app:3"}]
            }}),
        )
        .unwrap();
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecar", "app"]);
        assert_eq!(out["spec"]["containers"][1]["image"], "app:3");
    }

    #[test]
    fn retain_keys_clears_what_it_does_not_name() {
        let types = Types::of::<k8s_openapi::api::apps::v1::Deployment>();
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = apply(&original, &patch, types.root()).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        assert!(matches!(
            apply(&original, &bad, types.root()),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let types = Types::of::<Service>();
        let original = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let out = apply(&original, &patch, types.root()).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443, "name": "https"}])
        );
    }

    #[test]
    fn items_without_their_merge_key_and_unknown_directives_are_rejected() {
        assert!(matches!(
            pod_patch(pod(), json!({"spec": {"containers": [{"image": "x"}]}})),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            pod_patch(
                pod(),
                json!({"metadata": {"labels": {"$patch": "explode"}}})
            ),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn kubectl_three_way_patch_applies_as_on_a_cluster() {
        // What kubectl 1.32 sends when a manifest drops env B and adds a port: the directive lists and
        // the changed items only.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}],
                    "name": "app",
                    "ports": [{"containerPort": 80}]
                }]
            }
        });
        let out = pod_patch(pod(), patch).unwrap();
        let app = &out["spec"]["containers"][0];
        assert_eq!(app["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(app["ports"], json!([{"containerPort": 80}]));
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}"
        );
    }
}
