//! `attach`: the container's own stdio (`kubectl attach`). The shim keeps logging and copies the output to
//! every attached client's pipes; input goes straight into the container's stdin pipe or PTY. Several clients
//! may attach at once; dropping an [`Attached`] detaches and leaves the container running.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{FcntlArg, fcntl};
use tokio::io::BufReader;

use super::protocol::{Request, Response, read_exit, recv_with_fd, send_with_fds};
use super::state::ExitStatus;
use super::{Error, Runtime, tty};

/// How much output a pipe to an attached client buffers: the shim detaches a client that falls this far
/// behind rather than hold the container back (best effort; the kernel caps it at `pipe-max-size`).
const ATTACH_PIPE_SIZE: i32 = 1 << 20;

/// A client attached to a running container by [`Runtime::attach`]. Take the streams you use.
pub struct Attached {
    /// Input for the container: its stdin pipe, or its PTY master. `None` unless asked for and the container
    /// keeps stdin open (`stdin: true`).
    pub stdin: Option<OwnedFd>,
    /// The container's output (its terminal's with a TTY), from the moment of attaching. EOF once the
    /// container has exited, or the shim detached a client that fell behind.
    pub stdout: Option<OwnedFd>,
    /// Its stderr; `None` with a TTY.
    pub stderr: Option<OwnedFd>,
    /// Whether the container runs on a terminal.
    pub tty: bool,
    /// The container's terminal, to resize it; `None` without a TTY.
    pub terminal: Option<tty::Terminal>,
    id: String,
    control: BufReader<tokio::net::UnixStream>,
}

impl Attached {
    /// Waits for the container to exit. An error when the shim detached this client first.
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
    /// Attaches to the running container `id`'s stdio; `stdin` asks for its input too.
    #[tracing::instrument(skip(self))]
    pub async fn attach(&self, id: &str, stdin: bool) -> Result<Attached, Error> {
        let state = self.state_dir(id)?;
        let socket = state.socket();
        let id_owned = id.to_string();
        let attached = tokio::task::spawn_blocking(move || start(&id_owned, &socket, stdin))
            .await
            .map_err(|err| Error::io("attach")(std::io::Error::other(err)))??;
        let Started {
            stream,
            stdout,
            stderr,
            tty,
            input,
            fd,
        } = attached;
        let (stdin, pty) = match (tty, fd) {
            (true, Some(master)) => {
                let stdin = match input {
                    true => Some(
                        master
                            .try_clone()
                            .map_err(Error::io("duplicating the PTY master"))?,
                    ),
                    false => None,
                };
                (stdin, Some(master))
            }
            (false, fd) => (fd.filter(|_| input), None),
            (true, None) => {
                return Err(Error::Shim {
                    id: id.to_string(),
                    reason: "no PTY came with the attach answer".into(),
                });
            }
        };
        Ok(Attached {
            stdin,
            stdout: Some(stdout),
            stderr,
            tty,
            terminal: pty.map(tty::Terminal::new),
            id: id.to_string(),
            control: BufReader::new(super::control_stream(stream)?),
        })
    }
}

struct Started {
    stream: UnixStream,
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    tty: bool,
    input: bool,
    fd: Option<OwnedFd>,
}

/// The blocking half: the pipes' write ends go to the shim as SCM_RIGHTS. Both pipes are sent; a shim with a
/// TTY container uses the first only and closes the other.
fn start(id: &str, socket: &std::path::Path, stdin: bool) -> Result<Started, Error> {
    let shim_error = |reason: String| Error::Shim {
        id: id.to_string(),
        reason,
    };
    let stream = UnixStream::connect(socket).map_err(|_| Error::NotRunning(id.to_string()))?;
    let (stdout_read, stdout_write) = super::pipe()?;
    let (stderr_read, stderr_write) = super::pipe()?;
    for pipe in [&stdout_write, &stderr_write] {
        // Best effort: a smaller buffer only detaches a slow client sooner.
        let _ = fcntl(pipe.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(ATTACH_PIPE_SIZE));
    }
    send_with_fds(
        &stream,
        &Request::Attach { stdin },
        &[stdout_write.as_raw_fd(), stderr_write.as_raw_fd()],
    )
    .map_err(|err| shim_error(format!("sending the attach request: {err}")))?;
    drop((stdout_write, stderr_write));
    let (answer, fd) = recv_with_fd(&stream)
        .map_err(|err| shim_error(format!("reading the attach answer: {err}")))?;
    match answer {
        Response::Attached { tty, stdin: input } => Ok(Started {
            stream,
            stdout: stdout_read,
            stderr: (!tty).then_some(stderr_read),
            tty,
            input,
            fd,
        }),
        Response::Error(reason) if reason.contains("not running") => {
            Err(Error::NotRunning(id.to_string()))
        }
        Response::Error(reason) => Err(shim_error(reason)),
        other => Err(shim_error(format!("unexpected answer {other:?}"))),
    }
}
