//! Pod networking against the real kernel, as root: a bridge, veths and namespaces of each test's own (unique
//! names, a CIDR checked against the host's routes), traffic only inside them and on loopback, and every
//! bridge, veth, namespace and nftables table removed when the test ends.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_agent::net::{Error, HostPort, NetConfig, Network, PodKey, Protocol, host_veth_name};
use berth_agent::runtime::netns;

const DEADLINE: Duration = Duration::from_secs(20);

/// A unique suffix per test in this process (and per process).
fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:06x}{n:x}", (std::process::id() ^ nanos) & 0xff_ffff)
}

/// One test's network: its bridge, CIDR, state and namespaces, all removed on drop.
struct Fixture {
    config: NetConfig,
    dir: tempfile::TempDir,
    namespaces: Vec<PathBuf>,
}

impl Fixture {
    /// Sets a network up on a fresh bridge, trying CIDRs in 10.160.0.0/11 until one overlaps no host route.
    async fn new() -> (Fixture, Network) {
        let dir = tempfile::tempdir().unwrap();
        let bridge = format!("bt{}", unique());
        let mut seed = u32::from_str_radix(&unique()[..6], 16).unwrap();
        for _ in 0..32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let cidr = format!("10.{}.{}.0/24", 160 + (seed >> 8) % 90, seed % 256);
            let mut config = NetConfig::new(dir.path().join("net"));
            config.bridge = bridge.clone();
            config.cidr = cidr.parse().unwrap();
            match Network::setup(config.clone()).await {
                Ok(network) => {
                    let fixture = Fixture {
                        config,
                        dir,
                        namespaces: Vec::new(),
                    };
                    return (fixture, network);
                }
                // Nothing was created: try another range.
                Err(Error::CidrOverlap { .. }) => continue,
                Err(err) => {
                    let _ = Command::new("ip").args(["link", "del", &bridge]).status();
                    panic!("setting up {bridge}: {err}");
                }
            }
        }
        panic!("no free /24 in 10.160.0.0/11 for the test");
    }

    fn netns(&mut self) -> PathBuf {
        let path =
            netns::create(&self.dir.path().join("netns"), &format!("ns{}", unique())).unwrap();
        self.namespaces.push(path.clone());
        path
    }

    fn pod(name: &str) -> PodKey {
        PodKey {
            uid: format!("uid-{name}-{}", unique()),
            namespace: "default".into(),
            name: name.into(),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = netns::remove(ns);
        }
        // Deleting the bridge leaves the veths: those go with their namespaces (removed above) or detach.
        let _ = quiet(Command::new("ip").args(["link", "del", &self.config.bridge]));
        let table = self.config.nft_table();
        let _ = quiet(Command::new("nft").args(["delete", "table", "ip", &table]));
    }
}

/// Runs a cleanup command whose failure (nothing left to remove) is expected.
fn quiet(command: &mut Command) -> std::io::Result<std::process::ExitStatus> {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn nft_table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .unwrap()
        .status
        .success()
}

/// Runs `work` on a thread inside the network namespace.
fn in_netns<T: Send + 'static>(
    netns: &Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = std::fs::File::open(netns).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        work()
    })
}

