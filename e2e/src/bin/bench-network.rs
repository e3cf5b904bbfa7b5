//! Benchmarks berth's Pod networking (issue 5) on a `berth up` with a bridge and /24 of its own, each figure
//! beside a peer doing the same work in the same run:
//! - network setup and teardown per Pod, as the agent times them (`micros` of its `pod attached` and
//!   `pod detached` log events), against the same veth pair, address, routes and links made with iproute2
//!   (`ip link`, `ip addr`, `ip route`) on a bridge of the bench's own;
//! - DNS queries/s answered from inside a Pod's network namespace by the agent's DNS server on the bridge
//!   address, against dnsmasq serving the same records on the same address (another port), with the same
//!   load generator; every answer is checked against the Service's Pod IP;
//! - hostPort throughput: MiB/s read through the agent's proxy on 127.0.0.1:hostPort against a direct
//!   connection to the Pod's address, rounds alternating.
//!
//! Traffic goes only to loopback, to the bridge and to the Pods the bench created. Prints a Markdown table
//! and removes everything it created.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use berth_e2e::bench::{
    BerthUp, POD_DEADLINE, ensure_root, ensure_tool, in_netns_of, load_average, ms, percentile,
    pod_process, ratio, release_berth, wait_node_ready,
};
use berth_e2e::network::TestNetwork;
use berth_e2e::registry::Registry;
use clap::Parser;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodSpec, Service, ServicePort, ServiceSpec,
};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt};

