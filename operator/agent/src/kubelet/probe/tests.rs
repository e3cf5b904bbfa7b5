//! Probes against real servers listening inside network namespaces the tests create, and exec probes in a real
//! busybox container (needs the shim: `cargo build -p berth` or `-p berth-agent` first, or `$BERTH_SHIM`).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpListener;

use super::*;
use crate::runtime::{ContainerConfig, RuntimeConfig, netns};

const DEADLINE: Duration = Duration::from_secs(20);

fn unique(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace of the test's own, removed at the end.
struct Netns {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Netns {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = netns::create(dir.path(), &unique("probe")).unwrap();
        Self { path, _dir: dir }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = netns::remove(&self.path);
    }
}

/// A listener on 127.0.0.1 inside `netns`, bound on a thread of its own (see `connect.rs`).
fn listener_in(netns: &Path, port: u16) -> std::io::Result<TcpListener> {
    let netns = netns.to_path_buf();
    let listener = std::thread::spawn(move || {
        let file = std::fs::File::open(&netns)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        listener.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(listener)
    })
    .join()
    .unwrap()?;
    TcpListener::from_std(listener)
}

/// Serves the test routes over HTTP on `listener`; `/toggle` answers 200 while `healthy` is set, 503 otherwise.
fn serve(listener: TcpListener, healthy: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| route(request, healthy.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Serves the test routes over HTTPS with a fresh self-signed certificate.
fn serve_tls(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let healthy = Arc::new(AtomicBool::new(true));
                let service = service_fn(move |request| route(request, healthy.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}

async fn route(
    request: Request<Incoming>,
    healthy: Arc<AtomicBool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, location: Option<&str>| {
        let mut response = Response::builder().status(status);
        if let Some(location) = location {
            response = response.header("location", location);
        }
        Ok(response
            .body(Full::new(Bytes::from(format!("{status}"))))
            .unwrap())
    };
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    match request.uri().path() {
        "/ok" => reply(StatusCode::OK, None),
        "/fail" => reply(StatusCode::INTERNAL_SERVER_ERROR, None),
        "/redirect" => reply(StatusCode::FOUND, Some("/ok")),
        "/redirect-to-fail" => reply(StatusCode::MOVED_PERMANENTLY, Some("/fail")),
        "/away" => reply(StatusCode::FOUND, Some("http://probe-elsewhere.invalid/ok")),
        "/loop" => reply(StatusCode::TEMPORARY_REDIRECT, Some("/loop")),
        "/not-modified" => reply(StatusCode::NOT_MODIFIED, None),
        "/headers" => {
            let good = header("x-probe") == "yes"
                && header("user-agent").starts_with("kube-probe/")
                && header("host") == "probe.example"
                && header("accept") == "*/*"
                && request.uri().query() == Some("a=1");
            reply(
                if good {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_REQUEST
                },
                None,
            )
        }
        "/toggle" if healthy.load(Ordering::SeqCst) => reply(StatusCode::OK, None),
        "/toggle" => reply(StatusCode::SERVICE_UNAVAILABLE, None),
        "/hang" => std::future::pending().await,
        _ => reply(StatusCode::NOT_FOUND, None),
    }
}

/// A runtime of its own; only exec probes use it.
fn runtime(root: &Path) -> Runtime {
    let mut config = RuntimeConfig::new(root).unwrap();
    config.shim_program = shim_program();
    config.cgroup_parent = PathBuf::from("/berth-test");
    Runtime::new(config).unwrap()
}

/// `$BERTH_SHIM`, or the berth-shim / berth binary next to this test's directory (`target/debug`).
fn shim_program() -> PathBuf {
    if let Some(shim) = std::env::var_os("BERTH_SHIM") {
        return PathBuf::from(shim);
    }
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    ["berth-shim", "berth"]
        .iter()
        .map(|name| debug.join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| debug.join("berth"))
}

struct Fixture {
    prober: Prober,
    netns: Netns,
    _root: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("bpr")
            .tempdir_in("/tmp")
            .unwrap();
        Self {
            prober: Prober::new(runtime(root.path())),
            netns: Netns::new(),
            _root: root,
        }
    }

    fn target(&self) -> ProbeTarget {
        ProbeTarget {
            container_id: "unused".into(),
            netns: Some(self.netns.path.clone()),
            pod_ip: None,
            started_at: jiff::Timestamp::now(),
        }
    }

    /// An HTTP server inside the namespace; returns its port.
    fn http_server(&self, healthy: Arc<AtomicBool>) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = listener_in(&self.netns.path, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        (port, serve(listener, healthy))
    }

    async fn check(&self, probe: &Probe) -> Outcome {
        self.prober.check(probe, &[], &self.target()).await
    }
}

fn http_probe(port: u16, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(port.into()),
            path: Some(path.into()),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    }
}

fn tcp_probe(port: u16) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port.into()),
            host: None,
        }),
        period_seconds: Some(1),
        ..Default::default()
    }
}

