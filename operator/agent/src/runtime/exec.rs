//! `exec`: a new process in a running container (`kubectl exec`), started by the container's shim with
//! libcontainer's tenant support. The agent hands the shim the process's stdio (pipes) over the control
//! socket, or gets the PTY master back; the connection then reports the process's exit.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::unistd::pipe2;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::protocol::{Request, Response};
use super::state::ExitStatus;
use super::{Error, Runtime};

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
    id: String,
    control: BufReader<tokio::net::UnixStream>,
}

impl ExecProcess {
    /// Waits for the process to exit.
    pub async fn wait(mut self) -> Result<ExitStatus, Error> {
        let mut line = String::new();
        let lost = |reason: String| Error::Shim {
            id: self.id.clone(),
            reason,
        };
        self.control
            .read_line(&mut line)
            .await
            .map_err(|err| lost(format!("waiting for the exec'd process: {err}")))?;
        match serde_json::from_str::<Response>(&line) {
            Ok(Response::Exited(exit)) => Ok(exit),
            Ok(other) => Err(lost(format!("unexpected answer {other:?}"))),
            Err(_) if line.is_empty() => {
                Err(lost("the shim hung up before the process exited".into()))
            }
            Err(err) => Err(lost(format!("bad answer: {err}"))),
        }
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
        let (stream, pid, stdin, stdout, stderr) = started;
        stream
            .set_nonblocking(true)
            .map_err(Error::io("exec control socket"))?;
        let stream =
            tokio::net::UnixStream::from_std(stream).map_err(Error::io("exec control socket"))?;
        Ok(ExecProcess {
            pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr,
            id: id.to_string(),
            control: BufReader::new(stream),
        })
    }
}

type Started = (UnixStream, i32, OwnedFd, OwnedFd, Option<OwnedFd>);

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
    let mut line = serde_json::to_vec(&Request::Exec { args, tty })
        .map_err(|err| shim_error(err.to_string()))?;
    line.push(b'\n');
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("exec pipe")(e.into()));
    let mut ours = None;
    let sent = if tty {
        sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&line)],
            &[],
            MsgFlags::empty(),
            None,
        )
    } else {
        let (stdin_read, stdin_write) = pipe()?;
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let fds = [
            stdin_read.as_raw_fd(),
            stdout_write.as_raw_fd(),
            stderr_write.as_raw_fd(),
        ];
        let sent = sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&line)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        );
        // The container's ends are the shim's now; dropping ours lets the readers see EOF at exit.
        ours = Some((stdin_write, stdout_read, stderr_read));
        sent
    };
    match sent {
        Ok(n) if n == line.len() => {}
        Ok(_) => return Err(shim_error("the exec request was cut short".into())),
        Err(err) => return Err(shim_error(format!("sending the exec request: {err}"))),
    }

    // The answer: one line, with the PTY master attached when there is a TTY. Read a byte at a time: the
    // `Exited` line may follow at once, and it belongs to `ExecProcess::wait`.
    let mut answer = Vec::new();
    let mut master = None;
    while !answer.ends_with(b"\n") {
        let mut buf = [0u8; 1];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|err| shim_error(format!("reading the exec answer: {err}")))?;
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for fd in fds {
                        // SAFETY: the kernel installed this descriptor for us; nothing else owns it.
                        master = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
        }
        let n = message.bytes;
        if n == 0 {
            return Err(shim_error("the shim hung up".into()));
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let pid = match serde_json::from_slice::<Response>(&answer) {
        Ok(Response::ExecStarted { pid }) => pid,
        Ok(Response::Error(reason)) => return Err(shim_error(reason)),
        Ok(other) => return Err(shim_error(format!("unexpected answer {other:?}"))),
        Err(err) => return Err(shim_error(format!("bad answer: {err}"))),
    };
    let (stdin, stdout, stderr) = match (ours, master) {
        (Some((stdin, stdout, stderr)), _) => (stdin, stdout, Some(stderr)),
        (None, Some(master)) => {
            let stdin = master
                .try_clone()
                .map_err(Error::io("duplicating the PTY master"))?;
            (stdin, master, None)
        }
        (None, None) => return Err(shim_error("no PTY came with the answer".into())),
    };
    Ok((stream, pid, stdin, stdout, stderr))
}
