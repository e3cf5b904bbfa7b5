//! The Node object of this agent and its heartbeat: registered at start with what the machine has, its status
//! posted again when it changes and at least every [`STATUS_EVERY`], and a Lease in `kube-node-lease` renewed
//! every [`LEASE_RENEW`], as a kubelet does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::Error;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;
/// A status with nothing new is still posted this often (the node lifecycle also reads its heartbeat).
pub const STATUS_EVERY: Duration = Duration::from_secs(60);
/// The kubelet's default `maxPods`.
pub const MAX_PODS: u32 = 110;

/// What the machine offers and says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl Machine {
    pub fn read() -> Machine {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        // SAFETY: sysconf reads a system constant.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "Linux".into());
        Machine {
            cpus: u32::try_from(online).unwrap_or(1).max(1),
            memory_bytes: memory_kib * 1024,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }

    pub fn cpu_milli(&self) -> i128 {
        i128::from(self.cpus) * 1000
    }
}

/// The node's name when none is given: the host name, lower-cased (node names are DNS subdomains).
pub fn default_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn architecture() -> &'static str {
    crate::image::architecture()
}

/// The node's status as the kubelet posts it; heartbeat times are `now`, transition times kept from
/// `previous` when a condition did not change.
pub fn status(
    machine: &Machine,
    name: &str,
    kubelet_port: Option<u16>,
    previous: &[NodeCondition],
    now: Timestamp,
) -> serde_json::Value {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", machine.cpus.to_string()),
        ("memory", format!("{}Ki", machine.memory_bytes / 1024)),
        ("pods", MAX_PODS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(since),
        }
    };
    let conditions = vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ];
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let info = NodeSystemInfo {
        architecture: architecture().into(),
        boot_id: machine.boot_id.clone(),
        container_runtime_version: format!("berth://{}", env!("CARGO_PKG_VERSION")),
        kernel_version: machine.kernel.clone(),
        kube_proxy_version: String::new(),
        kubelet_version: version,
        machine_id: machine.machine_id.clone(),
        operating_system: "linux".into(),
        os_image: machine.os_image.clone(),
        system_uuid: machine.machine_id.clone(),
        ..NodeSystemInfo::default()
    };
    let endpoints = NodeDaemonEndpoints {
        kubelet_endpoint: kubelet_port.map(|port| DaemonEndpoint {
            port: i32::from(port),
        }),
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions,
        "addresses": [
            NodeAddress { type_: "InternalIP".into(), address: "127.0.0.1".into() },
            NodeAddress { type_: "Hostname".into(), address: name.to_owned() },
        ],
        "daemonEndpoints": endpoints,
        "nodeInfo": info,
    })
}

/// Keeps the Node registered and its status and Lease fresh; returns only on an error it cannot retry.
pub struct Heartbeat {
    pub client: Client,
    pub name: String,
    pub machine: Machine,
    pub kubelet_port: Option<u16>,
}

impl Heartbeat {
    /// Creates the Node if it does not exist (a restarted agent finds its own).
    pub async fn register(&self) -> Result<Node, Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        if let Some(node) = api.get_opt(&self.name).await? {
            return Ok(node);
        }
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), self.name.clone()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), architecture().to_owned()),
        ]);
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        match api.create(&PostParams::default(), &node).await {
            Ok(node) => {
                tracing::info!(node = %self.name, "registered the node");
                Ok(node)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(api.get(&self.name).await?),
            Err(err) => Err(err.into()),
        }
    }

    /// Posts the node's status if it changed or is due.
    pub async fn post_status(&self, node: &Node) -> Result<Node, Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let previous = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let status = status(
            &self.machine,
            &self.name,
            self.kubelet_port,
            &previous,
            Timestamp::now(),
        );
        let patch = json!({"status": status});
        Ok(api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?)
    }

    /// Creates or renews the node's Lease.
    pub async fn renew_lease(&self, node: &Node) -> Result<(), Error> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let now = MicroTime(Timestamp::now());
        match api.get_opt(&self.name).await? {
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.holder_identity = Some(self.name.clone());
                spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
                spec.renew_time = Some(now);
                api.replace(&self.name, &PostParams::default(), &lease)
                    .await?;
            }
            None => {
                let owner = OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: self.name.clone(),
                    uid: node.metadata.uid.clone().unwrap_or_default(),
                    ..OwnerReference::default()
                };
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: Some(vec![owner]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.name.clone()),
                        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                        renew_time: Some(now),
                        ..LeaseSpec::default()
                    }),
                };
                api.create(&PostParams::default(), &lease).await?;
            }
        }
        Ok(())
    }

    /// Registers, then renews the Lease every [`LEASE_RENEW`] and posts status every [`STATUS_EVERY`], until
    /// `shutdown`. Failures are logged and retried on the next tick: an API server that is briefly away must
    /// not stop the node.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut node: Option<Node> = None;
        let mut lease_tick = tokio::time::interval(LEASE_RENEW);
        let mut last_status: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = lease_tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if node.is_none() {
                match self.register().await {
                    Ok(registered) => node = Some(registered),
                    Err(err) => {
                        tracing::warn!(node = %self.name, error = %err, "registering the node");
                        continue;
                    }
                }
            }
            let Some(current) = node.clone() else {
                continue;
            };
            if last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
                match self.post_status(&current).await {
                    Ok(updated) => {
                        node = Some(updated);
                        last_status = Some(tokio::time::Instant::now());
                    }
                    Err(err) => {
                        tracing::warn!(node = %self.name, error = %err, "posting the node status");
                        if matches!(&err, Error::Api(kube::Error::Api(e)) if e.code == 404) {
                            node = None;
                        }
                    }
                }
            }
            if let Err(err) = self.renew_lease(&current).await {
                tracing::warn!(node = %self.name, error = %err, "renewing the node lease");
            }
        }
    }
}

/// Free space is not reported; this keeps the data directory's file system visible in logs at start.
pub fn describe(machine: &Machine, data_dir: &Path) -> String {
    format!(
        "{} cpus, {} MiB memory, kernel {}, data in {}",
        machine.cpus,
        machine.memory_bytes / (1024 * 1024),
        machine.kernel,
        data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 13".into(),
            machine_id: "abc".into(),
            boot_id: "def".into(),
        }
    }

    #[test]
    fn status_reports_resources_conditions_and_the_kubelet_port() {
        let now = Timestamp::now();
        let status = status(&machine(), "n1", Some(10250), &[], now);
        assert_eq!(status["capacity"]["cpu"], "2");
        assert_eq!(status["capacity"]["memory"], "4194304Ki");
        assert_eq!(status["allocatable"]["pods"], "110");
        assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        let types: Vec<&str> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(status["conditions"][3]["status"], "True");
        assert_eq!(status["addresses"][0]["address"], "127.0.0.1");
        assert_eq!(status["nodeInfo"]["operatingSystem"], "linux");
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let earlier: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let previous = vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(earlier)),
            ..NodeCondition::default()
        }];
        let status = status(&machine(), "n1", None, &previous, Timestamp::now());
        assert_eq!(
            status["conditions"][3]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        assert!(status["daemonEndpoints"]["kubeletEndpoint"].is_null());
    }
}
