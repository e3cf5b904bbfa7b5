//! Registry credentials from docker config JSON, the content of `kubernetes.io/dockerconfigjson`
//! (`{"auths": {...}}`) and legacy `kubernetes.io/dockercfg` (the map alone) imagePullSecrets.
//! Keys match the way the kubelet matches them: scheme and `/v1/`, `/v2/` suffixes ignored, Docker Hub's
//! aliases folded into `docker.io`, `*` globs per host label, an optional repository path prefix; the most
//! specific key wins. `identitytoken` (an OAuth refresh token) is not supported and such entries are skipped.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::ImageError;

const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Credentials for the registries a Pod may pull from (all of its imagePullSecrets together).
#[derive(Clone, Default)]
pub struct Credentials {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    host: String,
    port: Option<String>,
    path: String,
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct DockerConfig {
    auths: Option<BTreeMap<String, AuthEntry>>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{}/{}", e.host, e.path))
            .collect();
        f.debug_struct("Credentials")
            .field("registries", &keys)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// No credentials: anonymous pulls.
    pub fn none() -> Self {
        Credentials::default()
    }

    /// Parses one docker config JSON.
    pub fn from_docker_config(json: &[u8]) -> Result<Self, ImageError> {
        let mut credentials = Credentials::default();
        credentials.add_docker_config(json)?;
        Ok(credentials)
    }

    /// Adds the entries of one more docker config JSON (the next imagePullSecret).
    pub fn add_docker_config(&mut self, json: &[u8]) -> Result<(), ImageError> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| ImageError::Credentials(e.to_string()))?;
        let auths: BTreeMap<String, AuthEntry> = if value.get("auths").is_some() {
            serde_json::from_value::<DockerConfig>(value)
                .map_err(|e| ImageError::Credentials(e.to_string()))?
                .auths
                .unwrap_or_default()
        } else {
            serde_json::from_value(value).map_err(|e| ImageError::Credentials(e.to_string()))?
        };
        for (key, auth) in auths {
            let (username, password) = match (
                auth.auth.as_deref().filter(|a| !a.is_empty()),
                auth.username,
                auth.password,
            ) {
                (Some(encoded), _, _) => decode_auth(&key, encoded)?,
                (None, Some(username), Some(password)) => (username, password),
                _ => {
                    tracing::debug!(
                        registry = key,
                        "docker config entry without usable credentials skipped"
                    );
                    continue;
                }
            };
            let (host, port, path) = split_key(&key);
            self.entries.push(Entry {
                host,
                port,
                path,
                username,
                password,
            });
        }
        Ok(())
    }

    /// Adds a user name and password for one registry (`host[:port]`), as `docker login` records them.
    pub fn add_login(&mut self, registry: &str, username: &str, password: &str) {
        let (host, port, path) = split_key(registry);
        self.entries.push(Entry {
            host,
            port,
            path,
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }

    /// The credentials for `reference`'s registry and repository, or anonymous access.
    pub(crate) fn for_reference(&self, reference: &Reference) -> RegistryAuth {
        let (host, port, _) = split_key(reference.registry());
        let repository = reference.repository();
        self.entries
            .iter()
            .filter(|e| {
                e.port == port && host_matches(&e.host, &host) && path_matches(&e.path, repository)
            })
            .max_by_key(|e| (!e.host.contains('*'), e.host.len(), e.path.len()))
            .map_or(RegistryAuth::Anonymous, |e| {
                RegistryAuth::Basic(e.username.clone(), e.password.clone())
            })
    }
}

fn decode_auth(key: &str, encoded: &str) -> Result<(String, String), ImageError> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| ImageError::Credentials(format!("`auth` of {key} is not base64: {e}")))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| ImageError::Credentials(format!("`auth` of {key} is not UTF-8")))?;
    let (user, password) = decoded.split_once(':').ok_or_else(|| {
        ImageError::Credentials(format!("`auth` of {key} is not `user:password`"))
    })?;
    Ok((user.to_owned(), password.to_owned()))
}

