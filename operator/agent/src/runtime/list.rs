//! `state` and `list`: what each state directory says, checked against its shim. This is how a restarted agent
//! re-adopts running containers: same pids, nothing restarted.

use super::protocol::{Request, Response, request};
use super::state::{ExitStatus, ShimConfig, Started, read_json};
use super::{ContainerState, Error, Runtime, Status};

impl Runtime {
    /// The container's current state.
    pub async fn state(&self, id: &str) -> Result<ContainerState, Error> {
        let state = self.state_dir(id)?;
        let read_error =
            |path: std::path::PathBuf| Error::io(format!("reading {}", path.display()));
        let Some(shim_config) = read_json::<ShimConfig>(&state.shim_config())
            .map_err(read_error(state.shim_config()))?
        else {
            return Err(Error::NotFound(id.to_string()));
        };
        let log_path = shim_config.log.path.unwrap_or_else(|| state.default_log());
        let started =
            read_json::<Started>(&state.started()).map_err(read_error(state.started()))?;
        let Some(started) = started else {
            return Ok(ContainerState {
                id: id.to_string(),
                handle: None,
                status: Status::Creating,
            });
        };
        let handle = Some(self.handle(id, state.path(), started, log_path));
        let exited = || read_json::<ExitStatus>(&state.exit()).map_err(read_error(state.exit()));
        if let Some(exit) = exited()? {
            return Ok(ContainerState {
                id: id.to_string(),
                handle,
                status: Status::Exited(exit),
            });
        }
        let status = match request(&state.socket(), &Request::Ping).await {
            Ok(Response::Running { .. }) => Status::Running,
            // Between the container's exit and the shim's exit the socket may close first.
            answer => match exited()? {
                Some(exit) => Status::Exited(exit),
                None => Status::Unknown(match answer {
                    Ok(other) => format!("unexpected answer {other:?}"),
                    Err(err) => format!("shim unreachable: {err}"),
                }),
            },
        };
        Ok(ContainerState {
            id: id.to_string(),
            handle,
            status,
        })
    }

    /// Every container under the runtime's root, running or not, sorted by id.
    pub async fn list(&self) -> Result<Vec<ContainerState>, Error> {
        let root = &self.config.root;
        let mut entries = tokio::fs::read_dir(root)
            .await
            .map_err(Error::io(format!("listing {}", root.display())))?;
        let mut ids = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(Error::io(format!("listing {}", root.display())))?
        {
            if let Some(id) = entry.file_name().to_str()
                && super::config::validate_id(id).is_ok()
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        let mut states = Vec::with_capacity(ids.len());
        for id in ids {
            match self.state(&id).await {
                Ok(state) => states.push(state),
                // Removed (or half-created and cleaned up) while we looked.
                Err(Error::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(states)
    }
}
