//! Leader election through a coordination.k8s.io Lease, with client-go's rules: a holder keeps the Lease by
//! renewing it; others may take it once it has gone unrenewed for its duration, measured on their own clock
//! from when they last saw it change (so clock skew between instances does not matter). Writes are replaces
//! conditional on the resourceVersion, so two candidates can never both win. Hand-written because the crates
//! that do this for kube 5 write with strategic merge patch and server-side apply.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info, warn};

use crate::error::api_code;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// Who this instance is, unique among candidates.
    pub identity: String,
    /// How long a Lease stays valid without renewal (client-go's LeaseDuration).
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leading (RenewDeadline).
    pub renew_deadline: Duration,
    /// How often candidates try and holders renew (RetryPeriod).
    pub retry_period: Duration,
}

impl Default for LeaderConfig {
    /// kube-controller-manager's defaults, with an identity unique to this process.
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "berth".to_owned());
        LeaderConfig {
            namespace: "kube-system".into(),
            name: "berth-controlplane".into(),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate saw of the Lease last, and when (on its own clock).
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<(Observed, Instant)>,
}

/// May `identity` write itself into a Lease held by `holder`, last seen changing `since` ago?
fn may_take(holder: Option<&str>, identity: &str, since: Duration, duration: Duration) -> bool {
    match holder {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => since >= duration,
    }
}

impl Elector {
    pub fn new(client: Client, config: LeaderConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Returns once this instance holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {
                    debug!(lease = %self.config.name, "the Lease is held by another instance")
                }
                Err(err) => {
                    warn!(lease = %self.config.name, error = %err, "campaigning for the Lease")
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease until another instance holds it or renewing has failed for the renew deadline.
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

    /// Gives the Lease up so that another instance can take it at once (client-go's ReleaseOnCancel).
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

    /// One round of client-go's tryAcquireOrRenew: true when this instance holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(err) if api_code(&err) == Some(409) => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let seen = Observed {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.clone(),
        };
        let since = match &self.observed {
            Some((before, at)) if *before == seen => at.elapsed(),
            _ => {
                self.observed = Some((seen.clone(), Instant::now()));
                Duration::ZERO
            }
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        if !may_take(
            seen.holder.as_deref(),
            &self.config.identity,
            since,
            duration,
        ) {
            return Ok(false);
        }
        if seen.holder.as_deref() != Some(self.config.identity.as_str()) {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.config.identity.clone());
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                let spec = written.spec.unwrap_or_default();
                self.observed = Some((
                    Observed {
                        holder: spec.holder_identity,
                        renew_time: spec.renew_time,
                    },
                    Instant::now(),
                ));
                Ok(true)
            }
            // Someone else wrote first: they hold it, or will be seen next round.
            Err(err) if api_code(&err) == Some(409) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    #[test]
    fn a_free_lease_can_be_taken() {
        assert!(may_take(None, "me", Duration::ZERO, DURATION));
        assert!(may_take(Some(""), "me", Duration::ZERO, DURATION));
    }

    #[test]
    fn the_holder_renews_its_own_lease() {
        assert!(may_take(Some("me"), "me", Duration::ZERO, DURATION));
    }

    #[test]
    fn a_lease_renewed_by_another_holder_is_not_taken_until_it_expires() {
        assert!(!may_take(
            Some("other"),
            "me",
            Duration::from_secs(14),
            DURATION
        ));
        assert!(may_take(Some("other"), "me", DURATION, DURATION));
    }
}
