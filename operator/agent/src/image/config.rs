//! The image config the kubelet logic needs (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts), and
//! the rule by which Kubernetes combines it with a container's `command` and `args`.

use std::collections::BTreeMap;

use oci_client::config::ConfigFile;

use super::ImageError;

/// The execution defaults an image carries (the `config` object of an OCI or Docker image config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries, in image order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as the image says; resolved against the container's
    /// `/etc/passwd` by the runtime.
    pub user: Option<String>,
    /// `port/proto` keys, sorted.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    /// Parses an image config blob.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ImageError> {
        Ok(Self::from_file(&parse_config_file(bytes)?))
    }

    pub(crate) fn from_file(file: &ConfigFile) -> Self {
        let Some(config) = &file.config else {
            return ImageConfig::default();
        };
        let mut exposed_ports: Vec<String> =
            config.exposed_ports.iter().flatten().cloned().collect();
        exposed_ports.sort();
        ImageConfig {
            entrypoint: config.entrypoint.clone().unwrap_or_default(),
            cmd: config.cmd.clone().unwrap_or_default(),
            env: config.env.clone().unwrap_or_default(),
            working_dir: config.working_dir.clone().filter(|dir| !dir.is_empty()),
            user: config.user.clone().filter(|user| !user.is_empty()),
            exposed_ports,
            labels: config
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            stop_signal: config.stop_signal.clone(),
        }
    }

    /// The argv a container runs, combining this config with the container's `command` and `args` the way
    /// Kubernetes does: `command` replaces Entrypoint and drops Cmd; `args` alone replace Cmd.
    /// An empty result means neither the image nor the Pod says what to run.
    pub fn argv(&self, command: &[String], args: &[String]) -> Vec<String> {
        let (entrypoint, cmd) = match (command.is_empty(), args.is_empty()) {
            (false, _) => (command, args),
            (true, false) => (self.entrypoint.as_slice(), args),
            (true, true) => (self.entrypoint.as_slice(), self.cmd.as_slice()),
        };
        entrypoint.iter().chain(cmd).cloned().collect()
    }
}

pub(crate) fn parse_config_file(bytes: &[u8]) -> Result<ConfigFile, ImageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Format(format!("image config is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: strings(&["/entry", "-x"]),
            cmd: strings(&["serve", "--port=80"]),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn no_command_and_no_args_run_entrypoint_then_cmd() {
        assert_eq!(
            image().argv(&[], &[]),
            strings(&["/entry", "-x", "serve", "--port=80"])
        );
    }

    #[test]
    fn command_replaces_entrypoint_and_drops_cmd() {
        assert_eq!(
            image().argv(&strings(&["/bin/sh"]), &[]),
            strings(&["/bin/sh"])
        );
    }

    #[test]
    fn command_and_args_replace_both() {
        assert_eq!(
            image().argv(&strings(&["/bin/sh"]), &strings(&["-c", "true"])),
            strings(&["/bin/sh", "-c", "true"])
        );
    }

    #[test]
    fn args_alone_replace_cmd_and_keep_entrypoint() {
        assert_eq!(
            image().argv(&[], &strings(&["migrate"])),
            strings(&["/entry", "-x", "migrate"])
        );
    }

    #[test]
    fn an_image_without_entrypoint_runs_args_as_the_command() {
        let config = ImageConfig {
            cmd: strings(&["sh"]),
            ..ImageConfig::default()
        };
        assert_eq!(
            config.argv(&[], &strings(&["ls", "/"])),
            strings(&["ls", "/"])
        );
    }

    #[test]
    fn docker_style_config_parses() {
        let json = br#"{
            "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z",
            "config": {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
                       "Env": ["PATH=/usr/bin", "NGINX_VERSION=1.25"], "WorkingDir": "/srv", "User": "101:101",
                       "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}, "Labels": {"a": "b"}, "StopSignal": "SIGQUIT"},
            "rootfs": {"type": "layers", "diff_ids": []},
            "container_config": {"Hostname": "ignored"}
        }"#;
        let config = ImageConfig::from_json(json).unwrap();
        assert_eq!(config.entrypoint, strings(&["/docker-entrypoint.sh"]));
        assert_eq!(config.cmd, strings(&["nginx", "-g", "daemon off;"]));
        assert_eq!(
            config.env,
            strings(&["PATH=/usr/bin", "NGINX_VERSION=1.25"])
        );
        assert_eq!(config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(config.user.as_deref(), Some("101:101"));
        assert_eq!(config.exposed_ports, strings(&["443/tcp", "80/tcp"]));
        assert_eq!(config.stop_signal.as_deref(), Some("SIGQUIT"));
    }

    #[test]
    fn a_config_without_execution_defaults_is_empty() {
        let json = br#"{"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}"#;
        assert_eq!(
            ImageConfig::from_json(json).unwrap(),
            ImageConfig::default()
        );
    }
}
