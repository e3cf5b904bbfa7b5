//! `kubectl apply` both ways against `berth apiserver`, as on a real cluster: client-side apply (strategic merge
//! patches computed by kubectl from its last-applied annotation) of changed ConfigMaps, Pods, Services and
//! Secrets; server-side apply (field managers, no-op re-applies, conflicts and `--force-conflicts`, the upgrade
//! from client-side apply); `kubectl diff` and `--dry-run=server`; and kube-rs `Patch::Apply` on a Stack and
//! its status. Each test starts its own server.

use std::time::Duration;

use berth_api::Stack;
use berth_e2e::{Kubectl, Server};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

/// This file's shorthands on the harness's kubectl (which has a discovery and OpenAPI cache of the server's
/// own: a port reused from an earlier run must not answer from a stale cache).
trait ApplyAndGet {
    /// `kubectl apply -f -` with extra flags.
    fn apply(&self, manifest: &str, flags: &[&str]) -> String;
    /// The object as JSON, managedFields included.
    fn get(&self, kind_and_name: &str) -> Value;
}

impl ApplyAndGet for Kubectl {
    fn apply(&self, manifest: &str, flags: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(flags);
        self.ok_stdin(&args, Some(manifest))
    }

    fn get(&self, kind_and_name: &str) -> Value {
        let text = self.ok(&["get", kind_and_name, "-o", "json", "--show-managed-fields"]);
        serde_json::from_str(&text).expect("kubectl printed JSON")
    }
}

fn resource_version(object: &Value) -> &str {
    object["metadata"]["resourceVersion"]
        .as_str()
        .expect("objects have a resourceVersion")
}

/// The managers of an object's managedFields, as `manager/Operation`.
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

/// The fieldsV1 of one manager's entry.
fn fields_of(object: &Value, manager: &str) -> Value {
    object["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == manager))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| panic!("no managedFields entry for {manager} in {object}"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn config_map(data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {{app: shop}}\ndata:\n{data}"
    )
}

#[test]
fn client_side_apply_twice_with_a_change_updates_config_maps_pods_services_and_secrets() {
    let server = Server::start();
    let k = Kubectl::new(&server);

    k.apply(&config_map("  mode: dev\n  debug: \"true\"\n"), &[]);
    let out = k.apply(&config_map("  mode: prod\n  color: blue\n"), &[]);
    assert!(out.contains("configmap/settings configured"), "{out}");
    let cm = k.get("configmap/settings");
    assert_eq!(cm["data"], json!({"mode": "prod", "color": "blue"}));
    assert_eq!(managers(&cm), ["kubectl-client-side-apply/Update"]);

    let pod = |image: &str, env: &str, ports: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {labels}\nspec:\n  containers:\n  - name: app\n    image: {image}\n    env: {env}\n    ports: {ports}\n  - name: sidecar\n    image: busybox:1\n"
        )
    };
    k.apply(
        &pod(
            "busybox:1",
            "[{name: A, value: '1'}, {name: B, value: '2'}]",
            "[{containerPort: 80}]",
            "{app: web}",
        ),
        &[],
    );
    k.apply(
        &pod(
            "busybox:2",
            "[{name: A, value: '1'}, {name: C, value: '3'}]",
            "[{containerPort: 80}, {containerPort: 443}]",
            "{app: web, tier: front}",
        ),
        &[],
    );
    let pod = k.get("pod/web");
    let containers = &pod["spec"]["containers"];
    assert_eq!(containers[0]["image"], "busybox:2");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(
        containers[0]["ports"],
        json!([{"containerPort": 80}, {"containerPort": 443}])
    );
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app": "web", "tier": "front"})
    );

    let service = |ports: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports: {ports}\n"
        )
    };
    k.apply(
        &service("[{name: http, port: 80, targetPort: 8080}, {name: https, port: 443}]"),
        &[],
    );
    k.apply(&service("[{name: http, port: 80, targetPort: 9090}]"), &[]);
    let svc = k.get("service/web");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": 9090}])
    );

    let secret = |pass: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  user: admin\n  pass: \"{pass}\"\n"
        )
    };
    k.apply(&secret("first"), &[]);
    k.apply(&secret("second"), &[]);
    let secret = k.get("secret/creds");
    // base64("second"), base64("admin")
    assert_eq!(
        secret["data"],
        json!({"pass": "c2Vjb25k", "user": "YWRtaW4="})
    );
}

