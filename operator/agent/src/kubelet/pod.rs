//! One Pod's worker: level-triggered, it compares what the Pod asks for with what runs and takes the next
//! step — the sandbox (network namespace), init containers in order, then the containers, restarts with
//! backoff — and writes the status when it changed. It wakes when the Pod changes, when a container exits,
//! when a backoff ends, and every [`RESYNC`]. Deleting the Pod stops its containers gracefully, removes all it
//! had on the node and then the Pod object.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStatus, ObjectReference, Pod, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};
use tokio::sync::{mpsc, watch};

use super::Context;
use super::backoff::Backoff;
use super::container::{self, Placement};
use super::env::{self, Sources};
use super::lifecycle::{Hook, HookRun};
use super::lookup::Entry;
use super::probe::{ProbeEvent, ProbeHandle, ProbeTarget};
use super::record::{self, Record};
use super::sandbox;
use super::server::ContainerRef;
use super::status::{self, Inputs};
use super::volumes::PreparedVolumes;
use crate::image::{Credentials, Image, PullPolicy, no_progress};
use crate::net::{self, PodKey};
use crate::runtime::{self, ExitStatus, Status, netns};

/// A Pod is looked at again at least this often (a missed exit, a Secret that appeared).
const RESYNC: Duration = Duration::from_secs(10);
/// The first retry after a failed mount (upstream's volume manager also starts at 500 ms and doubles).
const MOUNT_RETRY: Duration = Duration::from_millis(500);
/// How long ErrImagePull shows before ImagePullBackOff.
const SHOW_PULL_ERROR: Duration = Duration::from_secs(2);
/// The grace period when neither the deletion nor the Pod names one (upstream's default).
const DEFAULT_GRACE: i64 = 30;
/// The waiting reason of a container whose hostPort is taken on the node.
const FAILED_PORT_BINDING: &str = "FailedPortBinding";
/// The name-resolution files every container of a Pod mounts, by their name in the Pod's directory.
const POD_FILES: [(&str, &str); 2] = [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")];

/// One container of the Pod and what the worker knows about it.
struct Slot {
    name: String,
    init: bool,
    index: usize,
    /// The latest attempt, once there was one.
    record: Option<Record>,
    /// How the latest attempt ended, once it did.
    exit: Option<ExitStatus>,
    started_at: Option<jiff::Timestamp>,
    running: bool,
    /// Why it is not running, when it is not (ContainerCreating, ErrImagePull, CrashLoopBackOff...).
    waiting: Option<(String, Option<String>)>,
    backoff: Backoff,
    pull_backoff: Backoff,
    pull_failed_at: Option<Instant>,
    announced_backoff: bool,
    /// The running attempt's probes (none without probes).
    probes: Option<ProbeHandle>,
}

impl Slot {
    fn new(name: &str, init: bool, index: usize) -> Slot {
        Slot {
            name: name.to_owned(),
            init,
            index,
            record: None,
            exit: None,
            started_at: None,
            running: false,
            waiting: None,
            backoff: Backoff::default(),
            pull_backoff: Backoff::default(),
            pull_failed_at: None,
            announced_backoff: false,
            probes: None,
        }
    }

    fn field_path(&self) -> String {
        let list = if self.init {
            "initContainers"
        } else {
            "containers"
        };
        format!("spec.{list}{{{}}}", self.name)
    }

    fn succeeded(&self) -> bool {
        self.exit.as_ref().is_some_and(|e| e.code == 0)
    }
}

/// Why a worker wakes besides a Pod change or a timer.
enum Wake {
    Exit,
    /// A probe result changed, or something happened that becomes an Event or a restart.
    Probe {
        id: String,
        event: Option<ProbeEvent>,
    },
}

pub(super) struct Worker {
    ctx: Arc<Context>,
    uid: String,
    updates: watch::Receiver<Option<Arc<Pod>>>,
    pod: Arc<Pod>,
    netns: Option<PathBuf>,
    pod_ip: Option<String>,
    /// The namespace is attached, the Pod's files written and its hostPorts published.
    sandbox_ready: bool,
    slots: Vec<Slot>,
    wakes: mpsc::UnboundedReceiver<Wake>,
    wake_sender: mpsc::UnboundedSender<Wake>,
    volumes: Option<PreparedVolumes>,
    volumes_refreshed: Option<Instant>,
    /// How long after a failed mount the next try comes (doubling up to [`RESYNC`]).
    mount_retry: Duration,
    written: Option<PodStatus>,
    start_time: Option<Time>,
    wake_at: Option<Instant>,
}

impl Worker {
    pub(super) fn spawn(
        ctx: Arc<Context>,
        uid: String,
        mut updates: watch::Receiver<Option<Arc<Pod>>>,
    ) {
        let Some(pod) = updates.borrow_and_update().clone() else {
            return;
        };
        let span = tracing::info_span!(
            "pod",
            pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default())
        );
        let spec = pod.spec.clone().unwrap_or_default();
        let mut slots: Vec<Slot> = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| Slot::new(&c.name, true, i))
            .collect();
        slots.extend(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| Slot::new(&c.name, false, i)),
        );
        let (wake_sender, wakes) = mpsc::unbounded_channel();
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        let worker = Worker {
            ctx,
            uid,
            updates,
            pod,
            netns: None,
            pod_ip: None,
            sandbox_ready: false,
            slots,
            wakes,
            wake_sender,
            volumes: None,
            volumes_refreshed: None,
            mount_retry: MOUNT_RETRY,
            written: None,
            start_time,
            wake_at: None,
        };
        tokio::spawn(tracing::Instrument::instrument(worker.run(), span));
    }

    async fn run(mut self) {
        self.adopt().await;
        loop {
            let latest = self.updates.borrow_and_update().clone();
            match latest {
                None => {
                    // Gone from the API (force-deleted, or while the agent was away): nothing to report to.
                    self.stop_and_remove_all(0).await;
                    purge(&self.ctx, &self.uid).await;
                    break;
                }
                Some(pod) => {
                    self.pod = pod;
                    if self.pod.metadata.deletion_timestamp.is_some() {
                        if self.terminate().await {
                            break;
                        }
                    } else {
                        self.sync().await;
                        self.publish();
                        self.write_status().await;
                    }
                }
            }
            let wake = self
                .wake_at
                .take()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + RESYNC);
            tokio::select! {
                changed = self.updates.changed() => if changed.is_err() {
                    // The agent is stopping: containers stay as they are.
                    return;
                },
                wake = self.wakes.recv() => {
                    if let Some(Wake::Probe { id, event: Some(event) }) = wake {
                        self.on_probe(id, event).await;
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        self.ctx
            .directory
            .remove(self.namespace(), self.name(), &self.uid);
        self.ctx.finish(&self.uid);
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }

    fn spec_of(&self, slot: &Slot) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        if slot.init {
            spec.init_containers.as_ref()?.get(slot.index).cloned()
        } else {
            spec.containers.get(slot.index).cloned()
        }
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// Picks up what a previous agent left: the records of this Pod and the state of their containers.
    async fn adopt(&mut self) {
        let records = match self.ctx.layout.read(&self.uid) {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(error = %err, "reading the Pod's records");
                Vec::new()
            }
        };
        let netns = self
            .ctx
            .layout
            .netns_dir()
            .join(record::compact_uid(&self.uid));
        if netns.exists() {
            self.netns = Some(netns);
        }
        for record in records {
            let Some(slot) = self
                .slots
                .iter_mut()
                .find(|s| s.name == record.container && s.init == record.init)
            else {
                continue;
            };
            match self.ctx.runtime.state(&record.id).await {
                Ok(state) => {
                    slot.started_at = state.handle.as_ref().map(|h| h.started_at);
                    match state.status {
                        Status::Running | Status::Creating => {
                            slot.running = true;
                            watch_exit(&self.ctx, &record.id, self.wake_sender.clone());
                            tracing::info!(container = %record.container, id = %record.id, "re-adopted");
                        }
                        Status::Exited(exit) => slot.exit = Some(exit),
                        Status::Unknown(reason) => slot.exit = Some(lost_exit(&reason)),
                    }
                }
                // Its create never finished: the attempt is tried again.
                Err(runtime::Error::NotFound(_)) => {}
                Err(err) => {
                    tracing::warn!(id = %record.id, error = %err, "reading a container's state")
                }
            }
            slot.record = Some(record);
        }
        // Running containers keep their address; the probes need it, and the hostPorts died with the last
        // agent.
        if self.slots.iter().any(|s| s.running) {
            self.ensure_sandbox().await;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].running {
                self.watch_probes(i);
            }
        }
        if self.start_time.is_none() && self.slots.iter().any(|s| s.record.is_some()) {
            self.start_time = Some(Time(Timestamp::now()));
        }
    }

    /// The Pod's volumes, made once (again after an agent restart: emptyDirs keep their content) and
    /// refreshed at most every [`RESYNC`] (Secrets and ConfigMaps that changed).
    async fn ensure_volumes(&mut self) -> bool {
        if self.volumes.is_some() {
            if self.volumes_refreshed.is_none_or(|t| t.elapsed() >= RESYNC) {
                self.volumes_refreshed = Some(Instant::now());
                if let Err(err) = self.ctx.volumes.refresh(&self.ctx.client, &self.pod).await {
                    tracing::warn!(error = %err, "refreshing the Pod's volumes");
                }
            }
            return true;
        }
        match self.ctx.volumes.prepare(&self.ctx.client, &self.pod).await {
            Ok(volumes) => {
                self.volumes = Some(volumes);
                self.volumes_refreshed = Some(Instant::now());
                true
            }
            Err(err) => {
                self.event(EventType::Warning, "FailedMount", None, err.to_string())
                    .await;
                // What fails is mostly a claim the provisioner binds a moment after the Pod was scheduled
                // (WaitForFirstConsumer), whose binding no Pod event announces: try again soon, backing off.
                let retry_at = Instant::now() + self.mount_retry;
                self.wake_at = Some(self.wake_at.map_or(retry_at, |w| w.min(retry_at)));
                self.mount_retry = (self.mount_retry * 2).min(RESYNC);
                false
            }
        }
    }

    /// Starts the probes of running slot `i` (a main container with probes) and forwards what they report.
    fn watch_probes(&mut self, i: usize) {
        let slot = &self.slots[i];
        let (Some(spec), Some(record)) = (self.spec_of(slot), &slot.record) else {
            return;
        };
        let has_probes = spec.startup_probe.is_some()
            || spec.readiness_probe.is_some()
            || spec.liveness_probe.is_some();
        if slot.init || !has_probes {
            return;
        }
        let target = ProbeTarget {
            container_id: record.id.clone(),
            netns: self.netns.clone(),
            pod_ip: self.pod_ip.as_deref().and_then(|ip| ip.parse().ok()),
            started_at: slot.started_at.unwrap_or_else(jiff::Timestamp::now),
        };
        let mut handle = self.ctx.prober.spawn(&spec, target);
        // The handle stays in the slot (dropping it stops the probes); its receivers feed the worker.
        let (_, placeholder) = mpsc::channel(1);
        let mut events = std::mem::replace(&mut handle.events, placeholder);
        let mut started = handle.started.clone();
        let mut ready = handle.ready.clone();
        let wake = self.wake_sender.clone();
        let id = record.id.clone();
        tokio::spawn(async move {
            // The probe worker drops its state senders as soon as it ends, right after sending its last event
            // (a liveness or startup failure): events go first, and a closed state channel is only left out,
            // so that last event is never lost. The events channel closing ends the task.
            let (mut started_open, mut ready_open) = (true, true);
            loop {
                let event = tokio::select! {
                    biased;
                    event = events.recv() => match event {
                        Some(event) => Some(event),
                        None => return,
                    },
                    changed = started.changed(), if started_open => {
                        started_open = changed.is_ok();
                        None
                    },
                    changed = ready.changed(), if ready_open => {
                        ready_open = changed.is_ok();
                        None
                    },
                };
                if wake
                    .send(Wake::Probe {
                        id: id.clone(),
                        event,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        self.slots[i].probes = Some(handle);
    }

    /// A probe's report: an Event, and for a liveness or startup failure the container's restart (its exit
    /// then goes through the restart policy like any other).
    async fn on_probe(&mut self, id: String, event: ProbeEvent) {
        let Some(i) = self
            .slots
            .iter()
            .position(|s| s.running && s.record.as_ref().is_some_and(|r| r.id == id))
        else {
            return;
        };
        let field = self.slots[i].field_path();
        match event {
            ProbeEvent::Unhealthy { message, .. } => {
                self.event(EventType::Warning, "Unhealthy", Some(field), message)
                    .await;
            }
            ProbeEvent::Warning { message, .. } => {
                self.event(EventType::Warning, "ProbeWarning", Some(field), message)
                    .await;
            }
            ProbeEvent::Failed { probe, .. } => {
                let note = format!(
                    "Container {} failed {} probe, will be restarted",
                    self.slots[i].name,
                    probe.to_string().to_lowercase()
                );
                self.event(EventType::Normal, "Killing", Some(field), note)
                    .await;
                self.slots[i].probes = None;
                let stop = self.restart_stop(i, id);
                tokio::spawn(stop);
            }
        }
    }

    /// Slot `i`'s `hook` handler, when its container has one, ready to run against its running attempt.
    fn hook_run(&self, slot: &Slot, hook: Hook) -> Option<HookRun> {
        let spec = self.spec_of(slot)?;
        let lifecycle = spec.lifecycle?;
        let handler = match hook {
            Hook::PostStart => lifecycle.post_start?,
            Hook::PreStop => lifecycle.pre_stop?,
        };
        let record = slot.record.as_ref()?;
        let mut reference: ObjectReference = self.pod.object_ref(&());
        reference.field_path = Some(slot.field_path());
        Some(HookRun {
            hook,
            handler,
            container: spec.name,
            pod: format!("{}/{}", self.namespace(), self.name()),
            ports: spec.ports.unwrap_or_default(),
            target: ProbeTarget {
                container_id: record.id.clone(),
                netns: self.netns.clone(),
                pod_ip: self.pod_ip.as_deref().and_then(|ip| ip.parse().ok()),
                started_at: slot.started_at.unwrap_or_else(jiff::Timestamp::now),
            },
            reference,
        })
    }

    /// Runs slot `i`'s postStart hook, if any, right after its container started; the worker (and so the
    /// container's Running status) waits for it, as upstream's. A failure kills the container
    /// (FailedPostStartHook), whose exit then goes through the restart policy.
    async fn post_start(&mut self, i: usize) {
        let Some(run) = self.hook_run(&self.slots[i], Hook::PostStart) else {
            return;
        };
        let Err(message) = run.run(&self.ctx.prober, Duration::MAX).await else {
            return;
        };
        tracing::warn!(id = %run.target.container_id, %message, "postStart hook failed");
        publish_event(
            &self.ctx,
            run.reference.clone(),
            EventType::Warning,
            run.hook.failed_reason(),
            message,
        )
        .await;
        self.restart_stop(i, run.target.container_id).await;
    }

    /// Stops slot `i`'s container `id` so that it restarts by policy (a failed liveness or startup probe, a
    /// failed postStart hook): its preStop hook, then SIGTERM, and SIGKILL after the Pod's grace period.
    fn restart_stop(&self, i: usize, id: String) -> impl Future<Output = ()> + Send + 'static {
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE);
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        let pre_stop = self.hook_run(&self.slots[i], Hook::PreStop);
        let ctx = self.ctx.clone();
        async move { stop_container(&ctx, &id, pre_stop, grace).await }
    }

    /// Tells the kubelet endpoint which runtime container and log file each container is, and was.
    fn publish(&self) {
        let mut containers = HashMap::new();
        for slot in &self.slots {
            let (Some(record), Some(spec)) = (&slot.record, self.spec_of(slot)) else {
                continue;
            };
            let tty = spec.tty == Some(true);
            let stdin = spec.stdin == Some(true);
            let current = ContainerRef {
                id: record.id.clone(),
                log_path: record.log_path.clone(),
                tty,
                stdin,
                running: slot.running,
            };
            let previous = (record.restart_count > 0).then(|| {
                let before = record.restart_count - 1;
                ContainerRef {
                    id: record::container_id(&self.uid, slot.init, slot.index, before),
                    log_path: self.ctx.layout.log_path(
                        self.namespace(),
                        self.name(),
                        &self.uid,
                        &slot.name,
                        before,
                    ),
                    tty,
                    stdin,
                    running: false,
                }
            });
            containers.insert(slot.name.clone(), Entry { current, previous });
        }
        self.ctx
            .directory
            .set(self.namespace(), self.name(), &self.uid, containers);
    }

    /// One pass: the sandbox, then init containers in order, then the containers.
    async fn sync(&mut self) {
        if self.start_time.is_none() {
            self.start_time = Some(Time(Timestamp::now()));
        }
        self.refresh().await;
        if !self.ensure_sandbox().await || !self.ensure_volumes().await {
            return;
        }
        let policy = self.restart_policy();
        let init_count = self.slots.iter().filter(|s| s.init).count();
        for i in 0..init_count {
            if self.slots[i].succeeded() {
                continue;
            }
            if self.slots[i].running {
                return;
            }
            if self.slots[i].exit.is_some() {
                // A failed init container: with Never the Pod has failed.
                if policy != "Never" {
                    self.restart(i).await;
                }
                return;
            }
            self.start(i).await;
            return;
        }
        if self.finished(&policy) {
            return;
        }
        for i in init_count..self.slots.len() {
            let slot = &self.slots[i];
            if slot.running {
                continue;
            }
            match &slot.exit {
                Some(exit) => {
                    let again = match policy.as_str() {
                        "Always" => true,
                        "OnFailure" => exit.code != 0,
                        _ => false,
                    };
                    if again {
                        self.restart(i).await;
                    }
                }
                None => self.start(i).await,
            }
        }
    }

    /// With Never or OnFailure, a Pod whose containers have all ended as the policy accepts is done.
    fn finished(&self, policy: &str) -> bool {
        let main = || self.slots.iter().filter(|s| !s.init);
        match policy {
            "Never" => main().all(|s| s.exit.is_some()),
            "OnFailure" => main().all(|s| s.succeeded()),
            _ => false,
        }
    }

    /// Reads how each running container is doing (exits are noticed here, woken by the exit watchers).
    async fn refresh(&mut self) {
        for slot in &mut self.slots {
            let Some(record) = &slot.record else {
                continue;
            };
            if !slot.running {
                continue;
            }
            match self.ctx.runtime.state(&record.id).await {
                Ok(state) => match state.status {
                    Status::Running | Status::Creating => {}
                    Status::Exited(exit) => {
                        slot.running = false;
                        slot.probes = None;
                        slot.exit = Some(exit);
                    }
                    Status::Unknown(reason) => {
                        slot.running = false;
                        slot.probes = None;
                        slot.exit = Some(lost_exit(&reason));
                    }
                },
                Err(runtime::Error::NotFound(_)) => {
                    slot.running = false;
                    slot.probes = None;
                    slot.exit = Some(lost_exit("the container disappeared"));
                }
                Err(err) => {
                    tracing::warn!(id = %record.id, error = %err, "reading a container's state")
                }
            }
        }
    }

    /// The Pod's sandbox: its network namespace attached to the node's bridge (the address is the Pod IP),
    /// the hosts and resolv.conf files its containers mount, and its hostPorts published. A host-network
    /// Pod has no namespace of its own: it shares the agent's and the host's address. A step that fails is
    /// tried again on the next pass; a restarted agent goes through them again (attach keeps the address).
    async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox_ready {
            return true;
        }
        let host_network = sandbox::host_network(&self.pod);
        if host_network {
            self.pod_ip = Some(self.ctx.host_ip.clone());
        } else if !self.ensure_netns().await || !self.attach().await {
            return false;
        }
        if !self.write_pod_files().await || !self.publish_ports().await {
            return false;
        }
        self.sandbox_ready = true;
        true
    }

    async fn ensure_netns(&mut self) -> bool {
        if self.netns.is_some() {
            return true;
        }
        let dir = self.ctx.layout.netns_dir();
        let name = record::compact_uid(&self.uid);
        let made = tokio::task::spawn_blocking(move || netns::create(&dir, &name)).await;
        match made {
            Ok(Ok(path)) => {
                self.netns = Some(path);
                true
            }
            Ok(Err(err)) => {
                self.sandbox_failed(format!("creating the network namespace: {err}"))
                    .await;
                false
            }
            Err(err) => {
                tracing::error!(error = %err, "creating the network namespace panicked");
                false
            }
        }
    }

    /// Connects the namespace to the bridge; the address becomes `status.podIP`.
    async fn attach(&mut self) -> bool {
        if self.pod_ip.is_some() {
            return true;
        }
        let Some(netns) = self.netns.clone() else {
            return false;
        };
        let key = PodKey {
            uid: self.uid.clone(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
        };
        match self.ctx.network.attach(&key, &netns).await {
            Ok(network) => {
                self.pod_ip = Some(network.ip.to_string());
                true
            }
            Err(err) => {
                self.sandbox_failed(format!("attaching the Pod to the network: {err}"))
                    .await;
                false
            }
        }
    }

    /// `/etc/hosts` and `/etc/resolv.conf` in the Pod's directory, as the kubelet manages them.
    async fn write_pod_files(&mut self) -> bool {
        let host_resolv = tokio::fs::read_to_string("/etc/resolv.conf")
            .await
            .unwrap_or_default();
        let host_hosts = tokio::fs::read_to_string("/etc/hosts")
            .await
            .unwrap_or_default();
        let resolv = match sandbox::resolv_conf(&self.pod, &host_resolv, &self.ctx.cluster_dns) {
            Ok(text) => text,
            Err(message) => {
                self.event(EventType::Warning, "DNSConfigForming", None, message)
                    .await;
                return false;
            }
        };
        let pod_ip = self.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
        let hosts =
            sandbox::hosts_file(&self.pod, pod_ip, &host_hosts, &self.ctx.cluster_dns.domain);
        for (name, text) in [("hosts", hosts), ("resolv.conf", resolv)] {
            let path = self.ctx.layout.pod_file(&self.uid, name);
            if let Err(err) = sandbox::write_in_place(&path, &text) {
                self.sandbox_failed(format!("writing {}: {err}", path.display()))
                    .await;
                return false;
            }
        }
        true
    }

    /// The containers' hostPorts, proxied from the host to the Pod's address. A port someone else holds is
    /// an Event and the waiting reason of the containers that ask for it, until it is free.
    async fn publish_ports(&mut self) -> bool {
        let ports = match sandbox::host_ports(&self.pod) {
            Ok(ports) => ports,
            Err(message) => {
                self.sandbox_failed(message).await;
                return false;
            }
        };
        if ports.is_empty() {
            return true;
        }
        let Some(ip) = self.pod_ip.as_deref().and_then(|ip| ip.parse().ok()) else {
            return false;
        };
        match self.ctx.network.publish(&self.uid, &ports, ip).await {
            Ok(()) => {
                for slot in &mut self.slots {
                    if slot
                        .waiting
                        .as_ref()
                        .is_some_and(|(reason, _)| reason == FAILED_PORT_BINDING)
                    {
                        slot.waiting = None;
                    }
                }
                true
            }
            Err(err) => {
                let message = err.to_string();
                if let net::Error::PortInUse { protocol, addr, .. } = &err {
                    let spec = self.pod.spec.clone().unwrap_or_default();
                    for slot in self.slots.iter_mut().filter(|s| !s.init) {
                        let asks = spec
                            .containers
                            .get(slot.index)
                            .and_then(|c| c.ports.as_ref())
                            .is_some_and(|ports| {
                                ports.iter().any(|p| {
                                    p.host_port == Some(i32::from(addr.port()))
                                        && p.protocol.as_deref().unwrap_or("TCP")
                                            == protocol.to_string()
                                })
                            });
                        if asks {
                            slot.waiting =
                                Some((FAILED_PORT_BINDING.into(), Some(message.clone())));
                        }
                    }
                }
                self.sandbox_failed(format!("publishing host ports: {message}"))
                    .await;
                false
            }
        }
    }

    async fn sandbox_failed(&self, message: String) {
        tracing::warn!(%message, "pod sandbox");
        self.event(
            EventType::Warning,
            "FailedCreatePodSandBox",
            None,
            format!("Failed to create pod sandbox: {message}"),
        )
        .await;
    }

    /// Restarts slot `i` once its backoff allows, or reports CrashLoopBackOff until then.
    async fn restart(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(exit) = slot.exit.clone() else {
            return;
        };
        let ran = slot
            .started_at
            .map(|s| exit.finished_at.duration_since(s).unsigned_abs())
            .unwrap_or_default();
        let ago = Timestamp::now()
            .duration_since(exit.finished_at)
            .unsigned_abs();
        let failed_at = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
        let retry_at = slot.backoff.retry_at(failed_at, ran);
        if Instant::now() < retry_at {
            let delay = slot.backoff.delay();
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                humanize(delay),
                slot.name,
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                self.uid
            );
            slot.waiting = Some(("CrashLoopBackOff".into(), Some(message)));
            self.wake_at = Some(self.wake_at.map_or(retry_at, |w| w.min(retry_at)));
            if !self.slots[i].announced_backoff {
                self.slots[i].announced_backoff = true;
                let field = self.slots[i].field_path();
                let note = format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    self.slots[i].name,
                    self.name(),
                    self.namespace(),
                    self.uid
                );
                self.event(EventType::Warning, "BackOff", Some(field), note)
                    .await;
            }
            return;
        }
        slot.backoff.retried();
        slot.announced_backoff = false;
        self.start(i).await;
    }

    /// Starts the next attempt of slot `i`: image, environment, config, runtime.
    async fn start(&mut self, i: usize) {
        let Some(spec) = self.spec_of(&self.slots[i]) else {
            return;
        };
        let field = self.slots[i].field_path();
        let image_name = spec.image.clone().unwrap_or_default();
        // The previous attempt's end becomes lastState; its runtime container goes (its log stays).
        let (restart_count, last_state) = match (&self.slots[i].record, &self.slots[i].exit) {
            (Some(record), Some(exit)) => (
                record.restart_count + 1,
                Some(terminated_state(exit, self.slots[i].started_at, &record.id)),
            ),
            (Some(record), None) => (record.restart_count, record.last_state.clone()),
            (None, _) => (0, None),
        };
        if let (Some(record), Some(_)) = (&self.slots[i].record, &self.slots[i].exit) {
            match self.ctx.runtime.remove(&record.id).await {
                Ok(()) | Err(runtime::Error::NotFound(_)) => {}
                Err(err) => {
                    tracing::warn!(id = %record.id, error = %err, "removing the previous attempt")
                }
            }
        }
        if self.slots[i].waiting.is_none() || self.slots[i].exit.is_some() {
            self.slots[i].waiting = Some(("ContainerCreating".into(), None));
            self.write_status().await;
        }

        let image = match self.pull(i, &spec, &image_name, &field).await {
            Some(image) => image,
            None => return,
        };
        let id = record::container_id(
            &self.uid,
            self.slots[i].init,
            self.slots[i].index,
            restart_count,
        );
        let log_path = self.ctx.layout.log_path(
            self.namespace(),
            self.name(),
            &self.uid,
            &spec.name,
            restart_count,
        );
        let config = match self
            .container_config(&spec, &image, &id, log_path.clone())
            .await
        {
            Ok(config) => config,
            Err(message) => {
                self.slots[i].waiting =
                    Some(("CreateContainerConfigError".into(), Some(message.clone())));
                self.event(
                    EventType::Warning,
                    "Failed",
                    Some(field),
                    format!("Error: {message}"),
                )
                .await;
                return;
            }
        };
        let record = Record {
            namespace: self.namespace().to_owned(),
            pod: self.name().to_owned(),
            uid: self.uid.clone(),
            container: spec.name.clone(),
            init: self.slots[i].init,
            id: id.clone(),
            restart_count,
            image: image_name.clone(),
            image_id: image_id(&image),
            log_path,
            last_state,
        };
        if let Err(err) = self.ctx.layout.write(&record) {
            let message = format!("recording the container: {err}");
            self.slots[i].waiting = Some(("CreateContainerError".into(), Some(message)));
            return;
        }
        let slot = &mut self.slots[i];
        slot.record = Some(record);
        slot.exit = None;
        slot.running = false;
        slot.probes = None;
        match self.ctx.runtime.create(config).await {
            Ok(handle) => {
                let slot = &mut self.slots[i];
                slot.running = true;
                slot.started_at = Some(handle.started_at);
                slot.waiting = None;
                watch_exit(&self.ctx, &id, self.wake_sender.clone());
                self.event(
                    EventType::Normal,
                    "Created",
                    Some(field.clone()),
                    format!("Created container {}", spec.name),
                )
                .await;
                self.event(
                    EventType::Normal,
                    "Started",
                    Some(field),
                    format!("Started container {}", spec.name),
                )
                .await;
                self.post_start(i).await;
                self.watch_probes(i);
            }
            Err(err) => {
                let message = err.to_string();
                let slot = &mut self.slots[i];
                // Counted as a failed run, so that the restart backoff applies.
                slot.exit = Some(ExitStatus {
                    code: 128,
                    signal: None,
                    oom_killed: false,
                    finished_at: jiff::Timestamp::now(),
                });
                slot.started_at = Some(jiff::Timestamp::now());
                slot.waiting = Some(("RunContainerError".into(), Some(message.clone())));
                self.event(
                    EventType::Warning,
                    "Failed",
                    Some(field),
                    format!("Error: {message}"),
                )
                .await;
            }
        }
    }

    /// The image of slot `i`, pulled as its policy says; ErrImagePull then ImagePullBackOff on failure.
    async fn pull(
        &mut self,
        i: usize,
        spec: &Container,
        image_name: &str,
        field: &str,
    ) -> Option<Image> {
        // After a failed pull: ErrImagePull until the next pass, then ImagePullBackOff until the backoff ends.
        if let Some(failed_at) = self.slots[i].pull_failed_at {
            let retry_at = failed_at + self.slots[i].pull_backoff.delay();
            let shown = failed_at + SHOW_PULL_ERROR;
            if Instant::now() < shown {
                self.wake_at = Some(self.wake_at.map_or(shown, |w| w.min(shown)));
                return None;
            }
            if Instant::now() < retry_at {
                let message = format!("Back-off pulling image \"{image_name}\"");
                let entering = self.slots[i]
                    .waiting
                    .as_ref()
                    .is_none_or(|(reason, _)| reason != "ImagePullBackOff");
                self.slots[i].waiting = Some(("ImagePullBackOff".into(), Some(message.clone())));
                self.wake_at = Some(self.wake_at.map_or(retry_at, |w| w.min(retry_at)));
                if entering {
                    self.event(
                        EventType::Normal,
                        "BackOff",
                        Some(field.to_owned()),
                        message,
                    )
                    .await;
                }
                return None;
            }
        }
        let policy = match PullPolicy::for_container(spec.image_pull_policy.as_deref(), image_name)
        {
            Ok(policy) => policy,
            Err(err) => {
                self.slots[i].waiting = Some(("InvalidImageName".into(), Some(err.to_string())));
                return None;
            }
        };
        let credentials = self.credentials().await;
        let present = self.ctx.images.resolve(image_name).ok().flatten();
        let pulling = present.is_none() || policy == PullPolicy::Always;
        if pulling && policy != PullPolicy::Never {
            self.event(
                EventType::Normal,
                "Pulling",
                Some(field.to_owned()),
                format!("Pulling image \"{image_name}\""),
            )
            .await;
        }
        let began = Instant::now();
        match self
            .ctx
            .images
            .ensure(image_name, policy, &credentials, &no_progress)
            .await
        {
            Ok(image) => {
                self.slots[i].pull_failed_at = None;
                self.slots[i].pull_backoff = Backoff::default();
                let note = if pulling {
                    format!(
                        "Successfully pulled image \"{image_name}\" in {:.3}s",
                        began.elapsed().as_secs_f64()
                    )
                } else {
                    format!("Container image \"{image_name}\" already present on machine")
                };
                self.event(EventType::Normal, "Pulled", Some(field.to_owned()), note)
                    .await;
                Some(image)
            }
            Err(err) => {
                let reason = err.kube_reason();
                let message = format!("Failed to pull image \"{image_name}\": {err}");
                self.slots[i].waiting = Some((reason.into(), Some(message.clone())));
                self.slots[i].pull_failed_at = Some(Instant::now());
                self.slots[i].pull_backoff.retried();
                // The error shows for a moment before the backoff does.
                let next = Instant::now() + SHOW_PULL_ERROR;
                self.wake_at = Some(self.wake_at.map_or(next, |w| w.min(next)));
                self.event(
                    EventType::Warning,
                    "Failed",
                    Some(field.to_owned()),
                    message,
                )
                .await;
                self.event(
                    EventType::Warning,
                    "Failed",
                    Some(field.to_owned()),
                    format!("Error: {reason}"),
                )
                .await;
                None
            }
        }
    }

    /// The Pod's imagePullSecrets as registry credentials; a missing or bad one is skipped, as upstream.
    async fn credentials(&self) -> Credentials {
        let mut credentials = Credentials::none();
        let names = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        for name in names {
            let secret = match api.get_opt(&name.name).await {
                Ok(Some(secret)) => secret,
                Ok(None) => {
                    tracing::warn!(secret = %name.name, "imagePullSecret not found; pulling without it");
                    continue;
                }
                Err(err) => {
                    tracing::warn!(secret = %name.name, error = %err, "reading an imagePullSecret");
                    continue;
                }
            };
            let data = secret.data.unwrap_or_default();
            let json = data
                .get(".dockerconfigjson")
                .or_else(|| data.get(".dockercfg"));
            if let Some(json) = json
                && let Err(err) = credentials.add_docker_config(&json.0)
            {
                tracing::warn!(secret = %name.name, error = %err, "an imagePullSecret is not docker config JSON");
            }
        }
        credentials
    }

    /// Environment (with the Secrets and ConfigMaps it names) and the runtime config.
    async fn container_config(
        &self,
        spec: &Container,
        image: &Image,
        id: &str,
        log_path: PathBuf,
    ) -> Result<runtime::ContainerConfig, String> {
        let refs = env::references(&[spec]);
        let mut sources = Sources {
            pod_ip: self.pod_ip.clone(),
            host_ip: self.ctx.host_ip.clone(),
            node_cpu_milli: self.ctx.machine.cpu_milli(),
            node_memory: i128::from(self.ctx.machine.memory_bytes),
            ..Sources::default()
        };
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        for name in refs.secrets {
            match secrets.get_opt(&name).await {
                Ok(Some(secret)) => {
                    sources.secrets.insert(name, secret);
                }
                Ok(None) => {}
                Err(err) => return Err(format!("reading secret \"{name}\": {err}")),
            }
        }
        let maps: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        for name in refs.config_maps {
            match maps.get_opt(&name).await {
                Ok(Some(map)) => {
                    sources.config_maps.insert(name, map);
                }
                Ok(None) => {}
                Err(err) => return Err(format!("reading configmap \"{name}\": {err}")),
            }
        }
        let environment = env::resolve(&self.pod, spec, &sources).map_err(|e| e.to_string())?;
        let mut mounts = match &self.volumes {
            Some(volumes) => volumes.mounts(spec).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        // A container that mounts its own /etc/hosts or /etc/resolv.conf keeps it.
        for (name, destination) in POD_FILES {
            if !mounts
                .iter()
                .any(|m| m.destination == Path::new(destination))
            {
                mounts.push(runtime::Mount {
                    source: self.ctx.layout.pod_file(&self.uid, name),
                    destination: destination.into(),
                    read_only: false,
                });
            }
        }
        let netns = if sandbox::host_network(&self.pod) {
            Some(sandbox::host_netns())
        } else {
            self.netns.clone()
        };
        container::config(
            &self.pod,
            spec,
            image,
            Placement {
                id: id.to_owned(),
                netns,
                log_path,
                env: environment,
                mounts,
                pids_limit: self.ctx.pids_limit,
            },
        )
    }

    /// The status from the slots; written through `pods/status` when it differs from the last one written.
    async fn write_status(&mut self) {
        let init_waiting = self.slots.iter().any(|s| s.init && !s.succeeded());
        let statuses: Vec<ContainerStatus> = self
            .slots
            .iter()
            .map(|slot| {
                let image = self.spec_of(slot).and_then(|c| c.image).unwrap_or_default();
                container_status(slot, image, init_waiting)
            })
            .collect();
        let (init, containers): (Vec<_>, Vec<_>) = statuses
            .into_iter()
            .zip(self.slots.iter().map(|s| s.init))
            .partition(|(_, init)| *init);
        let init: Vec<ContainerStatus> = init.into_iter().map(|(s, _)| s).collect();
        let containers: Vec<ContainerStatus> = containers.into_iter().map(|(s, _)| s).collect();
        let policy = self.restart_policy();
        let previous = self.pod.status.clone();
        let inputs = Inputs {
            restart_policy: &policy,
            init: &init,
            containers: &containers,
            sandbox_ready: self.sandbox_ready,
            pod_ip: self.pod_ip.clone(),
            host_ip: self.ctx.host_ip.clone(),
            start_time: self.start_time.clone(),
            previous: previous.as_ref(),
        };
        let status = status::pod_status(&inputs, Timestamp::now());
        if self.written.as_ref() == Some(&status) {
            return;
        }
        match write_pod_status(
            &self.ctx.client,
            self.namespace(),
            self.name(),
            &self.uid,
            &status,
        )
        .await
        {
            Ok(pod) => {
                self.pod = Arc::new(pod);
                self.written = Some(status);
            }
            // The watch tells this worker to clean up; its status is nobody's any more.
            Err(err) if status::pod_replaced(&err) => {
                tracing::debug!(error = %err, "the Pod is gone or replaced: status not written");
            }
            Err(err) => tracing::warn!(error = %err, "writing the Pod status"),
        }
    }

    /// The Pod is being deleted: stop everything gracefully, clean up, then delete the object. True once done.
    async fn terminate(&mut self) -> bool {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(DEFAULT_GRACE);
        self.stop_and_remove_all(grace).await;
        purge(&self.ctx, &self.uid).await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(self.name(), &params).await {
            Ok(_) => true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => true,
            Err(err) => {
                tracing::warn!(error = %err, "deleting the Pod object; retrying");
                false
            }
        }
    }

    /// The Pod is going: stops every running container at once (preStop hook, SIGTERM, the grace period,
    /// SIGKILL) and removes each one's runtime state as soon as it has stopped. The Killing Events go out
    /// beside the stops rather than before them: under a burst of deletions the API writes queue up, and the
    /// containers (and their state, which `berth down` would otherwise find) must not wait behind them.
    async fn stop_and_remove_all(&mut self, grace: i64) {
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        let mut stops = Vec::new();
        for slot in &self.slots {
            let (Some(record), true) = (&slot.record, slot.running) else {
                continue;
            };
            let pre_stop = self.hook_run(slot, Hook::PreStop);
            let announce = self.event(
                EventType::Normal,
                "Killing",
                Some(slot.field_path()),
                format!("Stopping container {}", slot.name),
            );
            let ctx = self.ctx.clone();
            let id = record.id.clone();
            stops.push(async move {
                let stop = async {
                    stop_container(&ctx, &id, pre_stop, grace).await;
                    remove_container(&ctx.runtime, &id).await
                };
                futures::future::join(announce, stop).await
            });
        }
        futures::future::join_all(stops).await;
        for slot in &mut self.slots {
            slot.running = false;
        }
    }

    async fn event(&self, type_: EventType, reason: &str, field: Option<String>, note: String) {
        let mut reference: ObjectReference = self.pod.object_ref(&());
        reference.field_path = field;
        publish_event(&self.ctx, reference, type_, reason, note).await;
    }
}

/// An Event about `reference` (the Pod, or one of its containers by field path).
async fn publish_event(
    ctx: &Context,
    reference: ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(error = %err, reason, "publishing an event");
    }
}

/// Writes `status` to the Pod `namespace/name` through `pods/status`, only while it is the Pod with `uid`.
async fn write_pod_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: &str,
    status: &PodStatus,
) -> Result<Pod, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let patch = status::patch(uid, status);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// The preStop hook (exec, httpGet or sleep, within the grace period: its time counts), then the runtime's
/// SIGTERM, the rest of the grace period, SIGKILL. A failing hook is a FailedPreStopHook Event; the stop goes on.
async fn stop_container(ctx: &Context, id: &str, pre_stop: Option<HookRun>, grace: Duration) {
    let began = Instant::now();
    if let Some(run) = pre_stop
        && let Err(message) = run.run(&ctx.prober, grace).await
    {
        tracing::warn!(%id, %message, "preStop hook failed");
        let reason = run.hook.failed_reason();
        publish_event(ctx, run.reference, EventType::Warning, reason, message).await;
    }
    let left = grace.saturating_sub(began.elapsed());
    match ctx.runtime.stop(id, left).await {
        Ok(_) | Err(runtime::Error::NotFound(_)) | Err(runtime::Error::NotRunning(_)) => {}
        Err(err) => tracing::warn!(%id, error = %err, "stopping a container"),
    }
}

