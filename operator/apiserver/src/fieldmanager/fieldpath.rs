//! Field paths and sets of them, as structured-merge-diff models them: a path is a sequence of elements
//! (a field name, a list item's key values, a set item's value, an index), a set is a trie of paths.
//! Sets are what `metadata.managedFields[].fieldsV1` encodes (`f:`, `k:`, `v:`, `i:` keys; `.` marks a
//! path that is itself a member when it also has children).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of a map or struct.
    Field(String),
    /// An item of a list of maps, by the values of its key fields (sorted by field name).
    Key(Vec<(String, Value)>),
    /// An item of a set, by its value.
    Value(Value),
    /// An item of a list by position (never produced here; kept when read from managedFields).
    Index(usize),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The key it takes in FieldsV1.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let map: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(map))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Reads a FieldsV1 key; None for element types this version does not know (skipped, as upstream does).
    pub fn decode(key: &str) -> Result<Option<PathElement>, String> {
        let (kind, rest) = key
            .split_once(':')
            .ok_or_else(|| format!("missing colon: {key}"))?;
        let parse = |text: &str| -> Result<Value, String> {
            serde_json::from_str(text).map_err(|e| format!("{key}: {e}"))
        };
        Ok(Some(match kind {
            "f" => PathElement::Field(rest.to_owned()),
            "v" => PathElement::Value(parse(rest)?),
            "k" => match parse(rest)? {
                Value::Object(map) => PathElement::Key(map.into_iter().collect()),
                _ => return Err(format!("{key}: a key must be a JSON object")),
            },
            "i" => PathElement::Index(rest.parse().map_err(|_| format!("{key}: bad index"))?),
            _ => return Ok(None),
        }))
    }
}

impl fmt::Display for PathElement {
    /// Upstream's path notation, used in conflict messages: `.name`, `[key="value"]`, `[=value]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(value) => write!(f, "[={}]", value_string(value)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// How upstream prints a value inside a path: strings quoted, other scalars bare.
fn value_string(value: &Value) -> String {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", value_string(v)))
            .collect(),
        Value::Array(list) => {
            let items: Vec<String> = list.iter().map(value_string).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// Upstream's total order of values: numbers, strings, booleans, lists, maps, null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                let c = compare_values(x, y);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                let c = kx.cmp(ky).then_with(|| compare_values(vx, vy));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    let c = ka.cmp(kb).then_with(|| compare_values(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

pub type Path = Vec<PathElement>;

/// Renders a path as upstream does (`.spec.containers[name="app"].image`).
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of paths: the members at this level and the sets below each element. Children are never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The set below one element (empty when there is none).
    pub fn with_prefix(&self, element: &PathElement) -> Set {
        self.children.get(element).cloned().unwrap_or_default()
    }

    pub fn member_elements(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub fn child_sets(&self) -> impl Iterator<Item = (&PathElement, &Set)> {
        self.children.iter()
    }

    pub fn add_member(&mut self, element: PathElement) {
        self.members.insert(element);
    }

    pub fn set_child(&mut self, element: PathElement, set: Set) {
        if set.is_empty() {
            self.children.remove(&element);
        } else {
            self.children.insert(element, set);
        }
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (element, set) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(set),
                None => set.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut out = Set {
            members,
            children: BTreeMap::new(),
        };
        for (element, set) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                out.set_child(element.clone(), set.intersection(theirs));
            }
        }
        out
    }

    /// Paths of self not in other; a member of other does not remove self's paths below it.
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut out = Set {
            members,
            children: BTreeMap::new(),
        };
        for (element, set) in &self.children {
            match other.children.get(element) {
                Some(theirs) => out.set_child(element.clone(), set.difference(theirs)),
                None => out.set_child(element.clone(), set.clone()),
            }
        }
        out
    }

