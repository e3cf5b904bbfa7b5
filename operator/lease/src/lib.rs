//! Leader election on a coordination.k8s.io Lease, so that only one of several replicas acts. client-go's
//! rules: the holder renews the Lease every retry period; a candidate takes it only once it has gone unrenewed
//! for its duration, timed on the candidate's own clock from when it last saw the Lease change (clock skew
//! between replicas does not matter). Every write is a create or a replace conditional on the resourceVersion,
//! so two candidates can never both win. kube-runtime 5 has no such helper, and the crates that do it for
//! kube 5 renew with strategic merge patch or server-side apply, which give up that precondition.

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
    /// Who this replica is, unique among candidates.
    pub identity: String,
    /// How long the Lease is valid without a renewal (client-go's LeaseDuration).
    pub lease_duration: Duration,
    /// How long the holder keeps failing to renew before it stops leading (RenewDeadline).
    pub renew_deadline: Duration,
    /// How often candidates try and the holder renews (RetryPeriod).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The Lease `name` in `namespace`, with kube-controller-manager's timings and, as client-go does, an
    /// identity made of the host name and a UUID, unique to this process.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> LeaseConfig {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "berth".to_owned());
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate last saw of the Lease; a change restarts its clock.
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

/// The Lease as this candidate would write it to hold it from `now`. The metadata, resourceVersion included,
/// is kept: that is what makes the replace conditional.
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

/// The Lease as its holder writes it to give it up: no holder, and a one-second duration so that candidates
/// that still see the old record do not wait the full duration (client-go's ReleaseOnCancel).
fn released(mut lease: Lease, now: MicroTime) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
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

    /// Renews the Lease; returns when another replica holds it, or when no renewal has succeeded for the renew
    /// deadline (this replica must then stop acting as the leader). A renewal that hangs counts as failing.
    pub async fn hold(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => return,
                Ok(Err(err)) => {
                    warn!(lease = %self.config.name, error = %err, "renewing the Lease")
                }
                Err(_) => warn!(lease = %self.config.name, "renewing the Lease timed out"),
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                warn!(lease = %self.config.name, "no renewal within the renew deadline: stepping down");
                return;
            }
        }
    }

    /// Gives the Lease up, if this replica holds it, so that a standby takes over at once.
    pub async fn release(&mut self) {
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(err) => {
                warn!(lease = %self.config.name, error = %err, "reading the Lease to release it");
                return;
            }
        };
        if Seen::of(&lease).holder.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let lease = released(lease, MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.seen = Some((Seen::of(&written), Instant::now()));
                info!(lease = %self.config.name, "released the Lease");
            }
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
                // Another candidate created it first: it holds it.
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
            // Someone else wrote first: they hold it, or will be seen next round.
            Err(err) if conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn config() -> LeaseConfig {
        LeaseConfig {
            identity: "me".into(),
            ..LeaseConfig::new("berth-system", "berth-controller")
        }
    }

    fn at(second: i64) -> MicroTime {
        MicroTime(Timestamp::from_second(second).unwrap())
    }

    fn held_by(holder: &str, resource_version: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("berth-controller".into()),
                resource_version: Some(resource_version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                acquire_time: Some(at(1_700_000_000)),
                renew_time: Some(at(1_700_000_000)),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        }
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
        let now = at(1_800_000_000);
        let mine = taken(held_by("other", "5"), &config(), now.clone());
        let spec = mine.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(now.clone()));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        let later = at(1_800_000_002);
        let renewed = taken(mine, &config(), later.clone()).spec.unwrap();
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(now));
        assert_eq!(renewed.renew_time, Some(later));
    }

    #[test]
    fn a_new_lease_starts_at_zero_transitions() {
        let spec = taken(Lease::default(), &config(), at(1_800_000_000))
            .spec
            .unwrap();
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    }

    #[test]
    fn writes_keep_the_resource_version_read_so_that_they_are_conditional() {
        let renewed = taken(held_by("me", "7"), &config(), at(1_800_000_000));
        assert_eq!(renewed.metadata.resource_version.as_deref(), Some("7"));
        let given_up = released(held_by("me", "8"), at(1_800_000_001));
        assert_eq!(given_up.metadata.resource_version.as_deref(), Some("8"));
    }

    #[test]
    fn a_released_lease_has_no_holder_and_expires_within_a_second() {
        let spec = released(held_by("me", "8"), at(1_800_000_001))
            .spec
            .unwrap();
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn identities_are_unique_per_config() {
        let a = LeaseConfig::new("ns", "lease");
        let b = LeaseConfig::new("ns", "lease");
        assert_ne!(a.identity, b.identity);
    }
}
