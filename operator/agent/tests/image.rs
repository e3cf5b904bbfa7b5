//! The image store end to end: hand-made hostile layers refused with the host untouched, whiteouts
//! honoured through a real overlayfs mount, `docker save` and OCI archives imported, and a real pull from
//! Debian's `docker-registry` on a loopback port (with htpasswd auth), filled by umoci and skopeo from
//! busybox-static. Needs root (device nodes, trusted xattrs, mounts), as the agent does.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth_agent::image::{
    Credentials, Digest, ImageError, ImageStore, PullEvent, PullPolicy, architecture, no_progress,
};
use berth_testsupport::registry::{Registry, UmociImage, run, stage_busybox, tools_installed};
use serde_json::json;
use tar::EntryType;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------------------
// Building layers, layouts and archives by hand.

/// A layer tar written entry by entry, including entries no well-behaved tool writes (`..`, absolute
/// paths): names go into the header (or a PAX record) unchecked.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn entry(
        self,
        kind: EntryType,
        path: &str,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) -> Self {
        self.entry_with(kind, path, link, data, mode, |_| {})
    }

    fn entry_with(
        mut self,
        kind: EntryType,
        path: &str,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
        adjust: impl FnOnce(&mut tar::Header),
    ) -> Self {
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if path.len() > 99 {
            pax.push(("path", path.as_bytes()));
        }
        if let Some(link) = link.filter(|l| l.len() > 99) {
            pax.push(("linkpath", link.as_bytes()));
        }
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax).unwrap();
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_size(data.len() as u64);
        let old = header.as_old_mut();
        old.name.fill(0);
        let short = &path.as_bytes()[..path.len().min(99)];
        old.name[..short.len()].copy_from_slice(short);
        if let Some(link) = link {
            let short = &link.as_bytes()[..link.len().min(99)];
            old.linkname.fill(0);
            old.linkname[..short.len()].copy_from_slice(short);
        }
        adjust(&mut header);
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    fn dir(self, path: &str) -> Self {
        self.entry(EntryType::Directory, path, None, b"", 0o755)
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(EntryType::Regular, path, None, data, 0o644)
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(EntryType::Symlink, path, Some(target), b"", 0o777)
    }

    fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(EntryType::Link, path, Some(target), b"", 0o644)
    }

    fn device(self, kind: EntryType, path: &str, major: u32, minor: u32) -> Self {
        self.entry_with(kind, path, None, b"", 0o600, |header| {
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
        })
    }

    fn build(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// An OCI image layout directory under construction.
struct Layout {
    dir: PathBuf,
    manifests: Vec<serde_json::Value>,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(
            dir.join("oci-layout"),
            br#"{"imageLayoutVersion": "1.0.0"}"#,
        )
        .unwrap();
        Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        }
    }

    fn blob(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let digest = Digest::of(bytes);
        fs::write(self.dir.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
    }

    /// Writes config, layers and manifest; returns the manifest descriptor. `layers` are (uncompressed
    /// tar, stored bytes, media type).
    fn image(
        &self,
        layers: &[(Vec<u8>, Vec<u8>, &str)],
        arch: &str,
        cmd: &[&str],
    ) -> serde_json::Value {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|(tar, _, _)| Digest::of(tar).to_string())
            .collect();
        let config = json!({
            "architecture": arch, "os": "linux", "created": "2024-05-06T07:08:09Z",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/srv", "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        });
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        );
        let layers: Vec<_> = layers
            .iter()
            .map(|(_, stored, media)| self.blob(media, stored))
            .collect();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers
        });
        self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        )
    }

    fn add(&mut self, mut descriptor: serde_json::Value, annotations: serde_json::Value) {
        descriptor["annotations"] = annotations;
        self.manifests.push(descriptor);
    }

    fn finish(self) -> PathBuf {
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.manifests});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        self.dir
    }
}

fn plain(tar: Vec<u8>) -> (Vec<u8>, Vec<u8>, &'static str) {
    (tar.clone(), tar, "application/vnd.oci.image.layer.v1.tar")
}

