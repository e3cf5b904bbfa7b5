//! `berth image import`: OCI image layouts (a directory), OCI archives (a tar of a layout) and
//! `docker save` archives (`manifest.json` + layer tars, and since Docker 25 an OCI layout too), plain or
//! gzip/zstd-compressed.
//!
//! An archive is read once, front to back: blobs stream straight into the store (hashed on the way), the
//! small JSON documents stay in memory, and the format is decided at the end. A layout directory's blobs
//! are copied only when an image needs them. Both are an [`OciSource`]: where the blobs of an OCI index
//! come from.
//!
//! Names: `io.containerd.image.name` when present, else `org.opencontainers.image.ref.name` when it is a
//! full reference; a bare tag (what `skopeo`/`umoci` write) is joined to the file or directory name
//! (`busybox.tar` + `latest` → `docker.io/library/busybox:latest`); docker archives give `RepoTags`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, OciManifest,
};
use serde::Deserialize;

use super::compression::{self, decompressed};
use super::digest::Digest;
use super::store::{ImageManifest, MAX_DOCUMENT};
use super::{ImageError, ImageStore, platform, reference};

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of a `docker save` manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports the images in `path` (a layout directory or an archive) and returns the references it
    /// recorded, or the manifest digest of an image that carried no name.
    pub fn import(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let _gc = self.lock_gc(false)?;
        let stem = name_stem(path);
        let meta = std::fs::metadata(path).map_err(ImageError::io("reading", path))?;
        if meta.is_dir() {
            let index = read_small(&path.join("index.json"))?;
            let mut source = LayoutDir {
                store: self,
                dir: path.to_path_buf(),
            };
            return import_oci(self, &mut source, &index, stem.as_deref(), &HashMap::new());
        }
        let archive = scan_archive(self, path)?;
        let tags = archive.docker_tags()?;
        if let Some(index) = archive.documents.get("index.json") {
            let mut source = ArchiveBlobs { store: self };
            return import_oci(self, &mut source, index, stem.as_deref(), &tags);
        }
        if archive.documents.contains_key("manifest.json") {
            return archive.import_docker(self);
        }
        Err(ImageError::Format(format!(
            "{} is neither an OCI archive (no index.json) nor a docker save archive (no manifest.json)",
            path.display()
        )))
    }
}

/// Where the blobs named by an OCI index come from.
trait OciSource {
    /// Makes sure the blob `digest` is in the store.
    fn fetch(&mut self, digest: &Digest) -> Result<(), ImageError>;
}

/// An OCI layout directory: blobs are copied (and verified) on demand.
struct LayoutDir<'a> {
    store: &'a ImageStore,
    dir: PathBuf,
}

impl OciSource for LayoutDir<'_> {
    fn fetch(&mut self, digest: &Digest) -> Result<(), ImageError> {
        if self.store.has_blob(digest) {
            return Ok(());
        }
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        let file = File::open(&path).map_err(ImageError::io("reading layout blob", &path))?;
        self.store.write_blob(Some(digest), file, u64::MAX - 1)?;
        Ok(())
    }
}

/// An archive: every blob was streamed into the store while scanning.
struct ArchiveBlobs<'a> {
    store: &'a ImageStore,
}

impl OciSource for ArchiveBlobs<'_> {
    fn fetch(&mut self, digest: &Digest) -> Result<(), ImageError> {
        if self.store.has_blob(digest) {
            Ok(())
        } else {
            Err(ImageError::Format(format!(
                "the archive does not contain blob {digest}"
            )))
        }
    }
}

fn import_oci(
    store: &ImageStore,
    source: &mut dyn OciSource,
    index_json: &[u8],
    stem: Option<&str>,
    docker_tags: &HashMap<Digest, Vec<String>>,
) -> Result<Vec<String>, ImageError> {
    let index: OciImageIndex = serde_json::from_slice(index_json)
        .map_err(|e| ImageError::Format(format!("index.json is not an OCI image index: {e}")))?;
    // Group the entries by name: a multi-platform layout lists one entry per platform under one name.
    let mut by_name: BTreeMap<Option<String>, Vec<&ImageIndexEntry>> = BTreeMap::new();
    for entry in &index.manifests {
        by_name
            .entry(entry_name(entry, stem))
            .or_default()
            .push(entry);
    }
    let mut recorded = Vec::new();
    for (name, entries) in by_name {
        let platform_entries: Vec<ImageIndexEntry> = entries
            .iter()
            .filter(|e| e.platform.is_some())
            .map(|e| (*e).clone())
            .collect();
        let chosen: Vec<&ImageIndexEntry> = match platform::select(&platform_entries) {
            Some(entry) => vec![entry],
            None if entries.iter().all(|e| e.platform.is_some()) => {
                return Err(ImageError::NoMatchingPlatform {
                    reference: name.unwrap_or_else(|| "the archive's image".into()),
                    os: platform::OS,
                    architecture: platform::architecture(),
                });
            }
            None => entries
                .into_iter()
                .filter(|e| e.platform.is_none())
                .collect(),
        };
        for entry in chosen {
            let (manifest, index) = resolve_entry(store, source, entry)?;
            let parsed = store.read_manifest(&manifest)?;
            source.fetch(&parsed.config)?;
            for layer in &parsed.layers {
                source.fetch(layer)?;
            }
            let mut names: Vec<String> = name.iter().cloned().collect();
            for tag in docker_tags.get(&parsed.config).into_iter().flatten() {
                if !names.contains(tag) {
                    names.push(tag.clone());
                }
            }
            store.register(&manifest, index.as_ref(), &names)?;
            if names.is_empty() {
                recorded.push(manifest.to_string());
            }
            recorded.extend(names);
        }
    }
    if recorded.is_empty() {
        return Err(ImageError::Format(
            "the layout's index.json lists no images".into(),
        ));
    }
    Ok(recorded)
}

