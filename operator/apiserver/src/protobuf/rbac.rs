//! rbac.authorization.k8s.io/v1 kinds: Role, ClusterRole, RoleBinding and ClusterRoleBinding.

use k8s_pb::api::rbac::v1 as pb;
use serde_json::Value;

use super::json::{Obj, each};
use super::meta::{label_selector, object_meta};
use super::{Error, message};

pub(super) fn role(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::Role = message(raw, "Role")?;
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .required_list("rules", each(&m.rules, policy_rule)?)
        .build())
}

pub(super) fn cluster_role(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::ClusterRole = message(raw, "ClusterRole")?;
    let aggregation = match &m.aggregation_rule {
        Some(rule) => Some(
            Obj::new()
                .list(
                    "clusterRoleSelectors",
                    each(&rule.cluster_role_selectors, label_selector)?,
                )
                .build(),
        ),
        None => None,
    };
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .required_list("rules", each(&m.rules, policy_rule)?)
        .pointer("aggregationRule", &aggregation)
        .build())
}

pub(super) fn role_binding(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::RoleBinding = message(raw, "RoleBinding")?;
    binding(m.metadata.as_ref(), &m.subjects, m.role_ref.as_ref())
}

pub(super) fn cluster_role_binding(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::ClusterRoleBinding = message(raw, "ClusterRoleBinding")?;
    binding(m.metadata.as_ref(), &m.subjects, m.role_ref.as_ref())
}

fn binding(
    meta: Option<&k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    subjects: &[pb::Subject],
    role_ref: Option<&pb::RoleRef>,
) -> Result<Value, Error> {
    let subjects = each(subjects, |s| {
        Ok(Obj::new()
            .required_string("kind", &s.kind)
            .string("apiGroup", &s.api_group)
            .required_string("name", &s.name)
            .string("namespace", &s.namespace)
            .build())
    })?;
    let role_ref = role_ref.cloned().unwrap_or_default();
    Ok(Obj::new()
        .value("metadata", object_meta(meta)?)
        .list("subjects", subjects)
        .value(
            "roleRef",
            Obj::new()
                .required_string("apiGroup", &role_ref.api_group)
                .required_string("kind", &role_ref.kind)
                .required_string("name", &role_ref.name)
                .build(),
        )
        .build())
}

fn policy_rule(r: &pb::PolicyRule) -> Result<Value, Error> {
    Ok(Obj::new()
        .required_strings("verbs", &r.verbs)
        .strings("apiGroups", &r.api_groups)
        .strings("resources", &r.resources)
        .strings("resourceNames", &r.resource_names)
        .strings("nonResourceURLs", &r.non_resource_ur_ls)
        .build())
}
