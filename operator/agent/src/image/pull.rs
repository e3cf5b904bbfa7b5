//! Pulls from OCI registries with `oci-client`, and the kubelet's pull policies.
//!
//! Manifests are fetched raw (so the stored bytes are exactly the ones their digest names), an image
//! index is resolved to this machine's platform, and blobs are streamed to `tmp/` while hashed, then
//! renamed into the store: a layer is never held in memory. TLS uses rustls with the ring provider
//! (installed as the process default if none is); plain http is used only for loopback registries and the
//! store's configured insecure registries.

use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::digest::Digest;
use super::store::{ImageManifest, diff_ids};
use super::{Credentials, Image, ImageError, ImageStore, platform, reference};

const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];
/// Progress is reported at most this often per layer (and once at its end).
const PROGRESS_STEP: u64 = 512 * 1024;

/// A container's `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// What to do about an image, given the policy and whether the store has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullAction {
    /// Ask the registry (it may still turn out that every blob is present).
    Pull,
    /// Run the image in the store.
    UsePresent,
    /// Fail with `ErrImageNeverPull`.
    Refuse,
}

impl PullPolicy {
    /// The policy a container gets: its own `imagePullPolicy` when set, otherwise Kubernetes' default
    /// (Always for `:latest` or no tag, IfNotPresent otherwise).
    pub fn for_container(policy: Option<&str>, image: &str) -> Result<Self, ImageError> {
        match policy {
            Some("Always") => Ok(PullPolicy::Always),
            Some("IfNotPresent") => Ok(PullPolicy::IfNotPresent),
            Some("Never") => Ok(PullPolicy::Never),
            Some(other) => Err(ImageError::Format(format!(
                "unknown imagePullPolicy `{other}`: use Always, IfNotPresent or Never"
            ))),
            None if reference::is_latest(image) => Ok(PullPolicy::Always),
            None => Ok(PullPolicy::IfNotPresent),
        }
    }

    pub fn action(self, present: bool) -> PullAction {
        match (self, present) {
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => PullAction::Pull,
            (PullPolicy::IfNotPresent, true) | (PullPolicy::Never, true) => PullAction::UsePresent,
            (PullPolicy::Never, false) => PullAction::Refuse,
        }
    }
}

/// What a pull reports as it goes, for `berth` to draw progress and for the kubelet to emit Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullEvent {
    /// The manifest is known: how many layers and how many bytes.
    Resolved {
        reference: String,
        digest: Digest,
        layers: usize,
        size: u64,
    },
    /// Bytes of a layer (or config) blob downloaded so far.
    Downloading {
        digest: Digest,
        done: u64,
        total: u64,
    },
    /// A layer already in the store, nothing to fetch.
    AlreadyPresent { digest: Digest, size: u64 },
    /// A layer is being unpacked.
    Unpacking { digest: Digest },
    /// A layer is unpacked and in the store.
    Unpacked { digest: Digest },
    /// The image is ready.
    Done { digest: Digest },
}

/// A progress callback. Called from the pulling task; it should return quickly (send to a channel).
pub type Progress = dyn Fn(PullEvent) + Send + Sync;

/// A progress callback that ignores everything.
pub fn no_progress(_: PullEvent) {}

