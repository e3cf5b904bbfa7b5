//! The container runtime: a single-threaded shim process per container that builds and runs it with libcontainer.
