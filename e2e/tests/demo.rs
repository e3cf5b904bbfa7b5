//! The demo path end to end (issues 7 and 8), as a user walks it: the images `make images` builds from Debian
//! packages (PostgreSQL 15, Redis 7, the Flask app) served from a registry of the test's own, the sample Stack
//! (config/samples/stack.yaml) applied to `berth up` with the test's own data directory, node name, Pod network
//! (the harness picks a bridge and a /24) and app hostPort, and then: Ready in order, the app answering on
//! 127.0.0.1 with Redis and PostgreSQL behind it, `kubectl logs` and `exec`, lost Pods coming back with their
//! data, an env change rolling the app, a bad image stalling the Stack, and deletion under both policies.
//!
//! The harness tears each `berth up` down with `berth down` (containers, namespaces, bridge); a failing test
//! prints the Stacks, their Pods, claims, volumes, events and the tail of berth's log first.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use berth_e2e::demo::{Images, visit, wait_healthy};
use berth_e2e::{Kubectl, Server, free_port, output_text, unique, wait_every};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

/// How long `berth up` may take to register its Node.
const NODE_READY: Duration = Duration::from_secs(120);
/// From apply to Ready, cold: three image pulls, initdb and the app's first probes on a shared 2-core machine.
const ROLLOUT: Duration = Duration::from_secs(420);
/// One step of a running Stack (a Pod replaced, a rollout, a condition changing).
const STEP: Duration = Duration::from_secs(240);
/// Garbage collection of a deleted Stack's objects: the collector refreshes discovery every 30 s.
const COLLECT: Duration = Duration::from_secs(120);
/// How often to look again: each look is a kubectl process.
const POLL: Duration = Duration::from_millis(500);

fn wait<T>(what: &str, deadline: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_every(what, deadline, POLL, check)
}

/// `berth up` with its own data directory, node and Pod network, the Stack CRD installed, and the demo images in
/// a registry of its own. Torn down on drop (by the harness), containers and network included.
struct Demo {
    server: Server,
    kubectl: Kubectl,
    images: Images,
}

