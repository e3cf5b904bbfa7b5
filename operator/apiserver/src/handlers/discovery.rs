//! `/version`, legacy discovery (`/api`, `/apis`, group and group-version documents) and the OpenAPI endpoints.

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;

use super::{App, accepts_json, json_response};
use crate::error::ApiError;
use crate::openapi::Document;
use crate::request::Query;

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
pub fn serve(app: &App, parts: &Parts) -> Option<Response> {
    let registry = &app.registry;
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
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
        ["openapi", "v2"] => return Some(read_only(&parts.method).unwrap_or_else(openapi_v2)),
        ["openapi", "v3"] => {
            return Some(read_only(&parts.method).unwrap_or_else(|| {
                let index = app.openapi.index(registry);
                document_response(&index, &parts.headers, None)
            }));
        }
        ["openapi", "v3", rest @ ..] => {
            return Some(
                read_only(&parts.method)
                    .unwrap_or_else(|| openapi_group_version(app, parts, &rest.join("/"))),
            );
        }
        _ => return None,
    };
    if let Some(refused) = read_only(&parts.method) {
        return Some(refused);
    }
    Some(json_response(StatusCode::OK, &body))
}

fn read_only(method: &Method) -> Option<Response> {
    (method != Method::GET)
        .then(|| ApiError::method_not_allowed("discovery documents are read-only").into_response())
}

/// kubectl asks for OpenAPI v2 in protobuf only and needs an answer it can decode: kubectl 1.27 and 1.28
/// fetch it for every command and fail on a 404 or 406; later versions fetch it for `kubectl diff` and
/// client-side apply patches of kinds the v3 documents offer no strategic merge patch for. An empty body
/// decodes as an empty document, after which kubectl relies on OpenAPI v3 (explain, the field validation
/// check, patches) or on the types compiled into it. The media type must be plain: echoing kubectl's
/// protobuf type back breaks Go's MIME parser.
fn openapi_v2() -> Response {
    let mut response = (StatusCode::OK, "").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `/openapi/v3/<api/v1|apis/group/version>`, as upstream serves it: JSON (the protobuf form is not
/// served; kubectl asks for JSON), the document's hash as ETag, and, when the URL names the current hash,
/// caching for a year; a URL with an outdated hash is redirected to the current one.
fn openapi_group_version(app: &App, parts: &Parts, path: &str) -> Response {
    let Some(document) = app.openapi.group_version(&app.registry, path) else {
        return ApiError::no_route().into_response();
    };
    if !accepts_json(&parts.headers) {
        return ApiError::not_acceptable(
            "OpenAPI v3 documents are served as application/json only",
        )
        .into_response();
    }
    let hash = Query::parse(parts.uri.query())
        .ok()
        .and_then(|q| q.get("hash").map(str::to_owned));
    match hash {
        Some(hash) if hash != document.etag => {
            let location = format!("/openapi/v3/{path}?hash={}", document.etag);
            let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Some(_) => document_response(&document, &parts.headers, Some(jiff::Timestamp::now())),
        None => document_response(&document, &parts.headers, None),
    }
}

/// A document with its validators; `immutable_from` (the request time) when the URL named its hash.
fn document_response(
    document: &Document,
    request: &HeaderMap,
    immutable_from: Option<jiff::Timestamp>,
) -> Response {
    let etag = format!("\"{}\"", document.etag);
    let not_modified = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, document.body.clone()).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::ETAG, &etag);
    let printer = jiff::fmt::rfc2822::DateTimePrinter::new();
    if let Ok(modified) = printer.timestamp_to_rfc9110_string(&document.modified) {
        set(header::LAST_MODIFIED, &modified);
    }
    if let Some(now) = immutable_from {
        set(header::CACHE_CONTROL, "public, immutable");
        let year_later = now.saturating_add(jiff::SignedDuration::from_hours(365 * 24));
        if let Ok(expires) = year_later.and_then(|t| printer.timestamp_to_rfc9110_string(&t)) {
            set(header::EXPIRES, &expires);
        }
    }
    response
}