impl ImageStore {
    /// Makes `image` present according to `policy` and returns it; the kubelet's image step.
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: &Credentials,
        progress: &Progress,
    ) -> Result<Image, ImageError> {
        let present = {
            let store = self.clone();
            let image = image.to_owned();
            blocking(move || store.resolve(&image)).await?
        };
        match (policy.action(present.is_some()), present) {
            (PullAction::UsePresent, Some(found)) => Ok(found),
            (PullAction::Refuse, _) => Err(ImageError::NeverPull {
                reference: reference::normalize(image)?,
            }),
            _ => self.pull(image, credentials, progress).await,
        }
    }

    /// Pulls `image` from its registry: resolves the manifest (for this platform), fetches the blobs the
    /// store lacks, unpacks new layers, and records the reference.
    pub async fn pull(
        &self,
        image: &str,
        credentials: &Credentials,
        progress: &Progress,
    ) -> Result<Image, ImageError> {
        let reference = reference::parse(image)?;
        let name = reference.whole();
        let span = tracing::info_span!("pull", image = %name);
        let _gc = {
            let store = self.clone();
            blocking(move || store.lock_gc(false)).await?
        };
        let registry = Registry::connect(self, &reference, credentials)?;
        tracing::debug!(parent: &span, registry = reference.resolve_registry(), "resolving manifest");

        let (bytes, digest) = registry.manifest(&reference).await?;
        let (manifest_bytes, digest, index) = match parse_manifest(&bytes)? {
            OciManifest::Image(_) => (bytes, digest, None),
            OciManifest::ImageIndex(list) => {
                let entry = platform::select(&list.manifests).ok_or_else(|| {
                    ImageError::NoMatchingPlatform {
                        reference: name.clone(),
                        os: platform::OS,
                        architecture: platform::architecture(),
                    }
                })?;
                let chosen = Digest::parse(&entry.digest)?;
                self.write_blob_bytes(&bytes)?;
                let (manifest, actual) = registry
                    .manifest(&reference.clone_with_digest(chosen.to_string()))
                    .await?;
                if actual != chosen {
                    return Err(ImageError::DigestMismatch {
                        expected: chosen.to_string(),
                        actual: actual.to_string(),
                    });
                }
                (manifest, chosen, Some(digest))
            }
        };
        if self.write_blob_bytes(&manifest_bytes)? != digest {
            return Err(ImageError::Format(format!(
                "manifest of {name} does not hash to {digest}"
            )));
        }
        let manifest = ImageManifest::parse(&manifest_bytes)?;
        let total = manifest
            .manifest
            .layers
            .iter()
            .map(|l| u64::try_from(l.size).unwrap_or(0))
            .sum();
        progress(PullEvent::Resolved {
            reference: name.clone(),
            digest: digest.clone(),
            layers: manifest.layers.len(),
            size: total,
        });

        if !self.has_blob(&manifest.config) {
            self.download(
                &registry,
                &manifest.manifest.config,
                &manifest.config,
                &|_| {},
            )
            .await?;
        }
        let diff_ids = diff_ids(&self.read_config(&manifest.config)?, manifest.layers.len())?;
        for ((descriptor, blob), diff_id) in manifest
            .manifest
            .layers
            .iter()
            .zip(&manifest.layers)
            .zip(&diff_ids)
        {
            if self.has_layer(diff_id) {
                progress(PullEvent::AlreadyPresent {
                    digest: blob.clone(),
                    size: u64::try_from(descriptor.size).unwrap_or(0),
                });
                continue;
            }
            if !self.has_blob(blob) {
                self.download(&registry, descriptor, blob, progress).await?;
            }
            progress(PullEvent::Unpacking {
                digest: blob.clone(),
            });
            let (store, unpacked, diff_id) = (self.clone(), blob.clone(), diff_id.clone());
            blocking(move || store.ensure_layer(&unpacked, &diff_id)).await?;
            progress(PullEvent::Unpacked {
                digest: blob.clone(),
            });
        }
        let image = {
            let (store, digest, index, name) =
                (self.clone(), digest.clone(), index.clone(), name.clone());
            blocking(move || store.register(&digest, index.as_ref(), &[name])).await?
        };
        tracing::info!(parent: &span, digest = %image.digest, "pulled");
        progress(PullEvent::Done { digest });
        Ok(image)
    }

    /// Streams one blob into the store, checking its size and digest as it arrives.
    async fn download(
        &self,
        registry: &Registry,
        descriptor: &OciDescriptor,
        digest: &Digest,
        progress: &Progress,
    ) -> Result<(), ImageError> {
        let total = u64::try_from(descriptor.size)
            .map_err(|_| ImageError::Format(format!("blob {digest} has a negative size")))?;
        let mut stream = registry
            .client
            .pull_blob_stream(&registry.reference, descriptor)
            .await
            .map_err(|e| registry.error(e))?;
        let temp = self.temp_path("download");
        let mut file = tokio::fs::File::create(temp.path())
            .await
            .map_err(ImageError::io("creating", temp.path()))?;
        let mut hasher = Sha256::new();
        let (mut done, mut reported) = (0u64, 0u64);
        progress(PullEvent::Downloading {
            digest: digest.clone(),
            done,
            total,
        });
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ImageError::Io {
                what: "downloading",
                path: temp.path().to_path_buf(),
                source: e,
            })?;
            done += chunk.len() as u64;
            if done > total {
                return Err(ImageError::SizeMismatch {
                    digest: digest.to_string(),
                    expected: total,
                    actual: done,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(ImageError::io("writing", temp.path()))?;
            if done - reported >= PROGRESS_STEP || done == total {
                reported = done;
                progress(PullEvent::Downloading {
                    digest: digest.clone(),
                    done,
                    total,
                });
            }
        }
        if done != total {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected: total,
                actual: done,
            });
        }
        let actual = Digest::from_hasher(hasher);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        file.sync_all()
            .await
            .map_err(ImageError::io("syncing", temp.path()))?;
        drop(file);
        self.adopt_blob(temp, digest)
    }
}

