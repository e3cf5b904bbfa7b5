//! `meta.k8s.io` Tables: what `kubectl get` asks for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//! Negotiates the Table from the Accept header, and turns objects into rows: built-in kinds with the columns of
//! upstream's printers (one small function per kind, in the files of this folder), custom resources with their
//! CRD's `additionalPrinterColumns`, and anything else with upstream's default `Name` and `Created At`.

mod cells;
mod cluster;
mod core;
mod custom;
mod workloads;

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::{ApiError, Result};
use crate::object;
use crate::registry::ResourceType;
use crate::request::Query;
use crate::store::{ResourceKey, Store};

use custom::CustomColumns;

/// The group of the Table kind.
const META_GROUP: &str = "meta.k8s.io";

/// A Table was asked for: the meta.k8s.io version it is served at, and what each row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRequest {
    /// `v1` or `v1beta1`.
    pub version: &'static str,
    pub include: Include,
}

/// The `includeObject` query parameter: what `row.object` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    /// A `PartialObjectMetadata` (the default: kubectl reads namespaces and labels from it).
    Metadata,
    Object,
}

/// Whether the request asks for a Table, validating `includeObject` when it does. Like upstream, the first
/// acceptable entry of the Accept header wins (by q-value, then in the order given); entries asking for another
/// transformation (`as=PartialObjectMetadata`) or another encoding are passed over, and plain JSON is the fallback.
pub fn requested(accept: Option<&str>, query: &Query) -> Result<Option<TableRequest>> {
    let Some(version) = accept.and_then(negotiate) else {
        return Ok(None);
    };
    let include = match query.get("includeObject") {
        None | Some("Metadata") => Include::Metadata,
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unable to convert to Table as requested: includeObject: Unsupported value: {other:?}: \
                 supported values: \"Metadata\", \"None\", \"Object\""
            )));
        }
    };
    Ok(Some(TableRequest { version, include }))
}

/// One entry of an Accept header.
struct Clause<'a> {
    media: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: f32,
}

impl Clause<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn specificity(&self) -> u8 {
        match self.media {
            "*/*" => 0,
            m if m.ends_with("/*") => 1,
            _ => 2,
        }
    }
}

/// The Table version the Accept header settles on, or `None` for the plain object.
fn negotiate(accept: &str) -> Option<&'static str> {
    let mut clauses: Vec<Clause> = accept.split(',').filter_map(parse_clause).collect();
    // Stable: equal entries keep the client's order, as upstream's small-slice sort does.
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then(b.specificity().cmp(&a.specificity()))
    });
    for clause in clauses.iter().filter(|c| c.q > 0.0) {
        if !matches!(clause.media, "application/json" | "application/*" | "*/*") {
            continue;
        }
        match (clause.param("as"), clause.param("g"), clause.param("v")) {
            (None, None, None) => return None,
            (Some("Table"), Some(META_GROUP), Some("v1")) => return Some("v1"),
            (Some("Table"), Some(META_GROUP), Some("v1beta1")) => return Some("v1beta1"),
            _ => continue,
        }
    }
    None
}

fn parse_clause(entry: &str) -> Option<Clause<'_>> {
    let mut parts = entry.split(';').map(str::trim);
    let media = parts.next().filter(|m| !m.is_empty())?;
    let mut clause = Clause {
        media,
        params: Vec::new(),
        q: 1.0,
    };
    for part in parts {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        if key == "q" {
            clause.q = value.parse().unwrap_or(0.0);
        } else {
            clause.params.push((key, value));
        }
    }
    Some(clause)
}

/// One column of a Table, as `TableColumnDefinition` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: &'static str,
    /// `name` for the column that names the object, else empty.
    pub format: &'static str,
    /// 0 for the default view, 1 for `-o wide`.
    pub priority: u8,
    pub description: &'static str,
}

impl Column {
    const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Column {
        Column {
            name,
            kind,
            format: "",
            priority: 0,
            description,
        }
    }

    /// A column shown only with `-o wide`.
    const fn wide(self) -> Column {
        Column {
            priority: 1,
            ..self
        }
    }

    fn definition(&self) -> Value {
        definition(
            self.name,
            self.kind,
            self.format,
            self.priority.into(),
            self.description,
        )
    }
}

fn definition(name: &str, kind: &str, format: &str, priority: i64, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

/// The column every printer starts with.
const NAME: Column = Column {
    format: "name",
    ..Column::new(
        "Name",
        "string",
        "The object's name, unique among objects of its kind in a namespace.",
    )
};
/// The age column of the built-in printers (a string such as `5m`, rendered by the server).
const AGE: Column = Column::new(
    "Age",
    "string",
    "Time since the object was created (metadata.creationTimestamp).",
);

/// How one built-in kind prints: its columns and the cells of one object, in the same order.
pub struct Printer {
    pub columns: &'static [Column],
    pub cells: fn(&Value, Timestamp) -> Vec<Value>,
    /// Row conditions (`Completed` for finished Pods).
    pub conditions: fn(&Value) -> Vec<Value>,
}

impl Printer {
    const fn new(columns: &'static [Column], cells: fn(&Value, Timestamp) -> Vec<Value>) -> Self {
        Printer {
            columns,
            cells,
            conditions: |_| Vec::new(),
        }
    }
}

/// The printer for a built-in resource, when upstream has one.
fn builtin_printer(group: &str, resource: &str) -> Option<&'static Printer> {
    core::printer(group, resource)
        .or_else(|| workloads::printer(group, resource))
        .or_else(|| cluster::printer(group, resource))
}