fn failure(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failure(message) => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn http_probe_follows_upstream_status_and_redirect_rules() {
    let fx = Fixture::new();
    let (port, server) = fx.http_server(Arc::new(AtomicBool::new(true)));

    assert_eq!(fx.check(&http_probe(port, "/ok")).await, Outcome::Success);
    assert_eq!(
        failure(&fx.check(&http_probe(port, "/fail")).await),
        "HTTP probe failed with statuscode: 500"
    );
    assert_eq!(
        failure(&fx.check(&http_probe(port, "/nowhere")).await),
        "HTTP probe failed with statuscode: 404"
    );
    // Same-host redirects are followed, to the final answer.
    assert_eq!(
        fx.check(&http_probe(port, "/redirect")).await,
        Outcome::Success
    );
    assert_eq!(
        failure(&fx.check(&http_probe(port, "/redirect-to-fail")).await),
        "HTTP probe failed with statuscode: 500"
    );
    // A redirect to another host is not followed: a success with a warning.
    match fx.check(&http_probe(port, "/away")).await {
        Outcome::Warning(message) => assert!(
            message.starts_with("Probe terminated redirects"),
            "{message}"
        ),
        other => panic!("expected a warning, got {other:?}"),
    }
    assert!(
        failure(&fx.check(&http_probe(port, "/loop")).await)
            .ends_with("stopped after 10 redirects")
    );
    // A 3xx that is not a redirect to follow is in 200–399.
    assert!(
        fx.check(&http_probe(port, "/not-modified"))
            .await
            .succeeded()
    );
    server.abort();
}

#[tokio::test]
async fn http_probe_uses_named_ports_headers_and_query() {
    let fx = Fixture::new();
    let (port, server) = fx.http_server(Arc::new(AtomicBool::new(true)));
    let ports = [ContainerPort {
        name: Some("web".into()),
        container_port: port.into(),
        ..Default::default()
    }];
    let probe = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("web".into()),
            path: Some("headers?a=1".into()),
            http_headers: Some(vec![
                HTTPHeader {
                    name: "X-Probe".into(),
                    value: "yes".into(),
                },
                HTTPHeader {
                    name: "Host".into(),
                    value: "probe.example".into(),
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        fx.prober.check(&probe, &ports, &fx.target()).await,
        Outcome::Success
    );
    let unknown = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        failure(&fx.prober.check(&unknown, &ports, &fx.target()).await),
        "couldn't find port: metrics"
    );
    server.abort();
}

#[tokio::test]
async fn https_probe_accepts_a_self_signed_certificate() {
    let fx = Fixture::new();
    let listener = listener_in(&fx.netns.path, 0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_tls(listener);
    let mut probe = http_probe(port, "/ok");
    if let Some(action) = probe.http_get.as_mut() {
        action.scheme = Some("HTTPS".into());
    }
    assert_eq!(fx.check(&probe).await, Outcome::Success);
    // The same server spoken to in plain HTTP is no success.
    assert!(!fx.check(&http_probe(port, "/ok")).await.succeeded());
    server.abort();
}

#[tokio::test]
async fn http_probe_times_out_after_timeout_seconds() {
    let fx = Fixture::new();
    let (port, server) = fx.http_server(Arc::new(AtomicBool::new(true)));
    let start = Instant::now();
    let outcome = fx.check(&http_probe(port, "/hang")).await;
    let elapsed = start.elapsed();
    assert!(
        failure(&outcome).contains("deadline exceeded"),
        "{outcome:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    server.abort();
}

#[tokio::test]
async fn tcp_probe_connects_inside_the_pod_network_namespace() {
    let fx = Fixture::new();
    let inside = listener_in(&fx.netns.path, 0).unwrap();
    let inside_port = inside.local_addr().unwrap().port();
    assert_eq!(fx.check(&tcp_probe(inside_port)).await, Outcome::Success);

    // A port open on the host's loopback is closed in the Pod's namespace.
    let host = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let host_port = host.local_addr().unwrap().port();
    let outcome = fx.check(&tcp_probe(host_port)).await;
    assert_eq!(
        failure(&outcome),
        format!("dial tcp 127.0.0.1:{host_port}: connect: connection refused")
    );
    // Without a namespace the probe runs on the host's network.
    let mut on_host = fx.target();
    on_host.netns = None;
    assert_eq!(
        fx.prober.check(&tcp_probe(host_port), &[], &on_host).await,
        Outcome::Success
    );
    drop(inside);
    let outcome = fx.check(&tcp_probe(inside_port)).await;
    assert!(
        failure(&outcome).ends_with("connection refused"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn probes_go_to_the_pod_ip_when_there_is_one() {
    let fx = Fixture::new();
    let listener = listener_in(&fx.netns.path, 0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut target = fx.target();
    target.pod_ip = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    assert_eq!(
        fx.prober.check(&tcp_probe(port), &[], &target).await,
        Outcome::Success
    );
    // 127.0.0.2 is loopback too, but nothing listens there in the namespace.
    target.pod_ip = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert!(
        !fx.prober
            .check(&tcp_probe(port), &[], &target)
            .await
            .succeeded()
    );
}

#[tokio::test]
async fn grpc_probe_says_it_is_not_supported() {
    let fx = Fixture::new();
    let probe = Probe {
        grpc: Some(k8s_openapi::api::core::v1::GRPCAction {
            port: 50051,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(failure(&fx.check(&probe).await).contains("not supported"));
}

async fn wait_for(receiver: &mut watch::Receiver<bool>, value: bool) {
    tokio::time::timeout(DEADLINE, receiver.wait_for(|v| *v == value))
        .await
        .unwrap_or_else(|_| panic!("not {value} within {DEADLINE:?}"))
        .unwrap();
}

async fn next_event(events: &mut mpsc::Receiver<ProbeEvent>) -> Option<ProbeEvent> {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("no probe event within the deadline")
}

#[tokio::test]
async fn readiness_follows_the_probe_both_ways() {
    let fx = Fixture::new();
    let healthy = Arc::new(AtomicBool::new(true));
    let (port, server) = fx.http_server(healthy.clone());
    let mut readiness = http_probe(port, "/toggle");
    readiness.failure_threshold = Some(2);
    let container = Container {
        name: "web".into(),
        readiness_probe: Some(readiness),
        ..Default::default()
    };
    let mut handle = fx.prober.spawn(&container, fx.target());
    assert!(
        *handle.started.borrow(),
        "no startup probe: started at once"
    );
    wait_for(&mut handle.ready, true).await;

    healthy.store(false, Ordering::SeqCst);
    // Two failures in a row flip it; each one is an Unhealthy event.
    for _ in 0..2 {
        assert_eq!(
            next_event(&mut handle.events).await,
            Some(ProbeEvent::Unhealthy {
                probe: ProbeKind::Readiness,
                message: "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
            })
        );
    }
    wait_for(&mut handle.ready, false).await;

    healthy.store(true, Ordering::SeqCst);
    wait_for(&mut handle.ready, true).await;
    server.abort();
}

#[tokio::test]
async fn liveness_failure_is_reported_once_after_the_threshold() {
    let fx = Fixture::new();
    let (port, server) = fx.http_server(Arc::new(AtomicBool::new(true)));
    let mut liveness = http_probe(port, "/fail");
    liveness.failure_threshold = Some(2);
    let container = Container {
        name: "web".into(),
        liveness_probe: Some(liveness),
        ..Default::default()
    };
    let mut handle = fx.prober.spawn(&container, fx.target());
    wait_for(&mut handle.ready, true).await;
    let message = "Liveness probe failed: HTTP probe failed with statuscode: 500".to_string();
    for _ in 0..2 {
        assert_eq!(
            next_event(&mut handle.events).await,
            Some(ProbeEvent::Unhealthy {
                probe: ProbeKind::Liveness,
                message: message.clone(),
            })
        );
    }
    assert_eq!(
        next_event(&mut handle.events).await,
        Some(ProbeEvent::Failed {
            probe: ProbeKind::Liveness,
            message,
        })
    );
    // The probe is on hold until the container is replaced: nothing more comes, the channel ends.
    assert_eq!(next_event(&mut handle.events).await, None);
    server.abort();
}

#[tokio::test]
async fn startup_probe_gates_readiness_and_liveness() {
    let fx = Fixture::new();
    let (ready_port, server) = fx.http_server(Arc::new(AtomicBool::new(true)));
    // A port nothing listens on yet: the namespace is the test's own, so nobody else takes it.
    let startup_port = listener_in(&fx.netns.path, 0)
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut startup = tcp_probe(startup_port);
    startup.failure_threshold = Some(60);
    let container = Container {
        name: "web".into(),
        startup_probe: Some(startup),
        readiness_probe: Some(http_probe(ready_port, "/ok")),
        liveness_probe: Some(http_probe(ready_port, "/fail")),
        ..Default::default()
    };
    let mut handle = fx.prober.spawn(&container, fx.target());
    for _ in 0..2 {
        match next_event(&mut handle.events).await {
            Some(ProbeEvent::Unhealthy {
                probe: ProbeKind::Startup,
                message,
            }) => assert!(message.starts_with("Startup probe failed: dial tcp")),
            other => panic!("only the startup probe may run before it passes: {other:?}"),
        }
    }
    assert!(!*handle.started.borrow());
    assert!(!*handle.ready.borrow());

    let listener = listener_in(&fx.netns.path, startup_port).unwrap();
    wait_for(&mut handle.started, true).await;
    wait_for(&mut handle.ready, true).await;
    // Liveness runs now: its failures arrive.
    loop {
        match next_event(&mut handle.events).await {
            Some(ProbeEvent::Unhealthy {
                probe: ProbeKind::Startup,
                ..
            }) => continue,
            Some(ProbeEvent::Unhealthy {
                probe: ProbeKind::Liveness,
                ..
            }) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(listener);
    server.abort();
}

#[tokio::test]
async fn initial_delay_counts_from_the_container_start() {
    let fx = Fixture::new();
    let (port, server) = fx.http_server(Arc::new(AtomicBool::new(true)));
    let mut readiness = http_probe(port, "/ok");
    readiness.initial_delay_seconds = Some(3600);
    let container = Container {
        name: "web".into(),
        readiness_probe: Some(readiness),
        ..Default::default()
    };
    // Started two hours ago (a re-adopted container): no delay left.
    let mut target = fx.target();
    target.started_at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let mut handle = fx.prober.spawn(&container, target);
    wait_for(&mut handle.ready, true).await;
    server.abort();
}

/// A busybox-static rootfs in `dir`.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    rootfs
}

#[tokio::test]
async fn exec_probe_runs_in_the_container_with_its_timeout() {
    let fx = Fixture::new();
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(scratch.path());
    let id = unique("probe-exec");
    let mut config = ContainerConfig::new(
        id.clone(),
        vec![rootfs],
        vec!["sh".into(), "-c".into(), "exec sleep 600".into()],
    );
    config.netns = Some(fx.netns.path.clone());
    let runtime = fx.prober.runtime.clone();
    let created = runtime.create(config).await;
    let _cleanup = RemoveOnDrop(runtime, id.clone());
    created.expect("container starts (is the shim built? cargo build -p berth-agent)");
    let target = ProbeTarget {
        container_id: id.clone(),
        ..fx.target()
    };
    let exec = |args: &[&str], timeout: i32| Probe {
        exec: Some(ExecAction {
            command: Some(args.iter().map(|a| a.to_string()).collect()),
        }),
        timeout_seconds: Some(timeout),
        ..Default::default()
    };
    assert_eq!(
        fx.prober
            .check(
                // The container's own /etc/passwd, not the host's.
                &exec(&["grep", "-q", "root:/:/bin/sh", "/etc/passwd"], 1),
                &[],
                &target
            )
            .await,
        Outcome::Success
    );
    assert_eq!(
        fx.prober
            .check(
                &exec(&["sh", "-c", "echo not yet; exit 3"], 1),
                &[],
                &target
            )
            .await,
        Outcome::Failure("not yet\n".into())
    );
    let start = Instant::now();
    let outcome = fx
        .prober
        .check(&exec(&["sleep", "30"], 1), &[], &target)
        .await;
    assert_eq!(
        outcome,
        Outcome::Failure("command \"sleep 30\" timed out".into())
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// Removes the container when the test ends, passed or failed.
struct RemoveOnDrop(Runtime, String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let (runtime, id) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(runtime.remove(&id))
        })
        .join()
        .unwrap()
        .unwrap();
    }
}