#[test]
fn server_side_apply_twice_is_a_no_op() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    let manifest = config_map("  mode: dev\n");
    let out = k.apply(&manifest, &["--server-side"]);
    assert!(out.contains("serverside-applied"), "{out}");
    let first = k.get("configmap/settings");
    assert_eq!(managers(&first), ["kubectl/Apply"]);
    assert_eq!(
        fields_of(&first, "kubectl"),
        json!({"f:data": {"f:mode": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
    );
    k.apply(&manifest, &["--server-side"]);
    let second = k.get("configmap/settings");
    assert_eq!(resource_version(&first), resource_version(&second));
    assert_eq!(first, second);
}

#[test]
fn conflicting_managers_get_409_naming_the_field_until_one_forces() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.apply(&config_map("  key: from-csa\n  other: kept\n"), &[]);
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  key: mine\n";
    let stderr = k.fails(
        &[
            "apply",
            "--server-side",
            "--field-manager=deployer",
            "-f",
            "-",
        ],
        Some(manifest),
    );
    assert!(
        stderr.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.key"
        ),
        "{stderr}"
    );
    assert_eq!(k.get("configmap/settings")["data"]["key"], "from-csa");

    k.apply(
        manifest,
        &[
            "--server-side",
            "--field-manager=deployer",
            "--force-conflicts",
        ],
    );
    // kubectl then hands what client-side apply owned to the new manager (its csaupgrade migration) and
    // applies again, as on a cluster: `other`, which this manifest does not set, goes.
    let cm = k.get("configmap/settings");
    assert_eq!(cm["data"], json!({"key": "mine"}));
    assert_eq!(managers(&cm), ["deployer/Apply"]);
    assert_eq!(fields_of(&cm, "deployer"), json!({"f:data": {"f:key": {}}}));

    // Between two server-side managers nothing migrates: forcing moves just the field.
    let second = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  key: theirs\n  extra: x\n";
    let stderr = k.fails(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(second),
    );
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \"deployer\": .data.key"),
        "{stderr}"
    );
    k.apply(
        second,
        &[
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
        ],
    );
    let cm = k.get("configmap/settings");
    assert_eq!(cm["data"], json!({"key": "theirs", "extra": "x"}));
    assert_eq!(
        fields_of(&cm, "other"),
        json!({"f:data": {"f:extra": {}, "f:key": {}}})
    );
    assert!(
        !managers(&cm).contains(&"deployer/Apply".to_owned()),
        "deployer lost its only field: {:?}",
        managers(&cm)
    );
}

#[test]
fn client_side_apply_upgrades_to_server_side_apply() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.apply(&config_map("  a: \"1\"\n  b: \"2\"\n"), &[]);
    // The first server-side apply takes over what client-side apply set; kubectl migrates the ownership
    // and re-applies, so the key the manifest dropped goes, as on a real cluster.
    k.apply(&config_map("  a: \"10\"\n"), &["--server-side"]);
    let cm = k.get("configmap/settings");
    assert_eq!(cm["data"], json!({"a": "10"}));
    let owners = managers(&cm);
    assert!(owners.contains(&"kubectl/Apply".to_owned()), "{owners:?}");
    assert!(
        !owners.contains(&"kubectl-client-side-apply/Update".to_owned()),
        "{owners:?}"
    );
    let annotation =
        text(&cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]);
    let last: Value = serde_json::from_str(annotation).expect("the annotation is JSON");
    assert_eq!(
        last["data"],
        json!({"a": "10"}),
        "the server keeps kubectl's annotation current"
    );
}

#[test]
fn kubectl_diff_and_server_dry_run_store_nothing() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.apply(&config_map("  mode: dev\n"), &[]);
    let before = k.get("configmap/settings");
    let changed = config_map("  mode: prod\n");

    let out = k.run(&["diff", "-f", "-"], Some(&changed));
    assert_eq!(
        out.status.code(),
        Some(1),
        "kubectl diff exits 1 on differences"
    );
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("-  mode: dev") && diff.contains("+  mode: prod"),
        "{diff}"
    );
    let same = k.run(&["diff", "-f", "-"], Some(&config_map("  mode: dev\n")));
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
    let server_side = k.run(&["diff", "--server-side", "-f", "-"], Some(&changed));
    assert_eq!(server_side.status.code(), Some(1));

    let out = k.apply(&changed, &["--dry-run=server"]);
    assert!(out.contains("(server dry run)"), "{out}");
    let out = k.apply(&changed, &["--server-side", "--dry-run=server"]);
    assert!(out.contains("(server dry run)"), "{out}");
    assert_eq!(k.get("configmap/settings"), before);
}

