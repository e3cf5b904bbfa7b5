//! Which addresses a name has, computed from the Services and Pods the reflectors hold: what CoreDNS's
//! kubernetes plugin answers for headless Services (the embedded plane gives every Service headless
//! semantics), read straight from Pods because the embedded plane keeps no EndpointSlices.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The answer to a name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// The name exists; these are its IPv4 addresses (none for other record types to return).
    Addresses(Vec<Ipv4Addr>),
    /// The name is in the cluster domain but does not exist (or its Service has no ready Pods, as CoreDNS
    /// answers for a headless Service without endpoints).
    NxDomain,
    /// Not a cluster name: ask the upstream resolvers.
    Forward,
}

/// What the DNS server knows at the moment of a query.
pub(super) struct Snapshot<'a> {
    pub services: &'a [std::sync::Arc<Service>],
    pub pods: &'a [std::sync::Arc<Pod>],
    pub cluster_domain: &'a str,
}

impl Snapshot<'_> {
    /// Resolves `name` (lower case, without the trailing dot) asked by `client`.
    pub(super) fn resolve(&self, name: &str, client: IpAddr) -> Answer {
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        let domain: Vec<&str> = self.cluster_domain.split('.').collect();
        if labels.len() >= domain.len() && labels[labels.len() - domain.len()..] == domain[..] {
            let rest = &labels[..labels.len() - domain.len()];
            return match rest {
                [] | ["svc"] | ["pod"] => Answer::Addresses(Vec::new()),
                [_ns, "svc"] | [_ns, "pod"] => Answer::Addresses(Vec::new()),
                [svc, ns, "svc"] => self.service(ns, svc).unwrap_or(Answer::NxDomain),
                [host, svc, ns, "svc"] => self.pod_by_hostname(ns, svc, host),
                [dashed, _ns, "pod"] => dashed_ip(dashed)
                    .map(|ip| Answer::Addresses(vec![ip]))
                    .unwrap_or(Answer::NxDomain),
                _ => Answer::NxDomain,
            };
        }
        // Names outside the domain that still name a Service: `<svc>` (in the asking Pod's namespace),
        // `<svc>.<ns>` and `<svc>.<ns>.svc`. Anything else, or a name no Service has, goes upstream.
        let found = match labels[..] {
            [svc] => self.service(&self.namespace_of(client), svc),
            [svc, ns] | [svc, ns, "svc"] => self.service(ns, svc),
            _ => None,
        };
        found.unwrap_or(Answer::Forward)
    }

    /// The ready addresses of the Service, or None when there is no such Service.
    fn service(&self, namespace: &str, name: &str) -> Option<Answer> {
        let service = self.services.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        })?;
        let spec = service.spec.as_ref();
        let Some(selector) = spec
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
        else {
            // No selector: its endpoints would be managed by hand, which the embedded plane has no
            // EndpointSlices for.
            return Some(Answer::NxDomain);
        };
        let not_ready_too = spec
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false);
        let mut ips: Vec<Ipv4Addr> = self
            .pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                let labels = p.metadata.labels.as_ref();
                selector
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .filter(|p| not_ready_too || is_ready(p))
            .filter_map(|p| pod_ip(p))
            .collect();
        ips.sort();
        ips.dedup();
        Some(if ips.is_empty() {
            Answer::NxDomain
        } else {
            Answer::Addresses(ips)
        })
    }

    /// `<hostname>.<subdomain>.<ns>.svc.<domain>`: the Pod with that `spec.hostname` and `spec.subdomain`,
    /// when a Service named like the subdomain exists in its namespace (as Kubernetes requires).
    fn pod_by_hostname(&self, namespace: &str, subdomain: &str, hostname: &str) -> Answer {
        let service = self.services.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(subdomain)
        });
        let Some(service) = service else {
            return Answer::NxDomain;
        };
        let not_ready_too = service
            .spec
            .as_ref()
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false);
        let ips: Vec<Ipv4Addr> = self
            .pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                let spec = p.spec.as_ref();
                spec.and_then(|s| s.hostname.as_deref()) == Some(hostname)
                    && spec.and_then(|s| s.subdomain.as_deref()) == Some(subdomain)
            })
            .filter(|p| not_ready_too || is_ready(p))
            .filter_map(|p| pod_ip(p))
            .collect();
        if ips.is_empty() {
            Answer::NxDomain
        } else {
            Answer::Addresses(ips)
        }
    }

    /// The namespace of the Pod that asks, by its address; `default` for anyone else.
    fn namespace_of(&self, client: IpAddr) -> String {
        let IpAddr::V4(client) = client else {
            return "default".to_owned();
        };
        self.pods
            .iter()
            .find(|p| pod_ip(p) == Some(client) && p.metadata.deletion_timestamp.is_none())
            .and_then(|p| p.metadata.namespace.clone())
            .unwrap_or_else(|| "default".to_owned())
    }
}

/// Drops what [`Snapshot`] never reads from a Pod (its containers, volumes, managed fields, other
/// conditions), so that the reflector, which holds every Pod of the cluster, keeps a few hundred bytes per Pod.
pub(super) fn trim_pod(pod: &mut Pod) {
    pod.metadata = trim_metadata(std::mem::take(&mut pod.metadata));
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        hostname: spec.hostname,
        subdomain: spec.subdomain,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        pod_ip: status.pod_ip,
        conditions: status
            .conditions
            .map(|c| c.into_iter().filter(|c| c.type_ == "Ready").collect()),
        ..PodStatus::default()
    });
}

