//! The shim: one small single-threaded process per container, started by the agent as `berth shim
//! --state-dir DIR` (the same binary re-executed, like containerd-shim or conmon). It detaches from the agent
//! (double fork and a new session, so the agent may die or restart), mounts the rootfs in a mount namespace of
//! its own (nothing shows in the host's mount table and nothing is left behind if it dies), creates and starts
//! the container with libcontainer, reports the outcome on its stdout, then serves the control socket, writes
//! the container's output as CRI logs, reaps the container, deletes its cgroup and records its exit status.
//!
//! libcontainer forks and changes process-wide state (current directory, dumpability, signal masks), which is
//! why this runs in its own process and never inside the agent's threads.

mod create;
mod exec;
mod serve;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
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

/// The shim's entry point (`berth shim --state-dir DIR`). It must run before the process starts any thread:
/// it forks, and libcontainer forks again and changes process-wide state.
pub fn run(state_dir: &Path) -> ExitCode {
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
    init_tracing(&state.shim_log());
    let span = tracing::info_span!("shim", dir = %state_dir.display());
    let _enter = span.enter();

    let config = match read_json::<ShimConfig>(&state.shim_config()) {
        Ok(Some(config)) => config,
        Ok(None) => return fail(&format!("{} is missing", state.shim_config().display())),
        Err(err) => return fail(&format!("reading the shim config: {err}")),
    };
    match create::create(&config, &state) {
        Ok(shim) => {
            report(&Ready::Started(shim.started().clone()));
            shim.serve();
            ExitCode::SUCCESS
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

/// Diagnostics go to `shim.log` through a descriptor of their own: libcontainer's container processes log
/// too, after their stderr has become the container's. `BERTH_SHIM_LOG` sets the filter.
fn init_tracing(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    else {
        return;
    };
    // Without its libseccomp feature libcontainer warns on every start; berth installs seccomp itself.
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("BERTH_SHIM_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,libcontainer::process::init::process=error")
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init();
}
