//! What kube-apiserver's apiextensions does with a CRD version's structural `openAPIV3Schema`: [`prune`]
//! unknown fields, [`default`] absent ones, [`validate`] the result (kube-openapi's rules plus list-type
//! uniqueness) into upstream-shaped causes. Not here: CEL rules and ObjectMeta inside embedded resources.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::error::Cause;

const PRESERVE_UNKNOWN: &str = "x-kubernetes-preserve-unknown-fields";
const EMBEDDED_RESOURCE: &str = "x-kubernetes-embedded-resource";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
/// TypeMeta and ObjectMeta: never pruned at the root or in an embedded resource.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

// ---------------------------------------------------------------------------------------------
// Schema accessors. A schema is any JSON object; missing or mistyped keywords count as absent.

fn properties(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties")?.as_object()
}

fn items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

enum Additional<'a> {
    Absent,
    Allowed(bool),
    Schema(&'a Value),
}

fn additional(s: &Value) -> Additional<'_> {
    match s.get("additionalProperties") {
        Some(Value::Bool(allowed)) => Additional::Allowed(*allowed),
        Some(schema @ Value::Object(_)) => Additional::Schema(schema),
        _ => Additional::Absent,
    }
}

fn additional_schema(s: &Value) -> Option<&Value> {
    match additional(s) {
        Additional::Schema(schema) => Some(schema),
        _ => None,
    }
}

fn flag(s: &Value, name: &str) -> bool {
    s.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn nullable(s: &Value) -> bool {
    flag(s, "nullable")
}

/// `default: null` is no default, as in upstream's structural schema.
fn default_value(s: &Value) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

fn int_keyword(s: &Value, name: &str) -> Option<i64> {
    let n = s.get(name)?;
    n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))
}

fn float_keyword(s: &Value, name: &str) -> Option<f64> {
    s.get(name)?.as_f64()
}

fn array_keyword<'a>(s: &'a Value, name: &str) -> &'a [Value] {
    s.get(name)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The schema of `key` inside an object: its property, else the additionalProperties schema.
fn field_schema<'a>(s: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = s?;
    properties(s)
        .and_then(|p| p.get(key))
        .or_else(|| additional_schema(s))
}

// ---------------------------------------------------------------------------------------------
// Defaulting

/// Applies `default`s as upstream's structural defaulting does, after dropping nulls the schema
/// cannot hold (`PruneNonNullableNullsWithoutDefaults` then `Default`).
///
/// A property absent from an object gets its default; so does a null for a non-nullable property,
/// array item or additionalProperties value that has one. Defaults are applied recursively, also
/// inside freshly defaulted values, so a nested default applies only when its parent exists or is
/// itself defaulted. A null for a non-nullable object field without a default is removed.
pub fn default(schema: &Value, obj: &mut Value) {
    drop_impossible_nulls(obj, Some(schema));
    apply_defaults(obj, schema);
}

fn drop_impossible_nulls(x: &mut Value, s: Option<&Value>) {
    match x {
        Value::Object(map) => map.retain(|key, value| {
            let sub = field_schema(s, key);
            let impossible = value.is_null()
                && sub.is_some_and(|sub| !nullable(sub) && default_value(sub).is_none());
            if !impossible {
                drop_impossible_nulls(value, sub);
            }
            !impossible
        }),
        Value::Array(list) => {
            let sub = s.and_then(items);
            for value in list {
                drop_impossible_nulls(value, sub);
            }
        }
        _ => {}
    }
}

fn default_null(value: &mut Value, s: &Value) {
    if value.is_null()
        && !nullable(s)
        && let Some(d) = default_value(s)
    {
        *value = d.clone();
    }
}

