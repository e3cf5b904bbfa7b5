//! httpGet over HTTP/1.1 (hyper) on a connection opened inside the Pod's network namespace; HTTPS with rustls
//! and no certificate verification, as upstream's `InsecureSkipVerify`. Upstream's rules: status 200–399 is a
//! success; redirects are followed (at most 10) while they stay on the same host, and a redirect elsewhere ends
//! the probe as a success with a warning; only the first 10 KiB of a body are read.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use super::connect::{connect, describe};
use super::{Outcome, resolve_port};

/// Upstream reads this much of a response body.
const MAX_BODY: usize = 10 * 1024;
/// Go's http.Client stops after this many redirects.
const MAX_REDIRECTS: usize = 10;
/// The `User-Agent` upstream's kubelet sends is `kube-probe/<major>.<minor>`; berth serves API 1.33.
const USER_AGENT: &str = "kube-probe/1.33";

pub(super) async fn probe(
    action: &HTTPGetAction,
    ports: &[ContainerPort],
    default_host: IpAddr,
    netns: Option<&Path>,
    timeout: Duration,
) -> Outcome {
    let url = match target_url(action, ports, default_host) {
        Ok(url) => url,
        Err(message) => return Outcome::Failure(message),
    };
    let headers = match request_headers(action) {
        Ok(headers) => headers,
        Err(message) => return Outcome::Failure(message),
    };
    match tokio::time::timeout(timeout, fetch(url.clone(), &headers, netns)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failure(format!(
            "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            url.as_str()
        )),
    }
}

/// `scheme://host:port/path`, as upstream's `formatURL`: the path may carry a query.
fn target_url(
    action: &HTTPGetAction,
    ports: &[ContainerPort],
    default_host: IpAddr,
) -> Result<Url, String> {
    let scheme = match action.scheme.as_deref().unwrap_or("HTTP") {
        s if s.eq_ignore_ascii_case("http") => "http",
        s if s.eq_ignore_ascii_case("https") => "https",
        other => return Err(format!("unsupported scheme {other:?}")),
    };
    let port = resolve_port(&action.port, ports)?;
    let host = match action.host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => host.to_string(),
        None => default_host.to_string(),
    };
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host,
    };
    let path = action.path.as_deref().unwrap_or("");
    let slash = if path.starts_with('/') { "" } else { "/" };
    Url::parse(&format!("{scheme}://{host}:{port}{slash}{path}"))
        .map_err(|err| format!("invalid probe URL: {err}"))
}

/// Upstream's defaults (`User-Agent`, `Accept: */*`) unless the probe sets them, and the probe's headers.
fn request_headers(action: &HTTPGetAction) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for h in action.http_headers.iter().flatten() {
        let name = HeaderName::try_from(h.name.as_str())
            .map_err(|err| format!("invalid header name {:?}: {err}", h.name))?;
        let value = HeaderValue::try_from(h.value.as_str())
            .map_err(|err| format!("invalid value for header {:?}: {err}", h.name))?;
        headers.append(name, value);
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    if !headers.contains_key(header::ACCEPT) {
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    Ok(headers)
}

async fn fetch(first: Url, headers: &HeaderMap, netns: Option<&Path>) -> Outcome {
    let mut url = first.clone();
    let mut redirects = 0;
    loop {
        let response = match get(&url, headers, netns).await {
            Ok(response) => response,
            Err(message) => return Outcome::Failure(format!("Get {:?}: {message}", url.as_str())),
        };
        let status = response.status();
        let next = is_followed(status)
            .then(|| response.headers().get(header::LOCATION))
            .flatten()
            .and_then(|location| location.to_str().ok())
            .and_then(|location| url.join(location).ok());
        if let Some(next) = next {
            // Go's redirect checker compares host names, not ports or schemes.
            if next.host_str() == first.host_str() {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Outcome::Failure(format!(
                        "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
                        next.as_str()
                    ));
                }
                url = next;
                continue;
            }
        }
        let body = read_body(response).await;
        return if status.is_success() {
            Outcome::Success
        } else if status.is_redirection() {
            Outcome::Warning(format!("Probe terminated redirects, Response body: {body}"))
        } else {
            Outcome::Failure(format!(
                "HTTP probe failed with statuscode: {}",
                status.as_u16()
            ))
        };
    }
}

/// The statuses Go's client follows.
fn is_followed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// One GET on a fresh connection (upstream disables keep-alive), HTTPS when the URL says so.
async fn get(
    url: &Url,
    headers: &HeaderMap,
    netns: Option<&Path>,
) -> Result<Response<Incoming>, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let ip = resolve_host(host).await?;
    let addr = SocketAddr::new(ip, port);
    let stream = connect(netns, addr)
        .await
        .map_err(|err| format!("dial tcp {addr}: {}", describe(&err)))?;
    let mut request = Request::get(&url[url::Position::BeforePath..url::Position::AfterQuery])
        .body(Empty::<Bytes>::new())
        .map_err(|err| err.to_string())?;
    *request.headers_mut() = headers.clone();
    if !request.headers().contains_key(header::HOST) {
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let value = HeaderValue::try_from(authority).map_err(|err| err.to_string())?;
        request.headers_mut().insert(header::HOST, value);
    }
    request
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if url.scheme() == "https" {
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|err| format!("invalid TLS server name {host:?}: {err}"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(|err| format!("TLS handshake with {addr}: {err}"))?;
        send(tls, request).await
    } else {
        send(stream, request).await
    }
}

async fn send<S>(io: S, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|err| err.to_string())?;
    // The connection ends when the response and the sender are dropped, or with the probe's timeout.
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())
}

/// The first [`MAX_BODY`] bytes of the body, as text; the rest is never read.
async fn read_body(response: Response<Incoming>) -> String {
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = MAX_BODY - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// An IP literal as is; any other name through the host's resolver (`localhost` included).
pub(super) async fn resolve_host(host: &str) -> Result<IpAddr, String> {
    let bare = host.trim_matches(['[', ']']);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    tokio::net::lookup_host((bare, 0))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|addr| addr.ip())
        .ok_or_else(|| format!("dial tcp: lookup {bare}: no such host"))
}

/// One client configuration for every HTTPS probe: ring, and any server certificate.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                // Invariant: ring's default provider supports the safe default protocol versions.
                .expect("ring supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate, as upstream's probes do; handshake signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
