//! Container lifecycle hooks end to end: real kubectl against `berth up` (fresh data directory, node name and
//! Pod network per test; `berth down` on drop), busybox from a real loopback registry. Hooks leave marks in a
//! hostPath directory of the test's own, which the test reads from the host.

use std::time::Duration;

use berth_e2e::registry::Registry;
use berth_e2e::{Kubectl, Server, unique, wait_for};

const START: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(90);

/// `berth up` with a Ready node, a registry holding busybox, and a mark directory for hostPath volumes.
struct Setup {
    kubectl: Kubectl,
    image: String,
    // Fields drop in order: `berth down` stops the Pods before their mark directory and registry go.
    _server: Server,
    marks: tempfile::TempDir,
    _registry: Registry,
}

impl Setup {
    fn start(test: &str) -> Setup {
        let registry = Registry::start();
        let image = registry.push_busybox("berth/busybox:1");
        let node = unique(test);
        let server = Server::start_up(&["--node-name", &node]);
        let kubectl = Kubectl::new(&server);
        wait_for("the node to be Ready", START, || {
            let out = kubectl.run(
                &[
                    "get",
                    "node",
                    &node,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                None,
            );
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
        let marks = tempfile::Builder::new()
            .prefix("berth-lifecycle-")
            .tempdir()
            .expect("a mark directory");
        Setup {
            kubectl,
            image,
            marks,
            _server: server,
            _registry: registry,
        }
    }

    /// Applies `manifest` with `{{IMAGE}}` and `{{MARKS}}` filled in.
    fn apply(&self, manifest: &str) {
        let manifest = manifest
            .replace("{{IMAGE}}", &self.image)
            .replace("{{MARKS}}", &self.marks.path().display().to_string());
        self.kubectl
            .ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    }

    fn get(&self, pod: &str, jsonpath: &str) -> String {
        let out = self.kubectl.run(
            &["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")],
            None,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The reasons and notes of the Events about a Pod.
    fn events(&self, pod: &str) -> Vec<(String, String)> {
        self.kubectl.pod_events(pod)
    }

    fn mark(&self, name: &str) -> String {
        std::fs::read_to_string(self.marks.path().join(name)).unwrap_or_default()
    }

    /// Waits for the mark file `name` to hold `expected`, reporting the Pod's state otherwise.
    fn wait_mark(&self, pod: &str, name: &str, expected: &str) {
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(&format!("mark {name}"), SETTLE, || {
                (self.mark(name) == expected).then_some(())
            })
        }));
        if found.is_err() {
            panic!(
                "mark {name}: {:?}, expected {expected:?}\nstatus: {}\nevents: {:?}",
                self.mark(name),
                self.get(pod, "{.status}"),
                self.events(pod)
            );
        }
    }
}

#[test]
fn a_post_start_exec_hook_runs_before_the_container_counts_as_running() {
    let setup = Setup::start("lc-poststart");
    // The container waits for the hook's file and reports it in the mark directory.
    setup.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hooked}
spec:
  volumes: [{name: marks, hostPath: {path: "{{MARKS}}", type: Directory}}]
  containers:
  - name: main
    image: "{{IMAGE}}"
    command: [sh, -c, "i=0; while [ ! -f /hooked ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; cat /hooked > /marks/seen; exec sleep 3600"]
    volumeMounts: [{name: marks, mountPath: /marks}]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "echo from-post-start > /hooked"]}
"#,
    );
    setup.wait_mark("hooked", "seen", "from-post-start\n");
    wait_for("hooked to be Running", SETTLE, || {
        (!setup
            .get(
                "hooked",
                "{.status.containerStatuses[0].state.running.startedAt}",
            )
            .is_empty())
        .then_some(())
    });
    assert_eq!(
        setup.get("hooked", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
}

#[test]
fn a_failing_post_start_hook_kills_the_container_which_restarts_by_policy() {
    let setup = Setup::start("lc-poststart-fail");
    setup.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: broken-hook}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: "{{IMAGE}}"
    command: [sleep, "3600"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "echo no good; exit 3"]}
