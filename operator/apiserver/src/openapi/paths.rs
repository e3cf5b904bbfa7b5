//! The `paths` of a group-version document: every operation the server answers for a resource, each with
//! `x-kubernetes-action` and `x-kubernetes-group-version-kind`, and with its query parameters inline
//! (kubectl looks for `fieldValidation` among a PATCH operation's parameters to decide that the server
//! validates fields, and then leaves validation to it).

use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// What a resource's operations return and take, as component names.
pub struct Refs<'a> {
    pub kind: &'a str,
    pub list: &'a str,
    pub status: &'a str,
    pub delete_options: &'a str,
    pub patch: &'a str,
    pub watch_event: &'a str,
    /// autoscaling/v1 Scale, for resources with a `scale` subresource.
    pub scale: Option<&'a str>,
}

pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

#[derive(Clone, Copy)]
enum Type {
    String,
    Boolean,
    Integer,
}

fn query(name: &str, kind: Type, description: &str) -> Value {
    let kind = match kind {
        Type::String => "string",
        Type::Boolean => "boolean",
        Type::Integer => "integer",
    };
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": kind},
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string"},
    })
}

fn pretty() -> Value {
    query(
        "pretty",
        Type::String,
        "If 'true', the output is pretty printed.",
    )
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![
        query(
            "dryRun",
            Type::String,
            "When present, the change is checked and returned but not persisted. The only valid value is \
             All.",
        ),
        query(
            "fieldManager",
            Type::String,
            "The name of the actor making the change, recorded in managedFields. Required for apply \
             patches.",
        ),
        query(
            "fieldValidation",
            Type::String,
            "What the server does with unknown or duplicate fields in the object: Ignore drops them, Warn \
             drops them and answers with a warning for each, Strict fails the request.",
        ),
    ];
    if patch {
        params.push(query(
            "force",
            Type::Boolean,
            "Take over fields owned by other managers on an apply patch instead of failing with a \
             conflict. Only valid for apply patches.",
        ));
    }
    params
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            Type::Boolean,
            "Ask for BOOKMARK events in a watch.",
        ),
        query(
            "continue",
            Type::String,
            "The continue token of the previous page of a paginated list.",
        ),
        query(
            "fieldSelector",
            Type::String,
            "Only objects whose fields match this selector.",
        ),
        query(
            "labelSelector",
            Type::String,
            "Only objects whose labels match this selector.",
        ),
        query(
            "limit",
            Type::Integer,
            "The most objects to return in one page.",
        ),
        query(
            "resourceVersion",
            Type::String,
            "Which version of the collection to list or to start watching from.",
        ),
        query(
            "resourceVersionMatch",
            Type::String,
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
        ),
        query(
            "sendInitialEvents",
            Type::Boolean,
            "Start a watch with synthetic ADDED events for the current state.",
        ),
        query(
            "timeoutSeconds",
            Type::Integer,
            "How long a list or watch call may last.",
        ),
        query(
            "watch",
            Type::Boolean,
            "Watch for changes instead of listing.",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            Type::String,
            "When present, the deletion is checked but not persisted. The only valid value is All.",
        ),
        query(
            "gracePeriodSeconds",
            Type::Integer,
            "Seconds before the object is deleted; zero means at once.",
        ),
        query(
            "orphanDependents",
            Type::Boolean,
            "Deprecated: use propagationPolicy. Whether dependents are orphaned.",
        ),
        query(
            "propagationPolicy",
            Type::String,
            "Whether and how garbage collection removes dependents: Orphan, Background or Foreground.",
        ),
    ]
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn watch_content(schema: Value) -> Value {
    json!({
        "application/json": {"schema": schema},
        "application/json;stream=watch": {"schema": schema},
    })
}

