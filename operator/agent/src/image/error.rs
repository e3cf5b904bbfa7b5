//! What can go wrong with images: one enum for the store, pulls and imports, and one for the layer
//! extractor, whose refusals name the entry that tried to leave the layer root.

use std::io;
use std::path::PathBuf;

/// An image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory of the store or of an import could not be read or written.
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The image name does not parse as an image reference.
    #[error("invalid image name `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// A digest is malformed or uses an algorithm the store does not know (only sha256 is supported).
    #[error("invalid digest `{0}`: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    /// Content did not hash to the digest that named it.
    #[error("content of {expected} hashes to {actual}: the blob is corrupt or was tampered with")]
    DigestMismatch { expected: String, actual: String },
    /// Content is longer or shorter than its descriptor says.
    #[error("blob {digest} is {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// The registry refused or failed a request.
    #[error("pulling {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// A manifest, config, index or archive is not what an image should be.
    #[error("{0}")]
    Format(String),
    /// An image index has no manifest for this machine.
    #[error("{reference} has no image for {os}/{architecture}")]
    NoMatchingPlatform {
        reference: String,
        os: &'static str,
        architecture: &'static str,
    },
    /// The image is not in the store and the pull policy forbids pulling it.
    #[error(
        "image {reference} is not present and the pull policy is Never: import it first (`berth image import`)"
    )]
    NeverPull { reference: String },
    /// A docker config JSON (imagePullSecret) could not be parsed.
    #[error("invalid docker config JSON: {0}")]
    Credentials(String),
    /// A layer was refused or could not be unpacked; nothing of it was kept.
    #[error("layer {layer}: {source}")]
    Layer {
        layer: String,
        #[source]
        source: LayerError,
    },
}

impl ImageError {
    /// The reason a kubelet reports in a container's `waiting` state when getting the image failed.
    pub fn kube_reason(&self) -> &'static str {
        match self {
            ImageError::InvalidReference { .. } => "InvalidImageName",
            ImageError::NeverPull { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { what, path, source }
    }
}

/// A layer could not be unpacked. The variants before `Read` are refusals: the layer tried to place
/// something outside its root or to create something an image may not carry.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("entry `{0}` climbs out of the layer root with `..`; refused")]
    ParentDir(String),
    #[error("entry `{0}` has an absolute path; refused")]
    AbsolutePath(String),
    #[error("entry `{path}` would be written through the symbolic link `{link}`; refused")]
    ThroughSymlink { path: String, link: String },
    #[error("hard link `{path}` points to `{target}`, outside the layer; refused")]
    HardLinkOutside { path: String, target: String },
    #[error(
        "entry `{path}` is a {kind} device ({major}:{minor}); images may not carry device nodes; refused"
    )]
    DeviceNode {
        path: String,
        kind: &'static str,
        major: u32,
        minor: u32,
    },
    #[error("hard link `{path}` points to `{target}`, which is not an earlier file of this layer")]
    HardLinkTarget { path: String, target: String },
    #[error("entry `{path}` lies below `{parent}`, which is not a directory")]
    ParentNotDirectory { path: String, parent: String },
    #[error("entry `{path}` has a type berth does not unpack ({kind})")]
    UnsupportedEntry { path: String, kind: String },
    #[error("uncompressed content hashes to {actual}, but the image config says {expected}")]
    DiffIdMismatch { expected: String, actual: String },
    #[error("reading the layer: {0}")]
    Read(#[source] io::Error),
    #[error("writing `{path}`: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl LayerError {
    /// Whether this is a refusal of unsafe content (as opposed to a corrupt or unreadable layer).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LayerError::ParentDir(_)
                | LayerError::AbsolutePath(_)
                | LayerError::ThroughSymlink { .. }
                | LayerError::HardLinkOutside { .. }
                | LayerError::DeviceNode { .. }
        )
    }
}
