//! The real kubectl against `berth apiserver`: the CRD from crds/, the sample Stack, ConfigMaps, watches,
//! conflicts, selectors, finalizers, restarts, bad input and authentication, as a user would drive them.
//! Every test starts its own server (own port, own data directory) and waits on conditions, never on time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_e2e::{Server, kubectl_bin, wait_for};
use serde_json::Value;

/// How long a condition may take to become true.
const DEADLINE: Duration = Duration::from_secs(30);
const STACK_CRD: &str = "crd/stacks.berth.dev";
/// Oldest and newest kubectl minor versions berth promises to work with.
const KUBECTL_MINORS: std::ops::RangeInclusive<u32> = 27..=33;

/// The harness's kubectl (one binary against one server, with a discovery cache of its own: kubectl caches
/// discovery per host:port under ~/.kube/cache, and a port reused from an earlier run must not answer with stale
/// resources), and this file's shorthands.
struct Kubectl {
    kubectl: berth_e2e::Kubectl,
}

impl std::ops::Deref for Kubectl {
    type Target = berth_e2e::Kubectl;

    fn deref(&self) -> &berth_e2e::Kubectl {
        &self.kubectl
    }
}

impl Kubectl {
    fn new(server: &Server) -> Self {
        Kubectl::with_bin(server, kubectl_bin())
    }

    fn with_bin(server: &Server, bin: PathBuf) -> Self {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Kubectl {
            kubectl: berth_e2e::Kubectl::with_bin(server, bin, &name),
        }
    }

    /// Like `fails` at `-v=6`, which logs every response's status line; asserts one of them is `status`
    /// (for example "422 Unprocessable Entity") and returns stderr.
    fn fails_with_status(&self, args: &[&str], stdin: Option<&str>, status: &str) -> String {
        let mut verbose = vec!["-v=6"];
        verbose.extend_from_slice(args);
        let stderr = self.fails(&verbose, stdin);
        assert!(
            stderr.lines().any(|l| l.contains(status)),
            "kubectl {} should have received {status}; stderr: {stderr}",
            args.join(" ")
        );
        stderr
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with_output = args.to_vec();
        with_output.extend_from_slice(&["-o", "json"]);
        let text = self.ok(&with_output);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("kubectl {} printed no JSON ({e}): {text}", args.join(" ")))
    }

    /// The names printed by `-o name` (`configmap/a` → `a`).
    fn names(&self, args: &[&str]) -> BTreeSet<String> {
        let mut with_output = args.to_vec();
        with_output.extend_from_slice(&["-o", "name"]);
        parse_names(&self.ok(&with_output))
    }

    /// Whether `kubectl get` reports the object as NotFound (any other failure fails the test).
    fn is_gone(&self, kind_and_name: &[&str]) -> bool {
        let mut args = vec!["get"];
        args.extend_from_slice(kind_and_name);
        let out = self.run(&args, None);
        if out.status.success() {
            return false;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("NotFound"),
            "kubectl {} failed other than NotFound: {stderr}",
            args.join(" ")
        );
        true
    }

    /// `kubectl apply -f crds/` and wait until the Stack CRD is Established.
    fn install_crd(&self) {
        let out = self.ok(&["apply", "-f", &path_arg(&repo_path("crds"))]);
        assert!(
            out.contains("stacks.berth.dev"),
            "kubectl apply -f crds/ did not name the CRD: {out}"
        );
        self.ok(&[
            "wait",
            "--for=condition=Established",
            STACK_CRD,
            "--timeout=30s",
        ]);
    }

    fn apply_sample(&self) {
        let out = self.ok(&["apply", "-f", &sample_stack()]);
        assert!(
            out.contains("stack.berth.dev/demo"),
            "applying the sample printed {out}"
        );
    }
}

