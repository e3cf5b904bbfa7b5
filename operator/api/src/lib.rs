//! The Stack custom resource (`berth.dev/v1alpha1`): its Rust types, its CRD, and the names every
//! berth component shares (labels, finalizer, field manager, condition types). This crate depends
//! on nothing of berth's own; the API server, the controller and the binary read the API from here.

pub mod constants;
mod crd;
pub mod quantity;
mod schema;
mod spec;
mod status;
mod volume;

pub use crd::{crd, crd_yaml};
pub use spec::{
    AppSpec, DatabaseSpec, DeletionPolicy, MigrateSpec, RedisPersistence, RedisSpec, SecretKeyRef,
    Stack, StackSpec, StorageSpec,
};
pub use status::{
    ComponentPhase, ComponentStatus, ComponentStatuses, Endpoint, StackPhase, StackStatus,
};
pub use volume::StackVolume;
