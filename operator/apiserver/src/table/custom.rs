//! Custom resources print the `additionalPrinterColumns` of their CRD version after the name, or `Age` when
//! the CRD declares none, as upstream's CRD table convertor does. Column paths are Kubernetes JSONPath
//! (`.status.conditions[?(@.type=="Ready")].status`); they are rewritten into RFC 9535 (`$['status']...`) and
//! evaluated with serde_json_path. Only the first match is shown; `date` columns become ages on the server.

use jiff::Timestamp;
use serde_json::{Value, json};
use serde_json_path::JsonPath;

use super::cells::{name, since};
use super::{NAME, definition};

/// One printer column of a CRD version.
struct CustomColumn {
    name: String,
    kind: String,
    format: String,
    priority: i64,
    description: String,
    /// `None` when the CRD's path does not parse: the column stays, its cells are empty.
    path: Option<JsonPath>,
}

pub struct CustomColumns {
    columns: Vec<CustomColumn>,
}

impl CustomColumns {
    /// From a CRD version's `additionalPrinterColumns` (absent or empty: upstream's default `Age`).
    pub fn new(declared: &Value) -> Self {
        let default = json!([{
            "name": "Age",
            "type": "date",
            "jsonPath": ".metadata.creationTimestamp",
            "description": "Time since the object was created (metadata.creationTimestamp).",
        }]);
        let declared = match declared.as_array() {
            Some(list) if !list.is_empty() => list,
            _ => default.as_array().map(Vec::as_slice).unwrap_or_default(),
        };
        let columns = declared
            .iter()
            .map(|c| {
                let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
                let json_path = text("jsonPath");
                let path = JsonPath::parse(&to_rfc9535(&json_path));
                if let Err(err) = &path {
                    tracing::warn!(column = %text("name"), path = %json_path, error = %err, "unusable printer column path");
                }
                let description = match text("description") {
                    d if d.is_empty() => {
                        format!("Custom resource definition column (in JSONPath format): {json_path}")
                    }
                    d => d,
                };
                CustomColumn {
                    name: text("name"),
                    kind: text("type"),
                    format: text("format"),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    description,
                    path: path.ok(),
                }
            })
            .collect();
        CustomColumns { columns }
    }

    pub fn definitions(&self) -> Vec<Value> {
        std::iter::once(NAME.definition())
            .chain(
                self.columns
                    .iter()
                    .map(|c| definition(&c.name, &c.kind, &c.format, c.priority, &c.description)),
            )
            .collect()
    }

    pub fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        std::iter::once(json!(name(object)))
            .chain(self.columns.iter().map(|c| {
                let found = c.path.as_ref().and_then(|p| p.query(object).first());
                found.map_or(Value::Null, |v| cell(&c.kind, v, now))
            }))
            .collect()
    }
}

