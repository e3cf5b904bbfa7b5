//! The server's identity and the admin credential: a CA made on first start (kept in `DIR/pki`), a serving
//! certificate signed by it for the listen address, a bearer token, and the admin kubeconfig (`DIR/kubeconfig`).

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("reading the CA certificate: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Everything a client needs to reach this server as admin.
pub struct Credentials {
    pub ca_pem: String,
    pub token: String,
    pub server_url: String,
    pub tls: Arc<rustls::ServerConfig>,
    /// How this server reaches kubelets (`pods/log`, `exec`, `attach`): see [`KUBELET_CLIENT_NAME`].
    pub kubelet_client: Arc<rustls::ClientConfig>,
}

/// The common name of the client certificate the API server presents to kubelets. The certificate is signed
/// by the cluster CA (`DIR/pki/ca.crt`) with the clientAuth usage only; a kubelet admits a client whose
/// certificate chains to that CA and carries this name, and nothing else.
pub const KUBELET_CLIENT_NAME: &str = "berth-apiserver-kubelet-client";

/// What a kubelet needs to authenticate the API server.
pub struct KubeletClientTrust {
    /// The CA that signs the API server's kubelet client certificate (and kubelets' serving certificates).
    pub ca_pem: String,
    /// The common name the client certificate must carry.
    pub client_name: &'static str,
}

/// The trust a kubelet places in the API server of this data directory.
pub fn kubelet_client_trust(data_dir: &Path) -> Result<KubeletClientTrust, PkiError> {
    let path = pki_dir(data_dir).join("ca.crt");
    let ca_pem = fs::read_to_string(&path).map_err(io(&path))?;
    Ok(KubeletClientTrust {
        ca_pem,
        client_name: KUBELET_CLIENT_NAME,
    })
}

/// A kubelet's serving identity, signed by the cluster CA of a data directory.
pub struct KubeletServing {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA that signed it, which also signs the API server's kubelet client certificate.
    pub ca_pem: String,
}

/// Issues a serving certificate for a kubelet endpoint reached at `addresses` (always with 127.0.0.1, ::1
/// and `localhost`) and `names` (the node's hostname), signed by the CA of `data_dir`, which must have been
/// prepared by the API server first. The key is new on every call and is not written anywhere.
pub fn issue_kubelet_serving(
    data_dir: &Path,
    addresses: &[IpAddr],
    names: &[String],
) -> Result<KubeletServing, PkiError> {
    let dir = pki_dir(data_dir);
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(io(&path))
    };
    let ca_pem = read("ca.crt")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&read("ca.key")?)?)?;
    let mut dns = vec!["localhost".to_owned()];
    dns.extend(names.iter().filter(|n| !n.is_empty()).cloned());
    dns.dedup();
    let mut params = CertificateParams::new(dns)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "berth-kubelet");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let mut ips: Vec<IpAddr> = vec![
        Ipv4Addr::LOCALHOST.into(),
        std::net::Ipv6Addr::LOCALHOST.into(),
    ];
    for ip in addresses {
        if !ip.is_unspecified() && !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(KubeletServing {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem,
    })
}

/// Issues the kubelet client certificate (on every start, like the serving certificate; written to
/// `DIR/pki/apiserver-kubelet-client.{crt,key}` for debugging with curl) and the TLS client configuration that
/// presents it and verifies kubelets' serving certificates against the CA. HTTP/1.1 only: exec and attach
/// are connection upgrades.
fn kubelet_client_tls(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    ca_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, KUBELET_CLIENT_NAME);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let cert = params.signed_by(&key, issuer)?;
    write_private(
        &dir.join("apiserver-kubelet-client.crt"),
        cert.pem().as_bytes(),
    )?;
    write_private(
        &dir.join("apiserver-kubelet-client.key"),
        key.serialize_pem().as_bytes(),
    )?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

pub fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

