//! `kubectl get` prints the columns users know, because the server answers with meta.k8s.io Tables: the
//! Stack CRD's printer columns, the pod columns (and `-o wide`), namespaces, and one row per change under `-w`.
//! Every test starts its own server and waits on conditions, never on time.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_e2e::{Kubectl, Server, Watch};

/// How long a watch may take to print an expected line.
const DEADLINE: Duration = Duration::from_secs(30);

fn kubectl(server: &Server, args: &[&str]) -> String {
    Kubectl::new(server).ok(args)
}

fn apply(server: &Server, yaml: &str) {
    Kubectl::new(server).ok_stdin(&["apply", "-f", "-"], Some(yaml));
}

fn install_stack(server: &Server) {
    let root = Server::repo_root();
    kubectl(
        server,
        &["apply", "-f", &root.join("crds").display().to_string()],
    );
    let sample = root.join("config/samples/stack.yaml");
    kubectl(server, &["apply", "-f", &sample.display().to_string()]);
}

/// Splits kubectl's aligned table into rows keyed by column title. Titles may hold a space (`NOMINATED NODE`),
/// so cells are cut at the offsets where the titles start, which is how kubectl's tab writer aligns them.
fn parse_table(output: &str, titles: &[&str]) -> Vec<BTreeMap<String, String>> {
    let mut lines = output.lines();
    let header = lines.next().expect("a header line");
    let mut starts = Vec::new();
    let mut from = 0;
    for title in titles {
        let at = header[from..]
            .find(title)
            .unwrap_or_else(|| panic!("no {title} column in {header:?}"))
            + from;
        starts.push(at);
        from = at + title.len();
    }
    assert_eq!(
        header[from..].trim(),
        "",
        "more columns than expected: {header:?}"
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            titles
                .iter()
                .enumerate()
                .map(|(i, title)| {
                    let start = starts[i].min(line.len());
                    let end = starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    (title.to_string(), line[start..end].trim().to_owned())
                })
                .collect()
        })
        .collect()
}

/// An age as kubectl prints it: `5s`, `2m10s`, `3h`.
fn is_age(cell: &str) -> bool {
    let units: String = cell.chars().filter(|c| !c.is_ascii_digit()).collect();
    !cell.is_empty() && ["s", "m", "ms", "h", "hm", "d", "dh", "y", "yd"].contains(&units.as_str())
}

const STACK_COLUMNS: &[&str] = &["NAME", "READY", "PHASE", "ENDPOINT", "AGE"];

const READY_STATUS: &str = r#"{"status":{"phase":"Ready","conditions":[{"type":"Ready","status":"True","reason":"Reconciled","message":"all components ready","lastTransitionTime":"2024-01-01T00:00:00Z"}],"endpoints":[{"name":"app","url":"http://127.0.0.1:5500"}]}}"#;

#[test]
fn stacks_print_the_crd_printer_columns() {
    let server = Server::start();
    install_stack(&server);

    let rows = parse_table(&kubectl(&server, &["get", "stacks"]), STACK_COLUMNS);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["NAME"], "demo");
    assert_eq!(rows[0]["READY"], "", "no status yet");
    assert!(is_age(&rows[0]["AGE"]), "{rows:?}");

    kubectl(
        &server,
        &[
            "patch",
            "stack",
            "demo",
            "--subresource=status",
            "--type=merge",
            "-p",
            READY_STATUS,
        ],
    );
    let rows = parse_table(&kubectl(&server, &["get", "st", "demo"]), STACK_COLUMNS);
    assert_eq!(rows[0]["READY"], "True");
    assert_eq!(rows[0]["PHASE"], "Ready");
    assert_eq!(rows[0]["ENDPOINT"], "http://127.0.0.1:5500");
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  nodeName: node-1
  containers:
  - {name: app, image: busybox}
  - {name: worker, image: busybox}
"#;

