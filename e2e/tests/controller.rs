//! The Stack controller inside `berth up`, driven as a user would (the real kubectl) and observed through the
//! API: a Stack becomes its Secret, claim, Services and Pods with labels and owner references, its status
//! follows kstatus, the app starts only once the database and Redis are Ready, drift is put back, a Stack at
//! rest writes nothing, and deletion honours both policies. `berth up --disable-agent` runs no node agent: the
//! tests report Pod readiness themselves, as a kubelet would.

use std::future::Future;
use std::time::{Duration, Instant};

use berth_api::Stack;
use berth_e2e::{Kubectl, Server};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// How long the controller may take to react.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long garbage collection may take: the collector refreshes discovery when a CRD (the Stack's) changes.
const GC_DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns Some, failing the test after `DEADLINE`.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

async fn eventually_within<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Cluster {
    server: Server,
    kubectl: Kubectl,
    client: Client,
}

impl Cluster {
    /// `berth up` with the Stack CRD installed.
    async fn start() -> Cluster {
        let server = Server::start_up(&["--disable-agent"]);
        let client = server.client().await;
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
        Cluster {
            kubectl: Kubectl::new(&server),
            server,
            client,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn get<K>(&self, name: &str) -> Option<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// Waits for an object to exist.
    async fn exists<K>(&self, name: &str) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        eventually(&format!("{name} to exist"), || self.get::<K>(name)).await
    }

    /// Waits for an object to be gone (deleted by the controller, or collected with its owner).
    async fn gone<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        eventually_within(GC_DEADLINE, &format!("{name} to be gone"), || async {
            self.get::<K>(name).await.is_none().then_some(())
        })
        .await
    }

    async fn stack(&self, name: &str) -> Stack {
        self.get::<Stack>(name)
            .await
            .unwrap_or_else(|| panic!("Stack {name} is gone"))
    }

    /// Reports a Pod Running and Ready, as the kubelet would once its readiness probe passes.
    async fn report_ready(&self, name: &str) {
        let pods: Api<Pod> = self.api();
        eventually(&format!("Pod {name} to take a Ready status"), || async {
            let pod = pods.get(name).await.ok()?;
            let mut conditions: Vec<Value> = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .map(|c| c.iter().map(|c| serde_json::to_value(c).unwrap()).collect())
                .unwrap_or_default();
            conditions.retain(|c| c["type"] != "Ready");
            conditions.push(json!({"type": "Ready", "status": "True"}));
            let patch = json!({
                "metadata": {"resourceVersion": pod.resource_version()},
                "status": {"phase": "Running", "conditions": conditions},
            });
            pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    async fn pods(&self, selector: &str) -> Vec<Pod> {
        self.api::<Pod>()
            .list(&ListParams::default().labels(selector))
            .await
            .expect("listing Pods")
            .items
    }

    async fn events_about(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = self.api();
        events
            .list(&ListParams::default())
            .await
            .expect("listing events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name))
            })
            .collect()
    }
}

impl Drop for Cluster {
    /// A failed test shows what `berth up` logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.server.data_dir.path().join("apiserver.log"))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- berth up log (last 200 lines) ---\n{}",
                lines[lines.len().saturating_sub(200)..].join("\n")
            );
        }
    }
}

fn manifest(name: &str, policy: &str) -> String {
    json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "app": {
                "image": "busybox:1.36",
                "command": ["httpd", "-f", "-p", "8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
            },
            "database": {
                "image": "postgres:15",
                "databaseName": name,
                "user": name,
                "storage": {"size": "1Gi"},
            },
            "redis": {"image": "redis:7"},
            "deletionPolicy": policy,
        },
    })
    .to_string()
}

fn condition<'a>(stack: &'a Stack, type_: &str) -> Option<&'a str> {
    stack
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Asserts the labels and the controller owner reference every object of a Stack carries.
fn assert_owned(meta: &kube::api::ObjectMeta, stack: &Stack, component: &str) {
    let labels = meta.labels.clone().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    assert_eq!(
        labels.get("berth.dev/stack").map(String::as_str),
        Some(stack.name_any().as_str()),
        "{name}"
    );
    assert_eq!(
        labels.get("berth.dev/component").map(String::as_str),
        Some(component),
        "{name}"
    );
    let owners = meta.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{name}: {owners:?}");
    assert_eq!(owners[0].kind, "Stack");
    assert_eq!(owners[0].uid, stack.uid().unwrap_or_default());
    assert_eq!(owners[0].controller, Some(true));
}

