//! Unpacks one layer tar into its own directory, in the form overlayfs stacks as a lowerdir.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.<name>` becomes a character device 0/0 named `<name>`,
//! `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. The extractor never follows a
//! symbolic link while writing: every parent component is checked with `symlink_metadata`, files are
//! created with `O_CREAT|O_EXCL|O_NOFOLLOW` after removing whatever was there, and ownership and times are
//! set with `AT_SYMLINK_NOFOLLOW`. Symbolic links themselves are stored verbatim: they are resolved inside
//! the container's root when the container runs, never on the host.
//!
//! Refused (the whole layer fails): `..` components, absolute paths, entries below a symbolic link, hard
//! links whose target is outside the layer or not an earlier entry of it, block devices and character
//! devices other than 0/0. FIFOs are kept, as upstream runtimes keep them: a FIFO inside the container's
//! root reaches nothing on the host.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use tar::{Entry, EntryType};

use super::compression::decompressed;
use super::digest::{Digest, HashingReader};
use super::error::LayerError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Extended attributes overlayfs interprets; a layer must not set them itself (only whiteout translation may).
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

/// Unpacks the (possibly compressed) layer blob at `blob` into the empty directory `dest`, and checks that
/// the uncompressed stream hashes to `diff_id`.
pub(crate) fn unpack_blob(blob: &Path, dest: &Path, diff_id: &Digest) -> Result<(), LayerError> {
    let file = fs::File::open(blob).map_err(LayerError::Read)?;
    let reader = EndPadding::new(HashingReader::new(
        decompressed(file).map_err(LayerError::Read)?,
    ));
    let mut reader = unpack_tar(reader, dest)?;
    // The uncompressed digest covers the tar's end-of-archive padding too.
    io::copy(&mut reader, &mut io::sink()).map_err(LayerError::Read)?;
    let (actual, _) = reader.inner.finish();
    if &actual != diff_id {
        return Err(LayerError::DiffIdMismatch {
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Completes a tar stream that ends without padding its last member or without the end-of-archive blocks
/// (umoci writes such layers; Go's reader, and so Docker and containerd, accept them). The zeros come after
/// the real bytes, outside the diff_id hash, so a layer truncated mid-file still fails its digest check.
struct EndPadding<R> {
    inner: R,
    position: u64,
    padding: Option<u64>,
}

impl<R: Read> EndPadding<R> {
    fn new(inner: R) -> Self {
        EndPadding {
            inner,
            position: 0,
            padding: None,
        }
    }
}

impl<R: Read> Read for EndPadding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.padding.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.position += n as u64;
                return Ok(n);
            }
            self.padding = Some((512 - self.position % 512) % 512 + 1024);
        }
        let remaining = self.padding.unwrap_or(0);
        let n = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        buf[..n].fill(0);
        self.padding = Some(remaining - n as u64);
        Ok(n)
    }
}

/// Unpacks an uncompressed layer tar into `root` and hands back the reader, positioned after the last entry.
pub(crate) fn unpack_tar<R: Read>(reader: R, root: &Path) -> Result<R, LayerError> {
    let mut archive = tar::Archive::new(reader);
    let mut directories = Vec::new();
    for entry in archive.entries().map_err(LayerError::Read)? {
        let mut entry = entry.map_err(LayerError::Read)?;
        apply(&mut entry, root, &mut directories)?;
    }
    // Creating children changed the directories' mtimes; set them last, deepest first.
    for (path, mtime) in directories.iter().rev() {
        set_mtime(path, *mtime)?;
    }
    Ok(archive.into_inner())
}

