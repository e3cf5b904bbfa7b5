//! Turning a request's path and query into what the handlers work on: the resource type, namespace, name and
//! subresource (the URL grammar of the Kubernetes API), and typed access to query parameters.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{ApiError, Result, Subject};
use crate::registry::{Registry, ResourceType};

/// A request for a resource, a collection or a subresource.
#[derive(Clone)]
pub struct Target {
    pub rt: Arc<ResourceType>,
    /// The namespace from the URL; `None` for cluster-scoped resources and all-namespace collections.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// A legacy `/watch/` path prefix.
    pub watch_path: bool,
}

impl Target {
    pub fn subject(&self) -> Subject {
        Subject {
            group: self.rt.group.clone(),
            kind: self.rt.resource.clone(),
            name: self.name.clone().unwrap_or_default(),
        }
    }

    /// The namespace part of a store key: empty for cluster-scoped resources.
    pub fn store_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

/// Splits `/api/v1/...` or `/apis/<group>/<version>/...` into a [`Target`].
/// Returns `Ok(None)` when the path is not a resource path at all.
pub fn parse_target(registry: &Registry, path: &str) -> Result<Option<Target>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Ok(None),
    };
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let lookup = |resource: &str| registry.lookup(group, version, resource);
    let not_found = || ApiError::no_route();
    // `namespaces/<ns>/<resource>...` addresses a namespaced resource, unless <resource> is a subresource of the
    // namespace itself (`namespaces/<ns>/status`, `namespaces/<ns>/finalize`).
    let target = match rest {
        ["namespaces", ns, resource, tail @ ..]
            if lookup(resource).is_some_and(|rt| rt.namespaced) =>
        {
            let rt = lookup(resource).ok_or_else(not_found)?;
            let (name, subresource) = match tail {
                [] => (None, None),
                [name] => (Some(*name), None),
                [name, sub] => (Some(*name), Some(*sub)),
                _ => return Err(not_found()),
            };
            Target {
                rt,
                namespace: Some(decode(ns)?),
                name: name.map(decode).transpose()?,
                subresource: subresource.map(str::to_owned),
                watch_path,
            }
        }
        [resource, tail @ ..] => {
            let rt = lookup(resource).ok_or_else(not_found)?;
            let (name, subresource) = match tail {
                [] => (None, None),
                [name] => (Some(*name), None),
                [name, sub] => (Some(*name), Some(*sub)),
                _ => return Err(not_found()),
            };
            // A namespaced resource without a namespace is only addressable as an all-namespaces collection.
            if rt.namespaced && name.is_some() {
                return Err(not_found());
            }
            Target {
                rt,
                namespace: None,
                name: name.map(decode).transpose()?,
                subresource: subresource.map(str::to_owned),
                watch_path,
            }
        }
        [] => return Err(not_found()),
    };
    Ok(Some(target))
}

fn decode(segment: &str) -> Result<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request(format!("invalid path segment {segment:?}")))
}

/// Query parameters; a repeated key keeps its last value.
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query> {
        let Some(raw) = raw else {
            return Ok(Query::default());
        };
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        Ok(Query(pairs.into_iter().collect()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true`/`1`); anything else that is present is an error.
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for parameter {key}"
            ))),
        }
    }

    pub fn number(&self, key: &str) -> Result<Option<i64>> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid value {v:?} for parameter {key}"))
                })
            })
            .transpose()
    }

    /// `dryRun=All` (the only dry-run mode upstream accepts).
    pub fn dry_run(&self) -> Result<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value {other:?}: valid values are \"All\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        parse_target(&Registry::new(), path).unwrap().unwrap()
    }

    #[test]
    fn namespaced_item_and_subresource_paths_parse() {
        let t = target("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(t.rt.resource, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn namespace_object_and_its_subresources_are_cluster_scoped() {
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!(t.rt.resource, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));
        let t = target("/api/v1/namespaces/kube-system/status");
        assert_eq!(
            (t.name.as_deref(), t.subresource.as_deref()),
            (Some("kube-system"), Some("status"))
        );
    }

    #[test]
    fn all_namespaces_collection_and_watch_prefix_parse() {
        let t = target("/apis/coordination.k8s.io/v1/leases");
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = target("/api/v1/watch/namespaces/default/configmaps");
        assert!(t.watch_path);
        assert_eq!(t.rt.resource, "configmaps");
    }

    #[test]
    fn unknown_resources_and_non_resource_paths_are_distinguished() {
        let registry = Registry::new();
        assert!(parse_target(&registry, "/api/v1/widgets").is_err());
        assert!(parse_target(&registry, "/api/v1").unwrap().is_none());
        assert!(
            parse_target(&registry, "/api/v1/pods/x").is_err(),
            "namespaced item needs a namespace"
        );
    }

    #[test]
    fn query_flags_reject_garbage() {
        let q = Query::parse(Some("watch=true&dryRun=All&limit=5&x=")).unwrap();
        assert!(q.flag("watch").unwrap());
        assert!(q.dry_run().unwrap());
        assert_eq!(q.number("limit").unwrap(), Some(5));
        assert_eq!(q.get("x"), None);
        assert!(
            Query::parse(Some("watch=maybe"))
                .unwrap()
                .flag("watch")
                .is_err()
        );
    }
}
