//! Which entry of an image index (manifest list) this machine runs: linux and the GOARCH name of the
//! host's architecture.

use oci_client::manifest::ImageIndexEntry;

/// The OCI `os` of every image berth runs.
pub const OS: &str = "linux";

/// The host's architecture in OCI (GOARCH) spelling.
pub fn architecture() -> &'static str {
    goarch(std::env::consts::ARCH)
}

fn goarch(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The index entry for this machine. For arm64, an entry with variant `v8` or none is preferred over
/// other variants.
pub(crate) fn select(entries: &[ImageIndexEntry]) -> Option<&ImageIndexEntry> {
    select_for(entries, architecture())
}

fn select_for<'a>(
    entries: &'a [ImageIndexEntry],
    architecture: &str,
) -> Option<&'a ImageIndexEntry> {
    let matching = entries.iter().filter(|entry| {
        entry
            .platform
            .as_ref()
            .is_some_and(|p| p.os.to_string() == OS && p.architecture.to_string() == architecture)
    });
    let mut fallback = None;
    for entry in matching {
        let variant = entry.platform.as_ref().and_then(|p| p.variant.as_deref());
        if architecture != "arm64" || matches!(variant, None | Some("v8")) {
            return Some(entry);
        }
        fallback.get_or_insert(entry);
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<ImageIndexEntry> {
        serde_json::from_str(
            r#"[
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": "sha256:aa",
               "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": "sha256:bb",
               "platform": {"architecture": "amd64", "os": "windows"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": "sha256:cc",
               "platform": {"architecture": "amd64", "os": "linux"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": "sha256:dd",
               "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": "sha256:ee",
               "platform": {"architecture": "unknown", "os": "unknown"}}
            ]"#,
        )
        .unwrap()
    }

    #[test]
    fn host_architecture_uses_goarch_names() {
        assert_eq!(goarch("x86_64"), "amd64");
        assert_eq!(goarch("aarch64"), "arm64");
    }

    #[test]
    fn the_linux_entry_of_the_host_architecture_is_chosen() {
        assert_eq!(
            select_for(&entries(), "amd64").map(|e| e.digest.as_str()),
            Some("sha256:cc")
        );
        assert_eq!(
            select_for(&entries(), "arm64").map(|e| e.digest.as_str()),
            Some("sha256:dd")
        );
        assert_eq!(
            select_for(&entries(), "s390x").map(|e| e.digest.as_str()),
            None
        );
    }
}
