//! The kubelet's restart backoff, for crashed containers (`CrashLoopBackOff`) and failed pulls
//! (`ImagePullBackOff`): the first retry is immediate, then 10 s doubling up to 300 s, counted from the
//! failure; a container that ran for 10 minutes before it failed starts over.

use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A run at least this long forgets earlier failures.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the next retry, once a first failure has been retried.
    delay: Option<Duration>,
}

impl Backoff {
    /// When a failure at `failed_at` may be retried; call [`Backoff::retried`] when it is.
    /// `ran` is how long the failed attempt ran (zero for a failed pull).
    pub fn retry_at(&mut self, failed_at: Instant, ran: Duration) -> Instant {
        if ran >= RESET_AFTER {
            self.delay = None;
        }
        match self.delay {
            None => failed_at,
            Some(delay) => failed_at + delay,
        }
    }

    /// Records a retry: the next one waits longer.
    pub fn retried(&mut self) {
        self.delay = Some(match self.delay {
            None => INITIAL,
            Some(delay) => (delay * 2).min(MAX),
        });
    }

    /// The current wait, for messages (`back-off 20s restarting failed container`).
    pub fn delay(&self) -> Duration {
        self.delay.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retry_is_immediate_then_doubles_to_the_cap() {
        let mut backoff = Backoff::default();
        let t = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(backoff.retry_at(t, Duration::from_secs(1)) - t);
            backoff.retried();
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut backoff = Backoff::default();
        let t = Instant::now();
        for _ in 0..4 {
            backoff.retry_at(t, Duration::ZERO);
            backoff.retried();
        }
        assert_eq!(backoff.delay(), Duration::from_secs(80));
        assert_eq!(
            backoff.retry_at(t, Duration::from_secs(599)),
            t + Duration::from_secs(80)
        );
        assert_eq!(backoff.retry_at(t, RESET_AFTER), t);
        backoff.retried();
        assert_eq!(backoff.retry_at(t, Duration::ZERO), t + INITIAL);
    }
}
