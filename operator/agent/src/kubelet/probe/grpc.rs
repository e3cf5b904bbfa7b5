//! grpc: the standard `grpc.health.v1.Health/Check`. Not supported yet: every attempt fails and says so, so a
//! Pod that relies on it never passes silently.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::GRPCAction;

use super::Outcome;

pub(super) async fn probe(
    action: &GRPCAction,
    _default_host: IpAddr,
    _netns: Option<&Path>,
    _timeout: Duration,
) -> Outcome {
    Outcome::Failure(format!(
        "gRPC probes (port {}) are not supported by berth's agent; use exec, httpGet or tcpSocket",
        action.port
    ))
}
