//! The OpenAPI v3 documents of the served API: the index (`/openapi/v3`) and one document per group-version,
//! rendered from the registry when first asked for and kept until the resources they describe change.
//! HTTP (content negotiation, ETags, caching headers) is the discovery handler's job.

mod document;
pub(crate) mod kinds;
mod paths;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceType};

/// A rendered JSON document with its entity tag.
#[derive(Debug)]
pub struct Document {
    pub body: Bytes,
    /// Upstream's: the upper-case hex SHA-512 of the body; also the `hash` query parameter of its URL.
    pub etag: String,
    pub modified: jiff::Timestamp,
}

impl Document {
    fn new(value: &Value) -> Document {
        let body = Bytes::from(value.to_string());
        let digest = ring::digest::digest(&ring::digest::SHA512, &body);
        let etag = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Document {
            body,
            etag,
            modified: jiff::Timestamp::now(),
        }
    }
}

/// A group-version document with the resources it was rendered from. The `Arc`s are held, so a resource
/// the registry replaced (a CRD changed) can never compare equal to the one rendered here.
struct Entry {
    resources: Vec<Arc<ResourceType>>,
    document: Arc<Document>,
}

#[derive(Default)]
pub struct Cache {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Cache {
    /// `/openapi/v3`: each group-version's document path with a URL that names its current hash.
    pub fn index(&self, registry: &Registry) -> Document {
        let served = served(registry);
        let mut entries = self.lock();
        entries.retain(|path, _| served.contains_key(path));
        let mut paths = Map::new();
        for (path, resources) in served {
            let document = current(&mut entries, &path, resources);
            let url = format!("/openapi/v3/{path}?hash={}", document.etag);
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
        Document::new(&json!({"paths": paths}))
    }

    /// The document of one group-version (`api/v1`, `apis/berth.dev/v1alpha1`), if it is served.
    pub fn group_version(&self, registry: &Registry, path: &str) -> Option<Arc<Document>> {
        let resources = served(registry).remove(path)?;
        Some(current(&mut self.lock(), path, resources))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // Entries are replaced whole; a render that panicked leaves the map consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The served resources by group-version document path.
fn served(registry: &Registry) -> BTreeMap<String, Vec<Arc<ResourceType>>> {
    let mut served: BTreeMap<String, Vec<Arc<ResourceType>>> = BTreeMap::new();
    for rt in registry.all() {
        served
            .entry(document::path_of(&rt.group, &rt.version))
            .or_default()
            .push(rt);
    }
    served
}

/// The cached document of a group-version, rendered again when its resources are not the ones it was
/// rendered from.
fn current(
    entries: &mut BTreeMap<String, Entry>,
    path: &str,
    resources: Vec<Arc<ResourceType>>,
) -> Arc<Document> {
    if let Some(entry) = entries.get(path)
        && entry.resources.len() == resources.len()
        && entry
            .resources
            .iter()
            .zip(&resources)
            .all(|(a, b)| Arc::ptr_eq(a, b))
    {
        return entry.document.clone();
    }
    let document = Arc::new(Document::new(&document::build(&resources)));
    entries.insert(
        path.to_owned(),
        Entry {
            resources,
            document: document.clone(),
        },
    );
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::crd_resources;

    fn widget_crd(description: &str) -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Cluster",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "description": description}},
                }],
            },
        })
    }

    fn index_url(cache: &Cache, registry: &Registry, path: &str) -> Option<String> {
        let index: Value = serde_json::from_slice(&cache.index(registry).body).unwrap();
        index["paths"][path]["serverRelativeURL"]
            .as_str()
            .map(str::to_owned)
    }

    #[test]
    fn index_lists_every_group_version_with_the_hash_of_its_document() {
        let registry = Registry::new();
        let cache = Cache::default();
        let core = cache.group_version(&registry, "api/v1").unwrap();
        assert_eq!(core.etag.len(), 128);
        assert!(
            core.etag
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_eq!(
            index_url(&cache, &registry, "api/v1").unwrap(),
            format!("/openapi/v3/api/v1?hash={}", core.etag)
        );
        assert!(index_url(&cache, &registry, "apis/apiextensions.k8s.io/v1").is_some());
        assert!(
            cache
                .group_version(&registry, "apis/example.com/v1")
                .is_none()
        );
        let doc: Value = serde_json::from_slice(&core.body).unwrap();
        assert_eq!(doc["openapi"], "3.0.0");
    }

    #[test]
    fn documents_are_kept_until_their_resources_change() {
        let registry = Registry::new();
        let cache = Cache::default();
        let core = cache.group_version(&registry, "api/v1").unwrap();
        registry.set_crd("widgets.example.com", crd_resources(&widget_crd("first")));
        let first = cache
            .group_version(&registry, "apis/example.com/v1")
            .unwrap();
        assert!(Arc::ptr_eq(
            &core,
            &cache.group_version(&registry, "api/v1").unwrap()
        ));
        assert!(Arc::ptr_eq(
            &first,
            &cache
                .group_version(&registry, "apis/example.com/v1")
                .unwrap()
        ));

        // The same CRD written again renders the same document, with the same hash.
        registry.set_crd("widgets.example.com", crd_resources(&widget_crd("first")));
        let again = cache
            .group_version(&registry, "apis/example.com/v1")
            .unwrap();
        assert_eq!(again.etag, first.etag);

        registry.set_crd("widgets.example.com", crd_resources(&widget_crd("second")));
        let second = cache
            .group_version(&registry, "apis/example.com/v1")
            .unwrap();
        assert_ne!(second.etag, first.etag);
        assert!(String::from_utf8_lossy(&second.body).contains("second"));
        assert_eq!(
            index_url(&cache, &registry, "apis/example.com/v1").unwrap(),
            format!("/openapi/v3/apis/example.com/v1?hash={}", second.etag)
        );

        registry.remove_crd("widgets.example.com");
        assert!(
            cache
                .group_version(&registry, "apis/example.com/v1")
                .is_none()
        );
        assert!(index_url(&cache, &registry, "apis/example.com/v1").is_none());
    }
}
