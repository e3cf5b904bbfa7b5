//! The cluster install paths and the GitOps health check: the Helm chart in charts/berth (linted and rendered by
//! Helm's own engine through helm-python-sdk, see e2e/helm/offline.py), the kustomize bases in config/ (rendered
//! by kubectl's kustomize), both applied with real kubectl against `berth apiserver` to prove they are valid
//! objects, and the Argo CD health check in gitops/argocd run by real Lua interpreters on sample Stacks.
//!
//! One source of truth each: the chart's CRD must be the generated crds/berth.dev_stacks.yaml (and `berth crd`),
//! the chart's RBAC rules must be those of config/rbac, and the argocd-cm snippet must carry health.lua verbatim.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::{Server, berth_bin};
use serde_json::{Value, json};

/// How long one Helm, kustomize or Lua run may take.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);
/// How long installing the Lua interpreters with apt may take.
const APT_DEADLINE: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    Server::repo_root()
}

fn chart_dir() -> PathBuf {
    repo().join("charts/berth")
}

/// Runs a command with its output in files (a rendered chart is larger than a pipe's buffer) and a deadline.
fn run(mut command: Command, what: &str, deadline: Duration) -> (ExitStatus, String, String) {
    let dir = tempfile::Builder::new()
        .prefix("berth-chart-")
        .tempdir()
        .expect("creating a scratch directory");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("creating the stdout file"))
        .stderr(File::create(&err_path).expect("creating the stderr file"))
        .spawn()
        .unwrap_or_else(|err| panic!("starting {what}: {err}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status, stdout, stderr)
}

// ---------------------------------------------------------------------------------------------------------------
// Helm, offline

/// The virtualenv's python, after e2e/helm/setup.sh made sure helm-python-sdk is in it (quick once cached).
fn helm_python() -> PathBuf {
    let venv = std::env::var_os("BERTH_HELM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo().join("target"))
                .join("helm-venv")
        });
    let mut setup = Command::new("bash");
    setup.arg(repo().join("e2e/helm/setup.sh")).arg(&venv);
    let (status, stdout, stderr) = run(setup, "e2e/helm/setup.sh", APT_DEADLINE);
    assert!(
        status.success(),
        "e2e/helm/setup.sh {} failed:\n{stdout}{stderr}",
        venv.display()
    );
    venv.join("bin/python")
}

/// `offline.py ACTION charts/berth ...`: Ok with the driver's JSON, or Err with its error document.
fn helm(action: &str, values: &Value, namespace: &str) -> Result<Value, Value> {
    let mut command = Command::new(helm_python());
    command
        .arg(repo().join("e2e/helm/offline.py"))
        .arg(action)
        .arg(chart_dir())
        .arg("--values")
        .arg(values.to_string())
        .arg("--name")
        .arg("berth")
        .arg("--namespace")
        .arg(namespace);
    let (status, stdout, stderr) = run(command, &format!("helm {action}"), TOOL_DEADLINE);
    let result: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!("helm {action} printed no JSON ({err}; {status}): {stdout}\n{stderr}")
    });
    if status.success() {
        Ok(result)
    } else {
        Err(result)
    }
}

/// The chart rendered as `helm template` renders it, one YAML stream (NOTES.txt left out).
fn render(values: &Value, namespace: &str) -> String {
    let result = helm("render", values, namespace)
        .unwrap_or_else(|err| panic!("rendering the chart with {values} failed: {err}"));
    let manifests = result["manifests"]
        .as_object()
        .expect("the driver prints the manifests as an object");
    let mut paths: Vec<&String> = manifests.keys().collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|path| path.ends_with(".yaml"))
        .map(|path| format!("---\n# Source: {path}\n{}\n", text(&manifests[path])))
        .collect()
}

