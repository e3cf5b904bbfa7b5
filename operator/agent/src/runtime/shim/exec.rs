//! `exec` inside the shim: libcontainer's tenant builder joins a new process to the running container's
//! namespaces and cgroup, with the container's user, capabilities, no_new_privs and seccomp profile (the
//! process spec is the container's own with other args). The process is the shim's child: the serve loop
//! reaps it and answers the agent's connection with its exit.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;
use seccompiler::BpfProgram;

use super::ShimError;
use super::create::receive_pty_master;
use crate::runtime::seccomp::SeccompExecutor;
use crate::runtime::state::{LIBCONTAINER_ID, StateDir};

/// Starts `args` in the container. `stdio` (stdin, stdout, stderr) is used without a TTY; with one, the PTY
/// master is returned.
pub(super) fn exec(
    state: &StateDir,
    filters: &[BpfProgram],
    args: Vec<String>,
    tty: bool,
    stdio: Vec<OwnedFd>,
    serial: u64,
) -> Result<(Pid, Option<OwnedFd>), ShimError> {
    if args.is_empty() {
        return Err(ShimError::Config("exec needs a command".into()));
    }
    let spec = Spec::load(state.bundle().join("config.json"))
        .map_err(|err| ShimError::Config(format!("reading the container's spec: {err}")))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| ShimError::Config("the container's spec has no process".into()))?;
    process.set_args(Some(args)).set_terminal(Some(tty));
    let process_file = state.path().join(format!("exec-{serial}.json"));
    let socket_path = state.path().join(format!("exec-{serial}.sock"));
    let cleanup = || {
        let _ = std::fs::remove_file(&process_file);
        let _ = std::fs::remove_file(&socket_path);
    };
    let result = (|| {
        let file = std::fs::File::create(&process_file)
            .map_err(ShimError::io(format!("writing {}", process_file.display())))?;
        serde_json::to_writer(file, &process)
            .map_err(|err| ShimError::Config(format!("writing the exec process: {err}")))?;
        let mut builder =
            ContainerBuilder::new(LIBCONTAINER_ID.to_string(), SyscallType::default())
                .with_root_path(state.path())?
                .with_executor(SeccompExecutor::new(filters.to_vec()));
        let mut console = None;
        if tty {
            let listener = UnixListener::bind(&socket_path)
                .map_err(ShimError::io(format!("binding {}", socket_path.display())))?;
            builder = builder.with_console_socket(Some(&socket_path));
            console = Some(listener);
        } else {
            let [stdin, stdout, stderr]: [OwnedFd; 3] = stdio.try_into().map_err(|_| {
                ShimError::Config("exec without a TTY needs stdin, stdout and stderr".into())
            })?;
            builder = builder
                .with_stdin(stdin)
                .with_stdout(stdout)
                .with_stderr(stderr);
        }
        let pid = builder
            .as_tenant()
            .with_process(Some(&process_file))
            .with_detach(true)
            .build()?;
        let master = match &console {
            Some(listener) => Some(receive_pty_master(listener)?),
            None => None,
        };
        Ok((pid, master))
    })();
    cleanup();
    result
}