fn repo_path(relative: &str) -> PathBuf {
    Server::repo_root().join(relative)
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn sample_stack() -> String {
    path_arg(&repo_path("config/samples/stack.yaml"))
}

fn parse_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn configmap_yaml(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> String {
    let mut yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    if !labels.is_empty() {
        yaml.push_str("  labels:\n");
        for (k, v) in labels {
            yaml.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    if !data.is_empty() {
        yaml.push_str("data:\n");
        for (k, v) in data {
            yaml.push_str(&format!("  {k}: \"{v}\"\n"));
        }
    }
    yaml
}

fn stack_yaml(name: &str, labels: &[(&str, &str)]) -> String {
    let mut yaml =
        format!("apiVersion: berth.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: {name}\n");
    if !labels.is_empty() {
        yaml.push_str("  labels:\n");
        for (k, v) in labels {
            yaml.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    yaml.push_str("spec:\n  app:\n    image: busybox:latest\n");
    yaml
}

fn resource_version(object: &Value) -> u64 {
    let rv = object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.resourceVersion in {object}"));
    rv.parse()
        .unwrap_or_else(|e| panic!("resourceVersion {rv:?} is not a number berth issues: {e}"))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

/// The resourceVersion of a ConfigMap list straight from the server (kubectl's `-o json` of a list is a
/// client-side `List` without one).
fn list_resource_version(k: &Kubectl) -> u64 {
    let text = k.ok(&["get", "--raw", "/api/v1/configmaps"]);
    let list: Value = serde_json::from_str(&text).expect("a ConfigMapList");
    resource_version(&list)
}

/// The server still serves reads after whatever a test sent it.
fn assert_still_answers(k: &Kubectl) {
    let version = k.ok(&["get", "--raw", "/version"]);
    assert!(
        version.contains("gitVersion"),
        "/version after bad input: {version}"
    );
    let namespaces = k.names(&["get", "namespaces"]);
    assert!(
        namespaces.contains("default"),
        "kubectl get namespaces after bad input: {namespaces:?}"
    );
}

#[test]
fn crd_from_crds_dir_becomes_established() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.install_crd();

    let crd = k.json(&["get", STACK_CRD]);
    let conditions = crd["status"]["conditions"]
        .as_array()
        .expect("the CRD has status.conditions");
    for wanted in ["Established", "NamesAccepted"] {
        let condition = conditions
            .iter()
            .find(|c| c["type"] == wanted)
            .unwrap_or_else(|| panic!("no {wanted} condition in {conditions:?}"));
        assert_eq!(
            condition["status"], "True",
            "{wanted} condition: {condition}"
        );
    }
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Stack");

    // Applying the same directory again changes nothing.
    let again = k.ok(&["apply", "-f", &path_arg(&repo_path("crds"))]);
    assert!(
        again.contains("unchanged"),
        "re-applying crds/ printed {again}"
    );
}

#[test]
fn api_resources_lists_stacks_with_short_name_and_categories() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.install_crd();

    let wide = k.ok(&["api-resources", "-o", "wide"]);
    let line = wide
        .lines()
        .find(|l| l.split_whitespace().next() == Some("stacks"))
        .unwrap_or_else(|| panic!("kubectl api-resources does not list stacks:\n{wide}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    // NAME SHORTNAMES APIVERSION NAMESPACED KIND VERBS CATEGORIES
    assert_eq!(
        columns.len(),
        7,
        "unexpected api-resources line for stacks: {line}"
    );
    assert_eq!(columns[1], "st", "short names: {line}");
    assert_eq!(columns[2], "berth.dev/v1alpha1", "{line}");
    assert_eq!(columns[3], "true", "stacks are namespaced: {line}");
    assert_eq!(columns[4], "Stack", "{line}");
    let verbs: BTreeSet<&str> = columns[5].split(',').collect();
    for verb in [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ] {
        assert!(verbs.contains(verb), "verb {verb} missing: {line}");
    }
    let categories: BTreeSet<&str> = columns[6].split(',').collect();
    assert_eq!(categories, BTreeSet::from(["all", "berth"]), "{line}");

    let by_group = k.ok(&["api-resources", "--api-group=berth.dev", "-o", "name"]);
    assert_eq!(by_group.trim(), "stacks.berth.dev");

    k.apply_sample();
    for (how, args) in [
        ("short name", vec!["get", "st"]),
        ("plural", vec!["get", "stacks"]),
        ("singular", vec!["get", "stack"]),
        ("fully qualified", vec!["get", "stacks.v1alpha1.berth.dev"]),
        ("category berth", vec!["get", "berth"]),
        ("category all", vec!["get", "all"]),
    ] {
        let out = k.ok(&[&args[..], &["-o", "name"]].concat());
        assert!(
            out.lines().any(|l| l == "stack.berth.dev/demo"),
            "kubectl {} ({how}) does not show the sample Stack: {out}",
            args.join(" ")
        );
    }
}

#[test]
fn sample_stack_apply_get_yaml_json_delete() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.install_crd();

    let created = k.ok(&["apply", "-f", &sample_stack()]);
    assert_eq!(created.trim(), "stack.berth.dev/demo created");
    let unchanged = k.ok(&["apply", "-f", &sample_stack()]);
    assert_eq!(unchanged.trim(), "stack.berth.dev/demo unchanged");

    let table = k.ok(&["get", "stacks"]);
    assert!(
        table.lines().any(|l| l.starts_with("demo ")),
        "kubectl get stacks: {table}"
    );

    // Schema defaults appear in both output formats.
    let yaml_text = k.ok(&["get", "stack", "demo", "-o", "yaml"]);
    let from_yaml: Value = serde_yaml::from_str(&yaml_text).expect("kubectl -o yaml prints YAML");
    let from_json = k.json(&["get", "stack", "demo"]);
    for stack in [&from_yaml, &from_json] {
        assert_eq!(stack["apiVersion"], "berth.dev/v1alpha1");
        assert_eq!(stack["kind"], "Stack");
        assert_eq!(stack["metadata"]["name"], "demo");
        assert_eq!(stack["metadata"]["namespace"], "default");
        assert_eq!(stack["metadata"]["generation"], 1);
        assert!(!text(&stack["metadata"]["uid"]).is_empty());
        assert_eq!(
            stack["spec"]["app"]["image"],
            "127.0.0.1:5000/berth/demo-app:latest"
        );
        assert_eq!(
            stack["spec"]["app"]["replicas"], 1,
            "default spec.app.replicas: {stack}"
        );
        assert_eq!(
            stack["spec"]["deletionPolicy"], "Retain",
            "default spec.deletionPolicy: {stack}"
        );
        assert_eq!(stack["spec"]["database"]["databaseName"], "demo");
    }
    assert_eq!(from_yaml["metadata"]["uid"], from_json["metadata"]["uid"]);

    // A spec change through client-side apply bumps the generation.
    let sample = std::fs::read_to_string(sample_stack()).expect("reading the sample");
    let changed = sample.replace("demo-app:latest", "demo-app:v2");
    assert_ne!(
        changed, sample,
        "the sample's app image moved; update this test"
    );
    let configured = k.ok_stdin(&["apply", "-f", "-"], Some(&changed));
    assert_eq!(configured.trim(), "stack.berth.dev/demo configured");
    let updated = k.json(&["get", "stack", "demo"]);
    assert_eq!(
        updated["spec"]["app"]["image"],
        "127.0.0.1:5000/berth/demo-app:v2"
    );
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(resource_version(&updated) > resource_version(&from_json));

    let deleted = k.ok(&["delete", "-f", &sample_stack()]);
    assert!(
        deleted.contains("deleted"),
        "kubectl delete printed {deleted}"
    );
    assert!(k.is_gone(&["stack", "demo"]));
    assert!(k.names(&["get", "stacks"]).is_empty());
}

#[test]
fn configmap_from_stdin_apply_get_update_delete() {
    let server = Server::start();
    let k = Kubectl::new(&server);

    let v1 = configmap_yaml(
        "settings",
        &[("app", "shop")],
        &[("mode", "dev"), ("level", "3")],
    );
    let created = k.ok_stdin(&["apply", "-f", "-"], Some(&v1));
    assert_eq!(created.trim(), "configmap/settings created");

    let first = k.json(&["get", "configmap", "settings"]);
    assert_eq!(first["data"]["mode"], "dev");
    assert_eq!(first["data"]["level"], "3");
    assert_eq!(first["metadata"]["labels"]["app"], "shop");
    assert!(
        first["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "client-side apply keeps its annotation: {first}"
    );

    // `kubectl create -f -` (a plain POST of the YAML as JSON) works too, and refuses a duplicate.
    let other = configmap_yaml("other", &[], &[("k", "v")]);
    assert_eq!(
        k.ok_stdin(&["create", "-f", "-"], Some(&other)).trim(),
        "configmap/other created"
    );
    let duplicate = k.fails(&["create", "-f", "-"], Some(&other));
    assert!(
        duplicate.contains("AlreadyExists"),
        "creating a duplicate: {duplicate}"
    );

    assert_eq!(k.names(&["get", "configmaps"]), set(&["other", "settings"]));
    let deleted = k.ok_stdin(&["delete", "-f", "-"], Some(&v1));
    assert_eq!(deleted.trim(), "configmap \"settings\" deleted");
    assert!(k.is_gone(&["configmap", "settings"]));
    assert_eq!(k.names(&["get", "configmaps"]), set(&["other"]));
}

#[test]
fn configmap_reapplied_with_changes_is_updated() {
    // Client-side apply of a changed built-in object sends a strategic merge patch.
    let server = Server::start();
    let k = Kubectl::new(&server);
    let v1 = configmap_yaml(
        "settings",
        &[("app", "shop")],
        &[("mode", "dev"), ("level", "3")],
    );
    k.ok_stdin(&["apply", "-f", "-"], Some(&v1));
    let first = k.json(&["get", "configmap", "settings"]);

    // A key dropped from the manifest is removed, a changed one is updated.
    let v2 = configmap_yaml("settings", &[("app", "shop")], &[("mode", "prod")]);
    let configured = k.ok_stdin(&["apply", "-f", "-"], Some(&v2));
    assert_eq!(configured.trim(), "configmap/settings configured");
    let yaml_text = k.ok(&["get", "cm", "settings", "-o", "yaml"]);
    let second: Value = serde_yaml::from_str(&yaml_text).expect("kubectl -o yaml prints YAML");
    assert_eq!(second["data"], serde_json::json!({"mode": "prod"}));
    assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
    assert!(resource_version(&second) > resource_version(&first));
}

#[test]
fn get_watch_sees_modification_and_deletion() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some(&configmap_yaml("watched", &[], &[("n", "1")])),
    );

    let mut watch = k.watch(&[
        "get",
        "configmap",
        "watched",
        "-w",
        "-o",
        "json",
        "--output-watch-events",
        "--request-timeout=60s",
    ]);
    // kubectl lists first, then watches from the list's resourceVersion: changes after the first event are
    // delivered by the watch.
    let mut events = Vec::new();
    let mut event = |line: &str| -> Option<Value> {
        // kubectl prints one JSON document per event; accept both compact and indented output.
        events.push(line.to_owned());
        let joined = events.join("\n");
        let mut stream = serde_json::Deserializer::from_str(&joined).into_iter::<Value>();
        let value = stream.next()?.ok()?;
        events.clear();
        Some(value)
    };
    let added = watch.wait_line("the initial ADDED event", DEADLINE, &mut event);
    assert_eq!(added["type"], "ADDED", "first event: {added}");
    assert_eq!(added["object"]["metadata"]["name"], "watched");

    k.ok(&["label", "configmap", "watched", "changed=yes"]);
    let modified = watch.wait_line("a MODIFIED event", DEADLINE, &mut event);
    assert_eq!(
        modified["type"], "MODIFIED",
        "event after the label: {modified}"
    );
    assert_eq!(modified["object"]["metadata"]["labels"]["changed"], "yes");
    assert!(resource_version(&modified["object"]) > resource_version(&added["object"]));

    k.ok(&["delete", "configmap", "watched"]);
    let deleted = watch.wait_line("a DELETED event", DEADLINE, &mut event);
    assert_eq!(
        deleted["type"], "DELETED",
        "event after the delete: {deleted}"
    );
    assert_eq!(deleted["object"]["metadata"]["name"], "watched");
}

#[test]
fn get_watch_sees_a_new_stack() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.install_crd();
    k.apply_sample();

    let mut watch = k.watch(&["get", "stacks", "-w", "-o", "name", "--request-timeout=60s"]);
    watch.wait_line("the sample Stack from the initial list", DEADLINE, |l| {
        (l == "stack.berth.dev/demo").then_some(())
    });

    k.ok_stdin(&["apply", "-f", "-"], Some(&stack_yaml("second", &[])));
    watch.wait_line("the new Stack", DEADLINE, |l| {
        (l == "stack.berth.dev/second").then_some(())
    });

    k.ok(&[
        "patch",
        "stack",
        "demo",
        "--type=merge",
        "-p",
        r#"{"spec":{"app":{"replicas":2}}}"#,
    ]);
    watch.wait_line("the patched sample Stack", DEADLINE, |l| {
        (l == "stack.berth.dev/demo").then_some(())
    });
}

#[test]
fn stale_replace_fails_with_conflict() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.install_crd();
    k.apply_sample();

    let stale = server.data_dir.path().join("stale.yaml");
    std::fs::write(&stale, k.ok(&["get", "stack", "demo", "-o", "yaml"]))
        .expect("saving the stale copy");
    k.ok(&["label", "stack", "demo", "changed=yes"]);
    let before = k.json(&["get", "stack", "demo"]);

    let stderr = k.fails_with_status(&["replace", "-f", &path_arg(&stale)], None, "409 Conflict");
    assert!(stderr.contains("Conflict"), "stale replace: {stderr}");
    assert!(
        stderr.contains("the object has been modified"),
        "stale replace: {stderr}"
    );

    // The rejected write changed nothing.
    let after = k.json(&["get", "stack", "demo"]);
    assert_eq!(after["metadata"]["labels"]["changed"], "yes");
    assert_eq!(resource_version(&after), resource_version(&before));

    // The same replace from a fresh copy succeeds, so the conflict came from the resourceVersion.
    let fresh = server.data_dir.path().join("fresh.yaml");
    let fresh_yaml = k
        .ok(&["get", "stack", "demo", "-o", "yaml"])
        .replace("demo-app:latest", "demo-app:v3");
    std::fs::write(&fresh, fresh_yaml).expect("saving the fresh copy");
    let replaced = k.ok(&["replace", "-f", &path_arg(&fresh)]);
    assert_eq!(replaced.trim(), "stack.berth.dev/demo replaced");
    let current = k.json(&["get", "stack", "demo"]);
    assert_eq!(
        current["spec"]["app"]["image"],
        "127.0.0.1:5000/berth/demo-app:v3"
    );
    assert!(resource_version(&current) > resource_version(&after));

    // The same holds for a core kind.
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some(&configmap_yaml("cm", &[], &[("a", "1")])),
    );
    let stale_cm = server.data_dir.path().join("stale-cm.yaml");
    std::fs::write(&stale_cm, k.ok(&["get", "cm", "cm", "-o", "yaml"]))
        .expect("saving the stale ConfigMap");
    k.ok(&["label", "cm", "cm", "changed=yes"]);
    let stderr = k.fails(&["replace", "-f", &path_arg(&stale_cm)], None);
    assert!(
        stderr.contains("Conflict"),
        "stale ConfigMap replace: {stderr}"
    );
    assert!(
        stderr.contains("the object has been modified"),
        "stale ConfigMap replace: {stderr}"
    );
}

#[test]
fn label_and_field_selectors_filter_lists() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    for (name, labels) in [
        ("cm-a", vec![("tier", "a"), ("special", "yes")]),
        ("cm-b", vec![("tier", "b")]),
        ("cm-c", vec![("tier", "c")]),
        ("cm-n", vec![]),
    ] {
        k.ok_stdin(
            &["apply", "-f", "-"],
            Some(&configmap_yaml(name, &labels, &[])),
        );
    }

    let cases: &[(&[&str], &[&str])] = &[
        (&["-l", "tier=a"], &["cm-a"]),
        (&["-l", "tier==b"], &["cm-b"]),
        (&["-l", "tier!=a"], &["cm-b", "cm-c", "cm-n"]),
        (&["-l", "tier in (a,b)"], &["cm-a", "cm-b"]),
        (&["-l", "tier notin (a,b)"], &["cm-c", "cm-n"]),
        (&["-l", "tier"], &["cm-a", "cm-b", "cm-c"]),
        (&["-l", "!tier"], &["cm-n"]),
        (&["-l", "!special"], &["cm-b", "cm-c", "cm-n"]),
        (&["-l", "tier,special=yes"], &["cm-a"]),
        (&["-l", "tier=nothing"], &[]),
        (&["--field-selector", "metadata.name=cm-b"], &["cm-b"]),
        (&["--field-selector", "metadata.name==cm-b"], &["cm-b"]),
        (
            &["--field-selector", "metadata.name!=cm-b"],
            &["cm-a", "cm-c", "cm-n"],
        ),
        (
            &["--field-selector", "metadata.namespace=default"],
            &["cm-a", "cm-b", "cm-c", "cm-n"],
        ),
        (
            &["-l", "tier", "--field-selector", "metadata.name!=cm-a"],
            &["cm-b", "cm-c"],
        ),
    ];
    for (selector, expected) in cases {
        let args = [&["get", "configmaps"], *selector].concat();
        assert_eq!(k.names(&args), set(expected), "kubectl {}", args.join(" "));
    }

    // metadata.namespace across namespaces.
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n"),
    );
    k.ok_stdin(
        &["apply", "-n", "other", "-f", "-"],
        Some(&configmap_yaml("cm-other", &[("tier", "a")], &[])),
    );
    let in_other = k.names(&[
        "get",
        "configmaps",
        "-A",
        "--field-selector",
        "metadata.namespace=other",
    ]);
    assert_eq!(in_other, set(&["cm-other"]));
    let tier_a_everywhere = k.names(&["get", "configmaps", "-A", "-l", "tier=a"]);
    assert_eq!(tier_a_everywhere, set(&["cm-a", "cm-other"]));

    // The same on a custom resource.
    k.install_crd();
    for (name, labels) in [
        ("shop", vec![("env", "prod")]),
        ("blog", vec![("env", "dev")]),
        ("wiki", vec![]),
    ] {
        k.ok_stdin(&["apply", "-f", "-"], Some(&stack_yaml(name, &labels)));
    }
    let stack_cases: &[(&[&str], &[&str])] = &[
        (&["-l", "env=prod"], &["shop"]),
        (&["-l", "env in (prod,dev)"], &["blog", "shop"]),
        (&["-l", "!env"], &["wiki"]),
        (&["-l", "env!=prod"], &["blog", "wiki"]),
        (&["--field-selector", "metadata.name=blog"], &["blog"]),
    ];
    for (selector, expected) in stack_cases {
        let args = [&["get", "stacks"], *selector].concat();
        assert_eq!(k.names(&args), set(expected), "kubectl {}", args.join(" "));
    }

    // An unsupported field is refused rather than ignored.
    let stderr = k.fails(&["get", "configmaps", "--field-selector", "data.k=v"], None);
    assert!(
        stderr.contains("BadRequest") || stderr.contains("field label not supported"),
        "{stderr}"
    );
}