fn apply_defaults(x: &mut Value, s: &Value) {
    match x {
        Value::Object(map) => {
            let props = properties(s);
            for (key, prop) in props.into_iter().flatten() {
                let Some(d) = default_value(prop) else {
                    continue;
                };
                match map.get_mut(key) {
                    None => {
                        map.insert(key.clone(), d.clone());
                    }
                    Some(value) => default_null(value, prop),
                }
            }
            let extra = additional_schema(s);
            for (key, value) in map.iter_mut() {
                if let Some(prop) = props.and_then(|p| p.get(key)) {
                    apply_defaults(value, prop);
                } else if let Some(extra) = extra {
                    default_null(value, extra);
                    apply_defaults(value, extra);
                }
            }
        }
        Value::Array(list) => {
            if let Some(item) = items(s) {
                for value in list {
                    default_null(value, item);
                    apply_defaults(value, item);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Pruning

/// Drops fields the schema does not specify and returns their paths, sorted (`spec.foo`,
/// `spec.items[0].bar`), for `fieldValidation=Strict|Warn`.
///
/// Kept: declared `properties`; any key of an object with an `additionalProperties` schema or
/// `additionalProperties: true` (its value is pruned against that schema); everything under
/// `x-kubernetes-preserve-unknown-fields: true` except inside declared properties; `apiVersion`,
/// `kind` and `metadata` at the root and in `x-kubernetes-embedded-resource` objects (metadata
/// content is not pruned here). Upstream's order for an incoming object is prune, [`default`],
/// [`validate`].
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruner = Pruner::default();
    pruner.prune(obj, Some(schema), true);
    pruner.pruned.sort();
    pruner.pruned
}

#[derive(Default)]
struct Pruner {
    path: String,
    pruned: Vec<String>,
}

impl Pruner {
    /// Appends a key to the current path and returns the length to truncate back to.
    fn enter_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        len
    }

    fn enter_index(&mut self, index: usize) -> usize {
        let len = self.path.len();
        self.path.push_str(&format!("[{index}]"));
        len
    }

    fn record(&mut self, key: &str) {
        let len = self.enter_key(key);
        self.pruned.push(self.path.clone());
        self.path.truncate(len);
    }

    fn prune(&mut self, x: &mut Value, s: Option<&Value>, embedded: bool) {
        if let Some(s) = s.filter(|s| flag(s, PRESERVE_UNKNOWN)) {
            self.skip(x, s, embedded);
            return;
        }
        match x {
            Value::Object(map) => {
                let Some(s) = s else {
                    for key in map.keys() {
                        self.record(key);
                    }
                    map.clear();
                    return;
                };
                let props = properties(s);
                let extra = additional(s);
                map.retain(|key, value| {
                    if embedded && META_FIELDS.contains(&key.as_str()) {
                        return true;
                    }
                    let sub = match (props.and_then(|p| p.get(key)), &extra) {
                        (Some(prop), _) => Some(prop),
                        (None, Additional::Schema(schema)) => Some(*schema),
                        (None, Additional::Allowed(true)) => None,
                        (None, _) => {
                            self.record(key);
                            return false;
                        }
                    };
                    let len = self.enter_key(key);
                    self.prune(value, sub, sub.is_some_and(|s| flag(s, EMBEDDED_RESOURCE)));
                    self.path.truncate(len);
                    true
                });
            }
            Value::Array(list) => {
                let item = s.and_then(items);
                for (i, value) in list.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.prune(
                        value,
                        item,
                        item.is_some_and(|s| flag(s, EMBEDDED_RESOURCE)),
                    );
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// Under preserve-unknown-fields: unknown keys stay, declared ones are pruned by their schema.
    fn skip(&mut self, x: &mut Value, s: &Value, embedded: bool) {
        match x {
            Value::Object(map) => {
                let props = properties(s);
                let extra = additional(s);
                for (key, value) in map.iter_mut() {
                    if embedded && META_FIELDS.contains(&key.as_str()) {
                        continue;
                    }
                    let sub = match (props.and_then(|p| p.get(key)), &extra) {
                        (Some(prop), _) => Some(prop),
                        (None, Additional::Schema(schema)) => Some(*schema),
                        (None, Additional::Allowed(true)) => None,
                        (None, _) => continue,
                    };
                    let len = self.enter_key(key);
                    self.prune(value, sub, sub.is_some_and(|s| flag(s, EMBEDDED_RESOURCE)));
                    self.path.truncate(len);
                }
            }
            Value::Array(list) => {
                let Some(item) = items(s) else { return };
                for (i, value) in list.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.skip(value, item, flag(item, EMBEDDED_RESOURCE));
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Validates `obj` against the schema as kube-openapi does for custom resources, then checks
/// `x-kubernetes-list-type: set|map` uniqueness, and returns upstream-shaped causes
/// (`FieldValueRequired`, `FieldValueTypeInvalid`, `FieldValueInvalid`, `FieldValueNotSupported`,
/// `FieldValueTooLong`, `FieldValueTooMany`, `FieldValueDuplicate`). `x-kubernetes-validations`
/// are ignored.
pub fn validate(schema: &Value, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(schema, obj, "", &mut causes);
    // kube-openapi's result drops an error whose message it already holds.
    let mut seen = Vec::with_capacity(causes.len());
    causes.retain(|c: &Cause| {
        let key = (c.reason.clone(), c.field.clone(), c.message.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    if let Value::Object(map) = obj {
        list_types_in_object(schema, map, "", &mut causes);
    }
    causes
}

/// The field of a kube-openapi path: it names required properties with a leading dot.
fn field_of(path: &str) -> &str {
    path.strip_prefix('.').unwrap_or(path)
}

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// `Invalid value: <value>: <detail>` with a `field.Invalid` reason.
fn invalid(path: &str, value: &Value, detail: String) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        field_of(path),
        format!("Invalid value: {}: {detail}", render_value(value)),
    )
}

/// kube-openapi's `InvalidType`: `<path> in body must be of type <t>: "<got>"`.
fn type_invalid(path: &str, type_name: &str, got: &str) -> Cause {
    let quoted = crate::gostr::quote(got);
    Cause::new(
        "FieldValueTypeInvalid",
        field_of(path),
        format!("Invalid value: {quoted}: {path} in body must be of type {type_name}: {quoted}"),
    )
}

/// An error kube-openapi does not tie to a field (the junctors): upstream reports it at the root.
fn composite(detail: String) -> Cause {
    Cause::new(
        "FieldValueInvalid",
        "",
        format!("Invalid value: \"\": {detail}"),
    )
}

fn too_many(path: &str, actual: usize, max: i64) -> Cause {
    Cause::new(
        "FieldValueTooMany",
        field_of(path),
        format!("Too many: {actual}: must have at most {max} items"),
    )
}

fn check(s: &Value, data: &Value, path: &str, out: &mut Vec<Cause>) {
    let types = schema_types(s);
    let format = effective_format(s, &types);
    check_type(s, &types, format, data, path, out);
    if data.is_null() {
        check_enum(s, data, path, out);
        return;
    }
    check_junctors(s, data, path, out);
    match data {
        Value::String(text) => {
            check_string(s, text, path, out);
            check_format(format, text, path, out);
        }
        Value::Number(n) => check_number(s, &types, format, n, path, out),
        Value::Array(list) => check_array(s, list, path, out),
        _ => {}
    }
    check_enum(s, data, path, out);
    if let Value::Object(map) = data {
        check_object(s, map, path, out);
    }
}

fn check_collect(s: &Value, data: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    check(s, data, path, &mut out);
    out
}

fn schema_types(s: &Value) -> Vec<&str> {
    if flag(s, INT_OR_STRING) {
        return vec!["integer", "string"];
    }
    match s.get("type") {
        Some(Value::String(t)) if !t.is_empty() => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// String formats a CRD may use; upstream blanks every other format before validating.
const SUPPORTED_STRING_FORMATS: [&str; 27] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "quantity",
    "k8sshortname",
    "k8slongname",
];

fn effective_format<'a>(s: &'a Value, types: &[&str]) -> &'a str {
    let Some(format) = s.get("format").and_then(Value::as_str) else {
        return "";
    };
    let single = if types.len() == 1 { types[0] } else { "" };
    let supported = match single {
        "" | "string" => SUPPORTED_STRING_FORMATS.contains(&format.replace('-', "").as_str()),
        "integer" => matches!(format, "int32" | "int64"),
        "number" => matches!(format, "float" | "double"),
        _ => false,
    };
    if supported { format } else { "" }
}

/// JSON type and Go format of a decoded value, as kube-openapi infers them from Go types
/// (integers decode to int64, other numbers to float64).
fn json_type(data: &Value) -> (&'static str, &'static str) {
    match data {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.is_i64() => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn num(n: &Number) -> Num {
    match n.as_i64() {
        Some(i) => Num::Int(i),
        None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

fn num_value(n: Num) -> Value {
    match n {
        Num::Int(i) => Value::from(i),
        Num::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
    }
}

/// swag's `IsFloat64AJSONInteger`: an integer within ±(2^53-1), allowing a relative error of 1e-9
/// above it.
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f == f.trunc() {
        return true;
    }
    if f < 0.0 {
        return false;
    }
    let g = f.trunc();
    let diff = f - g;
    if g == 0.0 {
        return false;
    }
    diff / (f + g) < 1e-9
}

fn check_type(
    s: &Value,
    types: &[&str],
    format: &str,
    data: &Value,
    path: &str,
    out: &mut Vec<Cause>,
) {
    if types.is_empty() && format.is_empty() {
        return;
    }
    let has = |t: &str| types.contains(&t);
    if data.is_null() {
        if !types.is_empty() && !has("null") && !nullable(s) {
            out.push(type_invalid(path, &types.join(","), "null"));
        }
        return;
    }
    let (json, go_format) = json_type(data);
    let float_int = matches!(data, Value::Number(n) if !n.is_i64() && n.as_f64().is_some_and(is_json_integer))
        && has("integer");
    let int_float = json == "integer" && has("number");
    let text_or_list = data.is_string() || data.is_array();
    let format_matches = has(json) || go_format == format || float_int || int_float;
    if !(text_or_list || format.is_empty() || format_matches) {
        out.push(type_invalid(path, format, go_format));
        return;
    }
    // A string or list under a string format passes (Go's `strfmt` types are strings and byte slices).
    let numeric = has("number") || has("integer");
    if text_or_list && !numeric && !format.is_empty() {
        return;
    }
    if !(has(json) || float_int || int_float) {
        out.push(type_invalid(path, &types.join(","), json));
    }
}

fn check_junctors(s: &Value, data: &Value, path: &str, out: &mut Vec<Cause>) {
    let quoted = crate::gostr::quote(path);
    let any_of = array_keyword(s, "anyOf");
    if !any_of.is_empty() {
        // Upstream keeps the branch with the most passed checks; the fewest errors stands in for it.
        let mut best: Option<Vec<Cause>> = None;
        let mut matched = false;
        for branch in any_of {
            let errs = check_collect(branch, data, path);
            if errs.is_empty() {
                matched = true;
                best = None;
                break;
            }
            if best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                best = Some(errs);
            }
        }
        if !matched {
            out.push(composite(format!(
                "{quoted} must validate at least one schema (anyOf)"
            )));
        }
        out.extend(best.into_iter().flatten());
    }

    let one_of = array_keyword(s, "oneOf");
    if !one_of.is_empty() {
        let mut best: Option<Vec<Cause>> = None;
        let mut valid = 0;
        for branch in one_of {
            let errs = check_collect(branch, data, path);
            if errs.is_empty() {
                valid += 1;
                best = None;
            } else if valid == 0 && best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                best = Some(errs);
            }
        }
        if valid != 1 {
            let found = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            out.push(composite(format!(
                "{quoted} must validate one and only one schema (oneOf). {found}"
            )));
            out.extend(best.into_iter().flatten());
        }
    }

    let all_of = array_keyword(s, "allOf");
    if !all_of.is_empty() {
        let mut valid = 0;
        for branch in all_of {
            let errs = check_collect(branch, data, path);
            if errs.is_empty() {
                valid += 1;
            }
            out.extend(errs);
        }
        if valid != all_of.len() {
            let none = if valid == 0 { ". None validated" } else { "" };
            out.push(composite(format!(
                "{quoted} must validate all the schemas (allOf){none}"
            )));
        }
    }

    if let Some(not) = s.get("not").filter(|n| n.is_object())
        && check_collect(not, data, path).is_empty()
    {
        out.push(composite(format!(
            "{quoted} must not validate the schema (not)"
        )));
    }
}

/// Upstream stops at the first failing string check.
fn check_string(s: &Value, text: &str, path: &str, out: &mut Vec<Cause>) {
    let len = text.chars().count() as i64;
    if let Some(max) = int_keyword(s, "maxLength")
        && len > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        out.push(Cause::new(
            "FieldValueTooLong",
            field_of(path),
            format!("Too long: may not be more than {max} {unit}"),
        ));
        return;
    }
    if let Some(min) = int_keyword(s, "minLength")
        && len < min
    {
        let detail = format!("{path} in body should be at least {min} chars long");
        out.push(invalid(path, &Value::from(text), detail));
        return;
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        let shown = match pattern_matches(pattern, text) {
            Ok(true) => return,
            Ok(false) => pattern.to_string(),
            Err(err) => format!("{pattern}, but pattern is invalid: {err}"),
        };
        let detail = format!("{path} in body should match '{shown}'");
        out.push(invalid(path, &Value::from(text), detail));
    }
}

/// Compiled user patterns, bounded so that a stream of distinct schemas cannot grow it forever.
static PATTERNS: LazyLock<Mutex<HashMap<String, Result<Regex, String>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const PATTERN_CACHE_LIMIT: usize = 1024;

fn pattern_matches(pattern: &str, text: &str) -> Result<bool, String> {
    Ok(compiled_pattern(pattern)?.is_match(text))
}

fn compiled_pattern(pattern: &str) -> Result<Regex, String> {
    let mut cache = PATTERNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(hit) = cache.get(pattern) {
        return hit.clone();
    }
    let compiled = Regex::new(&go_pattern(pattern)).map_err(|e| go_regex_error(&e));
    if cache.len() >= PATTERN_CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// Go's RE2 reads `\d`, `\w` and `\s` as ASCII classes; the regex crate's are Unicode-aware.
fn go_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(escaped) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let ascii = match (escaped, in_class) {
                    ('d', false) => "[0-9]",
                    ('D', false) => "[^0-9]",
                    ('w', false) => "[0-9A-Za-z_]",
                    ('W', false) => "[^0-9A-Za-z_]",
                    ('s', false) => r"[\t\n\x0C\r ]",
                    ('S', false) => r"[^\t\n\x0C\r ]",
                    ('d', true) => "0-9",
                    ('w', true) => "0-9A-Za-z_",
                    ('s', true) => r"\t\n\x0C\r ",
                    _ => {
                        out.push('\\');
                        out.push(escaped);
                        continue;
                    }
                };
                out.push_str(ascii);
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                // A `]` first in a class is a literal.
                if chars.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as `[:alpha:]` inside a bracket expression.
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            // Literal in a Go class; nesting or set operators in a regex crate class.
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The regex crate's multi-line error, reduced to its last line in Go's wording.
fn go_regex_error(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text.lines().last().unwrap_or_default();
    format!(
        "error parsing regexp: {}",
        last.trim().trim_start_matches("error: ")
    )
}

fn check_format(format: &str, text: &str, path: &str, out: &mut Vec<Cause>) {
    if format.is_empty() {
        return;
    }
    if format_accepts(&format.replace('-', ""), text) == Some(false) {
        out.push(type_invalid(path, format, text));
    }
}

fn check_number(
    s: &Value,
    types: &[&str],
    format: &str,
    n: &Number,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let data = num(n);
    let value = Value::Number(n.clone());
    if let Some(cause) = out_of_format_range(types, format, data, path) {
        out.push(cause);
    }
    if let Some(factor) = float_keyword(s, "multipleOf") {
        let fail = match (data, integral(factor)) {
            (Num::Int(_), Some(f)) if f <= 0 => Some((Num::Int(f), true)),
            (Num::Int(i), Some(f)) => (i % f != 0).then_some((Num::Int(f), false)),
            _ if factor <= 0.0 => Some((Num::Float(factor), true)),
            _ => {
                let d = as_f64(data);
                let mult = if factor < 1.0 {
                    1.0 / factor * d
                } else {
                    d / factor
                };
                (!is_json_integer(mult)).then_some((Num::Float(factor), false))
            }
        };
        match fail {
            Some((f, true)) => out.push(invalid(
                path,
                &num_value(f),
                format!(
                    "factor MultipleOf declared for {path} must be positive: {}",
                    render_num(f)
                ),
            )),
            Some((f, false)) => out.push(invalid(
                path,
                &value,
                format!("{path} in body should be a multiple of {}", render_num(f)),
            )),
            None => {}
        }
    }
    if let Some(min) = float_keyword(s, "minimum") {
        let exclusive = flag(s, "exclusiveMinimum");
        let (below, bound) = compare_bound(data, min);
        if below.is_lt() || (exclusive && below.is_eq()) {
            let relation = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            let detail = format!("{path} in body should be {relation} {}", render_num(bound));
            out.push(invalid(path, &value, detail));
        }
    }
    if let Some(max) = float_keyword(s, "maximum") {
        let exclusive = flag(s, "exclusiveMaximum");
        let (above, bound) = compare_bound(data, max);
        if above.is_gt() || (exclusive && above.is_eq()) {
            let relation = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            let detail = format!("{path} in body should be {relation} {}", render_num(bound));
            out.push(invalid(path, &value, detail));
        }
    }
}

/// kube-openapi checks int32 and float values fit their format; the error names no field.
fn out_of_format_range(types: &[&str], format: &str, data: Num, path: &str) -> Option<Cause> {
    let (type_name, fits) = match (types, format) {
        (["integer"], "int32") => (
            "integer",
            as_f64(data) >= i32::MIN as f64 && as_f64(data) <= i32::MAX as f64,
        ),
        (["number"], "float") => ("number", as_f64(data).abs() <= f32::MAX as f64),
        _ => return None,
    };
    (!fits).then(|| {
        composite(format!(
            "Checked value must be of type {type_name} with format {format} in {path}"
        ))
    })
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

/// A bound as an i64 when it is a whole number in range (upstream then compares natively).
fn integral(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

/// Compares a value with a bound; integers against whole bounds compare (and print) as integers.
fn compare_bound(data: Num, bound: f64) -> (std::cmp::Ordering, Num) {
    match (data, integral(bound)) {
        (Num::Int(i), Some(b)) => (i.cmp(&b), Num::Int(b)),
        _ => (
            as_f64(data)
                .partial_cmp(&bound)
                .unwrap_or(std::cmp::Ordering::Equal),
            Num::Float(bound),
        ),
    }
}

fn render_num(n: Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => go_float(f),
    }
}

fn check_array(s: &Value, list: &[Value], path: &str, out: &mut Vec<Cause>) {
    if let Some(item) = items(s) {
        for (i, value) in list.iter().enumerate() {
            check(item, value, &format!("{path}[{i}]"), out);
        }
    }
    let size = list.len();
    if let Some(min) = int_keyword(s, "minItems")
        && (size as i64) < min
    {
        let detail = format!("{path} in body should have at least {min} items");
        out.push(invalid(path, &Value::from(size), detail));
    }
    if let Some(max) = int_keyword(s, "maxItems")
        && size as i64 > max
    {
        out.push(too_many(path, size, max));
    }
    let mut seen = std::collections::HashSet::new();
    if flag(s, "uniqueItems") && !list.iter().all(|v| seen.insert(typed_json(v))) {
        let detail = format!("{path} in body shouldn't contain duplicates");
        out.push(invalid(path, &Value::from(""), detail));
    }
}

fn check_enum(s: &Value, data: &Value, path: &str, out: &mut Vec<Cause>) {
    let allowed = array_keyword(s, "enum");
    if allowed.is_empty() || (!data.is_null() && allowed.iter().any(|a| enum_equal(data, a))) {
        return;
    }
    let listed: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(text) => crate::gostr::quote(text),
            other => crate::gostr::quote(&go_json(other)),
        })
        .collect();
    out.push(Cause::new(
        "FieldValueNotSupported",
        field_of(path),
        format!(
            "Unsupported value: {}: supported values: {}",
            render_value(data),
            listed.join(", ")
        ),
    ));
}

/// Enum membership: JSON equality, with numbers compared by value (Go converts the value to the
/// enum entry's type before comparing).
fn enum_equal(data: &Value, allowed: &Value) -> bool {
    match (data, allowed) {
        (Value::Number(a), Value::Number(b)) => match (num(a), num(b)) {
            (Num::Int(x), Num::Int(y)) => x == y,
            (x, y) => as_f64(x) == as_f64(y),
        },
        _ => data == allowed,
    }
}

fn check_object(s: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
    let size = map.len();
    if let Some(min) = int_keyword(s, "minProperties")
        && (size as i64) < min
    {
        let detail = format!("{path} in body should have at least {min} properties");
        out.push(invalid(path, &Value::from(size), detail));
    }
    if let Some(max) = int_keyword(s, "maxProperties")
        && size as i64 > max
    {
        out.push(too_many(path, size, max));
    }
    let props = properties(s);
    let declared = |key: &str| props.is_some_and(|p| p.contains_key(key));
    match additional(s) {
        Additional::Allowed(false) => {
            for key in map.keys().filter(|k| !declared(k)) {
                let detail = format!("{path}.{key} in body is a forbidden property");
                out.push(invalid(path, &Value::from(key.as_str()), detail));
            }
        }
        Additional::Schema(extra) => {
            for (key, value) in map.iter().filter(|(k, _)| !declared(k)) {
                check(extra, value, &format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
    for (name, prop) in props.into_iter().flatten() {
        if let Some(value) = map.get(name) {
            check(prop, value, &child_path(path, name), out);
        }
    }
    for key in array_keyword(s, "required")
        .iter()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(key) {
            out.push(Cause::required(field_of(&format!("{path}.{key}"))));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// x-kubernetes-list-type uniqueness (upstream's listtype package). Paths here use field.Path
// rendering: map keys under additionalProperties print as `[key]`.

fn list_types_in_object(s: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(extra) = additional_schema(s) {
        for (key, value) in map {
            list_types_in_value(extra, value, &format!("{path}[{key}]"), out);
        }
    }
    if let Some(props) = properties(s) {
        for (key, value) in map {
            if let Some(prop) = props.get(key) {
                list_types_in_value(prop, value, &child_path(path, key), out);
            }
        }
    }
}

fn list_types_in_value(s: &Value, value: &Value, path: &str, out: &mut Vec<Cause>) {
    match value {
        Value::Array(list) => list_types_in_array(s, list, path, out),
        Value::Object(map) => list_types_in_object(s, map, path, out),
        _ => {}
    }
}

fn list_types_in_array(s: &Value, list: &[Value], path: &str, out: &mut Vec<Cause>) {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for i in duplicate_indices(list.iter().map(UniqueKey::of)) {
                out.push(duplicate(path, i, &list[i]));
            }
        }
        Some("map") => check_list_map(s, list, path, out),
        _ => {}
    }
    if let Some(item) = items(s) {
        for (i, value) in list.iter().enumerate() {
            list_types_in_value(item, value, &format!("{path}[{i}]"), out);
        }
    }
}

fn duplicate(path: &str, index: usize, value: &Value) -> Cause {
    Cause::new(
        "FieldValueDuplicate",
        format!("{path}[{index}]"),
        format!("Duplicate value: {}", render_value(value)),
    )
}

/// Identity for list-set uniqueness: scalars compare as Go values (1 and 1.0 differ), compound
/// values by their JSON encoding.
#[derive(PartialEq, Eq, Hash)]
enum UniqueKey {
    Unspecified,
    Scalar(String),
    Compound(String),
}

impl UniqueKey {
    fn of(value: &Value) -> Self {
        match value {
            Value::Object(_) | Value::Array(_) => Self::Compound(go_json(value)),
            scalar => Self::Scalar(scalar.to_string()),
        }
    }
}

/// The index of each value's second occurrence (upstream reports a repeated value once).
fn duplicate_indices(keys: impl Iterator<Item = UniqueKey>) -> Vec<usize> {
    let mut seen: HashMap<UniqueKey, usize> = HashMap::new();
    let mut indices = Vec::new();
    for (i, key) in keys.enumerate() {
        let count = seen.entry(key).or_insert(0);
        *count += 1;
        if *count == 2 {
            indices.push(i);
        }
    }
    indices
}

fn check_list_map(s: &Value, list: &[Value], path: &str, out: &mut Vec<Cause>) {
    if let Some((i, bad)) = list
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_object() && !x.is_null())
    {
        let detail = "must be an object for an array of list-type map".to_string();
        out.push(invalid(&format!("{path}[{i}]"), bad, detail));
        return;
    }
    if list.len() <= 1 {
        return;
    }
    let key_fields: Vec<&str> = array_keyword(s, "x-kubernetes-list-map-keys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if let [field] = key_fields.as_slice() {
        let keys: Vec<Option<&Value>> = list.iter().map(|x| x.get(*field)).collect();
        let ids = keys
            .iter()
            .map(|k| k.map_or(UniqueKey::Unspecified, UniqueKey::of));
        for i in duplicate_indices(ids) {
            let mut shown = Map::new();
            if let Some(key) = keys[i] {
                shown.insert((*field).to_string(), key.clone());
            }
            out.push(duplicate(path, i, &Value::Object(shown)));
        }
        return;
    }
    let keys: Vec<Value> = list
        .iter()
        .map(|x| {
            let present = key_fields
                .iter()
                .filter_map(|f| x.get(*f).map(|v| ((*f).to_string(), v.clone())));
            Value::Object(present.collect())
        })
        .collect();
    for i in duplicate_indices(keys.iter().map(UniqueKey::of)) {
        out.push(duplicate(path, i, &keys[i]));
    }
}

// ---------------------------------------------------------------------------------------------
// Go's renderings, so messages read as upstream's do.

/// `field.Error`'s bad value: strings quoted, simple scalars bare, compound values as JSON,
/// and a missing value as the quoted word `"null"`.
fn render_value(value: &Value) -> String {
    match value {
        Value::Null => crate::gostr::quote("null"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => render_num(num(n)),
        Value::String(text) => crate::gostr::quote(text),
        compound => go_json(compound),
    }
}

/// Go's `%v` of a float64: shortest digits, exponent form below 1e-4 or from 1e+06 on.
fn go_float(f: f64) -> String {
    let sci = format!("{f:e}");
    match sci.split_once('e') {
        Some((mantissa, exp)) if f != 0.0 => {
            let exp: i32 = exp.parse().unwrap_or(0);
            if (-4..6).contains(&exp) {
                format!("{f}")
            } else {
                format_exponent(mantissa, exp)
            }
        }
        _ => format!("{f}"),
    }
}

/// Go's `encoding/json` float: plain digits, exponent form below 1e-6 or from 1e21 on.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{f:e}");
        let Some((mantissa, exp)) = sci.split_once('e') else {
            return sci;
        };
        let exp: i32 = exp.parse().unwrap_or(0);
        if exp < 0 && exp > -10 {
            format!("{mantissa}e-{}", -exp)
        } else {
            format_exponent(mantissa, exp)
        }
    } else {
        format!("{f}")
    }
}

/// `1.5e+06`: Go writes the exponent's sign and at least two digits.
fn format_exponent(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

/// Go's `json.Marshal` of a decoded value: sorted keys, HTML-safe escapes, Go float format.
fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out, false);
    out
}

/// An identity for Go's `reflect.DeepEqual` on decoded values: JSON whose numbers keep their Go
/// type (`1` and `1.0` differ).
fn typed_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out, true);
    out
}

fn write_go_json(value: &Value, out: &mut String, typed: bool) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match num(n) {
            Num::Int(i) => out.push_str(&i.to_string()),
            Num::Float(f) => {
                out.push_str(&go_json_float(f));
                if typed {
                    out.push('f');
                }
            }
        },
        Value::String(text) => write_go_json_string(text, out),
        Value::Array(list) => {
            out.push('[');
            for (i, v) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(v, out, typed);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(key, out);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_go_json(v, out, typed);
                }
            }
            out.push('}');
        }
    }
}

fn write_go_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// String formats, as kube-openapi's strfmt registry checks them. `None`: not a checked format.

fn format_accepts(normalized: &str, text: &str) -> Option<bool> {
    let ok = match normalized {
        "datetime" => is_date_time(text),
        "date" => is_date(text),
        "byte" => BASE64.is_match(text),
        "duration" => is_duration(text),
        "uuid" => UUID.is_match(text),
        "uuid3" => UUID3.is_match(text),
        "uuid4" => UUID4.is_match(text),
        "uuid5" => UUID5.is_match(text),
        "ipv4" => parse_ip_sloppy(text) && text.contains('.'),
        "ipv6" => text.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(text),
        "mac" => is_mac(text),
        "hostname" => is_hostname(text),
        "email" => is_email(text),
        "uri" => is_request_uri(text),
        "ssn" => text.len() == 11 && SSN.is_match(text),
        "hexcolor" => HEXCOLOR.is_match(text),
        "rgbcolor" => RGBCOLOR.is_match(text),
        "bsonobjectid" => text.len() == 24 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "password" => true,
        "k8sshortname" => text.len() <= 63 && SHORT_NAME.is_match(text),
        "k8slongname" => text.len() <= 253 && LONG_NAME.is_match(text),
        _ => return None,
    };
    Some(ok)
}

/// Compiles one of this module's literal patterns. Invariant: they are valid; the format tests
/// compile every one of them.
fn literal(pattern: &str) -> Regex {
    regex::RegexBuilder::new(pattern)
        .size_limit(64 << 20)
        .build()
        .expect("literal pattern compiles")
}

static BASE64: LazyLock<Regex> = LazyLock::new(|| {
    literal(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")
});
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    literal(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID3: LazyLock<Regex> = LazyLock::new(|| {
    literal(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
});
static UUID4: LazyLock<Regex> = LazyLock::new(|| {
    literal(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static UUID5: LazyLock<Regex> = LazyLock::new(|| {
    literal(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
});
static SSN: LazyLock<Regex> = LazyLock::new(|| literal(r"^[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}$"));
static HEXCOLOR: LazyLock<Regex> =
    LazyLock::new(|| literal(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"));
static RGBCOLOR: LazyLock<Regex> = LazyLock::new(|| {
    let c = r"[\t\n\x0C\r ]*(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])[\t\n\x0C\r ]*";
    literal(&format!(r"^rgb\({c},{c},{c}\)$"))
});
static SHORT_NAME: LazyLock<Regex> = LazyLock::new(|| literal(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));
static LONG_NAME: LazyLock<Regex> =
    LazyLock::new(|| literal(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    let c = r"a-zA-Z0-9\p{S}\p{L}";
    literal(&format!(
        r"^([{c}]((-?[{c}]{{0,62}})?)|([{c}](([a-zA-Z0-9\-\p{{S}}\p{{L}}]{{0,61}}[{c}])?)(\.)){{1,}}([a-zA-Z\p{{L}}]){{2,63}})$"
    ))
});
static TIME_OF_DAY: LazyLock<Regex> = LazyLock::new(|| {
    literal(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")
});
static GO_DURATION: LazyLock<Regex> =
    LazyLock::new(|| literal(r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"));
static SCALA_DURATION: LazyLock<Regex> =
    LazyLock::new(|| literal(r"([0-9]+)[\t\n\x0C\r ]*([A-Za-zµ]+)"));

/// RFC 3339 full-date, with Go's day-of-month check.
fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        text.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// strfmt's date-time: a full-date, `T`, and a time of day with `Z` or an offset.
fn is_date_time(text: &str) -> bool {
    if text.len() < 4 {
        return false;
    }
    let lower = text.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    TIME_OF_DAY.captures(time).is_some_and(|m| {
        let field = |i: usize| m.get(i).map_or("", |g| g.as_str());
        field(1) <= "23" && field(2) <= "59" && field(3) <= "59"
    })
}

/// Go's `time.ParseDuration` syntax, else the Scala-like `5 days` that strfmt also accepts.
fn is_duration(text: &str) -> bool {
    if GO_DURATION.is_match(text) {
        return true;
    }
    const UNITS: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let mut known = false;
    for m in SCALA_DURATION.captures_iter(text) {
        let (Some(count), Some(unit)) = (m.get(1), m.get(2)) else {
            continue;
        };
        if count.as_str().parse::<i64>().is_err() {
            return false;
        }
        let unit = unit.as_str().to_lowercase();
        known |= UNITS.iter().any(|variants| {
            let last = variants.len() - 1;
            variants
                .iter()
                .enumerate()
                .any(|(i, v)| (i == last && unit.starts_with(v)) || unit.eq_ignore_ascii_case(v))
        });
    }
    known
}

/// IPv4 with leading zeros allowed (k8s.io/utils' sloppy parser), or any IPv6 form.
fn parse_ip_sloppy(text: &str) -> bool {
    is_ipv4_sloppy(text) || text.parse::<Ipv6Addr>().is_ok()
}

fn is_ipv4_sloppy(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.trim_start_matches('0').len() <= 3
                && p.parse::<u32>().is_ok_and(|n| n <= 255)
        })
}

fn is_cidr(text: &str) -> bool {
    let Some((addr, prefix)) = text.split_once('/') else {
        return false;
    };
    let bits = if is_ipv4_sloppy(addr) {
        32
    } else if addr.parse::<Ipv6Addr>().is_ok() {
        128
    } else {
        return false;
    };
    !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.trim_start_matches('0').len() <= 3
        && prefix.parse::<u32>().is_ok_and(|n| n <= bits)
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `aa:bb…`, `aa-bb…` or `aabb.ccdd…`.
fn is_mac(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 14 {
        return false;
    }
    let octets_ok = |n: usize| matches!(n, 6 | 8 | 20);
    if b[2] == b':' || b[2] == b'-' {
        let sep = b[2];
        (b.len() + 1).is_multiple_of(3)
            && octets_ok((b.len() + 1) / 3)
            && b.chunks(3).all(|c| {
                c[0].is_ascii_hexdigit()
                    && c.get(1).is_some_and(u8::is_ascii_hexdigit)
                    && c.get(2).is_none_or(|s| *s == sep)
            })
    } else if b[4] == b'.' {
        (b.len() + 1).is_multiple_of(5)
            && octets_ok(2 * (b.len() + 1) / 5)
            && b.chunks(5).all(|c| {
                c.len() >= 4
                    && c[..4].iter().all(u8::is_ascii_hexdigit)
                    && c.get(4).is_none_or(|s| *s == b'.')
            })
    } else {
        false
    }
}

fn is_hostname(text: &str) -> bool {
    HOSTNAME.is_match(text) && text.len() <= 255 && text.split('.').all(|label| label.len() <= 63)
}

/// An approximation of Go's `net/mail.ParseAddress`: `local@domain`, optionally as
/// `Display Name <local@domain>`.
fn is_email(text: &str) -> bool {
    let text = text.trim();
    let addr = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        (None, None) => text,
        _ => return false,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atom_char =
        |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let dot_atom = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|a| !a.is_empty() && a.chars().all(atom_char))
    };
    let quoted = |s: &str| s.len() >= 2 && s.starts_with('"') && s.ends_with('"');
    let literal = |s: &str| s.starts_with('[') && s.ends_with(']');
    (dot_atom(local) || quoted(local)) && (dot_atom(domain) || literal(domain))
}

/// An approximation of Go's `url.ParseRequestURI`: an absolute URI or an absolute path, no
/// control bytes, valid percent escapes, a plausible host.
fn is_request_uri(text: &str) -> bool {
    if text.is_empty() || text.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if text == "*" {
        return true;
    }
    let before_query = text.split_once('?').map_or(text, |(p, _)| p);
    let escapes_ok = before_query
        .split('%')
        .skip(1)
        .all(|rest| rest.len() >= 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    if !escapes_ok {
        return false;
    }
    let scheme_end = text.find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)));
    let rest = match scheme_end {
        Some(0) if text.starts_with(':') => return false,
        Some(i) if text[i..].starts_with(':') && text.as_bytes()[0].is_ascii_alphabetic() => {
            &text[i + 1..]
        }
        _ => return text.starts_with('/'),
    };
    let Some(authority_and_path) = rest.strip_prefix("//") else {
        return true;
    };
    let authority = authority_and_path
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
        match inner.split_once(']') {
            Some((_, after)) => ("", after.strip_prefix(':').unwrap_or(after)),
            None => return false,
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (host_port, ""),
        }
    };
    port.bytes().all(|b| b.is_ascii_digit())
        && host.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=%\"<>".contains(c)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn stack_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["app"],
                    "properties": {
                        "app": {
                            "type": "object",
                            "required": ["image"],
                            "properties": {
                                "image": {"type": "string", "minLength": 1},
                                "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
                                "ports": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name"],
                                    "items": {
                                        "type": "object",
                                        "required": ["name"],
                                        "properties": {
                                            "name": {"type": "string"},
                                            "port": {"type": "integer", "maximum": 65535},
                                            "protocol": {"type": "string", "default": "TCP", "enum": ["TCP", "UDP"]}
                                        }
                                    }
                                }
                            }
                        },
                        "deletionPolicy": {"type": "string", "enum": ["Retain", "Delete"], "default": "Retain"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 8}},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "size": {"x-kubernetes-int-or-string": true},
                        "startedAt": {"type": "string", "format": "date-time"},
                        "notes": {"type": "string", "nullable": true}
                    },
                    "x-kubernetes-validations": [{"rule": "self.app.replicas < 100"}]
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        })
    }

    fn object(spec: Value) -> Value {
        json!({"apiVersion": "berth.dev/v1", "kind": "Stack", "metadata": {"name": "demo"}, "spec": spec})
    }

    fn one(causes: Vec<Cause>) -> Cause {
        assert_eq!(
            causes.len(),
            1,
            "expected exactly one cause, got {causes:#?}"
        );
        causes.into_iter().next().unwrap()
    }

    // --- defaulting --------------------------------------------------------------------------

    #[test]
    fn absent_property_gets_its_default() {
        let mut obj = object(json!({"app": {"image": "nginx"}}));
        default(&stack_schema(), &mut obj);
        assert_eq!(obj["spec"]["app"]["replicas"], 1);
        assert_eq!(obj["spec"]["deletionPolicy"], "Retain");
    }

    #[test]
    fn existing_values_are_not_overwritten() {
        let mut obj =
            object(json!({"app": {"image": "nginx", "replicas": 3}, "deletionPolicy": "Delete"}));
        default(&stack_schema(), &mut obj);
        assert_eq!(obj["spec"]["app"]["replicas"], 3);
        assert_eq!(obj["spec"]["deletionPolicy"], "Delete");
    }

    #[test]
    fn default_under_an_absent_parent_is_not_applied() {
        let mut obj = object(json!({}));
        default(&stack_schema(), &mut obj);
        assert!(obj["spec"].get("app").is_none());
        assert_eq!(obj["spec"]["deletionPolicy"], "Retain");
    }

    #[test]
    fn defaulted_parent_receives_nested_defaults() {
        let schema = json!({"type": "object", "properties": {"spec": {
            "type": "object", "default": {},
            "properties": {"mode": {"type": "string", "default": "fast"}}
        }}});
        let mut obj = json!({});
        default(&schema, &mut obj);
        assert_eq!(obj, json!({"spec": {"mode": "fast"}}));
    }

    #[test]
    fn defaults_apply_inside_array_items() {
        let mut obj = object(
            json!({"app": {"image": "x", "ports": [{"name": "http"}, {"name": "dns", "protocol": "UDP"}]}}),
        );
        default(&stack_schema(), &mut obj);
        assert_eq!(obj["spec"]["app"]["ports"][0]["protocol"], "TCP");
        assert_eq!(obj["spec"]["app"]["ports"][1]["protocol"], "UDP");
    }

    #[test]
    fn defaults_apply_inside_additional_properties_values() {
        let schema = json!({"type": "object", "properties": {"envs": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"tier": {"type": "string", "default": "web"}}}
        }}});
        let mut obj = json!({"envs": {"prod": {}, "dev": {"tier": "db"}}});
        default(&schema, &mut obj);
        assert_eq!(
            obj,
            json!({"envs": {"prod": {"tier": "web"}, "dev": {"tier": "db"}}})
        );
    }

    #[test]
    fn null_for_non_nullable_field_with_default_gets_the_default() {
        let mut obj = object(json!({"app": {"image": "x", "replicas": null}}));
        default(&stack_schema(), &mut obj);
        assert_eq!(obj["spec"]["app"]["replicas"], 1);
    }

    #[test]
    fn null_for_non_nullable_field_without_default_is_dropped() {
        let mut obj = object(json!({"app": {"image": "x"}, "startedAt": null}));
        default(&stack_schema(), &mut obj);
        assert!(obj["spec"].get("startedAt").is_none());
    }

    #[test]
    fn null_for_nullable_field_is_kept() {
        let mut obj = object(json!({"app": {"image": "x"}, "notes": null}));
        default(&stack_schema(), &mut obj);
        assert_eq!(obj["spec"]["notes"], Value::Null);
        assert!(validate(&stack_schema(), &obj).is_empty());
    }

    #[test]
    fn null_array_item_gets_the_item_default_and_otherwise_stays() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "array", "items": {"type": "string", "default": "x"}},
            "b": {"type": "array", "items": {"type": "string"}}
        }});
        let mut obj = json!({"a": [null, "y"], "b": [null]});
        default(&schema, &mut obj);
        assert_eq!(obj, json!({"a": ["x", "y"], "b": [null]}));
    }

    // --- pruning -----------------------------------------------------------------------------

    #[test]
    fn unknown_fields_are_pruned_and_reported_with_their_paths() {
        let mut obj = object(json!({
            "foo": 1,
            "app": {"image": "x", "ports": [{"name": "a", "bar": true}]}
        }));
        let pruned = prune(&stack_schema(), &mut obj);
        assert_eq!(pruned, vec!["spec.app.ports[0].bar", "spec.foo"]);
        assert_eq!(
            obj["spec"],
            json!({"app": {"image": "x", "ports": [{"name": "a"}]}})
        );
    }

    #[test]
    fn root_type_and_object_meta_are_kept_even_when_undeclared() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let mut obj = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "odd": 1}, "other": 2});
        let pruned = prune(&schema, &mut obj);
        assert_eq!(pruned, vec!["other"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "odd": 1}})
        );
    }

    #[test]
    fn object_without_declared_properties_is_emptied() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}}});
        let mut obj = json!({"spec": {"a": {"b": 1}, "c": [1]}});
        let pruned = prune(&schema, &mut obj);
        assert_eq!(pruned, vec!["spec.a", "spec.c"]);
        assert_eq!(obj, json!({"spec": {}}));
    }

    #[test]
    fn preserve_unknown_fields_keeps_unknown_keys_but_prunes_declared_children() {
        let schema = json!({"type": "object", "properties": {"extra": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}
        }}});
        let mut obj = json!({"extra": {"anything": {"deep": [1, {"x": 2}]}, "known": {"a": "ok", "b": "gone"}}});
        let pruned = prune(&schema, &mut obj);
        assert_eq!(pruned, vec!["extra.known.b"]);
        assert_eq!(obj["extra"]["anything"], json!({"deep": [1, {"x": 2}]}));
        assert_eq!(obj["extra"]["known"], json!({"a": "ok"}));
    }

    #[test]
    fn additional_properties_keep_keys_and_prune_inside_values() {
        let schema = json!({"type": "object", "properties": {"envs": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"tier": {"type": "string"}}}
        }}});
        let mut obj = json!({"envs": {"prod": {"tier": "web", "junk": 1}}});
        let pruned = prune(&schema, &mut obj);
        assert_eq!(pruned, vec!["envs.prod.junk"]);
        assert_eq!(obj, json!({"envs": {"prod": {"tier": "web"}}}));
    }

    #[test]
    fn additional_properties_true_keeps_keys_but_empties_nested_objects_like_upstream() {
        let schema = json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": true}}});
        let mut obj = json!({"m": {"a": 1, "b": {"c": 2}}});
        assert_eq!(prune(&schema, &mut obj), vec!["m.b.c"]);
        assert_eq!(obj, json!({"m": {"a": 1, "b": {}}}));
    }

    #[test]
    fn items_under_preserve_unknown_fields_keep_unknown_keys() {
        let schema = json!({"type": "object", "properties": {"l": {
            "type": "array", "x-kubernetes-preserve-unknown-fields": true,
            "items": {"type": "object", "properties": {"k": {"type": "object", "properties": {}}}}
        }}});
        let mut obj = json!({"l": [{"free": 1, "k": {"gone": 2}}]});
        assert_eq!(prune(&schema, &mut obj), vec!["l[0].k.gone"]);
        assert_eq!(obj, json!({"l": [{"free": 1, "k": {}}]}));
    }

    #[test]
    fn embedded_resource_keeps_type_and_object_meta() {
        let schema = json!({"type": "object", "properties": {"template": {
            "type": "object", "x-kubernetes-embedded-resource": true,
            "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}
        }}});
        let mut obj = json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "1", "y": 2}, "z": 3}});
        let pruned = prune(&schema, &mut obj);
        assert_eq!(pruned, vec!["template.spec.y", "template.z"]);
        assert_eq!(obj["template"]["kind"], "Pod");
        assert_eq!(obj["template"]["metadata"], json!({"name": "p"}));
    }

    #[test]
    fn nested_type_meta_outside_embedded_resources_is_pruned() {
        let schema =
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {}}}});
        let mut obj = json!({"spec": {"kind": "X"}});
        assert_eq!(prune(&schema, &mut obj), vec!["spec.kind"]);
    }

    // --- validation --------------------------------------------------------------------------

    #[test]
    fn valid_object_has_no_causes() {
        let mut obj = object(json!({
            "app": {"image": "nginx", "ports": [{"name": "http", "port": 80}]},
            "labels": {"a": "b"}, "tags": ["x", "y"], "size": "10Gi",
            "startedAt": "2024-02-29T10:00:00Z", "extra": {"any": [1, 2]}
        }));
        default(&stack_schema(), &mut obj);
        assert_eq!(validate(&stack_schema(), &obj), Vec::<Cause>::new());
    }

    #[test]
    fn missing_required_field_is_reported_with_its_path() {
        let cause = one(validate(&stack_schema(), &object(json!({}))));
        assert_eq!(cause, Cause::required("spec.app"));
        assert_eq!(cause.reason, "FieldValueRequired");
        assert_eq!(cause.message, "Required value");
    }

    #[test]
    fn required_at_the_root_names_the_field_without_a_dot() {
        let schema = json!({"type": "object", "required": ["spec"]});
        assert_eq!(one(validate(&schema, &json!({}))).field, "spec");
    }

    #[test]
    fn wrong_type_is_reported_as_type_invalid_with_upstream_message() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}});
        let cause = one(validate(&schema, &json!({"spec": {"replicas": "3"}})));
        assert_eq!(cause.reason, "FieldValueTypeInvalid");
        assert_eq!(cause.field, "spec.replicas");
        assert_eq!(
            cause.message,
            r#"Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        );
    }

    #[test]
    fn non_integral_number_is_not_an_integer_but_integral_one_is() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let cause = one(validate(&schema, &json!({"n": 1.5})));
        assert_eq!(
            cause.message,
            r#"Invalid value: "number": n in body must be of type integer: "number""#
        );
        assert!(validate(&schema, &json!({"n": 2.0})).is_empty());
    }

    #[test]
    fn integer_is_a_number() {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "number", "format": "double"}}});
        assert!(validate(&schema, &json!({"n": 2})).is_empty());
    }

    #[test]
    fn null_for_non_nullable_field_is_a_type_error() {
        let schema = json!({"type": "object", "properties": {"s": {"type": "string"}}});
        let cause = one(validate(&schema, &json!({"s": null})));
        assert_eq!(
            cause.message,
            r#"Invalid value: "null": s in body must be of type string: "null""#
        );
    }

    #[test]
    fn enum_mismatch_lists_supported_values() {
        let cause = one(validate(
            &stack_schema(),
            &object(json!({"app": {"image": "x"}, "deletionPolicy": "Keep"})),
        ));
        assert_eq!(cause.reason, "FieldValueNotSupported");
        assert_eq!(cause.field, "spec.deletionPolicy");
        assert_eq!(
            cause.message,
            r#"Unsupported value: "Keep": supported values: "Retain", "Delete""#
        );
    }

    #[test]
    fn numeric_enum_values_are_listed_as_quoted_json() {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2.5]}}});
        let cause = one(validate(&schema, &json!({"n": 3})));
        assert_eq!(
            cause.message,
            r#"Unsupported value: 3: supported values: "1", "2.5""#
        );
        assert!(validate(&schema, &json!({"n": 1.0})).is_empty());
    }

    #[test]
    fn minimum_violation_is_field_value_invalid() {
        let cause = one(validate(
            &stack_schema(),
            &object(json!({"app": {"image": "x", "replicas": -1}})),
        ));
        assert_eq!(cause.reason, "FieldValueInvalid");
        assert_eq!(cause.field, "spec.app.replicas");
        assert_eq!(
            cause.message,
            "Invalid value: -1: spec.app.replicas in body should be greater than or equal to 0"
        );
    }

    #[test]
    fn exclusive_bounds_and_go_float_formatting_show_in_messages() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "number", "maximum": 1000000, "exclusiveMaximum": true},
            "b": {"type": "number", "minimum": 0.5, "exclusiveMinimum": true}
        }});
        let causes = validate(&schema, &json!({"a": 1000000.5, "b": 0.5}));
        assert_eq!(causes.len(), 2, "{causes:#?}");
        assert_eq!(
            causes[0].message,
            "Invalid value: 1.0000005e+06: a in body should be less than 1e+06"
        );
        assert_eq!(
            causes[1].message,
            "Invalid value: 0.5: b in body should be greater than 0.5"
        );
    }

    #[test]
    fn multiple_of_is_checked_for_integers_and_floats() {
        let schema = json!({"type": "object", "properties": {
            "i": {"type": "integer", "multipleOf": 5},
            "f": {"type": "number", "multipleOf": 0.1}
        }});
        assert!(validate(&schema, &json!({"i": 15, "f": 0.3})).is_empty());
        let cause = one(validate(&schema, &json!({"i": 7, "f": 0.3})));
        assert_eq!(
            cause.message,
            "Invalid value: 7: i in body should be a multiple of 5"
        );
    }

    #[test]
    fn too_long_string_is_field_value_too_long() {
        let cause = one(validate(
            &stack_schema(),
            &object(json!({"app": {"image": "x"}, "labels": {"team": "platform-core"}})),
        ));
        assert_eq!(cause.reason, "FieldValueTooLong");
        assert_eq!(cause.field, "spec.labels.team");
        assert_eq!(cause.message, "Too long: may not be more than 8 bytes");
    }

    #[test]
    fn too_short_string_and_pattern_mismatch_are_invalid() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "minLength": 3},
            "b": {"type": "string", "pattern": "^[a-z]+$"}
        }});
        let causes = validate(&schema, &json!({"a": "ab", "b": "A1"}));
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "ab": a in body should be at least 3 chars long"#
        );
        assert_eq!(
            causes[1].message,
            r#"Invalid value: "A1": b in body should match '^[a-z]+$'"#
        );
    }

    #[test]
    fn patterns_use_go_ascii_classes() {
        assert_eq!(pattern_matches(r"^\d+$", "123"), Ok(true));
        assert_eq!(pattern_matches(r"^\d+$", "\u{663}"), Ok(false));
        assert_eq!(pattern_matches(r"^[\w.-]+$", "a_b.c-d"), Ok(true));
        assert_eq!(pattern_matches(r"^[\w]+$", "é"), Ok(false));
        assert_eq!(pattern_matches(r"^[]a]+$", "]a"), Ok(true));
        assert_eq!(pattern_matches(r"^[[:alpha:]\s]+$", "ab c"), Ok(true));
        assert_eq!(pattern_matches(r"^\S+\.\D$", "ab.c"), Ok(true));
        assert_eq!(pattern_matches(r"^[a[&&~]+$", "a[&~"), Ok(true));
    }

    #[test]
    fn invalid_pattern_is_reported_in_the_message() {
        let schema =
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(a"}}});
        let cause = one(validate(&schema, &json!({"a": "x"})));
        assert!(
            cause.message.starts_with(r#"Invalid value: "x": a in body should match '(a, but pattern is invalid: error parsing regexp: "#),
            "{}",
            cause.message
        );
    }

    #[test]
    fn formats_are_checked_and_unknown_ones_ignored() {
        let schema = json!({"type": "object", "properties": {
            "t": {"type": "string", "format": "date-time"},
            "b": {"type": "string", "format": "byte"},
            "u": {"type": "string", "format": "no-such-format"}
        }});
        assert!(
            validate(
                &schema,
                &json!({"t": "2024-01-02T03:04:05.123+01:00", "b": "aGk=", "u": "?"})
            )
            .is_empty()
        );
        let cause = one(validate(&schema, &json!({"t": "2024-02-30T00:00:00Z"})));
        assert_eq!(cause.reason, "FieldValueTypeInvalid");
        assert_eq!(
            cause.message,
            r#"Invalid value: "2024-02-30T00:00:00Z": t in body must be of type date-time: "2024-02-30T00:00:00Z""#
        );
        let cause = one(validate(&schema, &json!({"b": "not base64"})));
        assert_eq!(
            cause.message,
            r#"Invalid value: "not base64": b in body must be of type byte: "not base64""#
        );
    }

    #[test]
    fn int32_format_rejects_values_out_of_range() {
        let obj = object(json!({"app": {"image": "x", "replicas": 3_000_000_000_i64}}));
        let cause = one(validate(&stack_schema(), &obj));
        assert_eq!(
            cause.message,
            r#"Invalid value: "": Checked value must be of type integer with format int32 in spec.app.replicas"#
        );
    }

    #[test]
    fn format_on_integer_field_rejects_non_integers_by_format_name() {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer", "format": "int64"}}});
        let cause = one(validate(&schema, &json!({"n": true})));
        assert_eq!(
            cause.message,
            r#"Invalid value: "": n in body must be of type int64: """#
        );
    }

    #[test]
    fn int_or_string_accepts_both_and_rejects_others() {
        for ok in [json!(3), json!("50%")] {
            assert!(
                validate(
                    &stack_schema(),
                    &object(json!({"app": {"image": "x"}, "size": ok}))
                )
                .is_empty()
            );
        }
        let cause = one(validate(
            &stack_schema(),
            &object(json!({"app": {"image": "x"}, "size": true})),
        ));
        assert_eq!(
            cause.message,
            r#"Invalid value: "boolean": spec.size in body must be of type integer,string: "boolean""#
        );
    }

    #[test]
    fn item_counts_and_uniqueness_are_checked() {
        let schema = json!({"type": "object", "properties": {
            "few": {"type": "array", "minItems": 2, "items": {"type": "integer"}},
            "many": {"type": "array", "maxItems": 1, "uniqueItems": true, "items": {"type": "integer"}}
        }});
        let causes = validate(&schema, &json!({"few": [1], "many": [2, 2]}));
        assert_eq!(causes.len(), 3, "{causes:#?}");
        assert_eq!(
            causes[0].message,
            "Invalid value: 1: few in body should have at least 2 items"
        );
        assert_eq!(causes[1].reason, "FieldValueTooMany");
        assert_eq!(causes[1].message, "Too many: 2: must have at most 1 items");
        assert_eq!(
            causes[2].message,
            r#"Invalid value: "": many in body shouldn't contain duplicates"#
        );
    }

    #[test]
    fn property_counts_are_checked() {
        let schema = json!({"type": "object", "properties": {
            "m": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "string"}},
            "n": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}
        }});
        let causes = validate(
            &schema,
            &json!({"m": {"a": "1"}, "n": {"a": "1", "b": "2"}}),
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: 1: m in body should have at least 2 properties"
        );
        assert_eq!(causes[1].message, "Too many: 2: must have at most 1 items");
    }

    #[test]
    fn item_errors_carry_the_index_in_the_path() {
        let obj = object(json!({"app": {"image": "x", "ports": [{"name": "a", "port": 70000}]}}));
        let cause = one(validate(&stack_schema(), &obj));
        assert_eq!(cause.field, "spec.app.ports[0].port");
        assert_eq!(
            cause.message,
            "Invalid value: 70000: spec.app.ports[0].port in body should be less than or equal to 65535"
        );
    }

    #[test]
    fn junctor_failures_are_reported_at_the_root_like_upstream() {
        let schema = json!({"type": "object", "properties": {"s": {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"required": ["c"]}
        }}});
        assert!(validate(&schema, &json!({"s": {"a": "1"}})).is_empty());
        let causes = validate(&schema, &json!({"s": {"a": "1", "b": "2"}}));
        assert_eq!(
            one(causes).message,
            r#"Invalid value: "": "s" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        );
        let causes = validate(&schema, &json!({"s": {}}));
        assert_eq!(causes[0].field, "");
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "": "s" must validate one and only one schema (oneOf). Found none valid"#
        );
        assert_eq!(causes[1], Cause::required("s.a"));
        let causes = validate(&schema, &json!({"s": {"a": "1", "c": 1}}));
        assert_eq!(
            one(causes).message,
            r#"Invalid value: "": "s" must not validate the schema (not)"#
        );
    }

    #[test]
    fn any_of_and_all_of_report_composite_and_branch_errors() {
        let schema = json!({"type": "object", "properties": {"n": {
            "type": "integer",
            "anyOf": [{"minimum": 10}, {"maximum": 0}],
            "allOf": [{"multipleOf": 2}]
        }}});
        assert!(validate(&schema, &json!({"n": 12})).is_empty());
        let causes = validate(&schema, &json!({"n": 5}));
        let messages: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                r#"Invalid value: "": "n" must validate at least one schema (anyOf)"#,
                "Invalid value: 5: n in body should be greater than or equal to 10",
                "Invalid value: 5: n in body should be a multiple of 2",
                r#"Invalid value: "": "n" must validate all the schemas (allOf). None validated"#,
            ]
        );
    }

    #[test]
    fn list_map_with_duplicate_keys_is_field_value_duplicate() {
        let obj = object(
            json!({"app": {"image": "x", "ports": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}}),
        );
        let cause = one(validate(&stack_schema(), &obj));
        assert_eq!(cause.reason, "FieldValueDuplicate");
        assert_eq!(cause.field, "spec.app.ports[2]");
        assert_eq!(cause.message, r#"Duplicate value: {"name":"a"}"#);
    }

    #[test]
    fn list_map_with_several_keys_compares_all_of_them() {
        let schema = json!({"type": "object", "properties": {"l": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string"}}}
        }}});
        let ok = json!({"l": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]});
        assert!(validate(&schema, &ok).is_empty());
        let dup = json!({"l": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "UDP"}]});
        assert_eq!(
            one(validate(&schema, &dup)).message,
            r#"Duplicate value: {"port":53,"protocol":"UDP"}"#
        );
    }

    #[test]
    fn list_map_item_that_is_not_an_object_is_invalid() {
        let schema = json!({"type": "object", "properties": {"l": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
            "items": {"type": "object", "properties": {"k": {"type": "string"}}}
        }}});
        let causes = validate(&schema, &json!({"l": [{"k": "a"}, "oops"]}));
        let last = causes.last().cloned().unwrap();
        assert_eq!(last.field, "l[1]");
        assert_eq!(
            last.message,
            r#"Invalid value: "oops": must be an object for an array of list-type map"#
        );
    }

    #[test]
    fn list_set_duplicates_are_reported_once_at_the_second_occurrence() {
        let obj = object(json!({"app": {"image": "x"}, "tags": ["a", "b", "a", "a"]}));
        let cause = one(validate(&stack_schema(), &obj));
        assert_eq!(cause.field, "spec.tags[2]");
        assert_eq!(cause.message, r#"Duplicate value: "a""#);
    }

    #[test]
    fn list_types_under_additional_properties_use_key_paths() {
        let schema = json!({"type": "object", "properties": {"m": {
            "type": "object",
            "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}}
        }}});
        let cause = one(validate(&schema, &json!({"m": {"k": [1, 1]}})));
        assert_eq!(cause.field, "m[k][1]");
        assert_eq!(cause.message, "Duplicate value: 1");
    }

    #[test]
    fn additional_properties_false_forbids_unknown_keys() {
        let schema = json!({"type": "object", "properties": {"s": {
            "type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false
        }}});
        let cause = one(validate(&schema, &json!({"s": {"a": "x", "b": "y"}})));
        assert_eq!(cause.field, "s");
        assert_eq!(
            cause.message,
            r#"Invalid value: "b": s.b in body is a forbidden property"#
        );
    }

    #[test]
    fn cel_rules_are_ignored() {
        let obj = object(json!({"app": {"image": "x", "replicas": 500}}));
        assert!(validate(&stack_schema(), &obj).is_empty());
    }

    // --- Go renderings and formats ----------------------------------------------------------------

    #[test]
    fn floats_render_as_go_prints_them() {
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5e100), "-2.5e+100");
        assert_eq!(go_json_float(1e21), "1e+21");
        assert_eq!(go_json_float(1e-7), "1e-7");
        assert_eq!(go_json_float(1e6), "1000000");
        assert_eq!(
            go_json(&json!({"b": [1, 2.5], "a": "<&>"})),
            r#"{"a":"\u003c\u0026\u003e","b":[1,2.5]}"#
        );
        assert_eq!(crate::gostr::quote("a\"b\\\n\u{1}é"), r#""a\"b\\\n\x01é""#);
    }

    #[test]
    fn string_formats_follow_strfmt() {
        let cases = [
            ("datetime", "2024-01-02T03:04:05Z", true),
            ("datetime", "2024-01-02 03:04:05Z", false),
            ("datetime", "2024-01-02T24:00:00Z", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "", false),
            ("duration", "1h30m", true),
            ("duration", "3 days", true),
            ("duration", "soon", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid", "123e4567", false),
            ("ipv4", "010.0.0.1", true),
            ("ipv4", "::1", false),
            ("ipv6", "fe80::1", true),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("mac", "01:23:45:67:89:ab", true),
            ("mac", "0123.4567.89ab", true),
            ("mac", "01:23:45", false),
            ("hostname", "example.com", true),
            ("hostname", "-bad-.com", false),
            ("email", "Ops <ops@example.com>", true),
            ("email", "not-an-email", false),
            ("uri", "https://example.com/a?b=c", true),
            ("uri", "relative/path", false),
            ("hexcolor", "#fff", true),
            ("rgbcolor", "rgb(255, 0, 10)", true),
            ("k8sshortname", "my-app", true),
            ("k8sshortname", "My-App", false),
        ];
        for (format, text, expected) in cases {
            assert_eq!(
                format_accepts(format, text),
                Some(expected),
                "{format} {text:?}"
            );
        }
        assert_eq!(format_accepts("isbn", "x"), None);
    }

    // --- properties --------------------------------------------------------------------------------

    fn arb_json_from(
        keys: Vec<&'static str>,
        words: Vec<&'static str>,
    ) -> impl Strategy<Value = Value> {
        let key = prop::sample::select(keys);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e9..1e9f64).prop_map(Value::from),
            prop::sample::select(words).prop_map(Value::from),
            "[a-zA-Z0-9:.()*+?^$ -]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    /// Objects shaped like the sample schema's resources.
    fn arb_json() -> impl Strategy<Value = Value> {
        arb_json_from(
            vec![
                "apiVersion",
                "kind",
                "metadata",
                "spec",
                "status",
                "app",
                "image",
                "replicas",
                "ports",
                "name",
                "port",
                "protocol",
                "labels",
                "tags",
                "extra",
                "size",
                "startedAt",
                "notes",
                "deletionPolicy",
                "ready",
                "x",
            ],
            vec![
                "TCP",
                "UDP",
                "Retain",
                "Delete",
                "2024-01-02T03:04:05Z",
                "50%",
            ],
        )
    }

    /// Arbitrary JSON made mostly of schema keywords, to drive every branch with odd schemas.
    fn arb_schema() -> impl Strategy<Value = Value> {
        arb_json_from(
            vec![
                "type",
                "properties",
                "items",
                "additionalProperties",
                "required",
                "enum",
                "default",
                "nullable",
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
                "minLength",
                "maxLength",
                "pattern",
                "format",
                "minItems",
                "maxItems",
                "uniqueItems",
                "minProperties",
                "maxProperties",
                "anyOf",
                "oneOf",
                "allOf",
                "not",
                "x-kubernetes-list-type",
                "x-kubernetes-list-map-keys",
                "x-kubernetes-preserve-unknown-fields",
                "x-kubernetes-int-or-string",
                "x-kubernetes-embedded-resource",
                "a",
                "b",
                "kind",
            ],
            vec![
                "object",
                "array",
                "string",
                "integer",
                "number",
                "boolean",
                "set",
                "map",
                "date-time",
                "byte",
                "int32",
                "float",
                "duration",
                "a",
                "b",
            ],
        )
    }

    proptest! {
        #[test]
        fn random_objects_never_panic_and_prune_default_validate_are_stable(spec in arb_json(), root in arb_json()) {
            let schema = stack_schema();
            let mut obj = object(spec);
            let mut other = root;
            for target in [&mut obj, &mut other] {
                prune(&schema, target);
                let pruned_once = target.clone();
                prop_assert_eq!(prune(&schema, target), Vec::<String>::new());
                prop_assert_eq!(&*target, &pruned_once);
                default(&schema, target);
                let defaulted_once = target.clone();
                default(&schema, target);
                prop_assert_eq!(&*target, &defaulted_once);
                let first = validate(&schema, target);
                prop_assert_eq!(prune(&schema, target), Vec::<String>::new());
                prop_assert_eq!(validate(&schema, target), first);
            }
        }

        #[test]
        fn random_values_against_random_schemas_never_panic(schema in arb_schema(), value in arb_schema()) {
            let mut value = value;
            let _ = validate(&schema, &value);
            default(&schema, &mut value);
            prune(&schema, &mut value);
            let _ = validate(&schema, &value);
        }
    }
}
