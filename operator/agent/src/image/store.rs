//! The content-addressed store on disk:
//!
//! ```text
//! <root>/blobs/sha256/<hex>   manifests, configs and layer blobs, named by their digest
//! <root>/layers/<hex>         each layer unpacked once, named by its diff_id (uncompressed digest)
//! <root>/index.json           image records by manifest digest, and references → manifest digest
//! <root>/tmp/                 downloads and unpacks in progress, renamed into place when verified
//! <root>/gc.lock              shared by pulls and imports, exclusive for prune
//! <root>/index.lock           exclusive while index.json is rewritten
//! ```
//!
//! Everything lands in `tmp/` first and is renamed into place only once verified, so a crash or a refused
//! layer leaves nothing half-written where readers look.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_client::config::ConfigFile;
use oci_client::manifest::{OciImageManifest, OciManifest};
use serde::{Deserialize, Serialize};

use super::config::{ImageConfig, parse_config_file};
use super::digest::{Digest, HashingReader};
use super::unpack::unpack_blob;
use super::{ImageError, reference};

/// Manifests, configs and index files are JSON documents; anything larger is not one.
pub(crate) const MAX_DOCUMENT: u64 = 16 * 1024 * 1024;

const LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];
const CONFIG_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The image store rooted at one directory (for berth, `<data-dir>/images`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
    pub(crate) insecure_registries: Vec<String>,
}

/// An image ready to run: its config and its unpacked layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// The normalized reference it was asked for, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The manifest digest (the image ID).
    pub digest: Digest,
    /// The digest of the image index the manifest was chosen from, when it came from one.
    pub index_digest: Option<Digest>,
    pub config: ImageConfig,
    /// Layer directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    /// Compressed size of config and layers, as the manifest declares them.
    pub size: u64,
}

