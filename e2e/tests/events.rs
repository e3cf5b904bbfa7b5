//! One Event storage, two APIs, seen with the real kubectl: an Event written through events.k8s.io/v1 (as the
//! kube-rs Recorder of the Stack controller writes them) shows in `kubectl get events` and in the Events of
//! `kubectl describe pod`, and a core/v1 Event shows through events.k8s.io.

use berth_e2e::{Kubectl, Server};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  containers: [{name: web, image: busybox}]
"#;

#[test]
fn an_event_written_through_events_k8s_io_shows_in_kubectl_get_events_and_describe() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.ok_stdin(&["create", "-f", "-"], Some(POD));
    let uid = k.ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    let event = format!(
        r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata: {{name: web.recorded, namespace: default}}
eventTime: "{now}"
reportingController: berth.dev/stack-controller
reportingInstance: host-1
action: Reconcile
reason: Created
note: Created by the Stack controller
type: Normal
regarding: {{apiVersion: v1, kind: Pod, name: web, namespace: default, uid: "{uid}"}}
"#,
        now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
    );
    k.ok_stdin(&["create", "-f", "-"], Some(&event));

    let listed = k.ok(&["get", "events"]);
    let row = listed
        .lines()
        .find(|l| l.contains("Created by the Stack controller"))
        .unwrap_or_else(|| panic!("no row for the event in:\n{listed}"));
    for cell in ["Normal", "Created", "pod/web"] {
        assert!(row.contains(cell), "{cell} missing from {row:?}");
    }
    let wide = k.ok(&["get", "events", "-o", "wide"]);
    assert!(
        wide.contains("berth.dev/stack-controller, host-1"),
        "the source column names the reporting controller:\n{wide}"
    );

    let described = k.ok(&["describe", "pod", "web"]);
    let events = described
        .split_once("\nEvents:")
        .map(|(_, events)| events)
        .unwrap_or_else(|| panic!("no Events section in:\n{described}"));
    let line = events
        .lines()
        .find(|l| l.contains("Created by the Stack controller"))
        .unwrap_or_else(|| panic!("the event is not among the pod's Events:\n{events}"));
    for cell in ["Normal", "Created", "berth.dev/stack-controller"] {
        assert!(line.contains(cell), "{cell} missing from {line:?}");
    }
}

#[test]
fn a_core_event_is_listed_through_events_k8s_io() {
    let server = Server::start();
    let k = Kubectl::new(&server);
    k.ok_stdin(
        &["create", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Event
metadata: {name: web.scheduled, namespace: default}
involvedObject: {apiVersion: v1, kind: Pod, name: web, namespace: default}
reason: Scheduled
message: Successfully assigned default/web to n1
source: {component: default-scheduler}
type: Normal
"#,
        ),
    );
    let note = k.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "web.scheduled",
        "-o",
        "jsonpath={.note}/{.regarding.name}/{.deprecatedSource.component}",
    ]);
    assert_eq!(
        note,
        "Successfully assigned default/web to n1/web/default-scheduler"
    );
    let selected = k.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "regarding.name=web",
        "-o",
        "name",
    ]);
    assert_eq!(selected.trim(), "event.events.k8s.io/web.scheduled");
}
