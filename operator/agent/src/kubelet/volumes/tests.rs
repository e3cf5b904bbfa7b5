//! Volumes against temp dirs, as root: tmpfs and bind mounts are real. Objects from the API server (Secrets,
//! ConfigMaps, claims) are covered in e2e/tests/volumes.rs against a real `berth apiserver`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::projection::{self, File};
use super::*;

/// A client for an address nothing answers on: the volumes these tests use never read the API.
fn offline_client() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn pod(uid: &str, volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            volumes: Some(volumes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn empty_dir(name: &str, medium: Option<&str>, size: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(Into::into),
            size_limit: size.map(|s| Quantity(s.into())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_path(name: &str, path: &Path, kind: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(kind.into()),
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn container(mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: "app".into(),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn is_mounted(path: &Path) -> bool {
    host::is_mount_point(path).unwrap()
}

/// The Pod's directory is cleaned up whatever the test's outcome.
struct Fixture {
    volumes: Volumes,
    uid: String,
    scratch: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let scratch = tempfile::tempdir().unwrap();
        Self {
            volumes: Volumes::new(scratch.path().join("pods")),
            uid: format!("uid-{}", std::process::id()),
            scratch,
        }
    }

    async fn prepare(&self, volumes: Vec<Volume>) -> Result<PreparedVolumes, VolumeError> {
        self.volumes
            .prepare(&offline_client(), &pod(&self.uid, volumes))
            .await
    }

    fn pod_dir(&self) -> PathBuf {
        self.volumes.pod_dir(&self.uid).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = host::remove_pod_dir(&self.pod_dir());
    }
}

#[tokio::test]
async fn empty_dirs_are_world_writable_and_keep_content_across_prepares() {
    let fx = Fixture::new();
    let prepared = fx
        .prepare(vec![empty_dir("cache", None, None)])
        .await
        .unwrap();
    let dir = prepared.path("cache").unwrap().to_path_buf();
    assert!(dir.starts_with(fx.pod_dir()));
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o777
    );
    fs::write(dir.join("kept"), "x").unwrap();
    let again = fx
        .prepare(vec![empty_dir("cache", None, None)])
        .await
        .unwrap();
    assert_eq!(
        fs::read_to_string(again.path("cache").unwrap().join("kept")).unwrap(),
        "x"
    );
}

#[tokio::test]
async fn memory_empty_dir_is_a_tmpfs_of_the_size_limit_and_cleanup_unmounts_it() {
    let fx = Fixture::new();
    let prepared = fx
        .prepare(vec![empty_dir("shm", Some("Memory"), Some("8Mi"))])
        .await
        .unwrap();
    let dir = prepared.path("shm").unwrap().to_path_buf();
    assert!(is_mounted(&dir));
    let stat = nix::sys::statvfs::statvfs(&dir).unwrap();
    assert_eq!(stat.blocks() * stat.fragment_size(), 8 << 20);
    // Preparing again mounts nothing more.
    fx.prepare(vec![empty_dir("shm", Some("Memory"), Some("8Mi"))])
        .await
        .unwrap();
    let stacked = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap()))
        .count();
    assert_eq!(stacked, 1);

    fx.volumes.cleanup(&fx.uid).await.unwrap();
    assert!(!fx.pod_dir().exists());
    assert!(!is_mounted(fx.scratch.path()));
}

#[tokio::test]
async fn unsupported_empty_dir_medium_names_the_volume() {
    let fx = Fixture::new();
    let err = fx
        .prepare(vec![empty_dir("huge", Some("HugePages"), None)])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"huge\" : emptyDir medium \"HugePages\" is not supported"
    );
}

#[tokio::test]
async fn host_path_creates_only_for_or_create_types() {
    let fx = Fixture::new();
    let base = fx.scratch.path().join("host");
    fs::create_dir(&base).unwrap();

    let made_dir = base.join("made/deep");
    let made_file = base.join("made-file");
    let prepared = fx
        .prepare(vec![
            host_path("d", &made_dir, "DirectoryOrCreate"),
            host_path("f", &made_file, "FileOrCreate"),
        ])
        .await
        .unwrap();
    assert!(made_dir.is_dir());
    assert!(made_file.is_file());
    assert_eq!(prepared.path("d"), Some(made_dir.as_path()));

    let missing = base.join("missing");
    for kind in ["Directory", "File", "Socket", "CharDevice", "BlockDevice"] {
        let err = fx
            .prepare(vec![host_path("data", &missing, kind)])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "MountVolume.SetUp failed for volume \"data\" : hostPath type check failed"
            ),
            "{err}"
        );
        assert!(err.contains("it does not exist"), "{err}");
        assert!(!missing.exists(), "{kind} must not create the path");
    }
    // Present but of the wrong kind.
    let err = fx
        .prepare(vec![host_path("data", &made_file, "Directory")])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("is not a directory"), "{err}");
    assert!(
        fx.prepare(vec![host_path(
            "data",
            Path::new("/dev/null"),
            "CharDevice"
        )])
        .await
        .is_ok()
    );
    // "" checks nothing and creates nothing.
    fx.prepare(vec![host_path("data", &missing, "")])
        .await
        .unwrap();
    assert!(!missing.exists());
}

