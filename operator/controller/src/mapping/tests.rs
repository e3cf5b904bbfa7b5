use berth_api::Stack;
use k8s_openapi::api::core::v1::EnvVar;

use super::*;

const SAMPLE: &str = include_str!("../../../../config/samples/stack.yaml");

fn sample() -> Stack {
    let mut stack: Stack = serde_yaml::from_str(SAMPLE).unwrap();
    stack.metadata.namespace = Some("default".into());
    stack.metadata.uid = Some("uid-1".into());
    stack
}

fn env_of(pod: &Pod) -> Vec<EnvVar> {
    pod.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default()
}

#[test]
fn sample_maps_to_secret_claim_three_services_and_pods() {
    let d = desired(&sample(), "s3cret").unwrap();
    assert_eq!(
        d.secret.as_ref().unwrap().metadata.name.as_deref(),
        Some("demo-db-credentials")
    );
    assert_eq!(d.claims.len(), 1, "redis persistence is off in the sample");
    let services: Vec<_> = d
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(services, vec!["demo-db", "demo-redis", "demo-app"]);
    assert!(d.database.is_some() && d.redis.is_some());
    assert_eq!(d.app.len(), 1);
    assert!(
        d.app[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("demo-app-")
    );
}

#[test]
fn every_object_is_labelled_and_owned_by_the_stack() {
    let d = desired(&sample(), "pw").unwrap();
    let metas = d
        .services
        .iter()
        .map(|s| &s.metadata)
        .chain(d.claims.iter().map(|c| &c.metadata))
        .chain(d.app.iter().map(|p| &p.metadata))
        .chain(d.database.iter().map(|p| &p.metadata))
        .chain(d.secret.iter().map(|s| &s.metadata));
    for meta in metas {
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_STACK], "demo");
        assert!(labels.contains_key(LABEL_COMPONENT));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Stack", "uid-1", Some(true))
        );
        assert_eq!(meta.namespace.as_deref(), Some("default"));
    }
}

#[test]
fn app_gets_database_and_redis_urls_before_its_own_env() {
    let d = desired(&sample(), "pw").unwrap();
    let env = env_of(&d.app[0]);
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        &names[..3],
        &["DATABASE_PASSWORD", "DATABASE_URL", "REDIS_URL"]
    );
    let url = env[1]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (url.name.as_str(), url.key.as_str()),
        ("demo-db-credentials", URL_KEY)
    );
    assert_eq!(
        d.secret.as_ref().unwrap().string_data.as_ref().unwrap()[URL_KEY],
        "postgresql://demo:pw@demo-db:5432/demo"
    );
    assert_eq!(env[2].value.as_deref(), Some("redis://demo-redis:6379/0"));
    assert!(names.contains(&"FLASK_RUN_PORT"), "the user's env follows");
    let secret = env[0]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("demo-db-credentials", PASSWORD_KEY)
    );
}

#[test]
fn database_pod_follows_the_official_image_conventions() {
    let d = desired(&sample(), "pw").unwrap();
    let pod = d.database.unwrap();
    let env = env_of(&pod);
    let get = |n: &str| env.iter().find(|e| e.name == n).unwrap().clone();
    assert_eq!(get("POSTGRES_USER").value.as_deref(), Some("demo"));
    assert_eq!(get("POSTGRES_DB").value.as_deref(), Some("demo"));
    assert_eq!(
        get("PGDATA").value.as_deref(),
        Some("/var/lib/postgresql/data/pgdata")
    );
    assert!(get("POSTGRES_PASSWORD").value_from.is_some());
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let probe = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap();
    assert_eq!(probe.command.as_ref().unwrap()[0], "pg_isready");
    // The same check every second until PostgreSQL first accepts connections, then every 2 s.
    let startup = container.startup_probe.as_ref().unwrap();
    assert_eq!(startup.exec.as_ref(), Some(probe));
    assert_eq!(startup.period_seconds, Some(1));
    assert_eq!(
        container.readiness_probe.as_ref().unwrap().period_seconds,
        Some(2)
    );
    let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "demo-db-data"
    );
}

