//! The embedded control plane of `berth up` driven with the real kubectl: scheduling and its Unschedulable
//! report, placement rules, local volumes, owner-reference garbage collection, namespace cascade, node
//! lifecycle and leader election. `berth up --disable-agent` runs no node agent: tests register Nodes and renew their Leases
//! themselves, as a kubelet would. Every test starts its own server and waits on conditions with deadlines.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_e2e::{Kubectl, Server, wait_for};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// How long a loop may take to react.
const DEADLINE: Duration = Duration::from_secs(30);

/// This file's shorthands on the harness's kubectl (with a discovery cache of the server's own: a reused port
/// must not answer with the resources of an earlier server).
trait Shorthands {
    /// `kubectl apply -f -` of one object (it is created: later changes use merge patches).
    fn apply(&self, object: &Value);
    /// `kubectl patch --type merge`, on the object or a subresource.
    fn patch(&self, target: &[&str], patch: &Value);
    /// The object as JSON, or None when kubectl cannot get it (not found).
    fn get(&self, target: &[&str]) -> Option<Value>;
    fn must_get(&self, target: &[&str]) -> Value;
    /// Events about one object, as `kubectl get events` lists them.
    fn events_for(&self, namespace: &str, name: &str) -> Vec<Value>;
}

impl Shorthands for Kubectl {
    fn apply(&self, object: &Value) {
        self.ok_stdin(&["apply", "-f", "-"], Some(&object.to_string()));
    }

    fn patch(&self, target: &[&str], patch: &Value) {
        let text = patch.to_string();
        let mut args = vec!["patch"];
        args.extend_from_slice(target);
        args.extend_from_slice(&["--type", "merge", "-p", &text]);
        self.ok(&args);
    }

    fn get(&self, target: &[&str]) -> Option<Value> {
        let mut args = vec!["get"];
        args.extend_from_slice(target);
        args.extend_from_slice(&["-o", "json"]);
        let out = self.run(&args, None);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("NotFound"),
                "kubectl {} failed: {stderr}",
                args.join(" ")
            );
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("kubectl printed JSON"))
    }

    fn must_get(&self, target: &[&str]) -> Value {
        self.get(target)
            .unwrap_or_else(|| panic!("{} does not exist", target.join(" ")))
    }

    fn events_for(&self, namespace: &str, name: &str) -> Vec<Value> {
        let selector = format!("involvedObject.name={name}");
        let text = self.ok(&[
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            &selector,
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&text).expect("an event list");
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn micro_now() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn condition<'v>(object: &'v Value, type_: &str) -> Option<&'v Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// A Node as a kubelet registers it: capacity, allocatable and Ready=True.
fn node(name: &str, cpu: &str, labels: Value, taints: Value) -> Value {
    let resources = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now(), "lastTransitionTime": now(),
            }],
        },
    })
}

fn register(k: &Kubectl, name: &str, cpu: &str) {
    k.apply(&node(
        name,
        cpu,
        json!({"kubernetes.io/hostname": name}),
        json!([]),
    ));
}

/// A Pod with one container and the given extra spec fields.
fn pod(name: &str, cpu: &str, extra: Value) -> Value {
    let mut spec = json!({
        "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
    });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        spec[key] = value;
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn node_of(k: &Kubectl, pod: &str) -> Option<String> {
    let pod = k.get(&["pod", pod])?;
    pod["spec"]["nodeName"].as_str().map(str::to_owned)
}

fn wait_bound(k: &Kubectl, pod: &str) -> String {
    wait_for(&format!("pod {pod} to be bound"), DEADLINE, || {
        node_of(k, pod)
    })
}

/// Waits until the pod reports PodScheduled=False/Unschedulable, and returns the message.
fn wait_unschedulable(k: &Kubectl, pod: &str) -> String {
    wait_for(
        &format!("pod {pod} to be reported unschedulable"),
        DEADLINE,
        || {
            let pod = k.get(&["pod", pod])?;
            let scheduled = condition(&pod, "PodScheduled")?;
            (scheduled["status"] == "False" && scheduled["reason"] == "Unschedulable")
                .then(|| scheduled["message"].as_str().unwrap_or_default().to_owned())
        },
    )
}

#[test]
fn a_pod_is_bound_to_the_node_that_fits_it() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    register(&k, "small", "1");
    register(&k, "big", "4");
    k.apply(&pod("web", "2", json!({})));
    assert_eq!(wait_bound(&k, "web"), "big");
    let web = k.must_get(&["pod", "web"]);
    let scheduled = condition(&web, "PodScheduled").expect("a PodScheduled condition");
    assert_eq!(scheduled["status"], "True", "{web}");
    let events = wait_for("a Scheduled event", DEADLINE, || {
        let events = k.events_for("default", "web");
        events
            .iter()
            .any(|e| e["reason"] == "Scheduled")
            .then_some(events)
    });
    let scheduled = events.iter().find(|e| e["reason"] == "Scheduled").unwrap();
    assert_eq!(
        scheduled["message"],
        "Successfully assigned default/web to big"
    );
    assert_eq!(scheduled["source"]["component"], "default-scheduler");
    // The room it takes is counted: a second pod of the same size no longer fits "big" beside it.
    k.apply(&pod("web2", "3", json!({})));
    let message = wait_unschedulable(&k, "web2");
    assert_eq!(message, "0/2 nodes are available: 2 Insufficient cpu.");
}