impl Demo {
    fn start(test: &str) -> Demo {
        let images = Images::start();
        let node = unique(test);
        let server = Server::start_up(&["--node-name", &node]);
        let demo = Demo {
            kubectl: Kubectl::new(&server),
            server,
            images,
        };
        wait("the node to be Ready", NODE_READY, || {
            let out = demo.kubectl(&[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
        let crds = Server::repo_root().join("crds");
        demo.kubectl_ok(&["apply", "-f", &crds.to_string_lossy()]);
        demo.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/stacks.berth.dev",
            "--timeout=60s",
        ]);
        demo
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl.run(args, None)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl.ok(args)
    }

    /// `kubectl patch stack <name> --type <kind> -p <patch>` (kind `merge` or `json`).
    fn patch_stack(&self, name: &str, kind: &str, patch: &Value) {
        self.kubectl_ok(&[
            "patch",
            "stack",
            name,
            "--type",
            kind,
            "-p",
            &patch.to_string(),
        ]);
    }

    fn apply(&self, object: &Value) {
        self.kubectl
            .ok_stdin(&["apply", "-f", "-"], Some(&object.to_string()));
    }

    /// `kubectl get <what> -o json`, or None when it fails (not found).
    fn get(&self, what: &[&str]) -> Option<Value> {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits for a condition of a Stack to have a status (for the Stack's current generation); returns the Stack.
    fn wait_condition(&self, name: &str, type_: &str, status: &str, deadline: Duration) -> Value {
        wait(&format!("Stack {name} {type_}={status}"), deadline, || {
            let stack = self.get(&["stack", name])?;
            let current = stack["status"]["observedGeneration"] == stack["metadata"]["generation"];
            (current && condition(&stack, type_)["status"] == status).then_some(stack)
        })
    }

    /// The Pods of a Stack's component, by name.
    fn pods(&self, stack: &str, component: &str) -> Vec<Value> {
        let selector = format!("berth.dev/stack={stack},berth.dev/component={component}");
        self.get(&["pods", "-l", &selector])
            .and_then(|list| list["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits for exactly one Pod of a component, Ready, with a uid other than `not`; returns it.
    fn ready_pod(&self, stack: &str, component: &str, not: Option<&str>) -> Value {
        wait(
            &format!("one Ready {component} Pod of {stack} (not {not:?})"),
            STEP,
            || {
                let pods = self.pods(stack, component);
                let [pod] = pods.as_slice() else {
                    return None;
                };
                let fresh = not.is_none_or(|uid| pod["metadata"]["uid"] != uid);
                (fresh && pod_ready(pod)).then(|| pod.clone())
            },
        )
    }

    /// The Events about an object (events.k8s.io, as kube-rs' Recorder and the agent write them).
    fn events_about(&self, name: &str) -> Vec<Value> {
        self.get(&["events.v1.events.k8s.io"])
            .and_then(|list| list["items"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["regarding"]["name"] == name)
            .collect()
    }

    /// `kubectl exec <pod> -- <command>`: its stdout, the test failing when it fails.
    fn exec(&self, pod: &str, command: &[&str]) -> String {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(command);
        self.kubectl_ok(&args)
    }

    /// Rows in the demo's visit log, read with `psql` inside the database Pod.
    fn logged_visits(&self, db_pod: &str) -> u64 {
        let out = self.exec(
            db_pod,
            &[
                "psql",
                "-U",
                "demo",
                "demo",
                "-Atc",
                "SELECT count(*) FROM visits",
            ],
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("psql printed a count: {out:?}"))
    }

    /// Everything that explains a failure: the Stacks, Pods (described, with their events), claims, volumes,
    /// events and berth's log tail.
    fn diagnose(&self) {
        for args in [
            &["get", "stacks", "-o", "yaml"][..],
            &["get", "pods,services,pvc,pv,secrets", "-o", "wide"],
            &["describe", "pods"],
            &["get", "events", "--sort-by=.metadata.creationTimestamp"],
        ] {
            let out = self.kubectl(args);
            eprintln!("--- kubectl {} ---\n{}", args.join(" "), output_text(&out));
        }
        let log = std::fs::read_to_string(self.server.data_dir.path().join("apiserver.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "--- berth up log (last 300 lines) ---\n{}",
            lines[lines.len().saturating_sub(300)..].join("\n")
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.diagnose();
        }
    }
}

/// A condition of a Stack (Null when absent).
fn condition<'a>(stack: &'a Value, type_: &str) -> &'a Value {
    stack["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Seconds since the epoch of an RFC 3339 time in a JSON value.
fn seconds(time: &Value) -> i64 {
    let time: Time = serde_json::from_value(time.clone())
        .unwrap_or_else(|e| panic!("{time} is not an RFC 3339 time: {e}"));
    time.0.as_second()
}

/// When an Event happened: `eventTime`, or the deprecated first timestamp of a core/v1 Event.
fn event_time(event: &Value) -> i64 {
    match &event["eventTime"] {
        Value::Null => seconds(&event["deprecatedFirstTimestamp"]),
        time => seconds(time),
    }
}

/// The sample Stack (config/samples/stack.yaml) renamed, with this test's registry, app hostPort and policy.
fn demo_stack(name: &str, registry: &str, host_port: u16, policy: &str) -> Value {
    let path = Server::repo_root().join("config/samples/stack.yaml");
    let sample = std::fs::read_to_string(&path).expect("reading config/samples/stack.yaml");
    let mut stack: Value = serde_yaml::from_str(&sample).expect("the sample is one YAML document");
    stack["metadata"]["name"] = json!(name);
    for component in ["app", "database", "redis"] {
        let image = &mut stack["spec"][component]["image"];
        let reference = image.as_str().unwrap_or_default();
        let path = reference.strip_prefix("127.0.0.1:5000/").unwrap_or_else(|| {
            panic!("the sample's {component} image {reference:?} is in the registry of `make images`")
        });
        *image = json!(format!("{registry}/{path}"));
    }
    let port = &mut stack["spec"]["app"]["ports"][0];
    assert_eq!(
        port["hostPort"], 5500,
        "the sample publishes the app on 5500"
    );
    port["hostPort"] = json!(host_port);
    stack["spec"]["deletionPolicy"] = json!(policy);
    stack
}

/// The Stack's Events show the database and Redis created before the app, and the app Pod was created only
/// once the database and Redis Pods were Ready.
fn assert_started_in_order(demo: &Demo, stack: &str, app: &Value) {
    let events = demo.events_about(stack);
    let created = |note: &str| -> i64 {
        let event = events
            .iter()
            .find(|e| e["reason"] == "Created" && e["note"] == note)
            .unwrap_or_else(|| panic!("an Event {note:?} about Stack {stack}: {events:#?}"));
        event_time(event)
    };
    let db_created = created(&format!("Created database Pod {stack}-db"));
    let redis_created = created(&format!("Created redis Pod {stack}-redis"));
    let app_created = created(&format!("Created app Pod {}", name(app)));
    assert!(
        db_created <= app_created && redis_created <= app_created,
        "the app Pod was created ({app_created}) after the database ({db_created}) and Redis ({redis_created})"
    );
    assert!(
        events.iter().any(|e| e["reason"] == "Ready"),
        "a Ready Event about Stack {stack}: {events:#?}"
    );
    let app_pod_created = seconds(&app["metadata"]["creationTimestamp"]);
    for component in ["database", "redis"] {
        let pods = demo.pods(stack, component);
        let ready = pods
            .first()
            .and_then(|pod| pod["status"]["conditions"].as_array())
            .and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .unwrap_or_else(|| panic!("the {component} Pod is Ready: {pods:#?}"));
        let ready_since = seconds(&ready["lastTransitionTime"]);
        assert!(
            ready_since <= app_pod_created,
            "the {component} Pod was Ready (at {ready_since}) before the app Pod was created ({app_pod_created})"
        );
    }
}

#[test]
fn the_demo_stack_serves_keeps_its_data_across_pod_loss_rolls_and_survives_retained_deletion() {
    let demo = Demo::start("demo");
    let port = free_port();
    let manifest = demo_stack("shop", &demo.images.addr, port, "Retain");
    let base = format!("http://127.0.0.1:{port}");
    demo.apply(&manifest);

    // Ready, with its endpoint, in order: the database and Redis Ready before the app starts.
    let stack = demo.wait_condition("shop", "Ready", "True", ROLLOUT);
    assert_eq!(stack["status"]["phase"], "Ready");
    assert_eq!(condition(&stack, "Stalled")["status"], "False");
    assert_eq!(condition(&stack, "Reconciling")["status"], "False");
    assert_eq!(
        stack["status"]["endpoints"][0],
        json!({"name": "app", "url": format!("http://127.0.0.1:{port}")})
    );
    let app = demo.ready_pod("shop", "app", None);
    assert_started_in_order(&demo, "shop", &app);
    let printed = demo.kubectl_ok(&["get", "stack", "shop"]);
    assert!(
        printed.contains("Ready") && printed.contains(&format!("http://127.0.0.1:{port}")),
        "kubectl get stack prints the phase and the endpoint: {printed}"
    );

    // The app through its hostPort: each load changes the page (Redis counts, PostgreSQL logs).
    wait_healthy(&base, STEP);
    let (first, first_page) = visit(&base);
    let (second, second_page) = visit(&base);
    assert_eq!(second, first + 1, "Redis counts each visit");
    assert_ne!(first_page, second_page, "each load changes the page");
    let mut visits = second;

    // kubectl logs and exec on the stack's Pods.
    let app_name = name(&app);
    let log = demo.kubectl_ok(&["logs", &app_name]);
    assert!(
        log.contains("\"GET / HTTP/1.1\" 200"),
        "the app logs its requests: {log}"
    );
    let log = demo.kubectl_ok(&["logs", "shop-db"]);
    assert!(
        log.contains("database system is ready to accept connections"),
        "{log}"
    );
    let log = demo.kubectl_ok(&["logs", "--tail", "20", "shop-redis"]);
    assert!(log.contains("Ready to accept connections"), "{log}");
    assert_eq!(demo.logged_visits("shop-db"), visits);
    let tables = demo.exec("shop-db", &["psql", "-U", "demo", "demo", "-Atc", r"\dt"]);
    assert!(
        tables.contains("|visits|table|"),
        "psql lists the visits table: {tables}"
    );
    let counted = demo.exec("shop-redis", &["redis-cli", "get", "visits"]);
    assert_eq!(counted.trim(), visits.to_string());
    let url = demo.exec(&app_name, &["printenv", "DATABASE_URL"]);
    assert!(
        url.starts_with("postgresql://demo:") && url.trim().ends_with("@shop-db:5432/demo"),
        "the app finds the database by its Service name: {url}"
    );

    // A deleted app Pod comes back, and the app goes on counting.
    demo.kubectl_ok(&["delete", "pod", &app_name, "--timeout=120s"]);
    let app = demo.ready_pod("shop", "app", Some(&uid(&app)));
    assert_eq!(
        name(&app),
        app_name,
        "the app Pod is recreated under its name"
    );
    wait_healthy(&base, STEP);
    let (count, _) = visit(&base);
    visits += 1;
    assert_eq!(count, visits);

    // The database Pod replaced: a new Pod on the same claim, the visit log intact.
    let db = demo.ready_pod("shop", "database", None);
    let claim_before = demo.get(&["pvc", "shop-db-data"]).expect("the claim");
    demo.kubectl_ok(&["delete", "pod", "shop-db", "--timeout=120s"]);
    demo.ready_pod("shop", "database", Some(&uid(&db)));
    let claim_after = demo.get(&["pvc", "shop-db-data"]).expect("the claim");
    assert_eq!(uid(&claim_after), uid(&claim_before), "the claim is kept");
    assert_eq!(demo.logged_visits("shop-db"), visits, "the visits survive");
    demo.wait_condition("shop", "Ready", "True", STEP);
    wait_healthy(&base, STEP);
    let (count, page) = visit(&base);
    visits += 1;
    assert_eq!(count, visits, "Redis kept counting");
    assert_eq!(demo.logged_visits("shop-db"), visits);
    assert!(
        page.matches("<li>#").count() >= 3,
        "the page lists the earlier visits from PostgreSQL: {page}"
    );

    // An env change rolls the app: with a hostPort the old Pod goes first (two Pods cannot hold one port).
    demo.patch_stack(
        "shop",
        "json",
        &json!([{"op": "add", "path": "/spec/app/env/-", "value": {"name": "GREETING", "value": "rolled"}}]),
    );
    let stack = demo.wait_condition("shop", "Ready", "True", STEP);
    assert_eq!(stack["status"]["observedGeneration"], 2);
    let rolled = demo.ready_pod("shop", "app", Some(&uid(&app)));
    assert_ne!(name(&rolled), app_name, "a new template names a new Pod");
    assert!(
        demo.get(&["pod", &app_name]).is_none(),
        "the old app Pod is gone"
    );
    assert_eq!(
        demo.exec(&name(&rolled), &["printenv", "GREETING"]).trim(),
        "rolled"
    );
    assert!(
        demo.events_about("shop")
            .iter()
            .any(|e| e["reason"] == "RollingOut"),
        "a RollingOut Event"
    );
    // Recreated, not surged: the old Pod was being stopped before the new one was made.
    let stopped = demo
        .events_about(&app_name)
        .iter()
        .filter(|e| e["reason"] == "Killing" && e["regarding"]["uid"] == uid(&app))
        .map(event_time)
        .min()
        .expect("a Killing Event about the old app Pod");
    let made = seconds(&rolled["metadata"]["creationTimestamp"]);
    assert!(
        stopped <= made,
        "the old app Pod was stopped (at {stopped}) before the new one was created ({made})"
    );
    wait_healthy(&base, STEP);
    let (count, _) = visit(&base);
    visits += 1;
    assert_eq!(count, visits);

    // Deleted with deletionPolicy Retain: Pods and Services go, the claim and the generated Secret stay, unowned.
    let secret = demo
        .get(&["secret", "shop-db-credentials"])
        .expect("the generated Secret");
    demo.kubectl_ok(&["delete", "stack", "shop", "--timeout=120s"]);
    wait("the Stack's Pods and Services to go", COLLECT, || {
        let left = demo.get(&["pods,services", "-l", "berth.dev/stack=shop"])?;
        left["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
    let claim = demo
        .get(&["pvc", "shop-db-data"])
        .expect("the claim is kept");
    let kept = demo
        .get(&["secret", "shop-db-credentials"])
        .expect("the Secret is kept");
    assert_eq!(uid(&claim), uid(&claim_before));
    assert_eq!(uid(&kept), uid(&secret));
    for object in [&claim, &kept] {
        assert!(
            object["metadata"]["ownerReferences"].is_null(),
            "{} no longer belongs to the Stack: {object}",
            name(object)
        );
    }

    // The same Stack applied again adopts the kept data: the visit log goes on.
    demo.apply(&manifest);
    demo.wait_condition("shop", "Ready", "True", ROLLOUT);
    wait_healthy(&base, STEP);
    visit(&base);
    visits += 1;
    assert_eq!(
        demo.logged_visits("shop-db"),
        visits,
        "the new Stack's database holds every earlier visit"
    );
}

#[test]
fn a_bad_image_stalls_the_stack_until_fixed_and_delete_policy_removes_its_data() {
    let demo = Demo::start("demo-stall");
    let mut manifest = demo_stack("broken", &demo.images.addr, free_port(), "Delete");
    let good = manifest["spec"]["database"]["image"].clone();
    let bad = format!("{}/berth/postgres:no-such-tag", demo.images.addr);
    manifest["spec"]["database"]["image"] = json!(bad);
    demo.apply(&manifest);

    // Stalled, with a message that names the image and says what to change; nothing after the database starts.
    let stack = demo.wait_condition("broken", "Stalled", "True", STEP);
    let stalled = condition(&stack, "Stalled");
    assert_eq!(stalled["reason"], "ImagePullFailed", "{stalled}");
    let message = stalled["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&bad) && message.contains("fix the image reference"),
        "{message}"
    );
    assert_eq!(condition(&stack, "Ready")["status"], "False");
    assert_eq!(stack["status"]["phase"], "Failed");
    let events = demo.events_about("broken");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "Stalled"),
        "a Warning Event says the Stack stalled: {events:#?}"
    );
    assert!(demo.pods("broken", "app").is_empty(), "the app waits");

    // Fixed: the database Pod is replaced with the good image and the Stack is no longer stalled.
    demo.patch_stack(
        "broken",
        "merge",
        &json!({"spec": {"database": {"image": good}}}),
    );
    demo.wait_condition("broken", "DatabaseReady", "True", ROLLOUT);
    let stack = demo.wait_condition("broken", "Stalled", "False", STEP);
    assert_eq!(stack["status"]["observedGeneration"], 2);

    // A migration (compose's `service_completed_successfully`) that fails stalls the rollout, naming it, and
    // the app that runs stays.
    demo.wait_condition("broken", "Ready", "True", ROLLOUT);
    let app = demo.ready_pod("broken", "app", None);
    let failing = "import sys; print('no such revision', file=sys.stderr); sys.exit(3)";
    demo.patch_stack(
        "broken",
        "merge",
        &json!({"spec": {"app": {"migrate": {"command": ["python3", "-c", failing]}}}}),
    );
    let stack = demo.wait_condition("broken", "Stalled", "True", STEP);
    let stalled = condition(&stack, "Stalled");
    assert_eq!(stalled["reason"], "MigrationFailed", "{stalled}");
    let [still] = demo
        .pods("broken", "app")
        .try_into()
        .unwrap_or_else(|pods: Vec<Value>| panic!("the running app Pod and no other: {pods:#?}"));
    assert_eq!(uid(&still), uid(&app), "the running app is kept");
    assert!(pod_ready(&still));

    // A migration that works (a table created through the DATABASE_URL the app gets), with a change of the
    // app: the migration runs to completion before the new app Pod starts.
    let fixed = "import os, psycopg2\n\
                 with psycopg2.connect(os.environ['DATABASE_URL']) as c:\n    \
                 c.cursor().execute('CREATE TABLE IF NOT EXISTS migrated (id int)')";
    demo.patch_stack(
        "broken",
        "json",
        &json!([
            {"op": "replace", "path": "/spec/app/migrate/command/2", "value": fixed},
            {"op": "add", "path": "/spec/app/env/-", "value": {"name": "SCHEMA", "value": "migrated"}},
        ]),
    );
    demo.wait_condition("broken", "Stalled", "False", STEP);
    demo.wait_condition("broken", "Ready", "True", STEP);
    let migration = demo
        .pods("broken", "migrate")
        .into_iter()
        .find(|p| p["status"]["phase"] == "Succeeded")
        .expect("the migration Pod succeeded");
    let new_app = demo.ready_pod("broken", "app", Some(&uid(&app)));
    let finished =
        &migration["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"];
    let started = &new_app["status"]["containerStatuses"][0]["state"]["running"]["startedAt"];
    assert!(
        seconds(finished) <= seconds(started),
        "the migration finished ({finished}) before the app started ({started})"
    );
    let db = demo.ready_pod("broken", "database", None);
    let table = demo.exec(
        &name(&db),
        &[
            "psql",
            "-U",
            "demo",
            "demo",
            "-Atc",
            "SELECT to_regclass('migrated')",
        ],
    );
    assert_eq!(table.trim(), "migrated", "the migration created its table");

    // The database's files on the node: the claim's volume directory.
    let claim = demo.get(&["pvc", "broken-db-data"]).expect("the claim");
    let volume = claim["spec"]["volumeName"]
        .as_str()
        .expect("the claim is bound")
        .to_owned();
    let pv = demo.get(&["pv", &volume]).expect("the claim's volume");
    let dir = pv["spec"]["hostPath"]["path"]
        .as_str()
        .expect("a local volume")
        .to_owned();
    assert!(
        Path::new(&dir).join("pgdata/PG_VERSION").is_file(),
        "PostgreSQL initialized its data in {dir}"
    );
    assert!(
        demo.get(&["secret", "broken-db-credentials"]).is_some(),
        "the generated Secret"
    );

    // Deleted with deletionPolicy Delete: the claim, its volume and directory, and the Secret go too.
    demo.kubectl_ok(&["delete", "stack", "broken", "--timeout=120s"]);
    wait("the claim, volume and Secret to go", COLLECT, || {
        (demo.get(&["pvc", "broken-db-data"]).is_none()
            && demo.get(&["pv", &volume]).is_none()
            && demo.get(&["secret", "broken-db-credentials"]).is_none())
        .then_some(())
    });
    wait("the volume's directory to be removed", COLLECT, || {
        (!Path::new(&dir).exists()).then_some(())
    });
    wait("the Stack's Pods to go", COLLECT, || {
        let left = demo.get(&["pods", "-l", "berth.dev/stack=broken"])?;
        left["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
}
