//! `exec`: a new process joins the running container. The monitor does not run libcontainer itself (it would
//! keep the pages and heap that costs); it starts a short-lived helper, this binary as `shim --state-dir DIR
//! --exec FD`, that builds the process with libcontainer's tenant builder (the container's namespaces,
//! cgroup, user, capabilities, no_new_privs and seccomp profile; the process spec is the container's own with
//! other args), answers on the socket `FD` and exits. The process was the helper's child; it is reparented to
//! the monitor (a child subreaper), whose serve loop reaps it and answers the agent's connection with its exit.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::unistd::Pid;

use super::ShimError;
use super::create::receive_pty_master;
use crate::runtime::protocol::{Request, Response, recv_with_fd, send_with_fds};
use crate::runtime::seccomp::{SeccompExecutor, default_profile};
use crate::runtime::state::{LIBCONTAINER_ID, ShimConfig, StateDir, read_json};

/// How long the helper may take to start the process (libcontainer takes tens of milliseconds).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The monitor's side: starts `args` in the container through a helper. `stdio` (stdin, stdout, stderr)
/// is used without a TTY; with one, the PTY master is returned.
pub(super) fn spawn(
    state: &StateDir,
    args: Vec<String>,
    tty: bool,
    stdio: Vec<OwnedFd>,
) -> Result<(Pid, Option<OwnedFd>), ShimError> {
    if args.is_empty() {
        return Err(ShimError::Config("exec needs a command".into()));
    }
    let (ours, theirs) = UnixStream::pair().map_err(ShimError::io("socketpair"))?;
    let theirs_fd = theirs.as_raw_fd();
    let argv = super::phase_args(state, "--exec", &theirs_fd.to_string());
    let mut command = Command::new(super::self_exe());
    command.arg0(&argv[0]).args(&argv[1..]);
    if tty {
        command.stdin(Stdio::null()).stdout(Stdio::null());
    } else {
        // The helper's stdio is the process's: libcontainer hands it on.
        let [stdin, stdout, stderr]: [OwnedFd; 3] = stdio.try_into().map_err(|_| {
            ShimError::Config("exec without a TTY needs stdin, stdout and stderr".into())
        })?;
        command
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
    }
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl, which is
    // async-signal-safe; it keeps the helper's end of the socket across the exec.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The helper is the monitor's child: the serve loop reaps it with the rest.
    command
        .spawn()
        .map_err(ShimError::io("starting the exec helper"))?;
    drop(theirs);
    ours.set_read_timeout(Some(HELPER_TIMEOUT))
        .map_err(ShimError::io("exec helper socket"))?;
    send_with_fds(&ours, &Request::Exec { args, tty }, &[])
        .map_err(ShimError::io("sending the exec to its helper"))?;
    let (answer, master) =
        recv_with_fd(&ours).map_err(ShimError::io("reading the exec helper's answer"))?;
    match (answer, master) {
        (Response::ExecStarted { pid }, master) if master.is_some() || !tty => {
            Ok((Pid::from_raw(pid), master))
        }
        (Response::Error(reason), _) => Err(ShimError::Config(reason)),
        (other, _) => Err(ShimError::Config(format!(
            "unexpected answer from the exec helper: {other:?}"
        ))),
    }
}

/// The helper's entry (`shim --state-dir DIR --exec FD`): reads the one `Exec` request on `FD`, starts the
/// process and answers (with the PTY master if it has a TTY).
pub(super) fn run_helper(state: &StateDir, fd: &std::ffi::OsStr) -> ExitCode {
    super::init_tracing(&state.shim_log(), super::LOG_FILTER);
    let span = tracing::info_span!("shim-exec", dir = %state.path().display());
    let _enter = span.enter();
    let Some(fd) = fd.to_str().and_then(|fd| fd.parse::<RawFd>().ok()) else {
        tracing::error!(?fd, "the exec helper needs a descriptor number");
        return ExitCode::FAILURE;
    };
    if let Err(err) = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
        tracing::error!(%err, fd, "the exec helper's socket");
        return ExitCode::FAILURE;
    }
    // SAFETY: the monitor handed this open socket over (fcntl just succeeded on it); nothing else owns it.
    let socket = unsafe { UnixStream::from_raw_fd(fd) };
    let (answer, master) =
        match read_request(&socket).and_then(|(args, tty)| exec(state, args, tty)) {
            Ok((pid, master)) => (Response::ExecStarted { pid: pid.as_raw() }, master),
            Err(err) => (Response::Error(format!("exec: {err}")), None),
        };
    let fds: Vec<RawFd> = master.iter().map(AsRawFd::as_raw_fd).collect();
    match send_with_fds(&socket, &answer, &fds) {
        Ok(()) if matches!(answer, Response::ExecStarted { .. }) => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
        Err(err) => {
            tracing::error!(%err, "answering the monitor");
            ExitCode::FAILURE
        }
    }
}

