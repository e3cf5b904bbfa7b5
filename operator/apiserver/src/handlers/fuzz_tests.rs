//! Property tests that throw malformed and random requests at the handlers (request decoding, JSON merge
//! patch, JSON patch) and check the server's promises: never a 5xx or a panic, and a failed request changes
//! nothing that is stored. `PROPTEST_CASES` raises the number of cases for longer fuzzing runs.

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, header};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{App, handle};
use crate::registry::Registry;
use crate::store::Store;

const TOKEN: &str = "fuzz-token";

struct Harness {
    app: Arc<App>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open(&dir.path().join("fuzz.db")).unwrap();
        let app = Arc::new(App {
            store,
            registry: Registry::new(),
            token: TOKEN.into(),
            openapi: Default::default(),
            kubelet_client: None,
        });
        let harness = Harness {
            app,
            runtime,
            _dir: dir,
        };
        for (path, body) in [
            (
                "/api/v1/namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
            ),
            (
                "/api/v1/namespaces/default/configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "target", "labels": {"a": "b"}}, "data": {"k": "v"}}),
            ),
            (
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                serde_json::from_str(&serde_json::to_string(&berth_stack_like_crd()).unwrap())
                    .unwrap(),
            ),
        ] {
            let (status, _) = harness.send(
                Method::POST,
                path,
                "application/json",
                body.to_string().into_bytes(),
            );
            assert!(status < 300, "seeding {path} failed with {status}");
        }
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "target"}, "spec": {"size": 3, "mode": "on"}});
        let (status, body) = harness.send(
            Method::POST,
            "/apis/example.com/v1/namespaces/default/widgets",
            "application/json",
            widget.to_string().into_bytes(),
        );
        assert!(
            status < 300,
            "seeding the widget failed with {status}: {body}"
        );
        harness
    }

    fn send(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        self.runtime.block_on(async {
            let response = handle(self.app.clone(), request).await;
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    /// Sends a request and checks the promises; returns the status.
    fn check(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> u16 {
        let before = self.app.store.current_rv();
        let (status, text) = self.send(method.clone(), path, content_type, body);
        assert!(status < 500, "{method} {path} answered {status}: {text}");
        if status >= 400 {
            assert_eq!(
                self.app.store.current_rv(),
                before,
                "a failed {method} {path} ({status}) changed the store"
            );
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert_eq!(
                parsed["kind"], "Status",
                "errors are Status objects: {text}"
            );
        }
        status
    }
}

fn berth_stack_like_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "size": {"type": "integer", "minimum": 0, "default": 1},
                                "mode": {"type": "string", "enum": ["on", "off"]},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "limits": {"type": "object", "additionalProperties": {"type": "string"}}
                            }
                        },
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            }]
        }
    })
}

/// JSON values shaped like Kubernetes objects: known keys, nested maps and lists, odd scalars.
fn object_like() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("apiVersion".to_owned()),
        Just("kind".to_owned()),
        Just("metadata".to_owned()),
        Just("name".to_owned()),
        Just("namespace".to_owned()),
        Just("labels".to_owned()),
        Just("finalizers".to_owned()),
        Just("resourceVersion".to_owned()),
        Just("generateName".to_owned()),
        Just("spec".to_owned()),
        Just("status".to_owned()),
        Just("data".to_owned()),
        Just("size".to_owned()),
        Just("mode".to_owned()),
        Just("containers".to_owned()),
        "[a-zA-Z/._-]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::from),
        Just(json!("v1")),
        Just(json!("ConfigMap")),
        Just(json!("target")),
        Just(json!("default")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_patch_op() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        Just("/metadata/labels/a".to_owned()),
        Just("/metadata/labels".to_owned()),
        Just("/metadata/name".to_owned()),
        Just("/metadata/finalizers/-".to_owned()),
        Just("/metadata/resourceVersion".to_owned()),
        Just("/data/k".to_owned()),
        Just("/spec/size".to_owned()),
        Just("/spec/tags/0".to_owned()),
        Just("/status".to_owned()),
        Just("".to_owned()),
        "(/[a-z~0-9-]{0,6}){0,4}",
    ];
    let op = prop_oneof![
        Just("add"),
        Just("remove"),
        Just("replace"),
        Just("move"),
        Just("copy"),
        Just("test"),
        Just("bogus")
    ];
    (op, path.clone(), path, object_like()).prop_map(
        |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
    )
}