fn apply<R: Read>(
    entry: &mut Entry<'_, R>,
    root: &Path,
    directories: &mut Vec<(PathBuf, u64)>,
) -> Result<(), LayerError> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() {
        return Ok(());
    }
    let raw = entry.path().map_err(LayerError::Read)?.into_owned();
    let shown = raw.display().to_string();
    let components = clean(&raw, &shown)?;

    if let Some((name, parents)) = components.split_last()
        && let Some(whiteout) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT_PREFIX))
    {
        let parent = prepare_parent(root, parents, &shown)?;
        return apply_whiteout(&parent, whiteout, &shown);
    }

    let dest = match components.split_last() {
        None => root.to_path_buf(),
        Some((name, parents)) => prepare_parent(root, parents, &shown)?.join(name),
    };
    if components.is_empty() && !kind.is_dir() {
        return Err(LayerError::UnsupportedEntry {
            path: shown,
            kind: format!("{kind:?} at the layer root"),
        });
    }

    match kind {
        EntryType::Directory => {
            ensure_directory(&dest, &shown)?;
            set_metadata(entry, &dest, &shown, false)?;
            directories.push((dest, entry.header().mtime().map_err(LayerError::Read)?));
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            remove_existing(&dest, &shown)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&dest)
                .map_err(write_error(&shown))?;
            io::copy(entry, &mut file).map_err(LayerError::Read)?;
            set_metadata(entry, &dest, &shown, false)?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(LayerError::Read)?
                .ok_or_else(|| LayerError::UnsupportedEntry {
                    path: shown.clone(),
                    kind: "symlink without a target".into(),
                })?
                .into_owned();
            remove_existing(&dest, &shown)?;
            std::os::unix::fs::symlink(&target, &dest).map_err(write_error(&shown))?;
            set_metadata(entry, &dest, &shown, true)?;
        }
        EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(LayerError::Read)?
                .ok_or_else(|| LayerError::UnsupportedEntry {
                    path: shown.clone(),
                    kind: "hard link without a target".into(),
                })?
                .into_owned();
            link(root, &dest, &target, &shown)?;
        }
        EntryType::Char | EntryType::Block => {
            let major = entry
                .header()
                .device_major()
                .map_err(LayerError::Read)?
                .unwrap_or(0);
            let minor = entry
                .header()
                .device_minor()
                .map_err(LayerError::Read)?
                .unwrap_or(0);
            if kind == EntryType::Char && major == 0 && minor == 0 {
                // Already an overlayfs whiteout (some tools export layers that way).
                let (parent, name) = split_dest(&dest, &shown)?;
                return apply_whiteout(&parent, &name, &shown);
            }
            let kind = if kind == EntryType::Char {
                "character"
            } else {
                "block"
            };
            return Err(LayerError::DeviceNode {
                path: shown,
                kind,
                major,
                minor,
            });
        }
        EntryType::Fifo => {
            remove_existing(&dest, &shown)?;
            rustix::fs::mknodat(CWD, &dest, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                .map_err(|e| write_error(&shown)(e.into()))?;
            set_metadata(entry, &dest, &shown, false)?;
        }
        other => {
            return Err(LayerError::UnsupportedEntry {
                path: shown,
                kind: format!("{other:?}"),
            });
        }
    }
    Ok(())
}

/// The path's normal components; `..` and absolute paths are refused, `.` is dropped.
fn clean(path: &Path, shown: &str) -> Result<Vec<OsString>, LayerError> {
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(LayerError::ParentDir(shown.to_owned())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(LayerError::AbsolutePath(shown.to_owned()));
            }
        }
    }
    Ok(out)
}