impl Image {
    /// The overlayfs `lowerdir=` value: layer directories top layer first, joined with `:`.
    pub fn overlay_lowerdir(&self) -> String {
        self.layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// One line of `berth image ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// `None` for an imported image that carried no name.
    pub reference: Option<String>,
    pub digest: Digest,
    pub size: u64,
    pub created: Option<jiff::Timestamp>,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<Digest, ImageRecord>,
    refs: BTreeMap<String, Digest>,
}

#[derive(Clone, Serialize, Deserialize)]
struct ImageRecord {
    config: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<Digest>,
    layers: Vec<LayerRecord>,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<jiff::Timestamp>,
}

#[derive(Clone, Serialize, Deserialize)]
struct LayerRecord {
    blob: Digest,
    diff_id: Digest,
}

/// A manifest read from the store, with the parts the store needs.
pub(crate) struct ImageManifest {
    pub(crate) manifest: OciImageManifest,
    pub(crate) config: Digest,
    pub(crate) layers: Vec<Digest>,
}

impl ImageManifest {
    /// Parses an image manifest, refusing artifacts that are not container images.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let manifest = match serde_json::from_slice(bytes) {
            Ok(OciManifest::Image(manifest)) => manifest,
            Ok(OciManifest::ImageIndex(_)) => {
                return Err(ImageError::Format(
                    "expected an image manifest, found an image index".into(),
                ));
            }
            Err(e) => {
                return Err(ImageError::Format(format!(
                    "image manifest is not valid: {e}"
                )));
            }
        };
        if !CONFIG_MEDIA_TYPES.contains(&manifest.config.media_type.as_str()) {
            return Err(ImageError::Format(format!(
                "not a container image: config media type is {}",
                manifest.config.media_type
            )));
        }
        if let Some(layer) = manifest
            .layers
            .iter()
            .find(|l| !LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
        {
            return Err(ImageError::Format(format!(
                "layer {} has unsupported media type {}",
                layer.digest, layer.media_type
            )));
        }
        let config = Digest::parse(&manifest.config.digest)?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| Digest::parse(&l.digest))
            .collect::<Result<_, _>>()?;
        Ok(ImageManifest {
            manifest,
            config,
            layers,
        })
    }

    fn size(&self) -> u64 {
        let config = u64::try_from(self.manifest.config.size).unwrap_or(0);
        config
            + self
                .manifest
                .layers
                .iter()
                .map(|l| u64::try_from(l.size).unwrap_or(0))
                .sum::<u64>()
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for dir in [
            root.join("blobs/sha256"),
            root.join("layers"),
            root.join("tmp"),
        ] {
            fs::create_dir_all(&dir).map_err(ImageError::io("creating store directory", &dir))?;
        }
        Ok(ImageStore {
            root,
            insecure_registries: Vec::new(),
        })
    }

    /// Registries (`host` or `host:port`) that may be pulled from over plain http, besides loopback ones.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure_registries = registries;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub(crate) fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub(crate) fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    /// A fresh path under `tmp/`, unique across threads and processes.
    pub(crate) fn temp_path(&self, prefix: &str) -> TempPath {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        TempPath(Some(
            self.root
                .join("tmp")
                .join(format!("{prefix}-{}-{n}", std::process::id())),
        ))
    }

    /// Streams `reader` into the store. With `expected`, the content must hash to it (and a blob already
    /// present is not read again); `limit` caps how much is read.
    pub(crate) fn write_blob(
        &self,
        expected: Option<&Digest>,
        reader: impl Read,
        limit: u64,
    ) -> Result<(Digest, u64), ImageError> {
        let temp = self.temp_path("blob");
        let path = temp.path().to_path_buf();
        let mut file = File::create(&path).map_err(ImageError::io("creating", &path))?;
        let mut reader = HashingReader::new(reader.take(limit.saturating_add(1)));
        io::copy(&mut reader, &mut file).map_err(ImageError::io("writing blob", &path))?;
        let (digest, size) = reader.finish();
        if size > limit {
            return Err(ImageError::Format(format!(
                "blob larger than its declared {limit} bytes"
            )));
        }
        if let Some(expected) = expected
            && expected != &digest
        {
            return Err(ImageError::DigestMismatch {
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
        file.sync_all().map_err(ImageError::io("syncing", &path))?;
        self.adopt_blob(temp, &digest)?;
        Ok((digest, size))
    }

    pub(crate) fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            self.write_blob(Some(&digest), bytes, bytes.len() as u64)?;
        }
        Ok(digest)
    }

    /// Moves a verified temporary file into place as the blob `digest`.
    pub(crate) fn adopt_blob(&self, temp: TempPath, digest: &Digest) -> Result<(), ImageError> {
        let target = self.blob_path(digest);
        fs::rename(temp.path(), &target).map_err(ImageError::io("storing blob", &target))?;
        temp.keep();
        Ok(())
    }

    /// Reads a JSON document (manifest, config, index) from the store and re-checks its digest.
    pub(crate) fn read_document(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(ImageError::io("reading blob", &path))?;
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT + 1)
            .read_to_end(&mut bytes)
            .map_err(ImageError::io("reading blob", &path))?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(ImageError::Format(format!(
                "{digest} is too large for a manifest or config"
            )));
        }
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    pub(crate) fn read_manifest(&self, digest: &Digest) -> Result<ImageManifest, ImageError> {
        ImageManifest::parse(&self.read_document(digest)?)
    }

    pub(crate) fn read_config(&self, digest: &Digest) -> Result<ConfigFile, ImageError> {
        parse_config_file(&self.read_document(digest)?)
    }

    /// Unpacks the layer blob `blob` under its `diff_id`, unless it is already unpacked. A refused or
    /// corrupt layer leaves nothing behind.
    pub(crate) fn ensure_layer(&self, blob: &Digest, diff_id: &Digest) -> Result<(), ImageError> {
        let target = self.layer_path(diff_id);
        if target.is_dir() {
            return Ok(());
        }
        let temp = self.temp_path("layer");
        let dir = temp.path().to_path_buf();
        fs::create_dir(&dir).map_err(ImageError::io("creating", &dir))?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(ImageError::io("creating", &dir))?;
        let span = tracing::info_span!("unpack", layer = %blob, diff_id = %diff_id);
        let _entered = span.enter();
        unpack_blob(&self.blob_path(blob), &dir, diff_id).map_err(|source| {
            if source.is_refusal() {
                tracing::warn!(error = %source, "layer refused");
            }
            ImageError::Layer {
                layer: blob.to_string(),
                source,
            }
        })?;
        match fs::rename(&dir, &target) {
            Ok(()) => {
                temp.keep();
                Ok(())
            }
            // Another pull unpacked the same layer meanwhile; ours is dropped with `temp`.
            Err(_) if target.is_dir() => Ok(()),
            Err(e) => Err(ImageError::io("storing layer", &target)(e)),
        }
    }

    /// Unpacks the layers of the image manifest `digest` (already in the store with its config and layer
    /// blobs) and records it under `references`.
    pub(crate) fn register(
        &self,
        digest: &Digest,
        index: Option<&Digest>,
        references: &[String],
    ) -> Result<Image, ImageError> {
        let manifest = self.read_manifest(digest)?;
        let config = self.read_config(&manifest.config)?;
        let diff_ids = diff_ids(&config, manifest.layers.len())?;
        for (blob, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            self.ensure_layer(blob, diff_id)?;
        }
        let record = ImageRecord {
            config: manifest.config.clone(),
            index: index.cloned(),
            layers: manifest
                .layers
                .iter()
                .zip(diff_ids)
                .map(|(blob, diff_id)| LayerRecord {
                    blob: blob.clone(),
                    diff_id,
                })
                .collect(),
            size: manifest.size(),
            created: config.created.and_then(|t| {
                jiff::Timestamp::new(
                    t.timestamp(),
                    i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
                )
                .ok()
            }),
        };
        self.update_index(|index| {
            index.images.insert(digest.clone(), record.clone());
            for reference in references {
                index.refs.insert(reference.clone(), digest.clone());
            }
        })?;
        let reference = references
            .first()
            .cloned()
            .unwrap_or_else(|| digest.to_string());
        self.image(reference, digest, &record)
    }

    /// The image `reference` names, if it is in the store with all its layers unpacked. A reference with a
    /// digest matches an image by manifest digest or by the digest of the index it was chosen from.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let parsed = reference::parse(reference)?;
        let index = self.read_index()?;
        let found = match parsed.digest() {
            Some(digest) => {
                let digest = Digest::parse(digest)?;
                index.images.iter().find(|(manifest, record)| {
                    **manifest == digest || record.index.as_ref() == Some(&digest)
                })
            }
            None => index
                .refs
                .get(&parsed.whole())
                .and_then(|digest| index.images.get_key_value(digest)),
        };
        let Some((digest, record)) = found else {
            return Ok(None);
        };
        let complete = self.has_blob(&record.config)
            && record.layers.iter().all(|l| self.has_layer(&l.diff_id));
        if !complete {
            return Ok(None);
        }
        self.image(parsed.whole(), digest, record).map(Some)
    }

    fn image(
        &self,
        reference: String,
        digest: &Digest,
        record: &ImageRecord,
    ) -> Result<Image, ImageError> {
        Ok(Image {
            reference,
            digest: digest.clone(),
            index_digest: record.index.clone(),
            config: ImageConfig::from_file(&self.read_config(&record.config)?),
            layers: record
                .layers
                .iter()
                .map(|l| self.layer_path(&l.diff_id))
                .collect(),
            size: record.size,
        })
    }

    /// Every image in the store: one line per reference, and one for each image no reference names.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let index = self.read_index()?;
        let summary =
            |reference: Option<String>, digest: &Digest, record: &ImageRecord| ImageSummary {
                reference,
                digest: digest.clone(),
                size: record.size,
                created: record.created,
            };
        let mut out: Vec<ImageSummary> = index
            .refs
            .iter()
            .filter_map(|(reference, digest)| {
                index
                    .images
                    .get(digest)
                    .map(|record| summary(Some(reference.clone()), digest, record))
            })
            .collect();
        let named: BTreeSet<&Digest> = index.refs.values().collect();
        out.extend(
            index
                .images
                .iter()
                .filter(|(digest, _)| !named.contains(digest))
                .map(|(digest, record)| summary(None, digest, record)),
        );
        Ok(out)
    }

    /// Removes every image whose manifest digest (or index digest) is not in `in_use`, then every blob and
    /// unpacked layer no remaining image needs, and leftovers of interrupted pulls. Returns the bytes freed.
    /// Waits for running pulls and imports to finish first.
    pub fn prune(&self, in_use: &[Digest]) -> Result<u64, ImageError> {
        let _gc = self.lock_gc(true)?;
        let mut live_blobs = BTreeSet::new();
        let mut live_layers = BTreeSet::new();
        self.update_index(|index| {
            index.images.retain(|digest, record| {
                in_use.contains(digest) || record.index.as_ref().is_some_and(|i| in_use.contains(i))
            });
            let images = &index.images;
            index.refs.retain(|_, digest| images.contains_key(digest));
            for (digest, record) in images {
                live_blobs.insert(digest.hex().to_owned());
                live_blobs.insert(record.config.hex().to_owned());
                live_blobs.extend(record.index.iter().map(|d| d.hex().to_owned()));
                for layer in &record.layers {
                    live_blobs.insert(layer.blob.hex().to_owned());
                    live_layers.insert(layer.diff_id.hex().to_owned());
                }
            }
        })?;
        let mut freed = 0;
        freed += remove_unlisted(&self.root.join("blobs/sha256"), &live_blobs)?;
        freed += remove_unlisted(&self.root.join("layers"), &live_layers)?;
        // No pull or import runs while the gc lock is held exclusively: all of tmp/ is debris.
        freed += remove_unlisted(&self.root.join("tmp"), &BTreeSet::new())?;
        Ok(freed)
    }

    /// Held for the whole of a pull or import (shared) and of a prune (exclusive), so that prune never
    /// deletes blobs an unfinished pull has fetched but not yet recorded.
    pub(crate) fn lock_gc(&self, exclusive: bool) -> Result<File, ImageError> {
        lock(&self.root.join("gc.lock"), exclusive)
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::Format(format!(
                    "{} is corrupt ({e}); move it away and import or pull the images again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::io("reading", path)(e)),
        }
    }

    fn update_index(&self, change: impl FnOnce(&mut Index)) -> Result<(), ImageError> {
        let _lock = lock(&self.root.join("index.lock"), true)?;
        let mut index = self.read_index()?;
        change(&mut index);
        let path = self.root.join("index.json");
        let temp = self.temp_path("index");
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| ImageError::Format(format!("serializing the image index: {e}")))?;
        let mut file = File::create(temp.path()).map_err(ImageError::io("writing", temp.path()))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(ImageError::io("writing", temp.path()))?;
        fs::rename(temp.path(), &path).map_err(ImageError::io("writing", &path))?;
        temp.keep();
        Ok(())
    }
}