#[tokio::test]
async fn mounts_follow_volume_mounts_with_read_only() {
    let fx = Fixture::new();
    let host = fx.scratch.path().join("code");
    fs::create_dir(&host).unwrap();
    let prepared = fx
        .prepare(vec![
            empty_dir("cache", None, None),
            host_path("code", &host, "Directory"),
        ])
        .await
        .unwrap();
    let mut code = mount("code", "/src");
    code.read_only = Some(true);
    let mounts = prepared
        .mounts(&container(vec![mount("cache", "/cache"), code]))
        .unwrap();
    assert_eq!(
        mounts,
        vec![
            Mount {
                source: prepared.path("cache").unwrap().to_path_buf(),
                destination: "/cache".into(),
                read_only: false,
            },
            Mount {
                source: host.clone(),
                destination: "/src".into(),
                read_only: true,
            },
        ]
    );
    let err = prepared
        .mounts(&container(vec![mount("nope", "/x")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "volumeMount \"nope\" of container \"app\": the Pod has no volume of that name"
    );
    assert!(
        prepared
            .mounts(&container(vec![mount("cache", "relative")]))
            .is_err()
    );
}

#[tokio::test]
async fn sub_path_is_created_bound_and_cannot_leave_the_volume() {
    let fx = Fixture::new();
    let host = fx.scratch.path().join("data");
    fs::create_dir_all(host.join("inside")).unwrap();
    fs::write(host.join("inside/file"), "inside").unwrap();
    let outside = fx.scratch.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "outside").unwrap();
    symlink(&outside, host.join("absolute-out")).unwrap();
    symlink("../outside", host.join("relative-out")).unwrap();
    symlink("inside", host.join("link-in")).unwrap();
    let prepared = fx
        .prepare(vec![host_path("data", &host, "Directory")])
        .await
        .unwrap();
    let with_sub = |sub: &str| {
        let mut m = mount("data", "/data");
        m.sub_path = Some(sub.into());
        prepared.mounts(&container(vec![m]))
    };

    // Missing directories are made; the source is a bind of the checked directory.
    let mounts = with_sub("made/here").unwrap();
    assert!(host.join("made/here").is_dir());
    let source = &mounts[0].source;
    assert!(source.starts_with(fx.pod_dir().join("volume-subpaths/data/app")));
    fs::write(source.join("through-bind"), "y").unwrap();
    assert_eq!(
        fs::read_to_string(host.join("made/here/through-bind")).unwrap(),
        "y"
    );

    // A symlink that stays inside is followed; a file can be a subPath.
    let mounts = with_sub("link-in/file").unwrap();
    assert_eq!(fs::read_to_string(&mounts[0].source).unwrap(), "inside");

    for escape in [
        "absolute-out",
        "relative-out",
        "absolute-out/secret",
        "relative-out/new",
    ] {
        let err = with_sub(escape).unwrap_err().to_string();
        assert!(err.contains("leads out of the volume"), "{escape}: {err}");
    }
    assert!(!outside.join("new").exists());
    for bad in ["../outside", "inside/../../outside", "/etc"] {
        assert!(with_sub(bad).is_err(), "{bad} must be refused");
    }

    // Cleanup unmounts the binds before removing anything: the volume's content stays.
    fx.volumes.cleanup(&fx.uid).await.unwrap();
    assert!(!fx.pod_dir().exists());
    assert_eq!(
        fs::read_to_string(host.join("inside/file")).unwrap(),
        "inside"
    );
    assert_eq!(
        fs::read_to_string(host.join("made/here/through-bind")).unwrap(),
        "y"
    );
}

#[tokio::test]
async fn a_swapped_in_symlink_does_not_change_a_bound_sub_path() {
    let fx = Fixture::new();
    let host = fx.scratch.path().join("data");
    fs::create_dir_all(host.join("sub")).unwrap();
    fs::write(host.join("sub/marker"), "mine").unwrap();
    let prepared = fx
        .prepare(vec![host_path("data", &host, "Directory")])
        .await
        .unwrap();
    let mut m = mount("data", "/data");
    m.sub_path = Some("sub".into());
    let mounts = prepared.mounts(&container(vec![m])).unwrap();
    // The container (or anyone) replaces the directory with a link out after the check.
    fs::rename(host.join("sub"), host.join("moved")).unwrap();
    symlink("/etc", host.join("sub")).unwrap();
    assert_eq!(
        fs::read_to_string(mounts[0].source.join("marker")).unwrap(),
        "mine"
    );
}

fn file(path: &str, data: &str, mode: u32) -> File {
    File {
        path: path.into(),
        data: data.as_bytes().to_vec(),
        mode,
    }
}

#[test]
fn projected_files_are_swapped_atomically_through_data() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("vol");
    let first = vec![
        file("user", "admin", 0o644),
        file("conf/app.ini", "a=1", 0o600),
    ];
    assert!(projection::write(&dir, &first).unwrap());
    let data = fs::read_link(dir.join("..data")).unwrap();
    assert!(data.to_str().unwrap().starts_with("..20"), "{data:?}");
    assert_eq!(
        fs::read_link(dir.join("user")).unwrap(),
        Path::new("..data/user")
    );
    assert_eq!(
        fs::read_link(dir.join("conf")).unwrap(),
        Path::new("..data/conf")
    );
    assert_eq!(fs::read_to_string(dir.join("conf/app.ini")).unwrap(), "a=1");
    let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("user"), 0o644);
    assert_eq!(mode("conf/app.ini"), 0o600);

    // The same payload again: nothing is rewritten.
    assert!(!projection::write(&dir, &first).unwrap());
    assert_eq!(fs::read_link(dir.join("..data")).unwrap(), data);

    // A changed payload: a new directory, the old one gone, a dropped key's link gone.
    let second = vec![file("user", "root", 0o644), file("token", "t", 0o400)];
    assert!(projection::write(&dir, &second).unwrap());
    let swapped = fs::read_link(dir.join("..data")).unwrap();
    assert_ne!(swapped, data);
    assert!(!dir.join(&data).exists());
    assert_eq!(fs::read_to_string(dir.join("user")).unwrap(), "root");
    assert_eq!(mode("token"), 0o400);
    assert!(fs::symlink_metadata(dir.join("conf")).is_err());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![swapped.to_str().unwrap(), "..data", "token", "user"]
    );

    // A mode change alone is a change.
    let third = vec![file("user", "root", 0o640), file("token", "t", 0o400)];
    assert!(projection::write(&dir, &third).unwrap());
    assert_eq!(mode("user"), 0o640);
}

