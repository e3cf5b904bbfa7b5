//! The control plane's one error type: what failed, with the object or path it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("discovering the API server's resources failed: {0}")]
    Discovery(#[source] kube::Error),
    #[error("a watch of {resource} ended; the loop cannot go on without it")]
    WatchEnded { resource: String },
    #[error("volume directory {}: {source}", path.display())]
    VolumeDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to remove {}: it is not a directory this provisioner made under {}", path.display(), root.display())]
    VolumeOutsideRoot { path: PathBuf, root: PathBuf },
    #[error("encoding a request body: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Error {
    /// Whether the API answered with this HTTP status code.
    pub fn is_status(&self, code: u16) -> bool {
        matches!(self, Error::Api(kube::Error::Api(status)) if status.code == code)
    }
}

/// The HTTP status code of an API error answer, if the error is one.
pub fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