#[test]
fn a_pod_too_big_for_every_node_is_unschedulable_until_a_node_fits() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    register(&k, "n1", "1");
    k.apply(&pod("huge", "4", json!({})));
    let message = wait_unschedulable(&k, "huge");
    assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
    let huge = k.must_get(&["pod", "huge"]);
    assert_eq!(huge["status"]["phase"], "Pending");
    assert!(huge["spec"]["nodeName"].is_null());
    let event = wait_for("a FailedScheduling event", DEADLINE, || {
        k.events_for("default", "huge")
            .into_iter()
            .find(|e| e["reason"] == "FailedScheduling")
    });
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["message"], message.as_str());
    // kubectl describe shows the reason, as on a real cluster.
    let described = k.ok(&["describe", "pod", "huge"]);
    assert!(described.contains("FailedScheduling"), "{described}");
    // A node that fits arrives: the pod is retried and bound.
    register(&k, "n2", "8");
    assert_eq!(wait_bound(&k, "huge"), "n2");
}

#[test]
fn a_pod_with_no_node_at_all_says_so() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    k.apply(&pod("lonely", "100m", json!({})));
    assert_eq!(
        wait_unschedulable(&k, "lonely"),
        "no nodes available to schedule pods"
    );
}

#[test]
fn node_selectors_taints_and_host_ports_decide_placement() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    k.apply(&node("plain", "4", json!({"disk": "hdd"}), json!([])));
    k.apply(&node(
        "dedicated",
        "4",
        json!({"disk": "ssd"}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    ));
    let ssd = json!({"nodeSelector": {"disk": "ssd"}});
    k.apply(&pod("picky", "100m", ssd.clone()));
    assert_eq!(
        wait_unschedulable(&k, "picky"),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: db}."
    );
    let mut tolerant = ssd;
    tolerant["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]);
    k.apply(&pod("db", "100m", tolerant));
    assert_eq!(wait_bound(&k, "db"), "dedicated");

    let ports = |name: &str| {
        let mut p = pod(name, "100m", json!({}));
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        p
    };
    k.apply(&ports("proxy"));
    assert_eq!(wait_bound(&k, "proxy"), "plain");
    k.apply(&ports("proxy2"));
    assert_eq!(
        wait_unschedulable(&k, "proxy2"),
        "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) had untolerated taint {dedicated: db}."
    );
    // Once the port is free again, the waiting pod takes it.
    k.ok(&["delete", "pod", "proxy", "--grace-period=0", "--force"]);
    assert_eq!(wait_bound(&k, "proxy2"), "plain");

    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}]
    }}}});
    k.apply(&pod("affine", "100m", affinity));
    assert_eq!(wait_bound(&k, "affine"), "plain");
}

/// A claim of the default class, and a Pod that uses it.
fn claim(name: &str, class: Option<&str>) -> Value {
    let mut claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    });
    if let Some(class) = class {
        claim["spec"]["storageClassName"] = json!(class);
    }
    claim
}