#[test]
fn finalizer_holds_delete_until_removed() {
    let server = Server::start();
    let k = Kubectl::new(&server);

    // A ConfigMap: `delete --wait=false`, then a JSON patch removes the finalizer.
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers:\n  - berth.dev/test\ndata:\n  a: \"1\"\n";
    k.ok_stdin(&["apply", "-f", "-"], Some(held));
    let deleted = k.ok(&["delete", "configmap", "held", "--wait=false"]);
    assert!(
        deleted.contains("deleted"),
        "kubectl delete printed {deleted}"
    );
    let terminating = k.json(&["get", "configmap", "held"]);
    assert!(
        terminating["metadata"]["deletionTimestamp"].is_string(),
        "a deleted object with a finalizer has a deletionTimestamp: {terminating}"
    );
    assert_eq!(
        terminating["metadata"]["finalizers"],
        serde_json::json!(["berth.dev/test"])
    );
    assert!(
        k.names(&["get", "configmaps"]).contains("held"),
        "a terminating object is still listed"
    );
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    wait_for(
        "the ConfigMap to go once its finalizer is removed",
        DEADLINE,
        || k.is_gone(&["configmap", "held"]).then_some(()),
    );

    // A Stack: a blocking `kubectl delete` waits, and returns once a merge patch removes the finalizer.
    k.install_crd();
    k.apply_sample();
    k.ok(&[
        "patch",
        "stack",
        "demo",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["berth.dev/cleanup"]}}"#,
    ]);
    let mut delete = k
        .command(&["delete", "stack", "demo", "--timeout=60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kubectl delete");
    let stack = wait_for("the Stack to get a deletionTimestamp", DEADLINE, || {
        let stack = k.json(&["get", "stack", "demo"]);
        stack["metadata"]["deletionTimestamp"]
            .is_string()
            .then_some(stack)
    });
    assert_eq!(
        stack["metadata"]["finalizers"],
        serde_json::json!(["berth.dev/cleanup"])
    );
    assert!(
        delete.try_wait().expect("polling kubectl delete").is_none(),
        "kubectl delete returned while the finalizer still held the Stack"
    );
    k.ok(&[
        "patch",
        "stack",
        "demo",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let status = wait_for("kubectl delete to return", DEADLINE, || {
        delete.try_wait().expect("polling kubectl delete")
    });
    let output = delete
        .wait_with_output()
        .expect("collecting kubectl delete's output");
    assert!(
        status.success(),
        "kubectl delete failed after the finalizer was removed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(k.is_gone(&["stack", "demo"]));
}

#[test]
fn restart_keeps_objects_and_continues_resource_versions() {
    let mut server = Server::start();
    let before_restart;
    let (stack_uid, cm_uid);
    {
        let k = Kubectl::new(&server);
        k.install_crd();
        k.apply_sample();
        k.ok_stdin(
            &["apply", "-f", "-"],
            Some(&configmap_yaml("kept", &[("a", "b")], &[("key", "value")])),
        );
        let stack = k.json(&["get", "stack", "demo"]);
        let cm = k.json(&["get", "configmap", "kept"]);
        stack_uid = stack["metadata"]["uid"].clone();
        cm_uid = cm["metadata"]["uid"].clone();
        before_restart = list_resource_version(&k);
        assert!(before_restart >= resource_version(&stack).max(resource_version(&cm)));
    }

    server.restart();

    let k = Kubectl::new(&server);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        STACK_CRD,
        "--timeout=30s",
    ]);
    let stack = k.json(&["get", "stack", "demo"]);
    assert_eq!(
        stack["metadata"]["uid"], stack_uid,
        "the Stack's uid after a restart"
    );
    assert_eq!(stack["spec"]["app"]["replicas"], 1);
    let cm = k.json(&["get", "configmap", "kept"]);
    assert_eq!(
        cm["metadata"]["uid"], cm_uid,
        "the ConfigMap's uid after a restart"
    );
    assert_eq!(cm["data"]["key"], "value");
    assert_eq!(
        k.names(&["get", "namespaces"]),
        set(&["default", "kube-node-lease", "kube-public", "kube-system"]),
        "a restart neither loses nor duplicates the default namespaces"
    );
    assert!(list_resource_version(&k) >= before_restart);

    k.ok(&["label", "configmap", "kept", "after=restart"]);
    let relabelled = k.json(&["get", "configmap", "kept"]);
    assert!(
        resource_version(&relabelled) > before_restart,
        "a write after the restart got resourceVersion {} but {before_restart} was issued before it",
        resource_version(&relabelled)
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some(&configmap_yaml("new", &[], &[])),
    );
    let new = k.json(&["get", "configmap", "new"]);
    assert!(resource_version(&new) > resource_version(&relabelled));
}

#[test]
fn invalid_name_is_rejected_with_422_naming_the_field() {
    let server = Server::start();
    let k = Kubectl::new(&server);

    let bad = configmap_yaml("Bad_Name", &[], &[("a", "b")]);
    let stderr = k.fails_with_status(
        &["create", "-f", "-"],
        Some(&bad),
        "422 Unprocessable Entity",
    );
    assert!(stderr.contains("is invalid"), "{stderr}");
    assert!(
        stderr.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{stderr}"
    );
    let stderr = k.fails(&["apply", "-f", "-"], Some(&bad));
    assert!(
        stderr.contains("metadata.name"),
        "kubectl apply of an invalid name: {stderr}"
    );

    k.install_crd();
    let bad_stack = stack_yaml("Bad.Stack-", &[]);
    let stderr = k.fails_with_status(
        &["create", "-f", "-"],
        Some(&bad_stack),
        "422 Unprocessable Entity",
    );
    assert!(stderr.contains("metadata.name"), "{stderr}");

    assert!(
        k.names(&["get", "configmaps"]).is_empty(),
        "nothing was stored"
    );
    assert!(k.names(&["get", "stacks"]).is_empty(), "nothing was stored");
    assert_still_answers(&k);
}

#[test]
fn invalid_error_names_the_kind_as_upstream_does() {
    // Upstream builds 422s with errors.NewInvalid(GroupKind, ..): details.kind is the Kind, and kubectl prints
    // `The ConfigMap "Bad_Name" is invalid`, `The Stack "x" is invalid` from it.
    let server = Server::start();
    let k = Kubectl::new(&server);
    let stderr = k.fails(
        &["create", "-f", "-"],
        Some(&configmap_yaml("Bad_Name", &[], &[])),
    );
    assert!(
        stderr.contains("The ConfigMap \"Bad_Name\" is invalid"),
        "{stderr}"
    );

    k.install_crd();
    let stderr = k.fails(
        &["create", "-f", "-"],
        Some("apiVersion: berth.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: noapp\nspec: {}\n"),
    );
    assert!(
        stderr.contains("The Stack \"noapp\" is invalid"),
        "{stderr}"
    );
}

#[test]
fn stack_without_app_is_rejected_with_422_naming_spec_app() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.install_crd();

    for manifest in [
        "apiVersion: berth.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: noapp\nspec: {}\n",
        "apiVersion: berth.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: noapp\nspec:\n  deletionPolicy: Delete\n",
    ] {
        let stderr = k.fails_with_status(
            &["create", "-f", "-"],
            Some(manifest),
            "422 Unprocessable Entity",
        );
        assert!(stderr.contains("spec.app: Required value"), "{stderr}");
    }
    let stderr = k.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: berth.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: noapp\nspec: {}\n"),
    );
    assert!(
        stderr.contains("spec.app"),
        "kubectl apply of a Stack without spec.app: {stderr}"
    );

    assert!(k.is_gone(&["stack", "noapp"]));
    assert_still_answers(&k);
}