/// The port the Pod's HTTP server listens on.
const HTTP_PORT: u16 = 8080;
/// How long the bench waits for a DNS answer before it counts the query as lost.
const DNS_TIMEOUT: Duration = Duration::from_millis(200);
/// How often the load generator looks for queries past [`DNS_TIMEOUT`].
const DNS_SWEEP: Duration = Duration::from_millis(20);
/// How long the log may take to show a Pod's network event, and the DNS and HTTP servers to answer.
const SERVE_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(about = "Pod networking of berth up: setup per Pod, DNS queries/s, hostPort throughput")]
struct Args {
    /// The berth binary to run (default: the workspace's release build).
    #[arg(long, env = "BERTH_BIN")]
    berth_bin: Option<PathBuf>,
    /// Pods created one at a time to time network setup and teardown.
    #[arg(long, default_value_t = 20)]
    pods: usize,
    /// Services the DNS load asks for (each selects one of the bench's two long-running Pods).
    #[arg(long, default_value_t = 4)]
    services: usize,
    /// Seconds of DNS load per round and server.
    #[arg(long, default_value_t = 2.0)]
    dns_seconds: f64,
    /// DNS queries in flight at once.
    #[arg(long, default_value_t = 32)]
    dns_window: usize,
    /// Size of the file the Pod serves (MiB), read once per round and path.
    #[arg(long, default_value_t = 128)]
    mib: u64,
    /// Rounds of each DNS server and of each hostPort path, alternating.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.pods > 0
            && args.services > 0
            && args.dns_window > 0
            && args.mib > 0
            && args.rounds > 0,
        "--pods, --services, --dns-window, --mib and --rounds must be positive"
    );
    ensure!(
        args.dns_window < 60_000,
        "--dns-window must stay below the 16-bit query id space"
    );
    ensure_root()?;
    let bin = release_berth(args.berth_bin.clone())?;
    // Debian's dnsmasq-base: the binary without the system service.
    ensure_tool("dnsmasq", "dnsmasq-base")?;

    let run = format!("{:x}", std::process::id());
    let registry = Registry::start();
    let image = registry.push_busybox("bench/busybox:1");
    println!(
        "Network benchmark: berth up's Pod network against iproute2, dnsmasq and a direct connection"
    );
    println!("- berth: {}", bin.display());
    println!("- image: {image} (busybox-static), from a loopback docker-registry");
    println!("- load average at start: {}", load_average());

    let up = BerthUp::start(&bin, &format!("bench-net-{run}"), &[]);
    let client = up.server.client().await;
    wait_node_ready(&Api::all(client.clone()), &format!("bench-net-{run}")).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client, "default");
    let log = up.server.data_dir.path().join("apiserver.log");

    // The first Pod pulls and unpacks the image; it is not counted.
    cycle_pod(
        &pods,
        &sleep_pod(&format!("net-warmup-{run}"), &run, &image),
    )
    .await?;
    let mut setup = Vec::with_capacity(args.pods);
    let mut teardown = Vec::with_capacity(args.pods);
    for i in 0..args.pods {
        let pod = sleep_pod(&format!("net-setup-{run}-{i}"), &run, &image);
        let uid = cycle_pod(&pods, &pod).await?;
        let (attach, detach) = network_events(&log, &pod.name_any(), &uid).await?;
        setup.push(attach);
        teardown.push(detach);
    }
    setup.sort_unstable();
    teardown.sort_unstable();
    println!("- berth setup done; load average: {}", load_average());
    let (peer_setup, peer_teardown) = iproute2_setup(&run, args.pods)?;
    println!("- iproute2 setup done; load average: {}", load_average());

    let web = create_running(
        &pods,
        &web_pod(&format!("net-web-{run}"), &run, &image, args.mib)?,
    )
    .await?;
    let dns_client = create_running(
        &pods,
        &sleep_pod(&format!("net-client-{run}"), &run, &image),
    )
    .await?;
    let data_dir = up.server.data_dir.path();
    let mut records = Vec::with_capacity(args.services);
    for i in 0..args.services {
        let target = if i % 2 == 0 { &web } else { &dns_client };
        let name = format!("net-svc-{run}-{i}");
        services
            .create(&PostParams::default(), &service(&name, &target.name_any()))
            .await
            .with_context(|| format!("creating Service {name}"))?;
        records.push((
            Name::from_str(&format!("{name}.default.svc.cluster.local."))?,
            pod_ip(target)?,
        ));
    }
    let dns = dns_rounds(data_dir, &dns_client, up.network.gateway, &records, &args)?;
    println!("- DNS done; load average: {}", load_average());
    let http = http_rounds(&web, &args)?;
    println!("- hostPort done; load average: {}", load_average());

    for i in 0..args.services {
        services
            .delete(&format!("net-svc-{run}-{i}"), &DeleteParams::default())
            .await?;
    }
    for pod in [&web, &dns_client] {
        delete_pod(&pods, pod).await?;
    }
    drop(up);
    println!("- load average at end: {}", load_average());

    print_table(&Figures {
        setup,
        teardown,
        peer_setup,
        peer_teardown,
        dns,
        http,
        mib: args.mib,
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Pods and Services

/// A Pod running busybox's `sleep`, deleted without a grace period (PID 1 ignores SIGTERM).
fn sleep_pod(name: &str, run: &str, image: &str) -> Pod {
    pod(
        name,
        run,
        Container {
            name: "main".to_owned(),
            image: Some(image.to_owned()),
            command: Some(vec!["/bin/sleep".to_owned(), "3600".to_owned()]),
            ..Container::default()
        },
    )
}

/// A Pod whose busybox httpd serves `/big` (`mib` MiB of zeros) on [`HTTP_PORT`], published on a free port
/// of 127.0.0.1.
fn web_pod(name: &str, run: &str, image: &str, mib: u64) -> Result<Pod> {
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let script = format!(
        "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1048576 count={mib} 2>/dev/null && \
         exec /bin/busybox httpd -f -p {HTTP_PORT} -h /www"
    );
    Ok(pod(
        name,
        run,
        Container {
            name: "main".to_owned(),
            image: Some(image.to_owned()),
            command: Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), script]),
            ports: Some(vec![ContainerPort {
                container_port: i32::from(HTTP_PORT),
                host_port: Some(i32::from(host_port)),
                host_ip: Some("127.0.0.1".to_owned()),
                ..ContainerPort::default()
            }]),
            ..Container::default()
        },
    ))
}

