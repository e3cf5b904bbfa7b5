//! `/version`, legacy discovery (`/api`, `/apis`, group and group-version documents) and the OpenAPI endpoints.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;

use super::json_response;
use crate::error::ApiError;
use crate::registry::Registry;

/// The Kubernetes version whose API this server follows.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";

pub fn version() -> serde_json::Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0+berth.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// Architecture names as Go (and so every Kubernetes client) spells them.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Serves the discovery paths; `None` for every other path.
pub fn serve(registry: &Registry, method: &Method, path: &str) -> Option<Response> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = match segments.as_slice() {
        ["version"] => version(),
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }),
        ["apis"] => registry.api_group_list(),
        ["api", "v1"] => registry.resource_list("", "v1")?,
        ["api", _] => return Some(ApiError::no_route().into_response()),
        ["apis", group] => match registry.api_group(group) {
            Some(doc) => doc,
            None => return Some(ApiError::no_route().into_response()),
        },
        ["apis", group, version] => match registry.resource_list(group, version) {
            Some(doc) => doc,
            None => return Some(ApiError::no_route().into_response()),
        },
        // kubectl accepts an empty OpenAPI v2 document (it then validates nothing client-side); the media type
        // must be plain: echoing kubectl's protobuf type back breaks Go's MIME parser.
        ["openapi", "v2"] => {
            let mut response = (StatusCode::OK, "").into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            return Some(response);
        }
        ["openapi", "v3", ..] => return Some(ApiError::no_route().into_response()),
        _ => return None,
    };
    if method != Method::GET {
        return Some(
            ApiError::method_not_allowed("discovery documents are read-only").into_response(),
        );
    }
    Some(json_response(StatusCode::OK, &body))
}
