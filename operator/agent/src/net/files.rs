//! The name-resolution files the kubelet writes into each Pod, in the shape Kubernetes' kubelet gives them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// `/etc/resolv.conf` of a Pod with `dnsPolicy: ClusterFirst`: the agent's DNS server and the search list
/// `<ns>.svc.<domain> svc.<domain> <domain>` with `ndots:5`, so that `db` is asked as
/// `db.<ns>.svc.<domain>` first.
pub fn resolv_conf(namespace: &str, dns_ip: Ipv4Addr, cluster_domain: &str) -> String {
    format!(
        "search {namespace}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}\n\
         nameserver {dns_ip}\n\
         options ndots:5\n"
    )
}

/// `/etc/hosts` of a Pod: loopback entries, then the Pod's address with its FQDN (when it has one, e.g.
/// `<hostname>.<subdomain>.<ns>.svc.<domain>`) and hostname, as the kubelet's managed hosts file.
pub fn hosts_file(pod_ip: Ipv4Addr, hostname: &str, fqdn: Option<&str>) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (written by berth).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    match fqdn {
        Some(fqdn) if fqdn != hostname => {
            let _ = writeln!(out, "{pod_ip}\t{fqdn}\t{hostname}");
        }
        _ => {
            let _ = writeln!(out, "{pod_ip}\t{hostname}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_searches_the_namespace_first() {
        let text = resolv_conf("shop", Ipv4Addr::new(10, 89, 0, 1), "cluster.local");
        assert_eq!(
            text,
            "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.89.0.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_file_names_the_pod_by_fqdn_and_hostname() {
        let text = hosts_file(
            Ipv4Addr::new(10, 89, 0, 7),
            "web-0",
            Some("web-0.web.shop.svc.cluster.local"),
        );
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("10.89.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n"));
        let plain = hosts_file(Ipv4Addr::new(10, 89, 0, 8), "db", None);
        assert!(plain.ends_with("10.89.0.8\tdb\n"));
    }
}
