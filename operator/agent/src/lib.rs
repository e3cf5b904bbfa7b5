//! berth's node agent: what a kubelet does for the Pods bound to its node, on this machine. It knows Pods,
//! not Stacks. Images and the container runtime are separate modules; the runtime's per-container shim runs
//! in its own single-threaded process (see ARCHITECTURE.md, "Node agent").

pub mod image;
pub mod kubelet;
pub mod net;
pub mod runtime;

/// Caps glibc's malloc at two arenas, for a long-running process; call it before any thread starts. glibc
/// otherwise gives threads that meet contention arenas of their own (up to eight per core), each keeping the
/// memory freed into it; berth's threads mostly wait on I/O, so more arenas buy no speed, only memory (the
/// agent with 10 Pods: 0.5 MiB less). `MALLOC_ARENA_MAX` in the environment still wins.
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one allocator parameter; no other thread exists yet to allocate concurrently.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