/// The image manifest an index entry leads to (through a nested index for this platform), and the
/// nested index's digest.
fn resolve_entry(
    store: &ImageStore,
    source: &mut dyn OciSource,
    entry: &ImageIndexEntry,
) -> Result<(Digest, Option<Digest>), ImageError> {
    let digest = Digest::parse(&entry.digest)?;
    source.fetch(&digest)?;
    match serde_json::from_slice(&store.read_document(&digest)?) {
        Ok(OciManifest::Image(_)) => Ok((digest, None)),
        Ok(OciManifest::ImageIndex(nested)) => {
            let chosen = platform::select(&nested.manifests).ok_or_else(|| {
                ImageError::NoMatchingPlatform {
                    reference: entry.digest.clone(),
                    os: platform::OS,
                    architecture: platform::architecture(),
                }
            })?;
            let manifest = Digest::parse(&chosen.digest)?;
            source.fetch(&manifest)?;
            Ok((manifest, Some(digest)))
        }
        Err(e) => Err(ImageError::Format(format!(
            "{digest} is neither an image manifest nor an index: {e}"
        ))),
    }
}

/// The name an index entry carries, normalized.
fn entry_name(entry: &ImageIndexEntry, stem: Option<&str>) -> Option<String> {
    let annotations = entry.annotations.as_ref()?;
    if let Some(name) = annotations
        .get(CONTAINERD_NAME)
        .and_then(|n| reference::normalize(n).ok())
    {
        return Some(name);
    }
    let name = annotations.get(OCI_REF_NAME)?;
    if name.contains('/') || name.contains(':') {
        return reference::normalize(name).ok();
    }
    reference::normalize(&format!("{}:{name}", stem?)).ok()
}

/// The file or directory name without archive extensions, lower-cased: a repository name for bare tags.
fn name_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let mut stem = name.as_str();
    for extension in [".gz", ".zst", ".tgz", ".tar", ".oci"] {
        stem = stem.strip_suffix(extension).unwrap_or(stem);
    }
    let stem: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let stem = stem
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    (!stem.is_empty()).then_some(stem)
}

fn read_small(path: &Path) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(ImageError::io("reading", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(ImageError::io("reading", path))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(ImageError::Format(format!(
            "{} is too large for an index",
            path.display()
        )));
    }
    Ok(bytes)
}

/// What one pass over an archive found.
#[derive(Default)]
struct ScannedArchive {
    /// JSON documents (and `oci-layout`, `repositories`) by path.
    documents: HashMap<String, Vec<u8>>,
    /// Every other file, now a blob in the store, by path.
    blobs: HashMap<String, (Digest, u64)>,
    /// Symbolic and hard links between archive members (older `docker save` links duplicate layers).
    links: HashMap<String, String>,
}

fn scan_archive(store: &ImageStore, path: &Path) -> Result<ScannedArchive, ImageError> {
    let file = File::open(path).map_err(ImageError::io("reading", path))?;
    let reader = decompressed(file).map_err(ImageError::io("reading", path))?;
    let mut archive = tar::Archive::new(reader);
    let mut scanned = ScannedArchive::default();
    let bad = |e: std::io::Error| {
        ImageError::Format(format!(
            "{} is not a readable tar archive: {e}",
            path.display()
        ))
    };
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let Some(name) = member_name(&entry.path().map_err(bad)?) else {
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name().map_err(bad)? {
                let base = if kind.is_symlink() {
                    Path::new(&name)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(target)
                } else {
                    target.into_owned()
                };
                if let Some(target) = member_name(&base) {
                    scanned.links.insert(name, target);
                }
            }
            continue;
        }
        if !kind.is_file() && kind != tar::EntryType::Continuous {
            continue;
        }
        let is_document = name.ends_with(".json") || name == "oci-layout" || name == "repositories";
        if is_document {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_DOCUMENT + 1)
                .read_to_end(&mut bytes)
                .map_err(bad)?;
            if bytes.len() as u64 > MAX_DOCUMENT {
                return Err(ImageError::Format(format!(
                    "{name} in {} is too large",
                    path.display()
                )));
            }
            scanned.documents.insert(name, bytes);
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let expected = Digest::parse(&format!("sha256:{hex}"))?;
            if !store.has_blob(&expected) {
                store.write_blob(Some(&expected), &mut entry, u64::MAX - 1)?;
            }
            scanned.blobs.insert(name, (expected, entry.size()));
        } else if name.ends_with(".tar")
            || name.ends_with("/layer.tar")
            || name.ends_with(".tar.gz")
        {
            let size = entry.size();
            let (digest, _) = store.write_blob(None, &mut entry, u64::MAX - 1)?;
            scanned.blobs.insert(name, (digest, size));
        }
    }
    Ok(scanned)
}