fn pod(name: &str, run: &str, container: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [
                    ("berth-bench".to_owned(), run.to_owned()),
                    ("bench-pod".to_owned(), name.to_owned()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(0),
            containers: vec![container],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// A Service selecting the Pod named `pod` (through its `bench-pod` label).
fn service(name: &str, pod: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some([("bench-pod".to_owned(), pod.to_owned())].into()),
            ports: Some(vec![ServicePort {
                port: i32::from(HTTP_PORT),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn pod_ip(pod: &Pod) -> Result<Ipv4Addr> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .with_context(|| format!("Pod {} has no podIP", pod.name_any()))?;
    ip.parse()
        .with_context(|| format!("Pod {}'s podIP {ip:?}", pod.name_any()))
}

/// Creates the Pod and returns it once it runs (with its uid and podIP).
async fn create_running(pods: &Api<Pod>, pod: &Pod) -> Result<Pod> {
    let name = pod.name_any();
    pods.create(&PostParams::default(), pod)
        .await
        .with_context(|| format!("creating Pod {name}"))?;
    let running = tokio::time::timeout(
        POD_DEADLINE,
        await_condition(pods.clone(), &name, conditions::is_pod_running()),
    )
    .await
    .with_context(|| format!("Pod {name} was not Running within {POD_DEADLINE:?}"))??;
    running.with_context(|| format!("Pod {name} went away before it ran"))
}

async fn delete_pod(pods: &Api<Pod>, pod: &Pod) -> Result<()> {
    let name = pod.name_any();
    let uid = pod.uid().context("a created Pod has a uid")?;
    pods.delete(
        &name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .with_context(|| format!("deleting Pod {name}"))?;
    tokio::time::timeout(
        POD_DEADLINE,
        await_condition(pods.clone(), &name, conditions::is_deleted(&uid)),
    )
    .await
    .with_context(|| format!("Pod {name} was not gone within {POD_DEADLINE:?}"))??;
    Ok(())
}

/// Creates the Pod, waits until it runs, deletes it and waits until it is gone; returns its uid.
async fn cycle_pod(pods: &Api<Pod>, pod: &Pod) -> Result<String> {
    let running = create_running(pods, pod).await?;
    delete_pod(pods, &running).await?;
    running.uid().context("a created Pod has a uid")
}

// ---------------------------------------------------------------------------------------------------------
// network setup: berth's log against iproute2

/// The agent's own timing of the Pod's attach and detach, from its log (waiting for the detach, which may
/// come after the Pod is gone from the API).
async fn network_events(log: &Path, name: &str, uid: &str) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    loop {
        let text =
            std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
        let mut attach = None;
        let mut detach = None;
        for line in text.lines().map(console::strip_ansi_codes) {
            let micros = || {
                log_field(&line, "micros")
                    .and_then(|m| m.parse::<u64>().ok())
                    .map(Duration::from_micros)
            };
            if line.contains("pod attached")
                && log_field(&line, "pod") == Some(&format!("default/{name}"))
                && log_field(&line, "created") == Some("true")
            {
                attach = attach.or_else(micros);
            } else if line.contains("pod detached") && log_field(&line, "pod_uid") == Some(uid) {
                detach = detach.or_else(micros);
            }
        }
        if let (Some(attach), Some(detach)) = (attach, detach) {
            return Ok((attach, detach));
        }
        ensure!(
            start.elapsed() < SERVE_DEADLINE,
            "{} has no timed `pod attached` (created) and `pod detached` events for Pod {name} ({uid}) after \
             {SERVE_DEADLINE:?}: is this a berth with timed network events?",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of `key=value` in a tracing line, without quotes.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

/// A bridge and namespaces of the bench's own for the iproute2 peer; on drop the namespaces (their veths go
/// with them) and the bridge are deleted.
struct Iproute2 {
    network: TestNetwork,
    namespaces: Vec<String>,
}

impl Iproute2 {
    fn new() -> Result<Iproute2> {
        let network = TestNetwork::pick();
        let peer = Iproute2 {
            network,
            namespaces: Vec::new(),
        };
        let bridge = peer.network.bridge.as_str();
        ip(&["link", "add", bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", peer.network.gateway),
            "dev",
            bridge,
        ])?;
        ip(&["link", "set", bridge, "up"])?;
        Ok(peer)
    }
}

impl Drop for Iproute2 {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.network.bridge]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    ensure!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// What berth's attach does, with iproute2 commands: a veth pair with its Pod side made in the namespace,
/// the host side on the bridge and up, the Pod's address, eth0 and lo up, the default route; and what detach
/// does: the veth deleted. The namespace is made (before) and removed (after) outside the timing, as berth's
/// kubelet does it outside attach and detach.
fn iproute2_setup(run: &str, pods: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut peer = Iproute2::new()?;
    println!(
        "- iproute2: bridge {}, {}",
        peer.network.bridge, peer.network.cidr
    );
    let gateway = peer.network.gateway.to_string();
    let base = u32::from(peer.network.gateway);
    let mut setup = Vec::with_capacity(pods);
    let mut teardown = Vec::with_capacity(pods);
    for i in 0..pods {
        let ns = format!("bn{run}-{i}");
        let veth = format!("bv{run}x{i}");
        ensure!(veth.len() <= 15, "veth name {veth} is too long");
        let address = format!("{}/24", Ipv4Addr::from(base + 1 + i as u32));
        ip(&["netns", "add", &ns])?;
        peer.namespaces.push(ns.clone());
        let start = Instant::now();
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &peer.network.bridge, "up"])?;
        ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", &gateway])?;
        setup.push(start.elapsed());
        let start = Instant::now();
        ip(&["link", "del", &veth])?;
        teardown.push(start.elapsed());
        ip(&["netns", "del", &ns])?;
        peer.namespaces.pop();
    }
    setup.sort_unstable();
    teardown.sort_unstable();
    Ok((setup, teardown))
}

// ---------------------------------------------------------------------------------------------------------
// DNS: the agent's server against dnsmasq, from inside a Pod

/// What one server answered under load, summed over its rounds.
#[derive(Default)]
struct DnsLoad {
    sent: u64,
    correct: u64,
    /// Answers with the wrong code, address or question (the first few are printed).
    wrong: u64,
    lost: u64,
    elapsed: Duration,
}

impl DnsLoad {
    fn qps(&self) -> f64 {
        self.correct as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn add(&mut self, other: &DnsLoad) {
        self.sent += other.sent;
        self.correct += other.correct;
        self.wrong += other.wrong;
        self.lost += other.lost;
        self.elapsed += other.elapsed;
    }
}

struct DnsFigures {
    berth: DnsLoad,
    dnsmasq: DnsLoad,
    names: usize,
    window: usize,
}

/// dnsmasq serving the same names on another port of the bridge address; killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    fn start(gateway: Ipv4Addr, records: &[(Name, Ipv4Addr)]) -> Result<Dnsmasq> {
        let port = UdpSocket::bind((gateway, 0))?.local_addr()?.port();
        let mut command = Command::new("dnsmasq");
        command.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--pid-file=",
            "--user=root",
            &format!("--listen-address={gateway}"),
            &format!("--port={port}"),
        ]);
        for (name, ip) in records {
            command.arg(format!(
                "--host-record={},{ip}",
                name.to_string().trim_end_matches('.')
            ));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq")?;
        Ok(Dnsmasq {
            child,
            addr: SocketAddr::from((gateway, port)),
        })
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dns_rounds(
    data_dir: &Path,
    client: &Pod,
    gateway: Ipv4Addr,
    records: &[(Name, Ipv4Addr)],
    args: &Args,
) -> Result<DnsFigures> {
    let uid = client.uid().context("a created Pod has a uid")?;
    let pid = pod_process(data_dir, &uid)
        .with_context(|| format!("no container process found for Pod {}", client.name_any()))?;
    let mut dnsmasq = Dnsmasq::start(gateway, records)?;
    let berth_addr = SocketAddr::from((gateway, 53));
    let dnsmasq_addr = dnsmasq.addr;
    println!(
        "- DNS: from Pod {} (pid {pid}) to berth on {berth_addr} and dnsmasq on {dnsmasq_addr}; {} names",
        client.name_any(),
        records.len()
    );
    let names = records.len();
    let records = records.to_vec();
    let (seconds, window, rounds) = (args.dns_seconds, args.dns_window, args.rounds);
    let (berth, peer) = in_netns_of(pid, move || {
        // Both answer every name right before the load starts (the agent's records follow readiness).
        for addr in [berth_addr, dnsmasq_addr] {
            wait_answers(addr, &records)?;
        }
        let duration = Duration::from_secs_f64(seconds);
        let mut berth = DnsLoad::default();
        let mut peer = DnsLoad::default();
        for _ in 0..rounds {
            berth.add(&dns_load(berth_addr, &records, duration, window)?);
            peer.add(&dns_load(dnsmasq_addr, &records, duration, window)?);
        }
        Ok((berth, peer))
    })?;
    if let Ok(Some(status)) = dnsmasq.child.try_wait() {
        bail!("dnsmasq exited during the bench: {status}");
    }
    Ok(DnsFigures {
        berth,
        dnsmasq: peer,
        names,
        window: args.dns_window,
    })
}

/// One A query per name, encoded once; the id (the first two bytes) is set per send.
fn encode_queries(records: &[(Name, Ipv4Addr)]) -> Result<Vec<Vec<u8>>> {
    records
        .iter()
        .map(|(name, _)| {
            let mut message = Message::query();
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(name.clone(), RecordType::A));
            Ok(message.to_vec()?)
        })
        .collect()
}

/// Whether an answer is right for the name: NOERROR, the question asked, and exactly the expected address.
fn answer_is_right(answer: &Message, name: &Name, ip: Ipv4Addr) -> bool {
    let addresses: Vec<Ipv4Addr> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    answer.metadata.response_code == ResponseCode::NoError
        && answer.queries.first().is_some_and(|q| q.name() == name)
        && addresses == [ip]
}

/// Asks every name until each answer is right, within a deadline.
fn wait_answers(server: SocketAddr, records: &[(Name, Ipv4Addr)]) -> Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(DNS_TIMEOUT))?;
    let queries = encode_queries(records)?;
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    for ((name, ip), query) in records.iter().zip(&queries) {
        loop {
            socket.send_to(query, server)?;
            let right = socket
                .recv(&mut buf)
                .ok()
                .and_then(|n| Message::from_vec(&buf[..n]).ok())
                .is_some_and(|m| answer_is_right(&m, name, *ip));
            if right {
                break;
            }
            ensure!(
                start.elapsed() < SERVE_DEADLINE,
                "{server} did not answer {name} with {ip} within {SERVE_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Keeps `window` queries in flight against `server` for `duration`, cycling through the names, and checks
/// every answer. A query unanswered for [`DNS_TIMEOUT`] counts as lost.
fn dns_load(
    server: SocketAddr,
    records: &[(Name, Ipv4Addr)],
    duration: Duration,
    window: usize,
) -> Result<DnsLoad> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(DNS_SWEEP))?;
    let mut queries = encode_queries(records)?;
    // The name each id in flight asked for, and when it was sent.
    let mut in_flight: HashMap<u16, (usize, Instant)> = HashMap::with_capacity(window);
    let mut load = DnsLoad::default();
    let mut next_id: u16 = 0;
    let mut buf = [0u8; 4096];
    let mut wrong_shown = 0;
    let start = Instant::now();
    let mut swept = start;
    loop {
        let now = Instant::now();
        if now.duration_since(swept) >= DNS_SWEEP {
            let before = in_flight.len();
            in_flight.retain(|_, (_, sent)| now.duration_since(*sent) < DNS_TIMEOUT);
            load.lost += (before - in_flight.len()) as u64;
            swept = now;
        }
        let sending = now.duration_since(start) < duration;
        while sending && in_flight.len() < window {
            let index = (load.sent % records.len() as u64) as usize;
            next_id = next_id.wrapping_add(1);
            if in_flight.contains_key(&next_id) {
                continue;
            }
            queries[index][..2].copy_from_slice(&next_id.to_be_bytes());
            socket.send(&queries[index])?;
            in_flight.insert(next_id, (index, Instant::now()));
            load.sent += 1;
        }
        if in_flight.is_empty() {
            break;
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(err) => return Err(err).context("receiving a DNS answer"),
        };
        // An id not in flight is a late answer to a query already counted as lost.
        let id = (n >= 2).then(|| u16::from_be_bytes([buf[0], buf[1]]));
        let Some((index, _)) = id.and_then(|id| in_flight.remove(&id)) else {
            continue;
        };
        let (name, ip) = &records[index];
        let answer = Message::from_vec(&buf[..n]);
        if answer.as_ref().is_ok_and(|m| answer_is_right(m, name, *ip)) {
            load.correct += 1;
        } else {
            load.wrong += 1;
            if wrong_shown < 3 {
                wrong_shown += 1;
                eprintln!(
                    "- wrong DNS answer from {server} for {name} (expected {ip}): {answer:?}"
                );
            }
        }
    }
    load.elapsed = start.elapsed();
    Ok(load)
}

// ---------------------------------------------------------------------------------------------------------
// hostPort: the agent's proxy against a direct connection

struct HttpFigures {
    /// Seconds per read of the file, through the proxy and direct.
    proxy: Vec<Duration>,
    direct: Vec<Duration>,
    host_port: u16,
    pod_ip: Ipv4Addr,
}

fn http_rounds(web: &Pod, args: &Args) -> Result<HttpFigures> {
    let pod_ip = pod_ip(web)?;
    let host_port = web
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref()?.first()?.host_port)
        .context("the web Pod has a hostPort")?;
    let host_port = u16::try_from(host_port)?;
    let proxy = SocketAddr::from((Ipv4Addr::LOCALHOST, host_port));
    let direct = SocketAddr::from((pod_ip, HTTP_PORT));
    let size = args.mib * 1024 * 1024;
    // The Pod writes its file before httpd starts: wait until it serves all of it, both ways.
    let start = Instant::now();
    for addr in [direct, proxy] {
        while let Err(err) = fetch(addr, size) {
            ensure!(
                start.elapsed() < SERVE_DEADLINE,
                "http://{addr}/big did not serve {} MiB within {SERVE_DEADLINE:?}: {err:#}",
                args.mib
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!(
        "- hostPort: {} MiB from 127.0.0.1:{host_port} (berth's proxy) and {direct} (direct), {} rounds each",
        args.mib, args.rounds
    );
    let mut figures = HttpFigures {
        proxy: Vec::with_capacity(args.rounds),
        direct: Vec::with_capacity(args.rounds),
        host_port,
        pod_ip,
    };
    for _ in 0..args.rounds {
        figures.proxy.push(fetch(proxy, size)?);
        figures.direct.push(fetch(direct, size)?);
    }
    Ok(figures)
}

/// GET /big over HTTP/1.0; checks the status and that exactly `size` bytes came; returns connect → last byte.
fn fetch(addr: SocketAddr, size: u64) -> Result<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"GET /big HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let mut body: u64 = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if body == 0 && !head.ends_with(b"\r\n\r\n") {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body = (head.len() - end - 4) as u64;
                head.truncate(end + 4);
                ensure!(
                    head.starts_with(b"HTTP/1.0 200") || head.starts_with(b"HTTP/1.1 200"),
                    "{addr} answered {:?}",
                    String::from_utf8_lossy(&head[..head.len().min(40)])
                );
            }
        } else {
            body += n as u64;
        }
    }
    let elapsed = start.elapsed();
    ensure!(
        body == size,
        "{addr} sent {body} bytes of body, expected {size}"
    );
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------------------
// report

struct Figures {
    setup: Vec<Duration>,
    teardown: Vec<Duration>,
    peer_setup: Vec<Duration>,
    peer_teardown: Vec<Duration>,
    dns: DnsFigures,
    http: HttpFigures,
    mib: u64,
}

fn print_table(f: &Figures) {
    println!();
    println!("| measure | berth | peer | berth/peer |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, ours, theirs) in [
        ("Pod network setup", &f.setup, &f.peer_setup),
        ("Pod network teardown", &f.teardown, &f.peer_teardown),
    ] {
        for (p_label, p) in [("median", 0.5), ("p90", 0.9)] {
            let (b, q) = (ms(percentile(ours, p)), ms(percentile(theirs, p)));
            println!(
                "| {label}, {p_label} of {} (ms; peer: iproute2) | {b:.2} | {q:.2} | {} |",
                ours.len(),
                ratio(b, q)
            );
        }
    }
    let dns = &f.dns;
    let (b, q) = (dns.berth.qps(), dns.dnsmasq.qps());
    println!(
        "| DNS answers/s from a Pod, {} names, {} in flight (peer: dnsmasq) | {b:.0} | {q:.0} | {} |",
        dns.names,
        dns.window,
        ratio(b, q)
    );
    for (label, b, q) in [
        ("DNS queries sent", dns.berth.sent, dns.dnsmasq.sent),
        ("DNS answers right", dns.berth.correct, dns.dnsmasq.correct),
        ("DNS answers wrong", dns.berth.wrong, dns.dnsmasq.wrong),
        (
            "DNS queries lost (no answer in 200 ms)",
            dns.berth.lost,
            dns.dnsmasq.lost,
        ),
    ] {
        println!("| {label} | {b} | {q} | |");
    }
    let mib_s = |times: &[Duration]| {
        let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
        (f.mib * times.len() as u64) as f64 / total.max(f64::EPSILON)
    };
    let (b, q) = (mib_s(&f.http.proxy), mib_s(&f.http.direct));
    println!(
        "| TCP throughput, {} × {} MiB (MiB/s; berth: 127.0.0.1:{} via hostPort proxy, peer: {}:{HTTP_PORT} \
         direct) | {b:.0} | {q:.0} | {} |",
        f.http.proxy.len(),
        f.mib,
        f.http.host_port,
        f.http.pod_ip,
        ratio(b, q)
    );
    println!();
    if dns.berth.wrong + dns.dnsmasq.wrong > 0 {
        println!(
            "WRONG DNS ANSWERS: berth {}, dnsmasq {} (see above).",
            dns.berth.wrong, dns.dnsmasq.wrong
        );
    }
    println!(
        "Setup is the agent's own timing of attach (IPAM, veth pair, address, links up, default route) and \
         detach (proxies, veth, address) from its log; iproute2 does the same link work with one `ip` process \
         per step. DNS: one generator inside the client Pod's network namespace, rounds alternating between \
         the servers. Throughput: connect → last byte of an HTTP GET from the host, rounds alternating."
    );
}