"#,
    );
    wait_for("a FailedPostStartHook Event", SETTLE, || {
        setup
            .events("broken-hook")
            .iter()
            .find(|(reason, _)| reason == "FailedPostStartHook")
            .cloned()
    });
    let (_, note) = setup
        .events("broken-hook")
        .into_iter()
        .find(|(reason, _)| reason == "FailedPostStartHook")
        .expect("the Event just seen");
    assert!(
        note.contains("Exec lifecycle hook") && note.contains("\"main\""),
        "{note}"
    );
    wait_for("a restart after the failed hook", SETTLE, || {
        let count = setup.get("broken-hook", "{.status.containerStatuses[0].restartCount}");
        (count.parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
}

#[test]
fn pre_stop_hooks_run_before_the_containers_stop_on_delete_and_on_a_liveness_restart() {
    let setup = Setup::start("lc-prestop");
    // `app` records its SIGTERM after its exec hook's mark; `web` is busybox httpd whose CGI script the
    // httpGet hook calls (it answers only while the container still runs).
    setup.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stopping}
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{name: marks, hostPath: {path: "{{MARKS}}", type: Directory}}]
  containers:
  - name: app
    image: "{{IMAGE}}"
    command: [sh, -c, "trap 'echo term >> /marks/app; exit 0' TERM; echo up > /marks/app-up; sleep 3600 & wait"]
    volumeMounts: [{name: marks, mountPath: /marks}]
    lifecycle:
      preStop:
        exec: {command: [sh, -c, "echo pre-stop >> /marks/app"]}
  - name: web
    image: "{{IMAGE}}"
    command: [sh, -c, "mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho pre-stop-http >> /marks/web\necho Content-Type: text/plain\necho\necho ok\n' > /www/cgi-bin/hook && chmod +x /www/cgi-bin/hook && echo up > /marks/web-up && exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080, name: http}]
    volumeMounts: [{name: marks, mountPath: /marks}]
    lifecycle:
      preStop:
        httpGet: {path: /cgi-bin/hook, port: http}
"#,
    );
    setup.wait_mark("stopping", "app-up", "up\n");
    setup.wait_mark("stopping", "web-up", "up\n");
    assert_eq!(setup.mark("app"), "", "no hook ran before the delete");
    assert_eq!(setup.mark("web"), "");
    setup
        .kubectl
        .ok(&["delete", "pod", "stopping", "--wait=false"]);
    setup.wait_mark("stopping", "app", "pre-stop\nterm\n");
    setup.wait_mark("stopping", "web", "pre-stop-http\n");
    wait_for("the Pod to be gone", SETTLE, || {
        let out = setup.kubectl.run(
            &["get", "pod", "stopping", "--ignore-not-found", "-o", "name"],
            None,
        );
        (out.status.success() && out.stdout.is_empty()).then_some(())
    });
    assert!(
        !setup
            .events("stopping")
            .iter()
            .any(|(reason, _)| reason == "FailedPreStopHook"),
        "{:?}",
        setup.events("stopping")
    );

    // A failed liveness probe restarts the container the same way: preStop first, then SIGTERM. The first
    // run turns unhealthy once it is up; the restarted one stays healthy.
    setup.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: lively}
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{name: marks, hostPath: {path: "{{MARKS}}", type: Directory}}]
  containers:
  - name: app
    image: "{{IMAGE}}"
    command: [sh, -c, "trap 'echo term >> /marks/lively; exit 0' TERM; if [ -f /marks/lively-runs ]; then rm -f /marks/unhealthy; else touch /marks/unhealthy; fi; echo run >> /marks/lively-runs; sleep 3600 & wait"]
    volumeMounts: [{name: marks, mountPath: /marks}]
    livenessProbe:
      exec: {command: [sh, -c, "test ! -f /marks/unhealthy"]}
      periodSeconds: 1
      failureThreshold: 1
    lifecycle:
      preStop:
        exec: {command: [sh, -c, "echo pre-stop >> /marks/lively"]}
"#,
    );
    setup.wait_mark("lively", "lively", "pre-stop\nterm\n");
    setup.wait_mark("lively", "lively-runs", "run\nrun\n");
    wait_for("lively restarted once and running", SETTLE, || {
        let count = setup.get("lively", "{.status.containerStatuses[0].restartCount}");
        let running = setup.get(
            "lively",
            "{.status.containerStatuses[0].state.running.startedAt}",
        );
        (count == "1" && !running.is_empty()).then_some(())
    });
    let events = setup.events("lively");
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "Killing" && note.contains("liveness probe")),
        "{events:?}"
    );
}
