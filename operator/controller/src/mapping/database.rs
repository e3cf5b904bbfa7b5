//! PostgreSQL: the generated password Secret, the data claim, and the Pod, following the official image's
//! conventions (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA) with a readiness probe that means
//! "accepting connections" (`pg_isready`).

use std::collections::BTreeMap;

use berth_api::DatabaseSpec;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSpec, Secret,
    SecretKeySelector, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{Names, PASSWORD_KEY, POSTGRES_PORT, URL_KEY};

/// Where the data volume is mounted; PGDATA is a directory below it, as the official image recommends for
/// volumes that contain a lost+found directory.
const DATA_MOUNT: &str = "/var/lib/postgresql/data";
const PGDATA: &str = "/var/lib/postgresql/data/pgdata";

/// The Secret berth makes for the database: `DATABASE_URL` under `url`, and the password when berth generated
/// it (`generated`).
pub fn secret(meta: ObjectMeta, password: &str, generated: bool, url: String) -> Secret {
    let mut data = BTreeMap::from([(URL_KEY.to_owned(), url)]);
    if generated {
        data.insert(PASSWORD_KEY.to_owned(), password.to_owned());
    }
    Secret {
        metadata: meta,
        type_: Some("Opaque".to_owned()),
        string_data: Some(data),
        ..Secret::default()
    }
}

/// Userinfo and path segments keep RFC 3986's unreserved characters; everything else is percent-encoded, so
/// a password with `@`, `:` or `/` cannot break the URL.
const URL_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `DATABASE_URL`: the user, password and database name percent-encoded.
pub fn url(names: &Names, spec: &DatabaseSpec, password: &str) -> String {
    let escape = |text: &str| utf8_percent_encode(text, URL_ESCAPED).to_string();
    format!(
        "postgresql://{}:{}@{}:{POSTGRES_PORT}/{}",
        escape(&spec.user),
        escape(password),
        names.database,
        escape(&spec.database_name)
    )
}

/// The Secret and key that hold the password: the spec's own, or the generated one.
pub fn password_source(names: &Names, spec: &DatabaseSpec) -> SecretKeySelector {
    match &spec.password_secret_ref {
        Some(r) => SecretKeySelector {
            name: r.name.clone(),
            key: r.key.clone(),
            optional: Some(false),
        },
        None => SecretKeySelector {
            name: names.secret.clone(),
            key: PASSWORD_KEY.to_owned(),
            optional: Some(false),
        },
    }
}

pub fn claim(meta: ObjectMeta, spec: &DatabaseSpec) -> PersistentVolumeClaim {
    storage_claim(
        meta,
        &spec.storage.size,
        spec.storage.storage_class_name.clone(),
    )
}

/// A ReadWriteOnce claim of `size`.
pub fn storage_claim(
    meta: ObjectMeta,
    size: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    storage_class_name: Option<String>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

pub fn pod(meta: ObjectMeta, names: &Names, spec: &DatabaseSpec) -> Pod {
    let env = vec![
        EnvVar {
            name: "POSTGRES_USER".into(),
            value: Some(spec.user.clone()),
            value_from: None,
        },
        EnvVar {
            name: "POSTGRES_DB".into(),
            value: Some(spec.database_name.clone()),
            value_from: None,
        },
        EnvVar {
            name: "POSTGRES_PASSWORD".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(password_source(names, spec)),
                ..EnvVarSource::default()
            }),
        },
        EnvVar {
            name: "PGDATA".into(),
            value: Some(PGDATA.into()),
            value_from: None,
        },
    ];
    let (startup, ready) = super::startup_and_readiness(ExecAction {
        command: Some(vec![
            "pg_isready".into(),
            "--host=127.0.0.1".into(),
            format!("--port={POSTGRES_PORT}"),
            format!("--username={}", spec.user),
            format!("--dbname={}", spec.database_name),
        ]),
    });
    Pod {
        metadata: meta,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "postgres".into(),
                image: Some(spec.image.clone()),
                env: Some(env),
                ports: Some(vec![ContainerPort {
                    name: Some("postgres".into()),
                    container_port: POSTGRES_PORT,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]),
                startup_probe: Some(startup),
                readiness_probe: Some(ready),
                resources: spec.resources.clone(),
                volume_mounts: Some(vec![VolumeMount {
                    name: "data".into(),
                    mount_path: DATA_MOUNT.into(),
                    ..VolumeMount::default()
                }]),
                ..Container::default()
            }],
            volumes: Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: names.database_claim.clone(),
                    read_only: Some(false),
                }),
                ..Volume::default()
            }]),
            restart_policy: Some("Always".into()),
            ..PodSpec::default()
        }),
        status: None,
    }
}