fn claim_phase(k: &Kubectl, name: &str) -> Option<String> {
    k.get(&["pvc", name])?["status"]["phase"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn a_wait_for_first_consumer_claim_is_bound_when_its_pod_is_scheduled_and_outlives_it() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    let class = wait_for("the default StorageClass", DEADLINE, || {
        k.get(&["storageclass", "local-path"])
    });
    assert_eq!(class["provisioner"], "berth.dev/local-path");
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(class["reclaimPolicy"], "Delete");
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );

    register(&k, "n1", "2");
    k.apply(&claim("data", None));
    // The claim gets the default class, and waits for a consumer.
    wait_for("the default class on the claim", DEADLINE, || {
        (k.must_get(&["pvc", "data"])["spec"]["storageClassName"] == "local-path").then_some(())
    });
    wait_for("a WaitForFirstConsumer event", DEADLINE, || {
        k.events_for("default", "data")
            .into_iter()
            .find(|e| e["reason"] == "WaitForFirstConsumer")
    });
    assert_eq!(claim_phase(&k, "data").as_deref(), Some("Pending"));

    let volume =
        json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]});
    k.apply(&pod("db", "100m", volume));
    assert_eq!(wait_bound(&k, "db"), "n1");
    // As upstream's scheduler does: the claim is provisioned on the chosen node (named in its selected-node
    // annotation) and bound before the Pod is bound, so the kubelet never finds it unbound.
    let bound = k.must_get(&["pvc", "data"]);
    assert_eq!(bound["status"]["phase"], "Bound", "{bound:#}");
    assert_eq!(
        bound["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        "n1"
    );
    let pv_name = bound["spec"]["volumeName"]
        .as_str()
        .expect("a volume name")
        .to_owned();
    assert_eq!(bound["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(bound["status"]["accessModes"], json!(["ReadWriteOnce"]));
    let pv = k.must_get(&["pv", &pv_name]);
    let dir = server.data_dir.path().join("volumes").join(&pv_name);
    assert_eq!(
        pv["spec"]["hostPath"]["path"],
        dir.to_string_lossy().as_ref()
    );
    assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
    assert_eq!(pv["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["spec"]["claimRef"]["uid"], bound["metadata"]["uid"]);
    assert_eq!(pv["status"]["phase"], "Bound");
    assert!(dir.is_dir(), "{} exists", dir.display());

    // What the container wrote stays when the Pod goes.
    std::fs::write(dir.join("PG_VERSION"), "17\n").expect("writing into the volume");
    k.ok(&["delete", "pod", "db", "--grace-period=0", "--force"]);
    wait_for("the pod to go", DEADLINE, || {
        k.get(&["pod", "db"]).is_none().then_some(())
    });
    assert_eq!(claim_phase(&k, "data").as_deref(), Some("Bound"));
    assert_eq!(
        std::fs::read_to_string(dir.join("PG_VERSION")).unwrap(),
        "17\n"
    );

    // reclaimPolicy Delete: the claim goes, and so do the volume and its directory.
    k.ok(&["delete", "pvc", "data"]);
    wait_for("the volume to be deleted", DEADLINE, || {
        k.get(&["pv", &pv_name]).is_none().then_some(())
    });
    assert!(!dir.exists(), "{} was removed", dir.display());
}

#[test]
fn a_retained_volume_keeps_its_directory_and_an_unknown_class_is_reported() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    k.apply(&json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "keep"},
        "provisioner": "berth.dev/local-path",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }));
    k.apply(&claim("archive", Some("keep")));
    // Immediate: bound with no Pod at all.
    wait_for("the claim to be bound", DEADLINE, || {
        (claim_phase(&k, "archive").as_deref() == Some("Bound")).then_some(())
    });
    let pv_name = k.must_get(&["pvc", "archive"])["spec"]["volumeName"]
        .as_str()
        .expect("a volume name")
        .to_owned();
    let dir = server.data_dir.path().join("volumes").join(&pv_name);
    assert_eq!(
        k.must_get(&["pv", &pv_name])["spec"]["persistentVolumeReclaimPolicy"],
        "Retain"
    );
    std::fs::write(dir.join("keep-me"), "x").expect("writing into the volume");
    k.ok(&["delete", "pvc", "archive"]);
    wait_for("the volume to be released", DEADLINE, || {
        (k.must_get(&["pv", &pv_name])["status"]["phase"] == "Released").then_some(())
    });
    assert!(
        dir.join("keep-me").exists(),
        "a retained volume keeps its data"
    );

    k.apply(&claim("lost", Some("nope")));
    let event = wait_for("a ProvisioningFailed event", DEADLINE, || {
        k.events_for("default", "lost")
            .into_iter()
            .find(|e| e["reason"] == "ProvisioningFailed")
    });
    assert_eq!(event["type"], "Warning");
    assert_eq!(
        event["message"],
        "storageclass.storage.k8s.io \"nope\" not found"
    );
    assert_eq!(claim_phase(&k, "lost").as_deref(), Some("Pending"));
}

