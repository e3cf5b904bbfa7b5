//! The controller's Prometheus metrics: reconciles, errors by kind, durations, and Stacks by phase. Served as
//! OpenMetrics text on `/metrics` (see `server.rs`); nothing here knows about HTTP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use berth_api::StackPhase;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
enum Phase {
    Pending,
    Progressing,
    Ready,
    Degraded,
    Failed,
    Deleting,
}

impl From<StackPhase> for Phase {
    fn from(phase: StackPhase) -> Phase {
        match phase {
            StackPhase::Pending => Phase::Pending,
            StackPhase::Progressing => Phase::Progressing,
            StackPhase::Ready => Phase::Ready,
            StackPhase::Degraded => Phase::Degraded,
            StackPhase::Failed => Phase::Failed,
            StackPhase::Deleting => Phase::Deleting,
        }
    }
}

const PHASES: [Phase; 6] = [
    Phase::Pending,
    Phase::Progressing,
    Phase::Ready,
    Phase::Degraded,
    Phase::Failed,
    Phase::Deleting,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: Phase,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    stacks: Family<PhaseLabels, Gauge>,
    /// Each Stack's last phase (by `namespace/name`), from which the `stacks` gauges are counted.
    phases: Mutex<HashMap<String, Phase>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("berth_controller");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles of Stacks started",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles of Stacks that failed, by error",
            errors.clone(),
        );
        // 1 ms to about 16 s.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.001, 2.0, 15,
        ));
        registry.register_with_unit(
            "reconcile_duration",
            "How long reconciles of Stacks take",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let stacks = Family::<PhaseLabels, Gauge>::default();
        registry.register("stacks", "Stacks by phase", stacks.clone());
        for phase in PHASES {
            stacks.get_or_create(&PhaseLabels { phase }).set(0);
        }
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            stacks,
            phases: Mutex::new(HashMap::new()),
        }
    }
}

/// Measures one reconcile from its start to its drop.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned value is dropped.
    pub fn reconcile(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile under the error's name.
    pub fn error(&self, error: &'static str) {
        self.errors.get_or_create(&ErrorLabels { error }).inc();
    }

    /// Records a Stack's phase; `None` forgets the Stack (it is gone).
    pub fn phase(&self, stack: &str, phase: Option<StackPhase>) {
        // A panic while the lock was held only interrupted a counting: the map is still usable.
        let mut phases = self
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match phase {
            Some(phase) => phases.insert(stack.to_owned(), phase.into()),
            None => phases.remove(stack),
        };
        for phase in PHASES {
            let count = phases.values().filter(|p| **p == phase).count();
            self.stacks
                .get_or_create(&PhaseLabels { phase })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_durations_are_counted() {
        let metrics = Metrics::default();
        drop(metrics.reconcile());
        drop(metrics.reconcile());
        metrics.error("Apply");
        let text = metrics.encode();
        assert!(
            text.contains("berth_controller_reconciles_total 2"),
            "{text}"
        );
        assert!(
            text.contains("berth_controller_reconcile_errors_total{error=\"Apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_controller_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }

    #[test]
    fn stacks_are_counted_by_their_latest_phase_and_forgotten_when_gone() {
        let metrics = Metrics::default();
        metrics.phase("default/a", Some(StackPhase::Progressing));
        metrics.phase("default/b", Some(StackPhase::Progressing));
        metrics.phase("default/a", Some(StackPhase::Ready));
        let text = metrics.encode();
        assert!(
            text.contains("berth_controller_stacks{phase=\"Ready\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_controller_stacks{phase=\"Progressing\"} 1"),
            "{text}"
        );
        metrics.phase("default/b", None);
        assert!(
            metrics
                .encode()
                .contains("berth_controller_stacks{phase=\"Progressing\"} 0")
        );
    }
}
