//! HTTP handling: authentication, routing of Kubernetes API paths to one handler per verb, body decoding and
//! the JSON responses. Everything a handler fails with is rendered as a `kind: Status` object.

mod create;
mod delete;
mod discovery;
#[cfg(test)]
mod fuzz_tests;
mod patch;
mod read;
mod stream;
mod subresource;
mod update;
mod watch;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::admission::FieldValidation;
use crate::error::{ApiError, Result};
use crate::protobuf;
use crate::registry::{Registry, ResourceType, crd_resources};
use crate::request::{Query, Target, parse_target};
use crate::store::{ResourceKey, Store, StoreError};
use crate::{crd, object, pki};

pub use update::update_object;

/// Upstream's limit on request bodies.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared state of the running server.
pub struct App {
    pub store: Store,
    pub registry: Registry,
    pub token: String,
    /// The OpenAPI documents rendered so far.
    pub openapi: crate::openapi::Cache,
    /// TLS to kubelets for the Pod streams (see `pki::KUBELET_CLIENT_NAME`); `None` where no kubelet is
    /// reachable (unit-test harnesses without a data directory).
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.code, &self.to_status());
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut response = (code, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The entry point for every request.
pub async fn handle(app: Arc<App>, request: Request<Body>) -> Response {
    let path = request.uri().path().to_owned();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
    {
        return (StatusCode::OK, "ok").into_response();
    }
    if !authenticated(&app, request.headers()) {
        return ApiError::unauthorized().into_response();
    }
    // The OpenAPI documents are asked for in protobuf; everything else must accept JSON.
    if !path.starts_with("/openapi/") && !accepts_json(request.headers()) {
        return ApiError::not_acceptable("only application/json responses are served")
            .into_response();
    }
    match route(app, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

fn authenticated(app: &App, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| pki::token_matches(token.trim(), &app.token))
}

/// Whether the client takes JSON (or anything). Clients that ask for protobuf always list JSON as well.
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|entry| {
        let media = entry.split(';').next().unwrap_or("").trim();
        matches!(media, "" | "*/*" | "application/*" | "application/json")
    })
}

async fn route(app: Arc<App>, request: Request<Body>) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let query = Query::parse(parts.uri.query())?;
    if let Some(response) = discovery::serve(&app, &parts) {
        return Ok(response);
    }
    let Some(target) = parse_target(&app.registry, path)? else {
        return Err(ApiError::no_route());
    };
    // Streams keep the connection (upgrades, log bodies that never end): they must not have their body read.
    if stream::serves(&target) {
        return stream::serve(app, target, parts).await;
    }
    let method = parts.method.clone();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::too_large(format!(
            "the request body exceeds the limit of {MAX_BODY} bytes"
        ))
    })?;
    let ctx = Ctx {
        app,
        target,
        query,
        content_type,
        accept,
        user_agent,
        body,
    };
    let sub = ctx.target.subresource.as_deref();
    match (&method, ctx.target.name.is_some(), sub) {
        (&Method::GET, false, None) => {
            if ctx.target.watch_path || ctx.query.flag("watch")? {
                watch::watch(ctx).await
            } else {
                read::list(ctx)
            }
        }
        (&Method::POST, false, None) => create::create(ctx).await,
        (&Method::DELETE, false, None) => delete::delete_collection(ctx).await,
        (&Method::GET, true, None) => {
            if ctx.target.watch_path {
                watch::watch(ctx).await
            } else {
                read::get(ctx)
            }
        }
        (&Method::GET, true, Some("status")) if ctx.target.rt.status_subresource => read::get(ctx),
        (&Method::PUT, true, None) => update::replace(ctx).await,
        (&Method::PUT, true, Some("status")) if ctx.target.rt.status_subresource => {
            update::replace(ctx).await
        }
        (&Method::PATCH, true, None) => patch::patch(ctx).await,
        (&Method::PATCH, true, Some("status")) if ctx.target.rt.status_subresource => {
            patch::patch(ctx).await
        }
        (&Method::DELETE, true, None) => delete::delete(ctx).await,
        (&Method::POST, true, Some("binding")) if is_builtin(&ctx, "pods") => {
            subresource::bind(ctx).await
        }
        (&Method::PUT, true, Some("finalize")) if is_builtin(&ctx, "namespaces") => {
            subresource::finalize(ctx).await
        }
        (&Method::GET | &Method::PUT | &Method::PATCH, true, Some("scale"))
            if ctx.target.rt.scale.is_some() =>
        {
            subresource::scale(ctx, &method).await
        }
        (_, _, Some(_)) => Err(ApiError::no_route()),
        (method, _, None) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method}"
        ))),
    }
}

fn is_builtin(ctx: &Ctx, resource: &str) -> bool {
    ctx.target.rt.group.is_empty() && ctx.target.rt.resource == resource
}

/// One resource request, decoded.
pub struct Ctx {
    pub app: Arc<App>,
    pub target: Target,
    pub query: Query,
    pub content_type: String,
    /// The Accept header, which may ask for a Table (see `crate::table`).
    pub accept: Option<String>,
    /// The User-Agent header: writes without a `fieldManager` are recorded under its first word.
    pub user_agent: Option<String>,
    pub body: Bytes,
}

