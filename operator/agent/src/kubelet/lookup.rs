//! Which runtime container and log file each `namespace/pod/container` is now, and was before its last
//! restart: kept up to date by the Pod workers, read by the kubelet endpoint (`kubectl logs`, `exec`,
//! `attach`) through [`ContainerLookup`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::server::{ContainerLookup, ContainerRef};

/// One container of a Pod: its current attempt and the one before.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub current: ContainerRef,
    pub previous: Option<ContainerRef>,
}

#[derive(Debug, Default)]
struct PodEntry {
    uid: String,
    containers: HashMap<String, Entry>,
}

/// The node's containers by Pod. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pods: Arc<RwLock<HashMap<(String, String), PodEntry>>>,
}

impl Directory {
    /// Replaces what is known of Pod `namespace/pod` (uid `uid`).
    pub fn set(&self, namespace: &str, pod: &str, uid: &str, containers: HashMap<String, Entry>) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pods.insert(
            (namespace.to_owned(), pod.to_owned()),
            PodEntry {
                uid: uid.to_owned(),
                containers,
            },
        );
    }

    /// Forgets the Pod, unless a newer Pod of the same name (another uid) took its place.
    pub fn remove(&self, namespace: &str, pod: &str, uid: &str) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (namespace.to_owned(), pod.to_owned());
        if pods.get(&key).is_some_and(|p| p.uid == uid) {
            pods.remove(&key);
        }
    }
}

impl ContainerLookup for Directory {
    fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<ContainerRef> {
        let pods = self
            .pods
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = pods
            .get(&(namespace.to_owned(), pod.to_owned()))?
            .containers
            .get(container)?;
        if previous {
            entry.previous.clone()
        } else {
            Some(entry.current.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(id: &str, running: bool) -> ContainerRef {
        ContainerRef {
            id: id.into(),
            log_path: format!("/logs/{id}.log").into(),
            tty: false,
            stdin: false,
            running,
        }
    }

    #[test]
    fn finds_the_current_and_previous_attempt_and_forgets_only_its_own_uid() {
        let directory = Directory::default();
        let entry = Entry {
            current: reference("u1-c0-1", true),
            previous: Some(reference("u1-c0-0", false)),
        };
        directory.set(
            "ns",
            "web",
            "u1",
            HashMap::from([("app".to_owned(), entry)]),
        );
        assert_eq!(
            directory.find("ns", "web", "app", false).map(|c| c.id),
            Some("u1-c0-1".into())
        );
        assert_eq!(
            directory.find("ns", "web", "app", true).map(|c| c.id),
            Some("u1-c0-0".into())
        );
        assert!(directory.find("ns", "web", "other", false).is_none());
        directory.remove("ns", "web", "u0");
        assert!(directory.find("ns", "web", "app", false).is_some());
        directory.remove("ns", "web", "u1");
        assert!(directory.find("ns", "web", "app", false).is_none());
    }
}
