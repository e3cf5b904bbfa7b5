//! Pod streams: `pods/log`, `pods/exec` and `pods/attach`, proxied to the kubelet endpoint of the Pod's node
//! (`status.daemonEndpoints.kubeletEndpoint.Port` at its InternalIP, else its Hostname). The API server checks
//! the Pod, the container and the node, then relays bytes: log bodies as they arrive, and exec/attach upgrades
//! spliced end to end, so the kubelet negotiates the protocol (berth's speaks WebSocket `v5.channel.k8s.io`)
//! and frames are never parsed here.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::App;
use crate::error::{ApiError, Cause, Result, Subject};
use crate::object;
use crate::request::{Query, Target};
use crate::store::ResourceKey;

/// How long reaching a kubelet (TCP connect and TLS handshake) may take: a node that is gone must give an
/// error, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kubelet may take to answer with headers (a followed log answers at once and streams after).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a kubelet's error body that is relayed.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The annotation naming the container that `kubectl logs`/`exec` use when none is given.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// Characters kept as they are in a path segment sent to the kubelet.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether a request addresses one of the Pod streams.
pub fn serves(target: &Target) -> bool {
    target.rt.group.is_empty()
        && target.rt.resource == "pods"
        && target.name.is_some()
        && matches!(
            target.subresource.as_deref(),
            Some("log" | "exec" | "attach")
        )
}

pub async fn serve(app: Arc<App>, target: Target, parts: Parts) -> Result<Response> {
    let verb = target.subresource.clone().unwrap_or_default();
    match (verb.as_str(), &parts.method) {
        ("log", &Method::GET) => log(&app, &target, &parts).await,
        ("exec" | "attach", &Method::GET | &Method::POST) => {
            remote_command(&app, &target, &verb, parts).await
        }
        (_, method) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {method}"
        ))),
    }
}

/// `GET pods/<name>/log`: the kubelet's `/containerLogs/<ns>/<pod>/<container>`, streamed as it arrives.
async fn log(app: &App, target: &Target, parts: &Parts) -> Result<Response> {
    let query = Query::parse(parts.uri.query())?;
    let pod = pod(app, target)?;
    let container = choose_container(&pod, query.get("container"))?;
    let params = log_params(&query, pod_name(&pod))?;
    let Some(node) = node_name(&pod) else {
        // As upstream: a Pod that is not scheduled yet has an empty log.
        return Ok(text(Body::empty()));
    };
    let kubelet = Kubelet::of(app, &pod, node)?;
    let path = kubelet_path("containerLogs", &pod, &container, &params);
    tracing::debug!(pod = %object_key(&pod), %container, node, "streaming a log from the kubelet");
    let sender = kubelet.open(app, false).await?;
    let response = kubelet.send(sender, path, HeaderMap::new()).await?;
    if !response.status().is_success() {
        return Err(kubelet.error(response).await);
    }
    Ok(text(Body::new(response.into_body())))
}

/// `pods/<name>/exec` and `pods/<name>/attach`: the kubelet's `/exec|attach/<ns>/<pod>/<container>`, with
/// the client's WebSocket upgrade forwarded and both upgraded connections spliced together.
async fn remote_command(
    app: &App,
    target: &Target,
    verb: &str,
    mut parts: Parts,
) -> Result<Response> {
    let query = Query::parse(parts.uri.query())?;
    let pod = pod(app, target)?;
    let container = choose_container(&pod, query.get("container"))?;
    let params = remote_command_params(verb, &query, parts.uri.query())?;
    let node = node_name(&pod).ok_or_else(|| {
        ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            pod_name(&pod)
        ))
    })?;
    let kubelet = Kubelet::of(app, &pod, node)?;
    let (Some(on_upgrade), Some(protocol)) = (
        parts.extensions.remove::<OnUpgrade>(),
        requested_upgrade(&parts.headers),
    ) else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    // Any protocol is forwarded (kubectl before 1.30 asks for SPDY/3.1): the kubelet says which it speaks, and
    // its refusal reaches the client whichever protocol was tried (kubectl 1.30+ retries a refused WebSocket
    // upgrade with SPDY, so an API server refusing SPDY itself would hide the kubelet's first answer).
    let mut headers = HeaderMap::new();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::UPGRADE,
        HeaderValue::from_str(&protocol)
            .map_err(|_| ApiError::bad_request("invalid Upgrade header"))?,
    );
    for (name, value) in &parts.headers {
        if is_stream_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let path = kubelet_path(verb, &pod, &container, &params);
    let key = object_key(&pod);
    tracing::debug!(pod = %key, %container, node, verb, "opening a stream to the kubelet");
    let sender = kubelet.open(app, true).await?;
    let response = kubelet.send(sender, path, headers).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet.error(response).await);
    }
    let mut reply = Response::new(Body::empty());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in response.headers() {
        if name == header::CONNECTION || name == header::UPGRADE || is_stream_header(name) {
            reply.headers_mut().append(name.clone(), value.clone());
        }
    }
    tokio::spawn(splice(on_upgrade, hyper::upgrade::on(response), key));
    Ok(reply)
}

