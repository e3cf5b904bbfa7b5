//! kube-rs (client and runtime) against `berth apiserver`: the CRD lifecycle, typed CRUD, watches and
//! their resumption, the 410 rule, bookmarks, the finalizer helper, the status subresource, conflicts and
//! DeleteOptions. Each test starts its own server.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_api::Stack;
use berth_e2e::Server;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectList, Patch, PatchParams, PostParams, Preconditions,
    WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{Controller, finalizer, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

/// How long any single expected thing may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Upstream's annotation on the bookmark that ends the initial events of `sendInitialEvents=true`.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

/// The next `n` items of a stream, described; fails when the stream ends or stalls first.
async fn take<S: Stream + Unpin>(
    stream: &mut S,
    n: usize,
    describe: impl Fn(&S::Item) -> String,
) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        match within(
            &format!("event {} after {seen:?}", seen.len() + 1),
            stream.next(),
        )
        .await
        {
            Some(item) => seen.push(describe(&item)),
            None => panic!("the stream ended after {seen:?}"),
        }
    }
    seen
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"value": value},
    }))
    .unwrap()
}

/// `namespace/name=value`: enough to tell events apart.
fn cm_key(cm: &ConfigMap) -> String {
    let value = cm
        .data
        .as_ref()
        .and_then(|d| d.get("value"))
        .map(String::as_str)
        .unwrap_or("");
    format!(
        "{}/{}={value}",
        cm.namespace().unwrap_or_default(),
        cm.name_any()
    )
}

fn describe_watcher(event: &watcher::Result<watcher::Event<ConfigMap>>) -> String {
    match event {
        Ok(watcher::Event::Init) => "Init".into(),
        Ok(watcher::Event::InitApply(cm)) => format!("InitApply({})", cm_key(cm)),
        Ok(watcher::Event::InitDone) => "InitDone".into(),
        Ok(watcher::Event::Apply(cm)) => format!("Apply({})", cm_key(cm)),
        Ok(watcher::Event::Delete(cm)) => format!("Delete({})", cm_key(cm)),
        Err(watcher::Error::WatchError(status)) => {
            format!("WatchError({} {})", status.code, status.reason)
        }
        Err(err) => format!("Error({err})"),
    }
}

fn describe_watch(event: &kube::Result<WatchEvent<ConfigMap>>) -> String {
    match event {
        Ok(WatchEvent::Added(cm)) => format!("Added({})", cm_key(cm)),
        Ok(WatchEvent::Modified(cm)) => format!("Modified({})", cm_key(cm)),
        Ok(WatchEvent::Deleted(cm)) => format!("Deleted({})", cm_key(cm)),
        Ok(WatchEvent::Bookmark(_)) => "Bookmark".into(),
        Ok(WatchEvent::Error(status)) => format!("Error({} {})", status.code, status.reason),
        Err(err) => format!("ClientError({err})"),
    }
}

/// A raw watch stream with BOOKMARKs left out (the server may send them at any time).
async fn watch_without_bookmarks(
    api: &Api<ConfigMap>,
    resource_version: &str,
) -> impl Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin + use<> {
    let stream = within(
        "the watch to open",
        api.watch(&WatchParams::default(), resource_version),
    )
    .await
    .expect("opening a watch");
    stream
        .filter(|e| std::future::ready(!matches!(e, Ok(WatchEvent::Bookmark(_)))))
        .boxed()
}

fn rv_of(object: &impl ResourceExt) -> u64 {
    object
        .resource_version()
        .expect("a stored object has a resourceVersion")
        .parse()
        .expect("resourceVersions of this server are integers")
}

fn list_rv<K: Clone>(list: &ObjectList<K>) -> u64 {
    list.metadata
        .resource_version
        .as_deref()
        .expect("a list has a resourceVersion")
        .parse()
        .expect("resourceVersions of this server are integers")
}

