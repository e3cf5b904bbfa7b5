//! `reconcile` against a scripted API: each test lists the calls one reconcile must make, in order.

use std::collections::BTreeMap;

use berth_api::constants::{CONDITION_READY, CONDITION_STALLED};
use berth_api::{SecretKeyRef, StackPhase};
use futures::FutureExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::Value;

use super::*;
use crate::fixtures::{Call, FakeApi, Received};
use crate::mapping::desired;

const SAMPLE: &str = include_str!("../../../config/samples/stack.yaml");
const STACK: &str = "/apis/berth.dev/v1alpha1/namespaces/default/stacks/demo";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const CLAIMS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const PODS: &str = "/api/v1/namespaces/default/pods";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn sample() -> Stack {
    let mut stack: Stack = serde_yaml::from_str(SAMPLE).unwrap();
    stack.metadata.namespace = Some("default".into());
    stack.metadata.uid = Some("uid-1".into());
    stack.metadata.generation = Some(1);
    stack.metadata.resource_version = Some("10".into());
    stack
}

fn finalized(mut stack: Stack) -> Stack {
    stack.metadata.finalizers = Some(vec![FINALIZER.into()]);
    stack
}

fn deleting(mut stack: Stack, policy: DeletionPolicy) -> Stack {
    stack.spec.deletion_policy = policy;
    stack.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1_800_000_000).unwrap()));
    finalized(stack)
}

fn fill<K>(mut writer: Writer<K>, objects: Vec<K>)
where
    K: Resource<DynamicType = ()> + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// What the watches have seen.
#[derive(Default)]
struct Seen {
    pods: Vec<Pod>,
    services: Vec<Service>,
    secrets: Vec<Secret>,
    claims: Vec<PersistentVolumeClaim>,
}

fn context(client: Client, seen: Seen) -> Arc<Context> {
    let (pods, w) = reflector::store();
    fill(w, seen.pods);
    let (services, w) = reflector::store();
    fill(w, seen.services);
    let (secrets, w) = reflector::store();
    fill(w, seen.secrets);
    let (claims, w) = reflector::store();
    fill(w, seen.claims);
    let (stores, sync) = Stores::new(pods, services, secrets, claims);
    sync.now_or_never()
        .expect("filled stores are synced at once");
    Arc::new(Context::new(
        client,
        stores,
        Arc::new(State::default()),
        "test".into(),
    ))
}

fn apply_path(collection: &str, name: &str) -> String {
    format!("{collection}/{name}")
}