fn config_map(name: &str, owners: Value, finalizers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "ownerReferences": owners, "finalizers": finalizers},
        "data": {"k": "v"},
    })
}

fn uid_of(k: &Kubectl, target: &[&str]) -> String {
    k.must_get(target)["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_owned()
}

fn owned_by(name: &str, uid: &str, block: bool) -> Value {
    json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid, "blockOwnerDeletion": block}])
}

fn gone(k: &Kubectl, target: &[&str]) -> bool {
    k.get(target).is_none()
}

#[test]
fn background_deletion_takes_dependents_and_dangling_owners_are_collected() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    k.apply(&config_map("owner", json!([]), json!([])));
    let uid = uid_of(&k, &["cm", "owner"]);
    k.apply(&config_map(
        "child",
        owned_by("owner", &uid, false),
        json!([]),
    ));
    k.apply(&config_map("other", json!([]), json!([])));
    let other = uid_of(&k, &["cm", "other"]);
    // Two owners: one real, one that never existed (its uid was made up).
    let mut two = owned_by("other", &other, false);
    two.as_array_mut().unwrap().extend(
        owned_by("ghost", "00000000-0000-0000-0000-000000000000", false)
            .as_array()
            .unwrap()
            .clone(),
    );
    k.apply(&config_map("half-orphan", two, json!([])));
    k.apply(&config_map(
        "orphan-of-ghost",
        owned_by("ghost", "11111111-1111-1111-1111-111111111111", false),
        json!([]),
    ));
    // An owner whose name exists but whose uid is another one: the reference dangles too.
    k.apply(&config_map(
        "wrong-uid",
        owned_by("other", "22222222-2222-2222-2222-222222222222", false),
        json!([]),
    ));

    wait_for(
        "dependents of owners that never existed to go",
        DEADLINE,
        || (gone(&k, &["cm", "orphan-of-ghost"]) && gone(&k, &["cm", "wrong-uid"])).then_some(()),
    );
    let half = wait_for("the dangling reference to be dropped", DEADLINE, || {
        let half = k.must_get(&["cm", "half-orphan"]);
        (half["metadata"]["ownerReferences"].as_array().map(Vec::len) == Some(1)).then_some(half)
    });
    assert_eq!(
        half["metadata"]["ownerReferences"][0]["uid"],
        other.as_str()
    );
    assert!(
        !gone(&k, &["cm", "child"]),
        "a dependent of a live owner stays"
    );

    k.ok(&["delete", "cm", "owner"]);
    wait_for("the dependent to be collected", DEADLINE, || {
        gone(&k, &["cm", "child"]).then_some(())
    });
}

#[test]
fn foreground_deletion_waits_for_blocking_dependents() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    k.apply(&config_map("owner", json!([]), json!([])));
    let uid = uid_of(&k, &["cm", "owner"]);
    k.apply(&config_map(
        "held",
        owned_by("owner", &uid, true),
        json!(["example.com/hold"]),
    ));
    k.apply(&config_map(
        "free",
        owned_by("owner", &uid, false),
        json!([]),
    ));
    k.ok(&[
        "delete",
        "cm",
        "owner",
        "--cascade=foreground",
        "--wait=false",
    ]);
    // The dependents are deleted; the blocking one is held by its finalizer, and holds its owner.
    let held = wait_for(
        "the blocking dependent to be marked for deletion",
        DEADLINE,
        || {
            let held = k.must_get(&["cm", "held"]);
            held["metadata"]["deletionTimestamp"]
                .is_string()
                .then_some(held)
        },
    );
    assert_eq!(held["metadata"]["finalizers"], json!(["example.com/hold"]));
    wait_for("the non-blocking dependent to go", DEADLINE, || {
        gone(&k, &["cm", "free"]).then_some(())
    });
    let owner = k.must_get(&["cm", "owner"]);
    assert!(
        owner["metadata"]["deletionTimestamp"].is_string(),
        "{owner}"
    );
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    // The dependent's finalizer is done: it goes, and then its owner.
    k.patch(&["cm", "held"], &json!({"metadata": {"finalizers": null}}));
    wait_for("the owner to go after its dependents", DEADLINE, || {
        gone(&k, &["cm", "owner"]).then_some(())
    });
    assert!(gone(&k, &["cm", "held"]));
}