/// Upstream's default for resources without a printer: the name and the creation time as RFC 3339.
const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column::new(
        "Created At",
        "date",
        "When the object was created (metadata.creationTimestamp).",
    ),
];

/// Turns objects of one resource into a Table's column definitions and rows.
enum Convertor {
    Builtin(&'static Printer),
    Custom(CustomColumns),
    Default,
}

impl Convertor {
    fn for_resource(store: &Store, rt: &ResourceType) -> Convertor {
        if rt.is_custom() {
            let crd = store.get(
                &ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions"),
                "",
                &rt.group_resource(),
            );
            let version = crd.as_deref().and_then(|crd| {
                crd["spec"]["versions"]
                    .as_array()?
                    .iter()
                    .find(|v| v["name"].as_str() == Some(rt.version.as_str()))
            });
            return Convertor::Custom(CustomColumns::new(
                version.map_or(&Value::Null, |v| &v["additionalPrinterColumns"]),
            ));
        }
        match builtin_printer(&rt.group, &rt.resource) {
            Some(printer) => Convertor::Builtin(printer),
            None => Convertor::Default,
        }
    }

    fn columns(&self) -> Vec<Value> {
        match self {
            Convertor::Builtin(printer) => printer.columns.iter().map(Column::definition).collect(),
            Convertor::Custom(custom) => custom.definitions(),
            Convertor::Default => DEFAULT_COLUMNS.iter().map(Column::definition).collect(),
        }
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        match self {
            Convertor::Builtin(printer) => (printer.cells)(object, now),
            Convertor::Custom(custom) => custom.cells(object, now),
            Convertor::Default => {
                vec![json!(cells::name(object)), json!(cells::created_at(object))]
            }
        }
    }

    fn conditions(&self, object: &Value) -> Vec<Value> {
        match self {
            Convertor::Builtin(printer) => (printer.conditions)(object),
            Convertor::Custom(_) | Convertor::Default => Vec::new(),
        }
    }
}

/// Renders Tables for one request: a list, a single object, or the events of a watch.
pub struct Tabulator {
    rt: Arc<ResourceType>,
    request: TableRequest,
    convertor: Convertor,
}

impl Tabulator {
    pub fn new(store: &Store, rt: Arc<ResourceType>, request: TableRequest) -> Self {
        let convertor = Convertor::for_resource(store, &rt);
        Tabulator {
            rt,
            request,
            convertor,
        }
    }

    /// A list response: one row per object, consistent with `rv`.
    pub fn list<'a>(&self, rv: u64, items: impl IntoIterator<Item = &'a Value>) -> Value {
        let now = Timestamp::now();
        let rows: Vec<Value> = items.into_iter().map(|o| self.row(o, now)).collect();
        self.table(rv.to_string(), rows, true)
    }

    /// A single object (a get, or the object of a watch event). Watches send the column definitions with the
    /// first event only, as upstream does; kubectl reuses the last ones it saw.
    pub fn object(&self, object: &Value, headers: bool) -> Value {
        let rv = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let row = self.row(object, Timestamp::now());
        self.table(rv, vec![row], headers)
    }

    /// A watch BOOKMARK: no rows, only the resourceVersion the watcher has reached.
    pub fn bookmark(&self, rv: u64) -> Value {
        self.table(rv.to_string(), Vec::new(), false)
    }

    fn table(&self, rv: String, rows: Vec<Value>, headers: bool) -> Value {
        let columns = if headers {
            Value::Array(self.convertor.columns())
        } else {
            Value::Null
        };
        json!({
            "kind": "Table",
            "apiVersion": format!("{META_GROUP}/{}", self.request.version),
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": columns,
            "rows": rows,
        })
    }

    fn row(&self, stored: &Value, now: Timestamp) -> Value {
        // Printers read the object as served: events.k8s.io Events have names of their own.
        let object = object::served(&self.rt, stored);
        let cells = self.convertor.cells(&object, now);
        let conditions = self.convertor.conditions(&object);
        let mut row = json!({
            "cells": cells,
            "object": self.row_object(object),
        });
        if !conditions.is_empty() {
            row["conditions"] = Value::Array(conditions);
        }
        row
    }

