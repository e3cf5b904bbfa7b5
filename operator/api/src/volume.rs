//! The volumes a Stack's app may use: a subset of core/v1 `Volume` (the full type alone makes the
//! CRD about 158 KB). Components turn a [`StackVolume`] into a core/v1 `Volume` with `From`, so this
//! is the one place that decides which sources berth supports.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A volume for the app's containers, mounted by name; exactly one source must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    { "required": ["emptyDir"] },
    { "required": ["hostPath"] },
    { "required": ["secret"] },
    { "required": ["configMap"] },
    { "required": ["persistentVolumeClaim"] },
]))]
pub struct StackVolume {
    /// Volume name, referenced by `volumeMounts[].name`: a DNS label, unique within the Stack.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A scratch directory that lives as long as the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// A directory or file of the node, e.g. the source tree for live reload in development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    /// The keys of a Secret, as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// The keys of a ConfigMap, as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// A PersistentVolumeClaim in the Stack's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

impl From<&StackVolume> for Volume {
    fn from(volume: &StackVolume) -> Self {
        Volume {
            name: volume.name.clone(),
            empty_dir: volume.empty_dir.clone(),
            host_path: volume.host_path.clone(),
            secret: volume.secret.clone(),
            config_map: volume.config_map.clone(),
            persistent_volume_claim: volume.persistent_volume_claim.clone(),
            ..Volume::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_is_carried_into_the_core_volume() {
        let stack_volume = StackVolume {
            name: "all".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: "/src".into(),
                type_: Some("Directory".into()),
            }),
            secret: Some(SecretVolumeSource {
                secret_name: Some("creds".into()),
                ..Default::default()
            }),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data".into(),
                read_only: Some(true),
            }),
        };

        let volume = Volume::from(&stack_volume);

        assert_eq!(volume.name, "all");
        assert_eq!(volume.empty_dir, stack_volume.empty_dir);
        assert_eq!(volume.host_path, stack_volume.host_path);
        assert_eq!(volume.secret, stack_volume.secret);
        assert_eq!(volume.config_map, stack_volume.config_map);
        assert_eq!(
            volume.persistent_volume_claim,
            stack_volume.persistent_volume_claim
        );
    }

    #[test]
    fn conversion_sets_no_other_source() {
        let volume = Volume::from(&StackVolume {
            name: "code".into(),
            host_path: Some(HostPathVolumeSource {
                path: "/home/me/app".into(),
                type_: None,
            }),
            ..Default::default()
        });

        let json = serde_json::to_value(&volume).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "code", "hostPath": {"path": "/home/me/app"}})
        );
    }

    #[test]
    fn volume_json_uses_the_core_field_names() {
        let volume: StackVolume = serde_json::from_value(serde_json::json!({
            "name": "cfg",
            "configMap": {"name": "settings"},
        }))
        .unwrap();

        assert_eq!(volume.config_map.unwrap().name, "settings");
    }
}
