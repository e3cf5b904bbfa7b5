//! Leader election on a coordination.k8s.io Lease, so that only one of several controller replicas reconciles.
//! client-go's rules: the holder renews the Lease every retry period; a candidate takes it only once it has gone
//! unrenewed for its duration, timed on the candidate's own clock from when it last saw the Lease change (clock
//! skew between replicas does not matter). Every write is a create or a replace conditional on the
//! resourceVersion, so two candidates can never both win. kube-runtime 5 has no such helper, and the crates
//! that do it for kube 5 renew with strategic merge patch, which gives up that precondition.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Who this replica is, unique among candidates (the Pod name and a random suffix).
    pub identity: String,
    /// How long the Lease is valid without a renewal (client-go's LeaseDuration).
    pub lease_duration: Duration,
    /// How long the holder keeps failing to renew before it stops leading (RenewDeadline).
    pub renew_deadline: Duration,
    /// How often candidates try and the holder renews (RetryPeriod).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The Lease `name` in `namespace`, with controller-runtime's timings and an identity unique to this process.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> LeaseConfig {
        use rand::Rng;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "berth".to_owned());
        let suffix: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(8)
            .map(|c| char::from(c).to_ascii_lowercase())
            .collect();
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: format!("{host}_{suffix}"),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate last saw of the Lease.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
}

impl Seen {
    fn of(lease: &Lease) -> Seen {
        let spec = lease.spec.as_ref();
        Seen {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renew_time: spec.and_then(|s| s.renew_time.clone()),
        }
    }
}

/// May `identity` write itself into a Lease held by `holder`, unchanged for `unchanged_for`?
fn may_take(
    holder: Option<&str>,
    identity: &str,
    unchanged_for: Duration,
    duration: Duration,
) -> bool {
    match holder {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => unchanged_for >= duration,
    }
}

/// The Lease as this candidate would write it to hold it from `now`.
fn taken(mut lease: Lease, config: &LeaseConfig, now: MicroTime) -> Lease {
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.map_or(0, |t| t + 1));
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now);
    lease
}

