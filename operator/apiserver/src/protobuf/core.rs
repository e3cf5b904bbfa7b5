//! core/v1 kinds: ConfigMap, Secret, Namespace, ServiceAccount and Service.

use k8s_pb::api::core::v1 as pb;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::json::{Obj, each};
use super::meta::{condition, object_meta, time};
use super::{Error, message};

pub(super) fn config_map(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::ConfigMap = message(raw, "ConfigMap")?;
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .pointer("immutable", &m.immutable)
        .string_map("data", &m.data)
        .bytes_map("binaryData", &m.binary_data)
        .build())
}

pub(super) fn secret(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::Secret = message(raw, "Secret")?;
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .pointer("immutable", &m.immutable)
        .bytes_map("data", &m.data)
        .string_map("stringData", &m.string_data)
        .string("type", &m.r#type)
        .build())
}

pub(super) fn namespace(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::Namespace = message(raw, "Namespace")?;
    let spec = m.spec.unwrap_or_default();
    let status = m.status.unwrap_or_default();
    let conditions = each(&status.conditions, |c| {
        Ok(Obj::new()
            .required_string("type", &c.r#type)
            .required_string("status", &c.status)
            .value(
                "lastTransitionTime",
                time(
                    "status.conditions.lastTransitionTime",
                    c.last_transition_time.as_ref(),
                )?,
            )
            .string("reason", &c.reason)
            .string("message", &c.message)
            .build())
    })?;
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .value(
            "spec",
            Obj::new().strings("finalizers", &spec.finalizers).build(),
        )
        .value(
            "status",
            Obj::new()
                .string("phase", &status.phase)
                .list("conditions", conditions)
                .build(),
        )
        .build())
}

pub(super) fn service_account(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::ServiceAccount = message(raw, "ServiceAccount")?;
    let secrets = each(&m.secrets, |r| {
        Ok(Obj::new()
            .string("kind", &r.kind)
            .string("namespace", &r.namespace)
            .string("name", &r.name)
            .string("uid", &r.uid)
            .string("apiVersion", &r.api_version)
            .string("resourceVersion", &r.resource_version)
            .string("fieldPath", &r.field_path)
            .build())
    })?;
    let pull_secrets = each(&m.image_pull_secrets, |r| {
        Ok(Obj::new().string("name", &r.name).build())
    })?;
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .list("secrets", secrets)
        .list("imagePullSecrets", pull_secrets)
        .pointer(
            "automountServiceAccountToken",
            &m.automount_service_account_token,
        )
        .build())
}

pub(super) fn service(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::Service = message(raw, "Service")?;
    let spec = m.spec.unwrap_or_default();
    let status = m.status.unwrap_or_default();
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .value("spec", service_spec(&spec)?)
        .value("status", service_status(&status)?)
        .build())
}

fn service_spec(s: &pb::ServiceSpec) -> Result<Value, Error> {
    let ports = each(&s.ports, |p| {
        Ok(Obj::new()
            .string("name", &p.name)
            .string("protocol", &p.protocol)
            .pointer("appProtocol", &p.app_protocol)
            .required_int("port", p.port)
            // A plain IntOrString struct: Go writes it even when zero.
            .value(
                "targetPort",
                int_or_string("spec.ports.targetPort", p.target_port.as_ref())?,
            )
            .int("nodePort", p.node_port)
            .build())
    })?;
    let affinity = s.session_affinity_config.as_ref().map(|c| {
        let client_ip = c.client_ip.as_ref().map(|ip| {
            Obj::new()
                .pointer("timeoutSeconds", &ip.timeout_seconds)
                .build()
        });
        Obj::new().pointer("clientIP", &client_ip).build()
    });
    Ok(Obj::new()
        .list("ports", ports)
        .string_map("selector", &s.selector)
        .string("clusterIP", &s.cluster_ip)
        .strings("clusterIPs", &s.cluster_ips)
        .string("type", &s.r#type)
        .strings("externalIPs", &s.external_ips)
        .string("sessionAffinity", &s.session_affinity)
        .string("loadBalancerIP", &s.load_balancer_ip)
        .strings("loadBalancerSourceRanges", &s.load_balancer_source_ranges)
        .string("externalName", &s.external_name)
        .string("externalTrafficPolicy", &s.external_traffic_policy)
        .int("healthCheckNodePort", s.health_check_node_port)
        .flag("publishNotReadyAddresses", s.publish_not_ready_addresses)
        .pointer("sessionAffinityConfig", &affinity)
        .strings("ipFamilies", &s.ip_families)
        .pointer("ipFamilyPolicy", &s.ip_family_policy)
        .pointer(
            "allocateLoadBalancerNodePorts",
            &s.allocate_load_balancer_node_ports,
        )
        .pointer("loadBalancerClass", &s.load_balancer_class)
        .pointer("internalTrafficPolicy", &s.internal_traffic_policy)
        .pointer("trafficDistribution", &s.traffic_distribution)
        .build())
}

fn service_status(s: &pb::ServiceStatus) -> Result<Value, Error> {
    let load_balancer = s.load_balancer.clone().unwrap_or_default();
    let ingress = each(&load_balancer.ingress, |i| {
        let ports = each(&i.ports, |p| {
            Ok(Obj::new()
                .required_int("port", p.port)
                .required_string("protocol", &p.protocol)
                .pointer("error", &p.error)
                .build())
        })?;
        Ok(Obj::new()
            .string("ip", &i.ip)
            .string("hostname", &i.hostname)
            .pointer("ipMode", &i.ip_mode)
            .list("ports", ports)
            .build())
    })?;
    Ok(Obj::new()
        .value("loadBalancer", Obj::new().list("ingress", ingress).build())
        .list("conditions", each(&s.conditions, condition)?)
        .build())
}

/// `intstr.IntOrString` is a number or a string in JSON, chosen by its type (0: int, 1: string).
fn int_or_string(field: &str, v: Option<&IntOrString>) -> Result<Value, Error> {
    let Some(v) = v else {
        return Ok(Value::from(0));
    };
    match v.r#type.unwrap_or(0) {
        0 => Ok(Value::from(v.int_val.unwrap_or(0))),
        1 => Ok(Value::from(v.str_val.as_deref().unwrap_or_default())),
        other => Err(Error::invalid(format!(
            "{field}: unknown IntOrString type {other} (0 is a number, 1 a string)"
        ))),
    }
}