/// Walks `parents` below `root` without following symbolic links, creating missing directories (some tools
/// omit directory entries), and returns the parent directory's path.
fn prepare_parent(root: &Path, parents: &[OsString], shown: &str) -> Result<PathBuf, LayerError> {
    let mut current = root.to_path_buf();
    for (depth, part) in parents.iter().enumerate() {
        current.push(part);
        let walked = || {
            parents[..=depth]
                .iter()
                .map(|p| p.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        };
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(LayerError::ThroughSymlink {
                    path: shown.to_owned(),
                    link: walked(),
                });
            }
            Ok(meta) if is_whiteout(&meta) => {
                // `.wh.d` then `d/x` in the same layer: `d` is new here and hides the lower `d` entirely.
                fs::remove_file(&current).map_err(write_error(shown))?;
                make_directory(&current, shown)?;
                set_opaque(&current, shown)?;
            }
            Ok(_) => {
                return Err(LayerError::ParentNotDirectory {
                    path: shown.to_owned(),
                    parent: walked(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_directory(&current, shown)?,
            Err(e) => return Err(write_error(shown)(e)),
        }
    }
    Ok(current)
}

fn split_dest(dest: &Path, shown: &str) -> Result<(PathBuf, String), LayerError> {
    match (dest.parent(), dest.file_name().and_then(OsStr::to_str)) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_owned())),
        _ => Err(LayerError::UnsupportedEntry {
            path: shown.to_owned(),
            kind: "unnamed whiteout".into(),
        }),
    }
}