fn gzipped(tar: Vec<u8>) -> (Vec<u8>, Vec<u8>, &'static str) {
    let stored = gzip(&tar);
    (tar, stored, "application/vnd.oci.image.layer.v1.tar+gzip")
}

fn tar_of_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap()
}

/// A single-image OCI layout with one (plain) layer, named by a bare tag as umoci and skopeo name them.
fn layout_with_layer(dir: &Path, layer: Vec<u8>) -> PathBuf {
    let mut layout = Layout::new(dir);
    let manifest = layout.image(&[plain(layer)], architecture(), &["/bin/sh"]);
    layout.add(
        manifest,
        json!({"org.opencontainers.image.ref.name": "latest"}),
    );
    layout.finish()
}

fn store() -> (TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    (dir, store)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------------------
// Hostile layers.

/// A directory outside the store holding one file; it must look the same after every refused import.
struct Canary {
    dir: TempDir,
}

impl Canary {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("canary"), b"untouched").unwrap();
        Canary { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn assert_untouched(&self) {
        assert_eq!(entries(self.dir.path()), ["canary"]);
        assert_eq!(
            fs::read(self.dir.path().join("canary")).unwrap(),
            b"untouched"
        );
        assert_eq!(
            fs::metadata(self.dir.path().join("canary"))
                .unwrap()
                .nlink(),
            1
        );
    }
}

/// Imports a one-layer image and expects the layer to be refused, with nothing unpacked or recorded.
fn assert_refused(layer: Vec<u8>) -> String {
    let (dir, store) = store();
    let layout = layout_with_layer(&dir.path().join("layout"), layer);
    let error = store
        .import(&layout)
        .expect_err("a hostile layer was imported");
    let message = error.to_string();
    match &error {
        ImageError::Layer { source, .. } => {
            assert!(source.is_refusal(), "not a refusal: {message}")
        }
        other => panic!("expected a refused layer, got {other}"),
    }
    assert!(
        entries(&store.root().join("layers")).is_empty(),
        "a refused layer was kept"
    );
    assert!(
        entries(&store.root().join("tmp")).is_empty(),
        "unpack debris was left in tmp/"
    );
    assert!(
        store.list().unwrap().is_empty(),
        "a refused image was recorded"
    );
    assert!(store.resolve("layout:latest").unwrap().is_none());
    message
}

fn climb(to: &str) -> String {
    format!("{}{}", "../".repeat(24), to.trim_start_matches('/'))
}

#[test]
fn layer_with_dotdot_path_is_refused_and_host_untouched() {
    let canary = Canary::new();
    let message = assert_refused(
        Layer::new()
            .file(&format!("{}/planted", climb(canary.path())), b"x")
            .build(),
    );
    assert!(message.contains(".."), "{message}");
    canary.assert_untouched();
}

#[test]
fn layer_with_absolute_path_is_refused_and_host_untouched() {
    let canary = Canary::new();
    let message = assert_refused(
        Layer::new()
            .file(&format!("{}/planted", canary.path()), b"x")
            .build(),
    );
    assert!(message.contains("absolute"), "{message}");
    canary.assert_untouched();
}

#[test]
fn layer_writing_through_an_absolute_symlink_is_refused_and_host_untouched() {
    let canary = Canary::new();
    let layer = Layer::new()
        .symlink("escape", canary.path())
        .file("escape/planted", b"x")
        .build();
    let message = assert_refused(layer);
    assert!(message.contains("symbolic link"), "{message}");
    canary.assert_untouched();
}

#[test]
fn layer_writing_through_a_relative_symlink_is_refused_and_host_untouched() {
    let canary = Canary::new();
    let layer = Layer::new()
        .dir("a/")
        .symlink("a/escape", &climb(canary.path()))
        .file("a/escape/planted", b"x")
        .build();
    assert_refused(layer);
    canary.assert_untouched();
}

#[test]
fn layer_overwriting_a_file_through_a_symlink_is_refused_and_host_untouched() {
    let canary = Canary::new();
    let layer = Layer::new()
        .symlink("dir", canary.path())
        .file("dir/canary", b"overwritten")
        .build();
    assert_refused(layer);
    canary.assert_untouched();
}

#[test]
fn layer_hard_linking_etc_passwd_is_refused_and_host_untouched() {
    let before = fs::metadata("/etc/passwd").unwrap();
    for target in [
        "/etc/passwd",
        "../../../../../../../../etc/passwd",
        "etc/../../etc/passwd",
    ] {
        let message = assert_refused(Layer::new().hardlink("passwd", target).build());
        assert!(message.contains("hard link"), "{message}");
    }
    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (after.nlink(), after.len(), after.mtime()),
        (before.nlink(), before.len(), before.mtime())
    );
}

