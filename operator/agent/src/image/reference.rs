//! Image names: parsing with Docker's normalization (`busybox` → `docker.io/library/busybox:latest`), and
//! the registry facts a pull needs (is it loopback, may it use plain http).
//!
//! The grammar is checked here by hand rather than by `Reference::from_str`: oci-spec's parser is one regex
//! whose Unicode `\w{0,127}` tag compiles to a 6 MiB NFA, built on the first parse and kept for the life of the
//! process (most of a node agent's idle heap). This is distribution's `reference` grammar and normalization,
//! with `\w` as ASCII as in Go.

use std::net::IpAddr;

use oci_client::Reference;

use super::ImageError;

/// The longest repository path (`library/busybox`) a reference may have.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The longest tag.
const TAG_LENGTH_MAX: usize = 128;

/// Parses an image name as Kubernetes and Docker do.
pub(crate) fn parse(reference: &str) -> Result<Reference, ImageError> {
    parse_reference(reference).map_err(|reason| ImageError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    })
}

/// `name[:tag][@digest]`, normalized; the error is distribution's wording.
fn parse_reference(reference: &str) -> Result<Reference, &'static str> {
    if reference.is_empty() {
        return Err("repository name must have at least one component");
    }
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((left, digest)) => (left, Some(digest)),
        None => (reference, None),
    };
    // A colon after the last slash starts the tag; one before it is the registry's port.
    let (name, tag) = match name_and_tag.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name_and_tag, None),
    };
    if !is_name(name) || !tag.is_none_or(is_tag) || !digest.is_none_or(is_digest) {
        return Err("invalid reference format");
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err("repository name must not be more than 255 characters");
    }
    if let Some(digest) = digest {
        let expected = match digest.split_once(':') {
            Some(("sha256", _)) => 64,
            Some(("sha384", _)) => 96,
            Some(("sha512", _)) => 128,
            _ => return Err("unsupported digest algorithm"),
        };
        if digest.split_once(':').map(|(_, hex)| hex.len()) != Some(expected) {
            return Err("invalid checksum digest length");
        }
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
    })
}

/// `[domain/]path-component[/path-component]*`.
fn is_name(name: &str) -> bool {
    let mut components = name.split('/');
    let first = components.next().unwrap_or_default();
    let rest: Vec<&str> = components.collect();
    rest.iter().all(|c| is_path_component(c))
        && (is_path_component(first) || (!rest.is_empty() && is_domain(first)))
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(alphanumeric)
        && component.ends_with(alphanumeric)
        && component.split(alphanumeric).all(|separator| {
            matches!(separator, "" | "." | "_" | "__") || separator.chars().all(|c| c == '-')
        })
}

/// `host-label[.host-label]*[:port]`, labels of letters, digits and inner dashes.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    tag.len() <= TAG_LENGTH_MAX
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-')
}

/// `algorithm:hex` with at least 32 hex digits; the algorithm is letters and digits in parts joined by
/// `-`, `_`, `+` or `.`, each part starting with a letter.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.starts_with(|c: char| c.is_ascii_alphabetic())
            && part.chars().all(|c| c.is_ascii_alphanumeric())
    }) && hex.len() >= 32
        && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// The registry and the repository path of a name, as Docker splits them: the first component is a registry
/// only when it looks like a host (a dot, a port or `localhost`); Docker Hub's own images are under
/// `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => ("docker.io", name),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let repository = if domain == "docker.io" && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder.to_owned()
    };
    (domain.to_owned(), repository)
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
    fn names_split_into_registry_repository_tag_and_digest_as_docker_does() {
        let sha256 = format!("sha256:{}", "f".repeat(64));
        let sha512 = format!("sha512:{}", "f".repeat(128));
        let cases = [
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "test.com:tag",
                "docker.io",
                "library/test.com",
                Some("tag"),
                None,
            ),
            (
                "test.com:5000",
                "docker.io",
                "library/test.com",
                Some("5000"),
                None,
            ),
            ("test.com/repo:tag", "test.com", "repo", Some("tag"), None),
            ("test:5000/repo", "test:5000", "repo", Some("latest"), None),
            ("localhost/repo", "localhost", "repo", Some("latest"), None),
            (
                "index.docker.io/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "lowercase:Uppercase",
                "docker.io",
                "library/lowercase",
                Some("Uppercase"),
                None,
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com",
                "bar/baz/quux",
                Some("some-long-tag"),
                None,
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io",
                "test.example.com/my-app",
                Some("test.example.com"),
                None,
            ),
            (
                "foo/foo_bar.com:8080",
                "docker.io",
                "foo/foo_bar.com",
                Some("8080"),
                None,
            ),
            (
                "a/b__c/d---e.f:1",
                "docker.io",
                "a/b__c/d---e.f",
                Some("1"),
                None,
            ),
            (
                &format!("test:5000/repo@{sha256}"),
                "test:5000",
                "repo",
                None,
                Some(sha256.as_str()),
            ),
            (
                &format!("test:5000/repo:tag@{sha256}"),
                "test:5000",
                "repo",
                Some("tag"),
                Some(sha256.as_str()),
            ),
            (
                &format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
                "xn--7o8h.com",
                "myimage",
                Some("xn--7o8h.com"),
                Some(sha512.as_str()),
            ),
        ];
        for (name, registry, repository, tag, digest) in cases {
            let parsed = parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.registry(), registry, "{name}");
            assert_eq!(parsed.repository(), repository, "{name}");
            assert_eq!(parsed.tag(), tag, "{name}");
            assert_eq!(parsed.digest(), digest, "{name}");
        }
    }

    #[test]
    fn malformed_names_are_refused_with_the_reason() {
        let cases = [
            ("", "repository name must have at least one component"),
            (":justtag", "invalid reference format"),
            (
                &format!("@sha256:{}", "f".repeat(64)),
                "invalid reference format",
            ),
            (
                &format!("repo@sha256:{}", "f".repeat(34)),
                "invalid checksum digest length",
            ),
            (
                &format!("name@md5:{}", "f".repeat(64)),
                "unsupported digest algorithm",
            ),
            ("Uppercase:tag", "invalid reference format"),
            (
                "test:5000/Uppercase/lowercase:tag",
                "invalid reference format",
            ),
            ("aa/asdf$$^/aa", "invalid reference format"),
            ("a/-b", "invalid reference format"),
            ("a/b./c", "invalid reference format"),
            ("a/b___c", "invalid reference format"),
            ("a:tag:more", "invalid reference format"),
            ("-host.com/a", "invalid reference format"),
            ("host.com:port/a", "invalid reference format"),
            ("busybox:.tag", "invalid reference format"),
            ("busybox:täg", "invalid reference format"),
            (
                &format!("busybox:{}", "t".repeat(129)),
                "invalid reference format",
            ),
            (
                &"a".repeat(256),
                "repository name must not be more than 255 characters",
            ),
        ];
        for (name, reason) in cases {
            match parse(name) {
                Err(ImageError::InvalidReference { reason: got, .. }) => {
                    assert_eq!(got, reason, "{name}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
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
