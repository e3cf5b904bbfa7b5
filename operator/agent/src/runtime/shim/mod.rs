//! The shim: one small single-threaded process per container, started by the agent as `berth shim
//! --state-dir DIR` (the same binary re-executed, like containerd-shim or conmon). It lives in three phases,
//! each an image of its own so that the long-lived one stays small:
//!
//! 1. **create** (`shim --state-dir DIR`): detaches from the agent (double fork and a new session, so the
//!    agent may die or restart), mounts the rootfs in a mount namespace of its own (nothing shows in the
//!    host's mount table and nothing is left behind if it dies), creates and starts the container with
//!    libcontainer and reports the outcome on its stdout. Then it re-executes itself, same pid, into
//! 2. **monitor** (`shim --state-dir DIR --monitor FDS`): it keeps the descriptors named in `FDS` (control
//!    socket, the container's output and stdin), serves the control socket, writes the CRI log, reaps the
//!    container, deletes its cgroup and records its exit status. Same pid, so it stays the container's parent
//!    and subreaper, and its mount namespace; but none of the pages and heap libcontainer touched.
//! 3. **exec** (`shim --state-dir DIR --exec FD`): a short-lived child of the monitor that joins a new
//!    process to the container with libcontainer's tenant builder, answers on `FD` and exits; the process
//!    is reparented to the monitor, which reaps it.
//!
//! libcontainer forks and changes process-wide state (current directory, dumpability, signal masks), which is
//! why it runs in processes of its own and never inside the agent's threads.

mod create;
mod exec;
mod monitor;
mod serve;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::unistd::{ForkResult, fork, setsid};

use super::protocol::Ready;
use super::state::{ShimConfig, StateDir, read_json};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ShimError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
    #[error("{0}")]
    Libcontainer(#[from] libcontainer::error::LibcontainerError),
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
    #[error("{0}")]
    Config(String),
}

impl ShimError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
    pub(crate) fn sys(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Self {
        let context = context.into();
        move |source| Self::Sys { context, source }
    }
}

/// The process's entry when its arguments are a shim's (`<argv0> shim --state-dir DIR [--monitor FDS |
/// --exec FD]`); `None` otherwise. Call it first thing in `main`, before any thread, runtime or argument
/// parser: the create phase forks, and the monitor should touch as little of the binary as it can.
pub fn main_if_shim(mut args: impl Iterator<Item = OsString>) -> Option<ExitCode> {
    let argv0 = args.next()?;
    if args.next()? != "shim" {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let code = match rest.as_slice() {
        [flag, dir] if flag == "--state-dir" => run(Path::new(dir)),
        [flag, dir, phase, value] if flag == "--state-dir" && phase == "--monitor" => {
            monitor::run(&StateDir::new(dir), value)
        }
        [flag, dir, phase, value] if flag == "--state-dir" && phase == "--exec" => {
            exec::run_helper(&StateDir::new(dir), value)
        }
        _ => {
            eprintln!(
                "usage: {} shim --state-dir DIR (started by the node agent)",
                Path::new(&argv0).display()
            );
            ExitCode::from(2)
        }
    };
    Some(code)
}

/// The create phase: detaches, creates and starts the container, reports, and turns into the monitor. It
/// must run before the process starts any thread: it forks, and libcontainer forks again and changes
/// process-wide state.
fn run(state_dir: &Path) -> ExitCode {
    // SAFETY: the process is single-threaded here (the caller's contract), so the child may run anything.
    match unsafe { fork() } {
        // The agent reaps this parent at once; the shim lives on, reparented away from the agent.
        Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Ok(ForkResult::Child) => {}
        Err(err) => {
            report(&Ready::Failed(format!("the shim could not fork: {err}")));
            return ExitCode::FAILURE;
        }
    }
    // A session of its own: no terminal signals, no process group shared with the agent.
    let _ = setsid();
    let state = StateDir::new(state_dir);
    init_tracing(&state.shim_log(), CREATE_LOG_FILTER);
    let span = tracing::info_span!("shim", dir = %state_dir.display());
    let _enter = span.enter();

    let config = match read_json::<ShimConfig>(&state.shim_config()) {
        Ok(Some(config)) => config,
        Ok(None) => return fail(&format!("{} is missing", state.shim_config().display())),
        Err(err) => return fail(&format!("reading the shim config: {err}")),
    };
    match create::create(&config, &state) {
        Ok(created) => {
            report(&Ready::Started(created.started.clone()));
            monitor::become_monitor(&state, created)
        }
        Err(err) => fail(&err.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    tracing::error!(message, "the container could not be started");
    report(&Ready::Failed(message.to_string()));
    ExitCode::FAILURE
}

/// Writes the one readiness line to the agent, then points stdout at /dev/null so that the agent's pipe closes.
fn report(ready: &Ready) {
    let mut line =
        serde_json::to_vec(ready).unwrap_or_else(|_| b"{\"failed\":\"unreportable\"}".to_vec());
    line.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&line);
    let _ = stdout.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
    }
}

/// Without its libseccomp feature libcontainer warns on every start; berth installs seccomp itself.
const CREATE_LOG_FILTER: &str = "warn,libcontainer::process::init::process=error";
/// The monitor and exec phases log warnings and errors.
const LOG_FILTER: &str = "warn";

/// Diagnostics go to `shim.log` through a descriptor of their own: libcontainer's container processes log
/// too, after their stderr has become the container's. `BERTH_SHIM_LOG` sets the filter (`target=level`
/// directives): a plain target filter, not `EnvFilter`, whose regular expressions the monitor would carry.
fn init_tracing(path: &Path, default_filter: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    else {
        return;
    };
    let filter: tracing_subscriber::filter::Targets = std::env::var("BERTH_SHIM_LOG")
        .ok()
        .and_then(|value| value.parse().ok())
        .or_else(|| default_filter.parse().ok())
        .unwrap_or_default();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false),
        )
        .with(filter)
        .try_init();
}

/// The argv that runs this binary as the shim of `state` in another phase.
fn phase_args(state: &StateDir, phase: &str, value: &str) -> Vec<OsString> {
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("berth"));
    vec![
        argv0,
        "shim".into(),
        "--state-dir".into(),
        state.path().as_os_str().to_owned(),
        phase.into(),
        value.into(),
    ]
}

/// This very binary, even if its file was replaced or removed since it started.
fn self_exe() -> PathBuf {
    PathBuf::from("/proc/self/exe")
}