#[test]
fn layer_hard_linking_outside_then_writing_is_refused_and_host_untouched() {
    let canary = Canary::new();
    let target = format!("{}/canary", canary.path());
    let layer = Layer::new()
        .hardlink("link", &target)
        .file("link", b"overwritten")
        .build();
    assert_refused(layer);
    canary.assert_untouched();
}

#[test]
fn layer_with_device_nodes_is_refused_and_no_device_is_created() {
    let (dir, store) = store();
    for (kind, major, minor) in [(EntryType::Char, 1, 1), (EntryType::Block, 8, 0)] {
        let message = assert_refused(
            Layer::new()
                .dir("dev/")
                .device(kind, "dev/evil", major, minor)
                .build(),
        );
        assert!(message.contains("device"), "{message}");
    }
    // The store used for the assertions above is gone; make sure a fresh one never holds a device either.
    let layout = layout_with_layer(
        &dir.path().join("layout"),
        Layer::new()
            .device(EntryType::Char, "dev-mem", 1, 1)
            .build(),
    );
    assert!(store.import(&layout).is_err());
    let mut devices = Vec::new();
    find_devices(store.root(), &mut devices);
    assert!(devices.is_empty(), "device nodes left behind: {devices:?}");
}

fn find_devices(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            find_devices(&entry.path(), found);
        } else if kind.is_block_device() || kind.is_char_device() {
            found.push(entry.path());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Whiteouts, imports, prune.

/// A read-only overlayfs mount of an image's layers, unmounted on drop.
struct Overlay {
    dir: TempDir,
}

impl Overlay {
    fn mount(lowerdir: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "overlay",
                "overlay",
                "-o",
                &format!("lowerdir={lowerdir}"),
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting overlayfs failed (the agent needs overlayfs)"
        );
        Overlay { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn whiteouts_and_opaque_directories_hide_lower_layers_in_overlayfs() {
    let (dir, store) = store();
    let lower = Layer::new()
        .dir("etc/")
        .file("etc/gone", b"old")
        .file("etc/kept", b"kept")
        .dir("var/")
        .dir("var/cache/")
        .file("var/cache/old", b"old")
        .build();
    let upper = Layer::new()
        .dir("etc/")
        .file("etc/.wh.gone", b"")
        .dir("var/")
        .dir("var/cache/")
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/new", b"new")
        .build();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let manifest = layout.image(
        &[gzipped(lower), plain(upper)],
        architecture(),
        &["/bin/sh"],
    );
    layout.add(
        manifest,
        json!({"org.opencontainers.image.ref.name": "registry.example/team/whiteouts:1"}),
    );
    let refs = store.import(&layout.finish()).unwrap();
    assert_eq!(refs, ["registry.example/team/whiteouts:1"]);

    let image = store
        .resolve("registry.example/team/whiteouts:1")
        .unwrap()
        .expect("imported image resolves");
    assert_eq!(image.layers.len(), 2);
    let upper_dir = &image.layers[1];
    let whiteout = fs::symlink_metadata(upper_dir.join("etc/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);

    let merged = Overlay::mount(&image.overlay_lowerdir());
    assert!(!merged.path().join("etc/gone").exists(), "whiteout ignored");
    assert_eq!(fs::read(merged.path().join("etc/kept")).unwrap(), b"kept");
    assert!(
        !merged.path().join("var/cache/old").exists(),
        "opaque directory ignored"
    );
    assert_eq!(
        fs::read(merged.path().join("var/cache/new")).unwrap(),
        b"new"
    );
}

#[test]
fn docker_save_archive_is_imported_with_its_repo_tags() {
    let (dir, store) = store();
    let base = Layer::new()
        .dir("bin/")
        .file("bin/tool", b"tool v1")
        .build();
    let top = Layer::new()
        .dir("etc/")
        .file("etc/hostname", b"hand")
        .build();
    let config = json!({
        "architecture": architecture(), "os": "linux", "created": "2023-01-02T03:04:05.5Z",
        "config": {"Entrypoint": ["/bin/tool"], "Cmd": ["--serve"], "User": "1000:1000"},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&base).to_string(), Digest::of(&top).to_string(), Digest::of(&base).to_string()]}
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["hand:1", "registry.example/hand:stable"],
        // The third layer repeats the first through a symbolic link, as older docker versions write it.
        "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"]
    }]);

    let mut archive = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        archive.append_data(&mut header, path, data).unwrap();
    };
    add("aaa/layer.tar", &base);
    add("aaa/VERSION", b"1.0");
    add("bbb/layer.tar", &top);
    add(&config_name, &config);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("repositories", br#"{"hand": {"1": "aaa"}}"#);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(EntryType::Symlink);
    header.set_size(0);
    archive
        .append_link(&mut header, "ccc/layer.tar", "../aaa/layer.tar")
        .unwrap();
    let path = dir.path().join("hand.tar");
    fs::write(&path, archive.into_inner().unwrap()).unwrap();

    let refs = store.import(&path).unwrap();
    assert_eq!(
        refs,
        ["docker.io/library/hand:1", "registry.example/hand:stable"]
    );
    let image = store
        .resolve("hand:1")
        .unwrap()
        .expect("docker save import resolves");
    assert_eq!(image.config.argv(&[], &[]), ["/bin/tool", "--serve"]);
    assert_eq!(image.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(image.layers.len(), 3);
    assert_eq!(
        fs::read(image.layers[0].join("bin/tool")).unwrap(),
        b"tool v1"
    );
    assert_eq!(
        fs::read(image.layers[1].join("etc/hostname")).unwrap(),
        b"hand"
    );
    assert_eq!(image.layers[0], image.layers[2], "a layer is unpacked once");

    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|s| s.digest == image.digest && s.size > 0)
    );
    assert_eq!(
        listed[0].created.map(|t| t.as_second()),
        Some(1_672_628_645)
    );
}