fn is_apply(call: &Received) -> bool {
    call.content_type == "application/apply-patch+yaml"
        && call.query.contains("fieldManager=berth-controller")
        && call.query.contains("force=true")
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// A Pod as the kubelet reports it once it runs and passes its readiness probe.
fn ready(mut pod: Pod) -> Pod {
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    pod
}

/// Plans until nothing is left to create, with every Pod Ready: the objects and status of a Stack at rest.
fn at_rest(stack: &Stack, password: &str) -> (Seen, StackStatus) {
    let d = desired(stack, password).unwrap();
    let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
    let mut stack = stack.clone();
    let mut observed = Observed::default();
    loop {
        let p = plan::plan(&stack, &d, &observed, &now);
        stack.status = Some(p.status.clone());
        let created: Vec<Pod> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Apply(Object::Pod(pod)) => Some(ready(pod.as_ref().clone())),
                _ => None,
            })
            .collect();
        if created.is_empty() {
            let secret = d.secret.clone().map(crate::drift::stored_secret);
            // The claims as last applied: the database's records the identity its data was made with.
            let claims = p
                .steps
                .iter()
                .filter_map(|s| match s {
                    Step::Apply(Object::Claim(claim)) => Some(claim.as_ref().clone()),
                    _ => None,
                })
                .collect();
            let seen = Seen {
                pods: observed.pods,
                services: d.services.clone(),
                secrets: secret.into_iter().collect(),
                claims,
            };
            return (seen, p.status);
        }
        observed.pods.extend(created);
    }
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_and_nothing_else() {
    let (client, api) = FakeApi::new(vec![
        Call::patch(STACK).returns(serde_json::to_value(finalized(sample())).unwrap()),
    ]);
    let ctx = context(client, Seen::default());
    let action = reconcile(Arc::new(sample()), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let sent = api.verify().await;
    assert_eq!(sent[0].content_type, "application/json-patch+json");
    assert_eq!(sent[0].body[1]["op"], "add");
    assert_eq!(sent[0].body[1]["value"], serde_json::json!([FINALIZER]));
}

#[tokio::test]
async fn a_new_stack_gets_its_secret_claims_services_database_and_redis_then_status() {
    let (client, api) = FakeApi::new(vec![
        Call::get(apply_path(SECRETS, "demo-db-credentials")).fails(404),
        Call::patch(apply_path(SECRETS, "demo-db-credentials")),
        Call::patch(apply_path(CLAIMS, "demo-db-data")),
        Call::patch(apply_path(SERVICES, "demo-db")),
        Call::patch(apply_path(SERVICES, "demo-redis")),
        Call::patch(apply_path(SERVICES, "demo-app")),
        Call::patch(apply_path(PODS, "demo-db")),
        Call::patch(apply_path(PODS, "demo-redis")),
        Call::patch(format!("{STACK}/status")).returns(serde_json::to_value(sample()).unwrap()),
        Call::post(EVENTS),
        Call::post(EVENTS),
    ]);
    let ctx = context(client, Seen::default());
    let action = reconcile(Arc::new(finalized(sample())), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(PROGRESS_REQUEUE));
    let sent = api.verify().await;

    assert!(
        sent[1..9].iter().all(is_apply),
        "every write is a forced server-side apply"
    );
    let password = sent[1].body["stringData"]["password"].as_str().unwrap();
    assert_eq!(password.len(), 24);
    for write in &sent[1..8] {
        let meta = &write.body["metadata"];
        assert_eq!(meta["labels"]["berth.dev/stack"], "demo", "{}", write.body);
        assert_eq!(meta["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
    }
    assert_eq!(
        sent[6].body["metadata"]["labels"]["berth.dev/component"],
        "database"
    );

    let status = &sent[8].body;
    assert!(
        status.get("spec").is_none(),
        "the status write carries no spec"
    );
    assert_eq!(condition(status, CONDITION_READY)["status"], "False");
    assert_eq!(condition(status, "Reconciling")["status"], "True");
    assert_eq!(condition(status, CONDITION_STALLED)["status"], "False");
    assert_eq!(status["status"]["observedGeneration"], 1);

    assert_eq!(sent[9].body["reason"], "Created");
    assert_eq!(sent[9].body["note"], "Created database Pod demo-db");
    assert_eq!(sent[9].body["regarding"]["kind"], "Stack");
    assert_eq!(sent[9].body["related"]["name"], "demo-db");
    assert_eq!(sent[10].body["note"], "Created redis Pod demo-redis");
    assert!(
        ctx.state
            .metrics
            .encode()
            .contains("berth_controller_stacks{phase=\"Pending\"} 1")
    );
}

#[tokio::test]
async fn a_stack_at_rest_writes_nothing() {
    let (seen, status) = at_rest(&sample(), "kept-password");
    let mut stack = finalized(sample());
    stack.status = Some(status);
    assert_eq!(
        stack.status.as_ref().unwrap().phase,
        Some(StackPhase::Ready)
    );
    let (client, api) = FakeApi::new(vec![]);
    let ctx = context(client, seen);
    let action = reconcile(Arc::new(stack), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert!(api.verify().await.is_empty());
}

#[tokio::test]
async fn a_deleted_service_is_applied_again_and_nothing_else() {
    let (mut seen, status) = at_rest(&sample(), "kept-password");
    seen.services.retain(|s| s.name_any() != "demo-redis");
    let mut stack = finalized(sample());
    stack.status = Some(status);
    let (client, api) = FakeApi::new(vec![Call::patch(apply_path(SERVICES, "demo-redis"))]);
    reconcile(Arc::new(stack), context(client, seen))
        .await
        .unwrap();
    let sent = api.verify().await;
    assert!(is_apply(&sent[0]));
    assert_eq!(sent[0].body["spec"]["clusterIP"], "None");
}

#[tokio::test]
async fn the_stored_password_is_kept() {
    let (mut seen, status) = at_rest(&sample(), "kept-password");
    // Someone changed the Secret's labels: it is applied again, with the password it holds.
    seen.secrets[0].metadata.labels = None;
    let mut stack = finalized(sample());
    stack.status = Some(status);
    let (client, api) = FakeApi::new(vec![Call::patch(apply_path(
        SECRETS,
        "demo-db-credentials",
    ))]);
    reconcile(Arc::new(stack), context(client, seen))
        .await
        .unwrap();
    let sent = api.verify().await;
    assert_eq!(sent[0].body["stringData"]["password"], "kept-password");
}

#[tokio::test]
async fn a_missing_password_secret_stalls_the_stack_with_a_message_and_a_warning() {
    let mut stack = finalized(sample());
    stack.spec.database.as_mut().unwrap().password_secret_ref = Some(SecretKeyRef {
        name: "shop-db".into(),
        key: "password".into(),
    });
    let (client, api) = FakeApi::new(vec![
        Call::get(apply_path(SECRETS, "shop-db")).fails(404),
        Call::patch(apply_path(CLAIMS, "demo-db-data")),
        Call::patch(apply_path(SERVICES, "demo-db")),
        Call::patch(apply_path(SERVICES, "demo-redis")),
        Call::patch(apply_path(SERVICES, "demo-app")),
        Call::patch(apply_path(PODS, "demo-db")),
        Call::patch(apply_path(PODS, "demo-redis")),
        Call::patch(format!("{STACK}/status")).returns(serde_json::to_value(sample()).unwrap()),
        Call::post(EVENTS),
        Call::post(EVENTS),
        Call::post(EVENTS),
    ]);
    let action = reconcile(Arc::new(stack), context(client, Seen::default()))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(STALLED_REQUEUE));
    let sent = api.verify().await;
    let status = &sent[7].body;
    let stalled = condition(status, CONDITION_STALLED);
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "SecretNotFound");
    assert!(
        stalled["message"].as_str().unwrap().contains("\"shop-db\""),
        "{stalled}"
    );
    assert_eq!(status["status"]["phase"], "Failed");
    let warning = &sent[10].body;
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["reason"], "Stalled");
}

fn owned_by_stack<K: Resource<DynamicType = ()> + Serialize>(mut object: K) -> Value {
    object.meta_mut().uid = Some("object-uid".into());
    object.meta_mut().owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "someone-else".into(),
            uid: "other-uid".into(),
            ..Default::default()
        },
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "berth.dev/v1alpha1".into(),
            kind: "Stack".into(),
            name: "demo".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    serde_json::to_value(object).unwrap()
}

