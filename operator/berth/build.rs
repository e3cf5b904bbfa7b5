//! Links `berth` as a position-dependent executable (`-no-pie`) on Linux.
//!
//! Every shim is this binary, one per container. As a PIE, each process's dynamic loader first reads the
//! whole 1.7 MB relocation table and writes the addresses into `.data.rel.ro` (1.2 MB of vtables and static
//! tables), so every shim and every berth process carried about 1.3 MiB of private dirty pages and 1.7 MiB
//! more of resident table before running a line of its own: about half of a shim's PSS (BENCHMARKS.md, "Node
//! agent memory"). Without PIE the linker resolves those addresses once and the pages stay clean and shared.
//! The binary's own code and data load at a fixed address, as the Go binaries of the container world
//! (kubelet, containerd's shims) do by default; libraries, heap, stacks and mmaps keep their randomisation.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=berth=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