#[tokio::test]
async fn a_stack_becomes_its_objects_starts_in_order_and_converges() {
    let cluster = Cluster::start().await;
    cluster
        .kubectl
        .ok_stdin(&["apply", "-f", "-"], Some(&manifest("shop", "Retain")));

    // The objects, labelled and owned.
    let secret: Secret = cluster.exists("shop-db-credentials").await;
    let claim: PersistentVolumeClaim = cluster.exists("shop-db-data").await;
    let db: Pod = cluster.exists("shop-db").await;
    let redis: Pod = cluster.exists("shop-redis").await;
    let stack = cluster.stack("shop").await;
    assert_eq!(stack.finalizers(), ["berth.dev/cleanup"]);
    assert_owned(&secret.metadata, &stack, "database");
    assert_owned(&claim.metadata, &stack, "database");
    assert_owned(&db.metadata, &stack, "database");
    assert_owned(&redis.metadata, &stack, "redis");
    let password = secret.data.unwrap_or_default()["password"].0.clone();
    assert_eq!(password.len(), 24);
    assert!(password.iter().all(u8::is_ascii_alphanumeric));
    for (service, component) in [
        ("shop-db", "database"),
        ("shop-redis", "redis"),
        ("shop-app", "app"),
    ] {
        let service: Service = cluster.exists(service).await;
        assert_owned(&service.metadata, &stack, component);
        let spec = service.spec.unwrap_or_default();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            spec.selector.unwrap_or_default()["berth.dev/component"],
            component
        );
    }

    // kstatus: Ready from the first reconcile, Reconciling while rolling out, for this generation.
    let stack = eventually("the first status", || async {
        let stack = cluster.stack("shop").await;
        (condition(&stack, "Reconciling") == Some("True")).then_some(stack)
    })
    .await;
    assert_eq!(condition(&stack, "Ready"), Some("False"));
    assert_eq!(condition(&stack, "Stalled"), Some("False"));
    let status = stack.status.clone().unwrap();
    assert_eq!(status.observed_generation, stack.metadata.generation);
    eventually("a Created event for the database Pod", || async {
        cluster
            .events_about("shop")
            .await
            .into_iter()
            .any(|e| {
                e.reason.as_deref() == Some("Created")
                    && e.note.as_deref() == Some("Created database Pod shop-db")
            })
            .then_some(())
    })
    .await;

    // Order: the app waits for the database and Redis.
    assert!(cluster.pods("berth.dev/component=app").await.is_empty());
    cluster.report_ready("shop-db").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        cluster.pods("berth.dev/component=app").await.is_empty(),
        "the app must not start before Redis is Ready"
    );
    cluster.report_ready("shop-redis").await;
    let app = eventually("the app Pod", || async {
        cluster
            .pods("berth.dev/stack=shop,berth.dev/component=app")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_owned(&app.metadata, &stack, "app");
    cluster.report_ready(&app.name_any()).await;
    let stack = eventually("the Stack to be Ready", || async {
        let stack = cluster.stack("shop").await;
        (condition(&stack, "Ready") == Some("True")).then_some(stack)
    })
    .await;
    assert_eq!(condition(&stack, "Reconciling"), Some("False"));

    // At rest, nothing is written: not the Stack, not what it owns.
    let versions = |stack: &Stack, secret: &Secret, service: &Service| {
        (
            stack.resource_version(),
            secret.resource_version(),
            service.resource_version(),
        )
    };
    let before = versions(
        &stack,
        &cluster.exists("shop-db-credentials").await,
        &cluster.exists("shop-app").await,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = versions(
        &cluster.stack("shop").await,
        &cluster.exists("shop-db-credentials").await,
        &cluster.exists("shop-app").await,
    );
    assert_eq!(before, after, "a Stack at rest writes nothing");

    // Drift: a deleted Service comes back.
    let old: Service = cluster.exists("shop-redis").await;
    cluster.kubectl.ok(&["delete", "service", "shop-redis"]);
    let back = eventually("the Service to come back", || async {
        let service: Service = cluster.get("shop-redis").await?;
        (service.uid() != old.uid()).then_some(service)
    })
    .await;
    assert_owned(&back.metadata, &stack, "redis");

    // A spec change: observedGeneration follows, and the app rolls to a new template.
    cluster.kubectl.ok(&[
        "patch",
        "stack",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"app":{"env":[{"name":"GREETING","value":"hello"}]}}}"#,
    ]);
    let stack = eventually("observedGeneration 2", || async {
        let stack = cluster.stack("shop").await;
        (stack.status.as_ref()?.observed_generation == Some(2)).then_some(stack)
    })
    .await;
    assert_eq!(condition(&stack, "Reconciling"), Some("True"));
    let new_app = eventually("a Pod of the new app template", || async {
        cluster
            .pods("berth.dev/component=app")
            .await
            .into_iter()
            .find(|p| p.name_any() != app.name_any())
    })
    .await;
    assert!(
        cluster.get::<Pod>(&app.name_any()).await.is_some(),
        "the old app Pod stays until the new one is Ready"
    );
    cluster.report_ready(&new_app.name_any()).await;
    cluster.gone::<Pod>(&app.name_any()).await;
}

