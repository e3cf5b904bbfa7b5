//! scheduling.k8s.io/v1 PriorityClass.

use k8s_pb::api::scheduling::v1 as pb;
use serde_json::Value;

use super::json::Obj;
use super::meta::object_meta;
use super::{Error, message};

pub(super) fn priority_class(raw: &[u8]) -> Result<Value, Error> {
    let m: pb::PriorityClass = message(raw, "PriorityClass")?;
    Ok(Obj::new()
        .value("metadata", object_meta(m.metadata.as_ref())?)
        .required_int("value", m.value)
        .flag("globalDefault", m.global_default)
        .string("description", &m.description)
        .pointer("preemptionPolicy", &m.preemption_policy)
        .build())
}