/// Relays bytes both ways between the client and the kubelet until either side closes.
async fn splice(client: OnUpgrade, kubelet: OnUpgrade, key: String) {
    match tokio::join!(client, kubelet) {
        (Ok(client), Ok(kubelet)) => {
            let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
            match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                Ok((sent, received)) => {
                    tracing::debug!(pod = %key, sent, received, "stream ended")
                }
                Err(err) => tracing::debug!(pod = %key, error = %err, "stream ended"),
            }
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!(pod = %key, error = %err, "a stream upgrade did not complete")
        }
    }
}

/// Headers of the upgrade handshake that pass between client and kubelet: WebSocket's, and SPDY's protocol
/// version negotiation. Nothing else does (the client's `Authorization` above all).
fn is_stream_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("sec-websocket-") || name == "x-stream-protocol-version"
}

/// The protocol a request asks to upgrade to (`websocket`, `SPDY/3.1`), if it asks for an upgrade at all.
fn requested_upgrade(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = headers.get(header::UPGRADE)?.to_str().ok()?.trim();
    (connection_upgrade && !protocol.is_empty()).then(|| protocol.to_owned())
}

fn text(body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn pod(app: &App, target: &Target) -> Result<Arc<Value>> {
    app.store
        .get(
            &target.rt.key(),
            target.store_namespace(),
            target.name.as_deref().unwrap_or_default(),
        )
        .ok_or_else(|| ApiError::not_found(target.subject()))
}

fn pod_name(pod: &Value) -> &str {
    object::name(pod).unwrap_or_default()
}

fn object_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod_name(pod)
    )
}

fn node_name(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// Every container of a Pod, in upstream's order: init containers, containers, ephemeral containers.
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| pod["spec"][field].as_array().into_iter().flatten())
        .filter_map(|container| container["name"].as_str())
        .collect()
}

