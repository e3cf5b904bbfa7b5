//! What the agent asks the runtime for: one container's configuration, in the agent's terms (Pod fields already
//! resolved), validated here before anything touches the host. `spec.rs` turns it into an OCI runtime spec.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Error;

/// Default `PATH` when the caller gives none (Docker's and containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One container to create and start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Unique on this node: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`. Names the state directory and the cgroup.
    pub id: String,
    /// Unpacked image layers, bottom first. They are never written: an overlayfs upper layer in the state
    /// directory takes the container's writes. One directory is a ready rootfs.
    pub lowerdirs: Vec<PathBuf>,
    /// The process to run: `args[0]` is looked up in the `PATH` of `env` inside the rootfs.
    pub args: Vec<String>,
    /// Environment, in order. `PATH` defaults to [`DEFAULT_PATH`].
    pub env: Vec<(String, String)>,
    /// Working directory inside the container; `/` when empty.
    pub cwd: Option<PathBuf>,
    pub user: User,
    /// The UTS hostname; the id when empty.
    pub hostname: Option<String>,
    /// Bind mounts (volumes), in order.
    pub mounts: Vec<Mount>,
    /// A network namespace to join (one per Pod, see [`super::netns`]); a new empty one when `None`.
    pub netns: Option<PathBuf>,
    pub resources: Resources,
    pub security: Security,
    /// Allocate a PTY for the process (`tty: true`); its output is logged as stdout.
    pub tty: bool,
    /// Keep the process's stdin open (`stdin: true`) for attach; `/dev/null` otherwise.
    pub stdin: bool,
    pub log: LogConfig,
}

/// The identity the process runs as (`runAsUser`, `runAsGroup`, `supplementalGroups`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: PathBuf,
    pub read_only: bool,
}

/// cgroup limits, applied through libcontainer on cgroup v1 and v2 alike. `None` leaves a resource unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes (`resources.limits.memory`).
    pub memory_limit: Option<i64>,
    /// Relative CPU weight in v1 shares (`resources.requests.cpu` × 1024); converted to `cpu.weight` on v2.
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per `cpu_period` (`resources.limits.cpu`).
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (100 000 when a quota is set without one).
    pub cpu_period: Option<u64>,
    /// Maximum number of processes and threads.
    pub pids_limit: Option<i64>,
}

/// The `securityContext` fields the runtime honours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Security {
    pub read_only_rootfs: bool,
    /// Capability names to add to / drop from Docker's default set, with or without the `CAP_` prefix;
    /// `ALL` in `drop` starts from an empty set.
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    /// Apply berth's default seccomp profile (`RuntimeDefault`). It implies no_new_privs: the profile is
    /// installed after capabilities are dropped, which the kernel allows only to processes with no_new_privs.
    pub seccomp: bool,
    /// Set no_new_privs (`allowPrivilegeEscalation: false`); forced on while `seccomp` is on.
    pub no_new_privileges: bool,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            read_only_rootfs: false,
            capabilities_add: Vec::new(),
            capabilities_drop: Vec::new(),
            seccomp: true,
            no_new_privileges: true,
        }
    }
}

/// Where the container's output goes, in the CRI log format, and when the file is rotated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogConfig {
    /// The log file; `container.log` in the state directory when `None` (removed with the container).
    pub path: Option<PathBuf>,
    /// Rotate once the file reaches this many bytes (kubelet's `containerLogMaxSize`, 10 MiB).
    pub max_size: u64,
    /// Files kept, the live one included (kubelet's `containerLogMaxFiles`, 5): `path`, `path.1` … `path.N-1`.
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

impl ContainerConfig {
    /// A container running `args` on `lowerdirs` with every other field at its default.
    pub fn new(id: impl Into<String>, lowerdirs: Vec<PathBuf>, args: Vec<String>) -> Self {
        Self {
            id: id.into(),
            lowerdirs,
            args,
            ..Self::default()
        }
    }

    /// Checks what can be checked without touching the host, so that a bad config fails before any process,
    /// mount or cgroup exists.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Error::InvalidConfig {
            id: self.id.clone(),
            reason,
        };
        validate_id(&self.id)?;
        if self.lowerdirs.is_empty() {
            return Err(invalid("no rootfs: lowerdirs is empty".into()));
        }
        for dir in &self.lowerdirs {
            if !dir.is_absolute() {
                return Err(invalid(format!(
                    "lowerdir {} is not absolute",
                    dir.display()
                )));
            }
            // overlayfs separates lowerdirs with ':' and options with ','.
            let text = dir.to_string_lossy();
            if text.contains([':', ',']) {
                return Err(invalid(format!("lowerdir {text} contains ':' or ','")));
            }
        }
        if self.args.is_empty() {
            return Err(invalid("no command: args is empty".into()));
        }
        for (name, _) in &self.env {
            if name.is_empty() || name.contains('=') {
                return Err(invalid(format!(
                    "environment variable name {name:?} is not valid"
                )));
            }
        }
        if let Some(cwd) = &self.cwd
            && !cwd.as_os_str().is_empty()
            && !cwd.is_absolute()
        {
            return Err(invalid(format!(
                "working directory {} is not absolute",
                cwd.display()
            )));
        }
        for mount in &self.mounts {
            if !mount.destination.is_absolute() || !mount.source.is_absolute() {
                return Err(invalid(format!(
                    "mount {} -> {}: both paths must be absolute",
                    mount.source.display(),
                    mount.destination.display()
                )));
            }
        }
        if self.log.max_files == 0 || self.log.max_size == 0 {
            return Err(invalid(
                "log max_size and max_files must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Container ids name directories and cgroups: keep them to a safe alphabet and a length that fits a unix
/// socket path under the state root.
pub(crate) fn validate_id(id: &str) -> Result<(), Error> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'_' | b'.' | b'-')));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            id: id.to_string(),
            reason: "the id must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig::new("c1", vec!["/layers/a".into()], vec!["true".into()])
    }

    #[test]
    fn a_minimal_config_is_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn ids_that_could_escape_the_state_root_are_refused() {
        for id in ["", "../x", "a/b", ".hidden", "-x", &"a".repeat(65)] {
            assert!(validate_id(id).is_err(), "{id:?} accepted");
        }
        validate_id("pod-1_web.0").unwrap();
    }

    #[test]
    fn lowerdirs_that_break_overlay_options_are_refused() {
        let mut c = config();
        c.lowerdirs = vec!["/a:b".into()];
        assert!(c.validate().is_err());
        c.lowerdirs = vec!["relative".into()];
        assert!(c.validate().is_err());
        c.lowerdirs = vec![];
        assert!(c.validate().is_err());
    }

    #[test]
    fn empty_args_and_bad_env_names_are_refused() {
        let mut c = config();
        c.args.clear();
        assert!(c.validate().is_err());
        let mut c = config();
        c.env.push(("A=B".into(), "x".into()));
        assert!(c.validate().is_err());
    }
}