fn responses(codes: &[&str], content: Value) -> Value {
    let mut responses = Map::new();
    for code in codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        responses.insert(
            (*code).to_owned(),
            json!({"description": description, "content": content}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(responses)
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`, `BerthDevV1alpha1`: how upstream spells a group-version in
/// operation ids.
fn group_version_id(group: &str, version: &str) -> String {
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    let group = if group.is_empty() { "core" } else { group };
    group
        .split(['.', '-'])
        .chain([version])
        .map(capitalize)
        .collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `"status of "` for `Status`, `"scale of "` for `Scale`, nothing for the resource itself.
fn subresource_words(sub: &str) -> String {
    if sub.is_empty() {
        String::new()
    } else {
        format!("{} of ", sub.to_lowercase())
    }
}

/// Builds one operation of a resource.
struct Operations<'a> {
    rt: &'a ResourceType,
    refs: &'a Refs<'a>,
    gv: String,
    scope: &'static str,
}

impl Operations<'_> {
    fn op(
        &self,
        action: &str,
        id: String,
        description: String,
        parameters: Vec<Value>,
        responses: Value,
    ) -> Value {
        json!({
            "description": description,
            "operationId": id,
            "parameters": parameters,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": {
                "group": self.rt.group,
                "version": self.rt.version,
                "kind": self.rt.kind,
            },
        })
    }

    fn id(&self, verb: &str, suffix: &str) -> String {
        format!("{verb}{}{}{}{suffix}", self.gv, self.scope, self.rt.kind)
    }

    fn kind_content(&self) -> Value {
        json_content(schema_ref(self.refs.kind))
    }

    fn list(&self) -> Value {
        let mut params = list_params();
        params.push(pretty());
        self.op(
            "list",
            self.id("list", ""),
            format!("list or watch objects of kind {}", self.rt.kind),
            params,
            responses(&["200"], watch_content(schema_ref(self.refs.list))),
        )
    }

    fn list_all_namespaces(&self) -> Value {
        let mut params = list_params();
        params.push(pretty());
        self.op(
            "list",
            format!("list{}{}ForAllNamespaces", self.gv, self.rt.kind),
            format!(
                "list or watch objects of kind {} in every namespace",
                self.rt.kind
            ),
            params,
            responses(&["200"], watch_content(schema_ref(self.refs.list))),
        )
    }

    fn create(&self) -> Value {
        let mut op = self.op(
            "post",
            self.id("create", ""),
            format!("create a {}", self.rt.kind),
            write_params(false),
            responses(&["200", "201", "202"], self.kind_content()),
        );
        op["requestBody"] = json!({
            "content": {"*/*": {"schema": schema_ref(self.refs.kind)}},
            "required": true,
        });
        op
    }

    fn delete_collection(&self) -> Value {
        let mut params = delete_params();
        params.extend(list_params());
        let mut op = self.op(
            "deletecollection",
            format!("delete{}Collection{}{}", self.gv, self.scope, self.rt.kind),
            format!("delete collection of {}", self.rt.kind),
            params,
            responses(&["200"], json_content(schema_ref(self.refs.status))),
        );
        op["requestBody"] =
            json!({"content": {"*/*": {"schema": schema_ref(self.refs.delete_options)}}});
        op
    }

    fn read(&self, sub: &str) -> Value {
        let what = subresource_words(sub);
        self.op(
            "get",
            self.id("read", sub),
            format!("read {what}the specified {}", self.rt.kind),
            Vec::new(),
            responses(&["200"], self.kind_content()),
        )
    }

    fn replace(&self, sub: &str) -> Value {
        let what = subresource_words(sub);
        let mut op = self.op(
            "put",
            self.id("replace", sub),
            format!("replace {what}the specified {}", self.rt.kind),
            write_params(false),
            responses(&["200", "201"], self.kind_content()),
        );
        op["requestBody"] = json!({
            "content": {"*/*": {"schema": schema_ref(self.refs.kind)}},
            "required": true,
        });
        op
    }

    /// Built-in kinds also take strategic merge patches; kubectl then computes its client-side apply patch
    /// from this document's merge keys (`x-kubernetes-patch-merge-key`). Custom resources take none, as
    /// upstream, so kubectl sends them JSON merge patches.
    fn patch(&self, sub: &str) -> Value {
        let what = subresource_words(sub);
        let mut op = self.op(
            "patch",
            self.id("patch", sub),
            format!("partially update {what}the specified {}", self.rt.kind),
            write_params(true),
            responses(&["200", "201"], self.kind_content()),
        );
        let patch = json!({"schema": schema_ref(self.refs.patch)});
        let mut content = Map::new();
        let mut types = vec![
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ];
        if !self.rt.is_custom() {
            types.push("application/strategic-merge-patch+json");
        }
        for media_type in types {
            content.insert(media_type.into(), patch.clone());
        }
        op["requestBody"] = json!({"content": content, "required": true});
        op
    }

    fn delete(&self) -> Value {
        // A deletion answers with the object while finalizers hold it, with a Status once it is gone.
        let answer = if self.rt.is_custom() {
            self.refs.status
        } else {
            self.refs.kind
        };
        let mut op = self.op(
            "delete",
            self.id("delete", ""),
            format!("delete a {}", self.rt.kind),
            delete_params(),
            responses(&["200", "202"], json_content(schema_ref(answer))),
        );
        op["requestBody"] =
            json!({"content": {"*/*": {"schema": schema_ref(self.refs.delete_options)}}});
        op
    }

    fn watch(&self, action: &str, id: String, description: String) -> Value {
        let mut params = list_params();
        params.push(pretty());
        self.op(
            action,
            id,
            description,
            params,
            responses(&["200"], watch_content(schema_ref(self.refs.watch_event))),
        )
    }
}

/// Points every `$ref` to `from` in an operation at `to`.
fn retarget(value: &mut Value, from: &str, to: &str) {
    let (from, to) = (schema_ref(from), schema_ref(to));
    fn walk(value: &mut Value, from: &Value, to: &Value) {
        if value == from {
            *value = to.clone();
            return;
        }
        match value {
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, from, to)),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, from, to)),
            _ => {}
        }
    }
    walk(value, &from, &to);
}

/// Adds the paths of one resource.
pub fn add(paths: &mut Map<String, Value>, rt: &ResourceType, refs: &Refs) {
    let ops = Operations {
        rt,
        refs,
        gv: group_version_id(&rt.group, &rt.version),
        scope: if rt.namespaced { "Namespaced" } else { "" },
    };
    let base = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    let scope = if rt.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let name_param = path_param("name", &format!("name of the {}", rt.kind));
    let namespace_param = path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    );
    let params = |named: bool| -> Vec<Value> {
        let mut params = Vec::new();
        if named {
            params.push(name_param.clone());
        }
        if rt.namespaced {
            params.push(namespace_param.clone());
        }
        params.push(pretty());
        params
    };
    let kind = &rt.kind;
    let plural = &rt.resource;
    let collection = format!("{base}{scope}/{plural}");
    let item = format!("{collection}/{{name}}");

    paths.insert(
        collection,
        json!({
            "get": ops.list(),
            "post": ops.create(),
            "delete": ops.delete_collection(),
            "parameters": params(false),
        }),
    );
    paths.insert(
        item.clone(),
        json!({
            "get": ops.read(""),
            "put": ops.replace(""),
            "patch": ops.patch(""),
            "delete": ops.delete(),
            "parameters": params(true),
        }),
    );
    if rt.status_subresource {
        paths.insert(
            format!("{item}/status"),
            json!({
                "get": ops.read("Status"),
                "put": ops.replace("Status"),
                "patch": ops.patch("Status"),
                "parameters": params(true),
            }),
        );
    }
    if let (Some(_), Some(scale)) = (&rt.scale, refs.scale) {
        // The operations read and write a Scale, whatever kind the resource is.
        let scale_op = |mut op: Value| {
            op["x-kubernetes-group-version-kind"] =
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
            retarget(&mut op, refs.kind, scale);
            op
        };
        paths.insert(
            format!("{item}/scale"),
            json!({
                "get": scale_op(ops.read("Scale")),
                "put": scale_op(ops.replace("Scale")),
                "patch": scale_op(ops.patch("Scale")),
                "parameters": params(true),
            }),
        );
    }
    if rt.namespaced {
        paths.insert(
            format!("{base}/{plural}"),
            json!({"get": ops.list_all_namespaces(), "parameters": [pretty()]}),
        );
        paths.insert(
            format!("{base}/watch/{plural}"),
            json!({
                "get": ops.watch(
                    "watchlist",
                    format!("watch{}{kind}ListForAllNamespaces", ops.gv),
                    format!("watch individual changes to a list of {kind} in every namespace"),
                ),
                "parameters": [pretty()],
            }),
        );
    }
    paths.insert(
        format!("{base}/watch{scope}/{plural}"),
        json!({
            "get": ops.watch(
                "watchlist",
                ops.id("watch", "List"),
                format!("watch individual changes to a list of {kind}"),
            ),
            "parameters": params(false),
        }),
    );
    paths.insert(
        format!("{base}/watch{scope}/{plural}/{{name}}"),
        json!({
            "get": ops.watch(
                "watch",
                ops.id("watch", ""),
                format!("watch changes to an object of kind {kind}"),
            ),
            "parameters": params(true),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn refs() -> Refs<'static> {
        Refs {
            kind: "io.k8s.api.core.v1.Pod",
            list: "io.k8s.api.core.v1.PodList",
            status: "Status",
            delete_options: "DeleteOptions",
            patch: "Patch",
            watch_event: "WatchEvent",
            scale: Some("Scale"),
        }
    }

    #[test]
    fn group_versions_are_spelled_as_in_upstream_operation_ids() {
        assert_eq!(group_version_id("", "v1"), "CoreV1");
        assert_eq!(group_version_id("apps", "v1"), "AppsV1");
        assert_eq!(
            group_version_id("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(
            group_version_id("berth.dev", "v1alpha1"),
            "BerthDevV1alpha1"
        );
    }

    #[test]
    fn namespaced_resource_has_every_operation_with_its_kind() {
        let pods = Registry::new().lookup("", "v1", "pods").unwrap();
        let mut paths = Map::new();
        add(&mut paths, &pods, &refs());
        let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(item["get"]["operationId"], "readCoreV1NamespacedPod");
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        let patch_params = item["patch"]["parameters"].as_array().unwrap();
        assert!(patch_params.iter().any(|p| p["name"] == "fieldValidation"));
        let patch_types = item["patch"]["requestBody"]["content"].as_object().unwrap();
        assert!(patch_types.contains_key("application/merge-patch+json"));
        assert!(patch_types.contains_key("application/strategic-merge-patch+json"));
        let collection = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");
        assert_eq!(
            collection["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodList"
        );
        assert_eq!(
            collection["delete"]["operationId"],
            "deleteCoreV1CollectionNamespacedPod"
        );
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/status"));
        assert_eq!(
            paths["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert!(paths.contains_key("/api/v1/watch/namespaces/{namespace}/pods/{name}"));
    }

    #[test]
    fn scale_subresource_reads_and_writes_a_scale() {
        let deployments = Registry::new().lookup("apps", "v1", "deployments").unwrap();
        let mut paths = Map::new();
        add(&mut paths, &deployments, &refs());
        let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["get"]["operationId"],
            "readAppsV1NamespacedDeploymentScale"
        );
        assert_eq!(
            scale["put"]["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert_eq!(
            scale["put"]["requestBody"]["content"]["*/*"]["schema"]["$ref"],
            "#/components/schemas/Scale"
        );
        assert_eq!(
            scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Scale"
        );
        let pods = Registry::new().lookup("", "v1", "pods").unwrap();
        let mut paths = Map::new();
        add(&mut paths, &pods, &refs());
        assert!(paths.keys().all(|p| !p.ends_with("/scale")));
    }

    #[test]
    fn cluster_scoped_resource_has_no_namespace_in_its_paths() {
        let nodes = Registry::new().lookup("", "v1", "nodes").unwrap();
        let mut paths = Map::new();
        add(&mut paths, &nodes, &refs());
        assert!(
            paths.keys().all(|p| !p.contains("{namespace}")),
            "{paths:?}"
        );
        assert_eq!(
            paths["/api/v1/nodes/{name}"]["get"]["operationId"],
            "readCoreV1Node"
        );
        let params = paths["/api/v1/nodes/{name}"]["parameters"]
            .as_array()
            .unwrap();
        assert!(params.iter().all(|p| p["name"] != "namespace"));
    }
}
