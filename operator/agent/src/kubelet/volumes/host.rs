//! Making a planned volume on the host (directories, tmpfs mounts, hostPath checks, projected files), finding
//! the mounts under a Pod's directory, and removing that directory. Blocking: callers run it off the runtime.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::Prepared;
use super::projection;
use super::sources::{HostPathType, Plan};

pub(super) fn make(pod_dir: &Path, name: &str, plan: Plan) -> Result<Prepared, String> {
    match plan {
        Plan::EmptyDir {
            memory,
            size_limit,
            mode,
        } => {
            let dir = pod_dir.join("volumes/kubernetes.io~empty-dir").join(name);
            create_dir(&dir, mode)?;
            if memory {
                let mut options = format!("mode={mode:o}");
                if let Some(size) = size_limit {
                    options.push_str(&format!(",size={size}"));
                }
                mount_tmpfs(&dir, &options)?;
            }
            Ok(Prepared {
                path: dir,
                read_only: false,
            })
        }
        Plan::HostPath {
            path,
            kind,
            read_only,
        } => {
            check_host_path(&path, kind)?;
            Ok(Prepared { path, read_only })
        }
        Plan::Files {
            plugin,
            files,
            tmpfs,
        } => {
            let dir = pod_dir.join("volumes").join(plugin).join(name);
            create_dir(&dir, 0o755)?;
            if tmpfs {
                mount_tmpfs(&dir, "mode=0755")?;
            }
            projection::write(&dir, &files)
                .map_err(|err| format!("writing files in {}: {err}", dir.display()))?;
            Ok(Prepared {
                path: dir,
                read_only: true,
            })
        }
    }
}

/// Creates `dir` (and its parents) with `mode` when missing; an existing one is kept as it is (its parents get
/// the default mode).
fn create_dir(dir: &Path, mode: u32) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    // Set after creation: the process umask must not narrow an emptyDir's 0777.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|err| format!("setting the mode of {}: {err}", dir.display()))
}

/// Mounts a tmpfs on `dir` unless one is there already (a second `prepare` of the same Pod).
fn mount_tmpfs(dir: &Path, options: &str) -> Result<(), String> {
    if is_mount_point(dir)? {
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(|err| format!("mounting a tmpfs ({options}) on {}: {err}", dir.display()))
}

/// Upstream's hostPath type checks; only the `…OrCreate` types create what is missing.
fn check_host_path(path: &Path, kind: HostPathType) -> Result<(), String> {
    let failed = |what: &str| {
        let missing = if path.exists() {
            ""
        } else {
            " (it does not exist; only the DirectoryOrCreate and FileOrCreate types create it)"
        };
        Err(format!(
            "hostPath type check failed: {} is not {what}{missing}",
            path.display()
        ))
    };
    let meta = fs::metadata(path).ok();
    let is =
        |check: fn(&fs::FileType) -> bool| meta.as_ref().is_some_and(|m| check(&m.file_type()));
    match kind {
        HostPathType::Any => Ok(()),
        HostPathType::DirectoryOrCreate if meta.is_none() => fs::create_dir_all(path)
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
            .map_err(|err| format!("creating hostPath {}: {err}", path.display())),
        HostPathType::DirectoryOrCreate | HostPathType::Directory => {
            if is(fs::FileType::is_dir) {
                Ok(())
            } else {
                failed("a directory")
            }
        }
        HostPathType::FileOrCreate if meta.is_none() => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(|err| format!("creating hostPath {}: {err}", path.display())),
        HostPathType::FileOrCreate | HostPathType::File => {
            if is(fs::FileType::is_file) {
                Ok(())
            } else {
                failed("a file")
            }
        }
        HostPathType::Socket => {
            if is(FileTypeExt::is_socket) {
                Ok(())
            } else {
                failed("a socket file")
            }
        }
        HostPathType::CharDevice => {
            if is(FileTypeExt::is_char_device) {
                Ok(())
            } else {
                failed("a character device")
            }
        }
        HostPathType::BlockDevice => {
            if is(FileTypeExt::is_block_device) {
                Ok(())
            } else {
                failed("a block device")
            }
        }
    }
}

/// Unmounts everything mounted under `pod_dir` (deepest first, stacked mounts included), then removes it.
pub(super) fn remove_pod_dir(pod_dir: &Path) -> Result<(), String> {
    let pod_dir = match fs::canonicalize(pod_dir) {
        Ok(dir) => dir,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(format!("resolving {}: {err}", pod_dir.display())),
    };
    // Each round removes the top mount of every point; stacked mounts need more rounds. Bounded: a mount
    // that survives MNT_DETACH this often is an error worth reporting, not a loop.
    for _ in 0..16 {
        let mut points = mounts_under(&pod_dir)?;
        if points.is_empty() {
            // Never reached with a mount left: remove_dir_all would delete through it.
            return fs::remove_dir_all(&pod_dir)
                .map_err(|err| format!("removing {}: {err}", pod_dir.display()));
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            match umount2(&point, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(err) => return Err(format!("unmounting {}: {err}", point.display())),
            }
        }
    }
    Err(format!(
        "mounts under {} survive unmounting; not removing it",
        pod_dir.display()
    ))
}

/// Whether something is mounted exactly on `dir`.
pub(super) fn is_mount_point(dir: &Path) -> Result<bool, String> {
    let dir = fs::canonicalize(dir).map_err(|err| format!("resolving {}: {err}", dir.display()))?;
    Ok(mount_points()?.contains(&dir))
}

/// Mount points strictly inside `dir` or on it.
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    Ok(mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect())
}

/// This process's mount points, from `/proc/self/mountinfo` (field 5, octal escapes undone).
fn mount_points() -> Result<Vec<PathBuf>, String> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("reading /proc/self/mountinfo: {err}"))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect())
}

/// `\040` and friends, as the kernel escapes space, tab, newline and backslash in mountinfo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
            .and_then(|value| u8::try_from(value).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/var/lib/a\040b\134c"), r"/var/lib/a b\c");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}
