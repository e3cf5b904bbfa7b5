//! meta/v1 messages: ObjectMeta and what it carries (owner references, managed fields), times, label selectors,
//! conditions and DeleteOptions.

use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb;
use serde_json::Value;

use super::Error;
use super::json::{Obj, each};

/// `metav1.Time`: RFC 3339 in UTC to the second, as Go writes it; the zero time (no seconds, no nanos on the
/// wire) is `null`.
pub(super) fn time(field: &str, time: Option<&pb::Time>) -> Result<Value, Error> {
    let seconds = time.and_then(|t| t.seconds).unwrap_or(0);
    let nanos = time.and_then(|t| t.nanos).unwrap_or(0);
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let at = jiff::Timestamp::new(seconds, nanos).map_err(|e| {
        Error::invalid(format!(
            "{field}: time {seconds}s {nanos}ns is out of range: {e}"
        ))
    })?;
    Ok(Value::from(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// `metadata`, always written (Go's `ObjectMeta` is a plain struct, which `omitempty` never drops).
pub(super) fn object_meta(meta: Option<&pb::ObjectMeta>) -> Result<Value, Error> {
    let default = pb::ObjectMeta::default();
    let m = meta.unwrap_or(&default);
    let deletion = match &m.deletion_timestamp {
        Some(t) => Some(time("metadata.deletionTimestamp", Some(t))?),
        None => None,
    };
    Ok(Obj::new()
        .string("name", &m.name)
        .string("generateName", &m.generate_name)
        .string("namespace", &m.namespace)
        .string("selfLink", &m.self_link)
        .string("uid", &m.uid)
        .string("resourceVersion", &m.resource_version)
        .int("generation", m.generation)
        .value(
            "creationTimestamp",
            time("metadata.creationTimestamp", m.creation_timestamp.as_ref())?,
        )
        .pointer("deletionTimestamp", &deletion)
        .pointer(
            "deletionGracePeriodSeconds",
            &m.deletion_grace_period_seconds,
        )
        .string_map("labels", &m.labels)
        .string_map("annotations", &m.annotations)
        .list(
            "ownerReferences",
            each(&m.owner_references, owner_reference)?,
        )
        .strings("finalizers", &m.finalizers)
        .list(
            "managedFields",
            each(&m.managed_fields, managed_fields_entry)?,
        )
        .build())
}

fn owner_reference(r: &pb::OwnerReference) -> Result<Value, Error> {
    Ok(Obj::new()
        .required_string("apiVersion", &r.api_version)
        .required_string("kind", &r.kind)
        .required_string("name", &r.name)
        .required_string("uid", &r.uid)
        .pointer("controller", &r.controller)
        .pointer("blockOwnerDeletion", &r.block_owner_deletion)
        .build())
}

fn managed_fields_entry(e: &pb::ManagedFieldsEntry) -> Result<Value, Error> {
    let time = match &e.time {
        Some(t) => Some(time("metadata.managedFields.time", Some(t))?),
        None => None,
    };
    Ok(Obj::new()
        .string("manager", &e.manager)
        .string("operation", &e.operation)
        .string("apiVersion", &e.api_version)
        .pointer("time", &time)
        .string("fieldsType", &e.fields_type)
        .nested("fieldsV1", e.fields_v1.as_ref(), fields_v1)?
        .string("subresource", &e.subresource)
        .build())
}

/// `FieldsV1` is its raw JSON (upstream writes the bytes as they are; no bytes is `null`).
fn fields_v1(f: &pb::FieldsV1) -> Result<Value, Error> {
    match &f.raw {
        None => Ok(Value::Null),
        Some(raw) => serde_json::from_slice(raw).map_err(|e| {
            Error::invalid(format!("metadata.managedFields.fieldsV1 is not JSON: {e}"))
        }),
    }
}

pub(super) fn label_selector(s: &pb::LabelSelector) -> Result<Value, Error> {
    Ok(Obj::new()
        .string_map("matchLabels", &s.match_labels)
        .list(
            "matchExpressions",
            each(&s.match_expressions, |r| {
                Ok(Obj::new()
                    .required_string("key", &r.key)
                    .required_string("operator", &r.operator)
                    .strings("values", &r.values)
                    .build())
            })?,
        )
        .build())
}

/// `metav1.Condition`, whose fields are all written (none has `omitempty` but observedGeneration).
pub(super) fn condition(c: &pb::Condition) -> Result<Value, Error> {
    Ok(Obj::new()
        .required_string("type", &c.r#type)
        .required_string("status", &c.status)
        .int("observedGeneration", c.observed_generation)
        .value(
            "lastTransitionTime",
            time(
                "conditions.lastTransitionTime",
                c.last_transition_time.as_ref(),
            )?,
        )
        .required_string("reason", &c.reason)
        .required_string("message", &c.message)
        .build())
}

pub(super) fn delete_options(o: &pb::DeleteOptions) -> Value {
    let preconditions = o.preconditions.as_ref().map(|p| {
        Obj::new()
            .pointer("uid", &p.uid)
            .pointer("resourceVersion", &p.resource_version)
            .build()
    });
    Obj::new()
        .pointer("gracePeriodSeconds", &o.grace_period_seconds)
        .pointer("preconditions", &preconditions)
        .pointer("orphanDependents", &o.orphan_dependents)
        .pointer("propagationPolicy", &o.propagation_policy)
        .strings("dryRun", &o.dry_run)
        .pointer(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            &o.ignore_store_read_error_with_cluster_breaking_potential,
        )
        .build()
}