#[tokio::test]
async fn deletion_keeps_data_with_retain_and_removes_it_with_delete() {
    let cluster = Cluster::start().await;
    cluster
        .kubectl
        .ok_stdin(&["apply", "-f", "-"], Some(&manifest("keep", "Retain")));
    cluster
        .kubectl
        .ok_stdin(&["apply", "-f", "-"], Some(&manifest("drop", "Delete")));
    for name in ["keep", "drop"] {
        let _: PersistentVolumeClaim = cluster.exists(&format!("{name}-db-data")).await;
        let _: Secret = cluster.exists(&format!("{name}-db-credentials")).await;
        let _: Pod = cluster.exists(&format!("{name}-db")).await;
        let _: Service = cluster.exists(&format!("{name}-app")).await;
    }
    let password = cluster
        .exists::<Secret>("keep-db-credentials")
        .await
        .data
        .unwrap_or_default()["password"]
        .clone();

    let stacks: Api<Stack> = cluster.api();
    for name in ["keep", "drop"] {
        stacks
            .delete(name, &DeleteParams::default())
            .await
            .expect("deleting the Stack");
    }
    for name in ["keep", "drop"] {
        cluster.gone::<Stack>(name).await;
        // Pods and Services go with the Stack (garbage collection through owner references).
        cluster.gone::<Pod>(&format!("{name}-db")).await;
        cluster.gone::<Service>(&format!("{name}-app")).await;
    }

    // Retain: the data outlives the Stack, no longer owned by it.
    let claim: PersistentVolumeClaim = cluster.exists("keep-db-data").await;
    let secret: Secret = cluster.exists("keep-db-credentials").await;
    assert!(claim.owner_references().is_empty(), "{claim:?}");
    assert!(secret.owner_references().is_empty(), "{secret:?}");
    // Delete: the data goes.
    cluster.gone::<PersistentVolumeClaim>("drop-db-data").await;
    cluster.gone::<Secret>("drop-db-credentials").await;

    // A new Stack of the same name adopts what was kept, password included.
    cluster
        .kubectl
        .ok_stdin(&["apply", "-f", "-"], Some(&manifest("keep", "Retain")));
    let stack = eventually("the new Stack's finalizer", || async {
        let stack = cluster.get::<Stack>("keep").await?;
        (!stack.finalizers().is_empty()).then_some(stack)
    })
    .await;
    let adopted = eventually("the kept Secret to be adopted", || async {
        let secret: Secret = cluster.get("keep-db-credentials").await?;
        (!secret.owner_references().is_empty()).then_some(secret)
    })
    .await;
    assert_owned(&adopted.metadata, &stack, "database");
    assert_eq!(adopted.data.unwrap_or_default()["password"], password);
}

