//! Helm against `berth apiserver`: install, upgrade, rollback and uninstall of the chart in e2e/helm/chart, driven by
//! Helm's own engine. No helm binary is packaged anywhere we can install from, so e2e/helm/drive.py calls
//! helm-python-sdk, which carries Helm v4's Go SDK (with client-go) as a shared library; e2e/helm/setup.sh puts
//! it in a cached virtualenv (target/helm-venv, or `$BERTH_HELM_VENV`).
//!
//! Helm 4 installs and upgrades with server-side apply and keeps each release revision in a Secret labelled
//! `owner=helm` that it finds again by label selector. A release that Helm 3 installed records no apply method,
//! and Helm 4 upgrades it the Helm 3 way: client-side, with three-way strategic merge patches. Helm's client-go
//! (0.32 and later) writes the release Secrets, and deletes them, with protobuf bodies, which berth decodes
//! (operator/apiserver/src/protobuf). Each test starts its own server. The last test installs berth's own chart,
//! charts/berth, into `berth up`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_e2e::{Server, wait_for};
use serde_json::{Value, json};

/// How long one Helm action may take (the driver gives Helm's engine 60 s of its own).
const HELM_DEADLINE: Duration = Duration::from_secs(120);
/// How long objects may take to disappear after Helm deleted them.
const DEADLINE: Duration = Duration::from_secs(30);

/// The chart's objects after install, as `kind name` for kubectl, given the release name.
fn chart_objects(release: &str) -> Vec<(&'static str, String)> {
    vec![
        ("configmap", format!("{release}-config")),
        ("secret", format!("{release}-secret")),
        ("serviceaccount", format!("{release}-sa")),
        (
            "role.rbac.authorization.k8s.io",
            format!("{release}-reader"),
        ),
        (
            "rolebinding.rbac.authorization.k8s.io",
            format!("{release}-reader"),
        ),
        ("deployment.apps", format!("{release}-web")),
        ("service", format!("{release}-web")),
    ]
}

fn helm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm")
}

/// The virtualenv's python, after e2e/helm/setup.sh made sure the SDK is in it (quick once cached).
fn helm_python() -> PathBuf {
    let venv = std::env::var_os("BERTH_HELM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Server::repo_root().join("target"))
                .join("helm-venv")
        });
    let out = Command::new("bash")
        .arg(helm_dir().join("setup.sh"))
        .arg(&venv)
        .stdin(Stdio::null())
        .output()
        .expect("running e2e/helm/setup.sh");
    assert!(
        out.status.success(),
        "e2e/helm/setup.sh {} failed:\n{}{}",
        venv.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    venv.join("bin/python")
}

/// Helm's engine against one server, in one namespace. Each run's output and Helm's debug log are kept in
/// the server's data directory and shown when an action fails.
struct Helm<'a> {
    server: &'a Server,
    python: PathBuf,
    chart: PathBuf,
    namespace: &'a str,
    runs: std::cell::Cell<u32>,
}

/// What the driver printed for one action.
struct Run {
    ok: bool,
    result: Value,
    log: String,
}

impl<'a> Helm<'a> {
    /// Helm with the test chart, e2e/helm/chart.
    fn new(server: &'a Server, namespace: &'a str) -> Self {
        Helm::with_chart(server, namespace, helm_dir().join("chart"))
    }

    fn with_chart(server: &'a Server, namespace: &'a str, chart: PathBuf) -> Self {
        Helm {
            server,
            python: helm_python(),
            chart,
            namespace,
            runs: std::cell::Cell::new(0),
        }
    }

