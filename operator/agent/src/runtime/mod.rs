//! The container runtime: a single-threaded shim process per container that builds and runs it with
//! libcontainer (see [`shim`]), and the agent's side of it ([`Runtime`]), which spawns shims and talks to them
//! through the files and the control socket of each container's state directory ([`state`]). Nothing of a
//! container lives in the agent's memory: a restarted agent finds running containers with [`Runtime::list`].
//!
//! The agent's verbs are one file each: `create.rs`, `kill.rs` (kill, stop, wait), `delete.rs` (remove),
//! `exec.rs`, `attach.rs` (both streaming sessions with the shim: `session.rs`) and `list.rs` (state, list).

mod attach;
pub mod cgroups;
pub mod config;
mod create;
mod delete;
mod exec;
mod kill;
mod list;
pub mod log_reader;
pub mod logs;
pub mod netns;
mod protocol;
mod seccomp;
mod session;
pub mod shim;
pub mod spec;
pub mod state;
pub mod tty;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use attach::Attached;
pub use cgroups::Version as CgroupVersion;
pub use config::{ContainerConfig, LogConfig, Mount, Resources, Security, User};
pub use exec::ExecProcess;
pub use state::ExitStatus;

/// How the agent runs containers on this node.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// One state directory per container: `<root>/<id>`. Keep it short: the shim's socket path
    /// (`<root>/<id>/shim.sock`) must fit in 108 bytes.
    pub root: PathBuf,
    /// The program started as `<shim_program> shim --state-dir DIR`: the berth binary.
    pub shim_program: PathBuf,
    /// Containers' cgroups are `<cgroup_parent>/<id>` in every hierarchy.
    pub cgroup_parent: PathBuf,
    /// How long a shim may take to create and start its container.
    pub start_timeout: Duration,
}

impl RuntimeConfig {
    /// State under `root`, the running executable as the shim, cgroups under `/berth`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let shim_program =
            std::env::current_exe().map_err(Error::io("finding the running executable"))?;
        Ok(Self {
            root: root.into(),
            shim_program,
            cgroup_parent: PathBuf::from("/berth"),
            start_timeout: Duration::from_secs(60),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {id}: {reason}")]
    InvalidConfig { id: String, reason: String },
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {id} could not be started: {reason}")]
    StartFailed { id: String, reason: String },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {id}: its shim is gone without recording an exit ({reason})")]
    ShimLost { id: String, reason: String },
    #[error("container {id}: {reason}")]
    Shim { id: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// A started container, as the agent needs to find it again. Dropping it changes nothing: the container runs
/// on under its shim.
#[derive(Debug, Clone, PartialEq)]
pub struct Handle {
    pub id: String,
    /// The container's init process, in the host's pid namespace.
    pub pid: i32,
    pub shim_pid: i32,
    pub started_at: jiff::Timestamp,
    pub state_dir: PathBuf,
    /// The CRI log file.
    pub log_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// The shim is creating the container.
    Creating,
    Running,
    Exited(ExitStatus),
    /// The shim died without recording how the container ended; [`Runtime::remove`] still cleans up.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub id: String,
    /// `None` while the container is being created.
    pub handle: Option<Handle>,
    pub status: Status,
}

/// The agent's side of the runtime. Cheap to clone; all state is on disk.
#[derive(Clone)]
pub struct Runtime {
    config: RuntimeConfig,
    cgroups: Arc<dyn cgroups::Hierarchy>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, Error> {
        std::fs::create_dir_all(&config.root)
            .map_err(Error::io(format!("creating {}", config.root.display())))?;
        let cgroups = cgroups::detect().map_err(Error::io("reading the cgroup setup"))?;
        Ok(Self {
            config,
            cgroups: Arc::from(cgroups),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The cgroup version this host's controllers are on.
    pub fn cgroup_version(&self) -> CgroupVersion {
        self.cgroups.version()
    }

    /// The container's cgroup, relative to each hierarchy's root.
    pub fn cgroup_path(&self, id: &str) -> PathBuf {
        self.config.cgroup_parent.join(id)
    }

    fn state_dir(&self, id: &str) -> Result<state::StateDir, Error> {
        config::validate_id(id)?;
        Ok(state::StateDir::new(self.config.root.join(id)))
    }

    fn handle(&self, id: &str, dir: &Path, started: state::Started, log_path: PathBuf) -> Handle {
        Handle {
            id: id.to_string(),
            pid: started.pid,
            shim_pid: started.shim_pid,
            started_at: started.started_at,
            state_dir: dir.to_path_buf(),
            log_path,
        }
    }
}

/// A pipe whose descriptors are not inherited across exec.
fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|err| Error::io("creating a pipe")(err.into()))
}

/// A connection to a shim, made blocking for SCM_RIGHTS, handed to tokio for the rest.
fn control_stream(stream: std::os::unix::net::UnixStream) -> Result<tokio::net::UnixStream, Error> {
    stream
        .set_nonblocking(true)
        .map_err(Error::io("shim control socket"))?;
    tokio::net::UnixStream::from_std(stream).map_err(Error::io("shim control socket"))
}