impl Cluster {
    /// Reports the state of a Pod's only container, as the kubelet would: `state` is a core/v1
    /// ContainerState (`{"waiting": {...}}` or `{"terminated": {...}}`).
    async fn report_container(&self, name: &str, phase: &str, state: Value) {
        let pods: Api<Pod> = self.api();
        eventually(&format!("Pod {name} to take its status"), || async {
            let pod = pods.get(name).await.ok()?;
            let container = pod.spec.as_ref()?.containers.first()?.clone();
            let patch = json!({
                "metadata": {"resourceVersion": pod.resource_version()},
                "status": {
                    "phase": phase,
                    "containerStatuses": [{
                        "name": container.name,
                        "image": container.image,
                        "imageID": "",
                        "ready": false,
                        "restartCount": 0,
                        "state": state,
                    }],
                },
            });
            pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    /// The Stack's check Pod for `component`, once there is one other than `not`.
    async fn check_pod(&self, stack: &str, component: &str, not: Option<&str>) -> Pod {
        let selector = format!(
            "berth.dev/stack={stack},berth.dev/component=check,berth.dev/check-for={component}"
        );
        eventually(&format!("a check Pod for the {component}"), || async {
            self.pods(&selector).await.into_iter().find(|p| {
                Some(p.name_any().as_str()) != not && p.metadata.deletion_timestamp.is_none()
            })
        })
        .await
    }

    /// Edits `spec.database.image` of Stack `name`, as `kubectl patch --type merge` does.
    async fn set_database_image(&self, name: &str, image: &str) {
        let patch = json!({"spec": {"database": {"image": image}}});
        self.api::<Stack>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patching the Stack");
    }

    /// Creates `manifest(name, ...)` and plays the kubelet until the Stack is Ready.
    async fn ready_stack(&self, name: &str) -> Stack {
        let stack: Stack = serde_json::from_str(&manifest(name, "Delete")).expect("a Stack");
        self.api::<Stack>()
            .create(&PostParams::default(), &stack)
            .await
            .expect("creating the Stack");
        let _: Pod = self.exists(&format!("{name}-db")).await;
        self.report_ready(&format!("{name}-db")).await;
        self.report_ready(&format!("{name}-redis")).await;
        let app = eventually("the app Pod", || async {
            self.pods(&format!("berth.dev/stack={name},berth.dev/component=app"))
                .await
                .into_iter()
                .next()
        })
        .await;
        self.report_ready(&app.name_any()).await;
        eventually("the Stack to be Ready", || async {
            let stack = self.stack(name).await;
            (condition(&stack, "Ready") == Some("True")).then_some(stack)
        })
        .await
    }
}

#[tokio::test]
async fn a_database_image_that_cannot_be_pulled_stalls_and_keeps_the_running_database() {
    let cluster = Cluster::start().await;
    cluster.ready_stack("pull").await;
    let db: Pod = cluster.exists("pull-db").await;

    cluster
        .set_database_image("pull", "127.0.0.1:1/berth/postgres:missing")
        .await;
    // The controller tries the new image in a check Pod first; the running database is not touched.
    let check = cluster.check_pod("pull", "database", None).await;
    let spec = check.spec.clone().unwrap_or_default();
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("127.0.0.1:1/berth/postgres:missing")
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert!(spec.volumes.unwrap_or_default().is_empty());
    assert_eq!(
        check.owner_references()[0].uid,
        db.owner_references()[0].uid
    );
    // Playing the kubelet: the pull fails.
    cluster
        .report_container(
            &check.name_any(),
            "Pending",
            json!({"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}}),
        )
        .await;
    let stack = eventually("the Stack to stall", || async {
        let stack = cluster.stack("pull").await;
        (condition(&stack, "Stalled") == Some("True")).then_some(stack)
    })
    .await;
    let stalled = stack
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .clone();
    assert_eq!(stalled.reason, "ImagePullFailed");
    assert!(
        stalled.message.starts_with(
            "spec.database.image \"127.0.0.1:1/berth/postgres:missing\" cannot be pulled (ErrImagePull"
        ),
        "{}",
        stalled.message
    );
    assert_eq!(condition(&stack, "Reconciling"), Some("False"));
    eventually("a Stalled warning event", || async {
        cluster
            .events_about("pull")
            .await
            .into_iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("Stalled")
            })
            .then_some(())
    })
    .await;
    let kept: Pod = cluster.exists("pull-db").await;
    assert_eq!(kept.uid(), db.uid(), "the running database Pod is kept");
    assert!(kept.metadata.deletion_timestamp.is_none());

    // A good image: checked, then the database is replaced and the check Pod goes.
    cluster.set_database_image("pull", "postgres:16").await;
    let good = cluster
        .check_pod("pull", "database", Some(&check.name_any()))
        .await;
    cluster.gone::<Pod>(&check.name_any()).await;
    cluster
        .report_container(
            &good.name_any(),
            "Succeeded",
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
        )
        .await;
    let replaced = eventually("the database Pod to be replaced", || async {
        let pod: Pod = cluster.get("pull-db").await?;
        (pod.uid() != db.uid()).then_some(pod)
    })
    .await;
    assert_eq!(
        replaced.spec.unwrap_or_default().containers[0]
            .image
            .as_deref(),
        Some("postgres:16")
    );
    cluster.gone::<Pod>(&good.name_any()).await;
    let stack = cluster.stack("pull").await;
    assert_eq!(condition(&stack, "Stalled"), Some("False"));
}
