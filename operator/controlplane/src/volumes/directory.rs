//! The directories behind local volumes: `<data-dir>/volumes/<pv-name>`, world-writable so that containers
//! running as any user can write (as local-path-provisioner does), removed only when they are ours.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The directory of a volume; None for names that are not a single plain path component.
pub fn path(root: &Path, volume: &str) -> Option<PathBuf> {
    let plain = !volume.is_empty() && volume != "." && volume != ".." && !volume.contains('/');
    plain.then(|| root.join(volume))
}

pub async fn create(path: &Path) -> Result<(), Error> {
    let failed = |source| Error::VolumeDir {
        path: path.to_owned(),
        source,
    };
    tokio::fs::create_dir_all(path).await.map_err(failed)?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .await
        .map_err(failed)
}

/// Removes a volume's directory, refusing any path but `root/<volume>`. Gone already is fine.
pub async fn remove(root: &Path, volume: &str, recorded: &Path) -> Result<(), Error> {
    if path(root, volume).as_deref() != Some(recorded) {
        return Err(Error::VolumeOutsideRoot {
            path: recorded.to_owned(),
            root: root.to_owned(),
        });
    }
    match tokio::fs::remove_dir_all(recorded).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::VolumeDir {
            path: recorded.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_make_volume_paths() {
        let root = Path::new("/data/volumes");
        assert_eq!(
            path(root, "pvc-1"),
            Some(PathBuf::from("/data/volumes/pvc-1"))
        );
        for bad in ["", ".", "..", "a/b", "../etc"] {
            assert_eq!(path(root, bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn removal_refuses_paths_outside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let err = remove(root.path(), "pvc-1", outside.path())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::VolumeOutsideRoot { .. }));
        assert!(outside.path().exists());
    }

    #[tokio::test]
    async fn a_volume_directory_is_created_writable_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = path(root.path(), "pvc-1").unwrap();
        create(&dir).await.unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        remove(root.path(), "pvc-1", &dir).await.unwrap();
        assert!(!dir.exists());
        remove(root.path(), "pvc-1", &dir).await.unwrap();
    }
}
