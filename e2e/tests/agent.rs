//! The node agent end to end: real kubectl against `berth up` (API server, control plane and agent in one
//! process, fresh data directory and node name per test), images pulled from a real loopback registry.
//! Each test stops its `berth up` and runs `berth down` on its data directory, so no container, cgroup or
//! network namespace outlives it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_e2e::registry::Registry;
use berth_e2e::{Server, berth_bin, wait_for};

const START: Duration = Duration::from_secs(120);

/// A `berth up` with a registry holding busybox; torn down (containers included) on drop.
struct Node {
    server: Server,
    image: String,
    _registry: Registry,
}

impl Node {
    fn start(test: &str) -> Node {
        let registry = Registry::start();
        let image = registry.push_busybox("berth/busybox:1");
        let name = format!("{test}-{}", std::process::id());
        let server = Server::start_up(&["--node-name", &name]);
        let node = Node {
            server,
            image,
            _registry: registry,
        };
        wait_for("the node to be Ready", START, || {
            let out = node.server.kubectl(&[
                "get",
                "node",
                &name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
        node
    }

    fn data_dir(&self) -> &Path {
        self.server.data_dir.path()
    }

    /// Applies a manifest with `{{IMAGE}}` replaced by the registry's busybox.
    fn apply(&self, manifest: &str) {
        let manifest = manifest.replace("{{IMAGE}}", &self.image);
        let out = self
            .server
            .kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn get(&self, pod: &str, jsonpath: &str) -> String {
        let out = self
            .server
            .kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the jsonpath's value satisfies `ok`; returns it.
    fn wait(
        &self,
        pod: &str,
        jsonpath: &str,
        deadline: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(&format!("{pod} {jsonpath}"), deadline, || {
                last = self.get(pod, jsonpath);
                ok(&last).then(|| last.clone())
            })
        }));
        match found {
            Ok(value) => value,
            Err(_) => panic!(
                "{pod} {jsonpath}: last value {last:?}\nstatus: {}\nevents: {:?}",
                self.get(pod, "{.status}"),
                self.events(pod)
            ),
        }
    }

    /// The reasons and notes of the Events about a Pod.
    fn events(&self, pod: &str) -> Vec<(String, String)> {
        self.server.pod_events(pod)
    }

    fn has_event(&self, pod: &str, reason: &str, note_contains: &str) -> bool {
        self.events(pod)
            .iter()
            .any(|(r, n)| r == reason && n.contains(note_contains))
    }

    /// The container's output, read from the kubelet log layout under the data directory.
    fn log(&self, pod: &str, container: &str, restart: u32) -> String {
        let uid = self.get(pod, "{.metadata.uid}");
        let path = self
            .data_dir()
            .join("agent/logs")
            .join(format!("default_{pod}_{uid}"))
            .join(container)
            .join(format!("{restart}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // CRI format: `<time> <stream> <F|P> <text>`.
        text.lines()
            .filter_map(|line| line.splitn(4, ' ').nth(3))
            .map(|content| format!("{content}\n"))
            .collect()
    }

    /// The runtime id of a container (`berth://<id>`), and its state directory.
    fn container_dir(&self, pod: &str, index: usize) -> (String, PathBuf) {
        let id = self.get(
            pod,
            &format!("{{.status.containerStatuses[{index}].containerID}}"),
        );
        let id = id
            .strip_prefix("berth://")
            .unwrap_or_else(|| panic!("containerID {id:?}"))
            .to_owned();
        let dir = self.data_dir().join("c").join(&id);
        (id, dir)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.kill();
        let _ = Command::new(berth_bin())
            .arg("down")
            .arg("--data-dir")
            .arg(self.data_dir())
            .status();
    }
}

fn pid_of(state_dir: &Path) -> i32 {
    let text = std::fs::read_to_string(state_dir.join("started.json")).expect("started.json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("started.json is JSON");
    value["pid"].as_i64().expect("a pid") as i32
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu,cpuacct", "unified"]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join("berth").join(id))
        .collect()
}

#[test]
fn a_pod_runs_its_init_containers_in_order_then_is_ready_with_its_environment_expanded() {
    let node = Node::start("agent-ready");
    node.apply(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {MODE: production, COLOR: blue}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: shop}}
spec:
  initContainers:
  - {name: first, image: "{{IMAGE}}", command: [sh, -c, "echo first; sleep 1"]}
  - {name: second, image: "{{IMAGE}}", command: [sh, -c, "echo second"]}
  containers:
  - name: main
    image: "{{IMAGE}}"
    command: [sh, -c]
    args: ["echo host=$(HOST) url='$(URL)' pw=$PASSWORD mode=$MODE cfg=$CFG_COLOR app=$APP ns=$NS img=$FROM_IMAGE lit='$(KEEP)' esc='$$(HOST)'; sleep 3600"]
    envFrom:
    - {configMapRef: {name: settings}}
    - {configMapRef: {name: settings}, prefix: CFG_}
    env:
    - {name: HOST, value: db}
    - {name: URL, value: "pg://$(HOST):5432/$(MISSING)"}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
"#,
    );
    node.wait("web", "{.status.phase}", START, |p| p == "Running");
    node.wait(
        "web",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        START,
        |s| s == "True",
    );
    assert_eq!(
        node.get("web", "{.status.containerStatuses[0].ready}"),
        "true"
    );
    // Through the API server's proxy to the kubelet endpoint.
    let logs = wait_for("kubectl logs", START, || {
        let out = node.server.kubectl(&["logs", "web", "-c", "main"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    });
    assert!(logs.starts_with("host=db "), "{logs}");
    assert_eq!(
        node.server.kubectl_ok(&["logs", "web", "-c", "first"]),
        "first\n"
    );
    assert_eq!(
        node.get(
            "web",
            "{.status.initContainerStatuses[*].state.terminated.reason}"
        ),
        "Completed Completed"
    );
    // In order: the second started only after the first finished, the main container after both.
    let first_done = node.get(
        "web",
        "{.status.initContainerStatuses[0].state.terminated.finishedAt}",
    );
    let second_start = node.get(
        "web",
        "{.status.initContainerStatuses[1].state.terminated.startedAt}",
    );
    let second_done = node.get(
        "web",
        "{.status.initContainerStatuses[1].state.terminated.finishedAt}",
    );
    let main_start = node.get(
        "web",
        "{.status.containerStatuses[0].state.running.startedAt}",
    );
    assert!(first_done <= second_start, "{first_done} > {second_start}");
    assert!(second_done <= main_start, "{second_done} > {main_start}");
    assert_eq!(node.log("web", "first", 0), "first\n");
    assert_eq!(node.log("web", "second", 0), "second\n");
    let line = wait_for("the main container's output", START, || {
        Some(node.log("web", "main", 0)).filter(|l| !l.is_empty())
    });
    assert_eq!(
        line,
        "host=db url=pg://db:5432/$(MISSING) pw=s3cret mode=production cfg=blue app=shop ns=default \
         img=image-value lit=$(KEEP) esc=$(HOST)\n"
    );
    assert!(
        node.get("web", "{.status.containerStatuses[0].imageID}")
            .contains("@sha256:")
    );
    assert_eq!(node.get("web", "{.status.hostIP}"), "127.0.0.1");
    assert!(!node.get("web", "{.status.startTime}").is_empty());
    for (reason, note) in [
        ("Pulling", "Pulling image"),
        ("Pulled", "image"),
        ("Created", "Created container main"),
        ("Started", "Started container main"),
    ] {
        assert!(
            node.has_event("web", reason, note),
            "no {reason} event: {:?}",
            node.events("web")
        );
    }
}

#[test]
fn exit_codes_completed_and_crash_loop_backoff_are_reported() {
    let node = Node::start("agent-exits");
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: Never
  containers:
  - {name: ok, image: "{{IMAGE}}", command: [sh, -c, "exit 0"]}
  - {name: bad, image: "{{IMAGE}}", command: [sh, -c, "exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: c, image: "{{IMAGE}}", command: [sh, -c, "echo crashing; exit 1"]}
"#,
    );
    node.wait("job", "{.status.phase}", START, |p| p == "Failed");
    assert_eq!(
        node.get(
            "job",
            "{.status.containerStatuses[*].state.terminated.reason}"
        ),
        "Completed Error"
    );
    assert_eq!(
        node.get(
            "job",
            "{.status.containerStatuses[*].state.terminated.exitCode}"
        ),
        "0 3"
    );
    assert_eq!(
        node.get("job", "{.status.containerStatuses[1].restartCount}"),
        "0"
    );

    // The first restart is immediate, the next after 10 s: waiting in CrashLoopBackOff in between.
    node.wait(
        "crasher",
        "{.status.containerStatuses[0].state.waiting.reason}",
        START,
        |r| r == "CrashLoopBackOff",
    );
    let first = node.get("crasher", "{.status.containerStatuses[0].restartCount}");
    let restarted = node.wait(
        "crasher",
        "{.status.containerStatuses[0].restartCount}",
        Duration::from_secs(90),
        |n| n.parse::<u32>().unwrap_or(0) >= 2 && n != first,
    );
    assert!(restarted.parse::<u32>().unwrap() > first.parse::<u32>().unwrap());
    assert_eq!(
        node.get(
            "crasher",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "1"
    );
    assert_eq!(node.get("crasher", "{.status.phase}"), "Running");
    assert_eq!(
        node.log("crasher", "c", 1),
        "crashing\n",
        "one log file per attempt"
    );
    assert_eq!(
        node.server.kubectl_ok(&["logs", "crasher", "--previous"]),
        "crashing\n"
    );
    assert!(
        node.has_event(
            "crasher",
            "BackOff",
            "Back-off restarting failed container c"
        ),
        "{:?}",
        node.events("crasher")
    );
}

#[test]
fn oom_kills_missing_images_and_missing_secrets_are_reported() {
    let node = Node::start("agent-oom");
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: "{{IMAGE}}"
    command: [sh, -c, "dd if=/dev/zero of=/dev/null bs=64M count=4"]
    resources: {limits: {memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: nothere}
spec:
  containers:
  - {name: c, image: "{{IMAGE}}-does-not-exist", command: [sh]}
---
apiVersion: v1
kind: Pod
metadata: {name: unconfigured}
spec:
  containers:
  - name: c
    image: "{{IMAGE}}"
    command: [sh, -c, "sleep 3600"]
    env: [{name: PW, valueFrom: {secretKeyRef: {name: absent, key: pw}}}]
"#,
    );
    node.wait(
        "unconfigured",
        "{.status.containerStatuses[0].state.waiting.reason}",
        START,
        |r| r == "CreateContainerConfigError",
    );
    assert_eq!(
        node.get(
            "unconfigured",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        "secret \"absent\" not found"
    );
    node.wait("hog", "{.status.phase}", START, |p| p == "Failed");
    assert_eq!(
        node.get(
            "hog",
            "{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "OOMKilled"
    );
    assert_eq!(
        node.get(
            "hog",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "137"
    );

    node.wait(
        "nothere",
        "{.status.containerStatuses[0].state.waiting.reason}",
        START,
        |r| r == "ErrImagePull",
    );
    node.wait(
        "nothere",
        "{.status.containerStatuses[0].state.waiting.reason}",
        START,
        |r| r == "ImagePullBackOff",
    );
    assert_eq!(node.get("nothere", "{.status.phase}"), "Pending");
    assert!(
        node.has_event("nothere", "Failed", "Failed to pull image"),
        "{:?}",
        node.events("nothere")
    );
    assert!(
        node.has_event("nothere", "BackOff", "Back-off pulling image"),
        "{:?}",
        node.events("nothere")
    );
}

#[test]
fn deleting_a_pod_removes_its_processes_cgroups_and_state() {
    let node = Node::start("agent-delete");
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: doomed}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - {name: c, image: "{{IMAGE}}", command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]}
"#,
    );
    node.wait("doomed", "{.status.phase}", START, |p| p == "Running");
    let (id, dir) = node.container_dir("doomed", 0);
    let pid = pid_of(&dir);
    let uid = node.get("doomed", "{.metadata.uid}");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(
        cgroup_dirs(&id).iter().any(|d| d.exists()),
        "no cgroup for {id}"
    );

    node.server
        .kubectl_ok(&["delete", "pod", "doomed", "--timeout=60s"]);
    wait_for("the Pod object to go", START, || {
        let out = node.server.kubectl(&["get", "pod", "doomed"]);
        (!out.status.success()).then_some(())
    });
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still runs"
    );
    assert!(!dir.exists(), "{} is left", dir.display());
    for cgroup in cgroup_dirs(&id) {
        assert!(!cgroup.exists(), "{} is left", cgroup.display());
    }
    let agent = node.data_dir().join("agent");
    assert!(!agent.join("pods").join(&uid).exists(), "records left");
    assert!(
        std::fs::read_dir(agent.join("netns"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "a network namespace is left"
    );
    assert!(
        !agent
            .join("logs")
            .join(format!("default_doomed_{uid}"))
            .exists()
    );
}

#[test]
fn a_killed_agent_readopts_running_containers_without_restarting_them() {
    let mut node = Node::start("agent-readopt");
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: survivor}
spec:
  containers:
  - {name: c, image: "{{IMAGE}}", command: [sh, -c, "sleep 3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  containers:
  - {name: c, image: "{{IMAGE}}", command: [sh, -c, "sleep 2; exit 1"]}
"#,
    );
    node.wait("survivor", "{.status.phase}", START, |p| p == "Running");
    node.wait(
        "flaky",
        "{.status.containerStatuses[0].restartCount}",
        START,
        |n| n.parse::<u32>().unwrap_or(0) >= 1,
    );
    let (_, dir) = node.container_dir("survivor", 0);
    let pid = pid_of(&dir);
    let started = node.get(
        "survivor",
        "{.status.containerStatuses[0].state.running.startedAt}",
    );

    node.server.restart();
    let flaky_after = node.get("flaky", "{.status.containerStatuses[0].restartCount}");
    // The restarted agent has looked at both Pods once the flaky one counts on from where it was.
    node.wait(
        "flaky",
        "{.status.containerStatuses[0].restartCount}",
        START,
        |n| n.parse::<u32>().unwrap_or(0) > flaky_after.parse::<u32>().unwrap_or(0),
    );
    assert_eq!(node.get("survivor", "{.status.phase}"), "Running");
    assert_eq!(
        node.get("survivor", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    assert_eq!(
        node.get(
            "survivor",
            "{.status.containerStatuses[0].state.running.startedAt}"
        ),
        started
    );
    assert_eq!(pid_of(&dir), pid, "the container was restarted");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn readiness_flips_ready_and_a_failing_liveness_probe_restarts_the_container() {
    let node = Node::start("agent-probes");
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: "{{IMAGE}}"
    command: [sh, -c, "touch /ready; sleep 6; rm /ready; sleep 4; touch /die; sleep 3600"]
    readinessProbe: {exec: {command: [test, -e, /ready]}, periodSeconds: 1, failureThreshold: 1}
    livenessProbe: {exec: {command: [test, '!', -e, /die]}, periodSeconds: 1, failureThreshold: 1}
"#,
    );
    let ready = "{.status.conditions[?(@.type==\"Ready\")].status}";
    node.wait("probed", ready, START, |s| s == "True");
    assert_eq!(
        node.get("probed", "{.status.containerStatuses[0].ready}"),
        "true"
    );
    node.wait("probed", ready, Duration::from_secs(30), |s| s == "False");
    assert_eq!(
        node.get("probed", "{.status.containerStatuses[0].restartCount}"),
        "0",
        "readiness alone turned the Pod unready, without a restart"
    );
    assert!(
        !node
            .get(
                "probed",
                "{.status.containerStatuses[0].state.running.startedAt}"
            )
            .is_empty(),
        "still the first attempt, running"
    );
    node.wait(
        "probed",
        "{.status.containerStatuses[0].restartCount}",
        Duration::from_secs(60),
        |n| n.parse::<u32>().unwrap_or(0) >= 1,
    );
    assert!(
        node.has_event(
            "probed",
            "Killing",
            "failed liveness probe, will be restarted"
        ),
        "{:?}",
        node.events("probed")
    );
    assert!(
        node.has_event("probed", "Unhealthy", "Readiness probe failed"),
        "{:?}",
        node.events("probed")
    );
}

/// `berth image <args> --data-dir <node's>`: its standard output.
fn berth_image(node: &Node, args: &[&str]) -> String {
    let out = Command::new(berth_bin())
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(node.data_dir())
        .output()
        .expect("running berth image");
    assert!(
        out.status.success(),
        "berth image {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn image_prune_keeps_what_pods_run_and_removes_the_rest() {
    let node = Node::start("prune");
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: keeper}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: "{{IMAGE}}", command: [sleep, "3600"]}]
"#,
    );
    node.wait("keeper", "{.status.phase}", START, |p| p == "Running");
    assert!(berth_image(&node, &["ls"]).contains("berth/busybox"));

    let kept = berth_image(&node, &["prune"]);
    assert!(
        kept.starts_with("removed 0 image(s), kept 1 in use"),
        "{kept}"
    );
    assert!(berth_image(&node, &["ls"]).contains("berth/busybox"));

    node.server
        .kubectl_ok(&["delete", "pod", "keeper", "--wait=true", "--timeout=120s"]);
    wait_for("keeper's records to go", START, || {
        let pods = node.data_dir().join("agent/pods");
        let left = std::fs::read_dir(&pods).map_or(0, |d| d.count());
        (left == 0).then_some(())
    });
    let removed = berth_image(&node, &["prune"]);
    assert!(
        removed.starts_with("removed 1 image(s), kept 0 in use"),
        "{removed}"
    );
    assert!(!berth_image(&node, &["ls"]).contains("berth/busybox"));
}

/// `berth image pull <reference> --data-dir <dir>`, its standard output read through a pipe (plain lines).
fn berth_pull(data_dir: &Path, reference: &str) -> std::process::Output {
    Command::new(berth_bin())
        .args(["image", "pull", reference, "--data-dir"])
        .arg(data_dir)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("running berth image pull")
}

#[test]
fn image_pull_names_each_layer_and_the_digest_and_a_missing_image_fails_clearly() {
    let registry = Registry::start();
    let image = registry.push_busybox("berth/pulled:1");
    let data_dir = tempfile::Builder::new()
        .prefix("berth-pull-")
        .tempdir()
        .expect("a data directory");
    // What the registry holds, as skopeo reads it: the manifest digest and the layers.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("running skopeo inspect");
    assert!(inspect.status.success(), "skopeo inspect: {inspect:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&inspect.stdout).expect("skopeo prints JSON");
    let digest = manifest["Digest"].as_str().expect("a digest").to_owned();
    let layers: Vec<String> = manifest["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l.as_str().expect("a layer digest").to_owned())
        .collect();
    assert!(!layers.is_empty());

    let out = berth_pull(data_dir.path(), &image);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth image pull: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for layer in &layers {
        let short = &layer["sha256:".len()..][..12];
        for state in [
            "Downloading",
            "Download complete",
            "Extracting",
            "Pull complete",
        ] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("{short}: {state}"))),
                "no `{short}: {state}` line in:\n{stdout}"
            );
        }
    }
    assert!(stdout.contains(&format!("Digest: {digest}")), "{stdout}");
    assert!(
        stdout.contains(&format!("Status: Downloaded newer image for {image}")),
        "{stdout}"
    );
    let listed = Command::new(berth_bin())
        .args(["image", "ls", "--data-dir"])
        .arg(data_dir.path())
        .output()
        .expect("running berth image ls");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&image) && l.contains(&digest[..19])),
        "{listed}"
    );

    // Again: every layer is there already.
    let again = berth_pull(data_dir.path(), &image);
    let stdout = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success(), "{stdout}");
    for layer in &layers {
        let short = &layer["sha256:".len()..][..12];
        assert!(
            stdout.contains(&format!("{short}: Already exists")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("Status: Image is up to date for {image}")),
        "{stdout}"
    );

    let missing = format!("{}/berth/nothere:1", registry.host());
    let failed = berth_pull(data_dir.path(), &missing);
    let stderr = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(!failed.status.success(), "pulling {missing} succeeded");
    assert!(stderr.contains(&missing), "{stderr}");
}

/// The container state directories under the data directory (`<data>/c/<id>`).
fn container_dirs(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("c"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_burst_of_pods_deleted_at_once_leaves_no_container_state_and_no_shim() {
    const PODS: usize = 30;
    let node = Node::start("agent-burst");
    let manifest: String = (0..PODS)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: burst-{i}, labels: {{burst: \"yes\"}}}}\n\
                 spec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  \
                 - {{name: c, image: \"{{{{IMAGE}}}}\", command: [sleep, \"3600\"]}}\n---\n"
            )
        })
        .collect();
    node.apply(&manifest);
    let phases = || {
        node.server.kubectl(&[
            "get",
            "pods",
            "-l",
            "burst=yes",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
    };
    wait_for("every burst Pod to run", Duration::from_secs(300), || {
        let out = phases();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.split_whitespace().filter(|p| *p == "Running").count() == PODS).then_some(())
    });
    assert_eq!(container_dirs(node.data_dir()).len(), PODS);
    assert_eq!(berth_e2e::bench::shims(node.data_dir()).len(), PODS);

    // All at once, as a client deleting many Pods does (kubectl deletes one after the other).
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        use futures::StreamExt as _;
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(node.server.client().await, "default");
        let params = kube::api::DeleteParams::default().grace_period(0);
        let deleted: Vec<_> = futures::stream::iter((0..PODS).map(|i| {
            let (pods, params) = (pods.clone(), params.clone());
            async move { pods.delete(&format!("burst-{i}"), &params).await }
        }))
        .buffer_unordered(PODS)
        .collect()
        .await;
        for result in deleted {
            result.expect("deleting a burst Pod");
        }
    });
    let mut left = (Vec::new(), Vec::new(), 0);
    let gone = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "every burst Pod's containers, shims and records to go",
            Duration::from_secs(120),
            || {
                let records =
                    std::fs::read_dir(node.data_dir().join("agent/pods")).map_or(0, |d| d.count());
                left = (
                    container_dirs(node.data_dir()),
                    berth_e2e::bench::shims(node.data_dir()),
                    records,
                );
                (left.0.is_empty() && left.1.is_empty() && left.2 == 0).then_some(())
            },
        )
    }));
    assert!(
        gone.is_ok(),
        "left: containers {:?}, shims {:?}, Pod records {}",
        left.0,
        left.1,
        left.2
    );
    let out = phases();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "burst Pods still in the API"
    );
}