#[test]
fn stack_with_wrong_type_is_rejected_with_422() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.install_crd();

    let manifest = "apiVersion: berth.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: badtype\nspec:\n  app:\n    image: x\n    replicas: \"x\"\n";
    let stderr = k.fails_with_status(
        &["create", "-f", "-"],
        Some(manifest),
        "422 Unprocessable Entity",
    );
    assert!(stderr.contains("spec.app.replicas"), "{stderr}");
    assert!(stderr.contains("integer"), "{stderr}");

    // A wrong type in an update is refused too, and leaves the stored object alone.
    k.apply_sample();
    let before = k.json(&["get", "stack", "demo"]);
    let stderr = k.fails_with_status(
        &[
            "patch",
            "stack",
            "demo",
            "--type=merge",
            "-p",
            r#"{"spec":{"app":{"replicas":"many"}}}"#,
        ],
        None,
        "422 Unprocessable Entity",
    );
    assert!(stderr.contains("spec.app.replicas"), "{stderr}");
    let after = k.json(&["get", "stack", "demo"]);
    assert_eq!(after["spec"]["app"]["replicas"], 1);
    assert_eq!(resource_version(&after), resource_version(&before));

    assert!(k.is_gone(&["stack", "badtype"]));
    assert_still_answers(&k);
}