    /// Like `difference`, and a member of other also removes everything below it.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut out = Set {
            members,
            children: BTreeMap::new(),
        };
        for (element, set) in &self.children {
            if other.members.contains(element) {
                continue;
            }
            match other.children.get(element) {
                Some(theirs) => out.set_child(element.clone(), set.recursive_difference(theirs)),
                None => out.set_child(element.clone(), set.clone()),
            }
        }
        out
    }

    /// Every member path, members of a level before the levels below it (upstream's iteration order).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            out.push(path);
        }
        for (element, set) in &self.children {
            prefix.push(element.clone());
            set.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 encoding.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        for member in &self.members {
            if !self.children.contains_key(member) {
                out.insert(member.encode(), Value::Object(Map::new()));
            }
        }
        for (element, set) in &self.children {
            let mut inner = match set.to_fields_v1() {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            if self.members.contains(element) {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            out.insert(element.encode(), Value::Object(inner));
        }
        Value::Object(out)
    }

    /// Reads FieldsV1.
    pub fn from_fields_v1(value: &Value) -> Result<Set, String> {
        let Some(map) = value.as_object() else {
            return Err("fieldsV1 must be a JSON object".into());
        };
        let mut set = Set::new();
        for (key, inner) in map {
            if key == "." {
                continue;
            }
            let Some(element) = PathElement::decode(key)? else {
                continue;
            };
            let Some(inner_map) = inner.as_object() else {
                return Err(format!("{key}: expected a JSON object"));
            };
            let child = Set::from_fields_v1(inner)?;
            // `{}` and `{".": {}}` mark a member; anything else is a set below, a member too with `.`.
            if child.is_empty() || inner_map.contains_key(".") {
                set.members.insert(element.clone());
            }
            set.set_child(element, child);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    fn container(name: &str) -> PathElement {
        PathElement::Key(vec![("name".into(), json!(name))])
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
        let mut set = Set::new();
        set.insert(&[field("data"), field("key")]);
        set.insert(&[field("spec"), field("containers"), container("app")]);
        set.insert(&[
            field("spec"),
            field("containers"),
            container("app"),
            field("image"),
        ]);
        set.insert(&[
            field("metadata"),
            field("finalizers"),
            PathElement::Value(json!("x")),
        ]);
        let encoded = set.to_fields_v1();
        assert_eq!(
            encoded,
            json!({
                "f:data": {"f:key": {}},
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}}}}
            })
        );
        assert_eq!(Set::from_fields_v1(&encoded).unwrap(), set);
    }

    #[test]
    fn paths_print_as_upstream() {
        let path = vec![
            field("spec"),
            field("containers"),
            container("app"),
            field("image"),
        ];
        assert_eq!(path_string(&path), ".spec.containers[name=\"app\"].image");
        let port = PathElement::Key(vec![
            ("containerPort".into(), json!(80)),
            ("protocol".into(), json!("TCP")),
        ]);
        assert_eq!(port.to_string(), "[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(PathElement::Value(json!("a")).to_string(), "[=\"a\"]");
    }

    #[test]
    fn difference_keeps_children_of_removed_members_and_recursive_difference_does_not() {
        let mut a = Set::new();
        a.insert(&[field("spec")]);
        a.insert(&[field("spec"), field("x")]);
        let mut b = Set::new();
        b.insert(&[field("spec")]);
        let d = a.difference(&b);
        assert!(!d.has(&[field("spec")]) && d.has(&[field("spec"), field("x")]));
        assert!(a.recursive_difference(&b).is_empty());
        assert_eq!(a.intersection(&b), b);
        assert_eq!(d.union(&b), a);
    }

    #[test]
    fn unknown_element_kinds_are_skipped_and_garbage_is_an_error() {
        let set = Set::from_fields_v1(&json!({"f:a": {}, "z:b": {}})).unwrap();
        assert!(set.has(&[field("a")]));
        assert_eq!(set.paths().len(), 1);
        assert!(Set::from_fields_v1(&json!({"nocolon": {}})).is_err());
        assert!(Set::from_fields_v1(&json!([])).is_err());
    }

    #[test]
    fn values_order_numbers_strings_booleans_then_null() {
        let mut values = vec![json!(null), json!(true), json!("b"), json!(2), json!(1.5)];
        values.sort_by(compare_values);
        assert_eq!(
            values,
            vec![json!(1.5), json!(2), json!("b"), json!(true), json!(null)]
        );
    }
}