/// The objects of a YAML stream (documents split at `---` lines), empty documents skipped.
fn documents(stream: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in stream.lines() {
        if line == "---" || line.starts_with("--- ") {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|doc| {
            serde_yaml::from_str::<Value>(doc)
                .unwrap_or_else(|err| panic!("invalid YAML document ({err}):\n{doc}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| text(&o["kind"]).to_owned())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} expected: {found:?}");
    found[0]
}

/// RBAC rules in a comparable form: one (group, resource, resourceNames) entry per verb, order ignored.
fn rules(role: &Value) -> BTreeSet<String> {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| text(s).to_owned()).collect())
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("a role has rules") {
        let names = list(&rule["resourceNames"]).join(",");
        for group in list(&rule["apiGroups"]) {
            for resource in list(&rule["resources"]) {
                for verb in list(&rule["verbs"]) {
                    out.insert(format!("{group}/{resource}[{names}] {verb}"));
                }
            }
        }
    }
    out
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("parsing {}: {err}", path.display()))
}

#[test]
fn chart_lints_clean_in_strict_mode() {
    let report = helm("lint", &json!({}), "berth-system").expect("the linter runs");
    assert_eq!(report["total_charts_linted"], 1, "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    // Severity 1 is informational ("icon is recommended"); 2 is a warning, 3 an error.
    let serious: Vec<&Value> = report["messages"]
        .as_array()
        .expect("lint messages")
        .iter()
        .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
        .collect();
    assert!(serious.is_empty(), "lint warnings or errors: {serious:?}");

    // The linter checks the schema too: a bad value is an error in its report.
    let report =
        helm("lint", &json!({"replicaCount": "two"}), "berth-system").expect("the linter runs");
    assert!(
        report["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| text(e).contains("/replicaCount"))),
        "{report}"
    );
}

#[test]
fn chart_renders_a_locked_down_controller_with_leader_election() {
    let namespace = "berth-render";
    let objects = documents(&render(&json!({}), namespace));
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
        .map(String::from)
        .into(),
        "the default install; no ServiceMonitor unless asked for"
    );
    for object in &objects {
        let scoped = !matches!(
            text(&object["kind"]),
            "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
        );
        if scoped {
            assert_eq!(object["metadata"]["namespace"], namespace, "{object}");
        }
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{object}"
        );
    }

    let deployment = find(&objects, "Deployment");
    let pod = &deployment["spec"]["template"];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert!(
        deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("selector labels")
            .iter()
            .all(|(k, v)| pod["metadata"]["labels"][k] == *v),
        "the selector selects the template: {deployment}"
    );
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/berth-dev/berth:0.1.0");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        container["args"],
        json!([
            "controller",
            "--metrics-addr=0.0.0.0:8080",
            "--leader-elect"
        ]),
        "the flags `berth controller` has"
    );
    assert_eq!(
        container["env"][0],
        json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        "--leader-elect-namespace reads POD_NAMESPACE"
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "metrics");
    }
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    // The Pods run as the ServiceAccount both bindings name.
    let account = text(&find(&objects, "ServiceAccount")["metadata"]["name"]).to_owned();
    assert_eq!(pod["spec"]["serviceAccountName"], account.as_str());
    for (binding, role) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        let binding = find(&objects, binding);
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}])
        );
        assert_eq!(binding["roleRef"]["kind"], role);
        assert_eq!(
            binding["roleRef"]["name"],
            find(&objects, role)["metadata"]["name"]
        );
    }

    // The metrics Service reaches the container's named port on the controller Pods.
    let service = find(&objects, "Service");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    assert!(
        service["spec"]["selector"]
            .as_object()
            .expect("a selector")
            .iter()
            .all(|(k, v)| pod["metadata"]["labels"][k] == *v),
        "the Service selects the controller Pods: {service}"
    );
}