/// How often removing a container is tried before it is left to the next agent (or `berth down`).
const REMOVE_ATTEMPTS: u32 = 3;

/// Removes a container's runtime state (killing it if it still runs), trying again after a failure (a
/// cgroup still busy under load); true once it is gone.
async fn remove_container(runtime: &runtime::Runtime, id: &str) -> bool {
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=REMOVE_ATTEMPTS {
        match runtime.remove(id).await {
            Ok(()) | Err(runtime::Error::NotFound(_)) => return true,
            Err(err) => {
                tracing::warn!(%id, attempt, error = %err, "removing a container");
                if attempt < REMOVE_ATTEMPTS {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
    false
}

/// Wakes the worker when the container exits.
fn watch_exit(ctx: &Arc<Context>, id: &str, wake: mpsc::UnboundedSender<Wake>) {
    let runtime = ctx.runtime.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let _ = runtime.wait(&id).await;
        let _ = wake.send(Wake::Exit);
    });
}

/// A shim that died without recording the exit: reported as an error exit.
fn lost_exit(reason: &str) -> ExitStatus {
    tracing::warn!(reason, "a container's shim is gone without an exit record");
    ExitStatus {
        code: 255,
        signal: None,
        oom_killed: false,
        finished_at: jiff::Timestamp::now(),
    }
}

fn time(t: jiff::Timestamp) -> Time {
    Time(Timestamp::from_nanosecond(t.as_nanosecond()).unwrap_or_else(|_| Timestamp::now()))
}

fn terminated_state(
    exit: &ExitStatus,
    started_at: Option<jiff::Timestamp>,
    id: &str,
) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: exit.code,
        signal: exit.signal,
        reason: Some(status::exit_reason(exit.code, exit.oom_killed).to_owned()),
        started_at: started_at.map(time),
        finished_at: Some(time(exit.finished_at)),
        container_id: Some(format!("berth://{id}")),
        message: None,
    }
}

