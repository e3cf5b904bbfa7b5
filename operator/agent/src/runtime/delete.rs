//! `remove`: kills the container if it still runs, lets its shim delete the cgroup and exit (its mount namespace,
//! and with it the rootfs mount, goes with it), cleans up after a shim that died, and removes the state
//! directory. Afterwards nothing of the container is left: no process, mount, cgroup or file.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;

use super::protocol::{Request, Response, request};
use super::{Error, Runtime};

/// How long a killed container and its shim may take to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(30);

impl Runtime {
    /// Removes the container, running or not.
    #[tracing::instrument(skip(self))]
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let state = self.state_dir(id)?;
        if !state.path().exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        if let Ok(Response::Running { .. }) = request(&state.socket(), &Request::Ping).await {
            let started = self.state(id).await?.handle;
            let shim = started.and_then(|h| pidfd(h.shim_pid));
            match self.kill(id, Signal::SIGKILL).await {
                Ok(()) | Err(Error::NotRunning(_)) => {}
                Err(err) => return Err(err),
            }
            let waited = tokio::time::timeout(KILL_TIMEOUT, async {
                let _ = self.wait(id).await;
                if let Some(shim) = shim {
                    let _ = shim.readable().await;
                }
            })
            .await;
            if waited.is_err() {
                tracing::warn!("the shim did not exit after SIGKILL; removing what it left");
            }
        }
        // Normally the shim has removed the cgroup; after a lost shim its processes may still be there.
        let cgroups = self.cgroups.clone();
        let cgroup_path = self.cgroup_path(id);
        let dir = state.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            cgroups
                .kill_and_remove(&cgroup_path)
                .map_err(Error::io(format!(
                    "removing the cgroup {}",
                    cgroup_path.display()
                )))?;
            match std::fs::remove_dir_all(&dir) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(format!("removing {}", dir.display()))(err))
                }
                _ => Ok(()),
            }
        })
        .await
        .map_err(|err| Error::io("removing the container")(std::io::Error::other(err)))?
    }
}

/// A pidfd for the shim, readable once it has exited (it is not the agent's child, so it cannot be waited for).
fn pidfd(pid: i32) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created for us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged for the AsyncFd's lifetime.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
}
