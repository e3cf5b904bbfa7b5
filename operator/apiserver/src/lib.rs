//! berth's embedded Kubernetes-compatible API server: real kubectl, kube-rs and other Kubernetes clients use
//! it unchanged. Objects live in SQLite (durable on acknowledgement); watches are served from memory.

mod admission;
mod convert;
mod crd;
pub mod error;
mod fieldmanager;
mod gostr;
mod handlers;
mod object;
mod openapi;
mod patchmeta;
pub mod pki;
mod protobuf;
mod registry;
mod request;
mod schema;
mod selectors;
mod server;
pub mod store;
mod strategic;
mod table;
mod validation;

pub use server::{Config, DEFAULT_NAMESPACES, Running, StartError, start};
