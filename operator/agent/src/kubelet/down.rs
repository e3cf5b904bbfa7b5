//! `berth down`: stops the `berth up` of a data directory (found through the pid file it writes) and removes
//! every container, network namespace and Pod record the agent left there, then the node's Pod network (the
//! bridge, its veths, the nftables table and the address store). Images stay.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Config, Error, Layout};
use crate::net::Network;
use crate::runtime::{self, netns};

/// How long `berth up` may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    pub stopped_pid: Option<i32>,
    pub removed_containers: usize,
    /// The bridge removed, when the agent had set one up.
    pub removed_bridge: Option<String>,
}

/// The file `berth up` keeps its pid in.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("berth-up.pid")
}

/// Records this process as the data directory's `berth up`.
pub fn write_pid_file(data_dir: &Path) -> Result<(), Error> {
    let path = pid_file(data_dir);
    std::fs::write(&path, format!("{}\n", std::process::id())).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}

pub async fn down(data_dir: &Path) -> Result<DownReport, Error> {
    let mut report = DownReport {
        stopped_pid: stop_up(data_dir).await,
        ..DownReport::default()
    };
    let config = Config::new(data_dir, String::new());
    if config.runtime_root().exists() {
        let runtime = super::runtime(&config)?;
        for state in runtime.list().await? {
            match runtime.remove(&state.id).await {
                Ok(()) | Err(runtime::Error::NotFound(_)) => report.removed_containers += 1,
                Err(err) => tracing::warn!(id = %state.id, error = %err, "removing a container"),
            }
        }
    }
    let layout = Layout::new(data_dir);
    if let Ok(entries) = std::fs::read_dir(layout.netns_dir()) {
        for entry in entries.flatten() {
            if let Err(err) = netns::remove(&entry.path()) {
                tracing::warn!(error = %err, "removing a network namespace");
            }
        }
    }
    let saved = layout.load_network().map_err(|source| Error::Io {
        context: format!("reading {}", layout.network_file().display()),
        source,
    })?;
    if let Some(network) = saved {
        Network::teardown(&network).await?;
        report.removed_bridge = Some(network.bridge);
        let _ = std::fs::remove_file(layout.network_file());
    }
    let records = layout.pods();
    match std::fs::remove_dir_all(&records) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            context: format!("removing {}", records.display()),
            source: err,
        }),
        _ => Ok(report),
    }
}

/// SIGTERM to the recorded `berth up`, if it is still a berth process, and waits for it to go.
async fn stop_up(data_dir: &Path) -> Option<i32> {
    let path = pid_file(data_dir);
    let pid: i32 = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
    let _ = std::fs::remove_file(&path);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "berth" {
        return None;
    }
    kill(Pid::from_raw(pid), Signal::SIGTERM).ok()?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(pid)
}

/// Whether `pid` still runs (a zombie waiting for its parent does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}
