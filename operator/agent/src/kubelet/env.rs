//! A container's environment as the kubelet builds it: `envFrom` first, then `env` in order, each value
//! `$(VAR)`-expanded against what came before it; `valueFrom` resolved from Secrets, ConfigMaps, the Pod's own
//! fields and its resources. The Secrets and ConfigMaps are fetched beforehand ([`References`] says which), so
//! everything here is a pure function of the Pod and those objects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};

use super::quantity;

/// Why a container's environment could not be built (upstream's `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    #[error("unsupported container resource: {0}")]
    UnsupportedResource(String),
    #[error("invalid {what} quantity {value:?}")]
    BadQuantity { what: String, value: String },
}

/// The Secrets and ConfigMaps a Pod's environment names (fetched by the caller).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub secrets: BTreeSet<String>,
    pub config_maps: BTreeSet<String>,
}

/// What the environment is resolved against besides the Pod.
#[derive(Debug, Default)]
pub struct Sources {
    /// Fetched objects by name; a name absent from the map does not exist.
    pub secrets: HashMap<String, Secret>,
    pub config_maps: HashMap<String, ConfigMap>,
    /// The Pod's address, once the network gave it one.
    pub pod_ip: Option<String>,
    pub host_ip: String,
    /// The node's allocatable cpu (millicores) and memory (bytes): what `limits.*` means without a limit.
    pub node_cpu_milli: i128,
    pub node_memory: i128,
}

/// Every Secret and ConfigMap the containers' `env` and `envFrom` refer to.
pub fn references(containers: &[&Container]) -> References {
    let mut refs = References::default();
    for container in containers {
        for from in container.env_from.iter().flatten() {
            if let Some(s) = &from.secret_ref {
                refs.secrets.insert(s.name.clone());
            }
            if let Some(c) = &from.config_map_ref {
                refs.config_maps.insert(c.name.clone());
            }
        }
        for var in container.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(s) = &from.secret_key_ref {
                refs.secrets.insert(s.name.clone());
            }
            if let Some(c) = &from.config_map_key_ref {
                refs.config_maps.insert(c.name.clone());
            }
        }
    }
    refs
}