fn image_id(image: &Image) -> String {
    let repository = image
        .reference
        .rsplit_once('@')
        .map(|(r, _)| r)
        .unwrap_or(&image.reference);
    // `repo:tag` → `repo`: the tag is after the last ':' that follows the last '/'.
    let repository = match repository.rsplit_once('/') {
        Some((head, tail)) => match tail.split_once(':') {
            Some((name, _)) => format!("{head}/{name}"),
            None => repository.to_owned(),
        },
        None => repository
            .split(':')
            .next()
            .unwrap_or(repository)
            .to_owned(),
    };
    format!("{repository}@{}", image.digest)
}

fn container_status(slot: &Slot, image: String, init_waiting: bool) -> ContainerStatus {
    let record = slot.record.as_ref();
    let state = if slot.running {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: slot.started_at.map(time),
            }),
            ..ContainerState::default()
        }
    } else if let Some((reason, message)) = &slot.waiting {
        status::waiting(reason, message.clone())
    } else if let (Some(exit), Some(record)) = (&slot.exit, record) {
        ContainerState {
            terminated: Some(terminated_state(exit, slot.started_at, &record.id)),
            ..ContainerState::default()
        }
    } else if !slot.init && init_waiting {
        status::waiting("PodInitializing", None)
    } else {
        status::waiting("ContainerCreating", None)
    };
    // While waiting to restart, the attempt that ended is the last state.
    let last_state = match (&slot.exit, record, slot.running || slot.waiting.is_none()) {
        (Some(exit), Some(record), false) => {
            Some(terminated_state(exit, slot.started_at, &record.id))
        }
        _ => record.and_then(|r| r.last_state.clone()),
    }
    .map(|terminated| ContainerState {
        terminated: Some(terminated),
        ..ContainerState::default()
    });
    let probe = |pick: fn(&ProbeHandle) -> bool| slot.probes.as_ref().is_none_or(pick);
    let started = slot.running && probe(|p| *p.started.borrow());
    let ready = if slot.init {
        slot.succeeded()
    } else {
        slot.running && probe(|p| *p.ready.borrow())
    };
    ContainerStatus {
        name: slot.name.clone(),
        image,
        image_id: record.map(|r| r.image_id.clone()).unwrap_or_default(),
        container_id: record
            .filter(|_| slot.running || slot.exit.is_some())
            .map(|r| format!("berth://{}", r.id)),
        restart_count: record.map_or(0, |r| r.restart_count),
        ready,
        started: Some(started),
        state: Some(state),
        last_state,
        ..ContainerStatus::default()
    }
}

