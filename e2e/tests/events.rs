//! One Event storage, two APIs, seen with the real kubectl: an Event written through events.k8s.io/v1 (as the
//! kube-rs Recorder of the Stack controller writes them) shows in `kubectl get events` and in the Events of
//! `kubectl describe pod`, and a core/v1 Event shows through events.k8s.io.

use berth_e2e::Server;

struct Kubectl {
    server: Server,
}

impl Kubectl {
    fn start() -> Kubectl {
        Kubectl {
            server: Server::start(),
        }
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let cache = self.server.data_dir.path().join("kubectl-cache");
        let mut all = vec![format!("--cache-dir={}", cache.display())];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = self.server.kubectl_with_stdin(&all, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  containers: [{name: web, image: busybox}]
"#;

#[test]
fn an_event_written_through_events_k8s_io_shows_in_kubectl_get_events_and_describe() {
    let k = Kubectl::start();
    k.ok(&["create", "-f", "-"], Some(POD));
    let uid = k.ok(
        &["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"],
        None,
    );
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
    k.ok(&["create", "-f", "-"], Some(&event));

    let listed = k.ok(&["get", "events"], None);
    let row = listed
        .lines()
        .find(|l| l.contains("Created by the Stack controller"))
        .unwrap_or_else(|| panic!("no row for the event in:\n{listed}"));
    for cell in ["Normal", "Created", "pod/web"] {
        assert!(row.contains(cell), "{cell} missing from {row:?}");
    }
    let wide = k.ok(&["get", "events", "-o", "wide"], None);
    assert!(
        wide.contains("berth.dev/stack-controller, host-1"),
        "the source column names the reporting controller:\n{wide}"
    );

    let described = k.ok(&["describe", "pod", "web"], None);
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
    let k = Kubectl::start();
    k.ok(
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
    let note = k.ok(
        &[
            "get",
            "events.v1.events.k8s.io",
            "web.scheduled",
            "-o",
            "jsonpath={.note}/{.regarding.name}/{.deprecatedSource.component}",
        ],
        None,
    );
    assert_eq!(
        note,
        "Successfully assigned default/web to n1/web/default-scheduler"
    );
    let selected = k.ok(
        &[
            "get",
            "events.v1.events.k8s.io",
            "--field-selector",
            "regarding.name=web",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(selected.trim(), "event.events.k8s.io/web.scheduled");
}
