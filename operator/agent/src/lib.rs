//! berth's node agent: what a kubelet does for the Pods bound to its node, on this machine. It knows Pods,
//! not Stacks. Images and the container runtime are separate modules; the runtime's per-container shim runs
//! in its own single-threaded process (see ARCHITECTURE.md, "Node agent").

pub mod image;
pub mod kubelet;
pub mod net;
pub mod runtime;
