//! `exec`: a new process in a running container (`kubectl exec`), started by the container's shim with
//! libcontainer's tenant support. The agent hands the shim the process's stdio (pipes) over the control
//! socket, or gets the PTY master back; the connection then reports the process's exit.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use tokio::io::BufReader;

use super::protocol::{Request, Response, read_exit, recv_with_fd, send_with_fds};
use super::state::ExitStatus;
use super::{Error, Runtime, tty};

/// A process started by [`Runtime::exec`]. Like `std::process::Child`, take the streams you use; dropping
/// `stdin` closes the process's stdin.
pub struct ExecProcess {
    /// In the host's pid namespace.
    pub pid: i32,
    /// The process's stdin (write end of a pipe), or the PTY master with a TTY.
    pub stdin: Option<OwnedFd>,
    /// Its stdout (read end of a pipe), or the PTY master with a TTY.
    pub stdout: Option<OwnedFd>,
    /// Its stderr; `None` with a TTY, where it shares the terminal.
    pub stderr: Option<OwnedFd>,
    /// The process's terminal, to resize it; `None` without a TTY.
    pub terminal: Option<tty::Terminal>,
    id: String,
    control: BufReader<tokio::net::UnixStream>,
}

impl ExecProcess {
    /// Waits for the process to exit.
    pub async fn wait(mut self) -> Result<ExitStatus, Error> {
        read_exit(&mut self.control)
            .await
            .map_err(|reason| Error::Shim {
                id: self.id.clone(),
                reason,
            })
    }
}

impl Runtime {
    /// Starts `args` in the running container `id`, as the container's user, with its capabilities and
    /// seccomp profile, optionally on a new TTY.
    #[tracing::instrument(skip(self))]
    pub async fn exec(&self, id: &str, args: Vec<String>, tty: bool) -> Result<ExecProcess, Error> {
        let state = self.state_dir(id)?;
        let socket = state.socket();
        let id_owned = id.to_string();
        let started = tokio::task::spawn_blocking(move || start(&id_owned, &socket, args, tty))
            .await
            .map_err(|err| Error::io("exec")(std::io::Error::other(err)))??;
        let (stream, pid, stdin, stdout, stderr, pty) = started;
        Ok(ExecProcess {
            pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr,
            terminal: pty.map(tty::Terminal::new),
            id: id.to_string(),
            control: BufReader::new(super::control_stream(stream)?),
        })
    }
}

type Started = (
    UnixStream,
    i32,
    OwnedFd,
    OwnedFd,
    Option<OwnedFd>,
    Option<OwnedFd>,
);

/// The blocking half: descriptors travel as SCM_RIGHTS, which tokio's sockets do not carry.
fn start(
    id: &str,
    socket: &std::path::Path,
    args: Vec<String>,
    tty: bool,
) -> Result<Started, Error> {
    let shim_error = |reason: String| Error::Shim {
        id: id.to_string(),
        reason,
    };
    let stream = UnixStream::connect(socket).map_err(|_| Error::NotRunning(id.to_string()))?;
    let request = Request::Exec { args, tty };
    let mut ours = None;
    let sent = if tty {
        send_with_fds(&stream, &request, &[])
    } else {
        let (stdin_read, stdin_write) = super::pipe()?;
        let (stdout_read, stdout_write) = super::pipe()?;
        let (stderr_read, stderr_write) = super::pipe()?;
        let fds = [
            stdin_read.as_raw_fd(),
            stdout_write.as_raw_fd(),
            stderr_write.as_raw_fd(),
        ];
        let sent = send_with_fds(&stream, &request, &fds);
        // The container's ends are the shim's now; dropping ours lets the readers see EOF at exit.
        ours = Some((stdin_write, stdout_read, stderr_read));
        sent
    };
    sent.map_err(|err| shim_error(format!("sending the exec request: {err}")))?;
    let (answer, master) = recv_with_fd(&stream)
        .map_err(|err| shim_error(format!("reading the exec answer: {err}")))?;
    let pid = match answer {
        Response::ExecStarted { pid } => pid,
        Response::Error(reason) => return Err(shim_error(reason)),
        other => return Err(shim_error(format!("unexpected answer {other:?}"))),
    };
    match (ours, master) {
        (Some((stdin, stdout, stderr)), _) => Ok((stream, pid, stdin, stdout, Some(stderr), None)),
        (None, Some(master)) => {
            let dup = || {
                master
                    .try_clone()
                    .map_err(Error::io("duplicating the PTY master"))
            };
            let (stdin, pty) = (dup()?, dup()?);
            Ok((stream, pid, stdin, master, None, Some(pty)))
        }
        (None, None) => Err(shim_error("no PTY came with the answer".into())),
    }
}
