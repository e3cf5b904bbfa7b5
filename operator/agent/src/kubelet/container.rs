//! One Pod container as the runtime's [`ContainerConfig`]: the image's defaults combined with the container's
//! command, args, environment, working directory and user as Kubernetes combines them, its resources as cgroup
//! limits and its `securityContext` as the runtime's security settings. Pure, except for reading the image's
//! `/etc/passwd` and `/etc/group` to resolve a user name.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};

use super::{env, quantity};
use crate::image::Image;
use crate::runtime::{ContainerConfig, LogConfig, Security, User};

/// What else the config needs beside the Pod, the container and its image.
pub struct Placement {
    pub id: String,
    pub netns: Option<PathBuf>,
    pub log_path: PathBuf,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<crate::runtime::Mount>,
    pub pids_limit: Option<i64>,
}

/// Builds the runtime config, or says why the container cannot be configured
/// (`CreateContainerConfigError`).
pub fn config(
    pod: &Pod,
    container: &Container,
    image: &Image,
    placement: Placement,
) -> Result<ContainerConfig, String> {
    let spec = pod.spec.as_ref();
    let command = env::expand_all(
        container.command.as_deref().unwrap_or_default(),
        &placement.env,
    );
    let args = env::expand_all(
        container.args.as_deref().unwrap_or_default(),
        &placement.env,
    );
    let argv = image.config.argv(&command, &args);
    if argv.is_empty() {
        return Err(format!(
            "no command specified: image {} has neither an entrypoint nor a cmd, and the container sets no command",
            image.reference
        ));
    }
    let env = merge_env(&image.config.env, placement.env);
    let security = container.security_context.as_ref();
    let pod_security = spec.and_then(|s| s.security_context.as_ref());
    if security.and_then(|s| s.privileged) == Some(true) {
        return Err("privileged containers are not supported by berth".into());
    }
    let user = user(container, pod, image)?;
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .map(|h| h.chars().take(63).collect());
    let cwd = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| image.config.working_dir.clone())
        .map(PathBuf::from);
    Ok(ContainerConfig {
        id: placement.id,
        lowerdirs: image.layers.clone(),
        args: argv,
        env,
        cwd,
        user,
        hostname,
        mounts: placement.mounts,
        netns: placement.netns,
        resources: quantity::runtime_resources(container.resources.as_ref(), placement.pids_limit)?,
        security: security_settings(security, pod_security)?,
        tty: container.tty == Some(true),
        stdin: container.stdin == Some(true),
        log: LogConfig {
            path: Some(placement.log_path),
            ..LogConfig::default()
        },
    })
}

/// The image's `NAME=value` entries overridden by the container's, names unique, image order first.
fn merge_env(image: &[String], container: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| match merged.iter_mut().find(|(n, _)| *n == name) {
        Some(entry) => entry.1 = value,
        None => merged.push((name, value)),
    };
    for entry in image {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        if !name.is_empty() {
            set(name.to_owned(), value.to_owned());
        }
    }
    for (name, value) in container {
        set(name, value);
    }
    merged
}

/// `securityContext` as the runtime's settings. Without a seccompProfile berth applies its RuntimeDefault
/// profile (as a kubelet run with `--seccomp-default`).
fn security_settings(
    container: Option<&SecurityContext>,
    pod: Option<&k8s_openapi::api::core::v1::PodSecurityContext>,
) -> Result<Security, String> {
    let profile = container
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod.and_then(|p| p.seccomp_profile.as_ref()));
    let seccomp = match profile.map(|p| p.type_.as_str()) {
        None | Some("RuntimeDefault") => true,
        Some("Unconfined") => false,
        Some(other) => {
            return Err(format!(
                "seccompProfile type {other} is not supported: use RuntimeDefault or Unconfined"
            ));
        }
    };
    let capabilities = container.and_then(|s| s.capabilities.as_ref());
    Ok(Security {
        read_only_rootfs: container.and_then(|s| s.read_only_root_filesystem) == Some(true),
        capabilities_add: capabilities.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: capabilities
            .and_then(|c| c.drop.clone())
            .unwrap_or_default(),
        seccomp,
        no_new_privileges: container.and_then(|s| s.allow_privilege_escalation) == Some(false),
    })
}

/// runAsUser/runAsGroup (the container's over the Pod's), else the image's `User`, resolved against the
/// image's own `/etc/passwd` and `/etc/group` when it names a user or group.
fn user(container: &Container, pod: &Pod, image: &Image) -> Result<User, String> {
    let security = container.security_context.as_ref();
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let run_as_user = security
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_security.and_then(|s| s.run_as_user));
    let run_as_group = security
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_security.and_then(|s| s.run_as_group));
    let to_id =
        |v: i64, what: &str| u32::try_from(v).map_err(|_| format!("{what} {v} is out of range"));
    let (mut uid, mut gid) = match image.config.user.as_deref() {
        Some(spec) => resolve_image_user(spec, &image.layers)?,
        None => (0, 0),
    };
    if let Some(u) = run_as_user {
        uid = to_id(u, "runAsUser")?;
        if run_as_group.is_none() && image.config.user.is_none() {
            gid = 0;
        }
    }
    if let Some(g) = run_as_group {
        gid = to_id(g, "runAsGroup")?;
    }
    let additional_gids = pod_security
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| to_id(g, "supplementalGroups entry"))
        .collect::<Result<_, _>>()?;
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// `user`, `uid`, `user:group` or `uid:gid`, names looked up in the image.
fn resolve_image_user(spec: &str, layers: &[PathBuf]) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (
            uid,
            lookup(layers, "etc/passwd", |fields| {
                (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields.get(3)?.parse().ok())?
            }),
        ),
        Err(_) => {
            let found = lookup(layers, "etc/passwd", |fields| {
                (fields.first()? == &user)
                    .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
            });
            let (uid, gid) = found.ok_or_else(|| {
                format!(
                    "unable to find user {user}: no matching entries in the image's /etc/passwd"
                )
            })?;
            (uid, Some(gid))
        }
    };
    let gid = match group {
        None => primary_gid.unwrap_or(0),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(layers, "etc/group", |fields| {
                (fields.first()? == &group).then(|| fields.get(2)?.parse().ok())?
            })
            .ok_or_else(|| {
                format!(
                    "unable to find group {group}: no matching entries in the image's /etc/group"
                )
            })?,
        },
    };
    Ok((uid, gid))
}