#[test]
fn chart_values_switch_parts_on_and_off() {
    let namespace = "berth-values";
    let objects = documents(&render(
        &json!({
            "replicaCount": 3,
            "image": {"repository": "registry.example/berth", "tag": "9.9.9", "pullPolicy": "Always"},
            "metrics": {"port": 9090, "serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
            "logLevel": "berth_controller=debug,info",
        }),
        namespace,
    ));
    let deployment = find(&objects, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["image"], "registry.example/berth:9.9.9");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["args"][1], "--metrics-addr=0.0.0.0:9090");
    assert_eq!(container["ports"][0]["containerPort"], 9090);
    assert_eq!(
        container["env"][1],
        json!({"name": "RUST_LOG", "value": "berth_controller=debug,info"})
    );
    let monitor = find(&objects, "ServiceMonitor");
    let service = find(&objects, "Service");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([namespace])
    );
    assert!(
        monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
            .iter()
            .all(|(k, v)| service["metadata"]["labels"][k] == *v),
        "the ServiceMonitor selects the metrics Service: {monitor}"
    );

    // Without leader election: no Role, no flag. Without CRDs and RBAC: only the workload and its Service.
    let objects = documents(&render(
        &json!({
            "leaderElection": {"enabled": false},
            "crds": {"install": false, "keep": true},
            "rbac": {"create": false},
            "serviceAccount": {"create": false, "name": "existing"},
        }),
        namespace,
    ));
    assert_eq!(
        kinds(&objects),
        ["Deployment", "Service"].map(String::from).into()
    );
    let deployment = find(&objects, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["controller", "--metrics-addr=0.0.0.0:8080"])
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );

    // crds.keep off: the CRD goes with the release.
    let objects = documents(&render(
        &json!({"crds": {"keep": false, "install": true}}),
        namespace,
    ));
    assert_eq!(
        find(&objects, "CustomResourceDefinition")["metadata"]["annotations"],
        json!({})
    );

    // Combinations that cannot work fail the render with a message that says what to change.
    for (values, message) in [
        (
            json!({"replicaCount": 2, "leaderElection": {"enabled": false}}),
            "replicaCount > 1 needs leaderElection.enabled",
        ),
        (
            json!({"metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}),
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
        (
            json!({"serviceAccount": {"create": false, "name": ""}}),
            "serviceAccount.name is required",
        ),
    ] {
        let err = helm("render", &values, namespace).expect_err("the render must fail");
        assert_eq!(err["error"], "HelmRenderError", "{values}: {err}");
        assert!(text(&err["detail"]).contains(message), "{values}: {err}");
    }
}

#[test]
fn values_schema_rejects_bad_values() {
    for (values, path) in [
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicaCount": -1}), "/replicaCount"),
        (json!({"replicas": 2}), "additional properties 'replicas'"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"image": {"registry": "x"}}), "'registry'"),
        (json!({"metrics": {"port": 70000}}), "/metrics/port"),
        (
            json!({"metrics": {"serviceMonitor": {"interval": "often"}}}),
            "/metrics/serviceMonitor/interval",
        ),
        (
            json!({"resources": {"requests": {"memory": true}}}),
            "/resources/requests/memory",
        ),
        (
            json!({"leaderElection": {"enabled": "yes"}}),
            "/leaderElection/enabled",
        ),
    ] {
        let err = helm("render", &values, "berth-system").expect_err("the schema must reject it");
        assert_eq!(err["error"], "HelmValuesError", "{values}: {err}");
        assert!(
            text(&err["detail"]).contains(path),
            "{values}: the error should name {path}: {err}"
        );
    }
}

#[test]
fn chart_crd_is_the_generated_crd() {
    let generated = repo().join("crds/berth.dev_stacks.yaml");
    let copy = chart_dir().join("files/berth.dev_stacks.yaml");
    assert_eq!(
        std::fs::read_to_string(&copy).expect("the chart's CRD copy"),
        std::fs::read_to_string(&generated).expect("crds/berth.dev_stacks.yaml"),
        "charts/berth/files/berth.dev_stacks.yaml drifted from crds/: cp crds/berth.dev_stacks.yaml charts/berth/files/"
    );
    let (status, printed, stderr) = run(
        {
            let mut c = Command::new(berth_bin());
            c.arg("crd");
            c
        },
        "berth crd",
        TOOL_DEADLINE,
    );
    assert!(status.success(), "berth crd failed: {stderr}");
    let printed: Value = serde_yaml::from_str(&printed).expect("berth crd prints YAML");

    let objects = documents(&render(&json!({}), "berth-system"));
    let mut rendered = find(&objects, "CustomResourceDefinition").clone();
    assert_eq!(
        rendered["metadata"]["annotations"],
        json!({"helm.sh/resource-policy": "keep"}),
        "helm uninstall must not delete the CRD and every Stack with it"
    );
    assert_eq!(
        rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    // Apart from what Helm adds to its metadata, the rendered CRD is the generated one, field for field. Helm's
    // YAML round trip writes `minimum: 0.0` as `0`: numbers are compared as numbers.
    let metadata = rendered["metadata"]
        .as_object_mut()
        .expect("the CRD has metadata");
    metadata.remove("annotations");
    metadata.remove("labels");
    let rendered = numbers_as_floats(rendered);
    assert_eq!(
        rendered,
        numbers_as_floats(yaml_file(&generated)),
        "rendered vs crds/"
    );
    assert_eq!(
        rendered,
        numbers_as_floats(printed),
        "rendered vs `berth crd`"
    );
}

fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Number(n), |f| json!(f)),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `kubectl kustomize DIR` of a directory under config/.
fn kustomize(dir: &str) -> String {
    let mut command = Command::new(berth_e2e::kubectl_bin());
    command.arg("kustomize").arg(repo().join(dir));
    let (status, stdout, stderr) = run(command, &format!("kubectl kustomize {dir}"), TOOL_DEADLINE);
    assert!(status.success(), "kubectl kustomize {dir} failed: {stderr}");
    stdout
}