#[test]
fn malformed_bodies_are_rejected_with_400_and_change_nothing() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some(&configmap_yaml("existing", &[], &[("a", "1")])),
    );
    let before = k.json(&["get", "configmap", "existing"]);
    let dir = server.data_dir.path();
    let collection = "/api/v1/namespaces/default/configmaps";

    let truncated_json = dir.join("truncated.json");
    std::fs::write(
        &truncated_json,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x""#,
    )
    .expect("writing");
    let broken_yaml = dir.join("broken.yaml");
    std::fs::write(
        &broken_yaml,
        "apiVersion: v1\nkind: [ConfigMap\nmetadata: {name: x\n",
    )
    .expect("writing");
    let not_an_object = dir.join("array.json");
    std::fs::write(&not_an_object, "[1, 2, 3]").expect("writing");
    let wrong_kind = dir.join("secret.json");
    std::fs::write(
        &wrong_kind,
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
    )
    .expect("writing");

    for file in [&truncated_json, &broken_yaml, &not_an_object, &wrong_kind] {
        let stderr = k.fails_with_status(
            &["create", "--raw", collection, "-f", &path_arg(file)],
            None,
            "400 Bad Request",
        );
        assert!(
            stderr.contains("BadRequest"),
            "create --raw {}: {stderr}",
            file.display()
        );
        let stderr = k.fails_with_status(
            &[
                "replace",
                "--raw",
                &format!("{collection}/existing"),
                "-f",
                &path_arg(file),
            ],
            None,
            "400 Bad Request",
        );
        assert!(
            stderr.contains("BadRequest"),
            "replace --raw {}: {stderr}",
            file.display()
        );
    }

    // A body over the 3 MiB limit.
    let big = dir.join("big.json");
    let payload = "x".repeat(4 * 1024 * 1024);
    std::fs::write(&big, format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{payload}"}}}}"#))
        .expect("writing");
    let stderr = k.fails_with_status(
        &["create", "--raw", collection, "-f", &path_arg(&big)],
        None,
        "413 Request Entity Too Large",
    );
    assert!(stderr.contains("RequestEntityTooLarge"), "{stderr}");

    // A malformed label selector in a query.
    k.fails_with_status(
        &[
            "get",
            "--raw",
            &format!("{collection}?labelSelector=a%20in%20("),
        ],
        None,
        "400 Bad Request",
    );

    let after = k.json(&["get", "configmap", "existing"]);
    assert_eq!(
        resource_version(&after),
        resource_version(&before),
        "a rejected body changed the object"
    );
    assert_eq!(after["data"], before["data"]);
    assert_eq!(
        k.names(&["get", "configmaps"]),
        set(&["existing"]),
        "a rejected body created something"
    );
    assert_still_answers(&k);
}

