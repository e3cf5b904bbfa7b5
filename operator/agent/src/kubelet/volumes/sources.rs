//! From a Pod's `volumes[]` entry to a [`Plan`]: what to make on the host, with every API object it needs
//! (Secrets, ConfigMaps, claims and their volumes) already read. Making it is `host.rs`'s job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::Api;

use super::projection::{self, DEFAULT_MODE, File};
use crate::kubelet::quantity;

/// One volume to make.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Plan {
    EmptyDir {
        /// `medium: Memory`: a tmpfs.
        memory: bool,
        /// `sizeLimit` in bytes; the tmpfs's size.
        size_limit: Option<u64>,
        /// The directory's permission bits (`mode`, 0777 by default; the sticky bit is allowed).
        mode: u32,
    },
    HostPath {
        path: PathBuf,
        kind: HostPathType,
        read_only: bool,
    },
    /// The files of a secret, configMap, downwardAPI or projected volume.
    Files {
        /// The kubelet's plugin directory, `kubernetes.io~secret` …
        plugin: &'static str,
        files: Vec<File>,
        /// Secrets live in memory only, as with the kubelet.
        tmpfs: bool,
    },
}

/// `hostPath.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostPathType {
    /// `""`: no check.
    Any,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    fn parse(value: Option<&str>) -> Result<Self, String> {
        Ok(match value.unwrap_or("") {
            "" => Self::Any,
            "DirectoryOrCreate" => Self::DirectoryOrCreate,
            "Directory" => Self::Directory,
            "FileOrCreate" => Self::FileOrCreate,
            "File" => Self::File,
            "Socket" => Self::Socket,
            "CharDevice" => Self::CharDevice,
            "BlockDevice" => Self::BlockDevice,
            other => return Err(format!("unknown hostPath type {other:?}")),
        })
    }
}

/// Whether the volume is made of files from API objects (what [`super::Volumes::refresh`] rewrites).
pub(super) fn is_projected(volume: &Volume) -> bool {
    volume.secret.is_some()
        || volume.config_map.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

pub(super) async fn plan(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
) -> Result<Plan, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(empty_dir) = &volume.empty_dir {
        let memory = match empty_dir.medium.as_deref().unwrap_or("") {
            "" => false,
            "Memory" => true,
            other => return Err(format!("emptyDir medium {other:?} is not supported")),
        };
        let size_limit =
            match &empty_dir.size_limit {
                None => None,
                Some(limit) => Some(bytes(&limit.0).ok_or_else(|| {
                    format!("emptyDir sizeLimit {:?} is not a valid size", limit.0)
                })?),
            };
        let mode = empty_dir
            .mode
            .and_then(|m| u32::try_from(m).ok())
            .map_or(0o777, |m| m & 0o1777);
        return Ok(Plan::EmptyDir {
            memory,
            size_limit,
            mode,
        });
    }
    if let Some(host_path) = &volume.host_path {
        return Ok(Plan::HostPath {
            path: absolute(&host_path.path)?,
            kind: HostPathType::parse(host_path.type_.as_deref())?,
            read_only: false,
        });
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        return bound_volume(
            client,
            namespace,
            &claim.claim_name,
            claim.read_only == Some(true),
        )
        .await;
    }
    let source = Source { client, namespace };
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.as_deref().unwrap_or("");
        let default_mode = projection::mode(secret.default_mode, DEFAULT_MODE);
        let files = source
            .secret(
                name,
                secret.items.as_deref(),
                default_mode,
                secret.optional == Some(true),
            )
            .await?;
        return Ok(Plan::Files {
            plugin: "kubernetes.io~secret",
            files,
            tmpfs: true,
        });
    }
    if let Some(config_map) = &volume.config_map {
        let default_mode = projection::mode(config_map.default_mode, DEFAULT_MODE);
        let files = source
            .config_map(
                &config_map.name,
                config_map.items.as_deref(),
                default_mode,
                config_map.optional == Some(true),
            )
            .await?;
        return Ok(Plan::Files {
            plugin: "kubernetes.io~configmap",
            files,
            tmpfs: false,
        });
    }
    if let Some(downward) = &volume.downward_api {
        let default_mode = projection::mode(downward.default_mode, DEFAULT_MODE);
        return Ok(Plan::Files {
            plugin: "kubernetes.io~downward-api",
            files: downward_files(pod, downward.items.as_deref(), default_mode)?,
            tmpfs: false,
        });
    }
    if let Some(projected) = &volume.projected {
        let default_mode = projection::mode(projected.default_mode, DEFAULT_MODE);
        let mut files = Vec::new();
        for part in projected.sources.iter().flatten() {
            if let Some(secret) = &part.secret {
                files.extend(
                    source
                        .secret(
                            &secret.name,
                            secret.items.as_deref(),
                            default_mode,
                            secret.optional == Some(true),
                        )
                        .await?,
                );
            } else if let Some(config_map) = &part.config_map {
                files.extend(
                    source
                        .config_map(
                            &config_map.name,
                            config_map.items.as_deref(),
                            default_mode,
                            config_map.optional == Some(true),
                        )
                        .await?,
                );
            } else if let Some(downward) = &part.downward_api {
                files.extend(downward_files(
                    pod,
                    downward.items.as_deref(),
                    default_mode,
                )?);
            } else {
                return Err("projected sources other than secret, configMap and downwardAPI \
                            (serviceAccountToken, clusterTrustBundle, podCertificate) are not supported"
                    .into());
            }
        }
        return Ok(Plan::Files {
            plugin: "kubernetes.io~projected",
            files,
            tmpfs: true,
        });
    }
    Err(
        "volume type not supported by berth's agent (supported: emptyDir, hostPath, secret, \
         configMap, downwardAPI, projected, persistentVolumeClaim)"
            .into(),
    )
}

