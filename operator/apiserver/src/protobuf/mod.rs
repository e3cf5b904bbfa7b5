//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), which client-go 0.32 and later
//! (kubectl 1.32+, Helm 3.17+) send for built-in kinds. A body is decoded with the message types of the `k8s-pb`
//! crate and turned into the JSON object upstream's JSON encoding gives the same object, so that everything after
//! decoding (defaulting, validation, managedFields, storage) is the JSON path. Responses stay JSON, which every
//! client accepts. Kinds without a conversion here are refused with a 415 that names the ones with one.

mod core;
mod json;
mod meta;
mod rbac;
mod scheduling;
#[cfg(test)]
mod tests;

use k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::Value;

/// Every protobuf body starts with these four bytes, then a `runtime.Unknown`.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body was not turned into JSON.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The bytes are not a well-formed body for what they claim to be: a 400.
    #[error("error decoding protobuf: {0}")]
    Invalid(String),
    /// A well-formed body of a kind berth has no protobuf conversion for: a 415.
    #[error(
        "berth does not decode protobuf request bodies of kind {kind} ({api_version}); protobuf bodies are \
         decoded for {decoded} and DeleteOptions. Send this kind as application/json or application/yaml: \
         `kubectl create ... --dry-run=client -o yaml | kubectl apply -f -` or `kubectl apply -f FILE`",
        decoded = decoded_kinds()
    )]
    NotDecoded { api_version: String, kind: String },
}

impl Error {
    fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

type Convert = fn(&[u8]) -> Result<Value, Error>;

/// The kinds with a conversion, as (apiVersion, kind, conversion).
const KINDS: &[(&str, &str, Convert)] = &[
    ("v1", "ConfigMap", core::config_map),
    ("v1", "Secret", core::secret),
    ("v1", "Namespace", core::namespace),
    ("v1", "ServiceAccount", core::service_account),
    ("v1", "Service", core::service),
    ("rbac.authorization.k8s.io/v1", "Role", rbac::role),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        rbac::cluster_role,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        rbac::role_binding,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        rbac::cluster_role_binding,
    ),
    (
        "scheduling.k8s.io/v1",
        "PriorityClass",
        scheduling::priority_class,
    ),
];

/// `ConfigMap (v1), Secret (v1), …`, for messages.
fn decoded_kinds() -> String {
    KINDS
        .iter()
        .map(|(api_version, kind, _)| format!("{kind} ({api_version})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes one message of a kind.
fn message<M: Message + Default>(raw: &[u8], kind: &str) -> Result<M, Error> {
    M::decode(raw).map_err(|e| Error::invalid(format!("{kind}: {e}")))
}

/// Decodes a protobuf request body addressed to a resource of `api_version`/`kind` into the JSON object
/// (with apiVersion and kind) upstream's JSON encoding gives it. A body may also be DeleteOptions, which
/// client-go sends with the group version of the resource it deletes (or meta.k8s.io/v1).
pub fn to_json(body: &[u8], api_version: &str, kind: &str) -> Result<Value, Error> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        Error::invalid(
            "the body does not start with the protobuf envelope's magic number \"k8s\\0\"",
        )
    })?;
    let unknown = Unknown::decode(envelope)
        .map_err(|e| Error::invalid(format!("the envelope is not a runtime.Unknown: {e}")))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let body_api_version = type_meta.api_version.unwrap_or_default();
    let body_kind = type_meta.kind.unwrap_or_default();
    if body_kind.is_empty() || body_api_version.is_empty() {
        return Err(Error::invalid(
            "the envelope's typeMeta must name the apiVersion and kind of the object",
        ));
    }
    if let Some(encoding) = unknown.content_encoding.filter(|e| !e.is_empty()) {
        return Err(Error::invalid(format!(
            "content encoding {encoding:?} is not supported (only unencoded bodies are)"
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let mut object = if body_kind == "DeleteOptions"
        && (body_api_version == "meta.k8s.io/v1" || body_api_version == api_version)
    {
        meta::delete_options(&message::<DeleteOptions>(&raw, "DeleteOptions")?)
    } else if body_api_version != api_version || body_kind != kind {
        return Err(Error::invalid(format!(
            "the body is a {body_kind} ({body_api_version}), but the request addresses {kind} ({api_version})"
        )));
    } else {
        let (_, _, convert) = KINDS
            .iter()
            .find(|(v, k, _)| *v == api_version && *k == kind)
            .ok_or_else(|| Error::NotDecoded {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })?;
        convert(&raw)?
    };
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".to_owned(), Value::from(body_api_version));
        fields.insert("kind".to_owned(), Value::from(body_kind));
    }
    Ok(object)
}