#[test]
fn unknown_resource_is_an_error() {
    let server = Server::start();
    let k = Kubectl::new(&server);

    let stderr = k.fails(&["get", "foobars"], None);
    assert!(
        stderr.contains("the server doesn't have a resource type \"foobars\""),
        "{stderr}"
    );
    for path in [
        "/api/v1/namespaces/default/foobars",
        "/api/v2",
        "/apis/nope.example/v1/things",
        "/apis/berth.dev/v1alpha1/namespaces/default/stacks",
    ] {
        let stderr = k.fails_with_status(&["get", "--raw", path], None, "404 Not Found");
        assert!(stderr.contains("NotFound"), "get --raw {path}: {stderr}");
    }
    // A Stack before its CRD exists.
    let stderr = k.fails(&["apply", "-f", &sample_stack()], None);
    assert!(stderr.contains("no matches for kind \"Stack\""), "{stderr}");

    assert_still_answers(&k);
}

#[test]
fn wrong_or_missing_token_is_unauthorized() {
    let server = Server::start();
    let k = Kubectl::new(&server);

    let stderr = k.fails_with_status(
        &["--token=wrong", "get", "namespaces"],
        None,
        "401 Unauthorized",
    );
    assert!(stderr.contains("Unauthorized"), "{stderr}");
    let cm = configmap_yaml("sneaky", &[], &[]);
    let stderr = k.fails_with_status(
        &["--token=wrong", "create", "--validate=false", "-f", "-"],
        Some(&cm),
        "401 Unauthorized",
    );
    assert!(stderr.contains("Unauthorized"), "{stderr}");

    // A copy of the kubeconfig without the token. kubectl prompts for a password when a user has no credentials
    // at all, so the copy names a user without a password: kubectl sends Basic auth, which berth does not accept.
    let admin = std::fs::read_to_string(server.kubeconfig()).expect("reading the kubeconfig");
    assert!(
        admin.contains("token:"),
        "the admin kubeconfig carries a token: {admin}"
    );
    let without_token: String = admin
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("token:") {
                "    username: nobody"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let copy = server.data_dir.path().join("kubeconfig-without-token");
    std::fs::write(&copy, without_token).expect("writing the kubeconfig copy");
    let kubeconfig_flag = format!("--kubeconfig={}", copy.display());
    let stderr = k.fails_with_status(
        &[&kubeconfig_flag, "get", "--raw", "/api"],
        None,
        "401 Unauthorized",
    );
    assert!(stderr.contains("Unauthorized"), "{stderr}");

    // Nothing was written, and the real token still works.
    assert!(k.is_gone(&["configmap", "sneaky"]));
    assert_still_answers(&k);
}

#[test]
fn default_namespaces_exist_and_missing_namespace_is_not_found() {
    let server = Server::start();
    let k = Kubectl::new(&server);

    let namespaces = k.json(&["get", "namespaces"]);
    let items = namespaces["items"].as_array().expect("a namespace list");
    let names: BTreeSet<String> = items
        .iter()
        .map(|n| text(&n["metadata"]["name"]).to_owned())
        .collect();
    assert_eq!(
        names,
        set(&["default", "kube-node-lease", "kube-public", "kube-system"])
    );
    for namespace in items {
        assert_eq!(namespace["status"]["phase"], "Active", "{namespace}");
    }

    let cm = configmap_yaml("orphan", &[], &[]);
    let stderr = k.fails_with_status(
        &["create", "-n", "missing", "-f", "-"],
        Some(&cm),
        "404 Not Found",
    );
    assert!(
        stderr.contains("namespaces \"missing\" not found"),
        "{stderr}"
    );
    k.install_crd();
    let stderr = k.fails(
        &["apply", "-n", "missing", "-f", "-"],
        Some(&stack_yaml("orphan", &[])),
    );
    assert!(
        stderr.contains("namespaces \"missing\" not found"),
        "{stderr}"
    );

    // Once the namespace exists, the same manifests go in.
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: missing\n"),
    );
    k.ok_stdin(&["create", "-n", "missing", "-f", "-"], Some(&cm));
    k.ok_stdin(
        &["apply", "-n", "missing", "-f", "-"],
        Some(&stack_yaml("orphan", &[])),
    );
    assert_eq!(
        k.names(&["get", "configmaps", "-n", "missing"]),
        set(&["orphan"])
    );
    assert_eq!(
        k.names(&["get", "stacks", "-n", "missing"]),
        set(&["orphan"])
    );
    assert!(k.names(&["get", "configmaps", "-n", "default"]).is_empty());
}