#[test]
fn pods_print_ready_status_restarts_and_wide_columns() {
    let server = Server::start();
    apply(&server, POD);
    let finished = "2024-01-01T00:00:00Z";
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": "10.88.0.7",
        "podIPs": [{"ip": "10.88.0.7"}],
        "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "image": "busybox", "imageID": "",
             "state": {"running": {"startedAt": finished}}},
            {"name": "worker", "ready": false, "restartCount": 3, "image": "busybox", "imageID": "",
             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": finished}}}
        ]
    }});
    kubectl(
        &server,
        &[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
    );

    let narrow = parse_table(
        &kubectl(&server, &["get", "pods"]),
        &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
    );
    assert_eq!(narrow[0]["NAME"], "web");
    assert_eq!(narrow[0]["READY"], "1/2");
    assert_eq!(narrow[0]["STATUS"], "CrashLoopBackOff");
    assert!(
        narrow[0]["RESTARTS"].starts_with("3 (") && narrow[0]["RESTARTS"].ends_with(" ago)"),
        "{narrow:?}"
    );

    let wide = parse_table(
        &kubectl(&server, &["get", "pods", "-o", "wide"]),
        &[
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES",
        ],
    );
    assert_eq!(wide[0]["IP"], "10.88.0.7");
    assert_eq!(wide[0]["NODE"], "node-1");
    assert_eq!(wide[0]["NOMINATED NODE"], "<none>");
    assert_eq!(wide[0]["READINESS GATES"], "<none>");

    // kubectl adds NAMESPACE and LABELS from the rows' object metadata.
    let all = parse_table(
        &kubectl(&server, &["get", "pods", "-A", "--show-labels"]),
        &[
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "LABELS",
        ],
    );
    assert_eq!(all[0]["NAMESPACE"], "default");
    assert_eq!(all[0]["LABELS"], "app=web");
}

#[test]
fn namespaces_print_status_and_age() {
    let server = Server::start();
    let rows = parse_table(
        &kubectl(&server, &["get", "namespaces"]),
        &["NAME", "STATUS", "AGE"],
    );
    let default = rows
        .iter()
        .find(|r| r["NAME"] == "default")
        .unwrap_or_else(|| panic!("no default namespace in {rows:?}"));
    assert_eq!(default["STATUS"], "Active");
    assert!(is_age(&default["AGE"]), "{rows:?}");
}

/// Waits for a row of a `kubectl get -w` whose cells satisfy `check`; returns the line.
fn wait_row(watch: &mut Watch, what: &str, check: impl Fn(&[&str]) -> bool) -> String {
    watch.wait_line(what, DEADLINE, |line| {
        let cells: Vec<&str> = line.split_whitespace().collect();
        check(&cells).then(|| line.to_owned())
    })
}

#[test]
fn get_watch_prints_a_row_per_change() {
    let server = Server::start();
    install_stack(&server);

    let mut watch = Kubectl::new(&server).watch(&["get", "stacks", "-w", "--request-timeout=60s"]);
    wait_row(&mut watch, "the header", |cells| cells == STACK_COLUMNS);
    wait_row(&mut watch, "the sample Stack", |cells| {
        cells.first() == Some(&"demo")
    });

    kubectl(
        &server,
        &[
            "patch",
            "stack",
            "demo",
            "--subresource=status",
            "--type=merge",
            "-p",
            READY_STATUS,
        ],
    );
    let line = wait_row(&mut watch, "the Stack turning Ready", |cells| {
        cells.len() == 5 && cells[0] == "demo" && cells[1] == "True"
    });
    assert!(line.contains("http://127.0.0.1:5500"), "{line}");

    apply(
        &server,
        "apiVersion: berth.dev/v1alpha1\nkind: Stack\nmetadata: {name: second}\nspec: {app: {image: busybox}}\n",
    );
    wait_row(&mut watch, "the new Stack", |cells| {
        cells.len() == 2 && cells[0] == "second" && is_age(cells[1])
    });
    assert!(
        !watch.seen()[2..].iter().any(|l| l.starts_with("NAME")),
        "the header is printed once: {:#?}",
        watch.seen()
    );
}