#[test]
fn a_strategic_patch_that_makes_an_object_invalid_is_422_and_stores_nothing() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.apply(&config_map("  mode: dev\n"), &[]);
    let before = k.get("configmap/settings");
    let out = k.run(
        &[
            "-v=6",
            "patch",
            "configmap/settings",
            "--type=strategic",
            "-p",
            r#"{"metadata":{"labels":{"not a label!":"x"}}}"#,
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("422"), "{stderr}");
    assert_eq!(k.get("configmap/settings"), before);
}

fn stack(image: &str) -> Value {
    json!({
        "apiVersion": berth_api::constants::API_VERSION,
        "kind": berth_api::constants::KIND,
        "metadata": {"name": "shop"},
        "spec": {"app": {"image": image}},
    })
}

fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn install_stack_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &berth_api::crd())
        .await
        .expect("creating the Stack CRD");
    tokio::time::timeout(
        DEADLINE,
        await_condition(
            crds,
            berth_api::constants::CRD_NAME,
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the Stack CRD is Established in time")
    .expect("watching the CRD");
}

#[tokio::test]
async fn kube_apply_creates_a_stack_owns_its_fields_and_applies_its_status() {
    let server = Server::start();
    let client = server.client().await;
    install_stack_crd(&client).await;
    let stacks: Api<Stack> = Api::default_namespaced(client.clone());
    let owner = PatchParams::apply("berth-test");

    let created = stacks
        .patch("shop", &owner, &Patch::Apply(stack("app:1")))
        .await
        .expect("apply creates the Stack");
    assert_eq!(created.spec.app.image, "app:1");
    let rv = created.metadata.resource_version.clone();
    let again = stacks
        .patch("shop", &owner, &Patch::Apply(stack("app:1")))
        .await
        .expect("re-applying");
    assert_eq!(
        again.metadata.resource_version, rv,
        "a no-op apply stores nothing"
    );

    let mut status = stack("app:1");
    status["status"] = json!({
        "phase": "Ready",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Up", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    });
    let with_status = stacks
        .patch_status(
            "shop",
            &PatchParams::apply("berth-controller"),
            &Patch::Apply(status),
        )
        .await
        .expect("applying the status");
    let status = with_status.status.clone().expect("the status is stored");
    assert_eq!(status.conditions[0].type_, "Ready");
    let entries = with_status
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default();
    let controller = entries
        .iter()
        .find(|e| e.manager.as_deref() == Some("berth-controller"))
        .expect("the status applier has an entry");
    assert_eq!(controller.subresource.as_deref(), Some("status"));
    assert_eq!(controller.operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&controller.fields_v1).unwrap();
    assert!(
        fields["f:status"]["f:conditions"]
            .get("k:{\"type\":\"Ready\"}")
            .is_some(),
        "conditions are keyed by type: {fields}"
    );

    let other = PatchParams::apply("someone-else");
    let status = api_error(
        stacks
            .patch("shop", &other, &Patch::Apply(stack("app:2")))
            .await,
    );
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    let causes = status.details.expect("details").causes;
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".spec.app.image");
    assert!(
        status.message.contains("conflict with \"berth-test\""),
        "{}",
        status.message
    );

    let forced = stacks
        .patch(
            "shop",
            &other.clone().force(),
            &Patch::Apply(stack("app:2")),
        )
        .await
        .expect("a forced apply takes the field");
    assert_eq!(forced.spec.app.image, "app:2");
    assert!(
        forced.status.is_some(),
        "a spec apply leaves the status alone"
    );
}

#[tokio::test]
async fn strategic_merge_patch_of_a_custom_resource_is_415_and_of_a_pod_merges_containers() {
    let server = Server::start();
    let client = server.client().await;
    install_stack_crd(&client).await;
    let stacks: Api<Stack> = Api::default_namespaced(client.clone());
    stacks
        .patch(
            "shop",
            &PatchParams::apply("t"),
            &Patch::Apply(stack("app:1")),
        )
        .await
        .expect("creating the Stack");
    let status = api_error(
        stacks
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"app": {"image": "x"}}})),
            )
            .await,
    );
    assert_eq!(status.code, 415);
    assert_eq!(status.reason, "UnsupportedMediaType");

    let pods: Api<Pod> = Api::default_namespaced(client);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating a Pod");
    let patched = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}})),
        )
        .await
        .expect("a strategic merge patch of a Pod");
    let containers = patched.spec.expect("spec").containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[1].image.as_deref(), Some("b:2"));
    let managers: Vec<String> = patched
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert!(
        managers.iter().all(|m| !m.is_empty()),
        "writes without fieldManager are recorded under the user agent: {managers:?}"
    );
}
