//! The runtime's shim alone, for the runtime's tests and benchmark (which cannot run the `berth` binary of
//! another package). `berth shim --state-dir DIR` is the same entry point in production.

use std::process::ExitCode;

fn main() -> ExitCode {
    berth_agent::runtime::shim::main_if_shim(std::env::args_os()).unwrap_or_else(|| {
        eprintln!("usage: berth-shim shim --state-dir DIR");
        ExitCode::from(2)
    })
}