fn humanize(delay: Duration) -> String {
    let secs = delay.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m0s", secs / 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// Removes everything a Pod had on this node: its containers (any left running are killed), its address,
/// veth and host ports, its network namespace, its records and its logs.
/// A container that still cannot be removed after a few attempts keeps the Pod's records, so that the next
/// agent (its first list purges the Pods the API no longer has) tries again: without records nothing would.
pub(super) async fn purge(ctx: &Context, uid: &str) {
    let records = match ctx.layout.read(uid) {
        Ok(records) => records,
        Err(err) => {
            tracing::error!(%uid, error = %err, "reading the Pod's records: its containers are left");
            return;
        }
    };
    let mut left = Vec::new();
    for record in &records {
        if !remove_container(&ctx.runtime, &record.id).await {
            left.push(record.id.clone());
        }
    }
    if let Err(err) = ctx.volumes.cleanup(uid).await {
        tracing::warn!(error = %err, "removing the Pod's volumes");
    }
    if let Err(err) = ctx.network.detach(uid).await {
        tracing::warn!(error = %err, "detaching the Pod from the network");
    }
    let netns_path = ctx.layout.netns_dir().join(record::compact_uid(uid));
    if let Err(err) = netns::remove(&netns_path) {
        tracing::warn!(error = %err, "removing the network namespace");
    }
    let mut dirs: HashSet<PathBuf> = records
        .iter()
        .map(|r| ctx.layout.pod_logs(&r.namespace, &r.pod, &r.uid))
        .collect();
    if left.is_empty() {
        dirs.insert(ctx.layout.pod(uid));
    } else {
        tracing::error!(%uid, containers = ?left, "containers could not be removed; their records stay for the next agent");
    }
    for dir in dirs {
        match tokio::fs::remove_dir_all(&dir).await {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), error = %err, "removing a Pod directory");
            }
            _ => {}
        }
    }
}