    /// Runs one action; `flags` go to the driver as they are (`--revision N`).
    fn run(&self, action: &str, release: &str, values: &Value, flags: &[&str]) -> Run {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let dir = self.server.data_dir.path();
        let out_path = dir.join(format!("helm-{n}-{action}.out"));
        let log_path = dir.join(format!("helm-{n}-{action}.log"));
        let home = dir.join("helm-home");
        let mut child = Command::new(&self.python)
            .arg(helm_dir().join("drive.py"))
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .arg("--namespace")
            .arg(self.namespace)
            .arg("--chart")
            .arg(&self.chart)
            .arg("--values")
            .arg(values.to_string())
            .args(flags)
            .arg(action)
            .arg(release)
            // Helm's caches and client-go's discovery cache stay in this server's directory: a port reused
            // from an earlier run must not answer from a stale cache.
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECACHEDIR", home.join("kube-cache"))
            .env("HELM_DRIVE_DEBUG", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("creating the driver's output file"))
            .stderr(File::create(&log_path).expect("creating the driver's log file"))
            .spawn()
            .expect("running e2e/helm/drive.py");
        let status = match wait_for_exit(&mut child) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "helm {action} {release} did not finish within {HELM_DEADLINE:?}; Helm's log:\n{}",
                    tail(&std::fs::read_to_string(&log_path).unwrap_or_default())
                );
            }
        };
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let result = serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
            panic!(
                "helm {action} {release} printed no JSON ({err}; exit {status}): {stdout}\nHelm's log:\n{}",
                tail(&log)
            )
        });
        Run {
            ok: status.success(),
            result,
            log,
        }
    }

    /// Runs an action that must succeed and returns the SDK's result.
    fn ok(&self, action: &str, release: &str, values: &Value, flags: &[&str]) -> Value {
        let run = self.run(action, release, values, flags);
        assert!(
            run.ok,
            "helm {action} {release} failed against berth: {}\nHelm's log (last lines):\n{}",
            run.result,
            tail(&run.log)
        );
        run.result
    }

    fn install(&self, release: &str, values: &Value) -> Value {
        self.ok("install", release, values, &[])
    }

    fn upgrade(&self, release: &str, values: &Value) -> Value {
        self.ok("upgrade", release, values, &[])
    }

    /// Rolls back to `revision` and returns the release's status after.
    fn rollback(&self, release: &str, revision: u32) -> Value {
        let revision = revision.to_string();
        self.ok(
            "rollback",
            release,
            &json!({}),
            &["--revision", revision.as_str()],
        )
    }

    fn uninstall(&self, release: &str) -> Value {
        self.ok("uninstall", release, &json!({}), &[])
    }

    fn history(&self, release: &str) -> Vec<Value> {
        match self.ok("history", release, &json!({}), &[]) {
            Value::Array(revisions) => revisions,
            other => panic!("helm history printed {other}"),
        }
    }
}

