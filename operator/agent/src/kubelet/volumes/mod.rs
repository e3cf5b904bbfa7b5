//! A Pod's volumes on the host, and each container's mounts of them. The kubelet's layout: everything a Pod
//! gets lives under `<root>/<pod uid>/` (`volumes/kubernetes.io~<plugin>/<name>`, `volume-subpaths/…`), so
//! [`Volumes::cleanup`] can unmount and remove all of it; hostPath and persistentVolumeClaim volumes point at
//! directories outside it that outlive the Pod.
//!
//! Public API:
//! - [`Volumes::new`]`(root)`; [`Volumes::prepare`]`(&client, &pod)` makes every volume of the Pod (emptyDir, also
//!   `medium: Memory` as a tmpfs sized by `sizeLimit`; hostPath with its type checks; secret, configMap,
//!   downwardAPI and projected as files written atomically, the kubelet's `..data` symlink swap; and
//!   persistentVolumeClaim through its bound PV's hostPath or local path). Safe to call again for the same Pod
//!   (after an agent restart): emptyDirs keep their content.
//! - [`PreparedVolumes::mounts`]`(&container)` gives the runtime's bind mounts for its `volumeMounts`
//!   (mountPath, readOnly, subPath: created when missing, refused when it leaves the volume).
//! - [`Volumes::refresh`]`(&client, &pod)` rewrites secret, configMap, downwardAPI and projected volumes whose
//!   source changed; running containers see the new files (call it when those objects or the Pod change).
//! - [`Volumes::cleanup`]`(pod_uid)` unmounts what `prepare` and `mounts` mounted and removes the Pod's directory.
//!
//! Errors ([`VolumeError`]) name the volume and the reason, worded as upstream's `FailedMount` events.

mod host;
mod projection;
mod sources;
mod subpath;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::Mount;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume could not be made; `reason` reads as upstream's (`secret "db" not found`).
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {reason}")]
    SetUp { volume: String, reason: String },
    /// A `volumeMounts` entry of a container cannot be honoured.
    #[error("volumeMount \"{volume}\" of container \"{container}\": {reason}")]
    Mount {
        volume: String,
        container: String,
        reason: String,
    },
    #[error("cleaning up the volumes of Pod {pod_uid}: {reason}")]
    Cleanup { pod_uid: String, reason: String },
    #[error("Pod {0}")]
    InvalidPod(String),
}

fn set_up(volume: &str) -> impl Fn(String) -> VolumeError + '_ {
    move |reason| VolumeError::SetUp {
        volume: volume.to_string(),
        reason,
    }
}

/// Where the agent keeps its Pods' volumes.
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

/// A Pod's volumes, made on the host.
#[derive(Debug, Clone)]
pub struct PreparedVolumes {
    pod_dir: PathBuf,
    volumes: BTreeMap<String, Prepared>,
}

/// One volume on the host.
#[derive(Debug, Clone, PartialEq)]
struct Prepared {
    path: PathBuf,
    /// Every mount of it is read-only (secret, configMap, downwardAPI and projected volumes; a claim or
    /// volume marked `readOnly`).
    read_only: bool,
}

impl Volumes {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of everything the Pod's volumes put on this host.
    pub fn pod_dir(&self, pod_uid: &str) -> Result<PathBuf, VolumeError> {
        if !is_name(pod_uid) {
            return Err(VolumeError::InvalidPod(format!(
                "uid {pod_uid:?} cannot name a directory"
            )));
        }
        Ok(self.root.join(pod_uid))
    }

