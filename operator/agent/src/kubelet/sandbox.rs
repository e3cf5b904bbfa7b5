//! What a Pod's network sandbox needs besides its namespace and address: the `/etc/resolv.conf` and
//! `/etc/hosts` the kubelet manages (written into the Pod's directory and bind-mounted into every container,
//! as upstream does) and the `hostPort`s to publish. Pure functions of the Pod and the host's own files;
//! the worker in [`super::pod`] writes and mounts them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde::{Deserialize, Serialize};

use crate::net::{self, HostPort, NetConfig, Protocol};

/// Upstream's limits on a Pod's resolv.conf (`validation.MaxDNSNameservers`, `MaxDNSSearchPaths`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// Where the node's cluster DNS server is, for `dnsPolicy: ClusterFirst` Pods.
#[derive(Clone, Debug)]
pub struct ClusterDns {
    pub server: Ipv4Addr,
    pub domain: String,
}

/// Whether the Pod shares the host's network namespace.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// The agent's own network namespace: what a `hostNetwork: true` Pod's containers join. The agent runs in
/// the node's network; the path is read while the runtime creates a container, when the agent is alive.
pub fn host_netns() -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/net", std::process::id()))
}

/// The Pod's hostname (`spec.hostname`, else its name; at most 63 characters) and, with `spec.subdomain`,
/// its FQDN `<hostname>.<subdomain>.<ns>.svc.<domain>`.
pub fn hostname(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name: String = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect();
    // Upstream trims what truncation leaves at the end that a DNS label may not end with.
    let name = name.trim_end_matches(['-', '.']).to_owned();
    let fqdn = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .map(|sub| {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            format!("{name}.{sub}.{ns}.svc.{cluster_domain}")
        });
    (name, fqdn)
}

/// The parts of a resolv.conf the kubelet composes.
#[derive(Debug, Default, PartialEq)]
struct Resolver {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// `name` or `name:value`, in order, names unique.
    options: Vec<(String, Option<String>)>,
}

impl Resolver {
    fn parse(text: &str) -> Resolver {
        let mut out = Resolver::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_owned)),
                // The last of `search` and `domain` wins, as in glibc.
                Some("search") | Some("domain") => {
                    out.searches = words.map(str::to_owned).collect();
                }
                Some("options") => {
                    for option in words {
                        let (name, value) = match option.split_once(':') {
                            Some((n, v)) => (n, Some(v.to_owned())),
                            None => (option, None),
                        };
                        out.set_option(name, value);
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn set_option(&mut self, name: &str, value: Option<String>) {
        match self.options.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.options.push((name.to_owned(), value)),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            let options: Vec<String> = self
                .options
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => format!("{n}:{v}"),
                    None => n.clone(),
                })
                .collect();
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        out
    }
}

/// The Pod's resolv.conf as the kubelet composes it from `dnsPolicy` and `dnsConfig`: `ClusterFirst` asks
/// the node's DNS server (a host-network Pod falls back to the host's resolvers, unless it says
/// `ClusterFirstWithHostNet`), `Default` copies the host's, `None` takes `dnsConfig` alone; `dnsConfig`'s
/// nameservers and searches are appended and its options override.
pub fn resolv_conf(
    pod: &Pod,
    host_resolv_conf: &str,
    cluster: &ClusterDns,
) -> Result<String, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = || {
        Resolver::parse(&net::resolv_conf(
            namespace,
            cluster.server,
            &cluster.domain,
        ))
    };
    let mut resolver = match policy {
        "ClusterFirst" if spec.host_network == Some(true) => Resolver::parse(host_resolv_conf),
        "ClusterFirst" | "ClusterFirstWithHostNet" => cluster_first(),
        "Default" => Resolver::parse(host_resolv_conf),
        "None" => Resolver::default(),
        other => {
            return Err(format!(
                "dnsPolicy {other:?} is not supported: use ClusterFirst, ClusterFirstWithHostNet, Default or None"
            ));
        }
    };
    merge_dns_config(&mut resolver, &spec);
    if policy == "None" && resolver.nameservers.is_empty() {
        return Err("dnsPolicy None needs at least one dnsConfig.nameservers entry".into());
    }
    resolver.nameservers.truncate(MAX_NAMESERVERS);
    resolver.searches.truncate(MAX_SEARCHES);
    Ok(resolver.render())
}