fn claim(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn secret(name: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(b"pw".to_vec()),
        )])),
        ..Default::default()
    }
}

#[tokio::test]
async fn deletion_with_retain_takes_the_stack_off_its_claims_and_secret() {
    let stack = deleting(sample(), DeletionPolicy::Retain);
    let (client, api) = FakeApi::new(vec![
        Call::get(apply_path(CLAIMS, "demo-db-data"))
            .returns(owned_by_stack(claim("demo-db-data"))),
        Call::patch(apply_path(CLAIMS, "demo-db-data")),
        Call::get(apply_path(CLAIMS, "demo-redis-data")).fails(404),
        Call::get(apply_path(SECRETS, "demo-db-credentials"))
            .returns(owned_by_stack(secret("demo-db-credentials"))),
        Call::patch(apply_path(SECRETS, "demo-db-credentials")),
        Call::post(EVENTS),
        Call::patch(STACK).returns(serde_json::to_value(sample()).unwrap()),
    ]);
    let action = reconcile(Arc::new(stack), context(client, Seen::default()))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let sent = api.verify().await;
    for release in [&sent[1], &sent[4]] {
        assert_eq!(release.content_type, "application/json-patch+json");
        assert_eq!(
            release.body,
            serde_json::json!([
                {"op": "test", "path": "/metadata/ownerReferences/1/uid", "value": "uid-1"},
                {"op": "remove", "path": "/metadata/ownerReferences/1"},
            ])
        );
    }
    assert_eq!(sent[5].body["reason"], "Retained");
    assert_eq!(
        sent[6].body[1],
        serde_json::json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
}

#[tokio::test]
async fn deletion_with_delete_deletes_the_claims_and_secret_but_not_a_users_secret() {
    let mut stack = deleting(sample(), DeletionPolicy::Delete);
    stack.spec.redis.as_mut().unwrap().persistence.enabled = true;
    let (client, api) = FakeApi::new(vec![
        Call::get(apply_path(CLAIMS, "demo-db-data"))
            .returns(owned_by_stack(claim("demo-db-data"))),
        Call::delete(apply_path(CLAIMS, "demo-db-data")),
        Call::get(apply_path(CLAIMS, "demo-redis-data"))
            .returns(owned_by_stack(claim("demo-redis-data"))),
        Call::delete(apply_path(CLAIMS, "demo-redis-data")),
        // A Secret of that name that the Stack does not own stays.
        Call::get(apply_path(SECRETS, "demo-db-credentials"))
            .returns(serde_json::to_value(secret("demo-db-credentials")).unwrap()),
        Call::post(EVENTS),
        Call::patch(STACK).returns(serde_json::to_value(sample()).unwrap()),
    ]);
    reconcile(Arc::new(stack), context(client, Seen::default()))
        .await
        .unwrap();
    let sent = api.verify().await;
    assert_eq!(sent[1].body["preconditions"]["uid"], "object-uid");
    assert_eq!(sent[5].body["reason"], "Deleted");
    assert_eq!(
        sent[5].body["note"],
        "deletionPolicy Delete: deleted demo-db-data, demo-redis-data"
    );
}

#[tokio::test]
async fn an_error_backs_off_longer_each_time_and_is_counted() {
    let ctx = context(FakeApi::new(vec![]).0, Seen::default());
    let stack = Arc::new(sample());
    let err = || Error::Status(kube::Error::LinesCodecMaxLineLengthExceeded);
    let first = error_policy(stack.clone(), &err(), ctx.clone());
    let second = error_policy(stack.clone(), &err(), ctx.clone());
    assert_eq!(first, Action::requeue(Duration::from_secs(1)));
    assert_eq!(second, Action::requeue(Duration::from_secs(2)));
    for _ in 0..20 {
        error_policy(stack.clone(), &err(), ctx.clone());
    }
    assert_eq!(
        error_policy(stack, &err(), ctx.clone()),
        Action::requeue(MAX_BACKOFF)
    );
    assert!(
        ctx.state
            .metrics
            .encode()
            .contains("berth_controller_reconcile_errors_total{error=\"Status\"} 23")
    );
}

#[tokio::test]
async fn a_cleanup_from_a_stale_cache_of_a_stack_already_gone_is_not_an_error() {
    let stack = deleting(sample(), DeletionPolicy::Delete);
    let (client, api) = FakeApi::new(vec![
        Call::get(apply_path(CLAIMS, "demo-db-data")).fails(404),
        Call::get(apply_path(CLAIMS, "demo-redis-data")).fails(404),
        Call::get(apply_path(SECRETS, "demo-db-credentials")).fails(404),
        Call::patch(STACK).fails(404),
    ]);
    let action = reconcile(Arc::new(stack), context(client, Seen::default()))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    api.verify().await;
}

/// The Stack at rest, then edited by `edit` (a new generation).
fn edited(edit: impl FnOnce(&mut Stack)) -> (Seen, Stack) {
    let (seen, status) = at_rest(&sample(), "kept-password");
    let mut stack = finalized(sample());
    stack.status = Some(status);
    edit(&mut stack);
    stack.metadata.generation = Some(2);
    (seen, stack)
}

fn check_pod_name(stack: &Stack) -> String {
    let d = desired(stack, "kept-password").unwrap();
    crate::check::pod(
        d.database.as_ref().unwrap(),
        "database",
        "demo-db",
        &[],
        None,
    )
    .metadata
    .name
    .unwrap()
}

#[tokio::test]
async fn a_new_database_image_is_checked_by_a_pod_before_the_database_is_touched() {
    let (seen, stack) = edited(|s| s.spec.database.as_mut().unwrap().image = "postgres:16".into());
    let check = check_pod_name(&stack);
    let (client, api) = FakeApi::new(vec![
        Call::patch(apply_path(PODS, &check)),
        Call::patch(format!("{STACK}/status")).returns(serde_json::to_value(sample()).unwrap()),
        Call::post(EVENTS),
    ]);
    let action = reconcile(Arc::new(stack), context(client, seen))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(PROGRESS_REQUEUE));
    let sent = api.verify().await;
    assert!(is_apply(&sent[0]));
    let spec = &sent[0].body["spec"];
    assert_eq!(spec["containers"][0]["image"], "postgres:16");
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(
        sent[0].body["metadata"]["labels"]["berth.dev/check-for"],
        "database"
    );
    assert_eq!(
        sent[0].body["metadata"]["ownerReferences"][0]["uid"],
        "uid-1"
    );
    assert_eq!(sent[2].body["reason"], "Checking");
}