async fn create_namespace(client: &Client, name: &str) {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

/// Creates the Stack CRD through kube-rs and waits until it is Established.
async fn install_stack_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &berth_api::crd())
        .await
        .expect("creating the Stack CRD");
    within(
        "the Stack CRD to be Established",
        await_condition(
            crds,
            berth_api::constants::CRD_NAME,
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("watching the CRD");
}

fn stack(name: &str, image: &str) -> Stack {
    serde_json::from_value(json!({
        "apiVersion": berth_api::constants::API_VERSION,
        "kind": berth_api::constants::KIND,
        "metadata": {"name": name},
        "spec": {"app": {"image": image}},
    }))
    .unwrap()
}

fn api_error(result: kube::Result<impl std::fmt::Debug>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn stack_crd_created_through_kube_is_established_and_serves_crud() {
    let server = Server::start();
    let client = server.client().await;
    install_stack_crd(&client).await;

    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get(berth_api::constants::CRD_NAME)
        .await
        .unwrap();
    let condition = |kind: &str| {
        crd.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind))
            .map(|c| c.status.clone())
    };
    assert_eq!(condition("NamesAccepted").as_deref(), Some("True"));
    assert_eq!(condition("Established").as_deref(), Some("True"));

    let stacks: Api<Stack> = Api::default_namespaced(client.clone());
    let created = stacks
        .create(&PostParams::default(), &stack("shop", "shop:1"))
        .await
        .expect("creating a Stack");
    assert_eq!(created.spec.app.image, "shop:1");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let got = stacks.get("shop").await.unwrap();
    assert_eq!(got, created);
    let listed = Api::<Stack>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>(),
        ["shop"]
    );
    assert!(list_rv(&listed) >= rv_of(&created));

    let mut changed = got.clone();
    changed.spec.app.image = "shop:2".into();
    changed.spec.app.replicas = 3;
    let replaced = stacks
        .replace("shop", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(
        (replaced.spec.app.image.as_str(), replaced.spec.app.replicas),
        ("shop:2", 3)
    );
    assert_eq!(replaced.metadata.generation, Some(2));
    assert!(rv_of(&replaced) > rv_of(&created));

    stacks
        .delete("shop", &DeleteParams::default())
        .await
        .expect("deleting the Stack");
    let gone = api_error(stacks.get("shop").await);
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
    assert!(
        stacks
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Creates, updates and deletes one ConfigMap (with the same happening in another namespace) and checks
/// that a watcher on the first namespace sees exactly its own changes, in order, after its initial list.
async fn watcher_reports_changes_in_order(config: watcher::Config) {
    let server = Server::start();
    let client = server.client().await;
    create_namespace(&client, "watched").await;
    create_namespace(&client, "elsewhere").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
    let noise: Api<ConfigMap> = Api::namespaced(client.clone(), "elsewhere");
    let pp = PostParams::default();
    cms.create(&pp, &config_map("before", "0")).await.unwrap();

    let mut events = watcher(cms.clone(), config).boxed();
    assert_eq!(
        take(&mut events, 3, describe_watcher).await,
        ["Init", "InitApply(watched/before=0)", "InitDone"]
    );

    // With list-then-watch, the watch starts on the next poll: these come from the server's history...
    cms.create(&pp, &config_map("a", "1")).await.unwrap();
    noise.create(&pp, &config_map("a", "1")).await.unwrap();
    let patch = Patch::Merge(json!({"data": {"value": "2"}}));
    cms.patch("a", &PatchParams::default(), &patch)
        .await
        .unwrap();
    noise
        .patch("a", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(
        take(&mut events, 2, describe_watcher).await,
        ["Apply(watched/a=1)", "Apply(watched/a=2)"]
    );

    // ...and these, with the watch open, from its live stream. Nothing may come between the deletion and
    // the sentinel: no event from the other namespace, no duplicate.
    noise.delete("a", &DeleteParams::default()).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    cms.create(&pp, &config_map("sentinel", "0")).await.unwrap();
    assert_eq!(
        take(&mut events, 2, describe_watcher).await,
        ["Delete(watched/a=2)", "Apply(watched/sentinel=0)"]
    );
}

#[tokio::test]
async fn watcher_with_default_config_sees_added_modified_deleted_in_order() {
    watcher_reports_changes_in_order(watcher::Config::default()).await;
}

#[tokio::test]
async fn watcher_with_any_semantic_lists_sees_added_modified_deleted_in_order() {
    watcher_reports_changes_in_order(watcher::Config::default().any_semantic()).await;
}

#[tokio::test]
async fn watcher_with_streaming_lists_sees_added_modified_deleted_in_order() {
    watcher_reports_changes_in_order(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_across_a_server_restart() {
    let mut server = Server::start();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let a = cms.create(&pp, &config_map("a", "1")).await.unwrap();
    let resume_from = a.resource_version().unwrap();
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "2"}})),
        )
        .await
        .unwrap();

    server.restart();

    // The same client (same CA, same token) keeps working against the restarted server.
    let b = cms
        .create(&pp, &config_map("b", "1"))
        .await
        .expect("writing after a restart");
    assert!(
        rv_of(&b) > rv_of(&patched),
        "resourceVersions continue after a restart"
    );
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    let mut events = watch_without_bookmarks(&cms, &resume_from).await;
    cms.create(&pp, &config_map("sentinel", "0")).await.unwrap();
    let mut rvs = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = within(&format!("watch event after {seen:?}"), events.next())
            .await
            .unwrap_or_else(|| panic!("the watch ended after {seen:?}"));
        if let Ok(WatchEvent::Added(cm) | WatchEvent::Modified(cm) | WatchEvent::Deleted(cm)) =
            &event
        {
            rvs.push(rv_of(cm));
        }
        seen.push(describe_watch(&event));
    }
    assert_eq!(
        seen,
        [
            "Modified(default/a=2)",
            "Added(default/b=1)",
            "Deleted(default/a=2)",
            "Added(default/sentinel=0)"
        ]
    );
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] == rv_of(&patched),
        "events carry increasing resourceVersions, starting after {resume_from}: {rvs:?}"
    );
}

