//! core/v1 and events.k8s.io/v1 Events are one storage served two ways: whatever is written through one API
//! (create, replace, patch, apply, delete) is seen through the other (get, list with field selectors, watch),
//! as upstream serves them. Each test runs its own server on a free loopback port with its own data directory.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    _dir: tempfile::TempDir,
    client: Client,
    serve: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let running = berth_apiserver::start(berth_apiserver::Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
        })
        .await
        .unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        Cluster {
            _dir: dir,
            client: Client::try_from(config).unwrap(),
            serve: running.serve,
        }
    }

    fn events(&self) -> Api<Event> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn core(&self) -> Api<CoreEvent> {
        Api::namespaced(self.client.clone(), "default")
    }
}

/// An Event as the kube-rs Recorder writes it.
fn recorded(name: &str, about: &str) -> Event {
    serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "berth.dev/stack-controller",
        "reportingInstance": "host-1",
        "action": "Reconcile",
        "reason": "Created",
        "note": format!("Created Pod {about}"),
        "type": "Normal",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": about, "namespace": "default",
                      "uid": format!("uid-{about}")},
    }))
    .unwrap()
}

fn core_event(name: &str, about: &str) -> CoreEvent {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": about, "namespace": "default"},
        "reason": "Scheduled", "message": format!("Successfully assigned default/{about} to n1"),
        "source": {"component": "default-scheduler"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1, "type": "Normal",
    }))
    .unwrap()
}

fn by_name(field: &str, name: &str) -> ListParams {
    ListParams::default().fields(&format!("{field}={name}"))
}