/// The container a stream is for: the one asked for (which must exist), else the default-container
/// annotation's, else the only one; upstream's messages otherwise.
fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String> {
    let name = pod_name(pod);
    let names = container_names(pod);
    if let Some(container) = requested {
        if names.contains(&container) {
            return Ok(container.to_owned());
        }
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    if let Some(default) = pod["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION]
        .as_str()
        .filter(|d| names.contains(d))
    {
        return Ok(default.to_owned());
    }
    let containers = pod["spec"]["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    match containers {
        [only] => Ok(only["name"].as_str().unwrap_or_default().to_owned()),
        [] => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// The kubelet's query for a log request, validated as upstream validates PodLogOptions.
fn log_params(query: &Query, pod: &str) -> Result<String> {
    let mut params: Vec<(&str, String)> = Vec::new();
    for flag in ["follow", "previous", "timestamps"] {
        if query.flag(flag)? {
            params.push((flag, "true".to_owned()));
        }
    }
    let since_seconds = query.number("sinceSeconds")?;
    let since_time = query.get("sinceTime");
    let tail_lines = query.number("tailLines")?;
    let limit_bytes = query.number("limitBytes")?;
    let mut causes = Vec::new();
    if since_seconds.is_some() && since_time.is_some() {
        causes.push(Cause::new(
            "FieldValueForbidden",
            "",
            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if let Some(seconds) = since_seconds.filter(|s| *s < 1) {
        causes.push(Cause::invalid(
            "sinceSeconds",
            &json!(seconds),
            "must be greater than 0",
        ));
    }
    if let Some(time) = since_time
        && time.parse::<jiff::Timestamp>().is_err()
    {
        causes.push(Cause::invalid(
            "sinceTime",
            &json!(time),
            "must be an RFC 3339 time",
        ));
    }
    if let Some(lines) = tail_lines.filter(|l| *l < 0) {
        causes.push(Cause::invalid(
            "tailLines",
            &json!(lines),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(bytes) = limit_bytes.filter(|b| *b < 1) {
        causes.push(Cause::invalid(
            "limitBytes",
            &json!(bytes),
            "must be greater than 0",
        ));
    }
    if !causes.is_empty() {
        let subject = Subject {
            group: String::new(),
            kind: "pods".into(),
            name: pod.to_owned(),
        };
        return Err(ApiError::invalid(subject, "PodLogOptions", causes));
    }
    for (key, value) in [
        ("sinceSeconds", since_seconds),
        ("tailLines", tail_lines),
        ("limitBytes", limit_bytes),
    ] {
        if let Some(value) = value {
            params.push((key, value.to_string()));
        }
    }
    if let Some(time) = since_time {
        params.push(("sinceTime", time.to_owned()));
    }
    encode_query(&params)
}

/// The kubelet's query for exec and attach, in the kubelet's own parameter names (`input`, `output`,
/// `error`, `tty` set to `1`, and `command` once per argument).
fn remote_command_params(verb: &str, query: &Query, raw: Option<&str>) -> Result<String> {
    let streams = [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
    ];
    let mut params: Vec<(&str, String)> = Vec::new();
    for (client, kubelet) in streams {
        if query.flag(client)? {
            params.push((kubelet, "1".to_owned()));
        }
    }
    if params.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if query.flag("tty")? {
        params.push(("tty", "1".to_owned()));
    }
    if verb == "exec" {
        // `command` repeats, one value per argument: `Query` keeps only the last of a repeated key.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        let before = params.len();
        params.extend(
            pairs
                .into_iter()
                .filter(|(key, _)| key == "command")
                .map(|(_, value)| ("command", value)),
        );
        if params.len() == before {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
    }
    encode_query(&params)
}

fn encode_query(params: &[(&str, String)]) -> Result<String> {
    serde_urlencoded::to_string(params)
        .map_err(|e| ApiError::internal(format!("encoding the kubelet query: {e}")))
}

fn kubelet_path(verb: &str, pod: &Value, container: &str, query: &str) -> String {
    let segment = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
    let mut path = format!(
        "/{verb}/{}/{}/{}",
        segment(pod["metadata"]["namespace"].as_str().unwrap_or_default()),
        segment(pod_name(pod)),
        segment(container)
    );
    if !query.is_empty() {
        path.push('?');
        path.push_str(query);
    }
    path
}

/// 503 without `Retry-After`: client-go retries such answers for many seconds, and a node that is gone or
/// down should be reported at once.
fn unavailable(message: String) -> ApiError {
    let mut err = ApiError::unavailable(message);
    err.retry_after_seconds = None;
    err
}

/// The kubelet endpoint of a Pod's node.
struct Kubelet {
    node: String,
    host: String,
    port: u16,
}

impl Kubelet {
    fn of(app: &App, pod: &Value, node: &str) -> Result<Kubelet> {
        let Some(object) = app.store.get(&ResourceKey::new("", "nodes"), "", node) else {
            let mut err = ApiError::not_found(Subject {
                group: String::new(),
                kind: "nodes".into(),
                name: node.to_owned(),
            });
            err.message = format!(
                "pod {:?} is bound to node {node:?}, which no longer exists ({})",
                pod_name(pod),
                err.message
            );
            return Err(err);
        };
        Self::from_node(node, &object)
    }

    fn from_node(node: &str, object: &Value) -> Result<Kubelet> {
        let status = &object["status"];
        let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                unavailable(format!(
                    "node {node:?} reports no kubelet endpoint (status.daemonEndpoints.kubeletEndpoint.Port): \
                     is the berth agent running on it?"
                ))
            })?;
        let addresses = status["addresses"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let address_of = |kind: &str| {
            addresses
                .iter()
                .find(|a| a["type"] == kind)
                .and_then(|a| a["address"].as_str())
                .filter(|a| !a.is_empty())
        };
        let host = address_of("InternalIP")
            .or_else(|| address_of("Hostname"))
            .ok_or_else(|| {
                unavailable(format!(
                    "node {node:?} reports no InternalIP or Hostname address (status.addresses)"
                ))
            })?;
        Ok(Kubelet {
            node: node.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> ApiError {
        unavailable(format!(
            "cannot reach the kubelet of node {:?} at https://{}: {why} (is the berth agent running on that node?)",
            self.node,
            self.authority()
        ))
    }

    /// Connects over TLS (the API server's client certificate; the kubelet's serving certificate checked
    /// against the cluster CA for the node's address) and starts an HTTP/1.1 connection.
    async fn open(&self, app: &App, upgrades: bool) -> Result<SendRequest<Body>> {
        let tls = app.kubelet_client.clone().ok_or_else(|| {
            ApiError::internal("this API server has no kubelet client credentials")
        })?;
        let server_name = ServerName::try_from(self.host.clone())
            .map_err(|e| self.unreachable(format!("invalid node address: {e}")))?;
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            TlsConnector::from(tls).connect(server_name, tcp).await
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(self.unreachable(err)),
            Err(_) => {
                return Err(self.unreachable(format!(
                    "no TLS connection within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e))?;
        let node = self.node.clone();
        tokio::spawn(async move {
            let result = if upgrades {
                connection.with_upgrades().await
            } else {
                connection.await
            };
            if let Err(err) = result {
                tracing::debug!(%node, error = %err, "kubelet connection ended");
            }
        });
        Ok(sender)
    }

    async fn send(
        &self,
        mut sender: SendRequest<Body>,
        path: String,
        headers: HeaderMap,
    ) -> Result<http::Response<Incoming>> {
        let mut request = Request::get(path)
            .header(header::HOST, self.authority())
            .body(Body::empty())
            .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
        request.headers_mut().extend(headers);
        match tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(self.unreachable(err)),
            Err(_) => Err(self.unreachable(format!(
                "no response within {}s",
                RESPONSE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A kubelet's refusal as an API error: its status code, and its message (a `Status` object's, or the
    /// body's text).
    async fn error(&self, response: http::Response<Incoming>) -> ApiError {
        let code = response.status();
        let body = tokio::time::timeout(
            RESPONSE_TIMEOUT,
            axum::body::to_bytes(Body::new(response.into_body()), MAX_ERROR_BODY),
        )
        .await;
        let text = match body {
            Ok(Ok(bytes)) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(status) if status["kind"] == "Status" => {
                    status["message"].as_str().unwrap_or_default().to_owned()
                }
                _ => String::from_utf8_lossy(&bytes).trim().to_owned(),
            },
            _ => String::new(),
        };
        let text = if text.is_empty() {
            format!("the kubelet of node {:?} answered {code}", self.node)
        } else {
            text
        };
        relayed(code, text)
    }
}

/// An error with a kubelet's status code. A kubelet that refuses the API server's own credentials is a server
/// fault: relaying 401 or 403 would tell kubectl that its user's credentials are wrong.
fn relayed(code: StatusCode, message: String) -> ApiError {
    let (code, reason, message) = match code.as_u16() {
        400 => (code, "BadRequest", message),
        404 => (code, "NotFound", message),
        409 => (code, "Conflict", message),
        401 | 403 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("the kubelet refused the API server's credentials: {message}"),
        ),
        504 => (code, "Timeout", message),
        503 => (code, "ServiceUnavailable", message),
        _ if code.is_client_error() => (code, "BadRequest", message),
        _ => (code, "InternalError", message),
    };
    let mut err = ApiError::internal(message);
    err.code = code;
    err.reason = reason;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value, annotations: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": spec,
        })
    }

    fn query(raw: &str) -> Query {
        Query::parse(Some(raw)).unwrap()
    }

    #[test]
    fn the_only_container_or_the_annotated_one_is_the_default() {
        let single = pod(json!({"containers": [{"name": "app"}]}), json!({}));
        assert_eq!(choose_container(&single, None).unwrap(), "app");
        let two = json!({"containers": [{"name": "app"}, {"name": "sidecar"}]});
        let annotated = pod(
            two.clone(),
            json!({DEFAULT_CONTAINER_ANNOTATION: "sidecar"}),
        );
        assert_eq!(choose_container(&annotated, None).unwrap(), "sidecar");
        let err = choose_container(&pod(two, json!({})), None).unwrap_err();
        assert_eq!(err.code, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "a container name must be specified for pod web, choose one of: [app sidecar]"
        );
    }

    #[test]
    fn a_missing_container_is_rejected_with_upstreams_message() {
        let p = pod(
            json!({"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]}),
            json!({}),
        );
        assert_eq!(choose_container(&p, Some("init")).unwrap(), "init");
        let err = choose_container(&p, Some("db")).unwrap_err();
        assert_eq!(err.code, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "container db is not valid for pod web");
    }

    #[test]
    fn log_options_are_forwarded_and_validated_like_upstream() {
        let params = log_params(
            &query("follow=true&tailLines=1&timestamps=true&limitBytes=10&container=app"),
            "web",
        )
        .unwrap();
        assert_eq!(
            params,
            "follow=true&timestamps=true&tailLines=1&limitBytes=10"
        );
        let params = log_params(&query("sinceTime=2024-01-02T03:04:05Z"), "web").unwrap();
        assert_eq!(params, "sinceTime=2024-01-02T03%3A04%3A05Z");
        let err = log_params(
            &query("sinceSeconds=5&sinceTime=2024-01-02T03:04:05Z"),
            "web",
        )
        .unwrap_err();
        assert_eq!(err.code, StatusCode::UNPROCESSABLE_ENTITY);
        let err = log_params(&query("tailLines=-1"), "web").unwrap_err();
        assert_eq!(
            err.message,
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(log_params(&query("sinceTime=yesterday"), "web").is_err());
    }

    #[test]
    fn exec_options_use_the_kubelets_names_and_keep_every_command_argument() {
        let raw =
            "command=sh&command=-c&command=exit+3&stdin=true&stdout=true&stderr=false&tty=false";
        let params = remote_command_params("exec", &query(raw), Some(raw)).unwrap();
        assert_eq!(
            params,
            "input=1&output=1&command=sh&command=-c&command=exit+3"
        );
        let raw = "stdout=true&tty=true";
        assert_eq!(
            remote_command_params("attach", &query(raw), Some(raw)).unwrap(),
            "output=1&tty=1"
        );
        let raw = "stdout=true";
        assert!(remote_command_params("exec", &query(raw), Some(raw)).is_err());
        let raw = "command=ls";
        assert!(remote_command_params("exec", &query(raw), Some(raw)).is_err());
    }

    #[test]
    fn the_kubelet_is_found_at_the_internal_ip_else_the_hostname() {
        let node = json!({"status": {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "addresses": [{"type": "Hostname", "address": "box"}, {"type": "InternalIP", "address": "127.0.0.1"}],
        }});
        let kubelet = Kubelet::from_node("n1", &node).unwrap();
        assert_eq!(kubelet.authority(), "127.0.0.1:10250");
        let node = json!({"status": {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "addresses": [{"type": "Hostname", "address": "box"}],
        }});
        assert_eq!(
            Kubelet::from_node("n1", &node).unwrap().authority(),
            "box:10250"
        );
        let err = Kubelet::from_node("n1", &json!({"status": {}}))
            .err()
            .unwrap();
        assert_eq!(err.code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.retry_after_seconds.is_none());
    }

    #[test]
    fn a_kubelet_refusing_the_servers_credentials_is_not_relayed_as_401() {
        let err = relayed(StatusCode::UNAUTHORIZED, "Unauthorized".into());
        assert_eq!(err.code, StatusCode::INTERNAL_SERVER_ERROR);
        let err = relayed(StatusCode::BAD_REQUEST, "container app is waiting".into());
        assert_eq!(
            (err.code, err.reason),
            (StatusCode::BAD_REQUEST, "BadRequest")
        );
    }

    #[test]
    fn upgrades_are_recognised_by_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested_upgrade(&headers), None);
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested_upgrade(&headers).as_deref(), Some("websocket"));
    }

    #[test]
    fn only_handshake_headers_are_passed_to_the_kubelet() {
        assert!(is_stream_header(&header::SEC_WEBSOCKET_PROTOCOL));
        assert!(is_stream_header(&HeaderName::from_static(
            "x-stream-protocol-version"
        )));
        assert!(!is_stream_header(&header::AUTHORIZATION));
        assert!(!is_stream_header(&HeaderName::from_static(
            "impersonate-user"
        )));
    }
}