#[tokio::test]
async fn a_database_image_the_check_cannot_pull_stalls_and_deletes_nothing() {
    let (mut seen, stack) =
        edited(|s| s.spec.database.as_mut().unwrap().image = "postgres:nope".into());
    let d = desired(&stack, "kept-password").unwrap();
    let mut check = crate::check::pod(
        d.database.as_ref().unwrap(),
        "database",
        "demo-db",
        &[],
        None,
    );
    check.status = Some(PodStatus {
        phase: Some("Pending".into()),
        container_statuses: Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
            name: "check".into(),
            image: "postgres:nope".into(),
            state: Some(k8s_openapi::api::core::v1::ContainerState {
                waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                    reason: Some("ImagePullBackOff".into()),
                    message: Some("Back-off pulling image \"postgres:nope\"".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..PodStatus::default()
    });
    seen.pods.push(check);
    let (client, api) = FakeApi::new(vec![
        Call::patch(format!("{STACK}/status")).returns(serde_json::to_value(sample()).unwrap()),
        Call::post(EVENTS),
    ]);
    let action = reconcile(Arc::new(stack), context(client, seen))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(STALLED_REQUEUE));
    let sent = api.verify().await;
    let stalled = condition(&sent[0].body, CONDITION_STALLED);
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "ImagePullFailed");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.database.image \"postgres:nope\" cannot be pulled"),
        "{stalled}"
    );
    assert_eq!(sent[1].body["type"], "Warning");
    assert_eq!(sent[1].body["reason"], "Stalled");
}

