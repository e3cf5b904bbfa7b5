//! OpenAPI as kubectl uses it: `kubectl explain` of built-in kinds and of the Stack CRD, strict field
//! validation on `kubectl apply`, valid objects applied with validation and with `--dry-run=server`, and the
//! documents' HTTP contract (hash URLs, ETags, caching headers, content negotiation, `/openapi/v2`),
//! with every kubectl version from 1.27 to 1.33 found next to the kubectl on the PATH.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_e2e::{Kubectl, Server, kubectl_bin, wait_for};
use http::{Request, StatusCode, header};
use kube::client::Body;
use serde_json::Value;

const KUBECTL_MINORS: std::ops::RangeInclusive<u32> = 27..=33;
const DEADLINE: Duration = Duration::from_secs(30);

/// A Stack with a field its schema does not have.
const STACK_WITH_UNKNOWN_FIELD: &str = "apiVersion: berth.dev/v1alpha1
kind: Stack
metadata:
  name: typo
spec:
  foo: 1
  app:
    image: busybox
";

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: strict
";

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: busybox
    args: [sleep, '3600']
    ports:
    - containerPort: 8080
    resources:
      limits:
        memory: 64Mi
        cpu: 100m
";

/// `kubectl apply -f crds/` and wait until the Stack CRD is Established.
fn install_crd(k: &Kubectl) {
    k.ok(&["apply", "-f", &path_arg(&repo_path("crds"))]);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/stacks.berth.dev",
        "--timeout=30s",
    ]);
}

fn repo_path(relative: &str) -> PathBuf {
    Server::repo_root().join(relative)
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The versioned kubectl binaries installed next to the `kubectl` on the PATH (`kubectl.1.27`, ...), or the
/// plain kubectl when there are none.
fn kubectls() -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if let Ok(real) = std::fs::canonicalize(dir.join("kubectl"))
            && let Some(parent) = real.parent()
        {
            dirs.push(parent.to_path_buf());
        }
        dirs.push(dir);
    }
    let found: Vec<(String, PathBuf)> = KUBECTL_MINORS
        .filter_map(|minor| {
            dirs.iter()
                .map(|d| d.join(format!("kubectl.1.{minor}")))
                .find(|bin| bin.is_file())
                .map(|bin| (format!("1.{minor}"), bin))
        })
        .collect();
    if found.len() < KUBECTL_MINORS.count() {
        eprintln!(
            "only kubectl {:?} found next to the kubectl on the PATH",
            found.iter().map(|(v, _)| v).collect::<Vec<_>>()
        );
    }
    if found.is_empty() {
        return vec![("default".into(), kubectl_bin())];
    }
    found
}

fn section<'t>(text: &'t str, heading: &str) -> &'t str {
    text.split_once(heading).map(|(_, rest)| rest).unwrap_or("")
}

#[test]
fn explain_prints_field_docs_of_pods_and_stacks_with_every_kubectl_version() {
    let server = Server::start();
    install_crd(&Kubectl::with_bin(&server, kubectl_bin(), "setup"));
    for (version, bin) in kubectls() {
        let k = Kubectl::with_bin(&server, bin, &version);

        let containers = k.ok(&["explain", "pods.spec.containers"]);
        assert!(
            containers.contains("KIND:") && containers.contains("Pod"),
            "kubectl {version}: {containers}"
        );
        assert!(
            containers.contains("List of containers belonging to the pod"),
            "kubectl {version} prints the field's description: {containers}"
        );
        let fields = section(&containers, "FIELDS:");
        for field in ["image", "env", "readinessProbe", "resources"] {
            assert!(
                fields.lines().any(|l| l.trim_start().starts_with(field)),
                "kubectl {version} lists containers.{field}: {containers}"
            );
        }

        let app = k.ok(&["explain", "stack.spec.app"]);
        assert!(
            app.contains("GROUP:") && app.contains("berth.dev") && app.contains("Stack"),
            "kubectl {version}: {app}"
        );
        assert!(
            section(&app, "DESCRIPTION:").contains("The web application"),
            "kubectl {version} prints spec.app's description: {app}"
        );
        let fields = section(&app, "FIELDS:");
        assert!(
            fields.lines().any(|l| l.trim_start().starts_with("image"))
                && fields.contains("-required-"),
            "kubectl {version} lists spec.app's fields, image required: {app}"
        );

        let metadata = k.ok(&["explain", "stack.metadata.labels"]);
        assert!(
            metadata.contains("map[string]string"),
            "kubectl {version} follows metadata to ObjectMeta: {metadata}"
        );
    }
}