#[test]
fn orphan_deletion_keeps_dependents_without_the_reference() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    k.apply(&config_map("owner", json!([]), json!([])));
    let uid = uid_of(&k, &["cm", "owner"]);
    k.apply(&config_map(
        "child",
        owned_by("owner", &uid, true),
        json!([]),
    ));
    k.ok(&["delete", "cm", "owner", "--cascade=orphan", "--wait=false"]);
    wait_for("the owner to go", DEADLINE, || {
        gone(&k, &["cm", "owner"]).then_some(())
    });
    let child = k.must_get(&["cm", "child"]);
    assert!(child["metadata"]["ownerReferences"].is_null(), "{child}");
    // And it stays: the collector does not take it later.
    k.apply(&config_map(
        "marker",
        owned_by("gone", "33333333-3333-3333-3333-333333333333", false),
        json!([]),
    ));
    wait_for("a later collection pass", DEADLINE, || {
        gone(&k, &["cm", "marker"]).then_some(())
    });
    assert!(!gone(&k, &["cm", "child"]));
}

/// A namespace `shop` holding a ConfigMap, a Secret and a custom resource (a CRD of the test's own, so that
/// the cascade is shown to cover every namespaced resource discovery lists), plus `extra` objects.
fn shop(k: &Kubectl, extra: &[Value]) {
    k.apply(&json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }));
    wait_for("the CRD to be served", DEADLINE, || {
        k.run(&["get", "widgets", "-A"], None)
            .status
            .success()
            .then_some(())
    });
    k.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    k.apply(&in_shop("ConfigMap", "v1", "settings", json!([])));
    k.apply(&in_shop("Secret", "v1", "password", json!([])));
    k.apply(&in_shop("Widget", "example.com/v1", "gadget", json!([])));
    for object in extra {
        k.apply(object);
    }
}

fn in_shop(kind: &str, api: &str, name: &str, finalizers: Value) -> Value {
    json!({"apiVersion": api, "kind": kind,
           "metadata": {"name": name, "namespace": "shop", "finalizers": finalizers}})
}

fn wait_shop_emptied(k: &Kubectl) {
    for target in [
        ["cm", "settings"],
        ["secret", "password"],
        ["widget", "gadget"],
    ] {
        let target = [target[0], target[1], "-n", "shop"];
        wait_for(
            &format!("{} to be deleted", target.join(" ")),
            DEADLINE,
            || gone(k, &target).then_some(()),
        );
    }
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    shop(&k, &[]);
    k.ok(&["delete", "namespace", "shop", "--wait=false"]);
    wait_shop_emptied(&k);
    wait_for("the namespace to go", DEADLINE, || {
        gone(&k, &["namespace", "shop"]).then_some(())
    });
}

#[test]
fn a_terminating_namespace_waits_for_finalizers_and_refuses_new_objects() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    shop(
        &k,
        &[in_shop(
            "ConfigMap",
            "v1",
            "held",
            json!(["example.com/hold"]),
        )],
    );
    k.ok(&["delete", "namespace", "shop", "--wait=false"]);
    let namespace = wait_for("the namespace to report the held content", DEADLINE, || {
        let ns = k.get(&["namespace", "shop"])?;
        let remaining = condition(&ns, "NamespaceFinalizersRemaining")?;
        (remaining["status"] == "True").then_some(ns)
    });
    assert_eq!(namespace["status"]["phase"], "Terminating");
    let message = condition(&namespace, "NamespaceFinalizersRemaining").unwrap()["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("example.com/hold in 1 resource instances"),
        "{message}"
    );
    wait_shop_emptied(&k);
    assert!(k.must_get(&["cm", "held", "-n", "shop"])["metadata"]["deletionTimestamp"].is_string());
    // Nothing new goes into a terminating namespace.
    let late = in_shop("ConfigMap", "v1", "late", json!([])).to_string();
    let refused = k.run(&["apply", "-f", "-"], Some(&late));
    assert!(
        !refused.status.success(),
        "a new object in a terminating namespace is refused"
    );
    // The last finalizer is done: the namespace goes.
    k.patch(
        &["cm", "held", "-n", "shop"],
        &json!({"metadata": {"finalizers": null}}),
    );
    wait_for("the namespace to go", DEADLINE, || {
        gone(&k, &["namespace", "shop"]).then_some(())
    });
}