/// A layout whose one entry is an image index over two platforms; each image's `arch` file names its own.
fn multi_platform_layout(dir: &Path) -> PathBuf {
    let mut layout = Layout::new(dir);
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = gzipped(Layer::new().file("arch", arch.as_bytes()).build());
        let mut descriptor = layout.image(&[layer], arch, &["/bin/true"]);
        descriptor["platform"] = json!({"architecture": arch, "os": "linux"});
        entries.push(descriptor);
    }
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let index = layout.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    layout.add(index, json!({"org.opencontainers.image.ref.name": "1"}));
    layout.finish()
}

#[test]
fn oci_archive_is_imported_choosing_this_machines_platform() {
    let (dir, store) = store();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let native = Layer::new().file("arch", architecture().as_bytes()).build();
    let compressed = zstd(
        &Layer::new()
            .dir("etc/")
            .file("etc/zstd", b"zstd layer")
            .build(),
    );
    let zstd_tar = {
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(&compressed[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let mine = layout.image(
        &[
            gzipped(native),
            (
                zstd_tar,
                compressed,
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        ],
        architecture(),
        &["/mine"],
    );
    let other_arch = if architecture() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let theirs = layout.image(
        &[plain(
            Layer::new().file("arch", other_arch.as_bytes()).build(),
        )],
        other_arch,
        &["/theirs"],
    );
    let with_platform = |mut d: serde_json::Value, arch: &str| {
        d["platform"] = json!({"architecture": arch, "os": "linux"});
        d
    };
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [with_platform(theirs, other_arch), with_platform(mine, architecture())]
    });
    let index = layout.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    let index_digest = index["digest"].as_str().unwrap().to_owned();
    layout.add(index, json!({"org.opencontainers.image.ref.name": "v1"}));
    let layout_dir = layout.finish();
    let archive = dir.path().join("ociapp.tar");
    fs::write(&archive, tar_of_dir(&layout_dir)).unwrap();

    let refs = store.import(&archive).unwrap();
    assert_eq!(refs, ["docker.io/library/ociapp:v1"]);
    let image = store
        .resolve("ociapp:v1")
        .unwrap()
        .expect("OCI archive import resolves");
    assert_eq!(image.config.cmd, ["/mine"]);
    assert_eq!(image.config.exposed_ports, ["8080/tcp"]);
    assert_eq!(
        image.index_digest.as_ref().map(|d| d.to_string()),
        Some(index_digest.clone())
    );
    assert_eq!(
        fs::read(image.layers[0].join("arch")).unwrap(),
        architecture().as_bytes()
    );
    assert_eq!(
        fs::read(image.layers[1].join("etc/zstd")).unwrap(),
        b"zstd layer"
    );
    // A pod may name the image by the index digest, as `kubectl` shows it.
    let by_digest = store
        .resolve(&format!("ociapp@{index_digest}"))
        .unwrap()
        .expect("resolves by index digest");
    assert_eq!(by_digest.digest, image.digest);

    // Importing again changes nothing and unpacks nothing anew.
    let inode = fs::metadata(&image.layers[0]).unwrap().ino();
    assert_eq!(store.import(&archive).unwrap(), refs);
    assert_eq!(fs::metadata(&image.layers[0]).unwrap().ino(), inode);
}

#[test]
fn docker_25_archive_names_its_oci_index_images_by_repo_tags() {
    let (dir, store) = store();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let manifest = layout.image(
        &[plain(Layer::new().file("f", b"modern").build())],
        architecture(),
        &["/f"],
    );
    let manifest_path = layout
        .dir
        .join("blobs/sha256")
        .join(&manifest["digest"].as_str().unwrap()[7..]);
    let parsed: serde_json::Value =
        serde_json::from_slice(&fs::read(manifest_path).unwrap()).unwrap();
    let blob_path = |descriptor: &serde_json::Value| {
        format!(
            "blobs/sha256/{}",
            &descriptor["digest"].as_str().unwrap()[7..]
        )
    };
    let docker_manifest = json!([{
        "Config": blob_path(&parsed["config"]),
        "RepoTags": ["modern:25"],
        "Layers": [blob_path(&parsed["layers"][0])]
    }]);
    fs::write(
        layout.dir.join("manifest.json"),
        serde_json::to_vec(&docker_manifest).unwrap(),
    )
    .unwrap();
    layout.add(manifest, json!({}));
    let archive = dir.path().join("save.tar");
    fs::write(&archive, gzip(&tar_of_dir(&layout.finish()))).unwrap();

    assert_eq!(
        store.import(&archive).unwrap(),
        ["docker.io/library/modern:25"]
    );
    let image = store
        .resolve("modern:25")
        .unwrap()
        .expect("resolves by its RepoTag");
    assert_eq!(fs::read(image.layers[0].join("f")).unwrap(), b"modern");
}

#[test]
fn oci_layout_directory_is_imported() {
    let (dir, store) = store();
    let layout = layout_with_layer(
        &dir.path().join("busybox"),
        Layer::new().file("hello", b"world").build(),
    );
    let refs = store.import(&layout).unwrap();
    assert_eq!(refs, ["docker.io/library/busybox:latest"]);
    let image = store
        .resolve("busybox")
        .unwrap()
        .expect("layout import resolves");
    assert_eq!(fs::read(image.layers[0].join("hello")).unwrap(), b"world");
}

#[test]
fn prune_keeps_images_in_use_and_frees_the_rest() {
    let (dir, store) = store();
    let keep = layout_with_layer(
        &dir.path().join("keep"),
        Layer::new().file("k", b"keep me").build(),
    );
    let drop = layout_with_layer(
        &dir.path().join("drop"),
        Layer::new().file("d", &[7u8; 4096]).build(),
    );
    store.import(&keep).unwrap();
    store.import(&drop).unwrap();
    let kept = store.resolve("keep").unwrap().unwrap();
    let dropped = store.resolve("drop").unwrap().unwrap();

    let freed = store.prune(std::slice::from_ref(&kept.digest)).unwrap();
    assert!(freed >= 2 * 4096, "freed only {freed} bytes");
    assert!(store.resolve("drop").unwrap().is_none());
    assert!(!dropped.layers[0].exists());
    assert_eq!(store.resolve("keep").unwrap(), Some(kept.clone()));
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.prune(&[kept.digest]).unwrap(), 0);
}

#[test]
fn an_archive_that_is_not_an_image_is_rejected_with_a_clear_error() {
    let (dir, store) = store();
    let path = dir.path().join("random.tar");
    fs::write(&path, Layer::new().file("README", b"hello").build()).unwrap();
    let message = store.import(&path).unwrap_err().to_string();
    assert!(message.contains("neither an OCI archive"), "{message}");
}

// ---------------------------------------------------------------------------------------------------------
// A real registry.

/// busybox-static in five layers, with a whiteout and an opaque directory made by umoci itself.
fn build_busybox_layout(work: &Path) -> PathBuf {
    let layout = work.join("layout");
    let bin = stage_busybox(&work.join("stage"), &["sh", "ls", "cat", "echo", "test"]);
    fs::write(work.join("motd"), "hello\n").unwrap();
    fs::create_dir_all(work.join("data-old")).unwrap();
    fs::write(work.join("data-old/old"), "old\n").unwrap();
    fs::create_dir_all(work.join("data-new")).unwrap();
    fs::write(work.join("data-new/new"), "new\n").unwrap();

    UmociImage::create(&layout)
        .insert(&bin, "/bin")
        .insert(&work.join("motd"), "/etc/motd")
        .insert(&work.join("data-old"), "/data")
        .whiteout("/etc/motd")
        .insert_opaque(&work.join("data-new"), "/data")
        .config(&[
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "GREETING=hi",
            "--config.workingdir",
            "/data",
        ]);
    layout
}

#[test]
fn archives_written_by_skopeo_are_imported() {
    if !tools_installed() {
        eprintln!(
            "skipping: skopeo, umoci and busybox-static are missing and apt could not install them"
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_store_dir, store) = store();
    let layout = build_busybox_layout(work.path());
    let source = format!("oci:{}:latest", layout.display());
    let docker_archive = work.path().join("docker.tar");
    let oci_archive = work.path().join("oci.tar");
    run(Command::new("skopeo")
        .args(["copy", "--insecure-policy", &source])
        .arg(format!(
            "docker-archive:{}:berth.test/skopeo/busybox:docker",
            docker_archive.display()
        )));
    run(Command::new("skopeo")
        .args(["copy", "--insecure-policy", &source])
        .arg(format!(
            "oci-archive:{}:berth.test/skopeo/busybox:oci",
            oci_archive.display()
        )));

    assert_eq!(
        store.import(&docker_archive).unwrap(),
        ["berth.test/skopeo/busybox:docker"]
    );
    assert_eq!(
        store.import(&oci_archive).unwrap(),
        ["berth.test/skopeo/busybox:oci"]
    );
    for reference in [
        "berth.test/skopeo/busybox:docker",
        "berth.test/skopeo/busybox:oci",
    ] {
        let image = store
            .resolve(reference)
            .unwrap()
            .expect("imported archive resolves");
        assert_eq!(image.layers.len(), 5, "{reference}");
        assert_eq!(image.config.cmd, ["/bin/sh"], "{reference}");
        assert!(image.layers[0].join("bin/busybox").is_file(), "{reference}");
    }
    assert_eq!(store.list().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_real_registry_unpacks_and_second_pull_is_served_from_the_store() {
    if !tools_installed() {
        eprintln!(
            "skipping: docker-registry, skopeo, umoci and busybox-static are missing and apt could not install them"
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_store_dir, store) = store();
    let mut registry = Registry::start_with_auth("alice", "s3cret");
    let layout = build_busybox_layout(work.path());
    let image = registry.push_layout(&layout, "latest", "berth/busybox:latest");

    // Without credentials the registry answers 401: ErrImagePull, not a crash.
    let anonymous = store
        .pull(&image, &Credentials::none(), &no_progress)
        .await
        .unwrap_err();
    assert_eq!(anonymous.kube_reason(), "ErrImagePull", "{anonymous}");

    let secret = json!({"auths": {registry.host(): {"auth": "YWxpY2U6czNjcmV0"}}});
    let credentials =
        Credentials::from_docker_config(&serde_json::to_vec(&secret).unwrap()).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let events = events.clone();
        move |event: PullEvent| events.lock().unwrap().push(event)
    };
    let pulled = store
        .ensure(&image, PullPolicy::Always, &credentials, &recorder)
        .await
        .unwrap();

    assert_eq!(pulled.reference, image);
    assert_eq!(pulled.layers.len(), 5);
    assert_eq!(pulled.config.argv(&[], &[]), ["/bin/sh"]);
    assert!(pulled.config.env.contains(&"GREETING=hi".to_owned()));
    assert_eq!(pulled.config.working_dir.as_deref(), Some("/data"));
    assert_eq!(
        fs::read(pulled.layers[0].join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        fs::read_link(pulled.layers[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );

    let seen = events.lock().unwrap().clone();
    assert!(
        matches!(seen.first(), Some(PullEvent::Resolved { layers: 5, .. })),
        "{seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(PullEvent::Done { .. })),
        "{seen:?}"
    );
    let finished: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e, PullEvent::Downloading { done, total, .. } if done == total && *total > 0))
        .collect();
    assert_eq!(
        finished.len(),
        5,
        "every layer reports its completed download: {seen:?}"
    );

    // The image runs from the merged layers: busybox executes, the whiteout and the opaque dir hold.
    let merged = Overlay::mount(&pulled.overlay_lowerdir());
    let output = Command::new("chroot")
        .arg(merged.path())
        .args([
            "/bin/sh",
            "-c",
            "echo ran; test -e /etc/motd || echo motd-gone; ls /data",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ran\nmotd-gone\nnew\n"
    );
    drop(merged);

    // A second pull with Always asks the registry for the manifest only: every layer is already here.
    events.lock().unwrap().clear();
    let again = store
        .ensure(&image, PullPolicy::Always, &credentials, &recorder)
        .await
        .unwrap();
    assert_eq!(again.digest, pulled.digest);
    let seen = events.lock().unwrap().clone();
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, PullEvent::Downloading { .. })),
        "downloaded again: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, PullEvent::AlreadyPresent { .. }))
            .count(),
        5
    );

    // A multi-platform image index resolves to this machine's entry.
    let multi_layout = multi_platform_layout(&work.path().join("multi"));
    let multi = registry.push_layout(&multi_layout, "1", "berth/multi:1");
    let chosen = store
        .pull(&multi, &credentials, &no_progress)
        .await
        .unwrap();
    assert_eq!(
        fs::read(chosen.layers[0].join("arch")).unwrap(),
        architecture().as_bytes()
    );
    assert!(
        chosen.index_digest.is_some(),
        "the index digest is recorded"
    );
    let by_index = format!(
        "{}/berth/multi@{}",
        registry.host(),
        chosen.index_digest.as_ref().unwrap()
    );
    assert_eq!(
        store.resolve(&by_index).unwrap().map(|i| i.digest),
        Some(chosen.digest.clone())
    );

    // With the registry gone, IfNotPresent is served from the store, while Always fails to pull.
    registry.stop();
    let served = store
        .ensure(&image, PullPolicy::IfNotPresent, &credentials, &no_progress)
        .await
        .unwrap();
    assert_eq!(served, pulled);
    let unreachable = store
        .ensure(&image, PullPolicy::Always, &credentials, &no_progress)
        .await
        .unwrap_err();
    assert_eq!(unreachable.kube_reason(), "ErrImagePull");
}
