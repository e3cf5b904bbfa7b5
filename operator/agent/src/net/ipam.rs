//! The IPAM store: which Pod uid holds which address. One JSON file under the state directory, replaced
//! atomically (write, fsync, rename, fsync the directory) on every change, so that a restarted agent hands
//! every Pod its old address back and never gives out one that a running Pod still holds.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{Error, PodKey};

const FILE: &str = "ipam.json";

#[derive(Debug, Serialize, Deserialize)]
struct State {
    cidr: Ipv4Net,
    /// The last address handed out: allocation goes round the range from there, so a released address is
    /// not reused right away (a peer may still hold it in a cache or a connection).
    last: Option<Ipv4Addr>,
    allocations: BTreeMap<String, Allocation>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Allocation {
    ip: Ipv4Addr,
    namespace: String,
    name: String,
}

#[derive(Debug)]
pub(super) struct Ipam {
    path: PathBuf,
    state: State,
}

impl Ipam {
    /// Opens (or creates) the store for `cidr` in `dir`. A store written for another CIDR that still has
    /// allocations is an error; an empty one is taken over.
    pub(super) fn open(dir: &Path, cidr: Ipv4Net) -> Result<Ipam, Error> {
        fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let path = dir.join(FILE);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: State = serde_json::from_slice(&bytes).map_err(|e| Error::State {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                if state.cidr != cidr && !state.allocations.is_empty() {
                    return Err(Error::CidrChanged {
                        path,
                        stored: state.cidr,
                        configured: cidr,
                    });
                }
                State { cidr, ..state }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                cidr,
                last: None,
                allocations: BTreeMap::new(),
            },
            Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
        };
        Ok(Ipam { path, state })
    }

    /// The Pod's address: the one it already holds, or the next free one (persisted before it is returned).
    pub(super) fn allocate(&mut self, pod: &PodKey) -> Result<Ipv4Addr, Error> {
        if let Some(existing) = self.state.allocations.get(&pod.uid) {
            return Ok(existing.ip);
        }
        let cidr = self.state.cidr;
        let first = u32::from(cidr.network()) + 2; // .0 is the network, .1 the gateway
        let last = u32::from(cidr.broadcast()) - 1;
        let size = last - first + 1;
        let start = match self.state.last.map(u32::from) {
            Some(prev) if (first..=last).contains(&prev) => prev - first + 1,
            _ => 0,
        };
        let taken: std::collections::HashSet<Ipv4Addr> =
            self.state.allocations.values().map(|a| a.ip).collect();
        let ip = (0..size)
            .map(|i| Ipv4Addr::from(first + (start + i) % size))
            .find(|ip| !taken.contains(ip))
            .ok_or(Error::AddressesExhausted { cidr })?;
        self.state.allocations.insert(
            pod.uid.clone(),
            Allocation {
                ip,
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            },
        );
        self.state.last = Some(ip);
        if let Err(err) = self.save() {
            self.state.allocations.remove(&pod.uid);
            return Err(err);
        }
        Ok(ip)
    }

    /// Gives the Pod's address back; a uid without one is fine (detach is idempotent).
    pub(super) fn release(&mut self, pod_uid: &str) -> Result<Option<Ipv4Addr>, Error> {
        let Some(old) = self.state.allocations.remove(pod_uid) else {
            return Ok(None);
        };
        if let Err(err) = self.save() {
            self.state.allocations.insert(pod_uid.to_owned(), old);
            return Err(err);
        }
        Ok(Some(old.ip))
    }

    /// The address a Pod holds, if any.
    pub(super) fn get(&self, pod_uid: &str) -> Option<Ipv4Addr> {
        self.state.allocations.get(pod_uid).map(|a| a.ip)
    }

    /// Removes the store file (teardown).
    pub(super) fn remove(dir: &Path) -> Result<(), Error> {
        let path = dir.join(FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }

    fn save(&self) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| Error::State {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(Error::io(format!("writing {}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> PodKey {
        PodKey {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
        }
    }

    #[test]
    fn same_uid_gets_the_same_address_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let cidr: Ipv4Net = "10.200.0.0/24".parse().unwrap();
        let mut ipam = Ipam::open(dir.path(), cidr).unwrap();
        let a = ipam.allocate(&pod("a")).unwrap();
        let b = ipam.allocate(&pod("b")).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 200, 0, 3));
        assert_eq!(ipam.allocate(&pod("a")).unwrap(), a);
        drop(ipam);
        let mut again = Ipam::open(dir.path(), cidr).unwrap();
        assert_eq!(again.allocate(&pod("a")).unwrap(), a);
        assert_eq!(again.get("b"), Some(b));
        assert_ne!(again.allocate(&pod("c")).unwrap(), b);
    }

    #[test]
    fn exhaustion_is_an_error_and_release_frees_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let cidr: Ipv4Net = "10.200.0.0/29".parse().unwrap(); // .2 to .6: five Pods
        let mut ipam = Ipam::open(dir.path(), cidr).unwrap();
        let ips: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&pod(&i.to_string())).unwrap())
            .collect();
        let unique: std::collections::HashSet<_> = ips.iter().collect();
        assert_eq!(unique.len(), 5);
        assert!(matches!(
            ipam.allocate(&pod("x")),
            Err(Error::AddressesExhausted { .. })
        ));
        assert_eq!(ipam.release("2").unwrap(), Some(ips[2]));
        assert_eq!(ipam.release("2").unwrap(), None);
        assert_eq!(ipam.allocate(&pod("x")).unwrap(), ips[2]);
    }

    #[test]
    fn a_changed_cidr_with_allocations_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), "10.200.0.0/24".parse().unwrap()).unwrap();
        ipam.allocate(&pod("a")).unwrap();
        let err = Ipam::open(dir.path(), "10.201.0.0/24".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("10.200.0.0/24"), "{err}");
        ipam.release("a").unwrap();
        Ipam::open(dir.path(), "10.201.0.0/24".parse().unwrap()).unwrap();
    }
}