/// Renews a node's Lease in kube-node-lease every `period`, as a kubelet does, until stopped.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(server: &Server, node: &str, period: Duration) -> Heartbeat {
        let kubeconfig = server.kubeconfig();
        let cache = server.data_dir.path().join("heartbeat-cache");
        let node = node.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let renew = move || {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": micro_now()},
            });
            lease_write(&kubeconfig, &cache, &lease)
        };
        renew();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                std::thread::sleep(period);
                renew();
            }
        });
        Heartbeat {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the Lease, or renews it with a merge patch.
fn lease_write(kubeconfig: &Path, cache: &Path, lease: &Value) {
    let kubectl = Kubectl::with_kubeconfig(kubeconfig.to_owned(), Some(cache.to_owned()));
    let kubectl = |args: &[&str], stdin: Option<&str>| kubectl.run(args, stdin).status.success();
    let name = lease["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = lease["metadata"]["namespace"].as_str().unwrap_or_default();
    let patch = json!({"spec": lease["spec"]}).to_string();
    let patched = kubectl(
        &[
            "patch", "lease", name, "-n", namespace, "--type", "merge", "-p", &patch,
        ],
        None,
    );
    if !patched {
        kubectl(&["apply", "-f", "-"], Some(&lease.to_string()));
    }
}

#[test]
fn a_node_whose_lease_stops_being_renewed_turns_not_ready_and_so_do_its_pods() {
    let grace = Duration::from_secs(3);
    let server = Server::start_up(&["--node-lease-grace", "3s", "--disable-agent"]);
    let k = Kubectl::new(&server);
    register(&k, "n1", "2");
    let mut heartbeat = Heartbeat::start(&server, "n1", Duration::from_millis(500));
    k.apply(&pod("app", "100m", json!({})));
    assert_eq!(wait_bound(&k, "app"), "n1");
    // The agent would report the Pod running and ready.
    let ready = json!({"status": {"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True", "lastTransitionTime": now()},
    ]}});
    k.patch(&["pod", "app", "--subresource=status"], &ready);

    // While the Lease is renewed the node stays Ready, well past the grace period.
    let start = Instant::now();
    while start.elapsed() < grace * 2 {
        let node = k.must_get(&["node", "n1"]);
        assert_eq!(
            condition(&node, "Ready").unwrap()["status"],
            "True",
            "{node}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    heartbeat.stop();
    let node = wait_for("the node to turn Ready=Unknown", DEADLINE, || {
        let node = k.must_get(&["node", "n1"]);
        (condition(&node, "Ready")?["status"] == "Unknown").then_some(node)
    });
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    wait_for("the unreachable taint", DEADLINE, || {
        let node = k.must_get(&["node", "n1"]);
        node["spec"]["taints"]
            .as_array()?
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoSchedule")
            .then_some(())
    });
    wait_for("the pod's Ready condition to turn False", DEADLINE, || {
        let pod = k.must_get(&["pod", "app"]);
        (condition(&pod, "Ready")?["status"] == "False").then_some(())
    });
    let printed = k.ok(&["get", "node", "n1"]);
    assert!(printed.contains("NotReady"), "{printed}");
    // New pods no longer go there.
    k.apply(&pod("late", "100m", json!({})));
    assert_eq!(
        wait_unschedulable(&k, "late"),
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
    );
}

fn leader_lease(k: &Kubectl) -> Option<Value> {
    k.get(&["lease", "berth-controlplane", "-n", "kube-system"])
}

fn log_of(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir.path().join("apiserver.log")).unwrap_or_default()
}

#[test]
fn a_control_plane_that_does_not_hold_the_leader_lease_does_nothing() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    let lease = wait_for(
        "the control plane to take the leader Lease",
        DEADLINE,
        || {
            let lease = leader_lease(&k)?;
            lease["spec"]["holderIdentity"].is_string().then_some(lease)
        },
    );
    let identity = lease["spec"]["holderIdentity"].as_str().unwrap().to_owned();

    // Another instance takes the Lease and keeps renewing it.
    let stop = Arc::new(AtomicBool::new(false));
    let intruder = {
        let stop = stop.clone();
        let kubeconfig = server.kubeconfig();
        let cache = server.data_dir.path().join("intruder-cache");
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "berth-controlplane", "namespace": "kube-system"},
                    "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 15, "renewTime": micro_now()},
                });
                lease_write(&kubeconfig, &cache, &lease);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    wait_for("berth to notice it lost the Lease", DEADLINE, || {
        log_of(&server)
            .contains("lost the leader Lease")
            .then_some(())
    });
    register(&k, "n1", "2");
    k.apply(&pod("waiting", "100m", json!({})));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            node_of(&k, "waiting"),
            None,
            "a control plane without the Lease bound a pod"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        leader_lease(&k).unwrap()["spec"]["holderIdentity"],
        "intruder"
    );

    // The other instance stops: once its Lease expires, berth takes over and acts.
    stop.store(true, Ordering::SeqCst);
    intruder.join().expect("the intruder thread");
    assert_eq!(wait_bound(&k, "waiting"), "n1");
    assert_eq!(
        leader_lease(&k).unwrap()["spec"]["holderIdentity"],
        identity.as_str()
    );
}

