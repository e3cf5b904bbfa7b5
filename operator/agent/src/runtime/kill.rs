//! `kill`, `wait` and `stop` (SIGTERM, a grace period, then SIGKILL), through the shim's control socket: the
//! shim is the container's parent, so the pid it signals cannot have been reused by another process.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::protocol::{Request, Response, request};
use super::state::{ExitStatus, read_json};
use super::{Error, Runtime};

impl Runtime {
    /// Sends `signal` to the container's init process.
    #[tracing::instrument(skip(self))]
    pub async fn kill(&self, id: &str, signal: Signal) -> Result<(), Error> {
        let state = self.state_dir(id)?;
        match request(
            &state.socket(),
            &Request::Kill {
                signal: signal as i32,
            },
        )
        .await
        {
            Ok(Response::Done) => Ok(()),
            Ok(Response::Error(reason)) => Err(Error::Shim {
                id: id.to_string(),
                reason,
            }),
            Ok(other) => Err(Error::Shim {
                id: id.to_string(),
                reason: format!("unexpected answer {other:?}"),
            }),
            Err(_) if !state.path().exists() => Err(Error::NotFound(id.to_string())),
            Err(_) => Err(Error::NotRunning(id.to_string())),
        }
    }

    /// Waits until the container has exited (and its cgroup is gone), and returns how it ended.
    #[tracing::instrument(skip(self))]
    pub async fn wait(&self, id: &str) -> Result<ExitStatus, Error> {
        let state = self.state_dir(id)?;
        let answer = request(&state.socket(), &Request::Wait).await;
        if let Ok(Response::Exited(exit)) = answer {
            return Ok(exit);
        }
        // No shim (any more): it records the exit before it closes its socket.
        match read_json::<ExitStatus>(&state.exit()) {
            Ok(Some(exit)) => Ok(exit),
            Ok(None) if !state.path().exists() => Err(Error::NotFound(id.to_string())),
            Ok(None) => Err(Error::ShimLost {
                id: id.to_string(),
                reason: match answer {
                    Ok(other) => format!("unexpected answer {other:?}"),
                    Err(err) => err.to_string(),
                },
            }),
            Err(err) => Err(Error::io(format!("reading {}", state.exit().display()))(
                err,
            )),
        }
    }

    /// Stops the container as the kubelet does: SIGTERM, then SIGKILL if it is still running after `grace`.
    #[tracing::instrument(skip(self))]
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<ExitStatus, Error> {
        match self.kill(id, Signal::SIGTERM).await {
            Ok(()) | Err(Error::NotRunning(_)) => {}
            Err(err) => return Err(err),
        }
        if let Ok(exit) = tokio::time::timeout(grace, self.wait(id)).await {
            return exit;
        }
        tracing::info!(?grace, "still running after the grace period: SIGKILL");
        match self.kill(id, Signal::SIGKILL).await {
            Ok(()) | Err(Error::NotRunning(_)) => {}
            Err(err) => return Err(err),
        }
        self.wait(id).await
    }
}