fn read_request(socket: &UnixStream) -> Result<(Vec<String>, bool), ShimError> {
    socket
        .set_read_timeout(Some(HELPER_TIMEOUT))
        .map_err(ShimError::io("exec helper socket"))?;
    let mut line = String::new();
    BufReader::new(socket)
        .read_line(&mut line)
        .map_err(ShimError::io("reading the exec request"))?;
    match serde_json::from_str(&line) {
        Ok(Request::Exec { args, tty }) => Ok((args, tty)),
        Ok(other) => Err(ShimError::Config(format!("the exec helper got {other:?}"))),
        Err(err) => Err(ShimError::Config(format!("bad exec request: {err}"))),
    }
}

/// Starts `args` in the container with the helper's own stdio (without a TTY), or on a new PTY whose master
/// is returned.
fn exec(
    state: &StateDir,
    args: Vec<String>,
    tty: bool,
) -> Result<(Pid, Option<OwnedFd>), ShimError> {
    if args.is_empty() {
        return Err(ShimError::Config("exec needs a command".into()));
    }
    let config = read_json::<ShimConfig>(&state.shim_config())
        .map_err(ShimError::io("reading the shim config"))?
        .ok_or_else(|| {
            ShimError::Config(format!("{} is missing", state.shim_config().display()))
        })?;
    let filters = if config.seccomp {
        default_profile()?
    } else {
        Vec::new()
    };
    let spec = Spec::load(state.bundle().join("config.json"))
        .map_err(|err| ShimError::Config(format!("reading the container's spec: {err}")))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| ShimError::Config("the container's spec has no process".into()))?;
    process.set_args(Some(args)).set_terminal(Some(tty));
    // The helper's pid names its files: helpers may run one after another while an old one lingers.
    let serial = std::process::id();
    let process_file = state.path().join(format!("exec-{serial}.json"));
    let socket_path = state.path().join(format!("exec-{serial}.sock"));
    let result = (|| {
        let mut file = std::fs::File::create(&process_file)
            .map_err(ShimError::io(format!("writing {}", process_file.display())))?;
        serde_json::to_writer(&mut file, &process)
            .map_err(|err| ShimError::Config(format!("writing the exec process: {err}")))?;
        file.flush()
            .map_err(ShimError::io(format!("writing {}", process_file.display())))?;
        let mut builder =
            ContainerBuilder::new(LIBCONTAINER_ID.to_string(), SyscallType::default())
                .with_root_path(state.path())?
                .with_executor(SeccompExecutor::new(filters));
        let mut console = None;
        if tty {
            let listener = UnixListener::bind(&socket_path)
                .map_err(ShimError::io(format!("binding {}", socket_path.display())))?;
            builder = builder.with_console_socket(Some(&socket_path));
            console = Some(listener);
        } else {
            let own = |fd: std::os::fd::BorrowedFd<'_>| {
                fd.try_clone_to_owned()
                    .map_err(ShimError::io("duplicating the exec's stdio"))
            };
            builder = builder
                .with_stdin(own(std::io::stdin().as_fd())?)
                .with_stdout(own(std::io::stdout().as_fd())?)
                .with_stderr(own(std::io::stderr().as_fd())?);
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
    let _ = std::fs::remove_file(&process_file);
    let _ = std::fs::remove_file(&socket_path);
    result
}