/// The config's diff_ids, which must pair one to one with the manifest's layers.
pub(crate) fn diff_ids(config: &ConfigFile, layers: usize) -> Result<Vec<Digest>, ImageError> {
    let diff_ids: Vec<Digest> = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<_, _>>()?;
    if diff_ids.len() != layers {
        return Err(ImageError::Format(format!(
            "image config lists {} layer diff_ids but the manifest has {layers} layers",
            diff_ids.len()
        )));
    }
    Ok(diff_ids)
}

fn lock(path: &Path, exclusive: bool) -> Result<File, ImageError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(ImageError::io("opening lock", path))?;
    if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    }
    .map_err(ImageError::io("locking", path))?;
    Ok(file)
}

/// Removes every entry of `dir` whose name is not in `keep`; returns the bytes they held.
fn remove_unlisted(dir: &Path, keep: &BTreeSet<String>) -> Result<u64, ImageError> {
    let mut freed = 0;
    for entry in fs::read_dir(dir).map_err(ImageError::io("listing", dir))? {
        let entry = entry.map_err(ImageError::io("listing", dir))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| keep.contains(name))
        {
            continue;
        }
        let path = entry.path();
        freed += disk_usage(&path);
        let meta = fs::symlink_metadata(&path).map_err(ImageError::io("inspecting", &path))?;
        if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .map_err(ImageError::io("removing", &path))?;
    }
    Ok(freed)
}

fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| disk_usage(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A path under `tmp/` that is removed when dropped, unless kept.
pub(crate) struct TempPath(Option<PathBuf>);

impl TempPath {
    pub(crate) fn path(&self) -> &Path {
        // The Option is only emptied by `keep`, which consumes self.
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => drop(fs::remove_dir_all(&path)),
                Ok(_) => drop(fs::remove_file(&path)),
                Err(_) => {}
            }
        }
    }
}