fn merge_dns_config(resolver: &mut Resolver, spec: &PodSpec) {
    let Some(config) = &spec.dns_config else {
        return;
    };
    for server in config.nameservers.iter().flatten() {
        if !resolver.nameservers.contains(server) {
            resolver.nameservers.push(server.clone());
        }
    }
    for search in config.searches.iter().flatten() {
        if !resolver.searches.contains(search) {
            resolver.searches.push(search.clone());
        }
    }
    for option in config.options.iter().flatten() {
        resolver.set_option(
            &option.name.clone().unwrap_or_default(),
            option.value.clone(),
        );
    }
}

/// The Pod's /etc/hosts: the kubelet's managed file for a Pod with its own network (loopback, the Pod's
/// address with its FQDN and hostname), the host's own file for a host-network Pod; then `hostAliases`.
pub fn hosts_file(
    pod: &Pod,
    pod_ip: Option<Ipv4Addr>,
    host_hosts: &str,
    cluster_domain: &str,
) -> String {
    let mut out = match pod_ip {
        Some(ip) if !host_network(pod) => {
            let (name, fqdn) = hostname(pod, cluster_domain);
            net::hosts_file(ip, &name, fqdn.as_deref())
        }
        _ => {
            let mut text = host_hosts.to_owned();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text
        }
    };
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

/// The `hostPort`s the Pod's containers ask for. A host-network Pod's containers bind the host's ports
/// themselves, so it publishes nothing.
pub fn host_ports(pod: &Pod) -> Result<Vec<HostPort>, String> {
    let Some(spec) = pod.spec.as_ref().filter(|_| !host_network(pod)) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for container in &spec.containers {
        for port in container.ports.iter().flatten() {
            let Some(host_port) = port.host_port.filter(|p| *p != 0) else {
                continue;
            };
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                other => {
                    return Err(format!(
                        "container {}: hostPort {host_port}/{other} is not supported: use TCP or UDP",
                        container.name
                    ));
                }
            };
            let in_range = |p: i32, what: &str| {
                u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                    format!("container {}: {what} {p} is out of range", container.name)
                })
            };
            let host_ip = match port.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
                    format!(
                        "container {}: hostIP {ip:?} is not an IP address",
                        container.name
                    )
                })?),
                None => None,
            };
            out.push(HostPort {
                protocol,
                host_ip,
                host_port: in_range(host_port, "hostPort")?,
                container_port: in_range(port.container_port, "containerPort")?,
            });
        }
    }
    Ok(out)
}

/// Writes `text` to `path` in place when it differs: containers bind-mount the file, and a rename would
/// leave them the old inode.
pub fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// The node's network settings as `berth down` finds them again: the agent records them at start.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedNetwork {
    bridge: String,
    cidr: ipnet::Ipv4Net,
    state_dir: PathBuf,
    cluster_domain: String,
}

impl From<&NetConfig> for SavedNetwork {
    fn from(config: &NetConfig) -> SavedNetwork {
        SavedNetwork {
            bridge: config.bridge.clone(),
            cidr: config.cidr,
            state_dir: config.state_dir.clone(),
            cluster_domain: config.cluster_domain.clone(),
        }
    }
}

impl From<SavedNetwork> for NetConfig {
    fn from(saved: SavedNetwork) -> NetConfig {
        NetConfig {
            bridge: saved.bridge,
            cidr: saved.cidr,
            state_dir: saved.state_dir,
            cluster_domain: saved.cluster_domain,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            server: Ipv4Addr::new(10, 89, 0, 1),
            domain: "cluster.local".into(),
        }
    }

    const HOST: &str = "# host\nnameserver 192.0.2.53\nsearch example.com\noptions edns0\n";