    /// Makes every volume of `pod`, reading Secrets, ConfigMaps and claims through `client`.
    pub async fn prepare(
        &self,
        client: &kube::Client,
        pod: &Pod,
    ) -> Result<PreparedVolumes, VolumeError> {
        let pod_dir = self.pod_dir_of(pod)?;
        let mut volumes = BTreeMap::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if !is_name(&volume.name) {
                return Err(set_up(&volume.name)("not a valid volume name".into()));
            }
            let plan = sources::plan(client, pod, volume)
                .await
                .map_err(set_up(&volume.name))?;
            let dir = pod_dir.clone();
            let name = volume.name.clone();
            let prepared = tokio::task::spawn_blocking(move || host::make(&dir, &name, plan))
                .await
                .map_err(|err| set_up(&volume.name)(err.to_string()))?
                .map_err(set_up(&volume.name))?;
            volumes.insert(volume.name.clone(), prepared);
        }
        Ok(PreparedVolumes { pod_dir, volumes })
    }

    /// Rewrites the files of the Pod's secret, configMap, downwardAPI and projected volumes where their
    /// sources changed (a no-op otherwise). The other volumes are left alone.
    pub async fn refresh(&self, client: &kube::Client, pod: &Pod) -> Result<(), VolumeError> {
        let pod_dir = self.pod_dir_of(pod)?;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if !sources::is_projected(volume) || !is_name(&volume.name) {
                continue;
            }
            let plan = sources::plan(client, pod, volume)
                .await
                .map_err(set_up(&volume.name))?;
            let dir = pod_dir.clone();
            let name = volume.name.clone();
            tokio::task::spawn_blocking(move || host::make(&dir, &name, plan))
                .await
                .map_err(|err| set_up(&volume.name)(err.to_string()))?
                .map_err(set_up(&volume.name))?;
        }
        Ok(())
    }

    /// Unmounts every mount under the Pod's directory (tmpfs volumes, subPath binds), then removes it. hostPath
    /// and claim directories are not under it and stay as they are.
    pub async fn cleanup(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let pod_dir = self.pod_dir(pod_uid)?;
        tokio::task::spawn_blocking(move || host::remove_pod_dir(&pod_dir))
            .await
            .map_err(|err| err.to_string())
            .and_then(|done| done)
            .map_err(|reason| VolumeError::Cleanup {
                pod_uid: pod_uid.to_string(),
                reason,
            })
    }

    fn pod_dir_of(&self, pod: &Pod) -> Result<PathBuf, VolumeError> {
        let uid = pod
            .metadata
            .uid
            .as_deref()
            .ok_or_else(|| VolumeError::InvalidPod("has no uid".into()))?;
        self.pod_dir(uid)
    }
}

impl PreparedVolumes {
    /// Where the volume is on the host.
    pub fn path(&self, volume: &str) -> Option<&Path> {
        self.volumes.get(volume).map(|v| v.path.as_path())
    }

    /// The container's bind mounts, in the order of its `volumeMounts`. A subPath is resolved inside its volume
    /// (created as a directory when missing; `..` and symlinks out of the volume are refused) and bind-mounted
    /// under the Pod's directory, so that the container gets what was checked even if the path changes later.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let mut mounts = Vec::new();
        for (index, volume_mount) in container.volume_mounts.iter().flatten().enumerate() {
            let fail = |reason: String| VolumeError::Mount {
                volume: volume_mount.name.clone(),
                container: container.name.clone(),
                reason,
            };
            let volume = self
                .volumes
                .get(&volume_mount.name)
                .ok_or_else(|| fail("the Pod has no volume of that name".into()))?;
            let destination = PathBuf::from(&volume_mount.mount_path);
            if !destination.is_absolute()
                || destination
                    .components()
                    .any(|c| matches!(c, Component::ParentDir))
            {
                return Err(fail(format!(
                    "mountPath {:?} must be an absolute path without \"..\"",
                    volume_mount.mount_path
                )));
            }
            if volume_mount
                .sub_path_expr
                .as_deref()
                .is_some_and(|e| !e.is_empty())
            {
                return Err(fail("subPathExpr is not supported by berth's agent".into()));
            }
            let source = match volume_mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                None => volume.path.clone(),
                Some(sub_path) => {
                    if !is_name(&container.name) {
                        return Err(fail("the container's name cannot name a directory".into()));
                    }
                    let target = self
                        .pod_dir
                        .join("volume-subpaths")
                        .join(&volume_mount.name)
                        .join(&container.name)
                        .join(index.to_string());
                    subpath::bind(&volume.path, sub_path, &target).map_err(fail)?;
                    target
                }
            };
            mounts.push(Mount {
                source,
                destination,
                read_only: volume.read_only || volume_mount.read_only == Some(true),
            });
        }
        Ok(mounts)
    }
}

/// A name safe as one path component.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests;