/// The container's environment, in order (later entries of the same name override earlier ones, as the
/// kubelet's list does; names are unique here).
pub fn resolve(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Ordered::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &from.config_map_ref {
            match sources.config_maps.get(&reference.name) {
                Some(map) => {
                    for (key, value) in map.data.iter().flatten() {
                        env.set_valid(format!("{prefix}{key}"), value.clone());
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(reference.name.clone())),
            }
        }
        if let Some(reference) = &from.secret_ref {
            match sources.secrets.get(&reference.name) {
                Some(secret) => {
                    for (key, value) in secret.data.iter().flatten() {
                        env.set_valid(
                            format!("{prefix}{key}"),
                            String::from_utf8_lossy(&value.0).into_owned(),
                        );
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(reference.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(pod, namespace, container, var, sources, &env)? {
            env.set(var.name.clone(), value);
        }
    }
    Ok(env.into_vec())
}

/// `$(VAR)` expansion of a container's command or args against its final environment.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    items
        .iter()
        .map(|item| expand(item, |name| map.get(name).map(|v| v.to_string())))
        .collect()
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the value when `lookup` knows NAME and stays as written
/// otherwise; `$$` is an escaped `$`; any other `$`, and an unclosed `$(`, stay as they are.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'$' => {
                out.push(b'$');
                i += 2;
            }
            b'(' => match bytes[i + 2..].iter().position(|&b| b == b')') {
                Some(len) => {
                    let name = &input[i + 2..i + 2 + len];
                    match lookup(name) {
                        Some(value) => out.extend_from_slice(value.as_bytes()),
                        None => out.extend_from_slice(format!("$({name})").as_bytes()),
                    }
                    i += 2 + len + 1;
                }
                None => {
                    out.extend_from_slice(b"$(");
                    i += 2;
                }
            },
            other => {
                out.push(b'$');
                out.push(other);
                i += 2;
            }
        }
    }
    // Only whole UTF-8 sequences of the input and of values were copied, in order.
    String::from_utf8(out)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// Names in insertion order, a later value replacing an earlier one in place.
#[derive(Default)]
struct Ordered {
    names: Vec<String>,
    values: BTreeMap<String, String>,
}

impl Ordered {
    fn set(&mut self, name: String, value: String) {
        if self.values.insert(name.clone(), value).is_none() {
            self.names.push(name);
        }
    }

    /// envFrom keys that are not valid variable names are skipped, as upstream does.
    fn set_valid(&mut self, name: String, value: String) {
        if is_env_var_name(&name) {
            self.set(name, value);
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    fn into_vec(self) -> Vec<(String, String)> {
        let mut values = self.values;
        self.names
            .into_iter()
            .filter_map(|name| values.remove(&name).map(|value| (name, value)))
            .collect()
    }
}

/// Upstream's `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// One variable's value; `None` for an optional reference that is absent (the variable is left out).
fn value_of(
    pod: &Pod,
    namespace: &str,
    container: &Container,
    var: &EnvVar,
    sources: &Sources,
    env: &Ordered,
) -> Result<Option<String>, EnvError> {
    let Some(from) = &var.value_from else {
        let value = var.value.as_deref().unwrap_or_default();
        return Ok(Some(expand(value, |name| env.get(name))));
    };
    if let Some(field) = &from.field_ref {
        return field_value(pod, field, sources).map(Some);
    }
    if let Some(resource) = &from.resource_field_ref {
        return resource_value(pod, container, resource, sources).map(Some);
    }
    if let Some(key_ref) = &from.secret_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(secret) = sources.secrets.get(&key_ref.name) else {
            return optional_or(optional, EnvError::SecretNotFound(key_ref.name.clone()));
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key_ref.key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned());
        return match value {
            Some(value) => Ok(Some(value)),
            None => optional_or(
                optional,
                EnvError::SecretKeyNotFound {
                    namespace: namespace.to_owned(),
                    name: key_ref.name.clone(),
                    key: key_ref.key.clone(),
                },
            ),
        };
    }
    if let Some(key_ref) = &from.config_map_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(map) = sources.config_maps.get(&key_ref.name) else {
            return optional_or(optional, EnvError::ConfigMapNotFound(key_ref.name.clone()));
        };
        let value = map
            .data
            .as_ref()
            .and_then(|d| d.get(&key_ref.key))
            .cloned()
            .or_else(|| {
                map.binary_data
                    .as_ref()
                    .and_then(|d| d.get(&key_ref.key))
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            });
        return match value {
            Some(value) => Ok(Some(value)),
            None => optional_or(
                optional,
                EnvError::ConfigMapKeyNotFound {
                    namespace: namespace.to_owned(),
                    name: key_ref.name.clone(),
                    key: key_ref.key.clone(),
                },
            ),
        };
    }
    Ok(Some(String::new()))
}

fn optional_or(optional: bool, err: EnvError) -> Result<Option<String>, EnvError> {
    if optional { Ok(None) } else { Err(err) }
}

/// The downward API's `fieldRef` paths.
fn field_value(
    pod: &Pod,
    field: &ObjectFieldSelector,
    sources: &Sources,
) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let in_map = |map: Option<&BTreeMap<String, String>>, prefix: &str| {
        let key = path
            .strip_prefix(prefix)?
            .strip_suffix("']")
            .or_else(|| path.strip_prefix(prefix)?.strip_suffix("\"]"))?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => sources.host_ip.clone(),
        "status.podIP" | "status.podIPs" => sources.pod_ip.clone().unwrap_or_default(),
        _ => {
            if let Some(v) = in_map(meta.labels.as_ref(), "metadata.labels['")
                .or_else(|| in_map(meta.labels.as_ref(), "metadata.labels[\""))
                .or_else(|| in_map(meta.annotations.as_ref(), "metadata.annotations['"))
                .or_else(|| in_map(meta.annotations.as_ref(), "metadata.annotations[\""))
            {
                v
            } else {
                return Err(EnvError::UnsupportedField(path.to_owned()));
            }
        }
    };
    Ok(value)
}

/// The downward API's `resourceFieldRef`: the container's limit (the node's allocatable without one) or
/// request, divided by `divisor` and rounded up, as upstream's `ExtractContainerResourceValue`.
fn resource_value(
    pod: &Pod,
    container: &Container,
    selector: &ResourceFieldSelector,
    sources: &Sources,
) -> Result<String, EnvError> {
    // A resourceFieldRef may name another container of the Pod.
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .unwrap_or(container),
        None => container,
    };
    let resources = container.resources.as_ref();
    let quantity_of = |which: &str, name: &str| -> Result<Option<i128>, EnvError> {
        let map = match which {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            _ => resources.and_then(|r| r.requests.as_ref()),
        };
        match map.and_then(|m| m.get(name)) {
            Some(q) => quantity::parse_milli(&q.0)
                .map(Some)
                .ok_or_else(|| EnvError::BadQuantity {
                    what: format!("{which}.{name}"),
                    value: q.0.clone(),
                }),
            None => Ok(None),
        }
    };
    let (which, name) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError::UnsupportedResource(selector.resource.clone()))?;
    // In milli-units, like the divisor.
    let milli = match (which, name) {
        ("limits", "cpu") => quantity_of(which, name)?.unwrap_or(sources.node_cpu_milli),
        ("limits", "memory") => {
            quantity_of(which, name)?.unwrap_or(sources.node_memory.saturating_mul(1000))
        }
        ("requests", "cpu") => quantity_of(which, name)?.unwrap_or(0),
        ("requests", "memory") => quantity_of(which, name)?.unwrap_or(0),
        ("limits" | "requests", "ephemeral-storage") => quantity_of(which, name)?.unwrap_or(0),
        _ => return Err(EnvError::UnsupportedResource(selector.resource.clone())),
    };
    let divisor = match &selector.divisor {
        Some(q) => quantity::parse_milli(&q.0)
            .filter(|d| *d > 0)
            .ok_or_else(|| EnvError::BadQuantity {
                what: "divisor".into(),
                value: q.0.clone(),
            })?,
        None => 1000,
    };
    let value = (milli + divisor - 1) / divisor;
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn expansion_follows_upstream_rules() {
        let vars = lookup(&[("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", "")]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_A)___", "___A___"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("abc$", "abc$"),
            ("$", "$"),
            ("$()", "$()"),
            ("$(EMPTY)x", "x"),
            ("$(VAR_A)$", "A$"),
            ("ünï$(VAR_B)cödé", "ünïBcödé"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &vars), want, "input {input:?}");
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}, "annotations": {"team": "core"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn resolve_first(pod: &Pod, sources: &Sources) -> Result<Vec<(String, String)>, EnvError> {
        let container = &pod.spec.as_ref().unwrap().containers[0];
        resolve(pod, container, sources)
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_expand_against_earlier_variables_only() {
        let pod = pod(json!({"containers": [{"name": "c", "env": [
            {"name": "LATER_REF", "value": "$(HOST)"},
            {"name": "HOST", "value": "db"},
            {"name": "URL", "value": "pg://$(HOST):$(PORT)/$$(HOST)"},
            {"name": "PORT", "value": "5432"},
        ]}]}));
        let env = resolve_first(&pod, &Sources::default()).unwrap();
        assert_eq!(
            env,
            pairs(&[
                ("LATER_REF", "$(HOST)"),
                ("HOST", "db"),
                ("URL", "pg://db:$(PORT)/$(HOST)"),
                ("PORT", "5432"),
            ])
        );
    }

    #[test]
    fn env_from_comes_first_with_prefix_and_env_overrides_it() {
        let pod = pod(json!({"containers": [{"name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                        {"secretRef": {"name": "s"}}],
            "env": [{"name": "PASSWORD", "value": "override-$(CM_MODE)"}],
        }]}));
        let mut sources = Sources::default();
        sources.config_maps.insert(
            "cm".into(),
            config_map("cm", &[("MODE", "prod"), ("bad key", "x")]),
        );
        sources.secrets.insert(
            "s".into(),
            secret("s", &[("PASSWORD", "hunter2"), ("USER", "me")]),
        );
        let env = resolve_first(&pod, &sources).unwrap();
        assert_eq!(
            env,
            pairs(&[
                ("CM_MODE", "prod"),
                ("PASSWORD", "override-prod"),
                ("USER", "me")
            ])
        );
    }

    #[test]
    fn key_refs_resolve_and_missing_ones_fail_unless_optional() {
        let pod = pod(json!({"containers": [{"name": "c", "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "mode"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
        ]}]}));
        let mut sources = Sources::default();
        sources
            .secrets
            .insert("s".into(), secret("s", &[("pw", "hunter2")]));
        sources
            .config_maps
            .insert("cm".into(), config_map("cm", &[("mode", "dev")]));
        assert_eq!(
            resolve_first(&pod, &sources).unwrap(),
            pairs(&[("PW", "hunter2"), ("MODE", "dev")])
        );

        sources.secrets.clear();
        assert_eq!(
            resolve_first(&pod, &sources).unwrap_err(),
            EnvError::SecretNotFound("s".into())
        );
        sources
            .secrets
            .insert("s".into(), secret("s", &[("other", "x")]));
        assert_eq!(
            resolve_first(&pod, &sources).unwrap_err().to_string(),
            "couldn't find key pw in Secret shop/s"
        );
    }

    #[test]
    fn field_refs_read_the_pod_and_its_addresses() {
        let pod = pod(
            json!({"nodeName": "n1", "containers": [{"name": "c", "env": [
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['team']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            ]}]}),
        );
        let sources = Sources {
            pod_ip: Some("10.88.0.5".into()),
            host_ip: "127.0.0.1".into(),
            ..Sources::default()
        };
        assert_eq!(
            resolve_first(&pod, &sources).unwrap(),
            pairs(&[
                ("NAME", "web"),
                ("NS", "shop"),
                ("APP", "web"),
                ("TEAM", "core"),
                ("NODE", "n1"),
                ("IP", "10.88.0.5"),
                ("HOST_IP", "127.0.0.1"),
            ])
        );
        let bad = self::pod(json!({"containers": [{"name": "c", "env": [
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]}]}));
        assert!(matches!(
            resolve_first(&bad, &sources),
            Err(EnvError::UnsupportedField(_))
        ));
    }

    #[test]
    fn resource_refs_divide_and_round_up_and_default_to_the_node() {
        let pod = pod(json!({"containers": [{"name": "c",
        "resources": {"limits": {"memory": "64Mi", "cpu": "1500m"}, "requests": {"cpu": "250m"}},
        "env": [
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        ]}, {"name": "other", "env": [
            {"name": "NODE_MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
        ]}]}));
        let sources = Sources {
            node_cpu_milli: 2000,
            node_memory: 1 << 30,
            ..Sources::default()
        };
        assert_eq!(
            resolve_first(&pod, &sources).unwrap(),
            pairs(&[("MEM_MI", "64"), ("CPU", "2"), ("REQ_M", "250")])
        );
        let other = &pod.spec.as_ref().unwrap().containers[1];
        assert_eq!(
            resolve(&pod, other, &sources).unwrap(),
            pairs(&[("NODE_MEM", "1073741824")])
        );
    }

    #[test]
    fn command_and_args_expand_against_the_final_environment() {
        let env = pairs(&[("GREETING", "hi"), ("WHO", "you")]);
        let args = vec![
            "echo $(GREETING) $(WHO)".to_string(),
            "$$(GREETING)".into(),
            "$(MISSING)".into(),
        ];
        assert_eq!(
            expand_all(&args, &env),
            ["echo hi you", "$(GREETING)", "$(MISSING)"]
        );
    }

    #[test]
    fn references_name_every_secret_and_config_map() {
        let pod = pod(json!({"containers": [{"name": "c",
            "envFrom": [{"secretRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "d", "key": "k"}}}]}]}));
        let containers: Vec<&Container> = pod.spec.as_ref().unwrap().containers.iter().collect();
        let refs = references(&containers);
        assert_eq!(refs.secrets, BTreeSet::from(["a".into(), "c".into()]));
        assert_eq!(refs.config_maps, BTreeSet::from(["b".into(), "d".into()]));
    }
}
