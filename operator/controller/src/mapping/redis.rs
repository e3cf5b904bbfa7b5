//! Redis: the Pod (append-only persistence on a claim when asked for) with a readiness probe that means
//! "answering commands" (`redis-cli ping`).

use berth_api::RedisSpec;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
    Pod, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Names, REDIS_PORT};

const DATA_MOUNT: &str = "/data";

pub fn claim(meta: ObjectMeta, spec: &RedisSpec) -> PersistentVolumeClaim {
    super::database::storage_claim(
        meta,
        &spec.persistence.size,
        spec.persistence.storage_class_name.clone(),
    )
}

pub fn pod(meta: ObjectMeta, names: &Names, spec: &RedisSpec) -> Pod {
    let persistent = spec.persistence.enabled;
    // The official image's entrypoint runs redis-server with arguments that start with "--".
    let args = persistent.then(|| {
        vec![
            "--appendonly".to_owned(),
            "yes".to_owned(),
            "--dir".to_owned(),
            DATA_MOUNT.to_owned(),
        ]
    });
    let (startup, ready) = super::startup_and_readiness(ExecAction {
        command: Some(vec![
            "redis-cli".into(),
            "-p".into(),
            REDIS_PORT.to_string(),
            "ping".into(),
        ]),
    });
    Pod {
        metadata: meta,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "redis".into(),
                image: Some(spec.image.clone()),
                args,
                ports: Some(vec![ContainerPort {
                    name: Some("redis".into()),
                    container_port: REDIS_PORT,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]),
                startup_probe: Some(startup),
                readiness_probe: Some(ready),
                resources: spec.resources.clone(),
                volume_mounts: persistent.then(|| {
                    vec![VolumeMount {
                        name: "data".into(),
                        mount_path: DATA_MOUNT.into(),
                        ..VolumeMount::default()
                    }]
                }),
                ..Container::default()
            }],
            volumes: persistent.then(|| {
                vec![Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: names.redis_claim.clone(),
                        read_only: Some(false),
                    }),
                    ..Volume::default()
                }]
            }),
            restart_policy: Some("Always".into()),
            ..PodSpec::default()
        }),
        status: None,
    }
}
