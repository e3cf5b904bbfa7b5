//! What the agent remembers of each Pod on disk, so that a restarted agent carries on where it stopped:
//! `<data>/agent/pods/<uid>/<container>.json` names the runtime container of the container's latest attempt,
//! its restart count, image and last termination. The runtime knows containers by id only; these records
//! say which Pod, container and attempt each id is.
//!
//! Runtime ids are `<uid without dashes>-<i|c><index>-<restartCount>`: unique per attempt, at most 50
//! characters, in the runtime's alphabet.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ContainerStateTerminated;
use serde::{Deserialize, Serialize};

use crate::runtime::state::{read_json, write_json};

/// One container's latest attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
    pub init: bool,
    /// The runtime container of this attempt.
    pub id: String,
    pub restart_count: i32,
    pub image: String,
    pub image_id: String,
    pub log_path: PathBuf,
    /// How the attempt before this one ended (`lastState`).
    pub last_state: Option<ContainerStateTerminated>,
}

/// The agent's directories under the data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            root: data_dir.join("agent"),
        }
    }
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.pods().join(uid)
    }
    /// The Pods' volumes (see [`super::volumes`]).
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }
    /// The node's network settings, as the agent last started with them (for `berth down`).
    pub fn network_file(&self) -> PathBuf {
        self.root.join("network.json")
    }
    /// A Pod's `/etc/hosts` and `/etc/resolv.conf`, beside its records.
    pub fn pod_file(&self, uid: &str, name: &str) -> PathBuf {
        self.pod(uid).join(name)
    }

    pub fn save_network(&self, config: &crate::net::NetConfig) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        write_json(
            &self.network_file(),
            &super::sandbox::SavedNetwork::from(config),
        )
    }

    /// The settings [`Layout::save_network`] recorded, if an agent ever started here.
    pub fn load_network(&self) -> std::io::Result<Option<crate::net::NetConfig>> {
        Ok(read_json::<super::sandbox::SavedNetwork>(&self.network_file())?.map(Into::into))
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Kubelet's layout: `<logs>/<namespace>_<pod>_<uid>/`.
    pub fn pod_logs(&self, namespace: &str, pod: &str, uid: &str) -> PathBuf {
        self.logs().join(format!("{namespace}_{pod}_{uid}"))
    }
    /// `<logs>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`.
    pub fn log_path(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        container: &str,
        restart: i32,
    ) -> PathBuf {
        self.pod_logs(namespace, pod, uid)
            .join(container)
            .join(format!("{restart}.log"))
    }

    /// The records of a Pod, by container name.
    pub fn read(&self, uid: &str) -> std::io::Result<Vec<Record>> {
        let dir = self.pod(uid);
        let mut records = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(records),
            Err(err) => return Err(err),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(record) = read_json::<Record>(&path)?
            {
                records.push(record);
            }
        }
        Ok(records)
    }

    pub fn write(&self, record: &Record) -> std::io::Result<()> {
        let dir = self.pod(&record.uid);
        std::fs::create_dir_all(&dir)?;
        write_json(&dir.join(format!("{}.json", record.container)), record)
    }

    /// The manifest digests of the images this node's recorded containers run (the `@sha256:…` of their
    /// `imageID`): what `berth image prune` keeps.
    pub fn images_in_use(&self) -> std::io::Result<Vec<crate::image::Digest>> {
        let mut digests = Vec::new();
        for uid in self.pod_uids()? {
            for record in self.read(&uid)? {
                let digest = record.image_id.rsplit_once('@').map(|(_, d)| d);
                if let Some(digest) = digest.and_then(|d| crate::image::Digest::parse(d).ok()) {
                    digests.push(digest);
                }
            }
        }
        Ok(digests)
    }

    /// The uids of every Pod with records (including ones deleted while the agent was away).
    pub fn pod_uids(&self) -> std::io::Result<Vec<String>> {
        let mut uids = Vec::new();
        match std::fs::read_dir(self.pods()) {
            Ok(entries) => {
                for entry in entries {
                    if let Some(name) = entry?.file_name().to_str() {
                        uids.push(name.to_owned());
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        Ok(uids)
    }
}

/// The uid as the runtime's ids and the netns use it: hex digits only.
pub fn compact_uid(uid: &str) -> String {
    uid.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect()
}

/// The runtime id of one attempt of a container (`index` is its position among init containers or
/// containers).
pub fn container_id(uid: &str, init: bool, index: usize, restart: i32) -> String {
    let kind = if init { 'i' } else { 'c' };
    format!("{}-{kind}{index}-{restart}", compact_uid(uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_in_the_runtime_alphabet() {
        let id = container_id("0f8e6a8c-5b1d-4d8e-9a6e-3c2b1a0f9e8d", false, 12, 1234);
        assert_eq!(id, "0f8e6a8c5b1d4d8e9a6e3c2b1a0f9e8d-c12-1234");
        assert!(id.len() <= 64);
        assert_eq!(container_id("../../x", true, 0, 0), "x-i0-0");
    }

    #[test]
    fn records_round_trip_and_list_their_pods() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert!(layout.read("u1").unwrap().is_empty());
        let record = Record {
            namespace: "ns".into(),
            pod: "p".into(),
            uid: "u1".into(),
            container: "web".into(),
            init: false,
            id: container_id("u1", false, 0, 3),
            restart_count: 3,
            image: "busybox".into(),
            image_id: "sha256:1".into(),
            log_path: layout.log_path("ns", "p", "u1", "web", 3),
            last_state: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                ..Default::default()
            }),
        };
        layout.write(&record).unwrap();
        assert_eq!(layout.read("u1").unwrap(), vec![record]);
        assert_eq!(layout.pod_uids().unwrap(), ["u1"]);
        assert!(
            layout
                .log_path("ns", "p", "u1", "web", 3)
                .ends_with("agent/logs/ns_p_u1/web/3.log")
        );
    }
}
