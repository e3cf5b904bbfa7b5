//! The kubelet endpoint against real busybox containers: logs (tail, since, timestamps, limit, follow,
//! previous), exec with exit codes, TTY exec with resize, attach, and authentication, with the API server's
//! own kubelet client credentials (`berth_apiserver::pki`) as the client.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use berth_agent::kubelet::server::{
    ContainerLookup, ContainerRef, KubeletServer, ServerConfig, TlsIdentity,
};
use berth_agent::runtime::Runtime;
use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde_json::Value;
use support::{Cleanup, DEADLINE, container, runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The test's Pod state: `namespace/pod/container` (and previous) → container.
#[derive(Default)]
struct Pods(Mutex<HashMap<(String, bool), ContainerRef>>);

impl Pods {
    fn add(&self, path: &str, previous: bool, container: ContainerRef) {
        self.0
            .lock()
            .unwrap()
            .insert((path.to_string(), previous), container);
    }
}

impl ContainerLookup for Pods {
    fn find(&self, ns: &str, pod: &str, name: &str, previous: bool) -> Option<ContainerRef> {
        let key = (format!("{ns}/{pod}/{name}"), previous);
        self.0.lock().unwrap().get(&key).cloned()
    }
}

/// A running endpoint with a CA of its own, and the API server's client credentials for it.
struct Endpoint {
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    pki: tempfile::TempDir,
    pods: Arc<Pods>,
    runtime: Runtime,
    _root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn endpoint() -> Endpoint {
    let pki = tempfile::tempdir().unwrap();
    let creds = berth_apiserver::pki::prepare(pki.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let serving = berth_apiserver::pki::issue_kubelet_serving(pki.path(), &[], &[]).unwrap();
    let trust = berth_apiserver::pki::kubelet_client_trust(pki.path()).unwrap();
    let tls = TlsIdentity {
        cert_pem: serving.cert_pem,
        key_pem: serving.key_pem,
        client_ca_pem: trust.ca_pem,
        client_name: trust.client_name.to_string(),
    };
    let mut config = ServerConfig::new(tls);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let (runtime, root) = runtime();
    let pods = Arc::new(Pods::default());
    let server = KubeletServer::bind(config, runtime.clone(), pods.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Endpoint {
        addr,
        client: creds.kubelet_client,
        pki,
        pods,
        runtime,
        _root: root,
        stop: Some(stop),
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(client)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// A plain GET (HTTP/1.1, connection closed after): status code and body, chunked encoding undone.
async fn get_with(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, String) {
    let mut tls = connect(addr, client).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, tls.read_to_end(&mut raw))
        .await
        .expect("the response ends")
        .ok();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split(' ').nth(1).unwrap_or("0").parse().unwrap();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (code, body.to_string());
    }
    let mut rest = body;
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    (code, out)
}

impl Endpoint {
    async fn get(&self, path: &str) -> (u16, String) {
        get_with(self.addr, self.client.clone(), path).await
    }

    async fn start(
        &self,
        mut config: berth_agent::runtime::ContainerConfig,
        path: &str,
    ) -> ContainerRef {
        config.id = support::unique("ks");
        let handle = self.runtime.create(config.clone()).await.unwrap();
        let container = ContainerRef {
            id: config.id.clone(),
            log_path: handle.log_path,
            tty: config.tty,
            stdin: config.stdin,
            running: true,
        };
        self.pods.add(path, false, container.clone());
        container
    }

    /// Opens an exec or attach session.
    async fn session(&self, path_and_query: &str, protocol: &str) -> Session {
        let tls = connect(self.addr, self.client.clone()).await.unwrap();
        let mut request = format!("wss://127.0.0.1:{}{path_and_query}", self.addr.port())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let (socket, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol.split(',').next().unwrap().trim()
        );
        Session {
            socket,
            channels: HashMap::new(),
            close: None,
        }
    }
}

struct Session {
    socket: tokio_tungstenite::WebSocketStream<Tls>,
    channels: HashMap<u8, Vec<u8>>,
    close: Option<CloseCode>,
}

impl Session {
    async fn send(&mut self, channel: u8, data: &[u8]) {
        let mut frame = vec![channel];
        frame.extend_from_slice(data);
        self.socket
            .send(Message::Binary(frame.into()))
            .await
            .unwrap();
    }

    fn text(&self, channel: u8) -> String {
        String::from_utf8_lossy(
            self.channels
                .get(&channel)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
        .into_owned()
    }

    /// Reads messages until `done` holds or the socket closes.
    async fn read_until(&mut self, mut done: impl FnMut(&Session) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(self) {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("timed out; so far: {:?}", self.channels));
            match message {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => self
                    .channels
                    .entry(data[0])
                    .or_default()
                    .extend_from_slice(&data[1..]),
                Some(Ok(Message::Close(frame))) => {
                    self.close = frame.map(|f| f.code);
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            }
        }
    }

    /// Everything until the server closes; the status from channel 3.
    async fn finish(&mut self) -> Value {
        self.read_until(|_| false).await;
        assert_eq!(self.close, Some(CloseCode::Normal), "{:?}", self.channels);
        serde_json::from_str(&self.text(3)).unwrap_or_else(|e| panic!("{e}: {:?}", self.text(3)))
    }
}

#[tokio::test]
async fn logs_honour_tail_since_timestamps_limit_and_previous() {
    let ep = endpoint().await;
    let done = ep
        .start(
            container(
                "x",
                "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2",
            ),
            "ns/web/app",
        )
        .await;
    let mut cleanup = Cleanup {
        runtime: ep.runtime.clone(),
        ids: vec![done.id.clone()],
    };
    tokio::time::timeout(DEADLINE, ep.runtime.wait(&done.id))
        .await
        .unwrap()
        .unwrap();
    let (code, body) = ep.get("/containerLogs/ns/web/app").await;
    assert_eq!(
        (code, body.as_str()),
        (200, "line 1\nline 2\nline 3\nline 4\nline 5\noops\n")
    );
    let (_, body) = ep.get("/containerLogs/ns/web/app?tailLines=2").await;
    assert_eq!(body, "line 5\noops\n");
    let (_, body) = ep.get("/containerLogs/ns/web/app?limitBytes=9").await;
    assert_eq!(body, "line 1\nli");
    let (_, body) = ep
        .get("/containerLogs/ns/web/app?timestamps=true&tailLines=1")
        .await;
    let (time, text) = body.trim_end().split_once(' ').unwrap();
    assert_eq!(text, "oops");
    let time: jiff::Timestamp = time.parse().unwrap();
    assert!(jiff::Timestamp::now().duration_since(time) < jiff::SignedDuration::from_secs(60));
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let (_, body) = ep
        .get(&format!(
            "/containerLogs/ns/web/app?sinceTime={}",
            later.replace(':', "%3A")
        ))
        .await;
    assert_eq!(body, "");
    let (_, body) = ep.get("/containerLogs/ns/web/app?sinceSeconds=600").await;
    assert_eq!(body.lines().count(), 6);
    // `follow` on an ended container ends with what there is.
    let (_, body) = ep
        .get("/containerLogs/ns/web/app?follow=true&tailLines=1")
        .await;
    assert_eq!(body, "oops\n");

    // The finished instance becomes the previous one of a new instance.
    let mut previous = done.clone();
    previous.running = false;
    ep.pods.add("ns/web/app", true, previous);
    let current = ep
        .start(container("x", "echo second; exec sleep 1000"), "ns/web/app")
        .await;
    cleanup.ids.push(current.id.clone());
    support::eventually("the new instance's log", || {
        std::fs::read_to_string(&current.log_path)
            .ok()
            .filter(|t| t.contains("second"))
    })
    .await;
    let (_, body) = ep
        .get("/containerLogs/ns/web/app?previous=true&tailLines=1")
        .await;
    assert_eq!(body, "oops\n");
    let (_, body) = ep.get("/containerLogs/ns/web/app").await;
    assert_eq!(body, "second\n");
    let (code, body) = ep.get("/containerLogs/ns/web/nope?previous=true").await;
    assert_eq!(code, 404, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
}

#[tokio::test]
async fn a_followed_log_streams_new_lines_and_ends_with_the_container() {
    let ep = endpoint().await;
    let mut config = container("x", "echo start; read word; echo end-$word; exit 0");
    config.stdin = true;
    let c = ep.start(config, "ns/follow/app").await;
    let _cleanup = Cleanup {
        runtime: ep.runtime.clone(),
        ids: vec![c.id.clone()],
    };
    let mut tls = connect(ep.addr, ep.client.clone()).await.unwrap();
    tls.write_all(
        b"GET /containerLogs/ns/follow/app?follow=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(&raw).contains("start\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, tls.read(&mut buf))
            .await
            .expect("the first line arrives")
            .unwrap();
        assert!(n > 0, "the followed log ended early");
        raw.extend_from_slice(&buf[..n]);
    }
    // Input through an attach session: the container answers, and the followed log ends with it.
    let mut attach = ep
        .session(
            "/attach/ns/follow/app?input=1&output=1&error=1",
            "v5.channel.k8s.io",
        )
        .await;
    attach.send(0, b"go\n").await;
    tokio::time::timeout(DEADLINE, tls.read_to_end(&mut raw))
        .await
        .expect("the followed log ends when the container does")
        .ok();
    let (code, body) = parse_response(&raw);
    assert_eq!((code, body.as_str()), (200, "start\nend-go\n"));
    let status = attach.finish().await;
    assert!(attach.text(1).contains("end-go\n"), "{:?}", attach.channels);
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn exec_reports_output_streams_and_the_exit_code() {
    let ep = endpoint().await;
    let c = ep
        .start(container("x", "exec sleep 1000"), "ns/exec/app")
        .await;
    let _cleanup = Cleanup {
        runtime: ep.runtime.clone(),
        ids: vec![c.id.clone()],
    };
    let mut failing = ep
        .session(
            "/exec/ns/exec/app?command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+3&output=1&error=1",
            "v5.channel.k8s.io, v4.channel.k8s.io",
        )
        .await;
    let status = failing.finish().await;
    assert_eq!(failing.text(1), "out\n");
    assert_eq!(failing.text(2), "err\n");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // v4 has no close message: a command that stops reading by itself.
    let mut cat = ep
        .session(
            "/exec/ns/exec/app?command=head&command=-n1&input=1&output=1",
            "v4.channel.k8s.io",
        )
        .await;
    cat.send(0, b"hello\n").await;
    let status = cat.finish().await;
    assert_eq!(cat.text(1), "hello\n");
    assert_eq!(status["status"], "Success");

    // v5: the client's close of stdin reaches the process as EOF.
    let mut wc = ep
        .session(
            "/exec/ns/exec/app?command=wc&command=-c&input=1&output=1",
            "v5.channel.k8s.io",
        )
        .await;
    wc.send(0, b"12345").await;
    wc.send(255, &[0]).await;
    let status = wc.finish().await;
    assert_eq!(wc.text(1).trim(), "5");
    assert_eq!(status["status"], "Success");

    let (code, body) = ep.get("/exec/ns/exec/app?command=true&output=1").await;
    assert_eq!(code, 400, "an exec without an upgrade: {body}");
    let (code, _) = ep.get("/exec/ns/exec/other?command=true&output=1").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_tty_exec_session_is_resized_through_channel_four() {
    let ep = endpoint().await;
    let c = ep
        .start(container("x", "exec sleep 1000"), "ns/tty/app")
        .await;
    let _cleanup = Cleanup {
        runtime: ep.runtime.clone(),
        ids: vec![c.id.clone()],
    };
    let mut session = ep
        .session(
            "/exec/ns/tty/app?command=sh&command=-c&command=read+x%3B+stty+size&input=1&output=1&tty=1",
            "v5.channel.k8s.io",
        )
        .await;
    session.send(4, br#"{"Width":101,"Height":33}"#).await;
    session.send(0, b"go\r").await;
    let status = session.finish().await;
    assert!(session.text(1).contains("33 101"), "{:?}", session.text(1));
    assert_eq!(status["status"], "Success");
}

#[tokio::test]
async fn attach_streams_the_containers_output_and_detaching_leaves_it_running() {
    let ep = endpoint().await;
    let mut config = container(
        "x",
        "while read line; do echo \"got $line\"; echo \"warn $line\" >&2; done",
    );
    config.stdin = true;
    let c = ep.start(config, "ns/attach/app").await;
    let _cleanup = Cleanup {
        runtime: ep.runtime.clone(),
        ids: vec![c.id.clone()],
    };
    let mut watcher = ep
        .session(
            "/attach/ns/attach/app?output=1&error=1",
            "v5.channel.k8s.io",
        )
        .await;
    let mut writer = ep
        .session(
            "/attach/ns/attach/app?input=1&output=1",
            "v5.channel.k8s.io",
        )
        .await;
    writer.send(0, b"one\n").await;
    writer.read_until(|s| s.text(1).contains("got one\n")).await;
    watcher
        .read_until(|s| s.text(1).contains("got one\n") && s.text(2).contains("warn one\n"))
        .await;
    assert!(!writer.text(2).contains("warn"), "stderr was not asked for");
    drop(writer);
    drop(watcher);
    let mut again = ep
        .session(
            "/attach/ns/attach/app?input=1&output=1",
            "v5.channel.k8s.io",
        )
        .await;
    again.send(0, b"two\n").await;
    again.read_until(|s| s.text(1).contains("got two\n")).await;
    assert_eq!(
        ep.runtime.state(&c.id).await.unwrap().status,
        berth_agent::runtime::Status::Running
    );
    let (code, body) = ep.get("/attach/ns/attach/app?output=1&tty=1").await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn only_the_api_servers_client_certificate_is_admitted() {
    let ep = endpoint().await;
    // No client certificate: 401.
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(&ep))
    .with_no_client_auth();
    let (code, body) = get_with(ep.addr, Arc::new(anonymous), "/containerLogs/a/b/c").await;
    assert_eq!(code, 401, "{body}");

    // Signed by the CA, another name: 403.
    let (code, body) = get_with(
        ep.addr,
        client_cert(&ep, "someone-else", true),
        "/containerLogs/a/b/c",
    )
    .await;
    assert_eq!(code, 403, "{body}");
    // The right name from another CA: refused by the handshake.
    let stranger = client_cert(&ep, berth_apiserver::pki::KUBELET_CLIENT_NAME, false);
    let refused = async {
        let mut tls = connect(ep.addr, stranger).await?;
        tls.write_all(b"GET /containerLogs/a/b/c HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        match tls.read(&mut buf).await? {
            0 => Err(std::io::Error::other("closed")),
            _ => Ok(()),
        }
    };
    assert!(
        tokio::time::timeout(DEADLINE, refused)
            .await
            .unwrap()
            .is_err()
    );
    // The API server's own: admitted (404: no such container).
    assert_eq!(ep.get("/containerLogs/a/b/c").await.0, 404);
}

fn roots(ep: &Endpoint) -> rustls::RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ca = std::fs::read(ep.pki.path().join("pki/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    roots
}

/// A client certificate with common name `name`, signed by the endpoint's CA or by a CA of its own.
fn client_cert(ep: &Endpoint, name: &str, by_the_ca: bool) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let (ca_cert, ca_key) = if by_the_ca {
        let dir = ep.pki.path().join("pki");
        (
            std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap())
                .unwrap(),
        )
    } else {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (params.self_signed(&key).unwrap().pem(), key)
    };
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(ep))
    .with_client_auth_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    Arc::new(config)
}

#[test]
fn chunked_bodies_are_decoded_by_the_test_client() {
    let raw =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_eq!(parse_response(raw), (200, "abcde".to_string()));
}