/// Exceeds the server's change history (10,000 changes) with concurrent creates: a watch from a
/// resourceVersion before it gets an ERROR event with 410 Expired, and the kube-rs watcher re-lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_resource_version_is_410_expired_and_watcher_relists() {
    const CHANGES: usize = 10_100;
    const CONCURRENCY: usize = 32;
    let server = Server::start();
    let client = server.client().await;
    create_namespace(&client, "watched").await;
    create_namespace(&client, "bulk").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
    let bulk: Api<ConfigMap> = Api::namespaced(client.clone(), "bulk");
    let pp = PostParams::default();
    let keep = cms.create(&pp, &config_map("keep", "0")).await.unwrap();

    // The watcher lists, then stops being polled: its watch will start from the list's resourceVersion.
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    assert_eq!(
        take(&mut events, 3, describe_watcher).await,
        ["Init", "InitApply(watched/keep=0)", "InitDone"]
    );

    let started = Instant::now();
    let failures = AtomicUsize::new(0);
    futures::stream::iter(0..CHANGES)
        .for_each_concurrent(CONCURRENCY, |i| {
            let bulk = bulk.clone();
            let failures = &failures;
            async move {
                if let Err(err) = bulk
                    .create(&PostParams::default(), &config_map(&format!("cm-{i}"), "x"))
                    .await
                {
                    eprintln!("bulk create cm-{i}: {err}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let elapsed = started.elapsed();
    eprintln!(
        "{CHANGES} creates at concurrency {CONCURRENCY} took {elapsed:.1?} ({:.0}/s)",
        CHANGES as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every bulk create succeeds"
    );
    let latest = list_rv(&cms.list(&ListParams::default()).await.unwrap());

    // A resourceVersion inside the history still resumes.
    let mut recent = watch_without_bookmarks(&cms, &(latest - 5_000).to_string()).await;
    cms.create(&pp, &config_map("fresh", "1")).await.unwrap();
    assert_eq!(
        take(&mut recent, 1, describe_watch).await,
        ["Added(watched/fresh=1)"]
    );

    // One from before it is answered with 200 and an ERROR event carrying 410 Expired, then the end.
    let mut expired = within(
        "the watch to open",
        cms.watch(&WatchParams::default(), &keep.resource_version().unwrap()),
    )
    .await
    .expect("a too-old resourceVersion is not an HTTP error")
    .boxed();
    match within("the ERROR event", expired.next()).await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!(
                (status.code, status.reason.as_str()),
                (410, "Expired"),
                "{status:?}"
            );
        }
        other => panic!(
            "expected an ERROR event with 410, got {:?}",
            other.map(|e| describe_watch(&e))
        ),
    }
    assert!(
        within("the expired watch to end", expired.next())
            .await
            .is_none(),
        "the server ends the watch after the ERROR event"
    );

    // The watcher now starts its watch from its old list: it gets the 410 and lists again.
    let mut relisted = take(&mut events, 5, describe_watcher).await;
    relisted[2..4].sort();
    assert_eq!(
        relisted,
        [
            "WatchError(410 Expired)",
            "Init",
            "InitApply(watched/fresh=1)",
            "InitApply(watched/keep=0)",
            "InitDone"
        ]
    );
    cms.delete("keep", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        take(&mut events, 1, describe_watcher).await,
        ["Delete(watched/keep=0)"]
    );
}

#[tokio::test]
async fn watch_with_send_initial_events_ends_the_initial_adds_with_a_bookmark() {
    let server = Server::start();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    cms.create(&pp, &config_map("a", "1")).await.unwrap();
    let b = cms.create(&pp, &config_map("b", "1")).await.unwrap();

    let mut stream = within(
        "the watch to open",
        cms.watch(&WatchParams::streaming_lists(), "0"),
    )
    .await
    .expect("a watch with sendInitialEvents=true")
    .boxed();
    let mut initial = take(&mut stream, 2, describe_watch).await;
    initial.sort();
    assert_eq!(initial, ["Added(default/a=1)", "Added(default/b=1)"]);
    match within("the initial-events-end bookmark", stream.next()).await {
        Some(Ok(WatchEvent::Bookmark(bookmark))) => {
            assert_eq!(
                bookmark
                    .metadata
                    .annotations
                    .get(INITIAL_EVENTS_END)
                    .map(String::as_str),
                Some("true")
            );
            let rv: u64 = bookmark.metadata.resource_version.parse().unwrap();
            assert!(
                rv >= rv_of(&b),
                "the bookmark's resourceVersion {rv} covers the initial state"
            );
        }
        other => panic!(
            "expected the initial-events-end BOOKMARK, got {:?}",
            other.map(|e| describe_watch(&e))
        ),
    }
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"value": "2"}})),
    )
    .await
    .unwrap();
    let mut live = stream.filter(|e| std::future::ready(!matches!(e, Ok(WatchEvent::Bookmark(_)))));
    assert_eq!(
        take(&mut live, 1, describe_watch).await,
        ["Modified(default/a=2)"]
    );
}