/// Drops what [`Snapshot`] never reads from a Service: all but its selector and `publishNotReadyAddresses`.
pub(super) fn trim_service(service: &mut Service) {
    service.metadata = trim_metadata(std::mem::take(&mut service.metadata));
    service.spec = service.spec.take().map(|spec| ServiceSpec {
        selector: spec.selector,
        publish_not_ready_addresses: spec.publish_not_ready_addresses,
        ..ServiceSpec::default()
    });
    service.status = None;
}

/// The identity (what the reflector keys on), labels and deletion mark of an object.
fn trim_metadata(metadata: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        resource_version: metadata.resource_version,
        labels: metadata.labels,
        deletion_timestamp: metadata.deletion_timestamp,
        ..ObjectMeta::default()
    }
}

/// Ready as an endpoint: the Ready condition is True and the Pod is not being deleted.
fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// `10-89-0-7` → 10.89.0.7, for `<a-b-c-d>.<ns>.pod.<domain>` records.
fn dashed_ip(label: &str) -> Option<Ipv4Addr> {
    label.replace('-', ".").parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn service(ns: &str, name: &str, app: &str) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"selector": {"app": app}},
            }))
            .unwrap(),
        )
    }

    fn pod(ns: &str, name: &str, app: &str, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
                "spec": {"containers": [], "hostname": name, "subdomain": "db"},
                "status": {
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                },
            }))
            .unwrap(),
        )
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn service_names_resolve_to_ready_pods_in_every_form() {
        let services = [service("shop", "db", "pg"), service("other", "db", "pg")];
        let pods = [
            pod("shop", "pg-0", "pg", "10.89.0.5", true),
            pod("shop", "pg-1", "pg", "10.89.0.6", false),
            pod("other", "pg-0", "pg", "10.89.0.9", true),
            pod("shop", "web", "web", "10.89.0.7", true),
        ];
        let snap = Snapshot {
            services: &services,
            pods: &pods,
            cluster_domain: "cluster.local",
        };
        let shop_client = IpAddr::V4(ip("10.89.0.7"));
        let only_ready = Answer::Addresses(vec![ip("10.89.0.5")]);
        for name in ["db.shop.svc.cluster.local", "db.shop.svc", "db.shop", "db"] {
            assert_eq!(snap.resolve(name, shop_client), only_ready, "{name}");
        }
        // A client outside any Pod asks `db` in `default`, which has no such Service: forwarded.
        assert_eq!(
            snap.resolve("db", IpAddr::V4(ip("127.0.0.1"))),
            Answer::Forward
        );
        assert_eq!(
            snap.resolve("db.other.svc.cluster.local", shop_client),
            Answer::Addresses(vec![ip("10.89.0.9")])
        );
        assert_eq!(
            snap.resolve("nope.shop.svc.cluster.local", shop_client),
            Answer::NxDomain
        );
        assert_eq!(snap.resolve("example.com", shop_client), Answer::Forward);
        assert_eq!(
            snap.resolve("pg-0.db.shop.svc.cluster.local", shop_client),
            Answer::Addresses(vec![ip("10.89.0.5")])
        );
        assert_eq!(
            snap.resolve("pg-1.db.shop.svc.cluster.local", shop_client),
            Answer::NxDomain
        );
        assert_eq!(
            snap.resolve("10-89-0-5.shop.pod.cluster.local", shop_client),
            Answer::Addresses(vec![ip("10.89.0.5")])
        );
    }

    #[test]
    fn a_service_without_ready_pods_is_nxdomain() {
        let services = [service("shop", "db", "pg")];
        let pods = [pod("shop", "pg-0", "pg", "10.89.0.5", false)];
        let snap = Snapshot {
            services: &services,
            pods: &pods,
            cluster_domain: "cluster.local",
        };
        assert_eq!(
            snap.resolve("db.shop.svc.cluster.local", IpAddr::V4(ip("10.89.0.5"))),
            Answer::NxDomain
        );
        assert_eq!(
            snap.resolve("db.shop", IpAddr::V4(ip("10.89.0.5"))),
            Answer::NxDomain
        );
    }

    #[test]
    fn trimmed_objects_keep_what_resolving_reads_and_lose_the_rest() {
        let mut full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": "shop", "name": "pg-0", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "pg"}, "annotations": {"note": "x"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {
                "containers": [{"name": "pg", "image": "postgres", "env": [{"name": "A", "value": "b"}]}],
                "hostname": "pg-0", "subdomain": "db",
            },
            "status": {
                "podIP": "10.89.0.5", "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": [{"name": "pg", "image": "postgres", "imageID": "", "ready": true, "restartCount": 0}],
            },
        }))
        .unwrap();
        trim_pod(&mut full);
        assert_eq!(full.metadata.uid.as_deref(), Some("u1"));
        assert!(full.metadata.annotations.is_none() && full.metadata.managed_fields.is_none());
        assert!(full.spec.as_ref().unwrap().containers.is_empty());
        assert!(full.status.as_ref().unwrap().container_statuses.is_none());
        assert_eq!(
            full.status
                .as_ref()
                .unwrap()
                .conditions
                .as_ref()
                .unwrap()
                .len(),
            1
        );

        let mut db = (*service("shop", "db", "pg")).clone();
        db.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.9".into());
        trim_service(&mut db);
        assert!(db.spec.as_ref().unwrap().cluster_ip.is_none());

        let services = [Arc::new(db)];
        let pods = [Arc::new(full)];
        let snap = Snapshot {
            services: &services,
            pods: &pods,
            cluster_domain: "cluster.local",
        };
        let client = IpAddr::V4(ip("10.89.0.5"));
        for name in ["db", "pg-0.db.shop.svc.cluster.local"] {
            assert_eq!(
                snap.resolve(name, client),
                Answer::Addresses(vec![ip("10.89.0.5")]),
                "{name}"
            );
        }
    }
}
