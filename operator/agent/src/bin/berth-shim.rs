//! The runtime's shim alone, for the runtime's tests and benchmark (which cannot run the `berth` binary of
//! another package). `berth shim --state-dir DIR` is the same entry point in production.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [shim, flag, dir] if shim == "shim" && flag == "--state-dir" => {
            berth_agent::runtime::shim::run(&PathBuf::from(dir))
        }
        _ => {
            eprintln!("usage: berth-shim shim --state-dir DIR");
            ExitCode::from(2)
        }
    }
}