/// The first line of `file` (in the topmost layer that has it) for which `pick` answers.
fn lookup<T>(layers: &[PathBuf], file: &str, pick: impl Fn(&[&str]) -> Option<T>) -> Option<T> {
    let path = layers
        .iter()
        .rev()
        .map(|l| l.join(file))
        .find(|p| p.is_file())?;
    let text = read_small(&path)?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        pick(&fields)
    })
}

fn read_small(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    // A symbolic link in an image could point anywhere on the host: only plain files are read.
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Digest, ImageConfig};
    use serde_json::json;

    fn image(layers: Vec<PathBuf>, config: ImageConfig) -> Image {
        Image {
            reference: "example/app:1".into(),
            digest: Digest::of(b"x"),
            index_digest: None,
            config,
            layers,
            size: 0,
        }
    }

    fn pod(container: serde_json::Value, pod_security: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [container], "securityContext": pod_security},
        }))
        .unwrap()
    }

    fn placement(env: &[(&str, &str)]) -> Placement {
        Placement {
            id: "u-c0-0".into(),
            netns: Some("/run/netns/x".into()),
            log_path: "/logs/0.log".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts: Vec::new(),
            pids_limit: Some(4096),
        }
    }

    #[test]
    fn command_args_env_and_workdir_combine_as_kubernetes_does() {
        let layers = vec![PathBuf::from("/layers/a")];
        let config = ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            working_dir: Some("/srv".into()),
            ..ImageConfig::default()
        };
        let pod = pod(
            json!({"name": "c", "image": "example/app:1", "args": ["--name=$(NAME)", "$$(NAME)"]}),
            json!({}),
        );
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let got = super::config(
            &pod,
            c,
            &image(layers.clone(), config),
            placement(&[("MODE", "pod"), ("NAME", "web")]),
        )
        .unwrap();
        assert_eq!(got.args, ["/entry", "--name=web", "$(NAME)"]);
        assert_eq!(
            got.env,
            [
                ("PATH".to_string(), "/bin".to_string()),
                ("MODE".into(), "pod".into()),
                ("NAME".into(), "web".into())
            ]
        );
        assert_eq!(got.cwd, Some(PathBuf::from("/srv")));
        assert_eq!(got.hostname.as_deref(), Some("web"));
        assert_eq!(got.lowerdirs, layers);
        assert!(got.security.seccomp, "RuntimeDefault without a profile");
        assert_eq!(got.resources.pids_limit, Some(4096));
        got.validate().unwrap();
    }

    #[test]
    fn security_context_maps_to_the_runtime_and_privileged_is_refused() {
        let pod = pod(
            json!({"name": "c", "image": "x", "command": ["sh"], "securityContext": {
                "runAsUser": 1000, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "seccompProfile": {"type": "Unconfined"}}}),
            json!({"runAsGroup": 3000, "supplementalGroups": [4000]}),
        );
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let got = super::config(
            &pod,
            c,
            &image(vec!["/l".into()], ImageConfig::default()),
            placement(&[]),
        )
        .unwrap();
        assert_eq!(
            got.user,
            User {
                uid: 1000,
                gid: 3000,
                additional_gids: vec![4000]
            }
        );
        assert!(got.security.read_only_rootfs);
        assert!(got.security.no_new_privileges);
        assert!(!got.security.seccomp);
        assert_eq!(got.security.capabilities_add, ["NET_ADMIN"]);
        assert_eq!(got.security.capabilities_drop, ["ALL"]);

        let privileged = self::pod(
            json!({"name": "c", "image": "x", "command": ["sh"], "securityContext": {"privileged": true}}),
            json!({}),
        );
        let c = &privileged.spec.as_ref().unwrap().containers[0];
        let err = super::config(
            &privileged,
            c,
            &image(vec!["/l".into()], ImageConfig::default()),
            placement(&[]),
        )
        .unwrap_err();
        assert!(err.contains("privileged"), "{err}");
    }

    #[test]
    fn image_user_names_resolve_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("l0");
        let upper = dir.path().join("l1");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "app:x:1:1::/:/bin/sh\n").unwrap();
        std::fs::write(
            upper.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(upper.join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = vec![lower, upper];
        assert_eq!(resolve_image_user("app", &layers).unwrap(), (1001, 1002));
        assert_eq!(
            resolve_image_user("app:staff", &layers).unwrap(),
            (1001, 50)
        );
        assert_eq!(resolve_image_user("1001", &layers).unwrap(), (1001, 1002));
        assert_eq!(resolve_image_user("7:8", &layers).unwrap(), (7, 8));
        assert!(
            resolve_image_user("nobody", &layers)
                .unwrap_err()
                .contains("nobody")
        );
    }

    #[test]
    fn an_image_and_pod_without_a_command_is_an_error() {
        let pod = pod(json!({"name": "c", "image": "x"}), json!({}));
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let err = super::config(
            &pod,
            c,
            &image(vec!["/l".into()], ImageConfig::default()),
            placement(&[]),
        )
        .unwrap_err();
        assert!(err.contains("no command"), "{err}");
    }
}
