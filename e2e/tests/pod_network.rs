//! Pod networking end to end: real kubectl against `berth up` with a bridge and a /24 of its own per test
//! (`berth_e2e::network`), busybox from a real loopback registry. Pods reach each other by Service name
//! through the agent's DNS server, hostPorts answer on 127.0.0.1, addresses and connections survive an agent
//! restart. Traffic goes only to loopback and to the test's own bridge and Pods; `berth down` (on drop)
//! removes the bridge, its veths and its nftables table.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use berth_e2e::network::TestNetwork;
use berth_e2e::registry::Registry;
use berth_e2e::{Server, wait_for};

const START: Duration = Duration::from_secs(120);
/// How long DNS answers may take to follow a readiness change (the issue asks for about a second; the
/// probe period and the status write come on top, and a loaded 2-core machine once took more than 15 s).
const DNS_FOLLOWS: Duration = Duration::from_secs(30);
const READY: &str = "{.status.conditions[?(@.type==\"Ready\")].status}";

/// A `berth up` with its own Pod network and a registry holding busybox.
struct Node {
    server: Server,
    network: TestNetwork,
    image: String,
    name: String,
    _registry: Registry,
}

impl Node {
    fn start(test: &str) -> Node {
        let registry = Registry::start();
        let image = registry.push_busybox("berth/busybox:1");
        let name = format!("{test}-{}", std::process::id());
        let network = TestNetwork::pick();
        let mut flags = vec!["--node-name".to_owned(), name.clone()];
        flags.extend(network.flags());
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = Server::start_up(&flags);
        let node = Node {
            server,
            network,
            image,
            name,
            _registry: registry,
        };
        node.wait_node_ready();
        node
    }