/// The only test that waits for the server's bookmark period (15 s).
#[tokio::test]
async fn idle_watch_with_bookmarks_gets_a_bookmark_at_the_current_resource_version() {
    let server = Server::start();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let a = cms
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();

    let mut stream = within(
        "the watch to open",
        cms.watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            },
            &a.resource_version().unwrap(),
        ),
    )
    .await
    .unwrap()
    .boxed();
    match within("a BOOKMARK on an idle watch", stream.next()).await {
        Some(Ok(WatchEvent::Bookmark(bookmark))) => {
            assert_eq!(
                bookmark.metadata.resource_version,
                a.resource_version().unwrap()
            );
            assert!(
                !bookmark
                    .metadata
                    .annotations
                    .contains_key(INITIAL_EVENTS_END)
            );
            assert_eq!(bookmark.types.kind, "ConfigMap");
        }
        other => panic!(
            "expected a BOOKMARK, got {:?}",
            other.map(|e| describe_watch(&e))
        ),
    }
}

struct FinalizerCtx {
    stacks: Api<Stack>,
    seen: mpsc::UnboundedSender<String>,
}

async fn reconcile_with_finalizer(
    stack: Arc<Stack>,
    ctx: Arc<FinalizerCtx>,
) -> Result<Action, finalizer::Error<Infallible>> {
    finalizer::finalizer(
        &ctx.stacks,
        berth_api::constants::FINALIZER,
        stack,
        |event| async {
            let seen = match event {
                finalizer::Event::Apply(s) => format!("Apply({})", s.name_any()),
                finalizer::Event::Cleanup(s) => format!("Cleanup({})", s.name_any()),
            };
            let _ = ctx.seen.send(seen);
            Ok(Action::await_change())
        },
    )
    .await
}

