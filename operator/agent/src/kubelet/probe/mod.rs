//! Kubernetes probes for one container: startup, readiness and liveness, with upstream's defaults and
//! semantics, running as background tasks. The Pod lifecycle owns the container; this module only watches it.
//!
//! Public API:
//! - [`Prober::new`]`(runtime)`, then [`Prober::spawn`]`(&container, ProbeTarget)` once the container runs. It
//!   returns a [`ProbeHandle`]; dropping the handle stops every probe task of that container.
//! - [`ProbeHandle::started`] and [`ProbeHandle::ready`] are `watch` receivers (`containerStatuses[].started` and
//!   `.ready`). Without a startup probe the container counts as started at once; without a readiness probe it is
//!   ready as soon as it is started.
//! - [`ProbeHandle::events`] yields [`ProbeEvent`]s: `Unhealthy` for each failed attempt and `Warning` for a
//!   redirect the probe did not follow (a Warning Event each, reasons `Unhealthy` and `ProbeWarning`), and
//!   `Failed` once, when the liveness or startup probe reached its failureThreshold: restart the container and
//!   spawn a new handle for the new one. Keep reading it: the channel holds 64 events, and a full channel
//!   pauses the probes until there is room again.
//! - [`Prober::check`] runs one attempt of one probe (exec, httpGet, tcpSocket, grpc).
//!
//! httpGet, tcpSocket and grpc connect from inside the Pod's network namespace (see [`connect`]), to the Pod IP
//! when there is one and to 127.0.0.1 otherwise.

mod connect;
mod exec;
mod grpc;
mod http;
mod tcp;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerPort, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::runtime::Runtime;

/// Runs probes against containers of this node.
#[derive(Clone)]
pub struct Prober {
    runtime: Runtime,
}

/// Where the container's probes go.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The runtime's container id, for exec probes.
    pub container_id: String,
    /// The Pod's network namespace (e.g. `/run/berth/netns/<pod>`); `None` for a Pod on the host's network.
    pub netns: Option<PathBuf>,
    /// The Pod IP, the default host of httpGet, tcpSocket and grpc probes; 127.0.0.1 when `None`.
    pub pod_ip: Option<IpAddr>,
    /// When the container started: `initialDelaySeconds` counts from here, as upstream (a re-adopted container
    /// is not delayed again).
    pub started_at: jiff::Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Startup => "Startup",
            Self::Readiness => "Readiness",
            Self::Liveness => "Liveness",
        })
    }
}

/// What the caller turns into Events and restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// One failed attempt; `message` reads as upstream's, e.g. `Readiness probe failed: HTTP probe failed with
    /// statuscode: 503`. A Warning Event with reason `Unhealthy`.
    Unhealthy { probe: ProbeKind, message: String },
    /// An attempt that counted as a success but deserves a look (a redirect to another host, not followed). A
    /// Warning Event with reason `ProbeWarning`.
    Warning { probe: ProbeKind, message: String },
    /// The liveness or startup probe failed `failureThreshold` times in a row: the container must be restarted.
    /// Sent once per container; the probe stops after it. `message` is the last attempt's `… probe failed: …`.
    Failed { probe: ProbeKind, message: String },
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A success with a remark (upstream's `probe.Warning`).
    Warning(String),
    Failure(String),
}

impl Outcome {
    fn succeeded(&self) -> bool {
        !matches!(self, Self::Failure(_))
    }
}

/// The probes of one running container. Dropping it stops them.
pub struct ProbeHandle {
    pub started: watch::Receiver<bool>,
    pub ready: watch::Receiver<bool>,
    pub events: mpsc::Receiver<ProbeEvent>,
    task: JoinHandle<()>,
}

