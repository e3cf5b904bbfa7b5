//! `create`: writes the bundle and the shim's config into a new state directory, starts the shim, and waits
//! for its one-line report: the container runs, or why it could not. A failed create leaves nothing behind.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::protocol::Ready;
use super::state::{ShimConfig, StateDir, write_json};
use super::{ContainerConfig, Error, Handle, Runtime, spec};

impl Runtime {
    /// Creates and starts a container; returns once its process runs (or with the reason it could not).
    #[tracing::instrument(skip_all, fields(container = %config.id))]
    pub async fn create(&self, config: ContainerConfig) -> Result<Handle, Error> {
        config.validate()?;
        let state = self.state_dir(&config.id)?;
        match tokio::fs::create_dir(state.path()).await {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(config.id));
            }
            Err(err) => {
                return Err(Error::io(format!("creating {}", state.path().display()))(
                    err,
                ));
            }
        }
        let result = self.start_shim(&config, &state).await;
        if result.is_err() {
            // The shim undid its own mounts and cgroup before it reported; only files are left.
            let _ = tokio::fs::remove_dir_all(state.path()).await;
        }
        result
    }

    async fn start_shim(
        &self,
        config: &ContainerConfig,
        state: &StateDir,
    ) -> Result<Handle, Error> {
        let cgroups_path = self.cgroup_path(&config.id);
        let spec = spec::build(
            config,
            &state.rootfs(),
            &cgroups_path,
            self.cgroup_version(),
        )?;
        let bundle = state.bundle();
        tokio::fs::create_dir(&bundle)
            .await
            .map_err(Error::io(format!("creating {}", bundle.display())))?;
        spec.save(bundle.join("config.json"))
            .map_err(|err| Error::InvalidConfig {
                id: config.id.clone(),
                reason: format!("writing the OCI spec: {err}"),
            })?;
        let log_path = config
            .log
            .path
            .clone()
            .unwrap_or_else(|| state.default_log());
        let shim_config = ShimConfig {
            id: config.id.clone(),
            lowerdirs: config.lowerdirs.clone(),
            tty: config.tty,
            stdin: config.stdin,
            log: super::LogConfig {
                path: Some(log_path.clone()),
                ..config.log.clone()
            },
            cgroups_path,
            seccomp: config.security.seccomp,
        };
        write_json(&state.shim_config(), &shim_config).map_err(Error::io(format!(
            "writing {}",
            state.shim_config().display()
        )))?;
        let shim_log = std::fs::File::create(state.shim_log()).map_err(Error::io(format!(
            "creating {}",
            state.shim_log().display()
        )))?;

        let mut child = tokio::process::Command::new(&self.config.shim_program)
            .arg("shim")
            .arg("--state-dir")
            .arg(state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .spawn()
            .map_err(Error::io(format!(
                "starting the shim {}",
                self.config.shim_program.display()
            )))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::Shim {
            id: config.id.clone(),
            reason: "no pipe to the shim".into(),
        })?;
        let mut line = String::new();
        let read = tokio::time::timeout(
            self.config.start_timeout,
            BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        // The process started is the shim's first half, which exits as soon as the shim has detached.
        let _ = child.wait().await;
        let failed = |reason: String| Error::StartFailed {
            id: config.id.clone(),
            reason,
        };
        match read {
            Err(_) => {
                return Err(failed(format!(
                    "no report from the shim within {:?}",
                    self.config.start_timeout
                )));
            }
            Ok(Err(err)) => return Err(failed(format!("reading the shim's report: {err}"))),
            Ok(Ok(_)) => {}
        }
        match serde_json::from_str::<Ready>(&line) {
            Ok(Ready::Started(started)) => {
                Ok(self.handle(&config.id, state.path(), started, log_path))
            }
            Ok(Ready::Failed(reason)) => Err(failed(reason)),
            Err(_) => {
                let diagnostics = std::fs::read_to_string(state.shim_log()).unwrap_or_default();
                Err(failed(format!(
                    "the shim ended without a report: {}",
                    diagnostics.lines().last().unwrap_or("(no diagnostics)")
                )))
            }
        }
    }
}