#[test]
fn strict_apply_of_a_stack_with_an_unknown_field_fails_naming_it() {
    let server = Server::start();
    install_crd(&Kubectl::with_bin(&server, kubectl_bin(), "setup"));
    for (version, bin) in kubectls() {
        let k = Kubectl::with_bin(&server, bin, &version);
        let stderr = k.fails(
            &["apply", "--validate=strict", "-f", "-"],
            Some(STACK_WITH_UNKNOWN_FIELD),
        );
        assert!(
            stderr.contains(r#"unknown field "spec.foo""#),
            "kubectl {version} names the unknown field: {stderr}"
        );
        let get = k.run(&["get", "stack", "typo"], None);
        assert!(
            !get.status.success(),
            "kubectl {version}: the Stack with an unknown field must not be stored"
        );
    }
}

#[test]
fn valid_objects_apply_with_strict_validation_and_with_server_dry_run() {
    let server = Server::start();
    install_crd(&Kubectl::with_bin(&server, kubectl_bin(), "setup"));
    let sample = path_arg(&repo_path("config/samples/stack.yaml"));
    for (version, bin) in kubectls() {
        let k = Kubectl::with_bin(&server, bin, &version);
        let namespace = format!("ns-{}", version.replace('.', "-"));
        // `kubectl create namespace` sends protobuf; apply sends JSON.
        let namespace_yaml =
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
        k.ok_stdin(&["apply", "-f", "-"], Some(&namespace_yaml));
        let ns = ["-n", namespace.as_str()];

        let dry = [
            &["apply", "--validate=strict", "--dry-run=server", "-f"][..],
            &[sample.as_str()],
            &ns,
        ]
        .concat();
        let out = k.ok(&dry);
        assert!(
            out.contains("stack.berth.dev/demo") && out.contains("server dry run"),
            "kubectl {version}: {out}"
        );
        assert!(
            !k.run(&["get", "stack", "demo", "-n", &namespace], None)
                .status
                .success(),
            "kubectl {version}: a server dry run stores nothing"
        );

        for (manifest, name) in [
            (None, "stack.berth.dev/demo"),
            (Some(CONFIGMAP), "configmap/settings"),
            (Some(POD), "pod/web"),
        ] {
            let file = match manifest {
                Some(_) => "-",
                None => sample.as_str(),
            };
            let args = [&["apply", "--validate=strict", "-f", file][..], &ns].concat();
            let out = k.run(&args, manifest);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !stderr.contains("unknown field"),
                "kubectl {version} applies {name} with strict validation: {stderr}"
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(name),
                "kubectl {version}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

#[test]
fn explain_follows_a_changed_crd_through_kubectls_cache() {
    let server = Server::start();
    let k = Kubectl::with_bin(&server, kubectl_bin(), "default");
    install_crd(&k);
    let before = k.ok(&["explain", "stack.spec.app"]);
    assert!(!before.contains("changed for the test"), "{before}");

    let crd = std::fs::read_to_string(repo_path("crds/berth.dev_stacks.yaml"))
        .expect("reading the Stack CRD");
    let changed = crd.replacen(
        "description: The web application.",
        "description: The web application, changed for the test.",
        1,
    );
    assert_ne!(crd, changed, "the CRD describes spec.app");
    k.ok_stdin(&["replace", "-f", "-"], Some(&changed));

    let after = wait_for("explain to show the new description", DEADLINE, || {
        let text = k.ok(&["explain", "stack.spec.app"]);
        text.contains("changed for the test").then_some(text)
    });
    assert!(after.contains("FIELDS:"), "{after}");
}

async fn get(
    client: &kube::Client,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> (http::Response<Body>, Vec<u8>) {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let request = request.body(Body::empty()).expect("a valid request");
    let response = client.send(request).await.expect("an HTTP response");
    let (parts, body) = response.into_parts();
    let bytes = body.collect_bytes().await.expect("reading the body");
    (
        http::Response::from_parts(parts, Body::empty()),
        bytes.to_vec(),
    )
}

fn header_of(response: &http::Response<Body>, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn documents_are_served_with_hash_urls_etags_and_caching_headers() {
    let server = Server::start();
    install_crd(&Kubectl::with_bin(&server, kubectl_bin(), "setup"));
    let client = server.client().await;

    let (index, body) = get(&client, "/openapi/v3", &[]).await;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(header_of(&index, header::CONTENT_TYPE), "application/json");
    let index_etag = header_of(&index, header::ETAG).to_owned();
    assert!(
        index_etag.starts_with('"') && index_etag.len() > 100,
        "{index_etag}"
    );
    let paths: Value = serde_json::from_slice(&body).expect("the index is JSON");
    for gv in ["api/v1", "apis/apps/v1", "apis/berth.dev/v1alpha1"] {
        assert!(paths["paths"][gv].is_object(), "{gv} in {paths}");
    }
    let (unchanged, _) = get(
        &client,
        "/openapi/v3",
        &[(header::IF_NONE_MATCH, &index_etag)],
    )
    .await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    let url = paths["paths"]["apis/berth.dev/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .expect("a serverRelativeURL");
    let hash = url.split_once("?hash=").expect("the URL names a hash").1;
    let (doc, body) = get(&client, url, &[(header::ACCEPT, "application/json")]).await;
    assert_eq!(doc.status(), StatusCode::OK);
    assert_eq!(header_of(&doc, header::ETAG), format!("\"{hash}\""));
    assert_eq!(header_of(&doc, header::CACHE_CONTROL), "public, immutable");
    assert!(!header_of(&doc, header::EXPIRES).is_empty());
    let doc_json: Value = serde_json::from_slice(&body).expect("the document is JSON");
    assert_eq!(doc_json["openapi"], "3.0.0");
    let stack = &doc_json["components"]["schemas"]["dev.berth.v1alpha1.Stack"];
    assert_eq!(
        stack["x-kubernetes-group-version-kind"][0]["kind"], "Stack",
        "{stack}"
    );

    let stale = url.replace(hash, "0000");
    let (moved, _) = get(&client, &stale, &[]).await;
    assert_eq!(moved.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header_of(&moved, header::LOCATION), url);

    let protobuf_only = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf";
    let (refused, _) = get(&client, url, &[(header::ACCEPT, protobuf_only)]).await;
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);
    let (missing, _) = get(&client, "/openapi/v3/apis/example.com/v1", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // kubectl asks for v2 in protobuf only; an empty document keeps kubectl 1.27 and 1.28 working.
    let v2_protobuf = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (v2, body) = get(&client, "/openapi/v2", &[(header::ACCEPT, v2_protobuf)]).await;
    assert_eq!(v2.status(), StatusCode::OK);
    assert!(body.is_empty());
}
