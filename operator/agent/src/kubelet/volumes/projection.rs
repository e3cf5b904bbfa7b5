//! Files of secret, configMap, downwardAPI and projected volumes: which files a source projects (keys or
//! `items`, modes), and writing them the way the kubelet's atomic writer does. The payload goes into a fresh
//! `..<timestamp>` directory; the `..data` symlink is then swapped to it with one rename, and each visible name is
//! a symlink through `..data`. A container that bind-mounts the volume's directory so sees either the old or the
//! new set of files, never a mix, and sees updates without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::KeyToPath;

/// Upstream's `defaultMode` (0644).
pub(super) const DEFAULT_MODE: u32 = 0o644;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct File {
    /// Relative to the volume.
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A mode as the API gives it (decimal `i32`), as permission bits.
pub(super) fn mode(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .map_or(default, |v| v & 0o777)
}

/// The files of a Secret's or ConfigMap's `data`: every key under its own name, or only the `items`, each at
/// its `path`. A key missing from the object is an error unless the source is optional; `missing` words it.
pub(super) fn keys(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    missing: impl Fn(&str) -> String,
) -> Result<Vec<File>, String> {
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        return data
            .iter()
            .map(|(key, value)| {
                Ok(File {
                    path: relative(key)?,
                    data: value.clone(),
                    mode: default_mode,
                })
            })
            .collect();
    };
    let mut files = Vec::new();
    for item in items {
        let Some(value) = data.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(missing(&item.key));
        };
        files.push(File {
            path: relative(&item.path)?,
            data: value.clone(),
            mode: mode(item.mode, default_mode),
        });
    }
    Ok(files)
}

/// A payload path: relative, not empty, no `..` and no leading `..` name (those are the writer's own).
pub(super) fn relative(path: &str) -> Result<PathBuf, String> {
    let candidate = PathBuf::from(path);
    let normal = candidate
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let first = candidate.components().find_map(|c| match c {
        Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
        _ => None,
    });
    match first {
        Some(first) if normal && !first.starts_with("..") => Ok(candidate
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect()),
        _ => Err(format!(
            "invalid file path {path:?}: it must be relative, without \"..\""
        )),
    }
}

/// Makes `dir` show exactly `files`. Returns whether anything changed: an unchanged payload is not rewritten.
pub(super) fn write(dir: &Path, files: &[File]) -> io::Result<bool> {
    let mut seen = BTreeSet::new();
    for file in files {
        if !seen.insert(file.path.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("two files at {}", file.path.display()),
            ));
        }
    }
    fs::create_dir_all(dir)?;
    let old = fs::read_link(dir.join(DATA)).ok();
    if let Some(old) = &old
        && matches(&dir.join(old), files)?
    {
        return Ok(false);
    }

    let stamp = timestamp_dir();
    let new = dir.join(&stamp);
    fs::create_dir(&new)?;
    fs::set_permissions(&new, fs::Permissions::from_mode(0o755))?;
    for file in files {
        let path = new.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &file.data)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))?;
    }

    let tmp = dir.join(DATA_TMP);
    match fs::remove_file(&tmp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    symlink(&stamp, &tmp)?;
    fs::rename(&tmp, dir.join(DATA))?;

    let visible: BTreeSet<OsString> = files
        .iter()
        .filter_map(|f| f.path.components().next())
        .map(|c| c.as_os_str().to_owned())
        .collect();
    for name in &visible {
        let link = dir.join(name);
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is in the way", link.display()),
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                symlink(Path::new(DATA).join(name), &link)?;
            }
            Err(err) => return Err(err),
        }
    }
    // What the old payload showed and the new one does not, and old payloads (also a crashed write's).
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let file_type = entry.file_type()?;
        if name.to_string_lossy().starts_with("..") {
            if file_type.is_dir() && name != stamp.as_str() {
                fs::remove_dir_all(entry.path())?;
            }
        } else if file_type.is_symlink() && !visible.contains(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(true)
}

/// `..2006_01_02_15_04_05.<n>`, as the kubelet names payload directories; `n` keeps two writes in one second
/// apart.
fn timestamp_dir() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now();
    format!(
        "..{}.{}{}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the payload directory `current` holds exactly `files`, contents and modes.
fn matches(current: &Path, files: &[File]) -> io::Result<bool> {
    let mut present = BTreeMap::new();
    if !collect(current, Path::new(""), &mut present)? {
        return Ok(false);
    }
    if present.len() != files.len() {
        return Ok(false);
    }
    for file in files {
        let Some(mode) = present.get(&file.path) else {
            return Ok(false);
        };
        if *mode != file.mode || fs::read(current.join(&file.path))? != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The regular files under `dir` with their modes; false when `dir` is gone or holds something else.
fn collect(dir: &Path, prefix: &Path, out: &mut BTreeMap<PathBuf, u32>) -> io::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        let path = prefix.join(entry.file_name());
        if meta.is_dir() {
            if !collect(&entry.path(), &path, out)? {
                return Ok(false);
            }
        } else if meta.is_file() {
            out.insert(path, meta.permissions().mode() & 0o777);
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}