/// The versioned kubectl binaries the Google Cloud CLI installs next to its `kubectl` dispatcher.
fn versioned_kubectls() -> Vec<(u32, PathBuf)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("kubectl");
        if let Some(parent) = std::fs::canonicalize(&candidate)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf))
        {
            dirs.push(parent);
        }
        dirs.push(dir);
    }
    KUBECTL_MINORS
        .filter_map(|minor| {
            dirs.iter()
                .map(|d| d.join(format!("kubectl.1.{minor}")))
                .find(|bin| bin.is_file())
                .map(|bin| (minor, bin))
        })
        .collect()
}

#[test]
fn smoke_sequence_works_with_every_kubectl_version() {
    let found = versioned_kubectls();
    let missing: Vec<u32> = KUBECTL_MINORS
        .filter(|m| !found.iter().any(|(f, _)| f == m))
        .collect();
    if !missing.is_empty() {
        eprintln!("kubectl 1.{missing:?} not found next to the kubectl on the PATH: skipped");
    }
    let mut ran = Vec::new();
    for (minor, bin) in found {
        let server = Server::start();
        let k = Kubectl::with_bin(&server, bin.clone());

        let version = k.json(&["version"]);
        assert_eq!(
            version["clientVersion"]["minor"],
            minor.to_string(),
            "{} is kubectl 1.{minor}",
            bin.display()
        );
        assert!(
            text(&version["serverVersion"]["gitVersion"]).starts_with("v1."),
            "{version}"
        );

        k.install_crd();
        k.apply_sample();
        let yaml_text = k.ok(&["get", "stack", "demo", "-o", "yaml"]);
        let stack: Value = serde_yaml::from_str(&yaml_text).expect("kubectl -o yaml prints YAML");
        assert_eq!(
            stack["spec"]["app"]["replicas"], 1,
            "kubectl 1.{minor}: {yaml_text}"
        );
        assert_eq!(
            stack["spec"]["deletionPolicy"], "Retain",
            "kubectl 1.{minor}: {yaml_text}"
        );
        let listed = k.names(&["get", "st"]);
        assert_eq!(listed, set(&["demo"]), "kubectl 1.{minor} get st");
        let deleted = k.ok(&["delete", "-f", &sample_stack()]);
        assert!(
            deleted.contains("deleted"),
            "kubectl 1.{minor} delete: {deleted}"
        );
        assert!(
            k.is_gone(&["stack", "demo"]),
            "kubectl 1.{minor}: the Stack is gone"
        );
        ran.push(format!("1.{minor}"));
    }
    println!(
        "kubectl versions exercised: {}",
        if ran.is_empty() {
            "none".into()
        } else {
            ran.join(", ")
        }
    );
}
