//! The agent's DNS server against a real `berth apiserver`: Services and Pods are created through the API,
//! Pod status (podIP, Ready) is patched as the kubelet would, and the answers are read with raw UDP queries on
//! loopback. A fake upstream resolver on loopback checks forwarding. Nothing leaves the machine.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_agent::net::dns::{self, DnsConfig};
use berth_e2e::{Server, wait_for};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

const DEADLINE: Duration = Duration::from_secs(20);
/// Readiness must show in answers quickly; the bound is generous for a loaded 2-core machine (the server
/// itself is watch-driven, with no polling interval).
const FOLLOW_DEADLINE: Duration = Duration::from_secs(3);
/// What the fake upstream answers for every name.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// One raw UDP query; None when no answer came in time.
fn query(server: SocketAddr, name: &str, kind: RecordType) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut message = Message::query();
    message.metadata.id = rand_id();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    socket.send_to(&message.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, message.metadata.id);
    Some(answer)
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

fn addresses(message: &Message) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

/// Waits until `name` answers with exactly `want` (an empty `want` means NXDOMAIN).
fn wait_answer(dns: SocketAddr, name: &str, want: &[Ipv4Addr], deadline: Duration) {
    wait_for(&format!("{name} -> {want:?}"), deadline, || {
        let answer = query(dns, name, RecordType::A)?;
        let ok = if want.is_empty() {
            answer.metadata.response_code == ResponseCode::NXDomain
        } else {
            answer.metadata.response_code == ResponseCode::NoError && addresses(&answer) == want
        };
        ok.then_some(())
    });
}

/// A resolver on loopback that answers every A query with [`UPSTREAM_ANSWER`], until dropped.
struct FakeUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    fn start() -> FakeUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut response =
                    Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
                response.metadata.recursion_available = true;
                for q in &request.queries {
                    response.add_query(q.clone());
                    response.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(UPSTREAM_ANSWER)),
                    ));
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), from);
            }
        });
        FakeUpstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn service(name: &str, app: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "selector": {"app": app}, "ports": [{"port": 5432}]},
    }))
    .unwrap()
}

fn pod(name: &str, app: &str, subdomain: Option<&str>) -> Pod {
    let mut spec =
        serde_json::json!({"containers": [{"name": "c", "image": "busybox"}], "hostname": name});
    if let Some(sub) = subdomain {
        spec["subdomain"] = sub.into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": spec,
    }))
    .unwrap()
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: Ipv4Addr, ready: bool) {
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_follow_pod_readiness() {
    let server = Server::start();
    let client = server.client().await;
    let ns = format!("dns-{}", rand_id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    let upstream = FakeUpstream::start();
    let dns = dns::serve(
        client.clone(),
        DnsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstreams: vec![upstream.addr],
            cluster_domain: "cluster.local".into(),
        },
    )
    .await
    .unwrap();
    let addr = dns.local_addr();

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    services
        .create(&PostParams::default(), &service("db", "pg"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("db-0", "pg", Some("db")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("db-1", "pg", None))
        .await
        .unwrap();
    let (ip0, ip1) = (Ipv4Addr::new(10, 89, 7, 10), Ipv4Addr::new(10, 89, 7, 11));
    set_status(&pods, "db-0", ip0, false).await;
    set_status(&pods, "db-1", ip1, false).await;

    let fqdn = format!("db.{ns}.svc.cluster.local");
    // A Service without ready Pods: NXDOMAIN, as CoreDNS answers for a headless Service without endpoints.
    wait_answer(addr, &fqdn, &[], DEADLINE);

    set_status(&pods, "db-0", ip0, true).await;
    wait_answer(addr, &fqdn, &[ip0], FOLLOW_DEADLINE);
    set_status(&pods, "db-1", ip1, true).await;
    wait_answer(addr, &fqdn, &[ip0, ip1], FOLLOW_DEADLINE);
    // Every form of the name, the hostname/subdomain record and the dashed Pod name.
    for name in [format!("db.{ns}.svc"), format!("db.{ns}")] {
        wait_answer(addr, &name, &[ip0, ip1], FOLLOW_DEADLINE);
    }
    wait_answer(
        addr,
        &format!("db-0.db.{ns}.svc.cluster.local"),
        &[ip0],
        FOLLOW_DEADLINE,
    );
    wait_answer(
        addr,
        &format!("10-89-7-10.{ns}.pod.cluster.local"),
        &[ip0],
        FOLLOW_DEADLINE,
    );
    // AAAA for an existing name: no records, but not NXDOMAIN.
    let aaaa = query(addr, &fqdn, RecordType::AAAA).expect("an AAAA answer");
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());

    set_status(&pods, "db-0", ip0, false).await;
    wait_answer(addr, &fqdn, &[ip1], FOLLOW_DEADLINE);
    pods.delete("db-1", &Default::default()).await.unwrap();
    wait_answer(addr, &fqdn, &[], FOLLOW_DEADLINE);

    // Unknown cluster names are NXDOMAIN; other names go to the upstream.
    wait_answer(addr, &format!("nope.{ns}.svc.cluster.local"), &[], DEADLINE);
    wait_answer(addr, "www.example.test", &[UPSTREAM_ANSWER], DEADLINE);

    // Garbage and truncated packets do not stop the server.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [
        &b"\x00"[..],
        &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
        &[0u8; 600][..],
    ] {
        raw.send_to(junk, addr).unwrap();
    }
    let mut half = Message::query();
    half.add_query(Query::query(
        Name::from_ascii(&fqdn).unwrap(),
        RecordType::A,
    ));
    let bytes = half.to_vec().unwrap();
    raw.send_to(&bytes[..bytes.len() - 3], addr).unwrap();
    wait_answer(addr, "www.example.test", &[UPSTREAM_ANSWER], DEADLINE);

    drop(dns);
    namespaces.delete(&ns, &Default::default()).await.unwrap();
}