/// A found value as a cell of the column's type; a value of another type gives an empty cell.
fn cell(kind: &str, value: &Value, now: Timestamp) -> Value {
    match (kind, value) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(s)) => json!(s),
        // Upstream prints non-string values of string columns as JSONPath output: JSON for maps and lists.
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(_)) => match super::cells::timestamp(value) {
            Some(_) => json!(since(value, now)),
            None => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

/// Rewrites a Kubernetes JSONPath (`.spec.app-name`, `.a\.b`, `[?(@.x=="y")]`) into RFC 9535: every dotted
/// field becomes a quoted bracket selector, so names with `-`, `/` or escaped dots survive; bracket selectors
/// and filters pass through (`[?(...)]` is a parenthesised RFC 9535 filter).
pub fn to_rfc9535(path: &str) -> String {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut out = String::from("$");
    let mut chars = path.strip_prefix('$').unwrap_or(path).chars().peekable();
    // A leading bare name reads as a field of the root.
    let mut expect_field = !matches!(chars.peek(), Some('.' | '['));
    while let Some(&c) = chars.peek() {
        if !expect_field && c == '.' {
            chars.next();
            if chars.peek() == Some(&'.') {
                chars.next();
                out.push_str("..");
                if chars.peek() == Some(&'[') {
                    continue;
                }
            }
            expect_field = true;
            continue;
        }
        if !expect_field && c == '[' {
            copy_bracket(&mut chars, &mut out);
            continue;
        }
        // A field name, up to the next unescaped `.` or `[`.
        let mut field = String::new();
        while let Some(&c) = chars.peek() {
            match c {
                '\\' => {
                    chars.next();
                    if let Some(escaped) = chars.next() {
                        field.push(escaped);
                    }
                }
                '.' | '[' => break,
                _ => {
                    field.push(c);
                    chars.next();
                }
            }
        }
        expect_field = false;
        if field == "*" {
            out.push_str("[*]");
        } else if !field.is_empty() {
            out.push_str("['");
            out.push_str(&field.replace('\\', "\\\\").replace('\'', "\\'"));
            out.push_str("']");
        }
    }
    out
}

/// Copies one `[...]` selector, keeping quoted strings and nested brackets intact.
fn copy_bracket(chars: &mut std::iter::Peekable<std::str::Chars>, out: &mut String) {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for c in chars.by_ref() {
        out.push(c);
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') => {}
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn stack_columns() -> Value {
        json!([
            {"jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "name": "Ready", "type": "string"},
            {"jsonPath": ".status.phase", "name": "Phase", "type": "string"},
            {"jsonPath": ".status.endpoints[?(@.name==\"app\")].url", "name": "Endpoint", "type": "string"},
            {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"}
        ])
    }

    #[test]
    fn kubernetes_paths_become_rfc9535() {
        assert_eq!(to_rfc9535(".status.phase"), "$['status']['phase']");
        assert_eq!(
            to_rfc9535(".status.conditions[?(@.type==\"Ready\")].status"),
            "$['status']['conditions'][?(@.type==\"Ready\")]['status']"
        );
        assert_eq!(
            to_rfc9535(".metadata.labels.app\\.kubernetes\\.io/name"),
            "$['metadata']['labels']['app.kubernetes.io/name']"
        );
        assert_eq!(
            to_rfc9535(".spec.items[0].app-name"),
            "$['spec']['items'][0]['app-name']"
        );
        assert_eq!(to_rfc9535("{.spec.a}"), "$['spec']['a']");
        assert_eq!(to_rfc9535(".spec.*"), "$['spec'][*]");
        assert_eq!(to_rfc9535("..name"), "$..['name']");
        assert_eq!(to_rfc9535(".a['b.c']"), "$['a']['b.c']");
    }

    #[test]
    fn stack_columns_print_ready_phase_endpoint_and_age() {
        let columns = CustomColumns::new(&stack_columns());
        let names: Vec<Value> = columns
            .definitions()
            .iter()
            .map(|d| d["name"].clone())
            .collect();
        assert_eq!(names, ["Name", "Ready", "Phase", "Endpoint", "Age"]);
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let created = (now - SignedDuration::from_secs(600)).to_string();
        let stack = json!({
            "metadata": {"name": "shop", "creationTimestamp": created},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Reconciling", "status": "False"}, {"type": "Ready", "status": "True"}],
                "endpoints": [{"name": "db", "url": "postgres://x"}, {"name": "app", "url": "http://127.0.0.1:5500"}]
            }
        });
        assert_eq!(
            columns.cells(&stack, now),
            vec![
                json!("shop"),
                json!("True"),
                json!("Running"),
                json!("http://127.0.0.1:5500"),
                json!("10m")
            ]
        );
        let fresh = json!({"metadata": {"name": "new", "creationTimestamp": created}});
        assert_eq!(
            columns.cells(&fresh, now),
            vec![
                json!("new"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!("10m")
            ]
        );
    }

    #[test]
    fn crd_without_columns_prints_name_and_age() {
        let columns = CustomColumns::new(&Value::Null);
        let defs = columns.definitions();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[1]["name"], "Age");
        assert_eq!(defs[1]["type"], "date");
    }

    #[test]
    fn cells_follow_the_column_type() {
        let now = Timestamp::now();
        assert_eq!(cell("integer", &json!(3.9), now), json!(3));
        assert_eq!(cell("integer", &json!("3"), now), Value::Null);
        assert_eq!(cell("number", &json!(2), now), json!(2.0));
        assert_eq!(cell("boolean", &json!(true), now), json!(true));
        assert_eq!(cell("string", &json!(5), now), json!("5"));
        assert_eq!(cell("string", &json!({"a": 1}), now), json!("{\"a\":1}"));
        assert_eq!(cell("date", &json!("yesterday"), now), json!("<invalid>"));
        assert_eq!(cell("date", &json!(5), now), Value::Null);
    }

    #[test]
    fn declared_metadata_is_kept_and_bad_paths_give_empty_cells() {
        let columns = CustomColumns::new(&json!([
            {"jsonPath": ".spec.replicas", "name": "Replicas", "type": "integer", "priority": 1,
             "format": "int32", "description": "Wanted replicas"},
            {"jsonPath": ".spec[", "name": "Broken", "type": "string"}
        ]));
        let defs = columns.definitions();
        assert_eq!(defs[1]["priority"], 1);
        assert_eq!(defs[1]["format"], "int32");
        assert_eq!(defs[1]["description"], "Wanted replicas");
        assert_eq!(
            defs[2]["description"],
            "Custom resource definition column (in JSONPath format): .spec["
        );
        let object = json!({"metadata": {"name": "x"}, "spec": {"replicas": 2}});
        assert_eq!(
            columns.cells(&object, Timestamp::now()),
            vec![json!("x"), json!(2), Value::Null]
        );
    }
}