#[tokio::test]
async fn removing_the_database_while_its_claim_holds_data_is_refused() {
    let (seen, stack) = edited(|s| s.spec.database = None);
    let (client, api) = FakeApi::new(vec![
        Call::patch(format!("{STACK}/status")).returns(serde_json::to_value(sample()).unwrap()),
        Call::post(EVENTS),
    ]);
    reconcile(Arc::new(stack), context(client, seen))
        .await
        .unwrap();
    let sent = api.verify().await;
    let stalled = condition(&sent[0].body, CONDITION_STALLED);
    assert_eq!(stalled["reason"], "DataLossRefused");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("demo-db-data"),
        "{stalled}"
    );
    assert_eq!(sent[1].body["type"], "Warning");
}

#[tokio::test]
async fn a_removed_redis_loses_its_pod_and_service() {
    // Without host ports the app rolls by surge, so the only deletions are Redis's.
    let mut plain = sample();
    plain.spec.app.ports[0].host_port = None;
    let (seen, status) = at_rest(&plain, "kept-password");
    let mut stack = finalized(plain);
    stack.status = Some(status);
    stack.spec.redis = None;
    stack.metadata.generation = Some(2);
    let new_app = desired(&stack, "kept-password").unwrap().app[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let (client, api) = FakeApi::new(vec![
        Call::delete(apply_path(PODS, "demo-redis")),
        Call::delete(apply_path(SERVICES, "demo-redis")),
        Call::patch(apply_path(PODS, &new_app)),
        Call::patch(format!("{STACK}/status")).returns(serde_json::to_value(sample()).unwrap()),
        Call::post(EVENTS),
        Call::post(EVENTS),
        Call::post(EVENTS),
    ]);
    reconcile(Arc::new(stack), context(client, seen))
        .await
        .unwrap();
    let sent = api.verify().await;
    assert_eq!(sent[4].body["reason"], "Pruned");
}