/// A member path relative to the archive root, or `None` for paths that climb out of it.
fn member_name(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

enum Member<'a> {
    Blob(Digest, u64),
    Document(&'a [u8]),
}

impl ScannedArchive {
    fn docker_manifests(&self) -> Result<Vec<DockerManifest>, ImageError> {
        match self.documents.get("manifest.json") {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
                ImageError::Format(format!("manifest.json is not a docker save manifest: {e}"))
            }),
            None => Ok(Vec::new()),
        }
    }

    /// The member an archive path names, following links.
    fn locate(&self, path: &str) -> Result<Member<'_>, ImageError> {
        let mut current = member_name(Path::new(path));
        for _ in 0..16 {
            let Some(name) = current else { break };
            if let Some((digest, size)) = self.blobs.get(&name) {
                return Ok(Member::Blob(digest.clone(), *size));
            }
            if let Some(bytes) = self.documents.get(&name) {
                return Ok(Member::Document(bytes));
            }
            current = self.links.get(&name).cloned();
        }
        Err(ImageError::Format(format!(
            "the archive does not contain `{path}`"
        )))
    }

    /// The blob an archive path names, written to the store if it was kept in memory (a `<hex>.json` config).
    fn blob(&self, store: &ImageStore, path: &str) -> Result<(Digest, u64), ImageError> {
        match self.locate(path)? {
            Member::Blob(digest, size) => Ok((digest, size)),
            Member::Document(bytes) => Ok((store.write_blob_bytes(bytes)?, bytes.len() as u64)),
        }
    }

    /// RepoTags by config digest, to name the images of a Docker 25+ archive's OCI index.
    fn docker_tags(&self) -> Result<HashMap<Digest, Vec<String>>, ImageError> {
        let mut tags: HashMap<Digest, Vec<String>> = HashMap::new();
        for manifest in self.docker_manifests()? {
            let config = match self.locate(&manifest.config) {
                Ok(Member::Blob(digest, _)) => digest,
                Ok(Member::Document(bytes)) => Digest::of(bytes),
                Err(_) => continue,
            };
            let names = manifest
                .repo_tags
                .iter()
                .flatten()
                .filter_map(|t| reference::normalize(t).ok());
            tags.entry(config).or_default().extend(names);
        }
        Ok(tags)
    }

    /// The legacy format: synthesize an OCI manifest for each manifest.json entry.
    fn import_docker(&self, store: &ImageStore) -> Result<Vec<String>, ImageError> {
        let mut recorded = Vec::new();
        for entry in self.docker_manifests()? {
            let (config, config_size) = self.blob(store, &entry.config)?;
            let mut layers = Vec::new();
            for path in &entry.layers {
                let (digest, size) = self.blob(store, path)?;
                let blob = store.blob_path(&digest);
                let file = File::open(&blob).map_err(ImageError::io("reading", &blob))?;
                let mut reader = std::io::BufReader::new(file);
                let kind =
                    compression::sniff(&mut reader).map_err(ImageError::io("reading", &blob))?;
                layers.push(descriptor(kind.layer_media_type(), &digest, size));
            }
            let manifest = OciImageManifest {
                schema_version: 2,
                media_type: Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned()),
                config: descriptor(
                    oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE,
                    &config,
                    config_size,
                ),
                layers,
                ..OciImageManifest::default()
            };
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|e| ImageError::Format(format!("serializing a manifest: {e}")))?;
            ImageManifest::parse(&bytes)?;
            let digest = store.write_blob_bytes(&bytes)?;
            let names: Vec<String> = entry
                .repo_tags
                .iter()
                .flatten()
                .map(|t| reference::normalize(t))
                .collect::<Result<_, _>>()?;
            store.register(&digest, None, &names)?;
            if names.is_empty() {
                recorded.push(digest.to_string());
            }
            recorded.extend(names);
        }
        if recorded.is_empty() {
            return Err(ImageError::Format("manifest.json lists no images".into()));
        }
        Ok(recorded)
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_become_repository_names() {
        assert_eq!(
            name_stem(Path::new("/tmp/busybox.tar")).as_deref(),
            Some("busybox")
        );
        assert_eq!(
            name_stem(Path::new("/tmp/My_App.oci.tar.gz")).as_deref(),
            Some("my_app")
        );
        assert_eq!(
            name_stem(Path::new("/srv/layout")).as_deref(),
            Some("layout")
        );
    }

    #[test]
    fn member_names_never_climb_out() {
        assert_eq!(
            member_name(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(
            member_name(Path::new("a/../b/layer.tar")).as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(member_name(Path::new("../x")), None);
    }
}