#[test]
fn a_named_password_secret_is_used_and_no_password_is_generated() {
    let mut stack = sample();
    stack.spec.database.as_mut().unwrap().password_secret_ref = Some(berth_api::SecretKeyRef {
        name: "mine".into(),
        key: "pw".into(),
    });
    assert!(
        desired(&stack, "").unwrap().secret.is_none(),
        "no password read, no URL to write"
    );
    let d = desired(&stack, "theirs").unwrap();
    let data = d.secret.unwrap().string_data.unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        vec![URL_KEY],
        "berth's Secret holds the URL only, not a password of its own"
    );
    assert_eq!(data[URL_KEY], "postgresql://demo:theirs@demo-db:5432/demo");
    let env = env_of(&d.app[0]);
    let secret = env[0]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("mine", "pw"));
}

#[test]
fn template_hash_is_stable_and_follows_the_spec() {
    let a = desired(&sample(), "pw").unwrap();
    let b = desired(&sample(), "other password").unwrap();
    assert_eq!(
        a.app_hash, b.app_hash,
        "the password is not part of the template"
    );
    let mut changed = sample();
    changed.spec.app.env.push(EnvVar {
        name: "X".into(),
        value: Some("1".into()),
        value_from: None,
    });
    let c = desired(&changed, "pw").unwrap();
    assert_ne!(a.app_hash, c.app_hash);
    assert_eq!(
        c.app[0].metadata.labels.as_ref().unwrap()[LABEL_TEMPLATE_HASH],
        c.app_hash
    );
}

#[test]
fn replicas_and_redis_persistence_shape_the_result() {
    let mut stack = sample();
    stack.spec.app.replicas = 3;
    stack.spec.redis.as_mut().unwrap().persistence.enabled = true;
    let d = desired(&stack, "pw").unwrap();
    assert_eq!(d.app.len(), 3);
    let claims: Vec<_> = d
        .claims
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(claims, vec!["demo-db-data", "demo-redis-data"]);
    let redis = d.redis.unwrap();
    assert_eq!(
        redis.spec.unwrap().containers[0].args.as_ref().unwrap()[0],
        "--appendonly"
    );
}

#[test]
fn migration_runs_the_app_image_once_without_ports_or_probes() {
    let mut stack = sample();
    stack.spec.app.migrate = Some(berth_api::MigrateSpec {
        image: None,
        command: vec!["flask".into(), "db".into(), "upgrade".into()],
        args: vec![],
    });
    let d = desired(&stack, "pw").unwrap();
    let migrate = d.migrate.unwrap();
    let name = migrate.metadata.name.clone().unwrap();
    assert!(name.starts_with("demo-migrate-"), "{name}");

    // A fixed migration command alone is a new migration Pod; the app's Pods stay the same.
    stack.spec.app.migrate.as_mut().unwrap().command =
        vec!["flask".into(), "db".into(), "stamp".into()];
    let fixed = desired(&stack, "pw").unwrap();
    assert_ne!(fixed.migrate.unwrap().metadata.name.unwrap(), name);
    assert_eq!(fixed.app_hash, d.app_hash);

    let spec = migrate.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some(stack.spec.app.image.as_str()));
    assert!(c.ports.is_none() && c.readiness_probe.is_none());
    assert!(env_of_container(c).iter().any(|e| e.name == "DATABASE_URL"));
}

fn env_of_container(c: &k8s_openapi::api::core::v1::Container) -> Vec<EnvVar> {
    c.env.clone().unwrap_or_default()
}

#[test]
fn a_stack_without_database_or_redis_gets_only_app_objects() {
    let mut stack = sample();
    stack.spec.database = None;
    stack.spec.redis = None;
    let d = desired(&stack, "pw").unwrap();
    assert!(d.secret.is_none() && d.claims.is_empty() && d.database.is_none() && d.redis.is_none());
    assert_eq!(d.services.len(), 1);
    assert!(env_of(&d.app[0]).iter().all(|e| e.name != "DATABASE_URL"));
}

#[test]
fn overlong_stack_names_are_refused_with_the_limit() {
    let mut stack = sample();
    stack.metadata.name = Some("x".repeat(58));
    assert_eq!(
        desired(&stack, "pw").unwrap_err(),
        MappingError::NameTooLong {
            name: "x".repeat(58),
            max: 57
        }
    );
}

#[test]
fn the_database_url_percent_encodes_the_password() {
    let d = desired(&sample(), "p@ss:w/rd%?#").unwrap();
    assert_eq!(
        d.secret.unwrap().string_data.unwrap()[URL_KEY],
        "postgresql://demo:p%40ss%3Aw%2Frd%25%3F%23@demo-db:5432/demo"
    );
}
