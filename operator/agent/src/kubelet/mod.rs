//! The kubelet part of the agent: the Node and its Lease, the Pods bound to it (volumes, environment,
//! containers through the runtime, probes, restarts, status) and the endpoint the API server proxies
//! `kubectl logs`, `exec` and `attach` to.

pub mod probe;
pub mod server;
pub mod volumes;