#[test]
fn ctrl_c_releases_the_leader_lease_for_the_next_berth_up() {
    let mut server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    let first = wait_for("the leader Lease", DEADLINE, || {
        leader_lease(&k)?["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_owned)
    });
    let pid = server.pid().expect("a running server").to_string();
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("running kill");
    assert!(interrupted.success());
    wait_for("berth up to exit", DEADLINE, || {
        (!Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
    assert!(
        log_of(&server).contains("released the Lease"),
        "{}",
        log_of(&server)
    );
    // The next berth up does not wait for the old Lease to expire (15 s).
    server.restart();
    let k = Kubectl::new(&server);
    let start = Instant::now();
    let second = wait_for("the new process to take the Lease", DEADLINE, || {
        leader_lease(&k)?["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| *h != first)
            .map(str::to_owned)
    });
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_ne!(first, second);
}

#[test]
fn objects_the_loops_cannot_understand_are_reported_once_and_stop_nothing() {
    let server = Server::start_up(&["--disable-agent"]);
    let k = Kubectl::new(&server);
    register(&k, "n1", "2");
    k.apply(&pod("odd", "lots", json!({})));
    let message = wait_unschedulable(&k, "odd");
    assert!(
        message.contains("cannot be read") && message.contains("\"lots\""),
        "{message}"
    );
    // An owner of a kind nobody serves: its dependent is kept, and the problem logged once.
    let unknown = json!([{"apiVersion": "example.com/v1", "kind": "Gadget", "name": "g",
                          "uid": "44444444-4444-4444-4444-444444444444"}]);
    k.apply(&config_map("mystery", unknown, json!([])));
    // Later passes of every loop still work.
    for name in ["a", "b", "c"] {
        k.apply(&config_map(
            &format!("ghost-{name}"),
            owned_by("ghost", "55555555-5555-5555-5555-555555555555", false),
            json!([]),
        ));
        let target = format!("ghost-{name}");
        wait_for("the ghost's dependent to go", DEADLINE, || {
            gone(&k, &["cm", &target]).then_some(())
        });
    }
    k.apply(&pod("normal", "100m", json!({})));
    assert_eq!(wait_bound(&k, "normal"), "n1");
    assert!(
        !gone(&k, &["cm", "mystery"]),
        "a dependent of an unknown kind is kept"
    );
    let log = log_of(&server);
    assert_eq!(
        log.matches("is of a kind the API server does not serve")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("cannot read the pod's requests").count(),
        1,
        "{log}"
    );
}