fn record_error(
    _stack: Arc<Stack>,
    err: &finalizer::Error<Infallible>,
    ctx: Arc<FinalizerCtx>,
) -> Action {
    let _ = ctx.seen.send(format!("Error({err})"));
    Action::requeue(Duration::from_millis(500))
}

#[tokio::test]
async fn finalizer_helper_adds_the_finalizer_then_cleans_up_and_removes_it_on_delete() {
    let server = Server::start();
    let client = server.client().await;
    install_stack_crd(&client).await;
    let stacks: Api<Stack> = Api::default_namespaced(client.clone());
    let (seen, mut reconciled) = mpsc::unbounded_channel();
    let ctx = Arc::new(FinalizerCtx {
        stacks: stacks.clone(),
        seen,
    });
    let controller = tokio::spawn(
        Controller::new(stacks.clone(), watcher::Config::default())
            .run(reconcile_with_finalizer, record_error, ctx)
            .for_each(|_| std::future::ready(())),
    );

    let created = stacks
        .create(&PostParams::default(), &stack("shop", "shop:1"))
        .await
        .unwrap();
    assert_eq!(
        within("the first Apply", reconciled.recv())
            .await
            .as_deref(),
        Some("Apply(shop)")
    );
    let held = stacks.get("shop").await.unwrap();
    assert_eq!(held.finalizers(), [berth_api::constants::FINALIZER]);

    let deleting = stacks
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    let deleting = deleting
        .left()
        .expect("a Stack with a finalizer is returned, marked for deletion");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        within("the Cleanup", reconciled.recv()).await.as_deref(),
        Some("Cleanup(shop)")
    );
    within(
        "the Stack to be gone",
        await_condition(
            stacks.clone(),
            "shop",
            conditions::is_deleted(&created.uid().unwrap()),
        ),
    )
    .await
    .unwrap();
    assert_eq!(api_error(stacks.get("shop").await).code, 404);
    controller.abort();
    assert!(
        reconciled.try_recv().is_err(),
        "no reconcile error and nothing after the cleanup"
    );
}

