//! The Stack controller: turns each `Stack` into the Pods, Services, Secret and PersistentVolumeClaims that run
//! it, through the Kubernetes API only, so the same code runs inside `berth up` and on a real cluster.

mod check;
mod drift;
pub mod error;
pub mod mapping;
pub mod metrics;
mod observe;
pub mod plan;
mod problem;
pub mod reconcile;
mod run;
mod safety;
pub mod server;

#[cfg(test)]
mod fixtures;

pub use berth_lease::LeaseConfig;
pub use error::Error;
pub use run::{Config, RESYNC, RunError, run};