/// A TCP echo server inside the namespace for `connections` connections; returns once it listens.
fn tcp_echo(netns: &Path, port: u16, connections: usize) -> std::thread::JoinHandle<()> {
    let (ready, listening) = std::sync::mpsc::channel();
    let server = in_netns(netns, move || {
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        ready.send(()).unwrap();
        let start = Instant::now();
        let mut served = 0;
        while served < connections && start.elapsed() < DEADLINE {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 64];
                    let n = conn.read(&mut buf).unwrap();
                    conn.write_all(&buf[..n]).unwrap();
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    listening.recv_timeout(DEADLINE).unwrap();
    server
}

/// A UDP echo server inside the namespace for `datagrams` datagrams.
fn udp_echo(netns: &Path, port: u16, datagrams: usize) -> std::thread::JoinHandle<()> {
    let (ready, listening) = std::sync::mpsc::channel();
    let server = in_netns(netns, move || {
        let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        ready.send(()).unwrap();
        for _ in 0..datagrams {
            let mut buf = [0u8; 64];
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            socket.send_to(&buf[..n], from).unwrap();
        }
    });
    listening.recv_timeout(DEADLINE).unwrap();
    server
}

fn echo_over(mut conn: TcpStream, message: &[u8]) -> Vec<u8> {
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(message).unwrap();
    let mut buf = vec![0u8; message.len()];
    conn.read_exact(&mut buf).unwrap();
    buf
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_on_the_bridge_talk_over_tcp() {
    let (mut fx, network) = Fixture::new().await;
    let (ns_a, ns_b) = (fx.netns(), fx.netns());
    let (pod_a, pod_b) = (Fixture::pod("a"), Fixture::pod("b"));
    let a = network.attach(&pod_a, &ns_a).await.unwrap();
    let b = network.attach(&pod_b, &ns_b).await.unwrap();
    assert_ne!(a.ip, b.ip);
    assert_eq!(a.gateway, fx.config.gateway());
    assert_eq!(a.prefix, 24);
    assert!(fx.config.cidr.contains(&a.ip) && fx.config.cidr.contains(&b.ip));
    let veth = host_veth_name(&pod_a.uid);
    let master = std::fs::read_link(format!("/sys/class/net/{veth}/master")).unwrap();
    assert!(
        master.ends_with(&fx.config.bridge),
        "{veth} is on {}",
        master.display()
    );

    let server = tcp_echo(&ns_a, 7000, 1);
    let target = SocketAddr::from((a.ip, 7000));
    let echoed = in_netns(&ns_b, move || {
        echo_over(
            TcpStream::connect_timeout(&target, DEADLINE).unwrap(),
            b"hello from b",
        )
    })
    .join()
    .unwrap();
    assert_eq!(echoed, b"hello from b");
    server.join().unwrap();
    // The Pod's default route is the bridge address: the host answers on the gateway.
    let gateway_listener = TcpListener::bind((fx.config.gateway(), 0)).unwrap();
    let gateway_addr = gateway_listener.local_addr().unwrap();
    in_netns(&ns_b, move || {
        TcpStream::connect_timeout(&gateway_addr, DEADLINE).unwrap()
    })
    .join()
    .unwrap();
    network.detach(&pod_a.uid).await.unwrap();
    network.detach(&pod_b.uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_reach_the_pod_and_a_taken_port_is_reported() {
    let (mut fx, network) = Fixture::new().await;
    let ns = fx.netns();
    let pod = Fixture::pod("web");
    let net = network.attach(&pod, &ns).await.unwrap();
    let tcp_server = tcp_echo(&ns, 8080, 1);
    let udp_server = udp_echo(&ns, 5353, 2);
    let (tcp_port, udp_port) = (free_port(), {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let loopback = Some(Ipv4Addr::LOCALHOST.into());
    let ports = [
        HostPort {
            protocol: Protocol::Tcp,
            host_ip: loopback,
            host_port: tcp_port,
            container_port: 8080,
        },
        HostPort {
            protocol: Protocol::Udp,
            host_ip: loopback,
            host_port: udp_port,
            container_port: 5353,
        },
    ];
    network.publish(&pod.uid, &ports, net.ip).await.unwrap();

    let conn = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    assert_eq!(echo_over(conn, b"through the proxy"), b"through the proxy");
    tcp_server.join().unwrap();

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    for message in [&b"one"[..], &b"two"[..]] {
        client.send_to(message, ("127.0.0.1", udp_port)).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], message);
        assert_eq!(from.port(), udp_port);
    }
    udp_server.join().unwrap();

    // Someone else holds a port: publishing it is an error that names it, and nothing stays bound.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let other = Fixture::pod("other");
    let other_free = free_port();
    let err = network
        .publish(
            &other.uid,
            &[
                HostPort {
                    protocol: Protocol::Tcp,
                    host_ip: loopback,
                    host_port: other_free,
                    container_port: 80,
                },
                HostPort {
                    protocol: Protocol::Tcp,
                    host_ip: loopback,
                    host_port: taken,
                    container_port: 80,
                },
            ],
            net.ip,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PortInUse { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{taken}")),
        "{err}"
    );
    TcpListener::bind(("127.0.0.1", other_free))
        .expect("the failed publish released its other port");

    // Detach stops the proxies: the ports are free again at once.
    network.detach(&pod.uid).await.unwrap();
    TcpListener::bind(("127.0.0.1", tcp_port)).expect("the TCP host port was released");
    UdpSocket::bind(("127.0.0.1", udp_port)).expect("the UDP host port was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_survive_a_restart_and_detach_releases_them() {
    let (mut fx, network) = Fixture::new().await;
    let (ns_a, ns_b) = (fx.netns(), fx.netns());
    let (pod_a, pod_b) = (Fixture::pod("a"), Fixture::pod("b"));
    let a = network.attach(&pod_a, &ns_a).await.unwrap();
    let b = network.attach(&pod_b, &ns_b).await.unwrap();
    let veth_a = host_veth_name(&pod_a.uid);
    let ifindex = std::fs::read_to_string(format!("/sys/class/net/{veth_a}/ifindex")).unwrap();

    // An agent restart: a new Network on the same state re-adopts the Pods without touching their links.
    drop(network);
    let network = Network::setup(fx.config.clone()).await.unwrap();
    assert_eq!(network.pod_ip(&pod_b.uid), Some(b.ip));
    assert_eq!(network.attach(&pod_a, &ns_a).await.unwrap(), a);
    let again = std::fs::read_to_string(format!("/sys/class/net/{veth_a}/ifindex")).unwrap();
    assert_eq!(ifindex, again, "re-adoption recreated the veth");
    let server = tcp_echo(&ns_a, 7001, 1);
    let target = SocketAddr::from((a.ip, 7001));
    let echoed = in_netns(&ns_b, move || {
        echo_over(
            TcpStream::connect_timeout(&target, DEADLINE).unwrap(),
            b"still here",
        )
    })
    .join()
    .unwrap();
    assert_eq!(echoed, b"still here");
    server.join().unwrap();

    network.detach(&pod_a.uid).await.unwrap();
    assert!(
        !link_exists(&veth_a),
        "{veth_a} is still there after detach"
    );
    assert_eq!(network.pod_ip(&pod_a.uid), None);
    network
        .detach(&pod_a.uid)
        .await
        .expect("detach is idempotent");
    let ns_c = fx.netns();
    let c = network.attach(&Fixture::pod("c"), &ns_c).await.unwrap();
    assert_ne!(c.ip, b.ip, "an address in use was handed out again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_and_teardown_removes_everything() {
    let (mut fx, network) = Fixture::new().await;
    let table = fx.config.nft_table();
    let again = Network::setup(fx.config.clone()).await.unwrap();
    let rules = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    assert_eq!(rules.matches("masquerade").count(), 1, "{rules}");
    assert!(rules.contains(&fx.config.cidr.to_string()), "{rules}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    drop(again);

    let ns = fx.netns();
    let pod = Fixture::pod("a");
    network.attach(&pod, &ns).await.unwrap();
    let veth = host_veth_name(&pod.uid);
    assert!(link_exists(&veth) && link_exists(&fx.config.bridge));
    drop(network);
    Network::teardown(&fx.config).await.unwrap();
    assert!(!link_exists(&veth), "{veth} survived teardown");
    assert!(
        !link_exists(&fx.config.bridge),
        "the bridge survived teardown"
    );
    assert!(!nft_table_exists(&table), "the nft table survived teardown");
    assert!(!fx.config.state_dir.join("ipam.json").exists());
    Network::teardown(&fx.config)
        .await
        .expect("teardown is idempotent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cidr_overlapping_a_host_route_is_refused_naming_both() {
    let (fx, _network) = Fixture::new().await;
    // The fixture's bridge route is a host route now: a second bridge over a range inside it must fail.
    let mut config = NetConfig::new(fx.dir.path().join("other"));
    config.bridge = format!("bo{}", unique());
    let inner = ipnet::Ipv4Net::new(fx.config.cidr.network(), 25).unwrap();
    config.cidr = inner;
    let err = Network::setup(config.clone()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::CidrOverlap { .. }), "{text}");
    assert!(
        text.contains(&inner.to_string()) && text.contains(&fx.config.cidr.to_string()),
        "{text}"
    );
    assert!(text.contains(&fx.config.bridge), "{text}");
    assert!(
        !link_exists(&config.bridge),
        "a refused setup created its bridge"
    );
}