    #[test]
    fn cluster_first_pods_ask_the_node_dns_with_the_namespace_searched_first() {
        let p = pod(
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"containers": []}}),
        );
        assert_eq!(
            resolv_conf(&p, HOST, &cluster()).unwrap(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.89.0.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_pods_use_the_host_resolvers_unless_they_ask_for_the_cluster() {
        let host = pod(
            json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true, "containers": []}}),
        );
        assert_eq!(
            resolv_conf(&host, HOST, &cluster()).unwrap(),
            "search example.com\nnameserver 192.0.2.53\noptions edns0\n"
        );
        let with_net = pod(json!({"metadata": {"name": "h"}, "spec": {
            "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet", "containers": []}}));
        assert!(
            resolv_conf(&with_net, HOST, &cluster())
                .unwrap()
                .contains("nameserver 10.89.0.1\n")
        );
    }

    #[test]
    fn dns_config_is_merged_and_policy_none_needs_a_nameserver() {
        let p = pod(
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {
                "containers": [],
                "dnsConfig": {
                    "nameservers": ["192.0.2.1"],
                    "searches": ["corp.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]
                }
            }}),
        );
        assert_eq!(
            resolv_conf(&p, HOST, &cluster()).unwrap(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.89.0.1\nnameserver 192.0.2.1\noptions ndots:2 rotate\n"
        );
        let none = pod(
            json!({"metadata": {"name": "n"}, "spec": {"dnsPolicy": "None", "containers": []}}),
        );
        assert!(resolv_conf(&none, HOST, &cluster()).is_err());
        let odd = pod(
            json!({"metadata": {"name": "n"}, "spec": {"dnsPolicy": "Sometimes", "containers": []}}),
        );
        assert!(
            resolv_conf(&odd, HOST, &cluster())
                .unwrap_err()
                .contains("Sometimes")
        );
    }

    #[test]
    fn hosts_name_the_pod_by_hostname_and_subdomain_and_list_host_aliases() {
        let p = pod(
            json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": {
                "hostname": "db-0",
                "subdomain": "db",
                "containers": [],
                "hostAliases": [{"ip": "192.0.2.9", "hostnames": ["foo.local", "bar.local"]}]
            }}),
        );
        let text = hosts_file(&p, Some(Ipv4Addr::new(10, 89, 0, 7)), "", "cluster.local");
        assert!(
            text.contains("10.89.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"),
            "{text}"
        );
        assert!(
            text.ends_with("# Entries added by HostAliases.\n192.0.2.9\tfoo.local\tbar.local\n")
        );
        let host = pod(
            json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true, "containers": []}}),
        );
        assert_eq!(
            hosts_file(&host, None, "127.0.0.1 localhost myhost", "cluster.local"),
            "127.0.0.1 localhost myhost\n"
        );
    }

    #[test]
    fn host_ports_are_read_from_the_containers() {
        let p = pod(
            json!({"metadata": {"name": "web"}, "spec": {"containers": [{
                "name": "a",
                "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                    {"containerPort": 9090}
                ]
            }]}}),
        );
        assert_eq!(
            host_ports(&p).unwrap(),
            vec![
                HostPort {
                    protocol: Protocol::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container_port: 80
                },
                HostPort {
                    protocol: Protocol::Udp,
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 5353,
                    container_port: 53
                },
            ]
        );
        let sctp = pod(
            json!({"metadata": {"name": "s"}, "spec": {"containers": [{"name": "a",
            "ports": [{"containerPort": 1, "hostPort": 2, "protocol": "SCTP"}]}]}}),
        );
        assert!(host_ports(&sctp).unwrap_err().contains("SCTP"));
        let host = pod(
            json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true, "containers": [{"name": "a",
            "ports": [{"containerPort": 80, "hostPort": 80}]}]}}),
        );
        assert!(host_ports(&host).unwrap().is_empty());
    }

    #[test]
    fn long_hostnames_are_cut_to_a_dns_label() {
        let name = format!("{}-x", "a".repeat(62));
        let p = pod(json!({"metadata": {"name": name}, "spec": {"containers": []}}));
        let (hostname, fqdn) = hostname(&p, "cluster.local");
        assert_eq!(hostname, "a".repeat(62));
        assert!(fqdn.is_none());
    }
}