    fn row_object(&self, object: Value) -> Value {
        match self.request.include {
            Include::None => Value::Null,
            Include::Object => object,
            Include::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": format!("{META_GROUP}/{}", self.request.version),
                "metadata": object["metadata"],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    fn query(raw: &str) -> Query {
        Query::parse(Some(raw)).unwrap()
    }

    #[test]
    fn kubectl_accept_header_gets_a_v1_table_with_metadata_rows() {
        let request = requested(Some(KUBECTL_ACCEPT), &Query::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            request,
            TableRequest {
                version: "v1",
                include: Include::Metadata
            }
        );
    }

    #[test]
    fn first_acceptable_table_version_wins() {
        let accept = "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io";
        assert_eq!(negotiate(accept), Some("v1beta1"));
        assert_eq!(
            negotiate(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io;q=0.5,application/json;as=Table;g=meta.k8s.io;v=v1"
            ),
            Some("v1"),
            "a higher q-value comes first"
        );
    }

    #[test]
    fn plain_json_and_unknown_transformations_get_the_object() {
        assert_eq!(negotiate("application/json"), None);
        assert_eq!(negotiate("*/*"), None);
        assert_eq!(
            negotiate("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"),
            None
        );
        assert_eq!(
            negotiate("application/json;as=Table;v=v2;g=meta.k8s.io,application/json"),
            None
        );
        assert_eq!(
            negotiate("application/json,application/json;as=Table;v=v1;g=meta.k8s.io"),
            None,
            "plain JSON listed first wins"
        );
        assert_eq!(
            negotiate("application/yaml;as=Table;v=v1;g=meta.k8s.io"),
            None,
            "only JSON Tables are served"
        );
    }

    #[test]
    fn include_object_is_validated() {
        let none = requested(Some(KUBECTL_ACCEPT), &query("includeObject=None")).unwrap();
        assert_eq!(none.unwrap().include, Include::None);
        let object = requested(Some(KUBECTL_ACCEPT), &query("includeObject=Object")).unwrap();
        assert_eq!(object.unwrap().include, Include::Object);
        let err = requested(Some(KUBECTL_ACCEPT), &query("includeObject=All")).unwrap_err();
        assert_eq!(err.code, http::StatusCode::BAD_REQUEST);
        assert!(
            err.message
                .contains("includeObject: Unsupported value: \"All\"")
        );
        assert!(
            requested(Some("application/json"), &query("includeObject=All"))
                .unwrap()
                .is_none(),
            "ignored without a Table"
        );
    }

    fn tabulator(resource: &str, include: Include) -> (Tabulator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let rt = crate::registry::Registry::new()
            .lookup("", "v1", resource)
            .unwrap();
        let request = TableRequest {
            version: "v1",
            include,
        };
        (Tabulator::new(&store, rt, request), dir)
    }

    #[test]
    fn list_table_carries_resource_version_columns_and_partial_metadata() {
        let (tab, _dir) = tabulator("configmaps", Include::Metadata);
        let cm = json!({"metadata": {"name": "a", "namespace": "default", "labels": {"x": "y"}}, "data": {"k": "v"}});
        let table = tab.list(42, [&cm]);
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["metadata"]["resourceVersion"], "42");
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Data", "Age"]);
        let row = &table["rows"][0];
        assert_eq!(row["cells"][0], "a");
        assert_eq!(row["cells"][1], 1);
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(row["object"]["metadata"]["labels"]["x"], "y");
        assert!(row["object"].get("data").is_none());
    }

    #[test]
    fn include_object_none_and_object_shape_the_row_object() {
        let cm = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "data": {"k": "v"}});
        let (tab, _dir) = tabulator("configmaps", Include::None);
        let table = tab.object(&cm, true);
        assert_eq!(table["rows"][0]["object"], Value::Null);
        assert_eq!(table["metadata"]["resourceVersion"], "7");
        let (tab, _dir) = tabulator("configmaps", Include::Object);
        let table = tab.object(&cm, true);
        assert_eq!(table["rows"][0]["object"]["kind"], "ConfigMap");
        assert_eq!(table["rows"][0]["object"]["data"]["k"], "v");
    }

    #[test]
    fn later_watch_tables_leave_out_column_definitions() {
        let (tab, _dir) = tabulator("configmaps", Include::Metadata);
        let cm = json!({"metadata": {"name": "a"}});
        assert!(tab.object(&cm, true)["columnDefinitions"].is_array());
        assert!(tab.object(&cm, false)["columnDefinitions"].is_null());
        let bookmark = tab.bookmark(9);
        assert_eq!(bookmark["rows"], json!([]));
        assert_eq!(bookmark["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn resources_without_a_printer_get_name_and_created_at() {
        let convertor = Convertor::Default;
        let columns = convertor.columns();
        assert_eq!(columns[1]["name"], "Created At");
        assert_eq!(columns[1]["type"], "date");
        let cells = convertor.cells(
            &json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T10:00:00Z"}}),
            Timestamp::now(),
        );
        assert_eq!(cells, vec![json!("x"), json!("2024-05-01T10:00:00Z")]);
    }
}