/// After the first list: Pods with records on this node that the API no longer has (deleted while the agent
/// was away) are purged.
pub(super) fn purge_orphans(ctx: Arc<Context>, listed: HashSet<String>) {
    tokio::spawn(async move {
        let uids = match ctx.layout.pod_uids() {
            Ok(uids) => uids,
            Err(err) => {
                tracing::warn!(error = %err, "listing the Pod records");
                return;
            }
        };
        for uid in uids.into_iter().filter(|u| !listed.contains(u)) {
            tracing::info!(%uid, "removing what a Pod deleted while the agent was away left");
            purge(&ctx, &uid).await;
        }
        // Then containers that no Pod of the API and no record owns (left by an agent whose purge failed
        // before records were kept): nothing else would ever remove them. Containers are listed before the
        // records are read, and a worker records a container before creating it, so a new Pod's container
        // always has its owner by then.
        let containers = match ctx.runtime.list().await {
            Ok(containers) => containers,
            Err(err) => {
                tracing::warn!(error = %err, "listing the containers");
                return;
            }
        };
        let mut owners: HashSet<String> = listed.iter().map(|u| record::compact_uid(u)).collect();
        match ctx.layout.pod_uids() {
            Ok(uids) => owners.extend(uids.iter().map(|u| record::compact_uid(u))),
            Err(err) => {
                tracing::warn!(error = %err, "listing the Pod records");
                return;
            }
        }
        for id in unowned(containers.iter().map(|c| c.id.as_str()), &owners) {
            tracing::info!(%id, "removing a container no Pod owns");
            remove_container(&ctx.runtime, id).await;
        }
    });
}