#[test]
fn chart_rbac_is_the_rbac_of_config() {
    let objects = documents(&render(&json!({}), "berth-system"));
    let cluster_role = rules(find(&objects, "ClusterRole"));
    let leader_role = rules(find(&objects, "Role"));
    assert_eq!(
        cluster_role,
        rules(&yaml_file(&repo().join("config/rbac/role.yaml"))),
        "charts/berth/templates/rbac.yaml and config/rbac/role.yaml must grant the same"
    );
    assert_eq!(
        leader_role,
        rules(&yaml_file(
            &repo().join("config/rbac/leader_election_role.yaml")
        )),
        "the leader-election Roles of the chart and of config/rbac must grant the same"
    );
    let kustomized = documents(&kustomize("config/default"));
    assert_eq!(rules(find(&kustomized, "ClusterRole")), cluster_role);
    assert_eq!(rules(find(&kustomized, "Role")), leader_role);

    // What the controller's calls need, no more: a change to either file is a change to this list.
    let expected: BTreeSet<String> = [
        "berth.dev/stacks[] list",
        "berth.dev/stacks[] watch",
        "berth.dev/stacks[] patch",
        "berth.dev/stacks/status[] patch",
        "/pods[] list",
        "/pods[] watch",
        "/pods[] create",
        "/pods[] patch",
        "/pods[] delete",
        "/services[] list",
        "/services[] watch",
        "/services[] create",
        "/services[] patch",
        "/services[] delete",
        "/secrets[] get",
        "/secrets[] list",
        "/secrets[] watch",
        "/secrets[] create",
        "/secrets[] patch",
        "/secrets[] delete",
        "/persistentvolumeclaims[] get",
        "/persistentvolumeclaims[] list",
        "/persistentvolumeclaims[] watch",
        "/persistentvolumeclaims[] create",
        "/persistentvolumeclaims[] patch",
        "/persistentvolumeclaims[] delete",
        "events.k8s.io/events[] create",
        "events.k8s.io/events[] patch",
        "/events[] create",
        "/events[] patch",
    ]
    .map(String::from)
    .into();
    assert_eq!(cluster_role, expected);
    let expected: BTreeSet<String> = [
        "coordination.k8s.io/leases[] create",
        "coordination.k8s.io/leases[berth-controller] get",
        "coordination.k8s.io/leases[berth-controller] update",
    ]
    .map(String::from)
    .into();
    assert_eq!(leader_role, expected);
}

/// A minimal ServiceMonitor CRD, standing in for the Prometheus Operator's, so that the ServiceMonitor the
/// chart and config/prometheus render can be applied too.
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

