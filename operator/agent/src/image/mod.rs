//! Images: the content-addressed store, pulls from OCI registries, imports of OCI and docker archives, and layers unpacked safely.