/// A byte quantity, rounded up to a whole byte.
fn bytes(text: &str) -> Option<u64> {
    let milli = quantity::parse_milli(text)?;
    u64::try_from((milli + 999) / 1000).ok()
}

fn absolute(path: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("hostPath {:?} is not absolute", path.display()))
    }
}

/// The claim's bound PersistentVolume, as a hostPath (its `hostPath` or `local` path).
async fn bound_volume(
    client: &kube::Client,
    namespace: &str,
    claim_name: &str,
    read_only: bool,
) -> Result<Plan, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim = claims
        .get_opt(claim_name)
        .await
        .map_err(|err| format!("reading persistentvolumeclaim {claim_name:?}: {err}"))?
        .ok_or_else(|| format!("persistentvolumeclaim {claim_name:?} not found"))?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty());
    let (Some("Bound"), Some(volume_name)) = (phase, volume_name) else {
        return Err(format!(
            "persistentvolumeclaim {claim_name:?} is not bound yet (phase {})",
            phase.unwrap_or("Pending")
        ));
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume = volumes
        .get_opt(volume_name)
        .await
        .map_err(|err| format!("reading persistentvolume {volume_name:?}: {err}"))?
        .ok_or_else(|| {
            format!("persistentvolume {volume_name:?} bound to claim {claim_name:?} not found")
        })?;
    let spec = volume.spec.unwrap_or_default();
    if let Some(host_path) = spec.host_path {
        return Ok(Plan::HostPath {
            path: absolute(&host_path.path)?,
            kind: HostPathType::parse(host_path.type_.as_deref())?,
            read_only,
        });
    }
    if let Some(local) = spec.local {
        return Ok(Plan::HostPath {
            path: absolute(&local.path)?,
            kind: HostPathType::Directory,
            read_only,
        });
    }
    Err(format!(
        "persistentvolume {volume_name:?} has no hostPath or local path; berth's agent mounts only those"
    ))
}

/// Reads the objects of secret and configMap sources in the Pod's namespace.
struct Source<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
}

impl Source<'_> {
    async fn secret(
        &self,
        name: &str,
        items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
        default_mode: u32,
        optional: bool,
    ) -> Result<Vec<File>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|err| format!("reading secret {name:?}: {err}"))?;
        let Some(secret) = secret else {
            return if optional {
                Ok(Vec::new())
            } else {
                Err(format!("secret {name:?} not found"))
            };
        };
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect();
        // stringData is write-only upstream; a server that kept it means the same thing, and it wins.
        for (key, value) in secret.string_data.unwrap_or_default() {
            data.insert(key, value.into_bytes());
        }
        projection::keys(&data, items, default_mode, optional, |key| {
            format!("references non-existent secret key: {key}")
        })
    }

    async fn config_map(
        &self,
        name: &str,
        items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
        default_mode: u32,
        optional: bool,
    ) -> Result<Vec<File>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
        let config_map = api
            .get_opt(name)
            .await
            .map_err(|err| format!("reading configmap {name:?}: {err}"))?;
        let Some(config_map) = config_map else {
            return if optional {
                Ok(Vec::new())
            } else {
                Err(format!("configmap {name:?} not found"))
            };
        };
        let mut data: BTreeMap<String, Vec<u8>> = config_map
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.into_bytes()))
            .collect();
        for (key, value) in config_map.binary_data.unwrap_or_default() {
            data.insert(key, value.0);
        }
        projection::keys(&data, items, default_mode, optional, |key| {
            format!("configmap references non-existent config key: {key}")
        })
    }
}

/// downwardAPI `items`: the Pod's metadata fields (the ones upstream allows in volumes).
fn downward_files(
    pod: &Pod,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: u32,
) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    for item in items.unwrap_or_default() {
        let Some(field) = &item.field_ref else {
            return Err(format!(
                "downwardAPI item {:?}: only fieldRef is supported (resourceFieldRef is not)",
                item.path
            ));
        };
        files.push(File {
            path: projection::relative(&item.path)?,
            data: field_value(pod, &field.field_path)?.into_bytes(),
            mode: projection::mode(item.mode, default_mode),
        });
    }
    Ok(files)
}

fn field_value(pod: &Pod, field_path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let one = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let subscript = |prefix: &str| {
        field_path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
    };
    Ok(match field_path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                one(&meta.labels, key)
            } else if let Some(key) = subscript("metadata.annotations") {
                one(&meta.annotations, key)
            } else {
                return Err(format!(
                    "fieldPath {field_path:?} is not supported in a downwardAPI volume"
                ));
            }
        }
    })
}

/// Upstream's `FormatMap`: `key="value"` lines, sorted, the value quoted as Go's `%q`.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(value: &str) -> String {
    let mut quoted = String::from('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[test]
    fn downward_fields_read_as_upstream_writes_them() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([
                    ("tier".into(), "front".into()),
                    ("app".into(), "say \"hi\"\n".into()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(field_value(&pod, "metadata.name").unwrap(), "web-0");
        assert_eq!(field_value(&pod, "metadata.uid").unwrap(), "u-1");
        assert_eq!(
            field_value(&pod, "metadata.labels").unwrap(),
            "app=\"say \\\"hi\\\"\\n\"\ntier=\"front\""
        );
        assert_eq!(
            field_value(&pod, "metadata.labels['tier']").unwrap(),
            "front"
        );
        assert_eq!(field_value(&pod, "metadata.annotations").unwrap(), "");
        assert!(
            field_value(&pod, "spec.nodeName")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn byte_sizes_round_up() {
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1k"), Some(1000));
        assert_eq!(bytes("1500m"), Some(2));
        assert_eq!(bytes("lots"), None);
    }
}