/// Applies a YAML stream with `kubectl apply --server-side`, then reads every object back and checks that the
/// API server kept what was sent (a sample of fields per kind: nothing pruned or rejected).
fn apply_and_read_back(server: &Server, stream: &str) {
    let out = server.kubectl_with_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=berth-e2e-chart",
            "-f",
            "-",
        ],
        Some(stream),
    );
    assert!(
        out.status.success(),
        "kubectl apply --server-side failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    for object in documents(stream) {
        let kind = text(&object["kind"]);
        let group = text(&object["apiVersion"]).split_once('/').map(|(g, _)| g);
        let resource = match group {
            Some(group) => format!("{}.{group}", kind.to_lowercase()),
            None => kind.to_lowercase(),
        };
        let name = text(&object["metadata"]["name"]);
        let mut args = vec!["get", resource.as_str(), name, "-o", "json"];
        let namespace = text(&object["metadata"]["namespace"]);
        if !namespace.is_empty() {
            args.extend(["-n", namespace]);
        }
        let stored: Value =
            serde_json::from_str(&server.kubectl_ok(&args)).expect("kubectl printed JSON");
        assert!(stored["metadata"]["uid"].is_string(), "{stored}");
        // Every label sent is kept (the server may add its own, as kubernetes.io/metadata.name on Namespaces).
        if let Some(labels) = object["metadata"]["labels"].as_object() {
            for (key, value) in labels {
                assert_eq!(
                    &stored["metadata"]["labels"][key], value,
                    "{kind} {name}: label {key}"
                );
            }
        }
        let kept = |pointer: &str| {
            assert_eq!(
                stored.pointer(pointer),
                object.pointer(pointer),
                "{kind} {name}: {pointer}"
            )
        };
        match kind {
            "Deployment" => {
                kept("/spec/template/spec/containers/0/securityContext");
                kept("/spec/template/spec/containers/0/args");
                kept("/spec/template/spec/securityContext");
            }
            "ClusterRole" | "Role" => kept("/rules"),
            "ClusterRoleBinding" | "RoleBinding" => {
                kept("/subjects");
                kept("/roleRef");
            }
            "CustomResourceDefinition" => kept("/spec/versions/0/schema"),
            "ServiceMonitor" => kept("/spec"),
            "Service" => kept("/spec/selector"),
            _ => {}
        }
    }
}

fn namespace_manifest(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// Waits until the Stack CRD serves, then lets the API server check the sample Stack against it.
fn stack_crd_serves(server: &Server, namespace: &str) {
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/stacks.berth.dev",
        "--timeout=30s",
    ]);
    let sample = repo().join("config/samples/stack.yaml");
    let sample = sample.to_str().expect("a UTF-8 path");
    server.kubectl_ok(&["apply", "--dry-run=server", "-n", namespace, "-f", sample]);
}

#[test]
fn rendered_chart_applies_to_the_api_server() {
    let server = Server::start();
    let namespace = "berth-chart";
    apply_and_read_back(
        &server,
        &format!(
            "{SERVICE_MONITOR_CRD}---\n{}",
            namespace_manifest(namespace)
        ),
    );
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "--timeout=30s",
    ]);
    let stream = render(
        &json!({"replicaCount": 2, "metrics": {"serviceMonitor": {"enabled": true}}}),
        namespace,
    );
    assert!(kinds(&documents(&stream)).contains("ServiceMonitor"));
    apply_and_read_back(&server, &stream);
    stack_crd_serves(&server, namespace);
}

