//! The Stack controller: turns each `Stack` into the Pods, Services, Secret and PersistentVolumeClaims that run
//! it, through the Kubernetes API only, so the same code runs inside `berth up` and on a real cluster.

pub mod mapping;
pub mod plan;
