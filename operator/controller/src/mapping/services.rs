//! Headless Services: each component is reached by name (`<stack>-db`, `<stack>-redis`, `<stack>-app`), and the
//! name resolves to the ready Pods' addresses, in the embedded plane and on a real cluster alike.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels;

pub fn headless(meta: ObjectMeta, stack: &str, component: &str, ports: &[(&str, i32)]) -> Service {
    let selector: std::collections::BTreeMap<String, String> = labels(stack, component)
        .into_iter()
        .filter(|(k, _)| k != super::LABEL_MANAGED_BY)
        .collect();
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: Some((*name).to_owned()),
                        port: *port,
                        target_port: Some(IntOrString::Int(*port)),
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            publish_not_ready_addresses: Some(false),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