/// `.wh..wh..opq` makes `parent` opaque; `.wh.<name>` hides `<name>` of lower layers.
fn apply_whiteout(parent: &Path, whiteout: &str, shown: &str) -> Result<(), LayerError> {
    if whiteout == &OPAQUE_MARKER[WHITEOUT_PREFIX.len()..] {
        return set_opaque(parent, shown);
    }
    if whiteout.starts_with(WHITEOUT_PREFIX)
        || whiteout.is_empty()
        || whiteout == "."
        || whiteout == ".."
    {
        // Other `.wh..wh.` names are aufs bookkeeping (hard-link directories); they carry no content.
        return Ok(());
    }
    let target = parent.join(whiteout);
    match fs::symlink_metadata(&target) {
        // A whiteout only hides lower layers: what this layer put there stays, and a directory of this
        // layer must now hide the lower directory's content.
        Ok(meta) if meta.is_dir() => set_opaque(&target, shown),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => rustix::fs::mknodat(
            CWD,
            &target,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| write_error(shown)(e.into())),
        Err(e) => Err(write_error(shown)(e)),
    }
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn set_opaque(dir: &Path, shown: &str) -> Result<(), LayerError> {
    rustix::fs::lsetxattr(dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
        .map_err(|e| write_error(shown)(e.into()))
}

fn make_directory(path: &Path, shown: &str) -> Result<(), LayerError> {
    fs::create_dir(path).map_err(write_error(shown))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(write_error(shown))
}

/// Makes `dest` a directory, keeping one this layer already made.
fn ensure_directory(dest: &Path, shown: &str) -> Result<(), LayerError> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) => {
            let was_whiteout = is_whiteout(&meta);
            fs::remove_file(dest).map_err(write_error(shown))?;
            make_directory(dest, shown)?;
            if was_whiteout {
                set_opaque(dest, shown)
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => make_directory(dest, shown),
        Err(e) => Err(write_error(shown)(e)),
    }
}

/// A later entry replaces an earlier one of the same name (tar semantics).
fn remove_existing(dest: &Path, shown: &str) -> Result<(), LayerError> {
    match fs::symlink_metadata(dest) {
        // remove_dir_all never follows symbolic links.
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(dest).map_err(write_error(shown)),
        Ok(_) => fs::remove_file(dest).map_err(write_error(shown)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(write_error(shown)(e)),
    }
}

fn link(root: &Path, dest: &Path, target: &Path, shown: &str) -> Result<(), LayerError> {
    let target_shown = target.display().to_string();
    let outside = || LayerError::HardLinkOutside {
        path: shown.to_owned(),
        target: target_shown.clone(),
    };
    let parts = match clean(target, &target_shown) {
        Ok(parts) if !parts.is_empty() => parts,
        _ => return Err(outside()),
    };
    let mut source = root.to_path_buf();
    for (depth, part) in parts.iter().enumerate() {
        source.push(part);
        let is_last = depth + 1 == parts.len();
        match fs::symlink_metadata(&source) {
            Ok(meta) if !is_last && meta.file_type().is_symlink() => return Err(outside()),
            Ok(meta) if !is_last && !meta.is_dir() => {
                return Err(LayerError::HardLinkTarget {
                    path: shown.to_owned(),
                    target: target_shown,
                });
            }
            Ok(meta) if is_last && (meta.is_dir() || is_whiteout(&meta)) => {
                return Err(LayerError::HardLinkTarget {
                    path: shown.to_owned(),
                    target: target_shown,
                });
            }
            Ok(_) => {}
            Err(_) => {
                return Err(LayerError::HardLinkTarget {
                    path: shown.to_owned(),
                    target: target_shown,
                });
            }
        }
    }
    if source == dest {
        return Ok(());
    }
    remove_existing(dest, shown)?;
    // linkat(2) without AT_SYMLINK_FOLLOW: a link to a symbolic link links the link itself.
    fs::hard_link(&source, dest).map_err(write_error(shown))
}

/// Ownership, mode, extended attributes and mtime, in the order that keeps each: chown clears setuid bits
/// and file capabilities, so it goes first.
fn set_metadata<R: Read>(
    entry: &mut Entry<'_, R>,
    dest: &Path,
    shown: &str,
    is_symlink: bool,
) -> Result<(), LayerError> {
    let header = entry.header();
    let uid = u32::try_from(header.uid().map_err(LayerError::Read)?)
        .map_err(|_| unsupported(shown, "uid above 2^32"))?;
    let gid = u32::try_from(header.gid().map_err(LayerError::Read)?)
        .map_err(|_| unsupported(shown, "gid above 2^32"))?;
    let mode = header.mode().map_err(LayerError::Read)? & 0o7777;
    let mtime = header.mtime().map_err(LayerError::Read)?;

    rustix::fs::chownat(
        CWD,
        dest,
        Some(Uid::from_raw_unchecked(uid)),
        Some(Gid::from_raw_unchecked(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| write_error(shown)(e.into()))?;
    if !is_symlink {
        // Not a symbolic link (this extractor just created it), so following is harmless.
        fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(write_error(shown))?;
    }
    for (name, value) in xattrs(entry)? {
        if name.starts_with(OVERLAY_XATTR_PREFIX) {
            tracing::debug!(
                entry = shown,
                xattr = name,
                "dropping overlayfs attribute carried by the layer"
            );
            continue;
        }
        match rustix::fs::lsetxattr(dest, name.as_str(), &value, XattrFlags::empty()) {
            Ok(()) => {}
            // Filesystems without user xattrs, or `user.*` on a symbolic link: upstream skips these too.
            Err(e)
                if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::PERM && is_symlink =>
            {
                tracing::debug!(
                    entry = shown,
                    xattr = name,
                    "extended attribute not supported here"
                );
            }
            Err(e) => return Err(write_error(shown)(e.into())),
        }
    }
    if !entry.header().entry_type().is_dir() {
        set_mtime(dest, mtime)?;
    }
    Ok(())
}

fn xattrs<R: Read>(entry: &mut Entry<'_, R>) -> Result<Vec<(String, Vec<u8>)>, LayerError> {
    let mut out = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(LayerError::Read)? {
        for extension in extensions {
            let extension = extension.map_err(LayerError::Read)?;
            if let Ok(key) = extension.key()
                && let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX)
            {
                out.push((name.to_owned(), extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), LayerError> {
    let seconds = i64::try_from(mtime).unwrap_or(i64::MAX);
    let time = Timespec {
        tv_sec: seconds,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| write_error(&path.display().to_string())(e.into()))
}

fn unsupported(shown: &str, kind: &str) -> LayerError {
    LayerError::UnsupportedEntry {
        path: shown.to_owned(),
        kind: kind.to_owned(),
    }
}

fn write_error(shown: &str) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Write {
        path: shown.to_owned(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// Builds layer tars by hand, including the entries no well-behaved tool would write.
    pub(crate) struct LayerBuilder {
        builder: tar::Builder<Vec<u8>>,
    }

    impl Default for LayerBuilder {
        fn default() -> Self {
            LayerBuilder {
                builder: tar::Builder::new(Vec::new()),
            }
        }
    }

    impl LayerBuilder {
        fn header(kind: EntryType, mode: u32) -> tar::Header {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_700_000_000);
            header.set_size(0);
            header
        }

        /// Writes the name bytes directly, so that `..` and absolute paths survive (tar::Builder refuses them).
        fn append(&mut self, mut header: tar::Header, path: &str, data: &[u8]) {
            let name = &mut header.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_size(data.len() as u64);
            header.set_cksum();
            self.builder.append(&header, data).unwrap();
        }

        pub(crate) fn dir(mut self, path: &str) -> Self {
            self.append(Self::header(EntryType::Directory, 0o755), path, b"");
            self
        }

        pub(crate) fn file(mut self, path: &str, data: &[u8]) -> Self {
            self.append(Self::header(EntryType::Regular, 0o644), path, data);
            self
        }

        pub(crate) fn file_owned(
            mut self,
            path: &str,
            data: &[u8],
            uid: u64,
            gid: u64,
            mode: u32,
        ) -> Self {
            let mut header = Self::header(EntryType::Regular, mode);
            header.set_uid(uid);
            header.set_gid(gid);
            self.append(header, path, data);
            self
        }

        fn link_entry(mut self, kind: EntryType, path: &str, target: &str) -> Self {
            let mut header = Self::header(kind, 0o777);
            let linkname = &mut header.as_old_mut().linkname;
            linkname.fill(0);
            linkname[..target.len()].copy_from_slice(target.as_bytes());
            self.append(header, path, b"");
            self
        }

        pub(crate) fn symlink(self, path: &str, target: &str) -> Self {
            self.link_entry(EntryType::Symlink, path, target)
        }

        pub(crate) fn hardlink(self, path: &str, target: &str) -> Self {
            self.link_entry(EntryType::Link, path, target)
        }

        pub(crate) fn device(
            mut self,
            kind: EntryType,
            path: &str,
            major: u32,
            minor: u32,
        ) -> Self {
            let mut header = Self::header(kind, 0o666);
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
            self.append(header, path, b"");
            self
        }

        pub(crate) fn fifo(mut self, path: &str) -> Self {
            self.append(Self::header(EntryType::Fifo, 0o644), path, b"");
            self
        }

        pub(crate) fn file_with_xattr(
            mut self,
            path: &str,
            data: &[u8],
            name: &str,
            value: &[u8],
        ) -> Self {
            self.builder
                .append_pax_extensions([(format!("SCHILY.xattr.{name}").as_str(), value)])
                .unwrap();
            self.append(Self::header(EntryType::Regular, 0o644), path, data);
            self
        }

        pub(crate) fn build(self) -> Vec<u8> {
            self.builder.into_inner().unwrap()
        }
    }

    fn unpack(layer: &[u8]) -> (tempfile::TempDir, Result<(), LayerError>) {
        let dir = tempfile::tempdir().unwrap();
        let result = unpack_tar(layer, dir.path()).map(|_| ());
        (dir, result)
    }

    fn opaque(path: &Path) -> bool {
        let mut value = [0u8; 8];
        matches!(rustix::fs::lgetxattr(path, OVERLAY_OPAQUE_XATTR, &mut value[..]), Ok(1) if value[0] == b'y')
    }

    #[test]
    fn files_keep_contents_modes_owners_and_times() {
        let layer = LayerBuilder::default()
            .dir("usr/")
            .dir("usr/bin/")
            .file_owned("usr/bin/tool", b"#!/bin/sh\n", 1000, 1001, 0o4755)
            .symlink("usr/bin/alias", "/usr/bin/tool")
            .hardlink("usr/bin/same", "usr/bin/tool")
            .build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        let tool = dir.path().join("usr/bin/tool");
        let meta = fs::metadata(&tool).unwrap();
        assert_eq!(fs::read(&tool).unwrap(), b"#!/bin/sh\n");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1000, 1001, 0o4755)
        );
        assert_eq!(meta.mtime(), 1_700_000_000);
        assert_eq!(
            fs::read_link(dir.path().join("usr/bin/alias")).unwrap(),
            Path::new("/usr/bin/tool")
        );
        assert_eq!(
            fs::metadata(dir.path().join("usr/bin/same")).unwrap().ino(),
            meta.ino()
        );
        assert_eq!(
            fs::metadata(dir.path().join("usr")).unwrap().mtime(),
            1_700_000_000
        );
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        let layer = LayerBuilder::default()
            .dir("etc/")
            .file("etc/.wh.motd", b"")
            .build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        let meta = fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), 0);
        assert!(!dir.path().join("etc/.wh.motd").exists());
    }

    #[test]
    fn opaque_markers_become_the_overlayfs_opaque_attribute() {
        let layer = LayerBuilder::default()
            .dir("var/")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", b"")
            .build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        assert!(opaque(&dir.path().join("var/cache")));
        assert!(!opaque(&dir.path().join("var")));
        assert!(!dir.path().join("var/cache/.wh..wh..opq").exists());
    }

    #[test]
    fn a_directory_replacing_a_whiteout_in_the_same_layer_is_opaque() {
        let layer = LayerBuilder::default()
            .file(".wh.data", b"")
            .dir("data/")
            .file("data/new", b"x")
            .build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        assert!(
            fs::symlink_metadata(dir.path().join("data"))
                .unwrap()
                .is_dir()
        );
        assert!(opaque(&dir.path().join("data")));
    }

    #[test]
    fn a_whiteout_does_not_remove_what_the_same_layer_wrote() {
        let layer = LayerBuilder::default()
            .file("keep", b"mine")
            .file(".wh.keep", b"")
            .build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        assert_eq!(fs::read(dir.path().join("keep")).unwrap(), b"mine");
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one() {
        let layer = LayerBuilder::default()
            .symlink("x", "/etc/passwd")
            .file("x", b"plain")
            .build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        assert!(
            fs::symlink_metadata(dir.path().join("x"))
                .unwrap()
                .is_file()
        );
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"plain");
    }

    #[test]
    fn missing_parent_directories_are_created() {
        let layer = LayerBuilder::default().file("a/b/c", b"deep").build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        assert_eq!(fs::read(dir.path().join("a/b/c")).unwrap(), b"deep");
    }

    #[test]
    fn fifos_are_kept() {
        let layer = LayerBuilder::default().fifo("pipe").build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        assert!(
            fs::symlink_metadata(dir.path().join("pipe"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn extended_attributes_are_kept_but_overlay_ones_are_dropped() {
        let layer = LayerBuilder::default()
            .file_with_xattr("capable", b"x", "user.berth", b"yes")
            .file_with_xattr("sneaky", b"x", "trusted.overlay.redirect", b"/etc")
            .build();
        let (dir, result) = unpack(&layer);
        result.unwrap();
        let mut value = [0u8; 8];
        let n = rustix::fs::lgetxattr(dir.path().join("capable"), "user.berth", &mut value[..])
            .unwrap();
        assert_eq!(&value[..n], b"yes");
        assert!(
            rustix::fs::lgetxattr(
                dir.path().join("sneaky"),
                "trusted.overlay.redirect",
                &mut value[..]
            )
            .is_err()
        );
    }

    #[test]
    fn parent_dir_components_are_refused() {
        let (_dir, result) = unpack(&LayerBuilder::default().file("a/../../escape", b"x").build());
        assert!(
            matches!(result, Err(LayerError::ParentDir(_))),
            "{result:?}"
        );
    }

    #[test]
    fn absolute_paths_are_refused() {
        let (_dir, result) = unpack(&LayerBuilder::default().file("/tmp/escape", b"x").build());
        assert!(
            matches!(result, Err(LayerError::AbsolutePath(_))),
            "{result:?}"
        );
    }

    #[test]
    fn writing_through_a_symlink_is_refused_and_nothing_lands_outside() {
        let outside = tempfile::tempdir().unwrap();
        let layer = LayerBuilder::default()
            .symlink("out", outside.path().to_str().unwrap())
            .file("out/planted", b"x")
            .build();
        let (_dir, result) = unpack(&layer);
        assert!(
            matches!(result, Err(LayerError::ThroughSymlink { .. })),
            "{result:?}"
        );
        assert!(!outside.path().join("planted").exists());
    }

    #[test]
    fn a_whiteout_through_a_symlink_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), b"x").unwrap();
        let layer = LayerBuilder::default()
            .symlink("out", outside.path().to_str().unwrap())
            .file("out/.wh..wh..opq", b"")
            .build();
        let (_dir, result) = unpack(&layer);
        assert!(
            matches!(result, Err(LayerError::ThroughSymlink { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn hard_links_outside_the_layer_are_refused() {
        for target in [
            "/etc/passwd",
            "../../../../etc/passwd",
            "a/../../etc/passwd",
        ] {
            let (_dir, result) =
                unpack(&LayerBuilder::default().hardlink("passwd", target).build());
            assert!(
                matches!(result, Err(LayerError::HardLinkOutside { .. })),
                "{target}: {result:?}"
            );
        }
    }

    #[test]
    fn hard_links_through_a_symlink_are_refused() {
        let layer = LayerBuilder::default()
            .symlink("etc", "/etc")
            .hardlink("passwd", "etc/passwd")
            .build();
        let (_dir, result) = unpack(&layer);
        assert!(
            matches!(result, Err(LayerError::HardLinkOutside { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn device_nodes_are_refused() {
        let (_dir, result) = unpack(
            &LayerBuilder::default()
                .device(EntryType::Char, "dev/mem", 1, 1)
                .build(),
        );
        assert!(
            matches!(
                result,
                Err(LayerError::DeviceNode {
                    kind: "character",
                    ..
                })
            ),
            "{result:?}"
        );
        let (_dir, result) = unpack(
            &LayerBuilder::default()
                .device(EntryType::Block, "dev/sda", 8, 0)
                .build(),
        );
        assert!(
            matches!(result, Err(LayerError::DeviceNode { kind: "block", .. })),
            "{result:?}"
        );
    }

    #[test]
    fn overlay_style_whiteout_devices_are_accepted() {
        let (dir, result) = unpack(
            &LayerBuilder::default()
                .device(EntryType::Char, "gone", 0, 0)
                .build(),
        );
        result.unwrap();
        assert!(
            fs::symlink_metadata(dir.path().join("gone"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn a_layer_ending_without_tar_padding_is_accepted_and_its_digest_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut layer = LayerBuilder::default().file("etc/motd", b"hello\n").build();
        layer.truncate(512 + 6);
        let blob = dir.path().join("blob");
        fs::write(&blob, &layer).unwrap();
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).unwrap();
        unpack_blob(&blob, &dest, &Digest::of(&layer)).unwrap();
        assert_eq!(fs::read(dest.join("etc/motd")).unwrap(), b"hello\n");
    }

    #[test]
    fn a_layer_truncated_inside_a_file_fails_its_digest_check() {
        let dir = tempfile::tempdir().unwrap();
        let full = LayerBuilder::default().file("big", &[1u8; 2000]).build();
        let blob = dir.path().join("blob");
        fs::write(&blob, &full[..1000]).unwrap();
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let result = unpack_blob(&blob, &dest, &Digest::of(&full));
        assert!(result.is_err(), "a truncated layer was accepted");
    }

    #[test]
    fn a_wrong_diff_id_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, LayerBuilder::default().file("f", b"x").build()).unwrap();
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let result = unpack_blob(&blob, &dest, &Digest::of(b"something else"));
        assert!(
            matches!(result, Err(LayerError::DiffIdMismatch { .. })),
            "{result:?}"
        );
    }
}
