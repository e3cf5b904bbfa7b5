//! Elections against the embedded API server: two candidates, one Lease, each with its own data directory and
//! a server on a free loopback port.

use std::time::{Duration, Instant};

use berth_lease::{Elector, LeaseConfig};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::{Api, Client};

/// Generous: the debug-built server shares two cores with other builds.
const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    _dir: tempfile::TempDir,
    client: Client,
    serve: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let running = berth_apiserver::start(berth_apiserver::Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Cluster {
        _dir: dir,
        client: Client::try_from(config).unwrap(),
        serve: running.serve,
    }
}

fn candidate(name: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        identity: identity.into(),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::new("kube-system", name)
    }
}

async fn lease(client: &Client, name: &str) -> Lease {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get(name)
        .await
        .unwrap()
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

#[tokio::test]
async fn the_first_candidate_creates_the_lease_and_the_second_stands_by() {
    let cluster = cluster().await;
    let mut a = Elector::new(cluster.client.clone(), candidate("first", "a"));
    let mut b = Elector::new(cluster.client.clone(), candidate("first", "b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    let lease = lease(&cluster.client, "first").await;
    assert_eq!(holder(&lease), Some("a"));
    let spec = lease.spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.lease_duration_seconds, Some(15));
}

#[tokio::test]
async fn a_holder_that_stops_renewing_loses_the_lease_once_its_duration_has_passed() {
    let cluster = cluster().await;
    let short = LeaseConfig {
        lease_duration: Duration::from_secs(1),
        ..candidate("lapsed", "a")
    };
    let mut a = Elector::new(cluster.client.clone(), short);
    let mut b = Elector::new(cluster.client.clone(), candidate("lapsed", "b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    let start = Instant::now();
    tokio::time::timeout(DEADLINE, b.acquire())
        .await
        .expect("the standby takes over a Lease nobody renews");
    // Timed on b's own clock from its first sight of the record.
    assert!(start.elapsed() >= Duration::from_secs(1));
    let lease = lease(&cluster.client, "lapsed").await;
    assert_eq!(holder(&lease), Some("b"));
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
}

#[tokio::test]
async fn a_released_lease_is_taken_by_a_standby_at_once() {
    let cluster = cluster().await;
    let mut a = Elector::new(cluster.client.clone(), candidate("handover", "a"));
    let mut b = Elector::new(cluster.client.clone(), candidate("handover", "b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    a.release().await;
    assert_eq!(holder(&lease(&cluster.client, "handover").await), None);
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert!(!a.try_acquire_or_renew().await.unwrap());
}

#[tokio::test]
async fn releasing_a_lease_held_by_another_changes_nothing() {
    let cluster = cluster().await;
    let mut a = Elector::new(cluster.client.clone(), candidate("not-mine", "a"));
    let mut b = Elector::new(cluster.client.clone(), candidate("not-mine", "b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    let before = lease(&cluster.client, "not-mine").await;
    b.release().await;
    let after = lease(&cluster.client, "not-mine").await;
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
}

#[tokio::test]
async fn the_holder_steps_down_when_another_replica_holds_the_lease() {
    let cluster = cluster().await;
    let mut a = Elector::new(cluster.client.clone(), candidate("usurped", "a"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    let api = Api::<Lease>::namespaced(cluster.client.clone(), "kube-system");
    let mut taken = api.get("usurped").await.unwrap();
    taken.spec.as_mut().unwrap().holder_identity = Some("usurper".into());
    api.replace("usurped", &PostParams::default(), &taken)
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, a.hold())
        .await
        .expect("hold returns once another replica holds the Lease");
}

/// A client whose every request hangs, as against an API server that stopped answering.
fn unresponsive_client() -> Client {
    let service = tower::service_fn(|_: http::Request<kube::client::Body>| {
        std::future::pending::<Result<http::Response<kube::client::Body>, std::io::Error>>()
    });
    Client::new(service, "default")
}

/// A client whose every request fails, as when the API server's port is closed.
fn failing_client() -> Client {
    let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
        Err::<http::Response<kube::client::Body>, _>(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))
    });
    Client::new(service, "default")
}

#[tokio::test]
async fn the_holder_steps_down_after_the_renew_deadline_when_renewals_fail_or_hang() {
    for client in [failing_client(), unresponsive_client()] {
        let config = LeaseConfig {
            renew_deadline: Duration::from_millis(500),
            ..candidate("cut-off", "a")
        };
        let mut a = Elector::new(client, config);
        let start = Instant::now();
        tokio::time::timeout(DEADLINE, a.hold())
            .await
            .expect("hold gives up once the renew deadline passes");
        assert!(start.elapsed() >= Duration::from_millis(500));
    }
}
