//! `kubectl logs`, `exec` and `attach` through the embedded API server to a node's kubelet endpoint, with the
//! real kubectl of every installed version. The kubelet is a small fake served here over mutual TLS (its
//! serving certificate signed by the server's CA, the API server's client certificate required), speaking the
//! contract the berth agent serves: `/containerLogs/...`, and `/exec/...` + `/attach/...` over WebSocket
//! `v5.channel.k8s.io`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_apiserver::{Config, pki};
use http::{HeaderMap, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_rustls::TlsAcceptor;

/// What the fake kubelet saw.
#[derive(Default)]
struct Seen {
    /// Every request's path and query.
    requests: Mutex<Vec<String>>,
    /// Requests that carried an `Authorization` header (the admin token must never reach a kubelet).
    authorized: AtomicUsize,
    /// Followed logs whose client is still connected.
    open_follows: AtomicUsize,
}

impl Seen {
    fn requests_matching(&self, prefix: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// An API server with nodes and pods pointing at a fake kubelet.
struct Cluster {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    seen: Arc<Seen>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const STATUS_SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

/// The Pod whose container the fake kubelet reports as not running.
const CRASHED: &str = "crashed";

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let running = berth_apiserver::start(Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
        })
        .await
        .unwrap();
        let seen = Arc::new(Seen::default());
        let kubelet = serve_kubelet(dir.path(), seen.clone()).await;
        // A port nobody listens on, and one that accepts connections but never answers.
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let impostor = serve_impostor().await;
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let cluster = Cluster {
            _dir: dir,
            kubeconfig: running.kubeconfig,
            seen,
            server: running.serve,
        };
        for (node, port) in [
            ("node-a", kubelet.port()),
            ("node-down", refused),
            ("node-silent", silent_port),
            ("node-impostor", impostor.port()),
        ] {
            cluster.create_node(node, port).await;
        }
        cluster.create_pod("web", Some("node-a"), &["app"]).await;
        cluster
            .create_pod("duo", Some("node-a"), &["app", "sidecar"])
            .await;
        cluster
            .create_pod("orphan", Some("node-gone"), &["app"])
            .await;
        cluster.create_pod("pending", None, &["app"]).await;
        cluster
            .create_pod("down", Some("node-down"), &["app"])
            .await;
        cluster
            .create_pod("silent", Some("node-silent"), &["app"])
            .await;
        cluster
            .create_pod("impostor", Some("node-impostor"), &["app"])
            .await;
        cluster.create_pod(CRASHED, Some("node-a"), &["app"]).await;
        cluster
    }

    async fn create_node(&self, name: &str, port: u16) {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        self.ok(&["create", "-f", "-"], Some(&node.to_string()))
            .await;
        let status = json!({"status": {
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }});
        self.ok(
            &[
                "patch",
                "node",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )
        .await;
    }

    async fn create_pod(&self, name: &str, node: Option<&str>, containers: &[&str]) {
        let containers: Vec<_> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "busybox", "stdin": true}))
            .collect();
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": containers},
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        self.ok(&["create", "-f", "-"], Some(&pod.to_string()))
            .await;
        self.ok(
            &[
                "patch",
                "pod",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Running"}}"#,
            ],
            None,
        )
        .await;
    }

    fn command(&self, kubectl: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(kubectl);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl to the end, with `stdin` as its input (or none).
    async fn run(
        &self,
        kubectl: &Path,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut command = self.command(kubectl, args);
        command.envs(env.iter().copied());
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().expect("running kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 60s"))
            .unwrap()
    }

    /// Runs the default kubectl, failing the test when it fails.
    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(Path::new("kubectl"), args, stdin, &[]).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Every kubectl installed next to the one on the PATH (`kubectl.1.27` ... `kubectl.1.33`), by minor version;
/// the PATH's own when there are none.
fn kubectls() -> Vec<(u32, PathBuf)> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("kubectl"))
                .find(|p| p.exists())
        })
        .unwrap_or_default();
    let mut found: Vec<(u32, PathBuf)> = on_path
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_owned))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            let minor = name.strip_prefix("kubectl.1.")?.parse().ok()?;
            Some((minor, path))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        found.push((0, PathBuf::from("kubectl")));
    }
    found
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- the fake kubelet ----