pub fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig")
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(contents).map_err(io(path))?;
    // The mode above applies only when the file is new.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn read_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<String, PkiError>,
) -> Result<String, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = create()?;
            write_private(path, s.as_bytes())?;
            Ok(s)
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Loads (or makes, on first start) the CA and token, issues a serving certificate for `listen`, and writes
/// the admin kubeconfig.
pub fn prepare(data_dir: &Path, listen: SocketAddr) -> Result<Credentials, PkiError> {
    let dir = pki_dir(data_dir);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;

    let ca_key_pem = read_or_create(&dir.join("ca.key"), || {
        Ok(KeyPair::generate()?.serialize_pem())
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let ca_pem = read_or_create(&dir.join("ca.crt"), || {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "berth-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        Ok(params.self_signed(&ca_key)?.pem())
    })?;
    let token = read_or_create(&dir.join("admin.token"), || {
        let bytes: [u8; 32] = rand::random();
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    })?
    .trim()
    .to_owned();

    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "berth-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let mut ips: Vec<IpAddr> = vec![
        Ipv4Addr::LOCALHOST.into(),
        std::net::Ipv6Addr::LOCALHOST.into(),
    ];
    if !listen.ip().is_unspecified() && !ips.contains(&listen.ip()) {
        ips.push(listen.ip());
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let server_cert = params.signed_by(&server_key, &issuer)?;
    let server_pem = server_cert.pem();
    write_private(&dir.join("apiserver.crt"), server_pem.as_bytes())?;

    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let host = if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    };
    let server_url = format!("https://{}", SocketAddr::new(host, listen.port()));
    let kubelet_client = kubelet_client_tls(&dir, &issuer, &ca_pem)?;
    let creds = Credentials {
        ca_pem,
        token,
        server_url,
        tls: Arc::new(tls),
        kubelet_client,
    };
    write_private(&kubeconfig_path(data_dir), kubeconfig(&creds).as_bytes())?;
    Ok(creds)
}

/// The admin kubeconfig, as kubectl and kube-rs read it.
pub fn kubeconfig(creds: &Credentials) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&creds.ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: berth
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: berth-admin
  user:
    token: {token}
contexts:
- name: berth
  context:
    cluster: berth
    user: berth-admin
    namespace: default
current-context: berth
preferences: {{}}
",
        server = creds.server_url,
        token = creds.token
    )
}

/// Constant-time comparison of a presented bearer token with the admin token.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_is_stable_across_restarts_and_kubeconfig_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:16443".parse().unwrap();
        let first = prepare(dir.path(), addr).unwrap();
        let second = prepare(dir.path(), addr).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.token, second.token);
        assert_eq!(first.server_url, "https://127.0.0.1:16443");
        let mode = fs::metadata(kubeconfig_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = fs::read_to_string(kubeconfig_path(dir.path())).unwrap();
        assert!(config.contains(&first.token));
    }

    #[test]
    fn a_kubelet_serving_certificate_is_signed_by_the_data_dirs_ca() {
        use rustls::client::danger::ServerCertVerifier;
        let dir = tempfile::tempdir().unwrap();
        let creds = prepare(dir.path(), "127.0.0.1:16444".parse().unwrap()).unwrap();
        let serving =
            issue_kubelet_serving(dir.path(), &["10.1.2.3".parse().unwrap()], &["box".into()])
                .unwrap();
        assert_eq!(serving.ca_pem, creds.ca_pem);
        let cert = CertificateDer::from_pem_slice(serving.cert_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(creds.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["10.1.2.3", "127.0.0.1", "box", "localhost"] {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&cert, &[], &name, &[], now)
                .unwrap();
        }
        let other = rustls::pki_types::ServerName::try_from("10.9.9.9").unwrap();
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &other, &[], now)
                .is_err()
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(issue_kubelet_serving(empty.path(), &[], &[]).is_err());
    }

    #[test]
    fn token_comparison_rejects_prefixes_and_other_tokens() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("abd", "abc"));
    }
}