impl Ctx {
    /// The body as a JSON object (JSON, or YAML when the content type says so).
    pub fn object_body(&self) -> Result<Value> {
        let media = self.content_type.split(';').next().unwrap_or("").trim();
        let value: Value = match media {
            "application/yaml" | "application/x-yaml" | "text/yaml" => {
                serde_yaml::from_slice(&self.body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
            }
            "application/json" | "" | "*/*" => serde_json::from_slice(&self.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?,
            // client-go 0.32+ (kubectl 1.32+, Helm 3.17+) sends built-in kinds in protobuf and never retries a 415
            // in JSON, so the kinds those clients create are decoded (see `crate::protobuf`).
            "application/vnd.kubernetes.protobuf" => {
                let rt = &self.target.rt;
                protobuf::to_json(&self.body, &rt.api_version(), &rt.kind).map_err(|e| match e {
                    protobuf::Error::Invalid(_) => ApiError::bad_request(e.to_string()),
                    protobuf::Error::NotDecoded { .. } => {
                        ApiError::unsupported_media_type(e.to_string())
                    }
                })?
            }
            other => {
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json, application/yaml (got {other})"
                )));
            }
        };
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        Ok(value)
    }

    /// Checks that a body's apiVersion and kind (when given) are the ones the URL addresses, and fills them in.
    pub fn check_type(&self, object: &mut Value) -> Result<()> {
        let rt = &self.target.rt;
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        if (!api_version.is_empty() && api_version != rt.api_version())
            || (!kind.is_empty() && kind != rt.kind)
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({}) \
                 or the kind ({kind}) is not {}",
                rt.api_version(),
                rt.kind
            )));
        }
        object["apiVersion"] = Value::String(rt.api_version());
        object["kind"] = Value::String(rt.kind.clone());
        Ok(())
    }
}

/// Maps a store failure on one object to the API error a client expects.
pub fn store_error(target: &Target, err: StoreError) -> ApiError {
    let subject = target.subject();
    match err {
        StoreError::AlreadyExists => ApiError::already_exists(subject),
        StoreError::NotFound => ApiError::not_found(subject),
        StoreError::Conflict => ApiError::conflict(
            subject,
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        StoreError::UidMismatch { .. } => ApiError::conflict(subject, err.to_string()),
        StoreError::TooOld { .. } => ApiError::expired(err.to_string()),
        StoreError::TooNew { .. } => ApiError::too_large_resource_version(err.to_string()),
        StoreError::Storage(message) => ApiError::internal(message),
    }
}

/// A JSON response with upstream-style `Warning` headers.
pub fn respond(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut response = json_response(code, body);
    for warning in warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// What the server itself does after a write commits: serve or retire a CRD's resources, remove a deleted
/// CRD's custom resources, and let the CRD go once the last of them is gone.
pub async fn committed(app: &Arc<App>, rt: &ResourceType, object: &Value, deleted: bool) {
    if rt.group == "apiextensions.k8s.io" && rt.resource == "customresourcedefinitions" {
        crd::sync(&app.registry, object, deleted);
        if !deleted && object::is_deleting(object) {
            tokio::spawn(remove_custom_resources(app.clone(), object.clone()));
        }
    } else if rt.is_custom() && deleted {
        let crd_name = format!("{}.{}", rt.resource, rt.group);
        tokio::spawn(finish_crd_if_empty(app.clone(), crd_name));
    }
}

fn crd_target(app: &App, name: &str) -> Option<Target> {
    Some(Target {
        rt: app
            .registry
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")?,
        namespace: None,
        name: Some(name.to_owned()),
        subresource: None,
        watch_path: false,
    })
}

/// Deletes every custom resource of a CRD that is being deleted (their own finalizers still hold them).
/// Boxed: it leads back into the write path, which spawns it (a recursive future needs a nameable type).
fn remove_custom_resources(app: Arc<App>, crd_object: Value) -> BoxFuture {
    Box::pin(async move {
        let (group, plural) = crd::storage_of(&crd_object);
        let Some(rt) = crd_resources(&crd_object).into_iter().next().map(Arc::new) else {
            return;
        };
        let (_, items) = app.store.list(&ResourceKey::new(&group, &plural), None);
        for item in items {
            let target = Target {
                rt: rt.clone(),
                namespace: item["metadata"]["namespace"].as_str().map(str::to_owned),
                name: object::name(&item).map(str::to_owned),
                subresource: None,
                watch_path: false,
            };
            if let Err(err) =
                delete::delete_object(&app, &target, item, &delete::DeleteOptions::default()).await
                && err.code != StatusCode::NOT_FOUND
            {
                tracing::warn!(crd = %object::name(&crd_object).unwrap_or_default(), error = %err, "removing a custom resource of a deleted CRD");
            }
        }
        let name = object::name(&crd_object).unwrap_or_default().to_owned();
        finish_crd_if_empty(app, name).await;
    })
}

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Removes the cleanup finalizer of a terminating CRD once none of its custom resources is left.
fn finish_crd_if_empty(app: Arc<App>, name: String) -> BoxFuture {
    Box::pin(async move {
        let Some(target) = crd_target(&app, &name) else {
            return;
        };
        for _ in 0..update::RETRIES {
            let Some(current) = app.store.get(&target.rt.key(), "", &name) else {
                return;
            };
            if !object::is_deleting(&current) {
                return;
            }
            let (group, plural) = crd::storage_of(&current);
            if app.store.count(&ResourceKey::new(&group, &plural), None) > 0 {
                return;
            }
            let mut next = current.as_ref().clone();
            let finalizers: Vec<String> = object::finalizers(&current)
                .into_iter()
                .filter(|f| f != crd::CLEANUP_FINALIZER)
                .collect();
            next["metadata"]["finalizers"] = json!(finalizers);
            match update_object(
                &app,
                &target,
                &current,
                next,
                None,
                false,
                FieldValidation::Ignore,
            )
            .await
            {
                Err(err) if err.reason == "Conflict" => continue,
                Err(err) => {
                    tracing::warn!(crd = %name, error = %err, "finishing CRD deletion");
                    return;
                }
                Ok(_) => return,
            }
        }
    })
}
