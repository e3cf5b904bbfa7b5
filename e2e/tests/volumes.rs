//! The agent's volumes against a real `berth apiserver`: Secrets, ConfigMaps and claims read through kube-rs,
//! files, modes and the `..data` swap on the host, claims bound to PersistentVolumes. Each test has its own
//! server, namespace-less Pod uid and volume root, and cleans up the Pod's volumes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use berth_agent::kubelet::volumes::{PreparedVolumes, VolumeError, Volumes};
use berth_e2e::Server;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, HostPathVolumeSource, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec, Pod, PodSpec, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

fn unique(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn pod(uid: &str, volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            uid: Some(uid.into()),
            ..meta("web")
        },
        spec: Some(PodSpec {
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A volume root of its own; the Pod's volumes are cleaned up (unmounted, removed) when the test ends.
struct Node {
    volumes: Volumes,
    uid: String,
    _root: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        Self {
            volumes: Volumes::new(root.path().join("pods")),
            uid: unique("uid"),
            _root: root,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let volumes = self.volumes.clone();
        let uid = self.uid.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(volumes.cleanup(&uid))
        })
        .join()
        .unwrap()
        .unwrap();
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn secret_volume(name: &str, secret: &str, optional: bool) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            optional: Some(optional),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn secret_and_config_map_files_follow_their_objects() {
    let server = Server::start();
    let client = server.client().await;
    let node = Node::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secret_name = unique("db");
    let config_name = unique("app");
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta(&secret_name),
                data: Some(BTreeMap::from([
                    ("user".into(), ByteString(b"admin".to_vec())),
                    ("password".into(), ByteString(b"s3cret".to_vec())),
                ])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta(&config_name),
                data: Some(BTreeMap::from([("app.ini".into(), "level=1".into())])),
                binary_data: Some(BTreeMap::from([(
                    "logo.bin".into(),
                    ByteString(vec![0, 159, 146, 150]),
                )])),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let volumes = vec![
        Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name.clone()),
                default_mode: Some(0o400),
                items: Some(vec![KeyToPath {
                    key: "password".into(),
                    path: "db/password".into(),
                    mode: Some(0o440),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        secret_volume("maybe", &unique("absent"), true),
    ];
    let the_pod = pod(&node.uid, volumes);
    let prepared = node.volumes.prepare(&client, &the_pod).await.unwrap();

    let creds = prepared.path("creds").unwrap().to_path_buf();
    assert_eq!(
        fs::read_to_string(creds.join("db/password")).unwrap(),
        "s3cret"
    );
    assert_eq!(mode(&creds.join("db/password")), 0o440);
    assert!(!creds.join("user").exists(), "only the items are projected");
    let config = prepared.path("config").unwrap().to_path_buf();
    assert_eq!(
        fs::read_to_string(config.join("app.ini")).unwrap(),
        "level=1"
    );
    assert_eq!(
        fs::read(config.join("logo.bin")).unwrap(),
        vec![0, 159, 146, 150]
    );
    assert_eq!(mode(&config.join("app.ini")), 0o644);
    assert_eq!(
        fs::read_link(config.join("app.ini")).unwrap(),
        Path::new("..data/app.ini")
    );
    // An optional Secret that does not exist gives an empty volume.
    assert_eq!(
        fs::read_dir(prepared.path("maybe").unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
            .count(),
        0
    );
    // Secret, configMap volumes are mounted read-only whatever the volumeMount says.
    let container = Container {
        name: "app".into(),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: "/etc/app".into(),
            read_only: Some(false),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mounts = prepared.mounts(&container).unwrap();
    assert_eq!(mounts[0].source, config);
    assert!(mounts[0].read_only);

    // Nothing changed: refresh keeps the payload directory.
    let before = fs::read_link(config.join("..data")).unwrap();
    node.volumes.refresh(&client, &the_pod).await.unwrap();
    assert_eq!(fs::read_link(config.join("..data")).unwrap(), before);

    // The ConfigMap changes: a new payload swapped in through ..data, seen at the same path; a key removed is
    // gone.
    config_maps
        .patch(
            &config_name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"data": {"app.ini": "level=2"}, "binaryData": {"logo.bin": null}}),
            ),
        )
        .await
        .unwrap();
    node.volumes.refresh(&client, &the_pod).await.unwrap();
    let after = fs::read_link(config.join("..data")).unwrap();
    assert_ne!(after, before);
    assert!(!config.join(&before).exists());
    assert_eq!(
        fs::read_to_string(config.join("app.ini")).unwrap(),
        "level=2"
    );
    assert!(fs::symlink_metadata(config.join("logo.bin")).is_err());
}

#[tokio::test]
async fn missing_secrets_and_keys_are_named() {
    let server = Server::start();
    let client = server.client().await;
    let node = Node::new();
    let missing = unique("missing");
    let err = node
        .volumes
        .prepare(
            &client,
            &pod(&node.uid, vec![secret_volume("creds", &missing, false)]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("MountVolume.SetUp failed for volume \"creds\" : secret \"{missing}\" not found")
    );

    let config_name = unique("cfg");
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta(&config_name),
                data: Some(BTreeMap::from([("a".into(), "1".into())])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let volume = Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_name,
            items: Some(vec![KeyToPath {
                key: "b".into(),
                path: "b".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = node
        .volumes
        .prepare(&client, &pod(&node.uid, vec![volume]))
        .await
        .unwrap_err();
    assert!(matches!(err, VolumeError::SetUp { ref volume, .. } if volume == "config"));
    assert!(
        err.to_string()
            .ends_with("configmap references non-existent config key: b"),
        "{err}"
    );
}

#[tokio::test]
async fn claims_mount_their_bound_volume_and_sub_paths_stay_inside() {
    let server = Server::start();
    let client = server.client().await;
    let node = Node::new();
    let storage = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("host-secret"), "no").unwrap();
    symlink(outside.path(), storage.path().join("escape")).unwrap();
    fs::write(storage.path().join("PG_VERSION"), "16").unwrap();

    let claim_name = unique("data");
    let volume_name = unique("pv");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    claims
        .create(
            &PostParams::default(),
            &PersistentVolumeClaim {
                metadata: meta(&claim_name),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(k8s_openapi::api::core::v1::VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity("1Gi".into()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let claim_volume = |read_only: bool| Volume {
        name: "data".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim_name.clone(),
            read_only: Some(read_only),
        }),
        ..Default::default()
    };

    let err = node
        .volumes
        .prepare(&client, &pod(&node.uid, vec![claim_volume(false)]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not bound yet"), "{err}");

    // Bind it the way the provisioner does: a PV, the claim's volumeName, both Bound.
    Api::<PersistentVolume>::all(client.clone())
        .create(
            &PostParams::default(),
            &PersistentVolume {
                metadata: ObjectMeta {
                    name: Some(volume_name.clone()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeSpec {
                    capacity: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    host_path: Some(HostPathVolumeSource {
                        path: storage.path().display().to_string(),
                        type_: Some("Directory".into()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    claims
        .patch(
            &claim_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"volumeName": volume_name}})),
        )
        .await
        .unwrap();
    claims
        .patch_status(
            &claim_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .unwrap();

    let prepared: PreparedVolumes = node
        .volumes
        .prepare(&client, &pod(&node.uid, vec![claim_volume(true)]))
        .await
        .unwrap();
    assert_eq!(prepared.path("data"), Some(storage.path()));
    let container = |sub_path: &str| Container {
        name: "db".into(),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/postgresql/data".into(),
            sub_path: Some(sub_path.into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mounts = prepared.mounts(&container("pgdata")).unwrap();
    assert!(mounts[0].read_only, "the claim's readOnly holds");
    assert!(storage.path().join("pgdata").is_dir());
    for escape in ["escape", "escape/host-secret", "../x"] {
        let err = prepared.mounts(&container(escape)).unwrap_err().to_string();
        assert!(
            err.starts_with("volumeMount \"data\" of container \"db\""),
            "{err}"
        );
    }

    // Cleanup leaves the claim's data where it is.
    node.volumes.cleanup(&node.uid).await.unwrap();
    assert_eq!(
        fs::read_to_string(storage.path().join("PG_VERSION")).unwrap(),
        "16"
    );
}