#[tokio::test]
async fn status_patches_leave_generation_alone_and_spec_patches_bump_it() {
    let server = Server::start();
    let client = server.client().await;
    install_stack_crd(&client).await;
    let stacks: Api<Stack> = Api::default_namespaced(client.clone());
    let pp = PatchParams::default();
    let created = stacks
        .create(&PostParams::default(), &stack("shop", "shop:1"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    let merged = stacks
        .patch_status(
            "shop",
            &pp,
            &Patch::Merge(json!({
                "spec": {"app": {"image": "ignored:9"}},
                "status": {"observedGeneration": 1, "phase": "Progressing"},
            })),
        )
        .await
        .expect("a merge patch of status");
    let status = merged.status.clone().unwrap_or_default();
    assert_eq!(
        (status.observed_generation, status.phase),
        (Some(1), Some(berth_api::StackPhase::Progressing))
    );
    assert_eq!(merged.metadata.generation, Some(1));
    assert_eq!(
        merged.spec.app.image, "shop:1",
        "the status subresource does not write spec"
    );
    assert!(rv_of(&merged) > rv_of(&created));

    let json_patched = stacks
        .patch_status(
            "shop",
            &pp,
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/status/phase", "value": "Progressing"},
                    {"op": "replace", "path": "/status/phase", "value": "Ready"},
                ]))
                .unwrap(),
            ),
        )
        .await
        .expect("a JSON patch of status");
    assert_eq!(
        json_patched.status.as_ref().and_then(|s| s.phase),
        Some(berth_api::StackPhase::Ready)
    );
    assert_eq!(json_patched.metadata.generation, Some(1));

    let labelled = stacks
        .patch(
            "shop",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );

    let respecced = stacks
        .patch(
            "shop",
            &pp,
            &Patch::Merge(
                json!({"spec": {"app": {"image": "shop:2"}}, "status": {"phase": "Failed"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(respecced.spec.app.image, "shop:2");
    assert_eq!(respecced.metadata.generation, Some(2));
    assert_eq!(
        respecced.status.as_ref().and_then(|s| s.phase),
        Some(berth_api::StackPhase::Ready),
        "the main resource does not write status when the status subresource is on"
    );
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_is_a_409_conflict() {
    let server = Server::start();
    let client = server.client().await;
    install_stack_crd(&client).await;
    let stacks: Api<Stack> = Api::default_namespaced(client.clone());
    let stale = stacks
        .create(&PostParams::default(), &stack("shop", "shop:1"))
        .await
        .unwrap();
    let mut fresh = stale.clone();
    fresh.spec.app.image = "shop:2".into();
    let fresh = stacks
        .replace("shop", &PostParams::default(), &fresh)
        .await
        .unwrap();

    let mut lost = stale.clone();
    lost.spec.app.image = "shop:3".into();
    let conflict = api_error(stacks.replace("shop", &PostParams::default(), &lost).await);
    assert_eq!(
        (conflict.code, conflict.reason.as_str()),
        (409, "Conflict"),
        "{conflict:?}"
    );
    assert_eq!(
        stacks.get("shop").await.unwrap(),
        fresh,
        "the stale write changed nothing"
    );
}

#[tokio::test]
async fn delete_with_a_mismatched_uid_precondition_is_a_409_conflict() {
    let server = Server::start();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let created = cms
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    let precondition = |uid: &str| DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };

    let conflict = api_error(
        cms.delete("a", &precondition("00000000-0000-0000-0000-000000000000"))
            .await,
    );
    assert_eq!(
        (conflict.code, conflict.reason.as_str()),
        (409, "Conflict"),
        "{conflict:?}"
    );
    assert_eq!(cms.get("a").await.unwrap(), created);

    let stale_rv = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..DeleteParams::default()
    };
    assert_eq!(api_error(cms.delete("a", &stale_rv).await).code, 409);

    cms.delete("a", &precondition(&created.uid().unwrap()))
        .await
        .expect("a matching uid deletes");
    assert_eq!(api_error(cms.get("a").await).code, 404);
}

#[tokio::test]
async fn dry_run_delete_leaves_the_object() {
    let server = Server::start();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let plain = cms
        .create(&PostParams::default(), &config_map("plain", "1"))
        .await
        .unwrap();
    let mut held = config_map("held", "1");
    held.metadata.finalizers = Some(vec!["e2e.berth.dev/hold".into()]);
    let held = cms.create(&PostParams::default(), &held).await.unwrap();
    let dry_run = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };

    cms.delete("plain", &dry_run)
        .await
        .expect("a dry-run delete");
    let answer = cms
        .delete("held", &dry_run)
        .await
        .expect("a dry-run delete of a held object");
    let answered = answer
        .left()
        .expect("the object that would be marked for deletion");
    assert!(
        answered.metadata.deletion_timestamp.is_some(),
        "the answer shows what would happen"
    );

    assert_eq!(cms.get("plain").await.unwrap(), plain);
    assert_eq!(
        cms.get("held").await.unwrap(),
        held,
        "no deletionTimestamp was stored"
    );
    let rv = list_rv(&cms.list(&ListParams::default()).await.unwrap());
    assert_eq!(rv, rv_of(&held), "a dry run writes nothing");
}

/// Upstream retries a delete that raced another writer (its guaranteed update); a controller writing status
/// while a user deletes must not turn `kubectl delete` into a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_another_client_keeps_writing_succeeds() {
    let server = Server::start();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for round in 0..20 {
        let name = format!("busy-{round}");
        let mut held = config_map(&name, "0");
        held.metadata.finalizers = Some(vec!["e2e.berth.dev/hold".into()]);
        cms.create(&PostParams::default(), &held).await.unwrap();
        let writer = {
            let cms = cms.clone();
            let name = name.clone();
            tokio::spawn(async move {
                for value in 1..=200 {
                    let patch = json!({"data": {"value": value.to_string()}});
                    if cms
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
        };
        cms.delete(&name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("round {round}: delete during writes: {e}"));
        writer.await.unwrap();
        let marked = cms.get(&name).await.unwrap();
        assert!(marked.metadata.deletion_timestamp.is_some(), "{marked:?}");
        let release = json!({"metadata": {"finalizers": null}});
        cms.patch(&name, &PatchParams::default(), &Patch::Merge(&release))
            .await
            .unwrap();
    }
}