/// The controller process a test starts, killed when the test ends.
struct Controller(std::process::Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The status code of `GET path` on a plain HTTP endpoint, or None when it does not answer.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn chart_controller_command_serves_health_and_takes_the_lease_its_role_allows() {
    let server = Server::start();
    let namespace = "berth-run";
    apply_and_read_back(&server, &namespace_manifest(namespace));
    let stream = render(&json!({}), namespace);
    apply_and_read_back(&server, &stream);
    let objects = documents(&stream);

    // The Deployment's command, run here as the kubelet would run it, with the metrics port on a free loopback
    // port instead of 0.0.0.0:8080.
    let container = &find(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| text(a).to_owned())
        .collect();
    let metrics = args
        .iter_mut()
        .find(|a| a.starts_with("--metrics-addr="))
        .expect("the chart passes --metrics-addr");
    *metrics = "--metrics-addr=127.0.0.1:0".into();
    let log_path = server.data_dir.path().join("controller.log");
    let _controller = Controller(
        Command::new(berth_bin())
            .args(&args)
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            // What the Deployment's fieldRef gives the container.
            .env("POD_NAMESPACE", namespace)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log_path).expect("creating the controller log"))
            .spawn()
            .expect("starting berth controller"),
    );
    let log = || {
        console::strip_ansi_codes(&std::fs::read_to_string(&log_path).unwrap_or_default())
            .into_owned()
    };
    let addr = berth_e2e::wait_for("the controller's metrics address", TOOL_DEADLINE, || {
        let log = log();
        let line = log.lines().find(|l| l.contains("serving /metrics"))?;
        let addr = line.split("addr=").nth(1)?;
        Some(addr.split_whitespace().next()?.to_owned())
    });
    assert_eq!(http_status(&addr, "/healthz"), Some(200), "{}", log());
    berth_e2e::wait_for("/readyz to answer 200", TOOL_DEADLINE, || {
        (http_status(&addr, "/readyz") == Some(200)).then_some(())
    });
    assert_eq!(http_status(&addr, "/metrics"), Some(200));

    // The Lease it holds is in the release namespace, under the one name the leader-election Role allows.
    let allowed = find(&objects, "Role")["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["resourceNames"].as_array())
        .flatten()
        .map(|n| text(n).to_owned())
        .collect::<Vec<_>>();
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    let lease = berth_e2e::wait_for("the leader Lease", TOOL_DEADLINE, || {
        let out = server.kubectl(&["-n", namespace, "get", "leases", "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        list["items"]
            .as_array()?
            .iter()
            .find(|l| {
                l["spec"]["holderIdentity"]
                    .as_str()
                    .is_some_and(|h| !h.is_empty())
            })
            .cloned()
    });
    assert_eq!(lease["metadata"]["name"], allowed[0].as_str(), "{lease}");
}

#[test]
fn kustomize_config_default_renders_and_applies() {
    let stream = kustomize("config/default");
    let objects = documents(&stream);
    let names: BTreeSet<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{} {}/{}",
                text(&o["kind"]),
                text(&o["metadata"]["namespace"]),
                text(&o["metadata"]["name"])
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "Namespace /berth-system",
            "CustomResourceDefinition /stacks.berth.dev",
            "ServiceAccount berth-system/berth-controller",
            "ClusterRole /berth-controller",
            "ClusterRoleBinding /berth-controller",
            "Role berth-system/berth-leader-election",
            "RoleBinding berth-system/berth-leader-election",
            "Service berth-system/berth-controller-metrics",
            "Deployment berth-system/berth-controller",
        ]
        .map(String::from)
        .into(),
        "crd + rbac + manager in berth-system with the berth- prefix"
    );
    // The prefix reaches the references too.
    let binding = find(&objects, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "berth-controller");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "berth-controller", "namespace": "berth-system"}])
    );
    let deployment = find(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "berth-controller");
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/berth-dev/berth:0.1.0"
    );
    // The chart's Deployment and this one run the controller the same way.
    let chart = documents(&render(&json!({}), "berth-system"));
    let chart_container = &find(&chart, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    for field in [
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "resources",
    ] {
        assert_eq!(
            pod["containers"][0][field], chart_container[field],
            "config/manager and the chart differ in {field}"
        );
    }
    assert_eq!(
        pod["securityContext"],
        find(&chart, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    );

    let monitor = documents(&kustomize("config/prometheus"));
    let monitor = find(&monitor, "ServiceMonitor");
    let service = find(&objects, "Service");
    assert!(
        monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
            .iter()
            .all(|(k, v)| service["metadata"]["labels"][k] == *v),
        "config/prometheus selects the metrics Service: {monitor}"
    );

    let server = Server::start();
    apply_and_read_back(&server, &stream);
    stack_crd_serves(&server, "default");
}

// ---------------------------------------------------------------------------------------------------------------
// Argo CD health check

fn argocd_dir() -> PathBuf {
    repo().join("gitops/argocd")
}

/// The Lua interpreters to test with: 5.1 is the language Argo CD's gopher-lua implements, 5.4 the current one.
/// Installed with apt when missing (idempotent; apt's own lock serialises concurrent runs).
fn lua_interpreters() -> [&'static str; 2] {
    // Debian names each interpreter's package after its binary.
    const WANTED: [&str; 2] = ["lua5.1", "lua5.4"];
    let present = |bin: &str| {
        Command::new(bin)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = WANTED.iter().copied().filter(|bin| !present(bin)).collect();
    if !missing.is_empty() {
        let install = |missing: &[&str]| {
            let mut command = Command::new("apt-get");
            command
                .args(["install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300"])
                .args(missing)
                .env("DEBIAN_FRONTEND", "noninteractive");
            run(command, "apt-get install", APT_DEADLINE)
        };
        let (status, _, _) = install(&missing);
        if !status.success() {
            // Stale package lists: refresh them once and try again.
            let mut update = Command::new("apt-get");
            update.args(["update", "-qq", "-o", "DPkg::Lock::Timeout=300"]);
            run(update, "apt-get update", APT_DEADLINE);
            let (status, stdout, stderr) = install(&missing);
            assert!(
                status.success(),
                "installing {missing:?} failed:\n{stdout}{stderr}"
            );
        }
    }
    WANTED
}

/// A JSON value as a Lua expression, the way Argo CD hands objects to its scripts: objects and arrays become
/// tables (arrays 1-based), null becomes nil.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs health.lua on `object` with `lua`; returns (hs.status, hs.message).
fn health(lua: &str, script: &Path, object: &Value) -> (String, String) {
    let dir = tempfile::Builder::new()
        .prefix("berth-lua-")
        .tempdir()
        .expect("creating a scratch directory");
    let runner = dir.path().join("runner.lua");
    std::fs::write(
        &runner,
        format!(
            "obj = {}\nlocal hs = dofile({})\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
            lua_literal(object),
            lua_string(script.to_str().expect("a UTF-8 path")),
        ),
    )
    .expect("writing the runner");
    let mut command = Command::new(lua);
    command.arg(&runner);
    let (status, stdout, stderr) = run(command, lua, TOOL_DEADLINE);
    assert!(status.success(), "{lua} failed on {object}: {stderr}");
    let (status, message) = stdout
        .split_once('\n')
        .unwrap_or_else(|| panic!("{lua} printed {stdout:?}"));
    (status.to_owned(), message.to_owned())
}

#[test]
fn argocd_health_check_follows_kstatus_on_sample_stacks() {
    let check = argocd_dir().join("resource_customizations/berth.dev/Stack");
    let script = check.join("health.lua");
    let cases = yaml_file(&check.join("health_test.yaml"));
    let cases = cases["tests"]
        .as_array()
        .expect("health_test.yaml has tests");
    let statuses: BTreeSet<&str> = cases
        .iter()
        .map(|c| text(&c["healthStatus"]["status"]))
        .collect();
    assert_eq!(
        statuses,
        ["Degraded", "Healthy", "Progressing"].into(),
        "the samples cover every health the script gives"
    );
    for lua in lua_interpreters() {
        for case in cases {
            let input = text(&case["inputPath"]);
            let object = yaml_file(&check.join(input));
            let got = health(lua, &script, &object);
            let want = &case["healthStatus"];
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                (text(&want["status"]), text(&want["message"])),
                "{lua} on {input}"
            );
        }
        // The same Stack flips with its status: Healthy, then Progressing the moment its spec changes.
        let mut stack = yaml_file(&check.join("testdata/healthy.yaml"));
        assert_eq!(health(lua, &script, &stack).0, "Healthy");
        stack["metadata"]["generation"] = json!(3);
        assert_eq!(health(lua, &script, &stack).0, "Progressing");
        stack["status"]["observedGeneration"] = json!(3);
        assert_eq!(health(lua, &script, &stack).0, "Healthy");
    }
}

#[test]
fn argocd_configmap_carries_the_health_check_verbatim() {
    let config = yaml_file(&argocd_dir().join("argocd-cm.yaml"));
    assert_eq!(config["kind"], "ConfigMap");
    assert_eq!(config["metadata"]["name"], "argocd-cm");
    let script = std::fs::read_to_string(
        argocd_dir().join("resource_customizations/berth.dev/Stack/health.lua"),
    )
    .expect("reading health.lua");
    assert_eq!(
        text(&config["data"]["resource.customizations.health.berth.dev_Stack"]),
        script,
        "gitops/argocd/argocd-cm.yaml must carry health.lua unchanged"
    );
}