impl Drop for ProbeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A probe's timing and thresholds with upstream's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Schedule {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Schedule {
    fn of(probe: &Probe, kind: ProbeKind) -> Self {
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(
                value
                    .and_then(|v| u64::try_from(v).ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(default),
            )
        };
        let count = |value: Option<i32>, default: u32| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Self {
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10),
            timeout: seconds(probe.timeout_seconds, 1),
            // API validation holds liveness and startup probes to 1.
            success_threshold: match kind {
                ProbeKind::Readiness => count(probe.success_threshold, 1),
                ProbeKind::Startup | ProbeKind::Liveness => 1,
            },
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// The parts of a container its probes need (the whole `Container` is large).
#[derive(Debug, Clone)]
struct Probes {
    ports: Vec<ContainerPort>,
    startup: Option<Probe>,
    readiness: Option<Probe>,
    liveness: Option<Probe>,
}

impl Prober {
    pub fn new(runtime: Runtime) -> Self {
        Self { runtime }
    }

    /// Starts the container's probes.
    pub fn spawn(&self, container: &Container, target: ProbeTarget) -> ProbeHandle {
        let probes = Probes {
            ports: container.ports.clone().unwrap_or_default(),
            startup: container.startup_probe.clone(),
            readiness: container.readiness_probe.clone(),
            liveness: container.liveness_probe.clone(),
        };
        let (started_tx, started) = watch::channel(probes.startup.is_none());
        let (ready_tx, ready) = watch::channel(false);
        let (events_tx, events) = mpsc::channel(64);
        let worker = Worker {
            prober: self.clone(),
            ports: probes.ports.clone(),
            target,
            events: events_tx,
        };
        let span = tracing::info_span!("probes", container = %container.name);
        let task = tokio::spawn(tracing::Instrument::instrument(
            worker.run(probes, started_tx, ready_tx),
            span,
        ));
        ProbeHandle {
            started,
            ready,
            events,
            task,
        }
    }

    /// One attempt of `probe`, bounded by its `timeoutSeconds`.
    pub async fn check(
        &self,
        probe: &Probe,
        ports: &[ContainerPort],
        target: &ProbeTarget,
    ) -> Outcome {
        let timeout = Schedule::of(probe, ProbeKind::Readiness).timeout;
        let default_host = target.pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let netns = target.netns.as_deref();
        if let Some(action) = &probe.exec {
            let command = action.command.clone().unwrap_or_default();
            self.exec(&target.container_id, command, timeout).await
        } else if let Some(action) = &probe.http_get {
            self.http_get(action, ports, target, timeout).await
        } else if let Some(action) = &probe.tcp_socket {
            tcp::probe(action, ports, default_host, netns, timeout).await
        } else if let Some(action) = &probe.grpc {
            grpc::probe(action, default_host, netns, timeout).await
        } else {
            Outcome::Failure("missing probe handler".into())
        }
    }
}

impl Prober {
    /// Runs `command` in the container, as an exec probe does (lifecycle hooks share it): exit 0 is a success,
    /// otherwise the output is the failure; killed at `timeout`.
    pub async fn exec(
        &self,
        container_id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> Outcome {
        exec::probe(&self.runtime, container_id, command, timeout).await
    }

    /// One GET as an httpGet probe does it (lifecycle hooks share it), from inside the target's network
    /// namespace, to the Pod IP unless the action names a host.
    pub async fn http_get(
        &self,
        action: &HTTPGetAction,
        ports: &[ContainerPort],
        target: &ProbeTarget,
        timeout: Duration,
    ) -> Outcome {
        let default_host = target.pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        http::probe(
            action,
            ports,
            default_host,
            target.netns.as_deref(),
            timeout,
        )
        .await
    }
}

/// A container's port by number, by name from its `ports`, or by a number written as a string, as upstream's
/// `ResolveContainerPort`.
fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("couldn't find port: {name}"))?,
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// The background half of a [`ProbeHandle`].
struct Worker {
    prober: Prober,
    ports: Vec<ContainerPort>,
    target: ProbeTarget,
    events: mpsc::Sender<ProbeEvent>,
}

/// How a probe loop ended.
enum Ended {
    /// The startup probe succeeded.
    Passed,
    /// failureThreshold reached; `Failed` was sent.
    FailedOut,
}

impl Worker {
    async fn run(self, probes: Probes, started: watch::Sender<bool>, ready: watch::Sender<bool>) {
        if let Some(probe) = &probes.startup {
            match self.probe_loop(ProbeKind::Startup, probe, None).await {
                Ended::Passed => {
                    started.send_replace(true);
                }
                Ended::FailedOut => return,
            }
        }
        let readiness = async {
            match &probes.readiness {
                Some(probe) => {
                    self.probe_loop(ProbeKind::Readiness, probe, Some(&ready))
                        .await;
                }
                None => {
                    ready.send_replace(true);
                }
            }
        };
        let liveness = async {
            if let Some(probe) = &probes.liveness {
                self.probe_loop(ProbeKind::Liveness, probe, None).await;
            }
        };
        tokio::join!(readiness, liveness);
    }

    /// Probes every period until the probe's state is settled for good: a startup success, or a startup or
    /// liveness failure. A readiness loop publishes its state to `ready` and runs until the handle is dropped.
    async fn probe_loop(
        &self,
        kind: ProbeKind,
        probe: &Probe,
        ready: Option<&watch::Sender<bool>>,
    ) -> Ended {
        let schedule = Schedule::of(probe, kind);
        let since_start = jiff::Timestamp::now()
            .duration_since(self.target.started_at)
            .unsigned_abs();
        tokio::time::sleep(schedule.initial_delay.saturating_sub(since_start)).await;
        let mut ticks = tokio::time::interval(schedule.period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Upstream's resultRun: how many attempts in a row had the last result.
        let mut last: Option<bool> = None;
        let mut run = 0u32;
        loop {
            ticks.tick().await;
            let outcome = self.prober.check(probe, &self.ports, &self.target).await;
            tracing::debug!(probe = %kind, ?outcome, "probed");
            let success = outcome.succeeded();
            let failure = match outcome {
                Outcome::Success => None,
                Outcome::Warning(message) => {
                    self.send(ProbeEvent::Warning {
                        probe: kind,
                        message: format!("{kind} probe warning: {message}"),
                    })
                    .await;
                    None
                }
                Outcome::Failure(message) => {
                    let message = format!("{kind} probe failed: {message}");
                    self.send(ProbeEvent::Unhealthy {
                        probe: kind,
                        message: message.clone(),
                    })
                    .await;
                    Some(message)
                }
            };
            if last == Some(success) {
                run = run.saturating_add(1);
            } else {
                (last, run) = (Some(success), 1);
            }
            match failure {
                Some(message) if run >= schedule.failure_threshold => match kind {
                    ProbeKind::Readiness => publish(ready, false),
                    ProbeKind::Startup | ProbeKind::Liveness => {
                        self.send(ProbeEvent::Failed {
                            probe: kind,
                            message,
                        })
                        .await;
                        return Ended::FailedOut;
                    }
                },
                None if run >= schedule.success_threshold => match kind {
                    ProbeKind::Startup => return Ended::Passed,
                    ProbeKind::Readiness => publish(ready, true),
                    ProbeKind::Liveness => {}
                },
                _ => {}
            }
        }
    }

    async fn send(&self, event: ProbeEvent) {
        // A caller that dropped the receiver only stopped listening; the probe state still matters.
        let _ = self.events.send(event).await;
    }
}

fn publish(ready: Option<&watch::Sender<bool>>, value: bool) {
    if let Some(ready) = ready {
        ready.send_replace(value);
    }
}

#[cfg(test)]
mod tests;
