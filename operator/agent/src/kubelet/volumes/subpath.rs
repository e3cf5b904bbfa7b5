//! subPath: a path inside a volume, resolved so that it cannot leave the volume (`..` is refused; symlinks
//! are followed only while they stay inside, with `openat2(RESOLVE_BENEATH)`), created as directories when
//! missing, and bind-mounted through the resolved descriptor onto a directory of the Pod's own. The container
//! then mounts that bind, which is what was checked: a symlink swapped in later changes nothing (the kubelet's
//! `volume-subpaths` do the same).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, mkdirat, openat2};
use rustix::io::Errno;

/// Resolves `sub_path` inside `volume` and bind-mounts it on `target` (replacing an earlier bind there).
pub(super) fn bind(volume: &Path, sub_path: &str, target: &Path) -> Result<(), String> {
    let resolved = resolve(volume, sub_path)?;
    let is_dir = rustix::fs::fstat(&resolved)
        .map(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
        .map_err(|err| format!("subPath {sub_path:?}: {err}"))?;
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(err) => return Err(format!("unmounting {}: {err}", target.display())),
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)
            .map_err(|err| format!("creating {}: {err}", parent.display()))?;
    }
    // The mount point must be of the same kind as what is mounted on it.
    let _ = fs::remove_dir(target).or_else(|_| fs::remove_file(target));
    if is_dir {
        fs::create_dir(target)
    } else {
        fs::File::create(target).map(drop)
    }
    .map_err(|err| format!("creating {}: {err}", target.display()))?;
    let source = PathBuf::from(format!("/proc/self/fd/{}", resolved.as_raw_fd()));
    mount(
        Some(&source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|err| format!("bind-mounting subPath {sub_path:?}: {err}"))
}

/// An `O_PATH` descriptor of `volume/sub_path`, creating missing directories on the way.
fn resolve(volume: &Path, sub_path: &str) -> Result<OwnedFd, String> {
    let relative = Path::new(sub_path);
    if relative.is_absolute() {
        return Err(format!("subPath {sub_path:?} must be a relative path"));
    }
    if relative.components().any(|c| c == Component::ParentDir) {
        return Err(format!("subPath {sub_path:?} must not contain \"..\""));
    }
    let root = rustix::fs::open(
        volume,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| format!("opening volume {}: {err}", volume.display()))?;
    let beneath = |path: &Path| {
        openat2(
            &root,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    };
    let escapes = || format!("subPath {sub_path:?} leads out of the volume through a symlink");
    let mut prefix = PathBuf::new();
    let mut current = root
        .try_clone()
        .map_err(|err| format!("opening volume {}: {err}", volume.display()))?;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        prefix.push(name);
        current = match beneath(&prefix) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(err) => {
                        return Err(format!(
                            "creating subPath {sub_path:?} at {}: {err}",
                            prefix.display()
                        ));
                    }
                }
                match beneath(&prefix) {
                    Ok(fd) => fd,
                    Err(Errno::XDEV | Errno::LOOP) => return Err(escapes()),
                    Err(err) => return Err(format!("subPath {sub_path:?}: {err}")),
                }
            }
            Err(Errno::XDEV | Errno::LOOP) => return Err(escapes()),
            Err(err) => return Err(format!("subPath {sub_path:?}: {err}")),
        };
    }
    Ok(current)
}