/// The Pod containers (runtime ids `<compact uid>-<c|i><index>-<restart>`) whose Pod is not in `owners`
/// (compact uids). Ids of another shape are not the kubelet's and are left alone.
fn unowned<'a>(ids: impl Iterator<Item = &'a str>, owners: &HashSet<String>) -> Vec<&'a str> {
    ids.filter(|id| {
        let mut parts = id.split('-');
        let (Some(uid), Some(slot), Some(restart), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let pod_container = uid.len() == 32
            && uid.chars().all(|c| c.is_ascii_alphanumeric())
            && slot.len() > 1
            && slot.starts_with(['c', 'i'])
            && slot[1..].chars().all(|c| c.is_ascii_digit())
            && !restart.is_empty()
            && restart.chars().all(|c| c.is_ascii_digit());
        pod_container && !owners.contains(uid)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(reference: &str) -> Image {
        Image {
            reference: reference.into(),
            digest: crate::image::Digest::of(b"m"),
            index_digest: None,
            config: Default::default(),
            layers: vec![],
            size: 0,
        }
    }

    #[test]
    fn image_ids_name_the_repository_and_the_digest() {
        let digest = crate::image::Digest::of(b"m");
        assert_eq!(
            image_id(&image("127.0.0.1:5000/berth/busybox:1")),
            format!("127.0.0.1:5000/berth/busybox@{digest}")
        );
        assert_eq!(
            image_id(&image("docker.io/library/busybox:latest")),
            format!("docker.io/library/busybox@{digest}")
        );
    }

    fn exited(code: i32) -> ExitStatus {
        ExitStatus {
            code,
            signal: None,
            oom_killed: code == 137,
            finished_at: jiff::Timestamp::now(),
        }
    }

    fn record(restart_count: i32) -> Record {
        Record {
            namespace: "ns".into(),
            pod: "p".into(),
            uid: "u".into(),
            container: "c".into(),
            init: false,
            id: format!("u-c0-{restart_count}"),
            restart_count,
            image: "busybox".into(),
            image_id: "busybox@sha256:1".into(),
            log_path: "/l".into(),
            last_state: None,
        }
    }

    #[test]
    fn a_crashlooping_container_reports_backoff_with_its_last_exit() {
        let mut slot = Slot::new("c", false, 0);
        slot.record = Some(record(3));
        slot.exit = Some(exited(137));
        slot.waiting = Some(("CrashLoopBackOff".into(), Some("back-off 20s".into())));
        let status = container_status(&slot, "busybox".into(), false);
        assert_eq!(status.restart_count, 3);
        assert_eq!(
            status.state.unwrap().waiting.unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = status.last_state.unwrap().terminated.unwrap();
        assert_eq!(
            (last.exit_code, last.reason.as_deref()),
            (137, Some("OOMKilled"))
        );
        assert!(!status.ready);
    }

    #[test]
    fn a_finished_container_is_terminated_and_one_not_yet_started_waits() {
        let mut slot = Slot::new("c", false, 0);
        assert_eq!(
            container_status(&slot, "x".into(), true)
                .state
                .unwrap()
                .waiting
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        slot.record = Some(record(0));
        slot.exit = Some(exited(0));
        let status = container_status(&slot, "x".into(), false);
        let terminated = status.state.unwrap().terminated.unwrap();
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert_eq!(status.container_id.as_deref(), Some("berth://u-c0-0"));
        assert!(status.last_state.is_none());
    }

    /// A Pod deleted and created again under the same name while the old Pod's worker still writes: the old
    /// worker's write is refused (its uid is the precondition) and the new Pod's status stays its own.
    #[tokio::test]
    async fn a_status_write_for_a_replaced_pod_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let running = berth_apiserver::start(berth_apiserver::Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
        })
        .await
        .unwrap();
        let serve = running.serve;
        let kubeconfig = kube::config::Kubeconfig::read_from(&running.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "reborn"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        let params = kube::api::PostParams::default();
        let old = pods.create(&params, &pod).await.unwrap();
        let old_uid = old.metadata.uid.clone().unwrap();
        pods.delete("reborn", &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
        let new = pods.create(&params, &pod).await.unwrap();
        let new_uid = new.metadata.uid.clone().unwrap();
        assert_ne!(old_uid, new_uid);

        let finished = PodStatus {
            phase: Some("Failed".into()),
            message: Some("written by the old worker".into()),
            ..PodStatus::default()
        };
        let err = write_pod_status(&client, "default", "reborn", &old_uid, &finished)
            .await
            .unwrap_err();
        assert!(status::pod_replaced(&err), "{err}");
        let current = pods.get("reborn").await.unwrap();
        assert_eq!(current.metadata.uid.as_deref(), Some(new_uid.as_str()));
        assert_ne!(
            current.status.and_then(|s| s.phase).as_deref(),
            Some("Failed"),
            "the old worker's status landed on the new Pod"
        );

        let running_status = PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        };
        let written = write_pod_status(&client, "default", "reborn", &new_uid, &running_status)
            .await
            .unwrap();
        assert_eq!(
            written.status.and_then(|s| s.phase).as_deref(),
            Some("Running")
        );
        serve.abort();
    }

    #[test]
    fn containers_of_no_known_pod_are_unowned() {
        let kept = "0f3d5b7a-1111-4222-8333-944455556666";
        let gone = "aaaabbbb-cccc-4ddd-8eee-ffff00001111";
        let owners: HashSet<String> = [record::compact_uid(kept)].into();
        let ids = [
            record::container_id(kept, false, 0, 0),
            record::container_id(gone, true, 0, 2),
            record::container_id(gone, false, 1, 0),
            "bench-runc-1".to_owned(),
            format!("{}-x0-0", record::compact_uid(gone)),
        ];
        assert_eq!(
            unowned(ids.iter().map(String::as_str), &owners),
            vec![ids[1].as_str(), ids[2].as_str()]
        );
    }

    #[test]
    fn backoff_messages_read_like_upstream() {
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
        assert_eq!(humanize(Duration::from_secs(300)), "5m0s");
        assert_eq!(humanize(Duration::from_secs(80)), "1m20s");
    }
}
