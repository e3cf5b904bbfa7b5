//! Image names: parsing with Docker's normalization (`busybox` → `docker.io/library/busybox:latest`), and
//! the registry facts a pull needs (is it loopback, may it use plain http).

use std::net::IpAddr;

use oci_client::Reference;

use super::ImageError;

/// Parses an image name as Kubernetes and Docker do.
pub(crate) fn parse(reference: &str) -> Result<Reference, ImageError> {
    reference
        .parse::<Reference>()
        .map_err(|e| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// Normalizes an image name: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    parse(reference).map(|r| r.whole())
}

/// The registry an image name pulls from, as written (`busybox` → `docker.io`, `127.0.0.1:5000/x` →
/// `127.0.0.1:5000`): what `insecure_registries` and a login name.
pub fn registry(reference: &str) -> Result<String, ImageError> {
    parse(reference).map(|r| r.registry().to_owned())
}

/// Whether the name carries neither a tag nor a digest, or the tag `latest` (Kubernetes then defaults the
/// pull policy to Always).
pub(crate) fn is_latest(reference: &str) -> bool {
    if reference.contains('@') {
        return false;
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

/// `host` without its port (`[::1]:5000` → `::1`).
fn host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Whether the registry is on this machine's loopback interface.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = host(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_normalize_to_docker_hub() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/team/app:1.2").unwrap(),
            "127.0.0.1:5000/team/app:1.2"
        );
    }

    #[test]
    fn the_registry_is_the_one_written_or_docker_hub() {
        assert_eq!(registry("busybox").unwrap(), "docker.io");
        assert_eq!(
            registry("registry.example.com:5000/team/app:1").unwrap(),
            "registry.example.com:5000"
        );
    }

    #[test]
    fn invalid_names_are_reported_as_such() {
        let error = normalize("Not A Name").unwrap_err();
        assert_eq!(error.kube_reason(), "InvalidImageName");
    }

    #[test]
    fn latest_means_no_tag_or_the_latest_tag() {
        assert!(is_latest("busybox"));
        assert!(is_latest("busybox:latest"));
        assert!(is_latest("127.0.0.1:5000/busybox"));
        assert!(!is_latest("127.0.0.1:5000/busybox:1.36"));
        assert!(!is_latest(
            "busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ));
    }

    #[test]
    fn loopback_registries_are_recognized() {
        for registry in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.3.2.1",
        ] {
            assert!(is_loopback(registry), "{registry}");
        }
        for registry in ["docker.io", "10.0.0.1:5000", "registry.example.com:443"] {
            assert!(!is_loopback(registry), "{registry}");
        }
    }
}