#[tokio::test]
async fn an_event_created_through_events_k8s_io_is_a_core_event() {
    let cluster = Cluster::start().await;
    cluster
        .events()
        .create(&PostParams::default(), &recorded("web.1", "web"))
        .await
        .unwrap();
    let core = cluster.core().get("web.1").await.unwrap();
    let involved: &ObjectReference = &core.involved_object;
    assert_eq!(involved.name.as_deref(), Some("web"));
    assert_eq!(core.message.as_deref(), Some("Created Pod web"));
    assert_eq!(
        core.reporting_component.as_deref(),
        Some("berth.dev/stack-controller")
    );
    assert_eq!(core.reporting_instance.as_deref(), Some("host-1"));
    assert!(core.event_time.is_some());
    // kubectl describe finds an object's Events with these core/v1 field selectors.
    let listed = cluster
        .core()
        .list(&ListParams::default().fields(
            "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid=uid-web",
        ))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(
        cluster
            .core()
            .list(&by_name("involvedObject.name", "other"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_core_event_is_served_through_events_k8s_io_with_its_field_selectors() {
    let cluster = Cluster::start().await;
    cluster
        .core()
        .create(&PostParams::default(), &core_event("db.1", "db"))
        .await
        .unwrap();
    cluster
        .events()
        .create(&PostParams::default(), &recorded("app.1", "app"))
        .await
        .unwrap();
    let event = cluster.events().get("db.1").await.unwrap();
    assert_eq!(event.regarding.unwrap().name.as_deref(), Some("db"));
    assert_eq!(
        event.note.as_deref(),
        Some("Successfully assigned default/db to n1")
    );
    assert_eq!(
        event.deprecated_source.unwrap().component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(event.deprecated_count, Some(1));
    let both = cluster.events().list(&ListParams::default()).await.unwrap();
    assert_eq!(both.items.len(), 2);
    let about_db = cluster
        .events()
        .list(&by_name("regarding.name", "db"))
        .await
        .unwrap();
    assert_eq!(about_db.items.len(), 1);
    let from_controller = cluster
        .events()
        .list(&by_name(
            "reportingController",
            "berth.dev/stack-controller",
        ))
        .await
        .unwrap();
    let names: Vec<_> = from_controller
        .items
        .iter()
        .map(|e| e.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["app.1"]);
}

#[tokio::test]
async fn replaces_and_patches_through_one_api_show_through_the_other() {
    let cluster = Cluster::start().await;
    let created = cluster
        .events()
        .create(&PostParams::default(), &recorded("web.2", "web"))
        .await
        .unwrap();
    // A replace through core/v1 of what it reads.
    let mut core = cluster.core().get("web.2").await.unwrap();
    core.message = Some("replaced through core".into());
    cluster
        .core()
        .replace("web.2", &PostParams::default(), &core)
        .await
        .unwrap();
    let event = cluster.events().get("web.2").await.unwrap();
    assert_eq!(event.note.as_deref(), Some("replaced through core"));
    assert_eq!(event.regarding, created.regarding, "the rest is kept");

    // A merge patch through events.k8s.io, as the Recorder counts a repeat.
    let series = json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:05:00.000000Z"}});
    cluster
        .events()
        .patch("web.2", &PatchParams::default(), &Patch::Merge(&series))
        .await
        .unwrap();
    let core = cluster.core().get("web.2").await.unwrap();
    assert_eq!(core.series.unwrap().count, Some(2));
    assert_eq!(core.message.as_deref(), Some("replaced through core"));

    // A JSON patch through core/v1 that tests and sets a field of its own naming.
    // (kube 5 takes json-patch 4's type; the body is sent as any client sends it.)
    let ops = json!([
        {"op": "test", "path": "/reportingComponent", "value": "berth.dev/stack-controller"},
        {"op": "replace", "path": "/reason", "value": "Replaced"},
    ]);
    let request = http::Request::patch("/api/v1/namespaces/default/events/web.2")
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(ops.to_string().into_bytes())
        .unwrap();
    cluster.client.request_text(request).await.unwrap();
    assert_eq!(
        cluster
            .events()
            .get("web.2")
            .await
            .unwrap()
            .reason
            .as_deref(),
        Some("Replaced")
    );

    // Server-side apply through events.k8s.io.
    let apply = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.2", "namespace": "default"},
        "note": "applied",
    });
    cluster
        .events()
        .patch(
            "web.2",
            &PatchParams::apply("events-test").force(),
            &Patch::Apply(&apply),
        )
        .await
        .unwrap();
    let core = cluster.core().get("web.2").await.unwrap();
    assert_eq!(core.message.as_deref(), Some("applied"));
    assert_eq!(core.involved_object.name.as_deref(), Some("web"));
}

#[tokio::test]
async fn a_watch_through_either_api_sees_writes_through_the_other() {
    let cluster = Cluster::start().await;
    let params = WatchParams::default().timeout(10);
    let events_watch = cluster.events().watch(&params, "0").await.unwrap().boxed();
    let core_watch = cluster.core().watch(&params, "0").await.unwrap().boxed();
    cluster
        .core()
        .create(&PostParams::default(), &core_event("db.2", "db"))
        .await
        .unwrap();
    cluster
        .events()
        .delete("db.2", &DeleteParams::default())
        .await
        .unwrap();
    let seen: Vec<WatchEvent<Event>> =
        tokio::time::timeout(DEADLINE, events_watch.take(2).try_collect())
            .await
            .expect("two watch events in time")
            .unwrap();
    match &seen[0] {
        WatchEvent::Added(event) => assert_eq!(
            event.note.as_deref(),
            Some("Successfully assigned default/db to n1")
        ),
        other => panic!("expected ADDED, got {other:?}"),
    }
    assert!(
        matches!(&seen[1], WatchEvent::Deleted(e) if e.regarding.as_ref().unwrap().name.as_deref() == Some("db"))
    );
    let seen: Vec<WatchEvent<CoreEvent>> =
        tokio::time::timeout(DEADLINE, core_watch.take(2).try_collect())
            .await
            .expect("two watch events in time")
            .unwrap();
    assert!(
        matches!(&seen[0], WatchEvent::Added(e) if e.involved_object.name.as_deref() == Some("db"))
    );
    assert!(matches!(&seen[1], WatchEvent::Deleted(_)));
    assert!(cluster.core().get_opt("db.2").await.unwrap().is_none());
}

#[tokio::test]
async fn one_name_is_one_event_whichever_api_creates_it() {
    let cluster = Cluster::start().await;
    cluster
        .core()
        .create(&PostParams::default(), &core_event("same", "db"))
        .await
        .unwrap();
    let err = cluster
        .events()
        .create(&PostParams::default(), &recorded("same", "web"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(status) if status.code == 409));
}
