//! The files of one container under the runtime's root, `<root>/<id>/`, shared by the agent and the shim: the
//! agent writes the bundle and `shim.json`, the shim writes `started.json` and `exit.json`. Records are JSON,
//! written to a temporary file and renamed, so a reader never sees half a record.
//!
//! ```text
//! shim.json           what the shim needs beside the OCI spec (ShimConfig)
//! bundle/config.json  the OCI runtime spec
//! rootfs/ upper/ work/  overlayfs mount point (in the shim's private mount namespace), writes, scratch
//! libcontainer/       libcontainer's own state
//! shim.sock           the shim's control socket, while it runs
//! shim.log            the shim's diagnostics
//! started.json        pids and start time, once the container runs
//! exit.json           the exit status, once the container exited and its cgroup is gone
//! container.log       CRI log, unless the config names another file
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::config::LogConfig;

/// The name libcontainer knows the container by, inside its own state root (the state directory): short, so
/// that its socket paths stay within `sun_path`.
pub const LIBCONTAINER_ID: &str = "libcontainer";

/// Paths inside one container's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn shim_config(&self) -> PathBuf {
        self.dir.join("shim.json")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("shim.sock")
    }
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    pub fn started(&self) -> PathBuf {
        self.dir.join("started.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn default_log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
}

/// What the shim needs beside the OCI spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    /// Bottom first.
    pub lowerdirs: Vec<PathBuf>,
    pub tty: bool,
    pub stdin: bool,
    /// With `path` resolved.
    pub log: LogConfig,
    pub cgroups_path: PathBuf,
    pub seccomp: bool,
}

/// Recorded once the container's process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// The container's init process, in the host's pid namespace.
    pub pid: i32,
    pub shim_pid: i32,
    pub started_at: jiff::Timestamp,
}

/// How a container's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal number when a signal ended it (what `kubectl` shows).
    pub code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container (Kubernetes reason `OOMKilled`).
    pub oom_killed: bool,
    pub finished_at: jiff::Timestamp,
}

/// Writes `value` as JSON to `path` through a temporary file and a rename.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp)?;
    serde_json::to_writer(&mut file, value).map_err(io::Error::other)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Reads a JSON record; `None` when the file does not exist (yet).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {err}", path.display()),
            )
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_absent_ones_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(read_json::<ExitStatus>(&state.exit()).unwrap(), None);
        let exit = ExitStatus {
            code: 137,
            signal: Some(9),
            oom_killed: true,
            finished_at: jiff::Timestamp::now(),
        };
        write_json(&state.exit(), &exit).unwrap();
        assert_eq!(read_json::<ExitStatus>(&state.exit()).unwrap(), Some(exit));
        assert!(!dir.path().join("exit.json.tmp").exists());
    }
}