/// One registry session: the client (with its token cache), the reference and the credentials.
struct Registry {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
}

impl Registry {
    fn connect(
        store: &ImageStore,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<Self, ImageError> {
        // reqwest is built without a default crypto provider; berth's rustls uses ring everywhere.
        // An error only means a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = reference.resolve_registry().to_owned();
        let plain_http = reference::is_loopback(&registry)
            || store
                .insecure_registries
                .iter()
                .any(|r| r == reference.registry() || *r == registry);
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![registry])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| ImageError::Registry {
            reference: reference.whole(),
            source: Box::new(e),
        })?;
        Ok(Registry {
            client,
            reference: reference.clone(),
            auth: credentials.for_reference(reference),
        })
    }

    /// The raw manifest `reference` names and its digest (checked against the body by oci-client).
    async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Digest), ImageError> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.error(e))?;
        let digest = Digest::parse(&digest)?;
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok((bytes.to_vec(), digest))
    }

    fn error(&self, source: oci_client::errors::OciDistributionError) -> ImageError {
        ImageError::Registry {
            reference: self.reference.whole(),
            source: Box::new(source),
        }
    }
}

fn parse_manifest(bytes: &[u8]) -> Result<OciManifest, ImageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Format(format!("registry sent an invalid manifest: {e}")))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ImageError::Format(format!("image task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_follows_the_tag() {
        assert_eq!(
            PullPolicy::for_container(None, "busybox").unwrap(),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::for_container(None, "busybox:latest").unwrap(),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::for_container(None, "busybox:1.36").unwrap(),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::for_container(Some("Never"), "busybox").unwrap(),
            PullPolicy::Never
        );
        assert!(PullPolicy::for_container(Some("Sometimes"), "busybox").is_err());
    }

    #[test]
    fn policy_actions_match_the_kubelet() {
        assert_eq!(PullPolicy::Always.action(true), PullAction::Pull);
        assert_eq!(PullPolicy::Always.action(false), PullAction::Pull);
        assert_eq!(
            PullPolicy::IfNotPresent.action(true),
            PullAction::UsePresent
        );
        assert_eq!(PullPolicy::IfNotPresent.action(false), PullAction::Pull);
        assert_eq!(PullPolicy::Never.action(true), PullAction::UsePresent);
        assert_eq!(PullPolicy::Never.action(false), PullAction::Refuse);
    }

    #[tokio::test]
    async fn never_policy_without_the_image_is_err_image_never_pull() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let error = store
            .ensure(
                "busybox:1.36",
                PullPolicy::Never,
                &Credentials::none(),
                &no_progress,
            )
            .await
            .unwrap_err();
        assert_eq!(error.kube_reason(), "ErrImageNeverPull");
    }
}
