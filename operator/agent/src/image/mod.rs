//! Images: a content-addressed store under one directory, pulls from OCI registries, imports of OCI and
//! `docker save` archives, and layers unpacked safely for overlayfs. The runtime asks for an [`Image`]
//! (config plus layer directories) and mounts the overlay itself; nothing here knows about containers.
//!
//! Design: each layer is unpacked once, into its own directory named by its diff_id, and stays in the
//! form overlayfs reads directly: OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) are translated at unpack
//! time into overlayfs whiteouts (a 0/0 character device, the `trusted.overlay.opaque` attribute). An
//! image is then the ordered list of its layer directories ([`Image::overlay_lowerdir`]), shared by every
//! image and container that uses the layer; no per-image copy is made. Unpacking needs root (device
//! nodes, `trusted.*` attributes, ownership), which the agent has.
//!
//! Safety: the extractor never follows a symbolic link while writing and refuses any entry that would
//! land outside the layer directory (see `unpack`). A refused or corrupt layer fails the pull or import
//! and leaves nothing behind but the downloaded blob, which `prune` reclaims.

mod auth;
mod compression;
mod config;
mod digest;
mod error;
mod import;
mod platform;
mod pull;
mod reference;
mod store;
mod unpack;

pub use auth::Credentials;
pub use config::ImageConfig;
pub use digest::Digest;
pub use error::{ImageError, LayerError};
pub use platform::{OS, architecture};
pub use pull::{Progress, PullAction, PullEvent, PullPolicy, no_progress};
pub use reference::{normalize, registry};
pub use store::{Image, ImageStore, ImageSummary};
