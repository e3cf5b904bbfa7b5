//! The loopback OCI registry filled with busybox that the end-to-end tests and benchmarks pull from; it lives
//! in `berth-testsupport`, which the agent's own image tests share.

pub use berth_testsupport::registry::Registry;