    fn wait_node_ready(&self) {
        wait_for("the node to be Ready", START, || {
            let out = self.server.kubectl(&[
                "get",
                "node",
                &self.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
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

    /// Waits until the jsonpath's value satisfies `ok`; returns it. On timeout the Pod's status and events
    /// are in the failure message.
    fn wait(&self, pod: &str, jsonpath: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(&format!("{pod} {jsonpath}"), START, || {
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

    fn wait_ready(&self, pod: &str) -> String {
        self.wait(pod, READY, |s| s == "True");
        self.get(pod, "{.status.podIP}")
    }

    fn exec(&self, pod: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(command);
        self.server.kubectl(&args)
    }

    /// Runs a command in the Pod until it succeeds with output `ok` accepts; returns that output.
    fn exec_until(&self, pod: &str, command: &[&str], ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(
                &format!("{pod}: {}", command.join(" ")),
                DNS_FOLLOWS,
                || {
                    let out = self.exec(pod, command);
                    last = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                    (out.status.success() && ok(&stdout)).then_some(stdout)
                },
            )
        }));
        found.unwrap_or_else(|_| {
            let log = std::fs::read_to_string(self.server.data_dir.path().join("apiserver.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "{pod}: {}: last output {last:?}\npods: {}\nevents: {}\nberth log (last lines):\n{}",
                command.join(" "),
                self.server.kubectl_ok(&["get", "pods", "-o", "wide"]),
                self.server.kubectl_ok(&["get", "events"]),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
    }

    fn exec_ok(&self, pod: &str, command: &[&str]) -> String {
        let out = self.exec(pod, command);
        assert!(
            out.status.success(),
            "{pod}: {} failed: {}",
            command.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The reasons and notes of the Events about a Pod.
    fn events(&self, pod: &str) -> Vec<(String, String)> {
        self.server.pod_events(pod)
    }

    /// The host-side veths on this node's bridge.
    fn bridge_ports(&self) -> Vec<String> {
        let dir = Path::new("/sys/class/net")
            .join(&self.network.bridge)
            .join("brif");
        let mut ports: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ports.sort();
        ports
    }

    /// Whether `ip` is one of this node's Pod addresses (not the gateway).
    fn in_pod_cidr(&self, ip: &str) -> bool {
        let prefix = self.network.cidr.trim_end_matches("0/24");
        ip.starts_with(prefix) && ip != self.network.gateway.to_string()
    }
}

/// A port free on 127.0.0.1 right now (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// `GET /` over a plain TCP connection; the response body's last line.
fn http_get(port: u16) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.contains(" 200 ").then(|| {
        response
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    })
}

/// An httpd serving `body` on `port`.
fn httpd(body: &str, port: u16) -> String {
    format!(
        "mkdir -p /www && echo {body} > /www/index.html && exec busybox httpd -f -p {port} -h /www"
    )
}

#[test]
fn pods_reach_each_other_by_service_name_and_host_ports_answer_on_loopback() {
    let node = Node::start("net-talk");
    let host_port = free_port();
    node.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{selector: {{app: web}}, ports: [{{port: 8080}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  hostname: www
  subdomain: web
  containers:
  - name: httpd
    image: "{{{{IMAGE}}}}"
    command: [sh, -c, "{serve}"]
    ports: [{{containerPort: 8080, hostPort: {host_port}}}]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers:
  - name: c
    image: "{{{{IMAGE}}}}"
    command: [sh, -c, "echo ip=$POD_IP; sleep 3600"]
    env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
"#,
        serve = httpd("hello-from-web", 8080),
    ));
    let web_ip = node.wait_ready("web");
    let client_ip = node.wait_ready("client");
    assert!(node.in_pod_cidr(&web_ip), "{web_ip} in {:?}", node.network);
    assert!(node.in_pod_cidr(&client_ip), "{client_ip}");
    assert_ne!(web_ip, client_ip);
    assert_eq!(node.get("web", "{.status.podIPs[0].ip}"), web_ip);
    assert_eq!(node.get("web", "{.status.hostIP}"), "127.0.0.1");
    // status.podIP in the environment: the address was known before the container was made.
    let logs = wait_for("the client's output", START, || {
        let out = node.server.kubectl(&["logs", "client"]);
        Some(String::from_utf8_lossy(&out.stdout).into_owned()).filter(|l| !l.is_empty())
    });
    assert_eq!(logs, format!("ip={client_ip}\n"));

    // The kubelet's files: the node's DNS server with the namespace searched first, the Pod's own name.
    assert_eq!(
        node.exec_ok("client", &["cat", "/etc/resolv.conf"]),
        format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver {}\n\
             options ndots:5\n",
            node.network.gateway
        )
    );
    let hosts = node.exec_ok("web", &["cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&format!(
            "{web_ip}\twww.web.default.svc.cluster.local\twww\n"
        )),
        "{hosts}"
    );

    // By Service name, short and fully qualified.
    for name in ["web", "web.default.svc.cluster.local"] {
        let url = format!("http://{name}:8080/");
        let body = node.exec_until("client", &["busybox", "wget", "-qO-", &url], |out| {
            out == "hello-from-web\n"
        });
        assert_eq!(body, "hello-from-web\n");
    }
    // A name that is no Service fails to resolve, it does not hang or hit something else.
    let missing = node.exec(
        "client",
        &[
            "busybox",
            "wget",
            "-qO-",
            "-T",
            "3",
            "http://nothere.default.svc.cluster.local:8080/",
        ],
    );
    assert!(!missing.status.success());

    // hostNetwork: the host's namespace (its links, this node's bridge among them) and the host's address,
    // no veth of its own, the host's resolvers.
    let veths = node.bridge_ports();
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  hostNetwork: true
  containers:
  - {name: c, image: "{{IMAGE}}", command: [sleep, "3600"]}
"#,
    );
    assert_eq!(node.wait_ready("hostnet"), "127.0.0.1");
    let links = node.exec_ok("hostnet", &["cat", "/proc/net/dev"]);
    assert!(
        links.contains(&format!("{}:", node.network.bridge)),
        "{links}"
    );
    let resolv = node.exec_ok("hostnet", &["cat", "/etc/resolv.conf"]);
    assert!(
        !resolv.contains(&node.network.gateway.to_string()),
        "{resolv}"
    );
    assert_eq!(node.bridge_ports(), veths);

    // The hostPort, through the agent's proxy on the host.
    let body = wait_for("the hostPort to answer", START, || http_get(host_port));
    assert_eq!(body, "hello-from-web");

    // A hostPort someone holds: reported on the Pod, retried, and published once the port is free.
    let holder = TcpListener::bind("127.0.0.1:0").expect("binding a port to hold");
    let taken = holder.local_addr().expect("the held port").port();
    node.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: blocked}}
spec:
  containers:
  - name: httpd
    image: "{{{{IMAGE}}}}"
    command: [sh, -c, "{serve}"]
    ports: [{{containerPort: 8080, hostPort: {taken}, hostIP: 127.0.0.1}}]
"#,
        serve = httpd("hello-from-blocked", 8080),
    ));
    node.wait(
        "blocked",
        "{.status.containerStatuses[0].state.waiting.reason}",
        |r| r == "FailedPortBinding",
    );
    let message = node.get(
        "blocked",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.contains(&format!("127.0.0.1:{taken}")) && message.contains("in use"),
        "{message}"
    );
    assert!(
        node.events("blocked").iter().any(|(reason, note)| {
            reason == "FailedCreatePodSandBox" && note.contains(&format!("TCP 127.0.0.1:{taken}"))
        }),
        "{:?}",
        node.events("blocked")
    );
    assert_eq!(node.get("blocked", "{.status.phase}"), "Pending");
    drop(holder);
    node.wait("blocked", "{.status.phase}", |p| p == "Running");
    let body = wait_for("the freed hostPort to answer", START, || http_get(taken));
    assert_eq!(body, "hello-from-blocked");
}

#[test]
fn dns_follows_readiness_a_recreated_pod_is_found_again_and_veths_go_with_their_pod() {
    let node = Node::start("net-dns");
    let db = |body: &str, ready_at_start: bool| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: db, labels: {{app: db}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: "{{{{IMAGE}}}}"
    command: [sh, -c, "{touch}{serve}"]
    readinessProbe: {{exec: {{command: [test, -e, /ready]}}, periodSeconds: 1, timeoutSeconds: 5, failureThreshold: 1}}
"#,
            touch = if ready_at_start {
                "touch /ready && "
            } else {
                ""
            },
            serve = httpd(body, 9000),
        )
    };
    node.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec: {{clusterIP: None, selector: {{app: db}}, ports: [{{port: 9000}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: "{{{{IMAGE}}}}", command: [sleep, "3600"]}}
---
{}
"#,
        db("db-1", false)
    ));
    node.wait_ready("client");
    node.wait("db", "{.status.phase}", |p| p == "Running");
    let db_ip = node.get("db", "{.status.podIP}");
    assert!(node.in_pod_cidr(&db_ip), "{db_ip}");
    assert_eq!(node.get("db", READY), "False");
    assert_eq!(node.bridge_ports().len(), 2, "one veth per Pod");

    let lookup = ["busybox", "nslookup", "db.default.svc.cluster.local"];
    let out = node.exec("client", &lookup);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&db_ip),
        "an unready Pod is not in DNS: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    node.exec_ok("db", &["touch", "/ready"]);
    node.exec_until("client", &lookup, |out| out.contains(&db_ip));
    let body = node.exec_until(
        "client",
        &["busybox", "wget", "-qO-", "http://db:9000/"],
        |out| out == "db-1\n",
    );
    assert_eq!(body, "db-1\n");
    node.exec_ok("db", &["rm", "/ready"]);
    node.wait("db", READY, |s| s == "False");
    wait_for("db to leave DNS", DNS_FOLLOWS, || {
        let out = node.exec("client", &lookup);
        (!String::from_utf8_lossy(&out.stdout).contains(&db_ip)).then_some(())
    });

    // Deleted: its veth goes. Created again under the same name: found again, wherever it now is.
    let uid = node.get("db", "{.metadata.uid}");
    let veth = berth_agent::net::host_veth_name(&uid);
    assert!(
        node.bridge_ports().contains(&veth),
        "{:?}",
        node.bridge_ports()
    );
    node.server
        .kubectl_ok(&["delete", "pod", "db", "--wait=true", "--timeout=60s"]);
    wait_for("db's veth to go", START, || {
        (!node.bridge_ports().contains(&veth)).then_some(())
    });
    assert!(!Path::new("/sys/class/net").join(&veth).exists());
    assert_eq!(node.bridge_ports().len(), 1);

    node.apply(&db("db-2", true));
    let new_ip = node.wait_ready("db");
    assert!(node.in_pod_cidr(&new_ip), "{new_ip}");
    assert_ne!(node.get("db", "{.metadata.uid}"), uid);
    let body = node.exec_until(
        "client",
        &["busybox", "wget", "-qO-", "http://db:9000/"],
        |out| out == "db-2\n",
    );
    assert_eq!(body, "db-2\n");
    node.exec_until("client", &lookup, |out| out.contains(&new_ip));
}

#[test]
fn an_agent_restart_keeps_pod_addresses_established_connections_and_host_ports() {
    let mut node = Node::start("net-restart");
    let host_port = free_port();
    node.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec: {{selector: {{app: echo}}, ports: [{{port: 9000}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: echo, labels: {{app: echo}}}}
spec:
  containers:
  - name: nc
    image: "{{{{IMAGE}}}}"
    command: [busybox, nc, -ll, -p, "9000", -e, cat]
    ports: [{{containerPort: 9000, hostPort: {host_port}}}]
    readinessProbe: {{tcpSocket: {{port: 9000}}, periodSeconds: 1}}
"#
    ));
    let echo_ip = node.wait_ready("echo");
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  containers:
  - name: c
    image: "{{IMAGE}}"
    command: [sh, -c, "while true; do echo tick; sleep 1; done | busybox nc echo 9000"]
"#,
    );
    let talker_ip = node.wait_ready("talker");
    let ticks = |node: &Node| {
        let out = node.server.kubectl(&["logs", "talker"]);
        String::from_utf8_lossy(&out.stdout).matches("tick").count()
    };
    // The echoes come back over the one connection the talker opened.
    let before = wait_for("echoes before the restart", START, || {
        Some(ticks(&node)).filter(|n| *n >= 2)
    });
    assert!(echoes_through(host_port, "before"));

    node.server.restart();
    node.wait_node_ready();
    assert_eq!(node.get("echo", "{.status.podIP}"), echo_ip);
    assert_eq!(node.get("talker", "{.status.podIP}"), talker_ip);
    let after = wait_for("echoes after the restart", START, || {
        Some(ticks(&node)).filter(|n| *n >= before + 3)
    });
    assert!(after > before);
    assert_eq!(
        node.get("talker", "{.status.containerStatuses[0].restartCount}"),
        "0",
        "the connection never broke (nc would have exited and the container restarted)"
    );
    assert_eq!(
        node.get("echo", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    assert_eq!(node.bridge_ports().len(), 2);
    // The hostPort proxy died with the old agent; the new one publishes it again.
    wait_for("the hostPort after the restart", START, || {
        echoes_through(host_port, "after").then_some(())
    });
    // A new Pod after the restart gets an address nobody holds.
    node.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: late}
spec:
  containers:
  - {name: c, image: "{{IMAGE}}", command: [sleep, "3600"]}
"#,
    );
    let late_ip = node.wait_ready("late");
    assert!(node.in_pod_cidr(&late_ip), "{late_ip}");
    assert_ne!(late_ip, echo_ip);
    assert_ne!(late_ip, talker_ip);
}

/// Sends a line to the echo server through the hostPort on 127.0.0.1; true when it comes back.
fn echoes_through(port: u16, line: &str) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(format!("{line}\n").as_bytes()).is_err() {
        return false;
    }
    let mut buffer = vec![0; line.len() + 1];
    stream.read_exact(&mut buffer).is_ok() && buffer == format!("{line}\n").as_bytes()
}