/// Serves the kubelet contract on a loopback port: TLS with a serving certificate signed by the server's CA,
/// and only the API server's kubelet client certificate admitted.
async fn serve_kubelet(data_dir: &Path, seen: Arc<Seen>) -> SocketAddr {
    let trust = pki::kubelet_client_trust(data_dir).unwrap();
    assert_eq!(trust.client_name, pki::KUBELET_CLIENT_NAME);
    let pki_dir = pki::pki_dir(data_dir);
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(pki_dir.join("ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&trust.ca_pem, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress(Ipv4Addr::LOCALHOST.into())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(trust.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    // The API server's own kubelet client certificate, the only client admitted.
    let expected_client =
        CertificateDer::from_pem_file(pki_dir.join("apiserver-kubelet-client.crt")).unwrap();

    let router = Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", get(exec))
        .route("/attach/{ns}/{pod}/{container}", get(attach))
        .with_state(seen);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router, expected) =
                (acceptor.clone(), router.clone(), expected_client.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let presented = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                if presented != Some(&expected) {
                    return;
                }
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(
                        TokioIo::new(tls),
                        TowerToHyperService::new(router),
                    )
                    .await;
            });
        }
    });
    addr
}

/// A kubelet whose serving certificate the cluster CA did not sign: the API server must not talk to it.
async fn serve_impostor() -> SocketAddr {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress(Ipv4Addr::LOCALHOST.into())];
    let cert = params.self_signed(&key).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let router = Router::new().fallback(|| async { "impostor line\n" });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                        .await;
                }
            });
        }
    });
    addr
}

fn record(seen: &Seen, headers: &HeaderMap, path: String, query: &Option<String>) {
    if headers.contains_key(http::header::AUTHORIZATION) {
        seen.authorized.fetch_add(1, Ordering::SeqCst);
    }
    let line = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    seen.requests.lock().unwrap().push(line);
}