fn conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    seen: Option<(Seen, Instant)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            seen: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Returns once this replica holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {
                    debug!(lease = %self.config.name, "the Lease is held by another replica")
                }
                Err(err) => {
                    warn!(lease = %self.config.name, error = %err, "campaigning for the Lease")
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease; returns when another replica holds it, or when renewing has failed for the renew
    /// deadline (this replica must then stop acting as the leader).
    pub async fn hold(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return,
                Err(err) => {
                    warn!(lease = %self.config.name, error = %err, "renewing the Lease");
                    if renewed.elapsed() >= self.config.renew_deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so that a standby takes over at once (client-go's ReleaseOnCancel).
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.config.name, "released the Lease"),
            Err(err) => warn!(lease = %self.config.name, error = %err, "releasing the Lease"),
        }
    }

    /// One round of client-go's tryAcquireOrRenew: true when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: None,
            };
            let lease = taken(lease, &self.config, now);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(written) => {
                    self.seen = Some((Seen::of(&written), Instant::now()));
                    Ok(true)
                }
                Err(err) if conflict(&err) => Ok(false),
                Err(err) => Err(err),
            };
        };
        let seen = Seen::of(&lease);
        let unchanged_for = match &self.seen {
            Some((before, at)) if *before == seen => at.elapsed(),
            _ => {
                self.seen = Some((seen.clone(), Instant::now()));
                Duration::ZERO
            }
        };
        let duration = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        if !may_take(
            seen.holder.as_deref(),
            &self.config.identity,
            unchanged_for,
            duration,
        ) {
            return Ok(false);
        }
        // The resourceVersion read above makes the replace conditional: whoever writes first wins.
        let lease = taken(lease, &self.config, now);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.seen = Some((Seen::of(&written), Instant::now()));
                Ok(true)
            }
            Err(err) if conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{Call, FakeApi};

    const DURATION: Duration = Duration::from_secs(15);
    const PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/berth-system/leases/berth-controller";

    fn config() -> LeaseConfig {
        LeaseConfig {
            identity: "me".into(),
            ..LeaseConfig::new("berth-system", "berth-controller")
        }
    }

    fn lease(holder: &str, renewed: &str, rv: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "berth-controller", "namespace": "berth-system", "resourceVersion": rv},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed,
                     "acquireTime": renewed, "leaseTransitions": 3},
        })
    }

    #[test]
    fn a_free_lease_can_be_taken_and_the_holder_renews_its_own() {
        assert!(may_take(None, "me", Duration::ZERO, DURATION));
        assert!(may_take(Some(""), "me", Duration::ZERO, DURATION));
        assert!(may_take(Some("me"), "me", Duration::ZERO, DURATION));
    }

    #[test]
    fn a_lease_held_by_another_is_taken_only_once_unrenewed_for_its_duration() {
        let almost = Duration::from_secs(14);
        assert!(!may_take(Some("other"), "me", almost, DURATION));
        assert!(may_take(Some("other"), "me", DURATION, DURATION));
    }

    #[test]
    fn taking_a_lease_counts_a_transition_and_renewing_does_not() {
        let now = MicroTime(Timestamp::from_second(1_800_000_000).unwrap());
        let held: Lease =
            serde_json::from_value(lease("other", "2027-01-01T00:00:00.000000Z", "5")).unwrap();
        let mine = taken(held, &config(), now.clone());
        let spec = mine.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(now.clone()));
        assert_eq!(mine.metadata.resource_version.as_deref(), Some("5"));
        let later = MicroTime(Timestamp::from_second(1_800_000_002).unwrap());
        let renewed = taken(mine, &config(), later.clone()).spec.unwrap();
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(now));
        assert_eq!(renewed.renew_time, Some(later));
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_held_by_this_replica() {
        let (client, api) = FakeApi::new(vec![
            Call::get(PATH).fails(404),
            Call::post("/apis/coordination.k8s.io/v1/namespaces/berth-system/leases")
                .returns(lease("me", "2027-01-01T00:00:00.000000Z", "1")),
        ]);
        let mut elector = Elector::new(client, config());
        assert!(elector.try_acquire_or_renew().await.unwrap());
        let sent = api.verify().await;
        assert_eq!(sent[1].body["spec"]["holderIdentity"], "me");
        assert_eq!(sent[1].body["spec"]["leaseDurationSeconds"], 15);
    }

    #[tokio::test]
    async fn a_lease_another_replica_renews_is_not_written() {
        let (client, api) = FakeApi::new(vec![Call::get(PATH).returns(lease(
            "other",
            "2027-01-01T00:00:00.000000Z",
            "7",
        ))]);
        let mut elector = Elector::new(client, config());
        assert!(!elector.try_acquire_or_renew().await.unwrap());
        api.verify().await;
    }

    #[tokio::test]
    async fn the_holder_renews_with_a_replace_conditional_on_the_resource_version() {
        let (client, api) = FakeApi::new(vec![
            Call::get(PATH).returns(lease("me", "2027-01-01T00:00:00.000000Z", "7")),
            Call::put(PATH).returns(lease("me", "2027-01-01T00:00:02.000000Z", "8")),
        ]);
        let mut elector = Elector::new(client, config());
        assert!(elector.try_acquire_or_renew().await.unwrap());
        let sent = api.verify().await;
        assert_eq!(sent[1].body["metadata"]["resourceVersion"], "7");
        assert_eq!(sent[1].body["spec"]["leaseTransitions"], 3);
    }

    #[tokio::test]
    async fn losing_the_race_for_a_free_lease_is_not_an_error() {
        let (client, api) = FakeApi::new(vec![
            Call::get(PATH).returns(lease("", "2027-01-01T00:00:00.000000Z", "7")),
            Call::put(PATH).fails(409),
        ]);
        let mut elector = Elector::new(client, config());
        assert!(!elector.try_acquire_or_renew().await.unwrap());
        api.verify().await;
    }
}