/// `https://Host:5000/v2/ns/` → (`host`, `5000`, `ns`).
fn split_key(key: &str) -> (String, Option<String>, String) {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (authority, path) = key.split_once('/').unwrap_or((key, ""));
    let path = path.trim_end_matches('/');
    let path = path
        .strip_prefix("v1")
        .or_else(|| path.strip_prefix("v2"))
        .map_or(path, |p| p.trim_start_matches('/'));
    let split = if authority.starts_with('[') {
        authority
            .split_once("]:")
            .map(|(host, port)| (&authority[..host.len() + 1], port))
    } else {
        authority.rsplit_once(':')
    };
    let (host, port) = match split {
        Some((host, port)) => (host, Some(port.to_owned())),
        None => (authority, None),
    };
    let mut host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        host = "docker.io".to_owned();
    }
    (host, port, path.to_owned())
}

/// `*.example.com` matches `a.example.com`, label by label, as the kubelet's glob does.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let host: Vec<&str> = host.split('.').collect();
    pattern.len() == host.len() && pattern.iter().zip(&host).all(|(p, h)| label_matches(p, h))
}

fn label_matches(pattern: &str, label: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == label,
        Some((prefix, suffix)) => {
            label.len() >= prefix.len() + suffix.len()
                && label.starts_with(prefix)
                && label.ends_with(suffix)
        }
    }
}

fn path_matches(prefix: &str, repository: &str) -> bool {
    prefix.is_empty()
        || repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_for(credentials: &Credentials, image: &str) -> RegistryAuth {
        credentials.for_reference(&image.parse().unwrap())
    }

    fn basic(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.into(), password.into())
    }

    #[test]
    fn base64_auth_and_username_password_both_work() {
        let json = br#"{"auths": {
            "registry.example.com": {"auth": "YWxpY2U6czNjcmV0"},
            "127.0.0.1:5000": {"username": "bob", "password": "pw:with:colons"}
        }}"#;
        let credentials = Credentials::from_docker_config(json).unwrap();
        assert_eq!(
            auth_for(&credentials, "registry.example.com/app:1"),
            basic("alice", "s3cret")
        );
        assert_eq!(
            auth_for(&credentials, "127.0.0.1:5000/app:1"),
            basic("bob", "pw:with:colons")
        );
        assert_eq!(
            auth_for(&credentials, "127.0.0.1:5001/app:1"),
            RegistryAuth::Anonymous
        );
        assert_eq!(
            auth_for(&credentials, "other.example.com/app"),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn docker_hub_keys_match_short_names() {
        let json = br#"{"auths": {"https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"}}}"#;
        let credentials = Credentials::from_docker_config(json).unwrap();
        assert_eq!(auth_for(&credentials, "busybox"), basic("hub", "hubpw"));
    }

    #[test]
    fn legacy_dockercfg_without_auths_wrapper_is_accepted() {
        let json = br#"{"registry.example.com": {"username": "u", "password": "p"}}"#;
        let credentials = Credentials::from_docker_config(json).unwrap();
        assert_eq!(
            auth_for(&credentials, "registry.example.com/x"),
            basic("u", "p")
        );
    }

    #[test]
    fn globs_and_repository_paths_pick_the_most_specific_entry() {
        let json = br#"{"auths": {
            "*.example.com": {"username": "glob", "password": "p"},
            "registry.example.com": {"username": "host", "password": "p"},
            "registry.example.com/team": {"username": "team", "password": "p"}
        }}"#;
        let credentials = Credentials::from_docker_config(json).unwrap();
        assert_eq!(
            auth_for(&credentials, "registry.example.com/team/app"),
            basic("team", "p")
        );
        assert_eq!(
            auth_for(&credentials, "registry.example.com/teams/app"),
            basic("host", "p")
        );
        assert_eq!(
            auth_for(&credentials, "mirror.example.com/app"),
            basic("glob", "p")
        );
        assert_eq!(
            auth_for(&credentials, "a.b.example.com/app"),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn malformed_configs_are_errors() {
        assert!(Credentials::from_docker_config(b"not json").is_err());
        assert!(Credentials::from_docker_config(br#"{"auths": {"r": {"auth": "!!"}}}"#).is_err());
    }

    #[test]
    fn a_login_applies_to_its_registry_only() {
        let mut credentials = Credentials::none();
        credentials.add_login("registry.example.com:5000", "u", "p");
        assert_eq!(
            auth_for(&credentials, "registry.example.com:5000/app:1"),
            basic("u", "p")
        );
        assert_eq!(
            auth_for(&credentials, "registry.example.com/app:1"),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn debug_output_does_not_show_passwords() {
        let credentials = Credentials::from_docker_config(
            br#"{"auths": {"r": {"username": "u", "password": "hunter2"}}}"#,
        )
        .unwrap();
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