fn params(query: &Option<String>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Three lines per container; with `follow`, one more line later, then the stream stays open until the
/// client goes.
async fn container_logs(
    State(seen): State<Arc<Seen>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    record(
        &seen,
        &headers,
        format!("/containerLogs/{ns}/{pod}/{container}"),
        &query,
    );
    if pod == CRASHED {
        // Kubelets refuse log requests with a plain-text body.
        let message = format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: CrashLoopBackOff"
        );
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let params = params(&query);
    let stamp = |line: String| match param(&params, "timestamps") {
        Some("true") => format!("2024-05-01T10:00:00.000000000Z {line}"),
        _ => line,
    };
    let mut lines: Vec<String> = (1..=3)
        .map(|i| stamp(format!("{container} line {i}\n")))
        .collect();
    if let Some(tail) = param(&params, "tailLines").and_then(|t| t.parse::<usize>().ok()) {
        lines.drain(..lines.len().saturating_sub(tail));
    }
    if param(&params, "follow") != Some("true") {
        return lines.concat().into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(4);
    seen.open_follows.fetch_add(1, Ordering::SeqCst);
    let later = stamp(format!("{container} later\n"));
    tokio::spawn(async move {
        let _ = tx.send(Ok(Bytes::from(lines.concat()))).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = tx.send(Ok(Bytes::from(later))).await;
        // Open until the API server drops the body, which it must do when the client goes.
        tx.closed().await;
        seen.open_follows.fetch_sub(1, Ordering::SeqCst);
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response()
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// The status kubelets write on channel 3 when a command exits with a code other than 0.
fn exit_status(command: &[String], code: i32) -> String {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
    .to_string()
}

/// Copies stdin (channel 0) to stdout (channel 1) until the client closes stdin (v5: `255, 0`) or the
/// connection.
async fn echo_stdin(socket: &mut WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let data = match message {
            Message::Binary(data) => data,
            Message::Close(_) => return,
            _ => continue,
        };
        match data.as_ref() {
            [255, 0] => return,
            [0, input @ ..] => {
                let Ok(()) = socket.send(frame(1, input)).await else {
                    return;
                };
            }
            _ => {}
        }
    }
}

/// Waits for a terminal size on the resize channel (4) and returns it as `WIDTHxHEIGHT`.
async fn read_resize(socket: &mut WebSocket) -> String {
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Binary(data) = message
            && let [4, rest @ ..] = data.as_ref()
        {
            let size: serde_json::Value = serde_json::from_slice(rest).unwrap_or_default();
            return format!("{}x{}", size["Width"], size["Height"]);
        }
    }
    String::from("no resize")
}

/// Sends the status on channel 3 and closes the connection with a normal closure (1000): kubectl 1.29 fails
/// on a close frame without a code.
async fn finish(mut socket: WebSocket, status: String) {
    let _ = socket.send(frame(3, status.as_bytes())).await;
    let close = CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// The checks a kubelet makes before upgrading, in the contract's order: the container must be running
/// (whatever the protocol: kubectl 1.30+ retries a refused WebSocket upgrade with SPDY, and must get the same
/// answer), then the request must be a WebSocket upgrade.
fn admit(
    pod: &str,
    container: &str,
    verb: &str,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, Box<Response>> {
    let refuse = |message: String| {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "BadRequest", "code": 400,
        });
        Box::new((StatusCode::BAD_REQUEST, axum::Json(status)).into_response())
    };
    if pod == CRASHED {
        return Err(refuse(format!(
            "container \"{container}\" in pod \"{pod}\" is not running"
        )));
    }
    ws.map_err(|_| {
        refuse(format!(
            "berth serves {verb} over WebSocket (v5.channel.k8s.io), not SPDY: use kubectl 1.30 or newer, \
             or kubectl 1.29 with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true"
        ))
    })
}

/// A few commands: `echo ARGS...`, `sh -c 'exit N'`, `cat` (stdin to stdout) and `size` (the terminal size).
async fn exec(
    State(seen): State<Arc<Seen>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    record(
        &seen,
        &headers,
        format!("/exec/{ns}/{pod}/{container}"),
        &query,
    );
    let ws = match admit(&pod, &container, "exec", ws) {
        Ok(ws) => ws,
        Err(refusal) => return *refusal,
    };
    let command: Vec<String> = params(&query)
        .into_iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v)
        .collect();
    ws.protocols(["v5.channel.k8s.io"])
        .on_upgrade(move |mut socket| async move {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            let status = match args.as_slice() {
                ["echo", words @ ..] => {
                    let _ = socket
                        .send(frame(1, format!("{}\n", words.join(" ")).as_bytes()))
                        .await;
                    STATUS_SUCCESS.to_owned()
                }
                ["sh", "-c", script] if script.starts_with("exit ") => {
                    let code = script["exit ".len()..].trim().parse().unwrap_or(1);
                    exit_status(&command, code)
                }
                ["cat"] => {
                    echo_stdin(&mut socket).await;
                    STATUS_SUCCESS.to_owned()
                }
                ["size"] => {
                    let size = read_resize(&mut socket).await;
                    let _ = socket.send(frame(1, format!("{size}\n").as_bytes())).await;
                    STATUS_SUCCESS.to_owned()
                }
                _ => {
                    let _ = socket.send(frame(2, b"unknown command\n")).await;
                    exit_status(&command, 127)
                }
            };
            finish(socket, status).await;
        })
}

/// Attaching prints a greeting, then echoes stdin.
async fn attach(
    State(seen): State<Arc<Seen>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    record(
        &seen,
        &headers,
        format!("/attach/{ns}/{pod}/{container}"),
        &query,
    );
    let ws = match admit(&pod, &container, "attach", ws) {
        Ok(ws) => ws,
        Err(refusal) => return *refusal,
    };
    ws.protocols(["v5.channel.k8s.io"])
        .on_upgrade(move |mut socket| async move {
            let greeting = format!("attached to {container}\n");
            let _ = socket.send(frame(1, greeting.as_bytes())).await;
            echo_stdin(&mut socket).await;
            finish(socket, STATUS_SUCCESS.to_owned()).await;
        })
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_proxied_from_the_kubelet_with_the_options_given() {
    let cluster = Cluster::start().await;
    for (minor, kubectl) in kubectls() {
        let out = cluster.run(&kubectl, &["logs", "web"], None, &[]).await;
        assert!(out.status.success(), "1.{minor}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "app line 1\napp line 2\napp line 3\n",
            "1.{minor}"
        );

        let out = cluster
            .run(
                &kubectl,
                &["logs", "web", "--tail=1", "--timestamps"],
                None,
                &[],
            )
            .await;
        assert!(out.status.success(), "1.{minor}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "2024-05-01T10:00:00.000000000Z app line 3\n",
            "1.{minor}"
        );

        let out = cluster
            .run(
                &kubectl,
                &["logs", "duo", "-c", "sidecar", "--since=1h"],
                None,
                &[],
            )
            .await;
        assert!(out.status.success(), "1.{minor}: {}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "sidecar line 1\nsidecar line 2\nsidecar line 3\n"
        );
    }
    let requests = cluster
        .seen
        .requests_matching("/containerLogs/default/web/app");
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("?timestamps=true&tailLines=1")),
        "{requests:?}"
    );
    let requests = cluster
        .seen
        .requests_matching("/containerLogs/default/duo/sidecar");
    assert!(
        requests.iter().all(|r| r.ends_with("?sinceSeconds=3600")),
        "{requests:?}"
    );
    assert_eq!(
        cluster.seen.authorized.load(Ordering::SeqCst),
        0,
        "the admin token reached the kubelet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_requests_that_cannot_be_served_say_why_without_hanging() {
    let cluster = Cluster::start().await;
    let kubectl = Path::new("kubectl");
    let raw = "/api/v1/namespaces/default/pods/duo/log";
    let out = cluster
        .run(kubectl, &["get", "--raw", raw], None, &[])
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "a container name must be specified for pod duo, choose one of: [app sidecar]"
        ),
        "{}",
        stderr(&out)
    );

    let started = Instant::now();
    let out = cluster.run(kubectl, &["logs", "orphan"], None, &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            r#"pod "orphan" is bound to node "node-gone", which no longer exists (nodes "node-gone" not found)"#
        ),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let started = Instant::now();
    let out = cluster.run(kubectl, &["logs", "down"], None, &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains(r#"cannot reach the kubelet of node "node-down" at https://127.0.0.1:"#),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A kubelet that accepts connections and never answers: the connect timeout ends the wait.
    let started = Instant::now();
    let out = cluster.run(kubectl, &["logs", "silent"], None, &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no TLS connection within 10s"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let out = cluster.run(kubectl, &["logs", "impostor"], None, &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(r#"cannot reach the kubelet of node "node-impostor""#)
            && stderr(&out).contains("invalid peer certificate"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("impostor line"));

    let out = cluster.run(kubectl, &["logs", CRASHED], None, &[]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            r#"Error from server (BadRequest): container "app" in pod "crashed" is waiting to start: CrashLoopBackOff"#
        ),
        "{}",
        stderr(&out)
    );

    // Not scheduled yet: an empty log, as upstream.
    let out = cluster.run(kubectl, &["logs", "pending"], None, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_stream_lines_as_they_arrive_and_end_with_the_client() {
    let cluster = Cluster::start().await;
    for (minor, kubectl) in kubectls() {
        let mut child = cluster
            .command(&kubectl, &["logs", "-f", "web"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                got.push(line);
                if got.last().is_some_and(|l| l == "app later") {
                    break;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("1.{minor}: the later line never came; got {got:?}"));
        assert_eq!(
            got,
            ["app line 1", "app line 2", "app line 3", "app later"],
            "1.{minor}"
        );
        assert_eq!(cluster.seen.open_follows.load(Ordering::SeqCst), 1);
        child.kill().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while cluster.seen.open_follows.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "1.{minor}: the kubelet stream outlived the client"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The environment under which this kubectl speaks WebSocket for exec and attach: 1.30 and later by
/// default, 1.29 with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true`; `None` for 1.27 and 1.28 (SPDY only).
fn websocket_env(minor: u32) -> Option<&'static [(&'static str, &'static str)]> {
    match minor {
        0 | 30.. => Some(&[]),
        29 => Some(&[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true")]),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_through_the_kubelet_and_propagates_exit_codes() {
    let cluster = Cluster::start().await;
    for (minor, kubectl) in kubectls() {
        let Some(env) = websocket_env(minor) else {
            continue;
        };
        let out = cluster
            .run(
                &kubectl,
                &["exec", "web", "--", "echo", "hi", "there"],
                None,
                env,
            )
            .await;
        assert!(out.status.success(), "1.{minor}: {}", stderr(&out));
        assert_eq!(stdout(&out), "hi there\n", "1.{minor}");

        let out = cluster
            .run(
                &kubectl,
                &["exec", "web", "--", "sh", "-c", "exit 3"],
                None,
                env,
            )
            .await;
        assert_eq!(out.status.code(), Some(3), "1.{minor}: {}", stderr(&out));

        let out = cluster
            .run(
                &kubectl,
                &["exec", "-i", "web", "--", "cat"],
                Some("hello\nworld\n"),
                env,
            )
            .await;
        assert!(out.status.success(), "1.{minor}: {}", stderr(&out));
        assert_eq!(stdout(&out), "hello\nworld\n", "1.{minor}");

        let out = cluster
            .run(
                &kubectl,
                &["attach", "-i", "duo", "-c", "sidecar"],
                Some("ping\n"),
                env,
            )
            .await;
        assert!(out.status.success(), "1.{minor}: {}", stderr(&out));
        assert_eq!(stdout(&out), "attached to sidecar\nping\n", "1.{minor}");
    }
    let execs = cluster.seen.requests_matching("/exec/default/web/app?");
    assert!(
        execs.contains(
            &"/exec/default/web/app?output=1&error=1&command=sh&command=-c&command=exit+3"
                .to_owned()
        ),
        "{execs:?}"
    );
    assert!(
        execs.contains(&"/exec/default/web/app?input=1&output=1&error=1&command=cat".to_owned()),
        "{execs:?}"
    );
    assert_eq!(cluster.seen.authorized.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_problems_reach_kubectl_as_messages_before_any_upgrade() {
    let cluster = Cluster::start().await;
    for (minor, kubectl) in kubectls() {
        let env = websocket_env(minor).unwrap_or(&[]);
        let out = cluster
            .run(
                &kubectl,
                &["exec", "web", "-c", "nope", "--", "echo"],
                None,
                env,
            )
            .await;
        assert!(!out.status.success(), "1.{minor}");
        assert!(
            stderr(&out).contains("container nope is not valid for pod web"),
            "1.{minor}: {}",
            stderr(&out)
        );

        let out = cluster
            .run(&kubectl, &["exec", "pending", "--", "echo"], None, env)
            .await;
        assert!(
            stderr(&out).contains("pod pending does not have a host assigned"),
            "1.{minor}: {}",
            stderr(&out)
        );

        let started = Instant::now();
        let out = cluster
            .run(&kubectl, &["exec", "orphan", "--", "echo"], None, env)
            .await;
        assert!(
            stderr(&out).contains(r#"is bound to node "node-gone", which no longer exists"#),
            "1.{minor}: {}",
            stderr(&out)
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        // Refused by the kubelet before upgrading: kubectl 1.30+ then retries with SPDY, which reaches the
        // kubelet too and gets the same answer.
        let out = cluster
            .run(&kubectl, &["exec", CRASHED, "--", "echo"], None, env)
            .await;
        assert!(
            stderr(&out).contains(r#"container "app" in pod "crashed" is not running"#),
            "1.{minor}: {}",
            stderr(&out)
        );

        if minor != 0 && minor < 30 {
            // SPDY (the default before 1.30) reaches the kubelet, which says what works instead.
            let out = cluster
                .run(&kubectl, &["exec", "web", "--", "echo", "hi"], None, &[])
                .await;
            assert!(!out.status.success(), "1.{minor}");
            assert!(
                stderr(&out).contains("use kubectl 1.30 or newer"),
                "1.{minor}: {}",
                stderr(&out)
            );
        }
    }
}

/// `kubectl exec -it` under a pseudo-terminal (`script`): the terminal size reaches the kubelet on the
/// resize channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_size_reaches_the_kubelet_on_the_resize_channel() {
    if which("script").is_none() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let cluster = Cluster::start().await;
    for (minor, kubectl) in kubectls() {
        let Some(env) = websocket_env(minor) else {
            continue;
        };
        let shell = format!(
            "stty cols 91 rows 37; exec {} exec -it web -- size",
            kubectl.display()
        );
        let mut command = Command::new("script");
        command
            .args(["-qefc", &shell, "/dev/null"])
            .env("KUBECONFIG", &cluster.kubeconfig)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        // Kept open: an early end of input would reach the command as end of terminal input.
        let _stdin = child.stdin.take();
        let mut output = child.stdout.take().unwrap();
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 1024];
            while !text.contains("91x37") {
                let n = tokio::io::AsyncReadExt::read(&mut output, &mut buf)
                    .await
                    .unwrap();
                if n == 0 {
                    break;
                }
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("1.{minor}: no size within 20s; got {text:?}"));
        assert!(text.contains("91x37"), "1.{minor}: {text:?}");
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.exists())
}