fn target_path() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("/api/v1/namespaces/default/configmaps/target"),
        Just("/apis/example.com/v1/namespaces/default/widgets/target"),
        Just("/apis/example.com/v1/namespaces/default/widgets/target/status"),
        Just("/api/v1/namespaces/default/pods/target"),
        Just("/api/v1/namespaces/default/secrets/target"),
    ]
}

fn collection_path() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("/api/v1/namespaces/default/configmaps"),
        Just("/api/v1/namespaces/default/pods"),
        Just("/api/v1/namespaces/default/services"),
        Just("/api/v1/namespaces/default/secrets"),
        Just("/api/v1/namespaces"),
        Just("/api/v1/nodes"),
        Just("/apis/example.com/v1/namespaces/default/widgets"),
        Just("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        Just("/apis/coordination.k8s.io/v1/namespaces/default/leases"),
    ]
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("application/json"),
        Just("application/yaml"),
        Just("application/merge-patch+json"),
        Just("application/json-patch+json"),
        Just("application/strategic-merge-patch+json"),
        Just("application/apply-patch+yaml"),
        Just("text/plain"),
    ]
}

/// 400 cases per property in the test suite; `PROPTEST_CASES` sets more for a fuzzing run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_bytes_never_break_the_server(
        method in prop_oneof![Just(Method::POST), Just(Method::PUT), Just(Method::PATCH), Just(Method::DELETE)],
        path in prop_oneof![target_path(), collection_path()],
        content_type in content_type(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        HARNESS.with(|h| { h.check(method, path, content_type, body); });
    }

    #[test]
    fn object_shaped_bodies_are_created_or_rejected_cleanly(
        path in collection_path(),
        content_type in prop_oneof![Just("application/json"), Just("application/yaml")],
        body in object_like(),
    ) {
        HARNESS.with(|h| {
            let status = h.check(Method::POST, path, content_type, body.to_string().into_bytes());
            prop_assert!(status == 201 || (400..500).contains(&status));
            Ok(())
        })?;
    }

    #[test]
    fn merge_patches_apply_or_are_rejected_cleanly(path in target_path(), patch in object_like()) {
        HARNESS.with(|h| { h.check(Method::PATCH, path, "application/merge-patch+json", patch.to_string().into_bytes()); });
    }

    #[test]
    fn json_patches_apply_or_are_rejected_cleanly(
        path in target_path(),
        ops in prop::collection::vec(json_patch_op(), 0..5),
    ) {
        HARNESS.with(|h| { h.check(Method::PATCH, path, "application/json-patch+json", Value::Array(ops).to_string().into_bytes()); });
    }

    #[test]
    fn replacing_with_random_objects_is_clean(path in target_path(), body in object_like()) {
        HARNESS.with(|h| { h.check(Method::PUT, path, "application/json", body.to_string().into_bytes()); });
    }
}

#[test]
fn oversized_bodies_are_rejected_with_413() {
    let h = Harness::new();
    let big = vec![b' '; super::MAX_BODY + 1];
    let (status, _) = h.send(
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        big,
    );
    assert_eq!(status, 413);
}

#[test]
fn requests_without_the_token_are_unauthorized() {
    let h = Harness::new();
    let request = Request::builder()
        .uri("/api/v1/namespaces")
        .body(Body::empty())
        .unwrap();
    let status = h
        .runtime
        .block_on(async { handle(h.app.clone(), request).await.status().as_u16() });
    assert_eq!(status, 401);
}

#[test]
fn wrong_kind_for_the_url_is_a_bad_request() {
    let h = Harness::new();
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
    let (status, text) = h.send(
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        body.to_string().into_bytes(),
    );
    assert_eq!(status, 400, "{text}");
}