#[test]
fn keys_project_items_with_modes_and_optional_keys() {
    let data = BTreeMap::from([
        ("user".to_string(), b"admin".to_vec()),
        ("pass".to_string(), b"pw".to_vec()),
    ]);
    let missing = |key: &str| format!("missing {key}");
    let all = projection::keys(&data, None, 0o644, false, missing).unwrap();
    assert_eq!(
        all,
        vec![file("pass", "pw", 0o644), file("user", "admin", 0o644)]
    );
    let items = [
        KeyToPath {
            key: "pass".into(),
            path: "db/password".into(),
            mode: Some(0o400),
            ..Default::default()
        },
        KeyToPath {
            key: "other".into(),
            path: "other".into(),
            ..Default::default()
        },
    ];
    assert_eq!(
        projection::keys(&data, Some(&items), 0o644, false, missing).unwrap_err(),
        "missing other"
    );
    assert_eq!(
        projection::keys(&data, Some(&items), 0o644, true, missing).unwrap(),
        vec![file("db/password", "pw", 0o400)]
    );
    for bad in ["../up", "/abs", "..data", "", "a/../../b"] {
        assert!(projection::relative(bad).is_err(), "{bad:?}");
    }
    assert_eq!(projection::mode(Some(0o4777), 0o644), 0o777);
}

#[tokio::test]
async fn cleanup_of_an_unknown_pod_is_a_no_op() {
    let fx = Fixture::new();
    fx.volumes.cleanup("never-prepared").await.unwrap();
    assert!(fx.volumes.cleanup("../escape").await.is_err());
}