fn wait_for_exit(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the driver") {
            return Some(status);
        }
        if start.elapsed() > HELM_DEADLINE {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last lines of a log, enough to show the failing request.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One object as JSON (managedFields included), or None when it does not exist. An empty namespace is for
/// cluster-scoped kinds.
fn get(server: &Server, namespace: &str, kind: &str, name: &str) -> Option<Value> {
    let mut args = vec![
        "get",
        kind,
        name,
        "--ignore-not-found",
        "--show-managed-fields",
        "-o",
        "json",
    ];
    if !namespace.is_empty() {
        args.extend(["-n", namespace]);
    }
    let out = server.kubectl_ok(&args);
    if out.trim().is_empty() {
        return None;
    }
    Some(serde_json::from_str(&out).expect("kubectl printed JSON"))
}

fn must_get(server: &Server, namespace: &str, kind: &str, name: &str) -> Value {
    get(server, namespace, kind, name)
        .unwrap_or_else(|| panic!("{kind} {namespace}/{name} should exist after the Helm action"))
}

fn wait_gone(server: &Server, namespace: &str, kind: &str, name: &str) {
    wait_for(
        &format!("{kind} {namespace}/{name} to be deleted"),
        DEADLINE,
        || get(server, namespace, kind, name).is_none().then_some(()),
    );
}

/// The release Secrets Helm keeps for a release, found as Helm finds them: by label selector.
fn release_secrets(server: &Server, namespace: &str, release: &str) -> Vec<Value> {
    let out = server.kubectl_ok(&[
        "-n",
        namespace,
        "get",
        "secrets",
        "-l",
        &format!("owner=helm,name={release}"),
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).expect("kubectl printed JSON");
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|s| {
        s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    items
}

/// `name status` of each release Secret, e.g. `sh.helm.release.v1.web.v1 deployed`.
fn release_states(server: &Server, namespace: &str, release: &str) -> Vec<String> {
    release_secrets(server, namespace, release)
        .iter()
        .map(|s| {
            assert_eq!(s["type"], "helm.sh/release.v1", "{s}");
            format!(
                "{} {}",
                text(&s["metadata"]["name"]),
                text(&s["metadata"]["labels"]["status"])
            )
        })
        .collect()
}

/// `manager/Operation` of each managedFields entry.
fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| format!("{}/{}", text(&e["manager"]), text(&e["operation"])))
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The container's env var names, in order.
fn env_names(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .map(|env| env.iter().map(|e| text(&e["name"]).to_owned()).collect())
        .unwrap_or_default()
}

/// What install, upgrade, rollback and uninstall must do to the chart's objects. With `as_helm3`, the stored release is
/// rewritten after install as Helm 3 stored it, so the upgrade goes through client-side apply (three-way
/// strategic merge patches) instead of server-side apply.
fn install_upgrade_uninstall(namespace: &str, release: &str, as_helm3: bool) {
    let server = Server::start();
    let helm = Helm::new(&server, namespace);

    // Install (into a namespace Helm creates): every object of the chart, with the chart's defaults.
    let installed = helm.install(release, &json!({}));
    assert_eq!(installed["status"], "deployed", "{installed}");
    assert_eq!(installed["revision"], 1, "{installed}");
    must_get(&server, "", "namespace", namespace);
    for (kind, name) in chart_objects(release) {
        let object = must_get(&server, namespace, kind, &name);
        let meta = &object["metadata"];
        assert_eq!(
            meta["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{object}"
        );
        assert_eq!(
            meta["annotations"]["meta.helm.sh/release-name"], release,
            "{object}"
        );
        assert_eq!(
            meta["annotations"]["meta.helm.sh/release-namespace"], namespace,
            "{object}"
        );
        // Helm 4 creates with server-side apply.
        assert!(
            managers(&object).iter().any(|m| m.ends_with("/Apply")),
            "{kind} {name} should be managed by Helm's apply: {:?}",
            managers(&object)
        );
    }
    let config = must_get(
        &server,
        namespace,
        "configmap",
        &format!("{release}-config"),
    );
    assert_eq!(config["data"]["greeting"], "hello");
    let secret = must_get(&server, namespace, "secret", &format!("{release}-secret"));
    assert_eq!(
        secret["data"],
        json!({"password": "czNjcmV0", "username": "YWRtaW4="}),
        "data plus stringData folded in: {secret}"
    );
    assert!(secret.get("stringData").is_none(), "{secret}");
    let deployment = must_get(
        &server,
        namespace,
        "deployment.apps",
        &format!("{release}-web"),
    );
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/library/nginx:1.27"
    );
    assert_eq!(env_names(&deployment), ["DEBUG", "GREETING", "PASSWORD"]);
    let deployment_uid = text(&deployment["metadata"]["uid"]).to_owned();
    assert_eq!(
        release_states(&server, namespace, release),
        [format!("sh.helm.release.v1.{release}.v1 deployed")]
    );

    // Another manager's change that Helm must leave alone on upgrade.
    server.kubectl_ok(&[
        "-n",
        namespace,
        "label",
        "configmap",
        &format!("{release}-config"),
        "team=payments",
    ]);

    if as_helm3 {
        // The release as Helm 3 stored it: no apply method, so Helm 4 upgrades it client-side.
        let name = format!("sh.helm.release.v1.{release}.v1");
        let stored = must_get(&server, namespace, "secret", &name);
        let rewritten = run_driver_filter(&helm.python, &stored.to_string());
        let out =
            server.kubectl_with_stdin(&["-n", namespace, "replace", "-f", "-"], Some(&rewritten));
        assert!(
            out.status.success(),
            "kubectl replace of the release Secret failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Upgrade with changed values: data, replicas and image change in place, DEBUG leaves the Deployment, and
    // the Role and RoleBinding, gone from the rendered chart, are deleted.
    let upgraded = helm.upgrade(
        release,
        &json!({
            "greeting": "bonjour",
            "replicas": 3,
            "image": {"tag": "1.28"},
            "debug": false,
            "rbac": {"create": false},
        }),
    );
    assert_eq!(upgraded["status"], "deployed", "{upgraded}");
    assert_eq!(upgraded["revision"], 2, "{upgraded}");
    let config = must_get(
        &server,
        namespace,
        "configmap",
        &format!("{release}-config"),
    );
    assert_eq!(config["data"]["greeting"], "bonjour");
    assert_eq!(
        config["data"]["index.html"],
        format!("<h1>bonjour from {release}</h1>\n")
    );
    assert_eq!(
        config["metadata"]["labels"]["team"], "payments",
        "another manager's label survives the upgrade: {config}"
    );
    let deployment = must_get(
        &server,
        namespace,
        "deployment.apps",
        &format!("{release}-web"),
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/library/nginx:1.28"
    );
    assert_eq!(env_names(&deployment), ["GREETING", "PASSWORD"]);
    assert_eq!(
        deployment["metadata"]["uid"], deployment_uid,
        "upgraded in place, not recreated"
    );
    if as_helm3 {
        assert!(
            managers(&deployment).iter().any(|m| m.ends_with("/Update")),
            "a client-side upgrade patches (an Update): {:?}",
            managers(&deployment)
        );
    }
    wait_gone(
        &server,
        namespace,
        "role.rbac.authorization.k8s.io",
        &format!("{release}-reader"),
    );
    wait_gone(
        &server,
        namespace,
        "rolebinding.rbac.authorization.k8s.io",
        &format!("{release}-reader"),
    );
    must_get(
        &server,
        namespace,
        "serviceaccount",
        &format!("{release}-sa"),
    );
    must_get(&server, namespace, "service", &format!("{release}-web"));
    assert_eq!(
        release_states(&server, namespace, release),
        [
            format!("sh.helm.release.v1.{release}.v1 superseded"),
            format!("sh.helm.release.v1.{release}.v2 deployed"),
        ]
    );
    let history = helm.history(release);
    let revisions: Vec<String> = history
        .iter()
        .map(|r| format!("{} {}", r["revision"], text(&r["status"])))
        .collect();
    assert_eq!(revisions, ["1 superseded", "2 deployed"]);

    // Rollback to revision 1: a third revision with the first one's objects, the Role and RoleBinding back.
    let rolled_back = helm.rollback(release, 1);
    assert_eq!(rolled_back["status"], "deployed", "{rolled_back}");
    assert_eq!(rolled_back["revision"], 3, "{rolled_back}");
    let config = must_get(
        &server,
        namespace,
        "configmap",
        &format!("{release}-config"),
    );
    assert_eq!(config["data"]["greeting"], "hello");
    let deployment = must_get(
        &server,
        namespace,
        "deployment.apps",
        &format!("{release}-web"),
    );
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/library/nginx:1.27"
    );
    assert_eq!(env_names(&deployment), ["DEBUG", "GREETING", "PASSWORD"]);
    assert_eq!(deployment["metadata"]["uid"], deployment_uid);
    for kind in [
        "role.rbac.authorization.k8s.io",
        "rolebinding.rbac.authorization.k8s.io",
    ] {
        must_get(&server, namespace, kind, &format!("{release}-reader"));
    }
    assert_eq!(
        release_states(&server, namespace, release),
        [
            format!("sh.helm.release.v1.{release}.v1 superseded"),
            format!("sh.helm.release.v1.{release}.v2 superseded"),
            format!("sh.helm.release.v1.{release}.v3 deployed"),
        ]
    );

    // Uninstall: the objects and the release's history go; the namespace Helm created stays, as upstream.
    helm.uninstall(release);
    for (kind, name) in chart_objects(release) {
        wait_gone(&server, namespace, kind, &name);
    }
    assert_eq!(
        release_states(&server, namespace, release),
        Vec::<String>::new()
    );
    let status = helm.run("status", release, &json!({}), &[]);
    assert!(
        !status.ok && status.result["error"] == "HelmNotFoundError",
        "the release should be gone: {}",
        status.result
    );
    must_get(&server, "", "namespace", namespace);
}

/// `drive.py as-helm3`: the release Secret rewritten as Helm 3 stored it.
fn run_driver_filter(python: &Path, secret: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(python)
        .arg(helm_dir().join("drive.py"))
        .arg("as-helm3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running drive.py as-helm3");
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(secret.as_bytes())
        .expect("writing the release Secret");
    let out = child.wait_with_output().expect("waiting for drive.py");
    assert!(
        out.status.success(),
        "drive.py as-helm3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("JSON is UTF-8")
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_a_chart_with_server_side_apply() {
    install_upgrade_uninstall("shop", "web", false);
}

#[test]
fn helm_upgrades_a_helm3_release_with_three_way_strategic_merge_patches() {
    install_upgrade_uninstall("legacy", "old", true);
}

/// berth's own chart (charts/berth) against `berth up`: install creates the controller's Deployment, its RBAC,
/// the metrics Service and the CRD (which `berth up` already serves: Helm's apply takes it over); an upgrade
/// changes the Deployment in place; uninstall removes everything but the CRD, which the chart keeps
/// (`helm.sh/resource-policy: keep`) so that no Stack is lost with the release. `berth up` runs no Deployment
/// controller, so the controller Pods themselves are not started here (e2e/tests/chart.rs runs the chart's
/// controller command on its own).
#[test]
fn berths_chart_installs_upgrades_and_uninstalls_against_berth_up() {
    let server = Server::start_up(&["--disable-agent"]);
    let namespace = "berth-system";
    let release = "berth";
    let helm = Helm::with_chart(&server, namespace, Server::repo_root().join("charts/berth"));
    let objects = [
        ("serviceaccount", namespace, "berth"),
        ("deployment.apps", namespace, "berth-controller"),
        ("service", namespace, "berth-metrics"),
        (
            "role.rbac.authorization.k8s.io",
            namespace,
            "berth-leader-election",
        ),
        (
            "rolebinding.rbac.authorization.k8s.io",
            namespace,
            "berth-leader-election",
        ),
        (
            "clusterrole.rbac.authorization.k8s.io",
            "",
            "berth-controller",
        ),
        (
            "clusterrolebinding.rbac.authorization.k8s.io",
            "",
            "berth-controller",
        ),
    ];
    let crd = "customresourcedefinition.apiextensions.k8s.io";
    let crd_name = "stacks.berth.dev";

    let installed = helm.install(release, &json!({}));
    assert_eq!(installed["status"], "deployed", "{installed}");
    for (kind, ns, name) in objects {
        let object = must_get(&server, ns, kind, name);
        assert_eq!(
            object["metadata"]["annotations"]["meta.helm.sh/release-name"], release,
            "{object}"
        );
    }
    let deployment = must_get(&server, namespace, "deployment.apps", "berth-controller");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--leader-elect"), "{args}");
    let definition = must_get(&server, "", crd, crd_name);
    assert_eq!(
        definition["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "{definition}"
    );
    // The CRD Helm applied still serves Stacks.
    server.kubectl_ok(&["get", "stacks", "-A"]);

    let upgraded = helm.upgrade(release, &json!({"replicaCount": 2, "logLevel": "debug"}));
    assert_eq!(upgraded["revision"], 2, "{upgraded}");
    let after = must_get(&server, namespace, "deployment.apps", "berth-controller");
    assert_eq!(after["spec"]["replicas"], 2);
    assert_eq!(after["metadata"]["uid"], deployment["metadata"]["uid"]);
    let env = after["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("debug"), "RUST_LOG follows logLevel: {env}");

    helm.uninstall(release);
    for (kind, ns, name) in objects {
        wait_gone(&server, ns, kind, name);
    }
    must_get(&server, "", crd, crd_name);
    server.kubectl_ok(&["get", "stacks", "-A"]);
}
